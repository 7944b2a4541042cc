//! `boifi-server`: parses flags and runs the control plane.
fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
