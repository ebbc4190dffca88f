//! netmaster: parse flags, open the store, serve the API.

use anyhow::Context;
use clap::Parser;
use master::{Master, MasterOptions, api};
use model::parse_errors::{JsonParseErrors, Shape};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::{EmbeddedOptions, EmbeddedStore};
use tracing_subscriber::EnvFilter;

/// Contiv's control plane: REST API, allocation and the watch stream agents follow.
#[derive(Parser, Debug)]
#[command(name = "netmaster", version)]
struct Opts {
    #[command(subcommand)]
    command: Option<Command>,

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
        global = true,
        env = "CONTIV_NETMASTER_DATA_DIR",
        default_value = "/var/lib/contiv"
    )]
    data_dir: PathBuf,

    /// Keep state in etcd (v3) instead of the embedded store: comma-separated client URLs.
    #[arg(
        long = "etcd-endpoints",
        global = true,
        alias = "etcd",
        env = "CONTIV_NETMASTER_ETCD_ENDPOINTS",
        value_delimiter = ','
    )]
    etcd_endpoints: Vec<String>,

    /// Prefix of every key in etcd, to share one etcd with other users.
    #[arg(
        long = "etcd-prefix",
        global = true,
        env = "CONTIV_NETMASTER_ETCD_PREFIX",
        default_value = ""
    )]
    etcd_prefix: String,

    /// CA certificate for etcd over TLS.
    #[arg(
        long = "etcd-cacert",
        global = true,
        env = "CONTIV_NETMASTER_ETCD_CACERT"
    )]
    etcd_cacert: Option<PathBuf>,

    /// Client certificate for etcd (with --etcd-key).
    #[arg(long = "etcd-cert", global = true, env = "CONTIV_NETMASTER_ETCD_CERT")]
    etcd_cert: Option<PathBuf>,

    /// Client key for etcd (with --etcd-cert).
    #[arg(long = "etcd-key", global = true, env = "CONTIV_NETMASTER_ETCD_KEY")]
    etcd_key: Option<PathBuf>,

    /// Seconds a node registration lives without a heartbeat.
    #[arg(
        long = "node-ttl",
        env = "CONTIV_NETMASTER_NODE_TTL",
        default_value_t = 30
    )]
    node_ttl: u64,

    /// Seconds the leader's lease lives without renewal (several masters on one etcd): a dead
    /// leader is replaced within about this time.
    #[arg(
        long = "leader-ttl",
        env = "CONTIV_NETMASTER_LEADER_TTL",
        default_value_t = 10
    )]
    leader_ttl: u64,

    /// Once the API listens (on TCP and on --listen-unix), write the TCP address it is bound to
    /// (`host:port`, the real port when --listen-url asks for port 0) to this file, atomically;
    /// removed when netmaster stops cleanly. For scripts and tests that start netmaster on port 0.
    #[arg(long = "ready-file", env = "CONTIV_NETMASTER_READY_FILE")]
    ready_file: Option<PathBuf>,

    /// URL the other netmasters forward writes to when this one leads (default:
    /// https://<listen address>, http:// with --tls off, with this host's name for an
    /// unspecified address; the port is the one bound, also when --listen-url asks for port 0).
    /// Its host is among the names of the certificate the cluster CA issues.
    #[arg(long = "advertise-url", env = "CONTIV_NETMASTER_ADVERTISE_URL")]
    advertise_url: Option<String>,

    /// Seconds a node may stay unregistered (its lease expired) before the leader deletes its
    /// endpoints and releases their addresses; 0: never.
    #[arg(
        long = "node-grace",
        env = "CONTIV_NETMASTER_NODE_GRACE",
        default_value_t = 300
    )]
    node_grace: u64,

    /// Authentication of API callers: `on`, the default (users, tokens, node credentials; see
    /// docs/security.md), or `off` (anyone reaching the port may do anything; a warning is
    /// logged at every start).
    #[arg(
        long = "auth",
        env = "CONTIV_NETMASTER_AUTH",
        default_value = "on",
        value_parser = ["on", "off"]
    )]
    auth: String,

    /// Seconds a login token (`netctl login`) lives.
    #[arg(
        long = "auth-token-ttl",
        env = "CONTIV_NETMASTER_AUTH_TOKEN_TTL",
        default_value_t = 12 * 3600
    )]
    auth_token_ttl: u64,

    /// Seconds a node credential lives; the agent joins again with the join token after.
    #[arg(
        long = "auth-node-token-ttl",
        env = "CONTIV_NETMASTER_AUTH_NODE_TOKEN_TTL",
        default_value_t = 30 * 24 * 3600
    )]
    auth_node_token_ttl: u64,

    /// Serve the API over TLS: `on`, the default, or `off` (plain http: tokens and passwords
    /// would cross the network in clear; a warning is logged at every start). On without
    /// --tls-cert: the cluster CA (made by the first master, kept in the store) issues this
    /// master's certificate at every start and is written to tls/ca.pem under the data dir for
    /// clients to trust (its fingerprint is logged).
    #[arg(
        long = "tls",
        env = "CONTIV_NETMASTER_TLS",
        default_value = "on",
        value_parser = ["on", "off"]
    )]
    tls: String,

    /// The server's certificate chain (PEM), with --tls-key, instead of one of the cluster CA.
    #[arg(long = "tls-cert", env = "CONTIV_NETMASTER_TLS_CERT")]
    tls_cert: Option<PathBuf>,

    /// The server's private key (PEM), with --tls-cert.
    #[arg(long = "tls-key", env = "CONTIV_NETMASTER_TLS_KEY")]
    tls_key: Option<PathBuf>,

    /// With --tls-cert, several masters: the CA (PEM) that signed the other masters'
    /// certificates, trusted besides the system's when forwarding writes to the leader.
    #[arg(
        long = "tls-ca",
        env = "CONTIV_NETMASTER_TLS_CA",
        requires = "tls_cert"
    )]
    tls_ca: Option<PathBuf>,

    /// Accept client certificates signed by this CA (PEM); clients without one still use tokens.
    #[arg(long = "tls-client-ca", env = "CONTIV_NETMASTER_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,

    /// Extra names and addresses for this master's certificate (comma-separated), besides
    /// localhost, 127.0.0.1, ::1, this host's name, the --listen-url address and the
    /// --advertise-url host. Applied at the next start.
    #[arg(
        long = "tls-san",
        env = "CONTIV_NETMASTER_TLS_SAN",
        value_delimiter = ','
    )]
    tls_san: Vec<String>,

    /// Events the watch cache keeps: agents resume from a revision within them (older ones
    /// list again), and a watcher that falls this many events behind is cut off and lists again.
    #[arg(
        long = "watch-history",
        env = "CONTIV_NETMASTER_WATCH_HISTORY",
        default_value_t = master::watch::DEFAULT_HISTORY
    )]
    watch_history: usize,

    /// Serve Prometheus/OpenMetrics metrics at http://ADDRESS/metrics (plain HTTP, no
    /// authentication, apart from the API: keep it on localhost or a management network;
    /// docs/security.md "Metrics"), or `off`. Port 0 takes a free port; the address bound is
    /// logged.
    #[arg(
        long = "metrics-listen",
        env = "CONTIV_NETMASTER_METRICS_LISTEN",
        default_value = "off"
    )]
    metrics_listen: String,

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

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Copy the state between the embedded store (--data-dir) and etcd (--etcd-endpoints),
    /// with no netmaster running on either. Node registrations are not copied (agents register
    /// again within a heartbeat).
    #[command(
        after_help = "Examples:\n  netmaster --data-dir /var/lib/contiv --etcd-endpoints http://10.0.0.1:2379 migrate --to etcd\n  netmaster --data-dir /var/lib/contiv --etcd-endpoints http://10.0.0.1:2379 migrate --to embedded"
    )]
    Migrate {
        /// Where to copy to: `etcd` (from the embedded store) or `embedded` (from etcd).
        #[arg(long = "to", value_parser = ["etcd", "embedded"])]
        to: String,
        /// Replace what the destination holds under /contiv/ (else it must hold nothing).
        #[arg(long)]
        force: bool,
    },
    /// Replace the cluster CA in the store (--data-dir's embedded store with no netmaster
    /// running on it, or --etcd-endpoints) with a new one. Every netmaster uses it from its next
    /// start; clients must then trust the new tls/ca.pem (docs/operations.md).
    #[command(name = "new-ca")]
    NewCa,
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

