//! The web chat's pages and assets, embedded in the binary.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;
use tower_http::compression::CompressionLayer;

use crate::App;

#[derive(Embed)]
#[folder = "web/"]
struct Assets;

/// No inline script or style, nothing from elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { page("index.html", &headers) }))
        .route("/r/{code}", get(|headers: HeaderMap| async move { page("room.html", &headers) }))
        .route("/history", get(|headers: HeaderMap| async move { page("history.html", &headers) }))
        .route(
            "/assets/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move { asset(&path, &headers) }),
        )
        .fallback(not_found)
        .layer(CompressionLayer::new())
}

/// Any other address: the 404 page for a browser; for the HTTP API, the
/// protocol's error as JSON.
async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        let body = serde_json::json!({
            "error": {"code": "not_found", "message": "no such API endpoint"}
        });
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    // Never a 304: the page is the body of a 404, not a resource to cache.
    let mut response = asset("404.html", &HeaderMap::new());
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.headers_mut().remove(header::ETAG);
    response
}

fn page(name: &str, headers: &HeaderMap) -> Response {
    asset(name, headers)
}

/// Serves an embedded file with an ETag; the browser revalidates each
/// time and gets `304 Not Modified` while the binary is the same. Every
/// response carries the security headers, so that a page template opened
/// under `/assets/` is as protected as the page itself.
fn asset(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        let mut response = (StatusCode::NOT_FOUND, "not found").into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        return response;
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..12]));
    let mut response =
        if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mime = file.metadata.mimetype().to_owned();
            let mut response = file.data.into_owned().into_response();
            if let Ok(mime) = HeaderValue::from_str(&mime) {
                response.headers_mut().insert(header::CONTENT_TYPE, mime);
            }
            response
        };
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
