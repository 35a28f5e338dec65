//! The hub: the rooms, the users, and the timers that end grace periods.
//!
//! # Concurrency
//!
//! `Hub` is a cheap `Clone` handle over `Arc<Shared>`. The room map and the
//! session map are each behind a `parking_lot` lock held only for a map
//! lookup or insert, never across `.await` and never together with a
//! room's lock: a caller clones the `Arc<Room>` out, releases the map, and
//! only then locks the room. All ordering (seq, seats, fan-out) happens in
//! the room's own critical section (see `room.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use confab_proto::{ErrorBody, ErrorCode, Retention, RoomInfo, User};
use parking_lot::{Mutex, RwLock};

use crate::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::conn::Conn;
use crate::persist::{Persister, unavailable};
use crate::rates::Limiters;
use crate::room::{Departure, Room, RoomLimits, RoomMeta};
use crate::store::{Store, StoreError, StoredRoom};
use crate::{CloseReason, HubConfig, Outbox, ids, now_rfc3339};

/// Posts that may wait for the store at once; beyond it posts to
/// persistent rooms answer `unavailable`.
const PERSIST_QUEUE: usize = 65_536;

/// A user, as known by their secret session token.
#[derive(Debug)]
pub(crate) struct UserRecord {
    pub id: String,
    pub session: String,
    pub name: Mutex<String>,
}

impl UserRecord {
    pub fn public(&self) -> User {
        User { id: self.id.clone(), name: self.name.lock().clone() }
    }
}

/// The chat system of one node.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    config: HubConfig,
    store: Arc<dyn Store>,
    persister: Persister,
    /// Rooms by key: boards under their lower-case name, created rooms
    /// under their upper-case code.
    rooms: RwLock<HashMap<String, Arc<Room>>>,
    /// Users by the digest of their session token, as seen since start
    /// (the store has all).
    /// Held weakly: a record lives as long as a connection of its user
    /// does, and the store keeps it for later, so memory follows the users
    /// online rather than every user since start. Dead entries are swept
    /// with the idle rate limits.
    sessions: Mutex<HashMap<[u8; 32], Weak<UserRecord>>>,
    limiters: Limiters,
    next_conn: AtomicU64,
    connections: AtomicUsize,
    shutting_down: AtomicBool,
    /// Set when the node joined a cluster: rooms then live in Redis, and
    /// `rooms` above stays empty.
    cluster: OnceLock<Arc<Cluster>>,
}

