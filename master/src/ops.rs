//! The master's operations: Contiv's behavioural rules for each object, turned into store
//! transactions, and the agent-facing endpoint and node operations.
//!
//! Concurrency: config writes take `gate` exclusively, endpoint writes take it shared. So a
//! config write sees no endpoint reservation in flight (delete guards are exact), while endpoint
//! creates run side by side and their transactions are group-committed by the store. The state
//! mutex is only ever held for short synchronous sections, never across an await.

use crate::error::{ApiError, ApiResult};
use crate::keys::{self, StoredObject};
use crate::state::{ServiceState, State, v4};
use model::agent::{
    Endpoint, EndpointRequest, GroupState, NetworkState, Node, NodeLease, NodeRegistration,
    RuleStatsReport,
};
use model::net::{SubnetSpec, parse_v4_range, parse_v6_subnet};
use model::*;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Compare, Op, Store, Txn};

#[derive(Debug, Clone)]
pub struct MasterOptions {
    /// How long a node registration lives without a heartbeat.
    pub node_ttl: Duration,
    /// The address this master serves on, for `/info`.
    pub listen: String,
    /// `embedded` or `etcd`.
    pub store_kind: &'static str,
    /// Take part in a leader election (several masters on one etcd); None: always lead.
    pub election: Option<crate::leader::ElectionOptions>,
    /// How long a node may stay unregistered before the leader reclaims its endpoints; None:
    /// never.
    pub node_grace: Option<Duration>,
}

impl MasterOptions {
    /// One master, always leading, that never reclaims endpoints.
    pub fn single(listen: impl Into<String>, store_kind: &'static str) -> Self {
        MasterOptions {
            node_ttl: Duration::from_secs(30),
            listen: listen.into(),
            store_kind,
            election: None,
            node_grace: None,
        }
    }
}

pub struct Master {
    pub store: Arc<dyn Store>,
    pub(crate) state: Mutex<State>,
    pub(crate) gate: tokio::sync::RwLock<()>,
    /// The lease of each registered node, and the revision of its last registration.
    pub(crate) node_leases: Mutex<BTreeMap<String, (u64, u64)>>,
    /// Set when a transaction failed in a way that leaves its outcome unknown (the store became
    /// unreachable mid-write), or when a guard failed (another writer changed the store): the
    /// state is reloaded from the store before the next write.
    needs_resync: std::sync::atomic::AtomicBool,
    pub opts: MasterOptions,
    pub leadership: crate::leader::Leadership,
    /// The highest revision this master committed: a follower that forwarded a write waits
    /// until it has applied it, so that its next read shows the write.
    pub(crate) last_commit: std::sync::atomic::AtomicU64,
    /// The revision up to which a follower has applied the store's events.
    pub(crate) applied: tokio::sync::watch::Sender<u64>,
    /// The latest per-rule counters of each node. In memory only: agents report them again
    /// every 10 s at most, so a new leader has them back within that (docs/agent-api.md).
    rule_stats: Mutex<crate::views::RuleStats>,
}

pub(crate) type NodeLeases = BTreeMap<String, (u64, u64)>;

/// The writes of one operation: a transaction, and the same values to apply to the state once
/// it has committed.
#[derive(Default)]
struct Plan {
    txn: Txn,
    applies: Vec<(String, Option<Vec<u8>>)>,
}

impl Plan {
    fn put(&mut self, key: String, value: Vec<u8>) {
        self.txn.ops.push(Op::put(key.clone(), value.clone()));
        self.applies.push((key, Some(value)));
    }
    /// A put that must create the key: the uniqueness guard of an allocated value.
    fn claim(&mut self, key: String, owner: &str) {
        self.txn.compares.push(Compare::absent(key.clone()));
        self.txn.ops.push(Op::put(key, owner.as_bytes().to_vec()));
    }
    fn delete(&mut self, key: String) {
        self.txn.ops.push(Op::delete(key.clone()));
        self.applies.push((key, None));
    }
    fn release(&mut self, key: String) {
        self.txn.ops.push(Op::delete(key));
    }
    fn put_object<T: Object>(&mut self, obj: &T, state: Option<Value>) {
        let so = StoredObject {
            config: stored_config(obj),
            state,
        };
        self.put(
            keys::obj(kind_of::<T>(), &obj.key()),
            serde_json::to_vec(&so).expect("serializable"),
        );
    }
}

fn kind_of<T: Object>() -> Kind {
    Kind::from_name(T::KIND).expect("every object has a kind")
}

/// The config as stored: the key set, links left out (they are derived on output).
fn stored_config<T: Object>(obj: &T) -> Value {
    let mut v = serde_json::to_value(obj).expect("serializable");
    if let Some(m) = v.as_object_mut() {
        m.remove("links");
        m.remove("link-sets");
    }
    v
}

fn same_config<T: Object>(a: &T, b: &T) -> bool {
    stored_config(a) == stored_config(b)
}

/// The JSON fields that differ between two configs, for "cannot change" messages.
fn changed_fields<T: Object>(old: &T, new: &T) -> String {
    let (a, b) = (stored_config(old), stored_config(new));
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let mut names: Vec<&str> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| k.as_str())
        .collect();
    names.sort();
    names.dedup();
    names.join(", ")
}

fn list_some(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.len() > 5 {
        format!("{} and {} more", v[..5].join(", "), v.len() - 5)
    } else {
        v.join(", ")
    }
}

fn need_tenant(s: &State, t: &str) -> ApiResult<()> {
    if s.tenants.contains_key(t) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "tenantName '{t}': tenant does not exist; create it first (netctl tenant create {t})"
        )))
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serializable")
}

