//! The conformance suite every [`Store`] implementation must pass.
//!
//! An implementation provides a [`Fixture`]; [`CASES`] lists every case so that a harness can
//! run each as its own test (see `tests/embedded.rs`), and [`run_all`] runs them in a row. Cases
//! panic on failure, like tests, and need a tokio runtime (they spawn tasks and use timers).
//!
//! While a case runs, nothing else may write to its store: the suite checks that every writing
//! transaction advances the revision by exactly one. Cases only use keys under `/conformance/`.

use crate::{
    Compare, Event, EventKind, KeyValue, LeaseId, Op, Revision, Store, StoreError, Txn, WatchStream,
};
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

/// How an implementation provides stores to the suite.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// A store of its own for one case, with no key under `/conformance/` (for etcd: a dedicated
    /// server, or a namespace on one that nothing else writes to while the case runs).
    async fn store(&self) -> Arc<dyn Store>;

    /// Drops the history before `revision` (at most the current revision), so that watching from
    /// an older revision fails with [`StoreError::Compacted`]. It may write to `store` outside
    /// `/conformance/`.
    async fn compact(&self, store: &Arc<dyn Store>, revision: Revision);
}

pub type Case = fn(Arc<dyn Fixture>) -> BoxFuture<'static, ()>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("get_put_delete", |f| get_put_delete(f).boxed()),
    ("list_prefix", |f| list_prefix(f).boxed()),
    ("revisions", |f| revisions(f).boxed()),
    ("txn_compares", |f| txn_compares(f).boxed()),
    ("txn_atomic", |f| txn_atomic(f).boxed()),
    ("watch_from_now", |f| watch_from_now(f).boxed()),
    ("watch_from_past", |f| watch_from_past(f).boxed()),
    ("watch_prefix", |f| watch_prefix(f).boxed()),
    ("watch_concurrent_writers", |f| {
        watch_concurrent_writers(f).boxed()
    }),
    ("watch_compacted", |f| watch_compacted(f).boxed()),
    ("watch_future_revision", |f| {
        watch_future_revision(f).boxed()
    }),
    ("lease_expiry", |f| lease_expiry(f).boxed()),
    ("lease_revoke", |f| lease_revoke(f).boxed()),
    ("lease_not_found", |f| lease_not_found(f).boxed()),
    ("lease_reattach", |f| lease_reattach(f).boxed()),
    ("cas_counter", |f| cas_counter(f).boxed()),
];

/// Runs every case in a row, each on a fresh store.
pub async fn run_all(fixture: Arc<dyn Fixture>) {
    for (name, case) in CASES {
        tracing::info!(case = name, "conformance case");
        case(fixture.clone()).await;
    }
}

/// The bound on every wait for something the store should do by itself.
const WAIT: Duration = Duration::from_secs(10);

async fn next_event(watch: &mut WatchStream) -> Event {
    match timeout(WAIT, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no event within {WAIT:?}"),
    }
}

async fn next_events(watch: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_event(watch).await);
    }
    out
}

fn put_with_lease(key: &str, value: &str, lease: LeaseId) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
        lease: Some(lease),
    }
}

async fn value_of(s: &Arc<dyn Store>, key: &str) -> Option<Vec<u8>> {
    s.get(key).await.unwrap().map(|kv| kv.value)
}

