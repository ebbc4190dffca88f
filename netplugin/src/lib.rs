//! netplugin: the Contiv node agent.
//!
//! A pod's ADD goes: `cni_server` (the CNI call) -> `manager` (lock, netmaster, undo) ->
//! `attach` (the attachment mode: veth, pooled port or trunk) -> `kernel` (links, addresses,
//! routes in the pod's namespace) and `switch` (the OVS port and the endpoint's flows,
//! implemented by `datapath`). docs/architecture.md.
pub mod attach;
pub mod cluster;
pub mod cni_server;
pub mod credential;
pub mod datapath;
pub mod docker;
pub mod fabric;
pub mod k8s;
pub mod kernel;
pub mod manager;
pub mod metrics;
pub mod names;
pub mod netlink;
pub mod netpol;
pub mod northsouth;
pub mod policy;
pub mod steps;
pub mod supervise;
pub mod switch;
#[cfg(test)]
pub mod testing;
pub mod underlay;
