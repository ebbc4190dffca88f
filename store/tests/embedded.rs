//! The embedded store: the conformance suite, plus what only a local file can show (restarts,
//! locking, group commit throughput, lagging watchers).

use async_trait::async_trait;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::conformance::{self, Fixture};
use store::{
    EmbeddedOptions, EmbeddedStore, EventKind, Op, Revision, Store, StoreError, Txn, WatchStream,
};
use tempfile::TempDir;
use tokio::time::timeout;

const HISTORY: usize = 2_000;
const WAIT: Duration = Duration::from_secs(10);

/// Each store in its own temporary directory, kept until the fixture is dropped.
#[derive(Default)]
struct Embedded {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait]
impl Fixture for Embedded {
    async fn store(&self) -> Arc<dyn Store> {
        let dir = TempDir::new().unwrap();
        let mut opts = EmbeddedOptions::new(dir.path().join("store.redb"));
        opts.history = HISTORY;
        self.dirs.lock().unwrap().push(dir);
        Arc::new(EmbeddedStore::open(opts).unwrap())
    }

    async fn compact(&self, store: &Arc<dyn Store>, revision: Revision) {
        // One revision with more events than the history holds pushes everything before out.
        let filler = (0..=HISTORY).fold(Txn::new(), |t, i| {
            t.then(Op::put(format!("/filler/{i}"), Vec::new()))
        });
        let r = store.txn(filler).await.unwrap();
        assert!(r.revision >= revision);
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                conformance::$case(Arc::new(Embedded::default())).await;
            }
        )*

        #[test]
        fn every_conformance_case_runs() {
            let here = [$(stringify!($case)),*];
            for (name, _) in conformance::CASES {
                assert!(here.contains(name), "conformance case {name} is not run here");
            }
        }
    };
}

conformance!(
    get_put_delete,
    list_prefix,
    revisions,
    txn_compares,
    txn_atomic,
    watch_from_now,
    watch_from_past,
    watch_prefix,
    watch_concurrent_writers,
    watch_compacted,
    watch_future_revision,
    lease_expiry,
    lease_revoke,
    lease_not_found,
    lease_reattach,
    cas_counter,
);

fn open(dir: &TempDir) -> EmbeddedStore {
    EmbeddedStore::open(EmbeddedOptions::new(dir.path().join("store.redb"))).unwrap()
}

