//! Kubernetes NetworkPolicy (networking.k8s.io/v1) on this node's pods.
//!
//! Two pure steps, then the datapath:
//! - [`resolve`]: the policies, every pod (their labels, `status.podIPs`, named container
//!   ports) and the namespaces (their labels), as the agent's watch caches hold them, become per
//!   local pod the union of what its policies allow, as atomic [`Allow`]s (a peer prefix, a
//!   protocol, a port range). Selectors are resolved here, on every node, for its own pods only.
//! - [`flows`]: those allowances become flows in two tables of their own (docs/ovs-pipeline.md
//!   "Kubernetes NetworkPolicy"): egress where the source lives, ingress where the destination
//!   lives, after Contiv's own rule tables (a connection must pass both).
//!
//! Semantics are upstream's: a pod no policy of a direction selects is open in it; a selected
//! one accepts only what some rule of some policy selecting it allows; replies and established
//! connections pass (conntrack judges only new connections). Anything the agent cannot honour
//! (a protocol other than TCP/UDP/SCTP, a malformed CIDR, a peer with no selector...) is logged
//! naming the policy and left out, so the selected pods stay isolated: fail closed, never open.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use model::agent::Endpoint;
use ovs::Flow;

use crate::fabric::{FROM_ENDPOINT, cookie, network_id, table};

/// The label the API server puts on every namespace, with its name (selectable as any label).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What NetworkPolicy enforcement needs from the agent's Kubernetes view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetpolInputs {
    /// The agent enforces NetworkPolicy (`--k8s-network-policy`): every unicast IP packet goes
    /// through conntrack from the start, so connections made before a policy appears are known
    /// as established when it does.
    pub enabled: bool,
    /// The caches have listed policies, pods and namespaces once. Until then the flows found in
    /// the switch stay (a restarting agent must not open isolated pods).
    pub synced: bool,
    /// Local pods (`namespace/name`, the endpoint's container name) selected by some policy.
    pub pods: BTreeMap<String, PodPolicy>,
    /// `global.pvtSubnet` (empty: Contiv's default): its transit range is the source this
    /// host's own traffic has in the pod networks ([`node_sources`]).
    pub pvt_subnet: String,
}

/// The sources of this host's own traffic to its pods, as its tenant routers deliver it: the
/// host-side transit addresses (`crate::northsouth`), host-local by construction (other hosts'
/// traffic arrives source-NATed to their node address). Upstream lets traffic from a pod's own
/// node through whatever the policies say (kubelet's probes).
pub fn node_sources(pvt_subnet: &str) -> [String; 2] {
    let pvt = crate::northsouth::pvt_subnet(pvt_subnet);
    [
        format!("ip,nw_src={}", crate::northsouth::transit_range(pvt)),
        format!("ipv6,ipv6_src={}", crate::northsouth::TRANSIT6_PREFIX),
    ]
}

/// What one pod may do; `None`: no policy of that direction selects it (open).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodPolicy {
    pub ingress: Option<BTreeSet<Allow>>,
    pub egress: Option<BTreeSet<Allow>>,
}

/// One allowance: traffic with the peer (`None`: anyone) on a protocol (`None`: every protocol,
/// then `ports` is `None` too) and destination ports (`None`: every port).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Allow {
    pub peer: Option<IpNet>,
    pub proto: Option<Proto>,
    pub ports: Option<(u16, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// The match keyword per family (IPv4, IPv6).
    fn keywords(self) -> (&'static str, &'static str) {
        match self {
            Proto::Tcp => ("tcp", "tcp6"),
            Proto::Udp => ("udp", "udp6"),
            Proto::Sctp => ("sctp", "sctp6"),
        }
    }
}

