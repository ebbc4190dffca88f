//! The endpoint manager and every attachment mode, on a model of the kernel and of the switch
//! (`kernel::fake`, `switch::fake`) and a real netmaster running in the test (embedded store,
//! on a unix socket): no root, no OVS. ADD, DEL, CHECK, GC and restart in each mode, the undo
//! of failing steps, concurrent ADD and DEL of one endpoint, re-ADD into a kept namespace, and
//! the hand-over of a released pod's MAC.

use super::*;
use crate::kernel::MacVlanMode;
use crate::kernel::fake::HOST;
use crate::names::host_ifname;
use crate::testing::{Rig, SIDE, pool, trunks, veth};

#[tokio::test]
async fn veth_add_check_del_and_reap() {
    let r = Rig::new(|_| veth()).await;
    let req = r.pod("c1");
    let a = r.m.add(&req).await.expect("ADD");
    let host_if = host_ifname("c1-eth0");
    assert_eq!(a.host_ifname, host_if);
    r.assert_plumbed(&req, &a);
    let l = r.kernel.link("/run/netns/c1", "eth0").unwrap();
    assert!(!l.tx_csum, "TX checksums off on the userspace datapath");
    let port = r.switch.port(&host_if).expect("the endpoint's port");
    assert_eq!(
        port.external_ids.get(ids_endpoint()).map(String::as_str),
        Some("c1-eth0")
    );
    r.m.check("c1", "eth0", &req.netns).await.expect("CHECK");
    // A repeated ADD returns the same attachment and makes nothing new.
    let calls = r.kernel.calls().len();
    let again = r.m.add(&req).await.expect("repeated ADD");
    assert_eq!(
        (again.mac, again.host_ifname),
        (a.mac.clone(), a.host_ifname.clone())
    );
    assert!(
        !r.kernel.calls()[calls..]
            .iter()
            .any(|c| c.starts_with("create"))
    );

    r.m.del("c1", "eth0").await.expect("DEL");
    assert!(r.switch.flows().is_empty(), "flows go at DEL");
    assert!(r.endpoint_ids().await.is_empty(), "address released");
    assert!(
        r.switch.port(&host_if).is_some(),
        "the port waits for the reaper"
    );
    r.m.reap_once().await;
    assert!(r.switch.port(&host_if).is_none());
    assert!(
        !r.kernel.links(HOST).contains(&host_if),
        "host veth deleted"
    );
    assert!(
        r.kernel.links("/run/netns/c1") == ["lo"],
        "its peer went with it"
    );
    // DEL again: nothing to remove is success.
    r.m.del("c1", "eth0").await.expect("second DEL");
}

fn ids_endpoint() -> &'static str {
    crate::names::ids::ENDPOINT
}

/// Whatever step fails, a failed ADD leaves no interface, port, flow or address behind, and
/// the error says whether to try again.
async fn assert_failed_add_leaves_nothing(mode: fn(&Path) -> CniMode) {
    // (fake, operation, errno or 0 for a switch failure, expected kind)
    let cases: [(&str, &str, i32, ErrorKind); 5] = [
        (
            "kernel",
            "add_address",
            libc::EEXIST + 1000,
            ErrorKind::Internal,
        ),
        (
            "kernel",
            "add_default_route",
            libc::EBUSY,
            ErrorKind::TryAgain,
        ),
        ("kernel", "set_up", libc::EPERM, ErrorKind::Internal),
        ("switch", "program_endpoint", 0, ErrorKind::TryAgain),
        ("kernel", "prepare_link", libc::ENODEV, ErrorKind::Internal),
    ];
    for (i, (fake, op, errno, kind)) in cases.into_iter().enumerate() {
        let r = Rig::new(mode).await;
        let req = r.pod(&format!("f{i}"));
        let ports_before = r.switch.port_names();
        if fake == "kernel" {
            r.kernel.fail_next(op, errno);
        } else {
            r.switch.fail_next(op);
        }
        let e = r.m.add(&req).await.expect_err(op);
        assert_eq!(e.kind, kind, "{op}: {e}");
        assert!(e.to_string().contains(op) || !e.to_string().is_empty());
        let ns = req.netns.display().to_string();
        assert_eq!(
            r.kernel.links(&ns),
            ["lo"],
            "{op}: pod interface left behind"
        );
        assert!(r.switch.flows().is_empty(), "{op}: flows left behind");
        assert!(r.endpoint_ids().await.is_empty(), "{op}: address leaked");
        let ports_after: Vec<String> = r
            .switch
            .port_names()
            .into_iter()
            .filter(|p| crate::names::is_host_ifname(p))
            .collect();
        assert!(
            ports_after.is_empty(),
            "{op}: veth port left: {ports_after:?} (before {ports_before:?})"
        );
        assert!(
            !r.kernel
                .links(HOST)
                .iter()
                .any(|l| crate::names::is_host_ifname(l)),
            "{op}: host veth left"
        );
        // And the same request then succeeds.
        let a = r.m.add(&req).await.expect("ADD after the failure");
        r.assert_plumbed(&req, &a);
    }
}

