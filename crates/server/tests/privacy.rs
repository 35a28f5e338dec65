//! Private rooms stay private: no op but `join` tells a room that does not
//! exist from one that is not the client's, `resume` brings back only the
//! seats a session holds, and the holes around them stay closed.

mod common;

use std::time::Duration;

use common::{join, missing_like, post, start_with};
use confab_client::WsClient;
use confab_core::Rate;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn tight(count: u32, burst: u32) -> Option<Rate> {
    Some(Rate::new(count, Duration::from_secs(3600), burst))
}

/// Every op that names a room, other than `join` and `create`.
fn room_ops(code: &str) -> Vec<Value> {
    vec![
        json!({"op": "leave", "room": code}),
        json!({"op": "post", "room": code, "body": "hi"}),
        json!({"op": "post", "room": code, "body": "hi", "cid": "c1"}),
        json!({"op": "typing", "room": code, "active": true}),
        json!({"op": "history", "room": code}),
        json!({"op": "get", "room": code, "seq": 1}),
        json!({"op": "members", "room": code}),
    ]
}

#[tokio::test]
async fn every_op_but_join_answers_a_missing_room_and_a_private_one_alike() {
    let server = start_with(|_| {}).await;
    let mut ann = server.client("Ann").await;
    let live = server.create(&mut ann, json!({})).await;
    join(&mut ann, &live).await;
    post(&mut ann, &live, "secret").await;
    let missing = missing_like(&live);
    let mut mallory = server.client("Mallory").await;
    for (live_op, missing_op) in room_ops(&live).into_iter().zip(room_ops(&missing)) {
        let a = mallory.request(live_op.clone()).await.unwrap();
        let b = mallory.request(missing_op).await.unwrap();
        assert_eq!(a["error"]["code"], "not_member", "{live_op}: {a}");
        // The same answer, but for the code the client wrote.
        let a = a["error"].to_string().replace(&live, "CODE");
        let b = b["error"].to_string().replace(&missing, "CODE");
        assert_eq!(a, b, "{live_op}");
    }
    // Lower case, as a client may write a code: still nothing told.
    let lower = live.to_lowercase();
    let answer = mallory.request(json!({"op": "members", "room": lower})).await.unwrap();
    assert_eq!(answer["error"]["message"], format!("you are not in room {lower}"));
    // A long or strange code is not echoed back.
    let strange = "\u{7}".repeat(100);
    let answer = mallory.request(json!({"op": "history", "room": strange})).await.unwrap();
    assert_eq!(answer["error"]["message"], "you are not in that room");
    // Only `join` tells them apart, and it spends the failed-join budget.
    assert_eq!(
        mallory.error_code(json!({"op": "join", "room": missing})).await.unwrap(),
        "not_found"
    );
    // A public room's members stay anyone's to see.
    let public = server.create(&mut ann, json!({"public": true})).await;
    join(&mut ann, &public).await;
    let members = mallory.ok(json!({"op": "members", "room": public})).await.unwrap();
    assert_eq!(members["members"][0]["name"], "Ann");
    // The web page of a room is the same page for any code.
    let (status, page) = server.get(&format!("/r/{live}")).await;
    assert_eq!(status, 200);
    assert_eq!(server.get(&format!("/r/{missing}")).await, (200, page));
    // Ann, in the room, is answered as before; nothing Mallory sent landed.
    let history = ann.ok(json!({"op": "history", "room": live})).await.unwrap();
    assert_eq!(common::bodies(&history["messages"]), ["secret"]);
}

