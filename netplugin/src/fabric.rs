//! The node's OpenFlow pipeline as a pure function of what the agent knows: its own endpoints
//! (with their OpenFlow ports), the endpoints on other hosts, the tunnels to those hosts and the
//! global ARP mode. [`desired`] turns that into flows grouped by cookie; the datapath applies the
//! difference to what is installed. docs/ovs-pipeline.md describes the tables.

use model::agent::Endpoint;
use ovs::Flow;
use std::collections::{BTreeMap, BTreeSet};

/// Tables of the pipeline.
pub mod table {
    /// Where every packet starts: which endpoint or tunnel it came from, and its network.
    pub const CLASSIFY: u8 = 0;
    /// Packets from a tunnel: the VNI names the network.
    pub const TUNNEL: u8 = 2;
    /// ARP requests answered by the switch (arpMode proxy).
    pub const ARP: u8 = 10;
    /// Policy entry for unicast IP: straight to output when no policy concerns this host, else
    /// through conntrack.
    pub const POLICY: u8 = 20;
    /// After conntrack: established and related pass, new connections are judged.
    pub const CT_STATE: u8 = 21;
    /// `out` rules of the source's group (source on this host).
    pub const EGRESS: u8 = 22;
    /// Kubernetes NetworkPolicy egress of pods on this host (`crate::netpol`), after Contiv's
    /// `out` rules allowed.
    pub const NP_EGRESS: u8 = 23;
    /// `in` rules of the destination's group (destination on this host).
    pub const INGRESS: u8 = 24;
    /// Kubernetes NetworkPolicy ingress of pods on this host, after Contiv's `in` rules allowed.
    pub const NP_INGRESS: u8 = 25;
    /// An allowed new connection is committed to conntrack.
    pub const COMMIT: u8 = 26;
    /// Layer-2 forwarding inside a network: to a local port, a tunnel, or flooded.
    pub const L2: u8 = 30;
    /// Out of the port chosen by L2 (register 2).
    pub const OUTPUT: u8 = 50;

    /// The table's name in docs/ovs-pipeline.md, for metrics and traces.
    pub fn name(table: u8) -> &'static str {
        match table {
            CLASSIFY => "classify",
            TUNNEL => "tunnel",
            ARP => "arp",
            POLICY => "policy",
            CT_STATE => "ct_state",
            EGRESS => "egress",
            INGRESS => "ingress",
            COMMIT => "commit",
            L2 => "l2",
            OUTPUT => "output",
            _ => "other",
        }
    }
}

/// Register 0 says where a packet entered.
pub const FROM_ENDPOINT: u32 = 1;
pub const FROM_TUNNEL: u32 = 2;

/// Cookie classes: the top byte of every cookie says who owns the flow.
pub mod cookie {
    pub const CLASS_SHIFT: u32 = 56;
    pub const CLASS_MASK: u64 = 0xff << CLASS_SHIFT;
    /// The table-miss flows every bridge has.
    pub const BASE: u64 = 0x01 << CLASS_SHIFT;
    /// One endpoint on this host.
    pub const ENDPOINT: u64 = 0x02 << CLASS_SHIFT;
    /// One endpoint on another host.
    pub const REMOTE: u64 = 0x03 << CLASS_SHIFT;
    /// One network (by network id): tunnel classification and flooding.
    pub const NETWORK: u64 = 0x04 << CLASS_SHIFT;
    /// One tunnel port (by peer host).
    pub const TUNNEL: u64 = 0x05 << CLASS_SHIFT;
    /// One policy rule (by rule key).
    pub const RULE: u64 = 0x06 << CLASS_SHIFT;
    /// The Kubernetes NetworkPolicy flows of one local endpoint (by endpoint id).
    pub const NETPOL: u64 = 0x07 << CLASS_SHIFT;

    fn hashed(class: u64, id: &str) -> u64 {
        class | (crate::names::fnv1a(id.as_bytes()) & !CLASS_MASK)
    }

    pub fn endpoint(id: &str) -> u64 {
        hashed(ENDPOINT, id)
    }
    pub fn remote(id: &str) -> u64 {
        hashed(REMOTE, id)
    }
    pub fn network(nid: u64) -> u64 {
        NETWORK | (nid & !CLASS_MASK)
    }
    pub fn tunnel(host: &str) -> u64 {
        hashed(TUNNEL, host)
    }
    pub fn rule(key: &str) -> u64 {
        hashed(RULE, key)
    }
    pub fn netpol(endpoint_id: &str) -> u64 {
        hashed(NETPOL, endpoint_id)
    }
    pub fn class(c: u64) -> u64 {
        c & CLASS_MASK
    }
}

/// The pipeline's name for a network, carried in the metadata field: the VNI of a VXLAN network,
/// or bit 32 plus the VLAN of a VLAN network (the two pools overlap numerically).
pub fn network_id(ep: &Endpoint) -> u64 {
    if ep.encap == "vlan" {
        (1 << 32) | u64::from(ep.pkt_tag)
    } else {
        u64::from(ep.ext_pkt_tag)
    }
}

/// The conntrack zone of a network: networks of different tenants may hold the same addresses.
/// The local VLAN of a VXLAN network (1-4094), or 4096 + the VLAN of a VLAN network.
pub fn zone(ep: &Endpoint) -> u32 {
    if ep.encap == "vlan" {
        4096 + ep.pkt_tag
    } else {
        ep.pkt_tag
    }
}

fn is_vxlan(ep: &Endpoint) -> bool {
    ep.encap != "vlan"
}

