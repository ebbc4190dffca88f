//! Links, addresses and routes over rtnetlink, in the host's or a pod's network namespace.
//!
//! A netlink socket belongs to the namespace it was created in. To work inside a pod's namespace
//! we create the socket on a short-lived OS thread that has `setns`'d there, then use it from
//! the async runtime like any other. No runtime thread ever changes namespace.

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
pub use netlink_packet_route::link::MacVlanMode;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkMessage,
};
use netlink_packet_route::route::RouteMessage;
use rtnetlink::{
    Handle, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The namespace file could not be opened or entered.
    #[error("open network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The path is there, but is no network namespace: `what` says what it is (an empty file
    /// is a namespace mounted in another process's private mount namespace, or one a failed
    /// `ip netns add` left; a FIFO or a device is a mistake).
    #[error("{path} is not a network namespace: it is {what}")]
    NotNetns { path: PathBuf, what: String },
    /// The kernel refused a request: `source` keeps its errno.
    #[error("{action}: {source}{hint}")]
    Netlink {
        action: String,
        #[source]
        source: std::io::Error,
        /// What the errno means here, for the user (may be empty).
        hint: String,
    },
}

impl LinkError {
    /// A kernel refusal with errno `errno` while doing `action`.
    pub fn errno(action: impl Into<String>, errno: i32) -> Self {
        let hint = match errno {
            libc::EPERM => " (the agent must run as root)".to_string(),
            _ => String::new(),
        };
        LinkError::Netlink {
            action: action.into(),
            source: std::io::Error::from_raw_os_error(errno),
            hint,
        }
    }

    /// Any other failure while doing `action`.
    pub fn other(action: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        LinkError::Netlink {
            action: action.into(),
            source: std::io::Error::other(reason.to_string()),
            hint: String::new(),
        }
    }

    /// The kernel's errno, if the kernel refused.
    pub fn code(&self) -> Option<i32> {
        match self {
            LinkError::Netlink { source, .. } | LinkError::Netns { source, .. } => {
                source.raw_os_error()
            }
            LinkError::NotNetns { .. } => None,
        }
    }

    pub fn is(&self, errno: i32) -> bool {
        self.code() == Some(errno)
    }

    /// The same error with `hint` added to its message.
    pub fn hint(mut self, more: impl Into<String>) -> Self {
        if let LinkError::Netlink { hint, .. } = &mut self {
            *hint = format!(" ({})", more.into());
        }
        self
    }

    /// Whether retrying later may succeed (the kernel was busy).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code(),
            Some(libc::EAGAIN | libc::EBUSY | libc::EINTR | libc::ENOBUFS)
        )
    }
}

fn nl(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    move |e| match &e {
        rtnetlink::Error::NetlinkError(m) => LinkError::errno(action, m.raw_code().abs()),
        other => LinkError::other(action, other),
    }
}

/// The main routing table's number (`ip route`'s table "main").
const MAIN_TABLE: u32 = 254;

/// A default route via `gw` on link `dev_index`, in `table` (None: the main table).
fn default_route(gw: IpAddr, dev_index: u32, table: Option<u32>) -> RouteMessage {
    let table = table.unwrap_or(MAIN_TABLE);
    match gw {
        IpAddr::V4(g) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .gateway(g)
            .output_interface(dev_index)
            .table_id(table)
            .build(),
        IpAddr::V6(g) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
            .gateway(g)
            .output_interface(dev_index)
            .table_id(table)
            .build(),
    }
}

/// A namespace, held open by its file descriptor.
pub struct Netns {
    pub path: PathBuf,
    fd: OwnedFd,
}

