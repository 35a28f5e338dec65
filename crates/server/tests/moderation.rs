//! Moderation against the real server: a ban bars the member's session and
//! the address they came from (as a trusted proxy forwards it), outlives a
//! restart in a persistent room, and is listed and lifted; the terminal
//! bans, lists and lifts by name and id, mutes, slows and renames; a
//! deleted message's text is gone from the SQLite file. (The rules on both
//! backends are in the cluster crate's conformance suite; long polling in
//! `lp.rs`.)

mod common;

use common::{join, start_with};
use confab_client::{WAIT, WsClient};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A client whose connection a proxy on loopback forwards for `address`.
async fn from(url: &str, address: &str, name: &str, session: Option<&str>) -> (WsClient, Value) {
    let mut client = WsClient::connect_forwarded(url, address).await.unwrap();
    let mut hello = json!({"op": "hello", "name": name});
    if let Some(session) = session {
        hello["session"] = json!(session);
    }
    let reply = client.ok(hello).await.unwrap();
    (client, reply)
}

#[tokio::test]
async fn a_ban_bars_the_session_and_the_address_and_outlives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().to_owned();
    let start = || {
        let path = path.clone();
        start_with(move |c| {
            c.data = path;
            c.edge.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        })
    };
    let server = start().await;
    let (mut ann, hello) = WsClient::hello(&server.url, "Ann").await.unwrap();
    let ann_session = hello["session"].as_str().unwrap().to_owned();
    let code = server.create(&mut ann, json!({"retention": "persistent"})).await;
    join(&mut ann, &code).await;
    let (mut troll, hello) = from(&server.url, "203.0.113.9", "Troll", None).await;
    let troll_session = hello["session"].as_str().unwrap().to_owned();
    let troll_id = hello["user"]["id"].as_str().unwrap().to_owned();
    join(&mut troll, &code).await;

    ann.ok(json!({"op": "ban", "room": code, "name": "troll"})).await.unwrap();
    let closed = troll.event("closed").await.unwrap();
    assert_eq!(closed["reason"], "banned");
    let left = ann.event("leave").await.unwrap();
    assert_eq!((&left["user"]["name"], &left["reason"]), (&json!("Troll"), &json!("banned")));
    // A new session from the same address: barred too.
    let (mut sock, _) = from(&server.url, "203.0.113.9", "Sock", None).await;
    let refused = sock.request(json!({"op": "join", "room": code})).await.unwrap();
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    assert_eq!(refused["error"]["message"], format!("you are banned from room {code}"));
    drop((ann, troll, sock));
    server.server.stop().await;

    // After a restart: the session and the address are still barred.
    let server = start().await;
    let (mut troll, _) = from(&server.url, "198.51.100.3", "Troll", Some(&troll_session)).await;
    let refused = troll.error_code(json!({"op": "join", "room": code})).await.unwrap();
    assert_eq!(refused, "forbidden", "the session");
    let (mut sock, _) = from(&server.url, "203.0.113.9", "Sock", None).await;
    assert_eq!(sock.error_code(json!({"op": "join", "room": code})).await.unwrap(), "forbidden");
    let (mut other, _) = from(&server.url, "203.0.113.10", "Other", None).await;
    join(&mut other, &code).await;
    // The owner lists the ban, and lifts it: both come back in.
    let (mut ann, _) = server.tab("Ann", &ann_session).await;
    join(&mut ann, &code).await;
    let listed = ann.ok(json!({"op": "bans", "room": code})).await.unwrap();
    let bans = listed["bans"].as_array().unwrap();
    assert_eq!(bans.len(), 1, "{listed}");
    assert_eq!(
        (&bans[0]["user"]["id"], &bans[0]["reason"], &bans[0]["address"]),
        (&json!(troll_id), &json!("banned"), &json!(true))
    );
    assert!(!listed.to_string().contains("203.0.113"), "no address in it: {listed}");
    let mut plain = server.client("Plain").await;
    join(&mut plain, &code).await;
    assert_eq!(plain.error_code(json!({"op": "bans", "room": code})).await.unwrap(), "forbidden");
    ann.ok(json!({"op": "unban", "room": code, "user": troll_id})).await.unwrap();
    join(&mut sock, &code).await;
    join(&mut troll, &code).await;
}

