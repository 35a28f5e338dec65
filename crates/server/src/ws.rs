//! The WebSocket transport at `GET /ws`.
//!
//! Each socket gets two halves: the reader feeds frames into the hub
//! connection, and the writer drains the connection's outbox, writing
//! every frame that is already queued before one flush, so a burst costs
//! few syscalls.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::Response;
use bytes::Bytes;
use confab_core::{CloseReason, Next, Outbox, OutboxReceiver};
use confab_proto::{ErrorBody, ErrorCode};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Sleep, timeout};
use tokio_util::sync::CancellationToken;

use crate::App;
use crate::admission::Refusal;

/// Close codes (RFC 6455).
const GOING_AWAY: u16 = 1001;
const TOO_BIG: u16 = 1009;
const TRY_AGAIN_LATER: u16 = 1013;
const POLICY_VIOLATION: u16 = 1008;

/// Read buffer of a socket (see `upgrade`), which is also the most read
/// at once: a usual client frame (a post of a line or two) in one read; a
/// larger frame takes more reads. Every idle connection holds one.
const READ_BUFFER: usize = 256;

/// Checks origin and admission before anything is allocated for the
/// socket, then upgrades.
pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !app.edge.origin_allowed(&headers) {
        return (StatusCode::FORBIDDEN, "this origin may not open a WebSocket here")
            .into_response();
    }
    let ip = app.edge.client_ip(peer, &headers);
    let ticket = match app.edge.admit(ip) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            let status = match refusal {
                Refusal::Full => StatusCode::SERVICE_UNAVAILABLE,
                Refusal::TooManyFromAddress => StatusCode::TOO_MANY_REQUESTS,
            };
            return (status, refusal.message()).into_response();
        }
    };
    let limit = app.hub.config().limits.frame_bytes;
    // Held until the socket ends, so shutdown can wait for it.
    let tracked = app.sockets.token();
    // tungstenite's default read buffer (128 KiB) is allocated per socket
    // and zero-filled before every read: 150 KB of memory per idle
    // connection and a 128 KiB memset per frame received. Frames are
    // small; a larger one grows the buffer as needed.
    ws.read_buffer_size(READ_BUFFER).max_message_size(limit).max_frame_size(limit).on_upgrade(
        move |socket: WebSocket| {
            // Split before the future is made, and box it: axum keeps the
            // callback's future inside its own task, so an unboxed future
            // would hold a dead copy of the socket for the connection's
            // whole life.
            let (sink, stream) = socket.split();
            Box::pin(async move {
                serve(sink, stream, app, Some(ip)).await;
                drop(ticket);
                drop(tracked);
            })
        },
    )
}

/// Runs one connection until either side closes it or the server stops.
///
/// Generic over the socket halves so it can be driven by anything that
/// looks like a WebSocket.
pub(crate) async fn serve<W, R, E>(sink: W, mut stream: R, app: App, peer: Option<IpAddr>)
where
    W: Sink<Message> + Unpin + Send + 'static,
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display + Into<axum::Error>,
{
    let (outbox, receiver) = Outbox::new(app.outbox);
    let mut conn = app.hub.connect_from(outbox.clone(), peer);
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "ws").increment(1.0);
    let writer = tokio::spawn(write(sink, receiver, app.shutdown.clone()));
    // A connection that never says hello is closed after a short while.
    // Boxed, and dropped once `hello` is done: an idle connection should
    // not carry a timer it no longer needs.
    let mut hello_deadline = Some(Box::pin(tokio::time::sleep(app.edge.hello_timeout)));
    // Made once for the whole loop rather than per frame (see `write`).
    let shutting_down = app.shutdown.cancelled();
    tokio::pin!(shutting_down);
    loop {
        if hello_deadline.is_some() && conn.user().is_some() {
            hello_deadline = None;
        }
        tokio::select! {
            () = until(&mut hello_deadline) => {
                outbox.close(CloseReason::HelloTimeout);
                break;
            }
            frame = stream.next() => match frame {
                // Boxed: an op's state lives only while it runs, instead of
                // enlarging every idle connection's task by its size.
                Some(Ok(Message::Text(text))) => {
                    Box::pin(conn.handle_frame(text.as_bytes())).await;
                }
                Some(Ok(Message::Binary(_))) => conn.reject(ErrorBody::new(
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text frames",
                )),
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) => {
                    let e: axum::Error = e.into();
                    tracing::debug!("websocket read failed: {e}");
                    if is_too_big(e) {
                        outbox.close(CloseReason::FrameTooLarge);
                    }
                    break;
                }
            },
            () = &mut shutting_down => {
                outbox.close(CloseReason::Shutdown);
                break;
            }
            () = outbox.closing() => break,
        }
    }
    // A disconnect: the hub starts the reconnect grace for joined rooms and
    // drops the connection's outbox handles; with ours gone too, the writer
    // sees the end of the queue and finishes.
    drop(conn);
    drop(outbox);
    let _ = writer.await;
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "ws").decrement(1.0);
}

/// Resolves when `deadline` passes; never, without one.
async fn until(deadline: &mut Option<Pin<Box<Sleep>>>) {
    match deadline {
        Some(deadline) => deadline.await,
        None => std::future::pending().await,
    }
}

