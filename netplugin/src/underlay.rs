//! The uplink bridge the userspace datapath needs for VXLAN.
//!
//! With the kernel datapath, tunnel packets leave through the host's routing table. The userspace
//! datapath routes and resolves tunnel packets only through an OVS bridge that owns the local
//! VTEP address (ENVIRONMENT.md). So, when told which NIC carries the VTEP address, the agent
//! makes that NIC a port of an uplink bridge and moves the address onto the bridge's own
//! interface. Every step is idempotent: after a restart it finds the address already moved.

use crate::netlink::{LinkError, Netlink};
use ovs::{BridgeSpec, PortSpec, Vswitch};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UnderlayError {
    #[error("{0}")]
    Ovsdb(#[from] ovs::OvsdbError),
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error(
        "VTEP address {vtep} is on neither {nic} nor {bridge}: give --vtep-ip an address of --vtep-intf"
    )]
    NoAddress {
        vtep: IpAddr,
        nic: String,
        bridge: String,
    },
    #[error("interface {0} does not exist (check --vtep-intf)")]
    NoNic(String),
    #[error(
        "the uplink bridge's interface {0} did not appear within 10s (is ovs-vswitchd running?)"
    )]
    NoBridgeIface(String),
}

/// Ensures `bridge` (userspace datapath, a learning switch) holds `nic` and the VTEP address.
/// Returns the NIC's MTU, which the pod MTU derives from.
pub async fn ensure_uplink(
    vs: &Vswitch,
    host: &Netlink,
    bridge: &str,
    nic: &str,
    vtep: IpAddr,
) -> Result<u32, UnderlayError> {
    let nic_idx = host
        .index(nic)
        .await?
        .ok_or_else(|| UnderlayError::NoNic(nic.to_string()))?;
    let mtu = host.mtu(nic).await?.unwrap_or(1500);
    vs.ensure_bridge(
        &BridgeSpec::new(bridge)
            .datapath_type("netdev")
            .external_id("contiv-owner", "netplugin-uplink"),
    )
    .await?;
    vs.add_port(bridge, &PortSpec::new(nic)).await?;
    let mut br_idx = None;
    for _ in 0..500 {
        br_idx = host.index(bridge).await?;
        if br_idx.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let br_idx = br_idx.ok_or_else(|| UnderlayError::NoBridgeIface(bridge.to_string()))?;
    let on_nic = host
        .addresses(nic_idx)
        .await?
        .into_iter()
        .find(|(a, _)| *a == vtep);
    let on_bridge = host
        .addresses(br_idx)
        .await?
        .into_iter()
        .find(|(a, _)| *a == vtep);
    match (on_nic, on_bridge) {
        (Some((a, p)), _) => {
            host.add_address(bridge, br_idx, a, p).await?;
            host.del_address(nic, nic_idx, a, p).await?;
            tracing::info!(nic, bridge, vtep = %a, "moved the VTEP address onto the uplink bridge (userspace datapath)");
        }
        (None, Some(_)) => {}
        (None, None) => {
            return Err(UnderlayError::NoAddress {
                vtep,
                nic: nic.to_string(),
                bridge: bridge.to_string(),
            });
        }
    }
    host.set_up(bridge, br_idx).await?;
    Ok(mtu)
}
