//! The master's operations: Contiv's behavioural rules for each object, turned into store
//! transactions, and the agent-facing endpoint and node operations.
//!
//! By job: this file holds the [`Master`] itself (opening, loading, committing), the REST object
//! writes and reads; `plan` the per-kind planners (pure functions of the state and an object to
//! the writes they need, or the rule they break); `endpoints` the agents' endpoint operations;
//! `nodes` the node registry, heartbeats, leases and rule counters.
//!
//! Concurrency: config writes take `gate` exclusively, endpoint writes take it shared. So a
//! config write sees no endpoint reservation in flight (delete guards are exact), while endpoint
//! creates run side by side and their transactions are group-committed by the store. The state
//! mutex is only ever held for short synchronous sections, never across an await.

mod endpoints;
mod nodes;
mod plan;

use crate::error::{ApiError, ApiResult};
use crate::keys::{self, StoredObject};
use crate::state::State;
use model::*;
use plan::{
    plan_aci_gw, plan_app_profile, plan_bgp, plan_delete, plan_ext_contracts, plan_global,
    plan_group, plan_netprofile, plan_network, plan_policy, plan_rule, plan_service, plan_tenant,
};
use serde_json::Value;
use std::collections::BTreeMap;
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
    /// The CA file (PEM) the other masters' certificates are checked against, besides the
    /// system's, when this one forwards writes to the leader over https: the cluster CA's.
    pub peer_ca: Option<std::path::PathBuf>,
    /// How many events the watch cache keeps for watchers to resume from (and to read at their
    /// own pace before they are cut off).
    pub watch_history: usize,
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
            peer_ca: None,
            watch_history: crate::watch::DEFAULT_HISTORY,
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
    /// How a follower reaches the leader (`api::route_writes`): trusting the cluster CA.
    pub(crate) forward: reqwest::Client,
    /// The highest revision this master committed: a follower that forwarded a write waits
    /// until it has applied it, so that its next read shows the write.
    pub(crate) last_commit: std::sync::atomic::AtomicU64,
    /// The revision up to which a follower has applied the store's events.
    pub(crate) applied: tokio::sync::watch::Sender<u64>,
    /// The latest per-rule counters of each node. In memory only: agents report them again
    /// every 10 s at most, so a new leader has them back within that (docs/agent-api.md).
    rule_stats: Mutex<crate::views::RuleStats>,
    /// The latest per-endpoint anti-spoofing drops of each node, kept like `rule_stats`.
    spoof_stats: Mutex<crate::views::SpoofStats>,
    /// The private addresses each node reported of its endpoints: host -> endpoint id -> address.
    host_access: Mutex<crate::views::HostAccess>,
    /// Bumped each time an endpoint create settles (committed or given up), so that a second
    /// create of the same id can wait for the first one's outcome.
    pub(crate) endpoint_settled: tokio::sync::watch::Sender<u64>,
    /// Wakes [`Master::keep_in_sync`] when `needs_resync` is set.
    resync_wanted: tokio::sync::Notify,
    /// Writes the API runs detached from their clients (see `api::detach_writes`) that have not
    /// finished; shown in `/info`.
    pub(crate) writes_in_flight: std::sync::atomic::AtomicU64,
    /// Nodes being unregistered explicitly: their key's delete event is not an expiry.
    pub(crate) departing: Mutex<std::collections::BTreeSet<String>>,
    /// Serves every `GET /api/v1/watch` from one store watch.
    pub watch: Arc<crate::watch::WatchCache>,
    /// What `--metrics-listen` serves (`crate::metrics`).
    pub(crate) metrics: crate::metrics::MasterMetrics,
}

/// Marks the state for a reload from the store if dropped armed: held across the one await
/// between sending a transaction and applying its result to the state, so that a future dropped
/// there (or a panic) cannot leave memory without a write the store may have made.
struct Unsettled<'a> {
    master: &'a Master,
    armed: bool,
}

impl Unsettled<'_> {
    fn settle(mut self) {
        self.armed = false;
    }
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if self.armed {
            tracing::warn!(
                "a store transaction was abandoned before its outcome was known: reloading the state from the store"
            );
            self.master.want_resync();
        }
    }
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