#[tokio::test]
async fn failed_add_leaves_nothing_veth() {
    assert_failed_add_leaves_nothing(|_| veth()).await;
}

#[tokio::test]
async fn failed_add_leaves_nothing_pool() {
    assert_failed_add_leaves_nothing(|_| pool()).await;
}

#[tokio::test]
async fn failed_add_leaves_nothing_trunks() {
    assert_failed_add_leaves_nothing(trunks).await;
}

#[tokio::test]
async fn bad_namespace_and_unreachable_netmaster_say_what_to_do() {
    let r = Rig::new(|_| veth()).await;
    let mut req = r.pod("b1");
    req.netns = "/run/netns/nope".into();
    let e = r.m.add(&req).await.expect_err("missing netns");
    assert_eq!(e.kind, ErrorKind::InvalidEnv);
    assert!(
        e.msg.contains("/run/netns/nope") && e.details.contains("CNI_NETNS"),
        "{e:?}"
    );
    let mut req = r.pod("b2");
    req.ifname = "a/b".into();
    assert_eq!(r.m.add(&req).await.unwrap_err().kind, ErrorKind::InvalidEnv);
    let mut req = r.pod("b3");
    req.network = "missing".into();
    let e = r.m.add(&req).await.expect_err("unknown network");
    assert_eq!(e.kind, ErrorKind::InvalidConfig, "{e}");
    assert_eq!(r.kernel.links("/run/netns/b3"), ["lo"]);
    // Netmaster gone: try again later, and nothing left behind.
    r.server.abort();
    let dead =
        model::Client::new(&[format!("unix://{}/none.sock", r.dir.path().display())]).unwrap();
    let m = Rig::manager(&r.kernel, &r.switch, &dead, veth()).await;
    let req = r.pod("b4");
    let e = m.add(&req).await.expect_err("netmaster down");
    assert_eq!(e.kind, ErrorKind::TryAgain, "{e}");
    assert_eq!(r.kernel.links("/run/netns/b4"), ["lo"]);
}

#[tokio::test]
async fn pool_add_del_and_readd_into_a_kept_namespace() {
    let r = Rig::new(|_| pool()).await;
    let req = r.pod("p1");
    let a = r.m.add(&req).await.expect("ADD");
    assert!(
        crate::names::is_pool_ifname(&a.host_ifname),
        "{}",
        a.host_ifname
    );
    r.assert_plumbed(&req, &a);
    let l = r.kernel.link("/run/netns/p1", "eth0").unwrap();
    assert!(matches!(
        l.kind,
        crate::kernel::fake::Kind::Macvlan {
            mode: MacVlanMode::Passthrough,
            ..
        }
    ));
    r.m.check("p1", "eth0", &req.netns).await.expect("CHECK");
    r.m.del("p1", "eth0").await.expect("DEL");
    assert!(r.switch.flows().is_empty());
    // The runtime keeps the namespace and ADDs it again under another container id: the old
    // interface (on a now free port) is in the way and goes.
    let mut again = req.clone();
    again.container_id = "p1-bis".into();
    let b =
        r.m.add(&again)
            .await
            .expect("re-ADD into the kept namespace");
    r.assert_plumbed(&again, &b);
    // GC keeps the valid one, removes the rest.
    let other = r.pod("p2");
    r.m.add(&other).await.expect("ADD p2");
    let valid = BTreeSet::from([("p2".to_string(), "eth0".to_string())]);
    assert_eq!(r.m.gc("contiv", &valid).await.expect("GC"), 1);
    assert_eq!(r.endpoint_ids().await, ["p2-eth0"]);
}

