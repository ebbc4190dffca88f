//! What the netctl tests share: a real netmaster process on a temp data dir and a port of the
//! kernel's choosing, and a session that runs the real `netctl` binary against it and keeps a
//! transcript.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const NETCTL: &str = env!("CARGO_BIN_EXE_netctl");

/// The `netmaster` binary: `$NETMASTER_BIN` if set, else built once from the workspace's
/// `master` crate into the target dir and profile these tests were built in (under
/// `cargo test --workspace` it is already there and the build is a no-op).
pub fn netmaster_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("NETMASTER_BIN") {
            return PathBuf::from(p);
        }
        let netctl = Path::new(NETCTL);
        let profile_dir = netctl.parent().expect("netctl is in a profile dir");
        let target_dir = profile_dir
            .parent()
            .expect("profile dir is in a target dir");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("netctl is a workspace member");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "master",
                "--bin",
                "netmaster",
                "--profile",
            ])
            .arg(profile)
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(workspace)
            .status()
            .expect("run cargo build -p master");
        assert!(status.success(), "cargo build -p master failed");
        profile_dir.join("netmaster")
    })
}

/// A loopback port nothing listens on, for as long as the socket lives: bound, never listening
/// (so no one else can take it meanwhile); connecting to it is refused.
pub fn refused_port() -> (tokio::net::TcpSocket, u16) {
    let s = tokio::net::TcpSocket::new_v4().expect("make a TCP socket");
    s.bind(([127, 0, 0, 1], 0).into())
        .expect("bind a loopback port");
    let port = s.local_addr().expect("local addr").port();
    (s, port)
}

/// A running netmaster, killed when dropped (also when the test panics).
pub struct Master {
    child: Child,
    pub port: u16,
    pub url: String,
    dir: tempfile::TempDir,
}

impl Master {
    /// With an open API over plain http: the tests of netctl's commands and output.
    pub fn start() -> Master {
        // These tests are about netctl's commands and output over plain http, where netctl
        // refuses to log in (tests/login.rs and https.rs cover login and https): an open API,
        // explicitly.
        Self::start_with(&["--auth", "off", "--tls", "off"])
    }

    /// With these flags (none: netmaster's defaults, authentication and https on).
    pub fn start_with(flags: &[&str]) -> Master {
        let bin = netmaster_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("netmaster.log")).expect("log file");
        // Port 0 and the port netmaster reports: a port found free beforehand could be taken
        // by another test's netmaster first, and the readiness probe would then reach that one.
        let child = Command::new(bin)
            .args(["--listen-url", "127.0.0.1:0", "--log-level", "info"])
            .args(flags)
            .arg("--ready-file")
            .arg(dir.path().join("ready"))
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn netmaster");
        let mut m = Master {
            child,
            port: 0,
            url: String::new(),
            dir,
        };
        m.port = m
            .wait_ready()
            .unwrap_or_else(|| panic!("netmaster did not start:\n{}", m.log()));
        let scheme = if flags.windows(2).any(|w| w == ["--tls", "off"]) {
            "http"
        } else {
            "https"
        };
        m.url = format!("{scheme}://127.0.0.1:{}", m.port);
        m
    }

    /// The data dir (the admin's credential, tls/ca.pem).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port netmaster wrote to its `--ready-file` once listening.
    fn wait_ready(&mut self) -> Option<u16> {
        let ready = self.dir.path().join("ready");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(addr) = std::fs::read_to_string(&ready) {
                let addr: std::net::SocketAddr = addr.trim().parse().expect("ready file address");
                return Some(addr.port());
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("netmaster.log")).unwrap_or_default()
    }

    /// A typed client of this netmaster, for set-ups netctl has no command for (endpoints).
    pub fn client(&self) -> model::Client {
        model::Client::new(&[self.url.as_str()]).expect("client")
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one netctl run printed.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
    pub elapsed: Duration,
}

/// Runs netctl with `args` and `NETMASTER` set to `netmaster` (when given).
pub fn netctl(netmaster: Option<&str>, args: &[String]) -> Run {
    let mut cmd = Command::new(NETCTL);
    cmd.args(args)
        .env_remove("NETMASTER")
        .env_remove("INSECURE");
    if let Some(url) = netmaster {
        cmd.env("NETMASTER", url);
    }
    let start = Instant::now();
    let out = cmd.output().expect("run netctl");
    Run {
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
        code: out.status.code().expect("netctl exited"),
        elapsed: start.elapsed(),
    }
}

