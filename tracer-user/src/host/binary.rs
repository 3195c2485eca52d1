//! Which binary a process maps, and where: one identity for a file on this host, its
//! GNU build id, opening the file behind a mapping, and the load bias of a mapping. The
//! unwinder, the symbolizer and the Go reader all identify binaries through here.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{
            ffi::OsStrExt,
            fs::{MetadataExt, OpenOptionsExt},
        },
    },
    path::{Path, PathBuf},
};

use object::{
    Endianness, ReadCache, ReadRef,
    elf::{self, FileHeader64},
    read::elf::{FileHeader, ProgramHeader, SectionHeader},
};

use crate::host::{
    mapped::{WholeFileHeld, may_map},
    procfs::{self, MemoryMap},
    stat,
};

/// Largest header tables accepted (program headers, section headers, notes).
pub const MAX_HEADER_ENTRIES: usize = 1 << 16;
const MAX_NOTE_BYTES: u64 = 1 << 20;

/// What identifies a file on this host: the same (dev, inode) is the same file, and size
/// and mtime tell a file rewritten in place from its former content. The path is left
/// out on purpose: hard links and other mount namespaces reach the same file by other
/// paths, and it must be parsed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileIdent {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

impl FileIdent {
    /// The identity `statx` gave.
    pub fn of_stat(st: &stat::Stat) -> Self {
        Self {
            dev: st.dev,
            ino: st.ino,
            size: st.size,
            mtime_sec: st.mtime_sec,
            mtime_nsec: st.mtime_nsec,
        }
    }

    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// What a binary's parsed data is cached under: its GNU build id when it has one (the
/// same libc in many containers is then parsed once), else the file's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BinaryKey {
    BuildId(Box<[u8]>),
    File(FileIdent),
    /// An image read from memory without a build id ([vdso]).
    Memory {
        len: u64,
        hash: u64,
    },
}

/// A mapped binary opened for reading.
pub struct MappedBinary {
    pub file: File,
    pub ident: FileIdent,
    /// The path it was opened through.
    pub opened: PathBuf,
}

/// Opens the file behind a mapping, only if it is the very file mapped (the device and
/// inode the maps say) and a regular file: through /proc/PID/map_files (which reaches
/// the mapped file itself even when it was deleted, replaced, or lives in another mount
/// namespace), else by its path inside the process's root, following no symbolic link
/// (see [`open_in_root`]). Either is first opened `O_PATH` (no file system's or
/// device's `open` runs), checked, then reopened for reading through that descriptor:
/// what was checked is what is read, whatever is renamed or swapped meanwhile.
pub fn open_mapped_binary(pid: u32, map: &MemoryMap) -> Option<MappedBinary> {
    let path = map.file_path()?;
    let via_map_files = PathBuf::from(format!("/proc/{pid}/map_files/{}", map.map_files_name()));
    let located = open_path(libc::AT_FDCWD, &via_map_files, libc::O_PATH)
        .ok()
        .map(|fd| (fd, via_map_files));
    let (fd, opened) = match located {
        Some(found) => found,
        None if map.is_deleted() => return None,
        None => (
            open_in_root(pid, path).ok()?,
            format!("/proc/{pid}/root{path}").into(),
        ),
    };
    reopen_mapped(pid, &fd, map, opened)
}

/// Opens `path` (absolute, as the process at `pid` sees it) `O_PATH` inside the
/// process's root, following no symbolic link (`openat2` with `RESOLVE_IN_ROOT`,
/// `RESOLVE_NO_SYMLINKS`, `RESOLVE_NO_MAGICLINKS`): a path in the maps is already
/// resolved, so a link on it is a component swapped since. Without `openat2` (before
/// 5.6, or refused by a seccomp filter), `O_PATH | O_NOFOLLOW` through
/// `/proc/PID/root`; either way the device and inode check after it is what keeps
/// another file out.
pub fn open_in_root(pid: u32, path: &str) -> io::Result<OwnedFd> {
    let root = open_path(
        libc::AT_FDCWD,
        Path::new(&format!("/proc/{pid}/root")),
        libc::O_PATH | libc::O_DIRECTORY,
    )?;
    let inside = CString::new(path.trim_start_matches('/'))?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: a NUL-terminated path and an open_how of the size passed, both outliving
    // the call; the descriptor returned is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            inside.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a fresh descriptor nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    match io::Error::last_os_error() {
        // No openat2 (before 5.6), or a seccomp filter that refuses it.
        e if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
            let whole = format!("/proc/{pid}/root{path}");
            open_path(
                libc::AT_FDCWD,
                Path::new(&whole),
                libc::O_PATH | libc::O_NOFOLLOW,
            )
        }
        e => Err(e),
    }
}

