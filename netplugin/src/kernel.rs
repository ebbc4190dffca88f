//! The kernel as the agent uses it: links, addresses and routes in a network namespace, behind
//! a narrow trait so that the endpoint manager and the attachment modes can be tested without
//! root against [`fake::FakeKernel`], a recording model of the same rules (veth pairs die
//! together, one passthru macvlan per lower link, macvlans of one lower link need distinct
//! MACs, a namespace's links die with it).
//!
//! [`NetlinkKernel`] is the real one: rtnetlink sockets in each namespace (`crate::netlink`).

use crate::netlink::{LinkError, Netlink, Netns, PoolLink};
pub use netlink_packet_route::link::MacVlanMode;
use std::any::Any;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(test)]
pub mod fake;

/// An open network namespace.
pub type Ns = Arc<dyn Links>;

/// The link operations in one network namespace.
#[async_trait::async_trait]
pub trait Links: Send + Sync + 'static {
    /// The namespace's path (for messages, and to name it to another namespace).
    fn path(&self) -> &Path;
    fn as_any(&self) -> &dyn Any;

    async fn index(&self, name: &str) -> Result<Option<u32>, LinkError>;
    async fn mac(&self, name: &str) -> Result<Option<String>, LinkError>;
    async fn mtu(&self, name: &str) -> Result<Option<u32>, LinkError>;
    /// The index of a veth's other end (in that end's namespace).
    async fn peer_index(&self, name: &str) -> Result<Option<u32>, LinkError>;
    async fn name_and_group(&self, index: u32) -> Result<Option<(String, u32)>, LinkError>;
    /// Every link's name and link group.
    async fn link_names(&self) -> Result<Vec<(String, u32)>, LinkError>;
    /// Every link with its index and alias.
    async fn links_with_alias(&self) -> Result<Vec<PoolLink>, LinkError>;
    /// The lower link's index and the mode of `name` if it is a macvlan.
    async fn macvlan_lower(&self, name: &str) -> Result<Option<(u32, MacVlanMode)>, LinkError>;

    /// A veth pair: `name` here (up if `up`), `peer` born in `peer_ns` with `peer_mac`.
    async fn create_veth(
        &self,
        name: &str,
        peer: &str,
        peer_mac: [u8; 6],
        mtu: u32,
        peer_ns: &dyn Links,
        up: bool,
    ) -> Result<(), LinkError>;
    /// `name`, a macvlan of link `lower` (here) in `mode`, born in `ns`, down. `Ok(false)`: the
    /// kernel refused the lower link (a passthru macvlan holds it).
    async fn create_macvlan(
        &self,
        lower: u32,
        name: &str,
        mtu: u32,
        ns: &dyn Links,
        mode: MacVlanMode,
    ) -> Result<bool, LinkError>;
    async fn set_up(&self, name: &str, index: u32) -> Result<(), LinkError>;
    async fn is_up(&self, index: u32) -> Result<bool, LinkError>;
    /// Sets link `index`'s alias (empty clears it) and, if given, its MAC, in one request.
    async fn set_alias_mac(
        &self,
        index: u32,
        alias: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<(), LinkError>;
    async fn set_group(&self, name: &str, group: u32) -> Result<bool, LinkError>;
    /// Deletes every link of a link group at once; false if there were none.
    async fn delete_group(&self, group: u32) -> Result<bool, LinkError>;
    /// Deletes a link by name; absent is fine (false).
    async fn delete(&self, name: &str) -> Result<bool, LinkError>;
    /// Deletes a link by index (never a later link of the same name); absent is fine.
    async fn delete_index(&self, index: u32) -> Result<bool, LinkError>;
    async fn add_address(
        &self,
        name: &str,
        index: u32,
        ip: IpAddr,
        prefix: u8,
    ) -> Result<(), LinkError>;
    async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, LinkError>;
    async fn add_default_route(&self, gw: IpAddr, dev_index: u32) -> Result<(), LinkError>;
    async fn has_default_route(&self, gw: IpAddr) -> Result<bool, LinkError>;

    /// Readies a new interface before it comes up: TX checksum offload off, IPv6 off (see
    /// `netlink::prepare_link_here`).
    async fn prepare_link(
        &self,
        name: &str,
        tx_csum_off: bool,
        ipv6_off: bool,
    ) -> Result<(), LinkError>;
    /// Turns IPv6 on or off on an interface.
    async fn set_ipv6(&self, name: &str, on: bool) -> Result<(), LinkError>;
    /// TX checksum offload off on several interfaces.
    async fn disable_tx_checksums(&self, names: &[String]) -> Result<(), LinkError>;
}

