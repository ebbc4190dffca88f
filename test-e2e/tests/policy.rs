//! Policies in the datapath, with real packets between 3 hosts: Contiv's "deny TCP in, allow TCP
//! 8000 in" scenario, enforced where the destination lives (from other hosts and from the same
//! host), per-rule packet counters, live rule and membership changes, established connections
//! surviving them, and profiles' meters surviving (or not) an agent restart.

use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use test_e2e::{Cluster, Pod, assert_dscp_46_in_tunnel, wait_for};

const REACH: Duration = Duration::from_secs(10);

fn post(c: &Cluster, path: &str, body: serde_json::Value) {
    let (s, v) = c.master.api("POST", path, Some(body));
    assert_eq!(s, 200, "POST {path}: {v}");
}

fn policy(c: &Cluster, name: &str) {
    post(
        c,
        &format!("/api/v1/policys/default:{name}/"),
        json!({"tenantName": "default", "policyName": name}),
    );
}

/// A pod on host `h` in `default:net`, in `group` when given.
fn pod(c: &Cluster, h: usize, group: Option<&str>) -> Pod {
    let mut v = json!({"network": "net"});
    if let Some(g) = group {
        v["group"] = json!(g);
    }
    c.hosts[h].pod(&c.hosts[h].conf("1.0.0", v))
}

fn rule(c: &Cluster, id: &str, prio: u32, port: u16, action: &str) {
    let mut r = json!({"tenantName": "default", "policyName": "p", "ruleId": id,
        "direction": "in", "priority": prio, "protocol": "tcp", "action": action});
    if port != 0 {
        r["port"] = json!(port);
    }
    post(c, &format!("/api/v1/rules/default:p:{id}/"), r);
}

/// A policy's rules with their packet counts, as `netctl policy rule-ls --counts` prints them:
/// rule id -> packets (the second-to-last column of both tables).
fn rule_counts(c: &Cluster, policy: &str) -> std::collections::BTreeMap<String, u64> {
    c.master
        .netctl(&["policy", "rule-ls", "--counts", policy])
        .lines()
        .filter(|l| !l.ends_with(':') && !l.starts_with("Rule") && !l.starts_with("----"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            let packets = cells.get(cells.len().checked_sub(2)?)?.parse().ok()?;
            Some((cells[0].to_string(), packets))
        })
        .collect()
}

/// Waits until `netctl` shows the counts of `policy`'s rules satisfying `ok`; returns them.
fn counts_become(
    c: &Cluster,
    policy: &str,
    what: &str,
    ok: impl Fn(&std::collections::BTreeMap<String, u64>) -> bool,
) -> std::collections::BTreeMap<String, u64> {
    let mut last = Default::default();
    wait_for(what, Duration::from_secs(20), || {
        last = rule_counts(c, policy);
        ok(&last)
    });
    last
}

/// Waits until `from -> to:port` connects (or stops connecting) as `want` says; returns how long.
fn becomes(from: &Pod, to: &Pod, port: u16, want: bool) -> Duration {
    let t = Instant::now();
    wait_for(
        &format!(
            "{} -> {}:{port} to be {}",
            from.ip,
            to.ip,
            if want { "open" } else { "closed" }
        ),
        Duration::from_secs(10),
        || from.connects_to(to, port) == want,
    );
    t.elapsed()
}

