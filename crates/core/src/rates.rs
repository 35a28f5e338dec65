//! Per-user rate limits, shared by every transport.
//!
//! Token buckets (GCRA, from `governor`) keyed by user id: each op kind
//! has its own bucket with a steady rate and a burst. A refused op answers
//! `rate_limited` with `retry_after_ms` and changes nothing.
//!
//! Failed joins (a room code that does not exist) have a stricter bucket
//! of their own, keyed by client address where there is one, so that room
//! codes cannot be enumerated: once it is empty, every join of that client
//! is refused until the bucket refills.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_proto::{ErrorBody, ErrorCode};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

/// A token bucket: one token every `every`, at most `burst` saved up.
/// `None` in a [`Rates`] field turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub every: Duration,
    pub burst: u32,
}

impl Rate {
    /// `count` per `period`, with a burst of `burst`.
    pub fn new(count: u32, period: Duration, burst: u32) -> Rate {
        Rate { every: period / count.max(1), burst: burst.max(1) }
    }

    /// The bucket as `governor` takes it.
    pub fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(self.every.max(Duration::from_nanos(1)))
            .expect("a positive period")
            .allow_burst(burst)
    }
}

/// The limits, each `None` when off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub post: Option<Rate>,
    pub join: Option<Rate>,
    pub create: Option<Rate>,
    /// Typing indicators per user: a few a second is all a person makes;
    /// beyond it they are dropped without being fanned out.
    pub typing: Option<Rate>,
    /// Rooms created per client address, so that new sessions give a
    /// flooder no fresh room budget.
    pub address_create: Option<Rate>,
    /// Joins of rooms that do not exist, per client address (or user).
    pub failed_join: Option<Rate>,
    /// New sessions (a `hello` without a known token), per client address:
    /// without it, a flooder would get a fresh set of per-user buckets by
    /// reconnecting.
    pub new_session: Option<Rate>,
    /// Messages reported per user.
    pub report: Option<Rate>,
    /// Moderation ops (roles) per user.
    pub moderate: Option<Rate>,
    /// Reactions (put on or taken off) per user.
    pub react: Option<Rate>,
    /// Reads per user (`rooms`, `members`, `history`, `get`, `mine`,
    /// `bans`, `integrations`, `webhooks`): each may read the store, so a
    /// client that asks for pages in a loop is held to a steady pace.
    pub read: Option<Rate>,
    /// Whether loopback clients count by address for failed joins (by
    /// default they are exempt and count per user instead).
    pub limit_loopback: bool,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            post: Some(Rate::new(10, Duration::from_secs(1), 30)),
            join: Some(Rate::new(5, Duration::from_secs(1), 20)),
            create: Some(Rate::new(30, Duration::from_secs(60), 20)),
            typing: Some(Rate::new(4, Duration::from_secs(1), 8)),
            address_create: Some(Rate::new(60, Duration::from_secs(3600), 30)),
            failed_join: Some(Rate::new(10, Duration::from_secs(3600), 20)),
            new_session: Some(Rate::new(10, Duration::from_secs(60), 30)),
            report: Some(Rate::new(20, Duration::from_secs(3600), 10)),
            moderate: Some(Rate::new(1, Duration::from_secs(1), 20)),
            react: Some(Rate::new(2, Duration::from_secs(1), 20)),
            read: Some(Rate::new(20, Duration::from_secs(1), 100)),
            limit_loopback: false,
        }
    }
}

/// Which bucket an op draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Post,
    Join,
    Create,
    Typing,
    Report,
    Moderate,
    React,
    Read,
}

/// A limit's buckets, shared so that a reload keeps those of the limits
/// that did not change; `None` when the limit is off.
type Keyed = Option<Arc<DefaultKeyedRateLimiter<String>>>;

pub(crate) struct Limiters {
    rates: Rates,
    post: Keyed,
    join: Keyed,
    create: Keyed,
    typing: Keyed,
    address_create: Keyed,
    failed_join: Keyed,
    new_session: Keyed,
    report: Keyed,
    moderate: Keyed,
    react: Keyed,
    read: Keyed,
    /// Clients whose failed-join bucket ran dry, until when. A short lock:
    /// a lookup or an insert, never across `.await`.
    blocked: Mutex<HashMap<String, Instant>>,
}

