//! Benchmark: CNI ADD and DEL latency (p50, p99) and pods per second, serial and in parallel, for
//! the real `contiv` plugin (agent + netmaster + private OVS, userspace datapath) and, in the same
//! run and the same way, for the reference `bridge` plugin with `host-local` IPAM (Debian
//! `containernetworking-plugins`).
//!
//! `cargo run --release -p test-e2e --example cni_bench [-- --pods 200 --parallel 8 --profile-pods 200]`
//!
//! Needs root, Open vSwitch, iproute2 and /usr/lib/cni/{bridge,host-local} (scripts/setup.sh).
//!
//! What is measured: one simulated host (a network namespace with its own ovsdb-server,
//! ovs-vswitchd and netplugin, as the e2e tests use). Both plugins are exec'd like a runtime does
//! (`cni_call_with`: env, config on stdin, result on stdout) from threads that have entered the
//! host's namespace, so the `bridge` plugin builds its Linux bridge there. Pod namespaces are made
//! before the runs and removed after them (not timed). For each mode (serial, then N in
//! parallel) and plugin: a few untimed warm-up pods, then the ADD of every pod (phase 1) and then
//! the DEL of every pod (phase 2, with `prevResult` as libcni passes it). Latency is one plugin
//! call as the runtime sees it (spawn to exit). ADD/s and DEL/s are pods over the phase's wall
//! time; pods/s is full cycles: pods / (ADD phase + DEL phase). CPU per pod counts every process
//! involved (plugin processes and their children, agent with its `ovs-ofctl` children,
//! ovs-vswitchd, ovsdb-server, netmaster) from /proc.
//!
//! Then a breakdown of contiv's ADD and DEL: the agent's own time (its `CNI call done ... ms=`
//! log) against the plugin call, and a step-by-step replica of the agent's endpoint manager
//! (the same library calls `Manager::add`/`del` make, timed one by one) against the same host,
//! with two alternatives for the flow step measured next to it: `ovs-ofctl --no-names`, and a
//! persistent OpenFlow 1.4 connection sending one bundle (a minimal client in this file).
//!
//! Ctrl-C stops after the calls in flight; daemons, namespaces and temp dirs are always removed.

use netplugin::datapath::{Datapath, DatapathType, cookie, host_ifname, ids};
use netplugin::manager::endpoint_id;
use netplugin::netlink::{Netlink, Netns, disable_tx_checksum, parse_mac};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
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
    /// None: as many as `pods`.
    profile_pods: Option<usize>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        pods: 200,
        parallel: 8,
        profile_pods: None,
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
            "--profile-pods" => a.profile_pods = Some(num("--profile-pods")?),
            "-h" | "--help" => {
                println!(
                    "cni_bench [--pods N (200)] [--parallel P (8)] [--profile-pods M (= N; 0: no breakdown)]"
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
                    out.lock().unwrap()[i] = Some((r.elapsed, r.json));
                }
            });
        }
        barrier.wait();
        start = Instant::now();
    });
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

