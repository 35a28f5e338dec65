//! A room's integrations: tokens that let a program post and read in one
//! room as a bot. The server keeps the SHA-256 of each token only; the
//! token is shown once, when it is made.
//!
//! A token is `<id>.<secret>`: the id finds the integration, the whole
//! token is checked against its digest. The bot is a user of its own,
//! whose session token is derived from the integration's token (so every
//! node finds the same user without storing a usable credential).

use confab_proto::{ErrorBody, ErrorCode, IntegrationInfo, User};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;

use crate::backend::Services;
use crate::frames::storage_down;
use crate::store::Integration;

/// The most integrations of one room.
pub const INTEGRATIONS_MAX: usize = 20;

/// What an integration may do.
pub const SCOPES: &[&str] = &["post", "read"];

/// A new integration: what its owner sees, its token (shown this once),
/// and the path of its incoming webhook.
#[derive(Debug, Serialize)]
pub struct Made {
    pub integration: IntegrationInfo,
    pub token: String,
    pub hook: String,
}

fn random(n: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(n).map(char::from).collect()
}

/// The session token of the bot of the integration whose token is
/// `token`.
pub fn bot_session(token: &str) -> String {
    crate::ids::token_digest(&format!("confab bot session\n{token}"))
}

impl Services {
    async fn persistent(&self, room: &str) -> Result<bool, ErrorBody> {
        let rooms = self.store.rooms().await.map_err(|e| {
            tracing::warn!("cannot read rooms: {e}");
            storage_down()
        })?;
        Ok(rooms.iter().any(|r| self.room_key(&r.spec.code) == self.room_key(room)))
    }
}

fn info(integration: &Integration) -> IntegrationInfo {
    IntegrationInfo {
        id: integration.id.clone(),
        user: integration.user.clone(),
        scopes: integration.scopes.clone(),
        created: integration.created.clone(),
    }
}

fn stored<T>(result: Result<T, crate::StoreError>) -> Result<T, ErrorBody> {
    result.map_err(|e| {
        tracing::warn!("integrations: {e}");
        storage_down()
    })
}

/// Makes an integration of `room` (a persistent room or a board) posting
/// as `name` and allowed `scopes`, on behalf of `by` (a user id, or
/// `operator`).
///
/// # Errors
///
/// `bad_request` for an ephemeral room, an unknown scope, or a room with
/// [`INTEGRATIONS_MAX`] of them; `unavailable` when the store fails.
pub async fn make(
    services: &Services,
    room: &str,
    name: &str,
    scopes: &[String],
    by: &str,
) -> Result<Made, ErrorBody> {
    let bad = |text: String| ErrorBody::new(ErrorCode::BadRequest, text);
    if scopes.is_empty() || scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
        return Err(bad(format!("scopes must be some of {}", SCOPES.join(", "))));
    }
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    if !services.persistent(room).await? {
        return Err(bad(format!(
            "room {room} is ephemeral: integrations are for persistent rooms and boards"
        )));
    }
    let key = services.room_key(room);
    let existing = stored(services.store.integrations(&key).await)?;
    if existing.len() >= INTEGRATIONS_MAX {
        return Err(bad(format!(
            "room {room} has {INTEGRATIONS_MAX} integrations, the most it may have"
        )));
    }
    // Its bot joins the room under its name: two bots of one name would
    // keep each other out.
    if existing.iter().any(|i| crate::name_key(&i.user.name) == crate::name_key(name)) {
        return Err(bad(format!("room {room} has an integration named {name} already")));
    }
    let id = format!("i_{}", random(12));
    let token = format!("{id}.{}", random(40));
    let user = User { id: crate::ids::bot_id(), name: name.to_owned() };
    // The bot's session: a user like any other, found by the digest of a
    // token derived from the integration's.
    let session = crate::ids::token_digest(&bot_session(&token));
    stored(services.store.save_session(&session, &user).await)?;
    let session_digest = session.clone();
    let integration = Integration {
        id: id.clone(),
        room: key,
        user,
        scopes,
        digest: crate::ids::token_digest(&token),
        session: session_digest,
        created: crate::now_rfc3339(),
        by: by.to_owned(),
    };
    stored(services.store.save_integration(&integration).await)?;
    services.config.audit.record(
        "integration",
        serde_json::json!({"room": room, "id": id, "name": name, "by": by, "scopes": integration.scopes}),
    );
    let hook = format!("/api/v1/hooks/{token}");
    Ok(Made { integration: info(&integration), token, hook })
}

