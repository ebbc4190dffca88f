//! Contiv's objects, with the JSON field names of Contiv's REST API (`contivmodel`).
//!
//! Like Contiv's Go structs, empty strings, zero numbers and empty lists are left out of the JSON.

use crate::names::{NAME_RULE, is_valid_name};
use crate::net;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A reference from one object to another (`links`, `link-sets`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Link {
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

pub type LinkSet = BTreeMap<String, Link>;
pub type Links = BTreeMap<String, Link>;
pub type LinkSets = BTreeMap<String, LinkSet>;

/// A field that breaks its rule: names the field, the value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} '{value}': {rule}")]
pub struct FieldError {
    pub field: &'static str,
    pub value: String,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: &'static str, value: impl ToString, rule: impl Into<String>) -> Self {
        FieldError {
            field,
            value: value.to_string(),
            rule: rule.into(),
        }
    }
}

/// What every REST object has in common.
pub trait Object: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The REST collection (`/api/v1/<COLLECTION>/`).
    const COLLECTION: &'static str;
    /// Contiv's type name (`link.type`, watch `kind`).
    const KIND: &'static str;
    /// The fields that make the key, in order, as they appear in JSON.
    const KEY_FIELDS: &'static [&'static str];
    /// The key formed from the body's fields (`tenant:network`...).
    fn key(&self) -> String;
    /// Fills defaults and checks every field's format (not references to other objects).
    fn normalize(&mut self) -> Result<(), FieldError>;
    fn set_key(&mut self);
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn name(field: &'static str, v: &str, max: usize) -> Result<(), FieldError> {
    if v.is_empty() {
        return Err(FieldError::new(field, v, "is required"));
    }
    if !is_valid_name(v, max) {
        return Err(FieldError::new(
            field,
            v,
            format!("must be at most {max} characters of {NAME_RULE}"),
        ));
    }
    Ok(())
}

fn opt_name(field: &'static str, v: &str, max: usize) -> Result<(), FieldError> {
    if v.is_empty() {
        Ok(())
    } else {
        name(field, v, max)
    }
}

fn one_of(field: &'static str, v: &str, allowed: &[&str]) -> Result<(), FieldError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            v,
            format!("must be one of: {}", allowed.join(", ")),
        ))
    }
}

fn range(field: &'static str, v: i64, lo: i64, hi: i64) -> Result<(), FieldError> {
    if v < lo || v > hi {
        Err(FieldError::new(
            field,
            v,
            format!("must be between {lo} and {hi}"),
        ))
    } else {
        Ok(())
    }
}

fn max_len(field: &'static str, v: &str, max: usize) -> Result<(), FieldError> {
    if v.len() > max {
        Err(FieldError::new(
            field,
            v,
            format!("must be at most {max} characters"),
        ))
    } else {
        Ok(())
    }
}

macro_rules! key_impl {
    ($t:ty, $coll:literal, $kind:literal, [$($f:ident => $json:literal),+]) => {
        impl $t {
            fn key_string(&self) -> String {
                [$(self.$f.as_str()),+].join(":")
            }
        }
        const _: () = {
            impl $t {
                pub const COLLECTION: &'static str = $coll;
                pub const KIND: &'static str = $kind;
                pub const KEY_FIELDS: &'static [&'static str] = &[$($json),+];
            }
        };
    };
}

macro_rules! object_impl {
    ($t:ty) => {
        impl Object for $t {
            const COLLECTION: &'static str = <$t>::COLLECTION;
            const KIND: &'static str = <$t>::KIND;
            const KEY_FIELDS: &'static [&'static str] = <$t>::KEY_FIELDS;
            fn key(&self) -> String {
                self.key_string()
            }
            fn normalize(&mut self) -> Result<(), FieldError> {
                self.check()
            }
            fn set_key(&mut self) {
                self.key = self.key_string();
            }
        }
    };
}

// ---------------------------------------------------------------- tenant

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(
        rename = "tenantName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub tenant_name: String,
    #[serde(
        rename = "defaultNetwork",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub default_network: String,
    #[serde(
        rename = "link-sets",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub link_sets: LinkSets,
}
key_impl!(Tenant, "tenants", "tenant", [tenant_name => "tenantName"]);
impl Tenant {
    fn check(&mut self) -> Result<(), FieldError> {
        name("tenantName", &self.tenant_name, 64)?;
        opt_name("defaultNetwork", &self.default_network, 64)
    }
}
object_impl!(Tenant);

