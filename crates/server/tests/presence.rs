//! Presence, capacity, grace and the life of ephemeral rooms.

mod common;

use std::time::Duration;

use common::{events, join, post, start, start_with};
use confab_client::WsClient;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_joins_into_four_seats_admit_exactly_four() {
    let server = start().await;
    for round in 0..5 {
        let mut owner = server.client("Owner").await;
        let code = server.create(&mut owner, json!({"capacity": 4})).await;
        let mut clients = Vec::new();
        for i in 0..40 {
            clients.push(server.client(&format!("user{i}")).await);
        }
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                let code = code.clone();
                tokio::spawn(async move {
                    let reply = c.request(json!({"op": "join", "room": code})).await.unwrap();
                    (reply, c)
                })
            })
            .collect();
        let mut admitted = 0;
        let mut full = 0;
        let mut keep = Vec::new();
        for task in tasks {
            let (reply, client) = task.await.unwrap();
            if reply["ok"] == true {
                admitted += 1;
            } else {
                assert_eq!(reply["error"]["code"], "room_full", "{reply}");
                full += 1;
            }
            keep.push(client);
        }
        assert_eq!((admitted, full), (4, 36), "round {round}");
        let members = keep
            .iter_mut()
            .find(|_| true)
            .unwrap()
            .request(json!({"op": "members", "room": code}))
            .await
            .unwrap();
        if members["ok"] == true {
            assert_eq!(members["members"].as_array().unwrap().len(), 4);
        }
    }
}

#[tokio::test]
async fn names_are_unique_in_a_room_ignoring_case() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    let mut other = server.client("ANN").await;
    join(&mut ann, "main").await;
    assert_eq!(
        other.error_code(json!({"op": "join", "room": "main"})).await.unwrap(),
        "name_taken"
    );
    // The same user in another tab is not a clash.
    let (mut a, hello) = WsClient::hello(&server.url, "Bob").await.unwrap();
    join(&mut a, "main").await;
    let (mut b, _) = server.tab("Bob", hello["session"].as_str().unwrap()).await;
    join(&mut b, "main").await;
}

#[tokio::test]
async fn tabs_of_one_user_are_one_member() {
    let server = start().await;
    let mut watcher = server.client("Watcher").await;
    join(&mut watcher, "main").await;
    let (mut tab1, hello) = WsClient::hello(&server.url, "Ann").await.unwrap();
    let session = hello["session"].as_str().unwrap().to_owned();
    let (mut tab2, _) = server.tab("Ann", &session).await;
    join(&mut tab1, "main").await;
    assert_eq!(watcher.event("join").await.unwrap()["user"]["name"], "Ann");
    let second = join(&mut tab2, "main").await;
    assert_eq!(second["members"].as_array().unwrap().len(), 2, "Ann counts once");
    assert!(events(&watcher.drain().await.unwrap()).is_empty(), "a second tab joins silently");
    // A post from one tab reaches the other tab and the watcher, not itself.
    post(&mut tab1, "main", "hello").await;
    assert_eq!(tab2.event("message").await.unwrap()["message"]["body"], "hello");
    assert_eq!(watcher.event("message").await.unwrap()["message"]["body"], "hello");
    assert!(events(&tab1.drain().await.unwrap()).is_empty());
    // Leaving from one tab is silent; the last tab's leave is announced.
    tab1.ok(json!({"op": "leave", "room": "main"})).await.unwrap();
    assert!(events(&watcher.drain().await.unwrap()).is_empty());
    tab2.ok(json!({"op": "leave", "room": "main"})).await.unwrap();
    let leave = watcher.event("leave").await.unwrap();
    assert_eq!(
        (leave["user"]["name"].as_str(), leave["reason"].as_str()),
        (Some("Ann"), Some("left"))
    );
}

