//! OpenFlow flow programming.
//!
//! [`FlowProgrammer`] is the seam. [`OfctlProgrammer`] runs `ovs-ofctl` with every flow of a
//! call in one OpenFlow 1.4 bundle, so each call is applied atomically or not at all;
//! [`crate::OfProgrammer`] does the same over a persistent OpenFlow connection, without a
//! process per call. Flows are written in `ovs-ofctl`'s flow syntax (ovs-fields(7),
//! ovs-actions(7)).

use crate::error::FlowError;
use async_trait::async_trait;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// OpenFlow's default priority; `ovs-ofctl dump-flows` leaves it out when a flow has it.
pub const DEFAULT_PRIORITY: u16 = 32768;

/// A flow to install.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Tags the flow with its owner, so that it can be found and removed by cookie.
    pub cookie: u64,
    pub table: u8,
    pub priority: u16,
    /// Match fields in ovs-ofctl syntax (`"ip,nw_dst=10.1.0.5"`); empty matches everything.
    pub matches: String,
    /// Actions in ovs-ofctl syntax (`"output:3"`, `"resubmit(,10)"`, `"drop"`).
    pub actions: String,
    /// Seconds; 0 = never.
    pub idle_timeout: u16,
    /// Seconds; 0 = never.
    pub hard_timeout: u16,
}

impl Flow {
    pub fn new(
        table: u8,
        priority: u16,
        matches: impl Into<String>,
        actions: impl Into<String>,
    ) -> Self {
        Flow {
            cookie: 0,
            table,
            priority,
            matches: matches.into(),
            actions: actions.into(),
            idle_timeout: 0,
            hard_timeout: 0,
        }
    }

    pub fn cookie(mut self, cookie: u64) -> Self {
        self.cookie = cookie;
        self
    }

    pub fn idle_timeout(mut self, seconds: u16) -> Self {
        self.idle_timeout = seconds;
        self
    }

    pub fn hard_timeout(mut self, seconds: u16) -> Self {
        self.hard_timeout = seconds;
        self
    }

    /// The flow as one line of `ovs-ofctl add-flows` input.
    pub fn to_ofctl(&self) -> String {
        let mut line = format!(
            "cookie={:#x},table={},priority={}",
            self.cookie, self.table, self.priority
        );
        if self.idle_timeout != 0 {
            let _ = write!(line, ",idle_timeout={}", self.idle_timeout);
        }
        if self.hard_timeout != 0 {
            let _ = write!(line, ",hard_timeout={}", self.hard_timeout);
        }
        if !self.matches.is_empty() {
            let _ = write!(line, ",{}", self.matches);
        }
        let _ = write!(line, ",actions={}", self.actions);
        line
    }

    fn validate(&self) -> Result<(), String> {
        if self.actions.trim().is_empty() {
            return Err(format!("{}: no actions (use \"drop\")", self.to_ofctl()));
        }
        no_newline(&self.matches).and(no_newline(&self.actions))
    }
}

fn no_newline(text: &str) -> Result<(), String> {
    if text.contains(['\n', '\r']) {
        return Err(format!("{text:?} contains a line break"));
    }
    Ok(())
}

/// A cookie value and the mask of the bits that must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CookieMask {
    pub cookie: u64,
    pub mask: u64,
}

impl CookieMask {
    /// Exactly this cookie.
    pub fn exact(cookie: u64) -> Self {
        CookieMask {
            cookie,
            mask: u64::MAX,
        }
    }

    pub fn masked(cookie: u64, mask: u64) -> Self {
        CookieMask { cookie, mask }
    }

    pub fn matches(&self, cookie: u64) -> bool {
        (cookie ^ self.cookie) & self.mask == 0
    }

    fn to_ofctl(self) -> String {
        format!("cookie={:#x}/{:#x}", self.cookie, self.mask)
    }
}

