//! The switch as the endpoint manager and the attachment modes use it: the agent's OVS ports
//! and each endpoint's flows, behind a narrow trait so that they can be tested without OVS
//! against [`fake::FakeSwitch`]. [`Datapath`] is the real one (OVSDB and OpenFlow).

use crate::datapath::{AgentPorts, Datapath, DatapathError, DatapathType};
use model::agent::Endpoint;
use ovs::PortInfo;
use std::collections::BTreeMap;

#[cfg(test)]
pub mod fake;

#[async_trait::async_trait]
pub trait Switch: Send + Sync + 'static {
    /// The integration bridge's name (for messages).
    fn bridge(&self) -> &str;
    /// Whether the bridge is on the userspace datapath (pods' veths need TX checksums off).
    fn userspace(&self) -> bool;
    /// The endpoint id and OpenFlow number of endpoint port `ifname`, from the agent's index
    /// (no OVSDB read).
    fn endpoint_port(&self, ifname: &str) -> Option<(String, u32)>;
    /// Adds (or fixes) an endpoint's own port; its OpenFlow number.
    async fn add_endpoint_port(
        &self,
        ifname: &str,
        ep: &Endpoint,
        extra_ids: &BTreeMap<String, String>,
    ) -> Result<u32, DatapathError>;
    /// Adds the port pool's ports at once; their OpenFlow numbers, in order.
    async fn add_pool_ports(&self, names: &[String]) -> Result<Vec<u32>, DatapathError>;
    /// Adds (or finds) a network trunk's port; its OpenFlow number.
    async fn add_trunk_port(&self, name: &str, network: &str) -> Result<u32, DatapathError>;
    /// Records OpenFlow ports that are trunks (their flows hairpin trunk-mates).
    async fn set_trunks(&self, ofports: Vec<u32>);
    async fn unset_trunks(&self, ofports: &[u32]);
    /// Installs one local endpoint's flows on `ofport`.
    async fn program_endpoint(&self, ofport: u32, ep: &Endpoint) -> Result<(), DatapathError>;
    /// Installs every local endpoint's flows at once (`replace_all`: these are all of them).
    async fn set_local_endpoints(
        &self,
        eps: Vec<(u32, Endpoint)>,
        replace_all: bool,
    ) -> Result<(), DatapathError>;
    async fn remove_endpoint_flows(&self, endpoint_id: &str) -> Result<(), DatapathError>;
    /// Flows, then port. Nothing to remove is not an error.
    async fn remove_endpoint(&self, ifname: &str, endpoint_id: &str) -> Result<(), DatapathError>;
    /// Removes a port whose flows are gone; absent is fine.
    async fn remove_port(&self, ifname: &str) -> Result<(), DatapathError>;
    /// The agent's ports on the bridge, by kind, from one listing.
    async fn agent_ports(&self) -> Result<AgentPorts, DatapathError>;
    /// Every port of the bridge, as OVS has it now (CHECK).
    async fn list_ports(&self) -> Result<Vec<PortInfo>, DatapathError>;
    /// Records an endpoint's published ports (`docker run -p`) on its port `ifname`; the host
    /// side forwards them. The fake has none to forward.
    async fn set_published(
        &self,
        _ifname: &str,
        _list: &[crate::northsouth::Published],
    ) -> Result<(), DatapathError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl Switch for Datapath {
    fn bridge(&self) -> &str {
        &self.bridge
    }
    async fn set_published(
        &self,
        ifname: &str,
        list: &[crate::northsouth::Published],
    ) -> Result<(), DatapathError> {
        Datapath::set_published(self, ifname, list).await
    }
    fn userspace(&self) -> bool {
        self.kind == DatapathType::Userspace
    }
    fn endpoint_port(&self, ifname: &str) -> Option<(String, u32)> {
        Datapath::endpoint_port(self, ifname)
    }
    async fn add_endpoint_port(
        &self,
        ifname: &str,
        ep: &Endpoint,
        extra_ids: &BTreeMap<String, String>,
    ) -> Result<u32, DatapathError> {
        Datapath::add_endpoint_port(self, ifname, ep, extra_ids).await
    }
    async fn add_pool_ports(&self, names: &[String]) -> Result<Vec<u32>, DatapathError> {
        Datapath::add_pool_ports(self, names).await
    }
    async fn add_trunk_port(&self, name: &str, network: &str) -> Result<u32, DatapathError> {
        Datapath::add_trunk_port(self, name, network).await
    }
    async fn set_trunks(&self, ofports: Vec<u32>) {
        Datapath::set_trunks(self, ofports).await
    }
    async fn unset_trunks(&self, ofports: &[u32]) {
        Datapath::unset_trunks(self, ofports).await
    }
    async fn program_endpoint(&self, ofport: u32, ep: &Endpoint) -> Result<(), DatapathError> {
        Datapath::program_endpoint(self, ofport, ep).await
    }
    async fn set_local_endpoints(
        &self,
        eps: Vec<(u32, Endpoint)>,
        replace_all: bool,
    ) -> Result<(), DatapathError> {
        Datapath::set_local_endpoints(self, eps, replace_all).await
    }
    async fn remove_endpoint_flows(&self, endpoint_id: &str) -> Result<(), DatapathError> {
        Datapath::remove_endpoint_flows(self, endpoint_id).await
    }
    async fn remove_endpoint(&self, ifname: &str, endpoint_id: &str) -> Result<(), DatapathError> {
        Datapath::remove_endpoint(self, ifname, endpoint_id).await
    }
    async fn remove_port(&self, ifname: &str) -> Result<(), DatapathError> {
        Datapath::remove_port(self, ifname).await
    }
    async fn agent_ports(&self) -> Result<AgentPorts, DatapathError> {
        Datapath::agent_ports(self).await
    }
    async fn list_ports(&self) -> Result<Vec<PortInfo>, DatapathError> {
        Ok(self.vs.list_ports(&self.bridge).await?)
    }
}
