//! Oper (inspect) views, with Contiv's JSON names. `GET /api/v1/inspect/<coll>/<key>/` returns
//! `{"Config": <object>, "Oper": <one of these>}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndpointOper {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(
        rename = "containerID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
    #[serde(
        rename = "containerName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub container_name: String,
    #[serde(rename = "endpointGroupId", default, skip_serializing_if = "is_zero")]
    pub endpoint_group_id: i64,
    #[serde(
        rename = "endpointGroupKey",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub endpoint_group_key: String,
    #[serde(
        rename = "endpointID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub endpoint_id: String,
    #[serde(
        rename = "homingHost",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub homing_host: String,
    #[serde(rename = "intfName", default, skip_serializing_if = "String::is_empty")]
    pub intf_name: String,
    #[serde(rename = "ipAddress", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub labels: String,
    #[serde(
        rename = "macAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub mac_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    #[serde(
        rename = "serviceName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub service_name: String,
    #[serde(
        rename = "virtualPort",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub virtual_port: String,
    #[serde(rename = "vtepIP", default, skip_serializing_if = "String::is_empty")]
    pub vtep_ip: String,
    /// Frames the endpoint sent under an identity not its own, which its host's switch dropped
    /// (since its flows were last installed there). Only in an endpoint's own inspect (not in
    /// the endpoint lists of networks, groups and policies): netmaster keeps the counts its
    /// host reports.
    #[serde(
        rename = "spoofedPackets",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub spoofed_packets: Option<u64>,
    /// The endpoint's private (host-access) address on its host, from `global.pvtSubnet`:
    /// what the host reaches the pod at whatever its tenant (docs/decisions.md "North-south").
    /// Only in an endpoint's own inspect, as its host last reported it.
    #[serde(
        rename = "privateIPAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub private_ip_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkOper {
    #[serde(
        rename = "allocatedAddressesCount",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub allocated_addresses_count: i64,
    #[serde(
        rename = "allocatedIPAddresses",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub allocated_ip_addresses: String,
    #[serde(
        rename = "availableIPAddresses",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub available_ip_addresses: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointOper>,
    #[serde(rename = "externalPktTag", default, skip_serializing_if = "is_zero")]
    pub external_pkt_tag: i64,
    #[serde(
        rename = "networkTag",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub network_tag: String,
    #[serde(rename = "numEndpoints", default, skip_serializing_if = "is_zero")]
    pub num_endpoints: i64,
    #[serde(rename = "pktTag", default, skip_serializing_if = "is_zero")]
    pub pkt_tag: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndpointGroupOper {
    #[serde(
        rename = "allocatedIPAddresses",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub allocated_ip_addresses: String,
    #[serde(
        rename = "availableIPAddresses",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub available_ip_addresses: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointOper>,
    #[serde(rename = "externalPktTag", default, skip_serializing_if = "is_zero")]
    pub external_pkt_tag: i64,
    #[serde(rename = "groupTag", default, skip_serializing_if = "String::is_empty")]
    pub group_tag: String,
    /// Not in Contiv: the group's numeric id, as the datapath carries it.
    #[serde(rename = "groupId", default, skip_serializing_if = "is_zero")]
    pub group_id: i64,
    #[serde(rename = "numEndpoints", default, skip_serializing_if = "is_zero")]
    pub num_endpoints: i64,
    #[serde(rename = "pktTag", default, skip_serializing_if = "is_zero")]
    pub pkt_tag: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyOper {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointOper>,
    #[serde(rename = "numEndpoints", default, skip_serializing_if = "is_zero")]
    pub num_endpoints: i64,
    #[serde(rename = "policyViolations", default, skip_serializing_if = "is_zero")]
    pub policy_violations: i64,
    /// Ours: per rule, the packets and bytes its flows matched, in total and per host.
    #[serde(rename = "ruleStats", default, skip_serializing_if = "Vec::is_empty")]
    pub rule_stats: Vec<RuleStatsOper>,
}

/// The counters of one rule of a policy, summed over the hosts that enforce it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleStatsOper {
    #[serde(rename = "ruleId")]
    pub rule_id: String,
    pub packets: u64,
    pub bytes: u64,
    /// Host name -> that host's counters.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub hosts: std::collections::BTreeMap<String, crate::agent::RuleCounters>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantOper {
    #[serde(
        rename = "endpointGroups",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub endpoint_groups: Vec<EndpointGroupOper>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointOper>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkOper>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyOper>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servicelbs: Vec<ServiceLbOper>,
    #[serde(rename = "totalAppProfiles", default, skip_serializing_if = "is_zero")]
    pub total_app_profiles: i64,
    #[serde(rename = "totalEPGs", default, skip_serializing_if = "is_zero")]
    pub total_epgs: i64,
    #[serde(rename = "totalEndpoints", default, skip_serializing_if = "is_zero")]
    pub total_endpoints: i64,
    #[serde(rename = "totalNetprofiles", default, skip_serializing_if = "is_zero")]
    pub total_netprofiles: i64,
    #[serde(rename = "totalNetworks", default, skip_serializing_if = "is_zero")]
    pub total_networks: i64,
    #[serde(rename = "totalPolicies", default, skip_serializing_if = "is_zero")]
    pub total_policies: i64,
    #[serde(rename = "totalServicelbs", default, skip_serializing_if = "is_zero")]
    pub total_servicelbs: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GlobalOper {
    #[serde(
        rename = "clusterMode",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_mode: String,
    #[serde(
        rename = "defaultNetwork",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub default_network: String,
    #[serde(rename = "freeVXLANsStart", default, skip_serializing_if = "is_zero")]
    pub free_vxlans_start: i64,
    #[serde(rename = "numNetworks", default, skip_serializing_if = "is_zero")]
    pub num_networks: i64,
    #[serde(
        rename = "vlansInUse",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub vlans_in_use: String,
    #[serde(
        rename = "vxlansInUse",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlans_in_use: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceLbOper {
    #[serde(rename = "numProviders", default, skip_serializing_if = "is_zero")]
    pub num_providers: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<EndpointOper>,
    #[serde(
        rename = "serviceVip",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub service_vip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BgpOper {
    #[serde(
        rename = "adminStatus",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub admin_status: String,
    #[serde(
        rename = "neighborStatus",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub neighbor_status: String,
    #[serde(rename = "numRoutes", default, skip_serializing_if = "is_zero")]
    pub num_routes: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AciGwOper {
    #[serde(rename = "numAppProfiles", default, skip_serializing_if = "is_zero")]
    pub num_app_profiles: i64,
}
