//! Network trunks (`netplugin --trunks`): the CNI pods of one network on this host share one
//! switch port.
//!
//! Why: on the userspace datapath ovs-vswitchd's main thread polls every port at each wake-up
//! and reconfigures every port whenever a port or a link of its namespace changes, so the cost
//! of a pod's ADD grows with the pods already there, and making ports during a burst of pods
//! stalls the switch (BENCHMARKS.md, issue 4). A trunk is a veth pair like a pooled port (host
//! end an OVS port, other end waiting in the side namespace of `pool::open_side_netns`), made
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

use crate::datapath::{Datapath, fnv1a};
use crate::netlink::{LinkError, Netlink, Netns, disable_tx_checksums};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
}

/// A released endpoint's interface, which may outlive the release (its namespace kept, or on
/// its way out): the reaper deletes it, or an ADD that wants its MAC does first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub netns: PathBuf,
    pub ifname: String,
    /// The alias it carries ("<endpoint id> <CNI network>"): a new interface of the same name
    /// has another, so only this one is deleted.
    pub alias: String,
    pub mac: String,
}

pub struct Trunks {
    /// Where the trunks' waiting ends are.
    pub ns: Netns,
    /// A netlink socket there.
    pub nl: Netlink,
    /// The trunks' MTU: the largest a pod on them can have.
    pub mtu: u32,
    /// One file per endpoint on a trunk.
    dir: PathBuf,
    /// Trunks by network ("tenant/network"), with when each was last asked for or left by
    /// an endpoint; the lock serializes making and deleting them.
    nets: tokio::sync::Mutex<HashMap<String, (Trunk, Instant)>>,
    bound: Mutex<HashMap<String, Binding>>,
    /// Interfaces of released endpoints, until the reaper's next round.
    leftovers: Mutex<Vec<Leftover>>,
}

/// The trunk name of a network ("tenant/network").
pub fn trunk_ifname(network: &str) -> String {
    format!("vt{:012x}", fnv1a(network.as_bytes()) & 0xffff_ffff_ffff)
}

