//! Several nodes as one server, through Redis.
//!
//! # Design
//!
//! Redis holds each room's shared state (meta, members, connection counts
//! per node, grace, visibility, `seq`, the recent window, remembered cids)
//! and runs each room op as one Lua script (`room.lua`): Redis runs a
//! script to the end before anything else, so a seat claim, a `seq` and a
//! `cid` check are atomic across nodes, exactly as a room's critical
//! section is on one node.
//!
//! Every event that changes what members see gets a per-room event number
//! (`ev`) in the same script and is published on one channel. Each node
//! keeps a [`Mirror`] of the rooms its connections joined, applies events
//! in `ev` order, and fans them out to its own connections: a message is
//! serialized once per node. A node that misses events (its subscription
//! dropped) reads them back from the room's recent events; one that is
//! too far behind closes its connections, which resume.
//!
//! Persistent rooms get their `seq` from the shared database, in the
//! transaction that stores the message; the script then publishes stored
//! messages in `seq` order, holding back one whose predecessor is not
//! published yet.
//!
//! Each node holds a lease in Redis, renewed at a third of its length. A
//! node whose lease lapsed is dead to the others: a survivor sweeps its
//! connections out of every room it was in (its members leave with reason
//! `disconnected`). A node that finds its own lease lapsed (Redis was out
//! of reach too long) closes its connections, which come back and rejoin,
//! and starts over as a new incarnation, so nothing it did before can
//! count against what it does after.
//!
//! # Failure
//!
//! Without Redis a node accepts nothing that other nodes cannot see: every
//! op answers `unavailable` within the op timeout, `/health` says 503, and
//! the node recovers by itself when Redis answers again.

mod mirror;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use confab_proto::{ErrorBody, ErrorCode, Message, RoomInfo, User};
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script, Value};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

pub(crate) use mirror::Mirror;
use mirror::parse_envelope;

use crate::persist::unavailable;
use crate::store::{Store, StoredVisibility};
use crate::{CloseReason, Outbox};

/// Posts to persistent rooms that may wait for the store at once.
const PERSIST_QUEUE: usize = 65_536;
/// Most posts of one room stored in one transaction.
const PERSIST_BATCH: usize = 256;

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://…`
    pub url: String,
    /// How long a node that stopped renewing counts as alive.
    pub lease: Duration,
    /// The longest a Redis command may take before the op answers
    /// `unavailable`.
    pub timeout: Duration,
    /// Prefix of every key and channel: clusters with different ones
    /// share a Redis without seeing each other.
    pub namespace: String,
}

impl ClusterConfig {
    pub fn new(url: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            url: url.into(),
            lease: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            namespace: "cf".to_owned(),
        }
    }
}

/// What a cluster join answered.
pub(crate) struct ClusterJoin {
    /// Whether the user became a member (else they were one already).
    #[cfg_attr(not(test), allow(dead_code))]
    pub new: bool,
    pub seq: u64,
    pub ev: u64,
    /// Where the user's visible range starts.
    pub from: u64,
    pub info: RoomInfo,
    pub members: Vec<User>,
    /// Newest first.
    pub messages: Vec<Message>,
    pub after: u64,
    pub limit: usize,
    /// The oldest `seq` the window holds.
    pub oldest: u64,
}

/// What a read of messages answered.
pub(crate) struct ClusterRead {
    /// Newest first.
    pub messages: Vec<Message>,
    pub after: u64,
    pub before: u64,
    pub oldest: u64,
}

/// The outcome of a departure, as the room script reports it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gone {
    Quiet,
    Grace(String),
    Left,
    Destroyed,
    NotMember,
}

struct PersistJob {
    mirror: Arc<Mirror>,
    message: Message,
    origin: String,
    cid_key: Option<String>,
    /// The op id its cid's claim holds.
    claim: String,
    outbox: Outbox,
    reply: Option<i64>,
}

pub(crate) struct Cluster {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
    room_script: Script,
    rooms_script: Script,
    config: ClusterConfig,
    node: String,
    /// This node as Redis counts it: the name and an incarnation.
    incarnation: Mutex<String>,
    redis_up: AtomicBool,
    subscribed: AtomicBool,
    leased: AtomicBool,
    /// When the newest renewal of this incarnation's lease that Redis
    /// confirmed was sent: the lease is known to have held until a lease
    /// after it. `None` before this incarnation held one.
    lease_proven: Mutex<Option<std::time::Instant>>,
    /// Ends the subscription so that it starts over.
    resubscribe: Notify,
    /// Mirrors of the rooms this node's connections joined, by code.
    ///
    /// Lock order: this map, then a mirror; never the other way round.
    mirrors: RwLock<HashMap<String, Arc<Mirror>>>,
    /// Rooms with a grace timer running here.
    graces: Mutex<HashMap<String, usize>>,
    grace_epoch: AtomicU64,
    departing: std::sync::atomic::AtomicUsize,
    store: Arc<dyn Store>,
    persist: mpsc::Sender<PersistJob>,
    window: usize,
    dedup: usize,
    /// The configured boards (lower case), and the seats of a room
    /// created without a capacity: for recording stored rooms.
    boards: Vec<String>,
    max_capacity: u32,
    /// The reconnect grace: a join undone after a timeout leaves a member
    /// who was there before in grace, as a drop would.
    grace: Duration,
    /// When a connection to Redis last failed: within a timeout of it,
    /// ops answer `unavailable` at once instead of queueing for a
    /// connection that is not coming.
    connect_failed: Mutex<Option<std::time::Instant>>,
    /// Set when this node must record the stored rooms again (Redis lost
    /// them, or this node's lease lapsed).
    rerecord: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish_non_exhaustive()
    }
}