/// Which flows to delete: those whose cookie matches, optionally only in one table and only
/// those whose match is at least as specific as `matches` (OpenFlow's non-strict delete).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowMatch {
    pub cookie: CookieMask,
    pub table: Option<u8>,
    pub matches: String,
}

impl FlowMatch {
    pub fn cookie(cookie: CookieMask) -> Self {
        FlowMatch {
            cookie,
            table: None,
            matches: String::new(),
        }
    }

    pub fn table(mut self, table: u8) -> Self {
        self.table = Some(table);
        self
    }

    pub fn matches(mut self, matches: impl Into<String>) -> Self {
        self.matches = matches.into();
        self
    }

    /// The match as one line of `ovs-ofctl del-flows` input.
    pub fn to_ofctl(&self) -> String {
        let mut line = self.cookie.to_ofctl();
        if let Some(table) = self.table {
            let _ = write!(line, ",table={table}");
        }
        if !self.matches.is_empty() {
            let _ = write!(line, ",{}", self.matches);
        }
        line
    }
}

/// A flow as the switch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    pub cookie: u64,
    pub table: u8,
    pub priority: u16,
    /// The match as OVS prints it (normalised: `ip,nw_dst=10.0.0.1`, prerequisites first).
    pub matches: String,
    /// The actions as OVS prints them (e.g. `NORMAL`, `resubmit(,1)`).
    pub actions: String,
    pub n_packets: u64,
    pub n_bytes: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// How long the flow has been installed.
    pub duration: Duration,
}

/// A meter as the switch reports it (`ovs-ofctl dump-meters`): its first band's rate and burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterConfig {
    pub id: u32,
    /// The band's rate (kbps for a `kbps` meter, packets per second for a `pktps` one).
    pub rate: u64,
    /// The band's burst size (0 when the meter has no `burst` flag).
    pub burst: u64,
}

/// Programs OpenFlow flows into bridges. Every call is atomic: all its flows apply, or none.
#[async_trait]
pub trait FlowProgrammer: Send + Sync {
    /// Adds flows; a flow with the same table, priority and match as an existing one replaces it.
    async fn add_flows(&self, bridge: &str, flows: &[Flow]) -> Result<(), FlowError>;

    /// Deletes every flow matched by any of `matches`.
    async fn del_flows(&self, bridge: &str, matches: &[FlowMatch]) -> Result<(), FlowError>;

    /// Replaces every flow with exactly this cookie by `flows`, in one atomic step (packets
    /// never see a state with the old flows gone and the new ones missing). Every flow must
    /// carry `cookie`.
    async fn replace_flows_for_cookie(
        &self,
        bridge: &str,
        cookie: u64,
        flows: &[Flow],
    ) -> Result<(), FlowError>;

    /// Replaces the flows of several cookies (an empty set deletes that cookie's flows) in one
    /// atomic step: packets see either all the old flows or all the new ones.
    async fn replace_flow_sets(
        &self,
        bridge: &str,
        sets: &[(u64, Vec<Flow>)],
    ) -> Result<(), FlowError>;

    /// Creates or changes meter `id`: drop what exceeds `kbps` kilobits per second, with a
    /// burst of `burst_kbits` kilobits. Flows that use the meter keep it across a change.
    async fn set_meter(
        &self,
        bridge: &str,
        id: u32,
        kbps: u64,
        burst_kbits: u64,
    ) -> Result<(), FlowError>;

    /// Deletes meter `id` (and, as OpenFlow does, any flow still using it). Absent is fine.
    async fn del_meter(&self, bridge: &str, id: u32) -> Result<(), FlowError>;

    /// Deletes the connection-tracking entries of conntrack zone `zone` whose original
    /// direction matches `orig_tuple` (a partial tuple such as `ct_nw_src=10.1.2.3`).
    async fn flush_conntrack(
        &self,
        bridge: &str,
        zone: u16,
        orig_tuple: &str,
    ) -> Result<(), FlowError>;

