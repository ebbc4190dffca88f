//! What GET and inspect return: the stored config with Contiv's `links`/`link-sets` derived from
//! the current state, and the oper views computed from the allocation pools.

use crate::alloc::{AsNumber, AsV4, ranges_of, render_ranges};
use crate::state::{GroupEntry, NetEntry, State, v4};
use model::agent::{Endpoint, RuleCounters};
use model::oper::*;
use model::*;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

fn link(kind: &str, key: &str) -> Link {
    Link {
        kind: kind.into(),
        key: key.into(),
    }
}

fn set<'a>(kind: &str, keys: impl IntoIterator<Item = &'a String>) -> LinkSet {
    keys.into_iter()
        .map(|k| (k.clone(), link(kind, k)))
        .collect()
}

fn put_set(sets: &mut LinkSets, name: &str, s: LinkSet) {
    if !s.is_empty() {
        sets.insert(name.into(), s);
    }
}

fn val<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serializable")
}

fn in_tenant<'a, V>(
    m: &'a std::collections::BTreeMap<String, V>,
    t: &'a str,
) -> impl Iterator<Item = &'a String> + 'a {
    m.keys().filter(move |k| k.split(':').next() == Some(t))
}

fn tenant_view(s: &State, t: &Tenant) -> Tenant {
    let mut t = t.clone();
    let name = t.tenant_name.clone();
    let mut ls = LinkSets::new();
    put_set(
        &mut ls,
        "AppProfiles",
        set("appProfile", in_tenant(&s.app_profiles, &name)),
    );
    put_set(
        &mut ls,
        "EndpointGroups",
        set("endpointGroup", in_tenant(&s.groups, &name)),
    );
    put_set(
        &mut ls,
        "NetProfiles",
        set("netprofile", in_tenant(&s.netprofiles, &name)),
    );
    put_set(
        &mut ls,
        "Networks",
        set("network", in_tenant(&s.networks, &name)),
    );
    put_set(
        &mut ls,
        "Policies",
        set("policy", in_tenant(&s.policies, &name)),
    );
    put_set(
        &mut ls,
        "Servicelbs",
        set("serviceLB", in_tenant(&s.services, &name)),
    );
    t.link_sets = ls;
    t
}

fn network_view(s: &State, n: &NetEntry) -> Network {
    let mut c = n.cfg.clone();
    let key = c.key();
    c.links
        .insert("Tenant".into(), link("tenant", &c.tenant_name));
    let groups: Vec<&String> = s
        .groups
        .iter()
        .filter(|(_, g)| format!("{}:{}", g.cfg.tenant_name, g.cfg.network_name) == key)
        .map(|(k, _)| k)
        .collect();
    put_set(
        &mut c.link_sets,
        "EndpointGroups",
        set("endpointGroup", groups),
    );
    let svcs: Vec<&String> = s
        .services
        .iter()
        .filter(|(_, v)| format!("{}:{}", v.cfg.tenant_name, v.cfg.network_name) == key)
        .map(|(k, _)| k)
        .collect();
    put_set(&mut c.link_sets, "Servicelbs", set("serviceLB", svcs));
    c
}

fn group_view(s: &State, g: &GroupEntry) -> EndpointGroup {
    let mut c = g.cfg.clone();
    let t = c.tenant_name.clone();
    c.links.insert("Tenant".into(), link("tenant", &t));
    c.links.insert(
        "Network".into(),
        link("network", &format!("{t}:{}", c.network_name)),
    );
    if !c.net_profile.is_empty() {
        c.links.insert(
            "NetProfile".into(),
            link("netprofile", &format!("{t}:{}", c.net_profile)),
        );
    }
    if let Some((k, _)) = s
        .app_profiles
        .iter()
        .find(|(_, a)| a.tenant_name == t && a.endpoint_groups.contains(&c.group_name))
    {
        c.links.insert("AppProfile".into(), link("appProfile", k));
    }
    let pols: Vec<String> = c.policies.iter().map(|p| format!("{t}:{p}")).collect();
    put_set(&mut c.link_sets, "Policies", set("policy", &pols));
    let ecs: Vec<String> = c
        .ext_contracts_grps
        .iter()
        .map(|p| format!("{t}:{p}"))
        .collect();
    put_set(
        &mut c.link_sets,
        "ExtContractsGrps",
        set("extContractsGroup", &ecs),
    );
    c
}

