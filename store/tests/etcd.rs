//! The etcd store against real etcd processes (`/usr/bin/etcd`, Debian's etcd-server): the
//! conformance suite with one etcd per case, then what only etcd shows: failover in a 3-member
//! cluster, quorum loss and recovery, TLS, key prefixes, and connection errors.

#![cfg(feature = "etcd")]

use async_trait::async_trait;
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::conformance::{self, Fixture};
use store::{
    Compare, EtcdOptions, EtcdStore, Event, EventKind, Op, Revision, Store, StoreError, TlsOptions,
    Txn, WatchStream,
};
use tokio::time::{Instant, sleep, timeout};

use store::testing::{Cluster, READY, RefusedPorts, ServerTls};
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The conformance suite

/// Each case on its own single-member etcd, so that it has the revisions to itself.
#[derive(Default)]
struct Etcd {
    running: Mutex<Vec<(Cluster, Arc<EtcdStore>)>>,
}

#[async_trait]
impl Fixture for Etcd {
    async fn store(&self) -> Arc<dyn Store> {
        let cluster = Cluster::start(1).await;
        let store = Arc::new(cluster.connect().await);
        self.running.lock().unwrap().push((cluster, store.clone()));
        store
    }

    async fn compact(&self, store: &Arc<dyn Store>, revision: Revision) {
        let etcd = self
            .running
            .lock()
            .unwrap()
            .iter()
            .find(|(_, s)| std::ptr::addr_eq(Arc::as_ptr(s), Arc::as_ptr(store)))
            .map(|(_, s)| s.clone())
            .expect("a store of this fixture");
        etcd.compact(revision).await.unwrap();
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                conformance::$case(Arc::new(Etcd::default())).await;
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

// ---------------------------------------------------------------------------------------------
// etcd only

async fn next(w: &mut WatchStream) -> Event {
    match timeout(WAIT, w.next()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no event within {WAIT:?}"),
    }
}

/// Creates `key` exactly once, retrying through outages: a retry after an attempt whose outcome
/// was unknown finds the key there if that attempt was applied after all. Returns the revision
/// and how many attempts failed.
async fn create_once(s: &EtcdStore, key: &str, value: &str) -> (Revision, usize) {
    let deadline = Instant::now() + READY;
    let mut failed = 0;
    loop {
        let txn = Txn::new()
            .when(Compare::absent(key))
            .then(Op::put(key, value));
        match s.txn(txn).await {
            Ok(r) if r.succeeded => return (r.revision, failed),
            Ok(_) => {
                let kv = s
                    .get(key)
                    .await
                    .unwrap()
                    .expect("a failed create-if-absent");
                assert_eq!(kv.value, value.as_bytes());
                return (kv.mod_revision, failed);
            }
            Err(StoreError::Unavailable(e)) => {
                failed += 1;
                assert!(Instant::now() < deadline, "{key} not written: {e}");
            }
            Err(e) => panic!("create {key}: {e}"),
        }
    }
}

/// Kills every member in turn, the leader first, while writing and watching: every write goes
/// through (retried when its first attempt met the kill), and the watch, which streams from
/// one member that is killed at some point, sees every write once, in order, without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_watches_survive_killing_members() {
    let mut cluster = Cluster::start(3).await;
    let s = cluster.connect().await;
    let start = s.revision().await.unwrap() + 1;
    let mut watch = s.watch("/failover/", 0).await.unwrap();

    let leader = cluster.leader().await;
    let victims = [leader, (leader + 1) % 3, (leader + 2) % 3];
    let mut written = Vec::new();
    let mut retried = 0;
    for (round, &victim) in victims.iter().enumerate() {
        for phase in ["before", "after"] {
            if phase == "after" {
                cluster.kill(victim);
            }
            for i in 0..10 {
                let key = format!("/failover/{round}/{phase}/{i:02}");
                let (rev, failed) = create_once(&s, &key, "x").await;
                retried += failed;
                written.push((rev, key));
            }
        }
        cluster.restart(victim).await;
    }
    println!(
        "{} writes, {retried} failed attempts retried",
        written.len()
    );

    written.sort();
    let revs: Vec<Revision> = written.iter().map(|(r, _)| *r).collect();
    let expected: Vec<Revision> = (start..start + written.len() as u64).collect();
    assert_eq!(revs, expected, "one revision per write");
    for (rev, key) in &written {
        let e = next(&mut watch).await;
        assert_eq!((e.kv.mod_revision, &e.kv.key), (*rev, key));
        assert_eq!(e.kind, EventKind::Put);
    }
    let last = s.put("/failover/last", Vec::new()).await.unwrap();
    assert_eq!(next(&mut watch).await.kv.mod_revision, last, "no duplicate");
}

/// With two members of three down, calls fail with Unavailable within the request timeout;
/// when they return, calls succeed again and an open watch goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_quorum_is_unavailable_until_it_returns() {
    let mut cluster = Cluster::start(3).await;
    let mut opts = cluster.options();
    opts.request_timeout = Duration::from_secs(1);
    let s = EtcdStore::connect(opts).await.unwrap();
    let mut watch = s.watch("/quorum/", 0).await.unwrap();
    let before = s.put("/quorum/before", Vec::new()).await.unwrap();
    assert_eq!(next(&mut watch).await.kv.mod_revision, before);

