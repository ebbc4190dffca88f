//! Address, range and unit formats of Contiv's model.

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A network's IPv4 subnet as Contiv writes it: `a.b.c.d/len`, or `a.b.c.d-e.f.g.h/len` to
/// allocate only from a range inside the subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetSpec {
    pub net: Ipv4Net,
    /// The allocatable range, inclusive. Without an explicit range: every host address
    /// (network and broadcast excluded).
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub explicit_range: bool,
}

impl SubnetSpec {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr_part, len) = s
            .rsplit_once('/')
            .ok_or_else(|| "expected a.b.c.d/len or a.b.c.d-e.f.g.h/len".to_string())?;
        let len: u8 = len
            .parse()
            .map_err(|_| format!("prefix length '{len}' is not a number"))?;
        if !(1..=31).contains(&len) {
            return Err(format!("prefix length {len} is outside 1-31"));
        }
        let (start, end) = match addr_part.split_once('-') {
            Some((a, b)) => (parse_v4(a)?, Some(parse_v4(b)?)),
            None => (parse_v4(addr_part)?, None),
        };
        let net = Ipv4Net::new(start, len).expect("len checked").trunc();
        let lo = u32::from(net.network()) + 1;
        let hi = u32::from(net.broadcast()) - 1;
        match end {
            None => Ok(SubnetSpec {
                net,
                first: Ipv4Addr::from(lo),
                last: Ipv4Addr::from(hi.max(lo)),
                explicit_range: false,
            }),
            Some(end) => {
                let (a, b) = (u32::from(start), u32::from(end));
                if !net.contains(&end) {
                    return Err(format!("range end {end} is outside subnet {net}"));
                }
                if a > b {
                    return Err(format!("range start {start} is after range end {end}"));
                }
                if a < lo || b > hi {
                    return Err(format!(
                        "range {start}-{end} includes the network or broadcast address of {net}"
                    ));
                }
                Ok(SubnetSpec {
                    net,
                    first: start,
                    last: end,
                    explicit_range: true,
                })
            }
        }
    }

    /// True when the subnet has no usable host address (/31).
    pub fn is_empty(&self) -> bool {
        u32::from(self.net.broadcast()) - u32::from(self.net.network()) < 2
    }
}

pub fn parse_v4(s: &str) -> Result<Ipv4Addr, String> {
    s.trim()
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("'{s}' is not an IPv4 address"))
}

pub fn parse_v6(s: &str) -> Result<Ipv6Addr, String> {
    s.trim()
        .parse::<Ipv6Addr>()
        .map_err(|_| format!("'{s}' is not an IPv6 address"))
}

pub fn parse_v6_subnet(s: &str) -> Result<Ipv6Net, String> {
    let net: Ipv6Net = s
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv6 subnet (addr/len)"))?;
    if net.prefix_len() < 64 || net.prefix_len() > 126 {
        return Err(format!(
            "prefix length {} is outside 64-126",
            net.prefix_len()
        ));
    }
    Ok(net.trunc())
}

/// An inclusive IPv4 range `a.b.c.d-e.f.g.h` (endpoint group IP pools).
pub fn parse_v4_range(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a range a.b.c.d-e.f.g.h"))?;
    let (a, b) = (parse_v4(a)?, parse_v4(b)?);
    if u32::from(a) > u32::from(b) {
        return Err(format!("range start {a} is after range end {b}"));
    }
    Ok((a, b))
}

/// A tag range `N-M` (global `vlans` / `vxlans`).
pub fn parse_tag_range(s: &str, min: u32, max: u32) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a range N-M"))?;
    let a: u32 = a
        .trim()
        .parse()
        .map_err(|_| format!("'{a}' is not a number"))?;
    let b: u32 = b
        .trim()
        .parse()
        .map_err(|_| format!("'{b}' is not a number"))?;
    if a > b {
        return Err(format!("range start {a} is after range end {b}"));
    }
    if a < min || b > max {
        return Err(format!("range {a}-{b} is outside {min}-{max}"));
    }
    Ok((a, b))
}

/// A rule's address match: `a.b.c.d`, `a.b.c.d-N` (last-octet range), optionally `/len`.
/// Returns the inclusive address range it matches.
pub fn parse_rule_address(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => {
            let l: u8 = l
                .parse()
                .map_err(|_| format!("prefix length '{l}' is not a number"))?;
            if l > 32 {
                return Err(format!("prefix length {l} is over 32"));
            }
            (a, Some(l))
        }
        None => (s, None),
    };
    let (first, last) = match addr.split_once('-') {
        Some((a, n)) => {
            let a = parse_v4(a)?;
            let n: u8 = n
                .parse()
                .map_err(|_| format!("range end '{n}' is not a number 0-255"))?;
            let o = a.octets();
            if n < o[3] {
                return Err(format!(
                    "range end {n} is below the start's last octet {}",
                    o[3]
                ));
            }
            (a, Ipv4Addr::new(o[0], o[1], o[2], n))
        }
        None => {
            let a = parse_v4(addr)?;
            (a, a)
        }
    };
    if let Some(l) = len {
        let net = Ipv4Net::new(first, l).expect("len checked").trunc();
        if first == last {
            return Ok((net.network(), net.broadcast()));
        }
    }
    Ok((first, last))
}

