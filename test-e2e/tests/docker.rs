//! A real Docker Engine (Debian `docker.io` 20.10) using Contiv as its network and IPAM driver:
//! `docker network create -d <plugin> --ipam-driver <plugin>`, containers that ping and talk
//! TCP, a CNI pod on the same network, two tenants with one subnet, `--ip`, restarts of the
//! container, of dockerd and of the agent, and bad input with a leak check after each.
//!
//! Layout: each test has a netmaster, one simulated host (a network namespace with its own OVS
//! and agent) and a private dockerd running in that host's namespace (entered with `nsenter
//! --net` only: `ip netns exec` would remount /sys and hide the cgroup hierarchy dockerd needs).
//! dockerd moves the container side of each veth from the namespace it runs in, which is the
//! agent's: that is how a production node looks (dockerd and netplugin in the root namespace).
//!
//! Docker finds remote plugins only in `/run/docker/plugins`: the plugin's socket there is
//! `cte<pid>x<n>d.sock`, unique per run (the plugin name is the socket's basename); sockets of
//! dead runs are removed. dockerd's state lives under `/tmp/cte-docker/<pid>-<n>` (its own
//! --data-root, --exec-root, socket and pidfile) and is unmounted and removed on drop, even when
//! the test fails. The image is `docker import`ed from a folder holding busybox-static.
//!
//! Needs root, docker.io, Open vSwitch, busybox-static (scripts/setup.sh installs them). Fails,
//! never skips, when dockerd cannot run.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use test_e2e::docker::{Dockerd, IMAGE, PluginSocket, tail, text};
use test_e2e::{Host, Netmaster, Underlay, tunnels, unique, wait_for};

/// A shell line that GETs `/` from `ip:8080` with busybox nc (busybox-static's wget crashes).
fn http_get(ip: &str) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 8080")
}

/// The body of an HTTP/1.0 answer (its last line), or empty.
fn http_body(out: &[u8]) -> String {
    let t = text(out);
    if !t.starts_with("HTTP/1.") {
        return String::new();
    }
    t.lines().last().unwrap_or_default().trim().to_string()
}

/// A CNI pod and the Docker container `c1` (at `ip1`) ping each other, and the pod fetches c1's
/// page over TCP.
fn pod_and_c1_talk(c: &Cluster, pod: &test_e2e::Pod, ip1: &str, where_: &str) {
    assert!(
        pod.reaches(ip1, Duration::from_secs(10)),
        "the CNI pod cannot ping the Docker container{where_}"
    );
    assert!(
        c.reaches("c1", &pod.ip),
        "the Docker container cannot ping the CNI pod{where_}"
    );
    let got = pod.exec(&[
        "busybox",
        "sh",
        "-c",
        &http_get(ip1).replace("nc ", "busybox nc "),
    ]);
    assert_eq!(
        http_body(&got.stdout),
        "hello-c1",
        "TCP from the CNI pod to the Docker container{where_}"
    );
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A netmaster, a host whose agent serves a unique Docker plugin socket, and a dockerd beside it.
/// With authentication on (the default) the agent holds an ops user's token for writing networks
/// (`--docker-token-file`).
struct Cluster {
    docker: Dockerd,
    host: Host,
    master: Netmaster,
    plugin: PluginSocket,
}

impl Cluster {
    fn start() -> Cluster {
        let master = Netmaster::start();
        let plugin = PluginSocket::new();
        let mut host = Host::netns_only(&master, "dockhost");
        host.boot(&strs(&master.docker_agent_args(&plugin.path)));
        plugin.wait();
        let docker = Dockerd::start(&host);
        Cluster {
            docker,
            host,
            master,
            plugin,
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.docker.ok(args, &self.host)
    }

    /// `docker network create -d P --ipam-driver P ARGS... NAME`.
    fn net_create(&self, name: &str, args: &[&str]) -> Result<String, String> {
        let mut a = vec![
            "network",
            "create",
            "-d",
            &self.plugin.name,
            "--ipam-driver",
            &self.plugin.name,
        ];
        a.extend_from_slice(args);
        a.push(name);
        let out = self.docker.run(&a);
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(text(&out.stderr))
        }
    }

    /// A container that serves `hello-<name>` over HTTP on port 8080 and otherwise sleeps.
    fn container(&self, name: &str, network: &str, extra: &[&str]) -> Result<String, String> {
        let mut a = vec!["run", "-d", "--name", name, "--network", network];
        a.extend_from_slice(extra);
        let script = format!(
            "mkdir -p /www && echo hello-{name} > /www/index.html && httpd -p 8080 -h /www && exec sleep 100000"
        );
        a.extend_from_slice(&[IMAGE, "sh", "-c", &script]);
        let out = self.docker.run(&a);
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(text(&out.stderr))
        }
    }

    fn ip_of(&self, container: &str, network: &str) -> String {
        let f = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        self.ok(&["inspect", "-f", &f, container])
    }

    /// A running container's network namespace as a [`test_e2e::Pod`] at its address on
    /// `network`: the pod helpers (TCP, iperf3) run there with the host's tools, since the image
    /// holds busybox only.
    fn pod_of(&self, container: &str, network: &str) -> test_e2e::Pod {
        let pid = self.ok(&["inspect", "-f", "{{.State.Pid}}", container]);
        let id = self.ok(&["inspect", "-f", "{{.Id}}", container]);
        test_e2e::Pod::of_process(&pid, &id, &self.ip_of(container, network))
    }

    fn pings(&self, from: &str, ip: &str) -> bool {
        self.docker
            .run(&["exec", from, "ping", "-c", "1", "-W", "2", ip])
            .status
            .success()
    }

    /// Waits until `from` pings `ip` (ARP and the first flows may take a moment).
    fn reaches(&self, from: &str, ip: &str) -> bool {
        (0..10).any(|_| self.pings(from, ip))
    }

    /// Fetches `http://ip:8080/` from inside `from` over TCP.
    fn http(&self, from: &str, ip: &str) -> String {
        let out = self.docker.run(&["exec", from, "sh", "-c", &http_get(ip)]);
        let body = http_body(&out.stdout);
        if body.is_empty() {
            eprintln!(
                "HTTP from {from} to {ip}: {} (tx checksumming in {from}: {})",
                text(&out.stderr),
                self.tx_checksum(from)
            );
        }
        body
    }

    /// `ethtool -k eth0`'s tx-checksumming line inside a container.
    fn tx_checksum(&self, container: &str) -> String {
        let pid = self.ok(&["inspect", "-f", "{{.State.Pid}}", container]);
        let out = Command::new("nsenter")
            .args(["-t", &pid, "-n", "ethtool", "-k", "eth0"])
            .output()
            .unwrap();
        text(&out.stdout)
            .lines()
            .find(|l| l.starts_with("tx-checksumming"))
            .unwrap_or_default()
            .to_string()
    }

    /// What may leak: netmaster endpoints, OVS ports, links in the host namespace.
    fn snapshot(&self) -> (usize, BTreeSet<String>, BTreeSet<String>) {
        (
            self.master.endpoints().len(),
            self.host.ovs_ports().into_iter().collect(),
            self.host.links().into_iter().collect(),
        )
    }

    fn assert_no_leak(&self, before: &(usize, BTreeSet<String>, BTreeSet<String>), after: &str) {
        // In trunk mode a CNI pod's network trunk stays `--trunk-idle` after its last pod.
        let now = test_e2e::modes::settled(before, || self.snapshot());
        assert_eq!(
            now.0,
            before.0,
            "netmaster endpoints leaked after {after}: {}",
            json!(self.master.endpoints())
        );
        assert_eq!(now.1, before.1, "OVS ports leaked after {after}");
        assert_eq!(now.2, before.2, "host links leaked after {after}");
    }
}

