//! `netctl external-contracts`: groups of ACI contracts. create, ls, rm.

use crate::check::check;
use crate::cli::{ListOpts, TenantOpt, list_scoped, print_list};
use crate::error::Result;
use crate::out;
use crate::table::{Table, go_list};
use clap::{ArgGroup, Args, Subcommand};
use model::{Client, ExtContractsGroup};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create an external contracts group
    #[command(after_help = "\
Example:
  netctl external-contracts create -t blue -c -a uni/tn-common/brc-default ext-web")]
    Create(CreateArgs),
    /// List external contracts groups
    #[command(
        name = "ls",
        visible_alias = "list",
        after_help = "Example:\n  netctl external-contracts ls -t blue"
    )]
    Ls(ListOpts),
    /// Delete an external contracts group
    #[command(
        name = "rm",
        visible_alias = "delete",
        after_help = "Example:\n  netctl external-contracts rm -t blue ext-web"
    )]
    Rm(NameArgs),
}

#[derive(Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Name of the contracts group
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("type").required(true).args(["consumed", "provided"])))]
pub struct CreateArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// The contracts are consumed
    #[arg(short, long)]
    pub consumed: bool,
    /// The contracts are provided
    #[arg(short, long)]
    pub provided: bool,
    /// Contract DN (repeat the flag for several)
    #[arg(short = 'a', long, required = true)]
    pub contract: Vec<String>,
    /// Name of the contracts group
    #[arg(value_name = "NAME")]
    pub name: String,
}

fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "tenantName" => "--tenant",
        "contractsGroupName" => "<NAME>",
        "contracts" => "--contract",
        _ => return None,
    })
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Create(a) => {
            let tenant = a.tenant.tenant;
            let g = ExtContractsGroup {
                tenant_name: tenant.clone(),
                contracts_group_name: a.name.clone(),
                contracts_type: if a.provided { "provided" } else { "consumed" }.into(),
                contracts: a.contract,
                ..Default::default()
            };
            check(&g, &["external-contracts", "create"], flag)?;
            client.put(&g).await?;
            out::line(format!("Creating ExternalContracts {tenant}:{}", a.name))
        }
        Cmd::Ls(o) => {
            let list = list_scoped::<ExtContractsGroup>(client, &o, |g| &g.tenant_name).await?;
            print_list(o.json, o.quiet, &list, |g| &g.contracts_group_name, table)
        }
        Cmd::Rm(a) => {
            out::line(format!(
                "Deleting external contracts group {} in tenant {}",
                a.name, a.tenant.tenant
            ))?;
            let key = format!("{}:{}", a.tenant.tenant, a.name);
            client.delete::<ExtContractsGroup>(&key).await?;
            Ok(())
        }
    }
}

/// Contiv printed this table with empty columns that pushed each value under the wrong header;
/// here each value is under its own.
fn table(list: &[ExtContractsGroup]) -> Table {
    let mut t = Table::new(&[
        ("Tenant", "------"),
        ("Name", "------"),
        ("Type", "------"),
        ("Contracts", "-------"),
    ]);
    for g in list {
        t.row([
            g.tenant_name.clone(),
            g.contracts_group_name.clone(),
            g.contracts_type.clone(),
            go_list(&g.contracts),
        ]);
    }
    t
}
