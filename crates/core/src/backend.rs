//! The seam between a node's connections and the authority over its
//! rooms.
//!
//! [`RoomBackend`] is every operation a room authority offers: create,
//! join (a seat, the backlog, `since`), depart (leave, drop with grace),
//! post (`seq`, `cid`), read, members, typing, the public list, shutdown.
//! [`Conn`](crate::Conn) speaks to it and to nothing else. Two
//! implementations exist: [`LocalRooms`](crate::LocalRooms) here, where a
//! room is a critical section in this process, and the Redis one in
//! `confab-cluster`, where it is a script in Redis. Both are held to one
//! conformance suite (`crates/cluster/tests/conformance.rs`).
//!
//! Dispatch is static: `Hub` and `Conn` are generic over the backend, and
//! a server that may run either holds an enum of the two. Nothing is boxed
//! on the way from an op to a room.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use confab_proto::{
    BanInfo, ErrorBody, JoinResult, LeaveReason, Message, Retention, Role, Roles, RoomInfo, User,
};
use serde::{Deserialize, Serialize};

use crate::frames::storage_down;
use crate::persist::{Job, Persister};
use crate::store::{Store, StoreError, StoredRoom, StoredVisibility, Write};
use crate::{HubConfig, Outbox, now_rfc3339};

/// Posts that may wait for the store at once; beyond it a post to a
/// persistent room answers `unavailable` (the queue's overflow policy).
pub const PERSIST_QUEUE: usize = 65_536;

/// A room's settings: what never changes once it exists. The one type for
/// them, whether the room lives here, in Redis or in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSpec {
    /// A created room's upper-case code, or a board's lower-case name.
    pub code: String,
    pub title: String,
    /// As created: `None` means the server maximum.
    pub capacity: Option<u32>,
    pub retention: Retention,
    pub backlog: u32,
    pub public: bool,
    pub board: bool,
    pub created: String,
}

impl RoomSpec {
    /// The code as logs show it: a private ephemeral room leaves nothing
    /// behind, its code in a log included.
    pub fn shown_code(&self) -> &str {
        match self.public || self.board || self.retention == Retention::Persistent {
            true => &self.code,
            false => "(private)",
        }
    }

    /// The room as the protocol shows it, with `members` members.
    pub fn info(&self, members: usize) -> RoomInfo {
        RoomInfo {
            code: self.code.clone(),
            title: self.title.clone(),
            capacity: self.capacity,
            retention: self.retention,
            backlog: self.backlog,
            public: self.public,
            members,
            created: self.created.clone(),
        }
    }

    /// The seats the room grants: its capacity, or the server's maximum
    /// (a board has no maximum).
    pub fn seats(&self, max_capacity: u32) -> usize {
        let most = if self.board { u32::MAX } else { max_capacity };
        self.capacity.unwrap_or(most) as usize
    }

    /// A configured board.
    pub fn board(board: &crate::BoardConfig, created: String) -> RoomSpec {
        RoomSpec {
            code: board.name.to_lowercase(),
            title: board.title.clone(),
            capacity: None,
            retention: Retention::Persistent,
            backlog: board.backlog,
            public: true,
            board: true,
            created,
        }
    }
}

/// A room to create, its arguments validated; the backend gives it a code.
#[derive(Debug, Clone)]
pub struct NewRoom {
    /// The user creating it, its owner; `None` for a room nobody owns.
    pub owner: Option<String>,
    pub title: Option<String>,
    pub capacity: Option<u32>,
    pub retention: Retention,
    pub backlog: u32,
    pub public: bool,
}

impl NewRoom {
    /// The roles a new room starts with: its owner.
    pub fn roles(&self) -> confab_proto::Roles {
        self.owner.iter().map(|id| (id.clone(), confab_proto::Role::Owner)).collect()
    }

    /// The settings of this room under `code`, created now.
    pub fn spec(&self, code: String) -> RoomSpec {
        RoomSpec {
            title: self.title.clone().unwrap_or_else(|| format!("Room {code}")),
            code,
            capacity: self.capacity,
            retention: self.retention,
            backlog: self.backlog,
            public: self.public,
            board: false,
            created: now_rfc3339(),
        }
    }
}

/// Whom a role op names: a member by user id, or by name (as the room
/// compares names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Id(String),
    Name(String),
}

