//! Facts about processes from /proc: memory maps, executable, thread details.

use std::io;

/// What the kernel appends to the path of a mapping whose file was unlinked.
const DELETED_SUFFIX: &str = " (deleted)";

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryMap {
    pub start: u64,
    pub end: u64,
    /// "r-xp" etc.
    pub perms: String,
    /// File offset of `start`.
    pub offset: u64,
    /// Device as (major, minor).
    pub dev: (u32, u32),
    pub inode: u64,
    /// Path, pseudo name ("[stack]", "[vdso]"), or None for anonymous mappings.
    /// Kept exactly as the kernel prints it, including a " (deleted)" suffix, so that
    /// reports show that the binary on disk is no longer the one running.
    pub path: Option<String>,
}

impl MemoryMap {
    pub fn is_executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }

    /// Whether the mapping is backed by a file (as opposed to anonymous memory or a
    /// pseudo mapping such as "[vdso]" or "[heap]").
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.as_deref().is_some_and(|p| p.starts_with('/'))
    }

    /// Whether the backing file was unlinked (or replaced) since it was mapped.
    pub fn is_deleted(&self) -> bool {
        self.is_file()
            && self
                .path
                .as_deref()
                .is_some_and(|p| p.ends_with(DELETED_SUFFIX))
    }

    /// The backing file's path without the " (deleted)" suffix, for file mappings only.
    /// The path is relative to the process's root (its mount namespace), not ours.
    pub fn file_path(&self) -> Option<&str> {
        if !self.is_file() {
            return None;
        }
        let path = self.path.as_deref()?;
        Some(path.strip_suffix(DELETED_SUFFIX).unwrap_or(path))
    }

    /// The name of this mapping under /proc/PID/map_files/ ("start-end", lowercase hex).
    /// Opening that link reaches the mapped file itself, even when it was deleted or lives
    /// in another mount namespace.
    pub fn map_files_name(&self) -> String {
        format!("{:x}-{:x}", self.start, self.end)
    }
}

/// The mapping holding `addr`, by binary search: /proc/PID/maps lists mappings sorted by
/// address and without overlap (a process may have 65,530 of them; this runs per frame).
pub fn map_containing(maps: &[MemoryMap], addr: u64) -> Option<&MemoryMap> {
    let after = maps.partition_point(|m| m.start <= addr);
    maps[..after].last().filter(|m| m.contains(addr))
}

/// Largest guard mapping below a thread stack: glibc's default is one page, a
/// `pthread_attr_setguardsize` or a runtime's own guard zone a few more. (A Go heap
/// arena sits above megabytes of reserved, inaccessible address space: no stack.)
const MAX_GUARD_BYTES: u64 = 1 << 20;

/// The mapping of a thread's stack, given its stack pointer: the main thread's
/// `[stack]`, or an anonymous read-write private mapping that starts right where a small
/// inaccessible one ends, its guard (glibc, musl and Rust threads are laid out so);
/// `None` when the mapping holding `sp` is not recognisably a thread stack.
pub fn thread_stack_mapping(maps: &[MemoryMap], sp: u64) -> Option<&MemoryMap> {
    let at = maps.partition_point(|m| m.start <= sp).checked_sub(1)?;
    let stack = maps.get(at).filter(|m| m.contains(sp))?;
    if stack.path.as_deref() == Some("[stack]") {
        return Some(stack);
    }
    let guard = maps.get(at.checked_sub(1)?)?;
    let anonymous = |m: &MemoryMap| m.inode == 0 && m.path.is_none();
    let is_stack = anonymous(stack)
        && stack.perms == "rw-p"
        && anonymous(guard)
        && guard.perms == "---p"
        && guard.end == stack.start
        && guard.end - guard.start <= MAX_GUARD_BYTES;
    is_stack.then_some(stack)
}

/// Largest mapping whose resident pages are counted (16 Ki page entries, 128 KiB of
/// `pagemap`); a bigger thread stack is counted as reserved only.
const MAX_RESIDENT_SCAN: u64 = 64 << 20;

/// How many bytes of `[start, end)` in process `pid` are resident, from
/// `/proc/PID/pagemap` (bit 63 of each page's entry: present in memory); `None` when
/// it cannot be read or the range is over [`MAX_RESIDENT_SCAN`].
pub fn resident_bytes(pid: u32, start: u64, end: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let page = 4096;
    if end <= start || end - start > MAX_RESIDENT_SCAN || !start.is_multiple_of(page) {
        return None;
    }
    let pages = ((end - start) / page) as usize;
    let mut entries = vec![0u8; pages * 8];
    let file = std::fs::File::open(format!("/proc/{pid}/pagemap")).ok()?;
    file.read_exact_at(&mut entries, start / page * 8).ok()?;
    let present = entries
        .chunks_exact(8)
        .filter(|e| u64::from_le_bytes((*e).try_into().expect("8 bytes")) >> 63 == 1)
        .count() as u64;
    Some(present * page)
}

