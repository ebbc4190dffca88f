//! contiv-fuzz: runs the fuzz targets for a set time and prints their figures. Not a test: the
//! crate's tests run each target over a few thousand fixed inputs instead.
//!
//! ```text
//! cargo run --release -p fuzz --bin contiv-fuzz -- all --seconds 60
//! cargo run --release -p fuzz --bin contiv-fuzz -- ovsdb --seconds 10 --seed 7
//! cargo run --release -p fuzz --bin contiv-fuzz -- list
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use fuzz::runner::{self, DriveArgs, WorkerArgs};
use fuzz::{TARGETS, target};

#[derive(Parser)]
#[command(
    about = "Runs contiv's fuzz targets for a set time and reports inputs, inputs/s and crashes"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// A target name (see `list`) or `all`.
    target: Option<String>,
    /// Wall-clock seconds per target.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The seed of the input sequence; the same seed gives the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where inputs that crashed, hung or were slow are saved.
    #[arg(long, default_value = "target/fuzz-crashes")]
    crash_dir: PathBuf,
    /// A worker that reports nothing for this many seconds is hung.
    #[arg(long, default_value_t = 10)]
    hang_secs: u64,
    /// Inputs slower than this many milliseconds are saved and reported.
    #[arg(long, default_value_t = 1000)]
    slow_ms: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists the targets.
    List,
    /// Runs one saved input (a file from the crash directory) and says what happened.
    Replay { target: String, file: PathBuf },
    /// Internal: the worker process the driver starts.
    #[command(hide = true)]
    Worker {
        target: String,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        start: u64,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        slow_ms: u64,
        #[arg(long)]
        crash_dir: PathBuf,
        #[arg(long)]
        announce: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::List) => {
            for t in TARGETS {
                println!("{:<12} {}", t.name, t.about);
            }
            Ok(())
        }
        Some(Cmd::Replay { target: name, file }) => {
            let target = target(&name).with_context(|| format!("no fuzz target {name:?}"))?;
            let data = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
            let started = std::time::Instant::now();
            let outcome = runner::run_input(target, &data);
            let took = started.elapsed();
            match outcome {
                Ok(accepted) => println!(
                    "{name}: {} bytes, {} in {took:?}",
                    data.len(),
                    if accepted { "accepted" } else { "refused" }
                ),
                Err(msg) => bail!("{name}: panicked after {took:?}: {msg}"),
            }
            Ok(())
        }
        Some(Cmd::Worker {
            target: name,
            seed,
            start,
            seconds,
            slow_ms,
            crash_dir,
            announce,
        }) => {
            let target = target(&name).with_context(|| format!("no fuzz target {name:?}"))?;
            runner::worker(
                WorkerArgs {
                    target,
                    seed,
                    start,
                    seconds,
                    announce,
                    crash_dir,
                    slow: Duration::from_millis(slow_ms),
                },
                std::io::stdout(),
            )
            .context("run the fuzz worker")
        }
        None => {
            let Some(name) = cli.target else {
                bail!("name a target (contiv-fuzz list shows them) or `all`");
            };
            let chosen: Vec<_> = if name == "all" {
                TARGETS.iter().collect()
            } else {
                vec![target(&name).with_context(|| {
                    format!("no fuzz target {name:?}: contiv-fuzz list shows them")
                })?]
            };
            let d = DriveArgs {
                exe: std::env::current_exe().context("find this program to run its workers")?,
                seconds: cli.seconds,
                seed: cli.seed,
                crash_dir: cli.crash_dir,
                hang: Duration::from_secs(cli.hang_secs),
                slow: Duration::from_millis(cli.slow_ms),
            };
            println!(
                "| target | seconds | inputs | inputs/s | accepted | crashes | slow (>{} ms) |",
                cli.slow_ms
            );
            println!("|---|---|---|---|---|---|---|");
            let mut crashes = 0;
            let mut details = Vec::new();
            for t in chosen {
                let r =
                    runner::drive(&d, t).with_context(|| format!("run fuzz target {}", t.name))?;
                let slow = r.findings.len() - r.crashes();
                println!(
                    "| {} | {:.0} | {} | {:.0} | {:.1} % | {} | {} |",
                    r.target,
                    r.seconds,
                    r.inputs,
                    r.inputs as f64 / r.seconds.max(1e-9),
                    100.0 * r.accepted as f64 / (r.inputs.max(1)) as f64,
                    r.crashes(),
                    slow
                );
                crashes += r.crashes();
                details.extend(r.findings.into_iter().map(|f| (t.name, f)));
            }
            for (name, f) in &details {
                println!(
                    "{name}: {} at input {}: {} ({})",
                    f.kind,
                    f.index,
                    f.detail,
                    f.file.display()
                );
            }
            if crashes > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
