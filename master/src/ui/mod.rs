//! The web UI, served by netmaster on the API's own listeners under `/ui/` (docs/ui.md).
//!
//! Server-rendered HTML ([`html`]) and a few lines of JavaScript for live lists. Every read and
//! write goes through the API's own router in-process ([`Ui::call`]), with the session's token in
//! `X-Auth-Token`: the same authentication, role checks, tenant filtering, validation, leader
//! forwarding and error messages as `netctl` or `curl` get, from one piece of code.
//!
//! The session is a cookie holding the API token the login returned (`HttpOnly`,
//! `SameSite=Strict`, `Secure` and the `__Host-` prefix over https). Forms carry a CSRF token
//! derived from the session (SHA-256 of a label and the cookie's value: only a page that could
//! read the cookie can know it), and a POST whose `Origin` is another site is refused.

mod forms;
mod html;
mod pages;

use crate::auth::{Auth, Claims};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tower::ServiceExt;

pub use html::esc;

/// The UI's state: the API router it calls, and how sessions are checked.
pub struct Ui {
    api: Router,
    /// `None` with `--auth off`: no login, every visitor acts as the API lets anyone.
    auth: Option<Arc<Auth>>,
    /// Served over https: the cookie is `Secure` and `__Host-` prefixed.
    secure: bool,
    /// With `--auth off` there is no session to derive the CSRF token from: a per-process secret.
    anon_secret: String,
}

type St = State<Arc<Ui>>;

/// `api` (the API router, with its authentication layer if any) with the UI in front of it: the
/// UI's paths are answered here, every other request goes to `api` unchanged.
pub fn router(api: Router, auth: Option<Arc<Auth>>, secure: bool) -> Router {
    let ui = Arc::new(Ui {
        api: api.clone(),
        auth,
        secure,
        anon_secret: crate::auth::random_secret(24),
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css", html::CSS) }),
        )
        .route(
            "/ui/live.js",
            get(|| async { asset("text/javascript", html::JS) }),
        )
        .route("/ui/events", get(events))
        .route("/ui/tenants", get(pages::tenants))
        .route("/ui/networks", get(pages::networks))
        .route("/ui/groups", get(pages::groups))
        .route("/ui/policies", get(pages::policies))
        .route("/ui/netprofiles", get(pages::netprofiles))
        .route("/ui/endpoints", get(pages::endpoints))
        .route("/ui/global", get(pages::global))
        .route("/ui/new/{coll}", get(forms::new_form))
        .route("/ui/edit/{coll}/{key}", get(forms::edit_form))
        .route("/ui/save/{coll}", post(forms::save))
        .route("/ui/delete/{coll}/{key}", post(forms::delete))
        .route("/ui/{*rest}", get(not_found).post(not_found))
        .with_state(ui)
        .fallback_service(api)
}

/// A logged-in visitor (or, with `--auth off`, any visitor).
pub struct Session {
    /// The API token (empty with `--auth off`).
    token: String,
    claims: Option<Claims>,
    /// `alice (ops: A)`, for the header.
    display: Option<String>,
    csrf: String,
}

impl Session {
    fn header(&self) -> html::Header<'_> {
        html::Header {
            user: self.display.as_deref(),
            csrf: &self.csrf,
        }
    }
}

/// An answer of the API that is not a success: its status and its own message.
#[derive(Debug)]
pub struct ApiFail {
    pub status: StatusCode,
    pub message: String,
}

