//! Random identifiers: session tokens, user ids and room codes.

use rand::Rng;
use rand::distr::Alphanumeric;

/// The alphabet of room codes: no 0/O, 1/I/L, so a code read aloud or
/// copied by hand survives.
pub const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// A secret session token: 32 characters from 62, about 190 random bits.
pub fn session_token() -> String {
    rand::rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect()
}

/// A public user id, `u_` and 12 random characters (about 71 bits).
pub fn user_id() -> String {
    let suffix: String = rand::rng().sample_iter(&Alphanumeric).take(12).map(char::from).collect();
    format!("u_{suffix}")
}

/// A bot's user id, `b_` and 12 random characters: an integration's user,
/// whose session only its own connections may use.
pub fn bot_id() -> String {
    let suffix: String = rand::rng().sample_iter(&Alphanumeric).take(12).map(char::from).collect();
    format!("b_{suffix}")
}

/// Whether `id` has the form of a user id (a person's `u_…` or a bot's
/// `b_…`).
pub fn is_user_id(id: &str) -> bool {
    (id.starts_with("u_") || id.starts_with("b_")) && id.len() <= 64
}

/// A room code of `len` characters from [`CODE_ALPHABET`].
pub fn room_code(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char).collect()
}

/// The SHA-256 of a session token, as bytes: the key of the hub's
/// in-memory session map.
pub fn token_key(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// The SHA-256 digest of a session token, in hex: how tokens are looked up
/// and stored.
pub fn token_digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The keyed hash a ban keeps of a client's address: an IPv4 address
/// whole, an IPv6 address by its /64 (one subscriber's usual share), an
/// IPv4-mapped IPv6 address as the IPv4 one. `None` for a loopback
/// address, which no ban bars.
pub fn address_key(secret: &[u8], address: std::net::IpAddr) -> Option<String> {
    use std::net::IpAddr;
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if address.is_loopback() || address.is_unspecified() {
        return None;
    }
    let text = match address {
        IpAddr::V4(v4) => format!("4:{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    };
    let mac = hmac_sha256(secret, text.as_bytes());
    Some(mac[..16].iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn an_address_key_is_keyed_takes_ipv6_by_64_and_skips_loopback() {
        let key = |secret: &[u8], a: &str| address_key(secret, a.parse().unwrap());
        let a = key(b"k1", "203.0.113.5").unwrap();
        assert_eq!(a.len(), 32);
        assert!(!a.contains("203"), "never the address itself");
        assert_ne!(Some(a.clone()), key(b"k2", "203.0.113.5"), "keyed");
        assert_eq!(Some(a), key(b"k1", "::ffff:203.0.113.5"), "mapped is the IPv4 one");
        assert_eq!(key(b"k1", "2001:db8:1:2::1"), key(b"k1", "2001:db8:1:2:ffff::9"));
        assert_ne!(key(b"k1", "2001:db8:1:2::1"), key(b"k1", "2001:db8:1:3::1"));
        assert_eq!(key(b"k1", "127.0.0.1"), None);
        assert_eq!(key(b"k1", "::1"), None);
    }
}

/// `bytes` in standard base64, with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 back to bytes; `None` if it is not.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        match chunk.len() {
            4 => out.extend_from_slice(&bytes),
            3 => out.extend_from_slice(&bytes[..2]),
            2 => out.push(bytes[0]),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod base64_tests {
    #[test]
    fn base64_matches_rfc_4648_and_reads_back() {
        for (plain, coded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(super::base64(plain.as_bytes()), coded);
            assert_eq!(super::unbase64(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(super::unbase64("Zm9v!"), None);
    }
}
