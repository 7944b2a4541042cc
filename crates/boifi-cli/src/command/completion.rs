//! `completion bash|zsh|fish`: shell completion scripts.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionArgs, CompletionShell};
use crate::error::CliError;

/// Writes the completion script of the chosen shell.
pub fn run(args: &CompletionArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut buffer = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "boifi-cli", &mut buffer);
    out.write_all(&buffer)?;
    Ok(())
}
