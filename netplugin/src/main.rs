//! netplugin: parse flags, connect to OVS and netmaster, serve the CNI socket and the Docker
//! network/IPAM driver socket.

use anyhow::Context;
use clap::{Parser, ValueEnum};
use netplugin::attach::CniMode;
use netplugin::cluster::{self, ClusterView};
use netplugin::datapath::{Datapath, DatapathType};
use netplugin::kernel::NetlinkKernel;
use netplugin::manager::{Manager, ManagerConfig};
use netplugin::supervise;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DatapathChoice {
    Auto,
    Kernel,
    Userspace,
}

/// The Contiv node agent: puts containers on Contiv networks through Open vSwitch.
#[derive(Parser, Debug)]
#[command(name = "netplugin", version)]
struct Opts {
    /// netmaster URL(s), comma-separated: https://host:9999, unix:///path/to/socket, or
    /// http://host:9999 for a netmaster run with --tls off.
    #[arg(
        long,
        env = "CONTIV_NETPLUGIN_NETMASTER",
        default_value = "https://127.0.0.1:9999"
    )]
    netmaster: String,
    /// A PEM file of CA certificates to trust for an https netmaster, besides the system's:
    /// netmaster's cluster CA, tls/ca.pem under its data dir (default: /var/lib/contiv/tls/ca.pem
    /// when it exists, on a master's host).
    #[arg(long = "netmaster-cacert", env = "CONTIV_NETPLUGIN_NETMASTER_CACERT", value_parser = path_or_empty())]
    netmaster_cacert: Option<std::path::PathBuf>,
    /// A file holding the cluster's join token (netmaster writes it to join-token under its data
    /// dir): the agent presents it to get its node credential. Needed when netmaster runs with
    /// --auth on.
    #[arg(long = "join-token-file", env = "CONTIV_NETPLUGIN_JOIN_TOKEN_FILE", value_parser = path_or_empty())]
    join_token_file: Option<std::path::PathBuf>,
    /// A file holding a user's API token for the Docker driver: with authentication on, it is
    /// what creates and deletes the Contiv networks of `docker network create -d contiv` (the
    /// node credential may not write networks). An admin's, or an ops user's authorized on the
    /// tenants Docker uses (`netctl token create`). Read at each use: rotate it by
    /// rewriting the file. Without it, Docker can only use networks made with netctl.
    #[arg(long = "docker-token-file", env = "CONTIV_NETPLUGIN_DOCKER_TOKEN_FILE", value_parser = path_or_empty())]
    docker_token_file: Option<std::path::PathBuf>,
    /// This node's name in the cluster.
    #[arg(long = "host", alias = "host-label", env = "CONTIV_NETPLUGIN_HOST")]
    host: Option<String>,
    /// The address other nodes reach this node's VXLAN endpoint at.
    #[arg(
        long = "vtep-ip",
        env = "CONTIV_NETPLUGIN_VTEP_IP",
        default_value = "127.0.0.1"
    )]
    vtep_ip: String,
    /// Removes what the agent made on this host for north-south (docs/operations.md
    /// "Uninstalling"): its iptables chains (`CONTIV-*`) and the jumps to them, the tenant
    /// router namespaces of --bridge and their ports, then exits. Run it with the agent
    /// stopped: a running agent makes them again.
    #[arg(long = "uninstall-northsouth")]
    uninstall_northsouth: bool,
    /// The NIC that carries the VTEP address. With the userspace datapath the agent makes it a
    /// port of the uplink bridge and moves the address there (OVS tunnels need that); with the
    /// kernel datapath it only sets the default MTU.
    #[arg(long = "vtep-intf", env = "CONTIV_NETPLUGIN_VTEP_INTF")]
    vtep_intf: Option<String>,
    /// The uplink bridge for --vtep-intf (userspace datapath).
    #[arg(
        long = "vtep-bridge",
        env = "CONTIV_NETPLUGIN_VTEP_BRIDGE",
        default_value = "contivUplink"
    )]
    vtep_bridge: String,
    /// OVSDB unix socket.
    #[arg(
        long = "ovsdb-sock",
        env = "CONTIV_NETPLUGIN_OVSDB_SOCK",
        default_value = "/var/run/openvswitch/db.sock"
    )]
    ovsdb_sock: PathBuf,
    /// OVS run directory, where ovs-vswitchd puts each bridge's OpenFlow socket (<bridge>.mgmt).
    #[arg(
        long = "ovs-rundir",
        env = "CONTIV_NETPLUGIN_OVS_RUNDIR",
        default_value = "/var/run/openvswitch"
    )]
    ovs_rundir: PathBuf,
    /// The integration bridge.
    #[arg(
        long,
        env = "CONTIV_NETPLUGIN_BRIDGE",
        default_value = "contivVxlanBridge"
    )]
    bridge: String,
    /// The socket the contiv CNI plugin talks to.
    #[arg(
        long = "cni-socket",
        env = "CONTIV_NETPLUGIN_CNI_SOCKET",
        default_value = "/run/contiv/cni.sock"
    )]
    cni_socket: PathBuf,
    /// The socket Docker finds the network and IPAM driver at; its file name (without `.sock`)
    /// is the driver's name (`docker network create -d contiv --ipam-driver contiv`). Empty:
    /// no Docker driver.
    #[arg(
        long = "docker-socket",
        env = "CONTIV_NETPLUGIN_DOCKER_SOCKET",
        default_value = "/run/docker/plugins/contiv.sock"
    )]
    docker_socket: String,
    /// Where the Docker driver keeps which Docker network and address pool maps to which
    /// Contiv network.
    #[arg(
        long = "docker-state",
        env = "CONTIV_NETPLUGIN_DOCKER_STATE",
        default_value = "/var/lib/contiv/docker-driver.json"
    )]
    docker_state: PathBuf,
    /// The scope the Docker driver announces: `local` (each engine keeps its own copy of a
    /// network; works without a cluster store and with swarm) or `global` (engines share a
    /// cluster store, Docker's classic multi-host mode).
    #[arg(
        long = "docker-scope",
        env = "CONTIV_NETPLUGIN_DOCKER_SCOPE",
        default_value = "local",
        value_parser = ["local", "global"]
    )]
    docker_scope: String,
    /// OVS datapath: the kernel module when present (auto), or the userspace datapath.
    #[arg(
        long,
        value_enum,
        env = "CONTIV_NETPLUGIN_DATAPATH",
        default_value = "auto"
    )]
    datapath: DatapathChoice,
    /// Pod interface MTU (a network config's `mtu` overrides it). Default: the MTU of
    /// --vtep-intf minus 50 (the VXLAN encapsulation), or 1450 without --vtep-intf.
    #[arg(long, env = "CONTIV_NETPLUGIN_MTU")]
    mtu: Option<u32>,
    /// Switch ports kept ready for CNI pods (0: none, each ADD makes its own veth and port).
    /// A pod then gets a macvlan of a pooled port instead of a veth, and ADD changes nothing
    /// on the host but flows (docs/decisions.md "Pooled ports").
    #[arg(
        long = "port-pool",
        env = "CONTIV_NETPLUGIN_PORT_POOL",
        default_value_t = 0
    )]
    port_pool: usize,
    /// CNI pods of one network share one switch port on this host, a trunk: each pod gets a
    /// VEPA macvlan of the trunk's other end, and ADD changes nothing on the host but flows,
    /// however many pods are there (docs/decisions.md "Network trunks"). Excludes --port-pool.
    #[arg(
        long = "trunks",
        env = "CONTIV_NETPLUGIN_TRUNKS",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    trunks: bool,
    /// Seconds a network trunk may serve no pod before it is deleted (a network whose pods are
    /// gone, or the network itself). Making it again costs the switch one reconfiguration.
    #[arg(
        long = "trunk-idle",
        env = "CONTIV_NETPLUGIN_TRUNK_IDLE",
        default_value_t = 300
    )]
    trunk_idle: u64,
    /// Where the pooled ports' and the trunks' pod ends wait: a network namespace, made if
    /// missing (its mount must outlive the agent: the host's mount namespace). Default:
    /// /run/netns/contiv-pool-<bridge>.
    #[arg(long = "pool-netns", env = "CONTIV_NETPLUGIN_POOL_NETNS")]
    pool_netns: Option<PathBuf>,
    /// Where the agent keeps which pod is on which trunk (a file per endpoint; must outlive an
    /// agent restart, not a reboot). Default: /run/contiv/netplugin-<bridge>.
    #[arg(long = "state-dir", env = "CONTIV_NETPLUGIN_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Kubernetes API server (https://host:port, or http://): when set, pods are placed by
    /// their io.contiv.tenant / io.contiv.network / io.contiv.net-group labels, with their
    /// namespace's as defaults. See also --k8s-in-cluster and --kubeconfig.
    #[arg(long = "k8s-api", env = "CONTIV_NETPLUGIN_K8S_API")]
    k8s_api: Option<String>,
    /// Reach the Kubernetes API as a pod does: KUBERNETES_SERVICE_HOST/PORT, with the service
    /// account's token and CA (or --k8s-token-file / --k8s-ca-file).
    #[arg(long = "k8s-in-cluster", env = "CONTIV_NETPLUGIN_K8S_IN_CLUSTER")]
    k8s_in_cluster: bool,
    /// A kubeconfig file (its current context) for the Kubernetes API.
    #[arg(long = "kubeconfig", env = "CONTIV_NETPLUGIN_KUBECONFIG", value_parser = path_or_empty())]
    kubeconfig: Option<PathBuf>,
    /// File holding a bearer token for the Kubernetes API (re-read about once a minute: service
    /// account tokens rotate).
    #[arg(long = "k8s-token-file", env = "CONTIV_NETPLUGIN_K8S_TOKEN_FILE", value_parser = path_or_empty())]
    k8s_token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the Kubernetes API server's certificate.
    #[arg(long = "k8s-ca-file", env = "CONTIV_NETPLUGIN_K8S_CA_FILE", value_parser = path_or_empty())]
    k8s_ca_file: Option<PathBuf>,
    /// Enforce Kubernetes NetworkPolicy (networking.k8s.io/v1) on this node's pods: the agent
    /// then watches every pod and the NetworkPolicies (RBAC: conf/kubernetes/rbac.yaml) and
    /// tracks every connection. Needs a Kubernetes API (--k8s-in-cluster, --kubeconfig or
    /// --k8s-api).
    #[arg(
        long = "k8s-network-policy",
        env = "CONTIV_NETPLUGIN_K8S_NETWORK_POLICY"
    )]
    k8s_network_policy: bool,
    /// This node's name in Kubernetes (the pods' spec.nodeName), whose pods the agent watches.
    /// Default: the agent's host name (--host).
    #[arg(long = "k8s-node-name", env = "CONTIV_NETPLUGIN_K8S_NODE_NAME")]
    k8s_node_name: Option<String>,
    /// Serve Prometheus/OpenMetrics metrics at http://ADDRESS/metrics (plain HTTP, no
    /// authentication: keep it on localhost or a management network; docs/security.md
    /// "Metrics"), or `off`. Port 0 takes a free port; the address bound is logged.
    #[arg(
        long = "metrics-listen",
        env = "CONTIV_NETPLUGIN_METRICS_LISTEN",
        default_value = "off"
    )]
    metrics_listen: String,
    /// Log level, or a tracing filter.
    #[arg(
        long = "log-level",
        env = "CONTIV_NETPLUGIN_LOG_LEVEL",
        default_value = "info"
    )]
    log_level: String,
    /// Log JSON lines.
    #[arg(long = "use-json-log", env = "CONTIV_NETPLUGIN_USE_JSON_LOG")]
    json_log: bool,
}

