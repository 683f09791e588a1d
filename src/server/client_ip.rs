//! The client's IP address, as rate limits key it.
//!
//! Behind a reverse proxy (the shipped nginx) every TCP peer is the proxy,
//! so per-IP limits keyed on the peer put all users in one bucket. The
//! proxy says who connected to it in `X-Forwarded-For`, but anyone can send
//! that header: it is believed only when the TCP peer is one of the
//! configured trusted proxies (CHARCHA_TRUSTED_PROXIES, empty by default).
//! Then the list is walked right to left (each proxy appends the address it
//! saw), skipping trusted proxies; the first address that is not one is the
//! client. Entries further left were written by the client and are ignored.
//!
//! [`ClientIp`] is the one extractor every per-IP limit uses, on the REST
//! routes and (through `leptos_axum::extract_with_state`) the server
//! functions alike.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, request::Parts},
};

use super::state::AppState;
use crate::api::AppError;

/// A trusted-proxy entry that is not an IP address or CIDR block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyListError {
    #[error("`{0}` is not an IP address or CIDR block (e.g. 10.0.0.0/8, 172.28.0.2, fd00::/8)")]
    Malformed(String),
}

/// One IP network: an address and how many leading bits must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Result<Self, ProxyListError> {
        let malformed = || ProxyListError::Malformed(text.to_string());
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| malformed())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(malformed)?,
        };
        Ok(Self { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

/// The first `bits` bits of `a` and `b` are equal.
fn same_prefix(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xFFu8 << (8 - rest);
    (a[whole] & mask) == (b[whole] & mask)
}

/// The reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Comma-separated IPs and CIDR blocks; empty = trust nobody.
    pub fn parse(text: &str) -> Result<Self, ProxyListError> {
        text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Cidr::parse).collect::<Result<_, _>>().map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client of a request from `peer` carrying `headers`: `peer`
    /// itself unless it is a trusted proxy; otherwise the right-most
    /// `X-Forwarded-For` entry that is not a trusted proxy. An entry that
    /// does not parse stops the walk (nothing left of it can be trusted):
    /// the last trusted hop seen is the answer then, as it is when every
    /// entry is a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        // Several X-Forwarded-For headers are one list, in order.
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .flat_map(|v| v.split(','))
            .collect();
        for entry in entries.iter().rev() {
            let Some(ip) = parse_forwarded_ip(entry) else { return client };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

/// The client address of a request (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            // The server always attaches the peer address; without it there
            // is nothing to key a limit on, and guessing would share a bucket.
            tracing::error!("request without ConnectInfo: the server must serve with connect info");
            return Err(AppError::internal());
        };
        Ok(Self(state.config.trusted_proxies.client_ip(peer.ip(), &parts.headers)))
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cidrs_parse_and_match() {
        let t = TrustedProxies::parse(" 10.0.0.0/8, 172.28.0.2 ,fd00::/8,").unwrap();
        assert!(t.contains(ip("10.255.0.1")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("172.28.0.2")) && !t.contains(ip("172.28.0.3")));
        assert!(t.contains(ip("fd12::1")) && !t.contains(ip("fe80::1")));
        assert!(t.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped peers are IPv4");
        let odd = TrustedProxies::parse("192.168.0.0/23").unwrap();
        assert!(odd.contains(ip("192.168.1.200")) && !odd.contains(ip("192.168.2.1")));
        assert!(TrustedProxies::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        for bad in ["10.0.0.0/33", "nginx", "10.0.0.1/", "::/129", "1.2.3.4/-1"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_trusted() {
        let nobody = TrustedProxies::default();
        assert_eq!(nobody.client_ip(ip("203.0.113.9"), &xff(&["1.1.1.1"])), ip("203.0.113.9"));
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(t.client_ip(ip("203.0.113.9"), &xff(&["1.1.1.1"])), ip("203.0.113.9"), "a spoofing client");
    }

    #[test]
    fn forwarded_for_is_walked_right_to_left_past_trusted_proxies() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer = ip("10.0.0.2");
        // nginx appended the client; the client's own entry is ignored.
        assert_eq!(t.client_ip(peer, &xff(&["6.6.6.6, 198.51.100.7"])), ip("198.51.100.7"));
        // Two trusted hops.
        assert_eq!(t.client_ip(peer, &xff(&["198.51.100.7, 10.0.0.9"])), ip("198.51.100.7"));
        // Several headers form one list; ports and IPv6 brackets are fine.
        assert_eq!(t.client_ip(peer, &xff(&["6.6.6.6", "198.51.100.7:4711"])), ip("198.51.100.7"));
        assert_eq!(t.client_ip(peer, &xff(&["[2001:db8::7]:443"])), ip("2001:db8::7"));
        // No header: the proxy itself (e.g. its health check).
        assert_eq!(t.client_ip(peer, &HeaderMap::new()), peer);
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(t.client_ip(peer, &xff(&["198.51.100.7, nonsense, 10.0.0.5"])), ip("10.0.0.5"));
        assert_eq!(t.client_ip(peer, &xff(&["", "unknown"])), peer);
        // All trusted: the left-most one.
        assert_eq!(t.client_ip(peer, &xff(&["10.9.9.9, 10.0.0.5"])), ip("10.9.9.9"));
    }
}
