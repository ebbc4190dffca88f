//! The shim ↔ agent protocol: how `contiv` hands a CNI call to netplugin.
//!
//! The agent listens on a unix socket ([`DEFAULT_AGENT_SOCKET`], or the network config's
//! `agentSocket`) and speaks HTTP/1.1. For each CNI call except VERSION the shim sends one
//! request on a fresh connection:
//!
//! ```text
//! POST /cni/v1/<verb>            verb: add | del | check | status | gc
//! Host: localhost
//! Content-Type: application/json
//! Content-Length: <n>
//! Connection: close
//!
//! <AgentRequest as JSON>
//! ```
//!
//! The agent answers:
//! - `200`: the body is exactly what the shim prints on stdout. ADD: the result, rendered for
//!   the config's `cniVersion` with [`crate::types::render_result`]. DEL, CHECK, STATUS, GC: an
//!   empty body. The shim exits 0.
//! - any other status: the body is a CNI error object ([`CniError::to_json`]); the shim prints it
//!   on stdout and exits 1. [`CniError::http_status`] picks the status; the shim does not care
//!   which non-2xx status it is.
//!
//! # Versioning
//!
//! [`PROTOCOL_VERSION`] is the version of this protocol (not of the CNI spec, which travels
//! inside [`AgentRequest::config`]). Every request carries it in [`AgentRequest::protocol`]. The
//! agent accepts only the versions it knows ([`check_protocol`]); anything else is refused with
//! code 999 and a message that tells the operator to install the `contiv` binary that ships with
//! the running netplugin. A change that an older agent would misread (a renamed or re-typed
//! field, a new meaning for a status) bumps the version; new optional fields do not. The agent
//! and the shim ship together, so a mismatch only happens halfway through an upgrade.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CniError;
use crate::types::{NetConf, PodIdentity, parse_cni_args};

/// The version of the shim ↔ agent protocol this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Where the agent listens when the network config has no `agentSocket`.
pub const DEFAULT_AGENT_SOCKET: &str = "/run/contiv/cni.sock";

/// The path prefix of the protocol's endpoints; a verb follows (`/cni/v1/add`).
pub const PATH_PREFIX: &str = "/cni/v1/";

/// The largest request the agent takes (the call's environment and network config, as JSON):
/// the shim refuses a larger one itself, as an invalid config, rather than send it.
pub const MAX_REQUEST_BYTES: usize = 2 << 20;

/// A CNI command (`CNI_COMMAND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    /// ADD: attach the container.
    Add,
    /// DEL: detach it; succeeds when there is nothing to delete.
    Del,
    /// CHECK: verify the attachment matches `prevResult`.
    Check,
    /// STATUS: can the plugin serve ADD now?
    Status,
    /// GC: remove attachments not listed in `cni.dev/valid-attachments`.
    Gc,
    /// VERSION: answered by the shim itself, never sent to the agent.
    Version,
}

impl Command {
    /// Every command, in the order of the spec.
    pub const ALL: [Command; 6] = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Gc,
        Command::Version,
    ];

    /// The `CNI_COMMAND` spelling: `ADD`, `DEL`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// Parses a `CNI_COMMAND` value (exact, upper case).
    pub fn parse(s: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The request path for this command (`/cni/v1/add`); `None` for VERSION.
    pub fn path(self) -> Option<&'static str> {
        Some(match self {
            Command::Add => "/cni/v1/add",
            Command::Del => "/cni/v1/del",
            Command::Check => "/cni/v1/check",
            Command::Status => "/cni/v1/status",
            Command::Gc => "/cni/v1/gc",
            Command::Version => return None,
        })
    }

    /// The command a request path is for; `None` for an unknown path.
    pub fn from_path(path: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.path() == Some(path))
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every shim → agent request: the CNI call, untouched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRequest {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol: u32,
    /// The CNI command; matches the request path.
    pub command: Command,
    /// `CNI_CONTAINERID`; empty for STATUS and GC.
    #[serde(default)]
    pub container_id: String,
    /// `CNI_NETNS`; may be empty for DEL, empty for STATUS and GC.
    #[serde(default)]
    pub netns: String,
    /// `CNI_IFNAME`; empty for STATUS and GC.
    #[serde(default)]
    pub if_name: String,
    /// `CNI_ARGS`, raw (`K=V;K=V`); see [`AgentRequest::cni_args`].
    #[serde(default)]
    pub args: String,
    /// `CNI_PATH`, raw (`:`-separated).
    #[serde(default)]
    pub path: String,
    /// The whole network config from stdin, untouched (`cniVersion`, `prevResult`,
    /// `runtimeConfig`, `cni.dev/valid-attachments`, unknown fields...).
    pub config: Value,
}

