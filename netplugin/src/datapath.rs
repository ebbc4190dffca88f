//! The node's Open vSwitch: the integration bridge, endpoint ports and their flows.
//!
//! Every port the agent owns carries the endpoint's identity in `external_ids`, so the agent can
//! rebuild its view from OVS after a restart; every flow carries a cookie naming its owner, so
//! flows can be replaced or removed exactly (docs/ovs-pipeline.md).

use crate::fabric::Inputs;
use model::agent::{Endpoint, RuleCounters};
use ovs::{
    BridgeSpec, FailMode, Flow, FlowProgrammer, OfProgrammer, OfctlProgrammer, PortInfo, PortSpec,
    Vswitch,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// external_ids keys on endpoint ports.
pub mod ids {
    pub const ENDPOINT: &str = "contiv-endpoint-id";
    pub const CONTAINER: &str = "contiv-container-id";
    pub const IFNAME: &str = "contiv-ifname";
    pub const NETNS: &str = "contiv-netns";
    pub const TENANT: &str = "contiv-tenant";
    pub const NETWORK: &str = "contiv-network";
    pub const GROUP: &str = "contiv-group";
    pub const IP: &str = "contiv-ip";
    pub const IPV6: &str = "contiv-ipv6";
    pub const MAC: &str = "contiv-mac";
    /// The runtime's name of the network config (CNI `name`), which scopes GC.
    pub const CNI_NETWORK: &str = "contiv-cni-network";
    /// On tunnel ports: the peer host and its VTEP address.
    pub const PEER: &str = "contiv-peer";
    pub const VTEP: &str = "contiv-vtep";
    /// On the ports of the agent's port pool (`crate::pool`): which pod a port serves is not
    /// in OVS (writing it would make ovs-vswitchd reconfigure the bridge at every ADD).
    pub const POOL: &str = "contiv-pool";
    /// On network trunks (`crate::trunk`): the network ("tenant/network") the trunk serves.
    pub const TRUNK: &str = "contiv-trunk";
}

pub use crate::fabric::cookie;

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The host-side veth name of an endpoint: `vc` and 12 hex digits of its id's hash, so it fits
/// IFNAMSIZ and is found again from the endpoint id alone (DEL needs nothing else).
pub fn host_ifname(endpoint_id: &str) -> String {
    format!(
        "vc{:012x}",
        fnv1a(endpoint_id.as_bytes()) & 0xffff_ffff_ffff
    )
}

/// Whether `name` has the shape of a [`host_ifname`]: `vc` and 12 lowercase hex digits.
pub fn is_host_ifname(name: &str) -> bool {
    name.len() == 14
        && name.starts_with("vc")
        && name[2..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

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
    pub vs: Vswitch,
    pub flows: Arc<dyn FlowProgrammer>,
    ofctl: OfctlProgrammer,
    pub bridge: String,
    pub kind: DatapathType,
    fabric: tokio::sync::Mutex<FabricState>,
    /// The latest generation of the fabric inputs known installed; taken before the fabric lock.
    committed: tokio::sync::Mutex<u64>,
    ports: Mutex<PortIndex>,
}

/// The OpenFlow port numbers the agent gives endpoint ports (`Interface.ofport_request`).
/// ovs-vswitchd numbers ports that request nothing (tunnels, the uplink) from the lower half,
/// 1-32767 ("to reserve the upper half for assignment by controllers", ofproto.c), so the two
/// never meet; 0xff00 and up are OpenFlow's reserved ports.
pub const ENDPOINT_OFPORTS: std::ops::RangeInclusive<u32> = 32768..=0xfeff;

/// The endpoint ports on the bridge and the OpenFlow numbers in use, so that an ADD needs no
/// OVSDB read: rebuilt from OVS at start ([`Datapath::load_ports`]) and kept by the agent, the
/// only writer of its bridge's ports.
#[derive(Debug, Default)]
struct PortIndex {
    /// Host interface name -> (endpoint id, OpenFlow port number).
    endpoints: HashMap<String, (String, u32)>,
    /// Port-pool port name -> OpenFlow port number.
    pool: HashMap<String, u32>,
    /// Network trunk name -> OpenFlow port number.
    trunks: HashMap<String, u32>,
    /// Numbers held or requested by any port of the bridge, or reserved by an ADD in flight.
    used: BTreeSet<u32>,
    /// Where the next search for a free number starts: numbers go round the range, so a number
    /// freed by a DEL is not handed out again soon (as ovs-vswitchd itself does).
    next: u32,
}

impl PortIndex {
    /// A free number in [`ENDPOINT_OFPORTS`], now reserved; `None` when all are taken.
    fn allocate(&mut self) -> Option<u32> {
        let (first, last) = (*ENDPOINT_OFPORTS.start(), *ENDPOINT_OFPORTS.end());
        let start = self.next.clamp(first, last);
        let n = (start..=last)
            .chain(first..start)
            .find(|n| !self.used.contains(n))?;
        self.used.insert(n);
        self.next = if n == last { first } else { n + 1 };
        Some(n)
    }
}

/// What the flows are computed from, and what is installed.
#[derive(Default)]
struct FabricState {
    inputs: Inputs,
    /// Peer host -> VTEP address of its tunnel port.
    peers: BTreeMap<String, String>,
    /// Whether the cluster view (remote endpoints, peers) is complete. Until it is, flows that
    /// depend on it are left as they are (an agent restart must not cut running traffic).
    synced: bool,
    /// Whether this host's endpoints have been loaded (after a restart).
    locals_loaded: bool,
    /// Installed flows by cookie; `None`: present in the switch, content not known (found at
    /// start or after ovs-vswitchd restarted).
    applied: BTreeMap<u64, Option<Vec<Flow>>>,
    /// Meters installed: id -> (kbps, burst kbits).
    meters: BTreeMap<u32, (u64, u64)>,
    /// Bumped by every endpoint change that waits for [`Datapath::commit`].
    generation: u64,
    /// Every endpoint (local and remote) the flows were last computed from: id -> its
    /// conntrack identity. When one goes, its connections are forgotten (see `forget_departed`).
    tracked: BTreeMap<String, Tracked>,
}

/// What identifies an endpoint's connections in conntrack, and what they were judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tracked {
    zone: u16,
    ip: String,
    group: u32,
}

impl Tracked {
    fn of(ep: &Endpoint) -> Self {
        Tracked {
            zone: crate::fabric::zone(ep) as u16,
            ip: ep.ip_address.clone(),
            group: ep.group_id,
        }
    }
}

/// The cluster as one agent's flows need it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterInputs {
    /// Live peers (this host excluded): host name -> VTEP address.
    pub peers: BTreeMap<String, String>,
    /// Endpoints of other hosts by id.
    pub remote: BTreeMap<String, Endpoint>,
    pub arp_proxy: bool,
    pub policy: crate::policy::PolicyInputs,
    pub profiles: BTreeMap<String, crate::fabric::Profile>,
}