    /// Every meter of the bridge (after a restart, to remove those nobody wants any more).
    async fn dump_meters(&self, bridge: &str) -> Result<Vec<MeterConfig>, FlowError>;

    /// The bridge's flows, or only those whose cookie matches `filter`.
    async fn dump_flows(
        &self,
        bridge: &str,
        filter: Option<CookieMask>,
    ) -> Result<Vec<FlowStats>, FlowError>;

    /// Connections made to the switch so far, over all bridges (for metrics: more than one per
    /// bridge means reconnects). Programmers that keep no connection say 0.
    fn connections(&self) -> u64 {
        0
    }
}

/// A [`FlowProgrammer`] that runs `ovs-ofctl`, one process and one OpenFlow 1.4 bundle per call.
/// The bridge must allow `OpenFlow14` in its `protocols`, since bundles need it.
#[derive(Debug, Clone)]
pub struct OfctlProgrammer {
    rundir: PathBuf,
    program: PathBuf,
    timeout: Duration,
}

impl OfctlProgrammer {
    /// Talks to each bridge through its management socket `<rundir>/<bridge>.mgmt`; `rundir` is
    /// ovs-vswitchd's run directory (`/var/run/openvswitch`, or `$OVS_RUNDIR`).
    pub fn new(rundir: impl Into<PathBuf>) -> Self {
        OfctlProgrammer {
            rundir: rundir.into(),
            program: PathBuf::from("ovs-ofctl"),
            timeout: Duration::from_secs(30),
        }
    }

    /// Runs this binary instead of `ovs-ofctl` from `PATH`.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Kills ovs-ofctl if a call takes longer than this.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The ovs-ofctl target of a bridge: `unix:<rundir>/<bridge>.mgmt`.
    pub fn target(&self, bridge: &str) -> String {
        format!("unix:{}", self.mgmt_socket(bridge).display())
    }

    pub fn mgmt_socket(&self, bridge: &str) -> PathBuf {
        self.rundir.join(format!("{bridge}.mgmt"))
    }

    pub fn rundir(&self) -> &Path {
        &self.rundir
    }