// ---------------------------------------------------------------- network

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Network {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(rename = "cfgdTag", default, skip_serializing_if = "String::is_empty")]
    pub cfgd_tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encap: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(
        rename = "ipv6Gateway",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_gateway: String,
    #[serde(
        rename = "ipv6Subnet",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_subnet: String,
    #[serde(
        rename = "networkName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub network_name: String,
    #[serde(rename = "nwType", default, skip_serializing_if = "String::is_empty")]
    pub nw_type: String,
    #[serde(rename = "pktTag", default, skip_serializing_if = "is_zero_i64")]
    pub pkt_tag: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(
        rename = "tenantName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub tenant_name: String,
    #[serde(
        rename = "link-sets",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub link_sets: LinkSets,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: Links,
}
key_impl!(Network, "networks", "network", [tenant_name => "tenantName", network_name => "networkName"]);
impl Network {
    fn check(&mut self) -> Result<(), FieldError> {
        name("tenantName", &self.tenant_name, 64)?;
        name("networkName", &self.network_name, 64)?;
        if self.nw_type.is_empty() {
            self.nw_type = "data".into();
        }
        one_of("nwType", &self.nw_type, &["infra", "data"])?;
        if self.encap.is_empty() {
            return Err(FieldError::new("encap", "", "is required: vlan or vxlan"));
        }
        one_of("encap", &self.encap, &["vlan", "vxlan"])?;
        range("pktTag", self.pkt_tag, 0, 16_777_216)?;
        if self.subnet.is_empty() {
            return Err(FieldError::new(
                "subnet",
                "",
                "is required: a.b.c.d/len or a.b.c.d-e.f.g.h/len",
            ));
        }
        let spec = net::SubnetSpec::parse(&self.subnet)
            .map_err(|e| FieldError::new("subnet", &self.subnet, e))?;
        if !self.gateway.is_empty() {
            let gw = net::parse_v4(&self.gateway)
                .map_err(|e| FieldError::new("gateway", &self.gateway, e))?;
            if !spec.net.contains(&gw) || gw == spec.net.network() || gw == spec.net.broadcast() {
                return Err(FieldError::new(
                    "gateway",
                    &self.gateway,
                    format!("must be a host address inside subnet {}", spec.net),
                ));
            }
        }
        if !self.ipv6_subnet.is_empty() {
            let v6 = net::parse_v6_subnet(&self.ipv6_subnet)
                .map_err(|e| FieldError::new("ipv6Subnet", &self.ipv6_subnet, e))?;
            if !self.ipv6_gateway.is_empty() {
                let gw = net::parse_v6(&self.ipv6_gateway)
                    .map_err(|e| FieldError::new("ipv6Gateway", &self.ipv6_gateway, e))?;
                if !v6.contains(&gw) || gw == v6.network() {
                    return Err(FieldError::new(
                        "ipv6Gateway",
                        &self.ipv6_gateway,
                        format!("must be a host address inside subnet {v6}"),
                    ));
                }
            }
        } else if !self.ipv6_gateway.is_empty() {
            return Err(FieldError::new(
                "ipv6Gateway",
                &self.ipv6_gateway,
                "needs ipv6Subnet",
            ));
        }
        opt_name("cfgdTag", &self.cfgd_tag, 128)
    }
}
object_impl!(Network);

// ---------------------------------------------------------------- endpointGroup

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndpointGroup {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(rename = "cfgdTag", default, skip_serializing_if = "String::is_empty")]
    pub cfgd_tag: String,
    #[serde(
        rename = "extContractsGrps",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ext_contracts_grps: Vec<String>,
    #[serde(
        rename = "groupName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub group_name: String,
    #[serde(rename = "ipPool", default, skip_serializing_if = "String::is_empty")]
    pub ip_pool: String,
    #[serde(
        rename = "netProfile",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub net_profile: String,
    #[serde(
        rename = "networkName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub network_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    #[serde(
        rename = "tenantName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub tenant_name: String,
    #[serde(
        rename = "link-sets",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub link_sets: LinkSets,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: Links,
}
key_impl!(EndpointGroup, "endpointGroups", "endpointGroup", [tenant_name => "tenantName", group_name => "groupName"]);
impl EndpointGroup {
    fn check(&mut self) -> Result<(), FieldError> {
        name("tenantName", &self.tenant_name, 64)?;
        name("groupName", &self.group_name, 64)?;
        name("networkName", &self.network_name, 64)?;
        if !self.ip_pool.is_empty() {
            net::parse_v4_range(&self.ip_pool)
                .map_err(|e| FieldError::new("ipPool", &self.ip_pool, e))?;
        }
        for p in &self.policies {
            name("policies", p, 64)?;
        }
        for c in &self.ext_contracts_grps {
            name("extContractsGrps", c, 64)?;
        }
        opt_name("netProfile", &self.net_profile, 64)?;
        opt_name("cfgdTag", &self.cfgd_tag, 128)?;
        self.policies.sort();
        self.policies.dedup();
        Ok(())
    }
}
object_impl!(EndpointGroup);

