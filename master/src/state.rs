//! The master's in-memory view of the store: every object, endpoint and node, with the
//! allocation pools derived from them.
//!
//! The store is the truth. This view changes only by applying what the store holds
//! ([`State::apply_put`], [`State::apply_delete`]): at start from a full listing, and after each
//! committed transaction with the very values written. Endpoint creation is the one exception:
//! it reserves its addresses here before its transaction commits (so that concurrent creates
//! commit in parallel) and confirms or undoes the reservation afterwards.

use crate::alloc::Pool;
use crate::error::{ApiError, ApiResult};
use crate::keys::{self, Parsed, StoredObject};
use ipnet::Ipv6Net;
use model::agent::{Endpoint, GroupState, NetworkState, Node};
use model::net::{SubnetSpec, parse_v4_range};
use model::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Group ids travel in 15 bits of the datapath's metadata (as in Contiv's pipeline).
pub const MAX_GROUP_ID: u32 = 32767;
/// Local VLANs of VXLAN networks.
pub const LOCAL_VLANS: (u32, u32) = (1, 4094);

pub fn v4(a: Ipv4Addr) -> u128 {
    u128::from(u32::from(a))
}
pub fn v6(a: Ipv6Addr) -> u128 {
    u128::from(a)
}

#[derive(Debug, Clone)]
pub struct NetEntry {
    pub cfg: Network,
    pub st: NetworkState,
    pub spec: SubnetSpec,
    pub gateway: Option<Ipv4Addr>,
    /// Addresses free for endpoints without a group pool (gateway, group pools and service
    /// addresses taken out).
    pub v4: Pool,
    pub v6: Option<V6Alloc>,
    pub endpoints: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct V6Alloc {
    pub net: Ipv6Net,
    pub gateway: Option<Ipv6Addr>,
    pub pool: Pool,
}

#[derive(Debug, Clone)]
pub struct GroupEntry {
    pub cfg: EndpointGroup,
    pub st: GroupState,
    /// The group's own pool when it has an `ipPool`.
    pub pool: Option<Pool>,
    pub endpoints: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ServiceState {
    #[serde(rename = "serviceVip")]
    pub vip: String,
}

#[derive(Debug, Clone)]
pub struct SvcEntry {
    pub cfg: ServiceLb,
    pub vip: Ipv4Addr,
}

#[derive(Debug)]
pub struct State {
    pub global: Global,
    pub tenants: BTreeMap<String, Tenant>,
    pub networks: BTreeMap<String, NetEntry>,
    pub groups: BTreeMap<String, GroupEntry>,
    pub policies: BTreeMap<String, Policy>,
    pub rules: BTreeMap<String, Rule>,
    pub netprofiles: BTreeMap<String, Netprofile>,
    pub bgps: BTreeMap<String, Bgp>,
    pub services: BTreeMap<String, SvcEntry>,
    pub app_profiles: BTreeMap<String, AppProfile>,
    pub ext_contracts: BTreeMap<String, ExtContractsGroup>,
    pub aci_gw: Option<AciGw>,
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Endpoints whose transaction has not committed yet; their addresses are taken.
    pub pending: BTreeMap<String, Endpoint>,
    pub nodes: BTreeMap<String, Node>,
    pub vlans: Pool,
    pub vxlans: Pool,
    pub local_vlans: Pool,
    pub group_ids: Pool,
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

fn tag_pool((a, b): (u32, u32)) -> Pool {
    Pool::new(u128::from(a), u128::from(b))
}

impl State {
    pub fn new() -> Self {
        let global = Global::defaults();
        State {
            vlans: tag_pool(global.vlan_range()),
            vxlans: tag_pool(global.vxlan_range()),
            local_vlans: tag_pool(LOCAL_VLANS),
            group_ids: tag_pool((1, MAX_GROUP_ID)),
            global,
            tenants: BTreeMap::new(),
            networks: BTreeMap::new(),
            groups: BTreeMap::new(),
            policies: BTreeMap::new(),
            rules: BTreeMap::new(),
            netprofiles: BTreeMap::new(),
            bgps: BTreeMap::new(),
            services: BTreeMap::new(),
            app_profiles: BTreeMap::new(),
            ext_contracts: BTreeMap::new(),
            aci_gw: None,
            endpoints: BTreeMap::new(),
            pending: BTreeMap::new(),
            nodes: BTreeMap::new(),
        }
    }