    /// Waits until ovs-vswitchd has opened the bridge's management socket, which it does once
    /// it has set up a newly created bridge. Flow calls made earlier fail to connect.
    pub async fn wait_for_bridge(&self, bridge: &str, timeout: Duration) -> Result<(), FlowError> {
        let socket = self.mgmt_socket(bridge);
        let deadline = tokio::time::Instant::now() + timeout;
        // The socket's file appears when ovs-vswitchd binds it, a moment before it listens
        // (a connection in between is refused): ready once a connection is accepted.
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                return Err(FlowError::NotReady {
                    bridge: bridge.to_string(),
                    socket,
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Runs `ovs-ofctl -O OpenFlow14 <args..> <target> <extra..>`, feeding `stdin`; returns
    /// stdout.
    async fn run(
        &self,
        action: &str,
        bridge: &str,
        args: &[&str],
        extra: &[&str],
        stdin: Option<String>,
    ) -> Result<String, FlowError> {
        let target = self.target(bridge);
        // --no-names: flows name ports by number only. Without it ovs-ofctl first fetches the
        // switch's port descriptions (and table features) to resolve names, which costs
        // ovs-vswitchd ~5 ms of CPU per call and grows with the ports (BENCHMARKS.md, issue 4).
        let mut argv: Vec<&str> = vec!["-O", "OpenFlow14", "--no-names"];
        argv.extend_from_slice(args);
        argv.push(&target);
        argv.extend_from_slice(extra);
        let command = format!("{} {}", self.program.display(), argv.join(" "));
        let spawn_error = |source| FlowError::Spawn {
            action: action.to_string(),
            bridge: bridge.to_string(),
            command: command.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(&argv)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out call drops the future; the process must not outlive it.
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let pipe = child.stdin.take();
        let feed = async move {
            if let (Some(input), Some(mut pipe)) = (stdin, pipe) {
                // A write error means ovs-ofctl exited early; its stderr says why.
                let _ = pipe.write_all(input.as_bytes()).await;
            }
        };
        // Feed stdin while collecting the output, so that neither side can fill a pipe and
        // wait for the other.
        let work = async { tokio::join!(feed, child.wait_with_output()).1 };
        let output = match tokio::time::timeout(self.timeout, work).await {
            Err(_) => {
                return Err(FlowError::Timeout {
                    action: action.to_string(),
                    bridge: bridge.to_string(),
                    command,
                    timeout: self.timeout,
                });
            }
            Ok(result) => result.map_err(spawn_error)?,
        };
        if !output.status.success() {
            return Err(FlowError::Command {
                action: action.to_string(),
                bridge: bridge.to_string(),
                command,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    async fn bundle(
        &self,
        action: &str,
        bridge: &str,
        subcommand: &str,
        lines: Vec<String>,
    ) -> Result<(), FlowError> {
        let mut input = lines.join("\n");
        input.push('\n');
        self.run(
            action,
            bridge,
            &["--bundle", subcommand],
            &["-"],
            Some(input),
        )
        .await
        .map(drop)
    }
}

impl OfctlProgrammer {
    /// One bundle that swaps the flows of every cookie in `sets` (an empty set deletes). Every
    /// flow must carry its set's cookie.
    async fn replace_sets(
        &self,
        action: &str,
        bridge: &str,
        sets: &[(u64, &[Flow])],
    ) -> Result<(), FlowError> {
        let mut lines = Vec::new();
        for (cookie, flows) in sets {
            validate_all(action, bridge, flows)?;
            if let Some(f) = flows.iter().find(|f| f.cookie != *cookie) {
                return Err(FlowError::InvalidFlow {
                    action: action.to_string(),
                    bridge: bridge.to_string(),
                    reason: format!("{}: cookie differs from {cookie:#x}", f.to_ofctl()),
                });
            }
            // add-flows accepts a command word per line; the bundle makes delete + add one step.
            lines.extend(replace_lines(*cookie, flows));
        }
        if lines.is_empty() {
            return Ok(());
        }
        self.bundle(action, bridge, "add-flows", lines).await
    }
}

fn validate_all(action: &str, bridge: &str, flows: &[Flow]) -> Result<(), FlowError> {
    for flow in flows {
        flow.validate().map_err(|reason| FlowError::InvalidFlow {
            action: action.to_string(),
            bridge: bridge.to_string(),
            reason,
        })?;
    }
    Ok(())
}

/// The `ovs-ofctl --bundle add-flows` input that atomically swaps the flows of one cookie.
fn replace_lines(cookie: u64, flows: &[Flow]) -> Vec<String> {
    let mut lines = vec![format!("delete {}", CookieMask::exact(cookie).to_ofctl())];
    lines.extend(flows.iter().map(|f| format!("add {}", f.to_ofctl())));
    lines
}

#[async_trait]
impl FlowProgrammer for OfctlProgrammer {
    async fn add_flows(&self, bridge: &str, flows: &[Flow]) -> Result<(), FlowError> {
        let action = format!("add {} flows", flows.len());
        validate_all(&action, bridge, flows)?;
        if flows.is_empty() {
            return Ok(());
        }
        let lines = flows.iter().map(Flow::to_ofctl).collect();
        self.bundle(&action, bridge, "add-flows", lines).await
    }

    async fn del_flows(&self, bridge: &str, matches: &[FlowMatch]) -> Result<(), FlowError> {
        let action = "delete flows";
        for m in matches {
            no_newline(&m.matches).map_err(|reason| FlowError::InvalidFlow {
                action: action.to_string(),
                bridge: bridge.to_string(),
                reason,
            })?;
        }
        if matches.is_empty() {
            return Ok(());
        }
        let lines = matches.iter().map(FlowMatch::to_ofctl).collect();
        self.bundle(action, bridge, "del-flows", lines).await
    }

    async fn replace_flows_for_cookie(
        &self,
        bridge: &str,
        cookie: u64,
        flows: &[Flow],
    ) -> Result<(), FlowError> {
        let action = format!("replace flows with cookie {cookie:#x}");
        self.replace_sets(&action, bridge, &[(cookie, flows)]).await
    }

    async fn replace_flow_sets(
        &self,
        bridge: &str,
        sets: &[(u64, Vec<Flow>)],
    ) -> Result<(), FlowError> {
        let action = format!("replace the flows of {} cookies", sets.len());
        let sets: Vec<(u64, &[Flow])> = sets.iter().map(|(c, f)| (*c, f.as_slice())).collect();
        self.replace_sets(&action, bridge, &sets).await
    }

    async fn set_meter(
        &self,
        bridge: &str,
        id: u32,
        kbps: u64,
        burst_kbits: u64,
    ) -> Result<(), FlowError> {
        let spec = format!(
            "meter={id},kbps,burst,band=type=drop,rate={kbps},burst_size={}",
            burst_kbits.max(1)
        );
        let action = format!("set meter {id}");
        // mod-meter keeps the flows that use the meter; it fails when the meter is new.
        match self
            .run(&action, bridge, &["mod-meter"], &[&spec], None)
            .await
        {
            Ok(_) => Ok(()),
            Err(_) => self
                .run(&action, bridge, &["add-meter"], &[&spec], None)
                .await
                .map(drop),
        }
    }

    async fn del_meter(&self, bridge: &str, id: u32) -> Result<(), FlowError> {
        let spec = format!("meter={id}");
        self.run(
            &format!("delete meter {id}"),
            bridge,
            &["del-meter"],
            &[&spec],
            None,
        )
        .await
        .map(drop)
    }

    async fn flush_conntrack(
        &self,
        bridge: &str,
        zone: u16,
        orig_tuple: &str,
    ) -> Result<(), FlowError> {
        let action = format!("flush conntrack zone {zone} {orig_tuple}");
        no_newline(orig_tuple).map_err(|reason| FlowError::InvalidFlow {
            action: action.clone(),
            bridge: bridge.to_string(),
            reason,
        })?;
        let zone = format!("zone={zone}");
        self.run(&action, bridge, &["ct-flush"], &[&zone, orig_tuple], None)
            .await
            .map(drop)
    }

    async fn dump_meters(&self, bridge: &str) -> Result<Vec<MeterConfig>, FlowError> {
        let out = self
            .run("dump meters", bridge, &["dump-meters"], &[], None)
            .await?;
        parse_dump_meters(&out).map_err(|(line, reason)| FlowError::Parse {
            bridge: bridge.to_string(),
            line,
            reason,
        })
    }

    async fn dump_flows(
        &self,
        bridge: &str,
        filter: Option<CookieMask>,
    ) -> Result<Vec<FlowStats>, FlowError> {
        let filter = filter.map(CookieMask::to_ofctl);
        let out = self
            .run(
                "dump flows",
                bridge,
                &["dump-flows"],
                filter.as_deref().as_slice(),
                None,
            )
            .await?;
        parse_dump_flows(&out).map_err(|(line, reason)| FlowError::Parse {
            bridge: bridge.to_string(),
            line,
            reason,
        })
    }
}

/// Parses `ovs-ofctl dump-meters` output: a `meter=N <flags> bands=` line per meter, followed
/// by its bands (`type=drop rate=R [burst_size=B]`); only the first band is kept. The header
/// (`OFPST_METER_CONFIG reply ...`) and blank lines are skipped. On failure returns the
/// offending line and the reason.
pub fn parse_dump_meters(output: &str) -> Result<Vec<MeterConfig>, (String, String)> {
    let mut meters: Vec<MeterConfig> = Vec::new();
    let mut banded = false;
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("meter=") {
            let id = rest.split_whitespace().next().unwrap_or("");
            let id = id
                .parse()
                .map_err(|_| (line.to_string(), format!("bad meter id {id:?}")))?;
            meters.push(MeterConfig {
                id,
                rate: 0,
                burst: 0,
            });
            banded = false;
        } else if line.starts_with("type=") && !banded {
            let Some(m) = meters.last_mut() else {
                return Err((line.to_string(), "a band before any meter".into()));
            };
            for (k, v) in line.split_whitespace().filter_map(|t| t.split_once('=')) {
                let num = || {
                    v.parse::<u64>()
                        .map_err(|_| (line.to_string(), format!("bad {k} {v:?}")))
                };
                match k {
                    "rate" => m.rate = num()?,
                    "burst_size" => m.burst = num()?,
                    _ => {}
                }
            }
            banded = true;
        }
    }
    Ok(meters)
}

/// Parses `ovs-ofctl dump-flows` output. Header lines (`OFPST_FLOW reply ...`) are skipped.
/// On failure returns the offending line and the reason.
pub fn parse_dump_flows(output: &str) -> Result<Vec<FlowStats>, (String, String)> {
    output
        .lines()
        .filter(|l| l.starts_with(' ') && !l.trim().is_empty())
        .map(|l| parse_flow_line(l.trim()).map_err(|reason| (l.to_string(), reason)))
        .collect()
}

/// Parses one flow line:
/// `cookie=0x5, duration=0.006s, table=0, n_packets=0, n_bytes=0, idle_timeout=30, priority=100,ip actions=drop`.
/// The statistics come first as `key=value, ` (flags such as `send_flow_rem` as bare words);
/// the first token that is not a known statistic starts the match.
fn parse_flow_line(line: &str) -> Result<FlowStats, String> {
    let (head, actions) = line
        .split_once(" actions=")
        .or_else(|| line.strip_prefix("actions=").map(|a| ("", a)))
        .ok_or("no actions")?;
    let mut stats = FlowStats {
        cookie: 0,
        table: 0,
        priority: DEFAULT_PRIORITY,
        matches: String::new(),
        actions: actions.to_string(),
        n_packets: 0,
        n_bytes: 0,
        idle_timeout: 0,
        hard_timeout: 0,
        duration: Duration::ZERO,
    };
    let mut rest = head.trim_start();
    loop {
        let end = rest.find([',', ' ']).unwrap_or(rest.len());
        let token = &rest[..end];
        let (key, value) = token.split_once('=').unwrap_or((token, ""));
        let num = |v: &str| -> Result<u64, String> {
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.map_err(|_| format!("bad {key} {v:?}"))
        };
        let narrow = |v: u64| -> Result<u16, String> {
            u16::try_from(v).map_err(|_| format!("{key} {v} out of range"))
        };
        match key {
            "cookie" => stats.cookie = num(value)?,
            "table" => stats.table = u8::try_from(num(value)?).map_err(|_| "table out of range")?,
            "n_packets" => stats.n_packets = num(value)?,
            "n_bytes" => stats.n_bytes = num(value)?,
            "idle_timeout" => stats.idle_timeout = narrow(num(value)?)?,
            "hard_timeout" => stats.hard_timeout = narrow(num(value)?)?,
            "duration" => {
                let secs: f64 = value
                    .strip_suffix('s')
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad duration {value:?}"))?;
                stats.duration = Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())?;
            }
            // Statistics and flags we do not keep.
            "idle_age" | "hard_age" | "importance" | "send_flow_rem" | "check_overlap"
            | "reset_counts" | "no_packet_counts" | "no_byte_counts" => {}
            _ => break,
        }
        rest = rest[end..].trim_start_matches([',', ' ']);
        if rest.is_empty() {
            break;
        }
    }
    let rest = rest.trim_end_matches(',');
    let matches = match rest.strip_prefix("priority=") {
        Some(p) => {
            let (prio, m) = p.split_once(',').unwrap_or((p, ""));
            stats.priority = prio.parse().map_err(|_| format!("bad priority {prio:?}"))?;
            m
        }
        None => rest,
    };
    stats.matches = matches.to_string();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
OFPST_FLOW reply (OF1.4) (xid=0x2):
 cookie=0x5, duration=0.006s, table=0, n_packets=0, n_bytes=0, priority=100,ip,nw_dst=10.0.0.1 actions=output:1
 cookie=0x6, duration=12.5s, table=0, n_packets=17, n_bytes=1666, priority=10,in_port=1 actions=resubmit(,1)
 cookie=0x5, duration=0.006s, table=1, n_packets=0, n_bytes=0, actions=drop
 cookie=0x7, duration=0.006s, table=2, n_packets=0, n_bytes=0, idle_timeout=30, priority=5,tcp,tp_dst=80 actions=learn(table=3,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),NORMAL
 cookie=0x0, duration=0.004s, table=4, n_packets=0, n_bytes=0, hard_timeout=100, send_flow_rem reset_counts importance=3, priority=1 actions=drop
 cookie=0xffffffffffffffff, duration=0.004s, table=253, n_packets=0, n_bytes=0, idle_age=3, priority=0 actions=drop
";

    #[test]
    fn parses_dump_flows() {
        insta::assert_debug_snapshot!(parse_dump_flows(DUMP).unwrap());
    }

    #[test]
    fn parses_dump_meters() {
        let out = "\
OFPST_METER_CONFIG reply (OF1.4) (xid=0x2):
meter=5 kbps burst bands=
type=drop rate=1000 burst_size=100

meter=12 kbps bands=
type=drop rate=2000
type=drop rate=9000
";
        assert_eq!(
            parse_dump_meters(out).unwrap(),
            [
                MeterConfig {
                    id: 5,
                    rate: 1000,
                    burst: 100
                },
                MeterConfig {
                    id: 12,
                    rate: 2000,
                    burst: 0
                }
            ]
        );
        assert!(parse_dump_meters("meter=x kbps bands=\n").is_err());
        assert!(
            parse_dump_meters("OFPST_METER_CONFIG reply\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn rejects_lines_without_actions() {
        let err = parse_dump_flows(" cookie=0x5, duration=0.006s, table=0\n").unwrap_err();
        assert_eq!(err.1, "no actions");
    }

    #[test]
    fn flow_lines() {
        let flows = [
            Flow::new(0, 100, "ip,nw_dst=10.0.0.1", "output:1").cookie(0x5),
            Flow::new(1, 0, "", "drop").cookie(0x5),
            Flow::new(2, 5, "tcp,tp_dst=80", "NORMAL")
                .cookie(0x7)
                .idle_timeout(30)
                .hard_timeout(60),
        ];
        let lines: Vec<String> = flows.iter().map(Flow::to_ofctl).collect();
        insta::assert_debug_snapshot!(lines);
        insta::assert_debug_snapshot!("replace", replace_lines(0x5, &flows[..2]));
        assert_eq!(
            FlowMatch::cookie(CookieMask::masked(0x500, 0xff00))
                .table(3)
                .matches("ip")
                .to_ofctl(),
            "cookie=0x500/0xff00,table=3,ip"
        );
    }

    #[test]
    fn rejects_flows_that_would_break_the_batch() {
        assert!(
            Flow::new(0, 1, "ip\nactions=drop", "drop")
                .validate()
                .is_err()
        );
        assert!(Flow::new(0, 1, "ip", "").validate().is_err());
    }

    #[test]
    fn cookie_masks() {
        assert!(CookieMask::exact(5).matches(5));
        assert!(!CookieMask::exact(5).matches(6));
        assert!(CookieMask::masked(0x500, 0xff00).matches(0x5ab));
    }
}
