//! The `confab` binary itself: flags, environment, the logged address,
//! and a clean exit on SIGTERM and SIGINT.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Running {
    child: Child,
    addr: String,
    log: mpsc::Receiver<String>,
    /// The lines logged up to the HTTP address.
    early: Vec<String>,
}

/// A test that fails (panics) does not leave its server running.
impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

static NEXT_DIR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A data directory of its own for each server a test starts.
fn data_dir() -> std::path::PathBuf {
    let n = NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("confab-cli-{}-{n}", std::process::id()))
}

/// Starts `confab serve` and reads the bound address from its log.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Running {
    serve_in(&data_dir(), args, env)
}

fn serve_in(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    launch(Command::new(env!("CARGO_BIN_EXE_confab")), data, args, env)
}

/// Runs `command serve …` (the binary itself, or a wrapper that execs it).
fn launch(
    mut command: Command,
    data: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Running {
    command
        .arg("serve")
        .args(["--tcp", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .env_remove("CONFAB_HTTP")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("confab starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut early = Vec::new();
    let addr = loop {
        let line = log.recv_timeout(Duration::from_secs(20)).expect("the server logs its address");
        if let Some((_, rest)) = line.split_once("http listening on ") {
            break rest.trim().to_owned();
        }
        early.push(line);
    };
    Running { child, addr, log, early }
}

/// The environment variable naming a service a test needs. Such tests
/// are `#[ignore]`d; run with `--include-ignored`, a missing service fails
/// them rather than letting them pass unrun.
fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: this test needs the service it names (see README.md)")
    })
}

fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([name, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn wait_exit(mut running: Running) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "confab did not exit");
        // Drain the log so the child never blocks on a full pipe.
        while running.log.try_recv().is_ok() {}
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn port_zero_binds_a_free_port_and_sigterm_exits_cleanly() {
    let running = serve(&["--http", "127.0.0.1:0"], &[]);
    assert!(!running.addr.ends_with(":0"), "{}", running.addr);
    let health = get(&running.addr, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#""status":"ok""#), "{health}");
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
}

#[test]
fn the_environment_configures_and_sigint_exits_cleanly() {
    let running = serve(&[], &[("CONFAB_HTTP", "127.0.0.1:0"), ("CONFAB_NODE", "node-from-env")]);
    let health = get(&running.addr, "/health");
    assert!(health.contains("node-from-env"), "{health}");
    signal(&running.child, "-INT");
    assert!(wait_exit(running).success());
}

#[test]
fn a_flag_beats_the_environment() {
    let running =
        serve(&["--http", "127.0.0.1:0", "--node", "from-flag"], &[("CONFAB_NODE", "from-env")]);
    assert!(get(&running.addr, "/health").contains("from-flag"));
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
}

#[test]
fn bad_configuration_exits_with_code_2_and_says_why() {
    let output = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["serve", "--http", "127.0.0.1:0", "--grace", "soon"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("grace"));
}

#[test]
fn a_corrupt_database_stops_the_server_naming_the_file_which_is_left_alone() {
    let data = data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("confab.db");
    let garbage = b"not a database; keep me".repeat(100);
    std::fs::write(&file, &garbage).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("not a database"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), garbage, "the file is untouched");
    let _ = std::fs::remove_dir_all(data);
}

/// On one core the server runs on tokio's single-threaded scheduler; it
/// must serve all the same.
#[test]
fn pinned_to_one_core_it_serves_and_exits_cleanly() {
    Command::new("taskset").arg("--version").output().expect("taskset (util-linux) runs");
    let mut command = Command::new("taskset");
    command.args(["-c", "0", env!("CARGO_BIN_EXE_confab")]);
    let data = data_dir();
    let running = launch(command, &data, &["--http", "127.0.0.1:0"], &[]);
    let url = format!("ws://{}/ws", running.addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut ann, _) = confab_client::WsClient::hello(&url, "Ann").await.unwrap();
        let (mut bob, _) = confab_client::WsClient::hello(&url, "Bob").await.unwrap();
        for client in [&mut ann, &mut bob] {
            client.ok(serde_json::json!({"op": "join", "room": "main"})).await.unwrap();
        }
        ann.ok(serde_json::json!({"op": "post", "room": "main", "body": "one core"}))
            .await
            .unwrap();
        let message = bob.event("message").await.unwrap();
        assert_eq!(message["message"]["body"], "one core");
    });
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
    let _ = std::fs::remove_dir_all(data);
}

