//! The Docker network and IPAM driver: maps libnetwork's calls onto Contiv networks and the
//! endpoint manager (the same one the CNI socket uses).
//!
//! Docker tells an IPAM driver only the pool (`--subnet`) and `--ipam-opt`s, and tells the
//! network driver the `-o` options later, in CreateNetwork, without the pool's id. So:
//! - RequestPool records a pool (subnet + the Contiv network the `--ipam-opt`s name, if any)
//!   under a fresh PoolID;
//! - CreateNetwork binds the newest unbound pool of its subnet to the Docker network, with the
//!   `-o` options completing the target (tenant, network, group), and creates the Contiv
//!   network when it does not exist (or checks that the existing one has the same subnet);
//! - RequestAddress reserves the address in netmaster as an endpoint `docker-<uuid>` of this
//!   node (the address is held from then on, as Docker's IPAM contract says);
//! - CreateEndpoint plumbs that same endpoint (same id, so netmaster returns it unchanged) with
//!   the container side left in the agent's namespace for Docker to move;
//! - DeleteEndpoint unplumbs it and keeps the address; ReleaseAddress releases it (and unplumbs
//!   it too if DeleteEndpoint never came). Any order, any repetition, is fine.
//!
//! Pools and bindings live in a small JSON state file (Docker keeps PoolIDs across restarts;
//! nothing else can say which Contiv network a PoolID means).

use crate::manager::{AddRequest, Manager, ManagerError};
use crate::names::{host_ifname, ids};
use docker_driver::wire::*;
use docker_driver::{Backend, DriverError, DriverResult};
use model::agent::EndpointRequest as MasterEndpoint;
use model::{ClientError, EndpointGroup, Network, Tenant};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The option libnetwork passes a container's published ports (`docker run -p`) in.
const PORTMAP: &str = "com.docker.network.portmap";

