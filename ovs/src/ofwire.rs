//! OpenFlow 1.4 wire encoding of flows written in `ovs-ofctl` syntax, for [`crate::OfProgrammer`].
//!
//! The parser knows exactly the subset of ovs-fields(7)/ovs-actions(7) that our flows use;
//! anything else is an error naming the token, never a guess. Matches become OXM TLVs (NXM
//! ones for Open vSwitch's own fields: registers, `ct_state`), emitted prerequisites first,
//! as ovs-vswitchd checks prerequisites field by field. Actions are OpenFlow actions where
//! OpenFlow 1.4 has them, Nicira extensions (`resubmit`, `move`, `load`, `ct`, output to a
//! register) where not. Decoding what the switch sent back is limited to errors: dumps go
//! through `ovs-ofctl` (not on any hot path).

use std::net::{Ipv4Addr, Ipv6Addr};

pub const VERSION: u8 = 0x05;

// Message types (OpenFlow 1.4).
pub const OFPT_HELLO: u8 = 0;
pub const OFPT_ERROR: u8 = 1;
pub const OFPT_ECHO_REQUEST: u8 = 2;
pub const OFPT_ECHO_REPLY: u8 = 3;
pub const OFPT_FLOW_MOD: u8 = 14;
pub const OFPT_BARRIER_REQUEST: u8 = 20;
pub const OFPT_BARRIER_REPLY: u8 = 21;
pub const OFPT_METER_MOD: u8 = 29;
pub const OFPT_BUNDLE_CONTROL: u8 = 33;
pub const OFPT_BUNDLE_ADD_MESSAGE: u8 = 34;

pub const OFPBCT_OPEN_REQUEST: u16 = 0;
pub const OFPBCT_COMMIT_REQUEST: u16 = 4;
pub const OFPBCT_DISCARD_REQUEST: u16 = 6;
/// Atomic and ordered, as `ovs-ofctl --bundle` asks.
const BUNDLE_FLAGS: u16 = 0x3;

const OFPFC_ADD: u8 = 0;
const OFPFC_DELETE: u8 = 3;
const OFPTT_ALL: u8 = 0xff;
const OFP_NO_BUFFER: u32 = 0xffff_ffff;
const OFPP_ANY: u32 = 0xffff_ffff;
const OFPG_ANY: u32 = 0xffff_ffff;

pub const OFPMC_ADD: u16 = 0;
pub const OFPMC_MODIFY: u16 = 1;
pub const OFPMC_DELETE: u16 = 2;

const NX_VENDOR: u32 = 0x0000_2320;
const NXAST_REG_MOVE: u16 = 6;
const NXAST_REG_LOAD: u16 = 7;
const NXAST_RESUBMIT_TABLE: u16 = 14;
const NXAST_OUTPUT_REG: u16 = 15;
const NXAST_CT: u16 = 35;

/// A message header.
pub fn header(msg_type: u8, xid: u32, body_len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + body_len);
    m.push(VERSION);
    m.push(msg_type);
    m.extend_from_slice(&((8 + body_len) as u16).to_be_bytes());
    m.extend_from_slice(&xid.to_be_bytes());
    m
}

/// Fixes the length field of a message built with a guessed body length.
fn finish(mut m: Vec<u8>) -> Vec<u8> {
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

pub fn simple(msg_type: u8, xid: u32) -> Vec<u8> {
    header(msg_type, xid, 0)
}

pub fn bundle_control(xid: u32, bundle_id: u32, kind: u16) -> Vec<u8> {
    let mut m = header(OFPT_BUNDLE_CONTROL, xid, 8);
    m.extend_from_slice(&bundle_id.to_be_bytes());
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&BUNDLE_FLAGS.to_be_bytes());
    m
}

/// Wraps `inner` (a complete message with the same xid) into a bundle.
pub fn bundle_add(xid: u32, bundle_id: u32, inner: &[u8]) -> Vec<u8> {
    let mut m = header(OFPT_BUNDLE_ADD_MESSAGE, xid, 8 + inner.len());
    m.extend_from_slice(&bundle_id.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&BUNDLE_FLAGS.to_be_bytes());
    m.extend_from_slice(inner);
    m
}

/// OFPT_METER_MOD with one drop band, rates in kbit/s and a burst (ovs-ofctl's
/// `meter=N,kbps,burst,band=type=drop,rate=R,burst_size=B`).
pub fn meter_mod(xid: u32, command: u16, id: u32, kbps: u32, burst_kbits: u32) -> Vec<u8> {
    let mut m = header(OFPT_METER_MOD, xid, 8);
    m.extend_from_slice(&command.to_be_bytes());
    // OFPMF_KBPS | OFPMF_BURST
    let flags: u16 = if command == OFPMC_DELETE {
        0
    } else {
        0x1 | 0x4
    };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&id.to_be_bytes());
    if command != OFPMC_DELETE {
        m.extend_from_slice(&1u16.to_be_bytes()); // OFPMBT_DROP
        m.extend_from_slice(&16u16.to_be_bytes());
        m.extend_from_slice(&kbps.to_be_bytes());
        m.extend_from_slice(&burst_kbits.to_be_bytes());
        m.extend_from_slice(&[0; 4]);
    }
    finish(m)
}

// ---- fields ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Mac,
    Ipv4,
    Ipv6,
    CtState,
}

/// A field: its names, its TLV header (class, field, bytes) and how to read its values.
#[derive(Debug)]
struct Field {
    names: &'static [&'static str],
    class: u16,
    field: u8,
    len: u8,
    kind: Kind,
    maskable: bool,
}

