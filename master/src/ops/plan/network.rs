//! The planners that allocate: a network's tags, an endpoint group's id (and its address pool),
//! a service's address.

use super::{changed_fields, need_tenant, same_config, to_json};
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::ops::Plan;
use crate::state::{ServiceState, State, v4};
use ipnet::Ipv4Net;
use model::agent::{GroupState, NetworkState};
use model::net::{SubnetSpec, parse_v4_range, parse_v6_subnet};
use model::*;
use std::net::{IpAddr, Ipv4Addr};

pub(in crate::ops) fn plan_network(s: &State, n: &Network) -> ApiResult<Option<Plan>> {
    let key = n.key();
    if let Some(old) = s.networks.get(&key) {
        if same_config(&old.cfg, n) {
            return Ok(None);
        }
        return Err(ApiError::conflict(format!(
            "network {key} cannot be changed ({} differ); delete it and create it again",
            changed_fields(&old.cfg, n)
        )));
    }
    need_tenant(s, &n.tenant_name)?;
    if s.groups.contains_key(&key) {
        return Err(ApiError::conflict(format!(
            "networkName '{}': tenant {} has an endpoint group of that name; pick another name",
            n.network_name, n.tenant_name
        )));
    }
    let spec = SubnetSpec::parse(&n.subnet).map_err(ApiError::bad_request)?;
    let v6 = (!n.ipv6_subnet.is_empty())
        .then(|| parse_v6_subnet(&n.ipv6_subnet))
        .transpose()
        .map_err(ApiError::bad_request)?;
    for other in s
        .networks
        .values()
        .filter(|o| o.cfg.tenant_name == n.tenant_name)
    {
        let o = &other.spec.net;
        if o.contains(&spec.net.network()) || spec.net.contains(&o.network()) {
            return Err(ApiError::conflict(format!(
                "subnet {} overlaps network {} ({})",
                spec.net,
                other.cfg.key(),
                o
            )));
        }
        if let (Some(a), Some(b)) = (v6, other.v6.as_ref().map(|v| v.net))
            && (a.contains(&b.network()) || b.contains(&a.network()))
        {
            return Err(ApiError::conflict(format!(
                "ipv6Subnet {a} overlaps network {} ({b})",
                other.cfg.key()
            )));
        }
    }
    if let Some(pvt) = private_subnet(s)
        && (pvt.contains(&spec.net.network()) || spec.net.contains(&pvt.network()))
    {
        return Err(ApiError::conflict(format!(
            "subnet {}: overlaps the private subnet {pvt} (global pvtSubnet, from which hosts get the addresses that give pods host access); pick another subnet, or move the private subnet before creating networks (netctl global set --private-subnet <another /16>)",
            spec.net
        )));
    }
    for (field, gw) in [("gateway", &n.gateway), ("ipv6Gateway", &n.ipv6_gateway)] {
        let Ok(ip) = gw.parse::<IpAddr>() else {
            continue;
        };
        if let Some(node) = s
            .nodes
            .values()
            .find(|nd| nd.vtep_ip.parse::<IpAddr>() == Ok(ip))
        {
            return Err(ApiError::conflict(format!(
                "{field} '{gw}': it is the VTEP address of node {}; the pods' gateway must not be a host's own address: pick another {field}",
                node.hostname
            )));
        }
    }
    let mut p = Plan::default();
    let st = if n.encap == "vlan" {
        let (lo, hi) = s.global.vlan_range();
        let tag = pick_tag(
            &s.vlans,
            n.pkt_tag,
            "VLAN",
            &s.global.vlans,
            "-v/--vlan-range",
            |t| owner_network(s, |e| e.cfg.encap == "vlan" && e.st.pkt_tag == t),
        )?;
        let _ = (lo, hi);
        p.claim(keys::tag("vlan", tag), &key);
        NetworkState {
            pkt_tag: tag,
            ext_pkt_tag: 0,
        }
    } else {
        let vni = pick_tag(
            &s.vxlans,
            n.pkt_tag,
            "VXLAN",
            &s.global.vxlans,
            "-x/--vxlan-range",
            |t| owner_network(s, |e| e.cfg.encap == "vxlan" && e.st.ext_pkt_tag == t),
        )?;
        let lvlan = s.local_vlans.lowest_free().ok_or_else(|| {
            ApiError::conflict(
                "no local VLAN available: every one of the 4094 local VLANs is used by a VXLAN network; delete unused networks",
            )
        })? as u32;
        p.claim(keys::tag("vxlan", vni), &key);
        p.claim(keys::tag("lvlan", lvlan), &key);
        NetworkState {
            pkt_tag: lvlan,
            ext_pkt_tag: vni,
        }
    };
    p.put_object(n, Some(to_json(&st)));
    Ok(Some(p))
}

