//! Benchmark: the control plane at N nodes (issue 26). For each N, one netmaster process (the
//! release binary next to this example, or `--netmaster PATH`) on the embedded store, with
//! authentication and TLS on (its defaults), and N simulated nodes that join with the join
//! token, register, heartbeat and hold `GET /api/v1/watch`, parsing every line. Then E endpoint
//! creates from C keep-alive clients. Prints per N: creates/s, fan-out p50/p99 (a create's
//! answer → the last node to read its event), netmaster CPU per create and per heartbeat
//! second, its RSS, and the time it takes to exit on SIGTERM with every node watching.
//!
//! Each node has endpoints ("home") on K of M networks (`--networks M`, `--per-node K`), made
//! before the nodes watch; the creates are spread over the M networks, each on a host that is a
//! member of its network. Nodes watch their own per-node stream (`?node=`, with their own
//! credentials), so an event is for the members of its network only (`--filter off`: the full
//! stream, every event for every node). Fan-out is measured to the nodes the event is for.
//!
//! `cargo build --release -p master --examples && target/release/examples/scale_bench --nodes 100,1000,5000`
//! options: `--creates E` (500), `--clients C` (16), `--networks M` (100), `--per-node K` (2),
//! `--filter on|off` (on), `--netmaster PATH`.

use anyhow::{Context, Result, bail};
use model::agent::{EndpointRequest, NodeLease, NodeRegistration};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Args {
    nodes: Vec<usize>,
    creates: usize,
    clients: usize,
    networks: usize,
    per_node: usize,
    filter: bool,
    netmaster: PathBuf,
}

fn args() -> Result<Args> {
    let mut a = Args {
        nodes: vec![100, 1000, 5000],
        creates: 500,
        clients: 16,
        networks: 100,
        per_node: 2,
        filter: true,
        netmaster: std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("where this example lives")?
            .join("netmaster"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} takes a value"));
        match flag.as_str() {
            "--nodes" => {
                a.nodes = value()?
                    .split(',')
                    .map(|n| n.parse().context("--nodes N,N,..."))
                    .collect::<Result<_>>()?
            }
            "--creates" => a.creates = value()?.parse().context("--creates E")?,
            "--clients" => a.clients = value()?.parse().context("--clients C")?,
            "--networks" => a.networks = value()?.parse().context("--networks M")?,
            "--per-node" => a.per_node = value()?.parse().context("--per-node K")?,
            "--filter" => a.filter = value()? != "off",
            "--netmaster" => a.netmaster = value()?.into(),
            other => bail!("unknown option {other}"),
        }
    }
    Ok(a)
}

/// What one run measured.
struct Row {
    nodes: usize,
    creates_per_s: f64,
    fanout_p50: Option<Duration>,
    fanout_p99: Option<Duration>,
    /// Events that did not reach every node within the wait.
    undelivered: usize,
    cpu_per_create: Duration,
    /// netmaster CPU per second with the nodes watching and heartbeating, before the creates.
    idle_cpu_per_s: Duration,
    /// Once every node has read its listing, before the creates.
    synced_rss_mib: u64,
    rss_mib: u64,
    peak_rss_mib: u64,
    exit: Option<Duration>,
    streams_ended: usize,
    out_of_order: u64,
    cut_off: u64,
    retries: u64,
    resumes: u64,
    /// Average number of nodes an event is for.
    interested: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    raise_fd_limit()?;
    model::install_default_tls_provider();
    anyhow::ensure!(
        a.netmaster.exists(),
        "no netmaster binary at {} (cargo build --release -p master, or --netmaster PATH)",
        a.netmaster.display()
    );
    anyhow::ensure!(
        a.networks >= 1 && (1..=a.networks).contains(&a.per_node),
        "--per-node K must be within 1..=M"
    );
    println!(
        "netmaster {} (embedded store, auth and TLS on); {} creates from {} clients over {} networks, each node on {} of them; {} streams",
        a.netmaster.display(),
        a.creates,
        a.clients,
        a.networks,
        a.per_node,
        if a.filter { "per-node" } else { "full" }
    );
    let mut rows = Vec::new();
    for &n in &a.nodes {
        let row = run(&a, n)
            .await
            .with_context(|| format!("run with {n} nodes"))?;
        print_rows(std::slice::from_ref(&row));
        rows.push(row);
    }
    println!("\nall runs:");
    print_rows(&rows);
    Ok(())
}

