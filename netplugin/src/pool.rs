//! The port pool: switch ports made ahead of time, handed to CNI pods at ADD.
//!
//! Why: on the userspace datapath every port added or deleted, and every link created or
//! changed in the agent's namespace, makes ovs-vswitchd reconfigure every port of the bridge,
//! and the ADD's flows wait for it (BENCHMARKS.md, issue 4). A pooled port is a veth pair whose
//! host end is already an OVS port and whose other end waits in a namespace of its own (the
//! pool namespace, so changes to it are not the host's). ADD gives the pod a *passthru macvlan*
//! of that waiting end, made directly inside the pod's namespace: nothing changes on the host
//! or in OVS but flows. The kernel allows one passthru macvlan per lower link, so a port can
//! never serve two pods; the pod's MAC address is the waiting end's (set at ADD), and
//! checksums are computed by the waiting end, whose TX checksum offload is off.
//!
//! Which endpoint a port serves is the waiting end's alias (`IFLA_IFALIAS`, "<endpoint id>
//! <CNI network>"), in the pool namespace: it survives an agent restart, and writing it changes
//! nothing the switch sees. docs/decisions.md "Pooled ports".

use crate::datapath::{Datapath, fnv1a};
use crate::netlink::{LinkError, Netlink, Netns, disable_tx_checksums};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One pooled port: the veth's two ends have the same name, `vp` and 12 hex digits (host end
/// in the agent's namespace, an OVS port; waiting end in the pool namespace).
#[derive(Debug, Clone)]
pub struct Pair {
    pub name: String,
    /// The waiting end's index in the pool namespace.
    pub index: u32,
    pub ofport: u32,
    /// The host end's MAC address.
    pub host_mac: String,
    /// Failed hand-overs (an earlier pod's interface still holds it); see [`Pool::take`].
    pub strikes: u32,
    /// The interface an earlier pod had on it, if it may still exist (see [`Pool::take`]).
    pub last: Option<(PathBuf, String)>,
}

/// A port serving an endpoint.
#[derive(Debug, Clone)]
pub struct Bound {
    pub pair: Pair,
    /// The CNI network config's name (GC scope), as kept in the alias.
    pub cni_network: String,
    /// The pod's namespace and interface.
    pub netns: PathBuf,
    pub ifname: String,
}

#[derive(Default)]
struct State {
    free: VecDeque<Pair>,
    bound: HashMap<String, Bound>,
    /// Pairs being made by the refill.
    making: usize,
    /// When ports were taken in the last [`BURST_WINDOW`].
    recent: VecDeque<Instant>,
}

/// How far back the pool looks to size itself for a burst of pods.
const BURST_WINDOW: Duration = Duration::from_secs(1);

impl State {
    /// How many free ports to aim for: the pool's size, or as many as pods came in the last
    /// [`BURST_WINDOW`] during a burst (up to four times the size), so that a burst is served by
    /// a few large refills (each one reconfiguration of the bridge) rather than many small ones.
    fn want(&mut self, target: usize) -> usize {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > BURST_WINDOW)
        {
            self.recent.pop_front();
        }
        self.recent.len().clamp(target, 4 * target)
    }
}

pub struct Pool {
    pub ns: Netns,
    /// A netlink socket in the pool namespace.
    pub nl: Netlink,
    /// How many free ports the pool keeps ready.
    pub target: usize,
    /// The ports' MTU: the largest a pod on them can have.
    pub mtu: u32,
    state: Mutex<State>,
    refill: tokio::sync::Notify,
}

/// Opens (or makes) the namespace where the other ends of the agent's ports wait (the pool's
/// ports, the network trunks), and a netlink socket in it. New links there are born without
/// IPv6: a waiting end needs no addresses, and would otherwise send DAD and router
/// solicitations into the switch.
pub fn open_side_netns(path: &std::path::Path) -> Result<(Netns, Netlink), LinkError> {
    let ns = Netns::open_or_create(path)?;
    ns.run(|| {
        for f in ["default", "all"] {
            let p = format!("/proc/sys/net/ipv6/conf/{f}/disable_ipv6");
            match std::fs::write(&p, "1") {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("turn IPv6 off ({p}): {e}")),
                Ok(()) => {}
            }
        }
        Ok(())
    })?;
    let nl = Netlink::in_netns(&ns)?;
    Ok((ns, nl))
}