/// Where namespaces come from.
#[async_trait::async_trait]
pub trait Kernel: Send + Sync + 'static {
    /// The agent's own namespace.
    fn host(&self) -> Ns;
    /// Opens the network namespace at `path`: an error naming it if it is missing or no
    /// network namespace.
    async fn open(&self, path: &Path) -> Result<Ns, LinkError>;
    /// Opens the namespace at `path`, making it first if there is none, with IPv6 off for
    /// new links (the side namespace where pooled ports and trunks wait).
    async fn open_side(&self, path: &Path) -> Result<Ns, LinkError>;
}

/// The real kernel, over rtnetlink.
pub struct NetlinkKernel {
    host: Ns,
}

impl NetlinkKernel {
    pub fn new() -> Result<Self, LinkError> {
        Ok(NetlinkKernel {
            host: Arc::new(RealNs {
                ns: None,
                path: PathBuf::from("/proc/self/ns/net"),
                nl: tokio::sync::OnceCell::new_with(Some(Netlink::host()?)),
            }),
        })
    }

    /// The host namespace's netlink connection (for the few start-up steps outside the trait).
    pub fn host_netlink(&self) -> Netlink {
        self.host
            .as_any()
            .downcast_ref::<RealNs>()
            .and_then(|r| r.nl.get().cloned())
            .expect("the host namespace of NetlinkKernel is a RealNs with its socket")
    }
}

#[async_trait::async_trait]
impl Kernel for NetlinkKernel {
    fn host(&self) -> Ns {
        self.host.clone()
    }

    async fn open(&self, path: &Path) -> Result<Ns, LinkError> {
        let ns = Netns::open(path)?;
        // The netlink socket is made at first use (a thread that enters the namespace): an ADD
        // makes it while netmaster allocates, not before.
        Ok(Arc::new(RealNs {
            path: path.to_path_buf(),
            ns: Some(ns),
            nl: tokio::sync::OnceCell::new(),
        }))
    }

    async fn open_side(&self, path: &Path) -> Result<Ns, LinkError> {
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
        Ok(Arc::new(RealNs {
            path: path.to_path_buf(),
            ns: Some(ns),
            nl: tokio::sync::OnceCell::new_with(Some(nl)),
        }))
    }
}

/// A namespace of the real kernel: `ns` is None for the agent's own; its netlink socket is
/// made at first use.
struct RealNs {
    path: PathBuf,
    ns: Option<Netns>,
    nl: tokio::sync::OnceCell<Netlink>,
}

impl RealNs {
    /// The netlink socket in this namespace, made on first use.
    async fn nl(&self) -> Result<&Netlink, LinkError> {
        self.nl
            .get_or_try_init(|| async {
                match &self.ns {
                    Some(ns) => Netlink::in_netns(ns),
                    None => Netlink::host(),
                }
            })
            .await
    }

    /// The namespace of another [`Links`] of the real kernel, for requests that name it.
    fn netns_of<'a>(&self, other: &'a dyn Links) -> Result<Option<&'a Netns>, LinkError> {
        other
            .as_any()
            .downcast_ref::<RealNs>()
            .map(|r| r.ns.as_ref())
            .ok_or_else(|| LinkError::other("name a namespace", "not a real namespace"))
    }

    /// Runs `f` inside this namespace (on a thread of its own), or here for the agent's own.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, LinkError> {
        match &self.ns {
            Some(ns) => ns.run(f),
            None => f().map_err(|reason| LinkError::other("change the host's settings", reason)),
        }
    }
}

