//! netplugin: the Contiv node agent.
pub mod datapath;
pub mod manager;
pub mod netlink;