/// Gets, puts and deletes with their revisions.
pub async fn get_put_delete(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let k = "/conformance/gpd/key";
    assert_eq!(s.get(k).await.unwrap(), None);
    let r0 = s.revision().await.unwrap();

    let r1 = s.put(k, b"one".to_vec()).await.unwrap();
    assert_eq!(r1, r0 + 1, "a put makes one revision");
    assert_eq!(
        s.get(k).await.unwrap(),
        Some(KeyValue {
            key: k.into(),
            value: b"one".to_vec(),
            create_revision: r1,
            mod_revision: r1,
            lease: None,
        })
    );

    let r2 = s.put(k, b"two".to_vec()).await.unwrap();
    assert_eq!(r2, r1 + 1);
    let kv = s.get(k).await.unwrap().unwrap();
    assert_eq!(
        (kv.value, kv.create_revision, kv.mod_revision),
        (b"two".to_vec(), r1, r2),
        "an update keeps the create revision"
    );

    let r3 = s.delete(k).await.unwrap();
    assert_eq!(r3, r2 + 1);
    assert_eq!(s.get(k).await.unwrap(), None);
    assert_eq!(
        s.delete(k).await.unwrap(),
        r3,
        "deleting an absent key writes nothing"
    );

    let r4 = s.put(k, Vec::new()).await.unwrap();
    let kv = s.get(k).await.unwrap().expect("an empty value is a value");
    assert_eq!((kv.create_revision, kv.mod_revision), (r4, r4));
    assert!(kv.value.is_empty());

    let binary: Vec<u8> = (0..=255).collect();
    s.put(k, binary.clone()).await.unwrap();
    assert_eq!(value_of(&s, k).await, Some(binary));
    assert_eq!(s.revision().await.unwrap(), r4 + 1);
}

/// Listing by prefix: exactly the keys under it, sorted, with the current revision.
pub async fn list_prefix(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let p = "/conformance/list/";
    for k in [
        "/conformance/list/b",
        "/conformance/list/a",
        "/conformance/list/c/deep",
        "/conformance/lis",
        "/conformance/list",
        "/conformance/listx",
    ] {
        s.put(k, k.as_bytes().to_vec()).await.unwrap();
    }
    let current = s.revision().await.unwrap();

    let (kvs, rev) = s.list(p).await.unwrap();
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/conformance/list/a",
            "/conformance/list/b",
            "/conformance/list/c/deep"
        ]
    );
    assert_eq!(rev, current);
    for kv in &kvs {
        assert_eq!(kv.value, kv.key.as_bytes());
        assert!(kv.mod_revision <= rev);
    }

    let (all, _) = s.list("/conformance/").await.unwrap();
    let keys: Vec<&str> = all.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/conformance/lis",
            "/conformance/list",
            "/conformance/list/a",
            "/conformance/list/b",
            "/conformance/list/c/deep",
            "/conformance/listx",
        ],
        "sorted by bytes"
    );

    let (none, rev) = s.list("/conformance/nothing/").await.unwrap();
    assert!(none.is_empty());
    assert_eq!(rev, current);
}

/// One revision per writing transaction, none for a transaction that writes nothing.
pub async fn revisions(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let (a, b, c) = (
        "/conformance/rev/a",
        "/conformance/rev/b",
        "/conformance/rev/c",
    );
    let r0 = s.revision().await.unwrap();

    let res = s
        .txn(
            Txn::new()
                .then(Op::put(a, "1"))
                .then(Op::put(b, "1"))
                .then(Op::put(c, "1")),
        )
        .await
        .unwrap();
    assert!(res.succeeded);
    assert_eq!(res.revision, r0 + 1, "a multi-op txn is one revision");
    for k in [a, b, c] {
        let kv = s.get(k).await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision), (r0 + 1, r0 + 1));
    }

    let empty = s.txn(Txn::new()).await.unwrap();
    assert!(empty.succeeded);
    assert_eq!(empty.revision, r0 + 1, "an empty txn writes nothing");

    let absent = s
        .txn(
            Txn::new()
                .then(Op::delete("/conformance/rev/x"))
                .then(Op::delete("/conformance/rev/y")),
        )
        .await
        .unwrap();
    assert!(absent.succeeded);
    assert_eq!(absent.failed_compare, None);
    assert_eq!(
        absent.revision,
        r0 + 1,
        "deleting absent keys writes nothing"
    );

    let failed = s
        .txn(Txn::new().when(Compare::absent(a)).then(Op::put(a, "2")))
        .await
        .unwrap();
    assert!(!failed.succeeded);
    assert_eq!(
        failed.revision,
        r0 + 1,
        "a failed txn reports the current one"
    );

    let mixed = s
        .txn(
            Txn::new()
                .then(Op::put(a, "2"))
                .then(Op::delete("/conformance/rev/x")),
        )
        .await
        .unwrap();
    assert_eq!(mixed.revision, r0 + 2);
    let kv = s.get(a).await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r0 + 1, r0 + 2));
    assert_eq!(s.revision().await.unwrap(), r0 + 2);

    let mut last = r0 + 2;
    for i in 0..20 {
        let r = s.put(a, format!("{i}").into_bytes()).await.unwrap();
        assert_eq!(r, last + 1);
        last = r;
    }
}

