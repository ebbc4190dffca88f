//! Pods: network namespaces (plumbed by the CNI plugin), and traffic between them.

use crate::{in_netns, must, run, unique};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A pod: a network namespace (plumbed by the plugin when made by [`Host::pod`]).
pub struct Pod {
    pub netns: String,
    pub container_id: String,
    pub ip: String,
    pub result: Value,
}

impl Default for Pod {
    fn default() -> Self {
        Self::new()
    }
}

impl Pod {
    /// The pod's IPv6 address from its CNI result (panics without one).
    pub fn ipv6(&self) -> String {
        self.result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["address"].as_str())
            .find(|a| a.contains(':'))
            .unwrap_or_else(|| panic!("no IPv6 address: {}", self.result))
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// A bare namespace, not plumbed.
    pub fn new() -> Self {
        let netns = unique("p");
        must(Command::new("ip").args(["netns", "add", &netns]));
        Pod {
            container_id: format!("{netns}c0ffee"),
            netns,
            ip: String::new(),
            result: Value::Null,
        }
    }

    /// The network namespace of a running process (a Docker container) as a pod, so that the
    /// pod helpers (ping, TCP, iperf3 with the host's tools) run inside the container's own
    /// network. Dropping it detaches the name only; the container keeps its namespace.
    pub fn of_process(pid: &str, container_id: &str, ip: &str) -> Self {
        let netns = unique("p");
        must(Command::new("ip").args(["netns", "attach", &netns, pid]));
        Pod {
            netns,
            container_id: container_id.to_string(),
            ip: ip.to_string(),
            result: Value::Null,
        }
    }

    pub fn netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.netns)
    }

    /// The names of the links in the pod's namespace.
    pub fn link_names(&self) -> Vec<String> {
        crate::host::link_names_in(&self.netns)
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        run(Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(args))
    }

    /// One ping with a short deadline.
    pub fn ping(&self, ip: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "1", ip])
            .status
            .success()
    }

    /// Pings until one answers or `timeout` passes (ARP and flows may need a moment).
    pub fn reaches(&self, ip: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.ping(ip) {
                return true;
            }
        }
        false
    }

    /// One iperf3 TCP stream from `from` to `to`; Gbit/s received.
    pub fn iperf3_to(&self, to: &Pod, seconds: u64) -> f64 {
        iperf3(&self.netns, &to.netns, &to.ip, seconds)
    }

    /// Runs `f` on a thread inside the pod's namespace (sockets made there stay there).
    pub fn in_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.netns_path(), f)
    }

    /// A TCP listener on `port` inside the pod.
    pub fn tcp_listener(&self, port: u16) -> std::net::TcpListener {
        self.in_ns(move || std::net::TcpListener::bind(("0.0.0.0", port)).expect("listen in pod"))
    }

    /// Connects from the pod to `ip:port` (bounded by `timeout`).
    pub fn tcp_connect(
        &self,
        ip: &str,
        port: u16,
        timeout: Duration,
    ) -> std::io::Result<std::net::TcpStream> {
        let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().expect("address");
        self.in_ns(move || std::net::TcpStream::connect_timeout(&addr, timeout))
    }

    /// Whether this pod can open a TCP connection to `to:port` (a listener is started there
    /// for it); a refused or unanswered SYN is false.
    pub fn connects_to(&self, to: &Pod, port: u16) -> bool {
        let l = to.tcp_listener(port);
        l.set_nonblocking(true).unwrap();
        let ok = self
            .tcp_connect(&to.ip, port, Duration::from_millis(1500))
            .is_ok();
        drop(l);
        ok
    }

    /// Sends `data` from this pod to `server` over TCP and returns what the server received.
    pub fn tcp_exchange(&self, server: &Pod, port: u16, data: &[u8]) -> Vec<u8> {
        use std::io::{Read, Write};
        let l = server.tcp_listener(port);
        let reader = std::thread::spawn(move || {
            let (mut c, _) = l.accept().expect("accept");
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = Vec::new();
            let _ = c.read_to_end(&mut got);
            got
        });
        let mut c = self
            .tcp_connect(&server.ip, port, Duration::from_secs(5))
            .expect("connect");
        c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(data).expect("send");
        drop(c);
        reader.join().expect("reader")
    }
}

impl Pod {
    /// Removes the namespace's name now, as `ip netns del` does (the namespace itself goes
    /// once nothing holds it), without a process: for benchmarks.
    pub fn remove_netns(&self) {
        let path = std::ffi::CString::new(self.netns_path()).unwrap_or_default();
        // SAFETY: a valid NUL-terminated path alive for the call.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_file(self.netns_path());
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if Path::new(&self.netns_path()).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns])
                .status();
        }
    }
}

/// A ping running in the background from a pod: `count` echo requests 0.1 s apart, each
/// waited for at most 1 s. Killed if dropped unfinished (a failing test).
pub struct PingRun(Option<std::process::Child>);

/// The interval of [`PingRun`]'s echo requests.
pub const PING_INTERVAL: Duration = Duration::from_millis(100);

impl Pod {
    /// Starts pinging `ip` from the pod in the background (see [`PingRun`]).
    pub fn ping_start(&self, ip: &str, count: u32) -> PingRun {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "ping", "-W", "1"])
            .args(["-i", &format!("{}", PING_INTERVAL.as_secs_f64())])
            .args(["-c", &count.to_string(), ip])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ping");
        PingRun(Some(child))
    }
}

impl PingRun {
    /// Waits for the pings to end; (sent, received).
    pub fn finish(mut self) -> (u32, u32) {
        let out = self
            .0
            .take()
            .expect("a running ping")
            .wait_with_output()
            .expect("wait for ping");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("ping output: {text}"));
        let nums: Vec<u32> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .take(2)
            .map(|s| s.parse().expect("a count"))
            .collect();
        (nums[0], nums[1])
    }
}

impl Drop for PingRun {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One iperf3 TCP stream from namespace `client_ns` to an iperf3 server started in namespace
/// `server_ns`, connecting to `dst` (an address of the server's namespace); Gbit/s received.
pub fn iperf3(client_ns: &str, server_ns: &str, dst: &str, seconds: u64) -> f64 {
    let mut server = Command::new("ip")
        .args([
            "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", "5201",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    let start = Instant::now();
    let out = loop {
        let out = run(Command::new("ip").args(["netns", "exec", client_ns]).args([
            "iperf3",
            "-c",
            dst,
            "-p",
            "5201",
            "-t",
            &seconds.to_string(),
            "-J",
        ]));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if v["end"]["sum_received"]["bits_per_second"].is_number() {
            break v;
        }
        // The server may not listen yet.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "iperf3 {} -> {} failed: {}",
            client_ns,
            dst,
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = server.wait();
    out["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap()
        / 1e9
}
