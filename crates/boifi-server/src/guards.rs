//! Guards: Prometheus queries that stop a policy when the mesh's own health breaks down.
//!
//! [`prometheus`] is the client, [`evaluator`] the loop that evaluates guards and writes each
//! guarded policy's state (verifying, running, tripped), [`leadership`] decides which replica
//! evaluates.

pub mod evaluator;
pub mod leadership;
pub mod prometheus;
