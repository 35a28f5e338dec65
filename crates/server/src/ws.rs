//! The WebSocket transport at `GET /ws`.
//!
//! The handshake is answered here and the upgraded TCP socket is taken
//! whole, split into its two halves without a lock between them:
//!
//! - the reader task parses the client's frames ([`frame`]) and feeds each
//!   text message into the hub connection;
//! - the writer task drains the connection's outbox. A broadcast's frame
//!   is serialized once and shared; the writer adds only the frame header
//!   of each (2 to 4 bytes), and writes every frame already queued in one
//!   vectored `write` straight from the shared buffers, copying nothing.
//!
//! An idle connection holds no read or write buffer: the reader waits for
//! the socket to become readable before it allocates one, and both tasks
//! free what a burst grew.
//!
//! Control frames the reader must answer (a pong, the echo of a close, a
//! close for a protocol error) go through the outbox too, so they never
//! cut into a frame the writer has half written. They are queued already
//! framed; the writer tells them from the JSON frames by their first byte
//! (a JSON frame starts with `{`, a frame header with its `FIN` bit).

mod frame;
mod handshake;
mod reader;
mod writer;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use confab_core::{CloseReason, Outbox};
use confab_proto::{ErrorBody, ErrorCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Sleep, timeout};
use tokio_rustls::server::TlsStream;

use crate::App;
use crate::admission::Refusal;
use crate::http::SocketTicket;
use frame::Violation;
use handshake::handshake;
use reader::{Event, Input, Reader};
use writer::write_frames;

/// A new connection during a drain: 503, to be tried again (elsewhere,
/// behind a load balancer) in a moment.
pub(crate) fn draining_refusal() -> Response {
    let mut response =
        (StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down; connect again")
            .into_response();
    response
        .headers_mut()
        .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    response
}

/// Close codes (RFC 6455, section 7.4.1).
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const POLICY_VIOLATION: u16 = 1008;
const TOO_BIG: u16 = 1009;
const SERVICE_RESTART: u16 = 1012;
const TRY_AGAIN_LATER: u16 = 1013;

/// After the server sent its close frame, how long it reads on for the
/// client's close and the end of its stream (so that the socket is not
/// dropped with unread bytes, which would reset it and could lose the
/// close frame on the way).
const LINGER: Duration = Duration::from_secs(2);

/// Answers the handshake, after checking it, the origin and admission,
/// before anything is allocated for the socket.
pub(crate) async fn upgrade(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let accept = match handshake(request.method(), request.headers()) {
        Ok(accept) => accept,
        Err(refused) => return refused.into_response(),
    };
    if app.draining() {
        return draining_refusal();
    }
    if !app.edge.origin_allowed(request.headers()) {
        return (StatusCode::FORBIDDEN, "this origin may not open a WebSocket here")
            .into_response();
    }
    let Some(upgrading) = request.extensions_mut().remove::<OnUpgrade>() else {
        return (StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded")
            .into_response();
    };
    let ip = app.edge.client_ip(peer, request.headers());
    // The socket's own place, taken at accept, goes on with it; a client
    // behind a trusted proxy counts by its own address too.
    // (Taken only once admitted: a refused upgrade leaves it with the
    // keep-alive socket, which goes on counting.)
    let socket = request.extensions().get::<SocketTicket>().cloned();
    let forwarded = ip != crate::admission::canonical(peer.ip());
    let admitted = match (socket.as_ref().is_some_and(SocketTicket::peek), forwarded) {
        (true, false) => Ok((socket.and_then(|s| s.take()), None)),
        (true, true) => {
            app.edge.admit_forwarded(ip).map(|client| (socket.and_then(|s| s.take()), Some(client)))
        }
        (false, _) => app.edge.admit(ip).map(|ticket| (Some(ticket), None)),
    };
    let ticket = match admitted {
        Ok(ticket) => ticket,
        Err(refusal) => {
            let status = match refusal {
                Refusal::Full => StatusCode::SERVICE_UNAVAILABLE,
                Refusal::TooManyFromAddress => StatusCode::TOO_MANY_REQUESTS,
            };
            return (status, refusal.message()).into_response();
        }
    };
    // Held until the socket ends, so shutdown can wait for it.
    let tracked = app.sockets.token();
    tokio::spawn(async move {
        let upgraded = match upgrading.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!("websocket upgrade failed: {e}");
                return;
            }
        };
        // The HTTP server hands over the accepted socket itself (see
        // `http::serve`), with whatever the client sent after its request.
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let (read, write) = parts.io.into_inner().into_split();
                serve(read, write, Vec::from(parts.read_buf), app, Some(ip)).await;
            }
            // Over TLS the halves share the stream's state behind a lock,
            // which each holds only while it polls.
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                Ok(parts) => {
                    let (read, write) = tokio::io::split(parts.io.into_inner());
                    let write = writer::TlsWriter(write);
                    serve(read, write, Vec::from(parts.read_buf), app, Some(ip)).await;
                }
                Err(_) => tracing::error!("upgraded connection is neither TCP nor TLS"),
            },
        }
        drop(ticket);
        drop(tracked);
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// How the reader's loop ended.
enum Ended {
    /// The client closed, or the socket broke: nothing more to read.
    ByClient,
    /// The server closes: read on for the client's close after ours.
    ByServer,
}

