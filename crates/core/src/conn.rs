//! One client connection, whatever its transport.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use confab_proto::{
    BanInfo, ClientOp, ErrorBody, ErrorCode, JoinResult, LeaveReason, Message, MuteInfo, Quote,
    Request, ResumePoint, Retention, RoomInfo, ServerInfo, User, parse_request,
};
use serde::Serialize;

use crate::backend::{
    Draft, Joiner, NewRoom, Range, Removal, RoomBackend, SLOW_SECONDS_MAX, Seat, Since, Target,
};
use crate::frames::{bad, error_frame, not_in, reply_frame, storage_down};
use crate::hub::{Hub, UserRecord};
use crate::limits::{check_len, check_post, validate_name};
use crate::local::LocalRooms;
use crate::rates::Limit;
use crate::{Outbox, now_rfc3339};

/// The most messages one `history` or `mine` returns.
const PAGE_MAX: u32 = 200;
const PAGE_DEFAULT: u32 = 50;
/// The member an op names: by exactly one of `user` (an id) and `name`.
fn target(op: &str, user: Option<String>, name: Option<String>) -> Result<Target, ErrorBody> {
    match (user, name) {
        // A user id is `u_` and letters and digits; nothing else names a
        // member (the backends keep counters beside the members).
        (Some(id), None) if !crate::ids::is_user_id(&id) => {
            Err(bad(format!("{op}: user must be a user id")))
        }
        (Some(id), None) => Ok(Target::Id(id)),
        (None, Some(name)) => Ok(Target::Name(name.trim().to_owned())),
        _ => Err(bad(format!("{op} names its member by exactly one of user and name"))),
    }
}

/// How long a member removed by `kick` may not join again, by default and
/// at most, in minutes.
pub const KICK_MINUTES: u32 = 10;
pub const KICK_MINUTES_MAX: u32 = 24 * 60;
/// The longest ban with an end, in minutes (a year); a ban without
/// `minutes` lasts until lifted.
pub const BAN_MINUTES_MAX: u32 = 366 * 24 * 60;
/// Characters in the reason given with a `report`.
pub const REASON_CHARS: usize = 200;

/// A connection to the hub. The adapter feeds it client frames; replies
/// and events come out of the connection's [`Outbox`] in order.
///
/// Dropping a `Conn` is a disconnect: each room it joined starts the
/// member's reconnect grace (if it was the user's last connection there).
pub struct Conn<B: RoomBackend = LocalRooms> {
    hub: Hub<B>,
    id: u64,
    outbox: Outbox,
    user: Option<Arc<UserRecord>>,
    /// The rooms this connection joined. A `Vec`, not a map: a connection
    /// is in a room or two, and a map's smallest table costs every idle
    /// connection more than a short scan ever does.
    seats: Vec<B::Seat>,
    /// The client's address, when the transport knows it.
    peer: Option<IpAddr>,
    /// Its keyed hash, as bans keep it (none for loopback).
    address: Option<String>,
    /// The hub's site bans this connection was last checked against.
    ban_epoch: u64,
    /// An integration's connection: its posts are a bot's.
    bot: bool,
}

#[derive(Serialize)]
struct HelloResult<'a> {
    session: &'a str,
    user: User,
    server: ServerInfo,
    rooms: Vec<JoinResult>,
}

#[derive(Serialize)]
struct IntegrationsResult {
    integrations: Vec<confab_proto::IntegrationInfo>,
}

#[derive(Serialize)]
struct ReactResult {
    on: bool,
}

#[derive(Serialize)]
struct RoomResult {
    room: RoomInfo,
}

#[derive(Serialize)]
struct RoomsResult {
    rooms: Vec<RoomInfo>,
}

#[derive(Serialize)]
struct MembersResult {
    members: Vec<User>,
    roles: confab_proto::Roles,
}

#[derive(Serialize)]
struct BansResult {
    bans: Vec<BanInfo>,
    mutes: Vec<MuteInfo>,
}

#[derive(Serialize)]
struct MessagesResult {
    messages: Vec<Message>,
}

#[derive(Serialize)]
struct MessageResult {
    message: Message,
}

#[derive(Serialize)]
struct Empty {}