/// Everything the flows depend on.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// This host's endpoints: id -> (OpenFlow port, endpoint).
    pub local: BTreeMap<String, (u32, Endpoint)>,
    /// Other hosts' endpoints by id.
    pub remote: BTreeMap<String, Endpoint>,
    /// Tunnel OpenFlow port per peer host name.
    pub tunnels: BTreeMap<String, u32>,
    /// Answer ARP requests for known endpoints in the switch (Contiv's `arpMode: proxy`).
    pub arp_proxy: bool,
    /// Groups, policies and rules.
    pub policy: crate::policy::PolicyInputs,
    /// Kubernetes NetworkPolicy, resolved for this host's pods.
    pub netpol: crate::netpol::NetpolInputs,
    /// Network profiles by the group that uses them (`tenant:group`).
    pub profiles: BTreeMap<String, Profile>,
    /// OpenFlow ports that are network trunks (`crate::attach::trunk`): several local endpoints share
    /// each, told apart by MAC, so delivery to one may leave by the port it came in on.
    pub trunks: BTreeSet<u32>,
    /// The tenant router's port of each network (by network id) that has one on this host
    /// (`crate::northsouth`): the network's distributed gateway.
    pub routers: BTreeMap<u64, RouterPort>,
    /// Each peer host's node (VTEP) address: the source the peer's tenant routers give what
    /// they route into a network from their host (`crate::northsouth`), so replies to it are
    /// sent back to that host ([`return_flows`]).
    pub vteps: BTreeMap<String, String>,
}

/// The MAC of every tenant router's port on every host: one cluster-wide router MAC, so a pod's
/// gateway neighbour entry stays right wherever the pod's packets are routed (docs/decisions.md
/// "North-south"). Locally administered; pods' MACs start 02:02, so none collides with it.
pub const ROUTER_MAC: &str = "02:00:00:11:11:11";

/// A network's gateway on this host: the tenant router's port on the bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterPort {
    pub ofport: u32,
    /// The network's IPv4 gateway (answered by the switch's ARP responder).
    pub gateway: String,
    /// The network's conntrack zone (`zone`).
    pub zone: u32,
}

/// A group's network profile, as the datapath applies it to each of its endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Bits per second each way; 0: unlimited.
    pub bps: u64,
    /// Burst in kilobytes (Contiv's unit); 0: a default of 1/5 s at the rate (TCP through a
    /// policer with a much smaller bucket stays well below the rate).
    pub burst_kbytes: u64,
    /// DSCP to mark the endpoint's IP packets with (0: leave them).
    pub dscp: u8,
}

/// The meters of an endpoint under a profile: (from the pod, to the pod); odd and even, never 0.
/// Derived from the endpoint id and the profile's rate and burst, so a changed profile gets new
/// meters (the flows move to them in one bundle, the old ones are deleted after): the userspace
/// datapath does not apply a modified meter to traffic it already forwards.
pub fn meter_ids(endpoint_id: &str, p: &Profile) -> (u32, u32) {
    let key = format!("{endpoint_id}/{}/{}", p.bps, p.burst_kbytes);
    let base = (crate::names::fnv1a(key.as_bytes()) as u32) & 0x3fff_ffff;
    (base * 2 + 1, base * 2 + 2)
}

fn profile_of<'a>(i: &'a Inputs, ep: &Endpoint) -> Option<&'a Profile> {
    if ep.group_name.is_empty() {
        return None;
    }
    i.profiles
        .get(&format!("{}:{}", ep.tenant_name, ep.group_name))
}

/// Meters the local endpoints' profiles need: id -> (kbps, burst in kilobits).
pub fn desired_meters(i: &Inputs) -> BTreeMap<u32, (u64, u64)> {
    let mut m = BTreeMap::new();
    for (id, (_, ep)) in &i.local {
        if let Some(p) = profile_of(i, ep)
            && p.bps > 0
        {
            let kbps = (p.bps / 1000).max(1);
            let burst = if p.burst_kbytes > 0 {
                p.burst_kbytes * 8
            } else {
                (kbps / 5).max(1)
            };
            let (o, n) = meter_ids(id, p);
            m.insert(o, (kbps, burst));
            m.insert(n, (kbps, burst));
        }
    }
    m
}

