//! Leader election among several netmasters sharing one store (etcd).
//!
//! One key, [`keys::LEADER`], holds the leader's [`LeaderRecord`], attached to a lease of the
//! leader's own (TTL `--leader-ttl`). A master becomes leader by creating that key when it is
//! absent, keeps it by renewing the lease, and loses it when the lease expires (it died, or lost
//! etcd for longer than the TTL). The others watch the key and campaign as soon as it is deleted.
//!
//! Every write of the leader carries a compare on the key holding exactly its own record (the
//! fence): a master that lost the lease without noticing yet (paused, partitioned) cannot write
//! anything, so the leader is the single writer and its in-memory state stays exact. Followers
//! keep their state by applying the store's events, serve reads, and hand writes to the leader
//! (see `api::route_writes`).

use crate::keys;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;
use store::Compare;

/// What the leader key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The URL the leader serves the API on, where followers forward writes.
    pub url: String,
    /// Unique per campaign (URL, process, start time), so that a restarted master on the same
    /// URL does not mistake its predecessor's record for its own.
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
        }
    }
}

/// How a master takes part in the election.
#[derive(Debug, Clone)]
pub struct ElectionOptions {
    /// The leader lease's TTL: a dead leader is replaced within about this time.
    pub ttl: Duration,
    /// This master's URL as the others reach it.
    pub advertise_url: String,
}

#[derive(Debug)]
struct View {
    role: Role,
    leader: Option<LeaderRecord>,
    /// Counts role changes: a follower's view of the store is valid within one epoch.
    epoch: u64,
}

/// This master's view of the election. Without election (one master on the embedded store) it
/// is always the leader.
#[derive(Debug)]
pub struct Leadership {
    pub options: Option<ElectionOptions>,
    pub me: LeaderRecord,
    view: Mutex<View>,
    /// Bumped on every change of role or leader, for tasks that must react (follow the store,
    /// requests waiting for a leader).
    changed: tokio::sync::watch::Sender<u64>,
    /// Times the leader changed, as this master saw it (a metric).
    leader_changes: std::sync::atomic::AtomicU64,
}

impl Leadership {
    pub fn new(options: Option<ElectionOptions>, listen: &str) -> Self {
        let url = options
            .as_ref()
            .map(|o| o.advertise_url.clone())
            .unwrap_or_else(|| format!("http://{listen}"));
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let me = LeaderRecord {
            id: format!("{url}/{}/{started}", std::process::id()),
            url,
        };
        let elected = options.is_none();
        Leadership {
            view: Mutex::new(View {
                role: if elected {
                    Role::Leader
                } else {
                    Role::Follower
                },
                leader: elected.then(|| me.clone()),
                epoch: 0,
            }),
            options,
            me,
            changed: tokio::sync::watch::channel(0).0,
            leader_changes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Times the leader changed, as this master saw it.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn role(&self) -> Role {
        self.view().role
    }

    pub fn is_leader(&self) -> bool {
        self.role() == Role::Leader
    }

    /// How many times the role changed.
    pub fn epoch(&self) -> u64 {
        self.view().epoch
    }

    pub fn leader(&self) -> Option<LeaderRecord> {
        self.view().leader.clone()
    }

    /// The compare every write of the leader carries; None without election.
    pub fn fence(&self) -> Option<Compare> {
        self.options.as_ref().map(|_| {
            Compare::Value(
                keys::LEADER.to_string(),
                serde_json::to_vec(&self.me).expect("serializable"),
            )
        })
    }

    pub(crate) fn set(&self, role: Role, leader: Option<LeaderRecord>) {
        let mut v = self.view();
        let changed = v.role != role || v.leader != leader;
        if v.role != role {
            v.epoch += 1;
        }
        if v.leader != leader {
            self.leader_changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        v.role = role;
        v.leader = leader;
        drop(v);
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
