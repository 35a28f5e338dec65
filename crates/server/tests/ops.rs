//! Every op of the protocol and every error code, over a real WebSocket.

mod common;

use common::{events, join, post, start, start_with};
use confab_client::WsClient;
use serde_json::json;

#[tokio::test]
async fn hello_issues_a_secret_session_and_a_public_id() {
    let server = start().await;
    let (mut a, hello) = WsClient::hello(&server.url, "Ann").await.unwrap();
    let session = hello["session"].as_str().unwrap().to_owned();
    let id = hello["user"]["id"].as_str().unwrap().to_owned();
    assert!(session.len() >= 22, "session token too short: {session}");
    assert!(id.starts_with("u_"));
    assert_ne!(session, id);
    assert_eq!(hello["user"]["name"], "Ann");
    assert_eq!(hello["server"]["node"], "local");
    assert_eq!(hello["rooms"], json!([]));
    // The same token is the same user; an unknown one gets a fresh session.
    let (_b, again) = server.tab("Ann", &session).await;
    assert_eq!(again["user"]["id"], id);
    assert_eq!(again["session"], session.as_str());
    let (_c, fresh) = server.tab("Ann", "no-such-session").await;
    assert_ne!(fresh["user"]["id"], id);
    assert_ne!(fresh["session"], "no-such-session");
    // hello twice on one connection is refused, and the connection lives on.
    assert_eq!(a.error_code(json!({"op": "hello", "name": "Ann"})).await.unwrap(), "bad_request");
    a.ok(json!({"op": "ping"})).await.unwrap();
}

#[tokio::test]
async fn hello_validates_the_name() {
    let server = start().await;
    let mut c = WsClient::connect(&server.url).await.unwrap();
    for name in [json!(""), json!("   "), json!("x".repeat(33)), json!("a\u{1b}b"), json!(5)] {
        assert_eq!(
            c.error_code(json!({"op": "hello", "name": name})).await.unwrap(),
            "bad_request",
            "{name}"
        );
    }
    let reply = c.ok(json!({"op": "hello", "name": "  Éloïse  "})).await.unwrap();
    assert_eq!(reply["user"]["name"], "Éloïse");
}

