//! Authentication is on unless netmaster is told `--auth off`, and that mode says so at every
//! start (issue 18).

mod common;

use common::Netmaster;

const OFF_WARNING: &str = "authentication is off (--auth off)";

#[tokio::test]
async fn auth_is_on_without_a_flag() {
    let m = Netmaster::start_exactly(vec![]);
    let (s, v) = m.get("/api/v1/networks/").await;
    assert_eq!(s, 401, "an anonymous list without --auth: {v}");
    assert!(
        m.data_dir().join("admin-credential.json").exists(),
        "the first start with auth on makes the admin's credential"
    );
    assert!(m.data_dir().join("join-token").exists());
    assert!(!m.log().contains(OFF_WARNING), "log:\n{}", m.log());
}

#[tokio::test]
async fn auth_off_is_explicit_and_warns_at_every_start() {
    let mut m = Netmaster::start_exactly(vec!["--auth".into(), "off".into()]);
    let (s, v) = m.get("/api/v1/networks/").await;
    assert_eq!(s, 200, "an anonymous list with --auth off: {v}");
    assert_eq!(m.log().matches(OFF_WARNING).count(), 1, "log:\n{}", m.log());
    m.restart();
    assert_eq!(m.log().matches(OFF_WARNING).count(), 2, "log:\n{}", m.log());
}
