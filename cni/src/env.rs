//! The `CNI_*` environment variables of one call, read and checked as libcni's skel does.

use std::ffi::OsString;

use crate::error::CniError;
use crate::types::parse_cni_args;
use crate::wire::Command;

/// Linux's limit on an interface name, in bytes (`IFNAMSIZ` minus the terminating NUL).
pub const MAX_IFNAME_LEN: usize = 15;

/// The `CNI_*` variables of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (required for ADD, DEL, CHECK).
    pub container_id: String,
    /// `CNI_NETNS` (required for ADD, CHECK).
    pub netns: String,
    /// `CNI_IFNAME` (required for ADD, DEL, CHECK).
    pub ifname: String,
    /// `CNI_ARGS`, raw.
    pub args: String,
    /// `CNI_PATH`, raw.
    pub path: String,
}

impl Invocation {
    /// Reads the variables through `getenv` and checks them: `CNI_COMMAND` present and known,
    /// the variables the command needs present, the container id and interface name well
    /// formed, `CNI_ARGS` well formed. Every failure is code 4 (invalid environment variables).
    /// `CNI_PATH` is not required: the agent does not exec other plugins.
    pub fn from_env(getenv: &dyn Fn(&str) -> Option<OsString>) -> Result<Invocation, CniError> {
        let get = |name: &str| -> Result<String, CniError> {
            match getenv(name) {
                None => Ok(String::new()),
                Some(v) => v.into_string().map_err(|v| {
                    CniError::invalid_env(format!("{name} is not valid UTF-8: {v:?}"))
                }),
            }
        };
        let raw = get("CNI_COMMAND")?;
        if raw.is_empty() {
            return Err(
                CniError::invalid_env("required env variables [CNI_COMMAND] missing").with_details(
                    "contiv is a CNI plugin, run by a container runtime with CNI_COMMAND set \
                     to ADD, DEL, CHECK, STATUS, GC or VERSION",
                ),
            );
        }
        let command = Command::parse(&raw).ok_or_else(|| {
            CniError::invalid_env(format!("unknown CNI_COMMAND {raw:?}"))
                .with_details("CNI_COMMAND is one of ADD, DEL, CHECK, STATUS, GC, VERSION")
        })?;
        let inv = Invocation {
            command,
            container_id: get("CNI_CONTAINERID")?,
            netns: get("CNI_NETNS")?,
            ifname: get("CNI_IFNAME")?,
            args: get("CNI_ARGS")?,
            path: get("CNI_PATH")?,
        };
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let needs_netns = matches!(command, Command::Add | Command::Check);
        let missing: Vec<&str> = [
            (
                "CNI_CONTAINERID",
                per_container && inv.container_id.is_empty(),
            ),
            ("CNI_NETNS", needs_netns && inv.netns.is_empty()),
            ("CNI_IFNAME", per_container && inv.ifname.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, is_missing)| is_missing.then_some(name))
        .collect();
        if !missing.is_empty() {
            return Err(CniError::invalid_env(format!(
                "required env variables [{}] missing for {command}",
                missing.join(", ")
            )));
        }
        if per_container {
            validate_container_id(&inv.container_id)?;
            validate_ifname(&inv.ifname)?;
        }
        parse_cni_args(&inv.args)?;
        Ok(inv)
    }
}

/// Checks a container id as libcni does: a letter or digit, then letters, digits, `_`, `.`,
/// `-`. Code 4.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Ok(());
    }
    Err(
        CniError::invalid_env(format!("invalid characters in CNI_CONTAINERID {id:?}"))
            .with_details(
                "a container id starts with a letter or digit and has only letters, digits, '_', '.' and '-'",
            ),
    )
}

/// Checks an interface name as the kernel (`dev_valid_name`) and libcni do: 1 to 15 bytes,
/// not `.` or `..`, no `/`, `:`, NUL or whitespace. The kernel tests each byte with its own
/// `isspace`, which takes byte 0xa0 (Latin-1's no-break space) for one: so a name with `à`
/// (UTF-8 c3 a0) is refused too. Code 4.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    match ifname_problem(name) {
        None => Ok(()),
        Some(problem) => Err(CniError::invalid_env(format!(
            "interface name CNI_IFNAME {name:?} {problem}"
        ))),
    }
}

