//! The watch cache: one store watch per netmaster, fanned out to every `GET /api/v1/watch`.
//!
//! Each store event is converted to its NDJSON line once, and that line (reference-counted
//! [`Bytes`]) is shared by every watcher: a bounded ring of the latest events, which every
//! watcher reads through a cursor of its own. The current objects are kept beside the ring, as
//! the lines of their last put, so that a watcher without a revision gets its initial listing
//! from one shared snapshot (rebuilt only when the revision moved since the last one) rather
//! than from a store scan of its own.
//!
//! A watcher that falls behind the ring (it stopped reading while more than the ring's capacity
//! of events came in) gets an `error` line and its stream ends; agents then list again
//! (netplugin `cluster::follow`). A resume (`?revision=N`) older than the ring is refused with
//! 410, as a compacted store revision was. [`WatchCache::close`] ends every stream at once
//! (SIGTERM: agents resume on another master from their revision).
//!
//! The ring starts with the store's recent history (up to its capacity), so that agents
//! resume across a netmaster restart without listing again.
//!
//! **Per-node streams** (`?node=<host>`, [`WatchCache::watch_for`]): every event but endpoint
//! events, and the endpoint events of the networks (`tenant:network`) where the node has an
//! endpoint of its own: what its agent's flows use (fabric: remote endpoints only of networks
//! with local members; policy matches groups by id, carried in registers, not by address).
//! Its *interest* (the node's own endpoints, by network) is derived per watcher as it reads: at
//! the listing's revision, or, on a resume from revision F, from the current index undone back
//! over the ring's events from F on (each endpoint event records where the endpoint was before
//! and after it, from the store's previous value). When the node gets its first endpoint in a
//! network, the stream carries that network's current endpoints first (tagged with a revision
//! below the event's, so that a stream cut in the middle of them resumes at the event and sends
//! them again), then the event. When its last endpoint there goes, nothing more of that
//! network comes, and the agent drops that network's endpoints itself (netplugin
//! `ClusterView`), so that they are not stale when the interest comes back. A publish wakes the
//! per-node watchers through an index network → watchers (and host → watcher): an endpoint
//! event costs a wake-up and a write only for the nodes it concerns.

use crate::keys;
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use model::agent::{WatchEvent, WatchEventType};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use store::{EventKind, Revision, Store, StoreError};
use tokio::sync::Notify;

/// Events the ring keeps by default: as many as the embedded store's log, so that a resume the
/// store could serve, the cache serves too.
pub const DEFAULT_HISTORY: usize = 100_000;

/// A watcher's read, and a snapshot's chunks, are cut at about this size: one write each.
const CHUNK: usize = 16 * 1024;

/// Store events taken from the store watch and published to the watchers at once.
const BATCH: usize = 1024;

/// A watcher writes at most once per this interval: under a stream of events, each write carries
/// the events of the interval (one wake-up, one TLS record and one syscall per watcher for many
/// events instead of one each), which is what keeps the cost per event flat as watchers grow.
/// An event after a quiet interval goes out at once.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Pause before watching the store again after its watch broke.
const RETRY: Duration = Duration::from_millis(500);

/// One event of the ring.
#[derive(Clone)]
struct Cached {
    revision: Revision,
    line: Bytes,
    /// For an endpoint event: where the endpoint was before and after it (per-node streams).
    ep: Option<Arc<EpChange>>,
}

/// Where an endpoint is: its network (`tenant:network`) and its host.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Place {
    net: Arc<str>,
    host: Arc<str>,
}

impl Place {
    /// The place an endpoint's stored value names; None when unreadable.
    fn of(value: &[u8]) -> Option<Place> {
        #[derive(serde::Deserialize)]
        struct Fields {
            #[serde(rename = "tenantName", default)]
            tenant: String,
            #[serde(rename = "networkName", default)]
            network: String,
            #[serde(default)]
            host: String,
        }
        let f: Fields = serde_json::from_slice(value).ok()?;
        Some(Place {
            net: format!("{}:{}", f.tenant, f.network).into(),
            host: f.host.into(),
        })
    }
}

/// What one endpoint event changes: the endpoint's store key, its place before and after.
#[derive(Debug)]
struct EpChange {
    key: String,
    before: Option<Place>,
    after: Option<Place>,
}

impl EpChange {
    fn of(ev: &store::Event) -> Option<EpChange> {
        if !matches!(keys::parse(&ev.kv.key), keys::Parsed::Endpoint(_)) {
            return None;
        }
        Some(EpChange {
            key: ev.kv.key.clone(),
            before: ev.prev.as_ref().and_then(|p| Place::of(&p.value)),
            after: match ev.kind {
                EventKind::Put => Place::of(&ev.kv.value),
                EventKind::Delete => None,
            },
        })
    }
}

