//! The persister: one task that writes persistent messages in batches.
//!
//! A post to a persistent room gets its `seq` in the room's critical
//! section and is queued here (bounded; when full the post answers
//! `unavailable` and takes no `seq`). The writer takes everything queued,
//! writes it in one transaction (group commit: one fsync for many posts),
//! and only then publishes each message to its room: into the window, to
//! the members, and the `ok` reply to the poster. So an `ok` means the
//! message is durable, and members never see a message that could be lost.
//!
//! If a batch fails, every room in it rolls back to its last durable `seq`
//! and starts a new *epoch*; queued posts from the old epoch fail too, so
//! no `seq` is ever skipped or used twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use confab_proto::{ErrorBody, Message, User};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::Outbox;
use crate::frames::{error_frame, unavailable};
use crate::store::{Store, Write};

/// Most posts written in one transaction.
const BATCH_MAX: usize = 2048;

/// Whoever waits for a post's outcome: the poster and any retry of the
/// same `cid` that arrived before the write finished.
pub(crate) type Waiters = Arc<Mutex<Vec<(Outbox, Option<i64>)>>>;

pub(crate) enum Job {
    Post(PendingPost),
    /// A write nobody waits for (a visibility range, a room's roles).
    Write(Write),
    /// A session write, and who waits to hear whether it is durable.
    Session(Write, oneshot::Sender<bool>),
    /// Answered once every job queued before it has been written (or has
    /// failed).
    Flush(oneshot::Sender<()>),
}

/// Where a written post is published: its room. (A trait, so that the
/// writer knows nothing of rooms.)
pub(crate) trait Publish: Send + Sync {
    /// The room's current epoch: a post queued in an older one is void.
    fn epoch(&self) -> u64;
    /// The post is durable: publish it.
    fn commit(&self, post: &PendingPost);
    /// A write failed: forget every `seq` handed out in `epoch`.
    fn roll_back(&self, epoch: u64);
}

pub(crate) struct PendingPost {
    pub room: Arc<dyn Publish>,
    pub message: Arc<Message>,
    pub epoch: u64,
    /// The posting connection, which gets the reply instead of the event.
    pub conn: u64,
    pub waiters: Waiters,
}

/// The queue into the writer, and the store's health as last seen.
#[derive(Clone)]
pub(crate) struct Persister {
    tx: mpsc::Sender<Job>,
    healthy: Arc<AtomicBool>,
}

