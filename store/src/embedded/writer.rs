//! The writer thread: the only code that writes to the database.
//!
//! It takes every pending request (up to [`MAX_BATCH`]), applies them in order inside one redb
//! transaction, commits once, and only then publishes the changes and answers the callers, so
//! that an answer or an event always describes durable state. Expired leases are revoked in the
//! same batches.

use super::{
    Change, During, KV, LEASE_KEYS, LEASES, LOG, LOG_EVENTS, LeaseState, META, NEXT_LEASE, OLDEST,
    Published, REVISION, Shared, closed, codec, deadline, lock,
};
use crate::{
    Compare, Event, EventKind, KeyValue, LeaseId, Op, Revision, StoreError, Txn, TxnResult,
};
use redb::{Database, ReadableTable, Table, WriteTransaction};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};

/// Bounds the work (and the latency of the first caller) behind one fsync.
const MAX_BATCH: usize = 512;

/// The longest the writer goes without looking for expired leases. Deadlines only move later
/// between looks (keep-alives), so this is a safety net, not what makes expiry timely.
const MAX_IDLE: Duration = Duration::from_secs(1);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Request {
    Txn(Txn, Reply<TxnResult>),
    Grant(Duration, Reply<LeaseId>),
    Revoke(LeaseId, Reply<()>),
}

enum Outcome {
    Txn(Result<TxnResult, StoreError>),
    Grant(Result<LeaseId, StoreError>),
    Revoke(Result<(), StoreError>),
}

/// The persisted counters, cached by the writer since nothing else writes them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    revision: Revision,
    oldest: Revision,
    next_lease: LeaseId,
    log_events: u64,
}

/// Creates the tables of a new file and loads the counters and leases of an existing one.
pub(super) fn init(db: &Database) -> Result<(Meta, Vec<(LeaseId, Duration)>), StoreError> {
    let wtx = db.begin_write().during("begin write")?;
    let loaded = {
        let mut t = Tables::open(&wtx)?;
        let get = |key: &str| -> Result<Option<u64>, StoreError> {
            Ok(t.meta.get(key).during("read meta")?.map(|v| v.value()))
        };
        let meta = Meta {
            revision: get(REVISION)?.unwrap_or(0),
            oldest: get(OLDEST)?.unwrap_or(1),
            next_lease: get(NEXT_LEASE)?.unwrap_or(1),
            log_events: get(LOG_EVENTS)?.unwrap_or(0),
        };
        let mut leases = Vec::new();
        for entry in t.leases.iter().during("read leases")? {
            let (id, ttl) = entry.during("read leases")?;
            leases.push((id.value(), Duration::from_millis(ttl.value())));
        }
        // A new file gets its counters now, so that readers never see them missing.
        t.store_meta(&meta)?;
        (meta, leases)
    };
    wtx.commit().during("commit")?;
    Ok(loaded)
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    requests: mpsc::Receiver<Request>,
    events: broadcast::Sender<Published>,
    meta: Meta,
    history: u64,
    next_check: Instant,
}

/// What a committed batch did, to be applied to memory once durable.
#[derive(Default)]
struct Applied {
    outcomes: Vec<Outcome>,
    changes: Vec<Change>,
    granted: Vec<(LeaseId, Duration)>,
    revoked: Vec<LeaseId>,
}

impl Writer {
    pub(super) fn new(
        shared: Arc<Shared>,
        requests: mpsc::Receiver<Request>,
        events: broadcast::Sender<Published>,
        meta: Meta,
        history: u64,
    ) -> Self {
        Self {
            shared,
            requests,
            events,
            meta,
            history,
            next_check: Instant::now(),
        }
    }

