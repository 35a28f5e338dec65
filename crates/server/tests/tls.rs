//! TLS built in: HTTPS (pages, health, long-poll), WSS and the terminal
//! protocol over real TLS with a certificate made for the test, one room
//! shared by the three; a burst larger than the socket; a certificate
//! reloaded under open connections; and what a TLS port does with a
//! client that speaks plain text.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::{TestServer, join, post, start_with};
use confab_client::{WAIT, WsClient};
use confab_server::tls::{Certificates, TlsFiles, provider};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A certificate for `localhost` and 127.0.0.1, and its key, in PEM.
struct Pair {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

fn pair() -> Pair {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a certificate");
    Pair {
        cert: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
    }
}

/// Writes `pair` where the server reads it.
fn install(dir: &Path, pair: &Pair) -> TlsFiles {
    let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.cert, &pair.cert).unwrap();
    std::fs::write(&files.key, &pair.key).unwrap();
    files
}

/// A client that trusts `pair` alone.
fn trusting(pair: &Pair) -> TlsConnector {
    TlsConnector::from(Arc::new(client_config(pair)))
}

/// The same, asking for `http/1.1` by ALPN, as a browser does.
fn trusting_as_a_browser(pair: &Pair) -> TlsConnector {
    let mut config = client_config(pair);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

fn client_config(pair: &Pair) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(pair.der.clone()).unwrap();
    ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

async fn tls_to(addr: SocketAddr, client: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    client.connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

/// The certificate the server showed.
fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().expect("a certificate")[0].clone()
}

/// A server with TLS on, with `pair`'s certificate, and the directory of
/// its certificate files.
async fn start_tls(
    pair: &Pair,
    configure: impl FnOnce(&mut confab_server::Config),
) -> (TestServer, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let files = install(certs.path(), pair);
    let server = start_with(|c| {
        c.tls = Some(files);
        configure(c);
    })
    .await;
    (server, certs)
}

async fn wss(server: &TestServer, client: &TlsConnector, name: &str) -> WsClient {
    let stream = tls_to(server.http, client).await.expect("tls");
    let url = format!("wss://localhost:{}/ws", server.http.port());
    let mut ws = WsClient::connect_over(&url, stream).await.expect("websocket over tls");
    ws.ok(json!({"op": "hello", "name": name})).await.expect("hello");
    ws
}

/// One HTTPS request on a connection of its own; the status and body.
async fn https(
    server: &TestServer,
    client: &TlsConnector,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String, String) {
    let mut stream = tls_to(server.http, client).await.expect("tls");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("an answer in time")
        .expect("read");
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let status = head[9..12].parse().unwrap();
    let last = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("confab-last:").map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, body.to_owned(), last)
}

/// A terminal user over TLS.
struct Term {
    reader: BufReader<ReadHalf<TlsStream<TcpStream>>>,
    writer: WriteHalf<TlsStream<TcpStream>>,
}

impl Term {
    async fn login(server: &TestServer, client: &TlsConnector, name: &str) -> Term {
        let stream = tls_to(server.server.tcp_addr(), client).await.expect("tls");
        Term::login_over(stream, name).await
    }

    async fn login_over(stream: TlsStream<TcpStream>, name: &str) -> Term {
        let (reader, writer) = tokio::io::split(stream);
        let mut term = Term { reader: BufReader::new(reader), writer };
        assert!(term.line().await.starts_with("welcome to confab "));
        assert_eq!(term.line().await, "username:");
        term.send(name).await;
        assert!(term.line().await.starts_with(&format!("hello, {name};")));
        assert!(term.line().await.starts_with("session "));
        term
    }

    async fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("a line in time")
            .expect("read");
        assert!(read > 0, "the connection ended");
        line.trim_end_matches('\n').to_owned()
    }

    /// Lines up to the first that starts with `prefix`, which is returned.
    async fn until(&mut self, prefix: &str) -> String {
        loop {
            let line = self.line().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    }
}

/// Polls a long-poll connection until a frame for which `wanted` holds.
async fn poll_until(
    server: &TestServer,
    client: &TlsConnector,
    conn: &str,
    ack: &mut u64,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no such frame in time");
        let (status, body, last) =
            https(server, client, "GET", &format!("/lp/{conn}?ack={ack}"), "").await;
        assert_eq!(status, 200, "{body}");
        if let Ok(n) = last.parse() {
            *ack = n;
        }
        let frames: Vec<Value> = serde_json::from_str(&body).unwrap();
        if let Some(frame) = frames.into_iter().find(|f| wanted(f)) {
            return frame;
        }
    }
}

