//! Posts to persistent rooms: stored in batches, then published.

use std::sync::Weak;

use confab_proto::Message;
use tokio::sync::mpsc;

use confab_core::frames::{error_frame, message_reply};

use super::*;

/// Stores posts to persistent rooms, a room's queued posts in one
/// transaction, and publishes each once stored.
pub(super) async fn persist_loop(cluster: Weak<Cluster>, mut rx: mpsc::Receiver<PersistJob>) {
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
            metrics::histogram!(confab_core::metric::STORE_WRITE).record(started.elapsed());
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
                            let shadow = message.shadow;
                            let published = c
                                .commit(&code, message.seq, "- 0 - ", &json, cid_key, shadow)
                                .await;
                            if published.is_err()
                                && let Some(key) = &job.cid_key
                            {
                                c.unclaim(&code, key, &job.claim);
                            }
                            if let Some(id) = job.reply {
                                job.outbox.push(message_reply(id, json.as_bytes()));
                            }
                            continue;
                        }
                        let cid_key = job.cid_key.as_deref();
                        let shadow = message.shadow;
                        match c
                            .commit(&code, message.seq, &job.origin, &json, cid_key, shadow)
                            .await
                        {
                            Ok(()) => metrics::counter!(confab_core::metric::POSTS).increment(1),
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
                        job.outbox
                            .push(error_frame(job.reply, confab_core::frames::storage_down()));
                    }
                }
            }
        }
    }
}
