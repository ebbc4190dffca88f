//! North-south (issue 19, first slice): the distributed gateway, pods to the hosts and the
//! outside, the host to its pods, for two tenants with one subnet, IPv4 and IPv6, with real
//! packets in the simulated cluster and an "outside" namespace on the underlay.

use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use test_e2e::{Cluster, Host, Outside, PING_INTERVAL, Pod, modes, wait_for};

const REACH: Duration = Duration::from_secs(10);

/// Two hosts and the outside router, the hosts routing the internet host through it.
fn cluster() -> (Cluster, Outside) {
    let c = Cluster::start(2, &[]);
    let o = Outside::new(&c.underlay);
    for h in &c.hosts {
        o.route_from(h);
    }
    (c, o)
}

/// Opens a TCP connection from `pod` to the internet host at `dst`, gets an answer back over
/// it, and returns the source address the outside saw.
fn tcp_to_outside(o: &Outside, pod: &Pod, dst: &str, port: u16) -> String {
    let l = o.listen(dst, port);
    l.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + REACH;
        loop {
            match l.accept() {
                Ok((mut c, peer)) => {
                    c.set_nonblocking(false).unwrap();
                    c.write_all(b"from outside").unwrap();
                    return Some(peer.ip().to_string());
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return None,
            }
        }
    });
    let to = std::net::SocketAddr::new(dst.parse().unwrap(), port);
    let mut s = pod
        .in_ns(move || std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("{} connects to the outside {dst}: {e}", pod.netns));
    s.set_read_timeout(Some(REACH)).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got, b"from outside", "the outside's answer reaches the pod");
    server
        .join()
        .unwrap()
        .expect("the outside accepted the connection")
}

/// Whether the host's own namespace reaches `ip` by ping (bounded).
fn host_reaches(host: &Host, ip: &str) -> bool {
    let end = Instant::now() + REACH;
    while Instant::now() < end {
        if host
            .exec(&["ping", "-c", "1", "-W", "1", ip])
            .status
            .success()
        {
            return true;
        }
    }
    false
}

/// Whether the host's own namespace opens a TCP connection to a listener in `pod` at `ip`.
fn host_connects(host: &Host, pod: &Pod, ip: &str, port: u16) -> bool {
    let l = pod.tcp_listener(port);
    let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let ok = host
        .in_ns(move || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok());
    drop(l);
    ok
}

