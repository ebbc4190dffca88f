//! Policies over IPv6, mirroring tests/policy.rs on a dual-stack network across 3 hosts: the same
//! rule refuses over IPv6 what it refuses over IPv4 (deny/allow by port, from a group, from a
//! network, from an address), ICMPv6 is a protocol of its own, conntrack lets replies back, and
//! neighbour discovery keeps working under a deny-all policy.

use serde_json::json;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use test_e2e::{Cluster, Pod, wait_for};

const REACH: Duration = Duration::from_secs(10);

fn post(c: &Cluster, path: &str, body: serde_json::Value) {
    let (s, v) = c.master.api("POST", path, Some(body));
    assert_eq!(s, 200, "POST {path}: {v}");
}

fn cluster(policies: &[&str], groups: &[(&str, &[&str])]) -> Cluster {
    let c = Cluster::start(3, &[]);
    c.master
        .dual_stack_network("net", "10.1.2.0/24", "10.1.2.1", "fd00:12::/64");
    for p in policies {
        post(
            &c,
            &format!("/api/v1/policys/default:{p}/"),
            json!({"tenantName": "default", "policyName": p}),
        );
    }
    for (g, pols) in groups {
        post(
            &c,
            &format!("/api/v1/endpointGroups/default:{g}/"),
            json!({"tenantName": "default", "groupName": g, "networkName": "net", "policies": pols}),
        );
    }
    c
}

fn rule(c: &Cluster, policy: &str, id: &str, mut r: serde_json::Value) {
    r["tenantName"] = json!("default");
    r["policyName"] = json!(policy);
    r["ruleId"] = json!(id);
    post(c, &format!("/api/v1/rules/default:{policy}:{id}/"), r);
}

fn pod(c: &Cluster, h: usize, group: Option<&str>) -> Pod {
    let mut v = json!({"network": "net"});
    if let Some(g) = group {
        v["group"] = json!(g);
    }
    c.hosts[h].pod(&c.hosts[h].conf("1.0.0", v))
}

/// Whether `from` opens a TCP connection to `to`'s IPv6 address on `port` (a listener is
/// started there for it); a refused or unanswered SYN is false.
fn connects6(from: &Pod, to: &Pod, port: u16) -> bool {
    // On the address itself, not `::`: a dual-stack socket would collide with the IPv4 one of
    // the same port that `connects_to` just closed.
    let addr: SocketAddr = format!("[{}]:{port}", to.ipv6()).parse().unwrap();
    let l = to.in_ns(move || TcpListener::bind(addr).expect("listen in pod"));
    let ok = from
        .in_ns(move || TcpStream::connect_timeout(&addr, Duration::from_millis(1500)))
        .is_ok();
    drop(l);
    ok
}

/// Whether `from` connects to `to` over IPv4 and over IPv6: the two must agree.
fn connects_both(from: &Pod, to: &Pod, port: u16) -> bool {
    let v4 = from.connects_to(to, port);
    let v6 = connects6(from, to, port);
    assert_eq!(
        v4,
        v6,
        "{} -> {} port {port}: IPv4 {} but IPv6 {}",
        from.ip,
        to.ip,
        if v4 { "open" } else { "closed" },
        if v6 { "open" } else { "closed" }
    );
    v6
}

/// A rule's packets, as `netctl policy rule-ls --counts` shows them (second-to-last column).
fn rule_packets(c: &Cluster, policy: &str, id: &str) -> u64 {
    c.master
        .netctl(&["policy", "rule-ls", "--counts", policy])
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            if cells.first() != Some(&id) {
                return None;
            }
            cells.get(cells.len().checked_sub(2)?)?.parse().ok()
        })
        .next()
        .unwrap_or(0)
}

#[test]
fn deny_tcp_in_except_8000_holds_over_ipv6_as_over_ipv4() {
    let c = cluster(&["p"], &[("web", &["p"])]);
    rule(
        &c,
        "p",
        "1",
        json!({"direction": "in", "priority": 1, "protocol": "tcp", "action": "deny"}),
    );
    rule(
        &c,
        "p",
        "2",
        json!({"direction": "in", "priority": 100, "protocol": "tcp", "port": 8000, "action": "allow"}),
    );
    let server = pod(&c, 0, Some("web"));
    let remote = pod(&c, 1, None);
    let local = pod(&c, 0, None);
    for client in [&remote, &local] {
        // Neighbour discovery and ICMPv6 flow: the rules are about TCP.
        assert!(
            client.reaches(&server.ipv6(), REACH),
            "no ping6 to the server"
        );
        assert!(!connects_both(client, &server, 8001), "8001 let through");
        assert!(connects_both(client, &server, 8000), "8000 refused");
    }
    // IPv6 SYNs count on the rules as IPv4 ones do.
    let before = rule_packets(&c, "p", "1");
    assert!(!connects6(&remote, &server, 8002));
    wait_for(
        "the deny rule to count an IPv6 SYN",
        Duration::from_secs(20),
        || rule_packets(&c, "p", "1") > before,
    );
    // Replies of an allowed connection come back through conntrack: data both ways.
    let addr: SocketAddr = format!("[{}]:8000", server.ipv6()).parse().unwrap();
    let l = server.in_ns(move || TcpListener::bind(addr).unwrap());
    let echo = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
    });
    let mut s = remote
        .in_ns(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .expect("connect over IPv6");
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    echo.join().unwrap();
}

