//! One identity per pod, in every attachment mode (docs/security.md "Pod identity"): a pod
//! holding CAP_NET_RAW writes forged frames to its interface (AF_PACKET, with and without
//! PACKET_QDISC_BYPASS) and none reaches a pod of another group or poisons a neighbour cache,
//! while the real neighbour's traffic still flows. One host (the forger and its neighbour are
//! trunk-mates in trunk mode), the real netmaster, agent, OVS (userspace datapath) and plugin, a
//! dual-stack network, pods in namespaces.
//!
//! The target `t` (group `web`) takes UDP only from group `trusted` (its neighbour `n`); the
//! forger `a` is in group `evil`.

use serde_json::json;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::{Duration, Instant};
use test_e2e::forge::{self, link_local};
use test_e2e::{Host, Netmaster, Pod, wait_for};

const PORT4: u16 = 9000;
const PORT6: u16 = 9001;

struct Scene {
    m: Netmaster,
    h: Host,
    /// The target (group web), its trusted neighbour, the forger (group evil).
    t: Pod,
    n: Pod,
    a: Pod,
    rx4: UdpSocket,
    rx6: UdpSocket,
    /// Whether the agent runs with trunks (the forger and its neighbour share a port).
    trunks: bool,
}

fn post(m: &Netmaster, path: &str, body: serde_json::Value) {
    let (s, v) = m.api("POST", path, Some(body));
    assert_eq!(s, 200, "POST {path}: {v}");
}

