//! The HTTP API: Contiv's REST paths, inspect, the agent-facing endpoints and the watch stream.

use crate::error::{ApiError, ApiResult};
use crate::ops::{Master, parse_body};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use model::Kind;
use model::agent::{EndpointRequest, Info, NodeRegistration, VersionInfo};
use serde::Deserialize;
use std::sync::Arc;

/// Bodies larger than this are refused: no object comes near it.
pub const MAX_BODY: usize = 1 << 20;

type Shared = State<Arc<Master>>;

pub fn router(master: Arc<Master>) -> Router {
    let api = Router::new()
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/watch", get(watch))
        .route("/api/v1/nodes/", get(list_nodes))
        .route("/api/v1/nodes", get(list_nodes))
        .route(
            "/api/v1/nodes/{name}/",
            axum::routing::put(register_node).delete(unregister_node),
        )
        .route(
            "/api/v1/nodes/{name}",
            axum::routing::put(register_node).delete(unregister_node),
        )
        .route(
            "/api/v1/nodes/{name}/rulestats/",
            axum::routing::put(report_rule_stats),
        )
        .route(
            "/api/v1/nodes/{name}/rulestats",
            axum::routing::put(report_rule_stats),
        )
        .route(
            "/api/v1/nodes/{name}/spoofstats/",
            axum::routing::put(report_spoof_stats),
        )
        .route(
            "/api/v1/nodes/{name}/spoofstats",
            axum::routing::put(report_spoof_stats),
        )
        .route(
            "/api/v1/nodes/{name}/hostaccess/",
            axum::routing::put(report_host_access),
        )
        .route(
            "/api/v1/nodes/{name}/hostaccess",
            axum::routing::put(report_host_access),
        )
        .route(
            "/api/v1/endpoints/",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/api/v1/endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/api/v1/endpoints/{id}/",
            get(get_endpoint).delete(delete_endpoint),
        )
        .route(
            "/api/v1/endpoints/{id}",
            get(get_endpoint).delete(delete_endpoint),
        )
        .route("/api/v1/inspect/endpoints/{id}/", get(inspect_endpoint))
        .route("/api/v1/inspect/endpoints/{id}", get(inspect_endpoint))
        .route("/api/v1/inspect/{coll}/{key}/", get(inspect))
        .route("/api/v1/inspect/{coll}/{key}", get(inspect))
        .route("/api/v1/{coll}/", get(list))
        .route("/api/v1/{coll}", get(list))
        .route(
            "/api/v1/{coll}/{key}/",
            get(get_one).post(upsert).put(upsert).delete(delete),
        )
        .route(
            "/api/v1/{coll}/{key}",
            get(get_one).post(upsert).put(upsert).delete(delete),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            master.clone(),
            route_writes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            master.clone(),
            detach_writes,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(master);
    // Around the whole router rather than each route, so that it sees answers whole: a 405's
    // Allow header is added by the path's method router, outside the route's own layers.
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::from_fn(errors_as_json))
}

fn body_too_large() -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("the request body is larger than the limit of {MAX_BODY} bytes"),
    }
}

/// Every error answer is `{"error": "..."}`: axum's own refusals (405 with its `Allow` header,
/// 413, a path that does not decode) come as plain text or empty; they get the same shape,
/// keeping their status and headers. hyper's, made before the router, are `parse_errors`' job.
async fn errors_as_json(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => body_too_large().message,
        StatusCode::METHOD_NOT_ALLOWED => format!(
            "this path does not take {method}; it takes {} (see /api/v1/openapi.json)",
            parts
                .headers
                .get(header::ALLOW)
                .and_then(|a| a.to_str().ok())
                .unwrap_or("other methods")
        ),
        _ if !text.is_empty() => text,
        _ => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_string(),
    };
    let mut out = ApiError { status, message }.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// Reads each request's body to its end before anything else, whatever the method, and runs
