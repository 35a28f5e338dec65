//! Where persistent rooms keep their messages.
//!
//! The hub talks to storage only through [`Store`]. Implementations: the
//! [`MemoryStore`] here (for a server that wants no disk), and SQLite and
//! PostgreSQL in the server crate. Ephemeral rooms never reach a store.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use confab_proto::{Message, User};
use parking_lot::Mutex;

/// A boxed future returned by [`Store`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A storage failure. The hub turns it into `unavailable`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn new(error: impl std::fmt::Display) -> Self {
        StoreError(error.to_string())
    }
}

/// A persistent room or board as stored: its settings (always
/// persistent) and the latest durable `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    pub spec: crate::RoomSpec,
    /// The latest durable `seq`.
    pub last_seq: u64,
    /// Its owner and moderators.
    pub roles: confab_proto::Roles,
    /// Whether nobody new may join.
    pub locked: bool,
    /// Its bans and removals (some may have run out).
    pub bans: Vec<crate::Ban>,
    /// Slow mode: seconds between one member's posts (0: off).
    pub slow: u32,
    /// The latest change number stored (`Write::Amend`).
    pub rev: u64,
}

/// An address the operator banned from the whole server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SiteBan {
    /// The address's keyed hash (`Services::address_key`).
    pub address: String,
    /// Until when, in ms since the Unix epoch; `None`: until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    pub reason: String,
    /// RFC 3339 UTC.
    pub created: String,
}

/// What a user may see of a room: from `from` on, up to `left_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredVisibility {
    pub from: u64,
    pub left_at: Option<u64>,
}

/// One change in a [`Store::write`] batch.
#[derive(Debug, Clone)]
pub enum Write {
    /// A new message; also advances its room's `last_seq`.
    Message(std::sync::Arc<Message>),
    /// A user's visible range in a room, inserted or replaced.
    Visibility { room: String, user_id: String, visibility: StoredVisibility },
    /// A session by the digest of its token: inserted, or its name
    /// updated (as [`Store::save_session`]).
    Session { token: String, user: User },
    /// A room's owner and moderators, replacing what was stored.
    Roles { room: String, roles: confab_proto::Roles },
    /// A room locked or unlocked.
    Locked { room: String, locked: bool },
    /// A ban (or removal) in a room, inserted or replacing the user's.
    Ban { room: String, ban: crate::Ban },
    /// A user's ban in a room lifted (or run out).
    Unban { room: String, user_id: String },
    /// A room renamed.
    Title { room: String, title: String },
    /// A message deleted: its text gone, a tombstone in its place, and
    /// `quote` (its quote's tombstone) in the place of every quote of it.
    Delete { room: String, seq: u64, quote: confab_proto::Quote, rev: Option<u64> },
    /// A message edited or reacted to: its text, edit time and reactions
    /// as in `message`, unless the store has a later change (`rev`).
    Amend { room: String, message: std::sync::Arc<Message>, rev: u64 },
    /// A room's slow mode set (seconds; 0: off).
    Slow { room: String, seconds: u32 },
    /// A room's change number moved on with no message write of its own
    /// (an operator's purge: the store's tombstones are `purge_user`'s):
    /// stored so that it never goes back.
    Rev { room: String, rev: u64 },
}

/// A message as [`Store::append`] left it.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub message: Message,
    /// Stored now; false when the room held it already (a retried `cid`).
    pub new: bool,
}

