//! netplugin: the Contiv node agent.
pub mod netlink;
