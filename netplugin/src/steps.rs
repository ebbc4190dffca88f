//! Where a call's time goes. The endpoint manager and the datapath mark the end of each step of
//! an ADD or DEL; the CNI server logs the marks with the call (`CNI call done ... ms=7
//! steps=lock:0.01,master:1.20,...`), which is what `cni_bench` reads to show the agent's time
//! step by step: the real code path, not a replica of it. The same marks feed the
//! `contiv_cni_step_duration_seconds` histograms (`crate::metrics`).
//!
//! Marks made outside a recording task (the Docker driver, start-up) cost one thread-local
//! lookup and are dropped.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::Instant;

tokio::task_local! {
    static STEPS: RefCell<Recorder>;
}

struct Recorder {
    at: Instant,
    marks: Vec<(&'static str, f64)>,
}

/// The steps a call marked, in the order they ran. Displayed as `name:ms,name:ms` (ms with two
/// decimals), the log line's form that [`parse`] reads back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steps(Vec<(&'static str, f64)>);

impl Steps {
    /// Each step's name and milliseconds.
    pub fn marks(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.0.iter().copied()
    }
}

impl std::fmt::Display for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&render(&self.0))
    }
}

/// Runs `f`, recording the steps it marks; returns its output and the steps.
pub async fn record<F: Future>(f: F) -> (F::Output, Steps) {
    let rec = RefCell::new(Recorder {
        at: Instant::now(),
        marks: Vec::new(),
    });
    STEPS
        .scope(rec, async {
            let out = f.await;
            let steps = STEPS.with(|r| Steps(std::mem::take(&mut r.borrow_mut().marks)));
            (out, steps)
        })
        .await
}

/// Ends the current step, named `name`: the time since the previous mark (or the start).
pub fn mark(name: &'static str) {
    let _ = STEPS.try_with(|r| {
        let mut r = r.borrow_mut();
        let now = Instant::now();
        let ms = (now - r.at).as_secs_f64() * 1e3;
        r.at = now;
        r.marks.push((name, ms));
    });
}

fn render(marks: &[(&'static str, f64)]) -> String {
    let mut s = String::new();
    for (i, (name, ms)) in marks.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{name}:{ms:.2}");
    }
    s
}

/// Parses what [`record`] rendered; malformed pairs are skipped.
pub fn parse(s: &str) -> Vec<(&str, f64)> {
    s.split(',')
        .filter_map(|p| {
            let (name, ms) = p.split_once(':')?;
            Some((name, ms.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_marks_in_order_and_round_trips() {
        let ((), s) = record(async {
            mark("first");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            mark("second");
        })
        .await;
        let s = s.to_string();
        let p = parse(&s);
        assert_eq!(
            p.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert!(p[1].1 >= 5.0, "second step took the sleep: {s}");
    }

    #[test]
    fn marks_outside_a_recording_are_dropped() {
        mark("nowhere"); // Must not panic.
        assert_eq!(parse("a:1.5,bad,b:x,c:2"), [("a", 1.5), ("c", 2.0)]);
    }
}
