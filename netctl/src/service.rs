//! `netctl service`: service load balancers. create, inspect, ls, rm.

use crate::check::check;
use crate::cli::{ListOpts, TenantOpt, list_scoped, print_list};
use crate::error::Result;
use crate::out;
use crate::table::{Table, go_list};
use clap::{Args, Subcommand};
use model::oper::ServiceLbOper;
use model::{Client, ServiceLb};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a service object
    #[command(after_help = "\
Example:
  netctl service create -s contiv-net -l app=web -l tier=fe -p 80:8080:TCP --ip 10.1.2.100 websvc")]
    Create(CreateArgs),
    /// Inspect a service: its VIP and providers, as JSON
    #[command(after_help = "Example:\n  netctl service inspect websvc")]
    Inspect(NameArgs),
    /// List service objects
    #[command(
        name = "ls",
        visible_alias = "list",
        after_help = "Examples:\n  netctl service ls\n  netctl service ls -a -q"
    )]
    Ls(ListOpts),
    /// Delete a service object
    #[command(
        name = "rm",
        visible_alias = "delete",
        after_help = "Example:\n  netctl service rm websvc"
    )]
    Rm(NameArgs),
}

#[derive(Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Name of the service
    #[arg(value_name = "SERVICE")]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Service network name
    #[arg(short = 's', long)]
    pub network: Option<String>,
    /// Selector key=value of the providers (repeat for several)
    #[arg(short = 'l', long)]
    pub selector: Vec<String>,
    /// svcPort:provPort:protocol (repeat for several)
    #[arg(short, long)]
    pub port: Vec<String>,
    /// Preferred service address
    #[arg(long = "preferred-ip", visible_alias = "ip")]
    pub preferred_ip: Option<String>,
    /// Name of the service
    #[arg(value_name = "SERVICE")]
    pub name: String,
}

fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "tenantName" => "--tenant",
        "serviceName" => "<SERVICE>",
        "networkName" => "--network",
        "ipAddress" => "--preferred-ip",
        "selectors" => "--selector",
        "ports" => "--port",
        _ => return None,
    })
}

/// Contiv took an empty `-t ""` as the default tenant for services.
fn tenant(t: &TenantOpt) -> &str {
    if t.tenant.is_empty() {
        "default"
    } else {
        &t.tenant
    }
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Create(a) => {
            let tenant = tenant(&a.tenant).to_string();
            let s = ServiceLb {
                tenant_name: tenant.clone(),
                service_name: a.name.clone(),
                network_name: a.network.unwrap_or_default(),
                ip_address: a.preferred_ip.unwrap_or_default(),
                selectors: a.selector,
                ports: a.port,
                ..Default::default()
            };
            check(&s, &["service", "create"], flag)?;
            client.put(&s).await?;
            out::line(format!("Creating ServiceLB {tenant}:{}", a.name))
        }
        Cmd::Inspect(a) => {
            let key = format!("{}:{}", tenant(&a.tenant), a.name);
            out::inspect::<ServiceLb, ServiceLbOper>(client, &key).await
        }
        Cmd::Ls(mut o) => {
            o.tenant.tenant = tenant(&o.tenant).to_string();
            let list = list_scoped::<ServiceLb>(client, &o, |s| &s.tenant_name).await?;
            print_list(o.json, o.quiet, &list, |s| &s.service_name, table)
        }
        Cmd::Rm(a) => {
            let tenant = tenant(&a.tenant);
            out::line(format!("Deleting Service  {},{}", a.name, tenant))?;
            client
                .delete::<ServiceLb>(&format!("{tenant}:{}", a.name))
                .await?;
            Ok(())
        }
    }
}

fn table(list: &[ServiceLb]) -> Table {
    let mut t = Table::new(&[
        ("ServiceName", "---------"),
        ("Tenant", "--------"),
        ("Network", "-------"),
        ("Selectors", "-------"),
    ]);
    for s in list {
        t.row([
            s.service_name.clone(),
            s.tenant_name.clone(),
            s.network_name.clone(),
            go_list(&s.selectors),
        ]);
    }
    t
}
