//! A node's view of a cluster room: the room's members and its event
//! order as of the last event applied, and this node's connections in it.
//!
//! Events are applied in `ev` order. One that comes early is held back
//! until those before it have come (or have been read back); each applied
//! event is serialized once and pushed to every local connection that
//! joined before it. A connection that joined after some applied events
//! gets them from the recent ones kept here, so that it misses nothing
//! between its join's snapshot and its first live event.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use confab_proto::{Event, LeaveReason, Message, Retention, Role, RoomInfo, User};
use parking_lot::Mutex;

use confab_core::Outbox;
use confab_core::fanout::{self, Listener};
use confab_core::frames::{event_frame, message_event, message_reply};

use super::{ClusterJoin, close_lost};

/// Applied events kept for connections that join just after them.
const RECENT: usize = 1024;
/// Events held back waiting for an earlier one; past this the mirror gives
/// up and its connections resume.
const HOLDBACK_MAX: usize = 8192;

/// One event as published by the room script.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub room: String,
    pub ev: u64,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// `shadow`: a shadow-muted member's, for their own connections only.
    Message {
        origin: String,
        conn: u64,
        reply: Option<i64>,
        json: Bytes,
        shadow: bool,
    },
    Join(User),
    Leave(LeaveReason, User),
    Typing(bool, User),
    Role(Role, User),
    Locked(bool, User),
    /// Muted (or not), by whom.
    Muted(bool, User, User),
    Slow(u32, User),
    Title(String, User),
    /// Deleted: seq, rev, by whom, and the author if only they see it.
    Deleted(u64, u64, User, Option<String>),
    /// Edited: rev, the message now, and whether only its author sees it.
    Edited(u64, Box<Message>, bool),
    /// A reaction: seq, rev, on, emoji, by whom, and the message's author
    /// if only they see it.
    Reacted(u64, u64, bool, String, User, Option<String>),
    /// The operator ended the room.
    Closed,
    Notice(String),
    /// The user, and the room's change number after, if it held any of
    /// their messages.
    Purged(String, Option<u64>),
}

/// Reads `"C ev kind …"`; see `room.lua`.
pub(crate) fn parse_envelope(payload: &[u8]) -> Option<Envelope> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(4, ' ');
    let room = parts.next()?.to_owned();
    let ev = parts.next()?.parse().ok()?;
    let kind = parts.next()?;
    let rest = parts.next()?;
    let kind = match kind {
        kind @ ("m" | "s") => {
            let mut parts = rest.splitn(4, ' ');
            let origin = parts.next()?.to_owned();
            let conn = parts.next()?.parse().ok()?;
            let reply = parts.next()?.parse().ok();
            let json = parts.next()?;
            Kind::Message {
                origin,
                conn,
                reply,
                json: Bytes::copy_from_slice(json.as_bytes()),
                shadow: kind == "s",
            }
        }
        "j" => Kind::Join(serde_json::from_str(rest).ok()?),
        "l" => {
            let (reason, user) = rest.split_once(' ')?;
            let reason = match reason {
                "left" => LeaveReason::Left,
                "kicked" => LeaveReason::Kicked,
                "banned" => LeaveReason::Banned,
                _ => LeaveReason::Disconnected,
            };
            Kind::Leave(reason, serde_json::from_str(user).ok()?)
        }
        "t" => {
            let (active, user) = rest.split_once(' ')?;
            Kind::Typing(active == "1", serde_json::from_str(user).ok()?)
        }
        "k" => {
            let (locked, user) = rest.split_once(' ')?;
            Kind::Locked(locked == "1", serde_json::from_str(user).ok()?)
        }
        "r" => {
            let (role, user) = rest.split_once(' ')?;
            Kind::Role(Role::parse(role)?, serde_json::from_str(user).ok()?)
        }
        // "u 1|0 <by JSON>\t<user JSON>" (JSON escapes every tab).
        "u" => {
            let (muted, users) = rest.split_once(' ')?;
            let (by, user) = users.split_once('\t')?;
            let (by, user) = (serde_json::from_str(by).ok()?, serde_json::from_str(user).ok()?);
            Kind::Muted(muted == "1", user, by)
        }
        "x" => Kind::Closed,
        "n" => Kind::Notice(rest.to_owned()),
        "p" => match rest.split_once(' ') {
            Some((user_id, rev)) => Kind::Purged(user_id.to_owned(), Some(rev.parse().ok()?)),
            None => Kind::Purged(rest.to_owned(), None),
        },
        // "d <seq> <rev> <author or -> <by JSON>"
        "d" => {
            let mut parts = rest.splitn(4, ' ');
            let seq = parts.next()?.parse().ok()?;
            let rev = parts.next()?.parse().ok()?;
            let only = Some(parts.next()?).filter(|a| *a != "-").map(str::to_owned);
            Kind::Deleted(seq, rev, serde_json::from_str(parts.next()?).ok()?, only)
        }
        // "e <rev> <m|s> <message JSON>"
        "e" => {
            let mut parts = rest.splitn(3, ' ');
            let rev = parts.next()?.parse().ok()?;
            let shadow = parts.next()? == "s";
            Kind::Edited(rev, serde_json::from_str(parts.next()?).ok()?, shadow)
        }
        // "a <seq> <rev> <1|0> <author or -> <emoji> <user JSON>"
        "a" => {
            let mut parts = rest.splitn(6, ' ');
            let seq = parts.next()?.parse().ok()?;
            let rev = parts.next()?.parse().ok()?;
            let on = parts.next()? == "1";
            let only = Some(parts.next()?).filter(|a| *a != "-").map(str::to_owned);
            let emoji = parts.next()?.to_owned();
            let user = serde_json::from_str(parts.next()?).ok()?;
            Kind::Reacted(seq, rev, on, emoji, user, only)
        }
        "w" => {
            let (seconds, user) = rest.split_once(' ')?;
            Kind::Slow(seconds.parse().ok()?, serde_json::from_str(user).ok()?)
        }
        // "h <user JSON>\t<title>" (a title holds no control character).
        "h" => {
            let (user, title) = rest.split_once('\t')?;
            Kind::Title(title.to_owned(), serde_json::from_str(user).ok()?)
        }
        _ => return None,
    };
    Some(Envelope { room, ev, kind })
}

