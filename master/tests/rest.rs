//! The REST API against a real netmaster process: every collection, Contiv's rules, bad input.

mod common;
use common::{Netmaster, err};
use serde_json::{Value, json};

fn net(tenant: &str, name: &str, subnet: &str) -> Value {
    json!({"tenantName": tenant, "networkName": name, "encap": "vxlan", "subnet": subnet})
}

async fn create_net(m: &Netmaster, tenant: &str, name: &str, subnet: &str) {
    let (s, v) = m
        .post(
            &format!("/api/v1/networks/{tenant}:{name}/"),
            net(tenant, name, subnet),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn defaults_exist_from_first_start() {
    let m = Netmaster::start();
    let (s, v) = m.get("/api/v1/tenants/").await;
    assert_eq!(s, 200);
    assert_eq!(v, json!([{"key": "default", "tenantName": "default"}]));
    let (_, g) = m.get("/api/v1/globals/global/").await;
    assert_eq!(
        g,
        json!({"key":"global","name":"global","arpMode":"proxy","fwdMode":"bridge","networkInfraType":"default","pvtSubnet":"172.19.0.0/16","vlans":"1-4094","vxlans":"1-10000"})
    );
    let (s, v) = m.get("/version").await;
    assert_eq!(s, 200);
    assert!(v["Version"].is_string(), "{v}");
    let (s, v) = m.get("/info").await;
    assert_eq!(s, 200);
    assert_eq!(v["current-state"], "leader");
    assert_eq!(v["store"], "embedded");
    // The same API on the unix socket, through the client's unix:// URLs.
    let c = model::Client::new(&[format!("unix://{}", m.unix_socket().display())]).unwrap();
    let tenants: Vec<model::Tenant> = c.list().await.unwrap();
    assert_eq!(tenants[0].tenant_name, "default");
    // A dead socket first, then the live one: the client fails over.
    let c = model::Client::new(&[format!(
        "unix://{}/none.sock,unix://{}",
        m.dir.display(),
        m.unix_socket().display()
    )])
    .unwrap();
    assert_eq!(
        c.version().await.unwrap().version,
        env!("CARGO_PKG_VERSION")
    );
    let e = model::Client::new(&[format!("unix://{}/none.sock", m.dir.display())])
        .unwrap()
        .version()
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "cannot reach netmaster at unix://{}/none.sock: ",
            m.dir.display()
        )),
        "{e}"
    );
}

