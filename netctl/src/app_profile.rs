//! `netctl app-profile`: application profiles (ACI). create, group-ls, ls, rm, update.

use crate::check::check;
use crate::cli::{ListOpts, TenantOpt, list_scoped, print_list};
use crate::error::Result;
use crate::out;
use crate::table::Table;
use clap::{Args, Subcommand};
use model::{AppProfile, Client};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create an application profile
    #[command(after_help = "Example:\n  netctl app-profile create -t blue -g web,db shop")]
    Create(ProfileArgs),
    /// List the groups of an application profile
    #[command(
        name = "group-ls",
        visible_alias = "group-list",
        after_help = "Example:\n  netctl app-profile group-ls -t blue shop"
    )]
    GroupLs(GroupLsArgs),
    /// List application profiles
    #[command(
        name = "ls",
        visible_alias = "list",
        after_help = "Examples:\n  netctl app-profile ls -t blue\n  netctl app-profile ls -a"
    )]
    Ls(ListOpts),
    /// Delete an application profile
    #[command(
        name = "rm",
        visible_alias = "delete",
        after_help = "Example:\n  netctl app-profile rm -t blue shop"
    )]
    Rm(NameArgs),
    /// Update an application profile: set its groups
    #[command(after_help = "Example:\n  netctl app-profile update -t blue -g web,db,cache shop")]
    Update(ProfileArgs),
}

#[derive(Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Name of the application profile
    #[arg(value_name = "APP_PROFILE")]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Endpoint groups, separated by commas
    #[arg(short, long, value_delimiter = ',')]
    pub group: Vec<String>,
    /// Name of the application profile
    #[arg(value_name = "APP_PROFILE")]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct GroupLsArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Print the profile as JSON
    #[arg(short, long)]
    pub json: bool,
    /// Accepted for compatibility with Contiv; no effect
    #[arg(short, long, hide = true)]
    pub all: bool,
    /// Accepted for compatibility with Contiv; no effect
    #[arg(short, long, hide = true)]
    pub quiet: bool,
    /// Name of the application profile
    #[arg(value_name = "APP_PROFILE")]
    pub name: String,
}

fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "tenantName" => "--tenant",
        "appProfileName" => "<APP_PROFILE>",
        "endpointGroups" => "--group",
        _ => return None,
    })
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Create(a) => {
            put(client, &a, &["app-profile", "create"]).await?;
            out::line(format!(
                "Creating AppProfile {}:{}",
                a.tenant.tenant, a.name
            ))
        }
        Cmd::Update(a) => put(client, &a, &["app-profile", "update"]).await,
        Cmd::GroupLs(a) => {
            let key = format!("{}:{}", a.tenant.tenant, a.name);
            let p = client.get::<AppProfile>(&key).await?;
            if a.json {
                out::json(&p)
            } else {
                out::line(p.endpoint_groups.join(","))
            }
        }
        Cmd::Ls(o) => {
            let list = list_scoped::<AppProfile>(client, &o, |p| &p.tenant_name).await?;
            print_list(o.json, o.quiet, &list, |p| &p.app_profile_name, table)
        }
        Cmd::Rm(a) => {
            let key = format!("{}:{}", a.tenant.tenant, a.name);
            client.delete::<AppProfile>(&key).await?;
            Ok(())
        }
    }
}

async fn put(client: &Client, a: &ProfileArgs, path: &'static [&'static str]) -> Result<()> {
    let p = AppProfile {
        tenant_name: a.tenant.tenant.clone(),
        app_profile_name: a.name.clone(),
        endpoint_groups: a.group.clone(),
        ..Default::default()
    };
    check(&p, path, flag)?;
    client.put(&p).await?;
    Ok(())
}

fn table(list: &[AppProfile]) -> Table {
    let mut t = Table::new(&[
        ("Tenant", "------"),
        ("AppProfile", "----------"),
        ("Groups", "------"),
    ]);
    for p in list {
        t.row([
            p.tenant_name.clone(),
            p.app_profile_name.clone(),
            p.endpoint_groups.join(","),
        ]);
    }
    t
}
