//! Which replica evaluates guards.
//!
//! A guard is evaluated by exactly one replica at a time, so a breach stops its policy once and
//! Prometheus is queried once per interval whatever the number of replicas. The evaluator
//! (`guards::evaluator`) asks a [`GuardLeadership`] before each round and again just before it
//! writes a stop; it never decides leadership itself.
//!
//! # What an implementation promises
//! - [`GuardLeadership::subscribe`] hands out a `tokio::sync::watch::Receiver<bool>`: `true`
//!   while this replica may evaluate guards, `false` otherwise. Every receiver sees the same
//!   value; a change is published on the channel (the evaluator waits on `changed()` while not
//!   leading, so a replica that gains leadership starts its first round at once).
//! - It turns `false` as soon as this replica can no longer be sure it leads (its lease
//!   expired, was revoked or could not be kept alive), before another replica may turn `true`.
//!   With an etcd election that is: `false` when the keep-alive fails or the lease's TTL may
//!   have run out; `true` once `campaign` returned and the lease is kept alive.
//! - Dropping the sender (the leadership task ended) reads as "not leading": the evaluator
//!   stops evaluating when `changed()` fails and the last value was `false`, and keeps the
//!   last value otherwise (the always-true implementation keeps its sender alive).
//! - Stops are written conditionally on the policy's revision, so two replicas that briefly
//!   both believe they lead can never apply a stop twice, and a re-armed or replaced policy is
//!   never stopped by a stale evaluation.
//!
//! With the embedded or memory store there is one replica: [`AlwaysLeader`].

use tokio::sync::watch;

/// The decision "may this replica evaluate guards now", as a watch channel.
pub trait GuardLeadership: Send + Sync + std::fmt::Debug + 'static {
    /// A receiver of the current decision: `true` while this replica evaluates guards.
    fn subscribe(&self) -> watch::Receiver<bool>;
}

/// The single replica of an embedded or memory store: always evaluates.
#[derive(Debug)]
pub struct AlwaysLeader {
    sender: watch::Sender<bool>,
}

impl AlwaysLeader {
    /// Leadership that is always `true`.
    pub fn new() -> AlwaysLeader {
        let (sender, _) = watch::channel(true);
        AlwaysLeader { sender }
    }
}

impl Default for AlwaysLeader {
    fn default() -> AlwaysLeader {
        AlwaysLeader::new()
    }
}

impl GuardLeadership for AlwaysLeader {
    fn subscribe(&self) -> watch::Receiver<bool> {
        self.sender.subscribe()
    }
}

/// Leadership decided elsewhere and published on a watch channel (the etcd election's task
/// owns the sender).
#[derive(Debug, Clone)]
pub struct WatchedLeadership {
    receiver: watch::Receiver<bool>,
}

impl WatchedLeadership {
    /// Leadership read from `receiver`.
    pub fn new(receiver: watch::Receiver<bool>) -> WatchedLeadership {
        WatchedLeadership { receiver }
    }
}

impl GuardLeadership for WatchedLeadership {
    fn subscribe(&self) -> watch::Receiver<bool> {
        self.receiver.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_single_replica_always_leads() {
        let leadership = AlwaysLeader::new();
        assert!(*leadership.subscribe().borrow());
    }

    #[test]
    fn watched_leadership_follows_its_sender() {
        let (sender, receiver) = watch::channel(false);
        let leadership = WatchedLeadership::new(receiver);
        let seen = leadership.subscribe();
        assert!(!*seen.borrow());
        sender.send_replace(true);
        assert!(*seen.borrow());
    }
}
