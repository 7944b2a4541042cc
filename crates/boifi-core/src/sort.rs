//! One small in-place sort for every list the filter orders (character-class ranges, policies
//! by evaluation order, header names, due delays). The standard library's sorts are fast but
//! each element type gets its own several-kilobyte copy of them in the Wasm module (they were
//! a fifth of its code); this heapsort is a few hundred bytes per type, `O(n log n)` in the
//! worst case and allocation-free. Not stable: callers give a total order.

/// Sorts `items` so that no element is `less` than the one before it.
pub fn sort_by<T>(items: &mut [T], mut less: impl FnMut(&T, &T) -> bool) {
    let mut lt = |items: &[T], a: usize, b: usize| match (items.get(a), items.get(b)) {
        (Some(x), Some(y)) => less(x, y),
        _ => false,
    };
    // Moves the element at `root` down until the heap below `end` is ordered again.
    let mut sift_down = |items: &mut [T], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && lt(items, child, child + 1) {
            child += 1;
        }
        if !lt(items, root, child) {
            return;
        }
        items.swap(root, child);
        root = child;
    };
    let len = items.len();
    for root in (0..len / 2).rev() {
        sift_down(items, root, len);
    }
    for end in (1..len).rev() {
        items.swap(0, end);
        sift_down(items, 0, end);
    }
}

#[cfg(test)]
mod tests {
    use super::sort_by;
    use alloc::vec::Vec;

    #[test]
    fn sorts_like_the_standard_library() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..200 {
            let mut items: Vec<u64> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % 50
                })
                .collect();
            let mut expected = items.clone();
            expected.sort_unstable();
            sort_by(&mut items, |a, b| a < b);
            assert_eq!(items, expected);
        }
    }
}
