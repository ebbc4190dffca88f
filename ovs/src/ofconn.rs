//! [`OfProgrammer`]: a [`FlowProgrammer`] over one persistent OpenFlow 1.4 connection per
//! bridge, instead of an `ovs-ofctl` process per call (which costs the switch a new connection,
//! a handshake and ~5-10 ms per call; BENCHMARKS.md, issue 4).
//!
//! Every flow call is one bundle: open, the flow mods, a barrier (the switch reports a flow it
//! cannot take at once, when it decodes the message), then commit, or discard if anything was
//! refused. Meter changes are plain meter mods followed by a barrier (Open vSwitch does not
//! take them in bundles). Calls on one bridge take turns on its connection. A connection that
//! broke (ovs-vswitchd restarted) is opened again and the call repeated once: every call is
//! idempotent. Dumps go through `ovs-ofctl`, off the hot path.

use crate::error::FlowError;
use crate::flows::{
    CookieMask, Flow, FlowMatch, FlowProgrammer, FlowStats, MeterConfig, OfctlProgrammer,
};
use crate::ofwire::{self as w};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// A [`FlowProgrammer`] speaking OpenFlow 1.4 itself over `<rundir>/<bridge>.mgmt`.
pub struct OfProgrammer {
    ofctl: OfctlProgrammer,
    timeout: Duration,
    conns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<UnixStream>>>>>,
    xid: AtomicU32,
    /// Connections made (see [`FlowProgrammer::connections`]).
    connects: std::sync::atomic::AtomicU64,
}

/// One message to send, and what to say about it if the switch refuses it.
struct Out {
    xid: u32,
    bytes: Vec<u8>,
    what: Option<String>,
}

impl OfProgrammer {
    /// Talks to each bridge through `<rundir>/<bridge>.mgmt` (ovs-vswitchd's run directory).
    pub fn new(rundir: impl Into<PathBuf>) -> Self {
        let timeout = Duration::from_secs(30);
        OfProgrammer {
            ofctl: OfctlProgrammer::new(rundir).with_timeout(timeout),
            timeout,
            conns: Mutex::new(HashMap::new()),
            xid: AtomicU32::new(1),
            connects: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Gives up on a call (and its connection) after this long.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.ofctl = self.ofctl.with_timeout(timeout);
        self
    }

    fn next_xid(&self) -> u32 {
        self.xid.fetch_add(1, Ordering::Relaxed)
    }

    fn slot(&self, bridge: &str) -> Arc<tokio::sync::Mutex<Option<UnixStream>>> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.entry(bridge.to_string()).or_default().clone()
    }

    /// Connects and agrees on OpenFlow 1.4.
    async fn connect(&self, action: &str, bridge: &str) -> Result<UnixStream, FlowError> {
        let socket = self.ofctl.mgmt_socket(bridge);
        let io = |source| FlowError::Connect {
            action: action.to_string(),
            bridge: bridge.to_string(),
            socket: socket.clone(),
            source,
        };
        let mut s = UnixStream::connect(&socket).await.map_err(io)?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        s.write_all(&w::simple(w::OFPT_HELLO, self.next_xid()))
            .await
            .map_err(io)?;
        let (head, body) = read_msg(&mut s).await.map_err(io)?;
        let why = match w::classify(&head, &body) {
            w::Incoming::Hello { version } if version >= w::VERSION => None,
            w::Incoming::Error { name, .. } => Some(name),
            _ => Some(format!(
                "switch offers OpenFlow version {:#x}",
                head.version
            )),
        };
        if let Some(why) = why {
            return Err(FlowError::Protocol {
                action: action.to_string(),
                bridge: bridge.to_string(),
                reason: format!(
                    "version negotiation failed: bundles need OpenFlow 1.4 on the bridge ({why})"
                ),
            });
        }
        // A switch that supports newer versions agrees to ours when its hello has a higher
        // version: both sides use the lower one. If the bridge does not allow 1.4, the switch
        // sends an error instead of taking our first message.
        Ok(s)
    }

