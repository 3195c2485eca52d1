//! Reading another process's memory without stopping it (process_vm_readv).

use std::io;

/// Page granularity of the remote iovecs: the kernel stops a transfer at the first remote
/// iovec that faults, so splitting at page boundaries makes a read stop exactly at the
/// first unmapped page instead of failing as a whole.
const PAGE: u64 = 4096;

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

/// Reads up to `buf.len()` bytes at `addr` in process `pid`; returns how many were read
/// (a short read stops at the first unmapped page).
///
/// Fails only when not even the first byte can be read (the page is unmapped: EFAULT;
/// the process is gone: ESRCH; not permitted: EPERM).
pub fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    // Never wrap around the address space.
    let len = (buf.len() as u64).min(u64::MAX - addr) as usize;
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

/// Reads many remote ranges with few syscalls: process_vm_readv takes up to IOV_MAX ranges
/// per call, so a census of 100,000 goroutines costs ~100 syscalls, not 100,000. Range `i`
/// lands at `out[offsets[i]..offsets[i] + len_i]` where ranges are packed back to back.
/// Returns per range whether it was read whole; a range that faults (freed memory, a
/// process that exited) is marked unread and the batch goes on past it.
pub fn read_batch(pid: u32, ranges: &[(u64, usize)], out: &mut Vec<u8>) -> Vec<bool> {
    let total: usize = ranges.iter().map(|r| r.1).sum();
    out.clear();
    out.resize(total, 0);
    let mut ok = vec![false; ranges.len()];
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
        let end = (next + MAX_IOVECS).min(ranges.len());
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

    fn read_byte(regions: &[(u64, Vec<u8>)], addr: u64) -> Option<u8> {
        regions.iter().find_map(|(start, bytes)| {
            let off = usize::try_from(addr.checked_sub(*start)?).ok()?;
            bytes.get(off).copied()
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
                for i in 0..iov.iov_len {
                    let byte = start
                        .checked_add(i as u64)
                        .and_then(|a| read_byte(&regions, a));
                    match byte {
                        Some(b) => local[done + i] = b,
                        None if done == 0 => {
                            return Err(io::Error::from_raw_os_error(libc::EFAULT));
                        }
                        None => return Ok(done),
                    }
                }
                done += iov.iov_len;
            }
            Ok(done)
        })
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn short_read_stops_at_unmapped_page() {
        // Map two pages and unmap the second: a read across both stops at the boundary.
        let page = PAGE as usize;
        // SAFETY: a fresh anonymous mapping, unmapped below; no references escape.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
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