#[test]
fn serve_help_lists_the_flags() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_confab")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--http",
        "--tcp",
        "--data",
        "--database",
        "--cluster",
        "--node",
        "--config",
        "CONFAB_HTTP",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn kill_9_right_after_an_ok_loses_no_acknowledged_post() {
    let data = data_dir();
    let mut running = serve_in(&data, &["--http", "127.0.0.1:0", "--post-rate", "off"], &[]);
    let url = format!("ws://{}/ws", running.addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (session, acked) = runtime.block_on(async {
        let (mut ann, hello) = confab_client::WsClient::hello(&url, "Ann").await.unwrap();
        ann.ok(serde_json::json!({"op": "join", "room": "main"})).await.unwrap();
        // Many posts in flight at once, so they share transactions; the
        // server is killed while most of them still are.
        for i in 0..900 {
            let op = serde_json::json!({"op": "post", "id": 1000 + i, "room": "main", "body": format!("p{i}")});
            ann.send_text(op.to_string()).await.unwrap();
        }
        let mut acked = Vec::new();
        while acked.len() < 300 {
            let reply = ann.next().await.unwrap();
            assert_eq!(reply["ok"], true, "{reply}");
            acked.push(reply["message"]["seq"].as_u64().unwrap());
        }
        running.child.kill().unwrap(); // SIGKILL
        // Acknowledgements already on their way count as well.
        while let Ok(reply) = ann.next().await {
            if reply["ok"] == true {
                acked.push(reply["message"]["seq"].as_u64().unwrap());
            }
        }
        (hello["session"].as_str().unwrap().to_owned(), acked)
    });
    running.child.wait().unwrap();
    let restarted = serve_in(&data, &["--http", "127.0.0.1:0"], &[]);
    let url = format!("ws://{}/ws", restarted.addr);
    let stored: Vec<u64> = runtime.block_on(async {
        let mut ann = confab_client::WsClient::connect(&url).await.unwrap();
        ann.ok(serde_json::json!({"op": "hello", "name": "Ann", "session": session}))
            .await
            .unwrap();
        let joined =
            ann.ok(serde_json::json!({"op": "join", "room": "main", "since": 0})).await.unwrap();
        joined["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
    });
    let mut acked = acked;
    acked.sort_unstable();
    assert!(acked.len() >= 300, "{} acknowledged", acked.len());
    // Nothing acknowledged is missing, and what is stored has no gap.
    assert!(acked.iter().all(|seq| stored.contains(seq)), "an acknowledged post was lost");
    assert_eq!(stored, (1..=stored.len() as u64).collect::<Vec<u64>>());
    eprintln!("kill -9: {} acknowledged, {} stored of 900 sent", acked.len(), stored.len());
    signal(&restarted.child, "-TERM");
    assert!(wait_exit(restarted).success());
    let _ = std::fs::remove_dir_all(data);
}

#[test]
#[ignore = "needs Redis and PostgreSQL: CONFAB_TEST_REDIS, CONFAB_TEST_POSTGRES"]
fn a_cluster_node_that_stops_frees_its_seats_at_once_and_one_killed_within_the_lease() {
    let namespace = format!("crash{}", std::process::id());
    // A drain of 1 s: a stopping node's connections close within 0.8 s.
    let node =
        |name: &str| cluster_node(&namespace, name, &["--node-lease", "4s", "--drain", "1s"]);
    let (n1, mut n2, mut n3) = (node("n1"), node("n2"), node("n3"));
    let url = |running: &Running| format!("ws://{}/ws", running.addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use serde_json::json;
        let (mut ann, _) = confab_client::WsClient::hello(&url(&n1), "Ann").await.unwrap();
        let created = ann.ok(json!({"op": "create", "capacity": 3})).await.unwrap();
        let code = created["room"]["code"].as_str().unwrap().to_owned();
        ann.ok(json!({"op": "join", "room": code})).await.unwrap();
        let (mut dan, _) = confab_client::WsClient::hello(&url(&n2), "Dan").await.unwrap();
        dan.ok(json!({"op": "join", "room": code})).await.unwrap();
        let (mut bob, _) = confab_client::WsClient::hello(&url(&n3), "Bob").await.unwrap();
        bob.ok(json!({"op": "join", "room": code})).await.unwrap();
        ann.event("join").await.unwrap();
        ann.event("join").await.unwrap();
        let (mut cat, _) = confab_client::WsClient::hello(&url(&n1), "Cat").await.unwrap();
        assert_eq!(cat.error_code(json!({"op": "join", "room": code})).await.unwrap(), "room_full");

        // A node that stops tells the cluster its members left, once its
        // drain has closed their connections: no wait for its lease or
        // their grace.
        let stopped = std::time::Instant::now();
        signal(&n2.child, "-TERM");
        let leave = ann.event("leave").await.unwrap();
        let took = stopped.elapsed();
        assert_eq!(
            (leave["user"]["name"].as_str(), leave["reason"].as_str()),
            (Some("Dan"), Some("disconnected"))
        );
        assert!(took < Duration::from_secs(3), "Dan left {took:?} after SIGTERM (lease 4 s)");
        assert!(n2.child.wait().unwrap().success());
        drop(dan);

        // One killed outright holds its seats until its lease lapses and a
        // survivor's next renewal sweeps it.
        n3.child.kill().unwrap();
        n3.child.wait().unwrap();
        let killed = std::time::Instant::now();
        let leave = ann.event("leave").await.unwrap();
        let crashed = killed.elapsed();
        assert_eq!(
            (leave["user"]["name"].as_str(), leave["reason"].as_str()),
            (Some("Bob"), Some("disconnected"))
        );
        assert!(crashed < Duration::from_secs(8), "Bob left {crashed:?} after kill -9 (lease 4 s)");
        cat.ok(json!({"op": "join", "room": code})).await.unwrap();
        eprintln!("left {took:?} after SIGTERM, {crashed:?} after kill -9 (lease 4 s)");
    });
    let mut n1 = n1;
    let _ = n1.child.kill();
    let _ = n1.child.wait();
}

/// Starts `confab serve` with an open-file limit of 1,024, soft and hard
/// (the common default, which the server cannot raise).
fn serve_with_1024_files(args: &[&str]) -> Running {
    let mut command = Command::new("sh");
    command.args(["-c", "ulimit -n 1024 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_confab")]);
    let mut all = vec!["--http", "127.0.0.1:0", "--limit-loopback"];
    all.extend_from_slice(args);
    launch(command, &data_dir(), &all, &[])
}

/// Opens `n` sockets from 127.0.0.2 that never send a byte; returns them.
async fn silent_sockets(addr: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut sockets = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        sockets.push(socket.connect(addr).await.expect("the kernel accepts the connection"));
    }
    sockets
}

