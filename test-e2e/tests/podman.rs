//! A real container runtime: podman 4.3 with its CNI backend runs two containers on a Contiv
//! network through the shipped network config (`conf/cni/10-contiv.conflist`) and the real
//! `contiv` plugin, talking to a real agent (in its own host namespace with its own OVS) and a
//! real netmaster. The agent attaches pods as the shipped systemd unit has it (network trunks).
//! The containers ping each other and exchange TCP data; `podman rm` releases everything
//! (netmaster endpoints, the agent's records, then the idle trunk, podman's network namespaces).
//!
//! Podman 4.3's libcni cannot read results of cniVersion 1.1.0, the shipped config's version:
//! the test shows that failure leaks nothing, then runs the containers with the config at 1.0.0
//! (what conf/README.md tells users of such runtimes to do).
//!
//! Hermetic: podman gets a private `containers.conf` (through `CONTAINERS_CONF`), a private
//! `storage.conf` (`CONTAINERS_STORAGE_CONF`), and private root, runroot, tmp, lock, network
//! config and plugin directories, all under `/tmp/cte-podman/<pid>-<n>`. Nothing in `/etc` is
//! read for networks or written. What podman still puts outside: the network namespaces it makes
//! (`/run/netns/netns-*`, removed by `podman rm`, checked here) and the shared image blob-info
//! cache `/var/lib/containers/cache` that every root podman uses.
//!
//! Needs root, podman and runc (scripts/setup.sh installs them). Fails, never skips, when podman
//! cannot run.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use test_e2e::{Host, Netmaster, bin, wait_for};

/// Where every podman state directory of these tests lives. Not `/tmp/cte<pid>x...`: the
/// harness's leftover cleanup would try to delete those with mounts still inside.
const STATE_ROOT: &str = "/tmp/cte-podman";

/// Where podman 4.3's libcni caches attachments (not configurable through podman).
const LIBCNI_CACHE: &str = "/var/lib/cni/results";

/// The network config the project ships, installed by the test as a user would.
fn shipped_conflist() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/cni/10-contiv.conflist");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// Fails (does not skip) when podman or runc is missing.
fn require_podman() {
    for (tool, arg) in [("podman", "--version"), ("runc", "--version")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "`{tool} {arg}` does not run: this test needs podman (CNI backend) and runc; \
             install them with `sudo scripts/setup.sh`"
        );
    }
}

/// A private podman: its own configuration, storage, state and CNI directories.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// Makes the directories and configuration.
    fn new() -> Podman {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "{STATE_ROOT}/{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in [
            "root", "runroot", "tmp", "net.d", "cni-bin", "image", "runc",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let p = Podman { dir };
        let d = p.dir.display();
        // The plugin directory: the reference plugins as installed, plus `contiv`, as an
        // install into /usr/lib/cni would look.
        for e in std::fs::read_dir("/usr/lib/cni")
            .expect("read /usr/lib/cni (containernetworking-plugins)")
            .flatten()
        {
            std::os::unix::fs::symlink(e.path(), p.dir.join("cni-bin").join(e.file_name()))
                .unwrap();
        }
        std::os::unix::fs::symlink(bin("contiv"), p.dir.join("cni-bin/contiv")).unwrap();
        std::fs::write(
            p.dir.join("containers.conf"),
            format!(
                r#"[containers]
default_ulimits = []

[network]
network_backend = "cni"
cni_plugin_dirs = ["{d}/cni-bin"]
network_config_dir = "{d}/net.d"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "{d}/tmp"
lock_type = "file"
volume_path = "{d}/root/volumes"
"#
            ),
        )
        .unwrap();
        std::fs::write(
            p.dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n"
            ),
        )
        .unwrap();
        p
    }

    /// Installs a network config list, as a user would put it in /etc/cni/net.d.
    fn install_network(&self, conflist: &Value) {
        let mut list = serde_json::to_string_pretty(conflist).unwrap();
        list.push('\n');
        std::fs::write(self.dir.join("net.d/10-contiv.conflist"), list).unwrap();
    }

    /// `podman` with the private configuration and directories.
    fn cmd(&self) -> Command {
        let d = &self.dir;
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("TMPDIR", d.join("tmp"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("net.d"))
            // runc's state, which would be in /run/runc.
            .arg("--runtime-flag")
            .arg(format!("root={}", d.join("runc").display()))
            .args([
                "--storage-driver",
                "vfs",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        c.output()
            .unwrap_or_else(|e| panic!("run podman {args:?}: {e}"))
    }

    /// Runs podman and returns its stdout; panics with stderr when it fails.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}):\n{}\n{}",
            out.status,
            text(&out.stderr),
            text(&out.stdout)
        );
        text(&out.stdout)
    }

    /// Imports a busybox image, as ENVIRONMENT.md says (no registry here).
    fn import_busybox(&self, name: &str) {
        let tar = test_e2e::busybox_image_tar(
            &self.dir.join("image"),
            &[
                "sh", "ip", "ping", "sleep", "httpd", "wget", "md5sum", "seq", "mkdir", "timeout",
            ],
        );
        self.ok(&[
            "import",
            "--quiet",
            "--change",
            "CMD [\"/bin/sh\"]",
            tar.to_str().unwrap(),
            name,
        ]);
    }

    /// `podman inspect` of one container.
    fn inspect(&self, name: &str) -> Value {
        let out = self.ok(&["inspect", "--type", "container", name]);
        let v: Value = serde_json::from_str(&out).expect("podman inspect JSON");
        v[0].clone()
    }

    /// Runs a command in a container.
    fn exec(&self, container: &str, args: &[&str]) -> Output {
        let mut a = vec!["exec", container];
        a.extend_from_slice(args);
        self.run(&a)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers first (stops them, runs CNI DEL while the agent still lives, unmounts).
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
        remove_state_dir(&self.dir);
    }
}

