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

    /// Opens a TCP connection from the internet host's address ([`Outside::HOST`]) to
    /// `to` (a node's address: inbound traffic, NodePort-style), bounded by `timeout`.
    pub fn connect(
        &self,
        to: std::net::SocketAddrV4,
        timeout: std::time::Duration,
    ) -> std::io::Result<std::net::TcpStream> {
        let from: std::net::Ipv4Addr = Self::HOST.parse().expect("address");
        in_netns(&format!("/var/run/netns/{}", self.ns), move || {
            connect_from(from, to, timeout)
        })
    }

    /// A TCP listener on the far host's `port`.
    pub fn listen_far(&self, port: u16) -> std::net::TcpListener {
        listen_in(&self.far, Self::FAR_HOST, port)
    }
}

/// A TCP connection from `from` (bound before connecting: std cannot) to `to`, within
/// `timeout` (a dropped SYN is an error, not a two-minute wait).
fn connect_from(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddrV4,
    timeout: std::time::Duration,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let sockaddr = |a: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    };
    let err = std::io::Error::last_os_error;
    // SAFETY: plain socket(2); the descriptor is owned by `fd` at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw < 0 {
        return Err(err());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sockaddr(from, 0);
    // SAFETY: `local` is a valid sockaddr_in of `len` bytes.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&local as *const libc::sockaddr_in).cast(),
            len,
        )
    } < 0
    {
        return Err(err());
    }
    let remote = sockaddr(*to.ip(), to.port());
    // SAFETY: as above.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&remote as *const libc::sockaddr_in).cast(),
            len,
        )
    };
    if r < 0 && err().raw_os_error() != Some(libc::EINPROGRESS) {
        return Err(err());
    }
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connect to {to} from {from}"),
        ));
    }
    let s = std::net::TcpStream::from(fd);
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    s.set_nonblocking(false)?;
    Ok(s)
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