#[async_trait::async_trait]
impl Links for RealNs {
    fn path(&self) -> &Path {
        &self.path
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    async fn index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        self.nl().await?.index(name).await
    }
    async fn mac(&self, name: &str) -> Result<Option<String>, LinkError> {
        self.nl().await?.mac(name).await
    }
    async fn mtu(&self, name: &str) -> Result<Option<u32>, LinkError> {
        self.nl().await?.mtu(name).await
    }
    async fn peer_index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        self.nl().await?.peer_index(name).await
    }
    async fn name_and_group(&self, index: u32) -> Result<Option<(String, u32)>, LinkError> {
        self.nl().await?.name_and_group(index).await
    }
    async fn link_names(&self) -> Result<Vec<(String, u32)>, LinkError> {
        self.nl().await?.link_names().await
    }
    async fn links_with_alias(&self) -> Result<Vec<PoolLink>, LinkError> {
        self.nl().await?.links_with_alias().await
    }
    async fn macvlan_lower(&self, name: &str) -> Result<Option<(u32, MacVlanMode)>, LinkError> {
        self.nl().await?.macvlan_lower(name).await
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
        match self.netns_of(peer_ns)? {
            Some(ns) => {
                self.nl()
                    .await?
                    .create_veth_up(name, peer, peer_mac, mtu, ns, up)
                    .await
            }
            None => {
                let own = Netns::open(Path::new("/proc/self/ns/net"))?;
                self.nl()
                    .await?
                    .create_veth_up(name, peer, peer_mac, mtu, &own, up)
                    .await
            }
        }
    }
    async fn create_macvlan(
        &self,
        lower: u32,
        name: &str,
        mtu: u32,
        ns: &dyn Links,
        mode: MacVlanMode,
    ) -> Result<bool, LinkError> {
        match self.netns_of(ns)? {
            Some(target) => {
                self.nl()
                    .await?
                    .create_macvlan(lower, name, mtu, target, mode)
                    .await
            }
            None => {
                let own = Netns::open(Path::new("/proc/self/ns/net"))?;
                self.nl()
                    .await?
                    .create_macvlan(lower, name, mtu, &own, mode)
                    .await
            }
        }
    }
    async fn set_up(&self, name: &str, index: u32) -> Result<(), LinkError> {
        self.nl().await?.set_up(name, index).await
    }
    async fn is_up(&self, index: u32) -> Result<bool, LinkError> {
        self.nl().await?.is_up(index).await
    }
    async fn set_alias_mac(
        &self,
        index: u32,
        alias: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<(), LinkError> {
        self.nl().await?.set_alias_mac(index, alias, mac).await
    }
    async fn set_group(&self, name: &str, group: u32) -> Result<bool, LinkError> {
        self.nl().await?.set_group(name, group).await
    }
    async fn delete_group(&self, group: u32) -> Result<bool, LinkError> {
        self.nl().await?.delete_group(group).await
    }
    async fn delete(&self, name: &str) -> Result<bool, LinkError> {
        self.nl().await?.delete(name).await
    }
    async fn delete_index(&self, index: u32) -> Result<bool, LinkError> {
        self.nl().await?.delete_index(index).await
    }
    async fn add_address(
        &self,
        name: &str,
        index: u32,
        ip: IpAddr,
        prefix: u8,
    ) -> Result<(), LinkError> {
        self.nl().await?.add_address(name, index, ip, prefix).await
    }
    async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, LinkError> {
        self.nl().await?.addresses(index).await
    }
    async fn add_default_route(&self, gw: IpAddr, dev_index: u32) -> Result<(), LinkError> {
        self.nl().await?.add_default_route(gw, dev_index).await
    }
    async fn has_default_route(&self, gw: IpAddr) -> Result<bool, LinkError> {
        self.nl().await?.has_default_route(gw).await
    }
    async fn prepare_link(
        &self,
        name: &str,
        tx_csum_off: bool,
        ipv6_off: bool,
    ) -> Result<(), LinkError> {
        let name = name.to_string();
        self.run(move || crate::netlink::prepare_link_here(&name, tx_csum_off, ipv6_off))
    }
    async fn set_ipv6(&self, name: &str, on: bool) -> Result<(), LinkError> {
        let name = name.to_string();
        self.run(move || crate::netlink::write_disable_ipv6(&name, !on))
    }
    async fn disable_tx_checksums(&self, names: &[String]) -> Result<(), LinkError> {
        let names = names.to_vec();
        self.run(move || {
            names
                .iter()
                .try_for_each(|n| crate::netlink::prepare_link_here(n, true, false))
        })
    }
}
