//! `netctl global`: the cluster-wide settings. info, inspect, set.

use crate::check::check;
use crate::error::{CtlError, Result};
use crate::out;
use clap::{Args, Subcommand};
use model::oper::GlobalOper;
use model::{Client, Global};

/// The key of the one global object.
const GLOBAL: &str = "global";

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show global information
    #[command(after_help = "Examples:\n  netctl global info\n  netctl global info -j")]
    Info(InfoArgs),
    /// Inspect global operational information (tags in use...), as JSON
    #[command(after_help = "Example:\n  netctl global inspect")]
    Inspect,
    /// Set global parameters; those not given keep their value
    #[command(after_help = "\
Examples:
  netctl global set --fwd-mode routing
  netctl global set -v 100-200 -x 5000-6000
  netctl global set --arp-mode flood --private-subnet 172.20.0.0/16")]
    Set(SetArgs),
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Print as JSON
    #[arg(short, long)]
    pub json: bool,
    /// Accepted for compatibility with Contiv; no effect
    #[arg(short, long, hide = true)]
    pub tenant: Option<String>,
    /// Accepted for compatibility with Contiv; no effect
    #[arg(short, long, hide = true)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// Fabric mode (aci, aci-opflex or default)
    #[arg(short, long)]
    pub fabric_mode: Option<String>,
    /// Allowed VLAN id range, e.g. 1-4094
    #[arg(short, long)]
    pub vlan_range: Option<String>,
    /// Allowed VXLAN VNI range, e.g. 1-10000
    #[arg(short = 'x', long)]
    pub vxlan_range: Option<String>,
    /// Forwarding mode (bridge or routing)
    #[arg(short = 'b', long)]
    pub fwd_mode: Option<String>,
    /// ARP mode (proxy or flood)
    #[arg(short, long)]
    pub arp_mode: Option<String>,
    /// A /16 private subnet for host access, e.g. 172.19.0.0/16
    #[arg(short = 's', long)]
    pub private_subnet: Option<String>,
}

impl SetArgs {
    fn is_empty(&self) -> bool {
        [
            &self.fabric_mode,
            &self.vlan_range,
            &self.vxlan_range,
            &self.fwd_mode,
            &self.arp_mode,
            &self.private_subnet,
        ]
        .iter()
        .all(|v| v.is_none())
    }
}

fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "networkInfraType" => "--fabric-mode",
        "vlans" => "--vlan-range",
        "vxlans" => "--vxlan-range",
        "fwdMode" => "--fwd-mode",
        "arpMode" => "--arp-mode",
        "pvtSubnet" => "--private-subnet",
        _ => return None,
    })
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Info(a) => {
            let list = client.list::<Global>().await?;
            if a.json {
                out::json(&list)
            } else {
                out::print(&list.iter().map(info).collect::<String>())
            }
        }
        Cmd::Inspect => out::inspect::<Global, GlobalOper>(client, GLOBAL).await,
        Cmd::Set(a) => {
            if a.is_empty() {
                return Err(CtlError::usage(
                    &["global", "set"],
                    "nothing to set: give at least one of --fabric-mode, --vlan-range, --vxlan-range, --fwd-mode, --arp-mode, --private-subnet",
                ));
            }
            let mut g = client.get::<Global>(GLOBAL).await?;
            for (value, field) in [
                (a.fabric_mode, &mut g.network_infra_type),
                (a.vlan_range, &mut g.vlans),
                (a.vxlan_range, &mut g.vxlans),
                (a.fwd_mode, &mut g.fwd_mode),
                (a.arp_mode, &mut g.arp_mode),
                (a.private_subnet, &mut g.pvt_subnet),
            ] {
                if let Some(v) = value {
                    *field = v;
                }
            }
            check(&g, &["global", "set"], flag)?;
            client.put(&g).await?;
            Ok(())
        }
    }
}

fn info(g: &Global) -> String {
    crate::table::labeled(&[
        ("Fabric mode", &g.network_infra_type),
        ("Forward mode", &g.fwd_mode),
        ("ARP mode", &g.arp_mode),
        ("Vlan Range", &g.vlans),
        ("Vxlan range", &g.vxlans),
        ("Private subnet", &g.pvt_subnet),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_as_contiv() {
        assert_eq!(
            info(&Global::defaults()),
            "\
Fabric mode: default
Forward mode: bridge
ARP mode: proxy
Vlan Range: 1-4094
Vxlan range: 1-10000
Private subnet: 172.19.0.0/16
"
        );
    }
}
