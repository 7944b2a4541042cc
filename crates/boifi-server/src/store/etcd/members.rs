//! One etcd client per member, with failover: every etcd call of the store goes through
//! [`Members::call`], which sends it to the member that answered last, and when that member
//! refuses (`Unavailable`: stopped, no leader, leader changed), cannot be reached, or does not
//! answer within the attempt timeout, marks it down and sends the call to the next member,
//! until one answers or the operation's deadline passes.
//!
//! # Why not `etcd-client`'s balanced channel
//! `Client::connect` with several endpoints builds one tonic channel balanced over all of them
//! (tower's power-of-two-choices). The balancer picks an endpoint per request and never retries:
//! a request it hands to a dead member fails (etcdv3/etcd-client#39), and a hung member (one
//! that accepted the connection and stopped answering) holds every request sent to it until the
//! caller's timeout. etcd's Go client puts a retry interceptor over gRPC's round-robin balancer:
//! immutable calls (`Range`, `Watch`, lease keep-alives) are retried on `Unavailable`, mutable
//! ones (`Put`, `Txn`, `DeleteRange`) only when the request never left the client (`there is
//! no address available`). Here each member has its own client (its own HTTP/2 connection),
//! and the caller says whether a call may be sent again ([`Retry`]); the store makes its
//! writes safe to resend by their revision conditions (see `super`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::time::Instant;

use crate::store::StoreError;

/// How long a member that failed is passed over while another member answers.
const DOWN_FOR: Duration = Duration::from_secs(3);

/// Pause after every member failed once, before the next round (an election takes about a
/// second: the round keeps trying until the deadline).
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// Whether a call may be sent again after an attempt whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Reads, watches, lease grants and keep-alives, and writes whose condition makes a second
    /// application fail: retried on any member failure.
    Safe,
    /// Writes that could apply twice: retried only when the failed attempt was certainly not
    /// sent (no connection).
    IfNotSent,
}

/// What a call answered, and whether an earlier attempt might have been applied too.
#[derive(Debug)]
pub(super) struct Answer<T> {
    pub(super) value: T,
    /// An attempt before the one that answered timed out or failed after it was sent: a write
    /// might have been applied by it.
    pub(super) uncertain: bool,
}

/// Counters of the failover, for `/metrics`.
#[derive(Debug, Default)]
pub(super) struct FailoverCounters {
    /// Attempts sent again after a failed one (to the same or another member).
    pub(super) retries: AtomicU64,
    /// Attempts sent to another member than the one that failed.
    pub(super) failovers: AtomicU64,
    /// Calls that failed on every member until their deadline.
    pub(super) exhausted: AtomicU64,
}

struct Member {
    endpoint: String,
    client: Client,
    /// Until when the member is passed over, after a failure.
    down_until: Mutex<Option<Instant>>,
}

/// Every member's client, the member calls go to first, and the failover counters.
pub(super) struct Members {
    members: Vec<Member>,
    /// The member that answered last: calls go there first (like the Go client's pinned
    /// endpoint), so a healthy cluster sees one connection per replica doing the work.
    preferred: AtomicUsize,
    attempt_timeout: Duration,
    /// Whether the last call that ended got an answer from some member.
    answering: AtomicBool,
    last_failure: Mutex<String>,
    pub(super) counters: FailoverCounters,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoints: Vec<&str> = self.members.iter().map(|m| m.endpoint.as_str()).collect();
        f.debug_struct("Members")
            .field("endpoints", &endpoints)
            .field("preferred", &self.preferred.load(Ordering::Relaxed))
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Members {
    /// One client per endpoint. Connections are made lazily: a member down at start is no error.
    pub(super) async fn connect(
        endpoints: &[String],
        options: &ConnectOptions,
        attempt_timeout: Duration,
    ) -> Result<Members, StoreError> {
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let client = Client::connect([endpoint.as_str()], Some(options.clone()))
                .await
                .map_err(|e| StoreError::Unavailable(format!("etcd endpoint `{endpoint}`: {e}")))?;
            members.push(Member {
                endpoint: endpoint.clone(),
                client,
                down_until: Mutex::new(None),
            });
        }
        if members.is_empty() {
            return Err(StoreError::Unavailable(
                "no etcd endpoints given (`--etcd-endpoints`)".to_owned(),
            ));
        }
        Ok(Members {
            members,
            preferred: AtomicUsize::new(0),
            attempt_timeout,
            answering: AtomicBool::new(true),
            last_failure: Mutex::new(String::new()),
            counters: FailoverCounters::default(),
        })
    }

