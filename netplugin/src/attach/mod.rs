//! Attachment modes: the ways the agent gives a pod an interface on the switch.
//!
//! - [`veth::Veth`]: a veth pair and an OVS port of the pod's own (Docker's containers always;
//!   CNI pods unless another mode takes them).
//! - [`pool::PoolMode`] (`--port-pool N`): a pooled port made ahead of time; the pod gets a
//!   passthru macvlan of its waiting end.
//! - [`trunk::TrunkMode`] (`--trunks`): the CNI pods of a network share one port, the trunk;
//!   each pod gets a VEPA macvlan of its waiting end.
//!
//! Each is an [`Attach`]. The mode for CNI pods is chosen once at start ([`CniMode`]), so two at
//! once cannot be built; the veth mode is always there beside it. The endpoint manager keeps
//! the per-endpoint lock, the undo stack, the calls to netmaster and the dispatch; a mode only
//! plumbs. Every mode pins the pod's identity in the switch: the endpoint's flows admit only
//! its MAC and addresses on its port (for shared ports, the kernel refuses a second macvlan
//! with the same MAC), so a pod can send only as itself.

pub mod pool;
pub mod trunk;
pub mod veth;

use crate::kernel::{Kernel, Ns};
use crate::manager::{AddRequest, ErrorKind, ManagerError};
use crate::netlink::LinkError;
use crate::switch::Switch;
use model::agent::Endpoint;
use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How CNI pods are attached, from the agent's flags: one of these, never two.
#[derive(Debug, Clone)]
pub enum CniMode {
    /// A veth and an OVS port per pod.
    Veth,
    /// `--port-pool N`: ports made ahead of time, `size` kept free.
    Pool { side_netns: PathBuf, size: usize },
    /// `--trunks`: one port per network; records in `state_dir`; idle trunks go after `idle`.
    Trunks {
        side_netns: PathBuf,
        state_dir: PathBuf,
        idle: Duration,
    },
}

/// What every mode works with: the kernel, the switch, the host namespace, the queue of ports
/// and veths to delete at the next lull, and the activity that decides when a lull is.
pub struct Host {
    pub kernel: Arc<dyn Kernel>,
    pub switch: Arc<dyn Switch>,
    /// The agent's own namespace.
    pub ns: Ns,
    pub reaper: Reaper,
    pub activity: Activity,
}

impl Host {
    pub fn new(kernel: Arc<dyn Kernel>, switch: Arc<dyn Switch>) -> Self {
        Host {
            ns: kernel.host(),
            kernel,
            switch,
            reaper: Reaper::default(),
            activity: Activity::default(),
        }
    }
}

/// Removed endpoints' ports and host veths still to delete, as (endpoint id, name) (the id is
/// empty for pooled ports), deleted by `Manager::reap_links` at the next lull.
#[derive(Default)]
pub struct Reaper {
    queue: Mutex<BTreeSet<(String, String)>>,
    wake: tokio::sync::Notify,
}

impl Reaper {
    fn q(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Queues a port (and its veth) for deletion and wakes the reaper.
    pub fn queue(&self, ep_id: &str, name: &str) {
        self.q().insert((ep_id.to_string(), name.to_string()));
        self.wake();
    }
    /// Takes a name out of the queue (a re-ADD wants it); whether it was there.
    pub fn unqueue(&self, ep_id: &str, name: &str) -> bool {
        self.q().remove(&(ep_id.to_string(), name.to_string()))
    }
    pub fn contains(&self, key: &(String, String)) -> bool {
        self.q().contains(key)
    }
    pub fn queued(&self) -> Vec<(String, String)> {
        self.q().iter().cloned().collect()
    }
    /// The queue entry of port `name`, if queued.
    pub fn find(&self, name: &str) -> Option<(String, String)> {
        self.q().iter().find(|(_, n)| n == name).cloned()
    }
    pub fn remove(&self, key: &(String, String)) {
        self.q().remove(key);
    }
    pub fn wake(&self) {
        self.wake.notify_one();
    }
    pub async fn woken(&self) {
        self.wake.notified().await
    }
}

/// ADDs and DELs in progress, and a signal at each start and end: background work (the
/// reaper, idle trunks) waits for a lull in them.
#[derive(Default)]
pub struct Activity {
    busy: AtomicUsize,
    changed: tokio::sync::Notify,
}

/// How long a lull must be, and how long to wait for one at most (a host that never quiets
/// down still gets its background work done).
const QUIET: Duration = Duration::from_millis(20);
const MAX_WAIT: Duration = Duration::from_secs(2);

/// Counts a call in progress (see [`Activity`]).
pub struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

impl Activity {
    pub fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        Busy(self)
    }

