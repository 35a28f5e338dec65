//! One behavioural suite, two room backends: every scenario runs against
//! the local backend, and against the Redis backend (two nodes sharing one
//! store, like two servers sharing PostgreSQL) when Redis is there, so
//! that `room.rs` and `room.lua` cannot drift apart; and once more with
//! three nodes over three Redis instances (shards) the test starts.
//!
//! The scenarios speak the protocol to `Conn` (JSON in, JSON out of the
//! connection's outbox), without sockets; the edges have their own tests.
//! Every wait is for a frame, bounded by a timeout; nothing sleeps.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use confab_cluster::{ClusterConfig, ClusterRooms};
use confab_core::{
    Conn, Hub, HubConfig, LocalRooms, MemoryStore, Outbox, OutboxReceiver, RoomBackend, Services,
};
use serde_json::{Value, json};

/// The reconnect grace every scenario runs with.
const GRACE: Duration = Duration::from_millis(400);

fn config(node: &str) -> HubConfig {
    HubConfig { node: node.to_owned(), grace: GRACE, ..HubConfig::default() }
}

/// Two nodes of one server: the same hub twice for the local backend, two
/// cluster nodes for the Redis one.
struct Nodes<B: RoomBackend> {
    a: Hub<B>,
    b: Hub<B>,
    /// Every node (`a` and `b` among them).
    all: Vec<Hub<B>>,
    /// Redis instances the scenario started, stopped when it ends.
    _redis: Vec<RedisServer>,
}

async fn local() -> Nodes<LocalRooms> {
    let hub = Hub::open(config("n1"), Arc::new(MemoryStore::new())).await.unwrap();
    Nodes { a: hub.clone(), b: hub.clone(), all: vec![hub], _redis: Vec::new() }
}

async fn redis() -> Nodes<ClusterRooms> {
    let url = std::env::var("CONFAB_TEST_REDIS")
        .expect("CONFAB_TEST_REDIS is not set: this test needs Redis (see README.md)");
    cluster(&url, 2, Vec::new()).await
}

/// Three nodes over three Redis instances started for the scenario.
async fn sharded() -> Nodes<ClusterRooms> {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    cluster(&urls.join(","), 3, servers).await
}

/// `nodes` cluster nodes on the Redis shards `url`, sharing one store.
async fn cluster(url: &str, nodes: usize, redis: Vec<RedisServer>) -> Nodes<ClusterRooms> {
    cluster_with(url, nodes, redis, ClusterConfig::new(url).lease).await
}

/// The same, with a lease of `lease`.
async fn cluster_with(
    url: &str,
    nodes: usize,
    redis: Vec<RedisServer>,
    lease: Duration,
) -> Nodes<ClusterRooms> {
    // A namespace of its own: scenarios run side by side on one Redis.
    let namespace = format!("conf{:08x}", rand_u32());
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let mut all = Vec::new();
    for node in 1..=nodes {
        let services = Services::open(config(&format!("n{node}")), store.clone()).await.unwrap();
        let cluster =
            ClusterConfig { namespace: namespace.clone(), lease, ..ClusterConfig::new(url) };
        let rooms = ClusterRooms::start(cluster, services.clone()).await.unwrap();
        all.push(Hub::new(services, rooms));
    }
    Nodes { a: all[0].clone(), b: all[1 % all.len()].clone(), all, _redis: redis }
}

/// A `redis-server` of the test's own, on a free port, stopped on drop.
struct RedisServer {
    child: std::process::Child,
    url: String,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server cannot be started: this test needs it (see README.md)");
        let server = RedisServer { child, url: format!("redis://127.0.0.1:{port}") };
        // Ready once it accepts a connection (bounded: 10 s).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Distinct in this process (scenarios start side by side, within the
/// clock's resolution of each other) and unlikely to repeat across runs.
fn rand_u32() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (nanos.subsec_nanos() ^ std::process::id().rotate_left(16))
        .wrapping_add(n.wrapping_mul(0x9E37_79B9))
}

/// A client: a connection and what came out of it.
struct Client<B: RoomBackend> {
    conn: Conn<B>,
    rx: OutboxReceiver,
    id: i64,
    /// Events that arrived while a reply was awaited, in order.
    events: VecDeque<Value>,
    session: String,
    user: String,
}

impl<B: RoomBackend> Client<B> {
    /// A connection that said `hello` as `name` (with `session`, `resume`).
    async fn hello(
        hub: &Hub<B>,
        name: &str,
        session: Option<&str>,
        resume: Value,
    ) -> (Self, Value) {
        Client::hello_from(hub, name, session, resume, None).await
    }

    /// The same, from the client address `peer`.
    async fn hello_from(
        hub: &Hub<B>,
        name: &str,
        session: Option<&str>,
        resume: Value,
        peer: Option<std::net::IpAddr>,
    ) -> (Self, Value) {
        let (outbox, rx) = Outbox::new(4096);
        let conn = Conn::open(hub, outbox, peer);
        let mut client = Client {
            conn,
            rx,
            id: 0,
            events: VecDeque::new(),
            session: String::new(),
            user: String::new(),
        };
        let mut hello = json!({"op": "hello", "name": name, "resume": resume});
        if let Some(session) = session {
            hello["session"] = json!(session);
        }
        let reply = client.call(hello).await;
        assert_eq!(reply["ok"], true, "{reply}");
        client.session = reply["session"].as_str().unwrap().to_owned();
        client.user = reply["user"]["id"].as_str().unwrap().to_owned();
        (client, reply)
    }

    async fn new(hub: &Hub<B>, name: &str) -> Self {
        Client::hello(hub, name, None, json!({})).await.0
    }

    async fn frame(&mut self) -> Value {
        let frame = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a frame within 10 s")
            .expect("the connection is open");
        serde_json::from_slice(&frame).expect("frames are JSON")
    }

    /// Sends an op and waits for its reply; events on the way are kept.
    async fn call(&mut self, mut op: Value) -> Value {
        self.id += 1;
        op["id"] = json!(self.id);
        self.conn.handle_frame(op.to_string().as_bytes()).await;
        loop {
            let frame = self.frame().await;
            if frame["re"] == json!(self.id) {
                return frame;
            }
            self.events.push_back(frame);
        }
    }

    /// Sends an op that must succeed.
    async fn ok(&mut self, op: Value) -> Value {
        let reply = self.call(op.clone()).await;
        assert_eq!(reply["ok"], true, "{op} answered {reply}");
        reply
    }

    /// Sends an op that must fail; its error code.
    async fn refused(&mut self, op: Value) -> String {
        let reply = self.call(op.clone()).await;
        assert_eq!(reply["ok"], false, "{op} answered {reply}");
        reply["error"]["code"].as_str().unwrap().to_owned()
    }

    /// The next event, which must be an `ev`.
    async fn event(&mut self, ev: &str) -> Value {
        let event = match self.events.pop_front() {
            Some(event) => event,
            None => self.frame().await,
        };
        assert_eq!(event["ev"], ev, "expected {ev}, got {event}");
        event
    }

    async fn create(&mut self, settings: Value) -> String {
        let mut op = json!({"op": "create"});
        for (k, v) in settings.as_object().unwrap() {
            op[k] = v.clone();
        }
        let reply = self.ok(op).await;
        reply["room"]["code"].as_str().unwrap().to_owned()
    }

    async fn join(&mut self, room: &str) -> Value {
        self.ok(json!({"op": "join", "room": room})).await
    }

    async fn post(&mut self, room: &str, body: &str) -> u64 {
        let reply = self.ok(json!({"op": "post", "room": room, "body": body})).await;
        reply["message"]["seq"].as_u64().unwrap()
    }

    /// Drops the connection (a disconnect, not a `leave`).
    fn drop_conn(self) {
        drop(self);
    }
}

fn seqs(messages: &Value) -> Vec<u64> {
    messages.as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

fn names(members: &Value) -> Vec<String> {
    let mut names: Vec<String> =
        members.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().into()).collect();
    names.sort();
    names
}

impl<B: RoomBackend> Client<B> {
    /// The next event named `ev`, skipping others.
    async fn next_event(&mut self, ev: &str) -> Value {
        loop {
            let event = match self.events.pop_front() {
                Some(event) => event,
                None => self.frame().await,
            };
            if event["ev"] == ev {
                return event;
            }
        }
    }

    /// The next event, whatever it is.
    async fn next_event_any(&mut self) -> Value {
        match self.events.pop_front() {
            Some(event) => event,
            None => self.frame().await,
        }
    }

    /// The next event named `ev` about `room` (a message's room is the
    /// message's), skipping others.
    async fn next_in(&mut self, room: &str, ev: &str) -> Value {
        loop {
            let event = self.next_event(ev).await;
            if event["room"] == room || event["message"]["room"] == room {
                return event;
            }
        }
    }
}

// ----- the scenarios -----

