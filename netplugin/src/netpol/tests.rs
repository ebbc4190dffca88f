use super::*;
use serde_json::json;

fn pod(ns: &str, name: &str, node: &str, labels: serde_json::Value, ips: &[&str]) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": "serve-80", "containerPort": 80, "protocol": "TCP"},
                {"name": "serve-81-udp", "containerPort": 81, "protocol": "UDP"}
            ]}]},
            "status": {"podIPs": ips.iter().map(|i| json!({"ip": i})).collect::<Vec<_>>()}
        }))
        .unwrap(),
    )
}

fn ns(name: &str, labels: serde_json::Value) -> Arc<Namespace> {
    Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap())
}

fn policy(ns: &str, name: &str, spec: serde_json::Value) -> Arc<NetworkPolicy> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
            .unwrap(),
    )
}

/// Namespaces x, y (labelled ns=x/ns=y); pods a, b in each, a on n1, b on n2.
fn world() -> (Vec<Arc<Pod>>, Vec<Arc<Namespace>>) {
    (
        vec![
            pod(
                "x",
                "a",
                "n1",
                json!({"pod": "a"}),
                &["10.0.0.1", "fd00::1"],
            ),
            pod(
                "x",
                "b",
                "n2",
                json!({"pod": "b"}),
                &["10.0.0.2", "fd00::2"],
            ),
            pod("y", "a", "n1", json!({"pod": "a"}), &["10.0.0.3"]),
            pod("y", "b", "n2", json!({"pod": "b"}), &["10.0.0.4"]),
        ],
        vec![ns("x", json!({"ns": "x"})), ns("y", json!({"ns": "y"}))],
    )
}

fn run(policies: &[Arc<NetworkPolicy>], node: &str) -> (BTreeMap<String, PodPolicy>, Vec<String>) {
    let (pods, namespaces) = world();
    resolve(
        &Cluster {
            policies,
            pods: &pods,
            namespaces: &namespaces,
        },
        node,
    )
}

fn net(s: &str) -> Option<IpNet> {
    Some(s.parse().unwrap())
}

fn any(proto: Option<Proto>, ports: Option<(u16, u16)>, peer: Option<IpNet>) -> Allow {
    Allow { peer, proto, ports }
}

#[test]
fn selectors_follow_kubernetes_rules() {
    let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
    let sel = |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
    assert!(selects(&sel(json!({})), &labels).unwrap());
    assert!(selects(&sel(json!({"matchLabels": {"a": "1"}})), &labels).unwrap());
    assert!(!selects(&sel(json!({"matchLabels": {"a": "2"}})), &labels).unwrap());
    let expr = |op: &str, values: serde_json::Value| {
        sel(json!({"matchExpressions": [{"key": "b", "operator": op, "values": values}]}))
    };
    // NotIn and DoesNotExist select pods without the key.
    assert!(selects(&expr("NotIn", json!(["x"])), &labels).unwrap());
    assert!(selects(&expr("DoesNotExist", json!(null)), &labels).unwrap());
    assert!(!selects(&expr("In", json!(["x"])), &labels).unwrap());
    assert!(!selects(&expr("Exists", json!(null)), &labels).unwrap());
    assert!(selects(&expr("Gt", json!(["1"])), &labels).is_err());
}

#[test]
fn ip_blocks_lose_their_exceptions() {
    let cidr: IpNet = "10.0.0.0/16".parse().unwrap();
    let except: Vec<IpNet> = vec!["10.0.1.0/24".parse().unwrap()];
    let left = subtract(cidr, &except);
    assert_eq!(left.len(), 8, "{left:?}");
    let inside = |ip: &str| {
        left.iter()
            .any(|n| n.contains(&ip.parse::<IpAddr>().unwrap()))
    };
    assert!(inside("10.0.0.9") && inside("10.0.2.1") && inside("10.0.255.255"));
    assert!(!inside("10.0.1.7") && !inside("10.1.0.1"));
    // An except covering the block leaves nothing; one of another family changes nothing.
    assert!(subtract(cidr, &["10.0.0.0/8".parse().unwrap()]).is_empty());
    assert_eq!(subtract(cidr, &["fd00::/64".parse().unwrap()]), vec![cidr]);
}

#[test]
fn port_ranges_become_exact_masks() {
    for (lo, hi) in [(80, 80), (8000, 8080), (1, 65535), (81, 82), (1024, 2047)] {
        let masks = port_masks(lo, hi);
        for p in 0..=65535u16 {
            let hits = masks.iter().filter(|(v, m)| p & m == *v).count();
            assert_eq!(
                hits,
                usize::from(p >= lo && p <= hi),
                "{lo}-{hi} at {p}: {masks:?}"
            );
        }
    }
    assert_eq!(port_masks(1024, 2047), vec![(1024, 0xfc00)]);
}

#[test]
fn unselected_pods_are_open_and_an_empty_rule_list_denies_all() {
    let deny = policy(
        "x",
        "deny",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}}),
    );
    let (p, w) = run(&[deny], "n1");
    assert!(w.is_empty(), "{w:?}");
    // Only x/a (on n1, selected); y/a is in another namespace, x/b on another node.
    assert_eq!(p.keys().collect::<Vec<_>>(), ["x/a"]);
    assert_eq!(p["x/a"].ingress, Some(BTreeSet::new()));
    // No egress rules and no policyTypes: the policy is about ingress only.
    assert_eq!(p["x/a"].egress, None);
}

