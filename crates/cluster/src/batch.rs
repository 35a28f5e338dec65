//! Posts to ephemeral rooms, batched per shard: what a node's connections
//! post while its previous call to a shard is under way goes in the next
//! call, one script run and one publish for all of them (`posts.lua`).
//! Under light load a batch is one post and costs what a single call did;
//! under heavy load the batches grow, and the cost of a call, the larger
//! part of what Redis spends on a post, is shared.

use std::sync::Weak;

use confab_core::frames::unavailable;
use confab_proto::ErrorBody;
use redis::Value;
use tokio::sync::{mpsc, oneshot};

use crate::Cluster;
use crate::reply::{Reply, unexpected};

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

/// A post waiting for its batch, and who waits for its answer.
pub(crate) type PostCall = (Post, oneshot::Sender<Result<Reply, ErrorBody>>);

impl Cluster {
    /// Queues a post for its room's shard and waits for what the script
    /// answered for it.
    pub(crate) async fn post_batched(&self, post: Post) -> Result<Reply, ErrorBody> {
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
    async fn run_batch(&self, index: usize, calls: &[PostCall]) -> Result<Vec<Reply>, ErrorBody> {
        let ns = &self.config.namespace;
        let mut invocation = self.posts_script.prepare_invoke();
        invocation.arg(self.channel()).arg(self.window).arg(self.dedup);
        for (post, _) in calls {
            let k = |name: &str| format!("{ns}:{{{}}}:{name}", post.code);
            for name in ["mem", "meta", "seq", "ev", "wl", "cid", "cido"] {
                invocation.key(k(name));
            }
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
                items.into_iter().map(Reply::new).collect()
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
    while queue.recv_many(&mut calls, BATCH_MAX).await > 0 {
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