    /// Order in which a full listing must be applied: what others depend on first.
    pub fn load_rank(key: &str) -> u8 {
        match keys::parse(key) {
            Parsed::Obj(Kind::Global, _) => 0,
            Parsed::Obj(Kind::Tenant, _) => 1,
            Parsed::Obj(Kind::Network, _) => 2,
            Parsed::Obj(Kind::EndpointGroup, _) => 3,
            Parsed::Obj(Kind::ServiceLb, _) => 3,
            Parsed::Obj(..) => 4,
            Parsed::Endpoint(_) => 5,
            _ => 6,
        }
    }

    /// Applies a value the store holds at `key`.
    pub fn apply_put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        match keys::parse(key) {
            Parsed::Obj(kind, k) => {
                let so: StoredObject =
                    serde_json::from_slice(value).map_err(|e| format!("{key}: {e}"))?;
                self.apply_object(kind, k, so)
                    .map_err(|e| format!("{key}: {e}"))
            }
            Parsed::Endpoint(_) => {
                let ep: Endpoint =
                    serde_json::from_slice(value).map_err(|e| format!("{key}: {e}"))?;
                self.apply_endpoint(ep).map_err(|e| format!("{key}: {e}"))
            }
            Parsed::Node(name) => {
                let n: Node = serde_json::from_slice(value).map_err(|e| format!("{key}: {e}"))?;
                self.nodes.insert(name.to_string(), n);
                Ok(())
            }
            Parsed::Alloc | Parsed::Unknown => Ok(()),
        }
    }

    pub fn apply_delete(&mut self, key: &str) {
        match keys::parse(key) {
            Parsed::Obj(kind, k) => self.remove_object(kind, k),
            Parsed::Endpoint(id) => self.remove_endpoint(id),
            Parsed::Node(name) => {
                self.nodes.remove(name);
            }
            Parsed::Alloc | Parsed::Unknown => {}
        }
    }

    fn apply_object(&mut self, kind: Kind, key: &str, so: StoredObject) -> Result<(), String> {
        fn cfg<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
            serde_json::from_value(v).map_err(|e| e.to_string())
        }
        let key = key.to_string();
        match kind {
            Kind::Tenant => {
                self.tenants.insert(key, cfg(so.config)?);
            }
            Kind::Network => {
                let c: Network = cfg(so.config)?;
                let st: NetworkState = cfg(so.state.unwrap_or_default())?;
                if let Some(e) = self.networks.get_mut(&key) {
                    e.cfg = c;
                    return Ok(());
                }
                let e = new_net_entry(c, st)?;
                match e.cfg.encap.as_str() {
                    "vlan" => {
                        let _ = self.vlans.take(u128::from(e.st.pkt_tag));
                    }
                    _ => {
                        let _ = self.vxlans.take(u128::from(e.st.ext_pkt_tag));
                        let _ = self.local_vlans.take(u128::from(e.st.pkt_tag));
                    }
                }
                self.networks.insert(key, e);
            }
            Kind::EndpointGroup => {
                let c: EndpointGroup = cfg(so.config)?;
                let st: GroupState = cfg(so.state.unwrap_or_default())?;
                if let Some(e) = self.groups.get_mut(&key) {
                    e.cfg = c;
                    return Ok(());
                }
                let net_key = format!("{}:{}", c.tenant_name, c.network_name);
                let net = self
                    .networks
                    .get_mut(&net_key)
                    .ok_or_else(|| format!("network {net_key} is missing"))?;
                let pool = if c.ip_pool.is_empty() {
                    None
                } else {
                    let (a, b) = parse_v4_range(&c.ip_pool)?;
                    let _ = net.v4.take_range(v4(a), v4(b));
                    Some(Pool::new(v4(a), v4(b)))
                };
                let _ = self.group_ids.take(u128::from(st.group_id));
                self.groups.insert(
                    key,
                    GroupEntry {
                        cfg: c,
                        st,
                        pool,
                        endpoints: BTreeSet::new(),
                    },
                );
            }
            Kind::ServiceLb => {
                let c: ServiceLb = cfg(so.config)?;
                let st: ServiceState = cfg(so.state.unwrap_or_default())?;
                let vip: Ipv4Addr = st.vip.parse().map_err(|_| "bad service vip".to_string())?;
                if let Some(old) = self.services.get(&key)
                    && old.vip != vip
                {
                    self.release_service_vip(&key);
                }
                let net_key = format!("{}:{}", c.tenant_name, c.network_name);
                if let Some(net) = self.networks.get_mut(&net_key) {
                    let _ = net.v4.take(v4(vip));
                }
                self.services.insert(key, SvcEntry { cfg: c, vip });
            }
            Kind::Global => {
                let g: Global = cfg(so.config)?;
                self.set_global(g);
            }
            Kind::Policy => {
                self.policies.insert(key, cfg(so.config)?);
            }
            Kind::Rule => {
                self.rules.insert(key, cfg(so.config)?);
            }
            Kind::Netprofile => {
                self.netprofiles.insert(key, cfg(so.config)?);
            }
            Kind::Bgp => {
                self.bgps.insert(key, cfg(so.config)?);
            }
            Kind::AppProfile => {
                self.app_profiles.insert(key, cfg(so.config)?);
            }
            Kind::ExtContractsGroup => {
                self.ext_contracts.insert(key, cfg(so.config)?);
            }
            Kind::AciGw => {
                self.aci_gw = Some(cfg(so.config)?);
            }
        }
        Ok(())
    }

