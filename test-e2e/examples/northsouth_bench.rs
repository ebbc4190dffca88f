//! Benchmark (issue 19): pod -> outside TCP throughput beside pod -> pod across hosts, on the
//! same hosts in the same run, and the time from a CNI ADD returning to the pod's first packet
//! answered by the outside.
//!
//! `cargo run --release -p test-e2e --example northsouth_bench [-- --seconds 5 --rounds 3 --adds 10]`
//!
//! Needs root, Open vSwitch, iproute2 and iperf3 (scripts/setup.sh).
//!
//! How: a simulated cluster of two hosts (network namespaces, each with its own ovsdb-server,
//! ovs-vswitchd (userspace datapath) and netplugin) on one underlay, and the "outside" namespace
//! on the underlay as the hosts' router with an internet host behind it. Pod a on host1, pod c on
//! host2. iperf3 (one TCP stream, `--seconds` each, `--rounds` times, median): a -> c (east-west,
//! VXLAN), a -> the internet host (north-south: OVS, the tenant router's NAT, the host's NAT, the
//! uplink), and host1 itself -> the internet host (the same uplink without Contiv in the path).
//! Ratio = north-south / east-west (target >= 0.8).
//! First packet: a thread inside a new pod's namespace, released when the ADD returns, opens TCP
//! connections to a listener on the internet host, each attempt bounded by 5 ms, until one is
//! accepted; the figure is from the ADD returning to that connection. `--adds` times each (DEL
//! after each), for the only pod of a tenant on host1 (its tenant router is made by the ADD,
//! the previous one gone with the last DEL) and for a pod of a tenant whose router exists.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use test_e2e::{Cluster, Outside, Pod, cli_arg, iperf3};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn measure(label: &str, rounds: u64, mut run: impl FnMut() -> f64) -> f64 {
    let runs: Vec<f64> = (0..rounds).map(|_| run()).collect();
    let m = median(runs.clone());
    println!("  {label:<44} {m:>6.3} Gbit/s   (runs: {runs:.3?})");
    m
}

/// ADDs a new pod to `tenant:network` on host index 0 while a thread in its namespace tries
/// to connect to the internet host once the ADD has returned; ms from the ADD returning to the
/// first accepted connection.
fn add_to_first_packet(c: &Cluster, o: &Outside, tenant: &str, network: &str, port: u16) -> f64 {
    let l = o.listen(Outside::HOST, port);
    let p = Pod::new();
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        let go = go.clone();
        let to = SocketAddr::new(Outside::HOST.parse().unwrap(), port);
        let ns = p.netns_path();
        std::thread::spawn(move || {
            test_e2e::in_netns(&ns, move || {
                // A workload starts once the runtime has its network: after ADD returns.
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                while !stop.load(Ordering::Relaxed) {
                    if TcpStream::connect_timeout(&to, Duration::from_millis(5)).is_ok() {
                        return Some(Instant::now());
                    }
                    // An immediate error (unreachable, refused) must not spin.
                    std::thread::sleep(Duration::from_micros(200));
                }
                None
            })
        })
    };
    let h = &c.hosts[0];
    let conf = h.conf(
        "1.0.0",
        serde_json::json!({"network": network, "tenant": tenant}),
    );
    let out = h.cni("ADD", &p.container_id, &p.netns_path(), "eth0", &conf);
    let added = Instant::now();
    go.store(true, Ordering::Release);
    assert!(out.ok(), "ADD: {}", out.stdout);
    let deadline = added + Duration::from_secs(10);
    while !poller.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    let first = poller
        .join()
        .unwrap()
        .expect("the new pod reached the outside within 10 s");
    drop(l);
    let del = h.cni("DEL", &p.container_id, &p.netns_path(), "eth0", &conf);
    assert!(del.ok(), "DEL: {}", del.stdout);
    first.duration_since(added).as_secs_f64() * 1e3
}

fn main() {
    let seconds = cli_arg("--seconds", 5);
    let rounds = cli_arg("--rounds", 3);
    let adds = cli_arg("--adds", 10);
    let c = Cluster::start(2, &[]);
    let o = Outside::new(&c.underlay);
    for h in &c.hosts {
        o.route_from(h);
    }
    c.master
        .network("default", "net", "10.1.2.0/24", "10.1.2.1");
    let a = c.pod(0, "net", "default");
    let x = c.pod(1, "net", "default");
    for ip in [x.ip.as_str(), Outside::HOST] {
        assert!(a.reaches(ip, Duration::from_secs(10)), "a reaches {ip}");
    }
    println!(
        "northsouth_bench: 2 hosts (userspace datapath), iperf3 one TCP stream, {seconds}s x {rounds} (median)"
    );
    let ew = measure("pod -> pod across hosts (VXLAN)", rounds, || {
        a.iperf3_to(&x, seconds)
    });
    let ns = measure("pod -> outside (router + host NAT)", rounds, || {
        iperf3(&a.netns, &o.ns, Outside::HOST, seconds)
    });
    measure("host1 -> outside (no Contiv in the path)", rounds, || {
        iperf3(&c.hosts[0].ns, &o.ns, Outside::HOST, seconds)
    });
    println!(
        "  ratio north-south / east-west              {:>6.2}   (target >= 0.8)",
        ns / ew
    );

    println!("ADD returned -> first TCP connection to the outside accepted:");
    c.master.network("blue", "net", "10.1.3.0/24", "10.1.3.1");
    let report = |label: &str, runs: Vec<f64>| {
        let max = runs.iter().cloned().fold(0.0, f64::max);
        println!(
            "  {label:<44} median {:>6.1} ms, max {max:>6.1} ms (target <= 100 ms)",
            median(runs.clone())
        );
        println!("    runs: {runs:.1?}");
    };
    let blue = c.hosts[0].router_netns("blue");
    let runs = (0..adds)
        .map(|i| {
            // Its last pod gone, the tenant's router goes: each ADD makes it again.
            test_e2e::wait_for("blue's router to go", Duration::from_secs(10), || {
                !c.hosts[0].router_namespaces().contains(&blue)
            });
            add_to_first_packet(&c, &o, "blue", "net", 9000 + i as u16)
        })
        .collect();
    report(
        &format!("first pod of a tenant on host1 (router made), {adds}"),
        runs,
    );
    let runs = (0..adds)
        .map(|i| add_to_first_packet(&c, &o, "default", "net", 9100 + i as u16))
        .collect();
    report(&format!("a pod of a tenant with a router, {adds}"), runs);
}
