//! boifi's filter engine: everything a fault-injection filter in a proxy does that does not
//! depend on the proxy. Each host (the proxy-wasm filter `boifi-wasm`, a native Envoy dynamic
//! module) is thin glue that translates its calls into these and never decides anything itself;
//! the engine never sees a host type. Plain Rust, `no_std` + `alloc`, tested on the host.
//!
//! # Public API
//!
//! - [`Engine`] (one per host instance: a Wasm VM, a native worker): [`Engine::new`]`(identity,
//!   &PluginConfig, seed)`, [`Engine::reconfigure`]; the policy set and its adoption:
//!   [`Engine::seq`], [`Engine::version`], [`Engine::set`], [`Engine::adopt`]`(seq, body, now)`
//!   (compile a `/v1/config` answer and swap it in whole), [`Engine::install`]`(seq, version,
//!   Arc<CompiledPolicySet>)` (a set compiled elsewhere); per request
//!   [`Engine::on_request`]`(stream, &impl RequestView, now, &mut impl Counters)` →
//!   [`Verdict`] (`Continue`, `Reply(LocalReply)`, `Hold { due_ms }`); the delay queue
//!   [`Engine::release_due`] → [`Released`] (`Resume` or `Reply`), [`Engine::forget`],
//!   [`Engine::next_due_ms`], [`Engine::held`], capped by `PluginConfig::max_active_delays`
//!   (over the cap a request passes unfaulted and [`metrics::Counter::DelaysOverCap`] counts it).
//! - The request: [`RequestView`] (re-exported from `boifi_core::compiled`), implemented by the
//!   host over its header map. Values are bytes: exact and prefix matches compare bytes, a regex
//!   sees a value that is not UTF-8 as not matching, so no request can break the filter.
//! - [`metrics`]: metric names, [`metrics::Counter`], [`metrics::Gauge`],
//!   [`metrics::PolicyCounter`] (the one naming of the per-policy counters:
//!   [`metrics::PolicyCounter::name`] with the [`metrics::POLICY_TAG`] tag, or
//!   [`metrics::PolicyCounter::name_with_policy`] for a host that cannot tag), the
//!   [`metrics::Counters`] trait the host implements (called only when something happens), and
//!   [`metrics::CounterValues`] (in memory).
//! - [`sync`]: the long-poll of `GET /v1/config` ([`sync::ConfigSync`]: `request_path`, then
//!   [`sync::ConfigSync::on_answer`]`(status, body, now, draw)` or
//!   [`sync::ConfigSync::on_failed_call`] → [`sync::Step`]: what to install, which counter to
//!   add, what to log, when to poll next ([`sync::Next`]); a refused version is reported in the
//!   next requests). The one interpretation of a control-plane answer; both hosts only do the
//!   I/O. [`sync::classify`] and [`sync::compile_body`] / [`sync::compile_response`] are its
//!   parts.
//! - [`backoff::Backoff`] (exponential, jittered, forever), [`delays::DelayQueue`],
//!   [`reply`] (the local reply of an abort: [`reply::abort_reply`], [`reply::is_grpc`],
//!   [`reply::grpc_message`] percent-encoding).
//!
//! The decision itself is [`boifi_core::compiled::decide`], the function `boifi-cli simulate`
//! and the scenario corpus's core tests run too (the control plane never decides: it only
//! filters which policies a sidecar receives), so the filter and the simulation cannot
//! disagree.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub use boifi_core::backoff;
pub mod delays;
pub mod destinations;
mod engine;
pub mod metrics;
pub mod reply;
pub mod sync;
pub mod table;

pub use boifi_core::compiled::RequestView;
pub use engine::{Adopted, Clock, Engine, PolicySet, Release, Released, Verdict};
