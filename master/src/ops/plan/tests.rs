//! Unit tests of the planners: a state built by applying planned writes (as a commit does),
//! then a planner's writes, or its refusal (status and message), for the next object.

use super::*;
use crate::keys::{self, StoredObject};
use crate::ops::parse_object;
use axum::http::StatusCode;
use model::agent::{GroupState, NetworkState};
use store::{Compare, Op};

// ------------------------------------------------------------------ helpers

/// An object as `upsert` hands it to a planner: normalized, key set.
fn ready<T: Object>(mut o: T) -> T {
    o.normalize().expect("a valid object");
    o.set_key();
    o
}

/// Applies a plan's writes to the state, as a commit does.
fn apply(s: &mut State, p: &Plan) {
    for (k, v) in &p.applies {
        match v {
            Some(v) => s.apply_put(k, v).expect("planned value applies"),
            None => s.apply_delete(k),
        }
    }
}

/// Plans an object that must change something, and applies the plan.
fn commit<T>(s: &mut State, planner: fn(&State, &T) -> ApiResult<Option<Plan>>, o: &T) -> Plan {
    let p = planner(s, o)
        .expect("the planner accepts the object")
        .expect("the object changes something");
    apply(s, &p);
    p
}

/// Plans a delete that must be allowed, and applies it.
fn delete(s: &mut State, kind: Kind, key: &str) -> Plan {
    let p = plan_delete(s, kind, key).expect("the delete is allowed");
    apply(s, &p);
    p
}

/// Asserts that a planner refuses, with this status and message.
#[track_caller]
fn refused<T>(r: ApiResult<T>, status: StatusCode, message: &str) {
    match r {
        Ok(_) => panic!("the planner accepted what it must refuse with {status}: {message}"),
        Err(e) => assert_eq!((e.status, e.message.as_str()), (status, message)),
    }
}

/// The keys a plan claims (must be absent before its transaction).
fn claims(p: &Plan) -> Vec<String> {
    p.txn
        .compares
        .iter()
        .map(|c| match c {
            Compare::ModRevision(k, 0) => k.clone(),
            other => panic!("unexpected compare {other:?}"),
        })
        .collect()
}

/// The keys a plan deletes (objects and released allocations).
fn deletes(p: &Plan) -> Vec<String> {
    p.txn
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::Delete { key } => Some(key.clone()),
            Op::Put { .. } => None,
        })
        .collect()
}

