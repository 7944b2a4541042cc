//! Delay faults without blocking a worker: one timer thread per Envoy process holds each
//! delayed stream's Envoy scheduler until its deadline, then commits it, which posts
//! `on_http_filter_scheduled` to the stream's own worker. The dynamic-module ABI has no timer of
//! its own; its scheduler is the one object the ABI allows to be used from another thread.
//! How many requests may be held is the engine's cap (`max_active_delays` per worker), checked
//! before a request gets here.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::OnceLock;
use std::time::Instant;

use crate::abi::Scheduler;

/// The event id a delay posts when it is over.
pub const DELAY_OVER: u64 = 1;

struct Entry {
    due: Instant,
    seq: u64,
    scheduler: Scheduler,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: `BinaryHeap` is a max-heap and the earliest deadline must come out first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

struct Timer {
    // `Sender` is `Sync` (Rust ≥ 1.72): every worker sends on it without a lock.
    tx: Sender<(Instant, Scheduler)>,
}

static TIMER: OnceLock<Option<Timer>> = OnceLock::new();

/// The timer thread could not be started or has stopped (the request then passes unfaulted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the delay timer thread is not running")]
pub struct NoTimer;

/// Commits `scheduler` at `due`.
pub fn schedule(due: Instant, scheduler: Scheduler) -> Result<(), NoTimer> {
    TIMER
        .get_or_init(start)
        .as_ref()
        .and_then(|t| t.tx.send((due, scheduler)).ok())
        .ok_or(NoTimer)
}

fn start() -> Option<Timer> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("boifi-delays".into())
        .spawn(move || run(&rx))
        .ok()?;
    Some(Timer { tx })
}

fn run(rx: &Receiver<(Instant, Scheduler)>) {
    let mut heap: BinaryHeap<Entry> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next = match heap.peek() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(e) => rx.recv_timeout(e.due.saturating_duration_since(Instant::now())),
        };
        match next {
            Ok((due, scheduler)) => {
                seq = seq.wrapping_add(1);
                heap.push(Entry {
                    due,
                    seq,
                    scheduler,
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|e| e.due <= now) {
            if let Some(e) = heap.pop() {
                e.scheduler.commit(DELAY_OVER);
            }
        }
    }
}
