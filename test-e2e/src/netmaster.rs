//! The netmaster process of a simulated cluster, and its REST API through curl and netctl.

use crate::{bin, kill_child, must, unique, wait_for};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A netmaster on a temp dir, serving on loopback and on a unix socket (hosts are network
/// namespaces that cannot reach this namespace's loopback; the socket works from all of them).
pub struct Netmaster {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    args: Vec<String>,
}

impl Netmaster {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A netmaster with extra flags (e.g. `--node-ttl 3`).
    pub fn start_with(args: &[&str]) -> Self {
        let dir = PathBuf::from(format!("/tmp/{}", unique("m")));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("netmaster.sock");
        let mut m = Netmaster {
            child: None,
            dir,
            socket,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        m.spawn();
        m
    }

    /// A netmaster whose TCP listener is on `port` (so that it can advertise itself to other
    /// masters: `--advertise-url` follows `--listen-url`), with extra flags.
    pub fn start_on_port(port: u16, args: &[&str]) -> Self {
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec!["--listen-url", listen.as_str()];
        all.extend_from_slice(args);
        Self::start_with(&all)
    }

    /// Kills the netmaster (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("netmaster.log")).unwrap();
        // A --listen-url among the extra flags replaces the default.
        let listen: &[&str] = if self.args.iter().any(|a| a == "--listen-url") {
            &[]
        } else {
            &["--listen-url", "127.0.0.1:0"]
        };
        let child = Command::new(bin("netmaster"))
            .args(listen)
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
        let s = self.socket.clone();
        wait_for("netmaster socket", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&s).is_ok()
        });
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn client(&self) -> model::Client {
        model::Client::new(&[self.url()]).unwrap()
    }

    /// A REST call with curl over the unix socket: (status, JSON body).
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&self.socket)
            .args(["-X", method, &format!("http://localhost{path}")]);
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
}

impl Drop for Netmaster {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
