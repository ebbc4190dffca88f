//! TLS on netmaster's listener (rustls with ring): the certificate and key given, or one issued
//! at every start by the cluster's CA, so that the quick start stays one command.
//!
//! The cluster CA (certificate and key) is kept in the store under [`CA_STORE_KEY`]: the first
//! master to start makes it with a create-if-absent transaction, and every master of the cluster
//! (several on one etcd) issues its own server certificate from it, and trusts it when it
//! forwards writes to the leader. The store already holds the token signing key, so whoever reads
//! it owns the cluster either way: the CA key adds no new secret to protect (docs/decisions.md).
//! Each master writes the CA certificate to `<data dir>/tls/ca.pem` for the clients of its host
//! (netctl, netplugin) and logs its SHA-256 fingerprint to check it by.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::{Compare, Op, Store, Txn};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Where the CA certificate and this master's server certificate are written, under the data
/// dir.
pub const GENERATED_DIR: &str = "tls";
pub const CA_FILE: &str = "ca.pem";
/// The CA key an older netmaster kept beside `ca.pem` (before the CA moved to the store): taken
/// into the store at the first start of this version, so that clients keep trusting the same CA.
const OLD_CA_KEY_FILE: &str = "ca-key.pem";
const SERVER_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server-key.pem";
/// The store key of the cluster CA ([`ClusterCa`] as JSON).
pub const CA_STORE_KEY: &str = "/contiv/tls/ca";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action}: {reason}")]
    Pem { action: String, reason: String },
    #[error("make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("{action} {CA_STORE_KEY} in the store: {source}")]
    Store {
        action: &'static str,
        #[source]
        source: store::StoreError,
    },
    #[error(
        "the cluster CA in the store ({CA_STORE_KEY}) is unreadable: {0}; make a new one with `netmaster new-ca` (clients must then trust the new tls/ca.pem)"
    )]
    BadStoredCa(String),
}

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The server's certificate chain (PEM); with `key`. None: one issued by the cluster CA.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA of the client certificates to accept (clients without one still reach the API with
    /// a token).
    pub client_ca: Option<PathBuf>,
    /// With `cert`: the CA (PEM) the other masters' certificates are checked against when this
    /// one forwards writes to the leader, besides the system's.
    pub peer_ca: Option<PathBuf>,
    /// The data dir, where the CA certificate and the server certificate are written.
    pub data_dir: PathBuf,
    /// Names and addresses the issued certificate is for, besides localhost, 127.0.0.1, ::1
    /// and this host's name (the listen address and the advertised URL's host, `--tls-san`).
    pub sans: Vec<String>,
}

/// What the server presents, and what it trusts when it forwards to the other masters.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    /// The cluster CA's file under the data dir and its SHA-256 fingerprint (None with
    /// --tls-cert).
    pub generated_ca: Option<(PathBuf, String)>,
    /// The CA file the other masters' certificates are checked against (besides the system's):
    /// the cluster CA's, or --tls-ca.
    pub peer_ca: Option<PathBuf>,
}

/// The cluster CA, as kept in the store.
#[derive(Clone, Serialize, Deserialize)]
pub struct ClusterCa {
    /// The certificate, PEM.
    pub cert: String,
    /// Its private key, PEM.
    pub key: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A new self-signed CA.
    pub fn generate() -> Result<ClusterCa, TlsError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Contiv netmaster cluster CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let key = rcgen::KeyPair::generate()?;
        let ca = params.self_signed(&key)?;
        Ok(ClusterCa {
            cert: ca.pem(),
            key: key.serialize_pem(),
        })
    }

    /// The SHA-256 fingerprint of the CA certificate.
    pub fn fingerprint(&self) -> Result<String, TlsError> {
        let der = certs(self.cert.as_bytes(), Path::new(CA_STORE_KEY))?.remove(0);
        Ok(fingerprint(&der))
    }

    /// A server certificate for `names` and its key, both PEM.
    fn issue(&self, names: Vec<String>) -> Result<(String, String), TlsError> {
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&self.cert, rcgen::KeyPair::from_pem(&self.key)?)?;
        let mut params = rcgen::CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "contiv netmaster");
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Checks that the stored text is a usable CA (after reading it from the store).
    fn check(self) -> Result<ClusterCa, TlsError> {
        let bad = |e: &dyn std::fmt::Display| TlsError::BadStoredCa(e.to_string());
        let key = rcgen::KeyPair::from_pem(&self.key).map_err(|e| bad(&e))?;
        rcgen::Issuer::from_ca_cert_pem(&self.cert, key).map_err(|e| bad(&e))?;
        Ok(self)
    }
}