#[test]
fn network_create_inspect_rm_and_bad_input() {
    let c = Cluster::start();
    let m = &c.master;
    let before = c.snapshot();

    // A new Contiv network from Docker, in a tenant made with the REST API.
    m.api(
        "POST",
        "/api/v1/tenants/blue/",
        Some(json!({"tenantName": "blue"})),
    );
    c.net_create(
        "dnet",
        &[
            "--subnet",
            "10.61.0.0/24",
            "--gateway",
            "10.61.0.1",
            "-o",
            "tenant=blue",
            "-o",
            "network=web",
        ],
    )
    .expect("create a Contiv network from Docker");
    let (s, n) = m.api("GET", "/api/v1/networks/blue:web/", None);
    assert_eq!(s, 200, "{n}");
    assert_eq!(n["subnet"], "10.61.0.0/24");
    assert_eq!(n["gateway"], "10.61.0.1");
    let insp: Value = serde_json::from_str(&c.ok(&["network", "inspect", "dnet"])).unwrap();
    assert_eq!(insp[0]["Driver"], c.plugin.name.as_str());
    assert_eq!(insp[0]["IPAM"]["Driver"], c.plugin.name.as_str());
    assert_eq!(insp[0]["IPAM"]["Config"][0]["Subnet"], "10.61.0.0/24");
    assert_eq!(insp[0]["IPAM"]["Config"][0]["Gateway"], "10.61.0.1");

    // A second Docker network on the same Contiv network, by --ipam-opt (as Contiv's PoolID
    // did), without a subnet: it takes the Contiv network's.
    c.net_create("dnet2", &["--ipam-opt", "network=web/blue"])
        .expect("reuse a Contiv network by name");
    let insp: Value = serde_json::from_str(&c.ok(&["network", "inspect", "dnet2"])).unwrap();
    assert_eq!(insp[0]["IPAM"]["Config"][0]["Subnet"], "10.61.0.0/24");

    // A network made with the REST API (netctl), used by name.
    m.network("default", "ctlnet", "10.62.0.0/24", "10.62.0.1");
    c.net_create("fromctl", &["--ipam-opt", "network=ctlnet"])
        .expect("use a netctl network by name");
    c.container("x1", "fromctl", &[]).expect("run on it");
    let ip = c.ip_of("x1", "fromctl");
    assert!(ip.starts_with("10.62.0."), "{ip}");
    c.ok(&["rm", "-f", "x1"]);

    // Bad input: each refused with our message, and nothing left behind.
    let snap = c.snapshot();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--subnet", "10.63.0.0/24", "-o", "tenant=nosuch"],
            "tenant 'nosuch' does not exist",
        ),
        (
            vec!["--subnet", "10.63.0.0/24", "-o", "group=nosuch"],
            "group 'nosuch' does not exist in tenant 'default'",
        ),
        (
            vec![
                "--subnet",
                "10.99.0.0/24",
                "-o",
                "tenant=blue",
                "-o",
                "network=web",
            ],
            "exists with subnet 10.61.0.0/24, not 10.99.0.0/24",
        ),
        (
            vec!["--ipam-opt", "network=ctlnet", "--subnet", "10.98.0.0/24"],
            "has subnet 10.62.0.0/24, not 10.98.0.0/24",
        ),
        (
            vec!["--subnet", "10.63.0.0/24", "-o", "encapp=vxlan"],
            "unknown option -o encapp",
        ),
        (vec![], "the Contiv IPAM driver needs a subnet"),
        (
            vec!["--ipam-opt", "network=nosuch"],
            "Contiv network default:nosuch does not exist",
        ),
        (
            vec!["--ipam-opt", "contiv-tag=nosuch"],
            "no Contiv group or network has tag 'nosuch'",
        ),
    ];
    for (args, want) in cases {
        let err = c
            .net_create("bad", &args)
            .expect_err(&format!("{args:?} must fail"));
        assert!(err.contains(want), "{args:?}: expected '{want}' in: {err}");
        c.assert_no_leak(&snap, &format!("network create {args:?}"));
        let (_, nets) = m.api("GET", "/api/v1/networks/", None);
        assert!(
            !nets
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["subnet"] == "10.63.0.0/24"),
            "a half-made Contiv network was left by {args:?}: {nets}"
        );
    }

    // Addresses: outside the subnet, taken, exhausted.
    c.container("a1", "dnet", &["--ip", "10.61.0.10"])
        .expect("a static --ip");
    assert_eq!(c.ip_of("a1", "dnet"), "10.61.0.10");
    let snap = c.snapshot();
    let err = c
        .container("a2", "dnet", &["--ip", "10.61.0.10"])
        .expect_err("a taken --ip");
    assert!(
        err.contains("10.61.0.10") && err.contains("already allocated"),
        "{err}"
    );
    c.ok(&["rm", "-f", "a2"]);
    c.assert_no_leak(&snap, "a taken --ip");
    let err = c
        .container("a3", "dnet", &["--ip", "10.77.0.10"])
        .expect_err("an --ip outside the subnet");
    assert!(err.contains("10.77.0.10"), "{err}");
    c.ok(&["rm", "-f", "a3"]);
    c.assert_no_leak(&snap, "an --ip outside the subnet");
    c.net_create(
        "tiny",
        &["--subnet", "10.64.0.0/30", "--gateway", "10.64.0.1"],
    )
    .expect("a /30");
    c.container("t1", "tiny", &[])
        .expect("the /30's one address");
    let snap = c.snapshot();
    let err = c
        .container("t2", "tiny", &[])
        .expect_err("an exhausted pool");
    assert!(err.contains("no free address left"), "{err}");
    c.ok(&["rm", "-f", "t2"]);
    c.assert_no_leak(&snap, "an exhausted pool");

    // Removal releases everything; a Contiv network Docker made goes with its last user.
    for x in ["a1", "t1"] {
        c.ok(&["rm", "-f", x]);
    }
    for n in ["dnet2", "dnet", "fromctl", "tiny"] {
        c.ok(&["network", "rm", n]);
    }
    c.assert_no_leak(&before, "removing every container and network");
    let (s, _) = m.api("GET", "/api/v1/networks/blue:web/", None);
    assert_eq!(
        s, 404,
        "the Contiv network Docker made must go with docker network rm"
    );
    let (s, _) = m.api("GET", "/api/v1/networks/default:ctlnet/", None);
    assert_eq!(s, 200, "a netctl network must stay after docker network rm");
}

