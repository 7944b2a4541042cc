//! Guards: Prometheus queries that stop a policy when the mesh's own health breaks down.
//!
//! [`leadership`] decides which replica evaluates them.

pub mod leadership;
