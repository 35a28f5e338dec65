//! The Redis room backend: what a node's connections ask of the cluster.
//! Each op is a call of the room script (`ops.rs`); events reach the
//! node's connections through its mirror of the room (`mirror.rs`).

use std::sync::Arc;
use std::time::Duration;

use confab_core::frames::{not_in, storage_down, unavailable};
use confab_core::{
    Draft, Joiner, NewRoom, Range, RoomBackend, Seat, Services, StoredRoom, StoredVisibility,
    Target, Write, WriteSlot,
};
use confab_proto::{ErrorBody, JoinResult, Message, Retention, Role, Roles, RoomInfo, User};

use crate::{Cluster, ClusterConfig, ClusterError, Mirror};

/// The rooms of a node that is one of a cluster: they live in Redis.
#[derive(Clone)]
pub struct ClusterRooms {
    cluster: Arc<Cluster>,
    services: Arc<Services>,
}

/// A connection's place in a cluster room.
pub struct ClusterSeat {
    mirror: Arc<Mirror>,
    /// The node's incarnation when the connection joined: what Redis
    /// counts the connection under.
    incarnation: String,
    /// The name the room knows the user by (a name another member holds
    /// is not taken on a rejoin): what this connection's posts carry.
    name: String,
}

impl Seat for ClusterSeat {
    fn code(&self) -> &str {
        self.mirror.code()
    }
}

impl std::fmt::Debug for ClusterRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRooms").field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl ClusterRooms {
    /// Places in the store's queue for what a change of a persistent room
    /// writes, taken before Redis makes the change: with the queue full the
    /// op is refused (`unavailable`) before anything changed, so that no
    /// change Redis made goes unstored. None for a room not stored.
    fn slots(&self, seat: &ClusterSeat, count: usize) -> Result<Vec<WriteSlot>, ErrorBody> {
        self.services.reserve_writes(seat.mirror.persistent(), count)
    }

    /// As [`ClusterRooms::slots`], for a change of a message's content (an
    /// edit, a reaction, a delete): refused too while the store is down, as
    /// a post to the room is, since a failed write is not written again.
    fn content_slots(&self, seat: &ClusterSeat, count: usize) -> Result<Vec<WriteSlot>, ErrorBody> {
        if seat.mirror.persistent() && !self.services.store_healthy() {
            return Err(storage_down());
        }
        self.slots(seat, count)
    }

    /// Queues in `slots` (see [`ClusterRooms::slots`]) a message as a
    /// change left it (an edit, a reaction), with the change's number.
    fn store_change(
        &self,
        seat: &ClusterSeat,
        slots: Vec<WriteSlot>,
        changed: Option<(Message, u64)>,
    ) {
        if let (Some(slot), Some((message, rev))) = (slots.into_iter().next(), changed) {
            let room = seat.mirror.code().to_owned();
            slot.write(Write::Amend { room, message: std::sync::Arc::new(message), rev });
        }
    }

    /// Takes (or, held already by `holder`, extends) the cluster-wide lease
    /// `name` for `ttl`: whether `holder` holds it now. One node at a time
    /// holds a lease; one that stops holds it no longer once `ttl` passes.
    ///
    /// # Errors
    ///
    /// `unavailable` when Redis cannot answer.
    pub async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, ErrorBody> {
        let key = format!("{}:lease:{{{name}}}", self.cluster.config.namespace);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(
            "local v = redis.call('GET', KEYS[1]) \
             if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end \
             if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
             return 0",
        )
        .arg(1)
        .arg(&key)
        .arg(holder)
        .arg(ms);
        let held: i64 = self.cluster.shard(name).query(&cmd).await?;
        Ok(held == 1)
    }

    /// Lets go of the lease `name` if `holder` holds it.
    ///
    /// # Errors
    ///
    /// `unavailable` when Redis cannot answer.
    pub async fn release(&self, name: &str, holder: &str) -> Result<(), ErrorBody> {
        let key = format!("{}:lease:{{{name}}}", self.cluster.config.namespace);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0",
        )
        .arg(1)
        .arg(&key)
        .arg(holder);
        let _: i64 = self.cluster.shard(name).query(&cmd).await?;
        Ok(())
    }

    /// Joins the cluster at `config.url`: connects to Redis, records the
    /// boards and the stored rooms there (keeping what other nodes
    /// recorded), and starts the node's subscription, lease and sweeps.
    ///
    /// # Errors
    ///
    /// Redis cannot be reached, or the stored rooms cannot be recorded.
    pub async fn start(
        config: ClusterConfig,
        services: Arc<Services>,
    ) -> Result<ClusterRooms, ClusterError> {
        let cluster = Cluster::start(config, services.clone()).await?;
        cluster.record_stored().await?;
        Ok(ClusterRooms { cluster, services })
    }

    /// Messages a room op read from Redis's window (newest first), oldest
    /// first, with the part older than the window read from the store for
    /// a persistent room.
    async fn complete(
        &self,
        mirror: &Mirror,
        mut newest_first: Vec<Message>,
        range: Range,
        oldest: u64,
        reader: &str,
    ) -> Result<Vec<Message>, ErrorBody> {
        newest_first.reverse();
        let mut messages = newest_first;
        if !mirror.persistent() || messages.len() >= range.limit {
            return Ok(messages);
        }
        let before = messages.first().map_or(range.before, |m| m.seq).min(range.before).min(oldest);
        if range.after.saturating_add(1) >= before {
            return Ok(messages);
        }
        let older = Range { after: range.after, before, limit: range.limit - messages.len() };
        let mut older = self.services.stored(mirror.code(), older, reader).await?;
        older.append(&mut messages);
        Ok(older)
    }

    /// Undoes a seat this node took for a join that then failed.
    async fn give_back(&self, seat: &ClusterSeat, conn: u64, user_id: &str) {
        let code = seat.mirror.code();
        let incarnation = Some(seat.incarnation.as_str());
        if self.cluster.depart(code, user_id, incarnation, true, false).await.is_ok() {
            seat.mirror.remove(conn);
            self.cluster.release_mirror(&seat.mirror);
        }
    }
}

