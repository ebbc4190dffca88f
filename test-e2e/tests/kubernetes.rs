//! The agent and the Kubernetes API: placement by pod labels (and namespace defaults) read over
//! HTTPS with in-cluster credentials from the API stand-in (test_e2e::kube_api), kept in the
//! agent's watch cache across an API restart and an expired resourceVersion.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_e2e::kube_api::KubeApi;
use test_e2e::{Host, Netmaster, Pod, wait_for};

const TENANT: &str = "io.contiv.tenant";
const NETWORK: &str = "io.contiv.network";
const GROUP: &str = "io.contiv.net-group";

/// A netmaster with `default/default-net` and `blue/web-net` (group `web`), a host "host1", and
/// the API stand-in inside the host's namespace with its token and CA files.
fn setup() -> (Netmaster, Host, KubeApi) {
    let m = Netmaster::start();
    m.network("default", "default-net", "10.1.2.0/24", "10.1.2.1");
    m.network("blue", "web-net", "10.7.0.0/24", "10.7.0.1");
    let (s, v) = m.api(
        "POST",
        "/api/v1/endpointGroups/blue:web/",
        Some(json!({"tenantName": "blue", "groupName": "web", "networkName": "web-net"})),
    );
    assert_eq!(s, 200, "{v}");
    let h = Host::netns_only(&m, "host1");
    let api = KubeApi::start(&format!("/var/run/netns/{}", h.ns), &h.dir.join("kube"));
    (m, h, api)
}

/// Boots the agent as a DaemonSet pod would run it: in-cluster settings from the environment,
/// the service account's token and CA (here at the stand-in's paths).
fn boot_in_cluster(h: &mut Host, api: &KubeApi) {
    h.set_agent_env("KUBERNETES_SERVICE_HOST", "127.0.0.1");
    h.set_agent_env("KUBERNETES_SERVICE_PORT", &api.port.to_string());
    let token = format!("--k8s-token-file={}", api.token_file().display());
    let ca = format!("--k8s-ca-file={}", api.ca_file().display());
    h.boot(&["--k8s-in-cluster", &token, &ca]);
}

/// Waits until the agent watches its pods (and the namespaces): its caches hold the first list
/// by then (kube's watcher lists, reports the list done, then watches).
fn wait_watching(api: &KubeApi, watches_before: u32) {
    wait_for(
        "the agent to watch its pods",
        Duration::from_secs(30),
        || {
            let s = api.served();
            s.pod_watches > watches_before && s.namespace_watches > 0
        },
    );
}

fn add(h: &Host, p: &Pod, ns: &str, name: &str) -> test_e2e::CniOutput {
    let conf = h.conf("1.1.0", json!({}));
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID=x"
    );
    test_e2e::cni_call_with(
        &test_e2e::bin("contiv"),
        "ADD",
        &p.container_id,
        &p.netns_path(),
        "eth0",
        &conf,
        &[("CNI_ARGS", &args)],
    )
}

fn del(h: &Host, p: &Pod) {
    let conf = h.conf("1.1.0", json!({}));
    let out = h.cni("DEL", &p.container_id, &p.netns_path(), "eth0", &conf);
    assert!(out.ok(), "{}", out.stdout);
}

/// The endpoint of `container` ("ns/name") in netmaster: (tenant, network, group).
fn placement(m: &Netmaster, container: &str) -> (String, String, String) {
    let eps = m.endpoints();
    let ep = eps
        .iter()
        .find(|e| e["containerName"] == container)
        .unwrap_or_else(|| panic!("no endpoint of {container} in {eps:?}"));
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&ep["tenantName"]),
        s(&ep["networkName"]),
        s(&ep["groupName"]),
    )
}