impl AgentRequest {
    /// The config's `cniVersion` ("" when absent): the version to render the result and errors
    /// in.
    pub fn cni_version(&self) -> &str {
        self.config
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The config, decoded (code 6 when it does not decode). The shim has validated it already.
    pub fn netconf(&self) -> Result<NetConf, CniError> {
        NetConf::from_value(&self.config)
    }

    /// `CNI_ARGS` as a map (code 4 when malformed).
    pub fn cni_args(&self) -> Result<std::collections::BTreeMap<String, String>, CniError> {
        parse_cni_args(&self.args)
    }

    /// The Kubernetes pod identity in `CNI_ARGS`.
    pub fn pod(&self) -> Result<PodIdentity, CniError> {
        PodIdentity::from_cni_args(&self.args)
    }
}

/// The agent's first check of a request: decodes the body and refuses a protocol version it
/// does not speak, or a `command` that does not match the path's verb (`request_path` is the
/// HTTP path, e.g. `/cni/v1/add`).
pub fn decode_request(request_path: &str, body: &[u8]) -> Result<AgentRequest, CniError> {
    // Read the protocol first, so an incompatible shim gets the protocol message rather than a
    // decode error about a field that changed.
    #[derive(Deserialize)]
    struct Probe {
        protocol: Option<u32>,
    }
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| CniError::decode(format!("decode contiv shim request: {e}")))?;
    check_protocol(probe.protocol.unwrap_or(0))?;
    let request: AgentRequest = serde_json::from_slice(body)
        .map_err(|e| CniError::decode(format!("decode contiv shim request: {e}")))?;
    if Command::from_path(request_path) != Some(request.command) {
        return Err(CniError::decode(format!(
            "contiv shim request for {} sent to {request_path}",
            request.command
        )));
    }
    Ok(request)
}

/// Refuses a shim that speaks another protocol version (code 999).
pub fn check_protocol(protocol: u32) -> Result<(), CniError> {
    if protocol == PROTOCOL_VERSION {
        return Ok(());
    }
    Err(CniError::internal(format!(
        "contiv shim speaks protocol {protocol}, netplugin speaks protocol {PROTOCOL_VERSION}"
    ))
    .with_details("install the contiv binary that ships with the running netplugin"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use serde_json::json;

    fn request() -> AgentRequest {
        AgentRequest {
            protocol: PROTOCOL_VERSION,
            command: Command::Add,
            container_id: "c1".into(),
            netns: "/var/run/netns/p1".into(),
            if_name: "eth0".into(),
            args: "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web".into(),
            path: "/opt/cni/bin".into(),
            config: json!({"cniVersion": "0.4.0", "name": "n", "type": "contiv", "x": 1}),
        }
    }

    #[test]
    fn request_uses_camel_case_names() {
        assert_eq!(
            serde_json::to_value(request()).unwrap(),
            json!({
                "protocol": 1,
                "command": "ADD",
                "containerId": "c1",
                "netns": "/var/run/netns/p1",
                "ifName": "eth0",
                "args": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web",
                "path": "/opt/cni/bin",
                "config": {"cniVersion": "0.4.0", "name": "n", "type": "contiv", "x": 1}
            })
        );
    }

    #[test]
    fn commands_map_to_paths() {
        for c in Command::ALL {
            assert_eq!(Command::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                json!(c.as_str()),
                "serde spelling of {c}"
            );
            match c.path() {
                Some(p) => {
                    assert_eq!(p, format!("{PATH_PREFIX}{}", c.as_str().to_lowercase()));
                    assert_eq!(Command::from_path(p), Some(c));
                }
                None => assert_eq!(c, Command::Version),
            }
        }
        assert_eq!(Command::parse("add"), None);
        assert_eq!(Command::from_path("/cni/v1/version"), None);
    }

    #[test]
    fn agent_side_helpers() {
        let body = serde_json::to_vec(&request()).unwrap();
        let req = decode_request("/cni/v1/add", &body).unwrap();
        assert_eq!(req, request());
        assert_eq!(req.cni_version(), "0.4.0");
        assert_eq!(req.netconf().unwrap().extra["x"], json!(1));
        assert_eq!(req.pod().unwrap().pod_key().as_deref(), Some("ns/web"));
        assert_eq!(req.cni_args().unwrap().len(), 2);

        let err = decode_request("/cni/v1/del", &body).unwrap_err();
        assert_eq!(err.code, code::DECODING_FAILURE);
        assert_eq!(err.msg, "contiv shim request for ADD sent to /cni/v1/del");

        let mut v2 = serde_json::to_value(request()).unwrap();
        v2["protocol"] = json!(2);
        v2["ifName"] = json!(["renamed in v2"]);
        let err = decode_request("/cni/v1/add", v2.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.code, code::INTERNAL);
        assert_eq!(
            err.msg,
            "contiv shim speaks protocol 2, netplugin speaks protocol 1"
        );
        let err = decode_request("/cni/v1/add", b"{}").unwrap_err();
        assert!(
            err.msg.starts_with("contiv shim speaks protocol 0"),
            "{err}"
        );
        let err = decode_request("/cni/v1/add", b"nope").unwrap_err();
        assert_eq!(err.code, code::DECODING_FAILURE);
    }
}
