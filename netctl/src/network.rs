//! `netctl network` (`net`): create, inspect, ls, rm.

use crate::check::check;
use crate::cli::{ListOpts, TenantOpt, list_scoped, print_list};
use crate::error::Result;
use crate::out;
use crate::table::Table;
use clap::{Args, Subcommand};
use model::oper::NetworkOper;
use model::{Client, Network};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a network
    #[command(after_help = "\
Examples:
  netctl net create --subnet=10.1.2.0/24 --gateway=10.1.2.1 contiv-net
  netctl net create -t blue -e vlan -p 100 -s 10.1.2.0/24 -g 10.1.2.1 contiv-net
  netctl net create -s 10.1.2.0/24 --subnetv6 2001:db8::/64 --gatewayv6 2001:db8::1 dual
  netctl net create -n infra -s 10.3.0.0/24 infra-net")]
    Create(CreateArgs),
    /// Inspect a network: its config and allocations, as JSON
    #[command(after_help = "Example:\n  netctl net inspect -t blue contiv-net")]
    Inspect(NameArgs),
    /// List networks
    #[command(
        name = "ls",
        visible_alias = "list",
        after_help = "Examples:\n  netctl net ls\n  netctl net ls -t blue\n  netctl net ls -a -j"
    )]
    Ls(ListOpts),
    /// Delete a network (it must have no groups, services or endpoints)
    #[command(
        name = "rm",
        visible_alias = "delete",
        after_help = "Example:\n  netctl net rm -t blue contiv-net"
    )]
    Rm(NameArgs),
}

#[derive(Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Name of the network
    #[arg(value_name = "NETWORK")]
    pub network: String,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Network type (infra or data)
    #[arg(short, long, default_value = "data")]
    pub nw_type: String,
    /// Encap type (vlan or vxlan)
    #[arg(short, long, default_value = "vxlan")]
    pub encap: String,
    /// Packet tag (VLAN id or VNI); 0 picks one from the global range
    #[arg(short, long, default_value_t = 0)]
    pub pkt_tag: i64,
    /// Subnet CIDR, e.g. 10.1.2.0/24, or an address range in it, 10.1.2.10-10.1.2.100/24
    #[arg(short, long, required = true)]
    pub subnet: String,
    /// Gateway, an address inside the subnet
    #[arg(short, long)]
    pub gateway: Option<String>,
    /// IPv6 subnet CIDR
    #[arg(long = "subnetv6", visible_alias = "s6")]
    pub subnetv6: Option<String>,
    /// IPv6 gateway
    #[arg(long = "gatewayv6", visible_alias = "g6")]
    pub gatewayv6: Option<String>,
    /// Configured network tag
    #[arg(long = "nw-tag", visible_alias = "tag")]
    pub nw_tag: Option<String>,
    /// Name of the network
    #[arg(value_name = "NETWORK")]
    pub network: String,
}

const CREATE: &[&str] = &["network", "create"];

fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "tenantName" => "--tenant",
        "networkName" => "<NETWORK>",
        "nwType" => "--nw-type",
        "encap" => "--encap",
        "pktTag" => "--pkt-tag",
        "subnet" => "--subnet",
        "gateway" => "--gateway",
        "ipv6Subnet" => "--subnetv6",
        "ipv6Gateway" => "--gatewayv6",
        "cfgdTag" => "--nw-tag",
        _ => return None,
    })
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Create(a) => {
            let tenant = a.tenant.tenant;
            let net = Network {
                tenant_name: tenant.clone(),
                network_name: a.network.clone(),
                nw_type: a.nw_type,
                encap: a.encap,
                pkt_tag: a.pkt_tag,
                subnet: a.subnet,
                gateway: a.gateway.unwrap_or_default(),
                ipv6_subnet: a.subnetv6.unwrap_or_default(),
                ipv6_gateway: a.gatewayv6.unwrap_or_default(),
                cfgd_tag: a.nw_tag.unwrap_or_default(),
                ..Default::default()
            };
            check(&net, CREATE, flag)?;
            client.put(&net).await?;
            out::line(format!("Creating network {tenant}:{}", a.network))
        }
        Cmd::Inspect(a) => {
            let key = format!("{}:{}", a.tenant.tenant, a.network);
            out::inspect::<Network, NetworkOper>(client, &key).await
        }
        Cmd::Ls(o) => {
            let list = list_scoped::<Network>(client, &o, |n| &n.tenant_name).await?;
            print_list(o.json, o.quiet, &list, |n| &n.network_name, table)
        }
        Cmd::Rm(a) => {
            out::line(format!(
                "Deleting network {}:{}",
                a.tenant.tenant, a.network
            ))?;
            let key = format!("{}:{}", a.tenant.tenant, a.network);
            client.delete::<Network>(&key).await?;
            Ok(())
        }
    }
}

fn table(list: &[Network]) -> Table {
    let mut t = Table::new(&[
        ("Tenant", "------"),
        ("Network", "-------"),
        ("Nw Type", "-------"),
        ("Encap type", "----------"),
        ("Packet tag", "----------"),
        ("Subnet", "-------"),
        ("Gateway", "------"),
        ("IPv6Subnet", "----------"),
        ("IPv6Gateway", "-----------"),
        ("Cfgd Tag", "---------"),
    ]);
    for n in list {
        t.row([
            n.tenant_name.clone(),
            n.network_name.clone(),
            n.nw_type.clone(),
            n.encap.clone(),
            n.pkt_tag.to_string(),
            n.subnet.clone(),
            n.gateway.clone(),
            n.ipv6_subnet.clone(),
            n.ipv6_gateway.clone(),
            n.cfgd_tag.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_table_as_contiv() {
        let n = Network {
            tenant_name: "default".into(),
            network_name: "contiv-net".into(),
            nw_type: "data".into(),
            encap: "vxlan".into(),
            subnet: "10.1.2.0/24".into(),
            gateway: "10.1.2.1".into(),
            ..Default::default()
        };
        assert_eq!(
            table(&[n]).render(),
            "\
Tenant   Network     Nw Type  Encap type  Packet tag  Subnet       Gateway   IPv6Subnet  IPv6Gateway  Cfgd Tag
------   -------     -------  ----------  ----------  -------      ------    ----------  -----------  ---------
default  contiv-net  data     vxlan       0           10.1.2.0/24  10.1.2.1
"
        );
    }
}