/// The global pvtSubnet, when set (it is a /16 once normalized).
pub(super) fn private_subnet(s: &State) -> Option<Ipv4Net> {
    s.global.pvt_subnet.parse().ok()
}

/// A node's VTEP address must not be a network's gateway (IPv4 or IPv6): the host would answer
/// for the pods' gateway on its own interface, and the gateway every host serves would shadow
/// the node. Checked where a registration writes (a new node, or a new address).
pub(in crate::ops) fn check_node_vtep(s: &State, node: &str, vtep: &str) -> ApiResult<()> {
    let Ok(ip) = vtep.parse::<IpAddr>() else {
        return Ok(());
    };
    let gateway_of = |e: &crate::state::NetEntry| match ip {
        IpAddr::V4(a) => e.gateway == Some(a),
        IpAddr::V6(a) => e.v6.as_ref().is_some_and(|v| v.gateway == Some(a)),
    };
    match s.networks.values().find(|e| gateway_of(e)) {
        Some(e) => Err(ApiError::conflict(format!(
            "vtepIP '{vtep}' of node {node}: it is the gateway of network {}; give the node another VTEP address (netplugin --vtep-ip), or delete the network and create it with another gateway",
            e.cfg.key()
        ))),
        None => Ok(()),
    }
}

fn owner_network(s: &State, f: impl Fn(&crate::state::NetEntry) -> bool) -> String {
    s.networks
        .values()
        .find(|e| f(e))
        .map(|e| e.cfg.key())
        .unwrap_or_default()
}

/// A requested tag must be in range and free; otherwise the lowest free one.
fn pick_tag(
    pool: &crate::alloc::Pool,
    requested: i64,
    what: &str,
    range: &str,
    flag: &str,
    owner: impl Fn(u32) -> String,
) -> ApiResult<u32> {
    if requested != 0 {
        let t = requested as u128;
        if !pool.contains_range(t) {
            return Err(ApiError::bad_request(format!(
                "pktTag {requested}: outside the global {what} range {range} (change it with netctl global set {flag})"
            )));
        }
        if !pool.is_free(t) {
            return Err(ApiError::conflict(format!(
                "pktTag {requested}: {what} {requested} is already used by network {}",
                owner(requested as u32)
            )));
        }
        return Ok(requested as u32);
    }
    pool.lowest_free().map(|t| t as u32).ok_or_else(|| {
        ApiError::conflict(format!(
            "no {what} available: every tag of the global range {range} is in use (widen it with netctl global set {flag})"
        ))
    })
}

