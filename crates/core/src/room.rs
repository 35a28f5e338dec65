//! One room: the place where order is decided.
//!
//! # Concurrency
//!
//! All of a room's mutable state sits behind one `parking_lot::Mutex`. Each
//! operation takes it once, does only in-memory work (no `.await`, no I/O),
//! and releases it. Inside that critical section a post gets its `seq`, a
//! join claims its seat, and events are pushed into members' outboxes with
//! a non-blocking `try_send`, so every member sees one order and a
//! capacity check and the seat it grants are one atomic step. Rooms never
//! lock each other, and the hub's room map is never locked while a room is.
//!
//! Reads that need the store (old messages of a persistent room) are
//! planned under the lock and done after it is released: see [`Slice`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use confab_proto::{
    ErrorBody, Event, JoinResult, LeaveReason, Message, Quote, Retention, Role, Roles, RoomInfo,
    User,
};
use parking_lot::Mutex;

use crate::backend::{
    BANS_MAX, Ban, Departure, Draft, Mute, Range, Removal, RoomSpec, Since, Target,
    reaction_refusal, toggle_reaction,
};
use crate::fanout::Listener;
use crate::frames::{
    event_frame, may_not_kick, message_event, message_json, message_reply, name_taken,
    no_such_member, not_found, own_role, owner_only, room_full, unavailable,
};
use crate::outbox::Outbox;
use crate::persist::{Job, PendingPost, Persister, Publish, Waiters};
use crate::store::{StoredVisibility, Write};

/// Sizes that bound a room's memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomLimits {
    /// Seats the room grants: `capacity`, or the server maximum.
    pub seats: usize,
    /// Messages kept in memory.
    pub window: usize,
    /// Remembered `cid`s.
    pub dedup: usize,
}

pub(crate) struct Room {
    pub meta: RoomSpec,
    limits: RoomLimits,
    /// Where a persistent room's posts go; `None` for ephemeral rooms.
    persister: Option<Persister>,
    /// Mirrors `state.members.len()` so listings need not take the lock.
    member_count: AtomicUsize,
    /// Mirrors `state.epoch` so the writer can drop stale posts cheaply.
    epoch: AtomicU64,
    /// The title, which the owner and moderators may change (`meta`'s is
    /// the one it was created with).
    title: Mutex<String>,
    state: Mutex<RoomState>,
}

#[derive(Default)]
struct RoomState {
    /// Set once the room is destroyed; every later operation is `not_found`.
    closed: bool,
    /// The latest `seq` handed out.
    seq: u64,
    /// The latest `seq` that is durable and published (equal to `seq` in
    /// an ephemeral room).
    durable: u64,
    /// Bumped when a failed write rolls `seq` back to `durable`.
    epoch: u64,
    /// The newest published messages, contiguous in `seq`, oldest first,
    /// ending at `durable`.
    window: VecDeque<Arc<Message>>,
    /// Members by user id.
    members: HashMap<String, Member>,
    /// Which messages each user who joined may see (for a persistent room,
    /// the users seen since this process started; the rest are in the store).
    visibility: HashMap<String, Visibility>,
    /// Posts by (user id, cid), so a retried post is answered, not repeated.
    dedup: HashMap<(String, String), Dedup>,
    dedup_order: VecDeque<(String, String)>,
    /// Bumped on every drop that starts a grace period, so a stale timer
    /// can tell it has been overtaken by a rejoin.
    grace_epoch: u64,
    /// Whether a persistent room's recent cids have been loaded.
    warm: bool,
    /// The owner and moderators.
    roles: Roles,
    /// Users removed (`kick`) or banned, by user id.
    bans: HashMap<String, Ban>,
    /// The banned addresses' keyed hashes, each to the user id of its ban.
    barred: HashMap<String, String>,
    /// Nobody new may join.
    locked: bool,
    /// Members who may not post, by user id.
    mutes: HashMap<String, Mute>,
    /// Slow mode: the least milliseconds between one member's posts (0:
    /// off), and when each member last posted.
    slow_ms: u64,
    last_post: HashMap<String, u64>,
    /// The room's change number: bumped by every edit, delete and
    /// reaction.
    rev: u64,
    /// The latest changes, `(rev, seq)`, oldest first, one a message, at
    /// most a window's worth: what a resume that gives its `rev` is told
    /// of.
    changes: VecDeque<(u64, u64)>,
    /// The latest change number no longer in `changes` (or, for a stored
    /// room, from before it was loaded).
    forgotten: u64,
}

enum Dedup {
    Done(Arc<Message>),
    /// Being written: a retry waits for the same outcome.
    Pending(Waiters),
}

struct Member {
    user: User,
    conns: Vec<Listener>,
    /// Keyed hashes of the addresses the member joined from (the latest
    /// few), for a ban by address.
    addrs: Vec<String>,
    /// `Some(epoch)` while the member has no connection and is in grace.
    grace: Option<u64>,
}

/// The contiguous range of a room's messages a user may see: from `from`
/// on, and, after they left, up to `left_at`.
#[derive(Debug, Clone, Copy)]
struct Visibility {
    from: u64,
    left_at: Option<u64>,
}

impl From<StoredVisibility> for Visibility {
    fn from(v: StoredVisibility) -> Self {
        Visibility { from: v.from, left_at: v.left_at }
    }
}

/// Messages for a reply: what the window had, and, for a persistent room,
/// an older range still to read from the store (outside the lock). The
/// store part comes first: it is older.
#[derive(Debug, Default)]
pub(crate) struct Slice {
    pub window: Vec<Message>,
    pub fetch: Option<Fetch>,
}

/// A range to read from the store: `after < seq < before`, newest `limit`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fetch {
    pub after: u64,
    pub before: u64,
    pub limit: usize,
}

/// A join, done but for its store read.
pub(crate) struct Joined {
    pub result: JoinResult,
    pub fetch: Option<Fetch>,
}

impl Room {
    /// A room whose latest durable `seq` is `last_seq` (0 for a new room).
    pub fn new(
        meta: RoomSpec,
        limits: RoomLimits,
        persister: Option<Persister>,
        last_seq: u64,
        roles: Roles,
    ) -> Room {
        let persister = if meta.retention == Retention::Persistent { persister } else { None };
        let title = meta.title.clone();
        Room {
            meta,
            limits: RoomLimits { window: limits.window.max(1), ..limits },
            persister,
            member_count: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            title: Mutex::new(title),
            state: Mutex::new(RoomState {
                seq: last_seq,
                durable: last_seq,
                roles,
                ..RoomState::default()
            }),
        }
    }

    pub fn code(&self) -> &str {
        &self.meta.code
    }

    /// The code as logs show it (`RoomSpec::shown_code`).
    pub fn shown_code(&self) -> &str {
        self.meta.shown_code()
    }

    pub fn is_persistent(&self) -> bool {
        self.persister.is_some()
    }

    pub fn info(&self) -> RoomInfo {
        let mut info = self.meta.info(self.member_count.load(Ordering::Relaxed));
        info.title.clone_from(&self.title.lock());
        info
    }

    /// Whether the room knows `user_id`'s visible range without the store.
    pub fn knows(&self, user_id: &str) -> bool {
        self.state.lock().visibility.contains_key(user_id)
    }

    /// For a persistent room whose recent cids are not loaded yet, the
    /// `seq` after which to look for them (the de-duplication window).
    pub fn needs_warming(&self) -> Option<u64> {
        let state = self.state.lock();
        (self.is_persistent() && !state.warm)
            .then(|| state.durable.saturating_sub(self.limits.dedup as u64))
    }

    /// The stored messages that would fill the window: `(after, before,
    /// limit)`.
    pub fn window_to_load(&self) -> (u64, u64, usize) {
        let state = self.state.lock();
        let before = state.window.front().map_or(state.durable + 1, |m| m.seq);
        let room = self.limits.window.saturating_sub(state.window.len());
        (before.saturating_sub(room as u64 + 1), before, room)
    }

