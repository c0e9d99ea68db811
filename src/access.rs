//! `only_from` / `deny_from`: whether a peer address may be served at all
//! (superd(8), LIMITS AND ACCESS). Pure: the event loop passes the peer address in and logs the
//! [`Refusal`]; [`crate::limits`] owns the counting refusals.

use std::fmt;
use std::net::IpAddr;

use std::net::SocketAddr;

/// Why a connection was closed right after `accept`; `as_str` is the log's
/// `reason=` value (superd(8), LOGS) and the status counters' name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The peer is in `deny_from`.
    DenyFrom,
    /// `only_from` is set and the peer is not in it.
    OnlyFrom,
    /// The peer's source already has `max_per_source` connections.
    MaxPerSource,
    /// `proxy_protocol`: the peer is not one of the proxies in
    /// `proxy_from`.
    ProxyFrom,
    /// `proxy_protocol`: no valid PROXY header within `proxy_timeout`.
    ProxyHeader,
}

impl Refusal {
    /// In discriminant order: the status counters are an array indexed by
    /// `reason as usize` (crate::metrics::Counters), so a new reason is a
    /// new variant here, its word in `as_str`, and its place in this list.
    pub const ALL: [Refusal; 5] = [
        Refusal::DenyFrom,
        Refusal::OnlyFrom,
        Refusal::MaxPerSource,
        Refusal::ProxyFrom,
        Refusal::ProxyHeader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::DenyFrom => "deny_from",
            Refusal::OnlyFrom => "only_from",
            Refusal::MaxPerSource => "max_per_source",
            Refusal::ProxyFrom => "proxy_from",
            Refusal::ProxyHeader => "proxy_header",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IP network for `only_from` / `deny_from`; the address is stored with
/// its host bits cleared. IPv4-mapped IPv6 networks are stored as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Shows an IP as the logs and the environment do: IPv4-mapped IPv6
/// addresses as plain IPv4 (superd(8), THE CHILD and LIMITS AND ACCESS).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `canonical_ip` for a socket address.
pub fn canonical_addr(sa: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(sa.ip()), sa.port())
}

/// Whether `net` contains `ip`. An IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`)
/// is the IPv4 address it carries (superd(8), LIMITS AND ACCESS); otherwise the families never
/// mix, and prefix 0 matches its whole family.
pub fn cidr_contains(net: &Cidr, ip: IpAddr) -> bool {
    contains_canonical(net, canonical_ip(ip))
}

/// Checks a peer against a service's access lists. `deny_from` wins over
/// `only_from`; no `only_from` (`None`) lets everyone in, an empty one
/// nobody. Linear and allocation-free: lists are short and this runs once
/// per accept.
pub fn check(ip: IpAddr, only_from: Option<&[Cidr]>, deny_from: &[Cidr]) -> Result<(), Refusal> {
    let ip = canonical_ip(ip);
    if deny_from.iter().any(|net| contains_canonical(net, ip)) {
        return Err(Refusal::DenyFrom);
    }
    if let Some(only) = only_from
        && !only.iter().any(|net| contains_canonical(net, ip))
    {
        return Err(Refusal::OnlyFrom);
    }
    Ok(())
}

/// `cidr_contains` for an already canonical `ip`.
fn contains_canonical(net: &Cidr, ip: IpAddr) -> bool {
    // The config layer stores mapped networks as IPv4 with host bits cleared;
    // normalizing again here costs a few instructions and keeps a hand-built
    // `Cidr` from silently matching nothing (or everything).
    match (net.addr, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = mask_u32(net.prefix);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V4(a)) => match n.to_ipv4_mapped() {
            Some(n) if net.prefix >= 96 => {
                let mask = mask_u32(net.prefix - 96);
                u32::from(n) & mask == u32::from(a) & mask
            }
            // A real IPv6 network never covers an IPv4 peer.
            _ => false,
        },
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = mask_u128(net.prefix);
            u128::from(n) & mask == u128::from(a) & mask
        }
        // After canonicalization `ip` is a real IPv6 address here.
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// The network mask of an IPv4 prefix; prefixes past 32 count as 32.
fn mask_u32(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// The network mask of an IPv6 prefix; prefixes past 128 count as 128.
fn mask_u128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Cidr {
        let (addr, prefix) = s.split_once('/').unwrap();
        Cidr {
            addr: addr.parse().unwrap(),
            prefix: prefix.parse().unwrap(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reasons_are_the_log_words() {
        assert_eq!(Refusal::DenyFrom.as_str(), "deny_from");
        assert_eq!(Refusal::OnlyFrom.as_str(), "only_from");
        assert_eq!(Refusal::MaxPerSource.to_string(), "max_per_source");
        assert_eq!(Refusal::ProxyFrom.as_str(), "proxy_from");
        assert_eq!(Refusal::ProxyHeader.as_str(), "proxy_header");
    }

    #[test]
    fn v4_networks() {
        let n = net("10.1.0.0/16");
        assert!(cidr_contains(&n, ip("10.1.0.0")));
        assert!(cidr_contains(&n, ip("10.1.255.255")));
        assert!(!cidr_contains(&n, ip("10.2.0.0")));
        assert!(!cidr_contains(&n, ip("9.255.255.255")));
        let n = net("192.168.1.128/25");
        assert!(cidr_contains(&n, ip("192.168.1.200")));
        assert!(!cidr_contains(&n, ip("192.168.1.127")));
    }

    #[test]
    fn v4_host_and_zero_prefix() {
        let host = net("10.1.2.3/32");
        assert!(cidr_contains(&host, ip("10.1.2.3")));
        assert!(!cidr_contains(&host, ip("10.1.2.4")));
        let all = net("0.0.0.0/0");
        assert!(cidr_contains(&all, ip("255.255.255.255")));
        assert!(cidr_contains(&all, ip("0.0.0.0")));
        assert!(cidr_contains(&all, ip("::ffff:1.2.3.4")));
        assert!(!cidr_contains(&all, ip("::1")));
        assert!(!cidr_contains(&all, ip("2001:db8::1")));
    }

    #[test]
    fn v6_networks() {
        let n = net("2001:db8:1:2::/64");
        assert!(cidr_contains(&n, ip("2001:db8:1:2::1")));
        assert!(cidr_contains(&n, ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert!(!cidr_contains(&n, ip("2001:db8:1:3::1")));
        let host = net("2001:db8::7/128");
        assert!(cidr_contains(&host, ip("2001:db8::7")));
        assert!(!cidr_contains(&host, ip("2001:db8::8")));
        let all = net("::/0");
        assert!(cidr_contains(&all, ip("::1")));
        assert!(cidr_contains(&all, ip("fe80::1")));
        assert!(!cidr_contains(&all, ip("1.2.3.4")));
        // A mapped peer is an IPv4 peer, so an IPv6 rule does not see it.
        assert!(!cidr_contains(&all, ip("::ffff:1.2.3.4")));
    }

    #[test]
    fn mapped_peer_matches_v4_rules() {
        let n = net("10.0.0.0/8");
        assert!(cidr_contains(&n, ip("::ffff:10.9.8.7")));
        assert!(!cidr_contains(&n, ip("::ffff:11.0.0.1")));
        assert!(cidr_contains(&net("10.9.8.7/32"), ip("::ffff:10.9.8.7")));
        // IPv4-compatible (deprecated) is not mapped: a real IPv6 address.
        assert!(!cidr_contains(&n, ip("::10.9.8.7")));
    }

    #[test]
    fn mapped_network_is_a_v4_network() {
        // The config layer normalizes these; a hand-built one still works.
        let n = net("::ffff:10.0.0.0/104");
        assert!(cidr_contains(&n, ip("10.1.2.3")));
        assert!(cidr_contains(&n, ip("::ffff:10.1.2.3")));
        assert!(!cidr_contains(&n, ip("11.1.2.3")));
    }

    #[test]
    fn host_bits_in_network_are_ignored() {
        assert!(cidr_contains(&net("10.1.2.3/8"), ip("10.200.0.1")));
        assert!(cidr_contains(
            &net("2001:db8::ffff/32"),
            ip("2001:db8:ffff::1")
        ));
    }

    #[test]
    fn no_lists_let_everyone_in() {
        assert_eq!(check(ip("1.2.3.4"), None, &[]), Ok(()));
        assert_eq!(check(ip("::1"), None, &[]), Ok(()));
    }

    #[test]
    fn an_empty_only_from_lets_nobody_in() {
        assert_eq!(check(ip("1.2.3.4"), Some(&[]), &[]), Err(Refusal::OnlyFrom));
        assert_eq!(check(ip("::1"), Some(&[]), &[]), Err(Refusal::OnlyFrom));
    }

    #[test]
    fn only_from_restricts() {
        let only = [net("10.0.0.0/8"), net("2001:db8::/32")];
        assert_eq!(check(ip("10.1.1.1"), Some(&only), &[]), Ok(()));
        assert_eq!(check(ip("::ffff:10.1.1.1"), Some(&only), &[]), Ok(()));
        assert_eq!(check(ip("2001:db8::1"), Some(&only), &[]), Ok(()));
        assert_eq!(
            check(ip("11.1.1.1"), Some(&only), &[]),
            Err(Refusal::OnlyFrom)
        );
        assert_eq!(
            check(ip("2001:db9::1"), Some(&only), &[]),
            Err(Refusal::OnlyFrom)
        );
    }

    #[test]
    fn deny_wins_over_only() {
        let only = [net("10.0.0.0/8")];
        let deny = [net("10.6.6.0/24")];
        assert_eq!(check(ip("10.1.1.1"), Some(&only), &deny), Ok(()));
        assert_eq!(
            check(ip("10.6.6.6"), Some(&only), &deny),
            Err(Refusal::DenyFrom)
        );
        assert_eq!(
            check(ip("::ffff:10.6.6.6"), Some(&only), &deny),
            Err(Refusal::DenyFrom)
        );
        // Denied and also outside only_from: deny_from is the reason given.
        assert_eq!(
            check(ip("1.1.1.1"), Some(&only), &[net("0.0.0.0/0")]),
            Err(Refusal::DenyFrom)
        );
        assert_eq!(
            check(ip("::1"), None, &[net("::/0")]),
            Err(Refusal::DenyFrom)
        );
        assert_eq!(check(ip("127.0.0.1"), None, &[net("::/0")]), Ok(()));
    }

    #[test]
    fn a_few_hundred_rules() {
        let deny: Vec<Cidr> = (0..=255u8)
            .map(|i| Cidr {
                addr: IpAddr::from([192, 0, i, 0]),
                prefix: 24,
            })
            .collect();
        assert_eq!(
            check(ip("192.0.255.9"), None, &deny),
            Err(Refusal::DenyFrom)
        );
        assert_eq!(check(ip("192.1.0.9"), None, &deny), Ok(()));
    }
}
