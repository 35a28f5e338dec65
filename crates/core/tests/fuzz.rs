//! Random op sequences from several connections against one hub: no
//! panic, every frame out is well-formed JSON, every id gets exactly one
//! reply, and every connection sees each room's messages in `seq` order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use confab_core::{Conn, Hub, HubConfig, MemoryStore, Outbox, OutboxReceiver};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arg() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..300).prop_map(|n| json!(n)),
        prop::sample::select(vec!["main", "ROOM0", "ROOM1", "nope", "", "x"])
            .prop_map(|s| json!(s)),
        "[a-zé <>\u{1}]{0,12}".prop_map(Value::String),
        Just(json!({"main": 0})),
    ]
}

fn op() -> impl Strategy<Value = (usize, Value)> {
    let names = vec![
        "hello", "create", "join", "join", "leave", "post", "post", "post", "typing", "rooms",
        "members", "history", "get", "mine", "ping", "bogus",
    ];
    let keys = vec![
        "name",
        "session",
        "resume",
        "title",
        "capacity",
        "retention",
        "backlog",
        "public",
        "room",
        "since",
        "body",
        "subject",
        "cid",
        "active",
        "before",
        "limit",
        "seq",
    ];
    (
        0usize..3,
        prop::sample::select(names),
        prop::collection::btree_map(prop::sample::select(keys), arg(), 0..5),
    )
        .prop_map(|(conn, name, args)| {
            let mut frame = json!({"op": name});
            for (k, v) in args {
                frame[k] = v;
            }
            (conn, frame)
        })
}

struct Client {
    conn: confab_core::Conn,
    rx: OutboxReceiver,
    /// Latest `seq` seen per room, from events and replies.
    seen: HashMap<String, u64>,
    /// Ids sent and not answered yet.
    waiting: HashSet<i64>,
}

fn check_frames(client: &mut Client) -> Result<(), TestCaseError> {
    while let Some(frame) = client.rx.try_recv() {
        let value: Value = serde_json::from_slice(&frame)
            .map_err(|e| TestCaseError::fail(format!("bad frame {e}")))?;
        prop_assert!(value.get("re").is_some() || value.get("ev").is_some(), "{value}");
        if let Some(re) = value.get("re") {
            let re = re.as_i64().unwrap();
            prop_assert!(client.waiting.remove(&re), "a reply to {re}, not awaited: {value}");
        }
        if value["ev"] == "message" {
            let m = &value["message"];
            let room = m["room"].as_str().unwrap().to_owned();
            let seq = m["seq"].as_u64().unwrap();
            let last = client.seen.insert(room, seq).unwrap_or(0);
            prop_assert!(seq > last, "seq {seq} after {last}: {value}");
        }
    }
    Ok(())
}

proptest! {
    // 64 cases by default; PROPTEST_CASES asks for more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_ops_keep_the_hub_consistent(ops in prop::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let outcome: Result<(), TestCaseError> = runtime.block_on(async {
            let hub = Hub::open(HubConfig::default(), Arc::new(MemoryStore::new())).await.unwrap();
            let mut clients: Vec<Client> = (0..3)
                .map(|_| {
                    let (outbox, rx) = Outbox::new(4096);
                    Client { conn: Conn::open(&hub, outbox, None), rx, seen: HashMap::new(), waiting: HashSet::new() }
                })
                .collect();
            for (i, (who, mut frame)) in ops.into_iter().enumerate() {
                let id = i64::try_from(i).unwrap();
                frame["id"] = json!(id);
                clients[who].waiting.insert(id);
                clients[who].conn.handle_frame(frame.to_string().as_bytes()).await;
                for client in &mut clients {
                    check_frames(client)?;
                }
            }
            // Posts to persistent rooms are answered once the writer has
            // stored them: wait for those replies, within a bound.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            while clients.iter().any(|c| !c.waiting.is_empty()) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                for client in &mut clients {
                    check_frames(client)?;
                }
            }
            for client in &clients {
                prop_assert!(client.waiting.is_empty(), "ids never answered: {:?}", client.waiting);
            }
            Ok(())
        });
        outcome?;
    }
}
