//! A simulated host: a network namespace with its own ovsdb-server, ovs-vswitchd and netplugin.

use crate::{
    CniOutput, Netmaster, PREFIX, Pod, Underlay, bin, cni_call, in_netns, kill_child, kill_pidfile,
    must, run, unique, wait_for,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// netplugin's `manager::GRAVEYARD_GROUP` (netplugin is not a dependency of this library; a
/// test checks the two agree): the link group of veths a DEL queued for deletion.
pub const GRAVEYARD_GROUP: u32 = 0x00636e76;

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
    /// Environment variables for the agent (as kubelet gives a pod KUBERNETES_SERVICE_HOST).
    agent_env: Vec<(String, String)>,
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

    /// A file `rel` under the directory of a netmaster this host's agent uses, found from its
    /// unix socket (the harness's netmaster keeps its socket beside its data dir), if it exists.
    fn beside_master(&self, rel: &str) -> Option<PathBuf> {
        self.master_url
            .split(',')
            .filter_map(|u| u.trim().strip_prefix("unix://"))
            .filter_map(|sock| std::path::Path::new(sock).parent())
            .map(|d| d.join(rel))
            .find(|p| p.exists())
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
            agent_env: Vec::new(),
            vtep: String::new(),
        };
        h.exec(&["ip", "link", "set", "lo", "up"]);
        h
    }

    /// Sets an environment variable for the agent's next start.
    pub fn set_agent_env(&mut self, key: &str, value: &str) {
        self.agent_env.retain(|(k, _)| k != key);
        self.agent_env.push((key.to_string(), value.to_string()));
    }

    /// Starts OVS and the agent (with `agent_args`) on a host made by [`Host::netns_only`].
    pub fn boot(&mut self, agent_args: &[&str]) {
        self.agent_args = agent_args.iter().map(|a| a.to_string()).collect();
        // CONTIV_E2E_PORT_POOL=N runs every agent with a port pool (to try a suite with it).
        // A test that asks for trunks keeps them: the agent refuses both at once.
        if let Ok(n) = std::env::var("CONTIV_E2E_PORT_POOL")
            && !self.agent_args.iter().any(|a| a.starts_with("--port-pool"))
            && !self.agent_args.iter().any(|a| a == "--trunks")
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
        // A netmaster with --auth on wrote its join token beside its socket (data/join-token,
        // see Netmaster::join_token_file): the agent joins with it.
        if let Some(jt) = self.beside_master("data/join-token")
            && !self
                .agent_args
                .iter()
                .any(|a| a.starts_with("--join-token-file"))
        {
            self.agent_args
                .push(format!("--join-token-file={}", jt.display()));
        }
        // A netmaster with TLS on (the default) wrote its cluster CA there too (data/tls/ca.pem):
        // the agent trusts it for https URLs, as agents are set up (the suites' agents reach
        // netmaster on its unix socket, which is plain HTTP).
        if let Some(ca) = self.beside_master("data/tls/ca.pem")
            && !self
                .agent_args
                .iter()
                .any(|a| a.starts_with("--netmaster-cacert"))
        {
            self.agent_args
                .push(format!("--netmaster-cacert={}", ca.display()));
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

    /// The name (under /run/netns) of the agent's router namespace of `tenant` (netplugin's
    /// `names::router_netns` for a plain tenant name).
    pub fn router_netns(&self, tenant: &str) -> String {
        format!("contiv-rt-{}-{tenant}", self.bridge)
    }

    /// The private address the agent gave the endpoint with address `ip` in `tenant` here:
    /// the tenant router's 1:1 mapping (made just after ADD; waited for up to `timeout`).
    pub fn private_address(&self, tenant: &str, ip: &str, timeout: std::time::Duration) -> String {
        let ns = self.router_netns(tenant);
        let mut found = String::new();
        crate::wait_for("the pod's private address", timeout, || {
            let out = run(Command::new("ip").args([
                "netns",
                "exec",
                &ns,
                "iptables",
                "-w",
                "-t",
                "nat",
                "-S",
                "PREROUTING",
            ]));
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let rule = text
                .lines()
                .find(|l| l.ends_with(&format!("--to-destination {ip}")));
            if let Some(r) = rule {
                let d = r.split_whitespace().skip_while(|w| *w != "-d").nth(1);
                found = d.unwrap_or_default().trim_end_matches("/32").to_string();
            }
            !found.is_empty()
        });
        found
    }

    /// The agent's tenant router namespaces now.
    pub fn router_namespaces(&self) -> Vec<String> {
        let prefix = format!("contiv-rt-{}-", self.bridge);
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
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
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The released or unfinished pods' interfaces the agent has yet to delete (with
    /// `--trunks`): the files in its state directory's `leftovers/`.
    pub fn trunk_leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("state").join("leftovers"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
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
        // In the host's network namespace but this process's mount namespace (as the agent
        // runs on a real host): the namespaces it makes (tenant routers) outlive it.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("--")
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
            .envs(self.agent_env.iter().map(|(k, v)| (k, v)))
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

    /// Runs netplugin once in the host's namespace with the agent's OVS and bridge settings
    /// and `args` (a one-shot command such as `--uninstall-northsouth`), to its end.
    pub fn netplugin_once(&self, args: &[&str]) -> Output {
        run(Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("--")
            .arg(bin("netplugin"))
            .args(["--bridge", &self.bridge, "--datapath", "userspace"])
            .arg("--ovsdb-sock")
            .arg(self.db_sock())
            .arg("--ovs-rundir")
            .arg(&self.dir)
            .args(args))
    }

    /// Kills the agent (SIGKILL, no cleanup), as a crash would.
    pub fn kill_agent(&mut self) {
        kill_child(&mut self.agent);
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("netplugin.log")).unwrap_or_default()
    }

    /// The agent's metrics (started with `--metrics-listen 127.0.0.1:0`: the address is the
    /// one its latest start logged), scraped over HTTP inside the host's namespace and parsed
    /// as OpenMetrics by the Prometheus client's parser (a parse failure panics).
    pub fn metrics(&self) -> model::metrics::testing::Scrape {
        let log = self.agent_log();
        let url = model::metrics::testing::logged_url(&log)
            .unwrap_or_else(|| panic!("the agent logged no metrics address:\n{log}"));
        model::metrics::testing::scrape_with_curl(&url, |args| self.exec(args))
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
    /// has its port and every agent port its veth. North-south links are left out.
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
                return all.into_iter().filter(|n| !is_north_south(n)).collect();
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
        link_names_in(&self.ns)
    }

    /// The host's links now (the reaper's queue included; see [`Host::links`]).
    pub fn host_links(&self) -> Vec<String> {
        self.link_names()
    }

    /// The links in the side namespace where pooled ports and trunks wait (none without one).
    pub fn side_links(&self) -> Vec<String> {
        link_names_in(&self.pool_ns())
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
        let mut curl = Command::new("curl");
        curl.args(["-sf", "--unix-socket", sock]);
        // Unless netmaster runs with --auth off, it answers only a logged-in caller.
        if let Some(t) = crate::netmaster::Netmaster::admin_token_of_socket(Path::new(sock)) {
            curl.args(["-H", &format!("x-auth-token: {t}")]);
        }
        let out = run(curl.arg("http://localhost/api/v1/endpoints/"));
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
    /// deleted those of removed endpoints (see [`Host::links`]); router ports left out.
    pub fn ovs_ports(&self) -> Vec<String> {
        self.links();
        self.ovs_ports_now()
            .into_iter()
            .filter(|n| !is_north_south(n))
            .collect()
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

/// Whether `name` is one of the agent's north-south links (a router port `vr...` or a
/// transit `vu...`): [`Host::links`] and [`Host::ovs_ports`] leave them out, since they follow
/// a host's endpoints asynchronously (made just after the first, removed just after the last);
/// tests/north_south.rs checks them.
fn is_north_south(name: &str) -> bool {
    name.len() == 14 && (name.starts_with("vr") || name.starts_with("vu"))
}

/// The names of the links in network namespace `ns` (none if it does not exist).
pub(crate) fn link_names_in(ns: &str) -> Vec<String> {
    let out = run(Command::new("ip").args(["-n", ns, "-o", "link", "show"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

impl Drop for Host {
    fn drop(&mut self) {
        kill_child(&mut self.agent);
        // A failed test's agent log outlives the test's directory (what the agent did before a
        // failure is rarely all in the assertion's message).
        if std::thread::panicking() {
            let keep = std::env::temp_dir().join("contiv-e2e-failed");
            let name = self
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let to = keep.join(format!("{name}.netplugin.log"));
            if std::fs::create_dir_all(&keep).is_ok()
                && std::fs::copy(self.dir.join("netplugin.log"), &to).is_ok()
            {
                eprintln!("{}: agent log kept in {}", self.name, to.display());
            }
        }
        kill_pidfile(&self.dir.join("vswitchd.pid"));
        kill_pidfile(&self.dir.join("ovsdb.pid"));
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.pool_ns()])
            .stderr(Stdio::null())
            .status();
        for r in self.router_namespaces() {
            let _ = Command::new("ip").args(["netns", "del", &r]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