impl Field {
    fn header(&self, masked: bool) -> u32 {
        let len = if masked { self.len * 2 } else { self.len };
        (u32::from(self.class) << 16)
            | (u32::from(self.field) << 9)
            | (u32::from(masked) << 8)
            | u32::from(len)
    }
}

const fn f(
    names: &'static [&'static str],
    class: u16,
    field: u8,
    len: u8,
    kind: Kind,
    maskable: bool,
) -> Field {
    Field {
        names,
        class,
        field,
        len,
        kind,
        maskable,
    }
}

const OXM: u16 = 0x8000;
const NXM0: u16 = 0x0000;
const NXM1: u16 = 0x0001;

/// Match fields in the order they are emitted: every prerequisite before what needs it.
static FIELDS: &[Field] = &[
    f(&["in_port"], OXM, 0, 4, Kind::Int, false),
    f(&["tun_id", "tunnel_id"], OXM, 38, 8, Kind::Int, true),
    f(&["metadata"], OXM, 2, 8, Kind::Int, true),
    f(&["reg0"], NXM1, 0, 4, Kind::Int, true),
    f(&["reg1"], NXM1, 1, 4, Kind::Int, true),
    f(&["reg2"], NXM1, 2, 4, Kind::Int, true),
    f(&["reg3"], NXM1, 3, 4, Kind::Int, true),
    f(&["reg4"], NXM1, 4, 4, Kind::Int, true),
    f(&["reg5"], NXM1, 5, 4, Kind::Int, true),
    f(&["reg6"], NXM1, 6, 4, Kind::Int, true),
    f(&["reg7"], NXM1, 7, 4, Kind::Int, true),
    f(&["ct_state"], NXM1, 105, 4, Kind::CtState, true),
    f(&["dl_dst", "eth_dst"], OXM, 3, 6, Kind::Mac, true),
    f(&["dl_src", "eth_src"], OXM, 4, 6, Kind::Mac, true),
    f(&["dl_type", "eth_type"], OXM, 5, 2, Kind::Int, false),
    f(&["ip_dscp"], OXM, 8, 1, Kind::Int, false),
    f(&["nw_proto", "ip_proto"], OXM, 10, 1, Kind::Int, false),
    f(&["nw_src", "ip_src"], OXM, 11, 4, Kind::Ipv4, true),
    f(&["nw_dst", "ip_dst"], OXM, 12, 4, Kind::Ipv4, true),
    f(&["tcp_src"], OXM, 13, 2, Kind::Int, true),
    f(&["tcp_dst"], OXM, 14, 2, Kind::Int, true),
    f(&["udp_src"], OXM, 15, 2, Kind::Int, true),
    f(&["udp_dst"], OXM, 16, 2, Kind::Int, true),
    f(&["sctp_src"], OXM, 17, 2, Kind::Int, true),
    f(&["sctp_dst"], OXM, 18, 2, Kind::Int, true),
    f(&["icmp_type"], OXM, 19, 1, Kind::Int, false),
    f(&["icmp_code"], OXM, 20, 1, Kind::Int, false),
    f(&["arp_op"], OXM, 21, 2, Kind::Int, false),
    f(&["arp_spa"], OXM, 22, 4, Kind::Ipv4, true),
    f(&["arp_tpa"], OXM, 23, 4, Kind::Ipv4, true),
    f(&["arp_sha"], OXM, 24, 6, Kind::Mac, true),
    f(&["arp_tha"], OXM, 25, 6, Kind::Mac, true),
    f(&["ipv6_src"], OXM, 26, 16, Kind::Ipv6, true),
    f(&["ipv6_dst"], OXM, 27, 16, Kind::Ipv6, true),
    f(&["icmpv6_type"], OXM, 29, 1, Kind::Int, false),
    f(&["icmpv6_code"], OXM, 30, 1, Kind::Int, false),
    f(&["nd_target"], OXM, 31, 16, Kind::Ipv6, false),
    f(&["nd_sll"], OXM, 32, 6, Kind::Mac, false),
    f(&["nd_tll"], OXM, 33, 6, Kind::Mac, false),
];

/// The NXM names of fields, as `move`, `load` and `output` write them.
static NXM_FIELDS: &[Field] = &[
    f(&["NXM_OF_IN_PORT"], NXM0, 0, 2, Kind::Int, false),
    f(&["NXM_OF_ETH_DST"], NXM0, 1, 6, Kind::Mac, true),
    f(&["NXM_OF_ETH_SRC"], NXM0, 2, 6, Kind::Mac, true),
    f(&["NXM_OF_ETH_TYPE"], NXM0, 3, 2, Kind::Int, false),
    f(&["NXM_OF_IP_PROTO"], NXM0, 6, 1, Kind::Int, false),
    f(&["NXM_OF_IP_SRC"], NXM0, 7, 4, Kind::Ipv4, true),
    f(&["NXM_OF_IP_DST"], NXM0, 8, 4, Kind::Ipv4, true),
    f(&["NXM_OF_ARP_OP"], NXM0, 15, 2, Kind::Int, false),
    f(&["NXM_OF_ARP_SPA"], NXM0, 16, 4, Kind::Ipv4, true),
    f(&["NXM_OF_ARP_TPA"], NXM0, 17, 4, Kind::Ipv4, true),
    f(&["NXM_NX_REG0"], NXM1, 0, 4, Kind::Int, true),
    f(&["NXM_NX_REG1"], NXM1, 1, 4, Kind::Int, true),
    f(&["NXM_NX_REG2"], NXM1, 2, 4, Kind::Int, true),
    f(&["NXM_NX_REG3"], NXM1, 3, 4, Kind::Int, true),
    f(&["NXM_NX_REG4"], NXM1, 4, 4, Kind::Int, true),
    f(&["NXM_NX_REG5"], NXM1, 5, 4, Kind::Int, true),
    f(&["NXM_NX_REG6"], NXM1, 6, 4, Kind::Int, true),
    f(&["NXM_NX_REG7"], NXM1, 7, 4, Kind::Int, true),
    f(&["NXM_NX_TUN_ID"], NXM1, 16, 8, Kind::Int, true),
    f(&["NXM_NX_ARP_SHA"], NXM1, 17, 6, Kind::Mac, true),
    f(&["NXM_NX_ARP_THA"], NXM1, 18, 6, Kind::Mac, true),
    f(&["NXM_NX_IPV6_SRC"], NXM1, 19, 16, Kind::Ipv6, true),
    f(&["NXM_NX_IPV6_DST"], NXM1, 20, 16, Kind::Ipv6, true),
    f(&["OXM_OF_METADATA"], OXM, 2, 8, Kind::Int, true),
];

