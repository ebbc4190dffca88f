//! Network trunks (`--trunks`): the CNI pods of a network on a host share one switch port,
//! each with a VEPA macvlan of the trunk's waiting end. One host, the real netmaster, agent,
//! OVS (userspace datapath) and plugin, pods in namespaces, real packets.

use serde_json::json;
use std::time::Duration;
use test_e2e::{Cluster, Host, Netmaster, Pod, wait_for};

fn setup() -> (Netmaster, Host) {
    let m = Netmaster::start();
    m.network("default", "default-net", "10.1.2.0/24", "10.1.2.1");
    let mut h = Host::netns_only(&m, "host1");
    h.boot(&["--trunks"]);
    (m, h)
}

fn link_details(p: &Pod) -> String {
    String::from_utf8_lossy(&p.exec(&["ip", "-d", "link", "show", "eth0"]).stdout).to_string()
}

fn has_eth0(p: &Pod) -> bool {
    p.exec(&["ip", "link", "show", "eth0"]).status.success()
}

#[test]
fn trunked_pods_talk_are_isolated_and_share_one_port_per_network() {
    let (m, h) = setup();
    m.network("default", "other", "10.1.3.0/24", "10.1.3.1");
    let conf = h.conf("1.1.0", json!({}));
    let a1 = h.pod(&conf);
    let a2 = h.pod(&conf);
    let b1 = h.pod(&h.conf("1.1.0", json!({"network": "other"})));
    assert_eq!(
        (a1.ip.as_str(), a2.ip.as_str(), b1.ip.as_str()),
        ("10.1.2.2", "10.1.2.3", "10.1.3.2")
    );
    // A VEPA macvlan with the endpoint's MAC; one port per network, no veth per pod.
    let d = link_details(&a1);
    assert!(d.contains("macvlan mode vepa"), "{d}");
    assert!(
        d.contains(a1.result["interfaces"][1]["mac"].as_str().unwrap()),
        "{d}"
    );
    let trunks = h.trunk_ports();
    assert_eq!(trunks.len(), 2, "{trunks:?}");
    let host_if = |p: &Pod| {
        p.result["interfaces"][0]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(host_if(&a1), host_if(&a2));
    assert_ne!(host_if(&a1), host_if(&b1));
    assert!(trunks.contains(&host_if(&a1)));
    assert!(h.ovs_ports_now().iter().all(|p| !p.starts_with("vc")));
    assert_eq!(h.trunk_records().len(), 3, "{:?}", h.trunk_records());
    let v6 = a1.exec(&["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"]);
    assert_eq!(String::from_utf8_lossy(&v6.stdout).trim(), "1");

    // Trunk-mates reach each other through the switch (out of the port they came in on).
    assert!(a1.reaches(&a2.ip, Duration::from_secs(5)), "a1 -> a2");
    assert!(a2.reaches(&a1.ip, Duration::from_secs(5)), "a2 -> a1");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(a1.tcp_exchange(&a2, 5001, &data), data, "TCP a1 -> a2");
    // A broadcast reaches the trunk-mate.
    a2.exec(&["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"]);
    b1.exec(&["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"]);
    let bc = a1.exec(&["ping", "-b", "-c", "2", "-W", "1", "10.1.2.255"]);
    let bc_out = String::from_utf8_lossy(&bc.stdout);
    assert!(bc_out.contains(&format!("from {}", a2.ip)), "{bc_out}");
    assert!(!bc_out.contains(&format!("from {}", b1.ip)), "{bc_out}");
    // Networks stay apart.
    a1.exec(&["ip", "route", "add", "10.1.3.0/24", "dev", "eth0"]);
    b1.exec(&["ip", "route", "add", "10.1.2.0/24", "dev", "eth0"]);
    assert!(!a1.reaches(&b1.ip, Duration::from_secs(2)), "a1 reached b1");

    // IPv6 (neighbour discovery is multicast) on a dual-stack network's trunk.
    m.dual_stack_network("dual", "10.1.4.0/24", "10.1.4.1", "fd00:4::/64");
    let dual = h.conf("1.1.0", json!({"network": "dual"}));
    let (d1, d2) = (h.pod(&dual), h.pod(&dual));
    let to = d2.ipv6();
    wait_for("IPv6 ping d1 -> d2", Duration::from_secs(10), || {
        d1.exec(&["ping", "-6", "-c", "1", "-W", "1", &to])
            .status
            .success()
    });

    // CHECK passes.
    let mut c = conf.clone();
    c["prevResult"] = a1.result.clone();
    let chk = h.cni("CHECK", &a1.container_id, &a1.netns_path(), "eth0", &c);
    assert!(chk.ok(), "CHECK: {}", chk.stdout);

    // DEL releases the address and the record; the next pod gets both.
    let del = h.cni("DEL", &a2.container_id, &a2.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
    assert_eq!(h.trunk_records().len(), 4);
    drop(a2);
    let a3 = h.pod(&conf);
    assert_eq!(a3.ip, "10.1.2.3");
    assert!(a3.reaches(&a1.ip, Duration::from_secs(5)), "a3 -> a1");

    // A DEL whose namespace stays, then an ADD into it under another container id (a restarted
    // sandbox): the old interface is in the way, and goes.
    let kept = h.pod(&conf);
    let del = h.cni("DEL", &kept.container_id, &kept.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
    let again = h.cni("ADD", "again", &kept.netns_path(), "eth0", &conf);
    assert!(
        again.ok(),
        "re-ADD into a DELed pod's namespace: {}",
        again.stdout
    );
    let ip = again.json["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        String::from_utf8_lossy(&kept.exec(&["ip", "-o", "addr", "show", "eth0"]).stdout)
            .contains(&ip)
    );
    // A DEL whose namespace stays: the next pod gets its address, so its MAC, which the kernel
    // gives one macvlan of a trunk only: the old interface goes.
    let del = h.cni("DEL", "again", &kept.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
    let next = h.pod(&conf);
    assert_eq!(format!("{}/24", next.ip), ip);
    assert!(!has_eth0(&kept), "the DELed pod's interface is still there");
    assert!(next.reaches(&a1.ip, Duration::from_secs(5)), "next -> a1");

    // GC removes what the runtime no longer lists (b1 and the dual pods too: same CNI config
    // name, other Contiv networks).
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": a1.container_id, "ifname": "eth0"}]);
    let out = h.cni("GC", "", "", "", &gc);
    assert!(out.ok(), "{}", out.stdout);
    assert_eq!(
        h.trunk_records(),
        vec![format!("{}-eth0.json", a1.container_id)]
    );
    assert!(has_eth0(&a1));
    assert!(
        !a1.reaches(&next.ip, Duration::from_secs(2)),
        "GC left a removed pod connected"
    );
    // The removed pods' interfaces go too (their namespaces are still there).
    wait_for(
        "the removed pods' interfaces to go",
        Duration::from_secs(5),
        || !has_eth0(&b1) && !has_eth0(&d1) && !has_eth0(&next),
    );
}

#[test]
fn a_failed_trunked_add_leaks_nothing() {
    let (m, h) = setup();
    let conf = h.conf("1.1.0", json!({}));
    // The pod already has an eth0 (not one of ours).
    let p = Pod::new();
    let made = p.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0",
    ]);
    assert!(made.status.success(), "{made:?}");
    let out = h.cni("ADD", &p.container_id, &p.netns_path(), "eth0", &conf);
    assert!(!out.ok(), "{}", out.stdout);
    assert!(
        out.msg().contains("already has an interface eth0"),
        "{}",
        out.stdout
    );
    assert!(has_eth0(&p), "the pod's own eth0 was deleted");
    // A namespace that does not exist.
    let out = h.cni("ADD", "gone", "/var/run/netns/cte-none", "eth0", &conf);
    assert!(!out.ok() && out.error_code() == 4, "{}", out.stdout);
    // A network that does not exist: named, nothing made.
    let out = h.cni(
        "ADD",
        "nonet",
        &p.netns_path(),
        "eth1",
        &h.conf("1.1.0", json!({"network": "nope"})),
    );
    assert!(!out.ok() && out.msg().contains("nope"), "{}", out.stdout);
    assert!(!p.exec(&["ip", "link", "show", "eth1"]).status.success());
    assert!(h.trunk_records().is_empty(), "{:?}", h.trunk_records());
    assert!(m.endpoints().is_empty(), "{:?}", m.endpoints());
    // The trunk still serves.
    let (a, b) = (h.pod(&conf), h.pod(&conf));
    assert!(a.reaches(&b.ip, Duration::from_secs(5)));
    assert!(h.ovs_ports_now().iter().all(|p| !p.starts_with("vc")));
}

/// Issue 17.2: a FIFO given as the pod's namespace froze the agent (opening it blocked a
/// runtime thread; two such calls on two cores stopped every call); a regular file got "the
/// kernel refused the trunk's link". Anything that is not a network namespace is refused at
/// once (code 4, saying what it is), and the agent keeps serving.
#[test]
fn a_path_that_is_no_network_namespace_is_refused_at_once() {
    let (m, h) = setup();
    // A network without a trunk yet, and one with (its first pod made it).
    m.network("default", "other", "10.1.3.0/24", "10.1.3.1");
    let conf = h.conf("1.1.0", json!({}));
    let first = h.pod(&conf);
    let dir = h.dir.join("not-netns");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let file = dir.join("file");
    std::fs::write(&file, b"").unwrap();
    let other = h.conf("1.1.0", json!({"network": "other"}));
    // More FIFO calls at once than the agent has runtime threads (two cores here).
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let (fifo, conf) = (fifo.display().to_string(), conf.clone());
            std::thread::spawn(move || {
                test_e2e::cni_call("ADD", &format!("fifo{i}"), &fifo, "eth0", &conf)
            })
        })
        .collect();
    for c in calls {
        let out = c.join().unwrap();
        assert_eq!(out.error_code(), 4, "{}", out.stdout);
        assert!(out.msg().contains("named pipe"), "{}", out.stdout);
    }
    for (path, what) in [(&file, "regular file"), (&dir, "directory")] {
        for c in [&conf, &other] {
            let out = h.cni("ADD", "notns", &path.display().to_string(), "eth0", c);
            assert_eq!(out.error_code(), 4, "{}", out.stdout);
            assert!(
                out.msg().contains("is not a network namespace") && out.msg().contains(what),
                "{}",
                out.stdout
            );
        }
    }
    assert!(m.endpoints().len() == 1, "{:?}", m.endpoints());
    // The agent still serves.
    let second = h.pod(&conf);
    assert!(first.reaches(&second.ip, Duration::from_secs(5)));
}