impl Master {
    /// Loads the state from the store and writes the defaults a fresh cluster needs.
    pub async fn open(store: Arc<dyn Store>, opts: MasterOptions) -> anyhow::Result<Arc<Master>> {
        let (state, node_leases, loaded) = Self::load(store.as_ref()).await?;
        let leadership = crate::leader::Leadership::new(opts.election.clone(), &opts.listen);
        let forward = crate::api::forward_client(opts.peer_ca.as_deref())?;
        let watch = crate::watch::WatchCache::start(store.clone(), opts.watch_history).await?;
        let m = Arc::new(Master {
            forward,
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
            spoof_stats: Mutex::new(BTreeMap::new()),
            host_access: Mutex::new(BTreeMap::new()),
            endpoint_settled: tokio::sync::watch::channel(0).0,
            resync_wanted: tokio::sync::Notify::new(),
            writes_in_flight: std::sync::atomic::AtomicU64::new(0),
            departing: Mutex::new(Default::default()),
            watch,
            metrics: Default::default(),
        });
        m.metrics.saw_revision(loaded);
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
        // Cleared before the listing: a write that goes wrong meanwhile sets it again.
        self.needs_resync.store(false, Ordering::Release);
        let (state, leases, _) = match Self::load(self.store.as_ref()).await {
            Ok(x) => x,
            Err(e) => {
                self.needs_resync.store(true, Ordering::Release);
                return Err(e.into());
            }
        };
        *self.state() = state;
        *self.node_leases.lock().unwrap_or_else(|p| p.into_inner()) = leases;
        // Reservations in flight are gone with the old state: their waiters look again.
        self.endpoint_settled.send_modify(|n| *n += 1);
        tracing::warn!("state reloaded from the store after a write with an unknown outcome");
        Ok(())
    }

    /// The state may differ from the store: reload it before the next write, and right away in
    /// the background ([`Master::keep_in_sync`]) so that reads do not show it meanwhile.
    pub(crate) fn want_resync(&self) {
        self.needs_resync
            .store(true, std::sync::atomic::Ordering::Release);
        self.resync_wanted.notify_one();
    }

    /// Reloads the state whenever a write left it unsure, retrying while the store is
    /// unreachable. Runs for the life of the process.
    pub async fn keep_in_sync(self: Arc<Self>) {
        loop {
            self.resync_wanted.notified().await;
            while let Err(e) = self.resync_if_needed().await {
                tracing::warn!(error = %e.message, "reload the state from the store; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    fn note_store_error(&self, e: &store::StoreError) {
        if matches!(
            e,
            store::StoreError::Unavailable(_) | store::StoreError::Backend { .. }
        ) {
            self.want_resync();
        }
    }

    /// Sends a transaction to the store. Should the caller's future be dropped (or panic) while
    /// the store has it, the outcome is unknown: the state is then reloaded. Callers apply a
    /// succeeded transaction to the state without awaiting anything in between, so nothing else
    /// can separate the two.
    async fn send_txn(&self, txn: Txn) -> Result<store::TxnResult, store::StoreError> {
        let guard = Unsettled {
            master: self,
            armed: true,
        };
        let started = std::time::Instant::now();
        let r = self.store.txn(txn).await;
        guard.settle();
        self.metrics
            .txn(started.elapsed(), r.as_ref().ok().map(|r| r.revision));
        r.inspect_err(|e| self.note_store_error(e))
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
        let r = self.send_txn(txn).await?;
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
            self.want_resync();
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
        let r = self.send_txn(plan.txn).await?;
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
        let obj: T = parse_object(url_key, body)?;
        let key = obj.key();
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

    /// `GET /api/v1/inspect/endpoints/<needle>/`, with the endpoint's anti-spoofing drops and
    /// private address.
    pub fn inspect_endpoint(&self, needle: &str) -> ApiResult<Value> {
        let s = self.state();
        let spoofed = self.spoof_stats.lock().unwrap_or_else(|p| p.into_inner());
        let access = self.host_access.lock().unwrap_or_else(|p| p.into_inner());
        crate::views::inspect_endpoint(&s, &spoofed, &access, needle).ok_or_else(|| {
            ApiError::not_found(format!(
                "no endpoint whose id, container id or container name contains '{needle}'"
            ))
        })
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

/// The object of a write: the body parsed and normalized, its key checked against the URL's.
/// Public (hidden) for the fuzz targets, which feed it the bodies a client could send.
#[doc(hidden)]
pub fn parse_object<T: Object>(url_key: &str, body: &[u8]) -> ApiResult<T> {
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
    Ok(obj)
}
