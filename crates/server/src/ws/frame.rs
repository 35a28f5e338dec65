//! WebSocket framing for the server's side of a connection (RFC 6455,
//! section 5).
//!
//! Reading: [`parse`] finds one frame at the start of what has been read,
//! checks it against the rules a server must enforce (client frames are
//! masked, no extension bits, control frames short and whole, a message
//! within the size limit), and unmasks its payload in place.
//!
//! Writing: a server's frames are not masked, so a frame is a header of 2
//! to 10 bytes followed by the payload as it is. The payload of a
//! broadcast is shared by every recipient, and only the header is written
//! per connection ([`head`]).

use std::ops::Range;

pub(crate) const CONTINUATION: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;

/// The longest header: 2 bytes, an 8-byte length (a server sends no mask).
pub(crate) const MAX_HEAD: usize = 10;

/// One frame found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub fin: bool,
    pub opcode: u8,
    /// Where the (unmasked) payload is in the buffer.
    pub payload: Range<usize>,
}

impl Frame {
    /// Bytes of the buffer the frame took, header included.
    pub fn end(&self) -> usize {
        self.payload.end
    }
}

/// What a client did wrong; each is answered by closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    /// Against the framing rules: close code 1002.
    Protocol(&'static str),
    /// A message longer than the limit: close code 1009.
    TooBig,
    /// A text message that is not UTF-8: close code 1007.
    NotUtf8,
}

/// A frame's header: enough to know what its payload is before all of it
/// has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub fin: bool,
    pub opcode: u8,
    /// Where the payload starts, and its length.
    pub start: usize,
    pub len: usize,
    pub mask: [u8; 4],
}

