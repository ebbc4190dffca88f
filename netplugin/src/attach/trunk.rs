//! Network trunks (`netplugin --trunks`): the CNI pods of one network on this host share one
//! switch port.
//!
//! Why: on the userspace datapath ovs-vswitchd's main thread polls every port at each wake-up
//! and reconfigures every port whenever a port or a link of its namespace changes, so the cost
//! of a pod's ADD grows with the pods already there, and making ports during a burst of pods
//! stalls the switch (BENCHMARKS.md, issue 4). A trunk is a veth pair like a pooled port (host
//! end an OVS port, other end waiting in the side namespace), made
//! at the first pod of a network on this host. Each pod gets a *VEPA macvlan* of the waiting
//! end, made directly inside the pod's namespace, with the endpoint's MAC: VEPA sends
//! everything a pod sends, to its trunk-mates too, out through the switch (so policy applies),
//! and hands what the switch sends down to the pod whose MAC it is addressed to; broadcasts go
//! to every pod of the trunk but the sender. The switch tells the pods apart by MAC (its flows
//! already pinned each port's MAC and addresses) and sends a trunk-mate's traffic back out of
//! the port it came in on. A network's broadcasts stay in it: one trunk per network. The
//! kernel refuses two macvlans of one lower link with the same MAC, so a pod cannot take
//! another's.
//!
//! Which endpoint is on which trunk is kept in a file per endpoint in the agent's state
//! directory, so that a restarted agent knows (nothing in OVS changes per pod: writing it there
//! would make ovs-vswitchd reconfigure the bridge). docs/decisions.md "Network trunks".

use super::{
    Attach, Host, Port, Prepared, Restore, Undo, endpoint_mac, finish_macvlan_pod_side, log_added,
    make_waiting_pair, prepare_pod_side,
};
use crate::kernel::{MacVlanMode, Ns};
use crate::manager::{AddRequest, ErrorKind, ManagerError};
use crate::names::{alias, alias_network, ids, is_trunk_ifname, trunk_ifname};
use crate::netlink::LinkError;
use model::agent::Endpoint;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A network's trunk on this host.
#[derive(Debug, Clone)]
pub struct Trunk {
    /// Both ends' name, `vt` and 12 hex digits of the network's name.
    pub name: String,
    /// The waiting end's index in the side namespace: the pods' macvlans' lower link.
    pub lower: u32,
    pub ofport: u32,
    /// The host end's MAC address.
    pub host_mac: String,
}

/// An endpoint on a trunk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Binding {
    /// The trunk's name.
    pub trunk: String,
    /// The CNI network config's name (GC scope).
    pub cni_network: String,
    /// The pod's namespace and interface.
    pub netns: PathBuf,
    pub ifname: String,
    /// The interface's MAC address (the endpoint's).
    pub mac: String,
    /// The interface's index in its namespace (0 in records from before it was kept): a
    /// leftover is deleted by index, never a later interface of the same name and alias.
    #[serde(default)]
    pub index: u32,
}

/// A released endpoint's interface, which may outlive the release (its namespace kept, or on
/// its way out), or the interface of an ADD that a crash cut short: the reaper deletes it, or
/// an ADD that wants its MAC does first. Each is kept in a file of its own in the state
/// directory's `leftovers/` until deleted: an agent killed meanwhile finds it at restart
/// (else the interface would keep its MAC, and every later pod given that MAC would fail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftover {
    pub netns: PathBuf,
    pub ifname: String,
    /// The alias it carries ("<endpoint id> <CNI network>"): a new interface of the same name
    /// has another, so only this one is deleted.
    pub alias: String,
    pub mac: String,
    /// Its index in `netns`, when known: then only that interface is deleted.
    #[serde(default)]
    pub index: u32,
    /// An ADD's interface, written before the interface is made: it may carry no alias yet.
    #[serde(default)]
    pub unfinished: bool,
    /// Its file.
    #[serde(skip)]
    pub file: PathBuf,
}

