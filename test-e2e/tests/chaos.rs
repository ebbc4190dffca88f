//! Chaos: a few hundred random CNI ADD, DEL and CHECK calls over a few dozen pod namespaces on
//! one host, while the agent is SIGKILLed and restarted at random moments; in each attachment
//! mode (a veth port per pod, network trunks, the port pool). Whatever the interleaving, after
//! the agent is back:
//! - every pod whose last ADD or DEL was a successful ADD passes CHECK and talks (ping);
//! - every other pod can be ADDed (no ADD stays impossible), and then passes CHECK and talks;
//! - DEL of everything leaves no endpoint in netmaster, no endpoint port, link, flow, trunk
//!   record or side-namespace link, and no interface in the pods' namespaces.
//!
//! Also during the run: a CHECK of a pod whose last ADD or DEL was a successful ADD fails only
//! when the agent cannot be reached (code 11); the pod's interface never went missing.
//!
//! The operations, pods and kill times come from a seeded RNG; the seed is printed (set
//! `CONTIV_CHAOS_SEED` to replay it, `CONTIV_CHAOS_OPS` for another number of operations per
//! mode). Timing decides which operation a kill cuts, so a replay is the same workload, not
//! necessarily the same interleaving: the verdict holds for every interleaving.

use serde_json::{Value, json};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use test_e2e::{CniOutput, Host, Netmaster, Pod, cni_call};

/// Pods per mode, worker threads calling the plugin, and operations per mode.
const PODS: usize = 24;
const WORKERS: usize = 4;
const OPS: usize = 400;

/// The networks the pods are spread over: (name, subnet, gateway).
const NETWORKS: [(&str, &str, &str); 2] = [
    ("default-net", "10.1.2.0/24", "10.1.2.1"),
    ("other", "10.1.3.0/24", "10.1.3.1"),
];

/// SplitMix64: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("CONTIV_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// Past the test harness's capture, so that the seed and figures show in every run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A pod namespace and what the runtime last did to it.
struct PodState {
    pod: Pod,
    /// Index into [`NETWORKS`].
    net: usize,
    /// The sandbox generation: a successful DEL ends a sandbox, the next ADD is another
    /// container id in the same namespace (a runtime that keeps the namespace).
    generation: u32,
    /// Whether the last ADD or DEL was a successful ADD.
    added: bool,
    ip: String,
}

impl PodState {
    fn container(&self) -> String {
        format!("{}g{}", self.pod.container_id, self.generation)
    }
}

#[derive(Default)]
struct Tally {
    ops: AtomicUsize,
    failed: AtomicUsize,
    kills: AtomicUsize,
    /// The agent is being killed and restarted.
    down: AtomicBool,
    violations: Mutex<Vec<String>>,
}

struct Chaos {
    m: Netmaster,
    h: Host,
    mode: &'static str,
    seed: u64,
}

impl Chaos {
    fn start(mode: &'static str, agent_args: &[&str]) -> Self {
        let seed = seed();
        say(&format!(
            "chaos {mode}: seed {seed} (replay with CONTIV_CHAOS_SEED={seed})"
        ));
        let m = Netmaster::start();
        for (name, subnet, gw) in NETWORKS {
            m.network("default", name, subnet, gw);
        }
        let mut h = Host::netns_only(&m, "host1");
        h.boot(agent_args);
        Chaos { m, h, mode, seed }
    }

    fn conf(&self, net: usize) -> Value {
        self.h.conf("1.1.0", json!({"network": NETWORKS[net].0}))
    }

