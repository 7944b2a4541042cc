//! boifi as a native Envoy dynamic module (`libboifi.so`, loaded by
//! `envoy.filters.http.dynamic_modules`): the same engine ([`boifi_engine`]: policy set,
//! decision, capped delay queue, counters, long-poll state machine), policies and control plane
//! as the proxy-wasm filter, without a Wasm VM.
//!
//! [`abi`] is the only module with `unsafe` code: the C ABI declarations and the exported event
//! hooks, each turning Envoy's pointers into safe values before calling [`filter`], the thin
//! glue (one engine per worker thread and filter configuration). The policy set comes from a
//! poller thread ([`source`]); delays wait on a timer thread ([`delays`]) that hands each
//! request back to its own worker through Envoy's scheduler.
#![warn(missing_docs)]
// Every `unsafe` block says why it is sound (the FFI boundary lives in `abi`).
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

#[expect(
    unsafe_code,
    reason = "the FFI boundary with Envoy's dynamic-module C ABI; every block has a SAFETY comment"
)]
pub mod abi;
pub mod config;
pub mod credential;
pub mod delays;
pub mod filter;
pub mod identity;
pub mod source;

pub use boifi_engine::metrics;

/// The module's name in Envoy's configuration (`dynamic_module_config.name`): Envoy loads
/// `lib<name>.so` from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub const MODULE_NAME: &str = boifi_core::wire::NATIVE_MODULE_NAME;
