//! North-south: the way out of a Contiv network (docs/decisions.md "North-south").
//!
//! Per tenant with endpoints here, a tenant router: a network namespace (the VRF this kernel
//! lacks) holding, per network with a gateway, the router side of a veth whose other end is a
//! port of the bridge (the network's distributed gateway: its gateway addresses, the
//! cluster-wide router MAC), and a transit veth to the host's namespace (`up0` inside). The
//! router masquerades what leaves by `up0` to its transit address, the host masquerades that
//! to its own address. The kernel does ARP/ND, ICMP, PMTU, NAT and conntrack per tenant.
//!
//! This file is the pure part: what the host side should be, from the agent's endpoints, and
//! the rules rendered for `iptables-restore`. `host.rs` makes the kernel match it.

mod host;

pub use host::{NorthSouth, NsError, uninstall};

use crate::fabric::{RouterPort, network_id, zone};
use ipnet::{Ipv4Net, Ipv6Net};
use model::agent::Endpoint;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Contiv's default private subnet (`global.pvtSubnet`).
pub const DEFAULT_PVT_SUBNET: &str = "172.19.0.0/16";

/// The IPv6 prefix of the transit links (host-local: the host masquerades what comes from it,
/// nothing outside the host ever sees it). A transit's IPv6 addresses are this prefix with its
/// IPv4 addresses as the last 32 bits ("contiv" in the hex of the first 48).
pub const TRANSIT6_PREFIX: &str = "fd63:6f6e:7469:76::/64";

/// What the host side is computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NsInputs {
    /// This host's endpoints: id -> (OpenFlow port, endpoint, whether the port is shared by
    /// several endpoints (a network trunk)).
    pub local: BTreeMap<String, (u32, Endpoint, bool)>,
    /// Other hosts' endpoints.
    pub remote: BTreeMap<String, Endpoint>,
    /// `global.pvtSubnet`.
    pub pvt_subnet: String,
    /// Published ports (`docker run -p`) of local endpoints, by endpoint id.
    pub published: BTreeMap<String, Vec<Published>>,
}

/// A published port (`docker run -p HOST:PORT`): `proto` (`tcp` or `udp`) `host_port` on the
/// host's own addresses (only `host_ip` when given) is forwarded to `port` of an endpoint here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Published {
    pub proto: String,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub port: u16,
}

impl Published {
    /// The form kept in the endpoint port's `external_ids` (`contiv-published`), so the rules
    /// outlive an agent restart: `proto:host_ip:host_port:port` (host_ip may be empty), comma
    /// separated.
    pub fn encode(list: &[Published]) -> String {
        list.iter()
            .map(|p| {
                let ip = p.host_ip.map(|a| a.to_string()).unwrap_or_default();
                format!("{}:{ip}:{}:{}", p.proto, p.host_port, p.port)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The list [`Published::encode`] wrote; what does not parse is left out.
    pub fn decode(s: &str) -> Vec<Published> {
        s.split(',')
            .filter_map(|e| {
                let mut f = e.split(':');
                let proto = f.next()?.to_string();
                let ip = f.next()?;
                let host_ip = if ip.is_empty() {
                    None
                } else {
                    Some(ip.parse().ok()?)
                };
                let host_port = f.next()?.parse().ok()?;
                let port = f.next()?.parse().ok()?;
                (proto == "tcp" || proto == "udp").then_some(Published {
                    proto,
                    host_ip,
                    host_port,
                    port,
                })
            })
            .collect()
    }
}

/// One network's gateway on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterNet {
    pub tenant: String,
    pub network: String,
    pub nid: u64,
    pub zone: u32,
    pub gateway: Ipv4Addr,
    pub subnet: Ipv4Net,
    /// The IPv6 gateway and subnet of a dual-stack network.
    pub gateway6: Option<(Ipv6Addr, Ipv6Net)>,
    /// Every endpoint of the network, here and elsewhere: its addresses -> its MAC. The router
    /// resolves no neighbour over the wire (a remote pod would answer to its own host's router).
    pub neighbours: BTreeMap<IpAddr, String>,
}

impl RouterNet {
    /// "tenant/network": the key of its names.
    pub fn key(&self) -> String {
        format!("{}/{}", self.tenant, self.network)
    }

    /// What the flows need of it, once its port has a number.
    pub fn port(&self, ofport: u32) -> RouterPort {
        RouterPort {
            ofport,
            gateway: self.gateway.to_string(),
            zone: self.zone,
        }
    }
}

/// A tenant router as it should be.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantRouter {
    /// Networks with a gateway and endpoints here, by network name.
    pub networks: BTreeMap<String, RouterNet>,
    /// Host access: each local endpoint's private address -> its IPv4 address.
    pub private: BTreeMap<Ipv4Addr, Ipv4Addr>,
    /// The IPv4 addresses of the tenant's endpoints on this host (trunk-mates included): what
    /// the host routes in to them keeps its source; to any other address it is source-NATed
    /// to the node's address (see [`router_rules_v4`]).
    pub local_ips: BTreeSet<Ipv4Addr>,
}

/// The host side as it should be: tenant routers by tenant name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desired {
    pub tenants: BTreeMap<String, TenantRouter>,
    pub pvt: Option<Ipv4Net>,
    /// Published ports and the address the host forwards each to: the endpoint's own address
    /// in the default tenant (the host routes its subnets), its private address in the others.
    pub published: Vec<(Published, Ipv4Addr)>,
}

