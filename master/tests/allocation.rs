//! Allocation against a real netmaster process: addresses, tags, group ids, pools, exhaustion,
//! concurrency and restarts.

mod common;
use common::{Netmaster, err};
use serde_json::{Value, json};
use std::collections::BTreeSet;

async fn ep(m: &Netmaster, id: &str, tenant: &str, net: &str, extra: Value) -> (u16, Value) {
    let mut body =
        json!({"endpointID": id, "tenantName": tenant, "networkName": net, "host": "h1"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    m.post("/api/v1/endpoints/", body).await
}

async fn oper(m: &Netmaster, path: &str) -> Value {
    let (s, v) = m.get(&format!("/api/v1/inspect/{path}/")).await;
    assert_eq!(s, 200, "{v}");
    v["Oper"].clone()
}

/// Contiv's `TestEndpointCreateDelete` figures.
#[tokio::test]
async fn inspect_shows_allocated_and_available_ranges() {
    let m = Netmaster::start();
    let (s, v) = m
        .post("/api/v1/networks/default:n1/", json!({"tenantName":"default","networkName":"n1","encap":"vxlan","subnet":"10.1.1.0/24"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let o = oper(&m, "networks/default:n1").await;
    assert_eq!(o["availableIPAddresses"], "10.1.1.1-10.1.1.254");
    assert!(o.get("allocatedIPAddresses").is_none(), "{o}");
    assert_eq!(o["pktTag"], 1);
    assert_eq!(o["externalPktTag"], 1);

    let (_, a) = ep(&m, "a", "default", "n1", json!({})).await;
    assert_eq!(a["ipAddress"], "10.1.1.1");
    assert_eq!(a["macAddress"], "02:02:0a:01:01:01");
    assert_eq!(a["prefixLen"], 24);
    let (_, b) = ep(&m, "b", "default", "n1", json!({"ipAddress": "10.1.1.5"})).await;
    assert_eq!(b["ipAddress"], "10.1.1.5");
    let o = oper(&m, "networks/default:n1").await;
    assert_eq!(o["allocatedIPAddresses"], "10.1.1.1, 10.1.1.5");
    assert_eq!(
        o["availableIPAddresses"],
        "10.1.1.2-10.1.1.4, 10.1.1.6-10.1.1.254"
    );
    assert_eq!(o["numEndpoints"], 2);
    assert_eq!(o["allocatedAddressesCount"], 2);

    // A taken address is refused (Contiv handed it out twice), and says who holds it.
    let (s, v) = ep(&m, "c", "default", "n1", json!({"ipAddress": "10.1.1.5"})).await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "ipAddress '10.1.1.5': already allocated in network default:n1 (to endpoint b)"
    );
    let (s, v) = ep(&m, "c", "default", "n1", json!({"ipAddress": "10.1.2.5"})).await;
    assert_eq!(s, 400);
    assert!(err(&v).contains("outside the allocatable addresses"), "{v}");
    // Same id again: the same endpoint, nothing new allocated.
    let (s, again) = ep(&m, "a", "default", "n1", json!({})).await;
    assert_eq!((s, again), (200, a.clone()));

    assert_eq!(m.delete("/api/v1/endpoints/a/").await.0, 200);
    assert_eq!(m.delete("/api/v1/endpoints/b/").await.0, 200);
    // Deleting again succeeds: there is nothing to delete.
    assert_eq!(m.delete("/api/v1/endpoints/b/").await.0, 200);
    let o = oper(&m, "networks/default:n1").await;
    assert_eq!(o["availableIPAddresses"], "10.1.1.1-10.1.1.254");
    // A freed address is reused, lowest first.
    let (_, c) = ep(&m, "c", "default", "n1", json!({})).await;
    assert_eq!(c["ipAddress"], "10.1.1.1");
}

#[tokio::test]
async fn gateway_and_range_subnets() {
    let m = Netmaster::start();
    m.post("/api/v1/networks/default:r/", json!({"tenantName":"default","networkName":"r","encap":"vlan","subnet":"10.3.1.10-10.3.1.12/24","gateway":"10.3.1.1"}))
        .await;
    let mut got = Vec::new();
    for i in 0..3 {
        let (s, v) = ep(&m, &format!("r{i}"), "default", "r", json!({})).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["gateway"], "10.3.1.1");
        assert_eq!(v["encap"], "vlan");
        got.push(v["ipAddress"].as_str().unwrap().to_string());
    }
    assert_eq!(got, ["10.3.1.10", "10.3.1.11", "10.3.1.12"]);
    let (s, v) = ep(&m, "r3", "default", "r", json!({})).await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "address exhaustion in subnet 10.3.1.0/24 of network default:r: no free address left"
    );
    // The gateway is never handed out.
    m.post("/api/v1/networks/default:g/", json!({"tenantName":"default","networkName":"g","encap":"vxlan","subnet":"10.4.0.0/30","gateway":"10.4.0.1"}))
        .await;
    let (_, v) = ep(&m, "g1", "default", "g", json!({})).await;
    assert_eq!(v["ipAddress"], "10.4.0.2");
    let (s, v) = ep(&m, "g2", "default", "g", json!({"ipAddress":"10.4.0.1"})).await;
    assert_eq!(s, 409);
    assert!(err(&v).contains("(it is the network's gateway)"), "{v}");
    let (s, _) = ep(&m, "g3", "default", "g", json!({})).await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn tag_pools_exhaust_with_clear_errors() {
    let m = Netmaster::start();
    let (s, v) = m
        .post(
            "/api/v1/globals/global/",
            json!({"name":"global","vlans":"100-101","vxlans":"5000-5001"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mk = |name: &str, encap: &str, i: u32, tag: i64| json!({"tenantName":"default","networkName":name,"encap":encap,"subnet":format!("10.{}.0.0/24", 10 + i),"pktTag":tag});
    assert_eq!(
        m.post("/api/v1/networks/default:v1/", mk("v1", "vlan", 1, 0))
            .await
            .1["key"],
        "default:v1"
    );
    let (s, v) = m
        .post("/api/v1/networks/default:v2/", mk("v2", "vlan", 2, 100))
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "pktTag 100: VLAN 100 is already used by network default:v1"
    );
    assert_eq!(
        m.post("/api/v1/networks/default:v2/", mk("v2", "vlan", 2, 101))
            .await
            .0,
        200
    );
    let (s, v) = m
        .post("/api/v1/networks/default:v3/", mk("v3", "vlan", 3, 0))
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "no VLAN available: every tag of the global range 100-101 is in use (widen it with netctl global set -v/--vlan-range)"
    );
    let (s, v) = m
        .post("/api/v1/networks/default:v3/", mk("v3", "vlan", 3, 7))
        .await;
    assert_eq!(s, 400);
    assert!(
        err(&v).starts_with("pktTag 7: outside the global VLAN range 100-101"),
        "{v}"
    );

    for (i, name) in ["x1", "x2"].iter().enumerate() {
        let (s, v) = m
            .post(
                &format!("/api/v1/networks/default:{name}/"),
                mk(name, "vxlan", 4 + i as u32, 0),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = m
        .post("/api/v1/networks/default:x3/", mk("x3", "vxlan", 6, 0))
        .await;
    assert_eq!(s, 409);
    assert!(err(&v).starts_with("no VXLAN available"), "{v}");
    let o = oper(&m, "networks/default:x2").await;
    assert_eq!(
        (o["externalPktTag"].clone(), o["pktTag"].clone()),
        (json!(5001), json!(2))
    );
    let g = oper(&m, "globals/global").await;
    assert_eq!(g["vlansInUse"], "100-101");
    assert_eq!(g["vxlansInUse"], "5000-5001");
    // Freed tags come back.
    assert_eq!(m.delete("/api/v1/networks/default:v1/").await.0, 200);
    let (_, v) = m
        .post("/api/v1/networks/default:v3/", mk("v3", "vlan", 3, 0))
        .await;
    assert_eq!(oper(&m, "networks/default:v3").await["pktTag"], 100, "{v}");
}

#[tokio::test]
async fn group_pools_and_ids() {
    let m = Netmaster::start();
    m.post("/api/v1/networks/default:n/", json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.36.0.0/24","gateway":"10.36.0.254"}))
        .await;
    let (s, v) = m.post("/api/v1/endpointGroups/default:web/", json!({"tenantName":"default","groupName":"web","networkName":"n","ipPool":"10.36.0.1-10.36.0.2"})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = m
        .post(
            "/api/v1/endpointGroups/default:db/",
            json!({"tenantName":"default","groupName":"db","networkName":"n"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let web = oper(&m, "endpointGroups/default:web").await;
    let db = oper(&m, "endpointGroups/default:db").await;
    assert_eq!(
        (web["groupId"].clone(), db["groupId"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(web["availableIPAddresses"], "10.36.0.1-10.36.0.2");
    // The pool is taken out of the network: a pool over it, or an endpoint outside the group, cannot use it.
    let (s, v) = m.post("/api/v1/endpointGroups/default:x/", json!({"tenantName":"default","groupName":"x","networkName":"n","ipPool":"10.36.0.2-10.36.0.3"})).await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "ipPool '10.36.0.2-10.36.0.3': address 10.36.0.2 is already allocated in network default:n"
    );
    let (_, free) = ep(&m, "free", "default", "n", json!({})).await;
    assert_eq!(free["ipAddress"], "10.36.0.3");
    let (s, v) = ep(
        &m,
        "sneak",
        "default",
        "n",
        json!({"ipAddress":"10.36.0.1"}),
    )
    .await;
    assert_eq!(s, 409);
    assert!(
        err(&v).contains("in the IP pool of endpoint group default:web"),
        "{v}"
    );
    let (_, w1) = ep(&m, "w1", "default", "n", json!({"groupName":"web"})).await;
    let (_, w2) = ep(&m, "w2", "default", "n", json!({"groupName":"web"})).await;
    assert_eq!(
        (w1["ipAddress"].clone(), w2["ipAddress"].clone()),
        (json!("10.36.0.1"), json!("10.36.0.2"))
    );
    assert_eq!(w1["groupId"], 1);
    let (s, v) = ep(&m, "w3", "default", "n", json!({"groupName":"web"})).await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "address exhaustion in pool 10.36.0.1-10.36.0.2 of endpoint group default:web: no free address left"
    );
    // A requested address outside the group's pool is refused (Contiv let it bypass the pool).
    let (s, _) = ep(
        &m,
        "w3",
        "default",
        "n",
        json!({"groupName":"web","ipAddress":"10.36.0.9"}),
    )
    .await;
    assert_eq!(s, 400);
    let web = oper(&m, "endpointGroups/default:web").await;
    assert_eq!(web["allocatedIPAddresses"], "10.36.0.1-10.36.0.2");
    assert_eq!(web["numEndpoints"], 2);
    // An endpoint of a group in another network is refused.
    m.post(
        "/api/v1/networks/default:n2/",
        json!({"tenantName":"default","networkName":"n2","encap":"vxlan","subnet":"10.37.0.0/24"}),
    )
    .await;
    let (s, v) = ep(&m, "bad", "default", "n2", json!({"groupName":"web"})).await;
    assert_eq!(s, 400);
    assert!(err(&v).contains("belongs to network n, not n2"), "{v}");
    // ipPool and networkName cannot change.
    let (s, _) = m.post("/api/v1/endpointGroups/default:web/", json!({"tenantName":"default","groupName":"web","networkName":"n","ipPool":"10.36.0.1-10.36.0.3"})).await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn dual_stack_addresses() {
    let m = Netmaster::start();
    let (s, v) = m
        .post("/api/v1/networks/default:ds/", json!({"tenantName":"default","networkName":"ds","encap":"vxlan","subnet":"10.5.0.0/24","gateway":"10.5.0.1","ipv6Subnet":"2001:db8:5::/64","ipv6Gateway":"2001:db8:5::1"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, a) = ep(&m, "a", "default", "ds", json!({})).await;
    assert_eq!(
        (
            a["ipv6Address"].clone(),
            a["ipv6PrefixLen"].clone(),
            a["ipv6Gateway"].clone()
        ),
        (json!("2001:db8:5::2"), json!(64), json!("2001:db8:5::1"))
    );
    let (s, v) = ep(
        &m,
        "b",
        "default",
        "ds",
        json!({"ipv6Address":"2001:db8:5::2"}),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    // The refused request released its IPv4 address too.
    let (_, b) = ep(
        &m,
        "b",
        "default",
        "ds",
        json!({"ipv6Address":"2001:db8:5::99"}),
    )
    .await;
    assert_eq!(
        (b["ipAddress"].clone(), b["ipv6Address"].clone()),
        (json!("10.5.0.3"), json!("2001:db8:5::99"))
    );
    let (_, i) = m.get("/api/v1/inspect/endpoints/b/").await;
    assert_eq!(
        i["Oper"]["ipAddress"],
        json!(["10.5.0.3", "2001:db8:5::99"])
    );
}

#[tokio::test]
async fn concurrent_creates_get_distinct_addresses() {
    let m = Netmaster::start();
    m.post(
        "/api/v1/networks/default:big/",
        json!({"tenantName":"default","networkName":"big","encap":"vxlan","subnet":"10.8.0.0/16"}),
    )
    .await;
    let client = m.client();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                c.create_endpoint(&model::agent::EndpointRequest {
                    endpoint_id: format!("c{i}"),
                    tenant_name: "default".into(),
                    network_name: "big".into(),
                    ..Default::default()
                })
                .await
            })
        })
        .collect();
    let mut addrs = BTreeSet::new();
    let mut macs = BTreeSet::new();
    for t in tasks {
        let e = t.await.unwrap().expect("create endpoint");
        addrs.insert(e.ip_address);
        macs.insert(e.mac_address);
    }
    assert_eq!(addrs.len(), 200);
    assert_eq!(macs.len(), 200);
    let o = oper(&m, "networks/default:big").await;
    assert_eq!(o["numEndpoints"], 200);
    assert_eq!(o["allocatedIPAddresses"], "10.8.0.1-10.8.0.200");
}

#[tokio::test]
async fn restart_keeps_objects_and_allocations() {
    let mut m = Netmaster::start();
    m.post("/api/v1/tenants/blue/", json!({"tenantName":"blue"}))
        .await;
    m.post("/api/v1/networks/blue:n/", json!({"tenantName":"blue","networkName":"n","encap":"vlan","subnet":"10.6.0.0/24","gateway":"10.6.0.1"})).await;
    for g in ["g1", "g2", "g3"] {
        let (s, v) = m
            .post(
                &format!("/api/v1/endpointGroups/blue:{g}/"),
                json!({"tenantName":"blue","groupName":g,"networkName":"n"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    // Free the id in the middle: after the restart it must stay free and the others keep theirs.
    assert_eq!(m.delete("/api/v1/endpointGroups/blue:g2/").await.0, 200);
    for i in 0..5 {
        ep(&m, &format!("e{i}"), "blue", "n", json!({"groupName":"g3"})).await;
    }
    m.delete("/api/v1/endpoints/e1/").await;
    let before: Vec<Value> = {
        let mut v = Vec::new();
        for p in [
            "tenants/blue",
            "networks/blue:n",
            "endpointGroups/blue:g1",
            "endpointGroups/blue:g3",
        ] {
            v.push(m.get(&format!("/api/v1/inspect/{p}/")).await.1);
        }
        v
    };
    m.restart();
    for (i, p) in [
        "tenants/blue",
        "networks/blue:n",
        "endpointGroups/blue:g1",
        "endpointGroups/blue:g3",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            m.get(&format!("/api/v1/inspect/{p}/")).await.1,
            before[i],
            "{p} changed across a restart"
        );
    }
    assert_eq!(oper(&m, "endpointGroups/blue:g3").await["groupId"], 3);
    // Allocation goes on where it was: the freed address first, then new ones; ids likewise.
    let (_, e) = ep(&m, "e5", "blue", "n", json!({})).await;
    assert_eq!(e["ipAddress"], "10.6.0.3");
    let (_, e) = ep(&m, "e6", "blue", "n", json!({})).await;
    assert_eq!(e["ipAddress"], "10.6.0.7");
    let (s, v) = m
        .post(
            "/api/v1/endpointGroups/blue:g4/",
            json!({"tenantName":"blue","groupName":"g4","networkName":"n"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(oper(&m, "endpointGroups/blue:g4").await["groupId"], 2);
    let (s, v) = m
        .post(
            "/api/v1/networks/blue:n2/",
            json!({"tenantName":"blue","networkName":"n2","encap":"vlan","subnet":"10.7.0.0/24"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(oper(&m, "networks/blue:n2").await["pktTag"], 2);
}

/// The create is idempotent even when the copies arrive together: each waits for the one in
/// flight and gets its endpoint (issue 17 item 8; they used to get 409 "being created").
#[tokio::test]
async fn identical_creates_at_once_get_one_endpoint() {
    let m = Netmaster::start();
    let (s, v) = m
        .post(
            "/api/v1/networks/default:twin/",
            json!({"tenantName":"default","networkName":"twin","encap":"vxlan","subnet":"10.9.0.0/16"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let client = m.client();
    // 20 ids, 8 copies of each create, all sent at once.
    let tasks: Vec<_> = (0..160)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                let id = format!("twin{}", i % 20);
                let r = c
                    .create_endpoint(&model::agent::EndpointRequest {
                        endpoint_id: id.clone(),
                        tenant_name: "default".into(),
                        network_name: "twin".into(),
                        host: "h1".into(),
                        ..Default::default()
                    })
                    .await;
                (id, r)
            })
        })
        .collect();
    let mut got: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for t in tasks {
        let (id, r) = t.await.unwrap();
        let e = r.unwrap_or_else(|e| panic!("create {id}: {e}"));
        got.entry(id).or_default().insert(e.ip_address);
    }
    // Each id got one address, the same for every copy; 20 addresses in all.
    assert!(got.values().all(|a| a.len() == 1), "{got:?}");
    let all: BTreeSet<_> = got.values().flatten().collect();
    assert_eq!(all.len(), 20, "{got:?}");
    let o = oper(&m, "networks/default:twin").await;
    assert_eq!(o["numEndpoints"], 20);
    assert_eq!(o["allocatedIPAddresses"], "10.9.0.1-10.9.0.20");
}