    /// Sends `out` and reads until the reply to `last` (of type `reply`), answering echoes.
    /// Returns the switch's errors for our messages, by xid.
    async fn exchange(
        &self,
        action: &str,
        bridge: &str,
        build: &(dyn Fn(&Self) -> Result<Vec<Out>, FlowError> + Sync),
        reply: u8,
    ) -> Result<Vec<(u32, String)>, FlowError> {
        let slot = self.slot(bridge);
        let mut conn = slot.lock().await;
        for attempt in 0..2 {
            if conn.is_none() {
                *conn = Some(self.connect(action, bridge).await?);
            }
            let stream = conn.as_mut().expect("connected above");
            let out = build(self)?;
            let last = out.last().map_or(0, |o| o.xid);
            let work = run(stream, &out, last, reply);
            match tokio::time::timeout(self.timeout, work).await {
                Err(_) => {
                    *conn = None;
                    return Err(FlowError::Timeout {
                        action: action.to_string(),
                        bridge: bridge.to_string(),
                        command: "OpenFlow 1.4 connection".into(),
                        timeout: self.timeout,
                    });
                }
                Ok(Ok(errors)) => {
                    return Ok(errors
                        .into_iter()
                        .map(|(xid, e)| {
                            let what = out
                                .iter()
                                .find(|o| o.xid == xid)
                                .and_then(|o| o.what.clone());
                            (
                                xid,
                                match what {
                                    Some(w) => format!("{e} (flow '{w}')"),
                                    None => e,
                                },
                            )
                        })
                        .collect());
                }
                // The connection is unusable (closed, reset): worth one more try on a new one.
                Ok(Err(e)) => {
                    *conn = None;
                    if attempt == 1 {
                        return Err(FlowError::Connect {
                            action: action.to_string(),
                            bridge: bridge.to_string(),
                            socket: self.ofctl.mgmt_socket(bridge),
                            source: e,
                        });
                    }
                    tracing::debug!(bridge, error = %e, "OpenFlow connection lost: reconnecting");
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// One bundle of flow mods: applied all or none.
    async fn bundle(&self, action: &str, bridge: &str, mods: Mods) -> Result<(), FlowError> {
        if mods.is_empty() {
            return Ok(());
        }
        // Encoded up front, so that a flow we cannot encode fails before anything is sent.
        let mods: Vec<(String, Vec<u8>)> = mods
            .into_iter()
            .map(|(what, enc)| match enc {
                Ok(bytes) => Ok((what, bytes)),
                Err(reason) => Err(FlowError::InvalidFlow {
                    action: action.to_string(),
                    bridge: bridge.to_string(),
                    reason: format!("{what}: {reason}"),
                }),
            })
            .collect::<Result<_, _>>()?;
        let bundle_id = self.next_xid();
        let build = |me: &Self| -> Result<Vec<Out>, FlowError> {
            let mut out = Vec::with_capacity(mods.len() + 2);
            let xid = me.next_xid();
            out.push(Out {
                xid,
                bytes: w::bundle_control(xid, bundle_id, w::OFPBCT_OPEN_REQUEST),
                what: None,
            });
            for (what, inner) in &mods {
                let xid = me.next_xid();
                let mut inner = inner.clone();
                // The switch wants the inner message's xid to be the bundle message's.
                inner[4..8].copy_from_slice(&xid.to_be_bytes());
                out.push(Out {
                    xid,
                    bytes: w::bundle_add(xid, bundle_id, &inner),
                    what: Some(what.clone()),
                });
            }
            let xid = me.next_xid();
            out.push(Out {
                xid,
                bytes: w::simple(w::OFPT_BARRIER_REQUEST, xid),
                what: None,
            });
            Ok(out)
        };
        let errors = self
            .exchange(action, bridge, &build, w::OFPT_BARRIER_REPLY)
            .await?;
        let (kind, what) = if errors.is_empty() {
            (w::OFPBCT_COMMIT_REQUEST, "commit")
        } else {
            (w::OFPBCT_DISCARD_REQUEST, "discard")
        };
        let end = |me: &Self| -> Result<Vec<Out>, FlowError> {
            let xid = me.next_xid();
            Ok(vec![Out {
                xid,
                bytes: w::bundle_control(xid, bundle_id, kind),
                what: None,
            }])
        };
        let end_errors = self
            .exchange(action, bridge, &end, w::OFPT_BUNDLE_CONTROL)
            .await?;
        let all: Vec<String> = errors.into_iter().chain(end_errors).map(|e| e.1).collect();
        if all.is_empty() {
            return Ok(());
        }
        Err(FlowError::Refused {
            action: action.to_string(),
            bridge: bridge.to_string(),
            step: format!("OpenFlow bundle {what}"),
            errors: all.join("; "),
        })
    }

    async fn meter(
        &self,
        action: &str,
        bridge: &str,
        command: u16,
        id: u32,
        kbps: u32,
        burst: u32,
    ) -> Result<Vec<String>, FlowError> {
        let build = |me: &Self| -> Result<Vec<Out>, FlowError> {
            let (x1, x2) = (me.next_xid(), me.next_xid());
            Ok(vec![
                Out {
                    xid: x1,
                    bytes: w::meter_mod(x1, command, id, kbps, burst),
                    what: None,
                },
                Out {
                    xid: x2,
                    bytes: w::simple(w::OFPT_BARRIER_REQUEST, x2),
                    what: None,
                },
            ])
        };
        Ok(self
            .exchange(action, bridge, &build, w::OFPT_BARRIER_REPLY)
            .await?
            .into_iter()
            .map(|e| e.1)
            .collect())
    }
}

/// Flow mods (xid 0, set when sent), each with its ovs-ofctl text for messages.
type Mods = Vec<(String, Result<Vec<u8>, String>)>;

fn add_mods(flows: &[Flow]) -> Mods {
    flows
        .iter()
        .map(|f| (f.to_ofctl(), w::flow_add(0, f)))
        .collect()
}

fn del_mods(matches: &[FlowMatch]) -> Mods {
    matches
        .iter()
        .map(|m| (format!("delete {}", m.to_ofctl()), w::flow_delete(0, m)))
        .collect()
}

/// Writes every message, then reads until `last`'s reply. Errors for our xids are collected;
/// echo requests are answered; anything else the switch volunteers (port status) is skipped.
async fn run(
    s: &mut UnixStream,
    out: &[Out],
    last: u32,
    reply: u8,
) -> std::io::Result<Vec<(u32, String)>> {
    let bytes: Vec<u8> = out.iter().flat_map(|o| o.bytes.iter().copied()).collect();
    s.write_all(&bytes).await?;
    let mut errors = Vec::new();
    loop {
        let (head, body) = read_msg(s).await?;
        match w::classify(&head, &body) {
            w::Incoming::EchoRequest { xid, payload } => {
                let mut r = w::header(w::OFPT_ECHO_REPLY, xid, payload.len());
                r.extend_from_slice(payload);
                s.write_all(&r).await?;
            }
            w::Incoming::Error { xid, name } if out.iter().any(|o| o.xid == xid) => {
                errors.push((xid, name));
                if xid == last {
                    return Ok(errors);
                }
            }
            w::Incoming::Other { msg_type, xid } if msg_type == reply && xid == last => {
                return Ok(errors);
            }
            _ => {}
        }
    }
}

async fn read_msg(s: &mut UnixStream) -> std::io::Result<(w::Header, Vec<u8>)> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).await?;
    let head = w::Header::parse(head)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; head.body_len()];
    s.read_exact(&mut body).await?;
    Ok((head, body))
}

fn check_replace(action: &str, bridge: &str, sets: &[(u64, &[Flow])]) -> Result<(), FlowError> {
    for (cookie, flows) in sets {
        for f in flows.iter() {
            let bad = |reason: String| FlowError::InvalidFlow {
                action: action.to_string(),
                bridge: bridge.to_string(),
                reason,
            };
            if f.cookie != *cookie {
                return Err(bad(format!(
                    "{}: cookie differs from {cookie:#x}",
                    f.to_ofctl()
                )));
            }
            if f.actions.trim().is_empty() {
                return Err(bad(format!("{}: no actions (use \"drop\")", f.to_ofctl())));
            }
        }
    }
    Ok(())
}

/// A meter mod's outcome: the errors the switch answered, if any, as one refusal.
fn meter_mod_result(action: String, bridge: &str, errors: Vec<String>) -> Result<(), FlowError> {
    if errors.is_empty() {
        return Ok(());
    }
    Err(FlowError::Refused {
        action,
        bridge: bridge.to_string(),
        step: "OpenFlow meter mod".into(),
        errors: errors.join("; "),
    })
}

#[async_trait]
impl FlowProgrammer for OfProgrammer {
    fn connections(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    async fn add_flows(&self, bridge: &str, flows: &[Flow]) -> Result<(), FlowError> {
        let action = format!("add {} flows", flows.len());
        if let Some(f) = flows.iter().find(|f| f.actions.trim().is_empty()) {
            return Err(FlowError::InvalidFlow {
                action,
                bridge: bridge.to_string(),
                reason: format!("{}: no actions (use \"drop\")", f.to_ofctl()),
            });
        }
        self.bundle(&action, bridge, add_mods(flows)).await
    }

    async fn del_flows(&self, bridge: &str, matches: &[FlowMatch]) -> Result<(), FlowError> {
        self.bundle("delete flows", bridge, del_mods(matches)).await
    }

    async fn replace_flows_for_cookie(
        &self,
        bridge: &str,
        cookie: u64,
        flows: &[Flow],
    ) -> Result<(), FlowError> {
        let action = format!("replace flows with cookie {cookie:#x}");
        self.replace_flow_sets_inner(&action, bridge, &[(cookie, flows)])
            .await
    }

    async fn replace_flow_sets(
        &self,
        bridge: &str,
        sets: &[(u64, Vec<Flow>)],
    ) -> Result<(), FlowError> {
        let action = format!("replace the flows of {} cookies", sets.len());
        let sets: Vec<(u64, &[Flow])> = sets.iter().map(|(c, f)| (*c, f.as_slice())).collect();
        self.replace_flow_sets_inner(&action, bridge, &sets).await
    }

    async fn set_meter(
        &self,
        bridge: &str,
        id: u32,
        kbps: u64,
        burst_kbits: u64,
    ) -> Result<(), FlowError> {
        let action = format!("set meter {id}");
        let narrow = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| FlowError::InvalidFlow {
                action: action.clone(),
                bridge: bridge.to_string(),
                reason: format!("{what} {v} does not fit OpenFlow's 32 bits"),
            })
        };
        let (kbps, burst) = (narrow(kbps, "rate")?, narrow(burst_kbits.max(1), "burst")?);
        // Modify keeps the flows that use the meter; it fails when the meter is new.
        let errors = self
            .meter(&action, bridge, w::OFPMC_MODIFY, id, kbps, burst)
            .await?;
        if errors.is_empty() {
            return Ok(());
        }
        let errors = self
            .meter(&action, bridge, w::OFPMC_ADD, id, kbps, burst)
            .await?;
        meter_mod_result(action, bridge, errors)
    }

