//! The simulated cluster for end-to-end tests: a netmaster, and hosts that are network namespaces
//! each with their own ovsdb-server, ovs-vswitchd and netplugin; pods are namespaces plumbed by
//! the real `contiv` CNI binary. Every name is unique per run, everything is removed on drop
//! (even when a test panics), and leftovers of crashed runs are removed at start.
//!
//! Needs root, Open vSwitch and iproute2 (scripts/setup.sh installs them).

pub mod docker;
pub mod modes;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// netplugin's `manager::GRAVEYARD_GROUP` (netplugin is not a dependency of this library; a
/// test checks the two agree): the link group of veths a DEL queued for deletion.
pub const GRAVEYARD_GROUP: u32 = 0x00636e76;

/// Prefix of every namespace, directory and bridge this harness makes.
pub const PREFIX: &str = "cte";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process: `cte<pid>x<n><suffix>`, short enough for interface names.
pub fn unique(suffix: &str) -> String {
    format!(
        "{PREFIX}{}x{}{suffix}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A benchmark's `--name VALUE` command-line option, or `default`.
pub fn cli_arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A workspace binary in target/<profile>, built (once per test process) if out of date.
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        // Test binaries live in target/<profile>/deps.
        let exe = std::env::current_exe().expect("current exe");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        let profile_release = dir.ends_with("release");
        // Always ask cargo: a binary left from an older build would test old code. When they
        // are fresh this is a no-op of about a second.
        if std::env::var_os("CONTIV_E2E_NO_BUILD").is_none() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut c = Command::new(cargo);
            c.args([
                "build",
                "--quiet",
                "-p",
                "master",
                "-p",
                "netplugin",
                "-p",
                "cni",
                "-p",
                "netctl",
                "--bins",
            ]);
            if profile_release {
                c.arg("--release");
            }
            let st = c.status().expect("run cargo build");
            assert!(st.success(), "cargo build of the binaries failed");
        }
        cleanup_leftovers();
        dir
    });
    dir.join(name)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Makes a container image tarball under `dir`: busybox-static as `/bin/busybox`, `tools` as
