//! A netmaster process for tests: a temp data dir, a loopback port of the kernel's choosing
//! (`--listen-url 127.0.0.1:0`, read back from `--ready-file`), killed on drop.
//!
//! These suites test the API itself (objects, allocation, watches, clustering), not who may call
//! it nor over what: their netmaster runs with `--auth off` and `--tls off` unless the test
//! passes `--auth` or `--tls` itself (master/tests/auth.rs tests authentication, tls.rs TLS, both
//! on by default).
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Netmaster {
    child: Option<Child>,
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra: Vec<String>,
}

impl Netmaster {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_exactly(Self::args(extra))
    }

    /// With exactly these flags besides the listeners and the data dir (no `--auth off` added).
    pub fn start_exactly(extra: Vec<String>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut m = Netmaster {
            child: None,
            url: String::new(),
            port: 0,
            dir,
            _tmp: Some(tmp),
            extra,
        };
        m.spawn();
        m
    }

    /// `extra`, with `--auth off` and `--tls off` unless it says `--auth` or `--tls` itself.
    fn args(extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for flag in ["--auth", "--tls"] {
            if !args.iter().any(|a| a == flag) {
                args.extend([flag.into(), "off".into()]);
            }
        }
        args
    }

    /// Whether it serves https (the default, unless `--tls off`).
    pub fn tls(&self) -> bool {
        !self
            .extra
            .windows(2)
            .any(|w| w[0] == "--tls" && w[1] == "off")
    }

    /// The cluster CA's certificate this netmaster wrote (with TLS on).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls").join("ca.pem")
    }

    /// Starts the process: on port 0 the first time, then on the port it had (clients and other
    /// masters hold its URL), or on a new one should another process have taken that meanwhile.
    fn spawn(&mut self) {
        let had = self.port;
        for port in [had, 0] {
            let ready = self.dir.join("ready");
            let _ = std::fs::remove_file(&ready);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("netmaster.log"))
                .unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_netmaster"))
                .args(["--listen-url", &format!("127.0.0.1:{port}")])
                .arg("--ready-file")
                .arg(&ready)
                .arg("--data-dir")
                .arg(&self.dir)
                .arg("--listen-unix")
                .arg(self.unix_socket())
                .args(&self.extra)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn netmaster");
            self.child = Some(child);
            if let Some(bound) = self.wait_ready() {
                if had != 0 && bound != had {
                    eprintln!("netmaster moved from port {had} to {bound} (port taken)");
                }
                self.port = bound;
                let scheme = if self.tls() { "https" } else { "http" };
                self.url = format!("{scheme}://127.0.0.1:{bound}");
                return;
            }
            self.kill();
            if port == 0 {
                break;
            }
        }
        panic!("netmaster did not start; log:\n{}", self.log());
    }

    /// The port netmaster wrote to its ready file once listening; `None` if it exited first or
    /// took too long.
    fn wait_ready(&mut self) -> Option<u16> {
        let ready = self.dir.join("ready");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(addr) = std::fs::read_to_string(&ready) {
                let addr: std::net::SocketAddr = addr.trim().parse().expect("ready file address");
                return Some(addr.port());
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("netmaster.log")).unwrap_or_default()
    }

    /// The unix socket every test netmaster also serves on.
    pub fn unix_socket(&self) -> PathBuf {
        self.dir.join("netmaster.sock")
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit (up to `limit`, a hang detector); its
    /// exit status, or None if it was still running then (it is killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {}", c.id());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = c.try_wait().expect("wait for netmaster") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the process hard (SIGKILL: no clean shutdown) and starts it again on the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the process again after [`Netmaster::kill`] (to look at its store in between).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "netmaster is still running");
        self.spawn();
    }

    /// A client of its TCP URL, trusting its CA with TLS on.
    pub fn client(&self) -> model::Client {
        model::Client::with_options(std::slice::from_ref(&self.url), &self.client_options())
            .unwrap()
    }

    pub fn client_options(&self) -> model::ClientOptions {
        model::ClientOptions {
            ca_file: self.tls().then(|| self.ca_file()),
            ..Default::default()
        }
    }

    pub async fn req(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.req_as(None, method, path, body).await
    }

    /// A request with `token` in `X-Auth-Token` (none: anonymous).
    pub async fn req_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        // Trusting the netmaster's CA with TLS on, as model's client does.
        let tls = model::https_tls_config(&self.client_options()).unwrap();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let mut r = http.request(method.parse().unwrap(), format!("{}{}", self.url, path));
        if let Some(t) = token {
            r = r.header("x-auth-token", t);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.req("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.req("POST", path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.req("DELETE", path, None).await
    }
}

impl Drop for Netmaster {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The error text of a JSON error answer.
pub fn err(v: &Value) -> String {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"))
        .to_string()
}
