//! One host: the real netmaster, agent (in its own namespace with its own OVS, userspace
//! datapath) and `contiv` plugin, pods in namespaces, real packets.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use test_e2e::{Host, Netmaster, Pod, cni_call, modes, wait_for};

fn setup() -> (Netmaster, Host) {
    let m = Netmaster::start();
    m.network("default", "default-net", "10.1.2.0/24", "10.1.2.1");
    let h = Host::start(&m, "host1");
    (m, h)
}

/// What must be back to its starting state after a failure: links on the host, OVS ports,
/// endpoints in netmaster.
fn snapshot(m: &Netmaster, h: &Host) -> (BTreeSet<String>, Vec<String>, usize) {
    (
        h.links().into_iter().collect(),
        h.ovs_ports(),
        m.endpoints().len(),
    )
}

/// Asserts the host is back to `before` (in trunk mode, once idle trunks are gone; with a port
/// pool, netmaster's endpoints only).
fn assert_back_to(
    m: &Netmaster,
    h: &Host,
    before: &(BTreeSet<String>, Vec<String>, usize),
    what: &str,
) {
    if modes::skip_in_pool_mode(
        &format!("host links and OVS ports back as before ({what})"),
        "the pool's spare ports (vp...) are made and refilled as the pool likes",
    ) {
        assert_eq!(m.endpoints().len(), before.2, "{what}");
        return;
    }
    assert_eq!(&modes::settled(before, || snapshot(m, h)), before, "{what}");
}

