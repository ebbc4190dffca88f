//! The etcd v3 store.
//!
//! Every key of the [`Store`] lives under [`EtcdOptions::prefix`] in etcd; revisions are etcd's
//! own (its response header revision), so the store assumes, like the trait, that nothing else
//! writes to the same etcd while revisions are compared (other writers only make revisions jump,
//! which callers must tolerate anyway).
//!
//! How the trait maps onto etcd:
//! - **Transactions** become one etcd `Txn`. etcd does not say which compare failed, so the
//!   failure branch of every transaction reads each compared key: those reads run atomically with
//!   the compares, at the same revision, and the first compare that does not hold against them
//!   is the `failed_compare`. Two ops on one key (which etcd refuses) are collapsed to the last.
//! - **Deletes of absent keys** need nothing: etcd only bumps the revision when a transaction
//!   changes something, and emits no event for them.
//! - **Watches** ask for previous values, start from an explicit revision (`from == 0` is the
//!   revision read at the call + 1), and survive the loss of the member they stream from: the
//!   stream is re-opened from the revision after the last one delivered, so there is neither gap
//!   nor duplicate. A start in compacted history is found with a read at that revision before the
//!   watch is opened, and reported as [`StoreError::Compacted`] with etcd's compact revision.
//!   During an outage an open watch waits (re-trying, up to once a second) rather than ending:
//!   it ends only with `Compacted` (history it needs was compacted meanwhile) or an error etcd
//!   gives for good (e.g. permission denied).
//! - **Leases** are etcd's: TTLs are whole seconds (rounded up, and raised by etcd to its minimum,
//!   1.5 × the election timeout), and keys are deleted by etcd's leader when they expire.
//! - **Limits** are etcd's: a transaction holds at most `--max-txn-ops` ops and as many compares
//!   (128 by default), and a request at most `--max-request-bytes` (1.5 MiB by default); beyond,
//!   the call fails with [`StoreError::Backend`]. History grows until compacted: run etcd with
//!   `--auto-compaction-retention`, or call [`EtcdStore::compact`].
//! - **Calls** are bounded by [`EtcdOptions::request_timeout`], then fail with
//!   [`StoreError::Unavailable`]. Within it, a call is retried on another member when the
//!   request never reached etcd (connection refused, no leader); reads and keep-alives are also
//!   retried after other transport errors. A write that times out or loses its connection after
//!   it was sent fails with `Unavailable`: it may or may not have been applied.

use crate::{
    Compare, Event, EventKind, KeyValue, LeaseId, Op, Revision, Store, StoreError, Txn, TxnResult,
    WatchStream,
};
use async_trait::async_trait;
use etcd_client as ec;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout, timeout_at};

/// Keys per page when listing, so that a large listing never meets gRPC's message size limits.
const PAGE: i64 = 500;
/// Responses (a watch batch, a listing page) may hold values up to etcd's request size each.
const MAX_MESSAGE: usize = 256 << 20;
/// HTTP/2 pings that find a hung member under an open stream (a watch, a keep-alive). etcd
/// refuses pings more often than every 5 s.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Events a watch buffers for a slow reader before it stops reading from etcd.
const WATCH_BUFFER: usize = 1024;
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between attempts to re-open a broken watch.
const MAX_WATCH_PAUSE: Duration = Duration::from_secs(1);

/// TLS towards etcd: the CA that signed the members' certificates, and optionally a client
/// certificate and its key (both or neither), all PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Options of the etcd store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Members' client URLs (`http://host:port`, `https://host:port`, or `host:port`, which
    /// takes https when `tls` is set). Requests are spread over them and fail over between them.
    pub endpoints: Vec<String>,
    /// Prepended to every key of the store: with "/contiv", the store's "/nets/a" is etcd's
    /// "/contiv/nets/a". Taken literally (no separator is added).
    pub prefix: String,
    pub tls: Option<TlsOptions>,
    /// How long connecting may take: per TCP connection, and for [`EtcdStore::connect`] to find
    /// a member that answers.
    pub dial_timeout: Duration,
    /// How long one call may take, retries included, before it fails with
    /// [`StoreError::Unavailable`].
    pub request_timeout: Duration,
}

