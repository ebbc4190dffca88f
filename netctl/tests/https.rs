//! netctl against a real netmaster with its defaults (issue 18): https with the certificate of
//! the cluster CA the first start makes, and authentication. `netctl login` then ordinary
//! commands work trusting the CA netmaster wrote; another CA, or an http URL, is refused with a
//! message that says what to do.

mod support;

use std::path::Path;
use support::{Master, Out, netctl_at_home};

/// netctl with `HOME=home` and `stdin`, and nothing from this process's environment that would
/// change its target or trust.
fn netctl(home: &Path, args: &[&str], stdin: &str) -> Out {
    netctl_at_home(home, args, stdin, &[])
}

fn admin_password(m: &Master) -> String {
    let cred: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.data_dir().join("admin-credential.json")).unwrap())
            .unwrap();
    cred["password"].as_str().unwrap().to_string()
}

#[test]
fn login_then_commands_over_https_trusting_the_generated_ca() {
    let m = Master::start_with(&[]);
    assert!(
        m.url.starts_with("https://"),
        "TLS is on by default: {}",
        m.url
    );
    let ca = m.data_dir().join("tls").join("ca.pem");
    let ca = ca.to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut all = vec!["--netmaster", m.url.as_str(), "--cacert", ca];
        all.extend_from_slice(args);
        netctl(home.path(), &all, stdin)
    };
    let r = run(&["login"], &format!("admin\n{}\n", admin_password(&m)));
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(
        &[
            "net",
            "create",
            "--subnet=10.1.2.0/24",
            "-g",
            "10.1.2.1",
            "contiv-net",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(&["net", "ls", "-q"], "");
    assert_eq!((r.code, r.stdout.as_str()), (0, "contiv-net\n"), "{r:?}");
}

#[test]
fn another_ca_is_refused_naming_the_file_given_and_where_netmaster_wrote_its_own() {
    let m = Master::start_with(&[]);
    let other = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let wrong = params
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let wrong_file = other.path().join("wrong-ca.pem");
    std::fs::write(&wrong_file, wrong.pem()).unwrap();
    let r = netctl(
        other.path(),
        &[
            "--netmaster",
            &m.url,
            "--cacert",
            wrong_file.to_str().unwrap(),
            "tenant",
            "ls",
        ],
        "",
    );
    assert_eq!(r.code, 2, "{r:?}");
    for words in [
        "UnknownIssuer",
        &format!("the CA in {} did not sign", wrong_file.display()),
        "--cacert FILE",
        "tls/ca.pem under its data dir",
    ] {
        assert!(r.stderr.contains(words), "{words}: {r:?}");
    }
}

#[test]
fn an_http_url_is_told_to_use_https() {
    let m = Master::start_with(&[]);
    let http = m.url.replace("https://", "http://");
    let home = tempfile::tempdir().unwrap();
    let r = netctl(home.path(), &["--netmaster", &http, "tenant", "ls"], "");
    assert_eq!(r.code, 3, "{r:?}");
    let host = http.trim_start_matches("http://");
    assert!(
        r.stderr
            .contains(&format!("this netmaster serves https: use https://{host}")),
        "{r:?}"
    );
}

#[test]
fn an_https_url_to_a_plain_http_netmaster_says_so() {
    let m = Master::start_with(&["--auth", "off", "--tls", "off"]);
    let https = m.url.replace("http://", "https://");
    let home = tempfile::tempdir().unwrap();
    let r = netctl(home.path(), &["--netmaster", &https, "tenant", "ls"], "");
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("if netmaster runs with --tls off, use an http:// URL"),
        "{r:?}"
    );
}

#[test]
fn token_create_mints_a_tenant_scoped_token_that_works_for_its_tenant_only() {
    let m = Master::start_with(&[]);
    let ca = m.data_dir().join("tls").join("ca.pem");
    let ca = ca.to_str().unwrap();
    let admin_home = tempfile::tempdir().unwrap();
    let run = |home: &Path, args: &[&str], stdin: &str| {
        let mut all = vec!["--netmaster", m.url.as_str(), "--cacert", ca];
        all.extend_from_slice(args);
        netctl(home, &all, stdin)
    };
    let r = run(
        admin_home.path(),
        &["login"],
        &format!("admin\n{}\n", admin_password(&m)),
    );
    assert_eq!(r.code, 0, "{r:?}");
    for t in ["blue", "red"] {
        let r = run(admin_home.path(), &["tenant", "create", t], "");
        assert_eq!(r.code, 0, "{r:?}");
    }
    // An ops token without tenants is refused before any request, saying what to add.
    let r = run(admin_home.path(), &["token", "create", "ci"], "");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("-t TENANT"), "{r:?}");
    let r = run(
        admin_home.path(),
        &["token", "create", "ci", "--ttl", "0h"],
        "",
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("more than 0 seconds"), "{r:?}");

    let r = run(
        admin_home.path(),
        &[
            "token",
            "create",
            "docker-node1",
            "-t",
            "blue",
            "--ttl",
            "1h",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let token = r.stdout.trim().to_string();
    assert!(
        token.starts_with("ctv1."),
        "only the token on stdout: {r:?}"
    );
    assert!(r.stderr.contains("ops on blue"), "{r:?}");

    // The token, where netctl keeps a login's: it sees and changes tenant blue only.
    let ops_home = tempfile::tempdir().unwrap();
    std::fs::create_dir(ops_home.path().join(".netctl")).unwrap();
    std::fs::write(
        ops_home.path().join(".netctl").join("config.json"),
        serde_json::json!({ "token": token }).to_string(),
    )
    .unwrap();
    let r = run(ops_home.path(), &["tenant", "ls", "-q"], "");
    assert_eq!((r.code, r.stdout.as_str()), (0, "blue\n"), "{r:?}");
    let r = run(
        ops_home.path(),
        &["net", "create", "-t", "blue", "-s", "10.9.0.0/24", "n"],
        "",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(
        ops_home.path(),
        &["net", "create", "-t", "red", "-s", "10.9.0.0/24", "n"],
        "",
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("red"),
        "the refusal names the tenant: {r:?}"
    );
    // An ops token cannot mint tokens.
    let r = run(
        ops_home.path(),
        &["token", "create", "more", "-t", "blue"],
        "",
    );
    assert_ne!(r.code, 0, "{r:?}");
}
