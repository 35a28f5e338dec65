//! `confab bench`: a load generator that measures a confab server.
//!
//! R rooms of M members, each member its own WebSocket connection and its
//! own user. The first member of each room creates it (`capacity` M,
//! `backlog` 0), so no single user runs into the create rate limit; then
//! every member joins. Once all have joined, every member posts a
//! `--size`-byte body every `--interval` ms, starting at a random offset
//! within the first interval, for `--duration` s; then the bench waits
//! (at most `--drain` s) until every acknowledged post reached every other
//! member of its room.
//!
//! A body carries its send time (nanoseconds since the bench started) and
//! the poster's index, so a receiver measures end-to-end latency from the
//! frame alone. Each receiver keeps a bitmap of the room `seq`s it got:
//! a `seq` seen twice is a duplicate, one lower than the newest seen is out
//! of order, and loss is what is missing from posts × (M − 1).
//!
//! The whole bench runs on one thread (a current-thread runtime), so its
//! shared counters are plain cells and it can be pinned to one core apart
//! from the server's (`taskset`). It reports its own CPU use, so a reader
//! can tell whether the bench or the server was the limit.

mod client;
mod frame;
mod process;
mod stats;

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::Args;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use client::{Member, Posting, Target};
use process::{Process, Sample};
use stats::{Run, Stats};

/// Flags of `confab bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// WebSocket URL of the server, ws:// or wss:// (the certificate is not checked);
    /// several (comma-separated or repeated) spread the rooms over them, all members of a
    /// room on one URL
    #[arg(long, value_delimiter = ',', default_value = "ws://127.0.0.1:8080/ws")]
    url: Vec<String>,
    /// With several --url (the nodes of a cluster): spread the members of
    /// each room over them instead, so that every message crosses nodes
    #[arg(long)]
    spread_members: bool,
    /// Rooms to create
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    rooms: u32,
    /// Members (connections) per room
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    members: u32,
    /// Milliseconds between two posts of one member (a server's default
    /// post rate limit is 10/s; start it with `--post-rate off` for more)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Seconds of posting, or of holding the connections with --idle
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Bytes in each message body
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Connect and join, hold the connections for --duration, post nothing
    #[arg(long)]
    idle: bool,
    /// Print one JSON object, and no progress
    #[arg(long)]
    json: bool,
    /// Local addresses to connect from, comma-separated (127.0.0.1,127.0.0.2,…),
    /// each good for about 28,000 connections
    #[arg(long, value_delimiter = ',', value_name = "ADDRS")]
    source: Vec<IpAddr>,
    /// Create persistent rooms: a post is acknowledged once it is stored
    #[arg(long)]
    persistent: bool,
    /// Seconds to wait, after posting stops, for deliveries on their way
    #[arg(long, default_value_t = 5)]
    drain: u64,
    /// Connections being opened at once
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    connect_concurrency: u32,
    /// Process id of the server (on this machine), to report its CPU time
    /// and memory
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
}

/// What every client of a run shares. One thread runs the bench, so
/// these are plain cells: no locks, no atomics.
pub(crate) struct Shared {
    pub stats: RefCell<Stats>,
    /// Send times in bodies count from here.
    pub epoch: Instant,
    pub members: u64,
    /// Set once posting stopped; from then on every counted frame checks
    /// whether the run has settled.
    pub draining: Cell<bool>,
    /// Notified when the run has settled while draining.
    pub settled: Notify,
}

impl Shared {
    /// The time since a send time read from a body.
    pub fn since(&self, sent_ns: u64) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_nanos(sent_ns))
    }

    /// A connection that had joined is gone.
    pub fn lost(&self, error: String) {
        let mut stats = self.stats.borrow_mut();
        stats.disconnects += 1;
        stats.error(error);
    }
}

/// What a client tells the coordinator while setting up.
enum Setup {
    Connected,
    ConnectFailed(String),
    Joined,
    JoinFailed(String),
}

