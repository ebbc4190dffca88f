//! `netctl login` and the token of later commands, against a small https server of this test
//! playing Contiv's auth_proxy: its certificate is signed by a CA made here with rcgen.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use support::netctl_at_home as netctl;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const TOKEN: &str = "tok-3f9a";

/// What the server saw of one request: method, path and `x-auth-token`.
type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

/// auth_proxy, as far as netctl uses it, on 127.0.0.1: https (or plain http, to check that
/// the token is never sent in clear).
struct Proxy {
    url: String,
    seen: Seen,
    _rt: tokio::runtime::Runtime,
}

/// A CA, and a server certificate for 127.0.0.1 and localhost signed by it.
struct Pki {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key_der: Vec<u8>,
}

fn pki() -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "netctl test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![cert.der().clone(), ca.der().clone()],
        key_der: key.serialize_der(),
    }
}

impl Proxy {
    fn https(pki: &Pki) -> Proxy {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            pki.chain.clone(),
            rustls::pki_types::PrivatePkcs8KeyDer::from(pki.key_der.clone()).into(),
        )
        .unwrap();
        Proxy::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    fn http() -> Proxy {
        Proxy::start(None)
    }

    fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Seen::default();
        let seen2 = seen.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let tls = tls.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    match tls {
                        // A client that refuses the certificate ends the handshake: ignore it.
                        Some(acc) => {
                            if let Ok(s) = acc.accept(tcp).await {
                                serve(s, seen).await;
                            }
                        }
                        None => serve(tcp, seen).await,
                    }
                });
            }
        });
        Proxy {
            url: format!("{scheme}://127.0.0.1:{port}"),
            seen,
            _rt: rt,
        }
    }

    fn seen(&self) -> Vec<(String, String, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers one HTTP/1.1 request, then closes the connection.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, seen: Seen) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let mut len = 0;
    let mut token = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "x-auth-token" => token = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: serde_json::Value =
        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
    seen.lock()
        .unwrap()
        .push((method.clone(), path.clone(), token.clone()));
    let (status, answer) = match (method.as_str(), path.as_str()) {
        ("POST", "/api/v1/auth_proxy/login/") => {
            if body["username"] == "admin" && body["password"] == "s3cret pass" {
                ("200 OK", format!(r#"{{"token":"{TOKEN}"}}"#))
            } else {
                (
                    "401 Unauthorized",
                    r#"{"error":"invalid username or password"}"#.to_string(),
                )
            }
        }
        ("GET", "/api/v1/tenants/") => {
            if token.as_deref() == Some(TOKEN) {
                (
                    "200 OK",
                    r#"[{"key":"blue","tenantName":"blue"},{"key":"default","tenantName":"default"}]"#
                        .to_string(),
                )
            } else {
                (
                    "401 Unauthorized",
                    r#"{"error":"missing or invalid x-auth-token"}"#.to_string(),
                )
            }
        }
        _ => ("404 Not Found", r#"{"error":"not found"}"#.to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// What one netctl run printed.
const CREDS: &str = "admin\ns3cret pass\n";

fn config(home: &Path) -> PathBuf {
    home.join(".netctl").join("config.json")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn login_insecure_writes_the_token_and_later_commands_send_it() {
    let pki = pki();
    let proxy = Proxy::https(&pki);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // Before login: no token, auth_proxy refuses.
    let r = netctl(
        h,
        &["--netmaster", &proxy.url, "--insecure", "tenant", "ls"],
        "",
        &[],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.stderr, "Error: missing or invalid x-auth-token\n");

    let r = netctl(
        h,
        &["--netmaster", &proxy.url, "--insecure", "login"],
        CREDS,
        &[],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "Login successful\n"),
        "{r:?}"
    );
    assert_eq!(r.stderr, "");
    let cfg = config(h);
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        format!(r#"{{"token":"{TOKEN}"}}"#)
    );
    assert_eq!(mode(cfg.parent().unwrap()), 0o700);
    assert_eq!(mode(&cfg), 0o600);
    assert_eq!(proxy.seen()[1].0, "POST");
    assert_eq!(proxy.seen()[1].1, "/api/v1/auth_proxy/login/");
    // The login request itself carries no token.
    assert_eq!(proxy.seen()[1].2, None);

    // INSECURE=true works as --insecure; the token goes in x-auth-token.
    let r = netctl(
        h,
        &["tenant", "ls", "-q"],
        "",
        &[("NETMASTER", &proxy.url), ("INSECURE", "true")],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "blue\ndefault\n"), "{r:?}");
    let last = proxy.seen().last().cloned().unwrap();
    assert_eq!(
        last,
        ("GET".into(), "/api/v1/tenants/".into(), Some(TOKEN.into()))
    );

    // Over plain http the token stays home.
    let plain = Proxy::http();
    let r = netctl(h, &["--netmaster", &plain.url, "tenant", "ls"], "", &[]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(
        plain.seen(),
        [("GET".into(), "/api/v1/tenants/".into(), None)]
    );
}

#[test]
fn login_trusting_the_given_ca() {
    let pki = pki();
    let proxy = Proxy::https(&pki);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let ca = ca.to_str().unwrap();

    let home = tempfile::tempdir().unwrap();
    let r = netctl(
        home.path(),
        &["--netmaster", &proxy.url, "--cacert", ca, "login"],
        CREDS,
        &[],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "Login successful\n"),
        "{r:?}"
    );

    let home = tempfile::tempdir().unwrap();
    let r = netctl(
        home.path(),
        &["login"],
        CREDS,
        &[("NETMASTER", &proxy.url), ("NETCTL_CACERT", ca)],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "Login successful\n"),
        "{r:?}"
    );
    let r = netctl(
        home.path(),
        &["tenant", "ls", "-q"],
        "",
        &[("NETMASTER", &proxy.url), ("NETCTL_CACERT", ca)],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "blue\ndefault\n"), "{r:?}");

    // A CA file that is not one.
    let r = netctl(
        home.path(),
        &[
            "--netmaster",
            &proxy.url,
            "--cacert",
            "/dev/null",
            "tenant",
            "ls",
        ],
        "",
        &[],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(
        r.stderr,
        "Error: TLS setup: CA file /dev/null: no PEM certificate in it\n"
    );
}

#[test]
fn an_untrusted_certificate_is_refused_with_the_reason() {
    let pki = pki();
    let proxy = Proxy::https(&pki);
    let home = tempfile::tempdir().unwrap();
    let r = netctl(
        home.path(),
        &["--netmaster", &proxy.url, "login"],
        CREDS,
        &[],
    );
    assert_eq!(r.code, 2, "{r:?}");
    let url = &proxy.url;
    // Which CA file to give, and where netmaster writes it.
    assert!(
        r.stderr.starts_with(&format!(
            "Error: TLS handshake with {url} failed: invalid peer certificate: UnknownIssuer; "
        )),
        "{r:?}"
    );
    for words in [
        "--cacert FILE",
        "tls/ca.pem",
        "/var/lib/contiv/tls/ca.pem",
        "--insecure",
    ] {
        assert!(r.stderr.contains(words), "{words}: {r:?}");
    }
    assert!(!config(home.path()).exists());
}

#[test]
fn wrong_password_is_said_and_nothing_written() {
    let pki = pki();
    let proxy = Proxy::https(&pki);
    let home = tempfile::tempdir().unwrap();
    let r = netctl(
        home.path(),
        &["--netmaster", &proxy.url, "--insecure", "login"],
        "admin\nguess\n",
        &[],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        "Error: login failed: wrong username or password\n"
    );
    assert!(!home.path().join(".netctl").exists());

    // stdin ends before the password.
    let r = netctl(
        home.path(),
        &["--netmaster", &proxy.url, "--insecure", "login"],
        "admin\n",
        &[],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.stderr, "Error: login: no password given (stdin ended)\n");
}

#[test]
fn login_needs_https() {
    let plain = Proxy::http();
    let home = tempfile::tempdir().unwrap();
    let r = netctl(
        home.path(),
        &["--netmaster", &plain.url, "login"],
        CREDS,
        &[],
    );
    assert_eq!(r.code, 3, "{r:?}");
    let url = &plain.url;
    assert_eq!(
        r.stderr,
        format!(
            "Error: login needs an https URL (or a unix:// socket) of netmaster or auth_proxy in \
             --netmaster (not {url}): the password is never sent in clear\n"
        )
    );
    // Nothing was sent.
    assert!(plain.seen().is_empty());
    assert!(!config(home.path()).exists());
}
