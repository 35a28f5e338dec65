//! The node's one connection to Redis, the keys of a room, and the path
//! every call takes: one op timeout, and a lost connection dropped so that
//! the next call starts a new one.

use std::sync::atomic::Ordering;

use confab_core::frames::unavailable;
use confab_proto::ErrorBody;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

use crate::Cluster;
use crate::reply::Reply;

pub(crate) fn keys(ns: &str, code: &str, node: &str, op_id: &str) -> [String; 19] {
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

pub(crate) fn lease_key(ns: &str, incarnation: &str) -> String {
    format!("{ns}:node:{{{incarnation}}}")
}

fn redis_down(e: &redis::RedisError) -> ErrorBody {
    tracing::warn!("cluster: redis: {e}");
    unavailable("the cluster is unavailable; try again shortly")
}

impl Cluster {
    pub(crate) async fn connection(&self) -> Result<MultiplexedConnection, ErrorBody> {
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

    pub(crate) fn lost_connection(&self) {
        *self.conn.lock() = None;
        self.redis_up.store(false, Ordering::Relaxed);
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
        match tokio::time::timeout(self.config.timeout, call).await {
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
        let mut conn = self.connection().await?;
        Reply::new(self.answer(invocation.invoke_async::<Value>(&mut conn)).await?)
    }
}
