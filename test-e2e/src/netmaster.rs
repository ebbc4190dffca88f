//! The netmaster process of a simulated cluster, and its REST API through curl and netctl.

use crate::{bin, kill_child, must, unique};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A netmaster on a temp dir, serving on loopback and on a unix socket (hosts are network
/// namespaces that cannot reach this namespace's loopback; the socket works from all of them).
/// Its loopback port is the kernel's choice unless asked for, read back from `--ready-file`.
pub struct Netmaster {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    args: Vec<String>,
    /// The loopback port asked for (0: any), and once started the one bound.
    port: u16,
    /// Unless `--auth off`: the admin's token, which api(), client() and netctl() send.
    token: Option<String>,
}

/// Netmaster authenticates and serves https by default, and so the suites run with it: the
/// harness logs in as the admin and gives agents the join token and the cluster CA (followers
/// of several masters forward writes to the leader over https, trusting that CA). CONTIV_E2E_AUTH=0 runs every netmaster with
/// `--auth off` instead (to tell an authentication problem from another one).
fn auth_off_from_env() -> bool {
    std::env::var("CONTIV_E2E_AUTH").is_ok_and(|v| v == "0")
}

impl Netmaster {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A netmaster with extra flags (e.g. `--node-ttl 3`), on a loopback port of the kernel's
    /// choosing ([`Netmaster::tcp_url`]; the advertised URL of several masters follows it).
    pub fn start_with(args: &[&str]) -> Self {
        Self::start_on_port(0, args)
    }

    /// Like [`Netmaster::start_with`], on loopback port `port` (0: any). Should `port` be taken
    /// by the time netmaster binds it (a port probed free can be), it falls back to any port,
    /// rather than fail or let this handle talk to another test's server: prefer 0.
    fn start_on_port(port: u16, args: &[&str]) -> Self {
        let dir = PathBuf::from(format!("/tmp/{}", unique("m")));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("netmaster.sock");
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if auth_off_from_env() && !args.iter().any(|a| a == "--auth") {
            args.extend(["--auth".into(), "off".into()]);
        }
        let mut m = Netmaster {
            child: None,
            dir,
            socket,
            args,
            port,
            token: None,
        };
        m.spawn();
        if !m.args.windows(2).any(|w| w[0] == "--auth" && w[1] == "off") {
            m.login_as_admin();
        }
        m
    }

    /// Kills the netmaster (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    fn spawn(&mut self) {
        let asked = self.port;
        for port in [asked, 0] {
            if self.start_process(port) {
                if asked != 0 && self.port != asked {
                    eprintln!(
                        "netmaster: port {asked} was taken, serving on {}",
                        self.port
                    );
                }
                return;
            }
            kill_child(&mut self.child);
            if port == 0 {
                break;
            }
        }
        panic!("netmaster did not start; log:\n{}", self.log());
    }

    /// Starts the process on `port` and waits for its ready file; false if it exits first (or
    /// takes over 20 s).
    fn start_process(&mut self, port: u16) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("netmaster.log"))
            .unwrap();
        let ready = self.dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        // A --listen-url among the extra flags replaces ours.
        let listen = format!("127.0.0.1:{port}");
        let listen: &[&str] = if self.args.iter().any(|a| a == "--listen-url") {
            &[]
        } else {
            &["--listen-url", &listen]
        };
        let child = Command::new(bin("netmaster"))
            .args(listen)
            .arg("--ready-file")
            .arg(&ready)
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
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            // Written once both the TCP listener and the unix socket are bound.
            if let Ok(addr) = std::fs::read_to_string(&ready) {
                let addr: SocketAddr = addr.trim().parse().expect("ready file address");
                self.port = addr.port();
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The loopback URL netmaster is bound to (and advertises to other masters by default):
    /// https, netmaster's default, unless started with `--tls off`.
    pub fn tcp_url(&self) -> String {
        let tls_off = self.args.windows(2).any(|w| w == ["--tls", "off"]);
        let scheme = if tls_off { "http" } else { "https" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn client(&self) -> model::Client {
        model::Client::with_options(
            &[self.url()],
            &model::ClientOptions {
                auth_token: self.token.clone(),
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// Logs in as the admin the first start made (its password is in the data dir), and keeps
    /// the token for api(), client() and netctl() (its ~/.netctl/config.json is under `dir`).
    fn login_as_admin(&mut self) {
        // Only the master that made the admin (the first on a store) has the file: the others
        // on the same etcd use the password the first one wrote.
        static PASSWORDS: std::sync::Mutex<Vec<(Vec<String>, String)>> =
            std::sync::Mutex::new(Vec::new());
        let store: Vec<String> = self
            .args
            .windows(2)
            .filter(|w| w[0] == "--etcd-endpoints" || w[0] == "--etcd-prefix")
            .map(|w| w.join("="))
            .collect();
        let file = self.dir.join("data").join("admin-credential.json");
        let password = match std::fs::read(&file) {
            Ok(b) => {
                let cred: Value = serde_json::from_slice(&b).unwrap();
                let p = cred["password"].as_str().unwrap().to_string();
                if !store.is_empty() {
                    PASSWORDS.lock().unwrap().push((store, p.clone()));
                }
                p
            }
            Err(e) => PASSWORDS
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(s, _)| *s == store && !store.is_empty())
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| panic!("read {}: {e}", file.display())),
        };
        let (s, v) = self.api(
            "POST",
            "/api/v1/auth_proxy/login/",
            Some(json!({"username": "admin", "password": password})),
        );
        assert_eq!(s, 200, "login as admin: {v}");
        let home = self.dir.join("home").join(".netctl");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("config.json"), v.to_string()).unwrap();
        self.token = Some(v["token"].as_str().unwrap().to_string());
    }

    /// The admin token the harness logged in with, found from netmaster's unix socket alone (for
    /// helpers that hold only its URL, such as [`crate::host::Host`]); `None` with `--auth off`.
    pub fn admin_token_of_socket(socket: &std::path::Path) -> Option<String> {
        let config = socket.parent()?.join("home/.netctl/config.json");
        let v: Value = serde_json::from_slice(&std::fs::read(config).ok()?).ok()?;
        v["token"].as_str().map(str::to_string)
    }

    /// Mints an API token as the admin (`POST /api/v1/auth_proxy/tokens/`, living an hour):
    /// `role` `admin` or `ops`, the latter acting on `tenants` only (`*`: all).
    pub fn mint_token(&self, name: &str, role: &str, tenants: &[&str]) -> String {
        let (s, v) = self.api(
            "POST",
            "/api/v1/auth_proxy/tokens/",
            Some(json!({"name": name, "role": role, "tenants": tenants, "ttlSeconds": 3600})),
        );
        assert_eq!(s, 200, "mint an API token for {name}: {v}");
        v["token"].as_str().expect("token").to_string()
    }

    /// The file an agent's Docker driver reads its token from (`netplugin --docker-token-file`):
    /// an ops user's token authorized on every tenant, minted once and written beside the join
    /// token. `None` with `--auth off` (the node may then write networks itself).
    pub fn docker_token_file(&self) -> Option<PathBuf> {
        self.token.as_ref()?;
        let path = self.dir.join("docker-token");
        if !path.exists() {
            let t = self.mint_token("docker", "ops", &["*"]);
            std::fs::write(&path, t).unwrap();
        }
        Some(path)
    }

    /// `--docker-socket PATH` and, with authentication on, `--docker-token-file` of
    /// [`Netmaster::docker_token_file`]: the flags of an agent serving Docker.
    pub fn docker_agent_args(&self, socket: &str) -> Vec<String> {
        let mut a = vec!["--docker-socket".to_string(), socket.to_string()];
        if let Some(f) = self.docker_token_file() {
            a.push(format!("--docker-token-file={}", f.display()));
        }
        a
    }

    /// The join token agents present (with `--auth on`).
    pub fn join_token_file(&self) -> PathBuf {
        self.dir.join("data").join("join-token")
    }

    /// A REST call with curl over the unix socket: (status, JSON body).
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&self.socket)
            .args(["-X", method, &format!("http://localhost{path}")]);
        if let Some(t) = &self.token {
            c.args(["-H", &format!("x-auth-token: {t}")]);
        }
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
                // The admin's token, with --auth on.
                .env("HOME", self.dir.join("home"))
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

    /// Its metrics (started with `--metrics-listen 127.0.0.1:0`), parsed as OpenMetrics.
    pub fn metrics(&self) -> model::metrics::testing::Scrape {
        let log = self.log();
        let url = model::metrics::testing::logged_url(&log)
            .unwrap_or_else(|| panic!("netmaster logged no metrics address:\n{log}"));
        model::metrics::testing::scrape_with_curl(&url, |args| {
            crate::run(std::process::Command::new(args[0]).args(&args[1..]))
        })
    }
}

impl Drop for Netmaster {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