/// The private subnet, or Contiv's default when unset or unreadable (netmaster validates it).
pub fn pvt_subnet(s: &str) -> Ipv4Net {
    s.parse::<Ipv4Net>()
        .ok()
        .filter(|n| n.prefix_len() <= 28)
        .unwrap_or_else(|| DEFAULT_PVT_SUBNET.parse().expect("a valid default"))
        .trunc()
}

/// The private address of the endpoint on OpenFlow port `ofport`: the private subnet's base
/// plus 1 plus (ofport − 32768), in the subnet's lower half (Contiv derived it from the port
/// number the same way, without the 1 that keeps the subnet's own address out). None when the
/// subnet's lower half is too small for that port.
pub fn private_address(pvt: Ipv4Net, ofport: u32) -> Option<Ipv4Addr> {
    let offset = ofport.checked_sub(*crate::datapath::ENDPOINT_OFPORTS.start())? + 1;
    let half = 1u32 << (31 - pvt.prefix_len());
    (offset < half).then(|| Ipv4Addr::from(u32::from(pvt.network()) + offset))
}

/// A tenant router's transit link: the /30 number `index` of the private subnet's upper half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transit {
    pub host: Ipv4Addr,
    pub router: Ipv4Addr,
}

/// The number of transit links the private subnet's upper half holds.
pub fn transit_capacity(pvt: Ipv4Net) -> u32 {
    (1u32 << (31 - pvt.prefix_len())) / 4
}

/// The addresses of transit link `index`.
pub fn transit(pvt: Ipv4Net, index: u32) -> Option<Transit> {
    if index >= transit_capacity(pvt) {
        return None;
    }
    let half = 1u32 << (31 - pvt.prefix_len());
    let base = u32::from(pvt.network()) + half + index * 4;
    Some(Transit {
        host: Ipv4Addr::from(base + 1),
        router: Ipv4Addr::from(base + 2),
    })
}

/// The transit number of a host-side transit address, if it is one in `pvt`.
pub fn transit_index(pvt: Ipv4Net, host: Ipv4Addr) -> Option<u32> {
    let half = 1u32 << (31 - pvt.prefix_len());
    let off = u32::from(host).checked_sub(u32::from(pvt.network()) + half)?;
    (off % 4 == 1 && off / 4 < transit_capacity(pvt)).then_some(off / 4)
}

/// The transit range (the private subnet's upper half): what the host masquerades.
pub fn transit_range(pvt: Ipv4Net) -> Ipv4Net {
    let half = 1u32 << (31 - pvt.prefix_len());
    Ipv4Net::new(
        Ipv4Addr::from(u32::from(pvt.network()) + half),
        pvt.prefix_len() + 1,
    )
    .expect("a prefix below 32")
}

/// A transit address's IPv6 twin (see [`TRANSIT6_PREFIX`]).
pub fn transit6(a: Ipv4Addr) -> Ipv6Addr {
    let p: Ipv6Net = TRANSIT6_PREFIX.parse().expect("a valid prefix");
    Ipv6Addr::from(u128::from(p.network()) | u128::from(u32::from(a)))
}

/// Gives each tenant a transit number: the one it has (`have`, read back from the links),
/// else the lowest free one. Tenants beyond the capacity get none (and no router).
pub fn assign_transits<'a>(
    have: &BTreeMap<String, u32>,
    tenants: impl IntoIterator<Item = &'a String>,
    capacity: u32,
) -> BTreeMap<String, u32> {
    let tenants: Vec<&String> = tenants.into_iter().collect();
    let mut out: BTreeMap<String, u32> = tenants
        .iter()
        .filter_map(|t| have.get(*t).map(|i| ((*t).clone(), *i)))
        .filter(|(_, i)| *i < capacity)
        .collect();
    let mut used: BTreeSet<u32> = out.values().copied().collect();
    let mut next = 0;
    for t in tenants {
        if out.contains_key(t) {
            continue;
        }
        while used.contains(&next) {
            next += 1;
        }
        if next >= capacity {
            break;
        }
        used.insert(next);
        out.insert(t.clone(), next);
    }
    out
}