/// The stored object a plan writes for one object key.
fn stored(p: &Plan, kind: Kind, key: &str) -> StoredObject {
    let k = keys::obj(kind, key);
    let v = p
        .txn
        .ops
        .iter()
        .find_map(|o| match o {
            Op::Put { key, value, .. } if *key == k => Some(value),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the plan does not write {k}"));
    serde_json::from_slice(v).expect("a stored object")
}

fn state_of<T: serde::de::DeserializeOwned>(so: &StoredObject) -> T {
    serde_json::from_value(so.state.clone().expect("the object has a state")).expect("its state")
}

/// Plans a VXLAN network that must be accepted, and applies it.
fn add_network(s: &mut State, tenant: &str, name: &str, subnet: &str, gateway: &str) -> Plan {
    commit(s, plan_network, &network(tenant, name, subnet, gateway))
}

/// A state with the default tenant and global config, as a fresh cluster has.
fn fresh() -> State {
    let mut s = State::new();
    commit(&mut s, plan_tenant, &tenant("default"));
    s
}

fn tenant(name: &str) -> Tenant {
    ready(Tenant {
        tenant_name: name.into(),
        ..Default::default()
    })
}

fn network(tenant: &str, name: &str, subnet: &str, gateway: &str) -> Network {
    ready(Network {
        tenant_name: tenant.into(),
        network_name: name.into(),
        encap: "vxlan".into(),
        subnet: subnet.into(),
        gateway: gateway.into(),
        ..Default::default()
    })
}

fn vlan_network(name: &str, subnet: &str, tag: i64) -> Network {
    ready(Network {
        tenant_name: "default".into(),
        network_name: name.into(),
        encap: "vlan".into(),
        subnet: subnet.into(),
        pkt_tag: tag,
        ..Default::default()
    })
}

fn group(name: &str, net: &str) -> EndpointGroup {
    ready(EndpointGroup {
        tenant_name: "default".into(),
        group_name: name.into(),
        network_name: net.into(),
        ..Default::default()
    })
}

fn policy(name: &str) -> Policy {
    ready(Policy {
        tenant_name: "default".into(),
        policy_name: name.into(),
        ..Default::default()
    })
}

fn rule(policy: &str, id: &str, action: &str, port: i64) -> Rule {
    ready(Rule {
        tenant_name: "default".into(),
        policy_name: policy.into(),
        rule_id: id.into(),
        direction: "in".into(),
        action: action.into(),
        protocol: "tcp".into(),
        port,
        ..Default::default()
    })
}

fn service(name: &str, net: &str, ip: &str) -> ServiceLb {
    ready(ServiceLb {
        tenant_name: "default".into(),
        service_name: name.into(),
        network_name: net.into(),
        ip_address: ip.into(),
        selectors: vec!["app=web".into()],
        ports: vec!["80:8080:TCP".into()],
        ..Default::default()
    })
}

fn bgp(host: &str, neighbor: &str) -> Bgp {
    ready(Bgp {
        hostname: host.into(),
        routerip: "50.1.1.1/24".into(),
        as_: "65002".into(),
        neighbor_as: "500".into(),
        neighbor: neighbor.into(),
        ..Default::default()
    })
}

fn global(change: impl FnOnce(&mut Global)) -> Global {
    let mut g = Global::defaults();
    change(&mut g);
    ready(g)
}

// ------------------------------------------------------------------ tenant

#[test]
fn tenant_unchanged_is_a_noop_and_new_one_is_written() {
    let s = fresh();
    assert!(plan_tenant(&s, &tenant("default")).unwrap().is_none());
    let p = plan_tenant(&s, &tenant("blue")).unwrap().unwrap();
    assert_eq!(
        stored(&p, Kind::Tenant, "blue").config["tenantName"],
        "blue"
    );
    assert!(claims(&p).is_empty());
}

// ------------------------------------------------------------------ network

#[test]
fn network_overlapping_subnet_in_the_same_tenant_is_refused() {
    let mut s = fresh();
    add_network(&mut s, "default", "a", "10.1.0.0/16", "");
    // Inside the other's subnet, and around it.
    for (subnet, shown) in [("10.1.2.0/24", "10.1.2.0/24"), ("10.0.0.0/8", "10.0.0.0/8")] {
        refused(
            plan_network(&s, &network("default", "b", subnet, "")),
            StatusCode::CONFLICT,
            &format!("subnet {shown} overlaps network default:a (10.1.0.0/16)"),
        );
    }
    // A neighbouring subnet is fine.
    assert!(
        plan_network(&s, &network("default", "b", "10.2.0.0/16", ""))
            .unwrap()
            .is_some()
    );
}

#[test]
fn network_same_subnet_in_another_tenant_is_fine_and_gets_the_next_tags() {
    let mut s = fresh();
    commit(&mut s, plan_tenant, &tenant("blue"));
    let first = add_network(&mut s, "default", "a", "10.1.0.0/24", "");
    assert_eq!(
        claims(&first),
        [keys::tag("vxlan", 1), keys::tag("lvlan", 1)]
    );
    let p = add_network(&mut s, "blue", "a", "10.1.0.0/24", "");
    assert_eq!(claims(&p), [keys::tag("vxlan", 2), keys::tag("lvlan", 2)]);
    let st: NetworkState = state_of(&stored(&p, Kind::Network, "blue:a"));
    assert_eq!(
        st,
        NetworkState {
            pkt_tag: 2,
            ext_pkt_tag: 2
        }
    );
    assert_eq!(s.networks.len(), 2);
}

#[test]
fn network_unchanged_is_a_noop() {
    let mut s = fresh();
    let n = network("default", "a", "10.1.0.0/24", "10.1.0.1");
    commit(&mut s, plan_network, &n);
    assert!(plan_network(&s, &n).unwrap().is_none());
}

#[test]
fn network_changed_is_409_naming_the_fields() {
    let mut s = fresh();
    add_network(&mut s, "default", "a", "10.1.0.0/24", "10.1.0.1");
    let changed = network("default", "a", "10.9.0.0/24", "10.9.0.1");
    refused(
        plan_network(&s, &changed),
        StatusCode::CONFLICT,
        "network default:a cannot be changed (gateway, subnet differ); delete it and create it again",
    );
}

#[test]
fn network_gateway_outside_its_subnet_is_400() {
    let body = br#"{"tenantName":"default","networkName":"a","encap":"vxlan",
        "subnet":"10.1.0.0/24","gateway":"10.2.0.1"}"#;
    let e = parse_object::<Network>("default:a", body).unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        e.message,
        "invalid network default:a: gateway '10.2.0.1': must be a host address inside subnet 10.1.0.0/24"
    );
    // The same body with the gateway inside is accepted, key set.
    let ok = br#"{"tenantName":"default","networkName":"a","encap":"vxlan",
        "subnet":"10.1.0.0/24","gateway":"10.1.0.1"}"#;
    assert_eq!(
        parse_object::<Network>("default:a", ok).unwrap().key,
        "default:a"
    );
    // And a body whose key is not the URL's is refused.
    let e = parse_object::<Network>("default:b", ok).unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "the key in the URL, 'default:b', does not match the body's tenantName:networkName 'default:a'"
        )
    );
}

