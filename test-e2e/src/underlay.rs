//! The underlay network that joins simulated hosts.

use crate::{must, unique};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The network that joins simulated hosts: a Linux bridge in a namespace of its own; each host is
/// plugged in by a veth whose host end is `ul0` with an address from 10.250.0.0/24.
pub struct Underlay {
    pub ns: String,
    next: AtomicU32,
}

impl Default for Underlay {
    fn default() -> Self {
        Self::new()
    }
}

impl Underlay {
    pub const NIC: &'static str = "ul0";

    pub fn new() -> Self {
        let ns = unique("u");
        must(Command::new("ip").args(["netns", "add", &ns]));
        let ip = |args: &[&str]| must(Command::new("ip").args(["-n", &ns]).args(args));
        ip(&["link", "add", "br0", "type", "bridge"]);
        ip(&["link", "set", "br0", "up"]);
        Underlay {
            ns,
            next: AtomicU32::new(1),
        }
    }

    /// Plugs the host namespace `host_ns` in; returns its underlay address.
    pub fn attach(&self, host_ns: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let addr = format!("10.250.0.{}", 10 + n);
        let port = format!("u{n}");
        let ip = |ns: &str, args: &[&str]| must(Command::new("ip").args(["-n", ns]).args(args));
        ip(
            &self.ns,
            &[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                Self::NIC,
                "netns",
                host_ns,
            ],
        );
        ip(&self.ns, &["link", "set", &port, "master", "br0", "up"]);
        ip(
            host_ns,
            &["addr", "add", &format!("{addr}/24"), "dev", Self::NIC],
        );
        ip(host_ns, &["link", "set", Self::NIC, "up"]);
        addr
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
