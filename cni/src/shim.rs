//! The `contiv` plugin: validate the call, answer VERSION, forward everything else to the
//! agent ([`crate::wire`]) and turn the answer into stdout and an exit code. `main` only wires
//! this to the process's environment, stdin and stdout.

use std::ffi::OsString;
use std::io::{IsTerminal as _, Read, Write as _};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::client::{self, ClientError};
use crate::env::Invocation;
use crate::error::CniError;
use crate::types::NetConf;
use crate::version::{
    self, CHECK_MIN_VERSION, CURRENT_VERSION, STATUS_GC_MIN_VERSION, VersionInfo,
};
use crate::wire::{AgentRequest, Command, MAX_REQUEST_BYTES, PROTOCOL_VERSION};

/// What the plugin prints on stdout and the exit code it returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// A result, an error object, or nothing.
    pub stdout: Vec<u8>,
    /// 0 on success, 1 when `stdout` holds an error.
    pub exit_code: i32,
}

impl Outcome {
    fn ok(stdout: Vec<u8>) -> Outcome {
        Outcome {
            stdout,
            exit_code: 0,
        }
    }

    fn error(err: &CniError, cni_version: &str) -> Outcome {
        Outcome {
            stdout: err.to_json(cni_version),
            exit_code: 1,
        }
    }
}

/// Runs one CNI call. `getenv` reads the `CNI_*` variables; `stdin` holds the network config.
/// `stdin_is_terminal` keeps VERSION from waiting on a terminal (VERSION's input is optional).
pub fn run(
    getenv: &dyn Fn(&str) -> Option<OsString>,
    stdin: &mut dyn Read,
    stdin_is_terminal: bool,
) -> Outcome {
    let started = Instant::now();
    let inv = match Invocation::from_env(getenv) {
        Ok(inv) => inv,
        Err(e) => return Outcome::error(&e, CURRENT_VERSION),
    };
    if inv.command == Command::Version {
        return answer_version(stdin, stdin_is_terminal);
    }
    let mut input = Vec::new();
    if let Err(e) = stdin.read_to_end(&mut input) {
        let err = CniError::io(format!("read network config from stdin: {e}"));
        return Outcome::error(&err, CURRENT_VERSION);
    }
    let (config, conf) = match load_config(inv.command, &input) {
        Ok(loaded) => loaded,
        Err((err, cni_version)) => return Outcome::error(&err, &cni_version),
    };
    let result = call_agent(&inv, &conf, config);
    if let Some(log_file) = &conf.log_file {
        let line = log_line(SystemTime::now(), &inv, &conf, &result, started.elapsed());
        append_log(log_file, &line);
    }
    match result {
        Ok(stdout) => Outcome::ok(stdout),
        Err(err) => Outcome::error(&err, &conf.cni_version),
    }
}

/// VERSION: answered here, without the agent. The input (`{"cniVersion": ...}`) is optional.
fn answer_version(stdin: &mut dyn Read, stdin_is_terminal: bool) -> Outcome {
    let mut input = Vec::new();
    if !stdin_is_terminal {
        // An unreadable stdin only means no version was requested.
        let _ = stdin.read_to_end(&mut input);
    }
    let requested: Option<Value> = serde_json::from_slice(&input).ok();
    let requested = requested
        .as_ref()
        .and_then(|v| v.get("cniVersion"))
        .and_then(Value::as_str);
    let mut out = serde_json::to_vec_pretty(&VersionInfo::for_request(requested))
        .expect("serialize version info");
    out.push(b'\n');
    Outcome::ok(out)
}