#[test]
fn network_needs_its_tenant_and_a_name_no_group_has() {
    let mut s = fresh();
    refused(
        plan_network(&s, &network("nope", "a", "10.1.0.0/24", "")),
        StatusCode::BAD_REQUEST,
        "tenantName 'nope': tenant does not exist; create it first (netctl tenant create nope)",
    );
    add_network(&mut s, "default", "a", "10.1.0.0/24", "");
    commit(&mut s, plan_group, &group("web", "a"));
    refused(
        plan_network(&s, &network("default", "web", "10.2.0.0/24", "")),
        StatusCode::CONFLICT,
        "networkName 'web': tenant default has an endpoint group of that name; pick another name",
    );
}

#[test]
fn network_vlan_tag_requested_must_be_in_range_and_free() {
    let mut s = fresh();
    let p = commit(&mut s, plan_network, &vlan_network("a", "10.1.0.0/24", 100));
    assert_eq!(claims(&p), [keys::tag("vlan", 100)]);
    refused(
        plan_network(&s, &vlan_network("b", "10.2.0.0/24", 100)),
        StatusCode::CONFLICT,
        "pktTag 100: VLAN 100 is already used by network default:a",
    );
    refused(
        plan_network(&s, &vlan_network("b", "10.2.0.0/24", 5000)),
        StatusCode::BAD_REQUEST,
        "pktTag 5000: outside the global VLAN range 1-4094 (change it with netctl global set -v/--vlan-range)",
    );
    // Without a tag: the lowest free one.
    let p = plan_network(&s, &vlan_network("b", "10.2.0.0/24", 0))
        .unwrap()
        .unwrap();
    assert_eq!(claims(&p), [keys::tag("vlan", 1)]);
}

// ------------------------------------------------------------------ group

#[test]
fn group_gets_the_lowest_free_id() {
    let mut s = fresh();
    add_network(&mut s, "default", "a", "10.1.0.0/24", "");
    for (name, want) in [("g1", 1), ("g2", 2), ("g3", 3)] {
        let p = commit(&mut s, plan_group, &group(name, "a"));
        assert_eq!(claims(&p), [keys::tag("gid", want)]);
        let key = format!("default:{name}");
        let st: GroupState = state_of(&stored(&p, Kind::EndpointGroup, &key));
        assert_eq!(st.group_id, want);
    }
    let del = plan_delete(&s, Kind::EndpointGroup, "default:g2").unwrap();
    assert_eq!(
        deletes(&del),
        [
            keys::tag("gid", 2),
            keys::obj(Kind::EndpointGroup, "default:g2")
        ]
    );
    apply(&mut s, &del);
    let p = commit(&mut s, plan_group, &group("g4", "a"));
    assert_eq!(claims(&p), [keys::tag("gid", 2)]);
}