/// Removes a podman state directory: what podman could not stop, and what is still mounted
/// under it, first.
fn remove_state_dir(dir: &Path) {
    let d = dir.display().to_string();
    // conmon and the container processes of a crashed run name the directory in their
    // command line (the runtime's bundle and the storage paths).
    test_e2e::kill_processes_naming(dir);
    // Mounts under the directory (containers' /dev/shm), deepest first.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut under: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&format!("{d}/")))
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
    // libcni's cache of a network's attachments, left when a DEL failed (the agent was gone).
    // Network names are unique per run.
    let name = std::fs::read_to_string(dir.join("net.d/10-contiv.conflist"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["name"].as_str().map(str::to_string));
    if let (Some(name), Ok(rd)) = (name, std::fs::read_dir(LIBCNI_CACHE)) {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}-"))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Removes the state of earlier runs whose test process is gone.
fn cleanup_leftovers() {
    let Ok(rd) = std::fs::read_dir(STATE_ROOT) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(owner) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let dir = e.path();
        if dir.join("containers.conf").exists() {
            let p = Podman { dir };
            // Drop: podman rm and rmi with that run's configuration, then the directory.
            drop(p);
        } else {
            remove_state_dir(&dir);
        }
    }
}

/// The container's address on `net`, as podman recorded it from the plugin's result.
fn podman_ip(c: &Value, net: &str) -> String {
    c["NetworkSettings"]["Networks"][net]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("no address on {net} in podman inspect: {c}"))
        .to_string()
}

