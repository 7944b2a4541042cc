//! `boifi-cli`: manage fault injection policies on the boifi control plane, validate them
//! offline, and simulate what a sidecar would do with a request.
//!
//! The binary is a thin shell over [`run`]: it parses [`Cli`] and maps the outcome to an exit
//! code with [`CliError::exit_code`]. Each verb lives in its own module under [`command`].
//!
//! Exit codes: `0` success; `1` a user mistake (an invalid policy, a refused request, a missing
//! policy); `2` the server could not be reached or failed (and clap's usage errors).
#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod command;
pub mod error;
pub mod load;
pub mod output;

use std::io::Write;

pub use cli::Cli;
pub use error::CliError;

/// Runs one parsed command line, writing its results to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let global = cli.global;
    match cli.command {
        cli::Command::Policy { command } => command::policy::run(&global, command, out),
        cli::Command::Halt(args) => command::halt::run(&global, &args, out),
        cli::Command::Audit(args) => command::audit::run(&global, &args, out),
        cli::Command::Status(args) => command::status::run(&global, &args, out),
        cli::Command::Validate(args) => command::validate::run(&global, &args, out),
        cli::Command::Simulate(args) => command::simulate::run(&global, &args, out),
        cli::Command::Completion(args) => command::completion::run(&args, out),
    }
}