/// An event as applied: its frame, serialized once, and who gets it.
struct Applied {
    ev: u64,
    frame: Bytes,
    to: To,
    /// A change of message `seq` (an edit, delete or reaction): only for
    /// those who may see that message. 0: not a change.
    seq: u64,
}

enum To {
    /// A message: every connection (or, a shadow-muted member's, the
    /// `author`'s only), but the poster gets the reply.
    Message { origin: String, conn: u64, reply: Option<Bytes>, author: Option<String> },
    /// A join or typing: every connection but the user's own.
    Others(String),
    /// A leave: everyone.
    All,
    /// A change of a shadow-muted member's message: theirs only.
    Only(String),
}

struct Entry {
    user: String,
    listener: Listener,
    /// The last event the join's snapshot included.
    after: u64,
    /// The first message the user may see (0 in a public room: all).
    from: u64,
    incarnation: String,
}

impl Entry {
    fn id(&self) -> u64 {
        self.listener.conn
    }

    fn deliver(&mut self, applied: &Applied, me: &str) -> bool {
        deliver(&mut self.listener, &self.user, (self.after, self.from), applied, me)
    }
}

/// Gives `listener` (a connection of `user` whose join's snapshot ended
/// at event `after`, who sees messages from `from` on) an applied event, if it is for it: the poster's own
/// message comes as its reply. True if the event was pushed.
fn deliver(
    listener: &mut Listener,
    user: &str,
    (after, from): (u64, u64),
    applied: &Applied,
    me: &str,
) -> bool {
    if applied.ev != 0 && applied.ev <= after {
        return false;
    }
    // A change of a message from before the user's visible range is not
    // theirs to hear of.
    if applied.seq != 0 && applied.seq < from {
        return false;
    }
    match &applied.to {
        To::Message { origin, conn, reply, author } => {
            if *conn == listener.conn && origin == me {
                if let Some(reply) = reply {
                    listener.push(reply);
                }
                return false;
            }
            if author.as_deref().is_some_and(|author| author != user) {
                return false;
            }
        }
        To::Others(id) if id == user => return false,
        To::Only(id) if id != user => return false,
        To::Others(_) | To::All | To::Only(_) => {}
    }
    listener.push(&applied.frame);
    true
}

