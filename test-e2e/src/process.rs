//! Processes and names: the workspace binaries, names unique to this run, running commands and
//! waiting, killing daemons, threads in a namespace, and removing what crashed runs left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces and daemons of earlier runs whose test process is gone.
pub fn cleanup_leftovers() {
    let out = Command::new("ip").args(["netns", "list"]).output();
    if let Ok(out) = out {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            // A host's tenant routers are named after its bridge, `br` + the host's name.
            let router_of = name
                .strip_prefix("contiv-rt-br")
                .and_then(|rest| owner_pid(&format!("{PREFIX}{rest}")));
            if let Some(owner) = owner_pid(name).or(router_of)
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

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

pub(crate) fn must(cmd: &mut Command) -> String {
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

pub(crate) fn kill_child(c: &mut Option<Child>) {
    if let Some(mut ch) = c.take() {
        let _ = ch.kill();
        let _ = ch.wait();
    }
}

pub(crate) fn kill_pidfile(p: &Path) {
    if let Ok(pid) = std::fs::read_to_string(p) {
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
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
