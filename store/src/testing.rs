//! Real etcd clusters on loopback for tests and benchmarks (`/usr/bin/etcd`, Debian's
//! etcd-server): members with their own directory, killed and removed on drop.
//!
//! No port is chosen beforehand (a port found free can be taken by another test before etcd
//! binds it, and a readiness probe would then reach that test's server): members talk to each
//! other over unix sockets in the cluster's directory, and serve clients on a loopback port the
//! kernel picks (port 0), read back from the member's log. A restarted member binds the port it
//! had, so that clients keep their endpoints.

use crate::{EtcdOptions, EtcdStore, Store, TlsOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

pub const ETCD: &str = "/usr/bin/etcd";
/// The bound on waiting for etcd to start, elect a leader, or recover.
pub const READY: Duration = Duration::from_secs(20);

/// Data directories are named after the test process, so that the leftovers of a run that was
/// killed (its etcd processes and directories) can be told apart and cleaned up by a later one.
const DIR_TAG: &str = "store-etcd-test-";

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// One etcd member: its directory, its client URL and, while it runs, its process.
pub struct Member {
    pub name: String,
    /// `http(s)://127.0.0.1:<port>`, known once the member first served; port 0 until then.
    pub client_url: String,
    /// Every flag but `--listen-client-urls`, which [`Member::spawn`] adds from `client_url`.
    pub args: Vec<String>,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// The cluster's directory: the working directory, where the unix sockets are.
    pub root: PathBuf,
}

impl Member {
    /// The member's unix client socket, as etcd names it (`host:port`, relative to `root`).
    fn client_socket(&self) -> String {
        format!("{}.client:1", self.name)
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        // etcd removes a stale peer socket before binding, not a stale client one.
        let _ = std::fs::remove_file(self.root.join(self.client_socket()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let scheme = if self.client_url.starts_with("https") {
            "unixs"
        } else {
            "unix"
        };
        let listen = format!("{},{scheme}://{}", self.client_url, self.client_socket());
        let child = Command::new(ETCD)
            .args(&self.args)
            .args(["--listen-client-urls", &listen])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {ETCD}: {e} (is etcd-server installed?)"));
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the member started by [`Member::spawn`] serves clients (which takes a
    /// quorum) and records the loopback port it bound in `client_url`. `from` is the log's
    /// length before the spawn. Panics if etcd exits first (a restarted member whose port was
    /// taken meanwhile, for one).
    async fn wait_serving(&mut self, from: u64) {
        let deadline = Instant::now() + READY;
        loop {
            let log = std::fs::read(&self.log).unwrap_or_default();
            let new = String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default());
            // {"msg":"serving client traffic insecurely; ...","address":"127.0.0.1:41373"}
            let bound = new
                .lines()
                .filter(|l| l.contains("serving client traffic"))
                .find_map(|l| l.split("\"address\":\"127.0.0.1:").nth(1))
                .and_then(|rest| rest.split('"').next())
                .and_then(|port| port.parse::<u16>().ok());
            if let Some(port) = bound {
                let (scheme, _) = self.client_url.split_once("://").unwrap();
                self.client_url = format!("{scheme}://127.0.0.1:{port}");
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "etcd {} exited ({status}) before serving; see {}",
                    self.name,
                    self.log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "etcd {} did not serve clients within {READY:?}; see {}",
                self.name,
                self.log.display()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// etcd members on loopback with their own directory; killed and removed on drop, also when a
/// test panics.
pub struct Cluster {
    pub root: PathBuf,
    pub members: Vec<Member>,
    pub tls: Option<TlsOptions>,
}

/// Certificates for a TLS cluster: the server's, and what clients are given.
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Cluster {
    pub async fn start(size: usize) -> Self {
        Self::start_with(size, None, None).await
    }

    pub async fn start_with(
        size: usize,
        server: Option<&ServerTls>,
        tls: Option<TlsOptions>,
    ) -> Self {
        clean_up_after_dead_runs();
        let root = scratch_base().join(format!(
            "{DIR_TAG}{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&root).unwrap();
        let scheme = if server.is_some() { "https" } else { "http" };
        // Peers on unix sockets in `root` (etcd's cwd): `unix://m0.peer:1` is the file
        // `m0.peer:1` (etcd wants host:port even there).
        let peer = |i: usize| format!("unix://m{i}.peer:1");
        let initial: Vec<String> = (0..size).map(|i| format!("m{i}={}", peer(i))).collect();
        let members = (0..size)
            .map(|i| {
                let name = format!("m{i}");
                let unix_scheme = if server.is_some() { "unixs" } else { "unix" };
                let mut args: Vec<String> = [
                    "--name",
                    &name,
                    "--data-dir",
                    &root.join(&name).display().to_string(),
                    // The loopback port is not known beforehand: the client socket is what a
                    // member can advertise.
                    "--advertise-client-urls",
                    &format!("{unix_scheme}://{name}.client:1"),
                    "--listen-peer-urls",
                    &peer(i),
                    "--initial-advertise-peer-urls",
                    &peer(i),
                    "--initial-cluster",
                    &initial.join(","),
                    "--initial-cluster-token",
                    &root.file_name().unwrap().to_string_lossy(),
                    "--initial-cluster-state",
                    "new",
                    // The gateway dials the listen address as given (port 0) and logs each
                    // failure; clients here speak gRPC.
                    "--enable-grpc-gateway=false",
                    // Short enough for quick elections, long enough for a busy 2-core machine.
                    "--heartbeat-interval",
                    "25",
                    "--election-timeout",
                    "250",
                    "--logger",
                    "zap",
                    "--log-outputs",
                    "stderr",
                ]
                .map(String::from)
                .to_vec();
                if let Some(s) = server {
                    for (flag, path) in [
                        ("--cert-file", &s.cert),
                        ("--key-file", &s.key),
                        ("--trusted-ca-file", &s.ca),
                    ] {
                        args.push(flag.into());
                        args.push(path.display().to_string());
                    }
                    args.push("--client-cert-auth".into());
                }
                Member {
                    log: root.join(format!("{name}.log")),
                    name,
                    client_url: format!("{scheme}://127.0.0.1:0"),
                    args,
                    child: None,
                    root: root.clone(),
                }
            })
            .collect();
        let mut cluster = Cluster { root, members, tls };
        // All first, then wait: a member serves clients once a quorum has formed.
        for m in &mut cluster.members {
            m.spawn();
        }
        for m in &mut cluster.members {
            m.wait_serving(0).await;
        }
        cluster.wait_ready().await;
        cluster
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn options(&self) -> EtcdOptions {
        let mut opts = EtcdOptions::new(self.endpoints());
        opts.tls = self.tls.clone();
        opts.dial_timeout = Duration::from_secs(2);
        opts.request_timeout = Duration::from_secs(3);
        opts
    }

    pub async fn connect(&self) -> EtcdStore {
        EtcdStore::connect(self.options()).await.unwrap()
    }

    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again, on the port it had.
    pub async fn restart(&mut self, i: usize) {
        let m = &mut self.members[i];
        let from = std::fs::metadata(&m.log).map(|md| md.len()).unwrap_or(0);
        m.spawn();
        m.wait_serving(from).await;
        self.wait_ready().await;
    }

    /// Waits until every running member serves linearizable reads, which needs a leader.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + READY;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let mut opts = self.options();
            opts.endpoints = vec![m.client_url.clone()];
            opts.dial_timeout = Duration::from_millis(500);
            opts.request_timeout = Duration::from_millis(500);
            loop {
                let ready = match EtcdStore::connect(opts.clone()).await {
                    Ok(s) => s.revision().await.is_ok(),
                    Err(_) => false,
                };
                if ready {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd {} not ready within {READY:?}; see {}",
                    m.name,
                    m.log.display()
                );
                sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The index of the member that leads (plain-text clusters only).
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + READY;
        loop {
            let mut ids = Vec::new();
            let mut leader = None;
            for m in &self.members {
                let status = async {
                    let mut c = etcd_client::Client::connect([&m.client_url], None).await?;
                    c.status().await
                };
                match timeout(Duration::from_secs(1), status).await {
                    Ok(Ok(s)) => {
                        ids.push(s.header().map(|h| h.member_id()));
                        if s.leader() != 0 {
                            leader = Some(s.leader());
                        }
                    }
                    _ => ids.push(None),
                }
            }
            if let Some(i) = leader.and_then(|l| ids.iter().position(|id| *id == Some(l))) {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader within {READY:?}");
            sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
        if std::thread::panicking() {
            eprintln!("etcd logs kept in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// tmpfs when there is one: etcd fsyncs every write, which is free there.
pub fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let probe = shm.join(format!("{DIR_TAG}probe-{}", std::process::id()));
    if std::fs::create_dir_all(&probe).is_ok() {
        let _ = std::fs::remove_dir(&probe);
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Ports nothing listens on: `n` loopback ports, each bound by a socket that never listens,
/// held for as long as the returned value lives (no one else can take them meanwhile).
/// Connecting to one is refused at once. For tests of unreachable endpoints.
pub struct RefusedPorts {
    pub ports: Vec<u16>,
    _sockets: Vec<tokio::net::TcpSocket>,
}

impl RefusedPorts {
    pub fn new(n: usize) -> Self {
        let sockets: Vec<_> = (0..n)
            .map(|_| {
                let s = tokio::net::TcpSocket::new_v4().expect("make a TCP socket");
                s.bind(([127, 0, 0, 1], 0).into())
                    .expect("bind a loopback port");
                s
            })
            .collect();
        RefusedPorts {
            ports: sockets
                .iter()
                .map(|s| s.local_addr().unwrap().port())
                .collect(),
            _sockets: sockets,
        }
    }
}

/// Kills the etcd processes and removes the directories of earlier test runs that died
/// without cleaning up (their process id no longer exists).
fn clean_up_after_dead_runs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let alive = |pid: &str| Path::new("/proc").join(pid).exists();
        let dead_run = |name: &str| {
            name.strip_prefix(DIR_TAG)
                .and_then(|rest| rest.split('-').next())
                .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()) && !pid.is_empty())
                .is_some_and(|pid| !alive(pid))
        };
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
                    continue;
                };
                let args: Vec<String> = cmdline
                    .split(|&b| b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let Some(dir) = args
                    .iter()
                    .position(|a| a == "--data-dir")
                    .and_then(|i| args.get(i + 1))
                else {
                    continue;
                };
                let stray = Path::new(dir)
                    .parent()
                    .and_then(|root| root.file_name())
                    .is_some_and(|name| dead_run(&name.to_string_lossy()));
                if stray && args.first().is_some_and(|a| a.ends_with("etcd")) {
                    let pid = p.file_name().to_string_lossy().into_owned();
                    eprintln!("killing etcd {pid} left by a dead test run ({dir})");
                    let _ = Command::new("kill").args(["-9", &pid]).status();
                }
            }
        }
        for base in [PathBuf::from("/dev/shm"), std::env::temp_dir()] {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            for e in entries.flatten() {
                if dead_run(&e.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    });
}