#[test]
fn every_verb_for_every_config_version() {
    assert_eq!(
        test_e2e::GRAVEYARD_GROUP,
        netplugin::manager::GRAVEYARD_GROUP
    );
    let (m, h) = setup();
    let before = snapshot(&m, &h);
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let conf = h.conf(v, json!({}));
        let p = Pod::new();
        let add = h.cni("ADD", &p.container_id, &p.netns_path(), "eth0", &conf);
        assert!(add.ok(), "ADD {v}: {}", add.stdout);
        let r = &add.json;
        assert_eq!(r["cniVersion"], v);
        // Host side and container side interfaces; the address on the container side.
        assert_eq!(r["interfaces"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(r["interfaces"][1]["name"], "eth0");
        assert_eq!(r["interfaces"][1]["sandbox"], p.netns_path());
        assert!(
            r["interfaces"][1]["mac"]
                .as_str()
                .unwrap()
                .starts_with("02:02:0a:01:02:"),
            "{r}"
        );
        assert_eq!(r["ips"][0]["interface"], 1);
        assert_eq!(r["ips"][0]["gateway"], "10.1.2.1");
        assert_eq!(
            r["routes"][0],
            json!({"dst": "0.0.0.0/0", "gw": "10.1.2.1"})
        );
        if v.starts_with("0.") {
            assert_eq!(r["ips"][0]["version"], "4", "{v}: {r}");
        } else {
            assert!(r["ips"][0].get("version").is_none(), "{v}: {r}");
        }
        // The kernel agrees with the result.
        let ip = r["ips"][0]["address"].as_str().unwrap();
        let addrs = String::from_utf8_lossy(&p.exec(&["ip", "-o", "addr", "show", "eth0"]).stdout)
            .to_string();
        assert!(addrs.contains(ip), "{addrs}");
        // TX checksum offload is off on the pod side (the userspace datapath needs it).
        if !modes::skip_unless_own_veths(
            "every_verb_for_every_config_version (pod TX checksum offload off)",
            "a trunked pod's macvlan keeps its flags; the trunk's lower link computes checksums",
            "a pooled pod's macvlan keeps its flags; the pooled port's lower link computes checksums",
        ) {
            let k = String::from_utf8_lossy(&p.exec(&["ethtool", "-k", "eth0"]).stdout).to_string();
            assert!(k.contains("tx-checksumming: off"), "{k}");
        }
        // ADD again: the same attachment, nothing new.
        let again = h.cni("ADD", &p.container_id, &p.netns_path(), "eth0", &conf);
        assert!(again.ok(), "{}", again.stdout);
        assert_eq!(again.json["ips"], r["ips"]);
        if v >= "0.4.0" {
            let mut c = conf.clone();
            c["prevResult"] = r.clone();
            let chk = h.cni("CHECK", &p.container_id, &p.netns_path(), "eth0", &c);
            assert!(chk.ok(), "CHECK {v}: {}", chk.stdout);
            // CHECK notices damage: take the address away.
            p.exec(&["ip", "addr", "flush", "dev", "eth0"]);
            let chk = h.cni("CHECK", &p.container_id, &p.netns_path(), "eth0", &c);
            assert!(
                !chk.ok() && chk.msg().contains("lacks address"),
                "{}",
                chk.stdout
            );
        }
        let del = h.cni("DEL", &p.container_id, &p.netns_path(), "eth0", &conf);
        assert!(del.ok(), "DEL {v}: {}", del.stdout);
        assert_eq!(del.stdout, "");
        // DEL of something already gone succeeds.
        let del = h.cni("DEL", &p.container_id, &p.netns_path(), "eth0", &conf);
        assert!(del.ok(), "second DEL {v}: {}", del.stdout);
        assert_back_to(&m, &h, &before, &format!("{v}: something leaked"));
    }
    let ver = h.cni("VERSION", "", "", "", &h.conf("1.1.0", json!({})));
    assert!(ver.ok());
    assert_eq!(
        ver.json["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    let st = h.cni("STATUS", "", "", "", &h.conf("1.1.0", json!({})));
    assert!(st.ok(), "STATUS: {}", st.stdout);
}

#[test]
fn gc_removes_attachments_not_listed() {
    let (m, h) = setup();
    let conf = h.conf("1.1.0", json!({}));
    let keep = h.pod(&conf);
    let drop_ = h.pod(&conf);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": keep.container_id, "ifname": "eth0"}]);
    // Another network name's attachments are not this GC's business.
    let mut other = h.conf("1.1.0", json!({}));
    other["name"] = json!("other");
    other["cni.dev/valid-attachments"] = json!([]);
    assert!(h.cni("GC", "", "", "", &other).ok());
    assert_eq!(m.endpoints().len(), 2);
    let out = h.cni("GC", "", "", "", &gc);
    assert!(out.ok(), "{}", out.stdout);
    let eps: Vec<String> = m
        .endpoints()
        .iter()
        .map(|e| e["containerID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0], keep.container_id);
    if !modes::skip_in_pool_mode(
        "gc_removes_attachments_not_listed (one port left)",
        "the pool's spare ports (vp...) are on the switch too",
    ) {
        assert_eq!(h.ovs_ports().len(), 1);
    }
    assert!(
        keep.exec(&["ip", "link", "show", "eth0"]).status.success(),
        "GC removed a valid attachment"
    );
    // The removed pod's interface is gone with its veth.
    if !modes::skip_in_pool_mode(
        "gc_removes_attachments_not_listed (the removed pod's interface gone)",
        "a pooled pod's macvlan goes with its namespace, its port returns to the pool (docs/decisions.md, Pooled ports)",
    ) {
        assert!(!drop_.exec(&["ip", "link", "show", "eth0"]).status.success());
    }
}

#[test]
fn pods_talk_within_a_network_and_nowhere_else() {
    let (m, h) = setup();
    m.network("default", "other", "10.1.3.0/24", "10.1.3.1");
    m.network("blue", "default-net", "10.1.2.0/24", "10.1.2.1");
    let a1 = h.pod(&h.conf("1.1.0", json!({})));
    let a2 = h.pod(&h.conf("1.1.0", json!({})));
    let b1 = h.pod(&h.conf("1.1.0", json!({"network": "other"})));
    let t1 = h.pod(&h.conf("1.1.0", json!({"tenant": "blue"})));
    assert_eq!(
        (
            a1.ip.as_str(),
            a2.ip.as_str(),
            b1.ip.as_str(),
            t1.ip.as_str()
        ),
        ("10.1.2.2", "10.1.2.3", "10.1.3.2", "10.1.2.2")
    );
    assert!(a1.reaches(&a2.ip, Duration::from_secs(5)), "a1 -> a2");
    assert!(a2.reaches(&a1.ip, Duration::from_secs(5)), "a2 -> a1");
    // An IPv4-only network: IPv6 is off on the pod's interface (no link-local address, no
    // DAD, router solicitations or MLD reports for the switch to flood), as Docker does.
    let v6 = a1.exec(&["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"]);
    assert_eq!(String::from_utf8_lossy(&v6.stdout).trim(), "1");
    let addrs = a1.exec(&["ip", "-6", "-o", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.stdout.is_empty(),
        "IPv6 addresses on eth0: {}",
        String::from_utf8_lossy(&addrs.stdout)
    );
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(a1.tcp_exchange(&a2, 5001, &data), data, "TCP a1 -> a2");
    // Another network of the same tenant: even with a direct route (so the pod ARPs for it on
    // its own segment), nothing crosses.
    a1.exec(&["ip", "route", "add", "10.1.3.0/24", "dev", "eth0"]);
    b1.exec(&["ip", "route", "add", "10.1.2.0/24", "dev", "eth0"]);
    assert!(
        !a1.reaches(&b1.ip, Duration::from_secs(2)),
        "a1 reached b1 across networks"
    );
    assert!(!b1.ping(&a1.ip), "b1 reached a1 across networks");
    // Another tenant with the very same subnet: t1 has a1's address, yet reaches neither pod.
    assert!(!t1.ping(&a2.ip), "blue pod reached default's pod");
    assert!(
        a2.reaches(&a1.ip, Duration::from_secs(2)),
        "a2 must still reach the default tenant's 10.1.2.2"
    );
}

#[test]
fn bad_input_is_named_and_leaks_nothing() {
    let (m, h) = setup();
    m.network("default", "tiny", "10.9.0.0/30", "10.9.0.1");
    let before = snapshot(&m, &h);
    let conf = |extra: Value| h.conf("1.1.0", extra);
    let p = Pod::new();
    let ns = p.netns_path();
    let cases: Vec<(&str, Value, &str, u64, &str)> = vec![
        (
            "unknown network",
            conf(json!({"network": "nope"})),
            &ns,
            7,
            "network default:nope does not exist",
        ),
        (
            "unknown tenant",
            conf(json!({"tenant": "nope"})),
            &ns,
            7,
            "tenant does not exist",
        ),
        (
            "unknown group",
            conf(json!({"group": "nope"})),
            &ns,
            7,
            "endpoint group default:nope does not exist",
        ),
        (
            "missing netns",
            conf(json!({})),
            "/var/run/netns/does-not-exist",
            4,
            "/var/run/netns/does-not-exist",
        ),
        (
            "bad version",
            json!({"cniVersion": "9.9.9", "name": "contiv", "type": "contiv", "agentSocket": h.cni_socket}),
            &ns,
            1,
            "9.9.9",
        ),
        (
            "malformed config",
            json!({"cniVersion": "1.1.0", "name": "contiv", "type": "contiv", "mtu": "big", "agentSocket": h.cni_socket}),
            &ns,
            6,
            "mtu",
        ),
    ];
    for (what, c, netns, code, text) in cases {
        let out = h.cni("ADD", &p.container_id, netns, "eth0", &c);
        assert!(!out.ok(), "{what}: succeeded");
        assert_eq!(out.error_code(), code, "{what}: {}", out.stdout);
        assert!(out.msg().contains(text), "{what}: {}", out.msg());
        assert_back_to(&m, &h, &before, &format!("{what}: something leaked"));
    }
    // Missing env vars.
    let out = test_e2e::cni_call_with(
        &test_e2e::bin("contiv"),
        "ADD",
        "",
        &ns,
        "eth0",
        &conf(json!({})),
        &[],
    );
    assert_eq!(out.error_code(), 4, "{}", out.stdout);
    // Exhaustion: a /30 with a gateway has one address.
    let first = h.pod(&conf(json!({"network": "tiny"})));
    assert_eq!(first.ip, "10.9.0.2");
    let mid = snapshot(&m, &h);
    let q = Pod::new();
    let out = h.cni(
        "ADD",
        &q.container_id,
        &q.netns_path(),
        "eth0",
        &conf(json!({"network": "tiny"})),
    );
    assert!(
        !out.ok() && out.msg().contains("address exhaustion"),
        "{}",
        out.stdout
    );
    assert_back_to(&m, &h, &mid, "exhaustion leaked");
    // An interface of that name already in the pod: refused, and the netmaster address released.
    q.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    let out = h.cni(
        "ADD",
        &q.container_id,
        &q.netns_path(),
        "eth0",
        &conf(json!({})),
    );
    assert!(
        !out.ok() && out.msg().contains("File exists"),
        "{}",
        out.stdout
    );
    assert_back_to(&m, &h, &mid, "a failed veth creation leaked");
    // The agent not running: code 11, and the message says what to do.
    let mut dead = conf(json!({}));
    dead["agentSocket"] = json!(format!("{}/none.sock", h.dir.display()));
    let out = h.cni("ADD", &q.container_id, &q.netns_path(), "eth1", &dead);
    assert_eq!(out.error_code(), 11, "{}", out.stdout);
    assert!(out.msg().contains("is netplugin running"), "{}", out.msg());
    assert!(out.stderr.is_empty() || !out.stdout.is_empty());
}

#[test]
fn agent_restart_keeps_pods_talking_and_del_works_after() {
    let (m, mut h) = setup();
    let conf = h.conf("1.1.0", json!({}));
    let a = h.pod(&conf);
    let b = h.pod(&conf);
    assert!(a.reaches(&b.ip, Duration::from_secs(5)));
    let flows_before = h
        .flows()
        .lines()
        .filter(|l| l.contains("cookie=0x2"))
        .count();
    // 50 pings at 10 per second across an agent kill and restart.
    let ping = std::process::Command::new("ip")
        .args([
            "netns", "exec", &a.netns, "ping", "-q", "-i", "0.1", "-c", "50", "-W", "1", &b.ip,
        ])
        .output_async();
    h.kill_agent();
    h.start_agent();
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let received: u32 = text
        .split(", ")
        .find(|s| s.ends_with("received"))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        received >= 49,
        "lost more than one ping across an agent restart: {text}"
    );
    // Flows were re-asserted, not duplicated.
    assert_eq!(
        h.flows()
            .lines()
            .filter(|l| l.contains("cookie=0x2"))
            .count(),
        flows_before
    );
    assert!(
        h.cni("DEL", &a.container_id, &a.netns_path(), "eth0", &conf)
            .ok()
    );
    assert!(
        h.cni("DEL", &b.container_id, &b.netns_path(), "eth0", &conf)
            .ok()
    );
    assert_eq!(m.endpoints().len(), 0);
    if !modes::skip_in_pool_mode(
        "agent_restart_keeps_pods_talking_and_del_works_after (no port left)",
        "the pool's spare ports (vp...) stay on the switch",
    ) {
        assert_eq!(modes::settled(&0, || h.ovs_ports().len()), 0);
    }
}

/// A DEL removes flows and address at once and leaves the port and veth to the agent's
/// reaper, which deletes the ports and then the veths (through the graveyard link group). An
/// agent that dies before its reaper is done leaves one of the states made here by hand (the
/// windows are a few ms): the next agent must finish the job, whatever netmaster still holds,
/// and leave the others alone.
#[test]
fn a_del_cut_short_by_an_agent_crash_is_finished_at_restart() {
    if modes::skip_unless_own_veths(
        "a_del_cut_short_by_an_agent_crash_is_finished_at_restart",
        "puts pods' host veths (vc...) in the graveyard group by hand; a trunked pod has none (trunk.rs restarts an agent with missed DELs)",
        "puts pods' host veths (vc...) in the graveyard group by hand; pooled ports are named vp... (pool.rs restarts with a pool)",
    ) {
        return;
    }
    let (m, mut h) = setup();
    let before = snapshot(&m, &h);
    let conf = h.conf("1.1.0", json!({}));
    let a = h.pod(&conf);
    let b = h.pod(&conf);
    let c = h.pod(&conf);
    let e = h.pod(&conf);
    let f = h.pod(&conf);
    assert!(a.reaches(&b.ip, Duration::from_secs(5)));
    h.kill_agent();
    let host_if = |p: &Pod| {
        netplugin::datapath::host_ifname(&netplugin::manager::endpoint_id(&p.container_id, "eth0"))
    };
    let group = test_e2e::GRAVEYARD_GROUP.to_string();
    for p in [&a, &c] {
        let out = h.exec(&["ip", "link", "set", &host_if(p), "group", &group]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // a's veth is in the graveyard and its address released; c's veth is in the graveyard
    // but its address not released; e's namespace is gone (and its veth with it) and its
    // address released; f's DEL released its address, nothing more.
    for p in [&a, &e, &f] {
        let ep = netplugin::manager::endpoint_id(&p.container_id, "eth0");
        let (status, body) = m.api("DELETE", &format!("/api/v1/endpoints/{ep}/"), None);
        assert_eq!(status, 200, "release {ep}: {body}");
    }
    let e_if = host_if(&e);
    drop(e);
    wait_for(
        "e's veth to go with its namespace",
        Duration::from_secs(10),
        || !h.exec(&["ip", "link", "show", &e_if]).status.success(),
    );
    h.start_agent();
    let ports = h.ovs_ports();
    assert_eq!(ports, vec![host_if(&b)], "ports after the restart");
    let eps: Vec<String> = m
        .endpoints()
        .iter()
        .map(|e| e["containerID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        eps,
        vec![b.container_id.clone()],
        "endpoints after the restart"
    );
    for p in [&a, &f] {
        assert!(
            !p.exec(&["ip", "link", "show", "eth0"]).status.success(),
            "{}'s veth survived",
            p.netns
        );
    }
    // The survivor still works, and goes the normal way.
    let d = h.pod(&conf);
    assert!(
        d.reaches(&b.ip, Duration::from_secs(5)),
        "d -> b after the restart"
    );
    for p in [&b, &d] {
        assert!(
            h.cni("DEL", &p.container_id, &p.netns_path(), "eth0", &conf)
                .ok()
        );
    }
    assert_back_to(&m, &h, &before, "something leaked");
}

/// A non-blocking spawn of a command whose output we want later.
trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}
impl OutputAsync for std::process::Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }
}

#[test]
fn status_fails_when_the_agent_is_gone() {
    let conf = json!({"cniVersion": "1.1.0", "name": "contiv", "type": "contiv", "agentSocket": "/tmp/cte-none/agent.sock"});
    let out = cni_call("STATUS", "", "", "", &conf);
    assert_eq!(out.error_code(), 50, "{}", out.stdout);
}

/// A stand-in for the Kubernetes API (none can run here): serves the real pod JSON shape for
/// `GET /api/v1/namespaces/<ns>/pods/<name>`, 404 for other pods. Listens inside `host`.
fn fake_kube_api(host: &Host, pods: Vec<(&'static str, &'static str, Value)>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let l = host.in_ns(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { break };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            // Drain the headers.
            let mut h = String::new();
            while r.read_line(&mut h).map(|n| n > 2).unwrap_or(false) {
                h.clear();
            }
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let found = pods
                .iter()
                .find(|(ns, name, _)| path == format!("/api/v1/namespaces/{ns}/pods/{name}"));
            let (status, body) = match found {
                Some((ns, name, labels)) => (
                    "200 OK",
                    json!({"kind": "Pod", "apiVersion": "v1",
                        "metadata": {"name": name, "namespace": ns, "uid": "2c9e2b5e-1111-4d7a-9d0e-5d1b0c1a2b3c", "labels": labels},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "host1"},
                        "status": {"phase": "Pending"}})
                    .to_string(),
                ),
                None => ("404 Not Found", json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}).to_string()),
            };
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn pods_are_placed_by_their_contiv_labels() {
    let m = Netmaster::start();
    m.network("default", "default-net", "10.1.2.0/24", "10.1.2.1");
    m.network("blue", "web-net", "10.7.0.0/24", "10.7.0.1");
    let (s, v) = m.api(
        "POST",
        "/api/v1/endpointGroups/blue:web/",
        Some(json!({"tenantName": "blue", "groupName": "web", "networkName": "web-net"})),
    );
    assert_eq!(s, 200, "{v}");
    let mut h = Host::netns_only(&m, "host1");
    let port = fake_kube_api(
        &h,
        vec![(
            "shop",
            "front-1",
            json!({"app": "front", "io.contiv.tenant": "blue", "io.contiv.network": "web-net", "io.contiv.net-group": "web"}),
        )],
    );
    let api = format!("http://127.0.0.1:{port}");
    h.boot(&["--k8s-api", &api]);
    let conf = h.conf("1.1.0", json!({}));
    let p = Pod::new();
    let args =
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=front-1;K8S_POD_INFRA_CONTAINER_ID=x";
    let out = test_e2e::cni_call_with(
        &test_e2e::bin("contiv"),
        "ADD",
        &p.container_id,
        &p.netns_path(),
        "eth0",
        &conf,
        &[("CNI_ARGS", args)],
    );
    assert!(out.ok(), "{} {}", out.stdout, h.agent_log());
    assert_eq!(out.json["ips"][0]["address"], "10.7.0.2/24");
    let ep = &m.endpoints()[0];
    assert_eq!(
        (
            ep["tenantName"].as_str(),
            ep["groupName"].as_str(),
            ep["containerName"].as_str()
        ),
        (Some("blue"), Some("web"), Some("shop/front-1"))
    );
    assert_eq!(ep["labels"]["app"], "front");
    // A pod the API does not know is placed by the config; DEL needs no API at all.
    let q = Pod::new();
    let out = test_e2e::cni_call_with(
        &test_e2e::bin("contiv"),
        "ADD",
        &q.container_id,
        &q.netns_path(),
        "eth0",
        &conf,
        &[("CNI_ARGS", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=gone")],
    );
    assert!(out.ok(), "{}", out.stdout);
    assert_eq!(out.json["ips"][0]["address"], "10.1.2.2/24");
    for x in [&p, &q] {
        assert!(
            h.cni("DEL", &x.container_id, &x.netns_path(), "eth0", &conf)
                .ok()
        );
    }
    assert!(m.endpoints().is_empty());
}

/// A DEL leaves the veth for the agent to delete in a batch; an ADD of the same container, or
/// into the same namespace, straight after must still get a fresh, working attachment, and
/// nothing may leak.
#[test]
fn re_add_right_after_del_gets_a_working_attachment() {
    let (m, h) = setup();
    let before = snapshot(&m, &h);
    let conf = h.conf("1.0.0", json!({}));
    let p = Pod::new();
    let peer = Pod::new();
    let add = h.cni("ADD", &peer.container_id, &peer.netns_path(), "eth0", &conf);
    assert!(add.ok(), "{}", add.stdout);
    let peer_ip = add.json["ips"][0]["address"].as_str().unwrap();
    let peer_ip = peer_ip.split('/').next().unwrap().to_string();
    for round in 0..6 {
        // The same container again, or the same namespace under a new container id (its eth0
        // may still be the peer of the veth the last DEL queued).
        let cid = if round % 2 == 0 {
            p.container_id.clone()
        } else {
            format!("{}n{round}", p.container_id)
        };
        let add = h.cni("ADD", &cid, &p.netns_path(), "eth0", &conf);
        assert!(add.ok(), "ADD round {round}: {}", add.stdout);
        assert!(
            p.reaches(&peer_ip, Duration::from_secs(10)),
            "round {round}: no traffic after a re-ADD"
        );
        let del = h.cni("DEL", &cid, &p.netns_path(), "eth0", &conf);
        assert!(del.ok(), "DEL round {round}: {}", del.stdout);
    }
    let del = h.cni("DEL", &peer.container_id, &peer.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
    assert_back_to(&m, &h, &before, "something leaked");
}
