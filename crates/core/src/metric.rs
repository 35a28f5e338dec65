//! The names of the metrics confab records, in one place: the hub and
//! the edges record under these, and the server describes and renders
//! them at `GET /metrics`.

/// Open connections, labelled by `transport` (`ws`, `lp`, `tcp`). Gauge.
pub const CONNECTIONS: &str = "confab_connections";
/// Members of all rooms (users, counted once per room). Gauge.
pub const MEMBERS: &str = "confab_members";
/// Messages published (after the store wrote them, for persistent rooms).
pub const POSTS: &str = "confab_posts_total";
/// Frames of a published message queued for its recipients.
pub const DELIVERIES: &str = "confab_deliveries_total";
/// Connections closed because their outbox was full.
pub const OUTBOX_OVERFLOWS: &str = "confab_outbox_overflows_total";
/// Operations refused with `rate_limited`.
pub const RATE_LIMITED: &str = "confab_rate_limited_total";
/// Time one batch took to commit to the store.
pub const STORE_WRITE: &str = "confab_store_write_seconds";
/// Messages in one committed batch.
pub const STORE_BATCH: &str = "confab_store_batch_size";
/// Posts to ephemeral rooms sent to Redis in one call (a cluster node).
pub const CLUSTER_POST_BATCH: &str = "confab_cluster_post_batch_size";
/// Time one message took to be queued into every recipient's outbox.
pub const FANOUT: &str = "confab_fanout_seconds";
/// Messages reported by users (`report`).
pub const REPORTS: &str = "confab_reports_total";
/// Audit entries not written to `--audit-log` because its queue was full
/// (they were still logged).
pub const AUDIT_DROPPED: &str = "confab_audit_dropped_total";
/// Times free heap memory was given back to the system after a burst.
pub const HEAP_TRIMS: &str = "confab_heap_trims_total";
