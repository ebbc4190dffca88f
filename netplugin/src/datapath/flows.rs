//! The flows: what they are computed from, what is installed, and the sync between the two.

use super::{Datapath, DatapathError};
use crate::fabric::{Inputs, cookie};
use model::agent::{Endpoint, RuleCounters};
use ovs::Flow;
use std::collections::BTreeMap;

/// What the flows are computed from, and what is installed.
#[derive(Default)]
pub(super) struct FabricState {
    pub inputs: Inputs,
    /// Peer host -> VTEP address of its tunnel port.
    pub peers: BTreeMap<String, String>,
    /// Whether the cluster view (remote endpoints, peers) is complete. Until it is, flows that
    /// depend on it are left as they are (an agent restart must not cut running traffic).
    pub synced: bool,
    /// Whether this host's endpoints have been loaded (after a restart).
    pub locals_loaded: bool,
    /// Installed flows by cookie; `None`: present in the switch, content not known (found at
    /// start or after ovs-vswitchd restarted).
    pub applied: BTreeMap<u64, Option<Vec<Flow>>>,
    /// Meters installed: id -> (kbps, burst kbits).
    pub meters: BTreeMap<u32, (u64, u64)>,
    /// Bumped by every endpoint change that waits for [`Datapath::commit`].
    pub generation: u64,
    /// Every endpoint (local and remote) the flows were last computed from: id -> its
    /// conntrack identity. When one goes, its connections are forgotten (see `forget_departed`).
    pub(super) tracked: BTreeMap<String, Tracked>,
    /// `global.pvtSubnet`, from the cluster view (empty: Contiv's default).
    pub pvt_subnet: String,
}

/// What identifies an endpoint's connections in conntrack, and what they were judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tracked {
    zone: u16,
    ip: String,
    /// Its IPv6 address, empty on a network without IPv6.
    ip6: String,
    group: u32,
}

impl Tracked {
    fn of(ep: &Endpoint) -> Self {
        Tracked {
            zone: crate::fabric::zone(ep) as u16,
            ip: ep.ip_address.clone(),
            ip6: ep.ipv6_address.clone(),
            group: ep.group_id,
        }
    }

    /// The conntrack tuples its connections are found by: each address as either side.
    fn tuples(&self) -> Vec<String> {
        let mut t = vec![
            format!("ct_nw_src={}", self.ip),
            format!("ct_nw_dst={}", self.ip),
        ];
        if !self.ip6.is_empty() {
            t.push(format!("ct_ipv6_src={}", self.ip6));
            t.push(format!("ct_ipv6_dst={}", self.ip6));
        }
        t
    }
}

impl Datapath {
    /// Records which cookies and meters the switch holds, so that stale ones get removed: a
    /// profile removed or an endpoint deleted while the agent was down leaves meters nobody
    /// wants (the bridge is the agent's: every meter on it is one the agent made).
    pub(super) async fn learn_installed(&self, st: &mut FabricState) -> Result<(), DatapathError> {
        st.applied = self
            .flows
            .dump_flows(&self.bridge, None)
            .await?
            .into_iter()
            .map(|f| (f.cookie, None))
            .collect();
        st.meters = self
            .flows
            .dump_meters(&self.bridge)
            .await?
            .into_iter()
            .map(|m| (m.id, (m.rate, m.burst)))
            .collect();
        Ok(())
    }

