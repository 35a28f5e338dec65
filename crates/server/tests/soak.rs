//! A soak: good clients chat while bad ones flood, fuzz, hog and churn.
//! The good ones must lose nothing and see nothing twice; the server must
//! stay up with bounded memory. `CONFAB_SOAK_SECS` sets the length
//! (default 15 s; CI runs longer).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{join, start_with};
use confab_client::WsClient;
use serde_json::json;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak (CONFAB_SOAK_SECS, 15 s by default): .ci/run runs it for 120 s"]
async fn good_clients_are_served_while_bad_ones_misbehave() {
    let secs: u64 =
        std::env::var("CONFAB_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let server = start_with(|c| {
        c.outbox = 64;
        c.edge.hello_timeout = Duration::from_millis(500);
        c.hub.grace = Duration::from_millis(200);
    })
    .await;
    let url = server.url.clone();
    let mut owner = server.client("Owner").await;
    let mut rooms = Vec::new();
    for retention in ["ephemeral", "persistent", "ephemeral", "persistent"] {
        rooms
            .push(server.create(&mut owner, json!({"retention": retention, "public": true})).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let bad_ops = Arc::new(AtomicU64::new(0));

    // Good clients: five per room, each posting every 200 ms with a cid.
    let mut good = Vec::new();
    for (r, code) in rooms.iter().enumerate() {
        for i in 0..5 {
            let (url, code, stop) = (url.clone(), code.clone(), stop.clone());
            good.push(tokio::spawn(async move {
                let (mut c, _) = WsClient::hello(&url, &format!("good{r}-{i}")).await.unwrap();
                let joined = join(&mut c, &code).await;
                let first = joined["seq"].as_u64().unwrap();
                let mut seen = Vec::new();
                // Others' messages, in the order they arrived.
                let mut events = Vec::new();
                let mut posted = 0u64;
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                // Reading all the time, as a browser does, and posting
                // every 200 ms: a good client never falls behind.
                while !stop.load(Ordering::Relaxed) {
                    let frame = tokio::select! {
                        _ = tick.tick() => {
                            let op = json!({"op": "post", "id": posted, "room": code, "body": format!("g{posted}"), "cid": format!("c{posted}")});
                            c.send_text(op.to_string()).await.unwrap();
                            posted += 1;
                            continue;
                        }
                        frame = c.next() => frame.unwrap(),
                    };
                    if frame["ev"] == "message" {
                        seen.push(frame["message"]["seq"].as_u64().unwrap());
                        events.push(frame["message"]["seq"].as_u64().unwrap());
                    } else if frame.get("re").is_some() {
                        assert_eq!(frame["ok"], true, "a good post failed: {frame}");
                        seen.push(frame["message"]["seq"].as_u64().unwrap());
                    }
                }
                // Drain: everything up to the room's latest seq must arrive.
                // The latest is asked again once all up to it is here, until
                // it stops moving (others' last posts may still be on
                // their way).
                let mut last = first;
                loop {
                    let again = c.ok(json!({"op": "join", "room": code, "since": u64::MAX})).await.unwrap();
                    let latest = again["seq"].as_u64().unwrap();
                    if latest == last && seen.iter().filter(|&&s| s > first).count() as u64 >= last - first {
                        break;
                    }
                    last = latest;
                    while (seen.iter().filter(|&&s| s > first).count() as u64) < last - first {
                        let frame = c.next().await.unwrap();
                        if frame["ev"] == "message" {
                            events.push(frame["message"]["seq"].as_u64().unwrap());
                        }
                        if frame["ev"] == "message" || (frame.get("re").is_some() && frame["message"].is_object()) {
                            seen.push(frame["message"]["seq"].as_u64().unwrap());
                        }
                    }
                }
                assert!(
                    events.windows(2).all(|w| w[0] < w[1]),
                    "a good client saw messages out of order: {events:?}"
                );
                (first, last, seen, posted)
            }));
        }
    }

    // Bad clients, each a loop of one kind of misbehaviour.
    let mut bad = Vec::new();
    for kind in 0..6 {
        let (url, stop, count, room) =
            (url.clone(), stop.clone(), bad_ops.clone(), rooms[0].clone());
        bad.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let Ok(mut c) = WsClient::connect(&url).await else { continue };
                match kind {
                    // Garbage frames.
                    0 => {
                        let _ = c.ok(json!({"op": "hello", "name": format!("junk{n}")})).await;
                        for junk in ["{", "[]", "null", r#"{"op":"post"}"#, r#"{"op":"join","room":5}"#] {
                            let _ = c.send_text(junk).await;
                        }
                        let _ = c.drain().await;
                    }
                    // Oversized frames.
                    1 => {
                        let _ = c.send_text("x".repeat(70_000)).await;
                        let _ = c.closed().await;
                    }
                    // Never says hello.
                    2 => {
                        let _ = c.closed().await;
                    }
                    // Floods posts into a room with good clients.
                    3 => {
                        if c.ok(json!({"op": "hello", "name": format!("flood{n}")})).await.is_ok()
                            && c.ok(json!({"op": "join", "room": room})).await.is_ok()
                        {
                            for i in 0..100 {
                                let _ = c.send_text(json!({"op": "post", "room": room, "body": format!("spam{i}")}).to_string()).await;
                            }
                            let _ = c.drain().await;
                        }
                    }
                    // Guesses room codes.
                    4 => {
                        let _ = c.ok(json!({"op": "hello", "name": format!("guess{n}")})).await;
                        for i in 0..30 {
                            let _ = c.request(json!({"op": "join", "room": format!("ZZZ{i:03}")})).await;
                        }
                    }
                    // Joins and never reads, then vanishes.
                    _ => {
                        let _ = c.ok(json!({"op": "hello", "name": format!("slow{n}")})).await;
                        let _ = c.ok(json!({"op": "join", "room": room})).await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Memory: sampled after a warm-up, compared at the end.
    tokio::time::sleep(Duration::from_secs(secs.min(5))).await;
    let warm = rss_bytes();
    let mut peak = warm;
    let end = tokio::time::Instant::now() + Duration::from_secs(secs.saturating_sub(5).max(1));
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(rss_bytes());
    }
    stop.store(true, Ordering::Relaxed);
    for task in bad {
        task.await.unwrap();
    }
    for task in good {
        let (first, last, mut seen, posted) = task.await.unwrap();
        assert!(posted > 0);
        let count = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), count, "a good client saw a message twice");
        let expected: Vec<u64> = (first + 1..=last).collect();
        let got: Vec<u64> = seen.into_iter().filter(|&s| s > first).collect();
        assert_eq!(got, expected, "a good client missed messages");
    }
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200);
    let growth = peak.saturating_sub(warm);
    eprintln!(
        "soak: {secs}s, {} bad sessions, rss after warm-up {} MB, peak {} MB",
        bad_ops.load(Ordering::Relaxed),
        warm / 1_000_000,
        peak / 1_000_000
    );
    assert!(bad_ops.load(Ordering::Relaxed) > 10, "the bad clients did run");
    assert!(growth < 64_000_000, "memory grew by {growth} bytes during the soak");
}
