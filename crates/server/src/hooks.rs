//! Outgoing webhooks: delivering what the store queued for each webhook
//! (docs/integrations.md).
//!
//! The store queues an event for every webhook of its room that wants it,
//! in the transaction that writes the change itself, so an event is queued
//! exactly once, whichever node made the change, and survives a restart.
//! This task delivers them: a webhook's events one at a time, in the order
//! they were queued, each signed as the Standard Webhooks convention says
//! (`webhook-id`, `webhook-timestamp`, and `webhook-signature`, HMAC-SHA256
//! over `id.timestamp.body`). A failed delivery is tried again after a
//! wait that doubles (from 1 s, at most 10 minutes) with jitter, and given
//! up, with a log line and a metric, once the event is older than
//! `--webhook-give-up`. Delivery is at least once: a receiver de-duplicates
//! by `webhook-id`.
//!
//! In a cluster one node at a time delivers a webhook's events: it holds
//! the webhook's lease in Redis while it does, renewing it between
//! deliveries. A node that stops lets the lease run out, and another takes
//! the webhook over, from the event the first had not marked delivered.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use confab_core::{HookEvent, Webhook};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::App;
use crate::rooms::Rooms;

/// How often the queue is looked at.
const POLL: Duration = Duration::from_millis(500);
/// The first wait before a retry; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// How deliveries go: how long one may take, and when an event is given
/// up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    pub give_up: Duration,
    pub timeout: Duration,
}

/// Delivers the queued events until `stop`.
pub(crate) async fn deliver(app: App, delivery: Delivery, stop: CancellationToken) {
    let holder = format!("{}#{:08x}", app.hub.config().node, rand::random::<u32>());
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let due = match app.hub.services().store.due_hooks(confab_core::unix_ms()).await {
            Ok(due) => due,
            Err(e) => {
                tracing::debug!("webhooks: cannot read the queue: {e}");
                continue;
            }
        };
        for hook in due {
            if !busy.lock().insert(hook.clone()) {
                continue;
            }
            let (app, holder, busy) = (app.clone(), holder.clone(), busy.clone());
            tokio::spawn(async move {
                if lease(&app, &hook, &holder, delivery).await {
                    drain(&app, &hook, &holder, delivery).await;
                    release(&app, &hook, &holder).await;
                }
                busy.lock().remove(&hook);
            });
        }
    }
}

/// Takes or renews the lease on `hook`'s deliveries: three deliveries
/// long, renewed before each.
async fn lease(app: &App, hook: &str, holder: &str, delivery: Delivery) -> bool {
    match app.hub.backend() {
        Rooms::Local(_) => true,
        Rooms::Cluster(rooms) => {
            let ttl = delivery.timeout.saturating_mul(3);
            rooms.lease(&format!("hook:{hook}"), holder, ttl).await.unwrap_or(false)
        }
    }
}

async fn release(app: &App, hook: &str, holder: &str) {
    if let Rooms::Cluster(rooms) = app.hub.backend() {
        let _ = rooms.release(&format!("hook:{hook}"), holder).await;
    }
}

/// Delivers the due events of `hook`, in order, while the lease holds;
/// stops at the first that must wait.
async fn drain(app: &App, hook: &str, holder: &str, delivery: Delivery) {
    let store = &app.hub.services().store;
    let allow_private = app.hub.config().webhooks_private;
    loop {
        let Ok(events) = store.hook_events(hook, 16).await else { return };
        if events.is_empty() {
            return;
        }
        for event in events {
            let now = confab_core::unix_ms();
            if event.next_ms > now || !lease(app, hook, holder, delivery).await {
                return;
            }
            // Looked up before each delivery: a webhook removed meanwhile
            // gets nothing more, and what was queued for it goes.
            let webhook = match store.webhook(hook).await {
                Ok(Some(webhook)) => webhook,
                Ok(None) => return forget(app, hook).await,
                Err(_) => return,
            };
            let node = &app.hub.config().node;
            let outcome = post(&webhook, &event, allow_private, delivery.timeout, node).await;
            let retry = match &outcome {
                Ok(()) => {
                    metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES, "outcome" => "delivered")
                        .increment(1);
                    None
                }
                Err(why) if now.saturating_sub(event.created_ms) > millis(delivery.give_up) => {
                    metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES, "outcome" => "given_up")
                        .increment(1);
                    tracing::warn!(
                        webhook = hook,
                        event = event.id,
                        attempts = event.attempts + 1,
                        "webhook: delivery given up: {why}"
                    );
                    // Every event as old goes too, at once: a receiver that
                    // is gone for good does not keep a queue growing.
                    let before = now.saturating_sub(millis(delivery.give_up));
                    if let Ok(more) = store.expire_hook_events(hook, before).await
                        && more > 0
                    {
                        metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES, "outcome" => "given_up")
                            .increment(more);
                        tracing::warn!(
                            webhook = hook,
                            events = more,
                            "webhook: older events given up"
                        );
                    }
                    None
                }
                Err(why) => {
                    metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES, "outcome" => "failed")
                        .increment(1);
                    let wait = backoff(event.attempts);
                    tracing::debug!(
                        webhook = hook,
                        event = event.id,
                        "webhook: {why}; again in {wait:?}"
                    );
                    Some(now + millis(wait))
                }
            };
            if store.hook_attempted(event.id, retry).await.is_err() || retry.is_some() {
                return;
            }
            // The end of its room was its last word: the webhook goes.
            if event.body.starts_with("{\"type\":\"room.ended\"") {
                let _ = store.delete_webhook(&webhook.room, hook).await;
                return;
            }
        }
    }
}

