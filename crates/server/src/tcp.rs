//! The terminal line protocol over TCP (default port 6789).
//!
//! The layers are those of the rest of the server: bytes become lines
//! ([`line`]), a line becomes a [`Command`] ([`command`]), and a command
//! becomes one or more ops of the JSON protocol applied to the hub through
//! an ordinary [`Conn`]. What the hub queues in the connection's outbox
//! (replies and events, as JSON) is turned back into lines for a person
//! ([`render`]). A terminal user is therefore a user like any other: the
//! same rooms, limits, visibility and presence as on the WebSocket.
//!
//! One task runs each connection. It waits for whichever comes first: a
//! line from the client, a frame in the outbox, a timeout, or the signal
//! to close; and it writes what it has before waiting again. Writing
//! inline is safe because the hub never waits for this task: it pushes
//! into the bounded outbox, which closes the connection when it overflows.
//! A write that stalls (a client that reads nothing) is cut off after
//! [`WRITE_TIMEOUT`]. Commands are taken one at a time: the next line is
//! read only once the last command is answered, so a command's output is
//! never interleaved with the next one's, and pushes fall between them.

/// Appends one formatted line (and its `\n`) to a `String`.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        writeln!($out, $($arg)*).expect("writing to a String cannot fail")
    }};
}

mod command;
pub(crate) mod line;
mod render;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use confab_core::{CloseReason, CloseSignal, Outbox};

use crate::Conn;
use confab_proto::{ClientOp, Request};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};

use self::command::{Command, Misuse};
use self::line::{Line, LineReader};
use self::render::{Frame, Pending};
use crate::App;
use crate::admission::Ticket;

/// How long a new connection has to give a username.
pub(crate) const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a logged-in connection may send nothing before it is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How long one write may wait for a client that does not read.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a closing connection keeps reading what the client still
/// sends. Closing a socket with unread input makes the kernel answer with a
/// reset, which can destroy the last lines on their way to the client.
const LINGER: Duration = Duration::from_secs(2);

/// The most messages `%list` shows: the newest of what you may see.
const LIST_LIMIT: u32 = 200;

/// A protocol of lines served on a listener of its own.
#[derive(Clone, Copy)]
pub(crate) enum Lines {
    /// The terminal protocol.
    Terminal,
    /// IRC (`irc.rs`).
    Irc,
}

impl Lines {
    /// What its connections are called in the logs.
    fn name(self) -> &'static str {
        match self {
            Lines::Terminal => "terminal",
            Lines::Irc => "irc",
        }
    }

    /// The line a client refused admission is sent before its socket
    /// closes (over plain TCP only).
    fn refusal(self, reason: &str) -> String {
        match self {
            Lines::Terminal => format!("bye: {reason}\n"),
            Lines::Irc => format!("ERROR :{reason}\r\n"),
        }
    }

    /// Runs one session from `peer` until either side ends it; its place
    /// at the server, `ticket`, is held until then.
    async fn serve<S>(self, stream: S, app: App, peer: Option<IpAddr>, ticket: Ticket)
    where
        S: AsyncRead + AsyncWrite,
    {
        match self {
            Lines::Terminal => serve(stream, app, peer, ticket).await,
            Lines::Irc => crate::irc::serve(stream, app, peer, ticket).await,
        }
    }
}

