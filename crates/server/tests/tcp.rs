//! The terminal line protocol over real TCP: every command, visibility,
//! rooms shared with WebSocket users, bad input, `%exit`, and the ends of
//! a connection.

mod common;

use std::time::Duration;

use common::{TestServer, join, post, start, start_with};
use confab_client::WAIT;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A terminal user speaking the line protocol, as `nc` would.
struct Term {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The session token the login gave.
    session: Option<String>,
}

impl Term {
    /// Connects and reads the greeting up to the username prompt.
    async fn connect(server: &TestServer) -> Term {
        let stream = TcpStream::connect(server.server.tcp_addr()).await.expect("connect");
        Term::greeted(stream).await
    }

    /// Connects with a small, fixed receive buffer. Linux otherwise grows a
    /// loopback socket's buffer to tens of megabytes (`tcp_rmem`), and a
    /// client that reads nothing would take that long to fall behind.
    async fn connect_small(server: &TestServer) -> Term {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
        let stream = socket.connect(server.server.tcp_addr()).await.expect("connect");
        Term::greeted(stream).await
    }

    async fn greeted(stream: TcpStream) -> Term {
        let (reader, writer) = stream.into_split();
        let mut term = Term { reader: BufReader::new(reader), writer, session: None };
        assert!(term.line().await.starts_with("welcome to confab "));
        assert_eq!(term.line().await, "username:");
        term
    }

    /// Connects and logs in as `name`.
    async fn login(server: &TestServer, name: &str) -> Term {
        let term = Term::connect(server).await;
        term.logged_in(name).await
    }

    /// Logs in as `name` on a connection at the username prompt.
    async fn logged_in(mut self, name: &str) -> Term {
        self.send(name).await;
        let hello = self.line().await;
        assert!(hello.starts_with(&format!("hello, {name};")), "{hello}");
        self.session = Some(self.session_line().await);
        self
    }

    /// Reads the `session <token>: …` line that follows a login.
    async fn session_line(&mut self) -> String {
        let line = self.line().await;
        let token = line
            .strip_prefix("session ")
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_else(|| panic!("no session line: {line:?}"));
        assert!(
            line.ends_with(&format!(
                "type \"%session {token}\" before your username to come back as this user"
            )),
            "{line}"
        );
        token.to_owned()
    }

    async fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes()).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// The next line, without its `\n`.
    async fn line(&mut self) -> String {
        self.next().await.expect("a line, not the end of the connection")
    }

    /// The next line, or `None` at the end of the connection.
    async fn next(&mut self) -> Option<String> {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("a line within the wait")
            .expect("read");
        if read == 0 {
            return None;
        }
        assert!(line.ends_with('\n'), "unterminated line {line:?}");
        line.pop();
        Some(line)
    }

    /// Sends a command and returns the lines up to and including the first
    /// that starts with `until`.
    async fn run(&mut self, command: &str, until: &str) -> Vec<String> {
        self.send(command).await;
        self.until(until).await
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

    /// The one line a command answers with.
    async fn ask(&mut self, command: &str) -> String {
        self.send(command).await;
        self.line().await
    }

    /// Every line until the server closes the connection.
    async fn rest(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.next().await {
            lines.push(line);
        }
        lines
    }
}

/// Splits a message line `[room] id | sender | date | subject`.
fn fields(line: &str) -> Vec<&str> {
    line.split(" | ").collect()
}

#[tokio::test]
async fn the_username_is_asked_for_and_validated_like_hello() {
    let server = start().await;
    let mut term = Term::connect(&server).await;
    // Commands other than %help and %exit wait for a username.
    let refused = term.ask("%join").await;
    assert_eq!(refused, "error: log in first: type a username (or %exit)");
    assert_eq!(term.ask("%help").await, "commands:");
    term.until("  %exit").await;
    // Names are checked by the hub, as for `hello`.
    let long = "x".repeat(33);
    let error = term.ask(&long).await;
    assert!(error.starts_with("error: bad_request: name is 33 characters"), "{error}");
    assert_eq!(term.line().await, "username:");
    assert_eq!(term.ask("   ").await, "username:");
    let hello = term.ask("  Éloïse ").await;
    assert_eq!(hello, "hello, Éloïse; %join joins the board main, %help lists the commands");
    term.session_line().await;
    assert_eq!(term.ask("%list").await, "error: not_member: you are not in room main; %join first");
    // The members of a public room can be seen without joining it.
    assert_eq!(term.ask("%users").await, "[main] members (0)");
}