// ---------------------------------------------------------------- policy

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(
        rename = "policyName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub policy_name: String,
    #[serde(
        rename = "tenantName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub tenant_name: String,
    #[serde(
        rename = "link-sets",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub link_sets: LinkSets,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: Links,
}
key_impl!(Policy, "policys", "policy", [tenant_name => "tenantName", policy_name => "policyName"]);
impl Policy {
    fn check(&mut self) -> Result<(), FieldError> {
        name("tenantName", &self.tenant_name, 64)?;
        name("policyName", &self.policy_name, 64)
    }
}
object_impl!(Policy);

// ---------------------------------------------------------------- rule

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub direction: String,
    #[serde(
        rename = "fromEndpointGroup",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub from_endpoint_group: String,
    #[serde(
        rename = "fromIpAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub from_ip_address: String,
    #[serde(
        rename = "fromNetwork",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub from_network: String,
    #[serde(
        rename = "policyName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub policy_name: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub port: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub priority: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(rename = "ruleId", default, skip_serializing_if = "String::is_empty")]
    pub rule_id: String,
    #[serde(
        rename = "tenantName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub tenant_name: String,
    #[serde(
        rename = "toEndpointGroup",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub to_endpoint_group: String,
    #[serde(
        rename = "toIpAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub to_ip_address: String,
    #[serde(
        rename = "toNetwork",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub to_network: String,
    #[serde(
        rename = "link-sets",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub link_sets: LinkSets,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: Links,
}
key_impl!(Rule, "rules", "rule", [tenant_name => "tenantName", policy_name => "policyName", rule_id => "ruleId"]);
impl Rule {
    fn check(&mut self) -> Result<(), FieldError> {
        name("tenantName", &self.tenant_name, 64)?;
        name("policyName", &self.policy_name, 64)?;
        name("ruleId", &self.rule_id, 64)?;
        if self.direction.is_empty() {
            return Err(FieldError::new("direction", "", "is required: in or out"));
        }
        one_of("direction", &self.direction, &["in", "out"])?;
        if self.action.is_empty() {
            return Err(FieldError::new("action", "", "is required: allow or deny"));
        }
        one_of("action", &self.action, &["allow", "deny"])?;
        if self.priority == 0 {
            self.priority = 1;
        }
        range("priority", self.priority, 1, 100)?;
        range("port", self.port, 0, 65535)?;
        let p = self.protocol.as_str();
        let numeric = !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
        if !(p.is_empty()
            || ["tcp", "udp", "icmp", "icmp6"].contains(&p)
            || numeric && p.parse::<u16>().is_ok_and(|n| n <= 255))
        {
            return Err(FieldError::new(
                "protocol",
                p,
                "must be tcp, udp, icmp (ICMP of IPv4 and of IPv6), icmp6 (ICMPv6 only), empty (any) or an IP protocol number 0-255",
            ));
        }
        if self.port != 0 && !["tcp", "udp"].contains(&p) {
            return Err(FieldError::new(
                "port",
                self.port,
                "needs protocol tcp or udp",
            ));
        }
        opt_name("fromEndpointGroup", &self.from_endpoint_group, 64)?;
        opt_name("toEndpointGroup", &self.to_endpoint_group, 64)?;
        opt_name("fromNetwork", &self.from_network, 64)?;
        opt_name("toNetwork", &self.to_network, 64)?;
        for (field, v) in [
            ("fromIpAddress", &self.from_ip_address),
            ("toIpAddress", &self.to_ip_address),
        ] {
            if v.contains(':') {
                net::parse_rule_address6(v).map_err(|e| FieldError::new(field, v, e))?;
            } else if !v.is_empty() {
                net::parse_rule_address(v).map_err(|e| FieldError::new(field, v, e))?;
            }
        }
        // A rule applies to one address family when it names addresses (the datapath compiles
        // it once per family it can concern): one of each would match nothing.
        let v6 = |v: &str| v.contains(':');
        if !self.from_ip_address.is_empty()
            && !self.to_ip_address.is_empty()
            && v6(&self.from_ip_address) != v6(&self.to_ip_address)
        {
            return Err(FieldError::new(
                "toIpAddress",
                &self.to_ip_address,
                format!(
                    "is not of fromIpAddress {}'s family (IPv4 and IPv6 never meet in one packet)",
                    self.from_ip_address
                ),
            ));
        }
        if p == "icmp6" {
            for (field, v) in [
                ("fromIpAddress", &self.from_ip_address),
                ("toIpAddress", &self.to_ip_address),
            ] {
                if !v.is_empty() && !v6(v) {
                    return Err(FieldError::new(
                        field,
                        v,
                        "is an IPv4 match on an icmp6 rule: give an IPv6 address or subnet",
                    ));
                }
            }
        }
        // Contiv's direction constraints (§2.2).
        if self.direction == "in" {
            if !self.to_endpoint_group.is_empty() || !self.to_network.is_empty() {
                let (f, v) = if self.to_endpoint_group.is_empty() {
                    ("toNetwork", &self.to_network)
                } else {
                    ("toEndpointGroup", &self.to_endpoint_group)
                };
                return Err(FieldError::new(
                    f,
                    v,
                    "is not allowed on an 'in' rule (it applies to the group the policy is attached to); use a from* match",
                ));
            }
            if !self.from_network.is_empty() && !self.from_ip_address.is_empty() {
                return Err(FieldError::new(
                    "fromIpAddress",
                    &self.from_ip_address,
                    "cannot be combined with fromNetwork",
                ));
            }
            if !self.from_network.is_empty() && !self.from_endpoint_group.is_empty() {
                return Err(FieldError::new(
                    "fromNetwork",
                    &self.from_network,
                    "cannot be combined with fromEndpointGroup",
                ));
            }
        } else {
            if !self.from_endpoint_group.is_empty()
                || !self.from_network.is_empty()
                || !self.from_ip_address.is_empty()
            {
                let (f, v) = if !self.from_endpoint_group.is_empty() {
                    ("fromEndpointGroup", &self.from_endpoint_group)
                } else if !self.from_network.is_empty() {
                    ("fromNetwork", &self.from_network)
                } else {
                    ("fromIpAddress", &self.from_ip_address)
                };
                return Err(FieldError::new(
                    f,
                    v,
                    "is not allowed on an 'out' rule (it applies to the group the policy is attached to); use a to* match",
                ));
            }
            if !self.to_network.is_empty() && !self.to_ip_address.is_empty() {
                return Err(FieldError::new(
                    "toIpAddress",
                    &self.to_ip_address,
                    "cannot be combined with toNetwork",
                ));
            }
            if !self.to_network.is_empty() && !self.to_endpoint_group.is_empty() {
                return Err(FieldError::new(
                    "toNetwork",
                    &self.to_network,
                    "cannot be combined with toEndpointGroup",
                ));
            }
        }
        Ok(())
    }
}
object_impl!(Rule);

