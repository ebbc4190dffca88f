//! The Kubernetes API client: pod placement from labels (`io.contiv.tenant`,
//! `io.contiv.network`, `io.contiv.net-group`), with namespace-level defaults.
//!
//! Built on `kube` + `k8s-openapi` (docs/decisions.md). The agent lists and watches only its own
//! node's pods (field selector `spec.nodeName=<node>`) and the namespaces, into local caches
//! (kube-runtime's reflector: resourceVersion resume, bookmarks, reconnects with backoff, a relist
//! on 410 Gone). A CNI ADD reads the cache; since the ADD can race the watch (kubelet calls CNI
//! as soon as the pod is bound), it waits briefly for the pod to show up and then falls back to a
//! direct GET.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

pub const LABEL_TENANT: &str = "io.contiv.tenant";
pub const LABEL_NETWORK: &str = "io.contiv.network";
pub const LABEL_GROUP: &str = "io.contiv.net-group";
/// The placement keys, in the order they are looked up.
pub const PLACEMENT_KEYS: [&str; 3] = [LABEL_TENANT, LABEL_NETWORK, LABEL_GROUP];

/// Where the service account's credentials are mounted in every pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How long an ADD waits for its pod to reach the cache before asking the API directly.
/// kubelet calls CNI right after the pod is bound to the node, and the watch event for that
/// binding usually arrives within milliseconds; the GET is the safety net, not the norm.
const CACHE_WAIT: Duration = Duration::from_secs(2);

/// How the agent reaches the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiSource {
    /// A URL (`--k8s-api`, or in-cluster from `KUBERNETES_SERVICE_HOST`/`_PORT`), with a
    /// bearer token file (re-read by kube as it rotates) and the CA that signed the server.
    Url {
        url: String,
        token_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
    },
    /// A kubeconfig file (`--kubeconfig`), its current context.
    Kubeconfig(PathBuf),
}

impl ApiSource {
    /// In-cluster settings: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, the
    /// service account's token and CA unless other files are given.
    pub fn in_cluster(
        env: impl Fn(&str) -> Option<String>,
        token_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
    ) -> Result<Self, KubeError> {
        let (Some(host), Some(port)) = (
            env("KUBERNETES_SERVICE_HOST").filter(|s| !s.is_empty()),
            env("KUBERNETES_SERVICE_PORT").filter(|s| !s.is_empty()),
        ) else {
            return Err(KubeError::Config(
                "in-cluster Kubernetes API: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not both set (kubelet sets them in every pod); outside a pod, give --kubeconfig or --k8s-api".into(),
            ));
        };
        // An IPv6 service address goes in brackets in a URL.
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let sa = Path::new(SERVICE_ACCOUNT_DIR);
        Ok(ApiSource::Url {
            url: format!("https://{host}:{port}"),
            token_file: Some(token_file.unwrap_or_else(|| sa.join("token"))),
            ca_file: Some(ca_file.unwrap_or_else(|| sa.join("ca.crt"))),
        })
    }

    /// Where the API is, for messages.
    pub fn describe(&self) -> String {
        match self {
            ApiSource::Url { url, .. } => url.clone(),
            ApiSource::Kubeconfig(p) => format!("the kubeconfig {}", p.display()),
        }
    }

