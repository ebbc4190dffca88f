//! A stand-in for the Kubernetes API server (none can run on these machines), good enough that
//! the agent's client (kube-rs) cannot tell: HTTPS with a test CA, a bearer token check (401
//! otherwise), real `k8s-openapi` objects serialized as the API server does, GET of a pod or a
//! namespace, list and watch of pods (field selectors `spec.nodeName` / `metadata.name`),
//! namespaces and NetworkPolicies (networking.k8s.io/v1) with resourceVersions, BOOKMARK events when asked (`allowWatchBookmarks`), and 410
//! Gone (an ERROR event, as the watch cache sends it) for a resourceVersion older than the kept
//! history. It can be stopped and started again on the same port with its state (an API server
//! restart), and counts what it served for tests to assert on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Status, WatchEvent};
use tokio_stream::StreamExt as _;

use crate::process::{in_netns, wait_for};

/// How often an idle watch that asked for bookmarks gets one (the real server: about a minute;
/// short here so that tests see them).
const BOOKMARK_EVERY: Duration = Duration::from_millis(300);

#[derive(Clone, Debug)]
enum Obj {
    Pod(Box<Pod>),
    Ns(Box<Namespace>),
    NetPol(Box<NetworkPolicy>),
}

impl Obj {
    fn matches(&self, kind: Kind, sel: &Selector) -> bool {
        match (self, kind) {
            (Obj::Pod(p), Kind::Pod) => sel.matches_pod(p),
            (Obj::Ns(n), Kind::Ns) => sel
                .name
                .as_ref()
                .is_none_or(|x| n.metadata.name.as_ref() == Some(x)),
            (Obj::NetPol(_), Kind::NetPol) => true,
            _ => false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Pod,
    Ns,
    NetPol,
}

#[derive(Clone, Copy, Debug)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

/// What the stand-in served, for assertions.
#[derive(Clone, Debug, Default)]
pub struct Served {
    pub pod_gets: u32,
    pub namespace_gets: u32,
    pub pod_lists: u32,
    pub pod_watches: u32,
    /// The resourceVersion each pod watch started from, in order.
    pub pod_watch_versions: Vec<u64>,
    /// The field selector of each pod list and watch, in order.
    pub pod_selectors: Vec<String>,
    pub namespace_lists: u32,
    pub namespace_watches: u32,
    pub policy_lists: u32,
    pub policy_watches: u32,
    pub pod_bookmarks: u32,
    /// 410 Gone answers (expired resourceVersions).
    pub gone: u32,
    /// 401 answers (missing or wrong bearer token).
    pub unauthorized: u32,
}

#[derive(Default)]
struct State {
    rv: u64,
    pods: BTreeMap<(String, String), Pod>,
    namespaces: BTreeMap<String, Namespace>,
    policies: BTreeMap<(String, String), NetworkPolicy>,
    /// Every change, in order: (resourceVersion, type, object as of then).
    history: Vec<(u64, EventType, Obj)>,
    /// Watches from a resourceVersion below this get 410 Gone.
    oldest: u64,
    served: Served,
}

impl State {
    fn record(&mut self, t: EventType, o: Obj) {
        self.history.push((self.rv, t, o));
    }
}

struct Shared {
    state: Mutex<State>,
    /// The current resourceVersion, for watches to wake on.
    rv: tokio::sync::watch::Sender<u64>,
    token: String,
}

/// The stand-in. Dropping it stops the server.
pub struct KubeApi {
    shared: Arc<Shared>,
    rt: tokio::runtime::Runtime,
    server: Option<tokio::task::JoinHandle<()>>,
    /// Listeners in other namespaces ([`KubeApi::serve_in`]).
    extra: Vec<tokio::task::JoinHandle<()>>,
    tls: Arc<rustls::ServerConfig>,
    netns: String,
    pub port: u16,
    dir: PathBuf,
}

impl KubeApi {
    /// Starts on 127.0.0.1 (port 0) inside the network namespace at `netns` (a path such as
    /// /var/run/netns/X), with a fresh CA, server certificate and token, written to files in
    /// `dir` ([`KubeApi::ca_file`], [`KubeApi::token_file`]).
    pub fn start(netns: &str, dir: &std::path::Path) -> KubeApi {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test kubernetes CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "kubernetes.default.svc".to_string(),
        ])
        .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        let token = format!("test-token-{}", crate::unique("k"));
        std::fs::write(dir.join("token"), &token).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (rv, _) = tokio::sync::watch::channel(0);
        let mut api = KubeApi {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                rv,
                token,
            }),
            rt,
            server: None,
            extra: Vec::new(),
            tls: Arc::new(tls),
            netns: netns.to_string(),
            port: 0,
            dir: dir.to_path_buf(),
        };
        api.serve();
        api
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.join("token")
    }

    /// Stops serving: the listener and every connection (watches included) close at once.
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = self.rt.block_on(s);
        }
    }

    /// Serves again on the same port, with the same objects and history (an API server
    /// restart: etcd keeps them).
    pub fn restart(&mut self) {
        self.stop();
        self.serve();
    }

    fn serve(&mut self) {
        let listener = self.bind(&self.netns.clone(), self.port);
        self.port = listener.local_addr().unwrap().port();
        self.server = Some(self.spawn_server(listener));
    }

    /// Serves the same objects on 127.0.0.1 inside another network namespace too (each
    /// simulated host reaches "the API server" on its own loopback); returns that port. It
    /// stops when the stand-in is dropped, not at [`KubeApi::stop`].
    pub fn serve_in(&mut self, netns: &str) -> u16 {
        let listener = self.bind(netns, 0);
        let port = listener.local_addr().unwrap().port();
        let h = self.spawn_server(listener);
        self.extra.push(h);
        port
    }

    fn bind(&self, netns: &str, want: u16) -> std::net::TcpListener {
        let mut listener = None;
        let netns = netns.to_string();
        // The old listener may take a moment to go; the port is ours meanwhile.
        wait_for(
            "the Kubernetes API stand-in to bind",
            Duration::from_secs(10),
            || {
                let l = in_netns(&netns, move || {
                    std::net::TcpListener::bind(("127.0.0.1", want))
                });
                match l {
                    Ok(l) => {
                        listener = Some(l);
                        true
                    }
                    Err(_) => false,
                }
            },
        );
        let listener = listener.unwrap();
        listener.set_nonblocking(true).unwrap();
        listener
    }

    fn spawn_server(&self, listener: std::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let (shared, tls) = (self.shared.clone(), self.tls.clone());
        self.rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            // Owned here: aborting the server drops every connection with it.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                conns.spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        })
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.state.lock().unwrap().rv
    }

    /// What was served so far.
    pub fn served(&self) -> Served {
        self.shared.state.lock().unwrap().served.clone()
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        let rv = {
            let mut s = self.shared.state.lock().unwrap();
            s.rv += 1;
            f(&mut s);
            s.rv
        };
        self.shared.rv.send_replace(rv);
    }

    /// Creates or replaces a pod bound to `node` with `labels`.
    pub fn put_pod(&self, namespace: &str, name: &str, node: &str, labels: &[(&str, &str)]) {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.to_string()),
                containers: vec![k8s_openapi::api::core::v1::Container {
                    name: "c".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        self.put_pod_object(pod);
    }

    /// Creates or replaces a pod as given (its status included: kubelet's `podIPs`); the
    /// server sets uid and resourceVersion.
    pub fn put_pod_object(&self, mut pod: Pod) {
        self.change(move |s| {
            let namespace = pod.metadata.namespace.clone().unwrap();
            let name = pod.metadata.name.clone().unwrap();
            pod.metadata.uid = Some(format!("uid-{namespace}-{name}"));
            pod.metadata.resource_version = Some(s.rv.to_string());
            let existed = s.pods.insert((namespace, name), pod.clone()).is_some();
            let t = if existed {
                EventType::Modified
            } else {
                EventType::Added
            };
            s.record(t, Obj::Pod(Box::new(pod)));
        });
    }

    /// The pod as stored, if it exists.
    pub fn pod_object(&self, namespace: &str, name: &str) -> Option<Pod> {
        let s = self.shared.state.lock().unwrap();
        s.pods
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Replaces a pod's labels (it must exist); the rest of it stays.
    pub fn set_pod_labels(&self, namespace: &str, name: &str, labels: &[(&str, &str)]) {
        let mut pod = {
            let s = self.shared.state.lock().unwrap();
            s.pods[&(namespace.to_string(), name.to_string())].clone()
        };
        pod.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self.put_pod_object(pod);
    }

    /// Creates or replaces a NetworkPolicy (its metadata names its namespace and name).
    pub fn put_network_policy(&self, mut np: NetworkPolicy) {
        self.change(move |s| {
            let namespace = np.metadata.namespace.clone().unwrap();
            let name = np.metadata.name.clone().unwrap();
            np.metadata.uid = Some(format!("uid-np-{namespace}-{name}"));
            np.metadata.resource_version = Some(s.rv.to_string());
            let existed = s.policies.insert((namespace, name), np.clone()).is_some();
            let t = if existed {
                EventType::Modified
            } else {
                EventType::Added
            };
            s.record(t, Obj::NetPol(Box::new(np)));
        });
    }

    pub fn delete_network_policy(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.change(move |s| {
            if let Some(mut np) = s.policies.remove(&key) {
                np.metadata.resource_version = Some(s.rv.to_string());
                s.record(EventType::Deleted, Obj::NetPol(Box::new(np)));
            }
        });
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.change(move |s| {
            if let Some(mut p) = s.pods.remove(&key) {
                p.metadata.resource_version = Some(s.rv.to_string());
                s.record(EventType::Deleted, Obj::Pod(Box::new(p)));
            }
        });
    }

    /// Creates or replaces a namespace.
    pub fn put_namespace(&self, name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
        let map = |l: &[(&str, &str)]| -> BTreeMap<String, String> {
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (mut labels, annotations, name) = (map(labels), map(annotations), name.to_string());
        // As the API server does for every namespace.
        labels.insert("kubernetes.io/metadata.name".into(), name.clone());
        self.change(move |s| {
            let existed = s.namespaces.contains_key(&name);
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    uid: Some(format!("uid-ns-{name}")),
                    resource_version: Some(s.rv.to_string()),
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                ..Default::default()
            };
            s.namespaces.insert(name, ns.clone());
            let t = if existed {
                EventType::Modified
            } else {
                EventType::Added
            };
            s.record(t, Obj::Ns(Box::new(ns)));
        });
    }

    /// Forgets the history up to now (etcd compaction): a watch from any earlier
    /// resourceVersion gets 410 Gone and its client must list again.
    pub fn compact(&self) {
        let mut s = self.shared.state.lock().unwrap();
        s.oldest = s.rv;
        let oldest = s.oldest;
        s.history.retain(|(rv, _, _)| *rv > oldest);
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        for h in self.extra.drain(..) {
            h.abort();
        }
        self.stop();
    }
}

/// A field selector, as far as the stand-in understands them.
#[derive(Default, Debug)]
struct Selector {
    node: Option<String>,
    name: Option<String>,
}

impl Selector {
    fn parse(s: Option<&str>) -> Result<Selector, String> {
        let mut sel = Selector::default();
        for term in s.unwrap_or_default().split(',').filter(|t| !t.is_empty()) {
            match term.split_once('=') {
                Some(("spec.nodeName", v)) => sel.node = Some(v.to_string()),
                Some(("metadata.name", v)) => sel.name = Some(v.to_string()),
                _ => return Err(format!("field label not supported: {term}")),
            }
        }
        Ok(sel)
    }

    fn matches_pod(&self, p: &Pod) -> bool {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_ref());
        self.node.as_ref().is_none_or(|n| node == Some(n))
            && self
                .name
                .as_ref()
                .is_none_or(|n| p.metadata.name.as_ref() == Some(n))
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn json(code: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).unwrap())).boxed())
        .unwrap()
}