impl<B: RoomBackend> Conn<B> {
    /// Opens a connection to `hub` that it answers through `outbox`, from
    /// the client address `peer` when the transport knows it (failed joins
    /// and new rooms are counted against it, see `rates.rs`).
    pub fn open(hub: &Hub<B>, outbox: Outbox, peer: Option<IpAddr>) -> Conn<B> {
        let id = hub.connected();
        let address = hub.address_key(peer);
        if let Some(address) = &address {
            hub.opened_from(address, id, &outbox);
        }
        let ban_epoch = hub.site_ban_epoch();
        Conn {
            hub: hub.clone(),
            id,
            outbox,
            user: None,
            seats: Vec::new(),
            peer,
            address,
            ban_epoch,
            bot: false,
        }
    }

    /// Makes this an integration's connection: its posts are marked as a
    /// bot's.
    pub fn as_bot(&mut self) {
        self.bot = true;
    }

    /// The user, once `hello` has been answered.
    pub fn user(&self) -> Option<User> {
        self.user.as_ref().map(|u| u.public())
    }

    /// Codes of the rooms this connection has joined.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.seats.iter().map(Seat::code)
    }

    /// This connection's turn in a drain: `closed` for each of its rooms,
    /// as a shutdown sends them, then its outbox closes after those frames.
    /// Its seats go as a dropped connection's do (grace applies), so that
    /// the client resumes them elsewhere.
    pub fn close_for_shutdown(&self) {
        for room in self.rooms() {
            let event =
                confab_proto::Event::Closed { room: room.to_owned(), reason: "shutdown".into() };
            self.outbox.push(crate::frames::event_frame(&event));
        }
        self.outbox.close(crate::CloseReason::Shutdown);
    }

    /// Decodes and applies one client frame. The reply, if any, is queued
    /// in the outbox; a frame that cannot be decoded gets its error there.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: an op dropped halfway may have taken effect without
    /// its reply. Run it to completion.
    pub async fn handle_frame(&mut self, frame: &[u8]) {
        match parse_request(frame) {
            Ok(request) => self.handle(request).await,
            Err(e) => self.fail(e.id, e.error),
        }
    }

    /// Answers input the transport could not even decode into a frame
    /// (a binary WebSocket frame, invalid UTF-8) with an `error` event.
    pub fn reject(&self, error: ErrorBody) {
        self.fail(None, error);
    }

    /// Refuses a frame that was over the size limit, keeping the
    /// connection. (Transports that must close instead do so themselves.)
    pub fn refuse_oversized(&self, len: usize) {
        let limit = self.hub.config().limits.frame_bytes;
        self.fail(
            None,
            ErrorBody::new(
                ErrorCode::TooLarge,
                format!("frame is {len} bytes; at most {limit} are allowed"),
            ),
        );
    }

    /// Applies one decoded op.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe; see [`Conn::handle_frame`].
    pub async fn handle(&mut self, request: Request) {
        self.handle_charged(request, true).await;
    }

    /// Applies a read that the command it is part of has paid for: a
    /// gateway's follow-up (an IRC `CHATHISTORY`'s search steps and pages,
    /// bounded in number by the gateway), which draws nothing more from
    /// the read budget.
    ///
    /// # Cancel safety
    ///
    /// As [`Conn::handle`].
    pub async fn handle_follow_up(&mut self, request: Request) {
        self.handle_charged(request, false).await;
    }

    async fn handle_charged(&mut self, request: Request, charge_reads: bool) {
        let Request { id, op } = request;
        let outcome = match op {
            ClientOp::Hello { name, session, resume, pow } => {
                return self.hello(id, name, session, resume.unwrap_or_default(), pow).await;
            }
            op => self.apply(id, op, charge_reads).await,
        };
        if let Err(e) = outcome {
            self.fail(id, e);
        }
    }

    fn authenticated(&self) -> Result<Arc<UserRecord>, ErrorBody> {
        self.user.clone().ok_or_else(|| {
            ErrorBody::new(ErrorCode::Unauthenticated, "send hello before anything else")
        })
    }

    async fn apply(
        &mut self,
        id: Option<i64>,
        op: ClientOp,
        charge_reads: bool,
    ) -> Result<(), ErrorBody> {
        self.check_site_ban()?;
        let user = self.authenticated()?;
        let config = self.hub.config();
        let rooms = self.hub.backend();
        if charge_reads && op.reads() {
            self.hub.limiters().check(Limit::Read, &user.id)?;
        }
        match op {
            // A first `hello` is answered by `handle`, unauthenticated.
            ClientOp::Hello { .. } => Err(bad("hello was already sent on this connection")),
            ClientOp::Join { room, since, rev } => {
                let since = since.map(|seq| Since { seq, rev });
                self.join_op(id, &room, since).await;
                Ok(())
            }
            ClientOp::Ping => self.ok(id, &Empty {}),
            ClientOp::Create { title, capacity, retention, backlog, public } => {
                let title = match title {
                    Some(title) => checked_title(&title, config.limits.title_chars)?,
                    None => None,
                };
                if let Some(capacity) = capacity {
                    if capacity < 2 {
                        return Err(bad("capacity must be at least 2"));
                    }
                    if capacity > config.max_capacity {
                        return Err(bad(format!(
                            "capacity must be at most {}",
                            config.max_capacity
                        )));
                    }
                }
                let backlog = backlog.unwrap_or(config.room_backlog);
                if backlog as usize > config.room_window {
                    return Err(bad(format!("backlog must be at most {}", config.room_window)));
                }
                self.hub.limiters().check(Limit::Create, &user.id)?;
                self.hub.limiters().check_address_create(self.peer)?;
                let new = NewRoom {
                    owner: Some(user.id.clone()),
                    title,
                    capacity,
                    retention: retention.unwrap_or(Retention::Ephemeral),
                    backlog,
                    public: public.unwrap_or(false),
                };
                let room = rooms.create(new).await?;
                // As `RoomSpec::shown_code`.
                let shown = match room.public || room.retention == Retention::Persistent {
                    true => room.code.as_str(),
                    false => "(private)",
                };
                tracing::info!(
                    room = shown,
                    retention = ?room.retention,
                    public = room.public,
                    capacity = room.capacity,
                    "room created"
                );
                self.ok(id, &RoomResult { room })
            }
            ClientOp::Leave { room: code } => {
                let at = self.seat_index(&code);
                let left = rooms.leave(&code, at.map(|i| &self.seats[i]), self.id, &user.id).await;
                match (left, at) {
                    (Ok(()), _) => {}
                    // A seat the room no longer knows (its user was
                    // removed): left already.
                    (Err(e), Some(_)) if e.code == ErrorCode::NotMember => {}
                    (Err(e), _) => return Err(e),
                }
                if let Some(i) = at {
                    self.seats.swap_remove(i);
                }
                self.ok(id, &Empty {})
            }
            ClientOp::Post { room, body, subject, cid, reply } => {
                check_post(&config.limits, &body, subject.as_deref(), cid.as_deref())?;
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Post, &user.id)?;
                let subject = subject.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
                // The quote is made from the message as the poster sees it.
                let reply = match reply {
                    Some(seq) => Some(Quote::of(&self.visible(seat, &user.id, seq).await?)),
                    None => None,
                };
                let draft = Draft { bot: self.bot, body, subject, cid, ts: now_rfc3339(), reply };
                let user = user.public();
                let who = Joiner {
                    conn: self.id,
                    outbox: &self.outbox,
                    user: &user,
                    address: self.address.as_deref(),
                };
                rooms.post(seat, who, draft, id).await
            }
            ClientOp::Typing { room, active } => {
                let seat = self.seat(&room)?;
                // Over the budget, an indicator is dropped, not fanned out.
                if self.hub.limiters().check(Limit::Typing, &user.id).is_ok() {
                    rooms.typing(seat, self.id, &user.public(), active).await?;
                }
                self.ok(id, &Empty {})
            }
            ClientOp::Rooms => self.ok(id, &RoomsResult { rooms: self.hub.public_rooms().await? }),
            ClientOp::Members { room: code } => {
                let seat = self.seat_index(&code).map(|i| &self.seats[i]);
                let (members, roles) = rooms.members(&code, seat, self.id, &user.id).await?;
                self.ok(id, &MembersResult { members, roles })
            }
            ClientOp::History { room, before, limit } => {
                let limit = page_limit(limit)?;
                let seat = self.seat(&room)?;
                let range = Range { after: 0, before: before.unwrap_or(u64::MAX), limit };
                let messages = rooms.read(seat, self.id, &user.id, range).await?;
                self.ok(id, &MessagesResult { messages })
            }
            ClientOp::Get { room, seq } => {
                let seat = self.seat(&room)?;
                let message = self.visible(seat, &user.id, seq).await?;
                self.ok(id, &MessageResult { message })
            }
            ClientOp::Delete { room, seq } => {
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                let message = self.visible(seat, &user.id, seq).await?;
                // Deleted already: answered alike (the store is told again).
                rooms.delete(seat, self.id, &user.id, &message).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Edit { room, seq, body } => {
                check_post(&config.limits, &body, None, None)?;
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Post, &user.id)?;
                let message = self.visible(seat, &user.id, seq).await?;
                let forbidden = |text: String| Err(ErrorBody::new(ErrorCode::Forbidden, text));
                if message.from.id != user.id {
                    return forbidden(format!(
                        "only its author edits message {seq} of room {room}"
                    ));
                }
                let window = config.edit_window;
                if window.is_zero() {
                    return forbidden("messages are not edited on this server".into());
                }
                let posted = crate::ms_of_rfc3339(&message.ts).unwrap_or(0);
                let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
                if crate::unix_ms().saturating_sub(posted) > window_ms {
                    return forbidden(format!(
                        "message {seq} of room {room} may no longer be edited"
                    ));
                }
                rooms.edit(seat, self.id, &user.id, &message, &body, &now_rfc3339()).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::React { room, seq, emoji } => {
                check_emoji(&emoji)?;
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::React, &user.id)?;
                // A message the member may not see is no message to them.
                self.visible(seat, &user.id, seq).await?;
                let on = rooms.react(seat, self.id, &user.id, seq, &emoji).await?;
                self.ok(id, &ReactResult { on })
            }
            ClientOp::Integrate { room, name, scopes } => {
                let seat = self.seat(&room)?;
                self.owner_of(seat, &user.id, "makes").await?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                let name = validate_name(&name, config.limits.name_chars)?;
                let scopes = scopes.unwrap_or_else(|| vec!["post".into(), "read".into()]);
                let made = crate::integrations::make(
                    self.hub.services(),
                    seat.code(),
                    &name,
                    &scopes,
                    &user.id,
                )
                .await?;
                self.ok(id, &made)
            }
            ClientOp::Integrations { room } => {
                let seat = self.seat(&room)?;
                self.owner_of(seat, &user.id, "sees").await?;
                let integrations =
                    crate::integrations::list(self.hub.services(), seat.code()).await?;
                self.ok(id, &IntegrationsResult { integrations })
            }
            ClientOp::Revoke { room, integration } => {
                let seat = self.seat(&room)?;
                self.owner_of(seat, &user.id, "revokes").await?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                crate::integrations::revoke(
                    self.hub.services(),
                    seat.code(),
                    &integration,
                    &user.id,
                )
                .await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Webhook { room, url, events } => {
                let seat = self.seat(&room)?;
                self.owner_of(seat, &user.id, "makes").await?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                let events = events.unwrap_or_default();
                let made = crate::integrations::make_webhook(
                    self.hub.services(),
                    seat.code(),
                    url.trim(),
                    &events,
                    &user.id,
                )
                .await?;
                self.ok(id, &made)
            }
            ClientOp::Webhooks { room } => {
                let seat = self.seat(&room)?;
                self.owner_of(seat, &user.id, "sees").await?;
                let webhooks =
                    crate::integrations::list_webhooks(self.hub.services(), seat.code()).await?;
                self.ok(id, &serde_json::json!({ "webhooks": webhooks }))
            }
            ClientOp::Unhook { room, webhook } => {
                let seat = self.seat(&room)?;
                self.owner_of(seat, &user.id, "removes").await?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                crate::integrations::delete_webhook(
                    self.hub.services(),
                    seat.code(),
                    &webhook,
                    &user.id,
                )
                .await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Role { room, user: target_id, name, role } => {
                let target = target("role", target_id, name)?;
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                rooms.set_role(seat, self.id, &user.id, &target, role).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Lock { room, locked } => {
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                rooms.lock(seat, self.id, &user.id, locked).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Kick { room, user: target_id, name, minutes } => {
                let target = target("kick", target_id, name)?;
                let minutes = minutes.unwrap_or(KICK_MINUTES);
                if !(1..=KICK_MINUTES_MAX).contains(&minutes) {
                    return Err(bad(format!("minutes must be from 1 to {KICK_MINUTES_MAX}")));
                }
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                let removal = Removal {
                    reason: LeaveReason::Kicked,
                    ban: Some(std::time::Duration::from_secs(u64::from(minutes) * 60)),
                    address: false,
                };
                rooms.kick(seat, self.id, &user.id, &target, removal).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Ban { room, user: target_id, name, minutes } => {
                let target = target("ban", target_id, name)?;
                if let Some(minutes) = minutes
                    && !(1..=BAN_MINUTES_MAX).contains(&minutes)
                {
                    return Err(bad(format!(
                        "minutes must be from 1 to {BAN_MINUTES_MAX}, or left out for a ban until lifted"
                    )));
                }
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                let removal = Removal {
                    reason: LeaveReason::Banned,
                    ban: minutes.map(|m| std::time::Duration::from_secs(u64::from(m) * 60)),
                    address: true,
                };
                rooms.kick(seat, self.id, &user.id, &target, removal).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Unban { room, user: banned } => {
                if !crate::ids::is_user_id(&banned) {
                    return Err(bad("unban: user must be a user id"));
                }
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                rooms.unban(seat, self.id, &user.id, &banned).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Bans { room } => {
                let seat = self.seat(&room)?;
                let mut bans: Vec<BanInfo> =
                    rooms.bans(seat, self.id, &user.id).await?.iter().map(|b| b.info()).collect();
                bans.sort_by(|a, b| a.user.name.cmp(&b.user.name).then(a.user.id.cmp(&b.user.id)));
                let mut mutes: Vec<MuteInfo> =
                    rooms.mutes(seat, self.id, &user.id).await?.iter().map(|m| m.info()).collect();
                mutes.sort_by(|a, b| a.user.name.cmp(&b.user.name).then(a.user.id.cmp(&b.user.id)));
                self.ok(id, &BansResult { bans, mutes })
            }
            ClientOp::Mute { room, user: target_id, name, minutes, shadow } => {
                let target = target("mute", target_id, name)?;
                if let Some(minutes) = minutes
                    && !(1..=BAN_MINUTES_MAX).contains(&minutes)
                {
                    return Err(bad(format!(
                        "minutes must be from 1 to {BAN_MINUTES_MAX}, or left out for a mute until lifted"
                    )));
                }
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                let mute = minutes.map(|m| std::time::Duration::from_secs(u64::from(m) * 60));
                rooms.mute(seat, self.id, &user.id, &target, Some(mute), shadow).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Unmute { room, user: muted } => {
                let target = target("unmute", Some(muted), None)?;
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                rooms.mute(seat, self.id, &user.id, &target, None, false).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Slow { room, seconds } => {
                if seconds > SLOW_SECONDS_MAX {
                    return Err(bad(format!(
                        "seconds must be at most {SLOW_SECONDS_MAX} (0 turns slow mode off)"
                    )));
                }
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                rooms.slow(seat, self.id, &user.id, seconds).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Title { room, title } => {
                let title = checked_title(&title, config.limits.title_chars)?
                    .ok_or_else(|| bad("title must not be empty"))?;
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Moderate, &user.id)?;
                rooms.retitle(seat, self.id, &user.id, &title).await?;
                self.ok(id, &Empty {})
            }
            ClientOp::Report { room, seq, reason } => {
                let reason = reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
                if let Some(reason) = &reason {
                    check_len("reason", reason, REASON_CHARS)?;
                    if reason.chars().any(char::is_control) {
                        return Err(bad("reason must not contain control characters"));
                    }
                }
                let seat = self.seat(&room)?;
                self.hub.limiters().check(Limit::Report, &user.id)?;
                // What the reporter may see, as `get` reads it: a message
                // they may not see cannot be reported (nor found out about).
                let message = self.visible(seat, &user.id, seq).await?;
                metrics::counter!(crate::metric::REPORTS).increment(1);
                config.audit.record(
                    "report",
                    serde_json::json!({
                        "node": config.node,
                        "room": message.room,
                        "seq": message.seq,
                        "message": {
                            "from": message.from,
                            "ts": message.ts,
                            "subject": message.subject,
                            "body": message.body,
                        },
                        "reporter": user.public(),
                        "reason": reason,
                    }),
                );
                // The room's webhooks that want reports hear that one was
                // made, and of which message: never who made it, nor why
                // (the room's owner may be the one reported).
                let data = serde_json::json!({ "seq": message.seq });
                let key = self.hub.services().room_key(seat.code());
                if let Err(e) = self
                    .hub
                    .services()
                    .store
                    .hook_event(&key, "message.reported", data.to_string())
                    .await
                {
                    tracing::warn!("a report not queued for the room's webhooks: {e}");
                }
                self.ok(id, &Empty {})
            }
            ClientOp::Mine { limit } => {
                let limit = page_limit(limit)?;
                let messages = self.hub.store().mine(&user.id, limit).await.map_err(|e| {
                    tracing::warn!("cannot read messages: {e}");
                    storage_down()
                })?;
                self.ok(id, &MessagesResult { messages })
            }
        }
    }

    async fn hello(
        &mut self,
        id: Option<i64>,
        name: String,
        session: Option<String>,
        resume: BTreeMap<String, ResumePoint>,
        pow: Option<confab_proto::Pow>,
    ) {
        if self.user.is_some() {
            return self.fail(id, bad("hello was already sent on this connection"));
        }
        let most = self.hub.config().max_rooms_per_conn;
        if resume.len() > most {
            return self.fail(
                id,
                bad(format!(
                    "resume names {} rooms; a connection is in at most {most}",
                    resume.len()
                )),
            );
        }
        if self.hub.address_banned(self.address.as_deref()) {
            return self.fail(id, site_banned());
        }
        let name = match validate_name(&name, self.hub.config().limits.name_chars) {
            Ok(name) => name,
            Err(e) => return self.fail(id, e),
        };
        let user = match self
            .hub
            .session(session.as_deref(), name, self.peer, pow.as_ref(), self.bot)
            .await
        {
            Ok(user) => user,
            Err(e) => return self.fail(id, e),
        };
        self.user = Some(user.clone());
        let mut rooms = Vec::new();
        let mut resumed = Vec::new();
        // Only seats the session holds come back. Any other code is left
        // out as a room that does not exist is, and spends the client's
        // failed-join budget, so that `resume` is no way to guess codes.
        let client = self.hub.limiters().client_key(self.peer, &user.id);
        let mut seen = std::collections::HashSet::new();
        for (code, since) in resume {
            // One code written two ways is one room.
            if !seen.insert(code.trim().to_lowercase()) {
                continue;
            }
            // A client out of failed joins resumes nothing (and costs
            // nothing more to look up).
            if self.hub.limiters().check_join_allowed(&client).is_err() {
                break;
            }
            let since = Since { seq: since.seq(), rev: since.rev() };
            match self.join_seat(&code, Some(since), true).await {
                Ok((at, result)) => {
                    resumed.push(at);
                    rooms.push(result);
                }
                Err(e) if e.code == ErrorCode::NotFound => self.hub.limiters().failed_join(&client),
                Err(_) => {}
            }
        }
        if let Some(id) = id {
            let server = ServerInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                node: self.hub.config().node.clone(),
                edit_seconds: self.hub.config().edit_window.as_secs(),
            };
            let result = HelloResult { session: &user.session, user: user.public(), server, rooms };
            self.outbox.push(reply_frame(id, &result));
        }
        for at in resumed {
            self.hub.backend().activate(&self.seats[at], self.id);
        }
    }

    async fn join_op(&mut self, id: Option<i64>, code: &str, since: Option<Since>) {
        match self.join_limited(code, since).await {
            Ok((at, result)) => {
                if let Some(id) = id {
                    self.outbox.push(reply_frame(id, &result));
                }
                self.hub.backend().activate(&self.seats[at], self.id);
            }
            Err(e) => self.fail(id, e),
        }
    }

    /// A join op: rate limited, and a join of a room that does not exist
    /// counts against the client's failed-join budget.
    async fn join_limited(
        &mut self,
        code: &str,
        since: Option<Since>,
    ) -> Result<(usize, JoinResult), ErrorBody> {
        let user = self.authenticated()?;
        let limiters = self.hub.limiters();
        let client = limiters.client_key(self.peer, &user.id);
        limiters.check_join_allowed(&client)?;
        limiters.check(Limit::Join, &user.id)?;
        let most = self.hub.config().max_rooms_per_conn;
        if !self.in_room(code) && self.room_count() >= most {
            return Err(bad(format!(
                "this connection is in {most} rooms, the most it may be in; leave one first"
            )));
        }
        let joined = self.join_seat(code, since, false).await;
        if let Err(e) = &joined
            && e.code == ErrorCode::NotFound
        {
            self.hub.limiters().failed_join(&client);
        }
        joined
    }

    /// Joins a room, leaving the connection pending there until the caller
    /// has queued the reply and activates the seat (at the index returned).
    /// `rejoin`: only if the user holds a seat there already (a resume);
    /// else `not_found`.
    async fn join_seat(
        &mut self,
        code: &str,
        since: Option<Since>,
        rejoin: bool,
    ) -> Result<(usize, JoinResult), ErrorBody> {
        let user = self.authenticated()?.public();
        let who = Joiner {
            conn: self.id,
            outbox: &self.outbox,
            user: &user,
            address: self.address.as_deref(),
        };
        let at = self.seat_index(code);
        let seated = at.map(|i| &self.seats[i]);
        let (seat, mut result) = self.hub.backend().join(who, code, since, rejoin, seated).await?;
        if let Some(since) = since {
            result.gap = (result.messages.len() as u64) < result.seq.saturating_sub(since.seq);
        }
        // A connection joining a room it is in already keeps one seat.
        let at = match self.seats.iter().position(|s| s.code() == seat.code()) {
            Some(i) => {
                self.seats[i] = seat;
                i
            }
            None => {
                self.seats.push(seat);
                self.seats.len() - 1
            }
        };
        Ok((at, result))
    }

    /// Checks that `user_id` owns the room of `seat` (integrations are the
    /// owner's).
    async fn owner_of(&self, seat: &B::Seat, user_id: &str, does: &str) -> Result<(), ErrorBody> {
        let (_, roles) =
            self.hub.backend().members(seat.code(), Some(seat), self.id, user_id).await?;
        if roles.get(user_id) == Some(&confab_proto::Role::Owner) {
            return Ok(());
        }
        Err(ErrorBody::new(
            ErrorCode::Forbidden,
            format!("only the owner of room {} {does} its integrations", seat.code()),
        ))
    }

    /// Message `seq` of the room of `seat`, if `user_id` may see it.
    async fn visible(&self, seat: &B::Seat, user_id: &str, seq: u64) -> Result<Message, ErrorBody> {
        let range = Range { after: seq.saturating_sub(1), before: seq.saturating_add(1), limit: 1 };
        let read = self.hub.backend().read(seat, self.id, user_id, range).await?;
        read.into_iter().next().ok_or_else(|| crate::frames::no_message(seat.code(), seq))
    }

    /// Lets go of a connection whose address the operator banned since it
    /// was last checked: it leaves its rooms and is a stranger again (its
    /// `hello` refused).
    fn check_site_ban(&mut self) -> Result<(), ErrorBody> {
        let epoch = self.hub.site_ban_epoch();
        if epoch == self.ban_epoch {
            return Ok(());
        }
        self.ban_epoch = epoch;
        if !self.hub.address_banned(self.address.as_deref()) {
            return Ok(());
        }
        if let Some(user) = self.user.take() {
            for seat in self.seats.drain(..) {
                self.hub.backend().disconnect(seat, self.id, &user.id, false);
            }
        }
        Err(site_banned())
    }

    /// Where among this connection's own rooms `code` is.
    fn seat_index(&self, code: &str) -> Option<usize> {
        let key = code.trim();
        self.seats.iter().position(|seat| seat.code().eq_ignore_ascii_case(key))
    }

    /// A room this connection joined, found among its own rooms only: a
    /// room that does not exist and one that is not this connection's
    /// answer the same error, by the same path.
    fn seat(&self, code: &str) -> Result<&B::Seat, ErrorBody> {
        self.seat_index(code).map(|i| &self.seats[i]).ok_or_else(|| not_in(code))
    }

    /// Whether this connection is in the room `code`.
    fn in_room(&self, code: &str) -> bool {
        let key = code.trim();
        self.rooms().any(|room| room.eq_ignore_ascii_case(key))
    }

    /// Rooms this connection is in.
    fn room_count(&self) -> usize {
        self.seats.len()
    }

    fn ok<T: Serialize>(&self, id: Option<i64>, result: &T) -> Result<(), ErrorBody> {
        if let Some(id) = id {
            self.outbox.push(reply_frame(id, result));
        }
        Ok(())
    }

    /// Sends an error: as the reply when the op had an `id`, else as an
    /// `error` event.
    fn fail(&self, id: Option<i64>, error: ErrorBody) {
        self.outbox.push(error_frame(id, error));
    }
}

impl<B: RoomBackend> Drop for Conn<B> {
    fn drop(&mut self) {
        if let Some(address) = &self.address {
            self.hub.closed_from(address, self.id);
        }
        // A connection a site ban closed leaves its rooms at once.
        let grace = self.hub.grace_applies()
            && !self.hub.config().grace.is_zero()
            && !self.hub.address_banned(self.address.as_deref());
        if let Some(user) = &self.user {
            for seat in self.seats.drain(..) {
                self.hub.backend().disconnect(seat, self.id, &user.id, grace);
            }
        }
        if let Some(user) = self.user.take()
            && grace
        {
            self.hub.keep_through_grace(user);
        }
        self.hub.disconnected();
    }
}

/// Checks that `emoji` is one emoji: a pictograph (with its variation
/// selector and skin tone) or several joined by zero-width joiners, a flag
/// (two regional indicators, or the black flag with its tag characters),
/// or a keycap; at most 32 bytes. Enclosed letters, a row of emoji,
/// dangling joiners and stray tags are not one.
fn check_emoji(emoji: &str) -> Result<(), ErrorBody> {
    const MOST_BYTES: usize = 32;
    if emoji.is_empty() || emoji.len() > MOST_BYTES || !is_one_emoji(emoji) {
        return Err(bad(format!("emoji must be one emoji (at most {MOST_BYTES} bytes)")));
    }
    Ok(())
}

fn is_one_emoji(emoji: &str) -> bool {
    let pictograph = |c: char| {
        matches!(c as u32,
            0x1F000..=0x1F0FF | 0x1F200..=0x1FAFF | 0x2600..=0x27BF | 0x2300..=0x23FF
            | 0x2B00..=0x2BFF | 0x2190..=0x21FF | 0x2900..=0x297F | 0x25A0..=0x25FF | 0x3030
            | 0x303D | 0x3297 | 0x3299 | 0xA9 | 0xAE | 0x203C | 0x2049 | 0x2122 | 0x2139
            | 0x24C2)
    };
    let regional = |c: char| matches!(c as u32, 0x1F1E6..=0x1F1FF);
    let skin = |c: char| matches!(c as u32, 0x1F3FB..=0x1F3FF);
    let selector = |c: char| matches!(c as u32, 0xFE0E | 0xFE0F);
    let chars: Vec<char> = emoji.chars().collect();
    // A flag of two regional indicators.
    if chars.iter().all(|&c| regional(c)) {
        return chars.len() == 2;
    }
    // A keycap: 0-9, # or *, a variation selector maybe, and U+20E3.
    if let [base, rest @ ..] = chars.as_slice()
        && (base.is_ascii_digit() || *base == '#' || *base == '*')
    {
        return matches!(rest, ['\u{20E3}'] | ['\u{FE0F}', '\u{20E3}']);
    }
    // A subdivision flag: the black flag, tag letters, the cancel tag.
    if let ['\u{1F3F4}', tags @ .., '\u{E007F}'] = chars.as_slice()
        && !tags.is_empty()
    {
        return tags.iter().all(|&c| matches!(c as u32, 0xE0061..=0xE007A | 0xE0030..=0xE0039));
    }
    // Pictographs, each with its selector and skin tone, joined by ZWJs.
    let mut i = 0;
    let mut parts = 0;
    loop {
        if !chars.get(i).is_some_and(|&c| pictograph(c) && !skin(c)) {
            return false;
        }
        i += 1;
        parts += 1;
        if chars.get(i).is_some_and(|&c| selector(c)) {
            i += 1;
        }
        if chars.get(i).is_some_and(|&c| skin(c)) {
            i += 1;
        }
        match chars.get(i) {
            None => return parts <= 8,
            Some('\u{200D}') => i += 1,
            Some(_) => return false,
        }
    }
}

/// A room title as given: within the limit, no control characters, trimmed
/// (`None` when that leaves nothing).
fn checked_title(title: &str, chars: usize) -> Result<Option<String>, ErrorBody> {
    check_len("title", title, chars)?;
    if title.chars().any(char::is_control) {
        return Err(bad("title must not contain control characters"));
    }
    Ok(Some(title.trim().to_owned()).filter(|t| !t.is_empty()))
}

fn site_banned() -> ErrorBody {
    ErrorBody::new(ErrorCode::Forbidden, "this address is banned from this server")
}

fn page_limit(limit: Option<u32>) -> Result<usize, ErrorBody> {
    match limit.unwrap_or(PAGE_DEFAULT) {
        0 => Err(bad("limit must be at least 1")),
        n if n > PAGE_MAX => Err(bad(format!("limit must be at most {PAGE_MAX}"))),
        n => Ok(n as usize),
    }
}

#[cfg(test)]
mod emoji_tests {
    use super::is_one_emoji;

    #[test]
    fn one_emoji_is_one_and_a_row_or_letters_are_not() {
        for one in [
            "👍",
            "👍🏽",
            "❤️",
            "👨‍👩‍👧",
            "🏳️‍🌈",
            "🇫🇷",
            "1️⃣",
            "#⃣",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
            "🦀",
            "©",
        ] {
            assert!(is_one_emoji(one), "{one:?}");
        }
        for not in [
            "👍👍",
            "abc",
            "1",
            "🇫",
            "🇫🇷🇫🇷",
            "👍\u{200D}",
            "👍\u{E0061}",
            "🄵🅄🄽",
            "👍\u{200D}\u{200D}👍",
            "🏽",
            "👍 ",
            "<b>",
        ] {
            assert!(!is_one_emoji(not), "{not:?}");
        }
    }
}
