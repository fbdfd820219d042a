//! Which addresses the origin may connect to. A URL comes from a local client (the local
//! API, `dfget`) or from the scheduler (a seed task), so without a policy anyone who can
//! reach either could make the daemon read loopback, link-local (cloud metadata) or
//! internal services for them. Loopback, link-local, private, shared (CGNAT), unspecified,
//! multicast and broadcast addresses are refused unless `[origin] allowed_networks` names
//! them; the registries of `[[mirror.registries]]` are the operator's own choice and are
//! reached wherever they are.

use std::net::IpAddr;

/// An address family's network, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `"10.0.0.0/8"`, `"fd00::/8"` or a single address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Network, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| format!("{text:?} is not an address or addr/prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be a number from 0 to {max}"))?,
        };
        Ok(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Why an address is refused, for the message; None when it is a public address.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            if a.is_loopback() {
                Some("loopback")
            } else if a.is_link_local() {
                Some("link-local")
            } else if a.is_private() {
                Some("private")
            } else if o[0] == 100 && (64..128).contains(&o[1]) {
                Some("shared (CGNAT)")
            } else if a.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if a.is_multicast() || a.is_broadcast() {
                Some("multicast or broadcast")
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            let first = a.segments()[0];
            if a.is_loopback() {
                Some("loopback")
            } else if a.is_unspecified() {
                Some("unspecified")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if a.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

/// The policy of one daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<Network>,
    /// Host names (or address literals) reached wherever they point: the configured
    /// registries' endpoints.
    trusted_hosts: Vec<String>,
}

impl AddressPolicy {
    /// `allowed_networks` as `[origin]` writes them; errors name the entry.
    pub fn new(allowed_networks: &[String], trusted_hosts: Vec<String>) -> Result<AddressPolicy, String> {
        let allowed = allowed_networks.iter().map(|n| Network::parse(n)).collect::<Result<_, _>>()?;
        let trusted_hosts = trusted_hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        Ok(AddressPolicy { allowed, trusted_hosts })
    }

    pub fn trusts_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.trusted_hosts.contains(&host)
    }

    /// Ok for a public address or one of `allowed_networks`; Err(why) otherwise.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let Some(kind) = internal_kind(ip) else { return Ok(()) };
        if self.allowed.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        Err(format!(
            "{ip} is a {kind} address; the origin reaches such addresses only when [origin] allowed_networks names them (e.g. \"{}\")",
            if ip.is_ipv4() { format!("{ip}/32") } else { format!("{ip}/128") }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let p = AddressPolicy::new(&["10.1.0.0/16".into(), "fd00::1".into()], vec!["Registry.Local".into()]).unwrap();
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "10.2.3.4",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd12::1",
            "::ffff:127.0.0.1",
        ] {
            let e = p.check(ip.parse().unwrap()).unwrap_err();
            assert!(e.contains("allowed_networks"), "{ip}: {e}");
        }
        for ip in ["10.1.200.3", "fd00::1", "8.8.8.8", "198.18.0.2", "2001:db8::1"] {
            assert_eq!(p.check(ip.parse().unwrap()), Ok(()), "{ip}");
        }
        assert!(p.trusts_host("registry.local") && p.trusts_host("REGISTRY.LOCAL") && !p.trusts_host("other"));
        assert!(AddressPolicy::new(&["10.0.0.0/33".into()], vec![]).unwrap_err().contains("prefix"));
        assert!(AddressPolicy::new(&["ten".into()], vec![]).unwrap_err().contains("not an address"));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains("127.0.0.1".parse().unwrap()));
    }
}