/// The most bans (removals included) a room keeps; beyond it a new one is
/// refused until some are lifted or run out.
pub const BANS_MAX: usize = 1_000;

/// What a `kick` or a `ban` does to the member it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// `Kicked` or `Banned`: the `leave` and `closed` reason.
    pub reason: LeaveReason,
    /// For how long they may not join again; `None`: until lifted.
    pub ban: Option<Duration>,
    /// Whether the addresses they joined from are barred too.
    pub address: bool,
}

/// A user removed from a room (`kick`) or banned from it, as rooms and
/// the store keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub user: User,
    pub by: User,
    pub reason: LeaveReason,
    /// Until when, in milliseconds since the Unix epoch; `None`: until
    /// lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// Keyed hashes of the addresses it bars (never an address itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
}

impl Ban {
    /// How long it still holds at `now` (ms since the epoch): `None` when it
    /// has run out, `Some(None)` when it holds until lifted.
    pub fn remaining(&self, now: u64) -> Option<Option<Duration>> {
        match self.until {
            None => Some(None),
            Some(until) if until > now => Some(Some(Duration::from_millis(until - now))),
            Some(_) => None,
        }
    }

    /// The error a `join` it holds off gets.
    pub fn refusal(&self, code: &str, now: u64) -> ErrorBody {
        let wait = self.remaining(now).flatten();
        match self.reason {
            LeaveReason::Banned => crate::frames::banned_out(code, wait),
            _ => crate::frames::kicked_out(code, wait.unwrap_or(Duration::from_millis(1))),
        }
    }

    /// As `bans` shows it.
    pub fn info(&self) -> BanInfo {
        BanInfo {
            user: self.user.clone(),
            by: self.by.clone(),
            reason: self.reason,
            until: self.until.map(crate::rfc3339_of_ms),
            address: !self.addrs.is_empty(),
        }
    }
}

/// A member who may not post, as rooms keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    pub user: User,
    pub by: User,
    /// Until when, in milliseconds since the Unix epoch; `None`: until
    /// lifted.
    pub until: Option<u64>,
    /// Their posts reach only themselves.
    pub shadow: bool,
}

impl Mute {
    /// How long it still holds at `now`, as [`Ban::remaining`].
    pub fn remaining(&self, now: u64) -> Option<Option<Duration>> {
        match self.until {
            None => Some(None),
            Some(until) if until > now => Some(Some(Duration::from_millis(until - now))),
            Some(_) => None,
        }
    }

    /// As `bans` shows it.
    pub fn info(&self) -> confab_proto::MuteInfo {
        confab_proto::MuteInfo {
            user: self.user.clone(),
            by: self.by.clone(),
            until: self.until.map(crate::rfc3339_of_ms),
            shadow: self.shadow,
        }
    }
}

/// The longest slow mode, in seconds.
pub const SLOW_SECONDS_MAX: u32 = 3_600;

/// A post's content, validated, before it gets its `seq`.
#[derive(Debug, Clone)]
pub struct Draft {
    pub body: String,
    pub subject: Option<String>,
    pub cid: Option<String>,
    pub ts: String,
    /// The quote of the message it answers.
    pub reply: Option<confab_proto::Quote>,
    /// Posted through an integration.
    pub bot: bool,
}

/// Most different emoji on one message.
pub const REACTION_EMOJI_MAX: usize = 20;
/// Most reactions of one member on one message.
pub const REACTIONS_PER_USER_MAX: usize = 10;
/// Most reactions on one message.
pub const REACTIONS_MAX: usize = 500;

/// Why a reaction was refused.
pub fn reaction_refusal(code: &str, seq: u64, why: ReactionLimit) -> ErrorBody {
    let text = match why {
        ReactionLimit::Emoji => format!(
            "message {seq} of room {code} has {REACTION_EMOJI_MAX} different emoji, the most it may have"
        ),
        ReactionLimit::Yours => format!(
            "you have {REACTIONS_PER_USER_MAX} reactions on message {seq} of room {code}, the most one member may have"
        ),
        ReactionLimit::Total => format!(
            "message {seq} of room {code} has {REACTIONS_MAX} reactions, the most it may have"
        ),
    };
    ErrorBody::new(confab_proto::ErrorCode::Forbidden, text)
}