/// Parses the text of /proc/PID/maps; malformed lines are skipped. At most
/// [`MAX_MAPS`] + 1 mappings are kept (one more tells [`read_maps`] the process has too
/// many), so the list costs a bounded multiple of the text whatever its lines.
pub fn parse_maps(text: &str) -> Vec<MemoryMap> {
    text.split('\n')
        .filter_map(parse_line)
        .take(MAX_MAPS + 1)
        .collect()
}

/// Most mappings read from one process: the kernel allows `vm.max_map_count` (65,530
/// by default; 262,144 where databases ask for more). 32 MiB of the shortest lines
/// would be two million mappings, 300 MB parsed (found by the proc_maps fuzz target).
pub const MAX_MAPS: usize = 1 << 18;

/// Largest /proc/PID/maps read. A process chooses its mappings' count (up to 65,530) and
/// their file names (up to 4 KiB each): 270 MB of text if read whole. Real ones are a few
/// hundred KB.
pub const MAX_MAPS_BYTES: u64 = 32 << 20;

/// Reads and parses /proc/PID/maps (file names that are not UTF-8 are kept lossily: the
/// mapped file is reached through map_files, not its name). A file over
/// [`MAX_MAPS_BYTES`] is an error, not a silently partial list.
pub fn read_maps(pid: u32) -> io::Result<Vec<MemoryMap>> {
    use std::io::Read;
    let file = std::fs::File::open(format!("/proc/{pid}/maps"))?;
    let mut bytes = Vec::new();
    file.take(MAX_MAPS_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MAPS_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/maps is larger than {MAX_MAPS_BYTES} bytes"),
        ));
    }
    let maps = parse_maps(&String::from_utf8_lossy(&bytes));
    if maps.len() > MAX_MAPS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/maps lists more than {MAX_MAPS} mappings"),
        ));
    }
    Ok(maps)
}

/// Reads a small text file of the kernel's (`/proc`, a cgroup's) whole, up to `max`
/// bytes (a file another user's process or cgroup shapes is no input to trust with
/// memory); `None` when it cannot be read.
pub fn read_text(path: &std::path::Path, max: u64) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Heap bytes one parsed mapping takes (the entry in its list, and its strings).
impl MemoryMap {
    pub fn heap_bytes(&self) -> u64 {
        (size_of::<MemoryMap>()
            + self.perms.capacity()
            + self.path.as_ref().map_or(0, String::capacity)) as u64
    }
}

/// Why a process's maps were not read within a bound.
#[derive(Debug)]
pub enum BoundedMapsError {
    /// They could not be read (the process is gone, or not permitted).
    Io(io::Error),
    /// Parsed, they would take more than the bound: `needed` bytes by the time the
    /// reading stopped.
    TooLarge { needed: u64 },
}

/// Reads and parses /proc/PID/maps a line at a time, keeping the path of the mappings
/// `keep_path` accepts (others keep only their range, permissions and identity), and
/// stops as soon as the parsed list would take more than `max_bytes`: a process chooses
/// how many mappings it has and how long their names are, and no whole text is held.
pub fn read_maps_bounded(
    pid: u32,
    max_bytes: u64,
    keep_path: impl Fn(&MemoryMap) -> bool,
) -> Result<Vec<MemoryMap>, BoundedMapsError> {
    use std::io::{BufRead, BufReader, Read};
    let file = std::fs::File::open(format!("/proc/{pid}/maps")).map_err(BoundedMapsError::Io)?;
    let mut reader = BufReader::with_capacity(64 * 1024, file.take(MAX_MAPS_BYTES + 1));
    let (mut maps, mut bytes, mut read) = (Vec::new(), 0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(BoundedMapsError::Io)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > MAX_MAPS_BYTES {
            return Err(BoundedMapsError::TooLarge { needed: bytes });
        }
        let Some(mut map) = parse_line(String::from_utf8_lossy(&line).trim_end_matches('\n'))
        else {
            continue;
        };
        if !keep_path(&map) {
            map.path = None;
        }
        bytes += map.heap_bytes();
        if bytes > max_bytes {
            return Err(BoundedMapsError::TooLarge { needed: bytes });
        }
        maps.push(map);
    }
    maps.shrink_to_fit();
    Ok(maps)
}

/// Splits off the next space-separated field, skipping leading spaces.
fn next_field(rest: &str) -> Option<(&str, &str)> {
    let rest = rest.trim_start_matches(' ');
    if rest.is_empty() {
        return None;
    }
    Some(match rest.find(' ') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    })
}

