//! "The outside" for north-south tests: a namespace on the underlay acting as the nodes' router
//! and as an internet host behind it. Its addresses exist only inside the test's namespaces.

use crate::{Host, Underlay, in_netns, must, run, unique};
use std::process::{Command, Output};

/// A router on the underlay with an "internet" address behind it (on its loopback). It knows
/// no route to pods or to the nodes' private addresses: what reaches it from a pod must come
/// from a node's own address, and its replies go back there.
pub struct Outside {
    pub ns: String,
    /// A second internet host one hop behind the router, over a link whose MTU tests may
    /// lower on the router's side ([`Outside::narrow_far_link`]): the router then has to fragment or send ICMP
    /// "fragmentation needed" back to the pods' nodes, as a real internet path may.
    pub far: String,
}

impl Outside {
    /// Its address on the underlay (the nodes' next hop), IPv4 and IPv6.
    pub const GATEWAY: &'static str = "10.250.0.254";
    pub const GATEWAY6: &'static str = "fd99::fe";
    /// The internet host's addresses.
    pub const HOST: &'static str = "10.99.0.1";
    pub const HOST6: &'static str = "fd99:1::1";
    /// The far internet host's address (behind the router's link `fr0`).
    pub const FAR_HOST: &'static str = "10.99.1.1";

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
        let far = unique("f");
        must(Command::new("ip").args(["netns", "add", &far]));
        ip(
            &ns,
            &[
                "link", "add", "fr0", "type", "veth", "peer", "name", "eth0", "netns", &far,
            ],
        );
        ip(&ns, &["addr", "add", "10.99.1.254/24", "dev", "fr0"]);
        ip(&ns, &["link", "set", "fr0", "up"]);
        ip(
            &far,
            &[
                "addr",
                "add",
                &format!("{}/24", Self::FAR_HOST),
                "dev",
                "eth0",
            ],
        );
        ip(&far, &["link", "set", "eth0", "up"]);
        ip(&far, &["link", "set", "lo", "up"]);
        ip(&far, &["route", "add", "default", "via", "10.99.1.254"]);
        must(Command::new("ip").args([
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]));
        Outside { ns, far }
    }

    /// Lowers the MTU of the router's end of the link to the far host. The far host keeps
    /// 1500 and so offers a TCP MSS the pods' packets exceed past the router: only path MTU
    /// discovery (ICMP "fragmentation needed" from the router) gets them through.
    pub fn narrow_far_link(&self, mtu: u32) {
        must(Command::new("ip").args([
            "-n",
            &self.ns,
            "link",
            "set",
            "fr0",
            "mtu",
            &mtu.to_string(),
        ]));
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
            "route",
            "add",
            &format!("{}/32", Self::FAR_HOST),
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
        listen_in(&self.ns, addr, port)
    }

    /// A TCP listener on the far host's `port`.
    pub fn listen_far(&self, port: u16) -> std::net::TcpListener {
        listen_in(&self.far, Self::FAR_HOST, port)
    }
}

/// A TCP listener on `addr:port` in namespace `ns`.
fn listen_in(ns: &str, addr: &str, port: u16) -> std::net::TcpListener {
    let a: std::net::SocketAddr = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
    .parse()
    .expect("address");
    in_netns(&format!("/var/run/netns/{ns}"), move || {
        std::net::TcpListener::bind(a).expect("listen outside")
    })
}

impl Drop for Outside {
    fn drop(&mut self) {
        for ns in [&self.far, &self.ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