fn scene(agent_args: &[&str], trunks: bool) -> Scene {
    let m = Netmaster::start();
    m.dual_stack_network("net", "10.1.2.0/24", "10.1.2.1", "fd00:1::/64");
    post(
        &m,
        "/api/v1/policys/default:p/",
        json!({"tenantName": "default", "policyName": "p"}),
    );
    for (g, pols) in [("web", vec!["p"]), ("trusted", vec![]), ("evil", vec![])] {
        post(
            &m,
            &format!("/api/v1/endpointGroups/default:{g}/"),
            json!({"tenantName": "default", "groupName": g, "networkName": "net", "policies": pols}),
        );
    }
    for (id, prio, from, action) in [("1", 1, "", "deny"), ("2", 100, "trusted", "allow")] {
        let mut r = json!({"tenantName": "default", "policyName": "p", "ruleId": id,
            "direction": "in", "priority": prio, "protocol": "udp", "action": action});
        if !from.is_empty() {
            r["fromEndpointGroup"] = json!(from);
        }
        post(&m, &format!("/api/v1/rules/default:p:{id}/"), r);
    }
    let mut h = Host::netns_only(&m, "host1");
    h.boot(agent_args);
    let pod = |g: &str| h.pod(&h.conf("1.0.0", json!({"network": "net", "group": g})));
    let (t, n, a) = (pod("web"), pod("trusted"), pod("evil"));
    let rx4 = t.in_ns(|| UdpSocket::bind(("0.0.0.0", PORT4)).expect("bind UDP in the target"));
    let rx6 = t.in_ns(|| UdpSocket::bind(("::", PORT6)).expect("bind UDP6 in the target"));
    for s in [&rx4, &rx6] {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    Scene {
        m,
        h,
        t,
        n,
        a,
        rx4,
        rx6,
        trunks,
    }
}

fn v4(p: &Pod) -> Ipv4Addr {
    p.ip.parse().unwrap()
}

fn v6(p: &Pod) -> Ipv6Addr {
    p.ipv6().parse().unwrap()
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Scene {
    /// `n` sends `marker` to the target over IPv4 or IPv6 (resent until it arrives: the first
    /// may wait for neighbour resolution); returns every other datagram the target got before
    /// it. What the switch let through earlier is among them.
    fn datagrams_before_marker(&self, ipv6: bool, marker: &str) -> Vec<String> {
        let (rx, to) = if ipv6 {
            (&self.rx6, format!("[{}]:{PORT6}", self.t.ipv6()))
        } else {
            (&self.rx4, format!("{}:{PORT4}", self.t.ip))
        };
        let tx = self.n.in_ns(move || {
            UdpSocket::bind(if ipv6 { "[::]:0" } else { "0.0.0.0:0" }).expect("bind in n")
        });
        let mut others = Vec::new();
        let end = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 2048];
        loop {
            assert!(
                Instant::now() < end,
                "the neighbour's datagram {marker} never reached the target over {} (agent log:\n{})",
                if ipv6 { "IPv6" } else { "IPv4" },
                self.h.agent_log()
            );
            tx.send_to(marker.as_bytes(), &to).expect("send from n");
            while let Ok(n) = rx.recv(&mut buf) {
                let got = String::from_utf8_lossy(&buf[..n]).to_string();
                if got == marker {
                    return others;
                }
                others.push(got);
            }
        }
    }

    /// The frames table 0 dropped as the forger's: the packet counts of its anti-spoofing
    /// drops (its endpoint's cookie) and, on a trunk, of the classifier's table-miss (what a
    /// trunk-mate sends under a MAC no endpoint of the trunk has counts for nobody).
    fn forger_drops(&self) -> u64 {
        let id = self
            .m
            .endpoints()
            .into_iter()
            .find(|e| e["ipAddress"].as_str() == Some(self.a.ip.as_str()))
            .and_then(|e| e["endpointID"].as_str().map(str::to_string))
            .expect("the forger's endpoint");
        let own = format!("cookie={:#x},", netplugin::fabric::cookie::endpoint(&id));
        let base = format!("cookie={:#x},", netplugin::fabric::cookie::BASE);
        self.h
            .flows()
            .lines()
            .filter(|l| l.contains(" table=0,") && l.trim_end().ends_with("actions=drop"))
            .filter(|l| {
                l.contains(&own) || (self.trunks && l.contains(&base) && l.contains(" priority=0 "))
            })
            .filter_map(|l| {
                l.split(", ")
                    .find_map(|f| f.strip_prefix("n_packets="))?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// The forger writes `frames`; returns once the switch has dropped as many frames in
    /// table 0 as the forger's or nobody's (so they were judged, and can no longer arrive).
    fn forge_dropped(&self, frames: Vec<Vec<u8>>, bypass: bool) {
        let before = self.forger_drops();
        let k = frames.len() as u64;
        self.a.send_raw("eth0", frames, bypass);
        wait_for(
            "the switch to drop the forged frames in table 0",
            Duration::from_secs(10),
            || self.forger_drops() >= before + k,
        );
    }
}

fn anti_spoofing(agent_args: &[&str], trunks: bool) {
    let s = scene(agent_args, trunks);
    let (t, n, a) = (&s.t, &s.n, &s.a);
    let (amac, nmac, tmac) = (a.mac(), n.mac(), t.mac());

    // The real neighbour's traffic flows (and puts the neighbour in the target's caches).
    assert!(s.datagrams_before_marker(false, "real-1").is_empty());
    assert!(s.datagrams_before_marker(true, "real6-1").is_empty());
    assert!(t.reaches(&n.ip, Duration::from_secs(10)));
    assert!(t.reaches(&n.ipv6(), Duration::from_secs(10)));
    assert_eq!(t.neighbour(&n.ip), Some(mac_text(nmac)));
    assert_eq!(t.neighbour(&n.ipv6()), Some(mac_text(nmac)));

    // The neighbour's IP with the forger's own MAC; a foreign IPv6 source (the neighbour's
    // address, and a link-local address not the forger's own).
    let frames = vec![
        forge::udp4(amac, tmac, v4(n), v4(t), 4000, PORT4, b"forged-ip"),
        forge::udp6(amac, tmac, v6(n), v6(t), 4000, PORT6, b"forged-ip6"),
        forge::udp6(
            amac,
            tmac,
            link_local(nmac),
            link_local(tmac),
            4000,
            PORT6,
            b"forged-ll",
        ),
    ];
    for bypass in [false, true] {
        s.forge_dropped(frames.clone(), bypass);
    }

    // A gratuitous ARP (as a request and as a broadcast reply, which the switch does not
    // answer itself) and an unsolicited ND advertisement claiming the neighbour's addresses.
    let mut garp_reply = forge::gratuitous_arp(amac, amac, v4(n));
    garp_reply[21] = 2;
    s.forge_dropped(
        vec![
            forge::gratuitous_arp(amac, amac, v4(n)),
            garp_reply,
            forge::unsolicited_na(amac, link_local(amac), v6(n), amac),
            forge::unsolicited_na(amac, link_local(amac), link_local(nmac), amac),
        ],
        true,
    );
    assert_eq!(
        t.neighbour(&n.ip),
        Some(mac_text(nmac)),
        "the target's ARP cache was poisoned"
    );
    assert_eq!(
        t.neighbour(&n.ipv6()),
        Some(mac_text(nmac)),
        "the target's neighbour cache was poisoned"
    );

    // The neighbour's MAC and IP together, with and without the qdisc bypass.
    let full = |m: &str| forge::udp4(nmac, tmac, v4(n), v4(t), 4000, PORT4, m.as_bytes());
    if trunks {
        // Trunk-mates share one switch port: the switch cannot tell this from the neighbour,
        // which is why trunks are not the default (docs/security.md "Pod identity"). Pinned
        // here so that the day trunks learn to, this test says so.
        a.send_raw("eth0", vec![full("forged-full")], true);
        let got = s.datagrams_before_marker(false, "real-2");
        assert!(
            got.iter().any(|g| g == "forged-full"),
            "trunks now stop a trunk-mate posing as another: update docs/security.md and make them safe by default ({got:?})"
        );
    } else {
        for bypass in [false, true] {
            s.forge_dropped(vec![full("forged-full")], bypass);
        }
    }

    // Nothing forged reached the target; the neighbour still does, both ways, both families.
    let got4 = s.datagrams_before_marker(false, "real-3");
    let got6 = s.datagrams_before_marker(true, "real6-3");
    assert!(
        got4.is_empty(),
        "forged datagrams reached the target: {got4:?}"
    );
    assert!(
        got6.is_empty(),
        "forged datagrams reached the target: {got6:?}"
    );
    assert!(n.reaches(&t.ip, Duration::from_secs(10)));
    assert!(n.reaches(&t.ipv6(), Duration::from_secs(10)));

    // The agent read the forger's counter back from the switch and reported it, in its log and
    // to netmaster: the forger's endpoint inspect shows it (veth and pooled ports: on a trunk,
    // frames under a MAC not the sender's count for nobody). Nothing counts for the pods it
    // posed as.
    let id = |p: &Pod| {
        s.m.endpoints()
            .into_iter()
            .find(|e| e["ipAddress"].as_str() == Some(p.ip.as_str()))
            .and_then(|e| e["endpointID"].as_str().map(str::to_string))
            .expect("the pod's endpoint")
    };
    let spoofed = |p: &Pod| {
        let path = format!("/api/v1/inspect/endpoints/{}/", id(p));
        let (st, v) = s.m.api("GET", &path, None);
        assert_eq!(st, 200, "GET {path}: {v}");
        v["Oper"]["spoofedPackets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no spoofedPackets in {path}: {v}"))
    };
    if !trunks {
        let forger = id(a);
        wait_for(
            "the agent to report the forger's dropped frames",
            Duration::from_secs(10),
            || {
                s.h.agent_log()
                    .lines()
                    .any(|l| l.contains("identity not its own") && l.contains(&forger))
            },
        );
        wait_for(
            "the forger's endpoint inspect to show its dropped frames",
            Duration::from_secs(10),
            || spoofed(a) > 0,
        );
    }
    assert_eq!(spoofed(n), 0, "the neighbour the forger posed as");
    assert_eq!(spoofed(t), 0, "the target");
}

#[test]
fn a_pod_with_its_own_veth_cannot_pose_as_its_neighbour() {
    // Named, so that CONTIV_E2E_TRUNKS / CONTIV_E2E_PORT_POOL do not change the mode.
    anti_spoofing(&["--port-pool=0"], false);
}

#[test]
fn a_pod_on_a_pooled_port_cannot_pose_as_its_neighbour() {
    anti_spoofing(&["--port-pool=4"], false);
}

#[test]
fn a_pod_on_a_trunk_can_pose_only_as_a_trunk_mate() {
    anti_spoofing(&["--trunks", "--trunk-idle=1"], true);
}
