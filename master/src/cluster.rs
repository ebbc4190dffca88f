//! The master's background work when several masters share a store: the election campaign,
//! following the store as a follower, and reclaiming the endpoints of dead nodes as the leader.

use crate::keys::{self, DownMarker};
use crate::leader::{LeaderRecord, Role};
use crate::ops::Master;
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Compare, EventKind, Op, StoreError, Txn};

/// Pause after a store error before trying again.
const RETRY: Duration = Duration::from_millis(500);

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Master {
    /// Campaigns for the leadership forever (does nothing without election): lead while the
    /// lease lives, else follow the current leader and campaign again when its key goes.
    pub async fn campaign(self: Arc<Self>) {
        let Some(opts) = self.leadership.options.clone() else {
            return;
        };
        let me = serde_json::to_vec(&self.leadership.me).expect("serializable");
        loop {
            let lease = match self.store.grant_lease(opts.ttl).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "campaign: grant the leader lease; retrying");
                    self.leadership.set(Role::Follower, None);
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let txn = Txn::new()
                .when(Compare::absent(keys::LEADER))
                .then(Op::Put {
                    key: keys::LEADER.into(),
                    value: me.clone(),
                    lease: Some(lease),
                });
            match self.store.txn(txn).await {
                Ok(r) if r.succeeded => {
                    self.lead(lease, opts.ttl).await;
                    // Free the key at once if it is still ours (we stepped down for a store
                    // hiccup): the next leader need not wait for the TTL.
                    let _ = self.store.revoke_lease(lease).await;
                }
                Ok(_) => {
                    let _ = self.store.revoke_lease(lease).await;
                    self.follow_leader(opts.ttl).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "campaign: claim the leader key; retrying");
                    let _ = self.store.revoke_lease(lease).await;
                    self.leadership.set(Role::Follower, None);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Leads until the lease is lost: takes the state from the store (the previous leader may
    /// have written after our last event), then keeps the lease alive.
    async fn lead(&self, lease: store::LeaseId, ttl: Duration) {
        {
            // No write runs while the state is replaced: writes hold the gate.
            let _w = self.gate.write().await;
            self.leadership
                .set(Role::Leader, Some(self.leadership.me.clone()));
            match Self::load(self.store.as_ref()).await {
                Ok((state, leases, rev)) => {
                    *self.state() = state;
                    *self.node_leases.lock().unwrap_or_else(|p| p.into_inner()) = leases;
                    tracing::info!(url = %self.leadership.me.url, revision = rev, "leading");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "load the state on taking the lead; stepping down");
                    self.leadership.set(Role::Follower, None);
                    return;
                }
            }
        }
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(ttl / 3).await;
            if !self.leadership.is_leader() {
                // A write found the fence gone.
                break;
            }
            match self.store.keep_alive(lease).await {
                Ok(()) => renewed = Instant::now(),
                Err(StoreError::LeaseNotFound(_)) => {
                    tracing::warn!("leader lease expired: stepping down");
                    break;
                }
                Err(e) => {
                    // The lease may still live in etcd; it surely does not after a TTL.
                    if renewed.elapsed() + ttl / 3 >= ttl {
                        tracing::warn!(error = %e, "cannot renew the leader lease for a TTL: stepping down");
                        break;
                    }
                    tracing::warn!(error = %e, "renew the leader lease; retrying");
                }
            }
        }
        self.leadership.set(Role::Follower, None);
    }

    /// Announces this master under `/contiv/masters/` on a lease of its own, renewed every third
    /// of the leader TTL, so that `/info` lists every running master. Does nothing without
    /// election.
    pub async fn announce(self: Arc<Self>) {
        let Some(opts) = self.leadership.options.clone() else {
            return;
        };
        let key = keys::master(&self.leadership.me.id);
        let url = self.leadership.me.url.clone().into_bytes();
        loop {
            let lease = match self.store.grant_lease(opts.ttl).await {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let put = Txn::new().then(Op::Put {
                key: key.clone(),
                value: url.clone(),
                lease: Some(lease),
            });
            if self.store.txn(put).await.is_ok() {
                // Renew until the lease is gone (expired through a long outage): then re-announce.
                loop {
                    tokio::time::sleep(opts.ttl / 3).await;
                    if let Err(StoreError::LeaseNotFound(_)) = self.store.keep_alive(lease).await {
                        break;
                    }
                }
            } else {
                let _ = self.store.revoke_lease(lease).await;
                tokio::time::sleep(RETRY).await;
            }
        }
    }

    /// Gives up the leadership now, when stopping, so that another master takes it without
    /// waiting for the lease to expire: deletes the leader key if it still holds this master's
    /// record. Best effort and bounded: the lease expires anyway.
    pub async fn resign(&self) {
        let Some(fence) = self.leadership.fence() else {
            return;
        };
        if !self.leadership.is_leader() {
            return;
        }
        self.leadership.set(Role::Follower, None);
        let txn = Txn::new().when(fence).then(Op::delete(keys::LEADER));
        match tokio::time::timeout(Duration::from_secs(1), self.store.txn(txn)).await {
            Ok(Ok(r)) if r.succeeded => tracing::info!("leadership released"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "release the leadership"),
            Err(_) => tracing::warn!("release the leadership: the store did not answer in 1 s"),
        }
    }

    /// Waits up to `limit` for the writes in flight (`api::detach_writes`) to finish.
    pub async fn wait_writes(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self
            .writes_in_flight
            .load(std::sync::atomic::Ordering::Acquire)
            > 0
        {
            if Instant::now() >= deadline {
                tracing::warn!("writes still in flight when stopping");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The advertised URLs of the running masters (this one alone without election).
    pub async fn masters(&self) -> Result<Vec<String>, StoreError> {
        if self.leadership.options.is_none() {
            return Ok(vec![self.leadership.me.url.clone()]);
        }
        let (kvs, _) = self.store.list(keys::MASTERS).await?;
        let mut urls: Vec<String> = kvs
            .into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .collect();
        urls.sort();
        urls.dedup();
        Ok(urls)
    }

    /// Follows the current leader until its key is deleted (or cannot be watched).
    async fn follow_leader(&self, ttl: Duration) {
        let kv = match self.store.get(keys::LEADER).await {
            Ok(Some(kv)) => kv,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "read the leader key");
                self.leadership.set(Role::Follower, None);
                tokio::time::sleep(RETRY).await;
                return;
            }
        };
        let rec: Option<LeaderRecord> = serde_json::from_slice(&kv.value).ok();
        if let Some(r) = &rec
            && r.url == self.leadership.me.url
        {
            // Our own record while we do not lead: a previous run of this master (same URL) died
            // leading, or we stepped down without being able to revoke our lease. Do not wait for
            // the lease; should two masters share a URL by mistake, the fence still keeps one
            // writer.
            tracing::info!("taking over the leader key of a previous run at this URL");
            let _ = self
                .store
                .txn(
                    Txn::new()
                        .when(Compare::Value(keys::LEADER.into(), kv.value.clone()))
                        .then(Op::delete(keys::LEADER)),
                )
                .await;
            return;
        }
        if rec.as_ref() != self.leadership.leader().as_ref() {
            tracing::info!(leader = ?rec.as_ref().map(|r| &r.url), "following");
        }
        self.leadership.set(Role::Follower, rec);
        let mut w = match self.store.watch(keys::LEADER, kv.mod_revision + 1).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "watch the leader key");
                tokio::time::sleep(RETRY).await;
                return;
            }
        };
        // A watch may stay silent through a store outage: look again after a TTL at most.
        loop {
            match tokio::time::timeout(ttl, w.next()).await {
                Err(_) => return,
                Ok(Some(Ok(ev))) if ev.kv.key == keys::LEADER => {
                    if ev.kind == EventKind::Delete {
                        tracing::info!("the leader key is gone: campaigning");
                        self.leadership.set(Role::Follower, None);
                        return;
                    }
                    let rec = serde_json::from_slice(&ev.kv.value).ok();
                    self.leadership.set(Role::Follower, rec);
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => return,
            }
        }
    }

    /// As a follower, keeps the state equal to the store's by applying its events; as the
    /// leader, does nothing (the leader is the only writer and applies its own writes). A role
    /// change ends the current listing and watch: a follower again starts from a new listing.
    pub async fn follow_store(self: Arc<Self>) {
        if self.leadership.options.is_none() {
            return;
        }
        let mut changed = self.leadership.subscribe();
        loop {
            changed.mark_unchanged();
            if self.leadership.is_leader() {
                let _ = changed.changed().await;
                continue;
            }
            let epoch = self.leadership.epoch();
            let (state, leases, rev) = match Self::load(self.store.as_ref()).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "follower: load the state");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            {
                // Checked under the state lock: taking the lead changes the role first and then
                // replaces the state under this lock, so nothing of ours lands after that.
                let mut s = self.state();
                if self.leadership.epoch() != epoch {
                    continue;
                }
                *s = state;
                *self.node_leases.lock().unwrap_or_else(|p| p.into_inner()) = leases;
            }
            self.applied.send_replace(rev);
            let mut w = match self.store.watch(keys::ROOT, rev + 1).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "follower: watch the store");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            loop {
                let ev = tokio::select! {
                    _ = changed.changed() => {
                        if self.leadership.epoch() != epoch {
                            break;
                        }
                        continue;
                    }
                    ev = w.next() => ev,
                };
                let Some(Ok(ev)) = ev else {
                    tokio::time::sleep(RETRY).await;
                    break;
                };
                let mut s = self.state();
                if self.leadership.epoch() != epoch {
                    break;
                }
                match ev.kind {
                    EventKind::Put => {
                        if let Err(e) = s.apply_put(&ev.kv.key, &ev.kv.value) {
                            tracing::warn!(key = %ev.kv.key, error = %e, "follower: apply event");
                        }
                    }
                    EventKind::Delete => s.apply_delete(&ev.kv.key),
                }
                self.applied.send_replace(ev.kv.mod_revision);
                if let keys::Parsed::Node(n) = keys::parse(&ev.kv.key) {
                    let mut leases = self.node_leases.lock().unwrap_or_else(|p| p.into_inner());
                    match (&ev.kind, ev.kv.lease) {
                        (EventKind::Put, Some(l)) => {
                            leases.insert(n.to_string(), (l, ev.kv.mod_revision));
                        }
                        _ => {
                            leases.remove(n);
                        }
                    }
                }
            }
        }
    }

    /// Waits (up to `within`) until this follower has applied the store up to `revision`.
    pub async fn wait_applied(&self, revision: u64, within: Duration) {
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(within, rx.wait_for(|r| *r >= revision)).await;
    }

    /// Records that a node is down (its registration expired), unless it is already recorded.
    pub(crate) async fn mark_down(&self, host: &str) {
        let marker = serde_json::to_vec(&DownMarker { since: now_secs() }).expect("serializable");
        let txn = Txn::new()
            .when(Compare::absent(keys::down(host)))
            .when(Compare::absent(keys::node(host)))
            .then(Op::put(keys::down(host), marker));
        match self.fenced_txn(txn).await {
            Ok(r) if r.succeeded => tracing::warn!(node = %host, "node down"),
            Ok(_) => {}
            Err(e) => tracing::warn!(node = %host, error = %e, "record node down"),
        }
    }

    /// As the leader, deletes the endpoints of nodes down for longer than the grace period
    /// (`--node-grace`); forever, checking a few times per grace period.
    pub async fn reclaim_dead_nodes(self: Arc<Self>) {
        let Some(grace) = self.opts.node_grace else {
            return;
        };
        let tick = (grace / 10).clamp(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            tokio::time::sleep(tick).await;
            if !self.leadership.is_leader() {
                continue;
            }
            if let Err(e) = self.reclaim_once(grace).await {
                tracing::warn!(error = %e, "reclaim endpoints of dead nodes");
            }
        }
    }

    async fn reclaim_once(&self, grace: Duration) -> Result<(), StoreError> {
        // Hosts with endpoints but neither registration nor marker: their expiry happened while
        // no master led (or before a restart). Their grace period starts now.
        let orphans: Vec<String> = {
            let s = self.state();
            let mut hosts: Vec<String> = s
                .endpoints
                .values()
                .filter(|e| !e.host.is_empty() && !s.nodes.contains_key(&e.host))
                .map(|e| e.host.clone())
                .collect();
            hosts.dedup();
            hosts.sort();
            hosts.dedup();
            hosts
        };
        let (markers, _) = self.store.list(keys::DOWN).await?;
        for h in orphans {
            if !markers.iter().any(|kv| kv.key == keys::down(&h)) {
                self.mark_down(&h).await;
            }
        }
        let now = now_secs();
        for kv in markers {
            let Some(host) = kv.key.strip_prefix(keys::DOWN) else {
                continue;
            };
            let since = serde_json::from_slice::<DownMarker>(&kv.value)
                .map(|m| m.since)
                .unwrap_or(0);
            if self.state().nodes.contains_key(host) {
                // Back in time: the registration normally deletes the marker; tidy up.
                let _ = self
                    .fenced_txn(Txn::new().then(Op::delete(kv.key.clone())))
                    .await;
                continue;
            }
            if now < since + grace.as_secs() {
                continue;
            }
            let ids: Vec<String> = self
                .state()
                .endpoints
                .values()
                .filter(|e| e.host == host)
                .map(|e| e.endpoint_id.clone())
                .collect();
            for id in &ids {
                if let Err(e) = self.delete_endpoint(id).await {
                    tracing::warn!(node = %host, endpoint = %id, error = %e.message, "reclaim endpoint");
                    return Ok(());
                }
            }
            let _ = self
                .fenced_txn(
                    Txn::new()
                        .when(Compare::ModRevision(kv.key.clone(), kv.mod_revision))
                        .then(Op::delete(kv.key.clone())),
                )
                .await;
            tracing::warn!(node = %host, endpoints = ids.len(), grace_s = grace.as_secs(), "reclaimed the endpoints of a dead node");
        }
        Ok(())
    }
}
