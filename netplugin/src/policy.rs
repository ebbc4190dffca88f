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
}

/// The OpenFlow priority of a rule: Contiv's 10 + priority (1..100), higher wins.
fn priority(r: &Rule) -> u16 {
    10 + r.priority.clamp(1, 100) as u16
}

/// The protocol part of a match; None for a port rule on a protocol without ports.
fn protocol(r: &Rule) -> Option<String> {
    let base = match r.protocol.as_str() {
        "" => "ip".to_string(),
        "tcp" | "6" => "tcp".to_string(),
        "udp" | "17" => "udp".to_string(),
        "icmp" | "1" => "icmp".to_string(),
        n => format!("ip,nw_proto={n}"),
    };
    if r.port != 0 {
        if base != "tcp" && base != "udp" {
            return None;
        }
        return Some(format!("{base},tp_dst={}", r.port));
    }
    Some(base)
}

/// An address match: `a.b.c.d`, `a.b.c.d/len`, or Contiv's last-octet range `a.b.c.d-N`.
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
        let Some(proto) = protocol(r) else {
            tracing::warn!(rule = %key, "a port on a protocol without ports: rule ignored");
            continue;
        };
        let inbound = r.direction == "in";
        // The peer side of the rule: the other group, network or addresses.
        let mut peer = String::new();
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
        let (peer_reg, peer_nw, own_nw) = if inbound {
            ("reg1", "nw_src", "nw_dst")
        } else {
            ("reg3", "nw_dst", "nw_src")
        };
        if !peer_group.is_empty() {
            let Some(g) = gid(peer_group) else {
                // The group is not there (yet): the rule cannot match anything.
                continue;
            };
            peer.push_str(&format!(",{peer_reg}={g}"));
        }
        if !peer_net.is_empty() {
            let Some(s) = p.subnets.get(&format!("{tenant}:{peer_net}")) else {
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
        let (tbl, own_reg, when, next) = if inbound {
            (table::INGRESS, "reg3", "reg5=1", table::COMMIT)
        } else {
            (
                table::EGRESS,
                "reg1",
                &*format!("reg0={FROM_ENDPOINT}"),
                table::INGRESS,
            )
        };
        let action = if r.action == "deny" {
            "drop".to_string()
        } else {
            format!("resubmit(,{next})")
        };
        let c = cookie::rule(key);
        let mut flows = Vec::new();
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
        assert_eq!(allow.actions, format!("resubmit(,{})", table::COMMIT));
        let out = &f[&cookie::rule("default:p:3")][0];
        assert_eq!(out.table, table::EGRESS);
        assert_eq!(out.matches, "udp,tp_dst=53,reg0=1,reg1=7,reg3=8");
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
}
