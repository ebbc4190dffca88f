//! conf/kubernetes/: every object of every manifest is a valid object of its kind: it reads into
//! its typed k8s-openapi struct, and reading it back gives the same document (k8s-openapi
//! ignores unknown fields; a misspelt or misplaced field shows up as a difference here, as
//! `kubectl apply --validate=strict` would refuse it). Plus the settings the manifests rely on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/kubernetes")
}

/// Every object of every manifest: (file, object).
fn objects() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", f.display()));
        for d in docs.into_iter().filter(|d| !d.is_null()) {
            out.push((f.file_name().unwrap().to_string_lossy().to_string(), d));
        }
    }
    out
}

/// Where `a` and `b` first differ, as a JSON path.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(p, q, &format!("{path}.{k}")),
                    (Some(_), None) => Some(format!("{path}.{k} (unknown to the typed object)")),
                    (None, Some(_)) => Some(format!("{path}.{k} (added by the typed object)")),
                    (None, None) => None,
                })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} became {b}")),
    }
}

/// Reads `v` into `T` strictly: a field `T` does not know is an error naming it.
fn strict<T: serde::de::DeserializeOwned + serde::Serialize>(file: &str, v: &Value) -> T {
    let name = format!("{file} {}/{}", v["kind"], v["metadata"]["name"]);
    let typed: T = serde_path_to_error::deserialize(v)
        .unwrap_or_else(|e| panic!("{name}: {} at {}", e.inner(), e.path()));
    let back = serde_json::to_value(&typed).unwrap();
    if let Some(d) = first_difference(v, &back, "") {
        panic!("{name}: {d}");
    }
    typed
}

#[test]
fn every_manifest_object_is_a_valid_object_of_its_kind() {
    let mut kinds = BTreeMap::<String, usize>::new();
    for (file, v) in objects() {
        let kind = format!(
            "{}/{}",
            v["apiVersion"].as_str().unwrap_or_default(),
            v["kind"].as_str().unwrap_or_default()
        );
        match kind.as_str() {
            "v1/ServiceAccount" => drop(strict::<ServiceAccount>(&file, &v)),
            "v1/ConfigMap" => drop(strict::<ConfigMap>(&file, &v)),
            "v1/Secret" => drop(strict::<Secret>(&file, &v)),
            "v1/Namespace" => drop(strict::<Namespace>(&file, &v)),
            "rbac.authorization.k8s.io/v1/ClusterRole" => drop(strict::<ClusterRole>(&file, &v)),
            "rbac.authorization.k8s.io/v1/ClusterRoleBinding" => {
                drop(strict::<ClusterRoleBinding>(&file, &v))
            }
            "apps/v1/Deployment" => drop(strict::<Deployment>(&file, &v)),
            "apps/v1/DaemonSet" => drop(strict::<DaemonSet>(&file, &v)),
            other => panic!("{file}: {other}: a kind this check does not know; add it"),
        }
        *kinds.entry(kind).or_default() += 1;
    }
    assert!(
        kinds.contains_key("apps/v1/DaemonSet") && kinds.contains_key("apps/v1/Deployment"),
        "{kinds:?}"
    );
}

/// The strict check catches what it claims to: a misspelt field.
#[test]
fn the_strict_check_finds_an_unknown_field() {
    let v: Value = serde_saphyr::from_str(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n  lables: {a: b}\n",
    )
    .unwrap();
    let r = std::panic::catch_unwind(|| strict::<ServiceAccount>("t.yaml", &v));
    let msg = r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains(".metadata.lables"), "{msg}");
}

fn find<T: serde::de::DeserializeOwned + serde::Serialize>(kind: &str, name: &str) -> T {
    let (file, v) = objects()
        .into_iter()
        .find(|(_, v)| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in conf/kubernetes"));
    strict(&file, &v)
}

/// The names of the environment variables a binary's flags read (`env = "..."` in its main.rs).
fn flag_envs(main_rs: &str) -> Vec<String> {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(main_rs)).unwrap();
    src.split("env = \"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_settings_are_real_flags_and_the_agent_has_what_it_needs() {
    let cm: ConfigMap = find("ConfigMap", "contiv-config");
    let data = cm.data.unwrap();
    let known: Vec<String> = [
        flag_envs("../netplugin/src/main.rs"),
        flag_envs("../master/src/main.rs"),
    ]
    .concat();
    for k in data.keys().filter(|k| k.starts_with("CONTIV_")) {
        assert!(
            known.contains(k),
            "{k} in contiv-config is no flag of netplugin or netmaster"
        );
    }
    let conflist: Value = serde_json::from_str(&data["10-contiv.conflist"]).unwrap();
    assert_eq!(conflist["plugins"][0]["type"], "contiv");
    assert_eq!(data["CONTIV_NETPLUGIN_K8S_IN_CLUSTER"], "true");

    let ds: DaemonSet = find("DaemonSet", "contiv-netplugin");
    let pod = ds.spec.template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    let c = &pod.containers[0];
    assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
    let mounts: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    for want in ["/var/run/openvswitch", "/run/netns", "/run/contiv"] {
        assert!(mounts.contains(&want), "netplugin lacks {want}: {mounts:?}");
    }
    let init: Vec<&str> = pod
        .init_containers
        .iter()
        .flatten()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(
        init.contains(&"/host/opt/cni/bin") && init.contains(&"/host/etc/cni/net.d"),
        "{init:?}"
    );

    assert_eq!(data["CONTIV_NETPLUGIN_K8S_NETWORK_POLICY"], "true");

    // Least rights: read pods and namespaces, list and watch NetworkPolicies, nothing more.
    let role: ClusterRole = find("ClusterRole", "contiv-netplugin");
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 2);
    let mut res = rules[0].resources.clone().unwrap();
    res.sort();
    assert_eq!(res, ["namespaces", "pods"]);
    assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
    assert_eq!(
        rules[1].api_groups.as_deref(),
        Some(&["networking.k8s.io".to_string()][..])
    );
    assert_eq!(
        rules[1].resources.as_deref(),
        Some(&["networkpolicies".to_string()][..])
    );
    assert_eq!(rules[1].verbs, ["list", "watch"]);
}