/// Compares on mod revision (0 = absent) and value; a failure reports the first failing
/// compare and applies nothing.
pub async fn txn_compares(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let k = "/conformance/cmp/k";
    let other = "/conformance/cmp/other";
    let create = || Txn::new().when(Compare::absent(k)).then(Op::put(k, "v1"));

    let r = s.txn(create()).await.unwrap();
    assert!(r.succeeded, "create-if-absent on an absent key");
    assert_eq!(r.failed_compare, None);
    let rev1 = r.revision;

    let r = s.txn(create()).await.unwrap();
    assert!(!r.succeeded, "create-if-absent on an existing key");
    assert_eq!(r.failed_compare, Some(0));
    assert_eq!(r.revision, rev1);
    assert_eq!(value_of(&s, k).await.as_deref(), Some(&b"v1"[..]));

    let r = s
        .txn(
            Txn::new()
                .when(Compare::ModRevision(k.into(), rev1))
                .then(Op::put(k, "v2")),
        )
        .await
        .unwrap();
    assert!(r.succeeded, "mod revision compare with the current one");
    let rev2 = r.revision;

    let r = s
        .txn(
            Txn::new()
                .when(Compare::ModRevision(k.into(), rev1))
                .then(Op::put(k, "stale")),
        )
        .await
        .unwrap();
    assert!(!r.succeeded, "mod revision compare with a stale one");
    assert_eq!(r.failed_compare, Some(0));
    assert_eq!(r.revision, rev2);

    let by_value = |v: &str| {
        Txn::new()
            .when(Compare::Value(k.into(), b"v2".to_vec()))
            .then(Op::put(k, v))
    };
    assert!(s.txn(by_value("v3")).await.unwrap().succeeded);
    assert!(!s.txn(by_value("v4")).await.unwrap().succeeded);
    assert_eq!(value_of(&s, k).await.as_deref(), Some(&b"v3"[..]));

    let r = s
        .txn(
            Txn::new()
                .when(Compare::Value(other.into(), Vec::new()))
                .then(Op::put(other, "x")),
        )
        .await
        .unwrap();
    assert!(
        !r.succeeded,
        "an absent key has no value, not even an empty one"
    );

    let r = s
        .txn(
            Txn::new()
                .when(Compare::Value(k.into(), b"v3".to_vec()))
                .when(Compare::absent(k))
                .when(Compare::ModRevision(other.into(), 1))
                .then(Op::put(other, "x"))
                .then(Op::delete(k)),
        )
        .await
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.failed_compare, Some(1), "the first compare that fails");
    assert_eq!(
        s.get(other).await.unwrap(),
        None,
        "a failed txn applies nothing"
    );
    assert_eq!(value_of(&s, k).await.as_deref(), Some(&b"v3"[..]));

    let kv = s.get(k).await.unwrap().unwrap();
    let r = s
        .txn(
            Txn::new()
                .when(Compare::ModRevision(k.into(), kv.mod_revision))
                .when(Compare::Value(k.into(), b"v3".to_vec()))
                .when(Compare::absent(other))
                .then(Op::put(other, "x")),
        )
        .await
        .unwrap();
    assert!(r.succeeded, "every compare holds");
}

