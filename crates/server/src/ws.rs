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

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use confab_core::{CloseReason, Next, Outbox, OutboxReceiver};
use confab_proto::{ErrorBody, ErrorCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Sleep, timeout};
use tokio_util::sync::CancellationToken;

use crate::App;
use crate::admission::Refusal;
use crate::http::SocketTicket;
use frame::{MAX_HEAD, Violation};

/// Close codes (RFC 6455, section 7.4.1).
const GOING_AWAY: u16 = 1001;
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const POLICY_VIOLATION: u16 = 1008;
const TOO_BIG: u16 = 1009;
const SERVICE_RESTART: u16 = 1012;
const TRY_AGAIN_LATER: u16 = 1013;

/// The most read from the socket at once. What is read is kept until it
/// is handled and then freed, so an idle connection holds no buffer.
const READ_CHUNK: usize = 4096;

/// Frames written in one vectored `write` at most (two slices each: the
/// header and the shared payload).
const BATCH: usize = 32;
/// Up to this many bytes, a batch is copied into one buffer on the stack
/// and written with a plain `write`: for a frame or two that is cheaper
/// than the kernel's walk over a list of slices.
const SMALL_WRITE: usize = 2048;

/// How long one write may wait for a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the closing frames may take to go out before the socket is
/// dropped without them.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
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
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            tracing::error!("upgraded connection is not a TCP socket");
            return;
        };
        let (read, write) = parts.io.into_inner().into_split();
        serve(read, write, Vec::from(parts.read_buf), app, Some(ip)).await;
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

/// A handshake refused: the status and why.
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = (self.0, self.1).into_response();
        if self.0 == StatusCode::UPGRADE_REQUIRED {
            // The version this server speaks (RFC 6455, section 4.4).
            let version = HeaderValue::from_static("13");
            response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, version);
        }
        response
    }
}