    /// Replaces the global config, redefining the tag pools around the tags in use.
    pub fn set_global(&mut self, g: Global) {
        if g.vlans != self.global.vlans || g.vxlans != self.global.vxlans {
            let mut vlans = tag_pool(g.vlan_range());
            let mut vxlans = tag_pool(g.vxlan_range());
            for n in self.networks.values() {
                if n.cfg.encap == "vlan" {
                    let _ = vlans.take(u128::from(n.st.pkt_tag));
                } else {
                    let _ = vxlans.take(u128::from(n.st.ext_pkt_tag));
                }
            }
            self.vlans = vlans;
            self.vxlans = vxlans;
        }
        self.global = g;
    }

    fn release_service_vip(&mut self, key: &str) {
        if let Some(s) = self.services.get(key) {
            let net_key = format!("{}:{}", s.cfg.tenant_name, s.cfg.network_name);
            if let Some(net) = self.networks.get_mut(&net_key) {
                net.v4.release(v4(s.vip));
            }
        }
    }

    fn remove_object(&mut self, kind: Kind, key: &str) {
        match kind {
            Kind::Tenant => {
                self.tenants.remove(key);
            }
            Kind::Network => {
                if let Some(e) = self.networks.remove(key) {
                    if e.cfg.encap == "vlan" {
                        self.vlans.release(u128::from(e.st.pkt_tag));
                    } else {
                        self.vxlans.release(u128::from(e.st.ext_pkt_tag));
                        self.local_vlans.release(u128::from(e.st.pkt_tag));
                    }
                }
            }
            Kind::EndpointGroup => {
                if let Some(g) = self.groups.remove(key) {
                    self.group_ids.release(u128::from(g.st.group_id));
                    if let Some(p) = &g.pool {
                        let (a, b) = p.bounds();
                        let net_key = format!("{}:{}", g.cfg.tenant_name, g.cfg.network_name);
                        if let Some(net) = self.networks.get_mut(&net_key) {
                            net.v4.release_range(a, b);
                        }
                    }
                }
            }
            Kind::ServiceLb => {
                self.release_service_vip(key);
                self.services.remove(key);
            }
            Kind::Global => {
                self.set_global(Global::defaults());
            }
            Kind::Policy => {
                self.policies.remove(key);
            }
            Kind::Rule => {
                self.rules.remove(key);
            }
            Kind::Netprofile => {
                self.netprofiles.remove(key);
            }
            Kind::Bgp => {
                self.bgps.remove(key);
            }
            Kind::AppProfile => {
                self.app_profiles.remove(key);
            }
            Kind::ExtContractsGroup => {
                self.ext_contracts.remove(key);
            }
            Kind::AciGw => {
                self.aci_gw = None;
            }
        }
    }

    // ------------------------------------------------------------ endpoints

