//! The network config the runtime passes on stdin, with Contiv's fields.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::decode_error;
use super::result::{Dns, Result11, parse_result_value};
use crate::error::CniError;
use crate::version;
use crate::wire::DEFAULT_AGENT_SOCKET;

/// The agent call timeout when the config has no `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
/// The largest `timeoutSeconds` accepted. Kubelet gives a CNI call a few minutes at most.
pub const MAX_TIMEOUT_SECONDS: u64 = 300;
/// The smallest `mtu` accepted (IPv4's minimum link MTU).
pub const MIN_MTU: u32 = 68;
/// The largest `mtu` accepted.
pub const MAX_MTU: u32 = 65535;

/// A network config as the plugin receives it on stdin (the config list's `cniVersion` and
/// `name` are copied in by the runtime). Unknown fields are kept in [`NetConf::extra`] and
/// written back out, so a decode and encode round trip loses nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// The spec version of this config, and of the result the runtime expects.
    #[serde(default)]
    pub cni_version: String,
    /// The network name (the config list's `name`).
    #[serde(default)]
    pub name: String,
    /// The plugin binary's name: `contiv`.
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// Contiv tenant for pods on this network, when the pod's labels do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Contiv network within the tenant, when the pod's labels do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Contiv endpoint group, when the pod's labels do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The agent's CNI socket; [`DEFAULT_AGENT_SOCKET`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_socket: Option<PathBuf>,
    /// MTU of the pod interface; the network's MTU when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// File the shim appends one line per call to. No log when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
    /// Bound on one agent call (connect and whole request), in seconds;
    /// [`DEFAULT_TIMEOUT_SECONDS`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// The spec's `dns` field: DNS settings for the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// CHECK and DEL (and chained ADD): the result of the previous ADD, in the config's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_result: Option<Value>,
    /// Capability arguments from the runtime (`ips`, `mac`, `portMappings`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<RuntimeConfig>,
    /// GC: the attachments that are still in use; the agent removes every other one.
    #[serde(
        rename = "cni.dev/valid-attachments",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The spec's `args` field (conventions such as `args.cni.ips`), kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// Every other field, kept as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `runtimeConfig` object: the capabilities Contiv may use, the rest kept as JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// The `ips` capability: requested addresses in CIDR form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,
    /// The `mac` capability: the requested MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Every other capability, kept as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attachment {
    /// The container id of a live attachment.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Its interface name.
    #[serde(rename = "ifname")]
    pub ifname: String,
}

impl NetConf {
    /// Decodes a network config. Malformed JSON or a field of the wrong type is an error with
    /// code 6 (decoding failure) that names the field. Does not validate: see
    /// [`NetConf::validate`].
    pub fn from_slice(bytes: &[u8]) -> Result<NetConf, CniError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(|e| decode_error("network config", e))
    }

    /// Decodes a network config from JSON already parsed (the agent gets it inside
    /// [`crate::wire::AgentRequest::config`]).
    pub fn from_value(value: &Value) -> Result<NetConf, CniError> {
        serde_path_to_error::deserialize(value).map_err(|e| decode_error("network config", e))
    }

    /// Checks what the shim and the agent both rely on: a supported `cniVersion` (code 1), then a
    /// valid `name` and `type`, an absolute `agentSocket`, a sane `timeoutSeconds` and `mtu`, and
    /// non-empty `tenant`/`network`/`group` when present (code 7).
    pub fn validate(&self) -> Result<(), CniError> {
        version::check_supported(&self.cni_version)?;
        if self.name.is_empty() {
            return Err(CniError::invalid_config("missing network name")
                .with_details("set the \"name\" field of the network config"));
        }
        validate_network_name(&self.name)?;
        if self.plugin_type.is_empty() {
            return Err(CniError::invalid_config("missing plugin type")
                .with_details("set \"type\": \"contiv\" in the network config"));
        }
        if let Some(socket) = &self.agent_socket
            && !socket.is_absolute()
        {
            return Err(CniError::invalid_config(format!(
                "agentSocket {socket:?} is not an absolute path"
            ))
            .with_details(format!("the default is {DEFAULT_AGENT_SOCKET}")));
        }
        if let Some(t) = self.timeout_seconds
            && !(1..=MAX_TIMEOUT_SECONDS).contains(&t)
        {
            return Err(CniError::invalid_config(format!(
                "timeoutSeconds {t} is out of range 1-{MAX_TIMEOUT_SECONDS}"
            )));
        }
        if let Some(mtu) = self.mtu
            && !(MIN_MTU..=MAX_MTU).contains(&mtu)
        {
            return Err(CniError::invalid_config(format!(
                "mtu {mtu} is out of range {MIN_MTU}-{MAX_MTU}"
            )));
        }
        for (field, value) in [
            ("tenant", &self.tenant),
            ("network", &self.network),
            ("group", &self.group),
        ] {
            if value.as_deref() == Some("") {
                return Err(CniError::invalid_config(format!("{field} is empty"))
                    .with_details(format!("omit the {field:?} field to use the default")));
            }
        }
        Ok(())
    }

    /// The agent's socket path: `agentSocket`, or [`DEFAULT_AGENT_SOCKET`].
    pub fn agent_socket(&self) -> &Path {
        self.agent_socket
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_AGENT_SOCKET))
    }

    /// The bound on one agent call: `timeoutSeconds`, or [`DEFAULT_TIMEOUT_SECONDS`].
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    /// The decoded `prevResult`, if any (accepts every supported version's shape). A malformed
    /// one is an error with code 6.
    pub fn parsed_prev_result(&self) -> Option<Result<Result11, CniError>> {
        self.prev_result.as_ref().map(|v| {
            parse_result_value(v).map_err(|mut e| {
                e.msg = e.msg.replacen("decode CNI result", "decode prevResult", 1);
                e
            })
        })
    }
}

