//! Several hosts on one underlay: the VXLAN overlay, tenant isolation, membership over time and
//! restarts, with real packets between pods made by the real `contiv` plugin.

use serde_json::json;
use std::time::{Duration, Instant};
use test_e2e::{Cluster, Host, Pod, modes, tunnels, wait_for};

const REACH: Duration = Duration::from_secs(10);

/// A pod of an IPv4-only network sends no IPv6 of its own (the agent turns IPv6 off on its
/// interface): no router solicitations or MLD reports disturb packet counts.
fn quiet(p: &Pod) {
    let out = p.exec(&["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "IPv6 is on in {}",
        p.netns
    );
}

/// The pods' received-packet counters once they stop moving (after turning IPv6 off, the kernel
/// still sends a delayed MLD report or two).
fn settled(pods: &[&Pod]) -> Vec<u64> {
    let read = || pods.iter().map(|p| rx_packets(p)).collect::<Vec<_>>();
    let mut last = read();
    let mut stable_since = Instant::now();
    wait_for("packet counters to settle", Duration::from_secs(20), || {
        let now = read();
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        stable_since.elapsed() >= Duration::from_millis(1500)
    });
    last
}

fn rx_packets(p: &Pod) -> u64 {
    let out = p.exec(&["cat", "/sys/class/net/eth0/statistics/rx_packets"]);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Pings at 10 per second from `from` to `ip` while `during` runs, then until the count of sent
/// pings reaches `at_least`; returns (sent, received).
fn ping_through(from: &Pod, ip: &str, at_least: u32, during: impl FnOnce()) -> (u32, u32) {
    let run = from.ping_start(ip, at_least);
    during();
    run.finish()
}

#[test]
fn pods_on_three_hosts_share_one_segment() {
    let c = Cluster::start(3, &[]);
    c.master
        .network("default", "contiv-net", "10.1.2.0/24", "10.1.2.1");
    let pods: Vec<Pod> = [0, 0, 1, 2]
        .iter()
        .map(|&h| c.pod(h, "contiv-net", "default"))
        .collect();
    for p in &pods {
        assert!(p.ip.starts_with("10.1.2."), "{}", p.ip);
        let mtu = p.exec(&["cat", "/sys/class/net/eth0/mtu"]);
        // Underlay 1500 minus the VXLAN encapsulation.
        assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1450");
    }
    for a in &pods {
        for b in &pods {
            if a.ip != b.ip {
                assert!(
                    a.reaches(&b.ip, REACH),
                    "{} cannot reach {}; flows on host1:\n{}",
                    a.ip,
                    b.ip,
                    c.hosts[0].flows()
                );
            }
        }
    }
    // One hop: the reply comes straight from the peer (TTL untouched, no router between).
    let out = pods[0].exec(&["ping", "-c", "1", "-W", "2", &pods[3].ip]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ttl=64"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let trace = pods[0].exec(&[
        "busybox",
        "traceroute",
        "-n",
        "-m",
        "3",
        "-w",
        "2",
        &pods[3].ip,
    ]);
    let hops = String::from_utf8_lossy(&trace.stdout)
        .lines()
        .filter(|l| !l.starts_with("traceroute"))
        .count();
    assert_eq!(hops, 1, "{}", String::from_utf8_lossy(&trace.stdout));
    // TCP across hosts, with more than one MTU of data (checksums and MTU right).
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(pods[0].tcp_exchange(&pods[2], 7001, &data), data);
    assert_eq!(pods[3].tcp_exchange(&pods[1], 7002, &data), data);
    // iperf3 across hosts moves data (the figures are the benchmark's business).
    assert!(pods[2].iperf3_to(&pods[0], 1) > 0.0);

    // Broadcast and unknown unicast from host1 reach every member on every host, once.
    for p in &pods {
        quiet(p);
    }
    let others: Vec<&Pod> = pods[1..].iter().collect();
    let before = settled(&others);
    pods[0].exec(&["ping", "-b", "-c", "1", "-W", "1", "10.1.2.255"]);
    let after: Vec<u64> = others.iter().map(|p| rx_packets(p)).collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(
            a - b,
            1,
            "broadcast copies at pod {} (of {:?} -> {:?})",
            i + 1,
            before,
            after
        );
    }
    // A MAC nobody has: the switch floods it like a broadcast.
    if modes::skip_unless_veth_ports(
        "pods_on_three_hosts_share_one_segment (unknown unicast reaches every pod)",
        "the flood reaches the trunks, but a trunked pod's macvlan delivers by destination MAC and drops it (docs/decisions.md, Network trunks)",
    ) {
        return;
    }
    pods[0].exec(&[
        "ip",
        "neigh",
        "replace",
        "10.1.2.250",
        "lladdr",
        "02:00:00:00:00:fa",
        "dev",
        "eth0",
    ]);
    let before = settled(&others);
    pods[0].exec(&["ping", "-c", "1", "-W", "1", "10.1.2.250"]);
    let after: Vec<u64> = others.iter().map(|p| rx_packets(p)).collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(
            a - b,
            1,
            "unknown unicast copies at pod {} ({before:?} -> {after:?})",
            i + 1
        );
    }
}

