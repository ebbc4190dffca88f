//! The contiv CNI plugin's parsers: the network config on stdin (as the shim and the agent read
//! it), the `CNI_*` environment, CNI results (`prevResult`, rendered results), the shim → agent
//! request body, and the shim's HTTP response parser.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use cni::client::parse_response;
use cni::env::Invocation;
use cni::shim;
use cni::types::{NetConf, PodIdentity, parse_result, render_result};
use cni::version::SUPPORTED_VERSIONS;
use cni::wire::{Command, decode_request};

/// The network config: the shim's decode-and-validate for every verb, the agent's decoder, and
/// VERSION's optional stdin through the shim's entry point. Accepted configs must survive an
/// encode/decode round trip unchanged (the agent decodes what the shim forwarded).
pub fn netconf(data: &[u8]) -> bool {
    let mut accepted = false;
    for command in [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Gc,
    ] {
        if let Ok((config, conf)) = shim::load_config(command, data) {
            accepted = true;
            let again =
                NetConf::from_value(&config).expect("the agent decodes what the shim accepted");
            assert_eq!(again, conf, "the agent reads the config the shim read");
        }
    }
    if let Ok(conf) = NetConf::from_slice(data) {
        let _ = conf.validate();
        let _ = (conf.agent_socket(), conf.timeout());
        if let Some(Ok(prev)) = conf.parsed_prev_result() {
            check_result_round_trip(&prev);
        }
        let bytes = serde_json::to_vec(&conf).expect("a NetConf encodes");
        let again = NetConf::from_slice(&bytes).expect("an encoded NetConf decodes");
        assert_eq!(again, conf, "NetConf round trip");
    }
    let version = shim::run(
        &|k| (k == "CNI_COMMAND").then(|| OsString::from("VERSION")),
        &mut &data[..],
        false,
    );
    assert_eq!(version.exit_code, 0, "VERSION always answers");
    serde_json::from_slice::<serde_json::Value>(&version.stdout).expect("VERSION prints JSON");
    accepted
}

/// The `CNI_*` variables. The input is the values of `CNI_COMMAND`, `CNI_CONTAINERID`,
/// `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS` and `CNI_PATH`, separated by NUL bytes (which no
/// environment value can hold); missing trailing values are unset.
pub fn env(data: &[u8]) -> bool {
    const NAMES: [&str; 6] = [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
    ];
    let values: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let getenv = |name: &str| {
        let i = NAMES.iter().position(|n| *n == name)?;
        values.get(i).map(|v| OsString::from_vec(v.to_vec()))
    };
    let Ok(inv) = Invocation::from_env(&getenv) else {
        return false;
    };
    // What the checks promise the rest of the shim and the agent.
    if matches!(inv.command, Command::Add | Command::Del | Command::Check) {
        assert!(!inv.container_id.is_empty() && !inv.ifname.is_empty());
        assert!(inv.ifname.len() <= cni::env::MAX_IFNAME_LEN);
    }
    PodIdentity::from_cni_args(&inv.args).expect("CNI_ARGS was checked");
    true
}

/// A CNI result of any supported version: decoded, rendered in every version, and decoded again.
pub fn result(data: &[u8]) -> bool {
    let Ok(r) = parse_result(data) else {
        return false;
    };
    check_result_round_trip(&r);
    true
}

fn check_result_round_trip(r: &cni::types::Result11) {
    for version in SUPPORTED_VERSIONS {
        if let Ok(bytes) = render_result(r, version) {
            let back = parse_result(&bytes).expect("a rendered result decodes");
            if version == "1.1.0" {
                assert_eq!(&back, r, "a 1.1.0 rendering keeps everything");
            }
        }
    }
    assert!(render_result(r, "2.0.0").is_err());
}

/// The shim → agent request, at each of the agent's paths: accepted requests match their path
/// and survive a round trip; their config, args and pod decode without panicking.
pub fn agent_request(data: &[u8]) -> bool {
    let mut accepted = false;
    for path in [
        "/cni/v1/add",
        "/cni/v1/del",
        "/cni/v1/check",
        "/cni/v1/status",
        "/cni/v1/gc",
        "/cni/v1/version",
    ] {
        let Ok(req) = decode_request(path, data) else {
            continue;
        };
        accepted = true;
        assert_eq!(Command::from_path(path), Some(req.command));
        let _ = (req.cni_version(), req.netconf(), req.cni_args(), req.pod());
        let bytes = serde_json::to_vec(&req).expect("a request encodes");
        let again = decode_request(path, &bytes).expect("an encoded request decodes");
        assert_eq!(again, req, "AgentRequest round trip");
    }
    accepted
}