fn field(name: &str) -> Option<(usize, &'static Field)> {
    FIELDS
        .iter()
        .enumerate()
        .find(|(_, f)| f.names.contains(&name))
}

/// A field named the ovs-ofctl way, in a match or an action (`reg2`, `NXM_NX_REG2`, `eth_src`).
fn any_field(name: &str) -> Option<&'static Field> {
    field(name)
        .map(|(_, f)| f)
        .or_else(|| NXM_FIELDS.iter().find(|f| f.names.contains(&name)))
}

fn parse_int(text: &str) -> Result<u128, String> {
    let r = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u128::from_str_radix(hex, 16),
        None => text.parse(),
    };
    r.map_err(|_| format!("{text:?} is not a number"))
}

fn be_bytes(v: u128, len: usize) -> Result<Vec<u8>, String> {
    if len < 16 && v >> (len * 8) != 0 {
        return Err(format!("{v:#x} does not fit in {len} bytes"));
    }
    Ok(v.to_be_bytes()[16 - len..].to_vec())
}

fn parse_mac(text: &str) -> Result<Vec<u8>, String> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{text:?} is not a MAC address"));
    }
    parts
        .iter()
        .map(|p| u8::from_str_radix(p, 16).map_err(|_| format!("{text:?} is not a MAC address")))
        .collect()
}

fn prefix_mask(bits: u32, len: usize) -> Result<Vec<u8>, String> {
    if bits as usize > len * 8 {
        return Err(format!("prefix /{bits} is too long"));
    }
    let full: u128 = if bits == 0 {
        0
    } else {
        (!0u128) << (128 - bits)
    };
    Ok(full.to_be_bytes()[..len].to_vec())
}

/// A value and its mask (None: exact), as bytes of the field's width.
fn parse_value(fd: &Field, text: &str) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let len = fd.len as usize;
    if fd.kind == Kind::CtState {
        return parse_ct_state(text);
    }
    let (v, m) = match text.split_once('/') {
        Some((v, m)) if fd.maskable => (v, Some(m)),
        Some(_) => return Err(format!("{} takes no mask", fd.names[0])),
        None => (text, None),
    };
    let value = match fd.kind {
        Kind::Int => be_bytes(parse_int(v)?, len)?,
        Kind::Mac => parse_mac(v)?,
        Kind::Ipv4 => v
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("{v:?} is not an IPv4 address"))?
            .octets()
            .to_vec(),
        Kind::Ipv6 => v
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{v:?} is not an IPv6 address"))?
            .octets()
            .to_vec(),
        Kind::CtState => unreachable!(),
    };
    let mask = match m {
        None => None,
        Some(m) => Some(match fd.kind {
            Kind::Int => be_bytes(parse_int(m)?, len)?,
            Kind::Mac => parse_mac(m)?,
            Kind::Ipv4 | Kind::Ipv6 => match m.parse::<u32>() {
                Ok(bits) => prefix_mask(bits, len)?,
                Err(_) if fd.kind == Kind::Ipv4 => m
                    .parse::<Ipv4Addr>()
                    .map_err(|_| format!("{m:?} is not a mask"))?
                    .octets()
                    .to_vec(),
                Err(_) => m
                    .parse::<Ipv6Addr>()
                    .map_err(|_| format!("{m:?} is not a mask"))?
                    .octets()
                    .to_vec(),
            },
            Kind::CtState => unreachable!(),
        }),
    };
    Ok((value, mask))
}

fn parse_ct_state(text: &str) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    if !text.starts_with(['+', '-']) {
        let (v, m) = text.split_once('/').unwrap_or((text, "0xffffffff"));
        return Ok((
            be_bytes(parse_int(v)?, 4)?,
            Some(be_bytes(parse_int(m)?, 4)?),
        ));
    }
    let (mut value, mut mask) = (0u32, 0u32);
    let mut rest = text;
    while !rest.is_empty() {
        let plus = rest.starts_with('+');
        let body = &rest[1..];
        let end = body.find(['+', '-']).unwrap_or(body.len());
        let bit = match &body[..end] {
            "new" => 0x01,
            "est" => 0x02,
            "rel" => 0x04,
            "rpl" => 0x08,
            "inv" => 0x10,
            "trk" => 0x20,
            "snat" => 0x40,
            "dnat" => 0x80,
            other => return Err(format!("unknown ct_state flag {other:?}")),
        };
        mask |= bit;
        if plus {
            value |= bit;
        }
        rest = &body[end..];
    }
    Ok((
        value.to_be_bytes().to_vec(),
        Some(mask.to_be_bytes().to_vec()),
    ))
}