fn keys(ns: &str, code: &str, node: &str, op_id: &str) -> [String; 19] {
    let k = |name: &str| format!("{ns}:{{{code}}}:{name}");
    [
        k("meta"),
        k("mem"),
        k("names"),
        k("cnt"),
        k("grace"),
        k("vis"),
        k("seq"),
        k("ev"),
        k("win"),
        k("evs"),
        k("cid"),
        k("cido"),
        format!("{ns}:node:{{{node}}}:rooms"),
        k("uname"),
        format!("{ns}:rooms"),
        format!("{ns}:public"),
        k("pend"),
        k("pendc"),
        k(&format!("op:{op_id}")),
    ]
}

fn lease_key(ns: &str, incarnation: &str) -> String {
    format!("{ns}:node:{{{incarnation}}}")
}

fn redis_down(e: &redis::RedisError) -> ErrorBody {
    tracing::warn!("cluster: redis: {e}");
    unavailable("the cluster is unavailable; try again shortly")
}

impl Cluster {
    /// Connects to Redis and starts the node's subscription, lease and
    /// sweeps.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        config: ClusterConfig,
        node: &str,
        store: Arc<dyn Store>,
        window: usize,
        dedup: usize,
        boards: Vec<String>,
        max_capacity: u32,
        grace: Duration,
    ) -> Result<Arc<Cluster>, String> {
        let client = redis::Client::open(config.url.as_str()).map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(PERSIST_QUEUE);
        let cluster = Arc::new(Cluster {
            client,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            room_script: Script::new(include_str!("room.lua")),
            rooms_script: Script::new(include_str!("rooms.lua")),
            node: node.to_owned(),
            incarnation: Mutex::new(new_incarnation(node)),
            redis_up: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            leased: AtomicBool::new(false),
            lease_proven: Mutex::new(None),
            resubscribe: Notify::new(),
            mirrors: RwLock::new(HashMap::new()),
            graces: Mutex::new(HashMap::new()),
            grace_epoch: AtomicU64::new(0),
            departing: std::sync::atomic::AtomicUsize::new(0),
            store,
            persist: tx,
            window: window.max(1),
            dedup: dedup.max(1),
            boards,
            max_capacity,
            grace,
            connect_failed: Mutex::new(None),
            rerecord: AtomicBool::new(false),
            config,
        });
        cluster.connection().await.map_err(|e| e.message)?;
        cluster.renew().await;
        tokio::spawn(subscribe_loop(Arc::downgrade(&cluster)));
        tokio::spawn(lease_loop(Arc::downgrade(&cluster)));
        tokio::spawn(persist_loop(Arc::downgrade(&cluster), rx));
        Ok(cluster)
    }

    /// The channel every node publishes room events on and listens to.
    fn channel(&self) -> String {
        format!("{}:events", self.config.namespace)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.config.namespace)
    }

    pub fn incarnation(&self) -> String {
        self.incarnation.lock().clone()
    }

    /// Whether this node can serve: Redis answers, its events arrive, and
    /// its lease is held.
    pub fn healthy(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
            && self.subscribed.load(Ordering::Relaxed)
            && self.leased.load(Ordering::Relaxed)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, ErrorBody> {
        if let Some(conn) = self.conn.lock().clone() {
            return Ok(conn);
        }
        let t = self.config.timeout;
        let down = || unavailable("the cluster is unavailable; try again shortly");
        // One connection attempt at a time; nobody waits longer than an
        // op may, and right after a failed attempt nobody waits at all.
        let recently_failed =
            |failed: &Option<std::time::Instant>| failed.is_some_and(|at| at.elapsed() < t / 2);
        if recently_failed(&self.connect_failed.lock()) {
            return Err(down());
        }
        let Ok(_one) = tokio::time::timeout(t, self.connecting.lock()).await else {
            return Err(down());
        };
        if let Some(conn) = self.conn.lock().clone() {
            return Ok(conn);
        }
        if recently_failed(&self.connect_failed.lock()) {
            return Err(down());
        }
        let settings = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t));
        let conn = tokio::time::timeout(
            t,
            self.client.get_multiplexed_async_connection_with_config(&settings),
        )
        .await
        .map_err(|_| unavailable("the cluster is unavailable; try again shortly"))
        .and_then(|r| r.map_err(|e| redis_down(&e)));
        match conn {
            Ok(conn) => {
                *self.conn.lock() = Some(conn.clone());
                *self.connect_failed.lock() = None;
                self.redis_up.store(true, Ordering::Relaxed);
                Ok(conn)
            }
            Err(e) => {
                *self.connect_failed.lock() = Some(std::time::Instant::now());
                self.redis_up.store(false, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn lost_connection(&self) {
        *self.conn.lock() = None;
        self.redis_up.store(false, Ordering::Relaxed);
    }

    /// Runs a Redis command with the op timeout.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ErrorBody> {
        let mut conn = self.connection().await?;
        match tokio::time::timeout(self.config.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    self.lost_connection();
                }
                Err(redis_down(&e))
            }
            Err(_) => {
                self.lost_connection();
                Err(unavailable("the cluster is unavailable; try again shortly"))
            }
        }
    }

    /// Runs one op of the room script on room `code`.
    async fn room_op(&self, code: &str, args: &[&str]) -> Result<Vec<Value>, ErrorBody> {
        self.room_op_with(code, "-", args).await
    }

    /// Runs one op of the room script on room `code`, with the key that
    /// records what became of the op `op_id`.
    async fn room_op_with(
        &self,
        code: &str,
        op_id: &str,
        args: &[&str],
    ) -> Result<Vec<Value>, ErrorBody> {
        let incarnation = self.incarnation();
        let mut invocation = self.room_script.prepare_invoke();
        for key in keys(&self.config.namespace, code, &incarnation, op_id) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.connection().await?;
        let run = invocation.invoke_async::<Value>(&mut conn);
        match tokio::time::timeout(self.config.timeout, run).await {
            Ok(Ok(Value::Array(items))) => Ok(items),
            Ok(Ok(other)) => {
                tracing::error!("cluster: unexpected answer {other:?}");
                Err(unavailable("the cluster gave an unexpected answer"))
            }
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    self.lost_connection();
                }
                Err(redis_down(&e))
            }
            Err(_) => {
                self.lost_connection();
                Err(unavailable("the cluster is unavailable; try again shortly"))
            }
        }
    }

    // ----- rooms -----

    /// Records a room in the cluster. `only_new`: fail with `exists` if
    /// the code is taken (a created room); else keep what is there (a
    /// board, or a stored room recorded again at start).
    pub async fn create(
        &self,
        info: &RoomInfo,
        seats: usize,
        ttl: Option<Duration>,
        only_new: bool,
        last_seq: u64,
    ) -> Result<bool, ErrorBody> {
        let json = serde_json::to_string(info).expect("room info serializes");
        let eph = if info.retention == confab_proto::Retention::Ephemeral { "1" } else { "0" };
        let ttl = ttl.map_or(0, |t| t.as_millis().max(1)).to_string();
        let r = self
            .room_op(
                &info.code,
                &[
                    "create",
                    &info.code,
                    &json,
                    &seats.to_string(),
                    eph,
                    if info.public { "1" } else { "0" },
                    &ttl,
                    if only_new { "1" } else { "0" },
                    &last_seq.to_string(),
                    &info.backlog.to_string(),
                ],
            )
            .await?;
        Ok(text(&r, 0) == "ok")
    }

    /// The public rooms of the whole cluster.
    pub async fn public_rooms(&self) -> Result<Vec<RoomInfo>, ErrorBody> {
        let mut conn = self.connection().await?;
        let mut invocation = self.rooms_script.prepare_invoke();
        invocation.arg(&self.config.namespace);
        let run = invocation.invoke_async::<Vec<Value>>(&mut conn);
        let items = match tokio::time::timeout(self.config.timeout, run).await {
            Ok(Ok(items)) => items,
            Ok(Err(e)) => return Err(redis_down(&e)),
            Err(_) => {
                self.lost_connection();
                return Err(unavailable("the cluster is unavailable; try again shortly"));
            }
        };
        Ok(items
            .chunks(2)
            .filter_map(|pair| {
                let mut info: RoomInfo = serde_json::from_str(&text(pair, 0)).ok()?;
                info.members = usize::try_from(int(pair, 1)).unwrap_or(0);
                Some(info)
            })
            .collect())
    }

    /// The members of a room that is public or that the asking connection
    /// is in (`joined`); `None` for any other room, and for one that does
    /// not exist.
    pub async fn members(&self, code: &str, joined: bool) -> Result<Option<Vec<User>>, ErrorBody> {
        let r = self.room_op(code, &["members", code, if joined { "1" } else { "0" }]).await?;
        match text(&r, 0).as_str() {
            "ok" => Ok(Some(users(&r, 1))),
            _ => Ok(None),
        }
    }

    // ----- mirrors -----

    /// The mirror of `code`, made if there is none, marked as being joined
    /// so that it is not let go before the join ends (see
    /// [`Cluster::release_mirror`]).
    pub fn mirror_for_join(self: &Arc<Self>, code: &str) -> Arc<Mirror> {
        let mut mirrors = self.mirrors.write();
        let mirror =
            mirrors.entry(code.to_owned()).or_insert_with(|| Arc::new(Mirror::new(code))).clone();
        mirror.begin_join();
        mirror
    }

    pub fn mirror(&self, code: &str) -> Option<Arc<Mirror>> {
        self.mirrors.read().get(code).cloned()
    }

    /// Lets a mirror go once no connection of this node is in it.
    pub fn release_mirror(&self, mirror: &Arc<Mirror>) {
        let mut mirrors = self.mirrors.write();
        if mirror.unused() && mirrors.get(mirror.code()).is_some_and(|m| Arc::ptr_eq(m, mirror)) {
            mirrors.remove(mirror.code());
        }
    }

    fn all_mirrors(&self) -> Vec<Arc<Mirror>> {
        self.mirrors.read().values().cloned().collect()
    }

    // ----- ops -----

    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        self: &Arc<Self>,
        code: &str,
        user: &User,
        since: Option<u64>,
        resume_limit: usize,
        stored: Option<StoredVisibility>,
        rejoin: bool,
        seated: bool,
    ) -> Result<ClusterJoin, ErrorBody> {
        let json = serde_json::to_string(user).expect("users serialize");
        let name_key = crate::limits::name_key(&user.name);
        let stored = stored
            .map(|v| {
                format!("{},{}", v.from, v.left_at.map_or(-1, |l| i64::try_from(l).unwrap_or(-1)))
            })
            .unwrap_or_default();
        let since = since.map_or_else(|| "-1".to_owned(), |s| s.to_string());
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
        match text(&r, 0).as_str() {
            "ok" => {}
            "room_full" => {
                return Err(ErrorBody::new(
                    ErrorCode::RoomFull,
                    format!("room {code} is full ({} seats)", int(&r, 1)),
                ));
            }
            "name_taken" => {
                return Err(ErrorBody::new(
                    ErrorCode::NameTaken,
                    format!("someone in room {code} is already called {:?}", user.name),
                ));
            }
            _ => return Err(crate::room::not_found(code)),
        }
        let info: RoomInfo = serde_json::from_str(&text(&r, 5))
            .map_err(|_| unavailable("the cluster holds a damaged room"))?;
        let members = users(&r, 6);
        Ok(ClusterJoin {
            new: int(&r, 1) == 1,
            seq: uint(&r, 2),
            ev: uint(&r, 3),
            from: uint(&r, 4),
            info: RoomInfo { members: members.len(), ..info },
            members,
            messages: messages(&r, 7),
            after: uint(&r, 8),
            limit: usize::try_from(int(&r, 9)).unwrap_or(0),
            oldest: uint(&r, 10),
        })
    }

    /// Cancels a join that timed out, in the background, until Redis has
    /// taken the cancel: if the join ran, it is undone (its seat freed,
    /// a `leave` for a member it added); if it runs later, it does nothing.
    /// Once this node is a new incarnation, the sweep frees what the old
    /// one held, and the cancel is no longer needed.
    fn cancel_join(self: &Arc<Self>, code: &str, user_id: &str, incarnation: &str, op_id: String) {
        let cluster = self.clone();
        let (code, user_id, incarnation) =
            (code.to_owned(), user_id.to_owned(), incarnation.to_owned());
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(200);
            while cluster.incarnation() == incarnation {
                let token = match cluster.grace.is_zero() {
                    true => String::new(),
                    false => format!(
                        "{incarnation}:{}",
                        cluster.grace_epoch.fetch_add(1, Ordering::Relaxed)
                    ),
                };
                let args =
                    ["cancel", code.as_str(), user_id.as_str(), incarnation.as_str(), &token];
                match cluster.room_op_with(&code, &op_id, &args).await {
                    Ok(r) => {
                        match text(&r, 0).as_str() {
                            "grace" => {
                                let grace = cluster.grace;
                                cluster.start_grace(code.clone(), user_id.clone(), token, grace);
                            }
                            "undone" => {}
                            _ => return,
                        }
                        tracing::info!(room = code, "cluster: a join that timed out was undone");
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
    /// (`drop`, with a grace token if the seat is to be held).
    pub async fn depart(
        &self,
        code: &str,
        user_id: &str,
        incarnation: &str,
        explicit: bool,
        grace: bool,
    ) -> Result<Gone, ErrorBody> {
        let token = if grace {
            format!("{incarnation}:{}", self.grace_epoch.fetch_add(1, Ordering::Relaxed))
        } else {
            String::new()
        };
        let op = if explicit { "leave" } else { "drop" };
        let r = self.room_op(code, &[op, code, user_id, incarnation, &token]).await?;
        Ok(match text(&r, 0).as_str() {
            "quiet" => Gone::Quiet,
            "grace" => Gone::Grace(token),
            "left" => Gone::Left,
            "destroyed" => Gone::Destroyed,
            _ => Gone::NotMember,
        })
    }

    /// Ends a member's grace, unless they came back.
    pub async fn expire(&self, code: &str, user_id: &str, token: &str) -> Result<Gone, ErrorBody> {
        let r = self.room_op(code, &["expire", code, user_id, token]).await?;
        Ok(match text(&r, 0).as_str() {
            "left" => Gone::Left,
            "destroyed" => Gone::Destroyed,
            _ => Gone::Quiet,
        })
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
            tokio::time::sleep(grace).await;
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
        draft: crate::room::Draft,
        reply: Option<i64>,
    ) -> Result<(), ErrorBody> {
        let code = mirror.code();
        if mirror.persistent() {
            return self.post_persistent(mirror, conn, outbox, user, draft, reply).await;
        }
        let tail = message_tail(code, user, &draft);
        let reply_arg = reply.map_or_else(|| "-".to_owned(), |r| r.to_string());
        let r = self
            .room_op(
                code,
                &[
                    "post",
                    code,
                    &user.id,
                    &self.incarnation(),
                    &conn.to_string(),
                    &reply_arg,
                    draft.cid.as_deref().unwrap_or(""),
                    &tail,
                    &self.window.to_string(),
                    &self.dedup.to_string(),
                ],
            )
            .await?;
        match text(&r, 0).as_str() {
            "ok" => {
                metrics::counter!(crate::metric::POSTS).increment(1);
                Ok(())
            }
            "dup" => {
                if let Some(id) = reply {
                    outbox.push(crate::room::message_reply(id, text(&r, 1).as_bytes()));
                }
                Ok(())
            }
            _ => check(&r, code),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn post_persistent(
        self: &Arc<Self>,
        mirror: &Arc<Mirror>,
        conn: u64,
        outbox: &Outbox,
        user: &User,
        draft: crate::room::Draft,
        reply: Option<i64>,
    ) -> Result<(), ErrorBody> {
        let code = mirror.code();
        let cid = draft.cid.clone().unwrap_or_default();
        // A retry of a post still being stored waits for it, a while.
        let mut claimed = false;
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
            match text(&r, 0).as_str() {
                "ok" => {
                    claimed = true;
                    break;
                }
                "dup" => {
                    if let Some(id) = reply {
                        outbox.push(crate::room::message_reply(id, text(&r, 1).as_bytes()));
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
    fn unclaim(self: &Arc<Self>, code: &str, key: &str, claim: &str) {
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
            messages: messages(&r, 1),
            after: uint(&r, 2),
            before: uint(&r, 3),
            oldest: uint(&r, 4),
        })
    }

    // ----- events -----

    /// The room's recorded events after `after` (up to `upto`), in order.
    pub async fn events(
        &self,
        code: &str,
        after: u64,
        upto: Option<u64>,
    ) -> Result<Vec<mirror::Envelope>, ErrorBody> {
        let key = format!("{}:{{{code}}}:evs", self.config.namespace);
        let upto = upto.map_or_else(|| "+inf".to_owned(), |u| u.to_string());
        let cmd =
            redis::cmd("ZRANGEBYSCORE").arg(&key).arg(format!("({after}")).arg(upto).to_owned();
        let found: Vec<Vec<u8>> = self.query(&cmd).await?;
        Ok(found.iter().filter_map(|e| parse_envelope(e)).collect())
    }

    /// Departures still on their way to Redis.
    pub fn departing(&self) -> usize {
        self.departing.load(Ordering::Relaxed)
    }

    /// A connection of `user_id` on this node went away without `leave`:
    /// tells the cluster, in the background, retrying while Redis is out
    /// of reach (past the lease the other nodes sweep it anyway), and runs
    /// the grace here if the seat is held.
    pub fn departed(
        self: &Arc<Self>,
        mirror: Arc<Mirror>,
        user_id: String,
        incarnation: String,
        grace: Duration,
    ) {
        self.departing.fetch_add(1, Ordering::Relaxed);
        let cluster = self.clone();
        let task = async move {
            let code = mirror.code().to_owned();
            for attempt in 0..6u32 {
                match cluster.depart(&code, &user_id, &incarnation, false, !grace.is_zero()).await {
                    Ok(Gone::Grace(token)) => {
                        cluster.start_grace(code, user_id, token, grace);
                        break;
                    }
                    Ok(_) => break,
                    Err(_) if incarnation != cluster.incarnation() => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(250 << attempt)).await,
                }
            }
            cluster.release_mirror(&mirror);
            cluster.departing.fetch_sub(1, Ordering::Relaxed);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(task)),
            Err(_) => {
                self.departing.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// A created persistent room, once stored, no longer expires unjoined.
    pub async fn keep(&self, code: &str) -> Result<(), ErrorBody> {
        let r = self.room_op(code, &["persist", code]).await?;
        check(&r, code)
    }

    /// Tells every connection of this node that it is stopping: first
    /// `closed` for every room, then the close, so that a connection in
    /// several rooms hears of each.
    pub fn shut_down(&self) {
        let mirrors = self.all_mirrors();
        for mirror in &mirrors {
            mirror.announce_shutdown();
        }
        for mirror in &mirrors {
            mirror.close_connections(CloseReason::Shutdown);
        }
    }

    /// Rooms this node has connections in.
    pub fn mirror_count(&self) -> usize {
        self.mirrors.read().len()
    }

    fn on_envelope(self: &Arc<Self>, payload: &[u8]) {
        let Some(envelope) = parse_envelope(payload) else {
            tracing::warn!("cluster: an event that cannot be read");
            return;
        };
        let Some(mirror) = self.mirror(&envelope.room) else { return };
        if mirror.receive(envelope, &self.incarnation()) {
            self.fill(mirror);
        }
    }

    /// Reads back the events a mirror missed.
    fn fill(self: &Arc<Self>, mirror: Arc<Mirror>) {
        let Some(after) = mirror.start_fill() else { return };
        let cluster = self.clone();
        tokio::spawn(async move {
            let missed = cluster.events(mirror.code(), after, None).await;
            let incarnation = cluster.incarnation();
            match missed {
                Ok(envelopes) => {
                    if envelopes.first().is_some_and(|e| e.ev > after + 1) {
                        tracing::warn!(
                            room = mirror.code(),
                            "cluster: events lost; connections resume"
                        );
                        mirror.lost();
                        cluster.release_mirror(&mirror);
                        return;
                    }
                    mirror.end_fill(envelopes, &incarnation);
                }
                Err(_) => mirror.end_fill(Vec::new(), &incarnation),
            }
        });
    }

    // ----- lease -----

    /// Renews this node's lease (or takes a new one); sweeps dead nodes.
    ///
    /// A node that cannot prove its lease held without a break (its
    /// renewal finds the key gone: a cut-off, a stall, a stopped process)
    /// has been swept by the others, whatever it believes: it closes its
    /// connections, so that they resume, and starts over as a new
    /// incarnation. That holds however the break went, including a renewal
    /// that failed before the lease ran out.
    async fn renew(self: &Arc<Self>) {
        let incarnation = self.incarnation();
        let lease = self.config.lease.as_millis().to_string();
        let sent = std::time::Instant::now();
        let renewed: Result<Option<String>, _> = self
            .query(
                redis::cmd("SET")
                    .arg(lease_key(&self.config.namespace, &incarnation))
                    .arg("1")
                    .arg("PX")
                    .arg(&lease)
                    .arg("XX"),
            )
            .await;
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
                let taken: Result<Option<String>, _> = self
                    .query(
                        redis::cmd("SET")
                            .arg(lease_key(&self.config.namespace, &incarnation))
                            .arg("1")
                            .arg("PX")
                            .arg(&lease)
                            .arg("NX"),
                    )
                    .await;
                let added: Result<i64, _> =
                    self.query(redis::cmd("SADD").arg(self.nodes_key()).arg(&incarnation)).await;
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
                // A lapsed lease may mean Redis restarted empty: the boards
                // and stored rooms are recorded again.
                if self.rerecord.load(Ordering::Relaxed) {
                    match self.record_stored().await {
                        Ok(()) => self.rerecord.store(false, Ordering::Relaxed),
                        Err(e) => tracing::warn!("cluster: {e}"),
                    }
                }
            }
            Err(_) => {
                self.leased.store(false, Ordering::Relaxed);
                return;
            }
        }
        self.sweep().await;
    }

    /// Records the boards and the stored persistent rooms in Redis,
    /// keeping what is there (other nodes may have recorded them already).
    pub async fn record_stored(&self) -> Result<(), String> {
        let stored = self.store.rooms().await.map_err(|e| e.to_string())?;
        for room in stored {
            if room.board && !self.boards.contains(&room.code) {
                continue;
            }
            let seats =
                room.capacity.unwrap_or(if room.board { u32::MAX } else { self.max_capacity });
            let info = RoomInfo {
                code: room.code,
                title: room.title,
                capacity: room.capacity,
                retention: confab_proto::Retention::Persistent,
                backlog: room.backlog,
                public: room.public,
                members: 0,
                created: room.created,
            };
            self.create(&info, seats as usize, None, false, room.last_seq)
                .await
                .map_err(|e| format!("cannot record room {}: {}", info.code, e.message))?;
        }
        Ok(())
    }

    /// Closes every connection of this node and becomes a new incarnation.
    fn evicted(&self) {
        self.rerecord.store(true, Ordering::Relaxed);
        *self.lease_proven.lock() = None;
        *self.incarnation.lock() = new_incarnation(&self.node);
        let mirrors: Vec<Arc<Mirror>> = self.mirrors.write().drain().map(|(_, m)| m).collect();
        for mirror in mirrors {
            mirror.lost();
        }
    }

    /// Sweeps the members of nodes whose lease lapsed out of their rooms.
    async fn sweep(&self) {
        let me = self.incarnation();
        let Ok(nodes) =
            self.query::<Vec<String>>(redis::cmd("SMEMBERS").arg(self.nodes_key())).await
        else {
            return;
        };
        for node in nodes.into_iter().filter(|n| *n != me) {
            let Ok(alive) = self
                .query::<bool>(redis::cmd("EXISTS").arg(lease_key(&self.config.namespace, &node)))
                .await
            else {
                return;
            };
            if alive {
                continue;
            }
            let rooms_key = format!("{}:node:{{{node}}}:rooms", self.config.namespace);
            let Ok(rooms) = self.query::<Vec<String>>(redis::cmd("SMEMBERS").arg(&rooms_key)).await
            else {
                return;
            };
            let mut done = true;
            for room in &rooms {
                match self.room_op(room, &["sweep", room, &node]).await {
                    Ok(r) if int(&r, 1) > 0 => {
                        tracing::info!(
                            room,
                            node,
                            "cluster: {} members of a dead node left",
                            int(&r, 1)
                        );
                    }
                    Ok(_) => {}
                    Err(_) => done = false,
                }
            }
            if done {
                let _: Result<i64, _> = self.query(redis::cmd("DEL").arg(&rooms_key)).await;
                let _: Result<i64, _> =
                    self.query(redis::cmd("SREM").arg(self.nodes_key()).arg(&node)).await;
            }
        }
        // This node's own room set: forget rooms it is no longer in.
        let rooms_key = format!("{}:node:{{{me}}}:rooms", self.config.namespace);
        if let Ok(rooms) = self.query::<Vec<String>>(redis::cmd("SMEMBERS").arg(&rooms_key)).await {
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
                    self.query(redis::cmd("SREM").arg(&rooms_key).arg(stale)).await;
            }
        }
    }

    /// Persistent rooms whose publishing waits for a message that its node
    /// stored and never published: reads it from the store and publishes
    /// it. `seen` carries what the last check saw, so that only a stall
    /// that lasts is acted on.
    async fn unstall(&self, seen: &mut HashSet<(String, u64)>) {
        let mut now = HashSet::new();
        for mirror in self.all_mirrors().into_iter().filter(|m| m.persistent()) {
            let code = mirror.code();
            let Ok(r) = self.room_op(code, &["stalled", code]).await else { return };
            let next = uint(&r, 1);
            if next == 0 {
                continue;
            }
            if seen.contains(&(code.to_owned(), next)) {
                if let Ok(found) = self.store.messages(code, next - 1, next + 1, 1).await
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
                    let _ = self.commit(code, next, "- 0 - ", &json, cid_key.as_deref()).await;
                }
            } else {
                now.insert((code.to_owned(), next));
            }
        }
        *seen = now;
    }

    async fn commit(
        &self,
        code: &str,
        seq: u64,
        origin: &str,
        json: &str,
        cid_key: Option<&str>,
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
                ],
            )
            .await?;
        check(&r, code)
    }
}

fn new_incarnation(node: &str) -> String {
    format!("{node}#{:08x}", rand::random::<u32>())
}

/// A message's JSON without its `seq`, from the first field on, for the
/// post script to complete: `,"room":…}`.
fn message_tail(code: &str, user: &User, draft: &crate::room::Draft) -> String {
    #[derive(Serialize)]
    struct Tail<'a> {
        room: &'a str,
        from: &'a User,
        #[serde(skip_serializing_if = "Option::is_none")]
        subject: Option<&'a str>,
        body: &'a str,
        ts: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cid: Option<&'a str>,
    }
    let json = serde_json::to_string(&Tail {
        room: code,
        from: user,
        subject: draft.subject.as_deref(),
        body: &draft.body,
        ts: &draft.ts,
        cid: draft.cid.as_deref(),
    })
    .expect("messages serialize");
    format!(",{}", &json[1..])
}

fn check(r: &[Value], code: &str) -> Result<(), ErrorBody> {
    match text(r, 0).as_str() {
        "ok" => Ok(()),
        "not_member" => {
            Err(ErrorBody::new(ErrorCode::NotMember, format!("you have not joined room {code}")))
        }
        "not_found" => Err(crate::room::not_found(code)),
        other => Err(unavailable(&format!("the cluster answered {other}"))),
    }
}

fn text(r: &[Value], i: usize) -> String {
    match r.get(i) {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(Value::Int(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn int(r: &[Value], i: usize) -> i64 {
    match r.get(i) {
        Some(Value::Int(n)) => *n,
        Some(Value::BulkString(b)) => {
            std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
        }
        _ => 0,
    }
}

fn uint(r: &[Value], i: usize) -> u64 {
    u64::try_from(int(r, i)).unwrap_or(0)
}

fn strings(r: &[Value], i: usize) -> Vec<Vec<u8>> {
    match r.get(i) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::BulkString(b) => Some(b.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn users(r: &[Value], i: usize) -> Vec<User> {
    strings(r, i).iter().filter_map(|b| serde_json::from_slice(b).ok()).collect()
}

fn messages(r: &[Value], i: usize) -> Vec<Message> {
    strings(r, i).iter().filter_map(|b| serde_json::from_slice(b).ok()).collect()
}

async fn subscribe_loop(cluster: Weak<Cluster>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let timeout = c.config.timeout;
        let pubsub = tokio::time::timeout(timeout, c.client.get_async_pubsub()).await;
        if let Ok(Ok(mut pubsub)) = pubsub
            && let Ok(Ok(())) = tokio::time::timeout(timeout, pubsub.subscribe(c.channel())).await
        {
            c.subscribed.store(true, Ordering::Relaxed);
            // What was published while this node was not listening.
            for mirror in c.all_mirrors() {
                c.fill(mirror);
            }
            let mut stream = pubsub.into_on_message();
            loop {
                tokio::select! {
                    message = stream.next() => match message {
                        Some(message) => c.on_envelope(message.get_payload_bytes()),
                        None => break,
                    },
                    () = c.resubscribe.notified() => break,
                }
            }
            c.subscribed.store(false, Ordering::Relaxed);
            tracing::warn!("cluster: the event subscription ended; subscribing again");
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn lease_loop(cluster: Weak<Cluster>) {
    let mut stalled = HashSet::new();
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let every = (c.config.lease / 3).max(Duration::from_millis(100));
        let was_up = c.redis_up.load(Ordering::Relaxed);
        c.renew().await;
        if !c.redis_up.load(Ordering::Relaxed) {
            // The subscription may hang on a dead connection: restart it.
            c.resubscribe.notify_waiters();
        } else if !was_up {
            tracing::info!("cluster: redis answers again");
        }
        c.unstall(&mut stalled).await;
        drop(c);
        tokio::time::sleep(every).await;
    }
}

/// Stores posts to persistent rooms, a room's queued posts in one
/// transaction, and publishes each once stored.
async fn persist_loop(cluster: Weak<Cluster>, mut rx: mpsc::Receiver<PersistJob>) {
    let mut jobs = Vec::new();
    while rx.recv_many(&mut jobs, PERSIST_QUEUE).await > 0 {
        let Some(c) = cluster.upgrade() else { return };
        let mut by_room: Vec<(String, Vec<PersistJob>)> = Vec::new();
        for job in jobs.drain(..) {
            let code = job.mirror.code().to_owned();
            match by_room.iter_mut().find(|(c, group)| *c == code && group.len() < PERSIST_BATCH) {
                Some((_, group)) => group.push(job),
                None => by_room.push((code, vec![job])),
            }
        }
        for (code, group) in by_room {
            let batch: Vec<Message> = group.iter().map(|j| j.message.clone()).collect();
            let started = std::time::Instant::now();
            let stored = c.store.append(&code, batch, c.dedup as u64).await;
            metrics::histogram!(crate::metric::STORE_WRITE).record(started.elapsed());
            match stored {
                Ok(stored) => {
                    for (job, appended) in group.iter().zip(stored) {
                        let message = appended.message;
                        let json = serde_json::to_string(&message).expect("messages serialize");
                        if !appended.new {
                            // A retry of a post the room holds already (its
                            // first try was stored through another node):
                            // answered with it, and not stored again; and
                            // published, should its first try not have been
                            // (nothing happens if it was).
                            let cid_key = job.cid_key.as_deref();
                            let published =
                                c.commit(&code, message.seq, "- 0 - ", &json, cid_key).await;
                            if published.is_err()
                                && let Some(key) = &job.cid_key
                            {
                                c.unclaim(&code, key, &job.claim);
                            }
                            if let Some(id) = job.reply {
                                job.outbox.push(crate::room::message_reply(id, json.as_bytes()));
                            }
                            continue;
                        }
                        let cid_key = job.cid_key.as_deref();
                        match c.commit(&code, message.seq, &job.origin, &json, cid_key).await {
                            Ok(()) => metrics::counter!(crate::metric::POSTS).increment(1),
                            // The stall check publishes it from the store,
                            // remembering its cid; meanwhile a retry is not
                            // kept waiting: it finds the message stored.
                            Err(_) => {
                                if let Some(key) = &job.cid_key {
                                    c.unclaim(&code, key, &job.claim);
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(room = code, "cannot store messages: {e}");
                    for job in group {
                        if let Some(key) = &job.cid_key {
                            c.unclaim(&code, key, &job.claim);
                        }
                        job.outbox.push(crate::room::error_frame(
                            job.reply,
                            unavailable("storage is unavailable; try again shortly"),
                        ));
                    }
                }
            }
        }
    }
}

/// Closes a connection that can no longer be kept in step.
pub(crate) fn close_lost(outbox: &Outbox) {
    outbox.close(CloseReason::Resync);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use confab_proto::Retention;

    async fn cluster(node: &str) -> Option<Arc<Cluster>> {
        let Ok(url) = std::env::var("CONFAB_TEST_REDIS") else {
            eprintln!("skipped: set CONFAB_TEST_REDIS=redis://127.0.0.1:6379 to run");
            return None;
        };
        let config = ClusterConfig::new(url);
        let store = Arc::new(MemoryStore::new());
        Some(
            Cluster::start(config, node, store, 100, 100, Vec::new(), 100, Duration::from_secs(10))
                .await
                .unwrap(),
        )
    }

    fn info(code: &str, capacity: u32) -> RoomInfo {
        RoomInfo {
            code: code.into(),
            title: "t".into(),
            capacity: Some(capacity),
            retention: Retention::Ephemeral,
            backlog: 10,
            public: false,
            members: 0,
            created: crate::now_rfc3339(),
        }
    }

    fn user(i: usize) -> User {
        User { id: format!("u_{i}_{:x}", rand::random::<u32>()), name: format!("user {i}") }
    }

    #[tokio::test]
    async fn concurrent_joins_over_three_nodes_take_exactly_the_seats() {
        let (Some(a), Some(b), Some(c)) =
            (cluster("a").await, cluster("b").await, cluster("c").await)
        else {
            return;
        };
        let code = format!("T{:08X}", rand::random::<u32>());
        assert!(a.create(&info(&code, 3), 3, None, true, 0).await.unwrap());
        assert!(!b.create(&info(&code, 3), 3, None, true, 0).await.unwrap(), "code taken");
        let nodes = [a.clone(), b.clone(), c.clone()];
        let joins = (0..30).map(|i| {
            let node = nodes[i % 3].clone();
            let code = code.clone();
            async move { node.join(&code, &user(i), None, 100, None, false, false).await }
        });
        let results = futures_util::future::join_all(joins).await;
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(admitted, 3, "exactly the seats are taken");
        for refused in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(refused.code, ErrorCode::RoomFull);
        }
        let members = c.members(&code, true).await.unwrap().unwrap();
        assert_eq!(members.len(), 3);
    }

    #[tokio::test]
    async fn posts_from_two_nodes_get_one_order_and_a_cid_is_posted_once() {
        let (Some(a), Some(b)) = (cluster("a").await, cluster("b").await) else { return };
        let code = format!("T{:08X}", rand::random::<u32>());
        a.create(&info(&code, 4), 4, None, true, 0).await.unwrap();
        let (ann, bob) = (user(1), user(2));
        let joined = a.join(&code, &ann, None, 100, None, false, false).await.unwrap();
        assert!(joined.new);
        b.join(&code, &bob, None, 100, None, false, false).await.unwrap();
        let mirror_a = a.mirror_for_join(&code);
        let _ = mirror_a.add(&joined, &ann.id, 1, &Outbox::new(64).0, &a.incarnation());
        let mirror_b = b.mirror_for_join(&code);
        let _ = mirror_b.add(&joined, &bob.id, 2, &Outbox::new(64).0, &b.incarnation());
        let draft = |body: &str, cid: Option<&str>| crate::room::Draft {
            body: body.into(),
            subject: None,
            cid: cid.map(str::to_owned),
            ts: crate::now_rfc3339(),
        };
        let outbox = Outbox::new(64).0;
        for i in 0..5 {
            a.post(&mirror_a, 1, &outbox, &ann, draft(&format!("a{i}"), None), None).await.unwrap();
            b.post(&mirror_b, 2, &outbox, &bob, draft(&format!("b{i}"), None), None).await.unwrap();
        }
        b.post(&mirror_b, 2, &outbox, &bob, draft("once", Some("c1")), Some(1)).await.unwrap();
        a.post(&mirror_a, 1, &outbox, &bob, draft("once", Some("c1")), Some(2)).await.unwrap();
        let read = a.read(&code, &ann.id, 0, u64::MAX, 100).await.unwrap();
        let mut seqs: Vec<u64> = read.messages.iter().map(|m| m.seq).collect();
        seqs.reverse();
        assert_eq!(seqs, (1..=11).collect::<Vec<_>>(), "one order, no gap, the cid once");
        let gone = a.depart(&code, &ann.id, &a.incarnation(), true, false).await.unwrap();
        assert_eq!(gone, Gone::Left);
        let gone = b.depart(&code, &bob.id, &b.incarnation(), true, false).await.unwrap();
        assert_eq!(gone, Gone::Destroyed, "the last member out ends an ephemeral room");
        let err = a.join(&code, &ann, None, 100, None, false, false).await.err().unwrap();
        assert_eq!(err.code, ErrorCode::NotFound);
    }
}
