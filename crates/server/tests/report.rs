//! `report`: a member tells the operator about a message. The entry in the
//! audit log (what was said, by whom, who reported it and why), the
//! errors, the rate, and the terminal's `%report`. (Long-poll and cluster
//! reports are in `lp.rs` and `cluster.rs`.)

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestServer, join, post, start_with};
use confab_client::WAIT;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A server whose audit log is `audit.jsonl` in its data directory.
async fn start_audited(configure: impl FnOnce(&mut confab_server::Config)) -> TestServer {
    start_with(|c| {
        c.audit_log = Some(c.data.join("audit.jsonl"));
        configure(c);
    })
    .await
}

/// The audit log's entries, once it has `n`.
async fn entries(path: &Path, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} entries expected: {text:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_report_reaches_the_audit_log_with_the_message_and_who_reported_it() {
    let server = start_audited(|_| {}).await;
    let audit = server.dir.path().join("audit.jsonl");
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    let code = server.create(&mut ann, json!({"public": true})).await;
    join(&mut ann, &code).await;
    join(&mut bob, &code).await;
    bob.ok(json!({"op": "post", "room": code, "subject": "deal", "body": "cheap watches"}))
        .await
        .unwrap();
    let reply = ann
        .ok(json!({"op": "report", "room": code, "seq": 1, "reason": "  spam  "}))
        .await
        .unwrap();
    assert_eq!(reply["ok"], true);
    // Without a reason too.
    ann.ok(json!({"op": "report", "room": code.to_lowercase(), "seq": 1})).await.unwrap();
    let logged = entries(&audit, 2).await;
    let entry = &logged[0];
    assert_eq!(entry["kind"], "report");
    assert_eq!(entry["room"], code.as_str());
    assert_eq!(entry["seq"], 1);
    assert_eq!(entry["message"]["from"]["name"], "Bob");
    assert_eq!(entry["message"]["subject"], "deal");
    assert_eq!(entry["message"]["body"], "cheap watches");
    assert_eq!(entry["reporter"]["name"], "Ann");
    assert!(entry["reporter"]["id"].as_str().unwrap().starts_with("u_"));
    assert_eq!(entry["reason"], "spam", "trimmed");
    assert_eq!(entry["node"], "local");
    assert!(entry["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(logged[1]["reason"], Value::Null);
    // Nobody in the room hears of it.
    let frames = bob.drain().await.unwrap();
    assert!(frames.iter().all(|f| f["ev"] != "report"), "{frames:?}");
    // Counted for the operator's dashboards.
    let (_, metrics) = server.get("/metrics").await;
    let reports = metrics
        .lines()
        .find_map(|l| l.strip_prefix("confab_reports_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(reports.is_some_and(|n| n >= 2.0), "{metrics}");
}

#[tokio::test]
async fn what_cannot_be_reported_is_refused_and_nothing_is_logged() {
    let server = start_audited(|c| {
        c.hub.room_backlog = 0;
    })
    .await;
    let audit = server.dir.path().join("audit.jsonl");
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    let code = server.create(&mut ann, json!({})).await;
    join(&mut ann, &code).await;
    post(&mut ann, &code, "before Bob came").await;
    // Not a member: as for any op naming a room one is not in.
    let refused = json!({"op": "report", "room": code, "seq": 1});
    assert_eq!(bob.error_code(refused.clone()).await.unwrap(), "not_member");
    join(&mut bob, &code).await;
    // A message posted before Bob joined (backlog 0) is not Bob's to see,
    // nor to report; a message that does not exist neither.
    assert_eq!(bob.error_code(refused).await.unwrap(), "not_found");
    let missing = json!({"op": "report", "room": code, "seq": 99});
    assert_eq!(bob.error_code(missing).await.unwrap(), "not_found");
    post(&mut ann, &code, "after").await;
    let long = json!({"op": "report", "room": code, "seq": 2, "reason": "x".repeat(201)});
    assert_eq!(bob.error_code(long).await.unwrap(), "too_large");
    let control = json!({"op": "report", "room": code, "seq": 2, "reason": "a\u{7}b"});
    assert_eq!(bob.error_code(control).await.unwrap(), "bad_request");
    let no_seq = json!({"op": "report", "room": code});
    assert_eq!(bob.error_code(no_seq).await.unwrap(), "bad_request");
    // The refusals wrote nothing; an accepted report does.
    bob.ok(json!({"op": "report", "room": code, "seq": 2, "reason": "x".repeat(200)}))
        .await
        .unwrap();
    let logged = entries(&audit, 1).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["seq"], 2);
}

#[tokio::test]
async fn reports_have_a_rate() {
    let server = start_audited(|c| {
        c.hub.rates.report = Some(confab_core::Rate::new(1, Duration::from_secs(3600), 2));
    })
    .await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    post(&mut ann, "main", "hello").await;
    let report = json!({"op": "report", "room": "main", "seq": 1});
    ann.ok(report.clone()).await.unwrap();
    ann.ok(report.clone()).await.unwrap();
    let reply = ann.request(report).await.unwrap();
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
    assert!(reply["error"]["retry_after_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn the_terminal_reports_with_its_own_commands() {
    let server = start_audited(|_| {}).await;
    let audit = server.dir.path().join("audit.jsonl");
    let mut web = server.client("Web").await;
    join(&mut web, "main").await;
    post(&mut web, "main", "rude words").await;
    let code = server.create(&mut web, json!({"public": true})).await;
    join(&mut web, &code).await;
    post(&mut web, &code, "more rude words").await;

    let stream = tokio::net::TcpStream::connect(server.server.tcp_addr()).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut next = async || {
        tokio::time::timeout(WAIT, lines.next_line()).await.expect("a line").unwrap().unwrap()
    };
    write.write_all(b"Term\n%join\n").await.unwrap();
    while !next().await.starts_with("[main] you joined") {}
    write.write_all(b"%report 1 this is abuse\n").await.unwrap();
    let mut line = next().await;
    while line.starts_with("[main] 1 |") {
        line = next().await;
    }
    assert_eq!(line, "[main] message 1 reported to the operator");
    write
        .write_all(format!("%groupjoin {code}\n%groupreport {code} 1\n").as_bytes())
        .await
        .unwrap();
    while !next().await.contains("reported to the operator") {}
    write.write_all(b"%report 7\n%report x\n").await.unwrap();
    assert_eq!(next().await, "error: not_found: no message 7 in room main that you may see");
    assert_eq!(
        next().await,
        "error: a message id is a number from 1 up, not \"x\"; usage: %report <id> [reason...]"
    );
    let logged = entries(&audit, 2).await;
    assert_eq!(logged[0]["reason"], "this is abuse");
    assert_eq!(logged[0]["reporter"]["name"], "Term");
    assert_eq!(logged[1]["room"], code.as_str());
    assert_eq!(logged[1]["reason"], Value::Null);
}

#[tokio::test]
async fn an_audit_log_that_cannot_be_written_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = confab_server::Config::ephemeral(dir.path());
    config.audit_log = Some(dir.path().join("no-such-dir").join("audit.jsonl"));
    let error = match confab_server::Server::start(config).await {
        Ok(_) => panic!("started without its audit log"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("--audit-log") && error.contains("no-such-dir"), "{error}");
    assert!(error.contains("its directory does not exist"), "{error}");
}
