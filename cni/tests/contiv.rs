//! Runs the real `contiv` binary as a runtime would: `CNI_*` variables, the network config on
//! stdin, the answer on stdout. The agent side is a small std-only HTTP server on a unix socket in
//! a temp dir that records what it received and answers canned bytes. This tests the shim's half
//! of the protocol; netplugin's half is tested against this binary end to end.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `CNI_*` variables.
type Env = Vec<(&'static str, &'static str)>;

/// One run of the binary.
struct Run {
    stdout: Vec<u8>,
    stderr: String,
    exit: i32,
    took: Duration,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.stdout)
            )
        })
    }

    /// Asserts a CNI error with `code` and returns it.
    fn error(&self, code: u64) -> Value {
        assert_eq!(
            self.exit,
            1,
            "exit code; stdout {:?}",
            String::from_utf8_lossy(&self.stdout)
        );
        let v = self.json();
        assert_eq!(v["code"], code, "{v:#}");
        assert!(v["cniVersion"].is_string(), "{v:#}");
        v
    }
}

fn contiv(env: &[(&str, &str)], stdin: &str) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_contiv"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn contiv");
    // The plugin exits without reading stdin when the environment is wrong: ignore EPIPE.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    Run {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        exit: out.status.code().expect("exit code"),
        took: started.elapsed(),
    }
}

/// The variables kubelet sets for `command` on one pod.
fn pod_env(command: &'static str) -> Env {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "f3b1c2d4e5"),
        ("CNI_NETNS", "/var/run/netns/cni-1234"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=f3b1c2d4e5;K8S_POD_UID=4a1b",
        ),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ]
}

fn config(version: &str, socket: &Path) -> Value {
    json!({
        "cniVersion": version,
        "name": "contiv-net",
        "type": "contiv",
        "tenant": "blue",
        "network": "web",
        "agentSocket": socket,
    })
}

/// What the fake agent received on one connection.
#[derive(Debug)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A fake netplugin: answers each connection with the next canned raw HTTP response.
struct FakeAgent {
    socket: PathBuf,
    server: JoinHandle<Vec<Received>>,
    _dir: tempfile::TempDir,
}

impl FakeAgent {
    fn start(responses: Vec<String>) -> FakeAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cni.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            responses
                .into_iter()
                .map(|response| {
                    let (mut conn, _) = listener.accept().unwrap();
                    let received = read_request(&mut conn);
                    conn.write_all(response.as_bytes()).unwrap();
                    received
                })
                .collect()
        });
        FakeAgent {
            socket,
            server,
            _dir: dir,
        }
    }

    fn received(self) -> Vec<Received> {
        self.server.join().expect("fake agent")
    }
}

fn read_request(conn: &mut impl Read) -> Received {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed in the request head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .expect("Content-Length")
        .1
        .parse()
        .unwrap();
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed in the request body");
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), len, "body longer than Content-Length");
    Received {
        request_line,
        headers,
        body: serde_json::from_slice(&body).expect("request body is JSON"),
    }
}

fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

// ---- VERSION and input validation (no agent) ----