impl Netns {
    /// Opens the network namespace at `path`; [`LinkError::NotNetns`] if it is anything else.
    ///
    /// Never blocks and touches nothing but a namespace: the path is first opened with
    /// `O_PATH` (which opens no file: a FIFO would block an open for reading until a writer
    /// came, a device could act on it) and only a namespace file is then opened for real.
    pub fn open(path: &Path) -> Result<Self, LinkError> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let err = |source| LinkError::Netns {
            path: path.to_path_buf(),
            source,
        };
        let located = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)
            .map_err(err)?;
        let on_nsfs = nix::sys::statfs::fstatfs(&located)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC);
        let not_netns = |what: &str| LinkError::NotNetns {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        if !on_nsfs {
            let t = located.metadata().map_err(err)?.file_type();
            return Err(not_netns(if t.is_fifo() {
                "a named pipe (FIFO)"
            } else if t.is_dir() {
                "a directory"
            } else if t.is_char_device() || t.is_block_device() {
                "a device"
            } else if t.is_socket() {
                "a socket"
            } else {
                "a regular file (a namespace mounted inside another mount namespace is an empty file to everyone else)"
            }));
        }
        // Through the O_PATH descriptor: the very file checked, even if the path changed since.
        let f = File::open(format!("/proc/self/fd/{}", located.as_raw_fd())).map_err(err)?;
        let ns = Netns {
            path: path.to_path_buf(),
            fd: f.into(),
        };
        if !is_netns(&ns) {
            return Err(not_netns("another kind of namespace"));
        }
        Ok(ns)
    }

    /// Opens the namespace at `path`, first creating it there if there is none (a new
    /// namespace bind-mounted on the path, as `ip netns add` does). The mount keeps it alive
    /// when the agent exits, so it must be made in the host's mount namespace.
    pub fn open_or_create(path: &Path) -> Result<Self, LinkError> {
        if let Ok(ns) = Self::open(path) {
            return Ok(ns);
        }
        let err = |reason: String| LinkError::Netns {
            path: path.to_path_buf(),
            source: std::io::Error::other(reason),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("create {}: {e}", dir.display())))?;
        }
        let target = path.to_path_buf();
        std::thread::spawn(move || -> Result<(), String> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("make a network namespace: {e}"))?;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&target)
                .map_err(|e| format!("create the mount point: {e}"))?;
            let src = std::ffi::CString::new("/proc/thread-self/ns/net").unwrap_or_default();
            let dst = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
                .map_err(|e| e.to_string())?;
            // SAFETY: both are valid NUL-terminated paths alive for the call; no fs type or
            // data for a bind mount.
            let r = unsafe {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                return Err(format!(
                    "bind-mount the namespace: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(())
        })
        .join()
        .map_err(|_| err("worker thread panicked".into()))?
        .map_err(err)?;
        Self::open(path)
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// [`Netns::run`] without holding up the caller's runtime thread while `f` runs: awaits
    /// the fresh thread's result, so a caller can bound the wait (a thread that enters a
    /// namespace must not go back to a pool, hence no `spawn_blocking`).
    pub async fn run_async<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, LinkError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The caller may have given up waiting: nothing to tell then.
        self.spawn_in(f, move |r| drop(tx.send(r)))?;
        self.outcome(rx.await.ok())
    }

    /// Runs `f` on a fresh OS thread inside this namespace.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, LinkError> {
        // A std channel: a blocking wait is allowed from a runtime thread, as a join was.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn_in(f, move |r| drop(tx.send(r)))?;
        self.outcome(rx.recv().ok())
    }

    /// Starts `f` on a fresh OS thread that entered this namespace and hands its result to
    /// `done` (which never runs if the thread panicked: the sender drops unused).
    fn spawn_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
        done: impl FnOnce(Result<T, String>) + Send + 'static,
    ) -> Result<(), LinkError> {
        let fd = self.fd.try_clone().map_err(|source| LinkError::Netns {
            path: self.path.clone(),
            source,
        })?;
        std::thread::spawn(move || {
            done(
                nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("enter namespace: {e}"))
                    .and_then(|()| f()),
            )
        });
        Ok(())
    }

    fn outcome<T>(&self, r: Option<Result<T, String>>) -> Result<T, LinkError> {
        let err = |reason: String| LinkError::Netns {
            path: self.path.clone(),
            source: std::io::Error::other(reason),
        };
        r.ok_or_else(|| err("worker thread panicked".into()))?
            .map_err(err)
    }
}