/// Runs `confab bench` on a thread of its own; prints the report.
pub fn run(args: BenchArgs) -> ExitCode {
    let connections = u64::from(args.rooms) * u64::from(args.members);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < connections + 64 => eprintln!(
            "confab bench: warning: {connections} connections but at most {limit} open files; \
             raise it with `ulimit -n`"
        ),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("confab bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let report = match runtime.block_on(local.run_until(bench(&args))) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("confab bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{report}");
    } else {
        print!("{}", stats::text_report(&report));
    }
    let failed = [
        "connect_errors",
        "join_errors",
        "disconnects",
        "posts_unanswered",
        "loss",
        "duplicates",
        "out_of_order",
    ]
    .iter()
    .any(|key| report[key].as_u64().unwrap_or(0) > 0);
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

async fn bench(args: &BenchArgs) -> anyhow::Result<Value> {
    let mut targets = Vec::new();
    for url in &args.url {
        targets.push(Rc::new(Target::resolve(url).await?));
    }
    let server = args.server_pid.map(Process::Pid);
    if let Some(server) = server {
        server.sample().ok_or_else(|| anyhow!("cannot read /proc for the server's pid"))?;
    }
    let server_start = server.and_then(Process::sample);
    let shared = Rc::new(Shared {
        stats: RefCell::new(Stats::new()),
        epoch: Instant::now(),
        members: u64::from(args.members),
        draining: Cell::new(false),
        settled: Notify::new(),
    });
    let total = u64::from(args.rooms) * u64::from(args.members);
    let progress = !args.json;

    // Set up: every client connects, says hello, and joins its room, then
    // waits for the plan.
    let (setup_tx, mut setup_rx) = mpsc::unbounded_channel();
    let (plan_tx, plan_rx) = watch::channel(None::<Plan>);
    let permits = Rc::new(Semaphore::new(args.connect_concurrency as usize));
    let started = Instant::now();
    for room in 0..args.rooms {
        let room_target = room as usize % targets.len();
        let (code_tx, code_rx) = watch::channel(RoomCode::None);
        let mut code_tx = Some(code_tx);
        for index in 0..args.members {
            let n = u64::from(room) * u64::from(args.members) + u64::from(index);
            let target = if args.spread_members {
                (room_target + index as usize) % targets.len()
            } else {
                room_target
            };
            let client = Client {
                target: targets[target].clone(),
                source: (!args.source.is_empty())
                    .then(|| args.source[n as usize % args.source.len()]),
                index,
                room: if index == 0 {
                    Role::Creates(code_tx.take())
                } else {
                    Role::Joins(code_rx.clone())
                },
                persistent: args.persistent,
                capacity: args.members.max(2),
            };
            let task = client.setup_and_run(
                permits.clone(),
                setup_tx.clone(),
                plan_rx.clone(),
                shared.clone(),
                Pace { every: Duration::from_millis(args.interval), size: args.size },
            );
            tokio::task::spawn_local(task);
        }
    }
    drop(setup_tx);
    let (mut connected, mut joined, mut failed) = (0u64, 0u64, 0u64);
    let mut connecting = None;
    let mut report_at = Instant::now() + Duration::from_secs(1);
    while joined + failed < total {
        let event = tokio::time::timeout_at(report_at.into(), setup_rx.recv()).await;
        match event {
            Err(_) => {
                if progress {
                    eprintln!(
                        "[setup {:>5.1}s] {connected} connected, {joined} joined, {failed} failed of {total}",
                        started.elapsed().as_secs_f64()
                    );
                }
                report_at += Duration::from_secs(1);
            }
            Ok(None) => break,
            Ok(Some(event)) => {
                let mut stats = shared.stats.borrow_mut();
                match event {
                    Setup::Connected => connected += 1,
                    Setup::ConnectFailed(e) => {
                        failed += 1;
                        stats.connect_errors += 1;
                        stats.error(e);
                    }
                    Setup::Joined => joined += 1,
                    Setup::JoinFailed(e) => {
                        failed += 1;
                        stats.join_errors += 1;
                        stats.error(e);
                    }
                }
                if connecting.is_none() && connected + stats.connect_errors == total {
                    connecting = Some(started.elapsed());
                }
            }
        }
    }
    let setup = started.elapsed();
    shared.stats.borrow_mut().connected = connected;

    // Run: post (or hold) until the stop time, then drain.
    let bench_before = Process::This.sample();
    let server_before = server.and_then(Process::sample);
    let start = Instant::now() + Duration::from_millis(100);
    let stop = start + Duration::from_secs(args.duration);
    plan_tx.send_replace(Some(Plan { start, stop, idle: args.idle }));
    let mut ticker =
        tokio::time::interval_at((start + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let mut last = (0, 0, Process::This.sample());
    while Instant::now() < stop {
        tokio::select! {
            _ = ticker.tick() => {
                if progress {
                    last = show_progress(&shared, start, last);
                }
            }
            () = tokio::time::sleep_until(stop.into()) => {}
        }
    }
    let active = start.elapsed();
    let drain_started = Instant::now();
    if !args.idle {
        shared.draining.set(true);
        let deadline = drain_started + Duration::from_secs(args.drain);
        while !shared.stats.borrow().settled(shared.members) {
            let waited = tokio::time::timeout_at(deadline.into(), shared.settled.notified()).await;
            if waited.is_err() {
                break;
            }
        }
    }
    let run = Run {
        urls: args.url.clone(),
        rooms: args.rooms as usize,
        members: args.members as usize,
        interval_ms: args.interval,
        duration_s: args.duration,
        size: args.size,
        idle: args.idle,
        persistent: args.persistent,
        setup,
        connecting: connecting.unwrap_or(setup),
        active,
        draining: drain_started.elapsed(),
        bench_before,
        bench_after: Process::This.sample(),
        server_start,
        server_before,
        server_after: server.and_then(Process::sample),
    };
    Ok(stats::json_report(&run, &shared.stats.borrow()))
}

/// Prints one line of progress; returns the counts it was computed from.
fn show_progress(
    shared: &Shared,
    start: Instant,
    (posts, deliveries, cpu): (u64, u64, Option<Sample>),
) -> (u64, u64, Option<Sample>) {
    let stats = shared.stats.borrow();
    let now = Process::This.sample();
    let cpu_percent = cpu
        .zip(now)
        .map(|(before, after)| 100.0 * after.cpu.saturating_sub(before.cpu).as_secs_f64());
    let p99 = if stats.latency.is_empty() {
        0.0
    } else {
        stats.latency.value_at_quantile(0.99) as f64 / 1000.0
    };
    eprintln!(
        "[{:>5.1}s] {} posts (+{}/s), {} deliveries (+{}/s), {} connections lost, p99 {p99:.3} ms, bench cpu {:.0}%",
        start.elapsed().as_secs_f64(),
        stats.posts,
        stats.posts - posts,
        stats.deliveries(),
        stats.deliveries() - deliveries,
        stats.disconnects,
        cpu_percent.unwrap_or(0.0),
    );
    (stats.posts, stats.deliveries(), now)
}

/// When the run starts and stops; sent to every client once all are set up.
#[derive(Debug, Clone, Copy)]
struct Plan {
    start: Instant,
    stop: Instant,
    idle: bool,
}

/// How often and how much each member posts.
#[derive(Debug, Clone, Copy)]
struct Pace {
    every: Duration,
    size: usize,
}

/// A room's code once its first member created it, or why it was not.
type RoomCode = Option<Result<Rc<str>, String>>;

/// How a client comes to know its room's code.
enum Role {
    /// The room's first member: creates the room and hands the code on.
    Creates(Option<watch::Sender<RoomCode>>),
    /// Waits for the first member's code.
    Joins(watch::Receiver<RoomCode>),
}

/// One client before it has joined.
struct Client {
    target: Rc<Target>,
    source: Option<IpAddr>,
    index: u32,
    room: Role,
    persistent: bool,
    capacity: u32,
}

impl Client {
    /// Sets up (reporting each step to the coordinator), waits for the
    /// plan, then runs as a member.
    async fn setup_and_run(
        self,
        permits: Rc<Semaphore>,
        setup: mpsc::UnboundedSender<Setup>,
        mut plan: watch::Receiver<Option<Plan>>,
        shared: Rc<Shared>,
        pace: Pace,
    ) {
        let permit = permits.acquire().await.expect("the semaphore is never closed");
        let socket = client::open(&self.target, self.source).await;
        drop(permit);
        let mut socket = match socket {
            Ok(socket) => socket,
            Err(e) => {
                let _ = setup.send(Setup::ConnectFailed(format!("{e:#}")));
                return self.give_up("its first member could not connect");
            }
        };
        let _ = setup.send(Setup::Connected);
        let member = match self.join(&mut socket).await {
            Ok(code) => Member::new(socket, code, self.index),
            Err(e) => {
                let _ = setup.send(Setup::JoinFailed(format!("{e:#}")));
                return;
            }
        };
        let _ = setup.send(Setup::Joined);
        drop(setup);
        let Ok(plan) = plan.wait_for(Option::is_some).await.map(|p| p.expect("some")) else {
            return;
        };
        let posting = (!plan.idle).then(|| {
            let jitter = rand::rng().random_range(0..client::nanos(pace.every).max(1));
            Posting {
                first: plan.start + Duration::from_nanos(jitter),
                every: pace.every,
                stop: plan.stop,
                size: pace.size,
            }
        });
        member.run(shared, posting).await;
    }

    /// `hello`, then `create` (first member) or waiting for the code, then
    /// `join`. Returns the room's code.
    async fn join(&self, socket: &mut client::Socket) -> anyhow::Result<Rc<str>> {
        let name = format!("m{}", self.index);
        client::call(socket, 1, json!({"op": "hello", "name": name})).await?;
        let code: Rc<str> = match &self.room {
            Role::Creates(sender) => {
                let retention = if self.persistent { "persistent" } else { "ephemeral" };
                let created = client::call(
                    socket,
                    2,
                    json!({"op": "create", "capacity": self.capacity, "backlog": 0,
                           "retention": retention, "title": "bench"}),
                )
                .await
                .and_then(|reply| {
                    reply["room"]["code"]
                        .as_str()
                        .map(Rc::from)
                        .ok_or_else(|| anyhow!("create: no code in {reply}"))
                });
                if let Some(sender) = sender {
                    sender.send_replace(Some(
                        created.as_ref().map(Rc::clone).map_err(|e| format!("{e:#}")),
                    ));
                }
                created?
            }
            Role::Joins(receiver) => {
                let mut receiver = receiver.clone();
                let code = receiver
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| anyhow!("the room was never created"))?
                    .clone()
                    .expect("some");
                code.map_err(|e| anyhow!("the room was not created: {e}"))?
            }
        };
        client::call(socket, 3, json!({"op": "join", "room": &*code}))
            .await
            .with_context(|| format!("join {code}"))?;
        Ok(code)
    }

    /// A first member that could not connect tells the others.
    fn give_up(self, why: &str) {
        if let Role::Creates(Some(sender)) = self.room {
            sender.send_replace(Some(Err(why.to_owned())));
        }
    }
}
