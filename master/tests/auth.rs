//! Authentication and roles (`--auth on`), against a real netmaster process: every collection
//! and verb for each role, list and watch filtering per tenant, node identity, token expiry.

mod common;
use common::Netmaster;
use futures::StreamExt;
use model::Kind;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A netmaster with authentication and a token for each role.
struct Cluster {
    m: Netmaster,
    admin: String,
    ops: String,
    alice: String,
    bob: String,
    node: String,
    node2: String,
}

async fn ok(m: &Netmaster, token: &str, method: &str, path: &str, body: Value) -> Value {
    let (s, v) = m.req_as(Some(token), method, path, Some(body)).await;
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

async fn login(m: &Netmaster, user: &str, password: &str) -> String {
    let (s, v) = m
        .post(
            "/api/v1/auth_proxy/login/",
            json!({"username": user, "password": password}),
        )
        .await;
    assert_eq!(s, 200, "login {user}: {v}");
    v["token"].as_str().unwrap().to_string()
}

async fn join(m: &Netmaster, host: &str) -> String {
    let jt = std::fs::read_to_string(m.data_dir().join("join-token")).unwrap();
    let (s, v) = m
        .post(
            "/api/v1/auth_proxy/join/",
            json!({"hostname": host, "joinToken": jt.trim()}),
        )
        .await;
    assert_eq!(s, 200, "join {host}: {v}");
    v["token"].as_str().unwrap().to_string()
}

impl Cluster {
    async fn start() -> Cluster {
        let m = Netmaster::start_with(&["--auth", "on"]);
        let cred: Value = serde_json::from_slice(
            &std::fs::read(m.data_dir().join("admin-credential.json")).unwrap(),
        )
        .unwrap();
        let admin = login(&m, "admin", cred["password"].as_str().unwrap()).await;
        for t in ["A", "B"] {
            ok(
                &m,
                &admin,
                "POST",
                &format!("/api/v1/tenants/{t}/"),
                json!({"tenantName": t}),
            )
            .await;
        }
        for (t, subnet) in [("A", "10.1.0.0/24"), ("B", "10.2.0.0/24")] {
            ok(
                &m,
                &admin,
                "POST",
                &format!("/api/v1/networks/{t}:n1/"),
                json!({"tenantName": t, "networkName": "n1", "encap": "vxlan", "subnet": subnet}),
            )
            .await;
        }
        for (user, tenants) in [
            ("ops1", json!(["*"])),
            ("alice", json!(["A"])),
            ("bob", json!(["B"])),
        ] {
            ok(
                &m,
                &admin,
                "POST",
                "/api/v1/auth_proxy/local_users/",
                json!({"username": user, "password": "secret-123", "role": "ops", "tenants": tenants}),
            )
            .await;
        }
        Cluster {
            ops: login(&m, "ops1", "secret-123").await,
            alice: login(&m, "alice", "secret-123").await,
            bob: login(&m, "bob", "secret-123").await,
            node: join(&m, "h1").await,
            node2: join(&m, "h2").await,
            admin,
            m,
        }
    }
}

/// What a role gets: the answer admin gets (the request reaches the API), or a refusal.
#[derive(Debug, Clone, Copy, PartialEq)]
enum E {
    Pass,
    Unauth,
    Forbid,
}
use E::*;

struct Case {
    method: &'static str,
    path: String,
    body: Option<Value>,
    /// ops (every tenant), alice (tenant A), bob (tenant B), node h1, anonymous.
    expect: [E; 5],
}

fn case(
    method: &'static str,
    path: impl Into<String>,
    body: Option<Value>,
    expect: [E; 5],
) -> Case {
    Case {
        method,
        path: path.into(),
        body,
        expect,
    }
}

/// A key of `kind` in `tenant` that does not exist (so writes answer 400 and deletes 404).
fn key_in(kind: Kind, tenant: &str) -> String {
    match kind {
        Kind::Rule => format!("{tenant}:p:1"),
        _ => format!("{tenant}:x"),
    }
}

fn table() -> Vec<Case> {
    let mut t = Vec::new();
    for kind in Kind::ALL {
        let c = kind.collection();
        match kind {
            Kind::Tenant => {
                t.push(case(
                    "GET",
                    "/api/v1/tenants/",
                    None,
                    [Pass, Pass, Pass, Pass, Unauth],
                ));
                t.push(case(
                    "GET",
                    "/api/v1/tenants/A/",
                    None,
                    [Pass, Pass, Forbid, Pass, Unauth],
                ));
                t.push(case(
                    "GET",
                    "/api/v1/inspect/tenants/B/",
                    None,
                    [Pass, Forbid, Pass, Pass, Unauth],
                ));
                // An empty body: refused with 400 when allowed, and nothing changes.
                t.push(case(
                    "POST",
                    "/api/v1/tenants/A/",
                    Some(json!({})),
                    [Forbid, Forbid, Forbid, Forbid, Unauth],
                ));
                t.push(case(
                    "DELETE",
                    "/api/v1/tenants/zz/",
                    None,
                    [Forbid, Forbid, Forbid, Forbid, Unauth],
                ));
            }
            Kind::Global | Kind::Bgp | Kind::AciGw => {
                let key = match kind {
                    Kind::Global => "global",
                    Kind::AciGw => "aciGw",
                    _ => "h9",
                };
                t.push(case(
                    "GET",
                    format!("/api/v1/{c}/"),
                    None,
                    [Forbid, Forbid, Forbid, Pass, Unauth],
                ));
                t.push(case(
                    "GET",
                    format!("/api/v1/{c}/{key}/"),
                    None,
                    [Forbid, Forbid, Forbid, Pass, Unauth],
                ));
                t.push(case(
                    "POST",
                    format!("/api/v1/{c}/{key}/"),
                    Some(json!({"x": 1})),
                    [Forbid, Forbid, Forbid, Forbid, Unauth],
                ));
                t.push(case(
                    "DELETE",
                    format!("/api/v1/{c}/zz/"),
                    None,
                    [Forbid, Forbid, Forbid, Forbid, Unauth],
                ));
            }
            _ => {
                let (a, b) = (key_in(kind, "A"), key_in(kind, "B"));
                t.push(case(
                    "GET",
                    format!("/api/v1/{c}/"),
                    None,
                    [Pass, Pass, Pass, Pass, Unauth],
                ));
                t.push(case(
                    "GET",
                    format!("/api/v1/{c}/{a}/"),
                    None,
                    [Pass, Pass, Forbid, Pass, Unauth],
                ));
                t.push(case(
                    "GET",
                    format!("/api/v1/inspect/{c}/{b}/"),
                    None,
                    [Pass, Forbid, Pass, Pass, Unauth],
                ));
                t.push(case(
                    "POST",
                    format!("/api/v1/{c}/{a}/"),
                    Some(json!({})),
                    [Pass, Pass, Forbid, Forbid, Unauth],
                ));
                t.push(case(
                    "PUT",
                    format!("/api/v1/{c}/{b}/"),
                    Some(json!({})),
                    [Pass, Forbid, Pass, Forbid, Unauth],
                ));
                t.push(case(
                    "DELETE",
                    format!("/api/v1/{c}/{a}/"),
                    None,
                    [Pass, Pass, Forbid, Forbid, Unauth],
                ));
                t.push(case(
                    "DELETE",
                    format!("/api/v1/{c}/{b}/"),
                    None,
                    [Pass, Forbid, Pass, Forbid, Unauth],
                ));
            }
        }
    }
    let bad_reg = Some(json!({"nope": true}));
    t.extend([
        case("GET", "/version", None, [Pass, Pass, Pass, Pass, Pass]),
        case(
            "GET",
            "/api/v1/openapi.json",
            None,
            [Pass, Pass, Pass, Pass, Pass],
        ),
        case("GET", "/info", None, [Pass, Pass, Pass, Pass, Unauth]),
        case(
            "GET",
            "/api/v1/nodes/",
            None,
            [Forbid, Forbid, Forbid, Pass, Unauth],
        ),
        case(
            "PUT",
            "/api/v1/nodes/h1/",
            bad_reg.clone(),
            [Forbid, Forbid, Forbid, Pass, Unauth],
        ),
        case(
            "PUT",
            "/api/v1/nodes/evil/",
            bad_reg.clone(),
            [Forbid, Forbid, Forbid, Forbid, Unauth],
        ),
        case(
            "DELETE",
            "/api/v1/nodes/evil/",
            None,
            [Forbid, Forbid, Forbid, Forbid, Unauth],
        ),
        case(
            "PUT",
            "/api/v1/nodes/h1/rulestats/",
            bad_reg.clone(),
            [Forbid, Forbid, Forbid, Pass, Unauth],
        ),
        case(
            "PUT",
            "/api/v1/nodes/evil/rulestats/",
            bad_reg.clone(),
            [Forbid, Forbid, Forbid, Forbid, Unauth],
        ),
        case(
            "PUT",
            "/api/v1/nodes/h1/spoofstats/",
            bad_reg.clone(),
            [Forbid, Forbid, Forbid, Pass, Unauth],
        ),
        case(
            "PUT",
            "/api/v1/nodes/evil/spoofstats/",
            bad_reg,
            [Forbid, Forbid, Forbid, Forbid, Unauth],
        ),
        case(
            "GET",
            "/api/v1/endpoints/",
            None,
            [Pass, Pass, Pass, Pass, Unauth],
        ),
        case(
            "GET",
            "/api/v1/endpoints/nosuch/",
            None,
            [Pass, Pass, Pass, Pass, Unauth],
        ),
        // No network n9: 4xx from the API when allowed.
        case(
            "POST",
            "/api/v1/endpoints/",
            Some(json!({"endpointID":"e9","tenantName":"A","networkName":"n9","host":"h1"})),
            [Forbid, Forbid, Forbid, Pass, Unauth],
        ),
        case(
            "POST",
            "/api/v1/endpoints/",
            Some(json!({"endpointID":"e9","tenantName":"A","networkName":"n9","host":"h2"})),
            [Forbid, Forbid, Forbid, Forbid, Unauth],
        ),
        case(
            "DELETE",
            "/api/v1/endpoints/nosuch/",
            None,
            [Forbid, Forbid, Forbid, Pass, Unauth],
        ),
        case(
            "GET",
            "/api/v1/inspect/endpoints/nosuch/",
            None,
            [Pass, Forbid, Forbid, Pass, Unauth],
        ),
        case(
            "GET",
            "/api/v1/auth_proxy/local_users/",
            None,
            [Forbid, Forbid, Forbid, Forbid, Unauth],
        ),
        case(
            "POST",
            "/api/v1/auth_proxy/local_users/",
            Some(json!({})),
            [Forbid, Forbid, Forbid, Forbid, Unauth],
        ),
        case(
            "DELETE",
            "/api/v1/auth_proxy/local_users/nosuch/",
            None,
            [Forbid, Forbid, Forbid, Forbid, Unauth],
        ),
        case(
            "POST",
            "/api/v1/auth_proxy/tokens/",
            Some(json!({})),
            [Forbid, Forbid, Forbid, Forbid, Unauth],
        ),
        case(
            "GET",
            "/api/v1/nope/",
            None,
            [Pass, Pass, Pass, Pass, Unauth],
        ),
    ]);
    t
}

#[tokio::test]
async fn every_collection_and_verb_for_every_role() {
    let c = Cluster::start().await;
    let roles: [(&str, Option<&str>); 5] = [
        ("ops", Some(&c.ops)),
        ("alice", Some(&c.alice)),
        ("bob", Some(&c.bob)),
        ("node", Some(&c.node)),
        ("anonymous", None),
    ];
    let mut failures = Vec::new();
    for row in table() {
        let (admin_status, admin_body) =
            c.m.req_as(Some(&c.admin), row.method, &row.path, row.body.clone())
                .await;
        assert!(
            admin_status != 401 && admin_status != 403,
            "admin {} {}: {admin_status} {admin_body}",
            row.method,
            row.path
        );
        for ((who, token), want) in roles.iter().zip(row.expect) {
            let (s, v) =
                c.m.req_as(*token, row.method, &row.path, row.body.clone())
                    .await;
            let good = match want {
                Pass => s == admin_status,
                Unauth => {
                    s == 401
                        && v["error"]
                            .as_str()
                            .is_some_and(|e| e.contains("netctl login"))
                }
                Forbid => s == 403 && v["error"].as_str().is_some_and(|e| e.contains("role")),
            };
            if !good {
                failures.push(format!(
                    "{who} {} {}: want {want:?} (admin got {admin_status}), got {s} {v}",
                    row.method, row.path
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn names(v: &Value, field: &str) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o[field].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn lists_show_only_the_users_tenants() {
    let c = Cluster::start().await;
    let get = |t: &str, p: &str| {
        let (t, p) = (t.to_string(), p.to_string());
        let m = &c.m;
        async move { m.req_as(Some(&t), "GET", &p, None).await }
    };
    let (_, v) = get(&c.alice, "/api/v1/networks/").await;
    assert_eq!(names(&v, "tenantName"), ["A"]);
    let (_, v) = get(&c.bob, "/api/v1/tenants/").await;
    assert_eq!(names(&v, "tenantName"), ["B"]);
    let (_, v) = get(&c.ops, "/api/v1/networks/").await;
    assert_eq!(names(&v, "tenantName"), ["A", "B"]);
    // The forbidden answer names the role and the object.
    let (s, v) = get(&c.alice, "/api/v1/networks/B:n1/").await;
    assert_eq!(s, 403);
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("role ops") && e.contains("B:n1") && e.contains("alice"),
        "{e}"
    );
    // Endpoints: made by node h1 in both tenants, listed per tenant.
    for (id, t) in [("ea", "A"), ("eb", "B")] {
        ok(
            &c.m,
            &c.node,
            "POST",
            "/api/v1/endpoints/",
            json!({"endpointID": id, "tenantName": t, "networkName": "n1", "host": "h1"}),
        )
        .await;
    }
    let (_, v) = get(&c.alice, "/api/v1/endpoints/").await;
    assert_eq!(names(&v, "endpointID"), ["ea"]);
    assert_eq!(get(&c.alice, "/api/v1/endpoints/eb/").await.0, 403);
    assert_eq!(get(&c.bob, "/api/v1/endpoints/eb/").await.0, 200);
}

#[tokio::test]
async fn a_node_acts_only_for_itself() {
    let c = Cluster::start().await;
    // No credential: a stranger cannot register a node (the PUT /nodes/evil/).
    let reg = json!({"hostname": "evil", "vtepIP": "192.0.2.9"});
    let (s, _) =
        c.m.req_as(None, "PUT", "/api/v1/nodes/evil/", Some(reg.clone()))
            .await;
    assert_eq!(s, 401);
    // A wrong join token gets no credential.
    let (s, v) =
        c.m.post(
            "/api/v1/auth_proxy/join/",
            json!({"hostname": "evil", "joinToken": "guess"}),
        )
        .await;
    assert_eq!(s, 401, "{v}");
    // Node h1 registers itself, not h2.
    let me = json!({"hostname": "h1", "vtepIP": "192.0.2.1"});
    ok(&c.m, &c.node, "PUT", "/api/v1/nodes/h1/", me).await;
    let (s, v) =
        c.m.req_as(Some(&c.node), "PUT", "/api/v1/nodes/h2/", Some(reg))
            .await;
    assert_eq!(s, 403, "{v}");
    // h1's endpoint cannot be deleted by h2, nor made by h2 on h1.
    let ep = json!({"endpointID": "e1", "tenantName": "A", "networkName": "n1", "host": "h1"});
    ok(&c.m, &c.node, "POST", "/api/v1/endpoints/", ep.clone()).await;
    let (s, v) =
        c.m.req_as(Some(&c.node2), "POST", "/api/v1/endpoints/", Some(ep))
            .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) =
        c.m.req_as(Some(&c.node2), "DELETE", "/api/v1/endpoints/e1/", None)
            .await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("node h1"), "{v}");
    ok(
        &c.m,
        &c.node,
        "DELETE",
        "/api/v1/endpoints/e1/",
        json!(null),
    )
    .await;
}

#[tokio::test]
async fn tokens_expire_and_bad_tokens_are_refused() {
    let c = Cluster::start().await;
    let v = ok(
        &c.m,
        &c.admin,
        "POST",
        "/api/v1/auth_proxy/tokens/",
        json!({"name": "ci", "role": "ops", "tenants": ["A"], "ttlSeconds": 1}),
    )
    .await;
    let t = v["token"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (s, v) = loop {
        let (s, v) = c.m.req_as(Some(&t), "GET", "/api/v1/networks/", None).await;
        if s != 200 || Instant::now() > deadline {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(s, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("expired"), "{v}");
    let (s, v) =
        c.m.req_as(Some("ctv1.e30.AAAA"), "GET", "/info", None)
            .await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not valid"), "{v}");
    let (s, _) =
        c.m.post(
            "/api/v1/auth_proxy/login/",
            json!({"username": "admin", "password": "wrong-one"}),
        )
        .await;
    assert_eq!(s, 401);
}

/// Reads watch lines until `until` matches one; returns the lines read.
async fn watch_until(
    lines: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut Vec<u8>,
    until: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let v: Value = serde_json::from_slice(&line).unwrap();
            let done = until(&v);
            seen.push(v);
            if done {
                return seen;
            }
        }
        let chunk = tokio::time::timeout_at(deadline, lines.next())
            .await
            .expect("the watch event came in time")
            .expect("the stream goes on")
            .unwrap();
        buf.extend_from_slice(&chunk);
    }
}

#[tokio::test]
async fn watch_events_are_filtered_per_tenant() {
    let c = Cluster::start().await;
    model::install_default_tls_provider();
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/watch", c.m.url))
        .header("x-auth-token", &c.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let initial = watch_until(&mut stream, &mut buf, |v| v["type"] == "synced").await;
    let keys: Vec<String> = initial
        .iter()
        .filter(|v| v["type"] == "put")
        .map(|v| {
            format!(
                "{}/{}",
                v["kind"].as_str().unwrap(),
                v["key"].as_str().unwrap()
            )
        })
        .collect();
    assert!(keys.contains(&"network/A:n1".to_string()), "{keys:?}");
    assert!(
        keys.iter().all(|k| k == "tenant/A" || k.contains("/A:")),
        "alice sees only tenant A: {keys:?}"
    );
    // Live: B's network and endpoint come first, A's after; alice sees only A's.
    for t in ["B", "A"] {
        ok(
            &c.m,
            &c.admin,
            "POST",
            &format!("/api/v1/networks/{t}:n2/"),
            json!({"tenantName": t, "networkName": "n2", "encap": "vxlan", "subnet": if t == "A" {"10.3.0.0/24"} else {"10.4.0.0/24"}}),
        )
        .await;
        ok(
            &c.m,
            &c.node,
            "POST",
            "/api/v1/endpoints/",
            json!({"endpointID": format!("e{t}"), "tenantName": t, "networkName": "n2", "host": "h1"}),
        )
        .await;
        ok(
            &c.m,
            &c.node,
            "DELETE",
            &format!("/api/v1/endpoints/e{t}/"),
            json!(null),
        )
        .await;
    }
    let live = watch_until(&mut stream, &mut buf, |v| {
        v["type"] == "delete" && v["kind"] == "endpoint" && v["key"] == "eA"
    })
    .await;
    let got: Vec<String> = live
        .iter()
        .map(|v| {
            format!(
                "{} {}/{}",
                v["type"].as_str().unwrap(),
                v["kind"].as_str().unwrap(),
                v["key"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        got.iter().all(|e| !e.contains("B:") && !e.ends_with("/eB")),
        "{got:?}"
    );
    assert!(got.contains(&"put network/A:n2".to_string()), "{got:?}");
    assert!(got.contains(&"put endpoint/eA".to_string()), "{got:?}");

    // Resuming right after the listing (from the watch cache's ring): the same events, still
    // only A's; a node resuming there sees B's too.
    let first = initial.last().unwrap()["revision"].as_u64().unwrap() + 1;
    let resume = |token: String| {
        let url = format!("{}/api/v1/watch?revision={first}", c.m.url);
        async move {
            let resp = reqwest::Client::new()
                .get(url)
                .header("x-auth-token", token)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let mut stream = resp.bytes_stream();
            let mut buf = Vec::new();
            watch_until(&mut stream, &mut buf, |v| {
                v["type"] == "delete" && v["kind"] == "endpoint" && v["key"] == "eA"
            })
            .await
        }
    };
    assert_eq!(resume(c.alice.clone()).await, live);
    let node_saw: Vec<String> = resume(c.node.clone())
        .await
        .iter()
        .map(|v| {
            format!(
                "{} {}",
                v["kind"].as_str().unwrap(),
                v["key"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        node_saw.contains(&"endpoint eB".to_string()),
        "{node_saw:?}"
    );
    assert!(
        node_saw.contains(&"network B:n2".to_string()),
        "{node_saw:?}"
    );
}

/// `--tls on` without a certificate: a local CA is made under the data dir; a client that trusts
/// it logs in over https and works with the token, one that does not is refused in the handshake.
#[tokio::test]
async fn login_then_commands_over_https_with_the_generated_ca() {
    let m = Netmaster::start_with(&["--auth", "on", "--tls", "on"]);
    assert!(m.url.starts_with("https://"), "{}", m.url);
    let ca = m.data_dir().join("tls").join("ca.pem");
    assert!(
        m.log().contains("sha256="),
        "the CA's fingerprint is logged: {}",
        m.log()
    );
    let cred: Value =
        serde_json::from_slice(&std::fs::read(m.data_dir().join("admin-credential.json")).unwrap())
            .unwrap();
    let trusting = |token: Option<String>| {
        model::Client::with_options(
            std::slice::from_ref(&m.url),
            &model::ClientOptions {
                ca_file: Some(ca.clone()),
                auth_token: token,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let answer = trusting(None)
        .login("admin", cred["password"].as_str().unwrap())
        .await
        .unwrap();
    let token: Value = serde_json::from_slice(&answer).unwrap();
    let admin = trusting(Some(token["token"].as_str().unwrap().to_string()));
    let tenants = admin.list::<model::Tenant>().await.unwrap();
    assert!(tenants.iter().any(|t| t.tenant_name == "default"));
    // Without the token: 401.
    let e = trusting(None).list::<model::Tenant>().await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    // Not trusting the CA: the handshake fails, and the error says what to do.
    let e = model::Client::new(std::slice::from_ref(&m.url))
        .unwrap()
        .version()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--cacert"), "{e}");
}

/// A node asks for its own per-node watch stream only; the full stream stays open to it (older
/// agents), and admin may read any node's.
#[tokio::test]
async fn a_node_watches_only_its_own_node_stream() {
    let c = Cluster::start().await;
    model::install_default_tls_provider();
    let get = |token: String, query: &'static str| {
        let url = format!("{}/api/v1/watch{query}", c.m.url);
        async move {
            reqwest::Client::new()
                .get(url)
                .header("x-auth-token", token)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get(c.node.clone(), "?node=h2").await;
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    let e = e["error"].as_str().unwrap_or_default().to_string();
    assert!(
        e.contains("role node") && e.contains("h2") && e.contains("only for itself"),
        "{e}"
    );
    for (token, query, node) in [
        (c.node.clone(), "?node=h1", Some("h1")),
        (c.node.clone(), "", None),
        (c.admin.clone(), "?node=h2", Some("h2")),
    ] {
        let r = get(token, query).await;
        assert_eq!(r.status(), 200, "{query}");
        assert_eq!(
            r.headers()
                .get("x-contiv-watch-node")
                .map(|v| v.to_str().unwrap()),
            node,
            "{query}"
        );
    }
}