    /// Remembers the cids of recent stored messages, so a retry of a post
    /// from before a restart is still recognised.
    pub fn warm(&self, recent: Vec<Message>, newest: Vec<Message>) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.warm {
            return;
        }
        state.warm = true;
        // The newest stored messages (`window_to_load`) go before what
        // the window holds, if they meet it: it stays contiguous.
        let mut next = state.window.front().map_or(state.durable + 1, |m| m.seq);
        for message in newest.into_iter().rev() {
            if message.seq + 1 != next || state.window.len() >= self.limits.window {
                break;
            }
            next = message.seq;
            state.window.push_front(Arc::new(message));
        }
        for message in recent.into_iter().rev() {
            if let Some(cid) = message.cid.clone() {
                let key = (message.from.id.clone(), cid);
                if !state.dedup.contains_key(&key) {
                    remember(state, self.limits.dedup, key, Dedup::Done(Arc::new(message)));
                }
            }
        }
    }

    /// Adds a connection of `user` to the room. The connection is left
    /// *pending*: events for it are held until [`Room::activate`], so that
    /// the caller can queue the join reply first.
    ///
    /// A user who is already a member (another tab, or a reconnect within
    /// grace) joins silently; a new member takes a seat and is announced.
    /// `stored` is the user's visible range from the store, if the room
    /// did not know it.
    ///
    /// # Errors
    ///
    /// `rejoin`: only if the user holds a seat already (a resume).
    ///
    /// # Errors
    ///
    /// `not_found` if the room is closed (or, with `rejoin`, the user holds
    /// no seat), `room_full`, `name_taken`.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &self,
        conn: u64,
        outbox: &Outbox,
        user: &User,
        since: Option<Since>,
        resume_limit: usize,
        stored: Option<StoredVisibility>,
        rejoin: bool,
        address: Option<&str>,
    ) -> Result<Joined, ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.closed || (rejoin && !state.members.contains_key(&user.id)) {
            return Err(not_found(&self.meta.code));
        }
        self.check_bans(state, &user.id, address)?;
        let entry = Listener::pending(conn, outbox);
        // A member coming back under a new name keeps the old one if the
        // new one is another member's.
        let renamable = !state
            .members
            .iter()
            .any(|(id, m)| *id != user.id && names_clash(&m.user.name, &user.name));
        if let Some(member) = state.members.get_mut(&user.id) {
            member.grace = None;
            if let Some(address) = address {
                note_address(&mut member.addrs, address);
            }
            if renamable {
                member.user.name.clone_from(&user.name);
            }
            member.conns.retain(|c| c.conn != conn);
            member.conns.push(entry);
        } else {
            // A locked room takes nobody new: its owner and moderators, and
            // those who were members when it was locked (back after a
            // restart, say), still come in.
            if state.locked {
                let privileged = state.roles.contains_key(&user.id);
                let known = state.visibility.get(&user.id).copied();
                let was_member =
                    known.or(stored.map(Visibility::from)).is_some_and(|v| v.left_at.is_none());
                if !privileged && !was_member {
                    return Err(crate::frames::locked_out(&self.meta.code));
                }
            }
            if state.members.len() >= self.limits.seats {
                return Err(room_full(&self.meta.code, self.limits.seats));
            }
            if state.members.values().any(|m| names_clash(&m.user.name, &user.name)) {
                return Err(name_taken(&self.meta.code, &user.name));
            }
            let floor = (state.durable + 1).saturating_sub(u64::from(self.meta.backlog)).max(1);
            let known = state.visibility.get(&user.id).copied().or(stored.map(Visibility::from));
            let visibility = match known {
                // Returning soon enough that the backlog covers the absence
                // (or never seen to leave: the server stopped while they
                // were a member): the visible range stays one piece.
                Some(v) if v.left_at.is_none_or(|last| last + 1 >= floor) => {
                    Visibility { from: v.from, left_at: None }
                }
                _ => Visibility { from: floor, left_at: None },
            };
            state.visibility.insert(user.id.clone(), visibility);
            self.persist_visibility(&user.id, visibility);
            let frame =
                event_frame(&Event::Join { room: self.meta.code.clone(), user: user.clone() });
            broadcast(state, &frame, |u, _| u.id != user.id);
            let addrs = address.map(|a| vec![a.to_owned()]).unwrap_or_default();
            state.members.insert(
                user.id.clone(),
                Member { user: user.clone(), conns: vec![entry], addrs, grace: None },
            );
            self.member_count.store(state.members.len(), Ordering::Relaxed);
            metrics::gauge!(crate::metric::MEMBERS).increment(1.0);
        }
        let visibility = state.visibility[&user.id];
        let (after, limit) = match since {
            None => {
                let first = (state.durable + 1).saturating_sub(u64::from(self.meta.backlog));
                (first.saturating_sub(1), self.meta.backlog as usize)
            }
            Some(since) => (since.seq, resume_limit),
        };
        let slice = self.slice(state, &user.id, visibility, after, u64::MAX, limit);
        let changed = match since {
            Some(Since { seq, rev: Some(rev) }) => {
                changed_since(state, &user.id, visibility, seq.min(state.durable), rev)
            }
            _ => Vec::new(),
        };
        let mut info = self.info();
        info.members = state.members.len();
        Ok(Joined {
            result: JoinResult {
                room: info,
                members: state.members.values().map(|m| m.user.clone()).collect(),
                roles: state.roles.clone(),
                locked: state.locked,
                slow: u32::try_from(state.slow_ms / 1000).unwrap_or(u32::MAX),
                messages: slice.window,
                seq: state.durable,
                gap: false,
                rev: state.rev,
                changed,
            },
            fetch: slice.fetch,
        })
    }

    /// Whether `user_id` holds a seat: a member, connected or in grace.
    pub fn holds_seat(&self, user_id: &str) -> bool {
        let state = self.state.lock();
        !state.closed && state.members.contains_key(user_id)
    }

    /// Releases the events held for a connection since its join.
    pub fn activate(&self, conn: u64) {
        let mut state = self.state.lock();
        for member in state.members.values_mut() {
            if let Some(entry) = member.conns.iter_mut().find(|c| c.conn == conn) {
                entry.activate();
                return;
            }
        }
    }

    /// An explicit `leave` by one connection of `user`.
    ///
    /// # Errors
    ///
    /// `not_member` if the user is not a member, or is a member through
    /// other connections only.
    pub fn leave(&self, conn: u64, user_id: &str) -> Result<Departure, ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let Some(member) = state.members.get_mut(user_id) else {
            return Err(not_member(&self.meta.code));
        };
        let before = member.conns.len();
        member.conns.retain(|c| c.conn != conn);
        if member.conns.len() == before && before > 0 {
            return Err(not_member(&self.meta.code));
        }
        if !member.conns.is_empty() {
            return Ok(Departure::Quiet);
        }
        Ok(self.remove_member(state, user_id, LeaveReason::Left))
    }

    /// A connection went away without `leave`. If it was the user's last,
    /// the member keeps the seat for the grace period (or leaves at once
    /// when `grace` is false).
    pub fn disconnect(&self, conn: u64, user_id: &str, grace: bool) -> Departure {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let Some(member) = state.members.get_mut(user_id) else {
            return Departure::Quiet;
        };
        let before = member.conns.len();
        member.conns.retain(|c| c.conn != conn);
        if member.conns.len() == before || !member.conns.is_empty() {
            return Departure::Quiet;
        }
        if !grace {
            return self.remove_member(state, user_id, LeaveReason::Disconnected);
        }
        state.grace_epoch += 1;
        let epoch = state.grace_epoch;
        member.grace = Some(epoch);
        Departure::Grace { user_id: user_id.to_owned(), epoch }
    }

    /// The grace timer fired: the member leaves if nothing rejoined since.
    pub fn expire_grace(&self, user_id: &str, epoch: u64) -> Departure {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        match state.members.get(user_id) {
            Some(member) if member.grace == Some(epoch) && member.conns.is_empty() => {
                self.remove_member(state, user_id, LeaveReason::Disconnected)
            }
            _ => Departure::Quiet,
        }
    }

    fn remove_member(
        &self,
        state: &mut RoomState,
        user_id: &str,
        reason: LeaveReason,
    ) -> Departure {
        let Some(member) = state.members.remove(user_id) else {
            return Departure::Quiet;
        };
        // A member's last post outlives their seat (leaving and coming back
        // is no way around slow mode); those past the interval go.
        if state.last_post.len() > 2 * state.members.len() + 64 {
            let (now, slow) = (crate::unix_ms(), state.slow_ms);
            state.last_post.retain(|_, last| *last + slow > now);
        }
        self.member_count.store(state.members.len(), Ordering::Relaxed);
        metrics::gauge!(crate::metric::MEMBERS).decrement(1.0);
        if let Some(v) = state.visibility.get_mut(user_id) {
            v.left_at = Some(state.durable);
            let v = *v;
            self.persist_visibility(user_id, v);
        }
        if state.members.is_empty() && self.meta.retention == Retention::Ephemeral {
            state.closed = true;
            state.window.clear();
            state.dedup.clear();
            state.dedup_order.clear();
            state.visibility.clear();
            return Departure::Destroyed;
        }
        let frame =
            event_frame(&Event::Leave { room: self.meta.code.clone(), user: member.user, reason });
        broadcast(state, &frame, |_, _| true);
        Departure::Left
    }

    /// Queues a visibility change for the store. Best effort: if the
    /// queue is full the change lives in memory only until restart.
    fn persist_visibility(&self, user_id: &str, v: Visibility) {
        if let Some(persister) = &self.persister {
            let write = Write::Visibility {
                room: self.meta.code.clone(),
                user_id: user_id.to_owned(),
                visibility: StoredVisibility { from: v.from, left_at: v.left_at },
            };
            if persister.try_queue(Job::Write(write)).is_err() {
                tracing::warn!(room = self.meta.code, "visibility not stored: storage is busy");
            }
        }
    }

    /// Drops from the window what the retention policy removed from the
    /// store: all but the newest `keep`, and anything older than `cutoff`.
    pub fn prune_window(&self, keep: Option<u64>, cutoff: Option<&str>) {
        let mut state = self.state.lock();
        let durable = state.durable;
        while let Some(oldest) = state.window.front() {
            let too_many = keep.is_some_and(|keep| oldest.seq + keep <= durable);
            let too_old = cutoff.is_some_and(|cutoff| oldest.ts.as_str() < cutoff);
            if !(too_many || too_old) {
                break;
            }
            state.window.pop_front();
        }
    }

    /// Destroys the room if nobody is in it (an unjoined room's timeout).
    pub fn close_if_empty(&self) -> bool {
        let mut state = self.state.lock();
        if state.closed || !state.members.is_empty() {
            return false;
        }
        state.closed = true;
        state.window.clear();
        true
    }

    /// Posts a message from connection `conn`.
    ///
    /// In an ephemeral room the message is published at once. In a
    /// persistent room it is queued for the persister, which publishes it
    /// once it is durable. Either way the poster's reply (to `reply_id`)
    /// and every later outcome go through the connection's outbox.
    ///
    /// # Errors
    ///
    /// `not_found` if the room is closed, `not_member` if the connection
    /// has not joined, `unavailable` if storage is down or busy.
    pub fn post(
        self: &Arc<Self>,
        conn: u64,
        user: &User,
        draft: Draft,
        reply_id: Option<i64>,
    ) -> Result<(), ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(not_found(&self.meta.code));
        }
        let Some(member) = state.members.get(&user.id) else {
            return Err(not_member(&self.meta.code));
        };
        let Some(poster) = member.conns.iter().find(|c| c.conn == conn) else {
            return Err(not_member(&self.meta.code));
        };
        let poster = poster.outbox.clone();
        let from = member.user.clone();
        let Draft { body, subject, cid, ts, reply, bot } = draft;
        let key = cid.as_ref().map(|cid| (user.id.clone(), cid.clone()));
        if let Some(key) = &key {
            match state.dedup.get(key) {
                Some(Dedup::Done(first)) => {
                    if let Some(id) = reply_id {
                        poster.push(message_reply(id, &message_json(first)));
                    }
                    return Ok(());
                }
                Some(Dedup::Pending(waiters)) => {
                    waiters.lock().push((poster, reply_id));
                    return Ok(());
                }
                None => {}
            }
        }
        // A retry is answered above, before a mute or slow mode is looked at.
        let now = crate::unix_ms();
        let shadow = self.check_policy(state, &user.id, now)?;
        // The quote was made before the lock: the message it quotes may
        // have been deleted since.
        let first = state.window.front().map_or(u64::MAX, |m| m.seq);
        let reply = reply.map(|quote| {
            let held = quote
                .seq
                .checked_sub(first)
                .and_then(|i| state.window.get(usize::try_from(i).ok()?));
            match held {
                Some(m) if m.deleted && !quote.deleted => quote.tombstone(),
                _ => quote,
            }
        });
        if let Some(persister) = &self.persister
            && !persister.healthy()
        {
            return Err(unavailable("storage is unavailable; try again shortly"));
        }
        let message = Arc::new(Message {
            room: self.meta.code.clone(),
            seq: state.seq + 1,
            from,
            subject,
            body,
            ts,
            cid,
            deleted: false,
            shadow,
            reply,
            edited: None,
            reactions: Vec::new(),
            bot,
        });
        match &self.persister {
            None => {
                if state.slow_ms > 0 {
                    state.last_post.insert(user.id.clone(), now);
                }
                state.seq += 1;
                if let Some(key) = key {
                    remember(state, self.limits.dedup, key, Dedup::Done(message.clone()));
                }
                let waiters = [(poster, reply_id)];
                self.publish(state, &message, conn, &waiters);
            }
            Some(persister) => {
                if state.slow_ms > 0 {
                    state.last_post.insert(user.id.clone(), now);
                }
                let waiters: Waiters = Arc::new(Mutex::new(vec![(poster, reply_id)]));
                persister.try_queue(Job::Post(PendingPost {
                    room: self.clone() as Arc<dyn Publish>,
                    message,
                    epoch: state.epoch,
                    conn,
                    waiters: waiters.clone(),
                }))?;
                state.seq += 1;
                if let Some(key) = key {
                    remember(state, self.limits.dedup, key, Dedup::Pending(waiters));
                }
            }
        }
        Ok(())
    }

    /// Adds a message to the window, sends the event to every joined
    /// connection but the poster's, and the reply to each waiter. The
    /// message is serialized once; event and replies share the bytes.
    fn publish(
        &self,
        state: &mut RoomState,
        message: &Arc<Message>,
        poster: u64,
        waiters: &[(Outbox, Option<i64>)],
    ) {
        state.durable = message.seq;
        state.window.push_back(message.clone());
        if state.window.len() > self.limits.window {
            state.window.pop_front();
        }
        let json = message_json(message);
        let event = message_event(&json);
        let fanout = std::time::Instant::now();
        // A shadow-muted member's post reaches their own other tabs only.
        let author = &message.from.id;
        let queued = broadcast(state, &event, |u, c| {
            c.conn != poster && (!message.shadow || u.id == *author)
        });
        metrics::histogram!(crate::metric::FANOUT).record(fanout.elapsed());
        metrics::counter!(crate::metric::DELIVERIES).increment(queued);
        metrics::counter!(crate::metric::POSTS).increment(1);
        for (outbox, id) in waiters {
            if let Some(id) = id {
                outbox.push(message_reply(*id, &json));
            }
        }
    }

    /// Tells the other members that `user` is (not) typing.
    ///
    /// # Errors
    ///
    /// `not_member` if the connection has not joined.
    pub fn typing(&self, conn: u64, user: &User, active: bool) -> Result<(), ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if !is_joined(state, &user.id, conn) {
            return Err(not_member(&self.meta.code));
        }
        let frame = event_frame(&Event::Typing {
            room: self.meta.code.clone(),
            user: state.members[&user.id].user.clone(),
            active,
        });
        broadcast(state, &frame, |u, _| u.id != user.id);
        Ok(())
    }

    /// The members, if `conn` may see them (the room is public, or the
    /// connection joined it).
    ///
    /// # Errors
    ///
    /// `not_member` for a private room the connection has not joined.
    pub fn members(&self, conn: u64, user_id: &str) -> Result<(Vec<User>, Roles), ErrorBody> {
        let state = self.state.lock();
        if state.closed {
            return Err(not_found(&self.meta.code));
        }
        if !self.meta.public && !is_joined(&state, user_id, conn) {
            return Err(not_member(&self.meta.code));
        }
        Ok((state.members.values().map(|m| m.user.clone()).collect(), state.roles.clone()))
    }

    /// Whether a stored room was locked, as it is loaded.
    pub fn set_locked_at_load(&self, locked: bool) {
        self.state.lock().locked = locked;
    }

    /// Locks the room (nobody new may join) or unlocks it, on behalf of
    /// `actor` (through `conn`), its owner or a moderator. Every member is
    /// told. Returns whether it changed.
    ///
    /// # Errors
    ///
    /// `not_member` if the connection has not joined, `forbidden` if the
    /// actor is a plain member.
    pub fn lock(&self, conn: u64, actor: &str, locked: bool) -> Result<bool, ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.closed || !is_joined(state, actor, conn) {
            return Err(not_member(&self.meta.code));
        }
        if !state.roles.contains_key(actor) {
            return Err(may_not_kick(&self.meta.code, "only the owner and moderators lock a room"));
        }
        if state.locked == locked {
            return Ok(false);
        }
        state.locked = locked;
        let user = state.members[actor].user.clone();
        let frame = event_frame(&Event::Locked { room: self.meta.code.clone(), locked, user });
        broadcast(state, &frame, |_, _| true);
        Ok(true)
    }

    /// Refuses a post of `user_id` at `now` that a mute or slow mode holds
    /// off (the owner and moderators are not held to slow mode).
    /// Whether the post is a shadow-muted member's (it reaches only them).
    fn check_policy(
        &self,
        state: &mut RoomState,
        user_id: &str,
        now: u64,
    ) -> Result<bool, ErrorBody> {
        if let Some(mute) = state.mutes.get(user_id) {
            match mute.remaining(now) {
                // Shadow-muted: let through, to be seen by its author only
                // (slow mode does not apply: nobody else reads it).
                Some(_) if mute.shadow => return Ok(true),
                Some(left) => return Err(crate::frames::muted(&self.meta.code, left)),
                None => {
                    state.mutes.remove(user_id);
                }
            }
        }
        if state.slow_ms > 0
            && !state.roles.contains_key(user_id)
            && let Some(last) = state.last_post.get(user_id)
        {
            let next = last + state.slow_ms;
            if next > now {
                return Err(crate::frames::slowed(&self.meta.code, state.slow_ms, next - now));
            }
        }
        Ok(false)
    }

    /// Mutes the member `target` (`Some`: for so long, or until lifted) or
    /// lets a muted user speak again (`None`; by id, a member or not), on
    /// behalf of `actor`: the owner mutes anyone else, a moderator a plain
    /// member. Every member is told.
    ///
    /// # Errors
    ///
    /// `not_member` if the connection has not joined, `forbidden` if the
    /// actor may not, `bad_request` for a target that is not a member (or
    /// not muted, to unmute), or the actor themselves.
    pub fn mute(
        &self,
        conn: u64,
        actor: &str,
        target: &Target,
        mute: Option<Option<std::time::Duration>>,
        shadow: bool,
    ) -> Result<(), ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        self.check_moderator(state, conn, actor, "only the owner and moderators mute members")?;
        let by = state.members[actor].user.clone();
        let now = crate::unix_ms();
        let Some(mute) = mute else {
            let user_id = match target {
                Target::Id(id) => id.clone(),
                Target::Name(_) => self.member_named(state, target)?,
            };
            let Some(by_id) = state.mutes.get(&user_id).map(|m| m.by.id.clone()) else {
                return Err(crate::frames::not_muted(&self.meta.code, &user_id));
            };
            if user_id == actor && state.roles.get(actor) != Some(&Role::Owner) {
                return Err(may_not_kick(&self.meta.code, "nobody lets themselves speak again"));
            }
            self.may_lift(state, actor, &by_id)?;
            let Some(old) = state.mutes.remove(&user_id) else {
                return Err(crate::frames::not_muted(&self.meta.code, &user_id));
            };
            if old.remaining(now).is_none() {
                return Err(crate::frames::not_muted(&self.meta.code, &user_id));
            }
            // A shadow mute ends as it began: unheard of.
            if !old.shadow {
                let event =
                    Event::Muted { room: self.meta.code.clone(), user: old.user, muted: false, by };
                broadcast(state, &event_frame(&event), |_, _| true);
            }
            return Ok(());
        };
        let target_id = self.member_named(state, target)?;
        if target_id == actor {
            return Err(crate::frames::bad(format!(
                "you cannot mute yourself in room {}",
                self.meta.code
            )));
        }
        let actor_role = state.roles.get(actor).copied().unwrap_or(Role::Member);
        match state.roles.get(&target_id) {
            Some(Role::Owner) => {
                return Err(may_not_kick(&self.meta.code, "nobody mutes the owner"));
            }
            Some(Role::Moderator) if actor_role != Role::Owner => {
                return Err(may_not_kick(&self.meta.code, "only the owner mutes a moderator"));
            }
            _ => {}
        }
        if state.mutes.len() >= BANS_MAX && !state.mutes.contains_key(&target_id) {
            state.mutes.retain(|_, m| m.remaining(now).is_some());
            if state.mutes.len() >= BANS_MAX {
                return Err(crate::frames::bad(format!(
                    "room {} has {BANS_MAX} mutes, the most it keeps; lift some first",
                    self.meta.code
                )));
            }
        }
        let user = state.members[&target_id].user.clone();
        let until = mute.map(|d| now + u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2));
        state.mutes.insert(target_id, Mute { user: user.clone(), by: by.clone(), until, shadow });
        if !shadow {
            let event = Event::Muted { room: self.meta.code.clone(), user, muted: true, by };
            broadcast(state, &event_frame(&event), |_, _| true);
        }
        Ok(())
    }

    /// The mutes in force, for `actor`, the owner or a moderator.
    ///
    /// # Errors
    ///
    /// As [`Room::bans`].
    pub fn mutes(&self, conn: u64, actor: &str) -> Result<Vec<Mute>, ErrorBody> {
        let state = self.state.lock();
        self.check_moderator(&state, conn, actor, "only the owner and moderators see mutes")?;
        let now = crate::unix_ms();
        Ok(state.mutes.values().filter(|m| m.remaining(now).is_some()).cloned().collect())
    }

    /// Sets slow mode, on behalf of `actor`, the owner or a moderator; every
    /// member is told. Returns whether it changed.
    ///
    /// # Errors
    ///
    /// `not_member` if the connection has not joined, `forbidden` for a
    /// plain member.
    pub fn set_slow(&self, conn: u64, actor: &str, seconds: u32) -> Result<bool, ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        self.check_moderator(state, conn, actor, "only the owner and moderators set slow mode")?;
        let ms = u64::from(seconds) * 1000;
        if state.slow_ms == ms {
            return Ok(false);
        }
        state.slow_ms = ms;
        state.last_post.clear();
        let user = state.members[actor].user.clone();
        let event = Event::Slow { room: self.meta.code.clone(), seconds, user };
        broadcast(state, &event_frame(&event), |_, _| true);
        Ok(true)
    }

    /// A stored room's slow mode, as it is loaded.
    pub fn set_slow_at_load(&self, seconds: u32) {
        self.state.lock().slow_ms = u64::from(seconds) * 1000;
    }

    /// Renames the room, on behalf of `actor`, the owner or a moderator;
    /// every member is told. Returns whether it changed.
    ///
    /// # Errors
    ///
    /// As [`Room::set_slow`].
    pub fn retitle(&self, conn: u64, actor: &str, title: &str) -> Result<bool, ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        self.check_moderator(state, conn, actor, "only the owner and moderators rename a room")?;
        {
            let mut current = self.title.lock();
            if *current == title {
                return Ok(false);
            }
            title.clone_into(&mut current);
        }
        let user = state.members[actor].user.clone();
        let event = Event::Title { room: self.meta.code.clone(), title: title.to_owned(), user };
        broadcast(state, &event_frame(&event), |_, _| true);
        Ok(true)
    }

    /// Deletes `message` (read by `actor` through `conn`) on behalf of
    /// `actor`, its author or the owner or a moderator: a tombstone takes
    /// its place in the window and in what a retry of its `cid` answers,
    /// the store is told, and every member gets `deleted`.
    ///
    /// # Errors
    ///
    /// `not_member` if the connection has not joined, `forbidden` if the
    /// actor may not delete it.
    pub fn delete(&self, conn: u64, actor: &str, message: &Message) -> Result<(), ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.closed || !is_joined(state, actor, conn) {
            return Err(not_member(&self.meta.code));
        }
        // Its author; the owner, anyone's; a moderator, a plain member's.
        let role = |id: &str| state.roles.get(id).copied().unwrap_or(Role::Member);
        let allowed = message.from.id == actor
            || role(actor) == Role::Owner
            || (role(actor) == Role::Moderator && role(&message.from.id) == Role::Member);
        if !allowed {
            return Err(may_not_kick(
                &self.meta.code,
                "only its author, the owner and moderators (of members' messages) delete a message",
            ));
        }
        // The store first: a delete it cannot take changes nothing, and one
        // it took is durable whatever happens to memory. A tombstone read
        // back is written again (harmless): a delete once refused by a full
        // queue is completed by its retry.
        let quote = Quote::of(message).tombstone();
        if let Some(persister) = &self.persister {
            let write = Write::Delete {
                room: self.meta.code.clone(),
                seq: message.seq,
                quote: quote.clone(),
                rev: (!message.deleted).then_some(state.rev + 1),
            };
            persister
                .try_queue(Job::Write(write))
                .map_err(|_| unavailable("storage is busy; try again shortly"))?;
        }
        if message.deleted {
            return Ok(());
        }
        let tombstone = Arc::new(message.tombstone());
        if let Some(kept) = state.window.iter_mut().find(|m| m.seq == message.seq) {
            *kept = tombstone.clone();
        }
        // Replies quote it no more, in the window and in what a retry of
        // theirs is answered with.
        let quoting =
            |m: &Message| m.reply.as_ref().is_some_and(|q| q.seq == message.seq && !q.deleted);
        for kept in &mut state.window {
            if quoting(kept) {
                *kept = Arc::new(Message { reply: Some(quote.clone()), ..Message::clone(kept) });
            }
        }
        for entry in state.dedup.values_mut() {
            if let Dedup::Done(done) = entry
                && quoting(done)
            {
                *done = Arc::new(Message { reply: Some(quote.clone()), ..Message::clone(done) });
            }
        }
        if let Some(cid) = &message.cid {
            let key = (message.from.id.clone(), cid.clone());
            if let Some(Dedup::Done(done)) = state.dedup.get_mut(&key)
                && done.seq == message.seq
            {
                *done = tombstone;
            }
        }
        let rev = note_change(state, message.seq, self.limits.window);
        let by = state.members[actor].user.clone();
        let event = Event::Deleted { room: self.meta.code.clone(), seq: message.seq, by, rev };
        let author = message.from.id.as_str();
        let shadow = message.shadow;
        let readers = self.readers(state, message.seq, shadow.then_some(author));
        broadcast(state, &event_frame(&event), |u, _| {
            readers.as_ref().is_none_or(|r| r.contains(&u.id))
        });
        Ok(())
    }

    /// The message `seq` as the window holds it, for a change by `actor`
    /// through `conn`.
    fn held(
        &self,
        state: &RoomState,
        conn: u64,
        actor: &str,
        seq: u64,
    ) -> Result<usize, ErrorBody> {
        if state.closed || !is_joined(state, actor, conn) {
            return Err(not_member(&self.meta.code));
        }
        let first = state.window.front().map_or(state.durable + 1, |m| m.seq);
        if seq < first || seq > state.durable {
            return Err(too_old(&self.meta.code, seq, self.limits.window));
        }
        let i = usize::try_from(seq - first).unwrap_or(usize::MAX);
        let message = &state.window[i];
        if message.shadow && message.from.id != actor {
            return Err(crate::frames::no_message(&self.meta.code, seq));
        }
        if message.deleted {
            return Err(ErrorBody::new(
                confab_proto::ErrorCode::Forbidden,
                format!("message {seq} of room {} was deleted", self.meta.code),
            ));
        }
        Ok(i)
    }

    /// Replaces message `i` of the window with `message`, wherever it is
    /// kept (the window, what a retry of its `cid` is answered with, the
    /// store), and notes the change; its `rev`.
    fn amend(&self, state: &mut RoomState, i: usize, message: Message) -> Result<u64, ErrorBody> {
        let message = Arc::new(message);
        if let Some(persister) = &self.persister {
            let write = Write::Amend {
                room: self.meta.code.clone(),
                message: message.clone(),
                rev: state.rev + 1,
            };
            persister
                .try_queue(Job::Write(write))
                .map_err(|_| unavailable("storage is busy; try again shortly"))?;
        }
        if let Some(cid) = &message.cid {
            let key = (message.from.id.clone(), cid.clone());
            if let Some(Dedup::Done(done)) = state.dedup.get_mut(&key)
                && done.seq == message.seq
            {
                *done = message.clone();
            }
        }
        let seq = message.seq;
        state.window[i] = message;
        Ok(note_change(state, seq, self.limits.window))
    }

    /// Replaces the text of message `seq` with `body` on behalf of
    /// `actor`, its author; every member who may see it gets `edited`.
    ///
    /// # Errors
    ///
    /// `not_member`; `forbidden` if the actor is not its author, it was
    /// deleted, or it is older than the window.
    pub fn edit(
        &self,
        conn: u64,
        actor: &str,
        seq: u64,
        body: &str,
        edited: &str,
    ) -> Result<(), ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let i = self.held(state, conn, actor, seq)?;
        let muting = self.muting(state, actor)?;
        let old = &state.window[i];
        // A shadow-muted member edits what only they see; their other
        // messages are past editing, as far as they can tell.
        if muting == Some(true) && !old.shadow {
            return Err(edit_over(&self.meta.code, seq));
        }
        if old.from.id != actor {
            return Err(ErrorBody::new(
                confab_proto::ErrorCode::Forbidden,
                format!("only its author edits message {seq} of room {}", self.meta.code),
            ));
        }
        if old.body == body {
            return Ok(());
        }
        let message = Message {
            body: body.to_owned(),
            edited: Some(edited.to_owned()),
            ..Message::clone(old)
        };
        let shadow = message.shadow;
        let event_message = message.clone();
        let rev = self.amend(state, i, message)?;
        let event = Event::Edited {
            room: self.meta.code.clone(),
            seq,
            rev,
            message: Box::new(event_message),
        };
        let readers = self.readers(state, seq, shadow.then_some(actor));
        broadcast(state, &event_frame(&event), |u, _| {
            readers.as_ref().is_none_or(|r| r.contains(&u.id))
        });
        Ok(())
    }

    /// Puts `actor`'s `emoji` on message `seq`, or takes it off; whether it
    /// is on now. Every member who may see the message gets `reacted`.
    ///
    /// # Errors
    ///
    /// `not_member`; `forbidden` if it was deleted, is older than the
    /// window, or a bound would be crossed.
    pub fn react(&self, conn: u64, actor: &str, seq: u64, emoji: &str) -> Result<bool, ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let i = self.held(state, conn, actor, seq)?;
        let user = state.members[actor].user.clone();
        let mut message = Message::clone(&state.window[i]);
        let on = toggle_reaction(&mut message.reactions, &user, emoji)
            .map_err(|why| reaction_refusal(&self.meta.code, seq, why))?;
        // A shadow-muted member's reaction to what others see is answered
        // as if it were taken, and taken nowhere.
        if self.muting(state, actor)? == Some(true) && !message.shadow {
            return Ok(on);
        }
        let shadow = message.shadow;
        let author = message.from.id.clone();
        let rev = self.amend(state, i, message)?;
        let event = Event::Reacted {
            room: self.meta.code.clone(),
            seq,
            rev,
            emoji: emoji.to_owned(),
            user,
            on,
        };
        let readers = self.readers(state, seq, shadow.then_some(author.as_str()));
        broadcast(state, &event_frame(&event), |u, _| {
            readers.as_ref().is_none_or(|r| r.contains(&u.id))
        });
        Ok(on)
    }

    /// Whether `actor` is muted: `Some(true)` shadow-muted, `None` not;
    /// a plain mute is the refusal a post gets.
    fn muting(&self, state: &mut RoomState, actor: &str) -> Result<Option<bool>, ErrorBody> {
        let Some(mute) = state.mutes.get(actor) else { return Ok(None) };
        match mute.remaining(crate::unix_ms()) {
            Some(_) if mute.shadow => Ok(Some(true)),
            Some(left) => Err(crate::frames::muted(&self.meta.code, left)),
            None => {
                state.mutes.remove(actor);
                Ok(None)
            }
        }
    }

    /// Who hears of a change of message `seq`: `None` everyone (a public
    /// room, which anyone may read back); else the members whose visible
    /// range holds it, and only `author` for a shadow-muted member's.
    fn readers(
        &self,
        state: &RoomState,
        seq: u64,
        author: Option<&str>,
    ) -> Option<std::collections::HashSet<String>> {
        if let Some(author) = author {
            return Some([author.to_owned()].into());
        }
        if self.meta.public {
            return None;
        }
        let sees = |v: &Visibility| v.from <= seq && v.left_at.is_none_or(|last| seq <= last);
        Some(
            state
                .members
                .keys()
                .filter(|id| state.visibility.get(*id).is_some_and(sees))
                .cloned()
                .collect(),
        )
    }

    /// A stored room's change number, as it is loaded.
    pub fn set_rev_at_load(&self, rev: u64) {
        let mut state = self.state.lock();
        state.rev = rev;
        state.forgotten = rev;
    }

    /// Ends the room for the operator: every connection gets `closed`
    /// (reason `closed`), every seat is dropped, and later ops find it
    /// gone.
    pub fn close_by_operator(&self) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let frame =
            event_frame(&Event::Closed { room: self.meta.code.clone(), reason: "closed".into() });
        for listener in state.members.values().flat_map(|m| m.conns.iter()) {
            listener.outbox.push(frame.clone());
        }
        metrics::gauge!(crate::metric::MEMBERS).decrement(state.members.len() as f64);
        state.members.clear();
        self.member_count.store(0, Ordering::Relaxed);
        state.closed = true;
        state.window.clear();
        state.dedup.clear();
        state.dedup_order.clear();
    }

    /// The members and roles, for the operator.
    ///
    /// # Errors
    ///
    /// `not_found` if the room is closed.
    pub fn operator_members(&self) -> Result<(Vec<User>, Roles), ErrorBody> {
        let state = self.state.lock();
        if state.closed {
            return Err(not_found(&self.meta.code));
        }
        Ok((state.members.values().map(|m| m.user.clone()).collect(), state.roles.clone()))
    }

    /// Tells every member `text` from the operator.
    pub fn notice(&self, text: &str) {
        let mut state = self.state.lock();
        let event = Event::Notice { room: self.meta.code.clone(), text: text.to_owned() };
        broadcast(&mut state, &event_frame(&event), |_, _| true);
    }

    /// Tombstones every message of `user_id` the room holds in memory, and
    /// tells the members if it held any or knows the user.
    pub fn purge(&self, user_id: &str) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let mut touched = state.visibility.contains_key(user_id);
        let mut purged = Vec::new();
        for kept in state.window.iter_mut().filter(|m| m.from.id == user_id && !m.deleted) {
            *kept = Arc::new(kept.tombstone());
            purged.push(kept.seq);
        }
        // The tombstones are one change of the room, numbered as a delete
        // is, so that a member who resumes hears of each. The store's copy
        // is the hub's to purge (every message, not only the window's);
        // the change number goes with it, best effort: an operator's purge
        // is not refused for a busy store.
        let rev = (!purged.is_empty()).then(|| note_changes(state, &purged, self.limits.window));
        if let (Some(rev), Some(persister)) = (rev, &self.persister) {
            let write = Write::Rev { room: self.meta.code.clone(), rev };
            if persister.try_queue(Job::Write(write)).is_err() {
                tracing::warn!(room = %self.meta.code, "a purge's change number not stored: the store is busy");
            }
        }
        touched |= rev.is_some();
        // Replies quote the user's messages no more.
        for kept in &mut state.window {
            if let Some(quote) = kept.reply.as_ref().filter(|q| q.from.id == user_id && !q.deleted)
            {
                let reply = Some(quote.tombstone());
                *kept = Arc::new(Message { reply, ..Message::clone(kept) });
            }
        }
        for (key, entry) in &mut state.dedup {
            if key.0 == user_id
                && let Dedup::Done(done) = entry
            {
                *done = Arc::new(done.tombstone());
            }
        }
        if touched {
            let event =
                Event::Purged { room: self.meta.code.clone(), user_id: user_id.to_owned(), rev };
            broadcast(state, &event_frame(&event), |_, _| true);
        }
    }

    /// The user id of the member `target` names (`bad_request` if none).
    fn member_named(&self, state: &RoomState, target: &Target) -> Result<String, ErrorBody> {
        let found = match target {
            Target::Id(id) => state.members.get_key_value(id.as_str()),
            Target::Name(name) => {
                state.members.iter().find(|(_, m)| names_clash(&m.user.name, name))
            }
        };
        match (found, target) {
            (Some((id, _)), _) => Ok(id.clone()),
            (None, Target::Id(whom) | Target::Name(whom)) => {
                Err(no_such_member(&self.meta.code, whom))
            }
        }
    }

    /// Refuses a `join` that a ban in force holds off: of `user_id`, or
    /// from `address`. Bans that ran out on the way are forgotten.
    fn check_bans(
        &self,
        state: &mut RoomState,
        user_id: &str,
        address: Option<&str>,
    ) -> Result<(), ErrorBody> {
        if state.bans.is_empty() {
            return Ok(());
        }
        let now = crate::unix_ms();
        let by_address = address.and_then(|a| state.barred.get(a)).cloned();
        for banned in [Some(user_id.to_owned()), by_address].into_iter().flatten() {
            let Some(ban) = state.bans.get(&banned) else { continue };
            if ban.remaining(now).is_some() {
                return Err(ban.refusal(&self.meta.code, now));
            }
            self.lift(state, &banned);
        }
        Ok(())
    }

    /// Forgets the ban of `user_id` (and the addresses it barred), in the
    /// store too; whether there was one.
    fn lift(&self, state: &mut RoomState, user_id: &str) -> bool {
        let Some(ban) = state.bans.remove(user_id) else { return false };
        for address in &ban.addrs {
            if state.barred.get(address).is_some_and(|id| id == user_id) {
                state.barred.remove(address);
            }
        }
        if let Some(persister) = &self.persister {
            let write = Write::Unban { room: self.meta.code.clone(), user_id: user_id.to_owned() };
            if persister.try_queue(Job::Write(write)).is_err() {
                tracing::warn!(room = self.meta.code, "lifted ban not stored: storage is busy");
            }
        }
        true
    }

    /// Puts `ban` in force (replacing one of the same user), as a stored
    /// room is loaded or a ban is made.
    fn bar(state: &mut RoomState, ban: Ban) {
        if let Some(old) = state.bans.remove(&ban.user.id) {
            for address in &old.addrs {
                state.barred.remove(address);
            }
        }
        for address in &ban.addrs {
            state.barred.insert(address.clone(), ban.user.id.clone());
        }
        state.bans.insert(ban.user.id.clone(), ban);
    }

    /// The bans a stored room had, as it is loaded (those run out are left
    /// behind).
    pub fn load_bans(&self, bans: Vec<Ban>) {
        let now = crate::unix_ms();
        let mut state = self.state.lock();
        for ban in bans.into_iter().filter(|b| b.remaining(now).is_some()) {
            Self::bar(&mut state, ban);
        }
    }

    /// Removes the member `target` on behalf of `actor` (through the
    /// connection `conn`) as `removal` says: the owner removes anyone else,
    /// a moderator a plain member. Their connections here get `closed`,
    /// the others a `leave` (with the removal's reason); a join of theirs
    /// (or from their addresses, for an address ban) is refused while the
    /// ban holds. Returns the ban and, if the target lost a role, the
    /// roles after it, to be stored.
    ///
    /// # Errors
    ///
    /// `not_member` if the connection has not joined, `forbidden` if the
    /// actor may not remove the target, `bad_request` for a target that is
    /// not a member, the actor themselves, or a room with too many bans.
    pub fn kick(
        &self,
        conn: u64,
        actor: &str,
        target: &Target,
        removal: Removal,
    ) -> Result<(Ban, Option<Roles>), ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.closed || !is_joined(state, actor, conn) {
            return Err(not_member(&self.meta.code));
        }
        let actor_role = state.roles.get(actor).copied().unwrap_or(Role::Member);
        if actor_role == Role::Member {
            return Err(may_not_kick(
                &self.meta.code,
                "only the owner and moderators remove members",
            ));
        }
        let target_id = self.member_named(state, target)?;
        if target_id == actor {
            return Err(crate::frames::bad(format!(
                "to leave room {}, send leave",
                self.meta.code
            )));
        }
        match state.roles.get(&target_id) {
            Some(Role::Owner) => {
                return Err(may_not_kick(&self.meta.code, "nobody removes the owner"));
            }
            Some(Role::Moderator) if actor_role != Role::Owner => {
                return Err(may_not_kick(&self.meta.code, "only the owner removes a moderator"));
            }
            _ => {}
        }
        let now = crate::unix_ms();
        if state.bans.len() >= BANS_MAX && !state.bans.contains_key(&target_id) {
            let expired: Vec<String> = state
                .bans
                .iter()
                .filter(|(_, b)| b.remaining(now).is_none())
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                self.lift(state, &id);
            }
            if state.bans.len() >= BANS_MAX {
                return Err(crate::frames::bad(format!(
                    "room {} has {BANS_MAX} bans, the most it keeps; lift some first",
                    self.meta.code
                )));
            }
        }
        let member = &state.members[&target_id];
        let ban = Ban {
            user: member.user.clone(),
            by: state.members[actor].user.clone(),
            reason: removal.reason,
            until: removal.ban.map(|d| now + u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)),
            addrs: if removal.address { member.addrs.clone() } else { Vec::new() },
        };
        // Straight into the outboxes: a connection still joining would
        // otherwise hold the notice back, and lose it with the seat.
        let frame = event_frame(&Event::Closed {
            room: self.meta.code.clone(),
            reason: removal.reason.as_str().into(),
        });
        for listener in &member.conns {
            listener.outbox.push(frame.clone());
        }
        Self::bar(state, ban.clone());
        // A moderator removed is a moderator no more, and the room is told.
        let mut roles = None;
        if state.roles.remove(&target_id).is_some() {
            let user = state.members[&target_id].user.clone();
            let role = Role::Member;
            let frame = event_frame(&Event::Role { room: self.meta.code.clone(), user, role });
            broadcast(state, &frame, |u, _| u.id != target_id);
            roles = Some(state.roles.clone());
        }
        self.remove_member(state, &target_id, removal.reason);
        Ok((ban, roles))
    }

    /// Lifts the ban of `user_id`, on behalf of `actor`, the owner or a
    /// moderator.
    ///
    /// # Errors
    ///
    /// `not_member` if the connection has not joined, `forbidden` for a
    /// plain member, `not_found` if no ban of the user is in force.
    pub fn unban(&self, conn: u64, actor: &str, user_id: &str) -> Result<(), ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        self.check_moderator(state, conn, actor, "only the owner and moderators lift bans")?;
        let now = crate::unix_ms();
        let in_force = state.bans.get(user_id).is_some_and(|b| b.remaining(now).is_some());
        if let Some(ban) = state.bans.get(user_id) {
            self.may_lift(state, actor, &ban.by.id)?;
        }
        self.lift(state, user_id);
        match in_force {
            true => Ok(()),
            false => Err(crate::frames::no_ban(&self.meta.code, user_id)),
        }
    }

    /// The bans in force, for `actor`, the owner or a moderator.
    ///
    /// # Errors
    ///
    /// `not_member` if the connection has not joined, `forbidden` for a
    /// plain member.
    pub fn bans(&self, conn: u64, actor: &str) -> Result<Vec<Ban>, ErrorBody> {
        let state = self.state.lock();
        self.check_moderator(&state, conn, actor, "only the owner and moderators see bans")?;
        let now = crate::unix_ms();
        Ok(state.bans.values().filter(|b| b.remaining(now).is_some()).cloned().collect())
    }

    /// That `actor` may lift a ban or mute made by `by`: the owner lifts
    /// any, a moderator only those the owner did not make.
    fn may_lift(&self, state: &RoomState, actor: &str, by: &str) -> Result<(), ErrorBody> {
        let owner = |id: &str| state.roles.get(id) == Some(&Role::Owner);
        if !owner(actor) && owner(by) {
            return Err(may_not_kick(&self.meta.code, "only the owner lifts what the owner did"));
        }
        Ok(())
    }

    /// That `actor`, through `conn`, is in the room as its owner or a
    /// moderator.
    fn check_moderator(
        &self,
        state: &RoomState,
        conn: u64,
        actor: &str,
        why: &str,
    ) -> Result<(), ErrorBody> {
        if state.closed || !is_joined(state, actor, conn) {
            return Err(not_member(&self.meta.code));
        }
        if !state.roles.contains_key(actor) {
            return Err(may_not_kick(&self.meta.code, why));
        }
        Ok(())
    }

    /// Gives the member `target` `role`, on behalf of `actor` (through the
    /// connection `conn`), who must own the room; `owner` hands the room
    /// over, the old owner becoming a moderator. Every member is told of
    /// each change. Returns the roles after it, to be stored.
    ///
    /// # Errors
    ///
    /// `not_member` if the connection has not joined, `forbidden` if the
    /// actor is not the owner, `bad_request` for a target that is not a
    /// member, or the owner themselves.
    pub fn set_role(
        &self,
        conn: u64,
        actor: &str,
        target: &Target,
        role: Role,
    ) -> Result<Roles, ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.closed || !is_joined(state, actor, conn) {
            return Err(not_member(&self.meta.code));
        }
        if state.roles.get(actor) != Some(&Role::Owner) {
            return Err(owner_only(&self.meta.code));
        }
        let target_id = self.member_named(state, target)?;
        if target_id == actor {
            return Err(own_role(&self.meta.code));
        }
        let target_user = state.members[&target_id].user.clone();
        let mut changes = Vec::new();
        if state.roles.get(&target_id).copied().unwrap_or(Role::Member) != role {
            changes.push((target_user, role));
        }
        if role == Role::Owner {
            changes.push((state.members[actor].user.clone(), Role::Moderator));
        }
        for (user, role) in changes {
            match role {
                Role::Member => state.roles.remove(&user.id),
                role => state.roles.insert(user.id.clone(), role),
            };
            let frame = event_frame(&Event::Role { room: self.meta.code.clone(), user, role });
            broadcast(state, &frame, |_, _| true);
        }
        Ok(state.roles.clone())
    }

    /// Gives the member `target` `role` for the operator (who owns the
    /// boards, and is above every room's owner): `owner` hands a created
    /// room to them (its owner becomes a moderator). Every member is told.
    /// Returns the roles after it, to be stored.
    ///
    /// # Errors
    ///
    /// `not_found` if the room is closed, `bad_request` for a target that
    /// is not a member, or an owner for a board.
    pub fn grant(&self, target: &Target, role: Role) -> Result<Roles, ErrorBody> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(not_found(&self.meta.code));
        }
        if role == Role::Owner && self.meta.board {
            return Err(crate::frames::bad("a board's owner is the operator: name moderators"));
        }
        let target_id = self.member_named(state, target)?;
        let mut changes = Vec::new();
        if state.roles.get(&target_id).copied().unwrap_or(Role::Member) != role {
            changes.push((target_id.clone(), role));
        }
        if role == Role::Owner {
            for (id, held) in &state.roles {
                if *held == Role::Owner && *id != target_id {
                    changes.push((id.clone(), Role::Moderator));
                }
            }
        }
        for (id, role) in changes {
            match role {
                Role::Member => state.roles.remove(&id),
                role => state.roles.insert(id.clone(), role),
            };
            // An owner away from the room is told when they come back (in
            // their join's roles), as every role is.
            if let Some(member) = state.members.get(&id) {
                let user = member.user.clone();
                let frame = event_frame(&Event::Role { room: self.meta.code.clone(), user, role });
                broadcast(state, &frame, |_, _| true);
            }
        }
        Ok(state.roles.clone())
    }

    /// The visible messages of `range`: from the window, and, for a
    /// persistent room, a range older than the window to read from the
    /// store.
    ///
    /// # Errors
    ///
    /// `not_member` if the connection has not joined.
    pub fn read(&self, conn: u64, user_id: &str, range: Range) -> Result<Slice, ErrorBody> {
        let state = self.state.lock();
        if !is_joined(&state, user_id, conn) {
            return Err(not_member(&self.meta.code));
        }
        let mut visibility = state.visibility[user_id];
        // In a public room, which anyone may join and read, a member reads
        // back before their join too.
        if self.meta.public {
            visibility.from = 1;
        }
        Ok(self.slice(&state, user_id, visibility, range.after, range.before, range.limit))
    }

    /// The newest `limit` messages with `after < seq < before` that
    /// `visibility` allows: from the window, and, for a persistent room,
    /// a range older than the window to read from the store.
    fn slice(
        &self,
        state: &RoomState,
        reader: &str,
        visibility: Visibility,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Slice {
        let after = after.max(visibility.from.saturating_sub(1));
        let before =
            before.min(visibility.left_at.map_or(u64::MAX, |last| last + 1)).min(state.durable + 1);
        if limit == 0 || after.saturating_add(1) >= before {
            return Slice::default();
        }
        let mut window: Vec<Message> = state
            .window
            .iter()
            .rev()
            .skip_while(|m| m.seq >= before)
            .take_while(|m| m.seq > after)
            // A shadow-muted member's posts are theirs only.
            .filter(|m| !m.shadow || m.from.id == reader)
            .take(limit)
            .map(|m| Message::clone(m))
            .collect();
        window.reverse();
        let cached_from = state.window.front().map_or(state.durable + 1, |m| m.seq);
        let older_before = before.min(cached_from);
        let fetch = (self.is_persistent()
            && window.len() < limit
            && after.saturating_add(1) < older_before)
            .then_some(Fetch { after, before: older_before, limit: limit - window.len() });
        Slice { window, fetch }
    }

    /// Queues `closed` (reason `shutdown`) for every joined connection.
    /// The server does this for every room before it closes any
    /// connection (see [`Room::close_connections`]), so that a client in
    /// several rooms hears of each of them.
    pub fn announce_shutdown(&self) {
        let mut state = self.state.lock();
        let listeners = state.members.values_mut().flat_map(|m| m.conns.iter_mut());
        crate::fanout::announce_shutdown(&self.meta.code, listeners);
    }

    /// Closes every joined connection with `reason`, after what is queued.
    pub fn close_connections(&self, reason: crate::CloseReason) {
        let state = self.state.lock();
        let listeners = state.members.values().flat_map(|m| m.conns.iter());
        crate::fanout::close_all(listeners, reason);
    }
}