#[test]
fn containers_talk_across_docker_and_cni_and_tenants_are_isolated() {
    let c = Cluster::start();
    let before = c.snapshot();
    c.net_create(
        "n1",
        &[
            "--subnet",
            "10.71.0.0/24",
            "--gateway",
            "10.71.0.1",
            "-o",
            "network=n1",
        ],
    )
    .unwrap();
    c.container("c1", "n1", &[]).unwrap();
    c.container("c2", "n1", &[]).unwrap();
    let (ip1, ip2) = (c.ip_of("c1", "n1"), c.ip_of("c2", "n1"));
    assert!(c.reaches("c1", &ip2), "c1 cannot ping c2 ({ip2})");
    assert_eq!(c.http("c1", &ip2), "hello-c2", "TCP from c1 to c2");
    assert_eq!(c.http("c2", &ip1), "hello-c1", "TCP from c2 to c1");
    // The container side is eth0 with Contiv's MAC and the gateway as default route.
    let link = c.ok(&["exec", "c1", "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("02:02:0a:47:00:"), "{link}");
    let route = c.ok(&["exec", "c1", "ip", "route"]);
    assert!(route.contains("default via 10.71.0.1"), "{route}");

    // A static --ip.
    c.container("c3", "n1", &["--ip", "10.71.0.50"]).unwrap();
    assert_eq!(c.ip_of("c3", "n1"), "10.71.0.50");
    assert!(c.reaches("c1", "10.71.0.50"));

    // A container restart: new endpoint, same network, traffic again.
    c.ok(&["restart", "-t", "1", "c2"]);
    let ip2 = c.ip_of("c2", "n1");
    assert!(
        c.reaches("c1", &ip2),
        "c1 cannot ping c2 ({ip2}) after its restart"
    );
    wait_for("c2's httpd after restart", Duration::from_secs(20), || {
        c.http("c1", &ip2) == "hello-c2"
    });

    // A CNI pod on the same Contiv network, through the same agent.
    let conf = c.host.conf("1.0.0", json!({"network": "n1"}));
    let pod = c.host.pod(&conf);
    assert!(pod.ip.starts_with("10.71.0."), "{}", pod.ip);
    pod_and_c1_talk(&c, &pod, &ip1, "");

    // Two tenants, one subnet, isolated.
    for t in ["t1", "t2"] {
        c.master.api(
            "POST",
            &format!("/api/v1/tenants/{t}/"),
            Some(json!({"tenantName": t})),
        );
    }
    for (dn, t) in [("ta", "t1"), ("tb", "t2")] {
        let tenant = format!("tenant={t}");
        c.net_create(
            dn,
            &[
                "--subnet",
                "10.72.0.0/24",
                "-o",
                &tenant,
                "-o",
                "network=same",
            ],
        )
        .unwrap();
    }
    c.container("a1", "ta", &["--ip", "10.72.0.10"]).unwrap();
    c.container("b1", "tb", &["--ip", "10.72.0.20"]).unwrap();
    c.container("b2", "tb", &["--ip", "10.72.0.10"]).unwrap();
    assert!(
        c.reaches("b1", "10.72.0.10"),
        "b1 cannot reach its own tenant's 10.72.0.10"
    );
    assert_eq!(
        c.http("b1", "10.72.0.10"),
        "hello-b2",
        "b1 must reach b2, not a1"
    );
    assert!(
        !c.pings("a1", "10.72.0.20"),
        "tenant t1 reached tenant t2's 10.72.0.20"
    );

    // Removal releases everything.
    let out = c
        .host
        .cni("DEL", &pod.container_id, &pod.netns_path(), "eth0", &conf);
    assert!(out.ok(), "CNI DEL: {}", out.stdout);
    for x in ["c1", "c2", "c3", "a1", "b1", "b2"] {
        c.ok(&["rm", "-f", x]);
    }
    for n in ["n1", "ta", "tb"] {
        c.ok(&["network", "rm", n]);
    }
    c.assert_no_leak(&before, "removing containers, the pod and networks");
}

#[test]
fn survives_dockerd_and_agent_restarts() {
    let mut c = Cluster::start();
    let before = c.snapshot();
    c.net_create("r", &["--subnet", "10.73.0.0/24", "--gateway", "10.73.0.1"])
        .unwrap();
    c.container("r1", "r", &[]).unwrap();
    c.container("r2", "r", &[]).unwrap();
    let ip2 = c.ip_of("r2", "r");
    assert!(c.reaches("r1", &ip2));

    // dockerd restarts (live-restore): the containers keep running and talking.
    c.docker.restart();
    assert!(c.reaches("r1", &ip2), "no traffic after a dockerd restart");
    assert_eq!(c.http("r1", &ip2), "hello-r2");

    // The agent dies: the datapath keeps forwarding; a new agent takes over.
    c.host.kill_agent();
    assert!(
        c.pings("r1", &ip2),
        "traffic stopped while the agent was down"
    );
    c.host.start_agent();
    assert!(c.reaches("r1", &ip2), "no traffic after an agent restart");
    assert_eq!(c.http("r1", &ip2), "hello-r2");
    // The new agent still knows the Docker network (state file) and can add and remove.
    c.container("r3", "r", &[]).unwrap();
    let ip3 = c.ip_of("r3", "r");
    assert!(c.reaches("r1", &ip3));

    for x in ["r1", "r2", "r3"] {
        c.ok(&["rm", "-f", x]);
    }
    c.ok(&["network", "rm", "r"]);
    c.assert_no_leak(&before, "removing containers after the restarts");
}

/// Calls the plugin socket as dockerd does (its content type), returning (status, JSON).
fn plugin_call(socket: &str, call: &str, body: &Value) -> (u16, Value) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
            socket,
        ])
        .args([
            "-H",
            "Content-Type: application/vnd.docker.plugins.v1.2+json",
        ])
        .args(["-X", "POST", "-d", &body.to_string()])
        .arg(format!("http://localhost/{call}"))
        .output()
        .expect("run curl");
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    let (b, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (
        code.parse().unwrap_or(0),
        serde_json::from_str(b).unwrap_or(Value::String(b.into())),
    )
}

