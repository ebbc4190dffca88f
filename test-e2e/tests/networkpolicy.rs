//! Kubernetes NetworkPolicy enforced with real packets, in the shape of the upstream e2e suite
//! (test/e2e/network/netpol): namespaces x, y, z with pods a, b, c each, spread over two hosts,
//! every pod serving TCP and UDP on ports 80 and 81 (named `serve-<port>-<proto>`). After each
//! policy change the full reachability matrix (every pod to every other pod) is probed and must
//! equal the expected one: allowed connections connect, refused ones do not. The policies, pods
//! (with kubelet's `status.podIPs`) and namespaces are served by the HTTPS API stand-in; the
//! agents run with `--k8s-network-policy`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod as KPod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use test_e2e::kube_api::KubeApi;
use test_e2e::{Host, Netmaster, Pod, Underlay, wait_for};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
/// How long a policy change may take to show in every probe (it is usually well under 1 s).
const CONVERGE: Duration = Duration::from_secs(20);

/// TCP or UDP to a port, over IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Probe {
    Tcp(u16),
    Udp(u16),
}

/// A running test pod: its namespace and the servers it runs.
struct KubePod {
    ns: String,
    name: String,
    pod: Pod,
    host: usize,
}

impl KubePod {
    fn id(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }
    fn addr(&self, v6: bool) -> String {
        if v6 {
            self.pod.ipv6()
        } else {
            self.pod.ip.clone()
        }
    }
}

/// TCP and UDP servers on ports 80 and 81 (both families) in every pod, until dropped.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Servers {
    fn start(pods: &[KubePod]) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for p in pods {
            for port in [80u16, 81] {
                // `[::]` is dual-stack in a fresh namespace (bindv6only=0).
                let tcp = p
                    .pod
                    .in_ns(move || TcpListener::bind(("::", port)).expect("listen"));
                tcp.set_nonblocking(true).unwrap();
                let udp = p
                    .pod
                    .in_ns(move || UdpSocket::bind(("::", port)).expect("bind udp"));
                udp.set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let s = stop.clone();
                threads.push(std::thread::spawn(move || {
                    // Accept and drop: probes only need the handshake.
                    while !s.load(Ordering::Relaxed) {
                        match tcp.accept() {
                            Ok(_) => {}
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                }));
                let s = stop.clone();
                threads.push(std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while !s.load(Ordering::Relaxed) {
                        if let Ok((n, from)) = udp.recv_from(&mut buf) {
                            let _ = udp.send_to(&buf[..n], from);
                        }
                    }
                }));
            }
        }
        Servers { stop, threads }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One probe from a pod's namespace: a TCP handshake, or a UDP echo answered.
fn probe_once(netns: String, to: SocketAddr, p: Probe) -> bool {
    test_e2e::in_netns(&netns, move || match p {
        Probe::Tcp(_) => TcpStream::connect_timeout(&to, Duration::from_millis(1000)).is_ok(),
        Probe::Udp(_) => {
            let any: SocketAddr = if to.is_ipv6() {
                "[::]:0".parse().unwrap()
            } else {
                "0.0.0.0:0".parse().unwrap()
            };
            let s = UdpSocket::bind(any).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(330)))
                .unwrap();
            let mut buf = [0u8; 16];
            (0..3).any(|_| {
                let _ = s.send_to(b"probe", to);
                matches!(s.recv_from(&mut buf), Ok((5, from)) if from.port() == to.port())
            })
        }
    })
}

/// The cluster: netmaster, two hosts whose agents enforce NetworkPolicy, the API stand-in
/// reachable from both, and the nine pods with their servers.
struct World {
    // Drop order: servers, pods, hosts, then the rest.
    servers: Option<Servers>,
    pods: Vec<KubePod>,
    hosts: Vec<Host>,
    api: KubeApi,
    _underlay: Underlay,
    _master: Netmaster,
}

