use serde::{Deserialize, Serialize};

/// The public identity of a user. `id` is random and never the session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
}

/// One chat message. `seq` is the room's sequence number and the message id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub room: String,
    pub seq: u64,
    pub from: User,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub body: String,
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// A tombstone: the message was deleted (`body` is empty, `subject`
    /// gone); `seq`, `from`, `ts` and `cid` stay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Posted by a shadow-muted member: it reaches its author only. Never
    /// sent (the author must not learn it).
    #[serde(skip)]
    pub shadow: bool,
    /// The message this one answers, as it was when this one was posted
    /// (its tombstone once it is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Quote>,
    /// RFC 3339 UTC: when its author last edited it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<String>,
    /// Its reactions, each emoji in the order it was first added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// Posted by a program through an integration of the room, not by a
    /// person.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
}

/// A room's integration, as its owner sees it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationInfo {
    pub id: String,
    /// The bot it posts as.
    pub user: User,
    /// What it may do: `post`, `read`.
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub created: String,
}

/// A quoted preview of the message a reply answers: enough to show it
/// without the message itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub seq: u64,
    pub from: User,
    /// The start of its text (at most [`QUOTE_CHARS`] characters, `…` when
    /// cut); empty once it is deleted.
    #[serde(default)]
    pub body: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// The most characters of a quoted message's text a reply carries.
pub const QUOTE_CHARS: usize = 100;

impl Quote {
    /// The preview of `message` that a reply to it carries.
    pub fn of(message: &Message) -> Quote {
        let mut body: String = message.body.chars().take(QUOTE_CHARS).collect();
        if body.len() < message.body.len() {
            body.push('…');
        }
        Quote { seq: message.seq, from: message.from.clone(), body, deleted: message.deleted }
    }

    /// This quote of a deleted message.
    pub fn tombstone(&self) -> Quote {
        Quote { body: String::new(), deleted: true, ..self.clone() }
    }
}

/// One emoji on a message and who put it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: String,
    pub count: u32,
    /// Who reacted, oldest first (`count` of them).
    pub users: Vec<User>,
}

impl Message {
    /// This message deleted: its text gone, its place kept.
    pub fn tombstone(&self) -> Message {
        Message {
            body: String::new(),
            subject: None,
            deleted: true,
            edited: None,
            reactions: Vec::new(),
            reply: None,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Messages live in memory only and vanish with the room.
    Ephemeral,
    /// Messages are stored and the room is kept.
    Persistent,
}

impl Retention {
    pub fn as_str(self) -> &'static str {
        match self {
            Retention::Ephemeral => "ephemeral",
            Retention::Persistent => "persistent",
        }
    }
}

/// What a member may do in a room beyond posting. The session that created
/// a room is its owner; the owner names moderators and may hand the room
/// over. Boards have no owner (their operator is the site's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Moderator,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Moderator => "moderator",
            Role::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "owner" => Some(Role::Owner),
            "moderator" => Some(Role::Moderator),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A room's roles beyond `member`, by user id: its owner and moderators.
/// A user not in it is a plain member.
pub type Roles = std::collections::BTreeMap<String, Role>;

/// What `create`, `join` and `rooms` tell about a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub code: String,
    pub title: String,
    pub capacity: Option<u32>,
    pub retention: Retention,
    pub backlog: u32,
    pub public: bool,
    /// Members right now (users, not connections).
    pub members: usize,
    /// RFC 3339 UTC.
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub version: String,
    pub node: String,
    /// How long after posting its author may edit a message (0: never).
    #[serde(default)]
    pub edit_seconds: u64,
}

/// The result of `join`, and one entry of `hello`'s `rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResult {
    pub room: RoomInfo,
    pub members: Vec<User>,
    /// The owner and moderators, by user id (members or not).
    #[serde(default)]
    pub roles: Roles,
    /// Whether the room is locked: nobody new may join.
    #[serde(default)]
    pub locked: bool,
    /// Slow mode: the least seconds between one member's posts (0: off;
    /// the owner and moderators are not held to it).
    #[serde(default)]
    pub slow: u32,
    pub messages: Vec<Message>,
    /// The latest `seq` of the room.
    pub seq: u64,
    /// True when some message after `since` is not returned.
    pub gap: bool,
    /// The room's change number: it grows with every edit, delete and
    /// reaction (`edited`, `deleted` and `reacted` carry theirs).
    #[serde(default)]
    pub rev: u64,
    /// On a resume that gave its `rev`: the messages up to `since` that
    /// changed after it, as they are now, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<Message>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthenticated,
    NotFound,
    RoomFull,
    NameTaken,
    NotMember,
    /// The op needs a role the user does not have in the room.
    Forbidden,
    TooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::NotMember => "not_member",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of a failed reply or an `error` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// A puzzle to solve before `hello` is answered (the server's
    /// defensive mode): see `Pow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Challenge>,
}

