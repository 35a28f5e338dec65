//! Abuse and hostile input: rate limits, enumeration, admission, origins,
//! silent connections, stored secrets, security headers.

mod common;

use std::time::Duration;

use common::{join, post, start_with};
use confab_client::WsClient;
use confab_core::Rate;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn tight(count: u32, burst: u32) -> Option<Rate> {
    Some(Rate::new(count, Duration::from_secs(60), burst))
}

#[tokio::test]
async fn posts_over_the_rate_are_refused_with_a_retry_time_and_change_nothing() {
    let server = start_with(|c| c.hub.rates.post = tight(1, 3)).await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    join(&mut ann, "main").await;
    join(&mut bob, "main").await;
    for i in 1..=3 {
        assert_eq!(post(&mut ann, "main", &format!("m{i}")).await["seq"], i);
    }
    let refused =
        ann.request(json!({"op": "post", "room": "main", "body": "too many"})).await.unwrap();
    assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
    let retry = refused["error"]["retry_after_ms"].as_u64().unwrap();
    assert!(retry > 1_000 && retry <= 60_000, "{retry}");
    // Without an id the refusal is an error event, and the connection lives on.
    ann.send_text(json!({"op": "post", "room": "main", "body": "again"}).to_string())
        .await
        .unwrap();
    assert_eq!(ann.event("error").await.unwrap()["error"]["code"], "rate_limited");
    ann.ok(json!({"op": "ping"})).await.unwrap();
    // Bob has his own bucket; nothing of Ann's refused posts was stored.
    assert_eq!(post(&mut bob, "main", "mine").await["seq"], 4);
}

#[tokio::test]
async fn reads_over_the_rate_are_refused_and_every_kind_draws_from_one_budget() {
    let server = start_with(|c| c.hub.rates.read = tight(1, 4)).await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    join(&mut ann, "main").await;
    join(&mut bob, "main").await;
    post(&mut ann, "main", "one").await;
    let reads = [
        json!({"op": "history", "room": "main"}),
        json!({"op": "members", "room": "main"}),
        json!({"op": "rooms"}),
        json!({"op": "get", "room": "main", "seq": 1}),
    ];
    for read in &reads {
        ann.ok(read.clone()).await.unwrap();
    }
    // The budget is spent, whatever is read next.
    for read in reads.iter().chain([&json!({"op": "mine"}), &json!({"op": "bans", "room": "main"})])
    {
        let refused = ann.request(read.clone()).await.unwrap();
        assert_eq!(refused["error"]["code"], "rate_limited", "{read}: {refused}");
        let retry = refused["error"]["retry_after_ms"].as_u64().unwrap();
        assert!(retry > 1_000 && retry <= 60_000, "{retry}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("read"), "{refused}");
    }
    // Writing is not reading: Ann still posts, and pings.
    assert_eq!(post(&mut ann, "main", "two").await["seq"], 2);
    ann.ok(json!({"op": "ping"})).await.unwrap();
    // Bob has his own budget.
    let page = bob.ok(json!({"op": "history", "room": "main"})).await.unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 2, "{page}");
}

#[tokio::test]
async fn the_public_list_over_http_draws_from_the_address_read_budget() {
    let server = start_with(|c| {
        c.hub.rates.read = tight(1, 2);
        c.hub.rates.limit_loopback = true;
        c.edge.limit_loopback = false;
    })
    .await;
    for _ in 0..2 {
        let (status, body) = server.get("/api/v1/rooms").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"main\""), "{body}");
    }
    let (status, body) = server.get("/api/v1/rooms").await;
    assert_eq!(status, 429, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("from your address"));
    // A user's reads have a budget of their own.
    let mut ann = server.client("Ann").await;
    let rooms = ann.ok(json!({"op": "rooms"})).await.unwrap();
    assert!(rooms["rooms"].to_string().contains("\"main\""), "{rooms}");
}

#[tokio::test]
async fn creates_and_joins_have_their_own_limits() {
    let server = start_with(|c| {
        c.hub.rates.create = tight(1, 2);
        c.hub.rates.join = tight(1, 3);
    })
    .await;
    let mut ann = server.client("Ann").await;
    server.create(&mut ann, json!({})).await;
    server.create(&mut ann, json!({})).await;
    assert_eq!(ann.error_code(json!({"op": "create"})).await.unwrap(), "rate_limited");
    for _ in 0..3 {
        join(&mut ann, "main").await;
    }
    assert_eq!(
        ann.error_code(json!({"op": "join", "room": "main"})).await.unwrap(),
        "rate_limited"
    );
}

#[tokio::test]
async fn guessing_room_codes_gets_a_client_blocked() {
    let server = start_with(|c| c.hub.rates.failed_join = tight(1, 3)).await;
    let mut guesser = server.client("Guesser").await;
    for code in ["AAAAAA", "BBBBBB", "CCCCCC"] {
        assert_eq!(
            guesser.error_code(json!({"op": "join", "room": code})).await.unwrap(),
            "not_found"
        );
    }
    assert_eq!(
        guesser.error_code(json!({"op": "join", "room": "DDDDDD"})).await.unwrap(),
        "not_found"
    );
    // The bucket is empty: every join is refused now, even a real room's.
    let refused = guesser.request(json!({"op": "join", "room": "main"})).await.unwrap();
    assert_eq!(refused["error"]["code"], "rate_limited");
    assert!(refused["error"]["retry_after_ms"].as_u64().unwrap() > 10_000);
    // Others are not affected.
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
}

