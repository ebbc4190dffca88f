//! The election and the fence in process, on one real embedded store shared by two masters: one
//! leads, a leader whose key is gone cannot write (it steps down and answers 503), and the other
//! takes over with the state the first one wrote.

use master::leader::ElectionOptions;
use master::{Master, MasterOptions};
use model::agent::EndpointRequest;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;

async fn start(store: Arc<dyn Store>, name: &str) -> Arc<Master> {
    let mut opts = MasterOptions::single(name, "embedded");
    opts.election = Some(ElectionOptions {
        ttl: Duration::from_secs(2),
        advertise_url: format!("http://{name}"),
    });
    let m = Master::open(store, opts).await.unwrap();
    tokio::spawn(m.clone().campaign());
    tokio::spawn(m.clone().follow_store());
    m
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ep(id: &str) -> EndpointRequest {
    EndpointRequest {
        endpoint_id: id.into(),
        tenant_name: "default".into(),
        network_name: "n".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cannot_write_and_the_other_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        store::EmbeddedStore::open(store::EmbeddedOptions::new(dir.path().join("s.redb"))).unwrap(),
    );
    let a = start(store.clone(), "a:1").await;
    let b = start(store.clone(), "b:1").await;
    wait_for("one leader", || {
        a.leadership.is_leader() != b.leadership.is_leader()
            && a.leadership.leader().is_some()
            && a.leadership.leader() == b.leadership.leader()
    })
    .await;
    let (leader, follower) = if a.leadership.is_leader() {
        (a, b)
    } else {
        (b, a)
    };
    let net =
        br#"{"tenantName":"default","networkName":"n","encap":"vxlan","subnet":"10.3.0.0/24"}"#;
    leader
        .upsert(model::Kind::Network, "default:n", net)
        .await
        .unwrap();
    leader.create_endpoint(&ep("e1")).await.unwrap();
    // The follower applies the store's events.
    wait_for("the follower to see e1", || {
        follower.get_endpoint("e1").is_ok()
    })
    .await;

    // The leader key disappears behind the leader's back (as when its lease expired while it
    // was paused): its next write fails on the fence, writes nothing, and it steps down.
    store.delete(master::keys::LEADER).await.unwrap();
    let e = leader.create_endpoint(&ep("e2")).await.unwrap_err();
    assert_eq!(e.status, 503, "{}", e.message);
    assert!(e.message.contains("lost the leadership"), "{}", e.message);
    assert!(store.get(&master::keys::ep("e2")).await.unwrap().is_none());
    assert!(
        store
            .list("/contiv/alloc/ip/default:n/")
            .await
            .unwrap()
            .0
            .len()
            == 1
    );
    // One of them leads again, with the state written before, and allocates the next address.
    wait_for("a new leader", || {
        leader.leadership.is_leader() || follower.leadership.is_leader()
    })
    .await;
    let now = if leader.leadership.is_leader() {
        &leader
    } else {
        &follower
    };
    let e = now.create_endpoint(&ep("e3")).await.unwrap();
    assert_eq!(e.ip_address, "10.3.0.2");
}

/// A stopping leader releases the leadership at once: the other master leads long before the
/// leader lease's TTL (60 s here) would have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resigning_leader_hands_over_without_waiting_for_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        store::EmbeddedStore::open(store::EmbeddedOptions::new(dir.path().join("s.redb"))).unwrap(),
    );
    let start_ttl = |name: &'static str| {
        let store = store.clone();
        async move {
            let mut opts = MasterOptions::single(name, "embedded");
            opts.election = Some(ElectionOptions {
                ttl: Duration::from_secs(60),
                advertise_url: format!("http://{name}"),
            });
            let m = Master::open(store, opts).await.unwrap();
            tokio::spawn(m.clone().campaign());
            m
        }
    };
    let a = start_ttl("a:1").await;
    wait_for("a to lead", || a.leadership.is_leader()).await;
    let b = start_ttl("b:1").await;
    wait_for("b to follow a", || {
        b.leadership.leader().map(|l| l.url) == Some("http://a:1".into())
    })
    .await;
    a.resign().await;
    assert!(!a.leadership.is_leader());
    // wait_for gives up after 10 s, far less than the 60 s TTL.
    wait_for("b to lead", || b.leadership.is_leader()).await;
}