/// The cluster CA from the store; the first master to get here makes it (or takes the one an
/// older netmaster kept under the data dir, which the clients trust already), with a
/// create-if-absent transaction so that masters starting together agree on one.
pub async fn cluster_ca(store: &dyn Store, data_dir: &Path) -> Result<ClusterCa, TlsError> {
    let read = || async {
        let kv = store
            .get(CA_STORE_KEY)
            .await
            .map_err(|source| TlsError::Store {
                action: "read",
                source,
            })?;
        kv.map(|kv| {
            serde_json::from_slice::<ClusterCa>(&kv.value)
                .map_err(|e| TlsError::BadStoredCa(e.to_string()))
                .and_then(ClusterCa::check)
        })
        .transpose()
    };
    if let Some(ca) = read().await? {
        return Ok(ca);
    }
    let dir = data_dir.join(GENERATED_DIR);
    let (old_cert, old_key) = (dir.join(CA_FILE), dir.join(OLD_CA_KEY_FILE));
    let candidate = match (
        std::fs::read_to_string(&old_cert),
        std::fs::read_to_string(&old_key),
    ) {
        (Ok(cert), Ok(key)) => {
            tracing::info!(ca = %old_cert.display(), "taking the CA of an earlier start into the store");
            ClusterCa { cert, key }.check()?
        }
        _ => ClusterCa::generate()?,
    };
    let value = serde_json::to_vec(&candidate).expect("serializable");
    store
        .txn(
            Txn::new()
                .when(Compare::absent(CA_STORE_KEY))
                .then(Op::put(CA_STORE_KEY, value)),
        )
        .await
        .map_err(|source| TlsError::Store {
            action: "write",
            source,
        })?;
    // Ours, or the one another master wrote first.
    read().await?.ok_or(TlsError::BadStoredCa(
        "it vanished right after it was written".into(),
    ))
}

/// Replaces the cluster CA in the store with a new one (`netmaster new-ca`); the masters use it
/// from their next start.
pub async fn replace_cluster_ca(store: &dyn Store) -> Result<ClusterCa, TlsError> {
    let ca = ClusterCa::generate()?;
    store
        .txn(Txn::new().then(Op::put(
            CA_STORE_KEY,
            serde_json::to_vec(&ca).expect("serializable"),
        )))
        .await
        .map_err(|source| TlsError::Store {
            action: "write",
            source,
        })?;
    Ok(ca)
}

fn io(action: String) -> impl FnOnce(std::io::Error) -> TlsError {
    move |source| TlsError::Io { action, source }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(io(format!("read {}", path.display())))
}

/// Writes `text` to `path` with `mode`, through a temporary file and a rename: a client reading
/// `ca.pem` while a master starts never sees half of it.
fn write(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(io(format!("write {}", path.display())))
}

fn certs(pem: &[u8], what: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            action: format!("read the certificates in {}", what.display()),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            action: format!("read {}", what.display()),
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn key(pem: &[u8], what: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        action: format!("read the private key in {}", what.display()),
        reason: e.to_string(),
    })
}