impl EtcdOptions {
    /// Options with the prefix "/contiv", no TLS and 5 s timeouts.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: "/contiv".into(),
            tls: None,
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The etcd [`Store`]. Its connections close when it and every watch it opened are dropped.
pub struct EtcdStore {
    kv: ec::KvClient,
    lease: ec::LeaseClient,
    watch: ec::WatchClient,
    keys: Keys,
    ctx: Arc<Ctx>,
}

/// What every call needs to bound itself and explain its failures.
#[derive(Debug)]
struct Ctx {
    /// The endpoints, for messages.
    endpoints: String,
    request_timeout: Duration,
}

/// Maps the store's keys to etcd's and back.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl EtcdStore {
    /// Checks the options (endpoints, TLS files), then waits until at least one endpoint
    /// answers, up to the dial timeout. Fails with [`StoreError::Open`] for bad options (naming
    /// the file or endpoint), and with [`StoreError::Unavailable`] naming every endpoint and why
    /// it did not answer when none does.
    pub async fn connect(opts: EtcdOptions) -> Result<Self, StoreError> {
        if opts.endpoints.is_empty() {
            return Err(StoreError::Open {
                path: "etcd".into(),
                reason: "no endpoint given".into(),
            });
        }
        let tls = opts.tls.as_ref().map(tls_config).transpose()?;
        let endpoints = opts
            .endpoints
            .iter()
            .map(|e| endpoint_url(e, tls.is_some()))
            .collect::<Result<Vec<_>, _>>()?;
        let listed = endpoints.join(", ");

        let mut probe_opts = ec::ConnectOptions::new()
            .with_connect_timeout(opts.dial_timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, opts.request_timeout)
            // etcd counts pings on a connection without streams as abuse and hangs up.
            .with_keep_alive_while_idle(false);
        if let Some(tls) = tls {
            probe_opts = probe_opts.with_tls(tls);
        }
        // Leaderless members still count as reachable: the store then answers Unavailable
        // until the cluster has a quorum again, rather than refusing to start.
        let client_opts = probe_opts.clone().with_require_leader(true);

        let mut probes: FuturesUnordered<_> = endpoints
            .iter()
            .map(|url| probe(url, &probe_opts, opts.dial_timeout, opts.tls.is_some()))
            .collect();
        let mut failures = Vec::new();
        let mut reached = false;
        while let Some(result) = probes.next().await {
            match result {
                Ok(()) => {
                    reached = true;
                    break;
                }
                Err(failure) => failures.push(failure),
            }
        }
        drop(probes);
        if !reached {
            failures.sort();
            return Err(StoreError::Unavailable(format!(
                "connect to etcd at {listed}: no endpoint answered: {}",
                failures.join("; ")
            )));
        }

        let client = ec::Client::connect(&endpoints, Some(client_opts))
            .await
            .map_err(|e| StoreError::Open {
                path: listed.clone(),
                reason: format!("set up the etcd client: {e}"),
            })?;
        tracing::info!(endpoints = %listed, prefix = %opts.prefix, "connected to etcd");
        Ok(Self {
            kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE),
            lease: client.lease_client(),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            keys: Keys {
                prefix: opts.prefix,
            },
            ctx: Arc::new(Ctx {
                endpoints: listed,
                request_timeout: opts.request_timeout,
            }),
        })
    }

    /// Drops etcd's history before `revision`, so that watching from an older revision fails
    /// with [`StoreError::Compacted`]. etcd keeps every revision until it is compacted, either
    /// by this or by its own `--auto-compaction-*` settings. Compacting an already compacted
    /// revision is not an error.
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let result = call(&self.ctx, Retry::IfNotSent, || {
            let mut kv = self.kv.clone();
            async move {
                kv.compact(
                    to_i64(revision),
                    Some(ec::CompactionOptions::new().with_physical()),
                )
                .await
            }
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(Failed::Etcd(e, _)) if is_compacted(&e) => Ok(()),
            Err(f) => Err(self.ctx.fail("compact", f)),
        }
    }

    /// A key whose only use is to read the revision with.
    fn revision_key(&self) -> Vec<u8> {
        let key = self.keys.full("");
        if key.is_empty() { vec![0] } else { key }
    }

    async fn read_revision(&self, at: Option<Revision>) -> Result<Revision, Failed> {
        let key = self.revision_key();
        let mut opts = ec::GetOptions::new().with_count_only();
        if let Some(rev) = at {
            opts = opts.with_revision(to_i64(rev));
        }
        let resp = call(&self.ctx, Retry::Always, || {
            let mut kv = self.kv.clone();
            let (key, opts) = (key.clone(), opts.clone());
            async move { kv.get(key, Some(opts)).await }
        })
        .await?;
        Ok(header_revision(resp.header()))
    }

    /// Finds which of a transaction's leases etcd did not find.
    async fn missing_lease(&self, leases: &[i64]) -> LeaseId {
        if let [only] = leases {
            return *only as LeaseId;
        }
        for &id in leases {
            let mut lease = self.lease.clone();
            let found = timeout(self.ctx.request_timeout, lease.time_to_live(id, None)).await;
            if matches!(found, Ok(Ok(ref r)) if r.ttl() < 0)
                || matches!(found, Ok(Err(ref e)) if is_lease_not_found(e))
            {
                return id as LeaseId;
            }
        }
        leases.first().map_or(0, |&id| id as LeaseId)
    }

    /// Learns how far history was compacted, from the cancellation etcd sends a watch that
    /// starts before it.
    async fn compacted(&self, prefix: &str, requested: Revision, current: Revision) -> StoreError {
        let oldest = async {
            let mut stream = open_watch(&self.watch, &self.keys, &self.ctx, prefix, requested)
                .await
                .ok()?;
            loop {
                let resp = stream.message().await.ok()??;
                if resp.compact_revision() > 0 {
                    return Some(resp.compact_revision() as Revision);
                }
            }
        };
        let oldest = timeout(self.ctx.request_timeout, oldest)
            .await
            .ok()
            .flatten();
        StoreError::Compacted {
            requested,
            // Should etcd not say, the current revision is safe: it is what the caller
            // re-lists at.
            oldest: oldest.unwrap_or(current.max(requested + 1)),
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let full = self.keys.full(key);
        let resp = call(&self.ctx, Retry::Always, || {
            let mut kv = self.kv.clone();
            let full = full.clone();
            async move { kv.get(full, None).await }
        })
        .await
        .map_err(|f| self.ctx.fail("get", f))?;
        resp.kvs().first().map(|kv| self.keys.kv(kv)).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let start = self.keys.full(prefix);
        let end = prefix_end(&start);
        let first = if start.is_empty() { vec![0] } else { start };
        // A listing is read page by page at the revision of its first page; should that
        // revision be compacted meanwhile, it starts over.
        'listing: for _ in 0..3 {
            let mut out = Vec::new();
            let mut from = first.clone();
            let mut revision = None;
            loop {
                let mut opts = ec::GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(PAGE);
                if let Some(rev) = revision {
                    opts = opts.with_revision(to_i64(rev));
                }
                let result = call(&self.ctx, Retry::Always, || {
                    let mut kv = self.kv.clone();
                    let (from, opts) = (from.clone(), opts.clone());
                    async move { kv.get(from, Some(opts)).await }
                })
                .await;
                let resp = match result {
                    Ok(resp) => resp,
                    Err(Failed::Etcd(e, _)) if revision.is_some() && is_compacted(&e) => {
                        continue 'listing;
                    }
                    Err(f) => return Err(self.ctx.fail("list", f)),
                };
                let rev = *revision.get_or_insert(header_revision(resp.header()));
                for kv in resp.kvs() {
                    out.push(self.keys.kv(kv)?);
                }
                match resp.kvs().last() {
                    Some(last) if resp.more() => {
                        from = last.key().to_vec();
                        from.push(0);
                    }
                    _ => return Ok((out, rev)),
                }
            }
        }
        Err(StoreError::Unavailable(
            "list: history kept being compacted under the listing".into(),
        ))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let ops = last_op_per_key(txn.ops);
        let mut leases: Vec<i64> = Vec::new();
        let then: Vec<ec::TxnOp> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    let opts = lease.map(|l| {
                        let l = to_i64(l);
                        if !leases.contains(&l) {
                            leases.push(l);
                        }
                        ec::PutOptions::new().with_lease(l)
                    });
                    ec::TxnOp::put(self.keys.full(key), value.clone(), opts)
                }
                Op::Delete { key } => ec::TxnOp::delete(self.keys.full(key), None),
            })
            .collect();
        let when: Vec<ec::Compare> = txn
            .compares
            .iter()
            .map(|c| match c {
                Compare::ModRevision(key, rev) => ec::Compare::mod_revision(
                    self.keys.full(key),
                    ec::CompareOp::Equal,
                    to_i64(*rev),
                ),
                Compare::Value(key, value) => {
                    ec::Compare::value(self.keys.full(key), ec::CompareOp::Equal, value.clone())
                }
            })
            .collect();
        // On failure, read every compared key in the same transaction: the reads see exactly
        // what the compares saw, which tells which compare failed.
        let mut compared: Vec<Vec<u8>> = Vec::new();
        for c in &txn.compares {
            let key = self.keys.full(compare_key(c));
            if !compared.contains(&key) {
                compared.push(key);
            }
        }
        let otherwise: Vec<ec::TxnOp> = compared
            .iter()
            .map(|k| ec::TxnOp::get(k.clone(), None))
            .collect();
        let request = ec::Txn::new().when(when).and_then(then).or_else(otherwise);

        let result = call(&self.ctx, Retry::IfNotSent, || {
            let mut kv = self.kv.clone();
            let request = request.clone();
            async move { kv.txn(request).await }
        })
        .await;
        let resp = match result {
            Ok(resp) => resp,
            Err(Failed::Etcd(e, _)) if is_lease_not_found(&e) && !leases.is_empty() => {
                return Err(StoreError::LeaseNotFound(self.missing_lease(&leases).await));
            }
            Err(f) => return Err(self.ctx.fail("txn", f)),
        };
        let revision = header_revision(resp.header());
        if resp.succeeded() {
            return Ok(TxnResult {
                succeeded: true,
                revision,
                failed_compare: None,
            });
        }
        let mut seen: HashMap<Vec<u8>, Option<ec::KeyValue>> = HashMap::new();
        for (key, op) in compared.into_iter().zip(resp.op_responses()) {
            if let ec::TxnOpResponse::Get(get) = op {
                seen.insert(key, get.kvs().first().cloned());
            }
        }
        let holds = |c: &Compare| {
            let Some(kv) = seen.get(&self.keys.full(compare_key(c))) else {
                return false;
            };
            match c {
                Compare::ModRevision(_, rev) => {
                    kv.as_ref().map_or(0, |kv| kv.mod_revision()) == to_i64(*rev)
                }
                Compare::Value(_, value) => kv.as_ref().is_some_and(|kv| kv.value() == value),
            }
        };
        let failed = txn.compares.iter().position(|c| !holds(c));
        if failed.is_none() {
            tracing::warn!("etcd failed a txn whose compares all hold on its own reads");
        }
        Ok(TxnResult {
            succeeded: false,
            revision,
            failed_compare: Some(failed.unwrap_or(0)),
        })
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.read_revision(None)
            .await
            .map_err(|f| self.ctx.fail("read revision", f))
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        let current = self
            .read_revision(None)
            .await
            .map_err(|f| self.ctx.fail("watch", f))?;
        if from > current + 1 {
            return Err(StoreError::FutureRevision {
                requested: from,
                current,
            });
        }
        let start = if from == 0 { current + 1 } else { from };
        if start <= current {
            match self.read_revision(Some(start)).await {
                Ok(_) => {}
                Err(Failed::Etcd(e, _)) if is_compacted(&e) => {
                    return Err(self.compacted(prefix, start, current).await);
                }
                Err(f) => return Err(self.ctx.fail("watch", f)),
            }
        }
        let stream = open_watch(&self.watch, &self.keys, &self.ctx, prefix, start)
            .await
            .map_err(|f| self.ctx.fail("watch", f))?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let pump = Pump {
            client: self.watch.clone(),
            keys: self.keys.clone(),
            ctx: self.ctx.clone(),
            prefix: prefix.to_owned(),
            next: start,
            tx,
        };
        tokio::spawn(pump.run(stream));
        Ok(receiver_stream(rx))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        // etcd counts in whole seconds (and raises a TTL below its minimum to it).
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = to_i64(secs.max(1));
        let resp = call(&self.ctx, Retry::IfNotSent, || {
            let mut lease = self.lease.clone();
            async move { lease.grant(secs, None).await }
        })
        .await
        .map_err(|f| self.ctx.fail("grant lease", f))?;
        Ok(resp.id() as LeaseId)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let id = lease as i64;
        let result = call(&self.ctx, Retry::Always, || {
            let mut client = self.lease.clone();
            async move { client.keep_alive(id).await.map(drop) }
        })
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(Failed::Etcd(e, _)) if is_lease_not_found(&e) => {
                Err(StoreError::LeaseNotFound(lease))
            }
            Err(f) => Err(self.ctx.fail("keep lease alive", f)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let id = lease as i64;
        let result = call(&self.ctx, Retry::IfNotSent, || {
            let mut client = self.lease.clone();
            async move { client.revoke(id).await.map(drop) }
        })
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(Failed::Etcd(e, _)) if is_lease_not_found(&e) => {
                Err(StoreError::LeaseNotFound(lease))
            }
            Err(f) => Err(self.ctx.fail("revoke lease", f)),
        }
    }
}