#[test]
fn version_is_answered_without_an_agent() {
    let run = contiv(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
    assert_eq!(run.exit, 0);
    assert_eq!(
        run.json(),
        json!({"cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
    assert_eq!(run.stderr, "");
    let run = contiv(&[("CNI_COMMAND", "VERSION")], "");
    assert_eq!(run.json()["cniVersion"], "1.1.0");
    let run = contiv(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.2.0"}"#);
    assert_eq!(run.json()["cniVersion"], "1.1.0");
}

#[test]
fn missing_or_unknown_command_is_code_4() {
    let v = contiv(&[], "{}").error(4);
    assert_eq!(v["msg"], "required env variables [CNI_COMMAND] missing");
    assert!(v["details"].as_str().unwrap().contains("container runtime"));
    let v = contiv(&[("CNI_COMMAND", "UPDATE")], "{}").error(4);
    assert_eq!(v["msg"], "unknown CNI_COMMAND \"UPDATE\"");
}

#[test]
fn missing_env_vars_are_named() {
    let v = contiv(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")], "{}").error(4);
    assert_eq!(
        v["msg"],
        "required env variables [CNI_CONTAINERID, CNI_NETNS] missing for ADD"
    );
    let mut env = pod_env("CHECK");
    env.retain(|(k, _)| *k != "CNI_NETNS");
    let v = contiv(&env, "{}").error(4);
    assert_eq!(
        v["msg"],
        "required env variables [CNI_NETNS] missing for CHECK"
    );
    let mut env = pod_env("ADD");
    env[3].1 = "eth0/../x";
    let v = contiv(&env, "{}").error(4);
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .starts_with("interface name CNI_IFNAME"),
        "{v}"
    );
}

#[test]
fn bad_json_is_code_6() {
    let v = contiv(&pod_env("ADD"), r#"{"cniVersion": "1.1.0", "name": "#).error(6);
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .starts_with("decode network config: "),
        "{v}"
    );
    let v = contiv(
        &pod_env("ADD"),
        r#"{"cniVersion":"1.1.0","name":"n","type":"contiv","timeoutSeconds":"10"}"#,
    )
    .error(6);
    assert!(
        v["msg"].as_str().unwrap().contains("field timeoutSeconds"),
        "{v}"
    );
}

#[test]
fn unsupported_version_is_code_1_with_the_supported_list() {
    let v = contiv(
        &pod_env("ADD"),
        r#"{"cniVersion":"0.2.0","name":"n","type":"contiv"}"#,
    )
    .error(1);
    assert_eq!(v["msg"], "incompatible CNI version \"0.2.0\"");
    assert_eq!(
        v["details"],
        "this plugin supports cniVersion 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
    );
    let v = contiv(&pod_env("ADD"), r#"{"name":"n","type":"contiv"}"#).error(1);
    assert_eq!(
        v["msg"],
        "incompatible CNI version: the network config has no cniVersion"
    );
}

#[test]
fn invalid_config_is_code_7() {
    let v = contiv(&pod_env("ADD"), r#"{"cniVersion":"1.0.0","type":"contiv"}"#).error(7);
    assert_eq!(v["msg"], "missing network name");
    assert_eq!(v["cniVersion"], "1.1.0");
    let v = contiv(
        &pod_env("ADD"),
        r#"{"cniVersion":"1.0.0","name":"n","type":"contiv","agentSocket":"run/cni.sock"}"#,
    )
    .error(7);
    assert_eq!(
        v["msg"],
        "agentSocket \"run/cni.sock\" is not an absolute path"
    );
}

// ---- agent unreachable ----

#[test]
fn unreachable_agent_is_code_11_and_fast() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file with nobody listening (what a crashed agent leaves behind).
    let socket = dir.path().join("cni.sock");
    drop(UnixListener::bind(&socket).unwrap());
    for command in ["ADD", "DEL", "CHECK"] {
        let run = contiv(&pod_env(command), &config("1.0.0", &socket).to_string());
        let v = run.error(11);
        assert_eq!(
            v["msg"],
            format!(
                "cannot reach the netplugin agent at {}: connection refused",
                socket.display()
            )
        );
        assert_eq!(
            v["details"],
            "is netplugin running on this node? (check: systemctl status netplugin, or the agentSocket field of the network config)"
        );
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(
            run.took < Duration::from_millis(500),
            "{command} took {:?}",
            run.took
        );
        assert_eq!(run.stderr, "");
    }
    // No socket file at all.
    let missing = dir.path().join("missing.sock");
    let v = contiv(&pod_env("ADD"), &config("0.3.1", &missing).to_string()).error(11);
    assert!(
        v["msg"].as_str().unwrap().ends_with(": no such socket"),
        "{v}"
    );
}

#[test]
fn unreachable_agent_on_status_is_code_50() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cni.sock");
    let v = contiv(
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")],
        &config("1.1.0", &socket).to_string(),
    )
    .error(50);
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .starts_with("cannot reach the netplugin agent at "),
        "{v}"
    );
}

#[test]
fn a_silent_agent_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cni.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let _ = read_request(&mut conn);
        std::thread::sleep(Duration::from_millis(2500));
    });
    let mut conf = config("1.1.0", &socket);
    conf["timeoutSeconds"] = json!(1);
    let run = contiv(&pod_env("ADD"), &conf.to_string());
    let v = run.error(11);
    assert_eq!(
        v["msg"],
        format!(
            "the netplugin agent at {} did not answer ADD within 1s (timed out while waiting for the answer)",
            socket.display()
        )
    );
    assert!(
        run.took >= Duration::from_millis(900) && run.took < Duration::from_millis(2000),
        "took {:?}",
        run.took
    );
    server.join().unwrap();
}

// ---- the protocol against a fake agent ----

#[test]
fn add_sends_the_whole_call_and_prints_the_agent_result_verbatim() {
    let result = "{\n  \"cniVersion\": \"0.4.0\",\n  \"interfaces\": [{\"name\": \"eth0\", \"mac\": \"02:02:0a:01:01:02\", \"sandbox\": \"/var/run/netns/cni-1234\"}],\n  \"ips\": [{\"version\": \"4\", \"address\": \"10.1.1.2/24\", \"gateway\": \"10.1.1.1\", \"interface\": 0}],\n  \"dns\": {}\n}\n";
    let agent = FakeAgent::start(vec![http("200 OK", result)]);
    let mut conf = config("0.4.0", &agent.socket);
    conf["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    conf["prevResult"] = json!({"cniVersion": "0.4.0", "interfaces": []});
    conf["vendorExtension"] = json!({"keep": [1, 2.5, null, "me"]});
    let stdin = format!("  {}\n", serde_json::to_string_pretty(&conf).unwrap());

    let run = contiv(&pod_env("ADD"), &stdin);
    assert_eq!(run.exit, 0, "{}", String::from_utf8_lossy(&run.stdout));
    assert_eq!(
        run.stdout,
        result.as_bytes(),
        "stdout is the agent's bytes, untouched"
    );
    assert_eq!(run.stderr, "");

    let got = agent.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.request_line, "POST /cni/v1/add HTTP/1.1");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("connection"), Some("close"));
    assert!(req.header("host").is_some());
    assert_eq!(
        req.body,
        json!({
            "protocol": 1,
            "command": "ADD",
            "containerId": "f3b1c2d4e5",
            "netns": "/var/run/netns/cni-1234",
            "ifName": "eth0",
            "args": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=f3b1c2d4e5;K8S_POD_UID=4a1b",
            "path": "/opt/cni/bin:/usr/lib/cni",
            "config": conf,
        })
    );
    // The agent side of the library decodes what the shim sent.
    let body = serde_json::to_vec(&req.body).unwrap();
    let decoded = cni::wire::decode_request("/cni/v1/add", &body).unwrap();
    assert_eq!(
        decoded.pod().unwrap().pod_key().as_deref(),
        Some("default/web-0")
    );
    assert_eq!(decoded.netconf().unwrap().tenant.as_deref(), Some("blue"));
}

