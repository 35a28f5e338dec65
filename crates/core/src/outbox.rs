//! A connection's bounded outbox.
//!
//! Rooms push pre-serialized frames into it with [`Outbox::push`], which
//! never waits. Overflow policy: when the queue is full the connection is
//! closed with [`CloseReason::Overflow`] and the frame is dropped. The
//! client reconnects and resumes with `since`, so it loses nothing, and the
//! room never slows down for one slow reader.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Why the server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The outbox overflowed: the client read too slowly.
    Overflow,
    /// The server is shutting down.
    Shutdown,
    /// The client sent a frame over the size limit.
    FrameTooLarge,
    /// The client did not say `hello` in time.
    HelloTimeout,
    /// This node lost track of a room the connection is in (events that
    /// cannot be read back, or a lapsed cluster lease): the client should
    /// reconnect and resume at once; nothing is shutting down.
    Resync,
    /// The operator banned the client's address from the server.
    Banned,
}

impl CloseReason {
    /// Whether frames already queued should still be written before closing.
    pub fn flush_first(self) -> bool {
        match self {
            CloseReason::Overflow => false,
            CloseReason::Shutdown | CloseReason::Resync => true,
            CloseReason::FrameTooLarge | CloseReason::HelloTimeout | CloseReason::Banned => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Overflow => "outbox overflow: reading too slowly; reconnect and resume",
            CloseReason::Shutdown => "server shutting down",
            CloseReason::FrameTooLarge => "frame over the size limit",
            CloseReason::HelloTimeout => "no hello in time",
            CloseReason::Resync => "this node lost track of a room; reconnect and resume",
            CloseReason::Banned => "this address is banned from this server",
        }
    }
}

struct Closer {
    token: CancellationToken,
    reason: OnceLock<CloseReason>,
}

/// The queue itself. Not a tokio `mpsc` channel: a bounded channel
/// allocates a block of 32 slots (about 1.5 KB with its state) for every
/// connection up front, while this starts empty and grows with what is
/// queued, which matters with a hundred thousand idle connections.
///
/// The lock is a `parking_lot::Mutex` held only for a push or a pop, never
/// across an `.await`.
struct Queue {
    frames: Mutex<Frames>,
    capacity: usize,
    /// Wakes the writer when a frame is queued, the connection is closed
    /// or the last sender is gone. The writer registers before it looks at
    /// the queue, so no wake is lost; waking takes no lock (a `Notify`'s
    /// did, once per delivery).
    waker: AtomicWaker,
    /// Live `Outbox` handles; at zero the writer sees the end.
    senders: AtomicUsize,
    receiver_gone: AtomicBool,
}

/// Queued frames, oldest first. The first is kept inline: a connection
/// that gets one frame at a time (the usual case: a delivery every so
/// often) queues it without allocating, and an idle one holds no memory
/// beyond this struct.
#[derive(Default)]
struct Frames {
    first: Option<Bytes>,
    rest: VecDeque<Bytes>,
}

impl Frames {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn push(&mut self, frame: Bytes) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(frame);
        } else {
            self.rest.push_back(frame);
        }
    }

    fn pop(&mut self) -> Option<Bytes> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    /// Frees the queue's memory once it is empty, so that an idle
    /// connection holds none (a burst grows it again).
    fn release(&mut self) {
        if self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
    }
}

/// The sending half: cheap to clone, held by every room the connection joined.
pub struct Outbox {
    queue: Arc<Queue>,
    closer: Arc<Closer>,
}

/// The receiving half, drained by the connection's writer.
pub struct OutboxReceiver {
    queue: Arc<Queue>,
    closer: Arc<Closer>,
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.queue.senders.fetch_add(1, Ordering::Relaxed);
        Outbox { queue: self.queue.clone(), closer: self.closer.clone() }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.queue.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue.waker.wake();
        }
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        self.queue.receiver_gone.store(true, Ordering::Release);
        *self.queue.frames.lock() = Frames::default();
    }
}