/// Whether another address still gets `/health`, a WebSocket and the
/// terminal from the server.
async fn still_serves_others(running: &Running, tcp: &str) {
    let health = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = tokio::net::TcpStream::connect(&running.addr).await.unwrap();
        let request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        tokio::io::AsyncWriteExt::write_all(&mut stream, request).await.unwrap();
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer).await.unwrap();
        answer
    })
    .await
    .expect("/health answers in time");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let url = format!("ws://{}/ws", running.addr);
    confab_client::WsClient::hello(&url, "Ann").await.expect("a WebSocket from another address");
    let mut terminal = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let mut greeting = [0u8; 256];
    let n = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut terminal, &mut greeting),
    )
    .await
    .expect("the terminal greets in time")
    .unwrap();
    let greeting = String::from_utf8_lossy(&greeting[..n]);
    assert!(!greeting.is_empty() && !greeting.starts_with("bye"), "{greeting}");
}

#[test]
fn silent_sockets_from_one_address_do_not_lock_others_out_at_1024_files() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The default cap per address (256) holds from the moment of accept.
    let mut running = serve_with_1024_files(&[]);
    let tcp = logged(&mut running, "tcp listening on ");
    runtime.block_on(async {
        let _flood = silent_sockets(&running.addr, 1_100).await;
        still_serves_others(&running, &tcp).await;
    });
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());

    // With no useful cap per address, running short of descriptors sheds
    // the heaviest address and keeps serving the others.
    let mut running = serve_with_1024_files(&["--max-connections-per-ip", "100000"]);
    let tcp = logged(&mut running, "tcp listening on ");
    let limit = running
        .early
        .iter()
        .find_map(|l| l.split_once("open-file limit ").map(|(_, rest)| rest.trim().to_owned()))
        .expect("the limit in force is logged before the address");
    assert!(limit.starts_with("1024:"), "the limit in force is logged: {limit}");
    runtime.block_on(async {
        let _flood = silent_sockets(&running.addr, 1_100).await;
        still_serves_others(&running, &tcp).await;
    });
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
}

/// Starts `confab serve` as node `name` of the cluster `namespace` on the
/// Redis and PostgreSQL the tests are given, with `more` flags.
fn cluster_node(namespace: &str, name: &str, more: &[&str]) -> Running {
    let (redis, postgres) = (service("CONFAB_TEST_REDIS"), service("CONFAB_TEST_POSTGRES"));
    let mut args = vec!["--http", "127.0.0.1:0", "--cluster", &redis, "--cluster-namespace"];
    args.extend([namespace, "--database", &postgres, "--node", name]);
    args.extend_from_slice(more);
    serve(&args, &[])
}

/// What follows `needle` in the next log line that has it.
fn logged(running: &mut Running, needle: &str) -> String {
    loop {
        let line = running.log.recv_timeout(Duration::from_secs(20)).expect("a log line");
        if let Some((_, rest)) = line.split_once(needle) {
            return rest.trim().to_owned();
        }
    }
}

#[test]
#[ignore = "needs Redis and PostgreSQL: CONFAB_TEST_REDIS, CONFAB_TEST_POSTGRES"]
fn a_cluster_node_stopped_past_its_lease_starts_over_and_presence_converges() {
    let namespace = format!("stop{}", std::process::id());
    let node =
        |name: &str| cluster_node(&namespace, name, &["--node-lease", "2s", "--grace", "500ms"]);
    let (mut n1, mut n2) = (node("n1"), node("n2"));
    let url = |running: &Running| format!("ws://{}/ws", running.addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use serde_json::json;
        let (mut ann, _) = confab_client::WsClient::hello(&url(&n1), "Ann").await.unwrap();
        let created = ann.ok(json!({"op": "create"})).await.unwrap();
        let code = created["room"]["code"].as_str().unwrap().to_owned();
        ann.ok(json!({"op": "join", "room": code})).await.unwrap();
        let (mut dan, hello) = confab_client::WsClient::hello(&url(&n2), "Dan").await.unwrap();
        let token = hello["session"].as_str().unwrap().to_owned();
        dan.ok(json!({"op": "join", "room": code})).await.unwrap();
        ann.event("join").await.unwrap();

        // Frozen past its lease: the other node sweeps Dan.
        signal(&n2.child, "-STOP");
        let stopped = std::time::Instant::now();
        let leave = ann.event("leave").await.unwrap();
        let swept = stopped.elapsed();
        assert_eq!(
            (leave["user"]["name"].as_str(), leave["reason"].as_str()),
            (Some("Dan"), Some("disconnected"))
        );
        signal(&n2.child, "-CONT");
        let resumed = std::time::Instant::now();
        // The node cannot prove its lease held: it closes Dan's connection
        // so that he comes back, as a member again.
        assert_eq!(dan.closed().await.unwrap(), Some(1012), "closed to resume, not as a shutdown");
        eprintln!(
            "stopped node swept {swept:?} after SIGSTOP (lease 2 s); its connections closed \
             {:?} after SIGCONT",
            resumed.elapsed()
        );
        let mut dan = confab_client::WsClient::connect(&url(&n2)).await.unwrap();
        dan.ok(json!({"op": "hello", "name": "Dan", "session": token})).await.unwrap();
        dan.ok(json!({"op": "join", "room": code})).await.unwrap();
        let joined = ann.event("join").await.unwrap();
        assert_eq!(joined["user"]["name"], "Dan");
        // Both nodes list exactly who is connected.
        for client in [&mut ann, &mut dan] {
            let members = client.ok(json!({"op": "members", "room": code})).await.unwrap();
            let mut names: Vec<&str> = members["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["name"].as_str().unwrap())
                .collect();
            names.sort_unstable();
            assert_eq!(names, ["Ann", "Dan"]);
        }
        dan.ok(json!({"op": "post", "room": code, "body": "back"})).await.unwrap();
        let message = ann.event("message").await.unwrap();
        assert_eq!(message["message"]["body"], "back");
    });
    for running in [&mut n1, &mut n2] {
        let _ = running.child.kill();
        let _ = running.child.wait();
    }
}

