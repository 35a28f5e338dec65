//! Admission at the edge: who may open a socket or a connection, checked
//! at `accept` for every socket (HTTP or terminal) and again for a
//! long-poll connection, before anything is allocated for them.
//!
//! - A cap on all sockets and long-poll connections (a semaphore permit
//!   each), never more than the process's open-file limit allows.
//! - A cap per client address; loopback is exempt unless configured
//!   otherwise (behind a reverse proxy, name it as trusted so the real
//!   client address from `X-Forwarded-For` counts for what it forwards).
//!   When descriptors run short the cap shrinks, so the addresses holding
//!   the most sockets are refused first and a newcomer (a health check)
//!   still gets in.
//! - WebSocket `Origin` checks: same origin by default.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Edge settings and the connection counts they are checked against.
pub struct Edge {
    /// A permit per connection the server may still take.
    total: Arc<Semaphore>,
    /// The caps in force (a reload changes them).
    caps: Mutex<Caps>,
    /// Permits to forget as connections close, after a reload lowered the
    /// cap below the connections then open (read without the lock on
    /// every close; written under it).
    owed: AtomicUsize,
    /// Open connections per client address. A short lock: one map update,
    /// never held across `.await`.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    limit_loopback: bool,
    trusted_proxies: Vec<IpAddr>,
    /// Allowed `Origin`s besides the server's own (scheme://host[:port]).
    allowed_origins: Vec<String>,
    /// How long a connection may stay without `hello`.
    pub hello_timeout: Duration,
    /// TLS handshakes per client address (IPv6: per /64), when TLS is on.
    handshakes: Option<governor::DefaultKeyedRateLimiter<IpAddr>>,
    /// Sockets the process can hold (its open-file limit less a reserve),
    /// if known.
    descriptors: Option<usize>,
    /// Refused connections, logged.
    refusals: RefusalLog,
}

/// Logs refused connections, one line each, but at most one line a second:
/// a flood of refusals (which is what a limit meets) must not become a
/// flood of log lines. A line after a quiet second says how many were not
/// logged.
#[derive(Default)]
struct RefusalLog {
    /// The second (since the process started) of the last line, and the
    /// refusals since that were not logged.
    state: Mutex<(u64, u64)>,
}

impl RefusalLog {
    fn log(&self, refusal: Refusal, ip: IpAddr) {
        let reason = match refusal {
            Refusal::Full => "server_full",
            Refusal::TooManyFromAddress => "address_full",
        };
        self.log_reason(reason, ip);
    }

    fn log_reason(&self, reason: &'static str, ip: IpAddr) {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let second = START.get_or_init(std::time::Instant::now).elapsed().as_secs() + 1;
        let mut state = self.state.lock();
        let (last, unlogged) = *state;
        if second == last {
            state.1 += 1;
            return;
        }
        *state = (second, 0);
        drop(state);
        tracing::warn!(reason, client = %ip, not_logged = unlogged, "connection refused");
    }
}

/// The connection caps in force.
#[derive(Debug, Clone, Copy)]
struct Caps {
    /// The most connections: `--max-connections`, at most `descriptors`.
    total: usize,
    /// The configured `--max-connections`, as given.
    configured: usize,
    per_ip: usize,
}

/// Edge settings, from the configuration.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub limit_loopback: bool,
    pub trusted_proxies: Vec<IpAddr>,
    pub allowed_origins: Vec<String>,
    pub hello_timeout: Duration,
    /// TLS handshakes per client address (IPv6: per /64); `None`: no limit.
    pub handshake_rate: Option<confab_core::Rate>,
    /// Sockets the process can hold: its open-file limit less what the
    /// database, Redis and the listeners need. `None`: not known.
    pub descriptors: Option<usize>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            max_connections: 200_000,
            max_connections_per_ip: 256,
            limit_loopback: false,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            hello_timeout: Duration::from_secs(10),
            handshake_rate: Some(confab_core::Rate::new(10, Duration::from_secs(1), 30)),
            descriptors: None,
        }
    }
}

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds as many connections as it may.
    Full,
    /// This address holds as many connections as it may.
    TooManyFromAddress,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Full => "the server is at its connection limit; try again later",
            Refusal::TooManyFromAddress => "too many connections from your address",
        }
    }
}

