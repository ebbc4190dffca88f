//! The watch cache against a real embedded store, in process: what every watcher reads is, line
//! for line, what the store's own watch gives from the same revision (each event once, in
//! order, allocation guards left out); a watcher that falls behind the ring is cut off with an
//! error line and lists again; closing ends every stream.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use master::keys;
use master::watch::{WatchCache, event_line};
use model::Kind;
use model::agent::{WatchEvent, WatchEventType};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use store::{EmbeddedOptions, EmbeddedStore, Op, Store, StoreError, Txn};

fn open(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(EmbeddedOptions::new(dir.join("contiv.redb"))).unwrap())
}

fn tenant(name: &str) -> (String, Vec<u8>) {
    let v = json!({"config": {"tenantName": name}});
    (
        keys::obj(Kind::Tenant, name),
        serde_json::to_vec(&v).unwrap(),
    )
}

fn endpoint(id: &str, tenant: &str) -> (String, Vec<u8>) {
    let v = json!({"endpointID": id, "tenantName": tenant, "networkName": "n"});
    (keys::ep(id), serde_json::to_vec(&v).unwrap())
}

/// Writes of every shape the cache meets: puts, updates, deletes, a transaction of several
/// events in one revision with an allocation guard among them.
async fn write_some(store: &dyn Store, round: usize) {
    let (k, v) = tenant(&format!("t{round}"));
    store.put(&k, v).await.unwrap();
    let (ek, ev) = endpoint(&format!("e{round}"), &format!("t{round}"));
    let (k2, v2) = tenant(&format!("u{round}"));
    store
        .txn(
            Txn::new()
                .then(Op::put(ek.clone(), ev))
                .then(Op::put(keys::ip("t:n", &format!("10.0.0.{round}")), "x"))
                .then(Op::put(k2, v2)),
        )
        .await
        .unwrap();
    let (k3, v3) = endpoint(&format!("e{round}"), "other");
    store.put(&k3, v3).await.unwrap();
    if round.is_multiple_of(2) {
        store.delete(&ek).await.unwrap();
    }
}

/// The store's own events from `from` up to `until`, as the lines a watcher must read.
async fn expected(store: &dyn Store, from: u64, until: u64) -> Vec<Bytes> {
    let mut w = store.watch(keys::ROOT, from).await.unwrap();
    let mut out = Vec::new();
    if from > until {
        return out;
    }
    loop {
        let ev = w.next().await.unwrap().unwrap();
        let rev = ev.kv.mod_revision;
        if let Some(l) = event_line(ev.kind, &ev.kv.key, &ev.kv.value, rev) {
            out.push(l);
        }
        if rev >= until {
            return out;
        }
    }
}

/// A watch stream read line by line (a chunk may hold several lines).
struct Lines<S> {
    stream: std::pin::Pin<Box<S>>,
    buf: Vec<u8>,
    ready: std::collections::VecDeque<Bytes>,
}

impl<S: Stream<Item = Bytes>> Lines<S> {
    fn new(stream: S) -> Self {
        Lines {
            stream: Box::pin(stream),
            buf: Vec::new(),
            ready: Default::default(),
        }
    }

    /// The next line; None at the end of the stream (with nothing left over).
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(l) = self.ready.pop_front() {
                return Some(l);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("watch lines within 10 s");
            let Some(chunk) = chunk else {
                assert!(self.buf.is_empty(), "lines come whole");
                return None;
            };
            self.buf.extend_from_slice(&chunk);
            while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                self.ready
                    .push_back(Bytes::from(self.buf.drain(..=nl).collect::<Vec<u8>>()));
            }
        }
    }

    async fn take(&mut self, n: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.next_line().await.expect("the stream goes on"));
        }
        out
    }

    /// Reads a listing up to its `synced` line: the put lines and the synced revision.
    async fn listing(&mut self) -> (Vec<Bytes>, u64) {
        let mut puts = Vec::new();
        loop {
            let l = self.take(1).await.remove(0);
            let e = parse(&l);
            if e.event_type == WatchEventType::Synced {
                return (puts, e.revision);
            }
            assert_eq!(e.event_type, WatchEventType::Put, "a listing holds puts");
            puts.push(l);
        }
    }
}