/// Create, join, post, typing, members, history, get, leave: what each
/// member sees, and in what order.
async fn ops_and_presence<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let code = ann.create(json!({"title": "Tea", "capacity": 3})).await;
    let joined = ann.join(&code).await;
    assert_eq!(joined["room"]["title"], "Tea");
    assert_eq!(joined["seq"], 0);
    let joined = bob.join(&code.to_lowercase()).await;
    assert_eq!(names(&joined["members"]), ["Ann", "Bob"], "a code is case-insensitive");
    let event = ann.event("join").await;
    assert_eq!(event["user"]["name"], "Bob");

    assert_eq!(bob.post(&code, "hello").await, 1);
    let event = ann.event("message").await;
    assert_eq!(
        (event["message"]["seq"].as_u64(), &event["message"]["body"]),
        (Some(1), &json!("hello"))
    );
    assert_eq!(event["message"]["from"]["name"], "Bob");
    assert_eq!(ann.post(&code, "hi").await, 2);
    assert_eq!(bob.event("message").await["message"]["seq"], 2);

    ann.ok(json!({"op": "typing", "room": code, "active": true})).await;
    let event = bob.event("typing").await;
    assert_eq!((&event["user"]["name"], &event["active"]), (&json!("Ann"), &json!(true)));

    let members = bob.ok(json!({"op": "members", "room": code})).await;
    assert_eq!(names(&members["members"]), ["Ann", "Bob"]);
    let history = bob.ok(json!({"op": "history", "room": code})).await;
    assert_eq!(seqs(&history["messages"]), [1, 2]);
    let history = bob.ok(json!({"op": "history", "room": code, "before": 2})).await;
    assert_eq!(seqs(&history["messages"]), [1]);
    let got = bob.ok(json!({"op": "get", "room": code, "seq": 2})).await;
    assert_eq!(got["message"]["body"], "hi");
    assert_eq!(bob.refused(json!({"op": "get", "room": code, "seq": 9})).await, "not_found");

    bob.ok(json!({"op": "leave", "room": code})).await;
    let event = ann.event("leave").await;
    assert_eq!((&event["user"]["name"], &event["reason"]), (&json!("Bob"), &json!("left")));
    let members = ann.ok(json!({"op": "members", "room": code})).await;
    assert_eq!(names(&members["members"]), ["Ann"]);
    assert_eq!(bob.refused(json!({"op": "post", "room": code, "body": "x"})).await, "not_member");
}

/// Concurrent joins from both nodes take exactly the seats there are.
async fn capacity_race<B: RoomBackend>(nodes: Nodes<B>) {
    let mut owner = Client::new(&nodes.a, "Owner").await;
    let code = owner.create(json!({"capacity": 3})).await;
    let mut clients = Vec::new();
    for i in 0..12 {
        let hub = &nodes.all[i % nodes.all.len()];
        clients.push(Client::new(hub, &format!("user {i}")).await);
    }
    let joins = clients.iter_mut().map(|c| c.call(json!({"op": "join", "room": code})));
    let replies = futures_util::future::join_all(joins).await;
    let admitted = replies.iter().filter(|r| r["ok"] == true).count();
    assert_eq!(admitted, 3, "exactly the seats are taken");
    for refused in replies.iter().filter(|r| r["ok"] == false) {
        assert_eq!(refused["error"]["code"], "room_full", "{refused}");
    }
    let seated = replies.iter().position(|r| r["ok"] == true).unwrap();
    let members = clients[seated].ok(json!({"op": "members", "room": code})).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 3);
}

/// A drop holds the seat through the grace, silently; a rejoin within it
/// is silent too; a drop not followed by a rejoin ends in a `leave` with
/// reason `disconnected`.
async fn grace<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let code = ann.create(json!({"capacity": 2})).await;
    ann.join(&code).await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    bob.join(&code).await;
    ann.event("join").await;
    let session = bob.session.clone();
    bob.drop_conn();
    // The seat is held: a third user finds the room full.
    let mut cy = Client::new(&nodes.a, "Cy").await;
    assert_eq!(cy.refused(json!({"op": "join", "room": code})).await, "room_full");
    // Back within the grace, on the other node: nobody sees a leave or a join.
    let (mut bob, hello) = Client::hello(&nodes.a, "Bob", Some(&session), json!({})).await;
    assert!(hello["rooms"].as_array().unwrap().is_empty(), "nothing was resumed");
    bob.join(&code).await;
    bob.post(&code, "back").await;
    assert_eq!(ann.event("message").await["message"]["body"], "back", "no leave, no join first");
    // Dropped for good: the leave comes once the grace is over.
    bob.drop_conn();
    let event = ann.event("leave").await;
    assert_eq!((&event["user"]["name"], &event["reason"]), (&json!("Bob"), &json!("disconnected")));
    cy.join(&code).await;
}

/// A `leave` from a new connection ends the user's seat held in grace at
/// once, with reason `left`; without such a seat it is `not_member`.
async fn leave_ends_a_seat_held_in_grace<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let code = ann.create(json!({})).await;
    ann.join(&code).await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    bob.join(&code).await;
    ann.event("join").await;
    let session = bob.session.clone();
    bob.drop_conn();
    // A drop reaches a cluster in the background: the leave comes after it.
    nodes.b.settle_departures(Duration::from_secs(5)).await;
    let (mut bob, _) = Client::hello(&nodes.b, "Bob", Some(&session), json!({})).await;
    bob.ok(json!({"op": "leave", "room": code})).await;
    let event = ann.event("leave").await;
    assert_eq!((&event["user"]["name"], &event["reason"]), (&json!("Bob"), &json!("left")));
    assert_eq!(bob.refused(json!({"op": "leave", "room": code})).await, "not_member");
    // Not while another connection of the user is in the room.
    let mut ann2 = Client::hello(&nodes.b, "Ann", Some(&ann.session.clone()), json!({})).await.0;
    assert_eq!(ann2.refused(json!({"op": "leave", "room": code})).await, "not_member");
}

/// An ephemeral room ends with its last member; a persistent one does not.
async fn ephemeral_death<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let ephemeral = ann.create(json!({})).await;
    let persistent = ann.create(json!({"retention": "persistent"})).await;
    for code in [&ephemeral, &persistent] {
        ann.join(code).await;
        ann.post(code, "m").await;
        ann.ok(json!({"op": "leave", "room": code})).await;
    }
    let mut bob = Client::new(&nodes.b, "Bob").await;
    assert_eq!(bob.refused(json!({"op": "join", "room": ephemeral})).await, "not_found");
    let joined = bob.join(&persistent).await;
    assert_eq!(joined["seq"], 1, "a persistent room keeps its messages");
}

/// A retried post (same `cid`) is answered with the first, on either node,
/// and published once.
async fn cid_dedup<B: RoomBackend>(nodes: Nodes<B>) {
    for retention in ["ephemeral", "persistent"] {
        let mut ann = Client::new(&nodes.a, "Ann").await;
        let code = ann.create(json!({"retention": retention})).await;
        ann.join(&code).await;
        let mut bob = Client::new(&nodes.b, "Bob").await;
        bob.join(&code).await;
        ann.event("join").await;
        let post = json!({"op": "post", "room": code, "body": "once", "cid": "c-1"});
        let first = bob.ok(post.clone()).await;
        let again = bob.ok(post.clone()).await;
        assert_eq!(first["message"], again["message"], "{retention}: the retry gets the first");
        let (mut bob2, _) =
            Client::hello(&nodes.a, "Bob", Some(&bob.session.clone()), json!({})).await;
        bob2.join(&code).await;
        let elsewhere = bob2.ok(post).await;
        assert_eq!(first["message"]["seq"], elsewhere["message"]["seq"], "{retention}");
        assert_eq!(bob.post(&code, "next").await, 2, "{retention}: no seq spent on retries");
        assert_eq!(ann.event("message").await["message"]["body"], "once");
        assert_eq!(ann.event("message").await["message"]["body"], "next", "published once");
    }
}

/// `resume` rejoins the rooms where the session holds a seat, and leaves
/// out every other code, silently for the other members.
async fn resume<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let code = ann.create(json!({})).await;
    let other = ann.create(json!({})).await;
    ann.join(&code).await;
    ann.join(&other).await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    bob.join(&code).await;
    ann.event("join").await;
    ann.post(&code, "one").await;
    bob.event("message").await;
    ann.post(&code, "two").await;
    let session = bob.session.clone();
    bob.drop_conn();
    let resume = json!({ code.clone(): 1, other.clone(): 0, "NOSUCH": 0 });
    let (mut bob, hello) = Client::hello(&nodes.a, "Bob", Some(&session), resume).await;
    let rooms = hello["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 1, "only the held seat: {hello}");
    assert_eq!(rooms[0]["room"]["code"], json!(code));
    assert_eq!(seqs(&rooms[0]["messages"]), [2], "what came after `since`");
    assert_eq!(rooms[0]["gap"], false);
    assert_eq!(bob.refused(json!({"op": "post", "room": other, "body": "x"})).await, "not_member");
    bob.post(&code, "three").await;
    assert_eq!(ann.event("message").await["message"]["body"], "three", "no leave, no join");
}

/// A joiner sees the backlog and what follows, nothing older; a member
/// who left sees nothing posted after.
async fn visibility<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let code = ann.create(json!({"backlog": 2, "retention": "persistent"})).await;
    ann.join(&code).await;
    for n in 1..=5 {
        ann.post(&code, &format!("m{n}")).await;
    }
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let joined = bob.join(&code).await;
    assert_eq!(seqs(&joined["messages"]), [4, 5], "the backlog of two");
    let history = bob.ok(json!({"op": "history", "room": code})).await;
    assert_eq!(seqs(&history["messages"]), [4, 5], "nothing before the backlog");
    assert_eq!(bob.refused(json!({"op": "get", "room": code, "seq": 3})).await, "not_found");
    let mut cy = Client::new(&nodes.a, "Cy").await;
    cy.join(&code).await;
    cy.ok(json!({"op": "leave", "room": code})).await;
    ann.post(&code, "m6").await;
    let joined = cy.join(&code).await;
    assert_eq!(seqs(&joined["messages"]), [5, 6], "back within the backlog: one range");
    let history = ann.ok(json!({"op": "history", "room": code, "limit": 3})).await;
    assert_eq!(seqs(&history["messages"]), [4, 5, 6]);
}

/// Ops that name a room answer a missing room and a private room the
/// connection is not in alike; a public room's members are anyone's.
async fn private_rooms_answer_as_missing_ones<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let private = ann.create(json!({})).await;
    let public = ann.create(json!({"public": true})).await;
    ann.join(&private).await;
    ann.join(&public).await;
    let mut eve = Client::new(&nodes.b, "Eve").await;
    for op in [
        json!({"op": "post", "body": "x"}),
        json!({"op": "typing", "active": true}),
        json!({"op": "history"}),
        json!({"op": "get", "seq": 1}),
        json!({"op": "members"}),
        json!({"op": "leave"}),
    ] {
        let mut answers = Vec::new();
        for room in [private.as_str(), "NOSUCH"] {
            let mut op = op.clone();
            op["room"] = json!(room);
            let reply = eve.call(op).await;
            answers.push(reply["error"]["code"].clone());
        }
        assert_eq!(answers, [json!("not_member"), json!("not_member")], "{op}");
    }
    let members = eve.ok(json!({"op": "members", "room": public})).await;
    assert_eq!(names(&members["members"]), ["Ann"]);
    let rooms = eve.ok(json!({"op": "rooms"})).await;
    let codes: Vec<&str> =
        rooms["rooms"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&public.as_str()) && !codes.contains(&private.as_str()), "{codes:?}");
}

