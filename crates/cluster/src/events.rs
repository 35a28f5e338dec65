//! The events channel: envelopes into mirrors, and what a mirror missed read back.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use confab_proto::ErrorBody;

use super::*;

impl Cluster {
    /// The room's recorded events after `after` (up to `upto`), in order;
    /// `None` if the room counts fewer events than `after` (it started
    /// over: nothing recorded follows on from what was applied).
    pub async fn events(
        &self,
        code: &str,
        after: u64,
        upto: Option<u64>,
    ) -> Result<Option<Vec<mirror::Envelope>>, ErrorBody> {
        let upto = upto.map_or_else(|| "-1".to_owned(), |u| u.to_string());
        let r = self.room_op(code, &["events", code, &after.to_string(), &upto]).await?;
        if r.status() == "reset" {
            return Ok(None);
        }
        check(&r, code)?;
        let found: Vec<String> = r.texts(1)?;
        Ok(Some(found.iter().filter_map(|e| parse_envelope(e.as_bytes())).collect()))
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
                let held = !grace.is_zero();
                match cluster.depart(&code, &user_id, Some(&incarnation), false, held).await {
                    Ok(Some(Departure::Grace { epoch, .. })) => {
                        let token = grace_token(&incarnation, epoch);
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
    pub fn shut_down(self: &Arc<Self>) {
        let mirrors = self.all_mirrors();
        for mirror in &mirrors {
            mirror.announce_shutdown();
        }
        for mirror in &mirrors {
            mirror.close_connections(CloseReason::Shutdown);
        }
        // The seats held here in grace (connections closed during a drain
        // whose users did not come back elsewhere) end now, and count as
        // departures until they have (`settle`).
        self.stopping.cancel();
        self.departing.fetch_add(1, Ordering::Relaxed);
        let cluster = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + cluster.config.timeout * 3;
            while !cluster.graces.lock().is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            cluster.departing.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Rooms this node has connections in.
    pub fn mirror_count(&self) -> usize {
        self.mirrors.read().len()
    }

    /// Takes what was published: one envelope, or several, one per line
    /// (a batch of posts).
    pub(super) fn on_published(self: &Arc<Self>, payload: &[u8]) {
        for envelope in payload.split(|b| *b == b'\n') {
            self.on_envelope(envelope);
        }
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
    pub(super) fn fill(self: &Arc<Self>, mirror: Arc<Mirror>) {
        let Some(after) = mirror.start_fill() else { return };
        let cluster = self.clone();
        tokio::spawn(async move {
            let missed = cluster.events(mirror.code(), after, None).await;
            let incarnation = cluster.incarnation();
            match missed {
                Ok(missed) => {
                    let lost = match &missed {
                        None => true,
                        Some(envelopes) => envelopes.first().is_some_and(|e| e.ev > after + 1),
                    };
                    let envelopes = missed.unwrap_or_default();
                    if lost {
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
}

/// Listens to the events of the rooms on shard `index`, subscribing again
/// whenever the subscription ends.
pub(super) async fn subscribe_loop(cluster: Weak<Cluster>, index: usize) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let timeout = c.config.timeout;
        let shard = &c.shards[index];
        let pubsub = tokio::time::timeout(timeout, shard.client.get_async_pubsub()).await;
        if let Ok(Ok(mut pubsub)) = pubsub
            && let Ok(Ok(())) = tokio::time::timeout(timeout, pubsub.subscribe(c.channel())).await
        {
            shard.subscribed.store(true, Ordering::Relaxed);
            // What was published while this node was not listening.
            for mirror in c.all_mirrors() {
                if c.shard(mirror.code()).index == index {
                    c.fill(mirror);
                }
            }
            let mut stream = pubsub.into_on_message();
            loop {
                tokio::select! {
                    message = stream.next() => match message {
                        Some(message) => c.on_published(message.get_payload_bytes()),
                        None => break,
                    },
                    () = shard.resubscribe.notified() => break,
                }
            }
            shard.subscribed.store(false, Ordering::Relaxed);
            tracing::warn!("cluster: the event subscription ended; subscribing again");
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
