//! The filter's memory allocator: power-of-two size classes over pages of Wasm linear memory.
//!
//! std's allocator for wasm32-unknown-unknown is dlmalloc, about 5 KB of code in a module
//! whose size sets Envoy's start-up (V8 compiles all of it with TurboFan) and memory. The
//! filter allocates little and mostly the same few sizes over and over (header copies, policy
//! names, replies), which a free list per size class serves in a few instructions:
//! - a block is the size of its class, a power of two from 16 bytes up; a class under 64 KiB
//!   carves its blocks out of whole pages one at a time, so each is aligned to its size, and a
//!   larger class takes whole pages, aligned to the page: any alignment up to the block's size,
//!   and at most a page, holds (a larger alignment is refused with null);
//! - a freed block goes onto its class's free list, where the next allocation of that class
//!   takes it; memory is never given back to the host (nor does dlmalloc on Wasm): the heap
//!   is as large as the most blocks of each class ever live at once, rounded to powers of two.
//!
//! A Wasm VM of this target runs one thread (the build has no `atomics` feature, checked
//! below), so the allocator keeps its state in plain cells.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

/// The Wasm page: what `memory.grow` adds.
pub const PAGE: usize = 65_536;
/// The smallest block: 16 bytes (holds the free-list link, and any scalar's alignment).
const MIN_SHIFT: u32 = 4;
/// Classes 16 B, 32 B, ... 2 GiB (a 32-bit address space holds no larger block).
const CLASSES: usize = (usize::BITS - MIN_SHIFT) as usize;

/// Where pages come from: `memory.grow` in the VM; aligned host memory in tests.
pub trait Pages {
    /// Adds `count` pages; the address of the first, aligned to [`PAGE`], or `None` when the
    /// host refuses to grow the memory.
    fn grow(&self, count: usize) -> Option<usize>;
}

/// One size class: its free blocks, and the part of its current page not handed out yet.
#[derive(Debug)]
struct Class {
    /// The first free block (0: none); each free block holds the address of the next.
    free: Cell<usize>,
    /// The next block never handed out, in the class's current page (classes under a page).
    next: Cell<usize>,
    /// The end of that page.
    end: Cell<usize>,
}

/// The allocator over `P`'s pages.
#[derive(Debug)]
pub struct Heap<P> {
    pages: P,
    classes: [Class; CLASSES],
}

// Without the atomics feature every Wasm thread is its own instance with its own memory: no
// state is ever shared between threads.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
compile_error!("boifi's allocator is single-threaded: build without the atomics feature");

// SAFETY: the cells are only touched from one thread: the wasm32 build has no threads (the
// `compile_error!` above rules out the atomics feature); the host tests use a heap from the
// thread that made it.
unsafe impl<P: Sync> Sync for Heap<P> {}

/// The class of blocks that holds `layout` (size and alignment), if any.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_SHIFT);
    let shift = size.checked_next_power_of_two()?.trailing_zeros();
    usize::try_from(shift - MIN_SHIFT)
        .ok()
        .filter(|c| *c < CLASSES)
}

impl<P: Pages> Heap<P> {
    /// An empty heap over `pages`.
    pub const fn new(pages: P) -> Heap<P> {
        Heap {
            pages,
            classes: [const {
                Class {
                    free: Cell::new(0),
                    next: Cell::new(0),
                    end: Cell::new(0),
                }
            }; CLASSES],
        }
    }

    /// A block of class `index` (0: none to be had).
    fn take(&self, index: usize) -> usize {
        let Some(class) = self.classes.get(index) else {
            return 0;
        };
        let size = 1usize << (index as u32 + MIN_SHIFT);
        let free = class.free.get();
        if free != 0 {
            // SAFETY: `free` is a block of this class put on the list by `put`, which wrote
            // the next free block's address into its first word (blocks are at least 16
            // bytes and aligned to their size, so the word is in bounds and aligned).
            class.free.set(unsafe { (free as *const usize).read() });
            return free;
        }
        if size >= PAGE {
            return self.pages.grow(size / PAGE).unwrap_or(0);
        }
        if class.next.get() >= class.end.get() {
            let Some(page) = self.pages.grow(1) else {
                return 0;
            };
            class.next.set(page);
            class.end.set(page + PAGE);
        }
        // A page holds a whole number of blocks: `next` reaches `end` exactly.
        let block = class.next.get();
        class.next.set(block + size);
        block
    }

    /// Puts a block of class `index` on its free list.
    ///
    /// # Safety
    /// `block` was handed out by [`Heap::take`] for `index` and is no longer used.
    unsafe fn put(&self, block: usize, index: usize) {
        if let Some(class) = self.classes.get(index) {
            // SAFETY: the block is ours again (the caller's contract), at least 16 bytes and
            // aligned to its size: its first word holds the link.
            unsafe { (block as *mut usize).write(class.free.get()) };
            class.free.set(block);
        }
    }
}

// SAFETY: every block handed out is its class's size, at least the layout's size, aligned to
// that power of two or to a page, either way to the layout's alignment (at most a page), and
// is never handed out again until it is freed; the pages come from `Pages::grow`, memory no
// one else uses.
unsafe impl<P: Pages> GlobalAlloc for Heap<P> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Pages are aligned to a page only: a block of a class over a page is not aligned to
        // its size, so no alignment over a page can be served.
        if layout.align() > PAGE {
            return core::ptr::null_mut();
        }
        // 0 (no block) is the null pointer.
        class_of(layout).map_or(0, |index| self.take(index)) as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(index) = class_of(layout) {
            // SAFETY: `ptr` was allocated with `layout` (GlobalAlloc's contract), so by
            // `take` for this class, and is no longer used.
            unsafe { self.put(ptr as usize, index) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        let old = class_of(layout);
        if old.is_some() && old == class_of(new_layout) {
            // The block already has room: a Vec growing within its class costs nothing.
            return ptr;
        }
        // SAFETY: `new_layout` has a non-zero size (realloc's contract).
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe { core::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated with `layout` and is no longer used.
            unsafe { self.dealloc(ptr, layout) };
        }
        moved
    }
}

/// Linear memory, grown with `memory.grow`.
#[cfg(target_arch = "wasm32")]
#[derive(Debug)]
pub struct LinearMemory;

#[cfg(target_arch = "wasm32")]
impl Pages for LinearMemory {
    fn grow(&self, count: usize) -> Option<usize> {
        // `memory.grow` answers the previous size in pages, or usize::MAX when refused.
        let previous = core::arch::wasm32::memory_grow(0, count);
        (previous != usize::MAX).then(|| previous * PAGE)
    }
}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static HEAP: Heap<LinearMemory> = Heap::new(LinearMemory);

#[cfg(test)]
mod tests;
