//! The reading side: frames parsed from what the socket gave, fragments
//! assembled, text checked for UTF-8 as its bytes arrive.

use std::future::Future;
use std::io;

use tokio::net::tcp::OwnedReadHalf;

use super::frame::{self, Violation};

/// The most read from the socket at once. What is read is kept until it
/// is handled and then freed, so an idle connection holds no buffer.
pub(super) const READ_CHUNK: usize = 4096;

/// What the client's bytes have been read into, and the message being
/// assembled from fragments.
pub(super) struct Reader {
    /// Bytes read and not yet handled; `start` is where they begin.
    pub buf: Vec<u8>,
    pub start: usize,
    /// Fragments of the current message: its opcode and length so far,
    /// and for a text message the fragments themselves.
    pub fragmented: Option<(u8, usize)>,
    pub message: Vec<u8>,
    pub limit: usize,
    /// The text message being received, checked as its bytes arrive.
    pub utf8: frame::Utf8,
    /// Payload bytes of a text frame still arriving that were checked.
    pub checked: usize,
}

/// One thing the reader found.
pub(super) enum Event {
    /// A whole text message at this range of `Reader::buf`.
    Text(std::ops::Range<usize>),
    /// A whole text message assembled in `Reader::message`.
    Assembled,
    /// A whole binary message.
    Binary,
    Ping(std::ops::Range<usize>),
    Pong,
    /// A close frame, with the code to echo.
    Close(Option<u16>),
    /// A fragment was kept; the message is not complete.
    Fragment,
}

impl Reader {
    /// The next event in what has been read; `None` when more must be read.
    pub fn next(&mut self) -> Result<Option<Event>, Violation> {
        let so_far = self.fragmented.map_or(0, |(_, len)| len);
        let Some(frame) = frame::parse(&mut self.buf[self.start..], so_far, self.limit)? else {
            self.check_arriving(so_far)?;
            // Keep only the unfinished frame; an idle reader keeps nothing.
            self.buf.drain(..self.start);
            self.start = 0;
            if self.buf.is_empty() {
                self.buf = Vec::new();
            }
            return Ok(None);
        };
        let payload = self.start + frame.payload.start..self.start + frame.payload.end;
        self.start += frame.end();
        if self.is_text(frame.opcode) {
            let checked = std::mem::take(&mut self.checked);
            self.utf8.feed(&self.buf[payload.start + checked..payload.end])?;
            if frame.fin {
                self.utf8.finish()?;
            }
        }
        let event = match (frame.opcode, self.fragmented) {
            (frame::PING, _) => Event::Ping(payload),
            (frame::PONG, _) => Event::Pong,
            (frame::CLOSE, _) => Event::Close(frame::close_code(&self.buf[payload])?),
            (frame::TEXT | frame::BINARY, Some(_)) => {
                return Err(Violation::Protocol("a new message before the last one ended"));
            }
            (frame::CONTINUATION, None) => {
                return Err(Violation::Protocol("a continuation frame outside a message"));
            }
            (frame::TEXT, None) if frame.fin => Event::Text(payload),
            (frame::BINARY, None) if frame.fin => Event::Binary,
            (opcode, None) => {
                self.fragmented = Some((opcode, payload.len()));
                if opcode == frame::TEXT {
                    self.message.extend_from_slice(&self.buf[payload]);
                }
                Event::Fragment
            }
            (_, Some((opcode, len))) => {
                self.fragmented = Some((opcode, len + payload.len()));
                if opcode == frame::TEXT {
                    self.message.extend_from_slice(&self.buf[payload]);
                }
                match (frame.fin, opcode) {
                    (false, _) => Event::Fragment,
                    (true, frame::TEXT) => {
                        self.fragmented = None;
                        Event::Assembled
                    }
                    (true, _) => {
                        self.fragmented = None;
                        Event::Binary
                    }
                }
            }
        };
        Ok(Some(event))
    }

    /// Whether a frame with `opcode` carries text: a text frame starting
    /// a message, or a continuation of a text message.
    fn is_text(&self, opcode: u8) -> bool {
        match self.fragmented {
            None => opcode == frame::TEXT,
            Some((first, _)) => opcode == frame::CONTINUATION && first == frame::TEXT,
        }
    }

    /// Checks the part of a text frame that has arrived, so that a byte
    /// that is not UTF-8 closes the connection when it arrives rather than
    /// when the frame (up to the frame limit) is complete.
    fn check_arriving(&mut self, so_far: usize) -> Result<(), Violation> {
        let buf = &self.buf[self.start..];
        let Some(head) = frame::read_head(buf, so_far, self.limit)? else { return Ok(()) };
        if !self.is_text(head.opcode) {
            return Ok(());
        }
        let arrived = buf.len().saturating_sub(head.start).min(head.len);
        if arrived > self.checked {
            let payload = &buf[head.start..head.start + arrived];
            let utf8 = &mut self.utf8;
            frame::unmasked_pieces(payload, self.checked, head.mask, |piece| utf8.feed(piece))?;
            self.checked = arrived;
        }
        Ok(())
    }
}

/// The reading half of a socket, plain or TLS.
pub(crate) trait Input: Send + 'static {
    /// Waits for the socket to have bytes, and appends what it has to
    /// `buf`; `Ok(0)` at its end. Cancel safe: a read not finished took
    /// nothing.
    ///
    /// The read goes through a buffer on the stack, and only what was read
    /// is kept: a connection whose op awaits (a `hello` that writes its
    /// session, a `join` that reads history) holds the size of its frame,
    /// not a whole read chunk, and ten thousand connecting at once do not
    /// leave the allocator ten thousand chunks' worth of holes. Nor does
    /// the wait hold a buffer: an idle connection has none.
    fn read_some(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = io::Result<usize>> + Send;
}

impl Input for OwnedReadHalf {
    async fn read_some(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            self.readable().await?;
            let mut chunk = [0u8; READ_CHUNK];
            match self.try_read(&mut chunk) {
                Ok(read) => {
                    buf.extend_from_slice(&chunk[..read]);
                    return Ok(read);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A TLS stream's reading half: what rustls decrypted, read through the
/// same stack buffer, which lives only while the stream is polled.
impl<S> Input for tokio::io::ReadHalf<S>
where
    S: tokio::io::AsyncRead + Send + 'static,
    tokio::io::ReadHalf<S>: Unpin,
{
    fn read_some(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = io::Result<usize>> + Send {
        std::future::poll_fn(move |cx| {
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = tokio::io::ReadBuf::new(&mut chunk);
            std::task::ready!(tokio::io::AsyncRead::poll_read(
                std::pin::Pin::new(&mut *self),
                cx,
                &mut read
            ))?;
            buf.extend_from_slice(read.filled());
            std::task::Poll::Ready(Ok(read.filled().len()))
        })
    }
}
