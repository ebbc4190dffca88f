//! The endpoint manager: everything that puts a container on a Contiv network and takes it off
//! again. The CNI server and the Docker driver both call it, so a container gets the same
//! port, flows and addresses whichever runtime asked.
//!
//! ADD is a sequence of steps, each with an undo; a failure runs the undos in reverse, so a
//! failed ADD leaves no veth, port, flow or address behind. DEL needs nothing but the container id
//! and interface name: every name is derived from them. Operations on one endpoint are
//! serialized; different endpoints proceed in parallel.

use crate::datapath::{Datapath, DatapathType, host_ifname, ids};
use crate::netlink::{LinkError, Netlink, Netns, parse_mac, prepare_pod_link};
use crate::pool::{self, Bound, Pair, Pool};
use crate::steps;
use crate::trunk::{Binding, Trunk, Trunks};
use model::ClientError;
use model::agent::{Endpoint, EndpointRequest};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// What kind of failure, so each front end can map it to its protocol (CNI codes, Docker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request names something that does not exist or breaks a rule: fix the config.
    InvalidConfig,
    /// The runtime's environment is wrong (netns path, interface name).
    InvalidEnv,
    /// A dependency is unreachable: retrying later may work.
    TryAgain,
    /// The agent cannot serve (STATUS).
    Unavailable,
    /// Anything else.
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{msg}")]
pub struct ManagerError {
    pub kind: ErrorKind,
    pub msg: String,
    pub details: String,
}

impl ManagerError {
    fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        ManagerError {
            kind,
            msg: msg.into(),
            details: String::new(),
        }
    }
    fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }
}

impl From<LinkError> for ManagerError {
    fn from(e: LinkError) -> Self {
        let kind = match e {
            LinkError::Netns { .. } => ErrorKind::InvalidEnv,
            LinkError::Netlink { .. } => ErrorKind::Internal,
        };
        ManagerError::new(kind, e.to_string())
    }
}

impl From<crate::datapath::DatapathError> for ManagerError {
    fn from(e: crate::datapath::DatapathError) -> Self {
        ManagerError::new(ErrorKind::Internal, e.to_string())
    }
}

fn master_err(action: &str, e: ClientError) -> ManagerError {
    match &e {
        ClientError::Unreachable { .. } => {
            ManagerError::new(ErrorKind::TryAgain, format!("{action}: {e}"))
        }
        ClientError::Api { status, .. } if *status == 503 => {
            ManagerError::new(ErrorKind::TryAgain, format!("{action}: {e}"))
        }
        ClientError::Api { status, .. } if (400..500).contains(status) => {
            ManagerError::new(ErrorKind::InvalidConfig, format!("{action}: {e}"))
        }
        _ => ManagerError::new(ErrorKind::Internal, format!("{action}: {e}")),
    }
}

/// Where a container goes and who it is.
#[derive(Debug, Clone, Default)]
pub struct AddRequest {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub tenant: String,
    pub network: String,
    pub group: String,
    pub container_name: String,
    pub labels: BTreeMap<String, String>,
    /// Overrides the agent's MTU.
    pub mtu: Option<u32>,
    /// A requested IPv4 address.
    pub ip: Option<String>,
    /// The runtime's name for this attachment's network config (CNI `name`), to scope GC.
    pub attachment_network: String,
    /// The netmaster endpoint id, when the runtime already holds one (Docker's IPAM reserved
    /// the address first). Default: derived from the container id and interface name.
    pub endpoint_id: Option<String>,
    /// Docker mode: the container side stays in the agent's namespace, unconfigured, named
    /// `ifname`; the runtime moves it into the container and sets its addresses and routes.
    /// `netns` is ignored.
    pub peer_in_host: bool,
}

/// A plumbed endpoint.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub endpoint: Endpoint,
    pub host_ifname: String,
    pub host_mac: String,
    pub ifname: String,
    pub mac: String,
    pub netns: PathBuf,
    pub mtu: u32,
}

#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub node: String,
    pub mtu: u32,
}

pub struct Manager {
    master: model::Client,
    pub dp: Datapath,
    host: Netlink,
    cfg: ManagerConfig,
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// Removed endpoints whose port and host veth are still to delete, (endpoint id, name),
    /// for [`Manager::reap_links`]. Changed only under the endpoint's lock: a re-ADD takes its
    /// name out. The veths are in [`GRAVEYARD_GROUP`] too, which survives an agent restart.
    graveyard: Mutex<BTreeSet<(String, String)>>,
    /// Wakes [`Manager::reap_links`].
    reap: tokio::sync::Notify,
    /// ADDs and DELs in progress, and a signal at each start and end: the reaper waits for a
    /// lull in them.
    busy: AtomicUsize,
    activity: tokio::sync::Notify,
    /// Ports made ahead of time for CNI pods (`--port-pool`), if any.
    pool: Option<Arc<Pool>>,
    /// Network trunks for CNI pods (`--trunks`), if on.
    trunks: Option<Arc<Trunks>>,
}

/// How long the reaper waits for a lull in ADDs and DELs before deleting queued ports and
/// veths, and for how long at most (a host that never quiets down still gets them deleted).
const REAP_QUIET: Duration = Duration::from_millis(20);
const REAP_MAX_DELAY: Duration = Duration::from_secs(2);
/// Ports the reaper deletes between two lulls: each stalls ovs-vswitchd for a grace period
/// (see [`Datapath::remove_port`]), so a call that comes meanwhile waits for a few at most.
const REAP_CHUNK: usize = 4;

/// Counts a call in progress (see `Manager::busy`).
struct Busy<'a>(&'a Manager);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.activity.notify_one();
    }
}

/// The link group (`IFLA_GROUP`) of host veths whose endpoint is gone, waiting for
/// [`Manager::reap_links`] to delete their ports and then them, in one batch. An arbitrary
/// number ("cnv"), far from the groups people number by hand; only this agent's veths are ever
/// put in it.
pub const GRAVEYARD_GROUP: u32 = 0x00636e76;

/// The cluster-wide endpoint id of a container's interface.
pub fn endpoint_id(container_id: &str, ifname: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let id = format!("{}-{}", clean(container_id), clean(ifname));
    if id.len() <= 128 {
        id
    } else {
        format!(
            "{}-{:016x}",
            &id[..100],
            crate::datapath::fnv1a(id.as_bytes())
        )
    }
}

/// What an ADD on a shared-lower attachment (pooled port, trunk) returns: `host` is the
/// switch port's (name, MAC).
fn attachment(req: &AddRequest, ep: Endpoint, host: (&str, &str), mtu: u32) -> Attachment {
    Attachment {
        mac: ep.mac_address.clone(),
        endpoint: ep,
        host_ifname: host.0.to_string(),
        host_mac: host.1.to_string(),
        ifname: req.ifname.clone(),
        netns: req.netns.clone(),
        mtu,
    }
}

fn log_added(ep_id: &str, ep: &Endpoint, port: &str) {
    tracing::info!(endpoint = %ep_id, ip = %ep.ip_address, network = %format!("{}:{}", ep.tenant_name, ep.network_name), port, "endpoint added");
}

/// The endpoint's MAC address as bytes.
fn endpoint_mac(ep: &Endpoint) -> Result<[u8; 6], ManagerError> {
    parse_mac(&ep.mac_address).ok_or_else(|| {
        ManagerError::new(
            ErrorKind::Internal,
            format!("netmaster gave a bad MAC {}", ep.mac_address),
        )
    })
}

