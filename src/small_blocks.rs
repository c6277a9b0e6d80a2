//! A cache of small freed blocks in front of the system allocator, for the wasm build.
//!
//! A request through levee allocates a few dozen small blocks (a bucket's key and value, the
//! host's answers, header values) and frees them all before the next request. In a wasm VM
//! every one of those goes to `dlmalloc`, whose `malloc` + `free` pair costs ≈ 140
//! instructions of JIT code; keeping freed blocks on one free list per size class and handing
//! them back on the next allocation of that class costs a handful. Blocks of up to
//! [`MAX_SMALL`] bytes (alignment up to [`ALIGN`]) are rounded up to a multiple of
//! [`GRANULE`]; each class keeps at most [`KEEP`] free blocks and gives the rest back, so the
//! cache never holds more than `KEEP × (GRANULE + 2·GRANULE + … + MAX_SMALL)` bytes
//! (≈ 68 KiB per VM), whatever the traffic.
//!
//! A wasm VM runs one thread: the cache is not synchronised, and it is installed as the
//! global allocator only for `wasm32` (where `Sync` is asserted). Native builds and tests use
//! it as a plain value.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes are multiples of this many bytes.
pub const GRANULE: usize = 16;
/// Largest block the cache keeps.
pub const MAX_SMALL: usize = 256;
/// Largest alignment of a cached block (what `malloc` gives on wasm32).
pub const ALIGN: usize = 8;
/// Free blocks kept per size class.
pub const KEEP: u32 = 32;

const CLASSES: usize = MAX_SMALL / GRANULE;

#[derive(Clone, Copy)]
struct FreeList {
    /// First free block; each free block holds the address of the next in its first bytes.
    head: *mut u8,
    len: u32,
}

/// The cache, wrapping the allocator `A` that owns every block.
pub struct SmallBlocks<A> {
    inner: A,
    lists: UnsafeCell<[FreeList; CLASSES]>,
}

// SAFETY: wasm32-wasip1 VMs are single-threaded: no two calls into the cache ever overlap.
#[cfg(target_arch = "wasm32")]
unsafe impl<A: Sync> Sync for SmallBlocks<A> {}

impl<A> SmallBlocks<A> {
    pub const fn new(inner: A) -> Self {
        Self {
            inner,
            lists: UnsafeCell::new(
                [FreeList {
                    head: ptr::null_mut(),
                    len: 0,
                }; CLASSES],
            ),
        }
    }

    /// Free blocks the cache holds now, over all classes.
    #[cfg(test)]
    fn cached(&self) -> u32 {
        // SAFETY: single-threaded (see the type's docs); the reference does not escape.
        let lists = unsafe { &*self.lists.get() };
        lists.iter().map(|l| l.len).sum()
    }
}

/// The class of a layout the cache serves, and the layout its blocks have in `inner`.
fn class_of(layout: Layout) -> Option<(usize, Layout)> {
    let size = layout.size();
    if size == 0 || size > MAX_SMALL || layout.align() > ALIGN {
        return None;
    }
    let class = (size - 1) / GRANULE;
    let rounded = (class + 1) * GRANULE;
    Layout::from_size_align(rounded, ALIGN)
        .ok()
        .map(|l| (class, l))
}