/// The current endpoints, indexed for per-node streams.
#[derive(Default)]
struct EpIndex {
    /// Store key → place.
    place: HashMap<String, Place>,
    /// Network → the store keys of its endpoints (a node's backlog when it joins the network).
    by_net: HashMap<Arc<str>, BTreeSet<String>>,
    /// Host → its endpoints' store keys → network (a node's interest).
    by_host: HashMap<Arc<str>, HashMap<String, Arc<str>>>,
}

impl EpIndex {
    fn set(&mut self, key: &str, place: Option<Place>) {
        if let Some(old) = self.place.remove(key) {
            if let Some(s) = self.by_net.get_mut(&old.net) {
                s.remove(key);
                if s.is_empty() {
                    self.by_net.remove(&old.net);
                }
            }
            if let Some(m) = self.by_host.get_mut(&old.host) {
                m.remove(key);
                if m.is_empty() {
                    self.by_host.remove(&old.host);
                }
            }
        }
        if let Some(p) = place {
            self.by_net
                .entry(p.net.clone())
                .or_default()
                .insert(key.to_string());
            self.by_host
                .entry(p.host.clone())
                .or_default()
                .insert(key.to_string(), p.net.clone());
            self.place.insert(key.to_string(), p);
        }
    }

    fn of_listing(kvs: &[store::KeyValue]) -> EpIndex {
        let mut ix = EpIndex::default();
        for kv in kvs {
            if matches!(keys::parse(&kv.key), keys::Parsed::Endpoint(_))
                && let Some(p) = Place::of(&kv.value)
            {
                ix.set(&kv.key, Some(p));
            }
        }
        ix
    }
}

struct Inner {
    /// The current objects, by store key: the line of their last put.
    objects: BTreeMap<String, Bytes>,
    /// The current endpoints' places.
    eps: EpIndex,
    /// The revision `objects` reflects.
    revision: Revision,
    /// The revision of the listing `objects` started from: events up to it are history only.
    listed: Revision,
    ring: VecDeque<Cached>,
    /// The sequence number of `ring[0]`; sequence numbers never go back, across reloads too.
    first_seq: u64,
    /// Every event with a revision from this one on is in the ring.
    floor: Revision,
    /// Bumped when the cache lost the store's history and listed again: a watcher that started
    /// before cannot go on without a gap.
    epoch: u64,
    /// The sequence number of the latest event every watcher reads (not an endpoint's) that
    /// left the ring.
    common_trimmed: Option<u64>,
}

impl Inner {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.ring.len() as u64
    }
}

/// The initial listing at one revision, shared by the watchers that list while it is current.
struct Snapshot {
    revision: Revision,
    epoch: u64,
    /// Where a watcher starting from this snapshot reads the ring from.
    seq: u64,
    /// The objects' put lines, then the `synced` line, in chunks of about [`CHUNK`].
    chunks: Arc<[Bytes]>,
    /// The put lines of every object but endpoints, in chunks (per-node listings).
    common: Arc<[Bytes]>,
    /// The `synced` line.
    synced: Bytes,
}

/// How a publish reaches one per-node watcher.
struct Waker {
    notify: Notify,
    /// The lowest sequence number of an event for this watcher it may not have read (u64::MAX:
    /// none). Lowered by publish, raised by the watcher's reads, both under the cache's lock:
    /// a quiet watcher whose cursor the ring passed by loses nothing it needed and moves on
    /// instead of being cut off.
    unread: AtomicU64,
}

/// Which per-node watchers to wake for which endpoint events.
#[derive(Default)]
struct Registry {
    next: u64,
    by_net: HashMap<Arc<str>, HashMap<u64, Arc<Waker>>>,
    by_host: HashMap<Arc<str>, HashMap<u64, Arc<Waker>>>,
}

fn enrol(
    m: &mut HashMap<Arc<str>, HashMap<u64, Arc<Waker>>>,
    k: &Arc<str>,
    id: u64,
    n: &Arc<Waker>,
) {
    m.entry(k.clone()).or_default().insert(id, n.clone());
}

fn leave(m: &mut HashMap<Arc<str>, HashMap<u64, Arc<Waker>>>, k: &str, id: u64) {
    if let Some(w) = m.get_mut(k) {
        w.remove(&id);
        if w.is_empty() {
            m.remove(k);
        }
    }
}

/// A per-node watcher's interest: its node's endpoints, by network.
struct Filter {
    id: u64,
    node: Arc<str>,
    /// The node's endpoints (store key → network) as of the watcher's position.
    own: HashMap<String, Arc<str>>,
    /// Network → how many of `own` are in it.
    nets: HashMap<Arc<str>, usize>,
    /// Woken by a publish of an endpoint event of one of `nets` or of `node`.
    waker: Arc<Waker>,
    /// Sent by a publish of events every watcher reads (not endpoints), by close and reload.
    common: tokio::sync::watch::Receiver<u64>,
}

