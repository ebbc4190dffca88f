//! A typed client of the netmaster REST API, used by netctl, the agent and the tests.

use crate::agent::{
    Endpoint, EndpointRequest, ErrorBody, Info, NodeLease, NodeRegistration, VersionInfo,
    WatchEvent,
};
use crate::objects::Object;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Serialize, de::DeserializeOwned};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No netmaster answered.
    #[error(
        "cannot reach netmaster at {url}: {reason} (is netmaster running? set --netmaster or NETMASTER)"
    )]
    Unreachable { url: String, reason: String },
    /// The netmaster refused the request; `message` is its own explanation.
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("invalid netmaster URL '{url}': {reason}")]
    BadUrl { url: String, reason: String },
    #[error("read answer of {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A netmaster client. Several URLs may be given: requests go to the first that answers, and
/// keep going there until it stops answering.
#[derive(Clone)]
pub struct Client {
    targets: Arc<Vec<Target>>,
    urls: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
}

/// One netmaster address: `http(s)://host:port`, or `unix:///path/to/socket`.
struct Target {
    /// As the user wrote it, for messages.
    url: String,
    /// What request paths are appended to.
    base: String,
    http: reqwest::Client,
}

/// The text of the innermost error, which is what a user can act on ("connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let s = cur.to_string();
    // io errors print as "Connection refused (os error 111)": keep the words.
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