/// The flows of every owner, by cookie.
pub fn desired(i: &Inputs) -> BTreeMap<u64, Vec<Flow>> {
    let mut out: BTreeMap<u64, Vec<Flow>> = BTreeMap::new();
    let local_groups: BTreeSet<u32> = i
        .local
        .values()
        .map(|(_, ep)| ep.group_id)
        .filter(|g| *g != 0)
        .collect();
    let rules = crate::policy::compile(&i.policy, &local_groups);
    // With NetworkPolicy enforced, everything is tracked from the start: a connection made
    // before a policy selects its pod is established when it does, and stays.
    out.insert(
        cookie::BASE,
        base_flows(!rules.is_empty() || i.netpol.enabled),
    );
    out.extend(rules);
    out.extend(crate::netpol::flows(&i.netpol, &i.local));

    // Networks that have an endpoint here: only they need tunnel, remote and flood flows.
    type Net<'a> = (bool, BTreeSet<u32>, BTreeSet<&'a str>, u32);
    let mut nets: BTreeMap<u64, Net> = BTreeMap::new();
    for (id, (port, ep)) in &i.local {
        let nid = network_id(ep);
        let e =
            nets.entry(nid)
                .or_insert((is_vxlan(ep), BTreeSet::new(), BTreeSet::new(), zone(ep)));
        e.1.insert(*port);
        let mut f = local_flows(cookie::endpoint(id), *port, ep, i.arp_proxy);
        if i.trunks.contains(port) {
            // The trunk's other endpoints share the port: what no endpoint's flow admits
            // falls to the classifier's table-miss drop instead.
            let catch_all = format!("in_port={port}");
            f.retain(|x| !(x.table == table::CLASSIFY && x.matches == catch_all));
        }
        if let Some(p) = profile_of(i, ep) {
            apply_profile(&mut f, id, p);
        }
        out.insert(cookie::endpoint(id), f);
    }
    for (id, ep) in &i.remote {
        let nid = network_id(ep);
        let Some(net) = nets.get_mut(&nid) else {
            continue;
        };
        let Some(&tport) = i.tunnels.get(&ep.host) else {
            continue;
        };
        if !net.0 {
            // A VLAN network spans hosts through a physical uplink, not tunnels.
            continue;
        }
        net.2.insert(ep.host.as_str());
        let c = cookie::remote(id);
        out.insert(c, remote_flows(c, tport, ep, i.arp_proxy));
    }
    for (host, port) in &i.tunnels {
        let c = cookie::tunnel(host);
        out.insert(
            c,
            vec![
                Flow::new(
                    table::CLASSIFY,
                    300,
                    format!("in_port={port}"),
                    format!("resubmit(,{})", table::TUNNEL),
                )
                .cookie(c),
            ],
        );
    }
    for (nid, (vxlan, ports, hosts, zone)) in nets {
        let c = cookie::network(nid);
        // A trunk last, after forgetting the input port: the switch never sends a packet back
        // out of the port it came in on unless told so, and a trunk's members (but the
        // sender, whom its macvlan skips) must get what another member floods.
        let (trunks, veths): (Vec<u32>, Vec<u32>) =
            ports.iter().partition(|p| i.trunks.contains(*p));
        let mut local_out: String = veths.iter().map(|p| format!(",output:{p}")).collect();
        if !trunks.is_empty() {
            local_out.push_str(",load:0->NXM_OF_IN_PORT[]");
            for t in &trunks {
                local_out.push_str(&format!(",output:{t}"));
            }
        }
        let router = i.routers.get(&nid);
        // The router hears what local pods flood (so the kernel answers neighbour discovery
        // for the IPv6 gateway), never what arrives from a tunnel: another host's router
        // answers for that host's pods.
        let from_pods_local = match router {
            Some(r) => format!("{local_out},output:{}", r.ofport),
            None => local_out.clone(),
        };
        let mut to_peers = String::new();
        if vxlan && !hosts.is_empty() {
            to_peers = format!(",set_field:{nid}->tun_id");
            for h in &hosts {
                to_peers.push_str(&format!(",output:{}", i.tunnels[*h]));
            }
        }
        let mut f = vec![
            // Broadcast, multicast and unknown unicast from a pod: every member here and, once
            // per host, every host with members (head-end replication).
            Flow::new(
                table::L2,
                50,
                format!("reg0={FROM_ENDPOINT},metadata={nid:#x}"),
                format!("{}{}", &from_pods_local[1..], to_peers),
            ),
            // From a tunnel: members here only (never back into the overlay: no loops).
            Flow::new(
                table::L2,
                50,
                format!("reg0={FROM_TUNNEL},metadata={nid:#x}"),
                local_out[1..].to_string(),
            ),
        ];
        if let Some(r) = router {
            f.extend(router_flows(nid, r, &local_out[1..]));
            if vxlan {
                let peers: Vec<(&str, u32)> = hosts
                    .iter()
                    .filter_map(|h| Some((i.vteps.get(*h)?.as_str(), *i.tunnels.get(*h)?)))
                    .collect();
                f.extend(return_flows(nid, r, &peers));
            }
        }
        // Delivery to a trunk's member may be a hairpin (sender and receiver share it).
        for t in &trunks {
            f.push(Flow::new(
                table::OUTPUT,
                10,
                format!("reg2={t}"),
                format!("load:0->NXM_OF_IN_PORT[],output:{t}"),
            ));
        }
        if vxlan {
            f.push(Flow::new(
                table::TUNNEL,
                100,
                format!("tun_id={nid}"),
                format!(
                    "set_field:{nid:#x}->metadata,set_field:{FROM_TUNNEL}->reg0,set_field:{zone}->reg4,resubmit(,{})",
                    table::ARP
                ),
            ));
        }
        out.insert(c, f.into_iter().map(|x| x.cookie(c)).collect());
    }
    out
}

/// A network's router port: trusted to send from any address (it routes the outside and the
/// host into the network), classified like a local endpoint without a group (so `to-ip`/`out`
/// and `from-ip`/`in` rules with addresses judge outside traffic); the switch answers pods' ARP
/// requests for the gateway with the router MAC (whatever the ARP mode); unicast to the router
/// MAC from a local pod goes to it; what it floods reaches this host's members only
/// (`local_out`), never a tunnel.
fn router_flows(nid: u64, r: &RouterPort, local_out: &str) -> Vec<Flow> {
    let port = r.ofport;
    let mut f = vec![
        Flow::new(
            table::CLASSIFY,
            200,
            format!("in_port={port}"),
            format!(
                "set_field:{nid:#x}->metadata,set_field:{FROM_ENDPOINT}->reg0,set_field:0->reg1,set_field:{}->reg4,resubmit(,{})",
                r.zone,
                table::ARP
            ),
        ),
        Flow::new(
            table::L2,
            100,
            format!("reg0={FROM_ENDPOINT},metadata={nid:#x},dl_dst={ROUTER_MAC}"),
            format!(
                "set_field:{port}->reg2,set_field:1->reg5,set_field:0->reg3,resubmit(,{})",
                table::POLICY
            ),
        ),
        // Above the pods' flood (50), which would also send it into the tunnels.
        Flow::new(
            table::L2,
            60,
            format!("in_port={port},metadata={nid:#x}"),
            if local_out.is_empty() {
                "drop".to_string()
            } else {
                local_out.to_string()
            },
        ),
    ];
    if !r.gateway.is_empty() {
        f.push(arp_reply(nid, &r.gateway, ROUTER_MAC));
    }
    f
}

