//! `netctl aci-gw`: the ACI gateway's settings. info, inspect, set.

use crate::check::check;
use crate::error::{CtlError, Result};
use crate::out;
use clap::{Args, Subcommand};
use model::oper::AciGwOper;
use model::{AciGw, Client};

/// The key of the one aciGw object.
const ACI_GW: &str = "aciGw";

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show ACI gateway information
    #[command(after_help = "Example:\n  netctl aci-gw info")]
    Info(InfoArgs),
    /// Inspect ACI gateway operational information, as JSON
    #[command(after_help = "Example:\n  netctl aci-gw inspect")]
    Inspect,
    /// Set ACI gateway parameters; those not given keep their value
    #[command(after_help = "\
A new configuration enforces policies and does not include the common tenant unless told.

Example:
  netctl aci-gw set -d containerDom -n topology/pod-1/node-101 -p topology/pod-1/paths-101/pathep-[eth1/14]")]
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
    /// Blank, or comma-separated paths of the form topology/pod-1/paths-101/pathep-[eth1/14]
    #[arg(short, long)]
    pub path_bindings: Option<String>,
    /// Blank, or comma-separated nodes of the form topology/pod-1/node-101
    #[arg(short, long)]
    pub node_bindings: Option<String>,
    /// ACI physical domain name (e.g. containerDom)
    #[arg(short = 'd', long)]
    pub phys_dom: Option<String>,
    /// Should security policies be enforced (yes or no)
    #[arg(short, long)]
    pub enforce_policies: Option<String>,
    /// Should the gateway look up objects in the common tenant as well (yes or no)
    #[arg(short, long)]
    pub include_common_tenant: Option<String>,
}

impl SetArgs {
    fn is_empty(&self) -> bool {
        [
            &self.path_bindings,
            &self.node_bindings,
            &self.phys_dom,
            &self.enforce_policies,
            &self.include_common_tenant,
        ]
        .iter()
        .all(|v| v.is_none())
    }
}

fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "pathBindings" => "--path-bindings",
        "nodeBindings" => "--node-bindings",
        "physicalDomain" => "--phys-dom",
        "enforcePolicies" => "--enforce-policies",
        "includeCommonTenant" => "--include-common-tenant",
        _ => return None,
    })
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Info(a) => {
            let list = client.list::<AciGw>().await?;
            if a.json {
                out::json(&list)
            } else {
                out::print(&list.iter().map(info).collect::<String>())
            }
        }
        Cmd::Inspect => out::inspect::<AciGw, AciGwOper>(client, ACI_GW).await,
        Cmd::Set(a) => {
            if a.is_empty() {
                return Err(CtlError::usage(
                    &["aci-gw", "set"],
                    "nothing to set: give at least one of --path-bindings, --node-bindings, --phys-dom, --enforce-policies, --include-common-tenant",
                ));
            }
            let mut gw = match client.get::<AciGw>(ACI_GW).await {
                Ok(gw) => gw,
                Err(e) if e.is_not_found() => AciGw {
                    name: ACI_GW.into(),
                    ..Default::default()
                },
                Err(e) => return Err(e.into()),
            };
            for (value, field) in [
                (a.path_bindings, &mut gw.path_bindings),
                (a.node_bindings, &mut gw.node_bindings),
                (a.phys_dom, &mut gw.physical_domain),
                (a.enforce_policies, &mut gw.enforce_policies),
                (a.include_common_tenant, &mut gw.include_common_tenant),
            ] {
                if let Some(v) = value {
                    *field = v;
                }
            }
            check(&gw, &["aci-gw", "set"], flag)?;
            client.put(&gw).await?;
            Ok(())
        }
    }
}

fn info(gw: &AciGw) -> String {
    crate::table::labeled(&[
        ("Path bindings", &gw.path_bindings),
        ("Node bindings", &gw.node_bindings),
        ("Physical domain", &gw.physical_domain),
        ("Enforce policies", &gw.enforce_policies),
        ("Include Common-Tenant", &gw.include_common_tenant),
    ])
}