#[test]
fn group_cfgd_tag_change_keeps_its_id_and_network_change_is_409() {
    let mut s = fresh();
    add_network(&mut s, "default", "a", "10.1.0.0/24", "");
    add_network(&mut s, "default", "b", "10.2.0.0/24", "");
    commit(&mut s, plan_group, &group("g0", "a"));
    let g = group("web", "a");
    commit(&mut s, plan_group, &g);
    assert!(plan_group(&s, &g).unwrap().is_none());

    let mut tagged = g.clone();
    tagged.cfgd_tag = "frontend".into();
    let p = plan_group(&s, &tagged).unwrap().unwrap();
    assert!(claims(&p).is_empty(), "an update allocates nothing");
    let so = stored(&p, Kind::EndpointGroup, "default:web");
    assert_eq!(so.config["cfgdTag"], "frontend");
    assert_eq!(state_of::<GroupState>(&so).group_id, 2);

    refused(
        plan_group(&s, &group("web", "b")),
        StatusCode::CONFLICT,
        "endpoint group default:web: networkName and ipPool cannot be changed; delete the group and create it again",
    );
}

#[test]
fn group_refuses_missing_references_and_taken_pools() {
    let mut s = fresh();
    add_network(&mut s, "default", "a", "10.1.0.0/24", "10.1.0.1");
    refused(
        plan_group(&s, &group("web", "nope")),
        StatusCode::BAD_REQUEST,
        "networkName 'nope': network default:nope does not exist",
    );

    let mut g = group("web", "a");
    g.policies = vec!["p".into()];
    refused(
        plan_group(&s, &g),
        StatusCode::BAD_REQUEST,
        "policies 'p': policy default:p does not exist",
    );

    let mut g = group("web", "a");
    g.ip_pool = "10.1.0.1-10.1.0.9".into();
    refused(
        plan_group(&s, &g),
        StatusCode::CONFLICT,
        "ipPool '10.1.0.1-10.1.0.9': address 10.1.0.1 is already allocated in network default:a",
    );
    g.ip_pool = "10.1.1.1-10.1.1.9".into();
    refused(
        plan_group(&s, &g),
        StatusCode::BAD_REQUEST,
        "ipPool '10.1.1.1-10.1.1.9': outside the allocatable addresses 10.1.0.1-10.1.0.254 of network default:a",
    );
}

// ------------------------------------------------------------------ policy and rule

#[test]
fn rule_unchanged_is_a_noop_and_changed_is_409() {
    let mut s = fresh();
    commit(&mut s, plan_policy, &policy("p"));
    let r = rule("p", "1", "allow", 80);
    commit(&mut s, plan_rule, &r);
    assert!(plan_rule(&s, &r).unwrap().is_none());
    refused(
        plan_rule(&s, &rule("p", "1", "deny", 443)),
        StatusCode::CONFLICT,
        "rule default:p:1 cannot be changed (action, port differ); remove it and add it again (netctl policy rule-rm, rule-add)",
    );
}

#[test]
fn rule_needs_its_policy_and_the_groups_it_names() {
    let mut s = fresh();
    refused(
        plan_rule(&s, &rule("p", "1", "allow", 80)),
        StatusCode::BAD_REQUEST,
        "policyName 'p': policy default:p does not exist",
    );
    commit(&mut s, plan_policy, &policy("p"));
    let mut r = rule("p", "1", "allow", 80);
    r.from_endpoint_group = "db".into();
    refused(
        plan_rule(&s, &r),
        StatusCode::BAD_REQUEST,
        "fromEndpointGroup 'db': endpoint group default:db does not exist",
    );
}

