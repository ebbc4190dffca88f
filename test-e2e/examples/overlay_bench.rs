//! Benchmark: pod-to-pod throughput over Contiv's pipeline, same host and across hosts (VXLAN),
//! each against OVS's own `NORMAL` forwarding on the same bridges, ports and tunnels, measured in
//! the same run; and the time from a host joining to full reachability.
//!
//! `cargo run --release -p test-e2e --example overlay_bench [-- --seconds 5 --rounds 3]`
//!
//! Needs root, Open vSwitch, iproute2 and iperf3 (scripts/setup.sh).
//!
//! How: a simulated cluster of two hosts (network namespaces, each with its own ovsdb-server,
//! ovs-vswitchd (userspace datapath) and netplugin) on one underlay; pods a and b on host1, c on
//! host2, made by the real `contiv` plugin. iperf3 (one TCP stream, `--seconds` each, `--rounds`
//! times, median) a->b and a->c through the agent's flows. Then the agents are stopped, port tags
//! cleared, and every flow on both integration bridges replaced by one
//! `set_field:<VNI>->tun_id,NORMAL` (the tunnels need the VNI; `NORMAL` learns and floods): the
//! same iperf3 runs again. Ratio = ours / NORMAL (>= 1 means our pipeline costs nothing).
//! First, a third host joins the running cluster: the time from starting its agent to its tunnels
//! on every host, and to a pod on it reaching a pod on host1.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use test_e2e::{Cluster, Host, Pod, cli_arg, tunnels};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn measure(label: &str, from: &Pod, to: &Pod, seconds: u64, rounds: u64) -> f64 {
    let runs: Vec<f64> = (0..rounds).map(|_| from.iperf3_to(to, seconds)).collect();
    let m = median(runs.clone());
    println!("  {label:<34} {m:>6.3} Gbit/s   (runs: {runs:.3?})");
    m
}

/// Replaces the agent's pipeline by OVS's learning switch on `h`'s integration bridge.
fn switch_to_normal(h: &mut Host, vni: u64) {
    h.kill_agent();
    let db = format!("--db=unix:{}", h.db_sock().display());
    for p in h.ovs_ports() {
        let _ = Command::new("ovs-vsctl")
            .args([&db, "clear", "port", &p, "tag"])
            .status();
    }
    let target = format!("unix:{}/{}.mgmt", h.dir.display(), h.bridge);
    let mut c = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow14", "replace-flows", &target, "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(
        c.stdin.take().unwrap(),
        "priority=0,actions=set_field:{vni}->tun_id,NORMAL"
    )
    .unwrap();
    assert!(c.wait().unwrap().success(), "replace flows on {}", h.name);
}

fn main() {
    let seconds = cli_arg("--seconds", 5);
    let rounds = cli_arg("--rounds", 3);
    let mut c = Cluster::start(2, &[]);
    println!("overlay_bench: 2 hosts up, host3 joins");
    c.master
        .network("default", "contiv-net", "10.1.2.0/24", "10.1.2.1");
    let a0 = c.pod(0, "contiv-net", "default");
    // A new host joins a running cluster.
    let t0 = Instant::now();
    let i = c.add_host("host3");
    let agent_up = t0.elapsed();
    c.wait_for_mesh();
    let mesh = t0.elapsed();
    let p = c.pod(i, "contiv-net", "default");
    let reached = p.reaches(&a0.ip, Duration::from_secs(20));
    let reach = t0.elapsed();
    assert!(reached, "host3's pod never reached host1's");
    println!("Host join (host3):");
    println!(
        "  agent serving CNI       {:>7.0} ms",
        agent_up.as_secs_f64() * 1e3
    );
    println!(
        "  tunnels on every host   {:>7.0} ms ({} tunnels on host3)",
        mesh.as_secs_f64() * 1e3,
        tunnels(&c.hosts[i]).len()
    );
    println!(
        "  pod on host3 reaches a pod on host1 {:>7.0} ms (includes the pod's CNI ADD)",
        reach.as_secs_f64() * 1e3
    );
    // Throughput between the first two hosts; host3 leaves (NORMAL floods from tunnel to tunnel,
    // so the baseline must not run on a mesh of three: broadcasts would loop).
    drop(p);
    c.hosts.truncate(2);
    let a = a0;
    let b = c.pod(0, "contiv-net", "default");
    let x = c.pod(1, "contiv-net", "default");
    for (p, q) in [(&a, &b), (&a, &x)] {
        assert!(p.reaches(&q.ip, Duration::from_secs(10)));
    }
    let (_, net) = c
        .master
        .api("GET", "/api/v1/inspect/networks/default:contiv-net/", None);
    let vni = net["Oper"]["externalPktTag"]
        .as_u64()
        .unwrap_or_else(|| panic!("no VNI in {net}"));
    println!(
        "overlay_bench: hosts 1 and 2 (userspace datapath), iperf3 one TCP stream, {seconds}s x {rounds} (median)"
    );
    println!("Contiv pipeline:");
    let ours_local = measure("same host (a -> b)", &a, &b, seconds, rounds);
    let ours_remote = measure("across hosts, VXLAN (a -> c)", &a, &x, seconds, rounds);
    println!("OVS NORMAL on the same bridges and tunnels (VNI {vni}):");
    for h in c.hosts.iter_mut() {
        switch_to_normal(h, vni);
    }
    for (p, q) in [(&a, &b), (&a, &x)] {
        assert!(
            p.reaches(&q.ip, Duration::from_secs(10)),
            "baseline: {} cannot reach {}",
            p.ip,
            q.ip
        );
    }
    let normal_local = measure("same host (a -> b)", &a, &b, seconds, rounds);
    let normal_remote = measure("across hosts, VXLAN (a -> c)", &a, &x, seconds, rounds);
    println!("Ratio (ours / NORMAL):");
    println!("  same host      {:.2}", ours_local / normal_local);
    println!("  across hosts   {:.2}", ours_remote / normal_remote);
}
