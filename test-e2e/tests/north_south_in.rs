//! North-south, the inbound half (issue 19): the outside reaches pods through a NodePort-style
//! DNAT on a host, to pods of that host and of another one; the host reaches a pod on another
//! host by its address; `from-ip`/`to-ip` rules judge the outside; kube-proxy's Services (the
//! chains kube-proxy writes, installed by the test: no kube-proxy binary) reach backends on
//! another host from a pod (ClusterIP) and from the outside (NodePort). Real packets, in the
//! simulated cluster with an "outside" namespace on the underlay.

use serde_json::json;
use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use test_e2e::{Cluster, Host, Outside, Pod, modes};

const REACH: Duration = Duration::from_secs(10);
const TRY: Duration = Duration::from_millis(1500);

/// Two hosts and the outside router, the hosts routing the internet host through it.
fn cluster() -> (Cluster, Outside) {
    let c = Cluster::start(2, &[]);
    let o = Outside::new(&c.underlay);
    for h in &c.hosts {
        o.route_from(h);
    }
    (c, o)
}

/// A TCP server in a pod that answers every connection with "<name> <the peer's address>"
/// and closes it: what the pod saw as the source. Stops when dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(pod: &Pod, name: &str, port: u16) -> Self {
        Self::on(pod.tcp_listener(port), name)
    }

    /// The same on a listener made elsewhere (the outside's). Every connection is accepted:
    /// a full backlog must never pass for a refused connection.
    fn on(l: std::net::TcpListener, name: &str) -> Self {
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, peer)) => {
                        let _ = c.write_all(format!("{name} {}", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a server's answer from a connected stream.
fn answer(s: std::io::Result<std::net::TcpStream>) -> Option<String> {
    let mut s = s.ok()?;
    s.set_read_timeout(Some(TRY)).ok()?;
    let mut got = String::new();
    s.read_to_string(&mut got).ok()?;
    (!got.is_empty()).then_some(got)
}

/// The answer of the first connection that gets one within [`REACH`] (the host side follows
/// the ADD by a few milliseconds, a new rule by one flow change); None if none does.
fn first_answer(mut ask: impl FnMut() -> Option<String>) -> Option<String> {
    let end = Instant::now() + REACH;
    while Instant::now() < end {
        if let Some(a) = ask() {
            return Some(a);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Asks from the internet host through `node:port`.
fn from_outside(o: &Outside, node: &str, port: u16) -> Option<String> {
    let to = SocketAddrV4::new(node.parse().unwrap(), port);
    answer(o.connect(to, TRY))
}

/// Asks from `pod` at `ip:port`.
fn from_pod(pod: &Pod, ip: &str, port: u16) -> Option<String> {
    answer(pod.tcp_connect(ip, port, TRY))
}

/// Asks from the host's own namespace at `ip:port`.
fn from_host(host: &Host, ip: &str, port: u16) -> Option<String> {
    let to: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
    answer(host.in_ns(move || std::net::TcpStream::connect_timeout(&to, TRY)))
}

/// Runs `iptables` (or `iptables-restore --noflush` with `stdin`) in the host's namespace.
fn iptables(host: &Host, args: &[&str]) {
    let mut a = vec!["iptables", "-w"];
    a.extend_from_slice(args);
    let out = host.exec(&a);
    assert!(
        out.status.success(),
        "{a:?} on {}: {}",
        host.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What kube-proxy installs for a NodePort: DNAT of `port` on every local address to `to`.
fn nodeport(host: &Host, port: u16, to: &str) {
    let port = port.to_string();
    iptables(
        host,
        &[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "--dport",
            &port,
            "-j",
            "DNAT",
            "--to-destination",
            to,
        ],
    );
}

#[test]
fn the_outside_reaches_pods_of_both_tenants_through_a_hosts_dnat() {
    let (c, o) = cluster();
    for t in ["default", "blue"] {
        c.master.network(t, "net", "10.1.2.0/24", "10.1.2.1");
    }
    let d0 = c.pod(0, "net", "default");
    let d1 = c.pod(1, "net", "default");
    let b0 = c.pod(0, "net", "blue");
    let b1 = c.pod(1, "net", "blue");
    let (h0, h1) = (&c.hosts[0], &c.hosts[1]);
    let _servers = [
        Server::start(&d0, "d0", 8080),
        Server::start(&d1, "d1", 8080),
        Server::start(&b0, "b0", 8080),
        Server::start(&b1, "b1", 8080),
    ];
    // A default-tenant pod on the other host: its replies must come back through host1,
    // whose conntrack undoes the DNAT. It sees host1's address (its router's source NAT,
    // which steers the replies back), as it would under kube-proxy's masquerading.
    nodeport(h0, 30001, &format!("{}:8080", d1.ip));
    assert_eq!(
        first_answer(|| from_outside(&o, &h0.vtep, 30001)),
        Some(format!("d1 {}", h0.vtep)),
        "the outside through {} reaches a pod on {}; agent logs:\n{}\n{}",
        h0.name,
        h1.name,
        h0.agent_log(),
        h1.agent_log()
    );
    // A pod of the host itself sees the outside client.
    nodeport(h0, 30002, &format!("{}:8080", d0.ip));
    assert_eq!(
        first_answer(|| from_outside(&o, &h0.vtep, 30002)),
        Some(format!("d0 {}", Outside::HOST))
    );
    // The host reaches a pod on another host by its address (and it sees the host's).
    assert_eq!(
        first_answer(|| from_host(h0, &d1.ip, 8080)),
        Some(format!("d1 {}", h0.vtep)),
        "{} reaches {}'s pod {}",
        h0.name,
        h1.name,
        d1.ip
    );
    assert_eq!(
        first_answer(|| from_host(h1, &d0.ip, 8080)),
        Some(format!("d0 {}", h1.vtep))
    );
    if modes::trunks() {
        eprintln!("trunks: trunk-mates share a port number, no private addresses");
        return;
    }
    // Another tenant's pods (the same addresses) through their own host, by private address:
    // the pod sees the outside client.
    for (h, b, name) in [(h0, &b0, "b0"), (h1, &b1, "b1")] {
        let pvt = h.private_address("blue", &b.ip, REACH);
        nodeport(h, 30003, &format!("{pvt}:8080"));
        assert_eq!(
            first_answer(|| from_outside(&o, &h.vtep, 30003)),
            Some(format!("{name} {}", Outside::HOST)),
            "the outside reaches a blue pod on {} at {pvt}",
            h.name
        );
    }
    // And the outside gets the default pods both ways over one connection each.
    let l = o.listen(Outside::HOST, 8090);
    for p in [&d0, &d1] {
        let s = p.tcp_connect(Outside::HOST, 8090, REACH);
        assert!(s.is_ok(), "{} connects out: {s:?}", p.ip);
        let (mut conn, _) = l.accept().unwrap();
        conn.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.unwrap().read_exact(&mut b).unwrap();
    }
}

fn post(c: &Cluster, path: &str, body: serde_json::Value) {
    let (s, v) = c.master.api("POST", path, Some(body));
    assert_eq!(s, 200, "POST {path}: {v}");
}

/// A pod on host `h` in `default:net`, in `group` when given.
fn pod(c: &Cluster, h: usize, group: Option<&str>) -> Pod {
    let mut v = json!({"network": "net"});
    if let Some(g) = group {
        v["group"] = json!(g);
    }
    c.hosts[h].pod(&c.hosts[h].conf("1.0.0", v))
}

/// Waits until `check` gives `want` (a rule's flows follow its POST by a flow change).
fn becomes(what: &str, want: bool, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + REACH;
    while Instant::now() < end {
        if check() == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not become {want} within {REACH:?}");
}

#[test]
fn from_ip_and_to_ip_rules_judge_the_outside() {
    let (c, o) = cluster();
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    post(
        &c,
        "/api/v1/policys/default:p/",
        json!({"tenantName": "default", "policyName": "p"}),
    );
    post(
        &c,
        "/api/v1/endpointGroups/default:web/",
        json!({"tenantName": "default", "groupName": "web", "networkName": "net", "policies": ["p"]}),
    );
    let w = pod(&c, 0, Some("web"));
    let other = pod(&c, 0, None);
    let h0 = &c.hosts[0];
    let _servers = [
        Server::start(&w, "w", 8080),
        Server::start(&other, "other", 8080),
    ];
    nodeport(h0, 30001, &format!("{}:8080", w.ip));
    nodeport(h0, 30002, &format!("{}:8080", other.ip));
    assert_eq!(
        first_answer(|| from_outside(&o, &h0.vtep, 30001)),
        Some(format!("w {}", Outside::HOST)),
        "open before the rules"
    );
    // In: the outside client's address is denied on TCP 8080 ...
    post(
        &c,
        "/api/v1/rules/default:p:1/",
        json!({"tenantName": "default", "policyName": "p", "ruleId": "1", "direction": "in",
               "priority": 10, "protocol": "tcp", "port": 8080,
               "fromIpAddress": Outside::HOST, "action": "deny"}),
    );
    becomes("the outside reaching the web pod", false, || {
        from_outside(&o, &h0.vtep, 30001).is_some()
    });
    // ... which concerns the group only, and the outside only: the host still gets in.
    assert_eq!(
        first_answer(|| from_outside(&o, &h0.vtep, 30002)),
        Some(format!("other {}", Outside::HOST))
    );
    assert!(first_answer(|| from_host(h0, &w.ip, 8080)).is_some());
    // Out: the group may not open connections to the outside's port 8081 (8082 stays open).
    post(
        &c,
        "/api/v1/rules/default:p:2/",
        json!({"tenantName": "default", "policyName": "p", "ruleId": "2", "direction": "out",
               "priority": 10, "protocol": "tcp", "port": 8081,
               "toIpAddress": Outside::HOST, "action": "deny"}),
    );
    let _l1 = Server::on(o.listen(Outside::HOST, 8081), "8081");
    let _l2 = Server::on(o.listen(Outside::HOST, 8082), "8082");
    becomes("the web pod reaching the outside's 8081", false, || {
        w.tcp_connect(Outside::HOST, 8081, TRY).is_ok()
    });
    assert_eq!(
        first_answer(|| from_pod(&w, Outside::HOST, 8082)),
        Some(format!("8082 {}", c.hosts[0].vtep)),
        "another port stays open (the outside sees the node)"
    );
    assert_eq!(
        first_answer(|| from_pod(&other, Outside::HOST, 8081)),
        Some(format!("8081 {}", c.hosts[0].vtep)),
        "another group may"
    );
}

/// The chains kube-proxy (iptables mode) writes for two Services, as `iptables-restore`
/// input: `web` (ClusterIP 10.96.0.10:80, NodePort 30080) balanced over `web` backends by
/// the statistic match, `near` (ClusterIP 10.96.0.11:80) with one backend; the cluster CIDR
/// is the network's subnet (what comes from outside it is masqueraded, as kube-proxy does).
fn kube_proxy_rules(web: &[&str], near: &str) -> String {
    let mut s = String::from(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n\
         :KUBE-MARK-MASQ - [0:0]\n:KUBE-SVC-WEB - [0:0]\n:KUBE-EXT-WEB - [0:0]\n:KUBE-SVC-NEAR - [0:0]\n\
         :KUBE-SEP-NEAR - [0:0]\n",
    );
    for i in 0..web.len() {
        s.push_str(&format!(":KUBE-SEP-WEB{i} - [0:0]\n"));
    }
    s.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web cluster IP\" -m tcp --dport 80 -j KUBE-SVC-WEB\n\
         -A KUBE-SERVICES -d 10.96.0.11/32 -p tcp -m comment --comment \"default/near cluster IP\" -m tcp --dport 80 -j KUBE-SVC-NEAR\n\
         -A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n\
         -A KUBE-NODEPORTS -p tcp -m comment --comment \"default/web\" -m tcp --dport 30080 -j KUBE-EXT-WEB\n\
         -A KUBE-EXT-WEB -m comment --comment \"masquerade traffic for default/web external destinations\" -j KUBE-MARK-MASQ\n\
         -A KUBE-EXT-WEB -j KUBE-SVC-WEB\n\
         -A KUBE-SVC-WEB ! -s 10.1.2.0/24 -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ\n\
         -A KUBE-SVC-NEAR ! -s 10.1.2.0/24 -d 10.96.0.11/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ\n",
    );
    for (i, ip) in web.iter().enumerate() {
        let left = web.len() - i;
        if left > 1 {
            s.push_str(&format!(
                "-A KUBE-SVC-WEB -m statistic --mode random --probability {:.11} -j KUBE-SEP-WEB{i}\n",
                1.0 / left as f64
            ));
        } else {
            s.push_str(&format!("-A KUBE-SVC-WEB -j KUBE-SEP-WEB{i}\n"));
        }
        s.push_str(&format!(
            "-A KUBE-SEP-WEB{i} -s {ip}/32 -j KUBE-MARK-MASQ\n\
             -A KUBE-SEP-WEB{i} -p tcp -m tcp -j DNAT --to-destination {ip}:8080\n"
        ));
    }
    s.push_str(&format!(
        "-A KUBE-SVC-NEAR -j KUBE-SEP-NEAR\n\
         -A KUBE-SEP-NEAR -s {near}/32 -j KUBE-MARK-MASQ\n\
         -A KUBE-SEP-NEAR -p tcp -m tcp -j DNAT --to-destination {near}:8080\nCOMMIT\n"
    ));
    s
}

#[test]
fn kube_proxys_services_reach_backends_on_another_host() {
    let (c, o) = cluster();
    // Another tenant with the same subnet: its pods are clients of Services like the outside.
    for t in ["default", "blue"] {
        c.master.network(t, "net", "10.1.2.0/24", "10.1.2.1");
    }
    let client = c.pod(0, "net", "default");
    let blue = c.pod(0, "net", "blue");
    let near = c.pod(0, "net", "default");
    let k1 = c.pod(1, "net", "default");
    let k2 = c.pod(1, "net", "default");
    let _servers = [
        Server::start(&near, "near", 8080),
        Server::start(&k1, "k1", 8080),
        Server::start(&k2, "k2", 8080),
    ];
    let rules = kube_proxy_rules(&[&k1.ip, &k2.ip], &near.ip);
    for h in &c.hosts {
        let path = h.dir.join("kube-proxy.rules");
        std::fs::write(&path, &rules).unwrap();
        let out = h.exec(&[
            "sh",
            "-c",
            &format!("iptables-restore -w --noflush < {}", path.display()),
        ]);
        assert!(
            out.status.success(),
            "kube-proxy's rules on {}: {}\n{rules}",
            h.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let h0 = &c.hosts[0];
    // A pod reaches the ClusterIP; both backends (on the other host) answer in turn, each
    // seeing the client's host (its router's source NAT), never the ClusterIP's DNAT undone
    // anywhere but in host1.
    let mut seen = std::collections::BTreeSet::new();
    let end = Instant::now() + REACH * 3;
    while seen.len() < 2 && Instant::now() < end {
        if let Some(a) = from_pod(&client, "10.96.0.10", 80) {
            let (name, peer) = a.split_once(' ').unwrap();
            assert_eq!(peer, h0.vtep, "{a}");
            seen.insert(name.to_string());
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["k1", "k2"],
        "the ClusterIP's backends on {} answer a pod on {}; agent log:\n{}",
        c.hosts[1].name,
        h0.name,
        h0.agent_log()
    );
    // A backend on the client's own host and subnet: the reply goes back through the host.
    let a = first_answer(|| from_pod(&client, "10.96.0.11", 80));
    assert_eq!(
        a.as_deref().map(|a| a.split(' ').next()),
        Some(Some("near"))
    );
    // A pod of another tenant (its address may be a default pod's too) reaches the ClusterIP
    // as an outside client would: masqueraded by kube-proxy, the backend sees the node.
    let a = first_answer(|| from_pod(&blue, "10.96.0.10", 80)).unwrap_or_default();
    assert!(
        a == format!("k1 {}", h0.vtep) || a == format!("k2 {}", h0.vtep),
        "a blue pod reaches the ClusterIP: {a:?}"
    );
    // The outside reaches the NodePort of host1, with both backends on host2.
    let a = first_answer(|| from_outside(&o, &h0.vtep, 30080)).unwrap_or_default();
    assert!(
        a == format!("k1 {}", h0.vtep) || a == format!("k2 {}", h0.vtep),
        "the outside through {}'s NodePort: {a:?}",
        h0.name
    );
    // The same on the backends' own host: its NodePort reaches them (kube-proxy's masquerade
    // makes the source the host's).
    let h1 = &c.hosts[1];
    let a = first_answer(|| from_outside(&o, &h1.vtep, 30080)).unwrap_or_default();
    assert!(
        a.starts_with("k1 ") || a.starts_with("k2 "),
        "the outside through {}'s NodePort: {a:?}",
        h1.name
    );
}

/// GETs `/` from the internet host through `node:port`; the body, if any.
fn http_from_outside(o: &Outside, node: &str, port: u16) -> Option<String> {
    let to = SocketAddrV4::new(node.parse().unwrap(), port);
    let mut s = o.connect(to, TRY).ok()?;
    s.set_read_timeout(Some(TRY)).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut got = String::new();
    s.read_to_string(&mut got).ok()?;
    got.contains("200 OK").then_some(got)
}

/// The agent's DNAT rules for published ports in the host.
fn published_rules(h: &Host) -> Vec<String> {
    let out = h.exec(&["iptables", "-w", "-t", "nat", "-S", "CONTIV-DNAT"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_docker_containers_published_port_serves_the_outside() {
    use test_e2e::docker::{IMAGE, docker_host};
    let c = Cluster::start(1, &[]);
    let o = Outside::new(&c.underlay);
    let (plugin, mut h, docker) = docker_host(&c, "dock");
    o.route_from(&h);
    docker.contiv_network(&plugin, "pubnet", "10.74.0.0/24", "10.74.0.1", &h);
    docker.ok(
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8080:80",
            "--network",
            "pubnet",
            IMAGE,
            "sh",
            "-c",
            "mkdir -p /www && echo hello-web > /www/index.html && httpd -p 80 -h /www && exec sleep 100000",
        ],
        &h,
    );
    let vtep = h.vtep.clone();
    let served = || first_answer(|| http_from_outside(&o, &vtep, 8080));
    let got = served().unwrap_or_default();
    assert!(
        got.contains("hello-web"),
        "the outside gets the container's page through {}:8080: {got:?}; rules: {:?}; agent log:\n{}",
        h.vtep,
        published_rules(&h),
        h.agent_log()
    );
    // An agent restart keeps it: the rules stay while the agent is away, and the new agent
    // finds the published ports in OVS and writes the same rules.
    let before = published_rules(&h);
    h.kill_agent();
    assert!(served().is_some_and(|g| g.contains("hello-web")));
    h.start_agent();
    plugin.wait();
    let end = Instant::now() + REACH;
    while Instant::now() < end && published_rules(&h) != before {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        published_rules(&h),
        before,
        "rewritten alike after a restart"
    );
    assert!(served().is_some_and(|g| g.contains("hello-web")));
    // The container gone, its port is no longer forwarded.
    docker.ok(&["rm", "-f", "web"], &h);
    let end = Instant::now() + REACH;
    while Instant::now() < end && !published_rules(&h).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(published_rules(&h), Vec::<String>::new());
}

/// The agent's chains and jumps in the host, IPv4 and IPv6 (`iptables -S` lines naming them).
fn contiv_rules(h: &Host) -> Vec<String> {
    let mut out = Vec::new();
    for bin in ["iptables", "ip6tables"] {
        for table in ["nat", "filter"] {
            let o = h.exec(&[bin, "-w", "-t", table, "-S"]);
            out.extend(
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.contains("CONTIV-"))
                    .map(|l| format!("{bin} {table}: {l}")),
            );
        }
    }
    out
}

#[test]
fn uninstall_removes_the_host_side_and_a_restart_makes_it_again() {
    let (mut c, o) = cluster();
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    let p = c.pod(0, "net", "default");
    assert!(p.reaches(Outside::HOST, REACH));
    let h = &c.hosts[0];
    let made = contiv_rules(h);
    assert!(
        made.iter().any(|l| l.contains("-j CONTIV-DNAT")),
        "{made:?}"
    );
    c.hosts[0].kill_agent();
    let h = &c.hosts[0];
    let out = h.netplugin_once(&["--uninstall-northsouth"]);
    assert!(
        out.status.success(),
        "uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(contiv_rules(h), Vec::<String>::new(), "no chain, no jump");
    assert_eq!(h.router_namespaces(), Vec::<String>::new());
    assert!(
        !h.ovs_ports_now().iter().any(|p| p.starts_with("vr")),
        "no router port"
    );
    let links = String::from_utf8_lossy(&h.exec(&["ip", "-o", "link", "show"]).stdout).to_string();
    assert!(!links.contains(": vu"), "no transit: {links}");
    // Run twice: nothing left is no error.
    assert!(
        h.netplugin_once(&["--uninstall-northsouth"])
            .status
            .success()
    );
    // The agent back: the host side is made again, alike.
    c.hosts[0].start_agent();
    let h = &c.hosts[0];
    let end = Instant::now() + REACH;
    while Instant::now() < end && contiv_rules(h) != made {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(contiv_rules(h), made);
    assert!(p.reaches(Outside::HOST, REACH));
    drop(o);
}