fn policy_view(s: &State, p: &Policy) -> Policy {
    let mut c = p.clone();
    c.links
        .insert("Tenant".into(), link("tenant", &c.tenant_name));
    let groups: Vec<&String> = s
        .groups
        .iter()
        .filter(|(_, g)| {
            g.cfg.tenant_name == c.tenant_name && g.cfg.policies.contains(&c.policy_name)
        })
        .map(|(k, _)| k)
        .collect();
    put_set(
        &mut c.link_sets,
        "EndpointGroups",
        set("endpointGroup", groups),
    );
    let prefix = format!("{}:", c.key());
    put_set(
        &mut c.link_sets,
        "Rules",
        set("rule", s.rules.keys().filter(|k| k.starts_with(&prefix))),
    );
    c
}

fn netprofile_view(s: &State, n: &Netprofile) -> Netprofile {
    let mut c = n.clone();
    c.links
        .insert("Tenant".into(), link("tenant", &c.tenant_name));
    let groups: Vec<&String> = s
        .groups
        .iter()
        .filter(|(_, g)| g.cfg.tenant_name == c.tenant_name && g.cfg.net_profile == c.profile_name)
        .map(|(k, _)| k)
        .collect();
    put_set(
        &mut c.link_sets,
        "EndpointGroups",
        set("endpointGroup", groups),
    );
    c
}

fn service_view(s: &crate::state::SvcEntry) -> ServiceLb {
    let mut c = s.cfg.clone();
    c.links
        .insert("Tenant".into(), link("tenant", &c.tenant_name));
    c.links.insert(
        "Network".into(),
        link("network", &format!("{}:{}", c.tenant_name, c.network_name)),
    );
    c
}

fn app_profile_view(a: &AppProfile) -> AppProfile {
    let mut c = a.clone();
    c.links
        .insert("Tenant".into(), link("tenant", &c.tenant_name));
    let groups: Vec<String> = c
        .endpoint_groups
        .iter()
        .map(|g| format!("{}:{g}", c.tenant_name))
        .collect();
    put_set(
        &mut c.link_sets,
        "EndpointGroups",
        set("endpointGroup", &groups),
    );
    c
}

/// One object as `GET /api/v1/<coll>/<key>/` returns it.
pub fn object(s: &State, kind: Kind, key: &str) -> Option<Value> {
    Some(match kind {
        Kind::Tenant => val(&tenant_view(s, s.tenants.get(key)?)),
        Kind::Network => val(&network_view(s, s.networks.get(key)?)),
        Kind::EndpointGroup => val(&group_view(s, s.groups.get(key)?)),
        Kind::Policy => val(&policy_view(s, s.policies.get(key)?)),
        Kind::Rule => val(s.rules.get(key)?),
        Kind::Netprofile => val(&netprofile_view(s, s.netprofiles.get(key)?)),
        Kind::Global => (key == "global").then(|| val(&s.global))?,
        Kind::Bgp => val(s.bgps.get(key)?),
        Kind::ServiceLb => val(&service_view(s.services.get(key)?)),
        Kind::AppProfile => val(&app_profile_view(s.app_profiles.get(key)?)),
        Kind::ExtContractsGroup => val(s.ext_contracts.get(key)?),
        Kind::AciGw => (key == "aciGw").then(|| s.aci_gw.as_ref().map(val))??,
    })
}

