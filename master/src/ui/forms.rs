//! Create, edit and delete: one form per kind of object, turned into the JSON body the REST API
//! takes and sent through it, so that the API's validation and its messages are the UI's. An
//! error is shown beside the field its message names (the API's messages name the field by its
//! JSON name: `subnet '10.1.0.0/33': ...`), or above the form when it names none.

use super::html::{self, esc};
use super::{ApiFail, Session, St, Ui};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use model::Kind;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt::Write;

#[derive(Clone, Copy)]
enum Input {
    Text,
    Number,
    /// One of these values (the first is the default).
    Choice(&'static [&'static str]),
    /// A JSON list, typed as words separated by commas or spaces.
    List,
}

struct Field {
    /// The JSON name, which is also the form field's name and what API messages call it.
    name: &'static str,
    label: &'static str,
    input: Input,
    help: &'static str,
}

const fn f(name: &'static str, label: &'static str, input: Input, help: &'static str) -> Field {
    Field {
        name,
        label,
        input,
        help,
    }
}

use Input::{Choice, List, Number, Text};

const TENANT: &[Field] = &[
    f("tenantName", "Tenant name", Text, ""),
    f(
        "defaultNetwork",
        "Default network",
        Text,
        "optional: a network of this tenant",
    ),
];
const NETWORK: &[Field] = &[
    f("tenantName", "Tenant", Text, ""),
    f("networkName", "Network name", Text, ""),
    f("encap", "Encapsulation", Choice(&["vxlan", "vlan"]), ""),
    f(
        "subnet",
        "Subnet",
        Text,
        "a.b.c.d/len, or a.b.c.d-e.f.g.h/len for a range of it",
    ),
    f(
        "gateway",
        "Gateway",
        Text,
        "optional: an address inside the subnet",
    ),
    f("ipv6Subnet", "IPv6 subnet", Text, "optional"),
    f("ipv6Gateway", "IPv6 gateway", Text, "optional"),
    f(
        "pktTag",
        "Packet tag",
        Number,
        "optional: the VLAN or VNI (0 or empty: allocated)",
    ),
    f("nwType", "Network type", Choice(&["data", "infra"]), ""),
    f("cfgdTag", "Configured tag", Text, "optional"),
];
const GROUP: &[Field] = &[
    f("tenantName", "Tenant", Text, ""),
    f("groupName", "Group name", Text, ""),
    f("networkName", "Network", Text, "a network of the tenant"),
    f(
        "policies",
        "Policies",
        List,
        "optional: policy names, separated by commas",
    ),
    f("netProfile", "Network profile", Text, "optional"),
    f(
        "ipPool",
        "Address pool",
        Text,
        "optional: a.b.c.d-e.f.g.h inside the network's subnet",
    ),
    f("cfgdTag", "Configured tag", Text, "optional"),
];
const POLICY: &[Field] = &[
    f("tenantName", "Tenant", Text, ""),
    f("policyName", "Policy name", Text, ""),
];
const RULE: &[Field] = &[
    f("tenantName", "Tenant", Text, ""),
    f("policyName", "Policy", Text, ""),
    f("ruleId", "Rule id", Text, ""),
    f(
        "priority",
        "Priority",
        Number,
        "1-100; higher first (default 1)",
    ),
    f("direction", "Direction", Choice(&["in", "out"]), ""),
    f("action", "Action", Choice(&["allow", "deny"]), ""),
    f(
        "protocol",
        "Protocol",
        Text,
        "tcp, udp, icmp, icmp6, a number 0-255, or empty for any",
    ),
    f("port", "Port", Number, "optional: with tcp or udp"),
    f("fromEndpointGroup", "From group", Text, "optional"),
    f("toEndpointGroup", "To group", Text, "optional"),
    f("fromNetwork", "From network", Text, "optional"),
    f("toNetwork", "To network", Text, "optional"),
    f(
        "fromIpAddress",
        "From address",
        Text,
        "optional: an address or subnet",
    ),
    f(
        "toIpAddress",
        "To address",
        Text,
        "optional: an address or subnet",
    ),
];
const NETPROFILE: &[Field] = &[
    f("tenantName", "Tenant", Text, ""),
    f("profileName", "Profile name", Text, ""),
    f(
        "bandwidth",
        "Bandwidth",
        Text,
        "optional: e.g. 10Mbps, 1Gbps",
    ),
    f("burst", "Burst", Number, "optional: in KB"),
    f("DSCP", "DSCP", Number, "optional: 0-63"),
];
const GLOBAL: &[Field] = &[
    f("name", "Name", Text, ""),
    f(
        "fwdMode",
        "Forwarding mode",
        Choice(&["bridge", "routing"]),
        "",
    ),
    f("arpMode", "ARP mode", Choice(&["proxy", "flood"]), ""),
    f(
        "networkInfraType",
        "Network infrastructure",
        Choice(&["default", "aci", "aci-opflex"]),
        "",
    ),
    f("vlans", "VLAN range", Text, "e.g. 1-4094"),
    f("vxlans", "VXLAN range", Text, "e.g. 1-10000"),
    f(
        "pvtSubnet",
        "Private subnet",
        Text,
        "the /16 hosts take their pods' private addresses from",
    ),
];

