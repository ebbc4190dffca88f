//! OfProgrammer (a persistent OpenFlow 1.4 connection) against a real ovs-vswitchd: every flow
//! is installed natively on one bridge and by `ovs-ofctl` on another, and the two bridges' flow
//! tables must read back identical.

mod common;

use common::{Sandbox, bridges, summary};
use ovs::{
    CookieMask, Flow, FlowError, FlowMatch, FlowProgrammer, FlowStats, OfProgrammer,
    OfctlProgrammer,
};

/// One flow of every shape the agent's fabric and policy compiler write, and then some.
fn corpus() -> Vec<(u64, Vec<Flow>)> {
    let mac = "02:02:0a:01:02:02";
    let set_a = vec![
        Flow::new(0, 200, "in_port=32768", "resubmit(,5)"),
        Flow::new(
            0,
            150,
            format!("in_port=32768,dl_src={mac},ip,nw_src=10.1.2.2"),
            "meter:1,set_field:46->ip_dscp,set_field:0x7->metadata,set_field:1->reg0,set_field:7->reg1,set_field:65543->reg4,resubmit(,10)",
        ),
        Flow::new(
            0,
            150,
            format!("in_port=32768,dl_src={mac},arp,arp_spa=10.1.2.2,arp_sha={mac}"),
            "set_field:0x7->metadata,set_field:1->reg0,resubmit(,10)",
        ),
        Flow::new(
            0,
            150,
            format!("in_port=32768,dl_src={mac},udp,nw_src=0.0.0.0,tp_src=68,tp_dst=67"),
            "resubmit(,10)",
        ),
        Flow::new(
            0,
            150,
            format!("in_port=32768,dl_src={mac},ipv6,ipv6_src=fe80::/10"),
            "resubmit(,10)",
        ),
        Flow::new(
            0,
            150,
            format!("in_port=32768,dl_src={mac},ipv6,ipv6_src=::"),
            "resubmit(,10)",
        ),
        Flow::new(
            0,
            150,
            format!("in_port=32768,dl_src={mac},ipv6,ipv6_src=fd00::1:2"),
            "resubmit(,10)",
        ),
        Flow::new(0, 100, "in_port=32768", "drop"),
        Flow::new(
            15,
            100,
            format!("metadata=0x7,dl_dst={mac}"),
            "meter:2,set_field:32768->reg2,set_field:1->reg5,set_field:7->reg3,resubmit(,20)",
        ),
        Flow::new(
            12,
            100,
            "reg0=1,metadata=0x7,arp,arp_op=1,arp_tpa=10.1.2.2",
            format!(
                "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{mac}->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{mac}->arp_sha,set_field:10.1.2.2->arp_spa,IN_PORT"
            ),
        ),
    ];
    let set_b = vec![
        Flow::new(0, 0, "", "drop"),
        Flow::new(
            5,
            100,
            "tun_id=7",
            "set_field:0x7->metadata,set_field:2->reg0,set_field:65543->reg4,resubmit(,10)",
        ),
        Flow::new(10, 100, "in_port=3", "resubmit(,5)"),
        Flow::new(
            15,
            50,
            "reg0=1,metadata=0x7",
            "output:32768,output:32769,set_field:7->tun_id,output:9",
        ),
        Flow::new(15, 50, "reg0=2,metadata=0x7", "output:32768,output:32769"),
        Flow::new(
            15,
            90,
            "reg0=1,metadata=0x7,dl_dst=02:02:0a:01:02:04",
            "set_field:7->tun_id,set_field:9->reg2,set_field:8->reg3,resubmit(,30)",
        ),
        Flow::new(
            5,
            90,
            "tun_id=7,dl_src=02:02:0a:01:02:04",
            "set_field:0x7->metadata,set_field:2->reg0,set_field:8->reg1,set_field:65543->reg4,resubmit(,10)",
        ),
        Flow::new(30, 0, "", "output:NXM_NX_REG2[]"),
        Flow::new(20, 0, "ip", "ct(table=21,zone=NXM_NX_REG4[0..15])"),
        Flow::new(21, 10, "ct_state=+trk+est", "resubmit(,30)"),
        Flow::new(21, 10, "ct_state=+trk+rel", "resubmit(,30)"),
        Flow::new(21, 10, "ct_state=+trk+new", "resubmit(,22)"),
        Flow::new(21, 5, "ct_state=-trk", "drop"),
        Flow::new(
            25,
            1,
            "ip",
            "ct(commit,zone=NXM_NX_REG4[0..15]),resubmit(,30)",
        ),
        Flow::new(22, 11, "tcp,reg5=1,reg3=7", "drop"),
        Flow::new(22, 110, "tcp,tp_dst=8000,reg5=1,reg3=7", "resubmit(,25)"),
        Flow::new(22, 15, "udp,tp_dst=53,reg0=1,reg1=7,reg3=8", "drop"),
        Flow::new(22, 13, "icmp,reg5=1,reg3=7,nw_src=10.1.2.5", "drop"),
        Flow::new(
            22,
            14,
            "ip,nw_proto=47,reg5=1,reg3=7,nw_dst=10.9.0.0/16",
            "drop",
        ),
        Flow::new(22, 16, "tcp,tp_src=1024/0xfc00,reg1=7/0xff", "drop"),
        Flow::new(
            23,
            1,
            "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00",
            "NORMAL",
        ),
        Flow::new(
            23,
            2,
            "reg6=0x10,metadata=0x1/0xf",
            "load:0x5->NXM_NX_REG7[0..7],load:0x1234->NXM_NX_REG6[],goto_table:24",
        ),
        Flow::new(23, 3, "tun_id=0x10/0xf0,arp,arp_tpa=10.0.0.0/8", "drop")
            .idle_timeout(30)
            .hard_timeout(60),
        Flow::new(
            24,
            4,
            "ip,nw_src=10.1.0.0/255.255.0.0,nw_dst=10.1.2.3",
            "LOCAL",
        ),
    ];
    vec![
        (
            0x0200_0000_0000_0001,
            set_a
                .into_iter()
                .map(|f| f.cookie(0x0200_0000_0000_0001))
                .collect(),
        ),
        (
            0x0100_0000_0000_0000,
            set_b
                .into_iter()
                .map(|f| f.cookie(0x0100_0000_0000_0000))
                .collect(),
        ),
    ]
}

