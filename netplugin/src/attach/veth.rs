//! The veth mode: a veth pair and an OVS port of the pod's own, with the endpoint's identity in
//! the port's `external_ids` (so a restarted agent finds it there). Docker's containers always
//! get this; CNI pods when no other mode is on (or takes them).

use super::{Attach, Host, Port, Prepared, Restore, Undo, endpoint_mac, log_added};
use crate::kernel::Ns;
use crate::manager::{AddRequest, ErrorKind, ManagerError};
use crate::names::{host_ifname, ids, is_host_ifname};
use model::agent::Endpoint;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The link group (`IFLA_GROUP`) of host veths whose endpoint is gone, waiting for the reaper
/// to delete their ports and then them, in one batch. An arbitrary number ("cnv"), far from
/// the groups people number by hand; only this agent's veths are ever put in it.
pub const GRAVEYARD_GROUP: u32 = 0x00636e76;

pub struct Veth {
    host: Arc<Host>,
}

impl Veth {
    pub fn new(host: Arc<Host>) -> Self {
        Veth { host }
    }

    /// If `ifname` in the pod's namespace is the peer of a host veth waiting in the deletion
    /// queue (or already in [`GRAVEYARD_GROUP`]), deletes its port and that veth now, the veth
    /// by index (a re-created veth of the same name is never touched). Returns whether creating
    /// the veth is worth another try: it deleted that veth, or the reaper's batch did meanwhile.
    async fn delete_queued_peer(&self, pod: &Ns, ifname: &str) -> Result<bool, ManagerError> {
        if pod.index(ifname).await?.is_none() {
            return Ok(true); // Gone since the failed attempt (a batch deletion finished).
        }
        let Some(peer) = pod.peer_index(ifname).await? else {
            return Ok(false);
        };
        let Some((name, group)) = self.host.ns.name_and_group(peer).await? else {
            // The host end is gone, so the pair is going: the kernel deletes both together.
            return Ok(pod.index(ifname).await?.is_none());
        };
        let queued = self.host.reaper.find(&name);
        if queued.is_none() && group != GRAVEYARD_GROUP {
            return Ok(false);
        }
        tracing::info!(port = %name, "deleting a removed endpoint's port and veth now: its peer is in the way");
        // The reaper may be at it too: both deletions are idempotent.
        self.host.switch.remove_port(&name).await?;
        if let Some(key) = queued {
            self.host.reaper.remove(&key);
        }
        self.host.ns.delete_index(peer).await?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl Attach for Veth {
    fn takes(&self, _req: &AddRequest, _ep_id: &str, _mtu: u32) -> bool {
        true
    }

    async fn in_place(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
    ) -> Result<Option<Port>, ManagerError> {
        let host_if = host_ifname(ep_id);
        if req.peer_in_host {
            // A repeated CreateEndpoint, or one after a crash: start from a clean slate (the
            // runtime has not moved the peer yet, or it would not ask again).
            self.host.switch.remove_endpoint(&host_if, ep_id).await?;
            return Ok(None);
        }
        // The agent's port index, not an OVSDB read: it knows every endpoint port of the
        // bridge (loaded at start, kept by every ADD and DEL, which hold this endpoint's lock).
        if self
            .host
            .switch
            .endpoint_port(&host_if)
            .map(|(id, _)| id)
            .as_deref()
            != Some(ep_id)
            || pod.index(&req.ifname).await?.is_none()
        {
            return Ok(None);
        }
        let mac = self.host.ns.mac(&host_if).await?.unwrap_or_default();
        Ok(Some(Port { name: host_if, mac }))
    }

    async fn prepare(
        &self,
        _req: &AddRequest,
        _ep_id: &str,
        _pod: &Ns,
        _mtu: u32,
        _undo: &mut Vec<Undo>,
    ) -> Result<Prepared, ManagerError> {
        // The veth's peer is born with the endpoint's MAC: everything waits for netmaster.
        Ok(Box::new(()))
    }

    async fn finish(
        &self,
        req: &AddRequest,
        ep_id: &str,
        pod: &Ns,
        mtu: u32,
        _prepared: Prepared,
        ep: &Endpoint,
        undo: &mut Vec<Undo>,
    ) -> Result<Port, ManagerError> {
        let (host, switch) = (&self.host.ns, &self.host.switch);
        let host_if = host_ifname(ep_id);
        // A port and host veth left by a DEL (queued for the reaper) or a crashed earlier
        // attempt would be in the way: they are ours (the name derives from this endpoint id),
        // so remove them, and keep the reaper off the name. A port the repeat-ADD check did not
        // take as a live attachment is stale: a new veth must get a new port.
        self.host.reaper.unqueue(ep_id, &host_if);
        if switch.endpoint_port(&host_if).is_some() {
            switch.remove_endpoint(&host_if, ep_id).await?;
        }
        host.delete(&host_if).await?;
        let mac = endpoint_mac(ep)?;
        if let Err(e) = host
            .create_veth(&host_if, &req.ifname, mac, mtu, pod.as_ref(), false)
            .await
        {
            // The pod may still hold the peer of a veth a DEL queued for deletion (the same
            // namespace ADDed again under another container id): delete that one now, retry.
            if !self.delete_queued_peer(pod, &req.ifname).await? {
                return Err(e.into());
            }
            host.create_veth(&host_if, &req.ifname, mac, mtu, pod.as_ref(), false)
                .await?;
        }
        undo.push(Undo::HostLink(host_if.clone()));
        crate::steps::mark("veth");

        // The host side is only a switch port: without IPv6 it sends the pod no router
        // solicitations or MLD reports of its own (and skips address setup work).
        if let Err(e) = host.set_ipv6(&host_if, false).await {
            tracing::debug!(port = %host_if, error = %e, "disable IPv6 on the host side");
        }
        // Up before the port is added: ovs-vswitchd, setting up a new port, writes the link's
        // flags back as it read them plus promiscuous mode, so a link brought up meanwhile
        // could go down again (seen with Docker, whose ADD has no pod side to configure).
        let host_idx = host.index(&host_if).await?.ok_or_else(|| {
            ManagerError::new(
                ErrorKind::Internal,
                format!("host interface {host_if} of endpoint {ep_id} vanished"),
            )
        })?;
        host.set_up(&host_if, host_idx).await?;
        crate::steps::mark("host_up");
        // The port before the pod's side: ovs-vswitchd sets it up (opens the veth, reconfigures
        // the bridge) while the pod's side is configured, instead of while the flows wait.
        let mut extra = BTreeMap::new();
        extra.insert(ids::CONTAINER.to_string(), req.container_id.clone());
        extra.insert(ids::IFNAME.to_string(), req.ifname.clone());
        extra.insert(ids::NETNS.to_string(), req.netns.display().to_string());
        extra.insert(ids::CNI_NETWORK.to_string(), req.attachment_network.clone());
        undo.push(Undo::Port {
            ifname: host_if.clone(),
            endpoint: ep_id.to_string(),
        });
        let ofport = switch.add_endpoint_port(&host_if, ep, &extra).await?;

        if req.peer_in_host {
            // Before the runtime moves it: the setting travels with the link (IPv6 is the
            // runtime's business: Docker sets it by the network's IPv6 setting).
            pod.prepare_link(&req.ifname, switch.userspace(), false)
                .await?;
        } else {
            let idx = super::prepare_pod_side(
                pod,
                &req.ifname,
                switch.userspace(),
                ep.ipv6_address.is_empty(),
            )
            .await?;
            super::finish_pod_side(pod, &req.ifname, idx, ep).await?;
        }
        crate::steps::mark("pod_side");
        switch.program_endpoint(ofport, ep).await?;
        crate::steps::mark("flows");
        let host_mac = host.mac(&host_if).await?.unwrap_or_default();
        crate::steps::mark("host_mac");
        log_added(ep_id, ep, &host_if);
        Ok(Port {
            name: host_if,
            mac: host_mac,
        })
    }

    async fn undo(&self, _step: Box<dyn Any + Send>) -> Result<(), String> {
        Ok(())
    }

    /// Flows now; the port and veth are left to the reaper. No netlink or OVSDB change here:
    /// on the userspace datapath either makes ovs-vswitchd reconfigure every port of the
    /// bridge, and the next call's flows would wait for it. A restarted agent finds such ports
    /// by their released endpoint (`restore`).
    async fn release(&self, ep_id: &str) -> Result<bool, ManagerError> {
        let host_if = host_ifname(ep_id);
        self.host.switch.remove_endpoint_flows(ep_id).await?;
        if self.host.switch.endpoint_port(&host_if).is_some()
            || self.host.ns.index(&host_if).await?.is_some()
        {
            self.host.reaper.queue(ep_id, &host_if);
        }
        crate::steps::mark("queue");
        Ok(true)
    }

    fn shared_port_of(&self, _ep_id: &str) -> Option<String> {
        None
    }

    fn bound(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Endpoint ports of live endpoints get their flows again; ports of removed endpoints (a
    /// DEL the previous agent had not finished) go, and so do host veths of ours that have no
    /// port (DELs whose deletion was queued but not done, ADDs cut short). Runs at start,
    /// before any ADD, so nothing live can be among them.
    async fn restore(&self, found: &mut Restore<'_>) -> Result<(), ManagerError> {
        for p in &found.ports.endpoints {
            let id = p
                .external_ids
                .get(ids::ENDPOINT)
                .cloned()
                .unwrap_or_default();
            // A DEL the previous agent had not finished: its address is released (the DEL
            // releases it after the flows are gone), or its veth is in the graveyard. Such a
            // port gets no flows anyway: only netmaster knows the endpoint's address.
            let live = found
                .by_id
                .get(id.as_str())
                .filter(|_| found.links.get(&p.name) != Some(&GRAVEYARD_GROUP));
            let Some(ep) = live else {
                tracing::info!(endpoint = %id, port = %p.name, "deleting the port of a removed endpoint");
                self.host.switch.remove_port(&p.name).await?;
                continue;
            };
            found.with_port.insert(id.clone());
            // A port whose number ovs-vswitchd has not written yet (it was just restarted) has
            // the one the agent asked for.
            match p.ofport.or(p.ofport_request) {
                Some(of) => found.locals.push((of, (*ep).clone())),
                None => {
                    tracing::warn!(endpoint = %id, port = %p.name, "port has no OpenFlow port yet")
                }
            }
        }
        // One kernel batch for the orphans (listed before: deleting ports does not change it).
        let mut n = 0;
        for name in found.links.keys() {
            if is_host_ifname(name) && self.host.switch.endpoint_port(name).is_none() {
                self.host.ns.set_group(name, GRAVEYARD_GROUP).await?;
                n += 1;
            }
        }
        self.host.ns.delete_group(GRAVEYARD_GROUP).await?;
        if n > 0 {
            tracing::info!(veths = n, "deleted veths of endpoints that have no port");
        }
        Ok(())
    }

    async fn reap(&self) {}

    async fn upkeep(&self) {}
}