fn status(code: u16, reason: &str, message: String) -> Status {
    Status {
        code: Some(code.into()),
        reason: Some(reason.into()),
        message: Some(message),
        status: Some("Failure".into()),
        ..Default::default()
    }
}

fn failure(code: u16, reason: &str, message: String) -> Response<Body> {
    json(
        StatusCode::from_u16(code).unwrap(),
        &status(code, reason, message),
    )
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.token));
    if !authorized {
        shared.state.lock().unwrap().served.unauthorized += 1;
        return failure(401, "Unauthorized", "Unauthorized".into());
    }
    if req.method() != hyper::Method::GET {
        return failure(
            405,
            "MethodNotAllowed",
            "the stand-in serves GET only".into(),
        );
    }
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let path: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    if path.last() == Some(&"pods") {
        let f = query.get("fieldSelector").cloned().unwrap_or_default();
        shared.state.lock().unwrap().served.pod_selectors.push(f);
    }
    let sel = match Selector::parse(query.get("fieldSelector").map(String::as_str)) {
        Ok(s) => s,
        Err(e) => return failure(400, "BadRequest", e),
    };
    match path.as_slice() {
        ["api", "v1", "pods"] => collection(shared, Kind::Pod, &query, sel),
        ["api", "v1", "namespaces"] => collection(shared, Kind::Ns, &query, sel),
        ["apis", "networking.k8s.io", "v1", "networkpolicies"] => {
            collection(shared, Kind::NetPol, &query, sel)
        }
        ["api", "v1", "namespaces", ns, "pods", name] => {
            let mut s = shared.state.lock().unwrap();
            s.served.pod_gets += 1;
            match s.pods.get(&(ns.to_string(), name.to_string())) {
                Some(p) => json(StatusCode::OK, p),
                None => failure(404, "NotFound", format!("pods \"{name}\" not found")),
            }
        }
        ["api", "v1", "namespaces", name] => {
            let mut s = shared.state.lock().unwrap();
            s.served.namespace_gets += 1;
            match s.namespaces.get(*name) {
                Some(n) => json(StatusCode::OK, n),
                None => failure(404, "NotFound", format!("namespaces \"{name}\" not found")),
            }
        }
        _ => failure(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        ),
    }
}