    /// The bound of one attempt on one member.
    pub(super) fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// Whether the last call that ended was answered; if not, why.
    pub(super) fn failure(&self) -> Option<String> {
        if self.answering.load(Ordering::Relaxed) {
            return None;
        }
        Some(lock(&self.last_failure).clone())
    }

    /// Member indexes in the order to try them: the preferred member, then the others in turn,
    /// members marked down after every member that is not.
    fn order(&self) -> Vec<usize> {
        let count = self.members.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        let now = Instant::now();
        let (mut up, mut down): (Vec<usize>, Vec<(Instant, usize)>) = (Vec::new(), Vec::new());
        for index in (0..count).map(|i| (first + i) % count) {
            let until = self
                .members
                .get(index)
                .and_then(|m| *lock(&m.down_until))
                .filter(|until| *until > now);
            match until {
                Some(until) => down.push((until, index)),
                None => up.push(index),
            }
        }
        // The member whose down time ends first is the likeliest to be back.
        down.sort();
        up.extend(down.into_iter().map(|(_, index)| index));
        up
    }

    fn mark_down(&self, index: usize) {
        if let Some(member) = self.members.get(index) {
            *lock(&member.down_until) = Some(Instant::now() + DOWN_FOR);
        }
    }

    fn mark_up(&self, index: usize) {
        if let Some(member) = self.members.get(index) {
            *lock(&member.down_until) = None;
        }
        self.preferred.store(index, Ordering::Relaxed);
        self.answering.store(true, Ordering::Relaxed);
    }

    /// A member to open a stream on (the watch, a lease keep-alive), the preferred one first,
    /// passing over `skip` (the member whose stream just failed) while another is left; its
    /// index is what [`Members::failed`] and [`Members::answered`] take.
    pub(super) fn pick(&self, skip: Option<usize>) -> Option<(usize, Client)> {
        let order = self.order();
        let index = order
            .iter()
            .copied()
            .find(|i| Some(*i) != skip)
            .or_else(|| order.first().copied())?;
        let member = self.members.get(index)?;
        Some((index, member.client.clone()))
    }

    /// A stream on member `index` failed: pass it over for a while and count the failover.
    pub(super) fn failed(&self, index: usize, reason: &str) {
        self.mark_down(index);
        bump(&self.counters.retries);
        bump(&self.counters.failovers);
        tracing::warn!(
            endpoint = self.endpoint(index),
            %reason,
            "etcd member failed; failing over"
        );
    }

    /// A stream on member `index` answered.
    pub(super) fn answered(&self, index: usize) {
        self.mark_up(index);
    }

    /// The member calls go to first.
    pub(super) fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    pub(super) fn endpoint(&self, index: usize) -> &str {
        self.members.get(index).map_or("", |m| m.endpoint.as_str())
    }