/// The shim's HTTP/1.1 response parser, on a buffer read so far and at end of stream. A
/// response complete before the end of the stream is the same response at the end.
pub fn http_response(data: &[u8]) -> bool {
    let open = parse_response(data, false);
    let closed = parse_response(data, true);
    if let Ok(Some(r)) = &open {
        assert_eq!(
            closed.as_ref().ok(),
            Some(&Some(r.clone())),
            "complete before EOF"
        );
    }
    matches!(closed, Ok(Some(_)))
}

pub fn netconf_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"cniVersion":"1.1.0","name":"contiv-net","type":"contiv","tenant":"blue","network":"web","group":"frontend","agentSocket":"/run/contiv/cni.sock","mtu":1450,"logFile":"/var/log/contiv/cni.log","timeoutSeconds":20,"dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"]},"prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"02:02:0a:01:01:02","sandbox":"/var/run/netns/p"}],"ips":[{"address":"10.1.1.2/24","gateway":"10.1.1.1","interface":0}]},"runtimeConfig":{"mac":"02:00:00:00:00:01","ips":["10.1.1.9/24"],"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]},"args":{"cni":{"ips":["10.1.1.9"]}},"capabilities":{"mac":true},"someVendorField":[1,2,3]}"#.to_vec(),
        br#"{"cniVersion":"0.3.1","name":"n","type":"contiv"}"#.to_vec(),
        br#"{"cniVersion":"1.1.0","name":"contiv-net","type":"contiv","cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"net1"}]}"#.to_vec(),
        br#"{"cniVersion":"0.4.0","name":"k8s-pod-network","type":"contiv","network":"default-net","prevResult":{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/proc/42/ns/net"}],"ips":[{"version":"4","address":"10.1.1.2/24","gateway":"10.1.1.1","interface":0},{"version":"6","address":"fd00::2/64","interface":0}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.1.1"}],"dns":{}}}"#.to_vec(),
        b"{\n  \"cniVersion\": \"1.0.0\",\n  \"name\": \"podman\",\n  \"type\": \"contiv\",\n  \"timeoutSeconds\": 300,\n  \"mtu\": 68\n}\n".to_vec(),
    ]
}

pub fn env_seeds() -> Vec<Vec<u8>> {
    vec![
        b"ADD\0abc123\0/var/run/netns/p\0eth0\0IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=7f0e-11\0/opt/cni/bin".to_vec(),
        b"DEL\0abc123\0\0eth0\0\0/opt/cni/bin".to_vec(),
        b"CHECK\0c.1_x-2\0/proc/1/ns/net\0net1\0K8S_POD_NAME=\0".to_vec(),
        b"GC".to_vec(),
        b"STATUS\0\0\0\0\0".to_vec(),
        b"VERSION".to_vec(),
    ]
}

pub fn result_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"cniVersion":"1.1.0","interfaces":[{"name":"vport1a2b3c","mac":"ee:ee:ee:ee:ee:ee","mtu":1450},{"name":"eth0","mac":"02:02:0a:01:01:02","mtu":1450,"sandbox":"/var/run/netns/pod1","socketPath":"/run/vhost.sock","pciID":"0000:00:1f.6"}],"ips":[{"address":"10.1.1.2/24","gateway":"10.1.1.1","interface":1},{"address":"fd00::2/64","interface":1}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.1.1","mtu":1400,"advmss":1360,"priority":100,"table":254,"scope":0}],"dns":{"nameservers":["10.96.0.10"],"domain":"cluster.local","search":["default.svc.cluster.local"],"options":["ndots:5"]}}"#.to_vec(),
        br#"{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/proc/42/ns/net"}],"ips":[{"version":"4","address":"10.1.1.2/24","gateway":"10.1.1.1","interface":0}],"dns":{}}"#.to_vec(),
        br#"{"cniVersion":"1.0.0","ips":[{"address":"192.168.0.5/16"}],"routes":[{"dst":"::/0","gw":"fd00::1"}]}"#.to_vec(),
        br#"{"cniVersion":"1.1.0","dns":{}}"#.to_vec(),
    ]
}