/// A socket's or a connection's place at the server; dropping it frees
/// the place.
pub struct Ticket {
    edge: Arc<Edge>,
    ip: Option<IpAddr>,
    /// `None` for a forwarded client's share of a proxy's socket, which
    /// the socket's own ticket counts.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A permit owed since a reload lowered the cap is not given back.
        if self.edge.owed.load(Ordering::Relaxed) > 0
            && let Some(permit) = self._permit.take()
        {
            let _caps = self.edge.caps.lock();
            let owed = self.edge.owed.load(Ordering::Relaxed);
            if owed > 0 {
                self.edge.owed.store(owed - 1, Ordering::Relaxed);
                permit.forget();
            }
        }
        if let Some(ip) = self.ip {
            let mut per_ip = self.edge.per_ip.lock();
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

impl Edge {
    pub fn new(config: EdgeConfig) -> Arc<Edge> {
        let max_total = config
            .descriptors
            .map_or(config.max_connections, |descriptors| config.max_connections.min(descriptors))
            .min(Semaphore::MAX_PERMITS);
        Arc::new(Edge {
            total: Arc::new(Semaphore::new(max_total)),
            caps: Mutex::new(Caps {
                total: max_total,
                configured: config.max_connections,
                per_ip: config.max_connections_per_ip,
            }),
            owed: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            limit_loopback: config.limit_loopback,
            trusted_proxies: config.trusted_proxies,
            allowed_origins: config
                .allowed_origins
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            hello_timeout: config.hello_timeout,
            handshakes: config
                .handshake_rate
                .map(|rate| governor::RateLimiter::keyed(rate.quota())),
            descriptors: config.descriptors,
            refusals: RefusalLog::default(),
        })
    }

    /// Takes a place for a connection from `ip`: a terminal socket, or a
    /// long-poll connection.
    ///
    /// # Errors
    ///
    /// The server or the address is at its limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let ip = canonical(ip);
        let counted = self.limit_loopback || !ip.is_loopback();
        self.take(ip, counted, true)
    }

    /// Takes a place for an accepted HTTP socket from `peer`. A trusted
    /// proxy's sockets count in the total only: what it forwards counts
    /// by the client's address (see [`Edge::admit_forwarded`]).
    ///
    /// # Errors
    ///
    /// The server or the address is at its limit.
    pub fn admit_socket(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refusal> {
        let peer = canonical(peer);
        let counted =
            (self.limit_loopback || !peer.is_loopback()) && !self.trusted_proxies.contains(&peer);
        self.take(peer, counted, true)
    }

    /// Counts a WebSocket that a trusted proxy forwards for the client at
    /// `ip` against that address (the proxy's socket holds the permit).
    ///
    /// # Errors
    ///
    /// The address is at its limit.
    pub fn admit_forwarded(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let ip = canonical(ip);
        let counted = self.limit_loopback || !ip.is_loopback();
        self.take(ip, counted, false)
    }

    fn take(self: &Arc<Self>, ip: IpAddr, counted: bool, permit: bool) -> Result<Ticket, Refusal> {
        let taken = self.take_unlogged(ip, counted, permit);
        if let Err(refusal) = &taken {
            self.refusals.log(*refusal, ip);
        }
        taken
    }

    fn take_unlogged(
        self: &Arc<Self>,
        ip: IpAddr,
        counted: bool,
        permit: bool,
    ) -> Result<Ticket, Refusal> {
        let ip = counted_as(ip);
        let permit = match permit {
            true => Some(self.total.clone().try_acquire_owned().map_err(|_| Refusal::Full)?),
            false => None,
        };
        if counted {
            let cap = self.address_cap();
            let mut per_ip = self.per_ip.lock();
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= cap {
                if *count == 0 {
                    per_ip.remove(&ip);
                }
                return Err(Refusal::TooManyFromAddress);
            }
            *count += 1;
        }
        Ok(Ticket { edge: self.clone(), ip: counted.then_some(ip), _permit: permit })
    }

    /// The most sockets one address may hold right now: the configured
    /// cap while descriptors are plentiful; once fewer than a quarter are
    /// free, shrinking with what is free down to one, so that the
    /// heaviest addresses are refused first and the last descriptors go
    /// to addresses that hold none (a health check, a new visitor).
    fn address_cap(&self) -> usize {
        let max_per_ip = self.caps.lock().per_ip;
        let Some(descriptors) = self.descriptors.filter(|d| *d > 0) else {
            return max_per_ip;
        };
        let free = self.total.available_permits();
        let quarter = (descriptors / 4).max(1);
        if free >= quarter {
            return max_per_ip;
        }
        let cap = max_per_ip as u128 * free as u128 / quarter as u128;
        usize::try_from(cap).unwrap_or(usize::MAX).clamp(1, max_per_ip.max(1))
    }

    /// Whether a TLS handshake may start for a socket from `peer`: each
    /// costs the server a signature, so an address that opens sockets
    /// faster than its budget gets them closed unanswered. Loopback is
    /// exempt unless per-address limits apply to it.
    pub fn allow_handshake(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        let Some(limiter) = &self.handshakes else { return true };
        if (peer.is_loopback() && !self.limit_loopback) || self.trusted_proxies.contains(&peer) {
            return true;
        }
        let allowed = limiter.check_key(&counted_as(peer)).is_ok();
        if !allowed {
            self.refusals.log_reason("handshake_rate", peer);
        }
        allowed
    }

    /// Forgets the handshake budgets of addresses that are full again, so
    /// that the map holds only recent ones.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.handshakes {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        let caps = self.caps.lock();
        caps.total + self.owed.load(Ordering::Relaxed) - self.total.available_permits()
    }

    /// Puts new connection caps in force (a reload), and says what
    /// changed, a line each. Open connections stay: a cap lowered below
    /// them refuses new ones until enough have closed.
    pub fn reload_caps(&self, max_connections: usize, max_per_ip: usize) -> Vec<String> {
        let mut caps = self.caps.lock();
        let mut changes = Vec::new();
        if caps.configured != max_connections {
            changes.push(format!("max-connections: {} → {max_connections}", caps.configured));
        }
        if caps.per_ip != max_per_ip {
            changes.push(format!("max-connections-per-ip: {} → {max_per_ip}", caps.per_ip));
        }
        let total = self
            .descriptors
            .map_or(max_connections, |d| max_connections.min(d))
            .min(Semaphore::MAX_PERMITS);
        if total > caps.total {
            // Permits still owed are simply kept, then new ones added.
            let mut raise = total - caps.total;
            let owed = self.owed.load(Ordering::Relaxed);
            let kept = raise.min(owed);
            self.owed.store(owed - kept, Ordering::Relaxed);
            raise -= kept;
            self.total.add_permits(raise);
        } else if total < caps.total {
            let cut = caps.total - total;
            let forgotten = self.total.forget_permits(cut);
            self.owed.fetch_add(cut - forgotten, Ordering::Relaxed);
        }
        *caps = Caps { total, configured: max_connections, per_ip: max_per_ip };
        changes
    }

    /// The client's address: the peer, or, when the peer is a trusted
    /// proxy, the last address it put in `X-Forwarded-For`.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer.ip());
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back()
            .unwrap_or(peer)
    }

