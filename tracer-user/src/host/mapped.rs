//! Binaries mapped instead of copied: a file only root can write is mapped read-only
//! (private), so that analysing it and keeping its tables (a Go program's pclntab, a
//! library's unwind tables) costs page cache the kernel can reclaim at any time, not
//! heap. A file another user can write is never mapped (truncating it under the mapping
//! would raise SIGBUS in leakscope), nor one on a file system whose pages may fail to
//! come in (FUSE, network file systems: SIGBUS again, or a hang).
//!
//! Mapped pages touched during a scan count in leakscope's resident set until the
//! kernel reclaims them; [`release_resident_pages`] drops them from it after every scan
//! (they stay in the page cache, and come back on the next touch), so leakscope's RSS
//! does not grow with the binaries it once read.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    sync::Mutex,
};

/// File systems whose pages may fail to come in (a userspace or network server behind
/// them): never mapped.
const UNMAPPABLE_FILE_SYSTEMS: [i64; 7] = [
    0x6573_5546,            // FUSE
    0x6969,                 // NFS
    0xff53_4d42_u32 as i64, // CIFS
    0xfe53_4d42_u32 as i64, // SMB2
    0x0102_1997,            // 9P
    0x00c3_6400,            // Ceph
    0x0bd0_0bd0,            // Lustre
];

/// Whether `file` may be mapped: a regular file only root can write, on a local file
/// system. (Root can always write it, but a local root is outside the threat model.)
pub fn may_map(file: &File) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return false;
    }
    // SAFETY: fstatfs writes into a zeroed statfs we own, on a descriptor we own.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
        return false;
    }
    !UNMAPPABLE_FILE_SYSTEMS.contains(&(fs.f_type as i64))
}

/// A fresh private read-write mapping of `len` bytes (of `fd` from its start, or
/// anonymous with `MAP_ANONYMOUS` in `flags`); `None` when the kernel refuses.
fn map_private(len: usize, flags: libc::c_int, fd: libc::c_int) -> Option<*mut libc::c_void> {
    // SAFETY: a fresh mapping at an address the kernel chooses, touching no existing
    // memory; the kernel checks the arguments.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | flags,
            fd,
            0,
        )
    };
    (ptr != libc::MAP_FAILED).then_some(ptr)
}

/// The page size (x86-64).
const PAGE: usize = 4096;

/// Live mappings: start address → length, for [`release_resident_pages`].
static LIVE: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);

/// A read-only private mapping of a whole file.
pub struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; reading it from any
// thread is sound.
unsafe impl Send for MappedFile {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps the first `len` bytes of `file` (its size when opened), which
    /// [`may_map`] accepted; `None` for an empty file or when the kernel refuses.
    /// Private: [`Self::patch_first_page`] changes leakscope's view only.
    pub fn map(file: &File, len: u64) -> Option<Self> {
        let len = usize::try_from(len).ok().filter(|&l| l > 0)?;
        // A private mapping of a file we hold open: writes, if any, go to copies of the
        // pages, never to the file.
        let ptr = map_private(len, 0, file.as_raw_fd())?;
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.get_or_insert_with(HashMap::new)
            .insert(ptr as usize, len);
        Some(Self { ptr, len })
    }

    /// Writes `bytes` at `offset` within the first page, in leakscope's private view of
    /// the file (a header field to ignore); that page is then never released (releasing
    /// it would bring the file's own bytes back).
    pub fn patch_first_page(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset.saturating_add(bytes.len());
        if end > PAGE.min(self.len) {
            return;
        }
        // SAFETY: `offset..end` lies within the mapping, which is writable and private
        // and owned by `self` alone (no slice of it exists yet: `self` is borrowed
        // mutably).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.cast::<u8>().add(offset),
                bytes.len(),
            );
        }
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = live.as_mut() {
            live.remove(&(self.ptr as usize));
            if self.len > PAGE {
                live.insert(self.ptr as usize + PAGE, self.len - PAGE);
            }
        }
    }

    /// The mapping as shared bytes: slices of it (`Bytes::slice_ref`) keep it alive.
    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = live.as_mut() {
            live.remove(&(self.ptr as usize));
            live.remove(&(self.ptr as usize + PAGE));
        }
        // SAFETY: unmaps exactly the mapping this value owns, once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// A zeroed buffer of anonymous memory whose pages cost nothing until written: a file's