/// Makes a veth pair whose ends are both called `name`: the host end in the agent's namespace
/// (a switch port to be), the waiting end in `side` (the namespace of [`open_side_netns`]),
/// both up, no IPv6 on the host end. Returns the waiting end's index and the host end's MAC.
/// Checksum offload and the OVS port are the caller's.
pub async fn make_waiting_pair(
    host: &Netlink,
    side_nl: &Netlink,
    side: &Netns,
    name: &str,
    mtu: u32,
) -> Result<(u32, String), LinkError> {
    // Locally administered, unicast; a pooled port's is replaced by the pod's MAC at each ADD.
    let mut mac = *uuid::Uuid::new_v4().as_bytes();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    let mac: [u8; 6] = mac[..6].try_into().unwrap_or([2, 0, 0, 0, 0, 1]);
    // The host end born up (it must be up before the port is added: ovs-vswitchd writes back
    // the flags it read): each link event in the agent's namespace costs ovs-vswitchd a
    // reconfiguration of the bridge.
    host.create_veth_up(name, name, mac, mtu, side, true)
        .await?;
    if let Err(e) = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1") {
        tracing::debug!(port = %name, error = %e, "disable IPv6 on the host side");
    }
    let idx = side_nl
        .index(name)
        .await?
        .ok_or_else(|| LinkError::Netlink {
            action: format!("find {name} in namespace {}", side.path.display()),
            reason: "vanished".into(),
        })?;
    side_nl.set_up(name, idx).await?;
    Ok((idx, host.mac(name).await?.unwrap_or_default()))
}