/// The integrations of `room`, oldest first.
///
/// # Errors
///
/// `unavailable` when the store fails.
pub async fn list(services: &Services, room: &str) -> Result<Vec<IntegrationInfo>, ErrorBody> {
    let found = stored(services.store.integrations(&services.room_key(room)).await)?;
    Ok(found.iter().map(info).collect())
}

/// Revokes integration `id` of `room` on behalf of `by`.
///
/// # Errors
///
/// `not_found` if the room has none of that id; `unavailable`.
pub async fn revoke(services: &Services, room: &str, id: &str, by: &str) -> Result<(), ErrorBody> {
    // Its bot's session ends with it.
    let found = stored(services.store.integration(id).await)?;
    if let Some(found) = found.filter(|i| i.room == services.room_key(room)) {
        stored(services.store.delete_session(&found.session).await)?;
    }
    if !stored(services.store.delete_integration(&services.room_key(room), id).await)? {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("room {room} has no integration {id}"),
        ));
    }
    services
        .config
        .audit
        .record("integration", serde_json::json!({"room": room, "revoked": id, "by": by}));
    Ok(())
}

/// The integration a token names, if the token is right: compared by
/// digest, in full.
///
/// # Errors
///
/// `unavailable` when the store fails.
pub async fn authenticate(
    services: &Services,
    token: &str,
) -> Result<Option<Integration>, ErrorBody> {
    let Some((id, _)) = token.split_once('.') else { return Ok(None) };
    if !id.starts_with("i_") || id.len() > 32 {
        return Ok(None);
    }
    let Some(found) = stored(services.store.integration(id).await)? else { return Ok(None) };
    let given = crate::ids::token_digest(token);
    let same = given.len() == found.digest.len()
        && given.bytes().zip(found.digest.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    Ok(same.then_some(found))
}

/// The events a webhook may want.
pub const HOOK_EVENTS: &[&str] = &[
    "message.created",
    "message.updated",
    "message.deleted",
    "member.joined",
    "member.left",
    "message.reported",
    "room.ended",
];

/// The most webhooks of one room.
pub const WEBHOOKS_MAX: usize = 5;

/// A webhook as its room's owner sees it; its secret only when made.
#[derive(Debug, Serialize)]
pub struct WebhookInfo {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created: String,
}

/// A new webhook and its signing secret (shown this once).
#[derive(Debug, Serialize)]
pub struct HookMade {
    pub webhook: WebhookInfo,
    pub secret: String,
}

fn hook_info(hook: &crate::Webhook) -> WebhookInfo {
    WebhookInfo {
        id: hook.id.clone(),
        url: hook.url.clone(),
        events: hook.events.clone(),
        created: hook.created.clone(),
    }
}

/// Whether `ip` is one a webhook may not reach unless the operator allows
/// private addresses: loopback, private, link-local, unspecified, and the
/// like.
pub fn private_address(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            // An IPv4 address inside (mapped, compatible, NAT64, 6to4) is
            // judged as itself.
            let embedded =
                |hi: u16, lo: u16| std::net::Ipv4Addr::from(u32::from(hi) << 16 | u32::from(lo));
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || v6.to_ipv4_mapped().is_some_and(|v4| private_address(v4.into()))
                || (s[..6] == [0; 6] && private_address(embedded(s[6], s[7]).into()))
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                    && private_address(embedded(s[6], s[7]).into()))
                || (s[0] == 0x2002 && private_address(embedded(s[1], s[2]).into()))
        }
    }
}

