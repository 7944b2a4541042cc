use super::*;
use std::cell::RefCell;

/// Pages from the host's allocator, aligned like Wasm pages, at most `limit` of them.
struct HostPages {
    grown: RefCell<Vec<(*mut u8, Layout)>>,
    pages: Cell<usize>,
    limit: usize,
}

impl HostPages {
    fn with_limit(limit: usize) -> HostPages {
        HostPages {
            grown: RefCell::new(Vec::new()),
            pages: Cell::new(0),
            limit,
        }
    }
}

impl Pages for HostPages {
    fn grow(&self, count: usize) -> Option<usize> {
        if self.pages.get() + count > self.limit {
            return None;
        }
        let layout = Layout::from_size_align(count * PAGE, PAGE).unwrap();
        // SAFETY: a non-zero size.
        let memory = unsafe { std::alloc::alloc(layout) };
        assert!(!memory.is_null());
        self.grown.borrow_mut().push((memory, layout));
        self.pages.set(self.pages.get() + count);
        Some(memory as usize)
    }
}

impl Drop for HostPages {
    fn drop(&mut self) {
        for (memory, layout) in self.grown.take() {
            // SAFETY: allocated above with this layout.
            unsafe { std::alloc::dealloc(memory, layout) };
        }
    }
}

/// A live block of the model: where, its layout, and the byte it is filled with.
struct Live {
    at: *mut u8,
    layout: Layout,
    fill: u8,
}

fn holds(block: &Live) -> bool {
    // SAFETY: a live block of `layout.size()` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(block.at, block.layout.size()) };
    bytes.iter().all(|b| *b == block.fill)
}

fn fill(block: &Live) {
    // SAFETY: a live block of `layout.size()` bytes.
    unsafe { block.at.write_bytes(block.fill, block.layout.size()) };
}

/// Random allocations, frees and reallocs of mixed sizes and alignments: every block is
/// aligned, overlaps no other live block and keeps its bytes; a realloc keeps the prefix.
#[test]
fn blocks_are_aligned_disjoint_and_keep_their_bytes() {
    let heap = Heap::new(HostPages::with_limit(usize::MAX));
    let mut live: Vec<Live> = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for step in 0..4_000_u32 {
        state = boifi_core::rng::splitmix64(state);
        let size = match state % 10 {
            0 => (state >> 8) as usize % 200_000 + 1,
            1..=3 => (state >> 8) as usize % 4_000 + 1,
            _ => (state >> 8) as usize % 100 + 1,
        };
        let align = 1usize << ((state >> 40) % 13);
        let fill_byte = (step % 251) as u8;
        match (state >> 50) % 4 {
            0 if !live.is_empty() => {
                let i = (state >> 20) as usize % live.len();
                let block = live.swap_remove(i);
                assert!(holds(&block), "step {step}: a block lost its bytes");
                // SAFETY: allocated with this layout, no longer used.
                unsafe { heap.dealloc(block.at, block.layout) };
            }
            1 if !live.is_empty() => {
                let i = (state >> 20) as usize % live.len();
                let block = live.swap_remove(i);
                // SAFETY: allocated with this layout; a non-zero new size.
                let at = unsafe { heap.realloc(block.at, block.layout, size) };
                assert!(!at.is_null());
                let kept = block.layout.size().min(size);
                // SAFETY: the new block has at least `kept` bytes.
                let prefix = unsafe { std::slice::from_raw_parts(at, kept) };
                assert!(
                    prefix.iter().all(|b| *b == block.fill),
                    "step {step}: realloc lost bytes"
                );
                let layout = Layout::from_size_align(size, block.layout.align()).unwrap();
                live.push(Live {
                    at,
                    layout,
                    fill: fill_byte,
                });
            }
            _ => {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size.
                let at = unsafe { heap.alloc(layout) };
                assert!(!at.is_null());
                live.push(Live {
                    at,
                    layout,
                    fill: fill_byte,
                });
            }
        }
        if let Some(block) = live.last() {
            assert_eq!(
                block.at as usize % block.layout.align(),
                0,
                "step {step}: misaligned"
            );
            let (start, end) = (block.at as usize, block.at as usize + block.layout.size());
            for other in &live[..live.len() - 1] {
                let (o_start, o_end) = (other.at as usize, other.at as usize + other.layout.size());
                assert!(
                    end <= o_start || o_end <= start,
                    "step {step}: blocks overlap"
                );
            }
            fill(block);
        }
    }
    assert!(live.iter().all(holds));
}

#[test]
fn freed_blocks_are_reused_so_a_steady_load_grows_nothing() {
    let pages = HostPages::with_limit(usize::MAX);
    let heap = Heap::new(pages);
    let sizes = [24, 100, 700, 3_000, 70_000];
    for _ in 0..1_000 {
        let blocks: Vec<_> = sizes
            .iter()
            .map(|&size| {
                let layout = Layout::from_size_align(size, 8).unwrap();
                // SAFETY: a non-zero size.
                (unsafe { heap.alloc(layout) }, layout)
            })
            .collect();
        for (at, layout) in blocks {
            // SAFETY: allocated with this layout, no longer used.
            unsafe { heap.dealloc(at, layout) };
        }
    }
    // One page for each class under a page, two for the 128 KiB block: grown once.
    assert_eq!(heap.pages.pages.get(), 4 + 2);
}

#[test]
fn a_vec_growing_within_its_class_is_not_moved() {
    let heap = Heap::new(HostPages::with_limit(usize::MAX));
    let layout = Layout::from_size_align(40, 1).unwrap();
    // SAFETY: a non-zero size.
    let at = unsafe { heap.alloc(layout) };
    // SAFETY: allocated with this layout; 64 bytes is the same class.
    assert_eq!(unsafe { heap.realloc(at, layout, 64) }, at);
    // SAFETY: the same block, now of 64 bytes; 65 is the next class.
    let moved = unsafe { heap.realloc(at, Layout::from_size_align(64, 1).unwrap(), 65) };
    assert_ne!(moved, at);
}

#[test]
fn a_host_that_refuses_memory_gets_null_not_a_block() {
    let heap = Heap::new(HostPages::with_limit(1));
    let small = Layout::from_size_align(16, 8).unwrap();
    // SAFETY: non-zero sizes.
    unsafe {
        assert!(!heap.alloc(small).is_null());
        assert!(heap
            .alloc(Layout::from_size_align(PAGE * 2, 8).unwrap())
            .is_null());
        assert!(heap
            .alloc(Layout::from_size_align(32, 8).unwrap())
            .is_null());
    }
}

#[test]
fn an_alignment_over_a_page_is_refused_not_served_misaligned() {
    let heap = Heap::new(HostPages::with_limit(usize::MAX));
    // Two pages aligned to two pages: pages are aligned to one page only.
    let layout = Layout::from_size_align(PAGE * 2, PAGE * 2).unwrap();
    // SAFETY: a non-zero size.
    let at = unsafe { heap.alloc(layout) };
    assert!(at.is_null(), "got {at:p}");
    // Up to a page it is served, and aligned.
    let page_aligned = Layout::from_size_align(PAGE * 2, PAGE).unwrap();
    // SAFETY: a non-zero size.
    let at = unsafe { heap.alloc(page_aligned) };
    assert!(!at.is_null() && (at as usize).is_multiple_of(PAGE));
}