// ---------------------------------------------------------------- netprofile

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Netprofile {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(rename = "DSCP", default, skip_serializing_if = "is_zero_i64")]
    pub dscp: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bandwidth: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub burst: i64,
    #[serde(
        rename = "profileName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub profile_name: String,
    #[serde(
        rename = "tenantName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub tenant_name: String,
    #[serde(
        rename = "link-sets",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub link_sets: LinkSets,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: Links,
}
key_impl!(Netprofile, "netprofiles", "netprofile", [tenant_name => "tenantName", profile_name => "profileName"]);
impl Netprofile {
    fn check(&mut self) -> Result<(), FieldError> {
        name("tenantName", &self.tenant_name, 64)?;
        name("profileName", &self.profile_name, 64)?;
        if !self.bandwidth.is_empty() {
            net::parse_bandwidth(&self.bandwidth)
                .map_err(|e| FieldError::new("bandwidth", &self.bandwidth, e))?;
        }
        range("DSCP", self.dscp, 0, 63)?;
        range("burst", self.burst, 0, 10486)?;
        if self.burst == 1 {
            return Err(FieldError::new(
                "burst",
                1,
                "must be 0 (default) or 2-10486 kilobytes",
            ));
        }
        if self.burst != 0 && self.bandwidth.is_empty() {
            return Err(FieldError::new("burst", self.burst, "needs a bandwidth"));
        }
        Ok(())
    }
}
object_impl!(Netprofile);

