//! Forged frames, as a pod holding CAP_NET_RAW (which Docker, containerd and CRI-O grant by
//! default) can send them: hand-built Ethernet frames written to an `AF_PACKET` socket on the
//! pod's interface, optionally with `PACKET_QDISC_BYPASS` (which skips the interface's qdisc and
//! tc egress hook). Used by the anti-spoofing suite (tests/anti_spoof.rs).

use crate::Pod;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A MAC address from its `aa:bb:..` text.
pub fn mac(text: &str) -> [u8; 6] {
    let v: Vec<u8> = text
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).expect("MAC octet"))
        .collect();
    v.try_into().expect("6 octets")
}

const BROADCAST: [u8; 6] = [0xff; 6];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The ones' complement sum of `data` folded to 16 bits (RFC 1071), not yet inverted.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    // The minimum Ethernet payload.
    while f.len() < 60 {
        f.push(0);
    }
    f
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A UDP datagram over IPv4 (UDP checksum 0: none, which IPv4 allows).
#[allow(clippy::too_many_arguments)]
pub fn udp4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let u = udp(sport, dport, payload);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + u.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = fold(sum16(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&u);
    ethernet(dst_mac, src_mac, 0x0800, &ip)
}

/// An IPv6 packet of next header `nh` with `l4` as payload, whose checksum (at `csum_at` in
/// `l4`) is filled in over the pseudo-header.
fn ipv6(
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    nh: u8,
    hop_limit: u8,
    mut l4: Vec<u8>,
    csum_at: usize,
) -> Vec<u8> {
    let len = l4.len() as u32;
    let mut acc = sum16(0, &src.octets());
    acc = sum16(acc, &dst.octets());
    acc = sum16(acc, &len.to_be_bytes());
    acc = sum16(acc, &[0, 0, 0, nh]);
    let c = fold(sum16(acc, &l4));
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p.extend_from_slice(&[nh, hop_limit]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&l4);
    ethernet(dst_mac, src_mac, 0x86dd, &p)
}

/// A UDP datagram over IPv6 (with its mandatory checksum).
#[allow(clippy::too_many_arguments)]
pub fn udp6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    ipv6(
        (src_mac, dst_mac),
        src,
        dst,
        17,
        64,
        udp(sport, dport, payload),
        6,
    )
}

/// A gratuitous ARP (a broadcast request for `claimed` from `claimed`), announcing that
/// `claimed` is at `sha`.
pub fn gratuitous_arp(src_mac: [u8; 6], sha: [u8; 6], claimed: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&sha);
    a.extend_from_slice(&claimed.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&claimed.octets());
    ethernet(BROADCAST, src_mac, 0x0806, &a)
}

/// An unsolicited neighbour advertisement to all nodes, claiming that `target` is at `tll`
/// (override flag set: receivers replace what their cache holds).
pub fn unsolicited_na(src_mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr, tll: [u8; 6]) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&tll);
    ipv6(
        (src_mac, [0x33, 0x33, 0, 0, 0, 1]),
        src,
        ALL_NODES,
        58,
        255,
        icmp,
        2,
    )
}

/// The EUI-64 link-local address of `mac` (what the kernel gives an interface by default).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

impl Pod {
    /// The MAC of the pod's interface, from its CNI result.
    pub fn mac(&self) -> [u8; 6] {
        mac(self.result["interfaces"][1]["mac"]
            .as_str()
            .unwrap_or_else(|| panic!("no pod interface MAC in {}", self.result)))
    }

    /// Writes `frames` as they are to the pod's `ifname` through an `AF_PACKET` socket made
    /// inside the pod (with `PACKET_QDISC_BYPASS` when `bypass`). Every send must succeed: a
    /// forged frame is dropped by the switch, silently, never refused to the pod.
    pub fn send_raw(&self, ifname: &str, frames: Vec<Vec<u8>>, bypass: bool) {
        let ifname = std::ffi::CString::new(ifname).expect("interface name");
        let r: Result<(), String> = self.in_ns(move || {
            // SAFETY: plain libc calls on a socket this closure owns; every pointer passed
            // points to a live local of the size given.
            unsafe {
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW,
                    i32::from((libc::ETH_P_ALL as u16).to_be()),
                );
                if fd < 0 {
                    return Err(format!("socket: {}", std::io::Error::last_os_error()));
                }
                let done = |e: String| {
                    libc::close(fd);
                    Err(e)
                };
                if bypass {
                    let one: libc::c_int = 1;
                    if libc::setsockopt(
                        fd,
                        libc::SOL_PACKET,
                        libc::PACKET_QDISC_BYPASS,
                        (&one as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as u32,
                    ) != 0
                    {
                        return done(format!(
                            "PACKET_QDISC_BYPASS: {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                }
                let index = libc::if_nametoindex(ifname.as_ptr());
                if index == 0 {
                    return done(format!("{ifname:?}: {}", std::io::Error::last_os_error()));
                }
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_ifindex = index as i32;
                sll.sll_halen = 6;
                for f in &frames {
                    sll.sll_addr[..6].copy_from_slice(&f[..6]);
                    let n = libc::sendto(
                        fd,
                        f.as_ptr().cast(),
                        f.len(),
                        0,
                        (&sll as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                    if n != f.len() as isize {
                        return done(format!(
                            "send a forged frame: {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                }
                libc::close(fd);
                Ok(())
            }
        });
        r.unwrap_or_else(|e| panic!("pod {}: {e}", self.netns));
    }

    /// The link-layer address the pod's neighbour cache holds for `ip` (None: no entry, or one
    /// without an address).
    pub fn neighbour(&self, ip: &str) -> Option<String> {
        let out = self.exec(&["ip", "neigh", "show", ip]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut words = text.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_string)
    }
}