/// Docker aborts half-way and repeats itself: calls in odd orders, repeated, and for things
/// already gone all succeed and leave nothing behind. Driven over the real socket of a real agent
/// (no dockerd: the order is the point here).
#[test]
fn odd_call_orders_and_repeats_leak_nothing() {
    let master = Netmaster::start();
    let plugin = PluginSocket::new();
    let mut host = Host::netns_only(&master, "oddhost");
    host.boot(&strs(&master.docker_agent_args(&plugin.path)));
    plugin.wait();
    let call = |c: &str, b: Value| plugin_call(&plugin.path, c, &b);
    let snapshot = || {
        (
            master.endpoints().len(),
            host.ovs_ports(),
            host.links().into_iter().collect::<BTreeSet<_>>(),
        )
    };
    let before = snapshot();

    let (s, v) = call("Plugin.Activate", json!(null));
    assert_eq!(
        (s, v["Implements"].clone()),
        (200, json!(["NetworkDriver", "IpamDriver"]))
    );
    let (s, v) = call("NetworkDriver.GetCapabilities", json!({}));
    assert_eq!((s, v["ConnectivityScope"].clone()), (200, json!("global")));
    let (s, v) = call(
        "IpamDriver.RequestPool",
        json!({"AddressSpace": "contiv-local", "Pool": "10.81.0.0/24", "Options": null, "V6": false}),
    );
    assert_eq!(s, 200, "{v}");
    let pool = v["PoolID"].as_str().unwrap().to_string();
    let (s, v) = call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
    );
    assert_eq!((s, v["Address"].clone()), (200, json!("10.81.0.1/24")));
    let net = "a".repeat(64);
    let (s, v) = call(
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": net, "Options": {"com.docker.network.generic": {"network": "odd"}},
               "IPv4Data": [{"AddressSpace": "contiv-local", "Pool": "10.81.0.0/24", "Gateway": "10.81.0.1/24"}], "IPv6Data": null}),
    );
    assert_eq!(s, 200, "{v}");
    let (s, _) = master.api("GET", "/api/v1/networks/default:odd/", None);
    assert_eq!(s, 200);

    // Address, endpoint, join; then ReleaseAddress before DeleteEndpoint.
    let (s, v) = call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool, "Address": "", "Options": null}),
    );
    assert_eq!(s, 200, "{v}");
    let addr = v["Address"].as_str().unwrap().to_string();
    let ep = "e".repeat(64);
    let (s, v) = call(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": net, "EndpointID": ep, "Interface": {"Address": addr}, "Options": {}}),
    );
    assert_eq!(s, 200, "{v}");
    assert!(
        v["Interface"]["MacAddress"]
            .as_str()
            .unwrap()
            .starts_with("02:02:0a:51:00:"),
        "{v}"
    );
    let (s, v) = call(
        "NetworkDriver.Join",
        json!({"NetworkID": net, "EndpointID": ep, "SandboxKey": "/var/run/docker/netns/x", "Options": null}),
    );
    assert_eq!(s, 200, "{v}");
    let src = v["InterfaceName"]["SrcName"].as_str().unwrap().to_string();
    assert_eq!(v["InterfaceName"]["DstPrefix"], "eth");
    assert_eq!(v["Gateway"], "10.81.0.1");
    assert!(
        host.links().contains(&src),
        "{src} must wait in the host namespace for Docker"
    );
    let (s, _) = call(
        "NetworkDriver.Leave",
        json!({"NetworkID": net, "EndpointID": ep}),
    );
    assert_eq!(s, 200);
    let (s, v) = call(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": pool, "Address": addr}),
    );
    assert_eq!(s, 200, "{v}");
    assert!(
        !host.links().contains(&src),
        "ReleaseAddress must unplumb an endpoint Docker forgot"
    );
    for _ in 0..2 {
        let (s, v) = call(
            "NetworkDriver.DeleteEndpoint",
            json!({"NetworkID": net, "EndpointID": ep}),
        );
        assert_eq!(s, 200, "DeleteEndpoint of a gone endpoint: {v}");
        let (s, v) = call(
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": pool, "Address": addr}),
        );
        assert_eq!(s, 200, "ReleaseAddress of a released address: {v}");
    }

    // The usual order, with repeats.
    let (_, v) = call(
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool, "Address": "10.81.0.9"}),
    );
    assert_eq!(v["Address"], "10.81.0.9/24");
    let (s, v) = call(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": net, "EndpointID": ep, "Interface": {"Address": "10.81.0.9/24"}}),
    );
    assert_eq!(s, 200, "{v}");
    for _ in 0..2 {
        let (s, _) = call(
            "NetworkDriver.DeleteEndpoint",
            json!({"NetworkID": net, "EndpointID": ep}),
        );
        assert_eq!(s, 200);
    }
    // DeleteEndpoint keeps the address (Docker releases it next); then it is released.
    assert_eq!(master.endpoints().len(), before.0 + 1);
    let (s, _) = call(
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": pool, "Address": "10.81.0.9/24"}),
    );
    assert_eq!(s, 200);

    // Bad calls: a clear Err, nothing left.
    let (s, v) = call(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": net, "EndpointID": ep, "Interface": {"Address": "10.81.0.77/24"}}),
    );
    assert_eq!(s, 500);
    assert!(
        v["Err"]
            .as_str()
            .unwrap()
            .contains("was not reserved through the Contiv IPAM driver"),
        "{v}"
    );
    let (s, v) = call(
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": "nosuch", "EndpointID": ep}),
    );
    assert_eq!(s, 500);
    assert!(
        v["Err"]
            .as_str()
            .unwrap()
            .contains("unknown to the Contiv agent"),
        "{v}"
    );
    let (s, v) = call(
        "NetworkDriver.Join",
        json!({"NetworkID": net, "EndpointID": "nosuch"}),
    );
    assert_eq!(s, 500);
    assert!(
        v["Err"]
            .as_str()
            .unwrap()
            .contains("has no Contiv port on this host"),
        "{v}"
    );
    let (s, _) = call("NetworkDriver.Nonsense", json!({}));
    assert_eq!(s, 404);

    for _ in 0..2 {
        let (s, _) = call("NetworkDriver.DeleteNetwork", json!({"NetworkID": net}));
        assert_eq!(s, 200);
        let (s, _) = call("IpamDriver.ReleasePool", json!({"PoolID": pool}));
        assert_eq!(s, 200);
    }
    let (s, _) = master.api("GET", "/api/v1/networks/default:odd/", None);
    assert_eq!(
        s, 404,
        "the Contiv network made for the Docker network must go"
    );
    assert_eq!(
        snapshot(),
        before,
        "something leaked (endpoints, OVS ports, host links)"
    );
}

