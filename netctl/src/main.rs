//! netctl: Contiv's command line, a thin client of the netmaster REST API.
//!
//! `main` parses the command line, runs the command, and maps its error to Contiv's exit codes
//! (see [`error::exit`]).

mod aci_gw;
mod app_profile;
mod args;
mod bgp;
mod check;
mod cli;
mod completion;
mod endpoint;
mod error;
mod ext_contracts;
mod global;
mod group;
mod login;
mod netprofile;
mod network;
mod notice;
mod out;
mod policy;
mod service;
mod table;
mod tenant;
mod token;
mod version;

use clap::{CommandFactory, FromArgMatches, error::ErrorKind};
use error::{CtlError, exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = cli::Cli::command();
    let (argv, path) = args::normalize(&root, std::env::args_os().collect());
    let parsed = root
        .try_get_matches_from(argv)
        .and_then(|m| cli::Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, &path),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(CtlError::io("start the async runtime", e)),
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => report(e),
    }
}

/// Prints a parse error (or the help or version asked for). Every usage error ends with the
/// usage of the command it is about, which clap leaves out for some kinds (a bad flag value).
fn usage_error(e: clap::Error, path: &[String]) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::from(exit::OK);
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(exit::USAGE);
        }
        _ => {}
    }
    let text = e.render().to_string();
    if text.contains("\nUsage: ") {
        let _ = e.print();
    } else {
        let mut cmd = cli::Cli::command();
        cmd.build();
        let mut sub = &mut cmd;
        for name in path {
            sub = sub
                .find_subcommand_mut(name)
                .expect("the path names real commands");
        }
        let usage = sub.render_usage().to_string();
        let (head, tail) = match text.find("\n\nFor more information") {
            Some(i) => text.split_at(i),
            None => (text.trim_end(), "\n"),
        };
        eprint!("{head}\n\n{usage}{tail}");
    }
    ExitCode::from(exit::USAGE)
}

/// Prints an error the way its kind calls for and returns its exit code.
fn report(e: CtlError) -> ExitCode {
    let code = e.exit_code();
    match &e {
        CtlError::Usage { path, message } => {
            let mut cmd = cli::Cli::command();
            cmd.build();
            let mut sub = &mut cmd;
            for name in *path {
                sub = sub
                    .find_subcommand_mut(name)
                    .expect("usage error names a real command");
            }
            let _ = sub.error(ErrorKind::ValueValidation, message).print();
        }
        _ if e.is_broken_pipe() => {}
        _ => eprintln!("Error: {e}"),
    }
    ExitCode::from(code)
}
