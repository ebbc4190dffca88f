//! Who may do what: a request's path and method classified into a [`Route`], and the
//! [`Decision`] for a principal. Pure functions; the guard layer (in `http`) carries the
//! decisions out (filters lists and watch events, looks endpoints up).
//!
//! The roles, as docs/security.md tells them:
//! - `admin`: everything.
//! - `ops` (Contiv's auth_proxy role): the tenant-level objects (networks, groups, policies,
//!   rules, netprofiles, app profiles, external contracts, service LBs) of the tenants it is
//!   authorized on, read and write; those tenants (read only); their endpoints (read only);
//!   watch events of those tenants. Not: tenants' creation or deletion, global, aciGws, Bgps
//!   (admin-only in Contiv), nodes, the agent API's writes, users and credentials. An ops user
//!   authorized on `*` acts so on every tenant.
//! - `node`: reads everything agents need (objects, endpoints, nodes, the watch stream);
//!   registers, unregisters and reports counters only for itself; creates and deletes endpoints
//!   only on itself.

use super::{Claims, Role};
use axum::http::Method;
use model::Kind;

/// What a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Open to anyone: `/version`, the OpenAPI document, login, join.
    Public,
    /// `/info`.
    Info,
    /// `/api/v1/<collection>/[<key>]` and `/api/v1/inspect/<collection>/<key>`.
    Object { kind: Kind, key: Option<String> },
    /// `/api/v1/nodes/[<name>[/rulestats|/spoofstats|/hostaccess]]`.
    Nodes { name: Option<String> },
    /// `/api/v1/endpoints/[<id>]`.
    Endpoints { id: Option<String> },
    /// `/api/v1/inspect/endpoints/<id>`.
    InspectEndpoint,
    /// `/api/v1/watch`.
    Watch,
    /// Users, API tokens, the join token: `/api/v1/auth_proxy/...` other than login and join.
    Credentials,
    /// Anything else (answered 404 by the API).
    Other,
}

pub const LOGIN_PATH: &str = "/api/v1/auth_proxy/login";
pub const JOIN_PATH: &str = "/api/v1/auth_proxy/join";

pub fn classify(path: &str) -> Route {
    let path = path.trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["version"] => Route::Public,
        ["info"] => Route::Info,
        ["api", "v1", "openapi.json"] => Route::Public,
        ["api", "v1", "auth_proxy", "login" | "join"] => Route::Public,
        ["api", "v1", "auth_proxy", ..] => Route::Credentials,
        ["api", "v1", "watch"] => Route::Watch,
        ["api", "v1", "nodes"] => Route::Nodes { name: None },
        ["api", "v1", "nodes", name]
        | [
            "api",
            "v1",
            "nodes",
            name,
            "rulestats" | "spoofstats" | "hostaccess",
        ] => Route::Nodes {
            name: Some(name.to_string()),
        },
        ["api", "v1", "endpoints"] => Route::Endpoints { id: None },
        ["api", "v1", "endpoints", id] => Route::Endpoints {
            id: Some(id.to_string()),
        },
        ["api", "v1", "inspect", "endpoints", _] => Route::InspectEndpoint,
        ["api", "v1", "inspect", coll, key] => match Kind::from_collection(coll) {
            Some(kind) => Route::Object {
                kind,
                key: Some(key.to_string()),
            },
            None => Route::Other,
        },
        ["api", "v1", coll] => match Kind::from_collection(coll) {
            Some(kind) => Route::Object { kind, key: None },
            None => Route::Other,
        },
        ["api", "v1", coll, key] => match Kind::from_collection(coll) {
            Some(kind) => Route::Object {
                kind,
                key: Some(key.to_string()),
            },
            None => Route::Other,
        },
        _ => Route::Other,
    }
}

/// Whether objects of `kind` belong to a tenant (their key starts with the tenant's name).
pub fn tenant_level(kind: Kind) -> bool {
    kind != Kind::Tenant && kind.key_fields().first() == Some(&"tenantName")
}

/// The tenant an object key belongs to (the tenant itself for `tenants`).
pub fn tenant_of(kind: Kind, key: &str) -> Option<&str> {
    if kind == Kind::Tenant {
        Some(key)
    } else if tenant_level(kind) {
        key.split(':').next()
    } else {
        None
    }
}

