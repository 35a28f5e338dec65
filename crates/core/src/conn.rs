//! One client connection, whatever its transport.

mod clustered;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use confab_proto::{
    ClientOp, ErrorBody, ErrorCode, JoinResult, Message, Reply, Request, Retention, RoomInfo,
    ServerInfo, User, parse_request,
};
use serde::Serialize;

use crate::cluster::Mirror;
use crate::hub::{Hub, UserRecord};
use crate::limits::{check_len, check_post, validate_name};
use crate::persist::unavailable;
use crate::rates::Limit;
use crate::room::{Draft, Room, Slice, error_frame};
use crate::{Outbox, now_rfc3339};

/// The most messages one `history` or `mine` returns.
const PAGE_MAX: u32 = 200;
const PAGE_DEFAULT: u32 = 50;

/// A connection to the hub. The adapter feeds it client frames; replies
/// and events come out of the connection's [`Outbox`] in order.
///
/// Dropping a `Conn` is a disconnect: each room it joined starts the
/// member's reconnect grace (if it was the user's last connection there).
pub struct Conn {
    hub: Hub,
    id: u64,
    outbox: Outbox,
    user: Option<Arc<UserRecord>>,
    /// Rooms this connection joined. A `Vec`, not a map: a connection is
    /// in a room or two, and a map's smallest table costs every idle
    /// connection more than a short scan ever does.
    joined: Vec<Arc<Room>>,
    /// Rooms this connection joined, when the node is one of a cluster.
    seats: Vec<clustered::Seat>,
    /// The client's address, when the transport knows it.
    peer: Option<IpAddr>,
}

/// Where a joined connection waits for its reply to be queued.
enum Pending {
    Room(Arc<Room>),
    Mirror(Arc<Mirror>),
}

impl Pending {
    fn activate(&self, conn: u64) {
        match self {
            Pending::Room(room) => room.activate(conn),
            Pending::Mirror(mirror) => mirror.activate(conn),
        }
    }
}

#[derive(Serialize)]
struct HelloResult<'a> {
    session: &'a str,
    user: User,
    server: ServerInfo,
    rooms: Vec<JoinResult>,
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

impl Conn {
    pub(crate) fn new(hub: Hub, id: u64, outbox: Outbox, peer: Option<IpAddr>) -> Conn {
        Conn { hub, id, outbox, user: None, joined: Vec::new(), seats: Vec::new(), peer }
    }

    /// The user, once `hello` has been answered.
    pub fn user(&self) -> Option<User> {
        self.user.as_ref().map(|u| u.public())
    }