/// The SHA-256 fingerprint of a DER certificate, as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn this_host() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Issues this master's server certificate from the cluster CA and writes it, its key and the
/// CA certificate under `dir`; the chain and key, PEM.
fn issue_server_cert(
    ca: &ClusterCa,
    dir: &Path,
    sans: &[String],
) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    names.extend(this_host());
    for s in sans {
        let s = s.trim().trim_start_matches('[').trim_end_matches(']');
        if !s.is_empty() && !names.iter().any(|n| n == s) {
            names.push(s.to_string());
        }
    }
    let (cert, key) = ca.issue(names)?;
    write(&dir.join(SERVER_KEY_FILE), &key, 0o600)?;
    write(&dir.join(SERVER_FILE), &cert, 0o644)?;
    write(&dir.join(CA_FILE), &ca.cert, 0o644)?;
    Ok(((cert + &ca.cert).into_bytes(), key.into_bytes()))
}

/// The server's TLS: the given certificate (`opts.cert`), or one issued now by `ca` (the
/// cluster CA, [`cluster_ca`]; needed without `opts.cert`).
pub fn server_config(opts: &TlsOptions, ca: Option<&ClusterCa>) -> Result<ServerTls, TlsError> {
    let dir = opts.data_dir.join(GENERATED_DIR);
    let (chain_pem, key_pem, chain_path, key_path) = match (&opts.cert, &opts.key, ca) {
        (Some(c), Some(k), _) => (read(c)?, read(k)?, c.clone(), k.clone()),
        (None, None, Some(ca)) => {
            let (chain, key) = issue_server_cert(ca, &dir, &opts.sans)?;
            (chain, key, dir.join(SERVER_FILE), dir.join(SERVER_KEY_FILE))
        }
        (None, None, None) => {
            return Err(TlsError::Pem {
                action: "TLS settings".into(),
                reason: "no certificate given and no cluster CA to issue one".into(),
            });
        }
        _ => {
            return Err(TlsError::Pem {
                action: "TLS settings".into(),
                reason:
                    "give both --tls-cert and --tls-key, or neither (the cluster CA issues one)"
                        .into(),
            });
        }
    };
    let chain = certs(&chain_pem, &chain_path)?;
    let key = key(&key_pem, &key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &opts.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(&read(path)?, path)? {
                roots.add(c).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::ClientCa {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let (generated_ca, peer_ca) = match (&opts.cert, ca) {
        (None, Some(ca)) => {
            let path = dir.join(CA_FILE);
            (Some((path.clone(), ca.fingerprint()?)), Some(path))
        }
        _ => (None, opts.peer_ca.clone()),
    };
    Ok(ServerTls {
        config: Arc::new(config),
        generated_ca,
        peer_ca,
    })
}

/// A TCP listener whose connections are TLS: handshakes run in their own tasks, so that a slow
/// or silent client holds up nobody else; failed handshakes are logged at debug and dropped.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, as axum does.
                        tracing::error!(error = %e, "accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    // A TLS connection opens with a handshake record (0x16); anything else is
                    // most likely an http:// client (Contiv's netmaster served http on 9999):
                    // tell it what to use instead of dropping it without a word.
                    let mut first = [0u8; 1];
                    let peeked = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        stream.peek(&mut first),
                    );
                    if let Ok(Ok(1)) = peeked.await
                        && first[0] != 0x16
                    {
                        refuse_plain_http(stream, local).await;
                        return;
                    }
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, task })
    }
}

