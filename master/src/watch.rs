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

use crate::keys;
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use model::agent::{WatchEvent, WatchEventType};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use store::{EventKind, Revision, Store, StoreError};

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
}

struct Inner {
    /// The current objects, by store key: the line of their last put.
    objects: BTreeMap<String, Bytes>,
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
}

pub struct WatchCache {
    store: Arc<dyn Store>,
    inner: RwLock<Inner>,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    /// The next sequence number, sent at each publish; also sent (unchanged) by `close`.
    head: tokio::sync::watch::Sender<u64>,
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
                revision,
                listed: revision,
                ring: VecDeque::new(),
                first_seq: 0,
                floor: from,
                epoch: 0,
            }),
            snapshot: Mutex::new(None),
            head: tokio::sync::watch::channel(0).0,
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
        if self.is_closed() {
            return Err(StoreError::Unavailable(
                "netmaster is stopping: watch another netmaster".into(),
            ));
        }
        // Subscribed before the ring is read, so that no publish after it goes unnoticed.
        let head = self.head.subscribe();
        let (initial, cursor) = match from {
            None => {
                let snap = self.snapshot();
                let cursor = Cursor {
                    seq: snap.seq,
                    min_revision: snap.revision + 1,
                    epoch: snap.epoch,
                };
                (snap.chunks.clone(), cursor)
            }
            Some(from) => {
                let from = from.max(1);
                let (cursor, latest) = {
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
                    (cursor, inner.revision)
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
                (Arc::from(Vec::new()), cursor)
            }
        };
        let state = Watcher {
            cache: self.clone(),
            initial,
            next_initial: 0,
            cursor,
            head,
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
    /// a new one (one build serves every watcher that lists meanwhile).
    fn snapshot(&self) -> Arc<Snapshot> {
        let mut cached = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let inner = self.read();
        if let Some(s) = cached.as_ref()
            && s.revision == inner.revision
            && s.epoch == inner.epoch
        {
            return s.clone();
        }
        let mut chunks = Vec::new();
        let mut buf = BytesMut::with_capacity(CHUNK);
        for line in inner.objects.values() {
            if buf.len() + line.len() > CHUNK && !buf.is_empty() {
                chunks.push(buf.split().freeze());
            }
            buf.extend_from_slice(line);
        }
        buf.extend_from_slice(&line(&WatchEvent {
            revision: inner.revision,
            event_type: WatchEventType::Synced,
            kind: String::new(),
            key: String::new(),
            value: None,
            state: None,
            error: None,
        }));
        chunks.push(buf.freeze());
        let snap = Arc::new(Snapshot {
            revision: inner.revision,
            epoch: inner.epoch,
            seq: inner.next_seq(),
            chunks: chunks.into(),
        });
        *cached = Some(snap.clone());
        snap
    }

    /// The ring's lines from the cursor on, up to about [`CHUNK`] bytes.
    fn read_from(&self, cursor: &mut Cursor) -> Read {
        let inner = self.read();
        if cursor.epoch != inner.epoch {
            return Read::Cut(
                "netmaster lost the store's history and listed it again: re-list".into(),
            );
        }
        if cursor.seq < inner.first_seq {
            return Read::Cut(format!(
                "this watch fell more than {} events behind (revision {} is no longer kept): re-list",
                self.capacity, inner.floor
            ));
        }
        let start = (cursor.seq - inner.first_seq) as usize;
        let mut lines: Vec<&Bytes> = Vec::new();
        let mut size = 0;
        let mut end = start;
        for e in inner.ring.range(start..) {
            if size >= CHUNK {
                break;
            }
            end += 1;
            if e.revision >= cursor.min_revision {
                size += e.line.len();
                lines.push(&e.line);
            }
        }
        cursor.seq = inner.first_seq + end as u64;
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
                revision,
                listed: revision,
                ring: VecDeque::new(),
                first_seq: next_seq,
                floor: revision + 1,
                epoch: inner.epoch + 1,
            };
            next_seq
        };
        self.head.send_replace(next_seq);
        Ok((stream, revision + 1))
    }

    /// Applies a batch of store events (converted outside the lock) and wakes the watchers.
    fn publish(&self, batch: Vec<store::Event>) {
        let converted: Vec<(store::Event, Option<Bytes>)> = batch
            .into_iter()
            .map(|ev| {
                let line = event_line(
                    ev.kind.clone(),
                    &ev.kv.key,
                    &ev.kv.value,
                    ev.kv.mod_revision,
                );
                (ev, line)
            })
            .collect();
        let next_seq = {
            let mut inner = self.write();
            for (ev, line) in converted {
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
                            inner.objects.insert(ev.kv.key, line.clone());
                        }
                        EventKind::Delete => {
                            inner.objects.remove(&ev.kv.key);
                        }
                    }
                }
                inner.revision = inner.revision.max(rev);
                inner.ring.push_back(Cached {
                    revision: rev,
                    line,
                });
            }
            while inner.ring.len() > self.capacity {
                let gone = inner.ring.pop_front().expect("the ring is over capacity");
                inner.first_seq += 1;
                inner.floor = inner.floor.max(gone.revision + 1);
            }
            inner.next_seq()
        };
        self.head.send_replace(next_seq);
    }
}

/// One watch stream's state.
struct Watcher {
    cache: Arc<WatchCache>,
    initial: Arc<[Bytes]>,
    next_initial: usize,
    cursor: Cursor,
    head: tokio::sync::watch::Receiver<u64>,
    done: bool,
    /// When this watcher last wrote live events.
    flushed: Option<tokio::time::Instant>,
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
            self.head.borrow_and_update();
            match self.cache.read_from(&mut self.cursor) {
                Read::Lines(b) if b.is_empty() => continue,
                Read::Lines(b) => {
                    self.flushed = Some(tokio::time::Instant::now());
                    return Some((b, self));
                }
                Read::Cut(why) => {
                    self.done = true;
                    return Some((error_line(why), self));
                }
                Read::Nothing => {
                    if self.head.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    }
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
