//! Watches: history from the on-disk log, then live events from the writer's fan-out.
//!
//! A watcher subscribes to the fan-out before it looks at the database, so every revision is
//! either in what it reads from the log or in what it receives live (often both: `next`, the
//! first revision not yet delivered, is what drops the duplicates). Whenever the live side
//! cannot be trusted to continue at `next` (the subscriber lagged, or a revision is missing)
//! the watcher goes back to the log, which fails with Compacted once it no longer reaches `next`.

use super::{During, LOG, OLDEST, Published, REVISION, Shared, blocking, closed, codec, read_meta};
use crate::{Event, Revision, StoreError, WatchStream};
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};

/// Revisions read from the log at a time, to bound a catching-up watcher's memory.
const LOG_CHUNK: u64 = 512;

pub(super) async fn start(
    shared: Arc<Shared>,
    prefix: String,
    from: Revision,
) -> Result<WatchStream, StoreError> {
    let live = shared.subscribe()?;
    let (current, oldest) = blocking(shared.clone(), |s| {
        s.read(|rtx| Ok((read_meta(rtx, REVISION)?, read_meta(rtx, OLDEST)?)))
    })
    .await?;
    let next = if from == 0 {
        current + 1
    } else if from < oldest {
        return Err(StoreError::Compacted {
            requested: from,
            oldest,
        });
    } else if from > current + 1 {
        return Err(StoreError::FutureRevision {
            requested: from,
            current,
        });
    } else {
        from
    };
    let watcher = Watcher {
        shared,
        prefix,
        next,
        live,
        behind: next <= current,
        pending: VecDeque::new(),
        finished: false,
    };
    Ok(futures::stream::unfold(watcher, |mut w| async move {
        let item = w.step().await?;
        Some((item, w))
    })
    .boxed())
}

struct Watcher {
    shared: Arc<Shared>,
    prefix: String,
    /// The first revision not yet delivered.
    next: Revision,
    live: broadcast::Receiver<Published>,
    /// The log must be read up to its end before live events can be trusted to continue at `next`.
    behind: bool,
    pending: VecDeque<Event>,
    finished: bool,
}

impl Watcher {
    async fn step(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            let progress = if self.behind {
                self.catch_up().await
            } else {
                self.receive().await
            };
            if let Err(e) = progress {
                self.finished = true;
                return Some(Err(e));
            }
        }
    }

    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let (prefix, next) = (self.prefix.clone(), self.next);
        let chunk = blocking(self.shared.clone(), move |s| read_log(s, &prefix, next)).await?;
        self.pending.extend(chunk.events);
        self.next = chunk.next;
        self.behind = !chunk.complete;
        Ok(())
    }

    async fn receive(&mut self) -> Result<(), StoreError> {
        let batch = match self.live.recv().await {
            Ok(batch) => batch,
            Err(RecvError::Lagged(_)) => {
                self.behind = true;
                return Ok(());
            }
            Err(RecvError::Closed) => return Err(closed()),
        };
        for change in batch.iter() {
            if change.revision < self.next {
                continue;
            }
            if change.revision > self.next {
                self.behind = true;
                return Ok(());
            }
            let prefix = self.prefix.as_str();
            self.pending.extend(
                (change.events.iter())
                    .filter(|e| e.kv.key.starts_with(prefix))
                    .cloned(),
            );
            self.next += 1;
        }
        Ok(())
    }
}

struct Chunk {
    events: Vec<Event>,
    next: Revision,
    /// The log has nothing after `next` (as of the snapshot read).
    complete: bool,
}

fn read_log(shared: &Shared, prefix: &str, next: Revision) -> Result<Chunk, StoreError> {
    shared.read(|rtx| {
        let oldest = read_meta(rtx, OLDEST)?;
        if next < oldest {
            return Err(StoreError::Compacted {
                requested: next,
                oldest,
            });
        }
        let log = rtx.open_table(LOG).during("open log")?;
        let mut chunk = Chunk {
            events: Vec::new(),
            next,
            complete: true,
        };
        for entry in log.range(next..).during("read log")? {
            if chunk.next - next == LOG_CHUNK {
                chunk.complete = false;
                break;
            }
            let (rev, entry) = entry.during("read log")?;
            if rev.value() != chunk.next {
                return Err(StoreError::Backend {
                    action: "read log",
                    reason: format!("revision {} is missing", chunk.next),
                });
            }
            let events = codec::decode_events(entry.value())?;
            chunk
                .events
                .extend(events.into_iter().filter(|e| e.kv.key.starts_with(prefix)));
            chunk.next += 1;
        }
        Ok(chunk)
    })
}
