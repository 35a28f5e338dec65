//! A connection's room ops when the node is one of a cluster: each goes
//! to the room's script in Redis, and the connection receives events
//! through its node's mirror of the room.

use std::sync::Arc;

use confab_proto::{ClientOp, ErrorBody, ErrorCode, JoinResult, Message};

use super::{Conn, Empty, MembersResult, MessageResult, MessagesResult, not_in, page_limit};
use crate::cluster::{Cluster, Gone, Mirror};
use crate::hub::UserRecord;
use crate::limits::check_post;
use crate::now_rfc3339;
use crate::persist::unavailable;
use crate::rates::Limit;
use crate::room::Draft;

/// A room this connection joined in the cluster.
pub(super) struct Seat {
    pub mirror: Arc<Mirror>,
    /// The node's incarnation when the connection joined: what Redis
    /// counts the connection under.
    pub incarnation: String,
    /// The name the room knows the user by (a name another member holds
    /// is not taken on a rejoin): what this connection's posts carry.
    pub name: String,
}

impl Conn {
    /// Applies a room op through the cluster. Ops that do not touch a
    /// room's state come back to be applied as on a single node.
    pub(super) async fn apply_clustered(
        &mut self,
        cluster: &Arc<Cluster>,
        id: Option<i64>,
        user: &Arc<UserRecord>,
        op: ClientOp,
    ) -> Result<Option<ClientOp>, ErrorBody> {
        match op {
            ClientOp::Leave { room } => {
                let code = self.hub.cluster_key(&room);
                let Some(i) = self.seats.iter().position(|s| s.mirror.code() == code) else {
                    return Err(not_in(&room));
                };
                let incarnation = self.seats[i].incarnation.clone();
                match cluster.depart(&code, &user.id, &incarnation, true, false).await? {
                    Gone::NotMember => return Err(not_in(&room)),
                    Gone::Quiet | Gone::Left | Gone::Destroyed | Gone::Grace(_) => {}
                }
                let seat = self.seats.swap_remove(i);
                seat.mirror.remove(self.id);
                cluster.release_mirror(&seat.mirror);
                self.ok(id, &Empty {})?;
            }
            ClientOp::Post { room, body, subject, cid } => {
                let config = self.hub.config();
                check_post(&config.limits, &body, subject.as_deref(), cid.as_deref())?;
                let (mirror, name) = self.seat_named(&room)?;
                self.hub.limiters().check(Limit::Post, &user.id)?;
                let subject = subject.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
                let draft = Draft { body, subject, cid, ts: now_rfc3339() };
                let from = confab_proto::User { id: user.id.clone(), name };
                cluster.post(&mirror, self.id, &self.outbox, &from, draft, id).await?;
            }
            ClientOp::Typing { room, active } => {
                let mirror = self.seat(&room)?;
                // Over the budget, an indicator is dropped, not fanned out.
                if self.hub.limiters().check(Limit::Typing, &user.id).is_ok() {
                    cluster.typing(mirror.code(), &user.id, active).await?;
                }
                self.ok(id, &Empty {})?;
            }
            ClientOp::Members { room } => {
                // Redis answers a private room this connection is not in
                // exactly as a missing one: the same commands, the same
                // one-word answer.
                let code = self.hub.cluster_key(&room);
                let joined = self.seats.iter().any(|s| s.mirror.code() == code);
                let Some(members) = cluster.members(&code, joined).await? else {
                    return Err(not_in(&room));
                };
                self.ok(id, &MembersResult { members })?;
            }
            ClientOp::History { room, before, limit } => {
                let limit = page_limit(limit)?;
                let mirror = self.seat(&room)?;
                let before = before.unwrap_or(u64::MAX);
                let read = cluster.read(mirror.code(), &user.id, 0, before, limit).await?;
                let messages = self
                    .complete(&mirror, read.messages, read.after, read.before, read.oldest, limit)
                    .await?;
                self.ok(id, &MessagesResult { messages })?;
            }
            ClientOp::Get { room, seq } => {
                let mirror = self.seat(&room)?;
                let (after, before) = (seq.saturating_sub(1), seq.saturating_add(1));
                let read = cluster.read(mirror.code(), &user.id, after, before, 1).await?;
                let message = self
                    .complete(&mirror, read.messages, read.after, read.before, read.oldest, 1)
                    .await?
                    .pop()
                    .ok_or_else(|| {
                        ErrorBody::new(
                            ErrorCode::NotFound,
                            format!("no message {seq} in room {} that you may see", mirror.code()),
                        )
                    })?;
                self.ok(id, &MessageResult { message })?;
            }
            op => return Ok(Some(op)),
        }
        Ok(None)
    }

