//! boifi's benchmarks, run by `make bench` through the `boifi-bench` binary; each writes its
//! own generated section of `docs/PERFORMANCE.md` and leaves the rest of the document alone.
//!
//! - [`dataplane`]: one Envoy in front of a fixed upstream under the same `wrk` load, in
//!   alternating rounds: plain router, Envoy's native fault filter, the floor module and the
//!   SDK-only module ([`modules`]), boifi with 0/10/100 policies, both aborting 10 %;
//!   throughput, p50, p99, proxy CPU per request, ratios.
//! - [`delaycap`]: 10 000 requests held by a 60 s delay: the `max_active_delays` cap holds,
//!   Envoy's memory per held request.
//! - [`propagation`]: a mesh of real sidecars ([`boifi_mesh`]); write acknowledged → every
//!   sidecar applied it.
//! - [`scale`]: one `boifi-server` holding 10 000 long-polls; memory, CPU, fan-out time.
//! - [`footprint`]: module size, memory per Wasm VM, Envoy start to first 200, against the
//!   floor and SDK-only modules.
//!
//! Every process is started by the benchmark itself on free loopback ports and killed when
//! its guard is dropped.
#![warn(missing_docs)]

pub mod dataplane;
pub mod delaycap;
pub mod envoy;
pub mod error;
pub mod footprint;
pub mod modules;
pub mod policies;
pub mod propagation;
pub mod report;
pub mod scale;
pub mod server;
pub mod stats;
pub mod upstream;
pub mod wrk;

pub use error::BenchError;
