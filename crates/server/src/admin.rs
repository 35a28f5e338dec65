//! The operator's API, `/admin/v1/…`: every room and its members, closing
//! a room, a notice to every room, purging a user's messages, banning an
//! address from the whole server, and the defensive mode (new sessions
//! must solve a puzzle). Off unless `--admin-token` is given;
//! each request carries it as `Authorization: Bearer <token>`, and each
//! action taken is an entry of the audit log. (`confab admin` speaks it.)

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use confab_core::RoomBackend;
use confab_proto::{ErrorBody, ErrorCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::App;

/// The most characters of a notice.
const NOTICE_CHARS: usize = 500;
/// The most characters of a ban's reason.
const REASON_CHARS: usize = 200;
/// The longest site ban with an end, in minutes (a year).
const BAN_MINUTES_MAX: u32 = 366 * 24 * 60;

/// The routes; each one checks the token first.
pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/admin/v1/rooms", get(rooms))
        .route("/admin/v1/rooms/{code}", get(room))
        .route("/admin/v1/rooms/{code}/close", post(close))
        .route("/admin/v1/rooms/{code}/roles", post(grant))
        .route("/admin/v1/rooms/{code}/integrations", get(integrations).post(integrate))
        .route("/admin/v1/rooms/{code}/integrations/{id}", delete(revoke))
        .route("/admin/v1/rooms/{code}/webhooks", get(webhooks).post(webhook))
        .route("/admin/v1/rooms/{code}/webhooks/{id}", delete(unhook))
        .route("/admin/v1/announce", post(announce))
        .route("/admin/v1/users/{id}/purge", post(purge))
        .route("/admin/v1/bans", get(bans).post(ban))
        .route("/admin/v1/bans/{address}", delete(unban))
        .route("/admin/v1/defense", get(defense).post(set_defense))
        .layer(DefaultBodyLimit::max(16 * 1024))
}