/// Checks an opening handshake (RFC 6455, section 4.2.1); returns the
/// `Sec-WebSocket-Accept` value for it, or the refusal.
fn handshake(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, Refused> {
    if method != Method::GET {
        return Err(Refused(StatusCode::METHOD_NOT_ALLOWED, "a WebSocket opens with GET"));
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(Refused(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade request"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|version| version != "13") {
        return Err(Refused(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is spoken here",
        ));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|key| is_key(key.as_bytes()))
    else {
        return Err(Refused(StatusCode::BAD_REQUEST, "missing or malformed Sec-WebSocket-Key"));
    };
    Ok(HeaderValue::from_str(&accept_key(key.as_bytes())).expect("base64 is a valid header value"))
}

/// `Sec-WebSocket-Accept` for a key: base64 of the SHA-1 of the key and
/// the protocol's GUID (RFC 6455, section 4.2.2).
fn accept_key(key: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = Sha1::new().chain_update(key).chain_update(GUID).finalize();
    base64(&digest)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `key` is 16 bytes in base64 (RFC 6455, section 4.2.1): 22
/// characters of the alphabet, the last of which carries only 2 bits,
/// then `==`.
fn is_key(key: &[u8]) -> bool {
    let digit = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    match key {
        [data @ .., last, b'=', b'='] if data.len() == 21 => {
            data.iter().all(digit) && matches!(last, b'A' | b'Q' | b'g' | b'w')
        }
        _ => false,
    }
}

/// What the client's bytes have been read into, and the message being
/// assembled from fragments.
struct Reader {
    /// Bytes read and not yet handled; `start` is where they begin.
    buf: Vec<u8>,
    start: usize,
    /// Fragments of the current message: its opcode and length so far,
    /// and for a text message the fragments themselves.
    fragmented: Option<(u8, usize)>,
    message: Vec<u8>,
    limit: usize,
    /// The text message being received, checked as its bytes arrive.
    utf8: frame::Utf8,
    /// Payload bytes of a text frame still arriving that were checked.
    checked: usize,
}

/// One thing the reader found.
enum Event {
    /// A whole text message at this range of `Reader::buf`.
    Text(std::ops::Range<usize>),
    /// A whole text message assembled in `Reader::message`.
    Assembled,
    /// A whole binary message.
    Binary,
    Ping(std::ops::Range<usize>),
    Pong,
    /// A close frame, with the code to echo.
    Close(Option<u16>),
    /// A fragment was kept; the message is not complete.
    Fragment,
}

impl Reader {
    /// The next event in what has been read; `None` when more must be read.
    fn next(&mut self) -> Result<Option<Event>, Violation> {
        let so_far = self.fragmented.map_or(0, |(_, len)| len);
        let Some(frame) = frame::parse(&mut self.buf[self.start..], so_far, self.limit)? else {
            self.check_arriving(so_far)?;
            // Keep only the unfinished frame; an idle reader keeps nothing.
            self.buf.drain(..self.start);
            self.start = 0;
            if self.buf.is_empty() {
                self.buf = Vec::new();
            }
            return Ok(None);
        };
        let payload = self.start + frame.payload.start..self.start + frame.payload.end;
        self.start += frame.end();
        if self.is_text(frame.opcode) {
            let checked = std::mem::take(&mut self.checked);
            self.utf8.feed(&self.buf[payload.start + checked..payload.end])?;
            if frame.fin {
                self.utf8.finish()?;
            }
        }
        let event = match (frame.opcode, self.fragmented) {
            (frame::PING, _) => Event::Ping(payload),
            (frame::PONG, _) => Event::Pong,
            (frame::CLOSE, _) => Event::Close(frame::close_code(&self.buf[payload])?),
            (frame::TEXT | frame::BINARY, Some(_)) => {
                return Err(Violation::Protocol("a new message before the last one ended"));
            }
            (frame::CONTINUATION, None) => {
                return Err(Violation::Protocol("a continuation frame outside a message"));
            }
            (frame::TEXT, None) if frame.fin => Event::Text(payload),
            (frame::BINARY, None) if frame.fin => Event::Binary,
            (opcode, None) => {
                self.fragmented = Some((opcode, payload.len()));
                if opcode == frame::TEXT {
                    self.message.extend_from_slice(&self.buf[payload]);
                }
                Event::Fragment
            }
            (_, Some((opcode, len))) => {
                self.fragmented = Some((opcode, len + payload.len()));
                if opcode == frame::TEXT {
                    self.message.extend_from_slice(&self.buf[payload]);
                }
                match (frame.fin, opcode) {
                    (false, _) => Event::Fragment,
                    (true, frame::TEXT) => {
                        self.fragmented = None;
                        Event::Assembled
                    }
                    (true, _) => {
                        self.fragmented = None;
                        Event::Binary
                    }
                }
            }
        };
        Ok(Some(event))
    }

    /// Whether a frame with `opcode` carries text: a text frame starting
    /// a message, or a continuation of a text message.
    fn is_text(&self, opcode: u8) -> bool {
        match self.fragmented {
            None => opcode == frame::TEXT,
            Some((first, _)) => opcode == frame::CONTINUATION && first == frame::TEXT,
        }
    }

    /// Checks the part of a text frame that has arrived, so that a byte
    /// that is not UTF-8 closes the connection when it arrives rather than
    /// when the frame (up to the frame limit) is complete.
    fn check_arriving(&mut self, so_far: usize) -> Result<(), Violation> {
        let buf = &self.buf[self.start..];
        let Some(head) = frame::read_head(buf, so_far, self.limit)? else { return Ok(()) };
        if !self.is_text(head.opcode) {
            return Ok(());
        }
        let arrived = buf.len().saturating_sub(head.start).min(head.len);
        if arrived > self.checked {
            let payload = &buf[head.start..head.start + arrived];
            let utf8 = &mut self.utf8;
            frame::unmasked_pieces(payload, self.checked, head.mask, |piece| utf8.feed(piece))?;
            self.checked = arrived;
        }
        Ok(())
    }

    /// Reads what the socket has, without waiting; `Ok(0)` at its end.
    ///
    /// The read goes through a buffer on the stack, and only what was read
    /// is kept: a connection whose op awaits (a `hello` that writes its
    /// session, a `join` that reads history) holds the size of its frame,
    /// not a whole read chunk, and ten thousand connecting at once do not
    /// leave the allocator ten thousand chunks' worth of holes.
    fn fill(&mut self, socket: &OwnedReadHalf) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK];
        let read = socket.try_read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..read]);
        Ok(read)
    }
}

/// How the reader's loop ended.
enum Ended {
    /// The client closed, or the socket broke: nothing more to read.
    ByClient,
    /// The server closes: read on for the client's close after ours.
    ByServer,
}