impl Outbox {
    /// A new outbox holding at most `capacity` frames.
    pub fn new(capacity: usize) -> (Outbox, OutboxReceiver) {
        let queue = Arc::new(Queue {
            frames: Mutex::new(Frames::default()),
            capacity: capacity.max(1),
            waker: AtomicWaker::new(),
            senders: AtomicUsize::new(1),
            receiver_gone: AtomicBool::new(false),
        });
        let closer = Arc::new(Closer { token: CancellationToken::new(), reason: OnceLock::new() });
        (Outbox { queue: queue.clone(), closer: closer.clone() }, OutboxReceiver { queue, closer })
    }

    /// Queues a frame without waiting. Returns false if it was not queued:
    /// the connection is closing, or its outbox overflowed (which closes it).
    pub fn push(&self, frame: Bytes) -> bool {
        if self.queue.receiver_gone.load(Ordering::Acquire) {
            return false;
        }
        let mut frames = self.queue.frames.lock();
        if frames.len() >= self.queue.capacity {
            drop(frames);
            metrics::counter!(crate::metric::OUTBOX_OVERFLOWS).increment(1);
            self.close(CloseReason::Overflow);
            return false;
        }
        frames.push(frame);
        drop(frames);
        self.queue.waker.wake();
        true
    }

    /// Asks the writer to close the connection. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.closer.reason.set(reason);
        self.closer.token.cancel();
        // Wakes a writer waiting in `OutboxReceiver::next`.
        self.queue.waker.wake();
    }

    /// Resolves once the connection has been asked to close.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn closing(&self) {
        self.closer.token.cancelled().await;
    }

    pub fn is_closed(&self) -> bool {
        self.closer.token.is_cancelled() || self.queue.receiver_gone.load(Ordering::Acquire)
    }

    /// Whether two handles lead to the same connection.
    pub fn same(&self, other: &Outbox) -> bool {
        Arc::ptr_eq(&self.closer, &other.closer)
    }
}

impl OutboxReceiver {
    /// The next frame, or `None` once the outbox is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a frame is either returned or left in the queue.
    pub async fn recv(&mut self) -> Option<Bytes> {
        match poll_fn(|cx| self.poll_next(cx, false)).await {
            Next::Frame(frame) => Some(frame),
            Next::Closed(_) | Next::End => None,
        }
    }

    /// The next frame, or why the connection ends: asked to close (with
    /// the reason; frames still queued stay for [`try_recv`]), or every
    /// sender gone.
    ///
    /// Unlike `recv` raced against [`CloseSignal::closed`], this checks the
    /// close with one atomic load per call instead of polling a
    /// cancellation future (which takes a lock) on every wake-up: it is
    /// what a writer that wakes once per delivery should wait on.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a frame is either returned or left in the queue.
    ///
    /// [`try_recv`]: OutboxReceiver::try_recv
    pub async fn next(&mut self) -> Next {
        poll_fn(|cx| self.poll_next(cx, true)).await
    }

    /// One look at the queue. The waker is registered before the look, so
    /// a push or close that comes after it wakes this task.
    fn poll_next(&mut self, cx: &mut Context<'_>, watch_close: bool) -> Poll<Next> {
        self.queue.waker.register(cx.waker());
        if watch_close && let Some(reason) = self.close_reason() {
            return Poll::Ready(Next::Closed(reason));
        }
        {
            let mut frames = self.queue.frames.lock();
            if let Some(frame) = frames.pop() {
                return Poll::Ready(Next::Frame(frame));
            }
            frames.release();
        }
        if self.queue.senders.load(Ordering::Acquire) == 0 {
            // The last push happened before the last sender went.
            return Poll::Ready(match self.try_recv() {
                Some(frame) => Next::Frame(frame),
                None => Next::End,
            });
        }
        Poll::Pending
    }

    /// A frame already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.queue.frames.lock().pop()
    }

    /// A handle that tells when the connection must close, usable while
    /// the receiver is borrowed by `recv`.
    pub fn signal(&self) -> CloseSignal {
        CloseSignal { closer: self.closer.clone() }
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.closer.reason.get().copied()
    }
}