/// The managed (v2) plugin built from conf/docker, on a private dockerd: a network and two
/// containers that talk; then a single-node swarm with a swarm-scoped network and a service.
#[test]
fn managed_plugin_and_swarm() {
    let master = Netmaster::start();
    let mut host = Host::netns_only(&master, "plughost");
    // OVS and the bridge from the harness; the plugin's netplugin is this host's agent.
    host.boot(&[]);
    host.kill_agent();
    let docker = Dockerd::start_with(&host, false);
    let ok = |args: &[&str]| docker.ok(args, &host);
    let pdir = docker.dir.join("plugin");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/docker/build-plugin.sh");
    let out = Command::new(&script)
        .arg(&pdir)
        .arg(test_e2e::bin("netplugin"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        text(&out.stderr)
    );
    let name = format!("{}:latest", unique("p"));
    struct PluginGuard<'a>(&'a Dockerd, String);
    impl Drop for PluginGuard<'_> {
        fn drop(&mut self) {
            let _ = self.0.run(&["swarm", "leave", "--force"]);
            let _ = self.0.run(&["plugin", "disable", "-f", &self.1]);
            let _ = self.0.run(&["plugin", "rm", "-f", &self.1]);
        }
    }
    ok(&["plugin", "create", &name, &pdir.display().to_string()]);
    let _guard = PluginGuard(&docker, name.clone());
    let state = docker.dir.join("plugin-state");
    std::fs::create_dir_all(&state).unwrap();
    // The credentials where the plugin's defaults look for them (its /etc/contiv): the join
    // token and the Docker token. With --auth off (CONTIV_E2E_AUTH=0) there are none, and the
    // settings are emptied, as a user of such a cluster would.
    let etc = docker.dir.join("plugin-etc");
    std::fs::create_dir_all(&etc).unwrap();
    let mut creds = Vec::new();
    match master.docker_token_file() {
        Some(t) => {
            std::fs::copy(master.join_token_file(), etc.join("join-token")).unwrap();
            std::fs::copy(t, etc.join("docker-token")).unwrap();
            creds.push("CONTIV_NETPLUGIN_DOCKER_TOKEN_FILE=/etc/contiv/docker-token");
        }
        None => creds.push("CONTIV_NETPLUGIN_JOIN_TOKEN_FILE="),
    }
    let mut set = vec![
        "plugin".to_string(),
        "set".into(),
        name.clone(),
        format!("ovs-run.source={}", host.dir.display()),
        format!("contiv-run.source={}", master.dir.display()),
        format!("contiv-state.source={}", state.display()),
        format!("contiv-etc.source={}", etc.display()),
        "CONTIV_NETPLUGIN_NETMASTER=unix:///run/contiv/netmaster.sock".into(),
        "CONTIV_NETPLUGIN_HOST=plughost".into(),
        format!("CONTIV_NETPLUGIN_BRIDGE={}", host.bridge),
        "CONTIV_NETPLUGIN_DATAPATH=userspace".into(),
        "CONTIV_NETPLUGIN_OVSDB_SOCK=/var/run/openvswitch/db.sock".into(),
        "CONTIV_NETPLUGIN_OVS_RUNDIR=/var/run/openvswitch".into(),
    ];
    set.extend(creds.iter().map(|c| c.to_string()));
    ok(&strs(&set));
    ok(&["plugin", "enable", &name]);

    let net = |args: &[&str]| {
        let mut a = vec!["network", "create", "-d", &name, "--ipam-driver", &name];
        a.extend_from_slice(args);
        docker.run(&a)
    };
    let out = net(&["--subnet", "10.85.0.0/24", "--gateway", "10.85.0.1", "pn"]);
    assert!(
        out.status.success(),
        "network create with the managed plugin: {}",
        text(&out.stderr)
    );
    let c = |n: &str| {
        ok(&[
            "run",
            "-d",
            "--name",
            n,
            "--network",
            "pn",
            IMAGE,
            "sleep",
            "100000",
        ]);
        ok(&[
            "inspect",
            "-f",
            "{{(index .NetworkSettings.Networks \"pn\").IPAddress}}",
            n,
        ])
    };
    let _ip1 = c("p1");
    let ip2 = c("p2");
    assert!(
        (0..10).any(|_| docker
            .run(&["exec", "p1", "ping", "-c", "1", "-W", "2", &ip2])
            .status
            .success()),
        "containers on the managed plugin's network cannot ping"
    );
    ok(&["rm", "-f", "p1", "p2"]);
    ok(&["network", "rm", "pn"]);

    // Swarm mode on one node. Swarm-scoped networks need a driver of global scope (the
    // manager allocates pools and addresses through the IPAM driver), which classic engines
    // refuse without a cluster store: the plugin is switched over.
    ok(&["plugin", "disable", &name]);
    ok(&[
        "plugin",
        "set",
        &name,
        "CONTIV_NETPLUGIN_DOCKER_SCOPE=global",
    ]);
    ok(&["plugin", "enable", &name]);
    // An advertise address on a veth inside the host namespace.
    for args in [
        vec![
            "ip", "link", "add", "ctesw0", "type", "veth", "peer", "name", "ctesw1",
        ],
        vec!["ip", "addr", "add", "10.86.0.1/24", "dev", "ctesw0"],
        vec!["ip", "link", "set", "ctesw0", "up"],
        vec!["ip", "link", "set", "ctesw1", "up"],
    ] {
        assert!(host.exec(&args).status.success(), "{args:?}");
    }
    ok(&["swarm", "init", "--advertise-addr", "10.86.0.1"]);
    let out = net(&[
        "--scope",
        "swarm",
        "--attachable",
        "--subnet",
        "10.87.0.0/24",
        "--gateway",
        "10.87.0.1",
        "sn",
    ]);
    assert!(
        out.status.success(),
        "swarm-scoped network create: {}",
        text(&out.stderr)
    );
    ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "s1",
        "--network",
        "sn",
        IMAGE,
        "sleep",
        "100000",
    ]);
    let mut state = String::new();
    for _ in 0..300 {
        state = ok(&[
            "service",
            "ps",
            "--no-trunc",
            "--format",
            "{{.CurrentState}} {{.Error}}",
            "s1",
        ]);
        if state.starts_with("Running") || state.contains("Rejected") || state.contains("Failed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        state.starts_with("Running"),
        "the swarm service's task: {state}\n--- agent log: see the plugin's log in dockerd.log:\n{}",
        tail(
            &std::fs::read_to_string(docker.dir.join("dockerd.log")).unwrap_or_default(),
            60
        )
    );
    let task = ok(&[
        "ps",
        "-q",
        "--filter",
        "label=com.docker.swarm.service.name=s1",
    ]);
    let ip = ok(&[
        "inspect",
        "-f",
        "{{(index .NetworkSettings.Networks \"sn\").IPAddress}}",
        task.trim(),
    ]);
    assert!(
        ip.starts_with("10.87.0."),
        "the service task's address: {ip}"
    );
    ok(&[
        "run",
        "-d",
        "--name",
        "w1",
        "--network",
        "sn",
        IMAGE,
        "sleep",
        "100000",
    ]);
    assert!(
        (0..10).any(|_| docker
            .run(&["exec", "w1", "ping", "-c", "1", "-W", "2", &ip])
            .status
            .success()),
        "a container cannot ping the service task on the swarm network"
    );
    ok(&["rm", "-f", "w1"]);
    ok(&["service", "rm", "s1"]);
}

