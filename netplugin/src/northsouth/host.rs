//! The host side of north-south made real: tenant router namespaces, their veths, addresses,
//! routes, neighbours and rules, and the host namespace's routes and chains. Every step is
//! idempotent (found and fixed when present, made when missing) and derived from the desired
//! state alone, so the same code serves the first start, a restart and every change.
//!
//! Links, addresses, routes and neighbours go through iproute2 (`ip -batch`), rules through
//! `iptables-restore`: the host side changes off the ADD's critical path (a new pod needs none
//! of it but its private address), so a process per change costs no pod anything.

use super::{Desired, RouterNet, TenantRouter, Transit};
use crate::datapath::{Datapath, DatapathError};
use crate::fabric::{ROUTER_MAC, RouterPort};
use crate::names::{
    ROUTER_UPLINK, is_transit_ifname, router_gw_ifname, router_netns, router_netns_prefix,
    router_port_ifname, transit_ifname,
};
use crate::netlink::{LinkError, Netlink, Netns};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("{what}: `{program}` failed ({status}): {stderr}")]
    Command {
        what: String,
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: run `{program}` (is it installed?): {source}")]
    Spawn {
        what: String,
        program: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("{0}")]
    Datapath(#[from] DatapathError),
    #[error(
        "{step}: no answer after {after:?} (a kernel, ovs-vswitchd or process call that never returned); given up, retrying"
    )]
    Stuck { step: String, after: Duration },
}

/// How long one step of making a tenant router (its rules, its switch ports, its links) may
/// take. Each is done in a few tens of milliseconds, a few seconds on a loaded machine; a step
/// that never ends must not hold the way out of every later pod silently: it is given up
/// (with a warning naming it) and the whole router is made again.
const STEP_LIMIT: Duration = Duration::from_secs(15);

/// How long one pass over the host side may take (several routers, the host's routes).
const APPLY_LIMIT: Duration = Duration::from_secs(60);

/// `f`, given up as [`NsError::Stuck`] after `limit`.
async fn bounded<T>(
    step: impl Into<String>,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, NsError>>,
) -> Result<T, NsError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(NsError::Stuck {
            step: step.into(),
            after: limit,
        }),
    }
}

/// Runs `program args` (with `stdin`), returns its standard output.
async fn run(what: &str, program: &str, args: &[&str], stdin: &str) -> Result<String, NsError> {
    run_in(what, None, program, args, stdin).await
}