fn collection(
    shared: &Arc<Shared>,
    kind: Kind,
    query: &BTreeMap<String, String>,
    sel: Selector,
) -> Response<Body> {
    let mut s = shared.state.lock().unwrap();
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        drop(s);
        return watch(shared, kind, query, sel);
    }
    let meta = ListMeta {
        resource_version: Some(s.rv.to_string()),
        ..Default::default()
    };
    match kind {
        Kind::Pod => {
            s.served.pod_lists += 1;
            let items = s
                .pods
                .values()
                .filter(|p| sel.matches_pod(p))
                .cloned()
                .collect();
            json(
                StatusCode::OK,
                &k8s_openapi::List::<Pod> {
                    items,
                    metadata: meta,
                },
            )
        }
        Kind::NetPol => {
            s.served.policy_lists += 1;
            let items = s.policies.values().cloned().collect();
            json(
                StatusCode::OK,
                &k8s_openapi::List::<NetworkPolicy> {
                    items,
                    metadata: meta,
                },
            )
        }
        Kind::Ns => {
            s.served.namespace_lists += 1;
            let items = s
                .namespaces
                .values()
                .filter(|n| Obj::Ns(Box::new((*n).clone())).matches(Kind::Ns, &sel))
                .cloned()
                .collect();
            json(
                StatusCode::OK,
                &k8s_openapi::List::<Namespace> {
                    items,
                    metadata: meta,
                },
            )
        }
    }
}