/// Parses one maps line: `start-end perms offset maj:min inode   path`.
fn parse_line(line: &str) -> Option<MemoryMap> {
    let (range, rest) = next_field(line)?;
    let (perms, rest) = next_field(rest)?;
    let (offset, rest) = next_field(rest)?;
    let (dev, rest) = next_field(rest)?;
    let (inode, rest) = next_field(rest)?;

    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if start > end || perms.len() != 4 || !perms.is_ascii() {
        return None;
    }
    let offset = u64::from_str_radix(offset, 16).ok()?;
    let (major, minor) = dev.split_once(':')?;
    let dev = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let inode = inode.parse::<u64>().ok()?;

    // The kernel pads the inode column with spaces before the path; the path itself may
    // contain spaces, so everything after the padding belongs to it.
    let path = rest.trim_start_matches(' ');
    let path = path.strip_suffix('\r').unwrap_or(path);
    let path = (!path.is_empty()).then(|| path.to_string());

    Some(MemoryMap {
        start,
        end,
        perms: perms.to_string(),
        offset,
        dev,
        inode,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d1c7a4e000-55d1c7a50000 r--p 00000000 fd:01 1835023                    /usr/bin/cat
55d1c7a50000-55d1c7a55000 r-xp 00002000 fd:01 1835023                    /usr/bin/cat
55d1c8e1b000-55d1c8e3c000 rw-p 00000000 00:00 0                          [heap]
7f3a1c000000-7f3a1c021000 rw-p 00000000 00:00 0 
7f3a1d028000-7f3a1d1a0000 r-xp 00028000 103:02 2102                      /opt/my app/lib foo.so (deleted)
this is not a maps line
7f3a1d1a0000-7f3a1d1a1000 r-xp zz 00:00 0
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
7ffd5e3f2000-7ffd5e3f6000 r--p 00000000 00:00 0                          [vvar]
7ffd5e3f6000-7ffd5e3f8000 r-xp 00000000 00:00 0                          [vdso]
";

    #[test]
    fn parses_sample() {
        let maps = parse_maps(SAMPLE);
        assert_eq!(maps.len(), 8, "{maps:#?}");

        assert_eq!(
            maps[1],
            MemoryMap {
                start: 0x55d1c7a50000,
                end: 0x55d1c7a55000,
                perms: "r-xp".into(),
                offset: 0x2000,
                dev: (0xfd, 1),
                inode: 1835023,
                path: Some("/usr/bin/cat".into()),
            }
        );
        assert!(maps[1].is_executable() && !maps[0].is_executable());
        assert!(maps[1].contains(0x55d1c7a50000) && !maps[1].contains(0x55d1c7a55000));
        assert_eq!(maps[1].map_files_name(), "55d1c7a50000-55d1c7a55000");

        assert_eq!(maps[2].path.as_deref(), Some("[heap]"));
        assert!(!maps[2].is_file());
        assert_eq!(maps[3].path, None);

        let deleted = &maps[4];
        assert_eq!(deleted.dev, (0x103, 2));
        assert_eq!(deleted.offset, 0x28000);
        assert_eq!(
            deleted.path.as_deref(),
            Some("/opt/my app/lib foo.so (deleted)")
        );
        assert!(deleted.is_deleted());
        assert_eq!(deleted.file_path(), Some("/opt/my app/lib foo.so"));

        assert_eq!(maps[5].start, 0xffffffffff600000);
        assert_eq!(maps[7].path.as_deref(), Some("[vdso]"));
        assert_eq!(maps[7].file_path(), None);
    }

    /// Check that a pthread's stack (above its one-page guard) and the main thread's
    /// `[stack]` are thread stacks, and that an anonymous mapping above megabytes of
    /// reserved address space (a Go heap arena), a malloc arena (its reserve above it)
    /// and a file mapping are not.
    #[test]
    fn thread_stacks_are_told_by_their_guard() {
        let maps = parse_maps(
            "7f0000000000-7f0000001000 ---p 00000000 00:00 0 \n\
             7f0000001000-7f0000801000 rw-p 00000000 00:00 0 \n\
             7f1000000000-7f1000021000 rw-p 00000000 00:00 0 \n\
             7f1000021000-7f1004000000 ---p 00000000 00:00 0 \n\
             c000000000-c001400000 ---p 00000000 00:00 0 \n\
             c001400000-c004000000 rw-p 00000000 00:00 0 \n\
             7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n",
        );
        let mut maps = maps;
        maps.sort_by_key(|m| m.start);
        let stack = thread_stack_mapping(&maps, 0x7f0000800000).unwrap();
        assert_eq!((stack.start, stack.end), (0x7f0000001000, 0x7f0000801000));
        assert!(
            thread_stack_mapping(&maps, 0x7ffd00020000).is_some(),
            "[stack]"
        );
        assert!(
            thread_stack_mapping(&maps, 0xc002000000).is_none(),
            "Go arena"
        );
        assert!(
            thread_stack_mapping(&maps, 0x7f1000010000).is_none(),
            "malloc"
        );
        assert!(
            thread_stack_mapping(&maps, 0x7f0000000800).is_none(),
            "the guard"
        );
        assert!(thread_stack_mapping(&maps, 0x10).is_none());
    }

    /// Check, on one of this test's own threads, that its stack mapping is found from
    /// an address on its stack, that its size is what the thread asked for, and that
    /// the pages it touched are resident while the untouched rest is not.
    #[test]
    fn own_thread_stack_is_found_and_partly_resident() {
        let size = 4 << 20;
        let (sp, maps, resident) = std::thread::Builder::new()
            .stack_size(size)
            .spawn(|| {
                let touched = [1u8; 64 * 1024];
                let sp = std::hint::black_box(&touched) as *const _ as u64;
                let maps = read_maps(std::process::id()).unwrap();
                let stack = thread_stack_mapping(&maps, sp).cloned();
                let resident = stack
                    .as_ref()
                    .and_then(|m| resident_bytes(std::process::id(), m.start, m.end));
                (sp, stack, resident)
            })
            .unwrap()
            .join()
            .unwrap();
        let stack = maps.expect("a thread stack above its guard");
        assert!(stack.contains(sp));
        let reserved = stack.end - stack.start;
        assert!(
            (size as u64..size as u64 + (1 << 20)).contains(&reserved),
            "{reserved}"
        );
        let resident = resident.expect("pagemap is readable");
        assert!((64 << 10..reserved / 2).contains(&resident), "{resident}");
        assert_eq!(resident_bytes(std::process::id(), 0, 1 << 40), None);
    }

    #[test]
    fn skips_garbage() {
        let text = "\n\n-\n1-2\n1-2 r-xp\n2-1 r-xp 0 00:00 0\n1-2 r-xp 0 00:00 x /a\n\
                    1-2 rwxpx 0 00:00 0 /a\n1-2 r-xp 0 0000 0 /a\n1-2 r-xp 0 00:00 0 /ok\n";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].path.as_deref(), Some("/ok"));
    }

    /// Check that bounded reading keeps the paths asked for, drops the others, and stops
    /// with the size reached when the list would pass the bound.
    #[test]
    fn bounded_maps_keep_asked_paths_and_stop_at_the_bound() {
        let pid = std::process::id();
        let all = read_maps(pid).unwrap();
        let exec = read_maps_bounded(pid, u64::MAX, MemoryMap::is_executable).unwrap();
        assert_eq!(exec.len(), all.len());
        assert!(exec.iter().all(|m| m.path.is_none() || m.is_executable()));
        assert!(exec.iter().any(|m| m.path.is_some()));
        let small = 3 * size_of::<MemoryMap>() as u64;
        match read_maps_bounded(pid, small, |_| true) {
            Err(BoundedMapsError::TooLarge { needed }) => assert!(needed > small),
            other => panic!("{other:?}"),
        }
    }

    /// Check that a maps text of more lines than any process may map is parsed only up
    /// to one past the bound (the proc_maps fuzz seed grow-32mib-short-lines: two
    /// million lines took 300 MB).
    #[test]
    fn mappings_are_bounded() {
        let text = "0-1 r-xp 0 0:0 0\n".repeat(MAX_MAPS + 10);
        assert_eq!(parse_maps(&text).len(), MAX_MAPS + 1);
    }

    #[test]
    fn reads_own_maps() {
        let maps = read_maps(std::process::id()).unwrap();
        let here = reads_own_maps as fn() as usize as u64;
        let text = maps
            .iter()
            .find(|m| m.contains(here))
            .expect("own code is mapped");
        assert!(text.is_executable() && text.is_file());
    }

    /// Check that a mapped file whose name is not UTF-8 (any process may map one) does
    /// not make the whole maps unreadable: the mapping is listed, its name lossy.
    #[test]
    fn maps_with_a_non_utf8_file_name_still_read() {
        use std::os::unix::{ffi::OsStrExt, fs::MetadataExt};
        let name = std::ffi::OsStr::from_bytes(b"leakscope-\xff\xfe-map");
        let dir = std::env::temp_dir().join(format!("leakscope-maps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let inode = file.metadata().unwrap().ino();
        // SAFETY: a fresh read-only shared mapping of a file we own, unmapped below.
        let addr = unsafe {
            use std::os::fd::AsRawFd;
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let maps = read_maps(std::process::id());
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(addr, 4096) };
        std::fs::remove_dir_all(&dir).unwrap();
        let maps = maps.expect("maps read despite a non-UTF-8 name");
        assert!(
            maps.iter()
                .any(|m| m.inode == inode && m.start == addr as u64)
        );
    }
}
