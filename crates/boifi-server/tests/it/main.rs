//! boifi-server's integration tests (one binary): the storage conformance suite on every
//! backend, the HTTP API, long-poll propagation, durability across SIGKILL, and expiry.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api;
mod conformance;
mod etcd_faults;
mod etcd_store;
mod guard_election;
mod guards;
mod ha_status;
mod harness;
mod legacy;
mod longpoll;
mod process;
mod reliability_flood;
mod reliability_security;
mod reliability_writes;
mod replicas;
mod scoped_access;
mod shared_proxies;
