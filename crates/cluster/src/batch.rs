//! Posts to ephemeral rooms, batched per shard: what a node's connections
//! post while its previous call to a shard is under way, or within the
//! linger after it started (`ClusterConfig::post_linger`), goes in the next
//! call, one script run and one publish for all of them (`posts.lua`).
//! Under light load a batch is one post, sent at once, and costs what a
//! single call did; under heavy load the batches grow, and the cost of a
//! call (waking Redis, the script's start, one publish) is shared.

use std::sync::Weak;

use confab_core::frames::unavailable;
use confab_proto::ErrorBody;
use redis::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::Cluster;
use crate::reply::unexpected;

/// Posts one call carries at most.
const BATCH_MAX: usize = 256;
/// Posts that may wait for their shard at once; beyond it a post answers
/// `unavailable` (the queue's overflow policy).
pub(crate) const QUEUE: usize = 16_384;
/// One post to an ephemeral room.
pub(crate) struct Post {
    pub code: String,
    pub user_id: String,
    /// "node conn reply": who posted it, for the poster's own reply.
    pub origin: String,
    pub cid: String,
    /// The message JSON without its `seq`, from its first field on.
    pub tail: String,
}

/// What became of one post of a batch.
#[derive(Debug, PartialEq)]
pub(crate) enum Posted {
    /// Published with this `seq`.
    Sent(u64),
    /// Its `cid` was seen before: the JSON of the message that one posted.
    Again(String),
    /// Held off by a mute or slow mode: the script's words for it.
    Refused(String),
    NotMember,
    NotFound,
}

impl Posted {
    /// One item of `posts.lua`'s reply.
    fn new(value: Value) -> Result<Posted, ErrorBody> {
        match value {
            Value::Int(n) if n > 0 => Ok(Posted::Sent(n as u64)),
            Value::Int(0) => Ok(Posted::NotMember),
            Value::Int(-1) => Ok(Posted::NotFound),
            Value::BulkString(json) => match String::from_utf8(json) {
                Ok(refused) if refused.starts_with('!') => Ok(Posted::Refused(refused)),
                Ok(json) => Ok(Posted::Again(json)),
                Err(_) => Err(unexpected("a remembered post that is not UTF-8")),
            },
            other => Err(unexpected(&format!("a post answered {other:?}"))),
        }
    }
}

/// A post waiting for its batch, and who waits for its answer.
pub(crate) type PostCall = (Post, oneshot::Sender<Result<Posted, ErrorBody>>);

impl Cluster {
    /// Queues a post for its room's shard and waits for what the script
    /// answered for it.
    pub(crate) async fn post_batched(&self, post: Post) -> Result<Posted, ErrorBody> {
        let (done, answer) = oneshot::channel();
        let shard = self.shard(&post.code);
        if shard.posts.try_send((post, done)).is_err() {
            return Err(unavailable("the cluster is busy; try again"));
        }
        // Bounded, queueing included: a shard that answers nothing makes its
        // posts fail within about two op timeouts, not wait behind others.
        match tokio::time::timeout(self.config.timeout * 2, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => {
                Err(unavailable("the cluster is unavailable; try again shortly"))
            }
        }
    }

    /// Runs one batch on shard `index`: the answer for each post, in order.
    async fn run_batch(&self, index: usize, calls: &[PostCall]) -> Result<Vec<Posted>, ErrorBody> {
        let mut invocation = self.posts_script.prepare_invoke();
        invocation.arg(self.channel()).arg(self.window).arg(self.dedup).arg(&self.config.namespace);
        for (post, _) in calls {
            invocation
                .arg(&post.code)
                .arg(&post.user_id)
                .arg(&post.origin)
                .arg(&post.cid)
                .arg(&post.tail);
        }
        let shard = &self.shards[index];
        let mut conn = shard.connection().await?;
        match shard.answer(invocation.invoke_async::<Value>(&mut conn)).await? {
            Value::Array(items) if items.len() == calls.len() => {
                items.into_iter().map(Posted::new).collect()
            }
            other => Err(unexpected(&format!("a batch of {} posts: {other:?}", calls.len()))),
        }
    }
}

/// Sends the posts queued for shard `index`, a batch at a time.
pub(crate) async fn post_loop(
    cluster: Weak<Cluster>,
    index: usize,
    mut queue: mpsc::Receiver<PostCall>,
) {
    let mut calls = Vec::with_capacity(BATCH_MAX);
    let linger = match cluster.upgrade() {
        Some(c) => c.config.post_linger,
        None => return,
    };
    let mut last: Option<Instant> = None;
    while queue.recv_many(&mut calls, BATCH_MAX).await > 0 {
        // Not sooner than `linger` after the previous call: what arrives
        // meanwhile joins this one.
        if let Some(last) = last
            && last.elapsed() < linger
        {
            tokio::time::sleep_until(last + linger).await;
            while calls.len() < BATCH_MAX {
                let Ok(call) = queue.try_recv() else { break };
                calls.push(call);
            }
        }
        last = Some(Instant::now());
        let Some(c) = cluster.upgrade() else { return };
        metrics::histogram!(confab_core::metric::CLUSTER_POST_BATCH).record(calls.len() as f64);
        match c.run_batch(index, &calls).await {
            Ok(replies) => {
                for ((_, done), reply) in calls.drain(..).zip(replies) {
                    let _ = done.send(Ok(reply));
                }
            }
            Err(e) => {
                for (_, done) in calls.drain(..) {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
        drop(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_of_the_script_has_one_meaning() {
        assert_eq!(Posted::new(Value::Int(7)).unwrap(), Posted::Sent(7));
        assert_eq!(Posted::new(Value::Int(0)).unwrap(), Posted::NotMember);
        assert_eq!(Posted::new(Value::Int(-1)).unwrap(), Posted::NotFound);
        let again = Posted::new(Value::BulkString(br#"{"seq":3}"#.to_vec())).unwrap();
        assert_eq!(again, Posted::Again(r#"{"seq":3}"#.to_owned()));
        assert!(Posted::new(Value::Int(-2)).is_err());
        assert!(Posted::new(Value::Nil).is_err());
        assert!(Posted::new(Value::BulkString(vec![0xff])).is_err());
    }
}
