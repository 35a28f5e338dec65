//! The writing side: the outbox drained into the socket, every frame
//! already queued in one write, the close frame last.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use confab_core::{CloseReason, Next, OutboxReceiver};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::frame::{self, MAX_HEAD};
use super::{POLICY_VIOLATION, SERVICE_RESTART, TOO_BIG, TRY_AGAIN_LATER};

/// Frames written in one vectored `write` at most (two slices each: the
/// header and the shared payload).
const BATCH: usize = 32;
/// Up to this many bytes, a batch is copied into one buffer on the stack
/// and written with a plain `write`: for a frame or two that is cheaper
/// than the kernel's walk over a list of slices.
const SMALL_WRITE: usize = 2048;

/// How long one write may wait for a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the closing frames may take to go out before the socket is
/// dropped without them.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The writing half of a socket, plain or TLS: the writer needs only
/// these.
pub(crate) trait Socket: Send + 'static {
    /// Writes what it can at once, without waiting.
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// The same from several buffers.
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Resolves when the socket may take more.
    fn writable(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Pushes out, without waiting, what the socket took but holds back
    /// (TLS records); whether nothing is held back now.
    fn try_flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }
    /// Waits until nothing is held back.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
    /// Ends the stream once the last frame is out (for TLS, with its
    /// `close_notify`); a plain socket's end goes when it is dropped.
    fn finish(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

impl Socket for OwnedWriteHalf {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        OwnedWriteHalf::try_write(self, buf)
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        OwnedWriteHalf::try_write_vectored(self, bufs)
    }

    fn writable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        OwnedWriteHalf::writable(self)
    }
}

/// A TLS stream's writing half. A write without waiting is a poll with a
/// waker that does nothing: `Pending` is `WouldBlock`, and the waits
/// ([`Socket::writable`], [`Socket::flush`]) poll again with the task's
/// own. rustls takes plaintext into its buffer and may keep records of it
/// when the socket is full: those wait for a flush.
pub(crate) struct TlsWriter<S>(pub tokio::io::WriteHalf<S>);

