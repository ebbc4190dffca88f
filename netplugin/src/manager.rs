//! The endpoint manager: everything that puts a container on a Contiv network and takes it off
//! again. The CNI server and the Docker driver both call it, so a container gets the same
//! port, flows and addresses whichever runtime asked.
//!
//! The manager keeps what every attachment mode shares: the per-endpoint lock (operations on
//! one endpoint are serialized; different endpoints proceed in parallel), the undo stack (a
//! failed ADD runs the undos in reverse, so it leaves no interface, port, flow or address
//! behind), the calls to netmaster, and the choice of mode (`crate::attach`). DEL needs
//! nothing but the container id and interface name: every name is derived from them.

use crate::attach::pool::PoolMode;
use crate::attach::trunk::TrunkMode;
use crate::attach::veth::Veth;
use crate::attach::{Attach, CniMode, Host, Restore, Undo};
use crate::datapath::DatapathError;
use crate::kernel::{Kernel, Ns};
use crate::netlink::LinkError;
use crate::switch::Switch;
use model::ClientError;
use model::agent::{Endpoint, EndpointRequest};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

pub use crate::attach::veth::GRAVEYARD_GROUP;
pub use crate::names::endpoint_id;

/// What kind of failure, so each front end can map it to its protocol (CNI codes, Docker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request names something that does not exist or breaks a rule: fix the config.
    InvalidConfig,
    /// The runtime's environment is wrong (netns path, interface name).
    InvalidEnv,
    /// A dependency is unreachable or busy: retrying later may work.
    TryAgain,
    /// The agent cannot serve (STATUS).
    Unavailable,
    /// Anything else.
    Internal,
}

/// A failed manager operation: what kind, the message (naming the object and the action),
/// details for the user, and the error it came from (with its errno, for kernel errors).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{msg}")]
pub struct ManagerError {
    pub kind: ErrorKind,
    pub msg: String,
    pub details: String,
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ManagerError {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        ManagerError {
            kind,
            msg: msg.into(),
            details: String::new(),
            source: None,
        }
    }
    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }
    /// Prefixes the message with what was being done.
    pub fn context(mut self, action: impl std::fmt::Display) -> Self {
        self.msg = format!("{action}: {}", self.msg);
        self
    }
}

impl From<LinkError> for ManagerError {
    fn from(e: LinkError) -> Self {
        let kind = match &e {
            LinkError::Netns { .. } | LinkError::NotNetns { .. } => ErrorKind::InvalidEnv,
            e if e.is_transient() => ErrorKind::TryAgain,
            LinkError::Netlink { .. } => ErrorKind::Internal,
        };
        let mut m = ManagerError::new(kind, e.to_string());
        m.source = Some(Arc::new(e));
        m
    }
}

impl From<DatapathError> for ManagerError {
    fn from(e: DatapathError) -> Self {
        // ovsdb-server or ovs-vswitchd restarting: the runtime should try again, not give up.
        let kind = if e.is_transient() {
            ErrorKind::TryAgain
        } else {
            ErrorKind::Internal
        };
        let mut m = ManagerError::new(kind, e.to_string());
        m.source = Some(Arc::new(e));
        m
    }
}

fn master_err(action: &str, e: ClientError) -> ManagerError {
    let kind = match &e {
        ClientError::Unreachable { .. } => ErrorKind::TryAgain,
        ClientError::Api { status, .. } if *status == 503 => ErrorKind::TryAgain,
        ClientError::Api { status, .. } if (400..500).contains(status) => ErrorKind::InvalidConfig,
        _ => ErrorKind::Internal,
    };
    let mut m = ManagerError::new(kind, format!("{action}: {e}"));
    m.source = Some(Arc::new(e));
    m
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
    host: Arc<Host>,
    cfg: ManagerConfig,
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// Docker's containers, and CNI pods the CNI mode does not take.
    veth: Arc<Veth>,
    /// The CNI pods' mode, when it is not the veth one.
    cni: Option<Arc<dyn Attach>>,
}

/// Ports the reaper deletes between two lulls: each stalls ovs-vswitchd for a grace period
/// (see [`crate::datapath::Datapath::remove_port`]), so a call that comes meanwhile waits for
/// a few at most.
const REAP_CHUNK: usize = 4;