/// Checks a webhook's URL: `http://` or `https://`, a host, at most 500
/// characters, and (unless allowed) no private address written out as an
/// address. (Every address a name or another spelling resolves to is
/// checked again when a delivery connects.)
fn check_url(url: &str, allow_private: bool) -> Result<(), ErrorBody> {
    let bad = |text: &str| Err(ErrorBody::new(ErrorCode::BadRequest, format!("url: {text}")));
    if url.len() > 500 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("at most 500 characters, no spaces or control characters");
    }
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return bad("must start with http:// or https://");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return bad("must name a host (and no user or password)");
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if !allow_private {
        let named_private = host.eq_ignore_ascii_case("localhost")
            || host.to_ascii_lowercase().ends_with(".localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(private_address);
        if named_private {
            return bad("a private or loopback address is not allowed on this server");
        }
    }
    Ok(())
}

/// Makes a webhook of `room` (a persistent room or a board) sending
/// `events` (all when empty) to `url`, on behalf of `by`.
///
/// # Errors
///
/// `bad_request` for an ephemeral room, a bad URL, an unknown event, or
/// a room with [`WEBHOOKS_MAX`]; `unavailable`.
pub async fn make_webhook(
    services: &Services,
    room: &str,
    url: &str,
    events: &[String],
    by: &str,
) -> Result<HookMade, ErrorBody> {
    let bad = |text: String| ErrorBody::new(ErrorCode::BadRequest, text);
    check_url(url, services.config.webhooks_private)?;
    if let Some(unknown) = events.iter().find(|e| !HOOK_EVENTS.contains(&e.as_str())) {
        return Err(bad(format!("no event {unknown}; events are {}", HOOK_EVENTS.join(", "))));
    }
    let mut events: Vec<String> = if events.is_empty() {
        HOOK_EVENTS.iter().map(|e| (*e).to_owned()).collect()
    } else {
        events.to_vec()
    };
    events.sort();
    events.dedup();
    if !services.persistent(room).await? {
        return Err(bad(format!(
            "room {room} is ephemeral: webhooks are for persistent rooms and boards"
        )));
    }
    let key = services.room_key(room);
    if stored(services.store.webhooks(&key).await)?.len() >= WEBHOOKS_MAX {
        return Err(bad(format!("room {room} has {WEBHOOKS_MAX} webhooks, the most it may have")));
    }
    let hook = crate::Webhook {
        id: format!("h_{}", random(12)),
        room: key,
        url: url.to_owned(),
        events,
        secret: format!("whsec_{}", crate::ids::base64(&rand::random::<[u8; 24]>())),
        created: crate::now_rfc3339(),
        by: by.to_owned(),
    };
    stored(services.store.save_webhook(&hook).await)?;
    services
        .config
        .audit
        .record("webhook", serde_json::json!({"room": room, "id": hook.id, "url": url, "by": by}));
    Ok(HookMade { webhook: hook_info(&hook), secret: hook.secret.clone() })
}

/// The webhooks of `room`, oldest first (never their secrets).
///
/// # Errors
///
/// `unavailable` when the store fails.
pub async fn list_webhooks(services: &Services, room: &str) -> Result<Vec<WebhookInfo>, ErrorBody> {
    let found = stored(services.store.webhooks(&services.room_key(room)).await)?;
    Ok(found.iter().map(hook_info).collect())
}

/// Removes webhook `id` of `room`, and what it had still to deliver.
///
/// # Errors
///
/// `not_found` if the room has none of that id; `unavailable`.
pub async fn delete_webhook(
    services: &Services,
    room: &str,
    id: &str,
    by: &str,
) -> Result<(), ErrorBody> {
    if !stored(services.store.delete_webhook(&services.room_key(room), id).await)? {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("room {room} has no webhook {id}"),
        ));
    }
    services
        .config
        .audit
        .record("webhook", serde_json::json!({"room": room, "removed": id, "by": by}));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::private_address;

    #[test]
    fn inside_addresses_are_private_in_every_spelling() {
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
        ] {
            assert!(private_address(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808"] {
            assert!(!private_address(outside.parse().unwrap()), "{outside}");
        }
    }
}
