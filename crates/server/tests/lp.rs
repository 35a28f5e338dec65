//! The long-polling transport: its routes, a room shared with WebSocket
//! users, redelivery after a cut-off poll, expiry, bad input, overflow and
//! shutdown. Plain HTTP/1.1 over TCP, against the real server.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::{Http, Response};
use common::{TestServer, events, join, post, start_with};
use confab_server::Config;
use serde_json::{Value, json};

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

/// A server whose polls wait 2 s rather than 25 s, so a test that expects
/// nothing does not wait long.
async fn start_lp(configure: impl FnOnce(&mut Config)) -> TestServer {
    start_with(|c| {
        c.poll_wait = Duration::from_secs(2);
        configure(c);
    })
    .await
}

/// A long-poll client speaking the documented acknowledgement scheme.
struct Lp {
    http: Http,
    conn: String,
    /// The number of the last frame received; the next poll acknowledges it.
    ack: u64,
    next_id: i64,
    /// Frames received while waiting for something else.
    queued: VecDeque<Value>,
}

impl Lp {
    async fn open(addr: SocketAddr) -> Lp {
        let mut http = Http::connect(addr).await.unwrap();
        let opened = http.request("POST", "/lp", b"").await;
        assert_eq!(opened.status, 200, "{opened:?}");
        let conn = opened.json()["conn"].as_str().unwrap().to_owned();
        Lp { http, conn, ack: 0, next_id: 1, queued: VecDeque::new() }
    }

    async fn hello(addr: SocketAddr, name: &str) -> (Lp, Value) {
        let mut lp = Lp::open(addr).await;
        let reply = lp.ok(json!({"op": "hello", "name": name})).await;
        (lp, reply)
    }

    fn path(&self) -> String {
        format!("/lp/{}", self.conn)
    }

    fn poll_path(&self) -> String {
        format!("/lp/{}?ack={}", self.conn, self.ack)
    }

    async fn send(&mut self, body: &[u8]) -> Response {
        let path = self.path();
        self.http.request("POST", &path, body).await
    }

    /// One poll acknowledging everything received so far; returns the
    /// frames not received before.
    async fn poll(&mut self) -> Vec<Value> {
        let path = self.poll_path();
        let response = self.http.request("GET", &path, b"").await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.header("content-type"), Some("application/json"));
        let (last, frames) = numbered(&response);
        let first = last + 1 - frames.len() as u64;
        let fresh = (first..).zip(frames).filter(|(n, _)| *n > self.ack).map(|(_, f)| f).collect();
        self.ack = self.ack.max(last);
        fresh
    }

    async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(frame) = self.queued.pop_front() {
                    return frame;
                }
                let frames = self.poll().await;
                self.queued.extend(frames);
            }
        })
        .await
        .expect("a frame within the wait")
    }

    async fn event(&mut self, ev: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["ev"] == ev {
                return frame;
            }
        }
    }

    async fn request(&mut self, mut op: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        op["id"] = json!(id);
        let sent = self.send(json!([op]).to_string().as_bytes()).await;
        assert_eq!(sent.status, 204, "{sent:?}");
        tokio::time::timeout(WAIT, async {
            let mut skipped = Vec::new();
            loop {
                let frame = self.next().await;
                if frame["re"] == id {
                    // What came before the reply stays first in line.
                    for frame in skipped.into_iter().rev() {
                        self.queued.push_front(frame);
                    }
                    return frame;
                }
                skipped.push(frame);
            }
        })
        .await
        .expect("a reply within the wait")
    }

    async fn ok(&mut self, op: Value) -> Value {
        let reply = self.request(op.clone()).await;
        assert_eq!(reply["ok"], true, "{op} failed: {reply}");
        reply
    }
}

/// A poll's frames and the number of its last frame.
fn numbered(response: &Response) -> (u64, Vec<Value>) {
    let last = response.header("confab-last").expect("confab-last").parse().unwrap();
    let Value::Array(frames) = response.json() else { panic!("not an array: {response:?}") };
    (last, frames)
}