/// Answers a plain HTTP request on the TLS port with a 400 that says to use https, in the API's
/// error format (`{"error": ...}`), which netctl and curl show as they are.
async fn refuse_plain_http(mut stream: TcpStream, local: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Read the request head first: closing with unread data would reset the connection before
    // the client reads the answer.
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    let read_head = async {
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read_head).await;
    let text = String::from_utf8_lossy(&head);
    let host = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("host")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| local.to_string());
    let body = serde_json::json!({
        "error": format!(
            "this netmaster serves https: use https://{host} (trusting its CA, tls/ca.pem under netmaster's data dir: netctl --cacert, netplugin --netmaster-cacert), or start netmaster with --tls off"
        )
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    tracing::debug!("answered a plain http request on the https port");
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (it never does unless aborted): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store(dir: &Path) -> store::EmbeddedStore {
        store::EmbeddedStore::open(store::EmbeddedOptions::new(dir.join("contiv.redb"))).unwrap()
    }

    fn opts(data_dir: &Path) -> TlsOptions {
        TlsOptions {
            data_dir: data_dir.to_path_buf(),
            sans: vec!["10.0.0.11".into(), "m1.example".into()],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn masters_on_one_store_share_one_ca_and_keep_it() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let first = cluster_ca(&s, &a).await.unwrap();
        let second = cluster_ca(&s, &b).await.unwrap();
        assert_eq!(first.cert, second.cert);
        let ta = server_config(&opts(&a), Some(&first)).unwrap();
        let tb = server_config(&opts(&b), Some(&second)).unwrap();
        let (fa, fb) = (ta.generated_ca.unwrap(), tb.generated_ca.unwrap());
        assert_eq!(fa.1, fb.1, "one fingerprint");
        assert_eq!(
            ta.peer_ca,
            Some(fa.0.clone()),
            "followers trust the cluster CA"
        );
        assert_eq!(
            std::fs::read_to_string(&fa.0).unwrap(),
            std::fs::read_to_string(&fb.0).unwrap()
        );
        // Each master's own certificate, by the one CA.
        let cert = |dir: &Path| std::fs::read(dir.join(GENERATED_DIR).join(SERVER_FILE)).unwrap();
        assert_ne!(cert(&a), cert(&b));
        let key = a.join(GENERATED_DIR).join(SERVER_KEY_FILE);
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A restart (a new call on the same store) keeps the CA.
        assert_eq!(cluster_ca(&s, &a).await.unwrap().cert, first.cert);
    }

    #[tokio::test]
    async fn the_server_certificate_names_the_sans_and_chains_to_the_ca() {
        let d = tempfile::tempdir().unwrap();
        let ca = cluster_ca(&store(d.path()), d.path()).await.unwrap();
        server_config(&opts(d.path()), Some(&ca)).unwrap();
        let pem = std::fs::read(d.path().join(GENERATED_DIR).join(SERVER_FILE)).unwrap();
        let der = certs(&pem, Path::new("server.pem")).unwrap().remove(0);
        let ca_der = certs(ca.cert.as_bytes(), Path::new("ca"))
            .unwrap()
            .remove(0);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.into(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let now = rustls::pki_types::UnixTime::now();
        for name in ["localhost", "127.0.0.1", "10.0.0.11", "m1.example"] {
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&der, &[], &name, &[], now)
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("elsewhere.example").unwrap();
        assert!(
            verifier
                .verify_server_cert(&der, &[], &other, &[], now)
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_ca_of_an_older_start_under_the_data_dir_is_taken_into_the_store() {
        let d = tempfile::tempdir().unwrap();
        let old = ClusterCa::generate().unwrap();
        let dir = d.path().join(GENERATED_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CA_FILE), &old.cert).unwrap();
        std::fs::write(dir.join(OLD_CA_KEY_FILE), &old.key).unwrap();
        let s = store(d.path());
        assert_eq!(cluster_ca(&s, d.path()).await.unwrap().cert, old.cert);
        // Another master, without those files, gets the same.
        let other = d.path().join("other");
        assert_eq!(cluster_ca(&s, &other).await.unwrap().cert, old.cert);
    }

    #[tokio::test]
    async fn a_new_ca_replaces_the_stored_one() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let first = cluster_ca(&s, d.path()).await.unwrap();
        let new = replace_cluster_ca(&s).await.unwrap();
        assert_ne!(new.cert, first.cert);
        assert_eq!(cluster_ca(&s, d.path()).await.unwrap().cert, new.cert);
    }
}