impl Publish for Room {
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The persister wrote `post`: publish it.
    fn commit(&self, post: &PendingPost) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if let Some(cid) = &post.message.cid {
            let key = (post.message.from.id.clone(), cid.clone());
            if let Some(entry) = state.dedup.get_mut(&key) {
                *entry = Dedup::Done(post.message.clone());
            }
        }
        let waiters: Vec<_> = post.waiters.lock().drain(..).collect();
        self.publish(state, &post.message, post.conn, &waiters);
    }

    /// A write failed: forget every `seq` handed out after the last durable
    /// one and start a new epoch, so queued posts of the old one fail.
    fn roll_back(&self, epoch: u64) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.epoch != epoch {
            return;
        }
        state.epoch += 1;
        self.epoch.store(state.epoch, Ordering::Relaxed);
        state.seq = state.durable;
        state.dedup.retain(|_, entry| matches!(entry, Dedup::Done(_)));
        let dedup = &state.dedup;
        state.dedup_order.retain(|key| dedup.contains_key(key));
    }
}

fn remember(state: &mut RoomState, max: usize, key: (String, String), entry: Dedup) {
    state.dedup.insert(key.clone(), entry);
    state.dedup_order.push_back(key);
    if state.dedup_order.len() > max
        && let Some(old) = state.dedup_order.pop_front()
    {
        state.dedup.remove(&old);
    }
}

