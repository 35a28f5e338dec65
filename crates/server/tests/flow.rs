//! Flow control and lifecycle: slow consumers and shutdown.

mod common;

use std::time::Duration;

use common::{join, post, start, start_with};
use confab_client::WsClient;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_and_the_room_goes_on() {
    let server = start_with(|c| {
        c.outbox = 16;
        c.hub.rates.post = None;
    })
    .await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    let (mut slow, _) = WsClient::hello(&server.url, "Slow").await.unwrap();
    let code = server.create(&mut ann, json!({})).await;
    join(&mut ann, &code).await;
    join(&mut bob, &code).await;
    join(&mut slow, &code).await;
    // Slow never reads. Ann posts far more than its outbox and the socket
    // buffers hold; Bob reads everything.
    let body = "x".repeat(4000);
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < 2000 {
            let frame = bob.next().await.unwrap();
            if frame["ev"] == "message" {
                seqs.push(frame["message"]["seq"].as_u64().unwrap());
            }
        }
        seqs
    });
    for _ in 0..2000 {
        post(&mut ann, &code, &body).await;
    }
    let seqs = reader.await.unwrap();
    assert_eq!(seqs, (1..=2000).collect::<Vec<u64>>(), "Bob got every message in order");
    // Slow was closed with "try again later"; it can resume from its last seq.
    assert_eq!(slow.closed().await.unwrap(), Some(1013));
}

#[tokio::test]
async fn shutdown_tells_every_room_and_closes_with_1001() {
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
    assert_eq!(ann.closed().await.unwrap(), Some(1001));
    assert_eq!(idle.closed().await.unwrap(), Some(1001));
    assert!(WsClient::connect(&server.url).await.is_err(), "no longer accepting");
}
