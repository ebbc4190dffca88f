//! A recording model of the kernel's links for unit tests, keeping the rules the agent relies
//! on: names are unique per namespace, veth ends die together, a link's macvlans die with it,
//! one passthru macvlan per lower link and none beside it, macvlans of one lower link need
//! distinct MACs, a namespace's links die with it. Failures can be injected per operation.

use super::{Kernel, Links, MacVlanMode, Ns};
use crate::netlink::{LinkError, PoolLink};
use std::any::Any;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The agent's own namespace in the model.
pub const HOST: &str = "/proc/self/ns/net";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Veth {
        peer: (PathBuf, u32),
    },
    Macvlan {
        lower: (PathBuf, u32),
        mode: MacVlanMode,
    },
    Other,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub kind: Kind,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    pub group: u32,
    pub alias: String,
    pub addrs: Vec<(IpAddr, u8)>,
    pub tx_csum: bool,
    pub ipv6: bool,
}

#[derive(Default)]
struct World {
    next_index: u32,
    next_mac: u8,
    ns: BTreeMap<PathBuf, BTreeMap<u32, Link>>,
    routes: BTreeMap<PathBuf, Vec<(IpAddr, u32)>>,
    /// Injected failures: (operation, errno), each used once.
    fail: Vec<(String, i32)>,
    /// Links deleted just before a call: (operation, its argument, namespace, index), each
    /// used once (what another task does between two of the agent's calls).
    delete_before: Vec<(String, String, PathBuf, u32)>,
    calls: Vec<String>,
}