/// The creator owns the room; the owner names moderators and hands the
/// room over, by name or by id; every member hears of each change, and
/// sees the roles in `join` and `members`; nobody else gives roles.
async fn roles<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let mut cleo = Client::new(&nodes.a, "Cleo").await;
    let code = ann.create(json!({})).await;
    let joined = ann.join(&code).await;
    assert_eq!(joined["roles"], json!({ann.user.as_str(): "owner"}));
    bob.join(&code).await;
    let joined = cleo.join(&code).await;
    assert_eq!(joined["roles"], json!({ann.user.as_str(): "owner"}), "{joined}");
    let members = bob.ok(json!({"op": "members", "room": code})).await;
    assert_eq!(members["roles"], json!({ann.user.as_str(): "owner"}));

    let name_bob = json!({"op": "role", "room": code, "name": "bob", "role": "moderator"});
    assert_eq!(bob.refused(name_bob.clone()).await, "forbidden", "only the owner");
    ann.ok(name_bob).await;
    for client in [&mut ann, &mut bob, &mut cleo] {
        let event = client.next_event("role").await;
        assert_eq!((&event["user"]["name"], &event["role"]), (&json!("Bob"), &json!("moderator")));
        assert_eq!(event["room"], code.as_str());
    }
    let cleo_mod = json!({"op": "role", "room": code, "user": cleo.user, "role": "moderator"});
    assert_eq!(bob.refused(cleo_mod).await, "forbidden", "a moderator gives no roles");
    let nobody = json!({"op": "role", "room": code, "user": "u_nobody", "role": "moderator"});
    assert_eq!(ann.refused(nobody).await, "bad_request");
    let herself = json!({"op": "role", "room": code, "name": "Ann", "role": "member"});
    assert_eq!(ann.refused(herself).await, "bad_request");
    let both =
        json!({"op": "role", "room": code, "user": bob.user, "name": "Bob", "role": "member"});
    assert_eq!(ann.refused(both).await, "bad_request");
    let neither = json!({"op": "role", "room": code, "role": "member"});
    assert_eq!(ann.refused(neither).await, "bad_request");
    let unknown = json!({"op": "role", "room": code, "name": "Bob", "role": "king"});
    assert_eq!(ann.refused(unknown).await, "bad_request");

    // Handing over: Cleo owns the room, Ann is a moderator.
    ann.ok(json!({"op": "role", "room": code, "user": cleo.user, "role": "owner"})).await;
    for client in [&mut ann, &mut bob, &mut cleo] {
        let first = client.next_event("role").await;
        let second = client.next_event("role").await;
        assert_eq!((&first["user"]["name"], &first["role"]), (&json!("Cleo"), &json!("owner")));
        assert_eq!(
            (&second["user"]["name"], &second["role"]),
            (&json!("Ann"), &json!("moderator"))
        );
    }
    let again = json!({"op": "role", "room": code, "name": "Bob", "role": "member"});
    assert_eq!(ann.refused(again.clone()).await, "forbidden", "Ann no longer owns it");
    cleo.ok(again).await;
    assert_eq!(bob.next_event("role").await["role"], "member");
    let members = bob.ok(json!({"op": "members", "room": code})).await;
    assert_eq!(
        members["roles"],
        json!({cleo.user.as_str(): "owner", ann.user.as_str(): "moderator"}),
        "a plain member is not listed"
    );
    // A connection not in the room: as for any op naming it.
    let mut dana = Client::new(&nodes.b, "Dana").await;
    let outside = json!({"op": "role", "room": code, "name": "Bob", "role": "moderator"});
    assert_eq!(dana.refused(outside).await, "not_member");
}

/// The owner and moderators remove members for a while: the removed
/// member's connections (every tab, on every node) get `closed`, the
/// others a `leave` (reason `kicked`), and a join of theirs is refused
/// until the time has passed; who may remove whom.
async fn kick<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let mut cleo = Client::new(&nodes.a, "Cleo").await;
    let mut dana = Client::new(&nodes.b, "Dana").await;
    let code = ann.create(json!({})).await;
    for client in [&mut ann, &mut bob, &mut cleo, &mut dana] {
        client.join(&code).await;
    }
    // Dana's second tab, on the other node.
    let (mut dana_tab, _) =
        Client::hello(&nodes.a, "Dana", Some(&dana.session.clone()), json!({})).await;
    dana_tab.join(&code).await;

    let remove_dana = json!({"op": "kick", "room": code, "name": "dana"});
    assert_eq!(cleo.refused(remove_dana.clone()).await, "forbidden", "a plain member");
    ann.ok(json!({"op": "role", "room": code, "name": "Bob", "role": "moderator"})).await;
    let remove_ann = json!({"op": "kick", "room": code, "name": "Ann"});
    assert_eq!(bob.refused(remove_ann).await, "forbidden", "nobody removes the owner");
    let herself = json!({"op": "kick", "room": code, "name": "Bob"});
    assert_eq!(bob.refused(herself).await, "bad_request");
    let too_long = json!({"op": "kick", "room": code, "name": "Dana", "minutes": 100_000});
    assert_eq!(bob.refused(too_long).await, "bad_request");
    // What is not a user id names nobody (the backends keep counters
    // beside the members: never theirs to remove or promote).
    for field in ["#j", "#s", "nobody"] {
        let kick = json!({"op": "kick", "room": code, "user": field});
        assert_eq!(bob.refused(kick).await, "bad_request", "{field}");
        let role = json!({"op": "role", "room": code, "user": field, "role": "owner"});
        assert_eq!(ann.refused(role).await, "bad_request", "{field}");
    }
    for field in ["#j", "#s"] {
        let kick = json!({"op": "kick", "room": code, "name": field});
        assert_eq!(bob.refused(kick).await, "bad_request", "by name: {field}");
    }

    // A moderator removes Dana: both her tabs are told, the others see her go.
    bob.ok(remove_dana).await;
    for tab in [&mut dana, &mut dana_tab] {
        let closed = tab.next_event("closed").await;
        assert_eq!((&closed["room"], &closed["reason"]), (&json!(code), &json!("kicked")));
    }
    for client in [&mut ann, &mut bob, &mut cleo] {
        let left = client.next_event("leave").await;
        assert_eq!((&left["user"]["name"], &left["reason"]), (&json!("Dana"), &json!("kicked")));
    }
    let members = ann.ok(json!({"op": "members", "room": code})).await;
    assert_eq!(names(&members["members"]), ["Ann", "Bob", "Cleo"]);
    // Her stale tabs can no longer post, and she may not come back yet.
    let post = json!({"op": "post", "room": code, "body": "still here?"});
    assert_eq!(dana.refused(post).await, "not_member");
    let again = dana_tab.call(json!({"op": "join", "room": code})).await;
    assert_eq!(again["error"]["code"], "forbidden", "{again}");
    assert!(again["error"]["retry_after_ms"].as_u64().unwrap() > 9 * 60 * 1000, "{again}");
    // A moderator does not remove another moderator; the owner does, and
    // the role goes with the seat.
    ann.ok(json!({"op": "role", "room": code, "name": "Cleo", "role": "moderator"})).await;
    let remove_cleo = json!({"op": "kick", "room": code, "name": "Cleo", "minutes": 1});
    assert_eq!(bob.refused(remove_cleo.clone()).await, "forbidden");
    ann.ok(remove_cleo).await;
    assert_eq!(cleo.next_event("closed").await["reason"], "kicked");
    let named = bob.next_event("role").await;
    assert_eq!((&named["user"]["name"], &named["role"]), (&json!("Cleo"), &json!("moderator")));
    let demoted = bob.next_event("role").await;
    assert_eq!((&demoted["user"]["name"], &demoted["role"]), (&json!("Cleo"), &json!("member")));
    let members = ann.ok(json!({"op": "members", "room": code})).await;
    assert_eq!(names(&members["members"]), ["Ann", "Bob"]);
    assert_eq!(
        members["roles"],
        json!({ann.user.as_str(): "owner", bob.user.as_str(): "moderator"}),
        "Cleo is no moderator any more"
    );
    // The dropped stale connections change nothing for those who stay.
    dana.drop_conn();
    dana_tab.drop_conn();
    bob.post(&code, "after").await;
    let members = ann.ok(json!({"op": "members", "room": code})).await;
    assert_eq!(names(&members["members"]), ["Ann", "Bob"]);
}

