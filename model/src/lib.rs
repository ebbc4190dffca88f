//! Contiv's object model: the REST objects with Contiv's JSON names and validation rules, the
//! inspect (oper) views, the agent-facing API types, and a typed REST client.

pub mod agent;
pub mod client;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod names;
pub mod net;
pub mod objects;
pub mod oper;
#[cfg(feature = "serve")]
pub mod parse_errors;

pub use client::{
    Client, ClientError, ClientOptions, DEFAULT_NETMASTER_CA, default_ca_file, https_tls_config,
    install_default_tls_provider,
};
pub use objects::*;
