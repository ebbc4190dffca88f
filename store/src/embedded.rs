//! The embedded store: one redb file, written by a single thread that group-commits.
//!
//! Every write (txn, lease grant, lease revoke, lease expiry) goes through the writer thread,
//! which applies everything pending in one redb transaction and pays for one fsync per batch.
//! Committed changes are kept in an on-disk event log (revision → events) for watches to resume
//! from, and fanned out live to watchers once durable.

mod codec;
mod watch;
mod writer;

use crate::{KeyValue, LeaseId, Revision, Store, StoreError, Txn, TxnResult, WatchStream};
use async_trait::async_trait;
use redb::{Database, DatabaseError, ReadTransaction, ReadableDatabase, TableDefinition};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};
use writer::{Request, Writer};

/// Key → [`codec::encode_kv`] record.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Revision → [`codec::encode_events`] entry; contiguous from `OLDEST` to `REVISION`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Lease → TTL in milliseconds.
const LEASES: TableDefinition<u64, u64> = TableDefinition::new("leases");
/// (lease, key) for every key attached to a lease, so that revoking needs no scan.
const LEASE_KEYS: TableDefinition<(u64, &str), ()> = TableDefinition::new("lease_keys");

const REVISION: &str = "revision";
/// The oldest revision still in the log (one past the newest dropped).
const OLDEST: &str = "oldest";
const NEXT_LEASE: &str = "next_lease";
/// How many events the log holds, to compact it by event count without scanning it.
const LOG_EVENTS: &str = "log_events";

/// Options of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The database file; created (with its directory) when missing.
    pub path: PathBuf,
    /// How many events the log keeps for watches to resume from. A watch from a revision older
    /// than that fails with [`StoreError::Compacted`].
    pub history: usize,
    /// How many committed batches live watchers may fall behind before they have to catch up
    /// from the log.
    pub watch_buffer: usize,
}

impl EmbeddedOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            history: 100_000,
            watch_buffer: 1024,
        }
    }
}

/// The embedded [`Store`]. Dropping it (or [`EmbeddedStore::close`]) lets the writer finish what
/// was already submitted, ends watches and releases the file.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// What the handle, the writer thread and the watch streams share.
struct Shared {
    /// None once closed: taking it is what releases the file, whoever still holds `Shared`.
    db: RwLock<Option<Database>>,
    /// Deadlines live only in memory: after a restart every lease gets a full TTL again.
    leases: Mutex<HashMap<LeaseId, LeaseState>>,
    /// Subscription point for watches; None once closed so that their streams end.
    events: Mutex<Option<broadcast::Sender<Published>>>,
}

#[derive(Debug, Clone, Copy)]
struct LeaseState {
    ttl: Duration,
    deadline: Instant,
}

/// One committed revision.
#[derive(Debug)]
struct Change {
    revision: Revision,
    events: Vec<crate::Event>,
}

/// The changes of one committed batch, in revision order.
type Published = Arc<[Change]>;