/// `struct open_how` of `openat2(2)` (libc's cannot be built: it may grow).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat(dirfd, path, flags | O_CLOEXEC)`.
fn open_path(dirfd: i32, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path that outlives the call; the descriptor returned is
    // owned below.
    let fd = unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens for reading the file `located` (an `O_PATH` descriptor) refers to, if it is a
/// regular file and the one `map` maps.
fn reopen_mapped(
    pid: u32,
    located: &OwnedFd,
    map: &MemoryMap,
    opened: PathBuf,
) -> Option<MappedBinary> {
    let st = stat::fstat_cached(located).ok()?;
    if !st.is_file() || !is_mapped_file(pid, &st, map) {
        return None;
    }
    // Not on a file system a read of ours is stuck in (the frames stay unnamed).
    if !super::hung::opening(st.dev) {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", located.as_raw_fd()))
        .ok()?;
    let again = stat::fstat_cached(&file).ok()?;
    (again.dev == st.dev && again.ino == st.ino).then(|| MappedBinary {
        ident: FileIdent::of_stat(&again),
        file,
        opened,
    })
}

/// Whether `st` is the file `map` maps: the same inode on the same device. The maps
/// give the device of the file system itself, `statx` the one it reports (btrfs
/// reports each subvolume's own): then the device of the mount it was reached through
/// (from the process's mountinfo) must be the maps' one.
fn is_mapped_file(pid: u32, st: &stat::Stat, map: &MemoryMap) -> bool {
    if st.ino != map.inode {
        return false;
    }
    st.dev_pair() == map.dev || (st.mnt_id != 0 && mount_device(pid, st.mnt_id) == Some(map.dev))
}

/// The device (major, minor) of mount `mnt_id` of process `pid`'s mount namespace.
fn mount_device(pid: u32, mnt_id: u64) -> Option<(u32, u32)> {
    let path = PathBuf::from(format!("/proc/{pid}/mountinfo"));
    let mountinfo = procfs::read_text(&path, MAX_MOUNTINFO_BYTES)?;
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let id: u64 = fields.next()?.parse().ok()?;
        let dev = fields.nth(1)?;
        if id != mnt_id {
            return None;
        }
        let (major, minor) = dev.split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

/// Largest mountinfo read (a node with thousands of container mounts).
const MAX_MOUNTINFO_BYTES: u64 = 16 << 20;

/// A binary held open for a library that opens and maps files by path (blazesym): the
/// path it is given is `/proc/self/fd/N` of a file leakscope opened and checked itself,
/// so it cannot be swapped for a FIFO (an open that blocks forever) between a check and
/// the library's open. A file only root can write, on a local file system, is held
/// itself (see [`may_map`]); another (which an unprivileged user could truncate while it
/// is mapped: SIGBUS in leakscope) is held as a sealed memory file nobody can change,
/// holding only the parts the library reads ([`SymbolSections`]): never the whole file.
pub struct HeldBinary {
    file: File,
    /// Bytes of memory the copy holds (0 when the file itself is held).
    pub copied_bytes: u64,
    /// Whether its debug info is held for the library to read.
    pub debug_info: bool,
    /// The file registered as mapped whole by the library (see
    /// [`crate::host::mapped::release_resident_pages`]).
    _whole: Option<WholeFileHeld>,
}

/// Where the parts of an ELF file a symbolizer reads are, and what reading them costs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolSections {
    /// Byte ranges (offset, length) needed to name functions from the symbol tables:
    /// the ELF, program and section headers, the section names, the symbol and string
    /// tables, notes (the build id) and the debug link.
    pub symbols: Vec<(u64, u64)>,
    /// Byte ranges of the debug sections (`.debug_*`, `.zdebug_*`).
    pub debug: Vec<(u64, u64)>,
    /// Bytes the compressed debug sections declare they inflate to.
    pub debug_inflated: u64,
    /// Whether any debug section is compressed (it inflates to whatever it likes: the
    /// size it declares is only a hint to the library that inflates it).
    pub debug_compressed: bool,
}

/// Largest section accepted in a plan: anything bigger is corrupt or hostile.
const MAX_PLANNED_SECTION: u64 = 1 << 40;

impl SymbolSections {
    /// Reads the plan off an ELF file's headers (read on demand: nothing but the
    /// headers is read); `None` for what is not a 64-bit ELF with sane headers.
    pub fn of(file: &File) -> Option<Self> {
        let data = ReadCache::new(file);
        let data = &data;
        let header = FileHeader64::<Endianness>::parse(data).ok()?;
        let endian = header.endian().ok()?;
        if header.phnum(endian, data).ok()? > MAX_HEADER_ENTRIES
            || header.shnum(endian, data).ok()? > MAX_HEADER_ENTRIES
        {
            return None;
        }
        let file_len = data.len().ok()?;
        let mut plan = Self {
            symbols: vec![(0, u64::from(header.e_ehsize(endian)).max(64))],
            ..Self::default()
        };
        let phnum = header.phnum(endian, data).ok()? as u64;
        plan.symbols.push((
            header.e_phoff(endian),
            phnum * u64::from(header.e_phentsize(endian)),
        ));
        let shnum = header.shnum(endian, data).ok()? as u64;
        plan.symbols.push((
            header.e_shoff(endian),
            shnum * u64::from(header.e_shentsize(endian)),
        ));
        let sections = header.sections(endian, data).ok()?;
        let strings = header.section_strings_index(endian, data).ok()?;
        for (index, section) in sections.enumerate() {
            let Some((offset, size)) = section.file_range(endian) else {
                continue;
            };
            if size > MAX_PLANNED_SECTION || offset.saturating_add(size) > file_len {
                continue;
            }
            let name = sections.section_name(endian, section).unwrap_or_default();
            let is_names = index == strings;
            if is_names || is_symbol_section(name) {
                plan.symbols.push((offset, size));
            } else if name.starts_with(b".debug_") || name.starts_with(b".zdebug_") {
                plan.debug.push((offset, size));
                let compressed = name.starts_with(b".zdebug_")
                    || section.sh_flags(endian) & u64::from(elf::SHF_COMPRESSED) != 0;
                if compressed {
                    plan.debug_compressed = true;
                    plan.debug_inflated = plan
                        .debug_inflated
                        .saturating_add(declared_size(section, endian, data).unwrap_or(u64::MAX));
                }
            }
        }
        Some(plan)
    }

    /// Bytes the symbol-table parts span.
    pub fn symbol_bytes(&self) -> u64 {
        span(&self.symbols)
    }

    /// What reading the debug info would take: the debug sections, and what the
    /// compressed ones declare they inflate to.
    pub fn debug_bytes(&self) -> u64 {
        span(&self.debug).saturating_add(self.debug_inflated)
    }
}

fn span(ranges: &[(u64, u64)]) -> u64 {
    ranges
        .iter()
        .fold(0u64, |n, &(_, len)| n.saturating_add(len))
}

/// The sections a symbolizer names functions from (besides the section names).
fn is_symbol_section(name: &[u8]) -> bool {
    matches!(
        name,
        b".symtab" | b".strtab" | b".dynsym" | b".dynstr" | b".gnu_debuglink"
    ) || name.starts_with(b".note")
}

/// The size a compressed section declares it inflates to.
fn declared_size<'a, R: ReadRef<'a>>(
    section: &object::elf::SectionHeader64<Endianness>,
    endian: Endianness,
    data: R,
) -> Option<u64> {
    use object::read::elf::CompressionHeader;
    let (offset, size) = section.file_range(endian)?;
    if section.sh_flags(endian) & u64::from(elf::SHF_COMPRESSED) != 0 {
        let header = data
            .read_at::<object::elf::CompressionHeader64<Endianness>>(offset)
            .ok()?;
        return Some(header.ch_size(endian));
    }
    // `.zdebug_*`: "ZLIB" and the size, big-endian.
    let head = data.read_bytes_at(offset, 12.min(size)).ok()?;
    (head.len() == 12 && &head[..4] == b"ZLIB")
        .then(|| u64::from_be_bytes(head[4..12].try_into().unwrap_or_default()))
}

/// Why a binary is not held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldRefused {
    /// Its copy would not fit (`needed` bytes).
    TooLarge { needed: u64 },
    /// It could not be read or copied.
    Unreadable,
}

impl HeldBinary {
    /// Holds `binary` for a symbolizer: the file itself when it may be mapped, else a
    /// sealed copy of the parts `plan` lists: the symbol tables, and the debug info when
    /// `with_debug` (never compressed debug info of such a file). `max_copy` bounds the
    /// copy.
    pub fn hold(
        binary: MappedBinary,
        plan: &SymbolSections,
        with_debug: bool,
        max_copy: u64,
    ) -> Result<Self, HoldRefused> {
        if may_map(&binary.file) {
            return Ok(Self::registered(binary.file, 0, with_debug));
        }
        let debug_info = with_debug && !plan.debug_compressed;
        let mut ranges = plan.symbols.clone();
        if debug_info {
            ranges.extend_from_slice(&plan.debug);
        }
        let needed = span(&ranges);
        if needed > max_copy {
            return Err(HoldRefused::TooLarge { needed });
        }
        let copy =
            sealed_copy(&binary.file, binary.ident.size, &ranges).ok_or(HoldRefused::Unreadable)?;
        Ok(Self::registered(copy, needed, debug_info))
    }

    /// Holds `file`, registered as mapped whole.
    fn registered(file: File, copied_bytes: u64, debug_info: bool) -> Self {
        let whole = file
            .metadata()
            .ok()
            .map(|meta| WholeFileHeld::new((meta.dev(), meta.ino(), meta.len())));
        Self {
            file,
            copied_bytes,
            debug_info,
            _whole: whole,
        }
    }

    /// The path to open the held file by.
    pub fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

/// A memory file as long as `file` (`len` bytes) holding only `ranges` of it, read with
/// pread (never mapped); the rest is holes, which cost no memory. Sealed against
/// shrinking, growing and writing.
fn sealed_copy(file: &File, len: u64, ranges: &[(u64, u64)]) -> Option<File> {
    use std::os::{fd::FromRawFd, unix::fs::FileExt};
    // SAFETY: memfd_create with a NUL-terminated name; the fd returned is owned below.
    let fd = unsafe {
        libc::memfd_create(
            c"leakscope-binary".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let copy = unsafe { File::from_raw_fd(fd) };
    copy.set_len(len).ok()?;
    let mut buf = vec![0u8; 1 << 20];
    for &(start, size) in ranges {
        let end = start.saturating_add(size).min(len);
        let mut at = start;
        while at < end {
            let want = (end - at).min(buf.len() as u64) as usize;
            let n = file.read_at(&mut buf[..want], at).ok()?;
            if n == 0 {
                break; // truncated meanwhile: the copy is what was there
            }
            copy.write_all_at(&buf[..n], at).ok()?;
            at += n as u64;
        }
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own.
    (unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } == 0).then_some(copy)
}

/// The GNU build id of an opened ELF file, if it has one.
pub fn read_build_id(file: &File) -> Option<Box<[u8]>> {
    let cache = ReadCache::new(file);
    elf_build_id(&cache)
}

/// The GNU build id from the ELF's PT_NOTE segments (present in both files and images
/// loaded in memory, unlike section headers).
pub fn elf_build_id<'a, R: ReadRef<'a>>(data: R) -> Option<Box<[u8]>> {
    let header = FileHeader64::<Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    if header.phnum(endian, data).ok()? > MAX_HEADER_ENTRIES {
        return None;
    }
    for phdr in header.program_headers(endian, data).ok()? {
        if phdr.p_type(endian) != elf::PT_NOTE || phdr.p_filesz(endian) > MAX_NOTE_BYTES {
            continue;
        }
        let Ok(Some(mut notes)) = phdr.notes(endian, data) else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                let id = note.desc();
                if !id.is_empty() && id.len() <= 64 {
                    return Some(id.into());
                }
            }
        }
    }
    None
}

/// One PT_LOAD segment: how file offsets map to the binary's own (stated) addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub executable: bool,
}

/// The load bias of a mapping of a binary with these `PT_LOAD` segments: avma = svma +
/// bias. The mapping starts at the page of the segment that contains its file offset,
/// and a segment's vaddr and offset are congruent modulo the page size, so
/// `bias = start - offset - (p_vaddr - p_offset)` for PIE, non-PIE (bias 0) and shared
/// libraries alike. An executable segment wins where two share the mapping's page.
pub fn load_bias(loads: &[LoadSegment], map: &MemoryMap) -> Option<u64> {
    let contains = |seg: &&LoadSegment| {
        let page_start = seg.offset & !0xfff;
        page_start <= map.offset && map.offset < seg.offset.saturating_add(seg.filesz.max(1))
    };
    let seg = loads
        .iter()
        .filter(contains)
        .find(|s| s.executable)
        .or_else(|| loads.iter().find(contains))?;
    Some(
        map.start
            .wrapping_sub(map.offset)
            .wrapping_sub(seg.vaddr.wrapping_sub(seg.offset)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the bias of PIE, non-PIE and unaligned segments comes out right and a
    /// mapping no segment covers has none.
    #[test]
    fn load_bias_for_pie_and_non_pie() {
        let map = |start, offset| MemoryMap {
            start,
            end: start + 0x10000,
            perms: "r-xp".into(),
            offset,
            dev: (0, 0),
            inode: 1,
            path: Some("/x".into()),
        };
        let non_pie = [
            LoadSegment {
                offset: 0,
                vaddr: 0x400000,
                filesz: 0x1000,
                executable: false,
            },
            LoadSegment {
                offset: 0x1000,
                vaddr: 0x401000,
                filesz: 0x5000,
                executable: true,
            },
        ];
        assert_eq!(load_bias(&non_pie, &map(0x401000, 0x1000)), Some(0));
        let pie = [
            LoadSegment {
                offset: 0,
                vaddr: 0,
                filesz: 0x28000,
                executable: false,
            },
            // A segment whose offset is not page aligned (lld/gold layouts).
            LoadSegment {
                offset: 0x28040,
                vaddr: 0x29040,
                filesz: 0x5000,
                executable: true,
            },
        ];
        assert_eq!(
            load_bias(&pie, &map(0x7f00_0002_9000, 0x28000)),
            Some(0x7f00_0000_0000)
        );
        assert_eq!(load_bias(&pie, &map(0x7f00_0002_9000, 0x90000)), None);
    }

    /// Check that a binary an unprivileged user owns is held as a sealed in-memory copy
    /// of only the parts a symbolizer reads (its headers and symbol tables, not its
    /// code: truncating the file afterwards changes nothing a mapping of the copy could
    /// see, no SIGBUS), that a copy over its bound is refused, and that a root-only file
    /// is held itself; both through /proc/self/fd.
    #[test]
    fn user_writable_binaries_are_held_as_sealed_copies() {
        let dir = std::env::temp_dir().join(format!("leakscope-held-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("user-lib.so");
        let original = std::fs::read("/usr/bin/true").unwrap();
        std::fs::write(&path, &original).unwrap();
        let open = |path: &std::path::Path| {
            let file = File::open(path).unwrap();
            let ident = FileIdent::of(&file.metadata().unwrap());
            MappedBinary {
                file,
                ident,
                opened: path.to_path_buf(),
            }
        };
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let plan = SymbolSections::of(&File::open(&path).unwrap()).expect("an ELF");
        assert!(plan.symbol_bytes() > 0 && plan.symbol_bytes() < original.len() as u64 / 2);
        let refused = HeldBinary::hold(open(&path), &plan, false, 100).err();
        assert_eq!(
            refused,
            Some(HoldRefused::TooLarge {
                needed: plan.symbol_bytes()
            })
        );
        let held = HeldBinary::hold(open(&path), &plan, true, u64::MAX).expect("held");
        assert_eq!(held.copied_bytes, plan.symbol_bytes());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let via_held = held.path();
        assert!(via_held.starts_with("/proc/self/fd"));
        let copy = std::fs::read(&via_held).unwrap();
        assert_eq!(copy.len(), original.len());
        for &(start, len) in &plan.symbols {
            let range = start as usize..(start + len) as usize;
            assert_eq!(copy[range.clone()], original[range]);
        }
        assert_ne!(copy, original, "the code is not copied");
        // SAFETY: F_GET_SEALS on a descriptor the held copy owns.
        let seals = unsafe {
            use std::os::fd::AsRawFd;
            libc::fcntl(held.file.as_raw_fd(), libc::F_GET_SEALS)
        };
        assert_ne!(seals & libc::F_SEAL_SHRINK, 0);

        std::fs::write(&path, &original).unwrap();
        std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let held = HeldBinary::hold(open(&path), &plan, true, 0).expect("held");
        assert_eq!(held.copied_bytes, 0, "a root-only file is held itself");
        assert!(held.debug_info);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
