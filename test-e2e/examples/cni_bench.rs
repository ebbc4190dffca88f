//! Benchmark: CNI ADD and DEL latency (p50, p99) and pods per second, serial and in parallel, for
//! the real `contiv` plugin (agent + netmaster + private OVS, userspace datapath) and, in the same
//! run and the same way, for the reference `bridge` plugin with `host-local` IPAM (Debian
//! `containernetworking-plugins`).
//!
//! `cargo run --release -p test-e2e --example cni_bench [-- --pods 200 --parallel 8 --veth]`
//!
//! The agent attaches pods as the shipped systemd unit does, on pooled ports (each pod a
//! macvlan of one of 32 ready ports; docs/decisions.md "Pooled ports"; `--port-pool 32`, the
//! default). `--veth` gives each pod a veth and port made at its ADD; `--trunks` a macvlan of
//! its network's one port (docs/decisions.md "Network trunks"; not the default since issue 18,
//! docs/security.md "Pod identity").
//!
//! Needs root, Open vSwitch, iproute2 and /usr/lib/cni/{bridge,host-local} (scripts/setup.sh).
//!
//! What is measured: one simulated host (a network namespace with its own ovsdb-server,
//! ovs-vswitchd and netplugin, as the e2e tests use). Both plugins are exec'd like a runtime does
//! (`cni_call_with`: env, config on stdin, result on stdout) from threads that have entered the
//! host's namespace (the `bridge` plugin in a host namespace of its own, where it builds its Linux
//! bridge: in the agent's, its veths would make our ovs-vswitchd reconfigure). Every run gets fresh pod
//! namespaces, made before it (not timed); each DEL is followed by the removal of its pod's
//! namespace's name (in the phase, for both plugins), as a runtime does. For each mode (serial, then N in
//! parallel) and plugin: a few untimed warm-up pods, then the ADD of every pod (phase 1) and then
//! the DEL of every pod (phase 2, with `prevResult` as libcni passes it). Latency is one plugin
//! call as the runtime sees it (spawn to exit). ADD/s and DEL/s are pods over the phase's wall
//! time; pods/s is full cycles: pods / (ADD phase + DEL phase). CPU per pod counts every process
//! involved (plugin processes and their children, agent with its `ovs-ofctl` children,
//! ovs-vswitchd, ovsdb-server, netmaster) from /proc.
//!
//! Then a breakdown of contiv's ADD and DEL from the agent's log: its own time per call against
//! the plugin call, and its time step by step as the endpoint manager marks it
//! (`netplugin::steps`: the real code path, not a replica).
//!
//! Ctrl-C stops after the calls in flight; daemons, namespaces and temp dirs are always removed.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};
use test_e2e::{Host, Netmaster, Pod, bin, cni_call_with, unique};

const CNI_VERSION: &str = "1.0.0";
const BRIDGE_PLUGIN: &str = "/usr/lib/cni/bridge";
const WARMUP: usize = 5;

/// Set by SIGINT/SIGTERM: workers stop, and everything is cleaned up on the way out.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Args {
    pods: usize,
    parallel: usize,
    /// The agent's `--port-pool` (0: a veth and port per pod).
    port_pool: usize,
    /// The agent's `--trunks`.
    trunks: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        pods: 200,
        parallel: 8,
        port_pool: 32,
        trunks: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut num = |what: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{what} needs a number"))
        };
        match k.as_str() {
            "--pods" => a.pods = num("--pods")?.max(1),
            "--parallel" => a.parallel = num("--parallel")?.max(1),
            "--port-pool" => {
                a.port_pool = num("--port-pool")?;
                a.trunks = false;
            }
            "--trunks" => (a.trunks, a.port_pool) = (true, 0),
            "--veth" => (a.trunks, a.port_pool) = (false, 0),
            "-h" | "--help" => {
                println!(
                    "cni_bench [--pods N (200)] [--parallel P (8)] [--port-pool N (32, the default) | --veth | --trunks]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(a)
}

fn main() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
    let code = match args().and_then(|a| run(&a)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cni_bench: {e}");
            1
        }
    };
    // Everything (daemons, namespaces, temp dirs) was dropped inside run().
    std::process::exit(code);
}