#[tokio::test]
async fn everything_before_hello_is_unauthenticated() {
    let server = start().await;
    let mut c = WsClient::connect(&server.url).await.unwrap();
    for op in [
        json!({"op": "ping"}),
        json!({"op": "rooms"}),
        json!({"op": "join", "room": "main"}),
        json!({"op": "create"}),
        json!({"op": "post", "room": "main", "body": "hi"}),
        json!({"op": "mine"}),
    ] {
        assert_eq!(c.error_code(op.clone()).await.unwrap(), "unauthenticated", "{op}");
    }
    // Without an id the error comes as an event.
    c.send_text(r#"{"op":"rooms"}"#).await.unwrap();
    let error = c.event("error").await.unwrap();
    assert_eq!(error["error"]["code"], "unauthenticated");
    c.ok(json!({"op": "hello", "name": "Ann"})).await.unwrap();
    c.ok(json!({"op": "ping"})).await.unwrap();
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_stays_usable() {
    let server = start().await;
    let mut c = server.client("Ann").await;
    for bad in ["{nope", "[1,2,3]", "42", r#"{"op":7}"#, r#"{"id":"x","op":"ping"}"#, "{}"] {
        c.send_text(bad).await.unwrap();
        let error = c.event("error").await.unwrap();
        assert_eq!(error["error"]["code"], "bad_request", "{bad}");
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    // With an id, the error is the reply, and it says what was wrong.
    let reply = c.request(json!({"op": "dance"})).await.unwrap();
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "bad_request");
    assert!(reply["error"]["message"].as_str().unwrap().contains("dance"));
    let reply = c.request(json!({"op": "join"})).await.unwrap();
    assert!(reply["error"]["message"].as_str().unwrap().contains("room"), "{reply}");
    for op in [
        json!({"op": "join", "room": 5}),
        json!({"op": "post", "room": "main", "body": ["x"]}),
        json!({"op": "typing", "room": "main", "active": "yes"}),
        json!({"op": "create", "capacity": "four"}),
        json!({"op": "create", "retention": "forever"}),
        json!({"op": "history", "room": "main", "limit": -1}),
        json!({"op": "get", "room": "main"}),
    ] {
        assert_eq!(c.error_code(op.clone()).await.unwrap(), "bad_request", "{op}");
    }
    c.ok(json!({"op": "ping"})).await.unwrap();
    join(&mut c, "main").await;
    post(&mut c, "main", "still here").await;
}

#[tokio::test]
async fn values_over_a_limit_are_too_large_and_nothing_is_stored() {
    let server = start().await;
    let mut c = server.client("Ann").await;
    join(&mut c, "main").await;
    let cases = [
        json!({"op": "post", "room": "main", "body": "x".repeat(4001)}),
        json!({"op": "post", "room": "main", "body": "hi", "subject": "s".repeat(121)}),
        json!({"op": "post", "room": "main", "body": "hi", "cid": "c".repeat(65)}),
        json!({"op": "create", "title": "t".repeat(81)}),
    ];
    for op in cases {
        assert_eq!(c.error_code(op.clone()).await.unwrap(), "too_large", "{op}");
    }
    // A body of exactly the limit, counted in characters, is fine.
    let message = post(&mut c, "main", &"é".repeat(4000)).await;
    assert_eq!(message["seq"], 1, "refused posts must not use up sequence numbers");
    let bad_request = [
        json!({"op": "post", "room": "main", "body": "   "}),
        json!({"op": "create", "capacity": 1}),
        json!({"op": "create", "capacity": 0}),
        json!({"op": "history", "room": "main", "limit": 201}),
        json!({"op": "history", "room": "main", "limit": 0}),
    ];
    for op in bad_request {
        assert_eq!(c.error_code(op.clone()).await.unwrap(), "bad_request", "{op}");
    }
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_with_1009() {
    let server = start().await;
    let mut c = server.client("Ann").await;
    let huge = format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    c.send_text(huge).await.unwrap();
    assert_eq!(c.closed().await.unwrap(), Some(1009));
}

#[tokio::test]
async fn posts_get_gapless_sequence_numbers_and_reach_the_others() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    let code = server.create(&mut ann, json!({"title": "Tea", "capacity": 4})).await;
    assert_eq!(code.len(), 6);
    let joined = join(&mut ann, &code).await;
    assert_eq!(joined["room"]["title"], "Tea");
    assert_eq!(joined["seq"], 0);
    join(&mut bob, &code.to_lowercase()).await;
    let seen = ann.event("join").await.unwrap();
    assert_eq!(seen["user"]["name"], "Bob");
    assert_eq!(seen["room"], code.as_str());
    for i in 1..=5 {
        let message = ann
            .ok(json!({"op": "post", "room": code, "body": format!("m{i}"), "subject": "s"}))
            .await
            .unwrap()["message"]
            .clone();
        assert_eq!(message["seq"], i);
        assert_eq!(message["from"]["name"], "Ann");
        assert_eq!(message["subject"], "s");
        let ts = message["ts"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
        let event = bob.event("message").await.unwrap();
        assert_eq!(event["message"], message);
    }
    // The poster gets the reply, not the event.
    assert!(!events(&ann.drain().await.unwrap()).contains(&"message".to_owned()));
}

#[tokio::test]
async fn a_repeated_cid_returns_the_first_message_and_is_not_broadcast_again() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    join(&mut ann, "main").await;
    join(&mut bob, "main").await;
    let op = json!({"op": "post", "room": "main", "body": "once", "cid": "c-1"});
    let first = ann.ok(op.clone()).await.unwrap()["message"].clone();
    let again = ann.ok(op).await.unwrap()["message"].clone();
    assert_eq!(first, again);
    assert_eq!(first["cid"], "c-1");
    let frames = bob.drain().await.unwrap();
    let messages: Vec<_> = frames.iter().filter(|f| f["ev"] == "message").collect();
    assert_eq!(messages.len(), 1, "{frames:?}");
    // Another user may use the same cid.
    let theirs =
        bob.ok(json!({"op": "post", "room": "main", "body": "mine", "cid": "c-1"})).await.unwrap();
    assert_eq!(theirs["message"]["seq"], 2);
}

#[tokio::test]
async fn typing_goes_to_the_other_members_only() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    join(&mut ann, "main").await;
    join(&mut bob, "main").await;
    ann.ok(json!({"op": "typing", "room": "main", "active": true})).await.unwrap();
    let typing = bob.event("typing").await.unwrap();
    assert_eq!(typing["user"]["name"], "Ann");
    assert_eq!(typing["active"], true);
    assert!(!events(&ann.drain().await.unwrap()).contains(&"typing".to_owned()));
    let mut eve = server.client("Eve").await;
    assert_eq!(
        eve.error_code(json!({"op": "typing", "room": "main", "active": true})).await.unwrap(),
        "not_member"
    );
}

#[tokio::test]
async fn rooms_lists_public_rooms_with_live_counts() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    let public = server.create(&mut ann, json!({"title": "Open", "public": true})).await;
    let private = server.create(&mut ann, json!({"title": "Secret"})).await;
    join(&mut ann, &public).await;
    let rooms = ann.ok(json!({"op": "rooms"})).await.unwrap()["rooms"].clone();
    let codes: Vec<&str> =
        rooms.as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes[0], "main", "boards come first");
    assert!(codes.contains(&public.as_str()));
    assert!(!codes.contains(&private.as_str()));
    let open = rooms.as_array().unwrap().iter().find(|r| r["code"] == public.as_str()).unwrap();
    assert_eq!(open["members"], 1);
    assert_eq!(open["retention"], "ephemeral");
    assert_eq!(open["public"], true);
    let main = &rooms[0];
    assert_eq!(
        (main["retention"].as_str(), main["backlog"].as_u64()),
        (Some("persistent"), Some(2))
    );
    assert_eq!(main["capacity"], json!(null));
    // The same list over HTTP.
    let (status, body) = server.get("/api/v1/rooms").await;
    assert_eq!(status, 200);
    assert!(body.contains(&public) && !body.contains(&private));
}