/// Every object of a collection, sorted by key.
pub fn list(s: &State, kind: Kind) -> Vec<Value> {
    let keys: Vec<String> = match kind {
        Kind::Tenant => s.tenants.keys().cloned().collect(),
        Kind::Network => s.networks.keys().cloned().collect(),
        Kind::EndpointGroup => s.groups.keys().cloned().collect(),
        Kind::Policy => s.policies.keys().cloned().collect(),
        Kind::Rule => s.rules.keys().cloned().collect(),
        Kind::Netprofile => s.netprofiles.keys().cloned().collect(),
        Kind::Global => vec!["global".into()],
        Kind::Bgp => s.bgps.keys().cloned().collect(),
        Kind::ServiceLb => s.services.keys().cloned().collect(),
        Kind::AppProfile => s.app_profiles.keys().cloned().collect(),
        Kind::ExtContractsGroup => s.ext_contracts.keys().cloned().collect(),
        Kind::AciGw => s.aci_gw.iter().map(|_| "aciGw".to_string()).collect(),
    };
    keys.iter().filter_map(|k| object(s, kind, k)).collect()
}

/// Contiv's oper view of an endpoint.
pub fn endpoint_oper(s: &State, ep: &Endpoint) -> EndpointOper {
    let mut ips = vec![ep.ip_address.clone()];
    if !ep.ipv6_address.is_empty() {
        ips.push(ep.ipv6_address.clone());
    }
    EndpointOper {
        key: ep.endpoint_id.clone(),
        container_id: ep.container_id.clone(),
        container_name: ep.container_name.clone(),
        endpoint_group_id: i64::from(ep.group_id),
        endpoint_group_key: if ep.group_name.is_empty() {
            String::new()
        } else {
            format!("{}:{}", ep.group_name, ep.tenant_name)
        },
        endpoint_id: ep.endpoint_id.clone(),
        homing_host: ep.host.clone(),
        intf_name: ep.intf_name.clone(),
        ip_address: ips,
        labels: ep
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        mac_address: ep.mac_address.clone(),
        network: format!("{}.{}", ep.network_name, ep.tenant_name),
        service_name: ep.group_name.clone(),
        virtual_port: String::new(),
        vtep_ip: s
            .nodes
            .get(&ep.host)
            .map(|n| n.vtep_ip.clone())
            .unwrap_or_default(),
        // Only an endpoint's own inspect shows these (`inspect_endpoint`).
        spoofed_packets: None,
        private_ip_address: String::new(),
    }
}

fn endpoints_of<'a>(s: &'a State, ids: impl IntoIterator<Item = &'a String>) -> Vec<EndpointOper> {
    ids.into_iter()
        .filter_map(|id| s.endpoints.get(id))
        .map(|e| endpoint_oper(s, e))
        .collect()
}

pub fn network_oper(s: &State, n: &NetEntry) -> NetworkOper {
    let eps: Vec<&Endpoint> = n
        .endpoints
        .iter()
        .filter_map(|id| s.endpoints.get(id))
        .collect();
    NetworkOper {
        allocated_addresses_count: eps.len() as i64,
        allocated_ip_addresses: render_ranges::<AsV4>(n.v4.used_ranges()),
        available_ip_addresses: render_ranges::<AsV4>(n.v4.free_ranges()),
        endpoints: endpoints_of(s, &n.endpoints),
        external_pkt_tag: i64::from(n.st.ext_pkt_tag),
        network_tag: n.cfg.cfgd_tag.clone(),
        num_endpoints: eps.len() as i64,
        pkt_tag: i64::from(n.st.pkt_tag),
    }
}

