//! The per-kind planners: pure functions of the state and an object (or a kind and key, for
//! deletes) to the writes that make the change, `None` when nothing changes, or the rule the
//! change breaks. The master runs them under the write gate and commits what they return.
//!
//! This file has the planners that check references and write the object as given; `network`
//! the ones that allocate (tags, group ids, service addresses); `delete` the delete guards.

mod delete;
mod network;
#[cfg(test)]
mod tests;

use super::{Plan, stored_config};
use crate::error::{ApiError, ApiResult};
use crate::state::State;
use model::*;
use serde::Serialize;
use serde_json::Value;

pub(in crate::ops) use delete::plan_delete;
pub(in crate::ops) use network::{check_node_vtep, plan_group, plan_network, plan_service};

pub(super) fn same_config<T: Object>(a: &T, b: &T) -> bool {
    stored_config(a) == stored_config(b)
}

/// The JSON fields that differ between two configs, for "cannot change" messages.
pub(super) fn changed_fields<T: Object>(old: &T, new: &T) -> String {
    let (a, b) = (stored_config(old), stored_config(new));
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let mut names: Vec<&str> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| k.as_str())
        .collect();
    names.sort();
    names.dedup();
    names.join(", ")
}

pub(super) fn list_some(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.len() > 5 {
        format!("{} and {} more", v[..5].join(", "), v.len() - 5)
    } else {
        v.join(", ")
    }
}

pub(super) fn need_tenant(s: &State, t: &str) -> ApiResult<()> {
    if s.tenants.contains_key(t) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "tenantName '{t}': tenant does not exist; create it first (netctl tenant create {t})"
        )))
    }
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serializable")
}

pub(in crate::ops) fn plan_tenant(s: &State, t: &Tenant) -> ApiResult<Option<Plan>> {
    if let Some(old) = s.tenants.get(&t.key())
        && same_config(old, t)
    {
        return Ok(None);
    }
    let mut p = Plan::default();
    p.put_object(t, None);
    Ok(Some(p))
}

pub(in crate::ops) fn plan_policy(s: &State, pol: &Policy) -> ApiResult<Option<Plan>> {
    need_tenant(s, &pol.tenant_name)?;
    if s.policies.contains_key(&pol.key()) {
        return Ok(None);
    }
    let mut p = Plan::default();
    p.put_object(pol, None);
    Ok(Some(p))
}

pub(in crate::ops) fn plan_rule(s: &State, r: &Rule) -> ApiResult<Option<Plan>> {
    let key = r.key();
    if let Some(old) = s.rules.get(&key) {
        if same_config(old, r) {
            return Ok(None);
        }
        return Err(ApiError::conflict(format!(
            "rule {key} cannot be changed ({} differ); remove it and add it again (netctl policy rule-rm, rule-add)",
            changed_fields(old, r)
        )));
    }
    need_tenant(s, &r.tenant_name)?;
    let pk = format!("{}:{}", r.tenant_name, r.policy_name);
    if !s.policies.contains_key(&pk) {
        return Err(ApiError::bad_request(format!(
            "policyName '{}': policy {pk} does not exist",
            r.policy_name
        )));
    }
    for (field, g) in [
        ("fromEndpointGroup", &r.from_endpoint_group),
        ("toEndpointGroup", &r.to_endpoint_group),
    ] {
        if !g.is_empty() && !s.groups.contains_key(&format!("{}:{g}", r.tenant_name)) {
            return Err(ApiError::bad_request(format!(
                "{field} '{g}': endpoint group {}:{g} does not exist",
                r.tenant_name
            )));
        }
    }
    for (field, n) in [
        ("fromNetwork", &r.from_network),
        ("toNetwork", &r.to_network),
    ] {
        if !n.is_empty() && !s.networks.contains_key(&format!("{}:{n}", r.tenant_name)) {
            return Err(ApiError::bad_request(format!(
                "{field} '{n}': network {}:{n} does not exist",
                r.tenant_name
            )));
        }
    }
    let mut p = Plan::default();
    p.put_object(r, None);
    Ok(Some(p))
}

pub(in crate::ops) fn plan_netprofile(s: &State, n: &Netprofile) -> ApiResult<Option<Plan>> {
    need_tenant(s, &n.tenant_name)?;
    if let Some(old) = s.netprofiles.get(&n.key())
        && same_config(old, n)
    {
        return Ok(None);
    }
    // Groups refer to the profile by name: agents re-apply it when they see the new version.
    let mut p = Plan::default();
    p.put_object(n, None);
    Ok(Some(p))
}