/// Decodes and validates the config. On error, also returns the version to print it in.
/// Public only for the fuzz targets, which feed it the bytes a runtime could put on stdin.
#[doc(hidden)]
pub fn load_config(command: Command, input: &[u8]) -> Result<(Value, NetConf), (CniError, String)> {
    let fail = |err| (err, CURRENT_VERSION.to_string());
    let config: Value = serde_json::from_slice(input)
        .map_err(|e| fail(CniError::decode(format!("decode network config: {e}"))))?;
    if !config.is_object() {
        return Err(fail(CniError::decode(
            "decode network config: not a JSON object",
        )));
    }
    let conf = NetConf::from_value(&config).map_err(fail)?;
    conf.validate().map_err(fail)?;
    let min = match command {
        Command::Check => CHECK_MIN_VERSION,
        Command::Status | Command::Gc => STATUS_GC_MIN_VERSION,
        _ => "0.0.0",
    };
    if !version::at_least(&conf.cni_version, min) {
        let err = CniError::incompatible_version(format!(
            "config version {} does not allow {command}",
            conf.cni_version
        ))
        .with_details(format!(
            "{command} needs cniVersion {min} or later in the network config"
        ));
        return Err((err, conf.cni_version.clone()));
    }
    Ok((config, conf))
}

/// Sends the call to the agent and returns what to print.
fn call_agent(inv: &Invocation, conf: &NetConf, config: Value) -> Result<Vec<u8>, CniError> {
    let path = inv
        .command
        .path()
        .expect("VERSION is answered before the agent is called");
    let request = AgentRequest {
        protocol: PROTOCOL_VERSION,
        command: inv.command,
        container_id: inv.container_id.clone(),
        netns: inv.netns.clone(),
        if_name: inv.ifname.clone(),
        args: inv.args.clone(),
        path: inv.path.clone(),
        config,
    };
    let body = serde_json::to_vec(&request)
        .map_err(|e| CniError::internal(format!("encode request for the agent: {e}")))?;
    if body.len() > MAX_REQUEST_BYTES {
        return Err(too_large(body.len()));
    }
    let socket = conf.agent_socket();
    let response = client::post_json(socket, path, &body, conf.timeout())
        .map_err(|e| client_error(inv.command, socket, e))?;
    if !(200..300).contains(&response.status) {
        return Err(agent_error(socket, response));
    }
    if inv.command == Command::Add {
        check_add_result(&response.body, &conf.cni_version)?;
    }
    Ok(response.body)
}

/// Explains a failure to talk to the agent. ADD, DEL, CHECK and GC get code 11 (try again
/// later), so the runtime retries; STATUS gets code 50 (plugin not available).
///
/// DEL gets 11 too although the spec wants DEL to succeed when there is nothing to delete:
/// with the agent down the shim cannot know whether there is, and a DEL reported as done would
/// leak the endpoint (its veth, OVS port and address) for good. The runtime retries DEL until
/// the agent is back.
fn client_error(command: Command, socket: &Path, err: ClientError) -> CniError {
    if let ClientError::Connect(_) = &err
        && let Some(what) = not_a_socket(socket)
    {
        let socket = socket.display();
        return CniError::invalid_config(format!(
            "agentSocket {socket} is {what}, not the netplugin agent's socket"
        ))
        .with_details(format!(
            "fix agentSocket in the network config (netplugin's --cni-socket; default {})",
            crate::wire::DEFAULT_AGENT_SOCKET
        ));
    }
    let socket = socket.display();
    let (msg, details) = match &err {
        ClientError::Connect(e) => (
            format!(
                "cannot reach the netplugin agent at {socket}: {}",
                describe_io(e)
            ),
            "is netplugin running on this node? (check: systemctl status netplugin, or the \
             agentSocket field of the network config)"
                .to_string(),
        ),
        ClientError::Timeout { after, phase } => (
            format!(
                "the netplugin agent at {socket} did not answer {command} within {}s (timed out while {phase})",
                after.as_secs_f64()
            ),
            "netplugin may be overloaded or stuck: check its log (journalctl -u netplugin); \
             raise timeoutSeconds in the network config if it is only slow"
                .to_string(),
        ),
        ClientError::Send(_) | ClientError::Receive(_) | ClientError::Malformed(_) => (
            format!("lost the netplugin agent at {socket} during {command}: {err}"),
            "netplugin may have restarted: check its log (journalctl -u netplugin)".to_string(),
        ),
    };
    let err = if command == Command::Status {
        CniError::plugin_not_available(msg)
    } else {
        CniError::try_again_later(msg)
    };
    err.with_details(details)
}

