//! Starts a real server on free loopback ports for black-box tests.

#![allow(dead_code)]

use std::net::SocketAddr;

use confab_client::WsClient;
use confab_server::{Config, Server};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct TestServer {
    pub server: Server,
    pub url: String,
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(configure: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::ephemeral(dir.path());
    configure(&mut config);
    let server = Server::start(config).await.expect("server starts");
    let http = server.http_addr();
    TestServer { server, url: format!("ws://{http}/ws"), http, dir }
}

impl TestServer {
    pub async fn client(&self, name: &str) -> WsClient {
        WsClient::hello(&self.url, name).await.expect("hello").0
    }

    /// A client of an existing session (another tab of the same browser).
    pub async fn tab(&self, name: &str, session: &str) -> (WsClient, Value) {
        let mut client = WsClient::connect(&self.url).await.expect("connect");
        let reply = client
            .ok(json!({"op": "hello", "name": name, "session": session}))
            .await
            .expect("hello");
        (client, reply)
    }

    /// Creates a room and returns its code.
    pub async fn create(&self, client: &mut WsClient, args: Value) -> String {
        let mut op = json!({"op": "create"});
        for (k, v) in args.as_object().expect("object") {
            op[k] = v.clone();
        }
        let reply = client.ok(op).await.expect("create");
        reply["room"]["code"].as_str().expect("code").to_owned()
    }

    /// Waits until the server holds `n` hub connections (from `/health`):
    /// the way to know it has seen a client's drop.
    pub async fn wait_for_connections(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + confab_client::WAIT;
        loop {
            let (_, body) = self.get("/health").await;
            let health: Value = serde_json::from_str(&body).expect("health is JSON");
            if health["connections"] == n {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "still {health}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// A plain HTTP/1.1 GET; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.http).await.expect("connect");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http);
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response[9..12].parse().expect("status");
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }
}

pub async fn join(client: &mut WsClient, room: &str) -> Value {
    client.ok(json!({"op": "join", "room": room})).await.expect("join")
}

pub async fn post(client: &mut WsClient, room: &str, body: &str) -> Value {
    client.ok(json!({"op": "post", "room": room, "body": body})).await.expect("post")["message"]
        .clone()
}

/// A code of the same form as `live` that names no room (a test makes a
/// room or two, so one changed character is enough).
pub fn missing_like(live: &str) -> String {
    let first = if live.starts_with('Z') { 'Y' } else { 'Z' };
    std::iter::once(first).chain(live.chars().skip(1)).collect()
}

/// The sorted names of a `members` reply.
pub fn member_names(reply: &Value) -> Vec<String> {
    let members = reply["members"].as_array().expect("an array of members");
    let mut names: Vec<String> =
        members.iter().map(|m| m["name"].as_str().expect("a name").to_owned()).collect();
    names.sort_unstable();
    names
}

/// The bodies of a JSON array of messages.
pub fn bodies(messages: &Value) -> Vec<String> {
    let messages = messages.as_array().expect("an array of messages");
    messages.iter().map(|m| m["body"].as_str().expect("a body").to_owned()).collect()
}

/// The `seq`s of a JSON array of messages.
pub fn seqs(messages: &Value) -> Vec<u64> {
    let messages = messages.as_array().expect("an array of messages");
    messages.iter().map(|m| m["seq"].as_u64().expect("a seq")).collect()
}

/// The `ev` names among frames.
pub fn events(frames: &[Value]) -> Vec<String> {
    frames.iter().filter_map(|f| f["ev"].as_str().map(str::to_owned)).collect()
}

/// The value of the environment variable naming a service a test needs
/// (`CONFAB_TEST_POSTGRES`, `CONFAB_TEST_REDIS`). Such tests are
/// `#[ignore]`d, so a plain `cargo test` lists them as not run; run with
/// `--include-ignored` (as `.ci/run` does), a missing service fails them.
pub fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: this test needs the service it names (see README.md)")
    })
}

/// A fresh, empty PostgreSQL database for one test, from the server at
/// `CONFAB_TEST_POSTGRES`.
pub async fn postgres_database() -> String {
    let url = service("CONFAB_TEST_POSTGRES");
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&url).await.expect("CONFAB_TEST_POSTGRES answers");
    let name = format!(
        "confab_test_{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let drop = format!("DROP DATABASE IF EXISTS {name}");
    sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await.expect("drop database");
    let create = format!("CREATE DATABASE {name}");
    sqlx::query(sqlx::AssertSqlSafe(create)).execute(&admin).await.expect("create database");
    admin.close().await;
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

static NEXT_DATABASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A minimal HTTP/1.1 client over one keep-alive TCP connection: enough
/// for the long-poll routes, with no HTTP client library.
pub mod http {
    use std::net::SocketAddr;

    use serde_json::Value;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    pub struct Http {
        stream: BufReader<TcpStream>,
        host: String,
    }

    #[derive(Debug)]
    pub struct Response {
        pub status: u16,
        /// Header names in lower case.
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Response {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }

        pub fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("{e}: status {} body {:?}", self.status, String::from_utf8_lossy(&self.body))
            })
        }
    }

    impl Http {
        pub async fn connect(addr: SocketAddr) -> std::io::Result<Http> {
            let stream = TcpStream::connect(addr).await?;
            Ok(Http { stream: BufReader::new(stream), host: addr.to_string() })
        }

        /// Writes a request and does not wait for the response.
        pub async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> std::io::Result<()> {
            self.send_with(method, path, &[], body).await
        }

        /// Writes a request with extra headers.
        pub async fn send_with(
            &mut self,
            method: &str,
            path: &str,
            headers: &[(&str, &str)],
            body: &[u8],
        ) -> std::io::Result<()> {
            let mut head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n",
                self.host,
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let stream = self.stream.get_mut();
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
            stream.flush().await
        }

        /// Reads the next response (a body with a length or chunked).
        pub async fn response(&mut self) -> std::io::Result<Response> {
            let status_line = self.line().await?;
            let status = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(format!("status line {status_line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let line = self.line().await?;
                if line.is_empty() {
                    break;
                }
                let (name, value) =
                    line.split_once(':').ok_or_else(|| bad(format!("header {line:?}")))?;
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
            let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            let mut body = Vec::new();
            if let Some(length) = find("content-length") {
                let length: usize = length.parse().map_err(|_| bad(length))?;
                body.resize(length, 0);
                self.stream.read_exact(&mut body).await?;
            } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
                loop {
                    let size = self.line().await?;
                    let size = usize::from_str_radix(size.trim(), 16).map_err(|_| bad(size))?;
                    let mut chunk = vec![0; size + 2];
                    self.stream.read_exact(&mut chunk).await?;
                    if size == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..size]);
                }
            }
            Ok(Response { status, headers, body })
        }

        /// Sends a request and reads its response.
        pub async fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Response {
            self.send(method, path, body).await.expect("send the request");
            self.response().await.expect("read the response")
        }

        /// Reads some bytes of a response and no more.
        pub async fn read_some(&mut self) -> std::io::Result<usize> {
            let mut buffer = [0; 16];
            self.stream.read(&mut buffer).await
        }

        async fn line(&mut self) -> std::io::Result<String> {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok(line.trim_end_matches(['\r', '\n']).to_owned())
        }
    }

    fn bad(what: String) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, what)
    }
}