fn receiver_stream(mut rx: mpsc::Receiver<Result<Event, StoreError>>) -> WatchStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// Feeds one watch: reads etcd's stream, and re-opens it where it broke off.
struct Pump {
    client: ec::WatchClient,
    keys: Keys,
    ctx: Arc<Ctx>,
    prefix: String,
    /// The first revision not delivered yet.
    next: Revision,
    tx: mpsc::Sender<Result<Event, StoreError>>,
}

impl Pump {
    async fn run(mut self, mut stream: ec::WatchStream) {
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                () = self.tx.closed() => return,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) | Err(_) => {
                    let why = match message {
                        Err(e) => describe(&e),
                        _ => "the stream ended".to_owned(),
                    };
                    tracing::warn!(
                        prefix = %self.prefix, next = self.next, error = %why,
                        "etcd watch broke off; re-opening it"
                    );
                    match self.reopen().await {
                        Some(s) => {
                            stream = s;
                            continue;
                        }
                        None => return,
                    }
                }
            };
            if resp.canceled() {
                let err = if resp.compact_revision() > 0 {
                    StoreError::Compacted {
                        requested: self.next,
                        oldest: resp.compact_revision() as Revision,
                    }
                } else {
                    StoreError::Backend {
                        action: "watch",
                        reason: format!("etcd cancelled the watch: {}", resp.cancel_reason()),
                    }
                };
                let _ = self.tx.send(Err(err)).await;
                return;
            }
            let mut last = None;
            for e in resp.events() {
                let event = match self.keys.event(e) {
                    Ok(event) => event,
                    Err(err) => {
                        let _ = self.tx.send(Err(err)).await;
                        return;
                    }
                };
                let rev = event.kv.mod_revision;
                // etcd never splits a revision between responses, so everything below `next`
                // was delivered by the stream before a re-open.
                if rev < self.next {
                    continue;
                }
                last = Some(rev);
                if self.tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if let Some(rev) = last {
                self.next = rev + 1;
            }
        }
    }

    /// Re-opens the watch from `next`, as long as its reader is there; None when it is gone or
    /// the failure is not one that waiting cures.
    async fn reopen(&self) -> Option<ec::WatchStream> {
        let mut pause = FIRST_PAUSE;
        loop {
            let attempt = open_watch(&self.client, &self.keys, &self.ctx, &self.prefix, self.next);
            let result = tokio::select! {
                r = attempt => r,
                () = self.tx.closed() => return None,
            };
            match result {
                Ok(stream) => return Some(stream),
                Err(Failed::Etcd(e, _)) if kind(&e) == Kind::Other => {
                    let _ = self
                        .tx
                        .send(Err(self.ctx.fail("watch", Failed::Etcd(e, Vec::new()))))
                        .await;
                    return None;
                }
                Err(f) => {
                    tracing::debug!(error = %self.ctx.fail("watch", f), "re-opening an etcd watch");
                }
            }
            tokio::select! {
                () = sleep(pause) => {}
                () = self.tx.closed() => return None,
            }
            pause = (pause * 2).min(MAX_WATCH_PAUSE);
        }
    }
}