impl Master {
    /// Loads the state from the store and writes the defaults a fresh cluster needs.
    pub async fn open(store: Arc<dyn Store>, opts: MasterOptions) -> anyhow::Result<Arc<Master>> {
        let (state, node_leases, _) = Self::load(store.as_ref()).await?;
        let leadership = crate::leader::Leadership::new(opts.election.clone(), &opts.listen);
        let m = Arc::new(Master {
            store,
            state: Mutex::new(state),
            gate: tokio::sync::RwLock::new(()),
            node_leases: Mutex::new(node_leases),
            needs_resync: std::sync::atomic::AtomicBool::new(false),
            opts,
            leadership,
            last_commit: std::sync::atomic::AtomicU64::new(0),
            applied: tokio::sync::watch::channel(0).0,
            rule_stats: Mutex::new(BTreeMap::new()),
        });
        m.ensure_defaults().await?;
        Ok(m)
    }

    /// Reloads the state from the store if a write's outcome was lost; called before writes.
    async fn resync_if_needed(&self) -> ApiResult<()> {
        use std::sync::atomic::Ordering;
        if !self.needs_resync.load(Ordering::Acquire) {
            return Ok(());
        }
        let _w = self.gate.write().await;
        if !self.needs_resync.load(Ordering::Acquire) {
            return Ok(());
        }
        let (state, leases, _) = Self::load(self.store.as_ref()).await?;
        *self.state() = state;
        *self.node_leases.lock().unwrap_or_else(|p| p.into_inner()) = leases;
        self.needs_resync.store(false, Ordering::Release);
        tracing::warn!("state reloaded from the store after a write with an unknown outcome");
        Ok(())
    }

