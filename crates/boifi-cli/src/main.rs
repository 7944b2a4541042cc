//! The `boifi-cli` binary: parses the command line and hands it to the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = boifi_cli::Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = boifi_cli::run(cli, &mut out).and_then(|()| out.flush().map_err(Into::into));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            for line in e.to_string().lines() {
                if line.starts_with(' ') {
                    eprintln!("{line}");
                } else {
                    eprintln!("error: {line}");
                }
            }
            e.exit_code()
        }
    }
}
