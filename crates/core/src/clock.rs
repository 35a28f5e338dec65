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

/// A time formatted like [`now_rfc3339`], in ms since the Unix epoch.
pub fn ms_of_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let shape = b.len() == 24 && b[23] == b'Z' && b[4] == b'-' && b[10] == b'T' && b[19] == b'.';
    if !shape {
        return None;
    }
    let n = |from: usize, to: usize| text.get(from..to)?.parse::<u16>().ok();
    let month = time::Month::try_from(u8::try_from(n(5, 7)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::from(n(0, 4)?), month, u8::try_from(n(8, 10)?).ok()?)
            .ok()?;
    let hms = |at: usize| n(at, at + 2).and_then(|v| u8::try_from(v).ok());
    let clock = time::Time::from_hms_milli(hms(11)?, hms(14)?, hms(17)?, n(20, 23)?).ok()?;
    let at = time::PrimitiveDateTime::new(date, clock).assume_utc();
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formatted_time_reads_back_to_its_millisecond() {
        let ms = 1_764_912_345_678;
        assert_eq!(ms_of_rfc3339(&rfc3339_of_ms(ms)), Some(ms));
        assert_eq!(ms_of_rfc3339("2026-12-05T11:45:31.123Z"), Some(1_796_471_131_123));
        for bad in
            ["", "2026-12-05T11:45:31Z", "2026-13-05T11:45:31.123Z", "2026-12-05 11:45:31.123Z"]
        {
            assert_eq!(ms_of_rfc3339(bad), None, "{bad}");
        }
    }
}
