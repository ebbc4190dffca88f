//! `CNI_ARGS`: `K=V` pairs separated by `;`, and the Kubernetes pod identity they carry.

use std::collections::BTreeMap;

use crate::error::CniError;

/// Parses `CNI_ARGS` (`"K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;IgnoreUnknown=1"`) into a map.
///
/// Empty pairs (`";;"`, a trailing `;`) are skipped; a value may contain `=` (the first one
/// splits). A pair without `=` or with an empty key is an error with code 4 (invalid environment
/// variables), as in libcni. When a key repeats, the last value wins.
pub fn parse_cni_args(args: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut map = BTreeMap::new();
    for pair in args.split(';').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                map.insert(key.to_string(), value.to_string());
            }
            _ => {
                return Err(CniError::invalid_env(format!(
                    "parse CNI_ARGS: invalid pair {pair:?}"
                ))
                .with_details("CNI_ARGS is a list of KEY=VALUE pairs separated by ';'"));
            }
        }
    }
    Ok(map)
}

/// The pod a CNI call is for, as kubelet passes it in `CNI_ARGS`. Fields are `None` when absent
/// or empty (podman passes none of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodIdentity {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub name: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub infra_container_id: Option<String>,
    /// `K8S_POD_UID`.
    pub uid: Option<String>,
}

impl PodIdentity {
    /// `CNI_ARGS` key of the pod namespace.
    pub const NAMESPACE_KEY: &'static str = "K8S_POD_NAMESPACE";
    /// `CNI_ARGS` key of the pod name.
    pub const NAME_KEY: &'static str = "K8S_POD_NAME";
    /// `CNI_ARGS` key of the sandbox (infra) container id.
    pub const INFRA_CONTAINER_ID_KEY: &'static str = "K8S_POD_INFRA_CONTAINER_ID";
    /// `CNI_ARGS` key of the pod UID.
    pub const UID_KEY: &'static str = "K8S_POD_UID";

    /// Reads the pod identity from parsed `CNI_ARGS`.
    pub fn from_args(args: &BTreeMap<String, String>) -> PodIdentity {
        let get = |key: &str| args.get(key).filter(|v| !v.is_empty()).cloned();
        PodIdentity {
            namespace: get(Self::NAMESPACE_KEY),
            name: get(Self::NAME_KEY),
            infra_container_id: get(Self::INFRA_CONTAINER_ID_KEY),
            uid: get(Self::UID_KEY),
        }
    }

    /// Parses raw `CNI_ARGS` and reads the pod identity.
    pub fn from_cni_args(args: &str) -> Result<PodIdentity, CniError> {
        Ok(PodIdentity::from_args(&parse_cni_args(args)?))
    }

    /// `namespace/name` when both are known: the key to look the pod up in the Kubernetes API.
    pub fn pod_key(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.namespace.as_ref()?,
            self.name.as_ref()?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubelet_args() {
        let args = parse_cni_args(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=7f0e-11",
        )
        .unwrap();
        assert_eq!(args.len(), 5);
        assert_eq!(args["IgnoreUnknown"], "1");
        let pod = PodIdentity::from_args(&args);
        assert_eq!(
            pod,
            PodIdentity {
                namespace: Some("default".into()),
                name: Some("web-0".into()),
                infra_container_id: Some("abc123".into()),
                uid: Some("7f0e-11".into()),
            }
        );
        assert_eq!(pod.pod_key().as_deref(), Some("default/web-0"));
    }

    #[test]
    fn tolerates_empty_pairs_and_equals_in_values() {
        assert!(parse_cni_args("").unwrap().is_empty());
        let args = parse_cni_args(";A=b=c;;B=;").unwrap();
        assert_eq!(args["A"], "b=c");
        assert_eq!(args["B"], "");
        assert_eq!(parse_cni_args("A=1;A=2").unwrap()["A"], "2");
    }

    #[test]
    fn rejects_pairs_without_a_key() {
        for bad in ["K8S_POD_NAME", "A=1;junk", "=value"] {
            let err = parse_cni_args(bad).unwrap_err();
            assert_eq!(err.code, crate::error::code::INVALID_ENVIRONMENT_VARIABLES);
            assert!(err.msg.starts_with("parse CNI_ARGS: invalid pair"), "{err}");
        }
    }

    #[test]
    fn podman_args_have_no_pod() {
        let pod = PodIdentity::from_cni_args("IgnoreUnknown=1;K8S_POD_NAME=").unwrap();
        assert_eq!(pod, PodIdentity::default());
        assert_eq!(pod.pod_key(), None);
    }
}