/// A ban bars the member's session and the addresses they joined from, on
/// every node, until lifted; `bans` lists bans and removals for the owner
/// and moderators; `unban` lifts either.
async fn ban<B: RoomBackend>(nodes: Nodes<B>) {
    let from = |a: &str| Some(a.parse::<std::net::IpAddr>().unwrap());
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let (mut bob, _) =
        Client::hello_from(&nodes.b, "Bob", None, json!({}), from("2001:db8:7:7::1")).await;
    let (mut cleo, _) =
        Client::hello_from(&nodes.a, "Cleo", None, json!({}), from("198.51.100.1")).await;
    let code = ann.create(json!({})).await;
    for client in [&mut ann, &mut bob, &mut cleo] {
        client.join(&code).await;
    }
    let ban_bob = json!({"op": "ban", "room": code, "name": "Bob"});
    assert_eq!(cleo.refused(ban_bob.clone()).await, "forbidden", "a plain member");
    assert_eq!(cleo.refused(json!({"op": "bans", "room": code})).await, "forbidden");
    let zero = json!({"op": "ban", "room": code, "name": "Bob", "minutes": 0});
    assert_eq!(ann.refused(zero).await, "bad_request");
    let nobody = json!({"op": "unban", "room": code, "user": "u_nobody"});
    assert_eq!(ann.refused(nobody).await, "not_found");

    ann.ok(ban_bob).await;
    let closed = bob.next_event("closed").await;
    assert_eq!((&closed["room"], &closed["reason"]), (&json!(code), &json!("banned")));
    for client in [&mut ann, &mut cleo] {
        let left = client.next_event("leave").await;
        assert_eq!((&left["user"]["name"], &left["reason"]), (&json!("Bob"), &json!("banned")));
    }
    // Not back: not the session, on either node, nor anyone from his /64.
    let again = bob.call(json!({"op": "join", "room": code})).await;
    assert_eq!(again["error"]["code"], "forbidden", "{again}");
    assert!(again["error"].get("retry_after_ms").is_none(), "until lifted: {again}");
    let (mut bob_tab, _) =
        Client::hello_from(&nodes.a, "Bob", Some(&bob.session.clone()), json!({}), None).await;
    assert_eq!(bob_tab.refused(json!({"op": "join", "room": code})).await, "forbidden");
    let (mut eve, _) =
        Client::hello_from(&nodes.a, "Eve", None, json!({}), from("2001:db8:7:7:abcd::2")).await;
    assert_eq!(eve.refused(json!({"op": "join", "room": code})).await, "forbidden", "same /64");
    // Someone else from elsewhere, or from loopback, joins.
    let (mut fay, _) =
        Client::hello_from(&nodes.b, "Fay", None, json!({}), from("2001:db8:7:8::1")).await;
    fay.join(&code).await;
    let (mut gus, _) = Client::hello_from(&nodes.b, "Gus", None, json!({}), from("::1")).await;
    gus.join(&code).await;

    // A removal is listed beside the ban.
    ann.ok(json!({"op": "kick", "room": code, "name": "Cleo", "minutes": 5})).await;
    let listed = ann.ok(json!({"op": "bans", "room": code})).await;
    let bans = listed["bans"].as_array().unwrap();
    assert_eq!(bans.len(), 2, "{listed}");
    let (b, c) = (&bans[0], &bans[1]);
    assert_eq!(
        (&b["user"]["id"], &b["reason"], &b["address"]),
        (&json!(bob.user), &json!("banned"), &json!(true))
    );
    assert_eq!(b["by"]["name"], "Ann");
    assert!(b.get("until").is_none(), "{b}");
    assert_eq!(
        (&c["user"]["name"], &c["reason"], &c["address"]),
        (&json!("Cleo"), &json!("kicked"), &json!(false))
    );
    assert!(c["until"].as_str().unwrap() > confab_core::now_rfc3339().as_str(), "{c}");
    // A moderator sees the list; lifting works for both, once.
    ann.ok(json!({"op": "role", "room": code, "name": "Fay", "role": "moderator"})).await;
    let listed = fay.ok(json!({"op": "bans", "room": code})).await;
    assert_eq!(listed["bans"].as_array().unwrap().len(), 2);
    // The owner's ban is the owner's to lift.
    let lift_bob = json!({"op": "unban", "room": code, "user": bob.user});
    assert_eq!(fay.refused(lift_bob.clone()).await, "forbidden", "a moderator");
    ann.ok(lift_bob.clone()).await;
    assert_eq!(ann.refused(lift_bob).await, "not_found", "lifted already");
    eve.join(&code).await;
    bob.join(&code).await;
    ann.ok(json!({"op": "unban", "room": code, "user": cleo.user})).await;
    cleo.join(&code).await;
    let members = ann.ok(json!({"op": "members", "room": code})).await;
    assert_eq!(names(&members["members"]), ["Ann", "Bob", "Cleo", "Eve", "Fay", "Gus"]);
    let listed = ann.ok(json!({"op": "bans", "room": code})).await;
    assert_eq!(listed["bans"], json!([]));
    // A timed ban holds for its time.
    ann.ok(json!({"op": "ban", "room": code, "name": "Eve", "minutes": 30})).await;
    let again = eve.call(json!({"op": "join", "room": code})).await;
    let wait = again["error"]["retry_after_ms"].as_u64().unwrap();
    assert!((29 * 60 * 1000..=30 * 60 * 1000).contains(&wait), "{again}");
}

/// Mute, slow mode and the title: the owner and moderators set them, every
/// member hears of them, and posts are held to them (in ephemeral and
/// persistent rooms, which post by different paths).
async fn mute_slow_title<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    for retention in ["ephemeral", "persistent"] {
        let code = ann.create(json!({"public": true, "retention": retention})).await;
        ann.join(&code).await;
        bob.join(&code).await;
        for op in [
            json!({"op": "mute", "room": code, "name": "Ann"}),
            json!({"op": "slow", "room": code, "seconds": 5}),
            json!({"op": "title", "room": code, "title": "Mine now"}),
        ] {
            assert_eq!(bob.refused(op.clone()).await, "forbidden", "{op}");
        }
        let myself = json!({"op": "mute", "room": code, "name": "Ann"});
        assert_eq!(ann.refused(myself).await, "bad_request");
        let too_slow = json!({"op": "slow", "room": code, "seconds": 3601});
        assert_eq!(ann.refused(too_slow).await, "bad_request");
        let blank = json!({"op": "title", "room": code, "title": "  "});
        assert_eq!(ann.refused(blank).await, "bad_request");

        // Muted: told, refused, listed; then let speak again.
        ann.ok(json!({"op": "mute", "room": code, "name": "bob", "minutes": 5})).await;
        for client in [&mut ann, &mut bob] {
            let event = client.next_in(&code, "muted").await;
            assert_eq!(
                (&event["user"]["name"], &event["muted"], &event["by"]["name"]),
                (&json!("Bob"), &json!(true), &json!("Ann"))
            );
        }
        let post = json!({"op": "post", "room": code, "body": "let me speak", "cid": "c1"});
        let refused = bob.call(post.clone()).await;
        assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
        let wait = refused["error"]["retry_after_ms"].as_u64().unwrap();
        assert!((4 * 60 * 1000..=5 * 60 * 1000).contains(&wait), "{refused}");
        let listed = ann.ok(json!({"op": "bans", "room": code})).await;
        assert_eq!(listed["mutes"][0]["user"]["name"], "Bob", "{listed}");
        assert!(listed["mutes"][0]["until"].is_string(), "{listed}");
        // A moderator the owner muted does not lift it.
        ann.ok(json!({"op": "role", "room": code, "name": "Bob", "role": "moderator"})).await;
        let own = json!({"op": "unmute", "room": code, "user": bob.user});
        assert_eq!(bob.refused(own).await, "forbidden");
        ann.ok(json!({"op": "role", "room": code, "name": "Bob", "role": "member"})).await;
        ann.ok(json!({"op": "unmute", "room": code, "user": bob.user})).await;
        let event = bob.next_in(&code, "muted").await;
        assert_eq!(event["muted"], false, "{event}");
        let again = json!({"op": "unmute", "room": code, "user": bob.user});
        assert_eq!(ann.refused(again).await, "not_found");
        let first = bob.ok(post.clone()).await["message"]["seq"].as_u64().unwrap();

        // Slow mode: one post per minute for Bob, none of it for the owner;
        // a retry is answered, not refused.
        ann.ok(json!({"op": "slow", "room": code, "seconds": 60})).await;
        let event = bob.next_in(&code, "slow").await;
        assert_eq!((&event["seconds"], &event["user"]["name"]), (&json!(60), &json!("Ann")));
        bob.post(&code, "one").await;
        let refused = bob.call(json!({"op": "post", "room": code, "body": "two"})).await;
        assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
        let wait = refused["error"]["retry_after_ms"].as_u64().unwrap();
        assert!((50_000..=60_000).contains(&wait), "{refused}");
        let retried = bob.ok(post).await;
        assert_eq!(retried["message"]["seq"], first, "the retry is answered");
        // Leaving and coming back is no way around it.
        bob.ok(json!({"op": "leave", "room": code})).await;
        bob.join(&code).await;
        let refused = bob.call(json!({"op": "post", "room": code, "body": "back"})).await;
        assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
        ann.post(&code, "owner one").await;
        ann.post(&code, "owner two").await;
        let mut cleo = Client::new(&nodes.a, "Cleo").await;
        assert_eq!(cleo.join(&code).await["slow"], 60);
        ann.ok(json!({"op": "slow", "room": code, "seconds": 0})).await;
        assert_eq!(bob.next_in(&code, "slow").await["seconds"], 0);
        bob.post(&code, "free again").await;

        // The title: told to every member, and what the room list shows.
        ann.ok(json!({"op": "title", "room": code, "title": "  Tea room  "})).await;
        let event = bob.next_in(&code, "title").await;
        assert_eq!((&event["title"], &event["user"]["name"]), (&json!("Tea room"), &json!("Ann")));
        let rooms = bob.ok(json!({"op": "rooms"})).await;
        let listed = rooms["rooms"].as_array().unwrap().iter().find(|r| r["code"] == json!(code));
        assert_eq!(listed.unwrap()["title"], "Tea room", "{rooms}");
        assert_eq!(cleo.join(&code).await["room"]["title"], "Tea room");
    }
}

