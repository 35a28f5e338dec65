//! Frames out of the hub, written as lines for a person.
//!
//! Every line about one room starts with `[room]`; a line that starts with
//! `[room]` and then a number is a message: `id | sender | date | subject`.
//! The exact formats are documented in `docs/terminal.md`.

use confab_proto::{
    ErrorBody, ErrorCode, Event, JoinResult, LeaveReason, Message, Role, Roles, RoomInfo, User,
};
use serde::Deserialize;
use serde_json::Value;

use super::command::{COMMANDS, MAIN};

/// What an op sent on behalf of a command was for, so its reply can be
/// written the way that command shows it. `room` is the room the command
/// named (as the hub spells it, once joined), for replies that omit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    Hello,
    Join,
    Leave {
        room: String,
    },
    Post {
        room: String,
    },
    Users {
        room: String,
    },
    List {
        room: String,
    },
    Message {
        room: String,
    },
    Report {
        room: String,
        id: u64,
    },
    Role {
        room: String,
    },
    Kick {
        room: String,
    },
    Ban {
        room: String,
    },
    Unban {
        room: String,
        user: String,
    },
    /// A mute, unmute, slow mode, title or delete: the change comes as an
    /// event.
    Moderate {
        room: String,
    },
    Bans {
        room: String,
    },
    Lock {
        room: String,
    },
    Groups,
}

impl Pending {
    /// The room a command named, if any.
    fn room(&self) -> Option<&str> {
        match self {
            Pending::Leave { room }
            | Pending::Post { room }
            | Pending::Users { room }
            | Pending::List { room }
            | Pending::Message { room }
            | Pending::Report { room, .. }
            | Pending::Role { room }
            | Pending::Kick { room }
            | Pending::Ban { room }
            | Pending::Moderate { room }
            | Pending::Unban { room, .. }
            | Pending::Bans { room }
            | Pending::Lock { room } => Some(room),
            Pending::Hello | Pending::Join | Pending::Groups => None,
        }
    }
}

/// A frame out of the hub, decoded.
pub(crate) enum Frame {
    Reply { re: i64, outcome: Result<Value, ErrorBody> },
    Event(Box<Event>),
}

/// Decodes a frame the hub queued.
///
/// # Errors
///
/// The frame is neither a reply nor an event (a hub bug, worth a log line).
pub(crate) fn decode(frame: &[u8]) -> Result<Frame, serde_json::Error> {
    let value: Value = serde_json::from_slice(frame)?;
    match value.get("re").and_then(Value::as_i64) {
        Some(re) if value["ok"] == Value::Bool(true) => Ok(Frame::Reply { re, outcome: Ok(value) }),
        Some(re) => {
            let error = ErrorBody::deserialize(&value["error"])?;
            Ok(Frame::Reply { re, outcome: Err(error) })
        }
        None => Ok(Frame::Event(Box::new(Event::deserialize(value)?))),
    }
}

#[derive(Deserialize)]
struct Welcome {
    user: User,
    session: String,
}

#[derive(Deserialize)]
struct Bans {
    bans: Vec<confab_proto::BanInfo>,
    #[serde(default)]
    mutes: Vec<confab_proto::MuteInfo>,
}

#[derive(Deserialize)]
struct Members {
    members: Vec<User>,
    #[serde(default)]
    roles: Roles,
}