#[tokio::test]
async fn the_board_commands_work_and_a_joiner_sees_the_last_two_posts() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    for n in 1..=3 {
        ann.ok(json!({"op": "post", "room": "main", "subject": format!("s{n}"), "body": format!("body {n}")}))
            .await
            .unwrap();
    }
    let mut bob = Term::login(&server, "Bob").await;
    let joined = bob.run("%join", "[main] you joined").await;
    assert_eq!(joined, ["[main] you joined \"Main board\"; members (2): Ann, Bob"]);
    // The last 2 earlier posts, then everything.
    let backlog = [bob.line().await, bob.line().await];
    assert_eq!(fields(&backlog[0])[0], "[main] 2");
    assert_eq!(fields(&backlog[1])[0], "[main] 3");
    assert_eq!(fields(&backlog[1])[1], "Ann");
    assert_eq!(fields(&backlog[1])[3], "s3");
    let date = fields(&backlog[1])[2];
    assert!(date.len() == 23 && date.ends_with(" UTC") && &date[10..11] == " ", "{date}");
    post(&mut ann, "main", "no subject here").await;
    let pushed = bob.line().await;
    assert_eq!(fields(&pushed)[0], "[main] 4");
    assert_eq!(fields(&pushed)[3], "(no subject)");
    assert_eq!(fields(&pushed)[4], "no subject here", "the body, read at once");

    assert_eq!(bob.ask("%post hello  Hi there,  Ann ").await, "[main] you posted 5");
    let seen = ann.event("message").await.unwrap();
    assert_eq!(seen["message"]["subject"], "hello");
    assert_eq!(seen["message"]["body"], "Hi there,  Ann");
    assert_eq!(seen["message"]["from"]["name"], "Bob");

    assert_eq!(bob.ask("%users").await, "[main] members (2): Ann, Bob");

    // A board, which anyone may join and read, reads back before the join.
    let list = bob.run("%list", "[main] messages").await;
    assert_eq!(list, ["[main] messages (5):"]);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let line = bob.line().await;
        let parts = fields(&line);
        assert_eq!(parts.len(), 5, "{line}");
        ids.push(parts[0].parse::<u64>().unwrap());
    }
    assert_eq!(ids, [1, 2, 3, 4, 5]);

    let shown = bob.run("%message 3", "[main] 3").await;
    assert_eq!(fields(&shown[0])[1..], ["Ann", fields(&backlog[1])[2], "s3", "body 3"]);
    assert_eq!(bob.line().await, "  body 3");
    let earlier = bob.run("%message 1", "[main] 1").await;
    assert_eq!(fields(&earlier[0])[3], "s1", "{earlier:?}");
    assert_eq!(bob.line().await, "  body 1");
    let missing = bob.ask("%message 9").await;
    assert!(missing.starts_with("error: not_found: no message 9 in room main"), "{missing}");

    assert_eq!(bob.ask("%leave").await, "[main] you left");
    let left = ann.event("leave").await.unwrap();
    assert_eq!(
        (left["user"]["name"].as_str(), left["reason"].as_str()),
        (Some("Bob"), Some("left"))
    );
    let after = bob.ask("%post late again").await;
    assert_eq!(after, "error: not_member: you are not in room main; %join first");
}

