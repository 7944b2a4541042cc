//! The guard evaluator: queries each guarded policy's guards on their interval and records
//! the policy's guard state in the store.
//!
//! - **Verifying → running.** A guarded policy is stored verifying and sent to no sidecar.
//!   Once every guard of it has passed (its last evaluation passed), the evaluator writes it
//!   running; from then on sidecars get it.
//! - **Running (or verifying) → tripped.** When a guard fails `failure_limit` evaluations in a
//!   row (an error counts as a failure unless `on_error: ignore`), the evaluator writes the
//!   policy tripped with the guard, the value seen and the time. The policy is kept; sidecars
//!   drop it with the next config answer. A policy tripped while verifying never injected.
//! - **Re-arm** (the API) writes it back to verifying.
//!
//! Every write is conditional on the revision the evaluator read, so a policy replaced or
//! re-armed meanwhile is never overwritten, and two replicas that both believe they lead apply
//! a change once. Only the replica that [`GuardLeadership`] names evaluates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use boifi_core::policy::guard::{Guard, GuardState, OnError, Trip};
use boifi_core::policy::{PolicyDocument, PolicyState};
use tokio::time::Instant;

use super::leadership::GuardLeadership;
use super::prometheus::PrometheusClient;
use crate::audit::AuditLog;
use crate::auth::Caller;
use crate::metrics::GuardMetrics;
use crate::store::{now_ms, PolicyStore, StoreError, WriteCondition};

/// How often the evaluator looks for due guards (a guard's interval is whole seconds).
const TICK: Duration = Duration::from_millis(100);

/// The caller the audit log names for the evaluator's writes.
pub const GUARD_CALLER: &str = "guard-evaluator";

/// One guard's evaluations so far.
#[derive(Debug, Clone, Default)]
struct GuardTrack {
    next_due: Option<Instant>,
    failures_in_a_row: u64,
    last_passed: bool,
    last_value: Option<f64>,
}

/// The evaluations of one policy, for one stored spec and guard state.
#[derive(Debug, Clone)]
struct PolicyTrack {
    guards: Vec<Guard>,
    /// The guard state this track started from (a re-arm or replace starts a new track).
    state: GuardState,
    revision_seen: u64,
    tracks: Vec<GuardTrack>,
}

/// What one evaluation gave.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Pass(f64),
    Fail(Option<f64>),
    Ignored,
}

/// Evaluates every guarded policy of `store` while `leadership` says so.
#[derive(Debug)]
pub struct GuardEvaluator {
    store: Arc<dyn PolicyStore>,
    client: PrometheusClient,
    leadership: Arc<dyn GuardLeadership>,
    metrics: GuardMetrics,
    audit: Arc<AuditLog>,
    tracks: BTreeMap<String, PolicyTrack>,
}

impl GuardEvaluator {
    /// An evaluator of `store`'s guarded policies.
    pub fn new(
        store: Arc<dyn PolicyStore>,
        client: PrometheusClient,
        leadership: Arc<dyn GuardLeadership>,
        metrics: GuardMetrics,
        audit: Arc<AuditLog>,
    ) -> GuardEvaluator {
        GuardEvaluator {
            store,
            client,
            leadership,
            metrics,
            audit,
            tracks: BTreeMap::new(),
        }
    }