/// A multi-op transaction is applied whole, as one revision, its events in op order; one that
/// fails on a lease applies nothing.
pub async fn txn_atomic(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let p = "/conformance/atomic/";
    let (a, b, c) = (
        "/conformance/atomic/a",
        "/conformance/atomic/b",
        "/conformance/atomic/c",
    );
    s.put(a, b"1".to_vec()).await.unwrap();
    s.put(c, b"1".to_vec()).await.unwrap();
    let mut w = s.watch(p, 0).await.unwrap();

    let res = s
        .txn(
            Txn::new()
                .then(Op::put(a, "2"))
                .then(Op::put(b, "2"))
                .then(Op::delete(c)),
        )
        .await
        .unwrap();
    assert!(res.succeeded);
    let rev = res.revision;

    let events = next_events(&mut w, 3).await;
    let seen: Vec<(EventKind, &str, Revision)> = events
        .iter()
        .map(|e| (e.kind.clone(), e.kv.key.as_str(), e.kv.mod_revision))
        .collect();
    assert_eq!(
        seen,
        [
            (EventKind::Put, a, rev),
            (EventKind::Put, b, rev),
            (EventKind::Delete, c, rev)
        ]
    );
    assert_eq!(events[0].prev.as_ref().unwrap().value, b"1");
    assert_eq!(events[1].prev, None);
    assert_eq!(events[2].prev.as_ref().unwrap().value, b"1");

    let (kvs, list_rev) = s.list(p).await.unwrap();
    let listed: Vec<(&str, &[u8])> = kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(listed, [(a, &b"2"[..]), (b, &b"2"[..])]);
    assert_eq!(list_rev, rev);

    let lease = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    s.revoke_lease(lease).await.unwrap();
    let d = "/conformance/atomic/d";
    let err = s
        .txn(Txn::new().then(Op::put(d, "x")).then(put_with_lease(
            "/conformance/atomic/e",
            "x",
            lease,
        )))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotFound(l) if l == lease),
        "{err}"
    );
    assert_eq!(s.get(d).await.unwrap(), None, "nothing of it applied");
    assert_eq!(s.revision().await.unwrap(), rev);
}

/// A watch from now sees only later events, with their previous values.
pub async fn watch_from_now(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let p = "/conformance/wnow/";
    let a = "/conformance/wnow/a";
    let r0 = s.put(a, b"old".to_vec()).await.unwrap();
    let mut w = s.watch(p, 0).await.unwrap();

    let r1 = s.put(a, b"new".to_vec()).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(e.kind, EventKind::Put);
    assert_eq!(
        e.kv,
        KeyValue {
            key: a.into(),
            value: b"new".to_vec(),
            create_revision: r0,
            mod_revision: r1,
            lease: None
        }
    );
    let prev = e.prev.expect("prev of an update");
    assert_eq!((prev.value, prev.mod_revision), (b"old".to_vec(), r0));

    let b = "/conformance/wnow/b";
    let r2 = s.put(b, b"x".to_vec()).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!((e.kv.key.as_str(), e.kv.mod_revision), (b, r2));
    assert_eq!(e.prev, None, "a creation has no prev");

    let r3 = s.delete(a).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(e.kind, EventKind::Delete);
    assert_eq!((e.kv.key.as_str(), e.kv.mod_revision), (a, r3));
    assert!(e.kv.value.is_empty());
    let prev = e.prev.expect("prev of a delete");
    assert_eq!((prev.value, prev.mod_revision), (b"new".to_vec(), r1));
}

/// A watch from a past revision replays exactly from it, then continues live.
pub async fn watch_from_past(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let p = "/conformance/wpast/";
    let mut revs = Vec::new();
    for i in 0..5 {
        let key = format!("{p}k{i}");
        revs.push(s.put(&key, vec![i]).await.unwrap());
    }
    let mut w = s.watch(p, revs[1]).await.unwrap();
    let replayed = next_events(&mut w, 4).await;
    let seen: Vec<(String, Revision)> = replayed
        .iter()
        .map(|e| (e.kv.key.clone(), e.kv.mod_revision))
        .collect();
    let expected: Vec<(String, Revision)> = (1..5).map(|i| (format!("{p}k{i}"), revs[i])).collect();
    assert_eq!(seen, expected);

    let live = s.put(&format!("{p}k5"), vec![5]).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kv.key, e.kv.mod_revision),
        (format!("{p}k5"), live),
        "live after the replay, nothing in between"
    );

    let mut all = s.watch(p, revs[0]).await.unwrap();
    let e = next_event(&mut all).await;
    assert_eq!(e.kv.mod_revision, revs[0], "from is inclusive");
}