/// each write in a task of its own.
///
/// The body: a handler that takes none (a DELETE sent with one) would leave it unread, and
/// hyper would then close the keep-alive connection without a word.
///
/// The task: a write is a store transaction followed by its application to the state. Run in
/// the connection's own future, a client hanging up in between (hyper drops that future) would
/// leave the store written and the state not; in a task, every write that started runs to its
/// end whether or not anyone waits for the answer. `/info` counts the writes still running.
async fn detach_writes(
    State(m): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::extract::FromRequest;
    use axum::http::Method;
    let (parts, body) = req.into_parts();
    // Carries the DefaultBodyLimit layer's setting, which the extractor below reads.
    let mut limited = axum::extract::Request::new(body);
    *limited.extensions_mut() = parts.extensions.clone();
    let body = match Bytes::from_request(limited, &()).await {
        Ok(b) => b,
        Err(rejection) => {
            let mut resp = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                body_too_large().into_response()
            } else {
                ApiError {
                    status: rejection.status(),
                    message: format!("read the request body: {}", rejection.body_text()),
                }
                .into_response()
            };
            // The rest of the body is still on the wire: this connection cannot go on.
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return resp;
        }
    };
    let req = axum::extract::Request::from_parts(parts, Body::from(body));
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let running = WriteInFlight::new(m.clone());
    match tokio::spawn(async move {
        let _running = running;
        next.run(req).await
    })
    .await
    {
        Ok(resp) => resp,
        Err(e) => {
            // A panic: whatever the write did or did not do, the store has the truth.
            m.want_resync();
            ApiError::internal(format!(
                "the write failed inside netmaster ({e}); its state is reloaded from the store, retry"
            ))
            .into_response()
        }
    }
}

/// Counts a write in `writes_in_flight` for as long as it lives.
struct WriteInFlight(Arc<Master>);

impl WriteInFlight {
    fn new(m: Arc<Master>) -> Self {
        m.writes_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        WriteInFlight(m)
    }
}

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        self.0
            .writes_in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such path; the API is under /api/v1/ (see /api/v1/openapi.json)")
}

fn kind(coll: &str) -> ApiResult<Kind> {
    Kind::from_collection(coll).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.collection()).collect();
        ApiError::not_found(format!(
            "unknown collection '{coll}'; known: {}",
            known.join(", ")
        ))
    })
}

async fn version() -> Json<VersionInfo> {
    Json(version_info())
}

pub fn version_info() -> VersionInfo {
    VersionInfo {
        git_commit: option_env!("CONTIV_GIT_COMMIT")
            .unwrap_or("unknown")
            .to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        build_time: option_env!("CONTIV_BUILD_TIME")
            .unwrap_or("unknown")
            .to_string(),
    }
}

async fn info(State(m): Shared) -> ApiResult<Json<Info>> {
    let revision = m.store.revision().await?;
    let me = m.leadership.me.url.clone();
    let leader = m.leadership.leader().map(|l| l.url).unwrap_or_default();
    let masters = m.masters().await?;
    Ok(Json(Info {
        local_ip: me,
        leader_ip: leader,
        current_state: m.leadership.role().name().into(),
        netplugin_nodes: m.nodes().into_iter().map(|n| n.hostname).collect(),
        netmaster_nodes: masters,
        store: m.opts.store_kind.to_string(),
        revision,
        writes_in_flight: m
            .writes_in_flight
            .load(std::sync::atomic::Ordering::Acquire),
    }))
}

/// Set on requests a follower forwards, so that a request never goes round in circles.
const FORWARDED: &str = "x-contiv-forwarded-by";
/// On the leader's answer to a forwarded request: the revision its writes reached.
const REVISION: &str = "x-contiv-revision";