// ------------------------------------------------------------------------ plugins

/// A plugin as a runtime would call it.
struct Plugin {
    name: &'static str,
    path: PathBuf,
    conf: Value,
}

/// host-local's state directory; removed on drop (and by the harness's leftover cleanup after a
/// crash, since the name carries this process's id).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bridge_plugin(data_dir: &Path) -> Plugin {
    Plugin {
        name: "bridge",
        path: PathBuf::from(BRIDGE_PLUGIN),
        conf: json!({
            "cniVersion": CNI_VERSION,
            "name": "bench-bridge",
            "type": "bridge",
            "bridge": "benchbr0",
            "isGateway": true,
            "ipMasq": false,
            "mtu": 1450,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.129.0.0/16", "gateway": "10.129.0.1"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": data_dir,
            }
        }),
    }
}

fn contiv_plugin(h: &Host) -> Plugin {
    Plugin {
        name: "contiv",
        path: bin("contiv"),
        conf: h.conf(CNI_VERSION, json!({})),
    }
}

/// Enters a network namespace on the calling thread (children it spawns inherit it).
fn enter_netns(ns: &File) -> Result<(), String> {
    // SAFETY: setns on this thread only, with a valid namespace fd.
    let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if r == 0 {
        Ok(())
    } else {
        Err(format!("setns: {}", std::io::Error::last_os_error()))
    }
}

fn host_netns(h: &Host) -> Result<File, String> {
    let p = format!("/var/run/netns/{}", h.ns);
    File::open(&p).map_err(|e| format!("open {p}: {e}"))
}

// ------------------------------------------------------------------------ CPU accounting

/// Who spends CPU on a pod: the plugin processes the runtime execs (and their children, e.g.
/// host-local), and the daemons of the host (their reaped children, e.g. the agent's
/// `ovs-ofctl`, included).
const CPU_WHO: [&str; 5] = [
    "plugin procs",
    "agent+ovs-ofctl",
    "ovs-vswitchd",
    "ovsdb-server",
    "netmaster",
];

struct Procs {
    daemons: [Option<u32>; 4],
}

impl Procs {
    fn find(h: &Host, m: &Netmaster) -> Self {
        let pidfile = |f: &str| -> Option<u32> {
            std::fs::read_to_string(h.dir.join(f))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        // The process whose program is `prog` and whose arguments mention `needle`.
        let by_cmdline = |prog: &str, needle: &str| -> Option<u32> {
            std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd);
                let argv0 = cmd.split('\0').next().unwrap_or_default();
                (argv0.ends_with(prog) && cmd.contains(needle)).then_some(pid)
            })
        };
        let p = Procs {
            daemons: [
                by_cmdline("netplugin", &h.cni_socket.display().to_string()),
                pidfile("vswitchd.pid"),
                pidfile("ovsdb.pid"),
                by_cmdline("netmaster", &m.socket.display().to_string()),
            ],
        };
        for (who, pid) in CPU_WHO[1..].iter().zip(&p.daemons) {
            if pid.is_none() {
                eprintln!("warning: no process found for {who}: its CPU is not counted");
            }
        }
        p
    }

    /// CPU seconds so far of each of [`CPU_WHO`].
    fn snapshot(&self) -> [f64; 5] {
        let mut out = [0.0; 5];
        // SAFETY: getrusage fills the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } == 0 {
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            out[0] = tv(ru.ru_utime) + tv(ru.ru_stime);
        }
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        for (i, pid) in self.daemons.iter().enumerate() {
            let Some(pid) = pid else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the command name: state is field 3, utime..cstime are 14..17.
            let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
            let f: Vec<f64> = rest
                .split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|x| x.parse().ok())
                .collect();
            out[i + 1] = f.iter().sum::<f64>() / hz;
        }
        out
    }
}

// ------------------------------------------------------------------------ measuring

/// One call: which pod, and how long the runtime waited.
struct Phase {
    lat: Vec<Duration>,
    wall: Duration,
    results: Vec<Value>,
    /// CPU seconds spent during the phase by each of [`CPU_WHO`].
    cpu: [f64; 5],
}