/// A parsed match: TLVs by their field's position in [`FIELDS`].
#[derive(Debug, Default)]
struct Match {
    fields: std::collections::BTreeMap<usize, (Vec<u8>, Option<Vec<u8>>)>,
}

impl Match {
    fn set(&mut self, name: &str, value: Vec<u8>, mask: Option<Vec<u8>>) -> Result<(), String> {
        let (i, _) = field(name).ok_or_else(|| format!("unknown field {name:?}"))?;
        if let Some((old, _)) = self.fields.get(&i)
            && *old != value
        {
            return Err(format!("{name} given twice"));
        }
        self.fields.insert(i, (value, mask));
        Ok(())
    }

    fn proto(&self) -> Option<u8> {
        self.fields
            .get(&field("nw_proto").map(|x| x.0).unwrap_or_default())
            .map(|(v, _)| v[0])
    }

    /// `ofp_match` (type OXM), padded to 8 bytes.
    fn encode(&self) -> Vec<u8> {
        let mut oxm = Vec::new();
        for (i, (value, mask)) in &self.fields {
            let fd = &FIELDS[*i];
            // Bits outside the mask are zero (the switch refuses them); a full mask is an
            // exact match; an empty one matches everything, so the field is left out.
            let mask = mask.as_ref().filter(|m| m.iter().any(|b| *b != 0xff));
            if mask.is_some_and(|m| m.iter().all(|b| *b == 0)) {
                continue;
            }
            oxm.extend_from_slice(&fd.header(mask.is_some()).to_be_bytes());
            match mask {
                Some(m) => {
                    oxm.extend(value.iter().zip(m).map(|(v, m)| v & m));
                    oxm.extend_from_slice(m);
                }
                None => oxm.extend_from_slice(value),
            }
        }
        let mut m = Vec::with_capacity(oxm.len() + 12);
        m.extend_from_slice(&1u16.to_be_bytes()); // OFPMT_OXM
        m.extend_from_slice(&((4 + oxm.len()) as u16).to_be_bytes());
        m.extend_from_slice(&oxm);
        pad8(&mut m);
        m
    }
}

fn pad8(m: &mut Vec<u8>) {
    while !m.len().is_multiple_of(8) {
        m.push(0);
    }
}

/// Parses a match in ovs-ofctl syntax (`in_port=5,dl_src=..,ip,nw_src=10.0.0.0/8`).
fn parse_match(text: &str) -> Result<Match, String> {
    let mut m = Match::default();
    let mut ports = Vec::new();
    for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (eth, proto): (u16, Option<u8>) = match token {
            "ip" => (0x0800, None),
            "arp" => (0x0806, None),
            "ipv6" => (0x86dd, None),
            "tcp" => (0x0800, Some(6)),
            "udp" => (0x0800, Some(17)),
            "icmp" => (0x0800, Some(1)),
            "sctp" => (0x0800, Some(132)),
            "tcp6" => (0x86dd, Some(6)),
            "udp6" => (0x86dd, Some(17)),
            "icmp6" => (0x86dd, Some(58)),
            "sctp6" => (0x86dd, Some(132)),
            _ => (0, None),
        };
        if eth != 0 {
            m.set("dl_type", eth.to_be_bytes().to_vec(), None)?;
            if let Some(p) = proto {
                m.set("nw_proto", vec![p], None)?;
            }
            continue;
        }
        let (name, value) = token
            .split_once('=')
            .ok_or_else(|| format!("unknown match token {token:?}"))?;
        match name {
            // Which field these are depends on the protocol, possibly given later.
            "tp_src" | "tp_dst" => ports.push((name, value)),
            _ => {
                let (_, fd) = field(name).ok_or_else(|| format!("unknown match field {name:?}"))?;
                let (v, mask) = parse_value(fd, value).map_err(|e| format!("{token}: {e}"))?;
                m.set(name, v, mask)?;
            }
        }
    }
    for (name, value) in ports {
        let real = match (m.proto(), name) {
            (Some(6), "tp_src") => "tcp_src",
            (Some(6), _) => "tcp_dst",
            (Some(17), "tp_src") => "udp_src",
            (Some(17), _) => "udp_dst",
            (Some(132), "tp_src") => "sctp_src",
            (Some(132), _) => "sctp_dst",
            _ => return Err(format!("{name} needs tcp, udp or sctp")),
        };
        let (_, fd) = field(real).expect("port fields are in the table");
        let (v, mask) = parse_value(fd, value).map_err(|e| format!("{name}={value}: {e}"))?;
        m.set(real, v, mask)?;
    }
    Ok(m)
}

/// A subfield `NAME[]`, `NAME[a..b]` or `NAME[a]`: the field and (offset, bits).
fn parse_subfield(text: &str) -> Result<(&'static Field, u16, u16), String> {
    let (name, range) = text
        .strip_suffix(']')
        .and_then(|t| t.split_once('['))
        .ok_or_else(|| format!("{text:?} is not a subfield (NAME[] or NAME[a..b])"))?;
    let fd = any_field(name).ok_or_else(|| format!("unknown field {name:?}"))?;
    let width = u16::from(fd.len) * 8;
    let (ofs, bits) = if range.is_empty() {
        (0, width)
    } else {
        let (a, b) = range.split_once("..").unwrap_or((range, range));
        let a: u16 = a.parse().map_err(|_| format!("bad range in {text:?}"))?;
        let b: u16 = b.parse().map_err(|_| format!("bad range in {text:?}"))?;
        if a > b || b >= width {
            return Err(format!("bad range in {text:?}"));
        }
        (a, b - a + 1)
    };
    Ok((fd, ofs, bits))
}