pub fn group_oper(s: &State, g: &GroupEntry) -> EndpointGroupOper {
    let net = s
        .networks
        .get(&format!("{}:{}", g.cfg.tenant_name, g.cfg.network_name));
    let (allocated, available) = match &g.pool {
        Some(p) => (
            render_ranges::<AsV4>(p.used_ranges()),
            render_ranges::<AsV4>(p.free_ranges()),
        ),
        None => {
            let mut addrs: Vec<u128> = g
                .endpoints
                .iter()
                .filter_map(|id| s.endpoints.get(id))
                .filter_map(|e| e.ip_address.parse::<Ipv4Addr>().ok())
                .map(v4)
                .collect();
            addrs.sort();
            (render_ranges::<AsV4>(ranges_of(addrs)), String::new())
        }
    };
    EndpointGroupOper {
        allocated_ip_addresses: allocated,
        available_ip_addresses: available,
        endpoints: endpoints_of(s, &g.endpoints),
        external_pkt_tag: net.map(|n| i64::from(n.st.ext_pkt_tag)).unwrap_or(0),
        group_tag: g.cfg.cfgd_tag.clone(),
        group_id: i64::from(g.st.group_id),
        num_endpoints: g
            .endpoints
            .iter()
            .filter(|id| s.endpoints.contains_key(*id))
            .count() as i64,
        pkt_tag: net.map(|n| i64::from(n.st.pkt_tag)).unwrap_or(0),
    }
}

fn policy_oper(s: &State, p: &Policy) -> PolicyOper {
    let ids: Vec<&String> = s
        .groups
        .values()
        .filter(|g| g.cfg.tenant_name == p.tenant_name && g.cfg.policies.contains(&p.policy_name))
        .flat_map(|g| g.endpoints.iter())
        .collect();
    let eps = endpoints_of(s, ids);
    PolicyOper {
        num_endpoints: eps.len() as i64,
        endpoints: eps,
        policy_violations: 0,
        // Filled by the caller that holds the counters (Master::inspect).
        rule_stats: Vec::new(),
    }
}

/// The latest rule counters each node reported: host -> rule key -> counters.
pub type RuleStats = BTreeMap<String, BTreeMap<String, RuleCounters>>;

/// Per rule of policy `tenant:policy` (by priority, then id), what its flows matched on every
/// live node and in total. Reports of nodes that are no longer registered are left out: their
/// switch may be gone, and their counts would never change again.
pub fn rule_stats(s: &State, stats: &RuleStats, policy_key: &str) -> Vec<RuleStatsOper> {
    let prefix = format!("{policy_key}:");
    let mut rules: Vec<(&String, &Rule)> = s
        .rules
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    rules.sort_by(|a, b| (a.1.priority, &a.1.rule_id).cmp(&(b.1.priority, &b.1.rule_id)));
    rules
        .into_iter()
        .map(|(key, r)| {
            let mut o = RuleStatsOper {
                rule_id: r.rule_id.clone(),
                ..Default::default()
            };
            for (host, counts) in stats {
                if !s.nodes.contains_key(host) {
                    continue;
                }
                if let Some(c) = counts.get(key) {
                    // The counts come from the agents' reports: a sum past u64 stays at the
                    // maximum instead of panicking (debug) or wrapping (release).
                    o.packets = o.packets.saturating_add(c.packets);
                    o.bytes = o.bytes.saturating_add(c.bytes);
                    o.hosts.insert(host.clone(), *c);
                }
            }
            o
        })
        .collect()
}