    /// Runs until every sender is gone and the queue is drained.
    pub(super) fn run(mut self) {
        loop {
            let wait = self.next_check.saturating_duration_since(Instant::now());
            let mut batch = Vec::new();
            match self.requests.recv_timeout(wait) {
                Ok(request) => batch.push(request),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            batch.extend(self.requests.try_iter().take(MAX_BATCH - batch.len()));
            let expired = self.take_expired();
            if !batch.is_empty() || !expired.is_empty() {
                self.commit(batch, expired);
            }
        }
    }

    /// Removes the leases past their deadline from memory, so that keep-alives fail from now on.
    fn take_expired(&mut self) -> Vec<(LeaseId, LeaseState)> {
        let now = Instant::now();
        if now < self.next_check {
            return Vec::new();
        }
        let mut next = now + MAX_IDLE;
        let mut expired = Vec::new();
        lock(&self.shared.leases).retain(|&id, state| {
            if state.deadline <= now {
                expired.push((id, *state));
                false
            } else {
                next = next.min(state.deadline);
                true
            }
        });
        self.next_check = next;
        expired
    }

    fn commit(&mut self, batch: Vec<Request>, expired: Vec<(LeaseId, LeaseState)>) {
        let before = self.meta;
        let result = {
            let shared = self.shared.clone();
            let guard = shared.db.read().unwrap_or_else(PoisonError::into_inner);
            match guard.as_ref() {
                Some(db) => self.apply(db, &batch, &expired),
                None => Err(closed()),
            }
        };
        let applied = match result {
            Ok(applied) => applied,
            Err(e) => {
                tracing::error!(error = %e, requests = batch.len(), "store batch failed");
                self.meta = before;
                // Retried at the next look, which is delayed so a broken disk is not hammered.
                self.next_check = Instant::now() + MAX_IDLE;
                lock(&self.shared.leases).extend(expired);
                for request in batch {
                    match request {
                        Request::Txn(_, reply) => drop(reply.send(Err(same_error(&e)))),
                        Request::Grant(_, reply) => drop(reply.send(Err(same_error(&e)))),
                        Request::Revoke(_, reply) => drop(reply.send(Err(same_error(&e)))),
                    }
                }
                return;
            }
        };

        {
            let now = Instant::now();
            let mut leases = lock(&self.shared.leases);
            for (id, ttl) in applied.granted {
                let deadline = deadline(now, ttl);
                self.next_check = self.next_check.min(deadline);
                leases.insert(id, LeaseState { ttl, deadline });
            }
            for id in applied.revoked {
                leases.remove(&id);
            }
        }
        if !applied.changes.is_empty() {
            // No receiver is not an error: nobody watches.
            let _ = self.events.send(applied.changes.into());
        }
        for (request, outcome) in batch.into_iter().zip(applied.outcomes) {
            // A caller that gave up waiting is not an error either.
            match (request, outcome) {
                (Request::Txn(_, reply), Outcome::Txn(r)) => drop(reply.send(r)),
                (Request::Grant(_, reply), Outcome::Grant(r)) => drop(reply.send(r)),
                (Request::Revoke(_, reply), Outcome::Revoke(r)) => drop(reply.send(r)),
                _ => unreachable!("outcomes are produced in request order"),
            }
        }
    }

    fn apply(
        &mut self,
        db: &Database,
        batch: &[Request],
        expired: &[(LeaseId, LeaseState)],
    ) -> Result<Applied, StoreError> {
        let wtx = db.begin_write().during("begin write")?;
        let mut applied = Applied::default();
        {
            let mut t = Tables::open(&wtx)?;
            for &(id, _) in expired {
                tracing::debug!(lease = id, "lease expired");
                // Never missing: the table and the map change together, on this thread.
                let _ = self.revoke(&mut t, id, &mut applied.changes)?;
            }
            for request in batch {
                let outcome = match request {
                    Request::Txn(txn, _) => {
                        Outcome::Txn(self.txn(&mut t, txn, &mut applied.changes)?)
                    }
                    Request::Grant(ttl, _) => {
                        let id = self.meta.next_lease;
                        self.meta.next_lease += 1;
                        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                        t.leases.insert(id, ms).during("write lease")?;
                        // As it will be after a reload, so that a restart changes nothing.
                        applied.granted.push((id, Duration::from_millis(ms)));
                        Outcome::Grant(Ok(id))
                    }
                    Request::Revoke(id, _) => {
                        let r = self.revoke(&mut t, *id, &mut applied.changes)?;
                        if r.is_ok() {
                            applied.revoked.push(*id);
                        }
                        Outcome::Revoke(r)
                    }
                };
                applied.outcomes.push(outcome);
            }
            self.compact(&mut t)?;
            t.store_meta(&self.meta)?;
        }
        wtx.commit().during("commit")?;
        Ok(applied)
    }

    /// The outer error aborts the batch; the inner one is this caller's alone.
    fn txn(
        &mut self,
        t: &mut Tables,
        txn: &Txn,
        changes: &mut Vec<Change>,
    ) -> Result<Result<TxnResult, StoreError>, StoreError> {
        for (i, compare) in txn.compares.iter().enumerate() {
            let holds = match compare {
                Compare::ModRevision(key, rev) => {
                    t.get(key)?.map_or(0, |kv| kv.mod_revision) == *rev
                }
                Compare::Value(key, value) => t.get(key)?.is_some_and(|kv| kv.value == *value),
            };
            if !holds {
                return Ok(Ok(TxnResult {
                    succeeded: false,
                    revision: self.meta.revision,
                    failed_compare: Some(i),
                }));
            }
        }
        // Checked before anything is written: the batch's transaction cannot undo one txn alone.
        for op in &txn.ops {
            if let Op::Put {
                lease: Some(lease), ..
            } = op
                && t.leases.get(*lease).during("read lease")?.is_none()
            {
                return Ok(Err(StoreError::LeaseNotFound(*lease)));
            }
        }
        let rev = self.meta.revision + 1;
        let mut events = Vec::with_capacity(txn.ops.len());
        for op in &txn.ops {
            match op {
                Op::Put { key, value, lease } => events.push(t.put(key, value, *lease, rev)?),
                Op::Delete { key } => events.extend(t.delete(key, rev)?),
            }
        }
        self.record(t, events, changes)?;
        Ok(Ok(TxnResult {
            succeeded: true,
            revision: self.meta.revision,
            failed_compare: None,
        }))
    }

    fn revoke(
        &mut self,
        t: &mut Tables,
        lease: LeaseId,
        changes: &mut Vec<Change>,
    ) -> Result<Result<(), StoreError>, StoreError> {
        if t.leases.remove(lease).during("remove lease")?.is_none() {
            return Ok(Err(StoreError::LeaseNotFound(lease)));
        }
        let mut keys = Vec::new();
        for entry in t
            .lease_keys
            .range((lease, "")..)
            .during("read lease keys")?
        {
            let (k, _) = entry.during("read lease keys")?;
            let (id, key) = k.value();
            if id != lease {
                break;
            }
            keys.push(key.to_owned());
        }
        let rev = self.meta.revision + 1;
        let mut events = Vec::with_capacity(keys.len());
        for key in &keys {
            events.extend(t.delete(key, rev)?);
        }
        self.record(t, events, changes)?;
        Ok(Ok(()))
    }

    /// Makes `events` the next revision, unless there are none: writing nothing bumps nothing.
    fn record(
        &mut self,
        t: &mut Tables,
        events: Vec<Event>,
        changes: &mut Vec<Change>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let revision = self.meta.revision + 1;
        t.log
            .insert(revision, codec::encode_events(&events).as_slice())
            .during("write log")?;
        self.meta.revision = revision;
        self.meta.log_events += events.len() as u64;
        changes.push(Change { revision, events });
        Ok(())
    }

    /// Drops the oldest revisions until the log holds at most `history` events.
    fn compact(&mut self, t: &mut Tables) -> Result<(), StoreError> {
        while self.meta.log_events > self.history {
            let popped = t.log.pop_first().during("compact log")?;
            let Some((rev, count)) = popped
                .map(|(k, v)| codec::event_count(v.value()).map(|n| (k.value(), n)))
                .transpose()?
            else {
                self.meta.log_events = 0;
                break;
            };
            self.meta.log_events = self.meta.log_events.saturating_sub(count);
            self.meta.oldest = rev + 1;
        }
        Ok(())
    }
}

struct Tables<'t> {
    kv: Table<'t, &'static str, &'static [u8]>,
    log: Table<'t, u64, &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
    leases: Table<'t, u64, u64>,
    lease_keys: Table<'t, (u64, &'static str), ()>,
}

