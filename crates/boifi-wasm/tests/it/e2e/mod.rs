//! The end-to-end scenarios both filters share (`boifi_filter_e2e::scenarios`), run with the
//! proxy-wasm filter, and what only a Wasm VM has.

boifi_filter_e2e::scenario_tests!(Wasm);

// A Wasm VM that traps is replaced by a fresh one (the native module has no VM).
mod reload;