#[tokio::test]
async fn a_multi_line_message_is_shown_indented() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    ann.ok(json!({"op": "post", "room": "main", "body": "one\ntwo\u{1b}[31m\n"})).await.unwrap();
    let mut bob = Term::login(&server, "Bob").await;
    bob.run("%join", "[main] 1").await;
    let shown = bob.run("%message 1", "[main] 1").await;
    assert!(shown[0].ends_with("| (no subject) | one…"), "{shown:?}");
    // Control characters from other clients never reach the terminal raw.
    assert_eq!(
        [bob.line().await, bob.line().await, bob.line().await],
        ["  one", "  two\u{fffd}[31m", "  "]
    );
}

#[tokio::test]
async fn the_group_commands_work_on_any_room_by_code_or_board_name() {
    let server = start_with(|c| {
        c.hub.boards.push(confab_core::BoardConfig {
            name: "dev".into(),
            title: "Development".into(),
            backlog: 2,
        })
    })
    .await;
    let mut ann = server.client("Ann").await;
    let code =
        server.create(&mut ann, json!({"title": "Lobby", "public": true, "capacity": 5})).await;
    let secret = server.create(&mut ann, json!({"title": "Secret"})).await;
    join(&mut ann, &code).await;
    let mut bob = Term::login(&server, "Bob").await;

    let groups = bob.run("%groups", "rooms (").await;
    assert_eq!(groups, ["rooms (3):"]);
    let rooms = [bob.line().await, bob.line().await, bob.line().await];
    assert!(rooms.contains(&"main | Main board | 0 members | persistent".to_owned()), "{rooms:?}");
    assert!(rooms.contains(&"dev | Development | 0 members | persistent".to_owned()), "{rooms:?}");
    assert!(rooms.contains(&format!("{code} | Lobby | 1 of 5 members | ephemeral")), "{rooms:?}");

    // Codes are case-insensitive; replies use the room's own spelling.
    let lower = code.to_lowercase();
    let joined = bob.ask(&format!("%groupjoin {lower}")).await;
    assert_eq!(joined, format!("[{code}] you joined \"Lobby\"; members (2): Ann (owner), Bob"));
    assert_eq!(ann.event("join").await.unwrap()["user"]["name"], "Bob");
    let posted = bob.ask(&format!("%grouppost {lower} topic  words and more")).await;
    assert_eq!(posted, format!("[{code}] you posted 1"));
    let seen = ann.event("message").await.unwrap();
    assert_eq!(
        (seen["message"]["subject"].as_str(), seen["message"]["body"].as_str()),
        (Some("topic"), Some("words and more"))
    );
    assert_eq!(
        bob.ask(&format!("%groupusers {lower}")).await,
        format!("[{code}] members (2): Ann (owner), Bob")
    );
    assert_eq!(
        bob.run(&format!("%grouplist {code}"), "[").await,
        [format!("[{code}] messages (1):")]
    );
    assert_eq!(fields(&bob.line().await)[..2], ["1", "Bob"]);
    assert_eq!(
        fields(&bob.ask(&format!("%groupmessage {code} 1")).await)[0],
        format!("[{code}] 1")
    );
    assert_eq!(bob.line().await, "  words and more");

    // A board by name, in any case; a private room by its code.
    assert!(bob.ask("%groupjoin DEV").await.starts_with("[dev] you joined \"Development\""));
    assert_eq!(bob.ask("%grouppost dev x y").await, "[dev] you posted 1");
    assert!(
        bob.ask(&format!("%groupjoin {secret}"))
            .await
            .starts_with(&format!("[{secret}] you joined \"Secret\""))
    );
    assert_eq!(bob.ask(&format!("%groupleave {secret}")).await, format!("[{secret}] you left"));
    assert_eq!(bob.ask(&format!("%groupleave {lower}")).await, format!("[{code}] you left"));
    let left = ann.event("leave").await.unwrap();
    assert_eq!(left["reason"], "left");
    // The plain commands are about main, which Bob never joined.
    assert_eq!(bob.ask("%list").await, "error: not_member: you are not in room main; %join first");
}

