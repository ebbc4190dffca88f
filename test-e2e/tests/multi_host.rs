//! Several hosts on one underlay: the VXLAN overlay, tenant isolation, membership over time and
//! restarts, with real packets between pods made by the real `contiv` plugin.

use serde_json::json;
use std::time::{Duration, Instant};
use test_e2e::{Host, Netmaster, Pod, Underlay, wait_for};

const REACH: Duration = Duration::from_secs(10);

struct Cluster {
    // Drop order: pods (declared by tests) first, then hosts, then the underlay and master.
    hosts: Vec<Host>,
    underlay: Underlay,
    master: Netmaster,
}

impl Cluster {
    fn start(n: usize, master_args: &[&str]) -> Self {
        let master = Netmaster::start_with(master_args);
        let underlay = Underlay::new();
        let hosts = (1..=n)
            .map(|i| Host::start_on(&master, &underlay, &format!("host{i}")))
            .collect();
        let c = Cluster {
            hosts,
            underlay,
            master,
        };
        c.wait_for_mesh();
        c
    }

    fn add_host(&mut self, name: &str) -> usize {
        let h = Host::start_on(&self.master, &self.underlay, name);
        self.hosts.push(h);
        self.hosts.len() - 1
    }

    /// Every host has a tunnel to every other one.
    fn wait_for_mesh(&self) {
        let n = self.hosts.len();
        wait_for("a full tunnel mesh", Duration::from_secs(20), || {
            self.hosts.iter().all(|h| tunnels(h).len() == n - 1)
        });
    }

    fn pod(&self, host: usize, network: &str, tenant: &str) -> Pod {
        let h = &self.hosts[host];
        h.pod(&h.conf("1.0.0", json!({"network": network, "tenant": tenant})))
    }
}

/// The tunnel ports on a host's integration bridge.
fn tunnels(h: &Host) -> Vec<String> {
    h.ovs_ports()
        .into_iter()
        .filter(|p| p.starts_with("vx"))
        .collect()
}

fn rx_packets(p: &Pod) -> u64 {
    let out = p.exec(&["cat", "/sys/class/net/eth0/statistics/rx_packets"]);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Pings at 10 per second from `from` to `ip` while `during` runs, then until the count of sent
/// pings reaches `at_least`; returns (sent, received).
fn ping_through(from: &Pod, ip: &str, at_least: u32, during: impl FnOnce()) -> (u32, u32) {
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &from.netns, "ping", "-i", "0.1", "-W", "1"])
        .args(["-c", &at_least.to_string(), ip])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    during();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("ping output: {text}"));
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn pods_on_three_hosts_share_one_segment() {
    let c = Cluster::start(3, &[]);
    c.master
        .network("default", "contiv-net", "10.1.2.0/24", "10.1.2.1");
    let pods: Vec<Pod> = [0, 0, 1, 2]
        .iter()
        .map(|&h| c.pod(h, "contiv-net", "default"))
        .collect();
    for p in &pods {
        assert!(p.ip.starts_with("10.1.2."), "{}", p.ip);
        let mtu = p.exec(&["cat", "/sys/class/net/eth0/mtu"]);
        // Underlay 1500 minus the VXLAN encapsulation.
        assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1450");
    }
    for a in &pods {
        for b in &pods {
            if a.ip != b.ip {
                assert!(
                    a.reaches(&b.ip, REACH),
                    "{} cannot reach {}; flows on host1:\n{}",
                    a.ip,
                    b.ip,
                    c.hosts[0].flows()
                );
            }
        }
    }
    // One hop: the reply comes straight from the peer (TTL untouched, no router between).
    let out = pods[0].exec(&["ping", "-c", "1", "-W", "2", &pods[3].ip]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ttl=64"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let trace = pods[0].exec(&["busybox", "traceroute", "-n", "-m", "3", "-w", "2", &pods[3].ip]);
    let hops = String::from_utf8_lossy(&trace.stdout)
        .lines()
        .filter(|l| !l.starts_with("traceroute"))
        .count();
    assert_eq!(hops, 1, "{}", String::from_utf8_lossy(&trace.stdout));
    // TCP across hosts, with more than one MTU of data (checksums and MTU right).
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(pods[0].tcp_exchange(&pods[2], 7001, &data), data);
    assert_eq!(pods[3].tcp_exchange(&pods[1], 7002, &data), data);
}