impl World {
    fn take_fail(&mut self, op: &str) -> Option<i32> {
        let i = self.fail.iter().position(|(o, _)| o == op)?;
        Some(self.fail.remove(i).1)
    }
    fn find(&self, ns: &Path, name: &str) -> Option<&Link> {
        self.ns.get(ns)?.values().find(|l| l.name == name)
    }
    fn get(&self, ns: &Path, index: u32) -> Option<&Link> {
        self.ns.get(ns)?.get(&index)
    }
    fn new_mac(&mut self) -> [u8; 6] {
        self.next_mac = self.next_mac.wrapping_add(1);
        [0x02, 0xfe, 0, 0, 0, self.next_mac]
    }
    fn add(&mut self, ns: &Path, name: &str, kind: Kind, mac: [u8; 6], mtu: u32) -> u32 {
        self.next_index += 1;
        let index = self.next_index;
        self.ns.entry(ns.to_path_buf()).or_default().insert(
            index,
            Link {
                name: name.to_string(),
                index,
                kind,
                mac,
                mtu,
                up: false,
                group: 0,
                alias: String::new(),
                addrs: Vec::new(),
                tx_csum: true,
                ipv6: true,
            },
        );
        index
    }
    /// Deletes a link and what dies with it.
    fn delete(&mut self, ns: &Path, index: u32) -> bool {
        let Some(link) = self.ns.get_mut(ns).and_then(|m| m.remove(&index)) else {
            return false;
        };
        if let Kind::Veth { peer } = &link.kind {
            self.delete(&peer.0, peer.1);
        }
        let key = (ns.to_path_buf(), index);
        let children: Vec<(PathBuf, u32)> = self
            .ns
            .iter()
            .flat_map(|(p, m)| {
                m.values()
                    .filter(|l| matches!(&l.kind, Kind::Macvlan { lower, .. } if *lower == key))
                    .map(|l| (p.clone(), l.index))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (p, i) in children {
            self.delete(&p, i);
        }
        if let Some(r) = self.routes.get_mut(ns) {
            r.retain(|(_, dev)| *dev != index);
        }
        true
    }
    fn macvlans_of(&self, lower: &(PathBuf, u32)) -> Vec<&Link> {
        self.ns
            .values()
            .flat_map(|m| m.values())
            .filter(|l| matches!(&l.kind, Kind::Macvlan { lower: lw, .. } if lw == lower))
            .collect()
    }
    /// A link's MAC as the kernel shows it: a passthru macvlan's is its lower link's.
    fn mac_of(&self, ns: &Path, l: &Link) -> [u8; 6] {
        match &l.kind {
            Kind::Macvlan {
                lower,
                mode: MacVlanMode::Passthrough,
            } => self.get(&lower.0, lower.1).map_or(l.mac, |x| x.mac),
            _ => {
                let _ = ns;
                l.mac
            }
        }
    }
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The model of the kernel: every namespace, its links and routes.
#[derive(Clone)]
pub struct FakeKernel {
    world: Arc<Mutex<World>>,
}

impl Default for FakeKernel {
    fn default() -> Self {
        let k = FakeKernel {
            world: Arc::default(),
        };
        k.add_netns(HOST);
        k
    }
}

impl FakeKernel {
    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new namespace at `path`, with `lo` (as a runtime makes a pod's).
    pub fn add_netns(&self, path: &str) {
        let mut w = self.w();
        w.ns.entry(PathBuf::from(path)).or_default();
        let mac = [0; 6];
        w.add(Path::new(path), "lo", Kind::Other, mac, 65536);
    }

    /// The namespace at `path` goes, with its links (as a runtime deletes a pod's).
    pub fn remove_netns(&self, path: &str) {
        let mut w = self.w();
        let idx: Vec<u32> =
            w.ns.get(Path::new(path))
                .map(|m| m.keys().copied().collect())
                .unwrap_or_default();
        for i in idx {
            w.delete(Path::new(path), i);
        }
        w.ns.remove(Path::new(path));
    }

    /// The next call of `op` (a [`Links`] method's name) fails with `errno`.
    pub fn fail_next(&self, op: &str, errno: i32) {
        self.w().fail.push((op.to_string(), errno));
    }

    /// Just before the next call of `op` with argument `what`, link `index` of namespace
    /// `path` goes, with what dies with it (the reaper deleting a port meanwhile).
    pub fn delete_before_next(&self, op: &str, what: &str, path: &str, index: u32) {
        self.w()
            .delete_before
            .push((op.into(), what.into(), PathBuf::from(path), index));
    }

    /// A link made behind the agent's back (an earlier run's leftover); its index.
    pub fn add_link(&self, path: &str, name: &str, kind: Kind) -> u32 {
        let mut w = self.w();
        let mac = w.new_mac();
        w.add(Path::new(path), name, kind, mac, 1450)
    }

    /// The names of the links of a namespace, sorted.
    pub fn links(&self, path: &str) -> Vec<String> {
        let w = self.w();
        let mut v: Vec<String> =
            w.ns.get(Path::new(path))
                .map(|m| m.values().map(|l| l.name.clone()).collect())
                .unwrap_or_default();
        v.sort();
        v
    }

    pub fn link(&self, path: &str, name: &str) -> Option<Link> {
        let w = self.w();
        let mut l = w.find(Path::new(path), name).cloned()?;
        l.mac = w.mac_of(Path::new(path), &l);
        Some(l)
    }

    /// Changes link `name` of a namespace in place (an ADD the agent's death cut short leaves
    /// an interface down, without its address).
    pub fn edit_link(&self, path: &str, name: &str, f: impl FnOnce(&mut Link)) {
        let mut w = self.w();
        if let Some(l) =
            w.ns.get_mut(Path::new(path))
                .and_then(|m| m.values_mut().find(|l| l.name == name))
        {
            f(l);
        }
    }

    pub fn routes(&self, path: &str) -> Vec<(IpAddr, u32)> {
        self.w()
            .routes
            .get(Path::new(path))
            .cloned()
            .unwrap_or_default()
    }

    /// The calls made so far, as "op name".
    pub fn calls(&self) -> Vec<String> {
        self.w().calls.clone()
    }

    fn ns(&self, path: &Path) -> Ns {
        Arc::new(FakeNs {
            world: self.world.clone(),
            path: path.to_path_buf(),
        })
    }
}

#[async_trait::async_trait]
impl Kernel for FakeKernel {
    fn host(&self) -> Ns {
        self.ns(Path::new(HOST))
    }
    async fn open(&self, path: &Path) -> Result<Ns, LinkError> {
        if !self.w().ns.contains_key(path) {
            return Err(LinkError::Netns {
                path: path.to_path_buf(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        Ok(self.ns(path))
    }
    async fn open_side(&self, path: &Path) -> Result<Ns, LinkError> {
        if !self.w().ns.contains_key(path) {
            self.add_netns(&path.display().to_string());
        }
        Ok(self.ns(path))
    }
}

struct FakeNs {
    world: Arc<Mutex<World>>,
    path: PathBuf,
}

impl FakeNs {
    /// The world, after recording the call and applying an injected failure.
    fn call(&self, op: &str, what: &str) -> Result<std::sync::MutexGuard<'_, World>, LinkError> {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        w.calls.push(format!("{op} {what}"));
        if let Some(i) = w
            .delete_before
            .iter()
            .position(|(o, a, _, _)| o == op && a == what)
        {
            let (_, _, ns, index) = w.delete_before.remove(i);
            w.delete(&ns, index);
        }
        if let Some(errno) = w.take_fail(op) {
            return Err(LinkError::errno(format!("{op} {what}"), errno));
        }
        if !w.ns.contains_key(&self.path) {
            return Err(LinkError::errno(
                format!("{op} {what} in {}", self.path.display()),
                libc::ENOENT,
            ));
        }
        Ok(w)
    }
    fn index_of(w: &World, ns: &Path, name: &str, op: &str) -> Result<u32, LinkError> {
        w.find(ns, name)
            .map(|l| l.index)
            .ok_or_else(|| LinkError::errno(format!("{op} {name}"), libc::ENODEV))
    }
    fn link_mut<'a>(
        w: &'a mut World,
        ns: &Path,
        index: u32,
        op: &str,
    ) -> Result<&'a mut Link, LinkError> {
        w.ns.get_mut(ns)
            .and_then(|m| m.get_mut(&index))
            .ok_or_else(|| LinkError::errno(format!("{op} {index}"), libc::ENODEV))
    }
}

#[async_trait::async_trait]
impl Links for FakeNs {
    fn path(&self) -> &Path {
        &self.path
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    async fn index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let w = self.call("index", name)?;
        Ok(w.find(&self.path, name).map(|l| l.index))
    }
    async fn mac(&self, name: &str) -> Result<Option<String>, LinkError> {
        let w = self.call("mac", name)?;
        Ok(w.find(&self.path, name)
            .map(|l| fmt_mac(w.mac_of(&self.path, l))))
    }
    async fn mtu(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let w = self.call("mtu", name)?;
        Ok(w.find(&self.path, name).map(|l| l.mtu))
    }
    async fn peer_index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let w = self.call("peer_index", name)?;
        Ok(w.find(&self.path, name).and_then(|l| match &l.kind {
            Kind::Veth { peer } => Some(peer.1),
            _ => None,
        }))
    }
    async fn name_and_group(&self, index: u32) -> Result<Option<(String, u32)>, LinkError> {
        let w = self.call("name_and_group", &index.to_string())?;
        Ok(w.get(&self.path, index).map(|l| (l.name.clone(), l.group)))
    }
    async fn link_names(&self) -> Result<Vec<(String, u32)>, LinkError> {
        let w = self.call("link_names", "")?;
        Ok(w.ns[&self.path]
            .values()
            .map(|l| (l.name.clone(), l.group))
            .collect())
    }
    async fn links_with_alias(&self) -> Result<Vec<PoolLink>, LinkError> {
        let w = self.call("links_with_alias", "")?;
        Ok(w.ns[&self.path]
            .values()
            .map(|l| PoolLink {
                name: l.name.clone(),
                index: l.index,
                alias: l.alias.clone(),
            })
            .collect())
    }
    async fn macvlan_lower(&self, name: &str) -> Result<Option<(u32, MacVlanMode)>, LinkError> {
        let w = self.call("macvlan_lower", name)?;
        Ok(w.find(&self.path, name).and_then(|l| match &l.kind {
            Kind::Macvlan { lower, mode } => Some((lower.1, *mode)),
            _ => None,
        }))
    }
    async fn create_veth(
        &self,
        name: &str,
        peer: &str,
        peer_mac: [u8; 6],
        mtu: u32,
        peer_ns: &dyn Links,
        up: bool,
    ) -> Result<(), LinkError> {
        let mut w = self.call("create_veth", name)?;
        let pns = peer_ns.path().to_path_buf();
        if !w.ns.contains_key(&pns) {
            return Err(LinkError::errno(
                format!("create veth {name}"),
                libc::ENOENT,
            ));
        }
        if w.find(&self.path, name).is_some() || w.find(&pns, peer).is_some() {
            return Err(LinkError::errno(
                format!("create veth {name}"),
                libc::EEXIST,
            ));
        }
        let mac = w.new_mac();
        let a = w.add(&self.path, name, Kind::Other, mac, mtu);
        let b = w.add(
            &pns,
            peer,
            Kind::Veth {
                peer: (self.path.clone(), a),
            },
            peer_mac,
            mtu,
        );
        let me = Self::link_mut(&mut w, &self.path, a, "create_veth")?;
        me.kind = Kind::Veth { peer: (pns, b) };
        me.up = up;
        Ok(())
    }
    async fn create_macvlan(
        &self,
        lower: u32,
        name: &str,
        mtu: u32,
        ns: &dyn Links,
        mode: MacVlanMode,
    ) -> Result<bool, LinkError> {
        let mut w = self.call("create_macvlan", name)?;
        let target = ns.path().to_path_buf();
        if w.get(&self.path, lower).is_none() {
            return Err(LinkError::errno(
                format!("create macvlan {name}"),
                libc::ENODEV,
            ));
        }
        if w.find(&target, name).is_some() {
            return Err(LinkError::errno(
                format!("create macvlan {name}"),
                libc::EEXIST,
            ));
        }
        let key = (self.path.clone(), lower);
        let siblings = w.macvlans_of(&key);
        let passthru_held = siblings.iter().any(|l| {
            matches!(
                l.kind,
                Kind::Macvlan {
                    mode: MacVlanMode::Passthrough,
                    ..
                }
            )
        });
        if passthru_held || (mode == MacVlanMode::Passthrough && !siblings.is_empty()) {
            return Ok(false); // EINVAL
        }
        let mac = w.new_mac();
        w.add(&target, name, Kind::Macvlan { lower: key, mode }, mac, mtu);
        Ok(true)
    }
    async fn set_up(&self, name: &str, index: u32) -> Result<(), LinkError> {
        let mut w = self.call("set_up", name)?;
        Self::link_mut(&mut w, &self.path, index, "set_up")?.up = true;
        Ok(())
    }
    async fn is_up(&self, index: u32) -> Result<bool, LinkError> {
        let w = self.call("is_up", &index.to_string())?;
        Ok(w.get(&self.path, index).is_some_and(|l| l.up))
    }
    async fn set_alias_mac(
        &self,
        index: u32,
        alias: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<(), LinkError> {
        let mut w = self.call("set_alias_mac", &index.to_string())?;
        let link = w
            .get(&self.path, index)
            .cloned()
            .ok_or_else(|| LinkError::errno(format!("set alias of {index}"), libc::ENODEV))?;
        if let (Some(m), Kind::Macvlan { lower, mode }) = (mac, &link.kind)
            && *mode != MacVlanMode::Passthrough
            && w.macvlans_of(lower)
                .iter()
                .any(|s| s.index != index && s.mac == m)
        {
            return Err(LinkError::errno(
                format!("set MAC of {}", link.name),
                libc::EADDRINUSE,
            ));
        }
        let l = Self::link_mut(&mut w, &self.path, index, "set_alias_mac")?;
        l.alias = alias.to_string();
        if let Some(m) = mac {
            l.mac = m;
        }
        Ok(())
    }
    async fn set_group(&self, name: &str, group: u32) -> Result<bool, LinkError> {
        let mut w = self.call("set_group", name)?;
        let Ok(i) = Self::index_of(&w, &self.path, name, "set_group") else {
            return Ok(false);
        };
        Self::link_mut(&mut w, &self.path, i, "set_group")?.group = group;
        Ok(true)
    }
    async fn delete_group(&self, group: u32) -> Result<bool, LinkError> {
        let mut w = self.call("delete_group", &group.to_string())?;
        let idx: Vec<u32> = w.ns[&self.path]
            .values()
            .filter(|l| l.group == group)
            .map(|l| l.index)
            .collect();
        for i in &idx {
            w.delete(&self.path.clone(), *i);
        }
        Ok(!idx.is_empty())
    }
    async fn delete(&self, name: &str) -> Result<bool, LinkError> {
        let mut w = self.call("delete", name)?;
        let Ok(i) = Self::index_of(&w, &self.path, name, "delete") else {
            return Ok(false);
        };
        Ok(w.delete(&self.path.clone(), i))
    }
    async fn delete_index(&self, index: u32) -> Result<bool, LinkError> {
        let mut w = self.call("delete_index", &index.to_string())?;
        Ok(w.delete(&self.path.clone(), index))
    }
    async fn add_address(
        &self,
        name: &str,
        index: u32,
        ip: IpAddr,
        prefix: u8,
    ) -> Result<(), LinkError> {
        let mut w = self.call("add_address", name)?;
        let l = Self::link_mut(&mut w, &self.path, index, "add_address")?;
        if !l.addrs.contains(&(ip, prefix)) {
            l.addrs.push((ip, prefix));
        }
        Ok(())
    }
    async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, LinkError> {
        let w = self.call("addresses", &index.to_string())?;
        Ok(w.get(&self.path, index)
            .map(|l| l.addrs.clone())
            .unwrap_or_default())
    }
    async fn add_default_route(&self, gw: IpAddr, dev_index: u32) -> Result<(), LinkError> {
        let mut w = self.call("add_default_route", &gw.to_string())?;
        if w.get(&self.path, dev_index).is_none() {
            return Err(LinkError::errno(
                format!("add default route via {gw}"),
                libc::ENODEV,
            ));
        }
        let r = w.routes.entry(self.path.clone()).or_default();
        if !r.contains(&(gw, dev_index)) {
            r.push((gw, dev_index));
        }
        Ok(())
    }
    async fn has_default_route(&self, gw: IpAddr) -> Result<bool, LinkError> {
        let w = self.call("has_default_route", &gw.to_string())?;
        Ok(w.routes
            .get(&self.path)
            .is_some_and(|r| r.iter().any(|(g, _)| *g == gw)))
    }
    async fn prepare_link(
        &self,
        name: &str,
        tx_csum_off: bool,
        ipv6_off: bool,
    ) -> Result<(), LinkError> {
        let mut w = self.call("prepare_link", name)?;
        let i = Self::index_of(&w, &self.path, name, "prepare_link")?;
        let l = Self::link_mut(&mut w, &self.path, i, "prepare_link")?;
        if tx_csum_off {
            l.tx_csum = false;
        }
        if ipv6_off {
            l.ipv6 = false;
        }
        Ok(())
    }
    async fn set_ipv6(&self, name: &str, on: bool) -> Result<(), LinkError> {
        let mut w = self.call("set_ipv6", name)?;
        let i = Self::index_of(&w, &self.path, name, "set_ipv6")?;
        Self::link_mut(&mut w, &self.path, i, "set_ipv6")?.ipv6 = on;
        Ok(())
    }
    async fn disable_tx_checksums(&self, names: &[String]) -> Result<(), LinkError> {
        let mut w = self.call("disable_tx_checksums", &names.join(","))?;
        for n in names {
            let i = Self::index_of(&w, &self.path, n, "disable_tx_checksums")?;
            Self::link_mut(&mut w, &self.path, i, "disable_tx_checksums")?.tx_csum = false;
        }
        Ok(())
    }
}
