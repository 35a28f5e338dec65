//! A confab client over WebSocket, speaking JSON values.
//!
//! Used by the tests and tools. Replies are matched to requests by `id`;
//! events that arrive meanwhile are kept, in order, for [`WsClient::next`].

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How long a client waits for an expected frame before giving up.
pub const WAIT: Duration = Duration::from_secs(10);

/// What a client can speak over: a TCP socket, or a TLS stream on one.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

pub struct WsClient {
    socket: WebSocketStream<Box<dyn Stream>>,
    next_id: i64,
    /// Frames received while waiting for something else.
    queued: VecDeque<Value>,
    /// The close frame, once the server closed the connection.
    closed: Option<Option<CloseFrame>>,
}

/// The address of a `ws://` or `wss://` URL's host and port.
async fn address_of(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let authority = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .and_then(|rest| rest.split('/').next())
        .with_context(|| format!("not a ws:// URL: {url}"))?;
    tokio::net::lookup_host(authority)
        .await?
        .next()
        .with_context(|| format!("no address for {authority}"))
}

impl WsClient {
    /// Connects to `url` (`ws://host:port/ws`).
    ///
    /// # Errors
    ///
    /// The connection or the WebSocket handshake failed.
    pub async fn connect(url: &str) -> anyhow::Result<WsClient> {
        let addr = address_of(url).await?;
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connect {url}"))?;
        WsClient::connect_over(url, stream).await
    }

