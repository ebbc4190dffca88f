//! Cancel safety against a real netmaster process: writes of every kind whose clients hang up at
//! random moments must leave the master's memory and its store equal, and no address allocated
//! to an endpoint that does not exist (issue 17, item 1).
//!
//! Each abandoned write is a raw HTTP request on a connection of its own: the client sends it,
//! waits 0-10 ms and shuts its side down; hyper then sees the end of the stream and drops the
//! connection with whatever handler was running on it. The client reads until the server has
//! closed too, so once every connection is closed the server has seen every request it will ever
//! act on. What the master still runs after that shows in `/info`'s `writesInFlight`; the test
//! waits for it to reach 0 and only then compares. So the verdict holds for any interleaving.

mod common;
use common::Netmaster;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many writes are abandoned, and how many run at once.
const WRITES: usize = 480;
const AT_ONCE: usize = 48;
/// Endpoint ids are drawn from a small set, so that creates and deletes of one id collide.
const EP_IDS: u64 = 64;
/// The longest a client waits between sending and hanging up.
const MAX_DELAY_US: u64 = 10_000;

/// xorshift64*: the timing only needs to vary, not to be good randomness.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One write: method, path and body.
fn random_write(r: &mut Rng) -> (&'static str, String, Option<Value>) {
    let k = r.below(4);
    let create = r.below(2) == 0;
    match r.below(12) {
        0..=3 => {
            let id = format!("ep-{}", r.below(EP_IDS));
            let host = format!("node-{}", r.below(3));
            let body = json!({"endpointID": id, "tenantName": "default", "networkName": "n0", "host": host});
            ("POST", "/api/v1/endpoints/".into(), Some(body))
        }
        4..=5 => (
            "DELETE",
            format!("/api/v1/endpoints/ep-{}/", r.below(EP_IDS)),
            None,
        ),
        6 => object_write(
            create,
            "tenants",
            format!("tc-{k}"),
            json!({"tenantName": format!("tc-{k}")}),
        ),
        7 => object_write(
            create,
            "networks",
            format!("default:nc-{k}"),
            json!({"tenantName": "default", "networkName": format!("nc-{k}"), "encap": "vxlan", "subnet": format!("10.80.{k}.0/24")}),
        ),
        8 => {
            // Half of the groups name a policy: its delete is then refused while they exist.
            let policies = if k.is_multiple_of(2) {
                json!([format!("p-{k}")])
            } else {
                json!([])
            };
            object_write(
                create,
                "endpointGroups",
                format!("default:g-{k}"),
                json!({"tenantName": "default", "groupName": format!("g-{k}"), "networkName": "n0", "policies": policies}),
            )
        }
        9 => object_write(
            create,
            "policys",
            format!("default:p-{k}"),
            json!({"tenantName": "default", "policyName": format!("p-{k}")}),
        ),
        _ => {
            // A new VTEP address each time: a real write, not only a lease renewal.
            let name = format!("node-{k}");
            let body = json!({"hostname": name, "vtepIP": format!("192.0.2.{}", 1 + r.below(250)), "version": "test"});
            ("PUT", format!("/api/v1/nodes/{name}/"), Some(body))
        }
    }
}

fn object_write(
    create: bool,
    coll: &str,
    key: String,
    body: Value,
) -> (&'static str, String, Option<Value>) {
    if create {
        ("POST", format!("/api/v1/{coll}/{key}/"), Some(body))
    } else {
        ("DELETE", format!("/api/v1/{coll}/{key}/"), None)
    }
}

/// Sends a request, hangs up `delay` later, and returns once the server has closed the
/// connection too; true if it answered meanwhile (then the write was not abandoned after all).
async fn abandon(
    port: u16,
    method: &str,
    path: &str,
    body: Option<Value>,
    delay: Duration,
) -> bool {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to netmaster");
    s.write_all(req.as_bytes()).await.expect("send the request");
    tokio::time::sleep(delay).await;
    // The write side only: the server sees the end of the stream, and we still see it close.
    let _ = s.shutdown().await;
    let mut buf = [0u8; 4096];
    let mut answered = false;
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => answered = true,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "netmaster kept the connection of {method} {path} open 30 s after the client hung up"
    );
    answered
}

/// Waits until the master runs no write any more.
async fn wait_quiet(m: &Netmaster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = m.get("/info").await;
        assert_eq!(s, 200, "{v}");
        let n = v["writesInFlight"]
            .as_u64()
            .unwrap_or_else(|| panic!("/info has no writesInFlight: {v}"));
        if n == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} writes still in flight after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the master's memory shows: every list the writes above change, each sorted.
async fn snapshot(m: &Netmaster) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, path) in [
        ("tenants", "/api/v1/tenants/"),
        ("networks", "/api/v1/networks/"),
        ("groups", "/api/v1/endpointGroups/"),
        ("policies", "/api/v1/policys/"),
        ("endpoints", "/api/v1/endpoints/"),
        ("nodes", "/api/v1/nodes/"),
        ("n0", "/api/v1/inspect/networks/default:n0/"),
    ] {
        let (s, v) = m.get(path).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        let mut items: Vec<String> = match v {
            Value::Array(a) => a.iter().map(Value::to_string).collect(),
            other => vec![other.to_string()],
        };
        items.sort();
        out.insert(name, items);
    }
    out
}