#[tokio::test]
async fn members_history_and_get_respect_membership_and_visibility() {
    let server = start_with(|c| c.hub.room_backlog = 3).await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({})).await;
    join(&mut ann, &code).await;
    for i in 1..=10 {
        post(&mut ann, &code, &format!("m{i}")).await;
    }
    let mut bob = server.client("Bob").await;
    // A private room's members, history and messages are for members only.
    for op in [
        json!({"op": "members", "room": code}),
        json!({"op": "history", "room": code}),
        json!({"op": "get", "room": code, "seq": 10}),
        json!({"op": "post", "room": code, "body": "hi"}),
        json!({"op": "leave", "room": code}),
    ] {
        assert_eq!(bob.error_code(op.clone()).await.unwrap(), "not_member", "{op}");
    }
    let joined = join(&mut bob, &code).await;
    let seqs: Vec<u64> =
        joined["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [8, 9, 10], "a joiner sees the backlog of 3");
    assert_eq!(joined["seq"], 10);
    assert_eq!(joined["gap"], false);
    let members = bob.ok(json!({"op": "members", "room": code})).await.unwrap();
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    // History never reaches past what Bob may see.
    let history = bob.ok(json!({"op": "history", "room": code})).await.unwrap();
    assert_eq!(history["messages"].as_array().unwrap().len(), 3);
    assert_eq!(
        bob.error_code(json!({"op": "get", "room": code, "seq": 7})).await.unwrap(),
        "not_found"
    );
    assert_eq!(
        bob.ok(json!({"op": "get", "room": code, "seq": 8})).await.unwrap()["message"]["body"],
        "m8"
    );
    // Ann, there from the start, pages back with `before` and `limit`.
    let page =
        ann.ok(json!({"op": "history", "room": code, "before": 6, "limit": 2})).await.unwrap();
    let seqs: Vec<u64> =
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [4, 5]);
    assert_eq!(
        ann.error_code(json!({"op": "get", "room": code, "seq": 11})).await.unwrap(),
        "not_found"
    );
    assert_eq!(ann.error_code(json!({"op": "join", "room": "NOPE22"})).await.unwrap(), "not_found");
    // Only `join` tells a room that does not exist from one not joined.
    assert_eq!(
        ann.error_code(json!({"op": "members", "room": "NOPE22"})).await.unwrap(),
        "not_member"
    );
}

