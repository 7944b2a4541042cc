//! The follower of the etcd view: lists the prefix, watches it from the listed revision,
//! applies every event to the in-memory [`Snapshot`] and publishes it; relists when etcd
//! cancels the watch or compacts its revision, and resumes after the last applied revision
//! when the connection is lost. The writes are the store's (`super`); this module only reads.
//!
//! # Failover
//! The list goes through [`Members::call`] like every other call. The watch is one stream on
//! one member; when that member fails (the stream breaks, etcd cancels it because the member
//! lost its leader, or the member stops answering), the watch resumes at once on another member
//! from the revision after the last one applied: revisions are the cluster's, so the new
//! member sends exactly the events the view lacks (no gap, no duplicate). Only when the resumed
//! watch fails too does the task wait ([`Reconnect`]) between attempts.
//!
//! A hung member (SIGSTOP, a frozen disk) keeps its TCP connection open and sends nothing: the
//! stream neither breaks nor answers. Every [`PROGRESS_EVERY`] without a message the follower
//! asks etcd for a progress notification; a member that answers neither that nor anything else
//! within the attempt timeout is taken as hung, and the watch moves on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use boifi_core::backoff::Backoff;
use boifi_core::rng::{splitmix64, XorShift64Star};
use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::watch;
use tokio::time::Instant;

use super::members::{Members, Retry};
use super::{decode, header_revision, revision_of, MAX_VIEW_MESSAGE_BYTES};
use crate::store::Snapshot;

/// How long the watch may stay silent before the follower asks the member for a progress
/// notification (and, without an answer within the attempt timeout, fails over).
pub(super) const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) lists: AtomicU64,
    pub(super) compactions: AtomicU64,
    pub(super) cancels: AtomicU64,
    pub(super) losses: AtomicU64,
    pub(super) event_batches: AtomicU64,
    pub(super) progress_notifications: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Whether the view can be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Health {
    /// Never loaded yet.
    Loading(String),
    /// Loaded and followed by a live watch.
    Ready,
    /// Loaded once, but etcd is unreachable now; the view may be stale.
    Lost(String),
}

/// What the store and its background task share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) prefix: String,
    pub(super) view: watch::Sender<Arc<Snapshot>>,
    pub(super) health: watch::Sender<Health>,
    pub(super) counters: Counters,
}

impl Shared {
    pub(super) fn set_ready(&self) {
        self.health.send_if_modified(|h| {
            if *h == Health::Ready {
                return false;
            }
            tracing::info!(prefix = %self.prefix, "etcd view ready");
            *h = Health::Ready;
            true
        });
    }

    pub(super) fn set_lost(&self, reason: String) {
        self.health.send_modify(|h| {
            *h = match h {
                Health::Loading(_) => Health::Loading(reason),
                Health::Ready | Health::Lost(_) => Health::Lost(reason),
            };
        });
    }

    pub(super) fn version(&self) -> u64 {
        self.view.borrow().version
    }
}

/// Waits between reconnection attempts: the core's [`Backoff`], 100 ms doubling up to 5 s,
/// with jitter so that replicas that lost etcd together do not reconnect in lockstep.
#[derive(Debug)]
pub(super) struct Reconnect {
    backoff: Backoff,
    draws: XorShift64Star,
}

impl Reconnect {
    const FIRST_MS: u64 = 100;
    const MAX_MS: u64 = 5_000;

    pub(super) fn new() -> Reconnect {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Reconnect {
            backoff: Backoff::new(Reconnect::FIRST_MS, Reconnect::MAX_MS),
            draws: XorShift64Star::new(splitmix64(
                u64::from(nanos) ^ u64::from(std::process::id()),
            )),
        }
    }

    fn reset(&mut self) {
        self.backoff.reset();
    }

