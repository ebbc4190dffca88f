//! The UI's read pages: overview, tenants, networks, groups, policies, profiles, endpoints,
//! global settings. Each reads what it shows through the API as the session's principal, so an
//! ops user's pages hold only its tenants (the API filters the lists) and a page the principal
//! may not read answers with the API's own 403.

use super::html::{self, Nav, a, esc, table};
use super::{ApiFail, Session, St, Ui};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

type Q = HashMap<String, String>;
type Body = Result<String, ApiFail>;

macro_rules! page_handler {
    ($name:ident, $title:literal, $nav:expr, $body:ident) => {
        pub async fn $name(
            State(ui): St,
            method: Method,
            headers: HeaderMap,
            uri: Uri,
            Query(q): Query<Q>,
        ) -> Response {
            let here = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui/");
            let s = match ui.session(&headers, &method, here) {
                Ok(s) => s,
                Err(r) => return *r,
            };
            match $body(&ui, &s, &q).await {
                Ok(b) => ui.page(&s, $title, $nav, &b),
                Err(e) => ui.error_page(Some(&s), e),
            }
        }
    };
}

page_handler!(overview, "Overview", Nav::Overview, overview_body);
page_handler!(tenants, "Tenants", Nav::Tenants, tenants_body);
page_handler!(networks, "Networks", Nav::Networks, networks_body);
page_handler!(groups, "Endpoint groups", Nav::Groups, groups_body);
page_handler!(policies, "Policies", Nav::Policies, policies_body);
page_handler!(
    netprofiles,
    "Network profiles",
    Nav::Netprofiles,
    netprofiles_body
);
page_handler!(endpoints, "Endpoints", Nav::Endpoints, endpoints_body);
page_handler!(global, "Global settings", Nav::Global, global_body);

fn st<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

fn n(v: &Value, field: &str) -> i64 {
    v[field].as_i64().unwrap_or(0)
}

fn num(x: impl std::fmt::Display) -> String {
    format!("<span class=\"num\">{x}</span>")
}

/// Whether the principal may create and delete tenants and edit globals (the UI hides what the
/// API would refuse; the API still decides).
fn is_admin(s: &Session) -> bool {
    s.claims
        .as_ref()
        .is_none_or(|c| c.role == crate::auth::Role::Admin)
}

/// The `?tenant=` filter of the list pages.
fn in_tenant(q: &Q, v: &Value) -> bool {
    q.get("tenant")
        .filter(|t| !t.is_empty())
        .is_none_or(|t| st(v, "tenantName") == t)
}

fn filter_note(q: &Q, page: &str) -> String {
    match q.get("tenant").filter(|t| !t.is_empty()) {
        Some(t) => format!(
            "<p>Tenant {} only. {}</p>",
            esc(t),
            a(page, "Show every tenant")
        ),
        None => String::new(),
    }
}

/// The top of a per-tenant list: the filter note, and a link to the form for a new object of
/// collection `coll`, in the page's tenant when it shows one.
fn list_head(q: &Q, page: &str, coll: &str, text: &str) -> String {
    let tenant = q
        .get("tenant")
        .map(|t| format!("?tenantName={}", html::url(t)))
        .unwrap_or_default();
    let mut h = filter_note(q, page);
    h.push_str(&new_link(&format!("/ui/new/{coll}{tenant}"), text));
    h
}

fn new_link(href: &str, text: &str) -> String {
    format!(
        "<p class=\"actions\"><a class=\"button\" href=\"{}\">{}</a></p>",
        esc(href),
        esc(text)
    )
}

fn edit_link(coll: &str, key: &str) -> String {
    format!(
        "<a href=\"/ui/edit/{}/{}\" aria-label=\"Edit {}\">Edit</a>",
        html::url(coll),
        html::url(key),
        esc(key)
    )
}

fn actions(s: &Session, coll: &str, key: &str, back: &str) -> String {
    format!(
        "{} {}",
        edit_link(coll, key),
        html::delete_button(coll, key, &s.csrf, back)
    )
}

async fn endpoints_of(ui: &Ui, s: &Session) -> Result<Vec<Value>, ApiFail> {
    ui.list(s, "endpoints").await
}

// ------------------------------------------------------------------ overview