impl Client {
    /// `urls`: one or more base URLs (`http://host:9999`, or `unix:///run/contiv/netmaster.sock`),
    /// tried in order; each may itself be a comma-separated list.
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Result<Self, ClientError> {
        let mut targets = Vec::new();
        for u in urls {
            for u in u
                .as_ref()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                targets.push(Self::target(u)?);
            }
        }
        if targets.is_empty() {
            return Err(ClientError::BadUrl {
                url: String::new(),
                reason: "no URL given".into(),
            });
        }
        Ok(Client {
            urls: Arc::new(targets.iter().map(|t| t.url.clone()).collect()),
            targets: Arc::new(targets),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn target(u: &str) -> Result<Target, ClientError> {
        let bad = |reason: String| ClientError::BadUrl {
            url: u.to_string(),
            reason,
        };
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(path) = u.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "a unix socket URL needs an absolute path: unix:///path".into(),
                ));
            }
            let http = builder
                .unix_socket(std::path::PathBuf::from(path))
                .build()
                .map_err(|e| bad(e.to_string()))?;
            return Ok(Target {
                url: u.to_string(),
                base: "http://localhost".into(),
                http,
            });
        }
        let parsed = reqwest::Url::parse(u).map_err(|e| bad(e.to_string()))?;
        match parsed.scheme() {
            "http" => {}
            "https" => {
                return Err(bad(
                    "https is not supported by this build yet; use http:// or unix://".into(),
                ));
            }
            _ => {
                return Err(bad(
                    "must start with http:// (or unix:// for a local socket)".into(),
                ));
            }
        }
        let http = builder.build().map_err(|e| bad(e.to_string()))?;
        let base = u.trim_end_matches('/').to_string();
        Ok(Target {
            url: base.clone(),
            base,
            http,
        })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Sends a request to the current URL, failing over to the next ones on connection errors.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<(String, reqwest::Response), ClientError> {
        let n = self.targets.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last_err = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let t = &self.targets[idx];
            let url = format!("{}{}", t.base, path);
            let mut req = t.http.request(method.clone(), &url);
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            match req.send().await {
                Ok(resp) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok((url, resp));
                }
                Err(e) if e.is_connect() || e.is_timeout() => {
                    let reason = if e.is_timeout() {
                        "timed out".to_string()
                    } else {
                        root_cause(&e)
                    };
                    last_err = Some(ClientError::Unreachable {
                        url: t.url.clone(),
                        reason,
                    });
                }
                Err(e) => {
                    return Err(ClientError::Unreachable {
                        url: t.url.clone(),
                        reason: root_cause(&e),
                    });
                }
            }
        }
        Err(last_err.expect("at least one url"))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (url, resp) = self
            .send(method, path, body, Some(Duration::from_secs(30)))
            .await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Decode {
            url: url.clone(),
            reason: root_cause(&e),
        })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| {
                    let t = String::from_utf8_lossy(&bytes).trim().to_string();
                    if t.is_empty() {
                        format!("netmaster answered {status}")
                    } else {
                        t
                    }
                });
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    fn json<B: Serialize>(b: &B) -> Option<Vec<u8>> {
        Some(serde_json::to_vec(b).expect("serializable"))
    }

    /// `GET /api/v1/<coll>/<key>/`
    pub async fn get<T: Object>(&self, key: &str) -> Result<T, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/{}/{}/", T::COLLECTION, key),
            None,
        )
        .await
    }

    /// `GET /api/v1/<coll>/`
    pub async fn list<T: Object>(&self) -> Result<Vec<T>, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/{}/", T::COLLECTION),
            None,
        )
        .await
    }

    /// `POST /api/v1/<coll>/<key>/`: create or update.
    pub async fn put<T: Object>(&self, obj: &T) -> Result<T, ClientError> {
        let key = obj.key();
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/{}/{}/", T::COLLECTION, key),
            Self::json(obj),
        )
        .await
    }

    /// `DELETE /api/v1/<coll>/<key>/`
    pub async fn delete<T: Object>(&self, key: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/{}/{}/", T::COLLECTION, key),
                None,
            )
            .await?;
        Ok(())
    }

    /// `GET /api/v1/inspect/<coll>/<key>/`: `{"Config":…,"Oper":…}`.
    pub async fn inspect<T: Object>(&self, key: &str) -> Result<serde_json::Value, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/inspect/{}/{}/", T::COLLECTION, key),
            None,
        )
        .await
    }

    /// `GET /api/v1/inspect/endpoints/<id>/`: by endpoint id, container id or name (substring).
    pub async fn inspect_endpoint(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/inspect/endpoints/{id}/"),
            None,
        )
        .await
    }

    pub async fn version(&self) -> Result<VersionInfo, ClientError> {
        self.call(reqwest::Method::GET, "/version", None).await
    }

    pub async fn info(&self) -> Result<Info, ClientError> {
        self.call(reqwest::Method::GET, "/info", None).await
    }

    /// Registers a node or renews its registration.
    pub async fn register_node(&self, reg: &NodeRegistration) -> Result<NodeLease, ClientError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/api/v1/nodes/{}/", reg.hostname),
            Self::json(reg),
        )
        .await
    }

    pub async fn create_endpoint(&self, req: &EndpointRequest) -> Result<Endpoint, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/endpoints/", Self::json(req))
            .await
    }

    pub async fn get_endpoint(&self, id: &str) -> Result<Endpoint, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/endpoints/{id}/"),
            None,
        )
        .await
    }

    /// Endpoints, all or those of one host.
    pub async fn list_endpoints(&self, host: Option<&str>) -> Result<Vec<Endpoint>, ClientError> {
        let path = match host {
            Some(h) => format!("/api/v1/endpoints/?host={h}"),
            None => "/api/v1/endpoints/".to_string(),
        };
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// Deletes an endpoint; deleting one that does not exist succeeds.
    pub async fn delete_endpoint(&self, id: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/endpoints/{id}/"),
                None,
            )
            .await?;
        Ok(())
    }

    /// The watch stream. `from`: None for a full listing (`put` events, then `synced`) followed by
    /// live events; `Some(rev)` to resume with the events from `rev` on.
    pub async fn watch(
        &self,
        from: Option<u64>,
    ) -> Result<impl Stream<Item = Result<WatchEvent, ClientError>> + use<>, ClientError> {
        let path = match from {
            Some(r) => format!("/api/v1/watch?revision={r}"),
            None => "/api/v1/watch".to_string(),
        };
        let (url, resp) = self.send(reqwest::Method::GET, &path, None, None).await?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.unwrap_or_default();
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("netmaster answered {status}"));
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        let url2 = url.clone();
        let bytes = resp.bytes_stream().map_err(move |e| ClientError::Decode {
            url: url2.clone(),
            reason: root_cause(&e),
        });
        Ok(ndjson(bytes, url))
    }
}

/// Splits a byte stream into lines and parses each as a [`WatchEvent`].
fn ndjson(
    bytes: impl Stream<Item = Result<bytes::Bytes, ClientError>> + Send + 'static,
    url: String,
) -> impl Stream<Item = Result<WatchEvent, ClientError>> {
    let state = (Box::pin(bytes), Vec::<u8>::new(), url);
    futures::stream::unfold(state, |(mut bytes, mut buf, url)| async move {
        loop {
            if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let ev =
                    serde_json::from_slice::<WatchEvent>(&line).map_err(|e| ClientError::Decode {
                        url: url.clone(),
                        reason: e.to_string(),
                    });
                return Some((ev, (bytes, buf, url)));
            }
            match bytes.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Some((Err(e), (bytes, buf, url))),
                None => return None,
            }
        }
    })
}