/// Starts `confab serve` with `args` and returns it with the lines it
/// logged up to and including the one that names its HTTP address.
fn serve_logging(args: &[&str]) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_confab"))
        .arg("serve")
        .args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--data"])
        .arg(data_dir())
        .args(args)
        .env_remove("CONFAB_LOG")
        .env_remove("CONFAB_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("confab starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logged = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let done = line.contains("http listening on ");
        logged.push(line);
        if done {
            break;
        }
    }
    // The rest of the log is not needed; a thread keeps the pipe drained.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, logged)
}

#[test]
fn logs_to_a_pipe_have_no_colour_and_json_logs_are_one_object_a_line() {
    let (mut text, logged) = serve_logging(&[]);
    assert!(logged.iter().any(|l| l.contains("http listening on")), "{logged:?}");
    assert!(logged.iter().all(|l| !l.contains('\u{1b}')), "escape codes in a pipe: {logged:?}");
    signal(&text, "-TERM");
    assert!(text.wait().unwrap().success());

    let (mut json, logged) = serve_logging(&["--log-format", "json"]);
    for line in &logged {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["level"].is_string() && object["timestamp"].is_string(), "{line}");
    }
    let listening = logged.last().unwrap();
    let listening: serde_json::Value = serde_json::from_str(listening).unwrap();
    assert!(listening["message"].as_str().unwrap().starts_with("http listening on 127.0.0.1:"));
    signal(&json, "-TERM");
    assert!(json.wait().unwrap().success());
}

#[test]
fn a_bad_log_filter_exits_with_code_2_naming_the_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["serve", "--http", "127.0.0.1:0", "--log", "confab=loudest"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("--log (CONFAB_LOG)") && said.contains("loudest"), "{said}");
}

#[test]
fn version_is_answered_by_the_binary_and_by_serve() {
    for args in [&["--version"][..], &["serve", "--version"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_confab")).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let said = String::from_utf8_lossy(&output.stdout);
        let said = said.trim();
        assert!(said.starts_with("confab"), "{args:?}: {said}");
        assert!(said.ends_with(&format!(" {}", env!("CARGO_PKG_VERSION"))), "{args:?}: {said}");
    }
}

fn healthcheck(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_confab")).args(["healthcheck", url]).output().unwrap()
}

#[test]
fn healthcheck_exits_0_for_a_ready_server_and_1_otherwise() {
    let running = serve(&["--http", "127.0.0.1:0"], &[]);
    let ready = healthcheck(&format!("http://{}/readyz", running.addr));
    assert_eq!(ready.status.code(), Some(0), "{}", String::from_utf8_lossy(&ready.stderr));
    // No path: /readyz.
    assert_eq!(healthcheck(&format!("http://{}", running.addr)).status.code(), Some(0));
    let missing = healthcheck(&format!("http://{}/no-such-check", running.addr));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    signal(&running.child, "-TERM");
    let addr = running.addr.clone();
    assert!(wait_exit(running).success());
    // Nobody there any more.
    let gone = healthcheck(&format!("http://{addr}/readyz"));
    assert_eq!(gone.status.code(), Some(1));
    assert!(!gone.stderr.is_empty(), "says why");
    assert_eq!(healthcheck("https://127.0.0.1:1/readyz").status.code(), Some(1));
}

#[test]
fn a_second_sigint_quits_without_waiting_for_the_drain() {
    let mut running = serve(&["--http", "127.0.0.1:0", "--drain", "60s"], &[]);
    let tcp = logged(&mut running, "tcp listening on ");
    // Open connections: the drain would wait for their turns, up to 48 s
    // (three, so that all three turns coming before the second Ctrl-C is
    // out of the question).
    let open: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&tcp).unwrap()).collect();
    // Each is served (its session says welcome) before the signals.
    for socket in &open {
        let mut welcome = String::new();
        BufReader::new(socket).read_line(&mut welcome).unwrap();
        assert!(welcome.starts_with("welcome"), "{welcome}");
    }
    signal(&running.child, "-INT");
    logged(&mut running, "draining");
    signal(&running.child, "-INT");
    let started = std::time::Instant::now();
    let status = wait_exit(running);
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// `confab serve ARGS` with `env`, expected to refuse to start: its exit
/// code and what it said.
fn refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_confab"));
    command.arg("serve").args(args).env_remove("CONFAB_HTTP").stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn configuration_mistakes_are_named_as_written_with_a_hint() {
    // A bare port.
    let (code, said) = refused(&["--http", "8081"], &[]);
    assert_eq!(code, Some(2));
    assert!(said.contains("--http") && said.contains("127.0.0.1:8081"), "{said}");
    // A bad value from the environment names the variable.
    let (code, said) = refused(&["--http", "127.0.0.1:0"], &[("CONFAB_GRACE", "soon")]);
    assert_eq!(code, Some(2));
    assert!(said.contains("confab: CONFAB_GRACE:"), "{said}");
    // From the command line, the flag.
    let (code, said) = refused(&["--http", "127.0.0.1:0", "--grace", "soon"], &[]);
    assert_eq!(code, Some(2));
    assert!(said.contains("confab: --grace:"), "{said}");
    // A database file in a directory that does not exist is refused, not
    // created.
    let missing = data_dir().join("no-such-dir");
    let url = format!("sqlite://{}/chat.db", missing.display());
    let (code, said) =
        refused(&["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--database", &url], &[]);
    assert_eq!(code, Some(1));
    assert!(said.contains("does not exist"), "{said}");
    assert!(!missing.exists(), "nothing was created");
}

