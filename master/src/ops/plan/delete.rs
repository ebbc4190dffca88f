//! The delete planner: what each kind's delete releases, and the objects that still use it.

use super::list_some;
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::ops::Plan;
use crate::state::State;
use model::*;

pub(in crate::ops) fn plan_delete(s: &State, kind: Kind, key: &str) -> ApiResult<Plan> {
    let missing = || ApiError::not_found(format!("{} {key} not found", kind.name()));
    let in_use = |what: &str, users: Vec<String>| -> ApiResult<()> {
        if users.is_empty() {
            Ok(())
        } else {
            Err(ApiError::conflict(format!(
                "{} {key} is in use by {what} {}; delete or detach them first",
                kind.name(),
                list_some(users)
            )))
        }
    };
    let in_tenant = |k: &str| k.split(':').next() == Some(key);
    let mut p = Plan::default();
    match kind {
        Kind::Tenant => {
            s.tenants.get(key).ok_or_else(missing)?;
            in_use(
                "networks",
                s.networks
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
            in_use(
                "endpoint groups",
                s.groups.keys().filter(|k| in_tenant(k)).cloned().collect(),
            )?;
            in_use(
                "policies",
                s.policies
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
            in_use(
                "netprofiles",
                s.netprofiles
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
            in_use(
                "app profiles",
                s.app_profiles
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
            in_use(
                "services",
                s.services
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
            in_use(
                "external contracts groups",
                s.ext_contracts
                    .keys()
                    .filter(|k| in_tenant(k))
                    .cloned()
                    .collect(),
            )?;
        }
        Kind::Network => {
            let n = s.networks.get(key).ok_or_else(missing)?;
            let mine = |t: &str, net: &str| format!("{t}:{net}") == key;
            in_use(
                "endpoint groups",
                s.groups
                    .iter()
                    .filter(|(_, g)| mine(&g.cfg.tenant_name, &g.cfg.network_name))
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
            in_use(
                "services",
                s.services
                    .iter()
                    .filter(|(_, v)| mine(&v.cfg.tenant_name, &v.cfg.network_name))
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
            in_use("endpoints", n.endpoints.iter().cloned().collect())?;
            if n.cfg.encap == "vlan" {
                p.release(keys::tag("vlan", n.st.pkt_tag));
            } else {
                p.release(keys::tag("vxlan", n.st.ext_pkt_tag));
                p.release(keys::tag("lvlan", n.st.pkt_tag));
            }
        }
        Kind::EndpointGroup => {
            let g = s.groups.get(key).ok_or_else(missing)?;
            let name = &g.cfg.group_name;
            in_use(
                "app profiles",
                s.app_profiles
                    .iter()
                    .filter(|(_, a)| {
                        a.tenant_name == g.cfg.tenant_name && a.endpoint_groups.contains(name)
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
            in_use("endpoints", g.endpoints.iter().cloned().collect())?;
            p.release(keys::tag("gid", g.st.group_id));
        }
        Kind::Policy => {
            let pol = s.policies.get(key).ok_or_else(missing)?;
            in_use(
                "endpoint groups",
                s.groups
                    .iter()
                    .filter(|(_, g)| {
                        g.cfg.tenant_name == pol.tenant_name
                            && g.cfg.policies.contains(&pol.policy_name)
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
            let prefix = format!("{key}:");
            for rk in s.rules.keys().filter(|k| k.starts_with(&prefix)) {
                p.delete(keys::obj(Kind::Rule, rk));
            }
        }
        Kind::Rule => {
            s.rules.get(key).ok_or_else(missing)?;
        }
        Kind::Netprofile => {
            let np = s.netprofiles.get(key).ok_or_else(missing)?;
            in_use(
                "endpoint groups",
                s.groups
                    .iter()
                    .filter(|(_, g)| {
                        g.cfg.tenant_name == np.tenant_name && g.cfg.net_profile == np.profile_name
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
        }
        Kind::Global => {
            if key != "global" {
                return Err(missing());
            }
            in_use("networks", s.networks.keys().cloned().collect())?;
            // Deleting the global config puts the defaults back, as a fresh cluster has them.
            p.put_object(&Global::defaults(), None);
            return Ok(p);
        }
        Kind::Bgp => {
            s.bgps.get(key).ok_or_else(missing)?;
        }
        Kind::ServiceLb => {
            let svc = s.services.get(key).ok_or_else(missing)?;
            let net_key = format!("{}:{}", svc.cfg.tenant_name, svc.cfg.network_name);
            p.release(keys::ip(&net_key, &svc.vip.to_string()));
        }
        Kind::AppProfile => {
            s.app_profiles.get(key).ok_or_else(missing)?;
        }
        Kind::ExtContractsGroup => {
            let c = s.ext_contracts.get(key).ok_or_else(missing)?;
            in_use(
                "endpoint groups",
                s.groups
                    .iter()
                    .filter(|(_, g)| {
                        g.cfg.tenant_name == c.tenant_name
                            && g.cfg.ext_contracts_grps.contains(&c.contracts_group_name)
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
            )?;
        }
        Kind::AciGw => {
            if s.aci_gw.is_none() || key != "aciGw" {
                return Err(missing());
            }
            in_use("app profiles", s.app_profiles.keys().cloned().collect())?;
        }
    }
    p.delete(keys::obj(kind, key));
    Ok(p)
}