#[test]
fn two_tenants_with_one_subnet_reach_gateway_hosts_and_outside() {
    let (c, o) = cluster();
    for t in ["default", "blue"] {
        c.master.network(t, "net", "10.1.2.0/24", "10.1.2.1");
    }
    // Each tenant on each host: the same addresses in both tenants.
    let pods: Vec<(usize, &str, Pod)> = [(0, "default"), (0, "blue"), (1, "default"), (1, "blue")]
        .into_iter()
        .map(|(h, t)| (h, t, c.pod(h, "net", t)))
        .collect();
    for (h, t, p) in &pods {
        let me = &c.hosts[*h];
        let other = &c.hosts[1 - h];
        assert!(
            p.reaches("10.1.2.1", REACH),
            "{t} pod on {} pings its gateway; agent log:\n{}",
            me.name,
            me.agent_log()
        );
        assert!(
            p.reaches(&me.vtep, REACH),
            "{t} pod reaches its host {}",
            me.vtep
        );
        assert!(
            p.reaches(&other.vtep, REACH),
            "{t} pod reaches node {}",
            other.vtep
        );
        assert!(
            p.reaches(Outside::HOST, REACH),
            "{t} pod on {} pings the outside",
            me.name
        );
        let seen = tcp_to_outside(&o, p, Outside::HOST, 8080);
        assert_eq!(
            seen, me.vtep,
            "the outside sees the node's address for a {t} pod"
        );
    }
    // Each tenant has its own router on each host; a gateway network per tenant.
    for h in &c.hosts {
        let mut r = h.router_namespaces();
        r.sort();
        assert_eq!(r, [h.router_netns("blue"), h.router_netns("default")]);
    }

    // The host reaches the pods it runs: the default tenant's by pod address, every tenant's
    // by private address (the two pods of a host may share one address).
    for (h, t, p) in &pods {
        let host = &c.hosts[*h];
        if *t == "default" {
            assert!(
                host_reaches(host, &p.ip),
                "{} pings its pod {}",
                host.name,
                p.ip
            );
            assert!(
                host_connects(host, p, &p.ip, 9090),
                "{} connects to its pod",
                host.name
            );
        }
        if modes::trunks() {
            eprintln!("trunks: trunk-mates share a port number, no private addresses");
            continue;
        }
        let pvt = host.private_address(t, &p.ip, REACH);
        assert!(pvt.starts_with("172.19."), "{pvt}");
        // Endpoint inspect shows it, as the agent reports it (every 2 s).
        let end = Instant::now() + REACH;
        let shown = loop {
            let out = c.master.netctl(&["endpoint", "inspect", &p.container_id]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            if v["Oper"]["privateIPAddress"] == pvt.as_str() || Instant::now() > end {
                break v;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            shown["Oper"]["privateIPAddress"] == pvt.as_str(),
            "netctl endpoint inspect shows the {t} pod's private address {pvt}: {shown}"
        );
        assert!(
            host_reaches(host, &pvt),
            "{} pings its {t} pod at {pvt}",
            host.name
        );
        assert!(
            host_connects(host, p, &pvt, 9091),
            "{} connects to its {t} pod at {pvt}",
            host.name
        );
    }

    // The last endpoint of a tenant on a host gone: its router goes too.
    let (_, _, blue0) = &pods[1];
    let conf = c.hosts[0].conf("1.0.0", json!({"network": "net", "tenant": "blue"}));
    let del = c.hosts[0].cni(
        "DEL",
        &blue0.container_id,
        &blue0.netns_path(),
        "eth0",
        &conf,
    );
    assert!(del.ok(), "DEL: {}", del.stdout);
    wait_for("host1's blue router and its port to go", REACH, || {
        c.hosts[0].router_namespaces() == [c.hosts[0].router_netns("default")]
            && c.hosts[0]
                .ovs_ports_now()
                .iter()
                .filter(|p| p.starts_with("vr"))
                .count()
                == 1
    });
    assert!(
        pods[0].2.reaches(Outside::HOST, REACH),
        "the default tenant keeps its way out"
    );
}

#[test]
fn dual_stack_pods_reach_the_ipv6_gateway_and_outside() {
    let (c, o) = cluster();
    let (s, v) = c.master.api(
        "POST",
        "/api/v1/networks/default:v6net/",
        Some(
            json!({"tenantName": "default", "networkName": "v6net", "encap": "vxlan",
            "subnet": "10.3.0.0/24", "gateway": "10.3.0.1",
            "ipv6Subnet": "fd00:3::/64", "ipv6Gateway": "fd00:3::1"}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    for h in 0..2 {
        let p = c.pod(h, "v6net", "default");
        let me = &c.hosts[h];
        let reaches6 = |ip: &str| {
            let end = Instant::now() + REACH;
            while Instant::now() < end {
                if p.exec(&["ping", "-6", "-c", "1", "-W", "1", ip])
                    .status
                    .success()
                {
                    return true;
                }
            }
            false
        };
        assert!(
            reaches6("fd00:3::1"),
            "the IPv6 gateway answers on {}",
            me.name
        );
        assert!(
            reaches6(Outside::HOST6),
            "the IPv6 outside from {}",
            me.name
        );
        let seen = tcp_to_outside(&o, &p, Outside::HOST6, 8086);
        assert_eq!(
            seen,
            Outside::host6(me),
            "masqueraded to the node's IPv6 address"
        );
        assert!(p.reaches(Outside::HOST, REACH), "and IPv4 too");
        assert!(
            host_reaches(me, &p.ipv6()),
            "{} pings its pod over IPv6",
            me.name
        );
        assert!(
            host_reaches(me, &p.ip),
            "{} pings its dual-stack pod over IPv4",
            me.name
        );
    }
}

#[test]
fn a_network_without_gateway_gets_no_router() {
    let (c, _o) = cluster();
    c.master.api(
        "POST",
        "/api/v1/tenants/green/",
        Some(json!({"tenantName": "green"})),
    );
    let (s, v) = c.master.api(
        "POST",
        "/api/v1/networks/green:closed/",
        Some(
            json!({"tenantName": "green", "networkName": "closed", "encap": "vxlan",
            "subnet": "10.4.0.0/24"}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    let a = c.pod(0, "closed", "green");
    let b = c.pod(1, "closed", "green");
    assert!(a.reaches(&b.ip, REACH), "the network itself works");
    // Given a chance to appear, no router is made for it and its pods do not get out.
    c.master
        .network("default", "open", "10.5.0.0/24", "10.5.0.1");
    let d = c.pod(0, "open", "default");
    assert!(d.reaches(Outside::HOST, REACH));
    assert_eq!(
        c.hosts[0].router_namespaces(),
        [c.hosts[0].router_netns("default")]
    );
    assert!(!a.ping(Outside::HOST), "no way out without a gateway");
    assert!(
        c.hosts[0]
            .ovs_ports_now()
            .iter()
            .filter(|p| p.starts_with("vr"))
            .count()
            == 1,
        "one router port: the open network's"
    );
}

#[test]
fn agent_restart_keeps_the_way_out() {
    let (mut c, _o) = cluster();
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    let p = c.pod(0, "net", "default");
    assert!(p.reaches(Outside::HOST, REACH));
    let transit = |h: &Host| {
        let out = h.exec(&["ip", "-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains(": vu"))
            .map(|l| l.split(':').next().unwrap().to_string())
            .expect("a transit link")
    };
    let before = transit(&c.hosts[0]);
    let ping = p.ping_start(Outside::HOST, 40);
    std::thread::sleep(Duration::from_millis(500));
    c.hosts[0].kill_agent();
    c.hosts[0].start_agent();
    let (sent, got) = ping.finish();
    eprintln!("agent restart: {sent} sent, {got} received");
    assert!(
        sent - got <= 1,
        "pings to the outside lost over an agent restart: {got} of {sent} received"
    );
    assert_eq!(
        transit(&c.hosts[0]),
        before,
        "the transit link was left in place"
    );
    assert!(p.reaches(Outside::HOST, REACH));
}

/// Sends `len` bytes from `pod` over TCP to the far host (behind the outside router) and
/// returns how many bytes the far host received.
fn tcp_send_far(o: &Outside, pod: &Pod, port: u16, len: usize) -> usize {
    let l = o.listen_far(port);
    l.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + REACH;
        let mut c = loop {
            match l.accept() {
                Ok((c, _)) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("the far host got no connection: {e}"),
            }
        };
        c.set_nonblocking(false).unwrap();
        c.set_read_timeout(Some(REACH)).unwrap();
        let mut got = Vec::new();
        let r = c.read_to_end(&mut got);
        let _ = c.write_all(got.len().to_string().as_bytes());
        (got.len(), r.err())
    });
    let to = std::net::SocketAddr::new(Outside::FAR_HOST.parse().unwrap(), port);
    let mut s = pod
        .in_ns(move || std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("{} connects to the far host: {e}", pod.netns));
    s.set_write_timeout(Some(REACH)).unwrap();
    s.set_read_timeout(Some(REACH)).unwrap();
    let sent = s.write_all(&vec![7u8; len]);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut ack = String::new();
    let _ = s.read_to_string(&mut ack);
    let (got, err) = server.join().unwrap();
    eprintln!(
        "{}: sent {sent:?}, the far host got {got} bytes ({err:?}), said {ack:?}",
        pod.netns
    );
    got
}

#[test]
fn a_narrower_link_beyond_the_router_does_not_stop_tcp() {
    let (c, o) = cluster();
    // The pods' 1450-byte packets no longer fit past the outside router: it answers with ICMP
    // "fragmentation needed", which must come back through the node's and the tenant router's
    // NAT to the pod.
    o.narrow_far_link(1400);
    for t in ["default", "blue"] {
        c.master.network(t, "net", "10.1.2.0/24", "10.1.2.1");
    }
    let mut port = 7000;
    for (h, t) in [(0, "default"), (0, "blue"), (1, "default")] {
        let p = c.pod(h, "net", t);
        assert!(
            p.reaches(Outside::FAR_HOST, REACH),
            "{t} pod pings the far host"
        );
        port += 1;
        assert_eq!(
            tcp_send_far(&o, &p, port, 1 << 20),
            1 << 20,
            "1 MB from a {t} pod on {} over the narrow link",
            c.hosts[h].name
        );
        // It got through by path MTU discovery: the router's ICMP error reached the pod.
        let route = p.exec(&["ip", "route", "get", Outside::FAR_HOST]);
        let route = String::from_utf8_lossy(&route.stdout).to_string();
        assert!(
            route.contains("mtu 1400"),
            "the {t} pod learned the path MTU: {route}"
        );
    }
}

#[test]
fn a_vswitchd_restart_costs_the_way_out_no_more_than_pod_to_pod() {
    let (mut c, _o) = cluster();
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    let a = c.pod(0, "net", "default");
    let b = c.pod(1, "net", "default");
    assert!(a.reaches(&b.ip, REACH) && a.reaches(Outside::HOST, REACH));
    // Both paths start at host1's ovs-vswitchd, which crashes and comes back while both pings
    // run: the way out (OVS, the tenant router, the host's NAT) must come back with the flows.
    let east_west = a.ping_start(&b.ip, 60);
    let north_south = a.ping_start(Outside::HOST, 60);
    std::thread::sleep(Duration::from_millis(500));
    c.hosts[0].kill_vswitchd();
    c.hosts[0].start_vswitchd();
    let (ew_sent, ew_got) = east_west.finish();
    let (ns_sent, ns_got) = north_south.finish();
    eprintln!(
        "ovs-vswitchd restart: pod to pod {ew_got}/{ew_sent}, pod to outside {ns_got}/{ns_sent} \
         received ({PING_INTERVAL:?} apart)"
    );
    // The two pings sample the same outage at phases up to one interval apart: each of its
    // two edges may cost one of them a request more than the other.
    assert!(
        ns_sent - ns_got <= ew_sent - ew_got + 2,
        "the way out lost {} of {ns_sent} pings, pod to pod {} of {ew_sent}; agent:\n{}",
        ns_sent - ns_got,
        ew_sent - ew_got,
        c.hosts[0].agent_log()
    );
    assert!(a.reaches(Outside::HOST, REACH) && a.reaches(&b.ip, REACH));
}

#[test]
fn a_pod_that_asks_for_its_gateway_before_the_router_is_made_gets_an_answer() {
    let (c, _o) = cluster();
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    let h = &c.hosts[0];
    // The tenant's first pod on the host: its router is made just after the ADD returns. The
    // pod pings the outside at once and asks for its gateway's MAC only once (so no second
    // ARP request, a second later, hides a first one lost before the router port was there),
    // and keeps waiting for an answer for 20 s (however long a loaded machine takes to make
    // the router): only the gateway's announcement can answer it.
    let p = Pod::new();
    let conf = h.conf("1.0.0", json!({"network": "net", "tenant": "default"}));
    let add = h.cni("ADD", &p.container_id, &p.netns_path(), "eth0", &conf);
    assert!(add.ok(), "ADD: {}", add.stdout);
    let script = format!(
        "sysctl -qw net.ipv4.neigh.eth0.mcast_solicit=1 net.ipv4.neigh.eth0.retrans_time_ms=20000 && ping -c 1 -W 25 {}",
        Outside::HOST
    );
    let out = p.exec(&["sh", "-c", &script]);
    let neigh = p.exec(&["ip", "neigh"]);
    assert!(
        out.status.success(),
        "the pod's first ping out: {}; its neighbours: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&neigh.stdout)
    );
    let del = h.cni("DEL", &p.container_id, &p.netns_path(), "eth0", &conf);
    assert!(del.ok(), "DEL: {}", del.stdout);
}

/// A tenant's router made again right after its last pod left (the namespace is gone from
/// /run/netns, the kernel still tearing it down with the host end of its transit): the new
/// router is made at the first attempt (it used to fail on the missing peer and be made only
/// a second later, after a warning), and the new pod reaches the outside.
#[test]
fn a_router_made_again_at_once_is_made_at_the_first_attempt() {
    let (c, _o) = cluster();
    c.master.network("blue", "net", "10.1.3.0/24", "10.1.3.1");
    let h = &c.hosts[0];
    let conf = h.conf("1.0.0", json!({"network": "net", "tenant": "blue"}));
    let router = h.router_netns("blue");
    for round in 0..10 {
        wait_for("blue's router to go", REACH, || {
            !h.router_namespaces().contains(&router)
        });
        let p = Pod::new();
        let add = h.cni("ADD", &p.container_id, &p.netns_path(), "eth0", &conf);
        assert!(add.ok(), "ADD: {}", add.stdout);
        assert!(
            p.reaches(Outside::HOST, REACH),
            "round {round}: the pod reaches the outside; agent log:\n{}",
            h.agent_log()
        );
        let del = h.cni("DEL", &p.container_id, &p.netns_path(), "eth0", &conf);
        assert!(del.ok(), "DEL: {}", del.stdout);
    }
    let log = h.agent_log();
    assert!(
        !log.contains("set up the tenant routers (the way out of the networks); retrying"),
        "a router failed to be made at the first attempt:\n{log}"
    );
}

/// The IPv6 twin of the test above: the agent's unsolicited neighbour advertisement for the
/// IPv6 gateway answers the pod's one neighbour solicitation, lost before the router existed.
/// The pod keeps that solicitation 20 s (a loaded machine may take more than ND's default
/// second to make the router): only the announcement can answer it.
#[test]
fn a_pod_that_asks_for_its_ipv6_gateway_before_the_router_is_made_gets_an_answer() {
    let (c, _o) = cluster();
    let (s, v) = c.master.api(
        "POST",
        "/api/v1/networks/default:v6net/",
        Some(
            json!({"tenantName": "default", "networkName": "v6net", "encap": "vxlan",
            "subnet": "10.3.0.0/24", "gateway": "10.3.0.1",
            "ipv6Subnet": "fd00:3::/64", "ipv6Gateway": "fd00:3::1"}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    let h = &c.hosts[0];
    let p = Pod::new();
    let conf = h.conf("1.0.0", json!({"network": "v6net", "tenant": "default"}));
    let add = h.cni("ADD", &p.container_id, &p.netns_path(), "eth0", &conf);
    assert!(add.ok(), "ADD: {}", add.stdout);
    let script = format!(
        "sysctl -qw net.ipv6.neigh.eth0.mcast_solicit=1 net.ipv6.neigh.eth0.retrans_time_ms=20000 && ping -6 -c 1 -W 25 {}",
        Outside::HOST6
    );
    let out = p.exec(&["sh", "-c", &script]);
    let neigh = p.exec(&["ip", "-6", "neigh"]);
    assert!(
        out.status.success(),
        "the pod's first IPv6 ping out: {}; its neighbours: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&neigh.stdout)
    );
    let del = h.cni("DEL", &p.container_id, &p.netns_path(), "eth0", &conf);
    assert!(del.ok(), "DEL: {}", del.stdout);
}

#[test]
fn a_docker_container_on_a_contiv_network_reaches_the_outside() {
    use test_e2e::docker::{IMAGE, docker_host};
    let c = Cluster::start(1, &[]);
    let o = Outside::new(&c.underlay);
    let (plugin, h, docker) = docker_host(&c, "dock");
    o.route_from(&h);
    docker.contiv_network(&plugin, "dnet", "10.73.0.0/24", "10.73.0.1", &h);
    docker.ok(
        &[
            "run",
            "-d",
            "--name",
            "out1",
            "--network",
            "dnet",
            IMAGE,
            "sleep",
            "100000",
        ],
        &h,
    );
    let pings = || {
        docker
            .run(&["exec", "out1", "ping", "-c", "1", "-W", "2", Outside::HOST])
            .status
            .success()
    };
    assert!(
        (0..5).any(|_| pings()),
        "the container pings the outside; agent log:\n{}",
        h.agent_log()
    );
    let pid = docker.ok(&["inspect", "-f", "{{.State.Pid}}", "out1"], &h);
    let p = Pod::of_process(&pid, "out1", "");
    assert_eq!(
        tcp_to_outside(&o, &p, Outside::HOST, 8088),
        h.vtep,
        "the outside sees the node's address for the container"
    );
    drop(p);
    docker.ok(&["rm", "-f", "out1"], &h);
}