#[derive(Default)]
struct State {
    /// Whether `delivered` and `members` are known (after the first join).
    synced: bool,
    delivered: u64,
    holdback: BTreeMap<u64, Envelope>,
    filling: bool,
    recent: VecDeque<Applied>,
    entries: Vec<Entry>,
    members: HashMap<String, User>,
    joining: usize,
    /// Connections here whose user was removed from the room (`kick`):
    /// their seats are stale, and their departures are not to be counted.
    kicked: HashSet<u64>,
    /// Users removed, the event that removed them and why: a join of
    /// theirs whose snapshot came before it was undone by it.
    kicked_users: HashMap<String, (u64, LeaveReason)>,
}

pub(crate) struct Mirror {
    code: String,
    meta: OnceLock<RoomInfo>,
    members: AtomicUsize,
    state: Mutex<State>,
}

impl Mirror {
    pub fn new(code: &str) -> Mirror {
        Mirror {
            code: code.to_owned(),
            meta: OnceLock::new(),
            members: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
        }
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn persistent(&self) -> bool {
        self.meta.get().is_some_and(|m| m.retention == Retention::Persistent)
    }

    pub fn begin_join(&self) {
        self.state.lock().joining += 1;
    }

    pub fn join_failed(&self) {
        self.state.lock().joining -= 1;
    }

    pub fn unused(&self) -> bool {
        let state = self.state.lock();
        state.entries.is_empty() && state.joining == 0
    }

    /// Adds a connection whose join the cluster answered with `join`. The
    /// connection is pending until [`Mirror::activate`].
    /// Returns the range of events `(after, upto]` the connection still
    /// needs, if the mirror cannot give them (see [`Mirror::catch_up`]).
    #[must_use]
    pub fn add(
        &self,
        join: &ClusterJoin,
        user: &str,
        conn: u64,
        outbox: &Outbox,
        me: &str,
    ) -> Option<(u64, u64)> {
        let _ = self.meta.set(join.info.clone());
        let mut guard = self.state.lock();
        let state = &mut *guard;
        state.joining -= 1;
        state.kicked.remove(&conn);
        if !state.synced {
            state.synced = true;
            state.delivered = join.ev;
            state.members = join.members.iter().map(|u| (u.id.clone(), u.clone())).collect();
            self.members.store(state.members.len(), Ordering::Relaxed);
            let held = std::mem::take(&mut state.holdback);
            state.holdback = held.into_iter().filter(|(ev, _)| *ev > join.ev).collect();
            self.drain(state, me);
        }
        state.entries.retain(|e| e.id() != conn);
        if let Some(&(ev, reason)) = state.kicked_users.get(user) {
            if ev > join.ev {
                // Removed after this join's snapshot (the kick ran between
                // the join and now): the seat is gone already.
                outbox.push(event_frame(&Event::Closed {
                    room: self.code.clone(),
                    reason: reason.as_str().into(),
                }));
                state.kicked.insert(conn);
                return None;
            }
            state.kicked_users.remove(user);
        }
        let mut entry = Entry {
            user: user.to_owned(),
            listener: Listener::pending(conn, outbox),
            after: join.ev,
            from: if join.info.public { 0 } else { join.from },
            incarnation: me.to_owned(),
        };
        let mut missing = None;
        if state.delivered > join.ev {
            let covered = state.recent.front().is_some_and(|a| a.ev <= join.ev + 1);
            if covered {
                for applied in state.recent.iter().filter(|a| a.ev > join.ev) {
                    entry.deliver(applied, me);
                }
            } else {
                // Another join of this node synced the mirror at a later
                // event than this join's snapshot: the events in between
                // are read back for this connection (see `catch_up`).
                missing = Some((join.ev, state.delivered));
            }
        }
        state.entries.push(entry);
        missing
    }

    /// Gives a pending connection the events `(after, upto]` that `add`
    /// found missing, read back from the room's recent events, ahead of
    /// what it holds. Closes it if they are not all there.
    pub fn catch_up(&self, conn: u64, after: u64, upto: u64, envelopes: Vec<Envelope>, me: &str) {
        let mut state = self.state.lock();
        let Some(entry) = state.entries.iter_mut().find(|e| e.id() == conn) else { return };
        let mut wanted = after + 1;
        let mut frames = Vec::new();
        for envelope in envelopes {
            if envelope.ev != wanted || envelope.ev > upto {
                continue;
            }
            wanted += 1;
            let applied = self.render(envelope, me);
            let Entry { user, listener, after, from, .. } = &mut *entry;
            frames.extend(listener.collect(|listener| {
                deliver(listener, user, (*after, *from), &applied, me);
            }));
        }
        if wanted != upto + 1 {
            close_lost(&entry.listener.outbox);
            return;
        }
        entry.listener.prepend(frames);
    }

    /// Releases the events held for a connection since its join.
    pub fn activate(&self, conn: u64) {
        let mut state = self.state.lock();
        if let Some(entry) = state.entries.iter_mut().find(|e| e.id() == conn) {
            entry.listener.activate();
        }
    }

    /// Removes a connection; its user and the incarnation it joined under.
    /// Whether `conn`'s user was removed from the room (`kick`) while it was
    /// here: its seat is stale.
    pub fn was_kicked(&self, conn: u64) -> bool {
        self.state.lock().kicked.contains(&conn)
    }

    /// Forgets that `conn` was removed (it joins again, or goes).
    pub fn forget_kicked(&self, conn: u64) {
        self.state.lock().kicked.remove(&conn);
    }

    pub fn remove(&self, conn: u64) -> Option<(String, String)> {
        let mut state = self.state.lock();
        let i = state.entries.iter().position(|e| e.id() == conn)?;
        let entry = state.entries.swap_remove(i);
        Some((entry.user, entry.incarnation))
    }

    /// Takes an event off the channel. True if events before it are
    /// missing and must be read back.
    pub fn receive(&self, envelope: Envelope, me: &str) -> bool {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if envelope.ev == 0 {
            let closed = matches!(envelope.kind, Kind::Closed);
            if state.synced || closed {
                let applied = self.applied(state, envelope, me);
                for entry in &mut state.entries {
                    entry.deliver(&applied, me);
                }
            }
            if closed {
                // Every seat here is gone with the room: stale, as a
                // removed member's are (their departures count nothing).
                let ids: Vec<u64> = state.entries.drain(..).map(|e| e.id()).collect();
                state.kicked.extend(ids);
                state.members.clear();
                self.members.store(0, Ordering::Relaxed);
            }
            return false;
        }
        if state.synced && envelope.ev <= state.delivered {
            return false;
        }
        state.holdback.insert(envelope.ev, envelope);
        if !state.synced {
            return false;
        }
        self.drain(state, me);
        if state.holdback.len() > HOLDBACK_MAX {
            self.lose(state);
            return false;
        }
        !state.holdback.is_empty() && !state.filling
    }

    /// Starts reading back missed events: those after the returned `ev`.
    pub fn start_fill(&self) -> Option<u64> {
        let mut state = self.state.lock();
        if !state.synced || state.filling {
            return None;
        }
        state.filling = true;
        Some(state.delivered)
    }

    pub fn end_fill(&self, envelopes: Vec<Envelope>, me: &str) {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        state.filling = false;
        for envelope in envelopes {
            if envelope.ev > state.delivered {
                state.holdback.insert(envelope.ev, envelope);
            }
        }
        self.drain(state, me);
    }

    /// The mirror cannot be kept in step: its connections are closed and
    /// resume (on this node or another).
    pub fn lost(&self) {
        let mut state = self.state.lock();
        self.lose(&mut state);
    }

    fn lose(&self, state: &mut State) {
        for entry in state.entries.drain(..) {
            close_lost(&entry.listener.outbox);
        }
        state.holdback.clear();
        state.synced = false;
    }

    fn drain(&self, state: &mut State, me: &str) {
        while let Some(envelope) = state.holdback.remove(&(state.delivered + 1)) {
            state.delivered = envelope.ev;
            let kicked = match &envelope.kind {
                Kind::Leave(reason, user) if reason.removed() => Some((user.id.clone(), *reason)),
                _ => None,
            };
            let applied = self.applied(state, envelope, me);
            let mut delivered = 0u64;
            for entry in &mut state.entries {
                delivered += u64::from(entry.deliver(&applied, me));
            }
            if matches!(applied.to, To::Message { .. }) {
                metrics::counter!(confab_core::metric::DELIVERIES).increment(delivered);
            }
            if let Some((user, reason)) = kicked {
                state.kicked_users.insert(user.clone(), (state.delivered, reason));
                // The removed user's connections here: told, and let go.
                let (out, stay): (Vec<Entry>, Vec<Entry>) =
                    state.entries.drain(..).partition(|e| e.user == user);
                state.entries = stay;
                let mut out = out;
                fanout::announce_closed(
                    &self.code,
                    reason.as_str(),
                    out.iter_mut().map(|e| &mut e.listener),
                );
                state.kicked.extend(out.iter().map(Entry::id));
            }
            state.recent.push_back(applied);
            if state.recent.len() > RECENT {
                state.recent.pop_front();
            }
        }
    }

    /// Updates the member list for an event and serializes it once.
    fn applied(&self, state: &mut State, envelope: Envelope, me: &str) -> Applied {
        match &envelope.kind {
            Kind::Join(user) => {
                state.members.insert(user.id.clone(), user.clone());
            }
            Kind::Leave(_, user) => {
                state.members.remove(&user.id);
            }
            Kind::Message { .. }
            | Kind::Typing(..)
            | Kind::Role(..)
            | Kind::Locked(..)
            | Kind::Muted(..)
            | Kind::Slow(..)
            | Kind::Title(..)
            | Kind::Deleted(..)
            | Kind::Edited(..)
            | Kind::Reacted(..)
            | Kind::Closed
            | Kind::Notice(..)
            | Kind::Purged(..) => {}
        }
        self.members.store(state.members.len(), Ordering::Relaxed);
        self.render(envelope, me)
    }

    /// Serializes an event, and says who gets it.
    fn render(&self, envelope: Envelope, me: &str) -> Applied {
        let room = self.code.clone();
        let seq = match &envelope.kind {
            Kind::Deleted(seq, ..) | Kind::Reacted(seq, ..) => *seq,
            Kind::Edited(_, message, _) => message.seq,
            _ => 0,
        };
        let (frame, to) = match envelope.kind {
            Kind::Message { origin, conn, reply, json, shadow } => {
                let reply = reply.filter(|_| origin == me).map(|id| message_reply(id, &json));
                // (An author that cannot be read: nobody else.)
                let author = shadow.then(|| author_of(&json).unwrap_or_default());
                (message_event(&json), To::Message { origin, conn, reply, author })
            }
            Kind::Join(user) => {
                let id = user.id.clone();
                (event_frame(&Event::Join { room, user }), To::Others(id))
            }
            Kind::Leave(reason, user) if reason.removed() => {
                let id = user.id.clone();
                (event_frame(&Event::Leave { room, user, reason }), To::Others(id))
            }
            Kind::Leave(reason, user) => {
                (event_frame(&Event::Leave { room, user, reason }), To::All)
            }
            Kind::Typing(active, user) => {
                let id = user.id.clone();
                (event_frame(&Event::Typing { room, user, active }), To::Others(id))
            }
            Kind::Role(role, user) => (event_frame(&Event::Role { room, user, role }), To::All),
            Kind::Locked(locked, user) => {
                (event_frame(&Event::Locked { room, locked, user }), To::All)
            }
            Kind::Muted(muted, user, by) => {
                (event_frame(&Event::Muted { room, user, muted, by }), To::All)
            }
            Kind::Slow(seconds, user) => {
                (event_frame(&Event::Slow { room, seconds, user }), To::All)
            }
            Kind::Title(title, user) => (event_frame(&Event::Title { room, title, user }), To::All),
            Kind::Deleted(seq, rev, by, only) => {
                let to = only.map_or(To::All, To::Only);
                (event_frame(&Event::Deleted { room, seq, by, rev }), to)
            }
            Kind::Edited(rev, message, shadow) => {
                let to = if shadow { To::Only(message.from.id.clone()) } else { To::All };
                let seq = message.seq;
                (event_frame(&Event::Edited { room, seq, rev, message }), to)
            }
            Kind::Reacted(seq, rev, on, emoji, user, only) => {
                let to = only.map_or(To::All, To::Only);
                (event_frame(&Event::Reacted { room, seq, rev, emoji, user, on }), to)
            }
            Kind::Closed => {
                let reason = "closed".to_owned();
                (event_frame(&Event::Closed { room, reason }), To::All)
            }
            Kind::Notice(text) => (event_frame(&Event::Notice { room, text }), To::All),
            Kind::Purged(user_id, rev) => {
                (event_frame(&Event::Purged { room, user_id, rev }), To::All)
            }
        };
        Applied { ev: envelope.ev, frame, to, seq }
    }

    /// Tells every connection here that the room closes for `reason`, and
    /// closes them (the server is stopping).
    /// Queues `closed` (reason `shutdown`) for every connection here.
    pub fn announce_shutdown(&self) {
        let mut state = self.state.lock();
        let listeners = state.entries.iter_mut().map(|e| &mut e.listener);
        fanout::announce_shutdown(&self.code, listeners);
    }

    /// Closes every connection here with `reason`, after what is queued.
    pub fn close_connections(&self, reason: confab_core::CloseReason) {
        let state = self.state.lock();
        fanout::close_all(state.entries.iter().map(|e| &e.listener), reason);
    }
}

/// The user id of a message's author, from its JSON (whose fields may
/// come in any order: the room script re-encodes a changed message).
fn author_of(json: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Authored {
        from: User,
    }
    serde_json::from_slice::<Authored>(json).ok().map(|m| m.from.id)
}

#[cfg(test)]
mod tests {
    use confab_proto::{Retention, RoomInfo};
    use serde_json::Value;

