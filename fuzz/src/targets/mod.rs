//! The targets, by the crate whose parsers they exercise.

pub mod cni;
pub mod docker;
pub mod master;
pub mod ovs;