fn ofs_nbits(ofs: u16, bits: u16) -> u16 {
    (ofs << 6) | (bits - 1)
}

fn nx_action(subtype: u16, body: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(16 + body.len());
    a.extend_from_slice(&0xffffu16.to_be_bytes());
    a.extend_from_slice(&0u16.to_be_bytes());
    a.extend_from_slice(&NX_VENDOR.to_be_bytes());
    a.extend_from_slice(&subtype.to_be_bytes());
    a.extend_from_slice(body);
    pad8(&mut a);
    let len = a.len() as u16;
    a[2..4].copy_from_slice(&len.to_be_bytes());
    a
}

fn output(port: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(16);
    a.extend_from_slice(&0u16.to_be_bytes()); // OFPAT_OUTPUT
    a.extend_from_slice(&16u16.to_be_bytes());
    a.extend_from_slice(&port.to_be_bytes());
    a.extend_from_slice(&0u16.to_be_bytes()); // max_len: only for the controller
    a.extend_from_slice(&[0; 6]);
    a
}

fn reserved_port(name: &str) -> Option<u32> {
    Some(match name {
        "IN_PORT" | "in_port" => 0xffff_fff8,
        "NORMAL" | "normal" => 0xffff_fffa,
        "FLOOD" | "flood" => 0xffff_fffb,
        "ALL" | "all" => 0xffff_fffc,
        "LOCAL" | "local" => 0xffff_fffe,
        _ => return None,
    })
}

/// The instructions of a flow from its actions in ovs-ofctl syntax.
fn parse_actions(text: &str) -> Result<Vec<u8>, String> {
    let mut meter = None;
    let mut goto = None;
    let mut actions = Vec::new();
    let tokens = split_top(text)?;
    if tokens == ["drop"] {
        return Ok(Vec::new());
    }
    for token in tokens {
        if goto.is_some() {
            return Err(format!("{token:?} after goto_table"));
        }
        let (word, arg) = match token.find([':', '(']) {
            Some(i) => (&token[..i], &token[i..]),
            None => (token, ""),
        };
        match (word, arg) {
            (_, "") if reserved_port(word).is_some() => {
                actions.extend(output(reserved_port(word).unwrap_or_default()))
            }
            ("output", a) if a.starts_with(':') => {
                let target = &a[1..];
                if let Some(p) = reserved_port(target) {
                    actions.extend(output(p));
                } else if let Ok(n) = parse_int(target) {
                    let n = u32::try_from(n)
                        .ok()
                        .filter(|n| *n < 0xff00)
                        .ok_or_else(|| format!("{token:?}: port out of range"))?;
                    actions.extend(output(n));
                } else {
                    let (fd, ofs, bits) =
                        parse_subfield(target).map_err(|e| format!("{token:?}: {e}"))?;
                    let mut body = Vec::new();
                    body.extend_from_slice(&ofs_nbits(ofs, bits).to_be_bytes());
                    body.extend_from_slice(&fd.header(false).to_be_bytes());
                    body.extend_from_slice(&0xffffu16.to_be_bytes()); // max_len, as ovs-ofctl
                    body.extend_from_slice(&[0; 6]);
                    actions.extend(nx_action(NXAST_OUTPUT_REG, &body));
                }
            }
            ("resubmit", a) => {
                let table = a
                    .strip_prefix("(,")
                    .and_then(|t| t.strip_suffix(')'))
                    .ok_or_else(|| format!("{token:?}: only resubmit(,TABLE) is supported"))?;
                let table: u8 = table.parse().map_err(|_| format!("{token:?}: bad table"))?;
                let mut body = Vec::new();
                body.extend_from_slice(&0xfff8u16.to_be_bytes()); // in_port: keep the packet's
                body.push(table);
                body.extend_from_slice(&[0; 3]);
                actions.extend(nx_action(NXAST_RESUBMIT_TABLE, &body));
            }
            ("goto_table", a) if a.starts_with(':') => {
                goto = Some(
                    a[1..]
                        .parse::<u8>()
                        .map_err(|_| format!("{token:?}: bad table"))?,
                );
            }
            ("meter", a) if a.starts_with(':') => {
                if !actions.is_empty() || meter.is_some() {
                    return Err(format!("{token:?}: meter must come first, once"));
                }
                meter = Some(
                    a[1..]
                        .parse::<u32>()
                        .map_err(|_| format!("{token:?}: bad meter id"))?,
                );
            }
            ("set_field", a) if a.starts_with(':') => {
                let (value, name) = a[1..]
                    .split_once("->")
                    .ok_or_else(|| format!("{token:?}: expected set_field:VALUE->FIELD"))?;
                let fd = any_field(name).ok_or_else(|| format!("{token:?}: unknown field"))?;
                let (v, mask) = parse_value(fd, value).map_err(|e| format!("{token:?}: {e}"))?;
                if mask.is_some() {
                    return Err(format!("{token:?}: masked set_field is not supported"));
                }
                let mut a = Vec::new();
                a.extend_from_slice(&25u16.to_be_bytes()); // OFPAT_SET_FIELD
                a.extend_from_slice(&0u16.to_be_bytes());
                a.extend_from_slice(&fd.header(false).to_be_bytes());
                a.extend_from_slice(&v);
                pad8(&mut a);
                let len = a.len() as u16;
                a[2..4].copy_from_slice(&len.to_be_bytes());
                actions.extend(a);
            }
            ("load", a) if a.starts_with(':') => {
                let (value, dst) = a[1..]
                    .split_once("->")
                    .ok_or_else(|| format!("{token:?}: expected load:VALUE->DST[]"))?;
                let (fd, ofs, bits) = parse_subfield(dst).map_err(|e| format!("{token:?}: {e}"))?;
                let v = parse_int(value).map_err(|e| format!("{token:?}: {e}"))?;
                if bits > 64 || (bits < 64 && v >> bits != 0) {
                    return Err(format!("{token:?}: value does not fit {bits} bits"));
                }
                let mut body = Vec::new();
                body.extend_from_slice(&ofs_nbits(ofs, bits).to_be_bytes());
                body.extend_from_slice(&fd.header(false).to_be_bytes());
                body.extend_from_slice(&(v as u64).to_be_bytes());
                actions.extend(nx_action(NXAST_REG_LOAD, &body));
            }
            ("move", a) if a.starts_with(':') => {
                let (src, dst) = a[1..]
                    .split_once("->")
                    .ok_or_else(|| format!("{token:?}: expected move:SRC[]->DST[]"))?;
                let (sf, sofs, sbits) =
                    parse_subfield(src).map_err(|e| format!("{token:?}: {e}"))?;
                let (df, dofs, dbits) =
                    parse_subfield(dst).map_err(|e| format!("{token:?}: {e}"))?;
                if sbits != dbits {
                    return Err(format!("{token:?}: source and destination widths differ"));
                }
                let mut body = Vec::new();
                body.extend_from_slice(&sbits.to_be_bytes());
                body.extend_from_slice(&sofs.to_be_bytes());
                body.extend_from_slice(&dofs.to_be_bytes());
                body.extend_from_slice(&sf.header(false).to_be_bytes());
                body.extend_from_slice(&df.header(false).to_be_bytes());
                actions.extend(nx_action(NXAST_REG_MOVE, &body));
            }
            ("ct", a) if a.starts_with('(') && a.ends_with(')') => {
                actions
                    .extend(parse_ct(&a[1..a.len() - 1]).map_err(|e| format!("{token:?}: {e}"))?);
            }
            _ => return Err(format!("unknown action {token:?}")),
        }
    }
    let mut ins = Vec::new();
    if let Some(id) = meter {
        ins.extend_from_slice(&6u16.to_be_bytes()); // OFPIT_METER
        ins.extend_from_slice(&8u16.to_be_bytes());
        ins.extend_from_slice(&id.to_be_bytes());
    }
    if !actions.is_empty() {
        ins.extend_from_slice(&4u16.to_be_bytes()); // OFPIT_APPLY_ACTIONS
        ins.extend_from_slice(&((8 + actions.len()) as u16).to_be_bytes());
        ins.extend_from_slice(&[0; 4]);
        ins.extend(actions);
    }
    if let Some(t) = goto {
        ins.extend_from_slice(&1u16.to_be_bytes()); // OFPIT_GOTO_TABLE
        ins.extend_from_slice(&8u16.to_be_bytes());
        ins.push(t);
        ins.extend_from_slice(&[0; 3]);
    }
    Ok(ins)
}

