//! Running a target: in this process with panics caught ([`run_input`], [`run_range`]), in a
//! worker process for a set time ([`worker`]), and from a driver that restarts a worker that died
//! or hung and finds the input responsible ([`drive`]).
//!
//! Input `i` depends only on the seed and `i` ([`crate::rng::Rng::for_input`]), so the driver
//! needs no copy of what a worker ran: after a worker dies (stack overflow, abort, out of memory)
//! or stops reporting (a hang), the driver runs the same indexes again in a worker that announces
//! each index before running it; the last index announced is the culprit.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Once, mpsc};
use std::time::{Duration, Instant};

use crate::Target;
use crate::mutate::Mutator;

/// The stack each input runs on: tokio's worker threads' default, where the agent, netmaster
/// and the Docker driver decode request bodies. The CNI shim's main thread has more.
pub const STACK_SIZE: usize = 2 << 20;

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: Cell<Option<String>> = const { Cell::new(None) };
}

/// Keeps the default panic output for everything but the inputs being fuzzed, whose panic
/// message and place are kept for the report instead.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let place = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                LAST_PANIC.with(|p| p.set(Some(format!("{msg} at {place}"))));
            } else {
                default(info);
            }
        }));
    });
}

/// Runs one input. `Err` holds the panic's message and place.
pub fn run_input(target: &Target, data: &[u8]) -> Result<bool, String> {
    install_hook();
    CATCHING.with(|c| c.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(data)));
    CATCHING.with(|c| c.set(false));
    r.map_err(|_| {
        LAST_PANIC
            .with(|p| p.take())
            .unwrap_or_else(|| "panic".into())
            .replace('\n', " ")
    })
}

/// Figures of a run of inputs in this process.
#[derive(Debug, Default)]
pub struct Tally {
    pub inputs: u64,
    pub accepted: u64,
    /// Index and panic message of each input that panicked.
    pub panics: Vec<(u64, String)>,
}

/// Runs inputs `start..start+count` of a run seeded with `seed`, on a [`STACK_SIZE`] stack.
pub fn run_range(target: &'static Target, seed: u64, start: u64, count: u64) -> Tally {
    std::thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let m = target.mutator();
            let mut t = Tally::default();
            for i in start..start + count {
                let data = m.input(seed, i);
                t.inputs += 1;
                match run_input(target, &data) {
                    Ok(accepted) => t.accepted += u64::from(accepted),
                    Err(msg) => t.panics.push((i, msg)),
                }
            }
            t
        })
        .expect("spawn a fuzz thread")
        .join()
        .expect("the fuzz thread catches panics")
}

/// What a worker does.
#[derive(Clone)]
pub struct WorkerArgs {
    pub target: &'static Target,
    pub seed: u64,
    pub start: u64,
    pub seconds: f64,
    /// Announce each index before running it (to find an input that kills or hangs a worker).
    pub announce: bool,
    pub crash_dir: PathBuf,
    /// Inputs slower than this are saved and reported.
    pub slow: Duration,
}

/// A worker: runs inputs from `start` until the time is up, writing one line per event to
/// `out`: `at I` (announce mode), `progress NEXT INPUTS ACCEPTED`, `panic I FILE MESSAGE`,
/// `slow I MILLIS FILE`, and `done NEXT INPUTS ACCEPTED` at the end.
pub fn worker(args: WorkerArgs, out: impl Write + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || worker_loop(args, out))?
        .join()
        .expect("the worker loop catches panics")
}

fn worker_loop(args: WorkerArgs, mut out: impl Write) -> std::io::Result<()> {
    let m = args.target.mutator();
    let started = Instant::now();
    let budget = Duration::from_secs_f64(args.seconds);
    let (mut inputs, mut accepted) = (0u64, 0u64);
    let mut last_report = Instant::now();
    let mut i = args.start;
    while started.elapsed() < budget {
        if args.announce {
            writeln!(out, "at {i}")?;
            out.flush()?;
        }
        let data = m.input(args.seed, i);
        let t0 = Instant::now();
        let r = run_input(args.target, &data);
        let took = t0.elapsed();
        inputs += 1;
        match r {
            Ok(a) => accepted += u64::from(a),
            Err(msg) => {
                let file = save(&args.crash_dir, args.target.name, "panic", i, &data)?;
                writeln!(out, "panic {i} {} {msg}", file.display())?;
            }
        }
        if took > args.slow {
            let file = save(&args.crash_dir, args.target.name, "slow", i, &data)?;
            writeln!(out, "slow {i} {} {}", took.as_millis(), file.display())?;
        }
        i += 1;
        if last_report.elapsed() > Duration::from_millis(100) {
            writeln!(out, "progress {i} {inputs} {accepted}")?;
            out.flush()?;
            last_report = Instant::now();
        }
    }
    writeln!(out, "done {i} {inputs} {accepted}")?;
    out.flush()
}

/// Saves an input that found something: `<dir>/<target>-<kind>-<index>.bin`.
pub fn save(
    dir: &Path,
    target: &str,
    kind: &str,
    index: u64,
    data: &[u8],
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{target}-{kind}-{index}.bin"));
    std::fs::write(&path, data)?;
    Ok(path)
}

/// Something a run found.
#[derive(Clone, Debug)]
pub struct Finding {
    /// `panic`, `abort` (the worker died: stack overflow, out of memory...), `hang`, `slow`.
    pub kind: &'static str,
    pub index: u64,
    pub file: PathBuf,
    pub detail: String,
}

/// The figures of one target's run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub target: &'static str,
    pub seconds: f64,
    pub inputs: u64,
    pub accepted: u64,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn crashes(&self) -> usize {
        self.findings.iter().filter(|f| f.kind != "slow").count()
    }
}