// ---------------------------------------------------------------- global

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Global {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(rename = "arpMode", default, skip_serializing_if = "String::is_empty")]
    pub arp_mode: String,
    #[serde(rename = "fwdMode", default, skip_serializing_if = "String::is_empty")]
    pub fwd_mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(
        rename = "networkInfraType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub network_infra_type: String,
    #[serde(
        rename = "pvtSubnet",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub pvt_subnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vlans: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vxlans: String,
}
key_impl!(Global, "globals", "global", [name => "name"]);
impl Global {
    pub const VLAN_MAX: u32 = 4094;
    pub const VXLAN_MAX: u32 = 16_777_215;

    /// The defaults a fresh netmaster writes (Contiv's `initGlobalConfigs`).
    pub fn defaults() -> Self {
        let mut g = Global {
            name: "global".into(),
            arp_mode: "proxy".into(),
            fwd_mode: "bridge".into(),
            network_infra_type: "default".into(),
            pvt_subnet: "172.19.0.0/16".into(),
            vlans: "1-4094".into(),
            vxlans: "1-10000".into(),
            ..Default::default()
        };
        g.key = g.key_string();
        g
    }

    pub fn vlan_range(&self) -> (u32, u32) {
        net::parse_tag_range(&self.vlans, 1, Self::VLAN_MAX).unwrap_or((1, Self::VLAN_MAX))
    }
    pub fn vxlan_range(&self) -> (u32, u32) {
        net::parse_tag_range(&self.vxlans, 1, Self::VXLAN_MAX).unwrap_or((1, 10000))
    }

    fn check(&mut self) -> Result<(), FieldError> {
        if self.name != "global" {
            return Err(FieldError::new("name", &self.name, "must be 'global'"));
        }
        let d = Global::defaults();
        for (v, dv) in [
            (&mut self.arp_mode, d.arp_mode),
            (&mut self.fwd_mode, d.fwd_mode),
            (&mut self.network_infra_type, d.network_infra_type),
            (&mut self.pvt_subnet, d.pvt_subnet),
            (&mut self.vlans, d.vlans),
            (&mut self.vxlans, d.vxlans),
        ] {
            if v.is_empty() {
                *v = dv;
            }
        }
        one_of(
            "networkInfraType",
            &self.network_infra_type,
            &["aci", "aci-opflex", "default"],
        )?;
        one_of("fwdMode", &self.fwd_mode, &["bridge", "routing"])?;
        one_of("arpMode", &self.arp_mode, &["proxy", "flood"])?;
        net::parse_tag_range(&self.vlans, 1, Self::VLAN_MAX)
            .map_err(|e| FieldError::new("vlans", &self.vlans, e))?;
        net::parse_tag_range(&self.vxlans, 1, Self::VXLAN_MAX)
            .map_err(|e| FieldError::new("vxlans", &self.vxlans, e))?;
        let p: ipnet::Ipv4Net = self.pvt_subnet.parse().map_err(|_| {
            FieldError::new(
                "pvtSubnet",
                &self.pvt_subnet,
                "must be an IPv4 subnet a.b.0.0/16",
            )
        })?;
        if p.prefix_len() != 16 || p.trunc() != p {
            return Err(FieldError::new(
                "pvtSubnet",
                &self.pvt_subnet,
                "must be an IPv4 /16 subnet such as 172.19.0.0/16",
            ));
        }
        Ok(())
    }
}
object_impl!(Global);

// ---------------------------------------------------------------- Bgp

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Bgp {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(rename = "as", default, skip_serializing_if = "String::is_empty")]
    pub as_: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub neighbor: String,
    #[serde(
        rename = "neighbor-as",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub neighbor_as: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub routerip: String,
}
key_impl!(Bgp, "Bgps", "Bgp", [hostname => "hostname"]);
impl Bgp {
    fn check(&mut self) -> Result<(), FieldError> {
        if self.hostname.is_empty() {
            return Err(FieldError::new("hostname", "", "is required"));
        }
        max_len("hostname", &self.hostname, 256)?;
        if self.hostname.contains(['/', ' ', ':']) {
            return Err(FieldError::new(
                "hostname",
                &self.hostname,
                "must not contain '/', ':' or spaces",
            ));
        }
        let r: Result<ipnet::Ipv4Net, _> = self.routerip.parse();
        if r.is_err() {
            return Err(FieldError::new(
                "routerip",
                &self.routerip,
                "must be an IPv4 address with its prefix length, e.g. 50.1.1.1/24",
            ));
        }
        for (f, v) in [("as", &self.as_), ("neighbor-as", &self.neighbor_as)] {
            if v.parse::<u32>().is_err() || v == "0" {
                return Err(FieldError::new(f, v, "must be an AS number 1-4294967295"));
            }
        }
        net::parse_v4(&self.neighbor)
            .map_err(|e| FieldError::new("neighbor", &self.neighbor, e))?;
        Ok(())
    }
}
object_impl!(Bgp);