#[tokio::test]
async fn trunk_pods_share_a_port_and_a_released_mac_is_handed_over() {
    let r = Rig::new(trunks).await;
    let (p1, p2) = (r.pod("t1"), r.pod("t2"));
    let a1 = r.m.add(&p1).await.expect("ADD t1");
    let a2 = r.m.add(&p2).await.expect("ADD t2");
    assert_eq!(a1.host_ifname, a2.host_ifname, "one trunk per network");
    assert!(crate::names::is_trunk_ifname(&a1.host_ifname));
    r.assert_plumbed(&p1, &a1);
    r.assert_plumbed(&p2, &a2);
    assert_eq!(r.switch.trunks().len(), 1);
    r.m.check("t1", "eth0", &p1.netns).await.expect("CHECK");
    // t1 goes, its namespace stays; the next pod gets its address, so its MAC: the kernel
    // refuses two macvlans of one trunk with one MAC until t1's interface goes.
    r.m.del("t1", "eth0").await.expect("DEL t1");
    let p3 = r.pod("t3");
    let a3 = r.m.add(&p3).await.expect("ADD t3 with t1's MAC");
    assert_eq!(a3.mac, a1.mac, "netmaster reuses the freed address");
    r.assert_plumbed(&p3, &a3);
    assert_eq!(
        r.kernel.links("/run/netns/t1"),
        ["lo"],
        "t1's interface was deleted"
    );
    // A restart finds the trunk and its endpoints in the records.
    let mut r = r;
    r.restart().await;
    assert_eq!(r.switch.flows().len(), 2);
    r.m.check("t3", "eth0", &p3.netns)
        .await
        .expect("CHECK after restart");
    r.m.del("t2", "eth0").await.expect("DEL after restart");
    assert_eq!(r.endpoint_ids().await, ["t3-eth0"]);
}

