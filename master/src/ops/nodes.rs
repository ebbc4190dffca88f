//! The node registry: registrations and their heartbeats on store leases, expiry, and the
//! counters nodes report (per rule, and per endpoint for anti-spoofing drops), and their
//! endpoints' private addresses.

use super::Master;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use model::agent::{
    HostAccessReport, Node, NodeLease, NodeRegistration, RuleStatsReport, SpoofStatsReport,
};
use model::names;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use store::{Op, Txn};

impl Master {
    /// Keeps a node's latest rule counters (an empty report forgets the node's).
    pub fn report_rule_stats(&self, host: &str, r: RuleStatsReport) -> ApiResult<()> {
        check_reporter(host, &r.hostname, "rule stats")?;
        keep_report(&self.rule_stats, host, r.rules);
        Ok(())
    }

    /// Keeps a node's latest per-endpoint anti-spoofing drops (an empty report forgets the
    /// node's). Only the node's own endpoints are kept: a count for an endpoint of another
    /// host, or one deleted meanwhile, is left out.
    pub fn report_spoof_stats(&self, host: &str, r: SpoofStatsReport) -> ApiResult<()> {
        check_reporter(host, &r.hostname, "spoof stats")?;
        let own: BTreeMap<String, u64> = {
            let s = self.state();
            r.endpoints
                .into_iter()
                .filter(|(id, _)| s.endpoints.get(id).is_some_and(|e| e.host == host))
                .collect()
        };
        keep_report(&self.spoof_stats, host, own);
        Ok(())
    }

    /// Keeps a node's latest private (host-access) addresses of its endpoints (an empty report
    /// forgets the node's); as for spoof stats, only the node's own endpoints are kept.
    pub fn report_host_access(&self, host: &str, r: HostAccessReport) -> ApiResult<()> {
        check_reporter(host, &r.hostname, "host-access addresses")?;
        let own: BTreeMap<String, String> = {
            let s = self.state();
            r.endpoints
                .into_iter()
                .filter(|(id, _)| s.endpoints.get(id).is_some_and(|e| e.host == host))
                .collect()
        };
        keep_report(&self.host_access, host, own);
        Ok(())
    }

    /// Forgets what a deleted endpoint's host reported of it (anti-spoofing drops, private
    /// address): a new endpoint of the same id starts from 0, not from its predecessor's.
    pub(super) fn forget_endpoint_reports(&self, host: &str, id: &str) {
        forget(&self.spoof_stats, host, id);
        forget(&self.host_access, host, id);
    }

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
        // Shared, as endpoint writes: a reload of the state waits for this write.
        let _r = self.gate.read().await;
        // Under the gate: no network is created meanwhile with this address as its gateway.
        super::plan::check_node_vtep(&self.state(), name, &reg.vtep_ip)?;
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
        // Registrations of one node may commit in one order and get here in the other: only
        // the latest revision is applied, as the store holds it.
        let superseded = {
            let mut s = self.state();
            let mut leases = self.node_leases.lock().unwrap_or_else(|p| p.into_inner());
            let superseded = leases.get(name).is_some_and(|(_, rev)| *rev > r.revision);
            if !superseded {
                s.apply_put(&keys::node(name), &value).ok();
                leases.insert(name.to_string(), (new_lease, r.revision));
            }
            superseded
        };
        self.departing().remove(name);
        // The key has moved to a newer lease: ours, or the later registration's.
        let unused = if superseded {
            Some(new_lease)
        } else {
            lease.map(|(old, _)| old)
        };
        if let Some(l) = unused {
            let _ = self.store.revoke_lease(l).await;
        }
        tracing::info!(node = %name, vtep = %reg.vtep_ip, "node registered");
        Ok(answer)
    }

    /// `DELETE /api/v1/nodes/<name>/`: ends a registration now rather than at its expiry.
    pub async fn unregister_node(&self, name: &str) -> ApiResult<()> {
        let lease = self
            .node_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied();
        let _r = self.gate.read().await;
        // Tells the expiry watcher that the delete event it is about to see is this one.
        self.departing().insert(name.to_string());
        let revoked = match lease {
            Some((l, _)) => match self.store.revoke_lease(l).await {
                Err(store::StoreError::LeaseNotFound(_)) => Ok(false),
                r => r.map(|()| true),
            },
            None => Ok(false),
        };
        let done = match revoked {
            Ok(true) => Ok(()),
            // No lease of ours holds the key (any more): delete the key itself.
            Ok(false) => self.store.delete(&keys::node(name)).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            self.departing().remove(name);
            return Err(e.into());
        }
        self.node_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.state().apply_delete(&keys::node(name));
        // The expiry watcher logs it when it sees the key go.
        tracing::debug!(node = %name, "node unregistration written");
        Ok(())
    }

    fn departing(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.departing.lock().unwrap_or_else(|p| p.into_inner())
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
                if self.departing().remove(name) {
                    tracing::info!(node = %name, "node unregistered");
                } else {
                    tracing::warn!(node = %name, "node registration expired");
                }
                if self.leadership.is_leader() && self.opts.node_grace.is_some() {
                    self.mark_down(name).await;
                }
            }
        }
    }
}

/// A counter report names the node of its path.
fn check_reporter(path_host: &str, body_host: &str, what: &str) -> ApiResult<()> {
    if body_host != path_host {
        return Err(ApiError::bad_request(format!(
            "{what} of node '{body_host}' sent to the path of node '{path_host}'"
        )));
    }
    Ok(())
}

/// Drops endpoint `id` from `host`'s report of one kind.
fn forget<V>(
    reports: &std::sync::Mutex<BTreeMap<String, BTreeMap<String, V>>>,
    host: &str,
    id: &str,
) {
    let mut reports = reports.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = reports.get_mut(host) {
        m.remove(id);
        if m.is_empty() {
            reports.remove(host);
        }
    }
}

/// Replaces a node's report of one kind of counters; an empty one forgets the node's.
fn keep_report<K: Ord, V>(
    reports: &std::sync::Mutex<BTreeMap<String, BTreeMap<K, V>>>,
    host: &str,
    counters: BTreeMap<K, V>,
) {
    let mut reports = reports.lock().unwrap_or_else(|p| p.into_inner());
    if counters.is_empty() {
        reports.remove(host);
    } else {
        reports.insert(host.to_string(), counters);
    }
}