fn event_line(t: EventType, o: &Obj) -> Bytes {
    fn ev<T: Clone>(t: EventType, x: &T) -> WatchEvent<T> {
        match t {
            EventType::Added => WatchEvent::Added(x.clone()),
            EventType::Modified => WatchEvent::Modified(x.clone()),
            EventType::Deleted => WatchEvent::Deleted(x.clone()),
        }
    }
    let mut v = match o {
        Obj::Pod(p) => serde_json::to_vec(&ev(t, p.as_ref())),
        Obj::Ns(n) => serde_json::to_vec(&ev(t, n.as_ref())),
        Obj::NetPol(n) => serde_json::to_vec(&ev(t, n.as_ref())),
    }
    .unwrap();
    v.push(b'\n');
    Bytes::from(v)
}

fn line<T: serde::Serialize>(e: &WatchEvent<T>) -> Bytes {
    let mut v = serde_json::to_vec(e).unwrap();
    v.push(b'\n');
    Bytes::from(v)
}

/// A BOOKMARK event as the API server sends it: an object of the watched kind (apiVersion and
/// kind included; k8s-openapi's `WatchEvent::Bookmark` leaves them out) with only its
/// resourceVersion.
fn bookmark<K: k8s_openapi::Resource>(rv: u64) -> Bytes {
    let mut v = serde_json::to_vec(&serde_json::json!({
        "type": "BOOKMARK",
        "object": {"apiVersion": K::API_VERSION, "kind": K::KIND, "metadata": {"resourceVersion": rv.to_string()}},
    }))
    .unwrap();
    v.push(b'\n');
    Bytes::from(v)
}

