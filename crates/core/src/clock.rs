use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

const RFC3339_MILLIS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The current time as RFC 3339 UTC with milliseconds, e.g.
/// `2026-11-22T05:01:02.345Z`.
pub fn now_rfc3339() -> String {
    format(OffsetDateTime::now_utc())
}

/// The time `age` ago, formatted like [`now_rfc3339`], so that stored
/// timestamps compare with it as strings.
pub fn rfc3339_ago(age: Duration) -> String {
    format(OffsetDateTime::now_utc() - age)
}

fn format(at: OffsetDateTime) -> String {
    at.format(RFC3339_MILLIS).expect("a UTC timestamp always formats")
}

/// Milliseconds since the Unix epoch, now (the clock bans run on: a
/// cluster's nodes and Redis agree on it closely enough for minutes).
pub fn unix_ms() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// `ms` since the Unix epoch, formatted like [`now_rfc3339`].
pub fn rfc3339_of_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_or_else(|_| now_rfc3339(), format)
}