#[test]
fn add_accepts_a_chunked_result_rendered_by_the_library() {
    let result = cni::types::Result11 {
        interfaces: vec![cni::types::Interface {
            name: "eth0".into(),
            mac: "02:02:0a:01:01:02".into(),
            sandbox: Some("/var/run/netns/cni-1234".into()),
            ..Default::default()
        }],
        ips: vec![cni::types::IpConfig {
            address: "10.1.1.2/24".parse().unwrap(),
            gateway: Some("10.1.1.1".parse().unwrap()),
            interface: Some(0),
        }],
        ..Default::default()
    };
    let rendered = cni::types::render_result(&result, "1.1.0").unwrap();
    let (a, b) = rendered.split_at(rendered.len() / 2);
    let response = format!(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        a.len(),
        String::from_utf8_lossy(a),
        b.len(),
        String::from_utf8_lossy(b)
    );
    let agent = FakeAgent::start(vec![response]);
    let run = contiv(&pod_env("ADD"), &config("1.1.0", &agent.socket).to_string());
    assert_eq!(run.exit, 0);
    assert_eq!(run.stdout, rendered);
    agent.received();
}

#[test]
fn del_check_status_and_gc_print_nothing_on_success() {
    let valid = json!([{"containerID": "f3b1c2d4e5", "ifname": "eth0"}]);
    let cases: Vec<(&str, Env, &str)> = vec![
        ("DEL", pod_env("DEL"), "/cni/v1/del"),
        ("CHECK", pod_env("CHECK"), "/cni/v1/check"),
        (
            "STATUS",
            vec![("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")],
            "/cni/v1/status",
        ),
        (
            "GC",
            vec![("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
            "/cni/v1/gc",
        ),
    ];
    for (command, env, path) in cases {
        // An empty 200 with a Content-Length, and one that is delimited by the close.
        for response in [http("200 OK", ""), "HTTP/1.1 200 OK\r\n\r\n".to_string()] {
            let agent = FakeAgent::start(vec![response]);
            let mut conf = config("1.1.0", &agent.socket);
            conf["cni.dev/valid-attachments"] = valid.clone();
            let run = contiv(&env, &conf.to_string());
            assert_eq!(
                (run.exit, run.stdout.as_slice()),
                (0, &b""[..]),
                "{command}"
            );
            let got = agent.received();
            assert_eq!(got[0].request_line, format!("POST {path} HTTP/1.1"));
            assert_eq!(got[0].body["command"], command);
            assert_eq!(got[0].body["config"], conf);
            if matches!(command, "STATUS" | "GC") {
                assert_eq!(got[0].body["containerId"], "");
                assert_eq!(got[0].body["ifName"], "");
            }
        }
    }
}

#[test]
fn agent_errors_are_printed_with_exit_1() {
    let err = r#"{"cniVersion":"0.3.1","code":7,"msg":"unknown network \"web\" in tenant \"blue\"","details":"create it with: netctl net create -t blue web"}"#;
    let agent = FakeAgent::start(vec![http("400 Bad Request", err)]);
    let run = contiv(&pod_env("ADD"), &config("0.3.1", &agent.socket).to_string());
    assert_eq!(run.exit, 1);
    assert_eq!(run.json(), serde_json::from_str::<Value>(err).unwrap());
    agent.received();
}

#[test]
fn agent_answers_that_are_not_cni_errors_become_code_999() {
    let agent = FakeAgent::start(vec![
        "HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nNot Found".to_string(),
        http("200 OK", ""),
        "HTTP/1.1 200 OK\r\ncontent-len".to_string(),
    ]);
    let conf = config("1.0.0", &agent.socket).to_string();
    let v = contiv(&pod_env("DEL"), &conf).error(999);
    assert_eq!(
        v["msg"],
        format!(
            "the netplugin agent at {} answered HTTP 404 without a CNI error: Not Found",
            agent.socket.display()
        )
    );
    // ADD with an empty 200: the runtime must not get an empty result.
    let v = contiv(&pod_env("ADD"), &conf).error(999);
    assert!(v["msg"].as_str().unwrap().contains("not JSON"), "{v}");
    // A truncated answer: the agent died mid-reply.
    let v = contiv(&pod_env("ADD"), &conf).error(11);
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .starts_with("lost the netplugin agent at "),
        "{v}"
    );
    agent.received();
}

#[test]
fn log_file_gets_one_line_per_call_and_stdout_stays_clean() {
    let agent = FakeAgent::start(vec![
        http("200 OK", r#"{"cniVersion":"1.1.0","dns":{}}"#),
        http(
            "503 Service Unavailable",
            r#"{"code":11,"msg":"netmaster unreachable"}"#,
        ),
    ]);
    let log = agent.socket.with_file_name("log").join("contiv.log");
    let mut conf = config("1.1.0", &agent.socket);
    conf["logFile"] = json!(log);
    let conf = conf.to_string();

    let add = contiv(&pod_env("ADD"), &conf);
    assert_eq!(add.exit, 0);
    assert_eq!(add.stdout, br#"{"cniVersion":"1.1.0","dns":{}}"#);
    let del = contiv(&pod_env("DEL"), &conf);
    del.error(11);
    assert_eq!(add.stderr, "");
    // Read before the agent (and its temp dir) goes away.
    let text = std::fs::read_to_string(&log).unwrap();
    agent.received();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains(
            " cmd=ADD network=contiv-net container=f3b1c2d4e5 ifname=eth0 result=ok duration_ms="
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(" cmd=DEL network=contiv-net container=f3b1c2d4e5 ifname=eth0 result=error code=11 msg=\"netmaster unreachable\" duration_ms="),
        "{}",
        lines[1]
    );
}
