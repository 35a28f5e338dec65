//! The long-polling transport at `/lp`, for clients that cannot hold a
//! WebSocket. A long-poll connection is one hub connection, exactly like a
//! WebSocket: the same frames, limits, presence and grace.
//!
//! - `POST /lp` opens a connection: `{"conn": token}`.
//! - `POST /lp/<conn>` applies a JSON array of client frames, in order: 204.
//! - `GET /lp/<conn>?ack=<n>` acknowledges frames up to `n` and answers the
//!   unacknowledged ones, waiting up to the poll wait (25 s) for one.
//! - `DELETE /lp/<conn>` closes it: a drop, so grace applies.
//!
//! # Delivery
//!
//! Every frame the hub queues for a connection gets a number: 1, 2, 3…
//! A pump task per connection moves frames from the hub's [`Outbox`] into
//! a buffer of unacknowledged frames. A poll answers the whole buffer and
//! names the number of its last frame in the `Confab-Last` header; a frame
//! leaves the buffer only when a later poll acknowledges it. A response
//! lost on the way (a proxy cut it, the tab froze) is therefore answered
//! again by the next poll, and the client drops what it has already seen
//! by number. A poll without `ack` acknowledges everything answered before.
//!
//! Overflow policy: the buffer holds as many frames as an outbox. A client
//! that lets more pile up unacknowledged is closed like a WebSocket whose
//! outbox overflowed; it opens a new connection and resumes with `since`.
//!
//! # Concurrency
//!
//! The registry's map and each connection's buffer are behind short
//! `parking_lot` locks, held for a lookup or a queue operation and never
//! across `.await`. The hub [`Conn`] is behind an async mutex, held while
//! the frames of one POST are applied: it keeps the POSTs of a connection
//! in order, and closing waits for a POST in progress to finish. A parked
//! poll costs a [`Notify`] waiter and a timer, nothing that runs.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use confab_core::{CloseReason, Outbox, OutboxReceiver};

use crate::Conn;
use confab_proto::{ErrorBody, ErrorCode};
use parking_lot::Mutex;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::App;
use crate::admission::{Refusal, Ticket};

/// The response header naming the number of the last frame in a poll's
/// answer (for `[]`, the last frame acknowledged).
const LAST_FRAME: &str = "confab-last";

/// Characters of a connection token, from 62: about 190 random bits.
const TOKEN_CHARS: usize = 32;

