//! A private Open vSwitch for one test: ovsdb-server (and ovs-vswitchd when asked) in a fresh
//! temp dir, killed and reaped on drop, also when the test panics.
//!
//! The daemons run in the foreground as children of the test process (no `--detach`), so the
//! test can reap them; a detached daemon would be reparented and could linger as a zombie.
//! ovs-vswitchd runs in a network namespace of its own (`unshare -n`): the tap devices of its
//! netdev bridges live and die with it, and two tests can both have a `br0`.
//!
//! Leftovers of a crashed run (a test process killed before its drops ran) are found by the
//! `owner` file each sandbox writes: daemons and dirs whose owner process is gone are removed
//! when the next sandbox starts.

#![allow(dead_code)] // Each test binary uses a different part of the fixture.

use ovs::{BridgeSpec, Client, FailMode, FlowStats, OfctlProgrammer, Vswitch};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

const PREFIX: &str = "ovs-rs-test-";
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

pub struct Sandbox {
    dir: tempfile::TempDir,
    ovsdb: Option<Child>,
    vswitchd: Option<Child>,
}

impl Sandbox {
    /// ovsdb-server with an initialized Open_vSwitch database.
    pub fn start() -> Sandbox {
        static CLEAN: Once = Once::new();
        CLEAN.call_once(clean_leftovers);
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir()
            .expect("create sandbox dir");
        std::fs::write(dir.path().join("owner"), std::process::id().to_string())
            .expect("write owner file");
        let mut sb = Sandbox {
            dir,
            ovsdb: None,
            vswitchd: None,
        };
        sb.run_ok("ovsdb-tool", &["create", &sb.path("conf.db"), SCHEMA]);
        sb.start_ovsdb();
        sb.vsctl(&["init"]);
        sb
    }

    /// ovsdb-server and ovs-vswitchd.
    pub fn start_with_vswitchd() -> Sandbox {
        let mut sb = Sandbox::start();
        sb.start_vswitchd();
        sb
    }

    fn start_vswitchd(&mut self) {
        let mut cmd = Command::new("unshare");
        cmd.arg("-n")
            .arg("ovs-vswitchd")
            .arg(format!("unix:{}", self.path("db.sock")))
            .arg(format!("--pidfile={}", self.path("vswitchd.pid")))
            .arg(format!("--unixctl={}", self.path("vswitchd.ctl")))
            .arg(format!("--log-file={}", self.path("vswitchd.log")));
        self.vswitchd = Some(self.spawn(cmd));
        self.wait_for("ovs-vswitchd", || self.dir().join("vswitchd.ctl").exists());
    }

    /// Kills ovs-vswitchd (as a crash would) and starts it again; waits until `bridge`'s
    /// management socket is back.
    pub fn restart_vswitchd(&mut self, bridge: &str) {
        if let Some(mut child) = self.vswitchd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for stale in ["vswitchd.ctl".to_string(), format!("{bridge}.mgmt")] {
            let _ = std::fs::remove_file(self.dir().join(stale));
        }
        self.start_vswitchd();
        let mgmt = self.dir().join(format!("{bridge}.mgmt"));
        self.wait_for("the bridge after a restart", || mgmt.exists());
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_sock(&self) -> PathBuf {
        self.dir().join("db.sock")
    }

    fn path(&self, name: &str) -> String {
        self.dir().join(name).display().to_string()
    }

    fn spawn(&self, mut cmd: Command) -> Child {
        cmd.env("OVS_RUNDIR", self.dir())
            .env("OVS_DBDIR", self.dir())
            .env("OVS_LOGDIR", self.dir())
            .env("OVS_SYSCONFDIR", self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()))
    }

