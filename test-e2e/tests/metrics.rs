//! The agent's metrics (`--metrics-listen`), scraped over HTTP from a real agent in the
//! simulated cluster and parsed as OpenMetrics: CNI calls, endpoints and flows move with ADD and
//! DEL, a policy rule's packet counter with traffic through it, an endpoint's anti-spoofing
//! series appears when it forges and disappears with the endpoint.

use model::metrics::testing::{Sample, Scrape, find, value};
use serde_json::json;
use std::time::Duration;
use test_e2e::docker::PluginSocket;
use test_e2e::{Cluster, Host, Pod, forge, wait_for};

fn post(c: &Cluster, path: &str, body: serde_json::Value) {
    let (s, v) = c.master.api("POST", path, Some(body));
    assert_eq!(s, 200, "POST {path}: {v}");
}

/// Waits until a scrape of `h` satisfies `ok`; returns that scrape.
fn scrape_until(h: &Host, what: &str, ok: impl Fn(&[Sample]) -> bool) -> Scrape {
    let mut last = Scrape::default();
    wait_for(what, Duration::from_secs(20), || {
        last = h.metrics();
        ok(&last)
    });
    last
}

fn rule_labels(rule: &str) -> [(&'static str, &str); 4] {
    [
        ("tenant", "default"),
        ("policy", "p"),
        ("rule", rule),
        ("direction", "in"),
    ]
}

fn rule_packets(s: &[Sample], rule: &str) -> f64 {
    value(s, "contiv_rule_packets_total", &rule_labels(rule)).unwrap_or(0.0)
}

fn count(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(s, name, labels).unwrap_or(0.0)
}

const NET: [(&str, &str); 2] = [("tenant", "default"), ("network", "net")];

#[test]
fn agent_metrics_follow_cni_calls_rules_and_spoofing() {
    let metrics = ["--metrics-listen", "127.0.0.1:0"];
    let plugin = PluginSocket::new();
    let c = Cluster::start_with_agents(
        1,
        &metrics,
        &[metrics[0], metrics[1], "--docker-socket", &plugin.path],
    );
    let h = &c.hosts[0];
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    post(
        &c,
        "/api/v1/policys/default:p/",
        json!({"tenantName": "default", "policyName": "p"}),
    );
    for (id, prio, port, action) in [("1", 1, 0, "deny"), ("2", 100, 8000, "allow")] {
        let mut r = json!({"tenantName": "default", "policyName": "p", "ruleId": id,
            "direction": "in", "priority": prio, "protocol": "tcp", "action": action});
        if port != 0 {
            r["port"] = json!(port);
        }
        post(&c, &format!("/api/v1/rules/default:p:{id}/"), r);
    }
    post(
        &c,
        "/api/v1/endpointGroups/default:web/",
        json!({"tenantName": "default", "groupName": "web", "networkName": "net", "policies": ["p"]}),
    );

    let before = h.metrics();
    let adds = |s: &[Sample]| {
        count(
            s,
            "contiv_cni_call_duration_seconds_count",
            &[("command", "ADD")],
        )
    };
    assert_eq!(adds(&before), 0.0, "no ADD yet");
    assert!(
        count(&before, "contiv_watch_connects_total", &[]) >= 1.0
            && count(&before, "contiv_watch_relists_total", &[]) >= 1.0,
        "the agent's first watch is counted as a connect and a listing"
    );
    assert!(count(&before, "contiv_ovsdb_connections_total", &[]) >= 1.0);
    assert!(count(&before, "contiv_openflow_connections_total", &[]) >= 1.0);

    let server_conf = h.conf("1.0.0", json!({"network": "net", "group": "web"}));
    let client_conf = h.conf("1.0.0", json!({"network": "net"}));
    let server = h.pod(&server_conf);
    let client = h.pod(&client_conf);

    let after_add = h.metrics();
    assert_eq!(adds(&after_add), 2.0);
    assert_eq!(value(&after_add, "contiv_endpoints", &NET), Some(2.0));
    let master = c.master.metrics();
    assert_eq!(value(&master, "contiv_network_endpoints", &NET), Some(2.0));
    assert_eq!(value(&master, "contiv_nodes", &[]), Some(1.0));
    // The steps of the log line, as histograms: the netmaster call is one of every ADD.
    assert_eq!(
        value(
            &after_add,
            "contiv_cni_step_duration_seconds_count",
            &[("command", "ADD"), ("step", "master")]
        ),
        Some(2.0),
        "{:?}",
        find(&after_add, "contiv_cni_step_duration_seconds_count", &[])
    );
    // Flows by table: endpoints classify in table 0, policy rules sit in the ingress table.
    assert!(
        count(
            &after_add,
            "contiv_flows",
            &[("table", "0"), ("name", "classify")]
        ) > 0.0
    );
    assert!(
        count(
            &after_add,
            "contiv_flows",
            &[("table", "24"), ("name", "ingress")]
        ) > 0.0
    );

    // A failed ADD counts under its CNI error code.
    let bad = Pod::new();
    let out = h.cni(
        "ADD",
        &bad.container_id,
        &bad.netns_path(),
        "eth0",
        &h.conf("1.0.0", json!({"network": "no-such-net"})),
    );
    assert!(!out.ok(), "ADD to a missing network succeeded");
    let code = out.json["code"]
        .as_u64()
        .expect("a CNI error code")
        .to_string();
    let errs = h.metrics();
    assert_eq!(
        value(
            &errs,
            "contiv_cni_call_errors_total",
            &[("command", "ADD"), ("code", &code)]
        ),
        Some(1.0)
    );

    // Traffic through each rule moves its counter (read by the agent every 2 s).
    let base = scrape_until(h, "the rules' counters", |s| {
        value(s, "contiv_rule_packets_total", &rule_labels("1")).is_some()
    });
    assert!(!client.connects_to(&server, 8001), "8001 let through");
    let denied = scrape_until(h, "the deny rule's counter to move", |s| {
        rule_packets(s, "1") > rule_packets(&base, "1")
    });
    assert!(count(&denied, "contiv_rule_bytes_total", &rule_labels("1")) > 0.0);
    assert!(client.connects_to(&server, 8000), "8000 refused");
    scrape_until(h, "the allow rule's counter to move", |s| {
        rule_packets(s, "2") > rule_packets(&base, "2")
    });

    // A forged frame (the server's address with the client's MAC) is dropped and counted for
    // the client's endpoint.
    let client_ep = format!("{}-eth0", client.container_id);
    let spoofed = [("endpoint", client_ep.as_str())];
    assert_eq!(
        value(&h.metrics(), "contiv_spoofed_packets_total", &spoofed),
        None
    );
    let ip = |p: &Pod| p.ip.parse().unwrap();
    client.send_raw(
        "eth0",
        vec![forge::udp4(
            client.mac(),
            server.mac(),
            ip(&server),
            ip(&server),
            4000,
            4001,
            b"x",
        )],
        false,
    );
    scrape_until(h, "the forged frame to be counted", |s| {
        count(s, "contiv_spoofed_packets_total", &spoofed) >= 1.0
    });

    // DEL: the endpoint's series go at once, and the network has one endpoint left.
    let out = h.cni(
        "DEL",
        &client.container_id,
        &client.netns_path(),
        "eth0",
        &client_conf,
    );
    assert!(out.ok(), "DEL failed: {}", out.stdout);
    let after_del = h.metrics();
    assert_eq!(
        value(&after_del, "contiv_spoofed_packets_total", &spoofed),
        None,
        "a deleted endpoint's series stays"
    );
    assert_eq!(value(&after_del, "contiv_endpoints", &NET), Some(1.0));
    assert_eq!(
        count(
            &after_del,
            "contiv_cni_call_duration_seconds_count",
            &[("command", "DEL")]
        ),
        1.0
    );
    // The watch events of the new endpoints reached the switch, and that took a measured time.
    assert!(count(&after_del, "contiv_watch_apply_lag_seconds_count", &[]) >= 1.0);

    // Docker driver calls, as dockerd makes them: one answered, one refused (a body that is not
    // the call's JSON).
    plugin.wait();
    assert_eq!(
        docker_call(&plugin.path, "NetworkDriver.GetCapabilities", "{}"),
        200
    );
    assert_eq!(
        docker_call(&plugin.path, "IpamDriver.RequestPool", "[1]"),
        500
    );
    let after_docker = h.metrics();
    let caps = [("call", "NetworkDriver.GetCapabilities")];
    let pool = [("call", "IpamDriver.RequestPool")];
    assert_eq!(
        value(
            &after_docker,
            "contiv_docker_call_duration_seconds_count",
            &caps
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&after_docker, "contiv_docker_call_errors_total", &caps),
        None
    );
    assert_eq!(
        value(&after_docker, "contiv_docker_call_errors_total", &pool),
        Some(1.0)
    );

    // Every metric the Grafana dashboard queries is one the daemons serve.
    let served: std::collections::BTreeSet<&String> = after_docker
        .families
        .keys()
        .chain(master.families.keys())
        .collect();
    for name in dashboard_metrics() {
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            served.contains(&family.to_string()),
            "conf/grafana/contiv.json queries {name}, which no daemon serves ({served:?})"
        );
    }
}

/// Calls the Docker plugin socket as dockerd does; returns the HTTP status.
fn docker_call(socket: &str, call: &str, body: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
            socket,
        ])
        .args([
            "-H",
            "Content-Type: application/vnd.docker.plugins.v1.2+json",
        ])
        .args(["-X", "POST", "-d", body])
        .arg(format!("http://localhost/{call}"))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The metric names in the expressions of conf/grafana/contiv.json.
fn dashboard_metrics() -> std::collections::BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/grafana/contiv.json");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("dashboard JSON");
    let names: std::collections::BTreeSet<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("contiv_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(names.len() > 10, "{names:?}");
    names
}
