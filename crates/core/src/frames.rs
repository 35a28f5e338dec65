//! The frames every backend sends to a node's connections, serialized
//! once each, and the errors they carry.

use bytes::Bytes;
use confab_proto::{ErrorBody, ErrorCode, Event, Message, Reply};
use serde::Serialize;

/// An event, serialized.
pub fn event_frame(event: &Event) -> Bytes {
    Bytes::from(serde_json::to_vec(event).expect("events always serialize"))
}

/// A successful reply to `id` carrying `result`.
pub fn reply_frame<T: Serialize>(id: i64, result: &T) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&Reply { re: id, ok: true, result }).expect("replies always serialize"),
    )
}

#[derive(Serialize)]
struct Failure {
    error: ErrorBody,
}

/// An error as the reply to `id`, or as an `error` event without one.
pub fn error_frame(id: Option<i64>, error: ErrorBody) -> Bytes {
    match id {
        Some(id) => Bytes::from(
            serde_json::to_vec(&Reply { re: id, ok: false, result: Failure { error } })
                .expect("replies always serialize"),
        ),
        None => event_frame(&Event::Error { error }),
    }
}

/// A message, serialized: what a `message` event and the poster's reply
/// share.
pub fn message_json(message: &Message) -> Vec<u8> {
    serde_json::to_vec(message).expect("messages always serialize")
}

/// The `message` event around a serialized message.
pub fn message_event(message_json: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(message_json.len() + 32);
    event.extend_from_slice(br#"{"ev":"message","message":"#);
    event.extend_from_slice(message_json);
    event.push(b'}');
    Bytes::from(event)
}

/// The poster's reply to `id` around a serialized message.
pub fn message_reply(id: i64, message_json: &[u8]) -> Bytes {
    let mut reply = Vec::with_capacity(message_json.len() + 40);
    reply.extend_from_slice(format!(r#"{{"re":{id},"ok":true,"message":"#).as_bytes());
    reply.extend_from_slice(message_json);
    reply.push(b'}');
    Bytes::from(reply)
}

/// The one `unavailable` error: the service behind the op (the store, the
/// cluster) cannot answer now; the client may retry.
pub fn unavailable(message: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Unavailable, message)
}

/// The store cannot answer.
pub fn storage_down() -> ErrorBody {
    unavailable("storage is unavailable; try again shortly")
}

/// Message `seq` of room `code` does not exist, or the asker may not see it.
pub fn no_message(code: &str, seq: u64) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("no message {seq} in room {code} that you may see"))
}

/// A `join` of a room that does not exist.
pub fn not_found(code: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("no room {code}"))
}

/// The one answer to an op on a room this connection is not in, whether
/// or not the room exists: it names the room only as the client wrote it.
pub fn not_in(code: &str) -> ErrorBody {
    let code = code.trim();
    let message = if code.len() <= 32 && !code.chars().any(char::is_control) {
        format!("you are not in room {code}")
    } else {
        "you are not in that room".to_owned()
    };
    ErrorBody::new(ErrorCode::NotMember, message)
}

/// A room that is full.
pub fn room_full(code: &str, seats: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(ErrorCode::RoomFull, format!("room {code} is full ({seats} seats)"))
}

/// A name another member of the room holds.
pub fn name_taken(code: &str, name: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::NameTaken,
        format!("someone in room {code} is already called {name:?}"),
    )
}

/// An op that only the room's owner may do.
pub fn owner_only(code: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Forbidden, format!("only the owner of room {code} gives roles"))
}

/// A `kick` by someone who is neither the owner nor a moderator, or of
/// someone they may not remove.
pub fn may_not_kick(code: &str, why: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Forbidden, format!("{why} in room {code}"))
}

/// A `join` of a new member into a locked room.
pub fn locked_out(code: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Forbidden, format!("room {code} is locked: nobody new may join"))
}

/// A post by a muted member, for `wait` more (`None`: until lifted).
pub fn muted(code: &str, wait: Option<std::time::Duration>) -> ErrorBody {
    let Some(wait) = wait else {
        return ErrorBody::new(ErrorCode::Forbidden, format!("you are muted in room {code}"));
    };
    let minutes = wait.as_secs().div_ceil(60).max(1);
    let mut error = ErrorBody::new(
        ErrorCode::Forbidden,
        format!(
            "you are muted in room {code} for {minutes} more minute{}",
            if minutes == 1 { "" } else { "s" }
        ),
    );
    error.retry_after_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
    error
}

/// A post too soon after the member's last in slow mode (`every_ms`):
/// `wait_ms` more.
pub fn slowed(code: &str, every_ms: u64, wait_ms: u64) -> ErrorBody {
    let seconds = every_ms / 1000;
    let mut error = ErrorBody::new(
        ErrorCode::RateLimited,
        format!(
            "room {code} is in slow mode: one message every {seconds} second{}",
            if seconds == 1 { "" } else { "s" }
        ),
    );
    error.retry_after_ms = Some(wait_ms.max(1));
    error
}

/// An `unmute` of a user who is not muted.
pub fn not_muted(code: &str, user_id: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("{user_id} is not muted in room {code}"))
}

/// An `unban` of a user with no ban in force.
pub fn no_ban(code: &str, user_id: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("{user_id} is not banned from room {code}"))
}

/// A `join` by someone banned from the room, for `wait` more (`None`:
/// until the ban is lifted).
pub fn banned_out(code: &str, wait: Option<std::time::Duration>) -> ErrorBody {
    let Some(wait) = wait else {
        return ErrorBody::new(ErrorCode::Forbidden, format!("you are banned from room {code}"));
    };
    let minutes = wait.as_secs().div_ceil(60).max(1);
    let mut error = ErrorBody::new(
        ErrorCode::Forbidden,
        format!(
            "you are banned from room {code} for {minutes} more minute{}",
            if minutes == 1 { "" } else { "s" }
        ),
    );
    error.retry_after_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
    error
}

/// A `join` by someone removed from the room, for `wait` more.
pub fn kicked_out(code: &str, wait: std::time::Duration) -> ErrorBody {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    let mut error = ErrorBody::new(
        ErrorCode::Forbidden,
        format!(
            "you were removed from room {code}; you may join it again in {minutes} minute{}",
            if minutes == 1 { "" } else { "s" }
        ),
    );
    error.retry_after_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
    error
}

/// A role op naming someone who is not a member of the room.
pub fn no_such_member(code: &str, whom: &str) -> ErrorBody {
    let whom = if whom.chars().count() <= 64 && !whom.chars().any(char::is_control) {
        whom
    } else {
        "that user"
    };
    ErrorBody::new(ErrorCode::BadRequest, format!("{whom} is not a member of room {code}"))
}

/// A role op by the owner on themselves.
pub fn own_role(code: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::BadRequest,
        format!("you own room {code}; to give it up, make another member its owner"),
    )
}

/// A `bad_request`.
pub fn bad_request(message: impl Into<String>) -> ErrorBody {
    bad(message)
}

pub(crate) fn bad(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, message)
}