/// Which bound a reaction would cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionLimit {
    Emoji,
    Yours,
    Total,
}

/// Puts `user`'s `emoji` on `reactions`, or takes it off if it is there;
/// whether it is on now. (The room script does the same in a cluster.)
///
/// # Errors
///
/// The bound that putting it on would cross.
pub fn toggle_reaction(
    reactions: &mut Vec<confab_proto::Reaction>,
    user: &User,
    emoji: &str,
) -> Result<bool, ReactionLimit> {
    if let Some(i) = reactions.iter().position(|r| r.emoji == emoji)
        && let Some(j) = reactions[i].users.iter().position(|u| u.id == user.id)
    {
        let reaction = &mut reactions[i];
        reaction.users.remove(j);
        reaction.count = reaction.users.len() as u32;
        if reaction.users.is_empty() {
            reactions.remove(i);
        }
        return Ok(false);
    }
    let total: usize = reactions.iter().map(|r| r.users.len()).sum();
    if total >= REACTIONS_MAX {
        return Err(ReactionLimit::Total);
    }
    let yours = reactions.iter().filter(|r| r.users.iter().any(|u| u.id == user.id)).count();
    if yours >= REACTIONS_PER_USER_MAX {
        return Err(ReactionLimit::Yours);
    }
    let kinds = reactions.len();
    match reactions.iter_mut().find(|r| r.emoji == emoji) {
        Some(reaction) => {
            reaction.users.push(user.clone());
            reaction.count = reaction.users.len() as u32;
        }
        None if kinds >= REACTION_EMOJI_MAX => return Err(ReactionLimit::Emoji),
        None => reactions.push(confab_proto::Reaction {
            emoji: emoji.to_owned(),
            count: 1,
            users: vec![user.clone()],
        }),
    }
    Ok(true)
}

/// Where a rejoining client stopped: its last `seq`, and the room's change
/// number it had seen, if it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    pub seq: u64,
    pub rev: Option<u64>,
}

/// What a member's departure did to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// Nothing visible changed (another connection of the user remains, or
    /// the connection was not joined).
    Quiet,
    /// The user left and the room goes on.
    Left,
    /// The user's seat is held for the reconnect grace; the timer numbered
    /// `epoch` ends it unless they come back.
    Grace { user_id: String, epoch: u64 },
    /// The last member left an ephemeral room: the room is gone.
    Destroyed,
}

/// A connection, as a room sees it.
#[derive(Clone, Copy)]
pub struct Joiner<'a> {
    /// The connection's id on this node.
    pub conn: u64,
    pub outbox: &'a Outbox,
    pub user: &'a User,
    /// The keyed hash of the client's address, when it may be banned (see
    /// `Services::address_key`).
    pub address: Option<&'a str>,
}

/// Messages to read: the newest `limit` with `after < seq < before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub after: u64,
    pub before: u64,
    pub limit: usize,
}

/// A connection's place in a room it joined.
pub trait Seat: Send + Sync + 'static {
    /// The room's code (a board's lower-case name).
    fn code(&self) -> &str;
}

