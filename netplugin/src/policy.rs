//! Contiv policies compiled into OpenFlow rules (reference: Contiv's policy compilation, with its
//! enforcement gap closed): `in` rules are enforced where the destination lives, `out` rules where
//! the source lives. Only new connections are judged; conntrack lets replies and established
//! connections through, so live rule changes never cut an allowed connection. A packet no rule
//! matches is allowed (Contiv's semantics); a deny rule makes a group default-deny.

use crate::fabric::{FROM_ENDPOINT, cookie, table};
use model::Rule;
use ovs::Flow;
use std::collections::{BTreeMap, BTreeSet};

/// What the rules need from the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyInputs {
    /// `tenant:group` -> (group id, attached policy names).
    pub groups: BTreeMap<String, (u32, Vec<String>)>,
    /// Every rule, by key `tenant:policy:ruleId`.
    pub rules: BTreeMap<String, Rule>,
    /// `tenant:network` -> IPv4 subnet.
    pub subnets: BTreeMap<String, String>,
    /// `tenant:network` -> IPv6 subnet (dual-stack networks only).
    pub subnets6: BTreeMap<String, String>,
}

/// An address family: every rule is compiled once per family it can concern, so that nothing
/// reaches a pod over IPv6 that the same rule refuses over IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// The match fields of a source and a destination address.
    fn fields(self) -> (&'static str, &'static str) {
        match self {
            Family::V4 => ("nw_src", "nw_dst"),
            Family::V6 => ("ipv6_src", "ipv6_dst"),
        }
    }

    /// The family of an address, subnet or Contiv last-octet range as a rule gives it.
    fn of(value: &str) -> Family {
        if value.contains(':') {
            Family::V6
        } else {
            Family::V4
        }
    }
}

/// The OpenFlow priority of a rule: Contiv's 10 + priority (1..100), higher wins.
fn priority(r: &Rule) -> u16 {
    10 + r.priority.clamp(1, 100) as u16
}

/// The protocol part of a match, per family the protocol exists in; None for a port rule on a
/// protocol without ports. `icmp` means ICMP of either family (a deny of `icmp` refuses ping over
/// IPv6 too); `icmp6` (or `ipv6-icmp`, `58`) only ICMPv6.
fn protocol(r: &Rule) -> Option<Vec<(Family, String)>> {
    let both =
        |v4: &str, v6: &str| vec![(Family::V4, v4.to_string()), (Family::V6, v6.to_string())];
    let (base, ports) = match r.protocol.to_ascii_lowercase().as_str() {
        "" => (both("ip", "ipv6"), false),
        "tcp" | "6" => (both("tcp", "tcp6"), true),
        "udp" | "17" => (both("udp", "udp6"), true),
        "icmp" | "1" => (both("icmp", "icmp6"), false),
        "icmp6" | "icmpv6" | "ipv6-icmp" | "58" => (vec![(Family::V6, "icmp6".to_string())], false),
        n => (
            both(&format!("ip,nw_proto={n}"), &format!("ipv6,nw_proto={n}")),
            false,
        ),
    };
    if r.port == 0 {
        return Some(base);
    }
    if !ports {
        return None;
    }
    Some(
        base.into_iter()
            .map(|(f, m)| (f, format!("{m},tp_dst={}", r.port)))
            .collect(),
    )
}

/// An address match: `a.b.c.d`, `a.b.c.d/len`, Contiv's last-octet range `a.b.c.d-N`, or an
/// IPv6 address or subnet.
fn addresses(field: &str, value: &str) -> Vec<String> {
    if let Some((ip, last)) = value.split_once('-')
        && let (Ok(ip), Ok(last)) = (ip.parse::<std::net::Ipv4Addr>(), last.parse::<u8>())
    {
        let o = ip.octets();
        return (o[3]..=last.max(o[3]))
            .map(|x| format!(",{field}={}.{}.{}.{x}", o[0], o[1], o[2]))
            .collect();
    }
    vec![format!(",{field}={value}")]
}