impl Phase {
    fn per_sec(&self) -> f64 {
        self.lat.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `command` for every pod with `workers` threads in the host's namespace.
#[allow(clippy::too_many_arguments)]
fn phase(
    procs: &Procs,
    hostns: &File,
    plugin: &Plugin,
    command: &str,
    pods: &[Pod],
    container_ids: &[String],
    prev: Option<&[Value]>,
    workers: usize,
    settle: &dyn Fn() -> Result<(), String>,
) -> Result<Phase, String> {
    let n = pods.len();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let out: Mutex<Vec<Option<(Duration, Value)>>> = Mutex::new(vec![None; n]);
    let error: Mutex<Option<String>> = Mutex::new(None);
    let barrier = Barrier::new(workers + 1);
    let cpu0 = procs.snapshot();
    let mut start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let entered = enter_netns(hostns);
                barrier.wait();
                if let Err(e) = entered {
                    failed.store(true, Ordering::SeqCst);
                    *error.lock().unwrap() = Some(e);
                    return;
                }
                loop {
                    if failed.load(Ordering::SeqCst) || STOP.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return;
                    }
                    let mut conf = plugin.conf.clone();
                    if let Some(p) = prev {
                        conf["prevResult"] = p[i].clone();
                    }
                    let r = cni_call_with(
                        &plugin.path,
                        command,
                        &container_ids[i],
                        &pods[i].netns_path(),
                        "eth0",
                        &conf,
                        &[],
                    );
                    if !r.ok() {
                        failed.store(true, Ordering::SeqCst);
                        *error.lock().unwrap() = Some(format!(
                            "{} {command} of {} failed (exit {}): {} {}",
                            plugin.name,
                            container_ids[i],
                            r.code,
                            r.stdout.trim(),
                            r.stderr.trim()
                        ));
                        return;
                    }
                    if command == "DEL" {
                        // As a runtime does once the pod's network is torn down.
                        pods[i].remove_netns();
                    }
                    out.lock().unwrap()[i] = Some((r.elapsed, r.json));
                }
            });
        }
        barrier.wait();
        start = Instant::now();
    });
    if !failed.load(Ordering::SeqCst) {
        settle()?;
    }
    let wall = start.elapsed();
    let cpu1 = procs.snapshot();
    let cpu = std::array::from_fn(|i| cpu1[i] - cpu0[i]);
    if let Some(e) = error.into_inner().unwrap() {
        return Err(e);
    }
    if STOP.load(Ordering::SeqCst) {
        return Err("interrupted".into());
    }
    let (lat, results) = out
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|o| o.expect("every pod was called"))
        .unzip();
    Ok(Phase {
        lat,
        wall,
        results,
        cpu,
    })
}