/// Drops what is still queued for a webhook that is no more.
async fn forget(app: &App, hook: &str) {
    let store = &app.hub.services().store;
    while let Ok(events) = store.hook_events(hook, 64).await {
        if events.is_empty() {
            return;
        }
        for event in events {
            if store.hook_attempted(event.id, None).await.is_err() {
                return;
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wait before the next attempt, after `attempts` failed ones: it
/// doubles from [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`], each between half
/// and one and a half of that (so that receivers coming back are not hit
/// by every sender at once).
fn backoff(attempts: u32) -> Duration {
    let base = BACKOFF_FIRST.saturating_mul(1 << attempts.min(20)).min(BACKOFF_MAX);
    base.mul_f64(0.5 + rand::random::<f64>())
}

/// The Standard Webhooks signature of `body` for event `id` at
/// `timestamp` (seconds): `v1,` and the base64 of HMAC-SHA256 under the
/// secret's key.
pub(crate) fn signature(secret: &str, id: &str, timestamp: u64, body: &str) -> String {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(confab_core::ids::unbase64)
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let signed = format!("{id}.{timestamp}.{body}");
    format!(
        "v1,{}",
        confab_core::ids::base64(&confab_core::ids::hmac_sha256(&key, signed.as_bytes()))
    )
}

/// One delivery: a POST of the event to the webhook's URL; `Ok` for a 2xx
/// answer within `wait`.
async fn post(
    webhook: &Webhook,
    event: &HookEvent,
    allow_private: bool,
    wait: Duration,
    node: &str,
) -> Result<(), String> {
    tokio::time::timeout(wait, post_once(webhook, event, allow_private, node))
        .await
        .map_err(|_| format!("no answer within {wait:?}"))?
}

async fn post_once(
    webhook: &Webhook,
    event: &HookEvent,
    allow_private: bool,
    node: &str,
) -> Result<(), String> {
    let url = webhook.url.as_str();
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (_, Some(rest)) => (false, rest),
        _ => return Err("the URL is neither http:// nor https://".into()),
    };
    // The authority ends at the path, the query or the fragment; the
    // fragment is not sent.
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = (&rest[..end], &rest[end..]);
    let path = match path {
        "" => "/".to_owned(),
        query if query.starts_with('?') => format!("/{query}"),
        path => path.to_owned(),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, port.parse::<u16>().map_err(|e| e.to_string())?)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // The address is checked as it is connected to, so that a name cannot
    // point inside the network after the URL was checked.
    let addr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{host}: {e}"))?
        .find(|a| allow_private || !confab_core::integrations::private_address(a.ip()))
        .ok_or_else(|| format!("{host} has no address this server may deliver to"))?;
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    let id = format!("evt_{}", event.id);
    let timestamp = confab_core::unix_ms() / 1000;
    let signature = signature(&webhook.secret, &id, timestamp, &event.body);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: confab/{} (node {node})\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\
         webhook-id: {id}\r\nwebhook-timestamp: {timestamp}\r\nwebhook-signature: {signature}\r\n\r\n{}",
        env!("CARGO_PKG_VERSION"),
        event.body.len(),
        event.body
    );
    let status = if tls {
        let config = crate::tls::client_config(None)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| e.to_string())?;
        let mut stream = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        exchange(&mut stream, &request).await?
    } else {
        let mut tcp = tcp;
        exchange(&mut tcp, &request).await?
    };
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

/// Writes `request` and reads the status of the answer.
async fn exchange(
    stream: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
    request: &str,
) -> Result<u16, String> {
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut byte).await.map_err(|e| e.to_string())?;
        if n == 0 || head.len() > 4096 {
            return Err("the receiver closed the connection without an answer".into());
        }
        head.extend_from_slice(&byte[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("not HTTP: {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_follows_standard_webhooks() {
        // The expected value computed apart from this code (Python's hmac
        // and base64 over "id.timestamp.body" with the secret's key).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"1f81eb52-5198-4599-803e-771906343485","type":"website"}}"#;
        let signature = signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_674_087_231, body);
        assert_eq!(signature, "v1,jnhayxDhjp5XtWBrY/YChXi0xYhvgq3JKxblNLtq+B8=");
    }

    #[test]
    fn the_wait_doubles_within_its_jitter_and_has_a_ceiling() {
        for attempts in 0..30 {
            let base = BACKOFF_FIRST.saturating_mul(1 << attempts.min(20)).min(BACKOFF_MAX);
            let wait = backoff(attempts);
            assert!(wait >= base.mul_f64(0.5) && wait <= base.mul_f64(1.5), "{attempts}: {wait:?}");
        }
    }
}
