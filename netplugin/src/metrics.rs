//! The agent's metrics (served on `--metrics-listen`, `model::metrics`). Two kinds:
//!
//! - events counted where they happen (CNI and Docker calls, the watch stream), through the one
//!   process-wide [`get`];
//! - state read at each scrape ([`Snapshot`]): endpoints per network, flows per table, and the
//!   per-rule and anti-spoofing counters the counter reporter (`cluster::report_counters`) last
//!   read from the switch, so a scrape costs the switch nothing.
//!
//! Cardinality is bounded by design: labels take values from fixed sets (CNI commands and error
//! codes, Docker calls, step names, pipeline tables) or from configuration (tenants, networks,
//! policies, rules); the only per-endpoint series is the anti-spoofing drop count, present only
//! for an endpoint that has dropped frames and gone with the endpoint.

use model::agent::RuleCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    command: String,
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    command: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    call: String,
}

fn latency_family<L: Clone + std::hash::Hash + Eq>() -> Family<L, Histogram, fn() -> Histogram> {
    Family::new_with_constructor(model::metrics::latency_histogram as fn() -> Histogram)
}

/// What the agent counts as it happens.
pub struct Metrics {
    registry: Registry,
    cni_duration: Family<CommandLabels, Histogram, fn() -> Histogram>,
    cni_steps: Family<StepLabels, Histogram, fn() -> Histogram>,
    cni_errors: Family<ErrorLabels, Counter>,
    docker_duration: Family<CallLabels, Histogram, fn() -> Histogram>,
    docker_errors: Family<CallLabels, Counter>,
    watch_connects: Counter,
    watch_relists: Counter,
    watch_events: Counter,
    watch_revision: Gauge,
    watch_lag: Histogram,
    /// When the oldest watch event not yet programmed into the switch arrived.
    unapplied_since: Mutex<Option<Instant>>,
    snapshot: Arc<Mutex<Snapshot>>,
    /// The counters the reporter last read: rule key -> counters, endpoint id -> drops.
    rules: Mutex<BTreeMap<String, RuleCounters>>,
    spoofed: Mutex<BTreeMap<String, u64>>,
}