/// `ct(commit,table=T,zone=N|zone=SUBFIELD)`.
fn parse_ct(args: &str) -> Result<Vec<u8>, String> {
    let (mut flags, mut table) = (0u16, 0xffu8);
    let (mut zone_src, mut zone) = (0u32, 0u16);
    for arg in split_top(args)? {
        match arg.split_once('=') {
            None if arg == "commit" => flags |= 1,
            Some(("table", t)) => table = t.parse().map_err(|_| format!("bad table {t:?}"))?,
            Some(("zone", z)) => match parse_int(z) {
                Ok(n) => zone = u16::try_from(n).map_err(|_| format!("zone {n} too big"))?,
                Err(_) => {
                    let (fd, ofs, bits) = parse_subfield(z)?;
                    zone_src = fd.header(false);
                    zone = ofs_nbits(ofs, bits);
                }
            },
            _ => return Err(format!("unsupported ct argument {arg:?}")),
        }
    }
    let mut body = Vec::new();
    body.extend_from_slice(&flags.to_be_bytes());
    body.extend_from_slice(&zone_src.to_be_bytes());
    body.extend_from_slice(&zone.to_be_bytes());
    body.push(table);
    body.extend_from_slice(&[0; 3]);
    body.extend_from_slice(&0u16.to_be_bytes()); // alg
    Ok(nx_action(NXAST_CT, &body))
}

/// Splits at commas outside parentheses.
fn split_top(text: &str) -> Result<Vec<&str>, String> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced parentheses in {text:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {text:?}"));
    }
    out.push(text[start..].trim());
    Ok(out.into_iter().filter(|t| !t.is_empty()).collect())
}

/// An OFPT_FLOW_MOD that adds (or replaces) the flow.
pub fn flow_add(xid: u32, flow: &crate::Flow) -> Result<Vec<u8>, String> {
    let m = parse_match(&flow.matches)?;
    let ins = parse_actions(&flow.actions)?;
    let mut msg = flow_mod_head(
        xid,
        flow.cookie,
        0,
        flow.table,
        OFPFC_ADD,
        flow.idle_timeout,
        flow.hard_timeout,
        flow.priority,
    );
    msg.extend(m.encode());
    msg.extend(ins);
    Ok(finish(msg))
}

