//! Several netmasters on a real 3-member etcd cluster: leader election and failover, writes
//! forwarded by followers, allocation exactly-once through a failover, etcd member loss, node
//! liveness (reclaim after the grace period), rule and anti-spoofing counters held by the leader,
//! and migration
//! from the embedded store.

mod common;
use common::{Netmaster, err};
use model::agent::{
    EndpointRequest, HostAccessReport, NodeRegistration, RuleCounters, RuleStatsReport,
    SpoofStatsReport,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;
use store::testing::Cluster;

/// The leader lease's TTL in these tests.
const TTL: u64 = 3;

fn master_on(cluster: &Cluster, extra: &[&str]) -> Netmaster {
    let eps = cluster.endpoints().join(",");
    let ttl = TTL.to_string();
    let mut args = vec!["--etcd-endpoints", &eps, "--leader-ttl", &ttl];
    args.extend_from_slice(extra);
    Netmaster::start_with(&args)
}

async fn info(m: &Netmaster) -> Option<Value> {
    let c = m.client();
    c.info()
        .await
        .ok()
        .map(|i| serde_json::to_value(i).unwrap())
}

/// Waits until exactly one of the running masters leads and every other names it; returns its
/// index.
async fn wait_leader(masters: &[&Netmaster], within: Duration) -> usize {
    let end = Instant::now() + within;
    loop {
        let mut infos = Vec::new();
        for m in masters {
            infos.push(info(m).await);
        }
        let leaders: Vec<usize> = (0..masters.len())
            .filter(|&i| {
                infos[i]
                    .as_ref()
                    .is_some_and(|v| v["current-state"] == "leader")
            })
            .collect();
        if let [l] = leaders[..] {
            let url = &masters[l].url;
            if infos
                .iter()
                .all(|i| i.as_ref().is_some_and(|v| v["leader-ip"] == *url))
            {
                return l;
            }
        }
        if Instant::now() >= end {
            let logs: Vec<String> = masters.iter().map(|m| m.log()).collect();
            panic!(
                "no single leader within {within:?}: {infos:?}\nlogs:\n{}",
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `m`'s `/info` lists exactly these masters.
async fn wait_masters(m: &Netmaster, urls: &[&str]) {
    let mut want: Vec<&str> = urls.to_vec();
    want.sort();
    let end = Instant::now() + Duration::from_secs(TTL + 10);
    loop {
        let got = info(m).await.map(|i| i["netmaster-nodes"].clone());
        if got.as_ref().and_then(|v| v.as_array()).is_some_and(|a| {
            let mut a: Vec<&str> = a.iter().filter_map(|u| u.as_str()).collect();
            a.sort();
            a == want
        }) {
            return;
        }
        assert!(
            Instant::now() < end,
            "masters listed: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ep_req(id: &str, host: &str) -> EndpointRequest {
    EndpointRequest {
        endpoint_id: id.into(),
        tenant_name: "default".into(),
        network_name: "n".into(),
        host: host.into(),
        ..Default::default()
    }
}

/// The `netctl` binary of this workspace, built next to netmaster if it is not there yet.
fn netctl_bin() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_netmaster"))
        .parent()
        .unwrap()
        .to_path_buf();
    let bin = dir.join("netctl");
    if !bin.exists() {
        let target = dir.parent().unwrap();
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args(["build", "-q", "-p", "netctl"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("run cargo build -p netctl");
        assert!(status.success(), "cargo build -p netctl failed");
    }
    bin
}

fn netctl(urls: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(netctl_bin())
        .arg("--netmaster")
        .arg(urls)
        .args(args)
        .output()
        .expect("run netctl");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Keys under a prefix of the masters' etcd (no key prefix).
async fn count_keys(cluster: &Cluster, prefix: &str) -> usize {
    let mut o = cluster.options();
    o.prefix = String::new();
    let s = store::EtcdStore::connect(o).await.unwrap();
    s.list(prefix).await.unwrap().0.len()
}

/// Creates endpoint `id`, retrying through failovers (creates are idempotent per id) until
/// `deadline`; the address on success.
async fn create_retrying(c: &model::Client, id: &str, deadline: Instant) -> Option<String> {
    loop {
        match c.create_endpoint(&ep_req(id, "")).await {
            Ok(e) => return Some(e.ip_address),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_failover_keeps_state_and_allocates_exactly_once() {
    let cluster = Cluster::start(3).await;
    let mut ms = [
        master_on(&cluster, &[]),
        master_on(&cluster, &[]),
        master_on(&cluster, &[]),
    ];
    let l = wait_leader(&ms.iter().collect::<Vec<_>>(), Duration::from_secs(20)).await;
    let f = (l + 1) % 3;
    let all: Vec<&str> = ms.iter().map(|m| m.url.as_str()).collect();
    wait_masters(&ms[f], &all).await;

    // Writes through a follower are forwarded to the leader; /info shows both.
    let (s, v) = ms[f]
        .post(
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.9.0.0/16","gateway":"10.9.0.1"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Read your writes on the follower that forwarded it.
    assert_eq!(ms[f].get("/api/v1/networks/default:n/").await.0, 200);
    let (s, v) = ms[f]
        .post(
            "/api/v1/endpointGroups/default:g/",
            json!({"tenantName":"default","networkName":"n","groupName":"g"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let fi = info(&ms[f]).await.unwrap();
    assert_eq!(fi["current-state"], "follower");
    assert_eq!(fi["leader-ip"], ms[l].url);
    for i in 0..20 {
        let e = ms[f]
            .client()
            .create_endpoint(&ep_req(&format!("a{i}"), ""))
            .await
            .unwrap();
        assert_eq!(e.ip_address, format!("10.9.0.{}", i + 2));
    }
    // Followers apply the store's events: a read on another follower sees the writes.
    let other = (l + 2) % 3;
    let end = Instant::now() + Duration::from_secs(10);
    while ms[other].client().list_endpoints(None).await.unwrap().len() != 20 {
        assert!(Instant::now() < end, "follower did not see the endpoints");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let net_before = ms[l].get("/api/v1/inspect/networks/default:n/").await.1;
    let group_before = ms[l].get("/api/v1/endpointGroups/default:g/").await.1;

    // Kill the leader: another leads within the TTL and a few seconds.
    let old_url = ms[l].url.clone();
    ms[l].kill();
    let killed = Instant::now();
    let rest: Vec<&Netmaster> = (0..3).filter(|&i| i != l).map(|i| &ms[i]).collect();
    let nl = wait_leader(&rest, Duration::from_secs(TTL + 10)).await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(TTL + 5),
        "failover took {took:?} (TTL {TTL} s)"
    );
    eprintln!("failover took {took:?}");
    let new_leader = rest[nl];
    // The dead one leaves the list when its presence lease expires.
    wait_masters(new_leader, &[&rest[0].url, &rest[1].url]).await;
    assert_eq!(
        new_leader
            .get("/api/v1/inspect/networks/default:n/")
            .await
            .1,
        net_before
    );
    assert_eq!(
        new_leader.get("/api/v1/endpointGroups/default:g/").await.1,
        group_before
    );
    // The next address follows the 20 taken before the failover.
    let e = new_leader
        .client()
        .create_endpoint(&ep_req("after", ""))
        .await
        .unwrap();
    assert_eq!(e.ip_address, "10.9.0.22");

    // netctl with the dead URL first fails over to the survivors, reads and writes.
    let urls = format!("{old_url},{},{}", rest[0].url, rest[1].url);
    let (ok, out) = netctl(&urls, &["net", "ls"]);
    assert!(ok && out.contains("10.9.0.0/16"), "{out}");
    let (ok, out) = netctl(&urls, &["tenant", "create", "blue"]);
    assert!(ok, "{out}");
    let (ok, out) = netctl(&urls, &["version"]);
    assert!(
        ok && out.contains(&format!("Leader: {}", new_leader.url)),
        "{out}"
    );

    // 400 creates spread over the leader and a follower; the leader is killed half-way.
    let leader_idx = (0..3).find(|&i| ms[i].url == new_leader.url).unwrap();
    let follower_idx = (0..3).find(|&i| i != l && i != leader_idx).unwrap();
    ms[l].restart(); // back as a follower, a third master to fail over to
    let urls_a = [
        ms[leader_idx].url.clone(),
        ms[follower_idx].url.clone(),
        ms[l].url.clone(),
    ];
    let urls_b = [
        ms[follower_idx].url.clone(),
        ms[leader_idx].url.clone(),
        ms[l].url.clone(),
    ];
    let ca = model::Client::new(&urls_a).unwrap();
    let cb = model::Client::new(&urls_b).unwrap();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..400 {
        let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        let (done, sem) = (done.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let r = create_retrying(&c, &format!("c{i}"), deadline).await;
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (format!("c{i}"), r)
        }));
    }
    while done.load(std::sync::atomic::Ordering::Relaxed) < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ms[leader_idx].kill();
    let mut ok = Vec::new();
    for t in tasks {
        if let (id, Some(ip)) = t.await.unwrap() {
            ok.push((id, ip));
        }
    }
    let addrs: BTreeSet<&String> = ok.iter().map(|(_, ip)| ip).collect();
    assert_eq!(addrs.len(), ok.len(), "an address was handed out twice");
    assert_eq!(ok.len(), 400, "every create succeeded in the end");
    let survivors: Vec<&Netmaster> = [follower_idx, l].iter().map(|&i| &ms[i]).collect();
    let nl = wait_leader(&survivors, Duration::from_secs(TTL + 10)).await;
    let eps = survivors[nl].client().list_endpoints(None).await.unwrap();
    assert_eq!(eps.len(), 20 + 1 + 400);
    for (id, ip) in &ok {
        let e = eps
            .iter()
            .find(|e| &e.endpoint_id == id)
            .expect("created endpoint listed");
        assert_eq!(&e.ip_address, ip, "{id}");
    }
    // Allocation guards: exactly one per endpoint, none leaked, none lost.
    assert_eq!(
        count_keys(&cluster, "/contiv/alloc/ip/default:n/").await,
        count_keys(&cluster, "/contiv/eps/").await
    );
    assert_eq!(count_keys(&cluster, "/contiv/eps/").await, 421);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_member_loss_then_quorum_loss_is_503_then_recovers() {
    let mut cluster = Cluster::start(3).await;
    let ms = [master_on(&cluster, &[]), master_on(&cluster, &[])];
    wait_leader(&ms.iter().collect::<Vec<_>>(), Duration::from_secs(20)).await;
    let leader = cluster.leader().await;
    cluster.kill(leader);
    // One member down: writes go on, through either master.
    for (i, m) in ms.iter().enumerate() {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let (s, v) = m
                .post(
                    &format!("/api/v1/tenants/t{i}/"),
                    json!({"tenantName": format!("t{i}")}),
                )
                .await;
            if s == 200 {
                break;
            }
            assert!(Instant::now() < end, "write with one member down: {s} {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Two down: a 503 with a message, never a wrong answer.
    let second = (leader + 1) % 3;
    cluster.kill(second);
    let (s, v) = ms[0]
        .post("/api/v1/tenants/q/", json!({"tenantName":"q"}))
        .await;
    assert_eq!(s, 503, "{v}");
    let msg = err(&v);
    assert!(
        msg.contains("unavailable") || msg.contains("leads"),
        "{msg}"
    );
    // Reads still answer from memory.
    assert_eq!(ms[1].get("/api/v1/tenants/t0/").await.0, 200);
    // Members back: writes resume.
    cluster.restart(leader).await;
    cluster.restart(second).await;
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _) = ms[1]
            .post("/api/v1/tenants/q/", json!({"tenantName":"q"}))
            .await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < end, "writes did not resume: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ms[0].get("/api/v1/tenants/t1/").await.0, 200);
}

fn reg(host: &str) -> NodeRegistration {
    NodeRegistration {
        hostname: host.into(),
        vtep_ip: "192.0.2.1".into(),
        version: "test".into(),
    }
}

/// Renews `host`'s registration as its agent would, until aborted.
fn heartbeat(c: &model::Client, host: &str) -> tokio::task::JoinHandle<()> {
    let (c, host) = (c.clone(), host.to_string());
    tokio::spawn(async move {
        loop {
            let _ = c.register_node(&reg(&host)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_nodes_lose_their_endpoints_after_the_grace_period() {
    let cluster = Cluster::start(1).await;
    let extra = ["--node-ttl", "3", "--node-grace", "4"];
    let ms = [master_on(&cluster, &extra), master_on(&cluster, &extra)];
    let l = wait_leader(&ms.iter().collect::<Vec<_>>(), Duration::from_secs(20)).await;
    // Through the follower: registrations and endpoints are forwarded writes.
    let c = ms[1 - l].client();
    let (s, v) = ms[l]
        .post(
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.7.0.0/24"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for h in ["alive", "dead", "back"] {
        c.register_node(&reg(h)).await.unwrap();
        for i in 0..3 {
            c.create_endpoint(&ep_req(&format!("{h}{i}"), h))
                .await
                .unwrap();
        }
    }
    // `alive` heartbeats all along; `dead` never again; `back` returns within the grace.
    let hb = heartbeat(&c, "alive");
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, v) = ms[l].get("/api/v1/nodes/").await;
        let nodes: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["hostname"].as_str().unwrap().to_string())
            .collect();
        if !nodes.contains(&"back".to_string()) && !nodes.contains(&"dead".to_string()) {
            assert!(nodes.contains(&"alive".to_string()), "{nodes:?}");
            break;
        }
        assert!(Instant::now() < end, "leases did not expire: {nodes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.register_node(&reg("back")).await.unwrap();
    let hb_back = heartbeat(&c, "back");
    // `dead`'s endpoints go (addresses released), the others stay.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let eps = ms[l].client().list_endpoints(None).await.unwrap();
        let hosts: Vec<&str> = eps.iter().map(|e| e.host.as_str()).collect();
        if !hosts.contains(&"dead") {
            assert_eq!(eps.len(), 6, "{hosts:?}");
            break;
        }
        assert!(Instant::now() < end, "dead node's endpoints not reclaimed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A grace period later, `back` still has its endpoints; the released addresses are free.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let eps = ms[1 - l].client().list_endpoints(None).await.unwrap();
    assert_eq!(eps.iter().filter(|e| e.host == "back").count(), 3);
    assert_eq!(eps.iter().filter(|e| e.host == "alive").count(), 3);
    assert_eq!(count_keys(&cluster, "/contiv/alloc/ip/default:n/").await, 6);
    let e = c.create_endpoint(&ep_req("new", "alive")).await.unwrap();
    assert_eq!(
        e.ip_address, "10.7.0.4",
        "the lowest released address is reused"
    );
    hb.abort();
    hb_back.abort();
}

/// Agents' rule counters live in the leader's memory: a report given to a follower is forwarded,
/// and every master's policy inspect (a read the leader serves) shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_counters_reported_to_a_follower_show_in_every_masters_inspect() {
    let cluster = Cluster::start(1).await;
    let ms = [master_on(&cluster, &[]), master_on(&cluster, &[])];
    let l = wait_leader(&ms.iter().collect::<Vec<_>>(), Duration::from_secs(20)).await;
    for (path, body) in [
        (
            "/api/v1/policys/default:p/",
            json!({"tenantName": "default", "policyName": "p"}),
        ),
        (
            "/api/v1/rules/default:p:1/",
            json!({"tenantName": "default", "policyName": "p", "ruleId": "1",
                   "direction": "in", "action": "deny"}),
        ),
    ] {
        let (s, v) = ms[l].post(path, body).await;
        assert_eq!(s, 200, "{v}");
    }
    let c = ms[1 - l].client();
    c.register_node(&reg("h1")).await.unwrap();
    let report = RuleStatsReport {
        hostname: "h1".into(),
        rules: [(
            "default:p:1".to_string(),
            RuleCounters {
                packets: 7,
                bytes: 420,
            },
        )]
        .into(),
    };
    c.report_rule_stats(&report).await.unwrap();
    for m in &ms {
        let (s, v) = m.get("/api/v1/inspect/policys/default:p/").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["Oper"]["ruleStats"],
            json!([{"ruleId": "1", "packets": 7, "bytes": 420,
                    "hosts": {"h1": {"packets": 7, "bytes": 420}}}]),
            "{v}"
        );
    }
    // A report under another node's path is refused.
    let (s, v) = ms[1 - l]
        .req(
            "PUT",
            "/api/v1/nodes/h2/rulestats/",
            Some(json!({"hostname": "h1", "rules": {}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
}

/// Agents' anti-spoofing counters live in the leader's memory like the rule counters: a report
/// given to a follower shows in every master's endpoint inspect, only for the reporting node's
/// own endpoints, and a deleted endpoint's count goes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoof_counters_show_in_every_masters_endpoint_inspect() {
    let cluster = Cluster::start(1).await;
    let ms = [master_on(&cluster, &[]), master_on(&cluster, &[])];
    let l = wait_leader(&ms.iter().collect::<Vec<_>>(), Duration::from_secs(20)).await;
    let (s, v) = ms[l]
        .post(
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.8.0.0/24"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let c = ms[1 - l].client();
    for h in ["h1", "h2"] {
        c.register_node(&reg(h)).await.unwrap();
    }
    c.create_endpoint(&ep_req("forger", "h1")).await.unwrap();
    c.create_endpoint(&ep_req("victim", "h2")).await.unwrap();
    let report = |eps: &[(&str, u64)]| SpoofStatsReport {
        hostname: "h1".into(),
        endpoints: eps.iter().map(|(id, n)| (id.to_string(), *n)).collect(),
    };
    // h1 also claims counts for h2's endpoint and for an endpoint that does not exist.
    c.report_spoof_stats(&report(&[("forger", 5), ("victim", 9), ("ghost", 3)]))
        .await
        .unwrap();
    let spoofed = |v: &Value| v["Oper"]["spoofedPackets"].clone();
    for m in &ms {
        let (s, v) = m.get("/api/v1/inspect/endpoints/forger/").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(spoofed(&v), json!(5), "{v}");
        let (s, v) = m.get("/api/v1/inspect/endpoints/victim/").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            spoofed(&v),
            json!(0),
            "another node's report counts for h2's endpoint: {v}"
        );
        // The endpoint lists of other views do not carry it.
        let (_, v) = m.get("/api/v1/inspect/networks/default:n/").await;
        assert!(
            v["Oper"]["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e.get("spoofedPackets").is_none()),
            "{v}"
        );
    }
    // Deleted and made again under the same id: it starts from 0.
    c.delete_endpoint("forger").await.unwrap();
    c.create_endpoint(&ep_req("forger", "h1")).await.unwrap();
    let (_, v) = ms[l].get("/api/v1/inspect/endpoints/forger/").await;
    assert_eq!(spoofed(&v), json!(0), "{v}");
    // A report under another node's path is refused.
    let (s, v) = ms[1 - l]
        .req(
            "PUT",
            "/api/v1/nodes/h2/spoofstats/",
            Some(json!({"hostname": "h1", "endpoints": {}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        err(&v),
        "spoof stats of node 'h1' sent to the path of node 'h2'"
    );
}

/// Issue 19: the private addresses an agent reports, given to a follower, show in every
/// master's endpoint inspect as `privateIPAddress`, only for the reporting node's own
/// endpoints, and a deleted endpoint's goes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_show_in_every_masters_endpoint_inspect() {
    let cluster = Cluster::start(1).await;
    let ms = [master_on(&cluster, &[]), master_on(&cluster, &[])];
    let l = wait_leader(&ms.iter().collect::<Vec<_>>(), Duration::from_secs(20)).await;
    let (s, v) = ms[l]
        .post(
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.8.0.0/24"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let c = ms[1 - l].client();
    for h in ["h1", "h2"] {
        c.register_node(&reg(h)).await.unwrap();
    }
    c.create_endpoint(&ep_req("mine", "h1")).await.unwrap();
    c.create_endpoint(&ep_req("theirs", "h2")).await.unwrap();
    // h1 also claims an address for h2's endpoint.
    c.report_host_access(&HostAccessReport {
        hostname: "h1".into(),
        endpoints: [("mine", "172.19.0.2"), ("theirs", "172.19.0.3")]
            .iter()
            .map(|(id, a)| (id.to_string(), a.to_string()))
            .collect(),
    })
    .await
    .unwrap();
    let private = |v: &Value| v["Oper"]["privateIPAddress"].clone();
    for m in &ms {
        let (s, v) = m.get("/api/v1/inspect/endpoints/mine/").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(private(&v), json!("172.19.0.2"), "{v}");
        let (_, v) = m.get("/api/v1/inspect/endpoints/theirs/").await;
        assert_eq!(private(&v), Value::Null, "h1 speaks for h2's endpoint: {v}");
    }
    // Deleted and made again under the same id: none until its host reports again.
    c.delete_endpoint("mine").await.unwrap();
    c.create_endpoint(&ep_req("mine", "h1")).await.unwrap();
    let (_, v) = ms[l].get("/api/v1/inspect/endpoints/mine/").await;
    assert_eq!(private(&v), Value::Null, "{v}");
    let (s, v) = ms[1 - l]
        .req(
            "PUT",
            "/api/v1/nodes/h2/hostaccess/",
            Some(json!({"hostname": "h1", "endpoints": {}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test]
async fn migration_moves_an_embedded_store_into_etcd() {
    // A populated embedded store.
    let mut m = Netmaster::start();
    let (s, v) = m
        .post(
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.5.0.0/24"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for i in 0..5 {
        m.client()
            .create_endpoint(&ep_req(&format!("m{i}"), ""))
            .await
            .unwrap();
    }
    let net = m.get("/api/v1/inspect/networks/default:n/").await.1;
    m.kill();
    let cluster = Cluster::start(1).await;
    let eps = cluster.endpoints().join(",");
    let migrate = |to: &str, dir: &std::path::Path, force: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_netmaster"));
        c.arg("--data-dir")
            .arg(dir)
            .args(["--etcd-endpoints", &eps, "migrate", "--to", to]);
        if force {
            c.arg("--force");
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = migrate("etcd", m.data_dir(), false);
    assert!(ok && out.contains("copied"), "{out}");
    // A second run refuses to overwrite without --force, and says so.
    let (ok, out) = migrate("etcd", m.data_dir(), false);
    assert!(!ok && out.contains("--force"), "{out}");
    // A master on etcd serves the objects and the allocations.
    let e = master_on(&cluster, &[]);
    wait_leader(&[&e], Duration::from_secs(20)).await;
    assert_eq!(e.get("/api/v1/inspect/networks/default:n/").await.1, net);
    let next = e.client().create_endpoint(&ep_req("m5", "")).await.unwrap();
    assert_eq!(next.ip_address, "10.5.0.6");
    drop(e);
    // And back, replacing what the embedded store held (--force).
    let (ok, out) = migrate("embedded", m.data_dir(), true);
    assert!(ok, "{out}");
    m.restart();
    assert_eq!(m.client().list_endpoints(None).await.unwrap().len(), 6);
}

/// What an agent does with several URLs: it watches one master; when that one dies, the stream
/// ends, and watching again from the next revision lands on another master without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_resumes_on_another_master() {
    use futures::StreamExt;
    use model::agent::WatchEventType;
    let cluster = Cluster::start(1).await;
    let mut ms = [master_on(&cluster, &[]), master_on(&cluster, &[])];
    let l = wait_leader(&ms.iter().collect::<Vec<_>>(), Duration::from_secs(20)).await;
    // The agent's client names the follower first, then the leader.
    let urls = [ms[1 - l].url.clone(), ms[l].url.clone()];
    let agent = model::Client::new(&urls).unwrap();
    let mut w = Box::pin(agent.watch(None).await.unwrap());
    while let Some(ev) = w.next().await {
        if ev.unwrap().event_type == WatchEventType::Synced {
            break;
        }
    }
    let (s, v) = ms[l]
        .post(
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.6.0.0/24"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let next_put = |kind: &'static str| {
        move |ev: &model::agent::WatchEvent| ev.event_type == WatchEventType::Put && ev.kind == kind
    };
    let last = loop {
        let ev = w.next().await.expect("stream open").unwrap();
        if next_put("network")(&ev) {
            break ev.revision;
        }
    };
    // The watched master (the follower) dies: the stream ends.
    ms[1 - l].kill();
    while let Some(Ok(_)) = w.next().await {}
    // Meanwhile an endpoint is created on the leader; resuming from the next revision goes to
    // the leader and gets it.
    let e = ms[l]
        .client()
        .create_endpoint(&ep_req("w2", "h"))
        .await
        .unwrap();
    let mut w = Box::pin(agent.watch(Some(last + 1)).await.unwrap());
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(end.into(), w.next())
            .await
            .expect("the endpoint's event within 10 s")
            .expect("stream open")
            .unwrap();
        if next_put("endpoint")(&ev) {
            assert_eq!(ev.key, "w2");
            assert_eq!(ev.value.unwrap()["ipAddress"], e.ip_address);
            break;
        }
    }
}

/// A certificate for 127.0.0.1 and its key (PEM files under `dir`), signed by a CA of its own
/// that nobody else trusts; the CA's file too.
fn foreign_cert(dir: &std::path::Path) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let files = [
        ("cert.pem", cert.pem()),
        ("key.pem", key.serialize_pem()),
        ("ca.pem", ca.pem()),
    ];
    let paths: Vec<String> = files
        .iter()
        .map(|(name, text)| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.to_str().unwrap().to_string()
        })
        .collect();
    (paths[0].clone(), paths[1].clone(), paths[2].clone())
}

/// TLS on, netmaster's default: the first master makes the cluster CA in etcd, every master
/// issues its own certificate from it, a follower forwards a write to the leader over https
/// trusting that CA, and a restart keeps the CA.
#[tokio::test]
async fn masters_share_one_generated_ca_and_forward_writes_over_https() {
    let cluster = Cluster::start(3).await;
    let mut ms = [
        master_on(&cluster, &["--tls", "on"]),
        master_on(&cluster, &["--tls", "on"]),
    ];
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    for m in &ms {
        assert!(m.url.starts_with("https://"), "{}", m.url);
    }
    let ca = read(ms[0].ca_file());
    assert_eq!(ca, read(ms[1].ca_file()), "one CA for the cluster");
    let server = |m: &Netmaster| read(m.data_dir().join("tls/server.pem"));
    assert_ne!(server(&ms[0]), server(&ms[1]), "a certificate per master");
    let l = wait_leader(&[&ms[0], &ms[1]], Duration::from_secs(20)).await;
    let f = 1 - l;
    // Through the follower: forwarded to the leader's https URL.
    let (s, v) = ms[f]
        .post("/api/v1/tenants/blue/", json!({"tenantName": "blue"}))
        .await;
    assert_eq!(s, 200, "write through the follower: {v}\n{}", ms[f].log());
    let (s, v) = ms[l].get("/api/v1/tenants/blue/").await;
    assert_eq!(s, 200, "on the leader: {v}");
    // A restart keeps the CA (clients keep trusting the file they have).
    ms[f].restart();
    assert_eq!(read(ms[f].ca_file()), ca);
    let (s, v) = ms[f]
        .post("/api/v1/tenants/red/", json!({"tenantName": "red"}))
        .await;
    assert_eq!(s, 200, "write through the restarted follower: {v}");
}

/// A master with a certificate of its own (--tls-cert) trusts only the system's CAs and
/// --tls-ca when it forwards: without the cluster's CA the write is refused with the reason,
/// with it (--tls-ca) the write goes through.
#[tokio::test]
async fn a_master_with_its_own_certificate_forwards_only_trusting_tls_ca() {
    let cluster = Cluster::start(3).await;
    let first = master_on(&cluster, &["--tls", "on"]);
    wait_leader(&[&first], Duration::from_secs(20)).await;
    let files = tempfile::tempdir().unwrap();
    let (cert, key, _) = foreign_cert(files.path());
    let via_socket = |m: &Netmaster| {
        model::Client::new(&[format!("unix://{}", m.unix_socket().display())]).unwrap()
    };
    let tenant = |name: &str| model::Tenant {
        tenant_name: name.into(),
        ..Default::default()
    };
    let alone = master_on(
        &cluster,
        &["--tls", "on", "--tls-cert", &cert, "--tls-key", &key],
    );
    let e = via_socket(&alone).put(&tenant("blue")).await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    let ca = first.ca_file();
    let trusting = master_on(
        &cluster,
        &[
            "--tls",
            "on",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            ca.to_str().unwrap(),
        ],
    );
    via_socket(&trusting).put(&tenant("blue")).await.unwrap();
}