impl Manager {
    /// A manager attaching CNI pods in `mode` (opening its side namespace and state).
    pub async fn new(
        master: model::Client,
        kernel: Arc<dyn Kernel>,
        switch: Arc<dyn Switch>,
        cfg: ManagerConfig,
        mode: CniMode,
    ) -> Result<Self, ManagerError> {
        let host = Arc::new(Host::new(kernel, switch));
        let cni: Option<Arc<dyn Attach>> = match mode {
            CniMode::Veth => None,
            CniMode::Pool { side_netns, size } => Some(Arc::new(
                PoolMode::open(host.clone(), &side_netns, size, cfg.mtu)
                    .await
                    .map_err(|e| {
                        ManagerError::from(e).context(format!(
                            "open the port pool's namespace {}",
                            side_netns.display()
                        ))
                    })?,
            )),
            CniMode::Trunks {
                side_netns,
                state_dir,
                idle,
            } => Some(Arc::new(
                TrunkMode::open(host.clone(), &side_netns, &state_dir, cfg.mtu, idle)
                    .await
                    .map_err(|e| {
                        ManagerError::from(e).context(format!(
                            "open the trunks' namespace {} and state directory {}",
                            side_netns.display(),
                            state_dir.display()
                        ))
                    })?,
            )),
        };
        Ok(Manager {
            master,
            veth: Arc::new(Veth::new(host.clone())),
            host,
            cfg,
            locks: Mutex::new(HashMap::new()),
            cni,
        })
    }

    pub fn master(&self) -> &model::Client {
        &self.master
    }

    /// This node's name in the cluster.
    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    /// Every mode in use: the veth one, and the CNI pods' if another.
    fn modes(&self) -> Vec<Arc<dyn Attach>> {
        let mut m: Vec<Arc<dyn Attach>> = vec![self.veth.clone()];
        m.extend(self.cni.clone());
        m
    }