    fn note_store_error(&self, e: &store::StoreError) {
        if matches!(
            e,
            store::StoreError::Unavailable(_) | store::StoreError::Backend { .. }
        ) {
            self.needs_resync
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// The state as the store holds it, the node leases, and the revision it reflects.
    pub(crate) async fn load(
        store: &dyn Store,
    ) -> Result<(State, NodeLeases, u64), store::StoreError> {
        let (mut kvs, rev) = store.list(keys::ROOT).await?;
        kvs.sort_by_key(|kv| State::load_rank(&kv.key));
        let mut state = State::new();
        let mut node_leases = BTreeMap::new();
        for kv in &kvs {
            if let Err(e) = state.apply_put(&kv.key, &kv.value) {
                tracing::warn!(key = %kv.key, error = %e, "skipping a stored value that does not load");
            }
            if let (keys::Parsed::Node(n), Some(l)) = (keys::parse(&kv.key), kv.lease) {
                node_leases.insert(n.to_string(), (l, kv.mod_revision));
            }
        }
        tracing::info!(
            revision = rev,
            networks = state.networks.len(),
            groups = state.groups.len(),
            endpoints = state.endpoints.len(),
            "state loaded"
        );
        Ok((state, node_leases, rev))
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read access to the state, for handlers that render views.
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state())
    }

    async fn ensure_defaults(&self) -> anyhow::Result<()> {
        let mut plan = Plan::default();
        let (has_default_tenant, global) = {
            let s = self.state();
            (s.tenants.contains_key("default"), s.global.clone())
        };
        if !has_default_tenant {
            let mut t = Tenant {
                tenant_name: "default".into(),
                ..Default::default()
            };
            t.set_key();
            plan.txn
                .compares
                .push(Compare::absent(keys::obj(Kind::Tenant, "default")));
            plan.put_object(&t, None);
        }
        let gkey = keys::obj(Kind::Global, "global");
        if self.store.get(&gkey).await?.is_none() {
            plan.txn.compares.push(Compare::absent(gkey));
            plan.put_object(&global, None);
        }
        if !plan.txn.ops.is_empty() {
            // Guarded by absent-compares, so safe for any master, leader or not.
            match self.commit_unfenced(plan).await {
                Ok(_) => {}
                Err(e) if e.status == axum::http::StatusCode::CONFLICT => {
                    // Another master starting at the same time wrote them first: take its.
                    let (state, leases, _) = Self::load(self.store.as_ref()).await?;
                    *self.state() = state;
                    *self.node_leases.lock().unwrap_or_else(|p| p.into_inner()) = leases;
                }
                Err(e) => anyhow::bail!("write defaults: {e}"),
            }
        }
        Ok(())
    }

    /// Runs a transaction of the leader: with the fence (the compare that this master still
    /// holds the leader key) as its first compare. A transaction that fails on the fence means
    /// the leadership was lost: this master steps down and the caller gets a 503 to retry.
    pub(crate) async fn fenced_txn(&self, mut txn: Txn) -> ApiResult<store::TxnResult> {
        let fence = self.leadership.fence();
        let fenced = fence.is_some();
        if let Some(f) = fence {
            txn.compares.insert(0, f);
        }
        let r = self
            .store
            .txn(txn)
            .await
            .inspect_err(|e| self.note_store_error(e))?;
        if r.succeeded {
            self.last_commit
                .fetch_max(r.revision, std::sync::atomic::Ordering::AcqRel);
        } else {
            if fenced && r.failed_compare == Some(0) {
                tracing::warn!("leadership lost (the leader key is no longer ours): stepping down");
                self.leadership.set(crate::leader::Role::Follower, None);
                return Err(ApiError::unavailable(
                    "this netmaster lost the leadership while writing; nothing was written, retry (the request goes to the new leader)",
                ));
            }
            // Only another writer can make a guard fail: our view may be stale, reload it.
            self.needs_resync
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(r)
    }

    /// Commits a plan and applies it to the state.
    async fn commit(&self, plan: Plan) -> ApiResult<u64> {
        let applies = plan.applies;
        let r = self.fenced_txn(plan.txn).await?;
        self.finish_commit(r, &applies)
    }

    async fn commit_unfenced(&self, plan: Plan) -> ApiResult<u64> {
        let r = self
            .store
            .txn(plan.txn)
            .await
            .inspect_err(|e| self.note_store_error(e))?;
        self.finish_commit(r, &plan.applies)
    }

    fn finish_commit(
        &self,
        r: store::TxnResult,
        applies: &[(String, Option<Vec<u8>>)],
    ) -> ApiResult<u64> {
        if !r.succeeded {
            return Err(ApiError::conflict(
                "the change conflicts with a concurrent one; retry",
            ));
        }
        let mut s = self.state();
        for (k, v) in applies {
            match v {
                Some(v) => {
                    if let Err(e) = s.apply_put(k, v) {
                        tracing::error!(key = %k, error = %e, "apply committed value");
                    }
                }
                None => s.apply_delete(k),
            }
        }
        Ok(r.revision)
    }

    // ------------------------------------------------------------------ REST objects

    /// `POST|PUT /api/v1/<coll>/<key>/`: create or update.
    pub async fn upsert(&self, kind: Kind, url_key: &str, body: &[u8]) -> ApiResult<Value> {
        match kind {
            Kind::Tenant => self.upsert_typed(url_key, body, plan_tenant).await,
            Kind::Network => self.upsert_typed(url_key, body, plan_network).await,
            Kind::EndpointGroup => self.upsert_typed(url_key, body, plan_group).await,
            Kind::Policy => self.upsert_typed(url_key, body, plan_policy).await,
            Kind::Rule => self.upsert_typed(url_key, body, plan_rule).await,
            Kind::Netprofile => self.upsert_typed(url_key, body, plan_netprofile).await,
            Kind::Global => self.upsert_typed(url_key, body, plan_global).await,
            Kind::Bgp => self.upsert_typed(url_key, body, plan_bgp).await,
            Kind::ServiceLb => self.upsert_typed(url_key, body, plan_service).await,
            Kind::AppProfile => self.upsert_typed(url_key, body, plan_app_profile).await,
            Kind::ExtContractsGroup => self.upsert_typed(url_key, body, plan_ext_contracts).await,
            Kind::AciGw => self.upsert_typed(url_key, body, plan_aci_gw).await,
        }
    }

    async fn upsert_typed<T: Object>(
        &self,
        url_key: &str,
        body: &[u8],
        planner: fn(&State, &T) -> ApiResult<Option<Plan>>,
    ) -> ApiResult<Value> {
        let mut obj: T = parse_body(body)?;
        obj.normalize()
            .map_err(|e| ApiError::bad_request(format!("invalid {} {url_key}: {e}", T::KIND)))?;
        let key = obj.key();
        if key != url_key {
            return Err(ApiError::bad_request(format!(
                "the key in the URL, '{url_key}', does not match the body's {} '{key}'",
                T::KEY_FIELDS.join(":")
            )));
        }
        obj.set_key();
        self.resync_if_needed().await?;
        let _w = self.gate.write().await;
        let plan = planner(&self.state(), &obj)?;
        if let Some(plan) = plan {
            self.commit(plan).await?;
            tracing::info!(kind = T::KIND, key = %key, "object written");
        }
        self.get(kind_of::<T>(), &key)
    }

    /// `DELETE /api/v1/<coll>/<key>/`: returns the key, as Contiv.
    pub async fn delete(&self, kind: Kind, key: &str) -> ApiResult<Value> {
        self.resync_if_needed().await?;
        let _w = self.gate.write().await;
        let plan = plan_delete(&self.state(), kind, key)?;
        self.commit(plan).await?;
        tracing::info!(kind = kind.name(), key = %key, "object deleted");
        Ok(Value::String(key.to_string()))
    }

    pub fn get(&self, kind: Kind, key: &str) -> ApiResult<Value> {
        let s = self.state();
        crate::views::object(&s, kind, key)
            .ok_or_else(|| ApiError::not_found(format!("{} {key} not found", kind.name())))
    }

    pub fn list(&self, kind: Kind) -> Vec<Value> {
        crate::views::list(&self.state(), kind)
    }

    pub fn inspect(&self, kind: Kind, key: &str) -> ApiResult<Value> {
        let s = self.state();
        let mut v = crate::views::inspect(&s, kind, key)
            .ok_or_else(|| ApiError::not_found(format!("{} {key} not found", kind.name())))?;
        if kind == Kind::Policy {
            let stats = self.rule_stats.lock().unwrap_or_else(|p| p.into_inner());
            let rules = crate::views::rule_stats(&s, &stats, key);
            if !rules.is_empty() {
                v["Oper"]["ruleStats"] = serde_json::to_value(rules).expect("serializable");
            }
        }
        Ok(v)
    }

    /// Keeps a node's latest rule counters (an empty report forgets the node's).
    pub fn report_rule_stats(&self, host: &str, r: RuleStatsReport) -> ApiResult<()> {
        if r.hostname != host {
            return Err(ApiError::bad_request(format!(
                "rule stats of node '{}' sent to the path of node '{host}'",
                r.hostname
            )));
        }
        let mut stats = self.rule_stats.lock().unwrap_or_else(|p| p.into_inner());
        if r.rules.is_empty() {
            stats.remove(host);
        } else {
            stats.insert(host.to_string(), r.rules);
        }
        Ok(())
    }

    // ------------------------------------------------------------------ endpoints

    /// Creates an endpoint, or returns it if it exists already in the same network.
    pub async fn create_endpoint(&self, req: &EndpointRequest) -> ApiResult<Endpoint> {
        self.resync_if_needed().await?;
        let _r = self.gate.read().await;
        let ep = {
            let mut s = self.state();
            if let Some(e) = s.endpoints.get(&req.endpoint_id) {
                if e.tenant_name == req.tenant_name && e.network_name == req.network_name {
                    return Ok(e.clone());
                }
                return Err(ApiError::conflict(format!(
                    "endpoint {} already exists in network {}:{}",
                    req.endpoint_id, e.tenant_name, e.network_name
                )));
            }
            if s.pending.contains_key(&req.endpoint_id) {
                return Err(ApiError::conflict(format!(
                    "endpoint {} is being created by another request; retry",
                    req.endpoint_id
                )));
            }
            s.reserve_endpoint(req)?
        };
        let value = serde_json::to_vec(&ep).expect("serializable");
        let net_key = format!("{}:{}", ep.tenant_name, ep.network_name);
        let owner = format!("endpoint:{}", ep.endpoint_id);
        let mut txn = Txn::new()
            .when(Compare::absent(keys::ep(&ep.endpoint_id)))
            .then(Op::put(keys::ep(&ep.endpoint_id), value.clone()));
        for a in [&ep.ip_address, &ep.ipv6_address] {
            if !a.is_empty() {
                let k = keys::ip(&net_key, a);
                txn = txn
                    .when(Compare::absent(k.clone()))
                    .then(Op::put(k, owner.clone().into_bytes()));
            }
        }
        match self.fenced_txn(txn).await {
            Ok(r) if r.succeeded => {
                let mut s = self.state();
                if let Err(e) = s.apply_put(&keys::ep(&ep.endpoint_id), &value) {
                    tracing::error!(endpoint = %ep.endpoint_id, error = %e, "apply endpoint");
                }
                tracing::debug!(endpoint = %ep.endpoint_id, ip = %ep.ip_address, network = %net_key, "endpoint created");
                Ok(ep)
            }
            Ok(_) => {
                self.state().abort_endpoint(&ep.endpoint_id);
                Err(ApiError::conflict(format!(
                    "endpoint {} or address {} was taken by a concurrent writer; retry",
                    ep.endpoint_id, ep.ip_address
                )))
            }
            Err(e) => {
                self.state().abort_endpoint(&ep.endpoint_id);
                Err(e)
            }
        }
    }

    /// Deletes an endpoint and releases its addresses; deleting an absent one succeeds.
    pub async fn delete_endpoint(&self, id: &str) -> ApiResult<()> {
        self.resync_if_needed().await?;
        let _r = self.gate.read().await;
        let Some(ep) = self.state().endpoints.get(id).cloned() else {
            return Ok(());
        };
        let net_key = format!("{}:{}", ep.tenant_name, ep.network_name);
        let mut plan = Plan::default();
        plan.delete(keys::ep(id));
        for a in [&ep.ip_address, &ep.ipv6_address] {
            if !a.is_empty() {
                plan.release(keys::ip(&net_key, a));
            }
        }
        self.commit(plan).await?;
        tracing::debug!(endpoint = %id, "endpoint deleted");
        Ok(())
    }

    pub fn get_endpoint(&self, id: &str) -> ApiResult<Endpoint> {
        self.state()
            .endpoints
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("endpoint {id} not found")))
    }