/// Runs one connection until either side closes it or the server stops.
async fn serve<R: Input, W: writer::Socket>(
    mut read: R,
    write: W,
    already_read: Vec<u8>,
    app: App,
    peer: Option<IpAddr>,
) {
    let (outbox, receiver) = Outbox::new(app.outbox);
    let mut conn = crate::Conn::open(&app.hub, outbox.clone(), peer);
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "ws").increment(1.0);
    let writer = tokio::spawn(write_frames(write, receiver, app.shutdown.clone()));
    let mut reader = Reader {
        buf: already_read,
        start: 0,
        fragmented: None,
        message: Vec::new(),
        limit: app.hub.config().limits.frame_bytes,
        utf8: frame::Utf8::default(),
        checked: 0,
    };
    // A connection that never says hello is closed after a short while.
    // Boxed, and dropped once `hello` is done: an idle connection should
    // not carry a timer it no longer needs.
    let mut hello_deadline = Some(Box::pin(tokio::time::sleep(app.edge.hello_timeout)));
    // Made once for the whole loop rather than per frame.
    let shutting_down = app.leave_turn();
    tokio::pin!(shutting_down);
    let ended = 'connection: loop {
        // Everything already read, in order, before reading more.
        loop {
            let event = match reader.next() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(Violation::TooBig) => {
                    outbox.close(CloseReason::FrameTooLarge);
                    break 'connection Ended::ByServer;
                }
                Err(Violation::Protocol(why)) => {
                    outbox.push(Bytes::from(frame::close(PROTOCOL_ERROR, why)));
                    break 'connection Ended::ByServer;
                }
                Err(Violation::NotUtf8) => {
                    let close = frame::close(INVALID_PAYLOAD, "text frames must be UTF-8");
                    outbox.push(Bytes::from(close));
                    break 'connection Ended::ByServer;
                }
            };
            let assembled = matches!(event, Event::Assembled);
            let text = match event {
                Event::Text(range) => &reader.buf[range],
                Event::Assembled => &reader.message[..],
                Event::Binary => {
                    conn.reject(ErrorBody::new(
                        ErrorCode::BadRequest,
                        "binary frames are not supported; send JSON text frames",
                    ));
                    continue;
                }
                Event::Ping(range) => {
                    outbox.push(Bytes::from(frame::control(frame::PONG, &reader.buf[range])));
                    continue;
                }
                Event::Pong | Event::Fragment => continue,
                Event::Close(code) => {
                    let echo = code.map(u16::to_be_bytes);
                    let echo = echo.as_ref().map_or(&[][..], |code| &code[..]);
                    outbox.push(Bytes::from(frame::control(frame::CLOSE, echo)));
                    break 'connection Ended::ByClient;
                }
            };
            // Boxed: an op's state lives only while it runs, instead of
            // enlarging every idle connection's task by its size.
            Box::pin(conn.handle_frame(text)).await;
            if assembled {
                reader.message = Vec::new();
            }
        }
        if hello_deadline.is_some() && conn.user().is_some() {
            hello_deadline = None;
        }
        tokio::select! {
            () = until(&mut hello_deadline) => {
                outbox.close(CloseReason::HelloTimeout);
                break Ended::ByServer;
            }
            read = read.read_some(&mut reader.buf) => match read {
                Ok(0) => break Ended::ByClient,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("websocket read failed: {e}");
                    break Ended::ByClient;
                }
            },
            () = &mut shutting_down => {
                conn.close_for_shutdown();
                break Ended::ByServer;
            }
            () = outbox.closing() => break Ended::ByServer,
        }
    };
    // A disconnect: the hub starts the reconnect grace for joined rooms and
    // drops the connection's outbox handles; with ours gone too, the writer
    // sees the end of the queue and finishes.
    drop(conn);
    drop(outbox);
    let _ = writer.await;
    if let Ended::ByServer = ended {
        let _ = Box::pin(timeout(LINGER, read_to_end(&mut read))).await;
    }
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "ws").decrement(1.0);
}

/// Reads and drops what the client still sends, until its end.
async fn read_to_end<R: Input>(read: &mut R) {
    let mut scratch = Vec::new();
    loop {
        scratch.clear();
        match read.read_some(&mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Resolves when `deadline` passes; never, without one.
async fn until(deadline: &mut Option<Pin<Box<Sleep>>>) {
    match deadline {
        Some(deadline) => deadline.await,
        None => std::future::pending().await,
    }
}