/// Accepts connections of `protocol` until the server shuts down: each
/// admitted, then given a TLS handshake when the server has a certificate
/// (with the terminal's ALPN: a client naming no protocol is served).
pub(crate) async fn listen(listener: TcpListener, app: App, protocol: Lines) {
    loop {
        let accepted = tokio::select! {
            // A drain refuses new connections: the listener closes.
            () = app.draining.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((mut stream, peer)) => {
                tracing::debug!(%peer, "{} connection", protocol.name());
                // Line-at-a-time output should not wait for Nagle.
                let _ = stream.set_nodelay(true);
                // Held until the session ends, so shutdown can wait for it.
                let tracked = app.sockets.token();
                let app = app.clone();
                tokio::spawn(async move {
                    // Admission before anything is allocated for the session.
                    match (app.edge.admit(peer.ip()), app.terminal_tls.clone()) {
                        (Ok(ticket), None) => {
                            protocol.serve(stream, app, Some(peer.ip()), ticket).await
                        }
                        (Ok(_), Some(_)) if !app.edge.allow_handshake(peer.ip()) => {}
                        (Ok(ticket), Some(tls)) => {
                            let stream = tokio::select! {
                                stream = tls.accept(stream) => stream,
                                () = app.draining.cancelled() => None,
                            };
                            if let Some(stream) = stream {
                                protocol.serve(stream, app, Some(peer.ip()), ticket).await;
                            }
                        }
                        (Err(refusal), None) => {
                            let mut out = protocol.refusal(refusal.message());
                            send(&mut stream, &mut out).await;
                        }
                        // Over TLS the words would need a handshake first: a
                        // refused client is not given one.
                        (Err(_), Some(_)) => {}
                    }
                    drop(tracked);
                });
            }
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of
                // spinning on the same error.
                tracing::warn!("{} accept failed: {e}", protocol.name());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Why a session ended.
enum End {
    /// The client sent `%exit`, and its rooms are left.
    Exit,
    /// The client closed the connection, or it broke.
    Hangup,
    /// The hub or the server closed it.
    Closed(CloseReason),
    /// No username in time.
    LoginTimeout,
    /// Nothing from the client for too long.
    Idle,
}

/// Runs one terminal session from `peer` until either side ends it; its
/// place at the server, `ticket`, is held until then.
///
/// Generic over the stream so tests can drive it through an in-memory pipe.
pub(crate) async fn serve<S>(stream: S, app: App, peer: Option<IpAddr>, ticket: Ticket)
where
    S: AsyncRead + AsyncWrite,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let limit = app.hub.config().limits.frame_bytes;
    let mut lines = LineReader::new(reader, limit);
    let (outbox, mut receiver) = Outbox::new(app.outbox);
    let signal = receiver.signal();
    let mut session = Session::new(Conn::open(&app.hub, outbox, peer), limit);
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "tcp").increment(1.0);
    say!(
        session.out,
        "welcome to confab {} ({})",
        env!("CARGO_PKG_VERSION"),
        app.hub.config().node
    );
    say!(session.out, "username:");
    let mut deadline = Instant::now() + LOGIN_TIMEOUT;
    let turn = app.leave_turn();
    tokio::pin!(turn);
    let end = loop {
        if !session.out.is_empty() {
            match send_unless_closed(&mut writer, &mut session.out, &signal, &app).await {
                Sent::Done => {}
                Sent::Gone => break End::Hangup,
                Sent::Interrupted(reason) => break End::Closed(reason),
            }
        }
        if session.exited && session.pending.is_empty() {
            break End::Exit;
        }
        tokio::select! {
            biased;
            reason = signal.closed() => break End::Closed(reason),
            () = &mut turn => {
                session.conn.close_for_shutdown();
                break End::Closed(CloseReason::Shutdown);
            }
            frame = receiver.recv() => {
                let Some(frame) = frame else { break End::Closed(CloseReason::Shutdown) };
                session.frame(&frame);
                while let Some(frame) = receiver.try_recv() {
                    session.frame(&frame);
                }
            }
            // One command at a time: the next line is read once the last
            // one is answered (a post to a persistent room is answered when
            // it is stored, after this returns).
            line = lines.next_line(), if session.pending.is_empty() && !session.exited => {
                match line {
                    Ok(Some(line)) => session.line(line).await,
                    Ok(None) => break End::Hangup,
                    Err(e) => {
                        tracing::debug!("terminal read failed: {e}");
                        break End::Hangup;
                    }
                }
                // Replies the hub queued at once are written with the
                // command's own output, in order.
                while let Some(frame) = receiver.try_recv() {
                    session.frame(&frame);
                }
                if session.logged_in {
                    deadline = Instant::now() + IDLE_TIMEOUT;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                break if session.logged_in { End::Idle } else { End::LoginTimeout };
            }
        }
    };
    let farewell = match end {
        End::Hangup => None,
        End::Exit => Some("goodbye".to_owned()),
        End::Closed(reason) => {
            if reason.flush_first() {
                while let Some(frame) = receiver.try_recv() {
                    session.frame(&frame);
                }
            }
            Some(match reason {
                CloseReason::Shutdown => "the server is shutting down".to_owned(),
                CloseReason::Overflow => {
                    "too much output went unread; reconnect and read faster".to_owned()
                }
                other => other.as_str().to_owned(),
            })
        }
        End::LoginTimeout => Some(format!("no username within {} s", LOGIN_TIMEOUT.as_secs())),
        End::Idle => Some(format!("nothing received for {} minutes", IDLE_TIMEOUT.as_secs() / 60)),
    };
    if let Some(farewell) = farewell {
        say!(session.out, "bye: {farewell}");
        send(&mut writer, &mut session.out).await;
    }
    let _ = timeout(WRITE_TIMEOUT, writer.shutdown()).await;
    // A disconnect: rooms not left with `%exit` start the member's
    // reconnect grace now, not after the linger below.
    drop(session);
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "tcp").decrement(1.0);
    if !app.shutdown.is_cancelled() {
        let _ = timeout(LINGER, lines.discard()).await;
    }
    drop(ticket);
}

/// What became of [`send_unless_closed`].
pub(crate) enum Sent {
    /// Everything was written.
    Done,
    /// The client is gone or stopped reading.
    Gone,
    /// The connection was told to close mid-write; `out` holds what is left
    /// of the line being written, so a farewell starts on a line of its own.
    Interrupted(CloseReason),
}

/// Writes and clears `out`, unless the connection is told to close first.
///
/// A client that reads nothing stalls this write, and with it the session's
/// loop: without the race, an outbox overflow or a shutdown would go
/// unnoticed until [`WRITE_TIMEOUT`] ran out.
pub(crate) async fn send_unless_closed<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut String,
    signal: &CloseSignal,
    app: &App,
) -> Sent {
    let mut written = 0;
    let outcome = tokio::select! {
        biased;
        reason = signal.closed() => Err(reason),
        () = app.shutdown.cancelled() => Err(CloseReason::Shutdown),
        done = timeout(WRITE_TIMEOUT, write_counted(writer, out.as_bytes(), &mut written)) => Ok(done),
    };
    match outcome {
        Ok(Ok(Ok(()))) => {
            out.clear();
            Sent::Done
        }
        Ok(Ok(Err(e))) => {
            tracing::debug!("terminal write failed: {e}");
            out.clear();
            Sent::Gone
        }
        Ok(Err(_)) => {
            tracing::debug!("terminal write stalled for {WRITE_TIMEOUT:?}; closing");
            out.clear();
            Sent::Gone
        }
        Err(reason) => {
            let rest = &out[written..];
            let line_end = if written == 0 || out.as_bytes()[written - 1] == b'\n' {
                0
            } else {
                rest.find('\n').map_or(rest.len(), |at| at + 1)
            };
            *out = rest[..line_end].to_owned();
            Sent::Interrupted(reason)
        }
    }
}