fn print_rows(rows: &[Row]) {
    let ms = |d: Option<Duration>| {
        d.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "| nodes | nodes per event | creates/s | fan-out p50 | fan-out p99 | not at every node | CPU per create | idle CPU (heartbeats) | RSS synced / after / peak | exit on SIGTERM | streams ended | out of order | cut off | watch connect retries | resumes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} | {:.2} ms | {:.1} ms/s | {} / {} / {} MiB | {} | {} | {} | {} | {} | {} |",
            r.nodes,
            r.interested,
            r.creates_per_s,
            ms(r.fanout_p50),
            ms(r.fanout_p99),
            r.undelivered,
            r.cpu_per_create.as_secs_f64() * 1e3,
            r.idle_cpu_per_s.as_secs_f64() * 1e3,
            r.synced_rss_mib,
            r.rss_mib,
            r.peak_rss_mib,
            ms(r.exit),
            r.streams_ended,
            r.out_of_order,
            r.cut_off,
            r.retries,
            r.resumes,
        );
    }
}

/// Thousands of connections need thousands of descriptors, here and in netmaster (which
/// inherits the limit).
fn raise_fd_limit() -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The netmaster process, killed if still running when dropped.
struct Netmaster {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Netmaster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Netmaster {
    fn start(bin: &Path) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let ready = dir.path().join("ready");
        let log = std::fs::File::create(dir.path().join("netmaster.log"))?;
        let child = Command::new(bin)
            .args(["--listen-url", "127.0.0.1:0", "--node-ttl", "30"])
            .args(["--log-level", "warn"])
            .arg("--ready-file")
            .arg(&ready)
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut m = Netmaster {
            child,
            url: String::new(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&ready) {
                m.url = format!("https://{}", addr.trim());
                return Ok(m);
            }
            if m.child.try_wait()?.is_some() || Instant::now() > deadline {
                bail!("netmaster did not start: {}", m.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("netmaster.log")).unwrap_or_default()
    }

    fn file(&self, name: &str) -> Result<String> {
        let p = self.dir.path().join(name);
        std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))
    }