/// Warm-up, then ADD every pod, then DEL every pod.
fn run_plugin(
    procs: &Procs,
    hostns: &File,
    plugin: &Plugin,
    pods: &[Pod],
    workers: usize,
    tag: &str,
    check_added: &dyn Fn(usize) -> Result<(), String>,
) -> Result<RunResult, String> {
    let warm = &pods[..WARMUP.min(pods.len())];
    let warm_ids: Vec<String> = warm
        .iter()
        .map(|p| format!("{}w{tag}", p.container_id))
        .collect();
    let a = phase(procs, hostns, plugin, "ADD", warm, &warm_ids, None, workers)?;
    phase(
        procs,
        hostns,
        plugin,
        "DEL",
        warm,
        &warm_ids,
        Some(&a.results),
        workers,
    )?;

    let ids: Vec<String> = pods
        .iter()
        .map(|p| format!("{}r{tag}", p.container_id))
        .collect();
    let add = phase(procs, hostns, plugin, "ADD", pods, &ids, None, workers)?;
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
    let h = Host::start(&m, "bench1");
    let hostns = host_netns(&h)?;
    let data_dir = TempDir(PathBuf::from(format!("/tmp/{}", unique("ipam"))));
    std::fs::create_dir_all(&data_dir.0).map_err(|e| e.to_string())?;
    let contiv = contiv_plugin(&h);
    let bridge = bridge_plugin(&data_dir.0);

    let contiv_ports = |want: usize| -> Result<(), String> {
        let (ports, eps) = (h.ovs_ports().len(), m.endpoints().len());
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
    let floor_contiv = exec_floor(&hostns, &contiv)?;
    let floor_bridge = exec_floor(&hostns, &bridge)?;

    eprintln!("creating {} pod namespaces (not timed)...", a.pods);
    let pods: Vec<Pod> = (0..a.pods).map(|_| Pod::new()).collect();

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
            let tag = format!("{tag}{}", &plugin.name[..1]);
            results.push(run_plugin(
                &procs, &hostns, plugin, &pods, workers, &tag, check,
            )?);
        }
    }

    print_report(a, &results, floor_contiv, floor_bridge);
    print_cpu(&results);
    print_agent_split(&h, &results);
    drop(pods);

    let profile_pods = a.profile_pods.unwrap_or(a.pods);
    if profile_pods > 0 {
        eprintln!(
            "profiling contiv's agent steps with {} pods (serial)...",
            profile_pods
        );
        let pods: Vec<Pod> = (0..profile_pods).map(|_| Pod::new()).collect();
        let prof = profile(&h, &m, &hostns, &pods)?;
        print_profile(&prof, profile_pods);
        contiv_ports(0)?;
    }
    Ok(())
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
    println!(
        "contiv: agent + netmaster, network default:default-net 10.128.0.0/16, gateway 10.128.0.1"
    );
    println!(
        "bridge: {BRIDGE_PLUGIN} + host-local, Linux bridge in the same host namespace, \
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

/// The agent's own time per call (its `CNI call done ... ms=` log line) against the plugin call
/// the runtime saw: the rest is the shim's exec and the round trip over the CNI socket.
fn print_agent_split(h: &Host, results: &[RunResult]) {
    let log = h.agent_log();
    let mut agent_ms: HashMap<(String, String), f64> = HashMap::new();
    for line in log.lines().filter(|l| l.contains("CNI call done")) {
        let kv: HashMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|t| t.split_once('='))
            .collect();
        if let (Some(c), Some(id), Some(ms)) =
            (kv.get("command"), kv.get("container"), kv.get("ms"))
            && let Ok(ms) = ms.parse()
        {
            agent_ms.insert((c.to_string(), id.to_string()), ms);
        }
    }
    println!();
    println!(
        "contiv: the agent's own time (its log, whole ms) against the plugin call the runtime saw"
    );
    for r in results.iter().filter(|r| r.plugin == "contiv") {
        for (cmd, ph) in [("ADD", &r.add), ("DEL", &r.del)] {
            let agent: Vec<Duration> = r
                .container_ids
                .iter()
                .filter_map(|id| agent_ms.get(&(cmd.to_string(), id.clone())))
                .map(|ms| Duration::from_secs_f64(ms / 1e3))
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
        }
    }
}

// ------------------------------------------------------------------------ agent step profile

/// Step name -> durations, in the order steps first ran.
#[derive(Default)]
struct Steps {
    order: Vec<&'static str>,
    times: BTreeMap<&'static str, Vec<Duration>>,
}

impl Steps {
    fn add(&mut self, name: &'static str, d: Duration) {
        if !self.times.contains_key(name) {
            self.order.push(name);
        }
        self.times.entry(name).or_default().push(d);
    }
}

/// Times consecutive steps; `total` is the sum of the marked steps.
struct Timer<'a> {
    steps: &'a mut Steps,
    at: Instant,
    sum: Duration,
}

impl<'a> Timer<'a> {
    fn new(steps: &'a mut Steps) -> Self {
        Timer {
            steps,
            at: Instant::now(),
            sum: Duration::ZERO,
        }
    }

    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.steps.add(name, now - self.at);
        self.sum += now - self.at;
        self.at = now;
    }

    /// Leaves out what ran since the last mark.
    fn skip(&mut self) {
        self.at = Instant::now();
    }

    fn finish(self) {
        self.steps.add("total", self.sum);
    }
}