/// Whether `ns` is a network namespace (not the empty file a failed `ip netns add` leaves,
/// nor a namespace of another kind).
pub fn is_netns(ns: &Netns) -> bool {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703; // _IO(0xb7, 0x3)
    let on_nsfs = nix::sys::statfs::fstatfs(&ns.fd)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC);
    // SAFETY: an ioctl without argument on a descriptor this struct owns.
    on_nsfs && unsafe { libc::ioctl(ns.fd.as_raw_fd(), NS_GET_NSTYPE as _) } == libc::CLONE_NEWNET
}

/// A link as the port pool sees it (see `crate::attach::pool`).
#[derive(Debug, Clone)]
pub struct PoolLink {
    pub name: String,
    pub index: u32,
    pub alias: String,
}

/// An rtnetlink connection bound to one namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A connection in the agent's own namespace.
    pub fn host() -> Result<Self, LinkError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| LinkError::other("open netlink socket", e))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A connection inside `ns`.
    pub fn in_netns(ns: &Netns) -> Result<Self, LinkError> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle) = ns.run(move || {
            let _guard = rt.enter();
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| format!("open netlink socket: {e}"))?;
            Ok((conn, handle))
        })?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A link's message, or None when it does not exist.
    async fn link(&self, name: &str) -> Result<Option<LinkMessage>, LinkError> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await {
            Ok(m) => Ok(m),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::ENODEV => {
                Ok(None)
            }
            Err(e) => Err(nl(format!("look up link {name}"))(e)),
        }
    }

    /// The index of a veth's other end (in the namespace that end lives in), or None when the
    /// link does not exist or has no peer.
    pub async fn peer_index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        Ok(self.link(name).await?.and_then(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Link(i) => Some(*i),
                _ => None,
            })
        }))
    }

    /// A link's name and link group, by index; None when there is no such link.
    pub async fn name_and_group(&self, index: u32) -> Result<Option<(String, u32)>, LinkError> {
        let mut s = self.handle.link().get().match_index(index).execute();
        let m = match s.try_next().await {
            Ok(m) => m,
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::ENODEV => None,
            Err(e) => return Err(nl(format!("look up link {index}"))(e)),
        };
        Ok(m.map(|m| name_and_group_of(&m)))
    }

    /// Deletes the link with this index (not a later link of the same name); absent is fine.
    pub async fn delete_index(&self, index: u32) -> Result<bool, LinkError> {
        self.delete_link(index, &index.to_string()).await
    }

    /// Deletes link `index` (`what` names it in errors); absent is fine.
    async fn delete_link(&self, index: u32, what: &str) -> Result<bool, LinkError> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::ENODEV => {
                Ok(false)
            }
            Err(e) => Err(nl(format!("delete link {what}"))(e)),
        }
    }

    /// The names of every link in the namespace, with their link group.
    pub async fn link_names(&self) -> Result<Vec<(String, u32)>, LinkError> {
        let mut s = self.handle.link().get().execute();
        let mut names = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("list links"))? {
            let (name, group) = name_and_group_of(&m);
            if !name.is_empty() {
                names.push((name, group));
            }
        }
        Ok(names)
    }

    /// Every link of the namespace with its alias (`IFLA_IFALIAS`).
    pub async fn links_with_alias(&self) -> Result<Vec<PoolLink>, LinkError> {
        let mut s = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("list links"))? {
            let mut l = PoolLink {
                name: String::new(),
                index: m.header.index,
                alias: String::new(),
            };
            for a in &m.attributes {
                match a {
                    LinkAttribute::IfName(n) => l.name = n.clone(),
                    LinkAttribute::IfAlias(a) => l.alias = a.clone(),
                    _ => {}
                }
            }
            out.push(l);
        }
        Ok(out)
    }

    /// Sets link `index`'s alias (empty clears it) and, if given, its MAC address, in one
    /// request.
    pub async fn set_alias_mac(
        &self,
        index: u32,
        alias: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<(), LinkError> {
        let mut b = LinkMessageBuilder::<LinkUnspec>::new().index(index);
        if let Some(mac) = mac {
            b = b.address(mac.to_vec());
        }
        let mut msg = b.build();
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.set_link(msg, format!("set alias of link {index} to '{alias}'"))
            .await
    }

    /// Applies a link change (`RTM_NEWLINK` on an existing link); `action` names it in errors.
    async fn set_link(&self, msg: LinkMessage, action: String) -> Result<(), LinkError> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(nl(action))
    }

    /// The lower link's index and the mode of `name` if it is a macvlan, else None.
    pub async fn macvlan_lower(&self, name: &str) -> Result<Option<(u32, MacVlanMode)>, LinkError> {
        use netlink_packet_route::link::{InfoMacVlan, LinkInfo};
        let Some(m) = self.link(name).await? else {
            return Ok(None);
        };
        let (mut mode, mut lower) = (None, None);
        for a in &m.attributes {
            match a {
                LinkAttribute::Link(i) => lower = Some(*i),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Data(InfoData::MacVlan(d)) = i {
                            mode = d.iter().find_map(|x| match x {
                                InfoMacVlan::Mode(m) => Some(*m),
                                _ => None,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(lower.zip(mode))
    }

    /// Creates `name`, a macvlan of link `lower` (in this namespace) in `mode`, directly inside
    /// `ns`, down. `Ok(false)`: the kernel refused the lower link (`Invalid argument`: a
    /// passthru macvlan holds it).
    pub async fn create_macvlan(
        &self,
        lower: u32,
        name: &str,
        mtu: u32,
        ns: &Netns,
        mode: MacVlanMode,
    ) -> Result<bool, LinkError> {
        let msg = LinkMacVlan::new(name, lower, mode)
            .mtu(mtu)
            .setns_by_fd(ns.raw_fd())
            .build();
        match self.handle.link().add(msg).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::EINVAL => {
                Ok(false)
            }
            Err(e) => {
                let err = nl(format!(
                    "create interface {name} in netns {}",
                    ns.path.display()
                ))(e);
                Err(if err.is(libc::EEXIST) {
                    err.hint(format!(
                        "the pod's namespace already has an interface {name}"
                    ))
                } else {
                    err
                })
            }
        }
    }

    /// The index of a link, or None when it does not exist.
    pub async fn index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        Ok(self.link(name).await?.map(|m| m.header.index))
    }

    /// A link's MAC address.
    pub async fn mac(&self, name: &str) -> Result<Option<String>, LinkError> {
        Ok(self.link(name).await?.and_then(|msg| {
            msg.attributes.iter().find_map(|a| match a {
                LinkAttribute::Address(b) => Some(
                    b.iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                ),
                _ => None,
            })
        }))
    }

    pub async fn mtu(&self, name: &str) -> Result<Option<u32>, LinkError> {
        Ok(self.link(name).await?.and_then(|msg| {
            msg.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
        }))
    }

    /// Creates a veth pair: `host` here, its peer `peer` born directly inside `peer_ns` with its
    /// MAC and MTU already set (no create-then-move, no window with a half-configured peer).
    pub async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_mac: [u8; 6],
        mtu: u32,
        peer_ns: &Netns,
    ) -> Result<(), LinkError> {
        self.create_veth_up(host, peer, peer_mac, mtu, peer_ns, false)
            .await
    }

    /// [`Netlink::create_veth`], with this end born up when `up` (one link event fewer than
    /// setting it up afterwards).
    pub async fn create_veth_up(
        &self,
        host: &str,
        peer: &str,
        peer_mac: [u8; 6],
        mtu: u32,
        peer_ns: &Netns,
        up: bool,
    ) -> Result<(), LinkError> {
        // The peer cannot be born up: the kernel opens it before the pair is linked.
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .mtu(mtu)
            .address(peer_mac.to_vec())
            .setns_by_fd(peer_ns.raw_fd())
            .build();
        let mut b = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host.to_string())
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)));
        if up {
            b = b.up();
        }
        let msg = b.build();
        self.handle.link().add(msg).execute().await.map_err(|e| {
            let err = nl(format!(
                "create veth {host} with peer {peer} in netns {}",
                peer_ns.path.display()
            ))(e);
            if err.is(libc::EEXIST) {
                err.hint(format!(
                    "interface {host} on the host or {peer} in the pod's namespace already exists"
                ))
            } else {
                err
            }
        })
    }

    pub async fn set_up(&self, name: &str, index: u32) -> Result<(), LinkError> {
        let msg = LinkMessageBuilder::<LinkUnspec>::new()
            .index(index)
            .up()
            .build();
        self.set_link(msg, format!("set link {name} up")).await
    }

    /// Whether a link is administratively up.
    pub async fn is_up(&self, index: u32) -> Result<bool, LinkError> {
        let mut s = self.handle.link().get().match_index(index).execute();
        let m = s
            .try_next()
            .await
            .map_err(nl(format!("look up link {index}")))?;
        Ok(m.is_some_and(|m| m.header.flags.contains(LinkFlags::Up)))
    }

    pub async fn add_address(
        &self,
        name: &str,
        index: u32,
        ip: IpAddr,
        prefix: u8,
    ) -> Result<(), LinkError> {
        let mut req = self.handle.address().add(index, ip, prefix);
        if ip.is_ipv6() {
            // No duplicate address detection: the master guarantees uniqueness, and DAD would
            // leave the address unusable for a second or more after ADD returns.
            req.message_mut().header.flags =
                netlink_packet_route::address::AddressHeaderFlags::Nodad;
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::EEXIST => Ok(()),
            Err(e) => Err(nl(format!("add address {ip}/{prefix} to {name}"))(e)),
        }
    }

    /// Removes an address from a link; an address that is not there is not an error.
    pub async fn del_address(
        &self,
        name: &str,
        index: u32,
        ip: IpAddr,
        prefix: u8,
    ) -> Result<(), LinkError> {
        let mut msg = netlink_packet_route::address::AddressMessage::default();
        msg.header.family = Self::family(&ip);
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Address(ip));
        if ip.is_ipv4() {
            msg.attributes.push(AddressAttribute::Local(ip));
        }
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m))
                if [libc::EADDRNOTAVAIL, libc::ENODEV].contains(&m.raw_code().abs()) =>
            {
                Ok(())
            }
            Err(e) => Err(nl(format!("remove address {ip}/{prefix} from {name}"))(e)),
        }
    }

    /// The addresses of a link (global scope), as `ip/prefix`.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, LinkError> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("list addresses"))? {
            if m.header.index != index {
                continue;
            }
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a
                    && !(ip.is_ipv6()
                        && m.header.scope != netlink_packet_route::address::AddressScope::Universe)
                {
                    out.push((*ip, m.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    pub async fn add_default_route(&self, gw: IpAddr, dev_index: u32) -> Result<(), LinkError> {
        let msg = default_route(gw, dev_index, None);
        match self.handle.route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::EEXIST => Ok(()),
            Err(e) => Err(nl(format!("add default route via {gw}"))(e)),
        }
    }

    /// Makes the default route of `gw`'s family go via `gw` on link `dev_index`, replacing any
    /// other default route of that family (`ip route replace default`).
    pub async fn replace_default_route(
        &self,
        gw: IpAddr,
        dev_index: u32,
        table: Option<u32>,
    ) -> Result<(), LinkError> {
        let msg = default_route(gw, dev_index, table);
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(nl(format!(
                "set the default route via {gw} (table {})",
                table.unwrap_or(MAIN_TABLE)
            )))
    }

    /// Sets link `name` (index `index`): its MAC if given, its MTU, and up.
    pub async fn set_mac_mtu_up(
        &self,
        name: &str,
        index: u32,
        mac: Option<[u8; 6]>,
        mtu: u32,
    ) -> Result<(), LinkError> {
        let mut b = LinkMessageBuilder::<LinkUnspec>::new()
            .index(index)
            .mtu(mtu)
            .up();
        if let Some(mac) = mac {
            b = b.address(mac.to_vec());
        }
        self.set_link(b.build(), format!("set link {name} up with MTU {mtu}"))
            .await
    }

    /// Writes a permanent neighbour entry `ip` -> `mac` on link `index` (`ip neigh replace ...
    /// nud permanent`).
    pub async fn replace_neighbour(
        &self,
        name: &str,
        index: u32,
        ip: IpAddr,
        mac: [u8; 6],
    ) -> Result<(), LinkError> {
        self.handle
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("write the neighbour entry {ip} on {name}")))
    }

    /// The addresses of the permanent neighbour entries of link `index`.
    pub async fn permanent_neighbours(&self, index: u32) -> Result<Vec<IpAddr>, LinkError> {
        use netlink_packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourState,
        };
        let mut s = self.handle.neighbours().get().execute();
        let mut out = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("list neighbours"))? {
            if m.header.ifindex != index || m.header.state != NeighbourState::Permanent {
                continue;
            }
            for a in &m.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                        out.push(IpAddr::V4(*ip))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                        out.push(IpAddr::V6(*ip))
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Removes the neighbour entry `ip` of link `index`; one that is not there is not an error.
    pub async fn del_neighbour(&self, name: &str, index: u32, ip: IpAddr) -> Result<(), LinkError> {
        use netlink_packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourMessage,
        };
        let mut msg = NeighbourMessage::default();
        msg.header.family = Self::family(&ip);
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(match ip {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        match self.handle.neighbours().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m))
                if [libc::ENOENT, libc::ENODEV].contains(&m.raw_code().abs()) =>
            {
                Ok(())
            }
            Err(e) => Err(nl(format!("remove the neighbour entry {ip} on {name}"))(e)),
        }
    }

    /// Whether a default route via `gw` exists.
    pub async fn has_default_route(&self, gw: IpAddr) -> Result<bool, LinkError> {
        let msg = match gw {
            IpAddr::V4(_) => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            IpAddr::V6(_) => RouteMessageBuilder::<Ipv6Addr>::new().build(),
        };
        let mut s = self.handle.route().get(msg).execute();
        while let Some(r) = s.try_next().await.map_err(nl("list routes"))? {
            if r.header.destination_prefix_length != 0 {
                continue;
            }
            let via = r.attributes.iter().find_map(|a| match a {
                netlink_packet_route::route::RouteAttribute::Gateway(
                    netlink_packet_route::route::RouteAddress::Inet(g),
                ) => Some(IpAddr::V4(*g)),
                netlink_packet_route::route::RouteAttribute::Gateway(
                    netlink_packet_route::route::RouteAddress::Inet6(g),
                ) => Some(IpAddr::V6(*g)),
                _ => None,
            });
            if via == Some(gw) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Puts a link into link group `group` (`IFLA_GROUP`): a cheap attribute change, unlike a
    /// deletion. A link that does not exist is not an error.
    pub async fn set_group(&self, name: &str, group: u32) -> Result<bool, LinkError> {
        let Some(index) = self.index(name).await? else {
            return Ok(false);
        };
        let msg = LinkMessageBuilder::<LinkUnspec>::new()
            .index(index)
            .link_group(group)
            .build();
        match self.handle.link().set(msg).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::ENODEV => {
                Ok(false)
            }
            Err(e) => Err(nl(format!("move link {name} to link group {group}"))(e)),
        }
    }

    /// Deletes every link of link group `group` in one kernel batch (one RCU grace period for
    /// all of them, where deleting one by one pays one each). Returns false if there were none.
    pub async fn delete_group(&self, group: u32) -> Result<bool, LinkError> {
        let mut req = self.handle.link().del(0);
        req.message_mut()
            .attributes
            .push(LinkAttribute::Group(group));
        match req.execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::ENODEV => {
                Ok(false)
            }
            Err(e) => Err(nl(format!("delete the links of link group {group}"))(e)),
        }
    }

    /// Deletes a link; a link that does not exist is not an error.
    pub async fn delete(&self, name: &str) -> Result<bool, LinkError> {
        let Some(index) = self.index(name).await? else {
            return Ok(false);
        };
        self.delete_link(index, name).await
    }

    /// Address family helper for callers that build their own messages.
    pub fn family(ip: &IpAddr) -> AddressFamily {
        if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        }
    }
}

