//! TLS is on unless netmaster is told `--tls off`, and that mode says so at every start
//! (issue 18).

mod common;

use common::Netmaster;

const OFF_WARNING: &str = "TLS is off (--tls off)";

#[tokio::test]
async fn tls_is_on_without_a_flag() {
    let m = Netmaster::start_exactly(vec!["--auth".into(), "off".into()]);
    assert!(m.url.starts_with("https://"), "{}", m.url);
    // Over https, trusting the CA the first start wrote under the data dir.
    let (s, v) = m.get("/api/v1/tenants/").await;
    assert_eq!(s, 200, "{v}");
    assert!(m.ca_file().exists());
    assert!(
        m.log().contains("sha256="),
        "the CA's fingerprint is logged"
    );
    assert!(!m.log().contains(OFF_WARNING), "log:\n{}", m.log());
}

#[tokio::test]
async fn tls_off_is_explicit_and_warns_at_every_start() {
    let args = ["--auth", "off", "--tls", "off"].map(String::from).to_vec();
    let mut m = Netmaster::start_exactly(args);
    assert!(m.url.starts_with("http://"), "{}", m.url);
    let (s, v) = m.get("/api/v1/tenants/").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(m.log().matches(OFF_WARNING).count(), 1, "log:\n{}", m.log());
    m.restart();
    assert_eq!(m.log().matches(OFF_WARNING).count(), 2, "log:\n{}", m.log());
}
