//! The reference modules boifi is measured against: the floor (an empty module written
//! straight against the proxy-wasm ABI, `modules/floor.wat`, compiled here) and the SDK-only
//! module (`crates/boifi-bench-sdk-noop`: a proxy-wasm Rust SDK filter that does nothing,
//! built by `make bench` next to the filter).

use std::path::{Path, PathBuf};

use boifi_mesh::process::existing_file;

use crate::error::BenchError;

/// The floor module's source.
pub const FLOOR_WAT: &str = include_str!("../modules/floor.wat");

/// Compiles the floor module into `dir`; its path.
pub fn floor(dir: &Path) -> Result<PathBuf, BenchError> {
    let wasm = wat::parse_str(FLOOR_WAT)
        .map_err(|e| BenchError::Unexpected(format!("modules/floor.wat: {e}")))?;
    let path = dir.join("floor.wasm");
    std::fs::write(&path, wasm)
        .map_err(|e| BenchError::io(format!("writing `{}`", path.display()), e))?;
    Ok(path)
}

/// The SDK-only module, next to the filter module `wasm` (where `make bench` builds it).
pub fn sdk_noop(wasm: &Path) -> Result<PathBuf, BenchError> {
    Ok(existing_file(
        wasm.with_file_name("boifi_bench_sdk_noop.wasm"),
        "the SDK-only module",
        "build it with `bash scripts/build-wasm.sh boifi-bench-sdk-noop` (`make bench` does)",
    )?)
}

/// A module's size in bytes.
pub fn size(path: &Path) -> Result<u64, BenchError> {
    Ok(std::fs::metadata(path)
        .map_err(|e| BenchError::io(format!("reading `{}`", path.display()), e))?
        .len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_floor_module_compiles_and_is_a_few_hundred_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = super::floor(dir.path()).unwrap();
        let size = super::size(&path).unwrap();
        assert!((50..1_000).contains(&size), "{size} bytes");
    }
}