    pub fn list_endpoints(&self, host: Option<&str>) -> Vec<Endpoint> {
        self.state()
            .endpoints
            .values()
            .filter(|e| host.is_none_or(|h| e.host == h))
            .cloned()
            .collect()
    }

    // ------------------------------------------------------------------ nodes

    /// Registers a node, or renews its registration (the heartbeat).
    pub async fn register_node(&self, name: &str, reg: &NodeRegistration) -> ApiResult<NodeLease> {
        if reg.hostname != name {
            return Err(ApiError::bad_request(format!(
                "the hostname in the URL, '{name}', does not match the body's hostname '{}'",
                reg.hostname
            )));
        }
        if !names::is_valid_name(name, 253) {
            return Err(ApiError::bad_request(format!(
                "hostname '{name}': must be at most 253 characters of {}",
                names::NAME_RULE
            )));
        }
        if reg.vtep_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::bad_request(format!(
                "vtepIP '{}': not an IP address",
                reg.vtep_ip
            )));
        }
        let node = Node {
            hostname: reg.hostname.clone(),
            vtep_ip: reg.vtep_ip.clone(),
            version: reg.version.clone(),
        };
        let ttl = self.opts.node_ttl;
        let answer = NodeLease {
            hostname: name.to_string(),
            ttl_seconds: ttl.as_secs().max(1),
            heartbeat_seconds: (ttl.as_secs() / 3).max(1),
        };
        let unchanged = self.state().nodes.get(name) == Some(&node);
        let lease = self
            .node_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied();
        if unchanged && let Some((l, _)) = lease {
            match self.store.keep_alive(l).await {
                Ok(()) => return Ok(answer),
                Err(store::StoreError::LeaseNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let new_lease = self.store.grant_lease(ttl).await?;
        let value = serde_json::to_vec(&node).expect("serializable");
        // A node back in time keeps its endpoints: its down marker goes with the registration.
        let r = self
            .fenced_txn(
                Txn::new()
                    .then(Op::Put {
                        key: keys::node(name),
                        value: value.clone(),
                        lease: Some(new_lease),
                    })
                    .then(Op::delete(keys::down(name))),
            )
            .await?;
        if !r.succeeded {
            let _ = self.store.revoke_lease(new_lease).await;
            return Err(ApiError::conflict(format!(
                "registration of node {name} conflicts with a concurrent write; retry"
            )));
        }
        self.state().apply_put(&keys::node(name), &value).ok();
        self.node_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (new_lease, r.revision));
        if let Some((old, _)) = lease {
            // The key moved to the new lease; the old one holds nothing now.
            let _ = self.store.revoke_lease(old).await;
        }
        tracing::info!(node = %name, vtep = %reg.vtep_ip, "node registered");
        Ok(answer)
    }

    pub async fn unregister_node(&self, name: &str) -> ApiResult<()> {
        let lease = self
            .node_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        match lease {
            Some((l, _)) => {
                let _ = self.store.revoke_lease(l).await;
            }
            None => {
                self.store.delete(&keys::node(name)).await?;
            }
        }
        self.state().apply_delete(&keys::node(name));
        Ok(())
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.state().nodes.values().cloned().collect()
    }

    /// Follows node deletions done by the store itself (lease expiry).
    pub async fn follow_node_expiry(self: Arc<Self>) {
        loop {
            let from = match self.store.revision().await {
                Ok(r) => r + 1,
                Err(e) => {
                    tracing::warn!(error = %e, "read store revision");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut w = match self.store.watch(keys::NODES, from).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "watch node registrations");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            use futures::StreamExt;
            while let Some(ev) = w.next().await {
                let Ok(ev) = ev else { break };
                if ev.kind != store::EventKind::Delete {
                    continue;
                }
                let keys::Parsed::Node(name) = keys::parse(&ev.kv.key) else {
                    continue;
                };
                {
                    let mut leases = self.node_leases.lock().unwrap_or_else(|p| p.into_inner());
                    // A registration newer than this delete wins.
                    if leases
                        .get(name)
                        .is_some_and(|(_, rev)| *rev > ev.kv.mod_revision)
                    {
                        continue;
                    }
                    leases.remove(name);
                }
                self.state().apply_delete(&ev.kv.key);
                tracing::warn!(node = %name, "node registration expired");
                if self.leadership.is_leader() && self.opts.node_grace.is_some() {
                    self.mark_down(name).await;
                }
            }
        }
    }
}

pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("the request has no JSON body"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || path.is_empty() || path == "." {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON body: field {path}: {inner}"))
        }
    })
}

