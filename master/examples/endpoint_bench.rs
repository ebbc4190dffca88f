//! Benchmark: endpoint create + delete per second over HTTP against the embedded store
//! (durable writes) and against a 3-member etcd cluster on loopback (the master leading through
//! the election), with 1 and 16 concurrent clients, in one run.
//!
//! `cargo run --release -p master --example endpoint_bench [-- --seconds 5] [--no-etcd]`
//!
//! The baseline, measured in the same run on the same server, is `GET /version`: an HTTP round
//! trip with no store work. The ratio says how much of a create+delete pair is store and
//! allocation work rather than HTTP.

use master::{Master, MasterOptions, api};
use model::agent::EndpointRequest;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .map(|s| s.parse().expect("--seconds N"))
        .unwrap_or(5);
    let with_etcd = !std::env::args().any(|a| a == "--no-etcd");
    println!("endpoint create+delete over HTTP, {seconds} s per run");
    println!(
        "{:>22} {:>8} {:>16} {:>16} {:>8}",
        "store", "clients", "GET /version/s", "ep pairs/s", "ratio"
    );
    let dir = tempfile::tempdir()?;
    let embedded =
        store::EmbeddedStore::open(store::EmbeddedOptions::new(dir.path().join("contiv.redb")))?;
    let embedded_16 = bench(
        "embedded (durable)",
        Arc::new(embedded),
        None,
        &[1, 16],
        seconds,
    )
    .await?;
    if with_etcd {
        // The same master on a 3-member etcd cluster on loopback, leading through the election
        // (its writes carry the leader fence), as several masters run it.
        let cluster = store::testing::Cluster::start(3).await;
        let etcd = store::EtcdStore::connect(cluster.options()).await?;
        let election = master::leader::ElectionOptions {
            ttl: Duration::from_secs(10),
            advertise_url: String::new(),
        };
        let etcd_16 = bench(
            "etcd (3 members)",
            Arc::new(etcd),
            Some(election),
            &[1, 16],
            seconds,
        )
        .await?;
        println!(
            "16 clients: etcd / embedded endpoint pairs per second = {:.3}",
            etcd_16 / embedded_16
        );
    }
    Ok(())
}

/// Serves a master on `store` and measures, for each client count, the baseline and endpoint
/// pairs per second; returns the pairs per second of the last count.
async fn bench(
    name: &str,
    store: Arc<dyn store::Store>,
    election: Option<master::leader::ElectionOptions>,
    client_counts: &[usize],
    seconds: u64,
) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut opts = MasterOptions::single(addr.to_string(), "bench");
    opts.election = election;
    let master = Master::open(store, opts).await?;
    if master.leadership.options.is_some() {
        tokio::spawn(master.clone().campaign());
        let end = Instant::now() + Duration::from_secs(20);
        while !master.leadership.is_leader() {
            anyhow::ensure!(Instant::now() < end, "{name}: no leadership within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let server = tokio::spawn(async move { axum::serve(listener, api::router(master)).await });
    let url = format!("http://{addr}");
    let client = model::Client::new(std::slice::from_ref(&url))?;
    let net = model::Network {
        tenant_name: "default".into(),
        network_name: "bench".into(),
        encap: "vxlan".into(),
        subnet: "10.128.0.0/16".into(),
        ..Default::default()
    };
    client.put(&net).await?;
    let mut last = 0.0;
    for &clients in client_counts {
        let cl = client.clone();
        let base = run(clients, seconds, move |_, _| {
            let c = cl.clone();
            async move {
                c.version().await?;
                Ok(())
            }
        })
        .await?;
        let cl = client.clone();
        let pairs = run(clients, seconds, move |w, i| {
            let c = cl.clone();
            async move {
                let id = format!("b{w}-{i}");
                c.create_endpoint(&EndpointRequest {
                    endpoint_id: id.clone(),
                    tenant_name: "default".into(),
                    network_name: "bench".into(),
                    host: "bench".into(),
                    ..Default::default()
                })
                .await?;
                c.delete_endpoint(&id).await?;
                Ok(())
            }
        })
        .await?;
        println!(
            "{name:>22} {clients:>8} {base:>16.0} {pairs:>16.0} {:>8.3}",
            pairs / base
        );
        last = pairs;
    }
    server.abort();
    Ok(last)
}

/// Runs `op` from `clients` concurrent loops for `seconds`; returns completed ops per second.
async fn run<F, Fut>(clients: usize, seconds: u64, op: F) -> anyhow::Result<f64>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..clients {
        let (op, done) = (op.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < end {
                op(w, i).await?;
                i += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