/// The published ports of `ProgramExternalConnectivity`'s options (libnetwork's
/// `[]types.PortBinding`: `Proto` 6 or 17, `Port`, `HostIP`, `HostPort`). IPv6 host addresses
/// are left out (Contiv networks in Docker are IPv4); a port without a host port, or another
/// protocol, is refused: nothing would forward it.
fn published_ports(
    opts: &BTreeMap<String, serde_json::Value>,
) -> DriverResult<Vec<crate::northsouth::Published>> {
    let Some(list) = opts.get(PORTMAP).and_then(|v| v.as_array()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for b in list {
        let num = |k: &str| b[k].as_u64().unwrap_or(0);
        let proto = match num("Proto") {
            6 => "tcp",
            17 => "udp",
            p => {
                return Err(DriverError::new(format!(
                    "published port {}: protocol {p} is not supported on Contiv networks (tcp and udp are)",
                    num("Port")
                )));
            }
        };
        let host_ip = match b["HostIP"].as_str().unwrap_or("") {
            "" | "0.0.0.0" => None,
            ip => match ip.parse::<Ipv4Addr>() {
                Ok(a) => Some(a),
                Err(_) => continue,
            },
        };
        let (port, host_port) = (num("Port") as u16, num("HostPort") as u16);
        if host_port == 0 {
            return Err(DriverError::new(format!(
                "published port {port}/{proto} has no host port: Contiv networks forward only ports given one (-p HOSTPORT:{port})"
            )));
        }
        out.push(crate::northsouth::Published {
            proto: proto.to_string(),
            host_ip,
            host_port,
            port,
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Prefix of the netmaster endpoints Docker's IPAM reserves.
pub const RESERVATION_PREFIX: &str = "docker-";

/// The options Contiv understands, in `-o` and `--ipam-opt`.
const KNOWN_OPTIONS: &[&str] = &["tenant", "network", "group", "contiv-tag"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl Wanted {
    /// Reads Contiv's options; `flag` says where they came from, for messages.
    pub fn parse(opts: &BTreeMap<String, String>, flag: &str) -> DriverResult<Wanted> {
        let mut w = Wanted::default();
        for (k, v) in opts {
            let v = v.trim().to_string();
            if v.is_empty() {
                return Err(DriverError::new(format!(
                    "option {flag} {k}= has no value: give {k}=VALUE or leave it out"
                )));
            }
            match k.as_str() {
                "tenant" => w.tenant = Some(v),
                // `NAME/TENANT`, the way Contiv named Docker networks of other tenants.
                "network" => match v.split_once('/') {
                    Some((n, t)) => {
                        w.network = Some(n.to_string());
                        if w.tenant.as_deref().is_some_and(|x| x != t) {
                            return Err(DriverError::new(format!(
                                "option {flag} network={v} names tenant '{t}' but {flag} tenant= says '{}': give one tenant",
                                w.tenant.unwrap_or_default()
                            )));
                        }
                        w.tenant = Some(t.to_string());
                    }
                    None => w.network = Some(v),
                },
                "group" => w.group = Some(v),
                "contiv-tag" => w.tag = Some(v),
                other => {
                    return Err(DriverError::new(format!(
                        "unknown option {flag} {other}: the Contiv driver knows {}",
                        KNOWN_OPTIONS.join(", ")
                    )));
                }
            }
        }
        Ok(w)
    }

    /// Both sets of options together; a field given twice must agree.
    pub fn merge(&self, other: &Wanted) -> DriverResult<Wanted> {
        fn one(what: &str, a: &Option<String>, b: &Option<String>) -> DriverResult<Option<String>> {
            match (a, b) {
                (Some(x), Some(y)) if x != y => Err(DriverError::new(format!(
                    "--ipam-opt {what}={x} and -o {what}={y} disagree: give the same {what} (or only one of them)"
                ))),
                (Some(x), _) => Ok(Some(x.clone())),
                (None, y) => Ok(y.clone()),
            }
        }
        Ok(Wanted {
            tenant: one("tenant", &self.tenant, &other.tenant)?,
            network: one("network", &self.network, &other.network)?,
            group: one("group", &self.group, &other.group)?,
            tag: one("contiv-tag", &self.tag, &other.tag)?,
        })
    }
}

/// The Contiv network (and group) a Docker network maps to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub tenant: String,
    pub network: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
}

impl Target {
    fn key(&self) -> String {
        format!("{}:{}", self.tenant, self.network)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pool {
    subnet: String,
    /// From `--ipam-opt`.
    wanted: Wanted,
    /// The Docker network it is bound to (empty until CreateNetwork).
    #[serde(default)]
    network_id: String,
    #[serde(default)]
    target: Option<Target>,
    /// Order of creation, to bind the newest unbound pool first.
    seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Binding {
    pool_id: String,
    target: Target,
    /// The Contiv network was made for this Docker network (and goes with it).
    created: bool,
    /// A swarm network (a manager's AllocateNetwork): nodes delete their local copy whenever
    /// no task uses it; only FreeNetwork ends the binding.
    #[serde(default)]
    swarm: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    pools: BTreeMap<String, Pool>,
    #[serde(default)]
    networks: BTreeMap<String, Binding>,
    #[serde(default)]
    seq: u64,
}

pub struct DockerDriver {
    m: Arc<Manager>,
    scope: String,
    state_file: PathBuf,
    state: Mutex<State>,
    /// What creates and deletes Contiv networks for Docker; everything else (reading the
    /// configuration, endpoints and addresses of this node) uses the node credential.
    token: Option<DockerToken>,
}

/// The user API token of `netplugin --docker-token-file`: with authentication on, a node
/// credential may not write networks (403), so `docker network create -d contiv` needs a
/// principal that may (an ops user authorized on the tenants Docker uses, or an admin).
pub struct DockerToken {
    path: PathBuf,
    /// A client of its own: the node credential stays on the manager's client.
    client: model::Client,
}

impl DockerToken {
    /// Checks the file now, so that a missing, unreadable or empty one stops the agent at start
    /// rather than at the first `docker network create`.
    pub fn new(path: PathBuf, client: model::Client) -> anyhow::Result<Self> {
        let t = DockerToken { path, client };
        t.current().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(t)
    }

    /// The client holding the file's token as it is now: the file is read at each use (a
    /// network create or delete, rare), so a rotated token is used without a restart.
    fn current(&self) -> DriverResult<&model::Client> {
        let fix = "write an API token there (netctl token create NAME --role ops -t TENANT, see docs/security.md) or leave --docker-token-file out";
        let token = std::fs::read_to_string(&self.path).map_err(|e| {
            DriverError::new(format!(
                "read the Docker token file {} (--docker-token-file): {e}: {fix}",
                self.path.display()
            ))
        })?;
        if token.trim().is_empty() {
            return Err(DriverError::new(format!(
                "the Docker token file {} (--docker-token-file) is empty: {fix}",
                self.path.display()
            )));
        }
        self.client.set_auth_token(token.trim()).map_err(|e| {
            DriverError::new(format!(
                "the Docker token file {} (--docker-token-file) does not hold a token: {e}: {fix}",
                self.path.display()
            ))
        })?;
        Ok(&self.client)
    }
}

fn master_msg(action: &str, e: ClientError) -> DriverError {
    DriverError::new(format!("{action}: {e}"))
}

fn mgr(e: ManagerError) -> DriverError {
    if e.details.is_empty() {
        DriverError::new(e.msg)
    } else {
        DriverError::new(format!("{} ({})", e.msg, e.details))
    }
}

/// `10.1.0.5/24` or `10.1.0.5` → `10.1.0.5`.
fn bare(addr: &str) -> &str {
    addr.split('/').next().unwrap_or_default().trim()
}

fn parse_subnet(s: &str) -> DriverResult<ipnet::Ipv4Net> {
    s.parse::<ipnet::Ipv4Net>().map(|n| n.trunc()).map_err(|_| {
        DriverError::new(format!(
            "subnet '{s}' is not an IPv4 subnet like 10.1.0.0/24"
        ))
    })
}

/// The container-side interface name of an endpoint (the host side is `vc…`, this is `vd…`).
pub fn peer_ifname(ep_id: &str) -> String {
    let h = host_ifname(ep_id);
    format!("vd{}", &h[2..])
}

impl DockerDriver {
    /// `scope`: `local` (each engine keeps its networks; no cluster store needed) or `global`.
    /// `token`: the credential that writes networks (`--docker-token-file`); without it the node
    /// credential is tried, which only a netmaster with `--auth off` accepts.
    pub fn new(
        m: Arc<Manager>,
        scope: &str,
        state_file: PathBuf,
        token: Option<DockerToken>,
    ) -> anyhow::Result<Self> {
        let state = match std::fs::read(&state_file) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                anyhow::anyhow!(
                    "Docker driver state {} is not valid JSON ({e}): fix or remove it",
                    state_file.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "read Docker driver state {}: {e}",
                    state_file.display()
                ));
            }
        };
        Ok(DockerDriver {
            m,
            scope: scope.to_string(),
            state_file,
            state: Mutex::new(state),
            token,
        })
    }

    /// The client that creates and deletes Contiv networks: the Docker token's, else the
    /// node's own.
    fn network_writer(&self) -> DriverResult<&model::Client> {
        match &self.token {
            Some(t) => t.current(),
            None => Ok(self.m.master()),
        }
    }

    /// The message for a failed network create or delete: when netmaster refused the
    /// credential, what to do about it.
    /// `subnet`: the network's, for a create (the netctl command that makes it instead).
    fn write_failed(
        &self,
        action: &str,
        t: &Target,
        subnet: Option<&str>,
        e: ClientError,
    ) -> DriverError {
        if !matches!(e.status(), Some(401 | 403)) {
            return master_msg(action, e);
        }
        let (tenant, net) = (&t.tenant, &t.network);
        match &self.token {
            None => {
                let instead = match subnet {
                    Some(subnet) => format!(
                        "create the network first (netctl net create -t {tenant} -s {subnet} {net}) and use it (--ipam-opt network={net}/{tenant})"
                    ),
                    None => format!("delete it with netctl (netctl net rm -t {tenant} {net})"),
                };
                DriverError::new(format!(
                    "{action}: netmaster refused the agent's node credential ({e}). A node may not write networks: {instead}, or give the agent a token that may, of an admin or of an ops user authorized on tenant {tenant} (netplugin --docker-token-file FILE; make one with netctl token create NAME --role ops -t {tenant}, see docs/security.md)"
                ))
            }
            Some(tok) => DriverError::new(format!(
                "{action}: netmaster refused the token in {} (--docker-token-file): {e}. Write a valid token there, of an admin or of an ops user authorized on tenant {} (netctl token create, see docs/security.md): the agent reads the file at each use",
                tok.path.display(),
                t.tenant
            )),
        }
    }

    /// Deletes the Contiv network made for a Docker network.
    async fn delete_made_network(&self, t: &Target) -> DriverResult<()> {
        let c = self.network_writer()?;
        match c.delete::<Network>(&t.key()).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => {
                Err(self.write_failed(&format!("delete Contiv network {}", t.key()), t, None, e))
            }
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> DriverResult<T> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut st);
        self.save(&st)?;
        Ok(out)
    }

    /// Writes the state atomically (temp file + rename): a crash leaves the old or the new.
    fn save(&self, st: &State) -> DriverResult<()> {
        let io = |e: std::io::Error| {
            DriverError::new(format!(
                "save the Contiv Docker driver state {}: {e}",
                self.state_file.display()
            ))
        };
        if let Some(d) = self.state_file.parent() {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        let tmp = self.state_file.with_extension("tmp");
        let body = serde_json::to_vec_pretty(st).unwrap_or_default();
        std::fs::write(&tmp, body).map_err(io)?;
        std::fs::rename(&tmp, &self.state_file).map_err(io)
    }

    fn pool(&self, id: &str) -> Option<Pool> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.pools.get(id).cloned()
    }

    fn binding(&self, network_id: &str) -> DriverResult<Binding> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.networks.get(network_id).cloned().ok_or_else(|| {
            DriverError::new(format!(
                "Docker network {} is unknown to the Contiv agent (its state file {} lost it?): remove the network and create it again",
                short(network_id),
                self.state_file.display()
            ))
        })
    }

    /// Turns options into a Contiv network and group that exist (or, for the network, may be
    /// created). `default_name` names a network the options do not name.
    async fn resolve(&self, w: &Wanted, default_name: Option<&str>) -> DriverResult<Target> {
        let c = self.m.master();
        if let Some(tag) = &w.tag {
            if w.network.is_some() || w.group.is_some() {
                return Err(DriverError::new(format!(
                    "contiv-tag={tag} picks the network and group itself: do not give network= or group= with it"
                )));
            }
            let groups: Vec<EndpointGroup> = c
                .list()
                .await
                .map_err(|e| master_msg("list Contiv groups", e))?;
            if let Some(g) = groups.iter().find(|g| &g.cfgd_tag == tag) {
                return Ok(Target {
                    tenant: g.tenant_name.clone(),
                    network: g.network_name.clone(),
                    group: g.group_name.clone(),
                });
            }
            let nets: Vec<Network> = c
                .list()
                .await
                .map_err(|e| master_msg("list Contiv networks", e))?;
            if let Some(n) = nets.iter().find(|n| &n.cfgd_tag == tag) {
                return Ok(Target {
                    tenant: n.tenant_name.clone(),
                    network: n.network_name.clone(),
                    group: String::new(),
                });
            }
            return Err(DriverError::new(format!(
                "no Contiv group or network has tag '{tag}': check contiv-tag, or tag one (netctl group create --tag {tag} ..., netctl net create --tag {tag} ...)"
            )));
        }
        let tenant = w.tenant.clone().unwrap_or_else(|| "default".into());
        let network = match (&w.network, default_name) {
            (Some(n), _) => n.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                return Err(DriverError::new(
                    "no Contiv network named: give --ipam-opt network=NAME[/TENANT]",
                ));
            }
        };
        match c.get::<Tenant>(&tenant).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return Err(DriverError::new(format!(
                    "tenant '{tenant}' does not exist in Contiv: create it first (netctl tenant create {tenant}) or fix tenant="
                )));
            }
            Err(e) => return Err(master_msg(&format!("read tenant {tenant}"), e)),
        }
        let group = w.group.clone().unwrap_or_default();
        if !group.is_empty() {
            match c.get::<EndpointGroup>(&format!("{tenant}:{group}")).await {
                Ok(g) if g.network_name != network => {
                    return Err(DriverError::new(format!(
                        "group '{group}' of tenant '{tenant}' is on network '{}', not '{network}': give network={} or another group",
                        g.network_name, g.network_name
                    )));
                }
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    return Err(DriverError::new(format!(
                        "group '{group}' does not exist in tenant '{tenant}': create it first (netctl group create -t {tenant} {network} {group}) or fix group="
                    )));
                }
                Err(e) => return Err(master_msg(&format!("read group {tenant}:{group}"), e)),
            }
        }
        Ok(Target {
            tenant,
            network,
            group,
        })
    }

    async fn network(&self, t: &Target) -> DriverResult<Option<Network>> {
        match self.m.master().get::<Network>(&t.key()).await {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(master_msg(&format!("read network {}", t.key()), e)),
        }
    }

    /// The netmaster endpoint reserved for `ip` on `t`'s network by this node's IPAM.
    async fn reservation(&self, t: &Target, ip: &str) -> DriverResult<Option<String>> {
        let eps = self
            .m
            .master()
            .list_endpoints(Some(self.m.node()))
            .await
            .map_err(|e| master_msg("list this node's endpoints", e))?;
        Ok(eps
            .into_iter()
            .find(|e| {
                e.endpoint_id.starts_with(RESERVATION_PREFIX)
                    && e.tenant_name == t.tenant
                    && e.network_name == t.network
                    && e.ip_address == ip
            })
            .map(|e| e.endpoint_id))
    }

    async fn ports(&self) -> DriverResult<Vec<ovs::PortInfo>> {
        self.m
            .endpoint_ports()
            .await
            .map_err(|e| DriverError::new(format!("list the ports of the Contiv bridge: {e}")))
    }

    /// The OVS port of netmaster endpoint `ep_id`, if plumbed here.
    async fn port_of_endpoint(&self, ep_id: &str) -> DriverResult<Option<String>> {
        let ports = self.ports().await?;
        Ok(ports
            .into_iter()
            .find(|p| p.external_ids.get(ids::ENDPOINT).map(String::as_str) == Some(ep_id))
            .map(|p| p.name))
    }

    /// The OVS port plumbed for Docker endpoint `docker_ep`: (netmaster endpoint id, peer name).
    async fn port_of(&self, docker_ep: &str) -> DriverResult<Option<(String, String)>> {
        let ports = self.ports().await?;
        Ok(ports.into_iter().find_map(|p| {
            let get = |k: &str| p.external_ids.get(k).cloned().unwrap_or_default();
            (get(ids::CONTAINER) == docker_ep).then(|| (get(ids::ENDPOINT), get(ids::IFNAME)))
        }))
    }

    /// The OVS port (`vc…`) of Docker endpoint `docker_ep`, if plumbed here.
    async fn ovs_port_of(&self, docker_ep: &str) -> DriverResult<Option<String>> {
        let ports = self.ports().await?;
        Ok(ports
            .into_iter()
            .find(|p| p.external_ids.get(ids::CONTAINER).map(String::as_str) == Some(docker_ep))
            .map(|p| p.name))
    }

    /// Ends a Docker network's binding; deletes the Contiv network made for it. A swarm
    /// network's binding ends only with the manager's FreeNetwork (`free`).
    async fn unbind_network(&self, network_id: &str, free: bool) -> DriverResult<()> {
        let b = self.with_state(|st| match st.networks.get(network_id) {
            Some(b) if b.swarm && !free => None,
            _ => st.networks.remove(network_id),
        })?;
        if let Some(b) = b
            && b.created
        {
            // Another host's engine (local scope) or a CNI pod may still use it: then it stays.
            match self.delete_made_network(&b.target).await {
                Ok(()) => {
                    tracing::info!(network = %b.target.key(), "deleted the Contiv network made for a Docker network")
                }
                Err(e) => {
                    tracing::warn!(network = %b.target.key(), error = %e, "kept the Contiv network made for a Docker network")
                }
            }
        }
        Ok(())
    }

    /// Binds Docker network `network_id` to a Contiv network (created when missing) through
    /// the newest unbound pool of its subnet. A network bound already (a swarm manager's
    /// AllocateNetwork, then CreateNetwork on the node) only binds the new pool.
    async fn bind_network(
        &self,
        network_id: &str,
        driver_options: &BTreeMap<String, String>,
        ipv4_data: &[IpamData],
        ipv6_data: &[IpamData],
        swarm: bool,
    ) -> DriverResult<()> {
        if !ipv6_data.is_empty() {
            return Err(DriverError::new(
                "IPv6 on Docker networks is not supported by Contiv yet: create the network without --ipv6",
            ));
        }
        let v4 = match ipv4_data {
            [one] => one,
            [] => {
                return Err(DriverError::new(
                    "no IPv4 pool: create the network with --ipam-driver set to the Contiv plugin",
                ));
            }
            _ => {
                return Err(DriverError::new(
                    "a Contiv network has one IPv4 subnet: give one --subnet",
                ));
            }
        };
        let subnet = parse_subnet(&v4.pool)?.to_string();
        let opts = Wanted::parse(driver_options, "-o")?;
        let (pool_id, pool) = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.pools
                .iter()
                .filter(|(_, p)| p.network_id.is_empty() && p.subnet == subnet)
                .max_by_key(|(_, p)| p.seq)
                .map(|(id, p)| (id.clone(), p.clone()))
                .ok_or_else(|| {
                    DriverError::new(format!(
                        "no address pool of the Contiv IPAM driver for subnet {subnet}: create the network with --ipam-driver set to the Contiv plugin as well as -d"
                    ))
                })?
        };
        let known = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.networks.get(network_id).cloned()
        };
        if let Some(b) = known {
            self.with_state(|st| {
                if let Some(p) = st.pools.get_mut(&pool_id) {
                    p.network_id = network_id.to_string();
                    p.target = Some(b.target.clone());
                }
            })?;
            return Ok(());
        }
        let wanted = pool.wanted.merge(&opts)?;
        let t = self.resolve(&wanted, Some(short(network_id))).await?;
        let gateway = bare(&v4.gateway).to_string();
        let created = match self.network(&t).await? {
            Some(n) => {
                let have = parse_subnet(&n.subnet)?.to_string();
                if have != subnet {
                    return Err(DriverError::new(format!(
                        "Contiv network {} exists with subnet {have}, not {subnet}: give --subnet {have}, or another network name",
                        t.key()
                    )));
                }
                if !n.gateway.is_empty() && !gateway.is_empty() && n.gateway != gateway {
                    return Err(DriverError::new(format!(
                        "Contiv network {} has gateway {}, not {gateway}: give --gateway {} or leave it out",
                        t.key(),
                        n.gateway,
                        n.gateway
                    )));
                }
                false
            }
            None => {
                let n = Network {
                    tenant_name: t.tenant.clone(),
                    network_name: t.network.clone(),
                    subnet: subnet.clone(),
                    gateway: gateway.clone(),
                    encap: "vxlan".into(),
                    ..Default::default()
                };
                self.network_writer()?.put(&n).await.map_err(|e| {
                    self.write_failed(
                        &format!("create Contiv network {}", t.key()),
                        &t,
                        Some(&subnet),
                        e,
                    )
                })?;
                true
            }
        };
        let saved = self.with_state(|st| {
            if let Some(p) = st.pools.get_mut(&pool_id) {
                p.network_id = network_id.to_string();
                p.target = Some(t.clone());
            }
            st.networks.insert(
                network_id.to_string(),
                Binding {
                    pool_id: pool_id.clone(),
                    target: t.clone(),
                    created,
                    swarm,
                },
            );
        });
        if let Err(e) = saved {
            if created && let Err(de) = self.delete_made_network(&t).await {
                tracing::warn!(network = %t.key(), error = %de, "could not remove the Contiv network made for a Docker network whose state was not saved");
            }
            return Err(e);
        }
        tracing::info!(docker_network = %short(network_id), network = %t.key(), group = %t.group, created, "Docker network mapped");
        Ok(())
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[async_trait::async_trait]
impl Backend for DockerDriver {
    fn observe(&self, call: &str, took: std::time::Duration, ok: bool) {
        crate::metrics::get().docker_call(call, took, ok);
    }

