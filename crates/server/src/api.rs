//! The HTTP API for programs, `/api/v1/`: a room's integrations post,
//! read history and list members with `Authorization: Bearer <token>`,
//! and tools that speak Slack's incoming webhooks post to
//! `/api/v1/hooks/<token>` with `{"text": …}`. The description of every
//! route is `/api/v1/openapi.json` (docs/openapi.json).
//!
//! # Bots
//!
//! An integration acts through a connection of its own to the hub, made on
//! this node the first time it is used: it says `hello` as its bot (a user
//! whose session derives from the token) and joins its room, so every rule
//! of the room (capacity, bans, history, ordering, the cluster) applies to
//! it as to anyone, and its posts are marked as a bot's. It leaves after
//! [`IDLE`] without a request. Requests of one integration take turns on
//! its connection (an async mutex, held while one op is applied, as long
//! polling does); the replies come back through the connection's outbox,
//! which a pump task reads, handing each to the request that waits for it.

// A refusal is the response a handler answers with: its size does not
// matter on this path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use confab_core::integrations::{self, bot_session};
use confab_core::{Integration, Outbox};
use confab_proto::{ErrorBody, ErrorCode};
use governor::DefaultKeyedRateLimiter;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::{App, Conn};

/// A bot leaves its room after this long without a request.
const IDLE: Duration = Duration::from_secs(300);
/// How long a request waits for the hub's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Requests per integration: 5 a second, bursts of 20.
const RATE: (u32, u32) = (5, 20);
/// The largest request body.
const BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI description of these routes.
pub(crate) const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// The routes.
pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/api/v1/rooms/{room}/messages", post(post_message).get(messages))
        .route("/api/v1/rooms/{room}/members", get(members))
        .route("/api/v1/hooks/{token}", post(hook))
        .route("/api/v1/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(BODY_BYTES))
}