#[test]
fn a_misspelt_variable_is_a_warning_naming_the_real_one_and_a_relative_data_dir_is_shown_whole() {
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--data", "relative-data"])
        .current_dir(&dir)
        .env_remove("CONFAB_HTTP")
        .env("CONFAB_GRCE", "5s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logged = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("http listening on ");
        logged.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let all = logged.join("\n");
    assert!(all.contains("CONFAB_GRCE is not a setting (did you mean CONFAB_GRACE?)"), "{all}");
    let whole = dir.join("relative-data").join("confab.db");
    assert!(all.contains(&format!("database {} ready", whole.display())), "{all}");
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_service_manager_is_told_when_the_server_is_ready_and_when_it_stops() {
    use std::os::unix::net::UnixDatagram;
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let manager = UnixDatagram::bind(&path).unwrap();
    manager.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let running = serve(&["--http", "127.0.0.1:0"], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut said = [0u8; 256];
    let n = manager.recv(&mut said).expect("told it is ready");
    let ready = String::from_utf8_lossy(&said[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    // Ready means serving.
    assert!(get(&running.addr, "/readyz").starts_with("HTTP/1.1 200"));
    signal(&running.child, "-TERM");
    let n = manager.recv(&mut said).expect("told it is stopping");
    let stopping = String::from_utf8_lossy(&said[..n]).into_owned();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    assert!(wait_exit(running).success());
}

#[test]
#[ignore = "needs systemd-analyze (systemd)"]
fn the_service_file_is_one_systemd_accepts() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/confab.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("DynamicUser=yes"));
    // The unit as installed, with this build's binary where it would be.
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("confab.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/confab", env!("CARGO_BIN_EXE_confab")))
        .unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&path)
        .output()
        .expect("systemd-analyze runs: this test needs systemd (see README.md)");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && !said.contains("confab.service"), "{said}");
}

#[test]
#[ignore = "needs the sqlite3 command-line shell"]
fn the_documented_online_backups_of_the_sqlite_file_restore_every_message() {
    use confab_client::WsClient;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let data = data_dir();
    let running = serve_in(&data, &["--http", "127.0.0.1:0", "--post-rate", "off"], &[]);
    let url = format!("ws://{}/ws", running.addr);
    let db = data.join("confab.db");
    let (backup, vacuumed) = (data.join("backup.db"), data.join("vacuumed.db"));
    let code = runtime.block_on(async {
        let (mut ann, _) = WsClient::hello(&url, "Ann").await.unwrap();
        let room =
            ann.ok(serde_json::json!({"op": "create", "retention": "persistent"})).await.unwrap();
        let code = room["room"]["code"].as_str().unwrap().to_owned();
        ann.ok(serde_json::json!({"op": "join", "room": code})).await.unwrap();
        for i in 0..50 {
            let op = serde_json::json!({"op": "post", "room": code, "body": format!("m{i}")});
            ann.ok(op).await.unwrap();
        }
        code
    });
    // Both recipes of docs/operations.md, on the live file (WAL mode).
    let sqlite3 = |sql: String| {
        let output = Command::new("sqlite3").arg(&db).arg(sql).output().expect("sqlite3 runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    sqlite3(format!(".backup '{}'", backup.display()));
    sqlite3(format!("VACUUM INTO '{}'", vacuumed.display()));
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
    for copy in [backup, vacuumed] {
        let restored = data_dir();
        std::fs::create_dir_all(&restored).unwrap();
        std::fs::copy(&copy, restored.join("confab.db")).unwrap();
        let running = serve_in(&restored, &["--http", "127.0.0.1:0"], &[]);
        let url = format!("ws://{}/ws", running.addr);
        runtime.block_on(async {
            let (mut bob, _) = WsClient::hello(&url, "Bob").await.unwrap();
            let joined = bob.ok(serde_json::json!({"op": "join", "room": code})).await.unwrap();
            assert_eq!(joined["seq"], 50, "{copy:?}: {joined}");
        });
        signal(&running.child, "-TERM");
        assert!(wait_exit(running).success());
    }
}

#[test]
fn refused_connections_and_rooms_are_logged_one_line_each_and_private_codes_are_not() {
    let mut running = serve(&["--http", "127.0.0.1:0"], &[]);
    let url = format!("ws://{}/ws", running.addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (public, private) = runtime.block_on(async {
        use serde_json::json;
        let (mut ann, _) = confab_client::WsClient::hello(&url, "Ann").await.unwrap();
        let public = ann.ok(json!({"op": "create", "public": true})).await.unwrap();
        let private = ann.ok(json!({"op": "create"})).await.unwrap();
        let code = |r: &serde_json::Value| r["room"]["code"].as_str().unwrap().to_owned();
        (code(&public), code(&private))
    });
    let created = logged(&mut running, "room created");
    assert!(created.contains(&public), "{created}");
    let created = logged(&mut running, "room created");
    assert!(created.contains("(private)") && !created.contains(&private), "{created}");
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());

    // Two places for an address: the third terminal connection is refused,
    // and the refusal logged.
    let mut running = serve(
        &[
            "--http",
            "127.0.0.1:0",
            "--limit-loopback",
            "--max-connections-per-ip",
            "2",
            "--drain",
            "1s",
        ],
        &[],
    );
    let tcp = logged(&mut running, "tcp listening on ");
    // (Which of the three is refused depends on the order the server
    // admits them in.)
    let sockets: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&tcp).unwrap()).collect();
    let first_lines: Vec<String> = sockets
        .iter()
        .map(|socket| {
            socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut line = String::new();
            BufReader::new(socket).read_line(&mut line).unwrap();
            line
        })
        .collect();
    let refusals = first_lines.iter().filter(|l| l.starts_with("bye:")).count();
    assert_eq!(refusals, 1, "{first_lines:?}");
    let refused = logged(&mut running, "connection refused");
    assert!(refused.contains("address_full") && refused.contains("127.0.0.1"), "{refused}");
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
}

