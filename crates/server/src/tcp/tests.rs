use bytes::Bytes;
use std::net::Ipv4Addr;
use std::sync::Arc;

use confab_core::{HubConfig, MemoryStore};
use confab_proto::{Message, User};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::command::{Command, Misuse, decode, parse};
use super::line::{Line, LineReader};
use super::render::{clean, date, summary};
use super::*;
use crate::admission::{Edge, EdgeConfig};

fn command(text: &str) -> Command {
    parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).unwrap_or_else(|| panic!("{text}: blank"))
}

fn misuse(text: &str) -> String {
    parse(text).expect_err(text).to_string()
}

#[test]
fn the_plain_commands_act_on_main() {
    let main = || "main".to_owned();
    assert_eq!(command("%join"), Command::Join { room: main() });
    assert_eq!(command("%leave"), Command::Leave { room: main() });
    assert_eq!(
        command("%post  hi   there,  you  "),
        Command::Post { room: main(), subject: "hi".into(), body: "there,  you".into() }
    );
    assert_eq!(command("%users"), Command::Users { room: main() });
    assert_eq!(command("%list"), Command::List { room: main() });
    assert_eq!(command("%message 12"), Command::Message { room: main(), id: 12 });
    assert_eq!(command("%groups"), Command::Groups);
    assert_eq!(command("%help"), Command::Help);
    assert_eq!(command("  %EXIT  "), Command::Exit);
}

#[test]
fn the_group_commands_name_their_room() {
    let room = || "ABC234".to_owned();
    assert_eq!(command("%groupjoin ABC234"), Command::Join { room: room() });
    assert_eq!(command("%groupleave ABC234"), Command::Leave { room: room() });
    assert_eq!(
        command("%grouppost ABC234 topic some words"),
        Command::Post { room: room(), subject: "topic".into(), body: "some words".into() }
    );
    assert_eq!(command("%groupusers ABC234"), Command::Users { room: room() });
    assert_eq!(command("%grouplist ABC234"), Command::List { room: room() });
    assert_eq!(command("%GroupMessage ABC234 3"), Command::Message { room: room(), id: 3 });
}

#[test]
fn blank_lines_are_nothing() {
    assert_eq!(parse(""), Ok(None));
    assert_eq!(parse("   "), Ok(None));
}

#[test]
fn misuse_says_what_is_wrong_and_how_to_write_it() {
    assert_eq!(misuse("%nope"), "unknown command %nope; %help lists the commands");
    assert_eq!(
        misuse("hi"),
        "commands start with %, and \"hi\" does not; %help lists the commands"
    );
    assert_eq!(misuse("%post"), "%post needs a subject; usage: %post <subject> <content...>");
    assert_eq!(misuse("%post s "), "%post needs some content; usage: %post <subject> <content...>");
    assert_eq!(
        misuse("%grouppost main"),
        "%grouppost needs a subject; usage: %grouppost <room> <subject> <content...>"
    );
    assert_eq!(
        misuse("%message -1"),
        "a message id is a number from 1 up, not \"-1\"; usage: %message <id>"
    );
    assert_eq!(misuse("%groups all"), "%groups does not take \"all\"; usage: %groups");
    assert_eq!(
        misuse("%groupleave a b"),
        "%groupleave does not take \"b\"; usage: %groupleave <room>"
    );
}

#[test]
fn every_command_has_help() {
    let mut help = String::new();
    render::help(&mut help);
    for name in [
        "%join",
        "%leave",
        "%post",
        "%users",
        "%list",
        "%message",
        "%groups",
        "%groupjoin",
        "%groupleave",
        "%grouppost",
        "%groupusers",
        "%grouplist",
        "%groupmessage",
        "%help",
        "%exit",
    ] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(&format!("{name} "))), "{name}");
    }
}

#[test]
fn lines_must_be_utf8_without_control_characters() {
    assert_eq!(decode("%post é ü".as_bytes()), Ok("%post é ü"));
    let bad = |bytes: &[u8]| decode(bytes).map_err(|Misuse { problem, .. }| problem).unwrap_err();
    assert_eq!(bad(b"ab\xff"), "the line is not valid UTF-8 (at byte 2)");
    assert_eq!(bad(b"a\tb"), "the line contains a control character (U+0009)");
    assert_eq!(bad("a\u{85}b".as_bytes()), "the line contains a control character (U+0085)");
}

async fn read_lines(input: &[u8], limit: usize) -> Vec<Line> {
    let mut reader = LineReader::new(input, limit);
    let mut lines = Vec::new();
    while let Some(line) = reader.next_line().await.unwrap() {
        lines.push(line);
    }
    lines
}

fn complete(text: &str) -> Line {
    Line::Complete(Bytes::copy_from_slice(text.as_bytes()))
}

#[tokio::test]
async fn lines_end_with_lf_or_crlf_and_the_last_needs_neither() {
    let lines = read_lines(b"one\ntwo\r\n\nthree\r", 16).await;
    assert_eq!(lines, [complete("one"), complete("two"), complete(""), complete("three")]);
}