pub struct TrunkMode {
    host: Arc<Host>,
    /// Where the trunks' waiting ends are.
    side: Ns,
    /// The trunks' MTU: the largest a pod on them can have.
    mtu: u32,
    /// One file per endpoint on a trunk.
    dir: PathBuf,
    /// Idle trunks are deleted after this long (see [`Attach::upkeep`]).
    idle: Duration,
    /// Trunks by network ("tenant/network"), with when each was last asked for or left by
    /// an endpoint; the lock serializes making and deleting them.
    nets: tokio::sync::Mutex<HashMap<String, (Trunk, Instant)>>,
    bound: Mutex<HashMap<String, Binding>>,
    /// Interfaces of released endpoints, until the reaper's next round.
    leftovers: Mutex<Vec<Leftover>>,
}

/// The state directory's subdirectory of [`Leftover`] records.
const LEFTOVERS: &str = "leftovers";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What [`Attach::prepare`] hands to [`Attach::finish`]: the trunk and the pod's interface.
struct Handed {
    trunk: Trunk,
    pod_index: u32,
    /// The ADD's own [`Leftover`] record, dropped once the endpoint is bound.
    intent: PathBuf,
}

/// What [`Attach::prepare`] hands over when the network has no trunk here yet: all is done in
/// [`Attach::finish`], once netmaster has shown the network exists.
struct Deferred;

/// An undo step: the ADD's interface record (its interface goes with [`Undo::PodLink`]).
struct Intent(PathBuf);

/// An undo step: the trunk of `network` was made by this ADD at `at`.
struct MadeTrunk {
    network: String,
    at: Instant,
}

impl TrunkMode {
    /// Opens (or makes) the side namespace at `side_netns` and the state directory `dir`.
    pub async fn open(
        host: Arc<Host>,
        side_netns: &Path,
        dir: &Path,
        mtu: u32,
        idle: Duration,
    ) -> Result<Self, LinkError> {
        let side = host.kernel.open_side(side_netns).await?;
        std::fs::create_dir_all(dir.join(LEFTOVERS))
            .map_err(|e| LinkError::other(format!("make state directory {}", dir.display()), e))?;
        Ok(TrunkMode {
            host,
            side,
            mtu,
            dir: dir.to_path_buf(),
            // At least a second: an ADD between getting its trunk and recording its endpoint
            // must never see the trunk deleted under it.
            idle: idle.max(Duration::from_secs(1)),
            nets: tokio::sync::Mutex::new(HashMap::new()),
            bound: Mutex::new(HashMap::new()),
            leftovers: Mutex::new(Vec::new()),
        })
    }

    /// The trunk of `network` ("tenant/network"), made if this host has none yet: a veth pair
    /// (see `make_waiting_pair`), the waiting end without TX checksum offload, the host end an
    /// OVS port. A trunk half made is deleted.
    pub async fn ensure(&self, network: &str) -> Result<Trunk, ManagerError> {
        Ok(self.ensure_made(network).await?.0)
    }

    /// [`TrunkMode::ensure`], and when this call made the trunk, when (see [`MadeTrunk`]).
    async fn ensure_made(&self, network: &str) -> Result<(Trunk, Option<Instant>), ManagerError> {
        let mut nets = self.nets.lock().await;
        if let Some((t, used)) = nets.get_mut(network) {
            *used = Instant::now();
            return Ok((t.clone(), None));
        }
        let name = trunk_ifname(network);
        let (host, switch) = (&self.host.ns, &self.host.switch);
        let made = async {
            // A pair an earlier agent left half-made is in the way.
            host.delete(&name).await?;
            self.side.delete(&name).await?;
            let (lower, host_mac) = make_waiting_pair(host, &self.side, &name, self.mtu).await?;
            self.side
                .disable_tx_checksums(std::slice::from_ref(&name))
                .await?;
            let ofport = switch.add_trunk_port(&name, network).await.map_err(|e| {
                ManagerError::from(e).context(format!(
                    "add trunk {name} of network {network} to the bridge"
                ))
            })?;
            Ok::<_, ManagerError>(Trunk {
                name: name.clone(),
                lower,
                ofport,
                host_mac,
            })
        }
        .await;
        match made {
            Ok(t) => {
                switch.set_trunks(vec![t.ofport]).await;
                tracing::info!(trunk = %name, network, ofport = t.ofport, "network trunk made");
                let at = Instant::now();
                nets.insert(network.to_string(), (t.clone(), at));
                Ok((t, Some(at)))
            }
            Err(e) => {
                let _ = switch.remove_port(&name).await;
                let _ = host.delete(&name).await;
                Err(e)
            }
        }
    }