/// Checks the store itself (netmaster stopped): every address guard is held by an endpoint that
/// exists and has that address, every tag guard by a network or group that exists. Returns the
/// number of endpoints stored.
async fn check_store(dir: &std::path::Path) -> usize {
    let st = store::EmbeddedStore::open(store::EmbeddedOptions::new(dir.join("contiv.redb")))
        .expect("open the stopped netmaster's store");
    let (kvs, _) = st.list(master::keys::ROOT).await.unwrap();
    let mut endpoints: BTreeMap<String, Value> = BTreeMap::new();
    let mut objects: BTreeSet<String> = BTreeSet::new();
    for kv in &kvs {
        if let Some(id) = kv.key.strip_prefix(master::keys::EPS) {
            endpoints.insert(id.to_string(), serde_json::from_slice(&kv.value).unwrap());
        } else if let Some(o) = kv.key.strip_prefix(master::keys::OBJ) {
            // `<kind>/<key>`: the key is what tag guards name as their owner.
            objects.insert(o.split_once('/').map(|x| x.1).unwrap_or(o).to_string());
        }
    }
    let mut problems = Vec::new();
    for kv in &kvs {
        let Some(guard) = kv.key.strip_prefix(master::keys::ALLOC) else {
            continue;
        };
        let owner = String::from_utf8_lossy(&kv.value).into_owned();
        if let Some(rest) = guard.strip_prefix("ip/") {
            let addr = rest.rsplit('/').next().unwrap();
            let id = owner.strip_prefix("endpoint:").unwrap_or(&owner);
            match endpoints.get(id) {
                Some(ep) if ep["ipAddress"] == addr || ep["ipv6Address"] == addr => {}
                Some(ep) => problems.push(format!("{guard}: held by {owner}, which has {ep}")),
                None => problems.push(format!("{guard}: held by {owner}, which does not exist")),
            }
        } else if !objects.contains(&owner) {
            problems.push(format!("{guard}: held by {owner}, which does not exist"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} orphaned allocations in the store:\n{}",
        problems.len(),
        problems.join("\n")
    );
    endpoints.len()
}

fn differences(
    a: &BTreeMap<&'static str, Vec<String>>,
    b: &BTreeMap<&'static str, Vec<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, items) in a {
        let x: BTreeSet<&String> = items.iter().collect();
        let y: BTreeSet<&String> = b[name].iter().collect();
        for only in x.difference(&y) {
            out.push(format!("{name}: only in memory: {only}"));
        }
        for only in y.difference(&x) {
            out.push(format!("{name}: only in the store: {only}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_writes_leave_memory_and_store_equal() {
    // Registrations must not expire between the two looks, however slow the machine.
    let mut m = Netmaster::start_with(&["--node-ttl", "3600"]);
    let (s, v) = m
        .post(
            "/api/v1/networks/default:n0/",
            json!({"tenantName": "default", "networkName": "n0", "encap": "vxlan", "subnet": "10.77.0.0/16"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut answered = 0;
    for _ in 0..WRITES / AT_ONCE {
        let mut wave = Vec::new();
        for _ in 0..AT_ONCE {
            let (method, path, body) = random_write(&mut rng);
            let what = path
                .trim_start_matches("/api/v1/")
                .split('/')
                .next()
                .unwrap();
            *kinds.entry(format!("{method} {what}")).or_default() += 1;
            let delay = Duration::from_micros(rng.below(MAX_DELAY_US + 1));
            let port = m.port;
            wave.push(tokio::spawn(async move {
                abandon(port, method, &path, body, delay).await
            }));
        }
        for t in wave {
            answered += usize::from(t.await.unwrap());
        }
    }
    eprintln!(
        "{WRITES} writes, {} left without an answer: {kinds:?}",
        WRITES - answered
    );
    wait_quiet(&m).await;

    let memory = snapshot(&m).await;
    eprintln!(
        "memory after the abandoned writes: {} endpoints, {} networks, {} groups, {} policies, {} tenants, {} nodes",
        memory["endpoints"].len(),
        memory["networks"].len(),
        memory["groups"].len(),
        memory["policies"].len(),
        memory["tenants"].len(),
        memory["nodes"].len()
    );
    m.kill();
    let stored = check_store(&m.dir).await;
    m.start_again();
    let restarted = snapshot(&m).await;
    let diff = differences(&memory, &restarted);
    assert!(
        diff.is_empty(),
        "memory and store differ in {} entries ({} endpoints in memory, {stored} in the store):\n{}",
        diff.len(),
        memory["endpoints"].len(),
        diff.join("\n")
    );

    // Every endpoint can be deleted, and its address is free again.
    for i in 0..EP_IDS {
        let (s, v) = m.delete(&format!("/api/v1/endpoints/ep-{i}/")).await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, eps) = m.get("/api/v1/endpoints/").await;
    assert_eq!(eps, json!([]));
    m.kill();
    assert_eq!(check_store(&m.dir).await, 0, "endpoints left in the store");
}