/// What the agent's flow call costs with `ovs-ofctl --no-names` (one connection, no fetch of
/// table features and port descriptions for name lookups; our flows use port numbers only).
fn ofctl_no_names(target: &str, subcommand: &str, lines: &[String]) -> Result<Duration, String> {
    use std::io::Write;
    let t = Instant::now();
    let mut ch = std::process::Command::new("ovs-ofctl")
        .args([
            "--no-names",
            "-O",
            "OpenFlow14",
            "--bundle",
            subcommand,
            target,
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("ovs-ofctl: {e}"))?;
    let mut input = lines.join("\n");
    input.push('\n');
    ch.stdin
        .take()
        .ok_or("stdin")?
        .write_all(input.as_bytes())
        .map_err(|e| e.to_string())?;
    let o = ch.wait_with_output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "ovs-ofctl --no-names {subcommand}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(t.elapsed())
}

struct Profile {
    add: Steps,
    del: Steps,
    /// Alternatives measured next to the real steps (not part of the totals).
    whatif: Steps,
    /// What some of the steps cost at the least (p50 ms).
    floors: Vec<(&'static str, f64)>,
}

/// The costs underneath some steps, each alone (p50 ms of 30), on a thread in the host netns.
fn micro_floors(ofctl_target: &str, pod_netns: &str) -> Result<Vec<(&'static str, f64)>, String> {
    let time = |f: &mut dyn FnMut() -> Result<(), String>| -> Result<f64, String> {
        let mut v = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            f()?;
            v.push(t.elapsed());
        }
        Ok(pct(&v, 50.0))
    };
    let cmd = |prog: &str, args: &[&str]| -> Result<(), String> {
        let o = std::process::Command::new(prog)
            .args(args)
            .output()
            .map_err(|e| format!("{prog}: {e}"))?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{prog} {args:?}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
    };
    let ns = File::open(pod_netns).map_err(|e| format!("open {pod_netns}: {e}"))?;
    Ok(vec![
        (
            "spawn /bin/true and wait (fork/exec floor)",
            time(&mut || cmd("/bin/true", &[]))?,
        ),
        (
            "ovs-ofctl --version (exec of ovs-ofctl)",
            time(&mut || cmd("ovs-ofctl", &["--version"]))?,
        ),
        (
            "ovs-ofctl probe (exec + connect + OF handshake)",
            time(&mut || cmd("ovs-ofctl", &["-O", "OpenFlow14", "probe", ofctl_target]))?,
        ),
        (
            "OS thread spawn + join",
            time(&mut || {
                std::thread::spawn(|| ())
                    .join()
                    .map_err(|_| "thread".to_string())
            })?,
        ),
        (
            "OS thread spawn + setns(pod netns) + join",
            time(&mut || {
                std::thread::scope(|s| s.spawn(|| enter_netns(&ns)).join())
                    .map_err(|_| "thread".to_string())?
            })?,
        ),
    ])
}

/// Replays what `Manager::add` and `Manager::del` do, with the agent's own library calls, and
/// times each step. Runs on a thread in the host's namespace (the agent's host netlink socket
/// lives there) with a single-threaded runtime, one pod after another.
fn profile(h: &Host, m: &Netmaster, hostns: &File, pods: &[Pod]) -> Result<Profile, String> {
    let hostns = hostns.try_clone().map_err(|e| e.to_string())?;
    let (db, rundir, bridge, node, url) = (
        h.db_sock(),
        h.dir.clone(),
        h.bridge.clone(),
        h.name.clone(),
        m.url(),
    );
    let pods: Vec<(String, String)> = pods
        .iter()
        .map(|p| (p.netns_path(), format!("{}prof", p.container_id)))
        .collect();
    let ofctl = ovs::OfctlProgrammer::new(&rundir);
    let (target, mgmt) = (ofctl.target(&bridge), ofctl.mgmt_socket(&bridge));
    std::thread::spawn(move || {
        enter_netns(&hostns)?;
        let floors = micro_floors(&target, &pods[0].0)?;
        let target = &target;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let e = |e: &dyn std::fmt::Display| e.to_string();
            let dp = Datapath::connect(&db, rundir, &bridge, DatapathType::Userspace)
                .await
                .map_err(|x| e(&x))?;
            let master = model::Client::new(&[url]).map_err(|x| e(&x))?;
            let host = Netlink::host().map_err(|x| e(&x))?;
            let mut prof = Profile {
                add: Steps::default(),
                del: Steps::default(),
                whatif: Steps::default(),
                floors,
            };
            let ctx = Ctx {
                dp: &dp,
                master: &master,
                host: &host,
                target,
                of: std::cell::RefCell::new(OfConn::connect(&mgmt)?),
            };
            for (netns, cid) in &pods {
                if STOP.load(Ordering::SeqCst) {
                    return Err("interrupted".to_string());
                }
                profile_add(&ctx, &node, netns, cid, &mut prof.add, &mut prof.whatif).await?;
            }
            for (_, cid) in &pods {
                profile_del(&ctx, cid, &mut prof.del, &mut prof.whatif).await?;
            }
            // Whatever the sketch left in its table (nothing, normally).
            ctx.of
                .borrow_mut()
                .bundle(&[of_delete(OF_SKETCH_CLASS, 0xff << 56)])?;
            Ok(prof)
        })
    })
    .join()
    .map_err(|_| "profile thread panicked".to_string())?
}