/// A shadow-muted member's posts reach only their own connections: live,
/// in history, in a join's backlog; the others never see them, nor hear of
/// the mute, and their `seq`s are simply missing for the others.
async fn shadow_mute<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let mut cleo = Client::new(&nodes.a, "Cleo").await;
    for retention in ["ephemeral", "persistent"] {
        let code = ann.create(json!({"retention": retention, "backlog": 20})).await;
        for client in [&mut ann, &mut bob, &mut cleo] {
            client.join(&code).await;
        }
        let (mut bob_tab, _) =
            Client::hello(&nodes.a, "Bob", Some(&bob.session.clone()), json!({})).await;
        bob_tab.join(&code).await;
        let shadow = json!({"op": "mute", "room": code, "name": "Bob", "shadow": true});
        assert_eq!(cleo.refused(shadow.clone()).await, "forbidden");
        ann.ok(shadow).await;
        let marker = ann.post(&code, "marker").await;
        // Nobody heard of it: the next thing each sees is the marker.
        for client in [&mut bob, &mut bob_tab, &mut cleo] {
            loop {
                let event = client.next_event_any().await;
                assert_ne!(event["ev"], "muted", "{event}");
                if event["ev"] == "message" && event["message"]["room"] == json!(code) {
                    assert_eq!(event["message"]["seq"], marker);
                    break;
                }
            }
        }
        let hidden = bob.post(&code, "only I see this").await;
        assert_eq!(hidden, marker + 1);
        let seen = bob_tab.next_in(&code, "message").await;
        assert_eq!(seen["message"]["body"], "only I see this", "Bob's other tab");
        let after = ann.post(&code, "after").await;
        let next = cleo.next_in(&code, "message").await;
        assert_eq!(
            (&next["message"]["seq"], &next["message"]["body"]),
            (&json!(after), &json!("after"))
        );
        // History and a new join: Bob's alone see it.
        let bodies = |history: &Value| -> Vec<String> {
            history["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["body"].as_str().unwrap().to_owned())
                .collect()
        };
        let theirs = cleo.ok(json!({"op": "history", "room": code})).await;
        assert_eq!(bodies(&theirs), ["marker", "after"]);
        let his = bob.ok(json!({"op": "history", "room": code})).await;
        assert_eq!(bodies(&his), ["marker", "only I see this", "after"]);
        let got = cleo.call(json!({"op": "get", "room": code, "seq": hidden})).await;
        assert_eq!(got["error"]["code"], "not_found", "{got}");
        let mut dana = Client::new(&nodes.b, "Dana").await;
        assert_eq!(bodies(&dana.join(&code).await), ["marker", "after"]);
        // The owner sees it in the list; lifting it is unheard of too.
        let listed = ann.ok(json!({"op": "bans", "room": code})).await;
        assert_eq!(listed["mutes"][0]["shadow"], true, "{listed}");
        ann.ok(json!({"op": "unmute", "room": code, "user": bob.user})).await;
        let visible = bob.post(&code, "now you see me").await;
        loop {
            let event = cleo.next_event_any().await;
            assert_ne!(event["ev"], "muted", "{event}");
            if event["ev"] == "message" && event["message"]["seq"] == visible {
                break;
            }
        }
    }
}

/// A message deleted by its author or a moderator: every member is told,
/// and history, `get`, a join's backlog and a retry of its `cid` show the
/// tombstone in its place, in ephemeral and persistent rooms.
async fn delete<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let mut cleo = Client::new(&nodes.a, "Cleo").await;
    for retention in ["ephemeral", "persistent"] {
        let code = ann.create(json!({"retention": retention, "backlog": 10})).await;
        for client in [&mut ann, &mut bob, &mut cleo] {
            client.join(&code).await;
        }
        let post = json!({"op": "post", "room": code, "body": "oops", "subject": "s", "cid": "d1"});
        let mine = bob.ok(post.clone()).await["message"]["seq"].as_u64().unwrap();
        let other = cleo.post(&code, "keep me").await;
        // Not someone else's, as a plain member.
        let theirs = json!({"op": "delete", "room": code, "seq": other});
        assert_eq!(bob.refused(theirs).await, "forbidden");
        let missing = json!({"op": "delete", "room": code, "seq": 999});
        assert_eq!(bob.refused(missing).await, "not_found");
        // Bob deletes his own; everyone hears it.
        bob.ok(json!({"op": "delete", "room": code, "seq": mine})).await;
        for client in [&mut ann, &mut bob, &mut cleo] {
            let event = client.next_in(&code, "deleted").await;
            assert_eq!((&event["seq"], &event["by"]["name"]), (&json!(mine), &json!("Bob")));
        }
        // A tombstone everywhere it is read: history, get, a retry, a join.
        let history = ann.ok(json!({"op": "history", "room": code})).await;
        let gone = &history["messages"][0];
        assert_eq!(
            (&gone["seq"], &gone["deleted"], &gone["body"]),
            (&json!(mine), &json!(true), &json!(""))
        );
        assert!(gone.get("subject").is_none(), "{gone}");
        assert_eq!(history["messages"][1]["body"], "keep me");
        let got = cleo.ok(json!({"op": "get", "room": code, "seq": mine})).await;
        assert_eq!(got["message"]["deleted"], true);
        let retried = bob.ok(post).await;
        assert_eq!(
            (&retried["message"]["seq"], &retried["message"]["deleted"]),
            (&json!(mine), &json!(true)),
            "{retried}"
        );
        let mut dana = Client::new(&nodes.b, "Dana").await;
        let joined = dana.join(&code).await;
        let backlog: Vec<&str> = joined["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap())
            .collect();
        assert_eq!(backlog, ["", "keep me"]);
        // A moderator deletes a member's, not the owner's.
        let owners = ann.post(&code, "the owner's word").await;
        ann.ok(json!({"op": "role", "room": code, "name": "Bob", "role": "moderator"})).await;
        let not_owners = json!({"op": "delete", "room": code, "seq": owners});
        assert_eq!(bob.refused(not_owners).await, "forbidden");
        ann.ok(json!({"op": "role", "room": code, "name": "Bob", "role": "member"})).await;
        ann.ok(json!({"op": "delete", "room": code, "seq": owners})).await;
        // The owner deletes anyone's; a second delete is answered alike.
        let keep = json!({"op": "delete", "room": code, "seq": other});
        ann.ok(keep.clone()).await;
        assert_eq!(cleo.next_in(&code, "deleted").await["by"]["name"], "Ann");
        ann.ok(keep).await;
        let history = dana.ok(json!({"op": "history", "room": code})).await;
        assert!(history["messages"].as_array().unwrap().iter().all(|m| m["deleted"] == true));
    }
}

/// The operator's ops: every room (private ones too) and its members, a
/// notice to every room, a user's messages purged everywhere, and a room
/// closed under its members, on every node.
async fn operator<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let private = ann.create(json!({})).await;
    let stored = ann.create(json!({"retention": "persistent", "public": true})).await;
    for code in [&private, &stored] {
        ann.join(code).await;
        bob.join(code).await;
    }
    let rooms = nodes.b.backend().all_rooms().await.unwrap();
    for code in [&private, &stored] {
        assert!(rooms.iter().any(|(_, r)| r.code == *code && r.members == 2), "{code}: {rooms:?}");
    }
    let (members, roles) = nodes.b.backend().room_members(&private).await.unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(roles.get(&ann.user), Some(&confab_proto::Role::Owner));
    assert_eq!(
        nodes.a.backend().room_members("NOSUCH").await.err().map(|e| e.code),
        Some(confab_proto::ErrorCode::NotFound)
    );

    // The operator names a moderator, and hands a room over.
    let bob_target = confab_core::Target::Name("bob".into());
    nodes.b.backend().grant(&private, &bob_target, confab_proto::Role::Moderator).await.unwrap();
    let named = ann.next_in(&private, "role").await;
    assert_eq!((&named["user"]["name"], &named["role"]), (&json!("Bob"), &json!("moderator")));
    bob.ok(json!({"op": "lock", "room": private, "locked": false})).await;
    nodes.a.backend().grant(&private, &bob_target, confab_proto::Role::Owner).await.unwrap();
    let (_, roles) = nodes.a.backend().room_members(&private).await.unwrap();
    assert_eq!(roles.get(&bob.user), Some(&confab_proto::Role::Owner));
    assert_eq!(roles.get(&ann.user), Some(&confab_proto::Role::Moderator), "the old owner");
    let nobody = confab_core::Target::Name("nobody".into());
    let missing = nodes.a.backend().grant(&private, &nobody, confab_proto::Role::Moderator).await;
    assert_eq!(missing.err().map(|e| e.code), Some(confab_proto::ErrorCode::BadRequest));

    // A notice reaches every room, on every node.
    let told = nodes.a.backend().announce("maintenance at noon").await.unwrap();
    assert!(told >= 2, "{told}");
    for client in [&mut ann, &mut bob] {
        let mut rooms = Vec::new();
        for _ in 0..2 {
            let notice = client.next_event("notice").await;
            assert_eq!(notice["text"], "maintenance at noon");
            rooms.push(notice["room"].as_str().unwrap().to_owned());
        }
        rooms.sort();
        let mut expected = vec![private.clone(), stored.clone()];
        expected.sort();
        assert_eq!(rooms, expected);
    }

    // Bob's messages are purged everywhere; Ann's stay.
    let post = json!({"op": "post", "room": private, "body": "spam one", "cid": "p1"});
    let spam = bob.ok(post.clone()).await["message"]["seq"].as_u64().unwrap();
    bob.post(&stored, "spam two").await;
    let hello = ann.post(&private, "hello").await;
    let seen = ann.join(&private).await["rev"].as_u64().unwrap();
    nodes.b.backend().purge(&bob.user).await.unwrap();
    let mut revs = HashMap::new();
    for _ in 0..2 {
        let purged = ann.next_event("purged").await;
        assert_eq!(purged["user_id"], json!(bob.user));
        revs.insert(purged["room"].as_str().unwrap().to_owned(), purged["rev"].as_u64());
    }
    // Each tombstone is a change: one who resumes from before it hears of
    // it, as of a delete.
    let purge_rev = revs[&private].expect("the room held Bob's message: a change number");
    assert!(purge_rev > seen, "{purge_rev} after {seen}");
    let resumed = ann.ok(json!({"op": "join", "room": private, "since": hello, "rev": seen})).await;
    assert_eq!(seqs(&resumed["changed"]), [spam], "{resumed}");
    assert_eq!(resumed["changed"][0]["deleted"], true, "{resumed}");
    assert_eq!(resumed["rev"].as_u64(), Some(purge_rev), "{resumed}");
    // The persistent room's change number is stored, so that it never goes
    // back (should the room be read back from the store).
    let stored_rev = revs[&stored].expect("the stored room held Bob's message");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rooms = nodes.a.services().store.rooms().await.unwrap();
        if rooms.iter().any(|r| r.spec.code == stored && r.rev >= stored_rev) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the purge's change number is not stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for code in [&private, &stored] {
        let history = ann.ok(json!({"op": "history", "room": code})).await;
        for message in history["messages"].as_array().unwrap() {
            let bobs = message["from"]["id"] == json!(bob.user);
            assert_eq!(message["deleted"] == true, bobs, "{message}");
        }
    }
    let retried = bob.ok(post).await;
    assert_eq!(retried["message"]["deleted"], true, "{retried}");

    // Closed: told on every node; the seats are gone, the room too.
    nodes.b.backend().close_room(&stored).await.unwrap();
    for client in [&mut ann, &mut bob] {
        let closed = client.next_in(&stored, "closed").await;
        assert_eq!(closed["reason"], "closed");
    }
    let post = json!({"op": "post", "room": stored, "body": "anyone?"});
    assert_eq!(ann.refused(post).await, "not_found");
    assert_eq!(bob.refused(json!({"op": "join", "room": stored})).await, "not_found");
    ann.ok(json!({"op": "leave", "room": stored})).await;
    let rooms = nodes.a.backend().all_rooms().await.unwrap();
    assert!(!rooms.iter().any(|(_, r)| r.code == stored), "{rooms:?}");
    assert_eq!(
        nodes.a.backend().close_room(&stored).await.err().map(|e| e.code),
        Some(confab_proto::ErrorCode::NotFound)
    );
    // The other room goes on.
    ann.post(&private, "still here").await;
}

