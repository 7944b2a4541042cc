//! boifi as a native Envoy dynamic module (`libboifi.so`, loaded by
//! `envoy.filters.http.dynamic_modules`): the same policies, decision and control plane as the
//! proxy-wasm filter, without a Wasm VM.
//!
//! [`abi`] is the only module with `unsafe` code: the C ABI declarations and the exported event
//! hooks, each turning Envoy's pointers into safe values before calling [`filter`]. The policy
//! set comes from a poller thread ([`source`]); delays wait on a timer thread ([`delays`]) that
//! hands each request back to its own worker through Envoy's scheduler.
#![warn(missing_docs)]

extern crate alloc;

#[expect(
    unsafe_code,
    reason = "the FFI boundary with Envoy's dynamic-module C ABI; every block has a SAFETY comment"
)]
pub mod abi;
pub mod config;
pub mod delays;
pub mod filter;
pub mod identity;
pub mod source;

// The Wasm filter's host-independent parts, compiled here unchanged until they move into the
// shared engine crate (issue 13): one copy of the code, two hosts.
#[path = "../../boifi-wasm/src/backoff.rs"]
mod backoff;
#[path = "../../boifi-wasm/src/metrics.rs"]
pub mod metrics;
#[path = "../../boifi-wasm/src/reply.rs"]
mod reply;
#[path = "../../boifi-wasm/src/sync.rs"]
#[allow(
    dead_code,
    reason = "the Wasm glue uses parts of it that this host does not"
)]
mod sync;