// ------------------------------------------------------------------------ OpenFlow sketch

/// Cookie class of the sketch's flows (the agent uses 0x01 and 0x02).
const OF_SKETCH_CLASS: u64 = 0x7e << 56;
/// An unused table: nothing the sketch installs is ever consulted.
const OF_SKETCH_TABLE: u8 = 200;
const OFP14: u8 = 5;

/// A minimal OpenFlow 1.4 client, enough to time what a persistent connection from the agent
/// would cost per flow change: one bundle (open, add messages, commit), no process, no handshake.
struct OfConn {
    s: std::os::unix::net::UnixStream,
    xid: u32,
}

impl OfConn {
    fn connect(path: &Path) -> Result<Self, String> {
        let s = std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| format!("connect {}: {e}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut c = OfConn { s, xid: 0 };
        c.send(0, &[])?; // hello
        loop {
            let (t, _, _) = c.recv()?;
            if t == 0 {
                return Ok(c);
            }
        }
    }

    fn frame(&mut self, t: u8, body: &[u8]) -> (u32, Vec<u8>) {
        self.xid += 1;
        let mut m = vec![OFP14, t];
        m.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
        m.extend_from_slice(&self.xid.to_be_bytes());
        m.extend_from_slice(body);
        (self.xid, m)
    }

    fn send(&mut self, t: u8, body: &[u8]) -> Result<u32, String> {
        use std::io::Write;
        let (x, m) = self.frame(t, body);
        self.s
            .write_all(&m)
            .map_err(|e| format!("OpenFlow send: {e}"))?;
        Ok(x)
    }

    fn recv(&mut self) -> Result<(u8, u32, Vec<u8>), String> {
        use std::io::Read;
        let mut h = [0u8; 8];
        self.s
            .read_exact(&mut h)
            .map_err(|e| format!("OpenFlow recv: {e}"))?;
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        let mut b = vec![0u8; len.saturating_sub(8)];
        self.s
            .read_exact(&mut b)
            .map_err(|e| format!("OpenFlow recv: {e}"))?;
        Ok((h[1], u32::from_be_bytes([h[4], h[5], h[6], h[7]]), b))
    }

    /// Waits for the reply of type `t` to `xid`; an OpenFlow error is an error.
    fn wait(&mut self, t: u8, xid: u32) -> Result<(), String> {
        loop {
            let (rt, rx, b) = self.recv()?;
            match rt {
                1 => {
                    let code = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
                    return Err(format!("OpenFlow error type {} code {}", code(0), code(2)));
                }
                2 => {
                    self.send(3, &b)?; // echo reply
                }
                _ if rt == t && rx == xid => return Ok(()),
                _ => {}
            }
        }
    }

    fn bundle_control(&mut self, id: u32, kind: u16) -> Result<(), String> {
        let mut b = id.to_be_bytes().to_vec();
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&3u16.to_be_bytes()); // atomic | ordered
        let x = self.send(33, &b)?;
        self.wait(33, x)
    }

    /// Applies `mods` (flow_mod bodies) atomically, as `ovs-ofctl --bundle` does.
    fn bundle(&mut self, mods: &[Vec<u8>]) -> Result<(), String> {
        use std::io::Write;
        let id = self.xid + 1;
        self.bundle_control(id, 0)?;
        let mut out = Vec::new();
        for fm in mods {
            // The embedded message carries the xid of the message that carries it.
            let xid = self.xid + 1;
            let mut inner = vec![OFP14, 14];
            inner.extend_from_slice(&((8 + fm.len()) as u16).to_be_bytes());
            inner.extend_from_slice(&xid.to_be_bytes());
            inner.extend_from_slice(fm);
            let mut b = id.to_be_bytes().to_vec();
            b.extend_from_slice(&[0, 0, 0, 3]);
            b.extend_from_slice(&inner);
            out.extend(self.frame(34, &b).1);
        }
        self.s
            .write_all(&out)
            .map_err(|e| format!("OpenFlow send: {e}"))?;
        self.bundle_control(id, 4)
    }
}

