//! boifi's proxy-wasm filter: injects the faults of boifi policies into the requests an Envoy
//! sidecar receives, with the policies long-polled from the control plane.
//!
//! The filter itself is [`boifi_engine`] (policy set, decision, delay queue, counters, the
//! long-poll state machine), shared with every other host. This crate is the proxy-wasm glue:
//! [`filter`] (root contexts, the poller lease, adoption on the tick) written against the safe
//! [`host::Host`] trait, our own thin layer over the proxy-wasm ABI that implements it (`abi`,
//! built for wasm32 only, and linted by clippy on the host too; with [`heap`], the module's own
//! allocator, the only places with `unsafe`), and what only proxy-wasm needs as plain modules
//! tested on the host: [`props`] (Envoy properties, the ABI's pair maps as bytes) and [`shared`]
//! (the poller lease and the policy set in shared data).
#![warn(missing_docs)]
// Every `unsafe` block says why it is sound (the FFI boundary lives in `abi`, the allocator in
// `heap`).
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

// Also under clippy on the host, so the workspace's `cargo clippy` lints the one module with
// `unsafe` (type-checked only: the host never links it).
#[cfg(any(target_arch = "wasm32", clippy))]
mod abi;
pub mod filter;
pub mod heap;
pub mod host;
pub mod props;
pub mod shared;
