//! Wire-level checks of the router: what Docker really sends (its content type, empty bodies,
//! unknown calls) and what it expects back. The backend here records calls; the real one is
//! exercised against a real dockerd in test-e2e/tests/docker.rs.

use super::*;
use axum::body::Body;
use axum::http::Request;
use std::sync::Mutex;
use tower::ServiceExt;

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Backend for Recorder {
    fn capabilities(&self) -> CapabilitiesResponse {
        CapabilitiesResponse {
            scope: "local".into(),
            connectivity_scope: "global".into(),
        }
    }
    async fn create_network(&self, r: CreateNetworkRequest) -> DriverResult<()> {
        let o = r.driver_options();
        self.calls.lock().unwrap().push(format!(
            "create {} tenant={}",
            r.network_id,
            o.get("tenant").cloned().unwrap_or_default()
        ));
        Ok(())
    }
    async fn delete_network(&self, r: NetworkRequest) -> DriverResult<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("delete {}", r.network_id));
        Ok(())
    }
    async fn create_endpoint(
        &self,
        _r: CreateEndpointRequest,
    ) -> DriverResult<CreateEndpointResponse> {
        Ok(CreateEndpointResponse::default())
    }
    async fn delete_endpoint(&self, _r: EndpointRequest) -> DriverResult<()> {
        Ok(())
    }
    async fn join(&self, _r: JoinRequest) -> DriverResult<JoinResponse> {
        Ok(JoinResponse {
            interface_name: InterfaceName {
                src_name: "vd1".into(),
                dst_prefix: "eth".into(),
            },
            gateway: "10.1.0.1".into(),
            ..Default::default()
        })
    }
    async fn request_pool(&self, r: RequestPoolRequest) -> DriverResult<RequestPoolResponse> {
        if r.pool.is_empty() {
            return Err(DriverError::new("give --subnet"));
        }
        Ok(RequestPoolResponse {
            pool_id: format!("p|{}", r.pool),
            pool: r.pool,
            data: Default::default(),
        })
    }
    async fn release_pool(&self, _r: ReleasePoolRequest) -> DriverResult<()> {
        Ok(())
    }
    async fn request_address(
        &self,
        r: RequestAddressRequest,
    ) -> DriverResult<RequestAddressResponse> {
        Ok(RequestAddressResponse {
            address: if r.is_gateway() {
                "10.1.0.1/24".into()
            } else {
                "10.1.0.2/24".into()
            },
            data: Default::default(),
        })
    }
    async fn release_address(&self, _r: ReleaseAddressRequest) -> DriverResult<()> {
        Ok(())
    }
}

async fn call(b: Arc<Recorder>, path: &str, body: &str) -> (u16, serde_json::Value) {
    let req = Request::post(path)
        .header("content-type", CONTENT_TYPE)
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = router(b).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn activate_and_capabilities() {
    let b = Arc::new(Recorder::default());
    let (s, v) = call(b.clone(), "/Plugin.Activate", "").await;
    assert_eq!(s, 200);
    assert_eq!(
        v["Implements"],
        serde_json::json!(["NetworkDriver", "IpamDriver"])
    );
    let (s, v) = call(b.clone(), "/NetworkDriver.GetCapabilities", "").await;
    assert_eq!(s, 200);
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["ConnectivityScope"], "global");
    let (_, v) = call(b, "/IpamDriver.GetDefaultAddressSpaces", "{}").await;
    assert_eq!(v["LocalDefaultAddressSpace"], "contiv-local");
}

#[tokio::test]
async fn create_network_reads_docker_options() {
    let b = Arc::new(Recorder::default());
    // As dockerd 20.10 sends it.
    let body = r#"{"NetworkID":"abc","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"tenant":"blue"}},"IPv4Data":[{"AddressSpace":"contiv-local","Gateway":"10.1.0.1/24","Pool":"10.1.0.0/24"}],"IPv6Data":[]}"#;
    let (s, v) = call(b.clone(), "/NetworkDriver.CreateNetwork", body).await;
    assert_eq!((s, v), (200, serde_json::json!({})));
    let (s, _) = call(
        b.clone(),
        "/NetworkDriver.DeleteNetwork",
        r#"{"NetworkID":"abc"}"#,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        *b.calls.lock().unwrap(),
        vec!["create abc tenant=blue".to_string(), "delete abc".into()]
    );
}

#[tokio::test]
async fn errors_are_err_objects() {
    let b = Arc::new(Recorder::default());
    let (s, v) = call(
        b.clone(),
        "/IpamDriver.RequestPool",
        r#"{"AddressSpace":"contiv-local"}"#,
    )
    .await;
    assert_eq!(s, 500);
    assert_eq!(v, serde_json::json!({"Err": "give --subnet"}));
    let (s, v) = call(b.clone(), "/NetworkDriver.CreateNetwork", "not json").await;
    assert_eq!(s, 500);
    assert!(
        v["Err"]
            .as_str()
            .unwrap()
            .contains("NetworkDriver.CreateNetwork"),
        "{v}"
    );
    let (s, v) = call(b, "/NetworkDriver.Bogus", "{}").await;
    assert_eq!(s, 404);
    assert!(
        v["Err"].as_str().unwrap().contains("NetworkDriver.Bogus"),
        "{v}"
    );
}

