//! Where a filter configuration's policies come from: one poller thread per control plane and
//! identity, owned by the module, long-polls `/v1/config`, compiles each answer with boifi-core
//! and publishes it as one `Arc` that every worker loads per request without a lock
//! (`arc_swap`: a load is a few atomic operations, no syscall, no contention).
//!
//! Fail-open: until the first answer the set is empty (every request passes); after a failure
//! the last good set stays, and the poller retries with jittered exponential backoff, forever.
//! Expiry needs no control plane: `decide` compares each rule's `expires_at` with the clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use boifi_core::compiled::CompiledPolicySet;
use boifi_core::identity::Identity;
use boifi_core::rng::XorShift64Star;
use boifi_core::wire::compact;

use crate::abi::{self, ConfigScheduler, LogLevel};
use crate::config::NativeConfig;
use boifi_engine::sync::{classify, compile_response, ConfigSync, Next, PollOutcome, SyncError};

/// The newest compiled set: each worker's engine installs it when `seq` differs from its own.
#[derive(Debug, Default)]
pub struct Published {
    /// Publication number (0: nothing yet).
    pub seq: u64,
    /// The config version; `None` before the first answer.
    pub version: Option<u64>,
    /// The compiled set for this sidecar, shared by every worker.
    pub set: Arc<CompiledPolicySet>,
}

/// What the poller counts. Envoy's counters and gauges can only be changed from a hook, so the
/// poller posts an event to each configuration's main-thread scheduler after a change, and the
/// request path also reports, at most once a second, the active-policy gauge (which follows
/// expiry without any new version): [`PolicySource::take_report`].
#[derive(Debug, Default)]
struct PollStats {
    updates: AtomicU64,
    errors: AtomicU64,
    poll_failures: AtomicU64,
    changed: AtomicBool,
    next_refresh_ms: AtomicU64,
    reported: Mutex<StatsDelta>,
}

/// Increases of the poller's counters since they were last reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsDelta {
    /// Policy sets applied.
    pub updates: u64,
    /// Answers that could not be used.
    pub errors: u64,
    /// Requests that failed (unreachable, timeout, bad status).
    pub poll_failures: u64,
}

/// What to write to Envoy's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Counter increases.
    pub delta: StatsDelta,
    /// Policies with a rule live now.
    pub active: u64,
    /// The held config version.
    pub version: Option<u64>,
}

/// How often the request path refreshes the active-policy gauge.
const REFRESH_MS: u64 = 1_000;

/// The event a configuration receives when the poller's figures changed.
pub const STATS_CHANGED: u64 = 1;

impl PollStats {
    fn add(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.store(true, Ordering::Release);
    }
}

/// One control plane + identity: the published set and the poller's counters.
#[derive(Debug)]
pub struct PolicySource {
    key: String,
    published: ArcSwap<Published>,
    stats: PollStats,
    /// Main-thread schedulers of the configurations using this source, by configuration id.
    listeners: Mutex<Vec<(u64, ConfigScheduler)>>,
}

impl PolicySource {
    /// The current set (lock-free).
    pub fn load(&self) -> arc_swap::Guard<Arc<Published>> {
        self.published.load()
    }

    /// What to report, once per change or refresh period, to the first caller (`now_ms`:
    /// `None` where only counter changes matter). A few atomic loads when there is nothing.
    pub fn take_report(&self, now: Option<u64>) -> Option<Report> {
        let due = |now: Option<u64>| {
            now.is_some_and(|n| n >= self.stats.next_refresh_ms.load(Ordering::Relaxed))
        };
        if !self.stats.changed.load(Ordering::Acquire) && !due(now) {
            return None;
        }
        // Whoever holds the lock reports; the others skip (never wait on the request path).
        let mut reported = self.stats.reported.try_lock().ok()?;
        if !self.stats.changed.swap(false, Ordering::AcqRel) && !due(now) {
            return None;
        }
        let now = now.unwrap_or_else(now_ms);
        self.stats
            .next_refresh_ms
            .store(now.saturating_add(REFRESH_MS), Ordering::Relaxed);
        let total = StatsDelta {
            updates: self.stats.updates.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
            poll_failures: self.stats.poll_failures.load(Ordering::Relaxed),
        };
        let delta = StatsDelta {
            updates: total.updates.saturating_sub(reported.updates),
            errors: total.errors.saturating_sub(reported.errors),
            poll_failures: total.poll_failures.saturating_sub(reported.poll_failures),
        };
        *reported = total;
        drop(reported);
        let held = self.published.load();
        Some(Report {
            delta,
            active: u64::try_from(held.set.active_policy_count(now)).unwrap_or(u64::MAX),
            version: held.version,
        })
    }

    /// Posts [`STATS_CHANGED`] to configuration `id` whenever the figures change, until
    /// [`PolicySource::unsubscribe`].
    pub fn subscribe(&self, id: u64, scheduler: ConfigScheduler) {
        self.lock_listeners().push((id, scheduler));
    }

    /// Stops the events to configuration `id` and deletes its scheduler. Called from the
    /// configuration's destroy hook: once this returns, the poller never touches it again.
    pub fn unsubscribe(&self, id: u64) {
        self.lock_listeners().retain(|(i, _)| *i != id);
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, Vec<(u64, ConfigScheduler)>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        for (_, scheduler) in self.lock_listeners().iter() {
            scheduler.commit(STATS_CHANGED);
        }
    }
}

/// Live sources, so filter configurations with the same control plane and identity (every
/// worker, a listener update that replaces a config) share one poller thread.
static SOURCES: Mutex<Vec<(String, Weak<PolicySource>)>> = Mutex::new(Vec::new());

