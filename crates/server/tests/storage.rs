//! Persistent rooms end to end: restarts, `mine`, the store path of joins
//! and history, retention, a corrupt file, and a database that goes away.

mod common;

use std::time::Duration;

use common::{join, post, postgres_database, start_with};
use confab_client::WsClient;
use confab_server::{Config, Server};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn seqs(messages: &Value) -> Vec<u64> {
    messages.as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn persistent_rooms_sessions_and_seqs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url;
    let session;
    let user_id;
    let code;
    {
        let server = Server::start(Config::ephemeral(dir.path())).await.unwrap();
        url = format!("ws://{}/ws", server.http_addr());
        let (mut ann, hello) = WsClient::hello(&url, "Ann").await.unwrap();
        session = hello["session"].as_str().unwrap().to_owned();
        user_id = hello["user"]["id"].clone();
        code = ann
            .ok(json!({"op": "create", "title": "Kept", "retention": "persistent", "public": true}))
            .await
            .unwrap()["room"]["code"]
            .as_str()
            .unwrap()
            .to_owned();
        join(&mut ann, &code).await;
        for i in 1..=3 {
            post(&mut ann, &code, &format!("m{i}")).await;
        }
        join(&mut ann, "main").await;
        post(&mut ann, "main", "on the board").await;
        server.stop().await;
    }
    let server = Server::start(Config::ephemeral(dir.path())).await.unwrap();
    let url = format!("ws://{}/ws", server.http_addr());
    let mut ann = WsClient::connect(&url).await.unwrap();
    let hello = ann.ok(json!({"op": "hello", "name": "Ann", "session": session})).await.unwrap();
    assert_eq!(hello["session"], session.as_str(), "the session is still valid");
    assert_eq!(hello["user"]["id"], user_id, "and names the same user");
    let rooms = ann.ok(json!({"op": "rooms"})).await.unwrap();
    let kept =
        rooms["rooms"].as_array().unwrap().iter().find(|r| r["code"] == code.as_str()).unwrap();
    assert_eq!(
        (kept["title"].as_str(), kept["retention"].as_str()),
        (Some("Kept"), Some("persistent"))
    );
    let joined = ann.ok(json!({"op": "join", "room": code, "since": 0})).await.unwrap();
    assert_eq!(seqs(&joined["messages"]), [1, 2, 3]);
    assert_eq!(joined["messages"][0]["body"], "m1");
    assert_eq!(joined["seq"], 3);
    assert_eq!(post(&mut ann, &code, "m4").await["seq"], 4, "seq continues without a gap");
    let board = join(&mut ann, "main").await;
    assert_eq!(board["messages"][0]["body"], "on the board");
    assert_eq!(board["messages"][0]["from"]["id"], user_id, "posts keep their author");
}

#[tokio::test]
async fn mine_lists_my_posts_in_persistent_rooms_newest_first() {
    let server = start_with(|_| {}).await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    let kept = server.create(&mut ann, json!({"retention": "persistent"})).await;
    let gone = server.create(&mut ann, json!({})).await;
    join(&mut ann, &kept).await;
    join(&mut ann, &gone).await;
    join(&mut ann, "main").await;
    join(&mut bob, "main").await;
    post(&mut ann, &kept, "one").await;
    post(&mut ann, &gone, "ephemeral, not listed").await;
    post(&mut ann, "main", "two").await;
    post(&mut bob, "main", "not mine").await;
    post(&mut ann, &kept, "three").await;
    let mine = ann.ok(json!({"op": "mine"})).await.unwrap();
    let bodies: Vec<&str> =
        mine["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["three", "two", "one"]);
    let mine = ann.ok(json!({"op": "mine", "limit": 1})).await.unwrap();
    assert_eq!(mine["messages"].as_array().unwrap().len(), 1);
    assert_eq!(ann.error_code(json!({"op": "mine", "limit": 500})).await.unwrap(), "bad_request");
}

#[tokio::test]
async fn ephemeral_messages_never_reach_the_disk() {
    let server = start_with(|_| {}).await;
    let mut ann = server.client("Ann").await;
    let room = server.create(&mut ann, json!({})).await;
    let kept = server.create(&mut ann, json!({"retention": "persistent"})).await;
    join(&mut ann, &room).await;
    join(&mut ann, &kept).await;
    let secret = format!("ephemeral-secret-{}", std::process::id());
    let stored = format!("persistent-text-{}", std::process::id());
    for _ in 0..20 {
        post(&mut ann, &room, &secret).await;
    }
    post(&mut ann, &kept, &stored).await;
    ann.ok(json!({"op": "leave", "room": room})).await.unwrap();
    let mut found_stored = false;
    for entry in std::fs::read_dir(server.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!contains(&secret), "{} holds an ephemeral message", path.display());
        found_stored |= contains(&stored);
    }
    assert!(found_stored, "the scan sees what persistent rooms write (WAL included)");
}