// ---------------------------------------------------------------- serviceLB

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceLb {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(
        rename = "ipAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ip_address: String,
    #[serde(
        rename = "networkName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub network_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<String>,
    #[serde(
        rename = "serviceName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub service_name: String,
    #[serde(
        rename = "tenantName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub tenant_name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: Links,
}
key_impl!(ServiceLb, "serviceLBs", "serviceLB", [tenant_name => "tenantName", service_name => "serviceName"]);
impl ServiceLb {
    fn check(&mut self) -> Result<(), FieldError> {
        name("tenantName", &self.tenant_name, 64)?;
        name("serviceName", &self.service_name, 256)?;
        name("networkName", &self.network_name, 64)?;
        if !self.ip_address.is_empty() {
            net::parse_v4(&self.ip_address)
                .map_err(|e| FieldError::new("ipAddress", &self.ip_address, e))?;
        }
        if self.selectors.is_empty() {
            return Err(FieldError::new(
                "selectors",
                "",
                "needs at least one key=value selector",
            ));
        }
        for s in &self.selectors {
            match s.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => {}
                _ => return Err(FieldError::new("selectors", s, "must be key=value")),
            }
        }
        if self.ports.is_empty() {
            return Err(FieldError::new(
                "ports",
                "",
                "needs at least one svcPort:provPort:protocol",
            ));
        }
        for p in &mut self.ports {
            let parts: Vec<&str> = p.split(':').collect();
            let ok = parts.len() == 3
                && parts[0].parse::<u16>().is_ok_and(|n| n > 0)
                && parts[1].parse::<u16>().is_ok_and(|n| n > 0)
                && ["TCP", "UDP"].contains(&parts[2].to_ascii_uppercase().as_str());
            if !ok {
                return Err(FieldError::new(
                    "ports",
                    &*p,
                    "must be svcPort:provPort:protocol with ports 1-65535 and protocol TCP or UDP",
                ));
            }
            // The datapath wants the protocol upper case; Contiv accepted any case and broke.
            *p = format!(
                "{}:{}:{}",
                parts[0],
                parts[1],
                parts[2].to_ascii_uppercase()
            );
        }
        Ok(())
    }
}
object_impl!(ServiceLb);

