//! The agent-facing API: node registration, endpoints, the watch stream, version and info.
//! Described for humans in docs/agent-api.md.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `PUT /api/v1/nodes/{hostname}/`: register a node, or renew its registration (heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeRegistration {
    pub hostname: String,
    /// The address other hosts reach this one's VXLAN tunnel endpoint at.
    #[serde(rename = "vtepIP")]
    pub vtep_ip: String,
    /// The agent's version, for operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// A node as the master knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub hostname: String,
    #[serde(rename = "vtepIP")]
    pub vtep_ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// The answer to a registration: how often to renew it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeLease {
    pub hostname: String,
    /// The registration expires this long after the last renewal.
    #[serde(rename = "ttlSeconds")]
    pub ttl_seconds: u64,
    /// Renew at least this often.
    #[serde(rename = "heartbeatSeconds")]
    pub heartbeat_seconds: u64,
}

/// How many packets (and bytes) the flows of one policy rule matched on one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleCounters {
    pub packets: u64,
    pub bytes: u64,
}

impl RuleCounters {
    /// Adds `other`, staying at the maximum rather than overflowing.
    pub fn add(&mut self, other: RuleCounters) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// `PUT /api/v1/nodes/{hostname}/rulestats/`: the counters of every rule with flows on the node,
/// read from its switch. Each report replaces the node's previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleStatsReport {
    pub hostname: String,
    /// Rule key (`tenant:policy:ruleId`) -> counters since its flows were installed there.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleCounters>,
}

/// `PUT /api/v1/nodes/{hostname}/spoofstats/`: how many frames each of the node's endpoints
/// sent under an identity not its own (another MAC or address), which its switch dropped. Each
/// report replaces the node's previous one; endpoints without any are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpoofStatsReport {
    pub hostname: String,
    /// Endpoint id -> frames dropped since its flows were installed on the node.
    #[serde(default)]
    pub endpoints: BTreeMap<String, u64>,
}

/// `PUT /api/v1/nodes/{hostname}/hostaccess/`: the private (host-access) address of each of
/// the node's endpoints, from `global.pvtSubnet` (docs/decisions.md "North-south"): the host
/// reaches the pod at it whatever its tenant. Each report replaces the node's previous one;
/// endpoints without one are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostAccessReport {
    pub hostname: String,
    /// Endpoint id -> its private IPv4 address on the node.
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
}

/// `POST /api/v1/endpoints/`: create an endpoint (idempotent for the same `endpointID`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndpointRequest {
    /// Chosen by the agent, unique in the cluster (e.g. derived from container id + interface).
    #[serde(rename = "endpointID")]
    pub endpoint_id: String,
    #[serde(rename = "tenantName")]
    pub tenant_name: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// The endpoint group, or empty for none.
    #[serde(
        rename = "groupName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub group_name: String,
    /// The node the endpoint lives on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
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
    #[serde(rename = "intfName", default, skip_serializing_if = "String::is_empty")]
    pub intf_name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A requested IPv4 address (refused when taken); empty to allocate one.
    #[serde(
        rename = "ipAddress",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ip_address: String,
    /// A requested IPv6 address; empty to allocate one when the network has an IPv6 subnet.
    #[serde(
        rename = "ipv6Address",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_address: String,
}

/// An endpoint with everything an agent needs to plumb it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    #[serde(rename = "endpointID")]
    pub endpoint_id: String,
    #[serde(rename = "tenantName")]
    pub tenant_name: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(
        rename = "groupName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub group_name: String,
    /// The group's numeric id (0 without a group), stable across restarts.
    #[serde(rename = "groupId", default)]
    pub group_id: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
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
    #[serde(rename = "intfName", default, skip_serializing_if = "String::is_empty")]
    pub intf_name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "ipAddress")]
    pub ip_address: String,
    #[serde(rename = "prefixLen")]
    pub prefix_len: u8,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(
        rename = "ipv6Address",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_address: String,
    #[serde(rename = "ipv6PrefixLen", default, skip_serializing_if = "is_zero_u8")]
    pub ipv6_prefix_len: u8,
    #[serde(
        rename = "ipv6Gateway",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_gateway: String,
    #[serde(rename = "macAddress")]
    pub mac_address: String,
    /// `vlan` or `vxlan`.
    pub encap: String,
    /// VLAN: the VLAN id. VXLAN: the network's local VLAN.
    #[serde(rename = "pktTag")]
    pub pkt_tag: u32,
    /// VXLAN: the VNI. VLAN: 0.
    #[serde(rename = "extPktTag", default)]
    pub ext_pkt_tag: u32,
}

fn is_zero_u8(v: &u8) -> bool {
    *v == 0
}

/// Allocation state the master keeps beside a network's config (watch events carry it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkState {
    /// VLAN networks: the VLAN. VXLAN networks: the local VLAN.
    #[serde(rename = "pktTag")]
    pub pkt_tag: u32,
    /// VXLAN networks: the VNI.
    #[serde(rename = "extPktTag", default)]
    pub ext_pkt_tag: u32,
}

/// Allocation state the master keeps beside an endpoint group's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupState {
    #[serde(rename = "groupId")]
    pub group_id: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WatchEventType {
    /// An object was created or changed.
    Put,
    /// An object was deleted.
    Delete,
    /// The initial listing is complete; live events follow.
    Synced,
    /// The stream cannot continue (e.g. the requested revision is compacted): re-list.
    Error,
}

/// One line of the watch stream (`GET /api/v1/watch`), newline-delimited JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchEvent {
    pub revision: u64,
    #[serde(rename = "type")]
    pub event_type: WatchEventType,
    /// Contiv's type name (`network`, `endpointGroup`, ...), or `endpoint`, `node`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Put: the object (REST JSON for model objects, [`Endpoint`], [`Node`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Put of a network or group: its allocation state ([`NetworkState`], [`GroupState`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /version`, as Contiv.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    #[serde(rename = "GitCommit")]
    pub git_commit: String,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "BuildTime")]
    pub build_time: String,
}

/// `GET /info`, Contiv's fields plus ours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Info {
    #[serde(rename = "local-ip")]
    pub local_ip: String,
    #[serde(rename = "leader-ip")]
    pub leader_ip: String,
    /// `leader` or `follower`.
    #[serde(rename = "current-state")]
    pub current_state: String,
    #[serde(rename = "netplugin-nodes")]
    pub netplugin_nodes: Vec<String>,
    #[serde(rename = "netmaster-nodes")]
    pub netmaster_nodes: Vec<String>,
    /// `embedded` or `etcd`.
    #[serde(rename = "store")]
    pub store: String,
    #[serde(rename = "revision")]
    pub revision: u64,
    /// Writes this master has taken and not finished yet. A write runs to its end even when its
    /// client hangs up; 0 means every write it accepted is in its memory and its store.
    #[serde(rename = "writesInFlight", default)]
    pub writes_in_flight: u64,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}