#[tokio::test]
async fn an_overlong_line_is_skipped_and_reported_once_its_end_arrives() {
    let mut input = b"ok\n".to_vec();
    input.extend(vec![b'x'; 100]);
    input.extend(b"\nafter\n");
    input.extend(vec![b'y'; 17]);
    let lines = read_lines(&input, 16).await;
    assert_eq!(lines, [complete("ok"), Line::TooLong(100), complete("after"), Line::TooLong(17)]);
    // Exactly the limit, with or without CR, is fine.
    let exact = "z".repeat(16);
    let input = format!("{exact}\r\n{exact}\n");
    assert_eq!(read_lines(input.as_bytes(), 16).await, [complete(&exact), complete(&exact)]);
}

#[tokio::test]
async fn memory_stays_bounded_by_the_limit_whatever_the_line() {
    let limit = 1024;
    let huge = vec![b'x'; 4 << 20];
    let mut reader = LineReader::new(&huge[..], limit);
    assert_eq!(reader.next_line().await.unwrap(), Some(Line::TooLong(4 << 20)));
    assert!(reader.capacity() <= 2 * (limit + 8 * 1024), "buffer grew to {}", reader.capacity());
}

fn message(subject: Option<&str>) -> Message {
    Message {
        bot: false,
        edited: None,
        reactions: Vec::new(),
        reply: None,
        room: "main".into(),
        seq: 7,
        from: User { id: "u_1".into(), name: "Ann".into() },
        subject: subject.map(str::to_owned),
        body: "hi".into(),
        ts: "2026-11-22T05:01:02.345Z".into(),
        cid: None,
        deleted: false,
        shadow: false,
    }
}

#[test]
fn a_message_line_has_id_sender_date_subject_and_the_body_s_first_line() {
    assert_eq!(summary(&message(Some("news"))), "7 | Ann | 2026-11-22 05:01:02 UTC | news | hi");
    assert_eq!(summary(&message(None)), "7 | Ann | 2026-11-22 05:01:02 UTC | (no subject) | hi");
    let long = Message { body: "x".repeat(300), ..message(None) };
    let line = summary(&long);
    assert!(line.ends_with(&format!("| {}…", "x".repeat(200))), "{line}");
    let lines = Message { body: "first\nsecond\n".into(), ..message(None) };
    assert!(summary(&lines).ends_with("| first…"));
    let gone = Message { body: String::new(), deleted: true, ..message(Some("news")) };
    assert_eq!(summary(&gone), "7 | Ann | 2026-11-22 05:01:02 UTC | (deleted)");
    assert_eq!(date("yesterday"), "yesterday");
    assert_eq!(clean("a\tb\u{1b}[0m"), "a b\u{fffd}[0m");
}

/// Starts a session on an in-memory pipe; returns the client's end.
async fn session() -> BufReader<DuplexStream> {
    let store = Arc::new(MemoryStore::new());
    let edge = Edge::new(EdgeConfig::default());
    let app = App {
        hub: crate::rooms::open_local(HubConfig::default(), store)
            .await
            .expect("a memory store opens"),
        outbox: 64,
        shutdown: CancellationToken::new(),
        sockets: TaskTracker::new(),
        lp: crate::lp::Registry::new(Duration::from_secs(25), Duration::from_secs(60)),
        edge: edge.clone(),
        draining: CancellationToken::new(),
        spread: Duration::ZERO,
        tls: None,
        terminal_tls: None,
        admin: None,
        bots: crate::api::Bots::new(),
    };
    let ticket = edge.admit(Ipv4Addr::LOCALHOST.into()).expect("room for one connection");
    let (client, server) = tokio::io::duplex(4096);
    tokio::spawn(serve(server, app, None, ticket));
    BufReader::new(client)
}

/// Reads lines from the client end until the server closes it.
async fn rest(reader: &mut BufReader<DuplexStream>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    while reader.read_line(&mut line).await.unwrap() > 0 {
        lines.push(line.trim_end().to_owned());
        line.clear();
    }
    lines
}

#[tokio::test(start_paused = true)]
async fn no_username_in_time_closes_the_connection() {
    let started = Instant::now();
    let mut client = session().await;
    let lines = rest(&mut client).await;
    assert_eq!(lines[1..], ["username:", "bye: no username within 60 s"]);
    assert!(started.elapsed() >= LOGIN_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn wrong_names_do_not_extend_the_login_timeout() {
    let started = Instant::now();
    let mut client = session().await;
    for _ in 0..3 {
        tokio::time::sleep(LOGIN_TIMEOUT / 4).await;
        client.get_mut().write_all(b"  \n").await.unwrap();
    }
    let lines = rest(&mut client).await;
    assert_eq!(lines.last().map(String::as_str), Some("bye: no username within 60 s"));
    assert!(started.elapsed() < LOGIN_TIMEOUT + LOGIN_TIMEOUT / 4);
}

#[tokio::test(start_paused = true)]
async fn a_logged_in_client_that_sends_nothing_is_closed_when_idle() {
    let mut client = session().await;
    client.get_mut().write_all(b"Ann\n").await.unwrap();
    let mut line = String::new();
    // The login ends with the session line.
    while !line.starts_with("session ") {
        line.clear();
        client.read_line(&mut line).await.unwrap();
    }
    // A command restarts the idle clock.
    tokio::time::sleep(IDLE_TIMEOUT - Duration::from_secs(60)).await;
    client.get_mut().write_all(b"%users\n").await.unwrap();
    let asked = Instant::now();
    let lines = rest(&mut client).await;
    assert_eq!(lines, ["[main] members (0)", "bye: nothing received for 60 minutes"]);
    assert!(asked.elapsed() >= IDLE_TIMEOUT);
}