/// Registers a node with this VTEP address, as a registration applies it.
fn add_node(s: &mut State, name: &str, vtep: &str) {
    let n = model::agent::Node {
        hostname: name.into(),
        vtep_ip: vtep.into(),
        version: "test".into(),
    };
    s.apply_put(&keys::node(name), &serde_json::to_vec(&n).unwrap())
        .expect("a node applies");
}

#[test]
fn network_overlapping_the_private_subnet_is_refused_in_any_tenant() {
    let mut s = fresh();
    commit(&mut s, plan_tenant, &tenant("blue"));
    // Inside the private subnet (172.19.0.0/16 by default), and around it.
    for (tenant, subnet) in [("default", "172.19.4.0/24"), ("blue", "172.16.0.0/12")] {
        refused(
            plan_network(&s, &network(tenant, "n", subnet, "")),
            StatusCode::CONFLICT,
            &format!(
                "subnet {subnet}: overlaps the private subnet 172.19.0.0/16 (global pvtSubnet, from which hosts get the addresses that give pods host access); pick another subnet, or move the private subnet before creating networks (netctl global set --private-subnet <another /16>)"
            ),
        );
    }
    // Moved first, the same subnet is fine.
    commit(
        &mut s,
        plan_global,
        &global(|g| g.pvt_subnet = "172.20.0.0/16".into()),
    );
    add_network(&mut s, "default", "n", "172.19.4.0/24", "");
}

#[test]
fn private_subnet_overlapping_a_network_is_refused_naming_it() {
    let mut s = fresh();
    commit(&mut s, plan_tenant, &tenant("blue"));
    add_network(&mut s, "blue", "b", "10.9.3.0/24", "");
    refused(
        plan_global(&s, &global(|g| g.pvt_subnet = "10.9.0.0/16".into())),
        StatusCode::CONFLICT,
        "pvtSubnet '10.9.0.0/16': overlaps the subnet 10.9.3.0/24 of network blue:b; the private subnet must not overlap any network's subnet, and can change only while no network exists",
    );
}

#[test]
fn network_gateway_at_a_nodes_vtep_address_is_refused_naming_the_node() {
    let mut s = fresh();
    add_node(&mut s, "host1", "10.1.2.1");
    add_node(&mut s, "host2", "fd00:1::1");
    refused(
        plan_network(&s, &network("default", "n", "10.1.2.0/24", "10.1.2.1")),
        StatusCode::CONFLICT,
        "gateway '10.1.2.1': it is the VTEP address of node host1; the pods' gateway must not be a host's own address: pick another gateway",
    );
    let mut dual = network("default", "n", "10.1.2.0/24", "10.1.2.254");
    dual.ipv6_subnet = "fd00:1::/64".into();
    dual.ipv6_gateway = "fd00:1::1".into();
    refused(
        plan_network(&s, &ready(dual.clone())),
        StatusCode::CONFLICT,
        "ipv6Gateway 'fd00:1::1': it is the VTEP address of node host2; the pods' gateway must not be a host's own address: pick another ipv6Gateway",
    );
    dual.ipv6_gateway = "fd00:1::fe".into();
    commit(&mut s, plan_network, &ready(dual));
}

#[test]
fn node_vtep_at_a_networks_gateway_is_refused_naming_the_network() {
    let mut s = fresh();
    let mut dual = network("default", "n", "10.1.2.0/24", "10.1.2.1");
    dual.ipv6_subnet = "fd00:1::/64".into();
    dual.ipv6_gateway = "fd00:1::1".into();
    commit(&mut s, plan_network, &ready(dual));
    for vtep in ["10.1.2.1", "fd00:1::1"] {
        refused(
            check_node_vtep(&s, "host1", vtep),
            StatusCode::CONFLICT,
            &format!(
                "vtepIP '{vtep}' of node host1: it is the gateway of network default:n; give the node another VTEP address (netplugin --vtep-ip), or delete the network and create it with another gateway"
            ),
        );
    }
    check_node_vtep(&s, "host1", "10.1.2.2").expect("an endpoint address is not a gateway");
    check_node_vtep(&s, "host1", "192.0.2.1").expect("an address elsewhere");
}

