//! The frame layer of the terminal protocol: bytes in, lines out.
//!
//! A line ends with `\n` (a `\r` before it is dropped). Memory is bounded
//! by the line limit: a line longer than that is never buffered whole;
//! its bytes are discarded as they arrive and, once its end is seen, the
//! reader yields [`Line::TooLong`] so the session can answer with an
//! error and go on with the next line.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// One line from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line within the limit, without its terminator. Not yet known to
    /// be UTF-8.
    Complete(Bytes),
    /// A line over the limit, already discarded: its length in bytes.
    TooLong(usize),
}

/// Reads lines of at most `limit` bytes from `reader`.
pub(crate) struct LineReader<R> {
    reader: R,
    buffer: BytesMut,
    limit: usize,
    /// While an overlong line is being skipped: how many bytes of it have
    /// been dropped so far.
    discarding: Option<usize>,
    /// Whether the last byte dropped was a `\r`, which is not counted in
    /// the line's length if the `\n` comes next.
    dropped_cr: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(reader: R, limit: usize) -> Self {
        LineReader {
            reader,
            buffer: BytesMut::with_capacity(READ_CHUNK.min(limit + 1)),
            limit,
            discarding: None,
            dropped_cr: false,
        }
    }

    /// The next line, or `None` once the client has closed its side. A
    /// last line without `\n` still counts as a line.
    ///
    /// # Errors
    ///
    /// A failed read from the socket.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: bytes already read stay in the buffer, and the only
    /// `.await` is a read that either returns data or does nothing.
    pub(crate) async fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.parse() {
                return Ok(Some(line));
            }
            // `parse` leaves at most `limit` bytes buffered, so the buffer
            // never holds more than `limit + READ_CHUNK`.
            self.buffer.reserve(READ_CHUNK);
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                return Ok(self.finish());
            }
        }
    }

    /// Reads and drops everything until the client closes its side.
    ///
    /// # Errors
    ///
    /// A failed read from the socket.
    pub(crate) async fn discard(&mut self) -> io::Result<()> {
        loop {
            self.buffer.clear();
            self.buffer.reserve(READ_CHUNK);
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Takes one line out of the buffer if there is a whole one.
    fn parse(&mut self) -> Option<Line> {
        let newline = self.buffer.iter().position(|&b| b == b'\n');
        if let Some(dropped) = self.discarding {
            return match newline {
                Some(end) => {
                    let cr = if end == 0 { self.dropped_cr } else { self.buffer[end - 1] == b'\r' };
                    self.buffer.advance(end + 1);
                    self.discarding = None;
                    Some(Line::TooLong(dropped + end - usize::from(cr)))
                }
                None => {
                    self.discard_buffer(dropped);
                    None
                }
            };
        }
        match newline {
            Some(end) => {
                let mut line = self.buffer.split_to(end + 1);
                line.truncate(end);
                if line.ends_with(b"\r") {
                    line.truncate(end - 1);
                }
                if line.len() > self.limit {
                    return Some(Line::TooLong(line.len()));
                }
                Some(Line::Complete(line.freeze()))
            }
            // One byte of slack for a `\r` whose `\n` has not arrived.
            None if self.buffer.len() > self.limit + 1 => {
                self.discard_buffer(0);
                None
            }
            None => None,
        }
    }

    /// Drops what is buffered of an overlong line, `dropped` bytes of
    /// which went before.
    fn discard_buffer(&mut self, dropped: usize) {
        if let Some(&last) = self.buffer.last() {
            self.dropped_cr = last == b'\r';
        }
        self.discarding = Some(dropped + self.buffer.len());
        self.buffer.clear();
    }

    /// What is left when the client closed its side.
    fn finish(&mut self) -> Option<Line> {
        if let Some(dropped) = self.discarding.take() {
            return Some(Line::TooLong(dropped - usize::from(self.dropped_cr)));
        }
        if self.buffer.is_empty() {
            return None;
        }
        let mut line = self.buffer.split();
        if line.ends_with(b"\r") {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.limit {
            return Some(Line::TooLong(line.len()));
        }
        Some(Line::Complete(line.freeze()))
    }

    /// Bytes the reader has room for, to show that memory stays bounded.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buffer.capacity()
    }
}
