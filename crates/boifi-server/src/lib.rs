//! The boifi control plane: the policy API, storage backends and the long-poll config endpoint
//! sidecars fetch their policies from.
//!
//! The binary (`src/main.rs`) only parses [`cli::Args`] and calls [`cli::run`]; tests start the
//! same server in-process with [`app::start`].
#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod credentials;
pub mod error;
pub mod guards;
pub mod metrics;
pub mod scope;
pub mod sidecars;
pub mod state;
pub mod store;