    async fn del_meter(&self, bridge: &str, id: u32) -> Result<(), FlowError> {
        let action = format!("delete meter {id}");
        let errors = self
            .meter(&action, bridge, w::OFPMC_DELETE, id, 0, 0)
            .await?;
        meter_mod_result(action, bridge, errors)
    }

    async fn dump_flows(
        &self,
        bridge: &str,
        filter: Option<CookieMask>,
    ) -> Result<Vec<FlowStats>, FlowError> {
        self.ofctl.dump_flows(bridge, filter).await
    }

    // Rare calls (at start, when an endpoint leaves while rules exist): ovs-ofctl's, like dumps.
    async fn dump_meters(&self, bridge: &str) -> Result<Vec<MeterConfig>, FlowError> {
        self.ofctl.dump_meters(bridge).await
    }

    async fn flush_conntrack(
        &self,
        bridge: &str,
        zone: u16,
        orig_tuple: &str,
    ) -> Result<(), FlowError> {
        self.ofctl.flush_conntrack(bridge, zone, orig_tuple).await
    }
}

impl OfProgrammer {
    async fn replace_flow_sets_inner(
        &self,
        action: &str,
        bridge: &str,
        sets: &[(u64, &[Flow])],
    ) -> Result<(), FlowError> {
        check_replace(action, bridge, sets)?;
        let mut mods: Mods = Vec::new();
        for (cookie, flows) in sets {
            mods.extend(del_mods(&[FlowMatch::cookie(CookieMask::exact(*cookie))]));
            mods.extend(add_mods(flows));
        }
        self.bundle(action, bridge, mods).await
    }
}