/// Writes go to the leader: a follower forwards every request that is not a read (and the reads
/// of state only the leader holds) to the
/// leader's advertised URL and relays the answer (proxying, so that curl users need not
/// follow redirects). While there is no leader, or the known one does not answer (it died and
/// its lease has not expired yet), the request waits for the next leader, up to a TTL and a
/// few seconds, and then gets a 503.
async fn route_writes(
    State(m): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    // A policy's inspect shows the rule counters the agents report, which only the leader
    // holds (they are not written to the store): it is served by the leader too.
    // So does an endpoint's, for its anti-spoofing drops and private address.
    let leaders_read = ["/api/v1/inspect/policys/", "/api/v1/inspect/endpoints/"]
        .iter()
        .any(|p| req.uri().path().starts_with(p));
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) && !leaders_read {
        return next.run(req).await;
    }
    if m.leadership.is_leader() {
        let forwarded = req.headers().contains_key(FORWARDED);
        let mut resp = next.run(req).await;
        if forwarded {
            // Tells the forwarding follower which revision to wait for before answering.
            let rev = m.last_commit.load(std::sync::atomic::Ordering::Acquire);
            resp.headers_mut()
                .insert(REVISION, header::HeaderValue::from(rev));
        }
        return resp;
    }
    let me = m.leadership.me.url.clone();
    if let Some(by) = req.headers().get(FORWARDED) {
        return ApiError::unavailable(format!(
            "netmaster {me} is not the leader but was handed a write by {}: the leadership is changing; retry in a few seconds",
            by.to_str().unwrap_or("?")
        ))
        .into_response();
    }
    let ttl = m
        .leadership
        .options
        .as_ref()
        .map(|o| o.ttl)
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + ttl + std::time::Duration::from_secs(3);
    let (parts, body) = req.into_parts();
    // Already read in full by detach_writes.
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return body_too_large().into_response(),
    };
    let mut changes = m.leadership.subscribe();
    let mut last_error = None;
    loop {
        // Marked before reading the view, so that a change during the forward is not missed.
        changes.mark_unchanged();
        if m.leadership.is_leader() {
            let req = axum::extract::Request::from_parts(parts, Body::from(body));
            return next.run(req).await;
        }
        if let Some(leader) = m.leadership.leader() {
            match forward(&m, &leader.url, &parts, body.clone()).await {
                Ok(r) => return r,
                Err(e) => last_error = Some(e),
            }
        }
        // Wait for a new leader (or a new record) and try again.
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return last_error
                .unwrap_or_else(|| {
                    ApiError::unavailable(format!(
                        "no netmaster leads right now (an election is under way, or etcd is unreachable from {me}); retry in a few seconds"
                    ))
                })
                .into_response();
        }
    }
}

/// The HTTP client a follower forwards writes with: over https it trusts the system's CAs and
/// `peer_ca` (the cluster CA, which issued every master's certificate).
pub(crate) fn forward_client(peer_ca: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context;
    let tls = model::https_tls_config(&model::ClientOptions {
        ca_file: peer_ca.map(Into::into),
        ..Default::default()
    })
    .context("set up TLS to the other netmasters")?;
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(60))
        .use_preconfigured_tls(tls)
        .build()
        .context("build the HTTP client that forwards writes to the leader")
}

async fn forward(
    m: &Master,
    leader: &str,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> ApiResult<Response> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{leader}{path}");
    let mut headers = parts.headers.clone();
    for h in [header::HOST, header::CONTENT_LENGTH, header::CONNECTION] {
        headers.remove(h);
    }
    headers.insert(
        FORWARDED,
        header::HeaderValue::from_str(&m.leadership.me.url)
            .unwrap_or(header::HeaderValue::from_static("follower")),
    );
    let resp = m
        .forward
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            // reqwest's own text ("error sending request") hides the cause, such as a
            // certificate this master does not trust: name every cause.
            let mut why = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                why = format!("{why}: {c}");
                cur = c.source();
            }
            ApiError::unavailable(format!(
                "forward {} {path} to the leader {leader}: {why}; retry in a few seconds",
                parts.method
            ))
        })?;
    let status = resp.status();
    let ctype = resp.headers().get(header::CONTENT_TYPE).cloned();
    let revision = resp
        .headers()
        .get(REVISION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = resp.bytes().await.map_err(|e| {
        ApiError::unavailable(format!(
            "read the answer of the leader {leader}: {e}; retry"
        ))
    })?;
    // Read your writes: the next read on this follower shows what the leader just wrote.
    if let Some(rev) = revision.filter(|_| status.is_success()) {
        m.wait_applied(rev, std::time::Duration::from_secs(2)).await;
    }
    let mut out = Response::builder().status(status);
    if let Some(c) = ctype {
        out = out.header(header::CONTENT_TYPE, c);
    }
    Ok(out
        .body(Body::from(bytes))
        .expect("a status and a content type make a valid response"))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document().to_string(),
    )
        .into_response()
}

