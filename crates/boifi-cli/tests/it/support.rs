//! Helpers: the binary under test, the repository root, snapshot settings.

use std::path::{Path, PathBuf};

/// The repository root (commands run there, so paths in messages are short and stable).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `boifi-cli`, run from the repository root, with no server or token from the environment.
pub fn cli() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_boifi-cli"));
    cmd.current_dir(root())
        .env_remove("BOIFI_SERVER")
        .env_remove("BOIFI_TOKEN")
        .env_remove("RUST_BACKTRACE");
    cmd
}

/// A fixture path relative to the repository root.
pub const FIXTURES: &str = "crates/boifi-cli/tests/it/fixtures";

/// stdout, stderr and exit code of a finished command, as one text for a snapshot.
pub fn transcript(output: &std::process::Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
