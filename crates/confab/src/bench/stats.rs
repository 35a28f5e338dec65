//! What the bench counts, and the report it prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::process::Sample;

/// The longest latency a histogram holds, in microseconds (a minute);
/// longer ones are recorded as this.
const LATENCY_MAX_US: u64 = 60_000_000;
/// Error messages kept for the report; the rest are only counted.
const ERRORS_KEPT: usize = 5;

/// Counters and histograms shared by every client of the run. One thread
/// runs the whole bench, so they are plain fields behind a `RefCell`.
pub(crate) struct Stats {
    pub connected: u64,
    pub connect_errors: u64,
    pub join_errors: u64,
    /// Connections that closed or failed after they were set up.
    pub disconnects: u64,
    pub posts_sent: u64,
    /// Posts the server answered `ok`.
    pub posts: u64,
    /// Posts the server refused, by error code.
    pub refused: BTreeMap<String, u64>,
    /// `message` events received, duplicates included.
    pub received: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Frames that should not happen in a bench run (`closed`, `error`,
    /// unreadable messages), by kind.
    pub trouble: BTreeMap<String, u64>,
    /// Post to `message` event, in microseconds.
    pub latency: Histogram<u64>,
    /// Post to its `ok` reply, in microseconds.
    pub ack: Histogram<u64>,
    pub errors: Vec<String>,
}

impl Stats {
    pub fn new() -> Stats {
        let histogram =
            || Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("bounds are valid");
        Stats {
            connected: 0,
            connect_errors: 0,
            join_errors: 0,
            disconnects: 0,
            posts_sent: 0,
            posts: 0,
            refused: BTreeMap::new(),
            received: 0,
            duplicates: 0,
            out_of_order: 0,
            trouble: BTreeMap::new(),
            latency: histogram(),
            ack: histogram(),
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, message: String) {
        if self.errors.len() < ERRORS_KEPT {
            self.errors.push(message);
        }
    }

    pub fn record_latency(&mut self, latency: Duration) {
        self.latency.saturating_record(micros(latency));
    }

    pub fn record_ack(&mut self, latency: Duration) {
        self.ack.saturating_record(micros(latency));
    }

    /// Distinct deliveries: every `message` event but the duplicates.
    pub fn deliveries(&self) -> u64 {
        self.received - self.duplicates
    }

    /// Whether every post has its answer and every delivery arrived.
    pub fn settled(&self, members: u64) -> bool {
        let answered = self.posts + self.refused.values().sum::<u64>();
        answered >= self.posts_sent && self.deliveries() >= self.expected(members)
    }

    /// Posts sent that got neither an `ok` nor a refusal: lost before the
    /// server answered (or it never did). Loss counts only what the server
    /// acknowledged, so these are reported, and fail a run, on their own.
    pub fn unanswered(&self) -> u64 {
        self.posts_sent.saturating_sub(self.posts + self.refused.values().sum::<u64>())
    }

    /// Deliveries owed: each acknowledged post to every other member.
    pub fn expected(&self, members: u64) -> u64 {
        self.posts * members.saturating_sub(1)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Everything a report needs besides the counters.
pub(crate) struct Run {
    pub urls: Vec<String>,
    pub rooms: usize,
    pub members: usize,
    pub interval_ms: u64,
    pub duration_s: u64,
    pub size: usize,
    pub idle: bool,
    pub persistent: bool,
    /// From the first connect to the last join.
    pub setup: Duration,
    /// From the first connect to the last completed handshake.
    pub connecting: Duration,
    /// Posting time (or holding time with `--idle`).
    pub active: Duration,
    /// Waiting for deliveries after posting stopped.
    pub draining: Duration,
    pub bench_before: Option<Sample>,
    pub bench_after: Option<Sample>,
    pub server_start: Option<Sample>,
    pub server_before: Option<Sample>,
    pub server_after: Option<Sample>,
}

/// The report as one JSON object.
pub(crate) fn json_report(run: &Run, stats: &Stats) -> Value {
    let members = run.members as u64;
    let expected = stats.expected(members);
    let deliveries = stats.deliveries();
    let active = run.active.as_secs_f64().max(1e-9);
    let measured = (run.active + run.draining).as_secs_f64().max(1e-9);
    let cpu = |before: Option<Sample>, after: Option<Sample>| {
        before.zip(after).map(|(b, a)| a.cpu.saturating_sub(b.cpu).as_secs_f64())
    };
    let waited = |before: Option<Sample>, after: Option<Sample>| {
        before.zip(after).map(|(b, a)| a.waited.saturating_sub(b.waited).as_secs_f64())
    };
    let bench_cpu = cpu(run.bench_before, run.bench_after);
    let server_cpu = cpu(run.server_before, run.server_after);
    let server = run.server_after.map(|after| {
        let per_connection = run
            .server_start
            .map(|start| after.rss_bytes.saturating_sub(start.rss_bytes) / stats.connected.max(1));
        json!({
            "cpu_seconds": server_cpu,
            "cpu_percent": server_cpu.map(|c| 100.0 * c / measured),
            "cpu_wait_seconds": waited(run.server_before, run.server_after),
            "cpu_ms_per_1000_deliveries": server_cpu
                .filter(|_| deliveries > 0)
                .map(|c| 1e6 * c / deliveries as f64),
            "rss_bytes": after.rss_bytes,
            "rss_bytes_at_start": run.server_start.map(|s| s.rss_bytes),
            "rss_bytes_per_connection": per_connection,
        })
    });
    json!({
        "urls": run.urls,
        "rooms": run.rooms,
        "members": run.members,
        "interval_ms": run.interval_ms,
        "duration_s": run.duration_s,
        "size": run.size,
        "idle": run.idle,
        "persistent": run.persistent,
        "connections": stats.connected,
        "connect_errors": stats.connect_errors,
        "join_errors": stats.join_errors,
        "connect_seconds": run.connecting.as_secs_f64(),
        "connect_rate": stats.connected as f64 / run.connecting.as_secs_f64().max(1e-9),
        "setup_seconds": run.setup.as_secs_f64(),
        "disconnects": stats.disconnects,
        "posts_sent": stats.posts_sent,
        "posts": stats.posts,
        "posts_refused": stats.refused,
        "posts_unanswered": stats.unanswered(),
        "posts_per_second": stats.posts as f64 / active,
        "deliveries": deliveries,
        "expected": expected,
        "loss": expected.saturating_sub(deliveries),
        "duplicates": stats.duplicates,
        "out_of_order": stats.out_of_order,
        "deliveries_per_second": deliveries as f64 / active,
        "drain_seconds": run.draining.as_secs_f64(),
        "latency_ms": percentiles(&stats.latency),
        "ack_latency_ms": percentiles(&stats.ack),
        "trouble": stats.trouble,
        "bench": {
            "cpu_seconds": bench_cpu,
            "cpu_percent": bench_cpu.map(|c| 100.0 * c / measured),
            "cpu_wait_seconds": waited(run.bench_before, run.bench_after),
            "rss_bytes": run.bench_after.map(|s| s.rss_bytes),
        },
        "server": server,
        "errors": stats.errors,
    })
}

fn percentiles(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": ms(h.value_at_quantile(0.5)),
        "p90": ms(h.value_at_quantile(0.9)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p99_9": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}

/// The report for a person: the JSON report laid out as lines.
pub(crate) fn text_report(report: &Value) -> String {
    let mut out = String::new();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "connections  {} made, {} failed, {} joins failed, in {:.2} s ({:.0}/s); {} dropped later",
        u(&report["connections"]),
        u(&report["connect_errors"]),
        u(&report["join_errors"]),
        f(&report["connect_seconds"]),
        f(&report["connect_rate"]),
        u(&report["disconnects"]),
    );
    if report["idle"] != json!(true) {
        let _ = writeln!(
            out,
            "posts        {} acknowledged of {} sent ({:.0}/s); refused: {}; unanswered {}",
            u(&report["posts"]),
            u(&report["posts_sent"]),
            f(&report["posts_per_second"]),
            report["posts_refused"],
            u(&report["posts_unanswered"]),
        );
        let _ = writeln!(
            out,
            "deliveries   {} of {} expected ({:.0}/s); loss {}, duplicates {}, out of order {}",
            u(&report["deliveries"]),
            u(&report["expected"]),
            f(&report["deliveries_per_second"]),
            u(&report["loss"]),
            u(&report["duplicates"]),
            u(&report["out_of_order"]),
        );
        for (name, key) in [("latency", "latency_ms"), ("ack latency", "ack_latency_ms")] {
            let l = &report[key];
            if l.is_null() {
                continue;
            }
            let _ = writeln!(
                out,
                "{name:<12} p50 {:.3} ms, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}",
                f(&l["p50"]),
                f(&l["p90"]),
                f(&l["p99"]),
                f(&l["p99_9"]),
                f(&l["max"]),
            );
        }
    }
    let bench = &report["bench"];
    let _ = writeln!(
        out,
        "bench        cpu {:.2} s ({:.0}% of a core), waited {:.2} s for a cpu; rss {:.1} MB",
        f(&bench["cpu_seconds"]),
        f(&bench["cpu_percent"]),
        f(&bench["cpu_wait_seconds"]),
        f(&bench["rss_bytes"]) / 1e6,
    );
    let server = &report["server"];
    if !server.is_null() {
        let _ = writeln!(
            out,
            "server       cpu {:.2} s ({:.0}% of a core), waited {:.2} s for a cpu, {:.3} ms per 1,000 deliveries; rss {:.1} MB ({} bytes per connection)",
            f(&server["cpu_seconds"]),
            f(&server["cpu_percent"]),
            f(&server["cpu_wait_seconds"]),
            f(&server["cpu_ms_per_1000_deliveries"]),
            f(&server["rss_bytes"]) / 1e6,
            u(&server["rss_bytes_per_connection"]),
        );
    }
    if report["trouble"].as_object().is_some_and(|t| !t.is_empty()) {
        let _ = writeln!(out, "trouble      {}", report["trouble"]);
    }
    for error in report["errors"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "error        {}", error.as_str().unwrap_or_default());
    }
    out
}
