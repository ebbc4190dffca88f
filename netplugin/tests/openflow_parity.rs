//! The agent's whole pipeline (fabric and policy flows for endpoints, peers, profiles and
//! rules) installed through the native OpenFlow connection on one bridge and through
//! `ovs-ofctl` on another: the two flow tables must read back identical. This is what proves
//! the native encoder for every flow the agent writes.

#[path = "../../ovs/tests/common/mod.rs"]
mod common;

use common::{Sandbox, bridges, summary};
use model::Rule;
use model::agent::Endpoint;
use netplugin::fabric::{Inputs, Profile, desired, desired_meters};
use ovs::{FlowProgrammer, OfProgrammer, OfctlProgrammer};

fn ep(id: &str, host: &str, ip: &str, vni: u32, group: (&str, u32)) -> Endpoint {
    Endpoint {
        endpoint_id: id.into(),
        host: host.into(),
        tenant_name: "default".into(),
        network_name: "net".into(),
        group_name: group.0.into(),
        group_id: group.1,
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

/// Every kind of flow the agent makes: local endpoints (one with IPv6, two under profiles,
/// one with DSCP), remote ones behind a tunnel, flooding, ARP proxy, and policy rules of every
/// shape (ports, protocols by number, groups, networks, address ranges and subnets).
fn inputs() -> Inputs {
    let mut i = Inputs {
        arp_proxy: true,
        ..Default::default()
    };
    let mut a = ep("a", "h1", "10.1.2.2", 7, ("web", 7));
    a.ipv6_address = "fd00::1:2".into();
    i.local.insert("a".into(), (32768, a));
    i.local
        .insert("b".into(), (32769, ep("b", "h1", "10.1.2.3", 7, ("db", 8))));
    i.local
        .insert("v".into(), (32770, ep("v", "h1", "10.3.0.2", 9, ("", 0))));
    i.remote
        .insert("c".into(), ep("c", "h2", "10.1.2.4", 7, ("web", 7)));
    i.remote
        .insert("d".into(), ep("d", "h2", "10.9.0.2", 8, ("", 0)));
    i.tunnels.insert("h2".into(), 3);
    // h2's node address: the return flows to its router (north-south, inbound).
    i.vteps.insert("h2".into(), "10.250.0.12".into());
    // Network 7's gateway on this host (north-south): its router port's flows too.
    i.routers.insert(
        7,
        netplugin::fabric::RouterPort {
            ofport: 32771,
            gateway: "10.1.2.1".into(),
            zone: 1,
        },
    );
    i.profiles.insert(
        "default:web".into(),
        Profile {
            bps: 10_000_000,
            burst_kbytes: 0,
            dscp: 46,
        },
    );
    i.profiles.insert(
        "default:db".into(),
        Profile {
            bps: 2_000_000,
            burst_kbytes: 64,
            dscp: 0,
        },
    );
    let p = &mut i.policy;
    p.groups
        .insert("default:web".into(), (7, vec!["p".to_string()]));
    p.groups
        .insert("default:db".into(), (8, vec!["p".to_string()]));
    p.subnets
        .insert("default:net".into(), "10.1.2.0/24".to_string());
    p.rules
        .insert("default:p:1".into(), rule("1", "in", 1, "tcp", 0, "deny"));
    p.rules.insert(
        "default:p:2".into(),
        rule("2", "in", 100, "tcp", 8000, "allow"),
    );
    let mut out = rule("3", "out", 5, "udp", 53, "deny");
    out.to_endpoint_group = "db".into();
    p.rules.insert("default:p:3".into(), out);
    let mut range = rule("4", "in", 3, "icmp", 0, "deny");
    range.from_ip_address = "10.1.2.5-7".into();
    p.rules.insert("default:p:4".into(), range);
    let mut net = rule("5", "out", 7, "47", 0, "deny");
    net.to_network = "net".into();
    p.rules.insert("default:p:5".into(), net);
    let mut ip = rule("6", "in", 9, "", 0, "allow");
    ip.from_ip_address = "10.5.0.0/16".into();
    p.rules.insert("default:p:6".into(), ip);
    let mut from = rule("7", "in", 11, "udp", 5353, "deny");
    from.from_endpoint_group = "db".into();
    p.rules.insert("default:p:7".into(), from);
    p.subnets6
        .insert("default:net".into(), "fd00::/64".to_string());
    let mut v6 = rule("8", "in", 13, "icmp6", 0, "deny");
    v6.from_ip_address = "fd00::1:0/112".into();
    p.rules.insert("default:p:8".into(), v6);
    let mut v6net = rule("9", "out", 15, "tcp", 443, "allow");
    v6net.to_network = "net".into();
    p.rules.insert("default:p:9".into(), v6net);
    // Kubernetes NetworkPolicy on pod "a" (its container name): both directions, every kind of
    // allowance (anyone, prefixes of both families, port ranges as masks, SCTP, all protocols).
    use netplugin::netpol::{Allow, PodPolicy, Proto};
    use std::collections::BTreeSet;
    i.local.get_mut("a").unwrap().1.container_name = "x/a".into();
    let allow = |peer: Option<&str>, proto, ports| Allow {
        peer: peer.map(|p| p.parse().unwrap()),
        proto,
        ports,
    };
    i.netpol.enabled = true;
    i.netpol.synced = true;
    i.netpol.pods.insert(
        "x/a".into(),
        PodPolicy {
            ingress: Some(BTreeSet::from([
                allow(Some("10.1.2.4/32"), None, None),
                allow(Some("fd00::1:4/128"), Some(Proto::Tcp), Some((80, 80))),
                allow(None, Some(Proto::Sctp), Some((8000, 8080))),
                allow(Some("192.168.0.0/17"), Some(Proto::Udp), None),
            ])),
            egress: Some(BTreeSet::from([allow(
                Some("10.1.2.0/24"),
                Some(Proto::Tcp),
                Some((1024, 65535)),
            )])),
        },
    );
    i
}

#[tokio::test]
async fn native_openflow_installs_the_agents_pipeline_as_ovs_ofctl_does() {
    let sb = Sandbox::start_with_vswitchd();
    bridges(&sb, &["br0", "br1"], &["OpenFlow13", "OpenFlow14"]).await;
    let ofctl = OfctlProgrammer::new(sb.dir());
    let native = OfProgrammer::new(sb.dir());
    let i = inputs();
    let flows: Vec<(u64, Vec<ovs::Flow>)> = desired(&i).into_iter().collect();
    let count: usize = flows.iter().map(|s| s.1.len()).sum();
    // The inputs reach every shape: the comparison covers what the agent writes.
    let all: Vec<&ovs::Flow> = flows.iter().flat_map(|s| &s.1).collect();
    for needle in [
        "meter:",
        "ip_dscp",
        "ct(commit",
        "ct(table",
        "move:",
        "output:NXM_NX_REG2[]",
        "tun_id",
        "IN_PORT",
    ] {
        assert!(
            all.iter().any(|f| f.actions.contains(needle)),
            "no flow with {needle}"
        );
    }
    for needle in [
        "ipv6_src=",
        "tp_dst=",
        "nw_proto=47",
        "ct_state=",
        "arp_tpa=",
        "nw_dst=10.1.2.0/24",
        "ipv6_dst=fd00::/64",
        "icmpv6_type=136",
        "nd_target=",
        "nd_sll=",
        "nd_tll=",
        "tcp6",
    ] {
        assert!(
            all.iter().any(|f| f.matches.contains(needle)),
            "no flow matching {needle}"
        );
    }
    for (br, p) in [("br0", &native as &dyn FlowProgrammer), ("br1", &ofctl)] {
        for (id, (kbps, burst)) in desired_meters(&i) {
            p.set_meter(br, id, kbps, burst).await.unwrap();
        }
        p.replace_flow_sets(br, &flows).await.unwrap();
    }
    let a = summary(&native.dump_flows("br0", None).await.unwrap());
    let b = summary(&ofctl.dump_flows("br1", None).await.unwrap());
    assert_eq!(a.len(), count, "native: not every flow installed");
    assert_eq!(a, b, "native (left) and ovs-ofctl (right) differ");
}
