//! The HTTP side of authentication: the guard layer in front of the whole API, and Contiv's
//! auth_proxy paths (login; local users) plus ours (node join, API tokens, join-token rotation).

use super::policy::{self, Decision, Route};
use super::{Auth, AuthError, Claims, LocalUser, Role, StoredUser};
use crate::api::MAX_BODY;
use crate::error::ApiError;
use crate::ops::{Master, parse_body};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
struct Guard {
    auth: Arc<Auth>,
    master: Arc<Master>,
}

/// The API router with authentication: the auth_proxy paths added and every request checked.
pub fn protect(api: Router, auth: Arc<Auth>, master: Arc<Master>) -> Router {
    api.merge(routes(auth.clone()))
        .layer(axum::middleware::from_fn_with_state(
            Guard { auth, master },
            guard,
        ))
}

fn routes(auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/api/v1/auth_proxy/login/", post(login))
        .route("/api/v1/auth_proxy/login", post(login))
        .route("/api/v1/auth_proxy/join/", post(join))
        .route("/api/v1/auth_proxy/join", post(join))
        .route(
            "/api/v1/auth_proxy/local_users/",
            get(list_users).post(create_user),
        )
        .route(
            "/api/v1/auth_proxy/local_users",
            get(list_users).post(create_user),
        )
        .route(
            "/api/v1/auth_proxy/local_users/{name}/",
            get(get_user)
                .put(update_user)
                .patch(update_user)
                .delete(delete_user),
        )
        .route(
            "/api/v1/auth_proxy/local_users/{name}",
            get(get_user)
                .put(update_user)
                .patch(update_user)
                .delete(delete_user),
        )
        .route("/api/v1/auth_proxy/tokens/", post(create_token))
        .route("/api/v1/auth_proxy/tokens", post(create_token))
        .route("/api/v1/auth_proxy/join_token/", post(rotate_join_token))
        .route("/api/v1/auth_proxy/join_token", post(rotate_join_token))
        .with_state(auth)
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match &e {
            AuthError::Missing
            | AuthError::Invalid(_)
            | AuthError::Expired { .. }
            | AuthError::BadLogin
            | AuthError::BadJoinToken => StatusCode::UNAUTHORIZED,
            AuthError::Store {
                source: store::StoreError::Unavailable(_),
                ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Store { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            AuthError::Io { .. } | AuthError::Hash(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

/// The bearer token of a request: Contiv's `X-Auth-Token`, or `Authorization: Bearer`.
fn token(headers: &HeaderMap) -> Option<&str> {
    if let Some(t) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
        return Some(t.trim());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

fn forbidden(message: String) -> Response {
    ApiError {
        status: StatusCode::FORBIDDEN,
        message,
    }
    .into_response()
}

async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let route = policy::classify(req.uri().path());
    if route == Route::Public {
        return next.run(req).await;
    }
    let claims = match token(req.headers()).map_or(Err(AuthError::Missing), |t| g.auth.verify(t)) {
        Ok(c) => c,
        Err(e) => {
            let mut resp = ApiError::from(e).into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    };
    if route == Route::Watch {
        let q = axum::extract::Query::<crate::api::WatchQuery>::try_from_uri(req.uri());
        let node = q.as_ref().ok().and_then(|q| q.node.as_deref());
        if let Decision::Deny(m) = policy::decide_watch_node(&claims, node) {
            return forbidden(m);
        }
    }
    match policy::decide(&claims, req.method(), &route) {
        Decision::Allow => next.run(req).await,
        Decision::Deny(m) => forbidden(m),
        Decision::FilterList => filter_list(&claims, next.run(req).await).await,
        Decision::FilterWatch => filter_watch(&g.master, claims, next.run(req).await),
        Decision::EndpointTenant(id) => match g.master.get_endpoint(&id) {
            Ok(ep) if !claims.has_tenant(&ep.tenant_name) => forbidden(format!(
                "{} (role {}) may not read endpoint {id}: it is in tenant {}, which it is not authorized on",
                claims.describe(),
                claims.role.name(),
                ep.tenant_name
            )),
            _ => next.run(req).await,
        },
        Decision::EndpointOnNode(id) => match g.master.get_endpoint(&id) {
            Ok(ep) if ep.host != claims.sub => forbidden(format!(
                "{} (role {}) may not delete endpoint {id}: it is on node {}; a node deletes only its own endpoints",
                claims.describe(),
                claims.role.name(),
                ep.host
            )),
            _ => next.run(req).await,
        },
        Decision::BodyHostIsNode => {
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
                return ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    message: format!(
                        "the request body is larger than the limit of {MAX_BODY} bytes"
                    ),
                }
                .into_response();
            };
            let host = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("host").and_then(|h| h.as_str()).map(String::from))
                .unwrap_or_default();
            if host != claims.sub {
                return forbidden(format!(
                    "{} (role {}) may not create an endpoint on node '{host}': a node creates endpoints only on itself",
                    claims.describe(),
                    claims.role.name()
                ));
            }
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

/// Keeps the elements of a JSON list answer whose `tenantName` the principal is authorized on.
async fn filter_list(c: &Claims, resp: Response) -> Response {
    if !resp.status().is_success() || c.all_tenants() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("read the list to filter").into_response();
    };
    let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(&bytes) else {
        return ApiError::internal("the list to filter is not a JSON list").into_response();
    };
    let kept: Vec<_> = items
        .into_iter()
        .filter(|v| {
            v.get("tenantName")
                .and_then(|t| t.as_str())
                .is_some_and(|t| c.has_tenant(t))
        })
        .collect();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        Body::from(serde_json::to_vec(&kept).expect("JSON values serialize")),
    )
}

/// Passes on the watch events an ops principal may see: its tenants' objects and endpoints,
/// `synced` and `error` lines; not nodes, global, BGP or ACI objects.
fn filter_watch(m: &Master, c: Claims, resp: Response) -> Response {
    if !resp.status().is_success() {
        return resp;
    }
    // A delete event carries no value: the ids of the endpoints this principal saw (the current
    // ones now, the later ones as they are put) tell whose endpoint went.
    let eps: HashSet<String> = m
        .list_endpoints(None)
        .into_iter()
        .filter(|e| c.has_tenant(&e.tenant_name))
        .map(|e| e.endpoint_id)
        .collect();
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut state = (Vec::<u8>::new(), eps);
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        let (buf, eps) = &mut state;
        buf.extend_from_slice(&chunk);
        let mut out = Vec::new();
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if watch_line_visible(&c, eps, &line) {
                out.extend_from_slice(&line);
            }
        }
        Ok::<Bytes, axum::Error>(Bytes::from(out))
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

fn watch_line_visible(c: &Claims, eps: &mut HashSet<String>, line: &[u8]) -> bool {
    let Ok(ev) = serde_json::from_slice::<model::agent::WatchEvent>(line) else {
        return false;
    };
    use model::agent::WatchEventType as T;
    match (ev.event_type, ev.kind.as_str()) {
        (T::Synced | T::Error, _) => true,
        (T::Put, "endpoint") => {
            let tenant = ev
                .value
                .as_ref()
                .and_then(|v| v.get("tenantName"))
                .and_then(|t| t.as_str())
                .unwrap_or_default();
            if c.has_tenant(tenant) {
                eps.insert(ev.key);
                true
            } else {
                false
            }
        }
        (T::Delete, "endpoint") => eps.remove(&ev.key),
        (_, kind) => policy::ops_sees_event(c, kind, &ev.key),
    }
}

/// Names of users, tokens and nodes follow Contiv's naming rule (they become store keys).
fn check_name(action: &str, field: &str, v: &str) -> Result<(), ApiError> {
    if model::names::is_valid_name(v, 64) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "{action}: invalid {field} '{v}': use {}, at most 64 characters",
        model::names::NAME_RULE
    )))
}

#[derive(Deserialize)]
struct LoginRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /api/v1/auth_proxy/login/`: auth_proxy's login; answers `{"token": ...}`.
async fn login(
    State(a): State<Arc<Auth>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r: LoginRequest = parse_body(&body)?;
    if r.username.is_empty() || r.password.is_empty() {
        return Err(ApiError::bad_request(
            "username and password must be provided",
        ));
    }
    let token = a.login(&r.username, &r.password).await?;
    Ok(Json(serde_json::json!({ "token": token })))
}

#[derive(Deserialize)]
struct JoinRequest {
    hostname: String,
    #[serde(rename = "joinToken")]
    join_token: String,
}

/// `POST /api/v1/auth_proxy/join/`: a node presents the join token and gets its credential.
async fn join(
    State(a): State<Arc<Auth>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r: JoinRequest = parse_body(&body)?;
    check_name("join", "hostname", &r.hostname)?;
    let token = a.join(&r.hostname, &r.join_token).await?;
    tracing::info!(node = %r.hostname, "node joined");
    Ok(Json(serde_json::json!({
        "token": token,
        "expiresIn": a.opts.node_token_ttl.as_secs(),
    })))
}

async fn list_users(State(a): State<Arc<Auth>>) -> Result<Json<Vec<LocalUser>>, ApiError> {
    Ok(Json(a.users().await?.iter().map(LocalUser::from).collect()))
}

async fn get_user(
    State(a): State<Arc<Auth>>,
    Path(name): Path<String>,
) -> Result<Json<LocalUser>, ApiError> {
    a.user(&name)
        .await?
        .map(|u| Json(LocalUser::from(&u)))
        .ok_or_else(|| ApiError::not_found(format!("no local user {name}")))
}

#[derive(Deserialize)]
struct UserRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    tenants: Option<Vec<String>>,
    #[serde(default)]
    disable: Option<bool>,
}

fn check_user_role(role: Role, tenants: &[String]) -> Result<(), ApiError> {
    match role {
        Role::Node => Err(ApiError::bad_request(
            "role node is for agents, which join with the join token; a user is admin or ops",
        )),
        Role::Ops if tenants.is_empty() => Err(ApiError::bad_request(
            "an ops user needs \"tenants\": the tenants it may act on (\"*\" for every tenant)",
        )),
        _ => Ok(()),
    }
}

fn check_password(p: &str) -> Result<(), ApiError> {
    if p.chars().count() < 8 {
        return Err(ApiError::bad_request(
            "the password is too short: give at least 8 characters",
        ));
    }
    Ok(())
}

/// `POST /api/v1/auth_proxy/local_users/`: `{"username", "password", "role", "tenants"}`.
async fn create_user(
    State(a): State<Arc<Auth>>,
    body: Bytes,
) -> Result<(StatusCode, Json<LocalUser>), ApiError> {
    let r: UserRequest = parse_body(&body)?;
    check_name("create user", "username", &r.username)?;
    let password = r.password.ok_or_else(|| {
        ApiError::bad_request(format!("create user {}: give a password", r.username))
    })?;
    check_password(&password)?;
    let role = r.role.unwrap_or(Role::Ops);
    let tenants = r.tenants.unwrap_or_default();
    check_user_role(role, &tenants)?;
    let user = StoredUser {
        username: r.username.clone(),
        role,
        tenants,
        password_hash: hash_blocking(password).await?,
        disable: r.disable.unwrap_or(false),
    };
    if !a.create_user(&user).await? {
        return Err(ApiError::conflict(format!(
            "local user {} exists: change it with PATCH /api/v1/auth_proxy/local_users/{}/",
            r.username, r.username
        )));
    }
    Ok((StatusCode::CREATED, Json(LocalUser::from(&user))))
}

async fn hash_blocking(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || super::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(format!("hash a password: {e}")))?
        .map_err(ApiError::from)
}

/// `PATCH` (or `PUT`) `/api/v1/auth_proxy/local_users/<name>/`: the fields given change.
async fn update_user(
    State(a): State<Arc<Auth>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<LocalUser>, ApiError> {
    let r: UserRequest = parse_body(&body)?;
    let mut user = a
        .user(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no local user {name}")))?;
    if let Some(p) = r.password {
        check_password(&p)?;
        user.password_hash = hash_blocking(p).await?;
    }
    if let Some(role) = r.role {
        user.role = role;
    }
    if let Some(t) = r.tenants {
        user.tenants = t;
    }
    if let Some(d) = r.disable {
        user.disable = d;
    }
    check_user_role(user.role, &user.tenants)?;
    a.put_user(&user).await?;
    Ok(Json(LocalUser::from(&user)))
}

async fn delete_user(
    State(a): State<Arc<Auth>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !a.delete_user(&name).await? {
        return Err(ApiError::not_found(format!("no local user {name}")));
    }
    Ok(Json(serde_json::Value::String(name)))
}

#[derive(Deserialize)]
struct TokenRequest {
    name: String,
    role: Role,
    #[serde(default)]
    tenants: Vec<String>,
    /// Seconds the token lives.
    #[serde(rename = "ttlSeconds")]
    ttl_seconds: u64,
}

/// `POST /api/v1/auth_proxy/tokens/`: an API token for automation, with a role and a lifetime.
async fn create_token(
    State(a): State<Arc<Auth>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r: TokenRequest = parse_body(&body)?;
    check_name("create token", "name", &r.name)?;
    check_user_role(r.role, &r.tenants)?;
    if r.ttl_seconds == 0 {
        return Err(ApiError::bad_request(
            "create token: ttlSeconds must be more than 0 (tokens always expire)",
        ));
    }
    let token = a.issue_for(
        &r.name,
        r.role,
        r.tenants,
        Duration::from_secs(r.ttl_seconds),
    );
    Ok(Json(serde_json::json!({
        "token": token,
        "expires": super::now() + r.ttl_seconds,
    })))
}

/// `POST /api/v1/auth_proxy/join_token/`: a new join token (the old one stops working).
async fn rotate_join_token(
    State(a): State<Arc<Auth>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t = a.rotate_join_token().await?;
    Ok(Json(serde_json::json!({ "joinToken": t })))
}
