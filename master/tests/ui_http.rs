//! The web UI over plain HTTP (no browser), against a real netmaster with authentication and
//! TLS on, as shipped: every UI route refuses a visitor without a session, the session cookie's
//! attributes, CSRF and cross-site refusals, an ops user scoped to one tenant, errors beside
//! their field with nothing created. The browser drives the same pages in ui_browser.rs.

mod common;
use common::Netmaster;
use serde_json::{Value, json};

/// A netmaster (auth and TLS on), its admin token, and an ops user `alice` on tenant A, with
/// tenants A and B holding a network each.
struct Setup {
    m: Netmaster,
    admin: String,
    http: reqwest::Client,
}

const ALICE_PW: &str = "alice-secret-1";

impl Setup {
    async fn start() -> Setup {
        let m = Netmaster::start_with(&["--auth", "on", "--tls", "on"]);
        let tls = model::https_tls_config(&m.client_options()).unwrap();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let cred: Value = serde_json::from_slice(
            &std::fs::read(m.data_dir().join("admin-credential.json")).unwrap(),
        )
        .unwrap();
        let (s, v) = m
            .post(
                "/api/v1/auth_proxy/login/",
                json!({"username": "admin", "password": cred["password"]}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let admin = v["token"].as_str().unwrap().to_string();
        let setup = Setup { m, admin, http };
        for (t, subnet) in [("A", "10.1.0.0/24"), ("B", "10.2.0.0/24")] {
            setup
                .api_ok(
                    "POST",
                    &format!("/api/v1/tenants/{t}/"),
                    json!({"tenantName": t}),
                )
                .await;
            setup
                .api_ok(
                    "POST",
                    &format!("/api/v1/networks/{t}:net{t}/"),
                    json!({"tenantName": t, "networkName": format!("net{t}"), "encap": "vxlan", "subnet": subnet}),
                )
                .await;
        }
        setup
            .api_ok(
                "POST",
                "/api/v1/auth_proxy/local_users/",
                json!({"username": "alice", "password": ALICE_PW, "role": "ops", "tenants": ["A"]}),
            )
            .await;
        setup
    }

    async fn api_ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (s, v) = self
            .m
            .req_as(Some(&self.admin), method, path, Some(body))
            .await;
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.m.url)
    }

    /// `GET path` with the session cookie (if any): status, Location, body.
    async fn get(&self, cookie: Option<&str>, path: &str) -> (u16, String, String) {
        let mut r = self.http.get(self.url(path));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        answer(r.send().await.unwrap()).await
    }