impl<S: AsyncWrite + Send + 'static> TlsWriter<S> {
    fn now<T>(
        &mut self,
        poll: impl FnOnce(Pin<&mut tokio::io::WriteHalf<S>>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> io::Result<T> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match poll(Pin::new(&mut self.0), &mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncWrite + Send + 'static> Socket for TlsWriter<S> {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.now(|socket, cx| socket.poll_write(cx, buf))
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.now(|socket, cx| socket.poll_write_vectored(cx, bufs))
    }

    /// rustls takes more once what it holds has gone out.
    fn writable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        self.0.flush()
    }

    fn try_flush(&mut self) -> io::Result<bool> {
        match self.now(|socket, cx| socket.poll_flush(cx)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        self.0.flush()
    }

    async fn finish(&mut self) {
        let _ = timeout(CLOSE_TIMEOUT, self.0.shutdown()).await;
    }
}

/// Bytes the socket did not take at once, and how far they have gone out.
struct Unsent {
    bytes: Vec<u8>,
    at: usize,
}

/// What one attempt to write the queued frames did.
enum Written {
    /// Everything queued went out.
    All,
    /// A close frame went out: nothing more may follow it.
    Closed,
    /// The socket took part; the rest waits for it. `closing`: the rest
    /// ends with a close frame.
    Partly(Unsent, bool),
}

/// A frame queued already framed (a control frame), rather than JSON.
fn is_framed(frame: &[u8]) -> bool {
    frame.first().is_some_and(|first| first & 0x80 != 0)
}

/// Writes `first` and whatever else is queued, as many frames per
/// vectored write as fit, without waiting: each frame is its header and
/// its shared payload.
fn write_now<S: Socket>(
    socket: &mut S,
    first: Bytes,
    outbox: &mut OutboxReceiver,
) -> io::Result<Written> {
    let mut next = Some(first);
    loop {
        let mut frames: [Bytes; BATCH] = Default::default();
        let mut count = 0;
        let mut closing = false;
        while count < BATCH && !closing {
            let Some(frame) = next.take().or_else(|| outbox.try_recv()) else { break };
            closing = frame.first() == Some(&(0x80 | frame::CLOSE));
            frames[count] = frame;
            count += 1;
        }
        if count == 0 {
            return Ok(if socket.try_flush()? { Written::All } else { held_back(false) });
        }
        let mut heads = [[0u8; MAX_HEAD]; BATCH];
        let mut slices = [IoSlice::new(&[]); 2 * BATCH];
        let mut used = 0;
        let mut total = 0;
        for (frame, head) in frames[..count].iter().zip(heads.iter_mut()) {
            if !is_framed(frame) {
                let len = frame::head(head, frame::TEXT, frame.len());
                let head: &[u8; MAX_HEAD] = head;
                slices[used] = IoSlice::new(&head[..len]);
                used += 1;
                total += len;
            }
            slices[used] = IoSlice::new(frame);
            used += 1;
            total += frame.len();
        }
        let attempt = if total <= SMALL_WRITE {
            let mut flat = [0u8; SMALL_WRITE];
            let mut at = 0;
            for slice in &slices[..used] {
                flat[at..at + slice.len()].copy_from_slice(slice);
                at += slice.len();
            }
            socket.try_write(&flat[..total])
        } else {
            socket.try_write_vectored(&slices[..used])
        };
        let written = match attempt {
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if written == total {
            if closing {
                return Ok(if socket.try_flush()? { Written::Closed } else { held_back(true) });
            }
            continue;
        }
        let mut rest = Vec::with_capacity(total - written);
        let mut skip = written;
        for slice in &slices[..used] {
            if skip >= slice.len() {
                skip -= slice.len();
            } else {
                rest.extend_from_slice(&slice[skip..]);
                skip = 0;
            }
        }
        return Ok(Written::Partly(Unsent { bytes: rest, at: 0 }, closing));
    }
}

/// Everything was taken, but the socket holds some of it back (TLS
/// records it could not send yet): nothing is left to write but a flush.
fn held_back(closing: bool) -> Written {
    Written::Partly(Unsent { bytes: Vec::new(), at: 0 }, closing)
}

/// Writes `unsent` to the end, waiting for the socket as it must, and
/// flushes it. Progress is kept in `unsent`, so a caller that stops
/// waiting can finish later.
async fn send<S: Socket>(socket: &mut S, unsent: &mut Unsent) -> io::Result<()> {
    while unsent.at < unsent.bytes.len() {
        socket.writable().await?;
        match socket.try_write(&unsent.bytes[unsent.at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => unsent.at += written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    socket.flush().await
}

/// Drains the outbox into the socket until the connection ends.
///
/// A write that the socket does not take at once races the close signal:
/// a client that reads nothing stalls it, and an overflow or a shutdown
/// must still close the connection at once rather than when
/// [`WRITE_TIMEOUT`] runs out. Dropping the socket at the end sends the
/// client the end of the stream.
pub(super) async fn write_frames<S: Socket>(
    mut socket: S,
    outbox: OutboxReceiver,
    shutdown: CancellationToken,
) {
    // A socket that failed or stalled is dropped as it is: waiting to end
    // it cleanly would only hold it longer.
    if write_until_closed(&mut socket, outbox, shutdown).await {
        socket.finish().await;
    }
}

/// The loop of [`write_frames`]; whether the socket is still good.
async fn write_until_closed<S: Socket>(
    socket: &mut S,
    mut outbox: OutboxReceiver,
    shutdown: CancellationToken,
) -> bool {
    let signal = outbox.signal();
    let (reason, mut unfinished) = loop {
        // One atomic load tells a close (a shutdown reaches the writer as a
        // close of the outbox, from `serve`).
        let frame = match outbox.next().await {
            Next::Frame(frame) => frame,
            Next::Closed(reason) => break (reason, None),
            // Every sender is gone: the client left, or the reader queued
            // the last frame.
            Next::End => return true,
        };
        let (mut rest, closing) = match write_now(socket, frame, &mut outbox) {
            Ok(Written::All) => continue,
            Ok(Written::Closed) => return true,
            Err(_) => return false,
            Ok(Written::Partly(rest, closing)) => (rest, closing),
        };
        // Boxed: the stalled write's state lives only while it waits,
        // instead of enlarging every idle connection's writer task.
        let written = tokio::select! {
            biased;
            written = Box::pin(timeout(WRITE_TIMEOUT, send(socket, &mut rest))) => written,
            reason = signal.closed() => break (reason, Some(rest)),
            () = shutdown.cancelled() => break (CloseReason::Shutdown, Some(rest)),
        };
        match written {
            Ok(Ok(())) if !closing => {}
            Ok(Ok(())) => return true,
            Ok(Err(_)) => return false,
            Err(_) => {
                tracing::debug!("websocket write stalled for {WRITE_TIMEOUT:?}; closing");
                return false;
            }
        }
    };
    // Boxed like the stalled write: the closing state is needed once.
    let closed = Box::pin(timeout(CLOSE_TIMEOUT, async {
        // A frame half written is finished first, or the close frame would
        // land inside it.
        if let Some(rest) = unfinished.as_mut() {
            send(socket, rest).await?;
        }
        if reason.flush_first()
            && let Some(frame) = outbox.try_recv()
        {
            match write_now(socket, frame, &mut outbox)? {
                Written::All => {}
                Written::Closed => return Ok(()),
                Written::Partly(mut rest, closing) => {
                    send(socket, &mut rest).await?;
                    if closing {
                        return Ok(());
                    }
                }
            }
        }
        let code = match reason {
            CloseReason::Overflow => TRY_AGAIN_LATER,
            CloseReason::Shutdown => SERVICE_RESTART,
            CloseReason::FrameTooLarge => TOO_BIG,
            CloseReason::HelloTimeout | CloseReason::Banned => POLICY_VIOLATION,
            CloseReason::Resync => SERVICE_RESTART,
        };
        let close = frame::close(code, reason.as_str());
        send(socket, &mut Unsent { bytes: close, at: 0 }).await
    }))
    .await;
    matches!(closed, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use confab_core::Outbox;

    use super::*;

    /// A socket whose peer reads nothing: it takes no byte, ever.
    struct Stalled;

    impl Socket for Stalled {
        fn try_write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }

        fn try_write_vectored(&mut self, _: &[IoSlice<'_>]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }

        fn writable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
            std::future::pending()
        }
    }

    /// A socket that takes at most `per_write` bytes a write, and keeps
    /// each write apart.
    struct Recorder {
        writes: std::sync::Arc<Mutex<Vec<Vec<u8>>>>,
        per_write: usize,
    }

    impl Socket for Recorder {
        fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.try_write_vectored(&[IoSlice::new(buf)])
        }

        fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut write: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            write.truncate(self.per_write);
            let len = write.len();
            self.writes.lock().unwrap().push(write);
            Ok(len)
        }

        fn writable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
            std::future::ready(Ok(()))
        }
    }

    /// A socket like TLS over a full one: it takes every byte, and sends
    /// none until the peer reads (`reading`) and the writer flushes.
    #[derive(Default)]
    struct HoldsBack {
        taken: Vec<u8>,
        sent: std::sync::Arc<Mutex<Vec<u8>>>,
        reading: std::sync::Arc<tokio::sync::Notify>,
    }

    impl Socket for HoldsBack {
        fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.taken.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            bufs.iter().map(|b| self.try_write(b)).sum()
        }

        fn writable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
            std::future::ready(Ok(()))
        }

        fn try_flush(&mut self) -> io::Result<bool> {
            Ok(self.taken.is_empty())
        }

        async fn flush(&mut self) -> io::Result<()> {
            self.reading.notified().await;
            self.sent.lock().unwrap().append(&mut self.taken);
            Ok(())
        }
    }

    /// Regression guard for TLS: a frame rustls took but could not send
    /// must not wait for the next frame to be pushed out.
    #[tokio::test]
    async fn a_frame_the_socket_holds_back_goes_out_without_another_behind_it() {
        let socket = HoldsBack::default();
        let (sent, reading) = (socket.sent.clone(), socket.reading.clone());
        let (outbox, receiver) = Outbox::new(4);
        let writer = tokio::spawn(write_frames(socket, receiver, CancellationToken::new()));
        assert!(outbox.push(Bytes::from_static(b"{}")));
        reading.notify_one();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while sent.lock().unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the frame was never flushed");
            tokio::task::yield_now().await;
        }
        assert_eq!(*sent.lock().unwrap(), [0x81, 2, b'{', b'}']);
        drop(outbox);
        writer.await.unwrap();
    }

    fn recorder(per_write: usize) -> (Recorder, std::sync::Arc<Mutex<Vec<Vec<u8>>>>) {
        let writes = std::sync::Arc::default();
        (Recorder { writes: std::sync::Arc::clone(&writes), per_write }, writes)
    }

    /// Regression: the writer awaited a stalled write without watching the
    /// close signal, so an overflowing connection whose client read nothing
    /// was never closed, and its socket and task stayed forever.
    #[tokio::test(start_paused = true)]
    async fn an_overflow_during_a_stalled_write_ends_the_writer() {
        let (outbox, receiver) = Outbox::new(1);
        let writer = tokio::spawn(write_frames(Stalled, receiver, CancellationToken::new()));
        assert!(outbox.push(Bytes::from_static(b"{}")));
        tokio::task::yield_now().await;
        // The writer is stuck on the first frame; the next ones overflow.
        while outbox.push(Bytes::from_static(b"{}")) {}
        let ended = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), writer).await;
        assert!(ended.is_ok(), "the writer still waits for the stalled write");
        // Well before the write timeout: the close, not the timeout, ended it.
        assert!(CLOSE_TIMEOUT + Duration::from_secs(1) < WRITE_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_during_a_stalled_write_ends_the_writer() {
        let (outbox, receiver) = Outbox::new(4);
        let shutdown = CancellationToken::new();
        let writer = tokio::spawn(write_frames(Stalled, receiver, shutdown.clone()));
        assert!(outbox.push(Bytes::from_static(b"{}")));
        tokio::task::yield_now().await;
        shutdown.cancel();
        let ended = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), writer).await;
        assert!(ended.is_ok(), "the writer still waits for the stalled write");
    }

    #[tokio::test]
    async fn queued_frames_go_out_framed_in_one_write() {
        let (mut socket, writes) = recorder(usize::MAX);
        let (outbox, mut receiver) = Outbox::new(64);
        let long = Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(300)));
        for frame in [Bytes::from_static(b"{\"a\":1}"), long.clone(), Bytes::from_static(b"{}")] {
            assert!(outbox.push(frame));
        }
        let first = receiver.try_recv().unwrap();
        assert!(matches!(write_now(&mut socket, first, &mut receiver), Ok(Written::All)));
        let writes = writes.lock().unwrap();
        assert_eq!(writes.len(), 1, "one write for the three frames");
        let mut expected = vec![0x81, 7];
        expected.extend_from_slice(b"{\"a\":1}");
        expected.extend_from_slice(&[0x81, 126]);
        expected.extend_from_slice(&(long.len() as u16).to_be_bytes());
        expected.extend_from_slice(&long);
        expected.extend_from_slice(&[0x81, 2, b'{', b'}']);
        assert_eq!(writes[0], expected);
    }

    #[tokio::test]
    async fn a_large_burst_goes_out_in_vectored_writes_of_a_batch_each() {
        let (mut socket, writes) = recorder(usize::MAX);
        let (outbox, mut receiver) = Outbox::new(64);
        let frames: Vec<Bytes> = (0..40)
            .map(|n| Bytes::from(format!("{{\"n\":{n:03},\"pad\":\"{}\"}}", "x".repeat(90))))
            .collect();
        for frame in &frames {
            assert!(outbox.push(frame.clone()));
        }
        let first = receiver.try_recv().unwrap();
        assert!(matches!(write_now(&mut socket, first, &mut receiver), Ok(Written::All)));
        let writes = writes.lock().unwrap();
        let sizes: Vec<usize> = writes.iter().map(Vec::len).collect();
        // A batch of 32 frames (2 bytes of header each), then the other 8.
        let framed = 2 + frames[0].len();
        assert_eq!(sizes, [BATCH * framed, 8 * framed]);
        let expected: Vec<u8> =
            frames.iter().flat_map(|f| [&[0x81, f.len() as u8][..], &f[..]].concat()).collect();
        assert_eq!(writes.concat(), expected);
    }

    #[tokio::test]
    async fn a_write_the_socket_takes_in_part_is_finished_in_order_and_nothing_follows_a_close() {
        let (socket, writes) = recorder(5);
        let (outbox, receiver) = Outbox::new(64);
        assert!(outbox.push(Bytes::from_static(b"{\"n\":1}")));
        assert!(outbox.push(Bytes::from(frame::close(1000, "bye"))));
        // Queued after the close: never written.
        assert!(outbox.push(Bytes::from_static(b"{\"n\":2}")));
        let writer = tokio::spawn(write_frames(socket, receiver, CancellationToken::new()));
        writer.await.unwrap();
        let written: Vec<u8> = writes.lock().unwrap().concat();
        let mut expected = vec![0x81, 7];
        expected.extend_from_slice(b"{\"n\":1}");
        expected.extend_from_slice(&frame::close(1000, "bye"));
        assert_eq!(written, expected);
        drop(outbox);
    }
}
