//! One bench client: a WebSocket connection that is one member of one room.
//!
//! Its state is kept small (the socket, the room code, a bitmap of the
//! `seq`s it received) because a run may hold a hundred thousand of them.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Interval;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use tokio_util::either::Either;

use super::Shared;
use super::frame::{self, Frame};

/// Initial read buffer of a client socket. tungstenite's default (128 KiB)
/// would cost a large allocation per connection; a frame larger than this
/// grows the buffer as needed.
const READ_BUFFER: usize = 4096;

/// How long one setup step (connect, `hello`, `create`, `join`) may take.
pub(crate) const SETUP_WAIT: Duration = Duration::from_secs(30);

/// A connection: plain TCP, or TLS for a `wss://` URL.
pub(crate) type Stream = Either<TcpStream, TlsStream<TcpStream>>;

pub(crate) type Socket = WebSocketStream<Stream>;

/// A server to connect to: its URL and the address it resolved to.
#[derive(Clone)]
pub(crate) struct Target {
    pub url: String,
    pub addr: SocketAddr,
    /// For `wss://`: the TLS client and the name to ask for. The server's
    /// certificate is not checked (see `unchecked_tls`): the bench
    /// measures a server, it does not authenticate one.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Target {
    /// Resolves a `ws://host:port/path` or `wss://…` URL.
    ///
    /// # Errors
    ///
    /// Not a `ws://` or `wss://` URL, or the host does not resolve.
    pub async fn resolve(url: &str) -> anyhow::Result<Target> {
        let (rest, secure) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => bail!("{url}: expected a ws:// or wss:// URL"),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
        };
        let tls = match secure {
            false => None,
            true => {
                let name = ServerName::try_from(host.to_owned())
                    .with_context(|| format!("{host} is not a server name"))?;
                let client =
                    TlsConnector::from(std::sync::Arc::new(crate::unchecked_tls::config()));
                Some((client, name))
            }
        };
        let port = if secure { 443 } else { 80 };
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:{port}")
        };
        let addr = tokio::net::lookup_host(&authority)
            .await
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .ok_or_else(|| anyhow!("{authority} resolves to no address"))?;
        Ok(Target { url: url.to_owned(), addr, tls })
    }
}

/// Opens a WebSocket to `target` from the local address `source` (any,
/// when `None`), binding before connecting so that several local
/// addresses can be used past one address's ephemeral ports.
///
/// # Errors
///
/// The bind, the connection or the handshake failed.
pub(crate) async fn open(target: &Target, source: Option<IpAddr>) -> anyhow::Result<Socket> {
    let socket = if target.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("cannot bind {ip}"))?;
    }
    let stream =
        socket.connect(target.addr).await.with_context(|| format!("connect {}", target.addr))?;
    stream.set_nodelay(true)?;
    let stream = match &target.tls {
        None => Either::Left(stream),
        Some((client, name)) => Either::Right(
            client
                .connect(name.clone(), stream)
                .await
                .with_context(|| format!("TLS with {}", target.url))?,
        ),
    };
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (socket, _) = client_async_with_config(target.url.as_str(), stream, Some(config))
        .await
        .with_context(|| format!("handshake with {}", target.url))?;
    Ok(socket)
}

/// Sends `op` with `id` and waits for its reply, skipping other frames.
///
/// # Errors
///
/// The connection failed, nothing came within [`SETUP_WAIT`], or the
/// reply was an error.
pub(crate) async fn call(socket: &mut Socket, id: i64, mut op: Value) -> anyhow::Result<Value> {
    op["id"] = json!(id);
    socket.send(Message::text(op.to_string())).await?;
    let prefix = format!(r#"{{"re":{id},"#);
    loop {
        let frame = tokio::time::timeout(SETUP_WAIT, socket.next())
            .await
            .map_err(|_| anyhow!("no reply to {} within {SETUP_WAIT:?}", op["op"]))?;
        match frame {
            Some(Ok(Message::Text(text))) if text.starts_with(&prefix) => {
                let reply: Value = serde_json::from_str(&text)?;
                if reply["ok"] != json!(true) {
                    bail!("{} refused: {}", op["op"], reply["error"]);
                }
                return Ok(reply);
            }
            Some(Ok(Message::Close(close))) => bail!("the server closed the connection: {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the server closed the connection"),
        }
    }
}

/// When and how one member posts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Posting {
    /// The first post (the run's start plus this member's jitter).
    pub first: Instant,
    pub every: Duration,
    /// No post is sent at or after this.
    pub stop: Instant,
    pub size: usize,
}