/// The kinds the UI edits, by collection: their fields, their singular name and their page.
fn spec(coll: &str) -> Option<(Kind, &'static [Field], &'static str, &'static str)> {
    let kind = Kind::from_collection(coll)?;
    let (fields, name, back) = match kind {
        Kind::Tenant => (TENANT, "tenant", "/ui/tenants"),
        Kind::Network => (NETWORK, "network", "/ui/networks"),
        Kind::EndpointGroup => (GROUP, "group", "/ui/groups"),
        Kind::Policy => (POLICY, "policy", "/ui/policies"),
        Kind::Rule => (RULE, "rule", "/ui/policies"),
        Kind::Netprofile => (NETPROFILE, "network profile", "/ui/netprofiles"),
        Kind::Global => (GLOBAL, "global settings", "/ui/global"),
        _ => return None,
    };
    Some((kind, fields, name, back))
}

fn unknown(coll: &str) -> ApiFail {
    ApiFail {
        status: StatusCode::NOT_FOUND,
        message: format!("the UI has no form for '{coll}'"),
    }
}

/// The field an API message is about: the earliest of the form's JSON names that the message
/// uses as a word (`subnet '...'`, `field pktTag: ...`).
fn field_of<'a>(fields: &'a [Field], message: &str) -> Option<&'a Field> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    fields
        .iter()
        .filter_map(|f| {
            message
                .match_indices(f.name)
                .find(|(i, _)| {
                    let before = i.checked_sub(1).map(|j| message.as_bytes()[j]);
                    let after = message.as_bytes().get(i + f.name.len()).copied();
                    !before.is_some_and(word) && !after.is_some_and(word)
                })
                .map(|(i, _)| (i, f))
        })
        .min_by_key(|(i, _)| *i)
        .map(|(_, f)| f)
}

/// The form's values as text, from an object of the API.
fn values_of(obj: &Value, fields: &[Field]) -> HashMap<String, String> {
    fields
        .iter()
        .filter_map(|f| {
            let v = &obj[f.name];
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => return None,
            };
            Some((f.name.to_string(), text))
        })
        .collect()
}

/// The JSON body of a form: empty fields left out (the API's defaults apply), numbers as
/// numbers when they are (else as typed, and the API says what is wrong with them).
fn body_of(form: &HashMap<String, String>, fields: &[Field]) -> Value {
    let mut m = Map::new();
    for f in fields {
        let v = form.get(f.name).map(|s| s.trim()).unwrap_or_default();
        if v.is_empty() {
            continue;
        }
        let json = match f.input {
            Number => v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(v)),
            List => Value::Array(
                v.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(Value::from)
                    .collect(),
            ),
            Text | Choice(_) => Value::from(v),
        };
        m.insert(f.name.to_string(), json);
    }
    Value::Object(m)
}

struct FormView<'a> {
    coll: &'a str,
    kind: Kind,
    fields: &'a [Field],
    name: &'a str,
    /// Editing an existing object: its key fields are read-only.
    editing: bool,
    values: HashMap<String, String>,
    error: Option<String>,
    back: String,
}

