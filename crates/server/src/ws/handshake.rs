//! The opening handshake (RFC 6455, section 4): checked before anything
//! is allocated for the socket, answered with the accept key.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A handshake refused: the status and why.
pub(super) struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = (self.0, self.1).into_response();
        if self.0 == StatusCode::UPGRADE_REQUIRED {
            // The version this server speaks (RFC 6455, section 4.4).
            let version = HeaderValue::from_static("13");
            response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, version);
        }
        response
    }
}

/// Checks an opening handshake (RFC 6455, section 4.2.1); returns the
/// `Sec-WebSocket-Accept` value for it, or the refusal.
pub(super) fn handshake(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, Refused> {
    if method != Method::GET {
        return Err(Refused(StatusCode::METHOD_NOT_ALLOWED, "a WebSocket opens with GET"));
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(Refused(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade request"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|version| version != "13") {
        return Err(Refused(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is spoken here",
        ));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|key| is_key(key.as_bytes()))
    else {
        return Err(Refused(StatusCode::BAD_REQUEST, "missing or malformed Sec-WebSocket-Key"));
    };
    Ok(HeaderValue::from_str(&accept_key(key.as_bytes())).expect("base64 is a valid header value"))
}

/// `Sec-WebSocket-Accept` for a key: base64 of the SHA-1 of the key and
/// the protocol's GUID (RFC 6455, section 4.2.2).
fn accept_key(key: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = Sha1::new().chain_update(key).chain_update(GUID).finalize();
    base64(&digest)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `key` is 16 bytes in base64 (RFC 6455, section 4.2.1): 22
/// characters of the alphabet, the last of which carries only 2 bits,
/// then `==`.
fn is_key(key: &[u8]) -> bool {
    let digit = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    match key {
        [data @ .., last, b'=', b'='] if data.len() == 21 => {
            data.iter().all(digit) && matches!(last, b'A' | b'Q' | b'g' | b'w')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_the_rfc_s() {
        // RFC 6455, section 1.3.
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
