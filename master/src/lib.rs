//! netmaster: Contiv's REST API over a store, with allocation and a watch stream.

pub mod alloc;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod error;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod migrate;
pub mod notices;
pub mod openapi;
pub mod ops;
pub mod state;
pub mod tls;
pub mod ui;
pub mod views;
pub mod watch;

pub use ops::{Master, MasterOptions};