fn oxm(field: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, 0x00, field << 1, value.len() as u8];
    v.extend_from_slice(value);
    v
}

/// A flow_mod body (after the header): the fixed part, the match, the instructions.
fn of_flow_mod(
    cookie: u64,
    mask: u64,
    table: u8,
    command: u8,
    priority: u16,
    fields: &[u8],
    instructions: &[u8],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&cookie.to_be_bytes());
    b.extend_from_slice(&mask.to_be_bytes());
    b.extend_from_slice(&[table, command]);
    b.extend_from_slice(&[0, 0, 0, 0]); // idle, hard timeout
    b.extend_from_slice(&priority.to_be_bytes());
    b.extend_from_slice(&u32::MAX.to_be_bytes()); // no buffer
    b.extend_from_slice(&u32::MAX.to_be_bytes()); // out_port any
    b.extend_from_slice(&u32::MAX.to_be_bytes()); // out_group any
    b.extend_from_slice(&[0, 0, 0, 0]); // flags, importance
    let mlen = 4 + fields.len();
    b.extend_from_slice(&1u16.to_be_bytes()); // OXM match
    b.extend_from_slice(&(mlen as u16).to_be_bytes());
    b.extend_from_slice(fields);
    b.resize(b.len() + (8 - mlen % 8) % 8, 0);
    b.extend_from_slice(instructions);
    b
}

/// Deletes the flows whose cookie matches, in every table.
fn of_delete(cookie: u64, mask: u64) -> Vec<u8> {
    of_flow_mod(cookie, mask, 0xff, 3, 0, &[], &[])
}

/// Adds `in_port=<port>[,dl_src=<mac>]` with NORMAL or drop to the sketch's table.
fn of_add(cookie: u64, port: u32, mac: Option<[u8; 6]>, priority: u16, normal: bool) -> Vec<u8> {
    let mut fields = oxm(0, &port.to_be_bytes());
    if let Some(m) = mac {
        fields.extend(oxm(4, &m));
    }
    let mut ins = Vec::new();
    if normal {
        ins.extend_from_slice(&4u16.to_be_bytes()); // apply-actions
        ins.extend_from_slice(&24u16.to_be_bytes());
        ins.extend_from_slice(&[0; 4]);
        ins.extend_from_slice(&0u16.to_be_bytes()); // output
        ins.extend_from_slice(&16u16.to_be_bytes());
        ins.extend_from_slice(&0xffff_fffau32.to_be_bytes()); // NORMAL
        ins.extend_from_slice(&0xffffu16.to_be_bytes());
        ins.extend_from_slice(&[0; 6]);
    }
    of_flow_mod(cookie, 0, OF_SKETCH_TABLE, 0, priority, &fields, &ins)
}

/// What the replayed steps work with.
struct Ctx<'a> {
    dp: &'a Datapath,
    master: &'a model::Client,
    host: &'a Netlink,
    /// The bridge's OpenFlow socket for ovs-ofctl.
    target: &'a str,
    /// A persistent OpenFlow connection for the what-if measurement.
    of: std::cell::RefCell<OfConn>,
}