#[tokio::test]
async fn terminal_and_web_users_share_rooms_both_ways() {
    let server = start().await;
    let mut web = server.client("Web").await;
    let mut term = Term::login(&server, "Term").await;
    term.run("%join", "[main] you joined").await;
    // The web user joining is pushed to the terminal the moment it happens.
    join(&mut web, "main").await;
    assert_eq!(term.line().await, "[main] Web joined");
    web.ok(json!({"op": "post", "room": "main", "subject": "greetings", "body": "from the web"}))
        .await
        .unwrap();
    let pushed = term.line().await;
    assert_eq!(fields(&pushed)[0], "[main] 1");
    assert_eq!(fields(&pushed)[1], "Web");
    assert_eq!(fields(&pushed)[3], "greetings");
    let message = term.run("%message 1", "[main] 1").await;
    assert_eq!(message.len(), 1);
    assert_eq!(term.line().await, "  from the web");

    // And the other way round, with the subject.
    assert_eq!(term.ask("%post reply from the terminal").await, "[main] you posted 2");
    let seen = web.event("message").await.unwrap();
    assert_eq!(seen["message"]["seq"], 2);
    assert_eq!(seen["message"]["from"]["name"], "Term");
    assert_eq!(seen["message"]["subject"], "reply");
    assert_eq!(seen["message"]["body"], "from the terminal");
    let members = web.ok(json!({"op": "members", "room": "main"})).await.unwrap();
    assert_eq!(common::member_names(&members), ["Term", "Web"]);

    // Leaves, both ways.
    web.ok(json!({"op": "leave", "room": "main"})).await.unwrap();
    assert_eq!(term.line().await, "[main] Web left");
    join(&mut web, "main").await;
    assert_eq!(term.line().await, "[main] Web joined");
    assert_eq!(term.ask("%leave").await, "[main] you left");
    let left = web.event("leave").await.unwrap();
    assert_eq!(
        (left["user"]["name"].as_str(), left["reason"].as_str()),
        (Some("Term"), Some("left"))
    );
}

#[tokio::test]
async fn a_name_already_in_the_room_is_refused_on_join() {
    let server = start().await;
    let mut web = server.client("Ann").await;
    join(&mut web, "main").await;
    let mut term = Term::login(&server, "ANN").await;
    let refused = term.ask("%join").await;
    assert_eq!(
        refused,
        "error: name_taken: someone in room main is already called \"ANN\"; reconnect with another username, or with %session if it is you"
    );
    // The connection is still usable.
    assert_eq!(term.ask("%users").await, "[main] members (1): Ann");
}

