//! Every command family against a real netmaster: create, list (table, -j, -q, -a), inspect,
//! delete, and the refusals, compared as whole transcripts.

mod support;

use support::Session;

/// Runs each line, in order, and returns the transcript. Lines may fail: the transcript shows
/// how, and the snapshot is the judge.
fn transcript(s: &mut Session, lines: &[&str]) -> String {
    for line in lines {
        s.run(line);
    }
    s.transcript()
}

#[test]
fn tenant() {
    let mut s = Session::new();
    let t = transcript(
        &mut s,
        &[
            "tenant create blue",
            "tenant create red",
            "tenant ls",
            "tenant list -q",
            "tenant ls -j",
            "tenant inspect blue",
            "tenant rm red",
            "tenant delete blue",
            "tenant ls -q",
            // refusals
            "tenant create bad_name",
            "tenant rm nope",
            "tenant inspect nope",
            "net create -s 10.9.0.0/24 n1",
            "tenant rm default",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn network() {
    let mut s = Session::new();
    let t = transcript(
        &mut s,
        &[
            "net create --subnet=10.1.2.0/24 --gateway=10.1.2.1 contiv-net",
            "network create -e vlan -p 100 -s 10.1.3.0/24 -g 10.1.3.1 --tag web-tag vlan-net",
            "net create -s 10.1.4.0/24 -s6 2001:db8::/64 -g6 2001:db8::1 dual",
            "net create -n infra -s 10.1.5.0/24 infra-net",
            "tenant create blue",
            "net create -t blue -s 10.1.2.0/24 blue-net",
            "net ls",
            "net ls -q",
            "net ls -a",
            "net ls -a -q",
            "net ls -t blue -j",
            "net inspect vlan-net",
            "net rm vlan-net",
            "net list -q",
            // refusals
            "net create -s 10.1.0.0/16 other",
            "net create -s 10.1.6.0/24 -g 10.1.7.1 badgw",
            "net create -e gre -s 10.1.6.0/24 badencap",
            "net create nosubnet",
            "net ls -t nope",
            "net rm nope",
            "net inspect -t blue nope",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn group() {
    let mut s = Session::new();
    for line in [
        "net create -s 10.1.2.0/24 -g 10.1.2.1 contiv-net",
        "policy create web",
        "policy create db",
        "netprofile create -b 1gbps fast",
    ] {
        s.ok(line);
    }
    let t = transcript(
        &mut s,
        &[
            "group create contiv-net webgroup",
            "group create -p web,db -n fast -r 10.1.2.10-10.1.2.20 --tag pool-tag contiv-net pooled",
            "group create -p web -p db contiv-net multi",
            "group ls",
            "group ls -q",
            "group ls -a -j",
            "group inspect pooled",
            "group rm webgroup",
            "group delete multi",
            "group ls",
            // refusals
            "group create nonet g1",
            "group create -p nopolicy contiv-net g2",
            "group create -r 10.1.2.20-10.1.2.10 contiv-net g3",
            "policy rm web",
            "net rm contiv-net",
            "group rm nope",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn policy() {
    let mut s = Session::new();
    for line in [
        "tenant create blue",
        "net create -t blue -s 10.1.2.0/24 contiv-net",
        "net create -t blue -s 10.1.3.0/24 other-net",
        "group create -t blue contiv-net frontend",
        "group create -t blue contiv-net backend",
    ] {
        s.ok(line);
    }
    let t = transcript(
        &mut s,
        &[
            "policy create -t blue web",
            "policy create app",
            "policy ls",
            "policy ls -a",
            "policy ls -a -q",
            "policy ls -t blue -j",
            "policy inspect -t blue web",
            "policy rule-add -t blue web 1 --direction in --protocol tcp --action deny --priority 1",
            "policy rule-add -t blue web 2 -d in -g frontend -l tcp -P 443 -j allow -p 50",
            "policy rule-add -t blue web 3 -d in -n other-net -l udp -P 53 -p 10",
            "policy rule-add -t blue web 4 -d in -i 10.2.0.0/16 -l icmp",
            "policy rule-add -t blue web 5 -d out -e backend -l tcp -P 5432 -p 60",
            "policy rule-add -t blue web 6 -d out -s 10.3.0.1 -j deny -p 100",
            "policy rule-ls -t blue web",
            "policy rule-ls -t blue web -q",
            "policy rule-ls -t blue web -j",
            // No agent runs: every rule shows zero packets, and inspect lists the rules' counters.
            "policy rule-ls -t blue web --counts",
            "policy inspect -t blue web",
            "policy rule-rm -t blue web 4",
            "policy rule-ls -t blue web -q",
            "group create -t blue -p web contiv-net attached",
            // refusals
            "policy rule-add -t blue web 7 -d in -e backend",
            "policy rule-add -t blue web 7 -d out -g frontend",
            "policy rule-add -t blue web 7 -d sideways",
            "policy rule-add -t blue web 7 -P 80",
            "policy rule-add -t blue web 7 -p 101",
            "policy rule-add -t blue web 7 -g nosuch",
            "policy rule-add -t blue web 7 -P abc",
            "policy rule-add -t blue web 1 -l udp",
            "policy rule-add -t blue web",
            "policy rule-ls -t blue nosuch",
            "policy rm -t blue web",
            "policy rm nope",
            // a policy's rules go with it
            "group rm -t blue attached",
            "policy rm -t blue web",
            "policy ls -a",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn netprofile() {
    let mut s = Session::new();
    for line in ["tenant create blue", "net create -s 10.1.2.0/24 contiv-net"] {
        s.ok(line);
    }
    let t = transcript(
        &mut s,
        &[
            "netprofile create -b 10mbps -s 100 -d 6 slow",
            "netprofile create -b '100 kbps' trickle",
            "netprofile create -d 46 voice",
            "netprofile create -t blue -b 2gbps big",
            "netprofile ls",
            "netprofile ls -q",
            "netprofile ls -a",
            "netprofile ls -t blue -j",
            "netprofile inspect slow",
            "netprofile create -b 20mbps -s 200 slow",
            "netprofile ls",
            "group create -n slow contiv-net g",
            "netprofile rm voice",
            "netprofile ls -q",
            // refusals
            "netprofile create -b 1mbps -s 1 x",
            "netprofile create -b fast x",
            "netprofile create -d 64 x",
            "netprofile create -s 100 x",
            "netprofile rm slow",
            "netprofile inspect nope",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn global() {
    let mut s = Session::new();
    let t = transcript(
        &mut s,
        &[
            "global info",
            "global info -j",
            "global inspect",
            "global set -v 100-200 -x 5000-6000 --arp-mode flood",
            "global info",
            "net create -s 10.1.2.0/24 contiv-net",
            "net create -e vlan -s 10.1.3.0/24 vlan-net",
            "global inspect",
            // refusals
            "global set --fwd-mode routing",
            "global set -v 150-200",
            "global set --private-subnet 172.20.0.0/16",
            "global set --private-subnet 172.20.0.0/24",
            "global set -b bogus",
            "global set",
            "global info",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn bgp() {
    let mut s = Session::new();
    let t = transcript(
        &mut s,
        &[
            "bgp ls",
            "bgp create --router-ip 50.1.1.1/24 --as 65002 --neighbor-as 500 --neighbor 50.1.1.2 host1",
            "bgp create --router-ip=50.1.2.1/24 --as=65003 --neighbor-as=500 --neighbor=50.1.2.2 host2",
            "bgp ls",
            "bgp ls -q",
            "bgp ls -j",
            "bgp inspect host1",
            "bgp rm host2",
            "bgp ls -q",
            // refusals
            "bgp create --router-ip 50.1.1.1 --as 65002 --neighbor-as 500 --neighbor 50.1.1.2 host3",
            "bgp create --router-ip 50.1.1.1/24 --as 65002 --neighbor-as 500 --neighbor x host3",
            "bgp create --as 65002 host3",
            "bgp rm nope",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn endpoint() {
    let mut s = Session::new();
    for line in [
        "net create -s 10.1.2.0/24 -g 10.1.2.1 contiv-net",
        "group create contiv-net web",
    ] {
        s.ok(line);
    }
    let client = s.master.client();
    let req = model::agent::EndpointRequest {
        endpoint_id: "ep-4a0e1d".into(),
        tenant_name: "default".into(),
        network_name: "contiv-net".into(),
        group_name: "web".into(),
        host: "node1".into(),
        container_id: "c0ffee123".into(),
        container_name: "web-1".into(),
        intf_name: "eth0".into(),
        ..Default::default()
    };
    // Its node, which counts 3 frames it sent under another identity.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            client.create_endpoint(&req).await?;
            client
                .register_node(&model::agent::NodeRegistration {
                    hostname: "node1".into(),
                    vtep_ip: "192.0.2.11".into(),
                    version: "test".into(),
                })
                .await?;
            client
                .report_spoof_stats(&model::agent::SpoofStatsReport {
                    hostname: "node1".into(),
                    endpoints: [("ep-4a0e1d".to_string(), 3)].into(),
                })
                .await
        })
        .expect("create endpoint, register its node, report its counters");
    let t = transcript(
        &mut s,
        &[
            "endpoint inspect ep-4a0e1d",
            "ep inspect web-1",
            "ep inspect c0ffee",
            // refusals
            "ep inspect nope",
            "ep inspect",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn app_profile() {
    let mut s = Session::new();
    for line in [
        "net create -s 10.1.2.0/24 contiv-net",
        "group create contiv-net web",
        "group create contiv-net db",
        "group create contiv-net cache",
    ] {
        s.ok(line);
    }
    let t = transcript(
        &mut s,
        &[
            "app-profile create -g web,db shop",
            "app-profile create blog",
            "app-profile ls",
            "app-profile ls -q",
            "app-profile ls -j",
            "app-profile group-ls shop",
            "app-profile update -g web,db,cache shop",
            "app-profile group-list shop",
            "app-profile group-ls -j blog",
            "app-profile rm blog",
            "app-profile ls -a",
            // refusals
            "app-profile create -g nosuch bad",
            "group rm web",
            "app-profile rm nope",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn external_contracts() {
    let mut s = Session::new();
    let t = transcript(
        &mut s,
        &[
            "external-contracts create -c -a uni/tn-common/brc-default ext-web",
            "external-contracts create -p -a uni/tn-a/brc-x -a uni/tn-a/brc-y ext-db",
            "external-contracts ls",
            "external-contracts ls -q",
            "external-contracts ls -j",
            "external-contracts rm ext-web",
            "external-contracts list -a",
            // refusals
            "external-contracts create -c -p -a uni/tn-common/brc-default both",
            "external-contracts create -a uni/tn-common/brc-default neither",
            "external-contracts create -c none",
            "external-contracts rm nope",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn service() {
    let mut s = Session::new();
    s.ok("net create -s 10.1.2.0/24 -g 10.1.2.1 contiv-net");
    let t = transcript(
        &mut s,
        &[
            "service create -s contiv-net -l app=web -l tier=fe -p 80:8080:tcp --ip 10.1.2.100 websvc",
            "service create -s contiv-net -l app=db -p 5432:5432:TCP -p 5433:5433:udp dbsvc",
            "service ls",
            "service ls -q",
            "service ls -j",
            "service inspect websvc",
            "service rm dbsvc",
            "service ls -a",
            // refusals
            "service create -s contiv-net -p 80:80:tcp noselector",
            "service create -s contiv-net -l app=x -p 80:tcp badport",
            "service create -s nonet -l app=x -p 80:80:tcp nonet",
            "service create -l app=x -p 80:80:tcp nonetflag",
            "service inspect nope",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn aci_gw() {
    let mut s = Session::new();
    let t = transcript(
        &mut s,
        &[
            "aci-gw info",
            "aci-gw set -d containerDom -n topology/pod-1/node-101",
            "aci-gw info",
            "aci-gw set -p topology/pod-1/paths-101/pathep-[eth1/14] -e no",
            "aci-gw info",
            "aci-gw info -j",
            "aci-gw inspect",
            // refusals
            "aci-gw set -e maybe",
            "aci-gw set -n node-101",
            "aci-gw set",
        ],
    );
    insta::assert_snapshot!(t);
}

#[test]
fn version() {
    let mut s = Session::new();
    s.ok("version");
    // Versions and build stamps change; the form does not.
    let t: String = s
        .transcript()
        .lines()
        .map(|l| match l.split_once(": ") {
            Some((k @ ("Version" | "GitCommit" | "BuildTime"), _)) => format!("{k}: [redacted]\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    insta::assert_snapshot!(t);
}