/// A proof-of-work puzzle: find a `nonce` such that the SHA-256 of
/// `"<token>:<nonce>"` starts with `bits` zero bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub token: String,
    pub bits: u32,
}

/// A puzzle solved, sent with `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pow {
    pub token: String,
    pub nonce: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody { code, message: message.into(), retry_after_ms: None, challenge: None }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

/// One muted member, as `bans` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuteInfo {
    pub user: User,
    pub by: User,
    /// RFC 3339 UTC; absent: until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// A shadow mute: their posts reach only themselves, and nobody was
    /// told.
    #[serde(default)]
    pub shadow: bool,
}

/// Why a member left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaveReason {
    Left,
    Disconnected,
    /// Removed by the room's owner or a moderator (`kick`).
    Kicked,
    /// Banned by the room's owner or a moderator (`ban`).
    Banned,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::Kicked => "kicked",
            LeaveReason::Banned => "banned",
        }
    }

    /// Whether the member was removed by someone else: their connections
    /// get `closed` with this reason.
    pub fn removed(self) -> bool {
        matches!(self, LeaveReason::Kicked | LeaveReason::Banned)
    }
}

/// One entry of a room's `bans`: a user removed (`kick`) or banned, and
/// until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    pub user: User,
    /// Who removed them.
    pub by: User,
    /// `kicked` or `banned`.
    pub reason: LeaveReason,
    /// RFC 3339 UTC; absent: until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Whether the ban holds the addresses they joined from too.
    pub address: bool,
}

/// A server push: `{ "ev": "<name>", … }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    Message {
        message: Message,
    },
    Join {
        room: String,
        user: User,
    },
    Leave {
        room: String,
        user: User,
        reason: LeaveReason,
    },
    Typing {
        room: String,
        user: User,
        active: bool,
    },
    /// `user`'s role in `room` changed to `role`.
    Role {
        room: String,
        user: User,
        role: Role,
    },
    /// `user` locked `room` (nobody new may join) or unlocked it.
    Locked {
        room: String,
        locked: bool,
        user: User,
    },
    /// `by` muted `user` in `room` (their posts are refused) or let them
    /// speak again.
    Muted {
        room: String,
        user: User,
        muted: bool,
        by: User,
    },
    /// `user` set slow mode in `room`: one post per `seconds` per member
    /// (0: off).
    Slow {
        room: String,
        seconds: u32,
        user: User,
    },
    /// Message `seq` of `room` was deleted by `by` (its author, the owner
    /// or a moderator).
    Deleted {
        room: String,
        seq: u64,
        by: User,
        rev: u64,
    },
    /// Message `seq` of `room` was edited by its author: `message` is how
    /// it is now.
    Edited {
        room: String,
        seq: u64,
        rev: u64,
        message: Box<Message>,
    },
    /// `user` put `emoji` on message `seq` of `room` (`on`) or took it off.
    Reacted {
        room: String,
        seq: u64,
        rev: u64,
        emoji: String,
        user: User,
        on: bool,
    },
    /// Every message of `user` in `room` was deleted by the site's
    /// operator: tombstones in their place. `rev`: the room's change
    /// number after it, when the room held any of them (each tombstone is
    /// a change, as a delete is, so a resume hears of it).
    Purged {
        room: String,
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rev: Option<u64>,
    },
    /// A word from the site's operator, to every room.
    Notice {
        room: String,
        text: String,
    },
    /// `user` renamed `room` to `title`.
    Title {
        room: String,
        title: String,
        user: User,
    },
    Closed {
        room: String,
        reason: String,
    },
    Error {
        error: ErrorBody,
    },
}

/// A reply to an op that carried an `id`.
///
/// Serialized as `{ "re": id, "ok": true, …result }` or
/// `{ "re": id, "ok": false, "error": { … } }`.
#[derive(Debug, Serialize)]
pub struct Reply<T: Serialize> {
    pub re: i64,
    pub ok: bool,
    #[serde(flatten)]
    pub result: T,
}