async fn list(
    State(m): Shared,
    Path(coll): Path<String>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    Ok(Json(m.list(kind(&coll)?)))
}

async fn get_one(
    State(m): Shared,
    Path((coll, key)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(m.get(kind(&coll)?, &key)?))
}

async fn upsert(
    State(m): Shared,
    Path((coll, key)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(m.upsert(kind(&coll)?, &key, &body).await?))
}

async fn delete(
    State(m): Shared,
    Path((coll, key)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(m.delete(kind(&coll)?, &key).await?))
}

async fn inspect(
    State(m): Shared,
    Path((coll, key)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(m.inspect(kind(&coll)?, &key)?))
}

async fn inspect_endpoint(
    State(m): Shared,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(m.inspect_endpoint(&id)?))
}

async fn list_nodes(State(m): Shared) -> Json<Vec<model::agent::Node>> {
    Json(m.nodes())
}

async fn register_node(
    State(m): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<model::agent::NodeLease>> {
    let reg: NodeRegistration = parse_body(&body)?;
    Ok(Json(m.register_node(&name, &reg).await?))
}

async fn unregister_node(
    State(m): Shared,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    m.unregister_node(&name).await?;
    Ok(Json(serde_json::Value::String(name)))
}

async fn report_rule_stats(
    State(m): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    m.report_rule_stats(&name, parse_body(&body)?)?;
    Ok(Json(serde_json::Value::String(name)))
}

async fn report_spoof_stats(
    State(m): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    m.report_spoof_stats(&name, parse_body(&body)?)?;
    Ok(Json(serde_json::Value::String(name)))
}

async fn report_host_access(
    State(m): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    m.report_host_access(&name, parse_body(&body)?)?;
    Ok(Json(serde_json::Value::String(name)))
}

#[derive(Deserialize)]
struct HostFilter {
    host: Option<String>,
}

async fn list_endpoints(
    State(m): Shared,
    Query(q): Query<HostFilter>,
) -> Json<Vec<model::agent::Endpoint>> {
    Json(m.list_endpoints(q.host.as_deref()))
}

async fn create_endpoint(State(m): Shared, body: Bytes) -> ApiResult<Json<model::agent::Endpoint>> {
    let req: EndpointRequest = parse_body(&body)?;
    Ok(Json(m.create_endpoint(&req).await?))
}

async fn get_endpoint(
    State(m): Shared,
    Path(id): Path<String>,
) -> ApiResult<Json<model::agent::Endpoint>> {
    Ok(Json(m.get_endpoint(&id)?))
}

async fn delete_endpoint(
    State(m): Shared,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    m.delete_endpoint(&id).await?;
    Ok(Json(serde_json::Value::String(id)))
}

#[derive(Deserialize)]
pub struct WatchQuery {
    pub revision: Option<u64>,
    /// The per-node stream of this node (see `crate::watch`).
    pub node: Option<String>,
}

/// The header a per-node watch stream answers with (the node's name): an agent drops the
/// endpoints of a network it left only when the stream is filtered for it.
pub use model::client::WATCH_NODE_HEADER;

/// `GET /api/v1/watch[?revision=N][&node=H]`: newline-delimited JSON events. Without a
/// revision: every current object as a `put`, a `synced` line, then live events. With one: the
/// events from that revision on (inclusive), then live events; 410 when the revision is older
/// than the watch cache keeps. With a node: only what concerns that node (every object but
/// endpoints, and the endpoints of the networks where it has one). Served from the watch cache
/// (`crate::watch`): no store work per watcher.
async fn watch(State(m): Shared, Query(q): Query<WatchQuery>) -> ApiResult<Response> {
    let node = q.node.filter(|n| !n.is_empty());
    let stream = m.watch.watch_for(q.revision, node.as_deref()).await?;
    let mut resp = (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream.map(Ok::<Bytes, std::io::Error>)),
    )
        .into_response();
    if let Some(n) = node.and_then(|n| header::HeaderValue::from_str(&n).ok()) {
        resp.headers_mut().insert(WATCH_NODE_HEADER, n);
    }
    Ok(resp)
}