impl<'t> Tables<'t> {
    fn open(wtx: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            kv: wtx.open_table(KV).during("open kv")?,
            log: wtx.open_table(LOG).during("open log")?,
            meta: wtx.open_table(META).during("open meta")?,
            leases: wtx.open_table(LEASES).during("open leases")?,
            lease_keys: wtx.open_table(LEASE_KEYS).during("open lease keys")?,
        })
    }

    fn store_meta(&mut self, meta: &Meta) -> Result<(), StoreError> {
        for (key, value) in [
            (REVISION, meta.revision),
            (OLDEST, meta.oldest),
            (NEXT_LEASE, meta.next_lease),
            (LOG_EVENTS, meta.log_events),
        ] {
            self.meta.insert(key, value).during("write meta")?;
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let found = self.kv.get(key).during("read kv")?;
        found.map(|v| codec::decode_kv(key, v.value())).transpose()
    }

    fn put(
        &mut self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
        rev: Revision,
    ) -> Result<Event, StoreError> {
        let prev = self.get(key)?;
        let kv = KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            lease,
        };
        self.kv
            .insert(key, codec::encode_kv(&kv).as_slice())
            .during("write kv")?;
        let old_lease = prev.as_ref().and_then(|p| p.lease);
        if old_lease != lease {
            if let Some(old) = old_lease {
                self.lease_keys.remove((old, key)).during("detach key")?;
            }
            if let Some(new) = lease {
                self.lease_keys
                    .insert((new, key), ())
                    .during("attach key")?;
            }
        }
        Ok(Event {
            kind: EventKind::Put,
            kv,
            prev,
        })
    }

    /// The delete event, or None when the key did not exist.
    fn delete(&mut self, key: &str, rev: Revision) -> Result<Option<Event>, StoreError> {
        let removed = self.kv.remove(key).during("delete kv")?;
        let Some(prev) = removed
            .map(|v| codec::decode_kv(key, v.value()))
            .transpose()?
        else {
            return Ok(None);
        };
        if let Some(lease) = prev.lease {
            self.lease_keys.remove((lease, key)).during("detach key")?;
        }
        Ok(Some(Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_owned(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: rev,
                lease: None,
            },
            prev: Some(prev),
        }))
    }
}

/// A failed batch fails each of its callers with the same error.
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Backend { action, reason } => StoreError::Backend {
            action,
            reason: reason.clone(),
        },
        StoreError::Unavailable(reason) => StoreError::Unavailable(reason.clone()),
        other => StoreError::Backend {
            action: "commit",
            reason: other.to_string(),
        },
    }
}