impl RoomBackend for ClusterRooms {
    type Seat = ClusterSeat;

    async fn create(&self, new: NewRoom) -> Result<RoomInfo, ErrorBody> {
        let config = &self.services.config;
        let persistent = new.retention == Retention::Persistent;
        if persistent && !self.services.store_healthy() {
            return Err(storage_down());
        }
        for _ in 0..32 {
            let spec = new.spec(confab_core::ids::room_code(config.code_len));
            let info = spec.info(0);
            let seats = spec.seats(config.max_capacity);
            // Unjoined, an ephemeral room expires; so does a persistent
            // one until it is stored.
            let ttl = Some(config.unjoined_room_ttl);
            let start = crate::Recorded { roles: new.roles(), ..crate::Recorded::default() };
            if !self.cluster.create(&info, seats, ttl, true, &start).await? {
                continue;
            }
            if persistent {
                let stored = StoredRoom {
                    rev: 0,
                    spec,
                    last_seq: 0,
                    roles: start.roles,
                    locked: false,
                    bans: Vec::new(),
                    slow: 0,
                };
                self.services.store.save_room(&stored).await.map_err(|e| {
                    tracing::warn!("cannot store room {}: {e}", info.code);
                    storage_down()
                })?;
                self.cluster.keep(&info.code).await?;
            }
            tracing::debug!(room = info.code, retention = new.retention.as_str(), "room created");
            return Ok(info);
        }
        Err(unavailable("no free room code; try again"))
    }