/// What the guard does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 403 with this message.
    Deny(String),
    /// Run it, then keep the elements of the JSON list whose `tenantName` the principal has.
    FilterList,
    /// Run it, then keep the watch events of the principal's tenants.
    FilterWatch,
    /// Allow if the endpoint's tenant is the principal's (an unknown endpoint passes: 404).
    EndpointTenant(String),
    /// Allow if the endpoint is on the node's host (an unknown endpoint passes: 404).
    EndpointOnNode(String),
    /// Allow if the request body's `host` is the node itself.
    BodyHostIsNode,
}

fn is_read(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn deny(c: &Claims, what: impl std::fmt::Display) -> Decision {
    Decision::Deny(format!(
        "{} (role {}) may not {what}",
        c.describe(),
        c.role.name()
    ))
}

fn verb(m: &Method) -> &'static str {
    match *m {
        Method::GET | Method::HEAD | Method::OPTIONS => "read",
        Method::DELETE => "delete",
        _ => "write",
    }
}

pub fn decide(c: &Claims, method: &Method, route: &Route) -> Decision {
    match c.role {
        Role::Admin => Decision::Allow,
        Role::Node => decide_node(c, method, route),
        Role::Ops => decide_ops(c, method, route),
    }
}

fn decide_node(c: &Claims, method: &Method, route: &Route) -> Decision {
    let me = c.sub.as_str();
    match route {
        Route::Public | Route::Info | Route::Watch | Route::InspectEndpoint | Route::Other => {
            Decision::Allow
        }
        Route::Object { .. } if is_read(method) => Decision::Allow,
        Route::Object { kind, key } => deny(
            c,
            format!(
                "{} {} {}: nodes only read configuration",
                verb(method),
                kind.name(),
                key.as_deref().unwrap_or("objects")
            ),
        ),
        Route::Nodes { name: None } if is_read(method) => Decision::Allow,
        Route::Nodes { name: Some(n) } if n == me => Decision::Allow,
        Route::Nodes { name } => deny(
            c,
            format!(
                "{} the registration of node {}: a node registers and reports only for itself",
                verb(method),
                name.as_deref().unwrap_or("(all)")
            ),
        ),
        Route::Endpoints { .. } if is_read(method) => Decision::Allow,
        Route::Endpoints { id: None } if *method == Method::POST => Decision::BodyHostIsNode,
        Route::Endpoints { id: Some(id) } if *method == Method::DELETE => {
            Decision::EndpointOnNode(id.clone())
        }
        Route::Endpoints { id } => deny(
            c,
            format!(
                "{} endpoint {}",
                method,
                id.as_deref().unwrap_or("(collection)")
            ),
        ),
        Route::Credentials => deny(c, "manage users or credentials"),
    }
}

fn decide_ops(c: &Claims, method: &Method, route: &Route) -> Decision {
    match route {
        Route::Public | Route::Info | Route::Other => Decision::Allow,
        // Filtered also for ops on every tenant: ops sees no nodes, globals, BGP or ACI objects.
        Route::Watch => Decision::FilterWatch,
        Route::Object { kind, key } => match (*kind, key) {
            (Kind::Global | Kind::Bgp | Kind::AciGw, _) => deny(
                c,
                format!("{} {} objects (admin only)", verb(method), kind.name()),
            ),
            (_, None) if is_read(method) => Decision::FilterList,
            (_, None) => deny(
                c,
                format!("{} the {} collection", verb(method), kind.name()),
            ),
            (Kind::Tenant, Some(t)) if !is_read(method) => deny(
                c,
                format!(
                    "{} tenant {t}: creating and deleting tenants is for admins",
                    verb(method)
                ),
            ),
            (kind, Some(key)) => match tenant_of(kind, key) {
                Some(t) if c.has_tenant(t) => Decision::Allow,
                _ => deny(
                    c,
                    format!(
                        "{} {} {key}: not authorized on its tenant",
                        verb(method),
                        kind.name()
                    ),
                ),
            },
        },
        Route::Endpoints { id } if is_read(method) => match id {
            None => Decision::FilterList,
            Some(id) => Decision::EndpointTenant(id.clone()),
        },
        Route::Endpoints { id } => deny(
            c,
            format!(
                "{} endpoint {}: endpoints are made by the agents",
                verb(method),
                id.as_deref().unwrap_or("(collection)")
            ),
        ),
        Route::InspectEndpoint if c.all_tenants() => Decision::Allow,
        Route::InspectEndpoint => deny(
            c,
            "inspect endpoints by substring (it searches every tenant); list /api/v1/endpoints/ instead",
        ),
        Route::Nodes { name } => deny(
            c,
            format!(
                "{} node {}: nodes are infrastructure (admin only)",
                verb(method),
                name.as_deref().unwrap_or("registrations")
            ),
        ),
        Route::Credentials => deny(c, "manage users or credentials (admin only)"),
    }
}