/// Opens an etcd watch on `prefix` from `start` (with previous values), once etcd confirmed it.
async fn open_watch(
    client: &ec::WatchClient,
    keys: &Keys,
    ctx: &Ctx,
    prefix: &str,
    start: Revision,
) -> Result<ec::WatchStream, Failed> {
    let key = keys.full(prefix);
    call(ctx, Retry::Always, || {
        let mut client = client.clone();
        let key = key.clone();
        async move {
            let opts = ec::WatchOptions::new()
                .with_prefix()
                .with_start_revision(to_i64(start))
                .with_prev_key();
            let mut stream = client.watch(key, Some(opts)).await?;
            loop {
                match stream.message().await? {
                    Some(resp) if resp.created() => return Ok(stream),
                    Some(_) => continue,
                    None => {
                        return Err(ec::Error::WatchError(
                            "the watch stream ended before etcd created the watch".into(),
                        ));
                    }
                }
            }
        }
    })
    .await
}

impl Keys {
    fn full(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(self.prefix.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    fn key(&self, full: &[u8]) -> Result<String, StoreError> {
        let decode = |reason: String| StoreError::Backend {
            action: "decode key",
            reason,
        };
        let rest = full.strip_prefix(self.prefix.as_bytes()).ok_or_else(|| {
            decode(format!(
                "etcd key {:?} is not under the prefix {:?}",
                String::from_utf8_lossy(full),
                self.prefix
            ))
        })?;
        String::from_utf8(rest.to_vec()).map_err(|_| {
            decode(format!(
                "etcd key {:?} is not UTF-8",
                String::from_utf8_lossy(full)
            ))
        })
    }

    fn kv(&self, kv: &ec::KeyValue) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.key(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision() as Revision,
            mod_revision: kv.mod_revision() as Revision,
            lease: (kv.lease() != 0).then_some(kv.lease() as LeaseId),
        })
    }

