//! `boifi-server`: parses flags and runs the control plane.

use std::process::ExitCode;

use boifi_server::cli::{init_logging, run, Args};
use clap::Parser;

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("boifi-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boifi-server: {e}");
            ExitCode::FAILURE
        }
    }
}
