//! Docker's remote network driver and IPAM driver protocols (libnetwork), served over HTTP on a
//! unix socket: the wire types ([`wire`]) and a router that decodes each call, hands it to a
//! [`Backend`] (the node agent implements it with its endpoint manager) and encodes the answer.
//!
//! Docker posts `application/vnd.docker.plugins.v1.2+json` bodies, sometimes empty ones: the
//! router parses the raw bytes (an empty body is `{}`) whatever the content type says. Failures
//! are `{"Err": "..."}` with status 500; Docker prints `Err` to the user after the call's name.

pub mod wire;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use wire::*;

/// The content type Docker's plugin client expects.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// A failure to show to the user: write it for a person (what, why, how to fix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(pub String);

impl DriverError {
    pub fn new(msg: impl Into<String>) -> Self {
        DriverError(msg.into())
    }
}

pub type DriverResult<T> = Result<T, DriverError>;

/// What the agent does for each call. Calls Contiv has nothing to do for have empty defaults.
/// Docker repeats calls and calls them in odd orders when it aborts half-way: every
/// implementation must accept a call for something already gone as success.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    fn capabilities(&self) -> CapabilitiesResponse;

    async fn create_network(&self, r: CreateNetworkRequest) -> DriverResult<()>;
    async fn delete_network(&self, r: NetworkRequest) -> DriverResult<()>;
    async fn allocate_network(
        &self,
        r: AllocateNetworkRequest,
    ) -> DriverResult<AllocateNetworkResponse> {
        Ok(AllocateNetworkResponse { options: r.options })
    }
    async fn free_network(&self, _r: NetworkRequest) -> DriverResult<()> {
        Ok(())
    }
    async fn create_endpoint(
        &self,
        r: CreateEndpointRequest,
    ) -> DriverResult<CreateEndpointResponse>;
    async fn delete_endpoint(&self, r: EndpointRequest) -> DriverResult<()>;
    async fn endpoint_oper_info(
        &self,
        _r: EndpointRequest,
    ) -> DriverResult<EndpointOperInfoResponse> {
        Ok(EndpointOperInfoResponse::default())
    }
    async fn join(&self, r: JoinRequest) -> DriverResult<JoinResponse>;
    async fn leave(&self, _r: EndpointRequest) -> DriverResult<()> {
        Ok(())
    }
    /// Docker's published ports (`docker run -p`) for the endpoint, in
    /// `Options["com.docker.network.portmap"]`.
    async fn program_external_connectivity(
        &self,
        _r: ExternalConnectivityRequest,
    ) -> DriverResult<()> {
        Ok(())
    }
    async fn revoke_external_connectivity(&self, _r: EndpointRequest) -> DriverResult<()> {
        Ok(())
    }

    async fn ipam_capabilities(&self) -> IpamCapabilitiesResponse {
        IpamCapabilitiesResponse::default()
    }
    async fn address_spaces(&self) -> AddressSpacesResponse {
        AddressSpacesResponse {
            local_default_address_space: "contiv-local".into(),
            global_default_address_space: "contiv-global".into(),
        }
    }
    async fn request_pool(&self, r: RequestPoolRequest) -> DriverResult<RequestPoolResponse>;
    async fn release_pool(&self, r: ReleasePoolRequest) -> DriverResult<()>;
    async fn request_address(
        &self,
        r: RequestAddressRequest,
    ) -> DriverResult<RequestAddressResponse>;
    async fn release_address(&self, r: ReleaseAddressRequest) -> DriverResult<()>;

    /// Told of every call of the protocol once answered (`call` is its name, `ok` whether it
    /// succeeded): the agent's metrics. Unknown calls are not told, so `call` takes a bounded set
    /// of values.
    fn observe(&self, _call: &str, _took: std::time::Duration, _ok: bool) {}
}

/// Request bodies larger than this are refused: libnetwork's calls are a few KiB at most.
pub const MAX_BODY: usize = 1 << 20;

/// The plugin's HTTP routes: `POST /<Interface>.<Method>`.
pub fn router(b: Arc<dyn Backend>) -> Router {
    let calls = Router::new()
        .route("/{call}", axum::routing::post(handle))
        .fallback(unknown_path)
        .with_state(b);
    // Around the whole router, so that it sees answers whole (a 405's Allow header is added
    // outside the route's own layers).
    Router::new()
        .fallback_service(calls)
        .layer(axum::middleware::from_fn(errors_as_err))
}

async fn unknown_path(uri: axum::http::Uri) -> Response {
    json(
        StatusCode::NOT_FOUND,
        &ErrorResponse {
            err: format!(
                "the Contiv plugin has no path {}: calls are POST /<Interface>.<Method>",
                uri.path()
            ),
        },
    )
}