/// What [`OutboxReceiver::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Frame(Bytes),
    /// The connection was asked to close, for this reason.
    Closed(CloseReason),
    /// Every sender is gone and the queue is empty.
    End,
}

/// Tells a writer when its connection must close, and why.
pub struct CloseSignal {
    closer: Arc<Closer>,
}

impl CloseSignal {
    /// Resolves when the connection must close, with the reason.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn closed(&self) -> CloseReason {
        self.closer.token.cancelled().await;
        self.closer.reason.get().copied().unwrap_or(CloseReason::Shutdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_closes_instead_of_waiting() {
        let (outbox, mut rx) = Outbox::new(2);
        assert!(outbox.push(Bytes::from_static(b"1")));
        assert!(outbox.push(Bytes::from_static(b"2")));
        assert!(!outbox.push(Bytes::from_static(b"3")));
        assert_eq!(rx.signal().closed().await, CloseReason::Overflow);
        assert_eq!(rx.recv().await.as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn the_first_reason_wins() {
        let (outbox, rx) = Outbox::new(1);
        outbox.close(CloseReason::Shutdown);
        outbox.close(CloseReason::Overflow);
        assert_eq!(rx.close_reason(), Some(CloseReason::Shutdown));
    }

    #[tokio::test]
    async fn the_writer_gets_every_frame_then_the_end_once_every_sender_is_gone() {
        let (outbox, mut rx) = Outbox::new(4);
        let room = outbox.clone();
        let writer = tokio::spawn(async move {
            let mut frames = Vec::new();
            while let Some(frame) = rx.recv().await {
                frames.push(frame);
            }
            frames
        });
        assert!(outbox.push(Bytes::from_static(b"1")));
        drop(outbox);
        tokio::task::yield_now().await;
        assert!(room.push(Bytes::from_static(b"2")));
        drop(room);
        assert_eq!(writer.await.unwrap(), [&b"1"[..], &b"2"[..]]);
    }

    #[tokio::test]
    async fn next_wakes_for_a_frame_a_close_and_the_end() {
        let (outbox, mut rx) = Outbox::new(4);
        let waiting = tokio::spawn(async move {
            let first = rx.next().await;
            (rx, first)
        });
        tokio::task::yield_now().await;
        assert!(outbox.push(Bytes::from_static(b"1")));
        let (mut rx, first) = waiting.await.unwrap();
        assert_eq!(first, Next::Frame(Bytes::from_static(b"1")));
        // A close wakes a waiting writer, and frames queued before it stay.
        assert!(outbox.push(Bytes::from_static(b"2")));
        outbox.close(CloseReason::Shutdown);
        assert_eq!(rx.next().await, Next::Closed(CloseReason::Shutdown));
        assert_eq!(rx.try_recv().as_deref(), Some(&b"2"[..]));
        let (outbox, mut rx) = Outbox::new(4);
        drop(outbox);
        assert_eq!(rx.next().await, Next::End);
    }

    #[test]
    fn frames_come_out_in_the_order_they_went_in_however_they_interleave() {
        let (outbox, mut rx) = Outbox::new(16);
        let mut sent = 0u32;
        let mut got = Vec::new();
        // Pushes and pops interleaved in every pattern of up to 3 each,
        // so the inline first slot is taken and refilled while more wait.
        for (pushes, pops) in [(1, 1), (3, 1), (1, 2), (2, 3), (3, 3), (1, 0), (0, 2)] {
            for _ in 0..pushes {
                sent += 1;
                assert!(outbox.push(Bytes::from(sent.to_string())));
            }
            for _ in 0..pops {
                got.extend(rx.try_recv());
            }
        }
        while let Some(frame) = rx.try_recv() {
            got.push(frame);
        }
        let expected: Vec<Bytes> = (1..=sent).map(|n| Bytes::from(n.to_string())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn nothing_is_queued_once_the_writer_is_gone() {
        let (outbox, rx) = Outbox::new(4);
        drop(rx);
        assert!(outbox.is_closed());
        assert!(!outbox.push(Bytes::from_static(b"1")));
    }
}
