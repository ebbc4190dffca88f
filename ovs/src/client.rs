//! The OVSDB JSON-RPC client.
//!
//! One task owns the unix socket. Callers hand it commands over a channel and wait for the reply
//! on a oneshot; the task numbers requests, matches replies to them, answers the server's `echo`
//! requests, routes `update` notifications to monitors, probes an idle connection, and, when the
//! socket drops, fails what was in flight, reconnects with backoff and sets the monitors up again.

use crate::datum::Row;
use crate::error::OvsdbError;
use crate::jsonrpc::{FrameDecoder, Incoming};
use crate::monitor::{Monitor, MonitorEvent, MonitorRequest, TableUpdates};
use crate::ops::{Condition, Operation, OperationResult, TransactFailure, parse_transact_reply};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How a [`Client`] behaves. The defaults suit a node agent talking to the local ovsdb-server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long a request waits for its reply, including time spent waiting for a reconnect.
    pub request_timeout: Duration,
    /// Reconnect when the socket drops. Without it the client is closed by the first drop.
    pub reconnect: bool,
    /// First delay before a reconnection attempt; doubles after each failure up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Send an `echo` after this long without hearing from the server, and give the connection
    /// up if nothing arrives within another interval. Catches a server that hangs with the
    /// socket still open (a closed socket is noticed at once). `None` disables probing.
    pub probe_interval: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(10),
            reconnect: true,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            // OVS's own default inactivity probe.
            probe_interval: Some(Duration::from_secs(5)),
        }
    }
}

/// Whether the client is connected, and how many connections it has made so far (1 after the
/// initial connect, +1 per reconnect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionState {
    pub connected: bool,
    pub generation: u64,
}

/// An OVSDB client. Cheap to clone; all clones share one connection. The connection task ends
/// when the last clone (and the last [`Monitor`]) is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    options: ClientOptions,
    cmd_tx: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnectionState>,
    next_monitor_id: AtomicU64,
}

pub(crate) enum Command {
    Call {
        method: String,
        params: Value,
        reply: oneshot::Sender<Result<Value, OvsdbError>>,
    },
    Monitor {
        id: u64,
        db: String,
        requests: Value,
        events: mpsc::UnboundedSender<MonitorEvent>,
        reply: oneshot::Sender<Result<TableUpdates, OvsdbError>>,
    },
    CancelMonitor {
        id: u64,
    },
}

