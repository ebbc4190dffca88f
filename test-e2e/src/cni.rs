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
    exec_plugin(None, plugin, command, container, netns, ifname, conf, env)
}

/// Runs `plugin` with the CNI environment, `env` and `conf` on stdin; in the network namespace
/// `runtime_netns` (a name under /run/netns: the host a runtime runs on) when given, as plugins
/// that work on the host's side (portmap's iptables rules, bandwidth's qdiscs) must run there.
#[allow(clippy::too_many_arguments)]
fn exec_plugin(
    runtime_netns: Option<&str>,
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
    let mut c = match runtime_netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}"))
                .arg("--")
                .arg(plugin);
            c
        }
        None => Command::new(plugin),
    };
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

/// A network config list run the way a runtime on a host runs it (libcni's semantics): ADD
/// calls each plugin in order, each given the previous one's result as `prevResult`; CHECK
/// calls each in order and DEL each in reverse order, all given the cached result of the ADD;
/// a plugin gets in `runtimeConfig` only what its `capabilities` ask for. `contiv` is the
/// binary built here; the others come from the reference plugins (/usr/lib/cni).
pub struct Chain {
    /// The config list (`cniVersion`, `name`, `plugins`).
    pub list: Value,
    /// The host namespace the runtime runs in.
    pub runtime_netns: String,
}

/// One attachment as the runtime sees it: the container, its netns and interface, and the
/// pod's arguments (`CNI_ARGS`) and capability arguments (`portMappings`, `bandwidth`...).
pub struct Attachment<'a> {
    pub container: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub cni_args: &'a str,
    pub capability_args: &'a Value,
}

impl Chain {
    fn plugin_path(kind: &str) -> std::path::PathBuf {
        if kind == "contiv" {
            bin("contiv")
        } else {
            Path::new("/usr/lib/cni").join(kind)
        }
    }

    /// The config one plugin of the list gets (libcni's `buildOneConfig`).
    fn one_config(&self, plugin: &Value, a: &Attachment, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["cniVersion"] = self.list["cniVersion"].clone();
        conf["name"] = self.list["name"].clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        let mut rc = serde_json::Map::new();
        for (cap, on) in plugin["capabilities"].as_object().into_iter().flatten() {
            if on.as_bool() == Some(true)
                && let Some(v) = a.capability_args.get(cap)
            {
                rc.insert(cap.clone(), v.clone());
            }
        }
        if !rc.is_empty() {
            conf["runtimeConfig"] = Value::Object(rc);
        }
        conf
    }

    fn call(
        &self,
        command: &str,
        plugin: &Value,
        a: &Attachment,
        prev: Option<&Value>,
    ) -> CniOutput {
        let kind = plugin["type"].as_str().expect("a plugin type");
        exec_plugin(
            Some(&self.runtime_netns),
            &Self::plugin_path(kind),
            command,
            a.container,
            a.netns,
            a.ifname,
            &self.one_config(plugin, a, prev),
            &[("CNI_ARGS", a.cni_args)],
        )
    }

    fn plugins(&self) -> Vec<Value> {
        self.list["plugins"].as_array().expect("plugins").clone()
    }

    /// ADD through the list: the last plugin's result, or the plugin type that failed and its
    /// output (boxed: a large error).
    pub fn add(&self, a: &Attachment) -> Result<Value, Box<(String, CniOutput)>> {
        let mut prev: Option<Value> = None;
        for p in self.plugins() {
            let out = self.call("ADD", &p, a, prev.as_ref());
            if !out.ok() {
                return Err(Box::new((
                    p["type"].as_str().unwrap_or_default().to_string(),
                    out,
                )));
            }
            prev = Some(out.json);
        }
        Ok(prev.expect("a list with plugins"))
    }

    /// CHECK of each plugin of the list, in order, with the cached ADD result: each plugin's
    /// type and output (libcni stops at the first failure; the caller sees them all).
    pub fn check(&self, a: &Attachment, cached: &Value) -> Vec<(String, CniOutput)> {
        self.plugins()
            .iter()
            .map(|p| {
                let out = self.call("CHECK", p, a, Some(cached));
                (p["type"].as_str().unwrap_or_default().to_string(), out)
            })
            .collect()
    }

    /// DEL through the list in reverse order, with the cached ADD result (if any).
    pub fn del(
        &self,
        a: &Attachment,
        cached: Option<&Value>,
    ) -> Result<(), Box<(String, CniOutput)>> {
        for p in self.plugins().iter().rev() {
            let out = self.call("DEL", p, a, cached);
            if !out.ok() {
                return Err(Box::new((
                    p["type"].as_str().unwrap_or_default().to_string(),
                    out,
                )));
            }
        }
        Ok(())
    }
}