    /// A form POST with the session cookie (if any), the `Origin` of this server unless given.
    async fn post(
        &self,
        cookie: Option<&str>,
        origin: Option<&str>,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, String, String) {
        let mut r = self
            .http
            .post(self.url(path))
            .header("origin", origin.unwrap_or(&self.m.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(form));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        answer(r.send().await.unwrap()).await
    }

    /// Logs in through the UI's form; the `name=value` of the session cookie and the whole
    /// Set-Cookie header.
    async fn login(&self, user: &str, password: &str) -> (String, String) {
        let resp = self
            .http
            .post(self.url("/ui/login"))
            .header("origin", &self.m.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[
                ("username", user),
                ("password", password),
                ("next", "/ui/networks"),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "login {user}");
        assert_eq!(resp.headers()["location"], "/ui/networks");
        let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        let pair = set.split(';').next().unwrap().to_string();
        (pair, set)
    }

    /// The CSRF token of a page's forms.
    async fn csrf(&self, cookie: &str) -> String {
        let (s, _, body) = self.get(Some(cookie), "/ui/tenants").await;
        assert_eq!(s, 200, "{body}");
        let at = body
            .find("name=\"_csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 20;
        body[at..at + body[at..].find('"').unwrap()].to_string()
    }
}

async fn answer(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, resp.text().await.unwrap())
}

fn encode(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                s.bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect::<String>()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

const PAGES: &[&str] = &[
    "/ui/",
    "/ui/tenants",
    "/ui/networks",
    "/ui/groups",
    "/ui/policies",
    "/ui/netprofiles",
    "/ui/endpoints",
    "/ui/global",
    "/ui/new/networks",
    "/ui/edit/networks/A:netA",
    "/ui/events",
    "/ui/nonexistent",
];

const FORMS: &[&str] = &[
    "/ui/save/networks",
    "/ui/delete/networks/A:netA",
    "/ui/logout",
];

#[tokio::test]
async fn every_ui_route_wants_a_session() {
    let t = Setup::start().await;
    for page in PAGES {
        for cookie in [None, Some("__Host-contiv_ui=ctv1.forged.sig")] {
            let (s, loc, body) = t.get(cookie, page).await;
            assert_eq!(s, 303, "GET {page} with {cookie:?}: {body}");
            assert!(
                loc.starts_with("/ui/login?next=%2Fui%2F"),
                "GET {page} goes to the login page and back: {loc}"
            );
        }
    }
    for path in FORMS {
        let (s, _, body) = t.post(None, None, path, &[("_csrf", "x")]).await;
        // The logout of no session is a no-op that goes to the login page; a write is refused.
        if *path == "/ui/logout" {
            assert_eq!(s, 303, "{path}: {body}");
        } else {
            assert_eq!(s, 401, "POST {path} without a session: {body}");
        }
    }
    // The API under the UI is unchanged: JSON 401s.
    let (s, _, body) = t.get(None, "/api/v1/networks/").await;
    assert_eq!(s, 401, "{body}");
    // The login page and the assets are open.
    for open in ["/ui/login", "/ui/style.css", "/ui/live.js"] {
        let (s, _, _) = t.get(None, open).await;
        assert_eq!(s, 200, "{open}");
    }
    let (s, loc, _) = t.get(None, "/").await;
    assert_eq!((s, loc.as_str()), (303, "/ui/"));
    // Nothing the refused forms asked for happened.
    let (s, _) =
        t.m.req_as(Some(&t.admin), "GET", "/api/v1/networks/A:netA/", None)
            .await;
    assert_eq!(s, 200, "the refused delete deleted nothing");
}

#[tokio::test]
async fn login_sets_a_locked_down_session_cookie_and_logout_clears_it() {
    let t = Setup::start().await;
    // A wrong password: the API's message, no cookie.
    let resp = t
        .http
        .post(t.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[("username", "alice"), ("password", "nope")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("wrong username or password")
    );
    // A login form posted from another site is refused.
    let (s, _, _) = t
        .post(
            None,
            Some("https://evil.example"),
            "/ui/login",
            &[("username", "alice"), ("password", ALICE_PW)],
        )
        .await;
    assert_eq!(s, 403);

    let (cookie, set) = t.login("alice", ALICE_PW).await;
    assert!(cookie.starts_with("__Host-contiv_ui=ctv1."), "{set}");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.split("; ").any(|a| a == attr), "{attr} in {set}");
    }
    // The cookie's value is the API token itself: the API takes it.
    let token = cookie.split_once('=').unwrap().1;
    let (s, v) =
        t.m.req_as(Some(token), "GET", "/api/v1/networks/", None)
            .await;
    assert_eq!(s, 200, "{v}");

    let (s, _, body) = t.get(Some(&cookie), "/ui/networks").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("alice (ops: A)"), "the header names the user");
    for h in ["no-store", "frame-ancestors 'none'"] {
        let resp = t
            .http
            .get(t.url("/ui/networks"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        let all: String = resp
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap()))
            .collect();
        assert!(all.contains(h), "{h} in\n{all}");
    }

    // Logout needs the CSRF token too, and clears the cookie.
    let (s, _, _) = t.post(Some(&cookie), None, "/ui/logout", &[]).await;
    assert_eq!(s, 403, "a logout without the CSRF token");
    let csrf = t.csrf(&cookie).await;
    let resp = t
        .http
        .post(t.url("/ui/logout"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[("_csrf", &csrf)]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let cleared = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("__Host-contiv_ui=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn forms_need_the_session_s_csrf_token_and_this_origin() {
    let t = Setup::start().await;
    let (cookie, _) = t.login("alice", ALICE_PW).await;
    let csrf = t.csrf(&cookie).await;
    let net = [
        ("_mode", "new"),
        ("tenantName", "A"),
        ("networkName", "viacsrf"),
        ("encap", "vxlan"),
        ("subnet", "10.9.0.0/24"),
    ];
    let with = |token: &str| {
        let mut f = net.to_vec();
        f.push(("_csrf", token));
        f.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    fn as_refs(f: &[(String, String)]) -> Vec<(&str, &str)> {
        f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
    // No token, a wrong one, another session's (the admin's), the right one from another site.
    let other = {
        let cred: Value = serde_json::from_slice(
            &std::fs::read(t.m.data_dir().join("admin-credential.json")).unwrap(),
        )
        .unwrap();
        let (c, _) = t.login("admin", cred["password"].as_str().unwrap()).await;
        t.csrf(&c).await
    };
    assert_ne!(other, csrf);
    for (token, origin) in [
        ("", None),
        ("wrong", None),
        (other.as_str(), None),
        (csrf.as_str(), Some("https://evil.example")),
    ] {
        let f = with(token);
        let (s, _, body) = t
            .post(Some(&cookie), origin, "/ui/save/networks", &as_refs(&f))
            .await;
        assert_eq!(s, 403, "token {token:?} origin {origin:?}: {body}");
        let (s, _) =
            t.m.req_as(Some(&t.admin), "GET", "/api/v1/networks/A:viacsrf/", None)
                .await;
        assert_eq!(s, 404, "a refused form created nothing");
    }
    let f = with(&csrf);
    let (s, loc, body) = t
        .post(Some(&cookie), None, "/ui/save/networks", &as_refs(&f))
        .await;
    assert_eq!((s, loc.as_str()), (303, "/ui/networks"), "{body}");
    let v = t
        .api_ok("GET", "/api/v1/networks/A:viacsrf/", Value::Null)
        .await;
    assert_eq!(v["subnet"], "10.9.0.0/24");
}

#[tokio::test]
async fn an_ops_user_sees_and_edits_only_its_tenant() {
    let t = Setup::start().await;
    let (cookie, _) = t.login("alice", ALICE_PW).await;
    let csrf = t.csrf(&cookie).await;
    for page in [
        "/ui/networks",
        "/ui/tenants",
        "/ui/",
        "/ui/endpoints",
        "/ui/groups",
    ] {
        let (s, _, body) = t.get(Some(&cookie), page).await;
        assert_eq!(s, 200, "{page}: {body}");
        assert!(
            !body.contains("netB") && !body.contains("10.2.0.0"),
            "{page} shows tenant B:\n{body}"
        );
    }
    let (_, _, body) = t.get(Some(&cookie), "/ui/networks").await;
    assert!(
        body.contains("netA") && body.contains("10.1.0.0/24"),
        "{body}"
    );
    // Another tenant's object and the admin-only pages: the API's 403 and its message.
    for (page, says) in [
        ("/ui/edit/networks/B:netB", "not authorized on its tenant"),
        ("/ui/global", "admin only"),
    ] {
        let (s, _, body) = t.get(Some(&cookie), page).await;
        assert_eq!(s, 403, "{page}: {body}");
        assert!(body.contains("ops user alice (role ops) may not"), "{body}");
        assert!(body.contains(says), "{page}: {body}");
    }
    // Writes in B: refused by the API, nothing made.
    let (s, _, body) = t
        .post(
            Some(&cookie),
            None,
            "/ui/save/networks",
            &[
                ("_csrf", &csrf),
                ("_mode", "new"),
                ("tenantName", "B"),
                ("networkName", "sneaky"),
                ("encap", "vxlan"),
                ("subnet", "10.3.0.0/24"),
            ],
        )
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, _, body) = t
        .post(
            Some(&cookie),
            None,
            "/ui/delete/networks/B:netB",
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, _) =
        t.m.req_as(Some(&t.admin), "GET", "/api/v1/networks/B:sneaky/", None)
            .await;
    assert_eq!(s, 404);
    t.api_ok("GET", "/api/v1/networks/B:netB/", Value::Null)
        .await;
    // In A, it may.
    let (s, loc, body) = t
        .post(
            Some(&cookie),
            None,
            "/ui/delete/networks/A:netA",
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!((s, loc.as_str()), (303, "/ui/networks"), "{body}");
}

#[tokio::test]
async fn bad_input_shows_the_api_s_message_beside_its_field_and_creates_nothing() {
    let t = Setup::start().await;
    let cred: Value = serde_json::from_slice(
        &std::fs::read(t.m.data_dir().join("admin-credential.json")).unwrap(),
    )
    .unwrap();
    let (cookie, _) = t.login("admin", cred["password"].as_str().unwrap()).await;
    let csrf = t.csrf(&cookie).await;
    // What the API says of the same body, sent to it directly.
    let (s, v) = t
        .m
        .req_as(
            Some(&t.admin),
            "POST",
            "/api/v1/networks/A:bad/",
            Some(json!({"tenantName": "A", "networkName": "bad", "encap": "vxlan", "subnet": "10.4.0.0/33"})),
        )
        .await;
    assert_eq!(s, 400);
    let api_says = common::err(&v);
    let (s, _, body) = t
        .post(
            Some(&cookie),
            None,
            "/ui/save/networks",
            &[
                ("_csrf", &csrf),
                ("_mode", "new"),
                ("tenantName", "A"),
                ("networkName", "bad"),
                ("encap", "vxlan"),
                ("subnet", "10.4.0.0/33"),
            ],
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let field = body
        .split("<div class=\"field invalid\">")
        .nth(1)
        .expect("a field marked invalid");
    let field = &field[..field.find("</div></div>").unwrap_or(field.len())];
    assert!(
        field.contains("name=\"subnet\""),
        "the subnet field: {field}"
    );
    assert!(
        field.contains(&master::ui::esc(&api_says)),
        "the API's message {api_says:?} beside it: {field}"
    );
    assert!(
        field.contains("value=\"10.4.0.0/33\""),
        "the input kept: {field}"
    );
    let (s, _) =
        t.m.req_as(Some(&t.admin), "GET", "/api/v1/networks/A:bad/", None)
            .await;
    assert_eq!(s, 404, "nothing created");
    // The API's message for a tenant that does not exist names tenantName: it goes there.
    let (s, _, body) = t
        .post(
            Some(&cookie),
            None,
            "/ui/save/networks",
            &[
                ("_csrf", &csrf),
                ("_mode", "new"),
                ("tenantName", "nosuch"),
                ("networkName", "n"),
                ("encap", "vxlan"),
                ("subnet", "10.5.0.0/24"),
            ],
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let field = body
        .split("<div class=\"field invalid\">")
        .nth(1)
        .expect("a field marked invalid");
    assert!(
        field.starts_with("<label for=\"f-tenantName\">")
            && field.contains("tenant does not exist"),
        "{field}"
    );
}

/// With `--auth off` (and `--tls off`) there is no login: pages answer at once, and forms still
/// need the page's CSRF token.
#[tokio::test]
async fn without_authentication_pages_are_open_and_forms_still_checked() {
    let m = Netmaster::start();
    model::install_default_tls_provider();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{}/ui/tenants", m.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let body = page.text().await.unwrap();
    assert!(!body.contains("Log out"), "no session to end");
    let at = body.find("name=\"_csrf\" value=\"").expect("a CSRF token") + 20;
    let csrf = &body[at..at + body[at..].find('"').unwrap()];
    let (s, _, _) = answer(
        http.get(format!("{}/ui/login", m.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 303, "no login page without authentication");
    for (token, want) in [("forged", 403), (csrf, 303)] {
        let resp = http
            .post(format!("{}/ui/save/tenants", m.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[
                ("_csrf", token),
                ("_mode", "new"),
                ("tenantName", "T"),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "token {token}");
    }
    let (s, v) = m.get("/api/v1/tenants/T/").await;
    assert_eq!(s, 200, "{v}");
}