async fn profile_add(
    ctx: &Ctx<'_>,
    node: &str,
    netns: &str,
    cid: &str,
    steps: &mut Steps,
    whatif: &mut Steps,
) -> Result<(), String> {
    let (dp, master, host) = (ctx.dp, ctx.master, ctx.host);
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut t = Timer::new(steps);
    let ns = Netns::open(Path::new(netns)).map_err(|x| e(&x))?;
    let ep_id = endpoint_id(cid, "eth0");
    let host_if = host_ifname(&ep_id);
    // Manager::existing: is the attachment already there (a repeated ADD)?
    let ports = dp.endpoint_ports().await.map_err(|x| e(&x))?;
    assert!(!ports.iter().any(|p| p.name == host_if));
    t.mark("OVSDB list ports (repeat-ADD check)");
    let ep = master
        .create_endpoint(&model::agent::EndpointRequest {
            endpoint_id: ep_id.clone(),
            tenant_name: "default".into(),
            network_name: "default-net".into(),
            host: node.into(),
            container_id: cid.into(),
            intf_name: "eth0".into(),
            ..Default::default()
        })
        .await
        .map_err(|x| e(&x))?;
    t.mark("netmaster create endpoint (HTTP, fsync)");
    host.delete(&host_if).await.map_err(|x| e(&x))?;
    t.mark("look up a stale host veth");
    let mac = parse_mac(&ep.mac_address).ok_or("bad MAC")?;
    host.create_veth(&host_if, "eth0", mac, 1450, &ns)
        .await
        .map_err(|x| e(&x))?;
    t.mark("create veth, peer in pod netns");
    let pod = Netlink::in_netns(&ns).map_err(|x| e(&x))?;
    t.mark("netlink socket in pod netns (thread+setns)");
    let idx = pod
        .index("eth0")
        .await
        .map_err(|x| e(&x))?
        .ok_or("eth0 vanished")?;
    let v4: IpAddr = ep.ip_address.parse().map_err(|x| e(&x))?;
    pod.add_address("eth0", idx, v4, ep.prefix_len)
        .await
        .map_err(|x| e(&x))?;
    t.mark("pod: link index + address");
    disable_tx_checksum(&ns, "eth0").map_err(|x| e(&x))?;
    t.mark("ethtool tx-csum off (thread+setns+ioctl)");
    pod.set_up("eth0", idx).await.map_err(|x| e(&x))?;
    if let Some(lo) = pod.index("lo").await.map_err(|x| e(&x))? {
        pod.set_up("lo", lo).await.map_err(|x| e(&x))?;
    }
    if let Ok(gw) = ep.gateway.parse::<IpAddr>() {
        pod.add_default_route(gw, idx).await.map_err(|x| e(&x))?;
    }
    t.mark("pod: eth0 + lo up, default route");
    let hidx = host
        .index(&host_if)
        .await
        .map_err(|x| e(&x))?
        .ok_or("host veth vanished")?;
    host.set_up(&host_if, hidx).await.map_err(|x| e(&x))?;
    t.mark("host veth up");
    // Datapath::add_endpoint, split into its three steps.
    let spec = ovs::PortSpec::new(&host_if)
        .external_id(ids::ENDPOINT, &ep.endpoint_id)
        .external_id(ids::TENANT, &ep.tenant_name)
        .external_id(ids::NETWORK, &ep.network_name)
        .external_id(ids::IP, &ep.ip_address)
        .external_id(ids::MAC, &ep.mac_address)
        .external_id(ids::CONTAINER, cid)
        .external_id(ids::IFNAME, "eth0")
        .external_id(ids::NETNS, netns)
        .external_id(ids::CNI_NETWORK, "contiv")
        .tag(ep.pkt_tag as u16);
    dp.vs.add_port(&dp.bridge, &spec).await.map_err(|x| e(&x))?;
    t.mark("OVSDB add port (transact)");
    let ofport = dp
        .vs
        .wait_ofport(&host_if, Duration::from_secs(10))
        .await
        .map_err(|x| e(&x))?;
    t.mark("wait for ofport (OVSDB monitor)");
    dp.program_endpoint(ofport, &ep).await.map_err(|x| e(&x))?;
    t.mark("flows: ovs-ofctl --bundle (fork/exec)");
    // The same replace again, as `ovs-ofctl --no-names` would do it.
    let c = cookie::endpoint(&ep.endpoint_id);
    let lines: Vec<String> = std::iter::once(format!(
        "delete {}",
        ovs::FlowMatch::cookie(ovs::CookieMask::exact(c)).to_ofctl()
    ))
    .chain(
        netplugin::datapath::endpoint_flows(c, ofport, &ep)
            .iter()
            .map(|f| format!("add {}", f.to_ofctl())),
    )
    .collect();
    whatif.add(
        "ADD flows: ovs-ofctl --no-names --bundle",
        ofctl_no_names(ctx.target, "add-flows", &lines)?,
    );
    // And over a persistent OpenFlow connection: one bundle (delete + 7 adds) in an unused table.
    let sketch = OF_SKETCH_CLASS | (c & !(0xff << 56));
    let mac = parse_mac(&ep.mac_address).ok_or("bad MAC")?;
    let mut mods = vec![of_delete(sketch, u64::MAX)];
    mods.extend((0..6).map(|i| of_add(sketch, ofport, Some(mac), 200 - i, true)));
    mods.push(of_add(sketch, ofport, None, 100, false));
    let at = Instant::now();
    ctx.of.borrow_mut().bundle(&mods)?;
    whatif.add(
        "ADD flows: persistent OpenFlow conn, 1 bundle",
        at.elapsed(),
    );
    t.skip();
    host.mac(&host_if).await.map_err(|x| e(&x))?;
    t.mark("read host veth MAC");
    t.finish();
    Ok(())
}