/// A link message's name (empty if it has none) and link group (0 if unset).
fn name_and_group_of(m: &LinkMessage) -> (String, u32) {
    let mut out = (String::new(), 0);
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => out.0 = n.clone(),
            LinkAttribute::Group(g) => out.1 = *g,
            _ => {}
        }
    }
    out
}

/// Readies a new interface before it comes up, in the calling thread's namespace: with
/// `tx_csum_off`, TX checksum offload off (the userspace datapath hands packets to the wire
/// without ever computing the checksum a veth left to "hardware": TCP silently fails without
/// this, while ICMP works, which hides it); with `ipv6_off`, IPv6 off on it (a network without
/// IPv6: no link-local address, no DAD, router solicitations or MLD reports, which the switch
/// would flood to every port of the network; Docker does the same for such networks).
pub(crate) fn prepare_link_here(
    name: &str,
    tx_csum_off: bool,
    ipv6_off: bool,
) -> Result<(), String> {
    if tx_csum_off {
        ethtool_set_tx_csum(name, false)
            .map_err(|e| format!("turn tx checksum offload off on {name}: {e}"))?;
    }
    if ipv6_off {
        write_disable_ipv6(name, true)?;
    }
    Ok(())
}

/// Writes `disable_ipv6` of interface `name` in the calling thread's namespace (/proc/sys/net
/// is the namespace of the thread that opens it). No IPv6 in the kernel: nothing to do.
pub(crate) fn write_disable_ipv6(name: &str, disable: bool) -> Result<(), String> {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    match std::fs::write(&path, if disable { "1" } else { "0" }) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "turn IPv6 {} on {name} ({path}): {e}",
            if disable { "off" } else { "on" }
        )),
        Ok(()) => Ok(()),
    }
}

