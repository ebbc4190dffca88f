//! The web UI in a real browser: headless Debian `chromium` driven through `chromedriver`
//! (test-browser, the pieces the browser tests share), against a real netmaster with
//! authentication and TLS on. test-e2e/tests/ui.rs drives the same UI against the simulated
//! cluster (netctl, real traffic and its rule counters).
//!
//! Needs `chromium` and `chromium-driver` (scripts/setup.sh installs them); without them the
//! test says so and passes without running (`CONTIV_UI_BROWSER=require` makes that a failure).
//! Screenshots of every page go to `$CONTIV_UI_SCREENSHOTS` (default: the target dir's
//! `ui-screenshots/`); docs/ui/ holds one set of them.

mod common;
use common::Netmaster;
use serde_json::{Value, json};
use std::path::Path;
use test_browser::{Locator, Ui, have_browser, screenshot_dir};

async fn api(
    m: &Netmaster,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    m.req_as(Some(token), method, path, body).await
}

async fn login_api(m: &Netmaster, user: &str, password: &str) -> String {
    let (s, v) = m
        .post(
            "/api/v1/auth_proxy/login/",
            json!({"username": user, "password": password}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_ui_in_chromium() {
    if !have_browser() {
        return;
    }
    let m = Netmaster::start_with(&["--auth", "on", "--tls", "on"]);
    let cred: Value =
        serde_json::from_slice(&std::fs::read(m.data_dir().join("admin-credential.json")).unwrap())
            .unwrap();
    let admin_pw = cred["password"].as_str().unwrap().to_string();
    let admin = login_api(&m, "admin", &admin_pw).await;
    // Another tenant's objects, and an ops user on tenant A only.
    for (path, body) in [
        ("/api/v1/tenants/B/", json!({"tenantName": "B"})),
        (
            "/api/v1/networks/B:secretnet/",
            json!({"tenantName": "B", "networkName": "secretnet", "encap": "vxlan", "subnet": "10.66.0.0/24"}),
        ),
        (
            "/api/v1/endpoints/",
            json!({"endpointID": "spy-eth0", "tenantName": "B", "networkName": "secretnet",
                "host": "node1", "containerID": "spy", "containerName": "b-secret-pod"}),
        ),
        (
            "/api/v1/auth_proxy/local_users/",
            json!({"username": "alice", "password": "alice-secret-1", "role": "ops", "tenants": ["A"]}),
        ),
    ] {
        let (s, v) = api(&m, &admin, "POST", path, Some(body)).await;
        assert!((200..300).contains(&s), "{path}: {v}");
    }

    let shots = screenshot_dir(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"));
    let ui = Ui::open(&m.url, shots).await;
    run(&ui, &m, &admin, &admin_pw).await;
    ui.close().await;
}

async fn run(ui: &Ui, m: &Netmaster, admin: &str, admin_pw: &str) {
    // Log in: any page leads to the login form, and back.
    ui.goto("/ui/networks").await;
    ui.wait_path("/ui/login?next=%2Fui%2Fnetworks").await;
    ui.all_fields_labelled().await;
    ui.shot("login").await;
    ui.log_in("admin", admin_pw, "/ui/networks").await;

    // The keyboard: the first Tab stop is the skip link, which moves focus to the content.
    let first = ui
        .c
        .execute(
            "document.activeElement.blur(); return document.querySelector('a, button, input, select').className;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(first, "skip");

    // A tenant, through its form.
    ui.goto("/ui/tenants").await;
    ui.c.find(Locator::LinkText("New tenant"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    ui.wait_path("/ui/new/tenants").await;
    ui.all_fields_labelled().await;
    ui.fill(&[("tenantName", "A")]).await;
    ui.submit().await;
    ui.wait_path("/ui/tenants").await;
    ui.wait_text("main table td", "A").await;

    // A network.
    ui.goto("/ui/new/networks?tenantName=A").await;
    ui.all_fields_labelled().await;
    ui.fill(&[
        ("networkName", "web"),
        ("encap", "vxlan"),
        ("subnet", "10.1.0.0/24"),
        ("gateway", "10.1.0.1"),
    ])
    .await;
    ui.shot("network-form").await;
    ui.submit().await;
    ui.wait_path("/ui/networks").await;
    ui.wait_text("main table tr", "10.1.0.0/24").await;

    // Bad input: the API's own message beside the field, nothing created.
    let (s, v) = api(
        m,
        admin,
        "POST",
        "/api/v1/networks/A:bad/",
        Some(json!({"tenantName": "A", "networkName": "bad", "encap": "vxlan", "subnet": "10.2.0.0/33"})),
    )
    .await;
    assert_eq!(s, 400);
    let api_says = v["error"].as_str().unwrap().to_string();
    ui.goto("/ui/new/networks?tenantName=A").await;
    ui.fill(&[("networkName", "bad"), ("subnet", "10.2.0.0/33")])
        .await;
    ui.submit().await;
    ui.wait_path("/ui/save/networks").await;
    let beside =
        ui.c.find(Locator::Css(".field.invalid #f-subnet-error"))
            .await
            .expect("an error beside the subnet field")
            .text()
            .await
            .unwrap();
    assert_eq!(beside, api_says);
    let invalid =
        ui.c.find(Locator::Css("#f-subnet"))
            .await
            .unwrap()
            .attr("aria-invalid")
            .await
            .unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));
    ui.shot("network-form-error").await;
    let (s, _) = api(m, admin, "GET", "/api/v1/networks/A:bad/", None).await;
    assert_eq!(s, 404, "the refused form created nothing");

    // A policy, a rule (from the policy's "Add rule" link), a group using them.
    ui.goto("/ui/new/policys?tenantName=A").await;
    ui.fill(&[("policyName", "webpol")]).await;
    ui.submit().await;
    ui.wait_path("/ui/policies").await;
    ui.c.find(Locator::LinkText("Add rule"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    ui.wait_path("/ui/new/rules?tenantName=A&policyName=webpol")
        .await;
    ui.all_fields_labelled().await;
    ui.fill(&[
        ("ruleId", "http"),
        ("priority", "10"),
        ("direction", "in"),
        ("action", "allow"),
        ("protocol", "tcp"),
        ("port", "80"),
    ])
    .await;
    ui.submit().await;
    ui.wait_path("/ui/policies").await;
    ui.goto("/ui/new/rules?tenantName=A&policyName=webpol")
        .await;
    ui.fill(&[
        ("ruleId", "rest"),
        ("priority", "1"),
        ("direction", "in"),
        ("action", "deny"),
    ])
    .await;
    ui.submit().await;
    ui.wait_path("/ui/policies").await;
    // Rules in the order they apply: priority 10 before 1.
    let rules: Vec<String> = {
        let mut v = Vec::new();
        for row in
            ui.c.find_all(Locator::Css("#policy-A\\:webpol tbody tr"))
                .await
                .unwrap()
        {
            v.push(row.text().await.unwrap());
        }
        v
    };
    assert!(
        rules.len() == 2 && rules[0].starts_with("http") && rules[1].starts_with("rest"),
        "{rules:?}"
    );
    ui.goto("/ui/new/endpointGroups?tenantName=A").await;
    ui.fill(&[
        ("groupName", "frontend"),
        ("networkName", "web"),
        ("policies", "webpol"),
    ])
    .await;
    ui.submit().await;
    ui.wait_path("/ui/groups").await;
    ui.wait_text("main table tr", "frontend").await;

    // What the browser made, as the API (and so netctl) sees it.
    let (s, net) = api(m, admin, "GET", "/api/v1/networks/A:web/", None).await;
    assert_eq!(s, 200, "{net}");
    assert_eq!(
        (net["subnet"].as_str(), net["gateway"].as_str()),
        (Some("10.1.0.0/24"), Some("10.1.0.1"))
    );
    let (s, g) = api(m, admin, "GET", "/api/v1/endpointGroups/A:frontend/", None).await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(
        (g["networkName"].clone(), g["policies"].clone()),
        (json!("web"), json!(["webpol"]))
    );
    let (s, r) = api(m, admin, "GET", "/api/v1/rules/A:webpol:http/", None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["priority"].clone(),
            r["protocol"].clone(),
            r["port"].clone(),
            r["action"].clone()
        ),
        (json!(10), json!("tcp"), json!(80), json!("allow"))
    );

    // Two nodes and a few pods on them, as agents would register and create them.
    for (i, host) in ["node1", "node2"].iter().enumerate() {
        let (s, v) = api(
            m,
            admin,
            "PUT",
            &format!("/api/v1/nodes/{host}/"),
            Some(json!({"hostname": host, "vtepIP": format!("192.0.2.{}", 11 + i), "version": "0.1.0"})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    for i in 0..4 {
        let (s, v) = api(
            m,
            admin,
            "POST",
            "/api/v1/endpoints/",
            Some(
                json!({"endpointID": format!("c{i}-eth0"), "tenantName": "A", "networkName": "web",
                "groupName": "frontend", "host": format!("node{}", i % 2 + 1),
                "containerID": format!("c{i}"), "containerName": format!("web-{i}")}),
            ),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    // Rule counters as the agents report them (PUT .../rulestats/, what netplugin sends every
    // 2 s from its switch): the page shows each host's and the total, and follows them.
    let report = |host: &'static str, packets: u64| async move {
        let (s, v) = api(
            m,
            admin,
            "PUT",
            &format!("/api/v1/nodes/{host}/rulestats/"),
            Some(json!({"hostname": host, "rules": {"A:webpol:http": {"packets": packets, "bytes": packets * 100}}})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    };
    report("node1", 42).await;
    report("node2", 7).await;
    // The first row is rule http (priority 10); column 9 the total, 10 the hosts.
    let cell = |n: u8| format!("#policy-A\\:webpol tbody tr:first-child td:nth-child({n})");
    ui.goto("/ui/policies").await;
    ui.wait_text(&cell(9), "49").await;
    ui.wait_text(&cell(10), "node1: 42\nnode2: 7").await;
    report("node1", 1042).await;
    ui.goto("/ui/policies").await;
    ui.wait_text(&cell(9), "1049").await;
    ui.wait_text(&cell(10), "node1: 1042\nnode2: 7").await;

    ui.goto("/ui/endpoints").await;
    ui.fill(&[("q", "web-3"), ("field", "name")]).await;
    ui.c.find(Locator::Css("form.search button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    ui.wait_path("/ui/endpoints?q=web-3&field=name").await;
    ui.wait_text("#ep-count", "1 of 5 endpoints").await;
    ui.goto("/ui/").await;
    ui.wait_text("main table", "192.0.2.12").await;
    ui.wait_text("#total-endpoints", "5").await;

    // Live: a network made elsewhere shows up in the open list without a reload.
    ui.goto("/ui/networks").await;
    let (s, v) = api(
        m,
        admin,
        "POST",
        "/api/v1/networks/A:late/",
        Some(json!({"tenantName": "A", "networkName": "late", "encap": "vlan", "subnet": "10.3.0.0/24"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    ui.wait_text("[data-live] table", "10.3.0.0/24").await;
    ui.wait_path("/ui/networks").await;

    // Every page, at 1280x800 and at a phone's width; labelled and not wider than the screen.
    let pages = [
        ("overview", "/ui/"),
        ("tenants", "/ui/tenants"),
        ("networks", "/ui/networks"),
        ("groups", "/ui/groups"),
        ("policies", "/ui/policies"),
        ("netprofiles", "/ui/netprofiles"),
        ("endpoints", "/ui/endpoints?q=10.1"),
        ("global", "/ui/global"),
        ("group-form", "/ui/edit/endpointGroups/A:frontend"),
    ];
    for (w, h, suffix) in [(1280, 800, ""), (390, 844, "-phone")] {
        ui.c.set_window_size(w, h).await.unwrap();
        for (name, path) in pages {
            ui.goto(path).await;
            ui.wait_text("main h1", "").await;
            ui.all_fields_labelled().await;
            ui.fits_width().await;
            ui.shot(&format!("{name}{suffix}")).await;
        }
    }
    ui.c.set_window_size(1280, 800).await.unwrap();

    // Log out: the session is gone.
    ui.c.find(Locator::Css("header form.logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    ui.wait_path("/ui/login").await;
    ui.goto("/ui/networks").await;
    ui.wait_path("/ui/login?next=%2Fui%2Fnetworks").await;

    // An ops user on tenant A: sees A, not B, in the pages and through the API.
    ui.log_in("alice", "alice-secret-1", "/ui/networks").await;
    let page = ui.text().await;
    assert!(page.contains("10.1.0.0/24"), "{page}");
    // The admin sees 5 endpoints; alice the 4 of tenant A.
    ui.goto("/ui/endpoints").await;
    ui.wait_text("#ep-count", "4 of 4 endpoints").await;
    assert!(!ui.text().await.contains("b-secret-pod"));
    assert!(
        !page.contains("secretnet") && !page.contains("10.66.0.0"),
        "{page}"
    );
    ui.goto("/ui/tenants").await;
    let page = ui.text().await;
    assert!(
        !page.contains("New tenant"),
        "an ops user cannot make tenants: {page}"
    );
    let mut tenants = Vec::new();
    for td in
        ui.c.find_all(Locator::Css("main tbody tr td:first-child"))
            .await
            .unwrap()
    {
        tenants.push(td.text().await.unwrap());
    }
    assert_eq!(tenants, ["A"], "the tenants alice sees");
    ui.goto("/ui/edit/networks/B:secretnet").await;
    ui.wait_text("main h1", "Not allowed").await;
    let page = ui.text().await;
    assert!(
        page.contains("may not read network B:secretnet: not authorized on its tenant"),
        "{page}"
    );
    assert!(!page.contains("10.66.0.0"), "{page}");
    ui.shot("ops-forbidden").await;
    let alice = login_api(m, "alice", "alice-secret-1").await;
    let (s, nets) = api(m, &alice, "GET", "/api/v1/networks/", None).await;
    assert_eq!(s, 200);
    let keys: Vec<&str> = nets
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["key"].as_str())
        .collect();
    assert!(
        keys.contains(&"A:web") && !keys.contains(&"B:secretnet"),
        "{keys:?}"
    );
}