    /// Installs the difference between the desired flows and the installed ones, in one bundle.
    pub(super) async fn apply(&self, st: &mut FabricState) -> Result<(), DatapathError> {
        let want = crate::fabric::desired(&st.inputs);
        // Flows are left alone until what they derive from is known: this host's endpoints
        // (from OVS and netmaster at start) and the cluster view. A restarting agent must not
        // remove flows that running pods use.
        let ours = |c: u64| match cookie::class(c) {
            cookie::BASE => true,
            cookie::ENDPOINT => st.locals_loaded,
            // NetworkPolicy flows wait for the Kubernetes caches: isolated pods stay isolated
            // by the flows found in the switch while a restarted agent lists. An agent started
            // without enforcement removes what an earlier run left.
            cookie::NETPOL => {
                st.locals_loaded && (st.inputs.netpol.synced || !st.inputs.netpol.enabled)
            }
            _ => st.locals_loaded && st.synced,
        };
        let mut sets: Vec<(u64, Vec<Flow>)> = Vec::new();
        for (c, flows) in &want {
            if ours(*c) && st.applied.get(c) != Some(&Some(flows.clone())) {
                sets.push((*c, flows.clone()));
            }
        }
        for c in st.applied.keys() {
            if !want.contains_key(c) && ours(*c) {
                sets.push((*c, Vec::new()));
            }
        }
        // Meters before the flows that use them; stale ones after the flows stop using them.
        let want_meters = if st.locals_loaded {
            crate::fabric::desired_meters(&st.inputs)
        } else {
            st.meters.clone()
        };
        for (id, m) in &want_meters {
            if st.meters.get(id) != Some(m) {
                self.flows.set_meter(&self.bridge, *id, m.0, m.1).await?;
                st.meters.insert(*id, *m);
            }
        }
        crate::steps::mark("desired");
        if !sets.is_empty() {
            self.flows.replace_flow_sets(&self.bridge, &sets).await?;
        }
        crate::steps::mark("bundle");
        let stale: Vec<u32> = st
            .meters
            .keys()
            .filter(|id| !want_meters.contains_key(id))
            .copied()
            .collect();
        for id in stale {
            self.flows.del_meter(&self.bridge, id).await?;
            st.meters.remove(&id);
        }
        self.forget_departed(st).await;
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
        if sets.is_empty() {
            return Ok(());
        }
        for (c, flows) in sets {
            if flows.is_empty() {
                st.applied.remove(&c);
            } else {
                st.applied.insert(c, Some(flows));
            }
        }
        Ok(())
    }

    /// Forgets the tracked connections of endpoints that are gone (or changed group) since the
    /// last apply. Conntrack knows connections by addresses only: a connection of a deleted pod
    /// would otherwise stay established for the next pod given its address, whatever that pod's
    /// group, and pass the policy tables without meeting a rule. Only while rules exist (else
    /// the pipeline tracks nothing); a failure is logged, since the flows are already right.
    async fn forget_departed(&self, st: &mut FabricState) {
        use futures::StreamExt;
        if !(st.locals_loaded && st.synced) {
            return;
        }
        let now: BTreeMap<String, Tracked> = st
            .inputs
            .local
            .iter()
            .map(|(id, (_, ep))| (id, ep))
            .chain(st.inputs.remote.iter())
            .filter(|(_, ep)| !ep.ip_address.is_empty())
            .map(|(id, ep)| (id.clone(), Tracked::of(ep)))
            .collect();
        let old = std::mem::replace(&mut st.tracked, now);
        if st.inputs.policy.rules.is_empty() && !st.inputs.netpol.enabled {
            return;
        }
        // Only zones of networks with members here hold entries on this switch (the others
        // have no flows here), before or after the change.
        let zones: std::collections::BTreeSet<u16> = old
            .iter()
            .filter(|(id, _)| st.inputs.local.contains_key(*id))
            .map(|(_, t)| t.zone)
            .chain(st.inputs.local.values().map(|(_, ep)| Tracked::of(ep).zone))
            .collect();
        let flushes: Vec<(String, u16, String)> = old
            .iter()
            .filter(|(id, t)| st.tracked.get(*id) != Some(t) && zones.contains(&t.zone))
            .flat_map(|(id, t)| {
                t.tuples()
                    .into_iter()
                    .map(move |tuple| (id.clone(), t.zone, tuple))
            })
            .collect();
        // A few at a time: a host that left takes all its endpoints with it, and the flows of
        // every other change wait for this pass.
        let (flows, bridge) = (self.flows.clone(), self.bridge.clone());
        let mut results = futures::stream::iter(flushes)
            .map(move |(id, zone, tuple)| {
                let (flows, bridge) = (flows.clone(), bridge.clone());
                async move { (id, flows.flush_conntrack(&bridge, zone, &tuple).await) }
            })
            .buffer_unordered(8);
        while let Some((id, r)) = results.next().await {
            if let Err(e) = r {
                tracing::warn!(endpoint = %id, error = %e, "forget the connections of a departed endpoint");
            }
        }
    }