    use super::*;
    use confab_core::OutboxReceiver;

    const ME: &str = "n1#00000001";

    #[test]
    fn the_author_of_a_message_is_read_whatever_the_order_of_its_fields() {
        let reencoded = br#"{"ts":"t","reply":{"body":"hi","seq":1,"from":{"id":"u_ann","name":"Ann"}},"from":{"name":"Bob","id":"u_bob"},"seq":2}"#;
        assert_eq!(author_of(reencoded).as_deref(), Some("u_bob"));
        assert_eq!(author_of(b"{\"seq\":2}"), None);
        assert_eq!(author_of(b"not json"), None);
    }

    fn info() -> RoomInfo {
        RoomInfo {
            code: "ROOM22".into(),
            title: "t".into(),
            capacity: None,
            retention: Retention::Ephemeral,
            backlog: 10,
            public: false,
            members: 0,
            created: "2026-01-01T00:00:00Z".into(),
        }
    }

    /// A join's answer whose snapshot ends at event `ev`.
    fn joined(ev: u64) -> ClusterJoin {
        ClusterJoin {
            changed: Vec::new(),
            rev: 0,
            new: true,
            seq: 0,
            ev,
            from: 1,
            info: info(),
            members: Vec::new(),
            messages: Vec::new(),
            after: 0,
            limit: 10,
            oldest: 1,
            roles: Default::default(),
            locked: false,
            slow: 0,
        }
    }

