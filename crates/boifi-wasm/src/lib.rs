//! boifi's proxy-wasm filter: injects the faults of boifi policies into the requests an Envoy
//! sidecar receives, with the policies long-polled from the control plane.
//!
//! The filter itself is [`boifi_engine`] (policy set, decision, delay queue, counters, the
//! long-poll state machine), shared with every other host; this crate is the proxy-wasm glue
//! ([`filter`]) and what only proxy-wasm needs, as plain modules tested on the host: [`props`]
//! (Envoy properties) and [`shared`] (the poller lease and the policy set in shared data).
#![warn(missing_docs)]

extern crate alloc;

pub mod filter;
pub mod props;
pub mod shared;

pub use boifi_engine::metrics;

#[cfg(target_arch = "wasm32")]
mod entry {
    proxy_wasm::main! {{
        crate::filter::install();
    }}
}
