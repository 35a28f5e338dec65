//! The node's connections to Redis: one per shard, the keys of a room,
//! and the path every call takes: one op timeout, and a lost connection
//! dropped so that the next call starts a new one.
//!
//! # Shards
//!
//! Rooms are spread over the Redis instances given (`--cluster
//! redis://a,redis://b,…`) by a hash of the room's key: every key of a
//! room, its script and its events live on one instance, so a room op is
//! still one atomic script. Each shard keeps its own set of rooms, public
//! rooms and the rooms each node has members in; the first shard, the
//! *home*, also holds the node leases. Every node must be given the same
//! list in the same order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use confab_core::frames::unavailable;
use confab_proto::ErrorBody;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::Notify;

use crate::reply::Reply;
use crate::{Cluster, ClusterError};

/// One Redis instance of the cluster, and this node's connection to it.
pub(crate) struct Shard {
    /// Its place in the list of shards.
    pub index: usize,
    pub client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
    /// When a connection to it last failed: within half a timeout of it,
    /// ops answer `unavailable` at once instead of queueing for a
    /// connection that is not coming.
    connect_failed: Mutex<Option<Instant>>,
    /// Whether it answered the last call.
    pub up: AtomicBool,
    /// Whether this node's subscription to its events is live.
    pub subscribed: AtomicBool,
    /// Ends the subscription so that it starts over.
    pub resubscribe: Notify,
    /// The epoch key this shard held when last looked at: a different one
    /// means it lost its data.
    pub epoch: Mutex<Option<String>>,
    /// Posts waiting for the next batch to this shard.
    pub posts: tokio::sync::mpsc::Sender<crate::batch::PostCall>,
    timeout: Duration,
}

impl Shard {
    /// A shard, and the queue of posts its batching task sends.
    pub fn open(
        index: usize,
        url: &str,
        timeout: Duration,
    ) -> Result<(Shard, tokio::sync::mpsc::Receiver<crate::batch::PostCall>), ClusterError> {
        let client = redis::Client::open(url).map_err(|e| ClusterError::Url(e.to_string()))?;
        let (posts, queue) = tokio::sync::mpsc::channel(crate::batch::QUEUE);
        let shard = Shard {
            index,
            client,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            connect_failed: Mutex::new(None),
            up: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            resubscribe: Notify::new(),
            epoch: Mutex::new(None),
            posts,
            timeout,
        };
        Ok((shard, queue))
    }

    pub fn healthy(&self) -> bool {
        self.up.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    pub(crate) async fn connection(&self) -> Result<MultiplexedConnection, ErrorBody> {
        if let Some(conn) = self.conn.lock().clone() {
            return Ok(conn);
        }
        let t = self.timeout;
        let down = || unavailable("the cluster is unavailable; try again shortly");
        // One connection attempt at a time; nobody waits longer than an
        // op may, and right after a failed attempt nobody waits at all.
        let recently_failed =
            |failed: &Option<Instant>| failed.is_some_and(|at| at.elapsed() < t / 2);
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
        .map_err(|_| down())
        .and_then(|r| r.map_err(|e| redis_down(&e)));
        match conn {
            Ok(conn) => {
                *self.conn.lock() = Some(conn.clone());
                *self.connect_failed.lock() = None;
                self.up.store(true, Ordering::Relaxed);
                Ok(conn)
            }
            Err(e) => {
                *self.connect_failed.lock() = Some(Instant::now());
                self.up.store(false, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    pub(crate) fn lost_connection(&self) {
        *self.conn.lock() = None;
        self.up.store(false, Ordering::Relaxed);
    }

    /// Runs a Redis command with the op timeout.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, ErrorBody> {
        let mut conn = self.connection().await?;
        self.answer(cmd.query_async::<T>(&mut conn)).await
    }

    /// Waits for a Redis call, at most the op timeout. Every call goes
    /// through here: one that times out or loses its connection drops the
    /// connection, so that the next starts a new one.
    pub(crate) async fn answer<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ErrorBody> {
        match tokio::time::timeout(self.timeout, call).await {
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
}

/// Which of `shards` shards a room lives on: FNV-1a of its key, so that
/// every node, whatever its build, finds it in the same place.
pub fn shard_of(code: &str, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in code.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

pub(crate) fn keys(ns: &str, code: &str, node: &str, op_id: &str) -> [String; 25] {
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
        k("wl"),
        k("el"),
        k("cid"),
        k("cido"),
        format!("{ns}:node:{{{node}}}:rooms"),
        k("uname"),
        format!("{ns}:rooms"),
        format!("{ns}:public"),
        k("pend"),
        k("pendc"),
        k(&format!("op:{op_id}")),
        k("roles"),
        k("ban"),
        k("addr"),
        k("mute"),
        k("last"),
        k("chg"),
    ]
}

pub(crate) fn lease_key(ns: &str, incarnation: &str) -> String {
    format!("{ns}:node:{{{incarnation}}}")
}

fn redis_down(e: &redis::RedisError) -> ErrorBody {
    tracing::warn!("cluster: redis: {e}");
    unavailable("the cluster is unavailable; try again shortly")
}

impl Cluster {
    /// The shard room `code` lives on.
    pub(crate) fn shard(&self, code: &str) -> &Shard {
        &self.shards[shard_of(code, self.shards.len())]
    }

    /// The shard that holds the node leases.
    pub(crate) fn home(&self) -> &Shard {
        &self.shards[0]
    }

    /// Runs one op of the room script on room `code`.
    pub(crate) async fn room_op(&self, code: &str, args: &[&str]) -> Result<Reply, ErrorBody> {
        self.room_op_with(code, "-", args).await
    }

    /// Runs one op of the room script on room `code`, with the key that
    /// records what became of the op `op_id`.
    pub(crate) async fn room_op_with(
        &self,
        code: &str,
        op_id: &str,
        args: &[&str],
    ) -> Result<Reply, ErrorBody> {
        let incarnation = self.incarnation();
        let mut invocation = self.room_script.prepare_invoke();
        for key in keys(&self.config.namespace, code, &incarnation, op_id) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let shard = self.shard(code);
        let mut conn = shard.connection().await?;
        Reply::new(shard.answer(invocation.invoke_async::<Value>(&mut conn)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_spread_over_the_shards_and_always_to_the_same_one() {
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            counts[shard_of(&format!("R{i:05}"), 3)] += 1;
        }
        for count in counts {
            assert!((800..1200).contains(&count), "{counts:?}");
        }
        assert_eq!(shard_of("ROOM22", 3), shard_of("ROOM22", 3));
        assert_eq!(shard_of("main", 1), 0);
        // Fixed by the algorithm, not by the build: every node must agree.
        assert_eq!(shard_of("", 7), (0xcbf2_9ce4_8422_2325u64 % 7) as usize);
    }
}