fn render(s: &Session, v: &FormView) -> String {
    let mut h = String::new();
    let err_field = v.error.as_deref().and_then(|e| field_of(v.fields, e));
    if let (Some(e), None) = (&v.error, err_field) {
        h.push_str(&html::alert(e));
    }
    let _ = write!(
        h,
        "<form class=\"edit\" method=\"post\" action=\"/ui/save/{}\" novalidate>{}\
<input type=\"hidden\" name=\"_mode\" value=\"{}\"><input type=\"hidden\" name=\"_back\" value=\"{}\">",
        html::url(v.coll),
        html::csrf_input(&s.csrf),
        if v.editing { "edit" } else { "new" },
        esc(&v.back)
    );
    let key_fields = v.kind.key_fields();
    for f in v.fields {
        let value = v.values.get(f.name).map(String::as_str).unwrap_or_default();
        let invalid = err_field.is_some_and(|e| e.name == f.name);
        let id = format!("f-{}", f.name);
        let mut described = Vec::new();
        let _ = write!(
            h,
            "<div class=\"field{}\"><label for=\"{id}\">{}</label>",
            if invalid { " invalid" } else { "" },
            esc(f.label)
        );
        let readonly = v.editing && key_fields.contains(&f.name);
        let mut attrs = String::new();
        if readonly {
            attrs.push_str(" readonly");
        }
        if invalid {
            attrs.push_str(" aria-invalid=\"true\"");
            described.push(format!("{id}-error"));
        }
        if !f.help.is_empty() {
            described.push(format!("{id}-help"));
        }
        if !described.is_empty() {
            let _ = write!(attrs, " aria-describedby=\"{}\"", described.join(" "));
        }
        match f.input {
            Choice(options) if !readonly => {
                let _ = write!(h, "<select id=\"{id}\" name=\"{}\"{attrs}>", f.name);
                let mut options: Vec<&str> = options.to_vec();
                if !value.is_empty() && !options.contains(&value) {
                    options.push(value);
                }
                for o in options {
                    let sel = if o == value { " selected" } else { "" };
                    let _ = write!(h, "<option value=\"{0}\"{sel}>{0}</option>", esc(o));
                }
                h.push_str("</select>");
            }
            input => {
                let mode = if matches!(input, Number) {
                    " inputmode=\"numeric\""
                } else {
                    ""
                };
                let _ = write!(
                    h,
                    "<input id=\"{id}\" name=\"{}\" value=\"{}\"{mode}{attrs}>",
                    f.name,
                    esc(value)
                );
            }
        }
        if invalid {
            let _ = write!(
                h,
                "<div class=\"error\" id=\"{id}-error\" role=\"alert\">{}</div>",
                esc(v.error.as_deref().unwrap_or_default())
            );
        }
        if !f.help.is_empty() {
            let _ = write!(
                h,
                "<div class=\"help\" id=\"{id}-help\">{}</div>",
                esc(f.help)
            );
        }
        h.push_str("</div>");
    }
    let _ = write!(
        h,
        "<div class=\"actions\"><button type=\"submit\">{}</button> {}</div></form>",
        if v.editing { "Save" } else { "Create" },
        html::a(&v.back, "Cancel")
    );
    h
}

fn title(v: &FormView) -> String {
    if v.editing {
        format!("Edit {}", v.name)
    } else {
        format!("New {}", v.name)
    }
}

fn nav_of(kind: Kind) -> html::Nav {
    match kind {
        Kind::Tenant => html::Nav::Tenants,
        Kind::Network => html::Nav::Networks,
        Kind::EndpointGroup => html::Nav::Groups,
        Kind::Policy | Kind::Rule => html::Nav::Policies,
        Kind::Netprofile => html::Nav::Netprofiles,
        Kind::Global => html::Nav::Global,
        _ => html::Nav::None,
    }
}

fn show(ui: &Ui, s: &Session, v: &FormView, status: StatusCode) -> Response {
    let mut r = ui.page(s, &title(v), nav_of(v.kind), &render(s, v));
    *r.status_mut() = status;
    r
}

/// `GET /ui/new/<coll>[?field=value...]`: an empty form, the query's fields filled in.
pub async fn new_form(
    State(ui): St,
    method: Method,
    headers: HeaderMap,
    Path(coll): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = match ui.session(&headers, &method, &format!("/ui/new/{coll}")) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some((kind, fields, name, back)) = spec(&coll) else {
        return ui.error_page(Some(&s), unknown(&coll));
    };
    let values = fields
        .iter()
        .filter_map(|f| q.get(f.name).map(|v| (f.name.to_string(), v.clone())))
        .collect();
    let v = FormView {
        coll: &coll,
        kind,
        fields,
        name,
        editing: false,
        values,
        error: None,
        back: back.to_string(),
    };
    show(&ui, &s, &v, StatusCode::OK)
}

/// `GET /ui/edit/<coll>/<key>`: the object's form, read through the API (so a user who may not
/// read it gets the API's 403).
pub async fn edit_form(
    State(ui): St,
    method: Method,
    headers: HeaderMap,
    Path((coll, key)): Path<(String, String)>,
) -> Response {
    let s = match ui.session(&headers, &method, &format!("/ui/edit/{coll}/{key}")) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some((kind, fields, name, back)) = spec(&coll) else {
        return ui.error_page(Some(&s), unknown(&coll));
    };
    let obj = match ui
        .call(
            &s,
            Method::GET,
            &format!("/api/v1/{}/{}/", html::url(&coll), html::url(&key)),
            None,
        )
        .await
    {
        Ok(o) => o,
        Err(e) => return ui.error_page(Some(&s), e),
    };
    let v = FormView {
        coll: &coll,
        kind,
        fields,
        name,
        editing: true,
        values: values_of(&obj, fields),
        error: None,
        back: back.to_string(),
    };
    show(&ui, &s, &v, StatusCode::OK)
}

