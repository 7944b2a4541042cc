//! The boifi control plane: the policy API, storage backends and the long-poll config endpoint
//! sidecars fetch their policies from.
#![warn(missing_docs)]

pub mod store;