#[tokio::test]
async fn joins_and_history_page_from_the_store_beyond_the_window() {
    let server = start_with(|c| c.hub.room_window = 3).await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"retention": "persistent", "backlog": 0})).await;
    join(&mut ann, &code).await;
    for i in 1..=10 {
        post(&mut ann, &code, &format!("m{i}")).await;
    }
    let again = ann.ok(json!({"op": "join", "room": code, "since": 2})).await.unwrap();
    assert_eq!(seqs(&again["messages"]), (3..=10).collect::<Vec<_>>());
    assert_eq!(again["gap"], false);
    let page =
        ann.ok(json!({"op": "history", "room": code, "before": 9, "limit": 4})).await.unwrap();
    assert_eq!(seqs(&page["messages"]), [5, 6, 7, 8]);
    let one = ann.ok(json!({"op": "get", "room": code, "seq": 2})).await.unwrap();
    assert_eq!(one["message"]["body"], "m2");
    // A newcomer with backlog 0 sees none of it, from window or store.
    let mut bob = server.client("Bob").await;
    let joined = join(&mut bob, &code).await;
    assert_eq!(joined["messages"], json!([]));
    assert_eq!(
        bob.error_code(json!({"op": "get", "room": code, "seq": 2})).await.unwrap(),
        "not_found"
    );
    let history = bob.ok(json!({"op": "history", "room": code})).await.unwrap();
    assert_eq!(history["messages"], json!([]));
}

#[tokio::test]
async fn retention_prunes_old_messages_of_created_rooms_only() {
    let server = start_with(|c| {
        c.hub.room_retention.keep = Some(3);
        c.hub.prune_every = Duration::from_millis(50);
    })
    .await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"retention": "persistent", "backlog": 10})).await;
    join(&mut ann, &code).await;
    join(&mut ann, "main").await;
    for i in 1..=8 {
        post(&mut ann, &code, &format!("m{i}")).await;
        post(&mut ann, "main", &format!("b{i}")).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = ann.ok(json!({"op": "history", "room": code})).await.unwrap();
        if seqs(&page["messages"]) == [6, 7, 8] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never pruned: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let board = ann.ok(json!({"op": "history", "room": "main"})).await.unwrap();
    assert_eq!(board["messages"].as_array().unwrap().len(), 8, "boards keep everything by default");
}

