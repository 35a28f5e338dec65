//! Client frames: `{ "op": "<name>", "id": <integer, optional>, …args }`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{ErrorBody, ErrorCode, Retention};

/// One op a client can send. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ClientOp {
    Hello {
        name: String,
        #[serde(default)]
        session: Option<String>,
        /// Rooms to rejoin: `{ code: last_seq }` or `{ code: { seq, rev } }`.
        #[serde(default)]
        resume: Option<BTreeMap<String, ResumePoint>>,
        /// A puzzle solved, when the server asked for one.
        #[serde(default)]
        pow: Option<crate::Pow>,
    },
    Create {
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        capacity: Option<u32>,
        #[serde(default)]
        retention: Option<Retention>,
        #[serde(default)]
        backlog: Option<u32>,
        #[serde(default)]
        public: Option<bool>,
    },
    Join {
        room: String,
        #[serde(default)]
        since: Option<u64>,
        /// With `since`: the room's change number the client has seen (the
        /// join then tells what changed after it).
        #[serde(default)]
        rev: Option<u64>,
    },
    Leave {
        room: String,
    },
    Post {
        room: String,
        body: String,
        #[serde(default)]
        subject: Option<String>,
        #[serde(default)]
        cid: Option<String>,
        /// The seq of the message this one answers.
        #[serde(default)]
        reply: Option<u64>,
    },
    /// Replaces the text of your own message, within the edit window.
    Edit {
        room: String,
        seq: u64,
        body: String,
    },
    /// Puts `emoji` on a message, or takes yours off.
    React {
        room: String,
        seq: u64,
        emoji: String,
    },
    Typing {
        room: String,
        active: bool,
    },
    Rooms,
    Members {
        room: String,
    },
    History {
        room: String,
        #[serde(default)]
        before: Option<u64>,
        #[serde(default)]
        limit: Option<u32>,
    },
    Get {
        room: String,
        seq: u64,
    },
    Mine {
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Gives a member a role (the owner only): by user id or by name.
    Role {
        room: String,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        name: Option<String>,
        role: crate::Role,
    },
    /// Locks the room (nobody new may join) or unlocks it (owner and
    /// moderators).
    Lock {
        room: String,
        locked: bool,
    },
    /// Removes a member from the room for a while (owner and moderators).
    Kick {
        room: String,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        name: Option<String>,
        /// How long they may not join again [default: 10].
        #[serde(default)]
        minutes: Option<u32>,
    },
    /// Bans a member (owner and moderators): by their session and by the
    /// addresses they joined from, for `minutes` or until lifted.
    Ban {
        room: String,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        name: Option<String>,
        /// How long the ban lasts [default: until lifted].
        #[serde(default)]
        minutes: Option<u32>,
    },
    /// Lifts the ban (or the removal by `kick`) of a user, by their id.
    Unban {
        room: String,
        user: String,
    },
    /// The room's bans, removals and mutes in force (owner and
    /// moderators).
    Bans {
        room: String,
    },
    /// Mutes a member (owner and moderators): their posts are refused, for
    /// `minutes` or until lifted.
    Mute {
        room: String,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        minutes: Option<u32>,
        /// Their posts reach only themselves, and nobody is told.
        #[serde(default)]
        shadow: bool,
    },
    /// Lets a muted user speak again, by their id.
    Unmute {
        room: String,
        user: String,
    },
    /// Slow mode (owner and moderators): the least seconds between one
    /// member's posts; 0 turns it off.
    Slow {
        room: String,
        seconds: u32,
    },
    /// Deletes a message: your own, or any as the owner or a moderator.
    Delete {
        room: String,
        seq: u64,
    },
    /// Renames the room (owner and moderators).
    Title {
        room: String,
        title: String,
    },
    /// Makes an integration of the room (its owner): a token for a program
    /// to post and read as the bot `name`.
    Integrate {
        room: String,
        name: String,
        #[serde(default)]
        scopes: Option<Vec<String>>,
    },
    /// The room's integrations (its owner).
    Integrations {
        room: String,
    },
    /// Revokes an integration of the room (its owner).
    Revoke {
        room: String,
        /// The integration's id (`id` is the frame's own).
        integration: String,
    },
    /// Makes an outgoing webhook of the room (its owner): `events` (all
    /// when left out) go, signed, to `url`.
    Webhook {
        room: String,
        url: String,
        #[serde(default)]
        events: Option<Vec<String>>,
    },
    /// The room's webhooks (its owner).
    Webhooks {
        room: String,
    },
    /// Removes a webhook of the room (its owner).
    Unhook {
        room: String,
        webhook: String,
    },
    /// Tells the operator about a message (the audit log).
    Report {
        room: String,
        seq: u64,
        #[serde(default)]
        reason: Option<String>,
    },
    Ping,
}