#[test]
fn peers_by_pod_namespace_and_both_and_policies_add_up() {
    let from_pod = policy(
        "x",
        "from-b",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    );
    let from_ns = policy(
        "x",
        "from-y",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
            "ports": [{"port": 80}]}]}),
    );
    let both = policy(
        "x",
        "from-y-b",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
            "podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"protocol": "UDP", "port": 81}]}]}),
    );
    let (p, _) = run(&[from_pod, from_ns, both], "n1");
    let got = p["x/a"].ingress.clone().unwrap();
    let tcp80 = (Some(Proto::Tcp), Some((80, 80)));
    let want = BTreeSet::from([
        // x/b, over both its addresses: IPv6 is no side door and no dead end.
        any(None, None, net("10.0.0.2/32")),
        any(None, None, net("fd00::2/128")),
        // Every pod of y, TCP 80 only.
        any(tcp80.0, tcp80.1, net("10.0.0.3/32")),
        any(tcp80.0, tcp80.1, net("10.0.0.4/32")),
        // y/b alone over UDP 81 (both selectors at once).
        any(Some(Proto::Udp), Some((81, 81)), net("10.0.0.4/32")),
    ]);
    assert_eq!(got, want);
}

#[test]
fn egress_named_ports_resolve_on_the_destination_and_ip_blocks_cut_exceptions() {
    let eg = policy(
        "x",
        "egress",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "egress": [
            {"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": "serve-80"}]},
            {"to": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
             "ports": [{"port": 8000, "endPort": 8080}]}
        ]}),
    );
    let (p, w) = run(&[eg], "n1");
    assert!(w.is_empty(), "{w:?}");
    let a = &p["x/a"];
    // Egress rules present without policyTypes: Ingress and Egress (the API server's default).
    assert_eq!(a.ingress, Some(BTreeSet::new()));
    let e = a.egress.clone().unwrap();
    assert!(e.contains(&any(Some(Proto::Tcp), Some((80, 80)), net("10.0.0.2/32"))));
    assert!(e.contains(&any(Some(Proto::Tcp), Some((80, 80)), net("fd00::2/128"))));
    assert!(e.contains(&any(
        Some(Proto::Tcp),
        Some((8000, 8080)),
        net("192.168.0.0/24")
    )));
    assert!(!e.iter().any(|x| x.peer == net("192.168.1.0/24")));
    assert_eq!(e.len(), 2 + 8);
}

#[test]
fn what_cannot_be_honoured_is_named_and_fails_closed() {
    let bad = policy(
        "x",
        "odd",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [
            {"ports": [{"protocol": "ICMP"}]},
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]},
            {"ports": [{"port": "serve-80", "endPort": 90}]}
        ]}),
    );
    let (p, w) = run(&[bad], "n1");
    // Each rule allows nothing (never everyone): x/a is isolated with nothing allowed.
    assert_eq!(p["x/a"].ingress, Some(BTreeSet::new()));
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w.iter().all(|l| l.starts_with("NetworkPolicy x/odd: ")),
        "{w:?}"
    );
    assert!(w[0].contains("ICMP") && w[1].contains("10.0.0.0/33") && w[2].contains("endPort"));
}

#[test]
fn flows_judge_the_pod_by_its_mac_and_drop_the_rest_of_its_ip() {
    let ep = Endpoint {
        endpoint_id: "e1".into(),
        container_name: "x/a".into(),
        mac_address: "02:02:0a:00:00:01".into(),
        encap: "vxlan".into(),
        ext_pkt_tag: 5,
        ..Default::default()
    };
    let local = BTreeMap::from([("e1".to_string(), (32768, ep))]);
    let np = NetpolInputs {
        enabled: true,
        synced: true,
        pvt_subnet: String::new(),
        pods: BTreeMap::from([(
            "x/a".to_string(),
            PodPolicy {
                ingress: Some(BTreeSet::from([
                    any(Some(Proto::Tcp), Some((80, 81)), net("10.0.0.2/32")),
                    any(Some(Proto::Sctp), None, None),
                ])),
                egress: None,
            },
        )]),
    };
    let f = flows(&np, &local);
    let f = &f[&cookie::netpol("e1")];
    let own = "reg5=1,metadata=0x5,dl_dst=02:02:0a:00:00:01";
    let got: Vec<(u8, u16, String, String)> = f
        .iter()
        .map(|x| (x.table, x.priority, x.matches.clone(), x.actions.clone()))
        .collect();
    let next = format!("resubmit(,{})", table::COMMIT);
    let t = table::NP_INGRESS;
    assert_eq!(
        got,
        vec![
            // Anyone (no peer) sorts first.
            (t, 100, format!("sctp,{own}"), next.clone()),
            (t, 100, format!("sctp6,{own}"), next.clone()),
            (
                t,
                100,
                format!("tcp,tp_dst=0x50/0xfffe,nw_src=10.0.0.2,{own}"),
                next.clone()
            ),
            // This host's own traffic (its transit addresses, through its router) passes.
            (
                t,
                100,
                format!("ip,nw_src=172.19.128.0/17,dl_src=02:00:00:11:11:11,{own}"),
                next.clone()
            ),
            (
                t,
                100,
                format!("ipv6,ipv6_src=fd63:6f6e:7469:76::/64,dl_src=02:00:00:11:11:11,{own}"),
                next.clone()
            ),
            (t, 10, format!("ip,{own}"), "drop".into()),
            (t, 10, format!("ipv6,{own}"), "drop".into()),
        ]
    );
    // A pod no policy selects has no NetworkPolicy flows at all.
    let open = NetpolInputs {
        pods: BTreeMap::new(),
        ..np
    };
    assert!(flows(&open, &local).is_empty());
}