    /// The join event numbered `ev`, of a user named after it.
    fn join_event(ev: u64) -> Envelope {
        let text = format!("ROOM22 {ev} j {{\"id\":\"u_{ev}\",\"name\":\"user {ev}\"}}");
        parse_envelope(text.as_bytes()).expect("an envelope")
    }

    /// A connection of `user` in `mirror`, synced at `ev` and activated.
    fn connect(mirror: &Mirror, conn: u64, ev: u64) -> OutboxReceiver {
        let (outbox, receiver) = Outbox::new(64);
        mirror.begin_join();
        assert_eq!(mirror.add(&joined(ev), "u_me", conn, &outbox, ME), None);
        mirror.activate(conn);
        receiver
    }

    /// The users of the join events the connection received, in order.
    fn joins(receiver: &mut OutboxReceiver) -> Vec<String> {
        let mut users = Vec::new();
        while let Some(frame) = receiver.try_recv() {
            let event: Value = serde_json::from_slice(&frame).unwrap();
            users.push(event["user"]["id"].as_str().unwrap().to_owned());
        }
        users
    }

    #[test]
    fn an_early_event_waits_for_the_ones_before_it() {
        let mirror = Mirror::new("ROOM22");
        let mut receiver = connect(&mirror, 1, 5);
        assert!(mirror.receive(join_event(7), ME), "6 is missing: read it back");
        assert!(joins(&mut receiver).is_empty(), "7 is held back");
        assert!(!mirror.receive(join_event(6), ME));
        assert_eq!(joins(&mut receiver), ["u_6", "u_7"]);
        // An event already applied, and one from before the join, are not
        // applied again.
        assert!(!mirror.receive(join_event(6), ME));
        assert!(!mirror.receive(join_event(4), ME));
        assert!(joins(&mut receiver).is_empty());
    }