#[tokio::test]
async fn native_and_ofctl_install_identical_flow_tables() {
    let sb = Sandbox::start_with_vswitchd();
    bridges(&sb, &["br0", "br1"], &["OpenFlow13", "OpenFlow14"]).await;
    let native = OfProgrammer::new(sb.dir());
    let ofctl = OfctlProgrammer::new(sb.dir());
    let same = |what: &str, a: Vec<FlowStats>, b: Vec<FlowStats>| {
        let (a, b) = (summary(&a), summary(&b));
        assert!(
            !a.is_empty() || what.contains("empty"),
            "{what}: nothing installed"
        );
        assert_eq!(a, b, "{what}: native (left) and ovs-ofctl (right) differ");
    };
    for (br, p) in [("br0", &native as &dyn FlowProgrammer), ("br1", &ofctl)] {
        p.set_meter(br, 1, 1000, 200).await.unwrap();
        p.set_meter(br, 2, 1000, 200).await.unwrap();
        p.replace_flow_sets(br, &corpus()).await.unwrap();
    }
    same(
        "the corpus",
        native.dump_flows("br0", None).await.unwrap(),
        ofctl.dump_flows("br1", None).await.unwrap(),
    );
    assert_eq!(
        native.dump_flows("br0", None).await.unwrap().len(),
        corpus().iter().map(|s| s.1.len()).sum::<usize>()
    );
    assert_eq!(
        sb.ofctl(&["-O", "OpenFlow14", "dump-meters", &sb.mgmt_target("br0")])
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        sb.ofctl(&["-O", "OpenFlow14", "dump-meters", &sb.mgmt_target("br1")])
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
    );

    // Replace one cookie's flows, delete by masked cookie and by table + match, add plainly.
    let c = corpus()[0].0;
    let fewer: Vec<Flow> = corpus()[0].1[..3].to_vec();
    for (br, p) in [("br0", &native as &dyn FlowProgrammer), ("br1", &ofctl)] {
        p.replace_flows_for_cookie(br, c, &fewer).await.unwrap();
        p.del_flows(
            br,
            &[FlowMatch::cookie(CookieMask::masked(
                0x0100_0000_0000_0000,
                0xff00_0000_0000_0000,
            ))
            .table(22)
            .matches("tcp")],
        )
        .await
        .unwrap();
        p.add_flows(br, &[Flow::new(40, 7, "reg3=9", "output:5").cookie(0x77)])
            .await
            .unwrap();
    }
    same(
        "after replace, delete and add",
        native.dump_flows("br0", None).await.unwrap(),
        ofctl.dump_flows("br1", None).await.unwrap(),
    );
    assert!(
        !summary(&native.dump_flows("br0", None).await.unwrap())
            .iter()
            .any(|f| f.1 == 22 && f.3.starts_with("tcp")),
        "the delete by table and match removed nothing"
    );

    // Meters change and go, the flows that use them are kept on change.
    native.set_meter("br0", 1, 5000, 1000).await.unwrap();
    assert!(
        sb.ofctl(&["-O", "OpenFlow14", "dump-meters", &sb.mgmt_target("br0")])
            .contains("rate=5000"),
    );
    native.del_meter("br0", 2).await.unwrap();
    native.del_meter("br0", 2).await.unwrap(); // absent is fine

    // Deleting every cookie leaves both empty.
    for (br, p) in [("br0", &native as &dyn FlowProgrammer), ("br1", &ofctl)] {
        p.del_flows(br, &[FlowMatch::cookie(CookieMask::masked(0, 0))])
            .await
            .unwrap();
    }
    same(
        "empty",
        native.dump_flows("br0", None).await.unwrap(),
        ofctl.dump_flows("br1", None).await.unwrap(),
    );
}