/// What the kernel would refuse in interface name `name`, or None (see [`validate_ifname`]).
pub fn ifname_problem(name: &str) -> Option<&'static str> {
    Some(if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_IFNAME_LEN {
        "is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "is . or .."
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
        || name.bytes().any(|b| matches!(b, b' ' | b'\t'..=b'\r'))
    {
        "contains '/', ':', NUL or whitespace"
    } else if name.bytes().any(|b| b == 0xa0) {
        "contains byte 0xa0 (as in 'à' in UTF-8), which the kernel takes for a space"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Invocation, CniError> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Invocation::from_env(&|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/p"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAME=a"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    #[test]
    fn reads_a_complete_add() {
        let inv = env(ADD).unwrap();
        assert_eq!(
            inv,
            Invocation {
                command: Command::Add,
                container_id: "abc123".into(),
                netns: "/var/run/netns/p".into(),
                ifname: "eth0".into(),
                args: "K8S_POD_NAME=a".into(),
                path: "/opt/cni/bin".into(),
            }
        );
    }

    #[test]
    fn lists_the_missing_variables() {
        let err = env(&[("CNI_COMMAND", "ADD")]).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENVIRONMENT_VARIABLES);
        assert_eq!(
            err.msg,
            "required env variables [CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME] missing for ADD"
        );
        let err = env(&[("CNI_COMMAND", "DEL")]).unwrap_err();
        assert_eq!(
            err.msg,
            "required env variables [CNI_CONTAINERID, CNI_IFNAME] missing for DEL"
        );
        let err = env(&[]).unwrap_err();
        assert_eq!(err.msg, "required env variables [CNI_COMMAND] missing");
        let err = env(&[("CNI_COMMAND", "add")]).unwrap_err();
        assert_eq!(err.msg, "unknown CNI_COMMAND \"add\"");
    }

    #[test]
    fn status_gc_and_version_need_only_the_command() {
        for c in ["STATUS", "GC", "VERSION"] {
            assert_eq!(env(&[("CNI_COMMAND", c)]).unwrap().command.as_str(), c);
        }
        // DEL without a netns: the namespace may be gone already.
        let del: Vec<_> = ADD
            .iter()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .map(|&(k, v)| {
                if k == "CNI_COMMAND" {
                    (k, "DEL")
                } else {
                    (k, v)
                }
            })
            .collect();
        assert_eq!(env(&del).unwrap().netns, "");
    }

    #[test]
    fn checks_container_id_ifname_and_args() {
        let with = |key: &str, value: &str| {
            let mut pairs = ADD.to_vec();
            pairs.iter_mut().find(|(k, _)| *k == key).unwrap().1 = value;
            env(&pairs).unwrap_err()
        };
        assert_eq!(
            with("CNI_CONTAINERID", "-bad").msg,
            "invalid characters in CNI_CONTAINERID \"-bad\""
        );
        assert_eq!(
            with("CNI_IFNAME", "a-very-long-ifname").msg,
            "interface name CNI_IFNAME \"a-very-long-ifname\" is longer than 15 bytes"
        );
        assert_eq!(
            with("CNI_IFNAME", "eth 0").msg,
            "interface name CNI_IFNAME \"eth 0\" contains '/', ':', NUL or whitespace"
        );
        assert_eq!(
            with("CNI_IFNAME", "àth0").msg,
            "interface name CNI_IFNAME \"àth0\" contains byte 0xa0 (as in 'à' in UTF-8), which the kernel takes for a space"
        );
        assert_eq!(ifname_problem("éth0"), None, "the kernel takes it");
        assert_eq!(
            with("CNI_IFNAME", "..").msg,
            "interface name CNI_IFNAME \"..\" is . or .."
        );
        let err = with("CNI_ARGS", "junk");
        assert_eq!(err.code, code::INVALID_ENVIRONMENT_VARIABLES);
        assert_eq!(err.msg, "parse CNI_ARGS: invalid pair \"junk\"");
    }

    #[test]
    fn rejects_non_utf8_values() {
        use std::os::unix::ffi::OsStringExt;
        let err = Invocation::from_env(&|k| match k {
            "CNI_COMMAND" => Some("DEL".into()),
            "CNI_CONTAINERID" => Some(OsString::from_vec(vec![b'a', 0xff])),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_ENVIRONMENT_VARIABLES);
        assert!(
            err.msg.starts_with("CNI_CONTAINERID is not valid UTF-8"),
            "{err}"
        );
    }
}