#[test]
fn sighup_puts_the_config_files_rate_limits_in_force_and_says_what_changed() {
    use serde_json::json;
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("confab.toml");
    std::fs::write(&file, "post-rate = \"1/m,burst=1\"\n").unwrap();
    let mut running = serve(&["--http", "127.0.0.1:0", "--config", file.to_str().unwrap()], &[]);
    let url = format!("ws://{}/ws", running.addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut ann, code) = runtime.block_on(async {
        let (mut ann, _) = confab_client::WsClient::hello(&url, "Ann").await.unwrap();
        let room = ann.ok(json!({"op": "create"})).await.unwrap();
        let code = room["room"]["code"].as_str().unwrap().to_owned();
        ann.ok(json!({"op": "join", "room": code})).await.unwrap();
        ann.ok(json!({"op": "post", "room": code, "body": "one"})).await.unwrap();
        let second = json!({"op": "post", "room": code, "body": "two"});
        assert_eq!(ann.error_code(second).await.unwrap(), "rate_limited");
        (ann, code)
    });
    // A file that no longer parses changes nothing, and says so.
    std::fs::write(&file, "post-rate = \n").unwrap();
    signal(&running.child, "-HUP");
    let kept = logged(&mut running, "reload: ");
    assert!(kept.contains("kept"), "{kept}");
    std::fs::write(&file, "post-rate = \"off\"\n").unwrap();
    signal(&running.child, "-HUP");
    let changed = logged(&mut running, "reload: ");
    assert_eq!(changed, "post-rate: 1/m,burst=1 → off");
    runtime.block_on(async {
        for body in ["three", "four", "five"] {
            let post = json!({"op": "post", "room": code, "body": body});
            ann.ok(post).await.expect("no limit on posts any more");
        }
    });
    // The connection caps too; a second reload of the same file changes
    // nothing, and says so.
    std::fs::write(&file, "post-rate = \"off\"\nmax-connections-per-ip = 3\n").unwrap();
    signal(&running.child, "-HUP");
    assert_eq!(logged(&mut running, "reload: "), "max-connections-per-ip: 256 → 3");
    signal(&running.child, "-HUP");
    assert_eq!(logged(&mut running, "reload: "), "nothing changed");
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
}

/// A client that trusts `cert` alone.
fn trusting(cert: &rcgen::Certificate) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(confab_server::tls::provider().into())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

async fn tls_to(
    addr: &str,
    client: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    client.connect(name, tcp).await
}

#[test]
fn with_tls_it_serves_https_and_sighup_serves_a_renewed_certificate_to_new_connections() {
    use serde_json::json;
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let issue = || {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        made.cert
    };
    let first = issue();
    let args = ["--http", "127.0.0.1:0", "--tls-cert", cert.to_str().unwrap()];
    let mut running = serve(&[&args[..], &["--tls-key", key.to_str().unwrap()]].concat(), &[]);
    assert!(running.early.iter().any(|l| l.contains("tls: HTTPS, WSS")), "{:?}", running.early);
    let web = logged(&mut running, "web chat at ");
    assert!(web.starts_with("https://127.0.0.1:"), "{web}");
    let ready = healthcheck(&format!("https://{}/readyz", running.addr));
    assert_eq!(ready.status.code(), Some(0), "{}", String::from_utf8_lossy(&ready.stderr));
    let plain = healthcheck(&format!("http://{}/readyz", running.addr));
    assert_eq!(plain.status.code(), Some(1), "plain HTTP is not answered on a TLS port");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = format!("wss://localhost:{}/ws", running.addr.rsplit(':').next().unwrap());
    let mut open = runtime.block_on(async {
        let stream = tls_to(&running.addr, &trusting(&first)).await.unwrap();
        let mut ws = confab_client::WsClient::connect_over(&url, stream).await.unwrap();
        ws.ok(json!({"op": "hello", "name": "Ann"})).await.unwrap();
        ws.ok(json!({"op": "join", "room": "main"})).await.unwrap();
        ws
    });

    let second = issue();
    signal(&running.child, "-HUP");
    let reloaded = logged(&mut running, "reload: a new TLS certificate");
    assert!(reloaded.contains("cert.pem"), "{reloaded}");
    runtime.block_on(async {
        let fresh = tls_to(&running.addr, &trusting(&second)).await.expect("the new one");
        assert_eq!(fresh.get_ref().1.peer_certificates().unwrap()[0], *second.der());
        assert!(tls_to(&running.addr, &trusting(&first)).await.is_err(), "the old one is gone");
        // The connection opened before the reload goes on.
        let posted = json!({"op": "post", "room": "main", "body": "still here"});
        let reply = open.ok(posted).await.expect("the open connection still works");
        assert_eq!(reply["message"]["body"], "still here");
    });
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
}

