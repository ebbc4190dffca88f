//! A private dockerd for tests and benchmarks: its own data root, exec root, socket and pidfile
//! under `/tmp/cte-docker/<pid>-<n>`, started inside a simulated host's network namespace with
//! `nsenter --net` (`ip netns exec` would remount /sys and hide the cgroup hierarchy dockerd needs),
//! with the busybox test image imported. Dropping it removes its containers, processes, mounts and
//! files; state of crashed runs is removed at the next start.

use crate::{Host, kill_processes_naming, pid_alive, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const STATE_ROOT: &str = "/tmp/cte-docker";

/// A host `name` on `cluster`'s underlay whose agent also serves Docker (a plugin socket of
/// its own), with a dockerd of its own: (the plugin, the host, dockerd). Declare them in this
/// order: dockerd goes first on drop, then the host, then the socket.
pub fn docker_host(cluster: &crate::Cluster, name: &str) -> (PluginSocket, Host, Dockerd) {
    let plugin = PluginSocket::new();
    let args = cluster.master.docker_agent_args(&plugin.path);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let h = Host::start_on_masters_with(&cluster.master.url(), &cluster.underlay, name, &args);
    plugin.wait();
    let docker = Dockerd::start(&h);
    (plugin, h, docker)
}
pub const PLUGIN_DIR: &str = "/run/docker/plugins";

/// A Docker plugin socket unique to this run, for an agent to serve (`--docker-socket`): its
/// basename is the driver's name. Removed on drop: agents die by SIGKILL and leave it behind.
pub struct PluginSocket {
    /// The plugin (and driver) name.
    pub name: String,
    pub path: String,
}

impl Default for PluginSocket {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginSocket {
    pub fn new() -> Self {
        let name = crate::unique("d");
        let path = format!("{PLUGIN_DIR}/{name}.sock");
        PluginSocket { name, path }
    }

    /// Waits until the agent serves it.
    pub fn wait(&self) {
        wait_for("the Docker plugin socket", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&self.path).is_ok()
        });
    }
}

impl Drop for PluginSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
pub const IMAGE: &str = "ctebusybox:1";

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

/// Removes a dockerd state directory: its processes (and those of its containers and plugins,
/// whose root is inside it), its mounts, its files.
pub fn remove_state(dir: &Path) {
    kill_processes_naming(dir);
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if std::fs::read_link(e.path().join("root")).is_ok_and(|r| r.starts_with(dir)) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
    for m in mounts_under(dir) {
        let _ = Command::new("umount").args(["-l", &m]).status();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// State directories and plugin sockets of runs whose test process is gone.
pub fn cleanup_docker_leftovers() {
    let owner = |name: &str| -> Option<u32> { name.split('-').next()?.parse().ok() };
    if let Ok(rd) = std::fs::read_dir(STATE_ROOT) {
        for e in rd.flatten() {
            if let Some(pid) = owner(&e.file_name().to_string_lossy())
                && !pid_alive(pid)
            {
                remove_state(&e.path());
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(PLUGIN_DIR) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let pid = name
                .strip_prefix(crate::PREFIX)
                .and_then(|r| r.split('x').next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !pid_alive(pid)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// A private dockerd inside a host's network namespace.
pub struct Dockerd {
    pub dir: PathBuf,
    netns: String,
    child: Option<std::process::Child>,
    /// Containers keep running while dockerd restarts (swarm mode refuses it).
    live_restore: bool,
}

impl Dockerd {
    pub fn start(host: &Host) -> Dockerd {
        Self::start_with(host, true)
    }

    pub fn start_with(host: &Host, live_restore: bool) -> Dockerd {
        cleanup_docker_leftovers();
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "{STATE_ROOT}/{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        remove_state(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut d = Dockerd {
            dir,
            netns: format!("/var/run/netns/{}", host.ns),
            child: None,
            live_restore,
        };
        d.spawn();
        d.import_image();
        d
    }

    fn spawn(&mut self) {
        let d = &self.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns))
            .arg("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--ip-forward=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--storage-driver=vfs",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
            ])
            .args(self.live_restore.then_some("--live-restore"))
            // If a system containerd runs (/run/containerd/containerd.sock), dockerd uses it
            // instead of its own: keep each test's containers and plugins apart there.
            .arg("--containerd-namespace")
            .arg(format!("cte{}", self.tag()))
            .arg("--containerd-plugins-namespace")
            .arg(format!("cte{}p", self.tag()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        match child {
            Ok(ch) => self.child = Some(ch),
            Err(e) => panic!("spawn dockerd: {e} (install docker.io with scripts/setup.sh)"),
        }
        wait_for("dockerd to answer", Duration::from_secs(60), || {
            self.cmd()
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        });
    }

    /// `<pid>-<n>`: this dockerd's unique part.
    fn tag(&self) -> String {
        self.dir
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("docker.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Stops dockerd (SIGTERM, as systemd would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        if let Some(mut ch) = self.child.take() {
            // nsenter execs dockerd: the child is dockerd itself.
            let exited = (0..3000).any(|_| {
                std::thread::sleep(Duration::from_millis(20));
                matches!(ch.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = ch.kill();
                let _ = ch.wait();
            }
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run docker {args:?}: {e}"))
    }

    /// Runs docker; panics with its stderr and the logs when it fails.
    /// `docker network create` of a Contiv network `name` in the default tenant (driver and
    /// IPAM of `plugin`) with `subnet` and `gateway`.
    pub fn contiv_network(
        &self,
        plugin: &PluginSocket,
        name: &str,
        subnet: &str,
        gateway: &str,
        host: &Host,
    ) {
        let d = &plugin.name;
        let network = format!("network={name}");
        self.ok(
            &[
                "network",
                "create",
                "-d",
                d,
                "--ipam-driver",
                d,
                "--subnet",
                subnet,
                "--gateway",
                gateway,
                "-o",
                &network,
                name,
            ],
            host,
        );
    }

    pub fn ok(&self, args: &[&str], host: &Host) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\n--- agent log (tail):\n{}\n--- dockerd log (tail):\n{}",
            text(&out.stderr),
            tail(&host.agent_log(), 40),
            tail(
                &std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default(),
                40
            )
        );
        text(&out.stdout)
    }

    fn import_image(&self) {
        let tarball = crate::busybox_image_tar(
            &self.dir.join("image"),
            &[
                "sh", "ip", "ping", "nc", "sleep", "httpd", "cat", "echo", "mkdir", "printf",
            ],
        );
        let out = self
            .cmd()
            .arg("import")
            .arg(&tarball)
            .arg(IMAGE)
            .output()
            .unwrap();
        assert!(out.status.success(), "docker import: {}", text(&out.stderr));
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.run(&["ps", "-aq"]);
        for id in text(&ids.stdout).split_whitespace() {
            let _ = self.run(&["rm", "-f", id]);
        }
        self.stop();
        remove_state(&self.dir);
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
