//! The names the agent gives things, derived from ids alone so that a DEL, a restart or a
//! reconcile finds them again with nothing else to go on: endpoint ids, interface names, the
//! `external_ids` keys on its OVS ports, and the marks on pooled ports. Pure functions; every
//! other module imports them from here (none from each other).

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not). A change here
/// renames every port and orphans every flow on upgrade.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The cluster-wide endpoint id of a container's interface.
pub fn endpoint_id(container_id: &str, ifname: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let (c, i) = (clean(container_id), clean(ifname));
    // Replaced characters can make two names one (`éth0` and `üth0` both `_th0`): then the
    // hash of the names as given keeps them apart. Clean names keep the id they always had.
    let id = if c == container_id && i == ifname {
        format!("{c}-{i}")
    } else {
        let raw = format!("{container_id}\0{ifname}");
        format!("{c}-{i}-{:016x}", fnv1a(raw.as_bytes()))
    };
    if id.len() <= 128 {
        id
    } else {
        format!("{}-{:016x}", &id[..100], fnv1a(id.as_bytes()))
    }
}

/// `prefix` and 12 hex digits of `key`'s hash: fits IFNAMSIZ.
fn hashed_ifname(prefix: &str, key: &str) -> String {
    format!("{prefix}{:012x}", fnv1a(key.as_bytes()) & 0xffff_ffff_ffff)
}

