//! The files in `conf/` are what users install: the CNI network config list must be accepted by
//! the real `contiv` plugin, and the systemd units must pass `systemd-analyze verify` and start
//! the real binaries with flags they accept. (The podman test installs the config list for real.)

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use test_e2e::{bin, cni_call_with, unique};

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf")
}

fn read(rel: &str) -> String {
    let p = conf_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn the_conflist_is_accepted_by_the_plugin() {
    let list: Value = serde_json::from_str(&read("cni/10-contiv.conflist")).expect("JSON");
    assert_eq!(list["cniVersion"], "1.1.0");
    assert_eq!(list["name"], "contiv");
    let plugins = list["plugins"].as_array().expect("plugins");
    assert_eq!(
        plugins.len(),
        1,
        "only contiv: podman and kubelet set up lo"
    );
    assert_eq!(plugins[0]["type"], "contiv");
    assert_eq!(plugins[0]["agentSocket"], "/run/contiv/cni.sock");
    // The config a runtime builds from the list for the plugin: the plugin's object plus the
    // list's cniVersion and name. Pointed at a socket nobody serves, STATUS gets past every
    // config check and fails only on the agent (code 50, "plugin not available"); a config the
    // plugin refused would fail with code 1, 6 or 7 first.
    let mut conf = plugins[0].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    let dir = std::env::temp_dir().join(unique("conf"));
    conf["agentSocket"] = json!(dir.join("none.sock"));
    conf["logFile"] = json!(dir.join("cni.log"));
    let out = cni_call_with(&bin("contiv"), "STATUS", "", "", "", &conf, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.error_code(), 50, "{}", out.stdout);
    assert!(out.msg().contains("none.sock"), "{}", out.msg());
    let ver = cni_call_with(&bin("contiv"), "VERSION", "", "", "", &conf, &[]);
    assert_eq!(ver.json["cniVersion"], "1.1.0", "{}", ver.stdout);
}

/// A unit's `Environment=` defaults and `ExecStart=` words, continuation lines joined.
fn unit(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let joined = text.replace("\\\n", " ");
    let mut env = BTreeMap::new();
    let mut exec = Vec::new();
    for line in joined.lines() {
        if let Some(kv) = line.strip_prefix("Environment=") {
            let (k, v) = kv.split_once('=').expect("VAR=value");
            env.insert(k.to_string(), v.to_string());
        } else if let Some(cmd) = line.strip_prefix("ExecStart=") {
            exec = cmd.split_whitespace().map(str::to_string).collect();
        }
    }
    (env, exec)
}

/// `--flag` and its `[env: VAR=]` for each option of a clap `--help`.
fn help_flags(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let words: Vec<&str> = t.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        if let Some(flag) = words.iter().find(|w| w.starts_with("--"))
            && t.starts_with('-')
        {
            out.push((flag.to_string(), String::new()));
        }
        if let Some(rest) = t.split("[env: ").nth(1)
            && let Some(last) = out.last_mut()
        {
            last.1 = rest.split('=').next().unwrap_or_default().to_string();
        }
    }
    out
}

#[test]
fn the_systemd_units_verify_and_their_flags_parse() {
    let dir = std::env::temp_dir().join(unique("units"));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["netmaster", "netplugin"] {
        let text = read(&format!("systemd/{name}.service"));
        let installed = format!("/usr/local/bin/{name}");
        assert!(text.contains(&format!("ExecStart={installed} ")), "{name}");
        assert!(text.contains("Restart=on-failure"), "{name}");
        if name == "netplugin" {
            assert!(text.contains("Requires=openvswitch-switch.service"));
            assert!(text.contains("After=openvswitch-switch.service"));
        }
        // systemd's own check, with the binary where the unit expects it replaced by the
        // built one (verify checks that ExecStart's program exists).
        let copy = dir.join(format!("{name}.service"));
        let built = bin(name);
        std::fs::write(&copy, text.replace(&installed, built.to_str().unwrap())).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("run systemd-analyze (Debian package systemd; scripts/setup.sh installs it)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify {name}.service:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Every flag on ExecStart exists and takes its default value: the binary parses the
        // whole command line (then stops at --help instead of starting).
        let (env, exec) = unit(&text);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let args: Vec<String> = exec[1..]
            .iter()
            .map(|w| {
                let mut w = w.clone();
                for (k, v) in &env {
                    w = w.replace(&format!("${{{k}}}"), &v.replace("%H", hostname.trim()));
                }
                assert!(
                    !w.contains("${"),
                    "{name}: {w} has no default in Environment="
                );
                w
            })
            .collect();
        let out = Command::new(&built)
            .env_clear()
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} {args:?} was refused:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Every flag `--help` lists is either on ExecStart or, when it is off unless given
        // (no default), its environment variable is named in the unit for the env file.
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        let flags: Vec<&str> = args
            .iter()
            .filter(|a| a.starts_with("--"))
            .map(String::as_str)
            .collect();
        for (flag, var) in help_flags(&help) {
            if ["--help", "--version"].contains(&flag.as_str()) {
                continue;
            }
            // A one-shot action (no environment variable: never a setting of the service)
            // is named in the header comment, as a command to run.
            let named = if var.is_empty() {
                text.contains(&format!("#   {name} {flag}"))
            } else {
                text.contains(&format!("#   {var}="))
            };
            assert!(
                flags.contains(&flag.as_str()) || named,
                "{name}.service neither sets {flag} on ExecStart nor names {} among the \
                 optional settings of its header comment: add it to conf/systemd/{name}.service",
                if var.is_empty() {
                    flag.as_str()
                } else {
                    var.as_str()
                }
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
