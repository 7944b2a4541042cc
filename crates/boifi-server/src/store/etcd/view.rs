//! The follower of the etcd view: lists the prefix, watches it from the listed revision,
//! applies every event to the in-memory [`Snapshot`] and publishes it; relists when etcd
//! cancels the watch or compacts its revision, and resumes after the last applied revision
//! (waiting with [`Reconnect`]) when the connection is lost. The writes are the store's
//! (`super`); this module only reads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use boifi_core::backoff::Backoff;
use boifi_core::rng::{splitmix64, XorShift64Star};
use etcd_client::{EventType, GetOptions, KvClient, WatchClient, WatchOptions};
use tokio::sync::watch;

use super::{decode, header_revision, revision_of};
use crate::store::Snapshot;

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) lists: AtomicU64,
    pub(super) compactions: AtomicU64,
    pub(super) cancels: AtomicU64,
    pub(super) losses: AtomicU64,
    pub(super) event_batches: AtomicU64,
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

/// The background task's connections, with a message limit fit for a full list.
pub(super) struct ViewClients {
    pub(super) kv: KvClient,
    pub(super) watch: WatchClient,
}

/// The background task: list, watch, apply, publish; relist or resume as the watch ends.
pub(super) async fn maintain_view(
    mut clients: ViewClients,
    shared: Arc<Shared>,
    request_timeout: Duration,
) {
    let mut backoff = Reconnect::new();
    // `Some(r)`: every change up to revision `r` is applied; resume the watch after it.
    let mut resume_after: Option<u64> = None;
    loop {
        let mut applied = match resume_after {
            Some(revision) => revision,
            None => match list(&mut clients.kv, &shared, request_timeout).await {
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
        match follow(
            &mut clients.watch,
            &shared,
            &mut applied,
            request_timeout,
            &mut backoff,
        )
        .await
        {
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
                tracing::warn!(prefix = %shared.prefix, %reason, "etcd watch lost; retrying");
                shared.set_lost(format!(
                    "{reason}; serving the last view (version {})",
                    shared.version()
                ));
                resume_after = Some(applied);
                backoff.wait().await;
            }
        }
    }
}

/// Lists the prefix and publishes it as the view; returns the header revision.
async fn list(
    client: &mut KvClient,
    shared: &Shared,
    request_timeout: Duration,
) -> Result<u64, String> {
    let prefix = shared.prefix.as_str();
    let response = tokio::time::timeout(
        request_timeout,
        client.get(prefix, Some(GetOptions::new().with_prefix())),
    )
    .await
    .map_err(|_| {
        format!(
            "etcd list of `{prefix}`: no answer within {} ms",
            request_timeout.as_millis()
        )
    })?
    .map_err(|e| format!("etcd list of `{prefix}`: {e}"))?;
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
    client: &mut WatchClient,
    shared: &Shared,
    applied: &mut u64,
    request_timeout: Duration,
    backoff: &mut Reconnect,
) -> WatchEnd {
    let prefix = shared.prefix.as_str();
    let start = i64::try_from(applied.saturating_add(1)).unwrap_or(i64::MAX);
    let options = WatchOptions::new().with_prefix().with_start_revision(start);
    let mut stream =
        match tokio::time::timeout(request_timeout, client.watch(prefix, Some(options))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return WatchEnd::Lost(format!("etcd watch of `{prefix}`: {e}")),
            Err(_) => {
                return WatchEnd::Lost(format!(
                    "etcd watch of `{prefix}`: no answer within {} ms",
                    request_timeout.as_millis()
                ))
            }
        };
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return WatchEnd::Lost(format!("etcd closed the watch of `{prefix}`")),
            Err(e) => return WatchEnd::Lost(format!("etcd watch of `{prefix}`: {e}")),
        };
        if response.compact_revision() > 0 {
            return WatchEnd::Compacted(response.compact_revision());
        }
        if response.canceled() {
            return WatchEnd::Canceled(response.cancel_reason().to_owned());
        }
        if response.created() {
            // etcd sends the events after `applied` right behind the creation.
            shared.set_ready();
            backoff.reset();
        }
        if response.events().is_empty() {
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