async fn overview_body(ui: &Ui, s: &Session, _q: &Q) -> Body {
    let info = ui.call(s, Method::GET, "/info", None).await?;
    let (tenants, networks, groups, policies, eps) = futures::try_join!(
        ui.list(s, "tenants"),
        ui.list(s, "networks"),
        ui.list(s, "endpointGroups"),
        ui.list(s, "policys"),
        endpoints_of(ui, s),
    )?;
    let mut h = String::from("<div data-live>");
    h.push_str("<div class=\"cards\">");
    for (label, count, href) in [
        ("Tenants", tenants.len(), "/ui/tenants"),
        ("Networks", networks.len(), "/ui/networks"),
        ("Groups", groups.len(), "/ui/groups"),
        ("Policies", policies.len(), "/ui/policies"),
        ("Endpoints", eps.len(), "/ui/endpoints"),
    ] {
        let _ = write!(
            h,
            "<div class=\"card\"><b id=\"total-{}\">{count}</b><a href=\"{href}\">{label}</a></div>",
            label.to_lowercase()
        );
    }
    h.push_str("</div>");
    let leader = st(&info, "leader-ip");
    let masters: Vec<Vec<String>> = info["netmaster-nodes"]
        .as_array()
        .map(|m| m.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|url| {
            let role = if url == leader { "leader" } else { "follower" };
            let this = if url == st(&info, "local-ip") {
                " (this master)"
            } else {
                ""
            };
            vec![esc(url), format!("{role}{this}")]
        })
        .collect();
    h.push_str(&table("Masters", &["URL", "Role"], &masters));
    let v = crate::api::version_info();
    let _ = write!(
        h,
        "<p class=\"muted\">Store: {} at revision {}. This master: version {} ({}), {}.</p>",
        esc(st(&info, "store")),
        info["revision"].as_u64().unwrap_or(0),
        esc(&v.version),
        esc(&v.git_commit),
        esc(st(&info, "current-state"))
    );
    match ui.call(s, Method::GET, "/api/v1/nodes/", None).await {
        Ok(Value::Array(nodes)) => {
            let mut per_host: HashMap<&str, usize> = HashMap::new();
            for e in &eps {
                *per_host.entry(st(e, "host")).or_default() += 1;
            }
            let rows: Vec<Vec<String>> = nodes
                .iter()
                .map(|nd| {
                    let host = st(nd, "hostname");
                    vec![
                        esc(host),
                        "up (registration live)".into(),
                        esc(st(nd, "vtepIP")),
                        esc(if st(nd, "version").is_empty() {
                            "unknown"
                        } else {
                            st(nd, "version")
                        }),
                        num(per_host.get(host).copied().unwrap_or(0)),
                    ]
                })
                .collect();
            h.push_str(&table(
                "Nodes",
                &[
                    "Host",
                    "Health",
                    "VTEP address",
                    "Agent version",
                    "Endpoints",
                ],
                &rows,
            ));
        }
        Ok(_) => {}
        Err(e) => {
            let _ = write!(
                h,
                "<h2>Nodes</h2><p class=\"muted\">Not shown: {}</p>",
                esc(&e.message)
            );
        }
    }
    h.push_str("</div>");
    Ok(h)
}

// ------------------------------------------------------------------ tenants

async fn tenants_body(ui: &Ui, s: &Session, _q: &Q) -> Body {
    let (tenants, networks, groups, policies, eps) = futures::try_join!(
        ui.list(s, "tenants"),
        ui.list(s, "networks"),
        ui.list(s, "endpointGroups"),
        ui.list(s, "policys"),
        endpoints_of(ui, s),
    )?;
    let count = |list: &[Value], t: &str| list.iter().filter(|v| st(v, "tenantName") == t).count();
    let admin = is_admin(s);
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            let name = st(t, "tenantName");
            let q = format!("?tenant={}", html::url(name));
            let mut row = vec![
                esc(name),
                esc(st(t, "defaultNetwork")),
                a(
                    &format!("/ui/networks{q}"),
                    &count(&networks, name).to_string(),
                ),
                a(&format!("/ui/groups{q}"), &count(&groups, name).to_string()),
                a(
                    &format!("/ui/policies{q}"),
                    &count(&policies, name).to_string(),
                ),
                a(&format!("/ui/endpoints{q}"), &count(&eps, name).to_string()),
            ];
            row.push(if admin {
                actions(s, "tenants", name, "/ui/tenants")
            } else {
                String::new()
            });
            row
        })
        .collect();
    let mut h = String::new();
    if admin {
        h.push_str(&new_link("/ui/new/tenants", "New tenant"));
    }
    h.push_str("<div data-live>");
    h.push_str(&table(
        "Tenants",
        &[
            "Name",
            "Default network",
            "Networks",
            "Groups",
            "Policies",
            "Endpoints",
            "Actions",
        ],
        &rows,
    ));
    h.push_str("</div>");
    Ok(h)
}

