//! Benchmark: the time to render each UI page with 1,000 endpoints (and 8 networks, 16 groups,
//! 8 policies of 4 rules), as the admin, over HTTP from a netmaster served in-process with
//! authentication on (the UI's session check and the API's guard included).
//!
//! `cargo run --release -p master --example ui_bench [-- --endpoints 1000 --rounds 20]`
//!
//! Prints, per page, the median and the slowest of `rounds` GETs and the page's size, and the
//! same for the API calls behind the heaviest pages.

use master::{Master, MasterOptions, api};
use model::agent::EndpointRequest;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .map(|s| s.parse().expect("a number"))
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let endpoints = arg("--endpoints", 1000);
    let rounds = arg("--rounds", 20);
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn store::Store> = Arc::new(store::EmbeddedStore::open(
        store::EmbeddedOptions::new(dir.path().join("contiv.redb")),
    )?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let master = Master::open(
        store.clone(),
        MasterOptions::single(addr.to_string(), "bench"),
    )
    .await?;
    let auth = master::auth::Auth::open(
        store,
        master::auth::AuthOptions {
            token_ttl: Duration::from_secs(3600),
            node_token_ttl: Duration::from_secs(3600),
            data_dir: dir.path().to_path_buf(),
        },
    )
    .await?;
    let admin = auth.issue_for(
        "admin",
        master::auth::Role::Admin,
        vec![],
        Duration::from_secs(3600),
    );
    let app = master::ui::router(
        master::auth::http::protect(api::router(master.clone()), auth.clone(), master.clone()),
        Some(auth),
        false,
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}");
    model::install_default_tls_provider();
    let http = reqwest::Client::new();
    let post = |path: String, body: serde_json::Value| {
        let (http, url, admin) = (http.clone(), url.clone(), admin.clone());
        async move {
            let r = http
                .post(format!("{url}{path}"))
                .header("x-auth-token", admin)
                .json(&body)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "{path}: {}", r.text().await?);
            Ok(())
        }
    };
    for t in ["A", "B"] {
        post(format!("/api/v1/tenants/{t}/"), json!({"tenantName": t})).await?;
        for p in 0..4 {
            post(
                format!("/api/v1/policys/{t}:p{p}/"),
                json!({"tenantName": t, "policyName": format!("p{p}")}),
            )
            .await?;
            for r in 0..4 {
                post(
                    format!("/api/v1/rules/{t}:p{p}:r{r}/"),
                    json!({"tenantName": t, "policyName": format!("p{p}"), "ruleId": format!("r{r}"),
                        "priority": r + 1, "direction": "in", "action": "allow", "protocol": "tcp", "port": 80 + r}),
                )
                .await?;
            }
        }
    }
    let mut groups = Vec::new();
    for n in 0..8 {
        let t = if n % 2 == 0 { "A" } else { "B" };
        post(
            format!("/api/v1/networks/{t}:n{n}/"),
            json!({"tenantName": t, "networkName": format!("n{n}"), "encap": "vxlan",
                "subnet": format!("10.{n}.0.0/16")}),
        )
        .await?;
        for g in 0..2 {
            post(
                format!("/api/v1/endpointGroups/{t}:g{n}{g}/"),
                json!({"tenantName": t, "groupName": format!("g{n}{g}"), "networkName": format!("n{n}"),
                    "policies": [format!("p{}", g + 2 * (n / 4))]}),
            )
            .await?;
            groups.push((t, n, format!("g{n}{g}")));
        }
    }
    for i in 0..endpoints {
        let (t, n, g) = &groups[i % groups.len()];
        // Plain http: model's client sends tokens only over https or a unix socket.
        let ep = EndpointRequest {
            endpoint_id: format!("ep{i}-eth0"),
            tenant_name: t.to_string(),
            network_name: format!("n{n}"),
            group_name: g.clone(),
            host: format!("host{}", i % 10),
            container_id: format!("c{i}"),
            container_name: format!("pod-{i}"),
            ..Default::default()
        };
        post("/api/v1/endpoints/".into(), serde_json::to_value(&ep)?).await?;
    }
    let cookie = format!("contiv_ui={admin}");
    println!(
        "UI pages with {endpoints} endpoints, {rounds} GETs each ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "page", "median ms", "max ms", "KiB"
    );
    for page in [
        "/ui/",
        "/ui/tenants",
        "/ui/networks",
        "/ui/groups",
        "/ui/policies",
        "/ui/endpoints",
        "/ui/endpoints?q=10.3.&field=ip",
        "/ui/global",
        "/ui/edit/networks/A:n0",
        // For comparison: the API calls the heaviest pages make.
        "/api/v1/endpoints/",
        "/api/v1/inspect/networks/A:n0/",
    ] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            let r = http
                .get(format!("{url}{page}"))
                .header("cookie", &cookie)
                .header("x-auth-token", &admin)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "{page}: {}", r.status());
            size = r.bytes().await?.len();
            times.push(start.elapsed());
        }
        times.sort();
        println!(
            "{page:<28} {:>10.1} {:>10.1} {:>10.0}",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0,
            size as f64 / 1024.0
        );
    }
    server.abort();
    Ok(())
}
