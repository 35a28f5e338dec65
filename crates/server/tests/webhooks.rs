//! Outgoing webhooks against the real server and a real HTTP receiver the
//! test starts: made by the room's owner only, deliveries signed, retried
//! after a 500 and after a timeout with the same id, in order, given up
//! in the end; a removed webhook delivers nothing more.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{join, start_with};
use confab_client::WAIT;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A receiver on loopback: answers the `n`th request (from 1) as
/// `answer(n)` says: a status, or `None` to keep it waiting past any
/// timeout.
struct Receiver {
    url: String,
    got: Arc<parking_lot::Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
}

impl Receiver {
    async fn start(answer: impl Fn(usize) -> Option<u16> + Send + Sync + 'static) -> Receiver {
        Receiver::start_on(0, answer).await
    }

    async fn start_on(
        port: u16,
        answer: impl Fn(usize) -> Option<u16> + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<parking_lot::Mutex<Vec<Received>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let answer = Arc::new(answer);
        let (record, notify) = (got.clone(), arrived.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let (record, notify, answer) = (record.clone(), notify.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
                    let headers: Vec<(String, String)> = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buffer.len() < head_end + length {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                    }
                    let body =
                        String::from_utf8_lossy(&buffer[head_end..head_end + length]).into_owned();
                    let n = {
                        let mut got = record.lock();
                        got.push(Received { headers, body });
                        got.len()
                    };
                    notify.notify_waiters();
                    match answer(n) {
                        Some(status) => {
                            let reply = format!(
                                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            );
                            let _ = stream.write_all(reply.as_bytes()).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(5)).await,
                    }
                });
            }
        });
        Receiver { url, got, arrived }
    }

    /// Waits until `n` requests have arrived; all of them.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        tokio::time::timeout(WAIT * 3, async {
            loop {
                let notified = self.arrived.notified();
                if self.got.lock().len() >= n {
                    return self.got.lock().clone();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} deliveries within the wait; got {:?}", self.got.lock()))
    }
}