    fn event(&self, e: &ec::Event) -> Result<Event, StoreError> {
        let kv = e.kv().ok_or_else(|| StoreError::Backend {
            action: "watch",
            reason: "etcd sent an event without its key".into(),
        })?;
        let kind = match e.event_type() {
            ec::EventType::Put => EventKind::Put,
            ec::EventType::Delete => EventKind::Delete,
        };
        let mut kv = self.kv(kv)?;
        if kind == EventKind::Delete {
            kv.value.clear();
            kv.create_revision = 0;
            kv.lease = None;
        }
        Ok(Event {
            kind,
            kv,
            prev: e.prev_kv().map(|p| self.kv(p)).transpose()?,
        })
    }
}

fn compare_key(c: &Compare) -> &str {
    match c {
        Compare::ModRevision(key, _) | Compare::Value(key, _) => key,
    }
}

fn op_key(op: &Op) -> &str {
    match op {
        Op::Put { key, .. } | Op::Delete { key } => key,
    }
}

/// etcd refuses a transaction that writes a key twice; applying only the last op on each key
/// leaves the same state as applying them in order.
fn last_op_per_key(ops: Vec<Op>) -> Vec<Op> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        last.insert(op_key(op), i);
    }
    if last.len() == ops.len() {
        return ops;
    }
    let keep: Vec<bool> = (0..ops.len())
        .map(|i| last.get(op_key(&ops[i])) == Some(&i))
        .collect();
    ops.into_iter()
        .zip(keep)
        .filter_map(|(op, keep)| keep.then_some(op))
        .collect()
}

