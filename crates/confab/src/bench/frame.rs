//! Just enough parsing of server frames for the bench's hot path.
//!
//! A receiver needs two things from a `message` event: the room's `seq`
//! and the body the bench wrote (send time and poster). Building a full
//! JSON value for each of hundreds of thousands of frames a second would
//! make the bench, not the server, the thing measured, so the fields are
//! found by scanning. The server writes a message's fields in a fixed order
//! (`room`, `seq`, `from`, …, `body`), a room code never holds a quote,
//! and the bench's own names and bodies hold no escapes, so the first
//! `"seq":` and the first `"body":"` after it are the ones wanted.

/// What a frame is, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A `message` event: another member's post.
    Message(Posted),
    /// The `ok` reply to one of this connection's posts.
    Posted(Posted),
    /// A reply with `ok: false`: the error code.
    Refused(&'a str),
    /// An event that ends or troubles the run (`closed`, `error`).
    Trouble(&'a str),
    /// Anything else (`join`, `leave`, `typing`, other replies).
    Other,
}

/// The parts of a message the bench wrote or needs.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) struct Posted {
    pub seq: u64,
    /// When it was sent, in nanoseconds since the bench's epoch.
    pub sent_ns: u64,
    /// The poster's index within its room.
    pub poster: u32,
}

const MESSAGE_EVENT: &[u8] = br#"{"ev":"message","#;
const REPLY: &[u8] = br#"{"re":"#;

/// Classifies a frame, parsing only what the bench needs.
pub(crate) fn scan(frame: &[u8]) -> Frame<'_> {
    if frame.starts_with(MESSAGE_EVENT) {
        return match posted(frame) {
            Some(posted) => Frame::Message(posted),
            None => Frame::Trouble("unreadable message event"),
        };
    }
    if frame.starts_with(REPLY) {
        if find(frame, br#""ok":true"#).is_none() {
            let code = find(frame, br#""code":""#)
                .and_then(|at| string_at(frame, at))
                .unwrap_or("unreadable error");
            return Frame::Refused(code);
        }
        return match posted(frame) {
            Some(posted) => Frame::Posted(posted),
            None => Frame::Other,
        };
    }
    if frame.starts_with(br#"{"ev":"closed""#) {
        return Frame::Trouble("closed");
    }
    if frame.starts_with(br#"{"ev":"error""#) {
        return Frame::Trouble(
            find(frame, br#""code":""#).and_then(|at| string_at(frame, at)).unwrap_or("error"),
        );
    }
    Frame::Other
}

/// The seq and the bench's body fields of the message in `frame`.
fn posted(frame: &[u8]) -> Option<Posted> {
    let at = find(frame, br#""seq":"#)?;
    let (seq, _) = number(&frame[at..])?;
    let body = at + find(&frame[at..], br#""body":""#)?;
    let (sent_ns, used) = number(&frame[body..])?;
    let rest = &frame[body + used..];
    let (poster, _) = number(rest.strip_prefix(b" ")?)?;
    Some(Posted { seq, sent_ns, poster: u32::try_from(poster).ok()? })
}

/// The body the bench posts: send time, poster, and padding up to `size`
/// bytes. Written into `out`, which is cleared first.
pub(crate) fn write_body(out: &mut String, sent_ns: u64, poster: u32, size: usize) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "{sent_ns} {poster} ");
    while out.len() < size {
        out.push('x');
    }
}

/// Position just past the first occurrence of `needle`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle).map(|at| at + needle.len())
}

/// The decimal number at the start of `bytes`, and how many bytes it took.
fn number(bytes: &[u8]) -> Option<(u64, usize)> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = bytes[..digits].iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some((value, digits))
}

/// The string (without escapes) starting at `at`, up to its closing quote.
fn string_at(frame: &[u8], at: usize) -> Option<&str> {
    let len = frame[at..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&frame[at..at + len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_event_yields_seq_time_and_poster() {
        let mut body = String::new();
        write_body(&mut body, 123_456_789, 7, 40);
        assert_eq!(body.len(), 40);
        let frame = format!(
            r#"{{"ev":"message","message":{{"room":"K7QX2M","seq":42,"from":{{"id":"u_1","name":"m7"}},"body":"{body}","ts":"2026-01-01T00:00:00.000Z"}}}}"#
        );
        assert_eq!(
            scan(frame.as_bytes()),
            Frame::Message(Posted { seq: 42, sent_ns: 123_456_789, poster: 7 })
        );
    }

    #[test]
    fn a_reply_to_a_post_yields_the_message() {
        let frame = r#"{"re":9,"ok":true,"message":{"room":"ABC","seq":3,"from":{"id":"u","name":"m0"},"body":"55 0 xx","ts":"t"}}"#;
        assert_eq!(
            scan(frame.as_bytes()),
            Frame::Posted(Posted { seq: 3, sent_ns: 55, poster: 0 })
        );
    }

    #[test]
    fn a_refusal_yields_its_code() {
        let frame = r#"{"re":9,"ok":false,"error":{"code":"rate_limited","message":"slow down","retry_after_ms":90}}"#;
        assert_eq!(scan(frame.as_bytes()), Frame::Refused("rate_limited"));
    }

    #[test]
    fn other_events_are_ignored_and_trouble_is_named() {
        let join = r#"{"ev":"join","room":"ABC","user":{"id":"u","name":"m1"}}"#;
        assert_eq!(scan(join.as_bytes()), Frame::Other);
        let closed = r#"{"ev":"closed","room":"ABC","reason":"shutdown"}"#;
        assert_eq!(scan(closed.as_bytes()), Frame::Trouble("closed"));
        let error = r#"{"ev":"error","error":{"code":"not_member","message":"no"}}"#;
        assert_eq!(scan(error.as_bytes()), Frame::Trouble("not_member"));
    }

    #[test]
    fn a_message_whose_body_is_not_the_benchs_is_trouble() {
        let frame = r#"{"ev":"message","message":{"room":"ABC","seq":1,"from":{"id":"u","name":"x"},"body":"hello","ts":"t"}}"#;
        assert_eq!(scan(frame.as_bytes()), Frame::Trouble("unreadable message event"));
    }
}
