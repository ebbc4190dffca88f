//! The CNI socket: the `contiv` shim forwards each CNI call here (protocol in `cni::wire`), and
//! this module turns it into endpoint manager calls and the spec's result or error.

use crate::manager::{AddRequest, Attachment, ErrorKind, Manager, ManagerError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cni::CniError;
use cni::types::{Interface, IpConfig, NetConf, Result11, Route, render_result};
use cni::wire::{AgentRequest, Command};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Where a pod goes when neither its labels nor the config say.
pub const DEFAULT_TENANT: &str = "default";
pub const DEFAULT_NETWORK: &str = "default-net";

/// What the CNI handlers need.
pub struct CniServer {
    pub manager: Arc<Manager>,
    /// When set, pod labels decide placement.
    pub kube: Option<crate::k8s::KubeClient>,
}

pub fn router(s: Arc<CniServer>) -> Router {
    Router::new()
        .route("/cni/v1/{verb}", axum::routing::post(handle))
        // The shim refuses larger calls itself, as a config error (code 7).
        .layer(axum::extract::DefaultBodyLimit::max(
            cni::wire::MAX_REQUEST_BYTES,
        ))
        .with_state(s)
}

fn cni_error(e: ManagerError) -> CniError {
    let err = match e.kind {
        ErrorKind::InvalidConfig => CniError::invalid_config(e.msg),
        ErrorKind::InvalidEnv => CniError::invalid_env(e.msg),
        ErrorKind::TryAgain => CniError::try_again_later(e.msg),
        ErrorKind::Unavailable => CniError::plugin_not_available(e.msg),
        ErrorKind::Internal => CniError::internal(e.msg),
    };
    if e.details.is_empty() {
        err
    } else {
        err.with_details(e.details)
    }
}

fn answer(version: &str, r: Result<Vec<u8>, CniError>) -> Response {
    match r {
        Ok(body) => (StatusCode::OK, body).into_response(),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, e.to_json(version)).into_response()
        }
    }
}

async fn handle(
    State(s): State<Arc<CniServer>>,
    UrlPath(verb): UrlPath<String>,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let path = format!("{}{verb}", cni::wire::PATH_PREFIX);
    let req = match cni::wire::decode_request(&path, &body) {
        Ok(r) => r,
        Err(e) => return answer("", Err(e)),
    };
    let version = req.cni_version().to_string();
    // Every line the call logs, down to the kernel and switch steps, carries the container and
    // its endpoint: one grep follows a pod through the agent's log.
    let span = tracing::info_span!(
        "cni",
        command = %req.command,
        container = %req.container_id,
        endpoint = %crate::names::endpoint_id(&req.container_id, &req.if_name),
    );
    let (r, steps) =
        tracing::Instrument::instrument(crate::steps::record(dispatch(&s, &req)), span).await;
    crate::metrics::get().cni_call(
        req.command.as_str(),
        started.elapsed(),
        &steps,
        r.as_ref().err().map(|e| e.code),
    );
    match &r {
        Ok(_) => {
            tracing::info!(command = %req.command, container = %req.container_id, ifname = %req.if_name, ms = started.elapsed().as_millis() as u64, steps = %steps, "CNI call done")
        }
        Err(e) => {
            tracing::warn!(command = %req.command, container = %req.container_id, code = e.code, error = %e.msg, "CNI call failed")
        }
    }
    answer(&version, r)
}

async fn dispatch(s: &CniServer, req: &AgentRequest) -> Result<Vec<u8>, CniError> {
    let m = &s.manager;
    let conf = req.netconf()?;
    match req.command {
        Command::Add => {
            let mut add = add_request(req, &conf)?;
            if let Some(kube) = &s.kube {
                apply_pod_labels(kube, req, &mut add).await?;
            }
            let a = m.add(&add).await.map_err(cni_error)?;
            render_result(&result(&a, &conf), &conf.cni_version)
        }
        Command::Del => {
            let netns = (!req.netns.is_empty()).then(|| PathBuf::from(&req.netns));
            m.del_in(&req.container_id, &req.if_name, netns.as_deref())
                .await
                .map_err(cni_error)?;
            Ok(Vec::new())
        }
        Command::Check => {
            m.check(&req.container_id, &req.if_name, &PathBuf::from(&req.netns))
                .await
                .map_err(cni_error)?;
            Ok(Vec::new())
        }
        Command::Status => {
            m.status().await.map_err(cni_error)?;
            Ok(Vec::new())
        }
        Command::Gc => {
            let valid: BTreeSet<(String, String)> = conf
                .valid_attachments
                .iter()
                .flatten()
                .map(|a| (a.container_id.clone(), a.ifname.clone()))
                .collect();
            let n = m.gc(&conf.name, &valid).await.map_err(cni_error)?;
            tracing::info!(network = %conf.name, removed = n, "CNI GC");
            Ok(Vec::new())
        }
        Command::Version => Err(CniError::internal(
            "VERSION is answered by the plugin itself",
        )),
    }
}