    fn call(&self, verb: &str, p: &PodState) -> CniOutput {
        cni_call(
            verb,
            &p.container(),
            &p.pod.netns_path(),
            "eth0",
            &self.conf(p.net),
        )
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "chaos {} (seed {}, replay with CONTIV_CHAOS_SEED={}): {what}\nagent log (tail):\n{}",
            self.mode,
            self.seed,
            self.seed,
            tail(&self.h.agent_log(), 80)
        )
    }

    fn run(mut self) {
        let started = Instant::now();
        let ops_total = std::env::var("CONTIV_CHAOS_OPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(OPS);
        let pods: Vec<Mutex<PodState>> = (0..PODS)
            .map(|i| {
                Mutex::new(PodState {
                    pod: Pod::new(),
                    net: i % NETWORKS.len(),
                    generation: 0,
                    added: false,
                    ip: String::new(),
                })
            })
            .collect();
        let tally = Tally::default();
        let done = AtomicBool::new(false);
        let issued = AtomicUsize::new(0);
        let (pods_ref, tally_ref, seed) = (&pods, &tally, self.seed);
        // The killer needs the host mutably; the workers need only its socket (in the conf).
        let confs: Vec<Value> = (0..NETWORKS.len()).map(|n| self.conf(n)).collect();
        let host = &mut self.h;
        std::thread::scope(|s| {
            for w in 0..WORKERS {
                let (confs, issued, done) = (&confs, &issued, &done);
                s.spawn(move || {
                    let mut rng = Rng(seed ^ (0x5bd1e995 * (w as u64 + 1)));
                    let mine: Vec<usize> = (w..PODS).step_by(WORKERS).collect();
                    while issued.fetch_add(1, Ordering::SeqCst) < ops_total {
                        // Mostly wait for the agent to be back (calls cut by a kill are the
                        // point; calls that find no agent at all, only some of them).
                        if rng.below(10) != 0 {
                            while tally_ref.down.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                        let i = mine[rng.below(mine.len() as u64) as usize];
                        let mut p = pods_ref[i].lock().unwrap();
                        let verb = match rng.below(10) {
                            0..=4 => "ADD",
                            5..=7 => "DEL",
                            _ => "CHECK",
                        };
                        let out = cni_call(
                            verb,
                            &p.container(),
                            &p.pod.netns_path(),
                            "eth0",
                            &confs[p.net],
                        );
                        tally_ref.ops.fetch_add(1, Ordering::SeqCst);
                        if !out.ok() {
                            tally_ref.failed.fetch_add(1, Ordering::SeqCst);
                        }
                        match verb {
                            "ADD" => {
                                p.added = out.ok();
                                if out.ok() {
                                    p.ip = ip_of(&out);
                                }
                            }
                            "DEL" => {
                                p.added = false;
                                if out.ok() {
                                    p.generation += 1;
                                }
                            }
                            _ => {
                                // An added pod's CHECK may fail only because the agent is
                                // down or went down during the call.
                                if p.added && !out.ok() && out.error_code() != 11 {
                                    tally_ref.violations.lock().unwrap().push(format!(
                                        "CHECK of {} (added) failed with code {}: {}",
                                        p.container(),
                                        out.error_code(),
                                        out.msg()
                                    ));
                                }
                            }
                        }
                    }
                    done.store(true, Ordering::SeqCst);
                });
            }
            let done = &done;
            s.spawn(move || {
                let mut rng = Rng(seed ^ 0xdead_beef);
                loop {
                    let wait = Instant::now() + Duration::from_millis(100 + rng.below(600));
                    while Instant::now() < wait && !done.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    tally_ref.down.store(true, Ordering::SeqCst);
                    host.kill_agent();
                    tally_ref.kills.fetch_add(1, Ordering::SeqCst);
                    // Down for a moment: some calls find no agent at all.
                    std::thread::sleep(Duration::from_millis(rng.below(150)));
                    host.start_agent();
                    tally_ref.down.store(false, Ordering::SeqCst);
                }
            });
        });
        let chaos_time = started.elapsed();
        let violations = tally.violations.lock().unwrap().clone();
        if !violations.is_empty() {
            self.fail(format!(
                "{} violations during the run:\n{}",
                violations.len(),
                violations.join("\n")
            ));
        }
        let mut pods: Vec<PodState> = pods.into_iter().map(|p| p.into_inner().unwrap()).collect();

        // Every pod whose last ADD or DEL was a successful ADD is intact.
        let added = pods.iter().filter(|p| p.added).count();
        for p in pods.iter().filter(|p| p.added) {
            let out = self.call("CHECK", p);
            if !out.ok() {
                self.fail(format!(
                    "CHECK of {} (last ADD succeeded) failed: code {} {}",
                    p.container(),
                    out.error_code(),
                    out.msg()
                ));
            }
        }
        // No ADD stays impossible: the rest are deleted (a runtime's cleanup) and ADDed.
        for p in pods.iter_mut().filter(|p| !p.added) {
            let out = self.call("DEL", p);
            if !out.ok() {
                self.fail(format!(
                    "DEL of {} after the run failed: code {} {}",
                    p.container(),
                    out.error_code(),
                    out.msg()
                ));
            }
            p.generation += 1;
            let out = self.call("ADD", p);
            if !out.ok() {
                self.fail(format!(
                    "ADD of {} after the run failed: code {} {}\nits namespace:\n{}",
                    p.container(),
                    out.error_code(),
                    out.msg(),
                    String::from_utf8_lossy(&p.pod.exec(&["ip", "-d", "link"]).stdout)
                ));
            }
            p.ip = ip_of(&out);
            p.added = true;
            let out = self.call("CHECK", p);
            if !out.ok() {
                self.fail(format!(
                    "CHECK of {} after its ADD failed: code {} {}",
                    p.container(),
                    out.error_code(),
                    out.msg()
                ));
            }
        }
        // They talk: each pod pings the next one of its network.
        for net in 0..NETWORKS.len() {
            let ring: Vec<&PodState> = pods.iter().filter(|p| p.net == net).collect();
            for (i, p) in ring.iter().enumerate() {
                let next = ring[(i + 1) % ring.len()];
                if !p.pod.reaches(&next.ip, Duration::from_secs(5)) {
                    self.fail(format!(
                        "{} ({}) does not reach {} ({})",
                        p.container(),
                        p.ip,
                        next.container(),
                        next.ip
                    ));
                }
            }
        }
        // DEL of everything leaves nothing behind.
        for p in &pods {
            let out = self.call("DEL", p);
            if !out.ok() {
                self.fail(format!(
                    "final DEL of {} failed: code {} {}",
                    p.container(),
                    out.error_code(),
                    out.msg()
                ));
            }
        }
        self.assert_nothing_left(&pods);
        say(&format!(
            "chaos {}: {} operations ({} failed), {} agent kills, {} pods added at the end of the run, chaos {:.1}s, total {:.1}s",
            self.mode,
            tally.ops.load(Ordering::SeqCst),
            tally.failed.load(Ordering::SeqCst),
            tally.kills.load(Ordering::SeqCst),
            added,
            chaos_time.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ));
    }

    /// Waits (up to 20 s: trunks go after `--trunk-idle`, the reaper at a lull) for a host
    /// with nothing of the pods left.
    fn assert_nothing_left(&self, pods: &[PodState]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = self.leftovers(pods);
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                self.fail(format!("left behind after DEL of every pod: {left:#?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn leftovers(&self, pods: &[PodState]) -> Vec<String> {
        let mut left = Vec::new();
        for e in self.m.endpoints() {
            left.push(format!("netmaster endpoint {}", e["endpointID"]));
        }
        let ports = self.h.ovs_ports_now();
        for p in ports.iter().filter(|p| !p.starts_with("vp")) {
            left.push(format!("OVS port {p}"));
        }
        for l in self.h.host_links() {
            if ["vc", "vt"].iter().any(|pre| l.starts_with(pre)) {
                left.push(format!("host link {l}"));
            }
        }
        let flows = self.h.flows();
        for p in pods {
            if !p.ip.is_empty()
                && flows.lines().any(|f| {
                    f.contains(&format!("={},", p.ip)) || f.ends_with(&format!("={}", p.ip))
                })
            {
                left.push(format!("flows of {}", p.ip));
            }
            let links = p.pod.link_names();
            if links != ["lo"] {
                left.push(format!("links {links:?} in pod namespace {}", p.pod.netns));
            }
        }
        for r in self.h.trunk_records() {
            left.push(format!("trunk record {r}"));
        }
        for r in self.h.trunk_leftovers() {
            left.push(format!("record of an interface to delete {r}"));
        }
        for l in self.h.side_links() {
            if l.starts_with("vt") {
                left.push(format!("side-namespace link {l}"));
            }
        }
        for mark in self.h.pool_marks() {
            left.push(format!("pooled port serving {mark}"));
        }
        // Every pooled port on the bridge has its link, and the other way round.
        let pool_links: Vec<String> = self
            .h
            .host_links()
            .into_iter()
            .filter(|l| l.starts_with("vp"))
            .collect();
        for p in ports.iter().filter(|p| p.starts_with("vp")) {
            if !pool_links.contains(p) {
                left.push(format!("pooled port {p} without its link"));
            }
        }
        for l in &pool_links {
            if !ports.contains(l) {
                left.push(format!("pooled link {l} without its port"));
            }
        }
        left
    }
}

fn ip_of(out: &CniOutput) -> String {
    out.json["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn chaos_veth_ports() {
    Chaos::start("veth", &[]).run();
}

#[test]
fn chaos_trunks() {
    Chaos::start("trunks", &["--trunks", "--trunk-idle=1"]).run();
}

#[test]
fn chaos_port_pool() {
    Chaos::start("pool", &["--port-pool=4"]).run();
}