// SAFETY: every block the cache hands out came from `inner` with its class's layout, and is
// given back to `inner` (or to a later caller of the same class) with that same layout; a
// block on a free list is owned by the cache alone, and its first word (a class is at least
// `GRANULE` ≥ one pointer) holds the list's link.
unsafe impl<A: GlobalAlloc> GlobalAlloc for SmallBlocks<A> {
    // Not inlined: at every allocation site it would add ≈ 80 KiB to levee.wasm for no
    // measurable gain per request.
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((class, block)) = class_of(layout) else {
            return self.inner.alloc(layout);
        };
        let list = &mut (*self.lists.get())[class];
        if list.head.is_null() {
            return self.inner.alloc(block);
        }
        let taken = list.head;
        list.head = ptr::read(taken.cast::<*mut u8>());
        list.len -= 1;
        taken
    }

    #[inline(never)]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        let Some((class, block)) = class_of(layout) else {
            return self.inner.dealloc(p, layout);
        };
        let list = &mut (*self.lists.get())[class];
        if list.len >= KEEP {
            return self.inner.dealloc(p, block);
        }
        ptr::write(p.cast::<*mut u8>(), list.head);
        list.head = p;
        list.len += 1;
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(wanted) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        match (class_of(layout), class_of(wanted)) {
            // Neither is cached: the inner allocator may grow in place.
            (None, None) => self.inner.realloc(p, layout, new_size),
            // Same class: the block already has room.
            (Some((a, _)), Some((b, _))) if a == b => p,
            _ => {
                let moved = self.alloc(wanted);
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(p, moved, layout.size().min(new_size));
                    self.dealloc(p, layout);
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// The system allocator, recording which blocks it has out and with which layout.
    #[derive(Default)]
    struct Recording {
        out: RefCell<HashMap<usize, Layout>>,
    }
    unsafe impl GlobalAlloc for Recording {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = System.alloc(layout);
            self.out.borrow_mut().insert(p as usize, layout);
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
            let given = self.out.borrow_mut().remove(&(p as usize));
            assert_eq!(
                given,
                Some(layout),
                "freed with another layout than allocated"
            );
            System.dealloc(p, layout)
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn a_freed_small_block_serves_the_next_allocation_of_its_class() {
        let cache = SmallBlocks::new(Recording::default());
        unsafe {
            let a = cache.alloc(layout(20, 1));
            cache.dealloc(a, layout(20, 1));
            assert_eq!(cache.cached(), 1);
            // 17..=32 bytes is one class.
            let b = cache.alloc(layout(32, 8));
            assert_eq!(a, b);
            assert_eq!(cache.cached(), 0);
            // Another class does not take it.
            cache.dealloc(b, layout(32, 8));
            let c = cache.alloc(layout(48, 8));
            assert_ne!(c, b);
            cache.dealloc(c, layout(48, 8));
        }
        assert_eq!(cache.inner.out.borrow().len(), 2);
    }

    #[test]
    fn large_or_over_aligned_blocks_go_straight_to_the_inner_allocator() {
        let cache = SmallBlocks::new(Recording::default());
        unsafe {
            for l in [layout(MAX_SMALL + 1, 8), layout(16, 16), layout(4096, 8)] {
                let p = cache.alloc(l);
                assert_eq!(cache.inner.out.borrow().get(&(p as usize)), Some(&l));
                cache.dealloc(p, l);
                assert!(cache.inner.out.borrow().is_empty());
                assert_eq!(cache.cached(), 0);
            }
        }
    }

    #[test]
    fn each_class_keeps_at_most_keep_blocks() {
        let cache = SmallBlocks::new(Recording::default());
        let l = layout(100, 4);
        unsafe {
            let blocks: Vec<_> = (0..KEEP + 10).map(|_| cache.alloc(l)).collect();
            for &p in &blocks {
                cache.dealloc(p, l);
            }
        }
        assert_eq!(cache.cached(), KEEP);
        assert_eq!(cache.inner.out.borrow().len(), KEEP as usize);
    }

    #[test]
    fn blocks_keep_their_bytes_across_reallocations() {
        let cache = SmallBlocks::new(Recording::default());
        unsafe {
            let mut l = layout(10, 1);
            let mut p = cache.alloc(l);
            for i in 0..10u8 {
                *p.add(usize::from(i)) = i;
            }
            // Within the class, past it, then out of the cache altogether and back.
            for size in [16, 40, 1000, 5000, 200, 12] {
                p = cache.realloc(p, l, size);
                l = layout(size, 1);
                for i in 0..10u8 {
                    assert_eq!(*p.add(usize::from(i)), i, "after realloc to {size}");
                }
            }
            cache.dealloc(p, l);
        }
        // What is not cached went back with the layout it came with (checked by `Recording`).
        assert_eq!(cache.inner.out.borrow().len() as u32, cache.cached());
    }

    #[test]
    fn many_interleaved_blocks_stay_distinct_and_intact() {
        let cache = SmallBlocks::new(Recording::default());
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let mut seed = 7u64;
        unsafe {
            for step in 0..5000u32 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if live.len() > 40 || (seed >> 60) < 6 && !live.is_empty() {
                    let (p, l, fill) = live.swap_remove((seed >> 33) as usize % live.len());
                    for i in 0..l.size() {
                        assert_eq!(*p.add(i), fill, "block overwritten while live");
                    }
                    cache.dealloc(p, l);
                } else {
                    let l = layout(1 + (seed >> 40) as usize % 300, 1 << ((seed >> 20) % 4));
                    let p = cache.alloc(l);
                    let fill = step as u8;
                    ptr::write_bytes(p, fill, l.size());
                    live.push((p, l, fill));
                }
            }
            for (p, l, _) in live {
                cache.dealloc(p, l);
            }
        }
        assert_eq!(cache.inner.out.borrow().len() as u32, cache.cached());
    }
}