/// Nearest-rank percentile, in milliseconds.
fn pct(lat: &[Duration], p: f64) -> f64 {
    if lat.is_empty() {
        return f64::NAN;
    }
    let mut v: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

struct RunResult {
    plugin: &'static str,
    workers: usize,
    add: Phase,
    del: Phase,
    container_ids: Vec<String>,
}

impl RunResult {
    fn pods_per_sec(&self) -> f64 {
        self.add.lat.len() as f64 / (self.add.wall + self.del.wall).as_secs_f64()
    }
}

/// Warm-up, then ADD every pod, then DEL every pod. `settle` ends a DEL phase: it returns once
/// the plugin's work of the phase is done, where the plugin finishes it after its calls.
#[allow(clippy::too_many_arguments)]
fn run_plugin(
    procs: &Procs,
    hostns: &File,
    plugin: &Plugin,
    npods: usize,
    workers: usize,
    tag: &str,
    check_added: &dyn Fn(usize) -> Result<(), String>,
    settle: &dyn Fn() -> Result<(), String>,
) -> Result<RunResult, String> {
    let done = || Ok(());
    // Fresh namespaces for every run (not timed): each DEL removes its pod's namespace.
    let warm: Vec<Pod> = (0..WARMUP.min(npods)).map(|_| Pod::new()).collect();
    let pods: Vec<Pod> = (0..npods).map(|_| Pod::new()).collect();
    let (warm, pods) = (&warm[..], &pods[..]);
    let warm_ids: Vec<String> = warm
        .iter()
        .map(|p| format!("{}w{tag}", p.container_id))
        .collect();
    let a = phase(
        procs, hostns, plugin, "ADD", warm, &warm_ids, None, workers, &done,
    )?;
    phase(
        procs,
        hostns,
        plugin,
        "DEL",
        warm,
        &warm_ids,
        Some(&a.results),
        workers,
        settle,
    )?;

    let ids: Vec<String> = pods
        .iter()
        .map(|p| format!("{}r{tag}", p.container_id))
        .collect();
    let add = phase(
        procs, hostns, plugin, "ADD", pods, &ids, None, workers, &done,
    )?;
    check_added(pods.len())?;
    let del = phase(
        procs,
        hostns,
        plugin,
        "DEL",
        pods,
        &ids,
        Some(&add.results),
        workers,
        settle,
    )?;
    check_added(0)?;
    Ok(RunResult {
        plugin: plugin.name,
        workers,
        add,
        del,
        container_ids: ids,
    })
}

/// The plugin's own cost: VERSION is answered without any network work.
fn exec_floor(hostns: &File, plugin: &Plugin) -> Result<f64, String> {
    let pods = [Pod::new()];
    let mut lat = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), String> {
            enter_netns(hostns)?;
            for _ in 0..30 {
                let r = cni_call_with(
                    &plugin.path,
                    "VERSION",
                    "v",
                    &pods[0].netns_path(),
                    "eth0",
                    &plugin.conf,
                    &[],
                );
                if !r.ok() {
                    return Err(format!("{} VERSION: {}", plugin.name, r.stdout));
                }
                lat.push(r.elapsed);
            }
            Ok(())
        })
        .join()
        .expect("VERSION thread")
    })?;
    Ok(pct(&lat, 50.0))
}

// ------------------------------------------------------------------------ main flow

