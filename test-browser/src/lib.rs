//! What the web UI's browser tests share (master/tests/ui_browser.rs against a netmaster alone,
//! test-e2e/tests/ui.rs against the simulated cluster): headless Debian `chromium` driven
//! through `chromedriver` (WebDriver, the fantoccini crate), page helpers that wait for what
//! they look for with a deadline, and screenshots.
//!
//! Chromium is started with `--ignore-certificate-errors`, in these tests only: the netmaster's
//! certificate is issued by the CA it made at its first start (in the test's temp dir), which
//! chromium could trust only through an NSS database of its own. Everything else (the `__Host-`
//! Secure cookie, the https origin) is as a user's browser sees it.
//!
//! Needs `chromium` and `chromium-driver` (`scripts/setup.sh --tests` installs them); without
//! them [`have_browser`] says so and the tests pass without running, unless
//! `CONTIV_UI_BROWSER=require` (scripts/test.sh sets it) makes that a failure.

pub use fantoccini::{Client, Locator};
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page helper waits for what it looks for.
const WAIT: Duration = Duration::from_secs(20);

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
            let deadline = Instant::now() + WAIT;
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

/// Whether chromium and chromedriver are installed; panics when they are not and
/// `CONTIV_UI_BROWSER=require`, else says the test is skipped.
pub fn have_browser() -> bool {
    let ok = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !ok {
        let msg = format!(
            "{CHROMIUM} or {CHROMEDRIVER} is missing: install Debian's chromium and chromium-driver (scripts/setup.sh --tests does)"
        );
        if std::env::var("CONTIV_UI_BROWSER").is_ok_and(|v| v == "require") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED the browser test: {msg}");
    }
    ok
}

/// Where screenshots go: `$CONTIV_UI_SCREENSHOTS`, else `default` (a test passes its
/// `CARGO_TARGET_TMPDIR`'s `ui-screenshots/`); made if missing.
pub fn screenshot_dir(default: &Path) -> PathBuf {
    let dir = std::env::var_os("CONTIV_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| default.to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A browser session on the netmaster at `base` (its https URL), saving screenshots in `shots`.
/// Dropping it kills chromedriver and its chromium even when the test failed.
pub struct Ui {
    pub c: Client,
    pub base: String,
    pub shots: PathBuf,
    // After `c`: the session's process and profile outlive the client.
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Ui {
    /// Starts chromedriver and a headless chromium with a fresh profile.
    pub async fn open(base: &str, shots: PathBuf) -> Ui {
        let driver = Driver::start();
        let profile = tempfile::tempdir().unwrap();
        Ui {
            c: driver.browser(profile.path()).await,
            base: base.to_string(),
            shots,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Ends the WebDriver session (chromium exits), then chromedriver.
    pub async fn close(self) {
        let _ = self.c.clone().close().await;
    }

    pub async fn goto(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// The page's path and query.
    pub async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Waits (up to 20 s) for the page to be at `path` (a click's navigation has landed).
    pub async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + WAIT;
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

    /// The texts of the elements `css` matches now.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut seen = Vec::new();
        for e in self.c.find_all(Locator::Css(css)).await.unwrap_or_default() {
            seen.push(e.text().await.unwrap_or_default());
        }
        seen
    }

    /// Waits (up to 20 s) for `css` to match an element whose text contains `text`.
    pub async fn wait_text(&self, css: &str, text: &str) {
        self.wait_texts(
            css,
            &format!("an element whose text contains {text:?}"),
            false,
            |t| t.iter().any(|t| t.contains(text)),
        )
        .await;
    }

    /// Waits (up to 20 s) for the texts of what `css` matches to satisfy `ok`, reloading
    /// the page before each look when `reload` is set (for what changes without a watch event,
    /// such as the agents' counters); returns them.
    pub async fn wait_texts(
        &self,
        css: &str,
        what: &str,
        reload: bool,
        ok: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if reload {
                self.c.refresh().await.unwrap();
            }
            let seen = self.texts(css).await;
            if ok(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{css}: no {what} after {WAIT:?}; seen: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(if reload { 500 } else { 100 })).await;
        }
    }

    /// Types `value` in the field named `name`, or picks it in a select.
    pub async fn fill(&self, fields: &[(&str, &str)]) {
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

    /// Submits the page's form.
    pub async fn submit(&self) {
        self.c
            .find(Locator::Css("main form.edit button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Fills and submits a create form: opens `form` (e.g. `/ui/new/networks?tenantName=A`),
    /// checks its fields are labelled, fills `fields`, submits, and waits to land on `then`.
    pub async fn create(&self, form: &str, fields: &[(&str, &str)], then: &str) {
        self.goto(form).await;
        self.all_fields_labelled().await;
        self.fill(fields).await;
        self.submit().await;
        self.wait_path(then).await;
    }

    /// Logs in on the login form the browser is at, and waits to land on `then`.
    pub async fn log_in(&self, user: &str, password: &str, then: &str) {
        self.fill(&[("username", user), ("password", password)])
            .await;
        self.submit().await;
        self.wait_path(then).await;
        self.wait_text("#who", user).await;
    }

    /// The text of the page's `main`.
    pub async fn text(&self) -> String {
        self.c
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Saves a screenshot of the window as `<shots>/<name>.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Every visible form control has a label (usability: screen readers, click targets).
    pub async fn all_fields_labelled(&self) {
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
    pub async fn fits_width(&self) {
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
