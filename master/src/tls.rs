//! TLS on netmaster's listener (rustls with ring): the certificate and key given, or a local CA
//! and a server certificate that the first start makes under the data dir, so that the quick
//! start stays one command. Clients trust the CA (`netctl --cacert`, netplugin's
//! `--netmaster-cacert`); its SHA-256 fingerprint is logged to check it by.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Where the generated CA and server certificate live, under the data dir.
pub const GENERATED_DIR: &str = "tls";
pub const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
const SERVER_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server-key.pem";

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
}

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The server's certificate chain (PEM); with `key`. None: the generated one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA of the client certificates to accept (clients without one still reach the API with
    /// a token).
    pub client_ca: Option<PathBuf>,
    /// The data dir, where the generated CA and certificate are kept.
    pub data_dir: PathBuf,
    /// Names and addresses the generated certificate is for, besides localhost, 127.0.0.1, ::1
    /// and this host's name.
    pub sans: Vec<String>,
}

/// What the server presents, and the generated CA when there is one.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    /// The generated CA's file and SHA-256 fingerprint (None with --tls-cert).
    pub generated_ca: Option<(PathBuf, String)>,
}

fn io(action: String) -> impl FnOnce(std::io::Error) -> TlsError {
    move |source| TlsError::Io { action, source }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(io(format!("read {}", path.display())))
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
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

/// Loads the generated CA and server certificate from `dir`, making what is missing.
fn generated(dir: &Path, sans: &[String]) -> Result<(Vec<u8>, Vec<u8>, PathBuf), TlsError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let (ca_path, ca_key_path) = (dir.join(CA_FILE), dir.join(CA_KEY_FILE));
    let (srv_path, srv_key_path) = (dir.join(SERVER_FILE), dir.join(SERVER_KEY_FILE));
    if !ca_path.exists() || !ca_key_path.exists() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Contiv netmaster local CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let key = rcgen::KeyPair::generate()?;
        let ca = params.self_signed(&key)?;
        write(&ca_key_path, &key.serialize_pem(), 0o600)?;
        write(&ca_path, &ca.pem(), 0o644)?;
        // A new CA makes the old server certificate useless.
        let _ = std::fs::remove_file(&srv_path);
    }
    if !srv_path.exists() || !srv_key_path.exists() {
        let ca_key = rcgen::KeyPair::from_pem(&String::from_utf8_lossy(&read(&ca_key_path)?))?;
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&String::from_utf8_lossy(&read(&ca_path)?), ca_key)?;
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        names.extend(this_host());
        names.extend(sans.iter().cloned());
        names.dedup();
        let mut params = rcgen::CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "contiv netmaster");
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(&srv_key_path, &key.serialize_pem(), 0o600)?;
        write(&srv_path, &cert.pem(), 0o644)?;
    }
    let mut chain = read(&srv_path)?;
    chain.extend(read(&ca_path)?);
    Ok((chain, read(&srv_key_path)?, ca_path))
}

pub fn server_config(opts: &TlsOptions) -> Result<ServerTls, TlsError> {
    let (chain_pem, key_pem, ca, chain_path, key_path) = match (&opts.cert, &opts.key) {
        (Some(c), Some(k)) => (read(c)?, read(k)?, None, c.clone(), k.clone()),
        (None, None) => {
            let dir = opts.data_dir.join(GENERATED_DIR);
            let (chain, key, ca) = generated(&dir, &opts.sans)?;
            (
                chain,
                key,
                Some(ca),
                dir.join(SERVER_FILE),
                dir.join(SERVER_KEY_FILE),
            )
        }
        _ => {
            return Err(TlsError::Pem {
                action: "TLS settings".into(),
                reason: "give both --tls-cert and --tls-key, or neither (a local CA is made)"
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
    let generated_ca = match ca {
        Some(path) => {
            let der = certs(&read(&path)?, &path)?.remove(0);
            Some((path, fingerprint(&der)))
        }
        None => None,
    };
    Ok(ServerTls {
        config: Arc::new(config),
        generated_ca,
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

    #[test]
    fn the_generated_ca_is_kept_across_starts() {
        let d = tempfile::tempdir().unwrap();
        let opts = TlsOptions {
            data_dir: d.path().to_path_buf(),
            ..Default::default()
        };
        let first = server_config(&opts).unwrap().generated_ca.unwrap();
        let second = server_config(&opts).unwrap().generated_ca.unwrap();
        assert_eq!(first, second);
        use std::os::unix::fs::PermissionsExt;
        let key = d.path().join(GENERATED_DIR).join(CA_KEY_FILE);
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
