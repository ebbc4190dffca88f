//! The web UI against the simulated cluster (real netmaster, agents, OVS, pods), in headless
//! chromium (test-browser, shared with master/tests/ui_browser.rs): what the UI's forms create,
//! the real `netctl` lists over https (its own login, netmaster's CA); and a rule made in the UI
//! counts real packets that the agents report, per host and in total, on the policies page.
//!
//! Needs `chromium` and `chromium-driver` like ui_browser (skipped and said so without them,
//! a failure with `CONTIV_UI_BROWSER=require`). Screenshots go beside ui_browser's
//! (`target/tmp/ui-screenshots/` or `$CONTIV_UI_SCREENSHOTS`), named `cluster-*`.

use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use test_browser::{Ui, have_browser, screenshot_dir};
use test_e2e::{Cluster, Pod, bin, wait_for};

const TENANT: &str = "shop";
/// The port the UI's rule denies.
const DENIED: u16 = 8001;

/// The real `netctl` over https as a user would run it: `--cacert` netmaster's CA and a
/// `netctl login` kept in `home` (not the harness's token, nor its unix socket).
struct NetctlHttps<'a> {
    url: String,
    ca: std::path::PathBuf,
    home: &'a Path,
}

impl NetctlHttps<'_> {
    /// Runs netctl with `args`, `stdin` on its standard input; its standard output, or the
    /// test fails with its error.
    fn run(&self, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new(bin("netctl"))
            .env("HOME", self.home)
            .arg("--netmaster")
            .arg(&self.url)
            .arg("--cacert")
            .arg(&self.ca)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start netctl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "netctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The row of `netctl args` with a cell `name` (tables start with the tenant or the name),
    /// as its cells.
    fn row(&self, args: &[&str], name: &str) -> Vec<String> {
        let out = self.run(args, "");
        out.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|cells| cells.iter().any(|c| c == name))
            .unwrap_or_else(|| panic!("netctl {args:?} does not list {name}:\n{out}"))
    }
}