pub(in crate::ops) fn plan_global(s: &State, g: &Global) -> ApiResult<Option<Plan>> {
    let old = &s.global;
    if same_config(old, g) {
        return Ok(None);
    }
    let nets = s.networks.len();
    if g.fwd_mode != old.fwd_mode {
        if nets > 0 {
            return Err(ApiError::conflict(format!(
                "fwdMode cannot change from {} to {} while {nets} networks exist; delete them first",
                old.fwd_mode, g.fwd_mode
            )));
        }
        if old.fwd_mode == "routing" && !s.bgps.is_empty() {
            return Err(ApiError::conflict(format!(
                "fwdMode cannot leave routing while BGP configs exist ({}); delete them first",
                list_some(s.bgps.keys().cloned())
            )));
        }
    }
    if g.pvt_subnet != old.pvt_subnet
        && let Ok(pvt) = g.pvt_subnet.parse::<ipnet::Ipv4Net>()
        && let Some(e) = s.networks.values().find(|e| {
            let n = &e.spec.net;
            pvt.contains(&n.network()) || n.contains(&pvt.network())
        })
    {
        return Err(ApiError::conflict(format!(
            "pvtSubnet '{}': overlaps the subnet {} of network {}; the private subnet must not overlap any network's subnet, and can change only while no network exists",
            g.pvt_subnet,
            e.spec.net,
            e.cfg.key()
        )));
    }
    if g.pvt_subnet != old.pvt_subnet && nets > 0 {
        return Err(ApiError::conflict(format!(
            "pvtSubnet cannot change while {nets} networks exist; delete them first"
        )));
    }
    let (vlo, vhi) = g.vlan_range();
    let (xlo, xhi) = g.vxlan_range();
    for e in s.networks.values() {
        if e.cfg.encap == "vlan" && (e.st.pkt_tag < vlo || e.st.pkt_tag > vhi) {
            return Err(ApiError::conflict(format!(
                "vlans '{}': VLAN {} is in use by network {}",
                g.vlans,
                e.st.pkt_tag,
                e.cfg.key()
            )));
        }
        if e.cfg.encap == "vxlan" && (e.st.ext_pkt_tag < xlo || e.st.ext_pkt_tag > xhi) {
            return Err(ApiError::conflict(format!(
                "vxlans '{}': VXLAN {} is in use by network {}",
                g.vxlans,
                e.st.ext_pkt_tag,
                e.cfg.key()
            )));
        }
    }
    let mut p = Plan::default();
    p.put_object(g, None);
    Ok(Some(p))
}

pub(in crate::ops) fn plan_bgp(s: &State, b: &Bgp) -> ApiResult<Option<Plan>> {
    if s.global.network_infra_type == "aci" {
        return Err(ApiError::conflict(
            "BGP cannot be configured when the fabric mode is aci (netctl global set --fabric-mode default)",
        ));
    }
    if let Some(old) = s.bgps.get(&b.key())
        && same_config(old, b)
    {
        return Ok(None);
    }
    let mut p = Plan::default();
    p.put_object(b, None);
    Ok(Some(p))
}

pub(in crate::ops) fn plan_app_profile(s: &State, a: &AppProfile) -> ApiResult<Option<Plan>> {
    need_tenant(s, &a.tenant_name)?;
    for g in &a.endpoint_groups {
        if !s.groups.contains_key(&format!("{}:{g}", a.tenant_name)) {
            return Err(ApiError::bad_request(format!(
                "endpointGroups '{g}': endpoint group {}:{g} does not exist",
                a.tenant_name
            )));
        }
    }
    if let Some(old) = s.app_profiles.get(&a.key())
        && same_config(old, a)
    {
        return Ok(None);
    }
    let mut p = Plan::default();
    p.put_object(a, None);
    Ok(Some(p))
}

pub(in crate::ops) fn plan_ext_contracts(
    s: &State,
    c: &ExtContractsGroup,
) -> ApiResult<Option<Plan>> {
    need_tenant(s, &c.tenant_name)?;
    if let Some(old) = s.ext_contracts.get(&c.key()) {
        if same_config(old, c) {
            return Ok(None);
        }
        return Err(ApiError::conflict(format!(
            "external contracts group {} cannot be changed; delete it and create it again",
            c.key()
        )));
    }
    let mut p = Plan::default();
    p.put_object(c, None);
    Ok(Some(p))
}

pub(in crate::ops) fn plan_aci_gw(s: &State, a: &AciGw) -> ApiResult<Option<Plan>> {
    if let Some(old) = &s.aci_gw
        && same_config(old, a)
    {
        return Ok(None);
    }
    let mut p = Plan::default();
    p.put_object(a, None);
    Ok(Some(p))
}