/// What the agent socket's path is when it is there but no socket (connecting to it says
/// "connection refused", which sends the user looking for a stopped agent).
fn not_a_socket(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::metadata(path).ok()?.file_type();
    Some(if t.is_socket() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else {
        "neither a socket nor a file"
    })
}

/// A call too large for the agent: a config error (code 7), not one to retry.
fn too_large(bytes: usize) -> CniError {
    CniError::invalid_config(format!(
        "the network config and the call's arguments take {bytes} bytes; the netplugin agent takes at most {} per call",
        MAX_REQUEST_BYTES
    ))
    .with_details(SHRINK)
}

const SHRINK: &str = "shrink the network config (the runtime passes it whole: a large runtimeConfig or prevResult, say)";

/// A non-2xx answer: the agent's error object, or one made up from the status and body.
fn agent_error(socket: &Path, response: client::Response) -> CniError {
    if let Ok(err) = serde_json::from_slice::<CniError>(&response.body) {
        return err;
    }
    if response.status == 413 {
        return CniError::invalid_config(format!(
            "the netplugin agent at {} refused the call as larger than it takes ({MAX_REQUEST_BYTES} bytes at most)",
            socket.display()
        ))
        .with_details(SHRINK);
    }
    let text = String::from_utf8_lossy(&response.body);
    let mut snippet: String = text.trim().chars().take(200).collect();
    if snippet.is_empty() {
        snippet = "empty body".into();
    }
    let err = CniError::internal(format!(
        "the netplugin agent at {} answered HTTP {} without a CNI error: {snippet}",
        socket.display(),
        response.status
    ));
    if response.status == 404 {
        err.with_details(
            "this contiv binary may not match the running netplugin: install the contiv binary \
             that ships with it",
        )
    } else {
        err
    }
}

/// The agent's ADD result must be a JSON object in the config's version.
fn check_add_result(body: &[u8], cni_version: &str) -> Result<(), CniError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        CniError::internal(format!(
            "the netplugin agent returned an ADD result that is not JSON: {e}"
        ))
    })?;
    let got = value.get("cniVersion").and_then(Value::as_str);
    if got != Some(cni_version) {
        return Err(CniError::internal(format!(
            "the netplugin agent returned an ADD result for cniVersion {}, the config asks for {cni_version}",
            got.unwrap_or("(none)")
        )));
    }
    Ok(())
}

/// The usual errno texts, lowercase and without "(os error N)".
fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "no such socket".into(),
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_lowercase(),
                None => text,
            }
        }
    }
}

/// One log line: time, command, network, container, interface, outcome, duration.
fn log_line(
    now: SystemTime,
    inv: &Invocation,
    conf: &NetConf,
    result: &Result<Vec<u8>, CniError>,
    took: Duration,
) -> String {
    let outcome = match result {
        Ok(_) => "result=ok".to_string(),
        Err(e) => format!("result=error code={} msg={:?}", e.code, e.msg),
    };
    format!(
        "{} cmd={} network={} container={} ifname={} {outcome} duration_ms={:.1}\n",
        rfc3339(now),
        inv.command,
        conf.name,
        dash_if_empty(&inv.container_id),
        dash_if_empty(&inv.ifname),
        took.as_secs_f64() * 1000.0
    )
}

fn dash_if_empty(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Appends one line (a single write, so lines of concurrent calls do not interleave). Failing to
/// log must not fail the call: it is reported on stderr only.
fn append_log(path: &Path, line: &str) {
    let result = (|| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(line.as_bytes())
    })();
    if let Err(e) = result {
        eprintln!("contiv: append to log file {}: {e}", path.display());
    }
}

