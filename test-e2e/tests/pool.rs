//! The agent's port pool (`--port-pool`): CNI pods get a passthru macvlan of a pooled port's
//! waiting end instead of a veth of their own. One host, the real netmaster, agent, OVS
//! (userspace datapath) and plugin, pods in namespaces, real packets.

use serde_json::json;
use std::time::Duration;
use test_e2e::{Host, Netmaster, Pod, wait_for};

const POOL: usize = 4;

fn setup() -> (Netmaster, Host) {
    let m = Netmaster::start();
    m.network("default", "default-net", "10.1.2.0/24", "10.1.2.1");
    let mut h = Host::netns_only(&m, "host1");
    h.boot(&[&format!("--port-pool={POOL}")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while h.pool_ports().len() < POOL {
        assert!(
            std::time::Instant::now() < deadline,
            "the port pool did not fill; agent log:\n{}",
            h.agent_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (m, h)
}

fn link_details(p: &Pod) -> String {
    String::from_utf8_lossy(&p.exec(&["ip", "-d", "link", "show", "eth0"]).stdout).to_string()
}

#[test]
fn pooled_pods_talk_are_isolated_and_ports_are_reused() {
    let (m, h) = setup();
    m.network("default", "other", "10.1.3.0/24", "10.1.3.1");
    let ports_before = h.pool_ports();
    let conf = h.conf("1.1.0", json!({}));
    let a1 = h.pod(&conf);
    let a2 = h.pod(&conf);
    let b1 = h.pod(&h.conf("1.1.0", json!({"network": "other"})));
    assert_eq!(
        (a1.ip.as_str(), a2.ip.as_str(), b1.ip.as_str()),
        ("10.1.2.2", "10.1.2.3", "10.1.3.2")
    );
    // The pod's interface is a macvlan of a pooled port, with the endpoint's MAC; no veth
    // or port was made for it.
    let d = link_details(&a1);
    assert!(d.contains("macvlan mode passthru"), "{d}");
    assert!(
        d.contains(a1.result["interfaces"][1]["mac"].as_str().unwrap()),
        "{d}"
    );
    let host_if = a1.result["interfaces"][0]["name"].as_str().unwrap();
    assert!(
        ports_before.contains(&host_if.to_string()),
        "{host_if} not pooled"
    );
    assert!(h.ovs_ports_now().iter().all(|p| !p.starts_with("vc")));
    assert_eq!(h.pool_marks().len(), 3, "{:?}", h.pool_marks());
    // IPv6 off on an IPv4-only network, as for veth pods.
    let v6 = a1.exec(&["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"]);
    assert_eq!(String::from_utf8_lossy(&v6.stdout).trim(), "1");

    assert!(a1.reaches(&a2.ip, Duration::from_secs(5)), "a1 -> a2");
    assert!(a2.reaches(&a1.ip, Duration::from_secs(5)), "a2 -> a1");
    // TCP needs the checksums the pooled port's waiting end computes.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(a1.tcp_exchange(&a2, 5001, &data), data, "TCP a1 -> a2");
    a1.exec(&["ip", "route", "add", "10.1.3.0/24", "dev", "eth0"]);
    b1.exec(&["ip", "route", "add", "10.1.2.0/24", "dev", "eth0"]);
    assert!(!a1.reaches(&b1.ip, Duration::from_secs(2)), "a1 reached b1");

    // A network with IPv6: the pod keeps IPv6 and gets its address; pods talk over it.
    m.dual_stack_network("dual", "10.1.4.0/24", "10.1.4.1", "fd00:4::/64");
    let dual = h.conf("1.1.0", json!({"network": "dual"}));
    let (d1, d2) = (h.pod(&dual), h.pod(&dual));
    let on = d1.exec(&["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"]);
    assert_eq!(String::from_utf8_lossy(&on.stdout).trim(), "0");
    let to = d2.ipv6();
    wait_for("IPv6 ping d1 -> d2", Duration::from_secs(10), || {
        d1.exec(&["ping", "-6", "-c", "1", "-W", "1", &to])
            .status
            .success()
    });

    // CHECK passes, and notices damage.
    let mut c = conf.clone();
    c["prevResult"] = a1.result.clone();
    let chk = h.cni("CHECK", &a1.container_id, &a1.netns_path(), "eth0", &c);
    assert!(chk.ok(), "CHECK: {}", chk.stdout);

    // DEL: the address is released and the port marked free; the pod's namespace goes (as a
    // runtime does) and the next pod gets the address and, in time, the port.
    let del = h.cni("DEL", &a2.container_id, &a2.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
    assert_eq!(h.pool_marks().len(), 4);
    assert_eq!(m.endpoints().len(), 4);
    drop(a2);
    let a3 = h.pod(&conf);
    assert_eq!(a3.ip, "10.1.2.3");
    assert!(a3.reaches(&a1.ip, Duration::from_secs(5)), "a3 -> a1");

    // A DEL whose namespace stays, then an ADD into that namespace under another container id
    // (a restarted sandbox): the old interface is in the way, and goes.
    let kept = h.pod(&conf);
    let del = h.cni("DEL", &kept.container_id, &kept.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
    let again = h.cni("ADD", "again", &kept.netns_path(), "eth0", &conf);
    assert!(
        again.ok(),
        "re-ADD into a DELed pod's namespace: {}",
        again.stdout
    );
    let ip = again.json["ips"][0]["address"].as_str().unwrap();
    assert!(
        String::from_utf8_lossy(&kept.exec(&["ip", "-o", "addr", "show", "eth0"]).stdout)
            .contains(ip)
    );
    // A DEL whose namespace stays: its interface is deleted when its port comes round again.
    let del = h.cni("DEL", "again", &kept.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
    let mut more = Vec::new();
    for _ in 0..(h.pool_ports().len() + 1) {
        more.push(h.pod(&conf));
        if !kept.exec(&["ip", "link", "show", "eth0"]).status.success() {
            break;
        }
    }
    assert!(
        !kept.exec(&["ip", "link", "show", "eth0"]).status.success(),
        "the DELed pod's interface was never deleted"
    );
    let last = more.last().unwrap();
    assert!(
        last.reaches(&a1.ip, Duration::from_secs(5)),
        "new pod -> a1"
    );

    // GC removes what the runtime no longer lists.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": a1.container_id, "ifname": "eth0"}]);
    let out = h.cni("GC", "", "", "", &gc);
    assert!(out.ok(), "{}", out.stdout);
    // b1 is on another Contiv network but under the same CNI config name: GC's scope.
    assert_eq!(
        h.pool_marks(),
        vec![format!(
            "{}-eth0 {}",
            a1.container_id,
            conf["name"].as_str().unwrap()
        )]
    );
    assert!(a1.exec(&["ip", "link", "show", "eth0"]).status.success());
    assert!(
        !a1.reaches(&last.ip, Duration::from_secs(2)),
        "GC left a removed pod connected"
    );
}

#[test]
fn a_failed_pooled_add_leaks_nothing() {
    let (m, h) = setup();
    let conf = h.conf("1.1.0", json!({}));
    // The pod already has an eth0.
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
    // A namespace that does not exist.
    let out = h.cni("ADD", "gone", "/var/run/netns/cte-none", "eth0", &conf);
    assert!(!out.ok() && out.error_code() == 4, "{}", out.stdout);
    assert!(h.pool_marks().is_empty(), "{:?}", h.pool_marks());
    assert!(m.endpoints().is_empty(), "{:?}", m.endpoints());
    // Every port is still usable: as many pods as ports work.
    let n = h.pool_ports().len();
    let pods: Vec<Pod> = (0..n).map(|_| h.pod(&conf)).collect();
    assert!(pods[0].reaches(&pods[n - 1].ip, Duration::from_secs(5)));
    assert!(h.pool_ports().len() >= n);
    assert!(h.ovs_ports_now().iter().all(|p| !p.starts_with("vc")));
}

#[test]
fn pooled_pods_survive_an_agent_restart() {
    let (m, mut h) = setup();
    let conf = h.conf("1.1.0", json!({}));
    let a = h.pod(&conf);
    let b = h.pod(&conf);
    let gone = h.pod(&conf);
    let ports = h.pool_ports();
    h.kill_agent();
    // A DEL the agent missed: the pod went and netmaster released its address meanwhile.
    let ep = format!("{}-eth0", gone.container_id);
    let (code, _) = m.api("DELETE", &format!("/api/v1/endpoints/{ep}/"), None);
    assert!(code < 300, "release {ep}: {code}");
    drop(gone);
    // Traffic between running pods needs no agent.
    assert!(
        a.reaches(&b.ip, Duration::from_secs(5)),
        "a -> b, agent down"
    );
    h.start_agent();
    assert!(
        a.reaches(&b.ip, Duration::from_secs(5)),
        "a -> b after restart"
    );
    assert_eq!(h.pool_marks().len(), 2, "{:?}", h.pool_marks());
    let mut now = h.pool_ports();
    now.sort();
    let mut was = ports.clone();
    was.sort();
    assert!(
        was.iter().all(|p| now.contains(p)),
        "ports lost: {was:?} -> {now:?}"
    );
    // DEL works after the restart, and a new pod works.
    let del = h.cni("DEL", &b.container_id, &b.netns_path(), "eth0", &conf);
    assert!(del.ok(), "{}", del.stdout);
    assert_eq!(h.pool_marks().len(), 1);
    let c = h.pod(&conf);
    assert!(c.reaches(&a.ip, Duration::from_secs(5)), "c -> a");
    assert_eq!(m.endpoints().len(), 2);
}

#[test]
fn ports_beyond_twice_the_pool_are_deleted_after_a_burst() {
    let (m, h) = setup();
    let conf = h.conf("1.1.0", json!({}));
    let burst = 3 * POOL;
    let pods: Vec<Pod> = (0..burst).map(|_| h.pod(&conf)).collect();
    assert!(h.pool_ports().len() >= burst);
    for p in &pods {
        let del = h.cni("DEL", &p.container_id, &p.netns_path(), "eth0", &conf);
        assert!(del.ok(), "{}", del.stdout);
    }
    drop(pods);
    // Host ends, waiting ends and OVS ports go together.
    let count_vp = |out: Vec<u8>| {
        String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| l.contains(": vp"))
            .count()
    };
    wait_for("the surplus ports to go", Duration::from_secs(20), || {
        let ports = h.pool_ports().len();
        let host_ends = count_vp(h.exec(&["ip", "-o", "link", "show"]).stdout);
        let waiting = count_vp(
            std::process::Command::new("ip")
                .args(["-n", &h.pool_ns(), "-o", "link", "show"])
                .output()
                .unwrap()
                .stdout,
        );
        ports <= 2 * POOL && host_ends == ports && waiting == ports
    });
    assert!(m.endpoints().is_empty());
    // What is left still serves pods.
    let (a, b) = (h.pod(&conf), h.pod(&conf));
    assert!(a.reaches(&b.ip, Duration::from_secs(5)));
}
