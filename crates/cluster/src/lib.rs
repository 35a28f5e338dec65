//! Several nodes as one server, through Redis.
//!
//! # Design
//!
//! Redis holds each room's shared state (meta, members, connection counts
//! per node, grace, visibility, `seq`, the recent window, remembered cids)
//! and runs each room op as one Lua script (`room.lua`): Redis runs a
//! script to the end before anything else, so a seat claim, a `seq` and a
//! `cid` check are atomic across nodes, exactly as a room's critical
//! section is on one node.
//!
//! Every event that changes what members see gets a per-room event number
//! (`ev`) in the same script and is published on one channel. Each node
//! keeps a [`Mirror`] of the rooms its connections joined, applies events
//! in `ev` order, and fans them out to its own connections: a message is
//! serialized once per node. A node that misses events (its subscription
//! dropped) reads them back from the room's recent events; one that is
//! too far behind closes its connections, which resume.
//!
//! Persistent rooms get their `seq` from the shared database, in the
//! transaction that stores the message; the script then publishes stored
//! messages in `seq` order, holding back one whose predecessor is not
//! published yet.
//!
//! Each node holds a lease in Redis, renewed at a third of its length. A
//! node whose lease lapsed is dead to the others: a survivor sweeps its
//! connections out of every room it was in (its members leave with reason
//! `disconnected`). A node that finds its own lease lapsed (Redis was out
//! of reach too long) closes its connections, which come back and rejoin,
//! and starts over as a new incarnation, so nothing it did before can
//! count against what it does after.
//!
//! # Failure
//!
//! Without Redis a node accepts nothing that other nodes cannot see: every
//! op answers `unavailable` within the op timeout, `/health` says 503, and
//! the node recovers by itself when Redis answers again.

mod batch;
mod connection;
mod events;
mod lease;
mod mirror;
mod ops;
mod persist;
mod reply;
mod rooms;

use events::subscribe_loop;
use lease::{lease_loop, upkeep_loop};
use persist::persist_loop;
use reply::unexpected;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use confab_core::backend::PERSIST_QUEUE;
use confab_core::frames::{not_found, unavailable};
use confab_core::{CloseReason, Departure, Draft, Outbox, Services, Store, StoredVisibility};
use confab_proto::{ErrorBody, ErrorCode, Message, RoomInfo, User};
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use redis::{Script, Value};
use serde::Serialize;
use tokio::sync::mpsc;

pub use connection::shard_of;
use connection::{Shard, lease_key};
pub(crate) use mirror::Mirror;
use mirror::parse_envelope;
use reply::Reply;
pub use rooms::{ClusterRooms, ClusterSeat};
/// Most posts of one room stored in one transaction.
const PERSIST_BATCH: usize = 256;

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://…`, or several, comma-separated: the shards rooms are
    /// spread over (every node must be given the same list, in the same
    /// order).
    pub url: String,
    /// How long a node that stopped renewing counts as alive.
    pub lease: Duration,
    /// The longest a Redis command may take before the op answers
    /// `unavailable`.
    pub timeout: Duration,
    /// Prefix of every key and channel: clusters with different ones
    /// share a Redis without seeing each other.
    pub namespace: String,
    /// The least time between two calls carrying posts to one shard.
    /// Under load, posts that arrive sooner wait and share the next call:
    /// fewer, larger calls cost Redis less per post (each call wakes Redis,
    /// runs the script and publishes once), for at most this much latency.
    /// A post after a quiet spell goes at once.
    pub post_linger: Duration,
}

impl ClusterConfig {
    pub fn new(url: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            url: url.into(),
            lease: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            namespace: "cf".to_owned(),
            post_linger: Duration::from_millis(2),
        }
    }

    /// The URL of each shard, in order.
    pub fn shards(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
    }
}

