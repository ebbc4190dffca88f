//! What the API stores but the datapath does not do yet is said on stderr, one `warning:` line,
//! and stdout stays what Contiv printed (docs/compat.md, "Accepted, no effect yet").

mod support;

use support::{Run, Session};

const BGP: &str = "warning: BGP peering is not implemented yet: the object is stored but no BGP session is made (docs/compat.md)\n";
const ROUTING: &str = "warning: forwarding mode routing is not implemented yet: networks are still bridged over VXLAN (docs/compat.md)\n";
const VLAN: &str = "warning: VLAN networks do not span hosts yet: pods of this network on different hosts cannot reach each other (docs/compat.md)\n";
const SERVICE: &str = "warning: service load balancing is not implemented yet: the VIP is allocated but traffic to it is not sent to the providers (docs/compat.md)\n";
const ACI: &str =
    "warning: ACI is not implemented: the object is stored but has no effect (docs/compat.md)\n";

/// Runs `line`, which must succeed, and checks both streams whole.
fn expect(s: &mut Session, line: &str, stdout: &str, stderr: &str) -> Run {
    let r = s.ok(line);
    assert_eq!(r.stdout, stdout, "stdout of netctl {line}");
    assert_eq!(r.stderr, stderr, "stderr of netctl {line}");
    r
}

/// The one stderr line of an inspect: netmaster's notice, behind `warning: `.
fn notice_line(r: &Run) -> &str {
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{r:?}");
    lines[0]
}

#[test]
fn writes_of_what_has_no_effect_warn_on_stderr_only() {
    let mut s = Session::new();
    // fwdMode can change only while no network exists.
    expect(&mut s, "global set --fwd-mode routing", "", ROUTING);
    expect(&mut s, "global set --fwd-mode bridge", "", "");
    expect(&mut s, "global set --arp-mode flood", "", "");

    expect(
        &mut s,
        "bgp create --router-ip 50.1.1.1/24 --as 65002 --neighbor-as 500 --neighbor 50.1.1.2 host1",
        "",
        BGP,
    );
    expect(
        &mut s,
        "net create -e vlan -p 100 -s 10.1.3.0/24 vlan-net",
        "Creating network default:vlan-net\n",
        VLAN,
    );
    expect(
        &mut s,
        "net create -s 10.1.2.0/24 -g 10.1.2.1 contiv-net",
        "Creating network default:contiv-net\n",
        "",
    );
    expect(
        &mut s,
        "service create -s contiv-net -l app=web -p 80:8080:TCP websvc",
        "Creating ServiceLB default:websvc\n",
        SERVICE,
    );
    expect(
        &mut s,
        "app-profile create app",
        "Creating AppProfile default:app\n",
        ACI,
    );
    expect(
        &mut s,
        "group create contiv-net web",
        "Creating EndpointGroup default:web\n",
        "",
    );

    // A refused write warns of nothing: only its error is on stderr.
    let r = s.run(
        "bgp create --router-ip 50.1.1.1 --as 65002 --neighbor-as 500 --neighbor 50.1.1.2 host2",
    );
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains("warning:"), "{r:?}");
    let r = s.run("net create -e vlan -s 10.1.3.0/24 vlan-net2");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(!r.stderr.contains("warning:"), "{r:?}");
}

#[test]
fn inspect_prints_the_notice_on_stderr_and_contivs_json_on_stdout() {
    let mut s = Session::new();
    s.ok(
        "bgp create --router-ip 50.1.1.1/24 --as 65002 --neighbor-as 500 --neighbor 50.1.1.2 host1",
    );
    // Contiv's JSON, with the Oper it had (empty: no session), and no notice in it.
    let r = s.ok("bgp inspect host1");
    assert_eq!(
        r.stdout,
        r#"{
  "Config": {
    "key": "host1",
    "as": "65002",
    "hostname": "host1",
    "neighbor": "50.1.1.2",
    "neighbor-as": "500",
    "routerip": "50.1.1.1/24"
  },
  "Oper": {}
}
"#
    );
    assert!(
        notice_line(&r).starts_with(
            "warning: BGP peering is not implemented yet: this object is stored but no BGP session is made"
        ),
        "{r:?}"
    );

    s.ok("net create -e vlan -p 100 -s 10.1.3.0/24 vlan-net");
    s.ok("net create -s 10.1.2.0/24 -g 10.1.2.1 contiv-net");
    s.ok("net create -s 10.1.4.0/24 nogw");
    let r = s.ok("net inspect vlan-net");
    assert!(!r.stdout.contains("notice"), "{}", r.stdout);
    assert!(r.stdout.contains("\"pktTag\": 100"), "{}", r.stdout);
    assert!(
        notice_line(&r).starts_with("warning: VLAN networks do not span hosts yet:"),
        "{r:?}"
    );
    // A network without a gateway: its pods get no outside or host access.
    let r = s.ok("net inspect nogw");
    assert!(!r.stdout.contains("notice"), "{}", r.stdout);
    assert_eq!(
        notice_line(&r),
        "warning: the network has no gateway: its pods get no outside or host access (delete the network and create it again with a gateway, netctl net create --gateway)"
    );
    // What works says nothing.
    let r = s.ok("net inspect contiv-net");
    assert_eq!(r.stderr, "");
    let r = s.ok("global inspect");
    assert_eq!(r.stderr, "");
    assert!(r.stdout.contains("\"fwdMode\": \"bridge\""), "{}", r.stdout);
}