// ---------------------------------------------------------------- appProfile

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppProfile {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(
        rename = "appProfileName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub app_profile_name: String,
    #[serde(
        rename = "endpointGroups",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub endpoint_groups: Vec<String>,
    #[serde(
        rename = "tenantName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub tenant_name: String,
    #[serde(
        rename = "link-sets",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub link_sets: LinkSets,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: Links,
}
key_impl!(AppProfile, "appProfiles", "appProfile", [tenant_name => "tenantName", app_profile_name => "appProfileName"]);
impl AppProfile {
    fn check(&mut self) -> Result<(), FieldError> {
        name("tenantName", &self.tenant_name, 64)?;
        name("appProfileName", &self.app_profile_name, 64)?;
        for g in &self.endpoint_groups {
            name("endpointGroups", g, 64)?;
        }
        Ok(())
    }
}
object_impl!(AppProfile);

// ---------------------------------------------------------------- extContractsGroup

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExtContractsGroup {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contracts: Vec<String>,
    #[serde(
        rename = "contractsGroupName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub contracts_group_name: String,
    #[serde(
        rename = "contractsType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub contracts_type: String,
    #[serde(
        rename = "tenantName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub tenant_name: String,
    #[serde(
        rename = "link-sets",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub link_sets: LinkSets,
}
key_impl!(ExtContractsGroup, "extContractsGroups", "extContractsGroup", [tenant_name => "tenantName", contracts_group_name => "contractsGroupName"]);
impl ExtContractsGroup {
    fn check(&mut self) -> Result<(), FieldError> {
        name("tenantName", &self.tenant_name, 64)?;
        name("contractsGroupName", &self.contracts_group_name, 64)?;
        one_of(
            "contractsType",
            &self.contracts_type,
            &["provided", "consumed"],
        )?;
        if self.contracts.is_empty() {
            return Err(FieldError::new(
                "contracts",
                "",
                "needs at least one contract",
            ));
        }
        Ok(())
    }
}
object_impl!(ExtContractsGroup);

// ---------------------------------------------------------------- aciGw

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AciGw {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(
        rename = "enforcePolicies",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub enforce_policies: String,
    #[serde(
        rename = "includeCommonTenant",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub include_common_tenant: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(
        rename = "nodeBindings",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub node_bindings: String,
    #[serde(
        rename = "pathBindings",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub path_bindings: String,
    #[serde(
        rename = "physicalDomain",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub physical_domain: String,
}
key_impl!(AciGw, "aciGws", "aciGw", [name => "name"]);
impl AciGw {
    fn check(&mut self) -> Result<(), FieldError> {
        if self.name != "aciGw" {
            return Err(FieldError::new("name", &self.name, "must be 'aciGw'"));
        }
        if self.enforce_policies.is_empty() {
            self.enforce_policies = "yes".into();
        }
        if self.include_common_tenant.is_empty() {
            self.include_common_tenant = "no".into();
        }
        one_of("enforcePolicies", &self.enforce_policies, &["yes", "no"])?;
        one_of(
            "includeCommonTenant",
            &self.include_common_tenant,
            &["yes", "no"],
        )?;
        max_len("pathBindings", &self.path_bindings, 2048)?;
        max_len("nodeBindings", &self.node_bindings, 2048)?;
        max_len("physicalDomain", &self.physical_domain, 128)?;
        for b in self.path_bindings.split(',').filter(|s| !s.is_empty()) {
            if !(b.starts_with("topology/pod-") && b.contains("/paths-") && b.contains("/pathep-["))
            {
                return Err(FieldError::new(
                    "pathBindings",
                    b,
                    "must be topology/pod-N/paths-N/pathep-[ethN/N]",
                ));
            }
        }
        for b in self.node_bindings.split(',').filter(|s| !s.is_empty()) {
            if !(b.starts_with("topology/pod-") && b.contains("/node-")) {
                return Err(FieldError::new(
                    "nodeBindings",
                    b,
                    "must be topology/pod-N/node-N",
                ));
            }
        }
        Ok(())
    }
}
object_impl!(AciGw);

/// Every REST collection, for generic dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Tenant,
    Network,
    EndpointGroup,
    Policy,
    Rule,
    Netprofile,
    Global,
    Bgp,
    ServiceLb,
    AppProfile,
    ExtContractsGroup,
    AciGw,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Tenant,
        Kind::Network,
        Kind::EndpointGroup,
        Kind::Policy,
        Kind::Rule,
        Kind::Netprofile,
        Kind::Global,
        Kind::Bgp,
        Kind::ServiceLb,
        Kind::AppProfile,
        Kind::ExtContractsGroup,
        Kind::AciGw,
    ];

    pub fn collection(self) -> &'static str {
        match self {
            Kind::Tenant => Tenant::COLLECTION,
            Kind::Network => Network::COLLECTION,
            Kind::EndpointGroup => EndpointGroup::COLLECTION,
            Kind::Policy => Policy::COLLECTION,
            Kind::Rule => Rule::COLLECTION,
            Kind::Netprofile => Netprofile::COLLECTION,
            Kind::Global => Global::COLLECTION,
            Kind::Bgp => Bgp::COLLECTION,
            Kind::ServiceLb => ServiceLb::COLLECTION,
            Kind::AppProfile => AppProfile::COLLECTION,
            Kind::ExtContractsGroup => ExtContractsGroup::COLLECTION,
            Kind::AciGw => AciGw::COLLECTION,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Tenant => Tenant::KIND,
            Kind::Network => Network::KIND,
            Kind::EndpointGroup => EndpointGroup::KIND,
            Kind::Policy => Policy::KIND,
            Kind::Rule => Rule::KIND,
            Kind::Netprofile => Netprofile::KIND,
            Kind::Global => Global::KIND,
            Kind::Bgp => Bgp::KIND,
            Kind::ServiceLb => ServiceLb::KIND,
            Kind::AppProfile => AppProfile::KIND,
            Kind::ExtContractsGroup => ExtContractsGroup::KIND,
            Kind::AciGw => AciGw::KIND,
        }
    }

    pub fn key_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Tenant => Tenant::KEY_FIELDS,
            Kind::Network => Network::KEY_FIELDS,
            Kind::EndpointGroup => EndpointGroup::KEY_FIELDS,
            Kind::Policy => Policy::KEY_FIELDS,
            Kind::Rule => Rule::KEY_FIELDS,
            Kind::Netprofile => Netprofile::KEY_FIELDS,
            Kind::Global => Global::KEY_FIELDS,
            Kind::Bgp => Bgp::KEY_FIELDS,
            Kind::ServiceLb => ServiceLb::KEY_FIELDS,
            Kind::AppProfile => AppProfile::KEY_FIELDS,
            Kind::ExtContractsGroup => ExtContractsGroup::KEY_FIELDS,
            Kind::AciGw => AciGw::KEY_FIELDS,
        }
    }

    pub fn from_collection(c: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.collection() == c)
    }

    pub fn from_name(n: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(subnet: &str, gw: &str) -> Network {
        Network {
            tenant_name: "default".into(),
            network_name: "n1".into(),
            encap: "vxlan".into(),
            subnet: subnet.into(),
            gateway: gw.into(),
            ..Default::default()
        }
    }

    #[test]
    fn network_rules() {
        let mut n = net("10.1.2.0/24", "10.1.2.1");
        n.normalize().unwrap();
        assert_eq!(n.nw_type, "data");
        assert_eq!(n.key(), "default:n1");
        let e = net("10.1.2.0/24", "10.1.3.1").normalize().unwrap_err();
        assert_eq!(e.field, "gateway");
        assert!(e.to_string().contains("inside subnet 10.1.2.0/24"), "{e}");
        assert_eq!(
            net("10.1.2.0/24", "10.1.2.255")
                .normalize()
                .unwrap_err()
                .field,
            "gateway"
        );
        let mut n = net("10.1.2.0/24", "");
        n.encap = String::new();
        assert_eq!(n.normalize().unwrap_err().field, "encap");
        let mut n = net("10.1.2.0/24", "");
        n.network_name = "bad_name".into();
        assert_eq!(n.normalize().unwrap_err().field, "networkName");
    }

    #[test]
    fn omitempty_json() {
        let mut n = net("10.1.2.0/24", "");
        n.set_key();
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"key":"default:n1","encap":"vxlan","networkName":"n1","subnet":"10.1.2.0/24","tenantName":"default"})
        );
    }

    #[test]
    fn rule_rules() {
        let base = Rule {
            tenant_name: "default".into(),
            policy_name: "p".into(),
            rule_id: "1".into(),
            direction: "in".into(),
            action: "allow".into(),
            ..Default::default()
        };
        let mut r = base.clone();
        r.normalize().unwrap();
        assert_eq!(r.priority, 1);
        let mut r = base.clone();
        r.to_endpoint_group = "g".into();
        assert_eq!(r.normalize().unwrap_err().field, "toEndpointGroup");
        let mut r = base.clone();
        r.priority = 101;
        assert_eq!(r.normalize().unwrap_err().field, "priority");
        let mut r = base.clone();
        r.protocol = "sctp".into();
        assert_eq!(r.normalize().unwrap_err().field, "protocol");
        let mut r = base.clone();
        r.protocol = "132".into();
        r.normalize().unwrap();
        // IPv6 matches: addresses, subnets and ICMPv6; one family per rule.
        let mut r = base.clone();
        r.protocol = "icmp6".into();
        r.from_ip_address = "fd00::/64".into();
        r.normalize().unwrap();
        r.from_ip_address = "10.1.0.0/16".into();
        assert_eq!(r.normalize().unwrap_err().field, "fromIpAddress");
        let mut r = base.clone();
        r.direction = "out".into();
        r.to_ip_address = "fd00::zz".into();
        assert_eq!(r.normalize().unwrap_err().field, "toIpAddress");
        let mut r = base.clone();
        r.from_ip_address = "10.1.0.5".into();
        r.to_ip_address = "fd00::5".into();
        assert_eq!(r.normalize().unwrap_err().field, "toIpAddress");
        let mut r = base;
        r.port = 80;
        assert_eq!(r.normalize().unwrap_err().field, "port");
    }

    #[test]
    fn global_defaults_valid() {
        let mut g = Global::defaults();
        g.normalize().unwrap();
        g.pvt_subnet = "172.19.0.0/24".into();
        assert_eq!(g.normalize().unwrap_err().field, "pvtSubnet");
    }

    #[test]
    fn kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_collection(k.collection()), Some(k));
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
    }
}
