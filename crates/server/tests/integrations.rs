//! A room's integrations against the real server: made and revoked by the
//! room's owner only, the HTTP API (post, history, members) with their
//! tokens, the Slack-compatible incoming webhook, the refusals, the
//! budget per token, and the OpenAPI description matching the routes.

mod common;

use common::http::{Http, Response};
use common::{join, start};
use serde_json::{Value, json};

/// Sends a request with a bearer token (or none).
async fn call(
    server: &common::TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Response {
    let mut http = Http::connect(server.http).await.unwrap();
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> =
        auth.as_deref().map(|a| vec![("Authorization", a)]).unwrap_or_default();
    http.send_with(method, path, &headers, body).await.unwrap();
    http.response().await.unwrap()
}

/// A request that must be refused: method, path, token, body, status, code.
type Case<'a> = (&'a str, String, Option<&'a str>, &'a [u8], u16, &'a str);

fn error_code(response: &Response) -> String {
    response.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_owner_s_integration_posts_reads_and_hooks_as_a_bot() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    let code = server.create(&mut ann, json!({"retention": "persistent", "title": "Builds"})).await;
    join(&mut ann, &code).await;
    let mut bob = server.client("Bob").await;
    join(&mut bob, &code).await;

    // The owner only; a persistent room only; known scopes only.
    let make =
        |scopes: Value| json!({"op": "integrate", "room": code, "name": "CI", "scopes": scopes});
    assert_eq!(bob.error_code(make(json!(["post"]))).await.unwrap(), "forbidden");
    assert_eq!(ann.error_code(make(json!(["admin"]))).await.unwrap(), "bad_request");
    let fleeting = server.create(&mut ann, json!({})).await;
    join(&mut ann, &fleeting).await;
    let ephemeral = json!({"op": "integrate", "room": fleeting, "name": "CI"});
    assert_eq!(ann.error_code(ephemeral).await.unwrap(), "bad_request");
    let made = ann.ok(make(json!(["post", "read"]))).await.unwrap();
    let token = made["token"].as_str().unwrap().to_owned();
    assert_eq!(made["hook"], format!("/api/v1/hooks/{token}"));
    assert_eq!(made["integration"]["user"]["name"], "CI");
    assert_eq!(
        ann.error_code(make(json!(["read"]))).await.unwrap(),
        "bad_request",
        "one name once"
    );
    let read_only = json!({"op": "integrate", "room": code, "name": "Reader", "scopes": ["read"]});
    let reader = ann.ok(read_only).await.unwrap()["token"].as_str().unwrap().to_owned();
    let listed = ann.ok(json!({"op": "integrations", "room": code})).await.unwrap();
    assert_eq!(listed["integrations"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&token), "a token is shown once");

    // Posting: the bot's message, marked, to everyone; a retried cid once.
    let path = format!("/api/v1/rooms/{code}/messages");
    let body = br#"{"body": "build 41 passed", "cid": "build-41"}"#;
    let posted = call(&server, "POST", &path, Some(&token), body).await;
    assert_eq!(posted.status, 201, "{:?}", String::from_utf8_lossy(&posted.body));
    let message = posted.json()["message"].clone();
    assert_eq!((&message["bot"], &message["from"]["name"]), (&json!(true), &json!("CI")));
    let heard = bob.event("message").await.unwrap();
    assert_eq!(heard["message"], message);
    let again = call(&server, "POST", &path, Some(&token), body).await;
    assert_eq!(again.json()["message"]["seq"], message["seq"], "the retry answers the first");
    let lower = format!("/api/v1/rooms/{}/messages", code.to_lowercase());
    let other_case = call(&server, "POST", &lower, Some(&token), br#"{"body": "x"}"#).await;
    assert_eq!(other_case.status, 201, "a code in any case");
    assert_eq!(bob.event("message").await.unwrap()["message"]["body"], "x");

    // Reading: history and members.
    let history = call(&server, "GET", &format!("{path}?limit=10"), Some(&reader), b"").await;
    assert_eq!(history.status, 200);
    let history = history.json();
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert!(bodies.contains(&"build 41 passed"), "{bodies:?}");
    let members =
        call(&server, "GET", &format!("/api/v1/rooms/{code}/members"), Some(&reader), b"").await;
    let names: Vec<String> = members.json()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"CI".to_owned()) && names.contains(&"Ann".to_owned()), "{names:?}");

    // The incoming webhook: Slack's body, answered `ok`.
    let hook = call(
        &server,
        "POST",
        &format!("/api/v1/hooks/{token}"),
        None,
        br#"{"text": "deploy done", "username": "x"}"#,
    )
    .await;
    assert_eq!((hook.status, hook.body.as_slice()), (200, b"ok".as_slice()));
    let heard = bob.event("message").await.unwrap();
    assert_eq!(
        (&heard["message"]["body"], &heard["message"]["bot"]),
        (&json!("deploy done"), &json!(true))
    );

    // Refusals, each with its status and code.
    let cases: Vec<Case> = vec![
        ("POST", path.clone(), None, br#"{"body": "x"}"#, 401, "unauthenticated"),
        ("POST", path.clone(), Some("i_nope.nope"), br#"{"body": "x"}"#, 401, "unauthenticated"),
        ("POST", path.clone(), Some(&reader), br#"{"body": "x"}"#, 403, "forbidden"),
        (
            "POST",
            format!("/api/v1/rooms/{fleeting}/messages"),
            Some(&token),
            br#"{"body": "x"}"#,
            404,
            "not_found",
        ),
        ("POST", path.clone(), Some(&token), b"not json", 400, "bad_request"),
        ("POST", path.clone(), Some(&token), br#"{"body": "x", "sneaky": 1}"#, 400, "bad_request"),
        ("POST", path.clone(), Some(&token), br#"{"body": "   "}"#, 400, "bad_request"),
        ("GET", format!("{path}?limit=abc"), Some(&reader), b"", 400, "bad_request"),
        (
            "POST",
            "/api/v1/hooks/i_nope.nope".into(),
            None,
            br#"{"text": "x"}"#,
            401,
            "unauthenticated",
        ),
        ("POST", format!("/api/v1/hooks/{token}"), None, br#"{"txt": "x"}"#, 400, "bad_request"),
    ];
    for (method, path, token, body, status, code) in cases {
        let response = call(&server, method, &path, token, body).await;
        assert_eq!(
            (response.status, error_code(&response).as_str()),
            (status, code),
            "{method} {path} {token:?}"
        );
    }
    let unauthorized = call(&server, "GET", &path, None, b"").await;
    assert_eq!(unauthorized.header("www-authenticate"), Some("Bearer"));

    // Each token has a budget: 20 at once, then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..30 {
        let response = call(&server, "GET", &format!("{path}?limit=1"), Some(&reader), b"").await;
        if response.status == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status, 200);
    }
    let limited = limited.expect("the budget runs out");
    assert!(limited.header("retry-after").is_some());

    // Revoked: the token no longer works.
    let id = made["integration"]["id"].as_str().unwrap();
    assert_eq!(
        bob.error_code(json!({"op": "revoke", "room": code, "integration": id})).await.unwrap(),
        "forbidden"
    );
    ann.ok(json!({"op": "revoke", "room": code, "integration": id})).await.unwrap();
    let revoke_again = json!({"op": "revoke", "room": code, "integration": id});
    assert_eq!(ann.error_code(revoke_again).await.unwrap(), "not_found");
    let after = call(&server, "POST", &path, Some(&token), br#"{"body": "x"}"#).await;
    assert_eq!(after.status, 401);

    // A bot's session is no way in as the bot, revoked or not.
    for token in [&token, &reader] {
        let session = confab_core::integrations::bot_session(token);
        let mut client = confab_client::WsClient::connect(&server.url).await.unwrap();
        let hello = json!({"op": "hello", "name": "CI", "session": session});
        assert_eq!(client.error_code(hello).await.unwrap(), "forbidden");
    }
}

#[tokio::test]
async fn the_openapi_description_names_every_route_and_only_those() {
    let server = start().await;
    let (status, body) = server.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                described.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    described.sort();
    // The routes as the server declares them.
    let source = include_str!("../src/api.rs");
    let mut routed: Vec<(String, String)> = Vec::new();
    for line in source.lines().filter(|l| l.trim_start().starts_with(".route(\"")) {
        let path = line.split('"').nth(1).unwrap().to_owned();
        let handlers = line.split_once(", ").unwrap().1;
        for method in ["get", "post", "put", "delete", "patch"] {
            if handlers.contains(&format!("{method}(")) {
                routed.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    routed.sort();
    assert_eq!(described, routed);
    // And each described route answers (unauthenticated: 401, not 404).
    for (method, path) in described {
        let path = path.replace("{room}", "main").replace("{token}", "i_x.y");
        let response = call(&server, &method, &path, None, br#"{}"#).await;
        assert_ne!(response.status, 404, "{method} {path}");
        assert_ne!(response.status, 405, "{method} {path}");
    }
}
