//! The CNI socket end to end, without root: the shim's own client (`cni::client`) speaking the
//! shim's protocol to [`serve`], over a manager on the kernel and switch fakes and a real
//! netmaster. What a runtime sees: the result in its cniVersion, and the spec's error codes
//! (11 "try again" for a switch or netmaster that does not answer, 4 for a bad environment, 7
//! for a bad config).

use super::*;
use crate::testing::{Rig, trunks, veth};
use cni::wire::PROTOCOL_VERSION;
use serde_json::{Value, json};
use std::time::Duration;

struct Socket {
    path: PathBuf,
    _task: tokio::task::JoinHandle<()>,
}

async fn serve_on(r: &Rig) -> Socket {
    let path = r.dir.path().join("cni.sock");
    let s = Arc::new(CniServer {
        manager: r.m.clone(),
        kube: None,
    });
    let p = path.clone();
    let task = tokio::spawn(async move {
        let _ = serve(s, &p).await;
    });
    for _ in 0..200 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Socket { path, _task: task }
}

/// One CNI call through the socket: (HTTP status, body as JSON or Null).
async fn call(
    sock: &Socket,
    command: &str,
    container: &str,
    netns: &str,
    network: &str,
) -> (u16, Value) {
    let body = json!({
        "protocol": PROTOCOL_VERSION,
        "command": command,
        "containerId": container,
        "netns": netns,
        "ifName": "eth0",
        "args": "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web",
        "path": "/opt/cni/bin",
        "config": {"cniVersion": "1.1.0", "name": "contiv", "type": "contiv",
                   "tenant": "default", "network": network},
    });
    let path = format!("/cni/v1/{}", command.to_lowercase());
    let socket = sock.path.clone();
    let r = tokio::task::spawn_blocking(move || {
        cni::client::post_json(
            &socket,
            &path,
            body.to_string().as_bytes(),
            Duration::from_secs(10),
        )
    })
    .await
    .unwrap()
    .expect("reach the CNI socket");
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

#[tokio::test]
async fn add_check_del_through_the_socket() {
    for mode in [
        (|_: &std::path::Path| veth()) as fn(&std::path::Path) -> _,
        trunks,
    ] {
        let r = Rig::new(mode).await;
        let sock = serve_on(&r).await;
        r.pod("s1");
        let (status, res) = call(&sock, "ADD", "s1", "/run/netns/s1", "net").await;
        assert_eq!(status, 200, "{res}");
        assert_eq!(res["cniVersion"], "1.1.0");
        let ip = res["ips"][0]["address"].as_str().expect("an address");
        assert!(ip.starts_with("10.1.0.") && ip.ends_with("/24"), "{res}");
        assert_eq!(res["ips"][0]["gateway"], "10.1.0.1");
        let pod_if = res["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["sandbox"] == "/run/netns/s1")
            .expect("the pod's interface in the result");
        assert_eq!(pod_if["name"], "eth0");
        let ep = r.master.get_endpoint("s1-eth0").await.expect("endpoint");
        assert_eq!(ep.container_name, "ns1/web", "the pod's name from CNI_ARGS");
        assert_eq!(pod_if["mac"], ep.mac_address.as_str());
        let (status, res) = call(&sock, "CHECK", "s1", "/run/netns/s1", "net").await;
        assert_eq!(status, 200, "{res}");
        let (status, _) = call(&sock, "DEL", "s1", "/run/netns/s1", "net").await;
        assert_eq!(status, 200);
        assert!(r.endpoint_ids().await.is_empty());
        // DEL of what is gone is success (the runtime retries DELs).
        let (status, _) = call(&sock, "DEL", "s1", "", "net").await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn errors_carry_the_spec_codes() {
    let r = Rig::new(|_| veth()).await;
    let sock = serve_on(&r).await;
    r.pod("e1");
    // ovsdb-server gone in the middle of the ADD: try again later, and nothing left behind.
    r.switch.fail_next("add_endpoint_port");
    let (_, res) = call(&sock, "ADD", "e1", "/run/netns/e1", "net").await;
    assert_eq!(res["code"], 11, "{res}");
    assert!(
        res["msg"].as_str().unwrap().contains("ovsdb-server"),
        "{res}"
    );
    assert!(r.endpoint_ids().await.is_empty(), "address released");
    // ... and the retry works.
    let (status, res) = call(&sock, "ADD", "e1", "/run/netns/e1", "net").await;
    assert_eq!(status, 200, "{res}");
    // A namespace that is not there: the environment is wrong (4), said with the path.
    let (_, res) = call(&sock, "ADD", "e2", "/run/netns/missing", "net").await;
    assert_eq!(res["code"], 4, "{res}");
    assert!(
        res["msg"].as_str().unwrap().contains("/run/netns/missing"),
        "{res}"
    );
    // A network netmaster does not know: the config is wrong (7), naming it.
    r.pod("e3");
    let (_, res) = call(&sock, "ADD", "e3", "/run/netns/e3", "nope").await;
    assert_eq!(res["code"], 7, "{res}");
    assert!(
        res["msg"].as_str().unwrap().contains("default:nope"),
        "{res}"
    );
    // STATUS while netmaster is down: the plugin is not available (50).
    let (status, _) = call(&sock, "STATUS", "", "", "net").await;
    assert_eq!(status, 200);
    r.server.abort();
    let _ = std::fs::remove_file(r.dir.path().join("netmaster.sock"));
    let (_, res) = call(&sock, "STATUS", "", "", "net").await;
    assert_eq!(res["code"], 50, "{res}");
}