/// [`run`], the program in network namespace `ns` when given: entered between fork and exec
/// (no `ip netns exec`, whose extra process, mount namespace and /sys remount cost
/// milliseconds on the way to a new tenant's first packet).
async fn run_in(
    what: &str,
    ns: Option<&Netns>,
    program: &str,
    args: &[&str],
    stdin: &str,
) -> Result<String, NsError> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(program);
    if let Some(ns) = ns {
        let fd = ns.raw_fd();
        // SAFETY: between fork and exec only setns(2), async-signal-safe, on a descriptor
        // `ns` keeps open until the child is spawned (the call below awaits that).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| NsError::Spawn {
            what: what.to_string(),
            program: program.to_string(),
            source,
        })?;
    if let Some(mut i) = child.stdin.take() {
        // A closed pipe shows as the command's own failure below.
        let _ = i.write_all(stdin.as_bytes()).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| NsError::Spawn {
            what: what.to_string(),
            program: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(NsError::Command {
            what: what.to_string(),
            program: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// `ip [-n ns] -batch -` with `lines`; nothing to do for none.
async fn ip_batch(what: &str, ns: Option<&str>, lines: &[String]) -> Result<(), NsError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut args = Vec::new();
    if let Some(n) = ns {
        args.extend(["-n", n]);
    }
    args.extend(["-batch", "-"]);
    run(what, "ip", &args, &(lines.join("\n") + "\n")).await?;
    Ok(())
}

/// `ip [-n ns] -j <args>`, parsed.
async fn ip_json(what: &str, ns: Option<&str>, args: &[&str]) -> Result<Vec<Value>, NsError> {
    let mut a = Vec::new();
    if let Some(n) = ns {
        a.extend(["-n", n]);
    }
    a.push("-j");
    a.extend_from_slice(args);
    let out = run(what, "ip", &a, "").await?;
    Ok(serde_json::from_str::<Vec<Value>>(&out).unwrap_or_default())
}

/// Runs an iptables-restore of `family` (4 or 6): in `ns` (a router: `flush`es its tables
/// whole) or in the host namespace (`--noflush`: only the chains named).
async fn restore(what: &str, ns: Option<&Netns>, v6: bool, rules: &str) -> Result<(), NsError> {
    let bin = if v6 {
        "ip6tables-restore"
    } else {
        "iptables-restore"
    };
    match ns {
        Some(n) => run_in(what, Some(n), bin, &["-w"], rules).await?,
        None => run(what, bin, &["--noflush"], rules).await?,
    };
    Ok(())
}

/// Writes sysctls (path under /proc/sys/net, value) in namespace `ns` (None: the agent's).
async fn sysctls(
    ns: Option<&Netns>,
    values: &'static [(&'static str, &'static str)],
) -> Result<(), NsError> {
    let write = move || -> Result<(), String> {
        for (p, v) in values {
            let path = format!("/proc/sys/net/{p}");
            match std::fs::write(&path, v) {
                // No IPv6 in this kernel: nothing to forward.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("write {v} to {path}: {e}")),
                Ok(()) => {}
            }
        }
        Ok(())
    };
    match ns {
        Some(n) => n.run_async(write).await?,
        None => tokio::task::spawn_blocking(write)
            .await
            .map_err(|e| LinkError::other("write host sysctls", e))?
            .map_err(|e| LinkError::other("write host sysctls", e))?,
    };
    Ok(())
}

/// Frames to send, each with the interface to send it on.
type Frames = Vec<(String, Vec<u8>)>;

/// Sends each (gateway interface, frame) from inside the router namespace `ns`: the
/// announcements of its gateways ([`super::gratuitous_arp`], [`super::unsolicited_na`]).
fn announce_gateways(ns: &Netns, frames: Frames) -> Result<(), LinkError> {
    ns.run(move || {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // Protocol 0: a socket that sends only (the frames carry their own EtherType).
        // SAFETY: plain socket(2); the descriptor is owned (and closed) by `fd` at once.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(format!(
                "open a packet socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for (ifname, frame) in frames {
            let name = std::ffi::CString::new(ifname.as_str()).map_err(|e| e.to_string())?;
            // SAFETY: a valid NUL-terminated name alive for the call.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if index == 0 {
                // Gone again (its network's last pod left, or the router is being made
                // again): nothing to announce there.
                continue;
            }
            // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set below.
            let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            to.sll_family = libc::AF_PACKET as u16;
            to.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
            to.sll_ifindex = index as i32;
            to.sll_halen = 6;
            to.sll_addr[..6].copy_from_slice(&frame[0..6]);
            // SAFETY: `frame` and `to` are alive and sized as passed.
            let sent = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&to as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if sent < 0 {
                return Err(format!(
                    "announce a gateway on {ifname}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    })
}

/// The transit links' MTU (a veth's default; the host's routing takes it from there).
const TRANSIT_MTU: u32 = 1500;

/// The cluster-wide router MAC, as bytes.
fn router_mac() -> [u8; 6] {
    crate::netlink::parse_mac(ROUTER_MAC).expect("a valid MAC")
}

/// The MAC of a router's end of its transit link: locally administered, from its transit
/// address (unique on the host, stable across restarts).
fn transit_mac(router: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = router.octets();
    [0x02, 0x00, a, b, c, d]
}

/// The frames that announce a new router's gateways (IPv4 and IPv6) on their interfaces.
fn announcements(ports: &[(RouterNet, u32)]) -> Frames {
    let mut out = Vec::new();
    for (n, _) in ports {
        let vg = router_gw_ifname(&n.key());
        out.push((
            vg.clone(),
            super::gratuitous_arp(router_mac(), n.gateway).to_vec(),
        ));
        if let Some((g6, _)) = n.gateway6 {
            out.push((vg, super::unsolicited_na(router_mac(), g6).to_vec()));
        }
    }
    out
}

/// The index of link `name`, which was just made or found.
async fn index_of(nl: &Netlink, name: &str) -> Result<u32, NsError> {
    nl.index(name).await?.ok_or_else(|| {
        LinkError::other(
            format!("set up link {name} of a tenant router"),
            "it disappeared while being set up (removed by someone else?); retrying",
        )
        .into()
    })
}

/// A router's forwarding, turned on once its rules are in (a network's traffic never crosses
/// to another network of the tenant, not even while a new router is being made).
const FORWARDING: &[(&str, &str)] = &[("ipv4/ip_forward", "1"), ("ipv6/conf/all/forwarding", "1")];

/// No duplicate address detection in a router, written before its links are made (they take
/// the `default` values): its link-local addresses are usable at once (the gateway and transit
/// addresses are added `nodad`), and nothing else can hold them on these point-to-point links
/// and this router-owned gateway port.
const NO_DAD: &[(&str, &str)] = &[
    ("ipv6/conf/default/accept_dad", "0"),
    ("ipv6/conf/all/accept_dad", "0"),
];

/// The host's IPv4 forwarding. IPv6 forwarding is turned on only once a dual-stack network
/// needs it ([`FORWARDING6`]): it makes the host stop accepting router advertisements on
/// interfaces with the default `accept_ra=1`.
const FORWARDING4: &[(&str, &str)] = &[("ipv4/ip_forward", "1")];
const FORWARDING6: &[(&str, &str)] = &[("ipv6/conf/all/forwarding", "1")];

/// TX checksum offload off on `names` in `ns` (None: the agent's namespace), IPv6 off on those
/// of `no_ipv6`: a packet the kernel leaves to "hardware" to checksum reaches the userspace
/// datapath, which never fills it in.
async fn prepare(
    ns: Option<&Netns>,
    names: Vec<String>,
    no_ipv6: Vec<String>,
) -> Result<(), NsError> {
    let f = move || -> Result<(), String> {
        for n in &names {
            crate::netlink::prepare_link_here(n, true, no_ipv6.contains(n))?;
        }
        Ok(())
    };
    match ns {
        Some(n) => n.run_async(f).await?,
        None => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| LinkError::other("prepare host links", e))?
            .map_err(|e| LinkError::other("prepare host links", e))?,
    };
    Ok(())
}

/// The policy routing rules of a tenant router (`super::REPLY_TABLE`): what enters from the
/// host is routed by the main table; anything else carrying the from-host mark (a reply to a
/// connection the host opened) by the reply table, whose only route leads back to the host.
/// Added once (rules are not replaced in place like routes): found by their preference.
async fn ensure_reply_rules(ns: &str) -> Result<(), NsError> {
    let table = super::REPLY_TABLE.to_string();
    for fam in ["-4", "-6"] {
        let have: BTreeSet<u64> = ip_json(
            "read a tenant router's rules",
            Some(ns),
            &[fam, "rule", "show"],
        )
        .await?
        .iter()
        .filter_map(|r| r["priority"].as_u64())
        .collect();
        let want: [(u64, Vec<&str>); 2] = [
            (
                REPLY_RULE_PREF,
                vec!["iif", ROUTER_UPLINK, "lookup", "main"],
            ),
            (
                REPLY_RULE_PREF + 1,
                vec!["fwmark", super::FROM_HOST_MARK, "lookup", &table],
            ),
        ];
        for (pref, sel) in want {
            if have.contains(&pref) {
                continue;
            }
            let pref = pref.to_string();
            let mut args = vec!["-n", ns, fam, "rule", "add", "pref", &pref];
            args.extend(sel);
            run(
                "route a tenant router's replies back to the host",
                "ip",
                &args,
                "",
            )
            .await?;
        }
    }
    Ok(())
}

/// The host namespace: forwarding on, the agent's chains (`rules`: IPv4, IPv6; masquerade
/// what the tenant routers send out, accept forwarding to and from them, published ports) and
/// the jumps to them.
async fn ensure_host(rules: &(String, String)) -> Result<(), NsError> {
    sysctls(None, FORWARDING4).await?;
    restore("write the host's CONTIV chains", None, false, &rules.0).await?;
    restore(
        "write the host's CONTIV chains (IPv6)",
        None,
        true,
        &rules.1,
    )
    .await?;
    for bin in ["iptables", "ip6tables"] {
        for (v4_only, table, builtin, matches, chain) in super::JUMPS {
            if *v4_only && bin == "ip6tables" {
                continue;
            }
            let rule = |op: &'static str| {
                let mut a = vec!["-w", "-t", table, op, builtin];
                if op == "-I" {
                    a.push("1");
                }
                a.extend_from_slice(matches);
                a.extend(["-j", chain]);
                a
            };
            if run("check a jump", bin, &rule("-C"), "").await.is_err() {
                run(
                    &format!("jump from {builtin} to {chain}"),
                    bin,
                    &rule("-I"),
                    "",
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Removes the host side (`netplugin --uninstall-northsouth`, with the agent stopped): the
/// router ports of the bridge, the tenant router namespaces of `bridge` (their veths, the
/// transits and the routes through them go with them), the jumps to the agent's chains and
/// the chains, IPv4 and IPv6. What is already gone is not an error. Forwarding is left on (the
/// host may have had it on before).
pub async fn uninstall(dp: &Datapath, bridge: &str) -> Result<(), NsError> {
    for name in dp.router_ports().into_keys() {
        dp.remove_port(&name).await?;
        tracing::info!(port = %name, "router port removed");
    }
    let prefix = router_netns_prefix(bridge);
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with(&prefix) {
                run("remove a tenant router", "ip", &["netns", "del", &n], "").await?;
                tracing::info!(netns = %n, "tenant router removed");
            }
        }
    }
    for bin in ["iptables", "ip6tables"] {
        for (v4_only, table, builtin, matches, chain) in super::JUMPS {
            if *v4_only && bin == "ip6tables" {
                continue;
            }
            let mut a = vec!["-w", "-t", table, "-D", builtin];
            a.extend_from_slice(matches);
            a.extend(["-j", chain]);
            // Once per copy (an interrupted start may have added one twice).
            while run("remove a jump", bin, &a, "").await.is_ok() {}
        }
        for (table, chain) in [
            ("nat", super::POSTROUTING_CHAIN),
            ("nat", super::DNAT_CHAIN),
            ("filter", super::FORWARD_CHAIN),
        ] {
            for op in ["-F", "-X"] {
                // A chain that is not there is what we want.
                let _ = run("remove a chain", bin, &["-w", "-t", table, op, chain], "").await;
            }
        }
    }
    Ok(())
}

/// The preference of the first of a tenant router's two rules (before `main`, 32766).
const REPLY_RULE_PREF: u64 = 100;

/// A tenant router as made: what it was made from, its transit, its networks' port numbers.
type Made = (TenantRouter, Transit, Vec<(RouterNet, u32)>);

/// The agent's host side: follows the datapath's inputs for as long as the agent runs.
pub struct NorthSouth {
    dp: Arc<Datapath>,
    bridge: String,
    /// The pod MTU (the router ports' too).
    mtu: u32,
    /// What was last made real (None: nothing yet since start).
    applied: Option<Desired>,
    /// The host namespace's chains as last written (IPv4, IPv6).
    host_rules: Option<(String, String)>,
    /// This host's node (VTEP) address: the source what the host routes to pods on other
    /// hosts is given, so their replies come back here (`fabric::return_flows`).
    node: Option<Ipv4Addr>,
    /// Whether the host's IPv6 forwarding was turned on (a dual-stack network has a router).
    forwarding6: bool,
    /// Each tenant router as last made, with its transit and port numbers: a change elsewhere
    /// (another tenant's pod) leaves it alone while its links are there.
    made: BTreeMap<String, Made>,
    /// A netlink connection in the agent's namespace (made on first use, in the runtime).
    host: Option<Netlink>,
}

impl NorthSouth {
    pub fn new(dp: Arc<Datapath>, bridge: &str, mtu: u32) -> Self {
        NorthSouth {
            dp,
            bridge: bridge.to_string(),
            mtu,
            applied: None,
            host_rules: None,
            node: None,
            forwarding6: false,
            made: BTreeMap::new(),
            host: None,
        }
    }

    /// This host's node address (an IPv6 one is not used: IPv6 into another host's pods is
    /// not routed, docs/decisions.md).
    pub fn with_node_address(mut self, node: std::net::IpAddr) -> Self {
        if let std::net::IpAddr::V4(a) = node {
            self.node = Some(a);
        }
        self
    }

    fn host_netlink(&mut self) -> Result<Netlink, NsError> {
        if self.host.is_none() {
            self.host = Some(Netlink::host()?);
        }
        Ok(self.host.clone().expect("just made"))
    }

    /// Follows the datapath: at every change of its inputs, makes the host side match.
    pub async fn run(mut self) {
        let mut changes = self.dp.subscribe();
        loop {
            let inputs = self.dp.northsouth_inputs().await;
            tracing::debug!(ready = inputs.is_some(), "north-south: inputs changed");
            if let Some(i) = inputs {
                let want = super::desired(&i);
                if self.applied.as_ref() != Some(&want) {
                    let r =
                        bounded("set up the tenant routers", APPLY_LIMIT, self.apply(&want)).await;
                    match r {
                        Ok(()) => self.applied = Some(want),
                        Err(e) => {
                            tracing::warn!(error = %e, "set up the tenant routers (the way out of the networks); retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    }
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    async fn apply(&mut self, d: &Desired) -> Result<(), NsError> {
        let pvt = d.pvt.unwrap_or_else(|| super::pvt_subnet(""));
        let rules = super::host_rules(d);
        if self.host_rules.as_ref() != Some(&rules) {
            ensure_host(&rules).await?;
            self.host_rules = Some(rules);
        }
        let dual_stack = d
            .tenants
            .values()
            .flat_map(|t| t.networks.values())
            .any(|n| n.gateway6.is_some());
        if dual_stack && !self.forwarding6 {
            sysctls(None, FORWARDING6).await?;
            self.forwarding6 = true;
        }
        let host = self.host_netlink()?;
        // Transit numbers the links already have (an agent restart keeps them).
        let mut have = BTreeMap::new();
        for t in d.tenants.keys() {
            let name = transit_ifname(t);
            let Some(i) = host.index(&name).await? else {
                continue;
            };
            for (a, _) in host.addresses(i).await? {
                if let Some(n) = match a {
                    std::net::IpAddr::V4(a) => super::transit_index(pvt, a),
                    std::net::IpAddr::V6(_) => None,
                } {
                    have.insert(t.clone(), n);
                }
            }
        }
        let index = super::assign_transits(&have, d.tenants.keys(), super::transit_capacity(pvt));
        let mut routers: BTreeMap<u64, RouterPort> = BTreeMap::new();
        let mut host_routes: Vec<String> = Vec::new();
        let mut ports_wanted = BTreeSet::new();
        let mut announce: Vec<(String, Frames)> = Vec::new();
        let root_links: BTreeSet<String> = host
            .link_names()
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for (tenant, t) in &d.tenants {
            let Some(tr) = index.get(tenant).and_then(|i| super::transit(pvt, *i)) else {
                tracing::warn!(%tenant, private_subnet = %pvt, "no transit address left in the private subnet's upper half: the tenant gets no router here (set a larger --private-subnet)");
                continue;
            };
            let links_there = root_links.contains(&transit_ifname(tenant))
                && t.networks
                    .values()
                    .all(|n| root_links.contains(&router_port_ifname(&n.key())));
            let ports = match self.made.get(tenant) {
                Some((was, was_tr, ports)) if was == t && *was_tr == tr && links_there => {
                    ports.clone()
                }
                _ => {
                    let ports = self
                        .ensure_router(&host, tenant, t, tr, &root_links)
                        .await?;
                    announce.push((tenant.clone(), announcements(&ports)));
                    self.made
                        .insert(tenant.clone(), (t.clone(), tr, ports.clone()));
                    ports
                }
            };
            tracing::debug!(%tenant, transit = %tr.host, networks = ports.len(), "tenant router ready");
            for (net, of) in ports {
                ports_wanted.insert(router_port_ifname(&net.key()));
                routers.insert(net.nid, net.port(of));
            }
            let dev = transit_ifname(tenant);
            // The default tenant's subnets are reachable from the host by pod address; every
            // tenant's endpoints by their private addresses.
            if tenant == "default" {
                for n in t.networks.values() {
                    host_routes.push(format!(
                        "route replace {} via {} dev {dev}",
                        n.subnet, tr.router
                    ));
                    if let Some((_, s6)) = n.gateway6 {
                        host_routes.push(format!(
                            "route replace {s6} via {} dev {dev}",
                            super::transit6(tr.router)
                        ));
                    }
                }
            }
            for p in t.private.keys() {
                host_routes.push(format!("route replace {p}/32 via {} dev {dev}", tr.router));
            }
        }
        self.made.retain(|t, _| d.tenants.contains_key(t));
        // The host's routes back to the pods before the flows that make a router the pods'
        // gateway (and before its announcement): a pod sends what it queued for its gateway
        // the moment it learns the router MAC, and the replies from the outside come back
        // through the host to the pod's own address.
        self.fix_host_routes(&host_routes).await?;
        self.dp.set_routers(routers).await?;
        // The new gateways' flows are in (on ports ovs-vswitchd reads, see
        // `Datapath::add_router_port`): tell the pods that asked for them too early. A few
        // times, in case a frame is lost on the way.
        for (tenant, gateways) in announce {
            let path = PathBuf::from("/run/netns").join(router_netns(&self.bridge, &tenant));
            tokio::spawn(async move {
                for wait in [0, 50, 250] {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    // Gone again (its last pod left): nothing to announce.
                    let Ok(ns) = Netns::open(&path) else { return };
                    if let Err(e) = announce_gateways(&ns, gateways.clone()) {
                        tracing::warn!(%tenant, error = %e, "announce the tenant router's gateways (a pod that asked before the router was there waits a second for ARP)");
                        return;
                    }
                }
            });
        }
        self.remove_departed(d, &ports_wanted).await?;
        Ok(())
    }

    /// One tenant router: its namespace, transit, a port per network, neighbours and rules.
    /// Returns the networks' port numbers.
    ///
    /// A new tenant's first pod waits for this (its first packet out needs the router), so it
    /// goes over netlink rather than through processes, and what does not depend on the rest
    /// runs beside it: the rules (iptables-restore, IPv4 and IPv6) and the switch ports go while
    /// the links are set up.
    async fn ensure_router(
        &self,
        host: &Netlink,
        tenant: &str,
        t: &TenantRouter,
        tr: Transit,
        root_links: &BTreeSet<String>,
    ) -> Result<Vec<(RouterNet, u32)>, NsError> {
        let started = std::time::Instant::now();
        let path = PathBuf::from("/run/netns").join(router_netns(&self.bridge, tenant));
        // Made if missing (bind-mounted like `ip netns add`: it outlives the agent). A new one
        // holds nothing stale to look for.
        let (ns, fresh) = match Netns::open(&path) {
            Ok(ns) => (ns, false),
            Err(_) => (Netns::open_or_create(&path)?, true),
        };
        tracing::debug!(%tenant, fresh, "tenant router: namespace open");
        sysctls(Some(&ns), NO_DAD).await?;
        let inner = Netlink::in_netns(&ns)?;
        let inside: BTreeSet<String> = if fresh {
            BTreeSet::new()
        } else {
            inner
                .link_names()
                .await?
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        // The veths first (the switch ports and everything else need them), born down.
        let up = transit_ifname(tenant);
        let mut made = Vec::new();
        // A pair is made again unless both ends are there. A host end alone is what a router
        // removed a moment ago leaves behind: its namespace is gone from /run/netns at once,
        // but the kernel tears it (and the peers in it) down a little later.
        if !(root_links.contains(&up) && inside.contains(ROUTER_UPLINK)) {
            if root_links.contains(&up) {
                host.delete(&up).await?;
            }
            if inside.contains(ROUTER_UPLINK) {
                inner.delete(ROUTER_UPLINK).await?;
            }
            host.create_veth(&up, ROUTER_UPLINK, transit_mac(tr.router), TRANSIT_MTU, &ns)
                .await?;
            made.push(up.clone());
        }
        for net in t.networks.values() {
            let (vr, vg) = (router_port_ifname(&net.key()), router_gw_ifname(&net.key()));
            if !(root_links.contains(&vr) && inside.contains(&vg)) {
                if root_links.contains(&vr) {
                    // The switch port goes with it, to be made again on the new link.
                    self.dp.remove_port(&vr).await?;
                    host.delete(&vr).await?;
                }
                if inside.contains(&vg) {
                    inner.delete(&vg).await?;
                }
                host.create_veth(&vr, &vg, router_mac(), self.mtu, &ns)
                    .await?;
                made.push(vr.clone());
            }
        }
        tracing::debug!(%tenant, made = ?made, "tenant router: veths there");
        // TX checksums off where the kernel hands packets towards the userspace datapath; no
        // IPv6 on the bridge's side of a router port (a switch port only). Before the switch
        // opens the ports.
        let made_ports: Vec<String> = made
            .iter()
            .filter(|n| n.starts_with("vr"))
            .cloned()
            .collect();
        prepare(None, made, made_ports).await?;
        let rules4 = super::router_rules_v4(t, tr, self.node, tenant == super::DEFAULT_TENANT);
        let rules6 = super::router_rules_v6(tr);
        let rules = async {
            let (v4, v6) = tokio::join!(
                restore("write a tenant router's rules", Some(&ns), false, &rules4),
                restore(
                    "write a tenant router's rules (IPv6)",
                    Some(&ns),
                    true,
                    &rules6
                ),
            );
            v4?;
            v6?;
            ensure_reply_rules(&router_netns(&self.bridge, tenant)).await?;
            // Forwarding only under the rules that keep the tenant's networks apart.
            sysctls(Some(&ns), FORWARDING).await
        };
        let ports = async {
            let mut out = Vec::new();
            for net in t.networks.values() {
                let of = self
                    .dp
                    .add_router_port(&router_port_ifname(&net.key()), net)
                    .await?;
                out.push((net.clone(), of));
            }
            Ok::<_, NsError>(out)
        };
        let links = self.router_links(host, &inner, &ns, tenant, t, tr, &inside, fresh);
        let (rules, ports, links) = tokio::join!(
            bounded(
                format!("write tenant {tenant}'s router rules"),
                STEP_LIMIT,
                rules
            ),
            bounded(
                format!("add tenant {tenant}'s router ports to the switch"),
                STEP_LIMIT,
                ports
            ),
            bounded(
                format!("set up tenant {tenant}'s router links"),
                STEP_LIMIT,
                links
            ),
        );
        rules?;
        links?;
        let ports = ports?;
        tracing::debug!(%tenant, fresh, ms = started.elapsed().as_secs_f64() * 1e3, "tenant router made");
        Ok(ports)
    }

    /// A tenant router's links made ready: offloads, addresses, up, routes, neighbours; what
    /// left it (neighbours of departed endpoints, ports of departed networks) removed unless
    /// the namespace is `fresh` (`inside`: the links it had).
    #[allow(clippy::too_many_arguments)]
    async fn router_links(
        &self,
        host: &Netlink,
        inner: &Netlink,
        ns: &Netns,
        tenant: &str,
        t: &TenantRouter,
        tr: Transit,
        inside: &BTreeSet<String>,
        fresh: bool,
    ) -> Result<(), NsError> {
        let gw_links: Vec<String> = t
            .networks
            .values()
            .map(|n| router_gw_ifname(&n.key()))
            .collect();
        let mut in_router = gw_links.clone();
        in_router.push(ROUTER_UPLINK.to_string());
        // A network without IPv6: none on its gateway either (no MLD reports or DAD flooded
        // to its pods), as on its pods' interfaces.
        let v4_only: Vec<String> = t
            .networks
            .values()
            .filter(|n| n.gateway6.is_none())
            .map(|n| router_gw_ifname(&n.key()))
            .collect();
        prepare(Some(ns), in_router, v4_only).await?;
        // The host's side.
        for net in t.networks.values() {
            let vr = router_port_ifname(&net.key());
            host.set_mac_mtu_up(&vr, index_of(host, &vr).await?, None, self.mtu)
                .await?;
        }
        let up = transit_ifname(tenant);
        let ui = index_of(host, &up).await?;
        let host6 = super::transit6(tr.host);
        host.add_address(&up, ui, tr.host.into(), 30).await?;
        host.add_address(&up, ui, host6.into(), 126).await?;
        host.set_up(&up, ui).await?;
        // The router's: gateways, transit, default routes, neighbours.
        for net in t.networks.values() {
            let vg = router_gw_ifname(&net.key());
            let gi = index_of(inner, &vg).await?;
            inner
                .set_mac_mtu_up(&vg, gi, Some(router_mac()), self.mtu)
                .await?;
            inner
                .add_address(&vg, gi, net.gateway.into(), net.subnet.prefix_len())
                .await?;
            if let Some((g6, s6)) = net.gateway6 {
                inner
                    .add_address(&vg, gi, g6.into(), s6.prefix_len())
                    .await?;
            }
            if !fresh {
                for ip in inner.permanent_neighbours(gi).await? {
                    if !net.neighbours.contains_key(&ip) {
                        inner.del_neighbour(&vg, gi, ip).await?;
                    }
                }
            }
            for (ip, mac) in &net.neighbours {
                let Some(m) = crate::netlink::parse_mac(mac) else {
                    tracing::warn!(%ip, %mac, "an endpoint's MAC does not parse: no neighbour entry for it in its tenant router");
                    continue;
                };
                inner.replace_neighbour(&vg, gi, *ip, m).await?;
            }
        }
        let ri = index_of(inner, ROUTER_UPLINK).await?;
        inner
            .add_address(ROUTER_UPLINK, ri, tr.router.into(), 30)
            .await?;
        inner
            .add_address(ROUTER_UPLINK, ri, super::transit6(tr.router).into(), 126)
            .await?;
        inner.set_up(ROUTER_UPLINK, ri).await?;
        // Replies to what came in from the host go back to it (`super::REPLY_TABLE`).
        for table in [None, Some(super::REPLY_TABLE)] {
            inner
                .replace_default_route(tr.host.into(), ri, table)
                .await?;
            inner.replace_default_route(host6.into(), ri, table).await?;
        }
        // Networks that left this router.
        for l in inside {
            if l.starts_with("vg") && l.len() == 14 && !gw_links.contains(l) {
                inner.delete(l).await?;
            }
        }
        Ok(())
    }

    /// The host's routes into the tenant routers: `want` (ip batch lines) made, any other
    /// route via a transit removed.
    async fn fix_host_routes(&self, want: &[String]) -> Result<(), NsError> {
        ip_batch("route into the tenant routers", None, want).await?;
        let mut stale = Vec::new();
        for fam in ["-4", "-6"] {
            for r in ip_json("read the host's routes", None, &[fam, "route", "show"]).await? {
                let (Some(dst), Some(dev), Some(gw)) =
                    (r["dst"].as_str(), r["dev"].as_str(), r["gateway"].as_str())
                else {
                    continue;
                };
                if !is_transit_ifname(dev) {
                    continue;
                }
                let dst_full = if dst.contains('/') || dst == "default" {
                    dst.to_string()
                } else if fam == "-6" {
                    format!("{dst}/128")
                } else {
                    format!("{dst}/32")
                };
                let line = format!("route replace {dst_full} via {gw} dev {dev}");
                if !want.contains(&line) {
                    stale.push(format!("route del {dst_full} via {gw} dev {dev}"));
                }
            }
        }
        ip_batch("remove stale routes into the tenant routers", None, &stale).await
    }

    /// Router ports of networks, and routers of tenants, with no endpoint here any more.
    async fn remove_departed(&self, d: &Desired, ports: &BTreeSet<String>) -> Result<(), NsError> {
        for (name, _) in self.dp.router_ports() {
            if !ports.contains(&name) {
                self.dp.remove_port(&name).await?;
                ip_batch(
                    "remove a router port",
                    None,
                    &[format!("link del dev {name}")],
                )
                .await
                .or_else(|e| match &e {
                    NsError::Command { stderr, .. } if stderr.contains("Cannot find") => Ok(()),
                    _ => Err(e),
                })?;
                tracing::info!(port = %name, "router port removed: its network has no endpoint here");
            }
        }
        let prefix = router_netns_prefix(&self.bridge);
        let wanted: BTreeSet<String> = d
            .tenants
            .keys()
            .map(|t| router_netns(&self.bridge, t))
            .collect();
        let Ok(dir) = std::fs::read_dir("/run/netns") else {
            return Ok(());
        };
        for e in dir.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with(&prefix) && !wanted.contains(&n) {
                // Its links go with it, the host's ends of its veths too.
                run("remove a tenant router", "ip", &["netns", "del", &n], "").await?;
                tracing::info!(netns = %n, "tenant router removed: the tenant has no endpoint here");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_router_step_that_never_returns_is_given_up_naming_the_step() {
        let limit = Duration::from_millis(20);
        let stuck = bounded(
            "set up tenant blue's router links",
            limit,
            std::future::pending::<Result<(), NsError>>(),
        )
        .await;
        let e = stuck.expect_err("a step that never returns is given up");
        assert!(matches!(e, NsError::Stuck { after, .. } if after == limit));
        let text = e.to_string();
        assert!(
            text.starts_with("set up tenant blue's router links: no answer after")
                && text.ends_with("retrying"),
            "{text}"
        );
        // A step that ends in time keeps its own result.
        let done = bounded("write the rules", limit, async { Ok::<_, NsError>(7) }).await;
        assert_eq!(done.ok(), Some(7));
    }
}