/// Polls `condition` until it holds; there is no event to wait for.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn body_of(frame: &Value) -> &str {
    frame["message"]["body"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_routes_open_apply_in_order_poll_and_close() {
    let server = start_lp(|c| c.poll_wait = Duration::from_millis(300)).await;
    let mut ann = Lp::open(server.http).await;
    let other = Lp::open(server.http).await;
    assert!(ann.conn.len() >= 22 && ann.conn.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(ann.conn, other.conn);
    assert_eq!(server.server.hub().connections(), 2);

    // One POST, several frames, applied in order; the replies come in one poll.
    let ops = json!([
        {"op": "hello", "id": 1, "name": "Ann"},
        {"op": "join", "id": 2, "room": "main"},
        {"op": "ping", "id": 3},
    ]);
    let sent = ann.send(ops.to_string().as_bytes()).await;
    assert_eq!((sent.status, sent.body.len()), (204, 0));
    let mut frames = Vec::new();
    while frames.len() < 3 {
        frames.extend(ann.poll().await);
    }
    let order: Vec<_> = frames.iter().map(|f| (f["re"].as_i64(), f["ok"].as_bool())).collect();
    assert_eq!(order, [(Some(1), Some(true)), (Some(2), Some(true)), (Some(3), Some(true))]);
    assert_eq!(ann.ack, 3, "frames are numbered from 1");

    // Nothing more: the poll waits out the poll wait and answers [].
    let started = Instant::now();
    let path = ann.poll_path();
    let empty = ann.http.request("GET", &path, b"").await;
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    assert_eq!(numbered(&empty), (3, vec![]));
    assert_eq!(empty.header("cache-control"), Some("no-store"));

    let path = ann.path();
    assert_eq!(ann.http.request("DELETE", &path, b"").await.status, 204);
    assert_eq!(server.server.hub().connections(), 1, "the hub connection is gone");
    for (method, body) in [("GET", ""), ("POST", "[]"), ("DELETE", "")] {
        let gone = ann.http.request(method, &path, body.as_bytes()).await;
        assert_eq!(gone.status, 404, "{method} {gone:?}");
        assert_eq!(gone.json()["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn only_the_page_s_own_origin_may_open_a_connection() {
    let server = start_lp(|_| {}).await;
    let mut http = Http::connect(server.http).await.unwrap();
    let own = format!("http://{}", server.http);
    for (origin, status) in [("https://evil.example", 403), (own.as_str(), 200)] {
        http.send_with("POST", "/lp", &[("Origin", origin)], b"").await.unwrap();
        assert_eq!(http.response().await.unwrap().status, status, "{origin}");
    }
    assert_eq!(server.server.hub().connections(), 1);
}

#[tokio::test]
async fn a_long_poll_user_and_a_websocket_user_share_a_room() {
    let server = start_lp(|_| {}).await;
    let mut bob = server.client("Bob").await;
    let code = server.create(&mut bob, json!({"title": "Mixed"})).await;
    join(&mut bob, &code).await;
    let (mut ann, hello) = Lp::hello(server.http, "Ann").await;
    assert!(hello["session"].as_str().unwrap().len() >= 22);
    let joined = ann.ok(json!({"op": "join", "room": code})).await;
    let names: Vec<_> = joined["members"].as_array().unwrap().iter().map(|m| &m["name"]).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(bob.event("join").await.unwrap()["user"]["name"], "Ann");

    // Ann posts over long-polling; Bob gets it over his WebSocket.
    let sent = ann.ok(json!({"op": "post", "room": code, "body": "hi from lp"})).await;
    assert_eq!(sent["message"]["seq"], 1);
    let got = bob.event("message").await.unwrap();
    assert_eq!(got["message"], sent["message"]);

    // Bob posts while Ann's poll is parked; the poll answers with it.
    let waiting = tokio::spawn(async move {
        let frame = ann.event("message").await;
        (ann, frame)
    });
    let message = post(&mut bob, &code, "hi from ws").await;
    let (mut ann, frame) = waiting.await.unwrap();
    assert_eq!(frame["message"], message);

    ann.ok(json!({"op": "typing", "room": code, "active": true})).await;
    let typing = bob.event("typing").await.unwrap();
    assert_eq!(
        (typing["user"]["name"].as_str(), typing["active"].as_bool()),
        (Some("Ann"), Some(true))
    );
    bob.ok(json!({"op": "typing", "room": code, "active": true})).await.unwrap();
    assert_eq!(ann.event("typing").await["user"]["name"], "Bob");

    // Replies, edits and reactions cross the transports both ways.
    let reply = json!({"op": "post", "room": code, "body": "same here", "reply": 1});
    let answer = ann.ok(reply).await["message"].clone();
    assert_eq!(answer["reply"]["body"], "hi from lp");
    assert_eq!(bob.event("message").await.unwrap()["message"]["reply"]["seq"], 1);
    let seq = answer["seq"].as_u64().unwrap();
    ann.ok(json!({"op": "edit", "room": code, "seq": seq, "body": "same here!"})).await;
    let edited = bob.event("edited").await.unwrap();
    assert_eq!((&edited["seq"], &edited["message"]["body"]), (&json!(seq), &json!("same here!")));
    assert_eq!(ann.event("edited").await["rev"], edited["rev"]);
    bob.ok(json!({"op": "react", "room": code, "seq": seq, "emoji": "❤️"})).await.unwrap();
    let reacted = ann.event("reacted").await;
    assert_eq!((&reacted["emoji"], &reacted["user"]["name"]), (&json!("❤️"), &json!("Bob")));

    ann.ok(json!({"op": "leave", "room": code})).await;
    let leave = bob.event("leave").await.unwrap();
    assert_eq!(
        (leave["user"]["name"].as_str(), leave["reason"].as_str()),
        (Some("Ann"), Some("left"))
    );
}

#[tokio::test]
async fn a_poll_cut_off_mid_response_is_answered_again() {
    let server = start_lp(|_| {}).await;
    let (mut ann, _) = Lp::hello(server.http, "Ann").await;
    ann.ok(json!({"op": "join", "room": "main"})).await;
    let mut bob = server.client("Bob").await;
    join(&mut bob, "main").await;
    post(&mut bob, "main", "one").await;

    // A response read in full but never acknowledged (the client lost it
    // afterwards): asked again with the same ack, the same frames come
    // back. Repeated until the message is among them.
    let path = ann.poll_path();
    let (last, answered) = loop {
        let mut lost = Http::connect(server.http).await.unwrap();
        let (last, frames) = numbered(&lost.request("GET", &path, b"").await);
        if frames.iter().any(|f| body_of(f) == "one") {
            break (last, frames);
        }
    };

    // A response cut off after its first bytes.
    let mut cut = Http::connect(server.http).await.unwrap();
    cut.send("GET", &path, b"").await.unwrap();
    assert!(cut.read_some().await.unwrap() > 0, "the response was on its way");
    drop(cut);

    let again = ann.http.request("GET", &path, b"").await;
    let (again_last, frames) = numbered(&again);
    assert!(again_last >= last);
    assert_eq!(frames[..answered.len()], answered[..], "the same frames with the same numbers");
    ann.ack = again_last;

    // A poll dropped while parked takes nothing with it.
    let mut dropped = Http::connect(server.http).await.unwrap();
    dropped.send("GET", &ann.poll_path(), b"").await.unwrap();
    drop(dropped);
    post(&mut bob, "main", "two").await;
    assert_eq!(body_of(&ann.event("message").await), "two");

    // Each message reached Ann once: acknowledged frames do not come back.
    post(&mut bob, "main", "three").await;
    assert_eq!(body_of(&ann.event("message").await), "three");
    assert!(ann.queued.is_empty());
    // The server itself sends nothing again once it is acknowledged (the
    // client above drops repeats, so ask it raw): with the latest ack, a
    // poll answers [] when its wait ends.
    let path = ann.poll_path();
    let (_, frames) = numbered(&ann.http.request("GET", &path, b"").await);
    assert_eq!(frames, Vec::<Value>::new(), "acknowledged frames came back");
}

#[tokio::test]
async fn a_poll_without_ack_acknowledges_what_was_answered() {
    let server = start_lp(|c| c.poll_wait = Duration::from_millis(200)).await;
    let mut ann = Lp::open(server.http).await;
    assert_eq!(ann.send(br#"[{"op":"hello","id":1,"name":"Ann"}]"#).await.status, 204);
    let path = ann.path();
    let (last, frames) = numbered(&ann.http.request("GET", &path, b"").await);
    assert_eq!((last, frames.len()), (1, 1));
    let (last, frames) = numbered(&ann.http.request("GET", &path, b"").await);
    assert_eq!((last, frames), (1, vec![]));
}

#[tokio::test]
async fn a_connection_not_polled_is_closed_and_its_seat_held_for_grace() {
    let server = start_lp(|c| {
        c.poll_idle = Duration::from_millis(300);
        c.poll_wait = Duration::from_secs(1);
    })
    .await;
    let mut bob = server.client("Bob").await;
    let code = server.create(&mut bob, json!({})).await;
    join(&mut bob, &code).await;
    let (mut ann, hello) = Lp::hello(server.http, "Ann").await;
    ann.ok(json!({"op": "join", "room": code})).await;
    bob.event("join").await.unwrap();

    // A parked poll counts as polling, however long it waits.
    assert_eq!(ann.poll().await, Vec::<Value>::new());
    ann.ok(json!({"op": "ping"})).await;

    // Then Ann stops polling.
    eventually("the connection closes", || server.server.hub().connections() == 1).await;
    let path = ann.poll_path();
    assert_eq!(ann.http.request("GET", &path, b"").await.status, 404);

    // Her seat was held: back within grace, nobody saw her go or come.
    let mut again = Lp::open(server.http).await;
    let session = hello["session"].as_str().unwrap();
    again.ok(json!({"op": "hello", "name": "Ann", "session": session})).await;
    again.ok(json!({"op": "join", "room": code})).await;
    post(&mut bob, &code, "welcome back").await;
    assert_eq!(body_of(&again.event("message").await), "welcome back");
    let seen = bob.drain().await.unwrap();
    assert!(!events(&seen).iter().any(|e| e == "join" || e == "leave"), "{seen:?}");
}

#[tokio::test]
async fn an_expired_connection_leaves_when_its_grace_ends() {
    let server = start_lp(|c| {
        c.poll_idle = Duration::from_millis(200);
        c.hub.grace = Duration::from_millis(300);
    })
    .await;
    let mut bob = server.client("Bob").await;
    let code = server.create(&mut bob, json!({})).await;
    join(&mut bob, &code).await;
    let (mut ann, _) = Lp::hello(server.http, "Ann").await;
    ann.ok(json!({"op": "join", "room": code})).await;
    // Ann's last poll was answered by now; from here she polls no more.
    // The leave needs both the idle time (200 ms) and the grace (300 ms);
    // either alone is under the 450 ms asserted below.
    let last_polled = Instant::now();
    bob.event("join").await.unwrap();
    let leave = bob.event("leave").await.unwrap();
    assert_eq!(
        (leave["user"]["name"].as_str(), leave["reason"].as_str()),
        (Some("Ann"), Some("disconnected"))
    );
    assert!(
        last_polled.elapsed() >= Duration::from_millis(450),
        "the leave came after {:?}, before idle time and grace had both passed",
        last_polled.elapsed()
    );
    let path = ann.poll_path();
    assert_eq!(ann.http.request("GET", &path, b"").await.status, 404);
}

#[tokio::test]
async fn bad_input_is_refused_and_disturbs_nothing() {
    let server = start_lp(|c| c.hub.limits.frame_bytes = 1024).await;
    let mut bob = server.client("Bob").await;
    let code = server.create(&mut bob, json!({})).await;
    join(&mut bob, &code).await;
    let (mut ann, _) = Lp::hello(server.http, "Ann").await;
    ann.ok(json!({"op": "join", "room": code})).await;
    bob.event("join").await.unwrap();

    for body in [&b"not json"[..], br#"{"op":"ping","id":9}"#, br#"[{"op":"ping","id":9}"#, b""] {
        let refused = ann.send(body).await;
        assert_eq!(refused.status, 400, "{body:?}: {refused:?}");
        assert_eq!(refused.json()["error"]["code"], "bad_request");
    }

    // Over the frame limit: 413, and none of the posts in it is applied.
    let posts: Vec<Value> = (0..4)
        .map(|i| json!({"op": "post", "id": 100 + i, "room": code, "body": "x".repeat(300)}))
        .collect();
    let body = Value::Array(posts).to_string();
    assert!(body.len() > 1024);
    let refused = ann.send(body.as_bytes()).await;
    assert_eq!(refused.status, 413, "{refused:?}");
    assert_eq!(refused.json()["error"]["code"], "too_large");
    // The server does not read the rest of a refused body, so it closes
    // that HTTP connection; the long-poll connection lives on.
    ann.http = Http::connect(server.http).await.unwrap();

    // Exactly at the limit is accepted.
    let template = json!([{"op": "post", "room": code, "body": ""}]).to_string();
    let exact = json!([{"op": "post", "room": code, "body": "y".repeat(1024 - template.len())}]);
    assert_eq!(exact.to_string().len(), 1024);
    assert_eq!(ann.send(exact.to_string().as_bytes()).await.status, 204);
    let first = bob.event("message").await.unwrap();
    assert_eq!(first["message"]["seq"], 1, "nothing of the refused body was posted");

    // A frame that is not an op is answered like a bad WebSocket frame.
    assert_eq!(ann.send(b"[1]").await.status, 204);
    assert_eq!(ann.event("error").await["error"]["code"], "bad_request");

    // Polls with a bad acknowledgement.
    let path = ann.path();
    for query in ["?ack=999", "?ack=minus"] {
        let refused = ann.http.request("GET", &format!("{path}{query}"), b"").await;
        assert_eq!(refused.status, 400, "{query}: {refused:?}");
    }

    // Unknown connections.
    for (method, body) in [("GET", ""), ("POST", "[]"), ("DELETE", "")] {
        let unknown = ann.http.request(method, "/lp/nosuchconnection", body.as_bytes()).await;
        assert_eq!(unknown.status, 404, "{method}");
    }

    // Ann's connection and the room are as they were.
    let sent = ann.ok(json!({"op": "post", "room": code, "body": "still here"})).await;
    assert_eq!(sent["message"]["seq"], 2);
    assert_eq!(bob.event("message").await.unwrap()["message"]["body"], "still here");
    let members = bob.ok(json!({"op": "members", "room": code})).await.unwrap();
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    let seen = bob.drain().await.unwrap();
    assert!(!events(&seen).contains(&"leave".to_owned()), "{seen:?}");
}

#[tokio::test]
async fn a_client_that_lets_frames_pile_up_is_closed() {
    let server = start_lp(|c| c.outbox = 8).await;
    let mut bob = server.client("Bob").await;
    let code = server.create(&mut bob, json!({})).await;
    join(&mut bob, &code).await;
    let (mut ann, _) = Lp::hello(server.http, "Ann").await;
    ann.ok(json!({"op": "join", "room": code})).await;
    bob.event("join").await.unwrap();
    // Ann never polls again; Bob's room goes on.
    for i in 0..20 {
        assert_eq!(post(&mut bob, &code, &format!("m{i}")).await["seq"], i + 1);
    }
    eventually("the connection closes", || server.server.hub().connections() == 1).await;
    let path = ann.poll_path();
    assert_eq!(ann.http.request("GET", &path, b"").await.status, 404);
}

#[tokio::test]
async fn a_connection_that_never_says_hello_is_closed() {
    let server = start_lp(|c| c.edge.hello_timeout = Duration::from_millis(200)).await;
    let mut silent = Lp::open(server.http).await;
    eventually("the connection closes", || server.server.hub().connections() == 0).await;
    let path = silent.poll_path();
    assert_eq!(silent.http.request("GET", &path, b"").await.status, 404);
}

#[tokio::test]
async fn a_parked_poll_is_answered_the_moment_a_message_arrives() {
    let server = start_lp(|c| c.poll_wait = Duration::from_secs(25)).await;
    let (mut ann, _) = Lp::hello(server.http, "Ann").await;
    ann.ok(json!({"op": "join", "room": "main"})).await;
    let mut bob = server.client("Bob").await;
    join(&mut bob, "main").await;
    // Bob's join reaches Ann first; take it, so the next poll has nothing.
    ann.event("join").await;

    // As above: of two polls, the older answers [] at once; the other is
    // then parked for up to 25 s.
    let path = ann.poll_path();
    let mut a = Http::connect(server.http).await.unwrap();
    let mut b = Http::connect(server.http).await.unwrap();
    a.send("GET", &path, b"").await.unwrap();
    b.send("GET", &path, b"").await.unwrap();
    let which = tokio::time::timeout(WAIT, async {
        tokio::select! {
            r = a.response() => { assert_eq!(numbered(&r.unwrap()).1, Vec::<Value>::new()); 'a' }
            r = b.response() => { assert_eq!(numbered(&r.unwrap()).1, Vec::<Value>::new()); 'b' }
        }
    })
    .await
    .expect("the older poll answers at once");
    let mut parked = if which == 'a' { b } else { a };

    let posted = Instant::now();
    post(&mut bob, "main", "wake up").await;
    let answered = tokio::time::timeout(Duration::from_secs(5), parked.response())
        .await
        .expect("the parked poll answers long before its 25 s")
        .unwrap();
    let (_, frames) = numbered(&answered);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["message"]["body"], "wake up");
    assert!(posted.elapsed() < Duration::from_secs(1), "answered after {:?}", posted.elapsed());
}

#[tokio::test]
async fn a_newer_poll_releases_the_parked_one_and_shutdown_answers_it() {
    let server = start_lp(|c| c.poll_wait = Duration::from_secs(25)).await;
    let (mut ann, _) = Lp::hello(server.http, "Ann").await;
    ann.ok(json!({"op": "join", "room": "main"})).await;

    // Two polls at once: the older answers [] at once, so once one has
    // answered, the other is parked.
    let path = ann.poll_path();
    let mut a = Http::connect(server.http).await.unwrap();
    let mut b = Http::connect(server.http).await.unwrap();
    a.send("GET", &path, b"").await.unwrap();
    b.send("GET", &path, b"").await.unwrap();
    let (released, which) = tokio::time::timeout(WAIT, async {
        tokio::select! {
            r = a.response() => (r.unwrap(), 'a'),
            r = b.response() => (r.unwrap(), 'b'),
        }
    })
    .await
    .expect("the older poll answers at once");
    assert_eq!(numbered(&released).1, Vec::<Value>::new());
    let mut parked = if which == 'a' { b } else { a };

    // Shutdown answers the parked poll with the `closed` event, promptly.
    let stopped = tokio::time::timeout(Duration::from_secs(5), server.server.stop());
    let answered = tokio::time::timeout(Duration::from_secs(5), parked.response());
    let (stopped, answered) = tokio::join!(stopped, answered);
    stopped.expect("the server stops within 5 s");
    let (_, frames) = numbered(&answered.expect("the parked poll answers").unwrap());
    let closed: Vec<_> = frames.iter().filter(|f| f["ev"] == "closed").collect();
    assert_eq!(closed.len(), 1, "{frames:?}");
    assert_eq!(
        (closed[0]["room"].as_str(), closed[0]["reason"].as_str()),
        (Some("main"), Some("shutdown"))
    );
}

/// The memory of a release server holding 10,000 idle long-poll
/// connections, for `docs/performance.md`. The server runs as its own
/// process so that only its memory is counted:
///
/// ```sh
/// cargo build --release -p confab
/// cargo test --release -p confab-server --test lp -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a test"]
async fn measure_memory_of_ten_thousand_idle_long_poll_connections() {
    use tokio::io::AsyncBufReadExt;

    const CONNECTIONS: usize = 10_000;
    const WORKERS: usize = 64;
    let binary = std::env::var("CONFAB_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/confab").into()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(&binary)
        .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--poll-wait", "10m"])
        .args(["--poll-idle", "10m", "--hello-timeout", "10m", "--data"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    let pid = child.id().unwrap();
    let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = log.next_line().await.unwrap().expect("the server logs its address");
        if let Some((_, addr)) = line.split_once("http listening on ") {
            break addr.trim().parse().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    let status = |field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // User and system CPU time in clock ticks (100 a second).
    let cpu = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let report = |what: &str, before: u64, after: u64| {
        println!(
            "{what}: RSS {:.1} MiB -> {:.1} MiB, {:.2} KiB per connection",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after - before) as f64 / CONNECTIONS as f64
        );
    };

    let start = status("VmRSS:");
    println!("server started: RSS {:.1} MiB", start as f64 / 1024.0);
    let opened = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            tokio::spawn(async move {
                let mut http = Http::connect(addr).await.unwrap();
                let mut tokens = Vec::new();
                for _ in (w..CONNECTIONS).step_by(WORKERS) {
                    let opened = http.request("POST", "/lp", b"").await;
                    tokens.push(opened.json()["conn"].as_str().unwrap().to_owned());
                }
                tokens
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for worker in workers {
        tokens.extend(worker.await.unwrap());
    }
    let bare = status("VmRSS:");
    report(
        &format!("{CONNECTIONS} connections opened in {:.1}s", opened.elapsed().as_secs_f64()),
        start,
        bare,
    );

    let chunks: Vec<Vec<String>> =
        tokens.chunks(CONNECTIONS / WORKERS + 1).map(<[String]>::to_vec).collect();
    let workers: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            tokio::spawn(async move {
                let mut http = Http::connect(addr).await.unwrap();
                for (i, token) in chunk.iter().enumerate() {
                    let hello = json!([{"op": "hello", "id": 1, "name": format!("idle{i}")}]);
                    let sent = http
                        .request("POST", &format!("/lp/{token}"), hello.to_string().as_bytes())
                        .await;
                    assert_eq!(sent.status, 204);
                    let reply = http.request("GET", &format!("/lp/{token}?ack=0"), b"").await;
                    assert_eq!(numbered(&reply).1[0]["ok"], true);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let greeted = status("VmRSS:");
    report("after hello on each", start, greeted);

    // One parked poll per connection, each on its own TCP connection, as
    // 10,000 browser tabs would hold them.
    let mut parked = Vec::new();
    for token in &tokens {
        let mut http = Http::connect(addr).await.unwrap();
        http.send("GET", &format!("/lp/{token}?ack=1"), b"").await.unwrap();
        parked.push(http);
    }
    // Nothing tells when the last poll has parked; give the server a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = status("VmRSS:");
    report("with a parked poll on each", start, waiting);
    let idle_from = cpu();
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!(
        "CPU time over 10 s with {CONNECTIONS} parked polls: {} ms; peak RSS {:.1} MiB",
        (cpu() - idle_from) * 10,
        status("VmHWM:") as f64 / 1024.0
    );
    drop(parked);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn over_long_polling_only_join_tells_a_missing_room_from_a_private_one() {
    let server = start_lp(|c| {
        c.hub.rates.failed_join = Some(confab_core::Rate::new(1, Duration::from_secs(3600), 1));
    })
    .await;
    let mut ann = server.client("Ann").await;
    let live = server.create(&mut ann, json!({})).await;
    join(&mut ann, &live).await;
    let missing = common::missing_like(&live);
    let (mut mallory, _) = Lp::hello(server.http, "Mallory").await;
    for op in ["leave", "post", "typing", "history", "get", "members"] {
        let ask =
            |code: &str| json!({"op": op, "room": code, "body": "x", "active": true, "seq": 1});
        let a = mallory.request(ask(&live)).await;
        let b = mallory.request(ask(&missing)).await;
        assert_eq!(a["error"]["code"], "not_member", "{op}: {a}");
        let a = a["error"].to_string().replace(&live, "CODE");
        let b = b["error"].to_string().replace(&missing, "CODE");
        assert_eq!(a, b, "{op}");
    }
    // Only join tells, inside its budget (a burst of one here): the second
    // guess blocks every join.
    let joined = mallory.request(json!({"op": "join", "room": missing})).await;
    assert_eq!(joined["error"]["code"], "not_found", "{joined}");
    let joined = mallory.request(json!({"op": "join", "room": "ZZZZZ9"})).await;
    assert_eq!(joined["error"]["code"], "not_found", "{joined}");
    let joined = mallory.request(json!({"op": "join", "room": live})).await;
    assert_eq!(joined["error"]["code"], "rate_limited", "{joined}");
}

#[tokio::test]
async fn a_message_is_reported_over_long_polling() {
    let server = start_lp(|c| c.audit_log = Some(c.data.join("audit.jsonl"))).await;
    let audit = server.dir.path().join("audit.jsonl");
    let (mut ann, _) = Lp::hello(server.http, "Ann").await;
    let mut bob = server.client("Bob").await;
    ann.ok(json!({"op": "join", "room": "main"})).await;
    join(&mut bob, "main").await;
    post(&mut bob, "main", "buy now").await;
    ann.ok(json!({"op": "report", "room": "main", "seq": 1, "reason": "spam"})).await;
    let missing = ann.request(json!({"op": "report", "room": "main", "seq": 9})).await;
    assert_eq!(missing["error"]["code"], "not_found", "{missing}");
    eventually("the report in the audit log", || {
        std::fs::read_to_string(&audit).is_ok_and(|text| text.lines().count() == 1)
    })
    .await;
    let entry: Value =
        serde_json::from_str(std::fs::read_to_string(&audit).unwrap().trim()).unwrap();
    assert_eq!(
        (&entry["message"]["body"], &entry["reporter"]["name"], &entry["reason"]),
        (&json!("buy now"), &json!("Ann"), &json!("spam"))
    );
}

#[tokio::test]
async fn a_room_owner_names_a_moderator_over_long_polling() {
    let server = start_lp(|_| {}).await;
    let (mut ann, _) = Lp::hello(server.http, "Ann").await;
    let created = ann.ok(json!({"op": "create"})).await;
    let code = created["room"]["code"].as_str().unwrap().to_owned();
    let joined = ann.ok(json!({"op": "join", "room": code})).await;
    assert_eq!(
        joined["roles"].as_object().unwrap().values().collect::<Vec<_>>(),
        [&json!("owner")]
    );
    let mut bob = server.client("Bob").await;
    join(&mut bob, &code).await;
    ann.ok(json!({"op": "role", "room": code, "name": "Bob", "role": "moderator"})).await;
    let event = ann.event("role").await;
    assert_eq!((&event["user"]["name"], &event["role"]), (&json!("Bob"), &json!("moderator")));
    assert_eq!(bob.event("role").await.unwrap()["role"], "moderator");
    let refused = json!({"op": "role", "room": code, "name": "Ann", "role": "member"});
    let reply = bob.request(refused).await.unwrap();
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
}

#[tokio::test]
async fn a_moderator_bans_lists_and_lifts_over_long_polling() {
    let server = start_lp(|_| {}).await;
    let (mut ann, _) = Lp::hello(server.http, "Ann").await;
    let created = ann.ok(json!({"op": "create"})).await;
    let code = created["room"]["code"].as_str().unwrap().to_owned();
    ann.ok(json!({"op": "join", "room": code})).await;
    let (mut troll, hello) = Lp::hello(server.http, "Troll").await;
    let troll_id = hello["user"]["id"].as_str().unwrap().to_owned();
    troll.ok(json!({"op": "join", "room": code})).await;
    ann.ok(json!({"op": "ban", "room": code, "name": "Troll", "minutes": 60})).await;
    assert_eq!(troll.event("closed").await["reason"], "banned");
    let refused = troll.request(json!({"op": "join", "room": code})).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    assert!(refused["error"]["retry_after_ms"].as_u64().unwrap() > 59 * 60 * 1000, "{refused}");
    let listed = ann.ok(json!({"op": "bans", "room": code})).await;
    assert_eq!(listed["bans"][0]["user"]["id"], json!(troll_id), "{listed}");
    ann.ok(json!({"op": "unban", "room": code, "user": troll_id})).await;
    troll.ok(json!({"op": "join", "room": code})).await;
}