/// Whether `name` is `prefix` and 12 lowercase hex digits.
fn is_hashed_ifname(prefix: &str, name: &str) -> bool {
    name.len() == 14
        && name.starts_with(prefix)
        && name[2..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The host-side veth name of an endpoint: `vc` and 12 hex digits of its id's hash, so it fits
/// IFNAMSIZ and is found again from the endpoint id alone (DEL needs nothing else).
pub fn host_ifname(endpoint_id: &str) -> String {
    hashed_ifname("vc", endpoint_id)
}

/// Whether `name` has the shape of a [`host_ifname`].
pub fn is_host_ifname(name: &str) -> bool {
    is_hashed_ifname("vc", name)
}

/// The trunk name of a network ("tenant/network").
pub fn trunk_ifname(network: &str) -> String {
    hashed_ifname("vt", network)
}

/// Whether `name` is a trunk's name.
pub fn is_trunk_ifname(name: &str) -> bool {
    is_hashed_ifname("vt", name)
}

/// A new pooled port's name: `vp` and 12 random hex digits.
pub fn new_pool_ifname() -> String {
    hashed_ifname("vp", &uuid::Uuid::new_v4().to_string())
}

/// Whether `name` is a pooled port's name.
pub fn is_pool_ifname(name: &str) -> bool {
    is_hashed_ifname("vp", name)
}

/// The name of the tunnel port to a VTEP: `vx` and the address in hex (fits IFNAMSIZ).
pub fn tunnel_ifname(vtep: &str) -> String {
    match vtep.parse::<std::net::Ipv4Addr>() {
        Ok(a) => format!("vx{:08x}", u32::from(a)),
        Err(_) => hashed_ifname("vx", vtep),
    }
}

/// The OVS-side name of a network's router port ("tenant/network"), in the host namespace.
pub fn router_port_ifname(network: &str) -> String {
    hashed_ifname("vr", network)
}

/// The router-side name of a network's router port, inside the tenant router's namespace.
pub fn router_gw_ifname(network: &str) -> String {
    hashed_ifname("vg", network)
}

/// Whether `name` is a router port's OVS-side name.
pub fn is_router_port_ifname(name: &str) -> bool {
    is_hashed_ifname("vr", name)
}

/// The host-side name of a tenant router's transit link to the host (its router side is
/// [`ROUTER_UPLINK`]).
pub fn transit_ifname(tenant: &str) -> String {
    hashed_ifname("vu", tenant)
}

/// Whether `name` is a transit link's host-side name.
pub fn is_transit_ifname(name: &str) -> bool {
    is_hashed_ifname("vu", name)
}

/// The router side of a tenant router's transit link.
pub const ROUTER_UPLINK: &str = "up0";

/// The prefix of the names (under /run/netns) of the tenant routers of the agent on `bridge`:
/// simulated hosts share /run/netns, and their bridges' names tell them apart (as the pool
/// namespace's default name does).
pub fn router_netns_prefix(bridge: &str) -> String {
    format!("contiv-rt-{bridge}-")
}

/// The name (under /run/netns) of the router namespace of `tenant`: readable when the tenant's
/// name is a plain one, else its hash.
pub fn router_netns(bridge: &str, tenant: &str) -> String {
    let plain = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !tenant.starts_with('.');
    if plain {
        format!("{}{tenant}", router_netns_prefix(bridge))
    } else {
        format!(
            "{}#{:016x}",
            router_netns_prefix(bridge),
            fnv1a(tenant.as_bytes())
        )
    }
}

/// The alias (`IFLA_IFALIAS`) that records which endpoint a shared-lower interface serves.
pub fn alias(ep_id: &str, cni_network: &str) -> String {
    format!("{ep_id} {}", alias_network(cni_network))
}

/// A CNI network's name as an alias keeps it: a long one as its hash (IFALIASZ is 256 with
/// the NUL, and endpoint ids take up to 128).
pub fn alias_network(cni_network: &str) -> String {
    if cni_network.len() > 120 {
        format!("#{:016x}", fnv1a(cni_network.as_bytes()))
    } else {
        cni_network.to_string()
    }
}

/// (endpoint id, CNI network) from an alias; None for a free port's empty alias.
pub fn parse_alias(a: &str) -> Option<(String, String)> {
    let (ep, net) = a.split_once(' ').unwrap_or((a, ""));
    (!ep.is_empty()).then(|| (ep.to_string(), net.to_string()))
}

/// external_ids keys on the agent's OVS ports.
pub mod ids {
    pub const ENDPOINT: &str = "contiv-endpoint-id";
    pub const CONTAINER: &str = "contiv-container-id";
    pub const IFNAME: &str = "contiv-ifname";
    pub const NETNS: &str = "contiv-netns";
    pub const TENANT: &str = "contiv-tenant";
    pub const NETWORK: &str = "contiv-network";
    pub const GROUP: &str = "contiv-group";
    pub const IP: &str = "contiv-ip";
    pub const IPV6: &str = "contiv-ipv6";
    pub const MAC: &str = "contiv-mac";
    /// The runtime's name of the network config (CNI `name`), which scopes GC.
    pub const CNI_NETWORK: &str = "contiv-cni-network";
    /// On tunnel ports: the peer host and its VTEP address.
    pub const PEER: &str = "contiv-peer";
    pub const VTEP: &str = "contiv-vtep";
    /// On the ports of the agent's port pool (`crate::attach::pool`): which pod a port serves
    /// is not in OVS (writing it would make ovs-vswitchd reconfigure the bridge at every ADD).
    pub const POOL: &str = "contiv-pool";
    /// On network trunks (`crate::attach::trunk`): the network ("tenant/network") it serves.
    pub const TRUNK: &str = "contiv-trunk";
    /// On router ports (`crate::northsouth`): the network ("tenant/network") it is the gateway
    /// of, and what its flows need after a restart: the network id, conntrack zone, gateway.
    pub const ROUTER: &str = "contiv-router";
    pub const ROUTER_NID: &str = "contiv-router-nid";
    pub const ROUTER_ZONE: &str = "contiv-router-zone";
    pub const ROUTER_GATEWAY: &str = "contiv-router-gateway";
    /// On a Docker container's endpoint port: its published ports (`docker run -p`), in
    /// `crate::northsouth::Published::encode`'s form; the host's DNAT rules follow them.
    pub const PUBLISHED: &str = "contiv-published";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_recognised() {
        // Fixed values: a change here renames every port and orphans every flow on upgrade.
        assert_eq!(fnv1a(b"abc"), 0xe71fa2190541574b);
        assert_eq!(host_ifname("abc-eth0"), host_ifname("abc-eth0"));
        assert_ne!(host_ifname("abc-eth0"), host_ifname("abc-eth1"));
        assert_eq!(host_ifname("x").len(), 14);
        assert!(is_host_ifname(&host_ifname("c1-eth0")));
        for other in [
            "vc0123456789AB",
            "vc0123",
            "vx0afa000b",
            "eth0",
            "vc0123456789abc",
        ] {
            assert!(!is_host_ifname(other), "{other}");
        }
        let t = trunk_ifname("default/default-net");
        assert!(is_trunk_ifname(&t) && !is_host_ifname(&t) && !is_pool_ifname(&t));
        assert_ne!(t, trunk_ifname("default/other-net"));
        let p = new_pool_ifname();
        assert!(is_pool_ifname(&p), "{p}");
        assert_ne!(p, new_pool_ifname());
        assert_eq!(tunnel_ifname("10.250.0.11"), "vx0afa000b");
        let r = router_port_ifname("default/net");
        assert!(is_router_port_ifname(&r) && !is_host_ifname(&r) && !is_transit_ifname(&r));
        assert_eq!(r[2..], router_gw_ifname("default/net")[2..]);
        assert!(is_transit_ifname(&transit_ifname("default")));
        assert_eq!(router_netns("brX", "blue"), "contiv-rt-brX-blue");
        assert!(router_netns("brX", "a/b").starts_with("contiv-rt-brX-#"));
        assert!(router_netns("brX", "..").starts_with("contiv-rt-brX-#"));
    }

    #[test]
    fn endpoint_ids_are_clean_and_bounded() {
        assert_eq!(endpoint_id("abc", "eth0"), "abc-eth0");
        assert!(endpoint_id("a/b c", "eth0").starts_with("a_b_c-eth0-"));
        // Issue 17.7: names that clean to the same text stay apart.
        assert_ne!(endpoint_id("c1", "éth0"), endpoint_id("c1", "üth0"));
        assert_ne!(endpoint_id("c1", "_th0"), endpoint_id("c1", "éth0"));
        let long = endpoint_id(&"x".repeat(300), "eth0");
        assert_eq!(long.len(), 117);
        assert_ne!(long, endpoint_id(&"x".repeat(301), "eth0"));
    }

    #[test]
    fn aliases_round_trip_and_fit() {
        assert_eq!(
            parse_alias(&alias("c1-eth0", "mynet")),
            Some(("c1-eth0".into(), "mynet".into()))
        );
        assert_eq!(parse_alias(""), None);
        let long = "n".repeat(300);
        let a = alias(&"e".repeat(128), &long);
        assert!(a.len() < 256, "{}", a.len());
        // A long network name is kept as its hash: GC compares the same way.
        assert_eq!(parse_alias(&a).unwrap().1, alias_network(&long));
    }
}