/// symlinks to it, and `/tmp` (no registry here: runtimes import it, see ENVIRONMENT.md).
pub fn busybox_image_tar(dir: &Path, tools: &[&str]) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("copy /bin/busybox (install busybox-static)");
    for tool in tools {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    must(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    tar
}

/// Removes namespaces and daemons of earlier runs whose test process is gone.
pub fn cleanup_leftovers() {
    let out = Command::new("ip").args(["netns", "list"]).output();
    if let Ok(out) = out {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if let Some(owner) = owner_pid(name)
                && !pid_alive(owner)
            {
                // Kill whatever still runs inside, then remove it.
                if let Ok(p) = Command::new("ip").args(["netns", "pids", name]).output() {
                    for pid in String::from_utf8_lossy(&p.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-9", pid]).status();
                    }
                }
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/tmp") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(owner) = owner_pid(&name)
                && !pid_alive(owner)
            {
                // Daemons outside the namespaces (netmaster) name their directory.
                kill_processes_naming(&e.path());
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// SIGKILLs every process (but this one) whose command line names a path under `dir`.
pub fn kill_processes_naming(dir: &Path) {
    let needle = format!("{}/", dir.display());
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    rest.split('x').next()?.parse().ok()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Waits for `f` to hold, up to `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

fn kill_child(c: &mut Option<Child>) {
    if let Some(mut ch) = c.take() {
        let _ = ch.kill();
        let _ = ch.wait();
    }
}

// ------------------------------------------------------------------------ netmaster

/// A netmaster on a temp dir, serving on loopback and on a unix socket (hosts are network
/// namespaces that cannot reach this namespace's loopback; the socket works from all of them).
pub struct Netmaster {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    args: Vec<String>,
}

impl Netmaster {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A netmaster with extra flags (e.g. `--node-ttl 3`).
    pub fn start_with(args: &[&str]) -> Self {
        let dir = PathBuf::from(format!("/tmp/{}", unique("m")));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("netmaster.sock");
        let mut m = Netmaster {
            child: None,
            dir,
            socket,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        m.spawn();
        m
    }

    /// A netmaster whose TCP listener is on `port` (so that it can advertise itself to other
    /// masters: `--advertise-url` follows `--listen-url`), with extra flags.
    pub fn start_on_port(port: u16, args: &[&str]) -> Self {
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec!["--listen-url", listen.as_str()];
        all.extend_from_slice(args);
        Self::start_with(&all)
    }

    /// Kills the netmaster (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("netmaster.log")).unwrap();
        // A --listen-url among the extra flags replaces the default.
        let listen: &[&str] = if self.args.iter().any(|a| a == "--listen-url") {
            &[]
        } else {
            &["--listen-url", "127.0.0.1:0"]
        };
        let child = Command::new(bin("netmaster"))
            .args(listen)
            .arg("--listen-unix")
            .arg(&self.socket)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn netmaster");
        self.child = Some(child);
        let s = self.socket.clone();
        wait_for("netmaster socket", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&s).is_ok()
        });
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn client(&self) -> model::Client {
        model::Client::new(&[self.url()]).unwrap()
    }

    /// A REST call with curl over the unix socket: (status, JSON body).
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&self.socket)
            .args(["-X", method, &format!("http://localhost{path}")]);
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "-d", &b.to_string()]);
        }
        let out = must(&mut c);
        let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        (
            code.parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::String(body.into())),
        )
    }

    /// Runs the real `netctl` against this netmaster; its standard output (fails the test when
    /// netctl fails).
    pub fn netctl(&self, args: &[&str]) -> String {
        must(
            Command::new(bin("netctl"))
                .args(["--netmaster", &self.url()])
                .args(args),
        )
    }

    pub fn network(&self, tenant: &str, name: &str, subnet: &str, gateway: &str) {
        if tenant != "default" {
            self.api(
                "POST",
                &format!("/api/v1/tenants/{tenant}/"),
                Some(json!({"tenantName": tenant})),
            );
        }
        let (s, v) = self.api(
            "POST",
            &format!("/api/v1/networks/{tenant}:{name}/"),
            Some(json!({"tenantName": tenant, "networkName": name, "encap": "vxlan", "subnet": subnet, "gateway": gateway})),
        );
        assert_eq!(s, 200, "create network {tenant}:{name}: {v}");
    }

    /// Creates network `tenant:name` (VXLAN) with an IPv6 subnet beside the IPv4 one.
    pub fn dual_stack_network(&self, name: &str, subnet: &str, gateway: &str, v6_subnet: &str) {
        let (s, v) = self.api(
            "POST",
            &format!("/api/v1/networks/default:{name}/"),
            Some(
                json!({"tenantName": "default", "networkName": name, "encap": "vxlan",
                "subnet": subnet, "gateway": gateway, "ipv6Subnet": v6_subnet}),
            ),
        );
        assert_eq!(s, 200, "create network default:{name}: {v}");
    }

    /// Endpoints netmaster holds (all hosts).
    pub fn endpoints(&self) -> Vec<Value> {
        let (_, v) = self.api("GET", "/api/v1/endpoints/", None);
        v.as_array().cloned().unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("netmaster.log")).unwrap_or_default()
    }
}

impl Drop for Netmaster {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ------------------------------------------------------------------------ underlay

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

// ------------------------------------------------------------------------ cluster

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

// ------------------------------------------------------------------------ hosts

/// A simulated host: a network namespace with its own OVS and agent.
pub struct Host {
    pub name: String,
    pub ns: String,
    pub dir: PathBuf,
    pub bridge: String,
    pub cni_socket: PathBuf,
    master_url: String,
    agent: Option<Child>,
    agent_starts: u32,
    agent_args: Vec<String>,
    /// The underlay address, when on an [`Underlay`].
    pub vtep: String,
}

impl Host {
    pub fn start(master: &Netmaster, name: &str) -> Self {
        let mut h = Self::netns_only(master, name);
        h.boot(&[]);
        h
    }

    /// A host on `underlay`: its agent's VTEP is its underlay address, on `ul0`.
    pub fn start_on(master: &Netmaster, underlay: &Underlay, name: &str) -> Self {
        Self::start_on_masters(&master.url(), underlay, name)
    }

    /// Like [`Host::start_on`], with the agent given `urls` (comma-separated) as its netmasters.
    pub fn start_on_masters(urls: &str, underlay: &Underlay, name: &str) -> Self {
        Self::start_on_masters_with(urls, underlay, name, &[])
    }

    /// Like [`Host::start_on_masters`], the agent given `extra` flags too.
    pub fn start_on_masters_with(
        urls: &str,
        underlay: &Underlay,
        name: &str,
        extra: &[&str],
    ) -> Self {
        let mut h = Self::netns_with(urls, name);
        let vtep = underlay.attach(&h.ns);
        h.vtep = vtep.clone();
        let mut args = vec!["--vtep-ip", &vtep, "--vtep-intf", Underlay::NIC];
        args.extend_from_slice(extra);
        h.boot(&args);
        h
    }

    /// A host namespace with nothing running in it yet; start it with [`Host::boot`].
    pub fn netns_only(master: &Netmaster, name: &str) -> Self {
        Self::netns_with(&master.url(), name)
    }

    fn netns_with(master_url: &str, name: &str) -> Self {
        let ns = unique("h");
        let dir = PathBuf::from(format!("/tmp/{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        must(Command::new("ip").args(["netns", "add", &ns]));
        let h = Host {
            name: name.to_string(),
            bridge: format!("br{}", &ns[PREFIX.len()..]),
            cni_socket: dir.join("cni.sock"),
            ns,
            dir,
            master_url: master_url.to_string(),
            agent: None,
            agent_starts: 0,
            agent_args: Vec::new(),
            vtep: String::new(),
        };
        h.exec(&["ip", "link", "set", "lo", "up"]);
        h
    }

    /// Starts OVS and the agent (with `agent_args`) on a host made by [`Host::netns_only`].
    pub fn boot(&mut self, agent_args: &[&str]) {
        self.agent_args = agent_args.iter().map(|a| a.to_string()).collect();
        // CONTIV_E2E_PORT_POOL=N runs every agent with a port pool (to try a suite with it).
        if let Ok(n) = std::env::var("CONTIV_E2E_PORT_POOL")
            && !self.agent_args.iter().any(|a| a.starts_with("--port-pool"))
        {
            self.agent_args.push(format!("--port-pool={n}"));
        }
        // CONTIV_E2E_TRUNKS=1 runs every agent with network trunks (to try a suite with them).
        if std::env::var("CONTIV_E2E_TRUNKS").is_ok_and(|v| v == "1")
            && !self.agent_args.iter().any(|a| a.starts_with("--port-pool"))
            && !self.agent_args.iter().any(|a| a == "--trunks")
        {
            self.agent_args.push("--trunks".into());
            // Idle trunks go at once: suites check that nothing is left after their pods.
            self.agent_args.push("--trunk-idle=1".into());
        }
        if self.agent_args.iter().any(|a| a == "--trunks") {
            self.agent_args
                .push(format!("--state-dir={}", self.dir.join("state").display()));
        }
        if self
            .agent_args
            .iter()
            .any(|a| a.starts_with("--port-pool") || a == "--trunks")
        {
            // Made here, in this process's mount namespace: one the agent made under
            // `ip netns exec` would go (and every pooled pod's interface with it) when the
            // agent exits.
            must(Command::new("ip").args(["netns", "add", &self.pool_ns()]));
            self.agent_args
                .push(format!("--pool-netns=/run/netns/{}", self.pool_ns()));
        }
        self.start_ovs();
        self.start_agent();
    }

    /// The namespace where the agent's pooled ports wait (with `--port-pool`).
    pub fn pool_ns(&self) -> String {
        format!("{}pool", self.ns)
    }

    /// The agent's network trunks on the bridge (`vt...`, with `--trunks`).
    pub fn trunk_ports(&self) -> Vec<String> {
        self.ovs_ports_now()
            .into_iter()
            .filter(|p| p.starts_with("vt"))
            .collect()
    }

    /// The endpoints the agent has recorded on network trunks (with `--trunks`): the files
    /// in its state directory, sorted.
    pub fn trunk_records(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("state"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The agent's pooled ports on the bridge (`vp...`, with `--port-pool`).
    pub fn pool_ports(&self) -> Vec<String> {
        self.ovs_ports_now()
            .into_iter()
            .filter(|p| p.starts_with("vp"))
            .collect()
    }

    /// The marks of pooled ports serving an endpoint ("<endpoint id> <CNI network>": the
    /// aliases of their waiting ends in the pool namespace).
    pub fn pool_marks(&self) -> Vec<String> {
        let out = run(Command::new("ip").args(["-n", &self.pool_ns(), "-o", "link", "show"]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(" alias ").nth(1))
            .map(|a| a.trim().to_string())
            .collect()
    }

    /// Runs `f` on a thread inside the host's namespace (sockets made there stay there).
    pub fn in_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&format!("/var/run/netns/{}", self.ns), f)
    }

    fn ovs_env(&self, c: &mut Command) {
        c.env("OVS_RUNDIR", &self.dir)
            .env("OVS_LOGDIR", &self.dir)
            .env("OVS_DBDIR", &self.dir)
            .env("OVS_SYSCONFDIR", &self.dir);
    }

    pub fn db_sock(&self) -> PathBuf {
        self.dir.join("db.sock")
    }

    fn start_ovs(&mut self) {
        let d = self.dir.display().to_string();
        must(Command::new("ovsdb-tool").args([
            "create",
            &format!("{d}/conf.db"),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ]));
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns,
            "ovsdb-server",
            &format!("{d}/conf.db"),
        ])
        .arg(format!("--remote=punix:{d}/db.sock"))
        .arg(format!("--pidfile={d}/ovsdb.pid"))
        .arg(format!("--unixctl={d}/ovsdb.ctl"))
        .arg(format!("--log-file={d}/ovsdb.log"))
        .arg("--detach");
        self.ovs_env(&mut c);
        must(&mut c);
        let mut c = Command::new("ovs-vsctl");
        c.arg(format!("--db=unix:{d}/db.sock"))
            .args(["--no-wait", "init"]);
        must(&mut c);
        self.start_vswitchd();
    }

    pub fn start_vswitchd(&mut self) {
        let d = self.dir.display().to_string();
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns,
            "ovs-vswitchd",
            &format!("unix:{d}/db.sock"),
        ])
        .arg(format!("--pidfile={d}/vswitchd.pid"))
        .arg(format!("--unixctl={d}/vswitchd.ctl"))
        .arg(format!("--log-file={d}/vswitchd.log"))
        .arg("--detach");
        self.ovs_env(&mut c);
        must(&mut c);
    }

    /// Kills ovs-vswitchd (SIGKILL), as a crash would.
    pub fn kill_vswitchd(&mut self) {
        kill_pidfile(&self.dir.join("vswitchd.pid"));
    }

    pub fn start_agent(&mut self) {
        self.agent_starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("netplugin.log"))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin("netplugin"))
            .args([
                "--netmaster",
                &self.master_url,
                "--host",
                &self.name,
                "--bridge",
                &self.bridge,
                "--datapath",
                "userspace",
            ])
            .arg("--ovsdb-sock")
            .arg(self.db_sock())
            .arg("--ovs-rundir")
            .arg(&self.dir)
            .arg("--cni-socket")
            .arg(&self.cni_socket)
            .arg("--docker-state")
            .arg(self.dir.join("docker-driver.json"))
            // Docker's plugin directory is shared by every agent on the machine: only tests
            // that ask for a Docker socket (a unique one) get one.
            .args(
                (!self
                    .agent_args
                    .iter()
                    .any(|a| a.starts_with("--docker-socket")))
                .then_some("--docker-socket="),
            )
            .args(&self.agent_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn netplugin");
        self.agent = Some(child);
        let sock = self.cni_socket.clone();
        let logp = self.dir.join("netplugin.log");
        let starts = self.agent_starts;
        wait_for("netplugin to serve CNI", Duration::from_secs(30), || {
            // The socket file of a previous run may linger until the new agent replaces it.
            std::fs::read_to_string(&logp)
                .map(|l| l.matches("serving CNI").count() as u32 >= starts)
                .unwrap_or(false)
                && std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    /// Kills the agent (SIGKILL, no cleanup), as a crash would.
    pub fn kill_agent(&mut self) {
        kill_child(&mut self.agent);
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("netplugin.log")).unwrap_or_default()
    }

    /// Runs a command inside the host's namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args))
    }

    /// The host's links, once the agent has deleted the ports and veths of removed endpoints:
    /// a DEL removes flows and address, queues port and veth and returns, and the agent
    /// deletes the queue at a lull (the veths through a link group). Done means: no port of an
    /// endpoint netmaster no longer has, no link in that group, and every agent veth (`vc...`)
    /// has its port and every agent port its veth.
    pub fn links(&self) -> Vec<String> {
        let group = GRAVEYARD_GROUP.to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // In the order the reaper's work becomes visible (released endpoint's port,
            // portless veth, veth in the group), so that one pass never misses a step.
            let released = self.ports_of_released_endpoints();
            let all = self.link_names();
            let queued = self.exec(&["ip", "-o", "link", "show", "group", &group]);
            let ports = self.ovs_ports_now();
            let ours = |n: &&String| n.len() == 14 && n.starts_with("vc");
            let portless: Vec<&String> = all
                .iter()
                .filter(ours)
                .filter(|n| !ports.contains(n))
                .collect();
            // A port whose veth went with its pod's namespace: its DEL is yet to finish.
            let vethless: Vec<&String> = ports
                .iter()
                .filter(ours)
                .filter(|n| !all.contains(n))
                .collect();
            if queued.stdout.is_empty()
                && portless.is_empty()
                && vethless.is_empty()
                && released.is_empty()
            {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not delete removed endpoints' veths and ports: {portless:?} {vethless:?} {released:?} {}",
                String::from_utf8_lossy(&queued.stdout)
            );
            std::thread::yield_now();
        }
    }

    fn link_names(&self) -> Vec<String> {
        let out = self.exec(&["ip", "-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// Endpoint ports whose endpoint netmaster no longer holds (empty when netmaster cannot be
    /// asked: multi-master URLs, or none running).
    fn ports_of_released_endpoints(&self) -> Vec<String> {
        let Some(sock) = self
            .master_url
            .strip_prefix("unix://")
            .filter(|s| !s.contains(','))
        else {
            return Vec::new();
        };
        let out = run(Command::new("curl").args([
            "-sf",
            "--unix-socket",
            sock,
            "http://localhost/api/v1/endpoints/",
        ]));
        let Ok(Value::Array(eps)) = serde_json::from_slice::<Value>(&out.stdout) else {
            return Vec::new();
        };
        let known: Vec<&str> = eps
            .iter()
            .filter_map(|e| e["endpointID"].as_str())
            .collect();
        let mut c = Command::new("ovs-vsctl");
        c.arg(format!("--db=unix:{}", self.db_sock().display()))
            .args([
                "--format=json",
                "--columns=name,external_ids",
                "list",
                "Port",
            ]);
        let out = run(&mut c);
        let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
            return Vec::new();
        };
        // Rows: [name, ["map", [[key, value], ...]]].
        v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| {
                let name = row[0].as_str()?;
                let id = row[1][1]
                    .as_array()?
                    .iter()
                    .find(|kv| kv[0] == "contiv-endpoint-id")?[1]
                    .as_str()?;
                (!known.contains(&id)).then(|| name.to_string())
            })
            .collect()
    }

    /// Ports on the integration bridge (the bridge's own port left out), once the agent has
    /// deleted those of removed endpoints (see [`Host::links`]).
    pub fn ovs_ports(&self) -> Vec<String> {
        self.links();
        self.ovs_ports_now()
    }

    /// Ports on the integration bridge now, removed endpoints' included.
    pub fn ovs_ports_now(&self) -> Vec<String> {
        let mut c = Command::new("ovs-vsctl");
        c.arg(format!("--db=unix:{}", self.db_sock().display()))
            .args(["list-ports", &self.bridge]);
        let out = run(&mut c);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `ovs-ofctl <command>` on the integration bridge: its output.
    fn ofctl(&self, command: &str) -> String {
        let mut c = Command::new("ovs-ofctl");
        c.args([
            "-O",
            "OpenFlow14",
            command,
            &format!("unix:{}/{}.mgmt", self.dir.display(), self.bridge),
        ]);
        String::from_utf8_lossy(&run(&mut c).stdout).to_string()
    }

    pub fn flows(&self) -> String {
        self.ofctl("dump-flows")
    }

    /// The ids of the OpenFlow meters on the integration bridge.
    pub fn meters(&self) -> Vec<u32> {
        self.ofctl("dump-meters")
            .lines()
            .filter_map(|l| l.strip_prefix("meter="))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// The network config a runtime would pass to the plugin.
    pub fn conf(&self, version: &str, extra: Value) -> Value {
        let mut c = json!({"cniVersion": version, "name": "contiv", "type": "contiv", "agentSocket": self.cni_socket});
        for (k, v) in extra.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        c
    }

    /// Runs the real `contiv` plugin like a runtime does.
    pub fn cni(
        &self,
        command: &str,
        container: &str,
        netns: &str,
        ifname: &str,
        conf: &Value,
    ) -> CniOutput {
        cni_call(command, container, netns, ifname, conf)
    }

    /// Creates a pod namespace and ADDs it with `conf`.
    pub fn pod(&self, conf: &Value) -> Pod {
        let p = Pod::new();
        let out = self.cni("ADD", &p.container_id, &p.netns_path(), "eth0", conf);
        assert!(
            out.ok(),
            "ADD of {} failed: {} (agent log:\n{})",
            p.container_id,
            out.stdout,
            self.agent_log()
        );
        let mut p = p;
        p.ip = out.json["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        p.result = out.json;
        p
    }
}

fn kill_pidfile(p: &Path) {
    if let Ok(pid) = std::fs::read_to_string(p) {
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        kill_child(&mut self.agent);
        kill_pidfile(&self.dir.join("vswitchd.pid"));
        kill_pidfile(&self.dir.join("ovsdb.pid"));
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.pool_ns()])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the plugin printed and how it exited.
pub struct CniOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
    pub elapsed: Duration,
}

impl CniOutput {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    /// The CNI error code of a failure.
    pub fn error_code(&self) -> u64 {
        self.json["code"].as_u64().unwrap_or(0)
    }
    pub fn msg(&self) -> String {
        format!(
            "{} {}",
            self.json["msg"].as_str().unwrap_or_default(),
            self.json["details"].as_str().unwrap_or_default()
        )
    }
}

/// Runs the `contiv` plugin with the CNI environment and `conf` on stdin.
pub fn cni_call(
    command: &str,
    container: &str,
    netns: &str,
    ifname: &str,
    conf: &Value,
) -> CniOutput {
    cni_call_with(
        bin("contiv").as_path(),
        command,
        container,
        netns,
        ifname,
        conf,
        &[],
    )
}

pub fn cni_call_with(
    plugin: &Path,
    command: &str,
    container: &str,
    netns: &str,
    ifname: &str,
    conf: &Value,
    env: &[(&str, &str)],
) -> CniOutput {
    use std::io::Write;
    let start = Instant::now();
    let mut c = Command::new(plugin);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/usr/lib/cni:/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut ch = c.spawn().expect("spawn the CNI plugin");
    // A plugin that refuses its environment exits before reading stdin: a broken pipe then is
    // expected, and the exit status tells the story.
    let _ = ch
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes());
    let out = ch.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    CniOutput {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        elapsed: start.elapsed(),
    }
}

// ------------------------------------------------------------------------ pods

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
        let mut server = Command::new("ip")
            .args([
                "netns", "exec", &to.netns, "iperf3", "-s", "-1", "-p", "5201",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 server");
        let start = Instant::now();
        let out = loop {
            let out = self.exec(&[
                "iperf3",
                "-c",
                &to.ip,
                "-p",
                "5201",
                "-t",
                &seconds.to_string(),
                "-J",
            ]);
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if v["end"]["sum_received"]["bits_per_second"].is_number() {
                break v;
            }
            // The server may not listen yet.
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "iperf3 {} -> {} failed: {}",
                self.ip,
                to.ip,
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

/// Runs `f` on a fresh thread inside the namespace at `path`.
pub fn in_netns<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = std::fs::File::open(path).unwrap_or_else(|e| panic!("open netns {path}: {e}"));
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
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
