//! `netctl policy`: policies and their rules. create, inspect, ls, rm, rule-add, rule-ls,
//! rule-rm.

use crate::check::check;
use crate::cli::{ListOpts, TenantOpt, list_scoped, print_list};
use crate::error::CtlError;
use crate::error::Result;
use crate::out;
use crate::table::Table;
use clap::{Args, Subcommand};
use model::oper::{PolicyOper, RuleStatsOper};
use model::{Client, Policy, Rule, Tenant};
use std::collections::BTreeMap;

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a new policy
    #[command(after_help = "Example:\n  netctl policy create -t blue web")]
    Create(NameArgs),
    /// Inspect a policy, as JSON
    #[command(after_help = "Example:\n  netctl policy inspect -t blue web")]
    Inspect(NameArgs),
    /// List policies
    #[command(
        name = "ls",
        visible_alias = "list",
        after_help = "Examples:\n  netctl policy ls -t blue\n  netctl policy ls -a"
    )]
    Ls(ListOpts),
    /// Delete a policy and its rules (it must not be attached to a group)
    #[command(
        name = "rm",
        visible_alias = "delete",
        after_help = "Example:\n  netctl policy rm -t blue web"
    )]
    Rm(NameArgs),
    /// Add a new rule to the policy
    #[command(
        name = "rule-add",
        after_help = "\
An incoming rule (-d in) matches traffic into the groups the policy is attached to, by its
source (--from-group, --from-network or --from-ip-address); an outgoing rule (-d out) matches
traffic out of them, by its destination (--to-*). Among matching rules, the highest priority
wins.

Examples:
  netctl policy rule-add -t blue web 1 --direction in --protocol tcp --action deny --priority 1
  netctl policy rule-add -t blue web 2 -d in -l tcp -P 8000 -j allow -p 100
  netctl policy rule-add web 3 -d in -g frontend -l tcp -P 443
  netctl policy rule-add web 4 -d out -s 10.0.0.0/8 -l udp -P 53"
    )]
    RuleAdd(Box<RuleAddArgs>),
    /// List the rules of a policy, by priority
    #[command(
        name = "rule-ls",
        after_help = "\
With --counts, each table gets two more columns: the packets and bytes the rule's flows matched,
summed over every host (new connections only: replies and established connections pass without
meeting the rules). The default output keeps Contiv's columns.

Examples:
  netctl policy rule-ls -t blue web
  netctl policy rule-ls -j web
  netctl policy rule-ls --counts web"
    )]
    RuleLs(RuleLsArgs),
    /// Delete a rule from the policy
    #[command(
        name = "rule-rm",
        after_help = "Example:\n  netctl policy rule-rm -t blue web 2"
    )]
    RuleRm(RuleArgs),
}

#[derive(Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Name of the policy
    #[arg(value_name = "POLICY")]
    pub policy: String,
}

#[derive(Args, Debug)]
pub struct RuleArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Name of the policy
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// Rule id, unique in the policy
    #[arg(value_name = "RULE_ID")]
    pub rule_id: String,
}

#[derive(Args, Debug)]
pub struct RuleLsArgs {
    #[command(flatten)]
    pub tenant: TenantOpt,
    /// Print the rules as JSON
    #[arg(short, long)]
    pub json: bool,
    /// Print only the rule ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Add the packets and bytes each rule matched (from the hosts' flow counters)
    #[arg(short, long)]
    pub counts: bool,
    /// Name of the policy
    #[arg(value_name = "POLICY")]
    pub policy: String,
}

#[derive(Args, Debug)]
pub struct RuleAddArgs {
    #[command(flatten)]
    pub rule: RuleArgs,
    /// Priority, 1 (lowest) to 100
    #[arg(short, long, default_value_t = 1)]
    pub priority: i64,
    /// Direction of traffic (in or out)
    #[arg(short, long, default_value = "in")]
    pub direction: String,
    /// From endpoint group (incoming rules only)
    #[arg(short = 'g', long)]
    pub from_group: Option<String>,
    /// To endpoint group (outgoing rules only)
    #[arg(short = 'e', long)]
    pub to_group: Option<String>,
    /// From network (incoming rules only)
    #[arg(short = 'n', long)]
    pub from_network: Option<String>,
    /// To network (outgoing rules only)
    #[arg(short = 'o', long)]
    pub to_network: Option<String>,
    /// From IP address or CIDR, IPv4 or IPv6 (incoming rules only)
    #[arg(short = 'i', long)]
    pub from_ip_address: Option<String>,
    /// To IP address or CIDR, IPv4 or IPv6
    #[arg(short = 's', long)]
    pub to_ip_address: Option<String>,
    /// Protocol (tcp, udp, icmp: ICMP of both IP versions, icmp6: ICMPv6 only, or an IP protocol
    /// number); any when not given
    #[arg(short = 'l', long)]
    pub protocol: Option<String>,
    /// Port (tcp and udp only); any when 0
    #[arg(short = 'P', long, default_value_t = 0)]
    pub port: i64,
    /// Action to take (allow or deny)
    #[arg(short = 'j', long, default_value = "allow")]
    pub action: String,
}

