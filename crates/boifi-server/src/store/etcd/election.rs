//! Which replica evaluates guards: etcd's election API (`v3election`: `Campaign`, `Leader`)
//! on a lease of this replica, through the per-member failover of [`Members`].
//!
//! # One term
//! 1. Grant a lease (TTL [`super::EtcdOptions::election_ttl`]; etcd may raise it to its
//!    minimum, the granted TTL is the one used) and keep it alive every third of it, on
//!    whichever member answers.
//! 2. `Campaign` on the election name with this replica's name as the value. etcd's election
//!    server queues one key per lease under the name; `Campaign` returns once every key created
//!    before ours is gone, i.e. once the replica before us lost its lease or resigned.
//! 3. Lead (publish `true`) while the lease is surely alive: `false` as soon as no
//!    renewal got through for two thirds of the TTL, so this replica stops before etcd can let
//!    the lease expire and another replica's `Campaign` return; `true` again when a renewal
//!    gets through (the lease lived, so our key still heads the election). When etcd says the
//!    lease is gone, the term ends: the lease is revoked (best effort: if etcd answers, the
//!    next replica takes over at once) and a new term begins.
//!
//! A renewal needs etcd's leader: while etcd elects a new one (a second or two after its
//! leader died), renewals wait. A TTL of 10 s (the default) rides that out; with the 2 s
//! minimum, the replica pauses evaluating until etcd has a leader again.
//!
//! # Failover
//! The lease grant, every renewal and the revoke go through [`Members::call`]. A `Campaign`
//! waits as long as another replica leads, so it cannot be bounded by the attempt timeout: it
//! runs on one member ([`Members::pick`]) for at most one TTL per attempt. A member that fails
//! the call is passed over and the campaign goes to the next. When an attempt runs out of time
//! (a long wait, or a hung member), etcd's election server resigns the key when the call is
//! cancelled, and the next attempt queues again; before it, `Leader` (through the failover)
//! tells whether the lost answer had made this replica the leader. `Campaign` on a lease whose
//! key already exists resumes that key, so an attempt sent twice never queues the lease twice.
//!
//! # Bound
//! When the leading replica is killed, its lease expires at most one TTL after its last
//! renewal, etcd deletes its key (its expiry check runs every 500 ms), and the next replica's
//! pending `Campaign` returns: leadership moves within the TTL plus about a second.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::LeaderKey;
use tokio::sync::watch;
use tokio::time::Instant;

use super::members::{Members, Retry};
use crate::store::StoreError;

/// The election's name (a key prefix; etcd's election server keys `<name>/<lease hex>`).
pub const GUARD_ELECTION_NAME: &str = "/boifi/elections/guards";

/// Default TTL of the election lease: how long a killed leader holds the guards.
pub const DEFAULT_ELECTION_TTL: Duration = Duration::from_secs(10);

/// Pause after a failed term (etcd unreachable) before the next.
const TERM_PAUSE: Duration = Duration::from_millis(500);

/// Pause between renewals after a failed one.
const RENEW_RETRY: Duration = Duration::from_millis(250);

/// The election's settings.
#[derive(Debug, Clone)]
pub(super) struct Election {
    pub(super) name: String,
    /// This replica's name: the value of its key, what other replicas see as the leader.
    pub(super) replica: String,
    pub(super) ttl: Duration,
    pub(super) request_timeout: Duration,
}