/// `POST /ui/save/<coll>`: the form as the API's JSON, to `POST /api/v1/<coll>/<key>/`. A new
/// object whose key exists is refused (the API's POST would replace it).
pub async fn save(
    State(ui): St,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    Path(coll): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let s = match ui.session(&headers, &method, "/ui/save") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if let Err(r) = ui.check_post(&s, &headers, &uri, &form) {
        return *r;
    }
    let Some((kind, fields, name, back)) = spec(&coll) else {
        return ui.error_page(Some(&s), unknown(&coll));
    };
    let editing = form.get("_mode").is_some_and(|m| m == "edit");
    let back = super::safe_next(form.get("_back").or(Some(&back.to_string())));
    let body = body_of(&form, fields);
    let key = kind
        .key_fields()
        .iter()
        .map(|k| body[*k].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":");
    let path = format!("/api/v1/{}/{}/", html::url(&coll), html::url(&key));
    let mut result = Ok(Value::Null);
    if !editing
        && !kind.key_fields().iter().any(|k| body[*k].is_null())
        && ui.call(&s, Method::GET, &path, None).await.is_ok()
    {
        let field = kind.key_fields().last().copied().unwrap_or("name");
        result = Err(ApiFail {
            status: StatusCode::CONFLICT,
            message: format!(
                "{field} '{}': {} {key} exists already; edit it instead",
                body[field].as_str().unwrap_or_default(),
                kind.name()
            ),
        });
    }
    if result.is_ok() {
        result = ui.call(&s, Method::POST, &path, Some(&body)).await;
    }
    match result {
        Ok(_) => Redirect::to(&back).into_response(),
        Err(e) => {
            let v = FormView {
                coll: &coll,
                kind,
                fields,
                name,
                editing,
                values: form,
                error: Some(e.message),
                back,
            };
            show(&ui, &s, &v, e.status)
        }
    }
}

/// `POST /ui/delete/<coll>/<key>`: `DELETE /api/v1/<coll>/<key>/`; the API's refusal (a tenant
/// that still has networks...) is shown as it says it.
pub async fn delete(
    State(ui): St,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    Path((coll, key)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let s = match ui.session(&headers, &method, "/ui/delete") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if let Err(r) = ui.check_post(&s, &headers, &uri, &form) {
        return *r;
    }
    let Some((_, _, _, back)) = spec(&coll) else {
        return ui.error_page(Some(&s), unknown(&coll));
    };
    let back = super::safe_next(form.get("_back").or(Some(&back.to_string())));
    let path = format!("/api/v1/{}/{}/", html::url(&coll), html::url(&key));
    match ui.call(&s, Method::DELETE, &path, None).await {
        Ok(_) => Redirect::to(&back).into_response(),
        Err(e) => ui.error_page(Some(&s), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_go_to_the_field_they_name() {
        let m = "invalid network A:n1: subnet '10.1.0.0/33': the prefix length must be 0-32";
        assert_eq!(field_of(NETWORK, m).map(|f| f.name), Some("subnet"));
        let m = "invalid JSON body: field pktTag: invalid type: string \"x\", expected i64";
        assert_eq!(field_of(NETWORK, m).map(|f| f.name), Some("pktTag"));
        // ipv6Subnet is not `subnet`; the earliest named field wins.
        let m = "ipv6Subnet fd00::/64 overlaps network A:n2 (fd00::/64)";
        assert_eq!(field_of(NETWORK, m).map(|f| f.name), Some("ipv6Subnet"));
        assert!(field_of(NETWORK, "tenant B does not exist").is_none());
    }

    #[test]
    fn forms_become_the_api_s_json() {
        let form: HashMap<String, String> = [
            ("tenantName", "A"),
            ("groupName", "g"),
            ("networkName", "n"),
            ("policies", "p1, p2 p3"),
            ("ipPool", " "),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        assert_eq!(
            body_of(&form, GROUP),
            serde_json::json!({"tenantName": "A", "groupName": "g", "networkName": "n",
                "policies": ["p1", "p2", "p3"]})
        );
        let form: HashMap<String, String> = [("pktTag", "12"), ("encap", "vlan")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(
            body_of(&form, NETWORK),
            serde_json::json!({"pktTag": 12, "encap": "vlan"})
        );
    }
}