#[tokio::test]
async fn resume_brings_back_only_seats_the_session_holds() {
    let server = start_with(|c| c.hub.rates.failed_join = tight(1, 5)).await;
    let (mut ann, hello) = WsClient::hello(&server.url, "Ann").await.unwrap();
    let token = hello["session"].as_str().unwrap().to_owned();
    let room = server.create(&mut ann, json!({})).await;
    join(&mut ann, &room).await;
    post(&mut ann, &room, "m1").await;

    // Mallory lists the live code among guesses: nothing comes back.
    let mut mallory = WsClient::connect(&server.url).await.unwrap();
    let resume: serde_json::Map<String, Value> = [room.clone(), "ZZZZZ2".into(), "ZZZZZ3".into()]
        .into_iter()
        .map(|code| (code, json!(0)))
        .collect();
    let hello = mallory.ok(json!({"op": "hello", "name": "Mallory", "resume": resume})).await;
    assert_eq!(hello.unwrap()["rooms"], json!([]));
    assert!(
        !common::events(&ann.drain().await.unwrap()).contains(&"join".to_owned()),
        "Mallory took no seat"
    );
    // Three guesses spent three of five; two more empty the bucket, and
    // the next failure blocks the client.
    for code in ["ZZZZZ4", "ZZZZZ5", "ZZZZZ6"] {
        assert_eq!(
            mallory.error_code(json!({"op": "join", "room": code})).await.unwrap(),
            "not_found"
        );
    }
    let refused = mallory.request(json!({"op": "join", "room": "main"})).await.unwrap();
    assert_eq!(refused["error"]["code"], "rate_limited", "the resume's guesses counted: {refused}");

    // Ann's own session, on a new connection while the first is open (a
    // second tab) and after it dropped (in grace), comes back, silently.
    let mut tab = WsClient::connect(&server.url).await.unwrap();
    let resume =
        json!({"op": "hello", "name": "Ann", "session": token, "resume": {room.clone(): 0}});
    let back = tab.ok(resume.clone()).await.unwrap();
    assert_eq!(back["rooms"][0]["room"]["code"], room.as_str());
    assert_eq!(common::bodies(&back["rooms"][0]["messages"]), ["m1"]);
    drop(tab);
    ann.close().await;
    server.wait_for_connections(1).await;
    let mut again = WsClient::connect(&server.url).await.unwrap();
    let back = again.ok(resume).await.unwrap();
    assert_eq!(back["rooms"][0]["room"]["code"], room.as_str(), "a seat in grace comes back");
}

#[tokio::test]
async fn a_resume_naming_more_rooms_than_a_connection_holds_is_refused() {
    let server = start_with(|c| c.hub.max_rooms_per_conn = 3).await;
    let mut client = WsClient::connect(&server.url).await.unwrap();
    let codes = |n: usize| -> serde_json::Map<String, Value> {
        (0..n).map(|i| (format!("ZZZZZ{}", i + 2), json!(0))).collect()
    };
    let refused =
        client.request(json!({"op": "hello", "name": "Ann", "resume": codes(4)})).await.unwrap();
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("at most 3"), "{refused}");
    // Nothing happened: the same connection says hello within the cap.
    client.ok(json!({"op": "hello", "name": "Ann", "resume": codes(3)})).await.unwrap();
    // And it joins at most three rooms at once.
    for _ in 0..3 {
        let code = server.create(&mut client, json!({})).await;
        join(&mut client, &code).await;
    }
    let code = server.create(&mut client, json!({})).await;
    let refused = client.request(json!({"op": "join", "room": code})).await.unwrap();
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
}

#[tokio::test]
async fn typing_over_its_budget_is_dropped_not_fanned_out() {
    let server = start_with(|c| c.hub.rates.typing = tight(1, 3)).await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    join(&mut ann, "main").await;
    join(&mut bob, "main").await;
    for _ in 0..200 {
        let ok = ann.ok(json!({"op": "typing", "room": "main", "active": true})).await;
        ok.expect("a typing indicator over the budget is still answered ok");
    }
    post(&mut ann, "main", "done").await;
    let mut typing = 0;
    loop {
        let frame = bob.next().await.unwrap();
        match frame["ev"].as_str() {
            Some("typing") => typing += 1,
            Some("message") => break,
            _ => {}
        }
    }
    assert_eq!(typing, 3, "only the burst reached Bob");
}