// ---------------------------------------------------------------------- planners

fn plan_tenant(s: &State, t: &Tenant) -> ApiResult<Option<Plan>> {
    if let Some(old) = s.tenants.get(&t.key())
        && same_config(old, t)
    {
        return Ok(None);
    }
    let mut p = Plan::default();
    p.put_object(t, None);
    Ok(Some(p))
}

fn plan_network(s: &State, n: &Network) -> ApiResult<Option<Plan>> {
    let key = n.key();
    if let Some(old) = s.networks.get(&key) {
        if same_config(&old.cfg, n) {
            return Ok(None);
        }
        return Err(ApiError::conflict(format!(
            "network {key} cannot be changed ({} differ); delete it and create it again",
            changed_fields(&old.cfg, n)
        )));
    }
    need_tenant(s, &n.tenant_name)?;
    if s.groups.contains_key(&key) {
        return Err(ApiError::conflict(format!(
            "networkName '{}': tenant {} has an endpoint group of that name; pick another name",
            n.network_name, n.tenant_name
        )));
    }
    let spec = SubnetSpec::parse(&n.subnet).map_err(ApiError::bad_request)?;
    let v6 = (!n.ipv6_subnet.is_empty())
        .then(|| parse_v6_subnet(&n.ipv6_subnet))
        .transpose()
        .map_err(ApiError::bad_request)?;
    for other in s
        .networks
        .values()
        .filter(|o| o.cfg.tenant_name == n.tenant_name)
    {
        let o = &other.spec.net;
        if o.contains(&spec.net.network()) || spec.net.contains(&o.network()) {
            return Err(ApiError::conflict(format!(
                "subnet {} overlaps network {} ({})",
                spec.net,
                other.cfg.key(),
                o
            )));
        }
        if let (Some(a), Some(b)) = (v6, other.v6.as_ref().map(|v| v.net))
            && (a.contains(&b.network()) || b.contains(&a.network()))
        {
            return Err(ApiError::conflict(format!(
                "ipv6Subnet {a} overlaps network {} ({b})",
                other.cfg.key()
            )));
        }
    }
    let mut p = Plan::default();
    let st = if n.encap == "vlan" {
        let (lo, hi) = s.global.vlan_range();
        let tag = pick_tag(
            &s.vlans,
            n.pkt_tag,
            "VLAN",
            &s.global.vlans,
            "-v/--vlan-range",
            |t| owner_network(s, |e| e.cfg.encap == "vlan" && e.st.pkt_tag == t),
        )?;
        let _ = (lo, hi);
        p.claim(keys::tag("vlan", tag), &key);
        NetworkState {
            pkt_tag: tag,
            ext_pkt_tag: 0,
        }
    } else {
        let vni = pick_tag(
            &s.vxlans,
            n.pkt_tag,
            "VXLAN",
            &s.global.vxlans,
            "-x/--vxlan-range",
            |t| owner_network(s, |e| e.cfg.encap == "vxlan" && e.st.ext_pkt_tag == t),
        )?;
        let lvlan = s.local_vlans.lowest_free().ok_or_else(|| {
            ApiError::conflict(
                "no local VLAN available: every one of the 4094 local VLANs is used by a VXLAN network; delete unused networks",
            )
        })? as u32;
        p.claim(keys::tag("vxlan", vni), &key);
        p.claim(keys::tag("lvlan", lvlan), &key);
        NetworkState {
            pkt_tag: lvlan,
            ext_pkt_tag: vni,
        }
    };
    p.put_object(n, Some(to_json(&st)));
    Ok(Some(p))
}

fn owner_network(s: &State, f: impl Fn(&crate::state::NetEntry) -> bool) -> String {
    s.networks
        .values()
        .find(|e| f(e))
        .map(|e| e.cfg.key())
        .unwrap_or_default()
}

/// A requested tag must be in range and free; otherwise the lowest free one.
fn pick_tag(
    pool: &crate::alloc::Pool,
    requested: i64,
    what: &str,
    range: &str,
    flag: &str,
    owner: impl Fn(u32) -> String,
) -> ApiResult<u32> {
    if requested != 0 {
        let t = requested as u128;
        if !pool.contains_range(t) {
            return Err(ApiError::bad_request(format!(
                "pktTag {requested}: outside the global {what} range {range} (change it with netctl global set {flag})"
            )));
        }
        if !pool.is_free(t) {
            return Err(ApiError::conflict(format!(
                "pktTag {requested}: {what} {requested} is already used by network {}",
                owner(requested as u32)
            )));
        }
        return Ok(requested as u32);
    }
    pool.lowest_free().map(|t| t as u32).ok_or_else(|| {
        ApiError::conflict(format!(
            "no {what} available: every tag of the global range {range} is in use (widen it with netctl global set {flag})"
        ))
    })
}