/// A locked room takes nobody new; its members stay, and one holding a
/// seat (another tab) still joins; the owner and moderators lock and
/// unlock it, and every member hears of it.
async fn lock<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let mut cleo = Client::new(&nodes.a, "Cleo").await;
    let code = ann.create(json!({})).await;
    ann.join(&code).await;
    bob.join(&code).await;
    let lock = json!({"op": "lock", "room": code, "locked": true});
    assert_eq!(bob.refused(lock.clone()).await, "forbidden", "a plain member");
    ann.ok(lock.clone()).await;
    for client in [&mut ann, &mut bob] {
        let event = client.next_event("locked").await;
        assert_eq!((&event["locked"], &event["user"]["name"]), (&json!(true), &json!("Ann")));
    }
    ann.ok(lock).await; // already locked: nothing more happens
    let refused = cleo.call(json!({"op": "join", "room": code})).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    // A member's other tab joins all the same, and learns the room is locked.
    let (mut bob_tab, _) =
        Client::hello(&nodes.a, "Bob", Some(&bob.session.clone()), json!({})).await;
    let joined = bob_tab.join(&code).await;
    assert_eq!(joined["locked"], true);
    bob.post(&code, "still talking").await;
    // A moderator unlocks it; then anyone may join again.
    ann.ok(json!({"op": "role", "room": code, "name": "Bob", "role": "moderator"})).await;
    bob.ok(json!({"op": "lock", "room": code, "locked": false})).await;
    let event = ann.next_event("locked").await;
    assert_eq!((&event["locked"], &event["user"]["name"]), (&json!(false), &json!("Bob")));
    let joined = cleo.join(&code).await;
    assert_eq!(joined["locked"], false);
}

/// With the store's queue full, a change to a persistent room is refused
/// before anything changed (so none is made that the store would miss),
/// and nobody hears of it; once there is room again it goes through and
/// is stored.
async fn a_full_store_queue_changes_nothing<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let code = ann.create(json!({"retention": "persistent"})).await;
    ann.join(&code).await;
    bob.join(&code).await;
    ann.post(&code, "one").await;
    bob.next_in(&code, "message").await;
    // Ann's node: nothing left to write, then every place in its queue
    // held, so that none frees up.
    nodes.a.flush_storage(Duration::from_secs(10)).await;
    let mut held = Vec::new();
    while let Ok(slot) = nodes.a.services().reserve_write() {
        held.push(slot);
    }
    assert!(!held.is_empty());
    let room = json!(code);
    let changes = [
        json!({"op": "lock", "room": room, "locked": true}),
        json!({"op": "edit", "room": room, "seq": 1, "body": "changed"}),
        json!({"op": "react", "room": room, "seq": 1, "emoji": "👍"}),
        json!({"op": "title", "room": room, "title": "New title"}),
        json!({"op": "slow", "room": room, "seconds": 30}),
        json!({"op": "role", "room": room, "name": "Bob", "role": "moderator"}),
        json!({"op": "kick", "room": room, "name": "Bob"}),
        json!({"op": "delete", "room": room, "seq": 1}),
    ];
    for change in &changes {
        assert_eq!(ann.refused(change.clone()).await, "unavailable", "{change}");
    }
    drop(held);
    // Nothing changed: the message as it was, Bob a member still, and the
    // first thing Bob hears of is the next post.
    let history = bob.ok(json!({"op": "history", "room": code})).await;
    let one = &history["messages"][0];
    assert_eq!(
        (&one["body"], &one["edited"], &one["deleted"]),
        (&json!("one"), &Value::Null, &Value::Null),
        "{one}"
    );
    assert!(one["reactions"].as_array().is_none_or(|r| r.is_empty()), "{one}");
    ann.post(&code, "two").await;
    let next = bob.next_event_any().await;
    assert_eq!(
        (&next["ev"], &next["message"]["body"]),
        (&json!("message"), &json!("two")),
        "{next}"
    );
    let members = bob.ok(json!({"op": "members", "room": code})).await;
    assert!(!members.to_string().contains("moderator"), "{members}");
    // With room again, a change goes through, and is stored.
    ann.ok(changes[0].clone()).await;
    assert_eq!(bob.next_event("locked").await["locked"], true);
    nodes.a.flush_storage(Duration::from_secs(10)).await;
    let stored = nodes.a.services().store.rooms().await.unwrap();
    let stored = stored.iter().find(|r| r.spec.code == code).expect("the room is stored");
    assert!(stored.locked, "the lock is stored");
}

