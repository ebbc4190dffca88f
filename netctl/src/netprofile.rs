//! `netctl netprofile`: network profiles (bandwidth, burst, DSCP). create, inspect, ls, rm.

use crate::check::check;
use crate::cli::{ListOpts, TenantOpt, list_scoped, print_list};
use crate::error::Result;
use crate::out::{self, NoOper};
use crate::table::Table;
use clap::{Args, Subcommand};
use model::{Client, Netprofile};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a network profile, or update one (its groups get the new values)
    #[command(after_help = "\
Examples:
  netctl netprofile create -t blue -b 10mbps -s 100 -d 6 slow
  netctl netprofile create -b '100 kbps' trickle
  netctl netprofile create -d 46 voice")]
    Create(CreateArgs),
    /// Inspect a network profile, as JSON
    #[command(after_help = "Example:\n  netctl netprofile inspect -t blue slow")]
    Inspect(NameArgs),
    /// List network profiles
    #[command(
        name = "ls",
        visible_alias = "list",
        after_help = "Examples:\n  netctl netprofile ls -t blue\n  netctl netprofile ls -a -j"
    )]
    Ls(ListOpts),
    /// Delete a network profile (no group may use it)
    #[command(
        name = "rm",
        visible_alias = "delete",
        after_help = "Example:\n  netctl netprofile rm -t blue slow"
    )]
    Rm(NameArgs),
}

#[derive(Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Name of the network profile
    #[arg(value_name = "NETPROFILE")]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Bandwidth (e.g. 10 kbps, 100 mbps, 1gbps)
    #[arg(short, long)]
    pub bandwidth: Option<String>,
    /// DSCP mark, 0 to 63
    #[arg(short, long, default_value_t = 0)]
    pub dscp: i64,
    /// Burst size in kilobytes (needs a bandwidth)
    #[arg(short = 's', long, default_value_t = 0)]
    pub burst: i64,
    /// Name of the network profile
    #[arg(value_name = "NETPROFILE")]
    pub name: String,
}

fn flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "tenantName" => "--tenant",
        "profileName" => "<NETPROFILE>",
        "bandwidth" => "--bandwidth",
        "DSCP" => "--dscp",
        "burst" => "--burst",
        _ => return None,
    })
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Create(a) => {
            let tenant = a.tenant.tenant;
            let p = Netprofile {
                tenant_name: tenant.clone(),
                profile_name: a.name.clone(),
                bandwidth: a.bandwidth.unwrap_or_default(),
                dscp: a.dscp,
                burst: a.burst,
                ..Default::default()
            };
            check(&p, &["netprofile", "create"], flag)?;
            client.put(&p).await?;
            out::line(format!("Creating netprofile {tenant}:{}", a.name))
        }
        Cmd::Inspect(a) => {
            let key = format!("{}:{}", a.tenant.tenant, a.name);
            out::inspect::<Netprofile, NoOper>(client, &key).await
        }
        Cmd::Ls(o) => {
            let list = list_scoped::<Netprofile>(client, &o, |p| &p.tenant_name).await?;
            print_list(o.json, o.quiet, &list, |p| &p.profile_name, table)
        }
        Cmd::Rm(a) => {
            let key = format!("{}:{}", a.tenant.tenant, a.name);
            client.delete::<Netprofile>(&key).await?;
            Ok(())
        }
    }
}

fn table(list: &[Netprofile]) -> Table {
    let mut t = Table::new(&[
        ("Name", "------"),
        ("Tenant", "------"),
        ("Bandwidth", "---------"),
        ("DSCP", "--------"),
        ("burst size", "----------"),
    ]);
    for p in list {
        if p.bandwidth.is_empty() {
            // Contiv left the burst out when there is no bandwidth (it needs one).
            t.row([
                p.profile_name.clone(),
                p.tenant_name.clone(),
                String::new(),
                p.dscp.to_string(),
            ]);
        } else {
            t.row([
                p.profile_name.clone(),
                p.tenant_name.clone(),
                bandwidth(&p.bandwidth),
                p.dscp.to_string(),
                p.burst.to_string(),
            ]);
        }
    }
    t
}

/// Contiv's rendering of a bandwidth: its number and `Gbps`, `Mbps` or `Kbps`.
fn bandwidth(bw: &str) -> String {
    let digits: String = bw
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let unit = if bw.contains(['g', 'G']) {
        "Gbps"
    } else if bw.contains(['m', 'M']) {
        "Mbps"
    } else if bw.contains(['k', 'K']) {
        "Kbps"
    } else {
        ""
    };
    format!("{digits}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_as_contiv() {
        assert_eq!(bandwidth("10mbps"), "10Mbps");
        assert_eq!(bandwidth("100 kbps"), "100Kbps");
        assert_eq!(bandwidth("1gbps"), "1Gbps");
        assert_eq!(bandwidth("18Mb"), "18Mbps");
        assert_eq!(bandwidth("5 K"), "5Kbps");
    }

    #[test]
    fn netprofile_table_as_contiv() {
        let slow = Netprofile {
            profile_name: "slow".into(),
            tenant_name: "blue".into(),
            bandwidth: "10mbps".into(),
            dscp: 6,
            burst: 100,
            ..Default::default()
        };
        let voice = Netprofile {
            profile_name: "voice".into(),
            tenant_name: "blue".into(),
            dscp: 46,
            ..Default::default()
        };
        assert_eq!(
            table(&[slow, voice]).render(),
            "\
Name    Tenant  Bandwidth  DSCP      burst size
------  ------  ---------  --------  ----------
slow    blue    10Mbps     6         100
voice   blue               46
"
        );
    }
}