impl Hub {
    /// Opens a hub on `store`: records the configured boards and loads
    /// every persistent room (its settings and latest `seq`, no messages).
    /// Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn open(config: HubConfig, store: Arc<dyn Store>) -> Result<Hub, StoreError> {
        let created = now_rfc3339();
        for board in &config.boards {
            store
                .save_room(&StoredRoom {
                    code: board.name.to_lowercase(),
                    title: board.title.clone(),
                    capacity: None,
                    backlog: board.backlog,
                    public: true,
                    board: true,
                    created: created.clone(),
                    last_seq: 0,
                })
                .await?;
        }
        let persister = Persister::start(store.clone(), PERSIST_QUEUE);
        let mut rooms = HashMap::new();
        for stored in store.rooms().await? {
            let configured =
                config.boards.iter().any(|b| b.name.eq_ignore_ascii_case(&stored.code));
            if stored.board && !configured {
                continue;
            }
            let key = if stored.board { stored.code.to_lowercase() } else { stored.code.clone() };
            let seats = stored.capacity.unwrap_or(if stored.board {
                u32::MAX
            } else {
                config.max_capacity
            });
            let meta = RoomMeta {
                code: stored.code,
                title: stored.title,
                capacity: stored.capacity,
                retention: Retention::Persistent,
                backlog: stored.backlog,
                public: stored.public,
                created: stored.created,
                board: stored.board,
            };
            let limits = RoomLimits {
                seats: seats as usize,
                window: config.room_window,
                dedup: config.dedup_window,
            };
            rooms.insert(
                key,
                Arc::new(Room::new(meta, limits, Some(persister.clone()), stored.last_seq)),
            );
        }
        let limiters = Limiters::new(config.rates);
        let hub = Hub {
            shared: Arc::new(Shared {
                config,
                store,
                persister,
                rooms: RwLock::new(rooms),
                sessions: Mutex::new(HashMap::new()),
                limiters,
                next_conn: AtomicU64::new(1),
                connections: AtomicUsize::new(0),
                shutting_down: AtomicBool::new(false),
                cluster: OnceLock::new(),
            }),
        };
        tokio::spawn(forget_idle_limits(Arc::downgrade(&hub.shared)));
        let config = &hub.shared.config;
        if !(config.room_retention.is_off() && config.board_retention.is_off()) {
            tokio::spawn(prune_loop(Arc::downgrade(&hub.shared)));
        }
        Ok(hub)
    }

    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// Makes this node one of a cluster through Redis: records the boards
    /// and the stored rooms there (keeping what other nodes recorded), and
    /// from then on runs every room through the cluster.
    ///
    /// # Errors
    ///
    /// Redis cannot be reached, or the hub is in a cluster already.
    pub async fn join_cluster(&self, cluster: ClusterConfig) -> Result<(), ClusterError> {
        let config = &self.shared.config;
        let cluster = Cluster::start(
            cluster,
            &config.node,
            self.shared.store.clone(),
            config.room_window,
            config.dedup_window,
            config.boards.iter().map(|b| b.name.to_lowercase()).collect(),
            config.max_capacity,
            config.grace,
        )
        .await?;
        cluster.record_stored().await?;
        self.shared.cluster.set(cluster).map_err(|_| ClusterError::Already)?;
        self.shared.rooms.write().clear();
        Ok(())
    }

    /// Records in the store where a member's visible range in a cluster
    /// room starts, so that it outlives what Redis holds. Best effort, as
    /// on one node.
    pub(crate) fn remember_visibility(&self, room: &str, user_id: &str, from: u64) {
        let write = crate::store::Write::Visibility {
            room: room.to_owned(),
            user_id: user_id.to_owned(),
            visibility: crate::store::StoredVisibility { from, left_at: None },
        };
        if self.shared.persister.try_queue(crate::persist::Job::Visibility(write)).is_err() {
            tracing::warn!(room, "visibility not stored: storage is busy");
        }
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.shared.cluster.get()
    }

    /// Whether the node can serve its cluster (always true for a single
    /// node): Redis answers, its events arrive, and its lease is held.
    pub fn cluster_healthy(&self) -> Option<bool> {
        self.cluster().map(|c| c.healthy())
    }

    /// The room key of a code in a cluster: a board's lower-case name, or
    /// a created room's upper-case code.
    pub(crate) fn cluster_key(&self, code: &str) -> String {
        let code = code.trim();
        if self.shared.config.boards.iter().any(|b| b.name.eq_ignore_ascii_case(code)) {
            code.to_lowercase()
        } else {
            code.to_uppercase()
        }
    }

    /// Waits (up to `limit`) until the departures of closed connections
    /// have reached the cluster.
    pub async fn settle_departures(&self, limit: std::time::Duration) {
        let Some(cluster) = self.cluster() else { return };
        let _ = tokio::time::timeout(limit, async {
            while cluster.departing() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// Whether the store answers (false while it is down).
    pub fn store_healthy(&self) -> bool {
        self.shared.persister.healthy()
    }

    /// Opens a connection that speaks to the hub through `outbox`.
    pub fn connect(&self, outbox: Outbox) -> Conn {
        self.connect_from(outbox, None)
    }

    /// Opens a connection from the client address `peer`, which failed
    /// joins are counted against (see `rates.rs`).
    pub fn connect_from(&self, outbox: Outbox, peer: Option<IpAddr>) -> Conn {
        let id = self.shared.next_conn.fetch_add(1, Ordering::Relaxed);
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
        Conn::new(self.clone(), id, outbox, peer)
    }

    pub(crate) fn limiters(&self) -> &Limiters {
        &self.shared.limiters
    }

    /// Keeps a user's session record in memory through the reconnect
    /// grace after their connection closed. The session map holds records
    /// weakly; with the store down, a record let go at once would make a
    /// page refresh a new user (a ghost, and join/leave noise).
    pub(crate) fn keep_through_grace(&self, user: Arc<UserRecord>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let grace = self.shared.config.grace;
        runtime.spawn(async move {
            tokio::time::sleep(grace).await;
            drop(user);
        });
    }

    pub(crate) fn disconnected(&self) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections open right now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Rooms that exist right now, boards included (in a cluster: rooms
    /// this node has connections in).
    pub fn room_count(&self) -> usize {
        match self.cluster() {
            Some(cluster) => cluster.mirror_count(),
            None => self.shared.rooms.read().len(),
        }
    }

    /// Public rooms and boards: boards first, then the busiest.
    ///
    /// # Errors
    ///
    /// `unavailable` when the cluster cannot be reached.
    pub async fn public_rooms(&self) -> Result<Vec<RoomInfo>, ErrorBody> {
        let mut rooms: Vec<(bool, RoomInfo)> = match self.cluster() {
            Some(cluster) => {
                let boards = &self.shared.config.boards;
                cluster
                    .public_rooms()
                    .await?
                    .into_iter()
                    .map(|info| (boards.iter().any(|b| b.name == info.code), info))
                    .collect()
            }
            None => {
                let rooms: Vec<Arc<Room>> =
                    self.shared.rooms.read().values().filter(|r| r.meta.public).cloned().collect();
                rooms.iter().map(|r| (r.meta.board, r.info())).collect()
            }
        };
        rooms.sort_by(|(a_board, a), (b_board, b)| {
            b_board
                .cmp(a_board)
                .then(b.members.cmp(&a.members))
                .then_with(|| a.title.cmp(&b.title))
                .then_with(|| a.code.cmp(&b.code))
        });
        Ok(rooms.into_iter().map(|(_, info)| info).collect())
    }

    /// Finds a room by code (case-insensitive) or board name.
    pub(crate) fn room(&self, code: &str) -> Option<Arc<Room>> {
        let code = code.trim();
        let rooms = self.shared.rooms.read();
        rooms.get(&code.to_lowercase()).or_else(|| rooms.get(&code.to_uppercase())).cloned()
    }

    /// Finds a room, or answers `not_found`.
    pub(crate) fn find(&self, code: &str) -> Result<Arc<Room>, ErrorBody> {
        self.room(code).ok_or_else(|| crate::room::not_found(code))
    }

    /// Creates a room with a fresh code. Validation of the arguments is the
    /// caller's.
    pub(crate) async fn create_room(
        &self,
        title: Option<String>,
        capacity: Option<u32>,
        retention: Retention,
        backlog: u32,
        public: bool,
    ) -> Result<RoomInfo, ErrorBody> {
        let config = &self.shared.config;
        if let Some(cluster) = self.cluster() {
            return self
                .create_in_cluster(cluster, title, capacity, retention, backlog, public)
                .await;
        }
        let code = {
            let rooms = self.shared.rooms.read();
            (0..32)
                .map(|_| ids::room_code(config.code_len))
                .find(|code| !rooms.contains_key(code))
                .ok_or_else(|| unavailable("no free room code; try again"))?
        };
        let meta = RoomMeta {
            title: title.unwrap_or_else(|| format!("Room {code}")),
            code: code.clone(),
            capacity,
            retention,
            backlog,
            public,
            created: now_rfc3339(),
            board: false,
        };
        if retention == Retention::Persistent {
            if !self.store_healthy() {
                return Err(unavailable("storage is unavailable; try again shortly"));
            }
            let stored = StoredRoom {
                code: code.clone(),
                title: meta.title.clone(),
                capacity,
                backlog,
                public,
                board: false,
                created: meta.created.clone(),
                last_seq: 0,
            };
            self.store().save_room(&stored).await.map_err(|e| {
                tracing::warn!("cannot store room {code}: {e}");
                unavailable("storage is unavailable; try again shortly")
            })?;
        }
        let limits = RoomLimits {
            seats: capacity.unwrap_or(config.max_capacity) as usize,
            window: config.room_window,
            dedup: config.dedup_window,
        };
        let room = Arc::new(Room::new(meta, limits, Some(self.shared.persister.clone()), 0));
        {
            let mut rooms = self.shared.rooms.write();
            if rooms.contains_key(&code) {
                return Err(ErrorBody::new(ErrorCode::Unavailable, "room code clash; try again"));
            }
            rooms.insert(code, room.clone());
        }
        if retention == Retention::Ephemeral {
            let hub = self.clone();
            let ttl = config.unjoined_room_ttl;
            let unjoined = Arc::downgrade(&room);
            tokio::spawn(async move {
                tokio::time::sleep(ttl).await;
                if let Some(room) = unjoined.upgrade()
                    && room.close_if_empty()
                {
                    hub.forget(&room);
                }
            });
        }
        tracing::debug!(room = room.code(), retention = retention.as_str(), "room created");
        Ok(room.info())
    }

    async fn create_in_cluster(
        &self,
        cluster: &Arc<Cluster>,
        title: Option<String>,
        capacity: Option<u32>,
        retention: Retention,
        backlog: u32,
        public: bool,
    ) -> Result<RoomInfo, ErrorBody> {
        let config = &self.shared.config;
        let persistent = retention == Retention::Persistent;
        if persistent && !self.store_healthy() {
            return Err(unavailable("storage is unavailable; try again shortly"));
        }
        let seats = capacity.unwrap_or(config.max_capacity) as usize;
        let created = now_rfc3339();
        for _ in 0..32 {
            let code = ids::room_code(config.code_len);
            let info = RoomInfo {
                title: title.clone().unwrap_or_else(|| format!("Room {code}")),
                code,
                capacity,
                retention,
                backlog,
                public,
                members: 0,
                created: created.clone(),
            };
            // Unjoined, an ephemeral room expires; so does a persistent
            // one until it is stored.
            if !cluster.create(&info, seats, Some(config.unjoined_room_ttl), true, 0).await? {
                continue;
            }
            if persistent {
                let stored = StoredRoom {
                    code: info.code.clone(),
                    title: info.title.clone(),
                    capacity,
                    backlog,
                    public,
                    board: false,
                    created: info.created.clone(),
                    last_seq: 0,
                };
                self.store().save_room(&stored).await.map_err(|e| {
                    tracing::warn!("cannot store room {}: {e}", info.code);
                    unavailable("storage is unavailable; try again shortly")
                })?;
                cluster.keep(&info.code).await?;
            }
            tracing::debug!(room = info.code, retention = retention.as_str(), "room created");
            return Ok(info);
        }
        Err(unavailable("no free room code; try again"))
    }

    /// Acts on what a departure did: starts a grace timer, or removes a
    /// destroyed room.
    pub(crate) fn settle(&self, room: &Arc<Room>, departure: Departure) {
        match departure {
            Departure::Quiet | Departure::Left => {}
            Departure::Destroyed => self.forget(room),
            Departure::Grace { user_id, epoch } => {
                let hub = self.clone();
                let room = room.clone();
                let grace = self.shared.config.grace;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    let departure = room.expire_grace(&user_id, epoch);
                    hub.settle(&room, departure);
                });
            }
        }
    }

    fn forget(&self, room: &Arc<Room>) {
        let mut rooms = self.shared.rooms.write();
        if rooms.get(room.code()).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(room.code());
        }
        tracing::debug!(room = room.code(), "room destroyed");
    }

    /// Looks up or creates the user for a `hello`. A session the store
    /// knows (from before a restart) is the same user; a new one is stored.
    /// If the store is down, a new session still works in memory.
    ///
    /// Tokens are looked up and stored by their SHA-256 digest: what the
    /// lookup's timing could reveal is a digest, which says nothing about
    /// any token, and a copy of the database holds no usable token.
    ///
    /// # Errors
    ///
    /// `rate_limited` when a new session is needed and the client at
    /// `peer` has made too many.
    pub(crate) async fn session(
        &self,
        token: Option<&str>,
        name: String,
        peer: Option<IpAddr>,
    ) -> Result<Arc<UserRecord>, ErrorBody> {
        let known = token.and_then(|token| {
            self.shared.sessions.lock().get(&ids::token_key(token)).and_then(Weak::upgrade)
        });
        let digest = token.map(ids::token_digest);
        let store_up = self.store_healthy();
        // A token this node does not hold in memory is looked up in the
        // store; if the store cannot say, the answer is `unavailable`, never
        // a new identity for someone who has one.
        let cannot_look_up =
            || unavailable("cannot look up your session right now; try again shortly");
        let user = match (known, token.zip(digest.as_deref())) {
            (Some(user), _) => Some(user),
            (None, Some(_)) if !store_up => return Err(cannot_look_up()),
            (None, Some((token, digest))) => match self.store().session(digest).await {
                Ok(Some(stored)) => Some(self.remember_session(UserRecord {
                    id: stored.id,
                    session: token.to_owned(),
                    name: Mutex::new(stored.name),
                })),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!("cannot read sessions: {e}");
                    return Err(cannot_look_up());
                }
            },
            (None, None) => None,
        };
        let user = match user {
            Some(user) => {
                *user.name.lock() = name;
                user
            }
            None => {
                self.shared.limiters.check_new_session(peer)?;
                self.remember_session(UserRecord {
                    id: ids::user_id(),
                    session: ids::session_token(),
                    name: Mutex::new(name),
                })
            }
        };
        let digest = ids::token_digest(&user.session);
        let saved = store_up
            && match self.shared.persister.save_session(digest.clone(), user.public()).await {
                // With the posts' batches: one transaction for many sessions.
                Ok(written) => written,
                // With the queue full, on its own.
                Err(_) => match self.store().save_session(&digest, &user.public()).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!("cannot store a session: {e}");
                        false
                    }
                },
            };
        // In a cluster a session lives in the store, where every node finds
        // it: one the store does not hold would be someone else on the next
        // node. A single node keeps it in memory meanwhile.
        if !saved && self.cluster().is_some() {
            return Err(unavailable("cannot store your session right now; try again shortly"));
        }
        if !saved && store_up {
            tracing::warn!("cannot store a session: the write failed");
        }
        Ok(user)
    }

    fn remember_session(&self, user: UserRecord) -> Arc<UserRecord> {
        let mut sessions = self.shared.sessions.lock();
        let entry = sessions.entry(ids::token_key(&user.session)).or_default();
        if let Some(known) = entry.upgrade() {
            return known;
        }
        let user = Arc::new(user);
        *entry = Arc::downgrade(&user);
        user
    }

    /// Whether the grace period applies to drops (false once shutting down).
    pub(crate) fn grace_applies(&self) -> bool {
        !self.shared.shutting_down.load(Ordering::Relaxed)
    }

    /// Stops the hub: every joined connection gets `closed` with reason
    /// `shutdown` and is closed after its queued frames are written.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        if let Some(cluster) = self.cluster() {
            cluster.shut_down();
        }
        // Every room's `closed` is queued before any connection closes: a
        // writer that saw its close first would end before the next room's
        // event was queued.
        let rooms: Vec<Arc<Room>> = self.shared.rooms.read().values().cloned().collect();
        for room in &rooms {
            room.announce_shutdown();
        }
        for room in &rooms {
            room.close_connections(CloseReason::Shutdown);
        }
    }
}

