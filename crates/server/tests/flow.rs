//! Flow control and lifecycle: slow consumers and shutdown.

mod common;

use std::time::Duration;

use common::{join, post, start, start_with};
use confab_client::{WAIT, WsClient};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_and_the_room_goes_on() {
    let server = start_with(|c| {
        // Large enough that Slow's socket buffers are full before its
        // outbox is, so the overflow comes while a write is stalled.
        c.outbox = 512;
        c.hub.rates.post = None;
        // Everything posted stays in memory, so Slow can resume from 0.
        c.hub.room_window = 10_000;
    })
    .await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    let mut slow = WsClient::connect_small(&server.url, 64 * 1024).await.unwrap();
    let hello = slow.ok(json!({"op": "hello", "name": "Slow"})).await.unwrap();
    let session = hello["session"].as_str().unwrap().to_owned();
    let code = server.create(&mut ann, json!({})).await;
    join(&mut ann, &code).await;
    join(&mut bob, &code).await;
    join(&mut slow, &code).await;
    assert_eq!(sockets(&server).await, 3);
    // Slow never reads again. Ann posts far more than its outbox and the
    // socket buffers hold (12 MB against the server's 4 MB send buffer and
    // Slow's small receive one); Bob reads everything.
    let body = "x".repeat(4000);
    let posts = 3000;
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < posts {
            let frame = bob.next().await.unwrap();
            if frame["ev"] == "message" {
                seqs.push(frame["message"]["seq"].as_u64().unwrap());
            }
        }
        seqs
    });
    for _ in 0..posts {
        post(&mut ann, &code, &body).await;
    }
    let seqs = reader.await.unwrap();
    assert_eq!(seqs, (1..=posts as u64).collect::<Vec<u64>>(), "Bob got every message in order");
    // The server gives up on Slow's socket by itself, though Slow still
    // reads nothing: its writer does not wait for the stalled write.
    let deadline = tokio::time::Instant::now() + WAIT;
    while sockets(&server).await != 2 {
        assert!(tokio::time::Instant::now() < deadline, "Slow's socket is still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Slow comes back on the same session and resumes from where it was
    // (here: the last 1,000, what one join returns at most): nothing lost.
    let (mut again, _) = server.tab("Slow", &session).await;
    let since = posts as u64 - 1000;
    let joined = again.ok(json!({"op": "join", "room": code, "since": since})).await.unwrap();
    let resumed: Vec<u64> =
        joined["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(resumed == (since + 1..=posts as u64).collect::<Vec<u64>>(), "resumed {resumed:?}");
    assert_eq!(joined["gap"], false);
    // What Slow had buffered ends with the close: "try again later".
    assert_eq!(slow.closed().await.unwrap(), Some(1013));
}

/// Sockets the server still holds open, from `/health`.
async fn sockets(server: &common::TestServer) -> u64 {
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    health["sockets"].as_u64().unwrap()
}

#[tokio::test]
async fn shutdown_tells_every_room_and_closes_with_1012() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    let mut idle = server.client("Idle").await;
    join(&mut ann, "main").await;
    let stopped = tokio::time::timeout(Duration::from_secs(5), server.server.stop());
    let (stopped, closed) = tokio::join!(stopped, ann.event("closed"));
    stopped.expect("the server stops within 5 s");
    let closed = closed.unwrap();
    assert_eq!(
        (closed["room"].as_str(), closed["reason"].as_str()),
        (Some("main"), Some("shutdown"))
    );
    assert_eq!(ann.closed().await.unwrap(), Some(1012));
    assert_eq!(idle.closed().await.unwrap(), Some(1012));
    assert!(WsClient::connect(&server.url).await.is_err(), "no longer accepting");
}

/// A drain: not ready at once, new connections refused, and the open ones
/// told (`closed` for their room) and closed with 1012 at moments spread
/// over the window, not all at once.
#[tokio::test]
async fn a_drain_closes_the_connections_spread_over_its_window() {
    let drain = Duration::from_secs(2);
    let server = start_with(|c| c.drain = drain).await;
    let mut clients = Vec::new();
    for i in 0..30 {
        let mut client = server.client(&format!("m{i}")).await;
        join(&mut client, "main").await;
        clients.push(client);
    }
    assert_eq!(server.get("/readyz").await.0, 200);
    assert_eq!(server.get("/livez").await.0, 200);
    let begun = tokio::time::Instant::now();
    let mut closes = tokio::task::JoinSet::new();
    for mut client in clients {
        closes.spawn(async move {
            let closed = client.event("closed").await.expect("told before the close");
            assert_eq!(
                (closed["room"].as_str(), closed["reason"].as_str()),
                (Some("main"), Some("shutdown"))
            );
            let code = client.closed().await.expect("closed");
            (tokio::time::Instant::now(), code)
        });
    }
    server.server.stopper().cancel();
    // Not ready at once (the drain starts as soon as the server's task
    // runs), while connections are still open.
    let not_ready = loop {
        let (status, body) = server.get("/readyz").await;
        if status == 503 {
            break body;
        }
        assert!(begun.elapsed() < Duration::from_millis(500), "/readyz still {status}: {body}");
        tokio::task::yield_now().await;
    };
    assert!(not_ready.contains("draining"), "{not_ready}");
    assert_eq!(server.get("/livez").await.0, 200, "alive while draining");
    let refused = WsClient::connect(&server.url).await;
    assert!(refused.is_err(), "a new WebSocket during the drain is refused");
    let mut times = Vec::new();
    while let Some(done) = closes.join_next().await {
        let (at, code) = done.unwrap();
        assert_eq!(code, Some(1012));
        times.push(at - begun);
    }
    times.sort();
    let (first, last) = (times[0], times[times.len() - 1]);
    // Spread over the first 80% of the window (1.6 s): thirty moments drawn
    // at random there all fall within half a second of each other with a
    // chance below one in a billion.
    assert!(last - first > Duration::from_millis(500), "closed at once: {times:?}");
    assert!(last < drain + Duration::from_millis(500), "closed too late: {times:?}");
    let early = times.iter().filter(|t| **t < Duration::from_millis(200)).count();
    assert!(early < 15, "half closed at once: {times:?}");
    tokio::time::timeout(Duration::from_secs(5), server.server.stop()).await.expect("stops");
}