/// The long-poll routes. A POST body may be as large as one frame, and no
/// answer may be cached.
pub(crate) fn router(app: &App) -> Router<App> {
    let limit = app.hub.config().limits.frame_bytes;
    Router::new()
        .route("/lp", post(open))
        .route("/lp/{conn}", post(send).get(poll).delete(close).layer(DefaultBodyLimit::max(limit)))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// The live long-poll connections, by token: a cheap `Clone` handle.
#[derive(Clone)]
pub(crate) struct Registry {
    shared: Arc<Shared>,
}

struct Shared {
    /// A `parking_lot` mutex: held for one lookup, insert or removal,
    /// never across `.await`.
    conns: Mutex<HashMap<String, Arc<LpConn>>>,
    /// How long a poll waits for a frame before answering `[]`.
    wait: Duration,
    /// A connection with no poll for this long is closed.
    idle: Duration,
}

impl Registry {
    pub(crate) fn new(wait: Duration, idle: Duration) -> Registry {
        Registry { shared: Arc::new(Shared { conns: Mutex::new(HashMap::new()), wait, idle }) }
    }

    fn get(&self, token: &str) -> Option<Arc<LpConn>> {
        self.shared.conns.lock().get(token).cloned()
    }

    fn take(&self, token: &str) -> Option<Arc<LpConn>> {
        self.shared.conns.lock().remove(token)
    }
}

/// One long-poll connection.
struct LpConn {
    /// The hub connection; `None` once closed. Dropping it is the
    /// disconnect that starts the grace of the rooms it joined.
    conn: tokio::sync::Mutex<Option<Conn>>,
    queue: Mutex<Queue>,
    /// Wakes parked polls: a frame arrived, the connection closed, or a
    /// newer poll superseded them.
    wake: Notify,
    /// Cancelled when the connection closes; ends the pump.
    stop: CancellationToken,
}

/// Unacknowledged frames and the bookkeeping of polls.
struct Queue {
    frames: VecDeque<Bytes>,
    /// The number of `frames[0]`; every frame below it is acknowledged.
    first: u64,
    /// The highest number answered so far.
    answered: u64,
    /// Polls in progress.
    polls: usize,
    /// Counts polls; a parked poll whose ticket is no longer the latest
    /// answers at once, so a connection has at most one parked poll.
    ticket: u64,
    /// When a poll last began or ended.
    last_poll: Instant,
    closed: bool,
}

impl Queue {
    /// The number of the last frame buffered (or acknowledged, if none is).
    fn last(&self) -> u64 {
        self.first + self.frames.len() as u64 - 1
    }
}

/// What a poll found.
enum Answer {
    Frames { body: Vec<u8>, last: u64 },
    Gone,
}

impl LpConn {
    fn new(conn: Conn) -> LpConn {
        LpConn {
            conn: tokio::sync::Mutex::new(Some(conn)),
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                first: 1,
                answered: 0,
                polls: 0,
                ticket: 0,
                last_poll: Instant::now(),
                closed: false,
            }),
            wake: Notify::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Buffers `frame` and whatever else is queued in the outbox, and
    /// wakes the parked poll. False when the buffer is over `bound`.
    fn buffer(&self, frame: Bytes, outbox: &mut OutboxReceiver, bound: usize) -> bool {
        let fits = {
            let mut queue = self.queue.lock();
            queue.frames.push_back(frame);
            while let Some(frame) = outbox.try_recv() {
                queue.frames.push_back(frame);
            }
            queue.frames.len() <= bound
        };
        self.wake.notify_waiters();
        fits
    }

    /// When the connection is due to close for want of polls, if no poll
    /// comes before then.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        let queue = self.queue.lock();
        if queue.polls > 0 { Instant::now() + idle } else { queue.last_poll + idle }
    }

    /// Starts a poll: applies its acknowledgement and takes a ticket.
    ///
    /// # Errors
    ///
    /// `ack` names a frame that was never answered; nothing changes.
    fn begin_poll(&self, ack: Option<u64>) -> Result<u64, String> {
        let ticket = {
            let mut queue = self.queue.lock();
            let ack = ack.unwrap_or(queue.answered);
            if ack > queue.answered {
                return Err(format!(
                    "ack {ack} is beyond the last frame answered, {}",
                    queue.answered
                ));
            }
            if ack >= queue.first {
                let count = (ack + 1 - queue.first) as usize;
                queue.frames.drain(..count);
                queue.first = ack + 1;
            }
            queue.polls += 1;
            queue.ticket += 1;
            queue.last_poll = Instant::now();
            queue.ticket
        };
        // An older poll still parked answers now.
        self.wake.notify_waiters();
        Ok(ticket)
    }

    fn end_poll(&self) {
        let mut queue = self.queue.lock();
        queue.polls -= 1;
        queue.last_poll = Instant::now();
    }

    /// The answer for the poll holding `ticket`, or `None` to keep waiting.
    fn answer(&self, ticket: u64, timed_out: bool) -> Option<Answer> {
        let mut queue = self.queue.lock();
        if queue.frames.is_empty() {
            if queue.closed {
                return Some(Answer::Gone);
            }
            if !timed_out && queue.ticket == ticket {
                return None;
            }
        }
        let size = queue.frames.iter().map(|f| f.len() + 1).sum::<usize>() + 2;
        let mut body = Vec::with_capacity(size);
        body.push(b'[');
        for (i, frame) in queue.frames.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(frame);
        }
        body.push(b']');
        let last = queue.last();
        queue.answered = queue.answered.max(last);
        Some(Answer::Frames { body, last })
    }

    /// Closes the connection: parked polls answer, the pump ends, and the
    /// hub connection is dropped once a POST in progress has finished.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if dropped while waiting for a POST, the pump drops
    /// the hub connection instead.
    async fn close(&self) {
        self.queue.lock().closed = true;
        self.wake.notify_waiters();
        self.stop.cancel();
        drop(self.conn.lock().await.take());
    }
}