/// Checks a network name as libcni does: a letter or digit, then letters, digits, `_`, `.` or
/// `-`. Error code 7.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err(CniError::invalid_config(format!(
            "invalid characters in network name {name:?}"
        ))
        .with_details(
            "a network name starts with a letter or digit and has only letters, digits, '_', '.' and '-'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use serde_json::json;

    fn full_config() -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": "contiv-net",
            "type": "contiv",
            "tenant": "blue",
            "network": "web",
            "group": "frontend",
            "agentSocket": "/run/contiv/cni.sock",
            "mtu": 1450,
            "logFile": "/var/log/contiv/cni.log",
            "timeoutSeconds": 20,
            "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
            "prevResult": {
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "mac": "02:02:0a:01:01:02", "sandbox": "/var/run/netns/p"}],
                "ips": [{"address": "10.1.1.2/24", "gateway": "10.1.1.1", "interface": 0}]
            },
            "runtimeConfig": {"mac": "02:00:00:00:00:01", "portMappings": [{"hostPort": 8080}]},
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
            "args": {"cni": {"ips": ["10.1.1.9"]}},
            "capabilities": {"mac": true},
            "someVendorField": [1, 2, 3]
        })
    }

    #[test]
    fn decodes_every_field_and_keeps_unknown_ones() {
        let raw = full_config();
        let conf = NetConf::from_slice(raw.to_string().as_bytes()).unwrap();
        conf.validate().unwrap();
        assert_eq!(conf.cni_version, "1.1.0");
        assert_eq!(conf.plugin_type, "contiv");
        assert_eq!(conf.tenant.as_deref(), Some("blue"));
        assert_eq!(conf.network.as_deref(), Some("web"));
        assert_eq!(conf.group.as_deref(), Some("frontend"));
        assert_eq!(conf.mtu, Some(1450));
        assert_eq!(conf.timeout(), Duration::from_secs(20));
        assert_eq!(conf.agent_socket(), Path::new("/run/contiv/cni.sock"));
        assert_eq!(
            conf.valid_attachments,
            Some(vec![Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }])
        );
        let rc = conf.runtime_config.as_ref().unwrap();
        assert_eq!(rc.mac.as_deref(), Some("02:00:00:00:00:01"));
        assert!(rc.extra.contains_key("portMappings"));
        assert_eq!(conf.extra.len(), 2, "{:?}", conf.extra);
        let prev = conf.parsed_prev_result().unwrap().unwrap();
        assert_eq!(prev.ips[0].address.to_string(), "10.1.1.2/24");
        // Round trip: nothing lost.
        assert_eq!(serde_json::to_value(&conf).unwrap(), raw);
        assert_eq!(NetConf::from_value(&raw).unwrap(), conf);
    }

    #[test]
    fn defaults_apply_to_a_minimal_config() {
        let conf =
            NetConf::from_slice(br#"{"cniVersion":"0.3.1","name":"n","type":"contiv"}"#).unwrap();
        conf.validate().unwrap();
        assert_eq!(conf.agent_socket(), Path::new("/run/contiv/cni.sock"));
        assert_eq!(conf.timeout(), Duration::from_secs(DEFAULT_TIMEOUT_SECONDS));
        assert!(conf.parsed_prev_result().is_none());
    }

    #[test]
    fn decode_errors_name_the_field() {
        let err =
            NetConf::from_slice(br#"{"cniVersion":"1.0.0","name":"n","mtu":"big"}"#).unwrap_err();
        assert_eq!(err.code, code::DECODING_FAILURE);
        assert!(
            err.msg
                .starts_with("decode network config: field mtu: invalid type"),
            "{err}"
        );
        let err = NetConf::from_slice(b"{not json").unwrap_err();
        assert_eq!(err.code, code::DECODING_FAILURE);
        assert!(
            err.msg
                .starts_with("decode network config: key must be a string"),
            "{err}"
        );
        let err = NetConf::from_slice(b"[1]").unwrap_err();
        assert_eq!(err.code, code::DECODING_FAILURE);
    }

    #[test]
    fn validation_errors_use_the_spec_codes() {
        let base = || NetConf {
            cni_version: "1.0.0".into(),
            name: "net".into(),
            plugin_type: "contiv".into(),
            ..NetConf::default()
        };
        base().validate().unwrap();
        let cases: Vec<(NetConf, u32, &str)> = vec![
            (
                NetConf {
                    cni_version: "0.2.0".into(),
                    ..base()
                },
                1,
                "incompatible CNI version \"0.2.0\"",
            ),
            (
                NetConf {
                    cni_version: String::new(),
                    ..base()
                },
                1,
                "incompatible CNI version: the network config has no cniVersion",
            ),
            (
                NetConf {
                    name: String::new(),
                    ..base()
                },
                7,
                "missing network name",
            ),
            (
                NetConf {
                    name: "-net".into(),
                    ..base()
                },
                7,
                "invalid characters in network name \"-net\"",
            ),
            (
                NetConf {
                    name: "a/b".into(),
                    ..base()
                },
                7,
                "invalid characters in network name \"a/b\"",
            ),
            (
                NetConf {
                    plugin_type: String::new(),
                    ..base()
                },
                7,
                "missing plugin type",
            ),
            (
                NetConf {
                    agent_socket: Some("cni.sock".into()),
                    ..base()
                },
                7,
                "agentSocket \"cni.sock\" is not an absolute path",
            ),
            (
                NetConf {
                    timeout_seconds: Some(0),
                    ..base()
                },
                7,
                "timeoutSeconds 0 is out of range 1-300",
            ),
            (
                NetConf {
                    mtu: Some(20),
                    ..base()
                },
                7,
                "mtu 20 is out of range 68-65535",
            ),
            (
                NetConf {
                    tenant: Some(String::new()),
                    ..base()
                },
                7,
                "tenant is empty",
            ),
        ];
        for (conf, want_code, want_msg) in cases {
            let err = conf.validate().unwrap_err();
            assert_eq!((err.code, err.msg.as_str()), (want_code, want_msg));
        }
    }

    #[test]
    fn network_names_follow_libcni() {
        for ok in ["a", "contiv-net", "net_1.2", "9lives"] {
            validate_network_name(ok).unwrap();
        }
        for bad in ["", "_a", ".a", "a b", "a:b", "ä"] {
            assert!(validate_network_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_prev_result_is_a_decode_error() {
        let conf = NetConf {
            prev_result: Some(json!({"ips": [{"address": "10.1.1.2"}]})),
            ..NetConf::default()
        };
        let err = conf.parsed_prev_result().unwrap().unwrap_err();
        assert_eq!(err.code, code::DECODING_FAILURE);
        assert!(
            err.msg
                .starts_with("decode prevResult: field ips[0].address"),
            "{err}"
        );
    }
}