#[test]
fn deny_tcp_in_except_8000_across_hosts_with_counters_and_live_changes() {
    let c = Cluster::start(3, &[]);
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    policy(&c, "p");
    rule(&c, "1", 1, 0, "deny");
    rule(&c, "2", 100, 8000, "allow");
    post(
        &c,
        "/api/v1/endpointGroups/default:web/",
        json!({"tenantName": "default", "groupName": "web", "networkName": "net", "policies": ["p"]}),
    );
    let server = pod(&c, 0, Some("web"));
    let remote = pod(&c, 1, None);
    let third = pod(&c, 2, None);
    let local = pod(&c, 0, None);

    // Counters: denied traffic counts on the deny rule only, allowed on the allow rule only,
    // and only where the `in` rules are enforced (the server's host).
    assert_eq!(
        rule_counts(&c, "p"),
        [("1".to_string(), 0), ("2".to_string(), 0)].into(),
        "no traffic yet"
    );
    assert!(third.reaches(&server.ip, REACH));
    assert!(!third.connects_to(&server, 8001), "8001 let through");
    let after_deny = counts_become(&c, "p", "the deny rule to count", |m| m["1"] >= 1);
    assert_eq!(after_deny["2"], 0, "a denied SYN counted on the allow rule");
    assert!(third.connects_to(&server, 8000), "8000 refused");
    let after_allow = counts_become(&c, "p", "the allow rule to count", |m| m["2"] >= 1);
    assert!(after_allow["1"] >= after_deny["1"]);
    let (s, v) = c
        .master
        .api("GET", "/api/v1/inspect/policys/default:p/", None);
    assert_eq!(s, 200, "{v}");
    let stats = v["Oper"]["ruleStats"]
        .as_array()
        .expect("ruleStats")
        .clone();
    for r in &stats {
        let hosts: Vec<&String> = r["hosts"].as_object().unwrap().keys().collect();
        assert_eq!(
            hosts,
            ["host1"],
            "in rules count where the server lives: {v}"
        );
        assert_eq!(r["packets"], r["hosts"]["host1"]["packets"], "{v}");
        assert!(r["bytes"].as_u64().unwrap() >= 40 * r["packets"].as_u64().unwrap());
    }

    for p in [&remote, &third, &local] {
        assert!(
            p.reaches(&server.ip, REACH),
            "ping follows the rules: ICMP is allowed"
        );
        assert!(p.connects_to(&server, 8000), "{} -> 8000 refused", p.ip);
        assert!(
            !p.connects_to(&server, 8001),
            "{} -> 8001 let through",
            p.ip
        );
    }
    // The server's own connections out are not affected by its `in` rules (replies come back).
    assert!(server.connects_to(&remote, 9000));

    // An established connection to 8000 across hosts.
    let l = server.tcp_listener(8000);
    let mut client = remote
        .tcp_connect(&server.ip, 8000, Duration::from_secs(2))
        .unwrap();
    let (mut conn, _) = l.accept().unwrap();
    let echo = |client: &mut std::net::TcpStream, conn: &mut std::net::TcpStream, b: &[u8]| {
        client.write_all(b).unwrap();
        let mut got = vec![0; b.len()];
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.read_exact(&mut got).unwrap();
        assert_eq!(got, b);
    };
    echo(&mut client, &mut conn, b"before");

    // Live: allow 8001 opens it within a second or so; removing the rule closes it again.
    rule(&c, "3", 100, 8001, "allow");
    let opened = becomes(&remote, &server, 8001, true);
    echo(&mut client, &mut conn, b"after adding a rule");
    let (s, v) = c.master.api("DELETE", "/api/v1/rules/default:p:3/", None);
    assert_eq!(s, 200, "{v}");
    let closed = becomes(&remote, &server, 8001, false);
    echo(&mut client, &mut conn, b"after removing it");
    eprintln!("rule added -> port open in {opened:?}; removed -> closed in {closed:?}");
    drop(l);
}

#[test]
fn allow_only_from_a_group_out_rules_at_the_source_and_membership_changes() {
    let c = Cluster::start(3, &[]);
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    policy(&c, "p");
    policy(&c, "q");
    for (g, pols) in [
        ("db", json!(["p"])),
        ("app", json!(["q"])),
        ("other", json!([])),
    ] {
        post(
            &c,
            &format!("/api/v1/endpointGroups/default:{g}/"),
            json!({"tenantName": "default", "groupName": g, "networkName": "net", "policies": pols}),
        );
    }
    // p (on "db"): nothing in over TCP, except from group "app".
    rule(&c, "1", 1, 0, "deny");
    post(
        &c,
        "/api/v1/rules/default:p:2/",
        json!({"tenantName": "default", "policyName": "p", "ruleId": "2", "direction": "in",
               "priority": 100, "protocol": "tcp", "fromEndpointGroup": "app", "action": "allow"}),
    );
    // q (on "app"): may not open TCP 9100 to anyone (an out rule).
    post(
        &c,
        "/api/v1/rules/default:q:1/",
        json!({"tenantName": "default", "policyName": "q", "ruleId": "1", "direction": "out",
               "priority": 10, "protocol": "tcp", "port": 9100, "action": "deny"}),
    );
    let db = pod(&c, 0, Some("db"));
    let app = pod(&c, 1, Some("app"));
    let other = pod(&c, 2, Some("other"));
    let none = pod(&c, 0, None);
    assert!(app.connects_to(&db, 5432), "group app must reach db");
    assert!(
        !other.connects_to(&db, 5432),
        "group other must not reach db"
    );
    assert!(
        !none.connects_to(&db, 5432),
        "a pod outside any group must not reach db"
    );
    // The out rule of app holds at app's host, whoever the destination is.
    assert!(
        !app.connects_to(&none, 9100),
        "app's out rule denies TCP 9100"
    );
    assert!(app.connects_to(&none, 9101));
    assert!(other.connects_to(&none, 9100), "the out rule is app's only");

    // Joining: a pod of app made now, on the third host, is governed by both policies at once
    // (the first connection tried, no waiting), on its own host and on db's.
    let app2 = pod(&c, 2, Some("app"));
    assert!(
        app2.connects_to(&db, 5432),
        "a new member of app is not let in by db's host"
    );
    assert!(
        !app2.connects_to(&none, 9100),
        "a new member of app escapes app's out rule"
    );

    // Leaving: app's first pod is deleted; a pod of group other made next on its host gets its
    // address (and MAC), but not its membership.
    let conf = c.hosts[1].conf("1.0.0", json!({"network": "net", "group": "app"}));
    let del = c.hosts[1].cni("DEL", &app.container_id, &app.netns_path(), "eth0", &conf);
    assert!(del.ok(), "DEL: {}", del.stdout);
    let reused = pod(&c, 1, Some("other"));
    assert_eq!(reused.ip, app.ip, "the address was not reused");
    assert!(
        !reused.connects_to(&db, 5432),
        "the address of a pod that left app still lets its new holder in"
    );
    assert!(
        reused.connects_to(&none, 9100),
        "app's out rule follows the old address"
    );
    drop(app);
}