// ------------------------------------------------------------------ networks

/// How many addresses a list like `10.1.0.3-10.1.0.9, 10.1.0.20` holds.
fn count_addresses(ranges: &str) -> u64 {
    ranges
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let (lo, hi) = r.split_once('-').unwrap_or((r, r));
            match (
                lo.trim().parse::<std::net::Ipv4Addr>(),
                hi.trim().parse::<std::net::Ipv4Addr>(),
            ) {
                (Ok(lo), Ok(hi)) => {
                    u64::from(u32::from(hi)).saturating_sub(u64::from(u32::from(lo))) + 1
                }
                _ => 0,
            }
        })
        .sum()
}

async fn networks_body(ui: &Ui, s: &Session, q: &Q) -> Body {
    let (networks, eps) = futures::try_join!(ui.list(s, "networks"), endpoints_of(ui, s))?;
    let networks: Vec<&Value> = networks.iter().filter(|v| in_tenant(q, v)).collect();
    let opers = futures::future::join_all(networks.iter().map(|nw| {
        let path = format!("/api/v1/inspect/networks/{}/", html::url(st(nw, "key")));
        async move { ui.call(s, Method::GET, &path, None).await }
    }))
    .await;
    let mut per_host: HashMap<(&str, &str), BTreeMap<&str, usize>> = HashMap::new();
    for e in &eps {
        *per_host
            .entry((st(e, "tenantName"), st(e, "networkName")))
            .or_default()
            .entry(st(e, "host"))
            .or_default() += 1;
    }
    let rows: Vec<Vec<String>> = networks
        .iter()
        .zip(&opers)
        .map(|(nw, oper)| {
            let key = st(nw, "key");
            let oper = oper.as_ref().map(|o| &o["Oper"]).unwrap_or(&Value::Null);
            let allocated = n(oper, "allocatedAddressesCount");
            let free = count_addresses(st(oper, "availableIPAddresses"));
            let hosts = per_host
                .get(&(st(nw, "tenantName"), st(nw, "networkName")))
                .map(|m| {
                    m.iter()
                        .map(|(h, c)| format!("{}: {c}", esc(h)))
                        .collect::<Vec<_>>()
                        .join("<br>")
                })
                .unwrap_or_default();
            let mut tag = match n(oper, "pktTag").max(n(nw, "pktTag")) {
                0 => String::new(),
                t => t.to_string(),
            };
            if !st(nw, "cfgdTag").is_empty() {
                let _ = write!(tag, " ({})", st(nw, "cfgdTag"));
            }
            let mut subnet = esc(st(nw, "subnet"));
            let mut gw = esc(st(nw, "gateway"));
            if !st(nw, "ipv6Subnet").is_empty() {
                let _ = write!(subnet, "<br>{}", esc(st(nw, "ipv6Subnet")));
                let _ = write!(gw, "<br>{}", esc(st(nw, "ipv6Gateway")));
            }
            vec![
                esc(st(nw, "tenantName")),
                esc(st(nw, "networkName")),
                esc(st(nw, "encap")),
                esc(tag.trim()),
                subnet,
                gw,
                num(allocated),
                num(free),
                hosts,
                actions(s, "networks", key, "/ui/networks"),
            ]
        })
        .collect();
    let mut h = list_head(q, "/ui/networks", "networks", "New network");
    h.push_str("<div data-live>");
    h.push_str(&table(
        "Networks",
        &[
            "Tenant",
            "Name",
            "Encap",
            "Tag",
            "Subnet",
            "Gateway",
            "Allocated",
            "Free",
            "Endpoints per host",
            "Actions",
        ],
        &rows,
    ));
    h.push_str("</div>");
    Ok(h)
}

// ------------------------------------------------------------------ groups