#[test]
fn allow_only_from_a_group_and_out_rules_hold_over_ipv6() {
    let c = cluster(
        &["p", "q"],
        &[("db", &["p"]), ("app", &["q"]), ("other", &[])],
    );
    rule(
        &c,
        "p",
        "1",
        json!({"direction": "in", "priority": 1, "protocol": "tcp", "action": "deny"}),
    );
    rule(
        &c,
        "p",
        "2",
        json!({"direction": "in", "priority": 100, "protocol": "tcp",
               "fromEndpointGroup": "app", "action": "allow"}),
    );
    rule(
        &c,
        "q",
        "1",
        json!({"direction": "out", "priority": 10, "protocol": "tcp", "port": 9100, "action": "deny"}),
    );
    let db = pod(&c, 0, Some("db"));
    let app = pod(&c, 1, Some("app"));
    let other = pod(&c, 2, Some("other"));
    let none = pod(&c, 0, None);
    assert!(connects_both(&app, &db, 5432), "group app must reach db");
    assert!(!connects_both(&other, &db, 5432), "group other reached db");
    assert!(
        !connects_both(&none, &db, 5432),
        "a pod of no group reached db"
    );
    assert!(
        !connects_both(&app, &none, 9100),
        "app's out rule let 9100 out"
    );
    assert!(connects_both(&app, &none, 9101));
    assert!(
        connects_both(&other, &none, 9100),
        "the out rule is app's only"
    );
}

#[test]
fn rules_from_ipv6_addresses_networks_and_icmp6() {
    let c = cluster(&["p"], &[("locked", &["p"])]);
    // Everything in is denied (any protocol, both families) ...
    rule(
        &c,
        "p",
        "1",
        json!({"direction": "in", "priority": 1, "action": "deny"}),
    );
    let a = pod(&c, 1, None);
    let b = pod(&c, 1, None);
    let locked = pod(&c, 0, Some("locked"));
    let other = pod(&c, 2, None);
    assert!(
        a.reaches(&b.ipv6(), REACH),
        "ping6 between pods of no group"
    );
    assert!(!a.ping(&locked.ipv6()), "ping6 reached a deny-all pod");
    assert!(!connects_both(&a, &locked, 7000));
    // ... except from a's IPv6 address (50: IPv6 only, an address names its family), and from
    // the network on TCP 7000 (60); b's own IPv6 deny on 7000 (70) beats the network's allow,
    // and a may not ping (ICMPv6 deny from a's address, 80).
    rule(
        &c,
        "p",
        "2",
        json!({"direction": "in", "priority": 50, "fromIpAddress": a.ipv6(), "action": "allow"}),
    );
    rule(
        &c,
        "p",
        "3",
        json!({"direction": "in", "priority": 60, "protocol": "tcp", "port": 7000,
               "fromNetwork": "net", "action": "allow"}),
    );
    rule(
        &c,
        "p",
        "4",
        json!({"direction": "in", "priority": 70, "protocol": "tcp", "port": 7000,
               "fromIpAddress": format!("{}/128", b.ipv6()), "action": "deny"}),
    );
    rule(
        &c,
        "p",
        "5",
        json!({"direction": "in", "priority": 80, "protocol": "icmp6",
               "fromIpAddress": a.ipv6(), "action": "deny"}),
    );
    wait_for("a's IPv6 allow to hold", REACH, || {
        connects6(&a, &locked, 7001)
    });
    assert!(
        !a.connects_to(&locked, 7001),
        "an IPv6 address rule let IPv4 in"
    );
    assert!(!a.ping(&locked.ipv6()), "the icmp6 deny (80) did not hold");
    assert!(!a.ping(&locked.ip), "an icmp6 rule let ICMP over IPv4 in");
    assert!(!b.ping(&locked.ipv6()), "b is not allowed by address");
    assert!(
        !connects6(&b, &locked, 7000),
        "b's deny (70) lost to the network allow (60)"
    );
    assert!(
        connects_both(&other, &locked, 7000),
        "the network allow on 7000"
    );
    assert!(!connects_both(&other, &locked, 7001));
    // A rule with an IPv6 address and an IPv4 one matches nothing: refused.
    let (s, v) = c.master.api(
        "POST",
        "/api/v1/rules/default:p:6/",
        Some(
            json!({"tenantName": "default", "policyName": "p", "ruleId": "6",
            "direction": "in", "priority": 5, "action": "deny",
            "toIpAddress": "10.1.2.9", "fromIpAddress": "fd00:12::9"}),
        ),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("toIpAddress"), "{v}");
}