/// The integrations' connections on this node, and their request budgets.
pub(crate) struct Bots {
    live: Mutex<HashMap<String, Arc<Bot>>>,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl Bots {
    pub(crate) fn new() -> Arc<Bots> {
        let rate = confab_core::Rate::new(RATE.0, Duration::from_secs(1), RATE.1);
        Arc::new(Bots {
            live: Mutex::new(HashMap::new()),
            limiter: governor::RateLimiter::keyed(rate.quota()),
        })
    }

    /// Lets go of the bots idle for [`IDLE`], and of those whose
    /// integration was revoked, every minute, for as long as the server
    /// runs.
    pub(crate) async fn reap(self: Arc<Bots>, app: App) {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let ids: Vec<String> = self.live.lock().keys().cloned().collect();
            let mut revoked = Vec::new();
            for id in ids {
                if matches!(app.hub.services().store.integration(&id).await, Ok(None)) {
                    revoked.push(id);
                }
            }
            let idle: Vec<Arc<Bot>> = {
                let mut live = self.live.lock();
                let gone: Vec<String> = live
                    .iter()
                    .filter(|(id, b)| {
                        !b.alive() || b.last.lock().elapsed() > IDLE || revoked.contains(id)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                gone.iter().filter_map(|id| live.remove(id)).collect()
            };
            for bot in idle {
                let room = bot.room.clone();
                // Best effort: a bot that cannot leave drops, and its seat
                // goes after the grace.
                let _ = bot.call(json!({"op": "leave", "room": room})).await;
            }
            self.limiter.retain_recent();
        }
    }

    /// The connection of `integration` on this node, made and joined to
    /// its room if it has none (or it lost it).
    async fn of(
        &self,
        app: &App,
        integration: &Integration,
        token: &str,
    ) -> Result<Arc<Bot>, ErrorBody> {
        let known = self.live.lock().get(&integration.id).cloned();
        if let Some(bot) = known.filter(|b| b.alive()) {
            *bot.last.lock() = Instant::now();
            return Ok(bot);
        }
        let bot = Bot::start(app, integration, token).await?;
        self.live.lock().insert(integration.id.clone(), bot.clone());
        Ok(bot)
    }
}

/// One integration's connection to the hub.
struct Bot {
    conn: tokio::sync::Mutex<Conn>,
    waiting: Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>,
    next: AtomicI64,
    alive: Arc<AtomicBool>,
    last: Mutex<Instant>,
    room: String,
}

impl Bot {
    async fn start(
        app: &App,
        integration: &Integration,
        token: &str,
    ) -> Result<Arc<Bot>, ErrorBody> {
        let (outbox, mut frames) = Outbox::new(app.outbox);
        let mut conn = Conn::open(&app.hub, outbox, None);
        conn.as_bot();
        let waiting: Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>> = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let bot = Arc::new(Bot {
            conn: tokio::sync::Mutex::new(conn),
            waiting: waiting.clone(),
            next: AtomicI64::new(1),
            alive: alive.clone(),
            last: Mutex::new(Instant::now()),
            room: integration.room.clone(),
        });
        // The pump: replies to whoever waits for them; events (the room's
        // life) are of no use to a bot, but a `closed` ends it.
        let room = integration.room.clone();
        tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                let Ok(frame) = serde_json::from_slice::<Value>(&frame) else { continue };
                if let Some(re) = frame["re"].as_i64() {
                    if let Some(waiter) = waiting.lock().remove(&re) {
                        let _ = waiter.send(frame);
                    }
                } else if frame["ev"] == "closed" && frame["room"].as_str() == Some(&room) {
                    alive.store(false, Ordering::Relaxed);
                }
            }
            alive.store(false, Ordering::Relaxed);
        });
        let hello =
            json!({"op": "hello", "name": integration.user.name, "session": bot_session(token)});
        answered(bot.call(hello).await?)?;
        answered(bot.call(json!({"op": "join", "room": integration.room})).await?)?;
        Ok(bot)
    }

    fn alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Applies `op` on the bot's connection; the reply.
    async fn call(&self, mut op: Value) -> Result<Value, ErrorBody> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        op["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(id, tx);
        self.conn.lock().await.handle_frame(op.to_string().as_bytes()).await;
        match tokio::time::timeout(ANSWER_WAIT, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => {
                self.waiting.lock().remove(&id);
                self.alive.store(false, Ordering::Relaxed);
                Err(ErrorBody::new(ErrorCode::Unavailable, "no answer in time; try again"))
            }
        }
    }
}

/// The result of a reply, or its error.
fn answered(reply: Value) -> Result<Value, ErrorBody> {
    if reply["ok"] == true {
        return Ok(reply);
    }
    Err(serde_json::from_value(reply["error"].clone())
        .unwrap_or_else(|_| ErrorBody::new(ErrorCode::Internal, "an answer that cannot be read")))
}

/// A refusal or failure, as `{"error": {"code", "message"}}` with its
/// status.
pub(crate) fn failure(error: ErrorBody) -> Response {
    let status = match error.code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::NameTaken => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::NotMember => StatusCode::NOT_FOUND,
        ErrorCode::RoomFull => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let retry = error.retry_after_ms;
    let mut response = (status, Json(json!({ "error": error }))).into_response();
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(ms) = retry {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000).max(1)));
    }
    response
}

fn bad(message: impl Into<String>) -> Response {
    failure(ErrorBody::new(ErrorCode::BadRequest, message))
}