impl Ui {
    fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-contiv_ui"
        } else {
            "contiv_ui"
        }
    }

    fn csrf_for(&self, secret: &str) -> String {
        let d = ring::digest::digest(
            &ring::digest::SHA256,
            format!("contiv-ui-csrf\0{secret}").as_bytes(),
        );
        B64.encode(d.as_ref())
    }

    /// The session of a request, or the answer to give instead: a redirect to the login page
    /// (a GET; `next` brings the visitor back) or a 401 page (other methods).
    fn session(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
    ) -> Result<Session, Box<Response>> {
        let Some(auth) = &self.auth else {
            return Ok(Session {
                token: String::new(),
                claims: None,
                display: None,
                csrf: self.csrf_for(&self.anon_secret),
            });
        };
        let token = cookie(headers, self.cookie_name()).unwrap_or_default();
        match auth.verify(&token) {
            Ok(claims) => Ok(Session {
                display: Some(format!("{} ({})", claims.sub, describe_role(&claims))),
                csrf: self.csrf_for(&token),
                token,
                claims: Some(claims),
            }),
            Err(_) if *method == Method::GET => {
                let why = if token.is_empty() { "" } else { "&expired=1" };
                Err(Box::new(
                    Redirect::to(&format!("/ui/login?next={}{why}", html::url(path)))
                        .into_response(),
                ))
            }
            Err(e) => Err(Box::new(self.error_page(
                None,
                ApiFail {
                    status: StatusCode::UNAUTHORIZED,
                    message: format!("{e} (log in again at /ui/login)"),
                },
            ))),
        }
    }

    /// Checks a form POST: the CSRF token must be the session's and the request's `Origin`, when
    /// the browser sends one, this server's.
    fn check_post(
        &self,
        s: &Session,
        headers: &HeaderMap,
        uri: &Uri,
        form: &HashMap<String, String>,
    ) -> Result<(), Box<Response>> {
        let given = form.get("_csrf").map(String::as_str).unwrap_or_default();
        if !same_origin(headers, uri) || !ring_eq(given.as_bytes(), s.csrf.as_bytes()) {
            return Err(Box::new(self.error_page(
                Some(s),
                ApiFail {
                    status: StatusCode::FORBIDDEN,
                    message: "the form's security token is missing or stale, or it was sent from another site: reload the page and try again".into(),
                },
            )));
        }
        Ok(())
    }

    /// Runs `method path` on the API router, as the session's principal.
    pub async fn call(
        &self,
        s: &Session,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiFail> {
        let resp = self.raw_call(s, method, path, body).await?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .map_err(|e| ApiFail {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("read the API's answer to {path}: {e}"),
            })?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        Err(ApiFail {
            status,
            message: v["error"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("{path}: {status}")),
        })
    }

    async fn raw_call(
        &self,
        s: &Session,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ApiFail> {
        let mut req = axum::http::Request::builder().method(method).uri(path);
        if !s.token.is_empty() {
            req = req.header("x-auth-token", &s.token);
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let req = req.body(body).map_err(|e| ApiFail {
            status: StatusCode::BAD_REQUEST,
            message: format!("{path}: {e}"),
        })?;
        Ok(self
            .api
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| match e {}))
    }

    /// `GET /api/v1/<coll>/`: the objects the principal may see.
    pub async fn list(&self, s: &Session, coll: &str) -> Result<Vec<Value>, ApiFail> {
        match self
            .call(s, Method::GET, &format!("/api/v1/{coll}/"), None)
            .await?
        {
            Value::Array(v) => Ok(v),
            _ => Ok(vec![]),
        }
    }

    fn page(&self, s: &Session, title: &str, nav: html::Nav, body: &str) -> Response {
        html_response(
            StatusCode::OK,
            html::page(title, nav, Some(&s.header()), body),
        )
    }

    /// A page with the API's refusal: its status and message.
    fn error_page(&self, s: Option<&Session>, e: ApiFail) -> Response {
        let title = match e.status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::UNAUTHORIZED => "Not logged in",
            _ => "Error",
        };
        let mut body = html::alert(&e.message);
        if e.status == StatusCode::UNAUTHORIZED {
            body.push_str(&html::a("/ui/login", "Log in"));
        }
        let header = s.map(Session::header);
        html_response(
            e.status,
            html::page(title, html::Nav::None, header.as_ref(), &body),
        )
    }
}

fn describe_role(c: &Claims) -> String {
    match c.role {
        crate::auth::Role::Ops => format!("ops: {}", c.tenants.join(", ")),
        r => r.name().to_string(),
    }
}

fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    // Constant time over the length of b: a guess tells nothing by its timing.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request's cookie by name.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether a request's `Origin` (sent by browsers with every POST) is this server (`Host`).
/// Without an `Origin`, the CSRF token alone decides.
/// The host is `Host` over HTTP/1.1, the request's authority over HTTP/2.
fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, h)| !host.is_empty() && h == host)
}

/// An HTML answer with the headers every UI page gets: no caching (pages hold tenants' data),
/// no framing, scripts and styles from this server only.
fn html_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    r
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        // Not no-referrer: with it, browsers send `Origin: null` on form posts, which
        // `same_origin` must refuse.
        HeaderValue::from_static("same-origin"),
    );
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}

/// Where to go after a form: a path of the UI, never another site.
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => n.clone(),
        _ => "/ui/".into(),
    }
}

