//! The netmaster's state store.
//!
//! [`Store`] is shaped after etcd v3 so that the embedded implementation ([`EmbeddedStore`], on
//! redb) and the etcd one ([`EtcdStore`], behind the default feature `etcd`) are
//! interchangeable: a single global revision that every write bumps, per-key create/mod
//! revisions, transactions guarded by compares, watches that resume from a revision, and leases
//! whose expiry deletes the keys attached to them.
//!
//! Both implementations must pass the same suite in [`conformance`].

pub mod conformance;
mod embedded;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
pub mod testing;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdOptions, EtcdStore, TlsOptions};

use async_trait::async_trait;
use futures::stream::BoxStream;
use std::time::Duration;

/// A store revision. Revision 0 means "before any write"; the first write makes revision 1.
pub type Revision = u64;

/// A lease id. Never 0.
pub type LeaseId = u64;

/// One key with its value and bookkeeping, as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since it last did not exist).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// A condition a transaction checks before it applies its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals the given one; 0 means "the key does not exist".
    ModRevision(String, Revision),
    /// The key exists and holds exactly this value.
    Value(String, Vec<u8>),
}

impl Compare {
    /// The key must not exist.
    pub fn absent(key: impl Into<String>) -> Self {
        Compare::ModRevision(key.into(), 0)
    }
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }
}

/// A transaction: if every compare holds, every op is applied atomically, as one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn when(mut self, c: Compare) -> Self {
        self.compares.push(c);
        self
    }
    pub fn then(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// True when every compare held and the ops were applied.
    pub succeeded: bool,
    /// The store's revision after the transaction: the new revision when it succeeded and wrote
    /// something, else the current one. A successful transaction whose ops are all deletes of
    /// absent keys (or which has no ops) writes nothing and does not bump the revision.
    pub revision: Revision,
    /// When it failed: the index in `compares` of the first compare that did not hold.
    pub failed_compare: Option<usize>,
}

/// What happened to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, in revision order. Events of one transaction share its revision and come in the
/// order of its ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For Put: the new key-value. For Delete: the key with an empty value and
    /// `mod_revision` = the revision of the delete.
    pub kv: KeyValue,
    /// The key-value before this event, when there was one.
    pub prev: Option<KeyValue>,
}

/// A watch: events under a prefix, in revision order, without gaps. It ends with an
/// `Err(StoreError::Compacted)` when the watcher fell so far behind that the history it needs is
/// gone (the caller must then re-list and watch again), or with another error when the store
/// shuts down.
pub type WatchStream = BoxStream<'static, Result<Event, StoreError>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "revision {requested} has been compacted (oldest kept is {oldest}): re-list and watch from the current revision"
    )]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("revision {requested} is in the future (current is {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("open store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("store {action}: {reason}")]
    Backend {
        action: &'static str,
        reason: String,
    },
}

/// The netmaster's store. Every method is safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// One key, or None.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix`, sorted by key, and the revision the listing reflects.
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError>;

    /// Applies a transaction atomically. When it returns Ok, the result is durable.
    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError>;

    /// The current revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Events under `prefix` with revision >= `from` (inclusive), then live events. `from` = 0 means
    /// "from now on" (only events after the call). A `from` older than the kept history fails
    /// with [`StoreError::Compacted`]; a `from` beyond the next revision fails with
    /// [`StoreError::FutureRevision`].
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError>;

    /// Grants a lease that expires `ttl` after its last keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Renews a lease. Fails with [`StoreError::LeaseNotFound`] when it has expired.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Revokes a lease now, deleting its keys (as one revision, with delete events).
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Convenience: unconditional put.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        Ok(self
            .txn(Txn::new().then(Op::put(key, value)))
            .await?
            .revision)
    }

    /// Convenience: unconditional delete.
    async fn delete(&self, key: &str) -> Result<Revision, StoreError> {
        Ok(self.txn(Txn::new().then(Op::delete(key))).await?.revision)
    }
}
