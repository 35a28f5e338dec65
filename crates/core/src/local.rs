//! The local room backend: every room is a critical section in this
//! process (see `room.rs`), persistent rooms are written through the
//! node's store.

use std::collections::HashMap;
use std::sync::Arc;

use confab_proto::{ErrorBody, JoinResult, Message, Retention, Role, Roles, RoomInfo, User};
use parking_lot::RwLock;

use crate::backend::{
    Departure, Draft, Joiner, NewRoom, Range, RoomBackend, Seat, Services, Since, Target,
};
use crate::frames::{not_found, not_in, storage_down, unavailable};
use crate::room::{Room, RoomLimits, Slice};
use crate::store::{StoreError, StoredRoom};
use crate::{CloseReason, ids};

/// The rooms of a node on its own.
#[derive(Clone)]
pub struct LocalRooms {
    inner: Arc<Inner>,
}

struct Inner {
    services: Arc<Services>,
    /// Rooms by key: boards under their lower-case name, created rooms
    /// under their upper-case code. Locked for a lookup or an insert only,
    /// never across `.await` and never while a room is locked.
    rooms: RwLock<HashMap<String, Arc<Room>>>,
}

/// A connection's place in a local room.
pub struct LocalSeat(Arc<Room>);

impl Seat for LocalSeat {
    fn code(&self) -> &str {
        self.0.code()
    }
}

impl LocalRooms {
    /// Loads every persistent room of the store (its settings and latest
    /// `seq`, no messages), boards that are no longer configured aside.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn open(services: &Arc<Services>) -> Result<LocalRooms, StoreError> {
        let config = &services.config;
        let mut rooms = HashMap::new();
        for StoredRoom { spec, last_seq, roles, locked, bans, slow, rev } in
            services.store.rooms().await?
        {
            if spec.board && services.board(&spec.code).is_none() {
                continue;
            }
            let key = if spec.board { spec.code.to_lowercase() } else { spec.code.clone() };
            let limits = RoomLimits {
                seats: spec.seats(config.max_capacity),
                window: config.room_window,
                dedup: config.dedup_window,
            };
            let persister = Some(services.persister.clone());
            let room = Room::new(spec, limits, persister, last_seq, roles);
            room.set_locked_at_load(locked);
            room.load_bans(bans);
            room.set_slow_at_load(slow);
            room.set_rev_at_load(rev);
            rooms.insert(key, Arc::new(room));
        }
        let inner = Inner { services: services.clone(), rooms: RwLock::new(rooms) };
        Ok(LocalRooms { inner: Arc::new(inner) })
    }

    fn services(&self) -> &Services {
        &self.inner.services
    }

    /// Finds a room by code (case-insensitive) or board name.
    fn room(&self, code: &str) -> Option<Arc<Room>> {
        let code = code.trim();
        let rooms = self.inner.rooms.read();
        rooms.get(&code.to_lowercase()).or_else(|| rooms.get(&code.to_uppercase())).cloned()
    }

    /// Acts on what a departure did: starts a grace timer, or removes a
    /// destroyed room.
    fn settle(&self, room: &Arc<Room>, departure: Departure) {
        match departure {
            Departure::Quiet | Departure::Left => {}
            Departure::Destroyed => self.forget(room),
            Departure::Grace { user_id, epoch } => {
                let rooms = self.clone();
                let room = room.clone();
                let grace = self.services().config.grace;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    let departure = room.expire_grace(&user_id, epoch);
                    rooms.settle(&room, departure);
                });
            }
        }
    }

    fn forget(&self, room: &Arc<Room>) {
        let mut rooms = self.inner.rooms.write();
        if rooms.get(room.code()).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(room.code());
        }
        tracing::info!(room = room.shown_code(), "room ended");
    }

    /// Completes a slice with its store part, if it has one.
    async fn complete(
        &self,
        room: &Room,
        slice: Slice,
        reader: &str,
    ) -> Result<Vec<Message>, ErrorBody> {
        let Some(fetch) = slice.fetch else { return Ok(slice.window) };
        let range = Range { after: fetch.after, before: fetch.before, limit: fetch.limit };
        let mut messages = self.services().stored(room.code(), range, reader).await?;
        messages.extend(slice.window);
        Ok(messages)
    }

    fn all(&self) -> Vec<Arc<Room>> {
        self.inner.rooms.read().values().cloned().collect()
    }
}