    /// Speaks WebSocket to `url` over `stream`, already connected (for
    /// `wss://`, a TLS stream).
    ///
    /// # Errors
    ///
    /// The WebSocket handshake failed.
    pub async fn connect_over(
        url: &str,
        stream: impl Stream + 'static,
    ) -> anyhow::Result<WsClient> {
        let stream: Box<dyn Stream> = Box::new(stream);
        let (socket, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .with_context(|| format!("handshake {url}"))?;
        Ok(WsClient { socket, next_id: 1, queued: VecDeque::new(), closed: None })
    }

    /// Connects as a proxy forwarding the client at `client` would: with
    /// `X-Forwarded-For` (which a server believes only from a proxy it
    /// trusts).
    ///
    /// # Errors
    ///
    /// As [`WsClient::connect`].
    pub async fn connect_forwarded(url: &str, client: &str) -> anyhow::Result<WsClient> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let addr = address_of(url).await?;
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connect {url}"))?;
        let mut request = url.into_client_request()?;
        request.headers_mut().insert("x-forwarded-for", client.parse()?);
        let stream: Box<dyn Stream> = Box::new(stream);
        let (socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .with_context(|| format!("handshake {url}"))?;
        Ok(WsClient { socket, next_id: 1, queued: VecDeque::new(), closed: None })
    }

    /// Connects with a small, fixed socket receive buffer of `bytes`, for
    /// a client that is to fall behind soon when it stops reading (Linux
    /// otherwise grows a loopback socket's buffer to tens of megabytes).
    ///
    /// # Errors
    ///
    /// As [`WsClient::connect`].
    pub async fn connect_small(url: &str, bytes: u32) -> anyhow::Result<WsClient> {
        let addr = address_of(url).await?;
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_recv_buffer_size(bytes)?;
        let stream = socket.connect(addr).await.with_context(|| format!("connect {url}"))?;
        WsClient::connect_over(url, stream).await
    }

    /// Connects and says `hello` as `name`; returns the client and the reply.
    ///
    /// # Errors
    ///
    /// As [`WsClient::connect`], or `hello` was refused.
    pub async fn hello(url: &str, name: &str) -> anyhow::Result<(WsClient, Value)> {
        let mut client = WsClient::connect(url).await?;
        let reply = client.ok(json!({"op": "hello", "name": name})).await?;
        Ok((client, reply))
    }

    /// Sends a text frame as it is.
    ///
    /// # Errors
    ///
    /// The socket is closed.
    pub async fn send_text(&mut self, text: impl Into<String>) -> anyhow::Result<()> {
        self.socket.send(Message::Text(text.into().into())).await?;
        Ok(())
    }

    /// Sends `op` with a fresh `id` and returns the reply (`ok` true or false).
    ///
    /// # Errors
    ///
    /// The socket closed, or no reply came within [`WAIT`].
    pub async fn request(&mut self, mut op: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        op["id"] = json!(id);
        self.send_text(op.to_string()).await?;
        self.reply_to(id).await
    }

    /// Like [`WsClient::request`], but fails unless the reply is `ok`.
    ///
    /// # Errors
    ///
    /// As `request`, or the reply is an error.
    pub async fn ok(&mut self, op: Value) -> anyhow::Result<Value> {
        let reply = self.request(op.clone()).await?;
        if reply["ok"] != json!(true) {
            bail!("{op} failed: {reply}");
        }
        Ok(reply)
    }

    /// Sends `op` and returns the error code of its reply.
    ///
    /// # Errors
    ///
    /// As `request`, or the reply was a success.
    pub async fn error_code(&mut self, op: Value) -> anyhow::Result<String> {
        let reply = self.request(op.clone()).await?;
        match reply["error"]["code"].as_str() {
            Some(code) if reply["ok"] == json!(false) => Ok(code.to_owned()),
            _ => bail!("{op} should have failed: {reply}"),
        }
    }

    /// Waits for the reply with `re == id`, keeping other frames for later.
    async fn reply_to(&mut self, id: i64) -> anyhow::Result<Value> {
        loop {
            let frame = self.receive().await?;
            if frame["re"] == json!(id) {
                return Ok(frame);
            }
            self.queued.push_back(frame);
        }
    }

    /// The next frame not consumed yet (reply or event).
    ///
    /// # Errors
    ///
    /// The socket closed or nothing came within [`WAIT`].
    pub async fn next(&mut self) -> anyhow::Result<Value> {
        match self.queued.pop_front() {
            Some(frame) => Ok(frame),
            None => self.receive().await,
        }
    }

    /// The next event named `ev`, skipping (and returning in `skipped`)
    /// anything else.
    ///
    /// # Errors
    ///
    /// As [`WsClient::next`].
    pub async fn event(&mut self, ev: &str) -> anyhow::Result<Value> {
        loop {
            let frame = self.next().await?;
            if frame["ev"] == json!(ev) {
                return Ok(frame);
            }
        }
    }

    /// Sends a `ping` and returns every frame that arrived before its reply.
    /// Anything the server queued for this connection before the ping is
    /// in the result.
    ///
    /// # Errors
    ///
    /// As [`WsClient::request`].
    pub async fn drain(&mut self) -> anyhow::Result<Vec<Value>> {
        self.ok(json!({"op": "ping"})).await?;
        Ok(self.queued.drain(..).collect())
    }

    /// Waits until the server closes the connection; returns its close code.
    ///
    /// # Errors
    ///
    /// Nothing closed within [`WAIT`].
    pub async fn closed(&mut self) -> anyhow::Result<Option<u16>> {
        loop {
            if let Some(frame) = &self.closed {
                return Ok(frame.as_ref().map(|f| u16::from(f.code)));
            }
            match self.receive().await {
                Ok(frame) => self.queued.push_back(frame),
                Err(_) if self.closed.is_some() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the connection from this side.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    async fn receive(&mut self) -> anyhow::Result<Value> {
        loop {
            if self.closed.is_some() {
                bail!("connection closed");
            }
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .map_err(|_| anyhow!("nothing received within {WAIT:?}"))?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).with_context(|| format!("frame {text}"));
                }
                Some(Ok(Message::Close(frame))) => self.closed = Some(frame),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    self.closed.get_or_insert(None);
                    return Err(e.into());
                }
                None => {
                    self.closed.get_or_insert(None);
                }
            }
        }
    }
}