/// The flows of every rule that concerns a group with an endpoint on this host
/// (`local_groups`: group ids), by cookie.
pub fn compile(p: &PolicyInputs, local_groups: &BTreeSet<u32>) -> BTreeMap<u64, Vec<Flow>> {
    let mut out = BTreeMap::new();
    for (key, r) in &p.rules {
        let tenant = &r.tenant_name;
        let gid = |name: &str| p.groups.get(&format!("{tenant}:{name}")).map(|g| g.0);
        let attached: Vec<u32> = p
            .groups
            .iter()
            .filter(|(k, (_, pols))| {
                k.split_once(':').map(|x| x.0) == Some(tenant.as_str())
                    && pols.contains(&r.policy_name)
            })
            .map(|(_, (g, _))| *g)
            .filter(|g| local_groups.contains(g))
            .collect();
        if attached.is_empty() {
            continue;
        }
        let Some(protos) = protocol(r) else {
            tracing::warn!(rule = %key, "a port on a protocol without ports: rule ignored");
            continue;
        };
        let inbound = r.direction == "in";
        // The peer side of the rule: the other group, network or addresses.
        let (peer_group, peer_net, peer_ip, own_ip) = if inbound {
            (
                &r.from_endpoint_group,
                &r.from_network,
                &r.from_ip_address,
                &r.to_ip_address,
            )
        } else {
            (
                &r.to_endpoint_group,
                &r.to_network,
                &r.to_ip_address,
                &r.from_ip_address,
            )
        };
        let peer_reg = if inbound { "reg1" } else { "reg3" };
        let mut group = String::new();
        if !peer_group.is_empty() {
            let Some(g) = gid(peer_group) else {
                // The group is not there (yet): the rule cannot match anything.
                continue;
            };
            group = format!(",{peer_reg}={g}");
        }
        let (tbl, own_reg, when, next) = if inbound {
            (table::INGRESS, "reg3", "reg5=1", table::NP_INGRESS)
        } else {
            (
                table::EGRESS,
                "reg1",
                &*format!("reg0={FROM_ENDPOINT}"),
                // Kubernetes NetworkPolicy judges too: both must allow.
                table::NP_EGRESS,
            )
        };
        let action = if r.action == "deny" {
            "drop".to_string()
        } else {
            format!("resubmit(,{next})")
        };
        let c = cookie::rule(key);
        let mut flows = Vec::new();
        for (family, proto) in &protos {
            // Addresses name their family: a rule with IPv4 addresses says nothing of IPv6.
            if [peer_ip, own_ip]
                .iter()
                .any(|a| !a.is_empty() && Family::of(a) != *family)
            {
                continue;
            }
            let (src, dst) = family.fields();
            let (peer_nw, own_nw) = if inbound { (src, dst) } else { (dst, src) };
            let mut peer = group.clone();
            if !peer_net.is_empty() {
                let subnets = match family {
                    Family::V4 => &p.subnets,
                    Family::V6 => &p.subnets6,
                };
                // A network without addresses of this family has no member to match.
                let Some(s) = subnets.get(&format!("{tenant}:{peer_net}")) else {
                    continue;
                };
                peer.push_str(&format!(",{peer_nw}={s}"));
            }
            let peer_ips = if peer_ip.is_empty() {
                vec![String::new()]
            } else {
                addresses(peer_nw, peer_ip)
            };
            let own_ips = if own_ip.is_empty() {
                vec![String::new()]
            } else {
                addresses(own_nw, own_ip)
            };
            for g in &attached {
                for pi in &peer_ips {
                    for oi in &own_ips {
                        flows.push(
                            Flow::new(
                                tbl,
                                priority(r),
                                format!("{proto},{when},{own_reg}={g}{peer}{pi}{oi}"),
                                &action,
                            )
                            .cookie(c),
                        );
                    }
                }
            }
        }
        if flows.is_empty() {
            continue;
        }
        out.insert(c, flows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, dir: &str, prio: i64, proto: &str, port: i64, action: &str) -> Rule {
        Rule {
            tenant_name: "default".into(),
            policy_name: "p".into(),
            rule_id: id.into(),
            direction: dir.into(),
            priority: prio,
            protocol: proto.into(),
            port,
            action: action.into(),
            ..Default::default()
        }
    }

    fn inputs() -> PolicyInputs {
        let mut p = PolicyInputs::default();
        p.groups
            .insert("default:web".into(), (7, vec!["p".to_string()]));
        p.groups.insert("default:db".into(), (8, vec![]));
        p.rules
            .insert("default:p:1".into(), rule("1", "in", 1, "tcp", 0, "deny"));
        p.rules.insert(
            "default:p:2".into(),
            rule("2", "in", 100, "tcp", 8000, "allow"),
        );
        let mut out = rule("3", "out", 5, "udp", 53, "deny");
        out.to_endpoint_group = "db".into();
        p.rules.insert("default:p:3".into(), out);
        p
    }

    #[test]
    fn contivs_deny_all_but_8000_compiles_to_ordered_ingress_flows() {
        let f = compile(&inputs(), &BTreeSet::from([7]));
        let deny = &f[&cookie::rule("default:p:1")][0];
        assert_eq!(
            (
                deny.table,
                deny.priority,
                deny.matches.as_str(),
                deny.actions.as_str()
            ),
            (table::INGRESS, 11, "tcp,reg5=1,reg3=7", "drop")
        );
        let allow = &f[&cookie::rule("default:p:2")][0];
        assert_eq!(allow.priority, 110);
        assert_eq!(allow.matches, "tcp,tp_dst=8000,reg5=1,reg3=7");
        assert_eq!(allow.actions, format!("resubmit(,{})", table::NP_INGRESS));
        let out = &f[&cookie::rule("default:p:3")][0];
        assert_eq!(out.table, table::EGRESS);
        assert_eq!(out.matches, "udp,tp_dst=53,reg0=1,reg1=7,reg3=8");
    }

    /// Traffic to and from the outside passes the network's router port, classified with no
    /// group (reg1=0 from it, reg3=0 to it): rules with addresses and no peer group must not
    /// ask for a group on the router's side, or they would never judge outside traffic.
    #[test]
    fn address_rules_judge_traffic_through_the_router() {
        let mut p = PolicyInputs::default();
        p.groups
            .insert("default:web".into(), (7, vec!["p".to_string()]));
        let mut out = rule("1", "out", 5, "tcp", 0, "deny");
        out.to_ip_address = "10.99.0.0/24".into();
        p.rules.insert("default:p:1".into(), out);
        let mut inn = rule("2", "in", 5, "tcp", 0, "deny");
        inn.from_ip_address = "10.99.0.7".into();
        p.rules.insert("default:p:2".into(), inn);
        let f = compile(&p, &BTreeSet::from([7]));
        let out = &f[&cookie::rule("default:p:1")];
        assert!(
            out.iter().any(|x| x.table == table::EGRESS
                && x.matches == "tcp,reg0=1,reg1=7,nw_dst=10.99.0.0/24"),
            "{out:?}"
        );
        let inn = &f[&cookie::rule("default:p:2")];
        assert!(
            inn.iter()
                .any(|x| x.table == table::INGRESS
                    && x.matches == "tcp,reg5=1,reg3=7,nw_src=10.99.0.7"),
            "{inn:?}"
        );
        for x in out.iter().chain(inn) {
            assert!(
                !x.matches.contains("reg3=0") && !x.matches.contains("reg1=0"),
                "{x:?}"
            );
        }
    }

    #[test]
    fn rules_of_groups_without_local_endpoints_are_not_installed() {
        assert!(compile(&inputs(), &BTreeSet::from([8])).is_empty());
    }

    #[test]
    fn address_ranges_expand_and_bad_ports_are_skipped() {
        let mut p = inputs();
        let mut r = rule("4", "in", 3, "icmp", 0, "deny");
        r.from_ip_address = "10.1.2.5-7".into();
        p.rules.insert("default:p:4".into(), r);
        p.rules
            .insert("default:p:5".into(), rule("5", "in", 3, "icmp", 80, "deny"));
        let f = compile(&p, &BTreeSet::from([7]));
        let ms: Vec<&str> = f[&cookie::rule("default:p:4")]
            .iter()
            .map(|x| x.matches.as_str())
            .collect();
        assert_eq!(
            ms,
            [
                "icmp,reg5=1,reg3=7,nw_src=10.1.2.5",
                "icmp,reg5=1,reg3=7,nw_src=10.1.2.6",
                "icmp,reg5=1,reg3=7,nw_src=10.1.2.7"
            ]
        );
        assert!(!f.contains_key(&cookie::rule("default:p:5")));
    }

    #[test]
    fn every_rule_covers_ipv6_unless_its_addresses_say_ipv4() {
        let mut p = inputs();
        p.subnets.insert("default:net".into(), "10.1.0.0/16".into());
        p.subnets6
            .insert("default:net".into(), "fd00:1::/64".into());
        let mut from_net = rule("6", "in", 50, "tcp", 8000, "allow");
        from_net.from_network = "net".into();
        p.rules.insert("default:p:6".into(), from_net);
        let mut from_v6 = rule("7", "in", 60, "icmp6", 0, "deny");
        from_v6.from_ip_address = "fd00:1::5".into();
        p.rules.insert("default:p:7".into(), from_v6);
        let mut v4_only = rule("8", "in", 60, "udp", 53, "deny");
        v4_only.from_ip_address = "10.1.0.0/24".into();
        p.rules.insert("default:p:8".into(), v4_only);
        let f = compile(&p, &BTreeSet::from([7]));
        let ms = |k: &str| -> Vec<String> {
            f[&cookie::rule(k)]
                .iter()
                .map(|x| x.matches.clone())
                .collect()
        };
        // Contiv's deny-all-but-8000 holds over both families.
        assert_eq!(
            ms("default:p:1"),
            ["tcp,reg5=1,reg3=7", "tcp6,reg5=1,reg3=7"]
        );
        assert_eq!(
            ms("default:p:2"),
            [
                "tcp,tp_dst=8000,reg5=1,reg3=7",
                "tcp6,tp_dst=8000,reg5=1,reg3=7"
            ]
        );
        assert_eq!(
            ms("default:p:6"),
            [
                "tcp,tp_dst=8000,reg5=1,reg3=7,nw_src=10.1.0.0/16",
                "tcp6,tp_dst=8000,reg5=1,reg3=7,ipv6_src=fd00:1::/64"
            ]
        );
        assert_eq!(
            ms("default:p:7"),
            ["icmp6,reg5=1,reg3=7,ipv6_src=fd00:1::5"]
        );
        assert_eq!(
            ms("default:p:8"),
            ["udp,tp_dst=53,reg5=1,reg3=7,nw_src=10.1.0.0/24"]
        );
        // A network without IPv6 has no IPv6 member to match.
        p.subnets6.clear();
        let f = compile(&p, &BTreeSet::from([7]));
        assert_eq!(f[&cookie::rule("default:p:6")].len(), 1);
        // `icmp` is ICMP of both families; the out rule's peer group holds for both.
        let out: Vec<&str> = f[&cookie::rule("default:p:3")]
            .iter()
            .map(|x| x.matches.as_str())
            .collect();
        assert_eq!(
            out,
            [
                "udp,tp_dst=53,reg0=1,reg1=7,reg3=8",
                "udp6,tp_dst=53,reg0=1,reg1=7,reg3=8"
            ]
        );
        let mut icmp = inputs();
        icmp.rules
            .insert("default:p:9".into(), rule("9", "in", 5, "icmp", 0, "deny"));
        let f = compile(&icmp, &BTreeSet::from([7]));
        let ms: Vec<&str> = f[&cookie::rule("default:p:9")]
            .iter()
            .map(|x| x.matches.as_str())
            .collect();
        assert_eq!(ms, ["icmp,reg5=1,reg3=7", "icmp6,reg5=1,reg3=7"]);
    }
}