impl Filter {
    /// `unread`: where the watcher starts reading, or u64::MAX when nothing is there yet.
    fn new(cache: &WatchCache, node: &str, own: HashMap<String, Arc<str>>, unread: u64) -> Filter {
        let mut nets: HashMap<Arc<str>, usize> = HashMap::new();
        for n in own.values() {
            *nets.entry(n.clone()).or_default() += 1;
        }
        let node: Arc<str> = node.into();
        let waker = Arc::new(Waker {
            notify: Notify::new(),
            unread: AtomicU64::new(unread),
        });
        let id = {
            let mut r = cache.registry();
            r.next += 1;
            let id = r.next;
            enrol(&mut r.by_host, &node, id, &waker);
            for n in nets.keys() {
                enrol(&mut r.by_net, n, id, &waker);
            }
            id
        };
        Filter {
            id,
            node,
            own,
            nets,
            waker,
            common: cache.common.subscribe(),
        }
    }

    /// Takes in one endpoint event: what it changes of the node's endpoints, whether the
    /// watcher reads it, and the network the node just joined (its backlog is due).
    fn take(&mut self, c: &EpChange, registry: &Mutex<Registry>) -> (bool, Option<Arc<str>>) {
        let mine = |p: &Option<Place>| p.as_ref().filter(|p| *p.host == *self.node).cloned();
        let (was, is) = (mine(&c.before), mine(&c.after));
        if let (Some(w), Some(i)) = (&was, &is)
            && w.net == i.net
            && self.own.contains_key(&c.key)
        {
            // Rewritten in place: the node's interest is the same.
            return (true, None);
        }
        if was.is_none() && is.is_none() {
            let net = c.after.as_ref().or(c.before.as_ref()).map(|p| &p.net);
            return (net.is_some_and(|n| self.nets.contains_key(n)), None);
        }
        let mut joined = None;
        if let Some(p) = was
            && self.own.remove(&c.key).is_some()
            && let Some(n) = self.nets.get_mut(&p.net)
        {
            *n -= 1;
            if *n == 0 {
                self.nets.remove(&p.net);
                leave(&mut lock(registry).by_net, &p.net, self.id);
            }
        }
        if let Some(p) = is {
            self.own.insert(c.key.clone(), p.net.clone());
            let n = self.nets.entry(p.net.clone()).or_default();
            *n += 1;
            if *n == 1 {
                enrol(&mut lock(registry).by_net, &p.net, self.id, &self.waker);
                joined = Some(p.net);
            }
        }
        (true, joined)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct WatchCache {
    store: Arc<dyn Store>,
    inner: RwLock<Inner>,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    /// The next sequence number, sent at each publish; also sent (unchanged) by `close`.
    head: tokio::sync::watch::Sender<u64>,
    /// Sent when a publish holds events every per-node watcher reads (not endpoints), by
    /// `close` and by a reload: per-node watchers wait on it and on their own [`Notify`].
    common: tokio::sync::watch::Sender<u64>,
    registry: Mutex<Registry>,
    closed: AtomicBool,
    /// Tells the feeding task to stop.
    closing: tokio::sync::watch::Sender<bool>,
    capacity: usize,
}

/// Where a watcher is in the ring.
struct Cursor {
    seq: u64,
    /// Ring events older than this are skipped: the watcher has them already (from the
    /// snapshot, or it asked to resume later than the ring's start).
    min_revision: Revision,
    epoch: u64,
}

enum Read {
    Lines(Bytes),
    Nothing,
    /// The watcher cannot go on without a gap: the error line's text.
    Cut(String),
}

impl WatchCache {
    /// Lists the store, starts its one watch (from up to `capacity` revisions back, to fill the
    /// ring with history) and the task that feeds the cache from it.
    pub async fn start(store: Arc<dyn Store>, capacity: usize) -> Result<Arc<Self>, StoreError> {
        let capacity = capacity.max(1);
        let (kvs, revision) = store.list(keys::ROOT).await?;
        let eps = EpIndex::of_listing(&kvs);
        let objects = kvs
            .iter()
            .filter_map(|kv| {
                let line = event_line(EventKind::Put, &kv.key, &kv.value, kv.mod_revision)?;
                Some((kv.key.clone(), line))
            })
            .collect();
        let mut from = (revision + 1).saturating_sub(capacity as u64).max(1);
        let stream = match store.watch(keys::ROOT, from).await {
            Ok(s) => s,
            Err(StoreError::Compacted { oldest, .. }) if oldest <= revision + 1 => {
                from = oldest.max(1);
                store.watch(keys::ROOT, from).await?
            }
            Err(e) => return Err(e),
        };
        let cache = Arc::new(WatchCache {
            store,
            inner: RwLock::new(Inner {
                objects,
                eps,
                revision,
                listed: revision,
                ring: VecDeque::new(),
                first_seq: 0,
                floor: from,
                epoch: 0,
                common_trimmed: None,
            }),
            snapshot: Mutex::new(None),
            head: tokio::sync::watch::channel(0).0,
            common: tokio::sync::watch::channel(0).0,
            registry: Mutex::new(Registry::default()),
            closed: AtomicBool::new(false),
            closing: tokio::sync::watch::channel(false).0,
            capacity,
        });
        tokio::spawn(cache.clone().feed(stream, from));
        Ok(cache)
    }

    /// Ends every watch stream (without an error line: watchers resume from their revision,
    /// elsewhere), refuses new ones and stops following the store.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.send_replace(true);
        self.head.send_modify(|_| {});
        self.common.send_modify(|_| {});
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// How many watch streams are open.
    pub fn watchers(&self) -> usize {
        self.head.receiver_count()
    }

    /// The stream of `GET /api/v1/watch`: without `from`, every current object as a `put`, a
    /// `synced` line at the listing's revision, then the events after it; with `from`, the
    /// events from that revision on (inclusive). [`StoreError::Compacted`] when `from` is older
    /// than the ring, [`StoreError::FutureRevision`] when it is past the store's next revision.
    pub async fn watch(
        self: &Arc<Self>,
        from: Option<Revision>,
    ) -> Result<impl Stream<Item = Bytes> + Send + 'static, StoreError> {
        self.watch_for(from, None).await
    }

    /// [`Self::watch`], or with `node`, the stream of what concerns that node: every object
    /// but endpoints, and the endpoints of the networks where the node has one (see the
    /// module's documentation).
    pub async fn watch_for(
        self: &Arc<Self>,
        from: Option<Revision>,
        node: Option<&str>,
    ) -> Result<impl Stream<Item = Bytes> + Send + 'static, StoreError> {
        if self.is_closed() {
            return Err(StoreError::Unavailable(
                "netmaster is stopping: watch another netmaster".into(),
            ));
        }
        // Subscribed before the ring is read, so that no publish after it goes unnoticed (a
        // per-node watcher's filter subscribes its own channels before it is given a cursor).
        let head = self.head.subscribe();
        let (initial, cursor, filter) = match from {
            None => {
                // A per-node listing: the shared lines of every object but endpoints, then
                // the endpoints of the node's networks, from the index at the same revision.
                let (snap, listed) = self.snapshot(|snap, inner| {
                    let node = node?;
                    let own = inner.eps.by_host.get(node).cloned().unwrap_or_default();
                    let unread = if snap.seq == inner.next_seq() {
                        u64::MAX
                    } else {
                        snap.seq
                    };
                    let filter = Filter::new(self, node, own, unread);
                    let mut chunks: Vec<Bytes> = snap.common.to_vec();
                    let mut buf = BytesMut::new();
                    for n in filter.nets.keys() {
                        backlog(inner, n, None, None, &mut buf);
                    }
                    buf.extend_from_slice(&snap.synced);
                    chunks.push(buf.freeze());
                    Some((Arc::<[Bytes]>::from(chunks), Some(filter)))
                });
                let cursor = Cursor {
                    seq: snap.seq,
                    min_revision: snap.revision + 1,
                    epoch: snap.epoch,
                };
                match node {
                    None => (snap.chunks.clone(), cursor, None),
                    Some(_) => {
                        let (chunks, filter) = listed.expect("listed for the node");
                        (chunks, cursor, filter)
                    }
                }
            }
            Some(from) => {
                let from = from.max(1);
                let (cursor, latest, filter) = {
                    let inner = self.read();
                    if from < inner.floor {
                        return Err(StoreError::Compacted {
                            requested: from,
                            oldest: inner.floor,
                        });
                    }
                    let idx = inner.ring.partition_point(|e| e.revision < from);
                    let cursor = Cursor {
                        seq: inner.first_seq + idx as u64,
                        min_revision: from,
                        epoch: inner.epoch,
                    };
                    // The node's endpoints just before `from`: the current ones, with the
                    // ring's events from `from` on undone, latest first.
                    let filter = node.map(|node| {
                        let mut own = inner.eps.by_host.get(node).cloned().unwrap_or_default();
                        for e in inner.ring.range(idx..).rev() {
                            let Some(c) = &e.ep else { continue };
                            if c.after.as_ref().is_some_and(|p| *p.host == *node) {
                                own.remove(&c.key);
                            }
                            if let Some(p) = c.before.as_ref().filter(|p| *p.host == *node) {
                                own.insert(c.key.clone(), p.net.clone());
                            }
                        }
                        let unread = if idx == inner.ring.len() {
                            u64::MAX
                        } else {
                            cursor.seq
                        };
                        Filter::new(self, node, own, unread)
                    });
                    (cursor, inner.revision, filter)
                };
                if from > latest + 1 {
                    // The cache may trail the store by the events in flight: only the store
                    // says whether this revision is yet to come. The events from it on come
                    // after the cursor, whichever it is.
                    let current = self.store.revision().await?;
                    if from > current + 1 {
                        return Err(StoreError::FutureRevision {
                            requested: from,
                            current,
                        });
                    }
                }
                (Arc::from(Vec::new()), cursor, filter)
            }
        };
        let state = Watcher {
            cache: self.clone(),
            initial,
            next_initial: 0,
            cursor,
            head,
            filter,
            done: false,
            flushed: None,
        };
        Ok(futures::stream::unfold(state, Watcher::next))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The listing at the cache's current revision: the last one built if still current, else
    /// a new one (one build serves every watcher that lists meanwhile); with what `also` makes
    /// of it and of the cache at that same revision.
    fn snapshot<R>(&self, also: impl FnOnce(&Snapshot, &Inner) -> R) -> (Arc<Snapshot>, R) {
        let mut cached = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let inner = self.read();
        if let Some(s) = cached.as_ref()
            && s.revision == inner.revision
            && s.epoch == inner.epoch
        {
            let r = also(s, &inner);
            return (s.clone(), r);
        }
        let (mut chunks, mut common) = (Vec::new(), Vec::new());
        let (mut buf, mut cbuf) = (BytesMut::with_capacity(CHUNK), BytesMut::new());
        for (key, line) in &inner.objects {
            add_to_chunks(&mut chunks, &mut buf, line);
            if !matches!(keys::parse(key), keys::Parsed::Endpoint(_)) {
                add_to_chunks(&mut common, &mut cbuf, line);
            }
        }
        if !cbuf.is_empty() {
            common.push(cbuf.freeze());
        }
        let synced = line(&WatchEvent {
            revision: inner.revision,
            event_type: WatchEventType::Synced,
            kind: String::new(),
            key: String::new(),
            value: None,
            state: None,
            error: None,
        });
        buf.extend_from_slice(&synced);
        chunks.push(buf.freeze());
        let snap = Arc::new(Snapshot {
            revision: inner.revision,
            epoch: inner.epoch,
            seq: inner.next_seq(),
            chunks: chunks.into(),
            common: common.into(),
            synced,
        });
        *cached = Some(snap.clone());
        let r = also(&snap, &inner);
        (snap, r)
    }

    /// The ring's lines from the cursor on, up to about [`CHUNK`] bytes; for a per-node
    /// watcher, only those it reads, with the backlog of a network the node joins.
    fn read_from(&self, cursor: &mut Cursor, mut filter: Option<&mut Filter>) -> Read {
        let inner = self.read();
        if cursor.epoch != inner.epoch {
            return Read::Cut(
                "netmaster lost the store's history and listed it again: re-list".into(),
            );
        }
        if cursor.seq < inner.first_seq
            && let Some(f) = filter.as_deref()
            && f.waker.unread.load(Ordering::Acquire) >= inner.first_seq
            && inner.common_trimmed.is_none_or(|c| c < cursor.seq)
        {
            // A per-node watcher with nothing for it among the events gone (its networks
            // were quiet): it goes on from the ring's start.
            cursor.seq = inner.first_seq;
        }
        if cursor.seq < inner.first_seq {
            return Read::Cut(format!(
                "this watch fell more than {} events behind (revision {} is no longer kept): re-list",
                self.capacity, inner.floor
            ));
        }
        let start = (cursor.seq - inner.first_seq) as usize;
        let mut lines: Vec<&Bytes> = Vec::new();
        let mut backlogs: Option<BytesMut> = None;
        let mut size = 0;
        let mut end = start;
        for e in inner.ring.range(start..) {
            if size >= CHUNK {
                break;
            }
            end += 1;
            if e.revision < cursor.min_revision {
                continue;
            }
            if let (Some(f), Some(c)) = (filter.as_deref_mut(), &e.ep) {
                let (reads, joined) = f.take(c, &self.registry);
                if let Some(net) = joined {
                    // The backlog goes before the event: written into one buffer with the
                    // lines so far, to keep the order.
                    let buf = backlogs.get_or_insert_with(BytesMut::new);
                    for l in lines.drain(..) {
                        buf.extend_from_slice(l);
                    }
                    let before = buf.len();
                    let node = filter.as_deref().map(|f| f.node.clone());
                    backlog(
                        &inner,
                        &net,
                        Some(e.revision.saturating_sub(1)),
                        node.as_deref(),
                        buf,
                    );
                    size += buf.len() - before;
                }
                if !reads {
                    continue;
                }
            }
            size += e.line.len();
            match backlogs.as_mut() {
                Some(buf) => buf.extend_from_slice(&e.line),
                None => lines.push(&e.line),
            }
        }
        cursor.seq = inner.first_seq + end as u64;
        if let Some(f) = filter.as_deref() {
            // Everything before the cursor is read; past the ring's end nothing is there yet.
            let unread = if end == inner.ring.len() {
                u64::MAX
            } else {
                cursor.seq
            };
            f.waker.unread.store(unread, Ordering::Release);
        }
        if let Some(buf) = backlogs {
            return Read::Lines(buf.freeze());
        }
        match lines.as_slice() {
            [] if end == start => Read::Nothing,
            [] => Read::Lines(Bytes::new()),
            [one] => Read::Lines((*one).clone()),
            many => {
                let mut buf = BytesMut::with_capacity(size);
                for l in many {
                    buf.extend_from_slice(l);
                }
                Read::Lines(buf.freeze())
            }
        }
    }

    /// Feeds the cache from the store watch for as long as the cache is open: converts each
    /// event once, applies it to the objects and appends it to the ring. `next` is the revision
    /// the stream goes on from.
    async fn feed(self: Arc<Self>, mut stream: store::WatchStream, mut next: Revision) {
        let mut closing = self.closing.subscribe();
        loop {
            let first = tokio::select! {
                ev = stream.next() => ev,
                _ = closing.wait_for(|c| *c) => return,
            };
            if self.is_closed() {
                return;
            }
            let failure = match first {
                Some(Ok(ev)) => {
                    let mut batch = vec![ev];
                    let mut failure = None;
                    while batch.len() < BATCH {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(ev))) => batch.push(ev),
                            Some(Some(Err(e))) => {
                                failure = Some(e);
                                break;
                            }
                            Some(None) => {
                                failure = Some(StoreError::Unavailable("watch ended".into()));
                                break;
                            }
                            None => break,
                        }
                    }
                    if let Some(last) = batch.last() {
                        next = last.kv.mod_revision + 1;
                    }
                    self.publish(batch);
                    match failure {
                        None => continue,
                        Some(e) => e,
                    }
                }
                Some(Err(e)) => e,
                None => StoreError::Unavailable("watch ended".into()),
            };
            match self.rewatch(failure, &mut next).await {
                Some(s) => stream = s,
                None => return,
            }
        }
    }

    /// A new store watch after the last one failed: from where it stopped, or, when the store
    /// no longer has that revision, from a new listing (the watchers then have to list again).
    async fn rewatch(
        &self,
        mut failure: StoreError,
        next: &mut Revision,
    ) -> Option<store::WatchStream> {
        loop {
            if self.is_closed() {
                return None;
            }
            if matches!(failure, StoreError::Compacted { .. }) {
                tracing::warn!(error = %failure, "watch cache: the store's history is gone; listing again");
                match self.reload().await {
                    Ok((stream, from)) => {
                        *next = from;
                        return Some(stream);
                    }
                    Err(e) => failure = e,
                }
            } else {
                tracing::warn!(error = %failure, "watch cache: the store watch broke; watching again");
                tokio::time::sleep(RETRY).await;
                match self.store.watch(keys::ROOT, *next).await {
                    Ok(s) => return Some(s),
                    Err(e) => failure = e,
                }
            }
        }
    }

    /// Lists the store again and replaces the cache's content; every open watch is cut.
    async fn reload(&self) -> Result<(store::WatchStream, Revision), StoreError> {
        let (kvs, revision) = self.store.list(keys::ROOT).await?;
        let stream = self.store.watch(keys::ROOT, revision + 1).await?;
        let eps = EpIndex::of_listing(&kvs);
        let objects = kvs
            .iter()
            .filter_map(|kv| {
                let line = event_line(EventKind::Put, &kv.key, &kv.value, kv.mod_revision)?;
                Some((kv.key.clone(), line))
            })
            .collect();
        let next_seq = {
            let mut inner = self.write();
            let next_seq = inner.next_seq();
            *inner = Inner {
                objects,
                eps,
                revision,
                listed: revision,
                ring: VecDeque::new(),
                first_seq: next_seq,
                floor: revision + 1,
                epoch: inner.epoch + 1,
                common_trimmed: None,
            };
            next_seq
        };
        self.head.send_replace(next_seq);
        self.common.send_replace(next_seq);
        Ok((stream, revision + 1))
    }

    /// Applies a batch of store events (converted outside the lock) and wakes the watchers:
    /// every unfiltered one; per-node ones for the events that concern them (index network →
    /// watchers), all of them only for events that are not endpoints.
    fn publish(&self, batch: Vec<store::Event>) {
        let converted: Vec<(store::Event, Option<Bytes>, Option<Arc<EpChange>>)> = batch
            .into_iter()
            .map(|ev| {
                let line = event_line(
                    ev.kind.clone(),
                    &ev.kv.key,
                    &ev.kv.value,
                    ev.kv.mod_revision,
                );
                let ep = EpChange::of(&ev).map(Arc::new);
                (ev, line, ep)
            })
            .collect();
        let mut common = false;
        let mut wake: Vec<Arc<Waker>> = Vec::new();
        let next_seq = {
            let mut inner = self.write();
            // Under the cache's lock: the watchers' reads (which raise `unread`) are not.
            let registry = self.registry();
            for (ev, line, ep) in converted {
                let rev = ev.kv.mod_revision;
                let Some(line) = line else {
                    // Not for watchers (allocation guards, the leader key...), yet the
                    // revision moved.
                    inner.revision = inner.revision.max(rev);
                    continue;
                };
                // Events up to the listing's revision are history: the objects have them.
                if rev > inner.listed {
                    match ev.kind {
                        EventKind::Put => {
                            inner.objects.insert(ev.kv.key.clone(), line.clone());
                        }
                        EventKind::Delete => {
                            inner.objects.remove(&ev.kv.key);
                        }
                    }
                    if let Some(c) = &ep {
                        inner.eps.set(&c.key, c.after.clone());
                    }
                }
                let seq = inner.next_seq();
                match &ep {
                    Some(c) => {
                        for p in c.before.iter().chain(c.after.iter()) {
                            let watchers = registry
                                .by_net
                                .get(&p.net)
                                .into_iter()
                                .chain(registry.by_host.get(&p.host))
                                .flat_map(|w| w.values());
                            for w in watchers {
                                if w.unread.fetch_min(seq, Ordering::AcqRel) == u64::MAX {
                                    wake.push(w.clone());
                                }
                            }
                        }
                    }
                    None => common = true,
                }
                inner.revision = inner.revision.max(rev);
                inner.ring.push_back(Cached {
                    revision: rev,
                    line,
                    ep,
                });
            }
            drop(registry);
            while inner.ring.len() > self.capacity {
                let gone = inner.ring.pop_front().expect("the ring is over capacity");
                if gone.ep.is_none() {
                    inner.common_trimmed = Some(inner.first_seq);
                }
                inner.first_seq += 1;
                inner.floor = inner.floor.max(gone.revision + 1);
            }
            inner.next_seq()
        };
        self.head.send_replace(next_seq);
        if common {
            self.common.send_replace(next_seq);
        }
        for w in wake {
            w.notify.notify_one();
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        lock(&self.registry)
    }
}