impl ClientOp {
    /// Whether the op only reads (and draws from the read budget).
    pub fn reads(&self) -> bool {
        matches!(
            self,
            ClientOp::Rooms
                | ClientOp::Members { .. }
                | ClientOp::History { .. }
                | ClientOp::Get { .. }
                | ClientOp::Mine { .. }
                | ClientOp::Bans { .. }
                | ClientOp::Integrations { .. }
                | ClientOp::Webhooks { .. }
        )
    }

    /// The op's name as it appears on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            ClientOp::Hello { .. } => "hello",
            ClientOp::Create { .. } => "create",
            ClientOp::Join { .. } => "join",
            ClientOp::Leave { .. } => "leave",
            ClientOp::Post { .. } => "post",
            ClientOp::Typing { .. } => "typing",
            ClientOp::Rooms => "rooms",
            ClientOp::Members { .. } => "members",
            ClientOp::History { .. } => "history",
            ClientOp::Get { .. } => "get",
            ClientOp::Mine { .. } => "mine",
            ClientOp::Report { .. } => "report",
            ClientOp::Role { .. } => "role",
            ClientOp::Kick { .. } => "kick",
            ClientOp::Lock { .. } => "lock",
            ClientOp::Ban { .. } => "ban",
            ClientOp::Unban { .. } => "unban",
            ClientOp::Bans { .. } => "bans",
            ClientOp::Mute { .. } => "mute",
            ClientOp::Unmute { .. } => "unmute",
            ClientOp::Slow { .. } => "slow",
            ClientOp::Title { .. } => "title",
            ClientOp::Delete { .. } => "delete",
            ClientOp::Edit { .. } => "edit",
            ClientOp::React { .. } => "react",
            ClientOp::Integrate { .. } => "integrate",
            ClientOp::Integrations { .. } => "integrations",
            ClientOp::Revoke { .. } => "revoke",
            ClientOp::Webhook { .. } => "webhook",
            ClientOp::Webhooks { .. } => "webhooks",
            ClientOp::Unhook { .. } => "unhook",
            ClientOp::Ping => "ping",
        }
    }
}

/// Where a resumed room's client stopped: its last `seq`, and the
/// room's change number it had seen (`rev`), if it gives one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ResumePoint {
    Seq(u64),
    At {
        seq: u64,
        #[serde(default)]
        rev: Option<u64>,
    },
}

impl ResumePoint {
    pub fn seq(self) -> u64 {
        match self {
            ResumePoint::Seq(seq) | ResumePoint::At { seq, .. } => seq,
        }
    }

    pub fn rev(self) -> Option<u64> {
        match self {
            ResumePoint::Seq(_) => None,
            ResumePoint::At { rev, .. } => rev,
        }
    }
}

/// A decoded client frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Option<i64>,
    pub op: ClientOp,
}

/// A frame that could not be decoded. `id` is kept when it could be read,
/// so the error can still be sent as a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub id: Option<i64>,
    pub error: ErrorBody,
}

impl FrameError {
    fn bad(id: Option<i64>, message: impl Into<String>) -> Self {
        FrameError { id, error: ErrorBody::new(ErrorCode::BadRequest, message) }
    }
}

/// Decodes one client frame.
///
/// # Errors
///
/// `bad_request` for anything that is not a JSON object with a known `op`
/// and well-typed arguments. The message says what is wrong.
pub fn parse_request(frame: &[u8]) -> Result<Request, FrameError> {
    let mut object: Map<String, Value> = match serde_json::from_slice(frame) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(FrameError::bad(None, "a frame must be a JSON object")),
        Err(e) => return Err(FrameError::bad(None, format!("malformed JSON: {e}"))),
    };
    let id = match object.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(id) => Some(id),
            None => return Err(FrameError::bad(None, "`id` must be an integer")),
        },
        Some(_) => return Err(FrameError::bad(None, "`id` must be an integer")),
    };
    match object.get("op") {
        Some(Value::String(_)) => {}
        Some(_) => return Err(FrameError::bad(id, "`op` must be a string")),
        None => return Err(FrameError::bad(id, "missing `op`")),
    }
    match ClientOp::deserialize(Value::Object(object)) {
        Ok(op) => Ok(Request { id, op }),
        Err(e) => Err(FrameError::bad(id, e.to_string())),
    }
}

#[cfg(test)]
mod tests;