/// What differs between `old` and `new`, one line per limit, named as
/// its flag: `post-rate: 10/s,burst=20 → off`.
pub(crate) fn changes(old: &Rates, new: &Rates) -> Vec<String> {
    let shown = |rate: Option<Rate>| match rate {
        None => "off".to_owned(),
        Some(r) => {
            let per_second = 1.0 / r.every.as_secs_f64();
            if per_second >= 1.0 {
                format!("{}/s,burst={}", (per_second * 100.0).round() / 100.0, r.burst)
            } else {
                format!("{}/m,burst={}", (per_second * 6000.0).round() / 100.0, r.burst)
            }
        }
    };
    let pairs = [
        ("post-rate", old.post, new.post),
        ("join-rate", old.join, new.join),
        ("create-rate", old.create, new.create),
        ("typing-rate", old.typing, new.typing),
        ("create-rate-per-ip", old.address_create, new.address_create),
        ("failed-join-rate", old.failed_join, new.failed_join),
        ("session-rate", old.new_session, new.new_session),
        ("report-rate", old.report, new.report),
        ("moderation-rate", old.moderate, new.moderate),
        ("react-rate", old.react, new.react),
        ("read-rate", old.read, new.read),
    ];
    let mut changes: Vec<String> = pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, a, b)| format!("{name}: {} → {}", shown(a), shown(b)))
        .collect();
    if old.limit_loopback != new.limit_loopback {
        changes.push(format!("limit-loopback: {} → {}", old.limit_loopback, new.limit_loopback));
    }
    changes
}

impl Limiters {
    /// The limits these enforce.
    pub fn rates(&self) -> &Rates {
        &self.rates
    }

    pub fn new(rates: Rates) -> Limiters {
        Limiters {
            rates,
            post: keyed(rates.post),
            join: keyed(rates.join),
            create: keyed(rates.create),
            typing: keyed(rates.typing),
            address_create: keyed(rates.address_create),
            failed_join: keyed(rates.failed_join),
            new_session: keyed(rates.new_session),
            report: keyed(rates.report),
            moderate: keyed(rates.moderate),
            react: keyed(rates.react),
            read: keyed(rates.read),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// The limiters for `rates` after a reload: a limit that did not change
    /// keeps its buckets (and, for failed joins, the clients it blocks), so
    /// that a reload gives nobody a fresh budget; a changed one starts full.
    pub fn reloaded(&self, rates: Rates) -> Limiters {
        let was = &self.rates;
        let keep = |old: &Keyed, before: Option<Rate>, now: Option<Rate>| -> Keyed {
            if before == now { old.clone() } else { keyed(now) }
        };
        let blocked = match was.failed_join == rates.failed_join {
            true => self.blocked.lock().clone(),
            false => HashMap::new(),
        };
        Limiters {
            rates,
            post: keep(&self.post, was.post, rates.post),
            join: keep(&self.join, was.join, rates.join),
            create: keep(&self.create, was.create, rates.create),
            typing: keep(&self.typing, was.typing, rates.typing),
            address_create: keep(&self.address_create, was.address_create, rates.address_create),
            failed_join: keep(&self.failed_join, was.failed_join, rates.failed_join),
            new_session: keep(&self.new_session, was.new_session, rates.new_session),
            report: keep(&self.report, was.report, rates.report),
            moderate: keep(&self.moderate, was.moderate, rates.moderate),
            react: keep(&self.react, was.react, rates.react),
            read: keep(&self.read, was.read, rates.read),
            blocked: Mutex::new(blocked),
        }
    }

    /// Takes a token for `user_id`'s `limit`.
    ///
    /// # Errors
    ///
    /// `rate_limited` with `retry_after_ms` when the bucket is empty.
    pub fn check(&self, limit: Limit, user_id: &str) -> Result<(), ErrorBody> {
        let limiter = match limit {
            Limit::Post => &self.post,
            Limit::Join => &self.join,
            Limit::Create => &self.create,
            Limit::Typing => &self.typing,
            Limit::Report => &self.report,
            Limit::Moderate => &self.moderate,
            Limit::React => &self.react,
            Limit::Read => &self.read,
        };
        let Some(limiter) = limiter else { return Ok(()) };
        limiter.check_key(&user_id.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            refused(&format!("too many {} ops", name(limit)), wait)
        })
    }

    /// The key failed joins count under: the address, unless it is a
    /// loopback address and loopback is exempt; else the user.
    pub fn client_key(&self, peer: Option<IpAddr>, user_id: &str) -> String {
        match peer {
            Some(ip) if self.rates.limit_loopback || !ip.is_loopback() => address_key(ip),
            _ => format!("user:{user_id}"),
        }
    }

    /// Takes a token from the new-session bucket of the client at `peer`.
    /// Loopback clients are exempt unless `limit_loopback`; a client with
    /// no address (an in-process test) is never limited.
    ///
    /// # Errors
    ///
    /// `rate_limited` with `retry_after_ms` when the bucket is empty.
    pub fn check_new_session(&self, peer: Option<IpAddr>) -> Result<(), ErrorBody> {
        self.check_address(&self.new_session, peer, "too many new sessions from your address")
    }

    /// Takes a token from the room-creation bucket of the client at
    /// `peer` (exempt as for new sessions).
    ///
    /// # Errors
    ///
    /// `rate_limited` with `retry_after_ms` when the bucket is empty.
    pub fn check_address_create(&self, peer: Option<IpAddr>) -> Result<(), ErrorBody> {
        self.check_address(&self.address_create, peer, "too many rooms created from your address")
    }

    /// Takes a token from the read bucket of the client at `peer`, for a
    /// read made without a session (exempt as for new sessions).
    ///
    /// # Errors
    ///
    /// `rate_limited` with `retry_after_ms` when the bucket is empty.
    pub fn check_address_read(&self, peer: Option<IpAddr>) -> Result<(), ErrorBody> {
        self.check_address(&self.read, peer, "too many reads from your address")
    }

    /// Takes a token from `limiter`'s bucket for the address `peer`.
    fn check_address(
        &self,
        limiter: &Keyed,
        peer: Option<IpAddr>,
        what: &str,
    ) -> Result<(), ErrorBody> {
        let Some(limiter) = limiter else { return Ok(()) };
        let Some(ip) = peer.filter(|ip| self.rates.limit_loopback || !ip.is_loopback()) else {
            return Ok(());
        };
        limiter.check_key(&address_key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            refused(what, wait)
        })
    }