/// The digest of the operator's token, which is all the server keeps of it.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// A refusal or failure, as `{"error": {"code", "message"}}`.
fn failure(error: ErrorBody) -> Response {
    let status = match error.code {
        ErrorCode::BadRequest | ErrorCode::TooLarge => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::NotMember => StatusCode::NOT_FOUND,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = (status, Json(json!({ "error": error }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn bad(message: impl Into<String>) -> Response {
    failure(ErrorBody::new(ErrorCode::BadRequest, message))
}

/// A request that carries the operator's token, and where it came from.
/// Without a token configured the API does not exist (404), so a scan
/// learns nothing of it.
struct Operator {
    peer: SocketAddr,
}

impl FromRequestParts<App> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Operator, Response> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        let Some(expected) = app.admin else {
            return Err(failure(ErrorBody::new(ErrorCode::NotFound, "no such page")));
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(digest);
        // Digests compared in full, whatever differs where: no timing to
        // learn the token from.
        let matches = given.is_some_and(|given| {
            given.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
        if !matches {
            tracing::warn!(peer = %peer.ip(), "admin: a request without the right token was refused");
            return Err(failure(ErrorBody::new(
                ErrorCode::Unauthenticated,
                "this needs the operator's token: Authorization: Bearer <token>",
            )));
        }
        Ok(Operator { peer })
    }
}

/// A JSON body of type `T`, refused with the API's own 400.
struct Input<T>(T);

impl<T: for<'de> Deserialize<'de>> FromRequest<App> for Input<T> {
    type Rejection = Response;

    async fn from_request(request: Request, app: &App) -> Result<Input<T>, Response> {
        let bytes = Bytes::from_request(request, app)
            .await
            .map_err(|e| bad(format!("the body cannot be read: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(Input)
            .map_err(|e| bad(format!("the body is not what this takes: {e}")))
    }
}

/// Writes an admin action to the audit log (and says so in the log).
fn audit(app: &App, peer: SocketAddr, action: &str, details: Value) {
    tracing::info!(action, "admin action");
    let mut entry = json!({
        "node": app.hub.config().node,
        "action": action,
        "from": peer.ip().to_string(),
    });
    if let (Some(entry), Value::Object(details)) = (entry.as_object_mut(), details) {
        entry.extend(details);
    }
    app.hub.config().audit.record("admin", entry);
}

async fn rooms(State(app): State<App>, _: Operator) -> Response {
    match app.hub.backend().all_rooms().await {
        Ok(mut rooms) => {
            rooms.sort_by(|(a_board, a), (b_board, b)| {
                b_board.cmp(a_board).then(b.members.cmp(&a.members)).then(a.code.cmp(&b.code))
            });
            let rooms: Vec<Value> = rooms
                .into_iter()
                .map(|(board, info)| {
                    let mut room = json!(info);
                    room["board"] = json!(board);
                    room
                })
                .collect();
            Json(json!({ "rooms": rooms })).into_response()
        }
        Err(e) => failure(e),
    }
}

async fn room(State(app): State<App>, _: Operator, Path(code): Path<String>) -> Response {
    match app.hub.backend().room_members(&code).await {
        Ok((members, roles)) => Json(json!({ "members": members, "roles": roles })).into_response(),
        Err(e) => failure(e),
    }
}

async fn close(
    State(app): State<App>,
    Operator { peer }: Operator,
    Path(code): Path<String>,
) -> Response {
    if app.hub.config().boards.iter().any(|b| b.name.eq_ignore_ascii_case(code.trim())) {
        return bad("a board is the configuration's: remove it there");
    }
    match app.hub.backend().close_room(&code).await {
        Ok(()) => {
            audit(&app, peer, "close", json!({ "room": code.trim().to_uppercase() }));
            Json(json!({ "closed": code.trim().to_uppercase() })).into_response()
        }
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIntegration {
    name: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// Makes an integration of a persistent room or a board (a board's are the
/// operator's to make).
async fn integrate(
    State(app): State<App>,
    Operator { peer }: Operator,
    Path(code): Path<String>,
    Input(new): Input<NewIntegration>,
) -> Response {
    let name = match confab_core::validate_name(&new.name, app.hub.config().limits.name_chars) {
        Ok(name) => name,
        Err(e) => return failure(e),
    };
    let scopes = new.scopes.unwrap_or_else(|| vec!["post".into(), "read".into()]);
    let services = app.hub.services();
    match confab_core::integrations::make(services, &code, &name, &scopes, "operator").await {
        Ok(made) => {
            audit(&app, peer, "integrate", json!({ "room": code, "id": made.integration.id }));
            (StatusCode::CREATED, Json(made)).into_response()
        }
        Err(e) => failure(e),
    }
}

async fn integrations(
    State(app): State<App>,
    _operator: Operator,
    Path(code): Path<String>,
) -> Response {
    match confab_core::integrations::list(app.hub.services(), &code).await {
        Ok(list) => Json(json!({ "integrations": list })).into_response(),
        Err(e) => failure(e),
    }
}

async fn revoke(
    State(app): State<App>,
    Operator { peer }: Operator,
    Path((code, id)): Path<(String, String)>,
) -> Response {
    match confab_core::integrations::revoke(app.hub.services(), &code, &id, "operator").await {
        Ok(()) => {
            audit(&app, peer, "revoke", json!({ "room": code, "id": id }));
            Json(json!({ "revoked": id })).into_response()
        }
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    url: String,
    #[serde(default)]
    events: Vec<String>,
}

/// Registers an outgoing webhook of a persistent room or a board.
async fn webhook(
    State(app): State<App>,
    Operator { peer }: Operator,
    Path(code): Path<String>,
    Input(new): Input<NewWebhook>,
) -> Response {
    let services = app.hub.services();
    let url = new.url.trim();
    match confab_core::integrations::make_webhook(services, &code, url, &new.events, "operator")
        .await
    {
        Ok(made) => {
            audit(&app, peer, "webhook", json!({ "room": code, "id": made.webhook.id }));
            (StatusCode::CREATED, Json(made)).into_response()
        }
        Err(e) => failure(e),
    }
}

async fn webhooks(
    State(app): State<App>,
    _operator: Operator,
    Path(code): Path<String>,
) -> Response {
    match confab_core::integrations::list_webhooks(app.hub.services(), &code).await {
        Ok(list) => Json(json!({ "webhooks": list })).into_response(),
        Err(e) => failure(e),
    }
}

async fn unhook(
    State(app): State<App>,
    Operator { peer }: Operator,
    Path((code, id)): Path<(String, String)>,
) -> Response {
    match confab_core::integrations::delete_webhook(app.hub.services(), &code, &id, "operator")
        .await
    {
        Ok(()) => {
            audit(&app, peer, "unhook", json!({ "room": code, "id": id }));
            Json(json!({ "removed": id })).into_response()
        }
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Notice {
    text: String,
}

async fn announce(
    State(app): State<App>,
    Operator { peer }: Operator,
    Input(notice): Input<Notice>,
) -> Response {
    let text = notice.text.trim();
    if text.is_empty() || text.chars().count() > NOTICE_CHARS {
        return bad(format!("text must be 1 to {NOTICE_CHARS} characters"));
    }
    if text.chars().any(char::is_control) {
        return bad("text must not contain control characters (a notice is one line)");
    }
    match app.hub.backend().announce(text).await {
        Ok(rooms) => {
            audit(&app, peer, "announce", json!({ "text": text, "rooms": rooms }));
            Json(json!({ "rooms": rooms })).into_response()
        }
        Err(e) => failure(e),
    }
}

async fn purge(
    State(app): State<App>,
    Operator { peer }: Operator,
    Path(user): Path<String>,
) -> Response {
    let valid = user.len() <= 64
        && user.strip_prefix("u_").or_else(|| user.strip_prefix("b_")).is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if !valid {
        return bad("a user id is u_ followed by letters and digits");
    }
    match app.hub.backend().purge(&user).await {
        Ok(()) => {
            audit(&app, peer, "purge", json!({ "user": user }));
            Json(json!({ "purged": user })).into_response()
        }
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBan {
    address: String,
    #[serde(default)]
    minutes: Option<u32>,
    #[serde(default)]
    reason: Option<String>,
}

async fn ban(
    State(app): State<App>,
    Operator { peer }: Operator,
    Input(new): Input<NewBan>,
) -> Response {
    let Ok(address) = new.address.trim().parse::<IpAddr>() else {
        return bad("address must be an IPv4 or IPv6 address (an IPv6 address bans its /64)");
    };
    if let Some(minutes) = new.minutes
        && !(1..=BAN_MINUTES_MAX).contains(&minutes)
    {
        return bad(format!("minutes must be from 1 to {BAN_MINUTES_MAX}, or left out"));
    }
    let reason = new.reason.unwrap_or_default().trim().to_owned();
    if reason.chars().count() > REASON_CHARS || reason.chars().any(char::is_control) {
        return bad(format!("reason must be at most {REASON_CHARS} characters, on one line"));
    }
    let length = new.minutes.map(|m| Duration::from_secs(u64::from(m) * 60));
    match app.hub.ban_address(address, length, &reason).await {
        Ok(Some(ban)) => {
            // The log and the audit keep the hash, as the store does.
            audit(&app, peer, "ban", json!({ "ban": ban }));
            Json(json!({ "ban": ban })).into_response()
        }
        Ok(None) => bad("a loopback address is never banned"),
        Err(e) => failure(e),
    }
}

async fn bans(State(app): State<App>, _: Operator) -> Response {
    match app.hub.site_bans().await {
        Ok(bans) => Json(json!({ "bans": bans })).into_response(),
        Err(e) => failure(e),
    }
}

async fn unban(
    State(app): State<App>,
    Operator { peer }: Operator,
    Path(address): Path<String>,
) -> Response {
    // By the address itself, or by the hash `bans` lists.
    let key = match address.parse::<IpAddr>() {
        Ok(ip) => app.hub.address_hash(ip),
        Err(_) if address.len() == 32 && address.chars().all(|c| c.is_ascii_hexdigit()) => {
            Some(address.to_ascii_lowercase())
        }
        Err(_) => return bad("give an address, or the hash that /admin/v1/bans lists"),
    };
    let Some(key) = key else { return bad("a loopback address is never banned") };
    match app.hub.lift_site_ban(&key).await {
        Ok(true) => {
            audit(&app, peer, "unban", json!({ "address": key }));
            Json(json!({ "lifted": key })).into_response()
        }
        Ok(false) => failure(ErrorBody::new(ErrorCode::NotFound, "no ban of that address")),
        Err(e) => failure(e),
    }
}

async fn defense(State(app): State<App>, _: Operator) -> Response {
    Json(json!({ "bits": app.hub.defense() })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Defense {
    bits: u32,
}

async fn set_defense(
    State(app): State<App>,
    Operator { peer }: Operator,
    Input(defense): Input<Defense>,
) -> Response {
    match app.hub.set_defense(defense.bits).await {
        Ok(()) => {
            audit(&app, peer, "defense", json!({ "bits": defense.bits }));
            Json(json!({ "bits": defense.bits })).into_response()
        }
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Grant {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    name: Option<String>,
    role: confab_proto::Role,
}

async fn grant(
    State(app): State<App>,
    Operator { peer }: Operator,
    Path(code): Path<String>,
    Input(grant): Input<Grant>,
) -> Response {
    let target = match (grant.user, grant.name) {
        (Some(id), None) if confab_core::ids::is_user_id(&id) => confab_core::Target::Id(id),
        (None, Some(name)) if !name.trim().is_empty() => {
            confab_core::Target::Name(name.trim().to_owned())
        }
        _ => return bad("name the member by exactly one of user (an id) and name"),
    };
    match app.hub.backend().grant(&code, &target, grant.role).await {
        Ok(()) => {
            let whom = match &target {
                confab_core::Target::Id(who) | confab_core::Target::Name(who) => who.clone(),
            };
            let room = code.trim().to_owned();
            audit(&app, peer, "role", json!({ "room": room, "member": whom, "role": grant.role }));
            Json(json!({ "room": room, "role": grant.role })).into_response()
        }
        Err(e) => failure(e),
    }
}
