//! The HTTP server, and its routes: the WebSocket endpoint, health, the
//! public room list and the web pages.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::admission::{Edge, Refusal, Ticket};
use crate::tls::Tls;
use crate::{App, lp, metrics, web, ws};

/// The routes of the HTTP listener; `/metrics` among them unless it has
/// an address of its own.
pub(crate) fn router(app: App, with_metrics: bool) -> Router {
    let router = Router::new()
        .route("/ws", get(ws::upgrade))
        .merge(lp::router(&app))
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/api/v1/rooms", get(rooms))
        .merge(crate::admin::router())
        .merge(crate::api::router());
    let router = if with_metrics { router.route("/metrics", get(metrics::render)) } else { router };
    router.merge(web::router()).with_state(app)
}

/// The routes of a listener of its own for `/metrics`.
pub(crate) fn metrics_router(app: App) -> Router {
    Router::new().route("/metrics", get(metrics::render)).with_state(app)
}

/// An accepted socket's place at the server, for a WebSocket upgrade to
/// take over: the upgraded connection is the same socket.
#[derive(Clone)]
pub(crate) struct SocketTicket(std::sync::Arc<parking_lot::Mutex<Option<Ticket>>>);

impl SocketTicket {
    /// Whether the socket's place is still here to be taken.
    pub fn peek(&self) -> bool {
        self.0.lock().is_some()
    }

    pub fn take(&self) -> Option<Ticket> {
        self.0.lock().take()
    }
}

/// Liveness: the process answers. Nothing else is checked, so that a
/// supervisor restarts a server only when it is stuck, never because its
/// database or Redis is away (`/readyz` says that).
async fn livez() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: whether this server should be sent new connections. 503
/// while its database or Redis is unreachable, and from the start of a
/// drain.
async fn readyz(State(app): State<App>) -> impl IntoResponse {
    let database = app.hub.store_healthy();
    let cluster = app.hub.cluster_healthy();
    let status = if app.draining() {
        "draining"
    } else if database && cluster.unwrap_or(true) {
        "ready"
    } else {
        "degraded"
    };
    let mut body = json!({
        "status": status,
        "database": if database { "ok" } else { "unavailable" },
    });
    if let Some(cluster) = cluster {
        body["cluster"] = json!(if cluster { "ok" } else { "unavailable" });
    }
    let code = if status == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body))
}

/// Readiness and the server's figures, for people and older checks: 503
/// when `/readyz` is.
async fn health(State(app): State<App>) -> impl IntoResponse {
    let database = app.hub.store_healthy();
    let cluster = app.hub.cluster_healthy();
    let draining = app.draining();
    let up = database && cluster.unwrap_or(true) && !draining;
    let mut body = json!({
        "status": if draining { "draining" } else if up { "ok" } else { "degraded" },
        "database": if database { "ok" } else { "unavailable" },
        "version": env!("CARGO_PKG_VERSION"),
        "node": app.hub.config().node,
        "connections": app.hub.connections(),
        // Sockets of every transport not yet closed, writers included.
        "sockets": app.sockets.len(),
        "rooms": app.hub.room_count(),
    });
    if let Some(cluster) = cluster {
        body["cluster"] = json!(if cluster { "ok" } else { "unavailable" });
    }
    let status = if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

/// `GET /api/v1/rooms`: the public rooms, to anyone, each request drawn
/// from the read budget of the client's address.
async fn rooms(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> axum::response::Response {
    let ip = app.edge.client_ip(peer, &headers);
    match app.hub.public_rooms_for(ip).await {
        Ok(rooms) => Json(rooms).into_response(),
        Err(error) => crate::api::failure(error),
    }
}

/// Accepts HTTP/1.1 connections and serves `router` on each until
/// `shutdown`; then stops accepting, lets every connection finish the
/// request it is in (idle keep-alive connections close at once), and
/// returns when they have.
///
/// Each connection is served by hyper directly, so that an upgraded
/// WebSocket gets the accepted `TcpStream` itself back (see `ws`) and
/// owns both of its halves without a lock between them. With `tls`, each
/// connection's handshake is done first, in its own task, and the
/// WebSocket gets the TLS stream.
///
/// Every socket counts against the edge's caps from the moment it is
/// accepted (`edge`; `None` for the metrics listener, which is the
/// operator's): a socket that never sends a request holds a descriptor as
/// surely as a WebSocket does. A socket refused gets a short 503 or 429
/// and is closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    edge: Option<std::sync::Arc<Edge>>,
    tls: Option<Tls>,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            // The client gave up before it was accepted: nothing to do.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of
                // spinning on the same error.
                tracing::error!("http accept failed: {e}");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
        };
        // Frames are small and each should leave at once: without
        // TCP_NODELAY a frame written while the previous one awaits its
        // (delayed) ACK is held back for up to 40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let ticket = match edge.as_ref().map(|edge| edge.admit_socket(peer.ip())) {
            None => None,
            Some(Ok(ticket)) => Some(ticket),
            Some(Err(refusal)) => {
                // Over TLS, the words would need a handshake first: a
                // server too busy for a connection has none to spare.
                if tls.is_none() {
                    refuse(&tcp, refusal);
                }
                continue;
            }
        };
        if tls.is_some() && edge.as_ref().is_some_and(|edge| !edge.allow_handshake(peer.ip())) {
            continue;
        }
        let ticket = SocketTicket(std::sync::Arc::new(parking_lot::Mutex::new(ticket)));
        let router = router.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(tcp), peer, ticket, router, shutdown).await,
                Some(tls) => {
                    // The handshake is the connection's own task: a slow one
                    // holds up nobody else.
                    let stream = tokio::select! {
                        stream = tls.accept(tcp) => stream,
                        () = shutdown.cancelled() => None,
                    };
                    let Some(stream) = stream else { return };
                    serve_connection(TokioIo::new(stream), peer, ticket, router, shutdown).await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// Serves HTTP/1.1 on one accepted connection, plain or TLS, until it
/// ends or `shutdown`.
async fn serve_connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    ticket: SocketTicket,
    router: Router,
    shutdown: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
        request.extensions_mut().insert(ticket.clone());
        router.clone().call(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        // Enables the timeout for reading a request's head (30 s).
        .timer(TokioTimer::new())
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::trace!(%peer, "http connection ended: {e}");
    }
}

/// Tells a refused socket why, if it can take the bytes at once, and
/// closes it.
fn refuse(tcp: &tokio::net::TcpStream, refusal: Refusal) {
    let status = match refusal {
        Refusal::Full => "503 Service Unavailable",
        Refusal::TooManyFromAddress => "429 Too Many Requests",
    };
    let body = refusal.message();
    let response = format!(
        "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-type: text/plain\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.try_write(response.as_bytes());
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