/// Whether a principal may read the watch stream of `node` (`?node=`): a node only its own
/// (the unfiltered stream stays open to it, for older agents); others any.
pub fn decide_watch_node(c: &Claims, node: Option<&str>) -> Decision {
    match node {
        Some(n) if c.role == Role::Node && !n.is_empty() && n != c.sub => deny(
            c,
            format!("read the watch stream of node {n}: a node watches only for itself"),
        ),
        _ => Decision::Allow,
    }
}

/// Whether a watch event (`kind`, `key`, and the `tenantName` of its value, if any) is shown to
/// an ops principal. Endpoint events are decided by the caller, which tracks endpoint tenants.
pub fn ops_sees_event(c: &Claims, kind: &str, key: &str) -> bool {
    match Kind::from_name(kind) {
        Some(k) => tenant_of(k, key).is_some_and(|t| c.has_tenant(t)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(tenants: &[&str]) -> Claims {
        Claims {
            sub: "u".into(),
            role: Role::Ops,
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
            exp: u64::MAX,
            iat: 0,
        }
    }

    #[test]
    fn classify_paths() {
        assert_eq!(classify("/version"), Route::Public);
        assert_eq!(classify("/api/v1/auth_proxy/login/"), Route::Public);
        assert_eq!(
            classify("/api/v1/auth_proxy/local_users/bob"),
            Route::Credentials
        );
        assert_eq!(
            classify("/api/v1/networks/A:n1/"),
            Route::Object {
                kind: Kind::Network,
                key: Some("A:n1".into())
            }
        );
        assert_eq!(
            classify("/api/v1/inspect/networks/A:n1/"),
            Route::Object {
                kind: Kind::Network,
                key: Some("A:n1".into())
            }
        );
        assert_eq!(
            classify("/api/v1/nodes/h1/rulestats"),
            Route::Nodes {
                name: Some("h1".into())
            }
        );
        assert_eq!(
            classify("/api/v1/nodes/h1/spoofstats/"),
            Route::Nodes {
                name: Some("h1".into())
            }
        );
        assert_eq!(
            classify("/api/v1/nodes/h1/hostaccess/"),
            Route::Nodes {
                name: Some("h1".into())
            }
        );
        assert_eq!(
            classify("/api/v1/inspect/endpoints/x/"),
            Route::InspectEndpoint
        );
        assert_eq!(classify("/api/v1/nope/x"), Route::Other);
    }

    #[test]
    fn ops_is_confined_to_its_tenants() {
        let a = ops(&["A"]);
        let net = |k: &str| Route::Object {
            kind: Kind::Network,
            key: Some(k.into()),
        };
        assert_eq!(decide(&a, &Method::POST, &net("A:n1")), Decision::Allow);
        assert!(matches!(
            decide(&a, &Method::GET, &net("B:n1")),
            Decision::Deny(_)
        ));
        let tenant_b = Route::Object {
            kind: Kind::Tenant,
            key: Some("B".into()),
        };
        assert!(matches!(
            decide(&a, &Method::GET, &tenant_b),
            Decision::Deny(_)
        ));
        let global = Route::Object {
            kind: Kind::Global,
            key: Some("global".into()),
        };
        let Decision::Deny(m) = decide(&ops(&["*"]), &Method::GET, &global) else {
            panic!("ops reads globals")
        };
        assert!(m.contains("role ops") && m.contains("global"), "{m}");
    }
}