#[tokio::test]
async fn rooms_created_per_address_are_capped_across_sessions() {
    let server = start_with(|c| {
        c.hub.rates.address_create = tight(1, 2);
        c.hub.rates.limit_loopback = true;
    })
    .await;
    let mut ann = server.client("Ann").await;
    server.create(&mut ann, json!({})).await;
    server.create(&mut ann, json!({})).await;
    let refused = ann.request(json!({"op": "create"})).await.unwrap();
    assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
    // A new session from the same address gets no fresh budget.
    let mut bob = server.client("Bob").await;
    assert_eq!(bob.error_code(json!({"op": "create"})).await.unwrap(), "rate_limited");
}

#[tokio::test]
async fn names_that_show_nothing_or_look_like_a_member_s_are_refused() {
    let server = start_with(|_| {}).await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    for name in ["\u{200B}\u{200B}", "\u{3164}", "\u{2800}", "Eve\u{202E}", "\u{2066}Eve"] {
        let mut client = WsClient::connect(&server.url).await.unwrap();
        let refused = client.request(json!({"op": "hello", "name": name})).await.unwrap();
        assert_eq!(refused["error"]["code"], "bad_request", "{name:?}: {refused}");
    }
    for name in ["Ann\u{200B}", "A\u{00AD}nn", "\u{FEFF}ann", "Ann\u{2060}"] {
        let mut twin = server.client(name).await;
        let refused = twin.request(json!({"op": "join", "room": "main"})).await.unwrap();
        assert_eq!(refused["error"]["code"], "name_taken", "{name:?}: {refused}");
    }
}

#[tokio::test]
async fn on_shutdown_every_room_s_closed_comes_before_the_close() {
    // The race lost one time in twelve: try more than that.
    for round in 0..16 {
        let server = start_with(|_| {}).await;
        let mut ann = server.client("Ann").await;
        let mut rooms = vec!["main".to_owned()];
        for _ in 0..2 {
            let code = server.create(&mut ann, json!({})).await;
            join(&mut ann, &code).await;
            rooms.push(code);
        }
        join(&mut ann, "main").await;
        // Stopped while the client reads, as a client would.
        let stopped = tokio::spawn(async move { server.server.stop().await });
        assert_eq!(ann.closed().await.unwrap(), Some(1012), "round {round}");
        let mut closed = Vec::new();
        while let Ok(frame) = ann.next().await {
            if frame["ev"] == "closed" {
                closed.push(frame["room"].as_str().unwrap().to_owned());
            }
        }
        drop(ann);
        stopped.await.unwrap();
        closed.sort();
        rooms.sort();
        assert_eq!(closed, rooms, "round {round}");
    }
}

/// Writes `request` on a fresh socket and reads the answer: to the end
/// of its body when the server closes after it, else its head.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    answer(stream, request).await
}

async fn answer(mut stream: TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            answer.extend_from_slice(&chunk[..n]);
            let head = answer.windows(4).position(|w| w == b"\r\n\r\n");
            let closes = answer.to_ascii_lowercase().windows(17).any(|w| w == b"connection: close");
            if n == 0 || (head.is_some() && !closes) {
                break;
            }
        }
    };
    tokio::time::timeout(confab_client::WAIT, read).await.expect("an answer in time");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads to the end of the stream, within the usual wait.
async fn read_all(stream: &mut TcpStream) -> String {
    let mut text = String::new();
    let read = stream.read_to_string(&mut text);
    tokio::time::timeout(confab_client::WAIT, read).await.expect("closed in time").unwrap();
    text
}

fn upgrade_request(host: std::net::SocketAddr, key: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    )
}

/// A client's masked frame header for `len` payload bytes.
fn frame_head(first: u8, len: usize) -> Vec<u8> {
    let mut head = vec![first];
    if len < 126 {
        head.push(0x80 | len as u8);
    } else {
        head.push(0x80 | 126);
        head.extend_from_slice(&(len as u16).to_be_bytes());
    }
    head.extend_from_slice(&[0, 0, 0, 0]);
    head
}

/// An upgraded raw WebSocket, its handshake answer read.
async fn raw_websocket(server: &common::TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.http).await.unwrap();
    let request = upgrade_request(server.http, "dGhlIHNhbXBsZSBub25jZQ==");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// Reads the server's frames until its close frame; returns the code.
