//! What the API accepts but the datapath does not do yet, said where a user looks: a `notice`
//! field in the `Oper` of an inspect (docs/compat.md, "Accepted, no effect yet"). Only a field
//! is added; Contiv's names stay as they were. Each notice goes when the issue that makes the
//! object real lands. The same field says what an object lacks for what users expect of it (a
//! network without a gateway).

use crate::state::State;
use model::Kind;

/// Bgp (issue 21).
pub const BGP: &str = "BGP peering is not implemented yet: this object is stored but no BGP session is made and no route is advertised or learned (see docs/compat.md)";
/// serviceLB (issue 19).
pub const SERVICE_LB: &str = "service load balancing is not implemented yet: the VIP is allocated and the providers are listed, but traffic to the VIP is not sent to them (see docs/compat.md)";
/// aciGw, appProfile, extContractsGroup, a group's extContractsGrps, fabric mode aci.
pub const ACI: &str = "ACI is not implemented: this object is stored but no ACI gateway is contacted and the datapath does not use it (see docs/compat.md)";
/// A network with `encap vlan` (issue 21).
pub const VLAN: &str = "VLAN networks do not span hosts yet: endpoints of this network on one host reach each other, endpoints on different hosts cannot (see docs/compat.md)";
/// A network without an IPv4 `gateway` (issue 19: outside and host access go through it).
pub const NO_GATEWAY: &str = "the network has no gateway: its pods get no outside or host access (delete the network and create it again with a gateway, netctl net create --gateway)";
/// A network with `nwType infra`.
pub const INFRA: &str = "nwType infra has no effect yet: the network is a data network and no host gets a port on it (see docs/compat.md)";
/// `fwdMode routing` (issue 21).
pub const ROUTING: &str = "fwdMode routing is not implemented yet: networks are still bridged (one L2 segment over VXLAN), nothing is routed between a tenant's networks (their pods still reach the gateway, the host and the outside through the tenant's router; see docs/compat.md)";
/// `networkInfraType aci` or `aci-opflex`.
pub const ACI_FABRIC: &str = "fabric mode ACI is not implemented: no ACI gateway is driven, groups get no VLAN of their own and policies are still enforced by the switches (see docs/compat.md)";
/// A group's `extContractsGrps`.
pub const EXT_CONTRACTS: &str =
    "extContractsGrps have no effect: ACI is not implemented (see docs/compat.md)";
/// A tenant's `defaultNetwork` (issue 20).
pub const DEFAULT_NETWORK: &str = "defaultNetwork has no effect yet: a pod that names no network goes to default-net (or its CNI config's network) (see docs/compat.md)";

/// What inspect of `kind` `key` should say about fields or objects with no effect, if anything.
/// Several notices are joined with "; ".
pub fn notice(s: &State, kind: Kind, key: &str) -> Option<String> {
    let mut n: Vec<&str> = Vec::new();
    match kind {
        Kind::Bgp => n.push(BGP),
        Kind::ServiceLb => n.push(SERVICE_LB),
        Kind::AciGw | Kind::AppProfile | Kind::ExtContractsGroup => n.push(ACI),
        Kind::Network => {
            let c = &s.networks.get(key)?.cfg;
            if c.encap == "vlan" {
                n.push(VLAN);
            }
            if c.nw_type == "infra" {
                n.push(INFRA);
            }
            if c.gateway.is_empty() {
                n.push(NO_GATEWAY);
            }
        }
        Kind::Global => {
            if s.global.fwd_mode == "routing" {
                n.push(ROUTING);
            }
            if s.global.network_infra_type.starts_with("aci") {
                n.push(ACI_FABRIC);
            }
        }
        Kind::EndpointGroup => {
            if !s.groups.get(key)?.cfg.ext_contracts_grps.is_empty() {
                n.push(EXT_CONTRACTS);
            }
        }
        Kind::Tenant => {
            if !s.tenants.get(key)?.default_network.is_empty() {
                n.push(DEFAULT_NETWORK);
            }
        }
        Kind::Policy | Kind::Rule | Kind::Netprofile => {}
    }
    (!n.is_empty()).then(|| n.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Bgp, Tenant};

    #[test]
    fn notices_follow_the_fields_that_have_no_effect() {
        let mut s = State::new();
        s.bgps.insert("h1".into(), Bgp::default());
        assert_eq!(notice(&s, Kind::Bgp, "h1").as_deref(), Some(BGP));
        assert_eq!(notice(&s, Kind::Global, "global"), None);
        s.global.fwd_mode = "routing".into();
        s.global.network_infra_type = "aci-opflex".into();
        assert_eq!(
            notice(&s, Kind::Global, "global"),
            Some(format!("{ROUTING}; {ACI_FABRIC}"))
        );
        s.tenants.insert("t".into(), Tenant::default());
        assert_eq!(notice(&s, Kind::Tenant, "t"), None);
        s.tenants.get_mut("t").unwrap().default_network = "n".into();
        assert_eq!(
            notice(&s, Kind::Tenant, "t").as_deref(),
            Some(DEFAULT_NETWORK)
        );
        assert_eq!(notice(&s, Kind::Network, "t:nope"), None);
        s.networks.insert(
            "t:n".into(),
            crate::state::new_net_entry(
                model::Network {
                    tenant_name: "t".into(),
                    network_name: "n".into(),
                    subnet: "10.1.2.0/24".into(),
                    encap: "vlan".into(),
                    ..Default::default()
                },
                Default::default(),
            )
            .unwrap(),
        );
        assert_eq!(
            notice(&s, Kind::Network, "t:n"),
            Some(format!("{VLAN}; {NO_GATEWAY}"))
        );
        s.networks.get_mut("t:n").unwrap().cfg.gateway = "10.1.2.1".into();
        assert_eq!(notice(&s, Kind::Network, "t:n").as_deref(), Some(VLAN));
        assert_eq!(notice(&s, Kind::Policy, "t:p"), None);
    }
}