#[test]
fn a_network_profile_caps_bandwidth_both_ways_and_marks_dscp_to_the_outer_header() {
    let c = Cluster::start(2, &[]);
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    post(
        &c,
        "/api/v1/netprofiles/default:slow/",
        json!({"tenantName": "default", "profileName": "slow", "bandwidth": "10mbps",
               "burst": 256, "DSCP": 46}),
    );
    post(
        &c,
        "/api/v1/endpointGroups/default:capped/",
        json!({"tenantName": "default", "groupName": "capped", "networkName": "net",
               "netProfile": "slow"}),
    );
    let capped = pod(&c, 0, Some("capped"));
    let free = pod(&c, 0, None);
    let peer = pod(&c, 1, None);
    assert!(capped.reaches(&peer.ip, REACH) && free.reaches(&peer.ip, REACH));
    let out = capped.iperf3_to(&peer, 2);
    let inn = peer.iperf3_to(&capped, 2);
    let unshaped = free.iperf3_to(&peer, 2);
    eprintln!("capped out {out:.4} Gbit/s, in {inn:.4}; unshaped {unshaped:.4}");
    assert!(out < 0.015, "egress not capped at 10 Mbit/s: {out} Gbit/s");
    assert!(inn < 0.015, "ingress not capped at 10 Mbit/s: {inn} Gbit/s");
    assert!(
        out > 0.002 && inn > 0.002,
        "the cap starves traffic: {out} / {inn}"
    );
    assert!(
        unshaped > 3.0 * out,
        "an unprofiled pod is capped too: {unshaped}"
    );
    // 10 Mbit/s +- 15% each way (the burst is small against 2 s of traffic).
    for (what, r) in [("egress", out), ("ingress", inn)] {
        assert!(
            (0.0085..=0.0115).contains(&r),
            "{what} {r} Gbit/s is not 10 Mbit/s +- 15%"
        );
    }
    // Updating the profile changes the running pod's rate (the burst scales with the rate: TCP
    // through a policer with a small bucket stays far below the rate).
    post(
        &c,
        "/api/v1/netprofiles/default:slow/",
        json!({"tenantName": "default", "profileName": "slow", "bandwidth": "20mbps",
               "burst": 512, "DSCP": 46}),
    );
    let mut faster = 0.0;
    wait_for("the new rate", Duration::from_secs(20), || {
        faster = capped.iperf3_to(&peer, 2);
        faster > 0.015
    });
    // The run that saw the change may have straddled it: measure once more.
    let faster = capped.iperf3_to(&peer, 2);
    eprintln!("after the update to 20 Mbit/s: {faster:.4} Gbit/s");
    assert!(
        (0.015..=0.023).contains(&faster),
        "{faster} Gbit/s: not above the old 10 Mbit/s cap and within 20 Mbit/s + 15%"
    );

    // DSCP 46 (tos 0xb8) on the pod's packets, copied to the VXLAN outer header on the underlay.
    assert_dscp_46_in_tunnel(&c.hosts[1], &c.hosts[0], || {
        capped.exec(&["ping", "-c", "3", "-i", "0.2", &peer.ip]);
    });
}