#[tokio::test]
async fn a_corrupt_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("confab.db");
    let garbage = b"this is not a database, and it must survive".repeat(200);
    std::fs::write(&file, &garbage).unwrap();
    let error = match Server::start(Config::ephemeral(dir.path())).await {
        Ok(_) => panic!("a corrupt database must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains(&file.display().to_string()), "{error}");
    assert!(error.contains("not a database"), "{error}");
    assert_eq!(std::fs::read(&file).unwrap(), garbage, "the file is untouched");
}

/// A TCP proxy to PostgreSQL that the test can cut and restore.
struct Proxy {
    addr: std::net::SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if !*watch.borrow() {
                    let _ = client.shutdown().await;
                    continue;
                }
                let mut watch = watch.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else { return };
                    let cut = CancellationToken::new();
                    let guard = cut.clone();
                    tokio::spawn(async move {
                        while watch.changed().await.is_ok() {
                            if !*watch.borrow() {
                                guard.cancel();
                                return;
                            }
                        }
                    });
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        Proxy { addr, up }
    }

    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

async fn health(server: &common::TestServer) -> u16 {
    server.get("/health").await.0
}

async fn wait_for_health(server: &common::TestServer, status: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while health(server).await != status {
        assert!(tokio::time::Instant::now() < deadline, "/health never became {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CONFAB_TEST_POSTGRES"]
async fn a_database_that_goes_away_degrades_and_recovers() {
    let url = postgres_database().await;
    let (prefix, rest) = url.split_once('@').unwrap();
    let (target, database) = rest.split_once('/').unwrap();
    let proxy = Proxy::start(target.to_owned()).await;
    let proxied = format!("{prefix}@{}/{database}", proxy.addr);
    let server = start_with(|c| c.database = Some(proxied)).await;
    let mut ann = server.client("Ann").await;
    let kept = server.create(&mut ann, json!({"retention": "persistent"})).await;
    let fleeting = server.create(&mut ann, json!({})).await;
    join(&mut ann, &kept).await;
    join(&mut ann, &fleeting).await;
    post(&mut ann, &kept, "before").await;
    assert_eq!(health(&server).await, 200);
    let (mut bob, bob_hello) = WsClient::hello(&server.url, "Bob").await.unwrap();
    join(&mut bob, &fleeting).await;
    ann.event("join").await.unwrap();

    proxy.set(false);
    // The next persistent post fails with `unavailable` in bounded time.
    let started = tokio::time::Instant::now();
    let reply = ann.request(json!({"op": "post", "room": kept, "body": "during"})).await.unwrap();
    assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    wait_for_health(&server, 503).await;
    let again = ann.request(json!({"op": "post", "room": kept, "body": "during"})).await.unwrap();
    assert_eq!(again["error"]["code"], "unavailable");
    // Ephemeral rooms do not care.
    post(&mut ann, &fleeting, "still chatting").await;
    // A page refresh during the outage is still the same user, and silent:
    // the session record outlives the connection through the grace.
    bob.close().await;
    server.wait_for_connections(1).await;
    let (mut bob, again) = server.tab("Bob", bob_hello["session"].as_str().unwrap()).await;
    assert_eq!(again["user"]["id"], bob_hello["user"]["id"], "{again}");
    join(&mut bob, &fleeting).await;
    post(&mut bob, &fleeting, "back").await;
    let next = ann.next().await.unwrap();
    assert_eq!(next["ev"], "message", "Ann saw {next} before Bob's post");

    proxy.set(true);
    wait_for_health(&server, 200).await;
    let after = post(&mut ann, &kept, "after").await;
    assert_eq!(after["seq"], 2, "the failed posts left no gap");
    let history = ann.ok(json!({"op": "history", "room": kept})).await.unwrap();
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["before", "after"]);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: CONFAB_TEST_POSTGRES"]
async fn the_server_runs_on_postgres_with_the_same_behaviour() {
    let url = postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.database = Some(url.clone());
    let server = Server::start(config.clone()).await.unwrap();
    let ws = format!("ws://{}/ws", server.http_addr());
    let (mut ann, hello) = WsClient::hello(&ws, "Ann").await.unwrap();
    join(&mut ann, "main").await;
    for i in 1..=3 {
        post(&mut ann, "main", &format!("m{i}")).await;
    }
    server.stop().await;
    let server = Server::start(config).await.unwrap();
    let ws = format!("ws://{}/ws", server.http_addr());
    let mut ann = WsClient::connect(&ws).await.unwrap();
    let again =
        ann.ok(json!({"op": "hello", "name": "Ann", "session": hello["session"]})).await.unwrap();
    assert_eq!(again["user"]["id"], hello["user"]["id"]);
    let joined = ann.ok(json!({"op": "join", "room": "main", "since": 1})).await.unwrap();
    assert_eq!(seqs(&joined["messages"]), [2, 3]);
    assert!(!dir.path().join("confab.db").exists(), "no SQLite file when PostgreSQL is used");
}

#[tokio::test]
async fn a_burst_of_new_sessions_is_stored_whole() {
    // A thousand clients say hello at once (a restart, say). Their
    // sessions are written in shared transactions; each must be durable by
    // its `hello` reply and name the same user after a restart.
    const CLIENTS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Config::ephemeral(dir.path())).await.unwrap();
    let url = format!("ws://{}/ws", server.http_addr());
    let hellos = (0..CLIENTS).map(|i| {
        let url = url.clone();
        tokio::spawn(async move {
            let (client, hello) = WsClient::hello(&url, &format!("u{i}")).await.unwrap();
            (client, hello["session"].as_str().unwrap().to_owned(), hello["user"]["id"].clone())
        })
    });
    let mut sessions = Vec::new();
    for hello in hellos.collect::<Vec<_>>() {
        sessions.push(hello.await.unwrap());
    }
    server.stop().await;
    let server = Server::start(Config::ephemeral(dir.path())).await.unwrap();
    let url = format!("ws://{}/ws", server.http_addr());
    for (i, (_, session, id)) in sessions.iter().enumerate() {
        let mut client = WsClient::connect(&url).await.unwrap();
        let hello = client
            .ok(json!({"op": "hello", "name": format!("u{i}"), "session": session}))
            .await
            .unwrap();
        assert_eq!(&hello["user"]["id"], id, "session {i} of {CLIENTS} names its user");
        assert_eq!(hello["session"], session.as_str());
    }
}