async fn profile_del(
    ctx: &Ctx<'_>,
    cid: &str,
    steps: &mut Steps,
    whatif: &mut Steps,
) -> Result<(), String> {
    let (dp, master, host) = (ctx.dp, ctx.master, ctx.host);
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut t = Timer::new(steps);
    let ep_id = endpoint_id(cid, "eth0");
    let host_if = host_ifname(&ep_id);
    let m = ovs::FlowMatch::cookie(ovs::CookieMask::exact(cookie::endpoint(&ep_id)));
    dp.flows
        .del_flows(&dp.bridge, std::slice::from_ref(&m))
        .await
        .map_err(|x| e(&x))?;
    t.mark("flows: ovs-ofctl --bundle del (fork/exec)");
    // The same delete again (nothing left to delete: the same work for the switch).
    whatif.add(
        "DEL flows: ovs-ofctl --no-names --bundle",
        ofctl_no_names(ctx.target, "del-flows", &[m.to_ofctl()])?,
    );
    let sketch = OF_SKETCH_CLASS | (cookie::endpoint(&ep_id) & !(0xff << 56));
    let at = Instant::now();
    ctx.of.borrow_mut().bundle(&[of_delete(sketch, u64::MAX)])?;
    whatif.add(
        "DEL flows: persistent OpenFlow conn, 1 bundle",
        at.elapsed(),
    );
    t.skip();
    dp.vs
        .del_port(&dp.bridge, &host_if)
        .await
        .map_err(|x| e(&x))?;
    t.mark("OVSDB del port (transact)");
    host.delete(&host_if).await.map_err(|x| e(&x))?;
    t.mark("delete veth (netlink)");
    master.delete_endpoint(&ep_id).await.map_err(|x| e(&x))?;
    t.mark("netmaster delete endpoint (HTTP, fsync)");
    t.finish();
    Ok(())
}

fn print_profile(p: &Profile, n: usize) {
    // ADDs run with 0..n-1 endpoint ports already on the bridge, DELs with n-1..0.
    let k = (n / 10).max(1);
    let few_many = |v: &[Duration], add: bool| {
        let (first, last) = (pct(&v[..k], 50.0), pct(&v[v.len() - k..], 50.0));
        if add { (first, last) } else { (last, first) }
    };
    println!();
    println!(
        "contiv agent steps, replayed with the agent's own library calls, {n} pods serial (ms); \
         'few'/'many': p50 of the {k} calls with the fewest/most other pods on the bridge"
    );
    for (what, s) in [("ADD", &p.add), ("DEL", &p.del)] {
        let total: f64 = s
            .times
            .get("total")
            .map(|v| v.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / v.len() as f64)
            .unwrap_or(f64::NAN);
        println!(
            "  {what:<46} {:>7} {:>7} {:>7} {:>6} {:>7} {:>7}",
            "p50", "p99", "mean", "share", "few", "many"
        );
        for name in s
            .order
            .iter()
            .filter(|n| **n != "total")
            .chain(std::iter::once(&"total"))
        {
            let v = &s.times[name];
            let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / v.len() as f64;
            let (few, many) = few_many(v, what == "ADD");
            println!(
                "    {name:<44} {:>7.2} {:>7.2} {:>7.2} {:>5.0}% {few:>7.2} {many:>7.2}",
                pct(v, 50.0),
                pct(v, 99.0),
                mean,
                100.0 * mean / total
            );
        }
    }
    println!("  alternatives, run right after the real step (ms):");
    for name in &p.whatif.order {
        let v = &p.whatif.times[name];
        let (few, many) = few_many(v, name.starts_with("ADD"));
        println!(
            "    {name:<44} {:>7.2} {:>7.2} {:>7} {:>6} {few:>7.2} {many:>7.2}",
            pct(v, 50.0),
            pct(v, 99.0),
            "",
            ""
        );
    }
    println!("  what some steps cost at the least, each alone (p50 of 30, ms):");
    for (what, ms) in &p.floors {
        println!("    {what:<52} {ms:>6.2}");
    }
}