/// The network of an endpoint as its router sees it; None without an IPv4 gateway (such a
/// network gets no router and no way out: Contiv's rule).
fn router_net(ep: &Endpoint) -> Option<RouterNet> {
    let gateway: Ipv4Addr = ep.gateway.parse().ok()?;
    let subnet = Ipv4Net::new(gateway, ep.prefix_len).ok()?.trunc();
    let gateway6 = ep
        .ipv6_gateway
        .parse::<Ipv6Addr>()
        .ok()
        .and_then(|g| Some((g, Ipv6Net::new(g, ep.ipv6_prefix_len).ok()?.trunc())));
    Some(RouterNet {
        tenant: ep.tenant_name.clone(),
        network: ep.network_name.clone(),
        nid: network_id(ep),
        zone: zone(ep),
        gateway,
        subnet,
        gateway6,
        neighbours: BTreeMap::new(),
    })
}

/// Each local endpoint's private address (endpoint id -> address): endpoints of networks with
/// a gateway (the others get no router) and a port of their own (trunk-mates share one port
/// number: docs/compat.md).
pub fn private_addresses(i: &NsInputs) -> BTreeMap<String, Ipv4Addr> {
    let pvt = pvt_subnet(&i.pvt_subnet);
    i.local
        .iter()
        .filter(|(_, (_, ep, shared))| {
            !shared && router_net(ep).is_some() && ep.ip_address.parse::<Ipv4Addr>().is_ok()
        })
        .filter_map(|(id, (ofport, _, _))| Some((id.clone(), private_address(pvt, *ofport)?)))
        .collect()
}

/// The host side as it should be.
pub fn desired(i: &NsInputs) -> Desired {
    let pvt = pvt_subnet(&i.pvt_subnet);
    let mut tenants: BTreeMap<String, TenantRouter> = BTreeMap::new();
    let privates = private_addresses(i);
    let mut published = Vec::new();
    for (id, (_, ep, _)) in &i.local {
        let Some(net) = router_net(ep) else {
            tracing::debug!(endpoint = %ep.endpoint_id, network = %ep.network_name, tenant = %ep.tenant_name, "network without a gateway: no router, no way out");
            continue;
        };
        let t = tenants.entry(ep.tenant_name.clone()).or_default();
        t.networks.entry(ep.network_name.clone()).or_insert(net);
        if let Ok(ip) = ep.ip_address.parse() {
            t.local_ips.insert(ip);
        }
        // Trunk-mates share one port number: no private address of theirs (docs/compat.md).
        let private = privates.get(id).copied();
        if let (Some(p), Ok(ip)) = (private, ep.ip_address.parse()) {
            t.private.insert(p, ip);
        }
        if let Some(list) = i.published.get(&ep.endpoint_id) {
            let target = if ep.tenant_name == DEFAULT_TENANT {
                ep.ip_address.parse().ok()
            } else {
                private
            };
            match target {
                Some(to) => published.extend(list.iter().map(|p| (p.clone(), to))),
                None => {
                    tracing::warn!(endpoint = %ep.endpoint_id, tenant = %ep.tenant_name, "published ports of an endpoint without a private address (a trunk-mate): not forwarded")
                }
            }
        }
    }
    let all = i
        .local
        .values()
        .map(|(_, ep, _)| ep)
        .chain(i.remote.values());
    for ep in all {
        let Some(net) = tenants
            .get_mut(&ep.tenant_name)
            .and_then(|t| t.networks.get_mut(&ep.network_name))
        else {
            continue;
        };
        if ep.mac_address.is_empty() {
            continue;
        }
        for a in [&ep.ip_address, &ep.ipv6_address] {
            if let Ok(ip) = a.parse::<IpAddr>() {
                net.neighbours.insert(ip, ep.mac_address.clone());
            }
        }
    }
    published.sort();
    Desired {
        tenants,
        pvt: Some(pvt),
        published,
    }
}

/// The mark the router puts on what enters from the host, and (as a connection mark) on the
/// replies to it: to source-NAT it on the way into a network, and to route the replies back
/// to the host (see [`REPLY_TABLE`]).
pub(crate) const FROM_HOST_MARK: &str = "0x4000/0x4000";

/// The routing table of a tenant router that sends everything to the host: replies to what
/// came in from the host (marked by their connection) are routed by it, so they go back
/// through the host's conntrack even when addressed to a pod of the router's own networks
/// (a pod that reached a Service whose backend is another pod: kube-proxy's DNAT is in the
/// host, only the host can undo it).
pub const REPLY_TABLE: u32 = 100;

/// The default tenant: the one whose subnets the host routes and whose pods keep their own
/// addresses into the host (kube-proxy's rules and the host's own services see them).
pub const DEFAULT_TENANT: &str = "default";

