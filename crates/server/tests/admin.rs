//! The operator's API against the real server: off without a token,
//! refused without the right one, and each action done and audited —
//! every room and its members, a notice, a purge, a site-wide address ban
//! (of a client a trusted proxy forwards), and closing a room. (The room
//! ops on both backends are in the cluster crate's conformance suite.)

mod common;

use common::http::{Http, Response};
use common::{TestServer, join, post, start_with};
use confab_client::WsClient;
use serde_json::{Value, json};

const TOKEN: &str = "an-operator-token-of-some-length";

async fn admin(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Value,
    token: &str,
) -> Response {
    let mut http = Http::connect(server.http).await.unwrap();
    let bearer = format!("Bearer {token}");
    let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
    http.send_with(method, path, &[("Authorization", &bearer)], &body).await.unwrap();
    http.response().await.unwrap()
}

/// A client whose connection a trusted proxy forwards for `address`.
async fn from(server: &TestServer, address: &str, name: &str) -> WsClient {
    let mut client = WsClient::connect_forwarded(&server.url, address).await.unwrap();
    client.ok(json!({"op": "hello", "name": name})).await.unwrap();
    client
}

#[tokio::test]
async fn without_a_token_the_api_is_not_there() {
    let server = start_with(|_| {}).await;
    let answer = admin(&server, "GET", "/admin/v1/rooms", Value::Null, TOKEN).await;
    assert_eq!(answer.status, 404);
}

