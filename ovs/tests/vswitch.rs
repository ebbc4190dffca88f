//! The Open_vSwitch helpers against a real ovsdb-server (and ovs-vswitchd for ofports).

mod common;

use common::Sandbox;
use ovs::{BridgeSpec, Change, Client, FailMode, OvsdbError, PortSpec, Vswitch};
use std::collections::BTreeMap;
use std::time::Duration;

async fn vswitch(sb: &Sandbox) -> Vswitch {
    Vswitch::new(Client::connect(sb.db_sock()).await.unwrap())
}

fn br0() -> BridgeSpec {
    BridgeSpec::new("br0")
        .datapath_type("netdev")
        .protocols(&["OpenFlow13", "OpenFlow14"])
        .fail_mode(FailMode::Secure)
        .other_config("disable-in-band", "true")
        .external_id("owner", "test")
}

fn get(sb: &Sandbox, table: &str, record: &str, column: &str) -> String {
    sb.vsctl(&["get", table, record, column])
}

#[tokio::test]
async fn ensure_bridge_creates_then_fixes_then_leaves_alone() {
    let sb = Sandbox::start();
    let vs = vswitch(&sb).await;

    assert_eq!(vs.ensure_bridge(&br0()).await.unwrap(), Change::Created);
    assert_eq!(sb.vsctl(&["list-br"]), "br0");
    assert_eq!(get(&sb, "bridge", "br0", "datapath_type"), "netdev");
    assert_eq!(
        get(&sb, "bridge", "br0", "protocols"),
        "[OpenFlow13, OpenFlow14]"
    );
    assert_eq!(get(&sb, "bridge", "br0", "fail_mode"), "secure");
    assert_eq!(
        get(&sb, "bridge", "br0", "other_config"),
        r#"{disable-in-band="true"}"#
    );
    assert_eq!(get(&sb, "bridge", "br0", "external_ids"), "{owner=test}");
    // Its local port, as ovs-vsctl add-br makes it.
    assert_eq!(get(&sb, "interface", "br0", "type"), "internal");

    assert_eq!(vs.ensure_bridge(&br0()).await.unwrap(), Change::Unchanged);

    // Someone changed it behind our back: ensure puts it back.
    sb.vsctl(&[
        "set",
        "bridge",
        "br0",
        "fail_mode=standalone",
        "protocols=OpenFlow10",
    ]);
    assert_eq!(vs.ensure_bridge(&br0()).await.unwrap(), Change::Updated);
    assert_eq!(get(&sb, "bridge", "br0", "fail_mode"), "secure");
    assert_eq!(
        get(&sb, "bridge", "br0", "protocols"),
        "[OpenFlow13, OpenFlow14]"
    );

    // A changed spec is applied exactly: unlisted keys go away.
    let changed = BridgeSpec::new("br0")
        .datapath_type("netdev")
        .protocols(&["OpenFlow14"])
        .external_id("owner", "other");
    assert_eq!(vs.ensure_bridge(&changed).await.unwrap(), Change::Updated);
    assert_eq!(get(&sb, "bridge", "br0", "fail_mode"), "[]");
    assert_eq!(get(&sb, "bridge", "br0", "other_config"), "{}");
    assert_eq!(get(&sb, "bridge", "br0", "external_ids"), "{owner=other}");
    assert_eq!(vs.ensure_bridge(&changed).await.unwrap(), Change::Unchanged);

    assert!(vs.del_bridge("br0").await.unwrap());
    assert!(!vs.del_bridge("br0").await.unwrap());
    assert_eq!(sb.vsctl(&["list-br"]), "");
    // The bridge's ports and interfaces went with it.
    assert_eq!(sb.vsctl(&["--columns=name", "list", "interface"]), "");
}

#[tokio::test]
async fn add_port_is_idempotent_and_converges() {
    let sb = Sandbox::start();
    let vs = vswitch(&sb).await;
    vs.ensure_bridge(&br0()).await.unwrap();

    let spec = PortSpec::new("vethab12")
        .external_id("container-id", "c1")
        .external_id("ip", "10.1.0.5")
        .tag(10);
    assert_eq!(vs.add_port("br0", &spec).await.unwrap(), Change::Created);
    assert_eq!(sb.vsctl(&["list-ports", "br0"]), "vethab12");
    assert_eq!(get(&sb, "port", "vethab12", "tag"), "10");
    assert_eq!(vs.add_port("br0", &spec).await.unwrap(), Change::Unchanged);

    let changed = PortSpec::new("vethab12")
        .iface_type("internal")
        .option("x", "1")
        .external_id("container-id", "c2");
    assert_eq!(vs.add_port("br0", &changed).await.unwrap(), Change::Updated);
    assert_eq!(get(&sb, "port", "vethab12", "tag"), "[]");
    assert_eq!(
        get(&sb, "port", "vethab12", "external_ids"),
        "{container-id=c2}"
    );
    assert_eq!(get(&sb, "interface", "vethab12", "type"), "internal");
    assert_eq!(get(&sb, "interface", "vethab12", "options"), "{x=\"1\"}");
    assert_eq!(
        vs.add_port("br0", &changed).await.unwrap(),
        Change::Unchanged
    );
    // Still one port, one interface.
    assert_eq!(sb.vsctl(&["list-ports", "br0"]), "vethab12");

    assert!(vs.del_port("br0", "vethab12").await.unwrap());
    assert!(!vs.del_port("br0", "vethab12").await.unwrap());
    assert_eq!(sb.vsctl(&["list-ports", "br0"]), "");
    assert_eq!(
        sb.vsctl(&["--columns=name", "find", "interface", "name=vethab12"]),
        ""
    );
}