// ------------------------------------------------------------------ global
// ------------------------------------------------------------------ global

#[test]
fn global_fwd_mode_and_pvt_subnet_are_refused_while_networks_exist() {
    let mut s = fresh();
    let routing = global(|g| g.fwd_mode = "routing".into());
    let pvt = global(|g| g.pvt_subnet = "172.20.0.0/16".into());
    assert!(plan_global(&s, &routing).unwrap().is_some());
    assert!(plan_global(&s, &pvt).unwrap().is_some());
    assert!(plan_global(&s, &Global::defaults()).unwrap().is_none());

    add_network(&mut s, "default", "a", "10.1.0.0/24", "");
    refused(
        plan_global(&s, &routing),
        StatusCode::CONFLICT,
        "fwdMode cannot change from bridge to routing while 1 networks exist; delete them first",
    );
    refused(
        plan_global(&s, &pvt),
        StatusCode::CONFLICT,
        "pvtSubnet cannot change while 1 networks exist; delete them first",
    );
    // Other fields may change with networks around.
    let arp = global(|g| g.arp_mode = "flood".into());
    assert!(plan_global(&s, &arp).unwrap().is_some());
}

#[test]
fn global_tag_ranges_must_keep_the_tags_in_use() {
    let mut s = fresh();
    commit(&mut s, plan_network, &vlan_network("a", "10.1.0.0/24", 100));
    refused(
        plan_global(&s, &global(|g| g.vlans = "200-300".into())),
        StatusCode::CONFLICT,
        "vlans '200-300': VLAN 100 is in use by network default:a",
    );
    assert!(
        plan_global(&s, &global(|g| g.vlans = "50-300".into()))
            .unwrap()
            .is_some()
    );
}

#[test]
fn global_cannot_leave_routing_while_bgp_configs_exist() {
    let mut s = fresh();
    commit(
        &mut s,
        plan_global,
        &global(|g| g.fwd_mode = "routing".into()),
    );
    commit(&mut s, plan_bgp, &bgp("h1", "50.1.1.2"));
    refused(
        plan_global(&s, &Global::defaults()),
        StatusCode::CONFLICT,
        "fwdMode cannot leave routing while BGP configs exist (h1); delete them first",
    );
}

// ------------------------------------------------------------------ bgp and service

#[test]
fn bgp_is_refused_in_aci_mode_and_unchanged_is_a_noop() {
    let mut s = fresh();
    let b = bgp("h1", "50.1.1.2");
    let p = commit(&mut s, plan_bgp, &b);
    assert_eq!(stored(&p, Kind::Bgp, "h1").config["neighbor"], "50.1.1.2");
    assert!(plan_bgp(&s, &b).unwrap().is_none());
    assert!(plan_bgp(&s, &bgp("h1", "50.1.1.3")).unwrap().is_some());

    commit(
        &mut s,
        plan_global,
        &global(|g| g.network_infra_type = "aci".into()),
    );
    refused(
        plan_bgp(&s, &b),
        StatusCode::CONFLICT,
        "BGP cannot be configured when the fabric mode is aci (netctl global set --fabric-mode default)",
    );
}

