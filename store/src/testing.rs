//! Real etcd clusters on loopback for tests and benchmarks (`/usr/bin/etcd`, Debian's
//! etcd-server): members with their own ports and directory, killed and removed on drop.

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

/// One etcd member: its ports, directory and, while it runs, its process.
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Member {
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(ETCD)
            .args(&self.args)
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
}

/// etcd members on loopback with their own ports and directory; killed and removed on drop,
/// also when a test panics.
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
        let ports = free_ports(2 * size);
        let scheme = if server.is_some() { "https" } else { "http" };
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial: Vec<String> = (0..size).map(|i| format!("m{i}={}", peer(i))).collect();
        let members = (0..size)
            .map(|i| {
                let name = format!("m{i}");
                let client_url = format!("{scheme}://127.0.0.1:{}", ports[2 * i]);
                let mut args: Vec<String> = [
                    "--name",
                    &name,
                    "--data-dir",
                    &root.join(&name).display().to_string(),
                    "--listen-client-urls",
                    &client_url,
                    "--advertise-client-urls",
                    &client_url,
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
                    client_url,
                    args,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster { root, members, tls };
        for m in &mut cluster.members {
            m.spawn();
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

    pub async fn restart(&mut self, i: usize) {
        self.members[i].spawn();
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

pub fn free_ports(n: usize) -> Vec<u16> {
    // Held together, so that they are distinct; released just before etcd binds them.
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
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
