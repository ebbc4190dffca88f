//! `netctl group`: endpoint groups. create, inspect, ls, rm.

use crate::check::check;
use crate::cli::{ListOpts, TenantOpt, list_scoped, print_list};
use crate::error::Result;
use crate::out;
use crate::table::Table;
use clap::{Args, Subcommand};
use model::oper::EndpointGroupOper;
use model::{Client, EndpointGroup};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create an endpoint group, or update its policies, profile and contracts
    #[command(after_help = "\
Examples:
  netctl group create contiv-net webgroup
  netctl group create -t blue -p web -p db -n slow contiv-net webgroup
  netctl group create -r 10.1.2.10-10.1.2.20 --tag web-tag contiv-net pooled")]
    Create(CreateArgs),
    /// Inspect an endpoint group: its config and endpoints, as JSON
    #[command(after_help = "Example:\n  netctl group inspect -t blue webgroup")]
    Inspect(NameArgs),
    /// List endpoint groups
    #[command(
        name = "ls",
        visible_alias = "list",
        after_help = "Examples:\n  netctl group ls -t blue\n  netctl group ls -a -q"
    )]
    Ls(ListOpts),
    /// Delete an endpoint group
    #[command(
        name = "rm",
        visible_alias = "delete",
        after_help = "Example:\n  netctl group rm -t blue webgroup"
    )]
    Rm(NameArgs),
}

#[derive(Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Name of the endpoint group
    #[arg(value_name = "GROUP")]
    pub group: String,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Policy to attach (repeat the flag, or separate with commas)
    #[arg(short, long, value_delimiter = ',')]
    pub policy: Vec<String>,
    /// Network profile
    #[arg(short = 'n', long)]
    pub networkprofile: Option<String>,
    /// External contracts group (repeat the flag, or separate with commas)
    #[arg(short, long, value_delimiter = ',')]
    pub external_contract: Vec<String>,
    /// IP address range for the group's endpoints, e.g. 10.36.0.1-10.36.0.10
    #[arg(short = 'r', long)]
    pub ip_pool: Option<String>,
    /// Configured group tag
    #[arg(long = "epg-tag", visible_alias = "tag")]
    pub epg_tag: Option<String>,
    /// Name of the network the group is on
    #[arg(value_name = "NETWORK")]
    pub network: String,
    /// Name of the endpoint group
    #[arg(value_name = "GROUP")]
    pub group: String,
}

const CREATE: &[&str] = &["group", "create"];

fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "tenantName" => "--tenant",
        "groupName" => "<GROUP>",
        "networkName" => "<NETWORK>",
        "ipPool" => "--ip-pool",
        "policies" => "--policy",
        "extContractsGrps" => "--external-contract",
        "netProfile" => "--networkprofile",
        "cfgdTag" => "--epg-tag",
        _ => return None,
    })
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Create(a) => {
            let tenant = a.tenant.tenant;
            let epg = EndpointGroup {
                tenant_name: tenant.clone(),
                group_name: a.group.clone(),
                network_name: a.network,
                policies: a.policy,
                ext_contracts_grps: a.external_contract,
                net_profile: a.networkprofile.unwrap_or_default(),
                ip_pool: a.ip_pool.unwrap_or_default(),
                cfgd_tag: a.epg_tag.unwrap_or_default(),
                ..Default::default()
            };
            check(&epg, CREATE, flag)?;
            client.put(&epg).await?;
            out::line(format!("Creating EndpointGroup {tenant}:{}", a.group))
        }
        Cmd::Inspect(a) => {
            let key = format!("{}:{}", a.tenant.tenant, a.group);
            out::inspect::<EndpointGroup, EndpointGroupOper>(client, &key).await
        }
        Cmd::Ls(o) => {
            let list = list_scoped::<EndpointGroup>(client, &o, |g| &g.tenant_name).await?;
            print_list(o.json, o.quiet, &list, |g| &g.group_name, table)
        }
        Cmd::Rm(a) => {
            let key = format!("{}:{}", a.tenant.tenant, a.group);
            client.delete::<EndpointGroup>(&key).await?;
            Ok(())
        }
    }
}

fn table(list: &[EndpointGroup]) -> Table {
    let mut t = Table::new(&[
        ("Tenant", "------"),
        ("Group", "-----"),
        ("Network", "-------"),
        ("IP Pool", "-------"),
        ("CfgdTag", "-------"),
        ("Policies", "--------"),
        ("Network profile", "---------------"),
    ]);
    for g in list {
        t.row([
            g.tenant_name.clone(),
            g.group_name.clone(),
            g.network_name.clone(),
            g.ip_pool.clone(),
            g.cfgd_tag.clone(),
            g.policies.join(","),
            g.net_profile.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_table_as_contiv() {
        let g = EndpointGroup {
            tenant_name: "blue".into(),
            group_name: "webgroup".into(),
            network_name: "contiv-net".into(),
            policies: vec!["db".into(), "web".into()],
            net_profile: "slow".into(),
            ..Default::default()
        };
        assert_eq!(
            table(&[g]).render(),
            "\
Tenant  Group     Network     IP Pool  CfgdTag  Policies  Network profile
------  -----     -------     -------  -------  --------  ---------------
blue    webgroup  contiv-net                    db,web    slow
"
        );
    }
}
