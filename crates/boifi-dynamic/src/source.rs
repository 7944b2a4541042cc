//! Where a filter configuration's policies come from: one poller thread per control plane and
//! identity, owned by the module, long-polls `/v1/config` and hands each answer to the engine
//! ([`ConfigSync::on_answer`], the same interpretation the Wasm filter runs), then does what
//! its [`Step`] says: publishes a compiled set as one `Arc` that every worker loads per request
//! without a lock (`arc_swap`: a load is a few atomic operations, no syscall, no contention),
//! counts, logs, and polls again now or after the backoff.
//!
//! Fail-open: until the first answer the set is empty (every request passes); after a failure
//! the last good set stays, and the poller retries with jittered exponential backoff, forever.
//! Expiry needs no control plane: `decide` compares each rule's `expires_at` with the clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use boifi_core::identity::Identity;
use boifi_core::rng::XorShift64Star;
use boifi_core::wire::compact;

use crate::abi::{self, ConfigScheduler, LogLevel};
use crate::config::NativeConfig;
use crate::credential::{CredentialFile, Notice};
use boifi_engine::metrics::Counter;
use boifi_engine::sync::{ConfigSync, Install, LogLevel as SyncLogLevel, Next, Step};
use boifi_engine::PolicySet;

/// The newest compiled set: each worker's engine installs it when `seq` differs from its own.
#[derive(Debug, Default)]
pub struct Published {
    /// Publication number (0: nothing yet).
    pub seq: u64,
    /// The config version; `None` before the first answer.
    pub version: Option<u64>,
    /// The compiled set (a shared proxy's: its policy list), shared by every worker.
    pub set: PolicySet,
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
    heartbeat_lapses: AtomicU64,
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
    /// Times policies were left out because their heartbeat bound lapsed.
    pub heartbeat_lapses: u64,
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
    /// Counts what the engine said to count (the poller's counters only).
    fn add(&self, counter: Counter) {
        let atomic = match counter {
            Counter::ConfigUpdates => &self.updates,
            Counter::ConfigErrors => &self.errors,
            Counter::PollFailures => &self.poll_failures,
            Counter::HeartbeatLapses => &self.heartbeat_lapses,
            // The request path counts the others, on its worker.
            _ => return,
        };
        atomic.fetch_add(1, Ordering::Relaxed);
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
            heartbeat_lapses: self.stats.heartbeat_lapses.load(Ordering::Relaxed),
        };
        let delta = StatsDelta {
            updates: total.updates.saturating_sub(reported.updates),
            errors: total.errors.saturating_sub(reported.errors),
            poll_failures: total.poll_failures.saturating_sub(reported.poll_failures),
            heartbeat_lapses: total
                .heartbeat_lapses
                .saturating_sub(reported.heartbeat_lapses),
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
        "{}|{}|{}",
        config.control_plane_address,
        config
            .control_plane_token_file
            .as_deref()
            .unwrap_or_default(),
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
    let mut sync =
        ConfigSync::new(identity.clone(), plugin).with_host_faults(crate::filter::NATIVE_FAULTS);
    let mut token_file = config
        .control_plane_token_file
        .as_deref()
        .map(CredentialFile::new);
    loop {
        // Every configuration using this source is gone: the thread ends.
        let Some(src) = source.upgrade() else { return };
        drop(src);
        if let Some(file) = token_file.as_mut() {
            let (credential, notice) = file.refresh();
            if let Some((notice, line)) = notice {
                let level = match notice {
                    Notice::Info => LogLevel::Info,
                    Notice::Warn => LogLevel::Warn,
                };
                abi::log(level, &line);
            }
            sync.set_credential(credential);
        }
        let url = format!(
            "http://{}{}",
            config.control_plane_address,
            sync.request_path()
        );
        let mut request = agent
            .get(&url)
            .header("host", &plugin.control_plane_authority)
            .header("accept", compact::MEDIA_TYPE);
        if let Some(authorization) = sync.authorization() {
            request = request.header("authorization", authorization);
        }
        let answer = request.call();
        let received = answer.and_then(|response| {
            let status = response.status().as_u16().to_string();
            response
                .into_body()
                .read_to_vec()
                .map(|body| (status, body))
        });
        let Some(src) = source.upgrade() else { return };
        // What the answer means is the engine's to say; this thread only does what it says.
        let (now, draw) = (now_ms(), rng.next_u64());
        let step = match &received {
            Ok((status, body)) => sync.on_answer(Some(status.as_bytes()), Some(body), now, draw),
            Err(e) => {
                let address = &config.control_plane_address;
                sync.on_failed_call(
                    &format!("config request to {address} failed ({e})"),
                    now,
                    draw,
                )
            }
        };
        let next = take_step(&src, step);
        if src.stats.changed.load(Ordering::Acquire) {
            src.notify();
        }
        drop(src);
        if let Next::RetryAt(t) = next {
            std::thread::sleep(Duration::from_millis(t.saturating_sub(now_ms())));
        }
    }
}

/// Does what the engine made of an answer: log, publish a new set to every worker, count.
fn take_step(src: &PolicySource, step: Step) -> Next {
    for line in &step.log {
        let level = match line.level {
            SyncLogLevel::Debug => LogLevel::Debug,
            SyncLogLevel::Info => LogLevel::Info,
            SyncLogLevel::Warn => LogLevel::Warn,
        };
        if abi::log_enabled(level) {
            abi::log(level, &line.message);
        }
    }
    if let Some(Install { version, set, .. }) = step.install {
        // Only this thread stores, so load-then-store cannot lose a publication.
        let seq = src.published.load().seq.wrapping_add(1).max(1);
        src.published.store(Arc::new(Published {
            seq,
            version: Some(version),
            set,
        }));
    }
    if let Some(counter) = step.counter {
        src.stats.add(counter);
    }
    if step.heartbeat_lapsed {
        src.stats.add(Counter::HeartbeatLapses);
    }
    step.next
}

impl Drop for PolicySource {
    fn drop(&mut self) {
        let mut sources = SOURCES.lock().unwrap_or_else(PoisonError::into_inner);
        sources.retain(|(k, weak)| *k != self.key || weak.strong_count() > 0);
    }
}
