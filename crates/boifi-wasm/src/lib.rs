//! boifi's proxy-wasm filter: injects the faults of boifi policies into the requests an Envoy
//! sidecar receives, with the policies long-polled from the control plane.
//!
//! The parts that need no host are plain modules tested on the host ([`backoff`], [`delays`],
//! [`props`], [`reply`], [`shared`], [`sync`]); the proxy-wasm glue in [`filter`] is thin
//! over them. The decision itself is [`boifi_core::compiled::decide`], the same function the
//! control plane and `boifi-cli simulate` use.
#![warn(missing_docs)]

extern crate alloc;

pub mod backoff;
pub mod delays;
pub mod filter;
pub mod metrics;
pub mod props;
pub mod reply;
pub mod shared;
pub mod sync;

#[cfg(target_arch = "wasm32")]
mod entry {
    proxy_wasm::main! {{
        crate::filter::install();
    }}
}