/// What axum would refuse on its own comes back as `{"Err": ...}` too (issue 17 item 9).
#[tokio::test]
async fn refusals_before_a_call_are_err_objects() {
    let b: Arc<dyn Backend> = Arc::new(Recorder::default());
    let big = "x".repeat(MAX_BODY + 1);
    for (method, path, body, status, says) in [
        ("GET", "/Plugin.Activate", "", 405, "GET /Plugin.Activate"),
        ("POST", "/a/b", "{}", 404, "has no path /a/b"),
        ("POST", "/", "{}", 404, "has no path /"),
        (
            "POST",
            "/NetworkDriver.CreateNetwork",
            big.as_str(),
            413,
            "the limit is",
        ),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = router(b.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            v["Err"].as_str().is_some_and(|e| e.contains(says)),
            "{method} {path}: {v}"
        );
    }
}

#[tokio::test]
async fn gateway_requests_and_join() {
    let b = Arc::new(Recorder::default());
    let (_, v) = call(
        b.clone(),
        "/IpamDriver.RequestAddress",
        r#"{"PoolID":"p|10.1.0.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#,
    )
    .await;
    assert_eq!(v["Address"], "10.1.0.1/24");
    // Go's nil maps arrive as null.
    let (s, v) = call(
        b.clone(),
        "/IpamDriver.RequestAddress",
        r#"{"PoolID":"p|10.1.0.0/24","Address":"","Options":null}"#,
    )
    .await;
    assert_eq!((s, &v["Address"]), (200, &serde_json::json!("10.1.0.2/24")));
    let (_, v) = call(
        b.clone(),
        "/NetworkDriver.Join",
        r#"{"NetworkID":"n","EndpointID":"e","SandboxKey":"/var/run/docker/netns/x","Options":{}}"#,
    )
    .await;
    assert_eq!(
        v["InterfaceName"],
        serde_json::json!({"SrcName": "vd1", "DstPrefix": "eth"})
    );
    assert_eq!(v["Gateway"], "10.1.0.1");
    for empty in [
        "/NetworkDriver.Leave",
        "/NetworkDriver.DiscoverNew",
        "/NetworkDriver.ProgramExternalConnectivity",
        "/NetworkDriver.RevokeExternalConnectivity",
        "/IpamDriver.ReleaseAddress",
        "/IpamDriver.ReleasePool",
        "/NetworkDriver.FreeNetwork",
    ] {
        let (s, v) = call(b.clone(), empty, "").await;
        assert_eq!((s, v), (200, serde_json::json!({})), "{empty}");
    }
}

/// Sends `raw` bytes to the plugin socket and reads the whole answer (the server closes the
/// connection after these refusals): (status, headers, body).
async fn raw_call(socket: &std::path::Path, raw: &[u8]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    // hyper may answer and close before it has read all of a large request: a failed write
    // is fine, the answer is what counts.
    let _ = s.write_all(raw).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out).to_string();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// What hyper refuses before the router (a request line that is not HTTP, a URL or headers over
/// its limits) gets a `{"Err": ...}` body on the real socket too, not a bare status.
#[tokio::test]
async fn unparsable_requests_on_the_socket_get_err_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plugins").join("t.sock");
    let server = tokio::spawn({
        let socket = socket.clone();
        async move { serve(Arc::new(Recorder::default()), &socket).await }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::UnixStream::connect(&socket).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the socket never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let long_url = format!("POST /{} HTTP/1.1\r\nhost: a\r\n\r\n", "x".repeat(70_000));
    let large_header = format!(
        "POST /Plugin.Activate HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "v".repeat(600_000)
    );
    for (req, status, says) in [
        ("NOT HTTP AT ALL\r\n\r\n", 400, "not valid HTTP"),
        (long_url.as_str(), 414, "URL is longer"),
        (large_header.as_str(), 431, "headers are too large"),
    ] {
        let what = &req[..20.min(req.len())];
        let (s, head, body) = raw_call(&socket, req.as_bytes()).await;
        assert_eq!(s, status, "{what}: {head}\n{body}");
        assert!(
            head.contains(&format!("content-type: {CONTENT_TYPE}")),
            "{what}: {head}"
        );
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {body:?}"));
        assert!(
            v["Err"].as_str().is_some_and(|e| e.contains(says)),
            "{what}: {v}"
        );
    }
    // The wrapper leaves the protocol's own answers alone.
    let (s, _, body) = raw_call(
        &socket,
        b"POST /Plugin.Activate HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["Implements"],
        serde_json::json!(["NetworkDriver", "IpamDriver"])
    );
    server.abort();
}
