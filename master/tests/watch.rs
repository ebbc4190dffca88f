//! The watch stream and node registration against a real netmaster process.

mod common;
use common::{Netmaster, err};
use futures::{Stream, StreamExt};
use model::agent::{NodeRegistration, WatchEvent, WatchEventType};
use serde_json::json;
use std::time::Duration;

async fn next(
    w: &mut (impl Stream<Item = Result<WatchEvent, model::ClientError>> + Unpin),
) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the stream goes on")
        .expect("a well-formed event")
}

/// Reads events until one matches, returning those seen before it too.
async fn until(
    w: &mut (impl Stream<Item = Result<WatchEvent, model::ClientError>> + Unpin),
    f: impl Fn(&WatchEvent) -> bool,
) -> Vec<WatchEvent> {
    let mut seen = Vec::new();
    loop {
        let e = next(w).await;
        let done = f(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn watch_lists_then_streams_changes_in_order_and_resumes() {
    let m = Netmaster::start();
    let c = m.client();
    let mut w = Box::pin(c.watch(None).await.unwrap());
    let listing = until(&mut w, |e| e.event_type == WatchEventType::Synced).await;
    let kinds: Vec<(&str, &str)> = listing
        .iter()
        .map(|e| (e.kind.as_str(), e.key.as_str()))
        .collect();
    assert!(kinds.contains(&("tenant", "default")), "{kinds:?}");
    assert!(kinds.contains(&("global", "global")), "{kinds:?}");
    let synced_rev = listing.last().unwrap().revision;

    m.post(
        "/api/v1/networks/default:n/",
        json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.1.2.0/24"}),
    )
    .await;
    m.post(
        "/api/v1/netprofiles/default:p/",
        json!({"tenantName":"default","profileName":"p","DSCP":1}),
    )
    .await;
    m.post(
        "/api/v1/netprofiles/default:p/",
        json!({"tenantName":"default","profileName":"p","DSCP":2}),
    )
    .await;
    m.post(
        "/api/v1/endpoints/",
        json!({"endpointID":"e1","tenantName":"default","networkName":"n"}),
    )
    .await;
    m.delete("/api/v1/endpoints/e1/").await;
    m.delete("/api/v1/netprofiles/default:p/").await;

    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(next(&mut w).await);
    }
    let summary: Vec<(WatchEventType, &str, &str)> = got
        .iter()
        .map(|e| (e.event_type, e.kind.as_str(), e.key.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (WatchEventType::Put, "network", "default:n"),
            (WatchEventType::Put, "netprofile", "default:p"),
            (WatchEventType::Put, "netprofile", "default:p"),
            (WatchEventType::Put, "endpoint", "e1"),
            (WatchEventType::Delete, "endpoint", "e1"),
            (WatchEventType::Delete, "netprofile", "default:p"),
        ]
    );
    // Revisions grow strictly, and start after the listing.
    assert!(got[0].revision > synced_rev);
    assert!(
        got.windows(2).all(|p| p[0].revision < p[1].revision),
        "{got:?}"
    );
    // Values carry the config, and for networks their allocation state.
    assert_eq!(got[0].value.as_ref().unwrap()["subnet"], "10.1.2.0/24");
    assert_eq!(got[0].state.as_ref().unwrap()["extPktTag"], 1);
    assert_eq!(got[2].value.as_ref().unwrap()["DSCP"], 2);
    assert_eq!(got[3].value.as_ref().unwrap()["ipAddress"], "10.1.2.1");

    // Resume from the revision of the second event: the same events from there, in order.
    let mut w2 = Box::pin(c.watch(Some(got[1].revision)).await.unwrap());
    for want in &got[1..] {
        let e = next(&mut w2).await;
        assert_eq!(
            (e.revision, e.event_type, &e.kind, &e.key),
            (want.revision, want.event_type, &want.kind, &want.key)
        );
    }
    // A revision in the future is refused.
    let r = c.watch(Some(got[5].revision + 1000)).await;
    assert_eq!(r.err().and_then(|e| e.status()), Some(400));
}

#[tokio::test]
async fn watch_resumes_across_a_restart() {
    let mut m = Netmaster::start();
    m.post("/api/v1/tenants/a/", json!({"tenantName":"a"}))
        .await;
    let rev = m.client().info().await.unwrap().revision;
    m.post("/api/v1/tenants/b/", json!({"tenantName":"b"}))
        .await;
    m.restart();
    m.post("/api/v1/tenants/c/", json!({"tenantName":"c"}))
        .await;
    let mut w = Box::pin(m.client().watch(Some(rev + 1)).await.unwrap());
    let keys: Vec<String> = vec![next(&mut w).await.key, next(&mut w).await.key];
    assert_eq!(keys, ["b", "c"]);
}

#[tokio::test]
async fn nodes_register_heartbeat_and_expire() {
    let m = Netmaster::start_with(&["--node-ttl", "2"]);
    let c = m.client();
    let mut w = Box::pin(c.watch(None).await.unwrap());
    until(&mut w, |e| e.event_type == WatchEventType::Synced).await;
    let reg = NodeRegistration {
        hostname: "host1".into(),
        vtep_ip: "192.0.2.1".into(),
        version: "test".into(),
    };
    let lease = c.register_node(&reg).await.unwrap();
    assert_eq!((lease.ttl_seconds, lease.heartbeat_seconds), (2, 1));
    let e = next(&mut w).await;
    assert_eq!(
        (e.event_type, e.kind.as_str(), e.key.as_str()),
        (WatchEventType::Put, "node", "host1")
    );
    assert_eq!(e.value.unwrap()["vtepIP"], "192.0.2.1");
    // Heartbeats keep it alive past its TTL without new events.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.register_node(&reg).await.unwrap();
    }
    let (_, nodes) = m.get("/api/v1/nodes/").await;
    assert_eq!(
        nodes,
        json!([{"hostname":"host1","vtepIP":"192.0.2.1","version":"test"}])
    );
    assert_eq!(c.info().await.unwrap().netplugin_nodes, ["host1"]);
    // Without heartbeats it expires: a delete event, and the node is gone.
    let e = until(&mut w, |e| {
        e.kind == "node" && e.event_type == WatchEventType::Delete
    })
    .await
    .pop()
    .unwrap();
    assert_eq!(
        (e.event_type, e.key.as_str()),
        (WatchEventType::Delete, "host1")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if m.get("/api/v1/nodes/").await.1 == json!([]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node still listed after expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Bad registrations.
    let (s, v) = m
        .req(
            "PUT",
            "/api/v1/nodes/host2/",
            Some(json!({"hostname":"host2","vtepIP":"nope"})),
        )
        .await;
    assert_eq!(
        (s, err(&v)),
        (400, "vtepIP 'nope': not an IP address".to_string())
    );
    let (s, _) = m
        .req(
            "PUT",
            "/api/v1/nodes/host2/",
            Some(json!({"hostname":"host3","vtepIP":"192.0.2.3"})),
        )
        .await;
    assert_eq!(s, 400);
}

/// An explicit DELETE of a node says so in the log, not "expired" (issue 17 item 10).
#[tokio::test]
async fn node_delete_is_logged_as_unregistered() {
    // The default TTL of 30 s: the registration cannot expire during the test.
    let m = Netmaster::start();
    let c = m.client();
    c.register_node(&NodeRegistration {
        hostname: "gone".into(),
        vtep_ip: "192.0.2.9".into(),
        version: "test".into(),
    })
    .await
    .unwrap();
    let (s, v) = m.delete("/api/v1/nodes/gone/").await;
    assert_eq!((s, v), (200, json!("gone")));
    assert_eq!(m.get("/api/v1/nodes/").await.1, json!([]));
    // The watcher of registrations logs the delete event once it has seen it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let about_gone = loop {
        let log = m.log();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains("node=gone"))
            .map(String::from)
            .collect();
        if lines.iter().any(|l| l.contains("node unregistered")) {
            break lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 'node unregistered' logged for node gone:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !about_gone.iter().any(|l| l.contains("expired")),
        "{about_gone:?}"
    );
}

#[tokio::test]
async fn openapi_document_covers_every_collection() {
    let m = Netmaster::start();
    let (s, doc) = m.get("/api/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for k in model::Kind::ALL {
        let p = format!("/api/v1/{}/{{key}}/", k.collection());
        for method in ["get", "post", "put", "delete"] {
            assert!(doc["paths"][&p][method].is_object(), "{p} {method}");
        }
    }
    for p in [
        "/api/v1/watch",
        "/api/v1/endpoints/",
        "/api/v1/nodes/{name}/",
        "/version",
        "/info",
    ] {
        assert!(doc["paths"][p].is_object(), "{p}");
    }
    // Every $ref points at a schema the document defines.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "missing schema {name}"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["Network"]["properties"]["pktTag"]["type"],
        "integer"
    );
}

/// SIGTERM with many watch streams open (each on its own connection): netmaster ends every
/// stream (the watchers read their end, with no error line: agents resume elsewhere from their
/// revision), and exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_every_watch_stream_and_exits() {
    const WATCHERS: usize = 1000;
    let mut m = Netmaster::start();
    model::install_default_tls_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut streams = Vec::new();
    for _ in 0..WATCHERS {
        let resp = http
            .get(format!("{}/api/v1/watch", m.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(resp.bytes_stream());
    }
    // Every watcher reads its listing up to `synced`, then the rest of its stream to its end.
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut text = Vec::new();
                while let Some(chunk) = s.next().await {
                    match chunk {
                        Ok(c) => text.extend_from_slice(&c),
                        Err(e) => return Err(format!("the stream broke instead of ending: {e}")),
                    }
                }
                Ok(String::from_utf8(text).unwrap())
            })
        })
        .collect();
    // Each got its response head: its stream is open in netmaster.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = tokio::task::spawn_blocking(move || {
        let s = m.terminate(Duration::from_secs(30));
        (s, m.log())
    });
    let (status, log) = status.await.unwrap();
    let status = status.unwrap_or_else(|| panic!("netmaster did not exit within 30 s:\n{log}"));
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("netmaster stopped"), "{log}");
    for r in readers {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let text = tokio::time::timeout(left.max(Duration::from_secs(1)), r)
            .await
            .expect("every stream ends")
            .unwrap()
            .unwrap();
        assert!(text.contains("\"type\":\"synced\""), "{text}");
        assert!(!text.contains("\"type\":\"error\""), "{text}");
    }
}
