//! HTTP routes: the WebSocket endpoint, health, the public room list and
//! the web pages.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::{App, lp, metrics, web, ws};

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .merge(lp::router(&app))
        .route("/health", get(health))
        .route("/metrics", get(metrics::render))
        .route("/api/v1/rooms", get(rooms))
        .merge(web::router())
        .with_state(app)
}

async fn health(State(app): State<App>) -> impl IntoResponse {
    let database = app.hub.store_healthy();
    let cluster = app.hub.cluster_healthy();
    let up = database && cluster.unwrap_or(true);
    let mut body = json!({
        "status": if up { "ok" } else { "degraded" },
        "database": if database { "ok" } else { "unavailable" },
        "version": env!("CARGO_PKG_VERSION"),
        "node": app.hub.config().node,
        "connections": app.hub.connections(),
        // Sockets of every transport not yet closed, writers included.
        "sockets": app.sockets.len(),
        "rooms": app.hub.room_count(),
    });
    if let Some(cluster) = cluster {
        body["cluster"] = json!(if cluster { "ok" } else { "unavailable" });
    }
    let status = if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

async fn rooms(State(app): State<App>) -> axum::response::Response {
    match app.hub.public_rooms().await {
        Ok(rooms) => Json(rooms).into_response(),
        Err(error) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": error }))).into_response()
        }
    }
}
