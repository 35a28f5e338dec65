//! `confab bench` against a real server: a short run whose JSON report
//! must account for every post.

use std::process::Command;

use confab_server::{Config, Server};
use serde_json::Value;

/// Runs `confab bench --json` with `args` against `url`; returns the report.
fn bench(url: &str, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["bench", "--json", "--url", url])
        .args(args)
        .output()
        .expect("confab bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn data_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("confab-bench-{name}-{}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_delivers_every_post_to_every_other_member() {
    let dir = data_dir("deliver");
    let server = Server::start(Config::ephemeral(&dir)).await.expect("server starts");
    // A second server: the bench spreads its rooms over every `--url`.
    let other_dir = data_dir("deliver-other");
    let other = Server::start(Config::ephemeral(&other_dir)).await.expect("server starts");
    let url = format!("ws://{}/ws", server.http_addr());
    let other_url = format!("ws://{}/ws", other.http_addr());
    let report = tokio::task::spawn_blocking(move || {
        let args = [
            "--url",
            &other_url,
            "--rooms",
            "3",
            "--members",
            "4",
            "--interval",
            "200",
            "--duration",
            "2",
        ];
        bench(&url, &args)
    })
    .await
    .unwrap();
    // Rooms 0 and 2 went to the first URL, room 1 to the other (each also
    // has its board); they outlive their members for the reconnect grace.
    let rooms = (server.hub().room_count(), other.hub().room_count());
    server.stop().await;
    other.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other_dir);

    assert_eq!(report["connections"], 12, "{report}");
    assert_eq!(report["connect_errors"], 0, "{report}");
    let posts = report["posts"].as_u64().unwrap();
    // 12 members, 5 posts a second each, for 2 s: about 120 posts.
    assert!(posts >= 80, "too few posts: {report}");
    assert_eq!(report["posts_sent"], posts, "every post answered: {report}");
    assert_eq!(report["posts_unanswered"], 0, "{report}");
    assert_eq!(report["disconnects"], 0, "{report}");
    assert_eq!(report["expected"], posts * 3, "{report}");
    assert_eq!(report["deliveries"], report["expected"], "{report}");
    assert_eq!(report["loss"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["out_of_order"], 0, "{report}");
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["bench"]["cpu_seconds"].is_number(), "the bench reports its CPU: {report}");
    assert_eq!(rooms, (3, 2), "rooms on each server (boards included)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_held_and_counted() {
    let dir = data_dir("idle");
    let server = Server::start(Config::ephemeral(&dir)).await.expect("server starts");
    let url = format!("ws://{}/ws", server.http_addr());
    let pid = std::process::id().to_string();
    let args = ["--idle", "--rooms", "5", "--members", "10", "--duration", "1"];
    let report = tokio::task::spawn_blocking(move || {
        let mut args = args.to_vec();
        args.extend(["--server-pid", &pid, "--source", "127.0.0.1,127.0.0.2"]);
        bench(&url, &args)
    })
    .await
    .unwrap();
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(report["connections"], 50, "{report}");
    assert_eq!(report["join_errors"], 0, "{report}");
    assert_eq!(report["posts_sent"], 0, "{report}");
    assert!(report["server"]["rss_bytes"].as_u64().unwrap() > 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_rooms_acknowledge_stored_posts() {
    let dir = data_dir("persistent");
    let server = Server::start(Config::ephemeral(&dir)).await.expect("server starts");
    let url = format!("ws://{}/ws", server.http_addr());
    let args =
        ["--persistent", "--rooms", "2", "--members", "3", "--interval", "200", "--duration", "1"];
    let report = tokio::task::spawn_blocking(move || bench(&url, &args)).await.unwrap();
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(report["persistent"], true);
    assert!(report["posts"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["deliveries"], report["expected"], "{report}");
    assert!(report["ack_latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{report}");
}

/// Over `wss://`, against a server with a certificate made for the test
/// (not checked by the bench): the same accounting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_tls_delivers_every_post() {
    let dir = data_dir("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let files =
        confab_server::tls::TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.cert, made.cert.pem()).unwrap();
    std::fs::write(&files.key, made.signing_key.serialize_pem()).unwrap();
    let mut config = Config::ephemeral(&dir);
    config.tls = Some(files);
    let server = Server::start(config).await.expect("server starts");
    let url = format!("wss://localhost:{}/ws", server.http_addr().port());
    let report = tokio::task::spawn_blocking(move || {
        let args = ["--rooms", "2", "--members", "3", "--interval", "200", "--duration", "2"];
        bench(&url, &args)
    })
    .await
    .unwrap();
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report["connections"], 6, "{report}");
    assert_eq!(report["connect_errors"], 0, "{report}");
    let posts = report["posts"].as_u64().unwrap();
    assert!(posts >= 40, "too few posts: {report}");
    assert_eq!(report["deliveries"], posts * 2, "{report}");
    assert_eq!((report["loss"].as_u64(), report["out_of_order"].as_u64()), (Some(0), Some(0)));
}