#[tokio::test]
async fn https_wss_and_the_terminal_speak_tls_and_share_a_room() {
    let pair = pair();
    let (server, _certs) = start_tls(&pair, |_| {}).await;
    let client = trusting(&pair);
    let browser = trusting_as_a_browser(&pair);

    let (status, body, _) = https(&server, &client, "GET", "/readyz", "").await;
    assert_eq!((status, body.contains("\"ready\"")), (200, true), "{body}");
    // The page and the WebSocket as a browser asks for them (ALPN).
    let (status, page, _) = https(&server, &browser, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "the web page over HTTPS");

    let mut web = wss(&server, &browser, "Web").await;
    join(&mut web, "main").await;
    let mut term = Term::login(&server, &client, "Term").await;
    term.send("%join").await;
    term.until("[main] you joined").await;

    // Long-poll over HTTPS: open, hello and join in one POST, then polls.
    let (status, opened, _) = https(&server, &client, "POST", "/lp", "").await;
    assert_eq!(status, 200, "{opened}");
    let conn = serde_json::from_str::<Value>(&opened).unwrap()["conn"].as_str().unwrap().to_owned();
    let frames = json!([
        {"op": "hello", "name": "Poll", "id": 1},
        {"op": "join", "room": "main", "id": 2},
    ]);
    let (status, _, _) =
        https(&server, &client, "POST", &format!("/lp/{conn}"), &frames.to_string()).await;
    assert_eq!(status, 204);
    let mut ack = 0;
    let joined = poll_until(&server, &client, &conn, &mut ack, |f| f["re"] == 2).await;
    assert_eq!(joined["ok"], true, "{joined}");

    post(&mut web, "main", "over wss").await;
    let seen = term.until("[main] 1").await;
    assert!(seen.contains("Web"), "{seen}");
    let polled = poll_until(&server, &client, &conn, &mut ack, |f| f["ev"] == "message").await;
    assert_eq!(polled["message"]["body"], "over wss");

    term.send("%post hi from the terminal").await;
    assert_eq!(term.until("[main] you posted").await, "[main] you posted 2");
    let seen = web.event("message").await.unwrap();
    assert_eq!(seen["message"]["body"], "from the terminal");
    let polled = poll_until(&server, &client, &conn, &mut ack, |f| {
        f["ev"] == "message" && f["message"]["seq"] == 2
    })
    .await;
    assert_eq!(polled["message"]["from"]["name"], "Term");

    let post = json!([{"op": "post", "room": "main", "body": "over https", "id": 3}]);
    let (status, _, _) =
        https(&server, &client, "POST", &format!("/lp/{conn}"), &post.to_string()).await;
    assert_eq!(status, 204);
    assert_eq!(web.event("message").await.unwrap()["message"]["body"], "over https");
    assert!(term.until("[main] 3").await.contains("Poll"));
}

/// Frames far larger together than the client's receive buffer: the
/// writer's records wait for the socket, some taken by rustls and held back
/// until a flush. Every frame must arrive, whole and in order.
#[tokio::test]
async fn a_burst_larger_than_the_socket_arrives_whole_and_in_order_over_tls() {
    let pair = pair();
    let (server, _certs) = start_tls(&pair, |c| {
        c.hub.rates.post = None;
        c.hub.limits.body_chars = 60_000;
    })
    .await;
    let client = trusting(&pair);
    let mut sender = wss(&server, &client, "Sender").await;
    join(&mut sender, "main").await;

    // A reader with a small receive buffer, that reads nothing for a while.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(server.http).await.unwrap();
    let stream =
        client.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("tls");
    let url = format!("wss://localhost:{}/ws", server.http.port());
    let mut reader = WsClient::connect_over(&url, stream).await.unwrap();
    reader.ok(json!({"op": "hello", "name": "Reader"})).await.unwrap();
    join(&mut reader, "main").await;

    // 10 MB: more than the server's send buffer and the client's receive
    // buffer hold, so writes wait for the socket.
    let body = "x".repeat(50_000);
    const POSTS: u64 = 200;
    for n in 1..=POSTS {
        sender
            .ok(json!({"op": "post", "room": "main", "body": format!("{n} {body}")}))
            .await
            .unwrap();
    }
    for n in 1..=POSTS {
        let message = reader.event("message").await.unwrap();
        assert_eq!(message["message"]["seq"], n);
        let text = message["message"]["body"].as_str().unwrap();
        assert_eq!(text, format!("{n} {body}"), "frame {n} arrived whole");
    }
    // And the connection is still in order for a request.
    reader.ok(json!({"op": "ping"})).await.unwrap();
}