/// The first key after every key starting with `prefix`; `[0]` (no end) when there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    for i in (0..prefix.len()).rev() {
        if prefix[i] < 0xff {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            return end;
        }
    }
    vec![0]
}

fn header_revision(header: Option<&ec::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision().max(0) as Revision)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Calls, retries and errors.

/// Which failed attempts a call may repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads and keep-alives: any transport failure.
    Always,
    /// Writes: only when the request is known not to have reached etcd.
    IfNotSent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The request never reached etcd, or etcd refused it before doing anything.
    NotSent,
    /// The connection or the cluster failed; the request may or may not have been applied.
    Transient,
    /// An answer: retrying gives the same.
    Other,
}

/// Why a call failed.
#[derive(Debug)]
enum Failed {
    /// etcd's (or the connection's) answer to the last attempt, and the distinct reasons
    /// earlier attempts failed for.
    Etcd(ec::Error, Vec<String>),
    /// No answer within the request timeout, and why the attempts before failed.
    TimedOut(Vec<String>),
}

/// Runs `attempt` until it succeeds, fails in a way `retry` does not repeat, or the request
/// timeout is up.
async fn call<T, F, Fut>(ctx: &Ctx, retry: Retry, mut attempt: F) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ec::Error>>,
{
    let deadline = Instant::now() + ctx.request_timeout;
    let mut pause = FIRST_PAUSE;
    let mut earlier: Vec<String> = Vec::new();
    loop {
        let e = match timeout_at(deadline, attempt()).await {
            Err(_) => return Err(Failed::TimedOut(earlier)),
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e,
        };
        let again = match kind(&e) {
            Kind::NotSent => true,
            Kind::Transient => retry == Retry::Always,
            Kind::Other => false,
        };
        if !again || Instant::now() + pause >= deadline {
            return Err(Failed::Etcd(e, earlier));
        }
        let why = describe(&e);
        tracing::debug!(error = %why, "etcd call failed; retrying");
        if !earlier.contains(&why) {
            earlier.push(why);
        }
        sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

impl Ctx {
    fn fail(&self, action: &'static str, f: Failed) -> StoreError {
        let (e, mut reasons) = match f {
            Failed::TimedOut(reasons) => {
                let mut msg = format!(
                    "{action}: no answer from etcd at {} within {:?}",
                    self.endpoints, self.request_timeout
                );
                if !reasons.is_empty() {
                    msg += &format!(" (before that: {})", reasons.join("; "));
                }
                return StoreError::Unavailable(msg);
            }
            Failed::Etcd(e, reasons) => (e, reasons),
        };
        let last = describe(&e);
        match kind(&e) {
            Kind::NotSent | Kind::Transient => {
                reasons.retain(|r| *r != last);
                reasons.push(last);
                StoreError::Unavailable(format!(
                    "{action}: etcd at {}: {}",
                    self.endpoints,
                    reasons.join("; ")
                ))
            }
            Kind::Other => StoreError::Backend {
                action,
                reason: last,
            },
        }
    }
}

fn kind(e: &ec::Error) -> Kind {
    match e {
        ec::Error::GRpcStatus(status) => {
            if in_chain::<tonic::ConnectError>(status) || status.message() == "tcp connect error" {
                return Kind::NotSent;
            }
            let message = status.message();
            match status.code() {
                tonic::Code::Unavailable if message.contains("no leader") => Kind::NotSent,
                tonic::Code::ResourceExhausted if message.contains("too many requests") => {
                    Kind::NotSent
                }
                tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Internal
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted => Kind::Transient,
                _ => Kind::Other,
            }
        }
        ec::Error::TransportError(_) | ec::Error::IoError(_) | ec::Error::WatchError(_) => {
            Kind::Transient
        }
        ec::Error::LeaseKeepAliveError(m) if !m.contains("not found") => Kind::Transient,
        _ => Kind::Other,
    }
}

fn is_compacted(e: &ec::Error) -> bool {
    matches!(e, ec::Error::GRpcStatus(s) if s.message().contains("required revision has been compacted"))
}

fn is_lease_not_found(e: &ec::Error) -> bool {
    match e {
        ec::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::NotFound && s.message().contains("lease not found")
        }
        ec::Error::LeaseKeepAliveError(m) => m.contains("not found"),
        _ => false,
    }
}

fn in_chain<E: StdError + 'static>(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<E>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A short, readable reason: "connection refused", "TLS handshake failed: ...", or etcd's
/// own message.
fn describe(e: &ec::Error) -> String {
    let source = match e {
        ec::Error::GRpcStatus(s) => s.source(),
        ec::Error::TransportError(t) => Some(t as &(dyn StdError + 'static)),
        other => return other.to_string(),
    };
    let mut chain = Vec::new();
    let mut cur = source;
    while let Some(err) = cur {
        chain.push(err);
        cur = err.source();
    }
    for err in &chain {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return tls_failure(tls);
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::TimedOut => return "connection timed out".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
                _ => {}
            }
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return tls_failure(tls);
        }
    }
    let innermost = chain.last().map(|e| e.to_string());
    let mentions_tls = |m: &str| {
        let m = m.to_lowercase();
        m.contains("tls") || m.contains("certificate")
    };
    let message = match e {
        ec::Error::GRpcStatus(s) => s.message().trim_start_matches("etcdserver: ").to_owned(),
        _ => String::new(),
    };
    if chain.iter().any(|e| mentions_tls(&e.to_string())) || mentions_tls(&message) {
        return tls_failure(&innermost.as_deref().unwrap_or(&message));
    }
    match innermost {
        Some(inner) if message.is_empty() || inner.contains(&message) => inner,
        Some(inner) if !message.contains(&inner) => format!("{message}: {inner}"),
        _ => message,
    }
}

fn tls_failure(e: &dyn std::fmt::Display) -> String {
    let e = e.to_string();
    // The server's alerts when it does not accept the client's certificate, or its absence.
    let refused = ["BadCertificate", "CertificateRequired", "UnknownCA"]
        .iter()
        .any(|alert| e.contains(&format!("received fatal alert: {alert}")));
    if refused {
        format!("TLS handshake failed: etcd refused the client certificate (or its absence): {e}")
    } else {
        format!("TLS handshake failed: {e}")
    }
}

/// Asks one endpoint for its status, to tell a member that answers from one that does not.
async fn probe(
    url: &str,
    opts: &ec::ConnectOptions,
    dial: Duration,
    tls: bool,
) -> Result<(), String> {
    let attempt = async {
        let mut client = ec::Client::connect([url], Some(opts.clone())).await?;
        client.status().await
    };
    match timeout(dial, attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            let mut why = describe(&e);
            // A server that refuses the client's certificate (or its absence) closes the
            // connection after the handshake, which the client only sees as a closed connection.
            if tls && !why.contains("TLS") && kind(&e) != Kind::Other && !why.contains("refused") {
                why += " (after the TLS handshake: does etcd want a client certificate, or not \
                        trust this one?)";
            }
            Err(format!("{url}: {why}"))
        }
        Err(_) => Err(format!("{url}: no answer within {dial:?}")),
    }
}

