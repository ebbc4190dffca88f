//! The JSON-RPC client against a real ovsdb-server.

mod common;

use common::Sandbox;
use ovs::{
    Client, ClientOptions, Condition, Datum, Monitor, MonitorEvent, MonitorRequest, Mutation,
    Operation, OvsdbError, Row,
};
use std::time::Duration;

const DB: &str = "Open_vSwitch";

async fn next_event(monitor: &mut Monitor) -> MonitorEvent {
    tokio::time::timeout(Duration::from_secs(5), monitor.next())
        .await
        .expect("a monitor event within 5s")
        .expect("monitor stream still open")
}

fn names(updates: &ovs::TableUpdates, table: &str) -> Vec<String> {
    let mut names: Vec<String> = updates
        .table(table)
        .filter_map(|(_, u)| u.new.as_ref()?.string("name").map(str::to_string))
        .collect();
    names.sort();
    names
}

/// The raw operations `ovs-vsctl add-br NAME` performs.
fn add_bridge_ops(name: &str) -> Vec<Operation> {
    vec![
        Operation::insert_named(
            "Interface",
            "i",
            Row::new().with("name", name).with("type", "internal"),
        ),
        Operation::insert_named(
            "Port",
            "p",
            Row::new()
                .with("name", name)
                .with("interfaces", Datum::named_uuid("i")),
        ),
        Operation::insert_named(
            "Bridge",
            "b",
            Row::new()
                .with("name", name)
                .with("ports", Datum::named_uuid("p")),
        ),
        Operation::mutate(
            "Open_vSwitch",
            vec![],
            vec![Mutation::insert("bridges", Datum::named_uuid("b"))],
        ),
    ]
}

#[tokio::test]
async fn list_dbs_echo_and_schema() {
    let sb = Sandbox::start();
    let client = Client::connect(sb.db_sock()).await.unwrap();
    let dbs = client.list_dbs().await.unwrap();
    assert!(dbs.contains(&DB.to_string()), "{dbs:?}");
    client.echo().await.unwrap();
    let schema = client.get_schema(DB).await.unwrap();
    assert_eq!(schema["name"], DB);
}

#[tokio::test]
async fn connect_to_a_missing_socket_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.sock");
    let err = Client::connect(&path).await.unwrap_err();
    assert!(matches!(err, OvsdbError::Connect { .. }));
    assert!(err.to_string().contains("nothing.sock"), "{err}");
}

#[tokio::test]
async fn transact_and_select() {
    let sb = Sandbox::start();
    let client = Client::connect(sb.db_sock()).await.unwrap();

    let results = client.transact(DB, &add_bridge_ops("br0")).await.unwrap();
    let bridge_uuid = results[2].uuid.expect("insert returns the new uuid");
    assert_eq!(results[3].count, Some(1));
    assert_eq!(sb.vsctl(&["list-br"]), "br0");

    let rows = client
        .select(
            DB,
            "Bridge",
            vec![Condition::eq("name", "br0")],
            Some(&["_uuid", "name", "ports"]),
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].uuid(), Some(bridge_uuid));
    assert_eq!(rows[0].uuids("ports").len(), 1);

    // A rejected operation is reported by index and kind, with the server's error and details.
    let err = client
        .transact(
            DB,
            &[
                Operation::comment("bad tag"),
                Operation::update(
                    "Port",
                    vec![Condition::eq("name", "br0")],
                    Row::new().with("tag", 5000i64),
                ),
            ],
        )
        .await
        .unwrap_err();
    match &err {
        OvsdbError::Operation {
            index, op, error, ..
        } => {
            assert_eq!(
                (*index, op.as_str(), error.as_str()),
                (1, "update Port", "constraint violation")
            );
        }
        other => panic!("expected an operation error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("operation 1 (update Port) failed: constraint violation: 5000"),
        "{err}"
    );

    // A duplicate name passes every operation but fails the commit (the name index).
    let err = client
        .transact(DB, &add_bridge_ops("br0"))
        .await
        .unwrap_err();
    assert!(matches!(err, OvsdbError::Commit { .. }), "{err:?}");
    assert_eq!(sb.vsctl(&["list-br"]), "br0");

    // A request the server rejects as a whole.
    let err = client
        .transact("NoSuchDb", &[Operation::comment("x")])
        .await
        .unwrap_err();
    assert!(matches!(err, OvsdbError::Rpc { .. }), "{err:?}");
    assert!(err.to_string().contains("unknown database"), "{err}");
}