fn parse(l: &Bytes) -> WatchEvent {
    serde_json::from_slice(l).unwrap()
}

/// The store's current objects, as listing lines.
async fn listing_of(store: &dyn Store) -> (Vec<Bytes>, u64) {
    let (kvs, rev) = store.list(keys::ROOT).await.unwrap();
    let lines = kvs
        .iter()
        .filter_map(|kv| event_line(store::EventKind::Put, &kv.key, &kv.value, kv.mod_revision))
        .collect();
    (lines, rev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_watcher_reads_each_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Enough history that the cache is still taking it in from the store while the first
    // watchers start: they must not see it twice.
    for round in 0..300 {
        write_some(store.as_ref(), round).await;
    }
    let cache = WatchCache::start(store.clone(), 100_000).await.unwrap();
    let start_rev = store.revision().await.unwrap();

    // Watchers that list, and watchers that resume from every revision so far (the ring holds
    // the store's history from before the cache started), while writes go on.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for round in 300..340 {
                write_some(store.as_ref(), round).await;
            }
        })
    };
    let mut listing = Vec::new();
    for _ in 0..3 {
        listing.push(Lines::new(cache.watch(None).await.unwrap()));
    }
    let mut resuming = Vec::new();
    for from in (1..=start_rev).step_by(37).chain([start_rev]) {
        resuming.push((from, Lines::new(cache.watch(Some(from)).await.unwrap())));
    }
    writer.await.unwrap();
    let end = store.revision().await.unwrap();

    for w in &mut listing {
        let (puts, synced) = w.listing().await;
        // The listing is the store's state at the synced revision...
        let lines = expected(store.as_ref(), 1, end).await;
        let mut state = std::collections::BTreeMap::new();
        for l in &lines {
            let e = parse(l);
            if e.revision > synced {
                break;
            }
            match e.event_type {
                WatchEventType::Put => state.insert((e.kind, e.key), l.clone()),
                _ => state.remove(&(e.kind, e.key)),
            };
        }
        let mut got: Vec<Bytes> = puts.clone();
        got.sort();
        let mut want: Vec<Bytes> = state.into_values().collect();
        want.sort();
        assert_eq!(got, want, "the listing at revision {synced}");
        // ...followed by every event after it, once, in order.
        let want = expected(store.as_ref(), synced + 1, end).await;
        assert_eq!(w.take(want.len()).await, want);
    }
    for (from, w) in &mut resuming {
        let want = expected(store.as_ref(), *from, end).await;
        assert_eq!(w.take(want.len()).await, want, "resumed from {from}");
        let revs: Vec<u64> = want.iter().map(|l| parse(l).revision).collect();
        assert!(revs.windows(2).all(|p| p[0] <= p[1]), "{revs:?}");
    }
    // No guard keys went out.
    let all = expected(store.as_ref(), 1, end).await;
    assert!(
        all.iter()
            .all(|l| !String::from_utf8_lossy(l).contains("10.0.0.")),
        "allocation guards are not watch events"
    );

    // A resume past the store's next revision is refused; at the next one, it waits for it.
    assert!(matches!(
        cache.watch(Some(end + 2)).await.err(),
        Some(StoreError::FutureRevision { .. })
    ));
    let mut next = Lines::new(cache.watch(Some(end + 1)).await.unwrap());
    write_some(store.as_ref(), 999).await;
    let want = expected(store.as_ref(), end + 1, store.revision().await.unwrap()).await;
    assert_eq!(next.take(want.len()).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_behind_the_ring_is_cut_off_and_lists_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cache = WatchCache::start(store.clone(), 8).await.unwrap();
    let mut slow = Lines::new(cache.watch(None).await.unwrap());
    let mut fast = Lines::new(cache.watch(None).await.unwrap());
    let (_, from) = slow.listing().await;
    let (_, fast_from) = fast.listing().await;
    assert_eq!(from, fast_from);

    // The fast one reads as events come; the slow one reads nothing meanwhile.
    let mut fast_read = Vec::new();
    for round in 0..10 {
        write_some(store.as_ref(), round).await;
        let end = store.revision().await.unwrap();
        let want = expected(store.as_ref(), from + 1, end).await;
        let more = fast.take(want.len() - fast_read.len()).await;
        fast_read.extend(more);
        assert_eq!(fast_read, want);
    }

    // The slow one: an error line, then the end of its stream.
    let cut = parse(&slow.take(1).await[0]);
    assert_eq!(cut.event_type, WatchEventType::Error, "{cut:?}");
    assert!(cut.error.unwrap().contains("re-list"));
    assert!(slow.next_line().await.is_none());

    // Resuming from where it was is refused as too old (the agent lists again on 410)...
    assert!(matches!(
        cache.watch(Some(from + 1)).await.err(),
        Some(StoreError::Compacted { .. })
    ));
    // ...and a new listing is the store's state.
    let mut again = Lines::new(cache.watch(None).await.unwrap());
    let (mut puts, rev) = again.listing().await;
    let (mut want, want_rev) = listing_of(store.as_ref()).await;
    puts.sort();
    want.sort();
    assert_eq!((puts, rev), (want, want_rev));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_ends_every_stream_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_some(store.as_ref(), 0).await;
    let cache = WatchCache::start(store.clone(), 100).await.unwrap();
    let mut ws = Vec::new();
    for _ in 0..50 {
        let mut w = Lines::new(cache.watch(None).await.unwrap());
        w.listing().await;
        ws.push(w);
    }
    assert_eq!(cache.watchers(), 50);
    cache.close();
    for w in &mut ws {
        let end = w.next_line().await;
        assert!(end.is_none(), "ended without an error line: {end:?}");
    }
    assert!(matches!(
        cache.watch(None).await.err(),
        Some(StoreError::Unavailable(_))
    ));
}