#[tokio::test]
async fn the_main_board_shows_a_joiner_the_last_two_messages() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    for i in 1..=5 {
        post(&mut ann, "main", &format!("m{i}")).await;
    }
    let mut bob = server.client("Bob").await;
    let joined = join(&mut bob, "MAIN").await;
    let bodies: Vec<&str> = joined["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["m4", "m5"]);
    // Then everything posted while a member.
    post(&mut ann, "main", "m6").await;
    assert_eq!(bob.event("message").await.unwrap()["message"]["body"], "m6");
}

#[tokio::test]
async fn boards_and_their_backlog_are_configurable() {
    let server = start_with(|c| {
        c.hub.boards = vec![confab_core::BoardConfig {
            name: "lobby".into(),
            title: "Lobby".into(),
            backlog: 1,
        }];
    })
    .await;
    let mut ann = server.client("Ann").await;
    assert_eq!(ann.error_code(json!({"op": "join", "room": "main"})).await.unwrap(), "not_found");
    join(&mut ann, "lobby").await;
    post(&mut ann, "lobby", "a").await;
    post(&mut ann, "lobby", "b").await;
    let mut bob = server.client("Bob").await;
    let joined = join(&mut bob, "Lobby").await;
    assert_eq!(joined["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn join_since_returns_what_was_missed_and_reports_gaps() {
    let server = start_with(|c| c.hub.room_window = 5).await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"backlog": 5})).await;
    join(&mut ann, &code).await;
    for i in 1..=4 {
        post(&mut ann, &code, &format!("m{i}")).await;
    }
    let again = ann.ok(json!({"op": "join", "room": code, "since": 2})).await.unwrap();
    let seqs: Vec<u64> =
        again["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3, 4]);
    assert_eq!(again["gap"], false);
    for i in 5..=9 {
        post(&mut ann, &code, &format!("m{i}")).await;
    }
    // Messages 3 and 4 fell out of the 5-message window.
    let again = ann.ok(json!({"op": "join", "room": code, "since": 2})).await.unwrap();
    let seqs: Vec<u64> =
        again["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [5, 6, 7, 8, 9]);
    assert_eq!(again["gap"], true);
    let current = ann.ok(json!({"op": "join", "room": code, "since": 9})).await.unwrap();
    assert_eq!(current["messages"], json!([]));
    assert_eq!(current["gap"], false);
}

#[tokio::test]
async fn hello_resume_rejoins_rooms_and_leaves_out_the_ones_it_cannot() {
    let server = start().await;
    let (mut ann, hello) = WsClient::hello(&server.url, "Ann").await.unwrap();
    let session = hello["session"].as_str().unwrap().to_owned();
    let mut bob = server.client("Bob").await;
    join(&mut ann, "main").await;
    join(&mut bob, "main").await;
    post(&mut bob, "main", "one").await;
    ann.close().await;
    post(&mut bob, "main", "two").await;
    let mut tab = WsClient::connect(&server.url).await.unwrap();
    let reply = tab
        .ok(json!({"op": "hello", "name": "Ann", "session": session,
                   "resume": {"main": 1, "GONE99": 4}}))
        .await
        .unwrap();
    let rooms = reply["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 1, "{reply}");
    assert_eq!(rooms[0]["room"]["code"], "main");
    assert_eq!(rooms[0]["messages"][0]["body"], "two");
    assert_eq!(rooms[0]["messages"].as_array().unwrap().len(), 1);
    // The resumed connection is joined: it can post straight away.
    post(&mut tab, "main", "back").await;
    assert_eq!(bob.event("message").await.unwrap()["message"]["body"], "back");
}

#[tokio::test]
async fn health_answers() {
    let server = start().await;
    let _ann = server.client("Ann").await;
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["connections"], 1);
}

#[tokio::test]
async fn an_unknown_address_gets_a_404_page_and_the_api_a_json_error() {
    let server = start().await;
    let (status, page) = server.get("/no/such/page").await;
    assert_eq!(status, 404);
    assert!(page.contains("<title>Page not found · confab</title>"), "{page}");
    assert!(page.contains(r#"href="/""#), "the page leads back home: {page}");
    let (status, body) = server.get("/api/v1/no-such-thing").await;
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    // What is there still answers.
    assert_eq!(server.get("/").await.0, 200);
    assert_eq!(server.get("/api/v1/rooms").await.0, 200);
}