    let leader = cluster.leader().await;
    cluster.kill(leader);
    cluster.kill((leader + 1) % 3);
    let bound = Duration::from_secs(1) + Duration::from_millis(700);
    for call in ["put", "get", "list", "revision", "grant"] {
        let started = Instant::now();
        let result = match call {
            "put" => s.put("/quorum/during", Vec::new()).await.map(drop),
            "get" => s.get("/quorum/before").await.map(drop),
            "list" => s.list("/quorum/").await.map(drop),
            "revision" => s.revision().await.map(drop),
            _ => s.grant_lease(Duration::from_secs(5)).await.map(drop),
        };
        let elapsed = started.elapsed();
        match result {
            Err(StoreError::Unavailable(msg)) => {
                assert!(msg.contains(&cluster.members[0].client_url), "{msg}");
                println!("{call} without quorum, after {elapsed:.2?}: {msg}");
            }
            other => panic!("{call} without quorum: expected Unavailable, got {other:?}"),
        }
        assert!(elapsed < bound, "{call} took {elapsed:?}");
    }

    cluster.restart(leader).await;
    cluster.restart((leader + 1) % 3).await;
    let deadline = Instant::now() + READY;
    let after = loop {
        match s.put("/quorum/after", Vec::new()).await {
            Ok(rev) => break rev,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("no recovery: {e}"),
        }
    };
    assert!(s.get("/quorum/before").await.unwrap().is_some());
    // The put tried during the outage may have been applied once the quorum came back.
    loop {
        let e = next(&mut watch).await;
        if e.kv.key == "/quorum/after" {
            assert_eq!(e.kv.mod_revision, after);
            break;
        }
        assert_eq!(e.kv.key, "/quorum/during");
    }
}

/// Keys live under the store's prefix: stores with other prefixes do not see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_stores_apart() {
    let cluster = Cluster::start(1).await;
    let with_prefix = |prefix: &str| {
        let mut opts = cluster.options();
        opts.prefix = prefix.into();
        EtcdStore::connect(opts)
    };
    let a = with_prefix("/a").await.unwrap();
    let b = with_prefix("/b").await.unwrap();
    let root = with_prefix("").await.unwrap();
    let mut watch_b = b.watch("", 0).await.unwrap();

    a.put("/k", b"a".to_vec()).await.unwrap();
    let rb = b.put("/k", b"b".to_vec()).await.unwrap();
    assert_eq!(a.get("/k").await.unwrap().unwrap().value, b"a");
    assert_eq!(b.get("/k").await.unwrap().unwrap().value, b"b");
    let (listed, _) = a.list("").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].key.as_str(), &listed[0].value[..]),
        ("/k", &b"a"[..])
    );
    let (all, _) = root.list("").await.unwrap();
    let keys: Vec<&str> = all.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/k", "/b/k"]);

    let e = next(&mut watch_b).await;
    assert_eq!((e.kv.key.as_str(), e.kv.mod_revision), ("/k", rb));
}