/// Splits a command line as a shell would for the simple cases the tests use: words separated
/// by spaces, single quotes around words with spaces.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// A series of netctl runs against one netmaster, written down as a transcript:
///
/// ```text
/// $ netctl tenant rm blue
/// Deleting tenant blue
/// 2> Error: tenant blue is in use by networks blue:contiv-net; ...
/// [exit 3]
/// ```
///
/// stdout as printed, stderr lines behind `2> `, and the exit code when it is not 0. The
/// netmaster's port is written `PORT`, so transcripts do not change from run to run.
pub struct Session {
    pub master: Master,
    transcript: String,
    dead_ports: Vec<u16>,
    /// The sockets that keep the dead ports unanswered.
    dead_sockets: Vec<tokio::net::TcpSocket>,
}

impl Session {
    pub fn new() -> Session {
        Session {
            master: Master::start(),
            transcript: String::new(),
            dead_ports: Vec::new(),
            dead_sockets: Vec::new(),
        }
    }

    /// The URL of a port nothing listens on, written `127.0.0.1:DEAD` in the transcript.
    pub fn dead_url(&mut self) -> String {
        let (socket, port) = refused_port();
        self.dead_ports.push(port);
        self.dead_sockets.push(socket);
        format!("http://127.0.0.1:{port}")
    }

    /// Runs `netctl <line>` and adds it to the transcript.
    pub fn run(&mut self, line: &str) -> Run {
        let url = self.master.url.clone();
        self.run_with(Some(&url), line)
    }

    /// Runs `netctl <line>` with `NETMASTER` set to `netmaster`, or unset.
    pub fn run_with(&mut self, netmaster: Option<&str>, line: &str) -> Run {
        let r = netctl(netmaster, &words(line));
        if !self.transcript.is_empty() {
            self.transcript.push('\n');
        }
        match netmaster {
            Some(url) if url != self.master.url => {
                self.transcript
                    .push_str(&format!("$ NETMASTER={url} netctl {line}\n"));
            }
            _ => self.transcript.push_str(&format!("$ netctl {line}\n")),
        }
        self.transcript.push_str(&r.stdout);
        if !r.stdout.is_empty() && !r.stdout.ends_with('\n') {
            self.transcript.push_str("[no newline at end]\n");
        }
        for l in r.stderr.lines() {
            self.transcript
                .push_str(&format!("2> {l}\n").replace("2> \n", "2>\n"));
        }
        if r.code != 0 {
            self.transcript.push_str(&format!("[exit {}]\n", r.code));
        }
        r
    }

    /// Runs `netctl <line>` and fails the test unless it succeeds.
    pub fn ok(&mut self, line: &str) -> Run {
        let r = self.run(line);
        assert_eq!(
            r.code,
            0,
            "netctl {line}: {r:?}\nnetmaster log:\n{}",
            self.master.log()
        );
        r
    }

    /// The transcript so far, with the netmaster's port written `PORT` and the dead ports
    /// `DEAD`.
    pub fn transcript(&self) -> String {
        let mut t = redact_port(&self.transcript, self.master.port, "PORT");
        for p in &self.dead_ports {
            t = redact_port(&t, *p, "DEAD");
        }
        t
    }
}

/// Replaces `127.0.0.1:<port>` (and not a longer number) by `127.0.0.1:<name>`.
pub fn redact_port(s: &str, port: u16, name: &str) -> String {
    let marker = format!("127.0.0.1:{port}");
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(&marker) {
        let after = &rest[i + marker.len()..];
        out.push_str(&rest[..i]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(&marker);
        } else {
            out.push_str(&format!("127.0.0.1:{name}"));
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// What a netctl run printed, and its exit code.
#[derive(Debug)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Runs netctl with `HOME=home`, `stdin` as its input and `env` set (NETMASTER, INSECURE and
/// NETCTL_CACERT are cleared first).
pub fn netctl_at_home(home: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(NETCTL);
    cmd.args(args)
        .env("HOME", home)
        .env_remove("NETMASTER")
        .env_remove("INSECURE")
        .env_remove("NETCTL_CACERT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run netctl");
    // netctl may refuse (an http URL, a bad flag) and exit before reading its input: a broken
    // pipe then is expected, and what it printed is what the test checks.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write netctl's stdin: {e}"
        );
    }
    let out = child.wait_with_output().unwrap();
    Out {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        code: out.status.code().unwrap(),
    }
}