    async fn join(
        &self,
        who: Joiner<'_>,
        code: &str,
        since: Option<confab_core::Since>,
        rejoin: bool,
        seated: Option<&ClusterSeat>,
    ) -> Result<(ClusterSeat, JoinResult), ErrorBody> {
        let cluster = &self.cluster;
        let user = who.user;
        let code = self.services.room_key(code);
        // What the store remembers of the user's visible range, for a
        // persistent room that Redis lost (the store is the record). A
        // rejoin keeps the range Redis has.
        let stored = match rejoin {
            true => None,
            false => match self.services.store.visibility(&code, &user.id).await {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::debug!(room = code, "cannot read visibility: {e}");
                    None
                }
            },
        };
        let mirror = cluster.mirror_for_join(&code);
        let resume_limit = self.services.config.resume_limit;
        // A connection joining a room it is in already is counted once; one
        // whose user was removed from it is in it no more.
        let seated = seated.filter(|seat| !seat.mirror.was_kicked(who.conn));
        let joined = cluster
            .join(&code, user, since, resume_limit, stored, rejoin, seated.is_some(), who.address)
            .await;
        let joined = match joined {
            Ok(joined) => joined,
            Err(e) => {
                mirror.join_failed();
                cluster.release_mirror(&mirror);
                return Err(e);
            }
        };
        if joined.new && joined.info.retention == Retention::Persistent {
            let visibility = StoredVisibility { from: joined.from, left_at: None };
            self.services.remember_visibility(&code, &user.id, visibility);
        }
        let incarnation = cluster.incarnation();
        let missing = mirror.add(&joined, &user.id, who.conn, who.outbox, &incarnation);
        let name = joined
            .members
            .iter()
            .find(|m| m.id == user.id)
            .map_or_else(|| user.name.clone(), |m| m.name.clone());
        let seat = ClusterSeat { mirror: mirror.clone(), incarnation: incarnation.clone(), name };
        if let Some((after, upto)) = missing {
            let envelopes =
                cluster.events(&code, after, Some(upto)).await.ok().flatten().unwrap_or_default();
            mirror.catch_up(who.conn, after, upto, envelopes, &incarnation);
        }
        let range = Range { after: joined.after, before: joined.seq + 1, limit: joined.limit };
        let completed = self.complete(&mirror, joined.messages, range, joined.oldest, &user.id);
        let messages = match completed.await {
            Ok(messages) => messages,
            Err(e) => {
                if seated.is_some() {
                    // In the room before: it stays, as it was.
                    mirror.activate(who.conn);
                } else {
                    // The seat was taken; give it back before failing.
                    self.give_back(&seat, who.conn, &user.id).await;
                }
                return Err(e);
            }
        };
        let result = JoinResult {
            room: joined.info,
            members: joined.members,
            roles: joined.roles,
            locked: joined.locked,
            slow: joined.slow,
            messages,
            seq: joined.seq,
            gap: false,
            rev: joined.rev,
            changed: joined.changed,
        };
        Ok((seat, result))
    }

    fn activate(&self, seat: &ClusterSeat, conn: u64) {
        seat.mirror.activate(conn);
    }

    async fn leave(
        &self,
        code: &str,
        seat: Option<&ClusterSeat>,
        conn: u64,
        user_id: &str,
    ) -> Result<(), ErrorBody> {
        // A seat whose user was removed from the room: left already.
        if let Some(seat) = seat.filter(|s| s.mirror.was_kicked(conn)) {
            seat.mirror.forget_kicked(conn);
            self.cluster.release_mirror(&seat.mirror);
            return Ok(());
        }
        let key = self.services.room_key(code);
        let incarnation = seat.map(|s| s.incarnation.as_str());
        match self.cluster.depart(&key, user_id, incarnation, true, false).await? {
            None => Err(not_in(code)),
            Some(_) => {
                if let Some(seat) = seat {
                    seat.mirror.remove(conn);
                    self.cluster.release_mirror(&seat.mirror);
                }
                Ok(())
            }
        }
    }

    fn disconnect(&self, seat: ClusterSeat, conn: u64, user_id: &str, grace: bool) {
        // A connection whose user was removed from the room left it then:
        // there is nothing more to count.
        if seat.mirror.was_kicked(conn) {
            seat.mirror.forget_kicked(conn);
            self.cluster.release_mirror(&seat.mirror);
            return;
        }
        let grace = if grace { self.services.config.grace } else { Duration::ZERO };
        seat.mirror.remove(conn);
        self.cluster.departed(seat.mirror, user_id.to_owned(), seat.incarnation, grace);
    }

    async fn lock(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
        locked: bool,
    ) -> Result<(), ErrorBody> {
        let code = seat.mirror.code();
        let slots = self.slots(seat, 1)?;
        if self.cluster.lock(code, actor, locked).await?
            && let Some(slot) = slots.into_iter().next()
        {
            slot.write(Write::Locked { room: code.to_owned(), locked });
        }
        Ok(())
    }

    async fn kick(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
        target: &Target,
        removal: confab_core::Removal,
    ) -> Result<(), ErrorBody> {
        let code = seat.mirror.code();
        let mut slots = self.slots(seat, 2)?.into_iter();
        let (ban, roles) = self.cluster.kick(code, actor, target, removal).await?;
        // The ban, and a moderator's lost role, in the store too.
        if let Some(slot) = slots.next() {
            slot.write(Write::Ban { room: code.to_owned(), ban });
        }
        if let (Some(slot), Some(roles)) = (slots.next(), roles) {
            slot.write(Write::Roles { room: code.to_owned(), roles });
        }
        Ok(())
    }

    async fn unban(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
        user_id: &str,
    ) -> Result<(), ErrorBody> {
        let code = seat.mirror.code();
        let slots = self.slots(seat, 1)?;
        self.cluster.unban(code, actor, user_id).await?;
        if let Some(slot) = slots.into_iter().next() {
            slot.write(Write::Unban { room: code.to_owned(), user_id: user_id.to_owned() });
        }
        Ok(())
    }

    async fn bans(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
    ) -> Result<Vec<confab_core::Ban>, ErrorBody> {
        self.cluster.bans(seat.mirror.code(), actor).await
    }

    async fn delete(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
        message: &Message,
    ) -> Result<(), ErrorBody> {
        let code = seat.mirror.code();
        // The places for the tombstone and the change number, both taken
        // before either is used.
        let mut slots = self.content_slots(seat, 2)?.into_iter();
        // The store is the record: the text goes from it first (written
        // again for a tombstone: a delete that Redis then refused is
        // completed by its retry).
        if let Some(slot) = slots.next() {
            let quote = confab_proto::Quote::of(message).tombstone();
            slot.write(Write::Delete { room: code.to_owned(), seq: message.seq, quote, rev: None });
        }
        if message.deleted {
            return Ok(());
        }
        let rev = self.cluster.delete(code, actor, message).await?;
        // Its change number, so that the stored one never goes back should
        // Redis lose the room (the stored room comes back with it).
        if let Some(slot) = slots.next() {
            slot.write(Write::Rev { room: code.to_owned(), rev });
        }
        Ok(())
    }

    async fn edit(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
        message: &Message,
        body: &str,
        edited: &str,
    ) -> Result<(), ErrorBody> {
        let code = seat.mirror.code();
        let slots = self.content_slots(seat, 1)?;
        let changed = self.cluster.edit(code, actor, message.seq, body, edited).await?;
        self.store_change(seat, slots, changed);
        Ok(())
    }

    async fn react(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
        seq: u64,
        emoji: &str,
    ) -> Result<bool, ErrorBody> {
        let code = seat.mirror.code();
        let slots = self.content_slots(seat, 1)?;
        let (on, changed) = self.cluster.react(code, actor, seq, emoji).await?;
        self.store_change(seat, slots, changed);
        Ok(on)
    }

    async fn mute(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
        target: &Target,
        mute: Option<Option<Duration>>,
        shadow: bool,
    ) -> Result<(), ErrorBody> {
        self.cluster.mute(seat.mirror.code(), actor, target, mute, shadow).await
    }

    async fn mutes(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
    ) -> Result<Vec<confab_core::Mute>, ErrorBody> {
        self.cluster.mutes(seat.mirror.code(), actor).await
    }

    async fn slow(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
        seconds: u32,
    ) -> Result<(), ErrorBody> {
        let code = seat.mirror.code();
        let ms = (u64::from(seconds) * 1000).to_string();
        let slots = self.slots(seat, 1)?;
        if self.cluster.set(code, actor, "slow", &ms).await?
            && let Some(slot) = slots.into_iter().next()
        {
            slot.write(Write::Slow { room: code.to_owned(), seconds });
        }
        Ok(())
    }

    async fn retitle(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
        title: &str,
    ) -> Result<(), ErrorBody> {
        let code = seat.mirror.code();
        let slots = self.slots(seat, 1)?;
        if self.cluster.set(code, actor, "title", title).await?
            && let Some(slot) = slots.into_iter().next()
        {
            slot.write(Write::Title { room: code.to_owned(), title: title.to_owned() });
        }
        Ok(())
    }

    async fn post(
        &self,
        seat: &ClusterSeat,
        who: Joiner<'_>,
        draft: Draft,
        reply: Option<i64>,
    ) -> Result<(), ErrorBody> {
        let from = User { id: who.user.id.clone(), name: seat.name.clone() };
        self.cluster.post(&seat.mirror, who.conn, who.outbox, &from, draft, reply).await
    }

    async fn typing(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        user: &User,
        active: bool,
    ) -> Result<(), ErrorBody> {
        self.cluster.typing(seat.mirror.code(), &user.id, active).await
    }

    async fn members(
        &self,
        code: &str,
        seat: Option<&ClusterSeat>,
        conn: u64,
        _user_id: &str,
    ) -> Result<(Vec<User>, Roles), ErrorBody> {
        // A seat whose user was removed from the room is no seat.
        let seat = seat.filter(|s| !s.mirror.was_kicked(conn));
        // Redis answers a private room this connection is not in exactly
        // as a missing one: the same commands, the same one-word answer.
        let key = self.services.room_key(code);
        self.cluster.members(&key, seat.is_some()).await?.ok_or_else(|| not_in(code))
    }

    async fn set_role(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        actor: &str,
        target: &Target,
        role: Role,
    ) -> Result<(), ErrorBody> {
        let code = seat.mirror.code();
        let slots = self.slots(seat, 1)?;
        let roles = self.cluster.set_role(code, actor, target, role).await?;
        // A persistent room's roles outlive Redis: the store is the record.
        if let Some(slot) = slots.into_iter().next() {
            slot.write(Write::Roles { room: code.to_owned(), roles });
        }
        Ok(())
    }

    async fn read(
        &self,
        seat: &ClusterSeat,
        _conn: u64,
        user_id: &str,
        range: Range,
    ) -> Result<Vec<Message>, ErrorBody> {
        let code = seat.mirror.code();
        let read = self.cluster.read(code, user_id, range.after, range.before, range.limit).await?;
        let range = Range { after: read.after, before: read.before, limit: range.limit };
        self.complete(&seat.mirror, read.messages, range, read.oldest, user_id).await
    }

    async fn all_rooms(&self) -> Result<Vec<(bool, RoomInfo)>, ErrorBody> {
        let rooms = self.cluster.public_rooms(true).await?;
        Ok(rooms
            .into_iter()
            .map(|info| (self.services.board(&info.code).is_some(), info))
            .collect())
    }

    async fn room_members(&self, code: &str) -> Result<(Vec<User>, Roles), ErrorBody> {
        let key = self.services.room_key(code);
        self.cluster.members(&key, true).await?.ok_or_else(|| confab_core::frames::not_found(code))
    }

    async fn close_room(&self, code: &str) -> Result<(), ErrorBody> {
        let key = self.services.room_key(code);
        let closed = self.cluster.close(&key).await?;
        let (persistent, public) = closed.ok_or_else(|| confab_core::frames::not_found(code))?;
        if persistent {
            self.services.store.delete_room(&key).await.map_err(|e| {
                tracing::warn!(room = key, "cannot remove a closed persistent room: {e}");
                confab_core::frames::storage_down()
            })?;
        }
        // As `RoomSpec::shown_code`: a private ephemeral room's code stays out.
        let shown = if persistent || public { key.as_str() } else { "(private)" };
        tracing::info!(room = shown, "room closed by the operator");
        Ok(())
    }

    async fn announce(&self, text: &str) -> Result<usize, ErrorBody> {
        self.cluster.every_room(&["announce", text]).await
    }

    async fn grant(&self, code: &str, target: &Target, role: Role) -> Result<(), ErrorBody> {
        let key = self.services.room_key(code);
        let board = self.services.board(&key).is_some();
        // Whether the room is stored shows only in Redis's answer: a place
        // is held either way.
        let slot = self.services.reserve_write()?;
        let (roles, persistent) = self.cluster.grant(&key, target, role, board).await?;
        if persistent {
            slot.write(Write::Roles { room: key, roles });
        }
        Ok(())
    }

    async fn purge(&self, user_id: &str) -> Result<(), ErrorBody> {
        let (_, purged) = self.cluster.purge(user_id).await?;
        // Each room's change number, so that the stored one never goes back
        // (a room that is not stored has none to move).
        for (room, rev) in purged {
            self.services.remember(confab_core::Write::Rev { room, rev });
        }
        self.services.store.purge_user(user_id).await.map_err(|e| {
            tracing::warn!("cannot purge a user's messages: {e}");
            confab_core::frames::storage_down()
        })?;
        Ok(())
    }

    async fn public_rooms(&self) -> Result<Vec<(bool, RoomInfo)>, ErrorBody> {
        let rooms = self.cluster.public_rooms(false).await?;
        Ok(rooms
            .into_iter()
            .map(|info| (self.services.board(&info.code).is_some(), info))
            .collect())
    }

    fn room_count(&self) -> usize {
        self.cluster.mirror_count()
    }

    fn healthy(&self) -> Option<bool> {
        Some(self.cluster.healthy())
    }

    fn sessions_shared(&self) -> bool {
        true
    }

    fn shutdown(&self) {
        self.cluster.shut_down();
    }

    async fn settle(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            while self.cluster.departing() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}