const RULE_ADD: &[&str] = &["policy", "rule-add"];

fn rule_flag(field: &str) -> Option<&'static str> {
    Some(match field {
        "tenantName" => "--tenant",
        "policyName" => "<POLICY>",
        "ruleId" => "<RULE_ID>",
        "priority" => "--priority",
        "direction" => "--direction",
        "fromEndpointGroup" => "--from-group",
        "toEndpointGroup" => "--to-group",
        "fromNetwork" => "--from-network",
        "toNetwork" => "--to-network",
        "fromIpAddress" => "--from-ip-address",
        "toIpAddress" => "--to-ip-address",
        "protocol" => "--protocol",
        "port" => "--port",
        "action" => "--action",
        _ => return None,
    })
}

pub async fn run(cmd: Cmd, client: &Client) -> Result<()> {
    match cmd {
        Cmd::Create(a) => {
            let tenant = a.tenant.tenant;
            let p = Policy {
                tenant_name: tenant.clone(),
                policy_name: a.policy.clone(),
                ..Default::default()
            };
            check(&p, &["policy", "create"], |f| match f {
                "tenantName" => Some("--tenant"),
                "policyName" => Some("<POLICY>"),
                _ => None,
            })?;
            client.put(&p).await?;
            out::line(format!("Creating policy {tenant}:{}", a.policy))
        }
        Cmd::Inspect(a) => {
            let key = format!("{}:{}", a.tenant.tenant, a.policy);
            out::inspect::<Policy, PolicyOper>(client, &key).await
        }
        Cmd::Ls(o) => {
            let list = list_scoped::<Policy>(client, &o, |p| &p.tenant_name).await?;
            print_list(
                o.json,
                o.quiet,
                &list,
                |p| &p.policy_name,
                |list| {
                    let mut t = Table::new(&[("Tenant", "------"), ("Policy", "------")]);
                    for p in list {
                        t.row([&p.tenant_name, &p.policy_name]);
                    }
                    t
                },
            )
        }
        Cmd::Rm(a) => {
            out::line(format!("Deleting policy {}:{}", a.tenant.tenant, a.policy))?;
            let key = format!("{}:{}", a.tenant.tenant, a.policy);
            client.delete::<Policy>(&key).await?;
            Ok(())
        }
        Cmd::RuleAdd(a) => {
            let rule = Rule {
                tenant_name: a.rule.tenant.tenant,
                policy_name: a.rule.policy,
                rule_id: a.rule.rule_id,
                priority: a.priority,
                direction: a.direction,
                from_endpoint_group: a.from_group.unwrap_or_default(),
                to_endpoint_group: a.to_group.unwrap_or_default(),
                from_network: a.from_network.unwrap_or_default(),
                to_network: a.to_network.unwrap_or_default(),
                from_ip_address: a.from_ip_address.unwrap_or_default(),
                to_ip_address: a.to_ip_address.unwrap_or_default(),
                protocol: a.protocol.unwrap_or_default(),
                port: a.port,
                action: a.action,
                ..Default::default()
            };
            check(&rule, RULE_ADD, rule_flag)?;
            client.put(&rule).await?;
            Ok(())
        }
        Cmd::RuleLs(a) => {
            let tenant = a.tenant.tenant;
            client.get::<Tenant>(&tenant).await?;
            let key = format!("{tenant}:{}", a.policy);
            client.get::<Policy>(&key).await?;
            let mut rules: Vec<Rule> = client
                .list::<Rule>()
                .await?
                .into_iter()
                .filter(|r| r.tenant_name == tenant && r.policy_name == a.policy)
                .collect();
            rules.sort_by_key(|r| r.priority);
            if a.json {
                out::json(&rules)
            } else if a.quiet {
                let ids: String = rules.iter().map(|r| format!("{}\n", r.rule_id)).collect();
                out::print(&ids)
            } else if a.counts {
                let raw = client.inspect::<Policy>(&key).await?;
                let stats: Vec<RuleStatsOper> = match raw.pointer("/Oper/ruleStats") {
                    Some(v) => serde_json::from_value(v.clone())
                        .map_err(|e| CtlError::Decode(e.to_string()))?,
                    None => Vec::new(),
                };
                let by_id = stats.into_iter().map(|r| (r.rule_id.clone(), r)).collect();
                out::print(&rule_tables(&rules, Some(&by_id)))
            } else {
                out::print(&rule_tables(&rules, None))
            }
        }
        Cmd::RuleRm(a) => {
            let key = format!("{}:{}:{}", a.tenant.tenant, a.policy, a.rule_id);
            client.delete::<Rule>(&key).await?;
            Ok(())
        }
    }
}

/// The columns `--counts` adds at the end of both tables (after Contiv's, so that a script
/// reading Contiv's columns by position still finds them).
const COUNT_COLUMNS: [(&str, &str); 2] = [("Packets", "-------"), ("Bytes", "-----")];