/// Adds the scheme to a bare `host:port`, and refuses a scheme that contradicts the TLS options.
fn endpoint_url(endpoint: &str, tls: bool) -> Result<String, StoreError> {
    let e = endpoint.trim();
    let bad = |reason: &str| StoreError::Open {
        path: e.to_owned(),
        reason: reason.to_owned(),
    };
    let url = if e.is_empty() {
        return Err(StoreError::Open {
            path: "etcd".into(),
            reason: "an endpoint is empty".into(),
        });
    } else if e.starts_with("http://") {
        if tls {
            return Err(bad(
                "the TLS options need https:// endpoints, this one is http://",
            ));
        }
        e.to_owned()
    } else if e.starts_with("https://") {
        if !tls {
            return Err(bad("an https:// endpoint needs the TLS options (a CA)"));
        }
        e.to_owned()
    } else if e.contains("://") {
        return Err(bad("unsupported scheme: use http:// or https://"));
    } else {
        format!("{}://{e}", if tls { "https" } else { "http" })
    };
    url.parse::<http::Uri>()
        .map_err(|err| bad(&format!("not a URL: {err}")))?;
    Ok(url)
}

/// Reads and checks the TLS files: each exists and holds what it should, and the key fits the
/// certificate; so that a mistake is named here, not as a failed handshake later.
fn tls_config(t: &TlsOptions) -> Result<ec::TlsOptions, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let open = |path: &Path, reason: String| StoreError::Open {
        path: path.display().to_string(),
        reason,
    };
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| open(path, format!("read the TLS {what} file: {e}")))
    };
    let certs = |path: &Path, pem: &[u8], what: &str| {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| open(path, format!("the TLS {what} file is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(open(
                path,
                format!("the TLS {what} file holds no PEM certificate"),
            ));
        }
        Ok(certs)
    };

    let ca_pem = read(&t.ca, "CA")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(&t.ca, &ca_pem, "CA")? {
        roots.add(cert).map_err(|e| {
            open(
                &t.ca,
                format!("the TLS CA file holds a bad certificate: {e}"),
            )
        })?;
    }
    let mut config = ec::TlsOptions::new().ca_certificate(ec::Certificate::from_pem(&ca_pem));
    match (&t.cert, &t.key) {
        (None, None) => {}
        (Some(cert), None) => {
            return Err(open(
                cert,
                "a TLS client certificate needs its key file too".into(),
            ));
        }
        (None, Some(key)) => {
            return Err(open(
                key,
                "a TLS client key needs its certificate file too".into(),
            ));
        }
        (Some(cert), Some(key)) => {
            let cert_pem = read(cert, "client certificate")?;
            let chain = certs(cert, &cert_pem, "client certificate")?;
            let key_pem = read(key, "client key")?;
            let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                open(
                    key,
                    format!("the TLS client key file holds no PEM private key: {e}"),
                )
            })?;
            rustls::sign::CertifiedKey::from_der(
                chain,
                der,
                &rustls::crypto::ring::default_provider(),
            )
            .map_err(|e| {
                open(
                    key,
                    format!(
                        "the TLS client key does not fit the certificate {}: {e}",
                        cert.display()
                    ),
                )
            })?;
            config = config.identity(ec::Identity::from_pem(cert_pem, key_pem));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }

    #[test]
    fn the_last_op_on_a_key_wins() {
        let ops = vec![
            Op::put("a", "1"),
            Op::put("b", "1"),
            Op::delete("a"),
            Op::put("c", "1"),
            Op::put("b", "2"),
        ];
        assert_eq!(
            last_op_per_key(ops),
            [Op::delete("a"), Op::put("c", "1"), Op::put("b", "2")]
        );
    }

    #[test]
    fn endpoints_get_a_scheme_that_fits_the_tls_options() {
        assert_eq!(
            endpoint_url("127.0.0.1:2379", false).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_url("127.0.0.1:2379", true).unwrap(),
            "https://127.0.0.1:2379"
        );
        for (endpoint, tls) in [
            ("http://a:1", true),
            ("https://a:1", false),
            ("unix://x", false),
            ("", false),
        ] {
            assert!(
                matches!(endpoint_url(endpoint, tls), Err(StoreError::Open { .. })),
                "{endpoint} {tls}"
            );
        }
    }
}
