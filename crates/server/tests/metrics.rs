//! `GET /metrics`: Prometheus text with the hub's counters, gauges and
//! histograms. The recorder is per process, and so are the figures: every
//! test here runs in one process, so they check for "at least".

mod common;

use std::time::Duration;

use common::{join, post, start, start_with};
use confab_core::Rate;
use serde_json::json;

/// The value of the sample named exactly `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_connections_posts_deliveries_and_fan_out() {
    let server = start().await;
    let mut ann = server.client("Ann").await;
    let mut bob = server.client("Bob").await;
    let mut cat = server.client("Cat").await;
    let code = server.create(&mut ann, json!({})).await;
    for client in [&mut ann, &mut bob, &mut cat] {
        join(client, &code).await;
    }
    post(&mut ann, &code, "hello").await;
    // The reply to Ann came after the fan-out; Bob's and Cat's copies are
    // queued, so the counters already include them.
    bob.event("message").await.unwrap();
    cat.event("message").await.unwrap();
    join(&mut ann, "main").await;
    post(&mut ann, "main", "stored").await;

    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200);
    let at_least = |series: &str, n: f64| {
        let value = sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(value >= n, "{series} is {value}, expected at least {n}");
    };
    at_least(r#"confab_connections{transport="ws"}"#, 3.0);
    at_least("confab_rooms", 2.0);
    at_least("confab_members", 4.0);
    at_least("confab_posts_total", 2.0);
    at_least("confab_deliveries_total", 2.0);
    at_least("confab_fanout_seconds_count", 2.0);
    at_least("confab_store_write_seconds_count", 1.0);
    at_least(r#"confab_fanout_seconds_bucket{le="+Inf"}"#, 2.0);
    // Present from the start, even before anything is refused.
    at_least("confab_outbox_overflows_total", 0.0);
    at_least("confab_rate_limited_total", 0.0);
    at_least("confab_heap_trims_total", 0.0);
    assert!(text.contains("# TYPE confab_fanout_seconds histogram"), "{text}");
}

#[tokio::test]
async fn several_servers_in_one_process_each_serve_metrics() {
    let first = start().await;
    let second = start().await;
    for server in [&first, &second] {
        let (status, text) = server.get("/metrics").await;
        assert_eq!(status, 200);
        assert!(text.contains("confab_posts_total"), "{text}");
    }
}

#[tokio::test]
async fn refusals_and_long_poll_connections_are_counted() {
    let server =
        start_with(|c| c.hub.rates.post = Some(Rate::new(1, Duration::from_secs(60), 1))).await;
    let scrape = || async {
        let (status, text) = server.get("/metrics").await;
        assert_eq!(status, 200);
        text
    };
    let before = scrape().await;
    let mut ann = server.client("Ann").await;
    join(&mut ann, "main").await;
    post(&mut ann, "main", "one").await;
    let refused = ann.error_code(json!({"op": "post", "room": "main", "body": "two"})).await;
    assert_eq!(refused.unwrap(), "rate_limited");
    let mut http = common::http::Http::connect(server.http).await.unwrap();
    let opened = http.request("POST", "/lp", b"").await;
    assert_eq!(opened.status, 200);
    let after = scrape().await;
    let value = |text: &str, series: &str| {
        sample(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(
        value(&after, "confab_rate_limited_total") > value(&before, "confab_rate_limited_total")
    );
    // Other tests in this process may hold long-poll connections too, but
    // never fewer than this one.
    assert!(value(&after, r#"confab_connections{transport="lp"}"#) >= 1.0, "{after}");
}
