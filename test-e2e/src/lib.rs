//! The simulated cluster for end-to-end tests: a netmaster, and hosts that are network namespaces
//! each with their own ovsdb-server, ovs-vswitchd and netplugin; pods are namespaces plumbed by
//! the real `contiv` CNI binary. Every name is unique per run, everything is removed on drop
//! (even when a test panics), and leftovers of crashed runs are removed at start.
//!
//! Needs root, Open vSwitch and iproute2 (scripts/setup.sh installs them).

mod cluster;
mod cni;
pub mod docker;
pub mod forge;
mod host;
mod image;
pub mod kube_api;
pub mod modes;
mod netmaster;
mod outside;
mod pod;
mod process;
mod underlay;

pub use cluster::{Cluster, assert_dscp_46_in_tunnel, tunnels};
pub use cni::{Attachment, Chain, CniOutput, cni_call, cni_call_with};
pub use host::{GRAVEYARD_GROUP, Host};
pub use image::busybox_image_tar;
pub use netmaster::Netmaster;
pub use outside::Outside;
pub use pod::{PING_INTERVAL, PingRun, Pod, iperf3};
pub use process::{
    PREFIX, bin, cleanup_leftovers, cli_arg, in_netns, kill_processes_naming, unique, wait_for,
};
pub use underlay::Underlay;

// What the modules share, under the names they had when this was one file.
pub(crate) use process::{kill_child, kill_pidfile, must, pid_alive, run};
