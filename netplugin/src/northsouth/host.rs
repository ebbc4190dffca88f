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
use crate::netlink::{LinkError, Netns};
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
}

/// Runs `program args` (with `stdin`), returns its standard output.
async fn run(what: &str, program: &str, args: &[&str], stdin: &str) -> Result<String, NsError> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
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

async fn link_names(ns: Option<&str>) -> Result<BTreeSet<String>, NsError> {
    Ok(ip_json("list links", ns, &["link", "show"])
        .await?
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect())
}

/// Runs an iptables-restore of `family` (4 or 6): in `ns` (a router: `flush`es its tables
/// whole) or in the host namespace (`--noflush`: only the chains named).
async fn restore(what: &str, ns: Option<&str>, v6: bool, rules: &str) -> Result<(), NsError> {
    let bin = if v6 {
        "ip6tables-restore"
    } else {
        "iptables-restore"
    };
    match ns {
        Some(n) => run(what, "ip", &["netns", "exec", n, bin], rules).await?,
        None => run(what, bin, &["--noflush"], rules).await?,
    };
    Ok(())
}

/// Writes sysctls (path under /proc/sys/net, value) in namespace `ns` (None: the agent's).
async fn sysctls(
    ns: Option<Netns>,
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
        Some(n) => n.run(write)?,
        None => tokio::task::spawn_blocking(write)
            .await
            .map_err(|e| LinkError::other("write host sysctls", e))?
            .map_err(|e| LinkError::other("write host sysctls", e))?,
    };
    Ok(())
}