    fn capabilities(&self) -> CapabilitiesResponse {
        CapabilitiesResponse {
            scope: self.scope.clone(),
            connectivity_scope: "global".into(),
        }
    }

    async fn request_pool(&self, r: RequestPoolRequest) -> DriverResult<RequestPoolResponse> {
        if r.v6 {
            return Err(DriverError::new(
                "the Contiv IPAM driver does not give IPv6 pools to Docker yet: create the network without --ipv6",
            ));
        }
        if !r.sub_pool.is_empty() {
            return Err(DriverError::new(format!(
                "--ip-range {} is not supported by the Contiv IPAM driver: use a Contiv group with an IP pool (netctl group create --ip-pool ...) and -o group=NAME",
                r.sub_pool
            )));
        }
        let wanted = Wanted::parse(&r.options, "--ipam-opt")?;
        let mut subnet = String::new();
        if !r.pool.is_empty() {
            subnet = parse_subnet(&r.pool)?.to_string();
        }
        if wanted.network.is_some() || wanted.tag.is_some() {
            let t = self.resolve(&wanted, None).await?;
            match self.network(&t).await? {
                Some(n) => {
                    let have = parse_subnet(&n.subnet)?.to_string();
                    if !subnet.is_empty() && subnet != have {
                        return Err(DriverError::new(format!(
                            "Contiv network {} has subnet {have}, not {subnet}: give --subnet {have} or leave --subnet out",
                            t.key()
                        )));
                    }
                    subnet = have;
                }
                None if subnet.is_empty() => {
                    return Err(DriverError::new(format!(
                        "Contiv network {} does not exist: give --subnet (and --gateway) to create it, or create it first (netctl net create -t {} -s SUBNET {})",
                        t.key(),
                        t.tenant,
                        t.network
                    )));
                }
                None => {}
            }
        }
        if subnet.is_empty() {
            return Err(DriverError::new(
                "the Contiv IPAM driver needs a subnet: give --subnet (a new Contiv network), or --ipam-opt network=NAME[/TENANT] or --ipam-opt contiv-tag=TAG (an existing one)",
            ));
        }
        let id = format!(
            "contiv-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let pool = subnet.clone();
        self.with_state(|st| {
            st.seq += 1;
            st.pools.insert(
                id.clone(),
                Pool {
                    subnet,
                    wanted,
                    network_id: String::new(),
                    target: None,
                    seq: st.seq,
                },
            );
        })?;
        tracing::info!(pool = %id, subnet = %pool, "Docker IPAM pool");
        Ok(RequestPoolResponse {
            pool_id: id,
            pool,
            data: Default::default(),
        })
    }

    async fn release_pool(&self, r: ReleasePoolRequest) -> DriverResult<()> {
        self.with_state(|st| st.pools.remove(&r.pool_id))?;
        Ok(())
    }

    async fn request_address(
        &self,
        r: RequestAddressRequest,
    ) -> DriverResult<RequestAddressResponse> {
        let pool = self.pool(&r.pool_id).ok_or_else(|| {
            DriverError::new(format!(
                "address pool {} is unknown to the Contiv agent: remove the Docker network and create it again",
                r.pool_id
            ))
        })?;
        let net = parse_subnet(&pool.subnet)?;
        let plen = net.prefix_len();
        let answer = |ip: String| RequestAddressResponse {
            address: format!("{ip}/{plen}"),
            data: Default::default(),
        };
        if r.is_gateway() {
            if !r.address.is_empty() {
                let ip: Ipv4Addr = bare(&r.address).parse().map_err(|_| {
                    DriverError::new(format!("gateway '{}' is not an IPv4 address", r.address))
                })?;
                if !net.contains(&ip) {
                    return Err(DriverError::new(format!(
                        "gateway {ip} is outside subnet {net}: give a --gateway inside it"
                    )));
                }
                return Ok(answer(ip.to_string()));
            }
            // The existing network's gateway, else the first address (Docker's own habit).
            if pool.wanted.network.is_some() || pool.wanted.tag.is_some() {
                let t = self.resolve(&pool.wanted, None).await?;
                if let Some(n) = self.network(&t).await?
                    && !n.gateway.is_empty()
                {
                    return Ok(answer(n.gateway));
                }
            }
            let first = net.hosts().next().unwrap_or(net.network());
            return Ok(answer(first.to_string()));
        }
        let t = pool.target.ok_or_else(|| {
            DriverError::new(format!(
                "address pool {} is not bound to a Docker network yet: create the network with -d and --ipam-driver both set to the Contiv plugin",
                r.pool_id
            ))
        })?;
        let id = format!("{RESERVATION_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let want = bare(&r.address).to_string();
        let ep = self
            .m
            .master()
            .create_endpoint(&MasterEndpoint {
                endpoint_id: id.clone(),
                tenant_name: t.tenant.clone(),
                network_name: t.network.clone(),
                group_name: t.group.clone(),
                host: self.m.node().to_string(),
                container_id: String::new(),
                container_name: String::new(),
                intf_name: String::new(),
                labels: Default::default(),
                ip_address: want.clone(),
                ipv6_address: String::new(),
            })
            .await;
        let ep = match ep {
            Ok(ep) => Ok(ep),
            // Swarm: the manager reserved the task's address (its own RequestAddress); the node
            // asks for the same address before plumbing it. Adopt that reservation if nothing
            // is plumbed on it yet.
            Err(e) if e.status() == Some(409) && !want.is_empty() && self.scope == "global" => {
                match self.reservation(&t, &want).await? {
                    Some(id) if self.port_of_endpoint(&id).await?.is_none() => {
                        tracing::info!(endpoint = %id, ip = %want, "Docker IPAM: adopting the swarm manager's reservation");
                        return Ok(answer(want));
                    }
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
        .map_err(|e| {
                let what = if want.is_empty() {
                    "get an address".to_string()
                } else {
                    format!("give address {want}")
                };
                master_msg(&format!("{what} on Contiv network {}", t.key()), e)
            })?;
        tracing::info!(endpoint = %id, ip = %ep.ip_address, network = %t.key(), "Docker IPAM address reserved");
        Ok(RequestAddressResponse {
            address: format!("{}/{}", ep.ip_address, ep.prefix_len),
            data: Default::default(),
        })
    }

    async fn release_address(&self, r: ReleaseAddressRequest) -> DriverResult<()> {
        let Some(Pool {
            target: Some(t), ..
        }) = self.pool(&r.pool_id)
        else {
            return Ok(());
        };
        if let Some(id) = self.reservation(&t, bare(&r.address)).await? {
            self.m.del_endpoint(&id, true).await.map_err(mgr)?;
        }
        Ok(())
    }

    async fn create_network(&self, r: CreateNetworkRequest) -> DriverResult<()> {
        let opts = r.driver_options();
        self.bind_network(&r.network_id, &opts, &r.ipv4_data, &r.ipv6_data, false)
            .await
    }

    /// Swarm managers allocate a swarm-scoped network (global scope only): bind it as
    /// CreateNetwork would, so the manager's address requests have a Contiv network.
    async fn allocate_network(
        &self,
        r: AllocateNetworkRequest,
    ) -> DriverResult<AllocateNetworkResponse> {
        self.bind_network(&r.network_id, &r.options, &r.ipv4_data, &r.ipv6_data, true)
            .await?;
        Ok(AllocateNetworkResponse { options: r.options })
    }

    async fn free_network(&self, r: NetworkRequest) -> DriverResult<()> {
        self.unbind_network(&r.network_id, true).await
    }

    async fn delete_network(&self, r: NetworkRequest) -> DriverResult<()> {
        self.unbind_network(&r.network_id, false).await
    }

    #[tracing::instrument(name = "docker", skip_all, fields(call = "CreateEndpoint", container = %r.endpoint_id))]
    async fn create_endpoint(
        &self,
        r: CreateEndpointRequest,
    ) -> DriverResult<CreateEndpointResponse> {
        let b = self.binding(&r.network_id)?;
        let t = b.target;
        let iface = r.interface.unwrap_or_default();
        if !iface.mac_address.is_empty() {
            return Err(DriverError::new(format!(
                "--mac-address {} is not supported on Contiv networks: Contiv derives the MAC from the address; leave it out",
                iface.mac_address
            )));
        }
        let ip = bare(&iface.address).to_string();
        if ip.is_empty() {
            return Err(DriverError::new(
                "Docker gave the endpoint no IPv4 address: create the network with --ipam-driver set to the Contiv plugin",
            ));
        }
        let res = self.reservation(&t, &ip).await?.ok_or_else(|| {
            DriverError::new(format!(
                "address {ip} on Contiv network {} was not reserved through the Contiv IPAM driver: create the network with --ipam-driver set to the Contiv plugin",
                t.key()
            ))
        })?;
        let a = self
            .m
            .add(&AddRequest {
                container_id: r.endpoint_id.clone(),
                netns: PathBuf::new(),
                ifname: peer_ifname(&res),
                tenant: t.tenant.clone(),
                network: t.network.clone(),
                group: t.group.clone(),
                container_name: String::new(),
                labels: Default::default(),
                mtu: None,
                ip: Some(ip),
                attachment_network: format!("docker:{}", r.network_id),
                endpoint_id: Some(res),
                peer_in_host: true,
            })
            .await
            .map_err(mgr)?;
        Ok(CreateEndpointResponse {
            interface: Some(EndpointInterface {
                mac_address: a.mac,
                ..Default::default()
            }),
        })
    }

    #[tracing::instrument(name = "docker", skip_all, fields(call = "DeleteEndpoint", container = %r.endpoint_id))]
    async fn delete_endpoint(&self, r: EndpointRequest) -> DriverResult<()> {
        if let Some((ep_id, _)) = self.port_of(&r.endpoint_id).await? {
            self.m.del_endpoint(&ep_id, false).await.map_err(mgr)?;
        }
        Ok(())
    }

    async fn endpoint_oper_info(
        &self,
        r: EndpointRequest,
    ) -> DriverResult<EndpointOperInfoResponse> {
        let mut value = BTreeMap::new();
        if let Some((ep_id, ifname)) = self.port_of(&r.endpoint_id).await? {
            value.insert("contivEndpointID".into(), ep_id.into());
            value.insert("hostInterface".into(), host_ifname_of(&ifname).into());
        }
        Ok(EndpointOperInfoResponse { value })
    }

    #[tracing::instrument(name = "docker", skip_all, fields(call = "ProgramExternalConnectivity", container = %r.endpoint_id))]
    async fn program_external_connectivity(
        &self,
        r: ExternalConnectivityRequest,
    ) -> DriverResult<()> {
        let list = published_ports(&r.options)?;
        let Some(port) = self.ovs_port_of(&r.endpoint_id).await? else {
            if list.is_empty() {
                // Nothing to publish: no reason to fail the container's start.
                return Ok(());
            }
            return Err(DriverError::new(format!(
                "endpoint {} has no Contiv port on this host: Docker must create it (CreateEndpoint) before publishing its ports",
                short(&r.endpoint_id)
            )));
        };
        self.m.set_published(&port, &list).await.map_err(mgr)?;
        if !list.is_empty() {
            tracing::info!(port = %port, published = %crate::northsouth::Published::encode(&list), "published ports");
        }
        Ok(())
    }

    #[tracing::instrument(name = "docker", skip_all, fields(call = "RevokeExternalConnectivity", container = %r.endpoint_id))]
    async fn revoke_external_connectivity(&self, r: EndpointRequest) -> DriverResult<()> {
        if let Some(port) = self.ovs_port_of(&r.endpoint_id).await? {
            self.m.set_published(&port, &[]).await.map_err(mgr)?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "docker", skip_all, fields(call = "Join", container = %r.endpoint_id))]
    async fn join(&self, r: JoinRequest) -> DriverResult<JoinResponse> {
        let (ep_id, ifname) = self.port_of(&r.endpoint_id).await?.ok_or_else(|| {
            DriverError::new(format!(
                "endpoint {} has no Contiv port on this host: Docker must create it (CreateEndpoint) before joining",
                short(&r.endpoint_id)
            ))
        })?;
        let ep = self
            .m
            .master()
            .get_endpoint(&ep_id)
            .await
            .map_err(|e| master_msg(&format!("read endpoint {ep_id}"), e))?;
        Ok(JoinResponse {
            interface_name: InterfaceName {
                src_name: ifname,
                dst_prefix: "eth".into(),
            },
            // No gateway, no default route: the container reaches only its network (as CNI).
            gateway: ep.gateway,
            gateway_ipv6: ep.ipv6_gateway,
            static_routes: Vec::new(),
            // Contiv gives connectivity itself: no docker_gwbridge.
            disable_gateway_service: true,
        })
    }
}

/// The host side of a `vd…` container-side interface.
fn host_ifname_of(peer: &str) -> String {
    match peer.strip_prefix("vd") {
        Some(rest) => format!("vc{rest}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn published_ports_come_from_libnetworks_port_bindings() {
        let o = |v: serde_json::Value| BTreeMap::from([(PORTMAP.to_string(), v)]);
        let got = published_ports(&o(serde_json::json!([
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
            {"Proto": 17, "IP": "", "Port": 53, "HostIP": "127.0.0.1", "HostPort": 5353, "HostPortEnd": 5353},
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "::", "HostPort": 8080, "HostPortEnd": 8080},
        ])))
        .unwrap();
        assert_eq!(
            crate::northsouth::Published::encode(&got),
            "tcp::8080:80,udp:127.0.0.1:5353:53"
        );
        assert_eq!(published_ports(&BTreeMap::new()).unwrap(), []);
        let e = published_ports(&o(
            serde_json::json!([{"Proto": 6, "Port": 80, "HostPort": 0}]),
        ))
        .unwrap_err();
        assert!(e.0.contains("-p HOSTPORT:80"), "{e}");
        let e = published_ports(&o(
            serde_json::json!([{"Proto": 132, "Port": 80, "HostPort": 1}]),
        ))
        .unwrap_err();
        assert!(e.0.contains("protocol 132"), "{e}");
    }

    #[test]
    fn options() {
        let w = Wanted::parse(&opts(&[("network", "web/blue"), ("group", "g")]), "-o").unwrap();
        assert_eq!(w.tenant.as_deref(), Some("blue"));
        assert_eq!(w.network.as_deref(), Some("web"));
        let e = Wanted::parse(&opts(&[("encapp", "x")]), "-o").unwrap_err();
        assert!(e.0.contains("unknown option -o encapp"), "{e}");
        let e = Wanted::parse(&opts(&[("tenant", "")]), "--ipam-opt").unwrap_err();
        assert!(e.0.contains("tenant= has no value"), "{e}");
        let a = Wanted::parse(&opts(&[("tenant", "a")]), "--ipam-opt").unwrap();
        let b = Wanted::parse(&opts(&[("tenant", "b")]), "-o").unwrap();
        assert!(a.merge(&b).unwrap_err().0.contains("disagree"));
        let c = Wanted::parse(&opts(&[("group", "g")]), "-o").unwrap();
        let m = a.merge(&c).unwrap();
        assert_eq!(
            (m.tenant.as_deref(), m.group.as_deref()),
            (Some("a"), Some("g"))
        );
    }

    /// The token file is read at each use: missing, empty and rewritten files are seen at once.
    #[test]
    fn docker_token_file_is_read_at_each_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker-token");
        let client = || model::Client::new(&["unix:///nonexistent.sock"]).unwrap();
        let e = DockerToken::new(path.clone(), client()).err().unwrap();
        let e = e.to_string();
        assert!(
            e.contains(&path.display().to_string())
                && e.contains("--docker-token-file")
                && e.contains("netctl token create"),
            "{e}"
        );
        std::fs::write(&path, "\n").unwrap();
        let e = DockerToken::new(path.clone(), client()).err().unwrap();
        assert!(e.to_string().contains("is empty"), "{e}");
        std::fs::write(&path, "ctv1.a.b\n").unwrap();
        let t = DockerToken::new(path.clone(), client()).unwrap();
        assert!(t.current().is_ok());
        // Rewritten with something that is no header value, then removed: each use sees it.
        std::fs::write(&path, "ctv1.a\nb").unwrap();
        let e = t.current().err().unwrap();
        assert!(e.0.contains("does not hold a token"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = t.current().err().unwrap();
        assert!(e.0.contains("No such file"), "{e}");
    }

    #[test]
    fn names() {
        let p = peer_ifname("docker-abc");
        assert!(p.starts_with("vd") && p.len() == 14, "{p}");
        assert_eq!(host_ifname_of(&p), host_ifname("docker-abc"));
        assert_eq!(bare("10.1.0.2/24"), "10.1.0.2");
        assert_eq!(
            parse_subnet("10.1.0.7/24").unwrap().to_string(),
            "10.1.0.0/24"
        );
        assert!(parse_subnet("nope").is_err());
    }
}