/// Runs `f` until it returns Some, up to `timeout`; the last failure is in the panic.
fn retry<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= end => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Endpoints netmaster holds, as (container id, ip).
fn endpoints(m: &Netmaster) -> BTreeSet<(String, String)> {
    m.endpoints()
        .iter()
        .map(|e| {
            (
                e["containerID"].as_str().unwrap_or_default().to_string(),
                e["ipAddress"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn podman_runs_two_containers_on_a_contiv_network() {
    let started = Instant::now();
    require_podman();
    cleanup_leftovers();
    std::fs::create_dir_all(STATE_ROOT).unwrap();

    let m = Netmaster::start();
    // A tenant and network of their own, named in the installed config: the config's
    // `tenant` and `network` fields are what places the containers.
    m.network("blue", "pods", "10.77.0.0/24", "10.77.0.1");
    // The agent as the shipped systemd unit runs it: pods on network trunks (a trunk that
    // serves no pod goes after a second here, so that "nothing left" can be checked).
    let mut h = Host::netns_only(&m, "host1");
    h.boot(&["--trunks", "--trunk-idle=1"]);
    let links_before: BTreeSet<String> = h.links().into_iter().collect();

    // The shipped conflist, installed with this host's agent socket and a unique name.
    let net = test_e2e::unique("net");
    let mut conflist = shipped_conflist();
    assert_eq!(conflist["cniVersion"], "1.1.0");
    conflist["name"] = json!(net);
    let plugin = &mut conflist["plugins"][0];
    assert_eq!(plugin["type"], "contiv");
    plugin["tenant"] = json!("blue");
    plugin["network"] = json!("pods");
    plugin["agentSocket"] = json!(h.cni_socket);
    let pm = Podman::new();
    let cni_log = pm.dir.join("cni.log");
    conflist["plugins"][0]["logFile"] = json!(cni_log);
    pm.install_network(&conflist);

    // podman sees the network, and takes it from our directory, not /etc/cni/net.d.
    let nets = pm.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(
        nets.lines().any(|l| l == format!("{net} contiv")),
        "podman does not list the contiv network {net}:\n{nets}"
    );

    let image = "localhost/ctebox:latest";
    pm.import_busybox(image);
    let run = |name: &str| {
        pm.run(&[
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            &net,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            image,
            "sleep",
            "3600",
        ])
    };

    // The config as shipped says cniVersion 1.1.0. Podman 4.3 links libcni 1.1, which cannot
    // parse a 1.1.0 result (libcni reads 1.1.0 results from its v1.2 on): the ADD fails in
    // podman after the plugin succeeded. Podman must then undo it (CNI DEL) and nothing may
    // stay behind; the network is then installed with cniVersion 1.0.0, as conf/README.md
    // tells users of such runtimes to do. A podman whose libcni reads 1.1.0 uses it as shipped.
    let probe = test_e2e::unique("c0");
    let out = run(&probe);
    if out.status.success() {
        pm.ok(&["rm", "--force", "--time", "0", &probe]);
    } else {
        let err = text(&out.stderr);
        assert!(
            err.contains(r#"unsupported CNI result version "1.1.0""#),
            "podman failed with the shipped 1.1.0 config for another reason than its \
             libcni's result versions:\n{err}"
        );
        // The plugin itself did its job (ADD ok) and podman undid it at once (DEL ok),
        // before `podman run` returned.
        let id = pm.ok(&[
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.Id}}",
            &probe,
        ]);
        let log = std::fs::read_to_string(&cni_log).unwrap_or_default();
        for cmd in ["ADD", "DEL"] {
            assert!(
                log.lines().any(|l| l.contains(&format!("cmd={cmd} "))
                    && l.contains(&format!("container={id} "))
                    && l.contains("result=ok")),
                "the plugin's log lacks a successful {cmd} of the probe {id}:\n{log}"
            );
        }
    }
    wait_for(
        "nothing left of the probe container's attachment (endpoint, trunk port and link)",
        Duration::from_secs(10),
        || {
            m.endpoints().is_empty()
                && h.ovs_ports().is_empty()
                && h.links().into_iter().collect::<BTreeSet<_>>() == links_before
        },
    );
    if !out.status.success() {
        pm.ok(&["rm", "--force", "--time", "0", &probe]);
        conflist["cniVersion"] = json!("1.0.0");
        pm.install_network(&conflist);
    }
    let cni_version = conflist["cniVersion"].as_str().unwrap().to_string();

    // Two containers on the Contiv network.
    let names = [test_e2e::unique("c1"), test_e2e::unique("c2")];
    let mut ids = Vec::new();
    for name in &names {
        let out = run(name);
        assert!(
            out.status.success(),
            "podman run {name} on {net} (cniVersion {cni_version}) failed:\n{}\nagent log:\n{}",
            text(&out.stderr),
            h.agent_log()
        );
        ids.push(text(&out.stdout));
    }
    let setup_done = started.elapsed();

    // What podman recorded, what the container sees and what netmaster holds agree.
    let inspected: Vec<Value> = names.iter().map(|n| pm.inspect(n)).collect();
    let ips: Vec<String> = inspected.iter().map(|c| podman_ip(c, &net)).collect();
    let sandboxes: Vec<String> = inspected
        .iter()
        .map(|c| {
            c["NetworkSettings"]["SandboxKey"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for (i, name) in names.iter().enumerate() {
        assert!(
            ips[i].starts_with("10.77.0."),
            "{name} got {} (not from blue:pods 10.77.0.0/24)",
            ips[i]
        );
        assert!(
            sandboxes[i].starts_with("/run/netns/") && Path::new(&sandboxes[i]).exists(),
            "{name}: podman's network namespace {}",
            sandboxes[i]
        );
        let addr = pm.exec(name, &["ip", "-o", "-4", "addr", "show", "eth0"]);
        assert!(
            text(&addr.stdout).contains(&format!("{}/24", ips[i])),
            "{name}: eth0 lacks {}: {}",
            ips[i],
            text(&addr.stdout)
        );
        let route = text(&pm.exec(name, &["ip", "route"]).stdout);
        assert!(
            route.contains("default via 10.77.0.1 dev eth0"),
            "{name}: no default route via the gateway: {route}"
        );
        // podman brings lo up itself: the conflist has no `loopback` plugin.
        let lo = pm.exec(name, &["ping", "-c", "1", "-W", "1", "127.0.0.1"]);
        assert!(lo.status.success(), "{name}: loopback is not up");
    }
    assert_ne!(ips[0], ips[1]);
    let eps = endpoints(&m);
    let want: BTreeSet<(String, String)> = ids.iter().cloned().zip(ips.iter().cloned()).collect();
    assert_eq!(eps, want, "netmaster's endpoints are not the containers'");
    for e in m.endpoints() {
        assert_eq!(
            (e["tenantName"].as_str(), e["networkName"].as_str()),
            (Some("blue"), Some("pods")),
            "{e}"
        );
    }
    // Both on the network's one trunk, each recorded by the agent.
    assert_eq!(h.ovs_ports(), h.trunk_ports(), "OVS ports");
    assert_eq!(h.trunk_ports().len(), 1, "OVS ports: {:?}", h.ovs_ports());
    assert_eq!(h.trunk_records().len(), 2, "{:?}", h.trunk_records());

    // They reach each other: ping both ways, then TCP (HTTP) both ways with a checked payload.
    for (from, to) in [(0, 1), (1, 0)] {
        retry(
            &format!("{} to ping {}", names[from], ips[to]),
            Duration::from_secs(10),
            || {
                let out = pm.exec(&names[from], &["ping", "-c", "1", "-W", "1", &ips[to]]);
                if out.status.success() {
                    Ok(())
                } else {
                    Err(text(&out.stdout))
                }
            },
        );
    }
    let mut sums = Vec::new();
    for name in &names {
        let sum = pm.ok(&[
            "exec",
            name,
            "sh",
            "-c",
            "mkdir -p /www && seq 1 50000 > /www/data && md5sum /www/data && httpd -p 8080 -h /www",
        ]);
        sums.push(sum.split_whitespace().next().unwrap().to_string());
    }
    for (from, to) in [(0, 1), (1, 0)] {
        let url = format!("http://{}:8080/data", ips[to]);
        let got = retry(
            &format!("{} to fetch {url}", names[from]),
            Duration::from_secs(10),
            || {
                let out = pm.exec(
                    &names[from],
                    &[
                        "sh",
                        "-c",
                        &format!("timeout 5 wget -q -O - {url} | md5sum"),
                    ],
                );
                let s = text(&out.stdout);
                match s.split_whitespace().next() {
                    Some(sum) if out.status.success() && sum == sums[to] => Ok(sum.to_string()),
                    _ => Err(format!("{s} {}", text(&out.stderr))),
                }
            },
        );
        assert_eq!(got, sums[to]);
    }
    let traffic_done = started.elapsed();

    // `podman rm` releases everything: netmaster's endpoints, the agent's records, the trunk
    // (once idle) and podman's network namespaces.
    let mut rm = vec!["rm", "--force", "--time", "0"];
    rm.extend(names.iter().map(String::as_str));
    pm.ok(&rm);
    wait_for(
        "netmaster to release the containers' endpoints",
        Duration::from_secs(10),
        || m.endpoints().is_empty(),
    );
    wait_for(
        "the trunk's port and links to go (it serves no pod)",
        Duration::from_secs(10),
        || {
            h.ovs_ports().is_empty()
                && h.links().into_iter().collect::<BTreeSet<_>>() == links_before
        },
    );
    assert!(h.trunk_records().is_empty(), "{:?}", h.trunk_records());
    for s in &sandboxes {
        assert!(!Path::new(s).exists(), "podman left its netns {s}");
    }
    assert_eq!(pm.ok(&["ps", "--all", "--quiet"]), "");
    // libcni dropped its cached attachments: the DELs succeeded.
    let cached: Vec<String> = std::fs::read_dir(LIBCNI_CACHE)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(&format!("{net}-")))
                .collect()
        })
        .unwrap_or_default();
    assert!(cached.is_empty(), "libcni still caches {cached:?}");

    // Every call went through the contiv plugin: a successful ADD and DEL per container.
    let log = std::fs::read_to_string(&cni_log).unwrap_or_default();
    for id in &ids {
        for cmd in ["ADD", "DEL"] {
            assert!(
                log.lines()
                    .any(|l| l.contains(&format!("cmd={cmd} network={net} "))
                        && l.contains(&format!("container={id} ifname=eth0 result=ok"))),
                "the plugin's log lacks a successful {cmd} of {id}:\n{log}"
            );
        }
    }
    eprintln!(
        "podman (config cniVersion {cni_version}): setup and two containers {:?}, traffic checked at {:?}, all released at {:?}",
        setup_done,
        traffic_done,
        started.elapsed()
    );
}