/// What comes into a network through another host's tenant router (a NodePort, the host
/// reaching a pod elsewhere) is source-NATed there to that host's node address; the pod's
/// replies go to its gateway, the router MAC, which on its own host would be its own host's
/// router, one that never saw the connection. So unicast to the router MAC for a peer's node
/// address goes into the tunnel to that peer (`peers`: (VTEP address, tunnel port) of each
/// host with members of the network), and what a tunnel brings for the router MAC goes to the
/// router port here, whose conntrack undoes the NAT (docs/decisions.md "North-south: in from
/// the outside"). A pod's own traffic to another node's address takes the same way, through
/// that node's router, symmetric both ways.
fn return_flows(nid: u64, r: &RouterPort, peers: &[(&str, u32)]) -> Vec<Flow> {
    let mut f = vec![Flow::new(
        table::L2,
        100,
        format!("reg0={FROM_TUNNEL},metadata={nid:#x},dl_dst={ROUTER_MAC}"),
        format!(
            "set_field:{}->reg2,set_field:1->reg5,set_field:0->reg3,resubmit(,{})",
            r.ofport,
            table::POLICY
        ),
    )];
    for (vtep, tunnel) in peers {
        if vtep.parse::<std::net::Ipv4Addr>().is_err() {
            continue;
        }
        f.push(Flow::new(
            table::L2,
            110,
            format!("reg0={FROM_ENDPOINT},metadata={nid:#x},ip,dl_dst={ROUTER_MAC},nw_dst={vtep}"),
            format!(
                "set_field:{nid}->tun_id,set_field:{tunnel}->reg2,set_field:0->reg3,resubmit(,{})",
                table::POLICY
            ),
        ));
    }
    f
}

/// Table-miss flows: nothing is forwarded unless a flow says so. With `policies`, unicast IP
/// goes through conntrack and the rule tables; without, straight out (no conntrack cost).
pub fn base_flows(policies: bool) -> Vec<Flow> {
    let mut f = vec![
        Flow::new(table::CLASSIFY, 0, "", "drop"),
        Flow::new(table::TUNNEL, 0, "", "drop"),
        Flow::new(table::ARP, 0, "", format!("resubmit(,{})", table::L2)),
        Flow::new(table::L2, 0, "", "drop"),
        Flow::new(
            table::POLICY,
            0,
            "",
            format!("resubmit(,{})", table::OUTPUT),
        ),
        Flow::new(table::OUTPUT, 0, "", "output:NXM_NX_REG2[]"),
    ];
    if policies {
        // Router and neighbour discovery (ICMPv6 133-136) pass unjudged, as ARP does: a working
        // IPv6 stack needs them, and conntrack would call them invalid (it tracks no ND).
        // Table 0 has already checked that the sender claims only its own addresses.
        f.extend((133..=136).map(|t| {
            Flow::new(
                table::POLICY,
                20,
                format!("icmp6,icmpv6_type={t}"),
                format!("resubmit(,{})", table::OUTPUT),
            )
        }));
        for family in ["ip", "ipv6"] {
            f.extend([
                Flow::new(
                    table::POLICY,
                    10,
                    family,
                    format!("ct(table={},zone=NXM_NX_REG4[0..15])", table::CT_STATE),
                ),
                // Conntrack needs an IP match; only IP comes here, by the POLICY flows.
                Flow::new(
                    table::COMMIT,
                    10,
                    family,
                    format!(
                        "ct(commit,zone=NXM_NX_REG4[0..15]),resubmit(,{})",
                        table::OUTPUT
                    ),
                ),
            ]);
        }
        f.extend([
            Flow::new(
                table::CT_STATE,
                100,
                "ct_state=+trk+est",
                format!("resubmit(,{})", table::OUTPUT),
            ),
            Flow::new(
                table::CT_STATE,
                100,
                "ct_state=+trk+rel",
                format!("resubmit(,{})", table::OUTPUT),
            ),
            Flow::new(
                table::CT_STATE,
                50,
                "ct_state=+trk+new",
                format!("resubmit(,{})", table::EGRESS),
            ),
            Flow::new(table::CT_STATE, 0, "", "drop"),
            Flow::new(
                table::EGRESS,
                0,
                "",
                format!("resubmit(,{})", table::NP_EGRESS),
            ),
            Flow::new(
                table::NP_EGRESS,
                0,
                "",
                format!("resubmit(,{})", table::INGRESS),
            ),
            Flow::new(
                table::INGRESS,
                0,
                "",
                format!("resubmit(,{})", table::NP_INGRESS),
            ),
            Flow::new(
                table::NP_INGRESS,
                0,
                "",
                format!("resubmit(,{})", table::COMMIT),
            ),
        ]);
    }
    f.into_iter().map(|x| x.cookie(cookie::BASE)).collect()
}