/// The source for `config` and `identity`, starting its poller when it is new.
pub fn source_for(config: &NativeConfig, identity: &Identity) -> Arc<PolicySource> {
    let key = format!(
        "{}|{}",
        config.control_plane_address,
        ConfigSync::new(identity.clone(), &config.plugin).request_path()
    );
    let mut sources = SOURCES.lock().unwrap_or_else(PoisonError::into_inner);
    sources.retain(|(_, weak)| weak.strong_count() > 0);
    if let Some(existing) = sources
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, weak)| weak.upgrade())
    {
        return existing;
    }
    let source = Arc::new(PolicySource {
        key: key.clone(),
        published: ArcSwap::from_pointee(Published::default()),
        stats: PollStats::default(),
        listeners: Mutex::new(Vec::new()),
    });
    sources.push((key, Arc::downgrade(&source)));
    drop(sources);
    start_poller(config.clone(), identity.clone(), Arc::downgrade(&source));
    source
}

fn start_poller(config: NativeConfig, identity: Identity, source: Weak<PolicySource>) {
    let spawned = std::thread::Builder::new()
        .name("boifi-poller".into())
        .spawn(move || poll_forever(&config, identity, &source));
    if let Err(e) = spawned {
        abi::log(
            LogLevel::Error,
            &format!("boifi: cannot start the poller thread ({e}); the filter passes all traffic through"),
        );
    }
}

/// Milliseconds since the Unix epoch (the clock policies' windows and expiry use).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn poll_forever(config: &NativeConfig, identity: Identity, source: &Weak<PolicySource>) {
    let plugin = &config.plugin;
    if identity.is_partial() {
        abi::log(
            LogLevel::Warn,
            &format!(
                "boifi: partial identity {identity} (environment): only wildcard policies apply"
            ),
        );
    } else {
        abi::log(
            LogLevel::Info,
            &format!("boifi: identity {identity} (environment)"),
        );
    }
    abi::log(
        LogLevel::Info,
        &format!(
            "boifi: polling http://{} for {identity}",
            config.control_plane_address
        ),
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(plugin.request_timeout_ms)))
        .user_agent("boifi-dynamic")
        .build()
        .into();
    let mut rng = XorShift64Star::new(now_ms() ^ u64::from(std::process::id()));
    let mut sync = ConfigSync::new(identity.clone(), plugin);
    loop {
        // Every configuration using this source is gone: the thread ends.
        let Some(src) = source.upgrade() else { return };
        drop(src);
        let url = format!(
            "http://{}{}",
            config.control_plane_address,
            sync.request_path()
        );
        let answer = agent
            .get(&url)
            .header("host", &plugin.control_plane_authority)
            .header("accept", compact::MEDIA_TYPE)
            .call();
        let outcome = match answer {
            Ok(response) => {
                let status = response.status().as_u16().to_string();
                let body = response.into_body().read_to_vec();
                match body {
                    Ok(body) => classify(Some(status.as_bytes()), Some(&body)),
                    Err(_) => Err(SyncError::NoResponse),
                }
            }
            Err(_) => Err(SyncError::NoResponse),
        };
        let Some(src) = source.upgrade() else { return };
        let now = now_ms();
        let next = match outcome {
            Ok(PollOutcome::Updated { response }) => {
                match compile_response(&response, &identity, now) {
                    Ok((version, set)) => {
                        let names = set.policy_names().join(", ");
                        let count = set.policy_names().len();
                        // Only this thread stores, so load-then-store cannot lose a publication.
                        let seq = src.published.load().seq.wrapping_add(1).max(1);
                        src.published.store(Arc::new(Published {
                            seq,
                            version: Some(version),
                            set: Arc::new(set),
                        }));
                        src.stats.add(&src.stats.updates);
                        abi::log(
                        LogLevel::Info,
                        &format!("boifi: applied config version {version}: {count} policies for this sidecar [{names}]"),
                    );
                        recovered(&sync);
                        sync.succeeded(Some(version), now)
                    }
                    Err(e) => {
                        src.stats.add(&src.stats.errors);
                        abi::log(
                            LogLevel::Warn,
                            &format!("boifi: keeping the previous policies: {e}"),
                        );
                        sync.failed(now, rng.next_u64())
                    }
                }
            }
            Ok(PollOutcome::Unchanged) => {
                recovered(&sync);
                sync.succeeded(None, now)
            }
            Err(e) => {
                if matches!(e, SyncError::Body(_)) {
                    src.stats.add(&src.stats.errors);
                } else {
                    src.stats.add(&src.stats.poll_failures);
                }
                let next = sync.failed(now, rng.next_u64());
                if let Next::RetryAt(t) = next {
                    let level = if sync.failures() <= 1 {
                        LogLevel::Warn
                    } else {
                        LogLevel::Debug
                    };
                    if abi::log_enabled(level) {
                        abi::log(
                            level,
                            &format!(
                                "boifi: config request to {} failed ({e}); keeping the last policies, retry in {} ms (failure {})",
                                config.control_plane_address,
                                t.saturating_sub(now),
                                sync.failures()
                            ),
                        );
                    }
                }
                next
            }
        };
        if src.stats.changed.load(Ordering::Acquire) {
            src.notify();
        }
        drop(src);
        if let Next::RetryAt(t) = next {
            std::thread::sleep(Duration::from_millis(t.saturating_sub(now_ms())));
        }
    }
}

fn recovered(sync: &ConfigSync) {
    let failures = sync.failures();
    if failures > 0 {
        abi::log(
            LogLevel::Info,
            &format!("boifi: the control plane answers again after {failures} failed attempts"),
        );
    }
}

impl Drop for PolicySource {
    fn drop(&mut self) {
        let mut sources = SOURCES.lock().unwrap_or_else(PoisonError::into_inner);
        sources.retain(|(k, weak)| *k != self.key || weak.strong_count() > 0);
    }
}
