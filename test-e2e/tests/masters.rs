//! Agents on several netmasters (a real 3-member etcd cluster on loopback): when the leading
//! netmaster dies, the agents carry on with the survivor — new pods get addresses, every host
//! learns of them through its watch stream, and traffic between hosts keeps flowing.

use serde_json::{Value, json};
use std::time::Duration;
use test_e2e::{Host, Netmaster, Underlay, tunnels, wait_for};

/// Which of `masters` leads, once one does and the others agree.
fn leader(masters: &[&Netmaster]) -> usize {
    let mut found = None;
    wait_for("one netmaster to lead", Duration::from_secs(30), || {
        let infos: Vec<Value> = masters
            .iter()
            .map(|m| m.api("GET", "/info", None).1)
            .collect();
        let leads: Vec<usize> = (0..masters.len())
            .filter(|&i| infos[i]["current-state"] == "leader")
            .collect();
        if let [l] = leads[..] {
            found = Some(l);
            return infos.iter().all(|i| i["leader-ip"] == infos[l]["local-ip"]);
        }
        false
    });
    found.unwrap()
}

#[test]
fn agents_carry_on_when_the_leading_netmaster_dies() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = rt.block_on(store::testing::Cluster::start(3));
    let eps = etcd.endpoints().join(",");
    let flags = ["--etcd-endpoints", eps.as_str(), "--leader-ttl", "3"];
    // Port 0: each advertises the port it bound (--advertise-url follows the listener).
    let mut masters = [Netmaster::start_with(&flags), Netmaster::start_with(&flags)];
    let l = leader(&[&masters[0], &masters[1]]);
    // The leader first: the agents use it until it dies, then must move on.
    let urls = format!("{},{}", masters[l].url(), masters[1 - l].url());
    let underlay = Underlay::new();
    let hosts = [
        Host::start_on_masters(&urls, &underlay, "host1"),
        Host::start_on_masters(&urls, &underlay, "host2"),
    ];
    wait_for("tunnels both ways", Duration::from_secs(20), || {
        hosts.iter().all(|h| tunnels(h).len() == 1)
    });
    // Through the follower: the write is forwarded to the leader.
    masters[1 - l].network("default", "net", "10.1.2.0/24", "10.1.2.1");
    let conf = |h: &Host| h.conf("1.0.0", json!({"network": "net"}));
    let a = hosts[0].pod(&conf(&hosts[0]));
    let b = hosts[1].pod(&conf(&hosts[1]));
    assert!(a.reaches(&b.ip, Duration::from_secs(10)));

    masters[l].kill();
    assert_eq!(leader(&[&masters[1 - l]]), 0);
    // Running pods never needed the master.
    assert!(a.ping(&b.ip));
    // New pods on both hosts: addresses from the survivor, and each host's watch stream (now on
    // the survivor) brings the other's new pod.
    let c = hosts[1].pod(&conf(&hosts[1]));
    let d = hosts[0].pod(&conf(&hosts[0]));
    let ips = [&a.ip, &b.ip, &c.ip, &d.ip];
    for (i, x) in ips.iter().enumerate() {
        assert!(
            !ips[i + 1..].contains(x),
            "address {x} handed out twice: {ips:?}"
        );
    }
    assert!(
        a.reaches(&c.ip, Duration::from_secs(10)),
        "host1 never learned of host2's new pod; agent log:\n{}",
        hosts[0].agent_log()
    );
    assert!(d.reaches(&b.ip, Duration::from_secs(10)));
    assert_eq!(masters[1 - l].endpoints().len(), 4);
    // DEL through the surviving master works too.
    let del = hosts[1].cni(
        "DEL",
        &c.container_id,
        &c.netns_path(),
        "eth0",
        &conf(&hosts[1]),
    );
    assert!(del.ok(), "{}", del.stdout);
    assert_eq!(masters[1 - l].endpoints().len(), 3);
}