/// Edits, replies and reactions: who may, what everyone hears, and what
/// history, a retry, a join and a resume read back.
async fn edit_reply_react<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let mut cleo = Client::new(&nodes.a, "Cleo").await;
    for retention in ["ephemeral", "persistent"] {
        let code = ann.create(json!({"retention": retention, "backlog": 10})).await;
        for client in [&mut ann, &mut bob, &mut cleo] {
            client.join(&code).await;
        }
        let post = json!({"op": "post", "room": code, "body": "first draft", "cid": "e1"});
        let mine = bob.ok(post.clone()).await["message"]["seq"].as_u64().unwrap();
        let other = ann.post(&code, "other").await;

        // Only its author edits, a message there is, with a body.
        let edit =
            |seq: u64, body: &str| json!({"op": "edit", "room": code, "seq": seq, "body": body});
        assert_eq!(ann.refused(edit(mine, "mine now")).await, "forbidden", "{retention}");
        assert_eq!(bob.refused(edit(999, "x")).await, "not_found", "{retention}");
        assert_eq!(bob.refused(edit(mine, "")).await, "bad_request", "{retention}");
        bob.ok(edit(mine, "second thought")).await;
        let mut revs = Vec::new();
        for client in [&mut ann, &mut bob, &mut cleo] {
            let event = client.next_in(&code, "edited").await;
            assert_eq!(event["seq"], json!(mine), "{retention}: {event}");
            assert_eq!(event["message"]["body"], "second thought", "{retention}");
            assert!(event["message"]["edited"].is_string(), "{retention}: {event}");
            revs.push(event["rev"].as_u64().unwrap());
        }
        assert!(revs[0] > 0 && revs.iter().all(|r| *r == revs[0]), "{retention}: {revs:?}");
        // The same text again changes nothing, and tells nobody.
        bob.ok(edit(mine, "second thought")).await;
        let history = cleo.ok(json!({"op": "history", "room": code})).await;
        let edited = &history["messages"][0];
        assert_eq!(
            (&edited["body"], edited["edited"].is_string()),
            (&json!("second thought"), true)
        );
        let retried = bob.ok(post).await;
        assert_eq!(
            retried["message"]["body"], "second thought",
            "{retention}: a retry reads the edit"
        );

        // A reply quotes what it answers, in the event and in history.
        let reply = json!({"op": "post", "room": code, "body": "agreed", "reply": mine});
        let answer = cleo.ok(reply).await["message"].clone();
        let quote = &answer["reply"];
        assert_eq!(
            (&quote["seq"], &quote["from"]["name"], &quote["body"]),
            (&json!(mine), &json!("Bob"), &json!("second thought")),
            "{retention}: {answer}"
        );
        let heard = ann.next_in(&code, "message").await;
        assert_eq!(heard["message"]["reply"], *quote, "{retention}");
        let nothing = json!({"op": "post", "room": code, "body": "x", "reply": 999});
        assert_eq!(cleo.refused(nothing).await, "not_found", "{retention}");

        // Reactions toggle; everyone hears each; counts and who are read back.
        let react = |seq: u64, emoji: &str| json!({"op": "react", "room": code, "seq": seq, "emoji": emoji});
        assert_eq!(ann.ok(react(mine, "👍")).await["on"], true);
        assert_eq!(bob.ok(react(mine, "👍")).await["on"], true);
        assert_eq!(ann.ok(react(mine, "👍")).await["on"], false);
        assert_eq!(cleo.ok(react(mine, "👨‍👩‍👧")).await["on"], true, "a ZWJ sequence");
        let mut heard = Vec::new();
        for _ in 0..4 {
            let event = cleo.next_in(&code, "reacted").await;
            assert_eq!(event["seq"], json!(mine));
            heard.push((
                event["user"]["name"].clone(),
                event["emoji"].clone(),
                event["on"].clone(),
            ));
        }
        assert_eq!(
            heard,
            [
                (json!("Ann"), json!("👍"), json!(true)),
                (json!("Bob"), json!("👍"), json!(true)),
                (json!("Ann"), json!("👍"), json!(false)),
                (json!("Cleo"), json!("👨‍👩‍👧"), json!(true)),
            ],
            "{retention}"
        );
        let got = ann.ok(json!({"op": "get", "room": code, "seq": mine})).await;
        let reactions = &got["message"]["reactions"];
        assert_eq!(reactions[0]["emoji"], "👍", "{retention}: {got}");
        assert_eq!(
            (&reactions[0]["count"], &reactions[0]["users"][0]["name"]),
            (&json!(1), &json!("Bob"))
        );
        assert_eq!((&reactions[1]["emoji"], &reactions[1]["count"]), (&json!("👨‍👩‍👧"), &json!(1)));
        for bad in ["abc", "", "👍 👍", "<b>", "👍👍👍👍👍👍👍👍👍"] {
            assert_eq!(ann.refused(react(mine, bad)).await, "bad_request", "{retention}: {bad:?}");
        }
        // Bounded: ten of one member's on a message, twenty emoji on one.
        // (Fresh members: the reactions of each are rate-limited.)
        let emoji: Vec<String> =
            (0..21u32).map(|i| char::from_u32(0x1F600 + i).unwrap().to_string()).collect();
        let mut eve = Client::new(&nodes.a, "Eve").await;
        let mut fay = Client::new(&nodes.b, "Fay").await;
        eve.join(&code).await;
        fay.join(&code).await;
        for e in &emoji[..10] {
            eve.ok(react(other, e)).await;
        }
        assert_eq!(eve.refused(react(other, &emoji[10])).await, "forbidden", "{retention}");
        for e in &emoji[10..20] {
            fay.ok(react(other, e)).await;
        }
        assert_eq!(cleo.refused(react(other, &emoji[20])).await, "forbidden", "{retention}");
        cleo.ok(react(other, &emoji[0])).await;

        // A resume that gives the change number it saw hears what changed.
        let mut dana = Client::new(&nodes.b, "Dana").await;
        let joined = dana.join(&code).await;
        let (seen, latest) = (joined["rev"].as_u64().unwrap(), joined["room"]["members"].clone());
        assert!(seen > 0, "{retention}: {joined}");
        let _ = latest;
        let last = joined["messages"].as_array().unwrap().last().unwrap()["seq"].as_u64().unwrap();
        let session = dana.session.clone();
        dana.drop_conn();
        ann.ok(edit(other, "other, edited")).await;
        bob.ok(react(answer["seq"].as_u64().unwrap(), "🎉")).await;
        let resume = json!({ code.clone(): {"seq": last, "rev": seen} });
        let (dana, hello) = Client::hello(&nodes.a, "Dana", Some(&session), resume).await;
        let room = &hello["rooms"][0];
        let changed = &room["changed"];
        assert_eq!(seqs(changed), [other, answer["seq"].as_u64().unwrap()], "{retention}: {hello}");
        assert_eq!(changed[0]["body"], "other, edited");
        assert_eq!(changed[1]["reactions"][0]["emoji"], "🎉");
        assert!(room["rev"].as_u64().unwrap() >= seen + 2, "{retention}");
        // Without a change number, nothing of the kind.
        let session = dana.session.clone();
        dana.drop_conn();
        let (_dana, hello) =
            Client::hello(&nodes.b, "Dana", Some(&session), json!({ code.clone(): last })).await;
        assert!(hello["rooms"][0].get("changed").is_none(), "{retention}: {hello}");

        // A deleted message: its quotes become its tombstone, and it is
        // neither edited nor reacted to.
        bob.ok(json!({"op": "delete", "room": code, "seq": mine})).await;
        let history = ann.ok(json!({"op": "history", "room": code})).await;
        let messages = history["messages"].as_array().unwrap();
        let gone = messages.iter().find(|m| m["seq"] == json!(mine)).unwrap();
        assert!(gone.get("reactions").is_none() && gone.get("edited").is_none(), "{gone}");
        let quoting = messages.iter().find(|m| m["seq"] == answer["seq"]).unwrap();
        assert_eq!(
            (&quoting["reply"]["deleted"], &quoting["reply"]["body"]),
            (&json!(true), &json!("")),
            "{retention}: {quoting}"
        );
        assert_eq!(bob.refused(edit(mine, "back")).await, "forbidden", "{retention}");
        assert_eq!(ann.refused(react(mine, "👍")).await, "forbidden", "{retention}");
        let reply = json!({"op": "post", "room": code, "body": "what was it?", "reply": mine});
        let late = cleo.ok(reply).await;
        assert_eq!(late["message"]["reply"]["deleted"], true, "{retention}: {late}");
    }
}

/// In a public room a member reads back before their join; in a private
/// one, from it.
async fn history_before_join<B: RoomBackend>(nodes: Nodes<B>) {
    for public in [true, false] {
        let mut ann = Client::new(&nodes.a, "Ann").await;
        let code = ann.create(json!({"public": public, "backlog": 2})).await;
        ann.join(&code).await;
        for n in 1..=5 {
            ann.post(&code, &format!("m{n}")).await;
        }
        let mut bob = Client::new(&nodes.b, "Bob").await;
        let joined = bob.join(&code).await;
        assert_eq!(seqs(&joined["messages"]), [4, 5], "the join's backlog either way");
        let older = bob.ok(json!({"op": "history", "room": code, "before": 4})).await;
        let want: &[u64] = if public { &[1, 2, 3] } else { &[] };
        assert_eq!(seqs(&older["messages"]), want, "public: {public}");
        let paged = bob.ok(json!({"op": "history", "room": code, "before": 3, "limit": 1})).await;
        let want: &[u64] = if public { &[2] } else { &[] };
        assert_eq!(seqs(&paged["messages"]), want, "public: {public}");
    }
}

/// A muted member neither edits nor reacts; a shadow-muted one edits
/// what only they see, and their reactions reach nobody.
async fn muted_members_change_nothing<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let mut cleo = Client::new(&nodes.a, "Cleo").await;
    let code = ann.create(json!({})).await;
    for client in [&mut ann, &mut bob, &mut cleo] {
        client.join(&code).await;
    }
    let before = bob.post(&code, "before").await;
    let edit = |seq: u64, body: &str| json!({"op": "edit", "room": code, "seq": seq, "body": body});
    let react = |seq: u64| json!({"op": "react", "room": code, "seq": seq, "emoji": "👍"});
    ann.ok(json!({"op": "mute", "room": code, "name": "Bob"})).await;
    assert_eq!(bob.refused(edit(before, "sneaky")).await, "forbidden");
    assert_eq!(bob.refused(react(before)).await, "forbidden");
    let bob_id = bob.user.clone();
    ann.ok(json!({"op": "unmute", "room": code, "user": bob_id})).await;
    ann.ok(json!({"op": "mute", "room": code, "name": "Bob", "shadow": true})).await;
    let refused = bob.call(edit(before, "sneaky")).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("may no longer be edited"));
    let hidden = bob.post(&code, "hidden").await;
    bob.ok(edit(hidden, "hidden, edited")).await;
    assert_eq!(bob.next_in(&code, "edited").await["message"]["body"], "hidden, edited");
    assert_eq!(bob.ok(react(before)).await["on"], true, "answered as if taken");
    let marker = ann.post(&code, "marker").await;
    loop {
        let event = cleo.next_event_any().await;
        assert!(!["edited", "reacted"].contains(&event["ev"].as_str().unwrap()), "{event}");
        if event["message"]["seq"] == json!(marker) {
            break;
        }
    }
    let got = cleo.ok(json!({"op": "get", "room": code, "seq": before})).await;
    assert!(got["message"].get("reactions").is_none(), "{got}");
}

/// An edit, reaction or delete of a message reaches only those who may
/// see it: in a private room not a member who joined after it; in a
/// public one, anyone (who may read back anyway).
async fn changes_reach_those_who_see_the_message<B: RoomBackend>(nodes: Nodes<B>) {
    for public in [false, true] {
        let mut ann = Client::new(&nodes.a, "Ann").await;
        let code = ann.create(json!({"backlog": 2, "public": public})).await;
        ann.join(&code).await;
        for n in 1..=5 {
            ann.post(&code, &format!("secret {n}")).await;
        }
        let mut bob = Client::new(&nodes.b, "Bob").await;
        bob.join(&code).await;
        ann.ok(json!({"op": "edit", "room": code, "seq": 1, "body": "secret 1, edited"})).await;
        ann.ok(json!({"op": "react", "room": code, "seq": 2, "emoji": "👀"})).await;
        ann.ok(json!({"op": "delete", "room": code, "seq": 3})).await;
        ann.ok(json!({"op": "edit", "room": code, "seq": 4, "body": "secret 4, edited"})).await;
        let marker = ann.post(&code, "marker").await;
        let mut heard = Vec::new();
        loop {
            let event = bob.next_event_any().await;
            if event["message"]["seq"] == json!(marker) {
                break;
            }
            if let Some(seq) = event["seq"].as_u64() {
                heard.push(seq);
            }
        }
        let want: &[u64] = if public { &[1, 2, 3, 4] } else { &[4] };
        assert_eq!(heard, want, "public: {public}");
        let react = json!({"op": "react", "room": code, "seq": 1, "emoji": "👍"});
        if public {
            bob.ok(react).await;
        } else {
            assert_eq!(bob.refused(react).await, "not_found");
        }
    }
}