/// Creates a public and a private ephemeral room, joins and leaves each,
/// and checks that each was logged created and ended, the private one
/// without its code.
fn rooms_are_logged_created_and_ended(running: &mut Running) {
    use serde_json::json;
    let url = format!("ws://{}/ws", running.addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (public, private) = runtime.block_on(async {
        let (mut ann, _) = confab_client::WsClient::hello(&url, "Ann").await.unwrap();
        let mut codes = Vec::new();
        for public in [true, false] {
            let room = ann.ok(json!({"op": "create", "public": public})).await.unwrap();
            let code = room["room"]["code"].as_str().unwrap().to_owned();
            ann.ok(json!({"op": "join", "room": code})).await.unwrap();
            ann.ok(json!({"op": "leave", "room": code})).await.unwrap();
            codes.push(code);
        }
        (codes[0].clone(), codes[1].clone())
    });
    let mut lines = Vec::new();
    while lines.len() < 4 {
        let line = running.log.recv_timeout(Duration::from_secs(20)).expect("a log line");
        if line.contains("room created") || line.contains("room ended") {
            assert!(!line.contains(&private), "a private code in the log: {line}");
            lines.push(line);
        }
    }
    let with = |what: &str, room: &str| lines.iter().any(|l| l.contains(what) && l.contains(room));
    assert!(with("room created", &public) && with("room ended", &public), "{lines:#?}");
    assert!(with("room created", "(private)") && with("room ended", "(private)"), "{lines:#?}");
}

#[test]
fn rooms_created_and_ended_are_logged_private_ones_without_their_code() {
    let mut running = serve(&["--http", "127.0.0.1:0"], &[]);
    rooms_are_logged_created_and_ended(&mut running);
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
}

#[test]
#[ignore = "needs Redis and PostgreSQL: CONFAB_TEST_REDIS, CONFAB_TEST_POSTGRES"]
fn in_a_cluster_rooms_created_and_ended_are_logged_private_ones_without_their_code() {
    let namespace = format!("logs{}", std::process::id());
    let mut running = cluster_node(&namespace, "n1", &[]);
    rooms_are_logged_created_and_ended(&mut running);
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
}

/// Runs `confab admin ARGS` against `server` with `token` in the
/// environment (none: unset).
fn confab_admin(server: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_confab"));
    command.args(["admin", "--server", server]).args(args).env_remove("CONFAB_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("CONFAB_ADMIN_TOKEN", token);
    }
    command.output().unwrap()
}

#[test]
fn confab_admin_speaks_the_operators_api_with_the_token_from_the_environment() {
    // Too short a token stops the start, naming it.
    let (code, said) = refused(&["--http", "127.0.0.1:0"], &[("CONFAB_ADMIN_TOKEN", "short")]);
    assert_eq!(code, Some(2));
    assert!(said.contains("CONFAB_ADMIN_TOKEN") && said.contains("24"), "{said}");
    assert!(!said.contains("short"), "never the token: {said}");

    let token = "a-token-long-enough-for-the-operator";
    let running = serve(&["--http", "127.0.0.1:0"], &[("CONFAB_ADMIN_TOKEN", token)]);
    let server = format!("http://{}", running.addr);
    let rooms = confab_admin(&server, Some(token), &["rooms"]);
    let out = String::from_utf8_lossy(&rooms.stdout);
    assert_eq!(rooms.status.code(), Some(0), "{}", String::from_utf8_lossy(&rooms.stderr));
    assert!(out.starts_with("rooms (1):\nmain | "), "{out}");
    assert!(out.contains("| board | persistent"), "{out}");
    let json = confab_admin(&server, Some(token), &["--json", "bans"]);
    assert_eq!(String::from_utf8_lossy(&json.stdout).trim(), r#"{"bans":[]}"#);
    let banned = confab_admin(&server, Some(token), &["ban", "198.51.100.7", "--minutes", "60"]);
    assert_eq!(banned.status.code(), Some(0));
    let bans = confab_admin(&server, Some(token), &["bans"]);
    let out = String::from_utf8_lossy(&bans.stdout);
    assert!(out.starts_with("bans (1):\n") && out.contains("until "), "{out}");
    assert!(!out.contains("198.51.100.7"), "{out}");
    let lifted = confab_admin(&server, Some(token), &["unban", "198.51.100.7"]);
    assert_eq!(lifted.status.code(), Some(0), "{}", String::from_utf8_lossy(&lifted.stderr));
    let told = confab_admin(&server, Some(token), &["announce", "back", "in", "five"]);
    assert_eq!(String::from_utf8_lossy(&told.stdout), "told 1 rooms\n");
    // The wrong token: refused, saying so; none at all: a usage error.
    let wrong = confab_admin(&server, Some("not-the-token-at-all-not-at-all"), &["rooms"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"));
    let none = confab_admin(&server, None, &["rooms"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("CONFAB_ADMIN_TOKEN"));
    let closing = confab_admin(&server, Some(token), &["close", "main"]);
    assert_eq!(closing.status.code(), Some(1), "a board is not closed");
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
}

/// One HTTP/1.1 request on a connection of its own: the status and body.
fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn confab_post_posts_as_an_integration_s_bot() {
    let token = "a-token-long-enough-for-the-operator";
    let running = serve(&["--http", "127.0.0.1:0"], &[("CONFAB_ADMIN_TOKEN", token)]);
    let addr = running.addr.to_string();
    // The operator makes an integration of the board.
    let (status, made) =
        http(&addr, "POST", "/admin/v1/rooms/main/integrations", token, r#"{"name": "CI"}"#);
    assert_eq!(status, 201, "{made}");
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let bot = made["token"].as_str().unwrap().to_owned();
    let post = |args: &[&str], bot: Option<&str>, stdin: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_confab"));
        command.arg("post").args(["--server", &format!("http://{addr}")]).args(args);
        command.env_remove("CONFAB_TOKEN").stdin(Stdio::piped()).stdout(Stdio::piped());
        command.stderr(Stdio::piped());
        if let Some(bot) = bot {
            command.env("CONFAB_TOKEN", bot);
        }
        let mut child = command.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let posted = post(&["main", "build", "41", "passed", "--cid", "job-41"], Some(&bot), "");
    assert_eq!(posted.status.code(), Some(0), "{}", String::from_utf8_lossy(&posted.stderr));
    assert_eq!(String::from_utf8_lossy(&posted.stdout), "posted 1 to main\n");
    let again = post(&["main", "build", "41", "passed", "--cid", "job-41"], Some(&bot), "");
    assert_eq!(String::from_utf8_lossy(&again.stdout), "posted 1 to main\n", "a retry, once");
    let piped = post(&["main"], Some(&bot), "from a pipe\nline two\n");
    assert_eq!(String::from_utf8_lossy(&piped.stdout), "posted 2 to main\n");
    let (status, read) = http(&addr, "GET", "/api/v1/rooms/main/messages", &bot, "");
    assert_eq!(status, 200);
    let read: serde_json::Value = serde_json::from_str(&read).unwrap();
    let messages = read["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        (&messages[0]["bot"], &messages[0]["from"]["name"]),
        (&serde_json::json!(true), &serde_json::json!("CI"))
    );
    assert_eq!(messages[1]["body"], "from a pipe\nline two");
    // The wrong token is refused (1); none is a usage error (2).
    let wrong = post(&["main", "x"], Some("i_nope.nope"), "");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"));
    assert_eq!(post(&["main", "x"], None, "").status.code(), Some(2));
    // The operator revokes it: refused from then on.
    let id = made["integration"]["id"].as_str().unwrap();
    let path = format!("/admin/v1/rooms/main/integrations/{id}");
    assert_eq!(http(&addr, "DELETE", &path, token, "").0, 200);
    assert_eq!(post(&["main", "x"], Some(&bot), "").status.code(), Some(1));
    signal(&running.child, "-TERM");
    assert!(wait_exit(running).success());
}

#[test]
#[ignore = "needs Redis and PostgreSQL: CONFAB_TEST_REDIS, CONFAB_TEST_POSTGRES"]
fn a_webhook_gets_each_event_once_from_three_nodes_one_killed_mid_run() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    // The receiver: records (webhook-id, seq, node) of every request,
    // answering each after a little while, so that deliveries are under
    // way when a node dies.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<(String, u64, String)>>> = Arc::default();
    let record = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = HashMap::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                }
            }
            let length: usize =
                headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let node = headers.get("user-agent").cloned().unwrap_or_default();
            let id = headers.get("webhook-id").cloned().unwrap_or_default();
            record.lock().unwrap().push((id, body["data"]["seq"].as_u64().unwrap(), node));
            std::thread::sleep(Duration::from_millis(30));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let namespace = format!("hooks{}", std::process::id());
    let flags = ["--webhook-private", "true", "--webhook-timeout", "1s", "--node-lease", "2s"];
    let mut nodes: Vec<Option<Running>> =
        ["n1", "n2", "n3"].iter().map(|n| Some(cluster_node(&namespace, n, &flags))).collect();
    let urls: Vec<String> =
        nodes.iter().map(|n| format!("ws://{}/ws", n.as_ref().unwrap().addr)).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let posts = 60u64;
    runtime.block_on(async {
        use serde_json::json;
        let (mut ann, _) = confab_client::WsClient::hello(&urls[0], "Ann").await.unwrap();
        let created = ann.ok(json!({"op": "create", "retention": "persistent"})).await.unwrap();
        let code = created["room"]["code"].as_str().unwrap().to_owned();
        ann.ok(json!({"op": "join", "room": code})).await.unwrap();
        let hook =
            json!({"op": "webhook", "room": code, "url": url, "events": ["message.created"]});
        ann.ok(hook).await.unwrap();
        // Posters on the two other nodes.
        let mut posters = Vec::new();
        for (i, name) in [(1, "Bob"), (2, "Cleo")] {
            let (mut client, _) = confab_client::WsClient::hello(&urls[i], name).await.unwrap();
            client.ok(json!({"op": "join", "room": code})).await.unwrap();
            posters.push(client);
        }
        for n in 0..posts {
            let poster = &mut posters[(n % 2) as usize];
            poster.ok(json!({"op": "post", "room": code, "body": format!("m{n}")})).await.unwrap();
        }
    });
    // Mid-run, the node delivering is killed (its lease lapses; another
    // takes the webhook over).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let deliverer = loop {
        assert!(std::time::Instant::now() < deadline, "deliveries begin");
        let got = got.lock().unwrap();
        if got.len() >= 10 {
            break got.last().unwrap().2.clone();
        }
        drop(got);
        std::thread::sleep(Duration::from_millis(20));
    };
    let victim =
        ["n1", "n2", "n3"].iter().position(|n| deliverer.contains(&format!("(node {n})"))).unwrap();
    let mut killed = nodes[victim].take().unwrap();
    signal(&killed.child, "-KILL");
    let _ = killed.child.wait();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seqs: std::collections::BTreeSet<u64> =
            got.lock().unwrap().iter().map(|r| r.1).collect();
        if seqs.len() as u64 == posts {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every event delivered: {} of {posts}",
            seqs.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = got.lock().unwrap().clone();
    // Each event once, but the one in flight when its node died, which may
    // come twice (at least once: its receiver de-duplicates by id).
    let mut ids: Vec<&str> = got.iter().map(|r| r.0.as_str()).collect();
    ids.sort_unstable();
    let all = ids.len();
    ids.dedup();
    assert_eq!(ids.len() as u64, posts, "one id an event");
    assert!(all - ids.len() <= 1, "{} deliveries of {posts} events", all);
    // In order: each first delivery after the one before it.
    let mut firsts = Vec::new();
    for (_, seq, _) in &got {
        if !firsts.contains(seq) {
            firsts.push(*seq);
        }
    }
    assert_eq!(firsts, (1..=posts).collect::<Vec<_>>(), "in order");
    let nodes_seen: std::collections::BTreeSet<&str> = got.iter().map(|r| r.2.as_str()).collect();
    assert!(nodes_seen.len() >= 2, "another node took over: {nodes_seen:?}");
    for running in nodes.into_iter().flatten() {
        signal(&running.child, "-TERM");
        assert!(wait_exit(running).success());
    }
}