/// Writes all of `bytes`, counting in `written` what went out so far.
async fn write_counted<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    written: &mut usize,
) -> std::io::Result<()> {
    while *written < bytes.len() {
        let n = writer.write(&bytes[*written..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        *written += n;
    }
    writer.flush().await
}

/// Writes and clears `out`. False if the client is gone or stopped reading.
pub(crate) async fn send<W: AsyncWrite + Unpin>(writer: &mut W, out: &mut String) -> bool {
    let written = timeout(WRITE_TIMEOUT, async {
        writer.write_all(out.as_bytes()).await?;
        writer.flush().await
    })
    .await;
    out.clear();
    match written {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!("terminal write failed: {e}");
            false
        }
        Err(_) => {
            tracing::debug!("terminal write stalled for {WRITE_TIMEOUT:?}; closing");
            false
        }
    }
}

/// A terminal user's side of a hub connection: turns commands into ops and
/// the hub's frames into lines.
struct Session {
    conn: Conn,
    /// Ops sent and not yet answered, by `id`.
    pending: HashMap<i64, Pending>,
    next_id: i64,
    /// Whether `hello` has been answered: lines are commands, not names.
    logged_in: bool,
    /// Whether `%exit` has been handled.
    exited: bool,
    /// The session token to present with the username (`%session`).
    session: Option<String>,
    /// The longest line accepted, in bytes.
    line_limit: usize,
    /// Lines waiting to be written.
    out: String,
}

impl Session {
    fn new(conn: Conn, line_limit: usize) -> Self {
        Session {
            conn,
            line_limit,
            pending: HashMap::new(),
            next_id: 1,
            logged_in: false,
            exited: false,
            session: None,
            out: String::new(),
        }
    }

    /// Acts on one line from the client.
    async fn line(&mut self, line: Line) {
        let text = match line {
            Line::Complete(bytes) => match command::decode(&bytes) {
                Ok(text) => text.to_owned(),
                Err(misuse) => return self.misuse(&misuse),
            },
            Line::TooLong(len) => {
                return say!(
                    self.out,
                    "error: too_large: the line is {len} bytes; at most {} are allowed",
                    self.line_limit
                );
            }
        };
        if !self.logged_in && !text.trim_start().starts_with('%') {
            if text.trim().is_empty() {
                return say!(self.out, "username:");
            }
            let hello = ClientOp::Hello {
                name: text,
                session: self.session.clone(),
                resume: None,
                pow: None,
            };
            return self.request(Pending::Hello, hello).await;
        }
        match command::parse(&text) {
            Ok(None) => {}
            Ok(Some(command)) => self.command(command).await,
            Err(misuse) => self.misuse(&misuse),
        }
    }

    fn misuse(&mut self, misuse: &Misuse) {
        say!(self.out, "error: {}", render::clean(&misuse.to_string()));
    }

    /// Sends the op a command stands for.
    async fn command(&mut self, command: Command) {
        let (pending, op) = match command {
            Command::Help => return render::help(&mut self.out),
            Command::Exit => return self.exit().await,
            Command::Session { .. } if self.logged_in => {
                return say!(self.out, "error: %session comes before the username, not after");
            }
            Command::Session { token } => {
                self.session = Some(token);
                return say!(self.out, "session noted; username:");
            }
            _ if !self.logged_in => {
                return say!(self.out, "error: log in first: type a username (or %exit)");
            }
            Command::Join { room } => {
                (Pending::Join, ClientOp::Join { room, since: None, rev: None })
            }
            Command::Leave { room } => {
                (Pending::Leave { room: self.label(&room) }, ClientOp::Leave { room })
            }
            Command::Post { room, subject, body } => (
                Pending::Post { room: self.label(&room) },
                ClientOp::Post { room, body, subject: Some(subject), cid: None, reply: None },
            ),
            Command::Reply { room, id, body } => (
                Pending::Post { room: self.label(&room) },
                ClientOp::Post { room, body, subject: None, cid: None, reply: Some(id) },
            ),
            Command::Edit { room, id, body } => (
                Pending::Moderate { room: self.label(&room) },
                ClientOp::Edit { room, seq: id, body },
            ),
            Command::React { room, id, emoji } => (
                Pending::Moderate { room: self.label(&room) },
                ClientOp::React { room, seq: id, emoji },
            ),
            Command::Users { room } => {
                (Pending::Users { room: self.label(&room) }, ClientOp::Members { room })
            }
            Command::List { room } => (
                Pending::List { room: self.label(&room) },
                ClientOp::History { room, before: None, limit: Some(LIST_LIMIT) },
            ),
            Command::Message { room, id } => {
                (Pending::Message { room: self.label(&room) }, ClientOp::Get { room, seq: id })
            }
            Command::Role { room, role, name } => (
                Pending::Role { room: self.label(&room) },
                ClientOp::Role { room, user: None, name: Some(name), role },
            ),
            Command::Lock { room, locked } => {
                (Pending::Lock { room: self.label(&room) }, ClientOp::Lock { room, locked })
            }
            Command::Kick { room, name } => (
                Pending::Kick { room: self.label(&room) },
                ClientOp::Kick { room, user: None, name: Some(name), minutes: None },
            ),
            Command::Ban { room, name } => (
                Pending::Ban { room: self.label(&room) },
                ClientOp::Ban { room, user: None, name: Some(name), minutes: None },
            ),
            Command::Unban { room, user } => (
                Pending::Unban { room: self.label(&room), user: user.clone() },
                ClientOp::Unban { room, user },
            ),
            Command::Bans { room } => {
                (Pending::Bans { room: self.label(&room) }, ClientOp::Bans { room })
            }
            Command::Mute { room, name, shadow } => (
                Pending::Moderate { room: self.label(&room) },
                ClientOp::Mute { room, user: None, name: Some(name), minutes: None, shadow },
            ),
            Command::Unmute { room, user } => {
                (Pending::Moderate { room: self.label(&room) }, ClientOp::Unmute { room, user })
            }
            Command::Slow { room, seconds } => {
                (Pending::Moderate { room: self.label(&room) }, ClientOp::Slow { room, seconds })
            }
            Command::Title { room, title } => {
                (Pending::Moderate { room: self.label(&room) }, ClientOp::Title { room, title })
            }
            Command::Delete { room, id } => {
                (Pending::Moderate { room: self.label(&room) }, ClientOp::Delete { room, seq: id })
            }
            Command::Report { room, id, reason } => (
                Pending::Report { room: self.label(&room), id },
                ClientOp::Report { room, seq: id, reason },
            ),
            Command::Groups => (Pending::Groups, ClientOp::Rooms),
        };
        self.request(pending, op).await;
    }

    /// `%exit`: leaves every room; the session ends once the replies
    /// are written.
    async fn exit(&mut self) {
        let rooms: Vec<String> = self.conn.rooms().map(str::to_owned).collect();
        for room in rooms {
            self.request(Pending::Leave { room: room.clone() }, ClientOp::Leave { room }).await;
        }
        self.exited = true;
    }

    /// The name to show for a room the user typed: its code as the hub
    /// spells it when this connection has joined it, else as typed.
    fn label(&self, typed: &str) -> String {
        self.conn.rooms().find(|code| code.eq_ignore_ascii_case(typed)).unwrap_or(typed).to_owned()
    }

    async fn request(&mut self, pending: Pending, op: ClientOp) {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        self.conn.handle(Request { id: Some(id), op }).await;
    }

    /// Writes out one frame the hub queued.
    fn frame(&mut self, frame: &[u8]) {
        let written = match render::decode(frame) {
            Ok(Frame::Event(event)) => {
                render::event(&mut self.out, &event);
                Ok(())
            }
            Ok(Frame::Reply { re, outcome }) => {
                let Some(pending) = self.pending.remove(&re) else {
                    tracing::warn!(re, "reply to no op sent on this terminal connection");
                    return;
                };
                match outcome {
                    Ok(reply) => {
                        if pending == Pending::Hello {
                            self.logged_in = true;
                        }
                        render::reply(&mut self.out, &pending, reply)
                    }
                    Err(error) => {
                        render::failure(&mut self.out, &pending, &error);
                        if pending == Pending::Hello {
                            say!(self.out, "username:");
                        }
                        Ok(())
                    }
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!("cannot show a frame on a terminal connection: {e}");
        }
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
