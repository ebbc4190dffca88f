//! A typed client of the netmaster REST API, used by netctl, the agent and the tests.

use crate::agent::{
    Endpoint, EndpointRequest, ErrorBody, HostAccessReport, Info, NodeLease, NodeRegistration,
    RuleStatsReport, SpoofStatsReport, VersionInfo, WatchEvent,
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
    /// The TLS handshake failed: most often a certificate this client does not trust.
    /// `hint` says what to do about it (which CA file to give, and where netmaster wrote it).
    #[error("TLS handshake with {url} failed: {reason}; {hint}")]
    Tls {
        url: String,
        reason: String,
        hint: String,
    },
    /// A TLS setting could not be used (an unreadable CA file).
    #[error("TLS setup: {0}")]
    TlsConfig(String),
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

/// Where netmaster writes its cluster CA's certificate with the default data dir
/// (`<data dir>/tls/ca.pem`): clients on a master's host trust it by default.
pub const DEFAULT_NETMASTER_CA: &str = "/var/lib/contiv/tls/ca.pem";

/// The CA file for clients given none: [`DEFAULT_NETMASTER_CA`] when one of `urls`
/// (comma-separated) is https and the file can be read (this is a master's host).
pub fn default_ca_file(urls: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(DEFAULT_NETMASTER_CA);
    (urls.split(',').any(|u| u.trim().starts_with("https://")) && std::fs::File::open(p).is_ok())
        .then(|| p.to_path_buf())
}

/// What to tell the user when the TLS handshake with a netmaster failed with `e`, having trusted
/// the system's CAs and `ca_file`.
fn tls_hint(e: &rustls::Error, ca_file: Option<&std::path::Path>) -> String {
    use rustls::{CertificateError, Error};
    let give_ca = format!(
        "give netmaster's CA with --cacert FILE (netplugin: --netmaster-cacert FILE): every netmaster writes it to tls/ca.pem under its data dir ({DEFAULT_NETMASTER_CA} by default) and logs its fingerprint at start; or skip the check with --insecure"
    );
    match e {
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the certificate is not for the name or address in the URL: use one it holds (localhost, 127.0.0.1, the host's name, netmaster's --advertise-url host), or add it with netmaster --tls-san and restart netmaster".into()
        }
        Error::InvalidCertificate(_) => match ca_file {
            Some(ca) => format!(
                "the CA in {} did not sign this certificate: {give_ca}",
                ca.display()
            ),
            None => format!("this client trusts only the system's CAs: {give_ca}"),
        },
        Error::InvalidMessage(_) => {
            "the server does not answer in TLS: if netmaster runs with --tls off, use an http:// URL".into()
        }
        _ => give_ca,
    }
}

/// How a [`Client`] talks https. `Default` is what [`Client::new`] uses: the system's CAs, no
/// token.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Do not check the server's certificate (https only).
    pub insecure: bool,
    /// A PEM file of CA certificates to trust besides the system's (https only).
    pub ca_file: Option<std::path::PathBuf>,
    /// Sent as `x-auth-token` on every request over https or a unix socket (never in clear
    /// over the network): auth_proxy's token, or netmaster's.
    pub auth_token: Option<String>,
}

/// A netmaster client. Several URLs may be given: requests go to the first that answers, and
/// keep going there until it stops answering (or answers 503: unavailable, such as a netmaster
/// cut off from etcd, when another one may serve).
#[derive(Clone)]
pub struct Client {
    targets: Arc<Vec<Target>>,
    urls: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
    /// The `x-auth-token` header to send to secure targets; replaced by [`Client::set_auth_token`]
    /// (an agent renews its node credential), seen by every clone.
    token: Arc<std::sync::RwLock<Option<reqwest::header::HeaderValue>>>,
}

/// One netmaster address: `http(s)://host:port`, or `unix:///path/to/socket`.
struct Target {
    /// As the user wrote it, for messages.
    url: String,
    /// What request paths are appended to.
    base: String,
    http: reqwest::Client,
    /// https or a unix socket: the token may be sent.
    secure: bool,
    /// The CA file trusted besides the system's (https), for error messages.
    ca_file: Option<std::path::PathBuf>,
}