#[test]
fn a_pod_in_a_deny_group_is_closed_from_its_first_packet_and_rules_overlap_by_priority() {
    let c = Cluster::start(2, &[]);
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    policy(&c, "p");
    post(
        &c,
        "/api/v1/endpointGroups/default:locked/",
        json!({"tenantName": "default", "groupName": "locked", "networkName": "net", "policies": ["p"]}),
    );
    // Everything in is denied (any protocol) ...
    post(
        &c,
        "/api/v1/rules/default:p:1/",
        json!({"tenantName": "default", "policyName": "p", "ruleId": "1", "direction": "in",
               "priority": 1, "action": "deny"}),
    );
    let a = pod(&c, 1, None);
    let b = pod(&c, 1, None);
    assert!(a.reaches(&b.ip, REACH));
    // A pinger runs before the locked pod exists; its address is the next one.
    let target = "10.1.2.4";
    let pinger = std::process::Command::new("ip")
        .args([
            "netns", "exec", &a.netns, "ping", "-i", "0.05", "-W", "1", "-c", "60", target,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let locked = pod(&c, 0, Some("locked"));
    assert_eq!(locked.ip, target);
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(" 0 received"),
        "the locked pod answered before its policy was in force: {text}"
    );
    // ... except from a's address (priority 50) and from the network's subnet on TCP 7000 (60);
    // a more specific deny of b's address at a higher priority wins over the subnet rule.
    post(
        &c,
        "/api/v1/rules/default:p:2/",
        json!({"tenantName": "default", "policyName": "p", "ruleId": "2", "direction": "in",
               "priority": 50, "fromIpAddress": a.ip, "action": "allow"}),
    );
    post(
        &c,
        "/api/v1/rules/default:p:3/",
        json!({"tenantName": "default", "policyName": "p", "ruleId": "3", "direction": "in",
               "priority": 60, "protocol": "tcp", "port": 7000, "fromNetwork": "net", "action": "allow"}),
    );
    post(
        &c,
        "/api/v1/rules/default:p:4/",
        json!({"tenantName": "default", "policyName": "p", "ruleId": "4", "direction": "in",
               "priority": 70, "protocol": "tcp", "port": 7000, "fromIpAddress": b.ip,
               "action": "deny"}),
    );
    becomes(&a, &locked, 7001, true);
    assert!(a.reaches(&locked.ip, REACH), "a is allowed by address");
    assert!(!b.ping(&locked.ip), "b is not");
    assert!(
        !b.connects_to(&locked, 7000),
        "b's own deny (70) beats the subnet allow (60)"
    );
    let other = pod(&c, 0, None);
    assert!(other.connects_to(&locked, 7000), "the subnet allow on 7000");
    assert!(!other.connects_to(&locked, 7001));
}

/// The meters a pod's classification flows (table 0, matching its address) use.
fn meters_used(flows: &str, ip: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = flows
        .lines()
        .filter(|l| l.contains(&format!("nw_src={ip} ")))
        .filter_map(|l| l.split("meter:").nth(1)?.split(',').next()?.parse().ok())
        .collect();
    ids.dedup();
    ids
}

#[test]
fn meters_nobody_wants_after_an_agent_restart_are_deleted() {
    let mut c = Cluster::start(1, &[]);
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    for (profile, group, rate) in [("slow", "capped", "10mbps"), ("slower", "kept", "5mbps")] {
        post(
            &c,
            &format!("/api/v1/netprofiles/default:{profile}/"),
            json!({"tenantName": "default", "profileName": profile, "bandwidth": rate}),
        );
        post(
            &c,
            &format!("/api/v1/endpointGroups/default:{group}/"),
            json!({"tenantName": "default", "groupName": group, "networkName": "net",
                   "netProfile": profile}),
        );
    }
    let capped = pod(&c, 0, Some("capped"));
    let kept = pod(&c, 0, Some("kept"));
    let gone = pod(&c, 0, Some("kept"));
    wait_for("two meters per profiled pod", REACH, || {
        c.hosts[0].meters().len() == 6
    });
    let kept_meter = meters_used(&c.hosts[0].flows(), &kept.ip);
    assert_eq!(kept_meter.len(), 1, "{}", c.hosts[0].flows());

    // While the agent is down: capped's group loses its profile, gone's endpoint is deleted.
    c.hosts[0].kill_agent();
    post(
        &c,
        "/api/v1/endpointGroups/default:capped/",
        json!({"tenantName": "default", "groupName": "capped", "networkName": "net"}),
    );
    let eps = c.master.endpoints();
    let gone_id = eps
        .iter()
        .find(|e| e["ipAddress"] == gone.ip.as_str())
        .and_then(|e| e["endpointID"].as_str())
        .expect("gone's endpoint")
        .to_string();
    let (s, v) = c
        .master
        .api("DELETE", &format!("/api/v1/endpoints/{gone_id}/"), None);
    assert_eq!(s, 200, "{v}");
    c.hosts[0].start_agent();

    // Only kept's two meters stay; the pods keep talking, kept still through its meter.
    wait_for("the unwanted meters to be deleted", REACH, || {
        let m = c.hosts[0].meters();
        m.len() == 2 && m.contains(&kept_meter[0])
    });
    assert!(capped.reaches(&kept.ip, REACH), "capped lost its traffic");
    assert_eq!(
        meters_used(&c.hosts[0].flows(), &capped.ip),
        Vec::<u32>::new()
    );
    let flows = c.hosts[0].flows();
    assert!(
        flows.contains(&format!("meter:{},", kept_meter[0])),
        "kept's flows lost its meter: {flows}"
    );
}
