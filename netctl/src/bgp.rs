//! `netctl bgp`: a host's BGP peering (routing mode). create, inspect, ls, rm.

use crate::check::check;
use crate::cli::print_list;
use crate::error::Result;
use crate::out;
use crate::table::Table;
use clap::{Args, Subcommand};
use model::oper::BgpOper;
use model::{Bgp, Client};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Add a host's BGP configuration
    #[command(after_help = "\
Example:
  netctl bgp create --router-ip 50.1.1.1/24 --as 65002 --neighbor-as 500 --neighbor 50.1.1.2 host1")]
    Create(CreateArgs),
    /// Inspect a host's BGP configuration and state, as JSON
    #[command(after_help = "Example:\n  netctl bgp inspect host1")]
    Inspect(HostArgs),
    /// List BGP configurations
    #[command(
        name = "ls",
        visible_alias = "list",
        after_help = "Examples:\n  netctl bgp ls\n  netctl bgp ls -q"
    )]
    Ls(LsArgs),
    /// Delete a host's BGP configuration
    #[command(
        name = "rm",
        visible_alias = "delete",
        after_help = "Example:\n  netctl bgp rm host1"
    )]
    Rm(HostArgs),
}

#[derive(Args, Debug)]
pub struct HostArgs {
    /// The host's name
    #[arg(value_name = "HOSTNAME")]
    pub hostname: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print the list as JSON
    #[arg(short, long)]
    pub json: bool,
    /// Print only the host names
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// This host's BGP interface address with its prefix length, e.g. 50.1.1.1/24
    #[arg(long, required = true)]
    pub router_ip: String,
    /// This host's AS number
    #[arg(long = "as", required = true)]
    pub as_: String,
    /// The neighbor's AS number
    #[arg(long, required = true)]
    pub neighbor_as: String,
    /// The neighbor's address
    #[arg(long, required = true)]
    pub neighbor: String,
    /// The host's name
    #[arg(value_name = "HOSTNAME")]
    pub hostname: String,
}

fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "hostname" => "<HOSTNAME>",
        "routerip" => "--router-ip",
        "as" => "--as",
        "neighbor-as" => "--neighbor-as",
        "neighbor" => "--neighbor",
        _ => return None,
    })
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Create(a) => {
            let b = Bgp {
                hostname: a.hostname,
                routerip: a.router_ip,
                as_: a.as_,
                neighbor_as: a.neighbor_as,
                neighbor: a.neighbor,
                ..Default::default()
            };
            check(&b, &["bgp", "create"], flag)?;
            client.put(&b).await?;
            Ok(())
        }
        Cmd::Inspect(a) => out::inspect::<Bgp, BgpOper>(client, &a.hostname).await,
        Cmd::Ls(a) => {
            let list = client.list::<Bgp>().await?;
            // Contiv's `-q` looked up a flag named "quite" and never worked; this one does.
            print_list(a.json, a.quiet, &list, |b| &b.hostname, table)
        }
        Cmd::Rm(a) => {
            out::line(format!("Deleting Bgp router config: {}", a.hostname))?;
            client.delete::<Bgp>(&a.hostname).await?;
            Ok(())
        }
    }
}

fn table(list: &[Bgp]) -> Table {
    let mut t = Table::new(&[
        ("HostName", "---------"),
        ("RouterIP", "--------"),
        ("AS", "-------"),
        ("Neighbor", "--------"),
        ("NeighborAS", "-------"),
    ]);
    for b in list {
        t.row([
            &b.hostname,
            &b.routerip,
            &b.as_,
            &b.neighbor,
            &b.neighbor_as,
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgp_table_as_contiv() {
        let b = Bgp {
            hostname: "host1".into(),
            routerip: "50.1.1.1/24".into(),
            as_: "65002".into(),
            neighbor: "50.1.1.2".into(),
            neighbor_as: "500".into(),
            ..Default::default()
        };
        assert_eq!(
            table(&[b]).render(),
            "\
HostName   RouterIP     AS       Neighbor  NeighborAS
---------  --------     -------  --------  -------
host1      50.1.1.1/24  65002    50.1.1.2  500
"
        );
    }
}
