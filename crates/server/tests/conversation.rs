//! Edits, replies and reactions against the real server: the terminal's
//! commands and what a web user hears of them, the edit window, and what
//! reaches the disk (a persistent room's changes, after a restart; never
//! an ephemeral room's). (The rules on both backends are in the cluster
//! crate's conformance suite.)

mod common;

use std::time::{Duration, Instant};

use common::{join, start_with};
use confab_client::WAIT;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A terminal user, as `nc` would be.
struct Term {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Term {
    async fn login(server: &common::TestServer, name: &str) -> Term {
        let stream = TcpStream::connect(server.server.tcp_addr()).await.unwrap();
        let (reader, writer) = stream.into_split();
        let mut term = Term { reader: BufReader::new(reader), writer };
        term.until("username:").await;
        term.send(name).await;
        term.until("session ").await;
        term
    }

    async fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line)).await;
        assert!(read.expect("a line within the wait").unwrap() > 0, "the connection ended");
        line.pop();
        line
    }

    /// Lines up to and including the first that starts with `prefix`.
    async fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let done = line.starts_with(prefix);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    async fn run(&mut self, command: &str, until: &str) -> Vec<String> {
        self.send(command).await;
        self.until(until).await
    }
}

#[tokio::test]
async fn the_terminal_replies_edits_and_reacts_and_web_users_hear_it() {
    let server = start_with(|_| {}).await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    let mut bob = Term::login(&server, "Bob").await;
    bob.run("%join", "[main] you joined").await;
    ann.event("join").await.unwrap();
    ann.ok(json!({"op": "post", "room": "main", "body": "who is **in** tonight?"})).await.unwrap();
    bob.until("[main] 1 | Ann").await;

    // A reply: no subject, the quote shown under it to everyone.
    assert_eq!(bob.run("%reply 1 count me in", "[main] you posted").await.len(), 1);
    let heard = ann.event("message").await.unwrap();
    let quote = &heard["message"]["reply"];
    assert_eq!((&quote["seq"], &quote["body"]), (&json!(1), &json!("who is **in** tonight?")));
    // An edit: the author's own, which everyone hears.
    let edited = bob.run("%edit 2 count me and Cleo in", "[main] 2 | Bob").await;
    assert!(edited.iter().any(|l| l == "[main] Bob edited message 2:"), "{edited:?}");
    assert!(
        edited.last().unwrap().ends_with("| (no subject) | count me and Cleo in"),
        "{edited:?}"
    );
    let event = ann.event("edited").await.unwrap();
    assert_eq!(
        (&event["seq"], &event["message"]["body"]),
        (&json!(2), &json!("count me and Cleo in"))
    );
    // A reaction, on and off.
    bob.run("%react 1 🎉", "[main] Bob reacted 🎉 to message 1").await;
    let event = ann.event("reacted").await.unwrap();
    assert_eq!(
        (&event["emoji"], &event["on"], &event["user"]["name"]),
        (&json!("🎉"), &json!(true), &json!("Bob"))
    );
    ann.ok(json!({"op": "react", "room": "main", "seq": 2, "emoji": "👍"})).await.unwrap();
    bob.until("[main] Ann reacted 👍 to message 2").await;

    // `%message` shows the quote, the edit and the reactions.
    let shown = bob.run("%message 2", "  (edited").await;
    assert_eq!(shown[1], "  ↪ in reply to 1 (Ann): who is **in** tonight?", "{shown:?}");
    assert_eq!(shown[2], "  count me and Cleo in");
    assert_eq!(bob.line().await, "  👍 1: Ann");
    bob.run("%react 1 🎉", "[main] Bob took 🎉 off message 1").await;

    // Refusals: one line each, and the connection goes on.
    let refused = bob.run("%edit 1 mine now", "error:").await;
    assert!(
        refused.last().unwrap().starts_with("error: forbidden: only its author edits message 1")
    );
    let refused = bob.run("%react 1 yes", "error:").await;
    assert!(refused.last().unwrap().starts_with("error: bad_request: emoji must be one emoji"));
    let refused = bob.run("%reply 99 hello?", "error:").await;
    assert!(refused.last().unwrap().starts_with("error: not_found: no message 99"), "{refused:?}");
    let refused = bob.run("%edit two words", "error:").await;
    assert!(refused.last().unwrap().contains("%edit <id> <content...>"), "{refused:?}");
    bob.run("%users", "[main]").await;
}