/// Runs terms forever, publishing on `leading` whether this replica leads.
pub(super) async fn run_election(
    members: Arc<Members>,
    election: Election,
    leading: watch::Sender<bool>,
) {
    loop {
        let reason = match term(&members, &election, &leading).await {
            Ok(()) => "the lease could not be kept alive".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::debug!(%reason, "guard election term ended");
        tokio::time::sleep(TERM_PAUSE).await;
    }
}

/// Ends the keep-alive task when the term ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One term: lease, campaign, lead until the lease is in doubt. `Ok` when the lease was lost.
async fn term(
    members: &Arc<Members>,
    election: &Election,
    leading: &watch::Sender<bool>,
) -> Result<(), StoreError> {
    let asked = Instant::now();
    let wanted_ttl = i64::try_from(election.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    let granted = members
        .call(
            "election lease grant",
            Retry::Safe,
            asked + election.request_timeout,
            |client| async move { client.lease_client().grant(wanted_ttl, None).await },
        )
        .await?
        .value;
    let lease = granted.id();
    let ttl = Duration::from_secs(u64::try_from(granted.ttl()).unwrap_or(0).max(1));
    // The lease surely lives until a TTL after the request that granted or renewed it was sent.
    let (renewed_tx, mut renewed) = watch::channel(Some(asked));
    let _keeper = AbortOnDrop(tokio::spawn(keep_alive(
        Arc::clone(members),
        lease,
        ttl,
        renewed_tx,
    )));
    let outcome = async {
        let key = tokio::select! {
            key = campaign(members, election, lease, ttl) => key?,
            _ = renewed.wait_for(Option::is_none) => return Ok(()),
        };
        tracing::info!(
            replica = %election.replica,
            lease,
            revision = key.rev(),
            ttl_s = ttl.as_secs(),
            "evaluating guards: this replica leads the guard election"
        );
        // Lead while a renewal got through less than two thirds of the TTL ago. In doubt (etcd
        // electing its own leader takes a second or two), stop, and lead again when a renewal
        // gets through: the lease, and so our key at the head of the election, was still alive.
        loop {
            let Some(sent) = *renewed.borrow_and_update() else {
                tracing::warn!(lease, "no longer evaluating guards: the election lease expired");
                return Ok(());
            };
            let in_doubt = sent + ttl * 2 / 3;
            if Instant::now() < in_doubt && !leading.send_replace(true) {
                tracing::info!(lease, "evaluating guards again: the election lease was renewed");
            }
            tokio::select! {
                () = tokio::time::sleep_until(in_doubt) => {
                    leading.send_replace(false);
                    tracing::warn!(
                        lease,
                        since_ms = sent.elapsed().as_millis(),
                        "not evaluating guards: no renewal of the election lease got through in time"
                    );
                    if renewed.changed().await.is_err() {
                        return Ok(());
                    }
                }
                changed = renewed.changed() => if changed.is_err() { return Ok(()) },
            }
        }
    }
    .await;
    leading.send_replace(false);
    revoke(members, lease, election.request_timeout).await;
    outcome
}

/// Campaigns with `lease` until this replica leads, one member at a time, each attempt at most
/// `ttl` (see the module's failover notes).
async fn campaign(
    members: &Members,
    election: &Election,
    lease: i64,
    ttl: Duration,
) -> Result<LeaderKey, StoreError> {
    let mut skip = None;
    loop {
        let (index, client) = members
            .pick(skip)
            .ok_or_else(|| StoreError::Unavailable("no etcd member to campaign on".to_owned()))?;
        let mut elections = client.election_client();
        let attempt = elections.campaign(election.name.as_str(), election.replica.as_str(), lease);
        match tokio::time::timeout(ttl, attempt).await {
            Ok(Ok(mut answer)) => {
                members.answered(index);
                if let Some(key) = answer.take_leader() {
                    return Ok(key);
                }
                skip = None;
            }
            Ok(Err(e)) => {
                members.failed(index, &format!("guard election campaign: {e}"));
                skip = Some(index);
                tokio::time::sleep(RENEW_RETRY).await;
            }
            Err(_) => {
                skip = None;
                // Still queued, or the member hung. Did the lost answer make us the leader?
                if leader_lease(members, election).await == Some(lease) {
                    return Ok(LeaderKey::new().with_lease(lease));
                }
            }
        }
    }
}

/// The lease of the election's current leader key, through the failover (`None`: no leader, or
/// etcd did not answer).
async fn leader_lease(members: &Members, election: &Election) -> Option<i64> {
    let deadline = Instant::now() + election.request_timeout;
    let leader = leader_key(members, &election.name, deadline).await.ok()??;
    Some(leader.lease())
}

/// The election's leader key (its value is the leading replica's name); `None` when nobody
/// leads.
pub(super) async fn leader_key(
    members: &Members,
    name: &str,
    deadline: Instant,
) -> Result<Option<etcd_client::KeyValue>, StoreError> {
    let answer = members
        .call(
            "election leader",
            Retry::Safe,
            deadline,
            |client| async move {
                match client.election_client().leader(name).await {
                    Ok(mut answer) => Ok(answer.take_kv()),
                    // etcd's election server answers an empty election with this error, which is
                    // an answer, not a member failure.
                    Err(etcd_client::Error::GRpcStatus(status))
                        if status.message().contains("election: no leader") =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
    Ok(answer.value)
}

/// Renews `lease` every third of `ttl` (every [`RENEW_RETRY`] after a failure), publishing when
/// each successful renewal was sent; publishes `None` and ends when etcd says the lease is gone.
async fn keep_alive(
    members: Arc<Members>,
    lease: i64,
    ttl: Duration,
    renewed: watch::Sender<Option<Instant>>,
) {
    let every = ttl / 3;
    let mut pause = every;
    loop {
        tokio::time::sleep(pause).await;
        let sent = Instant::now();
        let answer = members
            .call(
                "election lease keep-alive",
                Retry::Safe,
                sent + every,
                |client| async move {
                    let (mut keeper, mut answers) = client.lease_client().keep_alive(lease).await?;
                    keeper.keep_alive().await?;
                    answers.message().await
                },
            )
            .await;
        match answer {
            Ok(answer) => match answer.value {
                Some(renewal) if renewal.ttl() > 0 => {
                    renewed.send_replace(Some(sent));
                    pause = every;
                }
                _ => {
                    tracing::warn!(lease, "the guard election lease expired");
                    renewed.send_replace(None);
                    return;
                }
            },
            Err(e) => {
                tracing::info!(lease, error = %e, "the guard election lease was not renewed");
                pause = RENEW_RETRY;
            }
        }
    }
}

/// Revokes `lease` if etcd answers in time: its key goes, and the next replica leads at once.
async fn revoke(members: &Members, lease: i64, timeout: Duration) {
    let revoked = members
        .call(
            "election lease revoke",
            Retry::Safe,
            Instant::now() + timeout,
            |client| async move { client.lease_client().revoke(lease).await },
        )
        .await;
    if let Err(e) = revoked {
        tracing::debug!(lease, error = %e, "the guard election lease was not revoked; it expires by itself");
    }
}