fn ports_of_pod() -> Vec<ContainerPort> {
    let mut v = Vec::new();
    for port in [80, 81] {
        for proto in ["TCP", "UDP"] {
            v.push(ContainerPort {
                name: Some(format!("serve-{port}-{}", proto.to_lowercase())),
                container_port: port,
                protocol: Some(proto.into()),
                ..Default::default()
            });
        }
    }
    v
}

fn kube_pod(ns: &str, name: &str, node: &str, labels: &[(&str, &str)], ips: &[String]) -> KPod {
    KPod {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "cont-80-81".into(),
                image: Some("agnhost".into()),
                ports: Some(ports_of_pod()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: (!ips.is_empty()).then(|| PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ips[0].clone()),
            pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
            ..Default::default()
        }),
    }
}

impl World {
    fn start() -> World {
        let master = Netmaster::start();
        master.dual_stack_network("net", "10.1.2.0/24", "10.1.2.1", "fd00:12::/64");
        let underlay = Underlay::new();
        let mut hosts: Vec<Host> = (1..=2)
            .map(|i| Host::netns_only(&master, &format!("host{i}")))
            .collect();
        let mut api = KubeApi::start(
            &format!("/var/run/netns/{}", hosts[0].ns),
            &hosts[0].dir.join("kube"),
        );
        let mut ports = vec![api.port];
        ports.push(api.serve_in(&format!("/var/run/netns/{}", hosts[1].ns)));
        for ns in NAMESPACES {
            api.put_namespace(ns, &[("ns", ns)], &[]);
        }
        for (h, port) in hosts.iter_mut().zip(ports) {
            let vtep = underlay.attach(&h.ns);
            h.vtep = vtep.clone();
            let url = format!("--k8s-api=https://127.0.0.1:{port}");
            let token = format!("--k8s-token-file={}", api.token_file().display());
            let ca = format!("--k8s-ca-file={}", api.ca_file().display());
            h.boot(&[
                "--vtep-ip",
                &vtep,
                "--vtep-intf",
                Underlay::NIC,
                &url,
                &token,
                &ca,
                "--k8s-network-policy",
            ]);
        }
        wait_for("a tunnel mesh", Duration::from_secs(20), || {
            hosts.iter().all(|h| test_e2e::tunnels(h).len() == 1)
        });
        let mut pods = Vec::new();
        for (i, (ns, name)) in NAMESPACES
            .iter()
            .flat_map(|ns| PODS.iter().map(move |p| (*ns, *p)))
            .enumerate()
        {
            let host = i % 2;
            let h = &hosts[host];
            let labels = [("pod", name)];
            // The pod is bound to its node before kubelet calls CNI; its addresses come after.
            api.put_pod_object(kube_pod(ns, name, &h.name, &labels, &[]));
            let p = Pod::new();
            let args = format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={}",
                p.container_id
            );
            let out = test_e2e::cni_call_with(
                &test_e2e::bin("contiv"),
                "ADD",
                &p.container_id,
                &p.netns_path(),
                "eth0",
                &h.conf("1.0.0", json!({"network": "net"})),
                &[("CNI_ARGS", &args)],
            );
            assert!(
                out.ok(),
                "ADD {ns}/{name}: {} {}",
                out.stdout,
                h.agent_log()
            );
            let mut p = p;
            p.result = out.json.clone();
            p.ip = out.json["ips"][0]["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string();
            let ips = vec![p.ip.clone(), p.ipv6()];
            api.put_pod_object(kube_pod(ns, name, &h.name, &labels, &ips));
            pods.push(KubePod {
                ns: ns.into(),
                name: name.into(),
                pod: p,
                host,
            });
        }
        eprintln!("pods ready");
        let servers = Servers::start(&pods);
        World {
            servers: Some(servers),
            pods,
            hosts,
            api,
            _underlay: underlay,
            _master: master,
        }
    }

    fn pod(&self, id: &str) -> &KubePod {
        self.pods.iter().find(|p| p.id() == id).unwrap()
    }

