//! Requests held back by a delay fault, waiting for the host's timer to release them.

use alloc::vec::Vec;

/// One paused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelay<T> {
    /// When to release it (host clock, ms).
    pub due_ms: u64,
    /// The host's name for the request's stream (proxy-wasm: the HTTP context id).
    pub stream: u64,
    /// What to do then (resume, or answer with an abort).
    pub then: T,
}

/// The queue already holds as many requests as its cap allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`max_active_delays` ({cap}) requests are already held by delays")]
pub struct QueueFull {
    /// The cap.
    pub cap: usize,
}

/// Paused requests of one filter instance, at most `cap` of them. Few are pending at a time,
/// so a vector beats a heap.
#[derive(Debug, Clone)]
pub struct DelayQueue<T> {
    items: Vec<PendingDelay<T>>,
    cap: usize,
}

impl<T> Default for DelayQueue<T> {
    /// A queue with the default cap (`PluginConfig::max_active_delays`).
    fn default() -> Self {
        let cap = boifi_core::wire::DEFAULT_MAX_ACTIVE_DELAYS;
        DelayQueue::with_cap(usize::try_from(cap).unwrap_or(usize::MAX))
    }
}

impl<T> DelayQueue<T> {
    /// An empty queue that holds at most `cap` requests.
    pub fn with_cap(cap: usize) -> Self {
        DelayQueue {
            items: Vec::new(),
            cap,
        }
    }

    /// The most requests it holds.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Changes the cap; requests already held stay held.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
    }

    /// Holds `stream` until `due_ms`, unless the queue is full.
    pub fn push(&mut self, due_ms: u64, stream: u64, then: T) -> Result<(), QueueFull> {
        if self.items.len() >= self.cap {
            return Err(QueueFull { cap: self.cap });
        }
        self.items.push(PendingDelay {
            due_ms,
            stream,
            then,
        });
        Ok(())
    }

    /// Removes and returns the entries due at `now_ms`, earliest first.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<PendingDelay<T>> {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.items.len() {
            if self.items.get(i).is_some_and(|p| p.due_ms <= now_ms) {
                due.push(self.items.swap_remove(i));
            } else {
                i += 1;
            }
        }
        // Streams are unique, so (due, stream) is a total order.
        boifi_core::sort::sort_by(&mut due, |a, b| (a.due_ms, a.stream) < (b.due_ms, b.stream));
        due
    }

    /// Forgets a request (its stream ended before the delay did).
    pub fn remove(&mut self, stream: u64) -> bool {
        // Streams are unique: at most one entry goes, and the order of the rest does not matter.
        match self.items.iter().position(|p| p.stream == stream) {
            Some(i) => {
                self.items.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// The earliest due time, if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.items.iter().map(|p| p.due_ms).min()
    }

    /// Nothing pending: the tick can stop.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many requests are held.
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::DelayQueue;

    #[test]
    fn releases_in_due_order_only_when_due() {
        let mut q = DelayQueue::default();
        q.push(300, 3, 'c').unwrap();
        q.push(100, 1, 'a').unwrap();
        q.push(200, 2, 'b').unwrap();
        assert_eq!(q.next_due_ms(), Some(100));
        assert!(q.take_due(99).is_empty());
        let due: Vec<u64> = q.take_due(250).iter().map(|p| p.stream).collect();
        assert_eq!(due, vec![1, 2]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.take_due(1_000).first().map(|p| p.then), Some('c'));
        assert!(q.is_empty());
        assert_eq!(q.next_due_ms(), None);
    }

    #[test]
    fn removed_requests_are_never_released() {
        let mut q = DelayQueue::default();
        q.push(10, 7, ()).unwrap();
        q.push(10, 8, ()).unwrap();
        assert!(q.remove(7));
        assert!(!q.remove(7));
        let due: Vec<u64> = q.take_due(10).iter().map(|p| p.stream).collect();
        assert_eq!(due, vec![8]);
    }

    #[test]
    fn the_cap_holds_and_frees_up_as_requests_leave() {
        let mut q = DelayQueue::with_cap(2);
        q.push(10, 1, ()).unwrap();
        q.push(10, 2, ()).unwrap();
        assert_eq!(q.push(10, 3, ()), Err(super::QueueFull { cap: 2 }));
        assert_eq!(q.len(), 2);
        q.remove(1);
        q.push(10, 3, ()).unwrap();
        assert_eq!(q.take_due(10).len(), 2);
        q.set_cap(0);
        assert!(q.push(10, 4, ()).is_err());
    }
}
