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
