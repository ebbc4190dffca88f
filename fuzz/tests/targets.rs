//! Every target over its seeds and a few thousand fixed mutations (the same inputs on every run),
//! so that CI checks that the harness builds and the parsers hold. The long runs are
//! contiv-fuzz's job (docs/fuzzing.md).

use fuzz::runner::{run_input, run_range};
use fuzz::{TARGETS, target};

/// Inputs per target: a few seconds for all of them in a debug build (contiv-fuzz runs
/// thousands per second in a release build).
const INPUTS: u64 = 400;
const SEED: u64 = 0x5eed;

fn check(name: &str) {
    let t = target(name).unwrap();
    for (i, seed) in (t.seeds)().iter().enumerate() {
        assert_eq!(
            run_input(t, seed),
            Ok(true),
            "{name}: seed {i} ({}) is a valid input and must be accepted",
            String::from_utf8_lossy(seed)
        );
    }
    let tally = run_range(t, SEED, 0, INPUTS);
    assert_eq!(tally.inputs, INPUTS);
    assert!(tally.panics.is_empty(), "{name}: {:?}", tally.panics);
    // Mutated inputs reach the typed decoders, not only the syntax check.
    assert!(
        tally.accepted * 50 > INPUTS,
        "{name}: only {} of {INPUTS} mutated inputs accepted",
        tally.accepted
    );
}

#[test]
fn every_target_has_a_test() {
    let tested = [
        "cni-netconf",
        "cni-env",
        "cni-result",
        "cni-wire",
        "cni-http",
        "rest",
        "docker",
        "ovsdb",
        "openflow",
        "ofctl-dump",
    ];
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, tested);
}

#[test]
fn cni_netconf() {
    check("cni-netconf");
}

#[test]
fn cni_env() {
    check("cni-env");
}

#[test]
fn cni_result() {
    check("cni-result");
}

#[test]
fn cni_wire() {
    check("cni-wire");
}

#[test]
fn cni_http() {
    check("cni-http");
}

#[test]
fn rest() {
    check("rest");
}

#[test]
fn docker() {
    check("docker");
}

#[test]
fn ovsdb() {
    check("ovsdb");
}

#[test]
fn openflow() {
    check("openflow");
}

#[test]
fn ofctl_dump() {
    check("ofctl-dump");
}