/// Keeps `address` among a member's latest few.
fn note_address(addrs: &mut Vec<String>, address: &str) {
    const KEPT: usize = 4;
    if let Some(i) = addrs.iter().position(|a| a == address) {
        addrs.remove(i);
    }
    addrs.push(address.to_owned());
    if addrs.len() > KEPT {
        addrs.remove(0);
    }
}

fn names_clash(a: &str, b: &str) -> bool {
    crate::limits::name_key(a) == crate::limits::name_key(b)
}

fn is_joined(state: &RoomState, user_id: &str, conn: u64) -> bool {
    state.members.get(user_id).is_some_and(|m| m.conns.iter().any(|c| c.conn == conn))
}

/// Pushes `frame` to every connection for which `to(user, conn)` holds;
/// returns how many it was pushed to. Allocates nothing: each push is a
/// reference count on the shared frame and a non-blocking queue send.
fn broadcast(state: &mut RoomState, frame: &Bytes, to: impl Fn(&User, &Listener) -> bool) -> u64 {
    let mut pushed = 0;
    for member in state.members.values_mut() {
        for conn in &mut member.conns {
            if to(&member.user, conn) {
                conn.push(frame);
                pushed += 1;
            }
        }
    }
    pushed
}

/// Notes a change of message `seq`; its `rev`.
/// Notes one change of every message of `seqs` (an operator's purge),
/// under one change number; the room's change number now.
fn note_changes(state: &mut RoomState, seqs: &[u64], kept: usize) -> u64 {
    state.rev += 1;
    let rev = state.rev;
    let changed: std::collections::HashSet<u64> = seqs.iter().copied().collect();
    state.changes.retain(|(_, s)| !changed.contains(s));
    state.changes.extend(seqs.iter().map(|&s| (rev, s)));
    while state.changes.len() > kept {
        if let Some((old, _)) = state.changes.pop_front() {
            state.forgotten = state.forgotten.max(old);
        }
    }
    rev
}