/// How the driver runs workers.
#[derive(Clone, Debug)]
pub struct DriveArgs {
    /// This program (it runs itself with `worker`).
    pub exe: PathBuf,
    pub seconds: f64,
    pub seed: u64,
    pub crash_dir: PathBuf,
    /// A worker silent this long is hung.
    pub hang: Duration,
    pub slow: Duration,
}

enum Event {
    Line(String),
    Ended,
}

struct Run {
    child: std::process::Child,
    events: mpsc::Receiver<Event>,
    stderr: std::thread::JoinHandle<String>,
}

fn spawn(
    d: &DriveArgs,
    target: &Target,
    start: u64,
    seconds: f64,
    announce: bool,
) -> std::io::Result<Run> {
    let mut cmd = Command::new(&d.exe);
    cmd.arg("worker")
        .arg(target.name)
        .args(["--seed", &d.seed.to_string()])
        .args(["--start", &start.to_string()])
        .args(["--seconds", &format!("{seconds:.3}")])
        .args(["--slow-ms", &d.slow.as_millis().to_string()])
        .arg("--crash-dir")
        .arg(&d.crash_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if announce {
        cmd.arg("--announce");
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (tx, events) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(Event::Line(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Event::Ended);
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    Ok(Run {
        child,
        events,
        stderr,
    })
}

/// How a worker's run ended.
enum End {
    /// `done`: the time is up.
    Done,
    /// The worker died; `last` is the last index it announced (announce mode).
    Died {
        status: String,
        stderr: String,
        last: Option<u64>,
    },
    Hung {
        last: Option<u64>,
    },
}

/// Follows a worker's lines into `report`; returns how it ended and the next index to run.
fn follow(d: &DriveArgs, target: &Target, run: Run, report: &mut Report, next: &mut u64) -> End {
    let Run {
        mut child,
        events,
        stderr,
    } = run;
    let mut last_at = None;
    let start = *next;
    let base_accepted = report.accepted;
    let end = loop {
        match events.recv_timeout(d.hang) {
            Ok(Event::Line(line)) => {
                let mut parts = line.splitn(4, ' ');
                let word = parts.next().unwrap_or("");
                let mut num = || {
                    parts
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                match word {
                    "at" => {
                        let i = num();
                        last_at = Some(i);
                        *next = i + 1;
                    }
                    "progress" | "done" => {
                        *next = num();
                        let _inputs = num();
                        report.accepted = base_accepted + num();
                        if word == "done" {
                            break End::Done;
                        }
                    }
                    "panic" | "slow" => {
                        let index = num();
                        let rest: Vec<&str> = line.splitn(4, ' ').skip(2).collect();
                        let (file, detail) = if word == "panic" {
                            (rest[0].to_string(), rest.get(1).unwrap_or(&"").to_string())
                        } else {
                            let (ms, file) = (rest[0], rest.get(1).unwrap_or(&""));
                            (file.to_string(), format!("{ms} ms"))
                        };
                        // A replay runs some indexes again: report each input once.
                        let kind = if word == "panic" { "panic" } else { "slow" };
                        if !report
                            .findings
                            .iter()
                            .any(|f| f.kind == kind && f.index == index)
                        {
                            report.findings.push(Finding {
                                kind,
                                index,
                                file: file.into(),
                                detail,
                            });
                        }
                    }
                    _ => {}
                }
            }
            Ok(Event::Ended) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                let stderr = stderr.join().unwrap_or_default();
                let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                break End::Died {
                    status,
                    stderr: tail,
                    last: last_at,
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Our own child: end it by its handle.
                let _ = child.kill();
                let _ = child.wait();
                break End::Hung { last: last_at };
            }
        }
    };
    if matches!(end, End::Done) {
        let _ = child.wait();
    }
    // Indexes run one after another: what ran is what lies between the start and the last
    // index the worker reported (an input that killed the worker counts as run).
    report.inputs += *next - start;
    let _ = target;
    end
}

/// Runs `target` for `d.seconds` in worker processes and collects the figures and findings.
pub fn drive(d: &DriveArgs, target: &'static Target) -> std::io::Result<Report> {
    let mut report = Report {
        target: target.name,
        ..Report::default()
    };
    let started = Instant::now();
    let mutator: Mutator = target.mutator();
    let mut next = 0u64;
    loop {
        let left = d.seconds - started.elapsed().as_secs_f64();
        if left <= 0.05 {
            break;
        }
        let run = spawn(d, target, next, left, false)?;
        let (kind, detail) = match follow(d, target, run, &mut report, &mut next) {
            End::Done => break,
            End::Died { status, stderr, .. } => ("abort", format!("{status}: {stderr}")),
            End::Hung { .. } => ("hang", format!("no progress for {:?}", d.hang)),
        };
        // Find the input: the same indexes again, each announced before it runs, from the last
        // index the worker reported (its progress lines lag).
        let budget = left.max(1.0) + 2.0 * d.hang.as_secs_f64();
        let replay = spawn(d, target, next, budget, true)?;
        let found = match follow(d, target, replay, &mut report, &mut next) {
            End::Died {
                last,
                status,
                stderr,
            } => last.map(|i| (i, format!("{status}: {stderr}"))),
            End::Hung { last } => last.map(|i| (i, detail.clone())),
            End::Done => None,
        };
        match found {
            Some((index, detail)) => {
                let data = mutator.input(d.seed, index);
                let file = save(&d.crash_dir, target.name, kind, index, &data)?;
                report.findings.push(Finding {
                    kind,
                    index,
                    file,
                    detail,
                });
                next = index + 1;
            }
            None => {
                report.findings.push(Finding {
                    kind,
                    index: next,
                    file: PathBuf::new(),
                    detail: format!("{detail} (not reproduced by a replay)"),
                });
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
