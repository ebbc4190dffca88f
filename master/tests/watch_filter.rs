//! Per-node watch streams (`GET /api/v1/watch?node=<host>`) against a real netmaster process:
//! the node sees every object but endpoints, and exactly the endpoints of the networks where it
//! has one; joining a network brings that network's endpoints first; leaving it stops them (the
//! reader drops them, as the agent does); a resume from any point of the stream, even inside a
//! backlog, ends in the same view, without an event the node should not get.

mod common;
use common::Netmaster;
use futures::{Stream, StreamExt};
use model::agent::{EndpointRequest, WatchEvent, WatchEventType};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const ME: &str = "h1";

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<WatchEvent, model::ClientError>> + Send>>;

async fn watch(c: &model::Client, from: Option<u64>, node: Option<&str>) -> Events {
    let (filtered, s) = c.watch_for(from, node).await.unwrap();
    assert_eq!(
        filtered,
        node.is_some(),
        "netmaster says whether it filtered"
    );
    Box::pin(s)
}

/// Reads events until one matches (included).
async fn until(w: &mut Events, f: impl Fn(&WatchEvent) -> bool) -> Vec<WatchEvent> {
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(20), w.next())
            .await
            .expect("a watch event within 20 s")
            .expect("the stream goes on")
            .expect("a well-formed event");
        let done = f(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

fn is_put(kind: &'static str, key: String) -> impl Fn(&WatchEvent) -> bool {
    move |e| e.event_type == WatchEventType::Put && e.kind == kind && e.key == key
}

fn field(v: &Value, f: &str) -> String {
    v.get(f)
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}

fn net_of(v: &Value) -> String {
    format!("{}:{}", field(v, "tenantName"), field(v, "networkName"))
}

/// The endpoints a reader of the node's stream holds, kept as the agent keeps them: when the
/// node's last endpoint in a network goes, that network's endpoints are dropped.
#[derive(Default, Clone, Debug)]
struct View {
    revision: u64,
    endpoints: BTreeMap<String, Value>,
}

impl View {
    fn member_of(&self, net: &str) -> bool {
        self.endpoints
            .values()
            .any(|v| net_of(v) == net && field(v, "host") == ME)
    }

    fn apply(&mut self, e: &WatchEvent) {
        self.revision = self.revision.max(e.revision);
        if e.kind != "endpoint" {
            return;
        }
        match e.event_type {
            WatchEventType::Put => {
                self.endpoints
                    .insert(e.key.clone(), e.value.clone().unwrap());
            }
            WatchEventType::Delete => {
                if let Some(v) = self.endpoints.remove(&e.key)
                    && field(&v, "host") == ME
                    && !self.member_of(&net_of(&v))
                {
                    let net = net_of(&v);
                    self.endpoints.retain(|_, x| net_of(x) != net);
                }
            }
            _ => {}
        }
    }
}

/// Checks that a node's stream, read from `view`, carries no endpoint event the node should not
/// get: an event of another host's endpoint in a network the node is not in is either a put of
/// a backlog (puts of that network, then the node's own put there) or nothing at all.
fn check_only_mine(mut view: View, events: &[WatchEvent]) -> View {
    for (i, e) in events.iter().enumerate() {
        if e.kind == "endpoint" {
            let v =
                match e.event_type {
                    WatchEventType::Put => e.value.clone().unwrap(),
                    _ => view.endpoints.get(&e.key).cloned().unwrap_or_else(|| {
                        panic!("delete of {}, which the node does not hold", e.key)
                    }),
                };
            let net = net_of(&v);
            if field(&v, "host") != ME && !view.member_of(&net) {
                assert_eq!(
                    e.event_type,
                    WatchEventType::Put,
                    "event {i} ({e:?}): of a network the node is not in"
                );
                let rest = &events[i..];
                let end = rest
                    .iter()
                    .position(|x| {
                        !(x.kind == "endpoint"
                            && x.event_type == WatchEventType::Put
                            && net_of(x.value.as_ref().unwrap()) == net
                            && field(x.value.as_ref().unwrap(), "host") != ME)
                    })
                    .unwrap_or_else(|| panic!("backlog of {net} at {i} not followed by anything"));
                let own = &rest[end];
                assert!(
                    own.kind == "endpoint"
                        && own.event_type == WatchEventType::Put
                        && field(own.value.as_ref().unwrap(), "host") == ME
                        && net_of(own.value.as_ref().unwrap()) == net,
                    "event {i} ({e:?}): a put of network {net} the node is not in, not a backlog before the node's own put there ({own:?})"
                );
                assert!(
                    rest[..end].iter().all(|x| x.revision < own.revision),
                    "a backlog's revisions are below its event's"
                );
            }
        }
        view.apply(e);
    }
    view
}

/// What the node should hold: the endpoints of the networks where it has one, now.
async fn truth(m: &Netmaster) -> BTreeMap<String, Value> {
    let (s, all) = m.get("/api/v1/endpoints/").await;
    assert_eq!(s, 200);
    let all: Vec<Value> = serde_json::from_value(all).unwrap();
    let mine: BTreeSet<String> = all
        .iter()
        .filter(|v| field(v, "host") == ME)
        .map(net_of)
        .collect();
    all.into_iter()
        .filter(|v| mine.contains(&net_of(v)))
        .map(|v| (field(&v, "endpointID"), v))
        .collect()
}

fn ids(eps: &BTreeMap<String, Value>) -> Vec<&str> {
    eps.keys().map(String::as_str).collect()
}

/// The endpoint events of `events` as `put id` / `delete id`.
fn ep_events(events: &[WatchEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == "endpoint")
        .map(|e| format!("{:?} {}", e.event_type, e.key).to_lowercase())
        .collect()
}

#[tokio::test]
async fn a_node_stream_carries_its_networks_endpoints_with_backlogs_and_resumes_anywhere() {
    let m = Netmaster::start();
    let c = m.client();
    for (n, subnet) in [("a", "10.7.1.0/24"), ("b", "10.7.2.0/24")] {
        let (s, v) = m
            .post(
                &format!("/api/v1/networks/default:{n}/"),
                json!({"tenantName": "default", "networkName": n, "encap": "vxlan", "subnet": subnet}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let create = |id: &'static str, net: &'static str, host: &'static str| {
        let c = c.clone();
        async move {
            c.create_endpoint(&EndpointRequest {
                endpoint_id: id.into(),
                tenant_name: "default".into(),
                network_name: net.into(),
                host: host.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
    };
    create("a2", "a", "h2").await;
    create("b3", "b", "h3").await;
    create("a1", "a", ME).await;

    let mut all = watch(&c, None, None).await;
    let all_listing = until(&mut all, |e| e.event_type == WatchEventType::Synced).await;
    let mut mine = watch(&c, None, Some(ME)).await;
    let listing = until(&mut mine, |e| e.event_type == WatchEventType::Synced).await;
    let mut view = View::default();
    for e in &listing {
        view.apply(e);
    }
    assert_eq!(ids(&view.endpoints), ["a1", "a2"], "listed: network a only");
    let others = |l: &[WatchEvent]| -> Vec<(String, String)> {
        l.iter()
            .filter(|e| e.kind != "endpoint")
            .map(|e| (e.kind.clone(), e.key.clone()))
            .collect()
    };
    assert_eq!(
        others(&listing),
        others(&all_listing),
        "every object but endpoints is listed"
    );
    let start = view.clone();

    // Each step, then a marker (a netprofile) that every stream carries: what the node got of
    // the step is what came before the marker.
    let mut step = 0;
    let mut stream: Vec<WatchEvent> = Vec::new();
    let mut everything: Vec<WatchEvent> = Vec::new();
    let mut marker = async |mine: &mut Events, all: &mut Events| -> Vec<WatchEvent> {
        step += 1;
        let name = format!("m{step}");
        let (s, v) = m
            .post(
                &format!("/api/v1/netprofiles/default:{name}/"),
                json!({"tenantName": "default", "profileName": name}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let key = format!("default:{name}");
        everything.extend(until(all, is_put("netprofile", key.clone())).await);
        until(mine, is_put("netprofile", key)).await
    };
    let expect = async |got: Vec<WatchEvent>, want: &[&str], stream: &mut Vec<WatchEvent>| {
        assert_eq!(ep_events(&got), want);
        stream.extend(got);
    };

    create("b2", "b", "h2").await;
    expect(marker(&mut mine, &mut all).await, &[], &mut stream).await;
    create("a3", "a", "h3").await;
    expect(marker(&mut mine, &mut all).await, &["put a3"], &mut stream).await;
    // The node joins b: b's endpoints, then its own.
    create("b1", "b", ME).await;
    expect(
        marker(&mut mine, &mut all).await,
        &["put b2", "put b3", "put b1"],
        &mut stream,
    )
    .await;
    create("b4", "b", "h3").await;
    expect(marker(&mut mine, &mut all).await, &["put b4"], &mut stream).await;
    // It leaves b: nothing more of b, not even deletes.
    c.delete_endpoint("b1").await.unwrap();
    c.delete_endpoint("b2").await.unwrap();
    create("b5", "b", "h2").await;
    expect(
        marker(&mut mine, &mut all).await,
        &["delete b1"],
        &mut stream,
    )
    .await;
    // And joins again: b as it is now (b2 is gone).
    create("b6", "b", ME).await;
    expect(
        marker(&mut mine, &mut all).await,
        &["put b3", "put b4", "put b5", "put b6"],
        &mut stream,
    )
    .await;
    c.delete_endpoint("a1").await.unwrap();
    create("a4", "a", "h2").await;
    expect(
        marker(&mut mine, &mut all).await,
        &["delete a1"],
        &mut stream,
    )
    .await;

    let want = truth(&m).await;
    assert_eq!(ids(&want), ["b3", "b4", "b5", "b6"]);
    let end = check_only_mine(start.clone(), &stream);
    assert_eq!(
        end.endpoints, want,
        "the node's view is its networks' endpoints"
    );
    assert_eq!(
        others(&stream),
        others(&everything),
        "every event but endpoints reaches the node, in order"
    );

    // A stream cut after any of its events resumes from the reader's revision and ends in the
    // same view, with nothing the node should not get: its interest is derived again at the
    // resume's revision (a resume inside a backlog gets the backlog again).
    let last = format!("default:m{step}");
    for cut in 0..stream.len() {
        let mut view = start.clone();
        for e in &stream[..cut] {
            view.apply(e);
        }
        let mut w = watch(&c, Some(view.revision + 1), Some(ME)).await;
        let resumed = until(&mut w, is_put("netprofile", last.clone())).await;
        let backlog_put = |e: &WatchEvent| {
            e.kind == "endpoint"
                && e.event_type == WatchEventType::Put
                && field(e.value.as_ref().unwrap(), "host") != ME
        };
        assert!(
            resumed
                .iter()
                .all(|e| e.revision > view.revision || backlog_put(e)),
            "cut {cut}: nothing at or before the reader's revision {} but a backlog: {resumed:?}",
            view.revision,
        );
        let end = check_only_mine(view, &resumed);
        assert_eq!(end.endpoints, want, "cut {cut}: resumed to the same view");
    }
}

#[tokio::test]
async fn a_node_without_endpoints_gets_no_endpoint_and_an_old_client_gets_all() {
    let m = Netmaster::start();
    let c = m.client();
    let (s, v) = m
        .post(
            "/api/v1/networks/default:a/",
            json!({"tenantName": "default", "networkName": "a", "encap": "vxlan", "subnet": "10.7.1.0/24"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    c.create_endpoint(&EndpointRequest {
        endpoint_id: "x".into(),
        tenant_name: "default".into(),
        network_name: "a".into(),
        host: "h2".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut mine = watch(&c, None, Some(ME)).await;
    let listing = until(&mut mine, |e| e.event_type == WatchEventType::Synced).await;
    assert!(listing.iter().all(|e| e.kind != "endpoint"), "{listing:?}");
    assert!(
        listing
            .iter()
            .any(|e| e.kind == "network" && e.key == "default:a")
    );
    let mut all = watch(&c, None, None).await;
    let listing = until(&mut all, |e| e.event_type == WatchEventType::Synced).await;
    assert!(listing.iter().any(|e| e.kind == "endpoint" && e.key == "x"));
}
