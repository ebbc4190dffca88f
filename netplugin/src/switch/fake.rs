//! A recording model of the switch for unit tests: the bridge's ports with their
//! `external_ids`, OpenFlow numbers handed out in order, each local endpoint's flows (as the
//! port and endpoint they were made for), the trunks. Failures can be injected per operation
//! (as a lost ovsdb-server connection, which the agent must treat as transient).

use super::Switch;
use crate::datapath::{AgentPorts, DatapathError};
use crate::names::ids;
use model::agent::Endpoint;
use ovs::PortInfo;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

#[derive(Default)]
struct State {
    ports: BTreeMap<String, PortInfo>,
    next_ofport: u32,
    /// Local endpoints' flows: endpoint id -> (OpenFlow port, endpoint).
    flows: BTreeMap<String, (u32, Endpoint)>,
    trunks: BTreeSet<u32>,
    fail: Vec<String>,
    calls: Vec<String>,
}

#[derive(Default)]
pub struct FakeSwitch {
    st: Mutex<State>,
}

impl FakeSwitch {
    fn s(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a call, failing it if a failure was injected for `op`.
    fn call(
        &self,
        op: &str,
        what: &str,
    ) -> Result<std::sync::MutexGuard<'_, State>, DatapathError> {
        let mut s = self.s();
        s.calls.push(format!("{op} {what}"));
        if let Some(i) = s.fail.iter().position(|o| o == op) {
            s.fail.remove(i);
            return Err(DatapathError::Ovsdb(ovs::OvsdbError::ConnectionLost {
                path: "/fake/db.sock".into(),
                method: op.to_string(),
            }));
        }
        Ok(s)
    }

    /// The next call of `op` (a [`Switch`] method's name) fails as if ovsdb-server went away.
    pub fn fail_next(&self, op: &str) {
        self.s().fail.push(op.to_string());
    }

    /// Port `name`'s OpenFlow number is not written yet: ovs-vswitchd, busy, has not added the
    /// interface (the number asked for stays).
    pub fn ofport_pending(&self, name: &str) {
        if let Some(p) = self.s().ports.get_mut(name) {
            p.ofport = None;
        }
    }

    pub fn port_names(&self) -> Vec<String> {
        self.s().ports.keys().cloned().collect()
    }

    pub fn port(&self, name: &str) -> Option<PortInfo> {
        self.s().ports.get(name).cloned()
    }

    /// The endpoints with flows, and the port each is on.
    pub fn flows(&self) -> BTreeMap<String, u32> {
        self.s()
            .flows
            .iter()
            .map(|(k, (of, _))| (k.clone(), *of))
            .collect()
    }

    pub fn trunks(&self) -> BTreeSet<u32> {
        self.s().trunks.clone()
    }

    pub fn calls(&self) -> Vec<String> {
        self.s().calls.clone()
    }

    fn add(s: &mut State, name: &str, ext: BTreeMap<String, String>, tag: Option<u16>) -> u32 {
        if let Some(p) = s.ports.get_mut(name) {
            p.external_ids = ext;
            p.tag = tag;
            return p.ofport.unwrap_or_default();
        }
        s.next_ofport += 1;
        let of = 32767 + s.next_ofport;
        s.ports.insert(
            name.to_string(),
            PortInfo {
                name: name.to_string(),
                ofport: Some(of),
                iface_type: String::new(),
                options: BTreeMap::new(),
                external_ids: ext,
                tag,
                error: None,
                ofport_request: Some(of),
            },
        );
        of
    }
}

#[async_trait::async_trait]
impl Switch for FakeSwitch {
    fn bridge(&self) -> &str {
        "contivFake"
    }
    fn userspace(&self) -> bool {
        true
    }
    fn endpoint_port(&self, ifname: &str) -> Option<(String, u32)> {
        let s = self.s();
        let p = s.ports.get(ifname)?;
        Some((p.external_ids.get(ids::ENDPOINT)?.clone(), p.ofport?))
    }
    async fn add_endpoint_port(
        &self,
        ifname: &str,
        ep: &Endpoint,
        extra_ids: &BTreeMap<String, String>,
    ) -> Result<u32, DatapathError> {
        let mut s = self.call("add_endpoint_port", ifname)?;
        let mut ext = extra_ids.clone();
        ext.insert(ids::ENDPOINT.into(), ep.endpoint_id.clone());
        Ok(Self::add(&mut s, ifname, ext, Some(ep.pkt_tag as u16)))
    }
    async fn add_pool_ports(&self, names: &[String]) -> Result<Vec<u32>, DatapathError> {
        let mut s = self.call("add_pool_ports", &names.join(","))?;
        Ok(names
            .iter()
            .map(|n| {
                let ext = BTreeMap::from([(ids::POOL.to_string(), "1".to_string())]);
                Self::add(&mut s, n, ext, None)
            })
            .collect())
    }
    async fn add_trunk_port(&self, name: &str, network: &str) -> Result<u32, DatapathError> {
        let mut s = self.call("add_trunk_port", name)?;
        let ext = BTreeMap::from([(ids::TRUNK.to_string(), network.to_string())]);
        Ok(Self::add(&mut s, name, ext, None))
    }
    async fn set_trunks(&self, ofports: Vec<u32>) {
        self.s().trunks.extend(ofports);
    }
    async fn unset_trunks(&self, ofports: &[u32]) {
        let mut s = self.s();
        for of in ofports {
            s.trunks.remove(of);
        }
    }
    async fn program_endpoint(&self, ofport: u32, ep: &Endpoint) -> Result<(), DatapathError> {
        let mut s = self.call("program_endpoint", &ep.endpoint_id)?;
        s.flows.insert(ep.endpoint_id.clone(), (ofport, ep.clone()));
        Ok(())
    }
    async fn set_local_endpoints(
        &self,
        eps: Vec<(u32, Endpoint)>,
        replace_all: bool,
    ) -> Result<(), DatapathError> {
        let mut s = self.call("set_local_endpoints", "")?;
        if replace_all {
            s.flows.clear();
        }
        for (of, ep) in eps {
            s.flows.insert(ep.endpoint_id.clone(), (of, ep));
        }
        Ok(())
    }
    async fn remove_endpoint_flows(&self, endpoint_id: &str) -> Result<(), DatapathError> {
        let mut s = self.call("remove_endpoint_flows", endpoint_id)?;
        s.flows.remove(endpoint_id);
        Ok(())
    }
    async fn remove_endpoint(&self, ifname: &str, endpoint_id: &str) -> Result<(), DatapathError> {
        let mut s = self.call("remove_endpoint", ifname)?;
        s.flows.remove(endpoint_id);
        s.ports.remove(ifname);
        Ok(())
    }
    async fn remove_port(&self, ifname: &str) -> Result<(), DatapathError> {
        let mut s = self.call("remove_port", ifname)?;
        s.ports.remove(ifname);
        Ok(())
    }
    async fn agent_ports(&self) -> Result<AgentPorts, DatapathError> {
        let s = self.call("agent_ports", "")?;
        let mut out = AgentPorts::default();
        for p in s.ports.values() {
            if p.external_ids.contains_key(ids::POOL) {
                out.pool.push(p.clone());
            } else if p.external_ids.contains_key(ids::TRUNK) {
                out.trunks.push(p.clone());
            } else if p.external_ids.contains_key(ids::ENDPOINT) {
                out.endpoints.push(p.clone());
            }
        }
        Ok(out)
    }
    async fn list_ports(&self) -> Result<Vec<PortInfo>, DatapathError> {
        let s = self.call("list_ports", "")?;
        Ok(s.ports.values().cloned().collect())
    }
}