fn note_change(state: &mut RoomState, seq: u64, kept: usize) -> u64 {
    state.rev += 1;
    // One entry a message, its latest: many reactions to one message do
    // not push older changes out.
    state.changes.retain(|&(_, s)| s != seq);
    state.changes.push_back((state.rev, seq));
    while state.changes.len() > kept {
        if let Some((rev, _)) = state.changes.pop_front() {
            state.forgotten = state.forgotten.max(rev);
        }
    }
    state.rev
}

/// Whether a message is other than it was posted: edited, deleted,
/// reacted to, or quoting a deleted message.
fn is_changed(message: &Message) -> bool {
    message.edited.is_some()
        || message.deleted
        || !message.reactions.is_empty()
        || message.reply.as_ref().is_some_and(|q| q.deleted)
}

/// The messages up to `seq` that changed after `rev` and that `reader`
/// may see, as they are now, oldest first: those the window still holds.
/// A `rev` ahead of the room's (its count started again) gets every change
/// noted.
fn changed_since(
    state: &RoomState,
    reader: &str,
    visibility: Visibility,
    seq: u64,
    rev: u64,
) -> Vec<Message> {
    let first = state.window.front().map_or(u64::MAX, |m| m.seq);
    let visible = |m: &&Arc<Message>| {
        m.seq <= seq && m.seq >= visibility.from && (!m.shadow || m.from.id == reader)
    };
    // A change number the room cannot vouch for (ahead of its own: the
    // count started again; or older than the changes it remembers): every
    // changed message the window holds, as it is now.
    if rev > state.rev || rev < state.forgotten {
        return state
            .window
            .iter()
            .filter(visible)
            .filter(|m| is_changed(m))
            .map(|m| Message::clone(m))
            .collect();
    }
    let mut seqs: Vec<u64> = state
        .changes
        .iter()
        .filter(|&&(r, s)| r > rev && s <= seq && s >= visibility.from)
        .map(|&(_, s)| s)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs.into_iter()
        .filter(|&s| s >= first)
        .filter_map(|s| state.window.get(usize::try_from(s - first).ok()?))
        .filter(visible)
        .map(|m| Message::clone(m))
        .collect()
}

