//! Client-side checks: the model's own rules, run before a request so that a bad value is
//! reported against the flag or argument the user typed, with the command's usage.

use crate::error::CtlError;
use model::{FieldError, Object};

/// Checks `obj` with the model's rules. `flag` names the flag or argument that fills a JSON
/// field (`"gateway"` → `"--gateway"`, `"networkName"` → `"<NETWORK>"`).
pub fn check<T: Object>(
    obj: &T,
    path: &'static [&'static str],
    flag: fn(&str) -> Option<&'static str>,
) -> Result<(), CtlError> {
    let mut copy = obj.clone();
    copy.normalize()
        .map_err(|e| CtlError::usage(path, describe(&e, flag(e.field).unwrap_or(e.field))))
}

/// `invalid value 'v' for '--flag': rule` (clap's wording), or `--flag is required` when empty.
pub fn describe(e: &FieldError, what: &str) -> String {
    if e.value.is_empty() {
        format!("'{what}' {}", e.rule)
    } else {
        format!("invalid value '{}' for '{what}': {}", e.value, e.rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_flag() {
        let net = model::Network {
            tenant_name: "default".into(),
            network_name: "n".into(),
            encap: "vxlan".into(),
            subnet: "10.1.2.0/24".into(),
            gateway: "10.1.3.1".into(),
            ..Default::default()
        };
        let e = check(&net, &["network", "create"], |f| match f {
            "gateway" => Some("--gateway"),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "invalid value '10.1.3.1' for '--gateway': must be a host address inside subnet 10.1.2.0/24"
        );
    }

    #[test]
    fn missing_value_reads_as_required() {
        let e = FieldError::new("networkName", "", "is required");
        assert_eq!(describe(&e, "--network"), "'--network' is required");
    }
}
