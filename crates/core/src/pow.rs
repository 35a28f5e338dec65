//! The defensive mode's puzzles: while the operator has it on, a `hello`
//! that would make a new session must carry a small proof of work.
//!
//! A puzzle is stateless: its token is `<expiry ms>.<random>.<mac>`, the
//! MAC (HMAC-SHA256 under a key kept in the store, so that every node
//! knows it) binding the expiry and the random part. The solution is a
//! `nonce` such that SHA-256 of `"<token>:<nonce>"` starts with `bits`
//! zero bits; each token is taken once on a node (a solved puzzle cannot
//! be replayed there within its life).

use std::collections::HashMap;
use std::time::Duration;

use confab_proto::{Challenge, ErrorBody, ErrorCode, Pow};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::ids::hmac_sha256;

/// How long a puzzle may be solved in.
const LIFE: Duration = Duration::from_secs(120);
/// The most puzzles remembered as taken at once; beyond it new sessions
/// are refused until old ones run out (the overflow policy).
const TAKEN_MAX: usize = 100_000;
/// The difficulty the defensive mode starts with: about 65,000 hashes on
/// average, a second or so in a phone's browser.
pub const DEFAULT_BITS: u32 = 16;
/// The most bits the operator may ask for.
pub const MAX_BITS: u32 = 24;

pub(crate) struct Puzzles {
    key: Vec<u8>,
    /// Tokens solved, until when they would have run out.
    taken: Mutex<HashMap<String, u64>>,
}

impl Puzzles {
    pub fn new(key: Vec<u8>) -> Puzzles {
        Puzzles { key, taken: Mutex::new(HashMap::new()) }
    }

    fn mac(&self, signed: &str) -> String {
        hex(&hmac_sha256(&self.key, signed.as_bytes())[..12])
    }

    /// A new puzzle of `bits`.
    pub fn issue(&self, bits: u32) -> Challenge {
        let expiry = crate::unix_ms() + u64::try_from(LIFE.as_millis()).unwrap_or(0);
        let signed = format!("{expiry}.{}", hex(&rand::random::<[u8; 12]>()));
        let token = format!("{signed}.{}", self.mac(&signed));
        Challenge { token, bits }
    }

    /// Checks `pow` against a difficulty of `bits`: made here, not run
    /// out, solved, and not taken before.
    pub fn check(&self, pow: &Pow, bits: u32) -> Result<(), &'static str> {
        let Some((signed, mac)) = pow.token.rsplit_once('.') else {
            return Err("not a puzzle of this server");
        };
        // Compared in full (no early exit): no timing to forge a MAC by.
        let expected = self.mac(signed);
        let same = expected.len() == mac.len()
            && expected.bytes().zip(mac.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return Err("not a puzzle of this server");
        }
        let expiry: u64 = signed.split('.').next().and_then(|e| e.parse().ok()).unwrap_or(0);
        let now = crate::unix_ms();
        if expiry <= now {
            return Err("the puzzle ran out; solve a new one");
        }
        if pow.nonce.len() > 64 || leading_zero_bits(&pow.token, &pow.nonce) < bits {
            return Err("the puzzle is not solved");
        }
        let mut taken = self.taken.lock();
        if taken.len() >= TAKEN_MAX {
            taken.retain(|_, until| *until > now);
            if taken.len() >= TAKEN_MAX {
                return Err("too many new visitors right now; try again in a minute");
            }
        }
        if taken.insert(pow.token.clone(), expiry).is_some() {
            return Err("that puzzle was used already; solve a new one");
        }
        Ok(())
    }
}

/// The zero bits SHA-256 of `"<token>:<nonce>"` starts with.
pub fn leading_zero_bits(token: &str, nonce: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update(token.as_bytes())
        .chain_update(b":")
        .chain_update(nonce.as_bytes())
        .finalize();
    let mut bits = 0;
    for byte in digest {
        if byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// Solves a puzzle by counting up (for clients of this crate and tests).
pub fn solve(challenge: &Challenge) -> Pow {
    let nonce = (0u64..)
        .map(|n| n.to_string())
        .find(|nonce| leading_zero_bits(&challenge.token, nonce) >= challenge.bits)
        .expect("a nonce is found long before u64 runs out");
    Pow { token: challenge.token.clone(), nonce }
}

/// The refusal of a new session without a solved puzzle: a new one to
/// solve, and why.
pub(crate) fn refusal(why: &str, challenge: Challenge) -> ErrorBody {
    let mut error = ErrorBody::new(
        ErrorCode::Forbidden,
        format!(
            "this server asks new visitors to solve a small puzzle first ({why}): send hello \
             again with pow {{token, nonce}}"
        ),
    );
    error.challenge = Some(challenge);
    error
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_puzzle_is_taken_once_when_solved_and_made_here() {
        let puzzles = Puzzles::new(b"key".to_vec());
        let challenge = puzzles.issue(8);
        let pow = solve(&challenge);
        assert!(leading_zero_bits(&pow.token, &pow.nonce) >= 8);
        assert_eq!(puzzles.check(&pow, 8), Ok(()));
        assert!(puzzles.check(&pow, 8).unwrap_err().contains("used already"));
        // Not solved enough for a harder setting.
        let hard = solve(&puzzles.issue(1));
        if leading_zero_bits(&hard.token, &hard.nonce) < 20 {
            assert!(puzzles.check(&hard, 20).unwrap_err().contains("not solved"));
        }
        // Another server's, or a forged expiry.
        let elsewhere = solve(&Puzzles::new(b"other".to_vec()).issue(4));
        assert!(puzzles.check(&elsewhere, 4).unwrap_err().contains("not a puzzle"));
        let fresh = puzzles.issue(4);
        let (signed, mac) = fresh.token.rsplit_once('.').unwrap();
        let later = signed.replacen(signed.split('.').next().unwrap(), "99999999999999", 1);
        let forged = solve(&Challenge { token: format!("{later}.{mac}"), bits: 4 });
        assert!(puzzles.check(&forged, 4).unwrap_err().contains("not a puzzle"));
        // Run out.
        let old = "1000.abcdef";
        let stale = solve(&Challenge { token: format!("{old}.{}", puzzles.mac(old)), bits: 2 });
        assert!(puzzles.check(&stale, 2).unwrap_err().contains("ran out"));
    }
}