/// The IPv6 link-local address the kernel gives an interface with `mac` (EUI-64, the default
/// `addr_gen_mode` of a new network namespace); None for a malformed MAC.
pub fn link_local(mac: &str) -> Option<std::net::Ipv6Addr> {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let [a, b1, c, d, e, g] = <[u8; 6]>::try_from(b).ok()?;
    Some(std::net::Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 2,
        b1,
        c,
        0xff,
        0xfe,
        d,
        e,
        g,
    ]))
}

/// ND messages a pod never sends with its own identity either: router advertisements and
/// redirects (a pod is no router), and neighbour solicitations and advertisements that did not
/// match the endpoint's own allowances above them.
const ND_GUARDED: [u8; 4] = [134, 135, 136, 137];

/// A local endpoint: what its port may send (its own MAC and addresses: no spoofing of another
/// pod), tagged with its network; delivery to it; and ARP answers for it. What the pod sends
/// under another identity meets the endpoint's drop flows in table 0, whose packet counts are
/// its spoofing counter ([`is_spoof_drop`]).
pub fn local_flows(c: u64, ofport: u32, ep: &Endpoint, arp_proxy: bool) -> Vec<Flow> {
    let nid = network_id(ep);
    let to_pipeline = format!(
        "set_field:{nid:#x}->metadata,set_field:{FROM_ENDPOINT}->reg0,set_field:{}->reg1,set_field:{}->reg4,resubmit(,{})",
        ep.group_id,
        zone(ep),
        table::ARP
    );
    let mac = &ep.mac_address;
    let p = format!("in_port={ofport},dl_src={mac}");
    let allow = |prio: u16, m: String| Flow::new(table::CLASSIFY, prio, m, &to_pipeline);
    let mut f = vec![
        allow(200, format!("{p},ip,nw_src={}", ep.ip_address)),
        allow(
            200,
            format!("{p},arp,arp_spa={},arp_sha={mac}", ep.ip_address),
        ),
        // DHCP discovery has no source address yet.
        allow(190, format!("{p},udp,nw_src=0.0.0.0,tp_src=68,tp_dst=67")),
        // Duplicate address detection and its MLD reports come from the unspecified address;
        // a DAD solicitation carries no link-layer address option.
        allow(190, format!("{p},ipv6,ipv6_src=::")),
        allow(
            210,
            format!("{p},icmp6,ipv6_src=::,icmpv6_type=135,nd_sll=00:00:00:00:00:00"),
        ),
    ];
    // IPv6: the pod's link-local address and its assigned one, nothing else of fe80::/10.
    let own6: Vec<String> = link_local(mac)
        .map(|a| a.to_string())
        .into_iter()
        .chain((!ep.ipv6_address.is_empty()).then(|| ep.ipv6_address.clone()))
        .collect();
    let none = "00:00:00:00:00:00";
    for src in &own6 {
        f.push(allow(200, format!("{p},ipv6,ipv6_src={src}")));
        // ND options name the pod's MAC (or are absent); an advertisement names only the
        // pod's own addresses, so no neighbour's cache learns another pod's address for it.
        for sll in [mac.as_str(), none] {
            f.push(allow(
                210,
                format!("{p},icmp6,ipv6_src={src},icmpv6_type=135,nd_sll={sll}"),
            ));
        }
        for target in &own6 {
            for tll in [mac.as_str(), none] {
                f.push(allow(
                    210,
                    format!(
                        "{p},icmp6,ipv6_src={src},icmpv6_type=136,nd_target={target},nd_tll={tll}"
                    ),
                ));
            }
        }
    }
    for t in ND_GUARDED {
        f.push(Flow::new(
            table::CLASSIFY,
            205,
            format!("{p},icmp6,icmpv6_type={t}"),
            "drop",
        ));
    }
    f.extend([
        Flow::new(table::CLASSIFY, 100, format!("in_port={ofport}"), "drop"),
        Flow::new(
            table::L2,
            100,
            format!("metadata={nid:#x},dl_dst={mac}"),
            format!(
                "set_field:{ofport}->reg2,set_field:1->reg5,set_field:{}->reg3,resubmit(,{})",
                ep.group_id,
                table::POLICY
            ),
        ),
    ]);
    if arp_proxy {
        f.push(arp_responder(nid, ep));
    }
    f.into_iter().map(|x| x.cookie(c)).collect()
}

/// Whether a flow of an endpoint's cookie is one of its anti-spoofing drops (what its packet
/// count adds to the endpoint's counter of frames sent under another identity).
pub fn is_spoof_drop(f: &Flow) -> bool {
    f.table == table::CLASSIFY && f.actions == "drop"
}

/// Applies a profile to an endpoint's flows: the meter of its direction on what it sends
/// (classification) and on what it receives (delivery), and the DSCP mark on its IP packets.
fn apply_profile(flows: &mut [Flow], endpoint_id: &str, p: &Profile) {
    let (from_pod, to_pod) = meter_ids(endpoint_id, p);
    for f in flows.iter_mut() {
        if f.actions == "drop" {
            continue;
        }
        let from = f.table == table::CLASSIFY;
        let to = f.table == table::L2;
        if !(from || to) {
            continue;
        }
        let mut pre = String::new();
        if p.bps > 0 {
            pre.push_str(&format!("meter:{},", if from { from_pod } else { to_pod }));
        }
        if from && p.dscp > 0 && (f.matches.contains(",ip,") || f.matches.contains(",ipv6,")) {
            pre.push_str(&format!("set_field:{}->ip_dscp,", p.dscp));
        }
        f.actions = format!("{pre}{}", f.actions);
    }
}

