//! What the `/proc` thread source tells of what each process holds of what the kernel
//! limits, which the task iterator reads straight from the kernel (`ls_process`): its
//! real uid (`RLIMIT_NPROC` counts that user's tasks) and its memory mappings
//! (`vm.max_map_count` counts them). `/proc` has no mapping count, so `/proc/PID/maps`
//! is counted, line by line, and again only when the process's thread count moved (a
//! thread leak grows both together) or the count is [`RECOUNT_AFTER_NS`] old: a steady
//! process costs one read every few seconds, a leaking one one per scan.

use std::{collections::HashMap, fs, io::Read};

use tracer_common::UNKNOWN_U32;

/// A mapping count older than this is counted again even if nothing else moved.
const RECOUNT_AFTER_NS: u64 = 10_000_000_000;
/// The most of `/proc/PID/maps` counted (a process may name 65,530 mappings with
/// 4 KiB names each): past it the count is unknown, not wrong.
const MAX_MAPS_BYTES: usize = 16 << 20;

/// One process's holdings as last read.
#[derive(Clone, Copy, Debug)]
struct Held {
    start_ticks: u64,
    uid: u32,
    threads: u32,
    map_count: u32,
    counted_at_ns: u64,
}

/// The uid and mapping count of the processes a `/proc` scan lists.
#[derive(Default)]
pub struct Holdings {
    held: HashMap<u32, Held>,
    /// Pids listed by the scan under way.
    seen: Vec<u32>,
    buf: Vec<u8>,
}

impl Holdings {
    /// The real uid and mapping count of process `pid` (started at `start_ticks`, with
    /// `threads` threads), at `now_ns` (CLOCK_MONOTONIC); [`UNKNOWN_U32`] for what
    /// cannot be read.
    pub fn of(&mut self, pid: u32, start_ticks: u64, threads: u32, now_ns: u64) -> (u32, u32) {
        self.seen.push(pid);
        let known = self.held.get(&pid).filter(|h| h.start_ticks == start_ticks);
        if let Some(h) = known
            && h.threads == threads
            && now_ns.saturating_sub(h.counted_at_ns) < RECOUNT_AFTER_NS
        {
            return (h.uid, h.map_count);
        }
        let uid = match known {
            Some(h) => h.uid,
            None => read_real_uid(pid).unwrap_or(UNKNOWN_U32),
        };
        let map_count =
            count_lines(&format!("/proc/{pid}/maps"), &mut self.buf).unwrap_or(UNKNOWN_U32);
        let held = Held {
            start_ticks,
            uid,
            threads,
            map_count,
            counted_at_ns: now_ns,
        };
        self.held.insert(pid, held);
        (uid, map_count)
    }

    /// Forgets the processes the scan just ended did not list.
    pub fn end_scan(&mut self) {
        let seen: std::collections::HashSet<u32> = self.seen.drain(..).collect();
        self.held.retain(|pid, _| seen.contains(pid));
    }
}

/// The real uid of process `pid`: the first field of `Uid:` in its `status`.
fn read_real_uid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_real_uid(&status)
}

pub(super) fn parse_real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Counts the lines of a file read in chunks, up to [`MAX_MAPS_BYTES`]; `None` when it
/// cannot be read or is longer.
fn count_lines(path: &str, buf: &mut Vec<u8>) -> Option<u32> {
    let mut file = fs::File::open(path).ok()?;
    buf.resize(64 * 1024, 0);
    let (mut lines, mut read) = (0u32, 0usize);
    loop {
        let n = file.read(buf).ok()?;
        if n == 0 {
            return Some(lines);
        }
        read += n;
        if read > MAX_MAPS_BYTES {
            return None;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the real uid is the first of `Uid:`'s four fields.
    #[test]
    fn real_uid_is_the_first_uid_field() {
        let status = "Name:\tx\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_real_uid(status), Some(1000));
        assert_eq!(parse_real_uid("Name:\tx\n"), None);
    }

    /// Check that leakscope's own mappings are counted as /proc/self/maps lists them,
    /// that the count is kept while the thread count stays and taken again when it
    /// moves or the count gets old, and that a process no longer listed is forgotten.
    #[test]
    fn mappings_are_counted_again_when_threads_move() {
        let pid = std::process::id();
        let lines = fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count() as u32;
        let mut holdings = Holdings::default();
        let (uid, maps) = holdings.of(pid, 7, 3, 1_000);
        // SAFETY: getuid has no preconditions.
        assert_eq!(uid, unsafe { libc::getuid() });
        assert!(maps.abs_diff(lines) < 16, "{maps} vs {lines}");
        holdings.held.get_mut(&pid).unwrap().map_count = 1;
        assert_eq!(holdings.of(pid, 7, 3, 2_000).1, 1, "kept");
        assert_ne!(holdings.of(pid, 7, 4, 3_000).1, 1, "threads moved");
        holdings.held.get_mut(&pid).unwrap().map_count = 1;
        assert_ne!(holdings.of(pid, 7, 4, 3_000 + RECOUNT_AFTER_NS).1, 1, "old");
        holdings.end_scan();
        assert_eq!(holdings.held.len(), 1);
        holdings.end_scan();
        assert!(holdings.held.is_empty(), "not listed: forgotten");
        assert_eq!(
            holdings.of(u32::MAX - 1, 1, 1, 0),
            (UNKNOWN_U32, UNKNOWN_U32)
        );
    }
}
