//! "The outside" for north-south tests: a namespace on the underlay acting as the nodes' router
//! and as an internet host behind it. Its addresses exist only inside the test's namespaces.

use crate::{Host, Underlay, in_netns, must, run, unique};
use std::process::{Command, Output};

/// A router on the underlay with an "internet" address behind it (on its loopback). It knows
/// no route to pods or to the nodes' private addresses: what reaches it from a pod must come
/// from a node's own address, and its replies go back there.
pub struct Outside {
    pub ns: String,
}

impl Outside {
    /// Its address on the underlay (the nodes' next hop), IPv4 and IPv6.
    pub const GATEWAY: &'static str = "10.250.0.254";
    pub const GATEWAY6: &'static str = "fd99::fe";
    /// The internet host's addresses.
    pub const HOST: &'static str = "10.99.0.1";
    pub const HOST6: &'static str = "fd99:1::1";

    /// Plugs the outside into `underlay`.
    pub fn new(underlay: &Underlay) -> Self {
        let ns = unique("o");
        must(Command::new("ip").args(["netns", "add", &ns]));
        let port = format!("{ns}u");
        let port = &port[port.len().saturating_sub(15)..];
        let ip = |n: &str, args: &[&str]| must(Command::new("ip").args(["-n", n]).args(args));
        ip(
            &underlay.ns,
            &[
                "link", "add", port, "type", "veth", "peer", "name", "ul0", "netns", &ns,
            ],
        );
        ip(&underlay.ns, &["link", "set", port, "master", "br0", "up"]);
        ip(
            &ns,
            &[
                "addr",
                "add",
                &format!("{}/24", Self::GATEWAY),
                "dev",
                "ul0",
            ],
        );
        ip(
            &ns,
            &[
                "addr",
                "add",
                &format!("{}/64", Self::GATEWAY6),
                "dev",
                "ul0",
                "nodad",
            ],
        );
        ip(
            &ns,
            &["addr", "add", &format!("{}/32", Self::HOST), "dev", "lo"],
        );
        ip(
            &ns,
            &["addr", "add", &format!("{}/128", Self::HOST6), "dev", "lo"],
        );
        ip(&ns, &["link", "set", "lo", "up"]);
        ip(&ns, &["link", "set", "ul0", "up"]);
        // A real router's NIC computes its checksums; a veth leaves them to "hardware", and
        // the nodes' uplinks are ports of the userspace datapath, which never fills them in.
        must(Command::new("ip").args(["netns", "exec", &ns, "ethtool", "-K", "ul0", "tx", "off"]));
        Outside { ns }
    }

    /// Makes `host` route the internet host through the outside router, over IPv4 and IPv6
    /// (the host's IPv6 underlay address is fd99:: + the last byte of its IPv4 one, on the
    /// uplink bridge that carries its VTEP address).
    pub fn route_from(&self, host: &Host) {
        let last = host.vtep.rsplit('.').next().unwrap_or("1");
        let h = |args: &[&str]| {
            let out = host.exec(args);
            assert!(
                out.status.success(),
                "{args:?} on {}: {}",
                host.name,
                String::from_utf8_lossy(&out.stderr)
            );
        };
        h(&[
            "ip",
            "addr",
            "add",
            &format!("fd99::{last}/64"),
            "dev",
            "contivUplink",
            "nodad",
        ]);
        h(&[
            "ip",
            "route",
            "add",
            &format!("{}/32", Self::HOST),
            "via",
            Self::GATEWAY,
        ]);
        h(&[
            "ip",
            "-6",
            "route",
            "add",
            &format!("{}/128", Self::HOST6),
            "via",
            Self::GATEWAY6,
        ]);
    }

    /// A host's IPv6 underlay address (see [`Outside::route_from`]).
    pub fn host6(host: &Host) -> String {
        format!("fd99::{}", host.vtep.rsplit('.').next().unwrap_or("1"))
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args))
    }

    /// A TCP listener on the internet host's `addr:port`.
    pub fn listen(&self, addr: &str, port: u16) -> std::net::TcpListener {
        let a: std::net::SocketAddr = if addr.contains(':') {
            format!("[{addr}]:{port}")
        } else {
            format!("{addr}:{port}")
        }
        .parse()
        .expect("address");
        in_netns(&format!("/var/run/netns/{}", self.ns), move || {
            std::net::TcpListener::bind(a).expect("listen outside")
        })
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