/// Whether a label selector selects `labels`; Err for an operator Kubernetes does not define.
/// An empty selector selects everything.
pub fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> Result<bool, String> {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Ok(false);
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            op => {
                return Err(format!(
                    "label selector operator {op:?} is not one of In, NotIn, Exists, DoesNotExist"
                ));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn labels_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// A pod's addresses (`status.podIPs`, else `status.podIP`), as host prefixes.
pub fn pod_ips(p: &Pod) -> Vec<IpNet> {
    let Some(st) = &p.status else {
        return Vec::new();
    };
    let mut ips: Vec<&str> = st.pod_ips.iter().flatten().map(|x| x.ip.as_str()).collect();
    if ips.is_empty()
        && let Some(ip) = &st.pod_ip
    {
        ips.push(ip);
    }
    ips.into_iter()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .map(IpNet::from)
        .collect()
}

/// Pods that take part in policy: have addresses on the pod network, not finished (a finished
/// pod's address may already be another's).
fn live(p: &Pod) -> bool {
    let host_network = p
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !host_network && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The number of a named container port of `proto` on the pod.
fn named_port(p: &Pod, name: &str, proto: Proto) -> Option<u16> {
    p.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|cp| {
            cp.name.as_deref() == Some(name) && Proto::parse(cp.protocol.as_deref()) == Some(proto)
        })
        .and_then(|cp| u16::try_from(cp.container_port).ok())
}

/// `cidr` without the `except` blocks, as prefixes.
pub fn subtract(cidr: IpNet, except: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::new();
    let mut todo = vec![cidr.trunc()];
    while let Some(b) = todo.pop() {
        if except.iter().any(|e| e.contains(&b)) {
            continue;
        }
        // Prefixes nest or are disjoint: an except overlapping b and not covering it is in it.
        let overlaps = except.iter().any(|e| b.contains(e));
        if !overlaps {
            out.push(b);
            continue;
        }
        match b.subnets(b.prefix_len() + 1) {
            Ok(halves) => todo.extend(halves),
            Err(_) => out.push(b),
        }
    }
    out.sort();
    out
}

/// Everything the cluster holds that policy resolution reads.
pub struct Cluster<'a> {
    pub policies: &'a [Arc<NetworkPolicy>],
    pub pods: &'a [Arc<Pod>],
    pub namespaces: &'a [Arc<Namespace>],
}

/// One port clause of a rule, as far as it could be understood.
enum PortClause {
    /// Every protocol and port.
    All,
    /// A protocol and a numeric range (`None`: every port of it).
    Numbers(Proto, Option<(u16, u16)>),
    /// A named port, resolved against the pod on the serving side.
    Named(Proto, String),
}

/// One peer clause: addresses (ipBlock) or pods (selectors).
enum PeerClause<'a> {
    Anyone,
    Block(Vec<IpNet>),
    Pods(Vec<&'a Pod>),
}

impl Cluster<'_> {
    fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        let mut l = self
            .namespaces
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(ns))
            .map(|n| labels_of(&n.metadata))
            .unwrap_or_default();
        // The API server always sets it; a namespace not (yet) in the cache still has it.
        l.insert(NAMESPACE_NAME_LABEL.to_string(), ns.to_string());
        l
    }

    fn live_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().map(|p| p.as_ref()).filter(|p| live(p))
    }

    /// The pods a peer's selectors pick, from the point of view of a policy in `ns`.
    fn peer<'s>(
        &'s self,
        ns: &str,
        peer: &NetworkPolicyPeer,
        warn: &mut Vec<String>,
    ) -> Option<PeerClause<'s>> {
        if let Some(b) = &peer.ip_block {
            if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                warn.push("a peer with ipBlock and a selector together (the API refuses it): peer ignored".into());
                return None;
            }
            let Ok(cidr) = b.cidr.parse::<IpNet>() else {
                warn.push(format!(
                    "ipBlock cidr {:?} is not a CIDR: peer ignored",
                    b.cidr
                ));
                return None;
            };
            let mut except = Vec::new();
            for e in b.except.iter().flatten() {
                match e.parse::<IpNet>() {
                    Ok(n) => except.push(n),
                    Err(_) => {
                        warn.push(format!("ipBlock except {e:?} is not a CIDR: peer ignored"));
                        return None;
                    }
                }
            }
            return Some(PeerClause::Block(subtract(cidr, &except)));
        }
        if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
            warn.push(
                "a peer with neither podSelector, namespaceSelector nor ipBlock: peer ignored"
                    .into(),
            );
            return None;
        }
        let mut out = Vec::new();
        for p in self.live_pods() {
            let pns = p.metadata.namespace.as_deref().unwrap_or_default();
            let ns_ok = match &peer.namespace_selector {
                None => pns == ns,
                Some(sel) => match selects(sel, &self.namespace_labels(pns)) {
                    Ok(b) => b,
                    Err(e) => {
                        warn.push(format!("namespaceSelector: {e}: peer ignored"));
                        return None;
                    }
                },
            };
            if !ns_ok {
                continue;
            }
            let pod_ok = match &peer.pod_selector {
                None => true,
                Some(sel) => match selects(sel, &labels_of(&p.metadata)) {
                    Ok(b) => b,
                    Err(e) => {
                        warn.push(format!("podSelector: {e}: peer ignored"));
                        return None;
                    }
                },
            };
            if pod_ok {
                out.push(p);
            }
        }
        Some(PeerClause::Pods(out))
    }
}