#[test]
fn tenants_with_the_same_subnet_never_exchange_a_packet() {
    let c = Cluster::start(2, &[]);
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    c.master.network("blue", "net", "10.1.2.0/24", "10.1.2.1");
    // Same addresses (and so the same MACs) in both tenants, on both hosts.
    let d1 = c.pod(0, "net", "default");
    let d2 = c.pod(1, "net", "default");
    let b1 = c.pod(0, "net", "blue");
    let b2 = c.pod(1, "net", "blue");
    let b3 = c.pod(1, "net", "blue");
    quiet(&d1);
    quiet(&d2);
    assert_eq!(
        (d1.ip.as_str(), d2.ip.as_str()),
        (b1.ip.as_str(), b2.ip.as_str())
    );
    assert!(d1.reaches(&d2.ip, REACH) && d2.reaches(&d1.ip, REACH));
    assert!(b1.reaches(&b2.ip, REACH) && b1.reaches(&b3.ip, REACH));
    assert!(!d1.ping(&b3.ip), "default reached blue's {}", b3.ip);
    // Count what the default pods receive while only blue talks (their own IPv6 chatter off).
    let before = settled(&[&d1, &d2]);
    // Unicast to the very same addresses, and broadcasts.
    for _ in 0..3 {
        assert!(b1.ping(&b2.ip) && b2.ping(&b1.ip));
    }
    b1.exec(&["ping", "-b", "-c", "2", "-W", "1", "10.1.2.255"]);
    let after = vec![rx_packets(&d1), rx_packets(&d2)];
    assert_eq!(before, after, "a default pod received blue's packets");

    // Two networks of one tenant are separate segments too (bridge mode): a broadcast in one
    // never shows up in the other.
    c.master
        .network("default", "other", "10.7.0.0/24", "10.7.0.1");
    let o1 = c.pod(1, "other", "default");
    let o2 = c.pod(0, "other", "default");
    assert!(o1.reaches(&o2.ip, REACH));
    quiet(&o2);
    quiet(&o1);
    let before = settled(&[&o2])[0];
    d2.exec(&[
        "ping",
        "-b",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        "10.1.2.255",
    ]);
    d2.exec(&["ping", "-c", "1", "-W", "1", &o2.ip]);
    assert_eq!(
        rx_packets(&o2),
        before,
        "network 'other' saw traffic of 'net'"
    );
}