    /// The kubeconfig this source amounts to: one code path (kube's) reads CA files, token files
    /// and URLs for every way of configuring the agent.
    fn kubeconfig(&self) -> Result<Kubeconfig, KubeError> {
        match self {
            ApiSource::Kubeconfig(path) => Kubeconfig::read_from(path).map_err(|e| {
                KubeError::Config(format!(
                    "read the kubeconfig {}: {e}; give a readable kubeconfig file (kubectl config view --raw --minify > FILE makes one)",
                    path.display()
                ))
            }),
            ApiSource::Url {
                url,
                token_file,
                ca_file,
            } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(KubeError::Config(format!(
                        "Kubernetes API URL '{url}': give http(s)://host:port"
                    )));
                }
                // Read both files now: kube reports a bad file late and without its name.
                if let Some(f) = token_file {
                    let t = std::fs::read_to_string(f).map_err(|e| {
                        KubeError::Config(format!(
                            "read the Kubernetes token file {}: {e}; give --k8s-token-file a readable file holding the service account's bearer token",
                            f.display()
                        ))
                    })?;
                    if t.trim().is_empty() {
                        return Err(KubeError::Config(format!(
                            "the Kubernetes token file {} is empty; put the service account's bearer token in it",
                            f.display()
                        )));
                    }
                }
                if let Some(f) = ca_file {
                    let pem = std::fs::read_to_string(f).map_err(|e| {
                        KubeError::Config(format!(
                            "read the Kubernetes CA file {}: {e}; give --k8s-ca-file the PEM file of the CA that signed the API server's certificate",
                            f.display()
                        ))
                    })?;
                    if !pem.contains("-----BEGIN CERTIFICATE-----") {
                        return Err(KubeError::Config(format!(
                            "the Kubernetes CA file {} holds no PEM certificate; give the CA that signed the API server's certificate (ca.crt of the service account)",
                            f.display()
                        )));
                    }
                }
                let name = "contiv".to_string();
                let s = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
                Ok(Kubeconfig {
                    clusters: vec![NamedCluster {
                        name: name.clone(),
                        cluster: Some(Cluster {
                            server: Some(url.clone()),
                            certificate_authority: s(ca_file),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    auth_infos: vec![NamedAuthInfo {
                        name: name.clone(),
                        auth_info: Some(AuthInfo {
                            token_file: s(token_file),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    contexts: vec![NamedContext {
                        name: name.clone(),
                        context: Some(Context {
                            cluster: name.clone(),
                            user: Some(name.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    current_context: Some(name),
                    ..Default::default()
                })
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{0}")]
    Config(String),
    #[error("connect to the Kubernetes API at {api}: {source}")]
    Client {
        api: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// `detail`: the error's causes (kube's top-level text is often just "client error") and
    /// what to check.
    #[error("read {what} from the Kubernetes API at {api}: {detail}")]
    Request {
        what: String,
        api: String,
        detail: String,
        #[source]
        source: Box<kube::Error>,
    },
}

impl KubeError {
    fn request(what: String, api: &str, source: kube::Error) -> Self {
        KubeError::Request {
            what,
            api: api.to_string(),
            detail: explain(&source),
            source: Box::new(source),
        }
    }
}

/// An API error with its causes and, where the cause is a usual mistake, its fix.
fn explain(e: &kube::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.contains(&t) {
            s = format!("{s}: {t}");
        }
        cause = c.source();
    }
    let hint = match e {
        kube::Error::Api(st) if st.code == 401 => {
            "; the API server refused the token: check --k8s-token-file (in a pod: its service account's token)"
        }
        kube::Error::Api(st) if st.code == 403 => {
            "; the account lacks rights: it needs get, list and watch on pods and namespaces, and list and watch on networkpolicies with --k8s-network-policy (conf/kubernetes/rbac.yaml)"
        }
        kube::Error::Service(_) | kube::Error::HyperError(_) => {
            "; check that the API server is reachable there and, for https, that --k8s-ca-file (or the kubeconfig's CA) is the CA that signed its certificate"
        }
        _ => "",
    };
    s + hint
}

/// A cache kept by a watch, usable once the first list is in. It stays usable while the watch is
/// broken (the API server restarting, a relist after 410 Gone), as informers' caches do: the
/// last known labels place a pod better than refusing its ADD, and kube's watcher swallows the
/// bookmarks and successful re-watches that would tell a recovered watch from a silent one.
struct Cache<K: kube::Resource + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    ready: Arc<AtomicBool>,
}

impl<K> Cache<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    /// Starts the watch (a task living as long as `tasks`); `changed` is bumped after every
    /// event has reached the store, so that waiters never miss one.
    fn start(
        api: Api<K>,
        config: watcher::Config,
        what: &'static str,
        changed: tokio::sync::watch::Sender<u64>,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
        trim: fn(&mut K),
    ) -> Self {
        let (store, writer) = reflector::store();
        let ready = Arc::new(AtomicBool::new(false));
        let r = ready.clone();
        let stream =
            reflector::reflector(writer, watcher(api, config).modify(trim).default_backoff());
        tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // Logs a failing watch once, not at every retry.
            let mut failing = false;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => {
                        if matches!(ev, watcher::Event::InitDone) {
                            r.store(true, Ordering::SeqCst);
                            tracing::info!(what, "Kubernetes watch synced (listed)");
                            failing = false;
                        }
                    }
                    Err(e) if !failing => {
                        failing = true;
                        let error = match &e {
                            watcher::Error::InitialListFailed(k)
                            | watcher::Error::WatchStartFailed(k)
                            | watcher::Error::WatchFailed(k) => explain(k),
                            other => other.to_string(),
                        };
                        tracing::warn!(what, %error, "Kubernetes watch failed; retrying with backoff, meanwhile ADDs use the last known state");
                    }
                    Err(e) => tracing::debug!(what, error = %e, "Kubernetes watch still failing"),
                }
                changed.send_modify(|n| *n += 1);
            }
        }));
        Cache { store, ready }
    }

    fn usable(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The agent's view of the Kubernetes API. Cloning shares the caches.
#[derive(Clone)]
pub struct KubeClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    api: String,
    /// This node's pods, or every pod when NetworkPolicy is enforced (peers live anywhere).
    pods: Cache<Pod>,
    namespaces: Cache<Namespace>,
    /// The NetworkPolicies (with `--k8s-network-policy` only).
    policies: Option<Cache<NetworkPolicy>>,
    changed: tokio::sync::watch::Receiver<u64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Managed fields are most of a pod's JSON and of no use here.
fn trim<K: kube::Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// A pod as the agent needs it: placement reads labels; NetworkPolicy reads labels, node,
/// host networking, named container ports, addresses and phase. The rest (annotations,
/// volumes, conditions...) would cost memory for every pod of the cluster.
fn trim_pod(p: &mut Pod) {
    p.metadata.managed_fields = None;
    p.metadata.annotations = None;
    if let Some(spec) = &mut p.spec {
        *spec = k8s_openapi::api::core::v1::PodSpec {
            node_name: spec.node_name.take(),
            host_network: spec.host_network,
            containers: std::mem::take(&mut spec.containers)
                .into_iter()
                .map(|c| k8s_openapi::api::core::v1::Container {
                    name: c.name,
                    ports: c.ports,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
    }
    if let Some(st) = &mut p.status {
        *st = k8s_openapi::api::core::v1::PodStatus {
            phase: st.phase.take(),
            pod_ip: st.pod_ip.take(),
            pod_ips: st.pod_ips.take(),
            ..Default::default()
        };
    }
}

impl KubeClient {
    /// Connects (lazily: nothing is sent yet) and starts the watches of `node`'s pods and of the
    /// namespaces; with `network_policy`, of every pod (a policy's peers live on any node) and
    /// of the NetworkPolicies too. Needs a tokio runtime.
    pub async fn start(
        source: &ApiSource,
        node: &str,
        network_policy: bool,
    ) -> Result<Self, KubeError> {
        // model builds rustls with no default crypto provider: install ring.
        model::install_default_tls_provider();
        let api = source.describe();
        let kubeconfig = source.kubeconfig()?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| {
                KubeError::Config(format!(
                    "Kubernetes API settings from {api}: {e}; check the CA and token files and the server URL"
                ))
            })?;
        let client = kube::Client::try_from(config).map_err(|e| KubeError::Client {
            api: api.clone(),
            source: Box::new(e),
        })?;
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let mut tasks = Vec::new();
        let pod_config = if network_policy {
            watcher::Config::default()
        } else {
            watcher::Config::default().fields(&format!("spec.nodeName={node}"))
        };
        let pods = Cache::start(
            Api::<Pod>::all(client.clone()),
            pod_config,
            "pods",
            tx.clone(),
            &mut tasks,
            trim_pod,
        );
        let namespaces = Cache::start(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
            "namespaces",
            tx.clone(),
            &mut tasks,
            trim::<Namespace>,
        );
        let policies = network_policy.then(|| {
            Cache::start(
                Api::<NetworkPolicy>::all(client.clone()),
                watcher::Config::default(),
                "networkpolicies",
                tx,
                &mut tasks,
                trim::<NetworkPolicy>,
            )
        });
        if network_policy {
            tracing::info!(%api, node, "watching every pod, the namespaces and the NetworkPolicies in the Kubernetes API");
        } else {
            tracing::info!(%api, node, "watching this node's pods and the namespaces in the Kubernetes API");
        }
        Ok(KubeClient {
            inner: Arc::new(Inner {
                client,
                api,
                pods,
                namespaces,
                policies,
                changed: rx,
                tasks,
            }),
        })
    }

    /// The labels that place the pod: its own, with the namespace's `io.contiv.*` labels or
    /// annotations filling in the placement keys the pod does not set. None when the pod does
    /// not exist (it may be gone already).
    pub async fn pod_labels(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, KubeError> {
        let Some(pod) = self.pod(namespace, name).await? else {
            return Ok(None);
        };
        let mut labels = pod.metadata.labels.clone().unwrap_or_default();
        let missing = |l: &BTreeMap<String, String>, k: &str| l.get(k).is_none_or(|v| v.is_empty());
        if PLACEMENT_KEYS.iter().any(|k| missing(&labels, k))
            && let Some(ns) = self.namespace(namespace).await?
        {
            let defaults = namespace_defaults(&ns);
            for k in PLACEMENT_KEYS {
                if missing(&labels, k)
                    && let Some(v) = defaults.get(k)
                {
                    labels.insert(k.to_string(), v.clone());
                }
            }
        }
        Ok(Some(labels))
    }

    /// The pod from the cache, waiting up to [`CACHE_WAIT`] for it once the cache is listed;
    /// else (not listed yet, or not there) from the API directly.
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<Arc<Pod>>, KubeError> {
        let key = ObjectRef::new(name).within(namespace);
        let mut changed = self.inner.changed.clone();
        let deadline = tokio::time::Instant::now() + CACHE_WAIT;
        while self.inner.pods.usable() {
            // Mark before looking: an event landing in between wakes the wait below.
            changed.borrow_and_update();
            if let Some(p) = self.inner.pods.store.get(&key) {
                return Ok(Some(p));
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                _ => break,
            }
        }
        tracing::debug!(pod = %format!("{namespace}/{name}"), "pod not in the cache; asking the Kubernetes API");
        Api::<Pod>::namespaced(self.inner.client.clone(), namespace)
            .get_opt(name)
            .await
            .map(|p| p.map(Arc::new))
            .map_err(|e| KubeError::request(format!("pod {namespace}/{name}"), &self.inner.api, e))
    }

    /// The namespace from the cache once it is listed and has it, else from the API.
    async fn namespace(&self, name: &str) -> Result<Option<Arc<Namespace>>, KubeError> {
        if self.inner.namespaces.usable()
            && let Some(ns) = self.inner.namespaces.store.get(&ObjectRef::new(name))
        {
            return Ok(Some(ns));
        }
        Api::<Namespace>::all(self.inner.client.clone())
            .get_opt(name)
            .await
            .map(|n| n.map(Arc::new))
            .map_err(|e| KubeError::request(format!("namespace {name}"), &self.inner.api, e))
    }

    /// How many pods the cache holds (for logs and tests).
    pub fn cached_pods(&self) -> usize {
        self.inner.pods.store.len()
    }

    /// Wakes at every event of any watch (`borrow_and_update` then `changed`).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changed.clone()
    }

    /// What NetworkPolicy resolution reads: (policies, pods, namespaces), once all three caches
    /// are listed; None before, or without `--k8s-network-policy`.
    #[allow(clippy::type_complexity)]
    pub fn policy_view(
        &self,
    ) -> Option<(Vec<Arc<NetworkPolicy>>, Vec<Arc<Pod>>, Vec<Arc<Namespace>>)> {
        let policies = self.inner.policies.as_ref()?;
        if !(policies.usable() && self.inner.pods.usable() && self.inner.namespaces.usable()) {
            return None;
        }
        Some((
            policies.store.state(),
            self.inner.pods.store.state(),
            self.inner.namespaces.store.state(),
        ))
    }
}

/// A namespace's placement defaults: its `io.contiv.*` labels, else annotations of the same
/// keys (annotations take values labels cannot, such as long names).
pub fn namespace_defaults(ns: &Namespace) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for k in PLACEMENT_KEYS {
        let from = |m: &Option<BTreeMap<String, String>>| {
            m.as_ref()
                .and_then(|m| m.get(k))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        if let Some(v) = from(&ns.metadata.labels).or_else(|| from(&ns.metadata.annotations)) {
            out.insert(k.to_string(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn in_cluster_reads_the_service_env_and_the_service_account_files() {
        let s = ApiSource::in_cluster(
            env(&[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
            ]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            s,
            ApiSource::Url {
                url: "https://10.96.0.1:443".into(),
                token_file: Some(PathBuf::from(SERVICE_ACCOUNT_DIR).join("token")),
                ca_file: Some(PathBuf::from(SERVICE_ACCOUNT_DIR).join("ca.crt")),
            }
        );
        let s = ApiSource::in_cluster(
            env(&[
                ("KUBERNETES_SERVICE_HOST", "fd00::1"),
                ("KUBERNETES_SERVICE_PORT", "6443"),
            ]),
            Some("/t".into()),
            Some("/c".into()),
        )
        .unwrap();
        assert_eq!(
            s,
            ApiSource::Url {
                url: "https://[fd00::1]:6443".into(),
                token_file: Some("/t".into()),
                ca_file: Some("/c".into()),
            }
        );
    }

    #[test]
    fn in_cluster_outside_a_pod_says_what_to_give_instead() {
        let e = ApiSource::in_cluster(env(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1")]), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("KUBERNETES_SERVICE_PORT") && e.contains("--kubeconfig"),
            "{e}"
        );
    }

    #[test]
    fn bad_files_are_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let not_pem = dir.path().join("ca.crt");
        std::fs::write(&not_pem, "hello").unwrap();
        let cases = [
            (
                Some(dir.path().join("missing")),
                None,
                "missing",
                "--k8s-token-file",
            ),
            (Some(empty.clone()), None, "empty", "bearer token"),
            (None, Some(not_pem.clone()), "ca.crt", "no PEM certificate"),
            (
                None,
                Some(dir.path().join("nope.crt")),
                "nope.crt",
                "--k8s-ca-file",
            ),
        ];
        for (token_file, ca_file, name, fix) in cases {
            let e = ApiSource::Url {
                url: "https://10.0.0.1:6443".into(),
                token_file,
                ca_file,
            }
            .kubeconfig()
            .unwrap_err()
            .to_string();
            assert!(e.contains(name) && e.contains(fix), "{e}");
        }
        let e = ApiSource::Url {
            url: "10.0.0.1:6443".into(),
            token_file: None,
            ca_file: None,
        }
        .kubeconfig()
        .unwrap_err()
        .to_string();
        assert!(e.contains("http(s)://"), "{e}");
    }

    #[test]
    fn namespace_labels_win_over_annotations_and_empty_values_do_not_count() {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some("shop".into()),
                labels: Some(BTreeMap::from([
                    (LABEL_TENANT.to_string(), "blue".to_string()),
                    (LABEL_GROUP.to_string(), String::new()),
                    ("team".to_string(), "x".to_string()),
                ])),
                annotations: Some(BTreeMap::from([
                    (LABEL_TENANT.to_string(), "red".to_string()),
                    (LABEL_NETWORK.to_string(), "web-net".to_string()),
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            namespace_defaults(&ns),
            BTreeMap::from([
                (LABEL_TENANT.to_string(), "blue".to_string()),
                (LABEL_NETWORK.to_string(), "web-net".to_string()),
            ])
        );
    }
}
