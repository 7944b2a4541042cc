//! The policy core of boifi, shared unchanged by the control plane, the Wasm filter and the CLI.
//!
//! It is pure and total: no I/O, no clock, no global random source. The time and the random
//! draw are arguments of [`compiled::decide`], so the same inputs always give the same decision,
//! in a unit test, in `boifi-cli simulate` and in an Envoy sidecar.
//!
//! ```
//! use boifi_core::{compiled::{decide, CompiledPolicySet, SimpleRequest}, identity::Identity};
//!
//! let policy = boifi_core::policy::parse_policy_json(r#"{
//!   "metadata": {"name": "frontend-abort"},
//!   "spec": {
//!     "selector": {"service": "frontend"},
//!     "rules": [{"match": {"path": {"prefix": "/"}},
//!                "fault": {"percentage": 100, "abort": {"httpStatus": 503}}}]
//!   }
//! }"#).unwrap();
//! let identity = Identity::for_service("frontend", "demo");
//! let set = CompiledPolicySet::from_documents(&[policy], &identity, 0).unwrap();
//! let request = SimpleRequest::new("GET", "/cart");
//! let decision = decide(&set, &request, 0, 42).unwrap();
//! assert_eq!(decision.abort.unwrap().http_status, 503);
//! ```
//!
//! # Feature flags
//! - `std` (default): forwards `std` to the dependencies and enables YAML parsing
//!   ([`policy::parse_policies_yaml`]). Without it the crate is `no_std` + `alloc` (the Wasm
//!   filter builds it that way).
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod backoff;
pub mod compiled;
pub mod destination;
pub mod identity;
pub mod json;
mod parse;
pub mod pattern;
pub mod policy;
pub mod rng;
#[cfg(feature = "scenario")]
pub mod scenario;
pub mod simulate;
pub mod sort;
pub mod text;
pub mod time;
mod varint;
pub mod wire;

pub use compiled::{decide, CompiledPolicySet, FaultDecision};
pub use identity::Identity;
pub use policy::PolicyDocument;