    /// Validates an endpoint request and reserves its addresses. The endpoint is pending until
    /// [`State::apply_endpoint`] (commit) or [`State::abort_endpoint`].
    pub fn reserve_endpoint(&mut self, req: &model::agent::EndpointRequest) -> ApiResult<Endpoint> {
        if req.endpoint_id.is_empty()
            || req.endpoint_id.len() > 128
            || !req
                .endpoint_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(ApiError::bad_request(format!(
                "endpointID '{}': must be 1-128 characters of letters, digits, '-', '_' and '.'",
                req.endpoint_id
            )));
        }
        let net_key = format!("{}:{}", req.tenant_name, req.network_name);
        if !self.tenants.contains_key(&req.tenant_name) {
            return Err(ApiError::bad_request(format!(
                "tenantName '{}': tenant does not exist",
                req.tenant_name
            )));
        }
        let Some(net) = self.networks.get(&net_key) else {
            return Err(ApiError::bad_request(format!(
                "networkName '{}': network {net_key} does not exist",
                req.network_name
            )));
        };
        let group = if req.group_name.is_empty() {
            None
        } else {
            let gk = format!("{}:{}", req.tenant_name, req.group_name);
            let g = self.groups.get(&gk).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "groupName '{}': endpoint group {gk} does not exist",
                    req.group_name
                ))
            })?;
            if g.cfg.network_name != req.network_name {
                return Err(ApiError::bad_request(format!(
                    "groupName '{}': endpoint group {gk} belongs to network {}, not {}",
                    req.group_name, g.cfg.network_name, req.network_name
                )));
            }
            Some(gk)
        };
        let requested_v4 = if req.ip_address.is_empty() {
            None
        } else {
            let a: Ipv4Addr = req.ip_address.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "ipAddress '{}': not an IPv4 address",
                    req.ip_address
                ))
            })?;
            Some(a)
        };
        let requested_v6 = if req.ipv6_address.is_empty() {
            None
        } else {
            if net.v6.is_none() {
                return Err(ApiError::bad_request(format!(
                    "ipv6Address '{}': network {net_key} has no IPv6 subnet",
                    req.ipv6_address
                )));
            }
            let a: Ipv6Addr = req.ipv6_address.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "ipv6Address '{}': not an IPv6 address",
                    req.ipv6_address
                ))
            })?;
            Some(a)
        };

        // Take the IPv4 address from the group's pool when it has one, else from the network.
        let owner = |s: &State, a: u128| s.owner_of_v4(&net_key, a);
        let v4_addr = {
            let pool_group = group
                .as_ref()
                .filter(|g| self.groups.get(*g).is_some_and(|e| e.pool.is_some()))
                .cloned();
            let where_ = match &pool_group {
                Some(g) => format!("pool {} of endpoint group {g}", self.groups[g].cfg.ip_pool),
                None => format!(
                    "subnet {} of network {net_key}",
                    self.networks[&net_key].spec.net
                ),
            };
            let pool = match &pool_group {
                Some(g) => self
                    .groups
                    .get_mut(g)
                    .and_then(|e| e.pool.as_mut())
                    .expect("checked"),
                None => &mut self.networks.get_mut(&net_key).expect("checked").v4,
            };
            match requested_v4 {
                None => match pool.take_lowest() {
                    Some(a) => a,
                    None => {
                        return Err(ApiError::conflict(format!(
                            "address exhaustion in {where_}: no free address left"
                        )));
                    }
                },
                Some(a) => match pool.take(v4(a)) {
                    Ok(()) => v4(a),
                    Err(crate::alloc::Taken::OutOfRange) => {
                        return Err(ApiError::bad_request(format!(
                            "ipAddress '{a}': outside the allocatable addresses of {where_}"
                        )));
                    }
                    Err(crate::alloc::Taken::InUse) => {
                        let who = owner(self, v4(a));
                        return Err(ApiError::conflict(format!(
                            "ipAddress '{a}': already allocated in network {net_key}{who}"
                        )));
                    }
                },
            }
        };
        let v4_addr = Ipv4Addr::from(v4_addr as u32);
        let undo_v4 = |s: &mut State| s.release_v4(&net_key, group.as_deref(), v4_addr);

        let mut v6_addr = None;
        if let Some(v6a) = self.networks.get_mut(&net_key).unwrap().v6.as_mut() {
            let r = match requested_v6 {
                None => v6a.pool.take_lowest().ok_or_else(|| {
                    ApiError::conflict(format!(
                        "address exhaustion in IPv6 subnet {} of network {net_key}",
                        v6a.net
                    ))
                }),
                Some(a) => v6a.pool.take(v6(a)).map(|_| v6(a)).map_err(|t| match t {
                    crate::alloc::Taken::OutOfRange => ApiError::bad_request(format!(
                        "ipv6Address '{a}': outside IPv6 subnet {} of network {net_key}",
                        v6a.net
                    )),
                    crate::alloc::Taken::InUse => ApiError::conflict(format!(
                        "ipv6Address '{a}': already allocated in network {net_key}"
                    )),
                }),
            };
            match r {
                Ok(a) => v6_addr = Some(Ipv6Addr::from(a)),
                Err(e) => {
                    undo_v4(self);
                    return Err(e);
                }
            }
        }

        let net = &self.networks[&net_key];
        let group_id = group
            .as_ref()
            .map(|g| self.groups[g].st.group_id)
            .unwrap_or(0);
        let ep = Endpoint {
            endpoint_id: req.endpoint_id.clone(),
            tenant_name: req.tenant_name.clone(),
            network_name: req.network_name.clone(),
            group_name: req.group_name.clone(),
            group_id,
            host: req.host.clone(),
            container_id: req.container_id.clone(),
            container_name: req.container_name.clone(),
            intf_name: req.intf_name.clone(),
            labels: req.labels.clone(),
            ip_address: v4_addr.to_string(),
            prefix_len: net.spec.net.prefix_len(),
            gateway: net.cfg.gateway.clone(),
            ipv6_address: v6_addr.map(|a| a.to_string()).unwrap_or_default(),
            ipv6_prefix_len: net.v6.as_ref().map(|v| v.net.prefix_len()).unwrap_or(0),
            ipv6_gateway: net.cfg.ipv6_gateway.clone(),
            mac_address: model::net::mac_for_ipv4(v4_addr),
            encap: net.cfg.encap.clone(),
            pkt_tag: net.st.pkt_tag,
            ext_pkt_tag: net.st.ext_pkt_tag,
        };
        self.link_endpoint(&ep);
        self.pending.insert(ep.endpoint_id.clone(), ep.clone());
        Ok(ep)
    }

    fn owner_of_v4(&self, net_key: &str, a: u128) -> String {
        let net = &self.networks[net_key];
        if net.gateway.map(v4) == Some(a) {
            return " (it is the network's gateway)".into();
        }
        for id in &net.endpoints {
            let ep = self.endpoints.get(id).or_else(|| self.pending.get(id));
            if let Some(ep) = ep
                && ep.ip_address.parse::<Ipv4Addr>().map(v4).ok() == Some(a)
            {
                return format!(" (to endpoint {id})");
            }
        }
        for (k, g) in &self.groups {
            if let Some(p) = &g.pool
                && format!("{}:{}", g.cfg.tenant_name, g.cfg.network_name) == net_key
            {
                let (lo, hi) = p.bounds();
                if a >= lo && a <= hi {
                    return format!(
                        " (it is in the IP pool of endpoint group {k}; name that group to use it)"
                    );
                }
            }
        }
        for (k, s) in &self.services {
            if v4(s.vip) == a {
                return format!(" (to service {k})");
            }
        }
        String::new()
    }

    fn release_v4(&mut self, net_key: &str, group: Option<&str>, a: Ipv4Addr) {
        if let Some(g) = group.and_then(|g| self.groups.get_mut(g))
            && let Some(p) = g.pool.as_mut()
        {
            p.release(v4(a));
            return;
        }
        if let Some(n) = self.networks.get_mut(net_key) {
            n.v4.release(v4(a));
        }
    }

    fn link_endpoint(&mut self, ep: &Endpoint) {
        let net_key = format!("{}:{}", ep.tenant_name, ep.network_name);
        if let Some(n) = self.networks.get_mut(&net_key) {
            n.endpoints.insert(ep.endpoint_id.clone());
        }
        if !ep.group_name.is_empty()
            && let Some(g) = self
                .groups
                .get_mut(&format!("{}:{}", ep.tenant_name, ep.group_name))
        {
            g.endpoints.insert(ep.endpoint_id.clone());
        }
    }

    /// Undoes a reservation whose transaction failed.
    pub fn abort_endpoint(&mut self, id: &str) {
        if let Some(ep) = self.pending.remove(id) {
            self.unlink_and_release(&ep);
        }
    }

    fn unlink_and_release(&mut self, ep: &Endpoint) {
        let net_key = format!("{}:{}", ep.tenant_name, ep.network_name);
        let gk =
            (!ep.group_name.is_empty()).then(|| format!("{}:{}", ep.tenant_name, ep.group_name));
        if let Ok(a) = ep.ip_address.parse::<Ipv4Addr>() {
            self.release_v4(&net_key, gk.as_deref(), a);
        }
        if let Some(n) = self.networks.get_mut(&net_key) {
            n.endpoints.remove(&ep.endpoint_id);
            if let (Some(v6a), Ok(a)) = (n.v6.as_mut(), ep.ipv6_address.parse::<Ipv6Addr>()) {
                v6a.pool.release(v6(a));
            }
        }
        if let Some(g) = gk.and_then(|g| self.groups.get_mut(&g)) {
            g.endpoints.remove(&ep.endpoint_id);
        }
    }

    /// A committed endpoint: confirms a reservation, or takes the addresses of one this master
    /// did not reserve (at start, or written by another master).
    fn apply_endpoint(&mut self, ep: Endpoint) -> Result<(), String> {
        if self.pending.remove(&ep.endpoint_id).is_some() {
            self.endpoints.insert(ep.endpoint_id.clone(), ep);
            return Ok(());
        }
        if self.endpoints.contains_key(&ep.endpoint_id) {
            self.endpoints.insert(ep.endpoint_id.clone(), ep);
            return Ok(());
        }
        let net_key = format!("{}:{}", ep.tenant_name, ep.network_name);
        let gk =
            (!ep.group_name.is_empty()).then(|| format!("{}:{}", ep.tenant_name, ep.group_name));
        let a: Ipv4Addr = ep
            .ip_address
            .parse()
            .map_err(|_| "bad endpoint address".to_string())?;
        let in_group_pool = gk
            .as_ref()
            .and_then(|g| self.groups.get_mut(g))
            .and_then(|g| g.pool.as_mut())
            .map(|p| p.take(v4(a)))
            .is_some();
        let net = self
            .networks
            .get_mut(&net_key)
            .ok_or_else(|| format!("network {net_key} is missing"))?;
        if !in_group_pool {
            let _ = net.v4.take(v4(a));
        }
        if let (Some(v6a), Ok(a6)) = (net.v6.as_mut(), ep.ipv6_address.parse::<Ipv6Addr>()) {
            let _ = v6a.pool.take(v6(a6));
        }
        self.link_endpoint(&ep);
        self.endpoints.insert(ep.endpoint_id.clone(), ep);
        Ok(())
    }

    fn remove_endpoint(&mut self, id: &str) {
        if let Some(ep) = self.endpoints.remove(id) {
            self.unlink_and_release(&ep);
        }
    }

    /// Endpoints (committed or pending) of a network, for guards and counts.
    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.get(id).or_else(|| self.pending.get(id))
    }
}