#[tokio::test]
async fn new_ports_are_added_together_or_not_at_all() {
    let sb = Sandbox::start();
    let vs = vswitch(&sb).await;
    vs.ensure_bridge(&br0()).await.unwrap();
    let specs: Vec<PortSpec> = (1..=3)
        .map(|i| {
            PortSpec::new(format!("p{i}"))
                .external_id("k", "v")
                .ofport_request(40000 + i)
        })
        .collect();
    vs.add_new_ports("br0", &specs).await.unwrap();
    assert_eq!(sb.vsctl(&["list-ports", "br0"]), "p1\np2\np3");
    assert_eq!(get(&sb, "Interface", "p3", "ofport_request"), "40003");
    // One of them exists: nothing of the batch is added.
    let again = [
        PortSpec::new("p4").ofport_request(40004),
        PortSpec::new("p1").ofport_request(40005),
    ];
    let err = vs.add_new_ports("br0", &again).await.unwrap_err();
    assert!(
        err.to_string().contains("add 2 new ports to bridge br0"),
        "{err}"
    );
    // A number already requested: refused too.
    let taken = [PortSpec::new("p5").ofport_request(40002)];
    assert!(vs.add_new_ports("br0", &taken).await.is_err());
    assert_eq!(sb.vsctl(&["list-ports", "br0"]), "p1\np2\np3");
}

#[tokio::test]
async fn concurrent_adds_of_one_port_agree() {
    let sb = Sandbox::start();
    let vs = vswitch(&sb).await;
    vs.ensure_bridge(&br0()).await.unwrap();
    let spec = PortSpec::new("p1").external_id("k", "v");
    // Two separate connections racing: exactly one creates, the other finds it done.
    let other = vswitch(&sb).await;
    let (a, b) = tokio::join!(vs.add_port("br0", &spec), other.add_port("br0", &spec));
    let mut changes = vec![a.unwrap(), b.unwrap()];
    changes.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(changes, [Change::Created, Change::Unchanged]);
    assert_eq!(sb.vsctl(&["list-ports", "br0"]), "p1");
}

#[tokio::test]
async fn errors_name_the_object_and_the_action() {
    let sb = Sandbox::start();
    let vs = vswitch(&sb).await;

    let err = vs
        .add_port("nobr", &PortSpec::new("vethab12"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "add port vethab12 to bridge nobr: bridge nobr not found"
    );

    vs.ensure_bridge(&br0()).await.unwrap();
    vs.ensure_bridge(&BridgeSpec::new("br1")).await.unwrap();
    vs.add_port("br1", &PortSpec::new("p1")).await.unwrap();
    let err = vs.add_port("br0", &PortSpec::new("p1")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "add port p1 to bridge br0: port p1 is on bridge br1, not on bridge br0"
    );
    let err = vs.del_port("br0", "p1").await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("delete port p1 from bridge br0: port p1 is on bridge br1")
    );

    let err = vs
        .set_interface_options("nope", &BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "set options of interface nope: interface nope not found"
    );

    // A value the schema rejects surfaces the server's words.
    let err = vs
        .add_port("br0", &PortSpec::new("p2").tag(5000))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "add port p2 to bridge br0: operation 3 (insert into Port) failed: constraint violation"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn list_ports_reads_back_what_an_agent_stored() {
    let sb = Sandbox::start();
    let vs = vswitch(&sb).await;
    vs.ensure_bridge(&br0()).await.unwrap();
    let a = PortSpec::new("veth-a")
        .external_id("container-id", "c1")
        .external_id("endpoint-id", "e1")
        .tag(3);
    let b = PortSpec::new("vxlan0")
        .iface_type("vxlan")
        .option("remote_ip", "192.168.50.2")
        .option("key", "flow");
    vs.add_port("br0", &b).await.unwrap();
    vs.add_port("br0", &a).await.unwrap();
    // A port added by someone else shows up too.
    sb.vsctl(&["add-port", "br0", "other"]);

    let ports = vs.list_ports("br0").await.unwrap();
    let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["other", "veth-a", "vxlan0"]);
    assert_eq!(ports[1].external_ids, a.external_ids);
    assert_eq!(ports[1].tag, Some(3));
    assert_eq!(ports[1].iface_type, "");
    assert_eq!(ports[2].iface_type, "vxlan");
    assert_eq!(ports[2].options, b.options);
    assert_eq!(ports[2].tag, None);
    // No ovs-vswitchd here, so nothing has an ofport yet.
    assert!(ports.iter().all(|p| p.ofport.is_none()));

    let mut ids = BTreeMap::new();
    ids.insert("container-id".to_string(), "c9".to_string());
    vs.set_port_external_ids("veth-a", &ids).await.unwrap();
    let mut opts = b.options.clone();
    opts.insert("remote_ip".into(), "192.168.50.3".into());
    vs.set_interface_options("vxlan0", &opts).await.unwrap();
    let ports = vs.list_ports("br0").await.unwrap();
    assert_eq!(ports[1].external_ids, ids);
    assert_eq!(ports[2].options["remote_ip"], "192.168.50.3");

    let err = vs.list_ports("nobr").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "list ports of bridge nobr: bridge nobr not found"
    );
}