impl Client {
    /// Connects to the ovsdb-server socket at `path` with the default options.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, OvsdbError> {
        Client::connect_with(path, ClientOptions::default()).await
    }

    /// Connects to `path`. The first connection must succeed; later drops are reconnected
    /// in the background when `options.reconnect` is set.
    pub async fn connect_with(
        path: impl AsRef<Path>,
        options: ClientOptions,
    ) -> Result<Client, OvsdbError> {
        let path = path.as_ref().to_path_buf();
        let stream = UnixStream::connect(&path)
            .await
            .map_err(|source| OvsdbError::Connect {
                path: path.clone(),
                source,
            })?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        // Already connected: the task publishes the same state when it starts.
        let (state_tx, state_rx) = watch::channel(ConnectionState {
            connected: true,
            generation: 1,
        });
        let task = Task {
            path: path.clone(),
            options: options.clone(),
            cmd_rx,
            state_tx,
            monitors: HashMap::new(),
            queued: VecDeque::new(),
            generation: 0,
        };
        tokio::spawn(task.run(stream));
        Ok(Client {
            shared: Arc::new(Shared {
                path,
                options,
                cmd_tx,
                state: state_rx,
                next_monitor_id: AtomicU64::new(1),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Follows the connection state (see [`ConnectionState`]).
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.clone()
    }

    /// Sends a raw JSON-RPC request and returns its `result`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, OvsdbError> {
        let (reply, rx) = oneshot::channel();
        self.send(
            method,
            Command::Call {
                method: method.to_string(),
                params,
                reply,
            },
        )?;
        self.wait_reply(method, rx).await
    }

    fn send(&self, method: &str, cmd: Command) -> Result<(), OvsdbError> {
        self.shared
            .cmd_tx
            .send(cmd)
            .map_err(|_| OvsdbError::Closed {
                path: self.shared.path.clone(),
                method: method.to_string(),
            })
    }

    async fn wait_reply<T>(
        &self,
        method: &str,
        rx: oneshot::Receiver<Result<T, OvsdbError>>,
    ) -> Result<T, OvsdbError> {
        let timeout = self.shared.options.request_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            // The task dropped the request: it has shut down.
            Ok(Err(_)) => Err(OvsdbError::Closed {
                path: self.shared.path.clone(),
                method: method.to_string(),
            }),
            Err(_) => Err(OvsdbError::Timeout {
                path: self.shared.path.clone(),
                method: method.to_string(),
                timeout,
            }),
        }
    }

    /// The databases the server holds.
    pub async fn list_dbs(&self) -> Result<Vec<String>, OvsdbError> {
        let result = self.call("list_dbs", json!([])).await?;
        serde_json::from_value(result.clone()).map_err(|_| OvsdbError::Decode {
            what: "list_dbs reply",
            source: crate::datum::DecodeError::new("expected an array of strings", &result),
        })
    }

    /// The schema of `db`, as JSON.
    pub async fn get_schema(&self, db: &str) -> Result<Value, OvsdbError> {
        self.call("get_schema", json!([db])).await
    }

    /// A round trip to the server: proves the connection is alive.
    pub async fn echo(&self) -> Result<(), OvsdbError> {
        let payload = json!(["ovs-rs"]);
        let result = self.call("echo", payload.clone()).await?;
        if result != payload {
            return Err(OvsdbError::Decode {
                what: "echo reply",
                source: crate::datum::DecodeError::new("reply differs from request", &result),
            });
        }
        Ok(())
    }

    /// Runs `ops` as one atomic transaction. A failed operation comes back as
    /// [`OvsdbError::Operation`] naming it, a failed commit as [`OvsdbError::Commit`].
    pub async fn transact(
        &self,
        db: &str,
        ops: &[Operation],
    ) -> Result<Vec<OperationResult>, OvsdbError> {
        let reply = self
            .call("transact", crate::ops::transact_params(db, ops))
            .await?;
        match parse_transact_reply(ops.len(), &reply).map_err(|source| OvsdbError::Decode {
            what: "transact reply",
            source,
        })? {
            Ok(results) => Ok(results),
            Err(TransactFailure::Operation {
                index,
                error,
                details,
            }) => Err(OvsdbError::Operation {
                index,
                op: ops[index].describe(),
                error,
                details,
            }),
            Err(TransactFailure::Commit { error, details }) => {
                Err(OvsdbError::Commit { error, details })
            }
        }
    }

    /// The rows of `table` matching `conditions`; all columns when `columns` is `None`.
    pub async fn select(
        &self,
        db: &str,
        table: &str,
        conditions: Vec<Condition>,
        columns: Option<&[&str]>,
    ) -> Result<Vec<Row>, OvsdbError> {
        let op = match columns {
            Some(columns) => Operation::select_columns(table, conditions, columns),
            None => Operation::select(table, conditions),
        };
        let mut results = self.transact(db, &[op]).await?;
        Ok(results.pop().and_then(|r| r.rows).unwrap_or_default())
    }

    /// Starts a monitor. It survives reconnects: after one, the stream yields a
    /// [`MonitorEvent::Resync`] with the full contents, then updates again.
    pub async fn monitor(
        &self,
        db: &str,
        requests: &[MonitorRequest],
    ) -> Result<Monitor, OvsdbError> {
        let id = self.shared.next_monitor_id.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (reply, rx) = oneshot::channel();
        self.send(
            "monitor",
            Command::Monitor {
                id,
                db: db.to_string(),
                requests: MonitorRequest::to_json(requests),
                events: events_tx,
                reply,
            },
        )?;
        // Build the guard before waiting, so that a timeout cancels the monitor on the server.
        let mut monitor = Monitor {
            initial: TableUpdates::default(),
            id,
            events,
            cmd_tx: self.shared.cmd_tx.clone(),
        };
        monitor.initial = self.wait_reply("monitor", rx).await?;
        Ok(monitor)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("path", &self.shared.path)
            .field("state", &*self.shared.state.borrow())
            .finish_non_exhaustive()
    }
}

/// A monitor the task keeps alive across reconnects.
struct MonitorReg {
    db: String,
    requests: Value,
    events: mpsc::UnboundedSender<MonitorEvent>,
}

/// What a request in flight is waiting for.
enum Pending {
    Call {
        method: String,
        reply: oneshot::Sender<Result<Value, OvsdbError>>,
    },
    MonitorStart {
        id: u64,
        reply: oneshot::Sender<Result<TableUpdates, OvsdbError>>,
    },
    MonitorResync {
        id: u64,
    },
    /// Our inactivity probe, or a `monitor_cancel`: nobody waits for the reply.
    Ignore,
}

/// Why a session ended.
enum End {
    /// Every client handle is gone.
    Shutdown,
    Lost(String),
}

struct Task {
    path: PathBuf,
    options: ClientOptions,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    state_tx: watch::Sender<ConnectionState>,
    monitors: HashMap<u64, MonitorReg>,
    /// Commands that arrived while disconnected, sent once a connection is back.
    queued: VecDeque<Command>,
    generation: u64,
}

/// The state of one connection.
struct Session {
    pending: HashMap<u64, Pending>,
    next_id: u64,
    wbuf: Vec<u8>,
    /// When the current probe period started: the last message received, or the last probe.
    probe_base: Instant,
    probe_outstanding: bool,
}

impl Session {
    fn request(&mut self, method: &str, params: Value, pending: Pending) {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        self.write(&json!({"id": id, "method": method, "params": params}));
    }

    fn write(&mut self, msg: &Value) {
        // Serialising a Value cannot fail.
        serde_json::to_writer(&mut self.wbuf, msg).expect("serialize JSON-RPC message");
    }
}

impl Task {
    async fn run(mut self, first: UnixStream) {
        let mut stream = Some(first);
        loop {
            let s = match stream.take() {
                Some(s) => s,
                None => match self.reconnect().await {
                    Some(s) => s,
                    None => return,
                },
            };
            self.generation += 1;
            self.state_tx.send_replace(ConnectionState {
                connected: true,
                generation: self.generation,
            });
            if self.generation > 1 {
                info!(path = %self.path.display(), generation = self.generation, "reconnected to ovsdb-server");
            }
            let end = self.session(s).await;
            self.state_tx.send_replace(ConnectionState {
                connected: false,
                generation: self.generation,
            });
            match end {
                End::Shutdown => return,
                End::Lost(reason) => {
                    warn!(path = %self.path.display(), %reason, "connection to ovsdb-server lost");
                    if !self.options.reconnect {
                        // Dropping the task fails queued callers (Closed) and ends monitor streams.
                        return;
                    }
                }
            }
        }
    }

    /// Waits and reconnects, with exponential backoff, until it works or every handle is gone.
    async fn reconnect(&mut self) -> Option<UnixStream> {
        let mut delay = self.options.backoff_initial;
        loop {
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.cmd_rx.recv() => match cmd {
                        None => return None,
                        Some(Command::CancelMonitor { id }) => {
                            self.monitors.remove(&id);
                        }
                        Some(cmd) => self.queued.push_back(cmd),
                    },
                }
            }
            match UnixStream::connect(&self.path).await {
                Ok(s) => return Some(s),
                Err(e) => {
                    debug!(path = %self.path.display(), error = %e, ?delay, "reconnect to ovsdb-server failed");
                    delay = (delay * 2).min(self.options.backoff_max);
                }
            }
        }
    }

    async fn session(&mut self, stream: UnixStream) -> End {
        let (mut rd, mut wr) = stream.into_split();
        let mut s = Session {
            pending: HashMap::new(),
            next_id: 1,
            wbuf: Vec::new(),
            probe_base: Instant::now(),
            probe_outstanding: false,
        };
        let mut decoder = FrameDecoder::default();
        let mut rbuf = vec![0u8; 64 * 1024];

        // Monitors first, so that each consumer sees its Resync before the effect of any
        // request queued while we were away.
        if self.generation > 1 {
            self.monitors.retain(|_, m| !m.events.is_closed());
            for (id, m) in &self.monitors {
                s.request(
                    "monitor",
                    json!([m.db, id, m.requests]),
                    Pending::MonitorResync { id: *id },
                );
            }
        }
        while let Some(cmd) = self.queued.pop_front() {
            self.command(&mut s, cmd);
        }

        let end = loop {
            let probe_at = self.options.probe_interval.map(|i| s.probe_base + i);
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    None => break End::Shutdown,
                    Some(cmd) => self.command(&mut s, cmd),
                },
                read = rd.read(&mut rbuf) => match read {
                    Ok(0) => break End::Lost("closed by the server".into()),
                    Err(e) => break End::Lost(format!("read: {e}")),
                    Ok(n) => {
                        decoder.push(&rbuf[..n]);
                        s.probe_base = Instant::now();
                        s.probe_outstanding = false;
                        let mut failed = None;
                        loop {
                            match decoder.next_value() {
                                Ok(Some(msg)) => {
                                    if let Err(e) = self.incoming(&mut s, msg) {
                                        failed = Some(e);
                                        break;
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    failed = Some(e.to_string());
                                    break;
                                }
                            }
                        }
                        if let Some(e) = failed {
                            break End::Lost(format!("protocol error: {e}"));
                        }
                    }
                },
                written = wr.write(&s.wbuf), if !s.wbuf.is_empty() => match written {
                    Ok(n) => {
                        s.wbuf.drain(..n);
                    }
                    Err(e) => break End::Lost(format!("write: {e}")),
                },
                _ = sleep_until_opt(probe_at), if probe_at.is_some() => {
                    if s.probe_outstanding {
                        break End::Lost(format!(
                            "no reply to an echo probe within {:?}",
                            self.options.probe_interval.unwrap_or_default()
                        ));
                    }
                    s.request("echo", json!([]), Pending::Ignore);
                    s.probe_outstanding = true;
                    s.probe_base = Instant::now();
                }
            }
        };

        if let End::Lost(_) = end {
            for (_, pending) in s.pending.drain() {
                match pending {
                    Pending::Call { method, reply } => {
                        let _ = reply.send(Err(OvsdbError::ConnectionLost {
                            path: self.path.clone(),
                            method,
                        }));
                    }
                    Pending::MonitorStart { id, reply } => {
                        self.monitors.remove(&id);
                        let _ = reply.send(Err(OvsdbError::ConnectionLost {
                            path: self.path.clone(),
                            method: "monitor".into(),
                        }));
                    }
                    // Set up again on the next connection.
                    Pending::MonitorResync { .. } | Pending::Ignore => {}
                }
            }
        }
        end
    }

    fn command(&mut self, s: &mut Session, cmd: Command) {
        match cmd {
            Command::Call {
                method,
                params,
                reply,
            } => {
                // The caller gave up (timed out) while the request was queued: don't send it.
                if reply.is_closed() {
                    return;
                }
                s.request(&method.clone(), params, Pending::Call { method, reply });
            }
            Command::Monitor {
                id,
                db,
                requests,
                events,
                reply,
            } => {
                if reply.is_closed() {
                    return;
                }
                s.request(
                    "monitor",
                    json!([db, id, requests]),
                    Pending::MonitorStart { id, reply },
                );
                self.monitors.insert(
                    id,
                    MonitorReg {
                        db,
                        requests,
                        events,
                    },
                );
            }
            Command::CancelMonitor { id } => self.cancel_monitor(s, id),
        }
    }

    fn cancel_monitor(&mut self, s: &mut Session, id: u64) {
        if self.monitors.remove(&id).is_some() {
            s.request("monitor_cancel", json!([id]), Pending::Ignore);
        }
    }

    /// Handles one message from the server. An error means the peer broke the protocol.
    fn incoming(&mut self, s: &mut Session, msg: Value) -> Result<(), String> {
        match Incoming::classify(msg).map_err(|e| e.to_string())? {
            Incoming::Response { id, result, error } => {
                let Some(pending) = id.as_u64().and_then(|id| s.pending.remove(&id)) else {
                    debug!(%id, "reply to an unknown request");
                    return Ok(());
                };
                let rpc_error = (!error.is_null()).then(|| {
                    error
                        .as_str()
                        .map_or_else(|| error.to_string(), str::to_string)
                });
                match pending {
                    Pending::Call { method, reply } => {
                        let _ = reply.send(match rpc_error {
                            Some(error) => Err(OvsdbError::Rpc { method, error }),
                            None => Ok(result),
                        });
                    }
                    Pending::MonitorStart { id, reply } => {
                        let outcome = match rpc_error {
                            Some(error) => Err(OvsdbError::Rpc {
                                method: "monitor".into(),
                                error,
                            }),
                            None => TableUpdates::from_json(&result).map_err(|source| {
                                OvsdbError::Decode {
                                    what: "monitor reply",
                                    source,
                                }
                            }),
                        };
                        let ok = outcome.is_ok();
                        if reply.send(outcome).is_err() || !ok {
                            // Failed, or the caller gave up waiting: nobody will consume it.
                            self.cancel_monitor(s, id);
                        }
                    }
                    Pending::MonitorResync { id } => {
                        let Some(m) = self.monitors.get(&id) else {
                            return Ok(());
                        };
                        match rpc_error.map_or_else(
                            || TableUpdates::from_json(&result).map_err(|e| e.to_string()),
                            Err,
                        ) {
                            Ok(tu) => {
                                if m.events.send(MonitorEvent::Resync(tu)).is_err() {
                                    self.cancel_monitor(s, id);
                                }
                            }
                            Err(e) => {
                                // Dropping the registration ends the consumer's stream, which
                                // is how it learns the monitor is gone.
                                warn!(id, error = %e, "could not set a monitor up again after reconnecting");
                                self.monitors.remove(&id);
                            }
                        }
                    }
                    Pending::Ignore => {}
                }
            }
            Incoming::Request { id, method, params } => {
                // ovsdb-server probes idle connections with echo; no reply within its probe
                // interval and it disconnects us.
                let reply = if method == "echo" {
                    json!({"id": id, "result": params, "error": null})
                } else {
                    json!({"id": id, "result": null, "error": format!("unknown method {method}")})
                };
                s.write(&reply);
            }
            Incoming::Notification { method, params } if method == "update" => {
                let (Some(id), Some(updates)) =
                    (params.get(0).and_then(Value::as_u64), params.get(1))
                else {
                    return Err(format!("malformed update notification {params}"));
                };
                let tu = TableUpdates::from_json(updates).map_err(|e| e.to_string())?;
                if let Some(m) = self.monitors.get(&id)
                    && m.events.send(MonitorEvent::Update(tu)).is_err()
                {
                    self.cancel_monitor(s, id);
                }
            }
            Incoming::Notification { method, .. } => {
                debug!(%method, "ignoring notification");
            }
        }
        Ok(())
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