    /// Turns Kubernetes NetworkPolicy enforcement on: from the next apply every unicast IP
    /// packet is tracked. Called once at start, before the endpoints are loaded.
    pub async fn enable_netpol(&self) {
        self.fabric.lock().await.inputs.netpol.enabled = true;
    }

    /// Installs what NetworkPolicy allows this host's pods (`crate::netpol`); only the
    /// endpoints whose allowances changed get new flows.
    pub async fn set_netpol(
        &self,
        pods: BTreeMap<String, crate::netpol::PodPolicy>,
    ) -> Result<(), DatapathError> {
        self.change_locals(|st| {
            st.inputs.netpol.pods = pods;
            st.inputs.netpol.synced = true;
        })
        .await
    }

    /// Installs (replaces) the flows of one local endpoint and of its network.
    pub async fn program_endpoint(&self, ofport: u32, ep: &Endpoint) -> Result<(), DatapathError> {
        self.set_local_endpoints(vec![(ofport, ep.clone())], false)
            .await
    }

    /// Records local endpoints (all of them when `replace_all`, as after a restart) and applies.
    pub async fn set_local_endpoints(
        &self,
        eps: Vec<(u32, Endpoint)>,
        replace_all: bool,
    ) -> Result<(), DatapathError> {
        self.change_locals(|st| {
            if replace_all {
                st.inputs.local.clear();
                st.locals_loaded = true;
            }
            for (port, ep) in eps {
                st.inputs.local.insert(ep.endpoint_id.clone(), (port, ep));
            }
        })
        .await
    }

    /// Changes the local endpoints under the fabric lock and returns once that change is
    /// installed (see [`Datapath::commit`]).
    pub(super) async fn change_locals(
        &self,
        change: impl FnOnce(&mut FabricState),
    ) -> Result<(), DatapathError> {
        let generation = {
            let mut st = self.fabric.lock().await;
            change(&mut st);
            st.generation += 1;
            st.generation
        };
        self.commit(generation).await
    }

    /// Installs the inputs as of `generation` (or later). Group commit: endpoint changes made
    /// while an apply is in flight go in the next one together, one bundle for all, instead of
    /// one bundle each in turn (8 parallel DELs waited behind each other's bundles).
    async fn commit(&self, generation: u64) -> Result<(), DatapathError> {
        let mut done = self.committed.lock().await;
        crate::steps::mark("commit_wait");
        if *done >= generation {
            // An apply that started after this change (it read a later generation under the
            // fabric lock) succeeded: the change is installed.
            return Ok(());
        }
        let mut st = self.fabric.lock().await;
        crate::steps::mark("fabric_lock");
        let now = st.generation;
        self.apply(&mut st).await?;
        *done = now;
        Ok(())
    }

    /// Removes an endpoint's flows (its port stays: see [`Datapath::remove_port`]).
    pub async fn remove_endpoint_flows(&self, endpoint_id: &str) -> Result<(), DatapathError> {
        self.change_locals(|st| {
            st.inputs.local.remove(endpoint_id);
        })
        .await?;
        crate::steps::mark("flows");
        Ok(())
    }

    /// The packets and bytes each installed policy rule's flows matched on this switch, by
    /// rule key (`tenant:policy:ruleId`); empty, without asking the switch, when no rule has
    /// flows here. Counters restart when a rule's flows are replaced (a group it applies to
    /// gained or lost its last endpoint here).
    pub async fn rule_counters(&self) -> Result<BTreeMap<String, RuleCounters>, DatapathError> {
        let keys: BTreeMap<u64, String> = {
            let st = self.fabric.lock().await;
            st.inputs
                .policy
                .rules
                .keys()
                .map(|k| (cookie::rule(k), k.clone()))
                .filter(|(c, _)| matches!(st.applied.get(c), Some(Some(_))))
                .collect()
        };
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        let filter = ovs::CookieMask::masked(cookie::RULE, cookie::CLASS_MASK);
        let mut out = BTreeMap::new();
        for f in self.flows.dump_flows(&self.bridge, Some(filter)).await? {
            if let Some(k) = keys.get(&f.cookie) {
                out.entry(k.clone())
                    .or_insert_with(RuleCounters::default)
                    .add(RuleCounters {
                        packets: f.n_packets,
                        bytes: f.n_bytes,
                    });
            }
        }
        Ok(out)
    }