/// One watch stream's state.
struct Watcher {
    cache: Arc<WatchCache>,
    initial: Arc<[Bytes]>,
    next_initial: usize,
    cursor: Cursor,
    head: tokio::sync::watch::Receiver<u64>,
    /// A per-node stream's interest.
    filter: Option<Filter>,
    done: bool,
    /// When this watcher last wrote live events.
    flushed: Option<tokio::time::Instant>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(f) = &self.filter {
            let mut r = self.cache.registry();
            leave(&mut r.by_host, &f.node, f.id);
            for n in f.nets.keys() {
                leave(&mut r.by_net, n, f.id);
            }
        }
    }
}

impl Watcher {
    async fn next(mut self) -> Option<(Bytes, Self)> {
        if let Some(chunk) = self.initial.get(self.next_initial) {
            self.next_initial += 1;
            return Some((chunk.clone(), self));
        }
        loop {
            if self.done || self.cache.is_closed() {
                return None;
            }
            if let Some(at) = self.flushed
                && at.elapsed() < FLUSH_EVERY
            {
                // Paced: what comes in meanwhile goes out in this one write.
                tokio::time::sleep_until(at + FLUSH_EVERY).await;
                if self.cache.is_closed() {
                    return None;
                }
            }
            // Marked seen before the ring is read: a publish after the read wakes us.
            match &mut self.filter {
                None => {
                    self.head.borrow_and_update();
                }
                Some(f) => {
                    f.common.borrow_and_update();
                }
            }
            match self.cache.read_from(&mut self.cursor, self.filter.as_mut()) {
                Read::Lines(b) if b.is_empty() => continue,
                Read::Lines(b) => {
                    self.flushed = Some(tokio::time::Instant::now());
                    return Some((b, self));
                }
                Read::Cut(why) => {
                    self.done = true;
                    return Some((error_line(why), self));
                }
                Read::Nothing => match &mut self.filter {
                    None => {
                        if self.head.changed().await.is_err() {
                            return None;
                        }
                    }
                    Some(f) => {
                        // A permit stored by a publish since the last wait is taken at once.
                        tokio::select! {
                            r = f.common.changed() => if r.is_err() { return None },
                            _ = f.waker.notify.notified() => {}
                        }
                    }
                },
            }
        }
    }
}