/// A tenant router's whole ruleset for `iptables-restore` (IPv4): the namespace is the agent's,
/// so the tables are replaced whole. Networks of a tenant stay apart (issue 21's routing mode
/// will open that); each reaches the host and the outside by `up0`; the host reaches endpoints
/// by their private addresses (1:1 DNAT).
///
/// What the tenant's pods send to the host keeps its source in the default tenant (its subnets
/// are the host's routes: the host masquerades them on the way out, [`host_chains`]); other
/// tenants' is source-NATed to the router's transit address (their subnets may overlap).
///
/// What enters from the host (`node`: this host's node address, None: not known) is
/// source-NATed to `node` when it goes to an endpoint on another host, so the endpoint's
/// replies find their way back to this host's router (`fabric::return_flows`), or when it
/// comes from one of the tenant's own subnets (a pod through a host's DNAT to a pod: the reply
/// must not go from pod to pod directly). What goes to an endpoint here from elsewhere keeps
/// its source: the pod and its `from-ip` rules see the outside client.
pub fn router_rules_v4(
    t: &TenantRouter,
    tr: Transit,
    node: Option<Ipv4Addr>,
    default_tenant: bool,
) -> String {
    let up = crate::names::ROUTER_UPLINK;
    let mut s = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    for (p, ip) in &t.private {
        s.push_str(&format!(
            "-A PREROUTING -i {up} -d {p}/32 -j DNAT --to-destination {ip}\n"
        ));
    }
    let r = tr.router;
    if !default_tenant {
        s.push_str(&format!("-A POSTROUTING -o {up} -j SNAT --to-source {r}\n"));
    }
    let m = FROM_HOST_MARK;
    match node {
        Some(n) => {
            for net in t.networks.values() {
                s.push_str(&format!(
                    "-A POSTROUTING -m mark --mark {m} -s {} -j SNAT --to-source {n}\n",
                    net.subnet
                ));
            }
            for ip in &t.local_ips {
                s.push_str(&format!(
                    "-A POSTROUTING -m mark --mark {m} -d {ip}/32 -j RETURN\n"
                ));
            }
            s.push_str(&format!(
                "-A POSTROUTING -m mark --mark {m} -j SNAT --to-source {n}\n"
            ));
        }
        None => s.push_str(&format!(
            "-A POSTROUTING -m mark --mark {m} -j SNAT --to-source {r}\n"
        )),
    }
    s.push_str("COMMIT\n");
    s.push_str(&mangle_and_filter(up));
    s
}

/// The same for IPv6 (no private addresses: the host reaches pods by IPv6 only in the default
/// tenant, by their own addresses; what the host sends in is source-NATed to the router's
/// transit address, so IPv6 from the host reaches only the pods of this host).
pub fn router_rules_v6(tr: Transit) -> String {
    let up = crate::names::ROUTER_UPLINK;
    let r = transit6(tr.router);
    let mut s = format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o {up} -j SNAT --to-source {r}\n-A POSTROUTING -m mark --mark {FROM_HOST_MARK} -j SNAT --to-source {r}\nCOMMIT\n"
    );
    s.push_str(&mangle_and_filter(up));
    s
}

fn mangle_and_filter(up: &str) -> String {
    format!(
        "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -i {up} -j MARK --set-xmark {FROM_HOST_MARK}\n-A PREROUTING -i {up} -m conntrack --ctstate NEW -j CONNMARK --set-xmark {FROM_HOST_MARK}\n-A PREROUTING ! -i {up} -m connmark --mark {FROM_HOST_MARK} -j MARK --set-xmark {FROM_HOST_MARK}\nCOMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -i {up} -j ACCEPT\n-A FORWARD -o {up} -j ACCEPT\nCOMMIT\n"
    )
}

/// The host namespace's chains (for `iptables-restore --noflush`: declaring a chain flushes
/// it, nothing else is touched): what comes from `sources` (the family's transit range, and
/// over IPv4 the default tenant's subnets, whose pods keep their addresses into the host) and
/// leaves by an interface that is no transit is masqueraded to the host's address; forwarding
/// to and from transits is accepted; `published` ports (IPv4 only: None for IPv6, which has
/// no such chain) are forwarded to their endpoints.
pub fn host_chains(sources: &[String], published: Option<&[(Published, Ipv4Addr)]>) -> String {
    let mut s = format!("*nat\n:{POSTROUTING_CHAIN} - [0:0]\n");
    if published.is_some() {
        s.push_str(&format!(":{DNAT_CHAIN} - [0:0]\n"));
    }
    for src in sources {
        s.push_str(&format!(
            "-A {POSTROUTING_CHAIN} -s {src} ! -o vu+ -j MASQUERADE\n"
        ));
    }
    for (p, to) in published.unwrap_or_default() {
        let dst = p.host_ip.map(|a| format!(" -d {a}/32")).unwrap_or_default();
        s.push_str(&format!(
            "-A {DNAT_CHAIN}{dst} -p {proto} -m {proto} --dport {} -j DNAT --to-destination {to}:{}\n",
            p.host_port,
            p.port,
            proto = p.proto
        ));
    }
    s.push_str(&format!(
        "COMMIT\n*filter\n:{FORWARD_CHAIN} - [0:0]\n-A {FORWARD_CHAIN} -i vu+ -j ACCEPT\n-A {FORWARD_CHAIN} -o vu+ -j ACCEPT\nCOMMIT\n"
    ));
    s
}