    /// How many frames each local endpoint sent under an identity not its own (another MAC or
    /// address, a foreign ND option, a router advertisement), dropped in table 0 before any
    /// policy decision: the packet counts of its anti-spoofing drops, by endpoint id. Endpoints
    /// with none are left out. On a trunk, a frame with a MAC no endpoint of the trunk has
    /// falls to the table-miss drop and is counted for no endpoint (docs/security.md).
    pub async fn spoof_counters(&self) -> Result<BTreeMap<String, u64>, DatapathError> {
        let ids: BTreeMap<u64, String> = {
            let st = self.fabric.lock().await;
            st.inputs
                .local
                .keys()
                .map(|id| (cookie::endpoint(id), id.clone()))
                .collect()
        };
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let filter = ovs::CookieMask::masked(cookie::ENDPOINT, cookie::CLASS_MASK);
        let mut out = BTreeMap::new();
        for f in self.flows.dump_flows(&self.bridge, Some(filter)).await? {
            let Some(id) = ids.get(&f.cookie) else {
                continue;
            };
            let flow = ovs::Flow::new(f.table, f.priority, "", f.actions.as_str());
            if crate::fabric::is_spoof_drop(&flow) && f.n_packets > 0 {
                *out.entry(id.clone()).or_insert(0) += f.n_packets;
            }
        }
        Ok(out)
    }

    /// What a metrics scrape shows of the datapath: read from the agent's own records (what it
    /// installed), so a scrape costs the switch nothing.
    pub async fn metrics_state(&self) -> crate::metrics::DatapathState {
        let st = self.fabric.lock().await;
        let mut out = crate::metrics::DatapathState::default();
        for (id, (_, ep)) in &st.inputs.local {
            *out.endpoints
                .entry((ep.tenant_name.clone(), ep.network_name.clone()))
                .or_default() += 1;
            out.local.insert(id.clone());
        }
        for f in st.applied.values().flatten().flatten() {
            *out.flows.entry(f.table).or_default() += 1;
        }
        out.rule_directions = st
            .inputs
            .policy
            .rules
            .iter()
            .map(|(k, r)| (k.clone(), r.direction.clone()))
            .collect();
        drop(st);
        out.ovsdb_connections = self.vs.client().state().borrow().generation;
        out.openflow_connections = self.flows.connections();
        out
    }

    /// Whether the switch holds as many flows as the agent installed (a cheap check that a
    /// restarting ovs-vswitchd did not drop flows installed while it was still starting).
    pub async fn flows_intact(&self) -> Result<bool, DatapathError> {
        let st = self.fabric.lock().await;
        let want: usize = st.applied.values().flatten().map(Vec::len).sum();
        let have = self.flows.dump_flows(&self.bridge, None).await?.len();
        Ok(have == want)
    }
}

/// An endpoint's own flows (see [`crate::fabric::local_flows`]), with ARP proxying on.
pub fn endpoint_flows(c: u64, ofport: u32, ep: &Endpoint) -> Vec<Flow> {
    crate::fabric::local_flows(c, ofport, ep, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_flows_pin_identity() {
        let ep = Endpoint {
            endpoint_id: "e".into(),
            ip_address: "10.1.2.2".into(),
            mac_address: "02:02:0a:01:02:02".into(),
            ..Default::default()
        };
        let f = endpoint_flows(7, 5, &ep);
        assert!(f.iter().all(|x| x.cookie == 7));
        assert!(f.iter().any(|x| x.matches
            == "in_port=5,dl_src=02:02:0a:01:02:02,ip,nw_src=10.1.2.2"
            && x.actions.ends_with("resubmit(,10)")));
        assert!(
            f.iter()
                .any(|x| x.matches == "in_port=5" && x.actions == "drop" && x.priority == 100)
        );
    }
}