impl Cluster {
    /// The Docker host (with dockerd) and a second host of CNI pods on one underlay, tunnels up.
    fn with_cni_host() -> (Cluster, Host, Underlay) {
        let master = Netmaster::start();
        let underlay = Underlay::new();
        let plugin = PluginSocket::new();
        let mut h1 = Host::netns_only(&master, "dock1");
        h1.vtep = underlay.attach(&h1.ns);
        let vtep = h1.vtep.clone();
        let mut args = vec![
            "--vtep-ip".to_string(),
            vtep,
            "--vtep-intf".into(),
            Underlay::NIC.into(),
        ];
        args.extend(master.docker_agent_args(&plugin.path));
        h1.boot(&strs(&args));
        let h2 = Host::start_on(&master, &underlay, "cni2");
        plugin.wait();
        wait_for("tunnels both ways", Duration::from_secs(20), || {
            tunnels(&h1).len() == 1 && tunnels(&h2).len() == 1
        });
        let docker = Dockerd::start(&h1);
        (
            Cluster {
                docker,
                host: h1,
                master,
                plugin,
            },
            h2,
            underlay,
        )
    }
}

/// A Docker container on one host and a CNI pod on another, on one Contiv network: the overlay
/// carries both alike (the same endpoint manager and pipeline on every host).
#[test]
fn docker_container_and_cni_pod_on_two_hosts() {
    let (c, h2, _underlay) = Cluster::with_cni_host();
    c.net_create(
        "n1",
        &[
            "--subnet",
            "10.72.0.0/24",
            "--gateway",
            "10.72.0.1",
            "-o",
            "network=n1",
        ],
    )
    .unwrap();
    c.container("c1", "n1", &[]).unwrap();
    let ip1 = c.ip_of("c1", "n1");
    let pod = h2.pod(&h2.conf("1.0.0", json!({"network": "n1"})));
    assert!(pod.ip.starts_with("10.72.0."), "{}", pod.ip);
    pod_and_c1_talk(&c, &pod, &ip1, " (pod on host2, container on host1)");
    c.ok(&["rm", "-f", "c1"]);
    drop(pod);
    drop(h2);
}