/// The host's chains as they should be: IPv4, IPv6 (see [`host_chains`]).
pub fn host_rules(d: &Desired) -> (String, String) {
    let pvt = d.pvt.unwrap_or_else(|| pvt_subnet(""));
    let mut v4 = vec![transit_range(pvt).to_string()];
    if let Some(t) = d.tenants.get(DEFAULT_TENANT) {
        v4.extend(t.networks.values().map(|n| n.subnet.to_string()));
    }
    (
        host_chains(&v4, Some(&d.published)),
        host_chains(&[TRANSIT6_PREFIX.to_string()], None),
    )
}

/// The jumps from the built-in chains to the agent's: (IPv4 only, table, chain, match,
/// target). Published ports are the host's own addresses' (from outside, and from the host
/// itself but for loopback, as Docker's own `DOCKER` chain); IPv4 only.
pub const JUMPS: &[(bool, &str, &str, &[&str], &str)] = &[
    (false, "nat", "POSTROUTING", &[], POSTROUTING_CHAIN),
    (false, "filter", "FORWARD", &[], FORWARD_CHAIN),
    (
        true,
        "nat",
        "PREROUTING",
        &["-m", "addrtype", "--dst-type", "LOCAL"],
        DNAT_CHAIN,
    ),
    (
        true,
        "nat",
        "OUTPUT",
        &[
            "!",
            "-d",
            "127.0.0.0/8",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
        ],
        DNAT_CHAIN,
    ),
];

/// The agent's chains in the host namespace, jumped to from the built-in ones.
pub const POSTROUTING_CHAIN: &str = "CONTIV-POSTROUTING";
pub const FORWARD_CHAIN: &str = "CONTIV-FORWARD";
pub const DNAT_CHAIN: &str = "CONTIV-DNAT";

/// A gratuitous ARP from `mac` for `ip` (Ethernet broadcast): what the tenant router
/// sends from a gateway interface once its port's flows are in. A pod whose first packet went
/// out before the router port existed holds an unanswered ("incomplete") neighbour entry for
/// its gateway and would ask again only a second later; the kernel fills such an entry from
/// this announcement and sends the packets it queued at once. A reply, not the usual request:
/// the bridge answers ARP requests for the gateway itself (table 10), a request from the router
/// port would come back to the router instead of reaching the pods.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet, IPv4, address lengths 6 and 4, reply.
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // To everyone (target hardware address broadcast), about the sender's own address.
    f[32..38].copy_from_slice(&[0xff; 6]);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// The IPv6 twin of [`gratuitous_arp`]: an unsolicited neighbour advertisement from `mac` for
/// `ip` to all nodes (`ff02::1`), with the router and override flags and `mac` as the target's
/// link-layer address. A pod that asked for its IPv6 gateway before the router port existed
/// holds an incomplete entry; the kernel fills it from this and sends what it queued, instead
/// of asking again a second later.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 86] {
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut f = [0u8; 86];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    // IPv6: version 6, payload 32 bytes of ICMPv6, hop limit 255 (receivers drop ND with any
    // other: it proves the sender is on the link).
    f[14] = 0x60;
    f[18..20].copy_from_slice(&32u16.to_be_bytes());
    f[20] = 58;
    f[21] = 255;
    f[22..38].copy_from_slice(&ip.octets());
    f[38..54].copy_from_slice(&ALL_NODES.octets());
    // ICMPv6 neighbour advertisement: type 136, code 0, flags router and override.
    let m = &mut f[54..86];
    m[0] = 136;
    m[4] = 0xa0;
    m[8..24].copy_from_slice(&ip.octets());
    // Option: target link-layer address (type 2, 1 unit of 8 bytes).
    m[24] = 2;
    m[25] = 1;
    m[26..32].copy_from_slice(&mac);
    let sum = icmp6_checksum(ip, ALL_NODES, &f[54..86]);
    f[56..58].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The ICMPv6 checksum of `msg` (its checksum field zero) from `src` to `dst` (RFC 4443 2.3:
/// over the pseudo-header and the message).
fn icmp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + msg.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(msg);
    !ones_complement_sum(&pseudo)
}

