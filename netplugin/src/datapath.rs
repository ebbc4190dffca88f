//! The node's Open vSwitch: the integration bridge, endpoint ports and their flows.
//!
//! Every port the agent owns carries the endpoint's identity in `external_ids`, so the agent can
//! rebuild its view from OVS after a restart; every flow carries a cookie naming its owner, so
//! flows can be replaced or removed exactly (docs/ovs-pipeline.md).

use model::agent::Endpoint;
use ovs::{
    BridgeSpec, FailMode, Flow, FlowProgrammer, OfctlProgrammer, PortInfo, PortSpec, Vswitch,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
}

/// Cookie classes: the top byte of every cookie says who owns the flow.
pub mod cookie {
    pub const CLASS_SHIFT: u32 = 56;
    pub const BASE: u64 = 0x01 << CLASS_SHIFT;
    pub const ENDPOINT: u64 = 0x02 << CLASS_SHIFT;
    pub const CLASS_MASK: u64 = 0xff << CLASS_SHIFT;

    /// The cookie of an endpoint's flows: its class and 56 bits of a hash of its id.
    pub fn endpoint(id: &str) -> u64 {
        ENDPOINT | (super::fnv1a(id.as_bytes()) & !CLASS_MASK)
    }
}

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

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{0}")]
    Ovsdb(#[from] ovs::OvsdbError),
    #[error("{0}")]
    Flow(#[from] ovs::FlowError),
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
}

impl Datapath {
    pub async fn connect(
        ovsdb: &Path,
        rundir: PathBuf,
        bridge: &str,
        kind: DatapathType,
    ) -> Result<Self, DatapathError> {
        let client = ovs::Client::connect(ovsdb).await?;
        let ofctl = OfctlProgrammer::new(rundir);
        Ok(Datapath {
            vs: Vswitch::new(client),
            flows: Arc::new(ofctl.clone()),
            ofctl,
            bridge: bridge.to_string(),
            kind,
        })
    }

    /// Creates or fixes the integration bridge and its base flows.
    pub async fn ensure_bridge(&self) -> Result<(), DatapathError> {
        let spec = BridgeSpec::new(&self.bridge)
            .datapath_type(self.kind.ovs_name())
            .protocols(&["OpenFlow13", "OpenFlow14"])
            .fail_mode(FailMode::Secure)
            .external_id("contiv-owner", "netplugin");
        self.vs.ensure_bridge(&spec).await?;
        // The management socket appears only once ovs-vswitchd has built the bridge.
        self.ofctl
            .wait_for_bridge(&self.bridge, Duration::from_secs(10))
            .await?;
        self.flows
            .replace_flows_for_cookie(&self.bridge, cookie::BASE, &base_flows())
            .await?;
        Ok(())
    }

    /// Adds (or fixes) an endpoint's port, waits for its OpenFlow port number, and installs its
    /// flows. Idempotent.
    pub async fn add_endpoint(
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
        self.vs.add_port(&self.bridge, &spec).await?;
        let ofport = self.vs.wait_ofport(ifname, Duration::from_secs(10)).await?;
        self.program_endpoint(ofport, ep).await?;
        Ok(ofport)
    }

    /// Installs (replaces) the flows of one endpoint.
    pub async fn program_endpoint(&self, ofport: u32, ep: &Endpoint) -> Result<(), DatapathError> {
        let c = cookie::endpoint(&ep.endpoint_id);
        self.flows
            .replace_flows_for_cookie(&self.bridge, c, &endpoint_flows(c, ofport, ep))
            .await?;
        Ok(())
    }

    /// Removes an endpoint's flows and port. Nothing to remove is not an error.
    pub async fn remove_endpoint(
        &self,
        ifname: &str,
        endpoint_id: &str,
    ) -> Result<(), DatapathError> {
        self.flows
            .del_flows(
                &self.bridge,
                &[ovs::FlowMatch::cookie(ovs::CookieMask::exact(
                    cookie::endpoint(endpoint_id),
                ))],
            )
            .await?;
        self.vs.del_port(&self.bridge, ifname).await?;
        Ok(())
    }

    /// The endpoint ports on the bridge (those carrying an endpoint id).
    pub async fn endpoint_ports(&self) -> Result<Vec<PortInfo>, DatapathError> {
        Ok(self
            .vs
            .list_ports(&self.bridge)
            .await?
            .into_iter()
            .filter(|p| p.external_ids.contains_key(ids::ENDPOINT))
            .collect())
    }
}

/// Flows every bridge has: anything not claimed by a more specific flow is switched normally
/// (within its VLAN, which isolates networks from each other).
pub fn base_flows() -> Vec<Flow> {
    vec![Flow::new(0, 0, "", "NORMAL").cookie(cookie::BASE)]
}

/// An endpoint's flows: its port may only send from its own MAC and addresses (no spoofing of
/// another pod's identity); everything else from that port is dropped.
pub fn endpoint_flows(c: u64, ofport: u32, ep: &Endpoint) -> Vec<Flow> {
    let p = format!("in_port={ofport},dl_src={}", ep.mac_address);
    let mut f = vec![
        Flow::new(0, 200, format!("{p},ip,nw_src={}", ep.ip_address), "NORMAL"),
        Flow::new(
            0,
            200,
            format!(
                "{p},arp,arp_spa={},arp_sha={}",
                ep.ip_address, ep.mac_address
            ),
            "NORMAL",
        ),
        // DHCP discovery has no source address yet; harmless and keeps dhclient-style tools quiet.
        Flow::new(
            0,
            190,
            format!("{p},udp,nw_src=0.0.0.0,tp_src=68,tp_dst=67"),
            "NORMAL",
        ),
        Flow::new(0, 100, format!("in_port={ofport}"), "drop"),
    ];
    // IPv6: link-local (ND, RS) and the assigned address.
    f.push(Flow::new(
        0,
        200,
        format!("{p},ipv6,ipv6_src=fe80::/10"),
        "NORMAL",
    ));
    if !ep.ipv6_address.is_empty() {
        f.push(Flow::new(
            0,
            200,
            format!("{p},ipv6,ipv6_src={}", ep.ipv6_address),
            "NORMAL",
        ));
    }
    // Duplicate address detection probes come from the unspecified address.
    f.push(Flow::new(0, 190, format!("{p},ipv6,ipv6_src=::"), "NORMAL"));
    f.into_iter().map(|fl| fl.cookie(c)).collect()
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
            && x.actions == "NORMAL"));
        assert!(
            f.iter()
                .any(|x| x.matches == "in_port=5" && x.actions == "drop" && x.priority == 100)
        );
    }
}
