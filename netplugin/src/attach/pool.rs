//! The port pool (`--port-pool N`): switch ports made ahead of time, handed to CNI pods at ADD.
//!
//! Why: on the userspace datapath every port added or deleted, and every link created or
//! changed in the agent's namespace, makes ovs-vswitchd reconfigure every port of the bridge,
//! and the ADD's flows wait for it (BENCHMARKS.md, issue 4). A pooled port is a veth pair whose
//! host end is already an OVS port and whose other end waits in a namespace of its own (the
//! side namespace, so changes to it are not the host's). ADD gives the pod a *passthru
//! macvlan* of that waiting end, made directly inside the pod's namespace: nothing changes on
//! the host or in OVS but flows. The kernel allows one passthru macvlan per lower link, so a
//! port can never serve two pods; the pod's MAC address is the waiting end's (set at ADD), and
//! checksums are computed by the waiting end, whose TX checksum offload is off.
//!
//! Which endpoint a port serves is the waiting end's alias (`IFLA_IFALIAS`, "<endpoint id>
//! <CNI network>"), in the side namespace: it survives an agent restart, and writing it
//! changes nothing the switch sees. docs/decisions.md "Pooled ports".

use super::{
    Attach, Host, Port, Prepared, Restore, Undo, delete_pod_link, endpoint_mac,
    finish_macvlan_pod_side, log_added, make_waiting_pair, prepare_pod_side,
};
use crate::kernel::{MacVlanMode, Ns};
use crate::manager::{AddRequest, ErrorKind, ManagerError};
use crate::names::{alias, alias_network, is_pool_ifname, new_pool_ifname, parse_alias};
use crate::netlink::LinkError;
use model::agent::Endpoint;
use std::any::Any;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One pooled port: the veth's two ends have the same name, `vp` and 12 hex digits (host end
/// in the agent's namespace, an OVS port; waiting end in the side namespace).
#[derive(Debug, Clone)]
pub struct Pair {
    pub name: String,
    /// The waiting end's index in the side namespace.
    pub index: u32,
    pub ofport: u32,
    /// The host end's MAC address.
    pub host_mac: String,
    /// The interface an earlier pod had on it, if it may still exist.
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

pub struct PoolMode {
    host: Arc<Host>,
    /// Where the waiting ends are.
    side: Ns,
    /// How many free ports the pool keeps ready.
    target: usize,
    /// The ports' MTU: the largest a pod on them can have.
    mtu: u32,
    state: Mutex<State>,
    refill: tokio::sync::Notify,
}

/// What [`Attach::prepare`] hands to [`Attach::finish`]: the port and the pod's interface.
struct Handed {
    pair: Pair,
    pod_index: u32,
}

impl PoolMode {
    /// Opens (or makes) the side namespace at `side_netns`.
    pub async fn open(
        host: Arc<Host>,
        side_netns: &std::path::Path,
        target: usize,
        mtu: u32,
    ) -> Result<Self, LinkError> {
        let side = host.kernel.open_side(side_netns).await?;
        Ok(PoolMode {
            host,
            side,
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
    fn take(&self) -> Option<Pair> {
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
    fn put_back(&self, pair: Pair) {
        self.st().free.push_back(pair);
    }

    /// Whether the waiting end with this index is a pooled port's that serves no endpoint.
    async fn serves_nobody(&self, index: u32) -> Result<bool, LinkError> {
        let (free, bound) = {
            let st = self.st();
            (
                st.free.iter().any(|p| p.index == index),
                st.bound.values().any(|b| b.pair.index == index),
            )
        };
        if free || bound {
            return Ok(free);
        }
        Ok(matches!(self.side.name_and_group(index).await?, Some((n, _)) if is_pool_ifname(&n)))
    }

    /// Puts a port that served (or was about to serve) an endpoint back, its mark cleared
    /// first (once back, another ADD may take and mark it at once). The port goes back even if
    /// clearing fails (the next binding overwrites the mark).
    async fn free(&self, pair: Pair) -> Result<(), LinkError> {
        let cleared = self.side.set_alias_mac(pair.index, "", None).await;
        self.put_back(pair);
        cleared
    }

    fn bound_of(&self, ep_id: &str) -> Option<Bound> {
        self.st().bound.get(ep_id).cloned()
    }

    /// Makes `n` ports: veth pairs with the waiting end born in the side namespace, both ends
    /// up, the waiting end without TX checksum offload, the host ends added to the bridge in
    /// one go. A pair that fails half-way is deleted.
    pub async fn make(&self, n: usize) -> Result<Vec<Pair>, ManagerError> {
        let names: Vec<String> = (0..n).map(|_| new_pool_ifname()).collect();
        let r = self.make_named(&names).await;
        if r.is_err() {
            for name in &names {
                let _ = self.host.switch.remove_port(name).await;
                let _ = self.host.ns.delete(name).await;
            }
        }
        r
    }

    async fn make_named(&self, names: &[String]) -> Result<Vec<Pair>, ManagerError> {
        let mut made = Vec::new();
        for name in names {
            made.push(make_waiting_pair(&self.host.ns, &self.side, name, self.mtu).await?);
        }
        // One visit to the side namespace for every pair's checksum setting.
        self.side.disable_tx_checksums(names).await?;
        let ofports = self
            .host
            .switch
            .add_pool_ports(names)
            .await
            .map_err(|e| ManagerError::from(e).context("add pooled ports to the bridge"))?;
        Ok(names
            .iter()
            .zip(made)
            .zip(ofports)
            .map(|((name, (index, host_mac)), ofport)| Pair {
                name: name.clone(),
                index,
                ofport,
                host_mac,
                last: None,
            })
            .collect())
    }

    /// Takes a pooled port (or makes one when the pool is empty) and makes the pod's interface
    /// on it. A port an earlier pod's interface still holds (its namespace outlived its DEL) is
    /// freed by deleting that interface if its namespace is known; else (an agent restart
    /// forgot it) the port goes to the reaper at once, which deletes the stale interface with
    /// it: skipping it would only meet it again, and an ADD must not fail while the pool can
    /// make a port. Every free port is tried at most once, then a new one is made.
    async fn hand_over(&self, ifname: &str, mtu: u32, pod: &Ns) -> Result<Pair, ManagerError> {
        let create = |index: u32| {
            self.side
                .create_macvlan(index, ifname, mtu, pod.as_ref(), MacVlanMode::Passthrough)
        };
        // Every free port once (each held one leaves the pool), a new one, and a few for ports
        // that went back meanwhile (an interface in the way, deleted).
        let attempts = self.st().free.len() + 8;
        for _ in 0..attempts {
            let mut pair = match self.take() {
                Some(p) => p,
                None => self.make(1).await?.into_iter().next().ok_or_else(|| {
                    ManagerError::new(ErrorKind::Internal, "make a pooled port: none made")
                })?,
            };
            let r = async {
                if create(pair.index).await? {
                    return Ok(true);
                }
                if let Some((netns, old)) = pair.last.take()
                    && delete_pod_link(self.host.kernel.as_ref(), &netns, &old, |l| l == pair.index)
                        .await?
                {
                    return create(pair.index).await;
                }
                Ok::<bool, LinkError>(false)
            }
            .await;
            match r {
                Ok(true) => return Ok(pair),
                Ok(false) => {
                    tracing::info!(port = %pair.name, "pooled port still held by an earlier pod's interface in an unknown namespace: deleting the port and that interface with it");
                    self.host.reaper.queue("", &pair.name);
                }
                Err(e) => {
                    self.put_back(pair);
                    // A re-ADD into the namespace of an endpoint just DELed: its interface is
                    // still there, on a free port. Delete it and try again.
                    if !(e.is(libc::EEXIST) && self.delete_freed_pod_link(pod, ifname).await?) {
                        return Err(e.into());
                    }
                }
            }
        }
        Err(ManagerError::new(
            ErrorKind::TryAgain,
            "no free pooled port: each is still held by an earlier pod's interface, and the ports made meanwhile were taken",
        ))
    }

    /// Deletes interface `ifname` of the pod's namespace if it is the interface of a DELed
    /// endpoint, or of an ADD the agent's death cut short: a passthru macvlan of a pooled port
    /// that serves no endpoint (free, or on its way to the reaper: a surplus port, or one
    /// whose holder was unknown after a restart). Whether it is gone (deleted, or by itself
    /// since the failed attempt).
    async fn delete_freed_pod_link(&self, pod: &Ns, ifname: &str) -> Result<bool, ManagerError> {
        if let Some((lower, _)) = pod.macvlan_lower(ifname).await?
            && self.serves_nobody(lower).await?
        {
            if pod.delete(ifname).await? {
                tracing::info!(ifname, netns = %pod.path().display(), "deleted a removed endpoint's interface: it was in the way");
            }
            return Ok(true);
        }
        // Not a freed port's, or gone since the failed attempt or since the look at its port:
        // the reaper may delete a surplus port (and the interface on it) at any moment, and
        // gone is as good as deleted.
        Ok(pod.index(ifname).await?.is_none())
    }

    /// Keeps the free ports beyond twice the pool's size out of it, for the reaper.
    fn take_surplus(&self) -> Vec<Pair> {
        let mut st = self.st();
        let keep = 2 * self.target;
        let n = st.free.len().saturating_sub(keep);
        (0..n).filter_map(|_| st.free.pop_back()).collect()
    }
}

#[async_trait::async_trait]
impl Attach for PoolMode {
    /// CNI pods whose MTU the pooled ports carry, unless the endpoint already has a veth port
    /// (an ADD from before the pool was on).
    fn takes(&self, req: &AddRequest, ep_id: &str, mtu: u32) -> bool {
        super::takes_shared(&self.host, req, ep_id, mtu, self.mtu)
    }

    async fn in_place(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
    ) -> Result<Option<Port>, ManagerError> {
        let Some(b) = self.bound_of(ep_id) else {
            return Ok(None);
        };
        // The pod's interface is the one on its port (a restarted agent knows the port, not
        // the namespace's path).
        let lower = pod.macvlan_lower(&req.ifname).await?;
        if b.ifname == req.ifname && lower == Some((b.pair.index, MacVlanMode::Passthrough)) {
            self.st().bound.insert(
                ep_id.to_string(),
                Bound {
                    netns: req.netns.clone(),
                    ..b.clone()
                },
            );
            return Ok(Some(Port {
                name: b.pair.name,
                mac: b.pair.host_mac,
            }));
        }
        // The pod's interface is gone (a new namespace, say): start again.
        self.release(ep_id).await?;
        Ok(None)
    }

    async fn prepare(
        &self,
        req: &AddRequest,
        _ep_id: &str,
        pod: &Ns,
        mtu: u32,
        undo: &mut Vec<Undo>,
    ) -> Result<Prepared, ManagerError> {
        let pair = self.hand_over(&req.ifname, mtu, pod).await?;
        undo.push(Undo::Mode(Box::new(pair.clone())));
        undo.push(Undo::PodLink(req.netns.clone(), req.ifname.clone()));
        crate::steps::mark("macvlan");
        // IPv6 off until the endpoint shows its network has it (most have not).
        let pod_index = prepare_pod_side(pod, &req.ifname, false, true).await?;
        Ok(Box::new(Handed { pair, pod_index }))
    }

    async fn finish(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
        _mtu: u32,
        prepared: Prepared,
        ep: &Endpoint,
        undo: &mut Vec<Undo>,
    ) -> Result<Port, ManagerError> {
        let Handed { pair, pod_index } = *prepared
            .downcast::<Handed>()
            .map_err(|_| ManagerError::new(ErrorKind::Internal, "pool: prepared state lost"))?;
        let mac = endpoint_mac(ep)?;
        // The macvlan takes its lower link's MAC (passthru), now as later.
        self.side
            .set_alias_mac(
                pair.index,
                &alias(ep_id, &req.attachment_network),
                Some(mac),
            )
            .await?;
        finish_macvlan_pod_side(pod, &req.ifname, pod_index, ep).await?;
        crate::steps::mark("pod_side");
        undo.push(Undo::Flows(ep_id.to_string()));
        self.host.switch.program_endpoint(pair.ofport, ep).await?;
        crate::steps::mark("flows");
        self.st().bound.insert(
            ep_id.to_string(),
            Bound {
                pair: pair.clone(),
                cni_network: alias_network(&req.attachment_network),
                netns: req.netns.clone(),
                ifname: req.ifname.clone(),
            },
        );
        log_added(ep_id, ep, &pair.name);
        Ok(Port {
            name: pair.name,
            mac: pair.host_mac,
        })
    }

    async fn undo(&self, step: Box<dyn Any + Send>) -> Result<(), String> {
        match step.downcast::<Pair>() {
            Ok(pair) => self.free(*pair).await.map_err(|e| e.to_string()),
            Err(_) => Ok(()),
        }
    }

    /// Flows, binding, mark; the port goes back to the pool (the pod's interface goes with its
    /// namespace, or at the port's next use).
    async fn release(&self, ep_id: &str) -> Result<bool, ManagerError> {
        let Some(b) = self.bound_of(ep_id) else {
            return Ok(false);
        };
        self.host.switch.remove_endpoint_flows(ep_id).await?;
        self.st().bound.remove(ep_id);
        let mut pair = b.pair;
        pair.last = Some((b.netns, b.ifname));
        let name = pair.name.clone();
        if let Err(e) = self.free(pair).await {
            tracing::warn!(port = %name, error = %e, "clear a pooled port's mark");
        }
        // At the next lull: the pod's interface, if its namespace outlives the DEL, and the
        // surplus (`reap`).
        self.host.reaper.wake();
        crate::steps::mark("release");
        Ok(true)
    }

    fn learn_netns(&self, ep_id: &str, netns: &std::path::Path) {
        if let Some(b) = self.st().bound.get_mut(ep_id)
            && b.netns.as_os_str().is_empty()
        {
            b.netns = netns.to_path_buf();
        }
    }

    fn shared_port_of(&self, ep_id: &str) -> Option<String> {
        self.bound_of(ep_id).map(|b| b.pair.name)
    }

    fn bound(&self) -> Vec<(String, String)> {
        self.st()
            .bound
            .iter()
            .map(|(id, b)| (id.clone(), b.cni_network.clone()))
            .collect()
    }

    /// A pooled port whose mark names a live endpoint serves it (its flows are restored); one
    /// whose endpoint is released (a DEL cut short) is free again; half-made pairs (a refill
    /// cut short) are deleted.
    async fn restore(&self, found: &mut Restore<'_>) -> Result<(), ManagerError> {
        let waiting: HashMap<String, crate::netlink::PoolLink> = self
            .side
            .links_with_alias()
            .await?
            .into_iter()
            .map(|l| (l.name.clone(), l))
            .collect();
        let (mut free, mut bound, mut kept) = (Vec::new(), Vec::new(), BTreeSet::new());
        for p in &found.ports.pool {
            let (Some(w), true, Some(of)) = (
                waiting.get(&p.name),
                found.links.contains_key(&p.name),
                p.ofport.or(p.ofport_request),
            ) else {
                tracing::info!(port = %p.name, "deleting half a pooled port");
                self.host.switch.remove_port(&p.name).await?;
                continue;
            };
            kept.insert(p.name.clone());
            let pair = Pair {
                name: p.name.clone(),
                index: w.index,
                ofport: of,
                host_mac: self.host.ns.mac(&p.name).await?.unwrap_or_default(),
                last: None,
            };
            let Some((ep_id, net)) = parse_alias(&w.alias) else {
                free.push(pair);
                continue;
            };
            match found.by_id.get(ep_id.as_str()) {
                Some(ep) => {
                    found.with_port.insert(ep_id.clone());
                    found.locals.push((of, (*ep).clone()));
                    let ifname = ep.intf_name.clone();
                    bound.push((
                        ep_id,
                        Bound {
                            pair,
                            cni_network: net,
                            netns: PathBuf::new(),
                            ifname,
                        },
                    ));
                }
                None => {
                    tracing::info!(endpoint = %ep_id, port = %p.name, "freeing the pooled port of a removed endpoint");
                    self.side.set_alias_mac(w.index, "", None).await?;
                    free.push(pair);
                }
            }
        }
        for (name, w) in &waiting {
            if is_pool_ifname(name) && !kept.contains(name) {
                self.side.delete_index(w.index).await?;
            }
        }
        for name in found.links.keys() {
            if is_pool_ifname(name) && !kept.contains(name) {
                self.host.ns.delete(name).await?;
            }
        }
        tracing::info!(free = free.len(), bound = bound.len(), "port pool restored");
        let mut st = self.st();
        st.free = free.into();
        st.bound = bound.into_iter().collect();
        self.refill.notify_one();
        Ok(())
    }

    /// Pooled ports beyond twice what the pool keeps (a burst of pods has ended) go to the
    /// reaper; the interfaces released pods left on the others (their namespaces outlived the
    /// DEL) are deleted, as a DEL would have, but at a lull and not in the DEL's time.
    async fn reap(&self) {
        let surplus = self.take_surplus();
        if !surplus.is_empty() {
            tracing::info!(ports = surplus.len(), "deleting surplus pooled ports");
        }
        for p in surplus {
            self.host.reaper.queue("", &p.name);
        }
        // Out of the free list while their old interfaces go: no ADD can take one meanwhile and
        // put a new interface on it that this would then delete.
        let held: Vec<Pair> = {
            let mut st = self.st();
            let (held, free): (Vec<Pair>, Vec<Pair>) =
                st.free.drain(..).partition(|p| p.last.is_some());
            st.free = free.into();
            held
        };
        let (mut deleted, tried) = (0usize, held.len());
        for mut pair in held {
            if let Some((netns, old)) = pair.last.take() {
                let index = pair.index;
                match delete_pod_link(self.host.kernel.as_ref(), &netns, &old, |l| l == index).await
                {
                    Ok(true) => deleted += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(ifname = %old, netns = %netns.display(), error = %e, "delete a released pod's interface; its port's next use deletes it");
                        pair.last = Some((netns, old));
                    }
                }
            }
            self.put_back(pair);
        }
        if tried > 0 {
            tracing::info!(
                deleted,
                gone = tried - deleted,
                "interfaces released pods left on pooled ports"
            );
        }
    }

    /// Keeps the pool's size of free ports ready (more during a burst: `State::want`): makes
    /// what is missing whenever the pool runs low (at start, and when a take finds it half
    /// empty).
    async fn upkeep(&self) {
        loop {
            let need = {
                let mut st = self.st();
                let want = st.want(self.target);
                let n = want.saturating_sub(st.free.len() + st.making);
                st.making += n;
                n
            };
            if need > 0 {
                let made = self.make(need).await;
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
}