#[test]
fn service_gets_the_lowest_free_address_and_keeps_it_on_update() {
    let mut s = fresh();
    add_network(&mut s, "default", "a", "10.1.0.0/24", "10.1.0.1");
    let svc = service("web", "a", "");
    let p = commit(&mut s, plan_service, &svc);
    assert_eq!(claims(&p), [keys::ip("default:a", "10.1.0.2")]);
    let so = stored(&p, Kind::ServiceLb, "default:web");
    assert_eq!(so.state.unwrap()["serviceVip"], "10.1.0.2");
    assert!(plan_service(&s, &svc).unwrap().is_none());

    let mut more = svc.clone();
    more.selectors.push("tier=front".into());
    let p = plan_service(&s, &more).unwrap().unwrap();
    assert!(claims(&p).is_empty(), "the address stays");
    let so = stored(&p, Kind::ServiceLb, "default:web");
    assert_eq!(so.state.unwrap()["serviceVip"], "10.1.0.2");

    // A second service takes the next address.
    let p = plan_service(&s, &service("db", "a", "")).unwrap().unwrap();
    assert_eq!(claims(&p), [keys::ip("default:a", "10.1.0.3")]);
}

#[test]
fn service_refuses_taken_or_outside_addresses_and_network_changes() {
    let mut s = fresh();
    add_network(&mut s, "default", "a", "10.1.0.0/24", "10.1.0.1");
    add_network(&mut s, "default", "b", "10.2.0.0/24", "");
    refused(
        plan_service(&s, &service("web", "a", "10.1.0.1")),
        StatusCode::CONFLICT,
        "ipAddress '10.1.0.1': already allocated in network default:a",
    );
    refused(
        plan_service(&s, &service("web", "a", "10.3.0.5")),
        StatusCode::BAD_REQUEST,
        "ipAddress '10.3.0.5': outside the allocatable addresses 10.1.0.1-10.1.0.254 of network default:a",
    );
    refused(
        plan_service(&s, &service("web", "nope", "")),
        StatusCode::BAD_REQUEST,
        "networkName 'nope': network default:nope does not exist",
    );

    let p = commit(&mut s, plan_service, &service("web", "a", "10.1.0.9"));
    assert_eq!(claims(&p), [keys::ip("default:a", "10.1.0.9")]);
    refused(
        plan_service(&s, &service("web", "b", "")),
        StatusCode::CONFLICT,
        "service default:web: networkName cannot be changed; delete the service and create it again",
    );
    // Moving the address claims the new one and releases the old.
    let p = plan_service(&s, &service("web", "a", "10.1.0.10"))
        .unwrap()
        .unwrap();
    assert_eq!(claims(&p), [keys::ip("default:a", "10.1.0.10")]);
    assert_eq!(deletes(&p), [keys::ip("default:a", "10.1.0.9")]);
}

// ------------------------------------------------------------------ delete

#[test]
fn tenant_delete_is_refused_naming_what_it_still_has() {
    let mut s = fresh();
    commit(&mut s, plan_tenant, &tenant("blue"));
    for (i, name) in ["n1", "n2", "n3", "n4", "n5", "n6", "n7"]
        .iter()
        .enumerate()
    {
        let subnet = format!("10.{}.0.0/24", i + 1);
        add_network(&mut s, "blue", name, &subnet, "");
    }
    // The default tenant's network is not blue's.
    add_network(&mut s, "default", "n1", "10.1.0.0/24", "");
    refused(
        plan_delete(&s, Kind::Tenant, "blue"),
        StatusCode::CONFLICT,
        "tenant blue is in use by networks blue:n1, blue:n2, blue:n3, blue:n4, blue:n5 and 2 more; delete or detach them first",
    );

    commit(&mut s, plan_tenant, &tenant("red"));
    commit(
        &mut s,
        plan_policy,
        &ready(Policy {
            tenant_name: "red".into(),
            policy_name: "p".into(),
            ..Default::default()
        }),
    );
    refused(
        plan_delete(&s, Kind::Tenant, "red"),
        StatusCode::CONFLICT,
        "tenant red is in use by policies red:p; delete or detach them first",
    );

    commit(&mut s, plan_tenant, &tenant("empty"));
    let p = plan_delete(&s, Kind::Tenant, "empty").unwrap();
    assert_eq!(deletes(&p), [keys::obj(Kind::Tenant, "empty")]);
}