/// Placement from the pod's `io.contiv.*` labels, which win over the config; the labels also go
/// with the endpoint (service selectors match them).
async fn apply_pod_labels(
    kube: &crate::k8s::KubeClient,
    req: &AgentRequest,
    add: &mut AddRequest,
) -> Result<(), CniError> {
    let pod = req.pod()?;
    let (Some(ns), Some(name)) = (pod.namespace, pod.name) else {
        return Ok(());
    };
    match kube.pod_labels(&ns, &name).await {
        Ok(Some(labels)) => {
            use crate::k8s::{LABEL_GROUP, LABEL_NETWORK, LABEL_TENANT};
            for (label, field) in [
                (LABEL_TENANT, &mut add.tenant),
                (LABEL_NETWORK, &mut add.network),
                (LABEL_GROUP, &mut add.group),
            ] {
                if let Some(v) = labels.get(label).filter(|v| !v.is_empty()) {
                    *field = v.clone();
                }
            }
            add.labels = labels;
            Ok(())
        }
        Ok(None) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), "pod not found in the Kubernetes API; placing it by the network config");
            Ok(())
        }
        Err(e) => Err(CniError::try_again_later(e.to_string())),
    }
}

/// Placement and identity of an ADD: the config's fields, else `default`/`default-net`.
pub fn add_request(req: &AgentRequest, conf: &NetConf) -> Result<AddRequest, CniError> {
    let args = req.cni_args()?;
    let pod = req.pod()?;
    let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
    // A requested address: the `ips` capability, else CNI_ARGS IP=.
    let ip = conf
        .runtime_config
        .as_ref()
        .and_then(|r| r.ips.as_ref())
        .and_then(|ips| ips.iter().find(|i| !i.contains(':')).cloned())
        .or_else(|| args.get("IP").cloned())
        .map(|s| s.split('/').next().unwrap_or_default().to_string());
    Ok(AddRequest {
        container_id: req.container_id.clone(),
        netns: PathBuf::from(&req.netns),
        ifname: req.if_name.clone(),
        tenant: nonempty(&conf.tenant).unwrap_or_else(|| DEFAULT_TENANT.into()),
        network: nonempty(&conf.network).unwrap_or_else(|| DEFAULT_NETWORK.into()),
        group: nonempty(&conf.group).unwrap_or_default(),
        container_name: match (&pod.namespace, &pod.name) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n.clone(),
            _ => String::new(),
        },
        labels: Default::default(),
        mtu: conf.mtu,
        ip,
        attachment_network: conf.name.clone(),
        endpoint_id: None,
        peer_in_host: false,
    })
}

/// The full CNI result of an attachment.
pub fn result(a: &Attachment, conf: &NetConf) -> Result11 {
    let ep = &a.endpoint;
    let mut r = Result11 {
        interfaces: vec![
            Interface {
                name: a.host_ifname.clone(),
                mac: a.host_mac.clone(),
                mtu: Some(a.mtu),
                ..Default::default()
            },
            Interface {
                name: a.ifname.clone(),
                mac: a.mac.clone(),
                mtu: Some(a.mtu),
                sandbox: Some(a.netns.display().to_string()),
                ..Default::default()
            },
        ],
        ips: Vec::new(),
        routes: Vec::new(),
        dns: conf.dns.clone().unwrap_or_default(),
    };
    let mut add = |addr: &str, prefix: u8, gw: &str, default: &str| {
        if let Ok(net) = format!("{addr}/{prefix}").parse() {
            let gw: Option<IpAddr> = gw.parse().ok();
            r.ips.push(IpConfig {
                address: net,
                gateway: gw,
                interface: Some(1),
            });
            if let Some(g) = gw {
                r.routes.push(Route {
                    dst: default.parse().expect("literal"),
                    gw: Some(g),
                    mtu: None,
                    advmss: None,
                    priority: None,
                    table: None,
                    scope: None,
                });
            }
        }
    };
    add(&ep.ip_address, ep.prefix_len, &ep.gateway, "0.0.0.0/0");
    if !ep.ipv6_address.is_empty() {
        add(
            &ep.ipv6_address,
            ep.ipv6_prefix_len,
            &ep.ipv6_gateway,
            "::/0",
        );
    }
    r
}

/// Serves the CNI socket until the process ends.
pub async fn serve(m: Arc<CniServer>, socket: &std::path::Path) -> Result<(), ManagerError> {
    let io = |what: &str, e: std::io::Error| {
        ManagerError::new(
            ErrorKind::Internal,
            format!("{what} {}: {e}", socket.display()),
        )
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    }
    // A socket left by a previous run makes bind fail; nothing else may own this path.
    let _ = std::fs::remove_file(socket);
    let l = tokio::net::UnixListener::bind(socket).map_err(|e| io("listen on", e))?;
    tracing::info!(socket = %socket.display(), "serving CNI");
    axum::serve(l, router(m)).await.map_err(|e| io("serve", e))
}

#[cfg(test)]
mod tests;
