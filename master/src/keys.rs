//! The store's key layout. Everything lives under one prefix so one watch sees it all.
//!
//! | key | value |
//! |---|---|
//! | `/contiv/obj/<kind>/<key>` | [`StoredObject`]: the REST config and its allocation state |
//! | `/contiv/eps/<endpointID>` | `model::agent::Endpoint` |
//! | `/contiv/nodes/<hostname>` | `model::agent::Node`, attached to the node's lease |
//! | `/contiv/alloc/<pool>/<value>` | the owner's key: a uniqueness guard checked by every allocating transaction, so that no two writers (several masters, later) can hand out one value twice |
//! | `/contiv/leader` | the leading master's `leader::LeaderRecord`, attached to its lease |
//! | `/contiv/masters/<id>` | a running master's advertised URL, attached to its lease (for `/info`) |
//! | `/contiv/tls/ca` | `tls::ClusterCa`: the cluster CA's certificate and key, made by the first master with TLS on |
//! | `/contiv/down/<hostname>` | [`DownMarker`]: the node's registration expired at that time; its endpoints are reclaimed after the grace period |

use model::Kind;
use serde::{Deserialize, Serialize};

pub const ROOT: &str = "/contiv/";
pub const OBJ: &str = "/contiv/obj/";
pub const EPS: &str = "/contiv/eps/";
pub const NODES: &str = "/contiv/nodes/";
pub const ALLOC: &str = "/contiv/alloc/";
pub const LEADER: &str = "/contiv/leader";
pub const DOWN: &str = "/contiv/down/";
pub const MASTERS: &str = "/contiv/masters/";

/// A running master's presence (its advertised URL), attached to its own lease.
pub fn master(id: &str) -> String {
    // Record ids hold '/' (they start with the URL): keep the key one level deep.
    format!("{MASTERS}{}", id.replace('/', "_"))
}

pub fn down(host: &str) -> String {
    format!("{DOWN}{host}")
}

/// What `/contiv/down/<host>` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownMarker {
    /// Unix time (seconds) the node was seen down.
    pub since: u64,
}

pub fn obj(kind: Kind, key: &str) -> String {
    format!("{OBJ}{}/{key}", kind.name())
}

pub fn ep(id: &str) -> String {
    format!("{EPS}{id}")
}

pub fn node(name: &str) -> String {
    format!("{NODES}{name}")
}

/// Pools: `vlan`, `vxlan`, `lvlan` (local VLANs of VXLAN networks), `gid` (group ids).
pub fn tag(pool: &str, value: u32) -> String {
    format!("{ALLOC}{pool}/{value}")
}

/// An address of a network (`tenant:network`).
pub fn ip(net_key: &str, addr: &str) -> String {
    format!("{ALLOC}ip/{net_key}/{addr}")
}

/// What `/contiv/obj/...` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredObject {
    pub config: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
}

/// A parsed store key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    Obj(Kind, &'a str),
    Endpoint(&'a str),
    Node(&'a str),
    Alloc,
    Unknown,
}

pub fn parse(key: &str) -> Parsed<'_> {
    if let Some(rest) = key.strip_prefix(OBJ) {
        if let Some((kind, k)) = rest.split_once('/')
            && let Some(kind) = Kind::from_name(kind)
        {
            return Parsed::Obj(kind, k);
        }
        Parsed::Unknown
    } else if let Some(id) = key.strip_prefix(EPS) {
        Parsed::Endpoint(id)
    } else if let Some(n) = key.strip_prefix(NODES) {
        Parsed::Node(n)
    } else if key.starts_with(ALLOC) {
        Parsed::Alloc
    } else {
        Parsed::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(
            parse(&obj(Kind::Network, "default:n1")),
            Parsed::Obj(Kind::Network, "default:n1")
        );
        assert_eq!(
            parse(&obj(Kind::Bgp, "host1")),
            Parsed::Obj(Kind::Bgp, "host1")
        );
        assert_eq!(parse(&ep("abc")), Parsed::Endpoint("abc"));
        assert_eq!(parse(&node("h1")), Parsed::Node("h1"));
        assert_eq!(parse(&tag("vlan", 3)), Parsed::Alloc);
        assert_eq!(parse("/contiv/obj/nope/x"), Parsed::Unknown);
    }
}
