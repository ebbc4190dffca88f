//! Running the real `contiv` CNI plugin as a runtime does.

use crate::bin;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the plugin printed and how it exited.
pub struct CniOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
    pub elapsed: Duration,
}

impl CniOutput {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    /// The CNI error code of a failure.
    pub fn error_code(&self) -> u64 {
        self.json["code"].as_u64().unwrap_or(0)
    }
    pub fn msg(&self) -> String {
        format!(
            "{} {}",
            self.json["msg"].as_str().unwrap_or_default(),
            self.json["details"].as_str().unwrap_or_default()
        )
    }
}

/// Runs the `contiv` plugin with the CNI environment and `conf` on stdin.
pub fn cni_call(
    command: &str,
    container: &str,
    netns: &str,
    ifname: &str,
    conf: &Value,
) -> CniOutput {
    cni_call_with(
        bin("contiv").as_path(),
        command,
        container,
        netns,
        ifname,
        conf,
        &[],
    )
}

pub fn cni_call_with(
    plugin: &Path,
    command: &str,
    container: &str,
    netns: &str,
    ifname: &str,
    conf: &Value,
    env: &[(&str, &str)],
) -> CniOutput {
    use std::io::Write;
    let start = Instant::now();
    let mut c = Command::new(plugin);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/usr/lib/cni:/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut ch = c.spawn().expect("spawn the CNI plugin");
    // A plugin that refuses its environment exits before reading stdin: a broken pipe then is
    // expected, and the exit status tells the story.
    let _ = ch
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes());
    let out = ch.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    CniOutput {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        elapsed: start.elapsed(),
    }
}