async fn groups_body(ui: &Ui, s: &Session, q: &Q) -> Body {
    let (groups, eps) = futures::try_join!(ui.list(s, "endpointGroups"), endpoints_of(ui, s))?;
    let mut members: HashMap<(&str, &str), Vec<&Value>> = HashMap::new();
    for e in &eps {
        members
            .entry((st(e, "tenantName"), st(e, "groupName")))
            .or_default()
            .push(e);
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .filter(|g| in_tenant(q, g))
        .map(|g| {
            let tenant = st(g, "tenantName");
            let key = st(g, "key");
            let m = members
                .get(&(tenant, st(g, "groupName")))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut who: Vec<String> = m.iter().take(10).map(|e| esc(ep_name(e))).collect();
            if m.len() > 10 {
                who.push(a(
                    &format!(
                        "/ui/endpoints?tenant={}&q={}&field=group",
                        html::url(tenant),
                        html::url(st(g, "groupName"))
                    ),
                    &format!("and {} more", m.len() - 10),
                ));
            }
            let policies: Vec<String> = g["policies"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter_map(|x| x.as_str())
                        .map(|p| {
                            a(
                                &format!(
                                    "/ui/policies?tenant={}#policy-{}",
                                    html::url(tenant),
                                    html::url(&format!("{tenant}:{p}"))
                                ),
                                p,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                esc(tenant),
                esc(st(g, "groupName")),
                esc(st(g, "networkName")),
                policies.join(", "),
                esc(st(g, "netProfile")),
                esc(st(g, "ipPool")),
                format!("{} {}", num(m.len()), who.join(", ")),
                actions(s, "endpointGroups", key, "/ui/groups"),
            ]
        })
        .collect();
    let mut h = list_head(q, "/ui/groups", "endpointGroups", "New group");
    h.push_str("<div data-live>");
    h.push_str(&table(
        "Endpoint groups",
        &[
            "Tenant",
            "Name",
            "Network",
            "Policies",
            "Profile",
            "Address pool",
            "Members",
            "Actions",
        ],
        &rows,
    ));
    h.push_str("</div>");
    Ok(h)
}

fn ep_name(e: &Value) -> &str {
    let name = st(e, "containerName");
    if name.is_empty() {
        st(e, "endpointID")
    } else {
        name
    }
}

// ------------------------------------------------------------------ policies

async fn policies_body(ui: &Ui, s: &Session, q: &Q) -> Body {
    let (policies, rules, groups) = futures::try_join!(
        ui.list(s, "policys"),
        ui.list(s, "rules"),
        ui.list(s, "endpointGroups"),
    )?;
    let policies: Vec<&Value> = policies.iter().filter(|v| in_tenant(q, v)).collect();
    let opers = futures::future::join_all(policies.iter().map(|p| {
        let path = format!("/api/v1/inspect/policys/{}/", html::url(st(p, "key")));
        async move { ui.call(s, Method::GET, &path, None).await }
    }))
    .await;
    let mut h = list_head(q, "/ui/policies", "policys", "New policy");
    h.push_str("<div data-live>");
    if policies.is_empty() {
        h.push_str("<p class=\"muted\">No policies.</p>");
    }
    for (p, oper) in policies.iter().zip(&opers) {
        let key = st(p, "key");
        let (tenant, name) = (st(p, "tenantName"), st(p, "policyName"));
        let stats: HashMap<&str, &Value> = oper
            .as_ref()
            .ok()
            .and_then(|o| o["Oper"]["ruleStats"].as_array())
            .map(|a| a.iter().map(|r| (st(r, "ruleId"), r)).collect())
            .unwrap_or_default();
        let used_by: Vec<&str> = groups
            .iter()
            .filter(|g| {
                st(g, "tenantName") == tenant
                    && g["policies"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|x| x.as_str() == Some(name)))
            })
            .map(|g| st(g, "groupName"))
            .collect();
        let _ = write!(
            h,
            "<section id=\"policy-{}\" aria-labelledby=\"h-{0}\"><h2 id=\"h-{0}\">Policy {} <span class=\"muted\">(tenant {})</span></h2>\
<p>Applied to: {}</p><p class=\"actions\">{} {}</p>",
            esc(key),
            esc(name),
            esc(tenant),
            if used_by.is_empty() {
                "no group".to_string()
            } else {
                esc(&used_by.join(", "))
            },
            a(
                &format!(
                    "/ui/new/rules?tenantName={}&policyName={}",
                    html::url(tenant),
                    html::url(name)
                ),
                "Add rule"
            ),
            html::delete_button("policys", key, &s.csrf, "/ui/policies"),
        );
        let mut mine: Vec<&Value> = rules
            .iter()
            .filter(|r| st(r, "tenantName") == tenant && st(r, "policyName") == name)
            .collect();
        // The order the switch applies them in: higher priority first.
        mine.sort_by(|a, b| {
            n(b, "priority")
                .cmp(&n(a, "priority"))
                .then_with(|| st(a, "ruleId").cmp(st(b, "ruleId")))
        });
        let rows: Vec<Vec<String>> = mine
            .iter()
            .map(|r| {
                let id = st(r, "ruleId");
                let counters = stats.get(id);
                let packets = counters.map(|x| x["packets"].as_u64().unwrap_or(0));
                let hosts = counters
                    .and_then(|x| x["hosts"].as_object())
                    .map(|hs| {
                        hs.iter()
                            .map(|(h, c)| {
                                format!("{}: {}", esc(h), c["packets"].as_u64().unwrap_or(0))
                            })
                            .collect::<Vec<_>>()
                            .join("<br>")
                    })
                    .unwrap_or_default();
                let side = |dir: &str| {
                    let parts: Vec<String> = [
                        ("group", format!("{dir}EndpointGroup")),
                        ("network", format!("{dir}Network")),
                        ("address", format!("{dir}IpAddress")),
                    ]
                    .iter()
                    .filter(|(_, f)| !st(r, f).is_empty())
                    .map(|(l, f)| format!("{l} {}", esc(st(r, f))))
                    .collect();
                    if parts.is_empty() {
                        "any".to_string()
                    } else {
                        parts.join(", ")
                    }
                };
                let port = match n(r, "port") {
                    0 => String::new(),
                    p => p.to_string(),
                };
                vec![
                    esc(id),
                    num(n(r, "priority").max(1)),
                    esc(st(r, "direction")),
                    esc(st(r, "action")),
                    esc(if st(r, "protocol").is_empty() {
                        "any"
                    } else {
                        st(r, "protocol")
                    }),
                    esc(&port),
                    side("from"),
                    side("to"),
                    packets
                        .map(num)
                        .unwrap_or_else(|| "<span class=\"muted\">no report</span>".into()),
                    hosts,
                    actions(s, "rules", st(r, "key"), "/ui/policies"),
                ]
            })
            .collect();
        h.push_str(&table(
            &format!("Rules of {name}, in the order they apply"),
            &[
                "Rule",
                "Priority",
                "Direction",
                "Action",
                "Protocol",
                "Port",
                "From",
                "To",
                "Packets",
                "Packets per host",
                "Actions",
            ],
            &rows,
        ));
        h.push_str("</section>");
    }
    h.push_str("</div>");
    Ok(h)
}

// ------------------------------------------------------------------ netprofiles

async fn netprofiles_body(ui: &Ui, s: &Session, q: &Q) -> Body {
    let profiles = ui.list(s, "netprofiles").await?;
    let rows: Vec<Vec<String>> = profiles
        .iter()
        .filter(|p| in_tenant(q, p))
        .map(|p| {
            vec![
                esc(st(p, "tenantName")),
                esc(st(p, "profileName")),
                esc(st(p, "bandwidth")),
                num(n(p, "burst")),
                num(n(p, "DSCP")),
                actions(s, "netprofiles", st(p, "key"), "/ui/netprofiles"),
            ]
        })
        .collect();
    let mut h = filter_note(q, "/ui/netprofiles");
    h.push_str(&new_link("/ui/new/netprofiles", "New profile"));
    h.push_str("<div data-live>");
    h.push_str(&table(
        "Network profiles",
        &["Tenant", "Name", "Bandwidth", "Burst", "DSCP", "Actions"],
        &rows,
    ));
    h.push_str("</div>");
    Ok(h)
}

// ------------------------------------------------------------------ endpoints

const SEARCH_FIELDS: &[(&str, &str, &[&str])] = &[
    ("any", "Anything", &[]),
    (
        "name",
        "Name",
        &["containerName", "endpointID", "containerID"],
    ),
    ("ip", "Address", &["ipAddress", "ipv6Address"]),
    ("mac", "MAC", &["macAddress"]),
    ("host", "Host", &["host"]),
    ("tenant", "Tenant", &["tenantName"]),
    ("network", "Network", &["networkName"]),
    ("group", "Group", &["groupName"]),
];

fn matches(e: &Value, field: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let fields: Vec<&str> = match SEARCH_FIELDS.iter().find(|(k, _, _)| *k == field) {
        Some((_, _, f)) if !f.is_empty() => f.to_vec(),
        _ => SEARCH_FIELDS
            .iter()
            .flat_map(|(_, _, f)| f.iter().copied())
            .collect(),
    };
    fields
        .iter()
        .any(|f| st(e, f).to_ascii_lowercase().contains(needle))
}

async fn endpoints_body(ui: &Ui, s: &Session, q: &Q) -> Body {
    let eps = endpoints_of(ui, s).await?;
    let needle = q
        .get("q")
        .map(|x| x.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let field = q.get("field").map(String::as_str).unwrap_or("any");
    let mut found: Vec<&Value> = eps
        .iter()
        .filter(|e| in_tenant(q, e) && matches(e, field, &needle))
        .collect();
    found.sort_by(|a, b| {
        (st(a, "tenantName"), st(a, "networkName"), ep_name(a)).cmp(&(
            st(b, "tenantName"),
            st(b, "networkName"),
            ep_name(b),
        ))
    });
    let mut h = String::new();
    let _ = write!(
        h,
        "<form class=\"search\" method=\"get\" action=\"/ui/endpoints\" role=\"search\">\
<div class=\"field\"><label for=\"q\">Search</label><input id=\"q\" name=\"q\" type=\"search\" value=\"{}\"></div>\
<div class=\"field\"><label for=\"field\">In</label><select id=\"field\" name=\"field\">",
        esc(q.get("q").map(String::as_str).unwrap_or_default())
    );
    for (k, label, _) in SEARCH_FIELDS {
        let sel = if *k == field { " selected" } else { "" };
        let _ = write!(h, "<option value=\"{k}\"{sel}>{label}</option>");
    }
    h.push_str("</select></div>");
    if let Some(t) = q.get("tenant").filter(|t| !t.is_empty()) {
        let _ = write!(
            h,
            "<input type=\"hidden\" name=\"tenant\" value=\"{}\">",
            esc(t)
        );
    }
    h.push_str("<button type=\"submit\">Search</button></form>");
    h.push_str(&filter_note(q, "/ui/endpoints"));
    h.push_str("<div data-live>");
    let _ = write!(
        h,
        "<p id=\"ep-count\" aria-live=\"polite\">{} of {} endpoints</p>",
        found.len(),
        eps.len()
    );
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|e| {
            let mut ip = esc(st(e, "ipAddress"));
            if !st(e, "ipv6Address").is_empty() {
                let _ = write!(ip, "<br>{}", esc(st(e, "ipv6Address")));
            }
            vec![
                esc(ep_name(e)),
                esc(st(e, "tenantName")),
                esc(st(e, "networkName")),
                esc(st(e, "groupName")),
                esc(st(e, "host")),
                ip,
                esc(st(e, "macAddress")),
                format!("<code>{}</code>", esc(st(e, "endpointID"))),
            ]
        })
        .collect();
    h.push_str(&table(
        "Endpoints",
        &[
            "Name",
            "Tenant",
            "Network",
            "Group",
            "Host",
            "Address",
            "MAC",
            "Endpoint id",
        ],
        &rows,
    ));
    h.push_str("</div>");
    Ok(h)
}

// ------------------------------------------------------------------ global

async fn global_body(ui: &Ui, s: &Session, _q: &Q) -> Body {
    let g = ui
        .call(s, Method::GET, "/api/v1/globals/global/", None)
        .await?;
    let rows: Vec<Vec<String>> = [
        ("Forwarding mode", "fwdMode"),
        ("ARP mode", "arpMode"),
        ("Network infrastructure", "networkInfraType"),
        ("VLAN range", "vlans"),
        ("VXLAN range", "vxlans"),
        ("Private subnet", "pvtSubnet"),
    ]
    .iter()
    .map(|(label, f)| vec![esc(label), esc(st(&g, f))])
    .collect();
    let mut h = String::from("<div data-live>");
    h.push_str(&table("Global settings", &["Setting", "Value"], &rows));
    h.push_str("</div>");
    h.push_str(&new_link("/ui/edit/globals/global", "Edit global settings"));
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_address_ranges() {
        assert_eq!(count_addresses("10.1.0.3-10.1.0.9, 10.1.0.20"), 8);
        assert_eq!(count_addresses(""), 0);
    }

    #[test]
    fn endpoint_search_by_field() {
        let e = serde_json::json!({"containerName": "web-1", "ipAddress": "10.1.0.5",
            "macAddress": "02:02:0a:01:00:05", "host": "h1", "tenantName": "A"});
        assert!(matches(&e, "any", "web"));
        assert!(matches(&e, "ip", "10.1.0.5"));
        assert!(!matches(&e, "host", "10.1"));
        assert!(matches(&e, "mac", "02:02:0a"));
    }
}