/// Reads each request's body first (a request refused unread would make hyper close the
/// connection without a word), and gives every failure the protocol's `{"Err": "..."}` shape,
/// the ones axum makes itself (405, 413) included.
async fn errors_as_err(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            let mut resp = json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &ErrorResponse {
                    err: format!(
                        "read the request body of {}: {e} (the limit is {MAX_BODY} bytes)",
                        parts.uri.path()
                    ),
                },
            );
            // The rest of the body is still on the wire: this connection cannot go on.
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return resp;
        }
    };
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let resp = next
        .run(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(body),
        ))
        .await;
    let status = resp.status();
    let ours = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c == CONTENT_TYPE);
    if ours || status.is_success() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let err = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} {path}: the plugin's calls are POST /<Interface>.<Method>")
        }
        _ if !text.is_empty() => format!("{method} {path}: {text}"),
        _ => format!(
            "{method} {path}: {}",
            status.canonical_reason().unwrap_or("failed")
        ),
    };
    let mut out = json(status, &ErrorResponse { err });
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

fn reply<T: Serialize>(r: DriverResult<T>) -> Response {
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ErrorResponse { err: e.0 },
        ),
    }
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// Parses a request body: empty means every field at its default.
pub fn decode<T: DeserializeOwned>(call: &str, body: &[u8]) -> DriverResult<T> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        DriverError::new(format!(
            "the request body of {call} is not what libnetwork sends: {e}"
        ))
    })
}

/// `{}`: the answer of calls that return nothing.
#[derive(Serialize)]
struct Empty {}
const EMPTY: Empty = Empty {};

async fn handle(
    State(b): State<Arc<dyn Backend>>,
    Path(call): Path<String>,
    body: Bytes,
) -> Response {
    tracing::debug!(call = %call, body = %String::from_utf8_lossy(&body), "docker plugin call");
    let started = std::time::Instant::now();
    macro_rules! run {
        ($f:ident) => {
            match decode(&call, &body) {
                Ok(req) => reply(b.$f(req).await),
                Err(e) => reply::<()>(Err(e)),
            }
        };
        ($f:ident, empty) => {
            match decode(&call, &body) {
                Ok(req) => reply(b.$f(req).await.map(|()| EMPTY)),
                Err(e) => reply::<()>(Err(e)),
            }
        };
    }
    let resp = match call.as_str() {
        "Plugin.Activate" => reply(Ok(ActivateResponse {
            implements: vec!["NetworkDriver".into(), "IpamDriver".into()],
        })),
        "Plugin.Deactivate" => reply(Ok(EMPTY)),
        "NetworkDriver.GetCapabilities" => reply(Ok(b.capabilities())),
        "NetworkDriver.CreateNetwork" => run!(create_network, empty),
        "NetworkDriver.DeleteNetwork" => run!(delete_network, empty),
        "NetworkDriver.AllocateNetwork" => run!(allocate_network),
        "NetworkDriver.FreeNetwork" => run!(free_network, empty),
        "NetworkDriver.CreateEndpoint" => run!(create_endpoint),
        "NetworkDriver.DeleteEndpoint" => run!(delete_endpoint, empty),
        "NetworkDriver.EndpointOperInfo" => run!(endpoint_oper_info),
        "NetworkDriver.Join" => run!(join),
        "NetworkDriver.Leave" => run!(leave, empty),
        "NetworkDriver.ProgramExternalConnectivity" => run!(program_external_connectivity, empty),
        "NetworkDriver.RevokeExternalConnectivity" => run!(revoke_external_connectivity, empty),
        "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => reply(Ok(EMPTY)),
        "IpamDriver.GetCapabilities" => reply(Ok(b.ipam_capabilities().await)),
        "IpamDriver.GetDefaultAddressSpaces" => reply(Ok(b.address_spaces().await)),
        "IpamDriver.RequestPool" => run!(request_pool),
        "IpamDriver.ReleasePool" => run!(release_pool, empty),
        "IpamDriver.RequestAddress" => run!(request_address),
        "IpamDriver.ReleaseAddress" => run!(release_address, empty),
        other => {
            return json(
                StatusCode::NOT_FOUND,
                &ErrorResponse {
                    err: format!("the Contiv plugin does not implement {other}"),
                },
            );
        }
    };
    b.observe(&call, started.elapsed(), resp.status() == StatusCode::OK);
    if resp.status() == StatusCode::OK {
        tracing::debug!(call = %call, "docker plugin call done");
    } else {
        tracing::warn!(call = %call, "docker plugin call failed");
    }
    resp
}

/// Serves the plugin socket until the process ends. A socket file left by an earlier run is
/// replaced: nothing else may own this path.
pub async fn serve(b: Arc<dyn Backend>, socket: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(socket);
    let l = tokio::net::UnixListener::bind(socket)?;
    tracing::info!(socket = %socket.display(), "serving the Docker network and IPAM driver");
    serve_on(b, l).await
}

/// Serves the plugin protocol on a bound socket. A request hyper refuses before the router (a
/// request line that is not HTTP, a URL or headers over its limits) gets `{"Err": "..."}` too.
pub async fn serve_on(b: Arc<dyn Backend>, l: tokio::net::UnixListener) -> std::io::Result<()> {
    use model::parse_errors::{JsonParseErrors, Shape};
    axum::serve(JsonParseErrors::new(l, Shape::DockerErr), router(b)).await
}

#[cfg(test)]
mod tests;