#[tokio::test]
async fn the_terminal_bans_lists_and_lifts() {
    let server = start_with(|_| {}).await;
    let mut owner = server.client("Owner").await;
    let code = server.create(&mut owner, json!({"public": true})).await;
    join(&mut owner, &code).await;
    let mut troll = server.client("Troll").await;
    join(&mut troll, &code).await;
    let stream = tokio::net::TcpStream::connect(server.server.tcp_addr()).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut until = async |prefix: &str| loop {
        let line =
            tokio::time::timeout(WAIT, lines.next_line()).await.expect("a line").unwrap().unwrap();
        if line.starts_with(prefix) {
            return line;
        }
    };
    write.write_all(format!("Mod\n%groupjoin {code}\n").as_bytes()).await.unwrap();
    until(&format!("[{code}] you joined")).await;
    // Not a moderator yet: refused, saying why.
    write.write_all(format!("%groupban {code} troll\n").as_bytes()).await.unwrap();
    assert_eq!(
        until("error:").await,
        format!("error: forbidden: only the owner and moderators remove members in room {code}")
    );
    owner
        .ok(json!({"op": "role", "room": code, "name": "Mod", "role": "moderator"}))
        .await
        .unwrap();
    until(&format!("[{code}] Mod is now")).await;
    write.write_all(format!("%groupban {code} troll\n").as_bytes()).await.unwrap();
    assert_eq!(
        until(&format!("[{code}] Troll")).await,
        format!("[{code}] Troll was banned from the room")
    );
    assert_eq!(troll.event("closed").await.unwrap()["reason"], "banned");
    write.write_all(format!("%groupbans {code}\n").as_bytes()).await.unwrap();
    assert_eq!(until(&format!("[{code}] bans")).await, format!("[{code}] bans (1):"));
    let line = until("Troll").await;
    let id = line.split(['(', ')']).nth(1).unwrap().to_owned();
    assert!(id.starts_with("u_"), "{line}");
    assert_eq!(line, format!("Troll ({id}) banned by Mod until lifted"));
    write.write_all(format!("%groupunban {code} {id}\n").as_bytes()).await.unwrap();
    assert_eq!(
        until(&format!("[{code}] the ban")).await,
        format!("[{code}] the ban of {id} is lifted")
    );
    join(&mut troll, &code).await;
    write.write_all(format!("%groupunban {code} {id}\n").as_bytes()).await.unwrap();
    assert_eq!(
        until("error:").await,
        format!("error: not_found: {id} is not banned from room {code}")
    );
    write.write_all(format!("%groupbans {code}\n").as_bytes()).await.unwrap();
    assert_eq!(
        until(&format!("[{code}]")).await,
        format!("[{code}] nobody is banned, removed or muted")
    );
}

#[tokio::test]
async fn a_deleted_message_s_text_is_gone_from_the_database_file() {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().to_owned();
    let server = start_with({
        let path = path.clone();
        move |c| c.data = path
    })
    .await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"retention": "persistent"})).await;
    join(&mut ann, &code).await;
    let secret = "my-password-is-hunter2-xyzzy";
    let posted = ann.ok(json!({"op": "post", "room": code, "body": secret})).await.unwrap();
    let seq = posted["message"]["seq"].as_u64().unwrap();
    ann.ok(json!({"op": "post", "room": code, "body": "something else"})).await.unwrap();
    ann.ok(json!({"op": "delete", "room": code, "seq": seq})).await.unwrap();
    assert_eq!(ann.event("deleted").await.unwrap()["seq"], seq);
    // Read back through the store (after a restart nothing is in memory).
    drop(ann);
    server.server.stop().await;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&path).unwrap() {
        let file = entry.unwrap().path();
        let bytes = std::fs::read(&file).unwrap();
        if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
            found.push(file);
        }
    }
    assert!(found.is_empty(), "the text is still in {found:?}");
    let server = start_with(move |c| c.data = path).await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, &code).await;
    let history = ann.ok(json!({"op": "history", "room": code})).await.unwrap();
    assert_eq!(history["messages"][0]["deleted"], true, "{history}");
    assert_eq!(history["messages"][1]["body"], "something else");
}