    /// Refuses every join of a client that has failed too many.
    ///
    /// # Errors
    ///
    /// `rate_limited` while the client is blocked.
    pub fn check_join_allowed(&self, client: &str) -> Result<(), ErrorBody> {
        let mut blocked = self.blocked.lock();
        match blocked.get(client) {
            Some(until) if *until > Instant::now() => Err(refused(
                "too many joins of rooms that do not exist",
                until.saturating_duration_since(Instant::now()),
            )),
            Some(_) => {
                blocked.remove(client);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a join of a room that does not exist.
    pub fn failed_join(&self, client: &str) {
        let Some(limiter) = &self.failed_join else { return };
        if let Err(not_until) = limiter.check_key(&client.to_owned()) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.blocked.lock().insert(client.to_owned(), Instant::now() + wait);
        }
    }

    /// Forgets buckets that are full again, so memory follows the active
    /// users, not every user ever seen.
    pub fn forget_idle(&self) {
        for limiter in [
            &self.post,
            &self.join,
            &self.create,
            &self.typing,
            &self.address_create,
            &self.failed_join,
            &self.new_session,
            &self.report,
            &self.moderate,
            &self.react,
            &self.read,
        ]
        .into_iter()
        .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = Instant::now();
        self.blocked.lock().retain(|_, until| *until > now);
    }
}

fn keyed(rate: Option<Rate>) -> Keyed {
    rate.map(|r| Arc::new(RateLimiter::keyed(r.quota())))
}

/// The key a client address counts under. An IPv6 client counts by its
/// /64, the block one subscriber usually holds, so that walking through
/// the addresses of one's own block gives no new budget.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn name(limit: Limit) -> &'static str {
    match limit {
        Limit::Post => "post",
        Limit::Join => "join",
        Limit::Create => "create",
        Limit::Typing => "typing",
        Limit::Report => "report",
        Limit::Moderate => "moderation",
        Limit::React => "react",
        Limit::Read => "read",
    }
}

fn refused(what: &str, wait: Duration) -> ErrorBody {
    metrics::counter!(crate::metric::RATE_LIMITED).increment(1);
    let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    ErrorBody {
        code: ErrorCode::RateLimited,
        message: format!("{what}; try again in {ms} ms"),
        retry_after_ms: Some(ms),
        challenge: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sessions_are_limited_per_address_and_ipv6_per_64() {
        let limiters = Limiters::new(Rates {
            new_session: Some(Rate::new(1, Duration::from_secs(60), 2)),
            ..Rates::default()
        });
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_block: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiters.check_new_session(Some(a)).unwrap();
        limiters.check_new_session(Some(same_block)).unwrap();
        let refused = limiters.check_new_session(Some(a)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.retry_after_ms.unwrap() > 0);
        limiters.check_new_session(Some(other)).unwrap();
        // Loopback is exempt by default, and so is a client with no address.
        for _ in 0..10 {
            limiters.check_new_session(Some(IpAddr::from([127, 0, 0, 1]))).unwrap();
            limiters.check_new_session(None).unwrap();
        }
    }

    #[test]
    fn a_burst_then_refusal_with_a_retry_time() {
        let limiters = Limiters::new(Rates {
            post: Some(Rate::new(1, Duration::from_secs(10), 3)),
            ..Rates::default()
        });
        for _ in 0..3 {
            limiters.check(Limit::Post, "u_a").unwrap();
        }
        let refused = limiters.check(Limit::Post, "u_a").unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        let retry = refused.retry_after_ms.unwrap();
        assert!(retry > 9_000 && retry <= 10_000, "{retry}");
        limiters.check(Limit::Post, "u_b").expect("users have their own buckets");
        limiters.check(Limit::Join, "u_a").expect("ops have their own buckets");
    }

    #[test]
    fn off_means_off() {
        let limiters = Limiters::new(Rates { post: None, ..Rates::default() });
        for _ in 0..10_000 {
            limiters.check(Limit::Post, "u_a").unwrap();
        }
    }

    #[test]
    fn failed_joins_block_the_client() {
        let limiters = Limiters::new(Rates {
            failed_join: Some(Rate::new(1, Duration::from_secs(60), 2)),
            ..Rates::default()
        });
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        let client = limiters.client_key(Some(remote), "u_a");
        assert_eq!(client, "ip:192.0.2.7");
        assert_eq!(limiters.client_key(Some("127.0.0.1".parse().unwrap()), "u_a"), "user:u_a");
        for _ in 0..2 {
            limiters.check_join_allowed(&client).unwrap();
            limiters.failed_join(&client);
        }
        limiters.check_join_allowed(&client).unwrap();
        limiters.failed_join(&client);
        let refused = limiters.check_join_allowed(&client).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.retry_after_ms.unwrap() > 50_000);
    }

    #[test]
    fn a_reload_keeps_the_buckets_of_the_limits_it_did_not_change() {
        let tight = Some(Rate::new(1, Duration::from_secs(60), 1));
        let before = Rates { post: tight, read: tight, failed_join: tight, ..Rates::default() };
        let limiters = Limiters::new(before);
        limiters.check(Limit::Post, "u_a").unwrap();
        limiters.check(Limit::Read, "u_a").unwrap();
        limiters.failed_join("ip:192.0.2.7");
        limiters.failed_join("ip:192.0.2.7");
        assert!(limiters.check_join_allowed("ip:192.0.2.7").is_err());
        // Only the read limit changes: it starts full, the rest are spent.
        let read = Some(Rate::new(2, Duration::from_secs(60), 1));
        let reloaded = limiters.reloaded(Rates { read, ..before });
        reloaded.check(Limit::Read, "u_a").expect("a changed limit starts full");
        assert!(reloaded.check(Limit::Post, "u_a").is_err(), "no fresh posts for a reload");
        assert!(reloaded.check_join_allowed("ip:192.0.2.7").is_err(), "still blocked");
        // Changing the failed-join limit lets its blocked clients go.
        let again = reloaded.reloaded(Rates { read, failed_join: None, ..before });
        again.check_join_allowed("ip:192.0.2.7").unwrap();
        assert!(again.check(Limit::Post, "u_a").is_err());
    }
}