/// Sends a gratuitous ARP for each (gateway interface, gateway address) from inside the
/// router namespace `ns` (see [`super::gratuitous_arp`]).
fn announce_gateways(ns: &Netns, gateways: Vec<(String, Ipv4Addr)>) -> Result<(), LinkError> {
    let mac: Vec<u8> = ROUTER_MAC
        .split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    let mac: [u8; 6] = mac.try_into().unwrap_or([2, 0, 0, 0x11, 0x11, 0x11]);
    ns.run(move || {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let proto = (libc::ETH_P_ARP as u16).to_be();
        // SAFETY: plain socket(2); the descriptor is owned (and closed) by `fd` at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                proto as i32,
            )
        };
        if raw < 0 {
            return Err(format!(
                "open a packet socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for (ifname, gw) in gateways {
            let name = std::ffi::CString::new(ifname.as_str()).map_err(|e| e.to_string())?;
            // SAFETY: a valid NUL-terminated name alive for the call.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if index == 0 {
                return Err(format!(
                    "find {ifname}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set below.
            let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            to.sll_family = libc::AF_PACKET as u16;
            to.sll_protocol = proto;
            to.sll_ifindex = index as i32;
            to.sll_halen = 6;
            to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
            let frame = super::gratuitous_arp(mac, gw);
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
                    "send a gratuitous ARP for {gw} on {ifname}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    })
}

const FORWARDING: &[(&str, &str)] = &[("ipv4/ip_forward", "1"), ("ipv6/conf/all/forwarding", "1")];

/// The host's IPv4 forwarding. IPv6 forwarding is turned on only once a dual-stack network
/// needs it ([`FORWARDING6`]): it makes the host stop accepting router advertisements on
/// interfaces with the default `accept_ra=1`.
const FORWARDING4: &[(&str, &str)] = &[("ipv4/ip_forward", "1")];
const FORWARDING6: &[(&str, &str)] = &[("ipv6/conf/all/forwarding", "1")];

/// TX checksum offload off on `names` in `ns` (None: the agent's namespace), IPv6 off on those
/// of `no_ipv6`: a packet the kernel leaves to "hardware" to checksum reaches the userspace
/// datapath, which never fills it in.
async fn prepare(
    ns: Option<Netns>,
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
        Some(n) => n.run(f)?,
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

    /// Follows the datapath: at every change of its inputs, makes the host side match.
    pub async fn run(mut self) {
        let mut changes = self.dp.subscribe();
        loop {
            let inputs = self.dp.northsouth_inputs().await;
            tracing::debug!(ready = inputs.is_some(), "north-south: inputs changed");
            if let Some(i) = inputs {
                let want = super::desired(&i);
                if self.applied.as_ref() != Some(&want) {
                    match self.apply(&want).await {
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
        // Transit numbers the links already have (an agent restart keeps them).
        let mut have = BTreeMap::new();
        for t in d.tenants.keys() {
            let name = transit_ifname(t);
            for a in ip_json(
                "read transit address",
                None,
                &["-4", "addr", "show", "dev", &name],
            )
            .await
            .unwrap_or_default()
            {
                for info in a["addr_info"].as_array().into_iter().flatten() {
                    if let Some(i) = info["local"]
                        .as_str()
                        .and_then(|x| x.parse::<Ipv4Addr>().ok())
                        .and_then(|x| super::transit_index(pvt, x))
                    {
                        have.insert(t.clone(), i);
                    }
                }
            }
        }
        let index = super::assign_transits(&have, d.tenants.keys(), super::transit_capacity(pvt));
        let mut routers: BTreeMap<u64, RouterPort> = BTreeMap::new();
        let mut host_routes: Vec<String> = Vec::new();
        let mut ports_wanted = BTreeSet::new();
        let mut announce: Vec<(String, Vec<(String, Ipv4Addr)>)> = Vec::new();
        let root_links = link_names(None).await?;
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
                    let ports = self.ensure_router(tenant, t, tr, &root_links).await?;
                    announce.push((
                        tenant.clone(),
                        ports
                            .iter()
                            .map(|(n, _)| (router_gw_ifname(&n.key()), n.gateway))
                            .collect(),
                    ));
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
        // The new gateways' flows are in: tell the pods that asked for them too early. A few
        // times: the switch may start reading a port just added a moment after its flows are
        // in (the userspace datapath), and what it has not read yet is lost.
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
    async fn ensure_router(
        &self,
        tenant: &str,
        t: &TenantRouter,
        tr: Transit,
        root_links: &BTreeSet<String>,
    ) -> Result<Vec<(RouterNet, u32)>, NsError> {
        let name = router_netns(&self.bridge, tenant);
        let path = PathBuf::from("/run/netns").join(&name);
        // Made if missing (bind-mounted like `ip netns add`: it outlives the agent).
        let ns = Netns::open_or_create(&path)?;
        sysctls(Some(ns), FORWARDING).await?;
        let inside = link_names(Some(&name)).await?;
        let up = transit_ifname(tenant);
        let mut root = Vec::new();
        let mut router = vec!["link set lo up".to_string()];
        let mut fresh = Vec::new();
        if !root_links.contains(&up) {
            if inside.contains(ROUTER_UPLINK) {
                router.push(format!("link del dev {ROUTER_UPLINK}"));
                ip_batch("remove a stale transit", Some(&name), &router).await?;
                router.clear();
            }
            ip_batch(
                "make a tenant router's transit",
                None,
                &[format!(
                    "link add name {up} type veth peer name {ROUTER_UPLINK} netns {name}"
                )],
            )
            .await?;
            fresh.push(up.clone());
        }
        let mut gw_links = Vec::new();
        let mut out = Vec::new();
        for net in t.networks.values() {
            let (vr, vg) = (router_port_ifname(&net.key()), router_gw_ifname(&net.key()));
            if !root_links.contains(&vr) {
                if inside.contains(&vg) {
                    ip_batch(
                        "remove a stale router port",
                        Some(&name),
                        &[format!("link del dev {vg}")],
                    )
                    .await?;
                }
                ip_batch(
                    "make a router port",
                    None,
                    &[format!(
                        "link add name {vr} mtu {m} type veth peer name {vg} mtu {m} netns {name}",
                        m = self.mtu
                    )],
                )
                .await?;
                fresh.push(vr.clone());
            }
            gw_links.push(vg.clone());
            root.push(format!("link set {vr} mtu {} up", self.mtu));
            router.push(format!(
                "link set {vg} address {ROUTER_MAC} mtu {} up",
                self.mtu
            ));
            router.push(format!(
                "addr replace {}/{} dev {vg}",
                net.gateway,
                net.subnet.prefix_len()
            ));
            if let Some((g6, s6)) = net.gateway6 {
                router.push(format!(
                    "addr replace {g6}/{} dev {vg} nodad",
                    s6.prefix_len()
                ));
            }
            for (ip, mac) in &net.neighbours {
                router.push(format!(
                    "neigh replace {ip} lladdr {mac} dev {vg} nud permanent"
                ));
            }
        }
        // TX checksums off where the kernel hands packets towards the userspace datapath; no
        // IPv6 on the bridge's side of a router port (a switch port only).
        let fresh_ports: Vec<String> = fresh
            .iter()
            .filter(|n| n.starts_with("vr"))
            .cloned()
            .collect();
        prepare(None, fresh.clone(), fresh_ports).await?;
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
        prepare(Some(Netns::open(&path)?), in_router, v4_only).await?;
        let host6 = super::transit6(tr.host);
        root.push(format!("addr replace {}/30 dev {up}", tr.host));
        root.push(format!("addr replace {host6}/126 dev {up} nodad"));
        root.push(format!("link set {up} up"));
        router.push(format!("addr replace {}/30 dev {ROUTER_UPLINK}", tr.router));
        router.push(format!(
            "addr replace {}/126 dev {ROUTER_UPLINK} nodad",
            super::transit6(tr.router)
        ));
        router.push(format!("link set {ROUTER_UPLINK} up"));
        router.push(format!(
            "route replace default via {} dev {ROUTER_UPLINK}",
            tr.host
        ));
        router.push(format!(
            "route replace default via {host6} dev {ROUTER_UPLINK}"
        ));
        // Replies to what came in from the host go back to it (`super::REPLY_TABLE`).
        let table = super::REPLY_TABLE;
        router.push(format!(
            "route replace default via {} dev {ROUTER_UPLINK} table {table}",
            tr.host
        ));
        router.push(format!(
            "route replace default via {host6} dev {ROUTER_UPLINK} table {table}"
        ));
        ip_batch("set up the host side of a tenant router", None, &root).await?;
        ip_batch("set up a tenant router", Some(&name), &router).await?;
        // Neighbour entries of endpoints that left, and networks that left this router.
        let mut stale = Vec::new();
        for vg in &gw_links {
            for n in ip_json(
                "read router neighbours",
                Some(&name),
                &["neigh", "show", "dev", vg, "nud", "permanent"],
            )
            .await?
            {
                let Some(dst) = n["dst"].as_str() else {
                    continue;
                };
                let keep = t.networks.values().any(|net| {
                    router_gw_ifname(&net.key()) == *vg
                        && dst.parse().is_ok_and(|a| net.neighbours.contains_key(&a))
                });
                if !keep {
                    stale.push(format!("neigh del {dst} dev {vg}"));
                }
            }
        }
        for l in &inside {
            if l.starts_with("vg") && l.len() == 14 && !gw_links.contains(l) {
                stale.push(format!("link del dev {l}"));
            }
        }
        ip_batch("remove what left a tenant router", Some(&name), &stale).await?;
        restore(
            "write a tenant router's rules",
            Some(&name),
            false,
            &super::router_rules_v4(t, tr, self.node, tenant == super::DEFAULT_TENANT),
        )
        .await?;
        ensure_reply_rules(&name).await?;
        restore(
            "write a tenant router's rules (IPv6)",
            Some(&name),
            true,
            &super::router_rules_v6(tr),
        )
        .await?;
        for net in t.networks.values() {
            let of = self
                .dp
                .add_router_port(&router_port_ifname(&net.key()), net)
                .await?;
            out.push((net.clone(), of));
        }
        Ok(out)
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
