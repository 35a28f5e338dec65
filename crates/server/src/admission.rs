//! Admission at the edge: who may open a connection, checked before a
//! WebSocket upgrade, a long-poll connection or a TCP session allocates
//! anything.
//!
//! - A cap on all connections (a semaphore permit per connection).
//! - A cap per client address; loopback is exempt unless configured
//!   otherwise (behind a reverse proxy, name it as trusted so the real
//!   client address from `X-Forwarded-For` counts).
//! - WebSocket `Origin` checks: same origin by default.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Edge settings and the connection counts they are checked against.
pub struct Edge {
    total: Arc<Semaphore>,
    max_total: usize,
    /// Open connections per client address. A short lock: one map update,
    /// never held across `.await`.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    limit_loopback: bool,
    trusted_proxies: Vec<IpAddr>,
    /// Allowed `Origin`s besides the server's own (scheme://host[:port]).
    allowed_origins: Vec<String>,
    /// How long a connection may stay without `hello`.
    pub hello_timeout: Duration,
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

/// A connection's place at the server; dropping it frees the place.
pub struct Ticket {
    edge: Arc<Edge>,
    ip: Option<IpAddr>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Ticket {
    fn drop(&mut self) {
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
        Arc::new(Edge {
            total: Arc::new(Semaphore::new(config.max_connections)),
            max_total: config.max_connections,
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: config.max_connections_per_ip,
            limit_loopback: config.limit_loopback,
            trusted_proxies: config.trusted_proxies,
            allowed_origins: config
                .allowed_origins
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            hello_timeout: config.hello_timeout,
        })
    }

    /// Takes a place for a connection from `ip`.
    ///
    /// # Errors
    ///
    /// The server or the address is at its limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let permit = self.total.clone().try_acquire_owned().map_err(|_| Refusal::Full)?;
        let counted = self.limit_loopback || !ip.is_loopback();
        if counted {
            let mut per_ip = self.per_ip.lock();
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= self.max_per_ip {
                return Err(Refusal::TooManyFromAddress);
            }
            *count += 1;
        }
        Ok(Ticket { edge: self.clone(), ip: counted.then_some(ip), _permit: permit })
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.max_total - self.total.available_permits()
    }

    /// The client's address: the peer, or, when the peer is a trusted
    /// proxy, the last address it put in `X-Forwarded-For`.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip();
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