/// An edit refused as past the edit window (as a shadow-muted member's
/// is).
fn edit_over(code: &str, seq: u64) -> ErrorBody {
    ErrorBody::new(
        confab_proto::ErrorCode::Forbidden,
        format!("message {seq} of room {code} may no longer be edited"),
    )
}

/// A change refused for a message older than the room keeps at hand.
fn too_old(code: &str, seq: u64, window: usize) -> ErrorBody {
    ErrorBody::new(
        confab_proto::ErrorCode::Forbidden,
        format!(
            "message {seq} of room {code} is not among its newest {window}, which alone may be edited or reacted to"
        ),
    )
}

fn not_member(code: &str) -> ErrorBody {
    ErrorBody::new(confab_proto::ErrorCode::NotMember, format!("you have not joined room {code}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::ErrorCode;

    fn room(retention: Retention, seats: usize, backlog: u32) -> Arc<Room> {
        let meta = RoomSpec {
            code: "ROOM22".into(),
            title: "t".into(),
            capacity: None,
            retention,
            backlog,
            public: false,
            created: "2026-01-01T00:00:00Z".into(),
            board: false,
        };
        Arc::new(Room::new(
            meta,
            RoomLimits { seats, window: 100, dedup: 100 },
            None,
            0,
            Roles::new(),
        ))
    }

    fn user(name: &str) -> User {
        User { id: format!("u_{name}"), name: name.into() }
    }

    fn join(room: &Room, conn: u64, who: &User) -> Result<Joined, ErrorBody> {
        let (outbox, _receiver) = Outbox::new(64);
        let joined = room.join(conn, &outbox, who, None, 100, None, false, None)?;
        room.activate(conn);
        Ok(joined)
    }

    fn post(room: &Arc<Room>, conn: u64, who: &User, body: &str) {
        let draft = Draft {
            bot: false,
            reply: None,
            body: body.into(),
            subject: None,
            cid: None,
            ts: "t".into(),
        };
        room.post(conn, who, draft, None).unwrap();
    }

    fn all(limit: usize) -> Range {
        Range { after: 0, before: u64::MAX, limit }
    }

    fn seqs(slice: Slice) -> Vec<u64> {
        slice.window.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_joiner_sees_the_backlog_and_what_follows_and_nothing_after_leaving() {
        let room = room(Retention::Persistent, 10, 2);
        let (ann, bob) = (user("Ann"), user("Bob"));
        join(&room, 1, &ann).unwrap();
        for n in 1..=5 {
            post(&room, 1, &ann, &format!("m{n}"));
        }
        let joined = join(&room, 2, &bob).unwrap();
        let seen: Vec<u64> = joined.result.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seen, [4, 5], "the backlog of two");
        post(&room, 1, &ann, "m6");
        assert_eq!(seqs(room.read(2, &bob.id, all(50)).unwrap()), [4, 5, 6]);
        assert_eq!(room.leave(2, &bob.id).unwrap(), Departure::Left);
        post(&room, 1, &ann, "m7");
        // Back soon enough that the backlog covers the absence: one range.
        join(&room, 3, &bob).unwrap();
        assert_eq!(seqs(room.read(3, &bob.id, all(50)).unwrap()), [4, 5, 6, 7]);
        assert!(
            room.read(3, &bob.id, Range { after: 2, before: 4, limit: 1 })
                .unwrap()
                .window
                .is_empty(),
            "before the range"
        );
    }

    #[test]
    fn a_drop_holds_the_seat_for_grace_and_a_rejoin_overtakes_its_timer() {
        let room = room(Retention::Ephemeral, 2, 10);
        let (ann, bob, cy) = (user("Ann"), user("Bob"), user("Cy"));
        join(&room, 1, &ann).unwrap();
        join(&room, 2, &bob).unwrap();
        let Departure::Grace { epoch, .. } = room.disconnect(2, &bob.id, true) else {
            panic!("grace")
        };
        assert!(room.holds_seat(&bob.id));
        let full = join(&room, 3, &cy).err().map(|e| e.code);
        assert_eq!(full, Some(ErrorCode::RoomFull), "seat held");
        // Bob comes back: the old timer finds nothing to do.
        join(&room, 4, &bob).unwrap();
        assert_eq!(room.expire_grace(&bob.id, epoch), Departure::Quiet);
        assert!(room.holds_seat(&bob.id));
        // Dropped again, and the grace ends: the seat is free.
        let Departure::Grace { epoch, .. } = room.disconnect(4, &bob.id, true) else {
            panic!("grace")
        };
        assert_eq!(room.expire_grace(&bob.id, epoch), Departure::Left);
        join(&room, 5, &cy).unwrap();
    }

    #[test]
    fn an_ephemeral_room_ends_with_its_last_member_and_a_resume_takes_no_new_seat() {
        let room = room(Retention::Ephemeral, 10, 10);
        let (ann, bob) = (user("Ann"), user("Bob"));
        join(&room, 1, &ann).unwrap();
        let (outbox, _receiver) = Outbox::new(8);
        let resumed =
            room.join(2, &outbox, &bob, Some(Since { seq: 0, rev: None }), 100, None, true, None);
        assert_eq!(resumed.err().map(|e| e.code), Some(ErrorCode::NotFound), "no seat to resume");
        assert!(!room.holds_seat(&bob.id));
        assert_eq!(room.leave(1, &ann.id).unwrap(), Departure::Destroyed);
        assert!(!room.holds_seat(&ann.id));
        assert_eq!(join(&room, 3, &ann).err().map(|e| e.code), Some(ErrorCode::NotFound));
    }

    #[test]
    fn a_member_coming_back_under_another_member_s_name_keeps_their_own() {
        let room = room(Retention::Ephemeral, 10, 10);
        let (ann, bob) = (user("Ann"), user("Bob"));
        join(&room, 1, &ann).unwrap();
        join(&room, 2, &bob).unwrap();
        let disguised = User { id: bob.id.clone(), name: "ann\u{200B}".into() };
        let joined = join(&room, 3, &disguised).unwrap();
        let mut names: Vec<String> = joined.result.members.iter().map(|m| m.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["Ann", "Bob"]);
        // A new name nobody holds is taken.
        let renamed = User { id: bob.id.clone(), name: "Robert".into() };
        let joined = join(&room, 4, &renamed).unwrap();
        assert!(joined.result.members.iter().any(|m| m.name == "Robert"));
    }
}
