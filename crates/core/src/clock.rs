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
