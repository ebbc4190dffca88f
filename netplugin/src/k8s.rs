//! Reads a pod's labels from the Kubernetes API, for placement (`io.contiv.tenant`,
//! `io.contiv.network`, `io.contiv.net-group`) and for service selectors.

use std::collections::BTreeMap;
use std::time::Duration;

pub const LABEL_TENANT: &str = "io.contiv.tenant";
pub const LABEL_NETWORK: &str = "io.contiv.network";
pub const LABEL_GROUP: &str = "io.contiv.net-group";

#[derive(Clone)]
pub struct KubeClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("read pod {pod} from the Kubernetes API at {api}: {reason}")]
    Request {
        pod: String,
        api: String,
        reason: String,
    },
}

impl KubeClient {
    /// `api`: the API server's base URL; `token`: a bearer token, if the server wants one.
    pub fn new(api: &str, token: Option<String>) -> Result<Self, String> {
        if !api.starts_with("http://") {
            return Err(format!(
                "Kubernetes API URL '{api}': only http:// is supported by this build (TLS comes later)"
            ));
        }
        // model builds reqwest with rustls and no default crypto provider: install ring.
        model::install_default_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(KubeClient {
            base: api.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// The pod's labels; None when the pod does not exist (it may be gone already).
    pub async fn pod_labels(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, KubeError> {
        let url = format!("{}/api/v1/namespaces/{namespace}/pods/{name}", self.base);
        let err = |reason: String| KubeError::Request {
            pod: format!("{namespace}/{name}"),
            api: self.base.clone(),
            reason,
        };
        let mut req = self.http.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| err(e.to_string()))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(err(format!("answered {}", resp.status())));
        }
        let v: serde_json::Value = resp.json().await.map_err(|e| err(e.to_string()))?;
        let labels = v["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(labels))
    }
}