impl RoomBackend for LocalRooms {
    type Seat = LocalSeat;

    async fn create(&self, new: NewRoom) -> Result<RoomInfo, ErrorBody> {
        let services = self.services();
        let config = &services.config;
        let code = {
            let rooms = self.inner.rooms.read();
            (0..32)
                .map(|_| ids::room_code(config.code_len))
                .find(|code| !rooms.contains_key(code))
                .ok_or_else(|| unavailable("no free room code; try again"))?
        };
        let spec = new.spec(code.clone());
        if spec.retention == Retention::Persistent {
            if !services.store_healthy() {
                return Err(storage_down());
            }
            let stored = StoredRoom {
                rev: 0,
                spec: spec.clone(),
                last_seq: 0,
                roles: new.roles(),
                locked: false,
                bans: Vec::new(),
                slow: 0,
            };
            services.store.save_room(&stored).await.map_err(|e| {
                tracing::warn!("cannot store room {code}: {e}");
                storage_down()
            })?;
        }
        let limits = RoomLimits {
            seats: spec.seats(config.max_capacity),
            window: config.room_window,
            dedup: config.dedup_window,
        };
        let retention = spec.retention;
        let room =
            Arc::new(Room::new(spec, limits, Some(services.persister.clone()), 0, new.roles()));
        {
            let mut rooms = self.inner.rooms.write();
            if rooms.contains_key(&code) {
                return Err(unavailable("room code clash; try again"));
            }
            rooms.insert(code, room.clone());
        }
        if retention == Retention::Ephemeral {
            let rooms = self.clone();
            let ttl = config.unjoined_room_ttl;
            let unjoined = Arc::downgrade(&room);
            tokio::spawn(async move {
                tokio::time::sleep(ttl).await;
                if let Some(room) = unjoined.upgrade()
                    && room.close_if_empty()
                {
                    rooms.forget(&room);
                }
            });
        }
        tracing::debug!(room = room.code(), retention = retention.as_str(), "room created");
        Ok(room.info())
    }

    async fn join(
        &self,
        who: Joiner<'_>,
        code: &str,
        since: Option<Since>,
        rejoin: bool,
        seated: Option<&LocalSeat>,
    ) -> Result<(LocalSeat, JoinResult), ErrorBody> {
        let services = self.services();
        let room = self.room(code).ok_or_else(|| not_found(code))?;
        if rejoin && !room.holds_seat(&who.user.id) {
            return Err(not_found(code));
        }
        let store = &services.store;
        let storage_failed = |e: StoreError| {
            tracing::warn!(room = room.code(), "cannot read the room: {e}");
            storage_down()
        };
        if let Some(after) = room.needs_warming() {
            let recent = store.recent_cids(room.code(), after).await.map_err(storage_failed)?;
            // The window too, so that the newest stored messages may be
            // edited and reacted to after a restart.
            let (after, before, limit) = room.window_to_load();
            let newest = store
                .messages(room.code(), after, before, limit, None)
                .await
                .map_err(storage_failed)?;
            room.warm(recent, newest);
        }
        let stored = if room.is_persistent() && !room.knows(&who.user.id) {
            store.visibility(room.code(), &who.user.id).await.map_err(storage_failed)?
        } else {
            None
        };
        let joined = room.join(
            who.conn,
            who.outbox,
            who.user,
            since,
            services.config.resume_limit,
            stored,
            rejoin,
            who.address,
        )?;
        let mut result = joined.result;
        if let Some(fetch) = joined.fetch {
            let slice = Slice { window: std::mem::take(&mut result.messages), fetch: Some(fetch) };
            match self.complete(&room, slice, &who.user.id).await {
                Ok(messages) => result.messages = messages,
                Err(e) => {
                    if seated.is_some() {
                        // In the room before: it stays, as it was.
                        room.activate(who.conn);
                    } else if let Ok(departure) = room.leave(who.conn, &who.user.id) {
                        // The seat was taken; give it back before failing.
                        self.settle(&room, departure);
                    }
                    return Err(e);
                }
            }
        }
        Ok((LocalSeat(room), result))
    }

    fn activate(&self, seat: &LocalSeat, conn: u64) {
        seat.0.activate(conn);
    }