#[test]
fn trunked_pods_survive_an_agent_restart() {
    let (m, mut h) = setup();
    let conf = h.conf("1.1.0", json!({}));
    let a = h.pod(&conf);
    let b = h.pod(&conf);
    let gone = h.pod(&conf);
    let kept = h.pod(&conf);
    let trunks = h.trunk_ports();
    h.kill_agent();
    // DELs the agent missed: netmaster released their addresses meanwhile; one pod's
    // namespace went, the other's stays (its interface must go).
    for p in [&gone, &kept] {
        let ep = format!("{}-eth0", p.container_id);
        let (code, _) = m.api("DELETE", &format!("/api/v1/endpoints/{ep}/"), None);
        assert!(code < 300, "release {ep}: {code}");
    }
    drop(gone);
    assert!(
        a.reaches(&b.ip, Duration::from_secs(5)),
        "a -> b, agent down"
    );
    // Half a trunk a crash left behind: its other end only, in the side namespace.
    let stray = "vt0000000000ab";
    let side_ns = h.pool_ns();
    let side = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(["-n", &side_ns])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        side(&[
            "link", "add", stray, "type", "veth", "peer", "name", "strayp"
        ])
        .status
        .success()
    );
    h.start_agent();
    assert!(
        a.reaches(&b.ip, Duration::from_secs(5)),
        "a -> b after restart"
    );
    assert!(
        !side(&["link", "show", stray]).status.success(),
        "half a trunk left in the side namespace"
    );
    assert_eq!(h.trunk_ports(), trunks);
    assert_eq!(h.trunk_records().len(), 2, "{:?}", h.trunk_records());
    wait_for(
        "the missed DEL's interface to go",
        Duration::from_secs(5),
        || !has_eth0(&kept),
    );
    // DEL works after the restart, and a new pod works (with the released address).
    let del = h.cni("DEL", &b.container_id, &b.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
    assert_eq!(h.trunk_records().len(), 1);
    let c = h.pod(&conf);
    assert!(c.reaches(&a.ip, Duration::from_secs(5)), "c -> a");
    assert_eq!(m.endpoints().len(), 2);
}