/// Deletes interface `ifname` of the namespace at `netns` if both are there and it is a pod's
/// interface on a pooled port or a trunk (a macvlan) whose lower link (its index in the side
/// namespace) `ours` accepts. Whether it deleted one.
async fn delete_pod_link(
    netns: &std::path::Path,
    ifname: &str,
    ours: impl FnOnce(u32) -> bool,
) -> Result<bool, LinkError> {
    let Ok(ns) = Netns::open(netns) else {
        return Ok(false); // The namespace is gone, and its interfaces with it.
    };
    let pod = Netlink::in_netns(&ns)?;
    match pod.macvlan_lower(ifname).await? {
        Some((lower, _)) if ours(lower) => pod.delete(ifname).await,
        _ => Ok(false),
    }
}

/// Deletes a released endpoint's interface if its namespace is still there and the interface
/// still carries the endpoint's alias (a new pod's interface of the same name has another, or
/// none yet). Whether it deleted one.
async fn delete_trunk_leftover(left: &crate::trunk::Leftover) -> Result<bool, LinkError> {
    let Ok(ns) = Netns::open(&left.netns) else {
        return Ok(false); // The namespace is gone, and its interfaces with it.
    };
    let pod = Netlink::in_netns(&ns)?;
    let old = pod
        .links_with_alias()
        .await?
        .into_iter()
        .find(|l| l.name == left.ifname && l.alias == left.alias);
    match old {
        // By index: a link made since under the same name is another.
        Some(l) => pod.delete_index(l.index).await,
        None => Ok(false),
    }
}

enum Undo {
    MasterEndpoint(String),
    /// A pooled port given to the ADD: back to the pool, free.
    Pair(Pair),
    /// The pod's interface on a pooled port: (namespace, name).
    PodLink(PathBuf, String),
    /// An endpoint's flows.
    Flows(String),
    /// An endpoint's trunk record.
    Binding(String),
    HostLink(String),
    Port {
        ifname: String,
        endpoint: String,
    },
}

impl Manager {
    pub fn new(master: model::Client, dp: Datapath, host: Netlink, cfg: ManagerConfig) -> Self {
        Manager {
            master,
            dp,
            host,
            cfg,
            locks: Mutex::new(HashMap::new()),
            graveyard: Mutex::new(BTreeSet::new()),
            reap: tokio::sync::Notify::new(),
            busy: AtomicUsize::new(0),
            activity: tokio::sync::Notify::new(),
            pool: None,
            trunks: None,
        }
    }

    /// Serves CNI pods on network trunks (see `crate::trunk`).
    pub fn with_trunks(mut self, trunks: Trunks) -> Self {
        self.trunks = Some(Arc::new(trunks));
        self
    }

    /// Serves CNI pods from a port pool (see `crate::pool`).
    pub fn with_pool(mut self, pool: Pool) -> Self {
        self.pool = Some(Arc::new(pool));
        self
    }

    /// Keeps the port pool filled. Runs forever (returns at once without a pool).
    pub async fn refill_pool(&self) {
        if let Some(p) = &self.pool {
            p.refill(&self.host, &self.dp).await;
        }
    }

    fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.activity.notify_one();
        Busy(self)
    }

    fn graveyard(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        self.graveyard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes the ports and host veths of removed endpoints (the veths' peers go with them):
    /// at the first lull in ADDs and DELs ([`REAP_QUIET`] without one, at most
    /// [`REAP_MAX_DELAY`] after a DEL), the ports a few at a time, then every queued veth in
    /// one kernel batch; first, what a previous agent left queued. Pooled ports beyond twice
    /// what the pool keeps are deleted the same way. Runs forever.
    ///
    /// Why not in the DEL: both are dear for the host, not for the pod. Closing a port's packet
    /// socket stalls ovs-vswitchd's main loop for an RCU grace period (8-16 ms here), and every
    /// OpenFlow request, other calls' flows included, waits behind it; deleting a veth holds
    /// the RTNL lock through one (~17 ms), and every link operation on the host waits behind
    /// it. A lull keeps that off the calls, and a batch pays the veths' grace period once.
    /// Why it is safe: a DEL removes the endpoint's flows and releases its address before it
    /// returns, so nothing reaches the port; a re-ADD of the endpoint takes it out of the queue
    /// (under the endpoint's lock, which the reaper takes too) and deletes the old port and veth
    /// itself, so the reaper never touches a live one (docs/decisions.md).
    pub async fn reap_links(&self) {
        loop {
            // Released endpoints' interfaces on trunks whose namespace outlived the DEL.
            if let Some(t) = &self.trunks {
                for l in t.take_leftovers() {
                    if let Err(e) = delete_trunk_leftover(&l).await {
                        tracing::warn!(ifname = %l.ifname, netns = %l.netns.display(), error = %e, "delete a removed endpoint's interface");
                    }
                }
            }
            // Pooled ports beyond what the pool keeps (a burst of pods has ended) go too.
            if let Some(pool) = &self.pool {
                let surplus = pool.take_surplus();
                if !surplus.is_empty() {
                    tracing::info!(ports = surplus.len(), "deleting surplus pooled ports");
                }
                for p in surplus {
                    self.graveyard().insert((String::new(), p.name));
                }
            }
            let queued: Vec<(String, String)> = self.graveyard().iter().cloned().collect();
            for (i, chunk) in queued.chunks(REAP_CHUNK).enumerate() {
                if i > 0 {
                    self.lull().await;
                }
                for key in chunk {
                    let _l = self.lock(&key.0).await;
                    if !self.graveyard().contains(key) {
                        continue; // Re-ADDed meanwhile: not ours to delete.
                    }
                    match self.dp.remove_port(&key.1).await {
                        Ok(()) => {
                            // Into the group before out of the queue: an ADD that finds the
                            // peer in its way (`delete_queued_peer`) sees it in one or the
                            // other at every instant.
                            if let Err(e) = self.host.set_group(&key.1, GRAVEYARD_GROUP).await {
                                tracing::warn!(port = %key.1, error = %e, "queue a removed endpoint's veth for deletion");
                            }
                            self.graveyard().remove(key);
                        }
                        Err(e) => {
                            tracing::warn!(port = %key.1, error = %e, "delete a removed endpoint's port; retrying at the next DEL")
                        }
                    }
                }
            }
            match self.host.delete_group(GRAVEYARD_GROUP).await {
                Ok(true) => tracing::debug!("deleted the veths of removed endpoints"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "delete the veths of removed endpoints; retrying at the next DEL")
                }
            }
            // A DEL that comes while the reaper works leaves a permit: the next round starts
            // after the next lull, with everything queued meanwhile.
            self.reap.notified().await;
            self.lull().await;
        }
    }

    /// Deletes network trunks that have served no endpoint for `idle`, checking a few times
    /// per `idle`. Runs forever (returns at once without trunks).
    pub async fn reap_trunks(&self, idle: Duration) {
        let Some(trunks) = &self.trunks else {
            return;
        };
        // At least a second: an ADD between getting its trunk and recording its endpoint must
        // never see the trunk deleted under it.
        let idle = idle.max(Duration::from_secs(1));
        let tick = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            tokio::time::sleep(tick).await;
            self.lull().await;
            let gone = trunks.delete_idle(idle, &self.host, &self.dp).await;
            if !gone.is_empty() {
                self.dp.unset_trunks(&gone).await;
            }
        }
    }

    /// Returns at the first [`REAP_QUIET`] without ADDs or DELs, or after [`REAP_MAX_DELAY`].
    async fn lull(&self) {
        let since = tokio::time::Instant::now();
        while since.elapsed() < REAP_MAX_DELAY {
            let quiet = tokio::time::timeout(REAP_QUIET, self.activity.notified())
                .await
                .is_err();
            if quiet && self.busy.load(Ordering::SeqCst) == 0 {
                return;
            }
        }
    }

    pub fn master(&self) -> &model::Client {
        &self.master
    }

    /// This node's name in the cluster.
    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    /// A per-endpoint lock; entries go away with their last user.
    async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.retain(|_, w| w.strong_count() > 0);
            match locks.get(key).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key.to_string(), Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }

    async fn run_undo(&self, steps: Vec<Undo>) {
        for s in steps.into_iter().rev() {
            let r = match &s {
                Undo::MasterEndpoint(id) => self
                    .master
                    .delete_endpoint(id)
                    .await
                    .map_err(|e| e.to_string()),
                Undo::HostLink(name) => self
                    .host
                    .delete(name)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Undo::Port { ifname, endpoint } => self
                    .dp
                    .remove_endpoint(ifname, endpoint)
                    .await
                    .map_err(|e| e.to_string()),
                Undo::Pair(pair) => match &self.pool {
                    Some(p) => p.free(pair.clone()).await.map_err(|e| e.to_string()),
                    None => Ok(()),
                },
                Undo::Binding(id) => {
                    if let Some(t) = &self.trunks {
                        t.unbind(id);
                    }
                    Ok(())
                }
                Undo::Flows(id) => self
                    .dp
                    .remove_endpoint_flows(id)
                    .await
                    .map_err(|e| e.to_string()),
                Undo::PodLink(netns, ifname) => delete_pod_link(netns, ifname, |_| true)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "undo a failed ADD step: something may be left behind");
            }
        }
    }

    pub async fn add(&self, req: &AddRequest) -> Result<Attachment, ManagerError> {
        let ep_id = req
            .endpoint_id
            .clone()
            .unwrap_or_else(|| endpoint_id(&req.container_id, &req.ifname));
        let _b = self.busy();
        let _l = self.lock(&ep_id).await;
        steps::mark("lock");
        let mut undo = Vec::new();
        match self.add_steps(req, &ep_id, &mut undo).await {
            Ok(a) => Ok(a),
            Err(e) => {
                self.run_undo(undo).await;
                Err(e)
            }
        }
    }

    async fn add_steps(
        &self,
        req: &AddRequest,
        ep_id: &str,
        undo: &mut Vec<Undo>,
    ) -> Result<Attachment, ManagerError> {
        // Docker mode: the peer is born here, in the agent's own namespace, for the runtime to
        // move (the runtime's namespace must be the agent's: dockerd runs beside it).
        let netns = if req.peer_in_host {
            PathBuf::from("/proc/self/ns/net")
        } else {
            req.netns.clone()
        };
        let ns = Netns::open(&netns).map_err(|e| {
            ManagerError::new(ErrorKind::InvalidEnv, e.to_string())
                .details("CNI_NETNS must be the path of the pod's network namespace, e.g. /var/run/netns/<name> or /proc/<pid>/ns/net")
        })?;
        if req.ifname.is_empty() || req.ifname.len() > 15 || req.ifname.contains(['/', ' ', ':']) {
            return Err(ManagerError::new(
                ErrorKind::InvalidEnv,
                format!(
                    "interface name '{}' is not valid: 1-15 characters, no '/', ':' or spaces",
                    req.ifname
                ),
            ));
        }
        let ep_id = ep_id.to_string();
        let host_if = host_ifname(&ep_id);
        let mtu = req.mtu.unwrap_or(self.cfg.mtu);

        if !req.peer_in_host
            && let Some(trunks) = &self.trunks
            && mtu <= trunks.mtu
            && self.dp.endpoint_port(&host_if).is_none()
        {
            return self.add_trunked(trunks, req, &ep_id, &ns, mtu, undo).await;
        }
        if !req.peer_in_host
            && let Some(pool) = &self.pool
            && mtu <= pool.mtu
            && self.dp.endpoint_port(&host_if).is_none()
        {
            return self.add_pooled(pool, req, &ep_id, &ns, mtu, undo).await;
        }
        if req.peer_in_host {
            // A repeated CreateEndpoint, or one after a crash: start from a clean slate (the
            // runtime has not moved the peer yet, or it would not ask again).
            self.dp.remove_endpoint(&host_if, &ep_id).await?;
        } else if let Some(a) = self.existing(req, &ep_id, &host_if, &ns, mtu).await? {
            tracing::info!(endpoint = %ep_id, "ADD of an existing attachment: returning it");
            return Ok(a);
        }
        steps::mark("existing");

        let ep = self.create_master_endpoint(req, &ep_id).await?;
        undo.push(Undo::MasterEndpoint(ep_id.clone()));
        steps::mark("master");

        // A port and host veth left by a DEL (queued for the reaper) or a crashed earlier
        // attempt would be in the way: they are ours (the name derives from this endpoint id),
        // so remove them, and keep the reaper off the name. A port the repeat-ADD check did not
        // take as a live attachment is stale: a new veth must get a new port.
        self.graveyard().remove(&(ep_id.clone(), host_if.clone()));
        if self.dp.endpoint_port(&host_if).is_some() {
            self.dp.remove_endpoint(&host_if, &ep_id).await?;
        }
        self.host.delete(&host_if).await?;
        let mac = endpoint_mac(&ep)?;
        if let Err(e) = self
            .host
            .create_veth(&host_if, &req.ifname, mac, mtu, &ns)
            .await
        {
            // The pod may still hold the peer of a veth a DEL queued for deletion (the same
            // namespace ADDed again under another container id): delete that one now, retry.
            if !self.delete_queued_peer(&ns, &req.ifname).await? {
                return Err(e.into());
            }
            self.host
                .create_veth(&host_if, &req.ifname, mac, mtu, &ns)
                .await?;
        }
        undo.push(Undo::HostLink(host_if.clone()));
        steps::mark("veth");

        // The host side is only a switch port: without IPv6 it sends the pod no router
        // solicitations or MLD reports of its own (and skips address setup work).
        if let Err(e) = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6"),
            "1",
        ) {
            tracing::debug!(port = %host_if, error = %e, "disable IPv6 on the host side");
        }
        // Up before the port is added: ovs-vswitchd, setting up a new port, writes the link's
        // flags back as it read them plus promiscuous mode, so a link brought up meanwhile
        // could go down again (seen with Docker, whose ADD has no pod side to configure).
        let host_idx = self.host.index(&host_if).await?.ok_or_else(|| {
            ManagerError::new(
                ErrorKind::Internal,
                format!("host interface {host_if} vanished"),
            )
        })?;
        self.host.set_up(&host_if, host_idx).await?;
        steps::mark("host_up");
        // The port before the pod's side: ovs-vswitchd sets it up (opens the veth,
        // reconfigures the bridge) while the pod's side is configured, instead of while the
        // flows wait for it.
        let mut extra = BTreeMap::new();
        extra.insert(ids::CONTAINER.to_string(), req.container_id.clone());
        extra.insert(ids::IFNAME.to_string(), req.ifname.clone());
        extra.insert(ids::NETNS.to_string(), req.netns.display().to_string());
        extra.insert(ids::CNI_NETWORK.to_string(), req.attachment_network.clone());
        undo.push(Undo::Port {
            ifname: host_if.clone(),
            endpoint: ep_id.clone(),
        });
        let ofport = self.dp.add_endpoint_port(&host_if, &ep, &extra).await?;

        if req.peer_in_host {
            // Before the runtime moves it: the setting travels with the link (IPv6 is the
            // runtime's business: Docker sets it by the network's IPv6 setting).
            prepare_pod_link(
                &ns,
                &req.ifname,
                self.dp.kind == DatapathType::Userspace,
                false,
            )?;
        } else {
            let pod = self
                .prepare_pod_side(
                    &ns,
                    &req.ifname,
                    self.dp.kind == DatapathType::Userspace,
                    ep.ipv6_address.is_empty(),
                )
                .await?;
            self.finish_pod_side(&req.ifname, pod, &ep).await?;
        }
        steps::mark("pod_side");
        self.dp.program_endpoint(ofport, &ep).await?;
        steps::mark("flows");
        let host_mac = self.host.mac(&host_if).await?.unwrap_or_default();
        steps::mark("host_mac");
        log_added(&ep_id, &ep, &host_if);
        Ok(Attachment {
            mac: ep.mac_address.clone(),
            endpoint: ep,
            host_ifname: host_if,
            host_mac,
            ifname: req.ifname.clone(),
            netns: req.netns.clone(),
            mtu,
        })
    }

    /// An ADD served from the port pool: the pod gets a passthru macvlan of a pooled port's
    /// waiting end (see `crate::pool`); nothing on the host or in OVS changes but flows.
    async fn add_pooled(
        &self,
        pool: &Pool,
        req: &AddRequest,
        ep_id: &str,
        ns: &Netns,
        mtu: u32,
        undo: &mut Vec<Undo>,
    ) -> Result<Attachment, ManagerError> {
        if let Some(b) = pool.bound(ep_id) {
            // The pod's interface is the one on its port (a restarted agent knows the port, not
            // the namespace's path).
            if b.ifname == req.ifname
                && Netlink::in_netns(ns)?.passthru_lower(&req.ifname).await? == Some(b.pair.index)
                && let Ok(ep) = self.master.get_endpoint(ep_id).await
            {
                tracing::info!(endpoint = %ep_id, "ADD of an existing attachment: returning it");
                pool.bind(
                    ep_id,
                    Bound {
                        netns: req.netns.clone(),
                        ..b.clone()
                    },
                );
                return Ok(attachment(req, ep, (&b.pair.name, &b.pair.host_mac), mtu));
            }
            // The pod's interface is gone (a new namespace, say): start again.
            self.release_pooled(pool, ep_id).await?;
        }
        steps::mark("existing");
        // The address from netmaster and the pod's interface on a pooled port at the same
        // time: neither needs the other until the interface gets its MAC and addresses.
        let (ep, got) = tokio::join!(self.create_master_endpoint(req, ep_id), async {
            let pair = self.hand_over(pool, &req.ifname, mtu, ns).await?;
            steps::mark("macvlan");
            // IPv6 off until the endpoint shows its network has it (most have not).
            let pod = self.prepare_pod_side(ns, &req.ifname, false, true).await;
            Ok::<_, ManagerError>((pair, pod))
        });
        if ep.is_ok() {
            undo.push(Undo::MasterEndpoint(ep_id.to_string()));
        }
        let (pair, pod) = got?;
        undo.push(Undo::Pair(pair.clone()));
        undo.push(Undo::PodLink(req.netns.clone(), req.ifname.clone()));
        let (ep, pod) = (ep?, pod?);
        steps::mark("master");
        let mac = endpoint_mac(&ep)?;
        // The macvlan takes its lower link's MAC (passthru), now as later.
        pool.nl
            .set_alias_mac(
                pair.index,
                &pool::alias(ep_id, &req.attachment_network),
                Some(mac),
            )
            .await?;
        self.finish_macvlan_pod_side(ns, &req.ifname, pod, &ep)
            .await?;
        steps::mark("pod_side");
        undo.push(Undo::Flows(ep_id.to_string()));
        self.dp.program_endpoint(pair.ofport, &ep).await?;
        steps::mark("flows");
        pool.bind(
            ep_id,
            Bound {
                pair: pair.clone(),
                cni_network: pool::alias_network(&req.attachment_network),
                netns: req.netns.clone(),
                ifname: req.ifname.clone(),
            },
        );
        log_added(ep_id, &ep, &pair.name);
        Ok(attachment(req, ep, (&pair.name, &pair.host_mac), mtu))
    }

    /// An ADD on the network's trunk: the pod gets a VEPA macvlan of the trunk's waiting end
    /// (see `crate::trunk`); nothing on the host or in OVS changes but flows (and, for the
    /// network's first pod here, the trunk is made).
    async fn add_trunked(
        &self,
        trunks: &Trunks,
        req: &AddRequest,
        ep_id: &str,
        ns: &Netns,
        mtu: u32,
        undo: &mut Vec<Undo>,
    ) -> Result<Attachment, ManagerError> {
        let network = format!("{}/{}", req.tenant, req.network);
        if let Some(b) = trunks.bound(ep_id) {
            let trunk = trunks.ensure(&network, &self.host, &self.dp).await?;
            if b.ifname == req.ifname
                && b.trunk == trunk.name
                && Netlink::in_netns(ns)?
                    .macvlan_lower(&req.ifname)
                    .await?
                    .map(|l| l.0)
                    == Some(trunk.lower)
                && let Ok(ep) = self.master.get_endpoint(ep_id).await
            {
                tracing::info!(endpoint = %ep_id, "ADD of an existing attachment: returning it");
                if b.netns != req.netns {
                    trunks.bind(
                        ep_id,
                        Binding {
                            netns: req.netns.clone(),
                            ..b
                        },
                    )?;
                }
                return Ok(attachment(req, ep, (&trunk.name, &trunk.host_mac), mtu));
            }
            // The pod's interface is gone (a new namespace, say): start again.
            self.release_trunked(trunks, ep_id).await?;
        }
        steps::mark("existing");
        // The address from netmaster and the pod's interface at the same time: neither needs
        // the other until the interface gets its MAC and addresses.
        let (ep, got) = tokio::join!(self.create_master_endpoint(req, ep_id), async {
            let trunk = trunks.ensure(&network, &self.host, &self.dp).await?;
            self.trunk_pod_link(trunks, &trunk, &req.ifname, mtu, ns)
                .await?;
            steps::mark("macvlan");
            // IPv6 off until the endpoint shows its network has it (most have not).
            let pod = self.prepare_pod_side(ns, &req.ifname, false, true).await;
            Ok::<_, ManagerError>((trunk, pod))
        });
        if ep.is_ok() {
            undo.push(Undo::MasterEndpoint(ep_id.to_string()));
        }
        let (trunk, pod) = got?;
        undo.push(Undo::PodLink(req.netns.clone(), req.ifname.clone()));
        let (ep, pod) = (ep?, pod?);
        steps::mark("master");
        let mac = endpoint_mac(&ep)?;
        let alias = pool::alias(ep_id, &req.attachment_network);
        self.set_trunk_pod_mac(trunks, &trunk, &pod, &alias, mac, &ep.mac_address)
            .await?;
        self.finish_macvlan_pod_side(ns, &req.ifname, pod, &ep)
            .await?;
        steps::mark("pod_side");
        trunks.bind(
            ep_id,
            Binding {
                trunk: trunk.name.clone(),
                cni_network: pool::alias_network(&req.attachment_network),
                netns: req.netns.clone(),
                ifname: req.ifname.clone(),
                mac: ep.mac_address.clone(),
            },
        )?;
        undo.push(Undo::Binding(ep_id.to_string()));
        undo.push(Undo::Flows(ep_id.to_string()));
        self.dp.program_endpoint(trunk.ofport, &ep).await?;
        steps::mark("flows");
        log_added(ep_id, &ep, &trunk.name);
        Ok(attachment(req, ep, (&trunk.name, &trunk.host_mac), mtu))
    }

    /// Gives the pod's interface on `trunk` the endpoint's MAC (and its alias). The kernel
    /// refuses a MAC another macvlan of the trunk has: a released endpoint's, whose address
    /// (and so MAC) went to this one. If its namespace is still there, that interface is
    /// deleted; if the namespace is on its way out (a runtime removes it after DEL, and the
    /// kernel destroys it a little later), the MAC is free in a moment.
    async fn set_trunk_pod_mac(
        &self,
        trunks: &Trunks,
        trunk: &Trunk,
        (pod, idx): &(Netlink, u32),
        alias: &str,
        mac: [u8; 6],
        mac_text: &str,
    ) -> Result<(), ManagerError> {
        const WAIT: Duration = Duration::from_secs(2);
        let start = std::time::Instant::now();
        let mut old = trunks.take_leftover_with_mac(mac_text);
        loop {
            let e = match pod.set_alias_mac(*idx, alias, Some(mac)).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let in_use = matches!(&e, LinkError::Netlink { reason, .. } if reason.starts_with("Address already in use"));
            if !in_use {
                return Err(e.into());
            }
            if let Some(l) = old.take()
                && delete_trunk_leftover(&l).await?
            {
                tracing::info!(mac = %mac_text, netns = %l.netns.display(), "deleted a removed endpoint's interface: it held the MAC");
                continue;
            }
            if start.elapsed() > WAIT {
                return Err(ManagerError::from(e).details(format!(
                    "another interface on trunk {} has MAC {mac_text}: a removed pod's, whose network namespace is still there; delete that namespace",
                    trunk.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Makes the pod's interface on `trunk`. An interface of the same name in the pod's
    /// namespace that is a released endpoint's macvlan on a trunk (the namespace was ADDed
    /// again under another container id) is in the way: it is deleted.
    async fn trunk_pod_link(
        &self,
        trunks: &Trunks,
        trunk: &Trunk,
        ifname: &str,
        mtu: u32,
        ns: &Netns,
    ) -> Result<(), ManagerError> {
        use crate::netlink::MacVlanMode;
        let create = || {
            trunks
                .nl
                .create_macvlan(trunk.lower, ifname, mtu, ns, MacVlanMode::Vepa)
        };
        let refused = || {
            ManagerError::new(
                ErrorKind::Internal,
                format!(
                    "create interface {ifname} on trunk {}: the kernel refused the trunk's link",
                    trunk.name
                ),
            )
        };
        match create().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(refused()),
            // The trunk's other end is gone (someone deleted the trunk's link): forget the
            // trunk, so that the runtime's retry makes a new one.
            Err(LinkError::Netlink { reason, .. }) if reason.starts_with("No such device") => {
                trunks.forget(&trunk.name).await;
                Err(ManagerError::new(
                    ErrorKind::TryAgain,
                    format!(
                        "create interface {ifname} on trunk {}: the trunk's link is gone; it is made again at the next try",
                        trunk.name
                    ),
                ))
            }
            // Only a macvlan of this trunk is ours to delete.
            Err(LinkError::Netlink { reason, .. })
                if reason.starts_with("File exists")
                    && !trunks.is_bound_at(&ns.path, ifname)
                    && delete_pod_link(&ns.path, ifname, |l| l == trunk.lower).await? =>
            {
                tracing::info!(ifname, netns = %ns.path.display(), "deleted a removed endpoint's interface: it was in the way");
                if create().await? {
                    Ok(())
                } else {
                    Err(refused())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes endpoint `ep_id` off its trunk: flows, record. Its interface goes with the pod's
    /// namespace (or when its MAC is wanted again).
    async fn release_trunked(&self, trunks: &Trunks, ep_id: &str) -> Result<bool, ManagerError> {
        if trunks.bound(ep_id).is_none() {
            return Ok(false);
        }
        self.dp.remove_endpoint_flows(ep_id).await?;
        trunks.unbind(ep_id);
        // Its interface, if the namespace outlives the DEL, goes at the next lull.
        self.reap.notify_one();
        steps::mark("release");
        Ok(true)
    }

    /// Takes a pooled port (or makes one when the pool is empty) and makes the pod's interface
    /// on it. A port an earlier pod's interface still holds (its namespace outlived its DEL) is
    /// freed by deleting that interface if its namespace is known, else skipped; after three
    /// such misses it is deleted (which frees it for good) in the background.
    async fn hand_over(
        &self,
        pool: &Pool,
        ifname: &str,
        mtu: u32,
        ns: &Netns,
    ) -> Result<Pair, ManagerError> {
        for _ in 0..8 {
            let mut pair = match pool.take() {
                Some(p) => p,
                None => {
                    let made = pool.make(&self.host, &self.dp, 1).await?;
                    made.into_iter().next().ok_or_else(|| {
                        ManagerError::new(ErrorKind::Internal, "make a pooled port: none made")
                    })?
                }
            };
            let r = async {
                if pool
                    .nl
                    .create_passthru_macvlan(pair.index, ifname, mtu, ns)
                    .await?
                {
                    return Ok(true);
                }
                if let Some((netns, old)) = pair.last.take()
                    && delete_pod_link(&netns, &old, |l| l == pair.index).await?
                {
                    return pool
                        .nl
                        .create_passthru_macvlan(pair.index, ifname, mtu, ns)
                        .await;
                }
                Ok::<bool, LinkError>(false)
            }
            .await;
            match r {
                Ok(true) => return Ok(pair),
                Ok(false) => {
                    pair.strikes += 1;
                    if pair.strikes < 3 {
                        tracing::debug!(port = %pair.name, "pooled port still held by an earlier pod's interface: trying another");
                        pool.put_back(pair);
                    } else {
                        tracing::warn!(port = %pair.name, "pooled port still held by an earlier pod's interface: deleting it");
                        self.graveyard().insert((String::new(), pair.name.clone()));
                        self.reap.notify_one();
                    }
                }
                Err(e) => {
                    pool.put_back(pair);
                    // A re-ADD into the namespace of an endpoint just DELed: its interface is
                    // still there, on a free port. Delete it and try again.
                    let taken = matches!(&e, LinkError::Netlink { reason, .. } if reason.starts_with("File exists"));
                    if !(taken && self.delete_freed_pod_link(pool, &ns.path, ifname).await?) {
                        return Err(e.into());
                    }
                }
            }
        }
        Err(ManagerError::new(
            ErrorKind::TryAgain,
            "no free pooled port: each is still held by an earlier pod's interface",
        ))
    }

    /// Deletes interface `ifname` of the pod's namespace if it is the interface of a DELed
    /// endpoint: a passthru macvlan of a port that is free in the pool. Whether it did.
    async fn delete_freed_pod_link(
        &self,
        pool: &Pool,
        netns: &std::path::Path,
        ifname: &str,
    ) -> Result<bool, ManagerError> {
        let deleted = delete_pod_link(netns, ifname, |l| pool.is_free(l)).await?;
        if deleted {
            tracing::info!(ifname, netns = %netns.display(), "deleted a removed endpoint's interface: it was in the way");
        }
        Ok(deleted)
    }

    /// Takes endpoint `ep_id` off its pooled port: flows, binding, mark; the port goes back to
    /// the pool (the pod's interface goes with its namespace, or at the port's next use).
    async fn release_pooled(&self, pool: &Pool, ep_id: &str) -> Result<bool, ManagerError> {
        let Some(b) = pool.bound(ep_id) else {
            return Ok(false);
        };
        self.dp.remove_endpoint_flows(ep_id).await?;
        pool.unbind(ep_id);
        let mut pair = b.pair;
        pair.last = Some((b.netns, b.ifname));
        let name = pair.name.clone();
        if let Err(e) = pool.free(pair).await {
            tracing::warn!(port = %name, error = %e, "clear a pooled port's mark");
        }
        if pool.has_surplus() {
            self.reap.notify_one();
        }
        steps::mark("release");
        Ok(true)
    }

    async fn create_master_endpoint(
        &self,
        req: &AddRequest,
        ep_id: &str,
    ) -> Result<Endpoint, ManagerError> {
        self.master
            .create_endpoint(&EndpointRequest {
                endpoint_id: ep_id.to_string(),
                tenant_name: req.tenant.clone(),
                network_name: req.network.clone(),
                group_name: req.group.clone(),
                host: self.cfg.node.clone(),
                container_id: req.container_id.clone(),
                container_name: req.container_name.clone(),
                intf_name: req.ifname.clone(),
                labels: req.labels.clone(),
                ip_address: req.ip.clone().unwrap_or_default(),
                ipv6_address: String::new(),
            })
            .await
            .map_err(|e| {
                master_err(
                    &format!("get an address on network {}:{}", req.tenant, req.network),
                    e,
                )
            })
    }

    /// CNI mode, the pod's side of a new interface before its addresses: a netlink socket in
    /// the pod's namespace, the interface's index, TX checksum offload and IPv6 set (see
    /// `prepare_pod_link`), `lo` up.
    async fn prepare_pod_side(
        &self,
        ns: &Netns,
        ifname: &str,
        tx_csum_off: bool,
        ipv6_off: bool,
    ) -> Result<(Netlink, u32), ManagerError> {
        let pod = Netlink::in_netns(ns)?;
        let idx = pod.index(ifname).await?.ok_or_else(|| {
            ManagerError::new(
                ErrorKind::Internal,
                format!("interface {ifname} vanished from {}", ns.path.display()),
            )
        })?;
        prepare_pod_link(ns, ifname, tx_csum_off, ipv6_off)?;
        if let Some(lo) = pod.index("lo").await? {
            pod.set_up("lo", lo).await?;
        }
        Ok((pod, idx))
    }

    /// [`Manager::finish_pod_side`] for a pod's macvlan, whose IPv6 waited (off) for the
    /// endpoint to show whether its network has IPv6.
    async fn finish_macvlan_pod_side(
        &self,
        ns: &Netns,
        ifname: &str,
        pod: (Netlink, u32),
        ep: &Endpoint,
    ) -> Result<(), ManagerError> {
        if !ep.ipv6_address.is_empty() {
            crate::netlink::set_pod_ipv6(ns, ifname, true)?;
        }
        self.finish_pod_side(ifname, pod, ep).await
    }

    /// Then the endpoint's addresses, the interface up, default routes via the gateways.
    async fn finish_pod_side(
        &self,
        ifname: &str,
        (pod, idx): (Netlink, u32),
        ep: &Endpoint,
    ) -> Result<(), ManagerError> {
        let v4: IpAddr = ep
            .ip_address
            .parse()
            .map_err(|_| ManagerError::new(ErrorKind::Internal, "netmaster gave a bad address"))?;
        pod.add_address(ifname, idx, v4, ep.prefix_len).await?;
        if !ep.ipv6_address.is_empty()
            && let Ok(v6) = ep.ipv6_address.parse::<IpAddr>()
        {
            pod.add_address(ifname, idx, v6, ep.ipv6_prefix_len).await?;
        }
        pod.set_up(ifname, idx).await?;
        // No gateway, no default route: the pod reaches only its own network (Contiv's rule).
        if let Ok(gw) = ep.gateway.parse::<IpAddr>() {
            pod.add_default_route(gw, idx).await?;
        }
        if let Ok(gw) = ep.ipv6_gateway.parse::<IpAddr>() {
            pod.add_default_route(gw, idx).await?;
        }
        Ok(())
    }

    /// The attachment when it is already fully in place (a repeated ADD).
    async fn existing(
        &self,
        req: &AddRequest,
        ep_id: &str,
        host_if: &str,
        ns: &Netns,
        mtu: u32,
    ) -> Result<Option<Attachment>, ManagerError> {
        // The agent's port index, not an OVSDB read: it knows every endpoint port of the bridge
        // (loaded at start, kept by every ADD and DEL, which hold this endpoint's lock).
        if self.dp.endpoint_port(host_if).map(|(id, _)| id).as_deref() != Some(ep_id) {
            return Ok(None);
        }
        let ep = match self.master.get_endpoint(ep_id).await {
            Ok(ep) => ep,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(master_err("read endpoint", e)),
        };
        let pod = Netlink::in_netns(ns)?;
        if pod.index(&req.ifname).await?.is_none() {
            return Ok(None);
        }
        let host_mac = self.host.mac(host_if).await?.unwrap_or_default();
        Ok(Some(Attachment {
            mac: ep.mac_address.clone(),
            endpoint: ep,
            host_ifname: host_if.to_string(),
            host_mac,
            ifname: req.ifname.clone(),
            netns: req.netns.clone(),
            mtu,
        }))
    }

    /// Removes an attachment: flows, port, veth (its peer goes with it) and the endpoint in
    /// netmaster. Nothing to remove is success.
    pub async fn del(&self, container_id: &str, ifname: &str) -> Result<(), ManagerError> {
        self.del_endpoint(&endpoint_id(container_id, ifname), true)
            .await
    }

    /// Removes endpoint `ep_id`'s flows, port and veth, and with `release` its netmaster
    /// endpoint (its addresses). Docker releases addresses in a later, separate call, so its
    /// DeleteEndpoint keeps them. Nothing to remove is success.
    pub async fn del_endpoint(&self, ep_id: &str, release: bool) -> Result<(), ManagerError> {
        let _b = self.busy();
        let _l = self.lock(ep_id).await;
        steps::mark("lock");
        let host_if = host_ifname(ep_id);
        let pooled = match &self.pool {
            Some(pool) => self.release_pooled(pool, ep_id).await?,
            None => false,
        };
        let trunked = match &self.trunks {
            Some(t) => self.release_trunked(t, ep_id).await?,
            None => false,
        };
        if !pooled && !trunked {
            self.del_veth_attachment(ep_id, &host_if).await?;
        }
        if release {
            self.master
                .delete_endpoint(ep_id)
                .await
                .map_err(|e| master_err(&format!("release endpoint {ep_id}"), e))?;
            steps::mark("master");
        }
        tracing::info!(endpoint = %ep_id, released = release, "endpoint deleted");
        Ok(())
    }

    /// A veth attachment's DEL: flows now, port and veth by the reaper.
    async fn del_veth_attachment(&self, ep_id: &str, host_if: &str) -> Result<(), ManagerError> {
        self.dp.remove_endpoint_flows(ep_id).await?;
        // The port and veth are left to the reaper (see `reap_links`). No netlink or OVSDB
        // change here: on the userspace datapath either makes ovs-vswitchd reconfigure every
        // port of the bridge, and the next call's flows would wait for it. A restarted agent
        // finds such ports by their released endpoint (`reconcile`).
        if self.dp.endpoint_port(host_if).is_some() || self.host.index(host_if).await?.is_some() {
            self.graveyard()
                .insert((ep_id.to_string(), host_if.to_string()));
            self.reap.notify_one();
        }
        steps::mark("queue");
        Ok(())
    }

    /// Verifies an attachment is as ADD left it.
    pub async fn check(
        &self,
        container_id: &str,
        ifname: &str,
        netns: &std::path::Path,
    ) -> Result<(), ManagerError> {
        let ep_id = endpoint_id(container_id, ifname);
        let _l = self.lock(&ep_id).await;
        let host_if = host_ifname(&ep_id);
        let bad = |m: String| ManagerError::new(ErrorKind::Internal, m);
        let ep = self
            .master
            .get_endpoint(&ep_id)
            .await
            .map_err(|e| master_err(&format!("read endpoint {ep_id}"), e))?;
        // A pooled port or a trunk carries no endpoint identity (nor VLAN tag) in OVS.
        let bound = self
            .pool
            .as_ref()
            .and_then(|p| p.bound(&ep_id))
            .map(|b| b.pair.name)
            .or_else(|| {
                self.trunks
                    .as_ref()
                    .and_then(|t| t.bound(&ep_id))
                    .map(|b| b.trunk)
            });
        let host_if = bound.clone().unwrap_or(host_if);
        let ports =
            self.dp.vs.list_ports(&self.dp.bridge).await.map_err(|e| {
                ManagerError::new(ErrorKind::Internal, format!("list OVS ports: {e}"))
            })?;
        let port = ports.iter().find(|p| p.name == host_if).ok_or_else(|| {
            bad(format!(
                "OVS port {host_if} of endpoint {ep_id} is missing from bridge {}",
                self.dp.bridge
            ))
        })?;
        if port.ofport.is_none() {
            return Err(bad(format!(
                "OVS port {host_if} has no OpenFlow port: {}",
                port.error.clone().unwrap_or_default()
            )));
        }
        if bound.is_none() && port.tag != Some(ep.pkt_tag as u16) {
            return Err(bad(format!(
                "OVS port {host_if} has tag {:?}, expected {}",
                port.tag, ep.pkt_tag
            )));
        }
        let ns = Netns::open(netns)?;
        let pod = Netlink::in_netns(&ns)?;
        let idx = pod.index(ifname).await?.ok_or_else(|| {
            bad(format!(
                "interface {ifname} is missing from {}",
                netns.display()
            ))
        })?;
        if !pod.is_up(idx).await? {
            return Err(bad(format!(
                "interface {ifname} in {} is down",
                netns.display()
            )));
        }
        let mac = pod.mac(ifname).await?.unwrap_or_default();
        if mac != ep.mac_address {
            return Err(bad(format!(
                "interface {ifname} has MAC {mac}, expected {}",
                ep.mac_address
            )));
        }
        let addrs: BTreeSet<String> = pod
            .addresses(idx)
            .await?
            .into_iter()
            .map(|(a, p)| format!("{a}/{p}"))
            .collect();
        let want = format!("{}/{}", ep.ip_address, ep.prefix_len);
        if !addrs.contains(&want) {
            return Err(bad(format!(
                "interface {ifname} lacks address {want} (has {})",
                addrs.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        if let Ok(gw) = ep.gateway.parse::<IpAddr>()
            && !pod.has_default_route(gw).await?
        {
            return Err(bad(format!(
                "no default route via {gw} in {}",
                netns.display()
            )));
        }
        if self.host.index(&host_if).await?.is_none() {
            return Err(bad(format!("host interface {host_if} is missing")));
        }
        Ok(())
    }

    /// Removes every attachment of `attachment_network` that is not in `valid`
    /// (container id, interface name).
    pub async fn gc(
        &self,
        attachment_network: &str,
        valid: &BTreeSet<(String, String)>,
    ) -> Result<usize, ManagerError> {
        let mut removed = 0;
        let net = pool::alias_network(attachment_network);
        let keep: BTreeSet<String> = valid.iter().map(|(c, i)| endpoint_id(c, i)).collect();
        let mut bound: Vec<(String, String)> = Vec::new();
        if let Some(pool) = &self.pool {
            bound.extend(
                pool.all_bound()
                    .into_iter()
                    .map(|(id, b)| (id, b.cni_network)),
            );
        }
        if let Some(t) = &self.trunks {
            bound.extend(t.all_bound().into_iter().map(|(id, b)| (id, b.cni_network)));
        }
        for (ep_id, cni_network) in bound {
            if cni_network == net && !keep.contains(&ep_id) {
                self.del_endpoint(&ep_id, true).await?;
                removed += 1;
            }
        }
        let ports = self.dp.endpoint_ports().await?;
        for p in ports {
            let get = |k: &str| p.external_ids.get(k).cloned().unwrap_or_default();
            if get(ids::CNI_NETWORK) != attachment_network {
                continue;
            }
            let (cid, ifname) = (get(ids::CONTAINER), get(ids::IFNAME));
            if cid.is_empty() || valid.contains(&(cid.clone(), ifname.clone())) {
                continue;
            }
            self.del(&cid, &ifname).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Whether the agent can serve ADDs: netmaster answers and OVS is reachable.
    pub async fn status(&self) -> Result<(), ManagerError> {
        self.master.version().await.map_err(|e| {
            ManagerError::new(
                ErrorKind::Unavailable,
                format!("netmaster is not reachable: {e}"),
            )
        })?;
        self.dp.endpoint_ports().await.map_err(|e| {
            ManagerError::new(
                ErrorKind::Unavailable,
                format!("Open vSwitch is not reachable: {e}"),
            )
        })?;
        Ok(())
    }

    /// If `ifname` in the pod's namespace is the peer of a host veth waiting in the deletion
    /// queue (or already in [`GRAVEYARD_GROUP`]), deletes its port and that veth now, the veth
    /// by index (a re-created veth of the same name is never touched). Returns whether creating the veth is worth
    /// another try: it deleted that veth, or the reaper's batch did meanwhile.
    async fn delete_queued_peer(&self, ns: &Netns, ifname: &str) -> Result<bool, ManagerError> {
        let pod = Netlink::in_netns(ns)?;
        if pod.index(ifname).await?.is_none() {
            return Ok(true); // Gone since the failed attempt (a batch deletion finished).
        }
        let Some(peer) = pod.peer_index(ifname).await? else {
            return Ok(false);
        };
        let Some((name, group)) = self.host.name_and_group(peer).await? else {
            // The host end is gone, so the pair is going: the kernel deletes both together.
            return Ok(pod.index(ifname).await?.is_none());
        };
        let queued = self.graveyard().iter().find(|(_, n)| *n == name).cloned();
        if queued.is_none() && group != GRAVEYARD_GROUP {
            return Ok(false);
        }
        tracing::info!(port = %name, "deleting a removed endpoint's port and veth now: its peer is in the way");
        // The reaper may be at it too: both deletions are idempotent.
        self.dp.remove_port(&name).await?;
        if let Some(key) = queued {
            self.graveyard().remove(&key);
        }
        self.host.delete_index(peer).await?;
        Ok(true)
    }

    /// Deletes host veths of ours (named by [`host_ifname`]) that have no OVS port: DELs whose
    /// veth deletion a previous agent had queued but not done, and ADDs cut short. Runs at
    /// start, before any ADD, so nothing live can be among them; one kernel batch. `links`:
    /// the host's link names (deleting ports since the listing does not change them).
    async fn delete_orphan_veths(&self, links: &HashMap<String, u32>) -> Result<(), ManagerError> {
        let mut n = 0;
        for name in links.keys() {
            if crate::datapath::is_host_ifname(name) && self.dp.endpoint_port(name).is_none() {
                self.host.set_group(name, GRAVEYARD_GROUP).await?;
                n += 1;
            }
        }
        self.host.delete_group(GRAVEYARD_GROUP).await?;
        if n > 0 {
            tracing::info!(veths = n, "deleted veths of endpoints that have no port");
        }
        Ok(())
    }

    /// After a restart, the port pool: a pooled port whose mark names a live endpoint serves it
    /// (its flows go in `locals`); one whose endpoint is released (a DEL cut short) is free
    /// again; half-made pairs (a refill cut short) are deleted.
    async fn reconcile_pool(
        &self,
        pool: &Pool,
        by_id: &HashMap<&str, &Endpoint>,
        links: &HashMap<String, u32>,
        ports: &[ovs::PortInfo],
        with_port: &mut BTreeSet<String>,
        locals: &mut Vec<(u32, Endpoint)>,
    ) -> Result<(), ManagerError> {
        let waiting: HashMap<String, crate::netlink::PoolLink> = pool
            .nl
            .links_with_alias()
            .await?
            .into_iter()
            .map(|l| (l.name.clone(), l))
            .collect();
        let (mut free, mut bound, mut kept) = (Vec::new(), Vec::new(), BTreeSet::new());
        for p in ports {
            let (Some(w), true, Some(of)) = (
                waiting.get(&p.name),
                links.contains_key(&p.name),
                p.ofport.or(p.ofport_request),
            ) else {
                tracing::info!(port = %p.name, "deleting half a pooled port");
                self.dp.remove_port(&p.name).await?;
                continue;
            };
            kept.insert(p.name.clone());
            let pair = Pair {
                name: p.name.clone(),
                index: w.index,
                ofport: of,
                host_mac: self.host.mac(&p.name).await?.unwrap_or_default(),
                strikes: 0,
                last: None,
            };
            let Some((ep_id, net)) = pool::parse_alias(&w.alias) else {
                free.push(pair);
                continue;
            };
            match by_id.get(ep_id.as_str()) {
                Some(ep) => {
                    with_port.insert(ep_id.clone());
                    locals.push((of, (*ep).clone()));
                    let ifname = ep.intf_name.clone();
                    bound.push((
                        ep_id,
                        Bound {
                            pair,
                            cni_network: net,
                            netns: PathBuf::new(),
                            ifname,
                        },
                    ));
                }
                None => {
                    tracing::info!(endpoint = %ep_id, port = %p.name, "freeing the pooled port of a removed endpoint");
                    pool.nl.set_alias_mac(w.index, "", None).await?;
                    free.push(pair);
                }
            }
        }
        for (name, w) in &waiting {
            if pool::is_pool_ifname(name) && !kept.contains(name) {
                pool.nl.delete_index(w.index).await?;
            }
        }
        for name in links.keys() {
            if pool::is_pool_ifname(name) && !kept.contains(name) {
                self.host.delete(name).await?;
            }
        }
        tracing::info!(free = free.len(), bound = bound.len(), "port pool restored");
        pool.restore(free, bound);
        Ok(())
    }

    /// After a restart, the network trunks: a trunk port whose two ends are there serves its
    /// network again; an endpoint whose record names a live endpoint and a trunk is on it (its
    /// flows go in `locals`); records of released endpoints are deleted; half-made trunks too.
    async fn reconcile_trunks(
        &self,
        trunks: &Trunks,
        by_id: &HashMap<&str, &Endpoint>,
        links: &HashMap<String, u32>,
        ports: &[ovs::PortInfo],
        with_port: &mut BTreeSet<String>,
        locals: &mut Vec<(u32, Endpoint)>,
    ) -> Result<(), ManagerError> {
        // The side namespace's links, listed once: trunks' other ends, and half-made ones.
        let waiting: HashMap<String, u32> = trunks
            .nl
            .links_with_alias()
            .await?
            .into_iter()
            .map(|l| (l.name, l.index))
            .collect();
        let mut found: Vec<(String, Trunk)> = Vec::new();
        for p in ports {
            let network = p.external_ids.get(ids::TRUNK).cloned().unwrap_or_default();
            let (Some(&lower), true, Some(of)) = (
                waiting.get(&p.name),
                links.contains_key(&p.name),
                p.ofport.or(p.ofport_request),
            ) else {
                tracing::info!(trunk = %p.name, "deleting half a network trunk");
                self.dp.remove_port(&p.name).await?;
                continue;
            };
            found.push((
                network,
                Trunk {
                    name: p.name.clone(),
                    lower,
                    ofport: of,
                    host_mac: self.host.mac(&p.name).await?.unwrap_or_default(),
                },
            ));
        }
        let kept: BTreeSet<&str> = found.iter().map(|(_, t)| t.name.as_str()).collect();
        for name in links.keys() {
            if crate::trunk::is_trunk_ifname(name) && !kept.contains(name.as_str()) {
                self.host.delete(name).await?;
            }
        }
        for (name, index) in &waiting {
            if crate::trunk::is_trunk_ifname(name) && !kept.contains(name.as_str()) {
                trunks.nl.delete_index(*index).await?;
            }
        }
        let of_trunk: HashMap<&str, u32> = found
            .iter()
            .map(|(_, t)| (t.name.as_str(), t.ofport))
            .collect();
        let mut bound = Vec::new();
        for (ep_id, b) in trunks.records() {
            match (by_id.get(ep_id.as_str()), of_trunk.get(b.trunk.as_str())) {
                (Some(ep), Some(of)) => {
                    with_port.insert(ep_id.clone());
                    locals.push((*of, (*ep).clone()));
                    bound.push((ep_id, b));
                }
                _ => {
                    tracing::info!(endpoint = %ep_id, trunk = %b.trunk, "forgetting a removed endpoint's trunk record");
                    trunks.forget_record(&ep_id, &b);
                    self.reap.notify_one();
                }
            }
        }
        self.dp.set_trunks(of_trunk.values().copied()).await;
        tracing::info!(
            trunks = found.len(),
            endpoints = bound.len(),
            "network trunks restored"
        );
        trunks.restore(found, bound).await;
        Ok(())
    }

    /// After a restart: re-assert every endpoint port's flows (an atomic replace, so running pods
    /// see no gap), and release netmaster endpoints of this node that have no port (an ADD that
    /// crashed half-way).
    pub async fn reconcile(&self) -> Result<(), ManagerError> {
        let crate::datapath::AgentPorts {
            endpoints: ports,
            pool: pool_ports,
            trunks: trunk_ports,
        } = self.dp.agent_ports().await?;
        let eps = self
            .master
            .list_endpoints(Some(&self.cfg.node))
            .await
            .map_err(|e| master_err("list this node's endpoints", e))?;
        let by_id: HashMap<&str, &Endpoint> =
            eps.iter().map(|e| (e.endpoint_id.as_str(), e)).collect();
        let links: HashMap<String, u32> = self.host.link_names().await?.into_iter().collect();
        let mut with_port = BTreeSet::new();
        let mut locals = Vec::new();
        for p in &ports {
            let id = p
                .external_ids
                .get(ids::ENDPOINT)
                .cloned()
                .unwrap_or_default();
            // A DEL the previous agent had not finished: its address is released (the DEL
            // releases it after the flows are gone), or its veth is in the graveyard. Such a
            // port gets no flows anyway: only netmaster knows the endpoint's address.
            let live = by_id
                .get(id.as_str())
                .filter(|_| links.get(&p.name) != Some(&GRAVEYARD_GROUP));
            let Some(ep) = live else {
                tracing::info!(endpoint = %id, port = %p.name, "deleting the port of a removed endpoint");
                self.dp.remove_port(&p.name).await?;
                continue;
            };
            with_port.insert(id.clone());
            // A port whose number ovs-vswitchd has not written yet (it was just restarted) has
            // the one the agent asked for.
            match p.ofport.or(p.ofport_request) {
                Some(of) => locals.push((of, (*ep).clone())),
                None => {
                    tracing::warn!(endpoint = %id, port = %p.name, "port has no OpenFlow port yet")
                }
            }
        }
        if let Some(pool) = &self.pool {
            self.reconcile_pool(
                pool,
                &by_id,
                &links,
                &pool_ports,
                &mut with_port,
                &mut locals,
            )
            .await?;
        }
        if let Some(trunks) = &self.trunks {
            self.reconcile_trunks(
                trunks,
                &by_id,
                &links,
                &trunk_ports,
                &mut with_port,
                &mut locals,
            )
            .await?;
        }
        self.delete_orphan_veths(&links).await?;
        // One atomic replace of every endpoint's flows: running pods see no gap.
        self.dp.set_local_endpoints(locals, true).await?;
        for ep in &eps {
            if !with_port.contains(&ep.endpoint_id) {
                tracing::warn!(endpoint = %ep.endpoint_id, "releasing an endpoint whose ADD never finished");
                self.master
                    .delete_endpoint(&ep.endpoint_id)
                    .await
                    .map_err(|e| master_err("release orphan endpoint", e))?;
            }
        }
        tracing::info!(ports = ports.len(), "reconciled endpoint ports");
        Ok(())
    }
}