fn port_clause(p: &NetworkPolicyPort, warn: &mut Vec<String>) -> Option<PortClause> {
    let Some(proto) = Proto::parse(p.protocol.as_deref()) else {
        warn.push(format!(
            "protocol {:?} is not TCP, UDP or SCTP: port ignored",
            p.protocol.as_deref().unwrap_or_default()
        ));
        return None;
    };
    match (&p.port, p.end_port) {
        (None, None) => Some(PortClause::Numbers(proto, None)),
        (None, Some(_)) => {
            warn.push("endPort without port: port ignored".into());
            None
        }
        (Some(IntOrString::String(name)), None) => Some(PortClause::Named(proto, name.clone())),
        (Some(IntOrString::String(name)), Some(_)) => {
            warn.push(format!(
                "endPort with the named port {name:?}: port ignored"
            ));
            None
        }
        (Some(IntOrString::Int(n)), end) => {
            let lo = u16::try_from(*n).ok().filter(|n| *n > 0);
            let hi = match end {
                None => lo,
                Some(e) => u16::try_from(e).ok(),
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo <= hi => {
                    Some(PortClause::Numbers(proto, Some((lo, hi))))
                }
                _ => {
                    warn.push(format!(
                        "port {n}{} is not a port range of 1-65535: port ignored",
                        end.map(|e| format!("-{e}")).unwrap_or_default()
                    ));
                    None
                }
            }
        }
    }
}

/// Which side of the connection the selected pod is.
#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Ingress,
    Egress,
}

/// The allowances of one rule for the selected pod `own`: the cross product of its peers and
/// ports. Named ports are looked up on the pod that serves: `own` for ingress, each peer pod for
/// egress (an address block's pods are those of the cluster with an address in it).
fn rule_allows(
    c: &Cluster,
    (ns, dir, own): (&str, Dir, &Pod),
    peers: Option<&Vec<NetworkPolicyPeer>>,
    ports: Option<&Vec<NetworkPolicyPort>>,
    warn: &mut Vec<String>,
    out: &mut BTreeSet<Allow>,
) {
    // Absent or empty: everyone / every port. A list whose every element is unusable allows
    // nothing (never everyone).
    let peers: Vec<PeerClause> = match peers {
        None => vec![PeerClause::Anyone],
        Some(v) if v.is_empty() => vec![PeerClause::Anyone],
        Some(v) => v.iter().filter_map(|p| c.peer(ns, p, warn)).collect(),
    };
    let ports: Vec<PortClause> = match ports {
        None => vec![PortClause::All],
        Some(v) if v.is_empty() => vec![PortClause::All],
        Some(v) => v.iter().filter_map(|p| port_clause(p, warn)).collect(),
    };
    for peer in &peers {
        // Each peer as (prefix, the pod behind it when known).
        let targets: Vec<(Option<IpNet>, Option<&Pod>)> = match peer {
            PeerClause::Anyone => vec![(None, None)],
            PeerClause::Block(nets) => nets.iter().map(|n| (Some(*n), None)).collect(),
            PeerClause::Pods(pods) => pods
                .iter()
                .flat_map(|p| pod_ips(p).into_iter().map(move |ip| (Some(ip), Some(*p))))
                .collect(),
        };
        for port in &ports {
            match port {
                PortClause::All => out.extend(targets.iter().map(|(ip, _)| Allow {
                    peer: *ip,
                    proto: None,
                    ports: None,
                })),
                PortClause::Numbers(proto, range) => {
                    out.extend(targets.iter().map(|(ip, _)| Allow {
                        peer: *ip,
                        proto: Some(*proto),
                        ports: *range,
                    }))
                }
                PortClause::Named(proto, name) => {
                    if dir == Dir::Ingress {
                        if let Some(n) = named_port(own, name, *proto) {
                            out.extend(targets.iter().map(|(ip, _)| Allow {
                                peer: *ip,
                                proto: Some(*proto),
                                ports: Some((n, n)),
                            }));
                        }
                        continue;
                    }
                    // Egress: the destination pods that have the port, each by its addresses.
                    let servers: Vec<(IpNet, &Pod)> = match peer {
                        PeerClause::Pods(pods) => pods
                            .iter()
                            .flat_map(|p| pod_ips(p).into_iter().map(move |ip| (ip, *p)))
                            .collect(),
                        PeerClause::Anyone | PeerClause::Block(_) => c
                            .live_pods()
                            .flat_map(|p| pod_ips(p).into_iter().map(move |ip| (ip, p)))
                            .filter(|(ip, _)| match peer {
                                PeerClause::Block(nets) => {
                                    nets.iter().any(|n| n.contains(&ip.addr()))
                                }
                                _ => true,
                            })
                            .collect(),
                    };
                    for (ip, p) in servers {
                        if let Some(n) = named_port(p, name, *proto) {
                            out.insert(Allow {
                                peer: Some(ip),
                                proto: Some(*proto),
                                ports: Some((n, n)),
                            });
                        }
                    }
                }
            }
        }
    }
}