fn service_oper(s: &State, svc: &crate::state::SvcEntry) -> ServiceLbOper {
    let sel: Vec<(&str, &str)> = svc
        .cfg
        .selectors
        .iter()
        .filter_map(|x| x.split_once('='))
        .collect();
    let providers: Vec<EndpointOper> = s
        .endpoints
        .values()
        .filter(|e| e.tenant_name == svc.cfg.tenant_name && e.network_name == svc.cfg.network_name)
        .filter(|e| {
            sel.iter()
                .all(|(k, v)| e.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|e| endpoint_oper(s, e))
        .collect();
    ServiceLbOper {
        num_providers: providers.len() as i64,
        providers,
        service_vip: svc.vip.to_string(),
    }
}

pub fn global_oper(s: &State) -> GlobalOper {
    let mut vl: Vec<u128> = Vec::new();
    let mut vx: Vec<u128> = Vec::new();
    for n in s.networks.values() {
        if n.cfg.encap == "vlan" {
            vl.push(u128::from(n.st.pkt_tag));
        } else {
            vx.push(u128::from(n.st.ext_pkt_tag));
        }
    }
    vl.sort();
    vx.sort();
    GlobalOper {
        cluster_mode: "kubernetes".into(),
        default_network: String::new(),
        free_vxlans_start: i64::from(s.global.vxlan_range().0),
        num_networks: s.networks.len() as i64,
        vlans_in_use: render_ranges::<AsNumber>(ranges_of(vl)),
        vxlans_in_use: render_ranges::<AsNumber>(ranges_of(vx)),
    }
}

/// `GET /api/v1/inspect/<coll>/<key>/`.
pub fn inspect(s: &State, kind: Kind, key: &str) -> Option<Value> {
    let config = object(s, kind, key)?;
    let oper = match kind {
        Kind::Tenant => {
            let t = key;
            let nets: Vec<&NetEntry> = s
                .networks
                .iter()
                .filter(|(k, _)| k.split(':').next() == Some(t))
                .map(|(_, v)| v)
                .collect();
            let groups: Vec<&GroupEntry> = s
                .groups
                .iter()
                .filter(|(k, _)| k.split(':').next() == Some(t))
                .map(|(_, v)| v)
                .collect();
            let eps: Vec<EndpointOper> = s
                .endpoints
                .values()
                .filter(|e| e.tenant_name == t)
                .map(|e| endpoint_oper(s, e))
                .collect();
            let pols: Vec<PolicyOper> = s
                .policies
                .values()
                .filter(|p| p.tenant_name == t)
                .map(|p| policy_oper(s, p))
                .collect();
            let svcs: Vec<ServiceLbOper> = s
                .services
                .values()
                .filter(|v| v.cfg.tenant_name == t)
                .map(|v| service_oper(s, v))
                .collect();
            val(&TenantOper {
                total_networks: nets.len() as i64,
                total_epgs: groups.len() as i64,
                total_endpoints: eps.len() as i64,
                total_policies: pols.len() as i64,
                total_servicelbs: svcs.len() as i64,
                total_netprofiles: in_tenant(&s.netprofiles, t).count() as i64,
                total_app_profiles: in_tenant(&s.app_profiles, t).count() as i64,
                networks: nets.iter().map(|n| network_oper(s, n)).collect(),
                endpoint_groups: groups.iter().map(|g| group_oper(s, g)).collect(),
                endpoints: eps,
                policies: pols,
                servicelbs: svcs,
            })
        }
        Kind::Network => val(&network_oper(s, s.networks.get(key)?)),
        Kind::EndpointGroup => val(&group_oper(s, s.groups.get(key)?)),
        Kind::Policy => val(&policy_oper(s, s.policies.get(key)?)),
        Kind::Global => val(&global_oper(s)),
        Kind::ServiceLb => val(&service_oper(s, s.services.get(key)?)),
        Kind::Bgp => val(&BgpOper::default()),
        Kind::AciGw => val(&AciGwOper {
            num_app_profiles: s.app_profiles.len() as i64,
        }),
        Kind::Rule | Kind::Netprofile | Kind::AppProfile | Kind::ExtContractsGroup => Value::Null,
    };
    // What has no effect in the datapath yet is said in an added `notice` (an `Oper` of its
    // own for the kinds that have none).
    let oper = match (oper, crate::notices::notice(s, kind, key)) {
        (Value::Null, None) => return Some(json!({ "Config": config })),
        (Value::Null, Some(n)) => json!({ "notice": n }),
        (mut o, Some(n)) => {
            o["notice"] = Value::String(n);
            o
        }
        (o, None) => o,
    };
    Some(json!({ "Config": config, "Oper": oper }))
}

/// `GET /api/v1/inspect/endpoints/<id>/`: the first endpoint (by id) whose id, container id or
/// container name contains `needle`.
/// Its `spoofedPackets` come from `spoofed`, its `privateIPAddress` from `access`.
pub fn inspect_endpoint(
    s: &State,
    spoofed: &SpoofStats,
    access: &HostAccess,
    needle: &str,
) -> Option<Value> {
    let ep = s.endpoints.values().find(|e| {
        e.endpoint_id.contains(needle)
            || e.container_id.contains(needle)
            || (!e.container_name.is_empty() && e.container_name.contains(needle))
    })?;
    let mut oper = endpoint_oper(s, ep);
    oper.spoofed_packets = Some(spoofed_packets(s, spoofed, ep));
    oper.private_ip_address = own_report(s, access, ep).cloned().unwrap_or_default();
    Some(json!({ "Oper": oper }))
}

/// The private address each node reported of its endpoints: host -> endpoint id -> address.
pub type HostAccess = BTreeMap<String, BTreeMap<String, String>>;

/// What endpoint `ep`'s own host, while registered, reported of it in `reports`.
fn own_report<'a, V>(
    s: &State,
    reports: &'a BTreeMap<String, BTreeMap<String, V>>,
    ep: &Endpoint,
) -> Option<&'a V> {
    if !s.nodes.contains_key(&ep.host) {
        return None;
    }
    reports.get(&ep.host)?.get(&ep.endpoint_id)
}