/// Contiv's policy and profile scenarios for a Docker container in a group (the Docker network's
/// `-o group=`), with CNI pods as peers on the same host and on another: deny TCP in except 8000,
/// allow from one group, and a profile of 10 Mbit/s both ways with DSCP 46 on the wire.
#[test]
fn policies_and_profiles_hold_for_a_docker_container_in_a_group() {
    let (c, h2, _underlay) = Cluster::with_cni_host();
    let post = |path: &str, body: Value| {
        let (s, v) = c.master.api("POST", path, Some(body));
        assert_eq!(s, 200, "POST {path}: {v}");
    };
    c.master
        .network("default", "n1", "10.73.0.0/24", "10.73.0.1");
    post(
        "/api/v1/policys/default:p/",
        json!({"tenantName": "default", "policyName": "p"}),
    );
    post(
        "/api/v1/netprofiles/default:slow/",
        json!({"tenantName": "default", "profileName": "slow", "bandwidth": "10mbps",
               "burst": 256, "DSCP": 46}),
    );
    for g in ["app", "other"] {
        post(
            &format!("/api/v1/endpointGroups/default:{g}/"),
            json!({"tenantName": "default", "groupName": g, "networkName": "n1"}),
        );
    }
    for (id, prio, extra) in [
        ("1", 1, json!({})),
        ("2", 100, json!({"port": 8000})),
        ("3", 100, json!({"fromEndpointGroup": "app"})),
    ] {
        let mut r = json!({"tenantName": "default", "policyName": "p", "ruleId": id,
            "direction": "in", "priority": prio, "protocol": "tcp", "action": "allow"});
        if id == "1" {
            r["action"] = json!("deny");
        }
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        post(&format!("/api/v1/rules/default:p:{id}/"), r);
    }
    post(
        "/api/v1/endpointGroups/default:web/",
        json!({"tenantName": "default", "groupName": "web", "networkName": "n1",
               "policies": ["p"], "netProfile": "slow"}),
    );
    c.net_create(
        "webnet",
        &[
            "--subnet",
            "10.73.0.0/24",
            "--gateway",
            "10.73.0.1",
            "-o",
            "network=n1",
            "-o",
            "group=web",
        ],
    )
    .unwrap();
    c.container("c1", "webnet", &[]).unwrap();
    let web = c.pod_of("c1", "webnet");
    let remote = h2.pod(&h2.conf("1.0.0", json!({"network": "n1"})));
    let app = h2.pod(&h2.conf("1.0.0", json!({"network": "n1", "group": "app"})));
    let local = c.host.pod(&c.host.conf("1.0.0", json!({"network": "n1"})));
    for p in [&remote, &local] {
        assert!(
            p.reaches(&web.ip, Duration::from_secs(10)),
            "ping follows the rules: ICMP is allowed"
        );
        assert!(p.connects_to(&web, 8000), "{} -> 8000 refused", p.ip);
        assert!(!p.connects_to(&web, 8001), "{} -> 8001 let through", p.ip);
    }
    assert!(app.connects_to(&web, 8001), "group app is allowed any TCP");
    let other = h2.pod(&h2.conf("1.0.0", json!({"network": "n1", "group": "other"})));
    assert!(!other.connects_to(&web, 8001), "group other is let in");
    // The container's own tools: busybox nc from inside it, out to a pod (its in rules do not
    // apply to what it opens).
    let l = remote.tcp_listener(9000);
    l.set_nonblocking(true).unwrap();
    let mut nc = c
        .docker
        .cmd()
        .args(["exec", "c1", "sh", "-c"])
        .arg(format!("echo hi | nc {} 9000", remote.ip))
        .spawn()
        .unwrap();
    let mut conn = None;
    wait_for(
        "the container's nc to connect",
        Duration::from_secs(10),
        || {
            conn = l.accept().ok().map(|x| x.0);
            conn.is_some()
        },
    );
    let mut conn = conn.unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 3];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi\n");
    // What nc does after the exchange does not matter (the container is removed at the end).
    drop(conn);
    let _ = nc.kill();
    let _ = nc.wait();

    // The profile, both ways (in through app, which may open TCP to it).
    let out = web.iperf3_to(&remote, 2);
    let inn = app.iperf3_to(&web, 2);
    eprintln!("container capped out {out:.4} Gbit/s, in {inn:.4}");
    for (what, r) in [("egress", out), ("ingress", inn)] {
        assert!(
            (0.0085..=0.0115).contains(&r),
            "{what} {r} Gbit/s is not 10 Mbit/s +- 15%"
        );
    }
    test_e2e::assert_dscp_46_in_tunnel(&h2, &c.host, || {
        assert!(c.pings("c1", &remote.ip));
        assert!(c.pings("c1", &remote.ip));
    });
    c.ok(&["rm", "-f", "c1"]);
    drop(web);
}