/// What etcd does not do by itself: name the missing one of a transaction's leases, and accept
/// two ops on one key (the last one wins, as if they were applied in order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txns_with_several_leases_or_ops_on_one_key() {
    let cluster = Cluster::start(1).await;
    let s = cluster.connect().await;
    let live = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    let gone = s.grant_lease(Duration::from_secs(60)).await.unwrap();
    s.revoke_lease(gone).await.unwrap();
    let put = |key: &str, lease| Op::Put {
        key: key.into(),
        value: b"x".to_vec(),
        lease: Some(lease),
    };
    let err = s
        .txn(Txn::new().then(put("/l/a", live)).then(put("/l/b", gone)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseNotFound(l) if l == gone),
        "{err}"
    );

    let before = s.revision().await.unwrap();
    let r = s
        .txn(
            Txn::new()
                .then(Op::put("/dup/a", "1"))
                .then(Op::put("/dup/b", "1"))
                .then(Op::put("/dup/a", "2"))
                .then(Op::delete("/dup/b")),
        )
        .await
        .unwrap();
    assert_eq!(r.revision, before + 1);
    assert_eq!(s.get("/dup/a").await.unwrap().unwrap().value, b"2");
    assert_eq!(s.get("/dup/b").await.unwrap(), None);
}

/// Connecting to endpoints that do not answer names each one and why, without waiting out the
/// dial timeout when the connection is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_are_named_with_the_reason() {
    let held = RefusedPorts::new(2);
    let refused: Vec<String> = held
        .ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut opts = EtcdOptions::new(refused.clone());
    opts.dial_timeout = Duration::from_secs(5);
    let started = Instant::now();
    let err = EtcdStore::connect(opts)
        .await
        .err()
        .expect("nothing listens");
    let msg = err.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable(_)), "{msg}");
    for url in &refused {
        assert!(msg.contains(&format!("{url}: connection refused")), "{msg}");
    }
    println!("{msg}");

    // Listening, but never answering: the dial timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let mut opts = EtcdOptions::new([url.clone()]);
    opts.dial_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let msg = EtcdStore::connect(opts).await.err().unwrap().to_string();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        msg.contains(&format!("{url}: no answer within 300ms")),
        "{msg}"
    );
    println!("{msg}");

    // One endpoint that answers is enough; calls fail over from the dead one.
    let cluster = Cluster::start(1).await;
    let mut opts = cluster.options();
    opts.endpoints.insert(0, refused[0].clone());
    let s = EtcdStore::connect(opts).await.unwrap();
    for i in 0..20 {
        s.put(&format!("/k{i}"), Vec::new()).await.unwrap();
    }
}

/// Certificates made for the test: a CA, the server's (for 127.0.0.1), a client's, and a
/// second CA that signed none of them.
struct Certs {
    _dir: tempfile::TempDir,
    server: ServerTls,
    client: TlsOptions,
    other_ca: PathBuf,
}

fn make_certs() -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let dir = tempfile::TempDir::new().unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    };
    let (ca_pem, issuer) = ca("test ca");
    let (other_pem, _) = ca("another ca");
    let leaf = |sans: Vec<String>, usage: Vec<ExtendedKeyUsagePurpose>, cn: &str| {
        let mut params = CertificateParams::new(sans).unwrap();
        params.extended_key_usages = usage;
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        "etcd",
    );
    let (client_cert, client_key) = leaf(
        Vec::new(),
        vec![ExtendedKeyUsagePurpose::ClientAuth],
        "netmaster",
    );
    let ca_path = write("ca.pem", ca_pem);
    Certs {
        server: ServerTls {
            cert: write("server.pem", server_cert),
            key: write("server-key.pem", server_key),
            ca: ca_path.clone(),
        },
        client: TlsOptions {
            ca: ca_path,
            cert: Some(write("client.pem", client_cert)),
            key: Some(write("client-key.pem", client_key)),
        },
        other_ca: write("other-ca.pem", other_pem),
        _dir: dir,
    }
}