impl EmbeddedStore {
    /// Opens (or creates) the store file and starts its writer thread.
    pub fn open(opts: EmbeddedOptions) -> Result<Self, StoreError> {
        let path = opts.path.display().to_string();
        let fail = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        if let Some(dir) = opts.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("create directory {}: {e}", dir.display())))?;
        }
        let db = Database::create(&opts.path).map_err(|e| {
            fail(match e {
                DatabaseError::DatabaseAlreadyOpen => "the file is locked by another process \
                    (is another netmaster using this data dir?)"
                    .to_owned(),
                e => e.to_string(),
            })
        })?;
        let (meta, leases) = writer::init(&db).map_err(|e| fail(e.to_string()))?;

        let now = Instant::now();
        let leases: HashMap<_, _> = leases
            .into_iter()
            .map(|(id, ttl)| {
                let deadline = deadline(now, ttl);
                (id, LeaseState { ttl, deadline })
            })
            .collect();
        let (events, _) = broadcast::channel(opts.watch_buffer.max(1));
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(db)),
            leases: Mutex::new(leases),
            events: Mutex::new(Some(events.clone())),
        });
        // Unbounded, yet bounded by the callers in flight since each one waits for its answer;
        // std's receiver is what lets the writer wait with a timeout for the next lease expiry.
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(shared.clone(), rx, events, meta, opts.history as u64);
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| fail(format!("start writer thread: {e}")))?;
        Ok(Self {
            shared,
            requests: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Stops the store: what was already submitted is committed and answered, later calls fail
    /// with [`StoreError::Unavailable`], watches end, and the file is released. Blocks until the
    /// writer has finished its current batch. Idempotent.
    pub fn close(&self) -> Result<(), StoreError> {
        // Dropping the only sender lets the writer drain the queue and exit.
        drop(lock(&self.requests).take());
        let writer = lock(&self.writer).take();
        let panicked = writer.is_some_and(|w| w.join().is_err());
        drop(lock(&self.shared.events).take());
        let db = self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(db) = db {
            db.close().during("close database")?;
        }
        if panicked {
            return Err(StoreError::Backend {
                action: "close writer",
                reason: "the writer thread panicked".into(),
            });
        }
        Ok(())
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.requests)
            .as_ref()
            .ok_or_else(closed)?
            .send(make(tx))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    fn ensure_open(&self) -> Result<(), StoreError> {
        lock(&self.requests).as_ref().map(|_| ()).ok_or_else(closed)
    }

    /// Runs a read against a consistent snapshot, off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        blocking(self.shared.clone(), move |s| s.read(f)).await
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing the store");
        }
    }
}

impl Shared {
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or_else(closed)?;
        let rtx = db.begin_read().during("begin read")?;
        f(&rtx)
    }

    fn subscribe(&self) -> Result<broadcast::Receiver<Published>, StoreError> {
        Ok(lock(&self.events).as_ref().ok_or_else(closed)?.subscribe())
    }
}

fn read_meta(rtx: &ReadTransaction, key: &str) -> Result<u64, StoreError> {
    let meta = rtx.open_table(META).during("open meta")?;
    let value = meta.get(key).during("read meta")?;
    Ok(value.map_or(0, |v| v.value()))
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.read(move |rtx| {
            let kv = rtx.open_table(KV).during("open kv")?;
            let found = kv.get(key.as_str()).during("read kv")?;
            found.map(|v| codec::decode_kv(&key, v.value())).transpose()
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |rtx| {
            let kv = rtx.open_table(KV).during("open kv")?;
            let mut out = Vec::new();
            for entry in kv.range(prefix.as_str()..).during("read kv")? {
                let (k, v) = entry.during("read kv")?;
                if !k.value().starts_with(prefix.as_str()) {
                    break;
                }
                out.push(codec::decode_kv(k.value(), v.value())?);
            }
            Ok((out, read_meta(rtx, REVISION)?))
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        self.submit(|reply| Request::Txn(txn, reply)).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        // From the database rather than a cached counter, so that it is never behind a listing.
        self.read(|rtx| read_meta(rtx, REVISION)).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        watch::start(self.shared.clone(), prefix.to_owned(), from).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.submit(|reply| Request::Grant(ttl, reply)).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.ensure_open()?;
        let now = Instant::now();
        match lock(&self.shared.leases).get_mut(&lease) {
            // Past its deadline it is as good as revoked, even if the writer has yet to do so.
            Some(state) if state.deadline > now => {
                state.deadline = deadline(now, state.ttl);
                Ok(())
            }
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.submit(|reply| Request::Revoke(lease, reply)).await
    }
}

fn deadline(now: Instant, ttl: Duration) -> Instant {
    // A TTL too long to represent never expires in practice.
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(10 * 365 * 24 * 3600))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent across a panic: every critical section is a single step.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn closed() -> StoreError {
    StoreError::Unavailable("closed".into())
}

/// Runs blocking redb work off the async runtime.
async fn blocking<T: Send + 'static>(
    shared: Arc<Shared>,
    f: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || f(&shared))
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
}

/// Names the step a redb error happened in.
trait During<T> {
    fn during(self, action: &'static str) -> Result<T, StoreError>;
}

impl<T, E: std::fmt::Display> During<T> for Result<T, E> {
    fn during(self, action: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend {
            action,
            reason: e.to_string(),
        })
    }
}