/// The policy of every live pod of `node` that some NetworkPolicy selects (by `namespace/name`),
/// and what was left out, one line per problem naming its policy.
pub fn resolve(c: &Cluster, node: &str) -> (BTreeMap<String, PodPolicy>, Vec<String>) {
    let mut out: BTreeMap<String, PodPolicy> = BTreeMap::new();
    let mut warnings = Vec::new();
    let local: Vec<&Pod> = c
        .live_pods()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .collect();
    for np in c.policies {
        let ns = np.metadata.namespace.as_deref().unwrap_or_default();
        let name = format!("{ns}/{}", np.metadata.name.as_deref().unwrap_or_default());
        let Some(spec) = &np.spec else { continue };
        let mut warn = Vec::new();
        let types: Vec<&str> = match &spec.policy_types {
            Some(t) if !t.is_empty() => t.iter().map(String::as_str).collect(),
            // The API server's default: Ingress, and Egress when there are egress rules.
            _ if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) => vec!["Ingress", "Egress"],
            _ => vec!["Ingress"],
        };
        for t in &types {
            if !matches!(*t, "Ingress" | "Egress") {
                warn.push(format!(
                    "policyType {t:?} is not Ingress or Egress: ignored"
                ));
            }
        }
        let empty = LabelSelector::default();
        let sel = spec.pod_selector.as_ref().unwrap_or(&empty);
        for own in local
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        {
            let selected = match selects(sel, &labels_of(&own.metadata)) {
                Ok(b) => b,
                Err(e) => {
                    // Fail closed: a selector that cannot be read isolates the whole namespace.
                    warn.push(format!(
                        "podSelector: {e}: the policy isolates every pod of {ns}"
                    ));
                    true
                }
            };
            if !selected {
                continue;
            }
            let key = format!("{ns}/{}", own.metadata.name.as_deref().unwrap_or_default());
            let entry = out.entry(key).or_default();
            if types.contains(&"Ingress") {
                let set = entry.ingress.get_or_insert_with(BTreeSet::new);
                for r in spec.ingress.iter().flatten() {
                    rule_allows(
                        c,
                        (ns, Dir::Ingress, own),
                        r.from.as_ref(),
                        r.ports.as_ref(),
                        &mut warn,
                        set,
                    );
                }
            }
            if types.contains(&"Egress") {
                let set = entry.egress.get_or_insert_with(BTreeSet::new);
                for r in spec.egress.iter().flatten() {
                    rule_allows(
                        c,
                        (ns, Dir::Egress, own),
                        r.to.as_ref(),
                        r.ports.as_ref(),
                        &mut warn,
                        set,
                    );
                }
            }
        }
        // Once per problem, not per selected pod.
        let mut seen = BTreeSet::new();
        for w in warn {
            if seen.insert(w.clone()) {
                warnings.push(format!("NetworkPolicy {name}: {w}"));
            }
        }
    }
    (out, warnings)
}

/// `[lo, hi]` as (value, mask) pairs a port match can take: the fewest aligned blocks.
pub fn port_masks(lo: u16, hi: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u32::from(lo), u32::from(hi));
    while lo <= hi {
        // The largest aligned block starting at lo that stays within hi.
        let mut size = if lo == 0 {
            1 << 16
        } else {
            1u32 << lo.trailing_zeros()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, (0x1_0000 - size) as u16));
        lo += size;
    }
    out
}

/// The matches of an allowance per family: protocol, ports, and the peer's address in
/// `peer_field` (`src` or `dst`). An allowance with an address is of that family only.
fn allow_matches(a: &Allow, peer_side: &str) -> Vec<String> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        if let Some(p) = a.peer
            && matches!(p, IpNet::V6(_)) != v6
        {
            continue;
        }
        let proto = match a.proto {
            None => if v6 { "ipv6" } else { "ip" }.to_string(),
            Some(p) => {
                let (k4, k6) = p.keywords();
                if v6 { k6 } else { k4 }.to_string()
            }
        };
        let peer = match a.peer {
            None => String::new(),
            Some(p) => {
                let field = if v6 { "ipv6" } else { "nw" };
                if p.prefix_len() == p.max_prefix_len() {
                    format!(",{field}_{peer_side}={}", p.addr())
                } else {
                    format!(",{field}_{peer_side}={p}")
                }
            }
        };
        let ports: Vec<String> = match a.ports {
            None => vec![String::new()],
            // Every port there is: no port match.
            Some((lo, 65535)) if lo <= 1 => vec![String::new()],
            Some((lo, hi)) if lo == hi => vec![format!(",tp_dst={lo}")],
            Some((lo, hi)) => port_masks(lo, hi)
                .into_iter()
                .map(|(v, m)| format!(",tp_dst={v:#x}/{m:#x}"))
                .collect(),
        };
        for pm in ports {
            out.push(format!("{proto}{pm}{peer}"));
        }
    }
    out
}