/// ADDs the pod until it is placed in `tenant`/`network` (the agent's caches follow the API's
/// watch events, which arrive in their own time and, for pods and namespaces, in no set order:
/// an ADD in between may fail or land elsewhere), DELeting each wrong attempt; panics after 20 s.
fn add_until_in(
    m: &Netmaster,
    h: &Host,
    p: &Pod,
    ns: &str,
    name: &str,
    tenant: &str,
    network: &str,
) {
    let container = format!("{ns}/{name}");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let out = add(h, p, ns, name);
        let last = if out.ok() {
            let (t, n, _) = placement(m, &container);
            if (t.as_str(), n.as_str()) == (tenant, network) {
                return;
            }
            format!("placed in {t}/{n}")
        } else {
            out.stdout.clone()
        };
        del(h, p);
        assert!(
            Instant::now() < end,
            "{container} not placed in {tenant}/{network} within 20 s; last ADD: {last}\n{}",
            h.agent_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pods_are_placed_by_labels_from_the_https_api_with_in_cluster_credentials() {
    let (m, mut h, api) = setup();
    api.put_namespace("shop", &[(TENANT, "blue")], &[(NETWORK, "web-net")]);
    api.put_namespace("plain", &[], &[]);
    api.put_pod(
        "shop",
        "front-1",
        "host1",
        &[
            ("app", "front"),
            (TENANT, "blue"),
            (NETWORK, "web-net"),
            (GROUP, "web"),
        ],
    );
    api.put_pod("shop", "bare", "host1", &[("app", "bare")]);
    api.put_pod(
        "plain",
        "other-node",
        "host2",
        &[(TENANT, "blue"), (NETWORK, "web-net")],
    );
    boot_in_cluster(&mut h, &api);
    wait_watching(&api, 0);

    // Its own labels.
    let p = Pod::new();
    let out = add(&h, &p, "shop", "front-1");
    assert!(out.ok(), "{} {}", out.stdout, h.agent_log());
    assert_eq!(out.json["ips"][0]["address"], "10.7.0.2/24");
    assert_eq!(
        placement(&m, "shop/front-1"),
        ("blue".into(), "web-net".into(), "web".into())
    );
    let eps = m.endpoints();
    let ep = eps
        .iter()
        .find(|e| e["containerName"] == "shop/front-1")
        .unwrap();
    assert_eq!(ep["labels"]["app"], "front");
    // No placement labels: the namespace's label (tenant) and annotation (network).
    let q = Pod::new();
    let out = add(&h, &q, "shop", "bare");
    assert!(out.ok(), "{} {}", out.stdout, h.agent_log());
    assert_eq!(
        placement(&m, "shop/bare"),
        ("blue".into(), "web-net".into(), String::new())
    );
    // Both came from the caches: no direct GET.
    let served = api.served();
    assert_eq!(
        (served.pod_gets, served.namespace_gets),
        (0, 0),
        "{served:?}"
    );
    // The agent asked only for its node's pods.
    assert!(
        served
            .pod_selectors
            .iter()
            .all(|s| s == "spec.nodeName=host1"),
        "{served:?}"
    );
    assert!(served.unauthorized == 0, "{served:?}");

    // A pod the watch does not bring (here: bound to another node) is read directly.
    let r = Pod::new();
    let out = add(&h, &r, "plain", "other-node");
    assert!(out.ok(), "{} {}", out.stdout, h.agent_log());
    assert_eq!(placement(&m, "plain/other-node").1, "web-net");
    assert_eq!(api.served().pod_gets, 1);

    // Labels changed live reach the cache: the next ADD of the pod goes by the new ones.
    del(&h, &p);
    api.set_pod_labels(
        "shop",
        "front-1",
        &[("app", "front"), (NETWORK, "default-net")],
    );
    // The namespace still gives the tenant; the pod's network label wins over the namespace's.
    api.put_namespace("shop", &[(TENANT, "default")], &[(NETWORK, "web-net")]);
    add_until_in(&m, &h, &p, "shop", "front-1", "default", "default-net");
    assert_eq!(
        api.served().pod_gets,
        1,
        "the changed pod came from the cache"
    );

    for x in [&p, &q, &r] {
        del(&h, x);
    }
    assert!(m.endpoints().is_empty());
}

#[test]
fn the_cache_survives_an_api_restart_and_an_expired_resource_version() {
    let (m, mut h, mut api) = setup();
    api.put_namespace("shop", &[], &[]);
    api.put_pod(
        "shop",
        "front-1",
        "host1",
        &[(TENANT, "blue"), (NETWORK, "web-net")],
    );
    boot_in_cluster(&mut h, &api);
    wait_watching(&api, 0);
    let p = Pod::new();
    add_until_in(&m, &h, &p, "shop", "front-1", "blue", "web-net");
    del(&h, &p);

    // Bookmarks: changes the agent does not watch (another node's pod) still move its
    // resourceVersion on, through the bookmarks it asked for.
    api.put_pod("shop", "elsewhere", "host2", &[]);
    let rv = api.resource_version();
    let bookmarks = api.served().pod_bookmarks;
    wait_for(
        "two pod bookmarks after the change",
        Duration::from_secs(10),
        || api.served().pod_bookmarks >= bookmarks + 2,
    );

    // An API restart, with a change made while it was down: the watch resumes from its
    // resourceVersion (no new list) and replays the change.
    api.stop();
    api.set_pod_labels("shop", "front-1", &[(NETWORK, "default-net")]);
    let before = api.served();
    api.restart();
    wait_watching(&api, before.pod_watches);
    let served = api.served();
    assert_eq!(
        served.pod_lists, before.pod_lists,
        "a resumed watch needs no list: {served:?}"
    );
    assert_eq!(
        served.pod_watch_versions[before.pod_watches as usize], rv,
        "the watch resumed from the bookmark's version: {served:?}"
    );
    add_until_in(&m, &h, &p, "shop", "front-1", "default", "default-net");
    del(&h, &p);

    // The history the agent's version points into is compacted while the API is down: its
    // watch gets 410 Gone, it lists again and sees the change made meanwhile.
    api.stop();
    api.set_pod_labels("shop", "front-1", &[(TENANT, "blue"), (NETWORK, "web-net")]);
    api.compact();
    let before = api.served();
    api.restart();
    wait_for("a relist after 410 Gone", Duration::from_secs(30), || {
        let s = api.served();
        s.gone > before.gone
            && s.pod_lists > before.pod_lists
            && s.pod_watches > before.pod_watches + 1
    });
    add_until_in(&m, &h, &p, "shop", "front-1", "blue", "web-net");
    let served = api.served();
    assert_eq!(
        served.pod_gets, 0,
        "every ADD came from the cache: {served:?}"
    );
    del(&h, &p);
    assert!(m.endpoints().is_empty());
}

#[test]
fn a_wrong_token_is_refused_and_the_add_says_so() {
    let (_m, mut h, api) = setup();
    api.put_namespace("shop", &[], &[]);
    api.put_pod(
        "shop",
        "front-1",
        "host1",
        &[(TENANT, "blue"), (NETWORK, "web-net")],
    );
    let bad = h.dir.join("bad-token");
    std::fs::write(&bad, "not-the-token").unwrap();
    h.set_agent_env("KUBERNETES_SERVICE_HOST", "127.0.0.1");
    h.set_agent_env("KUBERNETES_SERVICE_PORT", &api.port.to_string());
    let token = format!("--k8s-token-file={}", bad.display());
    let ca = format!("--k8s-ca-file={}", api.ca_file().display());
    h.boot(&["--k8s-in-cluster", &token, &ca]);
    let p = Pod::new();
    let out = add(&h, &p, "shop", "front-1");
    assert!(!out.ok(), "{}", out.stdout);
    assert!(
        out.stdout.contains("pod shop/front-1") && out.stdout.contains(&api.url()),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("refused the token") && out.stdout.contains("--k8s-token-file"),
        "{}",
        out.stdout
    );
    assert!(api.served().unauthorized > 0);
}

#[test]
fn a_server_certificate_from_another_ca_is_refused_and_the_add_says_so() {
    let (_m, mut h, api) = setup();
    api.put_pod("shop", "front-1", "host1", &[(TENANT, "blue")]);
    // Another stand-in's CA did not sign this one's certificate.
    let other = KubeApi::start(&format!("/var/run/netns/{}", h.ns), &h.dir.join("other"));
    let token = format!("--k8s-token-file={}", api.token_file().display());
    let ca = format!("--k8s-ca-file={}", other.ca_file().display());
    h.boot(&["--k8s-api", &api.url(), &token, &ca]);
    let p = Pod::new();
    let out = add(&h, &p, "shop", "front-1");
    assert!(!out.ok(), "{}", out.stdout);
    assert!(
        out.stdout.contains(&api.url()) && out.stdout.contains("--k8s-ca-file"),
        "{}",
        out.stdout
    );
    let served = api.served();
    assert_eq!((served.pod_gets, served.pod_lists), (0, 0), "{served:?}");
}

/// The agent as a host service with a kubeconfig (server, CA file, token file): the same watch
/// and placement.
#[test]
fn a_kubeconfig_file_works_too() {
    let (m, mut h, api) = setup();
    api.put_namespace("shop", &[(TENANT, "blue")], &[]);
    api.put_pod(
        "shop",
        "front-1",
        "host1",
        &[(NETWORK, "web-net"), (GROUP, "web")],
    );
    let kubeconfig = h.dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: agent\n  user:\n    tokenFile: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: agent\n",
            api.url(),
            api.ca_file().display(),
            api.token_file().display()
        ),
    )
    .unwrap();
    h.boot(&[&format!("--kubeconfig={}", kubeconfig.display())]);
    wait_watching(&api, 0);
    let p = Pod::new();
    let out = add(&h, &p, "shop", "front-1");
    assert!(out.ok(), "{} {}", out.stdout, h.agent_log());
    assert_eq!(
        placement(&m, "shop/front-1"),
        ("blue".into(), "web-net".into(), "web".into())
    );
    let served = api.served();
    assert_eq!(
        (served.pod_gets, served.namespace_gets),
        (0, 0),
        "{served:?}"
    );
    del(&h, &p);
}
