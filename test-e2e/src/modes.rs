//! The attachment mode the suites run in. `CONTIV_E2E_TRUNKS=1` boots every agent with network
//! trunks and `CONTIV_E2E_PORT_POOL=N` with a port pool (see `Host::boot`); a test that checks
//! something only a dedicated veth per pod has (its host end `vc...`, its OVS port, the
//! graveyard) says so and is skipped in those modes, visibly, rather than failing.

use std::fmt::Debug;
use std::io::Write;
use std::time::{Duration, Instant};

/// Whether the agents run with network trunks (`CONTIV_E2E_TRUNKS=1`, no port pool asked).
/// Agents booted with `--port-pool` or `--trunks` by a test keep what the test asked.
pub fn trunks() -> bool {
    std::env::var("CONTIV_E2E_TRUNKS").is_ok_and(|v| v == "1") && port_pool().is_none()
}

/// The port pool every agent runs with (`CONTIV_E2E_PORT_POOL=N`), if any.
pub fn port_pool() -> Option<String> {
    std::env::var("CONTIV_E2E_PORT_POOL").ok()
}

/// True (and says so on stderr) when the agents run with network trunks: `test`, or the part
/// of it named so, checks something only a veth per pod has (`why`), and is to be skipped.
pub fn skip_unless_veth_ports(test: &str, why: &str) -> bool {
    if trunks() {
        say(&format!(
            "SKIPPED in trunk mode (CONTIV_E2E_TRUNKS=1): {test}: {why}"
        ));
        return true;
    }
    false
}

/// True (and says so on stderr) when the agents do not give every pod a veth of its own made
/// at its ADD: in trunk mode as [`skip_unless_veth_ports`], and with a port pool, whose veths
/// (`vp...`) wait made in advance (`why_pool`).
pub fn skip_unless_own_veths(test: &str, why_trunks: &str, why_pool: &str) -> bool {
    skip_unless_veth_ports(test, why_trunks) || skip_in_pool_mode(test, why_pool)
}

/// True (and says so on stderr) when the agents run with a port pool: `test`, or the part of
/// it named so, depends on which ports are on the switch, and a pool keeps spare ports made in
/// advance and refills them when it likes (`why`).
pub fn skip_in_pool_mode(test: &str, why: &str) -> bool {
    if let Some(n) = port_pool() {
        say(&format!(
            "SKIPPED in port-pool mode (CONTIV_E2E_PORT_POOL={n}): {test}: {why}"
        ));
        return true;
    }
    false
}

/// Writes `line` to stderr past the test harness's capture (which keeps a passing test's
/// `eprintln!` to itself), so that a skip shows in every run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `now()`, once it equals `expected`: in trunk mode a network's trunk stays until it has
/// served no pod for `--trunk-idle` (1 s in the suites), so what a host is left with after
/// its last pod of a network goes (or a failed ADD, which makes the trunk while netmaster
/// allocates) takes that long to come back; waits up to 15 s for it. In the other modes,
/// `now()` at once (what the harness's own waiting gives).
pub fn settled<T: PartialEq + Debug>(expected: &T, mut now: impl FnMut() -> T) -> T {
    let mut v = now();
    if !trunks() {
        return v;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while v != *expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        v = now();
    }
    v
}
