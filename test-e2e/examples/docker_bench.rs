//! Benchmark: what the Contiv Docker driver adds to a container's life. `docker run -d` (to
//! "started") and `docker rm -f` latency, p50 and p90, for containers on a Contiv network
//! (`-d <plugin> --ipam-driver <plugin>`) against the same containers with `--network none`
//! (no networking at all: the baseline is Docker's own cost), measured in the same run,
//! alternating, on the same private dockerd.
//!
//! `cargo run --release -p test-e2e --example docker_bench [-- --containers 30]`
//!
//! Needs root, docker.io, Open vSwitch, busybox-static (scripts/setup.sh). Setup as in
//! test-e2e/tests/docker.rs: a netmaster (authentication on), one simulated host (netns + own
//! OVS + agent serving a unique plugin socket) and a private dockerd in that namespace. The
//! driver's share (IPAM reservation in netmaster, veth + OVS port + flows, Join; and the
//! reverse) is the difference of the two medians.

use std::time::{Duration, Instant};
use test_e2e::docker::{Dockerd, IMAGE, PluginSocket};
use test_e2e::{Host, Netmaster};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let mut n = 30usize;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--containers") {
        n = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .expect("--containers N");
    }
    // Authentication on, as in production (CONTIV_E2E_AUTH=0 opts out): the agent creates the
    // bench's network with an ops user's token (--docker-token-file).
    let master = Netmaster::start();
    let socket = PluginSocket::new();
    let plugin = socket.name.clone();
    let mut host = Host::netns_only(&master, "benchhost");
    let args = master.docker_agent_args(&socket.path);
    host.boot(&args.iter().map(String::as_str).collect::<Vec<_>>());
    socket.wait();
    let docker = Dockerd::start(&host);
    docker.ok(
        &[
            "network",
            "create",
            "-d",
            &plugin,
            "--ipam-driver",
            &plugin,
            "--subnet",
            "10.90.0.0/22",
            "--gateway",
            "10.90.0.1",
            "bench",
        ],
        &host,
    );

    let mut runs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut rms: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let nets = ["bench", "none"];
    // Two untimed warm-ups each, then alternate so drift hits both alike.
    for i in 0..n + 2 {
        for (k, net) in nets.iter().enumerate() {
            let name = format!("b{k}x{i}");
            let t = Instant::now();
            docker.ok(
                &[
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "--network",
                    net,
                    IMAGE,
                    "sleep",
                    "100000",
                ],
                &host,
            );
            let run = t.elapsed();
            let t = Instant::now();
            docker.ok(&["rm", "-f", &name], &host);
            let rm = t.elapsed();
            if i >= 2 {
                runs[k].push(ms(run));
                rms[k].push(ms(rm));
            }
        }
    }
    let eps = master.endpoints().len();
    println!(
        "docker_bench: {n} containers each, dockerd 20.10 (vfs), userspace OVS, debug={}",
        cfg!(debug_assertions)
    );
    println!("{:<28} {:>9} {:>9}", "", "p50 ms", "p90 ms");
    let mut med = [[0.0; 2]; 2];
    for (k, label) in ["contiv network", "--network none (baseline)"]
        .iter()
        .enumerate()
    {
        let (r50, r90) = (percentile(&mut runs[k], 0.5), percentile(&mut runs[k], 0.9));
        let (d50, d90) = (percentile(&mut rms[k], 0.5), percentile(&mut rms[k], 0.9));
        med[k] = [r50, d50];
        println!("{:<28} {:>9.1} {:>9.1}", format!("run  {label}"), r50, r90);
        println!("{:<28} {:>9.1} {:>9.1}", format!("rm   {label}"), d50, d90);
    }
    println!(
        "ratio contiv/baseline: run {:.2}x (+{:.1} ms), rm {:.2}x (+{:.1} ms)",
        med[0][0] / med[1][0],
        med[0][0] - med[1][0],
        med[0][1] / med[1][1],
        med[0][1] - med[1][1]
    );
    println!("netmaster endpoints left after the runs: {eps} (must be 0)");
    docker.ok(&["network", "rm", "bench"], &host);
}