/// Runs one connection until either side closes it or the server stops.
async fn serve(
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    already_read: Vec<u8>,
    app: App,
    peer: Option<IpAddr>,
) {
    let (outbox, receiver) = Outbox::new(app.outbox);
    let mut conn = app.hub.connect_from(outbox.clone(), peer);
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
    let shutting_down = app.shutdown.cancelled();
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
            ready = read.readable() => {
                if ready.is_err() {
                    break Ended::ByClient;
                }
                match reader.fill(&read) {
                    Ok(0) => break Ended::ByClient,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        tracing::debug!("websocket read failed: {e}");
                        break Ended::ByClient;
                    }
                }
            }
            () = &mut shutting_down => {
                outbox.close(CloseReason::Shutdown);
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
        let _ = Box::pin(timeout(LINGER, read_to_end(&read))).await;
    }
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "ws").decrement(1.0);
}

/// Reads and drops what the client still sends, until its end.
async fn read_to_end(read: &OwnedReadHalf) {
    let mut scratch = Vec::new();
    while read.readable().await.is_ok() {
        scratch.clear();
        scratch.reserve(READ_CHUNK);
        match read.try_read_buf(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
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

/// The writing half of a socket: the writer needs only these two.
pub(crate) trait Socket: Send + Sync + 'static {
    /// Writes what it can at once, without waiting.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// The same from several buffers.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Resolves when the socket may take more.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl Socket for OwnedWriteHalf {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        OwnedWriteHalf::try_write(self, buf)
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        OwnedWriteHalf::try_write_vectored(self, bufs)
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        OwnedWriteHalf::writable(self)
    }
}

/// Bytes the socket did not take at once, and how far they have gone out.
struct Unsent {
    bytes: Vec<u8>,
    at: usize,
}

/// What one attempt to write the queued frames did.
enum Written {
    /// Everything queued went out.
    All,
    /// A close frame went out: nothing more may follow it.
    Closed,
    /// The socket took part; the rest waits for it. `closing`: the rest
    /// ends with a close frame.
    Partly(Unsent, bool),
}

/// A frame queued already framed (a control frame), rather than JSON.
fn is_framed(frame: &[u8]) -> bool {
    frame.first().is_some_and(|first| first & 0x80 != 0)
}

/// Writes `first` and whatever else is queued, as many frames per
/// vectored write as fit, without waiting: each frame is its header and
/// its shared payload.
fn write_now<S: Socket>(
    socket: &S,
    first: Bytes,
    outbox: &mut OutboxReceiver,
) -> io::Result<Written> {
    let mut next = Some(first);
    loop {
        let mut frames: [Bytes; BATCH] = Default::default();
        let mut count = 0;
        let mut closing = false;
        while count < BATCH && !closing {
            let Some(frame) = next.take().or_else(|| outbox.try_recv()) else { break };
            closing = frame.first() == Some(&(0x80 | frame::CLOSE));
            frames[count] = frame;
            count += 1;
        }
        if count == 0 {
            return Ok(Written::All);
        }
        let mut heads = [[0u8; MAX_HEAD]; BATCH];
        let mut slices = [IoSlice::new(&[]); 2 * BATCH];
        let mut used = 0;
        let mut total = 0;
        for (frame, head) in frames[..count].iter().zip(heads.iter_mut()) {
            if !is_framed(frame) {
                let len = frame::head(head, frame::TEXT, frame.len());
                let head: &[u8; MAX_HEAD] = head;
                slices[used] = IoSlice::new(&head[..len]);
                used += 1;
                total += len;
            }
            slices[used] = IoSlice::new(frame);
            used += 1;
            total += frame.len();
        }
        let attempt = if total <= SMALL_WRITE {
            let mut flat = [0u8; SMALL_WRITE];
            let mut at = 0;
            for slice in &slices[..used] {
                flat[at..at + slice.len()].copy_from_slice(slice);
                at += slice.len();
            }
            socket.try_write(&flat[..total])
        } else {
            socket.try_write_vectored(&slices[..used])
        };
        let written = match attempt {
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if written == total {
            if closing {
                return Ok(Written::Closed);
            }
            continue;
        }
        let mut rest = Vec::with_capacity(total - written);
        let mut skip = written;
        for slice in &slices[..used] {
            if skip >= slice.len() {
                skip -= slice.len();
            } else {
                rest.extend_from_slice(&slice[skip..]);
                skip = 0;
            }
        }
        return Ok(Written::Partly(Unsent { bytes: rest, at: 0 }, closing));
    }
}

/// Writes `unsent` to the end, waiting for the socket as it must. Progress
/// is kept in `unsent`, so a caller that stops waiting can finish later.
async fn send<S: Socket>(socket: &S, unsent: &mut Unsent) -> io::Result<()> {
    while unsent.at < unsent.bytes.len() {
        socket.writable().await?;
        match socket.try_write(&unsent.bytes[unsent.at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => unsent.at += written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Drains the outbox into the socket until the connection ends.
///
/// A write that the socket does not take at once races the close signal:
/// a client that reads nothing stalls it, and an overflow or a shutdown
/// must still close the connection at once rather than when
/// [`WRITE_TIMEOUT`] runs out. Dropping the socket at the end sends the
/// client the end of the stream.
async fn write_frames<S: Socket>(
    socket: S,
    mut outbox: OutboxReceiver,
    shutdown: CancellationToken,
) {
    let signal = outbox.signal();
    let (reason, mut unfinished) = loop {
        // One atomic load tells a close (a shutdown reaches the writer as a
        // close of the outbox, from `serve`).
        let frame = match outbox.next().await {
            Next::Frame(frame) => frame,
            Next::Closed(reason) => break (reason, None),
            // Every sender is gone: the client left, or the reader queued
            // the last frame.
            Next::End => return,
        };
        let (mut rest, closing) = match write_now(&socket, frame, &mut outbox) {
            Ok(Written::All) => continue,
            Ok(Written::Closed) | Err(_) => return,
            Ok(Written::Partly(rest, closing)) => (rest, closing),
        };
        // Boxed: the stalled write's state lives only while it waits,
        // instead of enlarging every idle connection's writer task.
        let written = tokio::select! {
            biased;
            written = Box::pin(timeout(WRITE_TIMEOUT, send(&socket, &mut rest))) => written,
            reason = signal.closed() => break (reason, Some(rest)),
            () = shutdown.cancelled() => break (CloseReason::Shutdown, Some(rest)),
        };
        match written {
            Ok(Ok(())) if !closing => {}
            Ok(Ok(())) | Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!("websocket write stalled for {WRITE_TIMEOUT:?}; closing");
                return;
            }
        }
    };
    // Boxed like the stalled write: the closing state is needed once.
    let _ = Box::pin(timeout(CLOSE_TIMEOUT, async {
        // A frame half written is finished first, or the close frame would
        // land inside it.
        if let Some(rest) = unfinished.as_mut() {
            send(&socket, rest).await?;
        }
        if reason.flush_first()
            && let Some(frame) = outbox.try_recv()
        {
            match write_now(&socket, frame, &mut outbox)? {
                Written::All => {}
                Written::Closed => return Ok(()),
                Written::Partly(mut rest, closing) => {
                    send(&socket, &mut rest).await?;
                    if closing {
                        return Ok(());
                    }
                }
            }
        }
        let code = match reason {
            CloseReason::Overflow => TRY_AGAIN_LATER,
            CloseReason::Shutdown => GOING_AWAY,
            CloseReason::FrameTooLarge => TOO_BIG,
            CloseReason::HelloTimeout => POLICY_VIOLATION,
            CloseReason::Resync => SERVICE_RESTART,
        };
        let close = frame::close(code, reason.as_str());
        send(&socket, &mut Unsent { bytes: close, at: 0 }).await
    }))
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn the_accept_key_is_the_rfc_s() {
        // RFC 6455, section 1.3.
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    /// A socket whose peer reads nothing: it takes no byte, ever.
    struct Stalled;

    impl Socket for Stalled {
        fn try_write(&self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }

        fn try_write_vectored(&self, _: &[IoSlice<'_>]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }

        fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
            std::future::pending()
        }
    }

    /// A socket that takes at most `per_write` bytes a write, and keeps
    /// each write apart.
    struct Recorder {
        writes: std::sync::Arc<Mutex<Vec<Vec<u8>>>>,
        per_write: usize,
    }

    impl Socket for Recorder {
        fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            self.try_write_vectored(&[IoSlice::new(buf)])
        }

        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut write: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            write.truncate(self.per_write);
            let len = write.len();
            self.writes.lock().unwrap().push(write);
            Ok(len)
        }

        fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
            std::future::ready(Ok(()))
        }
    }

    fn recorder(per_write: usize) -> (Recorder, std::sync::Arc<Mutex<Vec<Vec<u8>>>>) {
        let writes = std::sync::Arc::default();
        (Recorder { writes: std::sync::Arc::clone(&writes), per_write }, writes)
    }

    /// Regression: the writer awaited a stalled write without watching the
    /// close signal, so an overflowing connection whose client read nothing
    /// was never closed, and its socket and task stayed forever.
    #[tokio::test(start_paused = true)]
    async fn an_overflow_during_a_stalled_write_ends_the_writer() {
        let (outbox, receiver) = Outbox::new(1);
        let writer = tokio::spawn(write_frames(Stalled, receiver, CancellationToken::new()));
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
        let writer = tokio::spawn(write_frames(Stalled, receiver, shutdown.clone()));
        assert!(outbox.push(Bytes::from_static(b"{}")));
        tokio::task::yield_now().await;
        shutdown.cancel();
        let ended = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), writer).await;
        assert!(ended.is_ok(), "the writer still waits for the stalled write");
    }

    #[tokio::test]
    async fn queued_frames_go_out_framed_in_one_write() {
        let (socket, writes) = recorder(usize::MAX);
        let (outbox, mut receiver) = Outbox::new(64);
        let long = Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(300)));
        for frame in [Bytes::from_static(b"{\"a\":1}"), long.clone(), Bytes::from_static(b"{}")] {
            assert!(outbox.push(frame));
        }
        let first = receiver.try_recv().unwrap();
        assert!(matches!(write_now(&socket, first, &mut receiver), Ok(Written::All)));
        let writes = writes.lock().unwrap();
        assert_eq!(writes.len(), 1, "one write for the three frames");
        let mut expected = vec![0x81, 7];
        expected.extend_from_slice(b"{\"a\":1}");
        expected.extend_from_slice(&[0x81, 126]);
        expected.extend_from_slice(&(long.len() as u16).to_be_bytes());
        expected.extend_from_slice(&long);
        expected.extend_from_slice(&[0x81, 2, b'{', b'}']);
        assert_eq!(writes[0], expected);
    }

    #[tokio::test]
    async fn a_large_burst_goes_out_in_vectored_writes_of_a_batch_each() {
        let (socket, writes) = recorder(usize::MAX);
        let (outbox, mut receiver) = Outbox::new(64);
        let frames: Vec<Bytes> = (0..40)
            .map(|n| Bytes::from(format!("{{\"n\":{n:03},\"pad\":\"{}\"}}", "x".repeat(90))))
            .collect();
        for frame in &frames {
            assert!(outbox.push(frame.clone()));
        }
        let first = receiver.try_recv().unwrap();
        assert!(matches!(write_now(&socket, first, &mut receiver), Ok(Written::All)));
        let writes = writes.lock().unwrap();
        let sizes: Vec<usize> = writes.iter().map(Vec::len).collect();
        // A batch of 32 frames (2 bytes of header each), then the other 8.
        let framed = 2 + frames[0].len();
        assert_eq!(sizes, [BATCH * framed, 8 * framed]);
        let expected: Vec<u8> =
            frames.iter().flat_map(|f| [&[0x81, f.len() as u8][..], &f[..]].concat()).collect();
        assert_eq!(writes.concat(), expected);
    }

    #[tokio::test]
    async fn a_write_the_socket_takes_in_part_is_finished_in_order_and_nothing_follows_a_close() {
        let (socket, writes) = recorder(5);
        let (outbox, receiver) = Outbox::new(64);
        assert!(outbox.push(Bytes::from_static(b"{\"n\":1}")));
        assert!(outbox.push(Bytes::from(frame::close(1000, "bye"))));
        // Queued after the close: never written.
        assert!(outbox.push(Bytes::from_static(b"{\"n\":2}")));
        let writer = tokio::spawn(write_frames(socket, receiver, CancellationToken::new()));
        writer.await.unwrap();
        let written: Vec<u8> = writes.lock().unwrap().concat();
        let mut expected = vec![0x81, 7];
        expected.extend_from_slice(b"{\"n\":1}");
        expected.extend_from_slice(&frame::close(1000, "bye"));
        assert_eq!(written, expected);
        drop(outbox);
    }
}