#[tokio::test]
async fn a_message_may_be_edited_only_within_the_edit_window() {
    let server = start_with(|c| c.hub.edit_window = Duration::from_millis(1500)).await;
    let (mut ann, hello) = confab_client::WsClient::hello(&server.url, "Ann").await.unwrap();
    assert_eq!(hello["server"]["edit_seconds"], 1, "{hello}");
    join(&mut ann, "main").await;
    let posted = Instant::now();
    ann.ok(json!({"op": "post", "room": "main", "body": "draft"})).await.unwrap();
    ann.ok(json!({"op": "edit", "room": "main", "seq": 1, "body": "better"})).await.unwrap();
    // (Waiting is the point: the window is a time.)
    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(posted.elapsed())).await;
    let late =
        ann.request(json!({"op": "edit", "room": "main", "seq": 1, "body": "too late"})).await;
    let error = &late.unwrap()["error"];
    assert_eq!(error["code"], "forbidden");
    assert!(error["message"].as_str().unwrap().contains("may no longer be edited"), "{error}");
    let got = ann.ok(json!({"op": "get", "room": "main", "seq": 1})).await.unwrap();
    assert_eq!(got["message"]["body"], "better");

    let server = start_with(|c| c.hub.edit_window = Duration::ZERO).await;
    let (mut ann, hello) = confab_client::WsClient::hello(&server.url, "Ann").await.unwrap();
    assert_eq!(hello["server"]["edit_seconds"], 0);
    join(&mut ann, "main").await;
    ann.ok(json!({"op": "post", "room": "main", "body": "draft"})).await.unwrap();
    let refused = ann.request(json!({"op": "edit", "room": "main", "seq": 1, "body": "x"})).await;
    assert_eq!(refused.unwrap()["error"]["code"], "forbidden");
}

#[tokio::test]
async fn a_persistent_room_keeps_its_changes_and_an_ephemeral_one_never_writes_them() {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().to_owned();
    let server = start_with({
        let path = path.clone();
        move |c| c.data = path
    })
    .await;
    let (mut ann, hello) = confab_client::WsClient::hello(&server.url, "Ann").await.unwrap();
    let session = hello["session"].as_str().unwrap().to_owned();
    let kept = server.create(&mut ann, json!({"retention": "persistent"})).await;
    let fleeting = server.create(&mut ann, json!({})).await;
    join(&mut ann, &kept).await;
    join(&mut ann, &fleeting).await;
    for (code, body, edit) in [
        (&kept, "kept-first-words", "kept-second-words"),
        (&fleeting, "gone-first-words", "gone-second-words"),
    ] {
        ann.ok(json!({"op": "post", "room": code, "body": body})).await.unwrap();
        let reply = json!({"op": "post", "room": code, "body": "an answer", "reply": 1});
        ann.ok(reply).await.unwrap();
        ann.ok(json!({"op": "edit", "room": code, "seq": 1, "body": edit})).await.unwrap();
        ann.ok(json!({"op": "react", "room": code, "seq": 1, "emoji": "🦀"})).await.unwrap();
    }
    drop(ann);
    server.server.stop().await;
    let on_disk = |text: &str| {
        std::fs::read_dir(&path).unwrap().any(|entry| {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            bytes.windows(text.len()).any(|w| w == text.as_bytes())
        })
    };
    assert!(on_disk("kept-second-words"), "the persistent room's edit is stored");
    for text in ["gone-first-words", "gone-second-words"] {
        assert!(!on_disk(text), "an ephemeral room's text reached the disk: {text}");
    }

    let server = start_with(move |c| c.data = path).await;
    let mut ann = confab_client::WsClient::connect(&server.url).await.unwrap();
    ann.ok(json!({"op": "hello", "name": "Ann", "session": session})).await.unwrap();
    let joined = join(&mut ann, &kept).await;
    assert!(joined["rev"].as_u64().unwrap() >= 2, "the change number goes on: {joined}");
    let history = ann.ok(json!({"op": "history", "room": kept})).await.unwrap();
    let first = &history["messages"][0];
    assert_eq!(first["body"], "kept-second-words", "{history}");
    assert!(first["edited"].is_string());
    assert_eq!(
        (&first["reactions"][0]["emoji"], &first["reactions"][0]["count"]),
        (&json!("🦀"), &json!(1))
    );
    assert_eq!(history["messages"][1]["reply"]["body"], "kept-first-words", "the quote as it was");
    // After the restart the newest stored messages may still be changed.
    ann.ok(json!({"op": "react", "room": kept, "seq": 1, "emoji": "🦀"})).await.unwrap();
    ann.ok(json!({"op": "delete", "room": kept, "seq": 1})).await.unwrap();
    let history = ann.ok(json!({"op": "history", "room": kept})).await.unwrap();
    assert_eq!(history["messages"][1]["reply"]["deleted"], true, "{history}");
}