    #[test]
    fn missed_events_read_back_fill_the_gap_in_order() {
        let mirror = Mirror::new("ROOM22");
        let mut receiver = connect(&mirror, 1, 5);
        assert!(mirror.receive(join_event(8), ME));
        assert_eq!(mirror.start_fill(), Some(5), "read back what follows 5");
        assert_eq!(mirror.start_fill(), None, "one fill at a time");
        // A live event arrives while the fill is under way.
        assert!(!mirror.receive(join_event(9), ME), "already filling");
        mirror.end_fill(vec![join_event(6), join_event(7), join_event(8)], ME);
        assert_eq!(joins(&mut receiver), ["u_6", "u_7", "u_8", "u_9"]);
    }

    #[test]
    fn a_later_joiner_gets_what_was_applied_after_its_snapshot_and_no_more() {
        let mirror = Mirror::new("ROOM22");
        let mut first = connect(&mirror, 1, 5);
        for ev in 6..=9 {
            mirror.receive(join_event(ev), ME);
        }
        assert_eq!(joins(&mut first), ["u_6", "u_7", "u_8", "u_9"]);
        // A second connection whose join's snapshot ended at 7.
        let mut second = connect(&mirror, 2, 7);
        assert_eq!(joins(&mut second), ["u_8", "u_9"]);
        mirror.receive(join_event(10), ME);
        assert_eq!(joins(&mut first), ["u_10"]);
        assert_eq!(joins(&mut second), ["u_10"]);
    }