/// The agent's metrics (made at first use).
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            cni_duration: latency_family(),
            cni_steps: latency_family(),
            cni_errors: Family::default(),
            docker_duration: latency_family(),
            docker_errors: Family::default(),
            watch_connects: Counter::default(),
            watch_relists: Counter::default(),
            watch_events: Counter::default(),
            watch_revision: Gauge::default(),
            watch_lag: model::metrics::latency_histogram(),
            unapplied_since: Mutex::new(None),
            snapshot: Arc::new(Mutex::new(Snapshot::default())),
            rules: Mutex::new(BTreeMap::new()),
            spoofed: Mutex::new(BTreeMap::new()),
            registry: Registry::default(),
        };
        registry.register(
            "contiv_cni_call_duration_seconds",
            "Time the agent took to answer a CNI call, by command (failed calls included)",
            m.cni_duration.clone(),
        );
        registry.register(
            "contiv_cni_step_duration_seconds",
            "Time of each step of a CNI call that succeeded, by command and step (the steps of the agent's \"CNI call done\" log line)",
            m.cni_steps.clone(),
        );
        registry.register(
            "contiv_cni_call_errors",
            "CNI calls that failed, by command and CNI error code",
            m.cni_errors.clone(),
        );
        registry.register(
            "contiv_docker_call_duration_seconds",
            "Time the agent took to answer a Docker network or IPAM driver call, by call",
            m.docker_duration.clone(),
        );
        registry.register(
            "contiv_docker_call_errors",
            "Docker driver calls that failed, by call",
            m.docker_errors.clone(),
        );
        registry.register(
            "contiv_watch_connects",
            "Watch streams opened to netmaster (more than one: the stream broke and was resumed)",
            m.watch_connects.clone(),
        );
        registry.register(
            "contiv_watch_relists",
            "Times the agent listed the cluster again from scratch (first start, a revision netmaster no longer has, a stream netmaster ended)",
            m.watch_relists.clone(),
        );
        registry.register(
            "contiv_watch_events",
            "Watch events received from netmaster",
            m.watch_events.clone(),
        );
        registry.register(
            "contiv_watch_revision",
            "The store revision of the last watch event received (compare with netmaster's contiv_store_revision)",
            m.watch_revision.clone(),
        );
        registry.register(
            "contiv_watch_apply_lag_seconds",
            "Time from a watch event's arrival until the switch holds what it changed (tunnels, other hosts' endpoints, policy)",
            m.watch_lag.clone(),
        );
        registry.register_collector(Box::new(SnapshotCollector(m.snapshot.clone())));
        Metrics { registry, ..m }
    }

    /// Records a CNI call: its time, its steps (those of the log line) when it succeeded, its
    /// error code when it failed.
    pub fn cni_call(
        &self,
        command: &str,
        took: Duration,
        steps: &crate::steps::Steps,
        error: Option<u32>,
    ) {
        let command = command.to_string();
        self.cni_duration
            .get_or_create(&CommandLabels {
                command: command.clone(),
            })
            .observe(took.as_secs_f64());
        match error {
            Some(code) => {
                self.cni_errors
                    .get_or_create(&ErrorLabels {
                        command,
                        code: code.to_string(),
                    })
                    .inc();
            }
            None => {
                for (step, ms) in steps.marks() {
                    self.cni_steps
                        .get_or_create(&StepLabels {
                            command: command.clone(),
                            step: step.to_string(),
                        })
                        .observe(ms / 1e3);
                }
            }
        }
    }

    /// Records a Docker driver call (`call` is one of the protocol's names).
    pub fn docker_call(&self, call: &str, took: Duration, ok: bool) {
        let l = CallLabels { call: call.into() };
        self.docker_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
        if !ok {
            self.docker_errors.get_or_create(&l).inc();
        }
    }

    pub fn watch_connected(&self, relist: bool) {
        self.watch_connects.inc();
        if relist {
            self.watch_relists.inc();
        }
    }

    /// A watch event arrived (not yet programmed).
    pub fn watch_event(&self, revision: u64) {
        self.watch_events.inc();
        self.watch_revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
        let mut since = self
            .unapplied_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        since.get_or_insert_with(Instant::now);
    }

    /// The reconciler starts a round: every event received so far is in it. Returns when the
    /// oldest arrived, to give to [`Metrics::watch_applied`] once the round is in the switch.
    pub fn watch_round(&self) -> Option<Instant> {
        self.unapplied_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The round did not reach the switch (the view is not complete, or applying failed): its
    /// events wait for the next one, their lag still counting.
    pub fn watch_requeue(&self, oldest: Option<Instant>) {
        let Some(t) = oldest else { return };
        let mut since = self
            .unapplied_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *since = Some(since.map_or(t, |s| s.min(t)));
    }

    pub fn watch_applied(&self, oldest: Option<Instant>) {
        if let Some(t) = oldest {
            self.watch_lag.observe(t.elapsed().as_secs_f64());
        }
    }

    /// The counters the reporter just read from the switch.
    pub fn set_rule_counters(&self, rules: &BTreeMap<String, RuleCounters>) {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone_from(rules);
    }

    pub fn set_spoof_counters(&self, endpoints: &BTreeMap<String, u64>) {
        self.spoofed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone_from(endpoints);
    }

    /// The text of one scrape: the state of `dp` now, with what was counted.
    pub async fn render(&self, dp: &crate::datapath::Datapath) -> String {
        let state = dp.metrics_state().await;
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let spoofed = self
            .spoofed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let snap = Snapshot::of(state, &rules, &spoofed);
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snap;
        model::metrics::encode(&self.registry)
    }
}

/// What the datapath knows now, for a scrape (see `Datapath::metrics_state`).
#[derive(Debug, Default)]
pub struct DatapathState {
    /// (tenant, network) -> local endpoints.
    pub endpoints: BTreeMap<(String, String), u64>,
    /// Table -> flows the agent installed there.
    pub flows: BTreeMap<u8, u64>,
    /// Rule key (`tenant:policy:ruleId`) -> its direction, for the rules known here.
    pub rule_directions: BTreeMap<String, String>,
    /// The local endpoints' ids.
    pub local: std::collections::BTreeSet<String>,
    pub ovsdb_connections: u64,
    pub openflow_connections: u64,
}