#[tokio::test]
async fn wait_ofport_with_a_real_vswitchd() {
    let sb = Sandbox::start_with_vswitchd();
    let vs = vswitch(&sb).await;
    vs.ensure_bridge(&br0()).await.unwrap();

    vs.add_port("br0", &PortSpec::new("int0").iface_type("internal"))
        .await
        .unwrap();
    let ofport = vs
        .wait_ofport("int0", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(ofport >= 1, "{ofport}");
    assert_eq!(get(&sb, "interface", "int0", "ofport"), ofport.to_string());
    let ports = vs.list_ports("br0").await.unwrap();
    assert_eq!(ports[0].ofport, Some(ofport));

    // ovs-vswitchd's complaint comes back as the error.
    vs.add_port("br0", &PortSpec::new("vx0").iface_type("vxlan"))
        .await
        .unwrap();
    let err = vs
        .wait_ofport("vx0", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, OvsdbError::Interface { .. }), "{err:?}");
    assert!(err.to_string().contains("remote_ip"), "{err}");

    // Nothing will ever give a port to an interface that does not exist.
    let err = vs
        .wait_ofport("ghost", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, OvsdbError::OfportTimeout { .. }), "{err:?}");
}

#[tokio::test]
async fn helpers_ride_out_a_server_restart() {
    let mut sb = Sandbox::start();
    let client = Client::connect_with(
        sb.db_sock(),
        ovs::ClientOptions {
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            probe_interval: None,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let vs = Vswitch::new(client);
    vs.ensure_bridge(&br0()).await.unwrap();

    // The add is in flight when the server dies; the helper retries once reconnected.
    sb.signal_ovsdb("STOP");
    let add = tokio::spawn({
        let vs = vs.clone();
        async move { vs.add_port("br0", &PortSpec::new("p1")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    sb.kill_ovsdb();
    sb.start_ovsdb();
    assert_eq!(add.await.unwrap().unwrap(), Change::Created);
    assert_eq!(sb.vsctl(&["list-ports", "br0"]), "p1");
}

#[tokio::test]
async fn ofport_request_is_honoured_and_guarded() {
    let sb = Sandbox::start_with_vswitchd();
    let vs = vswitch(&sb).await;
    vs.ensure_bridge(&br0()).await.unwrap();

    let spec = PortSpec::new("int0")
        .iface_type("internal")
        .ofport_request(40000);
    assert_eq!(vs.add_port("br0", &spec).await.unwrap(), Change::Created);
    // The number is what we asked for, in the upper half that ovs-vswitchd never picks itself.
    let ofport = vs
        .wait_ofport("int0", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ofport, 40000);
    let ports = vs.list_ports("br0").await.unwrap();
    assert_eq!(ports[0].ofport_request, Some(40000));
    assert_eq!(vs.add_port("br0", &spec).await.unwrap(), Change::Unchanged);

    // A second port asking for a held number is refused, and nothing of it is created.
    let err = vs
        .add_port(
            "br0",
            &PortSpec::new("int1")
                .iface_type("internal")
                .ofport_request(40000),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.root(), OvsdbError::OfportTaken { ofport: 40000, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("int1"), "{err}");
    assert_eq!(vs.list_ports("br0").await.unwrap().len(), 1);

    // A port made without a request holds its number too.
    vs.add_port("br0", &PortSpec::new("int2").iface_type("internal"))
        .await
        .unwrap();
    let auto = vs
        .wait_ofport("int2", Duration::from_secs(10))
        .await
        .unwrap();
    let err = vs
        .add_port(
            "br0",
            &PortSpec::new("int3")
                .iface_type("internal")
                .ofport_request(auto),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.root(), OvsdbError::OfportTaken { .. }),
        "{err:?}"
    );

    // Re-requesting another number for an existing port moves it.
    vs.add_port("br0", &spec.clone().ofport_request(40001))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&sb, "interface", "int0", "ofport") != "40001" {
        assert!(std::time::Instant::now() < deadline, "port not renumbered");
        std::thread::yield_now();
    }
}