/// Whether `name` is a pooled port's name.
pub fn is_pool_ifname(name: &str) -> bool {
    name.len() == 14
        && name.starts_with("vp")
        && name[2..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// The alias that records which endpoint a port serves.
pub fn alias(ep_id: &str, cni_network: &str) -> String {
    format!("{ep_id} {}", alias_network(cni_network))
}

/// A CNI network's name as an alias keeps it: a long one as its hash (IFALIASZ is 256 with
/// the NUL, and endpoint ids take up to 128).
pub fn alias_network(cni_network: &str) -> String {
    if cni_network.len() > 120 {
        format!("#{:016x}", fnv1a(cni_network.as_bytes()))
    } else {
        cni_network.to_string()
    }
}

/// (endpoint id, CNI network) from an alias; None for a free port's empty alias.
pub fn parse_alias(a: &str) -> Option<(String, String)> {
    let (ep, net) = a.split_once(' ').unwrap_or((a, ""));
    (!ep.is_empty()).then(|| (ep.to_string(), net.to_string()))
}

impl Pool {
    /// Opens (or makes) the pool namespace at `path` (see [`open_side_netns`]).
    pub fn open(path: &std::path::Path, target: usize, mtu: u32) -> Result<Self, LinkError> {
        let (ns, nl) = open_side_netns(path)?;
        Ok(Pool {
            ns,
            nl,
            target,
            mtu,
            state: Mutex::new(State::default()),
            refill: tokio::sync::Notify::new(),
        })
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free port, if any; wakes the refill when the pool runs low.
    pub fn take(&self) -> Option<Pair> {
        let mut st = self.st();
        let p = st.free.pop_front();
        st.recent.push_back(Instant::now());
        let want = st.want(self.target);
        if st.free.len() + st.making < want.div_ceil(2) {
            self.refill.notify_one();
        }
        p
    }

    /// Puts a port back: at the end of the queue, so that an earlier pod's interface on it (its
    /// namespace is usually deleted right after the DEL) is long gone when it comes round.
    pub fn put_back(&self, pair: Pair) {
        self.st().free.push_back(pair);
    }

    /// Whether the free port whose waiting end has this index is in the pool.
    pub fn is_free(&self, index: u32) -> bool {
        self.st().free.iter().any(|p| p.index == index)
    }

    /// Puts a port that served (or was about to serve) an endpoint back, its mark cleared
    /// first (once back, another ADD may take and mark it at once). The port goes back even if
    /// clearing fails (the next binding overwrites the mark).
    pub async fn free(&self, pair: Pair) -> Result<(), LinkError> {
        let cleared = self.nl.set_alias_mac(pair.index, "", None).await;
        self.put_back(pair);
        cleared
    }

    pub fn bind(&self, ep_id: &str, b: Bound) {
        self.st().bound.insert(ep_id.to_string(), b);
    }

    pub fn unbind(&self, ep_id: &str) -> Option<Bound> {
        self.st().bound.remove(ep_id)
    }

    pub fn bound(&self, ep_id: &str) -> Option<Bound> {
        self.st().bound.get(ep_id).cloned()
    }

    /// Every bound endpoint: (endpoint id, binding).
    pub fn all_bound(&self) -> Vec<(String, Bound)> {
        self.st()
            .bound
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether more ports are free than the pool keeps (after a burst of pods): more than
    /// twice [`Pool::target`].
    pub fn has_surplus(&self) -> bool {
        self.st().free.len() > 2 * self.target
    }

    /// Takes the free ports beyond twice [`Pool::target`] out of the pool, for deletion: the
    /// last released first (an earlier pod's interface may still hold them).
    pub fn take_surplus(&self) -> Vec<Pair> {
        let mut st = self.st();
        let keep = 2 * self.target;
        let n = st.free.len().saturating_sub(keep);
        (0..n).filter_map(|_| st.free.pop_back()).collect()
    }

    /// Makes `n` ports: veth pairs with the waiting end born in the pool namespace, both ends
    /// up, the waiting end without TX checksum offload, the host ends added to the bridge in
    /// one go. A pair that fails half-way is deleted.
    pub async fn make(
        &self,
        host: &Netlink,
        dp: &Datapath,
        n: usize,
    ) -> Result<Vec<Pair>, LinkError> {
        let names: Vec<String> = (0..n)
            .map(|_| {
                let u = uuid::Uuid::new_v4();
                let b = u.as_bytes();
                format!(
                    "vp{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                    b[0], b[1], b[2], b[3], b[4], b[5]
                )
            })
            .collect();
        let r = self.make_named(host, dp, &names).await;
        if r.is_err() {
            for name in &names {
                let _ = dp.remove_port(name).await;
                let _ = host.delete(name).await;
            }
        }
        r
    }

    async fn make_named(
        &self,
        host: &Netlink,
        dp: &Datapath,
        names: &[String],
    ) -> Result<Vec<Pair>, LinkError> {
        let mut indexes = Vec::new();
        for name in names {
            indexes.push(make_waiting_pair(host, &self.nl, &self.ns, name, self.mtu).await?);
        }
        let ns_names = names.to_vec();
        let ns = Netns::open(&self.ns.path)?;
        // One visit to the pool namespace for every pair's checksum setting.
        tokio::task::spawn_blocking(move || disable_tx_checksums(&ns, &ns_names))
            .await
            .map_err(|e| LinkError::Netlink {
                action: "set up pooled ports".into(),
                reason: e.to_string(),
            })??;
        let ofports = dp
            .add_pool_ports(names)
            .await
            .map_err(|e| LinkError::Netlink {
                action: "add pooled ports to the bridge".into(),
                reason: e.to_string(),
            })?;
        Ok(names
            .iter()
            .zip(indexes)
            .zip(ofports)
            .map(|((name, (index, host_mac)), ofport)| Pair {
                name: name.clone(),
                index,
                ofport,
                host_mac,
                strikes: 0,
                last: None,
            })
            .collect())
    }

    /// Keeps [`Pool::target`] free ports ready (more during a burst: `State::want`): makes
    /// what is missing whenever the pool runs low (at start, and when [`Pool::take`] finds it
    /// half empty). Runs forever.
    pub async fn refill(&self, host: &Netlink, dp: &Datapath) {
        loop {
            let need = {
                let mut st = self.st();
                let want = st.want(self.target);
                let n = want.saturating_sub(st.free.len() + st.making);
                st.making += n;
                n
            };
            if need > 0 {
                let made = self.make(host, dp, need).await;
                let mut st = self.st();
                st.making -= need;
                match made {
                    Ok(pairs) => {
                        tracing::debug!(ports = pairs.len(), "port pool refilled");
                        st.free.extend(pairs);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refill the port pool; ADDs make their own ports meanwhile")
                    }
                }
            }
            self.refill.notified().await;
        }
    }

    /// Records what a restart found: free ports and bound ones.
    pub fn restore(&self, free: Vec<Pair>, bound: Vec<(String, Bound)>) {
        let mut st = self.st();
        st.free = free.into();
        st.bound = bound.into_iter().collect();
        self.refill.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_round_trip_and_fit() {
        assert_eq!(
            parse_alias(&alias("c1-eth0", "mynet")),
            Some(("c1-eth0".into(), "mynet".into()))
        );
        assert_eq!(parse_alias(""), None);
        let long = "n".repeat(300);
        let a = alias(&"e".repeat(128), &long);
        assert!(a.len() < 256, "{}", a.len());
        // A long network name is kept as its hash: GC compares the same way.
        assert_eq!(parse_alias(&a).unwrap().1, alias_network(&long));
    }

    #[test]
    fn pool_names_are_recognised() {
        assert!(is_pool_ifname("vp0123456789ab"));
        for other in ["vc0123456789ab", "vp0123", "vp0123456789AB", "eth0"] {
            assert!(!is_pool_ifname(other), "{other}");
        }
    }
}