/// Why a node could not join its cluster, or record its stored rooms there.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("not a Redis URL: {0}")]
    Url(String),
    #[error("Redis cannot be reached: {0}")]
    Unreachable(String),
    #[error("cannot read the stored rooms: {0}")]
    Store(#[from] confab_core::StoreError),
    #[error("cannot record room {room}: {message}")]
    Record { room: String, message: String },
    #[error("this node is in a cluster already")]
    Already,
    #[error(
        "Redis shard {shard} holds the data of another confab version under namespace \
         {namespace:?}: stop every node, then empty it (or give --cluster-namespace a new name)"
    )]
    Layout { shard: usize, namespace: String },
}

/// What a cluster join answered.
pub(crate) struct ClusterJoin {
    /// Whether the user became a member (else they were one already).
    #[cfg_attr(not(test), allow(dead_code))]
    pub new: bool,
    pub seq: u64,
    pub ev: u64,
    /// Where the user's visible range starts.
    pub from: u64,
    pub info: RoomInfo,
    pub members: Vec<User>,
    /// Newest first.
    pub messages: Vec<Message>,
    pub after: u64,
    pub limit: usize,
    /// The oldest `seq` the window holds.
    pub oldest: u64,
    pub roles: confab_proto::Roles,
    pub locked: bool,
    /// Slow mode, in seconds (0: off).
    pub slow: u32,
    /// The room's change number.
    pub rev: u64,
    /// On a resume that gave its change number: what changed since,
    /// oldest first.
    pub changed: Vec<Message>,
}

/// What a read of messages answered.
pub(crate) struct ClusterRead {
    /// Newest first.
    pub messages: Vec<Message>,
    pub after: u64,
    pub before: u64,
    pub oldest: u64,
}

struct PersistJob {
    mirror: Arc<Mirror>,
    message: Message,
    origin: String,
    cid_key: Option<String>,
    /// The op id its cid's claim holds.
    claim: String,
    outbox: Outbox,
    reply: Option<i64>,
}

pub(crate) struct Cluster {
    /// The Redis instances rooms are spread over; the first holds the
    /// node leases.
    shards: Vec<Shard>,
    room_script: Script,
    rooms_script: Script,
    posts_script: Script,
    config: ClusterConfig,
    node: String,
    /// This node as Redis counts it: the name and an incarnation.
    incarnation: Mutex<String>,
    leased: AtomicBool,
    /// When the newest renewal of this incarnation's lease that Redis
    /// confirmed was sent: the lease is known to have held until a lease
    /// after it. `None` before this incarnation held one.
    lease_proven: Mutex<Option<std::time::Instant>>,
    /// Mirrors of the rooms this node's connections joined, by code.
    ///
    /// Lock order: this map, then a mirror; never the other way round.
    mirrors: RwLock<HashMap<String, Arc<Mirror>>>,
    /// Rooms with a grace timer running here.
    graces: Mutex<HashMap<String, usize>>,
    grace_epoch: AtomicU64,
    departing: std::sync::atomic::AtomicUsize,
    /// Cancelled when the node stops: the graces it runs end at once.
    stopping: tokio_util::sync::CancellationToken,
    store: Arc<dyn Store>,
    persist: mpsc::Sender<PersistJob>,
    window: usize,
    dedup: usize,
    /// The configured boards (lower case), and the seats of a room
    /// created without a capacity: for recording stored rooms.
    boards: Vec<String>,
    max_capacity: u32,
    /// The reconnect grace: a join undone after a timeout leaves a member
    /// who was there before in grace, as a drop would.
    grace: Duration,
    /// Set when this node must record the stored rooms again (Redis lost
    /// them, or this node's lease lapsed).
    rerecord: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to Redis and starts the node's subscription, lease and
    /// sweeps.
    pub(crate) async fn start(
        config: ClusterConfig,
        services: Arc<Services>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let hub = &services.config;
        let node = hub.node.as_str();
        let (window, dedup, max_capacity, grace) =
            (hub.room_window, hub.dedup_window, hub.max_capacity, hub.grace);
        let boards = hub.boards.iter().map(|b| b.name.to_lowercase()).collect();
        let store = services.store.clone();
        let urls = config.shards();
        if urls.is_empty() {
            return Err(ClusterError::Url("no Redis URL given".into()));
        }
        let (shards, queues): (Vec<Shard>, Vec<_>) = urls
            .iter()
            .enumerate()
            .map(|(i, url)| Shard::open(i, url, config.timeout))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        let (tx, rx) = mpsc::channel(PERSIST_QUEUE);
        let cluster = Arc::new(Cluster {
            shards,
            room_script: Script::new(include_str!("room.lua")),
            rooms_script: Script::new(include_str!("rooms.lua")),
            posts_script: Script::new(include_str!("posts.lua")),
            node: node.to_owned(),
            incarnation: Mutex::new(new_incarnation(node)),
            leased: AtomicBool::new(false),
            lease_proven: Mutex::new(None),
            mirrors: RwLock::new(HashMap::new()),
            graces: Mutex::new(HashMap::new()),
            grace_epoch: AtomicU64::new(0),
            departing: std::sync::atomic::AtomicUsize::new(0),
            stopping: tokio_util::sync::CancellationToken::new(),
            store,
            persist: tx,
            window: window.max(1),
            dedup: dedup.max(1),
            boards,
            max_capacity,
            grace,
            rerecord: AtomicBool::new(false),
            config,
        });
        for shard in &cluster.shards {
            shard.connection().await.map_err(|e| ClusterError::Unreachable(e.message))?;
        }
        cluster.check_layout().await?;
        cluster.renew().await;
        for shard in 0..cluster.shards.len() {
            tokio::spawn(subscribe_loop(Arc::downgrade(&cluster), shard));
        }
        for (shard, queue) in queues.into_iter().enumerate() {
            tokio::spawn(batch::post_loop(Arc::downgrade(&cluster), shard, queue));
        }
        tokio::spawn(lease_loop(Arc::downgrade(&cluster)));
        tokio::spawn(upkeep_loop(Arc::downgrade(&cluster)));
        tokio::spawn(persist_loop(Arc::downgrade(&cluster), rx));
        Ok(cluster)
    }