/// Whether `name` is a trunk's name.
pub fn is_trunk_ifname(name: &str) -> bool {
    name.len() == 14 && name.starts_with("vt") && name[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn io_err(action: String) -> impl FnOnce(std::io::Error) -> LinkError {
    move |e| LinkError::Netlink {
        action,
        reason: e.to_string(),
    }
}

impl Trunks {
    /// Opens (or makes) the side namespace at `netns` and the state directory `dir`.
    pub fn open(netns: &Path, dir: &Path, mtu: u32) -> Result<Self, LinkError> {
        let (ns, nl) = crate::pool::open_side_netns(netns)?;
        std::fs::create_dir_all(dir)
            .map_err(io_err(format!("make state directory {}", dir.display())))?;
        Ok(Trunks {
            ns,
            nl,
            mtu,
            dir: dir.to_path_buf(),
            nets: tokio::sync::Mutex::new(HashMap::new()),
            bound: Mutex::new(HashMap::new()),
            leftovers: Mutex::new(Vec::new()),
        })
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The trunk of `network` ("tenant/network"), made if this host has none yet: a veth pair
    /// (see `pool::make_waiting_pair`), the waiting end without TX checksum offload, the host
    /// end an OVS port. A trunk half made is deleted.
    pub async fn ensure(
        &self,
        network: &str,
        host: &Netlink,
        dp: &Datapath,
    ) -> Result<Trunk, LinkError> {
        let mut nets = self.nets.lock().await;
        if let Some((t, used)) = nets.get_mut(network) {
            *used = Instant::now();
            return Ok(t.clone());
        }
        let name = trunk_ifname(network);
        let made = async {
            // A pair an earlier agent left half-made is in the way.
            host.delete(&name).await?;
            self.nl.delete(&name).await?;
            let (lower, host_mac) =
                crate::pool::make_waiting_pair(host, &self.nl, &self.ns, &name, self.mtu).await?;
            let ns = Netns::open(&self.ns.path)?;
            let names = vec![name.clone()];
            tokio::task::spawn_blocking(move || disable_tx_checksums(&ns, &names))
                .await
                .map_err(|e| LinkError::Netlink {
                    action: format!("set up trunk {name}"),
                    reason: e.to_string(),
                })??;
            let ofport =
                dp.add_trunk_port(&name, network)
                    .await
                    .map_err(|e| LinkError::Netlink {
                        action: format!("add trunk {name} of network {network} to the bridge"),
                        reason: e.to_string(),
                    })?;
            Ok::<_, LinkError>(Trunk {
                name: name.clone(),
                lower,
                ofport,
                host_mac,
            })
        }
        .await;
        match made {
            Ok(t) => {
                dp.set_trunks([t.ofport]).await;
                tracing::info!(trunk = %name, network, ofport = t.ofport, "network trunk made");
                nets.insert(network.to_string(), (t.clone(), Instant::now()));
                Ok(t)
            }
            Err(e) => {
                let _ = dp.remove_port(&name).await;
                let _ = host.delete(&name).await;
                Err(e)
            }
        }
    }

    /// Forgets trunk `name` (its link is gone), so that the next ADD makes the network's trunk
    /// again; its port goes then too (see [`Trunks::ensure`]).
    pub async fn forget(&self, name: &str) {
        self.nets.lock().await.retain(|_, (t, _)| t.name != name);
    }

    /// Records what a restart found: trunks by network and endpoints on them.
    pub async fn restore(&self, trunks: Vec<(String, Trunk)>, bound: Vec<(String, Binding)>) {
        let now = Instant::now();
        *self.nets.lock().await = trunks.into_iter().map(|(n, t)| (n, (t, now))).collect();
        *Self::lock(&self.bound) = bound.into_iter().collect();
    }

    /// Deletes the trunks that have served no endpoint for `idle` (a network whose pods are
    /// gone, or the network itself): port and veth pair. Under the trunks' lock, so that an
    /// ADD never gets a trunk on its way out (it makes a new one after). Returns the OpenFlow
    /// numbers of the trunks deleted.
    pub async fn delete_idle(&self, idle: Duration, host: &Netlink, dp: &Datapath) -> Vec<u32> {
        let mut nets = self.nets.lock().await;
        let busy: std::collections::HashSet<String> = Self::lock(&self.bound)
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
            let r = async {
                dp.remove_port(&t.name).await.map_err(|e| e.to_string())?;
                // The waiting end goes with the host end.
                host.delete(&t.name).await.map_err(|e| e.to_string())
            }
            .await;
            match r {
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

    fn record(&self, ep_id: &str) -> PathBuf {
        self.dir.join(format!("{ep_id}.json"))
    }

    /// Records endpoint `ep_id` on its trunk, in memory and in its file.
    pub fn bind(&self, ep_id: &str, b: Binding) -> Result<(), LinkError> {
        let path = self.record(ep_id);
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec(&b).unwrap_or_default();
        std::fs::write(&tmp, body)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(io_err(format!(
                "record endpoint {ep_id} in {}",
                path.display()
            )))?;
        Self::lock(&self.bound).insert(ep_id.to_string(), b);
        Ok(())
    }

    /// Forgets endpoint `ep_id` (and its file); its interface is left to the reaper (see
    /// [`Leftover`]).
    pub fn unbind(&self, ep_id: &str) -> Option<Binding> {
        if let Err(e) = std::fs::remove_file(self.record(ep_id))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(endpoint = %ep_id, error = %e, "remove the endpoint's trunk record");
        }
        let b = Self::lock(&self.bound).remove(ep_id)?;
        if let Ok(mut nets) = self.nets.try_lock() {
            // Idle from now (if the lock is busy, from its last ADD: close enough).
            for (t, used) in nets.values_mut() {
                if t.name == b.trunk {
                    *used = Instant::now();
                }
            }
        }
        self.leave(ep_id, &b);
        Some(b)
    }

    fn leave(&self, ep_id: &str, b: &Binding) {
        Self::lock(&self.leftovers).push(Leftover {
            netns: b.netns.clone(),
            ifname: b.ifname.clone(),
            alias: format!("{ep_id} {}", b.cni_network),
            mac: b.mac.clone(),
        });
    }

    /// The released endpoints' interfaces to delete (see [`Leftover`]).
    pub fn take_leftovers(&self) -> Vec<Leftover> {
        std::mem::take(&mut *Self::lock(&self.leftovers))
    }

    /// The released endpoint's interface with MAC `mac`, if the reaper has not taken it yet.
    pub fn take_leftover_with_mac(&self, mac: &str) -> Option<Leftover> {
        let mut l = Self::lock(&self.leftovers);
        let i = l.iter().position(|x| x.mac == mac)?;
        Some(l.swap_remove(i))
    }

    pub fn bound(&self, ep_id: &str) -> Option<Binding> {
        Self::lock(&self.bound).get(ep_id).cloned()
    }

    pub fn all_bound(&self) -> Vec<(String, Binding)> {
        Self::lock(&self.bound)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether interface `ifname` of the namespace at `netns` is a live endpoint's.
    pub fn is_bound_at(&self, netns: &Path, ifname: &str) -> bool {
        Self::lock(&self.bound)
            .values()
            .any(|b| b.netns == netns && b.ifname == ifname)
    }

    /// The records in the state directory: (endpoint id, binding). Unreadable ones are
    /// deleted (a crash mid-write leaves only a `.tmp`).
    pub fn records(&self) -> Vec<(String, Binding)> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in dir.flatten() {
            let path = e.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string);
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Binding>(&b).ok());
            match (id, parsed) {
                (Some(id), Some(b)) => out.push((id, b)),
                _ => {
                    tracing::info!(file = %path.display(), "deleting an unreadable trunk record");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        out
    }

    /// Deletes endpoint `ep_id`'s record (a restart found its endpoint released: a DEL the
    /// agent missed); its interface, if its namespace is still there, is queued for the reaper.
    pub fn forget_record(&self, ep_id: &str, b: &Binding) {
        let _ = std::fs::remove_file(self.record(ep_id));
        self.leave(ep_id, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_names_fit_and_are_recognised() {
        let n = trunk_ifname("default/default-net");
        assert_eq!(n.len(), 14);
        assert!(is_trunk_ifname(&n));
        assert_ne!(n, trunk_ifname("default/other-net"));
        assert_eq!(n, trunk_ifname("default/default-net"));
        assert!(!is_trunk_ifname("vp0123456789ab"));
        assert!(!is_trunk_ifname("vtxyz"));
    }

    #[tokio::test]
    async fn records_round_trip_and_bad_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let t = Trunks {
            ns: Netns::open(Path::new("/proc/self/ns/net")).unwrap(),
            nl: Netlink::host().unwrap(),
            mtu: 1450,
            dir: dir.path().to_path_buf(),
            nets: tokio::sync::Mutex::new(HashMap::new()),
            bound: Mutex::new(HashMap::new()),
            leftovers: Mutex::new(Vec::new()),
        };
        let b = Binding {
            trunk: "vt0123456789ab".into(),
            cni_network: "contiv".into(),
            netns: "/run/netns/p1".into(),
            ifname: "eth0".into(),
            mac: "02:02:0a:01:00:02".into(),
        };
        t.bind("c1-eth0", b.clone()).unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        assert_eq!(t.records(), vec![("c1-eth0".to_string(), b.clone())]);
        assert!(!dir.path().join("broken.json").exists());
        assert!(t.is_bound_at(Path::new("/run/netns/p1"), "eth0"));
        assert_eq!(t.unbind("c1-eth0"), Some(b.clone()));
        assert!(t.records().is_empty());
        let left = t.take_leftover_with_mac(&b.mac).unwrap();
        assert_eq!(
            (left.netns, left.ifname, left.alias),
            (
                b.netns.clone(),
                b.ifname.clone(),
                "c1-eth0 contiv".to_string()
            )
        );
        assert_eq!(t.take_leftover_with_mac(&b.mac), None);
    }
}