/// Create, get, list, update and delete for every collection, in dependency order.
#[tokio::test]
async fn every_collection_round_trips() {
    let m = Netmaster::start();
    let objects: Vec<(&str, &str, Value, Value)> = vec![
        (
            "tenants",
            "blue",
            json!({"tenantName":"blue"}),
            json!({"tenantName":"blue","defaultNetwork":"net1"}),
        ),
        (
            "networks",
            "blue:net1",
            json!({"tenantName":"blue","networkName":"net1","encap":"vxlan","subnet":"10.1.1.0/24","gateway":"10.1.1.254"}),
            Value::Null,
        ),
        (
            "netprofiles",
            "blue:gold",
            json!({"tenantName":"blue","profileName":"gold","bandwidth":"100 mbps","DSCP":10,"burst":200}),
            json!({"tenantName":"blue","profileName":"gold","bandwidth":"10mbps","DSCP":12}),
        ),
        (
            "policys",
            "blue:web-in",
            json!({"tenantName":"blue","policyName":"web-in"}),
            Value::Null,
        ),
        (
            "extContractsGroups",
            "blue:ext",
            json!({"tenantName":"blue","contractsGroupName":"ext","contractsType":"provided","contracts":["uni/tn-common/brc-default"]}),
            Value::Null,
        ),
        (
            "endpointGroups",
            "blue:web",
            json!({"tenantName":"blue","groupName":"web","networkName":"net1","policies":["web-in"]}),
            json!({"tenantName":"blue","groupName":"web","networkName":"net1","policies":["web-in"],"netProfile":"gold","extContractsGrps":["ext"]}),
        ),
        (
            "rules",
            "blue:web-in:1",
            json!({"tenantName":"blue","policyName":"web-in","ruleId":"1","direction":"in","priority":100,"protocol":"tcp","port":8000,"action":"allow"}),
            Value::Null,
        ),
        (
            "aciGws",
            "aciGw",
            json!({"name":"aciGw","pathBindings":"topology/pod-1/paths-101/pathep-[eth1/14]","physicalDomain":"phys"}),
            json!({"name":"aciGw","enforcePolicies":"no"}),
        ),
        (
            "appProfiles",
            "blue:app",
            json!({"tenantName":"blue","appProfileName":"app","endpointGroups":["web"]}),
            json!({"tenantName":"blue","appProfileName":"app","endpointGroups":[]}),
        ),
        (
            "serviceLBs",
            "blue:svc",
            json!({"tenantName":"blue","serviceName":"svc","networkName":"net1","selectors":["app=web"],"ports":["80:8080:tcp"]}),
            json!({"tenantName":"blue","serviceName":"svc","networkName":"net1","selectors":["app=web","tier=fe"],"ports":["80:8080:TCP"]}),
        ),
        (
            "Bgps",
            "host1",
            json!({"hostname":"host1","routerip":"50.1.1.1/24","as":"65002","neighbor-as":"500","neighbor":"50.1.1.2"}),
            json!({"hostname":"host1","routerip":"50.1.1.1/24","as":"65003","neighbor-as":"500","neighbor":"50.1.1.2"}),
        ),
        (
            "globals",
            "global",
            json!({"name":"global","vlans":"1-4094","vxlans":"1-10000","fwdMode":"bridge","arpMode":"flood","pvtSubnet":"172.19.0.0/16","networkInfraType":"default"}),
            Value::Null,
        ),
    ];
    for (coll, key, body, update) in &objects {
        let path = format!("/api/v1/{coll}/{key}/");
        let (s, v) = m.post(&path, body.clone()).await;
        assert_eq!(s, 200, "create {path}: {v}");
        assert_eq!(v["key"], *key, "{v}");
        for (k, want) in body.as_object().unwrap() {
            if k != "ports" {
                assert_eq!(&v[k], want, "{path} field {k}: {v}");
            }
        }
        let (s, got) = m.get(&path).await;
        assert_eq!(s, 200);
        assert_eq!(got, v);
        let (s, list) = m.get(&format!("/api/v1/{coll}/")).await;
        assert_eq!(s, 200);
        assert!(
            list.as_array().unwrap().iter().any(|o| o["key"] == *key),
            "{coll}: {list}"
        );
        let (s, _) = m.get(&format!("/api/v1/inspect/{coll}/{key}/")).await;
        assert_eq!(s, 200, "inspect {path}");
        if !update.is_null() {
            let (s, v) = m.req("PUT", &path, Some(update.clone())).await;
            assert_eq!(s, 200, "update {path}: {v}");
            for (k, want) in update.as_object().unwrap() {
                if want.as_array().is_some_and(|a| a.is_empty()) {
                    assert!(v.get(k).is_none(), "{path} {k} should be empty: {v}");
                } else {
                    assert_eq!(&v[k], want, "{path} updated field {k}: {v}");
                }
            }
        }
        // Re-posting the same object is a no-op, not an error.
        let again = if update.is_null() { body } else { update };
        let (s, v) = m.post(&path, again.clone()).await;
        assert_eq!(s, 200, "repeat {path}: {v}");
    }
    // Links as Contiv derives them.
    let (_, g) = m.get("/api/v1/endpointGroups/blue:web/").await;
    assert_eq!(
        g["links"]["Network"],
        json!({"type":"network","key":"blue:net1"})
    );
    assert_eq!(
        g["links"]["NetProfile"],
        json!({"type":"netprofile","key":"blue:gold"})
    );
    assert_eq!(
        g["link-sets"]["Policies"]["blue:web-in"],
        json!({"type":"policy","key":"blue:web-in"})
    );
    let (_, t) = m.get("/api/v1/tenants/blue/").await;
    assert!(t["link-sets"]["Networks"]["blue:net1"].is_object(), "{t}");
    // Service ports were normalised to upper-case protocols.
    let (_, svc) = m.get("/api/v1/serviceLBs/blue:svc/").await;
    assert_eq!(svc["ports"], json!(["80:8080:TCP"]));
    let (_, i) = m.get("/api/v1/inspect/serviceLBs/blue:svc/").await;
    assert_eq!(i["Oper"]["serviceVip"], "10.1.1.1", "{i}");

    // Delete in reverse dependency order; each disappears.
    for (coll, key, _, _) in objects.iter().rev() {
        if *coll == "globals" {
            continue;
        }
        let path = format!("/api/v1/{coll}/{key}/");
        let (s, v) = m.delete(&path).await;
        assert_eq!(s, 200, "delete {path}: {v}");
        assert_eq!(v, json!(key));
        let (s, v) = m.get(&path).await;
        assert_eq!(s, 404, "{path} still there: {v}");
    }
}