/// Reads the header at the start of `buf` and checks it, as [`parse`]
/// does; `Ok(None)` while the header itself is incomplete.
pub(crate) fn read_head(
    buf: &[u8],
    so_far: usize,
    limit: usize,
) -> Result<Option<Head>, Violation> {
    let [first, second, ..] = *buf else { return Ok(None) };
    if first & 0x70 != 0 {
        return Err(Violation::Protocol("reserved bits set; no extension was agreed"));
    }
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0F;
    let control = opcode & 0x08 != 0;
    match opcode {
        CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG => {}
        _ => return Err(Violation::Protocol("unknown opcode")),
    }
    if second & 0x80 == 0 {
        return Err(Violation::Protocol("a client's frames must be masked"));
    }
    let (len, at) = match second & 0x7F {
        126 => {
            let Some(bytes) = buf.get(2..4) else { return Ok(None) };
            (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else { return Ok(None) };
            let len = u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
            if len >> 63 != 0 {
                return Err(Violation::Protocol("frame length over 2^63"));
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    if control {
        if !fin {
            return Err(Violation::Protocol("a control frame must not be fragmented"));
        }
        if len > 125 {
            return Err(Violation::Protocol("a control frame's payload is at most 125 bytes"));
        }
    } else if len > limit.saturating_sub(so_far) as u64 {
        return Err(Violation::TooBig);
    }
    let len = usize::try_from(len).map_err(|_| Violation::TooBig)?;
    let Some(mask) = buf.get(at..at + 4) else { return Ok(None) };
    let mask: [u8; 4] = mask.try_into().expect("4 bytes");
    Ok(Some(Head { fin, opcode, start: at + 4, len, mask }))
}

/// Checks UTF-8 as it arrives, in pieces split anywhere: a byte that
/// cannot be part of UTF-8 is found when it arrives, not when its message
/// ends.
#[derive(Debug, Default)]
pub(crate) struct Utf8 {
    /// The start of a character whose other bytes are still to come.
    carry: [u8; 4],
    carried: usize,
}

impl Utf8 {
    /// Takes the next piece.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Violation> {
        while self.carried > 0 {
            let Some((&next, rest)) = bytes.split_first() else { return Ok(()) };
            self.carry[self.carried] = next;
            self.carried += 1;
            bytes = rest;
            match std::str::from_utf8(&self.carry[..self.carried]) {
                Ok(_) => self.carried = 0,
                Err(e) if e.error_len().is_none() => {}
                Err(_) => return Err(Violation::NotUtf8),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let rest = &bytes[e.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carried = rest.len();
                Ok(())
            }
            Err(_) => Err(Violation::NotUtf8),
        }
    }

    /// The message ended: no character may be left unfinished.
    pub fn finish(&mut self) -> Result<(), Violation> {
        let carried = std::mem::take(&mut self.carried);
        if carried == 0 { Ok(()) } else { Err(Violation::NotUtf8) }
    }
}

/// Unmasks a copy of `payload[from..]` (a payload whose first byte had
/// mask offset 0) piece by piece and passes each piece to `check`.
pub(crate) fn unmasked_pieces(
    payload: &[u8],
    from: usize,
    mask: [u8; 4],
    mut check: impl FnMut(&[u8]) -> Result<(), Violation>,
) -> Result<(), Violation> {
    let mut piece = [0u8; 256];
    let mut at = from;
    while at < payload.len() {
        let n = (payload.len() - at).min(piece.len());
        for (i, byte) in piece[..n].iter_mut().enumerate() {
            *byte = payload[at + i] ^ mask[(at + i) % 4];
        }
        check(&piece[..n])?;
        at += n;
    }
    Ok(())
}

/// Parses the frame at the start of `buf`, unmasking its payload in place.
///
/// `Ok(None)`: the frame is not complete yet; read more and call again.
/// `so_far` is the length of the fragments of the current message already
/// received, so that a message over `limit` is refused from the header of
/// the frame that takes it over, before its payload is read.
pub(crate) fn parse(
    buf: &mut [u8],
    so_far: usize,
    limit: usize,
) -> Result<Option<Frame>, Violation> {
    let Some(head) = read_head(buf, so_far, limit)? else { return Ok(None) };
    let payload = head.start..head.start + head.len;
    let Some(bytes) = buf.get_mut(payload.clone()) else { return Ok(None) };
    unmask(bytes, head.mask);
    Ok(Some(Frame { fin: head.fin, opcode: head.opcode, payload }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes(chunk.try_into().expect("4 bytes")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= key;
    }
}

/// Writes the header of an unmasked, final frame of `len` bytes into
/// `out`; returns its length.
pub(crate) fn head(out: &mut [u8; MAX_HEAD], opcode: u8, len: usize) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// A whole control frame (`payload` at most 125 bytes).
pub(crate) fn control(opcode: u8, payload: &[u8]) -> Vec<u8> {
    debug_assert!(payload.len() <= 125);
    let mut frame = Vec::with_capacity(2 + payload.len());
    frame.push(0x80 | opcode);
    frame.push(payload.len() as u8);
    frame.extend_from_slice(payload);
    frame
}

/// A close frame with `code` and a reason cut to fit, on a character
/// boundary.
pub(crate) fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    control(CLOSE, &payload)
}

/// Checks the payload of a client's close frame: empty, or a code a peer
/// may send followed by a UTF-8 reason. Returns the code to echo.
pub(crate) fn close_code(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::Protocol("a close frame's payload is empty or starts with a code")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            // The codes IANA registered for endpoints to send, 1012 to
            // 1014 included, and the ranges for libraries and applications.
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                return Err(Violation::Protocol("a close code a peer may not send"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation::Protocol("a close reason must be UTF-8"));
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client's frame: masked, as a browser sends it.
    fn client(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![first];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        frame
    }

    #[test]
    fn a_masked_text_frame_is_unmasked_in_place() {
        // The example of RFC 6455, section 5.7: a masked "Hello".
        let mut buf = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let frame = parse(&mut buf, 0, 1024).unwrap().unwrap();
        assert_eq!(frame, Frame { fin: true, opcode: TEXT, payload: 6..11 });
        assert_eq!(&buf[frame.payload], b"Hello");
    }

    #[test]
    fn every_length_encoding_round_trips_and_a_partial_frame_waits() {
        for len in [0, 1, 5, 125, 126, 127, 1000, 65535, 65536, 70_000] {
            let body: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let whole = client(0x81, &body);
            // Every prefix is "not yet"; the whole is the frame.
            for cut in [0, 1, 2, 3, whole.len() / 2, whole.len() - 1] {
                if cut < whole.len() {
                    let mut part = whole[..cut].to_vec();
                    assert_eq!(parse(&mut part, 0, 100_000), Ok(None), "len {len}, cut {cut}");
                }
            }
            let mut buf = whole.clone();
            buf.extend_from_slice(b"next frame");
            let frame = parse(&mut buf, 0, 100_000).unwrap().unwrap();
            assert_eq!(frame.end(), whole.len());
            assert_eq!(&buf[frame.payload], &body[..], "len {len}");
        }
    }

    #[test]
    fn what_a_server_must_refuse_is_refused() {
        let cases: [(Vec<u8>, Violation); 6] = [
            // Unmasked.
            (vec![0x81, 0x02, b'h', b'i'], Violation::Protocol("a client's frames must be masked")),
            // RSV1 (compression) without an agreed extension.
            (
                client(0xC1, b"hi"),
                Violation::Protocol("reserved bits set; no extension was agreed"),
            ),
            (client(0x83, b"hi"), Violation::Protocol("unknown opcode")),
            // A ping in fragments.
            (client(0x09, b"hi"), Violation::Protocol("a control frame must not be fragmented")),
            (
                client(0x89, &[0; 126]),
                Violation::Protocol("a control frame's payload is at most 125 bytes"),
            ),
            (client(0x81, &[b'x'; 2000]), Violation::TooBig),
        ];
        for (mut frame, violation) in cases {
            assert_eq!(parse(&mut frame, 0, 1024), Err(violation));
        }
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_header_alone() {
        // Only the header of a frame claiming 1 GiB: refused without the
        // payload, so nothing waits to buffer it.
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
        assert_eq!(parse(&mut header, 0, 65_536), Err(Violation::TooBig));
        // A fragment that takes the message so far over the limit.
        let mut fragment = client(0x00, &[b'x'; 100]);
        assert_eq!(parse(&mut fragment, 1000, 1050), Err(Violation::TooBig));
        let mut fragment = client(0x00, &[b'x'; 50]);
        assert!(parse(&mut fragment, 1000, 1050).unwrap().is_some());
    }

    #[test]
    fn headers_are_the_shortest_encoding() {
        let mut out = [0; MAX_HEAD];
        assert_eq!((head(&mut out, TEXT, 125), &out[..2]), (2, &[0x81, 125][..]));
        assert_eq!((head(&mut out, TEXT, 126), &out[..4]), (4, &[0x81, 126, 0, 126][..]));
        assert_eq!(head(&mut out, TEXT, 65_535), 4);
        assert_eq!((head(&mut out, TEXT, 65_536), &out[..3]), (10, &[0x81, 127, 0][..]));
        assert_eq!(&out[2..10], &65_536u64.to_be_bytes());
    }

    #[test]
    fn close_frames_fit_and_close_codes_are_checked() {
        let frame = close(1013, &"é".repeat(100));
        // 123 bytes of reason would cut an "é" in two: 122 it is.
        assert_eq!(frame[..2], [0x88, 124]);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1013);
        assert!(std::str::from_utf8(&frame[4..]).is_ok(), "cut inside a character");
        assert_eq!(close_code(b""), Ok(None));
        assert_eq!(close_code(&[0x03, 0xE8, b'o', b'k']), Ok(Some(1000)));
        assert!(close_code(&[0x03]).is_err());
        // 1005 and 1006 are never sent; 999 and 5000 are not codes.
        for code in [999u16, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(close_code(&code.to_be_bytes()).is_err(), "{code}");
        }
        // Service restart, try again later, bad gateway: a proxy or a
        // server-side client may send them.
        for code in [1012u16, 1013, 1014] {
            assert_eq!(close_code(&code.to_be_bytes()), Ok(Some(code)));
        }
        assert!(close_code(&[0x03, 0xE8, 0xFF]).is_err(), "a reason that is not UTF-8");
    }

    #[test]
    fn utf8_is_checked_in_pieces_split_anywhere() {
        let text = "añ€😀 ok".as_bytes();
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                let mut utf8 = Utf8::default();
                utf8.feed(&text[..cut]).unwrap();
                utf8.feed(&text[cut..cut2]).unwrap();
                utf8.feed(&text[cut2..]).unwrap();
                utf8.finish().unwrap();
            }
        }
        // A bad byte is refused when it arrives.
        let mut utf8 = Utf8::default();
        utf8.feed(&[0xF0, 0x9F]).unwrap();
        assert_eq!(utf8.feed(&[0x41]), Err(Violation::NotUtf8));
        let mut utf8 = Utf8::default();
        assert_eq!(utf8.feed(b"ok \xFF"), Err(Violation::NotUtf8));
        // A character cut off by the end of the message.
        let mut utf8 = Utf8::default();
        utf8.feed(&[b'a', 0xE2, 0x82]).unwrap();
        assert_eq!(utf8.finish(), Err(Violation::NotUtf8));
    }

    #[test]
    fn a_header_is_known_before_its_payload_arrives() {
        let frame = client(0x81, &[b'x'; 300]);
        let head = read_head(&frame[..8], 0, 1024).unwrap().unwrap();
        assert_eq!((head.fin, head.opcode, head.start, head.len), (true, TEXT, 8, 300));
        assert_eq!(read_head(&frame[..7], 0, 1024), Ok(None));
        let mut seen = Vec::new();
        unmasked_pieces(&frame[8..], 0, head.mask, |piece| {
            seen.extend_from_slice(piece);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![b'x'; 300]);
    }
}