    /// The channel every node publishes room events on and listens to.
    pub(crate) fn channel(&self) -> String {
        format!("{}:events", self.config.namespace)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.config.namespace)
    }

    pub fn incarnation(&self) -> String {
        self.incarnation.lock().clone()
    }

    /// Whether this node can serve: every shard answers and its events
    /// arrive, and the node's lease is held.
    pub fn healthy(&self) -> bool {
        self.shards.iter().all(Shard::healthy) && self.leased.load(Ordering::Relaxed)
    }

    // ----- rooms -----

    /// Records a room in the cluster. `only_new`: fail with `exists` if
    /// the code is taken (a created room); else keep what is there (a
    /// board, or a stored room recorded again at start). `state`: what it
    /// starts with.
    pub async fn create(
        &self,
        info: &RoomInfo,
        seats: usize,
        ttl: Option<Duration>,
        only_new: bool,
        state: &Recorded,
    ) -> Result<bool, ErrorBody> {
        let Recorded { last_seq, roles, locked, bans, slow, rev } = state;
        let rev = rev.to_string();
        let slow = (u64::from(*slow) * 1000).to_string();
        let (last_seq, locked) = (*last_seq, *locked);
        let now = confab_core::unix_ms();
        let bans: Vec<(String, String)> = bans
            .iter()
            .filter(|b| b.remaining(now).is_some())
            .map(|b| (b.user.id.clone(), ban_value(b)))
            .collect();
        let json = serde_json::to_string(info).expect("room info serializes");
        let roles: String =
            roles.iter().map(|(id, role)| format!("{id}={};", role.as_str())).collect();
        let eph = if info.retention == confab_proto::Retention::Ephemeral { "1" } else { "0" };
        let ttl = ttl.map_or(0, |t| t.as_millis().max(1)).to_string();
        let (seats, last_seq, backlog) =
            (seats.to_string(), last_seq.to_string(), info.backlog.to_string());
        let mut args = vec![
            "create",
            &info.code,
            &json,
            &seats,
            eph,
            if info.public { "1" } else { "0" },
            &ttl,
            if only_new { "1" } else { "0" },
            &last_seq,
            &backlog,
            &roles,
            if locked { "1" } else { "0" },
            &slow,
            &rev,
        ];
        for (uid, ban) in &bans {
            args.push(uid);
            args.push(ban);
        }
        let r = self.room_op(&info.code, &args).await?;
        Ok(r.status() == "ok")
    }

    /// The public rooms of the whole cluster (or, with `all`, every room):
    /// of every shard.
    pub async fn public_rooms(&self, all: bool) -> Result<Vec<RoomInfo>, ErrorBody> {
        let lists = self.shards.iter().map(|shard| self.public_rooms_of(shard, all));
        let lists = futures_util::future::try_join_all(lists).await?;
        Ok(lists.into_iter().flatten().collect())
    }

    /// Runs `rooms.lua` with `args` on every shard; the sum of what each
    /// answered (`announce`, `purge`).
    pub async fn every_room(&self, args: &[&str]) -> Result<usize, ErrorBody> {
        let counts = self.shards.iter().map(|shard| async move {
            let mut conn = shard.connection().await?;
            let mut invocation = self.rooms_script.prepare_invoke();
            invocation.arg(&self.config.namespace);
            for arg in args {
                invocation.arg(*arg);
            }
            shard.answer(invocation.invoke_async::<i64>(&mut conn)).await
        });
        let counts = futures_util::future::try_join_all(counts).await?;
        Ok(counts.into_iter().map(|n| usize::try_from(n).unwrap_or(0)).sum())
    }

    /// Purges `user_id`'s messages from every room (rooms.lua's `purge`):
    /// how many rooms were told, and the code and change number of each
    /// room whose messages it purged.
    pub async fn purge(&self, user_id: &str) -> Result<(usize, Vec<(String, u64)>), ErrorBody> {
        let shards = self.shards.iter().map(|shard| async move {
            let mut conn = shard.connection().await?;
            let mut invocation = self.rooms_script.prepare_invoke();
            invocation.arg(&self.config.namespace).arg("purge").arg(user_id);
            shard.answer(invocation.invoke_async::<Vec<Value>>(&mut conn)).await
        });
        let mut told = 0;
        let mut purged = Vec::new();
        for items in futures_util::future::try_join_all(shards).await? {
            let mut items = items.into_iter();
            match items.next() {
                Some(Value::Int(n)) => told += usize::try_from(n).unwrap_or(0),
                other => return Err(unexpected(&format!("a purge told {other:?} rooms"))),
            }
            while let (Some(code), Some(rev)) = (items.next(), items.next()) {
                match (code, rev) {
                    (Value::BulkString(code), Value::Int(rev)) => purged.push((
                        String::from_utf8_lossy(&code).into_owned(),
                        u64::try_from(rev).unwrap_or(0),
                    )),
                    other => return Err(unexpected(&format!("a purged room: {other:?}"))),
                }
            }
        }
        Ok((told, purged))
    }

    async fn public_rooms_of(&self, shard: &Shard, all: bool) -> Result<Vec<RoomInfo>, ErrorBody> {
        let mut conn = shard.connection().await?;
        let mut invocation = self.rooms_script.prepare_invoke();
        invocation.arg(&self.config.namespace);
        invocation.arg(if all { "all" } else { "public" });
        let items = shard.answer(invocation.invoke_async::<Vec<Value>>(&mut conn)).await?;
        // Pairs of a room's settings and its member count.
        items
            .chunks(2)
            .map(|pair| match pair {
                [Value::BulkString(json), Value::Int(members)] => {
                    let mut info: RoomInfo = serde_json::from_slice(json)
                        .map_err(|e| reply::unexpected(&format!("a public room: {e}")))?;
                    info.members = usize::try_from(*members).unwrap_or(0);
                    Ok(info)
                }
                other => Err(reply::unexpected(&format!("a public room: {other:?}"))),
            })
            .collect()
    }

    /// The members of a room that is public or that the asking connection
    /// is in (`joined`); `None` for any other room, and for one that does
    /// not exist.
    pub async fn members(
        &self,
        code: &str,
        joined: bool,
    ) -> Result<Option<(Vec<User>, confab_proto::Roles)>, ErrorBody> {
        let r = self.room_op(code, &["members", code, if joined { "1" } else { "0" }]).await?;
        match r.status() {
            "ok" => Ok(Some((r.list(1)?, roles(&r.texts(2)?)))),
            _ => Ok(None),
        }
    }

    // ----- mirrors -----

    /// The mirror of `code`, made if there is none, marked as being joined
    /// so that it is not let go before the join ends (see
    /// [`Cluster::release_mirror`]).
    pub fn mirror_for_join(self: &Arc<Self>, code: &str) -> Arc<Mirror> {
        let mut mirrors = self.mirrors.write();
        let mirror =
            mirrors.entry(code.to_owned()).or_insert_with(|| Arc::new(Mirror::new(code))).clone();
        mirror.begin_join();
        mirror
    }

    pub fn mirror(&self, code: &str) -> Option<Arc<Mirror>> {
        self.mirrors.read().get(code).cloned()
    }

    /// Lets a mirror go once no connection of this node is in it.
    pub fn release_mirror(&self, mirror: &Arc<Mirror>) {
        let mut mirrors = self.mirrors.write();
        if mirror.unused() && mirrors.get(mirror.code()).is_some_and(|m| Arc::ptr_eq(m, mirror)) {
            mirrors.remove(mirror.code());
        }
    }

    fn all_mirrors(&self) -> Vec<Arc<Mirror>> {
        self.mirrors.read().values().cloned().collect()
    }
}