    fn logs(&self) -> String {
        self.hosts
            .iter()
            .map(|h| format!("--- {} ---\n{}", h.name, h.agent_log()))
            .collect()
    }

    /// Every pod to every other pod, all probes at once: (from, to) -> connected.
    fn matrix(&self, p: Probe, v6: bool) -> BTreeMap<(String, String), bool> {
        let mut jobs = Vec::new();
        for from in &self.pods {
            for to in &self.pods {
                if from.id() == to.id() {
                    continue;
                }
                let port = match p {
                    Probe::Tcp(n) | Probe::Udp(n) => n,
                };
                let addr: SocketAddr = if v6 {
                    format!("[{}]:{port}", to.addr(true))
                } else {
                    format!("{}:{port}", to.addr(false))
                }
                .parse()
                .unwrap();
                let netns = from.pod.netns_path();
                let key = (from.id(), to.id());
                jobs.push((key, std::thread::spawn(move || probe_once(netns, addr, p))));
            }
        }
        jobs.into_iter()
            .map(|(k, j)| (k, j.join().expect("probe")))
            .collect()
    }

    /// Waits until the matrix of `p` equals `allowed(from, to)` for every pair at once.
    fn expect(&self, case: &str, p: Probe, v6: bool, allowed: impl Fn(&str, &str) -> bool) {
        let want: BTreeMap<(String, String), bool> = self
            .pods
            .iter()
            .flat_map(|f| self.pods.iter().map(move |t| (f, t)))
            .filter(|(f, t)| f.id() != t.id())
            .map(|(f, t)| ((f.id(), t.id()), allowed(&f.id(), &t.id())))
            .collect();
        let start = Instant::now();
        let end = start + CONVERGE;
        let mut rounds = 0;
        loop {
            let got = self.matrix(p, v6);
            rounds += 1;
            if got == want {
                eprintln!("{case}: {rounds} round(s), {:?}", start.elapsed());
                return;
            }
            if Instant::now() > end {
                let wrong: Vec<String> = want
                    .iter()
                    .filter(|(k, v)| got.get(*k) != Some(*v))
                    .map(|((f, t), v)| {
                        format!(
                            "{f} -> {t}: want {}",
                            if *v { "allowed" } else { "refused" }
                        )
                    })
                    .collect();
                panic!(
                    "{case} ({p:?}, {}): the matrix differs after {CONVERGE:?}:\n{}\n{}",
                    if v6 { "IPv6" } else { "IPv4" },
                    wrong.join("\n"),
                    self.logs()
                );
            }
        }
    }

    fn policy(&self, ns: &str, name: &str, spec: Value) {
        let np: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": spec,
        }))
        .expect("a NetworkPolicy");
        self.api.put_network_policy(np);
    }

    fn relabel_pod(&self, id: &str, labels: &[(&str, &str)]) {
        let p = self.pod(id);
        self.api.set_pod_labels(&p.ns, &p.name, labels);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.servers.take();
    }
}