    /// Returns at the first [`QUIET`] without ADDs or DELs, or after [`MAX_WAIT`].
    pub async fn lull(&self) {
        let since = tokio::time::Instant::now();
        while since.elapsed() < MAX_WAIT {
            let quiet = tokio::time::timeout(QUIET, self.changed.notified())
                .await
                .is_err();
            if quiet && self.busy.load(Ordering::SeqCst) == 0 {
                return;
            }
        }
    }
}

/// The switch port an endpoint is on.
#[derive(Debug, Clone)]
pub struct Port {
    pub name: String,
    pub mac: String,
}

/// A step of a mode's ADD to undo if a later one fails.
pub enum Undo {
    MasterEndpoint(String),
    /// An interface in a pod's namespace: (namespace, name).
    PodLink(PathBuf, String),
    /// An endpoint's flows.
    Flows(String),
    /// A host link by name.
    HostLink(String),
    /// An endpoint's port and flows.
    Port {
        ifname: String,
        endpoint: String,
    },
    /// A mode's own state (a pooled port to give back, a trunk record).
    Mode(Box<dyn Any + Send>),
}

/// State carried from [`Attach::prepare`] to [`Attach::finish`].
pub type Prepared = Box<dyn Any + Send>;

/// What a restart found, for each mode to take its part of (see `Manager::reconcile`).
pub struct Restore<'a> {
    /// This node's endpoints in netmaster, by id.
    pub by_id: &'a HashMap<&'a str, &'a Endpoint>,
    /// The host's links: name -> link group.
    pub links: &'a HashMap<String, u32>,
    pub ports: &'a crate::datapath::AgentPorts,
    /// Endpoints found on a port (the others' ADDs never finished).
    pub with_port: BTreeSet<String>,
    /// Flows to install: (OpenFlow port, endpoint).
    pub locals: Vec<(u32, Endpoint)>,
}

/// One attachment mode.
#[async_trait::async_trait]
pub trait Attach: Send + Sync + 'static {
    /// Whether this mode serves the request (the veth mode serves what the others do not).
    fn takes(&self, req: &AddRequest, ep_id: &str, mtu: u32) -> bool;
    /// A repeated ADD: the endpoint's port if its interface is in place in `pod`. A stale
    /// attachment of the endpoint is cleared so that the ADD starts again.
    async fn in_place(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
    ) -> Result<Option<Port>, ManagerError>;
    /// The first half of an ADD, while netmaster allocates the address: what needs no address
    /// or MAC. Pushes its undo steps.
    async fn prepare(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
        mtu: u32,
        undo: &mut Vec<Undo>,
    ) -> Result<Prepared, ManagerError>;
    /// The second half, with the endpoint: the pod's interface configured, the endpoint's
    /// flows installed. Pushes its undo steps.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
        mtu: u32,
        prepared: Prepared,
        ep: &Endpoint,
        undo: &mut Vec<Undo>,
    ) -> Result<Port, ManagerError>;
    /// Undoes one of this mode's [`Undo::Mode`] steps.
    async fn undo(&self, step: Box<dyn Any + Send>) -> Result<(), String>;
    /// Takes endpoint `ep_id` off the switch (its flows now; ports and links later, by the
    /// reaper). Whether this mode had it.
    async fn release(&self, ep_id: &str) -> Result<bool, ManagerError>;
    /// The namespace endpoint `ep_id`'s interface is in, as a DEL names it: a mode that lost
    /// it (an agent restart knows ports, not namespaces) learns it before `release`.
    fn learn_netns(&self, _ep_id: &str, _netns: &std::path::Path) {}
    /// The port endpoint `ep_id` is on, if this mode holds it and its port carries no endpoint
    /// identity in OVS (a shared port).
    fn shared_port_of(&self, ep_id: &str) -> Option<String>;
    /// The endpoints this mode holds on shared ports: (endpoint id, CNI network as aliases
    /// keep it), for GC.
    fn bound(&self) -> Vec<(String, String)>;
    /// After an agent restart: takes its ports from what was found, frees or deletes what no
    /// longer serves a live endpoint.
    async fn restore(&self, found: &mut Restore<'_>) -> Result<(), ManagerError>;
    /// At each round of the reaper: queue or delete what the mode no longer needs.
    async fn reap(&self);
    /// Background upkeep (refilling the pool, deleting idle trunks). Runs forever; returns at
    /// once for a mode with none.
    async fn upkeep(&self);
}

/// Whether a shared-port mode (pool, trunks) whose ports carry `port_mtu` takes the request:
/// a CNI pod whose MTU fits, unless the endpoint already has a veth port of its own (an ADD
/// from before the mode was on keeps it).
pub fn takes_shared(host: &Host, req: &AddRequest, ep_id: &str, mtu: u32, port_mtu: u32) -> bool {
    !req.peer_in_host
        && mtu <= port_mtu
        && host
            .switch
            .endpoint_port(&crate::names::host_ifname(ep_id))
            .is_none()
}

