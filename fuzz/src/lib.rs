//! Fuzz targets for every parser of the project that reads bytes from another program, and the
//! machinery that runs them on stable Rust (no libFuzzer, no coverage): a seeded, structure-aware
//! [`mutate::Mutator`], and [`runner`], which runs a target in a worker process for a set time,
//! catches panics, and recovers the input that killed or hung a worker.
//!
//! A target is a function from bytes to "accepted or not" that must never panic; where it means
//! something, it also checks a property of what it accepted (a decode/encode round trip, two
//! decoders agreeing) with an assertion, so a broken property counts as a crash.
//! `cargo run --release -p fuzz --bin contiv-fuzz -- all --seconds 60` runs them all;
//! docs/fuzzing.md has the figures.

pub mod mutate;
pub mod rng;
pub mod runner;
pub mod targets;

use mutate::{Mutator, Shape};

/// One parser under test.
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    pub shape: Shape,
    /// Valid inputs from real examples; every one is accepted.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Words the mutator inserts: field names and values with meaning to this parser.
    pub words: &'static [&'static str],
    /// Runs one input. Returns whether the parser accepted it; panics on a bug.
    pub run: fn(&[u8]) -> bool,
}

impl Target {
    pub fn mutator(&self) -> Mutator {
        Mutator::new(self.shape, (self.seeds)(), self.words)
    }
}

use targets::{cni, docker, master, ovs};

/// Every target, in the order `all` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "cni-netconf",
        about: "CNI network config on stdin: the shim's load_config for every verb, NetConf::from_slice, prevResult, VERSION's stdin",
        shape: Shape::Json,
        seeds: cni::netconf_seeds,
        words: cni::NETCONF_WORDS,
        run: cni::netconf,
    },
    Target {
        name: "cni-env",
        about: "CNI_* environment variables: Invocation::from_env and CNI_ARGS",
        shape: Shape::Text,
        seeds: cni::env_seeds,
        words: cni::ENV_WORDS,
        run: cni::env,
    },
    Target {
        name: "cni-result",
        about: "CNI results of every spec version: parse_result, render_result",
        shape: Shape::Json,
        seeds: cni::result_seeds,
        words: cni::RESULT_WORDS,
        run: cni::result,
    },
    Target {
        name: "cni-wire",
        about: "shim -> agent request body: wire::decode_request at every path",
        shape: Shape::Json,
        seeds: cni::agent_request_seeds,
        words: cni::AGENT_REQUEST_WORDS,
        run: cni::agent_request,
    },
    Target {
        name: "cni-http",
        about: "the shim's HTTP/1.1 response parser: client::parse_response",
        shape: Shape::Text,
        seeds: cni::http_seeds,
        words: cni::HTTP_WORDS,
        run: cni::http_response,
    },
    Target {
        name: "rest",
        about: "netmaster REST bodies: ops::parse_object for the 12 object kinds, ops::parse_body for node registration, rule stats, endpoint requests",
        shape: Shape::Json,
        seeds: master::seeds,
        words: master::WORDS,
        run: master::rest,
    },
    Target {
        name: "docker",
        about: "Docker network and IPAM driver request bodies: docker_driver::decode for every call",
        shape: Shape::Json,
        seeds: docker::seeds,
        words: docker::WORDS,
        run: docker::wire,
    },
    Target {
        name: "ovsdb",
        about: "OVSDB JSON-RPC stream: FrameDecoder, Incoming::classify, transact replies, monitor updates, Row/Datum",
        shape: Shape::JsonStream,
        seeds: ovs::ovsdb_seeds,
        words: ovs::OVSDB_WORDS,
        run: ovs::ovsdb,
    },
    Target {
        name: "openflow",
        about: "OpenFlow messages from the switch: header framing and classification (errors, echo, replies)",
        shape: Shape::OpenFlow,
        seeds: ovs::openflow_seeds,
        words: &[],
        run: ovs::openflow,
    },
    Target {
        name: "ofctl-dump",
        about: "ovs-ofctl dump-flows and dump-meters output",
        shape: Shape::Text,
        seeds: ovs::ofctl_seeds,
        words: ovs::OFCTL_WORDS,
        run: ovs::ofctl_dump,
    },
];

/// A target by name; also finds [`SELFTEST`], which `all` does not run.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS
        .iter()
        .chain(std::iter::once(&SELFTEST))
        .find(|t| t.name == name)
}

/// A target that fails on purpose, so that the tests can check that the driver finds and saves
/// what kills or hangs a worker: inputs holding `PANIC` panic, holding `OVERFLOW` overflow the
/// stack, starting with `HANG` never return when their length is a multiple of 3 (not all of them, or the
/// test would spend its time waiting out hangs).
#[doc(hidden)]
pub const SELFTEST: Target = Target {
    name: "selftest",
    about: "fails on purpose (tests of the driver)",
    shape: Shape::Text,
    seeds: || {
        vec![
            b"fine".to_vec(),
            b"PANIC".to_vec(),
            b"OVERFLOW".to_vec(),
            b"HANG".to_vec(),
        ]
    },
    words: &[],
    run: |data| {
        fn deeper(n: u64) -> u64 {
            if n == u64::MAX {
                return 0;
            }
            let pad = std::hint::black_box([n; 64]);
            deeper(pad[(n % 64) as usize] + 1) + pad[0]
        }
        let holds = |word: &[u8]| data.windows(word.len()).any(|w| w == word);
        if holds(b"PANIC") {
            panic!("selftest panic");
        }
        if holds(b"OVERFLOW") {
            return deeper(std::hint::black_box(0)) > 0;
        }
        if data.starts_with(b"HANG") && data.len() % 3 == 0 {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        true
    },
};