#[tokio::test]
async fn refusals_name_the_error_and_the_flow_and_apply_nothing() {
    let sb = Sandbox::start_with_vswitchd();
    bridges(&sb, &["br0"], &["OpenFlow13", "OpenFlow14"]).await;
    let of = OfProgrammer::new(sb.dir());
    of.add_flows("br0", &[Flow::new(0, 1, "", "drop").cookie(1)])
        .await
        .unwrap();
    let before = summary(&of.dump_flows("br0", None).await.unwrap());

    // Valid syntax the switch refuses (goto_table must go forward): nothing of the batch, nor
    // of the replace (whose delete comes first), may be applied.
    let batch = [
        Flow::new(3, 1, "", "drop").cookie(1),
        Flow::new(5, 1, "", "goto_table:2").cookie(1),
    ];
    let err = of.add_flows("br0", &batch).await.unwrap_err();
    assert!(matches!(err, FlowError::Refused { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("add 2 flows on bridge br0: OpenFlow bundle discard: "),
        "{text}"
    );
    assert!(text.contains("OFPBIC_BAD_TABLE_ID"), "{text}");
    assert!(
        text.contains("flow 'cookie=0x1,table=5,priority=1,actions=goto_table:2'"),
        "{text}"
    );
    let err = of
        .replace_flows_for_cookie("br0", 1, &batch)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("OFPBIC_BAD_TABLE_ID"), "{err}");
    assert_eq!(summary(&of.dump_flows("br0", None).await.unwrap()), before);

    // A flow the encoder does not know is refused before anything is sent, naming the token.
    let err = of
        .add_flows("br0", &[Flow::new(0, 1, "nosuchfield=1", "drop")])
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::InvalidFlow { .. }), "{err:?}");
    assert!(err.to_string().contains("nosuchfield"), "{err}");
    let err = of
        .add_flows("br0", &[Flow::new(0, 1, "", "learn(table=3)")])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown action \"learn(table=3)\""),
        "{err}"
    );

    // A meter the switch refuses (rate 0) says so.
    let err = of.set_meter("br0", 1, 0, 1).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("set meter 1 on bridge br0: OpenFlow meter mod: OFPMMFC_"),
        "{err}"
    );
    // A flow using a missing meter is refused as a whole.
    let err = of
        .add_flows("br0", &[Flow::new(0, 9, "", "meter:77,drop").cookie(1)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("meter:77"), "{err}");
    assert_eq!(summary(&of.dump_flows("br0", None).await.unwrap()), before);
}

#[tokio::test]
async fn survives_a_vswitchd_restart_and_needs_openflow14() {
    let mut sb = Sandbox::start_with_vswitchd();
    bridges(&sb, &["br0"], &["OpenFlow13", "OpenFlow14"]).await;
    let of = OfProgrammer::new(sb.dir());
    of.add_flows("br0", &[Flow::new(0, 1, "", "drop").cookie(1)])
        .await
        .unwrap();
    sb.restart_vswitchd("br0");
    // The old connection is dead; the call reconnects and goes through.
    of.add_flows("br0", &[Flow::new(0, 2, "ip", "drop").cookie(2)])
        .await
        .unwrap();
    assert_eq!(
        summary(&of.dump_flows("br0", None).await.unwrap())
            .iter()
            .map(|f| f.0)
            .collect::<Vec<_>>(),
        [2]
    );

    // Without OpenFlow 1.4 on the bridge there are no bundles: said so, not retried forever.
    bridges(&sb, &["br1"], &["OpenFlow13"]).await;
    let err = of
        .add_flows("br1", &[Flow::new(0, 1, "", "drop")])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("version negotiation failed"),
        "{err}"
    );
    let err = of
        .add_flows("nobr", &[Flow::new(0, 1, "", "drop")])
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("nobr.mgmt"), "{err}");
}