/// Ends a poll however the handler ends, including when the client goes
/// away and the server drops the handler mid-wait.
struct Polling<'a>(&'a LpConn);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.end_poll();
    }
}

/// `POST /lp`: the same origin and admission checks as a WebSocket
/// upgrade, then a new connection.
async fn open(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if app.draining() {
        return error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "shutting down");
    }
    if !app.edge.origin_allowed(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            ErrorCode::BadRequest,
            "this origin may not open a connection here",
        );
    }
    let ip = app.edge.client_ip(peer, &headers);
    let ticket = match app.edge.admit(ip) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            let (status, code) = match refusal {
                Refusal::Full => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
                Refusal::TooManyFromAddress => {
                    (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited)
                }
            };
            return error(status, code, refusal.message());
        }
    };
    let random: String =
        rand::rng().sample_iter(&Alphanumeric).take(TOKEN_CHARS).map(char::from).collect();
    // In a cluster the token names its node, `<node>.<random>`, so that a
    // load balancer can send every request of the connection there (see
    // docs/operations.md).
    let token = match app.hub.cluster_healthy() {
        Some(_) => format!("{}.{random}", app.hub.config().node),
        None => random,
    };
    let (outbox, receiver) = Outbox::new(app.outbox);
    let lp = Arc::new(LpConn::new(Conn::open(&app.hub, outbox, Some(ip))));
    app.lp.shared.conns.lock().insert(token.clone(), lp.clone());
    // Tracked so shutdown waits for the connection to close.
    app.sockets.spawn(pump(lp, receiver, token.clone(), app.clone(), ticket));
    axum::Json(json!({ "conn": token })).into_response()
}

/// Moves frames from the outbox into the buffer until the connection
/// ends, then closes it. Every way a connection ends passes through here
/// (a DELETE closes it first and this finds it closed); the admission
/// `ticket` is held until then.
async fn pump(
    lp: Arc<LpConn>,
    mut outbox: OutboxReceiver,
    token: String,
    app: App,
    ticket: Ticket,
) {
    let signal = outbox.signal();
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "lp").increment(1.0);
    let idle = app.lp.shared.idle;
    let hello_at = Instant::now() + app.edge.hello_timeout;
    let mut greeted = false;
    let turn = app.leave_turn();
    tokio::pin!(turn);
    let reason = loop {
        let idle_at = lp.idle_deadline(idle);
        tokio::select! {
            biased;
            reason = signal.closed() => break Some(reason),
            () = &mut turn => {
                if let Some(conn) = lp.conn.lock().await.as_ref() {
                    conn.close_for_shutdown();
                }
                break Some(CloseReason::Shutdown);
            }
            () = app.shutdown.cancelled() => break Some(CloseReason::Shutdown),
            () = lp.stop.cancelled() => break None,
            () = tokio::time::sleep_until(hello_at), if !greeted => {
                // A POST in progress may be the hello: wait for it.
                greeted = lp.conn.lock().await.as_ref().is_some_and(|c| c.user().is_some());
                if !greeted {
                    break Some(CloseReason::HelloTimeout);
                }
            }
            () = tokio::time::sleep_until(idle_at) => {
                if lp.idle_deadline(idle) <= Instant::now() {
                    tracing::debug!("long-poll connection not polled for {idle:?}; closing");
                    break None;
                }
            }
            frame = outbox.recv() => match frame {
                Some(frame) => if !lp.buffer(frame, &mut outbox, app.outbox) {
                    metrics::counter!(crate::metrics::OUTBOX_OVERFLOWS).increment(1);
                    break Some(CloseReason::Overflow);
                },
                None => break Some(CloseReason::Shutdown),
            },
        }
    };
    if let Some(reason) = reason {
        tracing::debug!("closing a long-poll connection: {}", reason.as_str());
        // Shutdown's `closed` events still go to the parked poll.
        if reason.flush_first()
            && let Some(frame) = outbox.try_recv()
        {
            lp.buffer(frame, &mut outbox, usize::MAX);
        }
    }
    {
        // Only this connection's entry: the token is never reused.
        let mut conns = app.lp.shared.conns.lock();
        if conns.get(&token).is_some_and(|c| Arc::ptr_eq(c, &lp)) {
            conns.remove(&token);
        }
    }
    lp.close().await;
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "lp").decrement(1.0);
    drop(ticket);
}