/// A connection that has joined its room.
pub(crate) struct Member {
    pub socket: Socket,
    pub room: Rc<str>,
    /// This member's index within its room; carried in each body.
    pub index: u32,
    /// Bit `seq` is set once the `message` with that `seq` arrived.
    seen: Vec<u64>,
    /// The highest `seq` received.
    newest: u64,
}

impl Member {
    pub fn new(socket: Socket, room: Rc<str>, index: u32) -> Member {
        Member { socket, room, index, seen: Vec::new(), newest: 0 }
    }

    /// Posts on schedule (if `posting`) and receives until the connection
    /// ends. The run ends by dropping this future.
    ///
    /// # Cancel safety
    ///
    /// Meant to be dropped at the end of a run: a post dropped halfway is
    /// counted as sent and never answered.
    pub async fn run(mut self, shared: Rc<Shared>, posting: Option<Posting>) {
        let mut ticker = posting.map(|p| tokio::time::interval_at(p.first.into(), p.every));
        let mut body = String::new();
        let mut id: u64 = 100;
        loop {
            tokio::select! {
                at = tick(&mut ticker), if ticker.is_some() => {
                    let Some(posting) = posting else { continue };
                    if at >= posting.stop {
                        ticker = None;
                        continue;
                    }
                    id += 1;
                    let sent_ns = nanos(shared.epoch.elapsed());
                    frame::write_body(&mut body, sent_ns, self.index, posting.size);
                    let frame =
                        format!(r#"{{"op":"post","id":{id},"room":"{}","body":"{body}"}}"#, self.room);
                    shared.stats.borrow_mut().posts_sent += 1;
                    if let Err(e) = self.socket.send(Message::text(frame)).await {
                        return shared.lost(format!("post failed: {e}"));
                    }
                }
                received = self.socket.next() => match received {
                    Some(Ok(Message::Text(text))) => self.receive(text.as_bytes(), &shared),
                    Some(Ok(Message::Close(close))) => {
                        return shared.lost(format!("the server closed a connection: {close:?}"));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return shared.lost(format!("connection failed: {e}")),
                    None => return shared.lost("the server closed a connection".to_owned()),
                },
            }
        }
    }

    /// Accounts for one frame from the server.
    fn receive(&mut self, bytes: &[u8], shared: &Shared) {
        let mut stats = shared.stats.borrow_mut();
        match frame::scan(bytes) {
            Frame::Message(message) => {
                stats.received += 1;
                if !self.mark(message.seq) {
                    stats.duplicates += 1;
                } else if message.seq < self.newest {
                    stats.out_of_order += 1;
                }
                self.newest = self.newest.max(message.seq);
                stats.record_latency(shared.since(message.sent_ns));
            }
            Frame::Posted(message) => {
                stats.posts += 1;
                stats.record_ack(shared.since(message.sent_ns));
            }
            Frame::Refused(code) => *stats.refused.entry(code.to_owned()).or_default() += 1,
            Frame::Trouble(kind) => *stats.trouble.entry(kind.to_owned()).or_default() += 1,
            Frame::Other => return,
        }
        if shared.draining.get() && stats.settled(shared.members) {
            shared.settled.notify_one();
        }
    }

    /// Marks `seq` as received; false if it already was.
    fn mark(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        let fresh = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        fresh
    }
}

async fn tick(ticker: &mut Option<Interval>) -> Instant {
    match ticker {
        Some(ticker) => ticker.tick().await.into_std(),
        None => std::future::pending().await,
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
