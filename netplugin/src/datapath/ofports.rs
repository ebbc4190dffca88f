//! The OpenFlow port numbers the agent gives its ports.

use std::collections::{BTreeSet, HashMap};

/// The OpenFlow port numbers the agent gives endpoint ports (`Interface.ofport_request`).
/// ovs-vswitchd numbers ports that request nothing (tunnels, the uplink) from the lower half,
/// 1-32767 ("to reserve the upper half for assignment by controllers", ofproto.c), so the two
/// never meet; 0xff00 and up are OpenFlow's reserved ports.
pub const ENDPOINT_OFPORTS: std::ops::RangeInclusive<u32> = 32768..=0xfeff;

/// The endpoint ports on the bridge and the OpenFlow numbers in use, so that an ADD needs no
/// OVSDB read: rebuilt from OVS at start ([`Datapath::load_ports`]) and kept by the agent, the
/// only writer of its bridge's ports.
#[derive(Debug, Default)]
pub(super) struct PortIndex {
    /// Host interface name -> (endpoint id, OpenFlow port number).
    pub endpoints: HashMap<String, (String, u32)>,
    /// Port-pool port name -> OpenFlow port number.
    pub pool: HashMap<String, u32>,
    /// Network trunk name -> OpenFlow port number.
    pub trunks: HashMap<String, u32>,
    /// Router port name -> (network id, what its flows need).
    pub routers: HashMap<String, (u64, crate::fabric::RouterPort)>,
    /// Endpoint id -> its published ports (`docker run -p`), from its port's `external_ids`.
    pub published: HashMap<String, Vec<crate::northsouth::Published>>,
    /// Numbers held or requested by any port of the bridge, or reserved by an ADD in flight.
    pub used: BTreeSet<u32>,
    /// Where the next search for a free number starts: numbers go round the range, so a number
    /// freed by a DEL is not handed out again soon (as ovs-vswitchd itself does).
    pub next: u32,
}

impl PortIndex {
    /// A free number in [`ENDPOINT_OFPORTS`], now reserved; `None` when all are taken.
    pub fn allocate(&mut self) -> Option<u32> {
        let (first, last) = (*ENDPOINT_OFPORTS.start(), *ENDPOINT_OFPORTS.end());
        let start = self.next.clamp(first, last);
        let n = (start..=last)
            .chain(first..start)
            .find(|n| !self.used.contains(n))?;
        self.used.insert(n);
        self.next = if n == last { first } else { n + 1 };
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ofports_go_round_the_upper_half_and_skip_used_ones() {
        let mut idx = PortIndex::default();
        let first = *ENDPOINT_OFPORTS.start();
        idx.used.extend([first + 1, 5]);
        assert_eq!(idx.allocate(), Some(first));
        assert_eq!(idx.allocate(), Some(first + 2));
        // A freed number is not handed out again at once.
        idx.used.remove(&first);
        assert_eq!(idx.allocate(), Some(first + 3));
        // At the end of the range, the search wraps round to the freed numbers.
        idx.next = *ENDPOINT_OFPORTS.end();
        assert_eq!(idx.allocate(), Some(*ENDPOINT_OFPORTS.end()));
        assert_eq!(idx.allocate(), Some(first));
        // Full: no number rather than a taken one.
        idx.used.extend(ENDPOINT_OFPORTS);
        assert_eq!(idx.allocate(), None);
    }
}
