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
    bob.ok(json!({"op": "lock", "room": code, "locked": true})).await.unwrap();
    assert_eq!(ann.event("locked").await.unwrap()["locked"], true);
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
    assert_eq!(joined["locked"], true, "still locked: {joined}");
    let mut newcomer = server.client("Newcomer").await;
    let refused = newcomer.error_code(json!({"op": "join", "room": code})).await.unwrap();
    assert_eq!(refused, "forbidden");
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

#[tokio::test]
async fn the_terminal_removes_a_member_and_hears_it_was_removed() {
    let server: TestServer = start_with(|_| {}).await;
    let mut owner = server.client("Owner").await;
    let code = server.create(&mut owner, json!({"public": true})).await;
    join(&mut owner, &code).await;
    let connect = || async {
        let stream = tokio::net::TcpStream::connect(server.server.tcp_addr()).await.unwrap();
        let (read, write) = stream.into_split();
        (BufReader::new(read).lines(), write)
    };
    let (mut mod_lines, mut mod_write) = connect().await;
    let (mut troll_lines, mut troll_write) = connect().await;
    async fn until(
        lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
        prefix: &str,
    ) -> String {
        loop {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("a line")
                .unwrap()
                .unwrap();
            if line.starts_with(prefix) {
                return line;
            }
        }
    }
    mod_write.write_all(format!("Mod\n%groupjoin {code}\n").as_bytes()).await.unwrap();
    until(&mut mod_lines, &format!("[{code}] you joined")).await;
    troll_write.write_all(format!("Troll\n%groupjoin {code}\n").as_bytes()).await.unwrap();
    until(&mut troll_lines, &format!("[{code}] you joined")).await;
    owner
        .ok(json!({"op": "role", "room": code, "name": "Mod", "role": "moderator"}))
        .await
        .unwrap();
    until(&mut mod_lines, &format!("[{code}] Mod is now")).await;

    mod_write.write_all(format!("%groupkick {code} troll\n").as_bytes()).await.unwrap();
    assert_eq!(
        until(&mut troll_lines, &format!("[{code}] you were")).await,
        format!("[{code}] you were removed from the room by its owner or a moderator")
    );
    assert_eq!(
        until(&mut mod_lines, &format!("[{code}] Troll")).await,
        format!("[{code}] Troll was removed from the room")
    );
    let left = owner.event("leave").await.unwrap();
    assert_eq!((&left["user"]["name"], &left["reason"]), (&json!("Troll"), &json!("kicked")));
    // Back too soon: refused, saying for how long; %exit ends cleanly.
    troll_write.write_all(format!("%groupjoin {code}\n").as_bytes()).await.unwrap();
    assert_eq!(
        until(&mut troll_lines, "error:").await,
        format!(
            "error: forbidden: you were removed from room {code}; you may join it again in 10 minutes"
        )
    );
    // The moderator locks the room from the terminal; everyone hears it.
    mod_write.write_all(format!("%grouplock {code}\n").as_bytes()).await.unwrap();
    assert_eq!(
        until(&mut mod_lines, &format!("[{code}] Mod")).await,
        format!("[{code}] Mod locked the room: nobody new may join")
    );
    assert_eq!(owner.event("locked").await.unwrap()["locked"], true);
    troll_write.write_all(b"%exit\n").await.unwrap();
    assert_eq!(until(&mut troll_lines, "bye:").await, "bye: goodbye");
}