/// Checks a delivery's signature as a receiver would: HMAC-SHA256 of
/// `id.timestamp.body` under the secret's key, in base64 after `v1,`.
fn signed(received: &Received, secret: &str) -> bool {
    let key = confab_core::ids::unbase64(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let signed = format!(
        "{}.{}.{}",
        received.header("webhook-id"),
        received.header("webhook-timestamp"),
        received.body
    );
    let mac = confab_core::ids::hmac_sha256(&key, signed.as_bytes());
    received.header("webhook-signature") == format!("v1,{}", confab_core::ids::base64(&mac))
}

#[tokio::test]
async fn deliveries_are_signed_retried_in_order_and_given_up() {
    let server = start_with(|c| {
        c.hub.webhooks_private = true;
        c.webhook_timeout = Duration::from_millis(300);
        c.webhook_give_up = Duration::from_secs(4);
    })
    .await;
    // The first request fails (500), the second is never answered (a
    // timeout), the rest succeed.
    let receiver = Receiver::start(|n| match n {
        1 => Some(500),
        2 => None,
        _ => Some(204),
    })
    .await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"retention": "persistent"})).await;
    join(&mut ann, &code).await;
    let mut bob = server.client("Bob").await;

    // The owner only; a URL of http(s) only.
    join(&mut bob, &code).await;
    let hook = |url: &str| json!({"op": "webhook", "room": code, "url": url});
    assert_eq!(bob.error_code(hook(&receiver.url)).await.unwrap(), "forbidden");
    assert_eq!(ann.error_code(hook("ftp://example.org/x")).await.unwrap(), "bad_request");
    let unknown = json!({"op": "webhook", "room": code, "url": receiver.url, "events": ["nope"]});
    assert_eq!(ann.error_code(unknown).await.unwrap(), "bad_request");
    let made = ann.ok(hook(&receiver.url)).await.unwrap();
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let listed = ann.ok(json!({"op": "webhooks", "room": code})).await.unwrap();
    assert_eq!(listed["webhooks"][0]["url"], receiver.url);
    assert!(!listed.to_string().contains(&secret), "a secret is shown once");

    // Events: posts, an edit, a delete, a leave.
    for n in 1..=3 {
        ann.ok(json!({"op": "post", "room": code, "body": format!("build {n}")})).await.unwrap();
    }
    ann.ok(json!({"op": "edit", "room": code, "seq": 2, "body": "build 2, fixed"})).await.unwrap();
    ann.ok(json!({"op": "delete", "room": code, "seq": 3})).await.unwrap();
    bob.ok(json!({"op": "leave", "room": code})).await.unwrap();

    // 6 events, the first tried three times: 8 requests.
    let got = receiver.wait_for(8).await;
    for received in &got {
        assert!(signed(received, &secret), "signature of {received:?}");
        let age = confab_core::unix_ms() / 1000
            - received.header("webhook-timestamp").parse::<u64>().unwrap();
        assert!(age < 60, "a timestamp of now");
    }
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids[0], ids[1], "a retry keeps its id");
    assert_eq!(ids[1], ids[2]);
    let mut distinct = ids[2..].to_vec();
    distinct.dedup();
    assert_eq!(distinct.len(), 6, "one id an event: {ids:?}");
    let kinds: Vec<String> =
        got[2..].iter().map(|r| r.json()["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        kinds,
        [
            "message.created",
            "message.created",
            "message.created",
            "message.updated",
            "message.deleted",
            "member.left"
        ],
        "in order"
    );
    let bodies: Vec<Value> = got[2..].iter().map(Received::json).collect();
    assert_eq!(bodies[0]["data"]["body"], "build 1");
    assert_eq!(bodies[0]["room"], code);
    assert_eq!(bodies[3]["data"]["body"], "build 2, fixed");
    assert_eq!(bodies[4]["data"]["seq"], 3);
    assert_eq!(got[0].header("content-type"), "application/json");

    // Removed: nothing more is delivered.
    let id = made["webhook"]["id"].as_str().unwrap();
    assert_eq!(
        bob.error_code(json!({"op": "unhook", "room": code, "webhook": id})).await.unwrap(),
        "not_member"
    );
    ann.ok(json!({"op": "unhook", "room": code, "webhook": id})).await.unwrap();
    ann.ok(json!({"op": "post", "room": code, "body": "after"})).await.unwrap();

    // A receiver that is never there: given up after --webhook-give-up,
    // counted.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    ann.ok(hook(&gone)).await.unwrap();
    ann.ok(json!({"op": "post", "room": code, "body": "into the void"})).await.unwrap();
    let given_up = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (_, metrics) = server.get("/metrics").await;
            if metrics
                .lines()
                .any(|l| l.starts_with("confab_webhook_deliveries_total{outcome=\"given_up\"}"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(given_up.is_ok(), "the undeliverable event is given up and counted");
    assert_eq!(receiver.got.lock().len(), 8, "nothing after the webhook was removed");
}

#[tokio::test]
async fn a_private_address_is_refused_unless_the_operator_allows_it() {
    let server = start_with(|_| {}).await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"retention": "persistent"})).await;
    join(&mut ann, &code).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
    ] {
        let refused =
            ann.error_code(json!({"op": "webhook", "room": code, "url": url})).await.unwrap();
        assert_eq!(refused, "bad_request", "{url}");
    }
    let fleeting = server.create(&mut ann, json!({})).await;
    join(&mut ann, &fleeting).await;
    let ephemeral = json!({"op": "webhook", "room": fleeting, "url": "https://example.org/x"});
    assert_eq!(ann.error_code(ephemeral).await.unwrap(), "bad_request");
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart_and_a_room_s_end_is_told() {
    const TOKEN: &str = "an-operator-token-long-enough";
    let data = tempfile::tempdir().unwrap();
    let path = data.path().to_owned();
    // The receiver's address, not listening yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let configure = |path: std::path::PathBuf| {
        move |c: &mut confab_server::Config| {
            c.data = path;
            c.hub.webhooks_private = true;
            c.webhook_timeout = Duration::from_millis(300);
            c.admin_token = Some(confab_server::config::Secret::new(TOKEN));
        }
    };
    let server = start_with(configure(path.clone())).await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"retention": "persistent"})).await;
    join(&mut ann, &code).await;
    ann.ok(json!({"op": "webhook", "room": code, "url": url})).await.unwrap();
    for n in 1..=2 {
        ann.ok(json!({"op": "post", "room": code, "body": format!("while down {n}")}))
            .await
            .unwrap();
    }
    drop(ann);
    server.server.stop().await;

    // Back up, with the receiver there now: what was queued is delivered.
    let server = start_with(configure(path)).await;
    let receiver = Receiver::start_on(port, |_| Some(200)).await;
    let got = receiver.wait_for(2).await;
    let bodies: Vec<String> =
        got.iter().map(|r| r.json()["data"]["body"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(bodies[..2], ["while down 1", "while down 2"]);
    // The operator ends the room: its webhook hears of it.
    let mut http = common::http::Http::connect(server.http).await.unwrap();
    let auth = format!("Bearer {TOKEN}");
    let path = format!("/admin/v1/rooms/{code}/close");
    http.send_with("POST", &path, &[("Authorization", &auth)], b"").await.unwrap();
    assert_eq!(http.response().await.unwrap().status, 200);
    let got = receiver.wait_for(3).await;
    let last = got.last().unwrap().json();
    assert_eq!((&last["type"], &last["room"]), (&json!("room.ended"), &json!(code)), "{last}");

    // A board's webhooks are the operator's.
    let admin = |method: &'static str, path: String, body: String| {
        let auth = auth.clone();
        let addr = server.http;
        async move {
            let mut http = common::http::Http::connect(addr).await.unwrap();
            http.send_with(method, &path, &[("Authorization", &auth)], body.as_bytes())
                .await
                .unwrap();
            http.response().await.unwrap()
        }
    };
    let body = json!({"url": url, "events": ["message.created", "message.reported"]}).to_string();
    let made = admin("POST", "/admin/v1/rooms/main/webhooks".into(), body).await;
    assert_eq!(made.status, 201);
    let id = made.json()["webhook"]["id"].as_str().unwrap().to_owned();
    let listed = admin("GET", "/admin/v1/rooms/main/webhooks".into(), String::new()).await;
    assert_eq!(listed.json()["webhooks"][0]["id"], id);
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    ann.ok(json!({"op": "post", "room": "main", "body": "to the board"})).await.unwrap();
    let got = receiver.wait_for(4).await;
    let posted = got.last().unwrap().json();
    assert_eq!(posted["data"]["body"], "to the board");
    // A report: which message, never who reported it nor why.
    let seq = posted["data"]["seq"].clone();
    let report = json!({"op": "report", "room": "main", "seq": seq, "reason": "mine to know"});
    ann.ok(report).await.unwrap();
    let got = receiver.wait_for(5).await;
    let reported = got.last().unwrap().json();
    assert_eq!(
        (&reported["type"], &reported["data"]),
        (&json!("message.reported"), &json!({"seq": seq}))
    );
    // The closed room's webhook went with its last event.
    let gone = admin("GET", format!("/admin/v1/rooms/{code}/webhooks"), String::new()).await;
    assert_eq!(gone.json()["webhooks"], json!([]), "{:?}", String::from_utf8_lossy(&gone.body));
    let removed =
        admin("DELETE", format!("/admin/v1/rooms/main/webhooks/{id}"), String::new()).await;
    assert_eq!(removed.status, 200);
    let again = admin("DELETE", format!("/admin/v1/rooms/main/webhooks/{id}"), String::new()).await;
    assert_eq!(again.status, 404);
}