    #[test]
    fn events_before_activation_wait_behind_the_join_reply() {
        let mirror = Mirror::new("ROOM22");
        let (outbox, mut receiver) = Outbox::new(64);
        mirror.begin_join();
        assert_eq!(mirror.add(&joined(5), "u_me", 1, &outbox, ME), None);
        mirror.receive(join_event(6), ME);
        assert!(receiver.try_recv().is_none(), "held until the reply is queued");
        outbox.push(Bytes::from_static(b"{\"re\":1}"));
        mirror.activate(1);
        assert_eq!(receiver.try_recv().unwrap(), Bytes::from_static(b"{\"re\":1}"));
        assert_eq!(joins(&mut receiver), ["u_6"]);
    }

    #[test]
    fn a_catch_up_gives_the_missing_events_first_or_closes_the_connection() {
        let mirror = Mirror::new("ROOM22");
        let _first = connect(&mirror, 1, 5);
        // A join whose snapshot (at 3) is older than what the mirror was
        // synced at (5), with nothing kept to cover the difference.
        let (outbox, mut receiver) = Outbox::new(64);
        mirror.begin_join();
        assert_eq!(mirror.add(&joined(3), "u_me", 2, &outbox, ME), Some((3, 5)));
        mirror.receive(join_event(6), ME);
        mirror.catch_up(2, 3, 5, vec![join_event(4), join_event(5)], ME);
        mirror.activate(2);
        assert_eq!(joins(&mut receiver), ["u_4", "u_5", "u_6"]);
        assert!(!outbox.is_closed());
        // One that cannot be given every missing event resumes instead.
        let (outbox, receiver) = Outbox::new(64);
        mirror.begin_join();
        assert_eq!(mirror.add(&joined(2), "u_me", 3, &outbox, ME), Some((2, 6)));
        mirror.catch_up(3, 2, 6, vec![join_event(3), join_event(5), join_event(6)], ME);
        assert!(outbox.is_closed());
        assert_eq!(receiver.close_reason(), Some(confab_core::CloseReason::Resync));
    }

    #[test]
    fn a_mirror_lost_closes_its_connections_to_resume() {
        let mirror = Mirror::new("ROOM22");
        let (outbox, receiver) = Outbox::new(64);
        mirror.begin_join();
        let _ = mirror.add(&joined(5), "u_me", 1, &outbox, ME);
        mirror.lost();
        assert_eq!(receiver.close_reason(), Some(confab_core::CloseReason::Resync));
    }
}