    /// Codes of the rooms this connection has joined.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.joined
            .iter()
            .map(|room| room.code())
            .chain(self.seats.iter().map(|seat| seat.mirror.code()))
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
        let Request { id, op } = request;
        let outcome = match op {
            ClientOp::Hello { name, session, resume } => {
                return self.hello(id, name, session, resume.unwrap_or_default()).await;
            }
            ClientOp::Join { room, since } => return self.join_op(id, &room, since).await,
            op => self.apply(id, op).await,
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

    async fn apply(&mut self, id: Option<i64>, op: ClientOp) -> Result<(), ErrorBody> {
        let user = self.authenticated()?;
        let op = match self.hub.cluster().cloned() {
            Some(cluster) => match self.apply_clustered(&cluster, id, &user, op).await? {
                Some(op) => op,
                None => return Ok(()),
            },
            None => op,
        };
        let config = self.hub.config();
        match op {
            ClientOp::Hello { .. } | ClientOp::Join { .. } => unreachable!("handled by handle()"),
            ClientOp::Ping => self.ok(id, &Empty {}),
            ClientOp::Create { title, capacity, retention, backlog, public } => {
                if let Some(title) = &title {
                    check_len("title", title, config.limits.title_chars)?;
                    if title.chars().any(char::is_control) {
                        return Err(bad("title must not contain control characters"));
                    }
                }
                let title = title.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
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
                let room = self
                    .hub
                    .create_room(
                        title,
                        capacity,
                        retention.unwrap_or(Retention::Ephemeral),
                        backlog,
                        public.unwrap_or(false),
                    )
                    .await?;
                self.ok(id, &RoomResult { room })
            }
            ClientOp::Leave { room: code } => {
                // Another connection's seat held in grace ends with a
                // `leave` from this one; any other room answers as one
                // that does not exist.
                let room = match self.joined_room(&code) {
                    Ok(room) => room,
                    Err(e) => self.hub.room(&code).ok_or(e)?,
                };
                let departure = room.leave(self.id, &user.id).map_err(|_| not_in(&code))?;
                self.forget(&room);
                self.hub.settle(&room, departure);
                self.ok(id, &Empty {})
            }
            ClientOp::Post { room, body, subject, cid } => {
                check_post(&config.limits, &body, subject.as_deref(), cid.as_deref())?;
                let room = self.joined_room(&room)?;
                self.hub.limiters().check(Limit::Post, &user.id)?;
                let subject = subject.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
                let draft = Draft { body, subject, cid, ts: now_rfc3339() };
                room.post(self.id, &user.public(), draft, id)
            }
            ClientOp::Typing { room, active } => {
                let room = self.joined_room(&room)?;
                // Over the budget, an indicator is dropped, not fanned out.
                if self.hub.limiters().check(Limit::Typing, &user.id).is_ok() {
                    room.typing(self.id, &user.public(), active)?;
                }
                self.ok(id, &Empty {})
            }
            ClientOp::Rooms => self.ok(id, &RoomsResult { rooms: self.hub.public_rooms().await? }),
            ClientOp::Members { room: code } => {
                // A public room's members are anyone's to see; a private
                // one answers as one that does not exist.
                let room = match self.joined_room(&code) {
                    Ok(room) => room,
                    Err(e) => self.hub.room(&code).filter(|room| room.meta.public).ok_or(e)?,
                };
                let members = room.members(self.id, &user.id).map_err(|_| not_in(&code))?;
                self.ok(id, &MembersResult { members })
            }
            ClientOp::History { room, before, limit } => {
                let limit = page_limit(limit)?;
                let room = self.joined_room(&room)?;
                let slice = room.history(self.id, &user.id, before, limit)?;
                let messages = self.read(&room, slice).await?;
                self.ok(id, &MessagesResult { messages })
            }
            ClientOp::Get { room, seq } => {
                let room = self.joined_room(&room)?;
                let slice = room.get(self.id, &user.id, seq)?;
                let message = self.read(&room, slice).await?.pop().ok_or_else(|| {
                    ErrorBody::new(
                        ErrorCode::NotFound,
                        format!("no message {seq} in room {} that you may see", room.code()),
                    )
                })?;
                self.ok(id, &MessageResult { message })
            }
            ClientOp::Mine { limit } => {
                let limit = page_limit(limit)?;
                let messages = self.hub.store().mine(&user.id, limit).await.map_err(|e| {
                    tracing::warn!("cannot read messages: {e}");
                    unavailable("storage is unavailable; try again shortly")
                })?;
                self.ok(id, &MessagesResult { messages })
            }
        }
    }

    /// Completes a slice with its store part, if it has one.
    async fn read(&self, room: &Room, slice: Slice) -> Result<Vec<Message>, ErrorBody> {
        let Some(fetch) = slice.fetch else { return Ok(slice.window) };
        let mut messages = self
            .hub
            .store()
            .messages(room.code(), fetch.after, fetch.before, fetch.limit)
            .await
            .map_err(|e| {
                tracing::warn!(room = room.code(), "cannot read messages: {e}");
                unavailable("storage is unavailable; try again shortly")
            })?;
        messages.extend(slice.window);
        Ok(messages)
    }

    async fn hello(
        &mut self,
        id: Option<i64>,
        name: String,
        session: Option<String>,
        resume: BTreeMap<String, u64>,
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
        let name = match validate_name(&name, self.hub.config().limits.name_chars) {
            Ok(name) => name,
            Err(e) => return self.fail(id, e),
        };
        let user = match self.hub.session(session.as_deref(), name, self.peer).await {
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
            match self.join_pending(&code, Some(since), true).await {
                Ok((room, result)) => {
                    resumed.push(room);
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
            };
            let result = HelloResult { session: &user.session, user: user.public(), server, rooms };
            self.outbox.push(reply_frame(id, &result));
        }
        for pending in resumed {
            pending.activate(self.id);
        }
    }

    async fn join_op(&mut self, id: Option<i64>, code: &str, since: Option<u64>) {
        match self.join_limited(code, since).await {
            Ok((pending, result)) => {
                if let Some(id) = id {
                    self.outbox.push(reply_frame(id, &result));
                }
                pending.activate(self.id);
            }
            Err(e) => self.fail(id, e),
        }
    }

    /// A join op: rate limited, and a join of a room that does not exist
    /// counts against the client's failed-join budget.
    async fn join_limited(
        &mut self,
        code: &str,
        since: Option<u64>,
    ) -> Result<(Pending, JoinResult), ErrorBody> {
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
        let joined = self.join_pending(code, since, false).await;
        if let Err(e) = &joined
            && e.code == ErrorCode::NotFound
        {
            self.hub.limiters().failed_join(&client);
        }
        joined
    }

    /// Joins a room, leaving the connection pending there until the caller
    /// has queued the reply and calls `activate`. `rejoin`: only if the
    /// user holds a seat there already (a resume); else `not_found`.
    async fn join_pending(
        &mut self,
        code: &str,
        since: Option<u64>,
        rejoin: bool,
    ) -> Result<(Pending, JoinResult), ErrorBody> {
        if let Some(cluster) = self.hub.cluster().cloned() {
            let (mirror, result) = self.join_clustered(&cluster, code, since, rejoin).await?;
            return Ok((Pending::Mirror(mirror), result));
        }
        let user = self.authenticated()?;
        let public = user.public();
        let room = self.hub.find(code)?;
        if rejoin && !room.holds_seat(&public.id) {
            return Err(crate::room::not_found(code));
        }
        let store = self.hub.store().clone();
        let storage_down = |e: crate::store::StoreError| {
            tracing::warn!(room = room.code(), "cannot read the room: {e}");
            unavailable("storage is unavailable; try again shortly")
        };
        if let Some(after) = room.needs_warming() {
            let recent = store.recent_cids(room.code(), after).await.map_err(storage_down)?;
            room.warm(recent);
        }
        let stored = if room.is_persistent() && !room.knows(&public.id) {
            store.visibility(room.code(), &public.id).await.map_err(storage_down)?
        } else {
            None
        };
        let joined = room.join(
            self.id,
            &self.outbox,
            &public,
            since,
            self.hub.config().resume_limit,
            stored,
            rejoin,
        )?;
        if !self.has_joined(&room) {
            self.joined.push(room.clone());
        }
        let mut result = joined.result;
        if let Some(fetch) = joined.fetch {
            let slice = Slice { window: std::mem::take(&mut result.messages), fetch: Some(fetch) };
            match self.read(&room, slice).await {
                Ok(messages) => result.messages = messages,
                Err(e) => {
                    // The seat was taken; give it back before failing.
                    self.forget(&room);
                    if let Ok(departure) = room.leave(self.id, &public.id) {
                        self.hub.settle(&room, departure);
                    }
                    return Err(e);
                }
            }
        }
        if let Some(since) = since {
            result.gap = (result.messages.len() as u64) < result.seq.saturating_sub(since);
        }
        Ok((Pending::Room(room), result))
    }

    /// A room this connection joined, found among its own rooms only: a
    /// room that does not exist and one that is not this connection's
    /// answer the same error, by the same path.
    fn joined_room(&self, code: &str) -> Result<Arc<Room>, ErrorBody> {
        let key = code.trim();
        self.joined
            .iter()
            .find(|room| room.code().eq_ignore_ascii_case(key))
            .cloned()
            .ok_or_else(|| not_in(code))
    }

    /// Whether this connection is in the room `code`.
    fn in_room(&self, code: &str) -> bool {
        let key = code.trim();
        self.rooms().any(|room| room.eq_ignore_ascii_case(key))
    }

    /// Rooms this connection is in.
    fn room_count(&self) -> usize {
        self.joined.len() + self.seats.len()
    }

    fn has_joined(&self, room: &Arc<Room>) -> bool {
        self.joined.iter().any(|joined| Arc::ptr_eq(joined, room))
    }

    fn forget(&mut self, room: &Arc<Room>) {
        self.joined.retain(|joined| !Arc::ptr_eq(joined, room));
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

impl Drop for Conn {
    fn drop(&mut self) {
        let grace = self.hub.grace_applies() && !self.hub.config().grace.is_zero();
        if let Some(cluster) = self.hub.cluster().cloned() {
            self.drop_clustered(&cluster, grace);
        }
        if let Some(user) = &self.user {
            for room in &self.joined {
                let departure = room.disconnect(self.id, &user.id, grace);
                self.hub.settle(room, departure);
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

fn reply_frame<T: Serialize>(id: i64, result: &T) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&Reply { re: id, ok: true, result }).expect("replies always serialize"),
    )
}

fn page_limit(limit: Option<u32>) -> Result<usize, ErrorBody> {
    match limit.unwrap_or(PAGE_DEFAULT) {
        0 => Err(bad("limit must be at least 1")),
        n if n > PAGE_MAX => Err(bad(format!("limit must be at most {PAGE_MAX}"))),
        n => Ok(n as usize),
    }
}

/// The one answer to an op on a room this connection is not in, whether
/// or not the room exists: it names the room only as the client wrote it.
pub(crate) fn not_in(code: &str) -> ErrorBody {
    let code = code.trim();
    let message = if code.len() <= 32 && !code.chars().any(char::is_control) {
        format!("you are not in room {code}")
    } else {
        "you are not in that room".to_owned()
    };
    ErrorBody::new(ErrorCode::NotMember, message)
}

fn bad(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, message)
}