/// The endpoint's MAC address as bytes.
pub fn endpoint_mac(ep: &Endpoint) -> Result<[u8; 6], ManagerError> {
    crate::netlink::parse_mac(&ep.mac_address).ok_or_else(|| {
        ManagerError::new(
            ErrorKind::Internal,
            format!(
                "netmaster gave endpoint {} a bad MAC {}",
                ep.endpoint_id, ep.mac_address
            ),
        )
    })
}

pub fn log_added(ep_id: &str, ep: &Endpoint, port: &str) {
    tracing::info!(endpoint = %ep_id, ip = %ep.ip_address, network = %format!("{}:{}", ep.tenant_name, ep.network_name), port, "endpoint added");
}

/// The pod's side of a new interface before its addresses: its index, TX checksum offload
/// and IPv6 set, `lo` up.
pub async fn prepare_pod_side(
    pod: &Ns,
    ifname: &str,
    tx_csum_off: bool,
    ipv6_off: bool,
) -> Result<u32, ManagerError> {
    let idx = pod.index(ifname).await?.ok_or_else(|| {
        ManagerError::new(
            ErrorKind::Internal,
            format!("interface {ifname} vanished from {}", pod.path().display()),
        )
    })?;
    pod.prepare_link(ifname, tx_csum_off, ipv6_off).await?;
    if let Some(lo) = pod.index("lo").await? {
        pod.set_up("lo", lo).await?;
    }
    Ok(idx)
}

/// [`finish_pod_side`] for a pod's macvlan, whose IPv6 waited (off) for the endpoint to show
/// whether its network has IPv6.
pub async fn finish_macvlan_pod_side(
    pod: &Ns,
    ifname: &str,
    idx: u32,
    ep: &Endpoint,
) -> Result<(), ManagerError> {
    if !ep.ipv6_address.is_empty() {
        pod.set_ipv6(ifname, true).await?;
    }
    finish_pod_side(pod, ifname, idx, ep).await
}

/// The endpoint's addresses, the interface up, default routes via the gateways.
pub async fn finish_pod_side(
    pod: &Ns,
    ifname: &str,
    idx: u32,
    ep: &Endpoint,
) -> Result<(), ManagerError> {
    let v4: IpAddr = ep.ip_address.parse().map_err(|_| {
        ManagerError::new(
            ErrorKind::Internal,
            format!(
                "netmaster gave endpoint {} a bad address '{}'",
                ep.endpoint_id, ep.ip_address
            ),
        )
    })?;
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

/// Deletes interface `ifname` of the namespace at `netns` if both are there and it is a
/// macvlan (a pod's interface on a pooled port or a trunk) whose lower link `ours` accepts.
/// Whether it deleted one.
pub async fn delete_pod_link(
    kernel: &dyn Kernel,
    netns: &std::path::Path,
    ifname: &str,
    ours: impl FnOnce(u32) -> bool + Send,
) -> Result<bool, LinkError> {
    let Ok(pod) = kernel.open(netns).await else {
        return Ok(false); // The namespace is gone, and its interfaces with it.
    };
    match pod.macvlan_lower(ifname).await? {
        Some((lower, _)) if ours(lower) => pod.delete(ifname).await,
        _ => Ok(false),
    }
}

/// Makes a veth pair whose ends are both called `name`: the host end in the agent's namespace
/// (a switch port to be), the waiting end in `side`, both up, no IPv6 on the host end. Returns
/// the waiting end's index and the host end's MAC. TX checksum offload on the waiting end and
/// the OVS port are the caller's (the pool sets a whole refill's checksums in one visit).
pub async fn make_waiting_pair(
    host: &Ns,
    side: &Ns,
    name: &str,
    mtu: u32,
) -> Result<(u32, String), LinkError> {
    // Locally administered, unicast; a pooled port's is replaced by the pod's MAC at each ADD.
    let mut mac = *uuid::Uuid::new_v4().as_bytes();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    let mac: [u8; 6] = mac[..6].try_into().unwrap_or([2, 0, 0, 0, 0, 1]);
    // The host end born up (it must be up before the port is added: ovs-vswitchd writes back
    // the flags it read): each link event in the agent's namespace costs ovs-vswitchd a
    // reconfiguration of the bridge.
    host.create_veth(name, name, mac, mtu, side.as_ref(), true)
        .await?;
    if let Err(e) = host.set_ipv6(name, false).await {
        tracing::debug!(port = %name, error = %e, "disable IPv6 on the host side");
    }
    let idx = side.index(name).await?.ok_or_else(|| {
        LinkError::other(
            format!("find {name} in namespace {}", side.path().display()),
            "vanished",
        )
    })?;
    side.set_up(name, idx).await?;
    Ok((idx, host.mac(name).await?.unwrap_or_default()))
}