/// An OFPT_FLOW_MOD that deletes the flows `m` selects (non-strict, any priority).
pub fn flow_delete(xid: u32, m: &crate::FlowMatch) -> Result<Vec<u8>, String> {
    let fields = parse_match(&m.matches)?;
    let mut msg = flow_mod_head(
        xid,
        m.cookie.cookie,
        m.cookie.mask,
        m.table.unwrap_or(OFPTT_ALL),
        OFPFC_DELETE,
        0,
        0,
        0,
    );
    msg.extend(fields.encode());
    Ok(finish(msg))
}

#[allow(clippy::too_many_arguments)]
fn flow_mod_head(
    xid: u32,
    cookie: u64,
    cookie_mask: u64,
    table: u8,
    command: u8,
    idle: u16,
    hard: u16,
    priority: u16,
) -> Vec<u8> {
    let mut m = header(OFPT_FLOW_MOD, xid, 128);
    m.extend_from_slice(&cookie.to_be_bytes());
    m.extend_from_slice(&cookie_mask.to_be_bytes());
    m.push(table);
    m.push(command);
    m.extend_from_slice(&idle.to_be_bytes());
    m.extend_from_slice(&hard.to_be_bytes());
    m.extend_from_slice(&priority.to_be_bytes());
    m.extend_from_slice(&OFP_NO_BUFFER.to_be_bytes());
    m.extend_from_slice(&OFPP_ANY.to_be_bytes());
    m.extend_from_slice(&OFPG_ANY.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes()); // flags
    m.extend_from_slice(&0u16.to_be_bytes()); // importance
    m
}

/// The fixed header of a message from the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub msg_type: u8,
    /// The whole message's length, header included (at least 8).
    pub length: u16,
    pub xid: u32,
}

impl Header {
    /// Reads the 8 header bytes. A length shorter than the header is an error: nothing after
    /// such a message can be framed.
    pub fn parse(b: [u8; 8]) -> Result<Header, String> {
        let length = u16::from_be_bytes([b[2], b[3]]);
        if length < 8 {
            return Err(format!("OpenFlow message of length {length}"));
        }
        Ok(Header {
            version: b[0],
            msg_type: b[1],
            length,
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }

    /// How many body bytes follow the header.
    pub fn body_len(&self) -> usize {
        usize::from(self.length) - 8
    }
}

/// What a message from the switch means to [`crate::OfProgrammer`].
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Hello {
        version: u8,
    },
    /// To be answered with an echo reply carrying the same payload.
    EchoRequest {
        xid: u32,
        payload: &'a [u8],
    },
    /// An OFPT_ERROR for message `xid`, by name (`OFPBIC_BAD_TABLE_ID`).
    Error {
        xid: u32,
        name: String,
    },
    /// Anything else: a reply we wait for (barrier, bundle control) or something the switch
    /// volunteers (port status), which is skipped.
    Other {
        msg_type: u8,
        xid: u32,
    },
}

/// Classifies a message read from the switch.
pub fn classify<'a>(h: &Header, body: &'a [u8]) -> Incoming<'a> {
    match h.msg_type {
        OFPT_HELLO => Incoming::Hello { version: h.version },
        OFPT_ECHO_REQUEST => Incoming::EchoRequest {
            xid: h.xid,
            payload: body,
        },
        OFPT_ERROR => Incoming::Error {
            xid: h.xid,
            name: error_text(body),
        },
        msg_type => Incoming::Other {
            msg_type,
            xid: h.xid,
        },
    }
}

/// `OFPBIC_BAD_TABLE_ID`, from an OFPT_ERROR body.
fn error_text(body: &[u8]) -> String {
    if body.len() < 4 {
        return "malformed OpenFlow error".into();
    }
    let kind = u16::from_be_bytes([body[0], body[1]]);
    let code = u16::from_be_bytes([body[2], body[3]]);
    error_name(kind, code)
}

