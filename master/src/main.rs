//! netmaster: parse flags, open the store, serve the API.

use anyhow::Context;
use clap::Parser;
use master::{Master, MasterOptions, api};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::{EmbeddedOptions, EmbeddedStore};
use tracing_subscriber::EnvFilter;

/// Contiv's control plane: REST API, allocation and the watch stream agents follow.
#[derive(Parser, Debug)]
#[command(name = "netmaster", version)]
struct Opts {
    /// Address to serve the API on (host:port).
    #[arg(
        long = "listen-url",
        alias = "external-address",
        env = "CONTIV_NETMASTER_LISTEN_URL",
        default_value = "0.0.0.0:9999"
    )]
    listen_url: String,

    /// Also serve the API on this unix socket (for agents on this machine, or in network
    /// namespaces that cannot reach the TCP address).
    #[arg(long = "listen-unix", env = "CONTIV_NETMASTER_LISTEN_UNIX")]
    listen_unix: Option<PathBuf>,

    /// Directory of the embedded store (one file, contiv.redb, is kept there).
    #[arg(
        long = "data-dir",
        env = "CONTIV_NETMASTER_DATA_DIR",
        default_value = "/var/lib/contiv"
    )]
    data_dir: PathBuf,

    /// Keep state in etcd (v3) instead of the embedded store: comma-separated client URLs.
    #[arg(
        long = "etcd-endpoints",
        alias = "etcd",
        env = "CONTIV_NETMASTER_ETCD_ENDPOINTS",
        value_delimiter = ','
    )]
    etcd_endpoints: Vec<String>,

    /// Prefix of every key in etcd, to share one etcd with other users.
    #[arg(
        long = "etcd-prefix",
        env = "CONTIV_NETMASTER_ETCD_PREFIX",
        default_value = ""
    )]
    etcd_prefix: String,

    /// CA certificate for etcd over TLS.
    #[arg(long = "etcd-cacert", env = "CONTIV_NETMASTER_ETCD_CACERT")]
    etcd_cacert: Option<PathBuf>,

    /// Client certificate for etcd (with --etcd-key).
    #[arg(long = "etcd-cert", env = "CONTIV_NETMASTER_ETCD_CERT")]
    etcd_cert: Option<PathBuf>,

    /// Client key for etcd (with --etcd-cert).
    #[arg(long = "etcd-key", env = "CONTIV_NETMASTER_ETCD_KEY")]
    etcd_key: Option<PathBuf>,

    /// Seconds a node registration lives without a heartbeat.
    #[arg(
        long = "node-ttl",
        env = "CONTIV_NETMASTER_NODE_TTL",
        default_value_t = 30
    )]
    node_ttl: u64,

    /// Log level (error, warn, info, debug, trace), or a tracing filter.
    #[arg(
        long = "log-level",
        env = "CONTIV_NETMASTER_LOG_LEVEL",
        default_value = "info"
    )]
    log_level: String,

    /// Log JSON lines instead of text.
    #[arg(long = "use-json-log", env = "CONTIV_NETMASTER_USE_JSON_LOG")]
    json_log: bool,
}

#[tokio::main]
async fn main() {
    let opts = Opts::parse();
    let filter = EnvFilter::try_new(&opts.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if opts.json_log {
        fmt.json().init();
    } else {
        fmt.with_ansi(ansi).init();
    }
    if let Err(e) = run(opts).await {
        eprintln!("netmaster: {e:#}");
        std::process::exit(1);
    }
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    let (store, store_kind, where_): (Arc<dyn store::Store>, &'static str, String) = if opts
        .etcd_endpoints
        .is_empty()
    {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("create data dir {}", opts.data_dir.display()))?;
        let db = opts.data_dir.join("contiv.redb");
        let s = EmbeddedStore::open(EmbeddedOptions::new(&db))
            .with_context(|| format!("open embedded store {}", db.display()))?;
        (Arc::new(s), "embedded", db.display().to_string())
    } else {
        let mut eo = store::EtcdOptions::new(opts.etcd_endpoints.clone());
        eo.prefix = opts.etcd_prefix.clone();
        if let Some(ca) = &opts.etcd_cacert {
            eo.tls = Some(store::TlsOptions {
                ca: ca.clone(),
                cert: opts.etcd_cert.clone(),
                key: opts.etcd_key.clone(),
            });
        }
        // etcd may come up after us: say why we wait, and keep trying.
        let s = loop {
            match store::EtcdStore::connect(eo.clone()).await {
                Ok(s) => break s,
                Err(e @ store::StoreError::Open { .. }) => return Err(e).context("etcd options"),
                Err(e) => {
                    tracing::error!(error = %e, "connect to etcd; retrying in 2 s");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        (Arc::new(s), "etcd", opts.etcd_endpoints.join(","))
    };
    let listener = tokio::net::TcpListener::bind(&opts.listen_url)
        .await
        .with_context(|| {
            format!(
                "listen on {} (is another netmaster running? set --listen-url)",
                opts.listen_url
            )
        })?;
    let local = listener.local_addr().context("read listen address")?;
    let master = Master::open(
        store,
        MasterOptions {
            node_ttl: Duration::from_secs(opts.node_ttl.max(1)),
            listen: local.to_string(),
            store_kind,
        },
    )
    .await
    .context("load state")?;
    tokio::spawn(master.clone().follow_node_expiry());
    if let Some(path) = &opts.listen_unix {
        // A socket file left by a previous run would make bind fail.
        let _ = std::fs::remove_file(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let ul = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("listen on unix socket {}", path.display()))?;
        let router = api::router(master.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(ul, router).await {
                tracing::error!(error = %e, "serve unix socket");
            }
        });
        tracing::info!(socket = %path.display(), "netmaster serving on unix socket");
    }
    tracing::info!(listen = %local, store = store_kind, at = %where_, "netmaster serving");
    axum::serve(listener, api::router(master))
        .with_graceful_shutdown(shutdown())
        .await
        .context("serve")?;
    if let Some(path) = &opts.listen_unix {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("netmaster stopped");
    Ok(())
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
