//! The room ops of a cluster: each one call of the room script.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use confab_core::frames::{message_reply, name_taken, room_full};
use confab_proto::{ErrorBody, Message, RoomInfo, User};

use super::*;
use crate::batch::Posted;

impl Cluster {
    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        self: &Arc<Self>,
        code: &str,
        user: &User,
        since: Option<confab_core::Since>,
        resume_limit: usize,
        stored: Option<StoredVisibility>,
        rejoin: bool,
        seated: bool,
        address: Option<&str>,
    ) -> Result<ClusterJoin, ErrorBody> {
        let json = serde_json::to_string(user).expect("users serialize");
        let name_key = confab_core::name_key(&user.name);
        let stored = stored
            .map(|v| {
                format!("{},{}", v.from, v.left_at.map_or(-1, |l| i64::try_from(l).unwrap_or(-1)))
            })
            .unwrap_or_default();
        let seen = since.and_then(|s| s.rev).map_or_else(|| "-1".to_owned(), |r| r.to_string());
        let since = since.map_or_else(|| "-1".to_owned(), |s| s.seq.to_string());
        let incarnation = self.incarnation();
        // A join this node stops waiting for may still run in Redis later
        // (its command held up on the way): named, so that it can be
        // cancelled, and undone if it ran.
        let op_id = format!("{:016x}", rand::random::<u64>());
        let r = self
            .room_op_with(
                code,
                &op_id,
                &[
                    "join",
                    code,
                    &user.id,
                    &json,
                    &name_key,
                    &incarnation,
                    &since,
                    &resume_limit.to_string(),
                    &stored,
                    if rejoin { "1" } else { "0" },
                    if seated { "1" } else { "0" },
                    &op_id,
                    address.unwrap_or(""),
                    &seen,
                ],
            )
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                self.cancel_join(code, &user.id, &incarnation, op_id);
                return Err(e);
            }
        };
        match r.status() {
            "ok" => {}
            "room_full" => return Err(room_full(code, r.int(1)?)),
            "locked" => return Err(confab_core::frames::locked_out(code)),
            "banned" => {
                let wait = u64::try_from(r.int(1)?).ok().map(Duration::from_millis);
                return Err(match r.text(2)? {
                    "banned" => confab_core::frames::banned_out(code, wait),
                    _ => confab_core::frames::kicked_out(code, wait.unwrap_or_default()),
                });
            }
            "name_taken" => return Err(name_taken(code, &user.name)),
            _ => return Err(not_found(code)),
        }
        let info: RoomInfo = r.json(5)?;
        let members: Vec<User> = r.list(6)?;
        Ok(ClusterJoin {
            new: r.int(1)? == 1,
            seq: r.uint(2)?,
            ev: r.uint(3)?,
            from: r.uint(4)?,
            info: RoomInfo { members: members.len(), ..info },
            members,
            messages: r.list(7)?,
            after: r.uint(8)?,
            limit: usize::try_from(r.uint(9)?).unwrap_or(usize::MAX),
            oldest: r.uint(10)?,
            roles: super::roles(&r.texts(11)?),
            locked: r.text(12)? == "1",
            slow: u32::try_from(r.uint(13)? / 1000).unwrap_or(u32::MAX),
            rev: r.uint(14)?,
            changed: r.list(15)?,
        })
    }

    /// Cancels a join that timed out, in the background, until Redis has
    /// taken the cancel: if the join ran, it is undone (its seat freed,
    /// a `leave` for a member it added); if it runs later, it does nothing.
    /// Once this node is a new incarnation, the sweep frees what the old
    /// one held, and the cancel is no longer needed.
    pub(super) fn cancel_join(
        self: &Arc<Self>,
        code: &str,
        user_id: &str,
        incarnation: &str,
        op_id: String,
    ) {
        let cluster = self.clone();
        let (code, user_id, incarnation) =
            (code.to_owned(), user_id.to_owned(), incarnation.to_owned());
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(200);
            while cluster.incarnation() == incarnation {
                let token = match cluster.grace.is_zero() {
                    true => String::new(),
                    false => grace_token(
                        &incarnation,
                        cluster.grace_epoch.fetch_add(1, Ordering::Relaxed),
                    ),
                };
                let args =
                    ["cancel", code.as_str(), user_id.as_str(), incarnation.as_str(), &token];
                match cluster.room_op_with(&code, &op_id, &args).await {
                    Ok(r) => {
                        match r.status() {
                            "grace" => {
                                let grace = cluster.grace;
                                cluster.start_grace(code.clone(), user_id.clone(), token, grace);
                            }
                            "undone" => log_ended(&r, 1, &code),
                            _ => return,
                        }
                        // Not naming the room: its code may be private.
                        tracing::info!("cluster: a join that timed out was undone");
                        return;
                    }
                    Err(_) => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }

    /// One connection of `user_id` on this node leaves (`leave`) or drops
    /// (`drop`, holding the seat for the grace if `grace`). `incarnation`
    /// is what the connection was counted under; `None` for a `leave` of
    /// the user's seat held in grace, from a connection not in the room.
    /// `None` back: the user is not a member (through that connection).
    pub async fn depart(
        &self,
        code: &str,
        user_id: &str,
        incarnation: Option<&str>,
        explicit: bool,
        grace: bool,
    ) -> Result<Option<Departure>, ErrorBody> {
        let epoch = self.grace_epoch.fetch_add(1, Ordering::Relaxed);
        let token = match (grace, incarnation) {
            (true, Some(incarnation)) => grace_token(incarnation, epoch),
            _ => String::new(),
        };
        let op = if explicit { "leave" } else { "drop" };
        let r = self.room_op(code, &[op, code, user_id, incarnation.unwrap_or(""), &token]).await?;
        log_ended(&r, 0, code);
        Ok(departure(&r, user_id, epoch))
    }

    /// Gives `target` `role` in `code` on behalf of `actor` (see
    /// `room.lua`); the roles after it.
    pub async fn set_role(
        &self,
        code: &str,
        actor: &str,
        target: &confab_core::Target,
        role: confab_proto::Role,
    ) -> Result<confab_proto::Roles, ErrorBody> {
        let (id, name) = match target {
            confab_core::Target::Id(id) => (id.clone(), String::new()),
            confab_core::Target::Name(name) => (String::new(), confab_core::name_key(name)),
        };
        let r = self.room_op(code, &["role", code, actor, &id, &name, role.as_str()]).await?;
        match r.status() {
            "ok" => Ok(super::roles(&r.texts(1)?)),
            "forbidden" => Err(confab_core::frames::owner_only(code)),
            "own" => Err(confab_core::frames::own_role(code)),
            "no_member" => {
                let whom = match target {
                    confab_core::Target::Id(id) => id,
                    confab_core::Target::Name(name) => name,
                };
                Err(confab_core::frames::no_such_member(code, whom))
            }
            _ => Err(confab_core::frames::not_in(code)),
        }
    }

    /// Locks `code` or unlocks it on behalf of `actor` (see `room.lua`);
    /// whether it changed.
    pub async fn lock(&self, code: &str, actor: &str, locked: bool) -> Result<bool, ErrorBody> {
        let r = self.room_op(code, &["lock", code, actor, if locked { "1" } else { "0" }]).await?;
        match r.status() {
            "ok" => Ok(r.int(1)? == 1),
            "not_moderator" => Err(confab_core::frames::may_not_kick(
                code,
                "only the owner and moderators lock a room",
            )),
            _ => Err(confab_core::frames::not_in(code)),
        }
    }

    /// Removes `target` from `code` as `removal` says, on behalf of
    /// `actor` (see `room.lua`): the ban made, and the roles after it if
    /// the target lost one.
    pub async fn kick(
        &self,
        code: &str,
        actor: &str,
        target: &confab_core::Target,
        removal: confab_core::Removal,
    ) -> Result<(confab_core::Ban, Option<confab_proto::Roles>), ErrorBody> {
        use confab_core::frames::{may_not_kick, no_such_member, not_in};
        let (id, name) = match target {
            confab_core::Target::Id(id) => (id.clone(), String::new()),
            confab_core::Target::Name(name) => (String::new(), confab_core::name_key(name)),
        };
        let ms = removal.ban.map_or(0, |d| d.as_millis().max(1)).to_string();
        // The ban hash holds each ban and the addresses it bars.
        let most = (confab_core::backend::BANS_MAX * 5).to_string();
        let args = [
            "kick",
            code,
            actor,
            &id,
            &name,
            &ms,
            removal.reason.as_str(),
            if removal.address { "1" } else { "0" },
            &most,
        ];
        let r = self.room_op(code, &args).await?;
        match r.status() {
            "ok" => {
                let ban = parse_ban(r.text(2)?)
                    .ok_or_else(|| crate::reply::unexpected("a ban that cannot be read"))?;
                let roles = (r.int(3)? == 1).then(|| super::roles(&r.texts(1).unwrap_or_default()));
                Ok((ban, roles))
            }
            "not_moderator" => {
                Err(may_not_kick(code, "only the owner and moderators remove members"))
            }
            "owner" => Err(may_not_kick(code, "nobody removes the owner")),
            "moderator" => Err(may_not_kick(code, "only the owner removes a moderator")),
            "too_many" => Err(confab_core::frames::bad_request(format!(
                "room {code} has {} bans, the most it keeps; lift some first",
                confab_core::backend::BANS_MAX
            ))),
            "self" => {
                Err(confab_core::frames::bad_request(format!("to leave room {code}, send leave")))
            }
            "no_member" => {
                let whom = match target {
                    confab_core::Target::Id(id) => id,
                    confab_core::Target::Name(name) => name,
                };
                Err(no_such_member(code, whom))
            }
            _ => Err(not_in(code)),
        }
    }

    /// Lifts the ban of `user_id` in `code` on behalf of `actor`.
    pub async fn unban(&self, code: &str, actor: &str, user_id: &str) -> Result<(), ErrorBody> {
        let r = self.room_op(code, &["unban", code, actor, user_id]).await?;
        match r.status() {
            "ok" => Ok(()),
            "no_ban" => Err(confab_core::frames::no_ban(code, user_id)),
            "not_moderator" => Err(confab_core::frames::may_not_kick(
                code,
                "only the owner and moderators lift bans",
            )),
            "owners" => Err(confab_core::frames::may_not_kick(
                code,
                "only the owner lifts what the owner did",
            )),
            _ => Err(confab_core::frames::not_in(code)),
        }
    }

    /// The bans in force in `code`, for `actor`.
    pub async fn bans(&self, code: &str, actor: &str) -> Result<Vec<confab_core::Ban>, ErrorBody> {
        let r = self.room_op(code, &["bans", code, actor]).await?;
        match r.status() {
            "ok" => Ok(r.texts(1)?.iter().filter_map(|v| parse_ban(v)).collect()),
            "not_moderator" => Err(confab_core::frames::may_not_kick(
                code,
                "only the owner and moderators see bans",
            )),
            _ => Err(confab_core::frames::not_in(code)),
        }
    }

    /// Mutes `target` in `code` for `mute` (`None` inside: until lifted),
    /// or (`None`) lets them speak again, on behalf of `actor`.
    pub async fn mute(
        &self,
        code: &str,
        actor: &str,
        target: &confab_core::Target,
        mute: Option<Option<Duration>>,
        shadow: bool,
    ) -> Result<(), ErrorBody> {
        use confab_core::frames::may_not_kick;
        let (id, name) = match target {
            confab_core::Target::Id(id) => (id.clone(), String::new()),
            confab_core::Target::Name(name) => (String::new(), confab_core::name_key(name)),
        };
        let ms = match mute {
            None => "-1".to_owned(),
            Some(None) => "0".to_owned(),
            Some(Some(d)) => d.as_millis().max(1).to_string(),
        };
        let most = confab_core::backend::BANS_MAX.to_string();
        let shadow = if shadow { "1" } else { "0" };
        let args = ["mute", code, actor, &id, &name, &ms, &most, shadow];
        let r = self.room_op(code, &args).await?;
        let whom = match target {
            confab_core::Target::Id(id) | confab_core::Target::Name(id) => id,
        };
        match r.status() {
            "ok" => Ok(()),
            "not_moderator" => {
                Err(may_not_kick(code, "only the owner and moderators mute members"))
            }
            "owner" => Err(may_not_kick(code, "nobody mutes the owner")),
            "moderator" => Err(may_not_kick(code, "only the owner mutes a moderator")),
            "self" => Err(confab_core::frames::bad_request(format!(
                "you cannot mute yourself in room {code}"
            ))),
            "too_many" => Err(confab_core::frames::bad_request(format!(
                "room {code} has {} mutes, the most it keeps; lift some first",
                confab_core::backend::BANS_MAX
            ))),
            "no_member" => Err(confab_core::frames::no_such_member(code, whom)),
            "no_mute" => Err(confab_core::frames::not_muted(code, whom)),
            "owners" => Err(may_not_kick(code, "only the owner lifts what the owner did")),
            "self_unmute" => Err(may_not_kick(code, "nobody lets themselves speak again")),
            _ => Err(confab_core::frames::not_in(code)),
        }
    }

    /// Gives `target` `role` in `code` for the operator (see `room.lua`);
    /// the roles after it, and whether the room is persistent.
    pub async fn grant(
        &self,
        code: &str,
        target: &confab_core::Target,
        role: confab_proto::Role,
        board: bool,
    ) -> Result<(confab_proto::Roles, bool), ErrorBody> {
        let (id, name) = match target {
            confab_core::Target::Id(id) => (id.clone(), String::new()),
            confab_core::Target::Name(name) => (String::new(), confab_core::name_key(name)),
        };
        let board = if board { "1" } else { "0" };
        let r = self.room_op(code, &["grant", code, &id, &name, role.as_str(), board]).await?;
        match r.status() {
            "ok" => Ok((super::roles(&r.texts(1)?), r.int(2)? == 1)),
            "board" => Err(confab_core::frames::bad_request(
                "a board's owner is the operator: name moderators",
            )),
            "no_member" => {
                let whom = match target {
                    confab_core::Target::Id(id) | confab_core::Target::Name(id) => id,
                };
                Err(confab_core::frames::no_such_member(code, whom))
            }
            _ => Err(not_found(code)),
        }
    }

    /// Ends `code` for the operator; whether it was persistent and public,
    /// `None` if there is no such room.
    pub async fn close(&self, code: &str) -> Result<Option<(bool, bool)>, ErrorBody> {
        let r = self.room_op(code, &["close", code]).await?;
        match r.status() {
            "ok" => Ok(Some((r.int(1)? == 1, r.int(2)? == 1))),
            _ => Ok(None),
        }
    }

    /// Deletes `message` of `code` on behalf of `actor` (see `room.lua`).
    /// Deletes `message` on behalf of `actor`: the room's change number of it.
    pub async fn delete(
        &self,
        code: &str,
        actor: &str,
        message: &Message,
    ) -> Result<u64, ErrorBody> {
        let tombstone = serde_json::to_string(&message.tombstone()).expect("messages serialize");
        let quote = confab_proto::Quote::of(message).tombstone();
        let quote = serde_json::to_string(&quote).expect("quotes serialize");
        let key = message.cid.as_ref().map(|cid| format!("{}|{cid}", message.from.id));
        let seq = message.seq.to_string();
        let args = [
            "delete",
            code,
            actor,
            &seq,
            &message.from.id,
            &tombstone,
            key.as_deref().unwrap_or(""),
            &quote,
        ];
        let r = self.room_op(code, &args).await?;
        match r.status() {
            "ok" => r.uint(1),
            "forbidden" => Err(confab_core::frames::may_not_kick(
                code,
                "only its author, the owner and moderators (of members' messages) delete a message",
            )),
            _ => Err(confab_core::frames::not_in(code)),
        }
    }

    /// Replaces the text of message `seq` of `code` with `body` on behalf
    /// of `actor`, its author (see `room.lua`); the message as it is now,
    /// and its change number (`None`: no change).
    pub async fn edit(
        &self,
        code: &str,
        actor: &str,
        seq: u64,
        body: &str,
        edited: &str,
    ) -> Result<Option<(Message, u64)>, ErrorBody> {
        let seq_text = seq.to_string();
        let r = self.room_op(code, &["edit", code, actor, &seq_text, body, edited]).await?;
        match r.status() {
            "ok" => Ok(Some((r.json(2)?, r.uint(1)?))),
            "same" => Ok(None),
            status => Err(change_refused(code, seq, status, &r)),
        }
    }

    /// Puts `actor`'s `emoji` on message `seq` of `code`, or takes it off
    /// (see `room.lua`): whether it is on, the message as it is now, and
    /// its change number.
    pub async fn react(
        &self,
        code: &str,
        actor: &str,
        seq: u64,
        emoji: &str,
    ) -> Result<(bool, Option<(Message, u64)>), ErrorBody> {
        let seq_text = seq.to_string();
        let (kinds, yours, most) = (
            confab_core::REACTION_EMOJI_MAX.to_string(),
            confab_core::REACTIONS_PER_USER_MAX.to_string(),
            confab_core::REACTIONS_MAX.to_string(),
        );
        let args = ["react", code, actor, &seq_text, emoji, &kinds, &yours, &most];
        let r = self.room_op(code, &args).await?;
        match r.status() {
            // Taken nowhere (a shadow-muted member's).
            "ok" if r.uint(1)? == 0 => Ok((r.int(2)? == 1, None)),
            "ok" => Ok((r.int(2)? == 1, Some((r.json(3)?, r.uint(1)?)))),
            status => Err(change_refused(code, seq, status, &r)),
        }
    }

    /// The mutes in force in `code`, for `actor`.
    pub async fn mutes(
        &self,
        code: &str,
        actor: &str,
    ) -> Result<Vec<confab_core::Mute>, ErrorBody> {
        let r = self.room_op(code, &["mutes", code, actor]).await?;
        match r.status() {
            "ok" => Ok(r.texts(1)?.iter().filter_map(|v| parse_mute(v)).collect()),
            "not_moderator" => Err(confab_core::frames::may_not_kick(
                code,
                "only the owner and moderators see mutes",
            )),
            _ => Err(confab_core::frames::not_in(code)),
        }
    }

    /// Sets slow mode (`op` "slow", `value` ms) or the title (`op` "title")
    /// of `code` on behalf of `actor`; whether it changed.
    pub async fn set(
        &self,
        code: &str,
        actor: &str,
        op: &str,
        value: &str,
    ) -> Result<bool, ErrorBody> {
        let r = self.room_op(code, &[op, code, actor, value]).await?;
        match r.status() {
            "ok" => Ok(r.int(1)? == 1),
            "not_moderator" => Err(confab_core::frames::may_not_kick(
                code,
                match op {
                    "slow" => "only the owner and moderators set slow mode",
                    _ => "only the owner and moderators rename a room",
                },
            )),
            _ => Err(confab_core::frames::not_in(code)),
        }
    }

    /// Ends a member's grace, unless they came back.
    pub async fn expire(&self, code: &str, user_id: &str, token: &str) -> Result<(), ErrorBody> {
        let r = self.room_op(code, &["expire", code, user_id, token]).await?;
        log_ended(&r, 0, code);
        Ok(())
    }

    /// Runs a member's grace here: at its end, the member leaves unless
    /// they came back (on any node).
    pub fn start_grace(
        self: &Arc<Self>,
        code: String,
        user_id: String,
        token: String,
        grace: Duration,
    ) {
        *self.graces.lock().entry(code.clone()).or_default() += 1;
        let cluster = self.clone();
        tokio::spawn(async move {
            // A node that stops ends its graces: nobody would run their
            // timers after it (a member who came back elsewhere is kept).
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = cluster.stopping.cancelled() => {}
            }
            for attempt in 0..5u32 {
                match cluster.expire(&code, &user_id, &token).await {
                    Ok(_) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(500 << attempt)).await,
                }
            }
            let mut graces = cluster.graces.lock();
            if let Some(n) = graces.get_mut(&code) {
                *n -= 1;
                if *n == 0 {
                    graces.remove(&code);
                }
            }
        });
    }

    /// Posts to an ephemeral room. The reply reaches the poster with the
    /// event, in order; a retried `cid` is answered at once.
    #[allow(clippy::too_many_arguments)]
    pub async fn post(
        self: &Arc<Self>,
        mirror: &Arc<Mirror>,
        conn: u64,
        outbox: &Outbox,
        user: &User,
        draft: Draft,
        reply: Option<i64>,
    ) -> Result<(), ErrorBody> {
        let code = mirror.code();
        if mirror.persistent() {
            return self.post_persistent(mirror, conn, outbox, user, draft, reply).await;
        }
        let reply_arg = reply.map_or_else(|| "-".to_owned(), |r| r.to_string());
        let post = crate::batch::Post {
            code: code.to_owned(),
            user_id: user.id.clone(),
            origin: format!("{} {conn} {reply_arg}", self.incarnation()),
            cid: draft.cid.clone().unwrap_or_default(),
            tail: message_tail(code, user, &draft),
        };
        match self.post_batched(post).await? {
            Posted::Sent(_) => {
                metrics::counter!(confab_core::metric::POSTS).increment(1);
                Ok(())
            }
            Posted::Again(message) => {
                if let Some(id) = reply {
                    outbox.push(message_reply(id, message.as_bytes()));
                }
                Ok(())
            }
            Posted::NotMember => Err(not_member(code)),
            Posted::NotFound => Err(not_found(code)),
            Posted::Refused(words) => Err(crate::refusal(&words, code)
                .unwrap_or_else(|| crate::reply::unexpected("a refusal that cannot be read"))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn post_persistent(
        self: &Arc<Self>,
        mirror: &Arc<Mirror>,
        conn: u64,
        outbox: &Outbox,
        user: &User,
        draft: Draft,
        reply: Option<i64>,
    ) -> Result<(), ErrorBody> {
        let code = mirror.code();
        let cid = draft.cid.clone().unwrap_or_default();
        // A retry of a post still being stored waits for it, a while.
        let mut claimed = false;
        let mut shadow = false;
        let key = format!("{}|{cid}", user.id);
        let claim = format!("{:016x}", rand::random::<u64>());
        for _ in 0..100 {
            let args = ["claim", code, &user.id, &cid, &claim];
            let r = match self.room_op_with(code, &claim, &args).await {
                Ok(r) => r,
                Err(e) => {
                    // The claim may still run, late: it must not keep the
                    // retry of this post waiting.
                    if !cid.is_empty() {
                        self.unclaim(code, &key, &claim);
                    }
                    return Err(e);
                }
            };
            match r.status() {
                "ok" => {
                    claimed = true;
                    // A shadow-muted member's: their own connections only.
                    shadow = r.int(1).is_ok_and(|s| s == 1);
                    break;
                }
                "dup" => {
                    if let Some(id) = reply {
                        outbox.push(message_reply(id, r.text(1)?.as_bytes()));
                    }
                    return Ok(());
                }
                "pending" => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => return check(&r, code),
            }
        }
        if !claimed {
            return Err(unavailable("that message is still being stored; try again"));
        }
        let cid_key = draft.cid.as_ref().map(|cid| format!("{}|{cid}", user.id));
        let message = Message {
            room: code.to_owned(),
            seq: 0,
            from: user.clone(),
            subject: draft.subject,
            body: draft.body,
            ts: draft.ts,
            cid: draft.cid,
            deleted: false,
            shadow,
            reply: draft.reply,
            edited: None,
            reactions: Vec::new(),
            bot: draft.bot,
        };
        let origin = format!(
            "{} {conn} {} ",
            self.incarnation(),
            reply.map_or_else(|| "-".to_owned(), |r| r.to_string())
        );
        let job = PersistJob {
            mirror: mirror.clone(),
            message,
            origin,
            cid_key: cid_key.clone(),
            claim: claim.clone(),
            outbox: outbox.clone(),
            reply,
        };
        if self.persist.try_send(job).is_err() {
            if let Some(key) = cid_key {
                self.unclaim(code, &key, &claim);
            }
            return Err(unavailable("storage is busy; try again"));
        }
        Ok(())
    }

    /// Releases a post's claim on its `cid`, in the background until Redis
    /// has taken it (at most a minute: the claim itself expires after
    /// 30 s), so that a retry is not kept waiting for a post that will
    /// not come.
    pub(super) fn unclaim(self: &Arc<Self>, code: &str, key: &str, claim: &str) {
        let cluster = self.clone();
        let (code, key, claim) = (code.to_owned(), key.to_owned(), claim.to_owned());
        tokio::spawn(async move {
            let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
            let args = ["unclaim", code.as_str(), key.as_str(), claim.as_str()];
            let mut wait = Duration::from_millis(200);
            while cluster.room_op_with(&code, &claim, &args).await.is_err() {
                if tokio::time::Instant::now() > give_up {
                    return;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        });
    }

    pub async fn typing(&self, code: &str, user_id: &str, active: bool) -> Result<(), ErrorBody> {
        let r =
            self.room_op(code, &["typing", code, user_id, if active { "1" } else { "0" }]).await?;
        check(&r, code)
    }

    /// The newest `limit` messages with `after < seq < before` that the
    /// user may see (the window's part; the caller reads older ones of a
    /// persistent room from the store).
    pub async fn read(
        &self,
        code: &str,
        user_id: &str,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<ClusterRead, ErrorBody> {
        let before = before.min(i64::MAX as u64).to_string();
        let r = self
            .room_op(
                code,
                &["read", code, user_id, &after.to_string(), &before, &limit.to_string()],
            )
            .await?;
        check(&r, code)?;
        Ok(ClusterRead {
            messages: r.list(1)?,
            after: r.uint(2)?,
            before: r.uint(3)?,
            oldest: r.uint(4)?,
        })
    }
}

/// Logs the end of a room that the departure answered by `r` (its status at
/// `at`) destroyed, naming it only if it was public.
fn log_ended(r: &Reply, at: usize, code: &str) {
    let status = if at == 0 { Some(r.status()) } else { r.text(at).ok() };
    if status == Some("destroyed") {
        let public = r.text(at + 1).is_ok_and(|p| p == "1");
        tracing::info!(room = if public { code } else { "(private)" }, "room ended");
    }
}

/// What a departure did, as the room script reports it; `None`: the user
/// was not a member (through that connection).
fn departure(r: &Reply, user_id: &str, epoch: u64) -> Option<Departure> {
    Some(match r.status() {
        "quiet" => Departure::Quiet,
        "grace" => Departure::Grace { user_id: user_id.to_owned(), epoch },
        "left" => Departure::Left,
        "destroyed" => Departure::Destroyed,
        _ => return None,
    })
}

/// Why the room script refused an edit or a reaction.
fn change_refused(code: &str, seq: u64, status: &str, r: &Reply) -> ErrorBody {
    use confab_proto::ErrorCode::Forbidden;
    match status {
        "old" => ErrorBody::new(
            Forbidden,
            format!(
                "message {seq} of room {code} is not among the newest the room keeps at hand, which alone may be edited or reacted to"
            ),
        ),
        "deleted" => ErrorBody::new(Forbidden, format!("message {seq} of room {code} was deleted")),
        "forbidden" => {
            ErrorBody::new(Forbidden, format!("only its author edits message {seq} of room {code}"))
        }
        "gone" => confab_core::frames::no_message(code, seq),
        "over" => ErrorBody::new(
            Forbidden,
            format!("message {seq} of room {code} may no longer be edited"),
        ),
        "muted" => {
            let left = u64::try_from(r.int(1).unwrap_or(-1)).ok();
            confab_core::frames::muted(code, left.map(Duration::from_millis))
        }
        "limit" => {
            let why = match r.text(1).unwrap_or("") {
                "emoji" => confab_core::ReactionLimit::Emoji,
                "yours" => confab_core::ReactionLimit::Yours,
                _ => confab_core::ReactionLimit::Total,
            };
            confab_core::reaction_refusal(code, seq, why)
        }
        _ => confab_core::frames::not_in(code),
    }
}
