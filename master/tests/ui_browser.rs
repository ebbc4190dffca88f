//! The web UI in a real browser: headless Debian `chromium` driven through `chromedriver`
//! (WebDriver, the fantoccini crate), against a real netmaster with authentication and TLS on.
//!
//! Chromium is started with `--ignore-certificate-errors`, in this test only: the netmaster's
//! certificate is issued by the CA it made at its first start (in its temp data dir), which
//! chromium could trust only through an NSS database of its own. Everything else (the `__Host-`
//! Secure cookie, the https origin) is as a user's browser sees it.
//!
//! Needs `chromium` and `chromium-driver` (scripts/setup.sh installs them); without them the
//! test says so and passes without running (`CONTIV_UI_BROWSER=require` makes that a failure).
//! Screenshots of every page go to `$CONTIV_UI_SCREENSHOTS` (default: the target dir's
//! `ui-screenshots/`); docs/ui/ holds one set of them.

mod common;
use common::Netmaster;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Driver {
    /// Kills chromedriver's whole process group: the chromium processes it started too, even
    /// when the test failed before closing the session.
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) of the group this test made (chromedriver leads it).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver on a free port (asked of the kernel, then given to chromedriver; if
    /// another process takes it in between, chromedriver exits and another port is tried).
    fn start() -> Driver {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = std::fs::File::create(dir.path().join("chromedriver.log")).unwrap();
            let mut child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start chromedriver");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Driver {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as in Drop.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
        panic!(
            "chromedriver did not start; log:\n{}",
            std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap_or_default()
        );
    }

    async fn browser(&self, profile: &Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // As root (tests run as root here), chromium needs this.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--window-size=1280,800",
                    // The netmaster's own CA: see the top of this file.
                    "--ignore-certificate-errors",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session through chromedriver")
    }
}

fn have_browser() -> bool {
    let ok = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !ok {
        let msg = format!(
            "{CHROMIUM} or {CHROMEDRIVER} is missing: install Debian's chromium and chromium-driver (scripts/setup.sh does)"
        );
        if std::env::var("CONTIV_UI_BROWSER").is_ok_and(|v| v == "require") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED the browser test: {msg}");
    }
    ok
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("CONTIV_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The browser, the netmaster's https URL, and where screenshots go.
struct Ui {
    c: Client,
    base: String,
    shots: PathBuf,
}

impl Ui {
    async fn goto(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Waits (up to 20 s) for the page to be at `path` (a click's navigation has landed).
    async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the browser is at {now}, not {path}; page:\n{}",
                self.c.source().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 20 s) for `css` to match an element whose text contains `text`.
    async fn wait_text(&self, css: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut seen = Vec::new();
            for e in self.c.find_all(Locator::Css(css)).await.unwrap_or_default() {
                let t = e.text().await.unwrap_or_default();
                if t.contains(text) {
                    return;
                }
                seen.push(t);
            }
            assert!(
                Instant::now() < deadline,
                "no {css} contains {text:?}; seen: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn fill(&self, fields: &[(&str, &str)]) {
        for (name, value) in fields {
            let e = self
                .c
                .find(Locator::Css(&format!("[name=\"{name}\"]")))
                .await
                .unwrap_or_else(|e| panic!("field {name}: {e}"));
            if e.tag_name().await.unwrap() == "select" {
                e.select_by_value(value).await.unwrap();
            } else {
                e.clear().await.unwrap();
                e.send_keys(value).await.unwrap();
            }
        }
    }

    async fn submit(&self) {
        self.c
            .find(Locator::Css("main form.edit button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn text(&self) -> String {
        self.c
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Every visible form control has a label (usability: screen readers, click targets).
    async fn all_fields_labelled(&self) {
        let unlabelled = self
            .c
            .execute(
                "return Array.from(document.querySelectorAll('input:not([type=hidden]),select'))\
                 .filter(e => !e.labels || e.labels.length === 0).map(e => e.name || e.id);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            unlabelled,
            json!([]),
            "fields without a label on {}",
            self.path().await
        );
    }

    /// The page does not scroll sideways (wide tables scroll inside their own box).
    async fn fits_width(&self) {
        let v = self
            .c
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .unwrap();
        let (w, inner) = (v[0].as_f64().unwrap(), v[1].as_f64().unwrap());
        assert!(
            w <= inner + 1.0,
            "page {} is {w} px wide in a {inner} px window",
            self.path().await
        );
    }
}

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

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let ui = Ui {
        c: driver.browser(profile.path()).await,
        base: m.url.clone(),
        shots: screenshot_dir(),
    };
    run(&ui, &m, &admin, &admin_pw).await;
    let _ = ui.c.clone().close().await;
}

async fn run(ui: &Ui, m: &Netmaster, admin: &str, admin_pw: &str) {
    // Log in: any page leads to the login form, and back.
    ui.goto("/ui/networks").await;
    ui.wait_path("/ui/login?next=%2Fui%2Fnetworks").await;
    ui.all_fields_labelled().await;
    ui.shot("login").await;
    ui.fill(&[("username", "admin"), ("password", admin_pw)])
        .await;
    ui.submit().await;
    ui.wait_path("/ui/networks").await;
    ui.wait_text("#who", "admin").await;

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
    ui.fill(&[("username", "alice"), ("password", "alice-secret-1")])
        .await;
    ui.submit().await;
    ui.wait_path("/ui/networks").await;
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