#[derive(Deserialize)]
struct Messages {
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct OneMessage {
    message: Message,
}

#[derive(Deserialize)]
struct Rooms {
    rooms: Vec<RoomInfo>,
}

/// Writes the successful reply to `pending` into `out`.
///
/// # Errors
///
/// The reply lacks what that op returns (a hub bug).
pub(crate) fn reply(out: &mut String, pending: &Pending, reply: Value) -> serde_json::Result<()> {
    match pending {
        Pending::Hello => {
            let Welcome { user, session } = Welcome::deserialize(reply)?;
            say!(
                out,
                "hello, {}; %join joins the board {MAIN}, %help lists the commands",
                clean(&user.name)
            );
            say!(
                out,
                "session {session}: type \"%session {session}\" before your username to come back as this user"
            );
        }
        Pending::Join => {
            let joined = JoinResult::deserialize(reply)?;
            let room = &joined.room.code;
            say!(
                out,
                "[{room}] you joined \"{}\"; {}",
                clean(&joined.room.title),
                members(&joined.members, &joined.roles)
            );
            for message in &joined.messages {
                say!(out, "[{room}] {}", summary(message));
            }
        }
        Pending::Leave { room } => say!(out, "[{room}] you left"),
        Pending::Post { .. } => {
            let OneMessage { message } = OneMessage::deserialize(reply)?;
            say!(out, "[{}] you posted {}", message.room, message.seq);
        }
        Pending::Users { room } => {
            let Members { members: users, roles } = Members::deserialize(reply)?;
            say!(out, "[{room}] {}", members(&users, &roles));
        }
        Pending::List { room } => {
            let Messages { messages } = Messages::deserialize(reply)?;
            if messages.is_empty() {
                say!(out, "[{room}] no messages");
            } else {
                say!(out, "[{room}] messages ({}):", messages.len());
            }
            for message in &messages {
                say!(out, "{}", summary(message));
            }
        }
        Pending::Message { .. } => {
            let OneMessage { message } = OneMessage::deserialize(reply)?;
            say!(out, "[{}] {}", message.room, summary(&message));
            if let Some(quote) = &message.reply {
                say!(out, "  ↪ in reply to {}", quoted(quote));
            }
            for text in message.body.split('\n') {
                say!(out, "  {}", clean(text));
            }
            if let Some(edited) = &message.edited {
                say!(out, "  (edited {})", date(edited));
            }
            for reaction in &message.reactions {
                let names: Vec<String> = reaction.users.iter().map(|u| clean(&u.name)).collect();
                say!(out, "  {} {}: {}", clean(&reaction.emoji), reaction.count, names.join(", "));
            }
        }
        // The change itself comes as an event to every member.
        Pending::Role { .. }
        | Pending::Kick { .. }
        | Pending::Ban { .. }
        | Pending::Moderate { .. }
        | Pending::Lock { .. } => {}
        Pending::Unban { room, user } => {
            say!(out, "[{room}] the ban of {} is lifted", clean(user));
        }
        Pending::Bans { room } => {
            let Bans { bans, mutes } = Bans::deserialize(reply)?;
            if bans.is_empty() && mutes.is_empty() {
                say!(out, "[{room}] nobody is banned, removed or muted");
            } else {
                say!(out, "[{room}] bans ({}):", bans.len());
            }
            for ban in &bans {
                let what = match ban.reason {
                    LeaveReason::Banned if ban.address => "banned, with their addresses,",
                    LeaveReason::Banned => "banned",
                    _ => "removed",
                };
                let until = match &ban.until {
                    Some(until) => format!("until {}", date(until)),
                    None => "until lifted".to_owned(),
                };
                say!(
                    out,
                    "{} ({}) {what} by {} {until}",
                    clean(&ban.user.name),
                    ban.user.id,
                    clean(&ban.by.name)
                );
            }
            if !mutes.is_empty() {
                say!(out, "[{room}] muted ({}):", mutes.len());
            }
            for mute in &mutes {
                let until = match &mute.until {
                    Some(until) => format!("until {}", date(until)),
                    None => "until lifted".to_owned(),
                };
                let what = if mute.shadow { "shadow-muted" } else { "muted" };
                say!(
                    out,
                    "{} ({}) {what} by {} {until}",
                    clean(&mute.user.name),
                    mute.user.id,
                    clean(&mute.by.name)
                );
            }
        }
        Pending::Report { room, id } => {
            say!(out, "[{room}] message {id} reported to the operator");
        }
        Pending::Groups => {
            let Rooms { rooms } = Rooms::deserialize(reply)?;
            say!(out, "rooms ({}):", rooms.len());
            for room in &rooms {
                let seats = match room.capacity {
                    Some(capacity) => format!("{} of {capacity} members", room.members),
                    None => plural(room.members, "member"),
                };
                say!(
                    out,
                    "{} | {} | {seats} | {}",
                    room.code,
                    clean(&room.title),
                    room.retention.as_str()
                );
            }
        }
    }
    Ok(())
}

/// Writes a failed reply to `pending` into `out`, with a hint when the
/// error has an obvious next step.
pub(crate) fn failure(out: &mut String, pending: &Pending, error: &ErrorBody) {
    if error.challenge.is_some() {
        // The terminal protocol cannot carry the puzzle's answer.
        return say!(
            out,
            "error: forbidden: this server is in its defensive mode and admits new visitors \
             through the web chat only; come back here with %session <token> before your username"
        );
    }
    let hint = match (error.code, pending.room()) {
        (ErrorCode::NameTaken, _) => {
            "; reconnect with another username, or with %session if it is you".to_owned()
        }
        (ErrorCode::NotMember, Some(MAIN)) => "; %join first".to_owned(),
        (ErrorCode::NotMember, Some(room)) => format!("; %groupjoin {room} first"),
        (ErrorCode::NotFound, _)
            if !matches!(
                pending,
                Pending::Message { .. }
                    | Pending::Report { .. }
                    | Pending::Unban { .. }
                    | Pending::Moderate { .. }
            ) =>
        {
            "; %groups lists the public rooms".to_owned()
        }
        _ => String::new(),
    };
    say!(out, "error: {}{hint}", clean(&error.to_string()));
}

/// Writes a pushed event into `out`. Typing indicators are not shown.
pub(crate) fn event(out: &mut String, event: &Event) {
    match event {
        Event::Message { message } => {
            say!(out, "[{}] {}", message.room, summary(message));
            if let Some(quote) = &message.reply {
                say!(out, "  ↪ in reply to {}", quoted(quote));
            }
        }
        Event::Join { room, user } => say!(out, "[{room}] {} joined", clean(&user.name)),
        Event::Leave { room, user, reason } => {
            let verb = match reason {
                LeaveReason::Left => "left",
                LeaveReason::Disconnected => "disconnected",
                LeaveReason::Kicked => "was removed from the room",
                LeaveReason::Banned => "was banned from the room",
            };
            say!(out, "[{room}] {} {verb}", clean(&user.name));
        }
        Event::Closed { room, reason } if reason == "kicked" => {
            say!(out, "[{room}] you were removed from the room by its owner or a moderator");
        }
        Event::Closed { room, reason } if reason == "closed" => {
            say!(out, "[{room}] the operator closed the room");
        }
        Event::Closed { room, reason } if reason == "banned" => {
            say!(out, "[{room}] you were banned from the room by its owner or a moderator");
        }
        Event::Closed { room, reason } => {
            say!(out, "[{room}] room closed ({})", clean(reason));
        }
        Event::Error { error } => say!(out, "error: {}", clean(&error.to_string())),
        Event::Muted { room, user, muted, by } => {
            let what = if *muted { "muted" } else { "let speak again" };
            say!(out, "[{room}] {} was {what} by {}", clean(&user.name), clean(&by.name));
        }
        Event::Slow { room, seconds: 0, user } => {
            say!(out, "[{room}] {} turned slow mode off", clean(&user.name));
        }
        Event::Slow { room, seconds, user } => {
            say!(
                out,
                "[{room}] {} turned slow mode on: one message every {}",
                clean(&user.name),
                plural(*seconds as usize, "second")
            );
        }
        Event::Notice { room, text } => {
            say!(out, "[{room}] notice from the operator: {}", clean(text));
        }
        Event::Purged { room, .. } => {
            say!(out, "[{room}] the operator deleted every message of one user");
        }
        Event::Deleted { room, seq, by, .. } => {
            say!(out, "[{room}] message {seq} was deleted by {}", clean(&by.name));
        }
        Event::Edited { room, seq, message, .. } => {
            say!(out, "[{room}] {} edited message {seq}:", clean(&message.from.name));
            say!(out, "[{room}] {}", summary(message));
        }
        Event::Reacted { room, seq, emoji, user, on, .. } => {
            let emoji = clean(emoji);
            match on {
                true => {
                    say!(out, "[{room}] {} reacted {emoji} to message {seq}", clean(&user.name))
                }
                false => {
                    say!(out, "[{room}] {} took {emoji} off message {seq}", clean(&user.name))
                }
            }
        }
        Event::Title { room, title, user } => {
            say!(out, "[{room}] {} renamed the room \"{}\"", clean(&user.name), clean(title));
        }
        Event::Role { room, user, role } => match role {
            Role::Member => {
                say!(out, "[{room}] {} is a member like the others now", clean(&user.name))
            }
            role => say!(out, "[{room}] {} is now the room's {}", clean(&user.name), role.as_str()),
        },
        Event::Locked { room, locked, user } => {
            let what =
                if *locked { "locked the room: nobody new may join" } else { "unlocked the room" };
            say!(out, "[{room}] {} {what}", clean(&user.name));
        }
        Event::Typing { .. } => {}
    }
}

/// A quoted message as a reply shows it: `12 (Ann): the start of it…`.
fn quoted(quote: &confab_proto::Quote) -> String {
    let from = clean(&quote.from.name);
    match quote.deleted {
        true => format!("{} ({from}): (deleted)", quote.seq),
        false => {
            let first = quote.body.lines().next().unwrap_or("");
            let more =
                if first.len() < quote.body.len() && !first.ends_with('…') { "…" } else { "" };
            format!("{} ({from}): {}{more}", quote.seq, clean(first))
        }
    }
}

/// The `%help` text.
pub(crate) fn help(out: &mut String) {
    say!(out, "commands:");
    for spec in COMMANDS {
        say!(out, "  {:<41} {}", spec.usage, spec.about);
    }
}

/// The most characters of a body a message line shows.
pub(crate) const PREVIEW_CHARS: usize = 200;

/// A message's one line: `id | sender | date | subject | body`, the body's
/// first line, cut at `PREVIEW_CHARS` with `…` when there is more (the
/// whole of it is `%message id`'s); a deleted message ends at
/// `(deleted)`.
pub(crate) fn summary(message: &Message) -> String {
    let subject = match message.subject.as_deref() {
        _ if message.deleted => "(deleted)".into(),
        Some(subject) => clean(subject),
        None => "(no subject)".into(),
    };
    let sender = match message.bot {
        true => format!("{} (bot)", clean(&message.from.name)),
        false => clean(&message.from.name),
    };
    let head = format!("{} | {sender} | {} | {subject}", message.seq, date(&message.ts));
    if message.deleted {
        return head;
    }
    let body = message.body.trim_end();
    let first = body.lines().next().unwrap_or("");
    let mut preview: String = first.chars().take(PREVIEW_CHARS).collect();
    if preview.len() < body.len() {
        preview.push('…');
    }
    format!("{head} | {}", clean(&preview))
}

/// `members (2): Ann, Bob`, sorted by name.
/// `members (3): Ann (owner), Bob (moderator), Cleo`, by name.
fn members(users: &[User], roles: &Roles) -> String {
    let mut users: Vec<&User> = users.iter().collect();
    users.sort_by_key(|user| user.name.to_lowercase());
    let names: Vec<String> = users
        .iter()
        .map(|user| match roles.get(&user.id) {
            Some(role) => format!("{} ({})", clean(&user.name), role.as_str()),
            None => clean(&user.name),
        })
        .collect();
    if names.is_empty() {
        return "members (0)".into();
    }
    format!("members ({}): {}", names.len(), names.join(", "))
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// `2026-11-22T05:01:02.345Z` as `2026-11-22 05:01:02 UTC`.
pub(crate) fn date(ts: &str) -> String {
    match (ts.get(..10), ts.get(10..11), ts.get(11..19)) {
        (Some(day), Some("T"), Some(time)) => format!("{day} {time} UTC"),
        _ => clean(ts),
    }
}

/// Text safe to show on a terminal: control characters (escape sequences
/// included) become U+FFFD, a tab becomes a space.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}