fn run(a: &Args) -> Result<(), String> {
    if !Path::new(BRIDGE_PLUGIN).exists() {
        return Err(format!(
            "{BRIDGE_PLUGIN} is missing: install containernetworking-plugins (scripts/setup.sh)"
        ));
    }
    eprintln!("building the binaries and starting netmaster and one host (OVS + netplugin)...");
    let m = Netmaster::start();
    m.network("default", "default-net", "10.128.0.0/16", "10.128.0.1");
    let mut h = Host::netns_only(&m, "bench1");
    let pool_arg = format!("--port-pool={}", a.port_pool);
    let agent_args: Vec<&str> = if a.trunks {
        vec!["--trunks"]
    } else if a.port_pool > 0 {
        vec![pool_arg.as_str()]
    } else {
        Vec::new()
    };
    h.boot(&agent_args);
    let hostns = host_netns(&h)?;
    let data_dir = TempDir(PathBuf::from(format!("/tmp/{}", unique("ipam"))));
    std::fs::create_dir_all(&data_dir.0).map_err(|e| e.to_string())?;
    let contiv = contiv_plugin(&h);
    let bridge = bridge_plugin(&data_dir.0);

    let contiv_ports = |want: usize| -> Result<(), String> {
        // Pooled ports and trunks stay on the bridge: count the endpoints they serve.
        let ports = if a.trunks {
            h.trunk_records().len()
        } else if a.port_pool > 0 {
            h.pool_marks().len()
        } else {
            h.ovs_ports().len()
        };
        let eps = m.endpoints().len();
        if ports == want && eps == want {
            Ok(())
        } else {
            Err(format!(
                "contiv: expected {want} OVS ports and endpoints, found {ports} ports and {eps} endpoints"
            ))
        }
    };
    let bridge_leases = |want: usize| -> Result<(), String> {
        let dir = data_dir.0.join("bench-bridge");
        let leases = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().parse::<IpAddr>().is_ok())
                    .count()
            })
            .unwrap_or(0);
        if leases == want {
            Ok(())
        } else {
            Err(format!(
                "bridge: expected {want} host-local leases, found {leases}"
            ))
        }
    };

    let procs = Procs::find(&h, &m);
    // The bridge plugin gets a host namespace of its own: in the agent's, every veth it makes
    // is a link event that makes our ovs-vswitchd reconfigure its bridge, and that CPU (a
    // third to a half of a bridge run's) slowed the baseline down.
    let bridge_host = Pod::new();
    bridge_host.exec(&["ip", "link", "set", "lo", "up"]);
    let bridge_hostns = File::open(bridge_host.netns_path())
        .map_err(|e| format!("open {}: {e}", bridge_host.netns_path()))?;
    let ns_of = |p: &Plugin| {
        if p.name == "contiv" {
            &hostns
        } else {
            &bridge_hostns
        }
    };
    let floor_contiv = exec_floor(&hostns, &contiv)?;
    let floor_bridge = exec_floor(&bridge_hostns, &bridge)?;

    let mut results = Vec::new();
    for (tag, workers) in [("s", 1), ("p", a.parallel)] {
        for plugin in [&contiv, &bridge] {
            eprintln!(
                "{}: {} pods, {} ...",
                plugin.name,
                a.pods,
                mode_name(workers)
            );
            let check: &dyn Fn(usize) -> Result<(), String> = if plugin.name == "contiv" {
                &contiv_ports
            } else {
                &bridge_leases
            };
            let settle: &dyn Fn() -> Result<(), String> = if plugin.name == "contiv" {
                &|| agent_veths_gone(&h)
            } else {
                &|| Ok(())
            };
            let tag = format!("{tag}{}", &plugin.name[..1]);
            results.push(run_plugin(
                &procs,
                ns_of(plugin),
                plugin,
                a.pods,
                workers,
                &tag,
                check,
                settle,
            )?);
            if plugin.name == "contiv" && a.port_pool > 0 {
                // Not timed: the agent trims the ports the burst left beyond twice its pool at
                // the next lull; that must not run into the next plugin's run.
                pool_trimmed(&h, a.port_pool)?;
            }
        }
    }

    print_report(a, &results, floor_contiv, floor_bridge);
    print_cpu(&results);
    print_agent_split(&h, &results);

    Ok(())
}