/// A TLS etcd that requires client certificates: the store works with the CA and a client
/// certificate; without the certificate, or trusting another CA, connecting says TLS failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let certs = make_certs();
    let cluster = Cluster::start_with(1, Some(&certs.server), Some(certs.client.clone())).await;
    let s = cluster.connect().await;
    let mut watch = s.watch("/tls/", 0).await.unwrap();
    let rev = s.put("/tls/a", b"x".to_vec()).await.unwrap();
    assert_eq!(s.get("/tls/a").await.unwrap().unwrap().mod_revision, rev);
    assert_eq!(next(&mut watch).await.kv.mod_revision, rev);

    // Bare host:port endpoints take https when TLS is configured.
    let mut opts = cluster.options();
    opts.endpoints = vec![opts.endpoints[0].trim_start_matches("https://").into()];
    EtcdStore::connect(opts).await.unwrap();

    let url = &cluster.members[0].client_url;
    for (what, tls) in [
        (
            "another CA",
            TlsOptions {
                ca: certs.other_ca.clone(),
                ..certs.client.clone()
            },
        ),
        (
            "no client certificate",
            TlsOptions {
                cert: None,
                key: None,
                ..certs.client.clone()
            },
        ),
    ] {
        let mut opts = cluster.options();
        opts.tls = Some(tls);
        let err = EtcdStore::connect(opts).await.err().expect(what);
        let msg = err.to_string();
        println!("{what}: {msg}");
        assert!(matches!(err, StoreError::Unavailable(_)), "{what}: {msg}");
        assert!(msg.contains(url.as_str()), "{what}: {msg}");
        if what == "another CA" {
            assert!(msg.contains("TLS handshake failed"), "{what}: {msg}");
            assert!(msg.contains("UnknownIssuer"), "{what}: {msg}");
        } else {
            // Refused during the handshake, or by closing the connection right after it.
            assert!(msg.contains("client certificate"), "{what}: {msg}");
        }
    }
}

/// Bad TLS options are named before anything is dialled: the file, and what is wrong with it.
#[tokio::test]
async fn bad_tls_files_are_named() {
    let certs = make_certs();
    let dir = tempfile::TempDir::new().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let client = &certs.client;
    let cases = [
        (
            "missing CA",
            TlsOptions {
                ca: missing.clone(),
                ..client.clone()
            },
            missing.clone(),
            "read the TLS CA file: No such file",
        ),
        (
            "CA file without a certificate",
            TlsOptions {
                ca: garbage.clone(),
                ..client.clone()
            },
            garbage.clone(),
            "holds no PEM certificate",
        ),
        (
            "certificate without its key",
            TlsOptions {
                key: None,
                ..client.clone()
            },
            client.cert.clone().unwrap(),
            "needs its key file too",
        ),
        (
            "key file without a key",
            TlsOptions {
                key: Some(client.cert.clone().unwrap()),
                ..client.clone()
            },
            client.cert.clone().unwrap(),
            "holds no PEM private key",
        ),
        (
            "a key that is not the certificate's",
            TlsOptions {
                key: Some(certs.server.key.clone()),
                ..client.clone()
            },
            certs.server.key.clone(),
            "does not fit the certificate",
        ),
    ];
    for (what, tls, path, reason) in cases {
        let mut opts = EtcdOptions::new(["https://127.0.0.1:1"]);
        opts.tls = Some(tls);
        let err = EtcdStore::connect(opts).await.err().expect(what);
        let msg = err.to_string();
        match &err {
            StoreError::Open { path: p, .. } => {
                assert_eq!(p, &path.display().to_string(), "{what}")
            }
            _ => panic!("{what}: expected Open, got {msg}"),
        }
        assert!(msg.contains(reason), "{what}: {msg}");
        println!("{what}: {msg}");
    }

    let mut opts = EtcdOptions::new(["http://127.0.0.1:1"]);
    opts.tls = Some(client.clone());
    let msg = EtcdStore::connect(opts).await.err().unwrap().to_string();
    assert!(msg.contains("need https:// endpoints"), "{msg}");
}
