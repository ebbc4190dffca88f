//! The metrics listener netmaster and netplugin share: a plain HTTP server answering
//! `GET /metrics` in the OpenMetrics text format, on its own address (`--metrics-listen`), apart
//! from the API. It is plain and unauthenticated on purpose: Prometheus scrapes it without a
//! token, and the daemons bind it to localhost by default (docs/security.md "Metrics").

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What `/metrics` answers with (OpenMetrics 1.0 text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The buckets of every latency histogram: 0.5 ms to about 16 s, doubling. One set for all, so
/// that dashboards compare them.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16)
}

/// A new latency histogram with [`latency_buckets`].
pub fn latency_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(latency_buckets())
}

/// `--metrics-listen`: `off` (or empty) serves no metrics, anything else is the address.
pub fn listen_address(flag: &str) -> Option<&str> {
    let flag = flag.trim();
    (!flag.is_empty() && !flag.eq_ignore_ascii_case("off")).then_some(flag)
}

/// Renders `registry` as OpenMetrics text (with its `# EOF`).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; a metric that cannot be encoded is a bug in its type.
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("metrics encode as OpenMetrics text");
    out
}

/// Produces the text of one scrape (it may gather state asynchronously first).
pub type Render = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// Serves `GET /metrics` on `listener` with what `render` produces, until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, render: Render) -> std::io::Result<()> {
    let router = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let render = render.clone();
                async move {
                    let body = render().await;
                    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
                }
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "only GET /metrics is served on the metrics address\n",
            )
                .into_response()
        });
    axum::serve(listener, router).await
}

/// For tests: the text parsed by a Prometheus OpenMetrics parser (the Python client's strict
/// one, Debian's python3-prometheus-client), so that what the daemons serve is checked by a
/// parser other than the code that wrote it.
pub mod testing {
    use std::collections::BTreeMap;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    /// One sample of a scrape.
    #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
    pub struct Sample {
        /// The metric family (without `_total`, `_bucket` ...).
        pub family: String,
        /// The family's type: counter, gauge, histogram ...
        #[serde(rename = "type")]
        pub kind: String,
        /// The sample's own name (`..._total`, `..._bucket`, `..._count`).
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    /// A parsed scrape: its samples (it derefs to them), and every family it declares with
    /// its type, those without samples too.
    #[derive(Debug, Clone, Default, serde::Deserialize)]
    pub struct Scrape {
        pub families: BTreeMap<String, String>,
        pub samples: Vec<Sample>,
    }

    impl std::ops::Deref for Scrape {
        type Target = [Sample];
        fn deref(&self) -> &[Sample] {
            &self.samples
        }
    }

    const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {"families": {}, "samples": []}
for fam in text_string_to_metric_families(sys.stdin.read()):
    out["families"][fam.name] = fam.type
    for s in fam.samples:
        out["samples"].append({"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

    /// Parses `text` as OpenMetrics; the parser's complaint on failure.
    pub fn parse(text: &str) -> Result<Scrape, String> {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", PARSER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run python3 (the OpenMetrics parser): {e}"))?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(text.as_bytes())
            .map_err(|e| format!("write to the OpenMetrics parser: {e}"))?;
        let out = child
            .wait_with_output()
            .map_err(|e| format!("wait for the OpenMetrics parser: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "not OpenMetrics text: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("parser output: {e}"))
    }

    /// The metrics URL a daemon's log (its latest start) says it serves: the daemons log
    /// `serving metrics at http://ADDRESS/metrics` once bound (port 0 in tests).
    pub fn logged_url(log: &str) -> Option<String> {
        log.lines()
            .rev()
            .filter_map(|l| l.split("serving metrics at ").nth(1))
            .find_map(|s| s.split_whitespace().next())
            .map(str::to_string)
    }

    /// Fetches `url` with curl (run as `run` says: in a network namespace, or not) and parses
    /// the answer; panics with the reason on failure.
    pub fn scrape_with_curl(
        url: &str,
        run: impl FnOnce(&[&str]) -> std::process::Output,
    ) -> Scrape {
        let out = run(&["curl", "-sS", "--fail", "--max-time", "20", url]);
        assert!(
            out.status.success(),
            "scrape {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// The value of the sample named `name` whose labels include `labels`.
    pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        find(samples, name, labels).first().map(|s| s.value)
    }

    /// The samples named `name` whose labels include `labels`.
    pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
        samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_flag_off_or_address() {
        assert_eq!(listen_address("off"), None);
        assert_eq!(listen_address(""), None);
        assert_eq!(listen_address("127.0.0.1:9990"), Some("127.0.0.1:9990"));
    }
}