#[tokio::test]
async fn delete_guards_say_what_depends() {
    let m = Netmaster::start();
    m.post("/api/v1/tenants/t1/", json!({"tenantName":"t1"}))
        .await;
    create_net(&m, "t1", "n1", "10.1.0.0/24").await;
    let (s, v) = m.delete("/api/v1/tenants/t1/").await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "tenant t1 is in use by networks t1:n1; delete or detach them first"
    );

    m.post(
        "/api/v1/policys/t1:p/",
        json!({"tenantName":"t1","policyName":"p"}),
    )
    .await;
    m.post(
        "/api/v1/netprofiles/t1:np/",
        json!({"tenantName":"t1","profileName":"np","DSCP":3}),
    )
    .await;
    let (s, v) = m
        .post("/api/v1/endpointGroups/t1:g/", json!({"tenantName":"t1","groupName":"g","networkName":"n1","policies":["p"],"netProfile":"np"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = m.delete("/api/v1/networks/t1:n1/").await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "network t1:n1 is in use by endpoint groups t1:g; delete or detach them first"
    );
    let (s, v) = m.delete("/api/v1/policys/t1:p/").await;
    assert_eq!(s, 409);
    assert!(err(&v).contains("endpoint groups t1:g"), "{v}");
    let (s, v) = m.delete("/api/v1/netprofiles/t1:np/").await;
    assert_eq!(s, 409);
    assert!(err(&v).contains("endpoint groups t1:g"), "{v}");

    m.post(
        "/api/v1/appProfiles/t1:a/",
        json!({"tenantName":"t1","appProfileName":"a","endpointGroups":["g"]}),
    )
    .await;
    let (s, v) = m.delete("/api/v1/endpointGroups/t1:g/").await;
    assert_eq!(s, 409);
    assert!(err(&v).contains("app profiles t1:a"), "{v}");
    m.delete("/api/v1/appProfiles/t1:a/").await;

    let (s, ep) = m
        .post(
            "/api/v1/endpoints/",
            json!({"endpointID":"e1","tenantName":"t1","networkName":"n1","groupName":"g"}),
        )
        .await;
    assert_eq!(s, 200, "{ep}");
    let (s, v) = m.delete("/api/v1/endpointGroups/t1:g/").await;
    assert_eq!(s, 409);
    assert!(err(&v).contains("endpoints e1"), "{v}");
    // A refused delete changed nothing.
    assert_eq!(m.get("/api/v1/endpointGroups/t1:g/").await.0, 200);

    m.delete("/api/v1/endpoints/e1/").await;
    assert_eq!(m.delete("/api/v1/endpointGroups/t1:g/").await.0, 200);
    // Policy delete takes its rules with it.
    m.post(
        "/api/v1/rules/t1:p:1/",
        json!({"tenantName":"t1","policyName":"p","ruleId":"1","direction":"in","action":"deny"}),
    )
    .await;
    assert_eq!(m.delete("/api/v1/policys/t1:p/").await.0, 200);
    assert_eq!(m.get("/api/v1/rules/t1:p:1/").await.0, 404);

    let (s, v) = m.delete("/api/v1/networks/t1:nope/").await;
    assert_eq!(s, 404);
    assert_eq!(err(&v), "network t1:nope not found");
}

#[tokio::test]
async fn subnets_may_overlap_across_tenants_only() {
    let m = Netmaster::start();
    create_net(&m, "default", "other", "10.1.0.0/16").await;
    let (s, v) = m
        .post(
            "/api/v1/networks/default:contiv-net/",
            net("default", "contiv-net", "10.1.2.0/24"),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "subnet 10.1.2.0/24 overlaps network default:other (10.1.0.0/16)"
    );
    m.post("/api/v1/tenants/blue/", json!({"tenantName":"blue"}))
        .await;
    create_net(&m, "blue", "contiv-net", "10.1.2.0/24").await;
    // Same address in both tenants.
    for t in ["default", "blue"] {
        let netname = if t == "default" {
            "other"
        } else {
            "contiv-net"
        };
        let (s, v) = m
            .post("/api/v1/endpoints/", json!({"endpointID":format!("ep-{t}"),"tenantName":t,"networkName":netname,"ipAddress":"10.1.2.7"}))
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["ipAddress"], "10.1.2.7");
    }
    // IPv6 overlap within a tenant too.
    let mut a = net("blue", "v6a", "10.9.0.0/24");
    a["ipv6Subnet"] = json!("2001:db8::/64");
    assert_eq!(m.post("/api/v1/networks/blue:v6a/", a).await.0, 200);
    let mut b = net("blue", "v6b", "10.9.1.0/24");
    b["ipv6Subnet"] = json!("2001:db8::/100");
    let (s, v) = m.post("/api/v1/networks/blue:v6b/", b).await;
    assert_eq!(s, 409);
    assert!(
        err(&v).contains("ipv6Subnet 2001:db8::/100 overlaps network blue:v6a"),
        "{v}"
    );
}