    /// Starts (or restarts) ovsdb-server on the same database and socket path.
    pub fn start_ovsdb(&mut self) {
        assert!(self.ovsdb.is_none(), "ovsdb-server already running");
        // A killed server leaves its socket file behind.
        let _ = std::fs::remove_file(self.db_sock());
        let mut cmd = Command::new("ovsdb-server");
        cmd.arg(self.path("conf.db"))
            .arg(format!("--remote=punix:{}", self.path("db.sock")))
            // Lets a test add listeners with their own settings through the Manager table.
            .arg("--remote=db:Open_vSwitch,Open_vSwitch,manager_options")
            .arg(format!("--pidfile={}", self.path("ovsdb.pid")))
            .arg(format!("--unixctl={}", self.path("ovsdb.ctl")))
            .arg(format!("--log-file={}", self.path("ovsdb.log")));
        self.ovsdb = Some(self.spawn(cmd));
        let sock = self.db_sock();
        self.wait_for("ovsdb-server", || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    /// Kills ovsdb-server with SIGKILL, as a crash would.
    pub fn kill_ovsdb(&mut self) {
        if let Some(mut child) = self.ovsdb.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to ovsdb-server.
    pub fn signal_ovsdb(&self, signal: &str) {
        let pid = self.ovsdb.as_ref().expect("ovsdb-server running").id();
        self.run_ok("kill", &[&format!("-{signal}"), &pid.to_string()]);
    }

    fn wait_for(&self, what: &str, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "{what} did not start in {}; logs:\n{}",
                self.dir().display(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .env("OVS_RUNDIR", self.dir())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs ovs-vsctl against this sandbox: a second, independent client of the database.
    pub fn vsctl(&self, args: &[&str]) -> String {
        let db = format!("--db=unix:{}", self.path("db.sock"));
        let mut all = vec![db.as_str(), "--timeout=10"];
        if self.vswitchd.is_none() {
            // Nobody would ever acknowledge the change.
            all.push("--no-wait");
        }
        all.extend_from_slice(args);
        self.run_ok("ovs-vsctl", &all)
    }

    /// Runs ovs-ofctl against a bridge of this sandbox.
    pub fn ofctl(&self, args: &[&str]) -> String {
        self.run_ok("ovs-ofctl", args)
    }

    pub fn mgmt_target(&self, bridge: &str) -> String {
        format!("unix:{}", self.path(&format!("{bridge}.mgmt")))
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["ovsdb.log", "vswitchd.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir().join(name)) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(30)..];
                out.push_str(&format!("--- {name}\n{}\n", tail.join("\n")));
            }
        }
        out
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("sandbox {} logs:\n{}", self.dir().display(), self.logs());
        }
        for child in [self.vswitchd.take(), self.ovsdb.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Kills daemons and removes dirs left by sandboxes whose test process no longer exists.
fn clean_leftovers() {
    let tmp = std::env::temp_dir();
    let owner_alive = |dir: &Path| -> bool {
        std::fs::read_to_string(dir.join("owner"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        let program = cmdline.split('\0').next().unwrap_or_default();
        if !["ovsdb-server", "ovs-vswitchd"]
            .contains(&program.rsplit('/').next().unwrap_or_default())
        {
            continue;
        }
        let Some(at) = cmdline.find(PREFIX) else {
            continue;
        };
        let name: String = cmdline[at..]
            .chars()
            .take_while(|c| *c != '/' && *c != '\0')
            .collect();
        if !owner_alive(&tmp.join(&name)) {
            eprintln!("killing leftover OVS daemon {pid} of sandbox {name}");
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with(PREFIX) && !owner_alive(&path) {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// Creates netdev bridges `names` (fail mode secure, OpenFlow `protocols`) in the sandbox's
/// ovs-vswitchd and waits until each one's management socket is up.
pub async fn bridges(sb: &Sandbox, names: &[&str], protocols: &[&str]) {
    let vs = Vswitch::new(Client::connect(sb.db_sock()).await.unwrap());
    let ofctl = OfctlProgrammer::new(sb.dir());
    for name in names {
        vs.ensure_bridge(
            &BridgeSpec::new(*name)
                .datapath_type("netdev")
                .protocols(protocols)
                .fail_mode(FailMode::Secure),
        )
        .await
        .unwrap();
        ofctl
            .wait_for_bridge(name, Duration::from_secs(10))
            .await
            .unwrap();
    }
}

/// A flow as the tests compare it: (cookie, table, priority, match, actions, idle timeout,
/// hard timeout).
pub type FlowRow = (u64, u8, u16, String, String, u16, u16);

/// The flows as rows, sorted.
pub fn summary(flows: &[FlowStats]) -> Vec<FlowRow> {
    let mut s: Vec<_> = flows
        .iter()
        .map(|f| {
            (
                f.cookie,
                f.table,
                f.priority,
                f.matches.clone(),
                f.actions.clone(),
                f.idle_timeout,
                f.hard_timeout,
            )
        })
        .collect();
    s.sort();
    s
}
