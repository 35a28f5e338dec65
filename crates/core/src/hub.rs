//! The hub: the users and their sessions, the budgets, and the room
//! backend every connection of the node speaks to.
//!
//! # Concurrency
//!
//! `Hub` is a cheap `Clone` handle over `Arc<Shared>`. The session map is
//! behind a `parking_lot` lock held only for a lookup or an insert, never
//! across `.await`. All ordering (seq, seats, fan-out) happens in the
//! backend: a room's own critical section, or its script in Redis.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use confab_proto::{ErrorBody, RoomInfo, User};
use parking_lot::Mutex;

use crate::backend::{RoomBackend, Services};
use crate::frames::unavailable;
use crate::local::LocalRooms;
use crate::rates::{Limiters, Rates};
use crate::store::{Store, StoreError};
use crate::{HubConfig, ids};

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

/// The chat system of one node, over the room backend `B`.
pub struct Hub<B = LocalRooms> {
    shared: Arc<Shared<B>>,
}

impl<B> Clone for Hub<B> {
    fn clone(&self) -> Self {
        Hub { shared: self.shared.clone() }
    }
}

struct Shared<B> {
    services: Arc<Services>,
    backend: B,
    /// Users by the digest of their session token, as seen since start
    /// (the store has all).
    /// Held weakly: a record lives as long as a connection of its user
    /// does, and the store keeps it for later, so memory follows the users
    /// online rather than every user since start. Dead entries are swept
    /// with the idle rate limits.
    sessions: Mutex<HashMap<[u8; 32], Weak<UserRecord>>>,
    /// The rate limits in force; replaced whole when they are reloaded
    /// (a short lock: an `Arc` taken out, never held across `.await`).
    limiters: Mutex<Arc<Limiters>>,
    next_conn: AtomicU64,
    connections: AtomicUsize,
    shutting_down: AtomicBool,
    /// Addresses banned from the server (keyed hashes), until when (ms;
    /// `None`: until lifted): the store's, read again every few seconds.
    site_bans: Mutex<HashMap<String, Option<u64>>>,
    /// Bumped when `site_bans` changes, so that a connection checks its
    /// address again only then.
    site_ban_epoch: AtomicU64,
    /// The defensive mode: the bits of work a new session must show (0:
    /// off), the store's, read with the site bans.
    defense: std::sync::atomic::AtomicU32,
    puzzles: crate::pow::Puzzles,
    /// Open connections by the keyed hash of their address (loopback
    /// ones, which no ban bars, are not kept): a site ban closes them.
    by_address: Mutex<HashMap<String, Vec<(u64, crate::Outbox)>>>,
}

/// How often a node reads the site bans from the store (other nodes'
/// bans reach it within this).
const SITE_BANS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Hub<LocalRooms> {
    /// Opens a hub of one node on `store`, with its rooms here: records
    /// the configured boards and loads every persistent room (its settings
    /// and latest `seq`, no messages). Must be called within a Tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn open(config: HubConfig, store: Arc<dyn Store>) -> Result<Hub, StoreError> {
        let services = Services::open(config, store).await?;
        let rooms = LocalRooms::open(&services).await?;
        Ok(Hub::new(services, rooms))
    }
}

impl<B: RoomBackend> Hub<B> {
    /// A hub whose rooms are `backend`'s. Must be called within a Tokio
    /// runtime.
    pub fn new(services: Arc<Services>, backend: B) -> Hub<B> {
        let limiters = Mutex::new(Arc::new(Limiters::new(services.config.rates)));
        let services_for_puzzles = services.clone();
        let hub = Hub {
            shared: Arc::new(Shared {
                services,
                backend,
                sessions: Mutex::new(HashMap::new()),
                limiters,
                next_conn: AtomicU64::new(1),
                connections: AtomicUsize::new(0),
                shutting_down: AtomicBool::new(false),
                site_bans: Mutex::new(HashMap::new()),
                site_ban_epoch: AtomicU64::new(0),
                defense: std::sync::atomic::AtomicU32::new(0),
                puzzles: crate::pow::Puzzles::new(services_for_puzzles.pow_secret.clone()),
                by_address: Mutex::new(HashMap::new()),
            }),
        };
        tokio::spawn(forget_idle_limits(Arc::downgrade(&hub.shared)));
        tokio::spawn(read_site_bans(Arc::downgrade(&hub.shared)));
        let config = &hub.shared.services.config;
        if !(config.room_retention.is_off() && config.board_retention.is_off()) {
            tokio::spawn(prune_loop(Arc::downgrade(&hub.shared)));
        }
        hub
    }

    pub fn config(&self) -> &HubConfig {
        &self.shared.services.config
    }