/// An endpoint on another host: unicast to it goes into the tunnel to its host, with the VNI.
pub fn remote_flows(c: u64, tunnel_port: u32, ep: &Endpoint, arp_proxy: bool) -> Vec<Flow> {
    let nid = network_id(ep);
    let mut f = vec![
        Flow::new(
            table::L2,
            100,
            format!(
                "reg0={FROM_ENDPOINT},metadata={nid:#x},dl_dst={}",
                ep.mac_address
            ),
            format!(
                "set_field:{nid}->tun_id,set_field:{tunnel_port}->reg2,set_field:{}->reg3,resubmit(,{})",
                ep.group_id,
                table::POLICY
            ),
        ),
        // What it sends arrives with its group, for the `in` rules here.
        Flow::new(
            table::TUNNEL,
            110,
            format!("tun_id={nid},dl_src={}", ep.mac_address),
            format!(
                "set_field:{nid:#x}->metadata,set_field:{FROM_TUNNEL}->reg0,set_field:{}->reg1,set_field:{}->reg4,resubmit(,{})",
                ep.group_id,
                zone(ep),
                table::ARP
            ),
        ),
    ];
    if arp_proxy {
        f.push(arp_responder(nid, ep));
    }
    f.into_iter().map(|x| x.cookie(c)).collect()
}

/// Answers a local pod's ARP request for `ep`'s address with `ep`'s MAC, out of the port it came
/// in on: the request never leaves the host.
fn arp_responder(nid: u64, ep: &Endpoint) -> Flow {
    arp_reply(nid, &ep.ip_address, &ep.mac_address)
}