    /// The delay to wait now; the next one doubles.
    fn next_delay(&mut self) -> Duration {
        Duration::from_millis(self.backoff.next_delay_ms(self.draws.next_u64()))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

/// How a watch ended.
#[derive(Debug)]
enum WatchEnd {
    /// The revision to resume from was compacted: list again.
    Compacted(i64),
    /// etcd canceled the watch: list again.
    Canceled(String),
    /// The connection failed: retry, resuming after the last applied revision.
    Lost(String),
}

/// The background task: list, watch, apply, publish; relist or resume as the watch ends.
pub(super) async fn maintain_view(
    members: Arc<Members>,
    shared: Arc<Shared>,
    request_timeout: Duration,
) {
    let mut backoff = Reconnect::new();
    // `Some(r)`: every change up to revision `r` is applied; resume the watch after it.
    let mut resume_after: Option<u64> = None;
    // The member whose watch just failed: the resumed watch goes to another one.
    let mut failed_member: Option<usize> = None;
    // Whether the last watch failed right after a failover too: then wait before the next.
    let mut failed_twice = false;
    loop {
        let mut applied = match resume_after {
            Some(revision) => revision,
            None => match list(&members, &shared, request_timeout).await {
                Ok(revision) => {
                    shared.set_ready();
                    backoff.reset();
                    revision
                }
                Err(reason) => {
                    bump(&shared.counters.losses);
                    tracing::warn!(prefix = %shared.prefix, %reason, "etcd list failed");
                    shared.set_lost(reason);
                    backoff.wait().await;
                    continue;
                }
            },
        };
        let after = applied;
        let Some((member, client)) = members.pick(failed_member) else {
            return;
        };
        let watch = client
            .watch_client()
            .max_decoding_message_size(MAX_VIEW_MESSAGE_BYTES);
        let mut established = false;
        let end = follow(
            watch,
            &shared,
            &mut applied,
            members.attempt_timeout(),
            &mut established,
        )
        .await;
        if established {
            members.answered(member);
            backoff.reset();
        }
        match end {
            WatchEnd::Compacted(compact_revision) => {
                bump(&shared.counters.compactions);
                tracing::info!(
                    prefix = %shared.prefix,
                    after,
                    compact_revision,
                    "etcd compacted the watched revision; listing again"
                );
                resume_after = None;
            }
            WatchEnd::Canceled(reason) => {
                bump(&shared.counters.cancels);
                tracing::warn!(prefix = %shared.prefix, %reason, "etcd canceled the watch; listing again");
                resume_after = None;
                backoff.wait().await;
            }
            WatchEnd::Lost(reason) => {
                bump(&shared.counters.losses);
                members.failed(member, &reason);
                resume_after = Some(applied);
                failed_member = Some(member);
                lose(
                    &shared,
                    &reason,
                    &mut backoff,
                    &mut failed_twice,
                    established,
                )
                .await;
            }
        }
    }
}

/// After a watch failed: the first failure fails over at once (the view stays ready, as one
/// member's failure costs nothing while others answer); a failure right after a failover marks
/// the view lost (etcd may have lost its quorum) and waits before the next attempt.
async fn lose(
    shared: &Shared,
    reason: &str,
    backoff: &mut Reconnect,
    failed_twice: &mut bool,
    established: bool,
) {
    if established {
        *failed_twice = false;
    }
    if !*failed_twice {
        *failed_twice = true;
        tracing::warn!(prefix = %shared.prefix, %reason, "etcd watch failed; resuming on another member");
        return;
    }
    tracing::warn!(prefix = %shared.prefix, %reason, "etcd watch lost; retrying");
    shared.set_lost(format!(
        "{reason}; serving the last view (version {})",
        shared.version()
    ));
    backoff.wait().await;
}

/// Lists the prefix and publishes it as the view; returns the header revision.
async fn list(
    members: &Members,
    shared: &Shared,
    request_timeout: Duration,
) -> Result<u64, String> {
    let prefix = shared.prefix.as_str();
    let response = members
        .call(
            &format!("list of `{prefix}`"),
            Retry::Safe,
            Instant::now() + request_timeout,
            |client| async move {
                client
                    .kv_client()
                    .max_decoding_message_size(MAX_VIEW_MESSAGE_BYTES)
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            },
        )
        .await
        .map_err(|e| e.to_string())?
        .value;
    let revision = header_revision(response.header()).map_err(|e| e.to_string())?;
    let mut next = Snapshot {
        version: revision,
        policies: Default::default(),
    };
    for kv in response.kvs() {
        match decode(prefix, kv) {
            Ok((name, policy)) => {
                next.policies.insert(name, policy);
            }
            Err(reason) => tracing::warn!(%reason, "skipping an unreadable policy in etcd"),
        }
    }
    bump(&shared.counters.lists);
    shared.view.send_if_modified(|view| {
        // A relist that finds what the view already holds changes nothing: keeping the old
        // version spares every long-poll a wake-up. The watch resumes after `revision` anyway.
        if view.policies == next.policies && view.version != 0 {
            return false;
        }
        let version = next.version.max(view.version);
        *view = Arc::new(Snapshot {
            version,
            policies: std::mem::take(&mut next.policies),
        });
        true
    });
    Ok(revision)
}

/// Watches the prefix from `applied + 1`, applying events to the view until the watch ends;
/// `applied` follows the revision of the last event applied.
///
/// Versions come from the events' revisions, not from the responses' header revision: while a
/// watch catches up, etcd cuts the backlog into batches of 1 000 revisions and stamps every
/// batch with the current revision, so a header revision can run ahead of the events delivered
/// so far. A version taken from it would name a state the view does not hold yet, and the next
/// batch could change the policies without changing the version (long-polls would miss it).
async fn follow(
    mut client: etcd_client::WatchClient,
    shared: &Shared,
    applied: &mut u64,
    attempt_timeout: Duration,
    established: &mut bool,
) -> WatchEnd {
    let prefix = shared.prefix.as_str();
    let start = i64::try_from(applied.saturating_add(1)).unwrap_or(i64::MAX);
    let options = WatchOptions::new().with_prefix().with_start_revision(start);
    let mut stream =
        match tokio::time::timeout(attempt_timeout, client.watch(prefix, Some(options))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return WatchEnd::Lost(format!("etcd watch of `{prefix}`: {e}")),
            Err(_) => {
                return WatchEnd::Lost(format!(
                    "etcd watch of `{prefix}`: no answer within {} ms",
                    attempt_timeout.as_millis()
                ))
            }
        };
    // When the progress request went out unanswered, if it did.
    let mut asked_at: Option<Instant> = None;
    loop {
        let silence = match asked_at {
            Some(asked) => attempt_timeout.saturating_sub(asked.elapsed()),
            None => PROGRESS_EVERY,
        };
        let message = match tokio::time::timeout(silence, stream.message()).await {
            Ok(message) => message,
            Err(_) if asked_at.is_some() => {
                return WatchEnd::Lost(format!(
                    "etcd watch of `{prefix}`: the member answered nothing within {} ms (hung?)",
                    attempt_timeout.as_millis()
                ))
            }
            Err(_) => {
                asked_at = Some(Instant::now());
                if let Err(e) = stream.request_progress().await {
                    return WatchEnd::Lost(format!("etcd watch of `{prefix}`: {e}"));
                }
                continue;
            }
        };
        asked_at = None;
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return WatchEnd::Lost(format!("etcd closed the watch of `{prefix}`")),
            Err(e) => return WatchEnd::Lost(format!("etcd watch of `{prefix}`: {e}")),
        };
        if response.compact_revision() > 0 {
            return WatchEnd::Compacted(response.compact_revision());
        }
        if response.canceled() {
            let reason = response.cancel_reason();
            // The member lost its leader (`require_leader`): another member may still have one,
            // so this is a lost member, not a canceled watch to list again.
            if reason.contains("no leader") {
                return WatchEnd::Lost(format!("etcd watch of `{prefix}`: {reason}"));
            }
            return WatchEnd::Canceled(reason.to_owned());
        }
        if response.created() {
            // etcd sends the events after `applied` right behind the creation.
            shared.set_ready();
            *established = true;
        }
        if response.events().is_empty() {
            if !response.created() {
                // The answer to a progress request: the member is alive.
                bump(&shared.counters.progress_notifications);
            }
            continue;
        }
        let mut next = (**shared.view.borrow()).clone();
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => match decode(prefix, kv) {
                    Ok((name, policy)) => {
                        next.policies.insert(name, policy);
                    }
                    Err(reason) => {
                        tracing::warn!(%reason, "ignoring an unreadable policy in etcd");
                        remove_key(&mut next.policies, prefix, kv.key());
                    }
                },
                EventType::Delete => remove_key(&mut next.policies, prefix, kv.key()),
            }
            // A delete event's key carries the revision of the delete.
            let event_revision = revision_of(kv).unwrap_or(0);
            next.version = next.version.max(event_revision);
            *applied = (*applied).max(event_revision);
        }
        bump(&shared.counters.event_batches);
        shared.view.send_replace(Arc::new(next));
    }
}

/// Drops the policy stored under `key`, if the key is one of `prefix`'s.
fn remove_key<V>(policies: &mut BTreeMap<String, V>, prefix: &str, key: &[u8]) {
    if let Some(name) = String::from_utf8_lossy(key).strip_prefix(prefix) {
        policies.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_waits_double_up_to_their_bound_and_reset() {
        let mut reconnect = Reconnect::new();
        for base in [100u128, 200, 400, 800, 1600, 3200, 5000, 5000] {
            let wait = reconnect.next_delay().as_millis();
            assert!(
                (base / 2..=base).contains(&wait),
                "{wait} not in [{}, {base}]",
                base / 2
            );
        }
        reconnect.reset();
        assert!(reconnect.next_delay().as_millis() <= 100);
    }
}
