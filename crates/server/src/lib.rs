//! The confab server: edge adapters (WebSocket, HTTP pages), configuration
//! and the run loop around a [`confab_core::Hub`].

mod admin;
pub mod admission;
mod api;
pub mod config;
mod hooks;
mod http;
mod irc;
mod lp;
mod mem;
mod metrics;
pub mod rooms;
pub mod store;
mod tcp;
pub mod tls;
mod web;
mod ws;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
pub use rooms::{Conn, Hub, Rooms};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, ServeArgs};

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct App {
    hub: Hub,
    /// Frames queued per connection.
    outbox: usize,
    /// Cancelled once the hub has told every room it is shutting down;
    /// every socket loop then closes.
    shutdown: CancellationToken,
    /// Tracks upgraded sockets so shutdown can wait for them.
    sockets: TaskTracker,
    /// Live long-poll connections.
    lp: lp::Registry,
    /// Connection admission, client addresses and origins.
    edge: std::sync::Arc<admission::Edge>,
    /// Cancelled when a drain starts (SIGTERM): `/readyz` answers 503, new
    /// connections are refused, and each open one closes at its turn.
    draining: CancellationToken,
    /// The window over which a drain closes the open connections.
    spread: Duration,
    /// TLS on the HTTP listener, and on the terminal listener.
    tls: Option<tls::Tls>,
    terminal_tls: Option<tls::Tls>,
    /// The digest of the operator's API token; `None`: the API is off.
    admin: Option<[u8; 32]>,
    /// The integrations' connections on this node.
    bots: std::sync::Arc<api::Bots>,
}

impl App {
    /// Resolves at this connection's turn to close in a drain: a moment
    /// drawn at random in the drain's window, once the drain has started,
    /// so that the clients reconnect elsewhere a few at a time rather than
    /// all at once.
    async fn leave_turn(&self) {
        self.draining.cancelled().await;
        tokio::time::sleep(self.spread.mul_f64(rand::random::<f64>())).await;
    }

    /// Whether new connections are refused: a drain has started.
    fn draining(&self) -> bool {
        self.draining.is_cancelled()
    }
}

/// The part of `--drain` over which the open connections are closed; the
/// rest is for their last frames to be written.
fn spread_of(drain: Duration) -> Duration {
    drain.mul_f64(0.8)
}