/// What a room recorded in the cluster starts with: a new room nothing, a
/// stored one what the store kept.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub last_seq: u64,
    pub roles: confab_proto::Roles,
    pub locked: bool,
    pub bans: Vec<confab_core::Ban>,
    /// Slow mode, in seconds (0: off).
    pub slow: u32,
    /// The latest change number stored.
    pub rev: u64,
}

/// A ban as the room script keeps it: "until\naddrs\nreason\nby\nuser"
/// (until in ms since the epoch, 0 for none; the addresses' hashes
/// comma-separated; the users as JSON, which holds no raw newline).
pub(crate) fn ban_value(ban: &confab_core::Ban) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}",
        ban.until.unwrap_or(0),
        ban.addrs.join(","),
        ban.reason.as_str(),
        serde_json::to_string(&ban.by).expect("users serialize"),
        serde_json::to_string(&ban.user).expect("users serialize"),
    )
}

/// A mute from the room script's form ("until\nby JSON\nuser JSON\n
/// shadow", shadow 1|0).
pub(crate) fn parse_mute(value: &str) -> Option<confab_core::Mute> {
    let mut parts = value.splitn(4, '\n');
    let until: u64 = parts.next()?.parse().ok()?;
    let by = serde_json::from_str(parts.next()?).ok()?;
    let user = serde_json::from_str(parts.next()?).ok()?;
    let shadow = parts.next() == Some("1");
    Some(confab_core::Mute { user, by, until: (until > 0).then_some(until), shadow })
}