impl Persister {
    /// Starts the writer and the health checker for `store`.
    pub fn start(store: Arc<dyn Store>, capacity: usize) -> Persister {
        let (tx, rx) = mpsc::channel(capacity);
        let healthy = Arc::new(AtomicBool::new(true));
        tokio::spawn(write_loop(rx, store.clone(), healthy.clone()));
        tokio::spawn(health_loop(store, Arc::downgrade(&healthy)));
        Persister { tx, healthy }
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Writes a session with the next batch, and resolves once it is
    /// durable: `Ok(false)` if the batch failed. A burst of new sessions
    /// (thousands of clients connecting at once) shares transactions
    /// instead of queueing for the database one at a time.
    ///
    /// # Errors
    ///
    /// `unavailable` if the queue is full.
    pub async fn save_session(&self, token: String, user: User) -> Result<bool, ErrorBody> {
        let (done, written) = oneshot::channel();
        self.try_queue(Job::Session(Write::Session { token, user }, done))?;
        Ok(written.await.unwrap_or(false))
    }

    /// Waits until what was queued before now has been written (or has
    /// failed).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Queues a job without waiting. Overflow policy: refuse (the caller
    /// answers `unavailable`).
    pub fn try_queue(&self, job: Job) -> Result<(), ErrorBody> {
        self.tx.try_send(job).map_err(|_| unavailable("storage is busy; try again"))
    }

    /// Takes a place in the queue for a job to be queued later, without
    /// waiting. Overflow policy: refuse (the caller answers
    /// `unavailable`). A slot dropped unused gives its place back.
    pub fn reserve(&self) -> Result<Slot, ErrorBody> {
        self.tx
            .clone()
            .try_reserve_owned()
            .map(Slot)
            .map_err(|_| unavailable("storage is busy; try again"))
    }
}

/// A place held in the writer's queue (see [`Persister::reserve`]).
pub(crate) struct Slot(mpsc::OwnedPermit<Job>);

impl Slot {
    /// Queues `job` in the place held: it cannot be refused.
    pub fn queue(self, job: Job) {
        self.0.send(job);
    }
}

async fn write_loop(mut rx: mpsc::Receiver<Job>, store: Arc<dyn Store>, healthy: Arc<AtomicBool>) {
    let mut jobs = Vec::with_capacity(BATCH_MAX);
    while rx.recv_many(&mut jobs, BATCH_MAX).await > 0 {
        let mut posts = Vec::with_capacity(jobs.len());
        let mut writes = Vec::with_capacity(jobs.len());
        let mut sessions = Vec::new();
        let mut flushes = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Post(post) if post.room.epoch() != post.epoch => {
                    fail(&post, "storage failed before this message was written; try again");
                }
                Job::Post(post) => {
                    writes.push(Write::Message(post.message.clone()));
                    posts.push(post);
                }
                Job::Write(write) => writes.push(write),
                Job::Session(write, done) => {
                    writes.push(write);
                    sessions.push(done);
                }
                Job::Flush(done) => flushes.push(done),
            }
        }
        if writes.is_empty() {
            for done in flushes {
                let _ = done.send(());
            }
            continue;
        }
        let started = std::time::Instant::now();
        let written = store.write(&writes).await;
        metrics::histogram!(crate::metric::STORE_WRITE).record(started.elapsed());
        metrics::histogram!(crate::metric::STORE_BATCH).record(writes.len() as f64);
        for done in sessions {
            let _ = done.send(written.is_ok());
        }
        match written {
            Ok(()) => {
                healthy.store(true, Ordering::Relaxed);
                for post in posts {
                    post.room.commit(&post);
                }
            }
            Err(e) => {
                tracing::warn!("storage write failed: {e}");
                healthy.store(false, Ordering::Relaxed);
                for post in &posts {
                    post.room.roll_back(post.epoch);
                }
                for post in &posts {
                    fail(post, "storage is unavailable; the message was not stored");
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn fail(post: &PendingPost, message: &str) {
    let error = unavailable(message);
    for (outbox, id) in post.waiters.lock().drain(..) {
        outbox.push(error_frame(id, error.clone()));
    }
}

/// Pings the store: often while it is down, rarely while it is up. Ends
/// when the hub is gone.
async fn health_loop(store: Arc<dyn Store>, healthy: std::sync::Weak<AtomicBool>) {
    loop {
        let Some(up) = healthy.upgrade().map(|h| h.load(Ordering::Relaxed)) else { return };
        tokio::time::sleep(if up { Duration::from_secs(5) } else { Duration::from_millis(500) })
            .await;
        let ok =
            matches!(tokio::time::timeout(Duration::from_secs(2), store.ping()).await, Ok(Ok(())));
        if ok != up {
            if ok {
                tracing::info!("storage is back");
            } else {
                tracing::warn!("storage is not answering");
            }
        }
        match healthy.upgrade() {
            Some(healthy) => healthy.store(ok, Ordering::Relaxed),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use confab_proto::ErrorCode;

    fn session(n: u32) -> Job {
        let user = User { id: format!("u_{n}"), name: format!("user {n}") };
        Job::Write(Write::Session { token: format!("t{n}"), user })
    }

    /// A place held counts as queued: with the queue full, others are
    /// refused until a place is given back; what a slot queues is written.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slot_holds_a_place_that_cannot_be_refused() {
        let store = Arc::new(MemoryStore::new());
        // On this thread the writer runs only when the test awaits.
        let persister = Persister::start(store.clone(), 2);
        let held = persister.reserve().unwrap();
        persister.try_queue(session(1)).unwrap();
        assert_eq!(persister.reserve().err().map(|e| e.code), Some(ErrorCode::Unavailable));
        assert_eq!(
            persister.try_queue(session(2)).err().map(|e| e.code),
            Some(ErrorCode::Unavailable)
        );
        // A slot dropped unused gives its place back.
        drop(held);
        let again = persister.reserve().expect("the place given back");
        again.queue(session(3));
        persister.flush().await;
        for n in [1, 3] {
            let user = store.session(&format!("t{n}")).await.unwrap();
            assert_eq!(user.map(|u| u.id), Some(format!("u_{n}")));
        }
        assert_eq!(store.session("t2").await.unwrap(), None, "refused, not stored");
    }
}
