//! netmaster on a real etcd: objects and allocations survive a master restart, an etcd outage is
//! a 503 (never a wrong answer), and service comes back with etcd.

mod common;
use common::{Netmaster, err};
use serde_json::json;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client: u16,
    peer: u16,
}

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    fn start() -> Self {
        let mut e = Etcd {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            client: port(),
            peer: port(),
        };
        e.spawn();
        e
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }
    fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let child = Command::new("etcd")
            .args(["--name", "m1", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &self.url(),
                "--advertise-client-urls",
                &self.url(),
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &format!("m1={peer}"),
                "--heartbeat-interval",
                "25",
                "--election-timeout",
                "250",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (scripts/setup.sh installs etcd-server)");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.client)).is_err() {
            assert!(Instant::now() < end, "etcd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn netmaster_on_etcd_keeps_state_and_reports_outages() {
    let mut etcd = Etcd::start();
    let mut m = Netmaster::start_with(&["--etcd-endpoints", &etcd.url(), "--etcd-prefix", "/t1"]);
    let (_, info) = m.get("/info").await;
    assert_eq!(info["store"], "etcd");
    let (s, v) = m
        .post("/api/v1/networks/default:n/", json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.1.2.0/24","gateway":"10.1.2.1"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let c = m.client();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.create_endpoint(&model::agent::EndpointRequest {
                    endpoint_id: format!("e{i}"),
                    tenant_name: "default".into(),
                    network_name: "n".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .ip_address
            })
        })
        .collect();
    let mut addrs = std::collections::BTreeSet::new();
    for t in tasks {
        addrs.insert(t.await.unwrap());
    }
    assert_eq!(addrs.len(), 50);
    let before = m.get("/api/v1/inspect/networks/default:n/").await.1;
    m.restart();
    assert_eq!(m.get("/api/v1/inspect/networks/default:n/").await.1, before);
    let (_, e) = m
        .post(
            "/api/v1/endpoints/",
            json!({"endpointID":"after","tenantName":"default","networkName":"n"}),
        )
        .await;
    assert_eq!(e["ipAddress"], "10.1.2.52");

    // etcd down: reads are served from memory, writes answer 503 and change nothing.
    etcd.kill();
    let (s, v) = m
        .post("/api/v1/tenants/t2/", json!({"tenantName":"t2"}))
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(err(&v).contains("unavailable"), "{v}");
    assert_eq!(m.get("/api/v1/tenants/t2/").await.0, 404);
    // etcd back: writes work again.
    etcd.spawn();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _) = m
            .post("/api/v1/tenants/t2/", json!({"tenantName":"t2"}))
            .await;
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < end,
            "writes did not resume after etcd came back (last status {s})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
