//! What ovsdb-server and ovs-vswitchd send the agent: the OVSDB JSON-RPC stream (framing,
//! message classification, transact replies, monitor updates and their datum encoding), the
//! OpenFlow messages the programmer reads back, and `ovs-ofctl dump-flows`/`dump-meters` output.

use ovs::decode::{
    FrameDecoder, Incoming, OfHeader, OfIncoming, classify_openflow, parse_transact_reply,
};
use ovs::flows::{parse_dump_flows, parse_dump_meters};
use ovs::{OperationResult, Row, TableUpdates};
use serde_json::Value;

/// The OVSDB stream, fed in pieces (split where the input's own bytes say) and whole: both give
/// the same messages; each message goes through what the client does with it.
pub fn ovsdb(data: &[u8]) -> bool {
    let whole = frames(&[data]);
    let mut pieces = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        // Piece sizes from the data: 1 to 64 bytes, reproducible for a given input.
        let n = (usize::from(rest[0] ^ data[i % data.len()]) % 64 + 1).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        pieces.push(piece);
        rest = tail;
        i += 7;
    }
    let split = frames(&pieces);
    assert_eq!(whole, split, "the same messages whatever the reads");
    let mut decoded = false;
    for msg in whole.0 {
        decoded |= message(msg);
    }
    decoded
}