    /// Whether a WebSocket upgrade's `Origin` is acceptable: none at all
    /// (not a browser), the server's own (same scheme-less host and port as
    /// the `Host` header), or one of the configured origins.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else { return true };
        let Ok(origin) = origin.to_str() else { return false };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.allowed_origins.iter().any(|o| *o == origin || o == "*") {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin.split_once("://").map(|(_, rest)| rest);
        matches!((origin_host, host), (Some(o), Some(h)) if o == h.to_ascii_lowercase())
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`, as a dual-stack
/// listener reports IPv4 peers) as the IPv4 address it is.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What an address counts as: itself for IPv4, its /64 for IPv6, the
/// block one subscriber usually holds (as the per-address rate limits
/// count it), so that walking through one's own block gives no new
/// sockets.
fn counted_as(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        ip => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(per_ip: usize, total: usize) -> Arc<Edge> {
        Edge::new(EdgeConfig {
            max_connections: total,
            max_connections_per_ip: per_ip,
            trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
            allowed_origins: vec!["https://chat.example.org/".into()],
            ..EdgeConfig::default()
        })
    }

    #[test]
    fn a_reload_lowers_and_raises_the_caps_without_closing_anyone() {
        let edge = edge(4, 4);
        let ips: Vec<IpAddr> = (1..=4).map(|n| format!("192.0.2.{n}").parse().unwrap()).collect();
        let mut open: Vec<Ticket> = ips.iter().map(|ip| edge.admit(*ip).unwrap()).collect();
        assert_eq!(
            edge.reload_caps(2, 1),
            ["max-connections: 4 → 2", "max-connections-per-ip: 4 → 1"]
        );
        assert!(edge.reload_caps(2, 1).is_empty(), "the same again: unchanged");
        // Four stay open over a cap of two: new ones wait until two close.
        assert_eq!(edge.open(), 4);
        assert_eq!(edge.admit(ips[0]).err(), Some(Refusal::Full));
        open.pop();
        assert_eq!(edge.admit(ips[0]).err(), Some(Refusal::Full), "3 open, cap 2");
        open.pop();
        assert_eq!(edge.open(), 2);
        assert_eq!(edge.admit(ips[0]).err(), Some(Refusal::Full), "2 open, cap 2");
        open.pop();
        let again = edge.admit(ips[3]).unwrap();
        assert_eq!(edge.admit(ips[3]).err(), Some(Refusal::Full));
        drop(again);
        // The new per-address cap: one.
        open.pop();
        let one = edge.admit(ips[0]).unwrap();
        assert_eq!(edge.admit(ips[0]).err(), Some(Refusal::TooManyFromAddress));
        // Raised: room at once, with a lowering still owed or not.
        assert_eq!(
            edge.reload_caps(5, 2),
            ["max-connections: 2 → 5", "max-connections-per-ip: 1 → 2"]
        );
        let more: Vec<Ticket> = ips.iter().map(|ip| edge.admit(*ip).unwrap()).collect();
        assert_eq!(edge.open(), 5);
        assert_eq!(edge.admit(ips[1]).err(), Some(Refusal::Full));
        drop((one, more));
        assert_eq!(edge.open(), 0);
        // A lowering while some are open, then a raise before they close:
        // what was owed is not forgotten twice.
        let held: Vec<Ticket> = ips.iter().map(|ip| edge.admit(*ip).unwrap()).collect();
        edge.reload_caps(1, 2);
        edge.reload_caps(3, 2);
        drop(held);
        let back: Vec<Ticket> = ips[..3].iter().map(|ip| edge.admit(*ip).unwrap()).collect();
        assert_eq!(edge.admit(ips[3]).err(), Some(Refusal::Full), "exactly 3");
        drop(back);
        assert_eq!(edge.open(), 0);
    }

    #[test]
    fn per_address_and_total_caps() {
        let edge = edge(2, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = edge.admit(a).unwrap();
        let _second = edge.admit(a).unwrap();
        assert_eq!(edge.admit(a).err(), Some(Refusal::TooManyFromAddress));
        let _third = edge.admit(b).unwrap();
        assert_eq!(edge.admit(b).err(), Some(Refusal::Full));
        assert_eq!(edge.open(), 3);
        drop(first);
        assert!(edge.admit(a).is_ok(), "a closed connection frees its place");
    }

    #[test]
    fn short_of_descriptors_the_heaviest_address_is_refused_first() {
        let edge = Edge::new(EdgeConfig {
            max_connections: 1_000,
            max_connections_per_ip: 100,
            descriptors: Some(200),
            ..EdgeConfig::default()
        });
        let heavy: IpAddr = "192.0.2.1".parse().unwrap();
        let mut held: Vec<Ticket> = (0..100).map(|_| edge.admit_socket(heavy).unwrap()).collect();
        assert_eq!(edge.admit_socket(heavy).err(), Some(Refusal::TooManyFromAddress));
        // Others fill up to 190 of 200: ten free, under a quarter.
        for n in 0..90u8 {
            held.push(edge.admit_socket(IpAddr::from([198, 51, 100, n])).unwrap());
        }
        let light: IpAddr = "203.0.113.9".parse().unwrap();
        let cap = edge.address_cap();
        assert!(cap < 100, "the cap shrinks as descriptors run short: {cap}");
        held.push(edge.admit_socket(light).expect("an address holding nothing still gets in"));
        let second = IpAddr::from([198, 51, 100, 1]);
        // Nine free of 200: a cap of 100 × 9 / 50 = 18; the heavy address
        // holds 100 and the one holding 1 may add one more.
        assert_eq!(edge.admit_socket(heavy).err(), Some(Refusal::TooManyFromAddress));
        held.push(edge.admit_socket(second).unwrap());
        let mut n = 10;
        while edge.total.available_permits() > 0 {
            held.push(edge.admit_socket(IpAddr::from([203, 0, 113, n])).unwrap());
            n += 1;
        }
        assert_eq!(edge.admit_socket(light).err(), Some(Refusal::Full));
        drop(held);
        assert_eq!(edge.address_cap(), 100, "all free again");
    }

    #[test]
    fn a_trusted_proxy_counts_by_the_addresses_it_forwards() {
        let edge = edge(1, 10);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let sockets: Vec<_> = (0..5).map(|_| edge.admit_socket(proxy).unwrap()).collect();
        let client: IpAddr = "203.0.113.5".parse().unwrap();
        let forwarded = edge.admit_forwarded(client).unwrap();
        assert_eq!(edge.admit_forwarded(client).err(), Some(Refusal::TooManyFromAddress));
        assert_eq!(edge.open(), 5, "a forwarded client takes no second permit");
        drop((sockets, forwarded));
        assert_eq!(edge.open(), 0);
    }

    #[test]
    fn an_ipv6_block_counts_as_one_address_and_mapped_ipv4_as_ipv4() {
        let edge = edge(2, 100);
        let _a = edge.admit_socket("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _b = edge.admit_socket("2001:db8:1:2:ffff::9".parse().unwrap()).unwrap();
        let same_block = "2001:db8:1:2:aaaa::1".parse().unwrap();
        assert_eq!(edge.admit_socket(same_block).err(), Some(Refusal::TooManyFromAddress));
        assert!(edge.admit_socket("2001:db8:1:3::1".parse().unwrap()).is_ok(), "another /64");
        let _c = edge.admit_socket("192.0.2.4".parse().unwrap()).unwrap();
        let _d = edge.admit_socket("::ffff:192.0.2.4".parse().unwrap()).unwrap();
        let mapped = "::ffff:192.0.2.4".parse().unwrap();
        assert_eq!(edge.admit_socket(mapped).err(), Some(Refusal::TooManyFromAddress));
        // A mapped loopback address is loopback, and exempt.
        for _ in 0..5 {
            std::mem::forget(edge.admit_socket("::ffff:127.0.0.1".parse().unwrap()).unwrap());
        }
    }

    #[test]
    fn loopback_is_exempt_from_the_address_cap() {
        let edge = edge(1, 10);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let _tickets: Vec<_> = (0..5).map(|_| edge.admit(local).unwrap()).collect();
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let edge = edge(1, 10);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.9, 203.0.113.5".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        assert_eq!(edge.client_ip(proxy, &headers), "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(edge.client_ip(stranger, &headers), stranger.ip());
    }

    #[test]
    fn origins() {
        let edge = edge(1, 10);
        let mut headers = HeaderMap::new();
        assert!(edge.origin_allowed(&headers), "no Origin: not a browser");
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(edge.origin_allowed(&headers));
        headers.insert(header::ORIGIN, "https://chat.example.org".parse().unwrap());
        assert!(edge.origin_allowed(&headers));
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!edge.origin_allowed(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:9999".parse().unwrap());
        assert!(!edge.origin_allowed(&headers));
    }
}
