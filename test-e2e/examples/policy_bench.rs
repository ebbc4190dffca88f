//! Benchmark: how fast policy reaches the datapath, and what the rule counters cost.
//!
//! `cargo run --release -p test-e2e --example policy_bench [-- --endpoints 100 --rules 1000 --clients 8]`
//!
//! Four figures, on a simulated cluster of 3 hosts (as the e2e tests use) with 100 pods of group
//! `web` on host1 and one on each other host, made by the real `contiv` plugin:
//! 1. REST ingest: 1,000 rules written into a policy through the REST API, by `--clients`
//!    concurrent keep-alive connections (as a script or an operator tool would), one rule a call;
//! 2. programming: that policy is attached to the group (one REST call), and the time until all
//!    1,000 rule flows are in host1's switch, i.e. in force for its 100 endpoints;
//! 3. one `rule-add` REST call to the rule's flow on all 3 hosts (median of 5);
//! 4. the rule counters: an agent's read of its rule flows, `netctl policy rule-ls --counts`.
//!
//! Needs root, Open vSwitch and iproute2 (scripts/setup.sh). "In the switch" means the rule's flow
//! is in the host's OpenFlow table 24 (`ovs-ofctl dump-flows`, polled every 10 ms); the rule is
//! enforced from that moment. Targets (issue 8): 1,000 rules <= 1 s, rule-add to enforcement on
//! every host <= 1 s.

use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use test_e2e::{Cluster, Host, cli_arg};

/// The ingress rule flows (table 24) on a host.
fn rule_flows(h: &Host) -> String {
    let out = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow14", "dump-flows"])
        .arg(format!("unix:{}/{}.mgmt", h.dir.display(), h.bridge))
        .arg("table=24")
        .output()
        .expect("ovs-ofctl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() {
    let endpoints = cli_arg("--endpoints", 100);
    let rules = cli_arg("--rules", 1000);
    let clients = cli_arg("--clients", 8).max(1);
    let c = Cluster::start(3, &[]);
    c.master
        .network("default", "net", "10.1.0.0/16", "10.1.0.1");
    let post = |path: &str, body: serde_json::Value| {
        let (s, v) = c.master.api("POST", path, Some(body));
        assert_eq!(s, 200, "POST {path}: {v}");
    };
    post(
        "/api/v1/policys/default:p/",
        json!({"tenantName": "default", "policyName": "p"}),
    );
    let group = |policies: &[&str]| json!({"tenantName": "default", "groupName": "web", "networkName": "net", "policies": policies});
    post("/api/v1/endpointGroups/default:web/", group(&[]));
    let conf = |h: &Host| h.conf("1.0.0", json!({"network": "net", "group": "web"}));
    println!(
        "policy_bench: 3 hosts, {endpoints} endpoints of group web on host1 (+1 on each other host), {rules} rules, {clients} REST clients"
    );
    let mut pods: Vec<_> = (0..endpoints)
        .map(|_| c.hosts[0].pod(&conf(&c.hosts[0])))
        .collect();
    pods.push(c.hosts[1].pod(&conf(&c.hosts[1])));
    pods.push(c.hosts[2].pod(&conf(&c.hosts[2])));

    // 1. REST ingest: the rules go into policy p while no group uses it.
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let api = c.master.client();
    let t0 = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..clients {
            let api = api.clone();
            tasks.spawn(async move {
                for i in (k..rules).step_by(clients) {
                    let rule: model::Rule = serde_json::from_value(json!({
                        "tenantName": "default", "policyName": "p", "ruleId": format!("r{i}"),
                        "direction": "in", "priority": 1 + (i % 100), "protocol": "tcp",
                        "port": 10000 + i, "action": "deny"}))
                    .expect("rule JSON");
                    if let Err(e) = api.put(&rule).await {
                        panic!("POST rule r{i}: {e}");
                    }
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("REST client task");
        }
    });
    let rest = t0.elapsed();
    println!(
        "REST ingest: {rules} rules by {clients} clients in {:.0} ms ({:.2} ms a rule)",
        rest.as_secs_f64() * 1e3,
        rest.as_secs_f64() * 1e3 / rules as f64
    );

    // 2. Programming: attach the policy; every rule flow on host1.
    let t1 = Instant::now();
    post("/api/v1/endpointGroups/default:web/", group(&["p"]));
    wait_until("every rule's flow on host1", || {
        rule_flows(&c.hosts[0]).matches("tp_dst=").count() >= rules
    });
    let programmed = t1.elapsed();
    println!(
        "programming: policy with {rules} rules attached to the group of {endpoints} endpoints -> every rule flow in host1's switch: {:.0} ms",
        programmed.as_secs_f64() * 1e3
    );

    // One more rule: from the REST call to its flow on every host.
    let mut delays = Vec::new();
    for round in 0..5 {
        let port = 30000 + round;
        let id = format!("x{round}");
        let t = Instant::now();
        post(
            &format!("/api/v1/rules/default:p:{id}/"),
            json!({"tenantName": "default", "policyName": "p", "ruleId": id, "direction": "in",
                   "priority": 50, "protocol": "tcp", "port": port, "action": "deny"}),
        );
        let needle = format!("tp_dst={port}");
        let mut per_host = Vec::new();
        for h in &c.hosts {
            wait_until("the new rule's flow", || rule_flows(h).contains(&needle));
            per_host.push(t.elapsed());
        }
        let worst = per_host.iter().max().unwrap().as_secs_f64() * 1e3;
        delays.push(worst);
        println!(
            "rule-add -> flow on all 3 hosts: {worst:.0} ms (per host, cumulative: {:?})",
            per_host
                .iter()
                .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
        );
    }
    delays.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "rule-add to enforcement on all hosts, median of 5: {:.0} ms",
        delays[2]
    );

    // Rule counters: what each agent does every 2 s while rules have flows (dump the rule
    // cookies' flows), and how long until netctl shows every rule with its count.
    let t = Instant::now();
    let reads = 10;
    for _ in 0..reads {
        let out = Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow14", "--no-names", "dump-flows"])
            .arg(format!(
                "unix:{}/{}.mgmt",
                c.hosts[0].dir.display(),
                c.hosts[0].bridge
            ))
            .arg("cookie=0x0600000000000000/0xff00000000000000")
            .output()
            .expect("ovs-ofctl");
        assert!(out.status.success());
    }
    println!(
        "reading the counters of {} rule flows on host1 (the agent's read every 2 s): {:.1} ms",
        rules + 5,
        t.elapsed().as_secs_f64() * 1e3 / f64::from(reads)
    );
    let t = Instant::now();
    let listed = c.master.netctl(&["policy", "rule-ls", "--counts", "p"]);
    println!(
        "netctl policy rule-ls --counts with {} rules: {:.0} ms ({} lines)",
        rules + 5,
        t.elapsed().as_secs_f64() * 1e3,
        listed.lines().count()
    );
    drop(pods);
}
