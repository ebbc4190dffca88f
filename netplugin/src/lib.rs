//! netplugin: the Contiv node agent.
pub mod cluster;
pub mod cni_server;
pub mod datapath;
pub mod docker;
pub mod fabric;
pub mod k8s;
pub mod manager;
pub mod netlink;
pub mod policy;
pub mod pool;
pub mod steps;
pub mod trunk;
pub mod underlay;
