//! The node's Open vSwitch: the integration bridge, the agent's ports and their flows.
//!
//! Every port the agent owns carries the endpoint's identity in `external_ids`, so the agent can
//! rebuild its view from OVS after a restart; every flow carries a cookie naming its owner, so
//! flows can be replaced or removed exactly (docs/ovs-pipeline.md). By job: this file holds the
//! bridge and its ports, `ofports` the OpenFlow port numbers the agent hands out, `flows` the
//! flow state and its sync to the switch, `tunnels` the ports to peer hosts.

mod flows;
mod ofports;
mod tunnels;

pub use flows::endpoint_flows;
pub use ofports::ENDPOINT_OFPORTS;
pub use tunnels::{ClusterInputs, prime_neighbor};
// Names moved to `crate::names`; kept here for the tools and tests that import them.
pub use crate::names::{host_ifname, ids, is_host_ifname, tunnel_ifname};

use crate::fabric::Inputs;
use crate::names::ids as keys;
use flows::FabricState;
use model::agent::Endpoint;
use ofports::PortIndex;
use ovs::{
    BridgeSpec, FailMode, FlowProgrammer, OfProgrammer, OfctlProgrammer, PortInfo, PortSpec,
    Vswitch,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long ovs-vswitchd may take to open a new router port (a loaded machine).
const ROUTER_PORT_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{0}")]
    Ovsdb(#[from] ovs::OvsdbError),
    #[error("{0}")]
    Flow(#[from] ovs::FlowError),
    #[error(
        "add port {port} to bridge {bridge}: every OpenFlow port number for endpoints is taken"
    )]
    NoOfport { bridge: String, port: String },
}