#[test]
fn an_idle_trunk_is_deleted_and_made_again() {
    let m = Netmaster::start();
    m.network("default", "default-net", "10.1.2.0/24", "10.1.2.1");
    let mut h = Host::netns_only(&m, "host1");
    h.boot(&["--trunks", "--trunk-idle=1"]);
    let links_before = h.links();
    let conf = h.conf("1.1.0", json!({}));
    let a = h.pod(&conf);
    assert_eq!(h.trunk_ports().len(), 1);
    let del = h.cni("DEL", &a.container_id, &a.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
    drop(a);
    let waiting_ends = || {
        String::from_utf8_lossy(
            &std::process::Command::new("ip")
                .args(["-n", &h.pool_ns(), "-o", "link", "show"])
                .output()
                .unwrap()
                .stdout,
        )
        .lines()
        .filter(|l| l.contains(": vt"))
        .count()
    };
    // Port, host end and waiting end all go.
    wait_for("the idle trunk to go", Duration::from_secs(10), || {
        h.trunk_ports().is_empty() && h.links() == links_before && waiting_ends() == 0
    });
    assert!(
        h.flows().lines().all(|l| !l.contains("NXM_OF_IN_PORT")),
        "{}",
        h.flows()
    );
    // The network's next pod gets a new trunk.
    let (b, c) = (h.pod(&conf), h.pod(&conf));
    assert_eq!(h.trunk_ports().len(), 1);
    assert!(b.reaches(&c.ip, Duration::from_secs(5)), "b -> c");
}

#[test]
fn trunked_pods_span_hosts() {
    let c = Cluster::start_with_agents(2, &[], &["--trunks"]);
    c.master
        .network("default", "contiv-net", "10.1.2.0/24", "10.1.2.1");
    let pods: Vec<Pod> = [0, 0, 1, 1]
        .iter()
        .map(|&h| c.pod(h, "contiv-net", "default"))
        .collect();
    for h in &c.hosts {
        assert_eq!(h.trunk_ports().len(), 1, "{}: {:?}", h.name, h.ovs_ports());
    }
    for a in &pods {
        for b in &pods {
            if a.ip != b.ip {
                assert!(
                    a.reaches(&b.ip, Duration::from_secs(5)),
                    "{} cannot reach {}; flows on host1:\n{}",
                    a.ip,
                    b.ip,
                    c.hosts[0].flows()
                );
            }
        }
    }
    // TCP across hosts, more than one MTU of data, both trunk-to-trunk directions.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(pods[0].tcp_exchange(&pods[2], 7001, &data), data);
    assert_eq!(pods[3].tcp_exchange(&pods[1], 7002, &data), data);
    // A broadcast from host1 reaches the trunk-mate and both pods on host2.
    for p in &pods[1..] {
        p.exec(&["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"]);
    }
    let bc = pods[0].exec(&["ping", "-b", "-c", "3", "-W", "1", "10.1.2.255"]);
    let bc_out = String::from_utf8_lossy(&bc.stdout);
    for p in &pods[1..] {
        assert!(
            bc_out.contains(&format!("from {}", p.ip)),
            "{}: {bc_out}",
            p.ip
        );
    }
}

#[test]
fn policy_applies_between_trunk_mates() {
    let (m, h) = setup();
    let post = |path: &str, body: serde_json::Value| {
        let (s, v) = m.api("POST", path, Some(body));
        assert_eq!(s, 200, "POST {path}: {v}");
    };
    post(
        "/api/v1/policys/default:p/",
        json!({"tenantName": "default", "policyName": "p"}),
    );
    for (id, prio, port, action) in [("1", 1, 0, "deny"), ("2", 100, 8000, "allow")] {
        let mut r = json!({"tenantName": "default", "policyName": "p", "ruleId": id,
            "direction": "in", "priority": prio, "protocol": "tcp", "action": action});
        if port != 0 {
            r["port"] = json!(port);
        }
        post(&format!("/api/v1/rules/default:p:{id}/"), r);
    }
    post(
        "/api/v1/endpointGroups/default:web/",
        json!({"tenantName": "default", "groupName": "web", "networkName": "default-net", "policies": ["p"]}),
    );
    let server = h.pod(&h.conf("1.1.0", json!({"group": "web"})));
    let client = h.pod(&h.conf("1.1.0", json!({})));
    // Same host, same network: the same trunk, and the switch still judges what passes.
    assert_eq!(
        server.result["interfaces"][0]["name"],
        client.result["interfaces"][0]["name"]
    );
    assert!(
        client.reaches(&server.ip, Duration::from_secs(5)),
        "ICMP is allowed"
    );
    assert!(client.connects_to(&server, 8000), "8000 refused");
    assert!(!client.connects_to(&server, 8001), "8001 let through");
    // The rule goes: 8001 opens.
    let (s, v) = m.api("DELETE", "/api/v1/rules/default:p:1/", None);
    assert_eq!(s, 200, "{v}");
    wait_for("8001 to open", Duration::from_secs(10), || {
        client.connects_to(&server, 8001)
    });
}

#[test]
fn trunked_and_veth_pods_share_a_network() {
    let (_m, h) = setup();
    let t1 = h.pod(&h.conf("1.1.0", json!({})));
    let t2 = h.pod(&h.conf("1.1.0", json!({})));
    // An MTU above the trunks' gets a veth and port of its own, on the same network.
    let v = h.pod(&h.conf("1.1.0", json!({"mtu": 1460})));
    assert!(link_details(&v).contains("veth"), "{}", link_details(&v));
    assert_eq!(h.trunk_ports().len(), 1);
    assert!(h.ovs_ports_now().iter().any(|p| p.starts_with("vc")));
    for (a, b) in [(&t1, &v), (&v, &t1), (&t1, &t2)] {
        assert!(
            a.reaches(&b.ip, Duration::from_secs(5)),
            "{} -> {}",
            a.ip,
            b.ip
        );
    }
    // A broadcast from either kind reaches both others, once each (the first request's replies
    // are counted): the flood lists the veth port and then the trunk.
    for p in [&t1, &t2, &v] {
        p.exec(&["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"]);
    }
    for (from, others) in [(&t1, [&t2, &v]), (&v, [&t1, &t2])] {
        let bc = from.exec(&["ping", "-b", "-c", "2", "-W", "1", "10.1.2.255"]);
        let out = String::from_utf8_lossy(&bc.stdout);
        for o in others {
            let first = format!("from {}: icmp_seq=1 ", o.ip);
            assert_eq!(
                out.matches(&first).count(),
                1,
                "{} -> {}: {out}",
                from.ip,
                o.ip
            );
        }
    }
}