fn is_too_big(error: axum::Error) -> bool {
    let inner = error.into_inner();
    matches!(inner.downcast_ref::<tungstenite::Error>(), Some(tungstenite::Error::Capacity(_)))
}

/// How long one write may wait for a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the closing frames may take to go out before the socket is
/// dropped without them.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Drains the outbox into the socket until the connection ends.
///
/// A write races the close signal: a client that reads nothing stalls the
/// write, and an overflow or a shutdown must still close it at once rather
/// than when [`WRITE_TIMEOUT`] runs out.
async fn write<W>(mut sink: W, mut outbox: OutboxReceiver, shutdown: CancellationToken)
where
    W: Sink<Message> + Unpin,
{
    let signal = outbox.signal();
    let reason = loop {
        // One atomic load tells a close; polling cancellation futures on
        // every wake-up took a lock each (a shutdown reaches the writer as
        // a close of the outbox, from `serve`).
        let frame = match outbox.next().await {
            Next::Frame(frame) => frame,
            Next::Closed(reason) => break reason,
            Next::End => {
                // Every sender is gone: the client left. Finish the close
                // handshake, if it started one.
                let _ = Box::pin(timeout(CLOSE_TIMEOUT, sink.close())).await;
                return;
            }
        };
        // The write first: one that completes at once (the usual case)
        // never polls the close futures; a stalled one is cut short by them.
        let written = tokio::select! {
            biased;
            // Boxed: the write's state lives only while it runs, instead of
            // enlarging every idle connection's writer task by its size.
            written = Box::pin(timeout(WRITE_TIMEOUT, write_queued(&mut sink, frame, &mut outbox))) => written,
            reason = signal.closed() => break reason,
            () = shutdown.cancelled() => break CloseReason::Shutdown,
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(())) => return,
            Err(_) => {
                tracing::debug!("websocket write stalled for {WRITE_TIMEOUT:?}; closing");
                return;
            }
        }
    };
    // Boxed like the write: the closing state is needed once, at the end.
    let _ = Box::pin(timeout(CLOSE_TIMEOUT, async {
        if reason.flush_first() {
            while let Some(frame) = outbox.try_recv() {
                sink.feed(text(frame)).await.map_err(drop)?;
            }
        }
        let code = match reason {
            CloseReason::Overflow => TRY_AGAIN_LATER,
            CloseReason::Shutdown => GOING_AWAY,
            CloseReason::FrameTooLarge => TOO_BIG,
            CloseReason::HelloTimeout => POLICY_VIOLATION,
        };
        let close = CloseFrame { code, reason: Utf8Bytes::from_static(reason.as_str()) };
        sink.send(Message::Close(Some(close))).await.map_err(drop)?;
        sink.close().await.map_err(drop)
    }))
    .await;
}

/// Writes `first` and whatever else is queued already, then flushes once:
/// a burst of frames costs one write, not one each.
async fn write_queued<W>(sink: &mut W, first: Bytes, outbox: &mut OutboxReceiver) -> Result<(), ()>
where
    W: Sink<Message> + Unpin,
{
    sink.feed(text(first)).await.map_err(drop)?;
    while let Some(frame) = outbox.try_recv() {
        sink.feed(text(frame)).await.map_err(drop)?;
    }
    sink.flush().await.map_err(drop)
}

fn text(frame: Bytes) -> Message {
    // Frames come from serde_json, so they are always UTF-8.
    Message::Text(Utf8Bytes::try_from(frame).expect("frames are UTF-8 JSON"))
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A socket whose peer reads nothing: it takes no frame, ever.
    struct Stalled;

    impl Sink<Message> for Stalled {
        type Error = axum::Error;

        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }

        fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            unreachable!("never ready")
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
    }

    /// Regression: the writer awaited a stalled write without watching the
    /// close signal, so an overflowing connection whose client read nothing
    /// was never closed, and its socket and task stayed forever.
    #[tokio::test(start_paused = true)]
    async fn an_overflow_during_a_stalled_write_ends_the_writer() {
        let (outbox, receiver) = Outbox::new(1);
        let writer = tokio::spawn(write(Stalled, receiver, CancellationToken::new()));
        assert!(outbox.push(Bytes::from_static(b"{}")));
        tokio::task::yield_now().await;
        // The writer is stuck on the first frame; the next ones overflow.
        while outbox.push(Bytes::from_static(b"{}")) {}
        let ended = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), writer).await;
        assert!(ended.is_ok(), "the writer still waits for the stalled write");
        // Well before the write timeout: the close, not the timeout, ended it.
        assert!(CLOSE_TIMEOUT + Duration::from_secs(1) < WRITE_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_during_a_stalled_write_ends_the_writer() {
        let (outbox, receiver) = Outbox::new(4);
        let shutdown = CancellationToken::new();
        let writer = tokio::spawn(write(Stalled, receiver, shutdown.clone()));
        assert!(outbox.push(Bytes::from_static(b"{}")));
        tokio::task::yield_now().await;
        shutdown.cancel();
        let ended = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), writer).await;
        assert!(ended.is_ok(), "the writer still waits for the stalled write");
    }
}