/// A ban from the room script's form (see [`ban_value`]).
pub(crate) fn parse_ban(value: &str) -> Option<confab_core::Ban> {
    let mut parts = value.splitn(5, '\n');
    let until: u64 = parts.next()?.parse().ok()?;
    let addrs = parts.next()?.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect();
    let reason = match parts.next()? {
        "banned" => confab_proto::LeaveReason::Banned,
        _ => confab_proto::LeaveReason::Kicked,
    };
    let by = serde_json::from_str(parts.next()?).ok()?;
    let user = serde_json::from_str(parts.next()?).ok()?;
    Some(confab_core::Ban { user, by, reason, until: (until > 0).then_some(until), addrs })
}

/// A room's roles from Redis's `HGETALL` (field, value, field, value…);
/// what is not a role is skipped.
pub(crate) fn roles(flat: &[String]) -> confab_proto::Roles {
    flat.chunks_exact(2)
        .filter_map(|pair| Some((pair[0].clone(), confab_proto::Role::parse(&pair[1])?)))
        .collect()
}

fn new_incarnation(node: &str) -> String {
    format!("{node}#{:08x}", rand::random::<u32>())
}

/// A message's JSON without its `seq`, from the first field on, for the
/// post script to complete: `,"room":…}`.
fn message_tail(code: &str, user: &User, draft: &Draft) -> String {
    #[derive(Serialize)]
    struct Tail<'a> {
        room: &'a str,
        from: &'a User,
        #[serde(skip_serializing_if = "Option::is_none")]
        subject: Option<&'a str>,
        body: &'a str,
        ts: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cid: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply: Option<&'a confab_proto::Quote>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        bot: bool,
    }
    let json = serde_json::to_string(&Tail {
        room: code,
        from: user,
        subject: draft.subject.as_deref(),
        body: &draft.body,
        ts: &draft.ts,
        cid: draft.cid.as_deref(),
        reply: draft.reply.as_ref(),
        bot: draft.bot,
    })
    .expect("messages serialize");
    format!(",{}", &json[1..])
}