async fn close_code(stream: &mut TcpStream) -> u16 {
    let read = async {
        loop {
            let mut head = [0u8; 2];
            stream.read_exact(&mut head).await.unwrap();
            let len = match head[1] & 0x7F {
                126 => {
                    let mut len = [0u8; 2];
                    stream.read_exact(&mut len).await.unwrap();
                    usize::from(u16::from_be_bytes(len))
                }
                len => usize::from(len),
            };
            let mut payload = vec![0; len];
            stream.read_exact(&mut payload).await.unwrap();
            if head[0] & 0x0F == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    };
    tokio::time::timeout(confab_client::WAIT, read).await.expect("a close frame in time")
}

#[tokio::test]
async fn a_websocket_key_must_be_sixteen_bytes_of_base64() {
    let server = start_with(|_| {}).await;
    for key in [
        "AAAAAAAAAAAAAAAAAAAAAAAA",
        "!!!!!!!!!!!!!!!!!!!!!!==",
        "dGhlIHNhbXBsZSBub25jZR==",
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZQ===",
    ] {
        let answer = raw(server.http, upgrade_request(server.http, key).as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{key}: {answer}");
    }
    let mut stream = raw_websocket(&server).await;
    // A close from the client with 1012, 1013 or 1014 is a proper close,
    // echoed, not a protocol error (1002).
    let mut close = frame_head(0x88, 2);
    close.extend_from_slice(&1012u16.to_be_bytes());
    stream.write_all(&close).await.unwrap();
    assert_eq!(close_code(&mut stream).await, 1012);
    for code in [1013u16, 1014] {
        let mut stream = raw_websocket(&server).await;
        let mut close = frame_head(0x88, 2);
        close.extend_from_slice(&code.to_be_bytes());
        stream.write_all(&close).await.unwrap();
        assert_eq!(close_code(&mut stream).await, code);
    }
}

#[tokio::test]
async fn a_byte_that_is_not_utf8_closes_the_socket_when_it_arrives() {
    let server = start_with(|_| {}).await;
    let mut stream = raw_websocket(&server).await;
    // A 60,000-byte text frame of which only the start is sent, with a
    // byte that can never be UTF-8 in it (the mask is zero).
    let mut start = frame_head(0x81, 60_000);
    start.extend_from_slice(b"{\"op\":\xFF");
    stream.write_all(&start).await.unwrap();
    assert_eq!(close_code(&mut stream).await, 1007);
    // Split inside a fragmented message, too.
    let mut stream = raw_websocket(&server).await;
    let mut first = frame_head(0x01, 3);
    first.extend_from_slice(b"{\"\xE2");
    stream.write_all(&first).await.unwrap();
    let mut next = frame_head(0x80, 40_000);
    next.extend_from_slice(b"\x41");
    stream.write_all(&next).await.unwrap();
    assert_eq!(close_code(&mut stream).await, 1007);
    // Valid text split the same way still works.
    let mut client = WsClient::connect(&server.url).await.unwrap();
    client.ok(json!({"op": "hello", "name": "Zoë"})).await.unwrap();
}

#[tokio::test]
async fn page_templates_under_assets_carry_the_security_headers() {
    let server = start_with(|_| {}).await;
    for path in ["/assets/index.html", "/assets/room.html", "/assets/history.html", "/assets/no"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw(server.http, request.as_bytes()).await.to_ascii_lowercase();
        for header in
            ["content-security-policy: default-src 'self'", "x-content-type-options: nosniff"]
        {
            assert!(answer.contains(header), "{path}: missing {header} in:\n{answer}");
        }
        if !path.ends_with("/no") {
            assert!(answer.starts_with("http/1.1 200"), "{path}: {answer}");
            assert!(answer.contains("x-frame-options: deny"), "{path}");
            assert!(answer.contains("referrer-policy: no-referrer"), "{path}");
        }
    }
}

#[tokio::test]
async fn an_oversized_long_poll_body_is_refused_with_connection_close() {
    let server = start_with(|c| c.hub.limits.frame_bytes = 1024).await;
    let mut http = common::http::Http::connect(server.http).await.unwrap();
    let opened = http.request("POST", "/lp", b"").await;
    assert_eq!(opened.status, 200, "{opened:?}");
    let path = format!("/lp/{}", opened.json()["conn"].as_str().unwrap());
    let big = vec![b' '; 4096];
    let refused = http.request("POST", &path, &big).await;
    assert_eq!(refused.status, 413);
    assert_eq!(refused.header("connection"), Some("close"));
}

#[tokio::test]
async fn silent_sockets_count_per_address_from_accept() {
    let server = start_with(|c| {
        c.edge.limit_loopback = true;
        c.hub.rates.limit_loopback = true;
        c.edge.max_connections_per_ip = 20;
    })
    .await;
    // Twenty sockets from 127.0.0.2 that never send a byte hold its share.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(from("127.0.0.2", server.http).await);
    }
    let refusal = read_all(&mut from("127.0.0.2", server.http).await).await;
    assert!(refusal.starts_with("HTTP/1.1 429"), "{refusal}");
    // The terminal listener counts the same address against the same cap.
    let mut terminal = TcpStream::connect_from("127.0.0.2", server.server.tcp_addr()).await;
    let bye = read_all(&mut terminal).await;
    assert!(bye.starts_with("bye: too many connections"), "{bye}");
    // Another address is not locked out: health, WebSocket, terminal.
    let health = raw_from(
        "127.0.0.3",
        server.http,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    server.client("Ann").await;
    let mut terminal = TcpStream::connect_from("127.0.0.3", server.server.tcp_addr()).await;
    let mut greeting = [0u8; 64];
    let n = tokio::time::timeout(confab_client::WAIT, terminal.read(&mut greeting))
        .await
        .expect("a greeting in time")
        .unwrap();
    assert!(!String::from_utf8_lossy(&greeting[..n]).starts_with("bye"));
    // A silent socket closed frees its place.
    drop(silent.pop());
    let deadline = tokio::time::Instant::now() + confab_client::WAIT;
    loop {
        let answer = raw_from(
            "127.0.0.2",
            server.http,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the place never freed: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A socket to `to` from the local address `source`.
async fn from(source: &str, to: std::net::SocketAddr) -> TcpStream {
    TcpStream::connect_from(source, to).await
}

async fn raw_from(source: &str, to: std::net::SocketAddr, request: &[u8]) -> String {
    answer(from(source, to).await, request).await
}

trait ConnectFrom {
    async fn connect_from(source: &str, to: std::net::SocketAddr) -> TcpStream;
}

impl ConnectFrom for TcpStream {
    async fn connect_from(source: &str, to: std::net::SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap()
    }
}

#[tokio::test]
async fn metrics_can_have_an_address_of_their_own() {
    let server = start_with(|c| c.metrics = Some("127.0.0.1:0".into())).await;
    let metrics = server.server.metrics_addr().expect("a metrics address");
    let answer =
        raw(metrics, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("confab_rooms"), "{answer}");
    let (status, _) = server.get("/metrics").await;
    assert_eq!(status, 404, "not on the public listener");
}

#[tokio::test]
async fn a_member_coming_back_under_another_member_s_name_keeps_their_own() {
    let server = start_with(|_| {}).await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    let (mut bob, hello) = WsClient::hello(&server.url, "Bob").await.unwrap();
    let token = hello["session"].as_str().unwrap().to_owned();
    join(&mut bob, "main").await;
    // Bob's session says hello again as "ann" and rejoins: still Bob there.
    let (mut twin, _) = server.tab("ann", &token).await;
    join(&mut twin, "main").await;
    let posted = post(&mut twin, "main", "it is me").await;
    assert_eq!(posted["from"]["name"], "Bob");
    let members = ann.ok(json!({"op": "members", "room": "main"})).await.unwrap();
    assert_eq!(common::member_names(&members), ["Ann", "Bob"]);
}