/// Storage for sessions, persistent rooms and their messages.
///
/// Every method may be called concurrently. `write` is called by one task
/// at a time, in order.
pub trait Store: Send + Sync + 'static {
    /// The user of a session, by the digest of its token.
    fn session<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<User>>;
    /// Records a session by the digest of its token (insert, or update the
    /// name).
    fn save_session<'a>(&'a self, token: &'a str, user: &'a User) -> StoreFuture<'a, ()>;
    /// Every persistent room and board.
    fn rooms(&self) -> StoreFuture<'_, Vec<StoredRoom>>;
    /// Records a new room, or updates a board's title and backlog.
    fn save_room<'a>(&'a self, room: &'a StoredRoom) -> StoreFuture<'a, ()>;
    /// Applies a batch in one transaction: all or nothing, durable when
    /// the future resolves `Ok`.
    fn write<'a>(&'a self, batch: &'a [Write]) -> StoreFuture<'a, ()>;
    /// Stores messages of one room in one transaction, giving them the
    /// room's next `seq`s in order (the `seq` they carry is ignored), and
    /// returns them as stored, in the order given. The database decides
    /// the order, so that nodes of a cluster sharing it never give one
    /// `seq` twice. A message whose author already has a message with its
    /// `cid` among the room's newest `recent` messages (stored before, or
    /// earlier in the batch) is not stored again: that message is returned
    /// in its place, marked as not new, so that a retried post is stored
    /// once whichever node retries. (Older cids may be used again, as the
    /// protocol's de-duplication window says.)
    fn append<'a>(
        &'a self,
        room: &'a str,
        messages: Vec<Message>,
        recent: u64,
    ) -> StoreFuture<'a, Vec<Appended>>;
    /// Up to `limit` messages of `room` with `after < seq < before`, the
    /// newest ones, returned oldest first; with a `viewer`, those they may
    /// see (a shadow-muted member's posts are their author's only).
    fn messages<'a>(
        &'a self,
        room: &'a str,
        after: u64,
        before: u64,
        limit: usize,
        viewer: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<Message>>;
    /// A user's visible range in a room, if they ever joined it.
    fn visibility<'a>(
        &'a self,
        room: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<StoredVisibility>>;
    /// The messages of `room` after `after` that carry a `cid`, newest first.
    fn recent_cids<'a>(&'a self, room: &'a str, after: u64) -> StoreFuture<'a, Vec<Message>>;
    /// A user's own messages, newest first.
    fn mine<'a>(&'a self, user_id: &'a str, limit: usize) -> StoreFuture<'a, Vec<Message>>;
    /// Deletes messages beyond the newest `keep` per room or older than
    /// `max_age`, in boards if `boards`, else in created rooms. Returns
    /// how many.
    fn prune(
        &self,
        boards: bool,
        keep: Option<u64>,
        max_age: Option<Duration>,
    ) -> StoreFuture<'_, u64>;
    /// Checks that the store answers.
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// The addresses banned from the whole server (some may have run out).
    fn site_bans(&self) -> StoreFuture<'_, Vec<SiteBan>>;
    /// Bans an address from the whole server (replacing its ban).
    fn save_site_ban<'a>(&'a self, ban: &'a SiteBan) -> StoreFuture<'a, ()>;
    /// Lifts the ban of an address (by its hash); whether there was one.
    fn delete_site_ban<'a>(&'a self, address: &'a str) -> StoreFuture<'a, bool>;
    /// Removes a room and everything stored of it (its messages, members'
    /// ranges, roles and bans).
    fn delete_room<'a>(&'a self, room: &'a str) -> StoreFuture<'a, ()>;
    /// Deletes every message of `user_id` (tombstones in their place);
    /// returns how many.
    fn purge_user<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, u64>;
    /// A setting the operator made at run time (`None`: never made).
    fn setting<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>>;
    /// Makes a setting (replacing it).
    fn save_setting<'a>(&'a self, name: &'a str, value: &'a str) -> StoreFuture<'a, ()>;
    /// The secret named `name`: 32 random bytes made the first time it is
    /// asked for, the same ever after (and for every node sharing the
    /// store).
    fn secret<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Vec<u8>>;
    /// Records an integration (a new one: ids are never reused).
    fn save_integration<'a>(&'a self, integration: &'a Integration) -> StoreFuture<'a, ()>;
    /// The integrations of `room`, oldest first.
    fn integrations<'a>(&'a self, room: &'a str) -> StoreFuture<'a, Vec<Integration>>;
    /// One integration, by its id.
    fn integration<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Integration>>;
    /// Forgets an integration of `room`; whether there was one.
    fn delete_integration<'a>(&'a self, room: &'a str, id: &'a str) -> StoreFuture<'a, bool>;
    /// Forgets a session, by the digest of its token.
    fn delete_session<'a>(&'a self, _digest: &'a str) -> StoreFuture<'a, ()> {
        ready(())
    }
    /// Forgets the events of webhook `hook` queued before `before_ms`
    /// (given up); how many.
    fn expire_hook_events<'a>(&'a self, _hook: &'a str, _before_ms: u64) -> StoreFuture<'a, u64> {
        ready(0)
    }
    /// Records a webhook. (Webhooks need a database: the store in memory
    /// has none.)
    fn save_webhook<'a>(&'a self, _hook: &'a Webhook) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Err(StoreError::new("webhooks need a database"))))
    }
    /// The webhooks of `room`, oldest first.
    fn webhooks<'a>(&'a self, _room: &'a str) -> StoreFuture<'a, Vec<Webhook>> {
        ready(Vec::new())
    }
    /// One webhook, by its id.
    fn webhook<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, Option<Webhook>> {
        ready(None)
    }
    /// Forgets a webhook of `room` and what it has still to deliver;
    /// whether there was one.
    fn delete_webhook<'a>(&'a self, _room: &'a str, _id: &'a str) -> StoreFuture<'a, bool> {
        ready(false)
    }
    /// Queues an event of `room` (`kind`, its `data` JSON) for the room's
    /// webhooks that want it. (Messages, edits, deletes, joins and leaves
    /// are queued by the store itself as it writes them.)
    fn hook_event<'a>(
        &'a self,
        _room: &'a str,
        _kind: &'a str,
        _data: String,
    ) -> StoreFuture<'a, ()> {
        ready(())
    }
    /// The webhooks with an event due by `now_ms`.
    fn due_hooks(&self, _now_ms: u64) -> StoreFuture<'_, Vec<String>> {
        ready(Vec::new())
    }
    /// The oldest `limit` undelivered events of webhook `hook`, in order.
    fn hook_events<'a>(&'a self, _hook: &'a str, _limit: usize) -> StoreFuture<'a, Vec<HookEvent>> {
        ready(Vec::new())
    }
    /// An event delivered (`retry: None`: forgotten), or to be tried again
    /// at `retry` (ms), its attempts counted.
    fn hook_attempted(&self, _event: u64, _retry: Option<u64>) -> StoreFuture<'_, ()> {
        ready(())
    }
}

