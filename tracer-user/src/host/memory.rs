//! Reading another process's memory without stopping it (process_vm_readv), and
//! without ever making the kernel fault a page in for it: only resident pages are read
//! ([`super::pagemap`] says which, and why), so no read waits on a file system.

use std::io;

use super::pagemap::{self, PAGE};

/// The most iovecs one process_vm_readv call accepts (IOV_MAX on Linux).
const MAX_IOVECS: usize = 1024;

/// One process_vm_readv call: the remote ranges land back to back in `local`, which must
/// be at least as long as they are together. Retries when interrupted.
fn vm_readv(pid: libc::pid_t, local: &mut [u8], remote: &[libc::iovec]) -> io::Result<usize> {
    let want: usize = remote.iter().map(|r| r.iov_len).sum();
    assert!(
        local.len() >= want,
        "vm_readv: local buffer shorter than the remote ranges"
    );
    #[cfg(feature = "fuzzing")]
    if pid == fake::FAKE_PID as libc::pid_t {
        return fake::readv(local, remote);
    }
    let local = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: want,
    };
    loop {
        // SAFETY: `local` covers `want` writable bytes of a live buffer (checked above);
        // the remote iovecs are only interpreted by the kernel, in the other process, and
        // faults there are reported as errors rather than signals.
        let n = unsafe {
            libc::process_vm_readv(
                pid,
                &local,
                1,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Why a remote read stopped before the first byte: the page is not resident (see
/// [`super::pagemap`]); [`is_not_resident`] tells this error.
#[derive(Debug, thiserror::Error)]
#[error("the page at {0:#x} is not in memory (unmapped, or not faulted in): not read")]
pub struct NotResident(pub u64);

/// Whether a read failed because its first page was not resident.
pub fn is_not_resident(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotResident>())
}

/// How many of the `len` bytes at `addr` of process `pid` lie on resident pages before
/// the first one that is not.
fn resident_prefix(pid: u32, addr: u64, len: usize) -> io::Result<usize> {
    #[cfg(feature = "fuzzing")]
    if pid == fake::FAKE_PID {
        return Ok(len);
    }
    if len == 0 {
        return Ok(0);
    }
    let first = addr / PAGE;
    let last = (addr + (len as u64 - 1)) / PAGE;
    let resident = pagemap::resident_pages(pid, first, (last - first + 1) as usize)?;
    Ok(match resident.iter().position(|&r| !r) {
        None => len,
        Some(0) => 0,
        Some(i) => ((first + i as u64) * PAGE - addr) as usize,
    })
}

/// Reads up to `buf.len()` bytes at `addr` in process `pid`; returns how many were read
/// (a short read stops at the first unmapped or not resident page).
///
/// Fails only when not even the first byte can be read (the page is unmapped: EFAULT;
/// not resident: [`NotResident`]; the process is gone: ESRCH; not permitted: EPERM).
pub fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    // Never wrap around the address space.
    let len = (buf.len() as u64).min(u64::MAX - addr) as usize;
    let len = match resident_prefix(pid, addr, len)? {
        0 if len > 0 => return Err(io::Error::other(NotResident(addr))),
        resident => resident,
    };
    read_unchecked(pid, addr, &mut buf[..len])
}

/// Reads a mapping of the kernel's own (the `[vdso]`): its pages are the kernel's,
/// faulting one in never waits on a file system, so residency is not asked.
pub fn read_kernel_mapping(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let len = (buf.len() as u64).min(u64::MAX - addr) as usize;
    read_unchecked(pid, addr, &mut buf[..len])
}

/// [`read_memory`] of pages known to be safe to read.
fn read_unchecked(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len();
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    };
    let mut done = 0usize;
    while done < len {
        let chunk_start = addr + done as u64;
        let mut remote = Vec::with_capacity(MAX_IOVECS.min((len - done) / PAGE as usize + 2));
        let mut planned = 0usize;
        while done + planned < len && remote.len() < MAX_IOVECS {
            let at = chunk_start + planned as u64;
            let to_page_end = (PAGE - at % PAGE) as usize;
            let n = to_page_end.min(len - done - planned);
            remote.push(libc::iovec {
                iov_base: at as usize as *mut libc::c_void,
                iov_len: n,
            });
            planned += n;
        }
        let n = match vm_readv(pid, &mut buf[done..done + planned], &remote) {
            Ok(n) => n,
            Err(err) => return if done == 0 { Err(err) } else { Ok(done) },
        };
        done += n;
        if n < planned {
            break;
        }
    }
    Ok(done)
}

/// Pages whose residency one `pagemap` read covers when ranges lie this close.
const RESIDENCY_GAP_PAGES: u64 = 64;

/// Whether each range lies on resident pages only: ranges are looked up in spans of
/// nearby pages, one `pagemap` read each (a batch's ranges cluster in a few spans).
fn ranges_resident(pid: u32, ranges: &[(u64, usize)]) -> Vec<bool> {
    #[cfg(feature = "fuzzing")]
    if pid == fake::FAKE_PID {
        return vec![true; ranges.len()];
    }
    let pages = |&(addr, len): &(u64, usize)| {
        let last = addr.saturating_add((len as u64).max(1) - 1);
        (addr / PAGE, last / PAGE)
    };
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_unstable_by_key(|&i| ranges[i].0);
    let mut ok = vec![false; ranges.len()];
    let mut i = 0;
    while i < order.len() {
        // One span: ranges (in address order) each starting near the span's end.
        let (first, mut last) = pages(&ranges[order[i]]);
        let mut j = i + 1;
        while j < order.len() {
            let (start, end) = pages(&ranges[order[j]]);
            if start > last.saturating_add(RESIDENCY_GAP_PAGES) || end - first >= 1 << 20 {
                break;
            }
            last = last.max(end);
            j += 1;
        }
        let count = (last - first + 1) as usize;
        if let Ok(resident) = pagemap::resident_pages(pid, first, count) {
            for &k in &order[i..j] {
                let (start, end) = pages(&ranges[k]);
                let span = &resident[(start - first) as usize..=(end - first) as usize];
                ok[k] = ranges[k].1 == 0 || span.iter().all(|&r| r);
            }
        }
        i = j;
    }
    ok
}

/// Reads many remote ranges with few syscalls: process_vm_readv takes up to IOV_MAX ranges
/// per call, so a census of 100,000 goroutines costs ~100 syscalls, not 100,000. Range `i`
/// lands at `out[offsets[i]..offsets[i] + len_i]` where ranges are packed back to back.
/// Returns per range whether it was read whole; a range that faults (freed memory, a
/// process that exited) or lies on a page that is not resident is marked unread and the
/// batch goes on past it.
pub fn read_batch(pid: u32, ranges: &[(u64, usize)], out: &mut Vec<u8>) -> Vec<bool> {
    let total: usize = ranges.iter().map(|r| r.1).sum();
    out.clear();
    out.resize(total, 0);
    let mut ok = vec![false; ranges.len()];
    let readable = ranges_resident(pid, ranges);
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return ok;
    };
    let mut offsets = Vec::with_capacity(ranges.len());
    let mut at = 0usize;
    for r in ranges {
        offsets.push(at);
        at += r.1;
    }
    let mut next = 0usize;
    while next < ranges.len() {
        if !readable[next] {
            next += 1;
            continue;
        }
        // A run of readable ranges, read by one call.
        let run = readable[next..].iter().take_while(|&&r| r).count();
        let end = (next + MAX_IOVECS.min(run)).min(ranges.len());
        let remote: Vec<libc::iovec> = ranges[next..end]
            .iter()
            .map(|&(addr, len)| libc::iovec {
                iov_base: addr as usize as *mut libc::c_void,
                iov_len: len,
            })
            .collect();
        let span = offsets[end - 1] + ranges[end - 1].1 - offsets[next];
        let local = &mut out[offsets[next]..offsets[next] + span];
        let n = match vm_readv(pid, local, &remote) {
            Ok(n) => n,
            // The first range faulted: skip it and go on.
            Err(err) if err.raw_os_error() == Some(libc::EFAULT) => {
                next += 1;
                continue;
            }
            // Gone (ESRCH) or not permitted: nothing more can be read.
            Err(_) => return ok,
        };
        // Transfers never split a remote iovec: count the ranges read whole.
        let mut left = n;
        let mut i = next;
        while i < end && left >= ranges[i].1 {
            left -= ranges[i].1;
            ok[i] = true;
            i += 1;
        }
        // A short transfer stops at range `i`, which faulted: skip it.
        next = if i < end { i + 1 } else { end };
    }
    ok
}