/// The networks the Docker driver's state file (`--docker-state`) holds pools for.
fn state_pools(host: &Host) -> Vec<String> {
    let v: Value = std::fs::read(host.dir.join("docker-driver.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    v["pools"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// With authentication on, a node credential may not write networks. An agent without
/// `--docker-token-file`: `docker network create -d` that would make a Contiv network fails with
/// a message saying what to do and leaves nothing (no Contiv network, no Docker network, no
/// pool); a network made with netctl is used with the node credential alone. An agent with a
/// token file: an ops token of tenant blue writes blue's networks only, a rewritten file is used
/// at the next call, and a missing file stops the agent at start.
#[test]
fn network_writes_need_the_docker_token() {
    // Authentication is this test's subject: on even under CONTIV_E2E_AUTH=0.
    let master = Netmaster::start_with(&["--auth", "on"]);
    let plugin = PluginSocket::new();
    let mut host = Host::netns_only(&master, "notoken");
    host.boot(&["--docker-socket", &plugin.path]);
    plugin.wait();
    let docker = Dockerd::start(&host);
    let c = Cluster {
        docker,
        host,
        master,
        plugin,
    };
    let m = &c.master;
    let before = c.snapshot();
    let docker_networks = || c.ok(&["network", "ls", "--format", "{{.Name}}"]);
    let networks_before = docker_networks();

    let err = c
        .net_create("nt", &["--subnet", "10.66.0.0/24", "-o", "network=nt"])
        .expect_err("a node credential must not create a Contiv network");
    for want in [
        "create Contiv network default:nt",
        "refused the agent's node credential",
        "netctl net create -t default -s 10.66.0.0/24 nt",
        "--ipam-opt network=nt/default",
        "--docker-token-file",
    ] {
        assert!(err.contains(want), "expected '{want}' in: {err}");
    }
    let (s, v) = m.api("GET", "/api/v1/networks/default:nt/", None);
    assert_eq!(s, 404, "a Contiv network was made: {v}");
    assert_eq!(
        docker_networks(),
        networks_before,
        "a Docker network was left"
    );
    c.assert_no_leak(&before, "a refused network create");
    wait_for(
        "Docker to release the pool",
        Duration::from_secs(10),
        || state_pools(&c.host).is_empty(),
    );

    // A network made with netctl: by name, and by -o network= with its subnet.
    m.network("default", "pre", "10.67.0.0/24", "10.67.0.1");
    c.net_create("pre1", &["--ipam-opt", "network=pre"])
        .expect("use a netctl network with the node credential");
    c.net_create("pre2", &["--subnet", "10.67.0.0/24", "-o", "network=pre"])
        .expect("map a netctl network by -o network= and its subnet");
    c.container("p1", "pre1", &[]).expect("a container on it");
    assert!(c.ip_of("p1", "pre1").starts_with("10.67.0."));
    c.ok(&["rm", "-f", "p1"]);
    c.ok(&["network", "rm", "pre1"]);
    c.ok(&["network", "rm", "pre2"]);
    let (s, _) = m.api("GET", "/api/v1/networks/default:pre/", None);
    assert_eq!(s, 200, "a netctl network stays after docker network rm");
    c.assert_no_leak(
        &before,
        "the netctl network's containers and Docker networks",
    );

    // An agent with a token of an ops user authorized on tenant blue only.
    for t in ["blue", "red"] {
        let (s, v) = m.api(
            "POST",
            &format!("/api/v1/tenants/{t}/"),
            Some(json!({"tenantName": t})),
        );
        assert_eq!(s, 200, "{v}");
    }
    let token_file = m.dir.join("blue-token");
    std::fs::write(&token_file, m.mint_token("dockerblue", "ops", &["blue"])).unwrap();
    let plugin2 = PluginSocket::new();
    let mut h2 = Host::netns_only(m, "withtoken");
    let flag = format!("--docker-token-file={}", token_file.display());
    h2.boot(&["--docker-socket", &plugin2.path, &flag]);
    plugin2.wait();
    let call = |c: &str, b: Value| plugin_call(&plugin2.path, c, &b);
    let create = |id: &str, subnet: &str, tenant: &str| {
        let (s, v) = call(
            "IpamDriver.RequestPool",
            json!({"AddressSpace": "contiv-local", "Pool": subnet, "V6": false}),
        );
        assert_eq!(s, 200, "{v}");
        let pool = v["PoolID"].as_str().unwrap().to_string();
        let r = call(
            "NetworkDriver.CreateNetwork",
            json!({"NetworkID": id, "Options": {"com.docker.network.generic": {"tenant": tenant, "network": id}},
                   "IPv4Data": [{"AddressSpace": "contiv-local", "Pool": subnet}]}),
        );
        (pool, r)
    };
    let (blue_pool, (s, v)) = create("bn", "10.68.0.0/24", "blue");
    assert_eq!(s, 200, "the blue token creates a blue network: {v}");
    let (s, _) = m.api("GET", "/api/v1/networks/blue:bn/", None);
    assert_eq!(s, 200);
    let (red_pool, (s, v)) = create("rn", "10.69.0.0/24", "red");
    assert_eq!(s, 500, "{v}");
    let err = v["Err"].as_str().unwrap_or_default();
    for want in [
        "create Contiv network red:rn",
        &format!("refused the token in {}", token_file.display()),
        "tenant red",
    ] {
        assert!(err.contains(want), "expected '{want}' in: {err}");
    }
    let (s, _) = m.api("GET", "/api/v1/networks/red:rn/", None);
    assert_eq!(s, 404);
    // Rotated: a token of both tenants, used at the next call without a restart.
    std::fs::write(
        &token_file,
        m.mint_token("dockerboth", "ops", &["blue", "red"]),
    )
    .unwrap();
    let (s, v) = call(
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": "rn", "Options": {"com.docker.network.generic": {"tenant": "red", "network": "rn"}},
               "IPv4Data": [{"AddressSpace": "contiv-local", "Pool": "10.69.0.0/24"}]}),
    );
    assert_eq!(s, 200, "the rewritten token file: {v}");
    for (id, pool, key) in [("bn", &blue_pool, "blue:bn"), ("rn", &red_pool, "red:rn")] {
        let (s, _) = call("NetworkDriver.DeleteNetwork", json!({"NetworkID": id}));
        assert_eq!(s, 200);
        let (s, _) = call("IpamDriver.ReleasePool", json!({"PoolID": pool}));
        assert_eq!(s, 200);
        let (s, _) = m.api("GET", &format!("/api/v1/networks/{key}/"), None);
        assert_eq!(
            s, 404,
            "the token deletes the Contiv network it made: {key}"
        );
    }
    assert!(state_pools(&h2).is_empty(), "{:?}", state_pools(&h2));

    // A token file that is not there: the agent stops at once, saying which and why.
    let out = Command::new(test_e2e::bin("netplugin"))
        .args(["--netmaster", &m.url(), "--docker-token-file"])
        .arg(m.dir.join("nosuch-token"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("read the Docker token file") && err.contains("nosuch-token"),
        "{err}"
    );
}