    /// What the rooms share: the configuration, the store, the writer.
    pub fn services(&self) -> &crate::Services {
        &self.shared.services
    }

    /// The room backend.
    pub fn backend(&self) -> &B {
        &self.shared.backend
    }

    /// Whether the node can serve its cluster (`None` for a single node):
    /// Redis answers, its events arrive, and its lease is held.
    pub fn cluster_healthy(&self) -> Option<bool> {
        self.shared.backend.healthy()
    }

    /// Waits (up to `limit`) until the departures of closed connections
    /// have been recorded.
    pub async fn settle_departures(&self, limit: Duration) {
        self.shared.backend.settle(limit).await;
    }

    /// The keyed hash a ban keeps of a client's address.
    pub(crate) fn address_key(&self, peer: Option<std::net::IpAddr>) -> Option<String> {
        self.shared.services.address_key(peer)
    }

    /// Whether the address of keyed hash `address` is banned from the
    /// server now.
    pub(crate) fn address_banned(&self, address: Option<&str>) -> bool {
        let Some(address) = address else { return false };
        let bans = self.shared.site_bans.lock();
        bans.get(address).is_some_and(|until| until.is_none_or(|u| u > crate::unix_ms()))
    }

    /// The defensive mode: the bits of work a new session must show (0:
    /// off).
    pub fn defense(&self) -> u32 {
        self.shared.defense.load(Ordering::Relaxed)
    }

    /// Turns the defensive mode on (`bits` of work, up to
    /// `pow::MAX_BITS`) or off (0), here at once and on every node within
    /// a few seconds.
    ///
    /// # Errors
    ///
    /// `bad_request` for too many bits, `unavailable` when the store
    /// cannot take it.
    pub async fn set_defense(&self, bits: u32) -> Result<(), ErrorBody> {
        if bits > crate::pow::MAX_BITS {
            return Err(crate::frames::bad(format!(
                "bits must be at most {}",
                crate::pow::MAX_BITS
            )));
        }
        let value = bits.to_string();
        self.shared.services.store.save_setting("defense", &value).await.map_err(|e| {
            tracing::warn!("cannot store the defensive mode: {e}");
            crate::frames::storage_down()
        })?;
        self.shared.defense.store(bits, Ordering::Relaxed);
        Ok(())
    }

    /// The keyed hash bans keep of `address` (`None` for loopback).
    pub fn address_hash(&self, address: std::net::IpAddr) -> Option<String> {
        self.address_key(Some(address))
    }

    /// Keeps an open connection by its address, for a site ban to close.
    pub(crate) fn opened_from(&self, address: &str, conn: u64, outbox: &crate::Outbox) {
        let mut open = self.shared.by_address.lock();
        open.entry(address.to_owned()).or_default().push((conn, outbox.clone()));
    }

    /// Forgets a connection kept by `opened_from`.
    pub(crate) fn closed_from(&self, address: &str, conn: u64) {
        let mut open = self.shared.by_address.lock();
        if let Some(conns) = open.get_mut(address) {
            conns.retain(|(id, _)| *id != conn);
            if conns.is_empty() {
                open.remove(address);
            }
        }
    }

    /// Changes whenever the site bans do.
    pub(crate) fn site_ban_epoch(&self) -> u64 {
        self.shared.site_ban_epoch.load(Ordering::Relaxed)
    }

