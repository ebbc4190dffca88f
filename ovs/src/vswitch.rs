//! Typed helpers over the `Open_vSwitch` database: bridges, ports and interfaces.
//!
//! Each helper is idempotent and makes its change in one atomic transaction. Where the right
//! change depends on what is already there, the common case goes first as a transaction guarded
//! by `wait` assertions (a port add is one round trip when the port is new); if a guard fails,
//! the helper reads the current rows and writes only the difference. A helper that loses a race
//! with another writer starts over, a bounded number of times.

use crate::client::Client;
use crate::datum::{Datum, Row};
use crate::error::{Context, OvsdbError};
use crate::monitor::{MonitorEvent, MonitorRequest, TableUpdates};
use crate::ops::{Condition, Mutation, Operation, OperationResult};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tracing::debug;
use uuid::Uuid;

/// The database ovs-vswitchd reads its configuration from.
pub const DB: &str = "Open_vSwitch";

/// How many times a helper starts over after another writer changed the rows it was working on.
const MAX_ATTEMPTS: usize = 3;

/// What a bridge does when it has no OpenFlow controller (`Bridge.fail_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Acts as a learning switch. OVS's behaviour when `fail_mode` is unset.
    Standalone,
    /// Forwards only by the flows it was given.
    Secure,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Standalone => "standalone",
            FailMode::Secure => "secure",
        }
    }
}

/// The desired state of a bridge. Maps are applied exactly: keys not listed are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    pub name: String,
    /// `"netdev"` for the userspace datapath, `""` or `"system"` for the kernel one.
    pub datapath_type: String,
    /// OpenFlow versions, e.g. `OpenFlow13`, `OpenFlow14` (bundles need 1.4). Empty means OVS's
    /// default set.
    pub protocols: Vec<String>,
    /// `None` leaves the column unset, which OVS treats as standalone.
    pub fail_mode: Option<FailMode>,
    pub other_config: BTreeMap<String, String>,
    pub external_ids: BTreeMap<String, String>,
}

impl BridgeSpec {
    pub fn new(name: impl Into<String>) -> Self {
        BridgeSpec {
            name: name.into(),
            datapath_type: String::new(),
            protocols: Vec::new(),
            fail_mode: None,
            other_config: BTreeMap::new(),
            external_ids: BTreeMap::new(),
        }
    }

    pub fn datapath_type(mut self, datapath_type: impl Into<String>) -> Self {
        self.datapath_type = datapath_type.into();
        self
    }

    pub fn protocols(mut self, protocols: &[&str]) -> Self {
        self.protocols = protocols.iter().map(|p| p.to_string()).collect();
        self
    }

    pub fn fail_mode(mut self, fail_mode: FailMode) -> Self {
        self.fail_mode = Some(fail_mode);
        self
    }

    pub fn other_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.other_config.insert(key.into(), value.into());
        self
    }

    pub fn external_id(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.external_ids.insert(key.into(), value.into());
        self
    }
}

/// The desired state of a port with one interface of the same name. Maps are applied exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    /// `""` (a system device such as a veth), `"internal"`, `"vxlan"`, `"patch"`, ...
    pub iface_type: String,
    /// `Interface.options`, e.g. `remote_ip` and `key` for a tunnel.
    pub options: BTreeMap<String, String>,
    /// `Port.external_ids`: where an agent keeps the identity of what the port belongs to.
    pub external_ids: BTreeMap<String, String>,
    /// Access VLAN (`Port.tag`, 0-4095); `None` makes the port a trunk.
    pub tag: Option<u16>,
    /// The OpenFlow port number to give the interface (`Interface.ofport_request`), so flows
    /// naming it can be installed before ovs-vswitchd has set the port up. A new port is only
    /// created if no interface holds or requests this number (see [`Vswitch::add_port`]).
    /// `None` lets ovs-vswitchd choose (it picks from 1-32767 only).
    pub ofport_request: Option<u32>,
}

impl PortSpec {
    pub fn new(name: impl Into<String>) -> Self {
        PortSpec {
            name: name.into(),
            iface_type: String::new(),
            options: BTreeMap::new(),
            external_ids: BTreeMap::new(),
            tag: None,
            ofport_request: None,
        }
    }

    pub fn ofport_request(mut self, ofport: u32) -> Self {
        self.ofport_request = Some(ofport);
        self
    }

    pub fn iface_type(mut self, iface_type: impl Into<String>) -> Self {
        self.iface_type = iface_type.into();
        self
    }

    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    pub fn external_id(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.external_ids.insert(key.into(), value.into());
        self
    }

    pub fn tag(mut self, tag: u16) -> Self {
        self.tag = Some(tag);
        self
    }
}