#[test]
fn hosts_join_and_leave() {
    // Short node leases so a stopped agent is noticed within seconds, and a grace period that a
    // quick restart fits in.
    let mut c = Cluster::start(2, &["--node-ttl", "3", "--node-grace", "10"]);
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    let p1 = c.pod(0, "net", "default");
    let joined = Instant::now();
    let i = c.add_host("host3");
    c.wait_for_mesh();
    let p3 = c.pod(i, "net", "default");
    assert!(p3.reaches(&p1.ip, REACH) && p1.reaches(&p3.ip, REACH));
    eprintln!("host3: join to reachability {:?}", joined.elapsed());

    // host3's agent stops: its lease runs out and the others remove their tunnel to it.
    c.hosts[i].kill_agent();
    let vx3 = test_e2e_tunnel_name(&c.hosts[i].vtep);
    wait_for("tunnels to host3 removed", Duration::from_secs(20), || {
        c.hosts[..2].iter().all(|h| !tunnels(h).contains(&vx3))
    });
    assert!(!p1.ping(&p3.ip));
    // Back again within the grace period: tunnels return, and the pod is reachable again (its
    // endpoint was kept).
    c.hosts[i].start_agent();
    c.wait_for_mesh();
    assert!(p1.reaches(&p3.ip, REACH));

    // Gone for good: after the grace period netmaster reclaims host3's endpoints, and the other
    // hosts drop the flows that led to them.
    c.hosts[i].kill_agent();
    let on_host3 = |m: &test_e2e::Netmaster| {
        m.endpoints()
            .iter()
            .filter(|e| e["host"] == "host3")
            .count()
    };
    assert_eq!(on_host3(&c.master), 1);
    wait_for(
        "host3's endpoints reclaimed",
        Duration::from_secs(40),
        || on_host3(&c.master) == 0,
    );
    wait_for("host1 forgets host3's pod", Duration::from_secs(10), || {
        !c.hosts[0].flows().contains(&format!("arp_tpa={}", p3.ip))
    });
    assert_eq!(c.master.endpoints().len(), 1, "{:?}", c.master.endpoints());
}

fn test_e2e_tunnel_name(vtep: &str) -> String {
    let a: std::net::Ipv4Addr = vtep.parse().unwrap();
    format!("vx{:08x}", u32::from(a))
}