/// image with only the parts an analysis needs read into it (the rest reads as zeros).
pub struct SparseBuffer {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the buffer is owned by this value alone.
unsafe impl Send for SparseBuffer {}

impl SparseBuffer {
    /// `len` zero bytes; `None` when the kernel refuses (or `len` is 0).
    pub fn zeroed(len: u64) -> Option<Self> {
        let len = usize::try_from(len).ok().filter(|&l| l > 0)?;
        let ptr = map_private(len, libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1)?;
        Some(Self { ptr, len })
    }

    /// Reads `file`'s bytes `offset..offset + len` (clipped to the buffer) into the
    /// same place of the buffer, with pread; returns how many were read (fewer at the
    /// end of the file), or the first error (what was not read stays zero).
    pub fn fill_from(&mut self, file: &File, offset: u64, len: u64) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(self.len);
        let mut at = start;
        while at < end {
            match file.read_at(&mut self.as_mut()[at..end], at as u64) {
                Ok(0) => break,
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(at.saturating_sub(start))
    }
}

impl AsMut<[u8]> for SparseBuffer {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` maps `len` writable bytes owned by `self`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<u8>(), self.len) }
    }
}

impl AsRef<[u8]> for SparseBuffer {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for SparseBuffer {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns, once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// A file a library maps whole (the symbolizer's binaries): device, inode and size.
pub type WholeFile = (u64, u64, u64);

/// The files libraries map whole now, with how many holders each: whichever thread
/// holds them, their pages leave leakscope's resident set after every scan.
static WHOLE_FILES: Mutex<Option<HashMap<WholeFile, usize>>> = Mutex::new(None);

/// Registers a file a library maps whole while this value lives (see
/// [`release_resident_pages`]).
#[derive(Debug)]
pub struct WholeFileHeld(WholeFile);

impl WholeFileHeld {
    pub fn new(file: WholeFile) -> Self {
        let mut files = WHOLE_FILES.lock().unwrap_or_else(|e| e.into_inner());
        *files
            .get_or_insert_with(HashMap::new)
            .entry(file)
            .or_default() += 1;
        Self(file)
    }
}

impl Drop for WholeFileHeld {
    fn drop(&mut self) {
        let mut files = WHOLE_FILES.lock().unwrap_or_else(|e| e.into_inner());
        let files = files.get_or_insert_with(HashMap::new);
        if let Some(n) = files.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                files.remove(&self.0);
            }
        }
    }
}

/// Drops the pages of every live [`MappedFile`] and of every file registered with
/// [`WholeFileHeld`] from leakscope's resident set (see [`release_resident_pages_of`]).
pub fn release_resident_pages() {
    let whole: HashSet<WholeFile> = {
        let files = WHOLE_FILES.lock().unwrap_or_else(|e| e.into_inner());
        files.iter().flatten().map(|(&file, _)| file).collect()
    };
    release_resident_pages_of(&whole);
}

/// Drops the pages of every live [`MappedFile`] from leakscope's resident set (they
/// stay in the page cache), and those of the files `others` names that a library
/// mapped whole (the symbolizer's binaries). The contents read afterwards are the
/// same: these are read-only private mappings of files nobody but root writes, or of
/// sealed memory files, never written. Only a read-only mapping of a whole file from
/// its start is touched: the loader's mappings of the same file (libc, mapped by
/// leakscope itself) are segments, some of them written (relocated) before being made
/// read-only, and must keep their pages.
fn release_resident_pages_of(others: &HashSet<WholeFile>) {
    {
        let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        for (&start, &len) in live.iter().flatten() {
            dont_need(start, len);
        }
    }
    if others.is_empty() {
        return;
    }
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        if let Some((start, len)) = read_only_private_mapping_of(line, others) {
            dont_need(start, len);
        }
    }
}

/// The start and length of a `/proc/self/maps` line that maps one of `files` whole,
/// from its start, read-only and private.
fn read_only_private_mapping_of(line: &str, files: &HashSet<WholeFile>) -> Option<(usize, usize)> {
    let mut fields = line.split_ascii_whitespace();
    let (range, perms, offset, dev, inode) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    if perms != "r--p" || u64::from_str_radix(offset, 16).ok()? != 0 {
        return None;
    }
    let (major, minor) = dev.split_once(':')?;
    let dev = libc::makedev(
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let inode: u64 = inode.parse().ok()?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let len = usize::from_str_radix(end, 16).ok()?.checked_sub(start)?;
    let whole = files
        .iter()
        .any(|&(d, i, size)| d == dev && i == inode && len as u64 >= size && size > 0);
    whole.then_some((start, len))
}

fn dont_need(start: usize, len: usize) {
    // SAFETY: `start..start + len` is a read-only private file mapping of ours; dropping
    // its pages only makes the next access read them from the file again.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Resident pages of this process in the mapping at `ptr` (mincore).
    fn resident_pages(bytes: &[u8]) -> usize {
        let pages = bytes.len().div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: mincore over a mapping we hold, into a vector of one byte per page.
        let ok = unsafe {
            libc::mincore(
                bytes.as_ptr() as *mut libc::c_void,
                bytes.len(),
                vec.as_mut_ptr(),
            )
        };
        assert_eq!(ok, 0);
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }

    /// Check that a root-only file maps to the bytes it holds, slices keep the mapping
    /// alive after the file is closed, and that the pages read leave this process's
    /// resident set when released (VmRSS drops) while the contents stay readable.
    #[test]
    fn maps_root_files_and_releases_their_pages() {
        let path = std::env::temp_dir().join(format!("leakscope-mapped-{}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        let content: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        f.write_all(&content).unwrap();
        drop(f);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(may_map(&file), file.metadata().unwrap().uid() == 0);
        let mapped = MappedFile::map(&file, content.len() as u64).expect("mapped");
        drop(file);
        let bytes = mapped.into_bytes();
        let tail = bytes.slice_ref(&bytes[1 << 20..]);
        drop(bytes);
        assert_eq!(&tail[..], &content[1 << 20..]);
        let _ = tail.iter().map(|&b| b as u64).sum::<u64>();
        let rss_rss = resident_pages(&tail);
        assert!(rss_rss > 0);
        let vm_rss = || -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        let before = vm_rss();
        release_resident_pages_of(&HashSet::new());
        let after = vm_rss();
        assert!(
            before >= after + 2048,
            "RssFile {before} kB -> {after} kB: the 3 MiB read were not released"
        );
        assert_eq!(&tail[..], &content[1 << 20..], "readable again, unchanged");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!may_map(&File::open(&path).unwrap()), "others may write it");
        std::fs::remove_file(&path).unwrap();
    }

    /// Check that a maps line names a read-only private mapping of a listed file only
    /// when it maps the whole file from its start (never one of the loader's segments).
    #[test]
    fn maps_lines_of_listed_files() {
        let files: HashSet<WholeFile> = [(libc::makedev(8, 1), 42, 0x1800)].into();
        let line = "7f00000000-7f00002000 r--p 00000000 08:01 42   /usr/lib/x.so";
        assert_eq!(
            read_only_private_mapping_of(line, &files),
            Some((0x7f00000000, 0x2000))
        );
        let other = "7f00000000-7f00002000 r--p 00000000 08:01 43   /usr/lib/y.so";
        assert_eq!(read_only_private_mapping_of(other, &files), None);
        let writable = "7f00000000-7f00002000 rw-p 00000000 08:01 42   /usr/lib/x.so";
        assert_eq!(read_only_private_mapping_of(writable, &files), None);
        let segment = "7f00000000-7f00001000 r--p 00000000 08:01 42   /usr/lib/x.so";
        assert_eq!(
            read_only_private_mapping_of(segment, &files),
            None,
            "part of it"
        );
        let relro = "7f00000000-7f00002000 r--p 00001000 08:01 42   /usr/lib/x.so";
        assert_eq!(
            read_only_private_mapping_of(relro, &files),
            None,
            "not from its start"
        );
    }
}
