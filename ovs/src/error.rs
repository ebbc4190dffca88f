//! Errors of the OVSDB client and of the Open_vSwitch helpers.

use crate::datum::DecodeError;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum OvsdbError {
    #[error("connect to ovsdb-server at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The socket dropped while the request was in flight. For a `transact` the outcome is
    /// unknown: it may have been committed.
    #[error(
        "{method}: connection to ovsdb-server at {path} lost before the reply (the request may or may not have been applied)"
    )]
    ConnectionLost { path: PathBuf, method: String },

    #[error("{method}: no reply from ovsdb-server at {path} within {timeout:?}")]
    Timeout {
        path: PathBuf,
        method: String,
        timeout: Duration,
    },

    /// The client's connection task has stopped (reconnection disabled and the socket closed).
    #[error("{method}: client for ovsdb-server at {path} is closed")]
    Closed { path: PathBuf, method: String },

    /// The server answered the JSON-RPC request with an error (unknown database, bad syntax).
    #[error("{method} rejected by ovsdb-server: {error}")]
    Rpc { method: String, error: String },

    /// One operation of a transaction failed; the transaction was rolled back.
    #[error("operation {index} ({op}) failed: {error}{}", details_suffix(.details))]
    Operation {
        index: usize,
        op: String,
        error: String,
        details: Option<String>,
    },

    /// Every operation succeeded but the commit failed; the transaction was rolled back.
    #[error("transaction commit failed: {error}{}", details_suffix(.details))]
    Commit {
        error: String,
        details: Option<String>,
    },

    #[error("malformed {what} from ovsdb-server: {source}")]
    Decode {
        what: &'static str,
        source: DecodeError,
    },

    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },

    #[error("port {port} is on bridge {actual}, not on bridge {expected}")]
    PortOnOtherBridge {
        port: String,
        expected: String,
        actual: String,
    },

    /// ovs-vswitchd could not set the interface up; the text is its `error` column.
    #[error("interface {iface}: {error}")]
    Interface { iface: String, error: String },

    /// Another interface holds or requests the OpenFlow port number asked for.
    #[error("interface {iface}: OpenFlow port {ofport} is taken by another interface")]
    OfportTaken { iface: String, ofport: u32 },

    #[error("interface {iface}: no ofport assigned within {timeout:?} (is ovs-vswitchd running?)")]
    OfportTimeout { iface: String, timeout: Duration },

    /// The data in the database is not what the Open_vSwitch schema promises, or a concurrent
    /// writer kept changing it under us.
    #[error("{0}")]
    Inconsistent(String),

    /// An operation that failed, with what we were doing: "add port p1 to bridge br0: ...".
    #[error("{action}: {cause}")]
    Context {
        action: String,
        cause: Box<OvsdbError>,
    },
}

fn details_suffix(details: &Option<String>) -> String {
    match details {
        Some(d) if !d.is_empty() => format!(": {d}"),
        _ => String::new(),
    }
}

impl OvsdbError {
    /// The error without its [`OvsdbError::Context`] layers.
    pub fn root(&self) -> &OvsdbError {
        match self {
            OvsdbError::Context { cause, .. } => cause.root(),
            other => other,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self.root(), OvsdbError::NotFound { .. })
    }

    /// True when the request may not have reached the server, or its reply was lost: retrying
    /// an idempotent request is the right reaction.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.root(),
            OvsdbError::ConnectionLost { .. } | OvsdbError::Timeout { .. }
        )
    }

    /// True when ovsdb-server could not be reached or answered nothing (it is restarting, or
    /// not started yet): a caller's caller should try again later, not give up.
    pub fn is_unavailable(&self) -> bool {
        self.is_transient()
            || matches!(
                self.root(),
                OvsdbError::Connect { .. } | OvsdbError::Closed { .. }
            )
    }
}

/// Adds "what we were doing" to an error, in the `verb object: cause` style.
pub(crate) trait Context<T> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, OvsdbError>;
}

impl<T> Context<T> for Result<T, OvsdbError> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, OvsdbError> {
        self.map_err(|cause| OvsdbError::Context {
            action: action(),
            cause: Box::new(cause),
        })
    }
}

impl FlowError {
    /// True when the switch could not be reached or did not answer in time (ovs-vswitchd
    /// restarting): trying again later may work. A refused flow is not transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FlowError::Connect { .. } | FlowError::Timeout { .. } | FlowError::NotReady { .. }
        )
    }
}

/// Errors of [`crate::flows`]: each names the bridge, the action and the command that failed.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{action} on bridge {bridge}: run {command}: {source}")]
    Spawn {
        action: String,
        bridge: String,
        command: String,
        source: std::io::Error,
    },

    #[error("{action} on bridge {bridge}: {command} failed ({status}): {stderr}")]
    Command {
        action: String,
        bridge: String,
        command: String,
        status: String,
        stderr: String,
    },

    #[error("{action} on bridge {bridge}: {command} did not finish within {timeout:?}")]
    Timeout {
        action: String,
        bridge: String,
        command: String,
        timeout: Duration,
    },

    #[error(
        "{action} on bridge {bridge}: connect to {}: {source}",
        socket.display()
    )]
    Connect {
        action: String,
        bridge: String,
        socket: PathBuf,
        source: std::io::Error,
    },

    /// The switch does not speak what we need (OpenFlow 1.4 for bundles).
    #[error("{action} on bridge {bridge}: {reason}")]
    Protocol {
        action: String,
        bridge: String,
        reason: String,
    },

    /// The switch refused a message: its OpenFlow errors by name, with the flow each concerns.
    #[error("{action} on bridge {bridge}: {step}: {errors}")]
    Refused {
        action: String,
        bridge: String,
        step: String,
        errors: String,
    },

    #[error("{action} on bridge {bridge}: invalid flow: {reason}")]
    InvalidFlow {
        action: String,
        bridge: String,
        reason: String,
    },

    #[error(
        "wait for bridge {bridge}: management socket {} did not appear within {timeout:?} (is ovs-vswitchd running?)",
        socket.display()
    )]
    NotReady {
        bridge: String,
        socket: PathBuf,
        timeout: Duration,
    },

    #[error("dump flows on bridge {bridge}: cannot parse {line:?}: {reason}")]
    Parse {
        bridge: String,
        line: String,
        reason: String,
    },
}