#[tokio::test]
async fn the_operator_lists_announces_purges_bans_and_closes() {
    let audit = tempfile::NamedTempFile::new().unwrap();
    let audit_path = audit.path().to_owned();
    let server = start_with(move |c| {
        c.admin_token = Some(confab_server::config::Secret::new(TOKEN));
        c.edge.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.audit_log = Some(audit_path);
    })
    .await;
    // Refused without the token, or with another.
    for token in ["", "not-the-operator-token-at-all!"] {
        let answer = admin(&server, "GET", "/admin/v1/rooms", Value::Null, token).await;
        assert_eq!(answer.status, 401, "{token:?}");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        assert_eq!(answer.json()["error"]["code"], "unauthenticated");
    }

    let mut ann = server.client("Ann").await;
    let private = server.create(&mut ann, json!({})).await;
    join(&mut ann, &private).await;
    let mut troll = from(&server, "203.0.113.9", "Troll").await;
    join(&mut troll, &private).await;
    let posted = post(&mut troll, &private, "spam spam spam").await;
    let troll_user = posted["from"]["id"].as_str().unwrap().to_owned();

    // Every room, the private one too, and its members.
    let rooms = admin(&server, "GET", "/admin/v1/rooms", Value::Null, TOKEN).await.json();
    let listed = rooms["rooms"].as_array().unwrap().iter().find(|r| r["code"] == json!(private));
    assert_eq!(listed.unwrap()["members"], 2, "{rooms}");
    let room =
        admin(&server, "GET", &format!("/admin/v1/rooms/{private}"), Value::Null, TOKEN).await;
    assert_eq!(room.json()["members"].as_array().unwrap().len(), 2);
    let missing = admin(&server, "GET", "/admin/v1/rooms/NOSUCH", Value::Null, TOKEN).await;
    assert_eq!(missing.status, 404);

    // The operator names a board's moderator; a board has no owner.
    let mut mod_ = server.client("Mod").await;
    join(&mut mod_, "main").await;
    let named = json!({"name": "mod", "role": "moderator"});
    let answer = admin(&server, "POST", "/admin/v1/rooms/main/roles", named, TOKEN).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(mod_.event("role").await.unwrap()["role"], "moderator");
    mod_.ok(json!({"op": "slow", "room": "main", "seconds": 0})).await.unwrap();
    let owner = json!({"name": "mod", "role": "owner"});
    assert_eq!(
        admin(&server, "POST", "/admin/v1/rooms/main/roles", owner, TOKEN).await.status,
        400
    );

    // A notice to every room.
    let told =
        admin(&server, "POST", "/admin/v1/announce", json!({"text": "back in 5"}), TOKEN).await;
    assert_eq!(told.status, 200, "{:?}", told.json());
    assert_eq!(ann.event("notice").await.unwrap()["text"], "back in 5");
    let two_lines = json!({"text": "one\ntwo"});
    assert_eq!(admin(&server, "POST", "/admin/v1/announce", two_lines, TOKEN).await.status, 400);

    // The troll's messages purged.
    let purge = format!("/admin/v1/users/{troll_user}/purge");
    assert_eq!(admin(&server, "POST", &purge, Value::Null, TOKEN).await.status, 200);
    assert_eq!(ann.event("purged").await.unwrap()["user_id"], json!(troll_user));
    let history = ann.ok(json!({"op": "history", "room": private})).await.unwrap();
    assert_eq!(history["messages"][0]["deleted"], true, "{history}");
    let bad_user = admin(&server, "POST", "/admin/v1/users/nobody/purge", Value::Null, TOKEN).await;
    assert_eq!(bad_user.status, 400);

    // The troll's address banned from the server: the open connection is
    // told and closed at once (its seats go without grace), a new session
    // is refused; others come in.
    let ban = json!({"address": "203.0.113.9", "reason": "spam"});
    let banned = admin(&server, "POST", "/admin/v1/bans", ban, TOKEN).await.json();
    let hash = banned["ban"]["address"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 32, "a keyed hash: {banned}");
    assert!(!banned.to_string().contains("203.0.113"), "{banned}");
    let told = troll.event("error").await.unwrap();
    assert_eq!(told["error"]["message"], "this address is banned from this server", "{told}");
    assert_eq!(troll.closed().await.unwrap(), Some(1008));
    let left = ann.event("leave").await.unwrap();
    assert_eq!(left["reason"], "disconnected", "{left}");
    let mut again = WsClient::connect_forwarded(&server.url, "203.0.113.9").await.unwrap();
    let hello = again.request(json!({"op": "hello", "name": "Sock"})).await.unwrap();
    assert_eq!(hello["error"]["code"], "forbidden", "{hello}");
    let mut other = from(&server, "203.0.113.10", "Other").await;
    join(&mut other, &private).await;
    let listed = admin(&server, "GET", "/admin/v1/bans", Value::Null, TOKEN).await.json();
    assert_eq!(listed["bans"][0]["address"], json!(hash), "{listed}");
    let loopback = admin(&server, "POST", "/admin/v1/bans", json!({"address": "::1"}), TOKEN).await;
    assert_eq!(loopback.status, 400);
    let lift = admin(&server, "DELETE", "/admin/v1/bans/203.0.113.9", Value::Null, TOKEN).await;
    assert_eq!(lift.status, 200);
    let lift =
        admin(&server, "DELETE", &format!("/admin/v1/bans/{hash}"), Value::Null, TOKEN).await;
    assert_eq!(lift.status, 404, "lifted already");
    from(&server, "203.0.113.9", "Sock").await;

    // The room closed: its members are told.
    let close = format!("/admin/v1/rooms/{private}/close");
    assert_eq!(admin(&server, "POST", &close, Value::Null, TOKEN).await.status, 200);
    let closed = ann.event("closed").await.unwrap();
    assert_eq!((&closed["room"], &closed["reason"]), (&json!(private), &json!("closed")));
    assert_eq!(ann.error_code(json!({"op": "join", "room": private})).await.unwrap(), "not_found");
    let board = admin(&server, "POST", "/admin/v1/rooms/main/close", Value::Null, TOKEN).await;
    assert_eq!(board.status, 400);

    // Each action is in the audit log, the token in none of it.
    let mut actions = Vec::new();
    for _ in 0..200 {
        let text = std::fs::read_to_string(audit.path()).unwrap();
        actions = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["kind"] == "admin")
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect();
        if actions.len() == 6 {
            assert!(!text.contains(TOKEN));
            assert!(!text.contains("203.0.113.9"), "no address: {text}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(actions, ["role", "announce", "purge", "ban", "unban", "close"]);
}

#[tokio::test]
async fn the_defensive_mode_asks_new_sessions_for_work_and_lets_known_ones_in() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let server =
        start_with(|c| c.admin_token = Some(confab_server::config::Secret::new(TOKEN))).await;
    let on = admin(&server, "POST", "/admin/v1/defense", json!({"bits": 8}), TOKEN).await;
    assert_eq!(on.json()["bits"], 8);
    let too_hard = admin(&server, "POST", "/admin/v1/defense", json!({"bits": 40}), TOKEN).await;
    assert_eq!(too_hard.status, 400);

    // A new visitor is asked to solve a puzzle, then let in.
    let mut ann = WsClient::connect(&server.url).await.unwrap();
    let asked = ann.request(json!({"op": "hello", "name": "Ann"})).await.unwrap();
    assert_eq!(asked["error"]["code"], "forbidden", "{asked}");
    let challenge: confab_proto::Challenge =
        serde_json::from_value(asked["error"]["challenge"].clone()).unwrap();
    assert_eq!(challenge.bits, 8);
    let pow = confab_core::pow::solve(&challenge);
    let wrong = json!({"op": "hello", "name": "Ann", "pow": {"token": pow.token, "nonce": "x"}});
    let refused = ann.request(wrong).await.unwrap();
    assert!(refused["error"]["challenge"].is_object(), "a new puzzle: {refused}");
    let hello = json!({"op": "hello", "name": "Ann", "pow": pow});
    let welcome = ann.ok(hello.clone()).await.unwrap();
    let session = welcome["session"].as_str().unwrap().to_owned();
    // The same answer twice: refused.
    let mut sock = WsClient::connect(&server.url).await.unwrap();
    let again = sock.request(hello).await.unwrap();
    assert!(again["error"]["message"].as_str().unwrap().contains("used already"), "{again}");
    // A known session needs no puzzle.
    let (_tab, _) = server.tab("Ann", &session).await;
    // The terminal says how to come in.
    let stream = tokio::net::TcpStream::connect(server.server.tcp_addr()).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"Term\n").await.unwrap();
    let line = loop {
        let line = tokio::time::timeout(confab_client::WAIT, lines.next_line()).await.unwrap();
        let line = line.unwrap().unwrap();
        if line.starts_with("error:") {
            break line;
        }
    };
    assert!(line.contains("defensive mode") && line.contains("%session"), "{line}");
    // Off again: anyone comes in.
    admin(&server, "POST", "/admin/v1/defense", json!({"bits": 0}), TOKEN).await;
    server.client("Bob").await;
}
