//! The driver finds and saves what panics, kills or hangs a worker, and goes on fuzzing after.

use std::time::Duration;

use fuzz::runner::{DriveArgs, drive};
use fuzz::target;

#[test]
fn finds_panics_stack_overflows_and_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let d = DriveArgs {
        exe: env!("CARGO_BIN_EXE_contiv-fuzz").into(),
        seconds: 6.0,
        seed: 3,
        crash_dir: dir.path().to_path_buf(),
        hang: Duration::from_secs(2),
        slow: Duration::from_secs(30),
    };
    let report = drive(&d, target("selftest").unwrap()).unwrap();
    assert!(report.inputs > 0);
    for (kind, prefix) in [("panic", "PANIC"), ("abort", "OVERFLOW"), ("hang", "HANG")] {
        let found: Vec<_> = report.findings.iter().filter(|f| f.kind == kind).collect();
        assert!(!found.is_empty(), "no {kind} in {:?}", report.findings);
        for f in found {
            let saved = std::fs::read(&f.file).unwrap();
            let holds = saved.windows(prefix.len()).any(|w| w == prefix.as_bytes());
            assert!(
                holds,
                "{kind} input {} saved as {:?}",
                f.index,
                String::from_utf8_lossy(&saved)
            );
        }
    }
    // Each input is reported once, though replays run some of them again.
    let mut seen: Vec<(&str, u64)> = report.findings.iter().map(|f| (f.kind, f.index)).collect();
    seen.sort();
    let n = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), n);
}