/// Contiv's two tables: incoming rules, then outgoing rules; with `counts` (rule id -> counters),
/// each rule's packets and bytes too.
fn rule_tables(rules: &[Rule], counts: Option<&BTreeMap<String, RuleStatsOper>>) -> String {
    let with_counts = |mut cols: Vec<(&'static str, &'static str)>| {
        if counts.is_some() {
            cols.extend(COUNT_COLUMNS);
        }
        Table::new(&cols)
    };
    let mut incoming = with_counts(vec![
        ("Rule", "----"),
        ("Priority", "--------"),
        ("From EndpointGroup", "------------------"),
        ("From Network", "------------"),
        ("From IpAddress", "---------"),
        ("To IpAddress", "------------"),
        ("Protocol", "--------"),
        ("Port", "----"),
        ("Action", "------"),
    ]);
    let mut outgoing = with_counts(vec![
        ("Rule", "----"),
        ("Priority", "--------"),
        ("To EndpointGroup", "----------------"),
        ("To Network", "----------"),
        ("To IpAddress", "---------"),
        ("Protocol", "--------"),
        ("Port", "----"),
        ("Action", "------"),
    ]);
    for r in rules {
        let (table, peer) = match r.direction.as_str() {
            "in" => (
                &mut incoming,
                vec![
                    &r.from_endpoint_group,
                    &r.from_network,
                    &r.from_ip_address,
                    &r.to_ip_address,
                ],
            ),
            "out" => (
                &mut outgoing,
                vec![&r.to_endpoint_group, &r.to_network, &r.to_ip_address],
            ),
            _ => continue,
        };
        let mut row = vec![r.rule_id.clone(), r.priority.to_string()];
        row.extend(peer.into_iter().cloned());
        row.extend([r.protocol.clone(), r.port.to_string(), r.action.clone()]);
        if let Some(c) = counts {
            let s = c.get(&r.rule_id);
            row.push(s.map_or(0, |s| s.packets).to_string());
            row.push(s.map_or(0, |s| s.bytes).to_string());
        }
        table.row(row);
    }
    format!(
        "Incoming Rules:\n{}Outgoing Rules:\n{}",
        incoming.render(),
        outgoing.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, dir: &str, prio: i64, proto: &str, port: i64, action: &str) -> Rule {
        Rule {
            rule_id: id.into(),
            direction: dir.into(),
            priority: prio,
            protocol: proto.into(),
            port,
            action: action.into(),
            ..Default::default()
        }
    }

    #[test]
    fn rule_tables_as_contiv() {
        let mut out = rule("3", "out", 5, "udp", 53, "allow");
        out.to_ip_address = "10.0.0.0/8".into();
        let rules = [
            rule("1", "in", 1, "tcp", 0, "deny"),
            rule("2", "in", 100, "tcp", 8000, "allow"),
            out,
        ];
        assert_eq!(
            rule_tables(&rules, None),
            "\
Incoming Rules:
Rule  Priority  From EndpointGroup  From Network  From IpAddress  To IpAddress  Protocol  Port  Action
----  --------  ------------------  ------------  ---------       ------------  --------  ----  ------
1     1                                                                         tcp       0     deny
2     100                                                                       tcp       8000  allow
Outgoing Rules:
Rule  Priority  To EndpointGroup  To Network  To IpAddress  Protocol  Port  Action
----  --------  ----------------  ----------  ---------     --------  ----  ------
3     5                                       10.0.0.0/8    udp       53    allow
"
        );
    }

    #[test]
    fn rule_tables_with_counts_add_columns_at_the_end() {
        let rules = [
            rule("1", "in", 1, "tcp", 0, "deny"),
            rule("2", "in", 100, "tcp", 8000, "allow"),
            rule("3", "out", 5, "udp", 53, "allow"),
        ];
        let counts = BTreeMap::from([(
            "1".to_string(),
            RuleStatsOper {
                rule_id: "1".into(),
                packets: 12,
                bytes: 720,
                ..Default::default()
            },
        )]);
        assert_eq!(
            rule_tables(&rules, Some(&counts)),
            "\
Incoming Rules:
Rule  Priority  From EndpointGroup  From Network  From IpAddress  To IpAddress  Protocol  Port  Action  Packets  Bytes
----  --------  ------------------  ------------  ---------       ------------  --------  ----  ------  -------  -----
1     1                                                                         tcp       0     deny    12       720
2     100                                                                       tcp       8000  allow   0        0
Outgoing Rules:
Rule  Priority  To EndpointGroup  To Network  To IpAddress  Protocol  Port  Action  Packets  Bytes
----  --------  ----------------  ----------  ---------     --------  ----  ------  -------  -----
3     5                                                     udp       53    allow   0        0
"
        );
    }

    #[test]
    fn bad_rule_names_the_flag() {
        let r = Rule {
            tenant_name: "default".into(),
            policy_name: "web".into(),
            rule_id: "1".into(),
            direction: "in".into(),
            action: "allow".into(),
            to_endpoint_group: "db".into(),
            ..Default::default()
        };
        let e = check(&r, RULE_ADD, rule_flag).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid value 'db' for '--to-group': is not allowed on an 'in' rule"),
            "{e}"
        );
    }
}