/// The 16-bit one's complement sum of `b` (odd lengths padded with a zero byte).
fn ones_complement_sum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(tenant: &str, net: &str, host: &str, ip: &str, gw: &str) -> Endpoint {
        Endpoint {
            endpoint_id: format!("{tenant}-{host}-{ip}"),
            tenant_name: tenant.into(),
            network_name: net.into(),
            host: host.into(),
            ip_address: ip.into(),
            prefix_len: 24,
            gateway: gw.into(),
            mac_address: format!(
                "02:02:0a:01:02:{:02x}",
                ip.rsplit('.').next().unwrap().parse::<u8>().unwrap()
            ),
            encap: "vxlan".into(),
            pkt_tag: 1,
            ext_pkt_tag: if tenant == "blue" { 8 } else { 7 },
            ..Default::default()
        }
    }

    #[test]
    fn private_addresses_and_transits_split_the_private_subnet() {
        let pvt = pvt_subnet("172.19.0.0/16");
        assert_eq!(
            private_address(pvt, 32768),
            Some("172.19.0.1".parse().unwrap())
        );
        assert_eq!(
            private_address(pvt, 32768 + 300),
            Some("172.19.1.45".parse().unwrap())
        );
        assert_eq!(
            private_address(pvt, 0xfeff),
            Some("172.19.127.0".parse().unwrap())
        );
        assert_eq!(private_address(pvt, 5), None, "not an endpoint port");
        // A small subnet: only the ports that fit.
        let small = pvt_subnet("10.9.0.0/24");
        assert_eq!(
            private_address(small, 32768 + 126),
            Some("10.9.0.127".parse().unwrap())
        );
        assert_eq!(private_address(small, 32768 + 127), None);
        let t = transit(pvt, 0).unwrap();
        assert_eq!(
            (t.host.to_string(), t.router.to_string()),
            ("172.19.128.1".into(), "172.19.128.2".into())
        );
        assert_eq!(transit(pvt, 3).unwrap().host.to_string(), "172.19.128.13");
        assert_eq!(
            transit_index(pvt, "172.19.128.13".parse().unwrap()),
            Some(3)
        );
        assert_eq!(transit_index(pvt, "172.19.128.14".parse().unwrap()), None);
        assert_eq!(transit_index(pvt, "172.19.0.13".parse().unwrap()), None);
        assert_eq!(transit_capacity(pvt), 8192);
        assert!(transit(pvt, 8192).is_none());
        assert_eq!(transit_range(pvt).to_string(), "172.19.128.0/17");
        assert_eq!(
            transit6(t.router).to_string(),
            "fd63:6f6e:7469:76::ac13:8002"
        );
        // Unset: Contiv's default.
        assert_eq!(pvt_subnet(""), pvt);
    }

    #[test]
    fn transits_are_kept_and_new_tenants_get_the_lowest_free() {
        let have = BTreeMap::from([("blue".to_string(), 1), ("gone".to_string(), 0)]);
        let want = ["blue".to_string(), "default".to_string(), "red".to_string()];
        let got = assign_transits(&have, &want, 8);
        assert_eq!(got["blue"], 1, "stable across restarts");
        assert_eq!(
            got["default"], 0,
            "a departed tenant's number is free again"
        );
        assert_eq!(got["red"], 2);
        let full = assign_transits(&BTreeMap::new(), &want, 2);
        assert_eq!(full.len(), 2, "no number beyond the capacity");
    }

    #[test]
    fn two_tenants_with_one_subnet_get_routers_of_their_own() {
        let mut i = NsInputs::default();
        i.local.insert(
            "a".into(),
            (
                32769,
                ep("default", "net", "h1", "10.1.2.2", "10.1.2.1"),
                false,
            ),
        );
        i.local.insert(
            "b".into(),
            (
                32770,
                ep("blue", "net", "h1", "10.1.2.2", "10.1.2.1"),
                false,
            ),
        );
        // A trunk's pods share a port: no private address.
        i.local.insert(
            "c".into(),
            (32771, ep("blue", "net", "h1", "10.1.2.5", "10.1.2.1"), true),
        );
        // No gateway: no router.
        i.local.insert(
            "d".into(),
            (32772, ep("green", "net", "h1", "10.1.2.2", ""), false),
        );
        i.remote
            .insert("e".into(), ep("blue", "net", "h2", "10.1.2.3", "10.1.2.1"));
        // A remote endpoint of a tenant with nothing here: not needed.
        i.remote
            .insert("f".into(), ep("red", "net", "h2", "10.1.2.3", "10.1.2.1"));
        let d = desired(&i);
        assert_eq!(d.tenants.keys().collect::<Vec<_>>(), ["blue", "default"]);
        let blue = &d.tenants["blue"];
        let net = &blue.networks["net"];
        assert_eq!(net.subnet.to_string(), "10.1.2.0/24");
        assert_eq!(net.nid, 8);
        let n: Vec<String> = net.neighbours.keys().map(|a| a.to_string()).collect();
        assert_eq!(
            n,
            ["10.1.2.2", "10.1.2.3", "10.1.2.5"],
            "local and remote, own tenant only"
        );
        assert_eq!(
            blue.private,
            BTreeMap::from([("172.19.0.3".parse().unwrap(), "10.1.2.2".parse().unwrap())])
        );
        assert_eq!(
            d.tenants["default"].private,
            BTreeMap::from([("172.19.0.2".parse().unwrap(), "10.1.2.2".parse().unwrap())])
        );
        // What endpoint inspect shows: by endpoint, the same addresses.
        let by_endpoint: Vec<(String, String)> = private_addresses(&i)
            .into_iter()
            .map(|(id, a)| (id, a.to_string()))
            .collect();
        assert_eq!(
            by_endpoint,
            [
                ("a".to_string(), "172.19.0.2".to_string()),
                ("b".to_string(), "172.19.0.3".to_string())
            ]
        );
    }

    #[test]
    fn dual_stack_networks_get_the_ipv6_gateway_and_neighbours() {
        let mut e = ep("default", "net", "h1", "10.1.2.2", "10.1.2.1");
        e.ipv6_address = "fd00:1::2".into();
        e.ipv6_gateway = "fd00:1::1".into();
        e.ipv6_prefix_len = 64;
        let mut i = NsInputs::default();
        i.local.insert("a".into(), (32769, e, false));
        let d = desired(&i);
        let net = &d.tenants["default"].networks["net"];
        let (g, s) = net.gateway6.unwrap();
        assert_eq!(
            (g.to_string(), s.to_string()),
            ("fd00:1::1".into(), "fd00:1::/64".into())
        );
        assert!(
            net.neighbours
                .contains_key(&"fd00:1::2".parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn router_rules_keep_networks_apart_and_nat_both_ways() {
        let mut t = TenantRouter::default();
        t.private
            .insert("172.19.0.2".parse().unwrap(), "10.1.2.2".parse().unwrap());
        let tr = transit(pvt_subnet(""), 0).unwrap();
        let r = router_rules_v4(&t, tr, None, false);
        assert!(
            r.contains("-A PREROUTING -i up0 -d 172.19.0.2/32 -j DNAT --to-destination 10.1.2.2\n"),
            "{r}"
        );
        assert!(r.contains("-A POSTROUTING -o up0 -j SNAT --to-source 172.19.128.2\n"));
        assert!(r.contains(":FORWARD DROP"), "network to network is dropped");
        assert!(r.contains("-A FORWARD -i up0 -j ACCEPT\n-A FORWARD -o up0 -j ACCEPT\n"));
        assert_eq!(r.matches("COMMIT").count(), 3);
        let r6 = router_rules_v6(tr);
        assert!(
            r6.contains("--to-source fd63:6f6e:7469:76::ac13:8002"),
            "{r6}"
        );
        let h = host_chains(&["172.19.128.0/17".into(), "10.1.2.0/24".into()], Some(&[]));
        assert!(h.contains("-A CONTIV-POSTROUTING -s 172.19.128.0/17 ! -o vu+ -j MASQUERADE"));
        assert!(h.contains("-A CONTIV-POSTROUTING -s 10.1.2.0/24 ! -o vu+ -j MASQUERADE"));
        assert!(h.contains(":CONTIV-FORWARD - [0:0]"));
    }

    #[test]
    fn what_the_host_routes_in_keeps_its_source_to_local_pods_only() {
        let mut i = NsInputs::default();
        i.local.insert(
            "a".into(),
            (
                32769,
                ep("default", "net", "h1", "10.1.2.2", "10.1.2.1"),
                false,
            ),
        );
        // A trunk-mate has no private address but is local all the same.
        i.local.insert(
            "b".into(),
            (
                32770,
                ep("default", "net", "h1", "10.1.2.5", "10.1.2.1"),
                true,
            ),
        );
        i.remote.insert(
            "c".into(),
            ep("default", "net", "h2", "10.1.2.3", "10.1.2.1"),
        );
        let d = desired(&i);
        let t = &d.tenants["default"];
        assert_eq!(
            t.local_ips
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            ["10.1.2.2", "10.1.2.5"]
        );
        let tr = transit(pvt_subnet(""), 0).unwrap();
        let node: Ipv4Addr = "10.250.0.11".parse().unwrap();
        let r = router_rules_v4(t, tr, Some(node), true);
        let post: Vec<&str> = r
            .lines()
            .filter(|l| l.starts_with("-A POSTROUTING"))
            .collect();
        let m = FROM_HOST_MARK;
        assert_eq!(
            post,
            [
                // A pod through the host's DNAT to a pod: the reply must go back the same way.
                format!(
                    "-A POSTROUTING -m mark --mark {m} -s 10.1.2.0/24 -j SNAT --to-source 10.250.0.11"
                ),
                // A pod here sees the client.
                format!("-A POSTROUTING -m mark --mark {m} -d 10.1.2.2/32 -j RETURN"),
                format!("-A POSTROUTING -m mark --mark {m} -d 10.1.2.5/32 -j RETURN"),
                // A pod elsewhere sees this node, whose router its replies are steered to.
                format!("-A POSTROUTING -m mark --mark {m} -j SNAT --to-source 10.250.0.11"),
            ],
            "the default tenant keeps its pods' addresses on the way to the host: {r}"
        );
        // Replies to what came from the host go back to it (policy routing by connection mark).
        assert!(r.contains(&format!(
            "-A PREROUTING -i up0 -m conntrack --ctstate NEW -j CONNMARK --set-xmark {m}\n-A PREROUTING ! -i up0 -m connmark --mark {m} -j MARK --set-xmark {m}\n"
        )));
        // Another tenant's pods are hidden behind the transit address on the way out.
        let blue = router_rules_v4(t, tr, Some(node), false);
        assert!(blue.contains("-A POSTROUTING -o up0 -j SNAT --to-source 172.19.128.2\n"));
        let (v4, v6) = host_rules(&d);
        assert!(v4.contains("-A CONTIV-POSTROUTING -s 172.19.128.0/17 ! -o vu+ -j MASQUERADE\n-A CONTIV-POSTROUTING -s 10.1.2.0/24 ! -o vu+ -j MASQUERADE\n"), "{v4}");
        assert!(!v6.contains("10.1.2.0/24"), "{v6}");
    }

    #[test]
    fn published_ports_are_forwarded_to_the_endpoint_or_its_private_address() {
        let list = Published::decode("tcp::8080:80,udp:127.0.0.1:5353:53,sctp::1:1,bad");
        assert_eq!(
            Published::encode(&list),
            "tcp::8080:80,udp:127.0.0.1:5353:53"
        );
        let mut i = NsInputs::default();
        let d0 = ep("default", "net", "h1", "10.1.2.2", "10.1.2.1");
        let b0 = ep("blue", "net", "h1", "10.1.2.2", "10.1.2.1");
        i.published
            .insert(d0.endpoint_id.clone(), list[..1].to_vec());
        i.published
            .insert(b0.endpoint_id.clone(), list[1..].to_vec());
        // A departed endpoint's list is not forwarded.
        i.published
            .insert("gone".into(), Published::decode("tcp::9999:1"));
        i.local.insert("a".into(), (32769, d0, false));
        i.local.insert("b".into(), (32770, b0, false));
        let d = desired(&i);
        let (v4, v6) = host_rules(&d);
        assert!(
            v4.contains(
                "-A CONTIV-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.2.2:80\n"
            ),
            "the default tenant's endpoint by its own address: {v4}"
        );
        assert!(
            v4.contains("-A CONTIV-DNAT -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.19.0.3:53\n"),
            "another tenant's by its private address: {v4}"
        );
        assert!(!v4.contains("9999"));
        assert!(
            !v6.contains("CONTIV-DNAT"),
            "no published ports over IPv6: {v6}"
        );
    }

    #[test]
    fn an_unsolicited_neighbour_advertisement_announces_the_ipv6_gateway() {
        let mac = [2, 0, 0, 0x11, 0x11, 0x11];
        let gw: Ipv6Addr = "fd00:1::1".parse().unwrap();
        let f = unsolicited_na(mac, gw);
        assert_eq!(f[0..6], [0x33, 0x33, 0, 0, 0, 1], "to all nodes' MAC");
        assert_eq!(f[6..12], mac);
        assert_eq!(f[12..14], [0x86, 0xdd]);
        assert_eq!(
            (f[14] >> 4, f[20], f[21]),
            (6, 58, 255),
            "IPv6, ICMPv6, hop limit 255"
        );
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 32, "payload length");
        assert_eq!(f[22..38], gw.octets(), "from the gateway");
        assert_eq!(
            Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap()),
            "ff02::1".parse::<Ipv6Addr>().unwrap()
        );
        let icmp = &f[54..86];
        assert_eq!((icmp[0], icmp[1]), (136, 0), "a neighbour advertisement");
        assert_eq!(icmp[4], 0xa0, "router and override, not solicited");
        assert_eq!(icmp[8..24], gw.octets(), "about the gateway");
        assert_eq!(icmp[24..32], [2, 1, 2, 0, 0, 0x11, 0x11, 0x11], "its MAC");
        // A receiver's check: the sum over pseudo-header and message, checksum included, is
        // all ones.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[22..54]);
        pseudo.extend_from_slice(&[0, 0, 0, 32, 0, 0, 0, 58]);
        pseudo.extend_from_slice(icmp);
        assert_eq!(ones_complement_sum(&pseudo), 0xffff, "checksum");
        assert_ne!(icmp[2..4], [0, 0]);
    }

    #[test]
    fn a_gratuitous_arp_announces_the_gateway_to_everyone() {
        let f = gratuitous_arp([2, 0, 0, 0x11, 0x11, 0x11], "10.1.2.1".parse().unwrap());
        let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "ffffffffffff",
                "020000111111",
                "0806",
                "0001",
                "0800",
                "06",
                "04",
                "0002",
                "020000111111",
                "0a010201",
                "ffffffffffff",
                "0a010201",
            )
        );
    }
}