    /// Joins a room of the cluster, leaving the connection pending in its
    /// mirror until the caller has queued the reply and activates it.
    pub(super) async fn join_clustered(
        &mut self,
        cluster: &Arc<Cluster>,
        code: &str,
        since: Option<u64>,
        rejoin: bool,
    ) -> Result<(Arc<Mirror>, JoinResult), ErrorBody> {
        let user = self.authenticated()?;
        let public = user.public();
        let code = self.hub.cluster_key(code);
        // What the store remembers of the user's visible range, for a
        // persistent room that Redis lost (the store is the record). A
        // rejoin keeps the range Redis has.
        let stored = match rejoin {
            true => None,
            false => match self.hub.store().visibility(&code, &public.id).await {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::debug!(room = code, "cannot read visibility: {e}");
                    None
                }
            },
        };
        // A connection joining a room it is in already is counted once.
        let seated = self.seats.iter().any(|s| s.mirror.code() == code);
        let mirror = cluster.mirror_for_join(&code);
        let joined = match cluster
            .join(&code, &public, since, self.hub.config().resume_limit, stored, rejoin, seated)
            .await
        {
            Ok(joined) => joined,
            Err(e) => {
                mirror.join_failed();
                cluster.release_mirror(&mirror);
                return Err(e);
            }
        };
        if joined.new && joined.info.retention == confab_proto::Retention::Persistent {
            self.hub.remember_visibility(&code, &public.id, joined.from);
        }
        let incarnation = cluster.incarnation();
        let missing = mirror.add(&joined, &public.id, self.id, &self.outbox, &incarnation);
        let name = joined
            .members
            .iter()
            .find(|m| m.id == public.id)
            .map_or_else(|| public.name.clone(), |m| m.name.clone());
        match self.seats.iter_mut().find(|s| Arc::ptr_eq(&s.mirror, &mirror)) {
            Some(seat) => seat.name = name,
            None => {
                self.seats.retain(|s| s.mirror.code() != code);
                let seat = Seat { mirror: mirror.clone(), incarnation: incarnation.clone(), name };
                self.seats.push(seat);
            }
        }
        if let Some((after, upto)) = missing {
            let envelopes = cluster.events(&code, after, Some(upto)).await.unwrap_or_default();
            mirror.catch_up(self.id, after, upto, envelopes, &incarnation);
        }
        let limit = joined.limit;
        let before = joined.seq + 1;
        let messages = match self
            .complete(&mirror, joined.messages, joined.after, before, joined.oldest, limit)
            .await
        {
            Ok(messages) => messages,
            Err(e) => {
                // The seat was taken; give it back before failing.
                if cluster.depart(&code, &public.id, &incarnation, true, false).await.is_ok() {
                    self.seats.retain(|s| !Arc::ptr_eq(&s.mirror, &mirror));
                    mirror.remove(self.id);
                    cluster.release_mirror(&mirror);
                }
                return Err(e);
            }
        };
        let gap =
            since.is_some_and(|since| (messages.len() as u64) < joined.seq.saturating_sub(since));
        let result = JoinResult {
            room: joined.info,
            members: joined.members,
            messages,
            seq: joined.seq,
            gap,
        };
        Ok((mirror, result))
    }

    /// Messages a room op read from Redis's window (newest first), oldest
    /// first, with the part older than the window read from the store for
    /// a persistent room.
    async fn complete(
        &self,
        mirror: &Mirror,
        mut newest_first: Vec<Message>,
        after: u64,
        before: u64,
        oldest: u64,
        limit: usize,
    ) -> Result<Vec<Message>, ErrorBody> {
        newest_first.reverse();
        let mut messages = newest_first;
        if !mirror.persistent() || messages.len() >= limit {
            return Ok(messages);
        }
        let older_before = messages.first().map_or(before, |m| m.seq).min(before).min(oldest);
        if after.saturating_add(1) >= older_before {
            return Ok(messages);
        }
        let mut older = self
            .hub
            .store()
            .messages(mirror.code(), after, older_before, limit - messages.len())
            .await
            .map_err(|e| {
                tracing::warn!(room = mirror.code(), "cannot read messages: {e}");
                unavailable("storage is unavailable; try again shortly")
            })?;
        older.append(&mut messages);
        Ok(older)
    }

    /// The mirror of a room this connection joined, found among its own
    /// seats only: a room that does not exist and one that is not this
    /// connection's answer the same error, by the same path.
    fn seat(&self, room: &str) -> Result<Arc<Mirror>, ErrorBody> {
        self.seat_named(room).map(|(mirror, _)| mirror)
    }

    /// The mirror of a room this connection joined, and the name the room
    /// knows the user by.
    fn seat_named(&self, room: &str) -> Result<(Arc<Mirror>, String), ErrorBody> {
        let code = self.hub.cluster_key(room);
        match self.seats.iter().find(|s| s.mirror.code() == code) {
            Some(seat) => Ok((seat.mirror.clone(), seat.name.clone())),
            None => Err(not_in(room)),
        }
    }

    /// The connection closed: each room it was in hears of it in the
    /// background.
    pub(super) fn drop_clustered(&mut self, cluster: &Arc<Cluster>, grace: bool) {
        let grace = if grace { self.hub.config().grace } else { std::time::Duration::ZERO };
        let Some(user) = &self.user else { return };
        for seat in self.seats.drain(..) {
            seat.mirror.remove(self.id);
            cluster.departed(seat.mirror, user.id.clone(), seat.incarnation, grace);
        }
    }
}