/// The rule row's packet counters on the policies page: (total, per host).
fn counters(cells: &[String]) -> (u64, Vec<(String, u64)>) {
    let total = cells[0].trim().replace(',', "").parse().unwrap_or(0);
    let hosts = cells[1]
        .lines()
        .filter_map(|l| {
            let (h, n) = l.split_once(": ")?;
            Some((h.to_string(), n.trim().replace(',', "").parse().ok()?))
        })
        .collect();
    (total, hosts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_objects_seen_by_netctl_and_rule_counters_moved_by_real_traffic() {
    if !have_browser() {
        return;
    }
    // Logins are what this test is about: authentication on even under CONTIV_E2E_AUTH=0.
    let c = Cluster::start(2, &["--auth", "on"]);
    let cred: Value = serde_json::from_slice(
        &std::fs::read(c.master.dir.join("data/admin-credential.json")).unwrap(),
    )
    .unwrap();
    let admin_pw = cred["password"].as_str().unwrap();
    let shots = screenshot_dir(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"));
    let ui = Ui::open(&c.master.tcp_url(), shots).await;

    // Everything through the UI's forms, as the admin.
    ui.goto("/ui/tenants").await;
    ui.wait_path("/ui/login?next=%2Fui%2Ftenants").await;
    ui.log_in("admin", admin_pw, "/ui/tenants").await;
    ui.create("/ui/new/tenants", &[("tenantName", TENANT)], "/ui/tenants")
        .await;
    let q = format!("?tenantName={TENANT}");
    ui.create(
        &format!("/ui/new/networks{q}"),
        &[
            ("networkName", "web"),
            ("encap", "vxlan"),
            ("subnet", "10.1.0.0/24"),
            ("gateway", "10.1.0.1"),
        ],
        "/ui/networks",
    )
    .await;
    ui.create(
        &format!("/ui/new/policys{q}"),
        &[("policyName", "webpol")],
        "/ui/policies",
    )
    .await;
    let port = DENIED.to_string();
    ui.create(
        &format!("/ui/new/rules{q}&policyName=webpol"),
        &[
            ("ruleId", "block"),
            ("priority", "10"),
            ("direction", "in"),
            ("action", "deny"),
            ("protocol", "tcp"),
            ("port", &port),
        ],
        "/ui/policies",
    )
    .await;
    ui.create(
        &format!("/ui/new/endpointGroups{q}"),
        &[
            ("groupName", "frontend"),
            ("networkName", "web"),
            ("policies", "webpol"),
        ],
        "/ui/groups",
    )
    .await;
    ui.wait_text("main table tr", "frontend").await;

    // netctl lists them: over https, trusting netmaster's CA, after its own login.
    // Its own HOME (removed with the master's dir), apart from the harness's login.
    let home = c.master.dir.join("user-home");
    std::fs::create_dir_all(&home).unwrap();
    let netctl = NetctlHttps {
        url: c.master.tcp_url(),
        ca: c.master.dir.join("data/tls/ca.pem"),
        home: &home,
    };
    let out = netctl.run(&["login"], &format!("admin\n{admin_pw}\n"));
    assert!(out.contains("Login successful"), "{out}");
    let t = ["-t", TENANT];
    netctl.row(&["tenant", "ls"], TENANT);
    let net = netctl.row(&["net", "ls", t[0], t[1]], "web");
    assert!(
        net.contains(&"10.1.0.0/24".into()) && net.contains(&"10.1.0.1".into()),
        "{net:?}"
    );
    let group = netctl.row(&["group", "ls", t[0], t[1]], "frontend");
    assert!(
        group.contains(&"web".into()) && group.iter().any(|c| c.contains("webpol")),
        "{group:?}"
    );
    netctl.row(&["policy", "ls", t[0], t[1]], "webpol");
    let rules = netctl.run(&["policy", "rule-ls", t[0], t[1], "webpol"], "");
    let incoming = rules
        .split("Outgoing Rules:")
        .next()
        .and_then(|s| s.split_once("Incoming Rules:"))
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no incoming rules table:\n{rules}"));
    let rule: Vec<&str> = incoming
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&"block"))
        .unwrap_or_else(|| panic!("rule block is not an incoming rule:\n{rules}"));
    assert_eq!(rule, ["block", "10", "tcp", &port, "deny"], "{rules}");

    // Pods in the group on both hosts, a client outside it.
    let pod = |h: usize, group: Option<&str>| -> Pod {
        let mut v = json!({"network": "web", "tenant": TENANT});
        if let Some(g) = group {
            v["group"] = json!(g);
        }
        c.hosts[h].pod(&c.hosts[h].conf("1.0.0", v))
    };
    let servers = [pod(0, Some("frontend")), pod(1, Some("frontend"))];
    let client = pod(0, None);

    // The rule's row on the policies page: column 9 the total, 10 the hosts.
    let cells = "#policy-shop\\:webpol tbody tr:first-child td:nth-child(n+9):nth-child(-n+10)";
    ui.goto("/ui/policies").await;
    let before = ui.texts(cells).await;
    assert!(
        matches!(before.first().map(String::as_str), Some("0" | "no report")),
        "the rule counted before any traffic: {before:?}"
    );

    // The network works (another port is let through), and the rule refuses DENIED on each
    // server's host: one on the client's host, one across the tunnel.
    for s in &servers {
        assert!(
            client.reaches(&s.ip, Duration::from_secs(10)),
            "{} unreachable",
            s.ip
        );
        wait_for(
            &format!("{} -> {}:8000 to connect", client.ip, s.ip),
            Duration::from_secs(10),
            || client.connects_to(s, 8000),
        );
        assert!(
            !client.connects_to(s, DENIED),
            "{}:{DENIED} let through",
            s.ip
        );
    }

    // The agents' reports reach the page: each host counted the SYNs it refused.
    let seen = ui
        .wait_texts(
            cells,
            "counts on both hosts adding up to the total",
            true,
            |t| {
                let (total, hosts) = counters(t);
                hosts.len() == 2
                    && hosts.iter().all(|(_, n)| *n > 0)
                    && hosts.iter().map(|(_, n)| n).sum::<u64>() == total
            },
        )
        .await;
    let (_, hosts) = counters(&seen);
    let names: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(names, ["host1", "host2"], "{seen:?}");
    ui.shot("cluster-policies").await;
    // netctl reads the same counters (no traffic since: as many, or more from a later report).
    let (total, _) = counters(&seen);
    let counted = netctl.run(&["policy", "rule-ls", "--counts", t[0], t[1], "webpol"], "");
    let packets: u64 = counted
        .lines()
        .find(|l| l.starts_with("block "))
        .and_then(|l| l.split_whitespace().rev().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no packet count for rule block:\n{counted}"));
    assert!(
        packets >= total,
        "netctl counts {packets}, the page {total}"
    );
    ui.goto("/ui/endpoints").await;
    ui.wait_text("#ep-count", "3 of 3 endpoints").await;
    ui.shot("cluster-endpoints").await;
    ui.close().await;
}