pub fn agent_request_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"protocol":1,"command":"ADD","containerId":"c1","netns":"/var/run/netns/p1","ifName":"eth0","args":"K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web","path":"/opt/cni/bin","config":{"cniVersion":"0.4.0","name":"n","type":"contiv","x":1}}"#.to_vec(),
        br#"{"protocol":1,"command":"DEL","containerId":"c1","ifName":"eth0","config":{"cniVersion":"1.1.0","name":"n","type":"contiv","prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.1.1.2/24"}]}}}"#.to_vec(),
        br#"{"protocol":1,"command":"GC","config":{"cniVersion":"1.1.0","name":"n","type":"contiv","cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}}"#.to_vec(),
        br#"{"protocol":1,"command":"STATUS","config":{"cniVersion":"1.1.0","name":"n","type":"contiv"}}"#.to_vec(),
    ]
}

pub fn http_seeds() -> Vec<Vec<u8>> {
    vec![
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{\"cniVersion\":\"1.1.0\",\"dns\":{}}".to_vec(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n".to_vec(),
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 45\r\nconnection: close\r\n\r\n{\"cniVersion\":\"1.1.0\",\"code\":11,\"msg\":\"boom\"}".to_vec(),
        b"HTTP/1.0 200 OK\r\n\r\nbody until close".to_vec(),
    ]
}

pub const NETCONF_WORDS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "tenant",
    "network",
    "group",
    "agentSocket",
    "mtu",
    "logFile",
    "timeoutSeconds",
    "dns",
    "prevResult",
    "runtimeConfig",
    "cni.dev/valid-attachments",
    "args",
    "containerID",
    "ifname",
    "ips",
    "mac",
    "interfaces",
    "gateway",
    "address",
    "interface",
    "version",
    "routes",
    "dst",
    "gw",
    "0.3.0",
    "0.3.1",
    "0.4.0",
    "1.0.0",
    "1.1.0",
    "0.2.0",
    "1.1",
    "contiv",
    "/run/contiv/cni.sock",
    "relative.sock",
    "10.1.1.2/24",
    "fd00::2/64",
    "10.1.1.1",
    "::",
    "0.0.0.0/0",
];

pub const ENV_WORDS: &[&str] = &[
    "ADD",
    "DEL",
    "CHECK",
    "STATUS",
    "GC",
    "VERSION",
    "\0",
    "K8S_POD_NAME=",
    "K8S_POD_NAMESPACE=",
    "K8S_POD_UID=",
    "IgnoreUnknown=1",
    ";",
    "=",
    "..",
    ".",
    "/",
    ":",
    " ",
    "eth0",
    "a-very-long-interface-name",
];

pub const RESULT_WORDS: &[&str] = &[
    "cniVersion",
    "interfaces",
    "ips",
    "routes",
    "dns",
    "name",
    "mac",
    "mtu",
    "sandbox",
    "socketPath",
    "pciID",
    "address",
    "gateway",
    "interface",
    "version",
    "4",
    "6",
    "dst",
    "gw",
    "advmss",
    "priority",
    "table",
    "scope",
    "nameservers",
    "domain",
    "search",
    "options",
    "10.1.1.2/24",
    "10.1.1.2/33",
    "fd00::2/129",
    "10.1.1.1",
    "1.1.0",
    "0.3.0",
    "1.0.0",
];

pub const AGENT_REQUEST_WORDS: &[&str] = &[
    "protocol",
    "command",
    "containerId",
    "netns",
    "ifName",
    "args",
    "path",
    "config",
    "ADD",
    "DEL",
    "CHECK",
    "STATUS",
    "GC",
    "VERSION",
    "add",
    "cniVersion",
    "K8S_POD_NAME=a",
    "junk",
];

pub const HTTP_WORDS: &[&str] = &[
    "HTTP/1.1 ",
    "HTTP/1.0 ",
    "HTTP/2 ",
    "100 Continue\r\n\r\n",
    "HTTP/1.1 100 x\r\n\r\n",
    "\r\n",
    "\r\n\r\n",
    "Content-Length: ",
    "Transfer-Encoding: chunked",
    "chunked",
    ", chunked",
    "0\r\n\r\n",
    "ffffffffffffffff\r\n",
    "400001\r\n",
    ";ext",
    "204",
    "304",
    "999",
    "1000",
    "099",
];
