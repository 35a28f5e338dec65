//! Fan-out to a node's own connections: the part of a room every backend
//! shares.
//!
//! A connection joining a room is *pending* until its join reply has been
//! queued: events for it are held back meanwhile, so that the reply comes
//! first and nothing between the join's snapshot and the first live event
//! is lost. [`Listener::activate`] releases them.

use bytes::Bytes;

use crate::{CloseReason, Outbox};

/// Frames a connection may be sent between its join and the moment its
/// join reply is queued. Overflow policy: past it the connection is closed
/// as one that fell behind (`CloseReason::Overflow`).
pub const PENDING_LIMIT: usize = 1024;

/// One connection in a room, as the room's fan-out sees it.
pub struct Listener {
    /// The connection's id on this node.
    pub conn: u64,
    pub outbox: Outbox,
    /// Frames held back until the join reply has been queued.
    pending: Option<Vec<Bytes>>,
}

impl Listener {
    /// A connection that is joining: pending until [`Listener::activate`].
    pub fn pending(conn: u64, outbox: &Outbox) -> Listener {
        Listener { conn, outbox: outbox.clone(), pending: Some(Vec::new()) }
    }

    /// Queues a frame, or holds it back while the connection is pending.
    /// Allocates nothing once active: a reference count on the shared
    /// frame and a non-blocking queue send.
    pub fn push(&mut self, frame: &Bytes) {
        match &mut self.pending {
            None => {
                self.outbox.push(frame.clone());
            }
            Some(pending) if pending.len() < PENDING_LIMIT => pending.push(frame.clone()),
            Some(_) => self.outbox.close(CloseReason::Overflow),
        }
    }

    /// Releases what was held back, in order.
    pub fn activate(&mut self) {
        for frame in self.pending.take().unwrap_or_default() {
            self.outbox.push(frame);
        }
    }

    /// Puts `frames` ahead of what is held back (events the connection
    /// missed, read back after its join).
    pub fn prepend(&mut self, mut frames: Vec<Bytes>) {
        if let Some(pending) = &mut self.pending {
            frames.append(pending);
            *pending = frames;
        }
    }

    /// Runs `f` with held-back frames collected apart, and returns them.
    pub fn collect(&mut self, f: impl FnOnce(&mut Listener)) -> Vec<Bytes> {
        let held = self.pending.replace(Vec::new());
        f(self);
        std::mem::replace(&mut self.pending, held).unwrap_or_default()
    }
}

/// Queues `closed` (reason `shutdown`) for every listener of a room: the
/// node does this for every room before it closes any connection, so that
/// a client in several rooms hears of each.
pub fn announce_shutdown<'a>(room: &str, listeners: impl Iterator<Item = &'a mut Listener>) {
    announce_closed(room, "shutdown", listeners);
}

/// Queues `closed` with `reason` for every listener: the room closes for
/// these connections (the server stops, or they were removed).
pub fn announce_closed<'a>(
    room: &str,
    reason: &str,
    listeners: impl Iterator<Item = &'a mut Listener>,
) {
    let frame = crate::frames::event_frame(&confab_proto::Event::Closed {
        room: room.to_owned(),
        reason: reason.into(),
    });
    for listener in listeners {
        listener.push(&frame);
    }
}

/// Closes every listener's connection with `reason`, after what is queued.
pub fn close_all<'a>(listeners: impl Iterator<Item = &'a Listener>, reason: CloseReason) {
    for listener in listeners {
        listener.outbox.close(reason);
    }
}