/// A running server.
pub struct Server {
    http: SocketAddr,
    tcp: SocketAddr,
    irc: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    hub: Hub,
    edge: std::sync::Arc<admission::Edge>,
    certificates: Option<std::sync::Arc<tls::Certificates>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Opens the database, binds every listener and starts serving.
    ///
    /// # Errors
    ///
    /// A database that cannot be opened, or an address that cannot be bound.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        // Before anything is bound: a certificate that cannot be read is
        // a configuration error.
        let certificates = config
            .tls
            .clone()
            .map(tls::Certificates::load)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(&config.http)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http))?;
        let http = listener.local_addr()?;
        metrics::handle();
        let tcp_listener = TcpListener::bind(&config.tcp).await.with_context(|| {
            format!("cannot listen for the terminal protocol on {}", config.tcp)
        })?;
        let tcp = tcp_listener.local_addr()?;
        let irc_listener = match &config.irc {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for IRC on {addr}"))?,
            ),
            None => None,
        };
        let irc = irc_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let metrics_listener = match &config.metrics {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {addr}"))?;
                tracing::info!("metrics listening on {}", listener.local_addr()?);
                Some(listener)
            }
            None => None,
        };
        let mut edge = config.edge.clone();
        if let Some(files) = raise_open_files() {
            // At least half for sockets, however low the limit.
            let descriptors = files.saturating_sub(RESERVED_FILES).max(files / 2);
            tracing::info!(
                "open-file limit {files}: up to {descriptors} sockets, {RESERVED_FILES} kept for \
                 the database, Redis and the listeners"
            );
            edge.descriptors = Some(descriptors);
        }
        let mut config = config;
        if let Some(path) = &config.audit_log {
            config.hub.audit = confab_core::Audit::open(path).await.map_err(|e| {
                let why = match e.kind() {
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
                    std::io::ErrorKind::NotFound => "its directory does not exist".to_owned(),
                    _ => e.to_string(),
                };
                anyhow::anyhow!("--audit-log {}: cannot append to it: {why}", path.display())
            })?;
            tracing::info!("audit log: {}", path.display());
        }
        let store = store::SqlStore::open(config.database.as_deref(), &config.data).await?;
        let hub =
            rooms::open(config.hub.clone(), store.into_store(), config.cluster.clone()).await?;
        let app = App {
            hub: hub.clone(),
            outbox: config.outbox,
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
            lp: lp::Registry::new(config.poll_wait, config.poll_idle),
            edge: admission::Edge::new(edge),
            draining: CancellationToken::new(),
            spread: spread_of(config.drain),
            tls: certificates.clone().map(tls::Tls::http),
            terminal_tls: certificates.clone().map(tls::Tls::terminal),
            admin: config.admin_token.as_ref().map(|t| admin::digest(t.expose())),
            bots: api::Bots::new(),
        };
        tokio::spawn(app.bots.clone().reap(app.clone()));
        if app.admin.is_some() {
            tracing::info!("the operator's API is on: /admin/v1/");
        }
        let stop = CancellationToken::new();
        let delivery =
            hooks::Delivery { give_up: config.webhook_give_up, timeout: config.webhook_timeout };
        tokio::spawn(hooks::deliver(app.clone(), delivery, stop.clone()));
        tokio::spawn(tcp::listen(tcp_listener, app.clone(), tcp::Lines::Terminal));
        if let Some(listener) = irc_listener {
            tokio::spawn(tcp::listen(listener, app.clone(), tcp::Lines::Irc));
        }
        tokio::spawn(mem::trim_after_bursts(stop.clone()));
        if certificates.is_some() {
            tokio::spawn(forget_idle_handshakes(app.edge.clone(), stop.clone()));
        }
        let metrics = match metrics_listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let router = http::metrics_router(app.clone());
                tokio::spawn(http::serve(listener, router, stop.clone(), None, None));
                Some(addr)
            }
            None => None,
        };
        // Said once everything behind the listeners is ready: a client
        // that connects as soon as it reads this is served.
        if let Some(certificates) = &certificates {
            tracing::info!(
                "tls: HTTPS, WSS and the terminal protocol with the certificate from {}",
                certificates.files().cert.display()
            );
        }
        tracing::info!("http listening on {http}");
        tracing::info!("tcp listening on {tcp}");
        if let Some(irc) = irc {
            tracing::info!("irc listening on {irc}");
        }
        tracing::info!("web chat at {}", web_address(http, certificates.is_some()));
        let router = http::router(app.clone(), metrics.is_none());
        let edge = app.edge.clone();
        let task = tokio::spawn(run(listener, router, app, stop.clone(), config.drain));
        Ok(Server { http, tcp, irc, metrics, hub, edge, certificates, stop, task })
    }

    /// The bound HTTP address (with the real port when 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The bound address of the terminal line protocol.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    /// The bound address for IRC clients, when it is on.
    pub fn irc_addr(&self) -> Option<SocketAddr> {
        self.irc
    }

    /// The bound address of `/metrics`, when it has its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The TLS certificate in force, to reload; `None` without TLS.
    pub fn certificates(&self) -> Option<std::sync::Arc<tls::Certificates>> {
        self.certificates.clone()
    }

    /// What puts a configuration's limits and certificate in force
    /// without a restart (SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            hub: self.hub.clone(),
            edge: self.edge.clone(),
            certificates: self.certificates.clone(),
        }
    }

    /// A token that stops the server when cancelled.
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Waits until the server has stopped (after [`Server::stopper`] fired).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// What a reload changes: the rate limits, the connection caps and the
/// TLS certificate. Everything else takes a restart.
#[derive(Clone)]
pub struct Reloader {
    hub: Hub,
    edge: std::sync::Arc<admission::Edge>,
    certificates: Option<std::sync::Arc<tls::Certificates>>,
}

/// What a reload did: the changes, a line each, and what it could not do.
#[derive(Debug, Default)]
pub struct Reloaded {
    pub changes: Vec<String>,
    pub refused: Vec<String>,
}