#[tokio::test]
async fn bad_input_gets_a_one_line_error_and_the_connection_goes_on() {
    let server = start().await;
    let mut term = Term::login(&server, "Ann").await;
    let cases: &[(&[u8], &str)] = &[
        (b"%dance", "error: unknown command %dance; %help lists the commands"),
        (
            b"hello there",
            "error: commands start with %, and \"hello\" does not; %help lists the commands",
        ),
        (b"%post", "error: %post needs a subject; usage: %post <subject> <content...>"),
        (
            b"%post subject-only",
            "error: %post needs some content; usage: %post <subject> <content...>",
        ),
        (b"%message", "error: %message needs a message id; usage: %message <id>"),
        (
            b"%message seven",
            "error: a message id is a number from 1 up, not \"seven\"; usage: %message <id>",
        ),
        (
            b"%message 0",
            "error: a message id is a number from 1 up, not \"0\"; usage: %message <id>",
        ),
        (b"%join now", "error: %join does not take \"now\"; usage: %join"),
        (b"%groupjoin", "error: %groupjoin needs a room; usage: %groupjoin <room>"),
        (
            b"%groupmessage main",
            "error: %groupmessage needs a message id; usage: %groupmessage <room> <id>",
        ),
        (b"%groupjoin NOROOM", "error: not_found: no room NOROOM; %groups lists the public rooms"),
        // A room that does not exist answers as one this user is not in.
        (
            b"%groupusers nowhere",
            "error: not_member: you are not in room nowhere; %groupjoin nowhere first",
        ),
        (
            b"%post caf\xc3 latte",
            "error: the line is not valid UTF-8 (at byte 9); %help lists the commands",
        ),
        (
            b"%post bell \x07 ring",
            "error: the line contains a control character (U+0007); %help lists the commands",
        ),
        (
            b"%post esc \x1b[2J",
            "error: the line contains a control character (U+001B); %help lists the commands",
        ),
    ];
    for (input, expected) in cases {
        term.send_bytes(input).await;
        term.send_bytes(b"\n").await;
        assert_eq!(term.line().await, *expected, "{}", String::from_utf8_lossy(input));
    }
    // Rooms that do not exist, or that this user is not in.
    for (line, code) in [
        ("%groupleave NOROOM", "error: not_member: "),
        ("%grouppost NOROOM hi there", "error: not_member: "),
        ("%grouplist NOROOM", "error: not_member: "),
        ("%leave", "error: not_member: "),
        ("%post hi not joined yet", "error: not_member: "),
    ] {
        let answer = term.ask(line).await;
        assert!(answer.starts_with(code), "{line}: {answer}");
    }
    // Limits apply as on the WebSocket.
    term.run("%join", "[main] you joined").await;
    let subject = "s".repeat(121);
    let too_long = term.ask(&format!("%post {subject} body")).await;
    assert!(too_long.starts_with("error: too_large: subject is 121 characters"), "{too_long}");
    // Blank lines are ignored; CRLF works like LF.
    term.send_bytes(b"\n  \r\n%users\r\n").await;
    assert_eq!(term.line().await, "[main] members (1): Ann");
}

#[tokio::test]
async fn an_overlong_line_is_refused_without_closing_the_connection() {
    let server = start().await;
    let mut term = Term::login(&server, "Ann").await;
    term.run("%join", "[main] you joined").await;
    let limit = server.server.hub().config().limits.frame_bytes;
    // Four times the limit, in pieces, then a normal command.
    let piece = vec![b'x'; limit];
    term.send_bytes(b"%post big ").await;
    for _ in 0..4 {
        term.send_bytes(&piece).await;
    }
    term.send_bytes(b"\n%users\n").await;
    let refused = term.line().await;
    let len = 10 + 4 * limit;
    assert_eq!(
        refused,
        format!("error: too_large: the line is {len} bytes; at most {limit} are allowed")
    );
    assert_eq!(term.line().await, "[main] members (1): Ann");
    // A line of exactly the limit is still a line.
    let body = "y".repeat(limit - "%post big ".len());
    let answer = term.ask(&format!("%post big {body}")).await;
    assert!(answer.starts_with("error: too_large: body is"), "{answer}");
}

#[tokio::test]
async fn exit_leaves_every_room_and_closes() {
    let server = start().await;
    let mut web = server.client("Web").await;
    join(&mut web, "main").await;
    let code = server.create(&mut web, json!({})).await;
    join(&mut web, &code).await;
    let mut term = Term::login(&server, "Term").await;
    term.run("%join", "[main] you joined").await;
    term.run(&format!("%groupjoin {code}"), &format!("[{code}] you joined")).await;
    term.send("%exit").await;
    let mut rest = term.rest().await;
    rest.sort();
    let mut expected =
        vec!["[main] you left".to_owned(), format!("[{code}] you left"), "bye: goodbye".into()];
    expected.sort();
    assert_eq!(rest, expected);
    // Both leaves are explicit: no reconnect grace.
    let mut rooms = Vec::new();
    for _ in 0..2 {
        let left = web.event("leave").await.unwrap();
        assert_eq!(
            (left["user"]["name"].as_str(), left["reason"].as_str()),
            (Some("Term"), Some("left"))
        );
        rooms.push(left["room"].as_str().unwrap().to_owned());
    }
    rooms.sort();
    let mut expected = vec!["main".to_owned(), code];
    expected.sort();
    assert_eq!(rooms, expected);
}