/// A port as found in the database, with its interface (the one of the same name, or else the
/// first one for a multi-interface port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    /// The OpenFlow port number; `None` until ovs-vswitchd has assigned one, or if it failed.
    pub ofport: Option<u32>,
    pub iface_type: String,
    pub options: BTreeMap<String, String>,
    pub external_ids: BTreeMap<String, String>,
    pub tag: Option<u16>,
    /// ovs-vswitchd's complaint about the interface (`Interface.error`), if any.
    pub error: Option<String>,
    /// The number asked for (`Interface.ofport_request`), if any.
    pub ofport_request: Option<u32>,
}

/// What an idempotent helper did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// The Open_vSwitch helpers, over a shared [`Client`].
#[derive(Debug, Clone)]
pub struct Vswitch {
    client: Client,
}

impl Vswitch {
    pub fn new(client: Client) -> Self {
        Vswitch { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs a transaction, once more if the connection dropped before the reply. Every helper's
    /// transaction is safe to repeat: a guard fails or the update is a no-op the second time.
    async fn transact(&self, ops: &[Operation]) -> Result<Vec<OperationResult>, OvsdbError> {
        match self.client.transact(DB, ops).await {
            Err(e @ OvsdbError::ConnectionLost { .. }) => {
                debug!(error = %e, "retrying transaction after reconnect");
                self.client.transact(DB, ops).await
            }
            other => other,
        }
    }

    async fn select(
        &self,
        table: &str,
        condition: Condition,
        columns: &[&str],
    ) -> Result<Vec<Row>, OvsdbError> {
        let op = Operation::select_columns(table, vec![condition], columns);
        Ok(self
            .transact(&[op])
            .await?
            .swap_remove(0)
            .rows
            .unwrap_or_default())
    }

    /// Creates the root `Open_vSwitch` row if the database has none (what `ovs-vsctl init` does).
    pub async fn init(&self) -> Result<(), OvsdbError> {
        match self.transact(&init_ops()).await {
            Ok(_) => Ok(()),
            Err(OvsdbError::Operation { index: 0, .. }) => Ok(()),
            Err(e) => Err(e).context(|| "initialize the Open_vSwitch database".into()),
        }
    }

    /// Creates the bridge (with its local internal port, as `ovs-vsctl add-br` does) or brings
    /// an existing one to `spec`.
    pub async fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<Change, OvsdbError> {
        self.ensure_bridge_inner(spec)
            .await
            .context(|| format!("ensure bridge {}", spec.name))
    }

    async fn ensure_bridge_inner(&self, spec: &BridgeSpec) -> Result<Change, OvsdbError> {
        for _ in 0..MAX_ATTEMPTS {
            match self.transact(&create_bridge_ops(spec)).await {
                Ok(_) => return Ok(Change::Created),
                Err(OvsdbError::Operation { index: 0, .. }) => {
                    return Err(OvsdbError::NotFound {
                        kind: "Open_vSwitch root row",
                        name: "(run ovs-vsctl init)".into(),
                    });
                }
                // The bridge exists: compare and fix below.
                Err(OvsdbError::Operation { index: 1, .. }) => {}
                Err(e) => return Err(e),
            }
            let rows = self
                .select(
                    "Bridge",
                    Condition::eq("name", spec.name.as_str()),
                    BRIDGE_COLUMNS,
                )
                .await?;
            let Some(current) = rows.first() else {
                continue; // Deleted in between: create it.
            };
            let uuid = row_uuid(current, "Bridge")?;
            let Some(ops) = update_bridge_ops(uuid, spec, current) else {
                return Ok(Change::Unchanged);
            };
            if self.transact(&ops).await?[0].count == Some(1) {
                return Ok(Change::Updated);
            }
        }
        Err(concurrent("bridge", &spec.name))
    }

    /// Deletes the bridge and its ports. Returns false if there was no such bridge.
    pub async fn del_bridge(&self, name: &str) -> Result<bool, OvsdbError> {
        self.del_bridge_inner(name)
            .await
            .context(|| format!("delete bridge {name}"))
    }

    async fn del_bridge_inner(&self, name: &str) -> Result<bool, OvsdbError> {
        for _ in 0..MAX_ATTEMPTS {
            let rows = self
                .select("Bridge", Condition::eq("name", name), &["_uuid"])
                .await?;
            let Some(row) = rows.first() else {
                return Ok(false);
            };
            match self
                .transact(&delete_bridge_ops(name, row_uuid(row, "Bridge")?))
                .await
            {
                Ok(_) => return Ok(true),
                // Gone in between (maybe re-created under a new uuid): look again.
                Err(OvsdbError::Operation { index: 0, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(concurrent("bridge", name))
    }

    /// Adds the port, or brings an existing one to `spec`. Fails if the bridge does not exist or
    /// if the port is on another bridge. With `spec.ofport_request`, a new port is created only
    /// if no interface holds or requests that number, checked in the same transaction
    /// ([`OvsdbError::OfportTaken`] otherwise): the caller may then install flows for the number
    /// at once. (Interfaces of every bridge count: stricter than OVS, whose numbers are per
    /// bridge, but one condition.)
    pub async fn add_port(&self, bridge: &str, spec: &PortSpec) -> Result<Change, OvsdbError> {
        self.add_port_inner(bridge, spec)
            .await
            .context(|| format!("add port {} to bridge {bridge}", spec.name))
    }

    async fn add_port_inner(&self, bridge: &str, spec: &PortSpec) -> Result<Change, OvsdbError> {
        for _ in 0..MAX_ATTEMPTS {
            match self.transact(&create_port_ops(bridge, spec)).await {
                Ok(_) => return Ok(Change::Created),
                Err(OvsdbError::Operation { index: 0, .. }) => {
                    return Err(not_found("bridge", bridge));
                }
                // The port exists: compare and fix below.
                Err(OvsdbError::Operation { index: 1, .. }) => {}
                Err(OvsdbError::Operation { index: 2 | 3, .. })
                    if spec.ofport_request.is_some() =>
                {
                    return Err(OvsdbError::OfportTaken {
                        iface: spec.name.clone(),
                        ofport: spec.ofport_request.unwrap_or_default(),
                    });
                }
                Err(e) => return Err(e),
            }
            let results = self.transact(&port_state_query(&spec.name)).await?;
            let Some(state) = PortState::from_results(&spec.name, &results)? else {
                continue; // Deleted in between: create it.
            };
            if state.bridge != bridge {
                return Err(OvsdbError::PortOnOtherBridge {
                    port: spec.name.clone(),
                    expected: bridge.to_string(),
                    actual: state.bridge,
                });
            }
            if state.iface.is_none() {
                // Made by someone else (a bond, say); we will not guess which interface to fix.
                return Err(OvsdbError::Inconsistent(format!(
                    "port {} exists without an interface of the same name",
                    spec.name
                )));
            }
            let Some(ops) = update_port_ops(&state, spec) else {
                return Ok(Change::Unchanged);
            };
            if self
                .transact(&ops)
                .await?
                .iter()
                .all(|r| r.count != Some(0))
            {
                return Ok(Change::Updated);
            }
        }
        Err(concurrent("port", &spec.name))
    }

    /// Adds new ports in one transaction (ovs-vswitchd reconfigures the bridge once for all of
    /// them). All or nothing: fails if any of them exists or any requested OpenFlow port
    /// number is taken.
    pub async fn add_new_ports(&self, bridge: &str, specs: &[PortSpec]) -> Result<(), OvsdbError> {
        let ops: Vec<Operation> = specs
            .iter()
            .enumerate()
            .flat_map(|(n, spec)| create_port_ops_n(bridge, spec, n))
            .collect();
        self.transact(&ops)
            .await
            .map(|_| ())
            .context(|| format!("add {} new ports to bridge {bridge}", specs.len()))
    }

    /// Removes the port from the bridge (its Port and Interface rows go with it). Returns false
    /// if there was no such port; fails if the port is on another bridge.
    pub async fn del_port(&self, bridge: &str, name: &str) -> Result<bool, OvsdbError> {
        self.del_port_inner(bridge, name)
            .await
            .context(|| format!("delete port {name} from bridge {bridge}"))
    }

    async fn del_port_inner(&self, bridge: &str, name: &str) -> Result<bool, OvsdbError> {
        for _ in 0..MAX_ATTEMPTS {
            let results = self.transact(&port_state_query(name)).await?;
            let Some(state) = PortState::from_results(name, &results)? else {
                return Ok(false);
            };
            if state.bridge != bridge {
                return Err(OvsdbError::PortOnOtherBridge {
                    port: name.to_string(),
                    expected: bridge.to_string(),
                    actual: state.bridge,
                });
            }
            let results = self
                .transact(&delete_port_ops(
                    bridge,
                    state.bridge_uuid,
                    state.port_uuid,
                    name,
                ))
                .await?;
            if results[0].count == Some(1) {
                return Ok(true);
            }
        }
        Err(concurrent("port", name))
    }

    /// The bridge's ports (without its local port), sorted by name: what an agent reads back
    /// after a restart.
    pub async fn list_ports(&self, bridge: &str) -> Result<Vec<PortInfo>, OvsdbError> {
        let results = self
            .transact(&list_ports_query(bridge))
            .await
            .context(|| format!("list ports of bridge {bridge}"))?;
        ports_from_results(bridge, &results).context(|| format!("list ports of bridge {bridge}"))
    }

    /// Replaces `Interface.options` of the interface.
    pub async fn set_interface_options(
        &self,
        iface: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<(), OvsdbError> {
        let ops = [Operation::update(
            "Interface",
            vec![Condition::eq("name", iface)],
            Row::new().with("options", options),
        )];
        self.update_one(&ops, "interface", iface)
            .await
            .context(|| format!("set options of interface {iface}"))
    }

    /// Replaces `Port.external_ids` of the port.
    pub async fn set_port_external_ids(
        &self,
        port: &str,
        external_ids: &BTreeMap<String, String>,
    ) -> Result<(), OvsdbError> {
        let ops = [Operation::update(
            "Port",
            vec![Condition::eq("name", port)],
            Row::new().with("external_ids", external_ids),
        )];
        self.update_one(&ops, "port", port)
            .await
            .context(|| format!("set external ids of port {port}"))
    }

    async fn update_one(
        &self,
        ops: &[Operation],
        kind: &'static str,
        name: &str,
    ) -> Result<(), OvsdbError> {
        match self.transact(ops).await?[0].count {
            Some(0) => Err(not_found(kind, name)),
            _ => Ok(()),
        }
    }

    /// Waits until ovs-vswitchd has given the interface an OpenFlow port number, and returns it.
    /// If ovs-vswitchd reports an error for the interface (its `error` column, e.g. "could not
    /// open network device veth1 (No such device)"), that error is returned at once: create the
    /// device before adding the port.
    pub async fn wait_ofport(&self, iface: &str, timeout: Duration) -> Result<u32, OvsdbError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let action = || format!("wait for the ofport of interface {iface}");
        // A monitor rather than polling: ovs-vswitchd writes the ofport once, and the update
        // reaches us as soon as it commits.
        let mut monitor = self
            .client
            .monitor(
                DB,
                &[MonitorRequest::new("Interface").columns(&["name", "ofport", "error"])],
            )
            .await
            .context(action)?;
        let mut rows: HashMap<Uuid, Row> = HashMap::new();
        apply_updates(&mut rows, &monitor.initial);
        loop {
            if let Some(row) = rows.values().find(|r| r.string("name") == Some(iface)) {
                match ofport_status(row) {
                    OfportStatus::Assigned(n) => return Ok(n),
                    OfportStatus::Failed(error) => {
                        return Err(OvsdbError::Interface {
                            iface: iface.to_string(),
                            error,
                        });
                    }
                    OfportStatus::Pending => {}
                }
            }
            match tokio::time::timeout_at(deadline, monitor.next()).await {
                Err(_) => {
                    return Err(OvsdbError::OfportTimeout {
                        iface: iface.to_string(),
                        timeout,
                    });
                }
                Ok(None) => {
                    return Err(OvsdbError::Closed {
                        path: self.client.path().to_path_buf(),
                        method: "monitor".into(),
                    })
                    .context(action);
                }
                Ok(Some(MonitorEvent::Update(tu))) => apply_updates(&mut rows, &tu),
                Ok(Some(MonitorEvent::Resync(tu))) => {
                    rows.clear();
                    apply_updates(&mut rows, &tu);
                }
            }
        }
    }
}

fn not_found(kind: &'static str, name: &str) -> OvsdbError {
    OvsdbError::NotFound {
        kind,
        name: name.to_string(),
    }
}

fn concurrent(kind: &str, name: &str) -> OvsdbError {
    OvsdbError::Inconsistent(format!(
        "{kind} {name} kept changing under concurrent writers; gave up after {MAX_ATTEMPTS} attempts"
    ))
}

fn row_uuid(row: &Row, table: &str) -> Result<Uuid, OvsdbError> {
    row.uuid()
        .ok_or_else(|| OvsdbError::Inconsistent(format!("{table} row without _uuid")))
}

/// Keeps a table's rows current from monitor updates (`new` carries every monitored column).
fn apply_updates(rows: &mut HashMap<Uuid, Row>, updates: &TableUpdates) {
    for (uuid, update) in updates.table("Interface") {
        match &update.new {
            Some(new) => {
                rows.insert(*uuid, new.clone());
            }
            None => {
                rows.remove(uuid);
            }
        }
    }
}

enum OfportStatus {
    Assigned(u32),
    Failed(String),
    Pending,
}

fn ofport_status(row: &Row) -> OfportStatus {
    let error = row.string("error").map(str::to_string);
    match row.integer("ofport") {
        Some(n) if n > 0 => match u32::try_from(n) {
            Ok(n) => OfportStatus::Assigned(n),
            Err(_) => OfportStatus::Failed(format!("ofport {n} out of range")),
        },
        // ovs-vswitchd writes -1 when it could not add the interface, with the reason in `error`.
        Some(-1) => OfportStatus::Failed(
            error.unwrap_or_else(|| "ovs-vswitchd could not add it (ofport -1)".into()),
        ),
        _ => match error {
            Some(e) => OfportStatus::Failed(e),
            None => OfportStatus::Pending,
        },
    }
}

// ---- transaction builders (pure, snapshot-tested) ----

const BRIDGE_COLUMNS: &[&str] = &[
    "_uuid",
    "datapath_type",
    "protocols",
    "fail_mode",
    "other_config",
    "external_ids",
];

fn init_ops() -> Vec<Operation> {
    vec![
        Operation::assert_absent("Open_vSwitch", vec![]),
        Operation::insert("Open_vSwitch", Row::new()),
    ]
}

/// Guards: 0 = the root row exists, 1 = the bridge does not.
fn create_bridge_ops(spec: &BridgeSpec) -> Vec<Operation> {
    let mut bridge = bridge_settings(spec);
    bridge.insert("name", spec.name.as_str());
    bridge.insert("ports", Datum::named_uuid("port"));
    vec![
        Operation::assert_exists("Open_vSwitch", vec![]),
        Operation::assert_absent("Bridge", vec![Condition::eq("name", spec.name.as_str())]),
        // Every bridge has a local port of its own name, as `ovs-vsctl add-br` creates it.
        Operation::insert_named(
            "Interface",
            "iface",
            Row::new()
                .with("name", spec.name.as_str())
                .with("type", "internal"),
        ),
        Operation::insert_named(
            "Port",
            "port",
            Row::new()
                .with("name", spec.name.as_str())
                .with("interfaces", Datum::named_uuid("iface")),
        ),
        Operation::insert_named("Bridge", "bridge", bridge),
        Operation::mutate(
            "Open_vSwitch",
            vec![],
            vec![Mutation::insert("bridges", Datum::named_uuid("bridge"))],
        ),
        Operation::comment(format!("ovs-rs: ensure bridge {}", spec.name)),
    ]
}

/// The columns of a bridge that a [`BridgeSpec`] controls.
fn bridge_settings(spec: &BridgeSpec) -> Row {
    Row::new()
        .with("datapath_type", spec.datapath_type.as_str())
        .with("protocols", Datum::set(spec.protocols.iter()))
        .with(
            "fail_mode",
            Datum::optional(spec.fail_mode.map(FailMode::as_str)),
        )
        .with("other_config", &spec.other_config)
        .with("external_ids", &spec.external_ids)
}

/// `None` when the bridge already matches `spec`; else the update of the differing columns.
fn update_bridge_ops(uuid: Uuid, spec: &BridgeSpec, current: &Row) -> Option<Vec<Operation>> {
    let mut current_protocols = current.strings("protocols");
    current_protocols.sort();
    let mut wanted_protocols = spec.protocols.clone();
    wanted_protocols.sort();
    wanted_protocols.dedup();
    let differs = |column: &str| -> bool {
        match column {
            "datapath_type" => current.string(column).unwrap_or("") != spec.datapath_type,
            "protocols" => current_protocols != wanted_protocols,
            "fail_mode" => current.string(column) != spec.fail_mode.map(FailMode::as_str),
            "other_config" => current.string_map(column) != spec.other_config,
            "external_ids" => current.string_map(column) != spec.external_ids,
            _ => unreachable!("not a bridge setting: {column}"),
        }
    };
    let changes: Row = bridge_settings(spec)
        .0
        .into_iter()
        .filter(|(column, _)| differs(column))
        .collect();
    (!changes.is_empty()).then(|| {
        vec![
            Operation::update("Bridge", vec![Condition::uuid(uuid)], changes),
            Operation::comment(format!("ovs-rs: update bridge {}", spec.name)),
        ]
    })
}

/// Guard: 0 = the bridge still exists.
fn delete_bridge_ops(name: &str, uuid: Uuid) -> Vec<Operation> {
    // Bridge is not a root table: once the root row no longer refers to it, the bridge and
    // everything only it refers to (ports, interfaces, ...) are garbage collected at commit.
    vec![
        Operation::assert_exists("Bridge", vec![Condition::uuid(uuid)]),
        Operation::mutate(
            "Open_vSwitch",
            vec![],
            vec![Mutation::delete("bridges", Datum::uuid(uuid))],
        ),
        Operation::comment(format!("ovs-rs: delete bridge {name}")),
    ]
}

/// Guards: 0 = the bridge exists, 1 = the port does not; with an ofport request, 2 = no
/// interface requests that number, 3 = none holds it.
fn create_port_ops(bridge: &str, spec: &PortSpec) -> Vec<Operation> {
    create_port_ops_n(bridge, spec, 0)
}

/// [`create_port_ops`] with the rows' names numbered `n`, so that several go in one
/// transaction.
fn create_port_ops_n(bridge: &str, spec: &PortSpec, n: usize) -> Vec<Operation> {
    // The first keeps the plain names a lone port's transaction always had.
    let suffix = if n == 0 { String::new() } else { n.to_string() };
    let (iface_name, port_name) = (format!("iface{suffix}"), format!("port{suffix}"));
    let mut port = Row::new()
        .with("name", spec.name.as_str())
        .with("interfaces", Datum::named_uuid(iface_name.as_str()))
        .with("external_ids", &spec.external_ids);
    if let Some(tag) = spec.tag {
        port.insert("tag", i64::from(tag));
    }
    let mut iface = Row::new()
        .with("name", spec.name.as_str())
        .with("type", spec.iface_type.as_str())
        .with("options", &spec.options);
    let mut ops = vec![
        Operation::assert_exists("Bridge", vec![Condition::eq("name", bridge)]),
        Operation::assert_absent("Port", vec![Condition::eq("name", spec.name.as_str())]),
    ];
    if let Some(n) = spec.ofport_request {
        iface.insert("ofport_request", i64::from(n));
        ops.push(Operation::assert_absent(
            "Interface",
            vec![Condition::eq("ofport_request", i64::from(n))],
        ));
        ops.push(Operation::assert_absent(
            "Interface",
            vec![Condition::eq("ofport", i64::from(n))],
        ));
    }
    ops.extend([
        Operation::insert_named("Interface", iface_name.as_str(), iface),
        Operation::insert_named("Port", port_name.as_str(), port),
        Operation::mutate(
            "Bridge",
            vec![Condition::eq("name", bridge)],
            vec![Mutation::insert(
                "ports",
                Datum::named_uuid(port_name.as_str()),
            )],
        ),
        Operation::comment(format!("ovs-rs: add port {} to bridge {bridge}", spec.name)),
    ]);
    ops
}

/// Reads a port, its interface of the same name, and the bridges (to find the port's owner).
fn port_state_query(name: &str) -> Vec<Operation> {
    vec![
        Operation::select_columns(
            "Port",
            vec![Condition::eq("name", name)],
            &["_uuid", "interfaces", "external_ids", "tag"],
        ),
        Operation::select_columns(
            "Interface",
            vec![Condition::eq("name", name)],
            &["_uuid", "type", "options", "ofport_request"],
        ),
        Operation::select_columns("Bridge", vec![], &["_uuid", "name", "ports"]),
    ]
}

/// A port as [`port_state_query`] found it.
#[derive(Debug)]
struct PortState {
    port_uuid: Uuid,
    bridge: String,
    bridge_uuid: Uuid,
    port: Row,
    /// The port's interface of the same name, if it has one.
    iface: Option<(Uuid, Row)>,
}

impl PortState {
    fn from_results(name: &str, results: &[OperationResult]) -> Result<Option<Self>, OvsdbError> {
        let Some(port) = results[0].rows().first() else {
            return Ok(None);
        };
        let port_uuid = row_uuid(port, "Port")?;
        let iface = results[1]
            .rows()
            .first()
            .map(|r| Ok::<_, OvsdbError>((row_uuid(r, "Interface")?, r.clone())))
            .transpose()?
            .filter(|(uuid, _)| port.uuids("interfaces").contains(uuid));
        let owner = results[2]
            .rows()
            .iter()
            .find(|b| b.uuids("ports").contains(&port_uuid))
            .ok_or_else(|| OvsdbError::Inconsistent(format!("port {name} is on no bridge")))?;
        Ok(Some(PortState {
            port_uuid,
            bridge: owner.string("name").unwrap_or_default().to_string(),
            bridge_uuid: row_uuid(owner, "Bridge")?,
            port: port.clone(),
            iface,
        }))
    }
}

/// `None` when the port already matches `spec` (or has no interface of its name, which the
/// caller rules out first); else updates of the differing columns.
fn update_port_ops(state: &PortState, spec: &PortSpec) -> Option<Vec<Operation>> {
    let mut ops = Vec::new();
    let (iface_uuid, iface) = state.iface.as_ref()?;
    // OVS treats an empty type as "system".
    let norm = |t: &str| if t == "system" { "" } else { t }.to_string();
    let mut iface_changes = Row::new();
    if norm(iface.string("type").unwrap_or("")) != norm(&spec.iface_type) {
        iface_changes.insert("type", spec.iface_type.as_str());
    }
    if iface.string_map("options") != spec.options {
        iface_changes.insert("options", &spec.options);
    }
    // Only a request changes the number: a port made without one keeps what OVS gave it.
    if let Some(n) = spec.ofport_request
        && iface.integer("ofport_request") != Some(i64::from(n))
    {
        iface_changes.insert("ofport_request", i64::from(n));
    }
    if !iface_changes.is_empty() {
        ops.push(Operation::update(
            "Interface",
            vec![Condition::uuid(*iface_uuid)],
            iface_changes,
        ));
    }
    let mut port_changes = Row::new();
    if state.port.string_map("external_ids") != spec.external_ids {
        port_changes.insert("external_ids", &spec.external_ids);
    }
    if state.port.integer("tag") != spec.tag.map(i64::from) {
        port_changes.insert("tag", Datum::optional(spec.tag.map(i64::from)));
    }
    if !port_changes.is_empty() {
        ops.push(Operation::update(
            "Port",
            vec![Condition::uuid(state.port_uuid)],
            port_changes,
        ));
    }
    (!ops.is_empty()).then(|| {
        ops.push(Operation::comment(format!(
            "ovs-rs: update port {} on bridge {}",
            spec.name, state.bridge
        )));
        ops
    })
}

fn delete_port_ops(bridge: &str, bridge_uuid: Uuid, port_uuid: Uuid, name: &str) -> Vec<Operation> {
    // Port and Interface are not root tables: dropping the bridge's reference deletes both.
    vec![
        Operation::mutate(
            "Bridge",
            vec![Condition::uuid(bridge_uuid)],
            vec![Mutation::delete("ports", Datum::uuid(port_uuid))],
        ),
        Operation::comment(format!("ovs-rs: delete port {name} from bridge {bridge}")),
    ]
}

fn list_ports_query(bridge: &str) -> Vec<Operation> {
    vec![
        Operation::select_columns("Bridge", vec![Condition::eq("name", bridge)], &["ports"]),
        Operation::select_columns(
            "Port",
            vec![],
            &["_uuid", "name", "interfaces", "tag", "external_ids"],
        ),
        Operation::select_columns(
            "Interface",
            vec![],
            &[
                "_uuid",
                "name",
                "type",
                "options",
                "ofport",
                "ofport_request",
                "error",
            ],
        ),
    ]
}

fn ports_from_results(
    bridge: &str,
    results: &[OperationResult],
) -> Result<Vec<PortInfo>, OvsdbError> {
    let bridge_row = results[0]
        .rows()
        .first()
        .ok_or_else(|| not_found("bridge", bridge))?;
    let wanted = bridge_row.uuids("ports");
    let ifaces: HashMap<Uuid, &Row> = results[2]
        .rows()
        .iter()
        .filter_map(|r| Some((r.uuid()?, r)))
        .collect();
    let mut ports: Vec<PortInfo> = results[1]
        .rows()
        .iter()
        .filter(|p| p.uuid().is_some_and(|u| wanted.contains(&u)))
        .filter(|p| p.string("name") != Some(bridge))
        .map(|p| {
            let name = p.string("name").unwrap_or_default().to_string();
            let members: Vec<&Row> = p
                .uuids("interfaces")
                .iter()
                .filter_map(|u| ifaces.get(u).copied())
                .collect();
            let iface = members
                .iter()
                .find(|i| i.string("name") == Some(name.as_str()))
                .or(members.first());
            PortInfo {
                ofport: iface
                    .and_then(|i| i.integer("ofport"))
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0),
                iface_type: iface
                    .and_then(|i| i.string("type"))
                    .unwrap_or_default()
                    .to_string(),
                options: iface.map(|i| i.string_map("options")).unwrap_or_default(),
                error: iface.and_then(|i| i.string("error")).map(str::to_string),
                ofport_request: iface
                    .and_then(|i| i.integer("ofport_request"))
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0),
                external_ids: p.string_map("external_ids"),
                tag: p.integer("tag").and_then(|t| u16::try_from(t).ok()),
                name,
            }
        })
        .collect();
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::transact_params;
    use serde_json::json;

    fn uuid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn snapshot(ops: &[Operation]) -> serde_json::Value {
        transact_params(DB, ops)
    }

    fn int_bridge() -> BridgeSpec {
        BridgeSpec::new("br-int")
            .datapath_type("netdev")
            .protocols(&["OpenFlow13", "OpenFlow14"])
            .fail_mode(FailMode::Secure)
            .other_config("disable-in-band", "true")
            .external_id("owner", "agent")
    }

    fn vxlan_port() -> PortSpec {
        PortSpec::new("vxlan-10.0.0.2")
            .iface_type("vxlan")
            .option("remote_ip", "10.0.0.2")
            .option("key", "flow")
            .external_id("peer", "node2")
    }

    #[test]
    fn create_bridge_transaction() {
        insta::assert_json_snapshot!(snapshot(&create_bridge_ops(&int_bridge())));
    }

    #[test]
    fn update_bridge_only_touches_what_differs() {
        let current = Row::from_json(&json!({
            "_uuid": ["uuid", uuid(1).to_string()],
            "datapath_type": "netdev",
            "protocols": ["set", ["OpenFlow14", "OpenFlow13"]],
            "fail_mode": ["set", []],
            "other_config": ["map", [["disable-in-band", "true"]]],
            "external_ids": ["map", [["owner", "someone-else"]]],
        }))
        .unwrap();
        let ops = update_bridge_ops(uuid(1), &int_bridge(), &current).unwrap();
        insta::assert_json_snapshot!(snapshot(&ops));
    }

    #[test]
    fn bridge_in_the_wanted_state_needs_no_update() {
        let current = Row::from_json(&json!({
            "_uuid": ["uuid", uuid(1).to_string()],
            "datapath_type": "netdev",
            "protocols": ["set", ["OpenFlow14", "OpenFlow13"]],
            "fail_mode": "secure",
            "other_config": ["map", [["disable-in-band", "true"]]],
            "external_ids": ["map", [["owner", "agent"]]],
        }))
        .unwrap();
        assert!(update_bridge_ops(uuid(1), &int_bridge(), &current).is_none());
    }

    #[test]
    fn delete_bridge_transaction() {
        insta::assert_json_snapshot!(snapshot(&delete_bridge_ops("br-int", uuid(1))));
    }

    #[test]
    fn create_port_transaction() {
        insta::assert_json_snapshot!(snapshot(&create_port_ops("br-int", &vxlan_port())));
        let access = PortSpec::new("vethab12")
            .external_id("container-id", "c1")
            .tag(10);
        insta::assert_json_snapshot!(snapshot(&create_port_ops("br-int", &access)));
    }

    fn port_state(type_: &str, tag: serde_json::Value) -> PortState {
        PortState {
            port_uuid: uuid(2),
            bridge: "br-int".into(),
            bridge_uuid: uuid(1),
            port: Row::from_json(&json!({
                "_uuid": ["uuid", uuid(2).to_string()],
                "interfaces": ["uuid", uuid(3).to_string()],
                "external_ids": ["map", [["container-id", "c1"]]],
                "tag": tag,
            }))
            .unwrap(),
            iface: Some((
                uuid(3),
                Row::from_json(&json!({"type": type_, "options": ["map", []]})).unwrap(),
            )),
        }
    }

    #[test]
    fn update_port_transaction() {
        let wanted = PortSpec::new("vethab12")
            .external_id("container-id", "c1")
            .option("x", "1");
        let ops = update_port_ops(&port_state("", json!(10)), &wanted).unwrap();
        insta::assert_json_snapshot!(snapshot(&ops));
    }

    #[test]
    fn port_in_the_wanted_state_needs_no_update() {
        let wanted = PortSpec::new("vethab12")
            .iface_type("system")
            .external_id("container-id", "c1")
            .tag(10);
        assert!(update_port_ops(&port_state("", json!(10)), &wanted).is_none());
    }

    #[test]
    fn delete_port_transaction() {
        insta::assert_json_snapshot!(snapshot(&delete_port_ops(
            "br-int",
            uuid(1),
            uuid(2),
            "vethab12"
        )));
    }

    #[test]
    fn query_transactions() {
        insta::assert_json_snapshot!("list_ports", snapshot(&list_ports_query("br-int")));
        insta::assert_json_snapshot!("port_state", snapshot(&port_state_query("vethab12")));
        insta::assert_json_snapshot!("init", snapshot(&init_ops()));
    }

    #[test]
    fn list_ports_joins_ports_and_interfaces() {
        let rows = |v: serde_json::Value| OperationResult {
            rows: Some(
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|r| Row::from_json(r).unwrap())
                    .collect(),
            ),
            ..Default::default()
        };
        let u = |n: u128| json!(["uuid", uuid(n).to_string()]);
        let results = vec![
            rows(json!([{"ports": ["set", [u(10), u(11), u(12)]]}])),
            rows(json!([
                {"_uuid": u(10), "name": "br-int", "interfaces": u(20), "tag": ["set", []], "external_ids": ["map", []]},
                {"_uuid": u(11), "name": "veth2", "interfaces": u(21), "tag": 5, "external_ids": ["map", [["k", "v"]]]},
                {"_uuid": u(12), "name": "veth1", "interfaces": u(22), "tag": ["set", []], "external_ids": ["map", []]},
                {"_uuid": u(13), "name": "elsewhere", "interfaces": u(23), "tag": ["set", []], "external_ids": ["map", []]},
            ])),
            rows(json!([
                {"_uuid": u(20), "name": "br-int", "type": "internal", "options": ["map", []], "ofport": 65534, "error": ["set", []]},
                {"_uuid": u(21), "name": "veth2", "type": "", "options": ["map", []], "ofport": 7, "error": ["set", []]},
                {"_uuid": u(22), "name": "veth1", "type": "", "options": ["map", []], "ofport": -1, "error": "no such device"},
            ])),
        ];
        let ports = ports_from_results("br-int", &results).unwrap();
        assert_eq!(
            ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["veth1", "veth2"]
        );
        assert_eq!(ports[0].ofport, None);
        assert_eq!(ports[0].error.as_deref(), Some("no such device"));
        assert_eq!(ports[1].ofport, Some(7));
        assert_eq!(ports[1].tag, Some(5));
        assert_eq!(ports[1].external_ids["k"], "v");
    }

    #[test]
    fn ofport_states() {
        let row = |v| Row::from_json(&v).unwrap();
        assert!(matches!(
            ofport_status(&row(json!({"ofport": ["set", []], "error": ["set", []]}))),
            OfportStatus::Pending
        ));
        assert!(matches!(
            ofport_status(&row(json!({"ofport": 3, "error": ["set", []]}))),
            OfportStatus::Assigned(3)
        ));
        assert!(matches!(
            ofport_status(&row(json!({"ofport": -1, "error": "boom"}))),
            OfportStatus::Failed(e) if e == "boom"
        ));
    }
}