/// A watch: the history after the asked resourceVersion, then changes as they come, and
/// bookmarks when idle; ends at `timeoutSeconds` or when the client goes.
fn watch(
    shared: &Arc<Shared>,
    kind: Kind,
    query: &BTreeMap<String, String>,
    sel: Selector,
) -> Response<Body> {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let shared = shared.clone();
    let gone = {
        let mut s = shared.state.lock().unwrap();
        match kind {
            Kind::Pod => {
                s.served.pod_watches += 1;
                s.served.pod_watch_versions.push(from);
            }
            Kind::Ns => s.served.namespace_watches += 1,
            Kind::NetPol => s.served.policy_watches += 1,
        }
        // "0" (any version) starts from now; older than the kept history is gone.
        let gone = from != 0 && from < s.oldest;
        if gone {
            s.served.gone += 1;
        }
        gone
    };
    let mut rv_rx = shared.rv.subscribe();
    tokio::spawn(async move {
        if gone {
            let st = status(410, "Expired", format!("too old resource version: {from}"));
            let _ = tx.send(line(&WatchEvent::<Pod>::ErrorStatus(st))).await;
            return;
        }
        let mut sent = if from == 0 {
            *rv_rx.borrow_and_update()
        } else {
            from
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rv_rx.borrow_and_update();
            let lines: Vec<Bytes> = {
                let s = shared.state.lock().unwrap();
                let out = s
                    .history
                    .iter()
                    .filter(|(rv, _, o)| *rv > sent && o.matches(kind, &sel))
                    .map(|(_, t, o)| event_line(*t, o))
                    .collect();
                sent = sent.max(s.rv);
                out
            };
            for l in lines {
                if tx.send(l).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = rv_rx.changed() => {}
                _ = tokio::time::sleep(BOOKMARK_EVERY) => {
                    if bookmarks {
                        let rv = {
                            let mut s = shared.state.lock().unwrap();
                            if kind == Kind::Pod {
                                s.served.pod_bookmarks += 1;
                            }
                            // Only what was sent: a change not yet streamed must not be skipped.
                            sent
                        };
                        let b = match kind {
                            Kind::Pod => bookmark::<Pod>(rv),
                            Kind::Ns => bookmark::<Namespace>(rv),
                            Kind::NetPol => bookmark::<NetworkPolicy>(rv),
                        };
                        if tx.send(b).await.is_err() {
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    let body = StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(body))
        .unwrap()
}
