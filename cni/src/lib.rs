//! Contiv's CNI plugin and CNI types.
//!
//! - [`types`]: the CNI network config, result (rendered per spec version), `CNI_ARGS` and
//!   error object, for netplugin's CNI server.
//! - [`wire`]: the shim ↔ agent protocol, shared by the `contiv` binary and netplugin.
//! - [`shim`]: the `contiv` binary's logic, a synchronous forwarder to the agent's socket; with
//!   [`env`](mod@env) (the `CNI_*` variables) and [`client`] (a tiny HTTP/1.1 client over a unix socket).

pub mod client;
pub mod env;
pub mod error;
pub mod shim;
pub mod types;
pub mod version;
pub mod wire;

pub use error::CniError;