async fn not_found(
    State(ui): St,
    method: Method,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let s = match ui.session(&headers, &method, uri.path()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    ui.error_page(
        Some(&s),
        ApiFail {
            status: StatusCode::NOT_FOUND,
            message: format!("no UI page at {}", uri.path()),
        },
    )
}

fn login_form(next: &str, error: Option<&str>, username: &str) -> String {
    let mut body = String::new();
    if let Some(e) = error {
        body.push_str(&html::alert(e));
    }
    body.push_str(&format!(
        "<form class=\"edit\" method=\"post\" action=\"/ui/login\">\
<input type=\"hidden\" name=\"next\" value=\"{}\">\
<div class=\"field\"><label for=\"username\">Username</label>\
<input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus value=\"{}\"></div>\
<div class=\"field\"><label for=\"password\">Password</label>\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></div>\
<button type=\"submit\">Log in</button></form>",
        esc(next),
        esc(username)
    ));
    body
}

async fn login_page(State(ui): St, Query(q): Query<HashMap<String, String>>) -> Response {
    if ui.auth.is_none() {
        return Redirect::to("/ui/").into_response();
    }
    let next = safe_next(q.get("next"));
    let note = q
        .contains_key("expired")
        .then_some("your session ended (it expired, or the server's keys changed): log in again");
    html_response(
        StatusCode::OK,
        html::page(
            "Log in",
            html::Nav::None,
            None,
            &login_form(&next, note, ""),
        ),
    )
}

/// `POST /ui/login`: auth_proxy's login through the API; the token becomes the session cookie.
async fn login(
    State(ui): St,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if ui.auth.is_none() {
        return Redirect::to("/ui/").into_response();
    }
    let next = safe_next(f.get("next"));
    let username = f.get("username").cloned().unwrap_or_default();
    let fail = |status, message: &str| {
        html_response(
            status,
            html::page(
                "Log in",
                html::Nav::None,
                None,
                &login_form(&next, Some(message), &username),
            ),
        )
    };
    if !same_origin(&headers, &uri) {
        return fail(
            StatusCode::FORBIDDEN,
            "the login form was sent from another site",
        );
    }
    let anon = Session {
        token: String::new(),
        claims: None,
        display: None,
        csrf: String::new(),
    };
    let body = serde_json::json!({
        "username": username,
        "password": f.get("password").cloned().unwrap_or_default(),
    });
    match ui
        .call(
            &anon,
            Method::POST,
            "/api/v1/auth_proxy/login/",
            Some(&body),
        )
        .await
    {
        Ok(v) => {
            let token = v["token"].as_str().unwrap_or_default();
            let mut r = Redirect::to(&next).into_response();
            set_cookie(&mut r, &ui, token, false);
            r
        }
        Err(e) => fail(e.status, &e.message),
    }
}

fn set_cookie(r: &mut Response, ui: &Ui, value: &str, clear: bool) {
    let mut c = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict",
        ui.cookie_name()
    );
    if ui.secure {
        c.push_str("; Secure");
    }
    if clear {
        c.push_str("; Max-Age=0");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `POST /ui/logout`: forgets the session cookie. (Tokens are not revoked one by one, see
/// docs/security.md: the browser drops the only copy the UI gave it.)
async fn logout(
    State(ui): St,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let s = match ui.session(&headers, &Method::POST, "/ui/logout") {
        Ok(s) => s,
        Err(_) => return Redirect::to("/ui/login").into_response(),
    };
    if let Err(r) = ui.check_post(&s, &headers, &uri, &f) {
        return *r;
    }
    let mut r = Redirect::to("/ui/login").into_response();
    set_cookie(&mut r, &ui, "", true);
    r
}

/// `GET /ui/events`: server-sent events, one per change the API's watch stream shows this
/// principal (ops users see their tenants' changes only: the API filters the stream), after
/// the initial listing. Each event's data is the changed object's kind.
async fn events(State(ui): St, method: Method, headers: HeaderMap) -> Response {
    let s = match ui.session(&headers, &method, "/ui/events") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let resp = match ui.raw_call(&s, Method::GET, "/api/v1/watch", None).await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return (r.status(), "the watch stream was refused").into_response(),
        Err(e) => return (e.status, e.message).into_response(),
    };
    let mut state = (Vec::<u8>::new(), false);
    let stream = resp.into_body().into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        let (buf, synced) = &mut state;
        buf.extend_from_slice(&chunk);
        let mut out = String::new();
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let Ok(ev) = serde_json::from_slice::<model::agent::WatchEvent>(&line) else {
                continue;
            };
            use model::agent::WatchEventType as T;
            match ev.event_type {
                T::Synced => *synced = true,
                T::Put | T::Delete if *synced => {
                    out.push_str(&format!("data: {}\n\n", ev.kind.replace('\n', " ")));
                }
                _ => {}
            }
        }
        Ok::<Bytes, axum::Error>(Bytes::from(out))
    });
    let mut r = Body::from_stream(stream).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_ui() {
        assert_eq!(safe_next(Some(&"/ui/networks".into())), "/ui/networks");
        assert_eq!(safe_next(Some(&"https://evil.example/".into())), "/ui/");
        assert_eq!(safe_next(Some(&"//evil.example/ui/".into())), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn origin_must_be_this_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9999"));
        let path = Uri::from_static("/ui/save/networks");
        assert!(same_origin(&h, &path));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://127.0.0.1:9999"),
        );
        assert!(same_origin(&h, &path));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h, &path));
        // HTTP/2: no Host header, the authority is in the URI.
        let h2 = Uri::from_static("https://127.0.0.1:9999/ui/save/networks");
        h.remove(header::HOST);
        assert!(!same_origin(&h, &h2));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://127.0.0.1:9999"),
        );
        assert!(same_origin(&h, &h2));
    }

    #[test]
    fn cookies_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-contiv_ui=ctv1.x.y; b=2"),
        );
        assert_eq!(cookie(&h, "__Host-contiv_ui").as_deref(), Some("ctv1.x.y"));
        assert_eq!(cookie(&h, "contiv_ui"), None);
    }
}