    /// The mode for an ADD.
    fn mode_for(&self, req: &AddRequest, ep_id: &str, mtu: u32) -> Arc<dyn Attach> {
        match &self.cni {
            Some(m) if m.takes(req, ep_id, mtu) => m.clone(),
            _ => self.veth.clone(),
        }
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

    async fn run_undo(&self, mode: &dyn Attach, steps: Vec<Undo>) {
        for s in steps.into_iter().rev() {
            let r = match s {
                Undo::MasterEndpoint(id) => self
                    .master
                    .delete_endpoint(&id)
                    .await
                    .map_err(|e| e.to_string()),
                Undo::HostLink(name) => self
                    .host
                    .ns
                    .delete(&name)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Undo::Port { ifname, endpoint } => self
                    .host
                    .switch
                    .remove_endpoint(&ifname, &endpoint)
                    .await
                    .map_err(|e| e.to_string()),
                Undo::Flows(id) => self
                    .host
                    .switch
                    .remove_endpoint_flows(&id)
                    .await
                    .map_err(|e| e.to_string()),
                Undo::PodLink(netns, ifname) => crate::attach::delete_pod_link(
                    self.host.kernel.as_ref(),
                    &netns,
                    &ifname,
                    |_| true,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
                Undo::Mode(step) => mode.undo(step).await,
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
        let _b = self.host.activity.busy();
        let _l = self.lock(&ep_id).await;
        crate::steps::mark("lock");
        if let Some(problem) = cni::env::ifname_problem(&req.ifname) {
            return Err(ManagerError::new(
                ErrorKind::InvalidEnv,
                format!(
                    "interface name {:?} {problem}: the kernel would refuse it",
                    req.ifname
                ),
            ));
        }
        // Docker mode: the peer is born here, in the agent's own namespace, for the runtime to
        // move (the runtime's namespace must be the agent's: dockerd runs beside it).
        let pod = if req.peer_in_host {
            self.host.ns.clone()
        } else {
            self.host.kernel.open(&req.netns).await.map_err(|e| {
                ManagerError::from(e).details("CNI_NETNS must be the path of the pod's network namespace, e.g. /var/run/netns/<name> or /proc/<pid>/ns/net")
            })?
        };
        let mtu = req.mtu.unwrap_or(self.cfg.mtu);
        let mode = self.mode_for(req, &ep_id, mtu);
        let mut undo = Vec::new();
        match self
            .add_steps(mode.as_ref(), req, &ep_id, &pod, mtu, &mut undo)
            .await
        {
            Ok(a) => Ok(a),
            Err(e) => {
                self.run_undo(mode.as_ref(), undo).await;
                Err(e)
            }
        }
    }

    async fn add_steps(
        &self,
        mode: &dyn Attach,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
        mtu: u32,
        undo: &mut Vec<Undo>,
    ) -> Result<Attachment, ManagerError> {
        let attachment = |ep: Endpoint, port: crate::attach::Port| Attachment {
            mac: ep.mac_address.clone(),
            endpoint: ep,
            host_ifname: port.name,
            host_mac: port.mac,
            ifname: req.ifname.clone(),
            netns: req.netns.clone(),
            mtu,
        };
        if let Some(port) = mode.in_place(req, ep_id, pod).await? {
            match self.master.get_endpoint(ep_id).await {
                // An ADD cut short (the agent killed) can leave the interface made but not
                // configured: only a pod CHECK would pass is an existing attachment.
                Ok(ep) => match pod_side_problem(pod, &req.ifname, &ep).await? {
                    None => {
                        tracing::info!(endpoint = %ep_id, "ADD of an existing attachment: returning it");
                        return Ok(attachment(ep, port));
                    }
                    Some(problem) => {
                        tracing::info!(endpoint = %ep_id, problem, "ADD of an unfinished attachment: making it again");
                        mode.release(ep_id).await?;
                    }
                },
                // Released meanwhile: start again.
                Err(e) if e.is_not_found() => {
                    mode.release(ep_id).await?;
                }
                Err(e) => return Err(master_err(&format!("read endpoint {ep_id}"), e)),
            }
        }
        crate::steps::mark("existing");
        // The address from netmaster and what the mode can do without it, at the same time.
        let (ep, prepared) = tokio::join!(
            self.create_master_endpoint(req, ep_id),
            mode.prepare(req, ep_id, pod, mtu, undo)
        );
        if ep.is_ok() {
            undo.push(Undo::MasterEndpoint(ep_id.to_string()));
        }
        let (ep, prepared) = (ep?, prepared?);
        crate::steps::mark("master");
        let port = mode
            .finish(req, ep_id, pod, mtu, prepared, &ep, undo)
            .await?;
        Ok(attachment(ep, port))
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

    /// Removes an attachment: flows, port, veth (its peer goes with it) and the endpoint in
    /// netmaster. Nothing to remove is success.
    pub async fn del(&self, container_id: &str, ifname: &str) -> Result<(), ManagerError> {
        self.del_endpoint(&endpoint_id(container_id, ifname), true)
            .await
    }

    /// A CNI DEL, which names the pod's namespace when the runtime still has it: a pooled
    /// port's interface whose namespace an agent restart forgot is then deleted at the next
    /// lull too.
    pub async fn del_in(
        &self,
        container_id: &str,
        ifname: &str,
        netns: Option<&Path>,
    ) -> Result<(), ManagerError> {
        let ep_id = endpoint_id(container_id, ifname);
        if let (Some(m), Some(netns)) = (&self.cni, netns) {
            m.learn_netns(&ep_id, netns);
        }
        self.del_endpoint(&ep_id, true).await
    }

    /// Removes endpoint `ep_id`'s flows, port and interfaces, and with `release` its netmaster
    /// endpoint (its addresses). Docker releases addresses in a later, separate call, so its
    /// DeleteEndpoint keeps them. Nothing to remove is success.
    pub async fn del_endpoint(&self, ep_id: &str, release: bool) -> Result<(), ManagerError> {
        let _b = self.host.activity.busy();
        let _l = self.lock(ep_id).await;
        crate::steps::mark("lock");
        let shared = match &self.cni {
            Some(m) => m.release(ep_id).await?,
            None => false,
        };
        if !shared {
            self.veth.release(ep_id).await?;
        }
        if release {
            self.master
                .delete_endpoint(ep_id)
                .await
                .map_err(|e| master_err(&format!("release endpoint {ep_id}"), e))?;
            crate::steps::mark("master");
        }
        tracing::info!(endpoint = %ep_id, released = release, "endpoint deleted");
        Ok(())
    }

    /// Verifies an attachment is as ADD left it.
    pub async fn check(
        &self,
        container_id: &str,
        ifname: &str,
        netns: &Path,
    ) -> Result<(), ManagerError> {
        let ep_id = endpoint_id(container_id, ifname);
        let _l = self.lock(&ep_id).await;
        let bad = |m: String| ManagerError::new(ErrorKind::Internal, m);
        let ep = self
            .master
            .get_endpoint(&ep_id)
            .await
            .map_err(|e| master_err(&format!("read endpoint {ep_id}"), e))?;
        // A pooled port or a trunk carries no endpoint identity (nor VLAN tag) in OVS.
        let shared = self.cni.as_ref().and_then(|m| m.shared_port_of(&ep_id));
        let port_name = shared
            .clone()
            .unwrap_or_else(|| crate::names::host_ifname(&ep_id));
        let ports = self.host.switch.list_ports().await?;
        let bridge = self.host.switch.bridge();
        let port = ports.iter().find(|p| p.name == port_name).ok_or_else(|| {
            bad(format!(
                "OVS port {port_name} of endpoint {ep_id} is missing from bridge {bridge}"
            ))
        })?;
        // ADD programs the number it asked for (`ofport_request`) without waiting for a busy
        // ovs-vswitchd to write it back; pending is as ADD left it, a failure (its `error`, or
        // another number) is not.
        let pending =
            port.ofport.is_none() && port.error.is_none() && port.ofport_request.is_some();
        if let (Some(of), Some(asked)) = (port.ofport, port.ofport_request)
            && of != asked
        {
            return Err(bad(format!(
                "OVS port {port_name} has OpenFlow port {of}, not {asked} as its flows expect"
            )));
        }
        if port.ofport.is_none() && !pending {
            return Err(bad(format!(
                "OVS port {port_name} has no OpenFlow port: {}",
                port.error.clone().unwrap_or_default()
            )));
        }
        if shared.is_none() && port.tag != Some(ep.pkt_tag as u16) {
            return Err(bad(format!(
                "OVS port {port_name} has tag {:?}, expected {}",
                port.tag, ep.pkt_tag
            )));
        }
        let pod = self.host.kernel.open(netns).await?;
        if let Some(problem) = pod_side_problem(&pod, ifname, &ep).await? {
            return Err(bad(problem));
        }
        if shared.is_none() && self.host.ns.index(&port_name).await?.is_none() {
            return Err(bad(format!("host interface {port_name} is missing")));
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
        let net = crate::names::alias_network(attachment_network);
        let keep: BTreeSet<String> = valid.iter().map(|(c, i)| endpoint_id(c, i)).collect();
        let bound = self.cni.as_ref().map(|m| m.bound()).unwrap_or_default();
        for (ep_id, cni_network) in bound {
            if cni_network == net && !keep.contains(&ep_id) {
                self.del_endpoint(&ep_id, true).await?;
                removed += 1;
            }
        }
        let ports = self.host.switch.agent_ports().await?.endpoints;
        for p in ports {
            use crate::names::ids;
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

    /// Records the published ports of the endpoint on port `ifname` (`docker run -p`).
    pub async fn set_published(
        &self,
        ifname: &str,
        list: &[crate::northsouth::Published],
    ) -> Result<(), ManagerError> {
        Ok(self.host.switch.set_published(ifname, list).await?)
    }

    /// The endpoint ports on the bridge (a veth's each, with the endpoint in `external_ids`).
    pub async fn endpoint_ports(&self) -> Result<Vec<ovs::PortInfo>, ManagerError> {
        Ok(self.host.switch.agent_ports().await?.endpoints)
    }

    /// Whether the agent can serve ADDs: netmaster answers and OVS is reachable.
    pub async fn status(&self) -> Result<(), ManagerError> {
        self.master.version().await.map_err(|e| {
            ManagerError::new(
                ErrorKind::Unavailable,
                format!("netmaster is not reachable: {e}"),
            )
        })?;
        self.host.switch.agent_ports().await.map_err(|e| {
            ManagerError::new(
                ErrorKind::Unavailable,
                format!("Open vSwitch is not reachable: {e}"),
            )
        })?;
        Ok(())
    }

    /// Deletes the ports and host veths of removed endpoints (the veths' peers go with them):
    /// at the first lull in ADDs and DELs, the ports a few at a time, then every queued veth in
    /// one kernel batch; first, what a previous agent left queued. Each mode queues or deletes
    /// what it no longer needs at each round. Runs forever.
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
            self.reap_once().await;
            // A DEL that comes while the reaper works leaves a permit: the next round starts
            // after the next lull, with everything queued meanwhile.
            self.host.reaper.woken().await;
            self.host.activity.lull().await;
        }
    }

    /// One round of [`Manager::reap_links`].
    pub async fn reap_once(&self) {
        for m in self.modes() {
            m.reap().await;
        }
        let queued = self.host.reaper.queued();
        for (i, chunk) in queued.chunks(REAP_CHUNK).enumerate() {
            if i > 0 {
                self.host.activity.lull().await;
            }
            for key in chunk {
                let _l = self.lock(&key.0).await;
                if !self.host.reaper.contains(key) {
                    continue; // Re-ADDed meanwhile: not ours to delete.
                }
                match self.host.switch.remove_port(&key.1).await {
                    Ok(()) => {
                        // Into the group before out of the queue: an ADD that finds the peer
                        // in its way sees it in one or the other at every instant.
                        if let Err(e) = self.host.ns.set_group(&key.1, GRAVEYARD_GROUP).await {
                            tracing::warn!(port = %key.1, error = %e, "queue a removed endpoint's veth for deletion");
                        }
                        self.host.reaper.remove(key);
                    }
                    Err(e) => {
                        tracing::warn!(port = %key.1, error = %e, "delete a removed endpoint's port; retrying at the next DEL")
                    }
                }
            }
        }
        match self.host.ns.delete_group(GRAVEYARD_GROUP).await {
            Ok(true) => tracing::debug!("deleted the veths of removed endpoints"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "delete the veths of removed endpoints; retrying at the next DEL")
            }
        }
    }

    /// The CNI mode's background upkeep (refilling the port pool, deleting idle trunks). Runs
    /// forever; returns at once when there is none.
    pub async fn upkeep(&self) {
        match &self.cni {
            Some(m) => m.upkeep().await,
            None => std::future::pending().await,
        }
    }

    /// After a restart: re-assert every endpoint's flows (an atomic replace, so running pods
    /// see no gap), let each mode take back its ports and drop what no longer serves a live
    /// endpoint, and release netmaster endpoints of this node that have no port (an ADD that
    /// crashed half-way).
    pub async fn reconcile(&self) -> Result<(), ManagerError> {
        let ports = self.host.switch.agent_ports().await?;
        let eps = self
            .master
            .list_endpoints(Some(&self.cfg.node))
            .await
            .map_err(|e| master_err("list this node's endpoints", e))?;
        let by_id: HashMap<&str, &Endpoint> =
            eps.iter().map(|e| (e.endpoint_id.as_str(), e)).collect();
        let links: HashMap<String, u32> = self.host.ns.link_names().await?.into_iter().collect();
        let mut found = Restore {
            by_id: &by_id,
            links: &links,
            ports: &ports,
            with_port: BTreeSet::new(),
            locals: Vec::new(),
        };
        for m in self.modes() {
            m.restore(&mut found).await?;
        }
        let Restore {
            with_port, locals, ..
        } = found;
        // One atomic replace of every endpoint's flows: running pods see no gap.
        self.host.switch.set_local_endpoints(locals, true).await?;
        for ep in &eps {
            if !with_port.contains(&ep.endpoint_id) {
                tracing::warn!(endpoint = %ep.endpoint_id, "releasing an endpoint whose ADD never finished");
                self.master
                    .delete_endpoint(&ep.endpoint_id)
                    .await
                    .map_err(|e| master_err("release orphan endpoint", e))?;
            }
        }
        tracing::info!(ports = ports.endpoints.len(), "reconciled endpoint ports");
        Ok(())
    }
}

/// What is wrong with the pod's side of endpoint `ep` (interface `ifname` in `pod`: there, up,
/// with the endpoint's MAC and address, a default route via the gateway), or None. CHECK asks,
/// and so does a repeated ADD before it returns the existing attachment.
async fn pod_side_problem(
    pod: &Ns,
    ifname: &str,
    ep: &Endpoint,
) -> Result<Option<String>, ManagerError> {
    let where_ = pod.path().display();
    let Some(idx) = pod.index(ifname).await? else {
        return Ok(Some(format!("interface {ifname} is missing from {where_}")));
    };
    if !pod.is_up(idx).await? {
        return Ok(Some(format!("interface {ifname} in {where_} is down")));
    }
    let mac = pod.mac(ifname).await?.unwrap_or_default();
    if mac != ep.mac_address {
        return Ok(Some(format!(
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
        return Ok(Some(format!(
            "interface {ifname} lacks address {want} (has {})",
            addrs.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    if let Ok(gw) = ep.gateway.parse::<IpAddr>()
        && !pod.has_default_route(gw).await?
    {
        return Ok(Some(format!("no default route via {gw} in {where_}")));
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
