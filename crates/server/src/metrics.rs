//! Prometheus metrics at `GET /metrics`.
//!
//! The hub and the edges record with the `metrics` crate's macros, which
//! cost a registry lookup and an atomic add and never block. This module
//! owns the recorder: built once per process, installed as the global
//! recorder at most once, and rendered by the route. A process may start
//! several servers (the tests do); they share the one recorder, so the
//! figures are per process, not per server.
//!
//! Per-message work is counted once per post, never once per recipient:
//! a fan-out adds its recipient count to [`DELIVERIES`] in one step.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::App;

pub(crate) use confab_core::metric::{
    AUDIT_DROPPED, CLUSTER_POST_BATCH, CONNECTIONS, DELIVERIES, FANOUT, HEAP_TRIMS, MEMBERS,
    OUTBOX_OVERFLOWS, POSTS, RATE_LIMITED, REPORTS, STORE_BATCH, STORE_WRITE,
};

/// Rooms that exist, boards included. A gauge of this server's hub,
/// written into the text at scrape time rather than through the shared
/// recorder, so that two servers in one process never see each other's.
const ROOMS: &str = "confab_rooms";

/// Webhook deliveries, by outcome: `delivered`, `failed` (to be tried
/// again), `given_up`.
pub(crate) const WEBHOOK_DELIVERIES: &str = "confab_webhook_deliveries_total";

/// How often histogram samples are folded into their buckets when nobody
/// scrapes, so that memory stays bounded.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Latency buckets in seconds, from 1 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_001, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001,
    0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 2048.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder handle: built, and installed as the global
/// recorder, on first use. If something else installed a global recorder
/// first, confab's metrics go there and this handle renders nothing but
/// the scrape-time gauges; a warning says so.
pub(crate) fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(STORE_BATCH.into()), BATCH_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(CLUSTER_POST_BATCH.into()), BATCH_BUCKETS)
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only gauges");
        }
        describe();
        let upkeep = handle.clone();
        // A thread, not a task: the handle outlives any one runtime.
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the metrics upkeep thread: {e}");
        }
        handle
    })
}

/// Describes every metric and registers the counters, so a scrape shows
/// them at zero before anything happened.
fn describe() {
    describe_gauge!(CONNECTIONS, "Open connections, by transport.");
    describe_gauge!(MEMBERS, "Members of all rooms, each user counted once per room.");
    describe_counter!(POSTS, "Messages published.");
    describe_counter!(DELIVERIES, "Message frames queued for recipients.");
    describe_counter!(OUTBOX_OVERFLOWS, "Connections closed because they read too slowly.");
    describe_counter!(RATE_LIMITED, "Operations refused with rate_limited.");
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook deliveries, by outcome (delivered, failed, given_up)."
    );
    describe_histogram!(STORE_WRITE, Unit::Seconds, "Time to commit one batch to the store.");
    describe_histogram!(STORE_BATCH, Unit::Count, "Messages in one committed batch.");
    describe_histogram!(
        CLUSTER_POST_BATCH,
        Unit::Count,
        "Posts to ephemeral rooms sent to Redis in one call."
    );
    describe_histogram!(FANOUT, Unit::Seconds, "Time to queue one message for every recipient.");
    describe_counter!(HEAP_TRIMS, "Times free heap memory was returned to the system.");
    describe_counter!(REPORTS, "Messages reported by users.");
    describe_counter!(
        AUDIT_DROPPED,
        "Audit entries not written to the audit log file (queue full)."
    );
    for counter in
        [POSTS, DELIVERIES, OUTBOX_OVERFLOWS, RATE_LIMITED, HEAP_TRIMS, REPORTS, AUDIT_DROPPED]
    {
        metrics::counter!(counter).increment(0);
    }
    for transport in ["ws", "lp", "tcp"] {
        metrics::gauge!(CONNECTIONS, "transport" => transport).increment(0.0);
    }
    metrics::gauge!(MEMBERS).increment(0.0);
}

/// `GET /metrics`: the Prometheus text format.
pub(crate) async fn render(State(app): State<App>) -> impl IntoResponse {
    let mut text = handle().render();
    text.push_str(&format!(
        "# HELP {ROOMS} Rooms that exist, boards included.\n# TYPE {ROOMS} gauge\n{ROOMS} {}\n",
        app.hub.room_count()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}