/// A path flag that may be given empty, meaning "none": the managed Docker plugin cannot unset
/// a setting, only empty it (conf/docker/config.json). [`Opts::without_empty_paths`] drops them.
fn path_or_empty() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

impl Opts {
    fn without_empty_paths(mut self) -> Self {
        for p in [
            &mut self.netmaster_cacert,
            &mut self.join_token_file,
            &mut self.docker_token_file,
            &mut self.k8s_token_file,
            &mut self.k8s_ca_file,
            &mut self.kubeconfig,
        ] {
            if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                *p = None;
            }
        }
        self
    }
}

#[tokio::main]
async fn main() {
    let opts = Opts::parse().without_empty_paths();
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
        eprintln!("netplugin: {e:#}");
        std::process::exit(1);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// How the agent reaches the Kubernetes API, if it does: one of --k8s-api, --k8s-in-cluster,
/// --kubeconfig (an empty value counts as unset, as for the path settings).
fn kube_source(opts: &Opts) -> anyhow::Result<Option<netplugin::k8s::ApiSource>> {
    use netplugin::k8s::ApiSource;
    let api = opts.k8s_api.as_ref().filter(|s| !s.is_empty());
    let kubeconfig = opts.kubeconfig.as_ref();
    let given = [api.is_some(), opts.k8s_in_cluster, kubeconfig.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        anyhow::bail!(
            "more than one of --k8s-api, --k8s-in-cluster and --kubeconfig (or their CONTIV_NETPLUGIN_* variables) given: choose one way to reach the Kubernetes API"
        );
    }
    let (token_file, ca_file) = (opts.k8s_token_file.clone(), opts.k8s_ca_file.clone());
    Ok(if let Some(url) = api {
        Some(ApiSource::Url {
            url: url.clone(),
            token_file,
            ca_file,
        })
    } else if opts.k8s_in_cluster {
        Some(ApiSource::in_cluster(
            |k| std::env::var(k).ok(),
            token_file,
            ca_file,
        )?)
    } else if let Some(path) = kubeconfig {
        if token_file.is_some() || ca_file.is_some() {
            anyhow::bail!(
                "--kubeconfig with --k8s-token-file or --k8s-ca-file: the kubeconfig names its own credentials; give one or the other"
            );
        }
        Some(ApiSource::Kubeconfig(path.clone()))
    } else {
        None
    })
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    // An empty --host (a managed plugin's unset setting) means the hostname too.
    let node = opts
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(hostname);
    // Before touching anything: bad Kubernetes settings or files are mistakes to report at once
    // (the watches start now and sync while the agent waits for netmaster).
    let k8s_node = opts.k8s_node_name.clone().unwrap_or_else(|| node.clone());
    let kube = match kube_source(&opts)? {
        None if opts.k8s_network_policy => anyhow::bail!(
            "--k8s-network-policy without a Kubernetes API: give --k8s-in-cluster, --kubeconfig or --k8s-api as well"
        ),
        None => None,
        Some(source) => Some(
            netplugin::k8s::KubeClient::start(&source, &k8s_node, opts.k8s_network_policy)
                .await
                .context("set up the Kubernetes API client")?,
        ),
    };
    // a bad token file is a mistake to report at once.
    let docker_token = match &opts.docker_token_file {
        None => None,
        Some(path) => {
            let client = model::Client::with_options(
                &[opts.netmaster.as_str()],
                &model::ClientOptions {
                    ca_file: opts.netmaster_cacert.clone(),
                    ..Default::default()
                },
            )
            .context("netmaster URL")?;
            Some(netplugin::docker::DockerToken::new(path.clone(), client)?)
        }
    };
    let kind = match opts.datapath {
        DatapathChoice::Auto => DatapathType::detect(),
        DatapathChoice::Kernel => DatapathType::Kernel,
        DatapathChoice::Userspace => DatapathType::Userspace,
    };
    tracing::info!(
        datapath = kind.ovs_name(),
        reason = if matches!(opts.datapath, DatapathChoice::Auto) {
            "auto: kernel module present?"
        } else {
            "set by --datapath"
        },
        "OVS datapath chosen ({})",
        if kind == DatapathType::Kernel {
            "kernel"
        } else {
            "userspace: no openvswitch kernel module"
        }
    );
    let dp = Datapath::connect(
        &opts.ovsdb_sock,
        opts.ovs_rundir.clone(),
        &opts.bridge,
        kind,
    )
    .await
    .with_context(|| {
        format!(
            "connect to OVSDB at {} (is ovsdb-server running? set --ovsdb-sock)",
            opts.ovsdb_sock.display()
        )
    })?;
    if opts.uninstall_northsouth {
        dp.load_ports()
            .await
            .with_context(|| format!("read the ports of bridge {}", opts.bridge))?;
        netplugin::northsouth::uninstall(&dp, &opts.bridge)
            .await
            .context("remove the north-south host side")?;
        tracing::info!(bridge = %opts.bridge, "north-south host side removed");
        return Ok(());
    }
    let kernel = Arc::new(NetlinkKernel::new().context("open netlink")?);
    let host = kernel.host_netlink();
    let vtep: std::net::IpAddr = opts.vtep_ip.parse().with_context(|| {
        format!(
            "--vtep-ip {}: not an IP address (give this node's underlay address)",
            opts.vtep_ip
        )
    })?;
    let mut underlay_mtu = None;
    if let Some(nic) = &opts.vtep_intf {
        underlay_mtu = Some(if kind == DatapathType::Userspace {
            netplugin::underlay::ensure_uplink(dp.vswitch(), &host, &opts.vtep_bridge, nic, vtep)
                .await
                .with_context(|| format!("set up uplink bridge {} on {nic}", opts.vtep_bridge))?
        } else {
            host.mtu(nic)
                .await?
                .with_context(|| format!("--vtep-intf {nic}: no such interface"))?
        });
    }
    let mtu = opts
        .mtu
        .unwrap_or_else(|| underlay_mtu.map_or(1450, |m| m.saturating_sub(50)));
    tracing::info!(mtu, "pod MTU");
    dp.ensure_bridge()
        .await
        .with_context(|| format!("set up bridge {}", opts.bridge))?;
    let client = model::Client::with_options(
        &[opts.netmaster.as_str()],
        &model::ClientOptions {
            ca_file: opts
                .netmaster_cacert
                .clone()
                .or_else(|| model::default_ca_file(&opts.netmaster)),
            ..Default::default()
        },
    )
    .context("netmaster URL")?;
    // Wait for netmaster: an agent may start first; say so once instead of failing.
    let mut warned = false;
    loop {
        match client.version().await {
            Ok(_) => break,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "waiting for netmaster");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    if let Some(path) = &opts.join_token_file {
        let join_token = std::fs::read_to_string(path)
            .with_context(|| format!("read the join token file {}", path.display()))?;
        netplugin::credential::join(&client, &node, &join_token)
            .await
            .with_context(|| {
                format!(
                    "join the cluster as node {node} with the token in {}",
                    path.display()
                )
            })?;
    }
    let side_netns = opts
        .pool_netns
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/run/netns/contiv-pool-{}", opts.bridge)));
    let mode = match (opts.trunks, opts.port_pool) {
        (true, n) if n > 0 => anyhow::bail!(
            "--trunks and --port-pool both given: choose one way to attach CNI pods (--port-pool keeps one identity per pod; --trunks is the cheaper for the switch)"
        ),
        (true, _) => CniMode::Trunks {
            side_netns,
            state_dir: opts
                .state_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("/run/contiv/netplugin-{}", opts.bridge))),
            idle: Duration::from_secs(opts.trunk_idle),
        },
        (false, 0) => CniMode::Veth,
        (false, size) => CniMode::Pool { side_netns, size },
    };
    tracing::info!(?mode, "how CNI pods are attached");
    if opts.trunks {
        tracing::warn!(
            "--trunks: the CNI pods of a network share one switch port, so a pod holding CAP_NET_RAW can send as a trunk-mate (its MAC and addresses together) and be judged as it by policy; use --port-pool where pods are not trusted with their network identity (docs/security.md \"Pod identity\")"
        );
    }
    let dp = Arc::new(dp);
    if let Some(addr) = model::metrics::listen_address(&opts.metrics_listen) {
        serve_metrics(addr, dp.clone()).await?;
    }
    if opts.k8s_network_policy {
        // Before the first flows: every connection is tracked from the start.
        dp.enable_netpol().await;
    }
    let m = Arc::new(
        Manager::new(
            client.clone(),
            kernel,
            dp.clone(),
            ManagerConfig {
                node: node.clone(),
                mtu,
            },
            mode,
        )
        .await?,
    );
    m.reconcile()
        .await
        .context("reconcile endpoints after start")?;
    {
        let (client, reg) = (
            client.clone(),
            model::agent::NodeRegistration {
                hostname: node.clone(),
                vtep_ip: opts.vtep_ip.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
        );
        supervise::forever("heartbeat", move || {
            cluster::heartbeat(client.clone(), reg.clone())
        });
    }
    let view = Arc::new(Mutex::new(ClusterView::default()));
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let (dp, client, node) = (dp.clone(), client.clone(), node.clone());
        supervise::forever("report counters", move || {
            cluster::report_counters(dp.clone(), client.clone(), node.clone())
        });
    }
    {
        let (view, changed, me) = (view.clone(), changed.clone(), node.clone());
        supervise::forever("follow netmaster", move || {
            cluster::follow(
                client.clone(),
                Some(me.clone()),
                view.clone(),
                changed.clone(),
            )
        });
    }
    {
        let dp = dp.clone();
        supervise::forever("program the cluster", move || {
            cluster::reconcile(dp.clone(), node.clone(), view.clone(), changed.clone())
        });
    }
    {
        // The way out of the networks: tenant routers, the host's routes and chains.
        let (dp, bridge) = (dp.clone(), opts.bridge.clone());
        supervise::forever("north-south", move || {
            netplugin::northsouth::NorthSouth::new(dp.clone(), &bridge, mtu)
                .with_node_address(vtep)
                .run()
        });
    }
    {
        let dp = dp.clone();
        supervise::forever("watch ovs-vswitchd", move || watch_vswitchd(dp.clone()));
    }
    {
        let m = m.clone();
        supervise::forever("reap links", move || {
            let m = m.clone();
            async move { m.reap_links().await }
        });
    }
    {
        let m = m.clone();
        supervise::forever("attachment upkeep", move || {
            let m = m.clone();
            async move { m.upkeep().await }
        });
    }
    {
        let dp = dp.clone();
        supervise::spawn("watch OpenFlow port numbers", move || {
            let dp = dp.clone();
            async move {
                match dp.watch_ofports().await {
                    // The OVSDB client shut down: the agent is stopping.
                    Ok(()) => supervise::Exit::Done,
                    Err(e) => {
                        tracing::error!(error = %e, "watch the OpenFlow port numbers of endpoint ports");
                        supervise::Exit::Restart
                    }
                }
            }
        });
    }
    if opts.k8s_network_policy
        && let Some(kube) = &kube
    {
        let (kube, dp, node) = (kube.clone(), dp.clone(), k8s_node.clone());
        supervise::forever("enforce NetworkPolicy", move || {
            netplugin::netpol::follow(kube.clone(), dp.clone(), node.clone())
        });
    }
    if kind == DatapathType::Userspace {
        let dp = dp.clone();
        supervise::forever("keep tunnel neighbors", move || {
            keep_tunnel_neighbors(dp.clone())
        });
    }
    let docker = async {
        if opts.docker_socket.is_empty() {
            return std::future::pending().await;
        }
        let d = netplugin::docker::DockerDriver::new(
            m.clone(),
            &opts.docker_scope,
            opts.docker_state.clone(),
            docker_token,
        )?;
        docker_driver::serve(Arc::new(d), opts.docker_socket.as_ref())
            .await
            .with_context(|| format!("serve the Docker driver on {}", opts.docker_socket))
    };
    tokio::select! {
        r = netplugin::cni_server::serve(Arc::new(netplugin::cni_server::CniServer { manager: m.clone(), kube }), &opts.cni_socket) => r.context("CNI server")?,
        r = docker => r?,
        _ = shutdown() => tracing::info!("netplugin stopping; pods keep their networking"),
    }
    let _ = std::fs::remove_file(&opts.cni_socket);
    if !opts.docker_socket.is_empty() {
        // Docker must not find a socket nobody answers on.
        let _ = std::fs::remove_file(&opts.docker_socket);
    }
    Ok(())
}