/// Turns a local pod's ARP request for `ip` in network `nid` into the reply from `mac`.
fn arp_reply(nid: u64, ip: &str, mac: &str) -> Flow {
    Flow::new(
        table::ARP,
        100,
        format!(
            "reg0={FROM_ENDPOINT},metadata={nid:#x},arp,arp_op=1,arp_tpa={}",
            ip
        ),
        format!(
            "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{mac}->eth_src,\
             set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],\
             move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{mac}->arp_sha,\
             set_field:{ip}->arp_spa,IN_PORT"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, host: &str, ip: &str, vni: u32) -> Endpoint {
        Endpoint {
            endpoint_id: id.into(),
            host: host.into(),
            ip_address: ip.into(),
            mac_address: format!(
                "02:02:0a:01:02:{:02x}",
                ip.rsplit('.').next().unwrap().parse::<u8>().unwrap()
            ),
            encap: "vxlan".into(),
            pkt_tag: 1,
            ext_pkt_tag: vni,
            ..Default::default()
        }
    }

    fn inputs() -> Inputs {
        let mut i = Inputs {
            arp_proxy: true,
            ..Default::default()
        };
        i.local
            .insert("a".into(), (5, ep("a", "h1", "10.1.2.2", 7)));
        i.local
            .insert("b".into(), (6, ep("b", "h1", "10.1.2.3", 7)));
        i.remote.insert("c".into(), ep("c", "h2", "10.1.2.4", 7));
        // A network with no local member: no flows for it here.
        i.remote.insert("d".into(), ep("d", "h2", "10.9.0.2", 8));
        i.tunnels.insert("h2".into(), 9);
        i
    }

    #[test]
    fn flood_reaches_local_members_and_peers_with_members() {
        let d = desired(&inputs());
        let net = &d[&cookie::network(7)];
        let from_pod = net
            .iter()
            .find(|f| f.matches == "reg0=1,metadata=0x7")
            .unwrap();
        assert_eq!(
            from_pod.actions,
            "output:5,output:6,set_field:7->tun_id,output:9"
        );
        let from_tunnel = net
            .iter()
            .find(|f| f.matches == "reg0=2,metadata=0x7")
            .unwrap();
        assert_eq!(from_tunnel.actions, "output:5,output:6");
        assert!(!d.contains_key(&cookie::network(8)));
        assert!(!d.contains_key(&cookie::remote("d")));
        let c = &d[&cookie::remote("c")];
        assert!(c.iter().any(|f| {
            f.actions
                .starts_with("set_field:7->tun_id,set_field:9->reg2,")
        }));
        assert!(d.values().flatten().all(|f| f.cookie != 0));
    }

    #[test]
    fn trunk_mates_share_a_port_and_get_each_others_traffic() {
        let mut i = inputs();
        // a and a2 share trunk 5; b keeps veth port 6.
        i.local
            .insert("a2".into(), (5, ep("a2", "h1", "10.1.2.5", 7)));
        i.trunks.insert(5);
        let d = desired(&i);
        let net = &d[&cookie::network(7)];
        let flood = |m: &str| net.iter().find(|f| f.matches == m).unwrap().actions.clone();
        // Veth ports first, then the trunk with the input port forgotten (so that the sender's
        // trunk-mates get it; the sender's macvlan skips the sender), then the peers.
        assert_eq!(
            flood("reg0=1,metadata=0x7"),
            "output:6,load:0->NXM_OF_IN_PORT[],output:5,set_field:7->tun_id,output:9"
        );
        assert_eq!(
            flood("reg0=2,metadata=0x7"),
            "output:6,load:0->NXM_OF_IN_PORT[],output:5"
        );
        // Delivery to a trunk's member may go back out of the port it came in on.
        assert!(net.iter().any(|f| f.table == table::OUTPUT
            && f.matches == "reg2=5"
            && f.actions == "load:0->NXM_OF_IN_PORT[],output:5"));
        // No endpoint owns a catch-all drop for the shared port (the table-miss drops).
        for id in ["a", "a2"] {
            let own = &d[&cookie::endpoint(id)];
            assert!(own.iter().all(|f| f.matches != "in_port=5"), "{own:?}");
            assert!(
                own.iter()
                    .any(|f| f.matches.starts_with("in_port=5,dl_src="))
            );
        }
        assert!(
            d[&cookie::endpoint("b")]
                .iter()
                .any(|f| f.matches == "in_port=6" && f.actions == "drop")
        );
    }

    #[test]
    fn a_remote_endpoint_waits_for_its_tunnel_and_arp_mode_is_honoured() {
        let mut i = inputs();
        i.tunnels.clear();
        i.arp_proxy = false;
        let d = desired(&i);
        assert!(!d.contains_key(&cookie::remote("c")));
        assert!(
            d.values()
                .flatten()
                .all(|f| f.table != table::ARP || f.priority == 0)
        );
        let net = &d[&cookie::network(7)];
        assert!(net.iter().all(|f| !f.actions.contains("tun_id")));
    }

    #[test]
    fn a_profile_meters_both_directions_and_marks_dscp() {
        let mut i = inputs();
        i.local.get_mut("a").unwrap().1.group_name = "web".into();
        i.local.get_mut("a").unwrap().1.tenant_name = "default".into();
        let p = Profile {
            bps: 10_000_000,
            burst_kbytes: 0,
            dscp: 46,
        };
        i.profiles.insert("default:web".into(), p.clone());
        let (from_pod, to_pod) = meter_ids("a", &p);
        let faster = Profile {
            bps: 20_000_000,
            ..p.clone()
        };
        assert_ne!(meter_ids("a", &faster).0, from_pod);
        let m = desired_meters(&i);
        assert_eq!(m.get(&from_pod), Some(&(10_000, 2_000)));
        assert_eq!(m.get(&to_pod), Some(&(10_000, 2_000)));
        let f = &desired(&i)[&cookie::endpoint("a")];
        let ip = f
            .iter()
            .find(|x| x.table == table::CLASSIFY && x.matches.ends_with(",ip,nw_src=10.1.2.2"))
            .unwrap();
        assert!(
            ip.actions
                .starts_with(&format!("meter:{from_pod},set_field:46->ip_dscp,")),
            "{}",
            ip.actions
        );
        let deliver = f.iter().find(|x| x.table == table::L2).unwrap();
        assert!(deliver.actions.starts_with(&format!("meter:{to_pod},")));
        // The other endpoint has no profile.
        assert!(
            desired(&i)[&cookie::endpoint("b")]
                .iter()
                .all(|x| !x.actions.contains("meter"))
        );
    }

    #[test]
    fn a_pod_sends_only_with_its_own_identity() {
        let mut e = ep("a", "h1", "10.1.2.2", 7);
        e.ipv6_address = "fd00::2".into();
        let f = local_flows(1, 5, &e, false);
        let ll = "fe80::2:aff:fe01:202";
        assert_eq!(link_local(&e.mac_address).unwrap().to_string(), ll);
        let admits = |m: &str| {
            f.iter()
                .any(|x| x.matches == m && x.actions.ends_with("resubmit(,10)"))
        };
        let p = "in_port=5,dl_src=02:02:0a:01:02:02";
        assert!(admits(&format!("{p},ipv6,ipv6_src={ll}")));
        assert!(admits(&format!("{p},ipv6,ipv6_src=fd00::2")));
        // Only its own link-local address, not all of fe80::/10.
        assert!(f.iter().all(|x| !x.matches.contains("fe80::/10")));
        // An advertisement names the pod's own addresses and MAC only.
        assert!(admits(&format!(
            "{p},icmp6,ipv6_src={ll},icmpv6_type=136,nd_target=fd00::2,nd_tll=02:02:0a:01:02:02"
        )));
        assert!(admits(&format!(
            "{p},icmp6,ipv6_src=fd00::2,icmpv6_type=135,nd_sll=02:02:0a:01:02:02"
        )));
        assert!(admits(&format!(
            "{p},icmp6,ipv6_src=::,icmpv6_type=135,nd_sll=00:00:00:00:00:00"
        )));
        // Any other ND, and router advertisements, meet a drop above the address allowances.
        for t in [134, 135, 136, 137] {
            let drop = f
                .iter()
                .find(|x| x.matches == format!("{p},icmp6,icmpv6_type={t}"))
                .unwrap();
            assert_eq!((drop.priority, drop.actions.as_str()), (205, "drop"));
            assert!(is_spoof_drop(drop));
            assert!(f.iter().all(|x| x.actions == "drop"
                || x.table != table::CLASSIFY
                || !x.matches.contains(&format!("icmpv6_type={t}"))
                || x.priority > 205));
        }
        let spoof: Vec<&Flow> = f.iter().filter(|x| is_spoof_drop(x)).collect();
        assert_eq!(spoof.len(), 5, "four ND guards and the port's catch-all");
        assert!(
            spoof
                .iter()
                .any(|x| x.matches == "in_port=5" && x.priority == 100)
        );
    }

    #[test]
    fn policies_judge_ipv6_too_but_let_neighbour_discovery_pass() {
        let f = base_flows(true);
        for family in ["ip", "ipv6"] {
            assert!(f.iter().any(|x| x.table == table::POLICY
                && x.matches == family
                && x.actions.starts_with("ct(table=21")));
            assert!(f.iter().any(|x| x.table == table::COMMIT
                && x.matches == family
                && x.actions.starts_with("ct(commit")));
        }
        for t in 133..=136 {
            let nd = f
                .iter()
                .find(|x| x.matches == format!("icmp6,icmpv6_type={t}"))
                .unwrap();
            assert_eq!(
                (nd.table, nd.actions.as_str()),
                (table::POLICY, "resubmit(,50)")
            );
        }
        // Echo and every other ICMPv6 goes through conntrack and the rules.
        assert!(f.iter().all(|x| !x.matches.contains("icmpv6_type=128")));
    }

    #[test]
    fn the_router_port_is_the_gateway_of_its_network_on_this_host() {
        for arp_proxy in [true, false] {
            let mut i = inputs();
            i.arp_proxy = arp_proxy;
            i.routers.insert(
                7,
                RouterPort {
                    ofport: 40000,
                    gateway: "10.1.2.1".into(),
                    zone: 1,
                },
            );
            let d = desired(&i);
            let net = &d[&cookie::network(7)];
            let find = |t: u8, m: &str| {
                net.iter()
                    .find(|f| f.table == t && f.matches == m)
                    .unwrap_or_else(|| panic!("no flow {t} {m}: {net:?}"))
                    .actions
                    .clone()
            };
            // Trusted for any source: no address or MAC in its classification, no group.
            assert_eq!(
                find(table::CLASSIFY, "in_port=40000"),
                "set_field:0x7->metadata,set_field:1->reg0,set_field:0->reg1,set_field:1->reg4,resubmit(,10)"
            );
            // Pods' ARP for the gateway is answered with the router MAC in both ARP modes.
            let arp = find(
                table::ARP,
                "reg0=1,metadata=0x7,arp,arp_op=1,arp_tpa=10.1.2.1",
            );
            assert!(
                arp.contains(&format!("set_field:{ROUTER_MAC}->arp_sha")),
                "{arp}"
            );
            assert!(arp.ends_with("IN_PORT"));
            // Unicast to the router MAC from this host goes to the router port, judged with
            // no group on the router's side.
            assert_eq!(
                find(
                    table::L2,
                    &format!("reg0=1,metadata=0x7,dl_dst={ROUTER_MAC}")
                ),
                "set_field:40000->reg2,set_field:1->reg5,set_field:0->reg3,resubmit(,20)"
            );
            // Pods' floods reach the router; tunnels' floods never do; the router's own floods
            // stay on this host.
            assert_eq!(
                find(table::L2, "reg0=1,metadata=0x7"),
                "output:5,output:6,output:40000,set_field:7->tun_id,output:9"
            );
            assert_eq!(find(table::L2, "reg0=2,metadata=0x7"), "output:5,output:6");
            let own = net
                .iter()
                .find(|f| f.matches == "in_port=40000,metadata=0x7")
                .unwrap();
            assert!(own.priority > 50);
            assert_eq!(own.actions, "output:5,output:6");
        }
        // A network without a router here gets none of it.
        let d = desired(&inputs());
        assert!(
            d.values()
                .flatten()
                .all(|f| !f.matches.contains(ROUTER_MAC) && !f.actions.contains(ROUTER_MAC))
        );
    }

    #[test]
    fn replies_to_a_peer_node_address_go_back_through_its_router() {
        let mut i = inputs();
        i.vteps.insert("h2".into(), "10.250.0.12".into());
        // A peer without members of the network gets no flow of it.
        i.vteps.insert("h3".into(), "10.250.0.13".into());
        i.tunnels.insert("h3".into(), 10);
        let without_router = desired(&i);
        assert!(
            without_router[&cookie::network(7)]
                .iter()
                .all(|f| !f.matches.contains("nw_dst=10.250.0.12")),
            "no router here: nothing was routed in here either"
        );
        i.routers.insert(
            7,
            RouterPort {
                ofport: 40000,
                gateway: "10.1.2.1".into(),
                zone: 1,
            },
        );
        let d = desired(&i);
        let net = &d[&cookie::network(7)];
        let find = |m: &str| net.iter().find(|f| f.table == table::L2 && f.matches == m);
        let back = find(&format!(
            "reg0=1,metadata=0x7,ip,dl_dst={ROUTER_MAC},nw_dst=10.250.0.12"
        ))
        .unwrap_or_else(|| panic!("{net:?}"));
        assert_eq!(
            back.actions,
            "set_field:7->tun_id,set_field:9->reg2,set_field:0->reg3,resubmit(,20)"
        );
        assert!(back.priority > 100, "above the local router's own flow");
        assert!(net.iter().all(|f| !f.matches.contains("10.250.0.13")));
        // What a tunnel brings for the router MAC goes to the router here.
        assert_eq!(
            find(&format!("reg0=2,metadata=0x7,dl_dst={ROUTER_MAC}"))
                .unwrap()
                .actions,
            "set_field:40000->reg2,set_field:1->reg5,set_field:0->reg3,resubmit(,20)"
        );
    }

    #[test]
    fn vlan_and_vxlan_ids_never_collide() {
        let mut v = ep("v", "h1", "10.3.0.2", 0);
        v.encap = "vlan".into();
        v.pkt_tag = 7;
        assert_ne!(network_id(&v), network_id(&ep("x", "h1", "10.1.0.2", 7)));
        assert_eq!(
            cookie::class(cookie::network(network_id(&v))),
            cookie::NETWORK
        );
    }
}