#[tokio::test]
async fn exit_works_before_login() {
    let server = start().await;
    let mut term = Term::connect(&server).await;
    term.send("%exit").await;
    assert_eq!(term.rest().await, ["bye: goodbye"]);
}

#[tokio::test]
async fn a_connection_over_the_server_limit_is_refused_with_a_line() {
    let server = start_with(|c| c.edge.max_connections = 1).await;
    let _first = Term::login(&server, "Ann").await;
    let mut second = TcpStream::connect(server.server.tcp_addr()).await.unwrap();
    let mut refused = String::new();
    tokio::time::timeout(WAIT, second.read_to_string(&mut refused)).await.unwrap().unwrap();
    assert_eq!(refused, "bye: the server is at its connection limit; try again later\n");
}

#[tokio::test]
async fn a_dropped_connection_gets_the_reconnect_grace() {
    let server = start_with(|c| c.hub.grace = Duration::from_millis(300)).await;
    let mut web = server.client("Web").await;
    join(&mut web, "main").await;
    let mut term = Term::login(&server, "Term").await;
    term.run("%join", "[main] you joined").await;
    assert_eq!(web.event("join").await.unwrap()["user"]["name"], "Term");
    let dropped = tokio::time::Instant::now();
    drop(term);
    let left = web.event("leave").await.unwrap();
    assert_eq!(
        (left["user"]["name"].as_str(), left["reason"].as_str()),
        (Some("Term"), Some("disconnected"))
    );
    assert!(
        dropped.elapsed() >= Duration::from_millis(300),
        "the seat was held for the grace period"
    );
}

#[tokio::test]
async fn a_terminal_user_who_comes_back_with_the_session_within_grace_is_silent() {
    let server = start_with(|c| c.hub.grace = Duration::from_secs(30)).await;
    let mut web = server.client("Web").await;
    join(&mut web, "main").await;
    let mut term = Term::login(&server, "Term").await;
    term.run("%join", "[main] you joined").await;
    assert_eq!(web.event("join").await.unwrap()["user"]["name"], "Term");
    let session = term.session.clone().unwrap();
    drop(term);
    // Wait until the server has seen the drop: only Web is connected.
    server.wait_for_connections(1).await;
    // The seat is held: the name is still Term's, and a stranger without
    // the session cannot take it.
    let mut stranger = Term::login(&server, "term").await;
    let refused = stranger.ask("%join").await;
    assert!(refused.starts_with("error: name_taken: "), "{refused}");
    drop(stranger);
    // Term comes back with the session: the same user, and nobody sees a
    // leave or a join.
    let mut again = Term::connect(&server).await;
    assert_eq!(again.ask(&format!("%session {session}")).await, "session noted; username:");
    let mut again = again.logged_in("Term").await;
    assert_eq!(again.session.as_deref(), Some(session.as_str()));
    again.run("%join", "[main] you joined").await;
    again.run("%post back I am back", "[main] you posted").await;
    let next = web.next().await.unwrap();
    assert_eq!(next["ev"], "message", "Web saw {next} before Term's post");
    assert_eq!(next["message"]["from"]["name"], "Term");
    // After login it is refused, clearly.
    assert_eq!(
        again.ask(&format!("%session {session}")).await,
        "error: %session comes before the username, not after"
    );
}

