//! The agent's link to netmaster: node registration with heartbeats, and the watch stream that
//! keeps a view of the cluster (networks, groups, nodes) for the reconcilers.

use crate::datapath::ClusterInputs;
use futures::StreamExt;
use model::agent::{
    Endpoint, HostAccessReport, Node, NodeRegistration, RuleStatsReport, SpoofStatsReport,
    WatchEvent, WatchEventType,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Registers the node and renews the registration for as long as the agent runs.
pub async fn heartbeat(client: model::Client, reg: NodeRegistration) {
    let mut registered = false;
    // The last refusal logged: netmaster refusing the registration (a 409: the VTEP address
    // is a network's gateway) is said once, not every second.
    let mut refused = None;
    loop {
        let every = match client.register_node(&reg).await {
            Ok(lease) => {
                if !registered {
                    tracing::info!(node = %reg.hostname, vtep = %reg.vtep_ip, ttl = lease.ttl_seconds, "registered with netmaster");
                    registered = true;
                }
                refused = None;
                Duration::from_secs(lease.heartbeat_seconds.max(1))
            }
            Err(e) => {
                let refusal = e.status().is_some_and(|s| (400..500).contains(&s));
                if registered || (refusal && refused.as_ref() != Some(&e.to_string())) {
                    tracing::warn!(error = %e, "renew node registration");
                }
                if refusal {
                    refused = Some(e.to_string());
                }
                registered = false;
                Duration::from_secs(1)
            }
        };
        tokio::time::sleep(every).await;
    }
}

/// How often the agent reads its counters (rule counters only while rules have flows here).
const COUNTERS_EVERY: Duration = Duration::from_secs(2);
/// Unchanged counters are sent again this often: the master keeps them in memory only, and a
/// new leader (or a restarted master) must get them without waiting for traffic.
const COUNTERS_RESEND: Duration = Duration::from_secs(10);

/// What the agent last told netmaster of one kind of counters, and when: decides whether the
/// counters just read are worth a report.
#[derive(Debug)]
struct Reported<T> {
    last: Option<T>,
    at: Instant,
}

impl<T: PartialEq> Reported<T> {
    fn new(now: Instant) -> Self {
        Reported {
            last: None,
            at: now,
        }
    }

    /// Whether `counters` (read at `now`) should be sent: they changed, or the last report is
    /// [`COUNTERS_RESEND`] old. An empty report (nothing to count here) is sent once: the
    /// master forgets the node's counters, and nothing needs repeating.
    fn due(&self, counters: &T, empty: bool, now: Instant) -> bool {
        let fresh = now.saturating_duration_since(self.at) < COUNTERS_RESEND || empty;
        !(self.last.as_ref() == Some(counters) && fresh)
    }

    fn sent(&mut self, counters: T, now: Instant) {
        self.last = Some(counters);
        self.at = now;
    }

    /// Sends `counters` with `send` if they are [due](Self::due), and remembers them once sent
    /// (a failed report is tried again at the next look).
    async fn offer(
        &mut self,
        counters: T,
        empty: bool,
        what: &str,
        send: impl AsyncFnOnce(&T) -> Result<(), model::ClientError>,
    ) {
        if !self.due(&counters, empty, Instant::now()) {
            return;
        }
        match send(&counters).await {
            Ok(()) => self.sent(counters, Instant::now()),
            Err(e) => tracing::debug!(error = %e, "report {what}"),
        }
    }
}

/// Reports this node's counters to netmaster, for as long as the agent runs: the per-rule
/// packet counters (`rulestats`), the per-endpoint anti-spoofing drops (`spoofstats`) and the
/// endpoints' private addresses (`hostaccess`, for endpoint inspect), each when it changes,
/// and again every [`COUNTERS_RESEND`]. A restarted agent's counters start from 0: it replaces
/// the flows it finds, and their counts with them.
pub async fn report_counters(
    dp: Arc<crate::datapath::Datapath>,
    client: model::Client,
    me: String,
) {
    let mut rules_sent = Reported::new(Instant::now());
    let mut spoof_sent = Reported::new(Instant::now());
    let mut access_sent = Reported::new(Instant::now());
    let mut spoofed = BTreeMap::new();
    loop {
        tokio::time::sleep(COUNTERS_EVERY).await;
        match dp.spoof_counters().await {
            Ok(endpoints) => {
                crate::metrics::get().set_spoof_counters(&endpoints);
                warn_spoofing(&endpoints, &spoofed);
                spoofed.clone_from(&endpoints);
                let empty = endpoints.is_empty();
                spoof_sent
                    .offer(endpoints, empty, "anti-spoofing counters", async |e| {
                        let report = SpoofStatsReport {
                            hostname: me.clone(),
                            endpoints: e.clone(),
                        };
                        client.report_spoof_stats(&report).await
                    })
                    .await;
            }
            Err(e) => tracing::debug!(error = %e, "read anti-spoofing counters"),
        }
        // None until the agent knows its endpoints: nothing to say yet.
        if let Some(inputs) = dp.northsouth_inputs().await {
            let addresses: BTreeMap<String, String> = crate::northsouth::private_addresses(&inputs)
                .into_iter()
                .map(|(id, a)| (id, a.to_string()))
                .collect();
            let empty = addresses.is_empty();
            access_sent
                .offer(addresses, empty, "private addresses", async |a| {
                    let report = HostAccessReport {
                        hostname: me.clone(),
                        endpoints: a.clone(),
                    };
                    client.report_host_access(&report).await
                })
                .await;
        }
        match dp.rule_counters().await {
            Ok(rules) => {
                crate::metrics::get().set_rule_counters(&rules);
                let empty = rules.is_empty();
                rules_sent
                    .offer(rules, empty, "rule counters", async |r| {
                        let report = RuleStatsReport {
                            hostname: me.clone(),
                            rules: r.clone(),
                        };
                        client.report_rule_stats(&report).await
                    })
                    .await;
            }
            Err(e) => tracing::debug!(error = %e, "read rule counters"),
        }
    }
}

/// Logs, as a warning per endpoint, the frames a pod sent under another identity since the last
/// look (the switch dropped them in table 0; docs/security.md "Pod identity"). `seen` holds the
/// counts last read.
fn warn_spoofing(now: &BTreeMap<String, u64>, seen: &BTreeMap<String, u64>) {
    for (id, n) in now {
        // Below the last count: the flows were replaced and count from 0 again.
        let before = seen.get(id).copied().filter(|b| b <= n).unwrap_or(0);
        if *n > before {
            tracing::warn!(
                endpoint = %id,
                dropped = n,
                new = n - before,
                "a pod sent frames under an identity not its own (another MAC or address, a foreign ND option or a router advertisement): dropped"
            );
        }
    }
}

/// What the agent knows of the cluster, from the watch stream.
#[derive(Debug, Default)]
pub struct ClusterView {
    pub revision: u64,
    pub synced: bool,
    /// The node the stream is filtered for (netmaster's per-node stream), None for the full
    /// stream. A per-node stream carries a network's endpoints only while the node has one
    /// there: when its last one goes, the view drops that network's endpoints (they would not
    /// be kept up to date; they come again, in full, when the node joins the network again).
    pub filtered_for: Option<String>,
    /// kind -> key -> (value, state)
    pub objects: BTreeMap<String, BTreeMap<String, (serde_json::Value, Option<serde_json::Value>)>>,
}

impl ClusterView {
    /// The revision a broken stream resumes from: the last one seen, again, not the next. The
    /// events of one store transaction share a revision, and a stream cut between two of them
    /// resumed at the next revision would miss the rest; replaying a revision is harmless
    /// (`apply` of an event already applied changes nothing). None before the first listing.
    fn resume_from(&self) -> Option<u64> {
        self.synced.then_some(self.revision)
    }

    fn apply(&mut self, e: WatchEvent) {
        match e.event_type {
            WatchEventType::Put => {
                self.objects
                    .entry(e.kind)
                    .or_default()
                    .insert(e.key, (e.value.unwrap_or_default(), e.state));
                self.revision = self.revision.max(e.revision);
            }
            WatchEventType::Delete => {
                let gone = self.objects.get_mut(&e.kind).and_then(|m| m.remove(&e.key));
                if e.kind == "endpoint"
                    && let Some((v, _)) = gone
                {
                    self.left_network_if_last(&v);
                }
                self.revision = self.revision.max(e.revision);
            }
            WatchEventType::Synced => {
                self.revision = e.revision;
                self.synced = true;
            }
            WatchEventType::Error => {}
        }
    }
}

impl ClusterView {
    /// After the delete of endpoint `gone`: when it was the filtered-for node's last endpoint in
    /// its network, forgets that network's endpoints.
    fn left_network_if_last(&mut self, gone: &serde_json::Value) {
        let Some(me) = self.filtered_for.as_deref() else {
            return;
        };
        let field = |v: &serde_json::Value, f: &str| {
            v.get(f)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        if field(gone, "host") != me {
            return;
        }
        let net = (field(gone, "tenantName"), field(gone, "networkName"));
        let Some(eps) = self.objects.get_mut("endpoint") else {
            return;
        };
        let in_net =
            |v: &serde_json::Value| (field(v, "tenantName"), field(v, "networkName")) == net;
        if eps
            .values()
            .any(|(v, _)| in_net(v) && field(v, "host") == me)
        {
            return;
        }
        eps.retain(|_, (v, _)| !in_net(v));
    }
}

/// Follows the watch stream for as long as the agent runs, resuming from the last revision after
/// a disconnect and re-listing when that revision is gone.
///
/// With `node`, it asks for that node's stream (what concerns it: netmaster sends a network's
/// endpoints only to the nodes that have one there). A stream of the other kind than the view
/// was built from (a netmaster that does not filter, then one that does) is listed afresh.
pub async fn follow(
    client: model::Client,
    node: Option<String>,
    view: Arc<Mutex<ClusterView>>,
    changed: Arc<tokio::sync::Notify>,
) {
    loop {
        let (from, was_for) = {
            let v = view.lock().unwrap_or_else(|p| p.into_inner());
            (v.resume_from(), v.filtered_for.clone())
        };
        let stream = match client.watch_for(from, node.as_deref()).await {
            Ok((filtered, s)) => {
                let now_for = node.clone().filter(|_| filtered);
                if from.is_some() && now_for != was_for {
                    tracing::info!(
                        filtered,
                        "netmaster's watch stream changed kind: re-listing"
                    );
                    *view.lock().unwrap_or_else(|p| p.into_inner()) = ClusterView::default();
                    continue;
                }
                if from.is_none() {
                    *view.lock().unwrap_or_else(|p| p.into_inner()) = ClusterView {
                        filtered_for: now_for,
                        ..Default::default()
                    };
                }
                s
            }
            Err(e) => {
                if e.status() == Some(410) {
                    tracing::warn!("watch revision compacted: re-listing");
                    let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
                    *v = ClusterView::default();
                } else {
                    tracing::debug!(error = %e, "watch netmaster");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut stream = Box::pin(stream);
        crate::metrics::get().watch_connected(from.is_none());
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(e) if e.event_type == WatchEventType::Error => {
                    tracing::warn!(error = ?e.error, "watch stream ended: re-listing");
                    *view.lock().unwrap_or_else(|p| p.into_inner()) = ClusterView::default();
                    break;
                }
                Ok(e) => {
                    crate::metrics::get().watch_event(e.revision);
                    view.lock().unwrap_or_else(|p| p.into_inner()).apply(e);
                    changed.notify_one();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "watch stream broke; resuming");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl ClusterView {
    /// What this node's flows need from the view: its live peers, the other hosts' endpoints,
    /// and the ARP mode. None until the view is complete.
    pub fn inputs_for(&self, me: &str) -> Option<ClusterInputs> {
        if !self.synced {
            return None;
        }
        let mut c = ClusterInputs {
            arp_proxy: true,
            ..Default::default()
        };
        for (name, (v, _)) in self.objects.get("node").into_iter().flatten() {
            if name == me {
                continue;
            }
            match serde_json::from_value::<Node>(v.clone()) {
                Ok(n) if !n.vtep_ip.is_empty() => {
                    c.peers.insert(n.hostname, n.vtep_ip);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "unreadable node in watch stream")
                }
            }
        }
        for (id, (v, _)) in self.objects.get("endpoint").into_iter().flatten() {
            match serde_json::from_value::<Endpoint>(v.clone()) {
                Ok(ep) if ep.host != me => {
                    c.remote.insert(id.clone(), ep);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(endpoint = %id, error = %e, "unreadable endpoint in watch stream")
                }
            }
        }
        for (key, (v, st)) in self.objects.get("endpointGroup").into_iter().flatten() {
            let gid = st
                .as_ref()
                .and_then(|s| s.get("groupId"))
                .and_then(|g| g.as_u64())
                .unwrap_or(0) as u32;
            let g = serde_json::from_value::<model::EndpointGroup>(v.clone()).unwrap_or_default();
            if !g.net_profile.is_empty() {
                let tenant = key.split_once(':').map_or("default", |t| t.0);
                let pkey = format!("{tenant}:{}", g.net_profile);
                if let Some((pv, _)) = self.objects.get("netprofile").and_then(|m| m.get(&pkey)) {
                    match serde_json::from_value::<model::Netprofile>(pv.clone()) {
                        Ok(p) => {
                            let bps = if p.bandwidth.is_empty() {
                                0
                            } else {
                                model::net::parse_bandwidth(&p.bandwidth).unwrap_or(0)
                            };
                            c.profiles.insert(
                                key.clone(),
                                crate::fabric::Profile {
                                    bps,
                                    burst_kbytes: p.burst.max(0) as u64,
                                    dscp: p.dscp.clamp(0, 63) as u8,
                                },
                            );
                        }
                        Err(e) => {
                            tracing::warn!(profile = %pkey, error = %e, "unreadable netprofile")
                        }
                    }
                }
            }
            c.policy.groups.insert(key.clone(), (gid, g.policies));
        }
        for (key, (v, _)) in self.objects.get("rule").into_iter().flatten() {
            match serde_json::from_value::<model::Rule>(v.clone()) {
                Ok(r) => {
                    c.policy.rules.insert(key.clone(), r);
                }
                Err(e) => {
                    tracing::warn!(rule = %key, error = %e, "unreadable rule in watch stream")
                }
            }
        }
        for (key, (v, _)) in self.objects.get("network").into_iter().flatten() {
            if let Some(s) = v.get("subnet").and_then(|s| s.as_str()) {
                c.policy.subnets.insert(key.clone(), s.to_string());
            }
            if let Some(s) = v.get("ipv6Subnet").and_then(|s| s.as_str())
                && !s.is_empty()
            {
                c.policy.subnets6.insert(key.clone(), s.to_string());
            }
        }
        for (v, _) in self
            .objects
            .get("global")
            .into_iter()
            .flatten()
            .map(|(_, v)| v)
        {
            if v.get("arpMode").and_then(|m| m.as_str()) == Some("flood") {
                c.arp_proxy = false;
            }
            if let Some(p) = v.get("pvtSubnet").and_then(|m| m.as_str()) {
                c.pvt_subnet = p.to_string();
            }
        }
        Some(c)
    }
}

/// Keeps tunnels and the flows of other hosts' endpoints in line with the cluster view, for as
/// long as the agent runs.
pub async fn reconcile(
    dp: Arc<crate::datapath::Datapath>,
    me: String,
    view: Arc<Mutex<ClusterView>>,
    changed: Arc<tokio::sync::Notify>,
) {
    let mut last: Option<ClusterInputs> = None;
    loop {
        changed.notified().await;
        // No delay to gather events: a membership change must reach the policy flows of the
        // other hosts before the pod that caused it sends its first packet (a released address
        // may be handed out again at once). Events already received land first; whatever
        // arrives while flows are applied is coalesced into the next round.
        tokio::task::yield_now().await;
        let metrics = crate::metrics::get();
        // Every event received before the view is read below is in this round.
        let oldest = metrics.watch_round();
        let inputs = view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .inputs_for(&me);
        let Some(inputs) = inputs else {
            metrics.watch_requeue(oldest);
            continue;
        };
        if last.as_ref() == Some(&inputs) {
            metrics.watch_applied(oldest);
            continue;
        }
        match dp.set_cluster(inputs.clone()).await {
            Ok(()) => {
                metrics.watch_applied(oldest);
                last = Some(inputs)
            }
            Err(e) => {
                metrics.watch_requeue(oldest);
                tracing::warn!(error = %e, "apply cluster changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                changed.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod report_tests {
    use super::*;

    fn counts(eps: &[(&str, u64)]) -> BTreeMap<String, u64> {
        eps.iter().map(|(id, n)| (id.to_string(), *n)).collect()
    }

    #[test]
    fn counters_are_reported_when_they_change_and_again_when_stale() {
        let t0 = Instant::now();
        let mut r = Reported::new(t0);
        let a = counts(&[("e1", 3)]);
        assert!(r.due(&a, false, t0), "never reported");
        r.sent(a.clone(), t0);
        assert!(!r.due(&a, false, t0 + Duration::from_secs(2)));
        assert!(
            r.due(&counts(&[("e1", 4)]), false, t0 + Duration::from_secs(2)),
            "changed"
        );
        assert!(
            r.due(&a, false, t0 + COUNTERS_RESEND),
            "unchanged, but the master may have lost it"
        );
    }

    #[tokio::test]
    async fn a_failed_report_is_offered_again() {
        let mut r = Reported::new(Instant::now());
        let a = counts(&[("e1", 1)]);
        let mut sent = Vec::new();
        for fail in [true, false, false] {
            r.offer(a.clone(), false, "test counters", async |c| {
                sent.push(c.clone());
                if fail {
                    Err(model::ClientError::Unreachable {
                        url: "http://127.0.0.1:1".into(),
                        reason: "refused".into(),
                    })
                } else {
                    Ok(())
                }
            })
            .await;
        }
        // Failed, sent, then unchanged and fresh: not sent again.
        assert_eq!(sent, [a.clone(), a]);
    }

    #[test]
    fn an_empty_report_is_sent_once() {
        let t0 = Instant::now();
        let mut r = Reported::new(t0);
        let empty = counts(&[]);
        assert!(r.due(&empty, true, t0));
        r.sent(empty.clone(), t0);
        assert!(!r.due(&empty, true, t0 + COUNTERS_RESEND * 3));
        // Counts that go away (the endpoint was deleted) are an empty report again.
        r.sent(counts(&[("e1", 1)]), t0);
        assert!(r.due(&empty, true, t0 + Duration::from_secs(2)));
    }
}

#[cfg(test)]
mod view_tests {
    use super::*;

    fn ep(id: &str, net: &str, host: &str, revision: u64) -> WatchEvent {
        WatchEvent {
            revision,
            event_type: WatchEventType::Put,
            kind: "endpoint".into(),
            key: id.into(),
            value: Some(serde_json::json!({"endpointID": id, "tenantName": "t",
                "networkName": net, "host": host})),
            state: None,
            error: None,
        }
    }

    fn delete(id: &str, revision: u64) -> WatchEvent {
        WatchEvent {
            revision,
            event_type: WatchEventType::Delete,
            kind: "endpoint".into(),
            key: id.into(),
            value: None,
            state: None,
            error: None,
        }
    }

    fn ids(v: &ClusterView) -> Vec<&str> {
        v.objects["endpoint"].keys().map(String::as_str).collect()
    }

    #[test]
    fn a_filtered_view_drops_a_network_when_its_last_own_endpoint_goes() {
        for filtered in [true, false] {
            let mut v = ClusterView {
                filtered_for: filtered.then(|| "me".to_string()),
                ..Default::default()
            };
            for (i, e) in [
                ep("a1", "a", "me", 1),
                ep("a2", "a", "me", 2),
                ep("ax", "a", "h2", 3),
                ep("b1", "b", "me", 4),
                ep("bx", "b", "h2", 5),
            ]
            .into_iter()
            .enumerate()
            {
                assert_eq!(e.revision, i as u64 + 1);
                v.apply(e);
            }
            v.apply(delete("a1", 6));
            assert_eq!(ids(&v), ["a2", "ax", "b1", "bx"], "a2 is still here");
            v.apply(delete("bx", 7));
            v.apply(delete("a2", 8));
            let want: &[&str] = if filtered { &["b1"] } else { &["ax", "b1"] };
            assert_eq!(ids(&v), want, "filtered: {filtered}");
            assert_eq!(v.revision, 8);
        }
    }

    /// Events of one transaction share a revision: a stream cut after the first of two resumes
    /// at that revision, so the second comes (it would be skipped from the next revision), and
    /// the first, applied again, changes nothing.
    #[test]
    fn a_stream_cut_inside_a_revision_resumes_at_that_revision_and_replays_it_harmlessly() {
        for filtered in [true, false] {
            let mut v = ClusterView {
                filtered_for: filtered.then(|| "me".to_string()),
                synced: true,
                ..Default::default()
            };
            v.apply(ep("a1", "a", "me", 1));
            v.apply(ep("ax", "a", "h2", 2));
            // Revision 3: a2 and ay in one transaction; the stream breaks after a2.
            v.apply(ep("a2", "a", "me", 3));
            assert_eq!(v.resume_from(), Some(3));
            // The resumed stream: all of revision 3, then 4.
            for e in [
                ep("a2", "a", "me", 3),
                ep("ay", "a", "h2", 3),
                delete("ax", 4),
            ] {
                v.apply(e);
            }
            assert_eq!(ids(&v), ["a1", "a2", "ay"], "filtered: {filtered}");
            assert_eq!(v.resume_from(), Some(4));
        }
        assert_eq!(ClusterView::default().resume_from(), None, "not listed yet");
    }
}

#[cfg(test)]
mod tests {
    //! The follower against a real netmaster in the test process: what the watch stream
    //! carries becomes the inputs of this node's flows, and changes follow.
    use super::*;
    use model::objects::{EndpointGroup, Global, Netprofile, Policy, Rule};

    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("a valid object")
    }

    /// Waits (bounded) until the view's inputs for `me` satisfy `ok`; returns them.
    async fn inputs_when(
        view: &Arc<Mutex<ClusterView>>,
        me: &str,
        what: &str,
        ok: impl Fn(&ClusterInputs) -> bool,
    ) -> ClusterInputs {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = view.lock().unwrap().inputs_for(me);
            if let Some(i) = now.filter(|i| ok(i)) {
                return i;
            }
            assert!(tokio::time::Instant::now() < deadline, "never saw {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn the_watch_stream_becomes_this_nodes_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _server) = crate::testing::netmaster(dir.path()).await;
        for (host, vtep) in [("node1", "10.250.0.11"), ("node2", "10.250.0.12")] {
            c.register_node(&model::agent::NodeRegistration {
                hostname: host.into(),
                vtep_ip: vtep.into(),
                version: "test".into(),
            })
            .await
            .unwrap();
        }
        let ep = |id: &str, host: &str| model::agent::EndpointRequest {
            endpoint_id: id.into(),
            tenant_name: "default".into(),
            network_name: "net".into(),
            host: host.into(),
            ..Default::default()
        };
        c.create_endpoint(&ep("mine-eth0", "node1")).await.unwrap();
        c.create_endpoint(&ep("theirs-eth0", "node2"))
            .await
            .unwrap();
        let view = Arc::new(Mutex::new(ClusterView::default()));
        assert!(
            view.lock().unwrap().inputs_for("node1").is_none(),
            "nothing before sync"
        );
        let changed = Arc::new(tokio::sync::Notify::new());
        let follower = tokio::spawn(follow(
            c.clone(),
            Some("node1".into()),
            view.clone(),
            changed.clone(),
        ));

        let i = inputs_when(&view, "node1", "the peer and its endpoint", |i| {
            i.remote.contains_key("theirs-eth0")
        })
        .await;
        assert_eq!(
            i.peers,
            BTreeMap::from([("node2".to_string(), "10.250.0.12".to_string())]),
            "peers exclude this node"
        );
        assert!(
            !i.remote.contains_key("mine-eth0"),
            "this node's own endpoints are not remote"
        );
        assert!(i.arp_proxy, "ARP proxied by default");
        assert_eq!(
            i.policy.subnets.get("default:net").map(String::as_str),
            Some("10.1.0.0/24")
        );

        // Policies, groups and profiles, then the global ARP mode, follow as they change.
        c.put(&obj::<Policy>(
            serde_json::json!({"tenantName": "default", "policyName": "web"}),
        ))
        .await
        .unwrap();
        c.put(&obj::<Rule>(
            serde_json::json!({"tenantName": "default", "policyName": "web",
            "ruleId": "1", "direction": "in", "action": "deny", "protocol": "tcp", "priority": 1}),
        ))
        .await
        .unwrap();
        c.put(&obj::<Netprofile>(
            serde_json::json!({"tenantName": "default",
            "profileName": "slow", "bandwidth": "10mbps", "DSCP": 46}),
        ))
        .await
        .unwrap();
        c.put(&obj::<EndpointGroup>(
            serde_json::json!({"tenantName": "default",
            "groupName": "g1", "networkName": "net", "policies": ["web"], "netProfile": "slow"}),
        ))
        .await
        .unwrap();
        let i = inputs_when(&view, "node1", "the group, its rule and profile", |i| {
            i.profiles.contains_key("default:g1") && !i.policy.rules.is_empty()
        })
        .await;
        let p = &i.profiles["default:g1"];
        assert_eq!((p.bps, p.dscp), (10_000_000, 46));
        let (gid, policies) = &i.policy.groups["default:g1"];
        assert!(*gid > 0, "the group's id from its state");
        assert_eq!(policies, &vec!["web".to_string()]);
        assert!(
            i.policy.rules.contains_key("default:web:1"),
            "{:?}",
            i.policy.rules.keys()
        );

        c.put(&obj::<Global>(
            serde_json::json!({"name": "global", "arpMode": "flood"}),
        ))
        .await
        .unwrap();
        inputs_when(&view, "node1", "arp mode flood", |i| !i.arp_proxy).await;

        // An endpoint released elsewhere leaves the inputs.
        c.delete_endpoint("theirs-eth0").await.unwrap();
        inputs_when(&view, "node1", "the remote endpoint gone", |i| {
            i.remote.is_empty()
        })
        .await;
        follower.abort();
    }
}
