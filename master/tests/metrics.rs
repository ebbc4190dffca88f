//! netmaster's metrics (`--metrics-listen`) scraped over HTTP from a real netmaster process: the
//! text parses as OpenMetrics (with the Prometheus Python client's parser), and the address
//! pool, endpoint and store transaction series follow an endpoint's create and delete.

mod common;
use common::Netmaster;
use model::metrics::testing::{Sample, Scrape, logged_url, parse, value};
use serde_json::json;
use std::time::{Duration, Instant};

/// The metrics URL netmaster logged (bound on port 0). The ready file is written after the
/// metrics listener is bound, so the line is there once the harness has started it.
fn metrics_url(m: &Netmaster) -> String {
    let log = m.log();
    logged_url(&log).unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
}

async fn scrape(url: &str) -> Scrape {
    model::install_default_tls_provider();
    let r = reqwest::get(url).await.expect("scrape netmaster's metrics");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        model::metrics::CONTENT_TYPE,
        "OpenMetrics content type"
    );
    let text = r.text().await.unwrap();
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn net(family: &str) -> [(&str, &str); 3] {
    [("tenant", "default"), ("network", "n1"), ("family", family)]
}

#[tokio::test]
async fn pools_endpoints_and_transactions_follow_an_endpoint() {
    let m = Netmaster::start_with(&["--metrics-listen", "127.0.0.1:0"]);
    let url = metrics_url(&m);
    let (s, v) = m
        .post(
            "/api/v1/networks/default:n1/",
            json!({"tenantName": "default", "networkName": "n1", "encap": "vxlan",
                   "subnet": "10.1.1.0/24", "gateway": "10.1.1.254"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    let before = scrape(&url).await;
    // 10.1.1.1-254, of which the gateway is not free for endpoints.
    assert_eq!(
        value(&before, "contiv_network_addresses", &net("ipv4")),
        Some(254.0)
    );
    assert_eq!(
        value(&before, "contiv_network_addresses_free", &net("ipv4")),
        Some(253.0)
    );
    let n1 = [("tenant", "default"), ("network", "n1")];
    assert_eq!(value(&before, "contiv_network_endpoints", &n1), Some(0.0));
    assert_eq!(value(&before, "contiv_leader", &[]), Some(1.0));
    let revision = |s: &[Sample]| value(s, "contiv_store_revision", &[]).unwrap();
    assert!(
        revision(&before) > 0.0,
        "the network's write has a revision"
    );
    let txns = |s: &[Sample]| value(s, "contiv_store_txn_duration_seconds_count", &[]).unwrap();

    let (s, v) = m
        .post(
            "/api/v1/endpoints/",
            json!({"endpointID": "a", "tenantName": "default", "networkName": "n1", "host": "h1"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let after_add = scrape(&url).await;
    assert_eq!(
        value(&after_add, "contiv_network_addresses_free", &net("ipv4")),
        Some(252.0)
    );
    assert_eq!(
        value(&after_add, "contiv_network_endpoints", &n1),
        Some(1.0)
    );
    assert!(
        txns(&after_add) > txns(&before),
        "the endpoint's store transaction is counted"
    );
    assert!(revision(&after_add) > revision(&before));
    // The histogram's buckets are cumulative and end with +Inf = count.
    let inf = value(
        &after_add,
        "contiv_store_txn_duration_seconds_bucket",
        &[("le", "+Inf")],
    );
    assert_eq!(inf, Some(txns(&after_add)));

    assert_eq!(m.delete("/api/v1/endpoints/a/").await.0, 200);
    let after_del = scrape(&url).await;
    assert_eq!(
        value(&after_del, "contiv_network_addresses_free", &net("ipv4")),
        Some(253.0)
    );
    assert_eq!(
        value(&after_del, "contiv_network_endpoints", &n1),
        Some(0.0)
    );

    // A deleted network's series go with it.
    assert_eq!(m.delete("/api/v1/networks/default:n1/").await.0, 200);
    let gone = scrape(&url).await;
    assert_eq!(value(&gone, "contiv_network_addresses", &net("ipv4")), None);

    // Only /metrics is served there.
    model::install_default_tls_provider();
    let r = reqwest::get(url.replace("/metrics", "/api/v1/networks/"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn watch_streams_are_counted() {
    let m = Netmaster::start_with(&["--metrics-listen", "127.0.0.1:0"]);
    let url = metrics_url(&m);
    let watchers = |s: &[Sample]| value(s, "contiv_watch_streams", &[]).unwrap();
    assert_eq!(watchers(&scrape(&url).await), 0.0);
    let stream = m.client().watch(None).await.expect("open a watch stream");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if watchers(&scrape(&url).await) == 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch stream is never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stream);
}

#[test]
fn a_bad_metrics_address_stops_netmaster_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netmaster"))
        .args([
            "--listen-url",
            "127.0.0.1:0",
            "--auth",
            "off",
            "--tls",
            "off",
        ])
        .args(["--metrics-listen", "not-an-address"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listen for metrics on not-an-address"),
        "{err}"
    );
}