fn check(r: &Reply, code: &str) -> Result<(), ErrorBody> {
    match r.status() {
        "ok" => Ok(()),
        "not_member" => Err(not_member(code)),
        "not_found" => Err(not_found(code)),
        "muted" => {
            let left = u64::try_from(r.int(1)?).ok();
            Err(confab_core::frames::muted(code, left.map(Duration::from_millis)))
        }
        "slow" => {
            let (every, left) = (r.uint(1)?, r.uint(2)?);
            Err(confab_core::frames::slowed(code, every, left))
        }
        other => Err(unavailable(&format!("the cluster answered {other}"))),
    }
}

/// A post's refusal by `posts.lua` ("!muted <ms>", "!slow <every> <ms>").
pub(crate) fn refusal(text: &str, code: &str) -> Option<ErrorBody> {
    let mut words = text.split(' ');
    match words.next()? {
        "!muted" => {
            let left: i64 = words.next()?.parse().ok()?;
            let left = u64::try_from(left).ok().map(Duration::from_millis);
            Some(confab_core::frames::muted(code, left))
        }
        "!slow" => {
            let every = words.next()?.parse().ok()?;
            let left = words.next()?.parse().ok()?;
            Some(confab_core::frames::slowed(code, every, left))
        }
        _ => None,
    }
}

pub(crate) fn not_member(code: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotMember, format!("you have not joined room {code}"))
}

/// The token a grace timer of `incarnation` is known by in Redis.
fn grace_token(incarnation: &str, epoch: u64) -> String {
    format!("{incarnation}:{epoch}")
}