    async fn leave(
        &self,
        code: &str,
        seat: Option<&LocalSeat>,
        conn: u64,
        user_id: &str,
    ) -> Result<(), ErrorBody> {
        // Another connection's seat held in grace ends with a `leave`
        // from this one; any other room answers as one that does not
        // exist.
        let room = match seat {
            Some(seat) => seat.0.clone(),
            None => self.room(code).ok_or_else(|| not_in(code))?,
        };
        let departure = room.leave(conn, user_id).map_err(|_| not_in(code))?;
        self.settle(&room, departure);
        Ok(())
    }

    fn disconnect(&self, seat: LocalSeat, conn: u64, user_id: &str, grace: bool) {
        let departure = seat.0.disconnect(conn, user_id, grace);
        self.settle(&seat.0, departure);
    }

    async fn post(
        &self,
        seat: &LocalSeat,
        who: Joiner<'_>,
        draft: Draft,
        reply: Option<i64>,
    ) -> Result<(), ErrorBody> {
        seat.0.post(who.conn, who.user, draft, reply)
    }

    async fn typing(
        &self,
        seat: &LocalSeat,
        conn: u64,
        user: &User,
        active: bool,
    ) -> Result<(), ErrorBody> {
        seat.0.typing(conn, user, active)
    }

    async fn members(
        &self,
        code: &str,
        seat: Option<&LocalSeat>,
        conn: u64,
        user_id: &str,
    ) -> Result<(Vec<User>, Roles), ErrorBody> {
        // A public room's members are anyone's to see; a private one
        // answers as one that does not exist.
        let room = match seat {
            Some(seat) => seat.0.clone(),
            None => self.room(code).filter(|room| room.meta.public).ok_or_else(|| not_in(code))?,
        };
        room.members(conn, user_id).map_err(|_| not_in(code))
    }

    async fn set_role(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
        target: &Target,
        role: Role,
    ) -> Result<(), ErrorBody> {
        let room = &seat.0;
        let slots = self.services().reserve_writes(room.is_persistent(), 1)?;
        let roles = room.set_role(conn, actor, target, role)?;
        if let Some(slot) = slots.into_iter().next() {
            slot.write(crate::Write::Roles { room: room.code().to_owned(), roles });
        }
        Ok(())
    }

    async fn lock(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
        locked: bool,
    ) -> Result<(), ErrorBody> {
        let room = &seat.0;
        let slots = self.services().reserve_writes(room.is_persistent(), 1)?;
        if room.lock(conn, actor, locked)?
            && let Some(slot) = slots.into_iter().next()
        {
            slot.write(crate::Write::Locked { room: room.code().to_owned(), locked });
        }
        Ok(())
    }

    async fn kick(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
        target: &Target,
        removal: crate::Removal,
    ) -> Result<(), ErrorBody> {
        let room = &seat.0;
        let mut slots = self.services().reserve_writes(room.is_persistent(), 2)?.into_iter();
        let (ban, roles) = room.kick(conn, actor, target, removal)?;
        // The ban, and a moderator's lost role, in the store too.
        if let Some(slot) = slots.next() {
            slot.write(crate::Write::Ban { room: room.code().to_owned(), ban });
        }
        if let (Some(slot), Some(roles)) = (slots.next(), roles) {
            slot.write(crate::Write::Roles { room: room.code().to_owned(), roles });
        }
        Ok(())
    }

    async fn unban(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
        user_id: &str,
    ) -> Result<(), ErrorBody> {
        seat.0.unban(conn, actor, user_id)
    }

    async fn bans(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
    ) -> Result<Vec<crate::Ban>, ErrorBody> {
        seat.0.bans(conn, actor)
    }

    async fn delete(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
        message: &Message,
    ) -> Result<(), ErrorBody> {
        seat.0.delete(conn, actor, message)
    }

    async fn edit(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
        message: &Message,
        body: &str,
        edited: &str,
    ) -> Result<(), ErrorBody> {
        seat.0.edit(conn, actor, message.seq, body, edited)
    }

    async fn react(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
        seq: u64,
        emoji: &str,
    ) -> Result<bool, ErrorBody> {
        seat.0.react(conn, actor, seq, emoji)
    }

    async fn mute(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
        target: &Target,
        mute: Option<Option<std::time::Duration>>,
        shadow: bool,
    ) -> Result<(), ErrorBody> {
        seat.0.mute(conn, actor, target, mute, shadow)
    }