fn header_token(t: &str) -> Result<reqwest::header::HeaderValue, ClientError> {
    let mut v = reqwest::header::HeaderValue::from_str(t.trim())
        .map_err(|_| ClientError::TlsConfig("the auth token is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
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

/// The rustls error behind a request error, if the request failed in the TLS handshake.
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.clone());
        }
        // The rustls error comes inside io errors (one in another), whose `source` skips it.
        let mut io = err.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(|i| i.get_ref()) {
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(t.clone());
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        cur = err.source();
    }
    None
}

/// TLS configuration (rustls with the ring provider) and the verifiers it uses.
mod tls {
    use super::{ClientError, ClientOptions};
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use std::sync::Arc;

    pub fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// Makes ring the process's default rustls provider, unless one is set already.
    ///
    /// reqwest is built with `rustls-no-provider`, so a `reqwest::Client` built elsewhere in a
    /// program that links this crate without `use_preconfigured_tls` needs a default provider.
    pub fn install_default_provider() {
        if CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    }

    /// The config of an https target: the system's CAs plus `ca_file`, or no check at all.
    pub fn https_config(opts: &ClientOptions) -> Result<rustls::ClientConfig, ClientError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::TlsConfig(e.to_string()))?;
        let config = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerifier(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        } else {
            let mut extra = Vec::new();
            if let Some(path) = &opts.ca_file {
                let bad = |reason: String| {
                    ClientError::TlsConfig(format!("CA file {}: {reason}", path.display()))
                };
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                    extra.push(cert.map_err(|e| bad(e.to_string()))?);
                }
                if extra.is_empty() {
                    return Err(bad("no PEM certificate in it".into()));
                }
            }
            let verifier =
                rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
                    .map_err(|e| ClientError::TlsConfig(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        };
        Ok(config)
    }

    /// The config of an http or unix target, which never does TLS: should a redirect lead to
    /// https, every certificate is refused.
    pub fn plain_config() -> rustls::ClientConfig {
        let provider = provider();
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RefuseAll(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    }

    /// `--insecure`: any certificate is accepted (the handshake signatures are still checked).
    #[derive(Debug)]
    struct NoVerifier(WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for NoVerifier {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    /// For targets that were not given as https.
    #[derive(Debug)]
    struct RefuseAll(WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for RefuseAll {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Err(rustls::Error::General(
                "TLS is not set up for a netmaster given as http://".into(),
            ))
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }
}

/// Makes ring the process's default rustls crypto provider, unless one is set already.
///
/// This crate builds reqwest with rustls and no provider of its own choosing, and [`Client`]
/// configures its TLS itself. A `reqwest::Client` built elsewhere in the same program (tests,
/// other clients) without `use_preconfigured_tls` needs a process default: call this first.
/// Building a [`Client`] calls it too.
pub fn install_default_tls_provider() {
    tls::install_default_provider();
}

/// The rustls configuration a [`Client`] uses for https with `opts` (the system's CAs plus
/// `opts.ca_file`), for other HTTP clients that talk to netmaster (a follower forwarding a write
/// to the leader).
pub fn https_tls_config(opts: &ClientOptions) -> Result<rustls::ClientConfig, ClientError> {
    tls::https_config(opts)
}

impl Client {
    /// `urls`: one or more base URLs (`http://host:9999`, `https://host:10000`, or
    /// `unix:///run/contiv/netmaster.sock`), tried in order; each may itself be a
    /// comma-separated list. https uses the system's CAs; see [`Client::with_options`].
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Result<Self, ClientError> {
        Self::with_options(urls, &ClientOptions::default())
    }

    /// Like [`Client::new`], with the https settings of `opts`.
    pub fn with_options<S: AsRef<str>>(
        urls: &[S],
        opts: &ClientOptions,
    ) -> Result<Self, ClientError> {
        tls::install_default_provider();
        let mut targets = Vec::new();
        for u in urls {
            for u in u
                .as_ref()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                targets.push(Self::target(u, opts)?);
            }
        }
        if targets.is_empty() {
            return Err(ClientError::BadUrl {
                url: String::new(),
                reason: "no URL given".into(),
            });
        }
        let token = opts.auth_token.as_deref().map(header_token).transpose()?;
        Ok(Client {
            urls: Arc::new(targets.iter().map(|t| t.url.clone()).collect()),
            targets: Arc::new(targets),
            current: Arc::new(AtomicUsize::new(0)),
            token: Arc::new(std::sync::RwLock::new(token)),
        })
    }

    fn target(u: &str, opts: &ClientOptions) -> Result<Target, ClientError> {
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
                .use_preconfigured_tls(tls::plain_config())
                .build()
                .map_err(|e| bad(e.to_string()))?;
            return Ok(Target {
                url: u.to_string(),
                base: "http://localhost".into(),
                http,
                secure: true,
                ca_file: None,
            });
        }
        let parsed = reqwest::Url::parse(u).map_err(|e| bad(e.to_string()))?;
        let (config, secure) = match parsed.scheme() {
            "http" => (tls::plain_config(), false),
            "https" => (tls::https_config(opts)?, true),
            _ => {
                return Err(bad(
                    "must start with http:// or https:// (or unix:// for a local socket)".into(),
                ));
            }
        };
        let http = builder
            .use_preconfigured_tls(config)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let base = u.trim_end_matches('/').to_string();
        Ok(Target {
            url: base.clone(),
            base,
            http,
            secure,
            ca_file: opts.ca_file.clone(),
        })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Replaces the token sent to https and unix-socket targets (this client and its clones).
    pub fn set_auth_token(&self, token: &str) -> Result<(), ClientError> {
        let v = header_token(token)?;
        *self.token.write().expect("token lock") = Some(v);
        Ok(())
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
        // A netmaster that answers 503 (it lost etcd, or no leader is elected yet) may be alone
        // in its trouble: the next URL is tried, and the last 503 returned if none does better.
        let mut unavailable = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let t = &self.targets[idx];
            let url = format!("{}{}", t.base, path);
            let mut req = t.http.request(method.clone(), &url);
            if t.secure
                && let Some(token) = self.token.read().expect("token lock").clone()
            {
                req = req.header("x-auth-token", token);
            }
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            match req.send().await {
                Ok(resp)
                    if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE && i + 1 < n =>
                {
                    unavailable = Some((url, resp));
                }
                Ok(resp) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok((url, resp));
                }
                Err(e) if tls_cause(&e).is_some() => {
                    // Another URL would not help the user fix this: say it now.
                    let cause = tls_cause(&e).expect("checked");
                    return Err(ClientError::Tls {
                        url: t.url.clone(),
                        reason: cause.to_string(),
                        hint: tls_hint(&cause, t.ca_file.as_deref()),
                    });
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
        match unavailable {
            Some(answer) => Ok(answer),
            None => Err(last_err.expect("at least one url")),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (url, bytes) = self.call_raw(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// Sends a request; on success returns the URL asked and the body as received.
    async fn call_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(String, bytes::Bytes), ClientError> {
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
        Ok((url, bytes))
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

    /// `POST /api/v1/auth_proxy/login/` with `{"username","password"}` (Contiv's auth_proxy).
    /// Returns auth_proxy's answer as received (`{"token":"…"}`), after checking that it
    /// holds a token.
    pub async fn login(&self, username: &str, password: &str) -> Result<Vec<u8>, ClientError> {
        let body = serde_json::json!({ "username": username, "password": password });
        let (url, bytes) = self
            .call_raw(
                reqwest::Method::POST,
                "/api/v1/auth_proxy/login/",
                Self::json(&body),
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            #[allow(dead_code)]
            token: String,
        }
        serde_json::from_slice::<Answer>(&bytes).map_err(|e| ClientError::Decode {
            url,
            reason: format!("no token in the login answer: {e}"),
        })?;
        Ok(bytes.to_vec())
    }

    /// `POST /api/v1/auth_proxy/tokens/`: an API token for automation, named `name`, of `role`
    /// (`admin` or `ops`) on `tenants` (ops: `*` is every tenant), living `ttl_seconds`.
    /// Returns the token and when it expires (seconds since the epoch).
    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
        tenants: &[String],
        ttl_seconds: u64,
    ) -> Result<(String, u64), ClientError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            token: String,
            expires: u64,
        }
        let body = serde_json::json!({
            "name": name, "role": role, "tenants": tenants, "ttlSeconds": ttl_seconds,
        });
        let a: Answer = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth_proxy/tokens/",
                Self::json(&body),
            )
            .await?;
        Ok((a.token, a.expires))
    }

    /// Presents the cluster's join token for `hostname`; returns netmaster's node credential and
    /// how many seconds it lives.
    pub async fn join(
        &self,
        hostname: &str,
        join_token: &str,
    ) -> Result<(String, u64), ClientError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            token: String,
            #[serde(rename = "expiresIn")]
            expires_in: u64,
        }
        let body = serde_json::json!({ "hostname": hostname, "joinToken": join_token.trim() });
        let a: Answer = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth_proxy/join/",
                Self::json(&body),
            )
            .await?;
        Ok((a.token, a.expires_in))
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

    /// Reports the node's rule counters (replacing its previous report).
    pub async fn report_rule_stats(&self, r: &RuleStatsReport) -> Result<(), ClientError> {
        self.report_counters(&r.hostname, "rulestats", r).await
    }

    /// Reports the node's per-endpoint anti-spoofing drops (replacing its previous report).
    pub async fn report_spoof_stats(&self, r: &SpoofStatsReport) -> Result<(), ClientError> {
        self.report_counters(&r.hostname, "spoofstats", r).await
    }

    pub async fn report_host_access(&self, r: &HostAccessReport) -> Result<(), ClientError> {
        self.report_counters(&r.hostname, "hostaccess", r).await
    }

    /// `PUT /api/v1/nodes/<host>/<what>/`: one of a node's counter reports.
    async fn report_counters<T: Serialize>(
        &self,
        host: &str,
        what: &str,
        body: &T,
    ) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(
            reqwest::Method::PUT,
            &format!("/api/v1/nodes/{host}/{what}/"),
            Self::json(body),
        )
        .await
        .map(drop)
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
        Ok(self.watch_for(from, None).await?.1)
    }

    /// [`Self::watch`], or with `node`, the stream of what concerns that node (every object but
    /// endpoints, and the endpoints of the networks where it has one). The flag says whether
    /// netmaster filtered it (a netmaster that does not know `node` sends everything).
    pub async fn watch_for(
        &self,
        from: Option<u64>,
        node: Option<&str>,
    ) -> Result<
        (
            bool,
            impl Stream<Item = Result<WatchEvent, ClientError>> + use<>,
        ),
        ClientError,
    > {
        let mut query = Vec::new();
        if let Some(r) = from {
            query.push(format!("revision={r}"));
        }
        if let Some(n) = node {
            // Node names are Contiv names (letters, digits, `-`, `_`, `.`): nothing to escape.
            query.push(format!("node={n}"));
        }
        let path = if query.is_empty() {
            "/api/v1/watch".to_string()
        } else {
            format!("/api/v1/watch?{}", query.join("&"))
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
        let filtered = node.is_some_and(|n| {
            resp.headers()
                .get(WATCH_NODE_HEADER)
                .is_some_and(|v| v.as_bytes() == n.as_bytes())
        });
        let url2 = url.clone();
        let bytes = resp.bytes_stream().map_err(move |e| ClientError::Decode {
            url: url2.clone(),
            reason: root_cause(&e),
        });
        Ok((filtered, ndjson(bytes, url)))
    }
}

/// The header a per-node watch stream answers with: the node's name.
pub const WATCH_NODE_HEADER: &str = "x-contiv-watch-node";

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