/// `2026-08-21T10:11:12.345Z` (UTC).
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The whole plugin process: real environment, stdin and stdout. Returns the exit code.
pub fn main() -> i32 {
    let stdin = std::io::stdin();
    let is_terminal = stdin.is_terminal();
    let outcome = run(
        &|name| std::env::var_os(name),
        &mut stdin.lock(),
        is_terminal,
    );
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(&outcome.stdout)
        .and_then(|()| stdout.flush())
    {
        eprintln!("contiv: write to stdout: {e}");
        return 1;
    }
    outcome.exit_code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use std::collections::HashMap;

    fn run_with(env: &[(&str, &str)], stdin: &str) -> (Value, i32) {
        let map: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let out = run(&|k| map.get(k).cloned(), &mut stdin.as_bytes(), false);
        (serde_json::from_slice(&out.stdout).unwrap(), out.exit_code)
    }

    #[test]
    fn version_needs_no_config_and_no_agent() {
        let (v, code) = run_with(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.3.1"}"#);
        assert_eq!(code, 0);
        assert_eq!(v["cniVersion"], "0.3.1");
        let (v, _) = run_with(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(v["cniVersion"], "1.1.0");
        // A terminal is not read from.
        let out = run(
            &|k| (k == "CNI_COMMAND").then(|| "VERSION".into()),
            &mut std::io::empty(),
            true,
        );
        assert_eq!(out.exit_code, 0);
    }

    #[test]
    fn verbs_are_gated_by_config_version() {
        let cases = [
            (
                "CHECK",
                "0.3.1",
                "config version 0.3.1 does not allow CHECK",
            ),
            (
                "STATUS",
                "1.0.0",
                "config version 1.0.0 does not allow STATUS",
            ),
            ("GC", "0.4.0", "config version 0.4.0 does not allow GC"),
        ];
        for (cmd, version, msg) in cases {
            let (v, exit) = run_with(
                &[
                    ("CNI_COMMAND", cmd),
                    ("CNI_CONTAINERID", "c1"),
                    ("CNI_NETNS", "/var/run/netns/x"),
                    ("CNI_IFNAME", "eth0"),
                ],
                &format!(r#"{{"cniVersion":"{version}","name":"n","type":"contiv"}}"#),
            );
            assert_eq!(exit, 1);
            assert_eq!(v["code"], code::INCOMPATIBLE_CNI_VERSION);
            assert_eq!(v["msg"], msg);
            assert_eq!(v["cniVersion"], version);
        }
    }

    #[test]
    fn config_errors_have_codes() {
        let env = [("CNI_COMMAND", "GC")];
        let (v, _) = run_with(&env, "{");
        assert_eq!(v["code"], code::DECODING_FAILURE);
        let (v, _) = run_with(&env, "[]");
        assert_eq!(v["msg"], "decode network config: not a JSON object");
        let (v, _) = run_with(&env, r#"{"cniVersion":"1.1.0","type":"contiv"}"#);
        assert_eq!(v["code"], code::INVALID_NETWORK_CONFIG);
        let (v, _) = run_with(
            &env,
            r#"{"cniVersion":"1.1.0","name":"n","type":"contiv","mtu":-1}"#,
        );
        assert_eq!(v["code"], code::DECODING_FAILURE);
        assert!(v["msg"].as_str().unwrap().contains("field mtu"), "{v}");
    }

    #[test]
    fn unreachable_agent_codes_per_verb() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nobody.sock");
        let config = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","type":"contiv","agentSocket":{:?}}}"#,
            socket
        );
        for (cmd, want) in [
            ("ADD", code::TRY_AGAIN_LATER),
            ("DEL", code::TRY_AGAIN_LATER),
            ("CHECK", code::TRY_AGAIN_LATER),
            ("GC", code::TRY_AGAIN_LATER),
            ("STATUS", code::PLUGIN_NOT_AVAILABLE),
        ] {
            let (v, exit) = run_with(
                &[
                    ("CNI_COMMAND", cmd),
                    ("CNI_CONTAINERID", "c1"),
                    ("CNI_NETNS", "/var/run/netns/x"),
                    ("CNI_IFNAME", "eth0"),
                ],
                &config,
            );
            assert_eq!(
                (exit, v["code"].as_u64()),
                (1, Some(u64::from(want))),
                "{cmd}"
            );
            assert_eq!(
                v["msg"],
                format!(
                    "cannot reach the netplugin agent at {}: no such socket",
                    socket.display()
                )
            );
        }
    }

    /// Issue 17.6: an agentSocket that is a directory or a file said "connection refused";
    /// a call over the agent's limit got code 11 (retry) or 999. Both are config errors.
    #[test]
    fn a_wrong_agent_socket_and_a_huge_config_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        for (path, what) in [
            (dir.path(), "a directory"),
            (file.as_path(), "a regular file"),
        ] {
            let config = format!(
                r#"{{"cniVersion":"1.1.0","name":"n","type":"contiv","agentSocket":{path:?}}}"#
            );
            let (v, exit) = run_with(&env, &config);
            assert_eq!((exit, v["code"].as_u64()), (1, Some(7)), "{v}");
            let msg = v["msg"].as_str().unwrap();
            assert!(msg.contains(what) && msg.contains("agentSocket"), "{v}");
        }
        // A listener that would take anything: the shim must not even call it.
        let socket = dir.path().join("agent.sock");
        let _l = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let config = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","type":"contiv","agentSocket":{socket:?},"pad":"{}"}}"#,
            "x".repeat(MAX_REQUEST_BYTES)
        );
        let (v, exit) = run_with(&env, &config);
        assert_eq!((exit, v["code"].as_u64()), (1, Some(7)), "{v}");
        assert!(v["msg"].as_str().unwrap().contains("at most"), "{v}");
        let err = agent_error(
            &socket,
            client::Response {
                status: 413,
                body: b"length limit exceeded".to_vec(),
            },
        );
        assert_eq!(err.code, code::INVALID_NETWORK_CONFIG, "{err:?}");
    }

    #[test]
    fn agent_errors_without_a_cni_body_are_explained() {
        let err = agent_error(
            Path::new("/run/contiv/cni.sock"),
            client::Response {
                status: 404,
                body: b"Not Found".to_vec(),
            },
        );
        assert_eq!(err.code, code::INTERNAL);
        assert_eq!(
            err.msg,
            "the netplugin agent at /run/contiv/cni.sock answered HTTP 404 without a CNI error: Not Found"
        );
        assert!(err.details.contains("install the contiv binary"));
        let err = agent_error(
            Path::new("/s"),
            client::Response {
                status: 500,
                body: br#"{"code":3,"msg":"no such container"}"#.to_vec(),
            },
        );
        assert_eq!(err, CniError::unknown_container("no such container"));
    }

    #[test]
    fn add_results_are_sanity_checked() {
        check_add_result(br#"{"cniVersion":"0.4.0"}"#, "0.4.0").unwrap();
        assert!(
            check_add_result(b"", "0.4.0")
                .unwrap_err()
                .msg
                .contains("not JSON")
        );
        assert_eq!(
            check_add_result(br#"{"cniVersion":"1.0.0"}"#, "0.4.0")
                .unwrap_err()
                .msg,
            "the netplugin agent returned an ADD result for cniVersion 1.0.0, the config asks for 0.4.0"
        );
    }

    #[test]
    fn formats_log_lines_and_timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_709_210_096_789)),
            "2024-02-29T12:34:56.789Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        let inv = Invocation {
            command: Command::Del,
            container_id: "c1".into(),
            netns: String::new(),
            ifname: "eth0".into(),
            args: String::new(),
            path: String::new(),
        };
        let conf = NetConf {
            name: "contiv-net".into(),
            ..NetConf::default()
        };
        let line = log_line(
            UNIX_EPOCH,
            &inv,
            &conf,
            &Err(CniError::try_again_later("agent \"down\"")),
            Duration::from_micros(2500),
        );
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z cmd=DEL network=contiv-net container=c1 ifname=eth0 \
             result=error code=11 msg=\"agent \\\"down\\\"\" duration_ms=2.5\n"
        );
    }

    #[test]
    fn describes_io_errors_briefly() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            describe_io(&Error::from(ErrorKind::ConnectionRefused)),
            "connection refused"
        );
        assert_eq!(
            describe_io(&Error::from_raw_os_error(11)),
            "resource temporarily unavailable"
        );
    }
}