#[test]
fn restarts_keep_traffic_flowing() {
    let mut c = Cluster::start(2, &[]);
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    let a = c.pod(0, "net", "default");
    let b = c.pod(1, "net", "default");
    assert!(a.reaches(&b.ip, REACH));
    // The network's gateway (router port) comes just after the first pod: count with it.
    wait_for("host1's router port flows", REACH, || {
        c.hosts[0].flows().contains("02:00:00:11:11:11")
    });
    let flows_before = c.hosts[0].flows().lines().count();

    // The agent on host1 crashes and comes back while pings run.
    let (sent, got) = ping_through(&a, &b.ip, 40, || {
        std::thread::sleep(Duration::from_millis(500));
        c.hosts[0].kill_agent();
        c.hosts[0].start_agent();
    });
    eprintln!("agent restart: {sent} sent, {got} received");
    assert!(
        sent - got <= 1,
        "agent restart lost {} of {sent} pings",
        sent - got
    );
    assert_eq!(
        c.hosts[0].flows().lines().count(),
        flows_before,
        "flows duplicated or lost"
    );

    // ovs-vswitchd on host2 crashes and is started again: the agent restores every flow.
    let (sent, got) = ping_through(&a, &b.ip, 60, || {
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        c.hosts[1].kill_vswitchd();
        c.hosts[1].start_vswitchd();
        eprintln!("ovs-vswitchd killed and started again in {:?}", t.elapsed());
    });
    eprintln!("ovs-vswitchd restart: {sent} sent, {got} received");
    // While ovs-vswitchd is down nothing forwards (userspace datapath); what we control is how
    // fast the flows come back once it is up.
    assert!(
        got + 5 >= sent,
        "vswitchd restart lost {} of {sent} pings; host2's agent:\n{}",
        sent - got,
        c.hosts[1].agent_log()
    );
    assert!(a.reaches(&b.ip, REACH) && b.reaches(&a.ip, REACH));
    // Delete still works after both restarts.
    let conf = c.hosts[0].conf("1.0.0", json!({"network": "net"}));
    let del = c.hosts[0].cni("DEL", &a.container_id, &a.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
}

#[test]
fn repeated_start_and_remove_leaves_nothing() {
    let c = Cluster::start(3, &[]);
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    let ports_before: Vec<Vec<String>> = c.hosts.iter().map(|h| h.ovs_ports()).collect();
    let links_before: Vec<usize> = c.hosts.iter().map(|h| h.links().len()).collect();
    for round in 0..5 {
        let pods: Vec<(usize, Pod)> = (0..6)
            .map(|i| (i % 3, c.pod(i % 3, "net", "default")))
            .collect();
        for (_, a) in &pods {
            for (_, b) in &pods {
                if a.ip != b.ip {
                    assert!(
                        a.reaches(&b.ip, REACH),
                        "round {round}: {} -> {}",
                        a.ip,
                        b.ip
                    );
                }
            }
        }
        for (h, p) in &pods {
            let host = &c.hosts[*h];
            let conf = host.conf("1.0.0", json!({"network": "net"}));
            let del = host.cni("DEL", &p.container_id, &p.netns_path(), "eth0", &conf);
            assert!(del.ok(), "{}", del.stdout);
        }
    }
    assert!(
        c.master.endpoints().is_empty(),
        "{:?}",
        c.master.endpoints()
    );
    let (_, inspect) = c
        .master
        .api("GET", "/api/v1/inspect/networks/default:net/", None);
    assert_eq!(
        inspect["Oper"]["numEndpoints"].as_u64().unwrap_or(0),
        0,
        "{inspect}"
    );
    for (i, h) in c.hosts.iter().enumerate() {
        // In trunk mode, once the network's trunk has been idle for `--trunk-idle`.
        let ports = modes::settled(&ports_before[i], || h.ovs_ports());
        assert_eq!(ports, ports_before[i], "{} kept ports", h.name);
        let links = modes::settled(&links_before[i], || h.links().len());
        assert_eq!(links, links_before[i], "{} kept links", h.name);
        // Only tunnel and base flows are left: no endpoint's flows linger.
        let flows = h.flows();
        assert!(!flows.contains("cookie=0x2"), "{}: {flows}", h.name);
        assert!(!flows.contains("cookie=0x3"), "{}: {flows}", h.name);
    }
}

#[test]
fn arp_is_proxied_or_flooded_by_the_global_mode() {
    let c = Cluster::start(2, &[]);
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    let a = c.pod(0, "net", "default");
    let b = c.pod(1, "net", "default");
    assert!(a.reaches(&b.ip, REACH));
    // Proxy (the default): host1's switch answered a's ARP for b.
    let answered = |h: &Host| {
        h.flows()
            .lines()
            .filter(|l| l.contains("arp_op=1") && !l.contains("n_packets=0"))
            .count()
    };
    assert!(answered(&c.hosts[0]) > 0, "{}", c.hosts[0].flows());

    let (_, mut g) = c.master.api("GET", "/api/v1/globals/global/", None);
    g["arpMode"] = json!("flood");
    let (s, v) = c.master.api("POST", "/api/v1/globals/global/", Some(g));
    assert_eq!(s, 200, "{v}");
    // The gateway's responder stays (the switch answers for the gateway in both modes).
    wait_for("ARP responders removed", Duration::from_secs(10), || {
        c.hosts[0]
            .flows()
            .lines()
            .all(|l| !l.contains("arp_op=1") || l.contains("arp_tpa=10.1.2.1"))
    });
    // Flooded ARP still resolves across hosts.
    a.exec(&["ip", "neigh", "flush", "all"]);
    assert!(a.reaches(&b.ip, REACH));
}