/// Appends `line` to `buf`, first moving `buf` to `chunks` when it would pass [`CHUNK`].
fn add_to_chunks(chunks: &mut Vec<Bytes>, buf: &mut BytesMut, line: &Bytes) {
    if buf.len() + line.len() > CHUNK && !buf.is_empty() {
        chunks.push(buf.split().freeze());
    }
    buf.extend_from_slice(line);
}

/// Appends the put lines of the current endpoints of network `net` to `buf`; with `cap`, each
/// line's revision is lowered to `cap` when above it (a backlog sent before the event at
/// `cap + 1` must not move the reader's resume point past that event).
/// `skip` leaves out the endpoints of that host (the joining node's own come as their events).
fn backlog(
    inner: &Inner,
    net: &str,
    cap: Option<Revision>,
    skip: Option<&str>,
    buf: &mut BytesMut,
) {
    let Some(keys) = inner.eps.by_net.get(net) else {
        return;
    };
    for k in keys {
        if skip.is_some_and(|h| inner.eps.place.get(k).is_some_and(|p| *p.host == *h)) {
            continue;
        }
        if let Some(l) = inner.objects.get(k) {
            match cap {
                Some(cap) => buf.extend_from_slice(&capped(l, cap)),
                None => buf.extend_from_slice(l),
            }
        }
    }
}