/// Returns once the agent has deleted all its host veths and their ports. A DEL removes the
/// endpoint's flows and address and queues port and veth; the agent deletes them at a lull.
/// That deletion belongs to the DEL phase (the bridge plugin deletes its veth in its DEL).
fn agent_veths_gone(h: &Host) -> Result<(), String> {
    let ns = &h.ns;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = std::process::Command::new("ip")
            .args(["-n", ns, "-o", "link", "show"])
            .output()
            .map_err(|e| format!("ip -n {ns} link show: {e}"))?;
        let veths = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .filter(|n| netplugin::datapath::is_host_ifname(n.split('@').next().unwrap_or(n)))
            .count();
        // Ports only once the veths are gone: the reaper deletes ports first.
        let left = if veths > 0 {
            veths
        } else {
            h.ovs_ports_now()
                .iter()
                .filter(|p| netplugin::datapath::is_host_ifname(p))
                .count()
        };
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the agent left {left} veths 30 s after the last DEL"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Returns once the bridge has at most twice `pool` pooled ports.
fn pool_trimmed(h: &Host, pool: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = h.pool_ports().len();
        if n <= 2 * pool {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the agent still has {n} pooled ports 60 s after the run"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode_name(workers: usize) -> String {
    if workers == 1 {
        "serial".into()
    } else {
        format!("{workers} in parallel")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT met" }
}

fn print_report(a: &Args, results: &[RunResult], floor_contiv: f64, floor_bridge: f64) {
    println!();
    println!(
        "CNI ADD/DEL benchmark: {} pods per run, cniVersion {CNI_VERSION}, one host namespace with \
         its own OVS (userspace datapath) and netplugin",
        a.pods
    );
    let attach = if a.trunks {
        "pods on network trunks (--trunks)".to_string()
    } else if a.port_pool > 0 {
        format!("pods on pooled ports (--port-pool {})", a.port_pool)
    } else {
        "a veth and port per pod".to_string()
    };
    println!(
        "contiv: agent + netmaster, {attach}, network default:default-net 10.128.0.0/16, gateway 10.128.0.1"
    );
    println!(
        "bridge: {BRIDGE_PLUGIN} + host-local, Linux bridge in a host namespace of its own (no OVS there), \
         10.129.0.0/16, gateway on the bridge, default route, no masquerade"
    );
    println!(
        "plugin exec floor (VERSION call, p50): contiv {floor_contiv:.2} ms, bridge {floor_bridge:.2} ms"
    );
    println!(
        "latency = one plugin call as the runtime sees it; ADD/s, DEL/s = pods / phase wall time; \
         pods/s = full cycles = pods / (ADD phase + DEL phase)"
    );
    println!();
    println!(
        "{:<14} {:<14} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "mode", "plugin", "ADD p50", "ADD p99", "DEL p50", "DEL p99", "ADD/s", "DEL/s", "pods/s"
    );
    println!("{}", "-".repeat(96));
    let mut targets = Vec::new();
    for pair in results.chunks(2) {
        let [c, b] = pair else { continue };
        let mode = mode_name(c.workers);
        for r in [b, c] {
            println!(
                "{:<14} {:<14} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8.1} {:>8.1} {:>8.1}",
                mode,
                r.plugin,
                pct(&r.add.lat, 50.0),
                pct(&r.add.lat, 99.0),
                pct(&r.del.lat, 50.0),
                pct(&r.del.lat, 99.0),
                r.add.per_sec(),
                r.del.per_sec(),
                r.pods_per_sec(),
            );
        }
        let lr = |f: &dyn Fn(&RunResult) -> f64| f(c) / f(b);
        let add50 = lr(&|r| pct(&r.add.lat, 50.0));
        let del50 = lr(&|r| pct(&r.del.lat, 50.0));
        let pods = lr(&|r| r.pods_per_sec());
        println!(
            "{:<14} {:<14} {:>8.2}x {:>8.2}x {:>8.2}x {:>8.2}x {:>7.2}x {:>7.2}x {:>7.2}x",
            mode,
            "contiv/bridge",
            add50,
            lr(&|r| pct(&r.add.lat, 99.0)),
            del50,
            lr(&|r| pct(&r.del.lat, 99.0)),
            lr(&|r| r.add.per_sec()),
            lr(&|r| r.del.per_sec()),
            pods,
        );
        println!("{}", "-".repeat(96));
        targets.push((mode, c.workers, add50, del50, pods));
    }
    println!(
        "(latency ratios: contiv/bridge, lower is better; rate ratios: contiv over bridge, higher is better)"
    );
    println!();
    println!("targets (issue 4):");
    let mut all = true;
    for (mode, workers, add50, del50, pods) in &targets {
        println!(
            "  ADD p50 at most 0.5x bridge's, {mode:<14}: {add50:.2}x  {}",
            verdict(*add50 <= 0.5)
        );
        println!(
            "  DEL p50 at most 0.5x bridge's, {mode:<14}: {del50:.2}x  {}",
            verdict(*del50 <= 0.5)
        );
        all &= *add50 <= 0.5 && *del50 <= 0.5;
        if *workers > 1 {
            println!(
                "  pods/s at least 3x bridge's,   {mode:<14}: {pods:.2}x  {}",
                verdict(*pods >= 3.0)
            );
            all &= *pods >= 3.0;
        }
    }
    println!("  all targets: {}", if all { "MET" } else { "NOT all met" });
    // Does latency grow with the number of pods already attached?
    println!();
    let k = (a.pods / 10).max(1);
    println!(
        "serial, p50 of the {k} calls with the fewest / the most other pods attached \
         (0-{} / {}-{}):",
        k - 1,
        a.pods - k,
        a.pods - 1
    );
    for r in results.iter().filter(|r| r.workers == 1) {
        let n = r.add.lat.len();
        println!(
            "  {:<8} ADD {:>7.2} / {:>7.2} ms   DEL {:>7.2} / {:>7.2} ms",
            r.plugin,
            pct(&r.add.lat[..k], 50.0),
            pct(&r.add.lat[n - k..], 50.0),
            pct(&r.del.lat[n - k..], 50.0),
            pct(&r.del.lat[..k], 50.0),
        );
    }
}

fn print_cpu(results: &[RunResult]) {
    println!();
    println!(
        "CPU per pod, ADD + DEL (ms; all processes involved, measured from /proc; the machine has {} CPUs):",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print!("  {:<14} {:<8}", "mode", "plugin");
    for w in CPU_WHO {
        print!(" {w:>16}");
    }
    println!(" {:>8}", "total");
    for r in results {
        let n = r.add.lat.len() as f64;
        let per: Vec<f64> = (0..5)
            .map(|i| (r.add.cpu[i] + r.del.cpu[i]) * 1e3 / n)
            .collect();
        print!("  {:<14} {:<8}", mode_name(r.workers), r.plugin);
        for v in &per {
            print!(" {v:>16.2}");
        }
        println!(" {:>8.2}", per.iter().sum::<f64>());
    }
}

/// The agent's own time per call (its `CNI call done ... ms= steps=` log line) against the
/// plugin call the runtime saw (the rest is the shim's exec and the round trip over the CNI
/// socket), and where the agent's time went, step by step, as its endpoint manager marked it.
fn print_agent_split(h: &Host, results: &[RunResult]) {
    let log = h.agent_log();
    type Call = (f64, Vec<(String, f64)>);
    let mut calls: HashMap<(String, String), Call> = HashMap::new();
    for line in log.lines().filter(|l| l.contains("CNI call done")) {
        let kv: HashMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|t| t.split_once('='))
            .collect();
        if let (Some(c), Some(id), Some(ms)) =
            (kv.get("command"), kv.get("container"), kv.get("ms"))
            && let Ok(ms) = ms.parse()
        {
            let steps = netplugin::steps::parse(kv.get("steps").copied().unwrap_or_default())
                .into_iter()
                .map(|(n, ms)| (n.to_string(), ms))
                .collect();
            calls.insert((c.to_string(), id.to_string()), (ms, steps));
        }
    }
    println!();
    println!(
        "contiv: the agent's own time (its log: whole ms; steps to 0.01 ms) against the plugin call the runtime saw"
    );
    for r in results.iter().filter(|r| r.plugin == "contiv") {
        for (cmd, ph) in [("ADD", &r.add), ("DEL", &r.del)] {
            let mine: Vec<&Call> = r
                .container_ids
                .iter()
                .filter_map(|id| calls.get(&(cmd.to_string(), id.clone())))
                .collect();
            let agent: Vec<Duration> = mine
                .iter()
                .map(|(ms, _)| Duration::from_secs_f64(ms / 1e3))
                .collect();
            println!(
                "  {:<14} {cmd}: call p50 {:>6.2} ms, agent p50 {:>5.1} ms (p99 {:>5.1}), {} of {} calls logged",
                mode_name(r.workers),
                pct(&ph.lat, 50.0),
                pct(&agent, 50.0),
                pct(&agent, 99.0),
                agent.len(),
                ph.lat.len()
            );
            // Step name -> durations, in the order the steps ran.
            let mut order: Vec<&str> = Vec::new();
            let mut times: HashMap<&str, Vec<Duration>> = HashMap::new();
            for (_, steps) in &mine {
                for (name, ms) in steps {
                    if !times.contains_key(name.as_str()) {
                        order.push(name);
                    }
                    times
                        .entry(name)
                        .or_default()
                        .push(Duration::from_secs_f64(ms / 1e3));
                }
            }
            for name in order {
                let t = &times[name];
                let mean = t.iter().sum::<Duration>().as_secs_f64() * 1e3 / t.len() as f64;
                println!(
                    "      {name:<12} p50 {:>7.2}  p99 {:>7.2}  mean {mean:>7.2} ms",
                    pct(t, 50.0),
                    pct(t, 99.0),
                );
            }
        }
    }
}
