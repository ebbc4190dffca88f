//! Inspect says what the API accepts but the datapath does not do yet: a `notice` added to
//! `Oper` (docs/compat.md, "Accepted, no effect yet"), Contiv's fields left as they were.

mod common;
use common::Netmaster;
use serde_json::{Value, json};

async fn created(m: &Netmaster, path: &str, body: Value) {
    let (s, v) = m.post(path, body).await;
    assert_eq!(s, 200, "create {path}: {v}");
}

async fn inspect(m: &Netmaster, path: &str) -> Value {
    let (s, v) = m.get(&format!("/api/v1/inspect/{path}/")).await;
    assert_eq!(s, 200, "inspect {path}: {v}");
    v
}

#[tokio::test]
async fn bgp_inspect_says_no_session_is_made() {
    let m = Netmaster::start();
    let bgp = json!({"hostname":"host1","routerip":"50.1.1.1/24","as":"65002","neighbor-as":"500","neighbor":"50.1.1.2"});
    created(&m, "/api/v1/Bgps/host1/", bgp.clone()).await;
    let i = inspect(&m, "Bgps/host1").await;
    // The whole answer: the config as stored, and an Oper whose only field is the notice
    // (Contiv's adminStatus, neighborStatus, numRoutes and routes are empty: no session).
    let mut config = bgp;
    config["key"] = json!("host1");
    assert_eq!(
        i,
        json!({
            "Config": config,
            "Oper": {"notice": master::notices::BGP},
        })
    );
    assert!(
        i["Oper"]["notice"].as_str().unwrap().starts_with(
            "BGP peering is not implemented yet: this object is stored but no BGP session is made"
        ),
        "{i}"
    );
    // A plain GET is Contiv's object, without the notice.
    let (_, g) = m.get("/api/v1/Bgps/host1/").await;
    assert!(g.get("notice").is_none(), "{g}");
}

#[tokio::test]
async fn notices_follow_what_has_no_effect_and_keep_contivs_fields() {
    let m = Netmaster::start();
    created(
        &m,
        "/api/v1/networks/default:vx/",
        json!({"tenantName":"default","networkName":"vx","encap":"vxlan","subnet":"10.1.1.0/24","gateway":"10.1.1.254"}),
    )
    .await;
    created(
        &m,
        "/api/v1/networks/default:vl/",
        json!({"tenantName":"default","networkName":"vl","encap":"vlan","pktTag":100,"subnet":"10.1.2.0/24","gateway":"10.1.2.254"}),
    )
    .await;
    // A VXLAN network with a gateway works across hosts and reaches out: nothing to say.
    let vx = inspect(&m, "networks/default:vx").await;
    assert!(vx["Oper"].get("notice").is_none(), "{vx}");
    assert_eq!(vx["Oper"]["externalPktTag"], 1, "{vx}");
    // A VLAN network: its Contiv fields, and the notice beside them.
    let vl = inspect(&m, "networks/default:vl").await;
    assert_eq!(vl["Oper"]["pktTag"], 100, "{vl}");
    assert_eq!(vl["Oper"]["availableIPAddresses"], "10.1.2.1-10.1.2.253");
    assert_eq!(vl["Oper"]["notice"], master::notices::VLAN);
    assert!(
        master::notices::VLAN.contains("endpoints on different hosts cannot"),
        "{vl}"
    );

    // Without a gateway: its pods get no outside or host access.
    created(
        &m,
        "/api/v1/networks/default:nogw/",
        json!({"tenantName":"default","networkName":"nogw","encap":"vxlan","subnet":"10.1.3.0/24"}),
    )
    .await;
    let nogw = inspect(&m, "networks/default:nogw").await;
    assert_eq!(
        nogw["Oper"]["notice"],
        master::notices::NO_GATEWAY,
        "{nogw}"
    );
    assert_eq!(nogw["Oper"]["availableIPAddresses"], "10.1.3.1-10.1.3.254");
    assert_eq!(m.delete("/api/v1/networks/default:nogw/").await.0, 200);

    // A service: its VIP and the notice.
    created(
        &m,
        "/api/v1/serviceLBs/default:svc/",
        json!({"tenantName":"default","serviceName":"svc","networkName":"vx","selectors":["app=web"],"ports":["80:8080:TCP"]}),
    )
    .await;
    let svc = inspect(&m, "serviceLBs/default:svc").await;
    assert_eq!(svc["Oper"]["serviceVip"], "10.1.1.1", "{svc}");
    assert_eq!(svc["Oper"]["notice"], master::notices::SERVICE_LB);

    // The global object: bridge says nothing, routing does (once no network is left).
    let g = inspect(&m, "globals/global").await;
    assert!(g["Oper"].get("notice").is_none(), "{g}");
    assert_eq!(m.delete("/api/v1/serviceLBs/default:svc/").await.0, 200);
    assert_eq!(m.delete("/api/v1/networks/default:vx/").await.0, 200);
    assert_eq!(m.delete("/api/v1/networks/default:vl/").await.0, 200);
    created(
        &m,
        "/api/v1/globals/global/",
        json!({"name":"global","fwdMode":"routing"}),
    )
    .await;
    let g = inspect(&m, "globals/global").await;
    assert_eq!(g["Oper"]["notice"], master::notices::ROUTING, "{g}");
    assert_eq!(g["Oper"]["freeVXLANsStart"], 1, "{g}");

    // An app profile has no Oper in Contiv: here one holding only the notice.
    created(
        &m,
        "/api/v1/appProfiles/default:app/",
        json!({"tenantName":"default","appProfileName":"app"}),
    )
    .await;
    let a = inspect(&m, "appProfiles/default:app").await;
    assert_eq!(a["Oper"], json!({"notice": master::notices::ACI}), "{a}");
    assert_eq!(a["Config"]["appProfileName"], "app");

    // What works has no notice, and no Oper where Contiv had none.
    created(
        &m,
        "/api/v1/netprofiles/default:slow/",
        json!({"tenantName":"default","profileName":"slow","bandwidth":"10mbps"}),
    )
    .await;
    let p = inspect(&m, "netprofiles/default:slow").await;
    assert!(p.get("Oper").is_none(), "{p}");
    let t = inspect(&m, "tenants/default").await;
    assert!(t["Oper"].get("notice").is_none(), "{t}");
}
