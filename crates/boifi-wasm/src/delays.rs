//! Requests held back by a delay fault, waiting for the root context's tick to release them.

use alloc::vec::Vec;

/// One paused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelay<T> {
    /// When to release it (host clock, ms).
    pub due_ms: u64,
    /// The HTTP context to act on.
    pub context_id: u32,
    /// What to do then (resume, or answer with an abort).
    pub then: T,
}

/// Paused requests of one Wasm VM. Few are pending at a time, so a vector beats a heap.
#[derive(Debug, Clone)]
pub struct DelayQueue<T> {
    items: Vec<PendingDelay<T>>,
}

impl<T> Default for DelayQueue<T> {
    fn default() -> Self {
        DelayQueue { items: Vec::new() }
    }
}

impl<T> DelayQueue<T> {
    /// Holds `context_id` until `due_ms`.
    pub fn push(&mut self, due_ms: u64, context_id: u32, then: T) {
        self.items.push(PendingDelay {
            due_ms,
            context_id,
            then,
        });
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
        due.sort_by_key(|p| p.due_ms);
        due
    }

    /// Forgets a request (its stream ended before the delay did).
    pub fn remove(&mut self, context_id: u32) -> bool {
        let before = self.items.len();
        self.items.retain(|p| p.context_id != context_id);
        before != self.items.len()
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
        q.push(300, 3, 'c');
        q.push(100, 1, 'a');
        q.push(200, 2, 'b');
        assert_eq!(q.next_due_ms(), Some(100));
        assert!(q.take_due(99).is_empty());
        let due: Vec<u32> = q.take_due(250).iter().map(|p| p.context_id).collect();
        assert_eq!(due, vec![1, 2]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.take_due(1_000).first().map(|p| p.then), Some('c'));
        assert!(q.is_empty());
        assert_eq!(q.next_due_ms(), None);
    }

    #[test]
    fn removed_requests_are_never_released() {
        let mut q = DelayQueue::default();
        q.push(10, 7, ());
        q.push(10, 8, ());
        assert!(q.remove(7));
        assert!(!q.remove(7));
        let due: Vec<u32> = q.take_due(10).iter().map(|p| p.context_id).collect();
        assert_eq!(due, vec![8]);
    }
}
