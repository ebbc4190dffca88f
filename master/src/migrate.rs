//! `netmaster migrate`: copies the state from one store to another (embedded store to etcd, and
//! back), so that a single-host installation grows into a cluster without re-creating objects.

use crate::keys;
use store::{Op, Store, StoreError, Txn};

/// etcd refuses transactions of more than 128 operations by default.
const BATCH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the destination already holds {count} keys under {root} (for example {example}): migrate into an empty store, or pass --force to replace them"
    )]
    NotEmpty {
        count: usize,
        root: &'static str,
        example: String,
    },
    #[error("{action}: {source}")]
    Store {
        action: &'static str,
        #[source]
        source: StoreError,
    },
}

/// Keys that belong to running processes, not to the state: node registrations (on leases that
/// do not exist in the other store; agents register again), the leader key and masters' presence,
/// down markers.
fn is_state(key: &str) -> bool {
    !(key.starts_with(keys::NODES)
        || key == keys::LEADER
        || key.starts_with(keys::DOWN)
        || key.starts_with(keys::MASTERS))
}

async fn state_keys(
    s: &dyn Store,
    action: &'static str,
) -> Result<Vec<store::KeyValue>, MigrateError> {
    let (kvs, _) = s
        .list(keys::ROOT)
        .await
        .map_err(|source| MigrateError::Store { action, source })?;
    Ok(kvs.into_iter().filter(|kv| is_state(&kv.key)).collect())
}

async fn apply(to: &dyn Store, ops: Vec<Op>, action: &'static str) -> Result<(), MigrateError> {
    for chunk in ops.chunks(BATCH) {
        let txn = Txn {
            compares: Vec::new(),
            ops: chunk.to_vec(),
        };
        to.txn(txn)
            .await
            .map_err(|source| MigrateError::Store { action, source })?;
    }
    Ok(())
}

/// Copies every state key of `from` into `to`; returns how many. `to` must hold no state unless
/// `force`, which deletes what it holds first. Nothing may write to either store meanwhile.
pub async fn copy(from: &dyn Store, to: &dyn Store, force: bool) -> Result<usize, MigrateError> {
    let existing = state_keys(to, "list the destination").await?;
    if !existing.is_empty() {
        if !force {
            return Err(MigrateError::NotEmpty {
                count: existing.len(),
                root: keys::ROOT,
                example: existing[0].key.clone(),
            });
        }
        let deletes = existing
            .iter()
            .map(|kv| Op::delete(kv.key.clone()))
            .collect();
        apply(to, deletes, "clear the destination").await?;
    }
    let kvs = state_keys(from, "list the source").await?;
    let n = kvs.len();
    let puts = kvs
        .into_iter()
        .map(|kv| Op::put(kv.key, kv.value))
        .collect();
    apply(to, puts, "write the destination").await?;
    tracing::info!(keys = n, "migrated");
    Ok(n)
}
