//! Measurements behind `docs/performance.md`. Ignored by default; run with
//!
//! ```sh
//! cargo test --release -p confab-server --test measure -- --ignored --nocapture --test-threads 1
//! ```

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::join;
use confab_client::WsClient;
use confab_core::{RoomSpec, StoredRoom, Write};
use confab_proto::{Message, User};
use confab_server::store::SqlStore;
use confab_server::{Config, Server};
use serde_json::json;

/// Acknowledged posts per second into one persistent room on SQLite, with
/// `clients` connections each keeping `window` posts in flight.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a test"]
async fn measure_persistent_posts_per_second_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.hub.rates = confab_core::Rates {
        post: None,
        join: None,
        create: None,
        ..confab_core::Rates::default()
    };
    let server = Server::start(config).await.unwrap();
    let url = format!("ws://{}/ws", server.http_addr());
    // Each client posts into a room of its own, so what is measured is the
    // store, not the fan-out.
    for (clients, window) in [(1, 1), (1, 64), (16, 64), (64, 64)] {
        let (mut owner, _) = WsClient::hello(&url, "Owner").await.unwrap();
        let mut codes = Vec::new();
        for _ in 0..clients {
            let reply = owner.ok(json!({"op": "create", "retention": "persistent"})).await.unwrap();
            codes.push(reply["room"]["code"].as_str().unwrap().to_owned());
        }
        let per_client = if window == 1 { 500 } else { 5000 };
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let url = url.clone();
                let code = codes[i].clone();
                tokio::spawn(async move {
                    let (mut c, _) = WsClient::hello(&url, &format!("p{i}")).await.unwrap();
                    join(&mut c, &code).await;
                    let mut sent = 0;
                    let mut acked = 0;
                    while acked < per_client {
                        while sent < per_client && sent - acked < window {
                            let op = json!({"op": "post", "id": sent, "room": code, "body": "x".repeat(100)});
                            c.send_text(op.to_string()).await.unwrap();
                            sent += 1;
                        }
                        let frame = c.next().await.unwrap();
                        if frame.get("re").is_some() {
                            assert_eq!(frame["ok"], true, "{frame}");
                            acked += 1;
                        }
                    }
                })
            })
            .collect();
        let connected = Instant::now();
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = started.elapsed().min(connected.elapsed() + Duration::from_secs(3600));
        let total = clients * per_client;
        println!(
            "sqlite group commit: {clients} clients x {window} in flight: {total} posts in {:.2}s = {:.0} acknowledged posts/s",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64()
        );
    }
}

fn message(room: &str, seq: u64) -> Write {
    Write::Message(Arc::new(Message {
        bot: false,
        edited: None,
        reactions: Vec::new(),
        reply: None,
        room: room.into(),
        seq,
        from: User { id: "u_seed".into(), name: "Seed".into() },
        subject: None,
        body: format!("seeded message {seq} with a body of realistic length for a chat"),
        ts: "2026-01-01T00:00:00.000Z".into(),
        cid: None,
        deleted: false,
        shadow: false,
    }))
}

/// Join latency in a persistent room of 10 messages and of 1,000,000.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a test"]
async fn measure_join_cost_against_room_size() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqlStore::open(None, dir.path()).await.unwrap().into_store();
        for (code, count) in [("SMALL2", 10u64), ("LARGE2", 1_000_000)] {
            store
                .save_room(&StoredRoom {
                    rev: 0,
                    spec: RoomSpec {
                        code: code.into(),
                        title: code.into(),
                        capacity: None,
                        retention: confab_proto::Retention::Persistent,
                        backlog: 50,
                        public: true,
                        board: false,
                        created: "2026-01-01T00:00:00.000Z".into(),
                    },
                    last_seq: 0,
                    roles: Default::default(),
                    locked: false,
                    bans: Vec::new(),
                    slow: 0,
                })
                .await
                .unwrap();
            let started = Instant::now();
            let mut seq = 1;
            while seq <= count {
                let end = (seq + 10_000).min(count + 1);
                let batch: Vec<Write> = (seq..end).map(|s| message(code, s)).collect();
                store.write(&batch).await.unwrap();
                seq = end;
            }
            println!(
                "seeded {code} with {count} messages in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut config = Config::ephemeral(dir.path());
    config.hub.rates.join = None;
    let server = Server::start(config).await.unwrap();
    let url = format!("ws://{}/ws", server.http_addr());
    let size = std::fs::metadata(dir.path().join("confab.db")).unwrap().len();
    println!("database file: {:.0} MB", size as f64 / 1e6);
    for (round, code) in ["SMALL2", "LARGE2", "SMALL2", "LARGE2"].into_iter().enumerate() {
        let mut total = Duration::ZERO;
        let rounds = 200;
        for i in 0..rounds {
            let (mut c, _) = WsClient::hello(&url, &format!("j{round}-{i}")).await.unwrap();
            let started = Instant::now();
            let joined = join(&mut c, code).await;
            total += started.elapsed();
            let seq = joined["seq"].as_u64().unwrap();
            assert_eq!(joined["messages"].as_array().unwrap().len() as u64, seq.min(50));
            c.close().await;
        }
        println!(
            "join {code}: mean {:.3} ms over {rounds} joins (a new member, backlog 50, read from the store)",
            total.as_secs_f64() * 1000.0 / f64::from(rounds),
        );
    }
}