/// The authority over rooms. Every op that names a room the connection is
/// in gets that room's [`Seat`], found by `Conn` among its own: a room
/// the connection is not in never reaches the backend, except for `join`,
/// `members` of a public room, and `leave` of a seat held in grace.
pub trait RoomBackend: Send + Sync + 'static {
    type Seat: Seat;

    /// Creates a room with a fresh code.
    fn create(&self, room: NewRoom) -> impl Future<Output = Result<RoomInfo, ErrorBody>> + Send;

    /// Joins `code`, leaving the connection pending until [`activate`]:
    /// the caller queues the reply first. `rejoin`: only if the user holds
    /// a seat already (a resume), else `not_found`. `seated`: this
    /// connection's seat there, if it is in the room already (it keeps it
    /// should the join fail).
    ///
    /// [`activate`]: RoomBackend::activate
    fn join(
        &self,
        who: Joiner<'_>,
        code: &str,
        since: Option<Since>,
        rejoin: bool,
        seated: Option<&Self::Seat>,
    ) -> impl Future<Output = Result<(Self::Seat, JoinResult), ErrorBody>> + Send;

    /// Releases the events held for a connection since its join.
    fn activate(&self, seat: &Self::Seat, conn: u64);

    /// An explicit `leave` by one connection: of its own seat, or (with
    /// `seat` none) of the user's seat held in grace. `not_member` else.
    fn leave(
        &self,
        code: &str,
        seat: Option<&Self::Seat>,
        conn: u64,
        user_id: &str,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// The connection went away without `leave`: the member keeps the seat
    /// for the reconnect grace if `grace` and it was their last connection
    /// there. Never waits; what needs the network is done in the
    /// background.
    fn disconnect(&self, seat: Self::Seat, conn: u64, user_id: &str, grace: bool);

    /// Posts a message. The reply (to `reply`) and every later outcome go
    /// through the poster's outbox, in order with the room's events.
    fn post(
        &self,
        seat: &Self::Seat,
        who: Joiner<'_>,
        draft: Draft,
        reply: Option<i64>,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Tells the other members that the user is (not) typing.
    fn typing(
        &self,
        seat: &Self::Seat,
        conn: u64,
        user: &User,
        active: bool,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// The members of a room this connection is in (`seat`), or of a public
    /// one; a private room it is not in answers `not_member`, exactly as
    /// one that does not exist.
    fn members(
        &self,
        code: &str,
        seat: Option<&Self::Seat>,
        conn: u64,
        user_id: &str,
    ) -> impl Future<Output = Result<(Vec<User>, Roles), ErrorBody>> + Send;

    /// Gives the member `target` names `role` in the room of `seat`, on
    /// behalf of `actor`, who must be its owner: `moderator` or `member`,
    /// or `owner` to hand the room over (the old owner becomes a
    /// moderator). Every member is told (an `Event::Role`).
    fn set_role(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
        target: &Target,
        role: Role,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Removes the member `target` from the room of `seat` on behalf of
    /// `actor` (its owner, or a moderator removing a plain member), as
    /// `removal` says: their connections there get `closed` and the others
    /// a `leave` (both with its reason), and a `join` of theirs (or, for an
    /// address ban, from an address they joined from) is refused while the
    /// ban holds.
    fn kick(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
        target: &Target,
        removal: Removal,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Lifts the ban (or removal) of `user_id` in the room of `seat`, on
    /// behalf of `actor`, its owner or a moderator: `not_found` if there
    /// is none in force.
    fn unban(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// The bans and removals in force in the room of `seat`, for `actor`,
    /// its owner or a moderator.
    fn bans(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
    ) -> impl Future<Output = Result<Vec<Ban>, ErrorBody>> + Send;

    /// Locks the room of `seat` (nobody new may join) or unlocks it, on
    /// behalf of `actor`, its owner or a moderator. Every member is told.
    fn lock(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
        locked: bool,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Mutes the member `target` in the room of `seat` for `mute` (`None`
    /// inside: until lifted), on behalf of `actor` (as `kick` decides who
    /// may); with `mute` none, lets a muted user (by id, member or not)
    /// speak again. Every member is told, unless it is a `shadow` mute:
    /// then the member's posts reach only themselves, and nobody hears of
    /// it.
    fn mute(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
        target: &Target,
        mute: Option<Option<Duration>>,
        shadow: bool,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// The room's mutes in force, for its owner or a moderator.
    fn mutes(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
    ) -> impl Future<Output = Result<Vec<Mute>, ErrorBody>> + Send;

    /// Sets slow mode (`seconds` between one member's posts, 0 off) in the
    /// room of `seat` on behalf of `actor`, its owner or a moderator.
    /// Every member is told.
    fn slow(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
        seconds: u32,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Renames the room of `seat` on behalf of `actor`, its owner or a
    /// moderator. Every member is told.
    fn retitle(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
        title: &str,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Deletes `message` (as `read` gave it to `actor`) on behalf of
    /// `actor`: its author, or the room's owner or a moderator. Its text
    /// goes from memory and from the store; a tombstone keeps its place.
    /// Every member is told (an `Event::Deleted`).
    fn delete(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
        message: &Message,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Replaces the text of `message` (as `read` gave it to `actor`) with
    /// `body`, on behalf of `actor`, its author (the caller checked the
    /// edit window). `edited` is the time of the edit. Every member who
    /// may see it is told (an `Event::Edited`); a persistent room stores
    /// it.
    ///
    /// `forbidden` if the actor is not its author, it is deleted, or it is
    /// older than the messages the room keeps at hand.
    fn edit(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
        message: &Message,
        body: &str,
        edited: &str,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Puts `actor`'s `emoji` on message `seq` (one `actor` may see), or
    /// takes it off; whether it is on now. Every member who may see the
    /// message is told (an `Event::Reacted`); a persistent room stores it.
    ///
    /// `forbidden` if it is deleted, older than the messages the room keeps
    /// at hand, or a bound would be crossed (see [`toggle_reaction`]).
    fn react(
        &self,
        seat: &Self::Seat,
        conn: u64,
        actor: &str,
        seq: u64,
        emoji: &str,
    ) -> impl Future<Output = Result<bool, ErrorBody>> + Send;

    /// Every room there is (the operator's view), each with whether it
    /// is a board.
    fn all_rooms(&self) -> impl Future<Output = Result<Vec<(bool, RoomInfo)>, ErrorBody>> + Send;

    /// The members and roles of `code`, for the operator (private or not).
    fn room_members(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<(Vec<User>, Roles), ErrorBody>> + Send;

    /// Ends the room `code` for the operator: every connection in it gets
    /// `closed` (reason `closed`), and a persistent room leaves the store.
    /// `not_found` if there is none.
    fn close_room(&self, code: &str) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Gives the member `target` of `code` `role` for the operator (a
    /// board's moderators, or a room handed over).
    fn grant(
        &self,
        code: &str,
        target: &Target,
        role: Role,
    ) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Tells every member of every room `text` (an `Event::Notice`); how
    /// many rooms.
    fn announce(&self, text: &str) -> impl Future<Output = Result<usize, ErrorBody>> + Send;

    /// Deletes every message of `user_id` in every room, for the operator
    /// (the store's included): tombstones in their place, and an
    /// `Event::Purged` in each room that held any or knows the user.
    fn purge(&self, user_id: &str) -> impl Future<Output = Result<(), ErrorBody>> + Send;

    /// Messages of `range` the user may see, oldest first (the part older
    /// than what the backend keeps read from the store).
    fn read(
        &self,
        seat: &Self::Seat,
        conn: u64,
        user_id: &str,
        range: Range,
    ) -> impl Future<Output = Result<Vec<Message>, ErrorBody>> + Send;

    /// Public rooms and boards, each with whether it is a board.
    fn public_rooms(&self)
    -> impl Future<Output = Result<Vec<(bool, RoomInfo)>, ErrorBody>> + Send;

    /// Rooms that exist here (in a cluster: rooms this node has
    /// connections in).
    fn room_count(&self) -> usize;

    /// Whether the backend can serve, when it depends on a service other
    /// than the store (`None` when it does not).
    fn healthy(&self) -> Option<bool> {
        None
    }

    /// Whether every node must find a session in the store (a session the
    /// store does not hold would be someone else on the next node).
    fn sessions_shared(&self) -> bool {
        false
    }

    /// Drops from the kept messages of persistent rooms (boards, or
    /// created rooms) what the retention policy removed from the store.
    fn prune(&self, _boards: bool, _keep: Option<u64>, _cutoff: Option<&str>) {}

    /// The node is stopping: every joined connection gets `closed`
    /// (reason `shutdown`) for each of its rooms, then is closed.
    fn shutdown(&self);

    /// Waits (up to `limit`) until departures still in the background
    /// have been recorded.
    fn settle(&self, _limit: Duration) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// A place held in the store's queue ([`Services::reserve_write`]).
pub struct WriteSlot(crate::persist::Slot);

impl WriteSlot {
    /// Queues `write` in the place held: it cannot be refused. (A place is
    /// room in the queue, not a position in it: the write goes after what
    /// was queued before now.)
    pub fn write(self, write: Write) {
        self.0.queue(Job::Write(write));
    }
}

/// What every backend of a node shares: the configuration, the store, and
/// the writer that batches what goes into it.
pub struct Services {
    pub config: HubConfig,
    pub store: Arc<dyn Store>,
    pub(crate) persister: Persister,
    /// The key of address hashes, kept in the store so that every node and
    /// every restart hash an address alike.
    address_secret: Vec<u8>,
    /// The key of the defensive mode's puzzles, shared alike.
    pub(crate) pow_secret: Vec<u8>,
}

impl Services {
    /// Records the configured boards in `store` and starts its writer.
    /// Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn open(
        config: HubConfig,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Services>, StoreError> {
        let created = now_rfc3339();
        for board in &config.boards {
            let spec = RoomSpec::board(board, created.clone());
            let stored = StoredRoom {
                rev: 0,
                spec,
                last_seq: 0,
                roles: Default::default(),
                locked: false,
                bans: Vec::new(),
                slow: 0,
            };
            store.save_room(&stored).await?;
        }
        let address_secret = store.secret("address").await?;
        let pow_secret = store.secret("pow").await?;
        let persister = Persister::start(store.clone(), PERSIST_QUEUE);
        Ok(Arc::new(Services { config, store, persister, address_secret, pow_secret }))
    }

    /// Whether the store answers (false while it is down).
    pub fn store_healthy(&self) -> bool {
        self.persister.healthy()
    }

    /// Queues a member's visible range for the store, so that it outlives
    /// what the backend holds. Best effort: if the queue is full the range
    /// lives in the backend only.
    pub fn remember_visibility(&self, room: &str, user_id: &str, visibility: StoredVisibility) {
        let write =
            Write::Visibility { room: room.to_owned(), user_id: user_id.to_owned(), visibility };
        if self.persister.try_queue(Job::Write(write)).is_err() {
            tracing::warn!(room, "visibility not stored: storage is busy");
        }
    }

    /// Queues `write` for the store, best effort: with the queue full it is
    /// logged and dropped (for what cannot hold a place beforehand: an
    /// operator's purge, whose rooms show only once it is made).
    pub fn remember(&self, write: Write) {
        if self.persister.try_queue(Job::Write(write)).is_err() {
            tracing::warn!("a room setting not stored: storage is busy");
        }
    }

    /// Holds a place in the store's queue for a write that follows a
    /// change (made in Redis, or in a room in memory): with the queue full
    /// the op is refused before anything changed, rather than changing
    /// what the store would then miss. A slot dropped unused (the change was
    /// refused) gives its place back.
    ///
    /// # Errors
    ///
    /// `unavailable` when the queue is full.
    pub fn reserve_write(&self) -> Result<WriteSlot, ErrorBody> {
        self.persister.reserve().map(WriteSlot)
    }

    /// `count` places ([`Services::reserve_write`]) for what a change of a
    /// room writes, none when the room is not stored (`persistent` false).
    ///
    /// # Errors
    ///
    /// `unavailable` when the queue cannot hold them all (those taken are
    /// given back).
    pub fn reserve_writes(
        &self,
        persistent: bool,
        count: usize,
    ) -> Result<Vec<WriteSlot>, ErrorBody> {
        if !persistent {
            return Ok(Vec::new());
        }
        (0..count).map(|_| self.reserve_write()).collect()
    }

    /// The keyed hash a ban keeps of `peer`, the client's address (an IPv6
    /// address by its /64): `None` for a loopback address or none, which no
    /// ban ever bars (behind a proxy not named as trusted every client
    /// would share it).
    pub fn address_key(&self, peer: Option<std::net::IpAddr>) -> Option<String> {
        crate::ids::address_key(&self.address_secret, peer?)
    }

    /// Stored messages of `room` in `range`, oldest first.
    ///
    /// # Errors
    ///
    /// `unavailable` when the store cannot answer.
    /// Messages a shadow-muted member posted are `viewer`'s only.
    pub async fn stored(
        &self,
        room: &str,
        range: Range,
        viewer: &str,
    ) -> Result<Vec<Message>, ErrorBody> {
        let read = self.store.messages(room, range.after, range.before, range.limit, Some(viewer));
        read.await.map_err(|e| {
            tracing::warn!(room, "cannot read messages: {e}");
            storage_down()
        })
    }

    /// A board's configured name, if `code` names one.
    pub fn board(&self, code: &str) -> Option<&crate::BoardConfig> {
        self.config.boards.iter().find(|b| b.name.eq_ignore_ascii_case(code.trim()))
    }

    /// The key a room is known by: a board's lower-case name, a created
    /// room's upper-case code.
    pub fn room_key(&self, code: &str) -> String {
        let code = code.trim();
        match self.board(code) {
            Some(_) => code.to_lowercase(),
            None => code.to_uppercase(),
        }
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").field("node", &self.config.node).finish_non_exhaustive()
    }
}