/// `line` with its `revision` (the first field of every line) at most `cap`.
fn capped(line: &Bytes, cap: Revision) -> Bytes {
    const HEAD: &[u8] = b"{\"revision\":";
    let Some(rest) = line.strip_prefix(HEAD) else {
        return line.clone();
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rev: Option<Revision> = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse().ok());
    if rev.is_none_or(|r| r <= cap) {
        return line.clone();
    }
    let mut out = BytesMut::with_capacity(line.len() + 4);
    out.extend_from_slice(HEAD);
    out.extend_from_slice(cap.to_string().as_bytes());
    out.extend_from_slice(&rest[digits..]);
    out.freeze()
}

/// The line an `error` event makes: the agent lists again when it reads one.
pub fn error_line(error: String) -> Bytes {
    line(&WatchEvent {
        revision: 0,
        event_type: WatchEventType::Error,
        kind: String::new(),
        key: String::new(),
        value: None,
        state: None,
        error: Some(error),
    })
}

/// The NDJSON line of a store event; None for keys watchers do not see (allocation guards, the
/// leader and masters' keys, credentials).
pub fn event_line(kind: EventKind, key: &str, value: &[u8], revision: Revision) -> Option<Bytes> {
    to_watch_event(kind, key, value, revision).map(|e| line(&e))
}