#[tokio::test]
async fn restart_keeps_live_endpoints_and_drops_the_rest() {
    for mode in [
        (|_: &Path| veth()) as fn(&Path) -> CniMode,
        |_: &Path| pool(),
        trunks,
    ] {
        let mut r = Rig::new(mode).await;
        let (p1, p2) = (r.pod("r1"), r.pod("r2"));
        r.m.add(&p1).await.expect("ADD r1");
        r.m.add(&p2).await.expect("ADD r2");
        // While the agent is down: r2's DEL reaches netmaster only, and an ADD crashed after
        // netmaster gave an address (an endpoint with no port).
        r.master.delete_endpoint("r2-eth0").await.unwrap();
        r.master
            .create_endpoint(&model::agent::EndpointRequest {
                endpoint_id: "crashed-eth0".into(),
                tenant_name: "default".into(),
                network_name: "net".into(),
                host: "node1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        r.restart().await;
        assert_eq!(
            r.endpoint_ids().await,
            ["r1-eth0"],
            "the crashed ADD's address is released"
        );
        assert_eq!(
            r.switch.flows().keys().cloned().collect::<Vec<_>>(),
            ["r1-eth0"],
            "flows for the live endpoint only"
        );
        r.m.check("r1", "eth0", &p1.netns)
            .await
            .expect("CHECK r1 after restart");
        r.m.reap_once().await;
        assert!(
            !r.switch.port_names().contains(&host_ifname("r2-eth0")),
            "the removed endpoint's port is gone"
        );
        // The pod whose DEL was missed gets a fresh ADD.
        let a = r.m.add(&p2).await.expect("re-ADD r2");
        r.assert_plumbed(&p2, &a);
    }
}

#[tokio::test]
async fn concurrent_add_and_del_of_one_endpoint_stay_consistent() {
    for mode in [
        (|_: &Path| veth()) as fn(&Path) -> CniMode,
        |_: &Path| pool(),
        trunks,
    ] {
        let r = Rig::new(mode).await;
        for i in 0..8 {
            let req = r.pod(&format!("c{i}"));
            let ep = endpoint_id(&req.container_id, "eth0");
            let (add, del) = tokio::join!(r.m.add(&req), r.m.del(&req.container_id, "eth0"));
            del.expect("DEL");
            let held = r.endpoint_ids().await.contains(&ep);
            let flows = r.switch.flows().contains_key(&ep);
            match add {
                // Whichever ran last decides; never an address without flows or flows
                // without an address.
                Ok(_) => assert_eq!(held, flows, "{ep}: address {held}, flows {flows}"),
                Err(e) => panic!("ADD {ep}: {e}"),
            }
            r.m.del(&req.container_id, "eth0").await.expect("final DEL");
            assert!(!r.switch.flows().contains_key(&ep));
        }
        assert!(r.endpoint_ids().await.is_empty());
    }
}

#[tokio::test]
async fn veth_readd_into_a_namespace_whose_peer_waits_for_the_reaper() {
    let r = Rig::new(|_| veth()).await;
    let req = r.pod("v1");
    r.m.add(&req).await.expect("ADD");
    r.m.del("v1", "eth0").await.expect("DEL");
    // Same namespace, another container id: the old peer `eth0` is still in it (its host end
    // is queued for the reaper), so the new veth's peer cannot be born: the queued one goes now.
    let mut again = req.clone();
    again.container_id = "v2".into();
    let a = r.m.add(&again).await.expect("re-ADD");
    r.assert_plumbed(&again, &a);
    assert!(!r.kernel.links(HOST).contains(&host_ifname("v1-eth0")));
    r.m.reap_once().await;
    assert!(
        r.kernel.links(HOST).contains(&host_ifname("v2-eth0")),
        "the live veth stays"
    );
}

#[tokio::test]
async fn a_failed_add_takes_the_trunk_it_made_with_it() {
    let r = Rig::new(trunks).await;
    let mut req = r.pod("n1");
    req.network = "nope".into();
    let e = r.m.add(&req).await.expect_err("unknown network");
    assert_eq!(e.kind, ErrorKind::InvalidConfig, "{e}");
    let trunk = crate::names::trunk_ifname("default/nope");
    // Issue 17.5: not even made and deleted again (a port and a veth pair per bogus name).
    let made: Vec<String> = r
        .kernel
        .calls()
        .into_iter()
        .filter(|c| c.contains(&trunk))
        .collect();
    assert!(
        made.is_empty(),
        "a trunk made for a bogus network: {made:?}"
    );
    assert!(
        !r.switch.port_names().contains(&trunk),
        "trunk port left behind"
    );
    assert!(
        !r.kernel.links(HOST).contains(&trunk),
        "trunk veth left behind"
    );
    assert!(r.switch.trunks().is_empty());
    assert_eq!(r.kernel.links("/run/netns/n1"), ["lo"]);
    // A trunk that serves a pod stays when another pod's ADD fails on it.
    let ok = r.pod("n2");
    r.m.add(&ok).await.expect("ADD n2");
    let mut bad = r.pod("n3");
    bad.ip = Some("10.9.9.9".into());
    r.m.add(&bad).await.expect_err("address outside the subnet");
    let net = crate::names::trunk_ifname("default/net");
    assert!(r.switch.port_names().contains(&net));
    r.m.check("n2", "eth0", &ok.netns)
        .await
        .expect("n2 still plumbed");
}

/// Issue 17.3: the agent killed right after a trunk pod's DEL (its namespace kept) forgot the
/// interface it was to delete, which kept the released MAC: every later pod given that MAC
/// failed. The interface is recorded until deleted, so a restarted agent deletes it.
#[tokio::test]
async fn a_released_trunk_interface_survives_a_restart_of_the_agent_as_a_record() {
    let mut r = Rig::new(trunks).await;
    let p1 = r.pod("k1");
    let a1 = r.m.add(&p1).await.expect("ADD k1");
    r.m.del("k1", "eth0").await.expect("DEL k1");
    // Killed before the reaper's round: a new agent.
    r.restart().await;
    let p2 = r.pod("k2");
    let a2 = r.m.add(&p2).await.expect("ADD k2 with k1's MAC");
    assert_eq!(a2.mac, a1.mac, "netmaster reuses the freed address");
    r.assert_plumbed(&p2, &a2);
    assert_eq!(r.kernel.links("/run/netns/k1"), ["lo"]);
    r.m.reap_once().await;
    r.m.check("k2", "eth0", &p2.netns).await.expect("CHECK k2");
    let left = r.dir.path().join("trunks").join("leftovers");
    assert_eq!(
        std::fs::read_dir(&left).map(|d| d.count()).unwrap_or(0),
        0,
        "no interface record left in {}",
        left.display()
    );
}

/// A pod DELeted and ADDed again into its kept namespace gets an interface of the same name
/// and alias as the released one: the reaper deletes the released one only, by index.
#[tokio::test]
async fn the_reaper_never_deletes_a_readded_trunk_interface() {
    let mut r = Rig::new(trunks).await;
    let mut p = r.pod("q1");
    r.m.add(&p).await.expect("ADD");
    r.m.del("q1", "eth0").await.expect("DEL");
    // Another address this time (the freed one went to another pod, say): the released
    // interface's MAC is wanted by nobody, so it waits for the reaper.
    p.ip = Some("10.1.0.9".into());
    let a = r.m.add(&p).await.expect("re-ADD");
    r.m.reap_once().await;
    r.assert_plumbed(&p, &a);
    r.m.check("q1", "eth0", &p.netns).await.expect("CHECK");
    // And after a restart, whose records name the released interface too.
    r.m.del("q1", "eth0").await.expect("DEL");
    p.ip = Some("10.1.0.10".into());
    let a = r.m.add(&p).await.expect("re-ADD");
    r.restart().await;
    r.m.reap_once().await;
    r.assert_plumbed(&p, &a);
    r.m.check("q1", "eth0", &p.netns)
        .await
        .expect("CHECK after restart");
}

/// Issue 17.4: a repeated ADD (the runtime's retry after the agent was killed during the
/// first) answered "existing attachment" for an interface left down and without its address.
/// Only an attachment CHECK would pass is returned as is; any other is made again.
#[tokio::test]
async fn a_repeated_add_remakes_an_unfinished_attachment() {
    for mode in [
        (|_: &Path| veth()) as fn(&Path) -> CniMode,
        |_: &Path| pool(),
        trunks,
    ] {
        let r = Rig::new(mode).await;
        let req = r.pod("u1");
        r.m.add(&req).await.expect("ADD");
        r.kernel.edit_link("/run/netns/u1", "eth0", |l| {
            l.up = false;
            l.addrs.clear();
        });
        assert!(r.m.check("u1", "eth0", &req.netns).await.is_err());
        let a = r.m.add(&req).await.expect("repeated ADD");
        r.assert_plumbed(&req, &a);
        r.m.check("u1", "eth0", &req.netns)
            .await
            .expect("CHECK after the repeated ADD");
        r.m.reap_once().await;
        r.m.check("u1", "eth0", &req.netns)
            .await
            .expect("CHECK after the reaper's round");
    }
}

/// Issue 17.7: `éth0` and `üth0` in one container were one endpoint (`c-_th0`): the second ADD
/// returned the first's address and the first interface went. Distinct names are distinct
/// endpoints; names the kernel would refuse are refused.
#[tokio::test]
async fn distinct_interface_names_never_share_an_endpoint() {
    let r = Rig::new(|_| veth()).await;
    let mut e = r.pod("u");
    e.ifname = "éth0".into();
    let mut u = e.clone();
    u.ifname = "üth0".into();
    let a = r.m.add(&e).await.expect("ADD éth0");
    let b = r.m.add(&u).await.expect("ADD üth0");
    assert_ne!(a.endpoint.endpoint_id, b.endpoint.endpoint_id);
    assert_ne!(a.endpoint.ip_address, b.endpoint.ip_address);
    r.assert_plumbed(&e, &a);
    r.assert_plumbed(&u, &b);
    r.m.check("u", "éth0", &e.netns).await.expect("CHECK éth0");
    r.m.check("u", "üth0", &u.netns).await.expect("CHECK üth0");
    let mut bad = e.clone();
    bad.ifname = "àth0".into(); // UTF-8 c3 a0: 0xa0 is a space to the kernel
    let err = r.m.add(&bad).await.expect_err("àth0");
    assert_eq!(err.kind, ErrorKind::InvalidEnv, "{err}");
    assert!(err.msg.contains("àth0"), "{err}");
}

/// Found by the chaos test: an ADD whose pod interface was in the way (a released endpoint's)
/// failed with EEXIST when the reaper deleted that interface between the ADD's attempt and its
/// own deletion. Gone meanwhile is as good as deleted.
#[tokio::test]
async fn an_interface_in_the_way_that_the_reaper_deletes_meanwhile_is_no_error() {
    for mode in [(|_: &Path| pool()) as fn(&Path) -> CniMode, trunks] {
        let r = Rig::new(mode).await;
        let req = r.pod("g1");
        // The kernel says eth0 exists; by the time the agent looks, it does not.
        r.kernel.fail_next("create_macvlan", libc::EEXIST);
        let a = r.m.add(&req).await.expect("ADD");
        r.assert_plumbed(&req, &a);
    }
}

/// Found by the chaos test (seed 1796322281069070869): the interface in the way sat on a pooled
/// port that was neither free nor bound (a surplus port on its way to the reaper); the reaper
/// deleted that port, and the interface with it, between the agent's look at the interface and
/// its look at the port, and the ADD failed with EEXIST though nothing was in the way any more.
#[tokio::test]
async fn an_interface_in_the_way_whose_port_the_reaper_deletes_meanwhile_is_no_error() {
    use crate::kernel::fake::Kind;
    let r = Rig::new(|_| pool()).await;
    let req = r.pod("g1");
    let netns = req.netns.display().to_string();
    let lower = r
        .kernel
        .add_link(SIDE, &crate::names::new_pool_ifname(), Kind::Other);
    r.kernel.add_link(
        &netns,
        "eth0",
        Kind::Macvlan {
            lower: (SIDE.into(), lower),
            mode: MacVlanMode::Passthrough,
        },
    );
    r.kernel
        .delete_before_next("name_and_group", &lower.to_string(), SIDE, lower);
    let a = r.m.add(&req).await.expect("ADD");
    r.assert_plumbed(&req, &a);
}

/// Found by the chaos test (e.g. seed 1796323752483907226): after an agent restart, the free
/// pooled ports still held by released endpoints' interfaces (their namespaces kept) no longer
/// say which namespace holds them; each ADD skipped them a few times before giving them up, so
/// with more such ports than its attempts an ADD failed with "no free pooled port".
#[tokio::test]
async fn after_a_restart_ports_held_by_released_interfaces_do_not_refuse_an_add() {
    let mut r = Rig::new(|_| pool()).await;
    let pods: Vec<AddRequest> = (0..12).map(|i| r.pod(&format!("held{i}"))).collect();
    for p in &pods {
        r.m.add(p).await.expect("ADD");
    }
    for p in &pods {
        r.m.del(&p.container_id, "eth0").await.expect("DEL");
    }
    r.restart().await;
    let fresh = r.pod("fresh");
    let a = r.m.add(&fresh).await.expect("ADD after the restart");
    r.assert_plumbed(&fresh, &a);
}

/// Found by the chaos test (veth ports, e.g. seed 1796324102515335803): a CHECK right after ADD
/// failed with "has no OpenFlow port" while a busy ovs-vswitchd had not yet written the number
/// ADD asked for; pending is as ADD left it.
#[tokio::test]
async fn check_accepts_an_openflow_port_number_asked_for_and_not_yet_written() {
    let r = Rig::new(|_| veth()).await;
    let req = r.pod("v1");
    let a = r.m.add(&req).await.expect("ADD");
    r.switch.ofport_pending(&a.host_ifname);
    r.m.check("v1", "eth0", &req.netns)
        .await
        .expect("CHECK with the number pending");
}

/// Found by the chaos test (pool, seed 1796324839040307650): a pod's interface outlived its DEL
/// (its namespace kept) on a pooled port kept free, until that port's next use, which may
/// never come. The reaper deletes it at the next lull.
#[tokio::test]
async fn a_released_pods_interface_goes_at_the_next_lull() {
    let r = Rig::new(|_| pool()).await;
    let req = r.pod("kept");
    r.m.add(&req).await.expect("ADD");
    r.m.del("kept", "eth0").await.expect("DEL");
    let netns = req.netns.display().to_string();
    assert_eq!(
        r.kernel.links(&netns),
        ["eth0", "lo"],
        "DEL leaves it to a lull"
    );
    r.m.reap_once().await;
    assert_eq!(r.kernel.links(&netns), ["lo"]);
    // The port serves the next pod.
    let next = r.pod("next");
    let a = r.m.add(&next).await.expect("ADD after the reap");
    r.assert_plumbed(&next, &a);
}

/// Found by the chaos test (pool, seed 1796325444007546807): after an agent restart, a pod's
/// port is known and its namespace is not, so the interface outlived the DEL for good. The DEL
/// names the namespace.
#[tokio::test]
async fn after_a_restart_a_del_naming_the_namespace_lets_the_interface_go() {
    let mut r = Rig::new(|_| pool()).await;
    let req = r.pod("kept");
    r.m.add(&req).await.expect("ADD");
    r.restart().await;
    r.m.del_in("kept", "eth0", Some(&req.netns))
        .await
        .expect("DEL");
    r.m.reap_once().await;
    assert_eq!(r.kernel.links(&req.netns.display().to_string()), ["lo"]);
}
