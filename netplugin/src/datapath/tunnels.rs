//! Tunnels to the other hosts, and the cluster view the flows are computed from.

use super::{Datapath, DatapathError};
use crate::names::{ids, tunnel_ifname};
use model::agent::Endpoint;
use ovs::PortSpec;
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// `global.pvtSubnet` (empty: Contiv's default).
    pub pvt_subnet: String,
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
            st.inputs.vteps = c.peers.clone();
            st.peers = c.peers.clone();
            st.pvt_subnet = c.pvt_subnet.clone();
            st.inputs.netpol.pvt_subnet = c.pvt_subnet.clone();
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
            if let Some(nid) = p
                .external_ids
                .get(ids::ROUTER_NID)
                .and_then(|n| n.parse::<u64>().ok())
                && let Some(r) = st.inputs.routers.get_mut(&nid)
            {
                r.ofport = of;
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
}