/// Binds the metrics address (a mistake in it stops the agent at start) and serves it.
async fn serve_metrics(addr: &str, dp: Arc<Datapath>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("listen for metrics on {addr} (in use? set --metrics-listen, or off)")
    })?;
    let bound = listener.local_addr().context("read the metrics address")?;
    let render: model::metrics::Render = Arc::new(move || {
        let dp = dp.clone();
        Box::pin(async move { netplugin::metrics::get().render(&dp).await })
    });
    tokio::spawn(async move {
        if let Err(e) = model::metrics::serve(listener, render).await {
            tracing::error!(error = %e, listen = %bound, "serve metrics");
        }
    });
    tracing::info!(listen = %bound, "serving metrics at http://{bound}/metrics");
    Ok(())
}

/// ovs-vswitchd keeps no flows across a restart: when it comes back (its bridge's management
/// socket is re-created), install everything again at once. Polling a stat is cheap and catches
/// a restart within 10 ms.
async fn watch_vswitchd(dp: Arc<Datapath>) {
    use std::os::unix::fs::MetadataExt;
    let sock = dp.mgmt_socket();
    // A restarted vswitchd unlinks and binds its socket again. The inode number alone does not
    // show that: ext4 hands the freed number straight back to the new socket. The change time
    // (to the nanosecond) does.
    let identity = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|md| (md.ino(), md.ctime(), md.ctime_nsec()))
            .ok()
    };
    let mut last = identity(&sock);
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = identity(&sock);
        if now.is_none() || now == last {
            continue;
        }
        tracing::warn!("ovs-vswitchd restarted: installing every flow again");
        match dp.resync().await {
            Ok(()) => {
                tracing::info!("flows restored after ovs-vswitchd restart");
                last = now;
                // A vswitchd still settling can lose what was installed early: check once.
                tokio::time::sleep(Duration::from_millis(300)).await;
                if !matches!(dp.flows_intact().await, Ok(true)) {
                    tracing::warn!("flows incomplete after ovs-vswitchd restart: installing again");
                    if let Err(e) = dp.resync().await {
                        tracing::warn!(error = %e, "restore flows after ovs-vswitchd restart");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "restore flows after ovs-vswitchd restart; retrying")
            }
        }
    }
}

/// Refreshes the userspace datapath's tunnel neighbor entries before they age out, so a quiet
/// tunnel does not lose its first packets when traffic resumes.
async fn keep_tunnel_neighbors(dp: Arc<Datapath>) {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        for vtep in dp.peer_vteps().await {
            netplugin::datapath::prime_neighbor(&vtep);
        }
    }
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
