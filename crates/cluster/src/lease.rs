//! A node's lease: renewed, lapsed, taken anew; dead nodes swept; stalled publishing unstuck.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use confab_proto::ErrorBody;

use super::*;

/// Starts every shard's epoch: the layout of the keys and the scripts'
/// numbering of events. It changes when a version reads Redis differently
/// ("l2": a room's event number is its seq plus its joins and leaves).
const LAYOUT: &str = "l2:";

impl Cluster {
    /// Sets `incarnation`'s lease key for a lease from now: `XX` renews
    /// it only if it still exists, `NX` takes it only if it does not.
    async fn set_lease(&self, incarnation: &str, mode: &str) -> Result<Option<String>, ErrorBody> {
        let lease = self.config.lease.as_millis().to_string();
        let key = lease_key(&self.config.namespace, incarnation);
        self.home().query(redis::cmd("SET").arg(key).arg("1").arg("PX").arg(lease).arg(mode)).await
    }

    /// Renews this node's lease (or takes a new one); sweeps dead nodes.
    ///
    /// A node that cannot prove its lease held without a break (its
    /// renewal finds the key gone: a cut-off, a stall, a stopped process)
    /// has been swept by the others, whatever it believes: it closes its
    /// connections, so that they resume, and starts over as a new
    /// incarnation. That holds however the break went, including a renewal
    /// that failed before the lease ran out.
    pub(super) async fn renew(self: &Arc<Self>) {
        let sent = std::time::Instant::now();
        let renewed = self.set_lease(&self.incarnation(), "XX").await;
        // `SET XX` succeeds only while the key exists: it never expired
        // since this incarnation took it, whatever the node saw meanwhile.
        let proven = *self.lease_proven.lock();
        match renewed {
            Ok(Some(_)) if proven.is_some() => {
                self.leased.store(true, Ordering::Relaxed);
                *self.lease_proven.lock() = Some(sent);
            }
            Ok(_) => {
                if proven.is_some() {
                    self.leased.store(false, Ordering::Relaxed);
                    tracing::warn!(
                        "cluster: this node's lease lapsed; its connections start over as a new \
                         incarnation"
                    );
                    self.evicted();
                }
                let incarnation = self.incarnation();
                let taken = self.set_lease(&incarnation, "NX").await;
                let added: Result<i64, _> = self
                    .home()
                    .query(redis::cmd("SADD").arg(self.nodes_key()).arg(&incarnation))
                    .await;
                if matches!(taken, Ok(Some(_))) && added.is_ok() {
                    self.leased.store(true, Ordering::Relaxed);
                    *self.lease_proven.lock() = Some(sent);
                } else {
                    // Not taken, or taken without being known to the
                    // others (or taken late, after an answer that never
                    // came): the next try starts with a fresh incarnation
                    // rather than one whose lease nobody can vouch for.
                    self.evicted();
                }
            }
            Err(_) => {
                self.leased.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Checks that each shard still holds what it held: a shard that lost
    /// its data (restarted empty) gets a new epoch key. The rooms of such a
    /// shard cannot be kept in step: their connections resume, and the
    /// stored rooms are recorded again.
    /// Refuses shards that hold what another version of the scripts wrote
    /// (its epoch lacks this `LAYOUT`, or it has rooms and no epoch):
    /// reading them would mix two ways of numbering events.
    pub(crate) async fn check_layout(&self) -> Result<(), ClusterError> {
        let ns = &self.config.namespace;
        let (epoch, rooms) = (format!("{ns}:epoch"), format!("{ns}:rooms"));
        for shard in &self.shards {
            let unreachable = |e: ErrorBody| ClusterError::Unreachable(e.message);
            let get = redis::cmd("GET").arg(&epoch).to_owned();
            let fits = match shard.query::<Option<String>>(&get).await.map_err(unreachable)? {
                Some(epoch) => epoch.starts_with(LAYOUT),
                None => {
                    let any = redis::cmd("EXISTS").arg(&rooms).to_owned();
                    !shard.query::<bool>(&any).await.map_err(unreachable)?
                }
            };
            if !fits {
                return Err(ClusterError::Layout { shard: shard.index, namespace: ns.clone() });
            }
        }
        Ok(())
    }

    async fn check_shards(&self) {
        let key = format!("{}:epoch", self.config.namespace);
        for shard in &self.shards {
            let mine = format!("{LAYOUT}{:016x}", rand::random::<u64>());
            // The epoch there, set to `mine` if it had none.
            let set = redis::cmd("SET").arg(&key).arg(&mine).arg("NX").arg("GET").to_owned();
            let Ok(before) = shard.query::<Option<String>>(&set).await else {
                // The subscription may hang on a dead connection: restart it.
                shard.resubscribe.notify_waiters();
                continue;
            };
            let now = before.unwrap_or(mine);
            let mut known = shard.epoch.lock();
            let reset = known.as_ref().is_some_and(|k| *k != now);
            *known = Some(now);
            drop(known);
            if reset {
                tracing::warn!(
                    shard = shard.index,
                    "cluster: a Redis shard lost its data; its rooms start over"
                );
                self.rerecord.store(true, Ordering::Relaxed);
                let lost: Vec<Arc<Mirror>> = self
                    .all_mirrors()
                    .into_iter()
                    .filter(|m| self.shard(m.code()).index == shard.index)
                    .collect();
                for mirror in lost {
                    mirror.lost();
                    self.release_mirror(&mirror);
                }
            }
        }
    }

    /// What keeps the cluster tidy, apart from the lease: shards checked,
    /// stored rooms recorded again when Redis lost them, dead nodes swept,
    /// stalled publishing unstuck.
    async fn upkeep(&self, stalled: &mut HashSet<(String, u64)>) {
        self.check_shards().await;
        if self.rerecord.load(Ordering::Relaxed) {
            match self.record_stored().await {
                Ok(()) => self.rerecord.store(false, Ordering::Relaxed),
                Err(e) => tracing::warn!("cluster: {e}"),
            }
        }
        self.sweep().await;
        self.unstall(stalled).await;
    }

    /// Records the boards and the stored persistent rooms in Redis,
    /// keeping what is there (other nodes may have recorded them already).
    /// Every room is tried, whatever became of the others (their shards
    /// may be down); the first failure is returned.
    pub async fn record_stored(&self) -> Result<(), ClusterError> {
        let stored = self.store.rooms().await?;
        let mut failed = None;
        for room in stored {
            if room.spec.board && !self.boards.contains(&room.spec.code) {
                continue;
            }
            let seats = room.spec.seats(self.max_capacity);
            let info = room.spec.info(0);
            if let Err(e) = self.create(&info, seats, None, false, &recorded(&room)).await {
                failed.get_or_insert(ClusterError::Record { room: info.code, message: e.message });
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Closes every connection of this node and becomes a new incarnation.
    pub(super) fn evicted(&self) {
        self.rerecord.store(true, Ordering::Relaxed);
        *self.lease_proven.lock() = None;
        *self.incarnation.lock() = new_incarnation(&self.node);
        let mirrors: Vec<Arc<Mirror>> = self.mirrors.write().drain().map(|(_, m)| m).collect();
        for mirror in mirrors {
            mirror.lost();
        }
    }

    /// Sweeps the members of nodes whose lease lapsed out of their rooms,
    /// on every shard.
    pub(super) async fn sweep(&self) {
        let me = self.incarnation();
        let home = self.home();
        let Ok(nodes) =
            home.query::<Vec<String>>(redis::cmd("SMEMBERS").arg(self.nodes_key())).await
        else {
            return;
        };
        for node in nodes.into_iter().filter(|n| *n != me) {
            let lease = lease_key(&self.config.namespace, &node);
            let Ok(alive) = home.query::<bool>(redis::cmd("EXISTS").arg(lease)).await else {
                return;
            };
            if alive {
                continue;
            }
            let rooms_key = format!("{}:node:{{{node}}}:rooms", self.config.namespace);
            let mut done = true;
            for shard in &self.shards {
                let Ok(rooms) =
                    shard.query::<Vec<String>>(redis::cmd("SMEMBERS").arg(&rooms_key)).await
                else {
                    done = false;
                    continue;
                };
                let mut swept = true;
                for room in &rooms {
                    match self.room_op(room, &["sweep", room, &node]).await {
                        Ok(r) if r.int(1).unwrap_or(0) > 0 => {
                            let left = r.int(1).unwrap_or(0);
                            tracing::info!(
                                room,
                                node,
                                "cluster: {left} members of a dead node left"
                            );
                        }
                        Ok(_) => {}
                        Err(_) => swept = false,
                    }
                }
                if swept {
                    let _: Result<i64, _> = shard.query(redis::cmd("DEL").arg(&rooms_key)).await;
                } else {
                    done = false;
                }
            }
            if done {
                let _: Result<i64, _> =
                    home.query(redis::cmd("SREM").arg(self.nodes_key()).arg(&node)).await;
            }
        }
        // This node's own room sets: forget rooms it is no longer in.
        let rooms_key = format!("{}:node:{{{me}}}:rooms", self.config.namespace);
        for shard in &self.shards {
            let Ok(rooms) =
                shard.query::<Vec<String>>(redis::cmd("SMEMBERS").arg(&rooms_key)).await
            else {
                continue;
            };
            let stale: Vec<String> = {
                let mirrors = self.mirrors.read();
                let graces = self.graces.lock();
                rooms
                    .into_iter()
                    .filter(|r| !mirrors.contains_key(r) && !graces.contains_key(r))
                    .collect()
            };
            if !stale.is_empty() {
                let _: Result<i64, _> =
                    shard.query(redis::cmd("SREM").arg(&rooms_key).arg(stale)).await;
            }
        }
    }

    /// Persistent rooms whose publishing waits for a message that its node
    /// stored and never published: reads it from the store and publishes
    /// it. `seen` carries what the last check saw, so that only a stall
    /// that lasts is acted on.
    pub(super) async fn unstall(&self, seen: &mut HashSet<(String, u64)>) {
        let mut now = HashSet::new();
        for mirror in self.all_mirrors().into_iter().filter(|m| m.persistent()) {
            let code = mirror.code();
            let Ok(r) = self.room_op(code, &["stalled", code]).await else { return };
            let Ok(next) = r.uint(1) else { return };
            if next == 0 {
                continue;
            }
            if seen.contains(&(code.to_owned(), next)) {
                if let Ok(found) = self.store.messages(code, next - 1, next + 1, 1, None).await
                    && let Some(message) = found.first()
                {
                    tracing::warn!(
                        room = code,
                        seq = next,
                        "cluster: publishing a stored message its node did not"
                    );
                    let json = serde_json::to_string(message).expect("messages serialize");
                    // Its cid is remembered (and its claim released), so a
                    // retry on any node is answered with it, not stored.
                    let cid_key =
                        message.cid.as_ref().map(|cid| format!("{}|{cid}", message.from.id));
                    let (origin, shadow) = ("- 0 - ", message.shadow);
                    let _ =
                        self.commit(code, next, origin, &json, cid_key.as_deref(), shadow).await;
                }
            } else {
                now.insert((code.to_owned(), next));
            }
        }
        *seen = now;
    }

    pub(super) async fn commit(
        &self,
        code: &str,
        seq: u64,
        origin: &str,
        json: &str,
        cid_key: Option<&str>,
        shadow: bool,
    ) -> Result<(), ErrorBody> {
        let r = self
            .room_op(
                code,
                &[
                    "commit",
                    code,
                    &seq.to_string(),
                    origin,
                    json,
                    cid_key.unwrap_or(""),
                    &self.window.to_string(),
                    &self.dedup.to_string(),
                    if shadow { "s" } else { "m" },
                ],
            )
            .await?;
        check(&r, code)
    }
}

/// Renews the lease at a third of its length. Nothing else runs here, so
/// that a slow shard (or a slow sweep) never delays a renewal.
pub(super) async fn lease_loop(cluster: Weak<Cluster>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let every = (c.config.lease / 3).max(Duration::from_millis(100));
        let was_up = c.home().up.load(Ordering::Relaxed);
        c.renew().await;
        if !c.home().up.load(Ordering::Relaxed) {
            // The subscription may hang on a dead connection: restart it.
            c.home().resubscribe.notify_waiters();
        } else if !was_up {
            tracing::info!("cluster: redis answers again");
        }
        drop(c);
        tokio::time::sleep(every).await;
    }
}

/// Runs the upkeep at a third of the lease, apart from the renewals.
pub(super) async fn upkeep_loop(cluster: Weak<Cluster>) {
    let mut stalled = HashSet::new();
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let every = (c.config.lease / 3).max(Duration::from_millis(100));
        c.upkeep(&mut stalled).await;
        drop(c);
        tokio::time::sleep(every).await;
    }
}

/// What a stored room is recorded in Redis with.
fn recorded(room: &confab_core::StoredRoom) -> super::Recorded {
    super::Recorded {
        last_seq: room.last_seq,
        roles: room.roles.clone(),
        locked: room.locked,
        bans: room.bans.clone(),
        slow: room.slow,
        rev: room.rev,
    }
}