fn plan_group(s: &State, g: &EndpointGroup) -> ApiResult<Option<Plan>> {
    let key = g.key();
    need_tenant(s, &g.tenant_name)?;
    let net_key = format!("{}:{}", g.tenant_name, g.network_name);
    let Some(net) = s.networks.get(&net_key) else {
        return Err(ApiError::bad_request(format!(
            "networkName '{}': network {net_key} does not exist",
            g.network_name
        )));
    };
    for p in &g.policies {
        if !s.policies.contains_key(&format!("{}:{p}", g.tenant_name)) {
            return Err(ApiError::bad_request(format!(
                "policies '{p}': policy {}:{p} does not exist",
                g.tenant_name
            )));
        }
    }
    if !g.net_profile.is_empty()
        && !s
            .netprofiles
            .contains_key(&format!("{}:{}", g.tenant_name, g.net_profile))
    {
        return Err(ApiError::bad_request(format!(
            "netProfile '{}': netprofile {}:{} does not exist",
            g.net_profile, g.tenant_name, g.net_profile
        )));
    }
    for c in &g.ext_contracts_grps {
        if !s
            .ext_contracts
            .contains_key(&format!("{}:{c}", g.tenant_name))
        {
            return Err(ApiError::bad_request(format!(
                "extContractsGrps '{c}': external contracts group {}:{c} does not exist",
                g.tenant_name
            )));
        }
    }
    if let Some(old) = s.groups.get(&key) {
        if old.cfg.network_name != g.network_name || old.cfg.ip_pool != g.ip_pool {
            return Err(ApiError::conflict(format!(
                "endpoint group {key}: networkName and ipPool cannot be changed; delete the group and create it again"
            )));
        }
        if same_config(&old.cfg, g) {
            return Ok(None);
        }
        let mut p = Plan::default();
        p.put_object(g, Some(to_json(&old.st)));
        return Ok(Some(p));
    }
    if s.networks.contains_key(&key) {
        return Err(ApiError::conflict(format!(
            "groupName '{}': tenant {} has a network of that name; pick another name",
            g.group_name, g.tenant_name
        )));
    }
    if !g.ip_pool.is_empty() {
        let (a, b) = parse_v4_range(&g.ip_pool).map_err(ApiError::bad_request)?;
        if v4(a) < v4(net.spec.first) || v4(b) > v4(net.spec.last) {
            return Err(ApiError::bad_request(format!(
                "ipPool '{}': outside the allocatable addresses {}-{} of network {net_key}",
                g.ip_pool, net.spec.first, net.spec.last
            )));
        }
        if !net.v4.is_range_free(v4(a), v4(b)) {
            let taken = (v4(a)..=v4(b))
                .find(|x| !net.v4.is_free(*x))
                .map(|x| Ipv4Addr::from(x as u32).to_string())
                .unwrap_or_default();
            return Err(ApiError::conflict(format!(
                "ipPool '{}': address {taken} is already allocated in network {net_key}",
                g.ip_pool
            )));
        }
    }
    let gid = s.group_ids.lowest_free().ok_or_else(|| {
        ApiError::conflict(format!(
            "no endpoint group id available: all {} are in use",
            crate::state::MAX_GROUP_ID
        ))
    })? as u32;
    let mut p = Plan::default();
    p.claim(keys::tag("gid", gid), &key);
    p.put_object(g, Some(to_json(&GroupState { group_id: gid })));
    Ok(Some(p))
}

fn plan_policy(s: &State, pol: &Policy) -> ApiResult<Option<Plan>> {
    need_tenant(s, &pol.tenant_name)?;
    if s.policies.contains_key(&pol.key()) {
        return Ok(None);
    }
    let mut p = Plan::default();
    p.put_object(pol, None);
    Ok(Some(p))
}

fn plan_rule(s: &State, r: &Rule) -> ApiResult<Option<Plan>> {
    let key = r.key();
    if let Some(old) = s.rules.get(&key) {
        if same_config(old, r) {
            return Ok(None);
        }
        return Err(ApiError::conflict(format!(
            "rule {key} cannot be changed ({} differ); remove it and add it again (netctl policy rule-rm, rule-add)",
            changed_fields(old, r)
        )));
    }
    need_tenant(s, &r.tenant_name)?;
    let pk = format!("{}:{}", r.tenant_name, r.policy_name);
    if !s.policies.contains_key(&pk) {
        return Err(ApiError::bad_request(format!(
            "policyName '{}': policy {pk} does not exist",
            r.policy_name
        )));
    }
    for (field, g) in [
        ("fromEndpointGroup", &r.from_endpoint_group),
        ("toEndpointGroup", &r.to_endpoint_group),
    ] {
        if !g.is_empty() && !s.groups.contains_key(&format!("{}:{g}", r.tenant_name)) {
            return Err(ApiError::bad_request(format!(
                "{field} '{g}': endpoint group {}:{g} does not exist",
                r.tenant_name
            )));
        }
    }
    for (field, n) in [
        ("fromNetwork", &r.from_network),
        ("toNetwork", &r.to_network),
    ] {
        if !n.is_empty() && !s.networks.contains_key(&format!("{}:{n}", r.tenant_name)) {
            return Err(ApiError::bad_request(format!(
                "{field} '{n}': network {}:{n} does not exist",
                r.tenant_name
            )));
        }
    }
    let mut p = Plan::default();
    p.put_object(r, None);
    Ok(Some(p))
}

