//! Open vSwitch control, independent of any particular network plugin.
//!
//! - [`Client`]: an async OVSDB client (RFC 7047) over ovsdb-server's unix socket, with
//!   transactions, monitors, keepalive and reconnection.
//! - [`Datum`], [`Row`], [`Operation`]: the OVSDB data encoding and typed operations.
//! - [`Vswitch`]: idempotent helpers over the `Open_vSwitch` database (bridges, ports,
//!   interfaces, ofport assignment).
//! - [`FlowProgrammer`]: OpenFlow flow programming: [`OfProgrammer`] over a persistent
//!   OpenFlow 1.4 connection, or [`OfctlProgrammer`] through `ovs-ofctl`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ovs::{BridgeSpec, Client, FailMode, PortSpec, Vswitch};
//! let vs = Vswitch::new(Client::connect("/var/run/openvswitch/db.sock").await?);
//! vs.ensure_bridge(
//!     &BridgeSpec::new("br0")
//!         .datapath_type("netdev")
//!         .protocols(&["OpenFlow13", "OpenFlow14"])
//!         .fail_mode(FailMode::Secure),
//! )
//! .await?;
//! vs.add_port("br0", &PortSpec::new("veth1").external_id("owner", "me")).await?;
//! let ofport = vs.wait_ofport("veth1", std::time::Duration::from_secs(5)).await?;
//! # let _ = ofport;
//! # Ok(())
//! # }
//! ```

mod client;
mod datum;
mod error;
pub mod flows;
mod jsonrpc;
mod monitor;
mod ofconn;
mod ofwire;
mod ops;
pub mod testing;
mod vswitch;

pub use client::{Client, ClientOptions, ConnectionState};
pub use datum::{Atom, Datum, DecodeError, Row};
pub use error::{FlowError, OvsdbError};
pub use flows::{
    CookieMask, Flow, FlowMatch, FlowProgrammer, FlowStats, MeterConfig, OfctlProgrammer,
};
pub use monitor::{Monitor, MonitorEvent, MonitorRequest, RowUpdate, TableUpdates};
pub use ofconn::OfProgrammer;
pub use ops::{
    Condition, Function, Mutation, Mutator, Operation, OperationResult, WaitUntil, transact_params,
};
pub use uuid::Uuid;
pub use vswitch::{BridgeSpec, Change, DB, FailMode, PortInfo, PortSpec, Vswitch};

/// The decoders of what ovsdb-server and the switch send, for the fuzz targets (crate `fuzz`):
/// the same functions the client and the OpenFlow programmer run on every message.
#[doc(hidden)]
pub mod decode {
    pub use crate::jsonrpc::{FrameDecoder, FrameError, Incoming};
    pub use crate::ofwire::{
        Header as OfHeader, Incoming as OfIncoming, classify as classify_openflow,
    };
    pub use crate::ops::{TransactFailure, parse_transact_reply};
}