    /// Runs until the task is aborted.
    pub async fn run(mut self) {
        let mut leading = self.leadership.subscribe();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let is_leader = *leading.borrow_and_update();
            self.metrics.leading(is_leader);
            if !is_leader {
                // A replica that loses leadership forgets its counts: the next leader starts
                // its own, so no failure is counted by two replicas.
                self.tracks.clear();
                if leading.changed().await.is_err() && !*leading.borrow() {
                    return;
                }
                continue;
            }
            ticker.tick().await;
            if let Err(e) = self.round(Instant::now()).await {
                tracing::warn!(error = %e, "guard evaluation round failed");
            }
        }
    }

    /// Evaluates the guards that are due at `now` and writes the state changes they decide.
    async fn round(&mut self, now: Instant) -> Result<(), StoreError> {
        let snapshot = self.store.snapshot().await?;
        let now_ms = now_ms();
        self.tracks
            .retain(|name, _| snapshot.policies.contains_key(name));
        for (name, policy) in &snapshot.policies {
            let Some(state) = policy.guard_state() else {
                self.tracks.remove(name);
                continue;
            };
            let live = matches!(state, GuardState::Verifying | GuardState::Running)
                && matches!(
                    policy.state_at(now_ms),
                    PolicyState::Active | PolicyState::Scheduled
                );
            if !live {
                self.tracks.remove(name);
                continue;
            }
            let revision = policy.status.map_or(0, |s| s.revision);
            let fresh = |state| PolicyTrack {
                guards: policy.spec.guards.clone(),
                state,
                revision_seen: revision,
                tracks: vec![GuardTrack::default(); policy.spec.guards.len()],
            };
            let track = self
                .tracks
                .entry(name.clone())
                .or_insert_with(|| fresh(state));
            // Same spec, and the state this evaluator wrote or started from: keep counting.
            // Anything else (replaced, re-armed, written by another replica) starts over.
            let continues = track.guards == policy.spec.guards
                && (track.state == state
                    || (track.state == GuardState::Verifying && state == GuardState::Running));
            if !continues {
                *track = fresh(state);
            }
            track.state = state;
            track.revision_seen = revision;
            let mut decided = None;
            for (i, guard) in policy.spec.guards.iter().enumerate() {
                let Some(t) = track.tracks.get_mut(i) else {
                    continue;
                };
                if t.next_due.is_some_and(|due| now < due) {
                    continue;
                }
                t.next_due = Some(now + Duration::from_secs(guard.interval_seconds));
                let outcome = evaluate(&self.client, guard).await;
                let (result, value) = match &outcome {
                    Outcome::Pass(v) => ("pass", Some(*v)),
                    Outcome::Fail(v) => ("fail", *v),
                    Outcome::Ignored => ("error", None),
                };
                self.metrics.evaluated(name, &guard.name, result, value);
                match outcome {
                    Outcome::Pass(v) => {
                        t.failures_in_a_row = 0;
                        t.last_passed = true;
                        t.last_value = Some(v);
                    }
                    Outcome::Fail(v) => {
                        t.failures_in_a_row += 1;
                        t.last_passed = false;
                        t.last_value = v;
                        if t.failures_in_a_row >= guard.failure_limit && decided.is_none() {
                            decided = Some(GuardState::Tripped(Trip::new(i, v, now_ms)));
                        }
                    }
                    Outcome::Ignored => {}
                }
            }
            if decided.is_none()
                && state == GuardState::Verifying
                && track.tracks.iter().all(|t| t.last_passed)
            {
                decided = Some(GuardState::Running);
            }
            if let Some(next) = decided {
                if *self.leadership.subscribe().borrow() {
                    self.write_state(policy, revision, next, snapshot.version)
                        .await;
                }
                if let Some(track) = self.tracks.get_mut(name) {
                    track.state = next;
                }
            }
        }
        Ok(())
    }

    /// Writes `next` as `policy`'s guard state if it is still at `revision`.
    async fn write_state(
        &self,
        policy: &PolicyDocument,
        revision: u64,
        next: GuardState,
        before: u64,
    ) {
        let name = policy.name();
        let mut updated = policy.clone();
        if let Some(status) = &mut updated.status {
            status.guard = Some(next);
        }
        match self
            .store
            .put(updated, WriteCondition::Revision(revision))
            .await
        {
            Ok(outcome) => {
                let caller = Caller::trusted(GUARD_CALLER);
                match next {
                    GuardState::Tripped(trip) => {
                        let guard = policy
                            .spec
                            .guards
                            .get(trip.guard)
                            .map_or("", |g| g.name.as_str());
                        self.metrics.tripped(name, guard);
                        tracing::warn!(
                            target: "boifi_server::audit",
                            who = GUARD_CALLER,
                            action = "guard-trip",
                            policy = name,
                            guard,
                            value = %format_value(trip.value()),
                            at_ms = trip.at_ms,
                            version_before = before,
                            version_after = outcome.version,
                            "audit"
                        );
                    }
                    GuardState::Running => {
                        self.audit
                            .record(&caller, "guard-run", name, before, outcome.version);
                    }
                    GuardState::Verifying => {
                        self.audit
                            .record(&caller, "guard-verify", name, before, outcome.version);
                    }
                }
            }
            Err(StoreError::RevisionMismatch { .. } | StoreError::NotFound { .. }) => {
                tracing::info!(
                    policy = name,
                    "policy changed while its guards were evaluated; not written"
                );
            }
            Err(e) => tracing::warn!(policy = name, error = %e, "guard state not written"),
        }
    }
}

/// A guard's value as the audit log and the CLI show it.
pub fn format_value(value: Option<f64>) -> String {
    value.map_or_else(|| "no value".to_owned(), |v| v.to_string())
}

async fn evaluate(client: &PrometheusClient, guard: &Guard) -> Outcome {
    match client.instant(&guard.query).await {
        Ok(v) if guard.condition.passes(v) => Outcome::Pass(v),
        Ok(v) => Outcome::Fail(Some(v)),
        Err(e) => {
            tracing::warn!(guard = %guard.name, error = %e, "guard evaluation got no value");
            match guard.on_error {
                OnError::Fail => Outcome::Fail(None),
                OnError::Ignore => Outcome::Ignored,
            }
        }
    }
}