fn plan_netprofile(s: &State, n: &Netprofile) -> ApiResult<Option<Plan>> {
    need_tenant(s, &n.tenant_name)?;
    if let Some(old) = s.netprofiles.get(&n.key())
        && same_config(old, n)
    {
        return Ok(None);
    }
    // Groups refer to the profile by name: agents re-apply it when they see the new version.
    let mut p = Plan::default();
    p.put_object(n, None);
    Ok(Some(p))
}

fn plan_global(s: &State, g: &Global) -> ApiResult<Option<Plan>> {
    let old = &s.global;
    if same_config(old, g) {
        return Ok(None);
    }
    let nets = s.networks.len();
    if g.fwd_mode != old.fwd_mode {
        if nets > 0 {
            return Err(ApiError::conflict(format!(
                "fwdMode cannot change from {} to {} while {nets} networks exist; delete them first",
                old.fwd_mode, g.fwd_mode
            )));
        }
        if old.fwd_mode == "routing" && !s.bgps.is_empty() {
            return Err(ApiError::conflict(format!(
                "fwdMode cannot leave routing while BGP configs exist ({}); delete them first",
                list_some(s.bgps.keys().cloned())
            )));
        }
    }
    if g.pvt_subnet != old.pvt_subnet && nets > 0 {
        return Err(ApiError::conflict(format!(
            "pvtSubnet cannot change while {nets} networks exist; delete them first"
        )));
    }
    let (vlo, vhi) = g.vlan_range();
    let (xlo, xhi) = g.vxlan_range();
    for e in s.networks.values() {
        if e.cfg.encap == "vlan" && (e.st.pkt_tag < vlo || e.st.pkt_tag > vhi) {
            return Err(ApiError::conflict(format!(
                "vlans '{}': VLAN {} is in use by network {}",
                g.vlans,
                e.st.pkt_tag,
                e.cfg.key()
            )));
        }
        if e.cfg.encap == "vxlan" && (e.st.ext_pkt_tag < xlo || e.st.ext_pkt_tag > xhi) {
            return Err(ApiError::conflict(format!(
                "vxlans '{}': VXLAN {} is in use by network {}",
                g.vxlans,
                e.st.ext_pkt_tag,
                e.cfg.key()
            )));
        }
    }
    let mut p = Plan::default();
    p.put_object(g, None);
    Ok(Some(p))
}

fn plan_bgp(s: &State, b: &Bgp) -> ApiResult<Option<Plan>> {
    if s.global.network_infra_type == "aci" {
        return Err(ApiError::conflict(
            "BGP cannot be configured when the fabric mode is aci (netctl global set --fabric-mode default)",
        ));
    }
    if let Some(old) = s.bgps.get(&b.key())
        && same_config(old, b)
    {
        return Ok(None);
    }
    let mut p = Plan::default();
    p.put_object(b, None);
    Ok(Some(p))
}

fn plan_service(s: &State, svc: &ServiceLb) -> ApiResult<Option<Plan>> {
    let key = svc.key();
    need_tenant(s, &svc.tenant_name)?;
    let net_key = format!("{}:{}", svc.tenant_name, svc.network_name);
    let Some(net) = s.networks.get(&net_key) else {
        return Err(ApiError::bad_request(format!(
            "networkName '{}': network {net_key} does not exist",
            svc.network_name
        )));
    };
    let old = s.services.get(&key);
    if let Some(o) = old {
        if same_config(&o.cfg, svc) {
            return Ok(None);
        }
        if o.cfg.network_name != svc.network_name {
            return Err(ApiError::conflict(format!(
                "service {key}: networkName cannot be changed; delete the service and create it again"
            )));
        }
    }
    let owner = format!("service:{key}");
    let mut p = Plan::default();
    let vip: Ipv4Addr = match (old, svc.ip_address.is_empty()) {
        (Some(o), true) => o.vip,
        (Some(o), false) if svc.ip_address == o.vip.to_string() => o.vip,
        (_, false) => {
            let a: Ipv4Addr = svc.ip_address.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "ipAddress '{}': not an IPv4 address",
                    svc.ip_address
                ))
            })?;
            if !net.v4.contains_range(v4(a)) {
                return Err(ApiError::bad_request(format!(
                    "ipAddress '{a}': outside the allocatable addresses {}-{} of network {net_key}",
                    net.spec.first, net.spec.last
                )));
            }
            if !net.v4.is_free(v4(a)) {
                return Err(ApiError::conflict(format!(
                    "ipAddress '{a}': already allocated in network {net_key}"
                )));
            }
            p.claim(keys::ip(&net_key, &a.to_string()), &owner);
            if let Some(o) = old {
                p.release(keys::ip(&net_key, &o.vip.to_string()));
            }
            a
        }
        (None, true) => {
            let a = net.v4.lowest_free().ok_or_else(|| {
                ApiError::conflict(format!(
                    "address exhaustion in subnet {} of network {net_key}: no address left for the service",
                    net.spec.net
                ))
            })?;
            let a = Ipv4Addr::from(a as u32);
            p.claim(keys::ip(&net_key, &a.to_string()), &owner);
            a
        }
    };
    p.put_object(
        svc,
        Some(to_json(&ServiceState {
            vip: vip.to_string(),
        })),
    );
    Ok(Some(p))
}

fn plan_app_profile(s: &State, a: &AppProfile) -> ApiResult<Option<Plan>> {
    need_tenant(s, &a.tenant_name)?;
    for g in &a.endpoint_groups {
        if !s.groups.contains_key(&format!("{}:{g}", a.tenant_name)) {
            return Err(ApiError::bad_request(format!(
                "endpointGroups '{g}': endpoint group {}:{g} does not exist",
                a.tenant_name
            )));
        }
    }
    if let Some(old) = s.app_profiles.get(&a.key())
        && same_config(old, a)
    {
        return Ok(None);
    }
    let mut p = Plan::default();
    p.put_object(a, None);
    Ok(Some(p))
}