    async fn mutes(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
    ) -> Result<Vec<crate::Mute>, ErrorBody> {
        seat.0.mutes(conn, actor)
    }

    async fn slow(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
        seconds: u32,
    ) -> Result<(), ErrorBody> {
        let room = &seat.0;
        let slots = self.services().reserve_writes(room.is_persistent(), 1)?;
        if room.set_slow(conn, actor, seconds)?
            && let Some(slot) = slots.into_iter().next()
        {
            slot.write(crate::Write::Slow { room: room.code().to_owned(), seconds });
        }
        Ok(())
    }

    async fn retitle(
        &self,
        seat: &LocalSeat,
        conn: u64,
        actor: &str,
        title: &str,
    ) -> Result<(), ErrorBody> {
        let room = &seat.0;
        let slots = self.services().reserve_writes(room.is_persistent(), 1)?;
        if room.retitle(conn, actor, title)?
            && let Some(slot) = slots.into_iter().next()
        {
            slot.write(crate::Write::Title {
                room: room.code().to_owned(),
                title: title.to_owned(),
            });
        }
        Ok(())
    }

    async fn read(
        &self,
        seat: &LocalSeat,
        conn: u64,
        user_id: &str,
        range: Range,
    ) -> Result<Vec<Message>, ErrorBody> {
        let slice = seat.0.read(conn, user_id, range)?;
        self.complete(&seat.0, slice, user_id).await
    }

    async fn public_rooms(&self) -> Result<Vec<(bool, RoomInfo)>, ErrorBody> {
        let rooms = self.inner.rooms.read();
        Ok(rooms.values().filter(|r| r.meta.public).map(|r| (r.meta.board, r.info())).collect())
    }

    async fn all_rooms(&self) -> Result<Vec<(bool, RoomInfo)>, ErrorBody> {
        let rooms = self.inner.rooms.read();
        Ok(rooms.values().map(|r| (r.meta.board, r.info())).collect())
    }

    async fn room_members(&self, code: &str) -> Result<(Vec<User>, Roles), ErrorBody> {
        let room = self.room(code).ok_or_else(|| not_found(code))?;
        room.operator_members()
    }

    async fn close_room(&self, code: &str) -> Result<(), ErrorBody> {
        let key = self.services().room_key(code);
        let room = self.inner.rooms.write().remove(&key).ok_or_else(|| not_found(code))?;
        room.close_by_operator();
        if room.is_persistent() {
            self.services().store.delete_room(room.code()).await.map_err(|e| {
                tracing::warn!(room = room.code(), "cannot remove a closed room: {e}");
                storage_down()
            })?;
        }
        tracing::info!(room = room.shown_code(), "room closed by the operator");
        Ok(())
    }

    async fn grant(&self, code: &str, target: &Target, role: Role) -> Result<(), ErrorBody> {
        let room = self.room(code).ok_or_else(|| not_found(code))?;
        let slots = self.services().reserve_writes(room.is_persistent(), 1)?;
        let roles = room.grant(target, role)?;
        if let Some(slot) = slots.into_iter().next() {
            slot.write(crate::Write::Roles { room: room.code().to_owned(), roles });
        }
        Ok(())
    }

    async fn announce(&self, text: &str) -> Result<usize, ErrorBody> {
        let rooms = self.all();
        for room in &rooms {
            room.notice(text);
        }
        Ok(rooms.len())
    }

    async fn purge(&self, user_id: &str) -> Result<(), ErrorBody> {
        for room in self.all() {
            room.purge(user_id);
        }
        self.services().store.purge_user(user_id).await.map_err(|e| {
            tracing::warn!("cannot purge a user's messages: {e}");
            storage_down()
        })?;
        Ok(())
    }

    fn room_count(&self) -> usize {
        self.inner.rooms.read().len()
    }

    fn prune(&self, boards: bool, keep: Option<u64>, cutoff: Option<&str>) {
        let rooms = self.all();
        for room in rooms.iter().filter(|r| r.is_persistent() && r.meta.board == boards) {
            room.prune_window(keep, cutoff);
        }
    }

    fn shutdown(&self) {
        // Every room's `closed` is queued before any connection closes: a
        // writer that saw its close first would end before the next room's
        // event was queued.
        let rooms = self.all();
        for room in &rooms {
            room.announce_shutdown();
        }
        for room in &rooms {
            room.close_connections(CloseReason::Shutdown);
        }
    }
}