/// The latest anti-spoofing drops each node reported: host -> endpoint id -> frames.
pub type SpoofStats = BTreeMap<String, BTreeMap<String, u64>>;

/// The frames endpoint `ep` sent under an identity not its own, as its own host last reported
/// them: another node's report never counts for it (a node reports only what its switch saw,
/// and may lie about others'). 0 while its host reported none, or is not registered (its
/// switch may be gone; it reports again when it comes back).
pub fn spoofed_packets(s: &State, stats: &SpoofStats, ep: &Endpoint) -> u64 {
    own_report(s, stats, ep).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::agent::Node;

    fn rule(policy: &str, id: &str, priority: i64) -> (String, Rule) {
        (
            format!("default:{policy}:{id}"),
            Rule {
                tenant_name: "default".into(),
                policy_name: policy.into(),
                rule_id: id.into(),
                priority,
                direction: "in".into(),
                action: "allow".into(),
                ..Default::default()
            },
        )
    }

    fn counts(packets: u64, bytes: u64) -> RuleCounters {
        RuleCounters { packets, bytes }
    }

    #[test]
    fn rule_stats_sum_live_hosts_per_rule_in_priority_order() {
        let mut s = State::new();
        s.rules.extend([
            rule("p", "deny", 1),
            rule("p", "allow", 100),
            rule("p", "quiet", 50),
            // Another policy whose name starts the same: not ours.
            rule("p2", "deny", 1),
        ]);
        for h in ["h1", "h2"] {
            s.nodes.insert(
                h.into(),
                Node {
                    hostname: h.into(),
                    ..Default::default()
                },
            );
        }
        let mut stats = RuleStats::new();
        stats.insert(
            "h1".into(),
            BTreeMap::from([
                ("default:p:deny".into(), counts(3, 180)),
                ("default:p:allow".into(), counts(1, 60)),
                ("default:p2:deny".into(), counts(100, 6000)),
            ]),
        );
        stats.insert(
            "h2".into(),
            BTreeMap::from([("default:p:deny".into(), counts(2, 120))]),
        );
        // A host that left: its last report no longer counts.
        stats.insert(
            "gone".into(),
            BTreeMap::from([("default:p:deny".into(), counts(50, 5000))]),
        );
        let got = rule_stats(&s, &stats, "default:p");
        let ids: Vec<&str> = got.iter().map(|r| r.rule_id.as_str()).collect();
        assert_eq!(ids, ["deny", "quiet", "allow"]);
        assert_eq!((got[0].packets, got[0].bytes), (5, 300));
        assert_eq!(
            got[0].hosts,
            BTreeMap::from([("h1".into(), counts(3, 180)), ("h2".into(), counts(2, 120))])
        );
        assert_eq!((got[1].packets, got[1].hosts.len()), (0, 0));
        assert_eq!((got[2].packets, got[2].bytes), (1, 60));
    }

    #[test]
    fn rule_stats_totals_saturate() {
        // Found while writing the fuzz targets for the rule-stats body: two reports whose counts
        // add up past u64 made the sum overflow.
        let mut s = State::new();
        s.rules.extend([rule("p", "r", 1)]);
        let mut stats = RuleStats::new();
        for (h, n) in [("h1", u64::MAX - 1), ("h2", 5)] {
            s.nodes.insert(
                h.into(),
                Node {
                    hostname: h.into(),
                    ..Default::default()
                },
            );
            stats.insert(
                h.into(),
                BTreeMap::from([("default:p:r".into(), counts(n, n))]),
            );
        }
        let got = rule_stats(&s, &stats, "default:p");
        assert_eq!((got[0].packets, got[0].bytes), (u64::MAX, u64::MAX));
    }

    #[test]
    fn spoofed_packets_come_from_the_endpoints_own_live_host() {
        let mut s = State::new();
        let ep = |id: &str, host: &str| Endpoint {
            endpoint_id: id.into(),
            host: host.into(),
            ip_address: "10.1.2.3".into(),
            ..Default::default()
        };
        for (id, host) in [("a", "h1"), ("b", "h2"), ("c", "gone")] {
            s.endpoints.insert(id.into(), ep(id, host));
        }
        for h in ["h1", "h2"] {
            s.nodes.insert(
                h.into(),
                Node {
                    hostname: h.into(),
                    ..Default::default()
                },
            );
        }
        let mut stats = SpoofStats::new();
        // h1 counts its own endpoint, and claims one of h2's: only the first counts.
        stats.insert(
            "h1".into(),
            BTreeMap::from([("a".into(), 4), ("b".into(), 9)]),
        );
        // A node no longer registered: its last report no longer counts.
        stats.insert("gone".into(), BTreeMap::from([("c".into(), 7)]));
        let got = |stats: &SpoofStats, id: &str| spoofed_packets(&s, stats, &s.endpoints[id]);
        assert_eq!(
            (got(&stats, "a"), got(&stats, "b"), got(&stats, "c")),
            (4, 0, 0)
        );
        stats.insert("h2".into(), BTreeMap::from([("b".into(), 2)]));
        assert_eq!(got(&stats, "b"), 2);
        // Endpoint inspect carries it, always (0 included); other views' lists do not.
        let v = inspect_endpoint(&s, &stats, &HostAccess::new(), "a").unwrap();
        assert_eq!(v["Oper"]["spoofedPackets"], json!(4));
        let v = inspect_endpoint(&s, &SpoofStats::new(), &HostAccess::new(), "a").unwrap();
        assert_eq!(v["Oper"]["spoofedPackets"], json!(0));
        assert_eq!(endpoint_oper(&s, &s.endpoints["a"]).spoofed_packets, None);
    }

    #[test]
    fn the_private_address_comes_from_the_endpoints_own_live_host() {
        let mut s = State::new();
        for (id, host) in [("a", "h1"), ("b", "h2")] {
            s.endpoints.insert(
                id.into(),
                Endpoint {
                    endpoint_id: id.into(),
                    host: host.into(),
                    ..Default::default()
                },
            );
        }
        s.nodes.insert(
            "h1".into(),
            Node {
                hostname: "h1".into(),
                ..Default::default()
            },
        );
        // h1 reports its own, and claims one for h2's endpoint (h2 is not registered either).
        let access = HostAccess::from([(
            "h1".into(),
            BTreeMap::from([
                ("a".into(), "172.19.0.2".into()),
                ("b".into(), "172.19.0.9".into()),
            ]),
        )]);
        let v = inspect_endpoint(&s, &SpoofStats::new(), &access, "a").unwrap();
        assert_eq!(v["Oper"]["privateIPAddress"], json!("172.19.0.2"));
        let v = inspect_endpoint(&s, &SpoofStats::new(), &access, "b").unwrap();
        assert!(v["Oper"].get("privateIPAddress").is_none(), "{v}");
        // Not in other views' endpoint lists.
        assert_eq!(endpoint_oper(&s, &s.endpoints["a"]).private_ip_address, "");
    }
}