/// The integration a request's token names, allowed `scope` in `room`
/// (`None`: the room the token is for), within its budget.
async fn admit(
    app: &App,
    token: Option<&str>,
    room: Option<&str>,
    scope: &str,
) -> Result<(Integration, Arc<Bot>), Response> {
    let refused = || {
        failure(ErrorBody::new(
            ErrorCode::Unauthenticated,
            "this needs a token of one of the room's integrations: Authorization: Bearer <token>",
        ))
    };
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty() && t.len() <= 128) else {
        return Err(refused());
    };
    let services = app.hub.services();
    let Some(integration) = integrations::authenticate(services, token).await.map_err(failure)?
    else {
        return Err(refused());
    };
    // A token is for one room: any other is as missing as it is to a
    // stranger.
    if room.is_some_and(|room| services.room_key(room) != integration.room) {
        return Err(failure(ErrorBody::new(ErrorCode::NotFound, "this token is for another room")));
    }
    if !integration.scopes.iter().any(|s| s == scope) {
        return Err(failure(ErrorBody::new(
            ErrorCode::Forbidden,
            format!("this token may not {scope}: its scopes are {}", integration.scopes.join(", ")),
        )));
    }
    if let Err(not_until) = app.bots.limiter.check_key(&integration.id) {
        let wait = not_until
            .wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut error = ErrorBody::new(
            ErrorCode::RateLimited,
            format!("too many requests with this token; try again in {ms} ms"),
        );
        error.retry_after_ms = Some(ms);
        return Err(failure(error));
    }
    let bot = app.bots.of(app, &integration, token).await.map_err(failure)?;
    Ok((integration, bot))
}

/// The bearer token of a request.
fn bearer(parts: &axum::http::HeaderMap) -> Option<&str> {
    parts.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// Applies `op` as the bot; a failed op is answered with its error.
async fn act(bot: &Bot, op: Value) -> Result<Value, Response> {
    let reply = bot.call(op).await.map_err(failure)?;
    answered(reply).map_err(failure)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    body: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    cid: Option<String>,
    #[serde(default)]
    reply: Option<u64>,
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad(format!("the body must be JSON: {e}")))
}

async fn post_message(
    State(app): State<App>,
    Path(room): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let (integration, bot) = match admit(&app, bearer(&headers), Some(&room), "post").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let new: NewMessage = match json_body(&body) {
        Ok(new) => new,
        Err(response) => return response,
    };
    let op = json!({
        "op": "post", "room": integration.room, "body": new.body, "subject": new.subject,
        "cid": new.cid, "reply": new.reply,
    });
    match act(&bot, op).await {
        Ok(reply) => {
            (StatusCode::CREATED, Json(json!({"message": reply["message"]}))).into_response()
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct Page {
    before: Option<u64>,
    limit: Option<u32>,
}

async fn messages(
    State(app): State<App>,
    Path(room): Path<String>,
    headers: axum::http::HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(page)) = page else {
        return bad("before and limit must be whole numbers");
    };
    let (integration, bot) = match admit(&app, bearer(&headers), Some(&room), "read").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let op = json!({"op": "history", "room": integration.room, "before": page.before, "limit": page.limit});
    match act(&bot, op).await {
        Ok(reply) => Json(json!({"messages": reply["messages"]})).into_response(),
        Err(response) => response,
    }
}

async fn members(
    State(app): State<App>,
    Path(room): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (integration, bot) = match admit(&app, bearer(&headers), Some(&room), "read").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    match act(&bot, json!({"op": "members", "room": integration.room})).await {
        Ok(reply) => {
            Json(json!({"members": reply["members"], "roles": reply["roles"]})).into_response()
        }
        Err(response) => response,
    }
}

/// Slack's incoming webhook: `{"text": …}` (other fields are ignored),
/// answered `ok`.
async fn hook(State(app): State<App>, Path(token): Path<String>, body: Bytes) -> Response {
    let (integration, bot) = match admit(&app, Some(&token), None, "post").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let payload: Value = match json_body(&body) {
        Ok(payload) => payload,
        Err(response) => return response,
    };
    let Some(text) = payload["text"].as_str().filter(|t| !t.trim().is_empty()) else {
        return bad("the body must be a JSON object with a non-empty \"text\"");
    };
    match act(&bot, json!({"op": "post", "room": integration.room, "body": text})).await {
        Ok(_) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response(),
        Err(response) => response,
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
