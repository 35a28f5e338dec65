//! `confab connect`: scripted through a pipe, and typed at through a
//! pseudo-terminal while pushes arrive.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use confab_client::WsClient;
use confab_server::{Config, Server};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// A real server on free loopback ports, with its own runtime so that the
/// test itself can block on the client.
struct Running {
    runtime: Runtime,
    server: Server,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start() -> Running {
        let runtime = Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let server =
            runtime.block_on(Server::start(Config::ephemeral(dir.path()))).expect("server starts");
        Running { runtime, server, _dir: dir }
    }

    fn tcp(&self) -> SocketAddr {
        self.server.tcp_addr()
    }

    /// A WebSocket user, logged in as `name`.
    fn web(&self, name: &str) -> WsClient {
        let url = format!("ws://{}/ws", self.server.http_addr());
        self.runtime.block_on(WsClient::hello(&url, name)).expect("hello").0
    }

    fn ok(&self, client: &mut WsClient, op: Value) -> Value {
        self.runtime.block_on(client.ok(op)).expect("op succeeds")
    }

    fn event(&self, client: &mut WsClient, ev: &str) -> Value {
        self.runtime.block_on(client.event(ev)).expect("event")
    }
}

fn confab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_confab"))
}

#[test]
fn without_a_terminal_it_relays_stdin_and_prints_server_lines_on_stdout() {
    let running = Running::start();
    let mut child = confab()
        .args(["connect", "127.0.0.1", &running.tcp().port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("confab connect starts");
    // The end of stdin is an `%exit`.
    child.stdin.take().unwrap().write_all(b"Ann\n%join\n%post hello Hi all\n%message 1\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("welcome to confab "), "{stdout}");
    assert_eq!(
        lines[1..3],
        ["username:", "hello, Ann; %join joins the board main, %help lists the commands"]
    );
    assert!(lines[3].starts_with("session "), "{stdout}");
    assert_eq!(
        lines[4..6],
        ["[main] you joined \"Main board\"; members (1): Ann", "[main] you posted 1"]
    );
    assert!(
        lines[6].starts_with("[main] 1 | Ann | ") && lines[6].ends_with(" | hello | Hi all"),
        "{stdout}"
    );
    assert_eq!(lines[7..], ["  Hi all", "[main] you left", "bye: goodbye"]);
    // Notes from the client itself stay off stdout.
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("connected to 127.0.0.1:{}", running.tcp().port())),
        "{stderr}"
    );
}

#[test]
fn a_hidden_persons_messages_are_not_shown_and_the_choice_is_kept() {
    let running = Running::start();
    let config = tempfile::tempdir().unwrap();
    let mut bob = running.web("Bob");
    let mut cleo = running.web("Cleo");
    running.ok(&mut bob, json!({"op": "join", "room": "main"}));
    running.ok(&mut cleo, json!({"op": "join", "room": "main"}));
    running.ok(
        &mut bob,
        json!({"op": "post", "room": "main", "subject": "deal", "body": "cheap watches"}),
    );
    running.ok(
        &mut cleo,
        json!({"op": "post", "room": "main", "subject": "park", "body": "it opened"}),
    );
    let connect = |script: &[u8]| {
        let mut child = confab()
            .args(["connect", "127.0.0.1", &running.tcp().port().to_string()])
            .env("XDG_CONFIG_HOME", config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("confab connect starts");
        child.stdin.take().unwrap().write_all(script).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
        (String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
    };
    let (stdout, stderr) =
        connect(b"%hide bob\nAnn\n%join\n%list\n%message 1\n%message 2\n%hidden\n");
    // The backlog, the list and %message: Cleo's message, never Bob's.
    assert!(!stdout.contains("| Bob |") && !stdout.contains("cheap watches"), "{stdout}");
    assert_eq!(stdout.matches("| Cleo |").count(), 3, "{stdout}");
    assert!(stdout.contains("  it opened"), "{stdout}");
    assert!(stdout.contains("[main] you joined \"Main board\"; members (3):"), "{stdout}");
    assert!(stderr.contains("bob's messages are hidden on this terminal"), "{stderr}");
    assert!(stderr.contains("hidden on this terminal (1): bob"), "{stderr}");
    let kept = std::fs::read_to_string(config.path().join("confab").join("hidden")).unwrap();
    assert_eq!(kept, "bob\n");

    // The next session still hides Bob, until he is shown again.
    let (stdout, stderr) = connect(b"%hidden\nAnn2\n%join\n%unhide Bob\n%list\n");
    assert!(stderr.contains("hidden on this terminal (1): bob"), "{stderr}");
    assert!(stderr.contains("Bob's messages are shown again"), "{stderr}");
    assert!(stdout.contains("| Bob |"), "shown again: {stdout}");
}

#[test]
fn over_tls_with_the_servers_certificate_and_not_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let files = confab_server::tls::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, made.cert.pem()).unwrap();
    std::fs::write(&files.key, made.signing_key.serialize_pem()).unwrap();
    let runtime = Runtime::new().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.tls = Some(files.clone());
    let server = runtime.block_on(Server::start(config)).unwrap();
    let port = server.tcp_addr().port().to_string();
    let run = |args: &[&str]| {
        let mut child = confab()
            .arg("connect")
            .args(args)
            .args(["localhost", &port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("confab connect starts");
        child.stdin.take().unwrap().write_all(b"Ann\n%join\n%post hi over tls\n").unwrap();
        child.wait_with_output().unwrap()
    };
    let ca = files.cert.to_str().unwrap();
    for args in [&["--ca", ca][..], &["--insecure"][..]] {
        let output = run(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(stdout.starts_with("welcome to confab "), "{stdout}");
        assert!(
            stdout.contains("[main] you posted 1") || stdout.contains("[main] you posted 2"),
            "{stdout}"
        );
    }
    // Not trusted by the system's bundle: refused, saying why.
    let output = run(&["--tls"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect") && stderr.contains("certificate"), "{stderr}");
    // Plain text to a TLS port gets nothing.
    let output = run(&[]);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("welcome"), "{output:?}");
    // A CA file that does not exist is a usage error.
    let output = run(&["--ca", "/no/such/file.pem"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    runtime.block_on(server.stop());
}

#[test]
fn without_a_terminal_an_unreachable_server_fails() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let output = confab()
        .args(["connect", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("error: cannot connect to 127.0.0.1:{port}")), "{stderr}");
}

#[cfg(unix)]
mod terminal {
    use rexpect::process::WaitStatus;
    use rexpect::session::{PtySession, spawn_command};

    use super::*;

    const TIMEOUT_MS: u64 = 10_000;

    fn spawn(args: &[&str]) -> PtySession {
        let mut command = confab();
        command.arg("connect").args(args).env("TERM", "xterm");
        spawn_command(command, Some(TIMEOUT_MS)).expect("confab connect starts on a terminal")
    }

    fn exits_cleanly(session: &mut PtySession) {
        session.exp_eof().expect("confab closes the terminal");
        match session.process().wait() {
            Ok(WaitStatus::Exited(_, code)) => assert_eq!(code, 0),
            status => panic!("confab did not exit cleanly: {status:?}"),
        }
    }

    #[test]
    fn a_push_is_printed_above_the_line_being_typed_and_leaves_it_intact() {
        let running = Running::start();
        let mut ann = running.web("Ann");
        let mut term = spawn(&["127.0.0.1", &running.tcp().port().to_string()]);
        term.exp_string("username:").unwrap();
        term.send_line("Bob").unwrap();
        term.exp_string("hello, Bob;").unwrap();
        term.send_line("%join").unwrap();
        term.exp_string("[main] you joined \"Main board\"; members (1): Bob").unwrap();

        // Half a line typed, not sent: the editor shows it.
        term.send("%post half").unwrap();
        term.flush().unwrap();
        term.exp_string("%post half").unwrap();
        // Meanwhile Ann joins and posts from the web.
        running.ok(&mut ann, json!({"op": "join", "room": "main"}));
        running
            .ok(&mut ann, json!({"op": "post", "room": "main", "subject": "news", "body": "hi"}));
        term.exp_string("[main] Ann joined").unwrap();
        term.exp_regex(r"\[main\] 1 \| Ann \| [0-9-]+ [0-9:]+ UTC \| news").unwrap();
        // The prompt comes back with the half line as it was.
        term.exp_string("> %post half").unwrap();

        // Finishing the line sends all of it.
        term.send("way there\r").unwrap();
        term.flush().unwrap();
        term.exp_string("[main] you posted 2").unwrap();
        let posted = running.event(&mut ann, "message");
        assert_eq!(posted["message"]["subject"], "halfway");
        assert_eq!(posted["message"]["body"], "there");

        // Line editing: history brings the last line back, and it is sent
        // again as edited.
        term.send("\x1b[A").unwrap();
        term.flush().unwrap();
        term.exp_string("%post halfway there").unwrap();
        term.send("!\r").unwrap();
        term.flush().unwrap();
        term.exp_string("[main] you posted 3").unwrap();
        assert_eq!(running.event(&mut ann, "message")["message"]["body"], "there!");

        // Ctrl-D leaves every room and quits.
        term.send_control('d').unwrap();
        term.exp_string("bye: goodbye").unwrap();
        exits_cleanly(&mut term);
        let left = running.event(&mut ann, "leave");
        assert_eq!(
            (left["user"]["name"].as_str(), left["reason"].as_str()),
            (Some("Bob"), Some("left"))
        );
    }

    #[test]
    fn connecting_again_is_the_same_user_and_ctrl_c_quits() {
        let running = Running::start();
        let port = running.tcp().port().to_string();
        let mut ann = running.web("Ann");
        running.ok(&mut ann, json!({"op": "join", "room": "main"}));
        let mut term = spawn(&["127.0.0.1", &port]);
        term.exp_string("username:").unwrap();
        term.send_line("Dee").unwrap();
        term.exp_string("hello, Dee;").unwrap();
        term.exp_string("session ").unwrap();
        term.send_line("%join").unwrap();
        term.exp_string("[main] you joined").unwrap();
        assert_eq!(running.event(&mut ann, "join")["user"]["name"], "Dee");

        // Back to the same server: the client presents the session by
        // itself, and rejoining within the grace is silent for Ann.
        term.send_line(&format!("%connect 127.0.0.1 {port}")).unwrap();
        term.exp_string("(as the same user as before: your session was sent)").unwrap();
        term.exp_string("session noted; username:").unwrap();
        term.send_line("Dee").unwrap();
        term.exp_string("hello, Dee;").unwrap();
        term.send_line("%join").unwrap();
        term.exp_string("[main] you joined").unwrap();
        term.send_line("%post back here again").unwrap();
        term.exp_string("[main] you posted 1").unwrap();
        let next = running.runtime.block_on(ann.next()).unwrap();
        assert_eq!(next["ev"], "message", "Ann saw {next} before Dee's post");

        // Ctrl-C leaves every room and quits, like %exit.
        term.send_control('c').unwrap();
        term.exp_string("bye: goodbye").unwrap();
        exits_cleanly(&mut term);
        let left = running.event(&mut ann, "leave");
        assert_eq!(
            (left["user"]["name"].as_str(), left["reason"].as_str()),
            (Some("Dee"), Some("left"))
        );
    }

    #[test]
    fn connect_help_and_exit_at_the_prompt() {
        let running = Running::start();
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        // Nothing listens there: the client says so and keeps its prompt.
        let mut term = spawn(&["127.0.0.1", &closed.to_string()]);
        term.exp_string(&format!("error: cannot connect to 127.0.0.1:{closed}")).unwrap();
        term.send_line("%join").unwrap();
        term.exp_string("error: not connected; %connect <host> <port> first").unwrap();
        term.send_line("%connect 127.0.0.1").unwrap();
        term.exp_string("usage: %connect <host> <port>").unwrap();

        term.send_line(&format!("%connect 127.0.0.1 {}", running.tcp().port())).unwrap();
        term.exp_string(&format!("connected to 127.0.0.1:{}", running.tcp().port())).unwrap();
        term.exp_string("username:").unwrap();
        term.send_line("Cy").unwrap();
        term.exp_string("hello, Cy;").unwrap();

        // %help: the client's commands, then the server's.
        term.send_line("%help").unwrap();
        term.exp_string("%connect <host> <port>").unwrap();
        term.exp_string("commands:").unwrap();
        term.exp_string("%groupmessage <room> <id>").unwrap();

        term.send_line("%exit").unwrap();
        term.exp_string("bye: goodbye").unwrap();
        exits_cleanly(&mut term);
    }

    #[test]
    fn messages_fit_the_terminal_and_replies_edits_and_reactions_are_typed() {
        let running = Running::start();
        let mut ann = running.web("Ann");
        let mut command = confab();
        command.arg("connect").arg("127.0.0.1").arg(running.tcp().port().to_string());
        command.env("TERM", "xterm").env("COLUMNS", "72");
        let mut term = spawn_command(command, Some(TIMEOUT_MS)).expect("confab connect starts");
        term.exp_string("username:").unwrap();
        term.send_line("Bob").unwrap();
        term.exp_string("hello, Bob;").unwrap();
        term.send_line("%join").unwrap();
        term.exp_string("[main] you joined").unwrap();
        running.ok(&mut ann, json!({"op": "join", "room": "main"}));
        let body = "a long first line that would never fit sixty columns, and more\nline two";
        running.ok(&mut ann, json!({"op": "post", "room": "main", "body": body}));
        // One row: cut at 71 columns, an ellipsis at its end. (The
        // session reads the terminal's bytes one character each.)
        let (_, shown) = term.exp_regex(r"\[main\] 1 \| Ann \| [^\r\n]*").unwrap();
        let shown = String::from_utf8(shown.chars().map(|c| c as u8).collect()).unwrap();
        assert_eq!(shown.chars().count(), 71, "{shown:?}");
        assert!(shown.ends_with('…') && shown.contains("(no subject) | a long"), "{shown:?}");

        term.send_line("%reply 1 count me in").unwrap();
        term.exp_string("[main] you posted 2").unwrap();
        let reply = running.event(&mut ann, "message");
        assert_eq!(reply["message"]["reply"]["seq"], 1);
        term.send_line("%edit 2 count me out").unwrap();
        term.exp_string("[main] Bob edited message 2:").unwrap();
        assert_eq!(running.event(&mut ann, "edited")["message"]["body"], "count me out");
        term.send_line("%react 1 👍").unwrap();
        term.exp_string("[main] Bob reacted ").unwrap();
        term.exp_string(" to message 1").unwrap();
        assert_eq!(running.event(&mut ann, "reacted")["emoji"], "👍");
        // `%message` shows the whole message, its quote and reactions.
        term.send_line("%message 1").unwrap();
        term.exp_string("line two").unwrap();
        term.exp_string(" 1: Bob").unwrap();

        term.send_line("%exit").unwrap();
        term.exp_string("bye: goodbye").unwrap();
        exits_cleanly(&mut term);
    }
}
