//! The CNI types netplugin needs: the network config ([`NetConf`]), the result ([`Result11`]) and
//! its rendering for each supported spec version ([`render_result`]), `CNI_ARGS`
//! ([`parse_cni_args`], [`PodIdentity`]) and the error object ([`CniError`]).
//!
//! Wire types only: serde names follow the CNI spec's spelling. Convert into the agent's own
//! types at the edge.

mod args;
mod netconf;
mod result;

pub use args::{PodIdentity, parse_cni_args};
pub use netconf::{
    Attachment, DEFAULT_TIMEOUT_SECONDS, MAX_MTU, MAX_TIMEOUT_SECONDS, MIN_MTU, NetConf,
    RuntimeConfig, validate_network_name,
};
pub use result::{Dns, Interface, IpConfig, Result11, Route, parse_result, render_result};

pub use crate::error::{CniError, code};
pub use crate::version::{CURRENT_VERSION, SUPPORTED_VERSIONS};

/// A serde error as a code-6 CniError naming the field when there is one:
/// `decode <what>: field ips[0].address: invalid IP address syntax`.
fn decode_error<E: std::fmt::Display>(what: &str, e: serde_path_to_error::Error<E>) -> CniError {
    let path = e.path().to_string();
    if path.is_empty() || path == "." || path.contains('?') {
        CniError::decode(format!("decode {what}: {}", e.inner()))
    } else {
        CniError::decode(format!("decode {what}: field {path}: {}", e.inner()))
    }
}