fn plan_ext_contracts(s: &State, c: &ExtContractsGroup) -> ApiResult<Option<Plan>> {
    need_tenant(s, &c.tenant_name)?;
    if let Some(old) = s.ext_contracts.get(&c.key()) {
        if same_config(old, c) {
            return Ok(None);
        }
        return Err(ApiError::conflict(format!(
            "external contracts group {} cannot be changed; delete it and create it again",
            c.key()
        )));
    }
    let mut p = Plan::default();
    p.put_object(c, None);
    Ok(Some(p))
}

fn plan_aci_gw(s: &State, a: &AciGw) -> ApiResult<Option<Plan>> {
    if let Some(old) = &s.aci_gw
        && same_config(old, a)
    {
        return Ok(None);
    }
    let mut p = Plan::default();
    p.put_object(a, None);
    Ok(Some(p))
}

fn plan_delete(s: &State, kind: Kind, key: &str) -> ApiResult<Plan> {
    let missing = || ApiError::not_found(format!("{} {key} not found", kind.name()));
    let in_use = |what: &str, users: Vec<String>| -> ApiResult<()> {
        if users.is_empty() {
            Ok(())
        } else {
            Err(ApiError::conflict(format!(
                "{} {key} is in use by {what} {}; delete or detach them first",
                kind.name(),
                list_some(users)
            )))
        }
    };
    let in_tenant = |k: &str| k.split(':').next() == Some(key);
    let mut p = Plan::default();
    match kind {
        Kind::Tenant => {
            s.tenants.get(key).ok_or_else(missing)?;
            in_use(
                "networks",
                s.networks
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
            in_use(
                "endpoint groups",
                s.groups.keys().filter(|k| in_tenant(k)).cloned().collect(),
            )?;
            in_use(
                "policies",
                s.policies
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
            in_use(
                "netprofiles",
                s.netprofiles
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
            in_use(
                "app profiles",
                s.app_profiles
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
            in_use(
                "services",
                s.services
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
            in_use(
                "external contracts groups",
                s.ext_contracts
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
        }
        Kind::Network => {
            let n = s.networks.get(key).ok_or_else(missing)?;
            let mine = |t: &str, net: &str| format!("{t}:{net}") == key;
            in_use(
                "endpoint groups",
                s.groups
                    .iter()
                    .filter(|(_, g)| mine(&g.cfg.tenant_name, &g.cfg.network_name))
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
            in_use(
                "services",
                s.services
                    .iter()
                    .filter(|(_, v)| mine(&v.cfg.tenant_name, &v.cfg.network_name))
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
            in_use("endpoints", n.endpoints.iter().cloned().collect())?;
            if n.cfg.encap == "vlan" {
                p.release(keys::tag("vlan", n.st.pkt_tag));
            } else {
                p.release(keys::tag("vxlan", n.st.ext_pkt_tag));
                p.release(keys::tag("lvlan", n.st.pkt_tag));
            }
        }
        Kind::EndpointGroup => {
            let g = s.groups.get(key).ok_or_else(missing)?;
            let name = &g.cfg.group_name;
            in_use(
                "app profiles",
                s.app_profiles
                    .iter()
                    .filter(|(_, a)| {
                        a.tenant_name == g.cfg.tenant_name && a.endpoint_groups.contains(name)
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
            in_use("endpoints", g.endpoints.iter().cloned().collect())?;
            p.release(keys::tag("gid", g.st.group_id));
        }
        Kind::Policy => {
            let pol = s.policies.get(key).ok_or_else(missing)?;
            in_use(
                "endpoint groups",
                s.groups
                    .iter()
                    .filter(|(_, g)| {
                        g.cfg.tenant_name == pol.tenant_name
                            && g.cfg.policies.contains(&pol.policy_name)
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
            let prefix = format!("{key}:");
            for rk in s.rules.keys().filter(|k| k.starts_with(&prefix)) {
                p.delete(keys::obj(Kind::Rule, rk));
            }
        }
        Kind::Rule => {
            s.rules.get(key).ok_or_else(missing)?;
        }
        Kind::Netprofile => {
            let np = s.netprofiles.get(key).ok_or_else(missing)?;
            in_use(
                "endpoint groups",
                s.groups
                    .iter()
                    .filter(|(_, g)| {
                        g.cfg.tenant_name == np.tenant_name && g.cfg.net_profile == np.profile_name
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
        }
        Kind::Global => {
            if key != "global" {
                return Err(missing());
            }
            in_use("networks", s.networks.keys().cloned().collect())?;
            // Deleting the global config puts the defaults back, as a fresh cluster has them.
            p.put_object(&Global::defaults(), None);
            return Ok(p);
        }
        Kind::Bgp => {
            s.bgps.get(key).ok_or_else(missing)?;
        }
        Kind::ServiceLb => {
            let svc = s.services.get(key).ok_or_else(missing)?;
            let net_key = format!("{}:{}", svc.cfg.tenant_name, svc.cfg.network_name);
            p.release(keys::ip(&net_key, &svc.vip.to_string()));
        }
        Kind::AppProfile => {
            s.app_profiles.get(key).ok_or_else(missing)?;
        }
        Kind::ExtContractsGroup => {
            let c = s.ext_contracts.get(key).ok_or_else(missing)?;
            in_use(
                "endpoint groups",
                s.groups
                    .iter()
                    .filter(|(_, g)| {
                        g.cfg.tenant_name == c.tenant_name
                            && g.cfg.ext_contracts_grps.contains(&c.contracts_group_name)
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
        }
        Kind::AciGw => {
            if s.aci_gw.is_none() || key != "aciGw" {
                return Err(missing());
            }
            in_use("app profiles", s.app_profiles.keys().cloned().collect())?;
        }
    }
    p.delete(keys::obj(kind, key));
    Ok(p)
}
