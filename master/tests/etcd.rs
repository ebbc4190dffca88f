//! netmaster on a real etcd: objects and allocations survive a master restart, an etcd outage is
//! a 503 (never a wrong answer), and service comes back with etcd.

mod common;
use common::{Netmaster, err};
use serde_json::json;
use std::time::{Duration, Instant};
use store::testing::Cluster;

#[tokio::test]
async fn netmaster_on_etcd_keeps_state_and_reports_outages() {
    let mut etcd = Cluster::start(1).await;
    let url = etcd.endpoints().join(",");
    let mut m = Netmaster::start_with(&["--etcd-endpoints", &url, "--etcd-prefix", "/t1"]);
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
    etcd.kill(0);
    let (s, v) = m
        .post("/api/v1/tenants/t2/", json!({"tenantName":"t2"}))
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(err(&v).contains("unavailable"), "{v}");
    assert_eq!(m.get("/api/v1/tenants/t2/").await.0, 404);
    // etcd back: writes work again.
    etcd.restart(0).await;
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
