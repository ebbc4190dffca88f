//! `netctl tenant`: create, inspect, ls, rm.

use crate::check::check;
use crate::cli::print_list;
use crate::error::Result;
use crate::out;
use crate::table::Table;
use clap::{Args, Subcommand};
use model::oper::TenantOper;
use model::{Client, Tenant};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a tenant
    #[command(after_help = "Example:\n  netctl tenant create blue")]
    Create(Name),
    /// Inspect a tenant: its config and counts of its objects, as JSON
    #[command(after_help = "Example:\n  netctl tenant inspect blue")]
    Inspect(Name),
    /// List tenants
    #[command(
        name = "ls",
        visible_alias = "list",
        after_help = "Examples:\n  netctl tenant ls\n  netctl tenant ls -q"
    )]
    Ls(LsArgs),
    /// Delete a tenant (it must have no networks, groups, policies, profiles or app profiles)
    #[command(
        name = "rm",
        visible_alias = "delete",
        after_help = "Example:\n  netctl tenant rm blue"
    )]
    Rm(Name),
}

#[derive(Args, Debug)]
pub struct Name {
    /// Name of the tenant
    #[arg(value_name = "TENANT")]
    pub tenant: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print only the names
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the list as JSON
    #[arg(short, long)]
    pub json: bool,
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Create(a) => {
            let t = Tenant {
                tenant_name: a.tenant.clone(),
                ..Default::default()
            };
            check(&t, &["tenant", "create"], |_| Some("<TENANT>"))?;
            client.put(&t).await?;
            out::line(format!("Creating tenant: {}", a.tenant))
        }
        Cmd::Inspect(a) => out::inspect::<Tenant, TenantOper>(client, &a.tenant).await,
        Cmd::Ls(a) => {
            let list = client.list::<Tenant>().await?;
            print_list(a.json, a.quiet, &list, |t| &t.tenant_name, table)
        }
        Cmd::Rm(a) => {
            out::line(format!("Deleting tenant {}", a.tenant))?;
            client.delete::<Tenant>(&a.tenant).await?;
            Ok(())
        }
    }
}

fn table(list: &[Tenant]) -> Table {
    let mut t = Table::new(&[("Name", "------")]);
    for tenant in list {
        t.row([&tenant.tenant_name]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_table() {
        let list = vec![
            Tenant {
                tenant_name: "default".into(),
                ..Default::default()
            },
            Tenant {
                tenant_name: "blue".into(),
                ..Default::default()
            },
        ];
        assert_eq!(table(&list).render(), "Name\n------\ndefault\nblue\n");
    }
}