/// A rule's IPv6 address match: an address or a subnet `addr/len` (0-128), as the subnet it
/// matches (an address is a /128).
pub fn parse_rule_address6(s: &str) -> Result<Ipv6Net, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => {
            let l: u8 = l
                .parse()
                .map_err(|_| format!("prefix length '{l}' is not a number"))?;
            if l > 128 {
                return Err(format!("prefix length {l} is over 128"));
            }
            (a, l)
        }
        None => (s, 128),
    };
    let a = parse_v6(addr)?;
    Ok(Ipv6Net::new(a, len).expect("len checked").trunc())
}

/// Bandwidth as Contiv accepts it: a positive integer, an optional space, a unit
/// (`kbps/mbps/gbps` in any case, `k/m/g`, or `kb/mb/gb`). Returns bits per second.
pub fn parse_bandwidth(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return Err(format!(
            "'{s}' must start with a positive number, e.g. '10 kbps', '100mbps', '1gbps'"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{digits}' is too large"))?;
    if n == 0 {
        return Err("bandwidth must be positive".into());
    }
    let unit = t[digits.len()..].trim_start().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "k" | "kb" | "kbps" => 1_000,
        "m" | "mb" | "mbps" => 1_000_000,
        "g" | "gb" | "gbps" => 1_000_000_000,
        _ => {
            return Err(format!(
                "unit '{}' is not one of kbps, mbps, gbps (or k, m, g, kb, mb, gb)",
                &t[digits.len()..].trim()
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// Contiv's MAC for an endpoint: `02:02` followed by the four bytes of its IPv4 address.
pub fn mac_for_ipv4(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:02:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_forms() {
        let s = SubnetSpec::parse("10.1.2.0/24").unwrap();
        assert_eq!(s.first, Ipv4Addr::new(10, 1, 2, 1));
        assert_eq!(s.last, Ipv4Addr::new(10, 1, 2, 254));
        let s = SubnetSpec::parse("10.1.1.10-10.1.1.20/24").unwrap();
        assert_eq!(
            (s.first, s.last),
            (Ipv4Addr::new(10, 1, 1, 10), Ipv4Addr::new(10, 1, 1, 20))
        );
        assert!(s.explicit_range);
        assert_eq!(s.net.to_string(), "10.1.1.0/24");
        // Host bits are truncated: 10.1.2.5/24 is the subnet 10.1.2.0/24.
        assert_eq!(
            SubnetSpec::parse("10.1.2.5/24").unwrap().net.to_string(),
            "10.1.2.0/24"
        );
        for bad in [
            "10.1.2.0",
            "10.1.2.0/33",
            "10.1.2.0/0",
            "10.1.2.0/32",
            "x/24",
            "10.1.1.20-10.1.1.10/24",
            "10.1.1.10-10.1.2.20/24",
            "10.1.1.0-10.1.1.5/24",
        ] {
            assert!(SubnetSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bandwidth_units() {
        assert_eq!(parse_bandwidth("10 kbps").unwrap(), 10_000);
        assert_eq!(parse_bandwidth("100mbps").unwrap(), 100_000_000);
        assert_eq!(parse_bandwidth("18Mb").unwrap(), 18_000_000);
        assert_eq!(parse_bandwidth("1G").unwrap(), 1_000_000_000);
        for bad in ["", "kbps", "0 kbps", "10 tbps", "-1m", "10"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rule_addresses() {
        assert_eq!(
            parse_rule_address("10.1.1.5-9").unwrap(),
            (Ipv4Addr::new(10, 1, 1, 5), Ipv4Addr::new(10, 1, 1, 9))
        );
        assert_eq!(
            parse_rule_address("10.1.1.0/24").unwrap(),
            (Ipv4Addr::new(10, 1, 1, 0), Ipv4Addr::new(10, 1, 1, 255))
        );
        assert!(parse_rule_address("10.1.1.5-3").is_err());
        assert!(parse_rule_address("10.1.1/24").is_err());
        assert_eq!(
            parse_rule_address6("fd00::1:5/112").unwrap().to_string(),
            "fd00::1:0/112"
        );
        assert_eq!(
            parse_rule_address6("fd00::5").unwrap().to_string(),
            "fd00::5/128"
        );
        assert!(parse_rule_address6("fd00::5/129").is_err());
        assert!(parse_rule_address6("10.1.1.5").is_err());
    }

    #[test]
    fn tag_ranges_and_mac() {
        assert_eq!(parse_tag_range("1-4094", 1, 4094).unwrap(), (1, 4094));
        assert!(parse_tag_range("0-4094", 1, 4094).is_err());
        assert!(parse_tag_range("10-5", 1, 4094).is_err());
        assert!(parse_tag_range("10", 1, 4094).is_err());
        assert_eq!(
            mac_for_ipv4(Ipv4Addr::new(10, 1, 2, 3)),
            "02:02:0a:01:02:03"
        );
    }
}
