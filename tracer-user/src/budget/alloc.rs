//! The heap as a whole: a global allocator over the system's that counts the bytes
//! live, so the daemon can say what it holds (`leakscope_memory_heap_bytes`) and a
//! cache can measure what a third-party library keeps after a call (the symbolizer's
//! parsed debug info), which no estimate of ours could see.
//!
//! The binary installs it (`#[global_allocator]` in `main.rs`); without it (unit tests)
//! every figure here is `None` or 0. Counting costs one relaxed atomic add and one
//! thread-local add per allocation.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

/// The system allocator, counting.
pub struct CountingAlloc;

static LIVE: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Bytes this thread allocated minus bytes it freed.
    static THREAD_NET: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    if delta >= 0 {
        LIVE.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        LIVE.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
    // A thread being torn down has no thread-locals left: only the total counts.
    let _ = THREAD_NET.try_with(|net| net.set(net.get().wrapping_add(delta)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting only
// reads the layout and touches atomics and a const-initialized thread-local (which
// never allocates).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            COUNTING.store(true, Ordering::Relaxed);
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            COUNTING.store(true, Ordering::Relaxed);
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// Heap bytes live now, when the counting allocator is installed.
pub fn live_heap_bytes() -> Option<u64> {
    COUNTING
        .load(Ordering::Relaxed)
        .then(|| LIVE.load(Ordering::Relaxed))
}

/// Runs `work` and returns what it left allocated on this thread, net (0 without the
/// counting allocator): what a call into a library that caches keeps.
pub fn net_allocated<T>(work: impl FnOnce() -> T) -> (T, i64) {
    let before = THREAD_NET.with(Cell::get);
    let out = work();
    let after = THREAD_NET.with(Cell::get);
    (out, after.wrapping_sub(before))
}