/// Converts a store event to a watch event; None for keys agents do not see.
fn to_watch_event(kind: EventKind, key: &str, value: &[u8], revision: u64) -> Option<WatchEvent> {
    let event_type = match kind {
        EventKind::Put => WatchEventType::Put,
        EventKind::Delete => WatchEventType::Delete,
    };
    let (k, name) = match keys::parse(key) {
        keys::Parsed::Obj(k, name) => (k.name().to_string(), name),
        keys::Parsed::Endpoint(id) => ("endpoint".to_string(), id),
        keys::Parsed::Node(n) => ("node".to_string(), n),
        keys::Parsed::Alloc | keys::Parsed::Unknown => return None,
    };
    let (mut v, mut st) = (None, None);
    if event_type == WatchEventType::Put {
        let parsed: serde_json::Value = serde_json::from_slice(value).ok()?;
        if matches!(keys::parse(key), keys::Parsed::Obj(..)) {
            let so: keys::StoredObject = serde_json::from_value(parsed).ok()?;
            v = Some(so.config);
            st = so.state;
        } else {
            v = Some(parsed);
        }
    }
    Some(WatchEvent {
        revision,
        event_type,
        kind: k,
        key: name.to_string(),
        value: v,
        state: st,
        error: None,
    })
}

fn line(ev: &WatchEvent) -> Bytes {
    let mut b = serde_json::to_vec(ev).expect("serializable");
    b.push(b'\n');
    Bytes::from(b)
}