/// Closes a connection that can no longer be kept in step.
pub(crate) fn close_lost(outbox: &Outbox) {
    outbox.close(CloseReason::Resync);
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_core::{HubConfig, MemoryStore};
    use confab_proto::Retention;

    /// A node on the Redis at `CONFAB_TEST_REDIS`. The tests that need one
    /// are `#[ignore]`d; run with `--include-ignored`, a missing Redis
    /// fails them.
    async fn cluster(node: &str) -> Arc<Cluster> {
        let url = std::env::var("CONFAB_TEST_REDIS")
            .expect("CONFAB_TEST_REDIS is not set: this test needs Redis (see README.md)");
        // A namespace of this test run's own: a Redis shared with other
        // runs (and versions) is not read.
        static NAMESPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let namespace = NAMESPACE.get_or_init(|| format!("unit{:016x}", rand::random::<u64>()));
        let config = ClusterConfig { namespace: namespace.clone(), ..ClusterConfig::new(url) };
        let hub = HubConfig {
            node: node.to_owned(),
            grace: Duration::from_secs(10),
            room_window: 100,
            dedup_window: 100,
            max_capacity: 100,
            boards: Vec::new(),
            ..HubConfig::default()
        };
        let services = Services::open(hub, Arc::new(MemoryStore::new())).await.unwrap();
        Cluster::start(config, services).await.unwrap()
    }

    fn info(code: &str, capacity: u32) -> RoomInfo {
        RoomInfo {
            code: code.into(),
            title: "t".into(),
            capacity: Some(capacity),
            retention: Retention::Ephemeral,
            backlog: 10,
            public: false,
            members: 0,
            created: confab_core::now_rfc3339(),
        }
    }

    fn user(i: usize) -> User {
        User { id: format!("u_{i}_{:x}", rand::random::<u32>()), name: format!("user {i}") }
    }

    #[tokio::test]
    #[ignore = "needs Redis: CONFAB_TEST_REDIS"]
    async fn concurrent_joins_over_three_nodes_take_exactly_the_seats() {
        let (a, b, c) = (cluster("a").await, cluster("b").await, cluster("c").await);
        let code = format!("T{:08X}", rand::random::<u32>());
        assert!(a.create(&info(&code, 3), 3, None, true, &Recorded::default()).await.unwrap());
        assert!(
            !b.create(&info(&code, 3), 3, None, true, &Recorded::default()).await.unwrap(),
            "code taken"
        );
        let nodes = [a.clone(), b.clone(), c.clone()];
        let joins = (0..30).map(|i| {
            let node = nodes[i % 3].clone();
            let code = code.clone();
            async move { node.join(&code, &user(i), None, 100, None, false, false, None).await }
        });
        let results = futures_util::future::join_all(joins).await;
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(admitted, 3, "exactly the seats are taken");
        for refused in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(refused.code, ErrorCode::RoomFull);
        }
        let (members, _) = c.members(&code, true).await.unwrap().unwrap();
        assert_eq!(members.len(), 3);
    }

    #[tokio::test]
    #[ignore = "needs Redis: CONFAB_TEST_REDIS"]
    async fn posts_from_two_nodes_get_one_order_and_a_cid_is_posted_once() {
        let (a, b) = (cluster("a").await, cluster("b").await);
        let code = format!("T{:08X}", rand::random::<u32>());
        a.create(&info(&code, 4), 4, None, true, &Recorded::default()).await.unwrap();
        let (ann, bob) = (user(1), user(2));
        let joined = a.join(&code, &ann, None, 100, None, false, false, None).await.unwrap();
        assert!(joined.new);
        b.join(&code, &bob, None, 100, None, false, false, None).await.unwrap();
        let mirror_a = a.mirror_for_join(&code);
        let _ = mirror_a.add(&joined, &ann.id, 1, &Outbox::new(64).0, &a.incarnation());
        let mirror_b = b.mirror_for_join(&code);
        let _ = mirror_b.add(&joined, &bob.id, 2, &Outbox::new(64).0, &b.incarnation());
        let draft = |body: &str, cid: Option<&str>| Draft {
            bot: false,
            reply: None,
            body: body.into(),
            subject: None,
            cid: cid.map(str::to_owned),
            ts: confab_core::now_rfc3339(),
        };
        let outbox = Outbox::new(64).0;
        for i in 0..5 {
            a.post(&mirror_a, 1, &outbox, &ann, draft(&format!("a{i}"), None), None).await.unwrap();
            b.post(&mirror_b, 2, &outbox, &bob, draft(&format!("b{i}"), None), None).await.unwrap();
        }
        b.post(&mirror_b, 2, &outbox, &bob, draft("once", Some("c1")), Some(1)).await.unwrap();
        a.post(&mirror_a, 1, &outbox, &bob, draft("once", Some("c1")), Some(2)).await.unwrap();
        let read = a.read(&code, &ann.id, 0, u64::MAX, 100).await.unwrap();
        let mut seqs: Vec<u64> = read.messages.iter().map(|m| m.seq).collect();
        seqs.reverse();
        assert_eq!(seqs, (1..=11).collect::<Vec<_>>(), "one order, no gap, the cid once");
        let gone = a.depart(&code, &ann.id, Some(&a.incarnation()), true, false).await.unwrap();
        assert_eq!(gone, Some(Departure::Left));
        let gone = b.depart(&code, &bob.id, Some(&b.incarnation()), true, false).await.unwrap();
        assert_eq!(gone, Some(Departure::Destroyed), "the last member out ends an ephemeral room");
        let err = a.join(&code, &ann, None, 100, None, false, false, None).await.err().unwrap();
        assert_eq!(err.code, ErrorCode::NotFound);
    }
}