/// A fake process memory for the fuzz targets: regions of bytes at addresses, read by
/// the real batching and fault logic above as process_vm_readv would.
#[cfg(feature = "fuzzing")]
pub mod fake {
    use std::{cell::RefCell, io};

    /// The pid whose memory is fake (above any real pid_max).
    pub const FAKE_PID: u32 = 0x7fff_fffe;

    thread_local! {
        static REGIONS: RefCell<Vec<(u64, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    }

    /// Sets the fake memory: each region's bytes at its address.
    pub fn set_memory(regions: Vec<(u64, Vec<u8>)>) {
        REGIONS.with(|r| *r.borrow_mut() = regions);
    }

    /// The bytes from `addr` to the end of the region holding it.
    fn bytes_at(regions: &[(u64, Vec<u8>)], addr: u64) -> Option<&[u8]> {
        regions.iter().find_map(|(start, bytes)| {
            let off = usize::try_from(addr.checked_sub(*start)?).ok()?;
            bytes.get(off..).filter(|rest| !rest.is_empty())
        })
    }

    /// process_vm_readv over the fake memory: stops at the first remote iovec that
    /// faults; EFAULT when not even the first byte reads.
    pub(super) fn readv(local: &mut [u8], remote: &[libc::iovec]) -> io::Result<usize> {
        REGIONS.with(|regions| {
            let regions = regions.borrow();
            let mut done = 0usize;
            for iov in remote {
                let start = iov.iov_base as u64;
                let mut copied = 0usize;
                while copied < iov.iov_len {
                    let bytes = start
                        .checked_add(copied as u64)
                        .and_then(|a| bytes_at(&regions, a));
                    let Some(bytes) = bytes else {
                        // The kernel never splits a remote iovec: what came before it.
                        return if done == 0 {
                            Err(io::Error::from_raw_os_error(libc::EFAULT))
                        } else {
                            Ok(done)
                        };
                    };
                    let n = bytes.len().min(iov.iov_len - copied);
                    local[done + copied..done + copied + n].copy_from_slice(&bytes[..n]);
                    copied += n;
                }
                done += iov.iov_len;
            }
            Ok(done)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// Check that a batched read returns every readable range, marks a faulting range
    /// unread and goes on past it.
    #[test]
    fn batch_reads_skip_faulting_ranges() {
        let a = [1u8; 64];
        let b = [2u8; 16];
        let ranges = [(a.as_ptr() as u64, 64), (8, 8), (b.as_ptr() as u64, 16)];
        let mut out = Vec::new();
        let ok = super::read_batch(std::process::id(), &ranges, &mut out);
        assert_eq!(ok, vec![true, false, true]);
        assert_eq!(&out[..64], &a[..]);
        assert_eq!(&out[72..88], &b[..]);
    }

    use super::*;

    #[test]
    fn reads_own_memory() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut buf = vec![0u8; data.len()];
        let n = read_memory(std::process::id(), data.as_ptr() as u64, &mut buf).unwrap();
        assert_eq!(n, data.len());
        assert_eq!(buf, data);

        // An unaligned small read inside one page.
        let mut small = [0u8; 5];
        let n = read_memory(std::process::id(), data.as_ptr() as u64 + 4093, &mut small).unwrap();
        assert_eq!(n, 5);
        assert_eq!(&small[..], &data[4093..4098]);

        let mut empty = [];
        assert_eq!(
            read_memory(std::process::id(), data.as_ptr() as u64, &mut empty).unwrap(),
            0
        );
    }

    /// Two fresh private anonymous pages of this process, neither touched yet (the
    /// caller unmaps them).
    pub(crate) fn two_fresh_pages() -> *mut libc::c_void {
        // SAFETY: a fresh anonymous mapping; no references escape.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        base
    }

    /// Check that a read stops at the first page not in memory (never touched), and
    /// one that starts there fails saying so, faulting nothing in.
    #[test]
    fn reads_stop_at_pages_not_in_memory() {
        let page = PAGE as usize;
        let base = two_fresh_pages();
        // SAFETY: the first page is ours and writable.
        unsafe { std::ptr::write_bytes(base.cast::<u8>(), 0xcd, page) };
        let mut buf = vec![0u8; 2 * page];
        let got = read_memory(std::process::id(), base as u64 + 8, &mut buf);
        let untouched = read_memory(std::process::id(), base as u64 + PAGE, &mut buf);
        let batch = read_batch(
            std::process::id(),
            &[(base as u64, 16), (base as u64 + PAGE, 16)],
            &mut Vec::new(),
        );
        let second_resident =
            pagemap::resident_pages(std::process::id(), base as u64 / PAGE + 1, 1);
        // SAFETY: unmapping the pages mapped above.
        unsafe { libc::munmap(base, 2 * page) };
        assert_eq!(got.unwrap(), page - 8);
        assert!(
            untouched.as_ref().is_err_and(is_not_resident),
            "{untouched:?}"
        );
        assert_eq!(batch, vec![true, false]);
        assert_eq!(
            second_resident.unwrap(),
            vec![false],
            "still not faulted in"
        );
    }

    #[test]
    fn short_read_stops_at_unmapped_page() {
        // Map two pages and unmap the second: a read across both stops at the boundary.
        let page = PAGE as usize;
        let base = two_fresh_pages();
        // SAFETY: the first page is ours and writable; the second is unmapped as a whole.
        unsafe {
            std::ptr::write_bytes(base.cast::<u8>(), 0xab, page);
            assert_eq!(libc::munmap(base.cast::<u8>().add(page).cast(), page), 0);
        }
        let mut buf = vec![0u8; 2 * page];
        let got = read_memory(std::process::id(), base as u64 + 100, &mut buf);
        let unmapped = read_memory(std::process::id(), base as u64 + page as u64, &mut buf);
        // SAFETY: unmapping the page mapped above.
        unsafe { libc::munmap(base, page) };
        assert_eq!(got.unwrap(), page - 100);
        assert!(buf[..page - 100].iter().all(|&b| b == 0xab));
        assert!(unmapped.is_err());
    }

    #[test]
    fn bad_addresses_and_pids_do_not_panic() {
        let mut buf = [0u8; 64];
        assert!(read_memory(std::process::id(), 0, &mut buf).is_err());
        assert!(read_memory(std::process::id(), u64::MAX - 3, &mut buf).is_err());
        assert!(read_memory(u32::MAX, 0x1000, &mut buf).is_err());
    }
}