pub(in crate::ops) fn plan_group(s: &State, g: &EndpointGroup) -> ApiResult<Option<Plan>> {
    let key = g.key();
    need_tenant(s, &g.tenant_name)?;
    let net_key = format!("{}:{}", g.tenant_name, g.network_name);
    let Some(net) = s.networks.get(&net_key) else {
        return Err(ApiError::bad_request(format!(
            "networkName '{}': network {net_key} does not exist",
            g.network_name
        )));
    };
    for p in &g.policies {
        if !s.policies.contains_key(&format!("{}:{p}", g.tenant_name)) {
            return Err(ApiError::bad_request(format!(
                "policies '{p}': policy {}:{p} does not exist",
                g.tenant_name
            )));
        }
    }
    if !g.net_profile.is_empty()
        && !s
            .netprofiles
            .contains_key(&format!("{}:{}", g.tenant_name, g.net_profile))
    {
        return Err(ApiError::bad_request(format!(
            "netProfile '{}': netprofile {}:{} does not exist",
            g.net_profile, g.tenant_name, g.net_profile
        )));
    }
    for c in &g.ext_contracts_grps {
        if !s
            .ext_contracts
            .contains_key(&format!("{}:{c}", g.tenant_name))
        {
            return Err(ApiError::bad_request(format!(
                "extContractsGrps '{c}': external contracts group {}:{c} does not exist",
                g.tenant_name
            )));
        }
    }
    if let Some(old) = s.groups.get(&key) {
        if old.cfg.network_name != g.network_name || old.cfg.ip_pool != g.ip_pool {
            return Err(ApiError::conflict(format!(
                "endpoint group {key}: networkName and ipPool cannot be changed; delete the group and create it again"
            )));
        }
        if same_config(&old.cfg, g) {
            return Ok(None);
        }
        let mut p = Plan::default();
        p.put_object(g, Some(to_json(&old.st)));
        return Ok(Some(p));
    }
    if s.networks.contains_key(&key) {
        return Err(ApiError::conflict(format!(
            "groupName '{}': tenant {} has a network of that name; pick another name",
            g.group_name, g.tenant_name
        )));
    }
    if !g.ip_pool.is_empty() {
        let (a, b) = parse_v4_range(&g.ip_pool).map_err(ApiError::bad_request)?;
        if v4(a) < v4(net.spec.first) || v4(b) > v4(net.spec.last) {
            return Err(ApiError::bad_request(format!(
                "ipPool '{}': outside the allocatable addresses {}-{} of network {net_key}",
                g.ip_pool, net.spec.first, net.spec.last
            )));
        }
        if !net.v4.is_range_free(v4(a), v4(b)) {
            let taken = (v4(a)..=v4(b))
                .find(|x| !net.v4.is_free(*x))
                .map(|x| Ipv4Addr::from(x as u32).to_string())
                .unwrap_or_default();
            return Err(ApiError::conflict(format!(
                "ipPool '{}': address {taken} is already allocated in network {net_key}",
                g.ip_pool
            )));
        }
    }
    let gid = s.group_ids.lowest_free().ok_or_else(|| {
        ApiError::conflict(format!(
            "no endpoint group id available: all {} are in use",
            crate::state::MAX_GROUP_ID
        ))
    })? as u32;
    let mut p = Plan::default();
    p.claim(keys::tag("gid", gid), &key);
    p.put_object(g, Some(to_json(&GroupState { group_id: gid })));
    Ok(Some(p))
}

pub(in crate::ops) fn plan_service(s: &State, svc: &ServiceLb) -> ApiResult<Option<Plan>> {
    let key = svc.key();
    need_tenant(s, &svc.tenant_name)?;
    let net_key = format!("{}:{}", svc.tenant_name, svc.network_name);
    let Some(net) = s.networks.get(&net_key) else {
        return Err(ApiError::bad_request(format!(
            "networkName '{}': network {net_key} does not exist",
            svc.network_name
        )));
    };
    let old = s.services.get(&key);
    if let Some(o) = old {
        if same_config(&o.cfg, svc) {
            return Ok(None);
        }
        if o.cfg.network_name != svc.network_name {
            return Err(ApiError::conflict(format!(
                "service {key}: networkName cannot be changed; delete the service and create it again"
            )));
        }
    }
    let owner = format!("service:{key}");
    let mut p = Plan::default();
    let vip: Ipv4Addr = match (old, svc.ip_address.is_empty()) {
        (Some(o), true) => o.vip,
        (Some(o), false) if svc.ip_address == o.vip.to_string() => o.vip,
        (_, false) => {
            let a: Ipv4Addr = svc.ip_address.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "ipAddress '{}': not an IPv4 address",
                    svc.ip_address
                ))
            })?;
            if !net.v4.contains_range(v4(a)) {
                return Err(ApiError::bad_request(format!(
                    "ipAddress '{a}': outside the allocatable addresses {}-{} of network {net_key}",
                    net.spec.first, net.spec.last
                )));
            }
            if !net.v4.is_free(v4(a)) {
                return Err(ApiError::conflict(format!(
                    "ipAddress '{a}': already allocated in network {net_key}"
                )));
            }
            p.claim(keys::ip(&net_key, &a.to_string()), &owner);
            if let Some(o) = old {
                p.release(keys::ip(&net_key, &o.vip.to_string()));
            }
            a
        }
        (None, true) => {
            let a = net.v4.lowest_free().ok_or_else(|| {
                ApiError::conflict(format!(
                    "address exhaustion in subnet {} of network {net_key}: no address left for the service",
                    net.spec.net
                ))
            })?;
            let a = Ipv4Addr::from(a as u32);
            p.claim(keys::ip(&net_key, &a.to_string()), &owner);
            a
        }
    };
    p.put_object(
        svc,
        Some(to_json(&ServiceState {
            vip: vip.to_string(),
        })),
    );
    Ok(Some(p))
}