#[tokio::test]
async fn a_reconnect_within_grace_is_silent() {
    let server = start_with(|c| c.hub.grace = Duration::from_secs(30)).await;
    let mut watcher = server.client("Watcher").await;
    join(&mut watcher, "main").await;
    let (mut ann, hello) = WsClient::hello(&server.url, "Ann").await.unwrap();
    let session = hello["session"].as_str().unwrap().to_owned();
    join(&mut ann, "main").await;
    watcher.event("join").await.unwrap();
    ann.close().await;
    // Once the server has seen the drop (only Watcher is connected), the
    // seat is held: the member list still has Ann.
    server.wait_for_connections(1).await;
    let members = watcher.ok(json!({"op": "members", "room": "main"})).await.unwrap();
    assert_eq!(members["members"].as_array().unwrap().len(), 2, "{members}");
    let (mut again, _) = server.tab("Ann", &session).await;
    let rejoined = join(&mut again, "main").await;
    let names: Vec<&str> = rejoined["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(events(&watcher.drain().await.unwrap()).is_empty(), "no leave, no join");
}

#[tokio::test]
async fn when_grace_expires_the_member_leaves_as_disconnected() {
    let server = start_with(|c| c.hub.grace = Duration::from_millis(300)).await;
    let mut watcher = server.client("Watcher").await;
    join(&mut watcher, "main").await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    watcher.event("join").await.unwrap();
    drop(ann);
    server.wait_for_connections(1).await;
    let dropped = tokio::time::Instant::now();
    let leave = watcher.event("leave").await.unwrap();
    assert!(dropped.elapsed() >= Duration::from_millis(250), "the seat was not held");
    assert_eq!(leave["user"]["name"], "Ann");
    assert_eq!(leave["reason"], "disconnected");
    let members = watcher.ok(json!({"op": "members", "room": "main"})).await.unwrap();
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_seat_held_in_grace_counts_against_capacity() {
    let server = start_with(|c| c.hub.grace = Duration::from_secs(30)).await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"capacity": 2})).await;
    join(&mut ann, &code).await;
    let mut bob = server.client("Bob").await;
    join(&mut bob, &code).await;
    bob.close().await;
    let mut eve = server.client("Eve").await;
    assert_eq!(eve.error_code(json!({"op": "join", "room": code})).await.unwrap(), "room_full");
}

#[tokio::test]
async fn an_ephemeral_room_dies_with_its_last_member() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    let code = server.create(&mut ann, json!({"public": true})).await;
    join(&mut ann, &code).await;
    join(&mut bob, &code).await;
    post(&mut ann, &code, "secret").await;
    bob.ok(json!({"op": "leave", "room": code})).await.unwrap();
    // Not the last one: the room and its messages live on.
    join(&mut bob, &code).await;
    bob.ok(json!({"op": "leave", "room": code})).await.unwrap();
    ann.ok(json!({"op": "leave", "room": code})).await.unwrap();
    assert_eq!(ann.error_code(json!({"op": "join", "room": code})).await.unwrap(), "not_found");
    let rooms = ann.ok(json!({"op": "rooms"})).await.unwrap();
    assert!(!rooms.to_string().contains(&code));
}

#[tokio::test]
async fn an_ephemeral_room_dies_when_the_last_grace_expires() {
    let server = start_with(|c| c.hub.grace = Duration::from_millis(200)).await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"public": true})).await;
    join(&mut ann, &code).await;
    let mut watcher = server.client("Watcher").await;
    join(&mut watcher, &code).await;
    drop(ann);
    watcher.event("leave").await.unwrap();
    drop(watcher);
    // Wait for the room to disappear from the public list: an observable
    // state change, bounded by the client's wait.
    let mut probe = server.client("Probe").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rooms = probe.ok(json!({"op": "rooms"})).await.unwrap();
        if !rooms.to_string().contains(&code) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "room {code} never went away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(probe.error_code(json!({"op": "join", "room": code})).await.unwrap(), "not_found");
}

#[tokio::test]
async fn an_unjoined_room_is_destroyed_after_its_ttl() {
    let server = start_with(|c| c.hub.unjoined_room_ttl = Duration::from_millis(100)).await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"public": true})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = ann.request(json!({"op": "members", "room": code})).await.unwrap();
        if reply["ok"] == false {
            // Gone: answered as any room this connection is not in.
            assert_eq!(reply["error"]["code"], "not_member");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