/// The values a decoder yields from `pieces`, and whether it stopped on an error.
fn frames(pieces: &[&[u8]]) -> (Vec<Value>, bool) {
    let mut decoder = FrameDecoder::default();
    let mut out = Vec::new();
    for piece in pieces {
        decoder.push(piece);
        loop {
            match decoder.next_value() {
                Ok(Some(v)) => out.push(v),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

/// One message, as `Client` handles it: a reply (to a transact, a select, a monitor), an echo
/// request, or an update notification. Decoded rows survive a round trip.
fn message(msg: Value) -> bool {
    let Ok(incoming) = Incoming::classify(msg) else {
        return false;
    };
    let updates = match incoming {
        Incoming::Response { result, .. } => {
            for n_ops in [0, 1, 3, result.as_array().map_or(0, Vec::len)] {
                if let Ok(Ok(results)) = parse_transact_reply(n_ops, &result) {
                    results.iter().flat_map(|r| r.rows()).for_each(check_row);
                }
            }
            if let Some(items) = result.as_array() {
                for item in items {
                    if let Ok(r) = OperationResult::from_json(item) {
                        r.rows().iter().for_each(check_row);
                    }
                }
            }
            TableUpdates::from_json(&result)
        }
        Incoming::Notification { params, .. } | Incoming::Request { params, .. } => {
            match params.get(1) {
                Some(u) => TableUpdates::from_json(u),
                None => return true,
            }
        }
    };
    if let Ok(tu) = updates {
        let _ = tu.is_empty();
        for table in tu.0.values() {
            for update in table.values() {
                update.old.iter().chain(&update.new).for_each(check_row);
            }
        }
    }
    true
}

fn check_row(row: &Row) {
    let again = Row::from_json(&row.to_json()).expect("an encoded row decodes");
    assert_eq!(&again, row, "Row round trip");
    let text = serde_json::to_vec(row).expect("a row encodes");
    let again: Row = serde_json::from_slice(&text).expect("an encoded row parses");
    assert_eq!(&again, row, "Row round trip through text");
    for (_, datum) in row.iter() {
        let _ = (
            datum.as_str(),
            datum.integer(),
            datum.uuids(),
            datum.strings(),
        );
        let _ = datum.to_string_map();
    }
}

/// A stream of OpenFlow messages from the switch, framed and classified as the programmer
/// does. Returns whether every message was framed.
pub fn openflow(data: &[u8]) -> bool {
    let mut rest = data;
    while rest.len() >= 8 {
        let head: [u8; 8] = rest[..8].try_into().expect("8 bytes");
        let Ok(h) = OfHeader::parse(head) else {
            return false;
        };
        let Some(body) = rest.get(8..8 + h.body_len()) else {
            return false;
        };
        match classify_openflow(&h, body) {
            OfIncoming::Error { name, .. } => assert!(!name.is_empty()),
            OfIncoming::EchoRequest { payload, .. } => assert_eq!(payload.len(), h.body_len()),
            OfIncoming::Hello { .. } | OfIncoming::Other { .. } => {}
        }
        rest = &rest[usize::from(h.length)..];
    }
    rest.is_empty()
}

/// `ovs-ofctl dump-flows` and `dump-meters` output.
pub fn ofctl_dump(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let flows = parse_dump_flows(&text);
    let meters = parse_dump_meters(&text);
    if let Ok(flows) = &flows {
        for f in flows {
            assert!(!f.actions.is_empty() || text.contains("actions="));
        }
    }
    flows.is_ok() || meters.is_ok_and(|m| !m.is_empty())
}

/// Messages as ovsdb-server 3.x sends them (captured from a private ovsdb-server).
pub fn ovsdb_seeds() -> Vec<Vec<u8>> {
    [
        r#"{"id":1,"result":["Open_vSwitch"],"error":null}"#,
        r#"{"id":2,"result":[{"uuid":["uuid","6f8f9c2a-3f1d-4b7e-9a55-2c1d0e4b8a11"]},{"count":1},{"rows":[{"_uuid":["uuid","0c3f5a1e-8b2d-4c6f-a1e9-7d4b3c2a1f00"],"name":"vport1","ofport":5,"external_ids":["map",[["owner","contiv"],["ep","c1-eth0"]]],"tag":["set",[]],"trunks":["set",[100,200]],"interfaces":["uuid","aa3f5a1e-8b2d-4c6f-a1e9-7d4b3c2a1f00"],"mtu":1450.5,"admin_state":"up","link_state":true}]}],"error":null}"#,
        r#"{"id":3,"result":[{},{"error":"constraint violation","details":"5000 is not in the valid range 0 to 4095 (inclusive)"},null],"error":null}"#,
        r#"{"id":4,"result":null,"error":"unknown database"}"#,
        r#"{"id":"echo","method":"echo","params":[]}"#,
        r#"{"id":null,"method":"update","params":[7,{"Interface":{"0c3f5a1e-8b2d-4c6f-a1e9-7d4b3c2a1f00":{"new":{"name":"vport1","ofport":["set",[]],"link_state":"up"},"old":{"ofport":-1}}},"Port":{"aa3f5a1e-8b2d-4c6f-a1e9-7d4b3c2a1f00":{"old":{"name":"gone"}}}}]}"#,
        r#"{"id":5,"result":{"Bridge":{"0c3f5a1e-8b2d-4c6f-a1e9-7d4b3c2a1f00":{"new":{"name":"contivVxlanBridge","ports":["set",[["uuid","aa3f5a1e-8b2d-4c6f-a1e9-7d4b3c2a1f00"],["named-uuid","row1"]]]}}}},"error":null}"#,
        "{\"id\":6,\"result\":[{\"count\":0}],\"error\":null}\n{\"id\":null,\"method\":\"locked\",\"params\":[\"l\"]} ",
    ]
    .into_iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub const OVSDB_WORDS: &[&str] = &[
    "id",
    "result",
    "error",
    "method",
    "params",
    "update",
    "echo",
    "locked",
    "uuid",
    "named-uuid",
    "set",
    "map",
    "rows",
    "count",
    "details",
    "new",
    "old",
    "initial",
    "insert",
    "delete",
    "modify",
    "_uuid",
    "6f8f9c2a-3f1d-4b7e-9a55-2c1d0e4b8a11",
    "not-a-uuid",
];

/// Messages as ovs-vswitchd sends them on a bridge's management socket.
pub fn openflow_seeds() -> Vec<Vec<u8>> {
    let msg = |version: u8, msg_type: u8, xid: u32, body: &[u8]| {
        let mut m = vec![version, msg_type];
        m.extend_from_slice(&(8 + body.len() as u16).to_be_bytes());
        m.extend_from_slice(&xid.to_be_bytes());
        m.extend_from_slice(body);
        m
    };
    // An OFPT_ERROR: type OFPET_BAD_INSTRUCTION, code OFPBIC_BAD_TABLE_ID, then the first bytes
    // of the offending message.
    let error = msg(5, 1, 7, &[0, 3, 0, 2, 5, 14, 0, 56, 0, 0, 0, 7]);
    let hello = msg(5, 0, 1, &[0, 1, 0, 8, 0, 0, 0, 0x30]);
    let echo = msg(5, 2, 9, b"ping");
    let barrier = msg(5, 21, 8, &[]);
    let bundle = msg(5, 33, 10, &[0, 0, 0, 3, 0, 5, 0, 3]);
    let port_status = msg(5, 12, 0, &[0u8; 72]);
    vec![
        hello.clone(),
        [hello, echo.clone(), barrier.clone()].concat(),
        [error.clone(), barrier].concat(),
        [echo, error, bundle].concat(),
        port_status,
        msg(4, 0, 1, &[]),
    ]
}

pub fn ofctl_seeds() -> Vec<Vec<u8>> {
    vec![
        b"OFPST_FLOW reply (OF1.4) (xid=0x2):
 cookie=0x5, duration=0.006s, table=0, n_packets=0, n_bytes=0, priority=100,ip,nw_dst=10.0.0.1 actions=output:1
 cookie=0x6, duration=12.5s, table=0, n_packets=17, n_bytes=1666, priority=10,in_port=1 actions=resubmit(,1)
 cookie=0x7, duration=0.006s, table=2, n_packets=0, n_bytes=0, idle_timeout=30, priority=5,tcp,tp_dst=80 actions=learn(table=3,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),NORMAL
 cookie=0x0, duration=0.004s, table=4, n_packets=0, n_bytes=0, hard_timeout=100, send_flow_rem reset_counts importance=3, priority=1 actions=drop
 cookie=0xffffffffffffffff, duration=0.004s, table=253, n_packets=0, n_bytes=0, idle_age=3, priority=0 actions=drop
".to_vec(),
        b"OFPST_METER_CONFIG reply (OF1.4) (xid=0x2):
meter=5 kbps burst bands=
type=drop rate=1000 burst_size=100

meter=12 kbps bands=
type=drop rate=2000
type=drop rate=9000
".to_vec(),
    ]
}

pub const OFCTL_WORDS: &[&str] = &[
    " cookie=",
    "duration=",
    "table=",
    "n_packets=",
    "n_bytes=",
    "idle_timeout=",
    "hard_timeout=",
    "priority=",
    " actions=",
    "actions=",
    "idle_age=",
    "meter=",
    "type=drop",
    "rate=",
    "burst_size=",
    "bands=",
    "0x",
    "1e999s",
    "-1s",
    "NaNs",
    "infs",
    ", ",
];