/// A watch sees only keys under its prefix.
pub async fn watch_prefix(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let p = "/conformance/wp/in/";
    let start = s.revision().await.unwrap() + 1;
    let mut w = s.watch(p, 0).await.unwrap();
    for k in [
        "/conformance/wp/out/x",
        "/conformance/wp/inx",
        "/conformance/wp/in",
    ] {
        s.put(k, b"x".to_vec()).await.unwrap();
    }
    let inside = "/conformance/wp/in/a";
    let r = s.put(inside, b"x".to_vec()).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!((e.kv.key.as_str(), e.kv.mod_revision), (inside, r));

    let mut past = s.watch(p, start).await.unwrap();
    let e = next_event(&mut past).await;
    assert_eq!((e.kv.key.as_str(), e.kv.mod_revision), (inside, r));
}

/// 16 writers at once: watches (one from before, one started in the middle of the writes from
/// their first revision), read while the writes go on, see every write once, in revision order.
pub async fn watch_concurrent_writers(f: Arc<dyn Fixture>) {
    const WRITERS: usize = 16;
    const EACH: usize = 25;
    let s = f.store().await;
    let p = "/conformance/wconc/";
    let sentinel = format!("{p}sentinel");
    let start = s.revision().await.unwrap() + 1;
    let live = read_until(s.watch(p, 0).await.unwrap(), sentinel.clone());

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut written = Vec::with_capacity(EACH);
                for j in 0..EACH {
                    let key = format!("{p}w{w:02}/{j:02}");
                    let rev = s.put(&key, vec![w as u8, j as u8]).await.unwrap();
                    written.push((rev, key));
                }
                written
            })
        })
        .collect();

    // Started while the writers are busy, so that history and live events must be stitched
    // together; several, each at another point, since the race is in a short window.
    let mut watches = vec![("live".to_owned(), live)];
    let deadline = Instant::now() + WAIT;
    for i in 1..8 {
        let after = start + (i * WRITERS * EACH / 8) as u64;
        loop {
            let current = s.revision().await.unwrap();
            if current >= after {
                break;
            }
            assert!(Instant::now() < deadline, "writers made no progress");
            sleep(Duration::from_millis(1)).await;
        }
        let watch = s.watch(p, start).await.unwrap();
        watches.push((
            format!("from the start, opened after {after}"),
            read_until(watch, sentinel.clone()),
        ));
    }

    let mut written = Vec::with_capacity(WRITERS * EACH + 1);
    for writer in writers {
        let mine = writer.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "one writer's revisions increase"
        );
        written.extend(mine);
    }
    written.sort_unstable();
    let total = (WRITERS * EACH) as u64;
    assert_eq!(
        written.iter().map(|(rev, _)| *rev).collect::<Vec<_>>(),
        (start..start + total).collect::<Vec<_>>(),
        "one revision per write, no gap"
    );
    let sentinel_rev = s.put(&sentinel, Vec::new()).await.unwrap();
    written.push((sentinel_rev, sentinel));

    for (name, watch) in watches {
        let seen = watch.await.unwrap();
        assert_eq!(seen.len(), written.len(), "watch {name}: every write once");
        for (got, want) in seen.iter().zip(&written) {
            assert_eq!(got, want, "watch {name}: in revision order");
        }
    }
}

/// Reads a watch in the background up to the first event on `last`.
fn read_until(
    mut watch: WatchStream,
    last: String,
) -> tokio::task::JoinHandle<Vec<(Revision, String)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let e = next_event(&mut watch).await;
            let done = e.kv.key == last;
            seen.push((e.kv.mod_revision, e.kv.key));
            if done {
                return seen;
            }
        }
    })
}

/// A watch from compacted history fails with Compacted.
pub async fn watch_compacted(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let p = "/conformance/wcomp/";
    let r1 = s.put(&format!("{p}a"), b"1".to_vec()).await.unwrap();
    let r2 = s.put(&format!("{p}a"), b"2".to_vec()).await.unwrap();
    f.compact(&s, r2).await;

    match s.watch(p, r1).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!(requested, r1);
            assert!(oldest > r1, "oldest {oldest} is past the compacted {r1}");
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a watch"),
    }

    let current = s.revision().await.unwrap();
    let mut w = s.watch(p, current + 1).await.unwrap();
    let r = s.put(&format!("{p}b"), Vec::new()).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv.mod_revision, r);
}