fn placed(id: &str, net: &str, host: &str) -> (String, Vec<u8>) {
    let v = json!({"endpointID": id, "tenantName": "t", "networkName": net, "host": host});
    (keys::ep(id), serde_json::to_vec(&v).unwrap())
}

/// Per-node streams over a small ring: a node whose networks are quiet while the ring turns
/// over many times is not cut off (nothing it needed went), and gets its network's next event;
/// a node that does not read while events of its network pass the ring is cut off and lists
/// again, as an unfiltered watcher is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_node_is_not_cut_off_a_slow_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cache = WatchCache::start(store.clone(), 8).await.unwrap();
    let from = store.revision().await.unwrap() + 1;
    for (id, net, host) in [("q1", "quiet", "q"), ("s1", "busy", "s")] {
        let (k, v) = placed(id, net, host);
        store.put(&k, v).await.unwrap();
    }
    let mut quiet = Lines::new(cache.watch_for(Some(from), Some("q")).await.unwrap());
    let mut slow = Lines::new(cache.watch_for(Some(from), Some("s")).await.unwrap());
    let mut all = Lines::new(cache.watch_for(Some(from), None).await.unwrap());
    assert_eq!(parse(&quiet.take(1).await[0]).key, "q1");
    assert_eq!(parse(&slow.take(1).await[0]).key, "s1");
    all.take(2).await;

    // 40 events of the busy network (5 times the ring), read by no one.
    for i in 0..40 {
        let (k, v) = placed(&format!("b{i}"), "busy", "other");
        store.put(&k, v).await.unwrap();
    }
    let (k, v) = placed("q2", "quiet", "elsewhere");
    store.put(&k, v).await.unwrap();
    let got = parse(&quiet.take(1).await[0]);
    assert_eq!(
        (got.event_type, got.key.as_str()),
        (WatchEventType::Put, "q2"),
        "{got:?}"
    );
    for w in [&mut slow, &mut all] {
        let cut = parse(&w.take(1).await[0]);
        assert_eq!(cut.event_type, WatchEventType::Error, "{cut:?}");
        assert!(w.next_line().await.is_none());
    }

    // A non-endpoint event every node reads passing the ring cuts the quiet node off too.
    store.put(&tenant("x").0, tenant("x").1).await.unwrap();
    for i in 40..60 {
        let (k, v) = placed(&format!("b{i}"), "busy", "other");
        store.put(&k, v).await.unwrap();
    }
    let (k, v) = placed("q3", "quiet", "elsewhere");
    store.put(&k, v).await.unwrap();
    let cut = parse(&quiet.take(1).await[0]);
    assert_eq!(cut.event_type, WatchEventType::Error, "{cut:?}");
}