#[tokio::test]
async fn a_reloaded_certificate_is_served_to_new_connections_while_open_ones_go_on() {
    let first = pair();
    let (server, certs) = start_tls(&first, |_| {}).await;
    let old_client = trusting(&first);
    let mut web = wss(&server, &old_client, "Web").await;
    join(&mut web, "main").await;
    let mut term = Term::login(&server, &old_client, "Term").await;
    term.send("%join").await;
    term.until("[main] you joined").await;

    let second = pair();
    let certificates: Arc<Certificates> = server.server.certificates().expect("tls is on");
    install(certs.path(), &second);
    assert_eq!(certificates.reload(None), Ok(true), "a new certificate");
    assert_eq!(certificates.reload(None), Ok(false), "the same files again: unchanged");

    let new_client = trusting(&second);
    let fresh = tls_to(server.http, &new_client).await.expect("the new certificate is served");
    assert_eq!(served(&fresh), second.der);
    let terminal = tls_to(server.server.tcp_addr(), &new_client).await.expect("on both listeners");
    assert_eq!(served(&terminal), second.der);
    // A client that trusts only the old certificate is now refused (a new
    // one: `old_client` could resume its earlier sessions, authenticated
    // by the old certificate when they began).
    assert!(tls_to(server.http, &trusting(&first)).await.is_err());

    // The connections opened before go on, both ways.
    post(&mut web, "main", "after the reload").await;
    assert!(term.until("[main] 1").await.contains("Web"));
    term.send("%post still here").await;
    assert_eq!(term.until("[main] you posted").await, "[main] you posted 2");
    assert_eq!(web.event("message").await.unwrap()["message"]["body"], "here");
    let mut newcomer = Term::login_over(terminal, "New").await;
    newcomer.send("%join").await;
    newcomer.until("[main] you joined").await;

    // A broken file is refused with its name, and the pair in force stays.
    std::fs::write(certs.path().join("key.pem"), "not a key").unwrap();
    let refused = certificates.reload(None).unwrap_err();
    assert!(refused.contains("--tls-key") && refused.contains("key.pem"), "{refused}");
    let still = tls_to(server.http, &new_client).await.expect("still served");
    assert_eq!(served(&still), second.der);
}

#[tokio::test]
async fn plain_text_to_a_tls_port_is_closed_and_the_server_goes_on() {
    let pair = pair();
    let (server, _certs) = start_tls(&pair, |_| {}).await;
    for addr in [server.http, server.server.tcp_addr()] {
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the server closes a connection that is not TLS");
        assert!(!answer.starts_with(b"HTTP/"), "no plain-text answer on a TLS port");
    }
    let client = trusting(&pair);
    let (status, _, _) = https(&server, &client, "GET", "/livez", "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_certificate_that_cannot_be_used_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let one = install(dir.path(), &pair());
    let other = pair();
    let missing = TlsFiles { cert: dir.path().join("absent.pem"), key: one.key.clone() };
    let wrong_key = dir.path().join("other-key.pem");
    std::fs::write(&wrong_key, &other.key).unwrap();
    let mismatched = TlsFiles { cert: one.cert.clone(), key: wrong_key };
    let not_pem = dir.path().join("garbage.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let garbage = TlsFiles { cert: not_pem, key: one.key.clone() };
    for (files, expected) in [
        (missing, "absent.pem: no such file"),
        (mismatched, "does not go with --tls-cert"),
        (garbage, "garbage.pem: no certificate in it"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let mut config = confab_server::Config::ephemeral(data.path());
        config.tls = Some(files);
        let error = match confab_server::Server::start(config).await {
            Ok(_) => panic!("started with a certificate it cannot use"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains(expected), "{error:?} should say {expected:?}");
    }
}

/// The terminal port is not HTTP: a client that asks for `http/1.1` by
/// ALPN (a browser) is refused there, and served on the HTTP port.
#[tokio::test]
async fn the_terminal_port_refuses_a_client_asking_for_http() {
    let pair = pair();
    let (server, _certs) = start_tls(&pair, |_| {}).await;
    let asks_for_http = trusting_as_a_browser(&pair);
    assert!(tls_to(server.server.tcp_addr(), &asks_for_http).await.is_err());
    let on_http = tls_to(server.http, &asks_for_http).await.expect("the HTTP port");
    assert_eq!(on_http.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Without ALPN, or with the terminal's, the terminal port is served.
    let stream = tls_to(server.server.tcp_addr(), &trusting(&pair)).await;
    Term::login_over(stream.expect("the terminal port"), "Term").await;
    let mut config = client_config(&pair);
    config.alpn_protocols = vec![confab_server::tls::TERMINAL_ALPN.to_vec()];
    let named = tls_to(server.server.tcp_addr(), &TlsConnector::from(Arc::new(config))).await;
    Term::login_over(named.expect("the terminal port, by name"), "Named").await;
}

/// Each handshake costs the server a signature: an address that opens
/// sockets faster than its budget gets them closed unanswered, on both
/// listeners, and other addresses are not affected.
#[tokio::test]
async fn an_address_over_its_handshake_budget_is_closed_unanswered() {
    let pair = pair();
    let (server, _certs) = start_tls(&pair, |c| {
        c.edge.limit_loopback = true;
        c.edge.handshake_rate =
            Some(confab_core::Rate::new(2, std::time::Duration::from_secs(3600), 2));
    })
    .await;
    let client = trusting(&pair);
    let first = tls_to(server.http, &client).await.expect("within the budget");
    let second = tls_to(server.server.tcp_addr(), &client).await.expect("within the budget");
    assert!(tls_to(server.http, &client).await.is_err(), "over the budget");
    assert!(tls_to(server.server.tcp_addr(), &client).await.is_err(), "one budget for both");
    // Connections already made go on.
    Term::login_over(second, "Term").await;
    drop(first);
}
