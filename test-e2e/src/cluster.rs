//! The simulated cluster: hosts on one underlay with a netmaster.

use crate::{Host, Netmaster, Pod, Underlay, wait_for};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Hosts on one underlay with a netmaster: the simulated cluster.
pub struct Cluster {
    // Drop order: pods (declared by tests) first, then hosts, then the underlay and master.
    pub hosts: Vec<Host>,
    pub underlay: Underlay,
    pub master: Netmaster,
}

impl Cluster {
    /// `n` hosts (`host1`..) with a full tunnel mesh.
    pub fn start(n: usize, master_args: &[&str]) -> Self {
        Self::start_with_agents(n, master_args, &[])
    }

    /// Like [`Cluster::start`], every agent given `agent_args` too.
    pub fn start_with_agents(n: usize, master_args: &[&str], agent_args: &[&str]) -> Self {
        let master = Netmaster::start_with(master_args);
        let underlay = Underlay::new();
        let hosts = (1..=n)
            .map(|i| {
                Host::start_on_masters_with(
                    &master.url(),
                    &underlay,
                    &format!("host{i}"),
                    agent_args,
                )
            })
            .collect();
        let c = Cluster {
            hosts,
            underlay,
            master,
        };
        c.wait_for_mesh();
        c
    }

    pub fn add_host(&mut self, name: &str) -> usize {
        let h = Host::start_on(&self.master, &self.underlay, name);
        self.hosts.push(h);
        self.hosts.len() - 1
    }

    /// Every host has a tunnel to every other one.
    pub fn wait_for_mesh(&self) {
        let n = self.hosts.len();
        wait_for("a full tunnel mesh", Duration::from_secs(20), || {
            self.hosts.iter().all(|h| tunnels(h).len() == n - 1)
        });
    }

    /// A pod on host index `host` in `tenant:network`.
    pub fn pod(&self, host: usize, network: &str, tenant: &str) -> Pod {
        let h = &self.hosts[host];
        h.pod(&h.conf("1.0.0", json!({"network": network, "tenant": tenant})))
    }
}

/// The tunnel ports on a host's integration bridge.
pub fn tunnels(h: &Host) -> Vec<String> {
    h.ovs_ports()
        .into_iter()
        .filter(|p| p.starts_with("vx"))
        .collect()
}

/// Asserts that the VXLAN packets `sender` tunnels to `receiver` while `traffic` runs carry DSCP
/// 46 (tos 0xb8) in their outer header and in the inner packet (tcpdump on `receiver`'s
/// underlay NIC). `traffic` must send at least two packets into the tunnel.
pub fn assert_dscp_46_in_tunnel(receiver: &Host, sender: &Host, traffic: impl FnOnce()) {
    let dump = Command::new("ip")
        .args(["netns", "exec", &receiver.ns, "timeout", "5"])
        .args(["tcpdump", "-l", "-c", "2", "-v", "-n", "-i", Underlay::NIC])
        // Only what the sender's host tunnels.
        .args(["udp", "port", "4789", "and", "src", "host", &sender.vtep])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    // tcpdump gives no sign when its capture is open: a moment for it to start.
    std::thread::sleep(Duration::from_millis(500));
    traffic();
    let text = String::from_utf8_lossy(&dump.wait_with_output().unwrap().stdout).to_string();
    let outer: Vec<&str> = text.lines().filter(|l| l.contains("proto UDP")).collect();
    assert!(
        !outer.is_empty(),
        "no VXLAN packet seen on the underlay: {text}"
    );
    assert!(
        outer.iter().all(|l| l.contains("tos 0xb8")),
        "outer headers without DSCP 46: {text}"
    );
    // And inside the tunnel: the endpoint's own packets.
    let inner: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("IP (") && !l.contains("proto UDP"))
        .collect();
    assert!(
        !inner.is_empty() && inner.iter().all(|l| l.contains("tos 0xb8")),
        "inner headers without DSCP 46: {text}"
    );
}