/// Reads whether TX checksum offload is on (for CHECK and tests).
pub fn tx_checksum_enabled(ns: &Netns, ifname: &str) -> Result<bool, LinkError> {
    let name = ifname.to_string();
    ns.run(move || {
        ethtool_get_tx_csum(&name).map_err(|e| format!("read tx checksum offload of {name}: {e}"))
    })
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(ifname: &str, ev: &mut EthtoolValue) -> std::io::Result<()> {
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: ev as *mut EthtoolValue as *mut libc::c_void,
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: a plain datagram socket, closed below; the ioctl reads and writes `req` and the
    // `ev` it points to, both alive for the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let r = libc::ioctl(fd, SIOCETHTOOL as _, &mut req as *mut IfReq);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            return Err(err);
        }
    }
    Ok(())
}

fn ethtool_set_tx_csum(ifname: &str, on: bool) -> std::io::Result<()> {
    ethtool(
        ifname,
        &mut EthtoolValue {
            cmd: ETHTOOL_STXCSUM,
            data: u32::from(on),
        },
    )
}

fn ethtool_get_tx_csum(ifname: &str) -> std::io::Result<bool> {
    let mut ev = EthtoolValue {
        cmd: ETHTOOL_GTXCSUM,
        data: 0,
    };
    ethtool(ifname, &mut ev)?;
    Ok(ev.data != 0)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    parts.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17.2: opening a FIFO given as the pod's namespace blocked the runtime thread
    /// until a writer came. Whatever the path is, the answer comes at once and says what it is.
    #[test]
    fn only_a_network_namespace_opens_and_nothing_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let file = dir.path().join("file");
        std::fs::write(&file, b"").expect("file");
        let cases = [
            (fifo, Some("named pipe")),
            (file, Some("regular file")),
            (dir.path().to_path_buf(), Some("directory")),
            (PathBuf::from("/dev/null"), Some("device")),
            (
                PathBuf::from("/proc/self/ns/mnt"),
                Some("another kind of namespace"),
            ),
            (PathBuf::from("/proc/self/ns/net"), None),
        ];
        for (path, want) in cases {
            let (tx, rx) = std::sync::mpsc::channel();
            let p = path.clone();
            std::thread::spawn(move || {
                let _ = tx.send(Netns::open(&p).map(|_| ()).map_err(|e| e.to_string()));
            });
            let got = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("opening {} blocked", path.display()));
            match (want, got) {
                (None, Ok(())) => {}
                (Some(what), Err(e)) => assert!(
                    e.contains("is not a network namespace") && e.contains(what),
                    "{}: {e}",
                    path.display()
                ),
                (want, got) => panic!("{}: want {want:?}, got {got:?}", path.display()),
            }
        }
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:02:0a:01:02:03"), Some([2, 2, 10, 1, 2, 3]));
        assert_eq!(parse_mac("02:02:0a:01:02"), None);
        assert_eq!(parse_mac("zz:02:0a:01:02:03"), None);
    }
}
