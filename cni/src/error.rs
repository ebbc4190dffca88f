//! The CNI error object (`{"cniVersion", "code", "msg", "details"}`) and the spec's error codes.

use serde::{Deserialize, Serialize};

use crate::version::{CURRENT_VERSION, SUPPORTED_VERSIONS};

/// The spec's well-known error codes (CNI spec, "Error" section). Codes 100 and up are free for
/// plugins; 999 is libcni's "internal error".
pub mod code {
    /// The config's `cniVersion` is not supported, or the verb does not exist in that version.
    pub const INCOMPATIBLE_CNI_VERSION: u32 = 1;
    /// A config field is not supported (the field name is in `msg`).
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container is unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// A `CNI_*` environment variable is missing or invalid.
    pub const INVALID_ENVIRONMENT_VARIABLES: u32 = 4;
    /// I/O failure, e.g. reading stdin.
    pub const IO_FAILURE: u32 = 5;
    /// The network config or another input could not be decoded.
    pub const DECODING_FAILURE: u32 = 6;
    /// The network config is well-formed but invalid.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// A transient condition: the runtime should retry later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADD now.
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// STATUS: the plugin can serve ADD, with limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// An unexpected failure (libcni's `ErrInternal`).
    pub const INTERNAL: u32 = 999;
}

/// A CNI error. The plugin prints it on stdout as JSON (see [`CniError::to_json`]) and exits 1.
///
/// Deserializing accepts the object as printed (its `cniVersion` is ignored: the printer sets it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    /// One of [`code`], or a plugin-specific code (100 and up).
    pub code: u32,
    /// What went wrong: lowercase, names the object, no trailing period.
    pub msg: String,
    /// What to do about it, or more context. May be empty.
    #[serde(default)]
    pub details: String,
}

impl CniError {
    /// An error with any code.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Code 1. The details list the supported versions.
    pub fn incompatible_version(msg: impl Into<String>) -> CniError {
        CniError::new(
            code::INCOMPATIBLE_CNI_VERSION,
            msg,
            format!(
                "this plugin supports cniVersion {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        )
    }

    /// Code 2, naming the field.
    pub fn unsupported_field(field: &str, details: impl Into<String>) -> CniError {
        CniError::new(
            code::UNSUPPORTED_FIELD,
            format!("unsupported field {field:?}"),
            details,
        )
    }

    /// Code 3.
    pub fn unknown_container(msg: impl Into<String>) -> CniError {
        CniError::new(code::UNKNOWN_CONTAINER, msg, "")
    }

    /// Code 4.
    pub fn invalid_env(msg: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_ENVIRONMENT_VARIABLES, msg, "")
    }

    /// Code 5.
    pub fn io(msg: impl Into<String>) -> CniError {
        CniError::new(code::IO_FAILURE, msg, "")
    }

    /// Code 6.
    pub fn decode(msg: impl Into<String>) -> CniError {
        CniError::new(code::DECODING_FAILURE, msg, "")
    }

    /// Code 7.
    pub fn invalid_config(msg: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_NETWORK_CONFIG, msg, "")
    }

    /// Code 11: the runtime retries.
    pub fn try_again_later(msg: impl Into<String>) -> CniError {
        CniError::new(code::TRY_AGAIN_LATER, msg, "")
    }

    /// Code 50 (STATUS).
    pub fn plugin_not_available(msg: impl Into<String>) -> CniError {
        CniError::new(code::PLUGIN_NOT_AVAILABLE, msg, "")
    }

    /// Code 51 (STATUS).
    pub fn limited_connectivity(msg: impl Into<String>) -> CniError {
        CniError::new(code::LIMITED_CONNECTIVITY, msg, "")
    }

    /// Code 999.
    pub fn internal(msg: impl Into<String>) -> CniError {
        CniError::new(code::INTERNAL, msg, "")
    }

    /// The same error with `details` replaced.
    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The HTTP status the agent answers this error with on the shim socket (the shim only looks
    /// at the class: any non-2xx status carries an error object).
    pub fn http_status(&self) -> u16 {
        match self.code {
            code::INCOMPATIBLE_CNI_VERSION
            | code::UNSUPPORTED_FIELD
            | code::INVALID_ENVIRONMENT_VARIABLES
            | code::DECODING_FAILURE
            | code::INVALID_NETWORK_CONFIG => 400,
            code::UNKNOWN_CONTAINER => 404,
            code::TRY_AGAIN_LATER | code::PLUGIN_NOT_AVAILABLE | code::LIMITED_CONNECTIVITY => 503,
            _ => 500,
        }
    }

    /// The error object as the plugin prints it, with `cniVersion` set to `cni_version` (the
    /// config's version; [`CURRENT_VERSION`] when it is empty). `details` is omitted when empty.
    pub fn to_json(&self, cni_version: &str) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Printed<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let printed = Printed {
            cni_version: if cni_version.is_empty() {
                CURRENT_VERSION
            } else {
                cni_version
            },
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        // Serializing a struct of strings and integers cannot fail.
        let mut out = serde_json::to_vec_pretty(&printed).expect("serialize CNI error");
        out.push(b'\n');
        out
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(bytes: Vec<u8>) -> serde_json::Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn prints_the_spec_error_object() {
        let err = CniError::try_again_later("cannot reach the netplugin agent at /x: refused")
            .with_details("is netplugin running?");
        assert_eq!(
            parsed(err.to_json("0.4.0")),
            json!({
                "cniVersion": "0.4.0",
                "code": 11,
                "msg": "cannot reach the netplugin agent at /x: refused",
                "details": "is netplugin running?"
            })
        );
        assert_eq!(
            parsed(CniError::decode("bad").to_json("")),
            json!({"cniVersion": "1.1.0", "code": 6, "msg": "bad"})
        );
    }

    #[test]
    fn constructors_use_the_spec_codes() {
        assert_eq!(CniError::incompatible_version("x").code, 1);
        assert_eq!(CniError::unsupported_field("f", "").code, 2);
        assert_eq!(CniError::unknown_container("x").code, 3);
        assert_eq!(CniError::invalid_env("x").code, 4);
        assert_eq!(CniError::io("x").code, 5);
        assert_eq!(CniError::decode("x").code, 6);
        assert_eq!(CniError::invalid_config("x").code, 7);
        assert_eq!(CniError::try_again_later("x").code, 11);
        assert_eq!(CniError::plugin_not_available("x").code, 50);
        assert_eq!(CniError::limited_connectivity("x").code, 51);
        assert_eq!(CniError::internal("x").code, 999);
        assert_eq!(CniError::invalid_config("x").http_status(), 400);
        assert_eq!(CniError::try_again_later("x").http_status(), 503);
        assert_eq!(CniError::internal("x").http_status(), 500);
    }

    #[test]
    fn parses_a_printed_error() {
        let err = CniError::invalid_config("unknown tenant \"blue\"").with_details("create it");
        let back: CniError = serde_json::from_slice(&err.to_json("1.0.0")).unwrap();
        assert_eq!(back, err);
        let no_details: CniError = serde_json::from_str(r#"{"code":7,"msg":"m"}"#).unwrap();
        assert_eq!(no_details, CniError::invalid_config("m"));
        assert_eq!(err.to_string(), "unknown tenant \"blue\" (create it)");
    }
}