/// A watch from beyond the next revision fails; from the next one, it waits for it.
pub async fn watch_future_revision(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let p = "/conformance/wfut/";
    s.put(&format!("{p}a"), Vec::new()).await.unwrap();
    let current = s.revision().await.unwrap();
    match s.watch(p, current + 2).await {
        Err(StoreError::FutureRevision {
            requested,
            current: reported,
        }) => assert_eq!((requested, reported), (current + 2, current)),
        Err(e) => panic!("expected FutureRevision, got {e}"),
        Ok(_) => panic!("expected FutureRevision, got a watch"),
    }
    let mut w = s.watch(p, current + 1).await.unwrap();
    let r = s.put(&format!("{p}b"), Vec::new()).await.unwrap();
    assert_eq!(r, current + 1);
    assert_eq!(next_event(&mut w).await.kv.mod_revision, r);
}

/// Keep-alives keep a lease past its TTL; without them it expires, deleting its keys as one
/// revision with delete events.
pub async fn lease_expiry(f: Arc<dyn Fixture>) {
    const TTL: Duration = Duration::from_secs(2);
    let s = f.store().await;
    let p = "/conformance/lexp/";
    let (a, b, c) = (
        "/conformance/lexp/a",
        "/conformance/lexp/b",
        "/conformance/lexp/c",
    );
    let lease = s.grant_lease(TTL).await.unwrap();
    s.txn(
        Txn::new()
            .then(put_with_lease(a, "x", lease))
            .then(put_with_lease(b, "x", lease))
            .then(Op::put(c, "x")),
    )
    .await
    .unwrap();
    assert_eq!(s.get(a).await.unwrap().unwrap().lease, Some(lease));
    assert_eq!(s.get(c).await.unwrap().unwrap().lease, None);
    let mut w = s.watch(p, 0).await.unwrap();

    // Time has to pass here: the point is to outlive the TTL.
    let kept_until = Instant::now() + TTL + TTL / 2;
    while Instant::now() < kept_until {
        sleep(TTL / 4).await;
        s.keep_alive(lease).await.unwrap();
    }
    assert!(s.get(a).await.unwrap().is_some(), "kept alive past its TTL");

    let mut events = next_events(&mut w, 2).await;
    events.sort_by(|x, y| x.kv.key.cmp(&y.kv.key));
    assert_eq!(events[0].kv.mod_revision, events[1].kv.mod_revision);
    for (e, key) in events.iter().zip([a, b]) {
        assert_eq!(e.kind, EventKind::Delete);
        assert_eq!(e.kv.key, key);
        assert_eq!(e.prev.as_ref().unwrap().lease, Some(lease));
    }
    assert_eq!(s.get(a).await.unwrap(), None);
    assert_eq!(s.get(b).await.unwrap(), None);
    assert!(s.get(c).await.unwrap().is_some());
    assert!(matches!(
        s.keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(l)) if l == lease
    ));
}

/// Revoking deletes the lease's keys now, as one revision; a lease without keys revokes
/// without one.
pub async fn lease_revoke(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let p = "/conformance/lrev/";
    let (a, b, c) = (
        "/conformance/lrev/a",
        "/conformance/lrev/b",
        "/conformance/lrev/c",
    );
    let lease = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    s.txn(Txn::new().then(put_with_lease(a, "x", lease)))
        .await
        .unwrap();
    s.txn(Txn::new().then(put_with_lease(b, "x", lease)))
        .await
        .unwrap();
    s.put(c, b"x".to_vec()).await.unwrap();
    let mut w = s.watch(p, 0).await.unwrap();
    let before = s.revision().await.unwrap();

    s.revoke_lease(lease).await.unwrap();
    assert_eq!(s.revision().await.unwrap(), before + 1);
    let mut events = next_events(&mut w, 2).await;
    events.sort_by(|x, y| x.kv.key.cmp(&y.kv.key));
    for (e, key) in events.iter().zip([a, b]) {
        assert_eq!(e.kind, EventKind::Delete);
        assert_eq!((e.kv.key.as_str(), e.kv.mod_revision), (key, before + 1));
    }
    assert_eq!(s.get(a).await.unwrap(), None);
    assert!(s.get(c).await.unwrap().is_some());

    let empty = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    assert_ne!(empty, lease);
    s.revoke_lease(empty).await.unwrap();
    assert_eq!(
        s.revision().await.unwrap(),
        before + 1,
        "no keys, no revision"
    );
}