impl Reloader {
    /// Puts `config`'s rate limits, connection caps and certificate in
    /// force. A certificate that does not load leaves the one in force.
    pub fn apply(&self, config: &Config) -> Reloaded {
        let mut done =
            Reloaded { changes: self.hub.reload_rates(config.hub.rates), refused: vec![] };
        done.changes.extend(
            self.edge.reload_caps(config.edge.max_connections, config.edge.max_connections_per_ip),
        );
        match (&self.certificates, &config.tls) {
            (None, None) => {}
            (None, Some(_)) => {
                done.refused.push("TLS is not turned on by a reload; restart to serve TLS".into());
            }
            (Some(_), None) => {
                done.refused
                    .push("TLS is not turned off by a reload; the certificate is kept".into());
            }
            (Some(certificates), Some(files)) => match certificates.reload(Some(files.clone())) {
                Ok(true) => done.changes.push(format!(
                    "a new TLS certificate from {} is served to new connections",
                    files.cert.display()
                )),
                Ok(false) => {}
                Err(why) => done.refused.push(format!("{why}; the certificate in force is kept")),
            },
        }
        done
    }
}

async fn run(
    listener: TcpListener,
    router: axum::Router,
    app: App,
    stop: CancellationToken,
    drain: Duration,
) {
    let shutdown = app.shutdown.clone();
    let serve = tokio::spawn(http::serve(
        listener,
        router,
        shutdown.clone(),
        Some(app.edge.clone()),
        app.tls.clone(),
    ));
    stop.cancelled().await;
    let started = tokio::time::Instant::now();
    tracing::info!(
        connections = app.hub.connections(),
        "draining: not ready, refusing new connections, closing the open ones over {:?}",
        app.spread
    );
    // Each connection sends `closed` for its rooms and closes with 1012 at
    // a moment of its own in the spread (`App::leave_turn`).
    app.draining.cancel();
    app.sockets.close();
    let closed = tokio::time::timeout(drain, app.sockets.wait()).await.is_ok();
    // Whatever is left (a socket still writing) is closed now.
    app.hub.shutdown();
    shutdown.cancel();
    let rest = drain.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
    let drained = tokio::time::timeout(rest, async {
        app.sockets.wait().await;
        let _ = serve.await;
    })
    .await;
    if !closed || drained.is_err() {
        tracing::warn!("connections still open after {drain:?}; stopping anyway");
    }
    // In a cluster, the departures of the closed connections reach Redis
    // before the node goes (else its seats wait for the lease to lapse).
    app.hub.settle_departures(Duration::from_secs(2)).await;
    // What the rooms queued for the store (the departures' visibility,
    // roles, bans, deletions) is written before the process goes.
    app.hub.flush_storage(Duration::from_secs(5)).await;
    tracing::info!("stopped");
}

/// Forgets, once a minute, the handshake budgets of addresses that are
/// full again.
async fn forget_idle_handshakes(edge: std::sync::Arc<admission::Edge>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => edge.forget_idle(),
            () = stop.cancelled() => return,
        }
    }
}

/// The address to open in a browser: a wildcard bind is reached through
/// the loopback address on this machine.
fn web_address(http: SocketAddr, tls: bool) -> String {
    let shown = match http {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{shown}/")
}

/// Descriptors kept out of the sockets' budget: the database pool, Redis,
/// the listeners, standard streams, files the store opens.
const RESERVED_FILES: usize = 64;

/// Raises the process's soft open-file limit to its hard limit, once, and
/// returns the soft limit in force (`None` if it cannot be read).
#[allow(unsafe_code)]
fn raise_open_files() -> Option<usize> {
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `limit` is a valid `rlimit` for the call to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        // An unlimited hard limit still stops at the kernel's `nr_open`,
        // a million by default.
        let target = limit.rlim_max.min(1 << 20);
        if limit.rlim_cur < target {
            let raised = libc::rlimit { rlim_cur: target, rlim_max: limit.rlim_max };
            // SAFETY: `raised` is a valid `rlimit`; raising the soft limit
            // up to the hard one needs no privilege.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            } else {
                tracing::warn!(
                    "cannot raise the open-file limit from {} to {target}",
                    limit.rlim_cur
                );
            }
        }
        usize::try_from(limit.rlim_cur).ok()
    })
}