/// Builds a network's allocation entry from its config and state.
pub fn new_net_entry(cfg: Network, st: NetworkState) -> Result<NetEntry, String> {
    let spec = SubnetSpec::parse(&cfg.subnet)?;
    let mut pool = Pool::new(v4(spec.first), v4(spec.last));
    let gateway = if cfg.gateway.is_empty() {
        None
    } else {
        let g: Ipv4Addr = cfg.gateway.parse().map_err(|_| "bad gateway".to_string())?;
        let _ = pool.take(v4(g));
        Some(g)
    };
    let v6 = if cfg.ipv6_subnet.is_empty() {
        None
    } else {
        let net = model::net::parse_v6_subnet(&cfg.ipv6_subnet)?;
        let lo = v6(net.network()) + 1;
        let hi = v6(net.broadcast());
        let mut p = Pool::new(lo, hi);
        let gateway = if cfg.ipv6_gateway.is_empty() {
            None
        } else {
            let g: Ipv6Addr = cfg
                .ipv6_gateway
                .parse()
                .map_err(|_| "bad ipv6 gateway".to_string())?;
            let _ = p.take(v6(g));
            Some(g)
        };
        Some(V6Alloc {
            net,
            gateway,
            pool: p,
        })
    };
    Ok(NetEntry {
        cfg,
        st,
        spec,
        gateway,
        v4: pool,
        v6,
        endpoints: BTreeSet::new(),
    })
}
