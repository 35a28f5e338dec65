//! The confab server: edge adapters (WebSocket, HTTP pages), configuration
//! and the run loop around a [`confab_core::Hub`].

pub mod admission;
pub mod config;
mod http;
mod lp;
mod mem;
mod metrics;
pub mod store;
mod tcp;
mod web;
mod ws;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use confab_core::Hub;
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
}

/// A running server.
pub struct Server {
    http: SocketAddr,
    tcp: SocketAddr,
    hub: Hub,
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
        let listener = TcpListener::bind(&config.http)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http))?;
        let http = listener.local_addr()?;
        metrics::handle();
        tracing::info!("http listening on {http}");
        let tcp_listener = TcpListener::bind(&config.tcp).await.with_context(|| {
            format!("cannot listen for the terminal protocol on {}", config.tcp)
        })?;
        let tcp = tcp_listener.local_addr()?;
        tracing::info!("tcp listening on {tcp}");
        let store = store::SqlStore::open(config.database.as_deref(), &config.data).await?;
        let hub = Hub::open(config.hub.clone(), store.into_store())
            .await
            .context("cannot load rooms from the database")?;
        if let Some(cluster) = config.cluster.clone() {
            let url = cluster.url.clone();
            hub.join_cluster(cluster)
                .await
                .map_err(|e| anyhow::anyhow!("cannot join the cluster at {url}: {e}"))?;
            tracing::info!(node = hub.config().node, "joined the cluster at {url}");
        }
        let app = App {
            hub: hub.clone(),
            outbox: config.outbox,
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
            lp: lp::Registry::new(config.poll_wait, config.poll_idle),
            edge: admission::Edge::new(config.edge.clone()),
        };
        let stop = CancellationToken::new();
        tokio::spawn(tcp::listen(tcp_listener, app.clone()));
        tokio::spawn(mem::trim_after_bursts(stop.clone()));
        let router = http::router(app.clone());
        let task = tokio::spawn(run(listener, router, app, stop.clone(), config.drain));
        Ok(Server { http, tcp, hub, stop, task })
    }

    /// The bound HTTP address (with the real port when 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The bound address of the terminal line protocol.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
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

async fn run(
    listener: TcpListener,
    router: axum::Router,
    app: App,
    stop: CancellationToken,
    drain: Duration,
) {
    let shutdown = app.shutdown.clone();
    let serve = tokio::spawn(http::serve(listener, router, shutdown.clone()));
    stop.cancelled().await;
    tracing::info!("shutting down");
    // Queue `closed` for every joined connection, then let the sockets
    // write what they have and close with 1001.
    app.hub.shutdown();
    shutdown.cancel();
    app.sockets.close();
    let drained = tokio::time::timeout(drain, async {
        app.sockets.wait().await;
        let _ = serve.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after {drain:?}; stopping anyway");
    }
    // In a cluster, the departures of the closed connections reach Redis
    // before the node goes (else its seats wait for the lease to lapse).
    app.hub.settle_departures(Duration::from_secs(2)).await;
    tracing::info!("stopped");
}