/// The name of an OFPT_ERROR's type and code, as ovs-ofctl prints them
/// (`OFPBIC_BAD_TABLE_ID`).
pub fn error_name(kind: u16, code: u16) -> String {
    let (prefix, codes): (&str, &[&str]) = match kind {
        0 => ("OFPHFC", &["INCOMPATIBLE", "EPERM"]),
        1 => (
            "OFPBRC",
            &[
                "BAD_VERSION",
                "BAD_TYPE",
                "BAD_MULTIPART",
                "BAD_EXPERIMENTER",
                "BAD_EXP_TYPE",
                "EPERM",
                "BAD_LEN",
                "BUFFER_EMPTY",
                "BUFFER_UNKNOWN",
                "BAD_TABLE_ID",
                "IS_SLAVE",
                "BAD_PORT",
                "BAD_PACKET",
                "MULTIPART_BUFFER_OVERFLOW",
            ],
        ),
        2 => (
            "OFPBAC",
            &[
                "BAD_TYPE",
                "BAD_LEN",
                "BAD_EXPERIMENTER",
                "BAD_EXP_TYPE",
                "BAD_OUT_PORT",
                "BAD_ARGUMENT",
                "EPERM",
                "TOO_MANY",
                "BAD_QUEUE",
                "BAD_OUT_GROUP",
                "MATCH_INCONSISTENT",
                "UNSUPPORTED_ORDER",
                "BAD_TAG",
                "BAD_SET_TYPE",
                "BAD_SET_LEN",
                "BAD_SET_ARGUMENT",
            ],
        ),
        3 => (
            "OFPBIC",
            &[
                "UNKNOWN_INST",
                "UNSUP_INST",
                "BAD_TABLE_ID",
                "UNSUP_METADATA",
                "UNSUP_METADATA_MASK",
                "BAD_EXPERIMENTER",
                "BAD_EXP_TYPE",
                "BAD_LEN",
                "EPERM",
            ],
        ),
        4 => (
            "OFPBMC",
            &[
                "BAD_TYPE",
                "BAD_LEN",
                "BAD_TAG",
                "BAD_DL_ADDR_MASK",
                "BAD_NW_ADDR_MASK",
                "BAD_WILDCARDS",
                "BAD_FIELD",
                "BAD_VALUE",
                "BAD_MASK",
                "BAD_PREREQ",
                "DUP_FIELD",
                "EPERM",
            ],
        ),
        5 => (
            "OFPFMFC",
            &[
                "UNKNOWN",
                "TABLE_FULL",
                "BAD_TABLE_ID",
                "OVERLAP",
                "EPERM",
                "BAD_TIMEOUT",
                "BAD_COMMAND",
                "BAD_FLAGS",
            ],
        ),
        12 => (
            "OFPMMFC",
            &[
                "UNKNOWN",
                "METER_EXISTS",
                "INVALID_METER",
                "UNKNOWN_METER",
                "BAD_COMMAND",
                "BAD_FLAGS",
                "BAD_RATE",
                "BAD_BURST",
                "BAD_BAND",
                "BAD_BAND_VALUE",
                "OUT_OF_METERS",
                "OUT_OF_BANDS",
            ],
        ),
        17 => (
            "OFPBFC",
            &[
                "UNKNOWN",
                "EPERM",
                "BAD_ID",
                "BUNDLE_EXIST",
                "BUNDLE_CLOSED",
                "OUT_OF_BUNDLES",
                "BAD_TYPE",
                "BAD_FLAGS",
                "MSG_BAD_LEN",
                "MSG_BAD_XID",
                "MSG_UNSUP",
                "MSG_CONFLICT",
                "MSG_TOO_MANY",
                "MSG_FAILED",
                "TIMEOUT",
                "BUNDLE_IN_PROGRESS",
            ],
        ),
        _ => ("", &[]),
    };
    match codes.get(usize::from(code)) {
        Some(c) => format!("{prefix}_{c}"),
        None => format!("OpenFlow error type {kind} code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CookieMask, Flow, FlowMatch};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn matches_put_prerequisites_first_and_mask_values() {
        let m = parse_match("tcp,tp_dst=80,reg1=7,nw_src=10.1.2.9/24").unwrap();
        assert_eq!(
            hex(&m.encode()),
            // type 1, len 4+8+6+5+12+6 = 41, reg1, eth_type, ip_proto, ipv4_src/mask (value
            // masked), tcp_dst, padding to 48
            "00010029\
             0001020400000007\
             80000a020800\
             80001401 06\
             80001708 0a010200 ffffff00\
             80001c02 0050\
             00000000000000"
                .replace(' ', "")
        );
        // A zero mask matches everything: the field is left out.
        assert_eq!(
            hex(&parse_match("ipv6,ipv6_src=::/0").unwrap().encode()),
            "0001000a80000a0286dd000000000000"
        );
    }

    #[test]
    fn unknown_syntax_is_an_error_naming_the_token() {
        let e = |m: &str, a: &str| flow_add(1, &Flow::new(0, 1, m, a)).unwrap_err();
        assert!(e("nosuch=1", "drop").contains("nosuch"));
        assert!(e("", "mod_vlan_vid:5").contains("mod_vlan_vid:5"));
        assert!(e("tp_dst=80", "drop").contains("tp_dst needs tcp, udp or sctp"));
        assert!(e("", "ct(nat)").contains("nat"));
        assert!(e("in_port=5/1", "drop").contains("takes no mask"));
        assert!(e("ct_state=+trk+bogus", "drop").contains("bogus"));
        assert!(e("", "set_field:300->ip_proto").contains("does not fit"));
        assert!(e("", "resubmit(3)").contains("resubmit(,TABLE)"));
    }

    #[test]
    fn flow_mods_have_the_openflow_14_layout() {
        let add = flow_add(
            9,
            &Flow::new(
                30,
                100,
                "in_port=5",
                "meter:3,output:NXM_NX_REG2[],resubmit(,10)",
            )
            .cookie(0x42),
        )
        .unwrap();
        assert_eq!(add.len() % 8, 0);
        assert_eq!(u16::from_be_bytes([add[2], add[3]]) as usize, add.len());
        assert_eq!(add[1], OFPT_FLOW_MOD);
        assert_eq!(&add[8..16], &0x42u64.to_be_bytes());
        assert_eq!((add[24], add[25]), (30, OFPFC_ADD));
        let del = flow_delete(
            10,
            &FlowMatch::cookie(CookieMask::masked(0x500, 0xff00)).table(3),
        )
        .unwrap();
        assert_eq!(&del[16..24], &0xff00u64.to_be_bytes());
        assert_eq!((del[24], del[25]), (3, OFPFC_DELETE));
    }

    #[test]
    fn error_names() {
        assert_eq!(error_name(3, 2), "OFPBIC_BAD_TABLE_ID");
        assert_eq!(error_name(17, 13), "OFPBFC_MSG_FAILED");
        assert_eq!(error_name(99, 1), "OpenFlow error type 99 code 1");
    }
}