#[tokio::test]
async fn monitor_sees_a_port_added_by_another_connection() {
    let sb = Sandbox::start();
    let client = Client::connect(sb.db_sock()).await.unwrap();
    sb.vsctl(&["add-br", "br0"]);

    let mut monitor = client
        .monitor(
            DB,
            &[
                MonitorRequest::new("Port").columns(&["name", "external_ids"]),
                MonitorRequest::new("Interface").columns(&["name"]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(names(&monitor.initial, "Port"), ["br0"]);

    sb.vsctl(&[
        "add-port",
        "br0",
        "p1",
        "--",
        "set",
        "port",
        "p1",
        "external_ids:owner=test",
    ]);
    let MonitorEvent::Update(update) = next_event(&mut monitor).await else {
        panic!("expected an update");
    };
    assert_eq!(names(&update, "Port"), ["p1"]);
    assert_eq!(names(&update, "Interface"), ["p1"]);
    let (_, port) = update.table("Port").next().unwrap();
    assert!(port.old.is_none(), "an insert has no old row");
    assert_eq!(
        port.new.as_ref().unwrap().string_map("external_ids")["owner"],
        "test"
    );

    sb.vsctl(&["del-port", "br0", "p1"]);
    let MonitorEvent::Update(update) = next_event(&mut monitor).await else {
        panic!("expected an update");
    };
    let (_, port) = update.table("Port").next().unwrap();
    assert!(port.new.is_none(), "a delete has no new row");

    // Dropping the monitor cancels it on the server; the connection stays usable.
    drop(monitor);
    client.echo().await.unwrap();
}

#[tokio::test]
async fn answers_the_servers_echo_probes() {
    let sb = Sandbox::start();
    // ovsdb-server does not probe plain unix sockets by default; a Manager row with an
    // inactivity probe makes it probe this extra listener every second, and drop connections
    // that do not answer within another second.
    let probe_sock = sb.dir().join("probe.sock");
    sb.vsctl(&[
        "--id=@m",
        "create",
        "Manager",
        &format!("target=\"punix:{}\"", probe_sock.display()),
        "inactivity_probe=1000",
        "--",
        "add",
        "Open_vSwitch",
        ".",
        "manager_options",
        "@m",
    ]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !probe_sock.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "probe listener never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Our own probing off, so the only traffic is the server's echo requests.
    let client = Client::connect_with(
        &probe_sock,
        ClientOptions {
            probe_interval: None,
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let state = *client.state().borrow();
    assert!(state.connected);
    assert_eq!(state.generation, 1, "the server dropped an idle connection");
    client.echo().await.unwrap();
    let log = std::fs::read_to_string(sb.dir().join("ovsdb.log")).unwrap();
    assert!(!log.contains("inactivity probe"), "{log}");
}

fn fast_reconnect() -> ClientOptions {
    ClientOptions {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        probe_interval: None,
        ..ClientOptions::default()
    }
}

async fn wait_generation(client: &Client, generation: u64) {
    let mut state = client.state();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| s.connected && s.generation >= generation),
    )
    .await
    .expect("reconnected within 10s")
    .unwrap();
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let mut sb = Sandbox::start();
    let client = Client::connect_with(sb.db_sock(), fast_reconnect())
        .await
        .unwrap();
    let mut monitor = client
        .monitor(DB, &[MonitorRequest::new("Bridge").columns(&["name"])])
        .await
        .unwrap();

    // A request in flight when the server dies fails with a clear error.
    sb.signal_ovsdb("STOP");
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.transact(DB, &add_bridge_ops("lost")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    sb.kill_ovsdb();
    let err = in_flight.await.unwrap().unwrap_err();
    assert!(matches!(err, OvsdbError::ConnectionLost { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        err.to_string().contains("may or may not have been applied"),
        "{err}"
    );

    // A request made while the server is down waits for the reconnect.
    let queued = tokio::spawn({
        let client = client.clone();
        async move { client.transact(DB, &add_bridge_ops("br-queued")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sb.start_ovsdb();
    wait_generation(&client, 2).await;
    queued.await.unwrap().unwrap();

    // The monitor was set up again: first the full contents, then changes as before.
    let event = next_event(&mut monitor).await;
    let MonitorEvent::Resync(contents) = event else {
        panic!("expected a resync first, got {event:?}");
    };
    // The queued request was sent after the monitor, so it may or may not be in the contents.
    let resynced = names(&contents, "Bridge");
    sb.vsctl(&["add-br", "br1"]);
    let mut seen = resynced.clone();
    while !seen.contains(&"br1".to_string()) {
        match next_event(&mut monitor).await {
            MonitorEvent::Update(u) => seen.extend(names(&u, "Bridge")),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen.contains(&"br-queued".to_string()), "{seen:?}");
    assert_eq!(sb.vsctl(&["list-br"]), "br-queued\nbr1");
}

#[tokio::test]
async fn requests_time_out_on_a_hung_server() {
    let sb = Sandbox::start();
    let client = Client::connect_with(
        sb.db_sock(),
        ClientOptions {
            request_timeout: Duration::from_millis(300),
            probe_interval: None,
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    sb.signal_ovsdb("STOP");
    let started = std::time::Instant::now();
    let err = client.echo().await.unwrap_err();
    sb.signal_ovsdb("CONT");
    assert!(matches!(err, OvsdbError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The late reply to the timed-out request is ignored; the connection still works.
    client.echo().await.unwrap();
    assert_eq!(client.state().borrow().generation, 1);
}

#[tokio::test]
async fn probes_detect_a_hung_server_and_reconnect() {
    let sb = Sandbox::start();
    let client = Client::connect_with(
        sb.db_sock(),
        ClientOptions {
            probe_interval: Some(Duration::from_millis(200)),
            ..fast_reconnect()
        },
    )
    .await
    .unwrap();
    sb.signal_ovsdb("STOP");
    let started = std::time::Instant::now();
    let err = client.echo().await.unwrap_err();
    assert!(matches!(err, OvsdbError::ConnectionLost { .. }), "{err:?}");
    // Well before the 10 s request timeout: one probe interval idle, one without a reply.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    sb.signal_ovsdb("CONT");
    wait_generation(&client, 2).await;
    client.echo().await.unwrap();
}

#[tokio::test]
async fn without_reconnect_the_client_closes() {
    let mut sb = Sandbox::start();
    let client = Client::connect_with(
        sb.db_sock(),
        ClientOptions {
            reconnect: false,
            ..fast_reconnect()
        },
    )
    .await
    .unwrap();
    let mut monitor = client
        .monitor(DB, &[MonitorRequest::new("Bridge")])
        .await
        .unwrap();
    sb.kill_ovsdb();
    let ended = tokio::time::timeout(Duration::from_secs(5), monitor.next())
        .await
        .unwrap();
    assert!(ended.is_none(), "the monitor stream ends with the client");
    let err = client.echo().await.unwrap_err();
    assert!(matches!(err, OvsdbError::Closed { .. }), "{err:?}");
}
