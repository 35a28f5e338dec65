//! IRC against the real server, with raw lines as a client sends them:
//! registration with CAP, the numerics clients wait for, a channel shared
//! with a WebSocket user both ways, server-time and echo-message, and the
//! numerics for what cannot be done.

mod common;

use common::{join, post, start_with};
use confab_client::WAIT;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let (reader, writer) = TcpStream::connect(addr).await.unwrap().into_split();
        Client { reader: BufReader::new(reader), writer }
    }

    async fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line)).await;
        assert!(read.expect("a line within the wait").unwrap() > 0, "the connection ended");
        assert!(line.ends_with("\r\n"), "{line:?}");
        line.truncate(line.len() - 2);
        line
    }

    /// A client registered as `nick` with the capabilities `caps`: the
    /// lines of its welcome, to the 422 that ends it.
    async fn register(addr: std::net::SocketAddr, caps: &str, nick: &str) -> (Client, Vec<String>) {
        let mut irc = Client::connect(addr).await;
        irc.send(&format!("CAP REQ :{caps}")).await;
        assert!(irc.line().await.ends_with(&format!(" ACK :{caps}")));
        irc.send(&format!("NICK {nick}")).await;
        irc.send(&format!("USER {nick} 0 * :{nick}")).await;
        irc.send("CAP END").await;
        let welcome = irc.until(" 422 ").await;
        (irc, welcome)
    }

    /// Lines up to and including the first that contains `needle`.
    async fn until(&mut self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let done = line.contains(needle);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

#[tokio::test]
async fn an_irc_user_registers_joins_and_talks_with_a_web_user() {
    let server = start_with(|c| c.irc = Some("127.0.0.1:0".into())).await;
    let addr = server.server.irc_addr().expect("irc is on");
    let mut irc = Client::connect(addr).await;
    irc.send("CAP LS 302").await;
    let caps = ":confab CAP * LS :server-time message-tags echo-message batch draft/chathistory \
                labeled-response draft/multiline=max-bytes=4096,max-lines=64";
    assert_eq!(irc.line().await, caps);
    irc.send("NICK bob").await;
    irc.send("USER bob 0 * :Bob B").await;
    irc.send("CAP REQ :server-time echo-message").await;
    assert_eq!(irc.line().await, ":confab CAP bob ACK :server-time echo-message");
    irc.send("CAP REQ :sasl").await;
    assert_eq!(irc.line().await, ":confab CAP bob NAK :sasl");
    irc.send("CAP END").await;
    let welcome = irc.until(" 422 ").await;
    for code in ["001", "002", "003", "004", "005"] {
        assert!(
            welcome.iter().any(|l| l.starts_with(&format!(":confab {code} bob "))),
            "{code}: {welcome:?}"
        );
    }
    let isupport = welcome.iter().find(|l| l.contains(" 005 ")).unwrap();
    assert!(isupport.contains("CHANTYPES=#") && isupport.contains("NETWORK=confab"), "{isupport}");
    let session = irc.line().await;
    assert!(session.contains("connect with PASS "), "{session}");
    irc.send("PING :abc").await;
    assert_eq!(irc.line().await, ":confab PONG confab :abc");

    // A channel is a room; a web user is in it.
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    ann.ok(json!({"op": "post", "room": "main", "body": "before you came"})).await.unwrap();
    irc.send("JOIN #main").await;
    let joined = irc.until(" 366 ").await;
    assert!(joined[0].starts_with(":bob!u_") && joined[0].ends_with(" JOIN #main"), "{joined:?}");
    assert!(joined.iter().any(|l| l == ":confab 332 bob #main :Main board"), "{joined:?}");
    assert!(joined.iter().any(|l| l.starts_with(":confab 353 bob = #main :")
        && l.contains("Ann")
        && l.contains("bob")));
    // The board's backlog, with its time.
    let backlog = irc.line().await;
    assert!(
        backlog.starts_with("@time=20") && backlog.ends_with(" PRIVMSG #main :before you came"),
        "{backlog}"
    );
    assert_eq!(ann.event("join").await.unwrap()["user"]["name"], "bob");

    // Both ways, multi-line bodies as several lines.
    ann.ok(json!({"op": "post", "room": "main", "body": "hello irc\nsecond line"})).await.unwrap();
    let first = irc.line().await;
    assert!(
        first.starts_with("@time=")
            && first.contains(":Ann!u_")
            && first.ends_with("PRIVMSG #main :hello irc"),
        "{first}"
    );
    assert!(irc.line().await.ends_with("PRIVMSG #main :second line"));
    irc.send("PRIVMSG #main :hello web").await;
    let heard = ann.event("message").await.unwrap();
    assert_eq!(
        (&heard["message"]["body"], &heard["message"]["from"]["name"]),
        (&json!("hello web"), &json!("bob"))
    );
    let echoed = irc.line().await;
    assert!(echoed.starts_with("@time=") && echoed.contains(":bob!u_"), "{echoed}");
    assert!(echoed.ends_with(" PRIVMSG #main :hello web"), "echo-message: {echoed}");
    irc.send("PRIVMSG #main :\u{1}ACTION waves\u{1}").await;
    assert_eq!(ann.event("message").await.unwrap()["message"]["body"], "* bob waves");
    irc.line().await;

    // What cannot be done: each its numeric, and the session goes on.
    irc.send("JOIN #NOSUCH").await;
    assert!(irc.line().await.starts_with(":confab 403 bob #NOSUCH :No such channel"));
    irc.send("FROB").await;
    assert_eq!(irc.line().await, ":confab 421 bob FROB :Unknown command");
    irc.send("PRIVMSG #other :x").await;
    assert!(irc.line().await.starts_with(":confab 404 bob #other :"));
    irc.send("TOPIC #main :new title").await;
    assert!(irc.line().await.starts_with(":confab 482 bob #main"));
    irc.send("MODE #main").await;
    assert_eq!(irc.line().await, ":confab 324 bob #main +nt");
    irc.send("WHO #main").await;
    let who = irc.until(" 315 ").await;
    assert!(
        who.iter().any(|l| l.starts_with(":confab 352 bob #main ") && l.contains(" Ann H :0 Ann")),
        "{who:?}"
    );
    irc.send("LIST").await;
    let list = irc.until(" 323 ").await;
    assert!(list.iter().any(|l| l.starts_with(":confab 322 bob #main ")), "{list:?}");
    // A private room not joined: not on that channel, and the list ends.
    let private = server.create(&mut ann, json!({})).await;
    irc.send(&format!("NAMES #{private}")).await;
    assert!(irc.line().await.starts_with(&format!(":confab 442 bob #{private} :")));
    assert!(irc.line().await.starts_with(&format!(":confab 366 bob #{private} :")));
    irc.send(&format!("WHO #{private}")).await;
    assert!(irc.line().await.starts_with(&format!(":confab 442 bob #{private} :")));
    assert!(irc.line().await.starts_with(&format!(":confab 315 bob #{private} :")));

    // Leaving, and quitting.
    irc.send("PART #main").await;
    assert!(irc.line().await.ends_with(" PART #main"));
    let left = ann.event("leave").await.unwrap();
    assert_eq!((&left["user"]["name"], &left["reason"]), (&json!("bob"), &json!("left")));
    irc.send("QUIT :bye").await;
    assert!(irc.line().await.starts_with("ERROR :Closing link: Quit: bye"));
}

#[tokio::test]
async fn registration_comes_first_and_pass_brings_the_same_user_back() {
    let server = start_with(|c| c.irc = Some("127.0.0.1:0".into())).await;
    let addr = server.server.irc_addr().unwrap();
    let mut irc = Client::connect(addr).await;
    irc.send("JOIN #main").await;
    assert_eq!(irc.line().await, ":confab 451 * :You have not registered");
    irc.send("NICK x y").await;
    irc.send("USER a").await;
    assert_eq!(irc.line().await, ":confab 461 x USER :Not enough parameters");
    irc.send("NICK   ").await;
    assert_eq!(irc.line().await, ":confab 431 x :No nickname given");
    irc.send("USER cy 0 * :Cy").await;
    let welcome = irc.until(" 422 ").await;
    assert!(welcome[0].starts_with(":confab 001 x "), "{welcome:?}");
    let note = irc.line().await;
    let token = note.split("PASS ").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    irc.send("JOIN #main").await;
    let joined = irc.until(" 366 ").await;
    let id = joined[0].split('!').nth(1).unwrap().split('@').next().unwrap().to_owned();
    drop(irc);
    let mut again = Client::connect(addr).await;
    again.send(&format!("PASS {token}")).await;
    again.send("NICK x").await;
    again.send("USER x 0 * :x").await;
    again.until(" 422 ").await;
    again.line().await;
    again.send("JOIN #main").await;
    let joined = again.until(" 366 ").await;
    assert!(joined[0].contains(&format!("!{id}@")), "the same user: {joined:?}");
}

/// tmux with its own server socket, so the test's session is apart from
/// any other.
fn tmux(socket: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("tmux").arg("-S").arg(socket).args(args).output().expect("tmux runs")
}

#[tokio::test]
#[ignore = "needs irssi and tmux (.ci/services installs them)"]
async fn irssi_in_tmux_talks_with_a_web_user() {
    for tool in ["irssi", "tmux"] {
        let found =
            std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "{tool} is not installed: this test needs it"
        );
    }
    let server = start_with(|c| c.irc = Some("127.0.0.1:0".into())).await;
    let port = server.server.irc_addr().unwrap().port().to_string();
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("tmux.sock");
    let command =
        format!("irssi --home={} -c 127.0.0.1 -p {port} -n irssiuser", home.path().display());
    let started =
        tmux(&socket, &["new-session", "-d", "-s", "irc", "-x", "160", "-y", "40", &command]);
    assert!(started.status.success(), "{started:?}");
    let keys = |text: &str| {
        let sent = tmux(&socket, &["send-keys", "-t", "irc", text, "Enter"]);
        assert!(sent.status.success());
    };
    let screen = || {
        String::from_utf8_lossy(&tmux(&socket, &["capture-pane", "-p", "-t", "irc"]).stdout)
            .into_owned()
    };
    // Registered once the welcome is shown; then join the board.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !screen().contains("Welcome to confab") {
        assert!(std::time::Instant::now() < deadline, "irssi registers: {}", screen());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    keys("/join #main");
    let joined = ann.event("join").await.unwrap();
    assert_eq!(joined["user"]["name"], "irssiuser");
    ann.ok(json!({"op": "post", "room": "main", "body": "hello from the web"})).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !screen().contains("hello from the web") {
        assert!(std::time::Instant::now() < deadline, "irssi shows the message: {}", screen());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    keys("hello from irssi");
    let heard = ann.event("message").await.unwrap();
    assert_eq!(
        (&heard["message"]["body"], &heard["message"]["from"]["name"]),
        (&json!("hello from irssi"), &json!("irssiuser"))
    );
    keys("/quit");
    let left = ann.event("leave").await.unwrap();
    assert_eq!(left["user"]["name"], "irssiuser");
    let _ = tmux(&socket, &["kill-server"]);
}

#[tokio::test]
#[ignore = "needs python3 with the irc package from PyPI (.ci/services installs it)"]
async fn an_independent_python_irc_client_talks_with_a_web_user() {
    let server = start_with(|c| c.irc = Some("127.0.0.1:0".into())).await;
    let port = server.server.irc_addr().unwrap().port().to_string();
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/irc_client.py");
    let child = tokio::process::Command::new("python3")
        .args([script, "127.0.0.1", &port])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let heard = ann.event("message").await.unwrap();
    assert_eq!(
        (&heard["message"]["body"], &heard["message"]["from"]["name"]),
        (&json!("hello from python"), &json!("pyuser"))
    );
    ann.ok(json!({"op": "post", "room": "main", "body": "hello from the web"})).await.unwrap();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the client ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("GOT hello from the web"),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_room_is_made_by_asking_the_service_and_typing_and_long_lines_cross() {
    let server = start_with(|c| c.irc = Some("127.0.0.1:0".into())).await;
    let addr = server.server.irc_addr().unwrap();
    let (mut irc, _) = Client::register(addr, "message-tags server-time", "dee").await;
    irc.line().await;
    // Joining a channel of no room makes none; the service does.
    irc.send("JOIN #Tea").await;
    assert!(irc.line().await.starts_with(":confab 403 dee #Tea "));
    irc.send("PRIVMSG confab :help").await;
    assert!(irc.line().await.contains(":/msg confab create [title]"));
    irc.send("PRIVMSG confab :create Tea time").await;
    let made = irc.line().await;
    let code = made.split("room #").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    irc.send(&format!("JOIN #{code}")).await;
    let joined = irc.until(" 366 ").await;
    assert!(
        joined.iter().any(|l| l == &format!(":confab 332 dee #{code} :Tea time")),
        "{joined:?}"
    );
    let mut ann = server.client("Ann").await;
    join(&mut ann, &code).await;
    irc.line().await;
    // Typing both ways, as the client tag.
    irc.send(&format!("@+typing=active TAGMSG #{code}")).await;
    let typing = ann.event("typing").await.unwrap();
    assert_eq!((&typing["user"]["name"], &typing["active"]), (&json!("dee"), &json!(true)));
    ann.ok(json!({"op": "typing", "room": code, "active": true})).await.unwrap();
    let tag = irc.line().await;
    assert!(
        tag.starts_with("@+typing=active :Ann!") && tag.ends_with(&format!(" TAGMSG #{code}")),
        "{tag}"
    );
    // A long line is cut into IRC-sized pieces, whole.
    let long = "lorem ipsum ".repeat(80);
    ann.ok(json!({"op": "post", "room": code, "body": long.trim_end()})).await.unwrap();
    let mut text = String::new();
    while text.len() < long.trim_end().len() {
        let line = irc.line().await;
        assert!(line.len() <= 512, "{} bytes", line.len());
        text.push_str(line.split(" PRIVMSG ").nth(1).unwrap().split_once(" :").unwrap().1);
    }
    assert_eq!(text, long.trim_end());
}

#[tokio::test]
async fn a_client_pages_back_with_chathistory_in_a_batch() {
    let server = start_with(|c| c.irc = Some("127.0.0.1:0".into())).await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    for n in 1..=5 {
        ann.ok(json!({"op": "post", "room": "main", "body": format!("m{n}")})).await.unwrap();
    }
    let addr = server.server.irc_addr().unwrap();
    let (mut irc, welcome) =
        Client::register(addr, "batch draft/chathistory message-tags server-time", "eve").await;
    assert!(welcome.iter().any(|l| l.contains("CHATHISTORY=100")), "{welcome:?}");
    irc.line().await;
    irc.send("JOIN #main").await;
    irc.until(" 366 ").await;
    irc.line().await;
    irc.line().await; // the board's last 2
    irc.send("CHATHISTORY BEFORE #main msgid=main-4 2").await;
    let opened = irc.line().await;
    let batch =
        opened.strip_prefix(":confab BATCH +").unwrap().split(' ').next().unwrap().to_owned();
    assert!(opened.ends_with(" chathistory #main"), "{opened}");
    let first = irc.line().await;
    assert!(
        first.starts_with(&format!("@batch={batch};time=")) && first.contains("msgid=main-2"),
        "{first}"
    );
    assert!(first.ends_with(" PRIVMSG #main :m2"));
    assert!(irc.line().await.ends_with(" PRIVMSG #main :m3"));
    assert_eq!(irc.line().await, format!(":confab BATCH -{batch}"));
    irc.send("CHATHISTORY LATEST #main * 1").await;
    irc.line().await;
    assert!(irc.line().await.ends_with(" PRIVMSG #main :m5"));
    irc.line().await;
    irc.send("CAP REQ :labeled-response").await;
    irc.line().await;
    irc.send("@label=h CHATHISTORY LATEST #main * 1").await;
    let lines = irc.until(":confab BATCH -l").await;
    let inner = lines.iter().find(|l| l.contains(" PRIVMSG ")).unwrap();
    assert_eq!(inner.matches("batch=").count(), 1, "one batch tag: {inner}");
    // The other subcommands, by message id.
    let expect = [
        ("AFTER #main msgid=main-2 2", vec!["m3", "m4"]),
        ("AROUND #main msgid=main-3 3", vec!["m2", "m3", "m4"]),
        ("BETWEEN #main msgid=main-1 msgid=main-5 10", vec!["m2", "m3", "m4"]),
        ("BETWEEN #main msgid=main-5 msgid=main-1 2", vec!["m3", "m4"]),
        ("LATEST #main msgid=main-3 10", vec!["m4", "m5"]),
        ("BEFORE #main msgid=main-1 10", vec![]),
    ];
    for (command, bodies) in expect {
        irc.send(&format!("CHATHISTORY {command}")).await;
        assert_eq!(history_bodies(&mut irc).await, bodies, "{command}");
    }
    // By time: every message's time from the batch, then what lies
    // before, after and between times, against those.
    irc.send("CHATHISTORY LATEST #main * 10").await;
    let all = history_lines(&mut irc).await;
    let timed: Vec<(String, String)> = all
        .iter()
        .map(|l| {
            let time = l.split("time=").nth(1).unwrap().split([';', ' ']).next().unwrap();
            (time.to_owned(), l.rsplit(" :").next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(timed.len(), 5, "{all:?}");
    let t3 = timed[2].0.clone();
    let bodies_where = |keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        timed.iter().filter(|(t, _)| keep(t)).map(|(_, b)| b.clone()).collect()
    };
    irc.send(&format!("CHATHISTORY BEFORE #main timestamp={t3} 10")).await;
    assert_eq!(history_bodies(&mut irc).await, bodies_where(&|t| t < t3.as_str()));
    irc.send(&format!("CHATHISTORY AFTER #main timestamp={t3} 10")).await;
    assert_eq!(history_bodies(&mut irc).await, bodies_where(&|t| t > t3.as_str()));
    irc.send(&format!("CHATHISTORY LATEST #main timestamp={t3} 10")).await;
    assert_eq!(history_bodies(&mut irc).await, bodies_where(&|t| t > t3.as_str()));
    let (t1, t5) = (timed[0].0.clone(), timed[4].0.clone());
    irc.send(&format!("CHATHISTORY BETWEEN #main timestamp={t5} timestamp={t1} 10")).await;
    let inside = bodies_where(&|t| t > t1.as_str() && t < t5.as_str());
    assert_eq!(history_bodies(&mut irc).await, inside);
    irc.send("CHATHISTORY BEFORE #main timestamp=2000-01-01T00:00:00Z 10").await;
    assert_eq!(history_bodies(&mut irc).await, Vec::<String>::new());
    irc.send("CHATHISTORY AFTER #main timestamp=2000-01-01T00:00:00.000Z 2").await;
    assert_eq!(history_bodies(&mut irc).await, ["m1", "m2"]);
    // A search's answer carries its command's label.
    irc.send(&format!("@label=t CHATHISTORY BEFORE #main timestamp={t5} 1")).await;
    let lines = irc.until(":confab BATCH -l").await;
    assert!(lines[0].starts_with("@label=t "), "{lines:?}");
    let newest_before = bodies_where(&|t| t < t5.as_str()).pop().unwrap();
    assert!(lines.iter().any(|l| l.ends_with(&format!(" PRIVMSG #main :{newest_before}"))));
    for bad in
        ["BEFORE #main timestamp=yesterday 5", "BEFORE #main msgid=other-2 5", "SIDEWAYS #main * 5"]
    {
        irc.send(&format!("CHATHISTORY {bad}")).await;
        assert!(irc.line().await.starts_with(":confab FAIL CHATHISTORY INVALID_PARAMS"), "{bad}");
    }
    irc.send("CHATHISTORY LATEST #nope * 5").await;
    assert!(irc.line().await.starts_with(":confab FAIL CHATHISTORY INVALID_TARGET #nope"));
}

#[tokio::test]
async fn chathistory_passes_over_what_the_user_may_not_see() {
    let server = start_with(|c| c.irc = Some("127.0.0.1:0".into())).await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"public": true})).await;
    join(&mut ann, &code).await;
    let mut bob = server.client("Bob").await;
    join(&mut bob, &code).await;
    let a1 = post(&mut ann, &code, "a1").await;
    // Bob's posts from now on are his alone.
    ann.ok(json!({"op": "mute", "room": code, "name": "Bob", "shadow": true})).await.unwrap();
    for body in ["b1", "b2", "b3"] {
        post(&mut bob, &code, body).await;
    }
    let a2 = post(&mut ann, &code, "a2").await;
    post(&mut ann, &code, "a3").await;
    let addr = server.server.irc_addr().unwrap();
    let (mut irc, _) =
        Client::register(addr, "batch draft/chathistory message-tags server-time", "eve").await;
    irc.send(&format!("JOIN #{code}")).await;
    irc.send("PING :joined").await;
    irc.until("PONG").await;
    // After a1, two: the next two Eve may see, past Bob's three.
    let seq = a1["seq"].as_u64().unwrap();
    irc.send(&format!("CHATHISTORY AFTER #{code} msgid={code}-{seq} 2")).await;
    assert_eq!(history_bodies(&mut irc).await, ["a2", "a3"]);
    // Before a2's time: a1 only; the search's probes land on Bob's too.
    let ts = a2["ts"].as_str().unwrap();
    irc.send(&format!("CHATHISTORY BEFORE #{code} timestamp={ts} 10")).await;
    let earlier: Vec<&str> = if a1["ts"].as_str().unwrap() < ts { vec!["a1"] } else { vec![] };
    assert_eq!(history_bodies(&mut irc).await, earlier);
    irc.send(&format!("CHATHISTORY LATEST #{code} * 10")).await;
    assert_eq!(history_bodies(&mut irc).await, ["a1", "a2", "a3"]);
    // Bob sees his own.
    let mine = bob.ok(json!({"op": "history", "room": code})).await.unwrap();
    assert_eq!(mine["messages"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn reads_over_the_budget_are_answered_try_again_and_end_their_lists() {
    let server = start_with(|c| {
        c.irc = Some("127.0.0.1:0".into());
        let slow = std::time::Duration::from_secs(60);
        c.hub.rates.read = Some(confab_core::Rate::new(1, slow, 3));
    })
    .await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    let mut times = Vec::new();
    for n in 1..=5 {
        times.push(
            post(&mut ann, "main", &format!("m{n}")).await["ts"].as_str().unwrap().to_owned(),
        );
    }
    let addr = server.server.irc_addr().unwrap();
    let (mut irc, _) =
        Client::register(addr, "batch draft/chathistory message-tags server-time", "eve").await;
    // A join reads nothing (its answer has the names).
    irc.send("JOIN #main").await;
    irc.until(" 366 ").await;
    irc.send("PING :joined").await;
    irc.until("PONG").await;
    // A command is one read, however many its search and pages take: a
    // search by time reads the newest message, then probes, then the
    // answer; a forward read, the newest, then a page.
    irc.send(&format!("CHATHISTORY BEFORE #main timestamp={} 5", times[2])).await;
    let earlier: Vec<String> =
        (0..5).filter(|&i| times[i] < times[2]).map(|i| format!("m{}", i + 1)).collect();
    assert_eq!(history_bodies(&mut irc).await, earlier);
    irc.send("CHATHISTORY AFTER #main msgid=main-1 2").await;
    assert_eq!(history_bodies(&mut irc).await, ["m2", "m3"]);
    irc.send("CHATHISTORY LATEST #main * 2").await;
    assert_eq!(history_bodies(&mut irc).await, ["m4", "m5"]);
    // The fourth is over the budget.
    irc.send("CHATHISTORY BEFORE #main timestamp=2100-01-01T00:00:00.000Z 5").await;
    let refused = irc.line().await;
    assert!(
        refused.starts_with(":confab FAIL CHATHISTORY MESSAGE_ERROR #main :too many read ops"),
        "{refused}"
    );
    // Lists are answered "try again", then ended.
    for (command, end) in [("NAMES #main", " 366 eve #main "), ("WHO #main", " 315 eve #main ")] {
        irc.send(command).await;
        let verb = command.split(' ').next().unwrap();
        let line = irc.line().await;
        assert!(line.starts_with(&format!(":confab 263 eve {verb} :too many read ops")), "{line}");
        assert!(irc.line().await.contains(end), "{command}");
    }
    irc.send("LIST").await;
    assert!(irc.line().await.starts_with(":confab 263 eve LIST :"));
    assert!(irc.line().await.starts_with(":confab 323 eve :End of /LIST"));
    // Talking is not reading.
    irc.send("PRIVMSG #main :still here").await;
    assert_eq!(ann.event("message").await.unwrap()["message"]["body"], "still here");
}

/// The lines of a `chathistory` batch, its messages'.
async fn history_lines(irc: &mut Client) -> Vec<String> {
    let lines = irc.until(":confab BATCH -h").await;
    assert!(lines[0].contains(" chathistory #"), "{lines:?}");
    lines.into_iter().filter(|l| l.contains(" PRIVMSG ")).collect()
}

/// The messages of a `chathistory` batch, their text.
async fn history_bodies(irc: &mut Client) -> Vec<String> {
    let lines = history_lines(irc).await;
    lines.iter().map(|l| l.rsplit(" :").next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn labelled_commands_get_labelled_answers() {
    let server = start_with(|c| c.irc = Some("127.0.0.1:0".into())).await;
    let addr = server.server.irc_addr().unwrap();
    let (mut irc, _) =
        Client::register(addr, "labeled-response batch message-tags echo-message", "fay").await;
    irc.line().await;
    // One line: the label on it; none: an ACK; several: a batch.
    irc.send("@label=a1 PING :x").await;
    assert_eq!(irc.line().await, "@label=a1 :confab PONG confab :x");
    irc.send("@label=a2 PONG :x").await;
    assert_eq!(irc.line().await, "@label=a2 :confab ACK");
    irc.send("@label=a3 JOIN #main").await;
    let opened = irc.line().await;
    assert!(
        opened.starts_with("@label=a3 :confab BATCH +") && opened.ends_with(" labeled-response"),
        "{opened}"
    );
    let lines = irc.until(":confab BATCH -").await;
    assert!(lines.iter().any(|l| l.contains(" JOIN #main")), "{lines:?}");
    // A message echoed back carries its command's label.
    irc.send("@label=a4 PRIVMSG #main :labelled").await;
    let echoed = irc.line().await;
    assert!(
        echoed.starts_with("@label=a4;msgid=main-") && echoed.ends_with(" PRIVMSG #main :labelled"),
        "{echoed}"
    );
}

#[tokio::test]
async fn names_irc_cannot_carry_are_mapped_both_ways() {
    let server = start_with(|c| c.irc = Some("127.0.0.1:0".into())).await;
    let mut web = server.client("Zoë Ray").await;
    join(&mut web, "main").await;
    let mut irc = Client::connect(server.server.irc_addr().unwrap()).await;
    irc.send("NICK Bo\\_Ek").await;
    irc.send("USER bo 0 * :Bo").await;
    irc.until(" 422 ").await;
    irc.line().await;
    irc.send("JOIN #main").await;
    let joined = irc.until(" 366 ").await;
    let names = joined.iter().find(|l| l.contains(" 353 ")).unwrap();
    assert!(names.contains("Zo\\{eb}\\_Ray"), "{names}");
    assert_eq!(
        web.event("join").await.unwrap()["user"]["name"],
        "Bo Ek",
        "the nick read back as the name"
    );
}

#[tokio::test]
async fn a_multi_line_batch_is_one_message() {
    let server = start_with(|c| c.irc = Some("127.0.0.1:0".into())).await;
    let mut web = server.client("Web").await;
    join(&mut web, "main").await;
    let addr = server.server.irc_addr().unwrap();
    let (mut irc, _) = Client::register(addr, "batch draft/multiline", "gus").await;
    irc.line().await;
    irc.send("JOIN #main").await;
    irc.until(" 366 ").await;
    web.event("join").await.unwrap();
    irc.send("BATCH +m1 draft/multiline #main").await;
    irc.send("@batch=m1 PRIVMSG #main :line one").await;
    irc.send("@batch=m1 PRIVMSG #main :line two").await;
    irc.send("@batch=m1;draft/multiline-concat PRIVMSG #main : continued").await;
    irc.send("BATCH -m1").await;
    let heard = web.event("message").await.unwrap();
    assert_eq!(heard["message"]["body"], "line one\nline two continued");
    irc.send("BATCH -nope").await;
    assert!(irc.line().await.starts_with(":confab FAIL BATCH INVALID_REFTAG nope"));
    // Over the bounds: refused, and none of its lines posted.
    irc.send("BATCH +m2 draft/multiline #main").await;
    for n in 0..70 {
        irc.send(&format!("@batch=m2 PRIVMSG #main :line {n}")).await;
    }
    irc.send("BATCH -m2").await;
    assert!(irc.line().await.starts_with(":confab FAIL BATCH MULTILINE_MAX_BYTES"));
    irc.send("PRIVMSG #main :after").await;
    assert_eq!(web.event("message").await.unwrap()["message"]["body"], "after");
}
