//! Room roles against the real server: the owner of a persistent room and
//! its moderators outlive a restart (SQLite), and the terminal shows roles
//! and gives them by name. (The rules themselves, on both backends, are in
//! the cluster crate's conformance suite; long polling in `lp.rs`.)

mod common;

use common::{TestServer, join, start_with};
use confab_client::WAIT;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn a_persistent_rooms_roles_outlive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().to_owned();
    let start = || {
        let path = path.clone();
        start_with(move |c| c.data = path)
    };
    let server = start().await;
    let mut ann = server.client("Ann").await;
    let session = {
        let mut tab = confab_client::WsClient::connect(&server.url).await.unwrap();
        let reply = tab.ok(json!({"op": "hello", "name": "Bob"})).await.unwrap();
        reply["session"].as_str().unwrap().to_owned()
    };
    let (mut bob, hello) = server.tab("Bob", &session).await;
    let bob_id = hello["user"]["id"].as_str().unwrap().to_owned();
    let code = server.create(&mut ann, json!({"retention": "persistent"})).await;
    join(&mut ann, &code).await;
    join(&mut bob, &code).await;
    ann.ok(json!({"op": "role", "room": code, "user": bob_id, "role": "moderator"})).await.unwrap();
    assert_eq!(bob.event("role").await.unwrap()["role"], "moderator");
    let ann_id = ann.ok(json!({"op": "members", "room": code})).await.unwrap()["roles"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, role)| *role == "owner")
        .map(|(id, _)| id.clone())
        .unwrap();
    drop((ann, bob));
    server.server.stop().await;

    let server = start().await;
    let (mut bob, _) = server.tab("Bob", &session).await;
    let joined = join(&mut bob, &code).await;
    assert_eq!(
        joined["roles"],
        json!({ann_id.as_str(): "owner", bob_id.as_str(): "moderator"}),
        "{joined}"
    );
}

#[tokio::test]
async fn the_terminal_shows_roles_and_gives_them_by_name() {
    let server: TestServer = start_with(|_| {}).await;
    let mut web = server.client("Web").await;
    let code = server.create(&mut web, json!({"public": true})).await;
    join(&mut web, &code).await;

    let stream = tokio::net::TcpStream::connect(server.server.tcp_addr()).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut next = async || {
        tokio::time::timeout(WAIT, lines.next_line()).await.expect("a line").unwrap().unwrap()
    };
    write.write_all(format!("Term\n%groupjoin {code}\n").as_bytes()).await.unwrap();
    let mut joined = next().await;
    while !joined.starts_with(&format!("[{code}] you joined")) {
        joined = next().await;
    }
    assert!(joined.ends_with("members (2): Term, Web (owner)"), "{joined}");
    // Not the owner: refused, saying why.
    write.write_all(format!("%grouprole {code} moderator Web\n").as_bytes()).await.unwrap();
    assert_eq!(
        next().await,
        format!("error: forbidden: only the owner of room {code} gives roles")
    );
    // Named a moderator by the owner: every member is told.
    web.ok(json!({"op": "role", "room": code, "name": "term", "role": "moderator"})).await.unwrap();
    assert_eq!(next().await, format!("[{code}] Term is now the room's moderator"));
    write.write_all(format!("%groupusers {code}\n").as_bytes()).await.unwrap();
    assert_eq!(next().await, format!("[{code}] members (2): Term (moderator), Web (owner)"));
    // Handed over to Term, who then makes Web a plain member, by name.
    web.ok(json!({"op": "role", "room": code, "name": "Term", "role": "owner"})).await.unwrap();
    assert_eq!(next().await, format!("[{code}] Term is now the room's owner"));
    assert_eq!(next().await, format!("[{code}] Web is now the room's moderator"));
    write.write_all(format!("%grouprole {code} member web\n").as_bytes()).await.unwrap();
    assert_eq!(next().await, format!("[{code}] Web is a member like the others now"));
    write.write_all(format!("%grouprole {code} king web\n").as_bytes()).await.unwrap();
    assert_eq!(
        next().await,
        "error: a role is owner, moderator or member, not \"king\"; usage: \
         %grouprole <room> <owner|moderator|member> <name...>"
    );
    // The web user heard each change too, in order.
    let mut heard = Vec::new();
    for _ in 0..4 {
        let event = web.event("role").await.unwrap();
        heard.push(format!("{} {}", event["user"]["name"], event["role"]));
    }
    assert_eq!(
        heard,
        [r#""Term" "moderator""#, r#""Term" "owner""#, r#""Web" "moderator""#, r#""Web" "member""#]
    );
}