/// The name of the tunnel port to a VTEP: `vx` and the address in hex (fits IFNAMSIZ).
pub fn tunnel_ifname(vtep: &str) -> String {
    match vtep.parse::<std::net::Ipv4Addr>() {
        Ok(a) => format!("vx{:08x}", u32::from(a)),
        Err(_) => format!("vx{:012x}", fnv1a(vtep.as_bytes()) & 0xffff_ffff_ffff),
    }
}

/// Makes the host resolve a peer VTEP's MAC now, by sending it one UDP datagram (to the discard
/// port). The userspace datapath learns tunnel neighbors by snooping ARP on the uplink bridge and
/// drops tunnel packets while a neighbor is unknown: without this, the first packets to a new
/// peer (and the first after the entry ages out) are lost.
pub fn prime_neighbor(vtep: &str) {
    let Ok(ip) = vtep.parse::<std::net::IpAddr>() else {
        return;
    };
    let bind = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    if let Ok(s) = std::net::UdpSocket::bind(bind) {
        let _ = s.send_to(b"contiv", (ip, 9));
    }
}

impl Datapath {
    /// The VTEP addresses of the peers this node has tunnels to.
    pub async fn peer_vteps(&self) -> Vec<String> {
        self.fabric.lock().await.peers.values().cloned().collect()
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
        idx.used.clear();
        for p in &ports {
            idx.used.extend(p.ofport);
            idx.used.extend(p.ofport_request);
            // The number flows must use: what the port has, else what it asked for.
            if let (Some(id), Some(of)) = (
                p.external_ids.get(ids::ENDPOINT),
                p.ofport.or(p.ofport_request),
            ) {
                idx.endpoints.insert(p.name.clone(), (id.clone(), of));
            }
            if let (true, Some(of)) = (
                p.external_ids.contains_key(ids::POOL),
                p.ofport.or(p.ofport_request),
            ) {
                idx.pool.insert(p.name.clone(), of);
            }
            if let (true, Some(of)) = (
                p.external_ids.contains_key(ids::TRUNK),
                p.ofport.or(p.ofport_request),
            ) {
                idx.trunks.insert(p.name.clone(), of);
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
        self.learn_installed(&mut st).await?;
        self.apply(&mut st).await
    }

    /// Records which cookies and meters the switch holds, so that stale ones get removed: a
    /// profile removed or an endpoint deleted while the agent was down leaves meters nobody
    /// wants (the bridge is the agent's: every meter on it is one the agent made).
    async fn learn_installed(&self, st: &mut FabricState) -> Result<(), DatapathError> {
        st.applied = self
            .flows
            .dump_flows(&self.bridge, None)
            .await?
            .into_iter()
            .map(|f| (f.cookie, None))
            .collect();
        st.meters = self
            .flows
            .dump_meters(&self.bridge)
            .await?
            .into_iter()
            .map(|m| (m.id, (m.rate, m.burst)))
            .collect();
        Ok(())
    }

    /// Installs the difference between the desired flows and the installed ones, in one bundle.
    async fn apply(&self, st: &mut FabricState) -> Result<(), DatapathError> {
        let want = crate::fabric::desired(&st.inputs);
        // Flows are left alone until what they derive from is known: this host's endpoints
        // (from OVS and netmaster at start) and the cluster view. A restarting agent must not
        // remove flows that running pods use.
        let ours = |c: u64| match cookie::class(c) {
            cookie::BASE => true,
            cookie::ENDPOINT => st.locals_loaded,
            _ => st.locals_loaded && st.synced,
        };
        let mut sets: Vec<(u64, Vec<Flow>)> = Vec::new();
        for (c, flows) in &want {
            if ours(*c) && st.applied.get(c) != Some(&Some(flows.clone())) {
                sets.push((*c, flows.clone()));
            }
        }
        for c in st.applied.keys() {
            if !want.contains_key(c) && ours(*c) {
                sets.push((*c, Vec::new()));
            }
        }
        // Meters before the flows that use them; stale ones after the flows stop using them.
        let want_meters = if st.locals_loaded {
            crate::fabric::desired_meters(&st.inputs)
        } else {
            st.meters.clone()
        };
        for (id, m) in &want_meters {
            if st.meters.get(id) != Some(m) {
                self.flows.set_meter(&self.bridge, *id, m.0, m.1).await?;
                st.meters.insert(*id, *m);
            }
        }
        crate::steps::mark("desired");
        if !sets.is_empty() {
            self.flows.replace_flow_sets(&self.bridge, &sets).await?;
        }
        crate::steps::mark("bundle");
        let stale: Vec<u32> = st
            .meters
            .keys()
            .filter(|id| !want_meters.contains_key(id))
            .copied()
            .collect();
        for id in stale {
            self.flows.del_meter(&self.bridge, id).await?;
            st.meters.remove(&id);
        }
        self.forget_departed(st).await;
        if sets.is_empty() {
            return Ok(());
        }
        for (c, flows) in sets {
            if flows.is_empty() {
                st.applied.remove(&c);
            } else {
                st.applied.insert(c, Some(flows));
            }
        }
        Ok(())
    }

    /// Forgets the tracked connections of endpoints that are gone (or changed group) since the
    /// last apply. Conntrack knows connections by addresses only: a connection of a deleted pod
    /// would otherwise stay established for the next pod given its address, whatever that pod's
    /// group, and pass the policy tables without meeting a rule. Only while rules exist (else
    /// the pipeline tracks nothing); a failure is logged, since the flows are already right.
    async fn forget_departed(&self, st: &mut FabricState) {
        use futures::StreamExt;
        if !(st.locals_loaded && st.synced) {
            return;
        }
        let now: BTreeMap<String, Tracked> = st
            .inputs
            .local
            .iter()
            .map(|(id, (_, ep))| (id, ep))
            .chain(st.inputs.remote.iter())
            .filter(|(_, ep)| !ep.ip_address.is_empty())
            .map(|(id, ep)| (id.clone(), Tracked::of(ep)))
            .collect();
        let old = std::mem::replace(&mut st.tracked, now);
        if st.inputs.policy.rules.is_empty() {
            return;
        }
        // Only zones of networks with members here hold entries on this switch (the others
        // have no flows here), before or after the change.
        let zones: std::collections::BTreeSet<u16> = old
            .iter()
            .filter(|(id, _)| st.inputs.local.contains_key(*id))
            .map(|(_, t)| t.zone)
            .chain(st.inputs.local.values().map(|(_, ep)| Tracked::of(ep).zone))
            .collect();
        let flushes: Vec<(String, u16, String)> = old
            .iter()
            .filter(|(id, t)| st.tracked.get(*id) != Some(t) && zones.contains(&t.zone))
            .flat_map(|(id, t)| {
                ["ct_nw_src", "ct_nw_dst"]
                    .map(|side| (id.clone(), t.zone, format!("{side}={}", t.ip)))
            })
            .collect();
        // A few at a time: a host that left takes all its endpoints with it, and the flows of
        // every other change wait for this pass.
        let (flows, bridge) = (self.flows.clone(), self.bridge.clone());
        let mut results = futures::stream::iter(flushes)
            .map(move |(id, zone, tuple)| {
                let (flows, bridge) = (flows.clone(), bridge.clone());
                async move { (id, flows.flush_conntrack(&bridge, zone, &tuple).await) }
            })
            .buffer_unordered(8);
        while let Some((id, r)) = results.next().await {
            if let Err(e) = r {
                tracing::warn!(endpoint = %id, error = %e, "forget the connections of a departed endpoint");
            }
        }
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
            .external_id(ids::ENDPOINT, &ep.endpoint_id)
            .external_id(ids::TENANT, &ep.tenant_name)
            .external_id(ids::NETWORK, &ep.network_name)
            .external_id(ids::IP, &ep.ip_address)
            .external_id(ids::MAC, &ep.mac_address)
            .tag(ep.pkt_tag as u16);
        if !ep.group_name.is_empty() {
            spec = spec.external_id(ids::GROUP, &ep.group_name);
        }
        if !ep.ipv6_address.is_empty() {
            spec = spec.external_id(ids::IPV6, &ep.ipv6_address);
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
        let spec = |n: &String| PortSpec::new(n).external_id(ids::POOL, "1");
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

    /// Adds a network trunk's port (`crate::trunk`), or finds it there, and returns its
    /// OpenFlow number. The flows learn it is a trunk (see [`Datapath::set_trunks`]).
    pub async fn add_trunk_port(&self, name: &str, network: &str) -> Result<u32, DatapathError> {
        let known = self.port_index().trunks.get(name).copied();
        let of = self
            .add_numbered_port(PortSpec::new(name).external_id(ids::TRUNK, network), known)
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

    /// Installs (replaces) the flows of one local endpoint and of its network.
    pub async fn program_endpoint(&self, ofport: u32, ep: &Endpoint) -> Result<(), DatapathError> {
        self.set_local_endpoints(vec![(ofport, ep.clone())], false)
            .await
    }

    /// Records local endpoints (all of them when `replace_all`, as after a restart) and applies.
    pub async fn set_local_endpoints(
        &self,
        eps: Vec<(u32, Endpoint)>,
        replace_all: bool,
    ) -> Result<(), DatapathError> {
        self.change_locals(|st| {
            if replace_all {
                st.inputs.local.clear();
                st.locals_loaded = true;
            }
            for (port, ep) in eps {
                st.inputs.local.insert(ep.endpoint_id.clone(), (port, ep));
            }
        })
        .await
    }

    /// Changes the local endpoints under the fabric lock and returns once that change is
    /// installed (see [`Datapath::commit`]).
    async fn change_locals(
        &self,
        change: impl FnOnce(&mut FabricState),
    ) -> Result<(), DatapathError> {
        let generation = {
            let mut st = self.fabric.lock().await;
            change(&mut st);
            st.generation += 1;
            st.generation
        };
        self.commit(generation).await
    }

    /// Installs the inputs as of `generation` (or later). Group commit: endpoint changes made
    /// while an apply is in flight go in the next one together, one bundle for all, instead of
    /// one bundle each in turn (8 parallel DELs waited behind each other's bundles).
    async fn commit(&self, generation: u64) -> Result<(), DatapathError> {
        let mut done = self.committed.lock().await;
        crate::steps::mark("commit_wait");
        if *done >= generation {
            // An apply that started after this change (it read a later generation under the
            // fabric lock) succeeded: the change is installed.
            return Ok(());
        }
        let mut st = self.fabric.lock().await;
        crate::steps::mark("fabric_lock");
        let now = st.generation;
        self.apply(&mut st).await?;
        *done = now;
        Ok(())
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

    /// Removes an endpoint's flows (its port stays: see [`Datapath::remove_port`]).
    pub async fn remove_endpoint_flows(&self, endpoint_id: &str) -> Result<(), DatapathError> {
        self.change_locals(|st| {
            st.inputs.local.remove(endpoint_id);
        })
        .await?;
        crate::steps::mark("flows");
        Ok(())
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
        if let Some((_, of)) = idx.endpoints.remove(ifname) {
            idx.used.remove(&of);
        }
        if let Some(of) = idx.pool.remove(ifname) {
            idx.used.remove(&of);
        }
        if let Some(of) = idx.trunks.remove(ifname) {
            idx.used.remove(&of);
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

    /// Brings tunnels and flows in line with the cluster: a tunnel port per live peer, flows for
    /// the other hosts' endpoints in the networks that have members here; tunnels to peers that
    /// left are removed after the flows stop using them.
    pub async fn set_cluster(&self, c: ClusterInputs) -> Result<(), DatapathError> {
        let ports = self.vs.list_ports(&self.bridge).await?;
        let mut have: BTreeMap<String, (String, Option<u32>)> = BTreeMap::new();
        for p in &ports {
            if let Some(h) = p.external_ids.get(ids::PEER) {
                have.insert(h.clone(), (p.name.clone(), p.ofport));
            }
        }
        let mut tunnels = BTreeMap::new();
        for (host, vtep) in &c.peers {
            let name = tunnel_ifname(vtep);
            let port = match have.get(host) {
                Some((n, Some(of))) if *n == name => *of,
                _ => {
                    let spec = PortSpec::new(&name)
                        .iface_type("vxlan")
                        .option("remote_ip", vtep)
                        .option("key", "flow")
                        // The outer header carries the inner packet's DSCP (network profiles).
                        .option("tos", "inherit")
                        .external_id(ids::PEER, host)
                        .external_id(ids::VTEP, vtep);
                    self.vs.add_port(&self.bridge, &spec).await?;
                    let of = self.vs.wait_ofport(&name, Duration::from_secs(10)).await?;
                    prime_neighbor(vtep);
                    tracing::info!(peer = %host, vtep = %vtep, port = %name, "tunnel up");
                    of
                }
            };
            tunnels.insert(host.clone(), port);
        }
        {
            let mut st = self.fabric.lock().await;
            st.inputs.tunnels = tunnels;
            st.inputs.remote = c.remote;
            st.inputs.arp_proxy = c.arp_proxy;
            st.inputs.policy = c.policy;
            st.inputs.profiles = c.profiles;
            st.peers = c.peers.clone();
            st.synced = true;
            self.apply(&mut st).await?;
        }
        for (host, (name, _)) in &have {
            if c.peers.get(host).map(|v| tunnel_ifname(v)).as_deref() != Some(name.as_str()) {
                self.vs.del_port(&self.bridge, name).await?;
                tracing::info!(peer = %host, port = %name, "tunnel removed: peer left");
            }
        }
        Ok(())
    }

    /// After ovs-vswitchd restarted (its flows are gone, port numbers may have changed):
    /// re-reads the ports and installs every flow again.
    pub async fn resync(&self) -> Result<(), DatapathError> {
        self.ofctl
            .wait_for_bridge(&self.bridge, Duration::from_secs(10))
            .await?;
        let ports = self.vs.list_ports(&self.bridge).await?;
        let mut st = self.fabric.lock().await;
        for p in &ports {
            let Some(of) = p.ofport else { continue };
            if let Some(id) = p.external_ids.get(ids::ENDPOINT)
                && let Some(e) = st.inputs.local.get_mut(id)
            {
                e.0 = of;
            }
            if let Some(h) = p.external_ids.get(ids::PEER)
                && let Some(t) = st.inputs.tunnels.get_mut(h)
            {
                *t = of;
            }
        }
        // A new ovs-vswitchd starts with no flows and no meters: nothing to learn, everything
        // to add.
        st.applied.clear();
        st.meters.clear();
        self.apply(&mut st).await?;
        // ... and with no tunnel neighbors: resolve the peers before traffic needs them.
        for vtep in st.peers.values() {
            prime_neighbor(vtep);
        }
        Ok(())
    }

    /// The packets and bytes each installed policy rule's flows matched on this switch, by
    /// rule key (`tenant:policy:ruleId`); empty, without asking the switch, when no rule has
    /// flows here. Counters restart when a rule's flows are replaced (a group it applies to
    /// gained or lost its last endpoint here).
    pub async fn rule_counters(&self) -> Result<BTreeMap<String, RuleCounters>, DatapathError> {
        let keys: BTreeMap<u64, String> = {
            let st = self.fabric.lock().await;
            st.inputs
                .policy
                .rules
                .keys()
                .map(|k| (cookie::rule(k), k.clone()))
                .filter(|(c, _)| matches!(st.applied.get(c), Some(Some(_))))
                .collect()
        };
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        let filter = ovs::CookieMask::masked(cookie::RULE, cookie::CLASS_MASK);
        let mut out = BTreeMap::new();
        for f in self.flows.dump_flows(&self.bridge, Some(filter)).await? {
            if let Some(k) = keys.get(&f.cookie) {
                out.entry(k.clone())
                    .or_insert_with(RuleCounters::default)
                    .add(RuleCounters {
                        packets: f.n_packets,
                        bytes: f.n_bytes,
                    });
            }
        }
        Ok(out)
    }

    /// Whether the switch holds as many flows as the agent installed (a cheap check that a
    /// restarting ovs-vswitchd did not drop flows installed while it was still starting).
    pub async fn flows_intact(&self) -> Result<bool, DatapathError> {
        let st = self.fabric.lock().await;
        let want: usize = st.applied.values().flatten().map(Vec::len).sum();
        let have = self.flows.dump_flows(&self.bridge, None).await?.len();
        Ok(have == want)
    }

    /// The endpoint ports on the bridge (those carrying an endpoint id).
    pub async fn endpoint_ports(&self) -> Result<Vec<PortInfo>, DatapathError> {
        Ok(self.agent_ports().await?.endpoints)
    }

    /// The endpoint ports, the port pool's ports and the network trunks on the bridge, from
    /// one listing.
    pub async fn agent_ports(&self) -> Result<AgentPorts, DatapathError> {
        let mut out = AgentPorts::default();
        for p in self.vs.list_ports(&self.bridge).await? {
            if p.external_ids.contains_key(ids::POOL) {
                out.pool.push(p);
            } else if p.external_ids.contains_key(ids::TRUNK) {
                out.trunks.push(p);
            } else if p.external_ids.contains_key(ids::ENDPOINT) {
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
    /// The port pool's (`crate::pool`).
    pub pool: Vec<PortInfo>,
    /// Network trunks (`crate::trunk`).
    pub trunks: Vec<PortInfo>,
}

/// An endpoint's own flows (see [`crate::fabric::local_flows`]), with ARP proxying on.
pub fn endpoint_flows(c: u64, ofport: u32, ep: &Endpoint) -> Vec<Flow> {
    crate::fabric::local_flows(c, ofport, ep, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_cookies_are_stable() {
        assert_eq!(host_ifname("abc-eth0"), host_ifname("abc-eth0"));
        assert_ne!(host_ifname("abc-eth0"), host_ifname("abc-eth1"));
        assert_eq!(host_ifname("x").len(), 14);
        let c = cookie::endpoint("abc-eth0");
        assert_eq!(c & cookie::CLASS_MASK, cookie::ENDPOINT);
        assert_ne!(c, cookie::endpoint("abc-eth1"));
        // Fixed values: a change here renames every port and orphans every flow on upgrade.
        assert_eq!(fnv1a(b"abc"), 0xe71fa2190541574b);
    }

    #[test]
    fn ofports_go_round_the_upper_half_and_skip_used_ones() {
        let mut idx = PortIndex::default();
        let first = *ENDPOINT_OFPORTS.start();
        idx.used.extend([first + 1, 5]);
        assert_eq!(idx.allocate(), Some(first));
        assert_eq!(idx.allocate(), Some(first + 2));
        // A freed number is not handed out again at once.
        idx.used.remove(&first);
        assert_eq!(idx.allocate(), Some(first + 3));
        // At the end of the range, the search wraps round to the freed numbers.
        idx.next = *ENDPOINT_OFPORTS.end();
        assert_eq!(idx.allocate(), Some(*ENDPOINT_OFPORTS.end()));
        assert_eq!(idx.allocate(), Some(first));
        // Full: no number rather than a taken one.
        idx.used.extend(ENDPOINT_OFPORTS);
        assert_eq!(idx.allocate(), None);
    }

    #[test]
    fn host_ifnames_are_recognised() {
        assert!(is_host_ifname(&host_ifname("c1-eth0")));
        for other in [
            "vc0123456789AB",
            "vc0123",
            "vx0afa000b",
            "eth0",
            "vc0123456789abc",
        ] {
            assert!(!is_host_ifname(other), "{other}");
        }
    }

    #[test]
    fn endpoint_flows_pin_identity() {
        let ep = Endpoint {
            endpoint_id: "e".into(),
            ip_address: "10.1.2.2".into(),
            mac_address: "02:02:0a:01:02:02".into(),
            ..Default::default()
        };
        let f = endpoint_flows(7, 5, &ep);
        assert!(f.iter().all(|x| x.cookie == 7));
        assert!(f.iter().any(|x| x.matches
            == "in_port=5,dl_src=02:02:0a:01:02:02,ip,nw_src=10.1.2.2"
            && x.actions.ends_with("resubmit(,10)")));
        assert!(
            f.iter()
                .any(|x| x.matches == "in_port=5" && x.actions == "drop" && x.priority == 100)
        );
    }
}