#[tokio::test]
async fn shutdown_tells_terminal_users_and_closes() {
    let server = start().await;
    let mut joined = Term::login(&server, "Ann").await;
    joined.run("%join", "[main] you joined").await;
    let mut idle = Term::login(&server, "Bob").await;
    let addr = server.server.tcp_addr();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server.server.stop());
    let (stopped, joined_rest, idle_rest) = tokio::join!(stopped, joined.rest(), idle.rest());
    stopped.expect("the server stops within 5 s");
    assert_eq!(joined_rest, ["[main] room closed (shutdown)", "bye: the server is shutting down"]);
    assert_eq!(idle_rest, ["bye: the server is shutting down"]);
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_that_reads_nothing_is_closed_and_the_room_goes_on() {
    let server = start_with(|c| {
        c.outbox = 16;
        c.hub.rates.post = None;
        // Slow's 3,000 reads below are what fills its socket.
        c.hub.rates.read = None;
        // Message 1 stays in memory however many are posted after it.
        c.hub.room_window = 100_000;
    })
    .await;
    let mut ann = server.client("Ann").await;
    // An ephemeral room keeps the storage out of the timing.
    let room = server.create(&mut ann, json!({})).await;
    join(&mut ann, &room).await;
    post(&mut ann, &room, &"x".repeat(4000)).await;
    let mut slow = Term::connect_small(&server).await.logged_in("Slow").await;
    slow.run(&format!("%groupjoin {room}"), &format!("[{room}] 1")).await;
    // Slow asks for far more output than the socket buffers hold (12 MB
    // against the server's 4 MB send buffer and Slow's small receive one)
    // and reads none of it, so the server's writes to it stall; meanwhile
    // the posts pushed to it pile up in its outbox until it overflows.
    slow.send_bytes(format!("%groupmessage {room} 1\n").repeat(3000).as_bytes()).await;
    let overflows = || async {
        let (_, text) = server.get("/metrics").await;
        metric(&text, "confab_outbox_overflows_total")
    };
    let before = overflows().await;
    let mut posted = 1;
    while overflows().await == before {
        assert!(posted < 20_000, "Slow's outbox never overflowed");
        for _ in 0..100 {
            post(&mut ann, &room, "hello").await;
        }
        posted += 100;
    }
    // Reading at last, Slow finds the connection closed before the end.
    let mut output = Vec::new();
    tokio::time::timeout(WAIT, slow.reader.read_to_end(&mut output))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let output = String::from_utf8(output).unwrap();
    let pushed = output.lines().filter(|l| l.ends_with("| (no subject) | hello")).count();
    assert!(pushed < posted - 1, "all {pushed} posts were written");
    assert_eq!(
        output.lines().last(),
        Some("bye: too much output went unread; reconnect and read faster")
    );
    // Ann goes on.
    assert_eq!(post(&mut ann, &room, "still here").await["seq"], posted + 1);
}

/// The value of an unlabelled sample in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn on_the_terminal_only_groupjoin_tells_a_missing_room_from_a_private_one() {
    let server = start_with(|c| {
        c.hub.rates.failed_join = Some(confab_core::Rate::new(1, Duration::from_secs(3600), 1));
    })
    .await;
    let mut ann = server.client("Ann").await;
    let live = server.create(&mut ann, json!({})).await;
    join(&mut ann, &live).await;
    let missing = common::missing_like(&live);
    let mut term = Term::login(&server, "Mallory").await;
    for command in
        ["%groupleave", "%grouppost {} hi there", "%groupusers", "%grouplist", "%groupmessage {} 1"]
    {
        let line = |code: &str| {
            if command.contains("{}") {
                command.replace("{}", code)
            } else {
                format!("{command} {code}")
            }
        };
        let a = term.ask(&line(&live)).await.replace(&live, "CODE");
        let b = term.ask(&line(&missing)).await.replace(&missing, "CODE");
        assert!(a.starts_with("error: not_member: you are not in room CODE"), "{command}: {a}");
        assert_eq!(a, b, "{command}");
    }
    // %groupjoin tells them apart, inside the failed-join budget (a burst
    // of one here): the second guess blocks every join.
    let guess = term.ask(&format!("%groupjoin {missing}")).await;
    assert!(guess.starts_with("error: not_found"), "{guess}");
    let guess = term.ask("%groupjoin ZZZZZ9").await;
    assert!(guess.starts_with("error: not_found"), "{guess}");
    let blocked = term.ask(&format!("%groupjoin {live}")).await;
    assert!(blocked.starts_with("error: rate_limited"), "{blocked}");
}