/// A room's outgoing webhook: the events it wants go, signed with its
/// secret, to its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `h_` and 12 random characters.
    pub id: String,
    pub room: String,
    pub url: String,
    /// The event types it wants (`message.created`, …).
    pub events: Vec<String>,
    /// `whsec_` and the base64 of its key (Standard Webhooks).
    pub secret: String,
    pub created: String,
    pub by: String,
}

/// One event queued for a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    /// Its number: stable over retries, unique in the database.
    pub id: u64,
    pub hook: String,
    /// The JSON body to deliver.
    pub body: String,
    /// When it was queued, in ms since the epoch.
    pub created_ms: u64,
    pub attempts: u32,
    /// Not before this (ms since the epoch).
    pub next_ms: u64,
}

/// A room's integration: a token that lets a program act in the room as
/// a bot (post, read), kept as the digest of its token only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    /// `i_` and 12 random characters; the token starts with it.
    pub id: String,
    /// The room's key (a created room's code, a board's lower-case name).
    pub room: String,
    /// The bot it posts as: its user id, and its name.
    pub user: User,
    /// What it may do: `post`, `read`.
    pub scopes: Vec<String>,
    /// The SHA-256 of its token, in hex.
    pub digest: String,
    /// The digest of its bot's session (the sessions table's key).
    pub session: String,
    /// RFC 3339.
    pub created: String,
    /// Who made it: a user id, or `operator`.
    pub by: String,
}