    /// Bans `address` from the whole server (every node within a few
    /// seconds, this one at once): its new sessions are refused and its
    /// connections are let go at their next op. `None` for an address no
    /// ban may hold (loopback).
    ///
    /// # Errors
    ///
    /// `unavailable` when the store cannot take it.
    pub async fn ban_address(
        &self,
        address: std::net::IpAddr,
        ban: Option<Duration>,
        reason: &str,
    ) -> Result<Option<crate::SiteBan>, ErrorBody> {
        let Some(key) = self.address_key(Some(address)) else { return Ok(None) };
        let until =
            ban.map(|d| crate::unix_ms() + u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2));
        let ban = crate::SiteBan {
            address: key.clone(),
            until,
            reason: reason.to_owned(),
            created: crate::now_rfc3339(),
        };
        self.shared.services.store.save_site_ban(&ban).await.map_err(|e| {
            tracing::warn!("cannot store a site ban: {e}");
            crate::frames::storage_down()
        })?;
        self.shared.site_bans.lock().insert(key.clone(), until);
        self.shared.site_ban_epoch.fetch_add(1, Ordering::Relaxed);
        close_banned(&self.shared.by_address, &key);
        Ok(Some(ban))
    }

    /// The addresses banned from the server now (as keyed hashes).
    ///
    /// # Errors
    ///
    /// `unavailable` when the store cannot answer.
    pub async fn site_bans(&self) -> Result<Vec<crate::SiteBan>, ErrorBody> {
        let now = crate::unix_ms();
        let bans = self.shared.services.store.site_bans().await.map_err(|e| {
            tracing::warn!("cannot read the site bans: {e}");
            crate::frames::storage_down()
        })?;
        Ok(bans.into_iter().filter(|b| b.until.is_none_or(|u| u > now)).collect())
    }

    /// Lifts the site ban of an address by its keyed hash; whether there
    /// was one.
    ///
    /// # Errors
    ///
    /// `unavailable` when the store cannot take it.
    pub async fn lift_site_ban(&self, address: &str) -> Result<bool, ErrorBody> {
        let lifted = self.shared.services.store.delete_site_ban(address).await.map_err(|e| {
            tracing::warn!("cannot lift a site ban: {e}");
            crate::frames::storage_down()
        })?;
        if self.shared.site_bans.lock().remove(address).is_some() {
            self.shared.site_ban_epoch.fetch_add(1, Ordering::Relaxed);
        }
        Ok(lifted)
    }

    /// Waits (up to `limit`) until the writes queued for the store so far
    /// (roles, bans, deletions, visibility…) are written: a stopping
    /// server does so last.
    pub async fn flush_storage(&self, limit: Duration) {
        let flushed = tokio::time::timeout(limit, self.shared.services.persister.flush()).await;
        if flushed.is_err() {
            tracing::warn!("writes still queued for storage after {limit:?}; stopping anyway");
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.shared.services.store
    }

    /// Whether the store answers (false while it is down).
    pub fn store_healthy(&self) -> bool {
        self.shared.services.store_healthy()
    }

    /// A new connection's id, counted as open until [`Hub::disconnected`].
    pub(crate) fn connected(&self) -> u64 {
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
        self.shared.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn limiters(&self) -> Arc<Limiters> {
        self.shared.limiters.lock().clone()
    }

    /// Puts `rates` in force (a reload), and says what changed, one line
    /// per limit. Changed limits start with full buckets; the others keep
    /// theirs.
    pub fn reload_rates(&self, rates: Rates) -> Vec<String> {
        let mut limiters = self.shared.limiters.lock();
        let changes = crate::rates::changes(limiters.rates(), &rates);
        if !changes.is_empty() {
            *limiters = Arc::new(limiters.reloaded(rates));
        }
        changes
    }

    /// Keeps a user's session record in memory through the reconnect
    /// grace after their connection closed. The session map holds records
    /// weakly; with the store down, a record let go at once would make a
    /// page refresh a new user (a ghost, and join/leave noise).
    pub(crate) fn keep_through_grace(&self, user: Arc<UserRecord>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let grace = self.config().grace;
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
        self.shared.backend.room_count()
    }

    /// Public rooms and boards: boards first, then the busiest.
    ///
    /// # Errors
    ///
    /// `unavailable` when the backend cannot answer.
    /// The public rooms for a client without a session (the list over
    /// HTTP), drawn from the read budget of its address `peer` (loopback
    /// exempt unless `limit_loopback`).
    ///
    /// # Errors
    ///
    /// `rate_limited` over the budget; as [`Hub::public_rooms`].
    pub async fn public_rooms_for(&self, peer: IpAddr) -> Result<Vec<RoomInfo>, ErrorBody> {
        self.limiters().check_address_read(Some(peer))?;
        self.public_rooms().await
    }

    pub async fn public_rooms(&self) -> Result<Vec<RoomInfo>, ErrorBody> {
        let mut rooms = self.shared.backend.public_rooms().await?;
        rooms.sort_by(|(a_board, a), (b_board, b)| {
            b_board
                .cmp(a_board)
                .then(b.members.cmp(&a.members))
                .then_with(|| a.title.cmp(&b.title))
                .then_with(|| a.code.cmp(&b.code))
        });
        Ok(rooms.into_iter().map(|(_, info)| info).collect())
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
        pow: Option<&confab_proto::Pow>,
        bot: bool,
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
        // A bot's session is its integration's connections' only: a token
        // that leaked, or was revoked, is no way in as the bot.
        if user.as_ref().is_some_and(|u| u.id.starts_with("b_")) != bot {
            return Err(ErrorBody::new(
                confab_proto::ErrorCode::Forbidden,
                "that session is an integration's, used through the API only",
            ));
        }
        let user = match user {
            // A bot keeps the name its integration gave it.
            Some(user) if bot => user,
            Some(user) => {
                *user.name.lock() = name;
                user
            }
            None => {
                // The address's budget first: a puzzle is taken only by a
                // session that may be made.
                self.limiters().check_new_session(peer)?;
                // The defensive mode: a new session shows its work first.
                let bits = self.defense();
                if bits > 0 {
                    let puzzles = &self.shared.puzzles;
                    match pow.map(|pow| puzzles.check(pow, bits)) {
                        Some(Ok(())) => {}
                        Some(Err(why)) => {
                            return Err(crate::pow::refusal(why, puzzles.issue(bits)));
                        }
                        None => {
                            let why = "none was solved";
                            return Err(crate::pow::refusal(why, puzzles.issue(bits)));
                        }
                    }
                }
                self.remember_session(UserRecord {
                    id: ids::user_id(),
                    session: ids::session_token(),
                    name: Mutex::new(name),
                })
            }
        };
        let digest = ids::token_digest(&user.session);
        let saved = store_up
            && match self
                .shared
                .services
                .persister
                .save_session(digest.clone(), user.public())
                .await
            {
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
        if !saved && self.shared.backend.sessions_shared() {
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
        self.shared.backend.shutdown();
    }
}

/// Applies the retention policies now and then, to the store and to the
/// rooms' windows. Ends when the hub is gone.
async fn prune_loop<B: RoomBackend>(shared: Weak<Shared<B>>) {
    loop {
        let Some(every) = shared.upgrade().map(|s| s.services.config.prune_every) else { return };
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else { return };
        let config = &shared.services.config;
        for (boards, policy) in [(false, config.room_retention), (true, config.board_retention)] {
            if policy.is_off() {
                continue;
            }
            match shared.services.store.prune(boards, policy.keep, policy.max_age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(boards, "pruned {n} old messages"),
                Err(e) => tracing::warn!("pruning failed: {e}"),
            }
            let cutoff = policy.max_age.map(crate::rfc3339_ago);
            shared.backend.prune(boards, policy.keep, cutoff.as_deref());
        }
    }
}

/// Lets rate-limit buckets of idle users go, once a minute. Ends when the
/// hub is gone.
/// Reads the site bans from the store now and every few seconds, while
/// the hub lives.
async fn read_site_bans<B: RoomBackend>(shared: Weak<Shared<B>>) {
    loop {
        let Some(store) = shared.upgrade().map(|s| s.services.store.clone()) else { return };
        match store.site_bans().await {
            Ok(bans) => {
                let Some(shared) = shared.upgrade() else { return };
                let now = crate::unix_ms();
                let read: HashMap<String, Option<u64>> = bans
                    .into_iter()
                    .filter(|b| b.until.is_none_or(|u| u > now))
                    .map(|b| (b.address, b.until))
                    .collect();
                let fresh: Vec<String> = {
                    let mut bans = shared.site_bans.lock();
                    if *bans == read {
                        Vec::new()
                    } else {
                        let fresh =
                            read.keys().filter(|k| !bans.contains_key(*k)).cloned().collect();
                        *bans = read;
                        shared.site_ban_epoch.fetch_add(1, Ordering::Relaxed);
                        fresh
                    }
                };
                // Another node's bans: this node's connections from there go.
                for address in fresh {
                    close_banned(&shared.by_address, &address);
                }
            }
            Err(e) => tracing::debug!("cannot read the site bans: {e}"),
        }
        if let Ok(setting) = store.setting("defense").await {
            let Some(shared) = shared.upgrade() else { return };
            let bits = setting.and_then(|s| s.parse().ok()).unwrap_or(0);
            shared.defense.store(bits, Ordering::Relaxed);
        }
        tokio::time::sleep(SITE_BANS_EVERY).await;
    }
}

/// Closes the open connections from the address of keyed hash `address`.
fn close_banned(by_address: &Mutex<HashMap<String, Vec<(u64, crate::Outbox)>>>, address: &str) {
    let Some(open) = by_address.lock().remove(address) else { return };
    let closed = open.len();
    for (_, outbox) in open {
        outbox.push(crate::frames::error_frame(
            None,
            ErrorBody::new(
                confab_proto::ErrorCode::Forbidden,
                "this address is banned from this server",
            ),
        ));
        outbox.close(crate::CloseReason::Banned);
    }
    tracing::info!(closed, "connections from a banned address closed");
}

async fn forget_idle_limits<B: RoomBackend>(shared: Weak<Shared<B>>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        let Some(shared) = shared.upgrade() else { return };
        let limiters = shared.limiters.lock().clone();
        limiters.forget_idle();
        shared.sessions.lock().retain(|_, user| user.strong_count() > 0);
    }
}