    /// User + system CPU time the process used so far.
    fn cpu(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // The fields after the command name (which may hold spaces) are space-separated;
        // utime and stime are the 14th and 15th fields of the line.
        let rest = &stat[stat.rfind(')').context("/proc stat format")? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((kib("VmRSS:") / 1024, kib("VmHWM:") / 1024))
    }

    /// SIGTERM; how long until it exited (None: not within 30 s).
    fn terminate(&mut self) -> Result<Option<Duration>> {
        let asked = Instant::now();
        // SAFETY: kill only sends a signal to our own child.
        if unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) } != 0 {
            bail!("kill: {}", std::io::Error::last_os_error());
        }
        while asked.elapsed() < Duration::from_secs(30) {
            if self.child.try_wait()?.is_some() {
                return Ok(Some(asked.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(None)
    }
}

/// What the nodes share: per create, how many nodes read its event and when the last did.
struct Fanout {
    start: Instant,
    received: Vec<AtomicU32>,
    last: Vec<AtomicU64>,
    synced: AtomicUsize,
    ended: AtomicUsize,
    stopping: AtomicBool,
    out_of_order: AtomicU64,
    cut_off: AtomicU64,
    /// Watches that could not connect and were tried again.
    retries: AtomicU64,
    /// Streams that broke and were resumed from their revision.
    resumes: AtomicU64,
    /// Per node: which creates it read (a bit each), and how often its stream was started.
    seen: Vec<Vec<AtomicU64>>,
    connects: Vec<AtomicU32>,
}

impl Fanout {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// The fields of a watch line the nodes look at; the value is skipped, not built.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    t: &'a str,
    #[serde(default)]
    kind: &'a str,
    #[serde(default)]
    key: &'a str,
    revision: u64,
}

async fn login(http: &reqwest::Client, url: &str, password: &str) -> Result<String> {
    let v: serde_json::Value = http
        .post(format!("{url}/api/v1/auth_proxy/login/"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["token"].as_str().context("login answer")?.to_string())
}

async fn join(http: &reqwest::Client, url: &str, host: &str, join_token: &str) -> Result<String> {
    let v: serde_json::Value = http
        .post(format!("{url}/api/v1/auth_proxy/join/"))
        .json(&serde_json::json!({"hostname": host, "joinToken": join_token}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["token"].as_str().context("join answer")?.to_string())
}

fn http_client(ca: &Path) -> Result<reqwest::Client> {
    let tls = model::https_tls_config(&model::ClientOptions {
        ca_file: Some(ca.to_path_buf()),
        ..Default::default()
    })?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(600))
        .build()?)
}

async fn run(a: &Args, n: usize) -> Result<Row> {
    let mut m = Netmaster::start(&a.netmaster)?;
    let ca = m.dir.path().join("tls").join("ca.pem");
    let password: serde_json::Value = serde_json::from_str(&m.file("admin-credential.json")?)?;
    let password = password["password"].as_str().context("admin password")?;
    let join_token = m.file("join-token")?.trim().to_string();
    let http = http_client(&ca)?;
    let url = m.url.clone();
    let admin = login(&http, &url, password).await?;
    for net in 0..a.networks {
        http.post(format!("{url}/api/v1/networks/default:bench{net}/"))
            .header("x-auth-token", &admin)
            .json(&serde_json::json!({"tenantName": "default", "networkName": format!("bench{net}"), "encap": "vxlan",
                "subnet": format!("10.{}.{}.0/20", 64 + net / 16, (net % 16) * 16)}))
            .send()
            .await?
            .error_for_status()
            .context("create the networks")?;
    }
    // Node i is a member of networks (i*K + j) mod M, j < K.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); a.networks];
    for i in 0..n {
        for j in 0..a.per_node {
            members[(i * a.per_node + j) % a.networks].push(i);
        }
    }
    anyhow::ensure!(
        members.iter().all(|m| !m.is_empty()),
        "every network needs a member: more nodes or fewer networks"
    );
    // The creates: create i in network i mod M, on one of its members.
    let plan: Vec<(usize, usize)> = (0..a.creates)
        .map(|i| {
            let net = i % a.networks;
            (net, members[net][(i / a.networks) % members[net].len()])
        })
        .collect();
    let interested: Vec<u32> = plan
        .iter()
        .map(|(net, _)| {
            if a.filter {
                members[*net].len() as u32
            } else {
                n as u32
            }
        })
        .collect();

    let fan = Arc::new(Fanout {
        start: Instant::now(),
        received: (0..a.creates).map(|_| AtomicU32::new(0)).collect(),
        last: (0..a.creates).map(|_| AtomicU64::new(0)).collect(),
        synced: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        out_of_order: AtomicU64::new(0),
        cut_off: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        resumes: AtomicU64::new(0),
        seen: (0..n)
            .map(|_| {
                (0..a.creates.div_ceil(64))
                    .map(|_| AtomicU64::new(0))
                    .collect()
            })
            .collect(),
        connects: (0..n).map(|_| AtomicU32::new(0)).collect(),
    });
    // The nodes join and register (64 at a time), all of them before any watches: else each
    // registration is an event for every node already watching, N²/2 events at start.
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut joining = Vec::new();
    for i in 0..n {
        let (http, url, jt, gate) = (http.clone(), url.clone(), join_token.clone(), gate.clone());
        joining.push(tokio::spawn(async move {
            let _g = gate.acquire().await?;
            let host = format!("node-{i}");
            let token = join(&http, &url, &host, &jt).await?;
            let reg = NodeRegistration {
                hostname: host.clone(),
                vtep_ip: format!("10.{}.{}.{}", 16 + i / 65536, (i / 256) % 256, i % 256),
                version: "bench".into(),
            };
            let lease: NodeLease = http
                .put(format!("{url}/api/v1/nodes/{host}/"))
                .header("x-auth-token", &token)
                .json(&reg)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok::<_, anyhow::Error>((token, reg, lease))
        }));
    }
    let mut joined = Vec::new();
    for j in joining {
        joined.push(j.await??);
    }
    // Every node's home endpoints, before any watches.
    let mut homes = Vec::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(a.clients));
    for i in 0..n {
        for j in 0..a.per_node {
            let (http, url, admin, gate) = (http.clone(), url.clone(), admin.clone(), gate.clone());
            let net = (i * a.per_node + j) % a.networks;
            homes.push(tokio::spawn(async move {
                let _g = gate.acquire().await?;
                let req = EndpointRequest {
                    endpoint_id: format!("home-{i}-{j}"),
                    tenant_name: "default".into(),
                    network_name: format!("bench{net}"),
                    host: format!("node-{i}"),
                    ..Default::default()
                };
                http.post(format!("{url}/api/v1/endpoints/"))
                    .header("x-auth-token", &admin)
                    .json(&req)
                    .send()
                    .await?
                    .error_for_status()
                    .context("create a home endpoint")?;
                Ok::<_, anyhow::Error>(())
            }));
        }
    }
    for h in homes {
        h.await??;
    }
    // Then every node watches and heartbeats.
    let mut nodes = Vec::new();
    for (i, (token, reg, lease)) in joined.into_iter().enumerate() {
        let (http, url, fan, filter) = (http.clone(), url.clone(), fan.clone(), a.filter);
        nodes.push(tokio::spawn(async move {
            let heartbeat = {
                let (http, url, token, fan) =
                    (http.clone(), url.clone(), token.clone(), fan.clone());
                tokio::spawn(async move {
                    let every = Duration::from_secs(lease.heartbeat_seconds.max(1));
                    // Spread over the period, as agents started at different times are.
                    tokio::time::sleep(every * (i % 100) as u32 / 100).await;
                    while !fan.stopping.load(Ordering::Acquire) {
                        let _ = http
                            .put(format!("{url}/api/v1/nodes/{}/", reg.hostname))
                            .header("x-auth-token", &token)
                            .json(&reg)
                            .send()
                            .await;
                        tokio::time::sleep(every).await;
                    }
                })
            };
            let node = filter.then(|| format!("node-{i}"));
            let r = watch(&http, &url, &token, i, node.as_deref(), &fan).await;
            heartbeat.abort();
            r
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while fan.synced.load(Ordering::Acquire) < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} nodes synced in 600 s",
                fan.synced.load(Ordering::Acquire)
            );
        }
        if let Some(failed) = nodes.iter().position(|t| t.is_finished()) {
            let r = nodes.remove(failed).await?;
            bail!("a node stopped before the creates: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // netmaster at rest with every node watching and heartbeating.
    let synced_rss_mib = m.rss()?.0;
    let idle_from = (m.cpu()?, Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cpu_per_s = (m.cpu()? - idle_from.0).div_f64(idle_from.1.elapsed().as_secs_f64());

    // The creates.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..a.creates).map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let plan = Arc::new(plan);
    let cpu_before = m.cpu()?;
    let began = Instant::now();
    let mut creators = Vec::new();
    for _ in 0..a.clients {
        // One keep-alive connection per client.
        let http = http_client(&ca)?;
        let (url, admin, next, acked, fan, plan) = (
            url.clone(),
            admin.clone(),
            next.clone(),
            acked.clone(),
            fan.clone(),
            plan.clone(),
        );
        let creates = a.creates;
        creators.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::AcqRel);
                if i >= creates {
                    return Ok::<_, anyhow::Error>(());
                }
                let (net, host) = plan[i];
                let req = EndpointRequest {
                    endpoint_id: format!("bench-{i}"),
                    tenant_name: "default".into(),
                    network_name: format!("bench{net}"),
                    host: format!("node-{host}"),
                    ..Default::default()
                };
                http.post(format!("{url}/api/v1/endpoints/"))
                    .header("x-auth-token", &admin)
                    .json(&req)
                    .send()
                    .await?
                    .error_for_status()
                    .with_context(|| format!("create endpoint bench-{i}"))?;
                acked[i].store(fan.now(), Ordering::Release);
            }
        }));
    }
    for c in creators {
        c.await??;
    }
    let creates_per_s = a.creates as f64 / began.elapsed().as_secs_f64();
    // Every event at every node, or give up after a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fan
        .received
        .iter()
        .zip(&interested)
        .any(|(r, want)| r.load(Ordering::Acquire) < *want)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_per_create = (m.cpu()? - cpu_before) / a.creates as u32;
    let (rss_mib, peak_rss_mib) = m.rss()?;
    let mut lat: Vec<Duration> = Vec::new();
    let mut undelivered = 0;
    // Who missed what: the nodes an event was for that did not read it, and how often their
    // streams were started (1: never broke, so a miss is not a resume's gap).
    let mut missing: std::collections::BTreeMap<usize, usize> = Default::default();
    for i in 0..a.creates {
        if fan.received[i].load(Ordering::Acquire) < interested[i] {
            undelivered += 1;
            let (net, _) = plan[i];
            let for_nodes: Vec<usize> = if a.filter {
                members[net].clone()
            } else {
                (0..n).collect()
            };
            for node in for_nodes {
                if fan.seen[node][i / 64].load(Ordering::Acquire) & (1 << (i % 64)) == 0 {
                    *missing.entry(node).or_default() += 1;
                }
            }
            continue;
        }
        let (last, ack) = (
            fan.last[i].load(Ordering::Acquire),
            acked[i].load(Ordering::Acquire),
        );
        lat.push(Duration::from_nanos(last.saturating_sub(ack)));
    }
    lat.sort();
    let pct = |p: f64| (!lat.is_empty()).then(|| lat[((lat.len() - 1) as f64 * p) as usize]);

    if !missing.is_empty() {
        let connects: Vec<u32> = missing
            .keys()
            .map(|n| fan.connects[*n].load(Ordering::Acquire))
            .collect();
        let once = connects.iter().filter(|c| **c == 1).count();
        println!(
            "{} nodes missed events ({} misses); of them {once} never reconnected; connects per such node: max {}, first ones {:?}",
            missing.len(),
            missing.values().sum::<usize>(),
            connects.iter().max().unwrap_or(&0),
            missing.iter().take(10).collect::<Vec<_>>()
        );
    }
    fan.stopping.store(true, Ordering::Release);
    let exit = m.terminate()?;
    // The nodes see their streams end.
    let deadline = Instant::now() + Duration::from_secs(30);
    while fan.ended.load(Ordering::Acquire) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in nodes {
        t.abort();
    }
    Ok(Row {
        nodes: n,
        creates_per_s,
        fanout_p50: pct(0.5),
        fanout_p99: pct(0.99),
        undelivered,
        cpu_per_create,
        idle_cpu_per_s,
        synced_rss_mib,
        rss_mib,
        peak_rss_mib,
        exit,
        streams_ended: fan.ended.load(Ordering::Acquire),
        out_of_order: fan.out_of_order.load(Ordering::Acquire),
        cut_off: fan.cut_off.load(Ordering::Acquire),
        retries: fan.retries.load(Ordering::Acquire),
        resumes: fan.resumes.load(Ordering::Acquire),
        interested: interested.iter().map(|x| *x as f64).sum::<f64>()
            / interested.len().max(1) as f64,
    })
}

/// A node's watch: lists, then follows; counts the bench's endpoint events. Relists after an
/// error line (cut off), resumes after a broken stream, returns once the bench is stopping.
async fn watch(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    me: usize,
    node: Option<&str>,
    fan: &Fanout,
) -> Result<()> {
    use futures::StreamExt;
    let mut synced_once = false;
    let mut resume: Option<u64> = None;
    loop {
        let mut path = match resume {
            Some(r) => format!("{url}/api/v1/watch?revision={r}"),
            None => format!("{url}/api/v1/watch?"),
        };
        if let Some(node) = node {
            path.push_str(&format!("&node={node}"));
        }
        if resume.is_some() {
            fan.resumes.fetch_add(1, Ordering::AcqRel);
        }
        // As agents do: a watch that cannot start (thousands connecting at once overflow the
        // listen backlog) is tried again a second later.
        // No overall deadline on a stream (the client's is for the other requests).
        let req = http
            .get(path)
            .header("x-auth-token", token)
            .timeout(Duration::from_secs(86_400));
        fan.connects[me].fetch_add(1, Ordering::AcqRel);
        let resp = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status() == 410 => {
                resume = None;
                continue;
            }
            Ok(r) => bail!("watch: {}", r.status()),
            Err(_) => {
                fan.retries.fetch_add(1, Ordering::AcqRel);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut last_rev = 0u64;
        // A listing comes in key order; only what follows it is in revision order.
        let mut listing = resume.is_none();
        let mut relist = false;
        'stream: while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buf.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
                let line: Line = serde_json::from_slice(&buf[start..start + nl])?;
                start += nl + 1;
                match line.t {
                    "synced" => {
                        if !synced_once {
                            synced_once = true;
                            fan.synced.fetch_add(1, Ordering::AcqRel);
                        }
                        last_rev = line.revision;
                        listing = false;
                    }
                    "error" => {
                        fan.cut_off.fetch_add(1, Ordering::AcqRel);
                        relist = true;
                        break 'stream;
                    }
                    _ => {
                        if !listing && line.revision < last_rev {
                            fan.out_of_order.fetch_add(1, Ordering::AcqRel);
                        }
                        if !listing {
                            last_rev = line.revision;
                        }
                        if !listing
                            && line.t == "put"
                            && line.kind == "endpoint"
                            && let Some(i) = line
                                .key
                                .strip_prefix("bench-")
                                .and_then(|i| i.parse::<usize>().ok())
                            && i < fan.received.len()
                        {
                            let bit = 1u64 << (i % 64);
                            if fan.seen[me][i / 64].fetch_or(bit, Ordering::AcqRel) & bit == 0 {
                                fan.received[i].fetch_add(1, Ordering::AcqRel);
                            }
                            fan.last[i].fetch_max(fan.now(), Ordering::AcqRel);
                        }
                    }
                }
            }
            buf.drain(..start);
        }
        if fan.stopping.load(Ordering::Acquire) {
            fan.ended.fetch_add(1, Ordering::AcqRel);
            return Ok(());
        }
        resume = (!relist && last_rev > 0).then_some(last_rev + 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
