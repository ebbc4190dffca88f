//! netmaster's metrics (served on `--metrics-listen`, `model::metrics`): store transactions and
//! leadership counted as they happen; address pools, endpoints, nodes and watchers read from the
//! in-memory state at each scrape.
//!
//! Cardinality: the per-network series are one per network (configuration); nothing is labelled
//! per endpoint or per node.

use crate::Master;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What netmaster counts, and the registry a scrape encodes.
pub struct MasterMetrics {
    registry: Registry,
    txn_duration: Histogram,
    txn_errors: Counter,
    /// The highest store revision this master loaded or wrote.
    revision: std::sync::atomic::AtomicU64,
    snapshot: Arc<Mutex<Snapshot>>,
}

impl std::fmt::Debug for MasterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterMetrics")
    }
}

impl Default for MasterMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let txn_duration = model::metrics::latency_histogram();
        let txn_errors = Counter::default();
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        registry.register(
            "contiv_store_txn_duration_seconds",
            "Time of each store transaction this master sent (embedded: group commit with fsync; etcd: a round trip)",
            txn_duration.clone(),
        );
        registry.register(
            "contiv_store_txn_errors",
            "Store transactions that failed with a store error (unreachable, backend failure), not a guard",
            txn_errors.clone(),
        );
        registry.register_collector(Box::new(SnapshotCollector(snapshot.clone())));
        MasterMetrics {
            registry,
            txn_duration,
            txn_errors,
            revision: Default::default(),
            snapshot,
        }
    }
}

impl MasterMetrics {
    /// A transaction sent: its time, and the revision it wrote (`None`: a store error).
    pub(crate) fn txn(&self, took: Duration, revision: Option<u64>) {
        self.txn_duration.observe(took.as_secs_f64());
        match revision {
            Some(r) => self.saw_revision(r),
            None => {
                self.txn_errors.inc();
            }
        }
    }

    /// The store is at `revision` at least (loaded, written).
    pub(crate) fn saw_revision(&self, revision: u64) {
        self.revision
            .fetch_max(revision, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One network's allocation, read at a scrape.
#[derive(Debug, Default, Clone)]
struct NetworkUse {
    tenant: String,
    network: String,
    /// (family, addresses in the pool, free)
    pools: Vec<(&'static str, u128, u128)>,
    endpoints: u64,
}

#[derive(Debug, Default)]
struct Snapshot {
    networks: Vec<NetworkUse>,
    nodes: u64,
    watchers: u64,
    revision: u64,
    leader: bool,
    leader_changes: u64,
}

impl Master {
    /// The text of one scrape.
    pub fn render_metrics(&self) -> String {
        let mut snap = Snapshot {
            watchers: self.watch.watchers() as u64,
            revision: self
                .metrics
                .revision
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(*self.applied.borrow()),
            leader: self.leadership.is_leader(),
            leader_changes: self.leadership.leader_changes(),
            ..Default::default()
        };
        {
            let st = self.state();
            snap.nodes = st.nodes.len() as u64;
            for n in st.networks.values() {
                let mut pools = Vec::new();
                let size = |p: &crate::alloc::Pool| {
                    let (lo, hi) = p.bounds();
                    if hi >= lo { hi - lo + 1 } else { 0 }
                };
                pools.push(("ipv4", size(&n.v4), n.v4.free_count()));
                if let Some(v6) = &n.v6 {
                    pools.push(("ipv6", size(&v6.pool), v6.pool.free_count()));
                }
                snap.networks.push(NetworkUse {
                    tenant: n.cfg.tenant_name.clone(),
                    network: n.cfg.network_name.clone(),
                    pools,
                    endpoints: n.endpoints.len() as u64,
                });
            }
        }
        *self
            .metrics
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = snap;
        model::metrics::encode(&self.metrics.registry)
    }
}

#[derive(Debug)]
struct SnapshotCollector(Arc<Mutex<Snapshot>>);

/// Past `i64`/`u64`, a gauge says its maximum (an IPv6 /64 has 2^64 addresses).
fn clamp(v: u128) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let g = ConstGauge::new(0i64);
        {
            let mut m = enc.encode_descriptor(
                "contiv_network_addresses",
                "Addresses of a network's address range (its subnet's host addresses), by family",
                None,
                g.metric_type(),
            )?;
            for n in &s.networks {
                for (family, size, _) in &n.pools {
                    let l = [
                        ("tenant", n.tenant.as_str()),
                        ("network", n.network.as_str()),
                        ("family", family),
                    ];
                    ConstGauge::new(clamp(*size)).encode(m.encode_family(&l)?)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "contiv_network_addresses_free",
                "Addresses of that range still free for endpoints (not an endpoint's, the gateway, a group pool's or a service's)",
                None,
                g.metric_type(),
            )?;
            for n in &s.networks {
                for (family, _, free) in &n.pools {
                    let l = [
                        ("tenant", n.tenant.as_str()),
                        ("network", n.network.as_str()),
                        ("family", family),
                    ];
                    ConstGauge::new(clamp(*free)).encode(m.encode_family(&l)?)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "contiv_network_endpoints",
                "Endpoints of a network, on every host",
                None,
                g.metric_type(),
            )?;
            for n in &s.networks {
                let l = [
                    ("tenant", n.tenant.as_str()),
                    ("network", n.network.as_str()),
                ];
                ConstGauge::new(clamp(u128::from(n.endpoints))).encode(m.encode_family(&l)?)?;
            }
        }
        for (name, help, v) in [
            (
                "contiv_nodes",
                "Nodes registered (agents whose lease is alive)",
                s.nodes,
            ),
            (
                "contiv_watch_streams",
                "Watch streams open on this master (one per agent, netctl watches)",
                s.watchers,
            ),
            (
                "contiv_store_revision",
                "The store revision this master has loaded, written or applied",
                s.revision,
            ),
            (
                "contiv_leader",
                "1 when this master leads (always, on the embedded store)",
                u64::from(s.leader),
            ),
        ] {
            let g = ConstGauge::new(clamp(u128::from(v)));
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let c = ConstCounter::new(s.leader_changes);
        c.encode(enc.encode_descriptor(
            "contiv_leader_changes",
            "Times this master saw the leader change (itself or another master taking the lead, or none leading)",
            None,
            c.metric_type(),
        )?)?;
        Ok(())
    }
}