/// Applies the retention policies now and then, to the store and to the
/// rooms' windows. Ends when the hub is gone.
async fn prune_loop(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(every) = shared.upgrade().map(|s| s.config.prune_every) else { return };
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else { return };
        let config = &shared.config;
        for (boards, policy) in [(false, config.room_retention), (true, config.board_retention)] {
            if policy.is_off() {
                continue;
            }
            match shared.store.prune(boards, policy.keep, policy.max_age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(boards, "pruned {n} old messages"),
                Err(e) => tracing::warn!("pruning failed: {e}"),
            }
            let rooms: Vec<Arc<Room>> = shared
                .rooms
                .read()
                .values()
                .filter(|r| r.is_persistent() && r.meta.board == boards)
                .cloned()
                .collect();
            let cutoff = policy.max_age.map(crate::rfc3339_ago);
            for room in rooms {
                room.prune_window(policy.keep, cutoff.as_deref());
            }
        }
    }
}

/// Lets rate-limit buckets of idle users go, once a minute. Ends when the
/// hub is gone.
async fn forget_idle_limits(shared: std::sync::Weak<Shared>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        let Some(shared) = shared.upgrade() else { return };
        shared.limiters.forget_idle();
        shared.sessions.lock().retain(|_, user| user.strong_count() > 0);
    }
}