/// The NetworkPolicy flows of every local endpoint whose pod a policy selects, by cookie (one
/// per endpoint). Egress in [`table::NP_EGRESS`] (the pod sends: `reg0` from an endpoint, its
/// own MAC, which table 0 admitted only from its port), ingress in [`table::NP_INGRESS`]
/// (delivered here to its MAC); the allowances above a drop of the rest of the pod's IP.
pub fn flows(
    np: &NetpolInputs,
    local: &BTreeMap<String, (u32, Endpoint)>,
) -> BTreeMap<u64, Vec<Flow>> {
    let mut out = BTreeMap::new();
    for (id, (_, ep)) in local {
        let Some(pp) = np.pods.get(&ep.container_name) else {
            continue;
        };
        if ep.mac_address.is_empty() || ep.container_name.is_empty() {
            continue;
        }
        let nid = network_id(ep);
        let c = cookie::netpol(id);
        let mut f = Vec::new();
        let sides = [
            (
                &pp.egress,
                table::NP_EGRESS,
                format!(
                    "reg0={FROM_ENDPOINT},metadata={nid:#x},dl_src={}",
                    ep.mac_address
                ),
                "dst",
                table::INGRESS,
            ),
            (
                &pp.ingress,
                table::NP_INGRESS,
                format!("reg5=1,metadata={nid:#x},dl_dst={}", ep.mac_address),
                "src",
                table::COMMIT,
            ),
        ];
        for (allows, tbl, own, peer_side, next) in sides {
            let Some(allows) = allows else { continue };
            for a in allows {
                for m in allow_matches(a, peer_side) {
                    f.push(Flow::new(
                        tbl,
                        100,
                        format!("{m},{own}"),
                        format!("resubmit(,{next})"),
                    ));
                }
            }
            if tbl == table::NP_INGRESS {
                // From this host itself, through its tenant router.
                for m in node_sources(&np.pvt_subnet) {
                    f.push(Flow::new(
                        tbl,
                        100,
                        format!("{m},dl_src={},{own}", crate::fabric::ROUTER_MAC),
                        format!("resubmit(,{next})"),
                    ));
                }
            }
            for family in ["ip", "ipv6"] {
                f.push(Flow::new(tbl, 10, format!("{family},{own}"), "drop"));
            }
        }
        out.insert(c, f.into_iter().map(|x| x.cookie(c)).collect());
    }
    out
}

/// Keeps this node's NetworkPolicy flows in line with the Kubernetes caches: resolves again
/// at every watch event (events arriving meanwhile coalesce into the next pass) and installs
/// what changed; a pass costs one resolution and, when a pod's allowances changed, one bundle
/// replacing that pod's flows. Each problem a policy has is logged once, when it appears.
pub async fn follow(
    kube: crate::k8s::KubeClient,
    dp: Arc<crate::datapath::Datapath>,
    node: String,
) {
    let mut changes = kube.changes();
    let mut installed: Option<BTreeMap<String, PodPolicy>> = None;
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        changes.borrow_and_update();
        if let Some((policies, pods, namespaces)) = kube.policy_view() {
            let (want, warnings) = resolve(
                &Cluster {
                    policies: &policies,
                    pods: &pods,
                    namespaces: &namespaces,
                },
                &node,
            );
            let warnings: BTreeSet<String> = warnings.into_iter().collect();
            for w in warnings.difference(&reported) {
                tracing::warn!(problem = %w, "NetworkPolicy not fully enforceable: the part named is ignored, the pods it selects stay isolated");
            }
            reported = warnings;
            if installed.as_ref() != Some(&want) {
                let selected = want.len();
                match dp.set_netpol(want.clone()).await {
                    Ok(()) => {
                        tracing::info!(
                            policies = policies.len(),
                            selected,
                            "NetworkPolicy installed for this node's pods"
                        );
                        installed = Some(want);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "install NetworkPolicy flows; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
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

#[cfg(test)]
mod tests;