/// `POST /lp/<conn>`: applies the frames of a JSON array in order.
///
/// # Cancel safety
///
/// The frames are applied by a task of their own, so a client that goes
/// away mid-request never leaves an op half-applied.
async fn send(
    State(app): State<App>,
    Path(token): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(lp) = app.lp.get(&token) else { return unknown() };
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = app.hub.config().limits.frame_bytes;
            let mut response = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                &format!(
                    "the body counts as one frame: at most {limit} bytes; nothing was applied"
                ),
            );
            // The rest of the body is never read, so the connection cannot
            // carry another request: say so, rather than let the client's
            // next pooled request meet a reset.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return response;
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &e.body_text()),
    };
    // Decoded whole before anything is applied: a bad body applies nothing.
    let frames: Vec<Box<RawValue>> = match serde_json::from_slice(&body) {
        Ok(frames) => frames,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                &format!("the body must be a JSON array of frames: {e}"),
            );
        }
    };
    let applied = tokio::spawn(async move {
        let mut conn = lp.conn.lock().await;
        let Some(conn) = conn.as_mut() else { return false };
        for frame in &frames {
            conn.handle_frame(frame.get().as_bytes()).await;
        }
        true
    });
    match applied.await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => unknown(),
        Err(e) => {
            tracing::error!("applying long-poll frames failed: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error")
        }
    }
}

#[derive(Deserialize)]
struct PollQuery {
    ack: Option<u64>,
}

/// `GET /lp/<conn>`: the unacknowledged frames, once there is one, or `[]`
/// when the poll wait passes first.
///
/// # Cancel safety
///
/// Cancel safe: answering acknowledges nothing (only a later poll's `ack`
/// does), so a poll dropped at any point, even mid-answer, loses nothing.
async fn poll(
    State(app): State<App>,
    Path(token): Path<String>,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Response {
    let Some(lp) = app.lp.get(&token) else { return unknown() };
    let ack = match query {
        Ok(Query(query)) => query.ack,
        Err(e) => return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &e.body_text()),
    };
    let ticket = match lp.begin_poll(ack) {
        Ok(ticket) => ticket,
        Err(message) => return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &message),
    };
    let _polling = Polling(&lp);
    let deadline = Instant::now() + app.lp.shared.wait;
    let answer = loop {
        // Registered before looking, so a wake between the look and the
        // wait is not missed.
        let woken = lp.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Some(answer) = lp.answer(ticket, false) {
            break answer;
        }
        tokio::select! {
            () = &mut woken => {}
            () = tokio::time::sleep_until(deadline) => {
                break lp.answer(ticket, true).expect("a timed-out poll always answers");
            }
        }
    };
    match answer {
        Answer::Gone => unknown(),
        Answer::Frames { body, last } => {
            let mut response = body.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(LAST_FRAME, HeaderValue::from(last));
            response
        }
    }
}

/// `DELETE /lp/<conn>`: closes the connection, as a dropped WebSocket.
async fn close(State(app): State<App>, Path(token): Path<String>) -> Response {
    let Some(lp) = app.lp.take(&token) else { return unknown() };
    lp.close().await;
    StatusCode::NO_CONTENT.into_response()
}

fn unknown() -> Response {
    error(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such long-poll connection; open a new one and resume",
    )
}

fn error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": ErrorBody::new(code, message) }))).into_response()
}
