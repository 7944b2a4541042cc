//! Test helpers of boifi, shared by the integration tests of every crate.
//!
//! Processes a test needs are started by the test process itself, on free loopback ports and in
//! temporary directories, and are killed when their guard is dropped, also when the test panics.
//!
//! - [`etcd`]: a real etcd, one member or a cluster of three ([`etcd::EtcdCluster`]).
//! - [`process`]: a child process killed on drop ([`process::ChildGuard`]).
//! - [`http`]: a tiny blocking HTTP/1.1 client for `127.0.0.1`, enough to drive a server in tests.
//! - [`ports`]: free loopback ports.
//! - [`names`]: the table of policy names accepted and refused.
//! - [`files`]: the files below a directory (the example policies).
//!
//! A test that needs etcd calls [`etcd::EtcdCluster::for_test`]: when etcd is not installed the
//! test fails with a message saying how to install it; no test passes by skipping.
#![warn(missing_docs)]

pub mod etcd;
pub mod files;
pub mod http;
pub mod names;
pub mod ports;
pub mod process;