/// What a resume hears of changes is complete: many changes to one message
/// push no other out; a change number the room cannot vouch for gets every
/// changed message; a retry of a reply to a deleted message quotes its
/// tombstone.
async fn resume_changes_are_complete<B: RoomBackend>(nodes: Nodes<B>) {
    let mut ann = Client::new(&nodes.a, "Ann").await;
    let mut bob = Client::new(&nodes.b, "Bob").await;
    let code = ann.create(json!({"backlog": 10})).await;
    ann.join(&code).await;
    bob.join(&code).await;
    let first = ann.post(&code, "first").await;
    let second = ann.post(&code, "second").await;
    let reply = json!({"op": "post", "room": code, "body": "re", "cid": "r1", "reply": second});
    let answer = bob.ok(reply.clone()).await["message"]["seq"].as_u64().unwrap();
    let untouched = ann.post(&code, "untouched").await;
    let joined = bob.ok(json!({"op": "join", "room": code})).await;
    let seen = joined["rev"].as_u64().unwrap();
    let session = bob.session.clone();
    bob.drop_conn();
    ann.ok(json!({"op": "edit", "room": code, "seq": first, "body": "first, edited"})).await;
    for _ in 0..10 {
        ann.ok(json!({"op": "react", "room": code, "seq": untouched, "emoji": "👍"})).await;
    }
    ann.ok(json!({"op": "delete", "room": code, "seq": second})).await;
    let seqs_of = |hello: &Value| seqs(&hello["rooms"][0]["changed"]);
    let resume = |rev: u64| json!({ code.clone(): {"seq": untouched, "rev": rev} });
    let (bob, hello) = Client::hello(&nodes.a, "Bob", Some(&session), resume(seen)).await;
    // The reactions were put on and taken off again: the message changed
    // and is as it was, which a resume hears of too. (A quote of the
    // deleted message is the client's to update.)
    assert_eq!(seqs_of(&hello), [first, second, untouched], "{hello}");
    bob.drop_conn();
    // A change number ahead of the room's: every message that is not as
    // it was posted, the reply quoting a tombstone among them.
    let (mut bob, hello) = Client::hello(&nodes.b, "Bob", Some(&session), resume(1 << 40)).await;
    assert_eq!(seqs_of(&hello), [first, second, answer], "{hello}");
    assert_eq!(hello["rooms"][0]["changed"][2]["reply"]["deleted"], true);
    // A retry of the reply quotes the tombstone.
    let retried = bob.ok(reply).await;
    assert_eq!(retried["message"]["seq"], answer);
    assert_eq!(retried["message"]["reply"]["deleted"], true, "{retried}");
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        /// The local backend: always.
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::local().await).await;
                }
            )*
        }

        /// The Redis backend, with two nodes.
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs Redis: CONFAB_TEST_REDIS"]
                async fn $scenario() {
                    super::$scenario(super::redis().await).await;
                }
            )*
        }

        /// The Redis backend, with three nodes over three shards.
        mod sharded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs Redis: redis-server"]
                async fn $scenario() {
                    super::$scenario(super::sharded().await).await;
                }
            )*
        }
    };
}

conformance!(
    ops_and_presence,
    capacity_race,
    grace,
    leave_ends_a_seat_held_in_grace,
    ephemeral_death,
    cid_dedup,
    resume,
    visibility,
    private_rooms_answer_as_missing_ones,
    roles,
    kick,
    ban,
    mute_slow_title,
    shadow_mute,
    delete,
    operator,
    lock,
    edit_reply_react,
    history_before_join,
    muted_members_change_nothing,
    changes_reach_those_who_see_the_message,
    resume_changes_are_complete,
    a_full_store_queue_changes_nothing,
);

/// With three shards, rooms land on every one of them, and each node sees
/// every public room and reaches every room, whichever shard holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: redis-server"]
async fn rooms_spread_over_the_shards_and_every_node_reaches_them() {
    let nodes = sharded().await;
    let mut ann = Client::new(&nodes.all[0], "Ann").await;
    let mut bob = Client::new(&nodes.all[2], "Bob").await;
    // Rooms until every shard has some (the shard of a code is fixed by
    // its hash; a few rooms do, 200 is a bound that is never reached).
    let mut codes: Vec<String> = Vec::new();
    for _ in 0..200 {
        let covered: std::collections::HashSet<usize> =
            codes.iter().map(|c| confab_cluster::shard_of(c, 3)).collect();
        if covered.len() == 3 && codes.len() >= 6 {
            break;
        }
        let code = ann.create(json!({"public": true})).await;
        ann.join(&code).await;
        bob.join(&code).await;
        ann.event("join").await;
        bob.post(&code, "hello").await;
        assert_eq!(ann.event("message").await["message"]["room"], json!(code));
        codes.push(code);
    }
    let rooms = Client::new(&nodes.all[1], "Cy").await.ok(json!({"op": "rooms"})).await;
    let listed: Vec<&str> =
        rooms["rooms"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    for code in &codes {
        assert!(listed.contains(&code.as_str()), "{code} listed: {listed:?}");
    }
    // Each instance holds exactly the rooms its hash gives it.
    for (i, server) in nodes._redis.iter().enumerate() {
        let client = ::redis::Client::open(server.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> =
            ::redis::cmd("KEYS").arg("*:rooms").query_async(&mut conn).await.unwrap();
        let key = keys.iter().find(|k| k.matches(':').count() == 1).expect("a room set");
        let mut held: Vec<String> =
            ::redis::cmd("SMEMBERS").arg(key).query_async(&mut conn).await.unwrap();
        held.sort();
        // The configured board is a room too, on its own shard.
        let mut expected: Vec<String> = codes
            .iter()
            .map(String::as_str)
            .chain(["main"])
            .filter(|c| confab_cluster::shard_of(c, 3) == i)
            .map(str::to_owned)
            .collect();
        expected.sort();
        assert!(!held.is_empty());
        assert_eq!(held, expected, "shard {i}");
    }
}

/// A shard that restarts empty is noticed: the connections in its rooms
/// are closed to resume, its persistent rooms come back from the store
/// with their messages' `seq`, its ephemeral rooms are gone, and rooms on
/// the other shards carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: redis-server"]
async fn a_shard_that_loses_its_data_is_noticed_and_its_rooms_start_over() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let nodes = cluster_with(&urls.join(","), 1, servers, Duration::from_millis(900)).await;
    let shard = |code: &str| confab_cluster::shard_of(code, 2);
    let mut ann = Client::new(&nodes.a, "Ann").await;
    // The shard that loses its data is not the first (whose loss also
    // ends the node's lease, and is noticed that way too).
    let lost = 1;
    let mut persistent = ann.create(json!({"retention": "persistent"})).await;
    for _ in 0..200 {
        if shard(&persistent) == lost {
            break;
        }
        persistent = ann.create(json!({"retention": "persistent"})).await;
    }
    assert_eq!(shard(&persistent), lost);
    // An ephemeral room on the same shard, and one on the other.
    let (mut here, mut there) = (None, None);
    for _ in 0..200 {
        let code = ann.create(json!({})).await;
        match shard(&code) == lost {
            true => here = here.or(Some(code)),
            false => there = there.or(Some(code)),
        }
        if here.is_some() && there.is_some() {
            break;
        }
    }
    let (here, there) = (here.unwrap(), there.unwrap());
    let mut bob = Client::new(&nodes.a, "Bob").await;
    for code in [&persistent, &here] {
        ann.join(code).await;
        ann.post(code, "before").await;
    }
    bob.join(&there).await;
    bob.post(&there, "before").await;
    let flushed = ::redis::Client::open(nodes._redis[lost].url.as_str()).unwrap();
    let mut conn = flushed.get_multiplexed_async_connection().await.unwrap();
    let () = ::redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    // Ann's connection is closed to resume (its rooms are on that shard).
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ann.rx.next().await {
                confab_core::Next::Frame(_) => {}
                confab_core::Next::Closed(reason) => return Some(reason),
                confab_core::Next::End => return None,
            }
        }
    })
    .await
    .expect("the connection is closed within 10 s");
    assert_eq!(closed, Some(confab_core::CloseReason::Resync));
    // The persistent room is back, with its seq; the ephemeral one is gone.
    let mut cy = Client::new(&nodes.a, "Cy").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let joined = loop {
        let reply = cy.call(json!({"op": "join", "room": persistent})).await;
        if reply["ok"] == true {
            break reply;
        }
        assert!(tokio::time::Instant::now() < deadline, "not recorded again: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(joined["seq"], 1);
    assert_eq!(cy.refused(json!({"op": "join", "room": here})).await, "not_found");
    // The other shard's room carries on.
    assert_eq!(bob.post(&there, "after").await, 2);
}

/// A Redis that holds what another version wrote under the namespace (an
/// epoch without this version's layout, or rooms and no epoch at all) is
/// refused at start with what to do, not read as if it were this one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: redis-server"]
async fn a_redis_holding_another_versions_data_is_refused() {
    let server = RedisServer::start();
    let client = ::redis::Client::open(server.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = ::redis::cmd("SET")
        .arg("old:epoch")
        .arg("0123456789abcdef")
        .query_async(&mut conn)
        .await
        .unwrap();
    let () = ::redis::cmd("SADD")
        .arg("older:rooms")
        .arg("K7QX2M")
        .query_async(&mut conn)
        .await
        .map(|_: i64| ())
        .unwrap();
    let start = |namespace: &str| {
        let (url, namespace) = (server.url.clone(), namespace.to_owned());
        async move {
            let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
            let services = Services::open(config("n1"), store).await.unwrap();
            let cluster = ClusterConfig { namespace, ..ClusterConfig::new(url) };
            ClusterRooms::start(cluster, services).await.map(|_| ())
        }
    };
    for namespace in ["old", "older"] {
        let refused = start(namespace).await.expect_err(namespace).to_string();
        assert!(refused.contains("another confab version"), "{namespace}: {refused}");
        assert!(refused.contains(namespace), "{refused}");
    }
    // Nothing was written there, and an empty namespace is taken.
    let epoch: Option<String> =
        ::redis::cmd("GET").arg("older:epoch").query_async(&mut conn).await.unwrap();
    assert_eq!(epoch, None);
    start("new").await.expect("a namespace of its own starts");
}