async fn connect_status(url: &str, origin: Option<&str>) -> Result<(), u16> {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, _)) => {
            let _ = socket.close(None).await;
            Ok(())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn cross_site_websockets_are_refused() {
    let server =
        start_with(|c| c.edge.allowed_origins = vec!["https://chat.example.org".into()]).await;
    let own = format!("http://{}", server.http);
    assert_eq!(connect_status(&server.url, None).await, Ok(()), "not a browser");
    assert_eq!(connect_status(&server.url, Some(&own)).await, Ok(()), "same origin");
    assert_eq!(connect_status(&server.url, Some("https://chat.example.org")).await, Ok(()));
    assert_eq!(connect_status(&server.url, Some("https://evil.example")).await, Err(403));
}

#[tokio::test]
async fn connections_per_address_and_in_total_are_capped() {
    let server = start_with(|c| {
        c.edge.limit_loopback = true;
        c.edge.max_connections_per_ip = 2;
    })
    .await;
    let a = WsClient::connect(&server.url).await.unwrap();
    let b = WsClient::connect(&server.url).await.unwrap();
    assert_eq!(connect_status(&server.url, None).await, Err(429));
    a.close().await;
    // The place is free again once the server has seen the close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while connect_status(&server.url, None).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed connection's place never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(b);

    let server = start_with(|c| c.edge.max_connections = 2).await;
    let _a = WsClient::connect(&server.url).await.unwrap();
    let _b = WsClient::connect(&server.url).await.unwrap();
    assert_eq!(connect_status(&server.url, None).await, Err(503));
}

#[tokio::test]
async fn a_connection_that_never_says_hello_is_closed() {
    let server = start_with(|c| c.edge.hello_timeout = Duration::from_millis(200)).await;
    let mut silent = WsClient::connect(&server.url).await.unwrap();
    let mut talker = server.client("Ann").await;
    assert_eq!(silent.closed().await.unwrap(), Some(1008));
    // One that did say hello is not affected.
    tokio::time::sleep(Duration::from_millis(300)).await;
    talker.ok(json!({"op": "ping"})).await.unwrap();
}

#[tokio::test]
async fn session_tokens_are_stored_only_as_digests() {
    let server = start_with(|_| {}).await;
    let (mut ann, hello) = WsClient::hello(&server.url, "Ann").await.unwrap();
    join(&mut ann, "main").await;
    post(&mut ann, "main", "hello").await;
    let token = hello["session"].as_str().unwrap();
    for entry in std::fs::read_dir(server.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "a raw token on disk");
    }
    // And the session still works after a lookup by digest.
    let (_tab, again) = server.tab("Ann", token).await;
    assert_eq!(again["user"]["id"], hello["user"]["id"]);
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let server = start_with(|_| {}).await;
    for path in ["/", "/r/ABCDEF", "/history"] {
        let head = head_of(&server, path, "").await;
        assert!(head.starts_with("http/1.1 200"), "{path}:\n{head}");
        for header in [
            "content-security-policy: default-src 'self'",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
        ] {
            assert!(head.contains(header), "{path}: missing {header} in:\n{head}");
        }
        assert!(!head.contains("set-cookie"), "confab sets no cookies");
    }
    for path in ["/assets/js/room.js", "/assets/app.css"] {
        let head = head_of(&server, path, "").await;
        assert!(head.starts_with("http/1.1 200"), "{path}:\n{head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{path}:\n{head}");
    }
    // Compressed for a browser that asks, and revalidated by ETag.
    let head = head_of(&server, "/assets/js/room.js", "Accept-Encoding: gzip\r\n").await;
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let etag = head
        .lines()
        .find_map(|line| line.strip_prefix("etag: "))
        .unwrap_or_else(|| panic!("no etag in:\n{head}"))
        .to_owned();
    let again = head_of(&server, "/assets/js/room.js", &format!("If-None-Match: {etag}\r\n")).await;
    assert!(again.starts_with("http/1.1 304"), "{again}");
}

/// The lower-cased head of the response to `GET path` with `headers`.
async fn head_of(server: &common::TestServer, path: &str, headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{headers}Connection: close\r\n\r\n",
        server.http
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
    String::from_utf8_lossy(&response[..end]).to_ascii_lowercase()
}

#[tokio::test]
async fn reconnecting_gives_a_flooder_no_fresh_budget() {
    let server = start_with(|c| {
        c.hub.rates.new_session = tight(1, 2);
        c.hub.rates.limit_loopback = true;
        c.edge.limit_loopback = false;
    })
    .await;
    let (_ann, hello) = WsClient::hello(&server.url, "Ann").await.unwrap();
    WsClient::hello(&server.url, "Bob").await.unwrap();
    // A third new session from the same address is refused, and the
    // connection stays usable.
    let mut third = WsClient::connect(&server.url).await.unwrap();
    let refused = third.request(json!({"op": "hello", "name": "Cy"})).await.unwrap();
    assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
    assert!(refused["error"]["retry_after_ms"].as_u64().unwrap() > 1_000);
    // A known session is not new: Ann's second tab gets in.
    let (_tab, again) = server.tab("Ann", hello["session"].as_str().unwrap()).await;
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(again["user"]["id"], hello["user"]["id"]);
    // The terminal draws from the same budget.
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(server.server.tcp_addr()).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    writer.write_all(b"Dee\n").await.unwrap();
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.starts_with("error:") {
            assert!(line.starts_with("error: rate_limited: too many new sessions"), "{line}");
            assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("username:"));
            return;
        }
        seen.push(line);
    }
    panic!("no refusal; the terminal saw {seen:?}");
}