/// A store in memory: persistent rooms last as long as the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    sessions: HashMap<String, User>,
    rooms: BTreeMap<String, StoredRoom>,
    messages: HashMap<String, BTreeMap<u64, Message>>,
    visibility: HashMap<(String, String), StoredVisibility>,
    secrets: HashMap<String, Vec<u8>>,
    settings: HashMap<String, String>,
    site_bans: BTreeMap<String, SiteBan>,
    /// Each amended message's change number.
    revs: HashMap<(String, u64), u64>,
    integrations: BTreeMap<String, Integration>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

impl Store for MemoryStore {
    fn session<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<User>> {
        ready(self.inner.lock().sessions.get(token).cloned())
    }

    fn save_session<'a>(&'a self, token: &'a str, user: &'a User) -> StoreFuture<'a, ()> {
        self.inner.lock().sessions.insert(token.to_owned(), user.clone());
        ready(())
    }

    fn rooms(&self) -> StoreFuture<'_, Vec<StoredRoom>> {
        ready(self.inner.lock().rooms.values().cloned().collect())
    }

    fn save_room<'a>(&'a self, room: &'a StoredRoom) -> StoreFuture<'a, ()> {
        let mut inner = self.inner.lock();
        let entry = inner.rooms.entry(room.spec.code.clone()).or_insert_with(|| room.clone());
        if room.spec.board {
            entry.spec.title.clone_from(&room.spec.title);
            entry.spec.backlog = room.spec.backlog;
        }
        ready(())
    }

    fn write<'a>(&'a self, batch: &'a [Write]) -> StoreFuture<'a, ()> {
        let mut inner = self.inner.lock();
        // All or nothing, like a transaction: refuse a batch that would
        // overwrite a message before applying any of it.
        let mut seen = std::collections::HashSet::new();
        for write in batch {
            if let Write::Message(m) = write {
                let taken = inner.messages.get(&m.room).is_some_and(|r| r.contains_key(&m.seq));
                if taken || !seen.insert((m.room.as_str(), m.seq)) {
                    return Box::pin(std::future::ready(Err(StoreError(format!(
                        "message {} of room {} exists already",
                        m.seq, m.room
                    )))));
                }
            }
        }
        for write in batch {
            match write {
                Write::Message(message) => {
                    if let Some(room) = inner.rooms.get_mut(&message.room) {
                        room.last_seq = room.last_seq.max(message.seq);
                    }
                    inner
                        .messages
                        .entry(message.room.clone())
                        .or_default()
                        .insert(message.seq, Message::clone(message));
                }
                Write::Visibility { room, user_id, visibility } => {
                    inner.visibility.insert((room.clone(), user_id.clone()), *visibility);
                }
                Write::Session { token, user } => {
                    inner.sessions.insert(token.clone(), user.clone());
                }
                Write::Roles { room, roles } => {
                    if let Some(room) = inner.rooms.get_mut(room) {
                        room.roles.clone_from(roles);
                    }
                }
                Write::Locked { room, locked } => {
                    if let Some(room) = inner.rooms.get_mut(room) {
                        room.locked = *locked;
                    }
                }
                Write::Ban { room, ban } => {
                    if let Some(room) = inner.rooms.get_mut(room) {
                        room.bans.retain(|b| b.user.id != ban.user.id);
                        room.bans.push(ban.clone());
                    }
                }
                Write::Unban { room, user_id } => {
                    if let Some(room) = inner.rooms.get_mut(room) {
                        room.bans.retain(|b| b.user.id != *user_id);
                    }
                }
                Write::Rev { room, rev } => {
                    if let Some(stored) = inner.rooms.get_mut(room) {
                        stored.rev = stored.rev.max(*rev);
                    }
                }
                Write::Delete { room, seq, quote, rev } => {
                    if let (Some(rev), Some(stored)) = (rev, inner.rooms.get_mut(room)) {
                        stored.rev = stored.rev.max(*rev);
                    }
                    if let Some(messages) = inner.messages.get_mut(room) {
                        if let Some(message) = messages.get_mut(seq) {
                            *message = message.tombstone();
                        }
                        for message in messages.values_mut() {
                            if message.reply.as_ref().is_some_and(|q| q.seq == *seq) {
                                message.reply = Some(quote.clone());
                            }
                        }
                    }
                }
                Write::Amend { room, message, rev } => {
                    let key = (room.clone(), message.seq);
                    if inner.revs.get(&key).is_some_and(|r| r >= rev) {
                        continue;
                    }
                    let Some(kept) =
                        inner.messages.get_mut(room).and_then(|m| m.get_mut(&message.seq))
                    else {
                        continue;
                    };
                    if kept.deleted {
                        continue;
                    }
                    kept.body.clone_from(&message.body);
                    kept.edited.clone_from(&message.edited);
                    kept.reactions.clone_from(&message.reactions);
                    inner.revs.insert(key, *rev);
                    if let Some(stored) = inner.rooms.get_mut(room) {
                        stored.rev = stored.rev.max(*rev);
                    }
                }
                Write::Title { room, title } => {
                    if let Some(room) = inner.rooms.get_mut(room) {
                        room.spec.title.clone_from(title);
                    }
                }
                Write::Slow { room, seconds } => {
                    if let Some(room) = inner.rooms.get_mut(room) {
                        room.slow = *seconds;
                    }
                }
            }
        }
        ready(())
    }

    fn append<'a>(
        &'a self,
        room: &'a str,
        messages: Vec<Message>,
        recent: u64,
    ) -> StoreFuture<'a, Vec<Appended>> {
        let mut inner = self.inner.lock();
        let Some(mut last) = inner.rooms.get(room).map(|r| r.last_seq) else {
            return Box::pin(std::future::ready(Err(StoreError(format!("no room {room}")))));
        };
        let kept = inner.messages.entry(room.to_owned()).or_default();
        let mut appended = Vec::with_capacity(messages.len());
        for mut message in messages {
            let floor = last.saturating_sub(recent);
            let earlier = message.cid.as_ref().and_then(|cid| {
                kept.range(floor + 1..)
                    .map(|(_, m)| m)
                    .find(|m| m.from.id == message.from.id && m.cid.as_ref() == Some(cid))
            });
            if let Some(earlier) = earlier {
                appended.push(Appended { message: earlier.clone(), new: false });
                continue;
            }
            last += 1;
            message.seq = last;
            kept.insert(message.seq, message.clone());
            appended.push(Appended { message, new: true });
        }
        if let Some(r) = inner.rooms.get_mut(room) {
            r.last_seq = last;
        }
        ready(appended)
    }

    fn messages<'a>(
        &'a self,
        room: &'a str,
        after: u64,
        before: u64,
        limit: usize,
        viewer: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<Message>> {
        let inner = self.inner.lock();
        let mut found: Vec<Message> = match inner.messages.get(room) {
            Some(messages) if after.saturating_add(1) < before => messages
                .range(after + 1..before)
                .rev()
                .filter(|(_, m)| !m.shadow || viewer.is_none_or(|v| m.from.id == v))
                .take(limit)
                .map(|(_, m)| m.clone())
                .collect(),
            _ => Vec::new(),
        };
        found.reverse();
        ready(found)
    }

    fn visibility<'a>(
        &'a self,
        room: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<StoredVisibility>> {
        ready(self.inner.lock().visibility.get(&(room.to_owned(), user_id.to_owned())).copied())
    }

    fn recent_cids<'a>(&'a self, room: &'a str, after: u64) -> StoreFuture<'a, Vec<Message>> {
        let inner = self.inner.lock();
        let found = inner
            .messages
            .get(room)
            .map(|m| {
                m.range(after.saturating_add(1)..)
                    .rev()
                    .map(|(_, m)| m)
                    .filter(|m| m.cid.is_some())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        ready(found)
    }

    fn mine<'a>(&'a self, user_id: &'a str, limit: usize) -> StoreFuture<'a, Vec<Message>> {
        let inner = self.inner.lock();
        let mut found: Vec<Message> = inner
            .messages
            .values()
            .flat_map(|m| m.values())
            .filter(|m| m.from.id == user_id)
            .cloned()
            .collect();
        found.sort_by(|a, b| b.ts.cmp(&a.ts).then(b.seq.cmp(&a.seq)));
        found.truncate(limit);
        ready(found)
    }

    fn prune(
        &self,
        boards: bool,
        keep: Option<u64>,
        max_age: Option<Duration>,
    ) -> StoreFuture<'_, u64> {
        let mut inner = self.inner.lock();
        let skip: Vec<String> = inner
            .rooms
            .values()
            .filter(|r| r.spec.board != boards)
            .map(|r| r.spec.code.clone())
            .collect();
        let cutoff = max_age.map(crate::clock::rfc3339_ago);
        let mut pruned = 0;
        for (room, messages) in &mut inner.messages {
            if skip.contains(room) {
                continue;
            }
            let before = messages.len();
            if let Some(keep) = keep {
                while messages.len() as u64 > keep {
                    messages.pop_first();
                }
            }
            if let Some(cutoff) = &cutoff {
                messages.retain(|_, m| m.ts >= *cutoff);
            }
            pruned += (before - messages.len()) as u64;
        }
        ready(pruned)
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        ready(())
    }

    fn site_bans(&self) -> StoreFuture<'_, Vec<SiteBan>> {
        ready(self.inner.lock().site_bans.values().cloned().collect())
    }

    fn setting<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>> {
        ready(self.inner.lock().settings.get(name).cloned())
    }

    fn save_setting<'a>(&'a self, name: &'a str, value: &'a str) -> StoreFuture<'a, ()> {
        self.inner.lock().settings.insert(name.to_owned(), value.to_owned());
        ready(())
    }

    fn save_site_ban<'a>(&'a self, ban: &'a SiteBan) -> StoreFuture<'a, ()> {
        self.inner.lock().site_bans.insert(ban.address.clone(), ban.clone());
        ready(())
    }

    fn delete_site_ban<'a>(&'a self, address: &'a str) -> StoreFuture<'a, bool> {
        ready(self.inner.lock().site_bans.remove(address).is_some())
    }

    fn delete_room<'a>(&'a self, room: &'a str) -> StoreFuture<'a, ()> {
        let mut inner = self.inner.lock();
        inner.rooms.remove(room);
        inner.messages.remove(room);
        inner.visibility.retain(|(r, _), _| r != room);
        ready(())
    }

    fn purge_user<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, u64> {
        let mut inner = self.inner.lock();
        let mut purged = 0;
        for message in inner.messages.values_mut().flat_map(|m| m.values_mut()) {
            if message.from.id == user_id && !message.deleted {
                *message = message.tombstone();
                purged += 1;
            }
            if let Some(quote) = message.reply.as_mut().filter(|q| q.from.id == user_id) {
                *quote = quote.tombstone();
            }
        }
        ready(purged)
    }

    fn secret<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Vec<u8>> {
        let mut inner = self.inner.lock();
        let secret = inner
            .secrets
            .entry(name.to_owned())
            .or_insert_with(|| rand::random::<[u8; 32]>().to_vec());
        ready(secret.clone())
    }

    fn save_integration<'a>(&'a self, integration: &'a Integration) -> StoreFuture<'a, ()> {
        self.inner.lock().integrations.insert(integration.id.clone(), integration.clone());
        ready(())
    }

    fn delete_session<'a>(&'a self, digest: &'a str) -> StoreFuture<'a, ()> {
        self.inner.lock().sessions.remove(digest);
        ready(())
    }

    fn integrations<'a>(&'a self, room: &'a str) -> StoreFuture<'a, Vec<Integration>> {
        let inner = self.inner.lock();
        let mut found: Vec<Integration> =
            inner.integrations.values().filter(|i| i.room == room).cloned().collect();
        found.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        ready(found)
    }

    fn integration<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Integration>> {
        ready(self.inner.lock().integrations.get(id).cloned())
    }

    fn delete_integration<'a>(&'a self, room: &'a str, id: &'a str) -> StoreFuture<'a, bool> {
        let mut inner = self.inner.lock();
        let found = inner.integrations.get(id).is_some_and(|i| i.room == room);
        if found {
            inner.integrations.remove(id);
        }
        ready(found)
    }
}
