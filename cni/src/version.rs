//! CNI spec versions: the ones this plugin speaks, and how to compare them.

use std::cmp::Ordering;

use crate::error::CniError;

/// The spec version this plugin implements (the newest it supports).
pub const CURRENT_VERSION: &str = "1.1.0";

/// Every config `cniVersion` the plugin accepts, oldest first. 0.1.0 and 0.2.0 have a different
/// result shape (`ip4`/`ip6`) and are not supported.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The oldest config version that has CHECK.
pub const CHECK_MIN_VERSION: &str = "0.4.0";

/// The oldest config version that has STATUS and GC.
pub const STATUS_GC_MIN_VERSION: &str = "1.1.0";

/// A parsed `major.minor.patch` spec version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpecVersion {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Patch number.
    pub patch: u32,
}

impl SpecVersion {
    /// Parses `"1.0.0"`; also `"1.0"` and `"1"` (missing parts are zero), as libcni does.
    pub fn parse(s: &str) -> Option<SpecVersion> {
        let mut parts = s.split('.');
        let mut next = |required: bool| -> Option<u32> {
            match parts.next() {
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
                Some(_) => None,
                None if required => None,
                None => Some(0),
            }
        };
        let v = SpecVersion {
            major: next(true)?,
            minor: next(false)?,
            patch: next(false)?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(v)
    }
}

impl std::fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// True when `version` is one of [`SUPPORTED_VERSIONS`] (spelled exactly).
pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// Compares two versions; `None` when either does not parse.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(SpecVersion::parse(a)?.cmp(&SpecVersion::parse(b)?))
}

/// True when `version >= min`; false when either does not parse.
pub fn at_least(version: &str, min: &str) -> bool {
    matches!(
        compare(version, min),
        Some(Ordering::Greater | Ordering::Equal)
    )
}

/// Checks a config's `cniVersion`: an error with code 1 (incompatible CNI version) that lists the
/// supported versions when it is missing or unsupported.
pub fn check_supported(version: &str) -> Result<(), CniError> {
    if is_supported(version) {
        return Ok(());
    }
    let msg = if version.is_empty() {
        "incompatible CNI version: the network config has no cniVersion".to_string()
    } else {
        format!("incompatible CNI version {version:?}")
    };
    Err(CniError::incompatible_version(msg))
}

/// The answer to VERSION: the spec's `{"cniVersion", "supportedVersions"}` object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The requested version when it is supported, else [`CURRENT_VERSION`].
    pub cni_version: String,
    /// [`SUPPORTED_VERSIONS`].
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// The VERSION answer for a request that asked for `requested` (the `cniVersion` of its
    /// stdin, if any).
    pub fn for_request(requested: Option<&str>) -> VersionInfo {
        let cni_version = match requested {
            Some(v) if is_supported(v) => v,
            _ => CURRENT_VERSION,
        };
        VersionInfo {
            cni_version: cni_version.to_string(),
            supported_versions: SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_versions() {
        assert_eq!(
            SpecVersion::parse("0.3.1"),
            Some(SpecVersion {
                major: 0,
                minor: 3,
                patch: 1
            })
        );
        assert_eq!(SpecVersion::parse("1"), SpecVersion::parse("1.0.0"));
        assert_eq!(SpecVersion::parse("1.0"), SpecVersion::parse("1.0.0"));
        for bad in [
            "",
            "a.b.c",
            "1..0",
            "1.0.0.0",
            "-1.0.0",
            "1.0.0-rc1",
            " 1.0.0",
        ] {
            assert_eq!(SpecVersion::parse(bad), None, "{bad:?}");
        }
        assert!(at_least("1.1.0", "1.1.0"));
        assert!(at_least("1.0.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(!at_least("0.10.0", "1.0.0"));
        assert!(at_least("0.10.0", "0.4.0"));
        assert!(!at_least("junk", "0.4.0"));
        assert!(
            SUPPORTED_VERSIONS
                .windows(2)
                .all(|w| compare(w[0], w[1]) == Some(Ordering::Less)),
            "SUPPORTED_VERSIONS must be sorted"
        );
        assert_eq!(SUPPORTED_VERSIONS.last(), Some(&CURRENT_VERSION));
    }

    #[test]
    fn only_listed_versions_are_supported() {
        for v in SUPPORTED_VERSIONS {
            assert!(check_supported(v).is_ok());
        }
        for v in ["0.1.0", "0.2.0", "1.2.0", "1.0", ""] {
            let err = check_supported(v).unwrap_err();
            assert_eq!(
                err.code,
                crate::error::code::INCOMPATIBLE_CNI_VERSION,
                "{v:?}"
            );
            assert!(
                err.details.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn version_answer_echoes_supported_requests_only() {
        assert_eq!(VersionInfo::for_request(Some("0.4.0")).cni_version, "0.4.0");
        assert_eq!(VersionInfo::for_request(Some("0.2.0")).cni_version, "1.1.0");
        assert_eq!(VersionInfo::for_request(None).cni_version, "1.1.0");
        assert_eq!(
            serde_json::to_value(VersionInfo::for_request(None)).unwrap(),
            serde_json::json!({
                "cniVersion": "1.1.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
            })
        );
    }
}
