//! Which pages of another process are in memory, from `/proc/PID/pagemap`: leakscope
//! reads only those.
//!
//! Why: reading a page that is not in memory makes the kernel fault it in for the
//! reader, from wherever it lives. For a page of a file that means asking the file's file
//! system and waiting for it: a FUSE server (any user may run one) that takes the request
//! and never answers holds the read for good, and after a fatal signal even
//! uninterruptibly, so not even leakscope's exit would finish. Pages in memory, and
//! anonymous pages in swap, never wait on a file system (swap-in is the kernel's own
//! I/O); an anonymous page never touched holds nothing worth reading. So a remote read
//! reads resident pages only, and stops at the first other one: what a process keeps
//! only in a file's pages it never touched (a "stack" pointing into a file mapping, a
//! goroutine table on one) is not read, never waited for.
//!
//! Reading `pagemap` faults nothing in. Within [`scoped`], one process's `pagemap` is
//! opened once for all the reads of a step; elsewhere each read opens it.

use std::{cell::RefCell, fs::File, io, os::unix::fs::FileExt};

/// A page is in memory.
const PRESENT: u64 = 1 << 63;
/// An anonymous (or shared memory) page is in swap.
const SWAPPED: u64 = 1 << 62;
/// Entries read per `pagemap` read (8 bytes each): 32 MiB of address space.
const ENTRIES_PER_READ: usize = 4096;
/// Page size of the entries.
pub const PAGE: u64 = 4096;

/// The `pagemap` of the process whose reads run on this thread now, opened on first use
/// (`None` inside: it could not be opened).
struct Scope {
    pid: u32,
    pagemap: Option<io::Result<File>>,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Runs `work`, in which process `pid`'s memory is read: its `pagemap` is opened at
/// most once for all of it (and closed after: a `pagemap` outlives no step, so a pid
/// reused later is never judged by another process's pages).
pub fn scoped<T>(pid: u32, work: impl FnOnce() -> T) -> T {
    let outer = SCOPE.with(|s| s.replace(Some(Scope { pid, pagemap: None })));
    let out = work();
    SCOPE.with(|s| *s.borrow_mut() = outer);
    out
}

fn open_pagemap(pid: u32) -> io::Result<File> {
    File::open(format!("/proc/{pid}/pagemap"))
}

/// Whether each of `count` pages from page `first` (an address divided by [`PAGE`]) of
/// process `pid` is resident: in memory, or anonymous in swap. Fails when the process's
/// `pagemap` cannot be read (it is gone, or not ours to read).
pub fn resident_pages(pid: u32, first: u64, count: usize) -> io::Result<Vec<bool>> {
    SCOPE.with(|scope| {
        let mut scope = scope.borrow_mut();
        match scope.as_mut() {
            Some(s) if s.pid == pid => {
                let pagemap = s.pagemap.get_or_insert_with(|| open_pagemap(pid));
                match pagemap {
                    Ok(file) => read_entries(file, first, count),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                }
            }
            _ => read_entries(&open_pagemap(pid)?, first, count),
        }
    })
}

/// Reads `count` pagemap entries from page `first`: resident or not, each.
fn read_entries(pagemap: &File, first: u64, count: usize) -> io::Result<Vec<bool>> {
    let mut out = Vec::with_capacity(count);
    let mut bytes = vec![0u8; ENTRIES_PER_READ.min(count) * 8];
    while out.len() < count {
        let n = (count - out.len()).min(ENTRIES_PER_READ);
        let page = first + out.len() as u64;
        let offset = page.checked_mul(8).ok_or(io::ErrorKind::InvalidInput)?;
        let got = pagemap.read_at(&mut bytes[..n * 8], offset)?;
        if got < 8 {
            // Past the end of the address space: nothing there.
            out.resize(count, false);
            break;
        }
        out.extend(bytes[..got - got % 8].chunks_exact(8).map(|entry| {
            let entry = u64::from_le_bytes(entry.try_into().unwrap_or_default());
            entry & (PRESENT | SWAPPED) != 0
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a page this process wrote is resident and one it only reserved is
    /// not, through a scope and without one, and that another pid's scope does not
    /// answer for it.
    #[test]
    fn written_pages_are_resident_untouched_ones_are_not() {
        let page = PAGE as usize;
        let base = crate::host::memory::tests::two_fresh_pages();
        // SAFETY: the first page is ours and writable.
        unsafe { std::ptr::write_bytes(base.cast::<u8>(), 1, page) };
        let me = std::process::id();
        let first = base as u64 / PAGE;
        let unscoped = resident_pages(me, first, 2).unwrap();
        let in_scope = scoped(me, || resident_pages(me, first, 2).unwrap());
        let other_scope = scoped(1, || resident_pages(me, first, 2).unwrap());
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(base, 2 * page) };
        assert_eq!(unscoped, vec![true, false]);
        assert_eq!(in_scope, unscoped);
        assert_eq!(other_scope, unscoped);
        assert!(
            resident_pages(u32::MAX - 1, first, 1).is_err(),
            "no such process"
        );
    }
}