/// A TCP connection from `from` to an echo server (port 8080) in `to`.
fn echo_connection(from: &KubePod, to: &KubePod) -> TcpStream {
    use std::io::{Read, Write};
    let l = to
        .pod
        .in_ns(|| TcpListener::bind(("::", 8080)).expect("listen 8080"));
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut buf = [0u8; 256];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 || c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let addr: SocketAddr = format!("{}:8080", to.addr(false)).parse().unwrap();
    let c = from
        .pod
        .in_ns(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .expect("connect to the echo server");
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

/// Sends `data` and reads as much back.
fn echo(c: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    c.write_all(data).expect("send on the held connection");
    let mut got = vec![0u8; data.len()];
    c.read_exact(&mut got).expect("echo on the held connection");
    got
}

/// Everything allowed but what `deny` says.
fn all_but(deny: impl Fn(&str, &str) -> bool) -> impl Fn(&str, &str) -> bool {
    move |f, t| !deny(f, t)
}

#[test]
fn network_policies_match_the_upstream_reachability_matrices() {
    let w = World::start();
    let tcp80 = Probe::Tcp(80);

    // No policy: everyone reaches everyone (the probes themselves work, both ways).
    w.expect("no policy", tcp80, false, |_, _| true);
    w.expect("no policy", Probe::Udp(80), false, |_, _| true);

    // An established connection (x/b to an echo server in x/a), to check that later
    // policies do not cut it.
    let mut held = echo_connection(w.pod("x/b"), w.pod("x/a"));
    assert_eq!(echo(&mut held, b"before"), b"before");

    // Default deny ingress in x: nothing reaches x's pods, they still reach out.
    w.policy(
        "x",
        "deny-ingress",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    w.expect(
        "deny all ingress in x",
        tcp80,
        false,
        all_but(|_, t| t.starts_with("x/")),
    );
    // ... over IPv6 as well (no side door), and UDP.
    w.expect(
        "deny all ingress in x",
        tcp80,
        true,
        all_but(|_, t| t.starts_with("x/")),
    );
    w.expect(
        "deny all ingress in x",
        Probe::Udp(80),
        false,
        all_but(|_, t| t.starts_with("x/")),
    );
    assert_eq!(
        echo(&mut held, b"still established"),
        b"still established",
        "a connection established before the policy keeps working (conntrack)"
    );
    w.api.delete_network_policy("x", "deny-ingress");
    w.expect("policy deleted", tcp80, false, |_, _| true);

    // Allow x/a from pods b of its own namespace.
    let only_xa = |f: &str, t: &str, ok: &dyn Fn(&str) -> bool| t != "x/a" || ok(f);
    w.policy(
        "x",
        "allow-from-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    );
    w.expect("x/a from pod b (same namespace)", tcp80, false, |f, t| {
        only_xa(f, t, &|f| f == "x/b")
    });
    w.expect("x/a from pod b (same namespace)", tcp80, true, |f, t| {
        only_xa(f, t, &|f| f == "x/b")
    });

    // Updated live: from pods c instead.
    w.policy(
        "x",
        "allow-from-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
    );
    w.expect("policy updated to pod c", tcp80, false, |f, t| {
        only_xa(f, t, &|f| f == "x/c")
    });
    // A pod's labels changed live: x/b becomes a "c".
    w.relabel_pod("x/b", &[("pod", "c")]);
    w.expect("x/b relabelled pod=c", tcp80, false, |f, t| {
        only_xa(f, t, &|f| f == "x/c" || f == "x/b")
    });
    w.relabel_pod("x/b", &[("pod", "b")]);
    w.api.delete_network_policy("x", "allow-from-b");

    // From namespaces by label.
    w.policy(
        "x",
        "allow-from-y",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    );
    w.expect("x/a from namespace y", tcp80, false, |f, t| {
        only_xa(f, t, &|f| f.starts_with("y/"))
    });
    // A namespace's labels changed live: z joins as "y".
    w.api.put_namespace("z", &[("ns", "y")], &[]);
    w.expect("namespace z relabelled ns=y", tcp80, false, |f, t| {
        only_xa(f, t, &|f| f.starts_with("y/") || f.starts_with("z/"))
    });
    w.api.put_namespace("z", &[("ns", "z")], &[]);
    // A pod removed from the API is no peer any more; added back, it is again.
    let saved = w.api.pod_object("y", "c").expect("y/c in the API");
    w.api.delete_pod("y", "c");
    w.expect("pod y/c removed", tcp80, false, |f, t| {
        only_xa(f, t, &|f| f.starts_with("y/") && f != "y/c")
    });
    w.api.put_pod_object(saved);
    w.expect("pod y/c added back", tcp80, false, |f, t| {
        only_xa(f, t, &|f| f.starts_with("y/"))
    });
    w.api.delete_network_policy("x", "allow-from-y");

    // Both selectors in one peer: pods b of namespace y only. A second policy adds pods c of
    // any namespace (separate peers: either): policies add up.
    w.policy(
        "x",
        "allow-from-y-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                      "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    );
    w.expect("x/a from y/b (both selectors)", tcp80, false, |f, t| {
        only_xa(f, t, &|f| f == "y/b")
    });
    w.policy(
        "x",
        "allow-from-any-c",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
    );
    w.expect("two policies add up", tcp80, false, |f, t| {
        only_xa(f, t, &|f| f == "y/b" || f.ends_with("/c"))
    });
    w.api.delete_network_policy("x", "allow-from-y-b");
    w.api.delete_network_policy("x", "allow-from-any-c");

    // ipBlock with except: the pod network but y/b.
    let yb = w.pod("y/b").addr(false);
    w.policy(
        "x",
        "allow-block",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.2.0/24", "except": [format!("{yb}/32")]}}]}]}),
    );
    w.expect("x/a from an ipBlock with except", tcp80, false, |f, t| {
        only_xa(f, t, &|f| f != "y/b")
    });
    // An IPv4 block says nothing of IPv6: over IPv6, x/a is isolated with nothing allowed.
    w.expect(
        "x/a from an IPv4 ipBlock, over IPv6",
        tcp80,
        true,
        |_, t| t != "x/a",
    );
    w.api.delete_network_policy("x", "allow-block");

    // Ports: TCP 81 by name, UDP 80 by number, a range 81-90 on TCP.
    w.policy(
        "x",
        "allow-81-named",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"ports": [{"port": "serve-81-tcp"}, {"protocol": "UDP", "port": 80}]}]}),
    );
    w.expect("named port 81: 80 refused", tcp80, false, |_, t| t != "x/a");
    w.expect(
        "named port 81: 81 allowed",
        Probe::Tcp(81),
        false,
        |_, _| true,
    );
    w.expect("UDP 80 allowed", Probe::Udp(80), false, |_, _| true);
    w.expect("UDP 81 refused", Probe::Udp(81), false, |_, t| t != "x/a");
    w.policy(
        "x",
        "allow-81-named",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"ports": [{"port": 81, "endPort": 90}]}]}),
    );
    w.expect(
        "endPort 81-90: 81 allowed",
        Probe::Tcp(81),
        false,
        |_, _| true,
    );
    w.expect("endPort 81-90: 80 refused", tcp80, false, |_, t| t != "x/a");
    w.api.delete_network_policy("x", "allow-81-named");

    // Egress: x/a may send nothing, then only to y/b on TCP 80.
    w.policy(
        "x",
        "egress",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"]}),
    );
    w.expect("deny all egress of x/a", tcp80, false, |f, _| f != "x/a");
    w.policy(
        "x",
        "egress",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                   "podSelector": {"matchLabels": {"pod": "b"}}}],
                           "ports": [{"protocol": "TCP", "port": 80}]}]}),
    );
    w.expect("x/a egress to y/b only", tcp80, false, |f, t| {
        f != "x/a" || t == "y/b"
    });
    w.expect("x/a egress to y/b only", tcp80, true, |f, t| {
        f != "x/a" || t == "y/b"
    });
    w.expect(
        "x/a egress to y/b TCP 80 only",
        Probe::Tcp(81),
        false,
        |f, _| f != "x/a",
    );
    w.api.delete_network_policy("x", "egress");

    // What cannot be honoured: named, and the selected pods stay closed.
    w.policy(
        "x",
        "odd",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
    );
    w.expect(
        "an unsupported protocol fails closed",
        tcp80,
        false,
        |_, t| t != "x/a",
    );
    let h = &w.hosts[w.pod("x/a").host];
    wait_for(
        "the warning naming the policy",
        Duration::from_secs(10),
        || {
            h.agent_log()
                .contains("NetworkPolicy x/odd: protocol \\\"ICMP\\\"")
                || h.agent_log()
                    .contains("NetworkPolicy x/odd: protocol \"ICMP\"")
        },
    );
    w.api.delete_network_policy("x", "odd");
    w.expect("all policies gone", tcp80, false, |_, _| true);
}