fn open_embedded(opts: &Opts) -> anyhow::Result<(Arc<dyn store::Store>, String)> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("create data dir {}", opts.data_dir.display()))?;
    let db = opts.data_dir.join("contiv.redb");
    let s = EmbeddedStore::open(EmbeddedOptions::new(&db))
        .with_context(|| format!("open embedded store {}", db.display()))?;
    Ok((Arc::new(s), db.display().to_string()))
}

/// Connects to etcd; with `wait`, keeps trying (etcd may come up after us) and says why.
async fn open_etcd(opts: &Opts, wait: bool) -> anyhow::Result<Arc<dyn store::Store>> {
    let mut eo = store::EtcdOptions::new(opts.etcd_endpoints.clone());
    eo.prefix = opts.etcd_prefix.clone();
    if let Some(ca) = &opts.etcd_cacert {
        eo.tls = Some(store::TlsOptions {
            ca: ca.clone(),
            cert: opts.etcd_cert.clone(),
            key: opts.etcd_key.clone(),
        });
    }
    loop {
        match store::EtcdStore::connect(eo.clone()).await {
            Ok(s) => return Ok(Arc::new(s)),
            Err(e @ store::StoreError::Open { .. }) => return Err(e).context("etcd options"),
            Err(e) if !wait => return Err(e).context("connect to etcd"),
            Err(e) => {
                tracing::error!(error = %e, "connect to etcd; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// The URL others reach us on: the listen address, with this host's name when it is 0.0.0.0.
fn default_advertise_url(local: std::net::SocketAddr, scheme: &str) -> String {
    if local.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        format!("{scheme}://{host}:{}", local.port())
    } else {
        format!("{scheme}://{local}")
    }
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    if let Some(Command::Migrate { to, force }) = &opts.command {
        if opts.etcd_endpoints.is_empty() {
            anyhow::bail!("migrate: give the etcd cluster with --etcd-endpoints A,B,C");
        }
        let (embedded, db) = open_embedded(&opts)?;
        let etcd = open_etcd(&opts, false).await?;
        let etcd_at = opts.etcd_endpoints.join(",");
        let (from, to, from_name, to_name) = if to == "etcd" {
            (embedded, etcd, db, etcd_at)
        } else {
            (etcd, embedded, etcd_at, db)
        };
        let n = master::migrate::copy(from.as_ref(), to.as_ref(), *force)
            .await
            .with_context(|| format!("migrate from {from_name} to {to_name}"))?;
        println!("copied {n} keys from {from_name} to {to_name}");
        return Ok(());
    }
    if let Some(Command::NewCa) = &opts.command {
        let store = if opts.etcd_endpoints.is_empty() {
            open_embedded(&opts)?.0
        } else {
            open_etcd(&opts, false).await?
        };
        let ca = master::tls::replace_cluster_ca(store.as_ref())
            .await
            .context("new-ca")?;
        println!(
            "new cluster CA, sha256 {}\nrestart every netmaster: each issues its certificate from it and writes it to tls/ca.pem under its data dir; then give that file to the clients (netctl --cacert, netplugin --netmaster-cacert)",
            ca.fingerprint().context("new-ca")?
        );
        return Ok(());
    }
    let (store, store_kind, where_): (Arc<dyn store::Store>, &'static str, String) =
        if opts.etcd_endpoints.is_empty() {
            let (s, db) = open_embedded(&opts)?;
            (s, "embedded", db)
        } else {
            (
                open_etcd(&opts, true).await?,
                "etcd",
                opts.etcd_endpoints.join(","),
            )
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
    let scheme = if opts.tls == "on" { "https" } else { "http" };
    let advertise_url = opts
        .advertise_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| default_advertise_url(local, scheme));
    let tls = if opts.tls == "on" {
        Some(setup_tls(&opts, store.as_ref(), local, &advertise_url).await?)
    } else {
        tracing::warn!(
            "TLS is off (--tls off): the API is plain http, and tokens, passwords and join tokens sent over the network can be read by anyone on the path"
        );
        None
    };
    let master = Master::open(
        store.clone(),
        MasterOptions {
            node_ttl: Duration::from_secs(opts.node_ttl.max(1)),
            listen: local.to_string(),
            store_kind,
            // Several masters can share etcd only: the embedded store is one process's file.
            election: (store_kind == "etcd").then(|| master::leader::ElectionOptions {
                ttl: Duration::from_secs(opts.leader_ttl.max(2)),
                advertise_url,
            }),
            node_grace: (opts.node_grace > 0).then(|| Duration::from_secs(opts.node_grace)),
            peer_ca: tls.as_ref().and_then(|t| t.peer_ca.clone()),
            watch_history: opts.watch_history.max(1),
        },
    )
    .await
    .context("load state")?;
    tokio::spawn(master.clone().keep_in_sync());
    if let Some(addr) = model::metrics::listen_address(&opts.metrics_listen) {
        serve_metrics(addr, master.clone()).await?;
    }
    let router = if opts.auth == "on" {
        let auth = master::auth::Auth::open(
            store,
            master::auth::AuthOptions {
                token_ttl: Duration::from_secs(opts.auth_token_ttl.max(1)),
                node_token_ttl: Duration::from_secs(opts.auth_node_token_ttl.max(1)),
                data_dir: opts.data_dir.clone(),
            },
        )
        .await
        .context("set up authentication")?;
        let api =
            master::auth::http::protect(api::router(master.clone()), auth.clone(), master.clone());
        master::ui::router(api, Some(auth), tls.is_some())
    } else {
        tracing::warn!(
            "authentication is off (--auth off): anyone who reaches the API may read and change every tenant's objects and register nodes"
        );
        master::ui::router(api::router(master.clone()), None, tls.is_some())
    };
    tokio::spawn(master.clone().follow_node_expiry());
    tokio::spawn(master.clone().campaign());
    tokio::spawn(master.clone().announce());
    tokio::spawn(master.clone().follow_store());
    tokio::spawn(master.clone().reclaim_dead_nodes());
    if let Some(path) = &opts.listen_unix {
        // A socket file left by a previous run would make bind fail.
        let _ = std::fs::remove_file(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let ul = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("listen on unix socket {}", path.display()))?;
        let router = router.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(JsonParseErrors::new(ul, Shape::Error), router).await {
                tracing::error!(error = %e, "serve unix socket");
            }
        });
        tracing::info!(socket = %path.display(), "netmaster serving on unix socket");
    }
    if let Some(path) = &opts.ready_file {
        write_ready_file(path, local)?;
    }
    tracing::info!(listen = %local, scheme, store = store_kind, at = %where_, "netmaster serving");
    // SIGTERM (or ^C): stop accepting, end every watch stream at once (agents resume on another
    // master from their revision), let the requests in flight finish, release the leadership.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let on_signal = {
        let (master, stopping) = (master.clone(), stopping.clone());
        async move {
            shutdown().await;
            tracing::info!(
                watchers = master.watch.watchers(),
                "stopping: ending the watch streams, finishing the writes in flight"
            );
            master.watch.close();
            stopping.notify_one();
        }
    };
    let serve = async {
        match tls {
            Some(t) => {
                let listener = master::tls::TlsListener::new(listener, t.config)
                    .context("read listen address")?;
                axum::serve(JsonParseErrors::new(listener, Shape::Error), router)
                    .with_graceful_shutdown(on_signal)
                    .await
                    .context("serve")
            }
            None => axum::serve(JsonParseErrors::new(listener, Shape::Error), router)
                .with_graceful_shutdown(on_signal)
                .await
                .context("serve"),
        }
    };
    // The drain is bounded: a client that holds its connection open past it is cut.
    tokio::select! {
        r = serve => r?,
        _ = async { stopping.notified().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("connections still open {DRAIN:?} after the stop signal: closing them");
        }
    }
    master.wait_writes(DRAIN).await;
    master.resign().await;
    for path in [&opts.listen_unix, &opts.ready_file].into_iter().flatten() {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("netmaster stopped");
    Ok(())
}

/// Binds the metrics address (a mistake in it stops netmaster at start) and serves it.
async fn serve_metrics(addr: &str, master: Arc<Master>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("listen for metrics on {addr} (in use? set --metrics-listen, or off)")
    })?;
    let bound = listener.local_addr().context("read the metrics address")?;
    let render: model::metrics::Render = Arc::new(move || {
        let master = master.clone();
        Box::pin(async move { master.render_metrics() })
    });
    tokio::spawn(async move {
        if let Err(e) = model::metrics::serve(listener, render).await {
            tracing::error!(error = %e, listen = %bound, "serve metrics");
        }
    });
    tracing::info!(listen = %bound, "serving metrics at http://{bound}/metrics");
    Ok(())
}

/// The server's TLS: `--tls-cert`, or a certificate the cluster CA (from the store, made by the
/// first master) issues for this master's names.
async fn setup_tls(
    opts: &Opts,
    store: &dyn store::Store,
    local: std::net::SocketAddr,
    advertise_url: &str,
) -> anyhow::Result<master::tls::ServerTls> {
    let ca = match &opts.tls_cert {
        Some(_) => None,
        None => Some(
            master::tls::cluster_ca(store, &opts.data_dir)
                .await
                .context("set up TLS: the cluster CA")?,
        ),
    };
    // The names others reach this master by: its listen address, the advertised URL's host
    // (where followers forward writes), and --tls-san.
    let mut sans = opts.tls_san.clone();
    if !local.ip().is_unspecified() {
        sans.push(local.ip().to_string());
    }
    if let Some(host) = reqwest::Url::parse(advertise_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    {
        sans.push(host);
    }
    let tls = master::tls::server_config(
        &master::tls::TlsOptions {
            cert: opts.tls_cert.clone(),
            key: opts.tls_key.clone(),
            client_ca: opts.tls_client_ca.clone(),
            peer_ca: opts.tls_ca.clone(),
            data_dir: opts.data_dir.clone(),
            sans,
        },
        ca.as_ref(),
    )
    .context("set up TLS")?;
    if let Some((ca, fp)) = &tls.generated_ca {
        tracing::info!(
            ca = %ca.display(),
            sha256 = %fp,
            "serving https with a certificate of the cluster CA: clients trust this CA file (netctl --cacert, netplugin --netmaster-cacert); check its fingerprint"
        );
    }
    Ok(tls)
}

/// Writes `local` to `path` through a temporary file and a rename, so that a reader never sees
/// a partial address.
fn write_ready_file(path: &std::path::Path, local: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{local}\n"))
        .with_context(|| format!("write ready file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write ready file {}", path.display()))
}

/// How long a stopping netmaster waits for its connections to close, and then for its writes in
/// flight to finish.
const DRAIN: Duration = Duration::from_millis(700);

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
