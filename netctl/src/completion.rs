//! `netctl completion bash|zsh|fish`: a completion script for the shell.

use crate::cli::Cli;
use crate::error::{CtlError, Result};
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  netctl completion bash > /etc/bash_completion.d/netctl
  source <(netctl completion zsh)
  netctl completion fish > ~/.config/fish/completions/netctl.fish")]
pub struct Args {
    /// The shell
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: &Args) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "netctl", &mut buf);
    let text = String::from_utf8(buf).map_err(|e| {
        CtlError::io(
            "generate completion",
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    crate::out::print(&text)
}
