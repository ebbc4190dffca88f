//! OfctlProgrammer against a real ovs-vswitchd with a netdev bridge.

mod common;

use common::{FlowRow, Sandbox, bridges, summary};
use ovs::{CookieMask, Flow, FlowError, FlowMatch, FlowProgrammer, MeterConfig, OfctlProgrammer};
use std::time::Duration;

async fn bridge(sb: &Sandbox, protocols: &[&str]) -> OfctlProgrammer {
    bridges(sb, &["br0"], protocols).await;
    OfctlProgrammer::new(sb.dir())
}

fn row(cookie: u64, table: u8, priority: u16, m: &str, a: &str) -> FlowRow {
    (cookie, table, priority, m.to_string(), a.to_string(), 0, 0)
}

#[tokio::test]
async fn add_dump_replace_and_delete_by_cookie() {
    let sb = Sandbox::start_with_vswitchd();
    let of = bridge(&sb, &["OpenFlow13", "OpenFlow14"]).await;

    let endpoint = [
        Flow::new(0, 100, "ip,nw_dst=10.1.0.5", "output:1").cookie(0x10),
        Flow::new(0, 100, "arp,arp_tpa=10.1.0.5", "output:1").cookie(0x10),
    ];
    let policy = [Flow::new(1, 0, "", "drop").cookie(0x20)];
    of.add_flows("br0", &endpoint).await.unwrap();
    of.add_flows("br0", &policy).await.unwrap();

    let all = of.dump_flows("br0", None).await.unwrap();
    assert_eq!(
        summary(&all),
        [
            row(0x10, 0, 100, "arp,arp_tpa=10.1.0.5", "output:1"),
            row(0x10, 0, 100, "ip,nw_dst=10.1.0.5", "output:1"),
            row(0x20, 1, 0, "", "drop"),
        ]
    );
    // The same dump as ovs-ofctl prints it, for the counters.
    assert!(all.iter().all(|f| f.n_packets == 0 && f.n_bytes == 0));

    let only = of
        .dump_flows("br0", Some(CookieMask::exact(0x20)))
        .await
        .unwrap();
    assert_eq!(summary(&only), [row(0x20, 1, 0, "", "drop")]);

    // Replace the endpoint's flows in one step; the policy flow is untouched.
    let moved = [Flow::new(0, 100, "ip,nw_dst=10.1.0.5", "output:2").cookie(0x10)];
    of.replace_flows_for_cookie("br0", 0x10, &moved)
        .await
        .unwrap();
    assert_eq!(
        summary(&of.dump_flows("br0", None).await.unwrap()),
        [
            row(0x10, 0, 100, "ip,nw_dst=10.1.0.5", "output:2"),
            row(0x20, 1, 0, "", "drop"),
        ]
    );

    // Delete by masked cookie: 0x10 and 0x20 share nothing in the high nibble, 0x1x goes.
    of.del_flows("br0", &[FlowMatch::cookie(CookieMask::masked(0x10, 0xf0))])
        .await
        .unwrap();
    assert_eq!(
        summary(&of.dump_flows("br0", None).await.unwrap()),
        [row(0x20, 1, 0, "", "drop")]
    );

    // Several cookies in one bundle: 0x30 appears, 0x20 is replaced, 0x40 (absent) is a no-op.
    of.replace_flow_sets(
        "br0",
        &[
            (0x30, vec![Flow::new(2, 5, "ip", "drop").cookie(0x30)]),
            (0x20, vec![Flow::new(1, 1, "arp", "drop").cookie(0x20)]),
            (0x40, vec![]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        summary(&of.dump_flows("br0", None).await.unwrap()),
        [
            row(0x20, 1, 1, "arp", "drop"),
            row(0x30, 2, 5, "ip", "drop")
        ]
    );
    of.replace_flow_sets("br0", &[(0x30, vec![])])
        .await
        .unwrap();

    // Replacing with nothing deletes; empty calls are no-ops.
    of.replace_flows_for_cookie("br0", 0x20, &[]).await.unwrap();
    of.add_flows("br0", &[]).await.unwrap();
    of.del_flows("br0", &[]).await.unwrap();
    assert!(of.dump_flows("br0", None).await.unwrap().is_empty());
}

#[tokio::test]
async fn meters_are_created_changed_and_deleted_under_their_flows() {
    let sb = Sandbox::start_with_vswitchd();
    let of = bridge(&sb, &["OpenFlow13", "OpenFlow14"]).await;
    of.set_meter("br0", 7, 10_000, 1_000).await.unwrap();
    of.add_flows(
        "br0",
        &[Flow::new(0, 5, "ip", "meter:7,resubmit(,1)").cookie(0x9)],
    )
    .await
    .unwrap();
    // A change keeps the flow that uses the meter.
    of.set_meter("br0", 7, 20_000, 2_000).await.unwrap();
    let flows = of.dump_flows("br0", None).await.unwrap();
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert!(flows[0].actions.contains("meter:7"), "{:?}", flows[0]);
    of.set_meter("br0", 8, 500, 0).await.unwrap();
    let meters = of.dump_meters("br0").await.unwrap();
    assert_eq!(
        meters,
        [
            MeterConfig {
                id: 7,
                rate: 20_000,
                burst: 2_000
            },
            // A burst of 0 is set as the smallest one.
            MeterConfig {
                id: 8,
                rate: 500,
                burst: 1
            }
        ]
    );
    of.del_meter("br0", 8).await.unwrap();
    of.del_flows("br0", &[FlowMatch::cookie(CookieMask::exact(0x9))])
        .await
        .unwrap();
    of.del_meter("br0", 7).await.unwrap();
    assert!(of.dump_meters("br0").await.unwrap().is_empty());
    // Flushing conntrack entries by a partial tuple (none here), and a tuple the switch refuses.
    of.flush_conntrack("br0", 5, "ct_nw_src=10.1.2.3")
        .await
        .unwrap();
    assert!(
        of.flush_conntrack("br0", 5, "ct_nw_src=nonsense")
            .await
            .is_err()
    );
    // A flow naming a meter that is gone is refused.
    assert!(
        of.add_flows(
            "br0",
            &[Flow::new(0, 5, "ip", "meter:7,resubmit(,1)").cookie(0x9)]
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn a_bad_flow_rejects_the_whole_batch() {
    let sb = Sandbox::start_with_vswitchd();
    let of = bridge(&sb, &["OpenFlow13", "OpenFlow14"]).await;
    of.add_flows("br0", &[Flow::new(0, 1, "", "drop").cookie(1)])
        .await
        .unwrap();

    // The second flow is valid syntax but the switch refuses it (goto_table must go forward):
    // nothing of the batch, nor of the replace, may be applied.
    let batch = [
        Flow::new(3, 1, "", "drop").cookie(1),
        Flow::new(5, 1, "", "goto_table:2").cookie(1),
    ];
    let err = of.add_flows("br0", &batch).await.unwrap_err();
    assert!(matches!(err, FlowError::Command { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "add 2 flows on bridge br0: ovs-ofctl -O OpenFlow14 --no-names --bundle add-flows unix:"
        ),
        "{text}"
    );
    assert!(text.contains("OFPBIC_BAD_TABLE_ID"), "{text}");
    let err = of
        .replace_flows_for_cookie("br0", 1, &batch)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("replace flows with cookie 0x1 on bridge br0"),
        "{err}"
    );
    assert_eq!(
        summary(&of.dump_flows("br0", None).await.unwrap()),
        [row(1, 0, 1, "", "drop")]
    );

    // Syntax errors name the line.
    let err = of
        .add_flows("br0", &[Flow::new(0, 1, "nosuchfield=1", "drop")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nosuchfield"), "{err}");

    // Flows that would corrupt the batch or the replace never reach ovs-ofctl.
    let err = of
        .replace_flows_for_cookie("br0", 2, &[Flow::new(0, 1, "", "drop").cookie(3)])
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::InvalidFlow { .. }), "{err:?}");
}

#[tokio::test]
async fn bundles_need_openflow14_and_a_bridge() {
    let sb = Sandbox::start_with_vswitchd();
    let of = bridge(&sb, &["OpenFlow13"]).await;
    let err = of
        .add_flows("br0", &[Flow::new(0, 1, "", "drop")])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("version negotiation failed"),
        "{err}"
    );

    let err = of
        .wait_for_bridge("nobr", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::NotReady { .. }), "{err:?}");
    assert!(
        err.to_string().contains("nobr.mgmt did not appear"),
        "{err}"
    );
    let err = of.dump_flows("nobr", None).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("dump flows on bridge nobr:"), "{text}");
    assert!(text.contains("nobr.mgmt"), "{text}");
}

#[tokio::test]
async fn dump_parses_counters_of_real_traffic() {
    let sb = Sandbox::start_with_vswitchd();
    let of = bridge(&sb, &["OpenFlow13", "OpenFlow14"]).await;
    of.add_flows("br0", &[Flow::new(0, 10, "", "drop").cookie(7)])
        .await
        .unwrap();
    // Inject packets from the bridge's local port; they hit the drop flow and count.
    let packet = "ffffffffffff000000000001080045000014000000004001f96b0a0000010a000002";
    for _ in 0..3 {
        sb.ofctl(&[
            "-O",
            "OpenFlow14",
            "packet-out",
            &sb.mgmt_target("br0"),
            "LOCAL",
            "resubmit(,0)",
            packet,
        ]);
    }
    let flows = of
        .dump_flows("br0", Some(CookieMask::exact(7)))
        .await
        .unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].n_packets, 3);
    assert_eq!(flows[0].n_bytes, 3 * (packet.len() as u64 / 2));
}
