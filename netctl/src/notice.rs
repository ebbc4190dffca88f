//! Warnings, on stderr, where a command stores something the datapath does not use yet
//! (docs/compat.md, "Accepted, no effect yet"). stdout stays as Contiv printed it, so scripts
//! that parse it see no change. A write command's warning comes from its command line; an
//! inspect's from the `notice` netmaster puts in its `Oper` ([`crate::out::inspect`]).

use crate::cli::Family;
use crate::{aci_gw, app_profile, bgp, ext_contracts, global, group, network, service};
use std::io::Write;

const BGP: &str = "BGP peering is not implemented yet: the object is stored but no BGP session is made (docs/compat.md)";
const SERVICE: &str = "service load balancing is not implemented yet: the VIP is allocated but traffic to it is not sent to the providers (docs/compat.md)";
const ACI: &str = "ACI is not implemented: the object is stored but has no effect (docs/compat.md)";
const EXT_CONTRACTS: &str =
    "ACI is not implemented: the group's external contracts have no effect (docs/compat.md)";
const ROUTING: &str = "forwarding mode routing is not implemented yet: networks are still bridged over VXLAN (docs/compat.md)";
const FABRIC_ACI: &str =
    "fabric mode ACI is not implemented: it is stored but has no effect (docs/compat.md)";
const VLAN: &str = "VLAN networks do not span hosts yet: pods of this network on different hosts cannot reach each other (docs/compat.md)";
const INFRA: &str =
    "network type infra has no effect yet: the network behaves as a data network (docs/compat.md)";

/// The warnings a successful run of `cmd` calls for.
pub fn of_command(cmd: &Family) -> Vec<&'static str> {
    let mut w = Vec::new();
    match cmd {
        Family::Bgp(bgp::Cmd::Create(_)) => w.push(BGP),
        Family::Service(service::Cmd::Create(_)) => w.push(SERVICE),
        Family::AciGw(aci_gw::Cmd::Set(_))
        | Family::AppProfile(app_profile::Cmd::Create(_) | app_profile::Cmd::Update(_))
        | Family::ExternalContracts(ext_contracts::Cmd::Create(_)) => w.push(ACI),
        Family::Group(group::Cmd::Create(a)) if !a.external_contract.is_empty() => {
            w.push(EXT_CONTRACTS)
        }
        Family::Global(global::Cmd::Set(a)) => {
            if a.fwd_mode.as_deref() == Some("routing") {
                w.push(ROUTING);
            }
            if a.fabric_mode
                .as_deref()
                .is_some_and(|m| m.starts_with("aci"))
            {
                w.push(FABRIC_ACI);
            }
        }
        Family::Network(network::Cmd::Create(a)) => {
            if a.encap == "vlan" {
                w.push(VLAN);
            }
            if a.nw_type == "infra" {
                w.push(INFRA);
            }
        }
        _ => {}
    }
    w
}

/// Writes `warning: <text>` on stderr. A closed stderr is no reason to fail a command that
/// worked.
pub fn warn(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "warning: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn warnings(args: &[&str]) -> Vec<&'static str> {
        of_command(&crate::cli::Cli::try_parse_from(args).unwrap().command)
    }

    #[test]
    fn only_what_has_no_effect_warns() {
        assert_eq!(
            warnings(&["netctl", "global", "set", "--fwd-mode", "routing"]),
            [ROUTING]
        );
        assert!(warnings(&["netctl", "global", "set", "--fwd-mode", "bridge"]).is_empty());
        assert!(warnings(&["netctl", "global", "set", "--arp-mode", "flood"]).is_empty());
        assert_eq!(
            warnings(&[
                "netctl",
                "net",
                "create",
                "-e",
                "vlan",
                "-n",
                "infra",
                "-s",
                "10.1.1.0/24",
                "n"
            ]),
            [VLAN, INFRA]
        );
        assert!(warnings(&["netctl", "net", "create", "-s", "10.1.1.0/24", "n"]).is_empty());
        assert!(warnings(&["netctl", "group", "create", "n", "g"]).is_empty());
        assert_eq!(
            warnings(&["netctl", "group", "create", "-e", "ext", "n", "g"]),
            [EXT_CONTRACTS]
        );
        assert!(warnings(&["netctl", "bgp", "ls"]).is_empty());
    }
}