    /// Runs `call` on one member after another until one answers or `deadline` passes, each
    /// attempt bounded by the attempt timeout. A member's refusal that is final (a bad request,
    /// a compacted revision) is returned at once; `retry` says whether an attempt whose outcome
    /// is unknown may be sent again.
    pub(super) async fn call<T, F, Fut>(
        &self,
        what: &str,
        retry: Retry,
        deadline: Instant,
        mut call: F,
    ) -> Result<Answer<T>, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut uncertain = false;
        let mut previous: Option<usize> = None;
        let mut last_error = String::from("no member tried");
        loop {
            for index in self.order() {
                let now = Instant::now();
                if now >= deadline {
                    return Err(self.exhausted(what, &last_error));
                }
                let Some(member) = self.members.get(index) else {
                    continue;
                };
                if let Some(before) = previous {
                    bump(&self.counters.retries);
                    if before != index {
                        bump(&self.counters.failovers);
                    }
                }
                previous = Some(index);
                let bound = self.attempt_timeout.min(deadline - now);
                let outcome = tokio::time::timeout(bound, call(member.client.clone())).await;
                let (error, sent) = match outcome {
                    Ok(Ok(value)) => {
                        self.mark_up(index);
                        return Ok(Answer { value, uncertain });
                    }
                    Ok(Err(e)) => match classify(&e) {
                        Failure::Final => {
                            return Err(StoreError::Unavailable(format!("etcd {what}: {e}")))
                        }
                        Failure::NotSent => (e.to_string(), false),
                        Failure::MaybeApplied => (e.to_string(), true),
                    },
                    Err(_) => (format!("no answer within {} ms", bound.as_millis()), true),
                };
                self.mark_down(index);
                tracing::debug!(endpoint = %member.endpoint, what, %error, "etcd attempt failed");
                last_error = format!("{}: {error}", member.endpoint);
                if sent {
                    uncertain = true;
                    if retry == Retry::IfNotSent {
                        return Err(self.exhausted(what, &last_error));
                    }
                }
            }
            let now = Instant::now();
            // Every member failed this round. When the last call failed the same way, etcd is
            // down or without quorum (not between two leaders): refuse now instead of holding
            // the caller until the deadline. The first call to fail keeps trying to the
            // deadline, which rides out an election.
            if now >= deadline || !self.answering.load(Ordering::Relaxed) {
                return Err(self.exhausted(what, &last_error));
            }
            tokio::time::sleep(ROUND_PAUSE.min(deadline - now)).await;
        }
    }

    fn exhausted(&self, what: &str, last_error: &str) -> StoreError {
        bump(&self.counters.exhausted);
        let reason = format!(
            "etcd {what}: no member answered ({last_error}); etcd may have lost its quorum"
        );
        *lock(&self.last_failure) = reason.clone();
        self.answering.store(false, Ordering::Relaxed);
        StoreError::Unavailable(reason)
    }
}

/// How a failed attempt is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// etcd refused the request for a reason another member would give too.
    Final,
    /// The request never reached a member (no connection): safe to send anywhere.
    NotSent,
    /// The member failed with the request possibly applied (leader changed, stopped, reset).
    MaybeApplied,
}

fn classify(error: &etcd_client::Error) -> Failure {
    use etcd_client::Error;
    use tonic::Code;
    match error {
        Error::TransportError(_) | Error::IoError(_) => Failure::NotSent,
        Error::GRpcStatus(status) => match status.code() {
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal => {
                let message = status.message();
                // No connection could be made, or no leader took the proposal.
                if message.contains("connect")
                    || message.contains("no leader")
                    || message.contains("not capable")
                {
                    Failure::NotSent
                } else {
                    Failure::MaybeApplied
                }
            }
            Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted => {
                Failure::MaybeApplied
            }
            _ => Failure::Final,
        },
        Error::WatchError(_) | Error::LeaseKeepAliveError(_) => Failure::MaybeApplied,
        _ => Failure::Final,
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Locks a mutex, taking over a poisoned one: the values guarded here are plain data that a
/// panicking holder cannot leave half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_members_refusal_is_not_final_and_a_bad_request_is() {
        let refused = etcd_client::Error::GRpcStatus(tonic::Status::unavailable(
            "error trying to connect: tcp connect error: Connection refused",
        ));
        assert_eq!(classify(&refused), Failure::NotSent);
        let no_leader =
            etcd_client::Error::GRpcStatus(tonic::Status::unavailable("etcdserver: no leader"));
        assert_eq!(classify(&no_leader), Failure::NotSent);
        let leader_changed = etcd_client::Error::GRpcStatus(tonic::Status::unavailable(
            "etcdserver: leader changed",
        ));
        assert_eq!(classify(&leader_changed), Failure::MaybeApplied);
        let compacted = etcd_client::Error::GRpcStatus(tonic::Status::out_of_range(
            "etcdserver: mvcc: required revision has been compacted",
        ));
        assert_eq!(classify(&compacted), Failure::Final);
    }
}