async fn next(w: &mut WatchStream) -> Result<store::Event, StoreError> {
    timeout(WAIT, w.next())
        .await
        .expect("no event in time")
        .expect("watch ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_revision_and_leases_survive_a_restart() {
    let dir = TempDir::new().unwrap();
    let (lease, rev) = {
        let s = open(&dir);
        s.put("/a", b"1".to_vec()).await.unwrap();
        let lease = s.grant_lease(Duration::from_secs(60)).await.unwrap();
        let r = s
            .txn(Txn::new().then(Op::Put {
                key: "/leased".into(),
                value: b"x".to_vec(),
                lease: Some(lease),
            }))
            .await
            .unwrap();
        s.close().unwrap();
        assert!(matches!(
            s.put("/b", Vec::new()).await,
            Err(StoreError::Unavailable(_))
        ));
        (lease, r.revision)
    };

    let s = open(&dir);
    assert_eq!(s.revision().await.unwrap(), rev);
    assert_eq!(s.get("/a").await.unwrap().unwrap().value, b"1");
    let leased = s.get("/leased").await.unwrap().unwrap();
    assert_eq!((leased.lease, leased.mod_revision), (Some(lease), rev));
    s.keep_alive(lease).await.unwrap();
    let next_lease = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    assert!(next_lease > lease, "lease ids are not reused");
    s.revoke_lease(lease).await.unwrap();
    assert_eq!(s.get("/leased").await.unwrap(), None);
    drop(s);

    // Dropping, not only closing, releases the file.
    let s = open(&dir);
    assert_eq!(s.revision().await.unwrap(), rev + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_expires_after_a_restart() {
    let dir = TempDir::new().unwrap();
    {
        let s = open(&dir);
        let lease = s.grant_lease(Duration::from_secs(1)).await.unwrap();
        s.txn(Txn::new().then(Op::Put {
            key: "/leased".into(),
            value: Vec::new(),
            lease: Some(lease),
        }))
        .await
        .unwrap();
    }
    let s = open(&dir);
    let mut w = s.watch("/", s.revision().await.unwrap() + 1).await.unwrap();
    let e = next(&mut w).await.unwrap();
    assert_eq!((e.kind, e.kv.key.as_str()), (EventKind::Delete, "/leased"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_a_restart() {
    let dir = TempDir::new().unwrap();
    let mut revs = Vec::new();
    {
        let s = open(&dir);
        for i in 0..5u8 {
            revs.push(s.put(&format!("/w/{i}"), vec![i]).await.unwrap());
        }
    }
    let s = open(&dir);
    let mut w = s.watch("/w/", revs[2]).await.unwrap();
    for &rev in &revs[2..] {
        assert_eq!(next(&mut w).await.unwrap().kv.mod_revision, rev);
    }
    let live = s.put("/w/5", Vec::new()).await.unwrap();
    assert_eq!(next(&mut w).await.unwrap().kv.mod_revision, live);
}

#[tokio::test]
async fn opening_an_open_file_says_why_it_fails() {
    let dir = TempDir::new().unwrap();
    let _first = open(&dir);
    let err = EmbeddedStore::open(EmbeddedOptions::new(dir.path().join("store.redb")))
        .err()
        .expect("a second open fails");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{msg}");
    assert!(msg.contains("store.redb"), "{msg}");
    assert!(
        msg.contains("is another netmaster using this data dir?"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_ends_watches() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir);
    let mut w = s.watch("/", 0).await.unwrap();
    let r = s.put("/a", Vec::new()).await.unwrap();
    s.close().unwrap();
    assert_eq!(
        next(&mut w).await.unwrap().kv.mod_revision,
        r,
        "committed before the close"
    );
    assert!(matches!(
        next(&mut w).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(timeout(WAIT, w.next()).await.unwrap().is_none());
    assert!(matches!(
        s.watch("/", 0).await,
        Err(StoreError::Unavailable(_))
    ));
    s.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keeps_the_newest_events() {
    let dir = TempDir::new().unwrap();
    let mut opts = EmbeddedOptions::new(dir.path().join("store.redb"));
    opts.history = 10;
    let s = EmbeddedStore::open(opts).unwrap();
    for i in 0..20u8 {
        s.put("/k", vec![i]).await.unwrap();
    }
    assert!(matches!(
        s.watch("/", 10).await,
        Err(StoreError::Compacted {
            requested: 10,
            oldest: 11
        })
    ));
    let mut w = s.watch("/", 11).await.unwrap();
    for rev in 11..=20 {
        assert_eq!(next(&mut w).await.unwrap().kv.mod_revision, rev);
    }
}

/// A watcher that falls behind the live buffer catches up from the log, or, when the log has
/// moved on too, ends with Compacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_watcher_catches_up_from_the_log() {
    for (history, compacted) in [(10_000, false), (20, true)] {
        let dir = TempDir::new().unwrap();
        let mut opts = EmbeddedOptions::new(dir.path().join("store.redb"));
        opts.history = history;
        opts.watch_buffer = 4;
        let s = EmbeddedStore::open(opts).unwrap();
        let mut w = s.watch("/", 0).await.unwrap();
        for i in 0..100u8 {
            s.put("/k", vec![i]).await.unwrap();
        }
        if compacted {
            assert!(matches!(
                next(&mut w).await,
                Err(StoreError::Compacted { requested: 1, .. })
            ));
            assert!(timeout(WAIT, w.next()).await.unwrap().is_none());
        } else {
            for rev in 1..=100 {
                assert_eq!(next(&mut w).await.unwrap().kv.mod_revision, rev);
            }
        }
    }
}

/// Kills (SIGKILL) a child process that writes in a loop, then checks that every write it had
/// been answered Ok for is in the file. This shows that an answer comes after the commit, not
/// that the commit reached the disk (that is redb's fsync; a kill leaves the page cache intact).
#[test]
fn acknowledged_writes_survive_a_kill() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    const CHILD: &str = "STORE_TEST_KILLED_WRITER";
    if let Ok(path) = std::env::var(CHILD) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let s = EmbeddedStore::open(EmbeddedOptions::new(path)).unwrap();
            for i in 0u64.. {
                let rev = s.put(&format!("/k/{i:08}"), vec![0; 64]).await.unwrap();
                println!("ack {i} {rev}");
            }
        });
        return;
    }

    let dir = TempDir::new().unwrap();
    let path = dir.path().join("store.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "acknowledged_writes_survive_a_kill",
            "--nocapture",
        ])
        .env(CHILD, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Should this test fail before the kill, the child dies on its next print: the pipe closes.
    let mut last = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let Some(ack) = line.strip_prefix("ack ") else {
            continue;
        };
        let (i, rev) = ack.split_once(' ').unwrap();
        last = Some((i.parse::<u64>().unwrap(), rev.parse::<u64>().unwrap()));
        if last.unwrap().0 == 200 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (i, rev) = last.expect("the child wrote nothing");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = EmbeddedStore::open(EmbeddedOptions::new(&path)).unwrap();
        assert!(s.revision().await.unwrap() >= rev);
        let (kvs, _) = s.list("/k/").await.unwrap();
        assert!(
            kvs.len() as u64 > i,
            "{} keys, {} acknowledged",
            kvs.len(),
            i + 1
        );
        for (n, kv) in kvs.iter().enumerate() {
            assert_eq!(kv.key, format!("/k/{n:08}"));
        }
    });
}

/// Prints the group commit throughput; asserts nothing about time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput() {
    for (writers, each) in [(1usize, 300usize), (16, 200)] {
        let dir = TempDir::new().unwrap();
        let s = Arc::new(open(&dir));
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let s = s.clone();
                tokio::spawn(async move {
                    for i in 0..each {
                        s.put(&format!("/bench/{w}/{i}"), vec![0; 64])
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed();
        let total = writers * each;
        assert_eq!(s.revision().await.unwrap(), total as u64);
        println!(
            "throughput: {writers:>2} concurrent writers: {total} txns in {elapsed:.2?} = {:.0} txns/s",
            total as f64 / elapsed.as_secs_f64()
        );
    }
}