    /// Deletes the trunk a failed ADD made, unless another ADD has asked for it since (it may
    /// be about to use it) or an endpoint is on it: a bad request (a network netmaster does not
    /// know) must not leave a port and a veth pair behind for the idle time.
    async fn unmake(&self, made: MadeTrunk) -> Result<(), String> {
        let mut nets = self.nets.lock().await;
        let Some((t, used)) = nets.get(&made.network).cloned() else {
            return Ok(());
        };
        let busy = lock(&self.bound).values().any(|b| b.trunk == t.name);
        if used != made.at || busy {
            return Ok(());
        }
        self.delete_trunk(&t).await?;
        nets.remove(&made.network);
        self.host.switch.unset_trunks(&[t.ofport]).await;
        tracing::info!(trunk = %t.name, network = %made.network, "deleted the network trunk a failed ADD made");
        Ok(())
    }

    /// Deletes a trunk's port and veth pair (the waiting end goes with the host end).
    async fn delete_trunk(&self, t: &Trunk) -> Result<(), String> {
        self.host
            .switch
            .remove_port(&t.name)
            .await
            .map_err(|e| e.to_string())?;
        self.host
            .ns
            .delete(&t.name)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Forgets trunk `name` (its link is gone), so that the next ADD makes the network's trunk
    /// again; its port goes then too (see [`TrunkMode::ensure`]).
    async fn forget(&self, name: &str) {
        self.nets.lock().await.retain(|_, (t, _)| t.name != name);
    }

    /// Deletes the trunks that have served no endpoint for `idle` (a network whose pods are
    /// gone, or the network itself): port and veth pair. Under the trunks' lock, so that an
    /// ADD never gets a trunk on its way out (it makes a new one after). Returns the OpenFlow
    /// numbers of the trunks deleted.
    pub async fn delete_idle(&self, idle: Duration) -> Vec<u32> {
        let mut nets = self.nets.lock().await;
        let busy: std::collections::HashSet<String> = lock(&self.bound)
            .values()
            .map(|b| b.trunk.clone())
            .collect();
        let idle_ones: Vec<String> = nets
            .iter()
            .filter(|(_, (t, used))| used.elapsed() >= idle && !busy.contains(&t.name))
            .map(|(n, _)| n.clone())
            .collect();
        let mut gone = Vec::new();
        for network in idle_ones {
            let Some((t, _)) = nets.get(&network).cloned() else {
                continue;
            };
            match self.delete_trunk(&t).await {
                Ok(_) => {
                    tracing::info!(trunk = %t.name, network, "deleted an idle network trunk");
                    nets.remove(&network);
                    gone.push(t.ofport);
                }
                Err(e) => {
                    tracing::warn!(trunk = %t.name, error = %e, "delete an idle network trunk; retrying later")
                }
            }
        }
        gone
    }

    /// Gives the pod's interface on `trunk` the endpoint's MAC (and its alias). The kernel
    /// refuses a MAC another macvlan of the trunk has: a released endpoint's, whose address
    /// (and so MAC) went to this one. If its namespace is still there, that interface is
    /// deleted; if the namespace is on its way out (a runtime removes it after DEL, and the
    /// kernel destroys it a little later), the MAC is free in a moment.
    async fn set_pod_mac(
        &self,
        trunk: &Trunk,
        pod: &Ns,
        idx: u32,
        alias: &str,
        ep: &Endpoint,
    ) -> Result<(), ManagerError> {
        const WAIT: Duration = Duration::from_secs(2);
        let mac = endpoint_mac(ep)?;
        let mac_text = &ep.mac_address;
        let start = std::time::Instant::now();
        let mut old = self.take_leftover_with_mac(mac_text);
        loop {
            let e = match pod.set_alias_mac(idx, alias, Some(mac)).await {
                Ok(()) => {
                    // Not in the way (its namespace is gone): the reaper's, with its record.
                    if let Some(l) = old {
                        lock(&self.leftovers).push(l);
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            if !e.is(libc::EADDRINUSE) {
                if let Some(l) = old {
                    lock(&self.leftovers).push(l);
                }
                return Err(e.into());
            }
            if let Some(l) = old.take()
                && self.drop_leftover(&l).await?
            {
                tracing::info!(mac = %mac_text, netns = %l.netns.display(), "deleted a removed endpoint's interface: it held the MAC");
                continue;
            }
            if start.elapsed() > WAIT {
                return Err(ManagerError::from(e).details(format!(
                    "another interface on trunk {} has MAC {mac_text}: a removed pod's, whose network namespace is still there; delete that namespace",
                    trunk.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Makes the pod's interface on `trunk`. An interface of the same name in the pod's
    /// namespace that is a released endpoint's macvlan on a trunk (the namespace was ADDed
    /// again under another container id) is in the way: it is deleted.
    async fn pod_link(
        &self,
        trunk: &Trunk,
        ifname: &str,
        mtu: u32,
        pod: &Ns,
    ) -> Result<(), ManagerError> {
        let create = || {
            self.side
                .create_macvlan(trunk.lower, ifname, mtu, pod.as_ref(), MacVlanMode::Vepa)
        };
        let refused = || {
            ManagerError::new(
                ErrorKind::Internal,
                format!(
                    "create interface {ifname} on trunk {}: the kernel refused the trunk's link",
                    trunk.name
                ),
            )
        };
        match create().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(refused()),
            // The trunk's other end is gone (someone deleted the trunk's link): forget the
            // trunk, so that the runtime's retry makes a new one.
            Err(e) if e.is(libc::ENODEV) => {
                self.forget(&trunk.name).await;
                Err(ManagerError::new(
                    ErrorKind::TryAgain,
                    format!(
                        "create interface {ifname} on trunk {}: the trunk's link is gone; it is made again at the next try",
                        trunk.name
                    ),
                ))
            }
            // Only a macvlan of this trunk is ours to delete. Gone meanwhile (the reaper
            // deleted it since) is as good.
            Err(e)
                if e.is(libc::EEXIST)
                    && !self.is_bound_at(pod.path(), ifname)
                    && match pod.macvlan_lower(ifname).await? {
                        Some((l, _)) => l == trunk.lower,
                        None => pod.index(ifname).await?.is_none(),
                    } =>
            {
                if pod.delete(ifname).await? {
                    tracing::info!(ifname, netns = %pod.path().display(), "deleted a removed endpoint's interface: it was in the way");
                }
                if create().await? {
                    Ok(())
                } else {
                    Err(refused())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a released endpoint's interface if its namespace is still there and the
    /// interface still carries the endpoint's alias (a new pod's interface of the same name has
    /// another, or none yet). Whether it deleted one.
    async fn delete_leftover(&self, left: &Leftover) -> Result<bool, LinkError> {
        let Ok(pod) = self.host.kernel.open(&left.netns).await else {
            return Ok(false); // The namespace is gone, and its interfaces with it.
        };
        let old = pod
            .links_with_alias()
            .await?
            .into_iter()
            .find(|l| is_leftover(left, l));
        match old {
            // By index: a link made since under the same name is another.
            Some(l) => pod.delete_index(l.index).await,
            None => Ok(false),
        }
    }

    /// [`TrunkMode::delete_leftover`], and its record once its interface is gone.
    async fn drop_leftover(&self, left: &Leftover) -> Result<bool, LinkError> {
        let deleted = self.delete_leftover(left).await?;
        remove_file(&left.file);
        Ok(deleted)
    }

    /// Writes `left`'s record (a new file); returns it with its file set.
    fn write_leftover(&self, mut left: Leftover) -> Leftover {
        left.file = self
            .dir
            .join(LEFTOVERS)
            .join(format!("{}.json", uuid::Uuid::new_v4()));
        if let Err(e) = write_atomic(&left.file, &left) {
            tracing::warn!(ifname = %left.ifname, netns = %left.netns.display(), error = %e, "record a removed endpoint's interface: an agent restart before the reaper deletes it would forget it");
        }
        left
    }

    /// The [`Leftover`] records in the state directory (unreadable ones deleted).
    fn leftover_records(&self) -> Vec<Leftover> {
        read_records(&self.dir.join(LEFTOVERS))
            .into_iter()
            .map(|(file, l): (PathBuf, Leftover)| Leftover { file, ..l })
            .collect()
    }

    fn record(&self, ep_id: &str) -> PathBuf {
        self.dir.join(format!("{ep_id}.json"))
    }

    /// Records endpoint `ep_id` on its trunk, in memory and in its file.
    pub fn bind(&self, ep_id: &str, b: Binding) -> Result<(), LinkError> {
        let path = self.record(ep_id);
        write_atomic(&path, &b).map_err(|e| {
            LinkError::other(format!("record endpoint {ep_id} in {}", path.display()), e)
        })?;
        lock(&self.bound).insert(ep_id.to_string(), b);
        Ok(())
    }

    /// Forgets endpoint `ep_id` (and its file); its interface is left to the reaper (see
    /// [`Leftover`]).
    pub fn unbind(&self, ep_id: &str) -> Option<Binding> {
        let b = lock(&self.bound).remove(ep_id);
        // Its interface's record before the endpoint's goes: a crash in between leaves both,
        // and the restart keeps the live endpoint's interface (see `restore`).
        if let Some(b) = &b {
            self.leave(ep_id, b);
        }
        remove_file(&self.record(ep_id));
        let b = b?;
        if let Ok(mut nets) = self.nets.try_lock() {
            // Idle from now (if the lock is busy, from its last ADD: close enough).
            for (t, used) in nets.values_mut() {
                if t.name == b.trunk {
                    *used = Instant::now();
                }
            }
        }
        Some(b)
    }

    /// Records endpoint `ep_id`'s interface as a [`Leftover`], for the reaper.
    fn leave(&self, ep_id: &str, b: &Binding) {
        let left = self.write_leftover(Leftover {
            netns: b.netns.clone(),
            ifname: b.ifname.clone(),
            alias: format!("{ep_id} {}", b.cni_network),
            mac: b.mac.clone(),
            index: b.index,
            unfinished: false,
            file: PathBuf::new(),
        });
        lock(&self.leftovers).push(left);
    }

    /// The released endpoints' interfaces to delete (see [`Leftover`]).
    pub fn take_leftovers(&self) -> Vec<Leftover> {
        std::mem::take(&mut *lock(&self.leftovers))
    }

    /// The released endpoint's interface with MAC `mac`, if the reaper has not taken it yet.
    pub fn take_leftover_with_mac(&self, mac: &str) -> Option<Leftover> {
        let mut l = lock(&self.leftovers);
        let i = l.iter().position(|x| x.mac == mac)?;
        Some(l.swap_remove(i))
    }

    pub fn binding(&self, ep_id: &str) -> Option<Binding> {
        lock(&self.bound).get(ep_id).cloned()
    }

    /// Whether interface `ifname` of the namespace at `netns` is a live endpoint's.
    pub fn is_bound_at(&self, netns: &Path, ifname: &str) -> bool {
        lock(&self.bound)
            .values()
            .any(|b| b.netns == netns && b.ifname == ifname)
    }

    /// The records in the state directory: (endpoint id, binding). Unreadable ones are
    /// deleted (a crash mid-write leaves only a `.tmp`).
    pub fn records(&self) -> Vec<(String, Binding)> {
        read_records(&self.dir)
            .into_iter()
            .filter_map(|(path, b)| {
                let id = path.file_name()?.to_str()?.strip_suffix(".json")?;
                Some((id.to_string(), b))
            })
            .collect()
    }

    /// Deletes endpoint `ep_id`'s record (a restart found its endpoint released: a DEL the
    /// agent missed); its interface, if its namespace is still there, is queued for the reaper.
    pub fn forget_record(&self, ep_id: &str, b: &Binding) {
        self.leave(ep_id, b);
        remove_file(&self.record(ep_id));
    }

    /// The [`Leftover`] records a previous agent left, made ready for the reaper: a record
    /// whose interface is a live endpoint's (a crash between the two writes of a release) is
    /// dropped, and an unfinished ADD's interface gets its index now, before any ADD can make
    /// another of the same name (the reaper deletes by index).
    async fn restore_leftovers(&self, bound: &[(String, Binding)]) -> Vec<Leftover> {
        let mut out = Vec::new();
        for mut l in self.leftover_records() {
            let live = bound.iter().any(|(id, b)| {
                b.netns == l.netns
                    && b.ifname == l.ifname
                    && if b.index != 0 && l.index != 0 {
                        b.index == l.index
                    } else {
                        alias_of(id, b) == l.alias
                    }
            });
            if live {
                remove_file(&l.file);
                continue;
            }
            if l.index == 0 {
                let Ok(pod) = self.host.kernel.open(&l.netns).await else {
                    remove_file(&l.file); // The namespace is gone, and the interface with it.
                    continue;
                };
                match pod
                    .links_with_alias()
                    .await
                    .map(|ls| ls.into_iter().find(|x| is_leftover(&l, x)))
                {
                    Ok(Some(x)) => {
                        l.index = x.index;
                        // An unfinished ADD's interface may have its endpoint's MAC already:
                        // an ADD that wants it finds it by MAC (see `set_pod_mac`).
                        if l.mac.is_empty() {
                            l.mac = pod.mac(&l.ifname).await.ok().flatten().unwrap_or_default();
                        }
                    }
                    Ok(None) => {
                        remove_file(&l.file);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(ifname = %l.ifname, netns = %l.netns.display(), error = %e, "find a removed endpoint's interface; keeping its record for the next start");
                        continue;
                    }
                }
            }
            out.push(l);
        }
        out
    }
    /// The first half of a trunk pod's ADD: the network's trunk (made if needed), the pod's
    /// interface on it, prepared but without address or MAC.
    async fn pod_side(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
        mtu: u32,
        undo: &mut Vec<Undo>,
    ) -> Result<Handed, ManagerError> {
        let network = format!("{}/{}", req.tenant, req.network);
        let (trunk, made) = self.ensure_made(&network).await?;
        if let Some(at) = made {
            undo.push(Undo::Mode(Box::new(MadeTrunk { network, at })));
        }
        // Recorded before it is made: an agent killed before the endpoint is bound leaves an
        // interface that would keep its MAC from the next pod given it.
        let intent = self
            .write_leftover(Leftover {
                netns: req.netns.clone(),
                ifname: req.ifname.clone(),
                alias: alias(ep_id, &req.attachment_network),
                mac: String::new(),
                index: 0,
                unfinished: true,
                file: PathBuf::new(),
            })
            .file;
        undo.push(Undo::Mode(Box::new(Intent(intent.clone()))));
        self.pod_link(&trunk, &req.ifname, mtu, pod).await?;
        undo.push(Undo::PodLink(req.netns.clone(), req.ifname.clone()));
        crate::steps::mark("macvlan");
        // IPv6 off until the endpoint shows its network has it (most have not).
        let pod_index = prepare_pod_side(pod, &req.ifname, false, true).await?;
        Ok(Handed {
            trunk,
            pod_index,
            intent,
        })
    }
}

/// The alias of endpoint `ep_id`'s interface.
fn alias_of(ep_id: &str, b: &Binding) -> String {
    format!("{ep_id} {}", b.cni_network)
}

/// Whether link `l` is the interface `left` stands for: its name, and its index when known,
/// else its alias (or none yet, for an ADD cut short before it set one).
fn is_leftover(left: &Leftover, l: &crate::netlink::PoolLink) -> bool {
    l.name == left.ifname
        && if left.index != 0 {
            l.index == left.index
        } else {
            l.alias == left.alias || (left.unfinished && l.alias.is_empty())
        }
}

/// Writes `v` as JSON to `path` through a temporary file, so that a crash leaves the old file
/// or the new one, never half of one.
fn write_atomic(path: &Path, v: &impl Serialize) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// Removes a record; gone already is fine.
fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %e, "remove a trunk record");
    }
}

/// The JSON records (files) in `dir` that parse as `T`: (path, record). Unreadable ones are
/// deleted (a crash mid-write leaves only a `.tmp`).
fn read_records<T: serde::de::DeserializeOwned>(dir: &Path) -> Vec<(PathBuf, T)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = e.path();
        let parsed = (path.extension().and_then(|x| x.to_str()) == Some("json"))
            .then(|| std::fs::read(&path).ok())
            .flatten()
            .and_then(|b| serde_json::from_slice::<T>(&b).ok());
        match parsed {
            Some(r) => out.push((path, r)),
            None => {
                tracing::info!(file = %path.display(), "deleting an unreadable trunk record");
                remove_file(&path);
            }
        }
    }
    out
}

#[async_trait::async_trait]
impl Attach for TrunkMode {
    /// CNI pods whose MTU the trunks carry, unless the endpoint already has a veth port (an
    /// ADD from before trunks were on).
    fn takes(&self, req: &AddRequest, ep_id: &str, mtu: u32) -> bool {
        super::takes_shared(&self.host, req, ep_id, mtu, self.mtu)
    }

    async fn in_place(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
    ) -> Result<Option<Port>, ManagerError> {
        let Some(b) = self.binding(ep_id) else {
            return Ok(None);
        };
        let trunk = self
            .ensure(&format!("{}/{}", req.tenant, req.network))
            .await?;
        if b.ifname == req.ifname
            && b.trunk == trunk.name
            && pod.macvlan_lower(&req.ifname).await?.map(|l| l.0) == Some(trunk.lower)
        {
            if b.netns != req.netns {
                self.bind(
                    ep_id,
                    Binding {
                        netns: req.netns.clone(),
                        ..b
                    },
                )?;
            }
            return Ok(Some(Port {
                name: trunk.name,
                mac: trunk.host_mac,
            }));
        }
        // The pod's interface is gone (a new namespace, say): start again.
        self.release(ep_id).await?;
        Ok(None)
    }

    async fn prepare(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
        mtu: u32,
        undo: &mut Vec<Undo>,
    ) -> Result<Prepared, ManagerError> {
        let network = format!("{}/{}", req.tenant, req.network);
        // A network without a trunk here yet waits for netmaster to show it exists: a bogus
        // network name must not cost a trunk (a port, a veth pair, a reconfiguration of the
        // switch) made and deleted again.
        if !self.nets.lock().await.contains_key(&network) {
            return Ok(Box::new(Deferred));
        }
        Ok(Box::new(self.pod_side(req, ep_id, pod, mtu, undo).await?))
    }

    async fn finish(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
        mtu: u32,
        prepared: Prepared,
        ep: &Endpoint,
        undo: &mut Vec<Undo>,
    ) -> Result<Port, ManagerError> {
        let handed = match prepared.downcast::<Handed>() {
            Ok(h) => *h,
            Err(other) if other.is::<Deferred>() => {
                self.pod_side(req, ep_id, pod, mtu, undo).await?
            }
            Err(_) => {
                return Err(ManagerError::new(
                    ErrorKind::Internal,
                    "trunk: prepared state lost",
                ));
            }
        };
        let Handed {
            trunk,
            pod_index,
            intent,
        } = handed;
        let alias = alias(ep_id, &req.attachment_network);
        self.set_pod_mac(&trunk, pod, pod_index, &alias, ep).await?;
        finish_macvlan_pod_side(pod, &req.ifname, pod_index, ep).await?;
        crate::steps::mark("pod_side");
        self.bind(
            ep_id,
            Binding {
                trunk: trunk.name.clone(),
                cni_network: alias_network(&req.attachment_network),
                netns: req.netns.clone(),
                ifname: req.ifname.clone(),
                mac: ep.mac_address.clone(),
                index: pod_index,
            },
        )?;
        remove_file(&intent);
        undo.push(Undo::Mode(Box::new(ep_id.to_string())));
        undo.push(Undo::Flows(ep_id.to_string()));
        self.host.switch.program_endpoint(trunk.ofport, ep).await?;
        crate::steps::mark("flows");
        log_added(ep_id, ep, &trunk.name);
        Ok(Port {
            name: trunk.name,
            mac: trunk.host_mac,
        })
    }

    async fn undo(&self, step: Box<dyn Any + Send>) -> Result<(), String> {
        let step = match step.downcast::<String>() {
            Ok(ep_id) => {
                self.unbind(&ep_id);
                return Ok(());
            }
            Err(other) => other,
        };
        let step = match step.downcast::<Intent>() {
            Ok(intent) => {
                remove_file(&intent.0);
                return Ok(());
            }
            Err(other) => other,
        };
        match step.downcast::<MadeTrunk>() {
            Ok(made) => self.unmake(*made).await,
            Err(_) => Ok(()),
        }
    }

    /// Flows and record. Its interface goes with the pod's namespace, or at the reaper's next
    /// round if the namespace outlives the DEL, or when its MAC is wanted again.
    async fn release(&self, ep_id: &str) -> Result<bool, ManagerError> {
        if self.binding(ep_id).is_none() {
            return Ok(false);
        }
        self.host.switch.remove_endpoint_flows(ep_id).await?;
        self.unbind(ep_id);
        self.host.reaper.wake();
        crate::steps::mark("release");
        Ok(true)
    }

    fn shared_port_of(&self, ep_id: &str) -> Option<String> {
        self.binding(ep_id).map(|b| b.trunk)
    }

    fn bound(&self) -> Vec<(String, String)> {
        lock(&self.bound)
            .iter()
            .map(|(id, b)| (id.clone(), b.cni_network.clone()))
            .collect()
    }

    /// A trunk port whose two ends are there serves its network again; an endpoint whose
    /// record names a live endpoint and a trunk is on it (its flows are restored); records of
    /// released endpoints are deleted; half-made trunks too.
    async fn restore(&self, found: &mut Restore<'_>) -> Result<(), ManagerError> {
        // The side namespace's links, listed once: trunks' other ends, and half-made ones.
        let waiting: HashMap<String, u32> = self
            .side
            .links_with_alias()
            .await?
            .into_iter()
            .map(|l| (l.name, l.index))
            .collect();
        let mut trunks: Vec<(String, Trunk)> = Vec::new();
        for p in &found.ports.trunks {
            let network = p.external_ids.get(ids::TRUNK).cloned().unwrap_or_default();
            let (Some(&lower), true, Some(of)) = (
                waiting.get(&p.name),
                found.links.contains_key(&p.name),
                p.ofport.or(p.ofport_request),
            ) else {
                tracing::info!(trunk = %p.name, "deleting half a network trunk");
                self.host.switch.remove_port(&p.name).await?;
                continue;
            };
            trunks.push((
                network,
                Trunk {
                    name: p.name.clone(),
                    lower,
                    ofport: of,
                    host_mac: self.host.ns.mac(&p.name).await?.unwrap_or_default(),
                },
            ));
        }
        let kept: BTreeSet<&str> = trunks.iter().map(|(_, t)| t.name.as_str()).collect();
        for name in found.links.keys() {
            if is_trunk_ifname(name) && !kept.contains(name.as_str()) {
                self.host.ns.delete(name).await?;
            }
        }
        for (name, index) in &waiting {
            if is_trunk_ifname(name) && !kept.contains(name.as_str()) {
                self.side.delete_index(*index).await?;
            }
        }
        let of_trunk: HashMap<&str, u32> = trunks
            .iter()
            .map(|(_, t)| (t.name.as_str(), t.ofport))
            .collect();
        let mut bound = Vec::new();
        for (ep_id, b) in self.records() {
            match (
                found.by_id.get(ep_id.as_str()),
                of_trunk.get(b.trunk.as_str()),
            ) {
                (Some(ep), Some(of)) => {
                    found.with_port.insert(ep_id.clone());
                    found.locals.push((*of, (*ep).clone()));
                    bound.push((ep_id, b));
                }
                _ => {
                    tracing::info!(endpoint = %ep_id, trunk = %b.trunk, "forgetting a removed endpoint's trunk record");
                    self.forget_record(&ep_id, &b);
                    self.host.reaper.wake();
                }
            }
        }
        self.host
            .switch
            .set_trunks(of_trunk.values().copied().collect())
            .await;
        tracing::info!(
            trunks = trunks.len(),
            endpoints = bound.len(),
            "network trunks restored"
        );
        let left = self.restore_leftovers(&bound).await;
        if !left.is_empty() {
            tracing::info!(
                interfaces = left.len(),
                "removed or unfinished endpoints' interfaces to delete"
            );
            self.host.reaper.wake();
        }
        // Every record, those of the released endpoints just forgotten included.
        *lock(&self.leftovers) = left;
        let now = Instant::now();
        *self.nets.lock().await = trunks.into_iter().map(|(n, t)| (n, (t, now))).collect();
        *lock(&self.bound) = bound.into_iter().collect();
        Ok(())
    }

    /// Released endpoints' interfaces whose namespace outlived the DEL.
    async fn reap(&self) {
        for l in self.take_leftovers() {
            if let Err(e) = self.drop_leftover(&l).await {
                tracing::warn!(ifname = %l.ifname, netns = %l.netns.display(), error = %e, "delete a removed endpoint's interface; retrying at the next round");
                lock(&self.leftovers).push(l);
            }
        }
    }

    /// Deletes network trunks that have served no endpoint for the idle time, checking a few
    /// times per idle time.
    async fn upkeep(&self) {
        let tick = (self.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            tokio::time::sleep(tick).await;
            self.host.activity.lull().await;
            let gone = self.delete_idle(self.idle).await;
            if !gone.is_empty() {
                self.host.switch.unset_trunks(&gone).await;
            }
        }
    }
}