impl DatapathError {
    /// Whether retrying later may succeed: the connection to ovsdb-server or to the bridge's
    /// OpenFlow socket was lost or refused (OVS restarting), not a refusal of the request.
    pub fn is_transient(&self) -> bool {
        match self {
            DatapathError::Ovsdb(e) => e.is_unavailable(),
            DatapathError::Flow(e) => e.is_transient(),
            DatapathError::NoOfport { .. } => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathType {
    Kernel,
    Userspace,
}

impl DatapathType {
    pub fn ovs_name(self) -> &'static str {
        match self {
            DatapathType::Kernel => "system",
            DatapathType::Userspace => "netdev",
        }
    }

    /// The kernel datapath when the openvswitch module is loaded (or built in), else userspace.
    pub fn detect() -> Self {
        if Path::new("/sys/module/openvswitch").exists() {
            DatapathType::Kernel
        } else {
            DatapathType::Userspace
        }
    }
}

pub struct Datapath {
    pub(crate) vs: Vswitch,
    flows: Arc<dyn FlowProgrammer>,
    ofctl: OfctlProgrammer,
    pub bridge: String,
    pub kind: DatapathType,
    fabric: tokio::sync::Mutex<FabricState>,
    /// The latest generation of the fabric inputs known installed; taken before the fabric lock.
    committed: tokio::sync::Mutex<u64>,
    ports: Mutex<PortIndex>,
    /// Bumped after every apply: the host side (`crate::northsouth`) follows the inputs.
    pub(super) changes: tokio::sync::watch::Sender<u64>,
}

impl Datapath {
    /// The OVSDB helpers, for the start-up steps outside the integration bridge (the uplink
    /// bridge of the userspace datapath).
    pub fn vswitch(&self) -> &Vswitch {
        &self.vs
    }

    pub async fn connect(
        ovsdb: &Path,
        rundir: PathBuf,
        bridge: &str,
        kind: DatapathType,
    ) -> Result<Self, DatapathError> {
        let client = ovs::Client::connect(ovsdb).await?;
        // Flows go over a persistent OpenFlow 1.4 connection: an ovs-ofctl process per change
        // cost 6-60 ms of the ADD (BENCHMARKS.md, issue 4). ovs-ofctl stays for the management
        // socket's path and for dumps.
        let ofctl = OfctlProgrammer::new(&rundir);
        Ok(Datapath {
            vs: Vswitch::new(client),
            flows: Arc::new(OfProgrammer::new(rundir)),
            ofctl,
            bridge: bridge.to_string(),
            kind,
            fabric: tokio::sync::Mutex::new(FabricState {
                inputs: Inputs {
                    arp_proxy: true,
                    ..Default::default()
                },
                ..Default::default()
            }),
            committed: tokio::sync::Mutex::new(0),
            ports: Mutex::new(PortIndex::default()),
            changes: tokio::sync::watch::channel(0).0,
        })
    }

    fn port_index(&self) -> std::sync::MutexGuard<'_, PortIndex> {
        // The index holds no invariant a panic half-way could break beyond one stale entry.
        self.ports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the port index from the bridge's ports in OVS.
    pub async fn load_ports(&self) -> Result<(), DatapathError> {
        let ports = self.vs.list_ports(&self.bridge).await?;
        let mut idx = self.port_index();
        idx.endpoints.clear();
        idx.pool.clear();
        idx.trunks.clear();
        idx.routers.clear();
        idx.published.clear();
        idx.used.clear();
        for p in &ports {
            idx.used.extend(p.ofport);
            idx.used.extend(p.ofport_request);
            // The number flows must use: what the port has, else what it asked for.
            if let (Some(id), Some(of)) = (
                p.external_ids.get(keys::ENDPOINT),
                p.ofport.or(p.ofport_request),
            ) {
                idx.endpoints.insert(p.name.clone(), (id.clone(), of));
            }
            if let (Some(id), Some(list)) = (
                p.external_ids.get(keys::ENDPOINT),
                p.external_ids.get(keys::PUBLISHED),
            ) {
                let list = crate::northsouth::Published::decode(list);
                idx.published.insert(id.clone(), list);
            }
            if let (true, Some(of)) = (
                p.external_ids.contains_key(keys::POOL),
                p.ofport.or(p.ofport_request),
            ) {
                idx.pool.insert(p.name.clone(), of);
            }
            if let (true, Some(of)) = (
                p.external_ids.contains_key(keys::TRUNK),
                p.ofport.or(p.ofport_request),
            ) {
                idx.trunks.insert(p.name.clone(), of);
            }
            if let (Some(nid), Some(of)) = (
                p.external_ids
                    .get(keys::ROUTER_NID)
                    .and_then(|n| n.parse::<u64>().ok()),
                p.ofport.or(p.ofport_request),
            ) {
                let port = crate::fabric::RouterPort {
                    ofport: of,
                    gateway: p
                        .external_ids
                        .get(keys::ROUTER_GATEWAY)
                        .cloned()
                        .unwrap_or_default(),
                    zone: p
                        .external_ids
                        .get(keys::ROUTER_ZONE)
                        .and_then(|z| z.parse().ok())
                        .unwrap_or(0),
                };
                idx.routers.insert(p.name.clone(), (nid, port));
            }
        }
        // Go on after the highest number in use: numbers just freed by an earlier agent's DELs
        // are not reused first.
        idx.next = idx
            .used
            .range(ENDPOINT_OFPORTS)
            .next_back()
            .map_or(*ENDPOINT_OFPORTS.start(), |n| n + 1);
        Ok(())
    }

    /// The endpoint id and OpenFlow port number of the endpoint port `ifname`, from the index.
    pub fn endpoint_port(&self, ifname: &str) -> Option<(String, u32)> {
        self.port_index().endpoints.get(ifname).cloned()
    }

    /// The bridge's OpenFlow management socket (it is re-created when ovs-vswitchd restarts).
    pub fn mgmt_socket(&self) -> PathBuf {
        self.ofctl.mgmt_socket(&self.bridge)
    }

    /// Creates or fixes the integration bridge, learns which of our flows it holds, and installs
    /// the base flows.
    pub async fn ensure_bridge(&self) -> Result<(), DatapathError> {
        let spec = BridgeSpec::new(&self.bridge)
            .datapath_type(self.kind.ovs_name())
            .protocols(&["OpenFlow13", "OpenFlow14"])
            .fail_mode(FailMode::Secure)
            .external_id("contiv-owner", "netplugin");
        self.vs.ensure_bridge(&spec).await?;
        self.load_ports().await?;
        // The management socket appears only once ovs-vswitchd has built the bridge.
        self.ofctl
            .wait_for_bridge(&self.bridge, Duration::from_secs(10))
            .await?;
        let mut st = self.fabric.lock().await;
        // Router ports found on the bridge keep their flows from the start: a restarting
        // agent must not cut the way out (the host side reconciles them once synced).
        st.inputs.routers = self
            .port_index()
            .routers
            .values()
            .map(|(nid, p)| (*nid, p.clone()))
            .collect();
        self.learn_installed(&mut st).await?;
        self.apply(&mut st).await
    }

    /// Adds (or finds) a network's router port (`crate::northsouth`) with an OpenFlow port
    /// number of the agent's choosing, recording in `external_ids` what its flows need after
    /// a restart; returns the number. The flows follow [`Datapath::set_routers`].
    pub async fn add_router_port(
        &self,
        name: &str,
        net: &crate::northsouth::RouterNet,
    ) -> Result<u32, DatapathError> {
        let known = self.port_index().routers.get(name).map(|(_, p)| p.ofport);
        let spec = PortSpec::new(name)
            .external_id(keys::ROUTER, net.key())
            .external_id(keys::ROUTER_NID, net.nid.to_string())
            .external_id(keys::ROUTER_ZONE, net.zone.to_string())
            .external_id(keys::ROUTER_GATEWAY, net.gateway.to_string());
        let of = self.add_numbered_port(spec, known).await?;
        // Only once ovs-vswitchd has opened the port (it writes the number then) does what the
        // router sends reach the pods: its gateway announcements, sent after the flows, must
        // not go to a port the switch does not read yet, and the flows must not send pods'
        // packets to it before (docs/ovs-pipeline.md "The tenant router's port").
        // Past the wait, making the router fails and is retried (with a warning).
        self.vs.wait_ofport(name, ROUTER_PORT_WAIT).await?;
        self.port_index()
            .routers
            .insert(name.to_string(), (net.nid, net.port(of)));
        Ok(of)
    }

    /// The router ports on the bridge: name -> network id.
    pub fn router_ports(&self) -> BTreeMap<String, u64> {
        self.port_index()
            .routers
            .iter()
            .map(|(n, (nid, _))| (n.clone(), *nid))
            .collect()
    }

    /// Sets the router ports the flows use (network id -> port) and installs the change.
    pub async fn set_routers(
        &self,
        routers: BTreeMap<u64, crate::fabric::RouterPort>,
    ) -> Result<(), DatapathError> {
        if self.fabric.lock().await.inputs.routers == routers {
            return Ok(());
        }
        self.change_locals(|st| st.inputs.routers = routers).await
    }

    /// What the host side is computed from; None until this host's endpoints and the cluster
    /// view are known (before, it must not remove what running pods use).
    pub async fn northsouth_inputs(&self) -> Option<crate::northsouth::NsInputs> {
        let st = self.fabric.lock().await;
        if !(st.locals_loaded && st.synced) {
            return None;
        }
        Some(crate::northsouth::NsInputs {
            local: st
                .inputs
                .local
                .iter()
                .map(|(id, (of, ep))| {
                    (id.clone(), (*of, ep.clone(), st.inputs.trunks.contains(of)))
                })
                .collect(),
            remote: st.inputs.remote.clone(),
            pvt_subnet: st.pvt_subnet.clone(),
            published: self
                .port_index()
                .published
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// Records the published ports (`docker run -p`) of the endpoint on port `ifname` in its
    /// `external_ids` (they outlive an agent restart there) and has the host side follow.
    pub async fn set_published(
        &self,
        ifname: &str,
        list: &[crate::northsouth::Published],
    ) -> Result<(), DatapathError> {
        let Some(port) = self
            .vs
            .list_ports(&self.bridge)
            .await?
            .into_iter()
            .find(|p| p.name == ifname)
        else {
            return Ok(());
        };
        let mut ids = port.external_ids.clone();
        if list.is_empty() {
            ids.remove(keys::PUBLISHED);
        } else {
            ids.insert(
                keys::PUBLISHED.to_string(),
                crate::northsouth::Published::encode(list),
            );
        }
        if ids != port.external_ids {
            self.vs.set_port_external_ids(ifname, &ids).await?;
        }
        if let Some(id) = port.external_ids.get(keys::ENDPOINT) {
            let mut idx = self.port_index();
            if list.is_empty() {
                idx.published.remove(id);
            } else {
                idx.published.insert(id.clone(), list.to_vec());
            }
        }
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
        Ok(())
    }

    /// Follows changes of the flows' inputs (see [`Datapath::northsouth_inputs`]).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Adds (or fixes) an endpoint's port with an OpenFlow port number of the agent's choosing,
    /// and returns that number, for [`Datapath::program_endpoint`]. Idempotent. It does not
    /// wait for ovs-vswitchd to set the port up: the number is guaranteed free in the same
    /// OVSDB transaction, so the flows can name it at once; [`Datapath::watch_ofports`] catches
    /// a switch that gives another number anyway. The veth may still be down.
    pub async fn add_endpoint_port(
        &self,
        ifname: &str,
        ep: &Endpoint,
        extra_ids: &BTreeMap<String, String>,
    ) -> Result<u32, DatapathError> {
        let mut spec = PortSpec::new(ifname)
            .external_id(keys::ENDPOINT, &ep.endpoint_id)
            .external_id(keys::TENANT, &ep.tenant_name)
            .external_id(keys::NETWORK, &ep.network_name)
            .external_id(keys::IP, &ep.ip_address)
            .external_id(keys::MAC, &ep.mac_address)
            .tag(ep.pkt_tag as u16);
        if !ep.group_name.is_empty() {
            spec = spec.external_id(keys::GROUP, &ep.group_name);
        }
        if !ep.ipv6_address.is_empty() {
            spec = spec.external_id(keys::IPV6, &ep.ipv6_address);
        }
        for (k, v) in extra_ids {
            spec = spec.external_id(k, v);
        }
        let known = self.endpoint_port(ifname).map(|(_, of)| of);
        let ofport = self.add_numbered_port(spec, known).await?;
        crate::steps::mark("ovsdb_port");
        self.port_index()
            .endpoints
            .insert(ifname.to_string(), (ep.endpoint_id.clone(), ofport));
        Ok(ofport)
    }

    /// Adds (or fixes) a port with an OpenFlow port number of the agent's choosing (`known`:
    /// the number it already has), and returns the number.
    async fn add_numbered_port(
        &self,
        spec: PortSpec,
        known: Option<u32>,
    ) -> Result<u32, DatapathError> {
        let ifname = spec.name.clone();
        let mut ofport = match known {
            Some(of) => of,
            None => self.allocate_ofport(&ifname)?,
        };
        // A number can be taken behind the index's back only by another OVSDB writer; a few
        // attempts with fresh numbers ride that out.
        let mut attempts = 0;
        loop {
            match self
                .vs
                .add_port(&self.bridge, &spec.clone().ofport_request(ofport))
                .await
            {
                Ok(_) => return Ok(ofport),
                Err(e)
                    if matches!(e.root(), ovs::OvsdbError::OfportTaken { .. }) && attempts < 3 =>
                {
                    attempts += 1;
                    tracing::warn!(port = %ifname, ofport, "OpenFlow port number taken outside the agent: picking another");
                    // It stays marked used: someone holds it.
                    ofport = self.allocate_ofport(&ifname)?;
                }
                Err(e) => {
                    if known.is_none() {
                        self.port_index().used.remove(&ofport);
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// Adds ports for the port pool, all at once (ovs-vswitchd reconfigures the bridge once for
    /// the lot, rather than once per port): their OpenFlow numbers, in order.
    pub async fn add_pool_ports(&self, names: &[String]) -> Result<Vec<u32>, DatapathError> {
        let spec = |n: &String| PortSpec::new(n).external_id(keys::POOL, "1");
        let mut ofports = Vec::new();
        for n in names {
            ofports.push(self.allocate_ofport(n)?);
        }
        let specs: Vec<PortSpec> = names
            .iter()
            .zip(&ofports)
            .map(|(n, of)| spec(n).ofport_request(*of))
            .collect();
        if let Err(e) = self.vs.add_new_ports(&self.bridge, &specs).await {
            // A number taken behind the index's back (or a leftover port of the same name):
            // one by one, with the per-port recovery.
            tracing::debug!(error = %e, "add pooled ports in one transaction; one by one instead");
            for of in &ofports {
                self.port_index().used.remove(of);
            }
            ofports = futures::future::try_join_all(
                names.iter().map(|n| self.add_numbered_port(spec(n), None)),
            )
            .await?;
        }
        let mut idx = self.port_index();
        for (n, of) in names.iter().zip(&ofports) {
            idx.pool.insert(n.clone(), *of);
        }
        Ok(ofports)
    }

    /// Adds a network trunk's port (`crate::attach::trunk`), or finds it there, and returns its
    /// OpenFlow number. The flows learn it is a trunk (see [`Datapath::set_trunks`]).
    pub async fn add_trunk_port(&self, name: &str, network: &str) -> Result<u32, DatapathError> {
        let known = self.port_index().trunks.get(name).copied();
        let of = self
            .add_numbered_port(PortSpec::new(name).external_id(keys::TRUNK, network), known)
            .await?;
        self.port_index().trunks.insert(name.to_string(), of);
        Ok(of)
    }

    /// Records which OpenFlow ports are network trunks; the next apply uses it.
    pub async fn set_trunks(&self, ofports: impl IntoIterator<Item = u32>) {
        let mut st = self.fabric.lock().await;
        st.inputs.trunks.extend(ofports);
    }

    /// Forgets trunks that were deleted (their numbers may serve other ports later).
    pub async fn unset_trunks(&self, ofports: &[u32]) {
        let mut st = self.fabric.lock().await;
        for of in ofports {
            st.inputs.trunks.remove(of);
        }
    }

    fn allocate_ofport(&self, ifname: &str) -> Result<u32, DatapathError> {
        self.port_index()
            .allocate()
            .ok_or_else(|| DatapathError::NoOfport {
                bridge: self.bridge.clone(),
                port: ifname.to_string(),
            })
    }

    /// Removes an endpoint's flows and port. Nothing to remove is not an error. Flows an earlier
    /// agent left are known too: `ensure_bridge` recorded every cookie the switch held.
    pub async fn remove_endpoint(
        &self,
        ifname: &str,
        endpoint_id: &str,
    ) -> Result<(), DatapathError> {
        self.remove_endpoint_flows(endpoint_id).await?;
        self.remove_port(ifname).await
    }

    /// Removes an endpoint port whose flows are gone. Nothing to remove is not an error.
    ///
    /// On the userspace datapath this is dear for the switch, not for us: ovs-vswitchd closes
    /// the port's packet socket, which waits for an RCU grace period (8-16 ms here) in its main
    /// loop, and every OpenFlow request waits behind it. Hence a DEL leaves it to the agent's
    /// reaper (`Manager::reap_links`).
    pub async fn remove_port(&self, ifname: &str) -> Result<(), DatapathError> {
        self.vs.del_port(&self.bridge, ifname).await?;
        crate::steps::mark("ovsdb_port");
        // The number is free once the port is gone from OVS (and its flows long before).
        let mut idx = self.port_index();
        if let Some((id, of)) = idx.endpoints.remove(ifname) {
            idx.published.remove(&id);
            idx.used.remove(&of);
        }
        if let Some(of) = idx.pool.remove(ifname) {
            idx.used.remove(&of);
        }
        if let Some(of) = idx.trunks.remove(ifname) {
            idx.used.remove(&of);
        }
        if let Some((_, p)) = idx.routers.remove(ifname) {
            idx.used.remove(&p.ofport);
        }
        Ok(())
    }

    /// Keeps endpoint flows on the numbers ovs-vswitchd really gave: the agent requests a number
    /// for each endpoint port and installs flows for it before the switch has set the port up.
    /// Should the switch give another number (someone else took it), the endpoint's flows move
    /// to that number, and the index follows. Runs until the OVSDB client shuts down.
    pub async fn watch_ofports(&self) -> Result<(), DatapathError> {
        use ovs::MonitorEvent;
        let mut monitor = self
            .vs
            .client()
            .monitor(
                ovs::DB,
                &[ovs::MonitorRequest::new("Interface").columns(&["name", "ofport", "error"])],
            )
            .await?;
        let mut pending = Some(monitor.initial.clone());
        loop {
            let updates = match pending.take() {
                Some(u) => u,
                None => match monitor.next().await {
                    Some(MonitorEvent::Update(u) | MonitorEvent::Resync(u)) => u,
                    None => return Ok(()),
                },
            };
            for (_, row) in updates.table("Interface") {
                let Some(new) = &row.new else { continue };
                let (Some(name), Some(of)) = (new.string("name"), new.integer("ofport")) else {
                    continue;
                };
                let Some((ep_id, want)) = self.endpoint_port(name) else {
                    continue;
                };
                if of == -1 {
                    tracing::error!(port = %name, endpoint = %ep_id, error = new.string("error").unwrap_or_default(), "ovs-vswitchd could not set up the endpoint's port");
                    continue;
                }
                let Ok(got) = u32::try_from(of) else { continue };
                if got == 0 || got == want {
                    continue;
                }
                tracing::warn!(port = %name, endpoint = %ep_id, requested = want, got, "ovs-vswitchd gave another OpenFlow port number: moving the endpoint's flows");
                {
                    let mut idx = self.port_index();
                    idx.used.insert(got);
                    idx.endpoints.insert(name.to_string(), (ep_id.clone(), got));
                }
                let mut st = self.fabric.lock().await;
                if let Some(e) = st.inputs.local.get_mut(&ep_id) {
                    e.0 = got;
                }
                if let Err(e) = self.apply(&mut st).await {
                    tracing::error!(port = %name, error = %e, "move the endpoint's flows to its real port number");
                }
            }
        }
    }

    /// The endpoint ports, the port pool's ports and the network trunks on the bridge, from
    /// one listing.
    pub async fn agent_ports(&self) -> Result<AgentPorts, DatapathError> {
        let mut out = AgentPorts::default();
        for p in self.vs.list_ports(&self.bridge).await? {
            if p.external_ids.contains_key(keys::POOL) {
                out.pool.push(p);
            } else if p.external_ids.contains_key(keys::TRUNK) {
                out.trunks.push(p);
            } else if p.external_ids.contains_key(keys::ENDPOINT) {
                out.endpoints.push(p);
            }
        }
        Ok(out)
    }
}

/// The ports of the bridge the agent made for endpoints, by kind.
#[derive(Debug, Default)]
pub struct AgentPorts {
    /// A veth per endpoint, with its identity in `external_ids`.
    pub endpoints: Vec<PortInfo>,
    /// The port pool's (`crate::attach::pool`).
    pub pool: Vec<PortInfo>,
    /// Network trunks (`crate::attach::trunk`).
    pub trunks: Vec<PortInfo>,
}