#[tokio::test]
async fn bad_input_is_400_and_names_the_problem() {
    let m = Netmaster::start();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.1.2.0/33"}),
            "invalid network default:n: subnet '10.1.2.0/33': prefix length 33 is outside 1-31",
        ),
        (
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.1.2.0/24","gateway":"10.1.3.1"}),
            "invalid network default:n: gateway '10.1.3.1': must be a host address inside subnet 10.1.2.0/24",
        ),
        (
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.1.2.0/24","pktTag":"x"}),
            "invalid JSON body: field pktTag: invalid type: string \"x\", expected i64 at line 1 column 47",
        ),
        (
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"gre","subnet":"10.1.2.0/24"}),
            "invalid network default:n: encap 'gre': must be one of: vlan, vxlan",
        ),
        (
            "/api/v1/networks/default:n/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.1.2.0/24","pktTag":20000}),
            "pktTag 20000: outside the global VXLAN range 1-10000 (change it with netctl global set -x/--vxlan-range)",
        ),
        (
            "/api/v1/networks/default:bad_name/",
            json!({"tenantName":"default","networkName":"bad_name","encap":"vxlan","subnet":"10.1.2.0/24"}),
            "invalid network default:bad_name: networkName 'bad_name': must be at most 64 characters of letters, digits and '-' in dot-separated labels, no label starting or ending with '-'",
        ),
        (
            "/api/v1/networks/nosuch:n/",
            json!({"tenantName":"nosuch","networkName":"n","encap":"vxlan","subnet":"10.1.2.0/24"}),
            "tenantName 'nosuch': tenant does not exist; create it first (netctl tenant create nosuch)",
        ),
        (
            "/api/v1/networks/default:x/",
            json!({"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.1.2.0/24"}),
            "the key in the URL, 'default:x', does not match the body's tenantName:networkName 'default:n'",
        ),
        (
            "/api/v1/endpointGroups/default:g/",
            json!({"tenantName":"default","groupName":"g","networkName":"nonet"}),
            "networkName 'nonet': network default:nonet does not exist",
        ),
        (
            "/api/v1/rules/default:p:1/",
            json!({"tenantName":"default","policyName":"p","ruleId":"1","direction":"sideways","action":"allow"}),
            "invalid rule default:p:1: direction 'sideways': must be one of: in, out",
        ),
        (
            "/api/v1/netprofiles/default:np/",
            json!({"tenantName":"default","profileName":"np","bandwidth":"10 tbps"}),
            "invalid netprofile default:np: bandwidth '10 tbps': unit 'tbps' is not one of kbps, mbps, gbps (or k, m, g, kb, mb, gb)",
        ),
        (
            "/api/v1/globals/global/",
            json!({"name":"global","vlans":"0-5000"}),
            "invalid global global: vlans '0-5000': range 0-5000 is outside 1-4094",
        ),
    ];
    for (path, body, want) in cases {
        let (s, v) = m.post(path, body).await;
        assert_eq!((s, err(&v)), (400, want.to_string()), "{path}");
    }
    // Malformed JSON and an empty body.
    model::install_default_tls_provider();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/v1/tenants/x/", m.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        err(&v).starts_with("invalid JSON body: key must be a string"),
        "{v}"
    );
    let r = http
        .post(format!("{}/api/v1/tenants/x/", m.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Oversized body.
    let big = format!(
        "{{\"tenantName\":\"x\",\"pad\":\"{}\"}}",
        "a".repeat(2 << 20)
    );
    let r = http
        .post(format!("{}/api/v1/tenants/x/", m.url))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert!(err(&v).contains("larger than the limit"), "{v}");
    // Unknown collection, missing object.
    let (s, v) = m.get("/api/v1/volumes/x/").await;
    assert_eq!(s, 404);
    assert!(err(&v).starts_with("unknown collection 'volumes'"), "{v}");
    assert_eq!(m.get("/api/v1/networks/default:none/").await.0, 404);
    // Nothing was half-written by any of the refusals.
    assert_eq!(m.get("/api/v1/networks/").await.1, json!([]));
    assert_eq!(
        m.get("/api/v1/tenants/").await.1.as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn immutable_fields_and_global_guards() {
    let m = Netmaster::start();
    create_net(&m, "default", "n1", "10.1.0.0/24").await;
    let (s, v) = m
        .post(
            "/api/v1/networks/default:n1/",
            net("default", "n1", "10.2.0.0/24"),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "network default:n1 cannot be changed (subnet differ); delete it and create it again"
    );
    let (s, v) = m
        .post(
            "/api/v1/globals/global/",
            json!({"name":"global","fwdMode":"routing"}),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "fwdMode cannot change from bridge to routing while 1 networks exist; delete them first"
    );
    let (s, v) = m
        .post(
            "/api/v1/globals/global/",
            json!({"name":"global","vxlans":"100-200"}),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        err(&v),
        "vxlans '100-200': VXLAN 1 is in use by network default:n1"
    );
    let (s, v) = m
        .post(
            "/api/v1/globals/global/",
            json!({"name":"global","vxlans":"1-200"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, i) = m.get("/api/v1/inspect/globals/global/").await;
    assert_eq!(i["Oper"]["vxlansInUse"], "1");
    assert_eq!(i["Oper"]["numNetworks"], 1);
    assert_eq!(m.delete("/api/v1/networks/default:n1/").await.0, 200);
    let (s, v) = m
        .post(
            "/api/v1/globals/global/",
            json!({"name":"global","fwdMode":"routing"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

/// North-south needs the private subnet, the gateways and the nodes' addresses apart: what
/// would mix them up is refused naming the other party, and a network without a gateway says
/// what its pods miss.
#[tokio::test]
async fn private_subnet_gateways_and_node_addresses_stay_apart() {
    let m = Netmaster::start();
    let c = m.client();
    let reg = |host: &str, vtep: &str| model::agent::NodeRegistration {
        hostname: host.into(),
        vtep_ip: vtep.into(),
        version: "test".into(),
    };
    c.register_node(&reg("host1", "10.1.2.1")).await.unwrap();
    let mut body = net("default", "n", "10.1.2.0/24");
    body["gateway"] = json!("10.1.2.1");
    let (s, v) = m.post("/api/v1/networks/default:n/", body.clone()).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        err(&v),
        "gateway '10.1.2.1': it is the VTEP address of node host1; the pods' gateway must not be a host's own address: pick another gateway"
    );
    body["gateway"] = json!("10.1.2.254");
    let (s, v) = m.post("/api/v1/networks/default:n/", body).await;
    assert_eq!(s, 200, "{v}");
    // A node coming with the gateway's address: 409 naming the network; its next heartbeat
    // with a good address registers it.
    let e = c
        .register_node(&reg("host2", "10.1.2.254"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(
        e.to_string().contains(
            "vtepIP '10.1.2.254' of node host2: it is the gateway of network default:n; give the node another VTEP address (netplugin --vtep-ip)"
        ),
        "{e}"
    );
    c.register_node(&reg("host2", "192.0.2.2")).await.unwrap();
    // The registered one renews as before.
    c.register_node(&reg("host1", "10.1.2.1")).await.unwrap();

    let (s, v) = m
        .post(
            "/api/v1/networks/default:p/",
            net("default", "p", "172.19.3.0/24"),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        err(&v).starts_with("subnet 172.19.3.0/24: overlaps the private subnet 172.19.0.0/16"),
        "{v}"
    );
    let (s, v) = m
        .post(
            "/api/v1/globals/global/",
            json!({"name":"global","pvtSubnet":"10.1.0.0/16"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        err(&v).starts_with(
            "pvtSubnet '10.1.0.0/16': overlaps the subnet 10.1.2.0/24 of network default:n;"
        ),
        "{v}"
    );

    // Without a gateway, the network's inspect says so in its notice, beside Contiv's fields.
    create_net(&m, "default", "nogw", "10.3.0.0/24").await;
    let (_, v) = m.get("/api/v1/inspect/networks/default:nogw/").await;
    assert!(
        v["Oper"]["notice"]
            .as_str()
            .is_some_and(|n| n
                .starts_with("the network has no gateway: its pods get no outside or host access")),
        "{v}"
    );
    let (_, v) = m.get("/api/v1/inspect/networks/default:n/").await;
    assert!(v["Oper"].get("notice").is_none(), "{v}");
}

/// One answer read off a raw connection.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    head: String,
    body: Value,
}

/// Sends `request` as is on a new connection and reads every answer until the server closes it.
async fn raw(m: &Netmaster, request: &[u8]) -> Vec<RawAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", m.port))
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("netmaster closes the connection")
        .ok();
    let mut out = Vec::new();
    let mut rest = &buf[..];
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_string();
        let status = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let body = &rest[end + 4..end + 4 + len];
        let body = serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()));
        out.push(RawAnswer { status, head, body });
        rest = &rest[end + 4 + len..];
    }
    out
}

/// Every refusal, including those axum and hyper make before a handler runs, is
/// `{"error": "..."}` (issue 17 item 9).
#[tokio::test]
async fn every_refusal_is_a_json_error() {
    let m = Netmaster::start();
    for (req, status, says) in [
        (
            "PATCH /api/v1/tenants/x/ HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            405,
            "does not take PATCH; it takes GET,HEAD,POST,PUT,DELETE",
        ),
        (
            "POST /version HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            405,
            "it takes GET",
        ),
        (
            "GET /api/v1/tenants/%FF/ HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
            400,
            "Invalid URL",
        ),
    ] {
        let a = raw(&m, req.as_bytes()).await;
        assert_eq!(a.len(), 1, "{req}: {a:?}");
        assert_eq!(a[0].status, status, "{req}: {a:?}");
        assert!(
            a[0].body["error"]
                .as_str()
                .is_some_and(|e| e.contains(says)),
            "{req}: {a:?}"
        );
    }
    // Refused by hyper before any handler: a URL over its limit, too many or too large headers,
    // a request line that is not HTTP.
    let long_url = format!(
        "GET /api/v1/tenants/{}/ HTTP/1.1\r\nhost: a\r\n\r\n",
        "x".repeat(70_000)
    );
    let many_headers = format!(
        "GET /version HTTP/1.1\r\nhost: a\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    let large_header = format!(
        "GET /version HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "v".repeat(600_000)
    );
    for (req, status, says) in [
        (long_url.as_str(), 414, "URL is longer"),
        (
            many_headers.as_str(),
            431,
            "headers are too large or too many",
        ),
        (
            large_header.as_str(),
            431,
            "headers are too large or too many",
        ),
        ("NOT HTTP AT ALL\r\n\r\n", 400, "not valid HTTP"),
    ] {
        let a = raw(&m, req.as_bytes()).await;
        let what = &req[..40.min(req.len())];
        assert_eq!(a.len(), 1, "{what}: {a:?}");
        assert_eq!(a[0].status, status, "{what}: {a:?}");
        assert!(
            a[0].body["error"]
                .as_str()
                .is_some_and(|e| e.contains(says)),
            "{what}: {a:?}"
        );
    }
    // A DELETE with a body: its answer, and the connection goes on to the next request.
    let a = raw(
        &m,
        b"DELETE /api/v1/endpoints/none/ HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello\
          GET /version HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!((a[0].status, &a[0].body), (200, &json!("none")));
    assert_eq!(a[1].status, 200, "{a:?}");
    assert!(a[1].body["Version"].is_string(), "{a:?}");
    assert!(!a[0].head.to_ascii_lowercase().contains("connection: close"));
}