/// The series computed at each scrape.
#[derive(Debug, Default)]
struct Snapshot {
    endpoints: Vec<([(&'static str, String); 2], u64)>,
    flows: Vec<([(&'static str, String); 2], u64)>,
    rule_packets: Vec<([(&'static str, String); 4], u64)>,
    rule_bytes: Vec<([(&'static str, String); 4], u64)>,
    spoofed: Vec<([(&'static str, String); 1], u64)>,
    ovsdb_connections: u64,
    openflow_connections: u64,
}

impl Snapshot {
    fn of(
        st: DatapathState,
        rules: &BTreeMap<String, RuleCounters>,
        spoofed: &BTreeMap<String, u64>,
    ) -> Self {
        let mut s = Snapshot {
            ovsdb_connections: st.ovsdb_connections,
            openflow_connections: st.openflow_connections,
            ..Default::default()
        };
        for ((tenant, network), n) in st.endpoints {
            s.endpoints
                .push(([("tenant", tenant), ("network", network)], n));
        }
        for (table, n) in st.flows {
            s.flows.push((
                [
                    ("table", table.to_string()),
                    ("name", crate::fabric::table::name(table).to_string()),
                ],
                n,
            ));
        }
        // Only rules still known here: a deleted rule's series go with it.
        for (key, c) in rules {
            let Some(direction) = st.rule_directions.get(key) else {
                continue;
            };
            let mut parts = key.splitn(3, ':');
            let (Some(tenant), Some(policy), Some(rule)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let labels = [
                ("tenant", tenant.to_string()),
                ("policy", policy.to_string()),
                ("rule", rule.to_string()),
                ("direction", direction.clone()),
            ];
            s.rule_packets.push((labels.clone(), c.packets));
            s.rule_bytes.push((labels, c.bytes));
        }
        // Only endpoints still here: a deleted endpoint's series go at once, not at the next
        // read of the counters.
        for (id, n) in spoofed {
            if st.local.contains(id) {
                s.spoofed.push(([("endpoint", id.clone())], *n));
            }
        }
        s
    }
}

#[derive(Debug)]
struct SnapshotCollector(Arc<Mutex<Snapshot>>);

fn gauges<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(L, u64)],
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(0i64);
    let mut m = enc.encode_descriptor(name, help, None, g.metric_type())?;
    for (labels, v) in series {
        ConstGauge::new(i64::try_from(*v).unwrap_or(i64::MAX)).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(L, u64)],
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(0u64);
    let mut m = enc.encode_descriptor(name, help, None, c.metric_type())?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        gauges(
            &mut enc,
            "contiv_endpoints",
            "Endpoints on this host, by tenant and network",
            &s.endpoints,
        )?;
        gauges(
            &mut enc,
            "contiv_flows",
            "OpenFlow flows the agent installed on its bridge, by table",
            &s.flows,
        )?;
        counters(
            &mut enc,
            "contiv_rule_packets",
            "Packets the flows of a policy rule matched on this host (restarts from 0 when the rule's flows are replaced)",
            &s.rule_packets,
        )?;
        counters(
            &mut enc,
            "contiv_rule_bytes",
            "Bytes the flows of a policy rule matched on this host",
            &s.rule_bytes,
        )?;
        counters(
            &mut enc,
            "contiv_spoofed_packets",
            "Frames an endpoint sent under an identity not its own, dropped by the switch (only endpoints that sent any)",
            &s.spoofed,
        )?;
        counter(
            &mut enc,
            "contiv_ovsdb_connections",
            "Connections the agent made to ovsdb-server (the first included: more than 1 means reconnects)",
            s.ovsdb_connections,
        )?;
        counter(
            &mut enc,
            "contiv_openflow_connections",
            "OpenFlow connections the agent made to ovs-vswitchd (one per bridge at first: more means reconnects)",
            s.openflow_connections,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_shows_only_endpoints_and_rules_still_here() {
        let m = Metrics::new();
        let st = DatapathState {
            local: ["a".to_string()].into(),
            endpoints: [(("t".to_string(), "n".to_string()), 1)].into(),
            flows: [(0, 4), (24, 2)].into(),
            rule_directions: [("t:p:1".to_string(), "in".to_string())].into(),
            ovsdb_connections: 1,
            openflow_connections: 2,
        };
        let rules = [
            (
                "t:p:1".to_string(),
                RuleCounters {
                    packets: 7,
                    bytes: 420,
                },
            ),
            // A rule deleted since the counters were read.
            (
                "t:p:gone".to_string(),
                RuleCounters {
                    packets: 1,
                    bytes: 60,
                },
            ),
        ]
        .into();
        // "b" was deleted since the counters were read.
        let spoofed = [("a".to_string(), 3), ("b".to_string(), 5)].into();
        *m.snapshot.lock().unwrap() = Snapshot::of(st, &rules, &spoofed);
        let text = model::metrics::encode(&m.registry);
        for want in [
            "contiv_spoofed_packets_total{endpoint=\"a\"} 3\n",
            "contiv_rule_packets_total{tenant=\"t\",policy=\"p\",rule=\"1\",direction=\"in\"} 7\n",
            "contiv_rule_bytes_total{tenant=\"t\",policy=\"p\",rule=\"1\",direction=\"in\"} 420\n",
            "contiv_endpoints{tenant=\"t\",network=\"n\"} 1\n",
            "contiv_flows{table=\"24\",name=\"ingress\"} 2\n",
            "contiv_openflow_connections_total 2\n",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        assert!(!text.contains("endpoint=\"b\""), "{text}");
        assert!(!text.contains("rule=\"gone\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