/// An unknown or revoked lease fails keep-alive, revoke and puts.
pub async fn lease_not_found(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let lease = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    s.keep_alive(lease).await.unwrap();
    s.revoke_lease(lease).await.unwrap();

    let not_found =
        |r: Result<(), StoreError>| matches!(r, Err(StoreError::LeaseNotFound(l)) if l == lease);
    assert!(not_found(s.keep_alive(lease).await), "keep-alive");
    assert!(not_found(s.revoke_lease(lease).await), "revoke");

    let before = s.revision().await.unwrap();
    let k = "/conformance/lnf/a";
    let r = s
        .txn(Txn::new().then(put_with_lease(k, "x", lease)))
        .await
        .map(|_| ());
    assert!(not_found(r), "put");
    assert_eq!(s.get(k).await.unwrap(), None);
    assert_eq!(s.revision().await.unwrap(), before);
}

/// A put moves a key to another lease, or to none, detaching it from the old one.
pub async fn lease_reattach(f: Arc<dyn Fixture>) {
    let s = f.store().await;
    let (a, b) = ("/conformance/lmove/a", "/conformance/lmove/b");
    let l1 = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    let l2 = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    s.txn(
        Txn::new()
            .then(put_with_lease(a, "1", l1))
            .then(put_with_lease(b, "1", l1)),
    )
    .await
    .unwrap();
    s.put(a, b"2".to_vec()).await.unwrap();
    s.txn(Txn::new().then(put_with_lease(b, "2", l2)))
        .await
        .unwrap();
    assert_eq!(s.get(a).await.unwrap().unwrap().lease, None);
    assert_eq!(s.get(b).await.unwrap().unwrap().lease, Some(l2));

    let before = s.revision().await.unwrap();
    s.revoke_lease(l1).await.unwrap();
    assert_eq!(s.revision().await.unwrap(), before, "l1 has no keys left");
    assert!(s.get(a).await.unwrap().is_some());
    assert!(s.get(b).await.unwrap().is_some());

    s.revoke_lease(l2).await.unwrap();
    assert!(s.get(a).await.unwrap().is_some());
    assert_eq!(s.get(b).await.unwrap(), None);
}

/// 200 concurrent compare-and-set increments of one counter, each retried until it wins, end
/// at exactly 200.
pub async fn cas_counter(f: Arc<dyn Fixture>) {
    const N: u64 = 200;
    let s = f.store().await;
    let k = "/conformance/cas/counter";
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                loop {
                    let (n, rev) = match s.get(k).await.unwrap() {
                        Some(kv) => (parse(&kv.value), kv.mod_revision),
                        None => (0, 0),
                    };
                    let r = s
                        .txn(
                            Txn::new()
                                .when(Compare::ModRevision(k.into(), rev))
                                .then(Op::put(k, (n + 1).to_string())),
                        )
                        .await
                        .unwrap();
                    if r.succeeded {
                        return r.revision;
                    }
                    assert_eq!(r.failed_compare, Some(0));
                }
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.push(
            timeout(6 * WAIT, task)
                .await
                .expect("increments stalled")
                .unwrap(),
        );
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len() as u64, N, "each increment its own revision");
    let kv = s.get(k).await.unwrap().unwrap();
    assert_eq!(parse(&kv.value), N);
    assert_eq!(Some(&kv.mod_revision), revisions.last());
}

fn parse(value: &[u8]) -> u64 {
    std::str::from_utf8(value).unwrap().parse().unwrap()
}