#[test]
fn delete_of_a_missing_object_is_404() {
    let s = fresh();
    refused(
        plan_delete(&s, Kind::Network, "default:x"),
        StatusCode::NOT_FOUND,
        "network default:x not found",
    );
    refused(
        plan_delete(&s, Kind::Global, "other"),
        StatusCode::NOT_FOUND,
        "global other not found",
    );
}

#[test]
fn network_delete_releases_its_tags_once_nothing_uses_it() {
    let mut s = fresh();
    add_network(&mut s, "default", "a", "10.1.0.0/24", "");
    commit(&mut s, plan_network, &vlan_network("v", "10.2.0.0/24", 7));
    commit(&mut s, plan_group, &group("web", "a"));
    commit(&mut s, plan_service, &service("lb", "a", ""));
    refused(
        plan_delete(&s, Kind::Network, "default:a"),
        StatusCode::CONFLICT,
        "network default:a is in use by endpoint groups default:web; delete or detach them first",
    );
    delete(&mut s, Kind::EndpointGroup, "default:web");
    refused(
        plan_delete(&s, Kind::Network, "default:a"),
        StatusCode::CONFLICT,
        "network default:a is in use by services default:lb; delete or detach them first",
    );
    let p = plan_delete(&s, Kind::ServiceLb, "default:lb").unwrap();
    assert_eq!(
        deletes(&p),
        [
            keys::ip("default:a", "10.1.0.1"),
            keys::obj(Kind::ServiceLb, "default:lb")
        ]
    );
    apply(&mut s, &p);

    let p = plan_delete(&s, Kind::Network, "default:a").unwrap();
    assert_eq!(
        deletes(&p),
        [
            keys::tag("vxlan", 1),
            keys::tag("lvlan", 1),
            keys::obj(Kind::Network, "default:a")
        ]
    );
    let p = plan_delete(&s, Kind::Network, "default:v").unwrap();
    assert_eq!(
        deletes(&p),
        [keys::tag("vlan", 7), keys::obj(Kind::Network, "default:v")]
    );
}

#[test]
fn policy_delete_takes_its_rules_and_is_refused_while_a_group_uses_it() {
    let mut s = fresh();
    commit(&mut s, plan_policy, &policy("p"));
    commit(&mut s, plan_policy, &policy("p2"));
    commit(&mut s, plan_rule, &rule("p", "1", "allow", 80));
    commit(&mut s, plan_rule, &rule("p", "2", "deny", 0));
    commit(&mut s, plan_rule, &rule("p2", "1", "allow", 80));
    let p = plan_delete(&s, Kind::Policy, "default:p").unwrap();
    assert_eq!(
        deletes(&p),
        [
            keys::obj(Kind::Rule, "default:p:1"),
            keys::obj(Kind::Rule, "default:p:2"),
            keys::obj(Kind::Policy, "default:p")
        ]
    );

    add_network(&mut s, "default", "a", "10.1.0.0/24", "");
    let mut g = group("web", "a");
    g.policies = vec!["p".into()];
    commit(&mut s, plan_group, &g);
    refused(
        plan_delete(&s, Kind::Policy, "default:p"),
        StatusCode::CONFLICT,
        "policy default:p is in use by endpoint groups default:web; delete or detach them first",
    );
}

#[test]
fn global_delete_puts_the_defaults_back_once_no_network_exists() {
    let mut s = fresh();
    commit(
        &mut s,
        plan_global,
        &global(|g| g.arp_mode = "flood".into()),
    );
    add_network(&mut s, "default", "a", "10.1.0.0/24", "");
    refused(
        plan_delete(&s, Kind::Global, "global"),
        StatusCode::CONFLICT,
        "global global is in use by networks default:a; delete or detach them first",
    );
    delete(&mut s, Kind::Network, "default:a");
    let p = plan_delete(&s, Kind::Global, "global").unwrap();
    assert!(deletes(&p).is_empty(), "the global config is rewritten");
    assert_eq!(
        stored(&p, Kind::Global, "global").config,
        serde_json::to_value(Global::defaults()).unwrap()
    );
    apply(&mut s, &p);
    assert_eq!(s.global.arp_mode, "proxy");
}
