//! One process's executable, opened once and analysed through that open file.
//!
//! The executable belongs to whoever started the process: it may be replaced between two
//! looks (an exec, a rename), be a FIFO or a device behind a symlink, shrink while read,
//! or have scrambled section headers (the loader and the Go runtime use only program
//! headers, so such a program still runs). So: `/proc/PID/exe` is opened once without
//! blocking and only a regular file is read, its identity comes from that same open file,
//! its bytes are read (never mapped: a file truncated under a mapping raises SIGBUS), and
//! whether it is Go is decided by the build-info blob in its loadable segments, not by
//! section names. A file that carries Go's build info but cannot be read is an
//! unreadable Go program with the reason, never a healthy native one.
//!
//! "Not Go" is only ever said of what was seen: an executable read whole enough to tell
//! (not an ELF, no build info), or a process that has none (a kernel thread, a zombie,
//! one that exited: `/proc/PID/exe` is then ENOENT or ESRCH). An executable that could
//! not be opened or read (EACCES without `CAP_DAC_READ_SEARCH`, EIO, a file that is not
//! a regular one...) is [`ExecutableUnreadable`]: leakscope could not tell, and says so.
//!
//! What the analysis holds counts against the memory budget's `binaries` share, and
//! its CPU against [`GO_ANALYSIS_CPU`]: a file only root can write is mapped (its tables
//! stay slices of the mapping: page cache, not heap), another's is read whole into
//! memory only if it fits the per-binary quota (its tables then copied out, and
//! charged while the program is analysed and kept). A file over either budget is an
//! unreadable Go program saying which budget.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
};

use object::{
    Endianness, Object, ReadCache, ReadCacheOps,
    elf::{self, FileHeader64},
    read::elf::{FileHeader, ProgramHeader},
};
use thiserror::Error;

use super::{
    GoBinary, GoBinaryError,
    allgs::{AllgsError, GoRuntimeAddrs, locate_allgs},
    buildinfo,
    elf::Retain,
    layout::{GoRuntimeLayout, LayoutError},
};
use crate::{
    budget::{
        self, Charge, MemoryKind, OverBudget,
        cpu::{self, GO_ANALYSIS_CPU, Spent},
    },
    host::{
        binary::{FileIdent, MAX_HEADER_ENTRIES},
        mapped::{MappedFile, SparseBuffer, may_map},
    },
    model::GoRelease,
};

/// Largest executable read for analysis (the largest real Go binaries are a few hundred
/// MB); a larger one is reported unreadable rather than read.
pub const MAX_EXECUTABLE_BYTES: u64 = 1 << 30;
/// Bytes of each writable segment searched for the build-info blob: the Go linker puts
/// it first in its data segment.
const BUILDINFO_SEARCH_BYTES: u64 = 1 << 20;

/// Everything leakscope needs to read one Go executable's goroutines.
pub struct GoProgram {
    pub binary: GoBinary,
    pub layout: GoRuntimeLayout,
    pub addrs: GoRuntimeAddrs,
    /// The Go release that built it.
    pub release: GoRelease,
    /// What it holds of the `binaries` share, given back when it is dropped (`None`:
    /// not charged, as in tests and fuzzing).
    pub charge: Option<Charge>,
}

/// Why a Go executable cannot be read.
#[derive(Debug, Error)]
pub enum UnreadableGoKind {
    #[error("executable of {0} bytes is larger than leakscope reads")]
    TooLarge(u64),
    #[error("cannot read the executable: {}", errno_text(*.0))]
    Read(i32),
    #[error("no memory for the executable's image")]
    NoImageMemory,
    #[error("carries Go build info but does not analyse: {0}")]
    Binary(#[from] GoBinaryError),
    #[error("unsupported Go version {0}")]
    UnsupportedVersion(String),
    #[error("Go runtime layout: {0}")]
    Layout(#[from] LayoutError),
    #[error("goroutine table: {0}")]
    GoroutineTable(#[from] AllgsError),
    #[error("analysing the executable {0}")]
    OverMemoryBudget(OverBudget),
    #[error(
        "analysing the executable took {:.1} s of CPU, over its {:.1} s budget",
        .0.cpu.as_secs_f64(),
        .0.budget.as_secs_f64()
    )]
    OverCpuBudget(Spent),
}

/// A Go executable leakscope cannot read: its release (unknown when even the version
/// is) and why.
#[derive(Debug, Error)]
#[error("{kind}")]
pub struct UnreadableGo {
    pub release: GoRelease,
    pub kind: UnreadableGoKind,
}

/// Why leakscope could not tell whether a process runs Go: its executable could not be
/// opened or read far enough. Never taken for "not Go" (a Go program read as threads
/// only, its goroutines never read, would look healthy): the process is reported
/// unreadable with this reason. Errors are raw errnos, rendered by the sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ExecutableUnreadable {
    /// Opening `/proc/PID/exe` failed (EACCES: a binary root may not read by its mode
    /// without `CAP_DAC_READ_SEARCH`, or no ptrace access without `CAP_SYS_PTRACE`;
    /// EIO, ELOOP, EMFILE...).
    #[error("cannot open its executable: {}", errno_text(*.0))]
    Open(i32),
    /// `fstat` of the opened executable failed.
    #[error("cannot stat its executable: {}", errno_text(*.0))]
    Stat(i32),
    /// The executable is not a regular file (a FIFO or a device: reading it could block
    /// or have effects), so it is not read.
    #[error("its executable is not a regular file but a {0}")]
    NotRegular(FileKind),
    /// Reading its headers failed.
    #[error("cannot read its executable: {}", errno_text(*.0))]
    Read(i32),
}

/// What a file that is not a regular one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    Symlink,
    Other,
}

impl FileKind {
    fn of(file_type: std::fs::FileType) -> Self {
        if file_type.is_dir() {
            Self::Directory
        } else if file_type.is_fifo() {
            Self::Fifo
        } else if file_type.is_char_device() {
            Self::CharDevice
        } else if file_type.is_block_device() {
            Self::BlockDevice
        } else if file_type.is_socket() {
            Self::Socket
        } else if file_type.is_symlink() {
            Self::Symlink
        } else {
            Self::Other
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Directory => "directory",
            Self::Fifo => "FIFO",
            Self::CharDevice => "character device",
            Self::BlockDevice => "block device",
            Self::Socket => "socket",
            Self::Symlink => "symbolic link",
            Self::Other => "file of an unknown type",
        })
    }
}

/// An errno as the kernel names it, with its number (`Permission denied (os error 13)`).
fn errno_text(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// The errno of an I/O error (EIO when it carries none: it is a failure all the same).
fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Why an executable's analysis stopped short of a result.
#[derive(Debug, Error)]
pub enum ExecutableError {
    /// Not known whether it is Go: it could not be read far enough to tell.
    #[error(transparent)]
    Unclassified(#[from] ExecutableUnreadable),
    /// A Go executable leakscope cannot read.
    #[error(transparent)]
    Go(#[from] UnreadableGo),
}

/// An executable opened for analysis.
pub struct OpenedExecutable {
    pub file: File,
    pub ident: FileIdent,
}

/// Opens `/proc/PID/exe` once, without blocking, and only if it is a regular file: its
/// identity and its bytes then come from this one open file. `Ok(None)`: the process
/// runs no executable (it is certainly not Go); `Err`: leakscope could not tell.
pub fn open_executable(pid: u32) -> Result<Option<OpenedExecutable>, ExecutableUnreadable> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/{pid}/exe"));
    let file = match opened {
        Ok(file) => file,
        Err(e) => return open_failure(errno_of(&e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| ExecutableUnreadable::Stat(errno_of(&e)))?;
    check_regular(&meta)?;
    Ok(Some(OpenedExecutable {
        ident: FileIdent::of(&meta),
        file,
    }))
}

/// Only a regular file is read: `/proc/PID/exe` cannot be anything else for a process
/// the kernel started, so another kind is a file leakscope cannot tell anything of.
fn check_regular(meta: &std::fs::Metadata) -> Result<(), ExecutableUnreadable> {
    match meta.is_file() {
        true => Ok(()),
        false => Err(ExecutableUnreadable::NotRegular(FileKind::of(
            meta.file_type(),
        ))),
    }
}

/// What failing to open `/proc/PID/exe` with `errno` says. ENOENT: the process has no
/// executable (a kernel thread; a zombie; a thread group whose leader exited, which a
/// Go program never does: its runtime wedges the main thread rather than ending it) or
/// `/proc/PID` is gone; ESRCH: it exited. Either way it is certainly not a Go program
/// to read. Anything else (EACCES, EPERM, EIO, ELOOP, ENXIO, EMFILE, ENOMEM, an O_NONBLOCK
/// open refused by a lease...) says only that leakscope could not look.
fn open_failure(errno: i32) -> Result<Option<OpenedExecutable>, ExecutableUnreadable> {
    match errno {
        libc::ENOENT | libc::ESRCH => Ok(None),
        _ => Err(ExecutableUnreadable::Open(errno)),
    }
}

/// Analyses an opened executable: `Ok(None)` when it is not Go. Its CPU time and what
/// it holds are bounded by the budgets.
pub fn analyse_executable(exe: &OpenedExecutable) -> Result<Option<GoProgram>, ExecutableError> {
    if !looks_like_go(&exe.file)? {
        return Ok(None);
    }
    Ok(analyse_go_executable(exe)?)
}

/// Analyses an executable that looks Go, within its budgets.
fn analyse_go_executable(exe: &OpenedExecutable) -> Result<Option<GoProgram>, UnreadableGo> {
    let (analysed, spent) = cpu::with_budget(GO_ANALYSIS_CPU, || analyse_opened(exe));
    if spent.over() {
        let release = match &analysed {
            Ok(Some(program)) => program.release,
            Err(e) => e.release,
            Ok(None) => GoRelease::Unknown,
        };
        return Err(UnreadableGo {
            release,
            kind: UnreadableGoKind::OverCpuBudget(spent),
        });
    }
    let mut program = analysed?;
    if let Some(program) = &mut program {
        let bytes = program.binary.heap_bytes();
        let charge = Charge::try_new(budget::global(), MemoryKind::Programs, bytes);
        program.charge = Some(charge.map_err(|over| UnreadableGo {
            release: program.release,
            kind: UnreadableGoKind::OverMemoryBudget(over),
        })?);
    }
    Ok(program)
}

/// Maps (root's files) or reads (others', within the quota) an executable, and
/// analyses it.
fn analyse_opened(exe: &OpenedExecutable) -> Result<Option<GoProgram>, UnreadableGo> {
    let unreadable = |kind| UnreadableGo {
        release: GoRelease::Unknown,
        kind,
    };
    if exe.ident.size > MAX_EXECUTABLE_BYTES {
        return Err(unreadable(UnreadableGoKind::TooLarge(exe.ident.size)));
    }
    if may_map(&exe.file)
        && let Some(mut mapped) = MappedFile::map(&exe.file, exe.ident.size)
    {
        if needs_stripping(mapped.as_ref()) {
            mapped.patch_first_page(0x28, &[0; 8]);
            mapped.patch_first_page(0x3c, &[0; 4]);
        }
        let whole = mapped.into_bytes();
        return analyse_image(&whole, Retain::Share(&whole));
    }
    analyse_read(exe)
}

/// Analyses another user's executable from the parts it needs, read into memory that
/// costs nothing where nothing was read (a sparse gigabyte file costs what its headers,
/// data segments and tables take), charged while it is analysed.
fn analyse_read(exe: &OpenedExecutable) -> Result<Option<GoProgram>, UnreadableGo> {
    let unreadable = |kind| UnreadableGo {
        release: GoRelease::Unknown,
        kind,
    };
    // A part that fails to read would read as zeros, and a Go program whose build info
    // read so would pass for native: the failure is the outcome.
    let read_failed = |errno: i32| unreadable(UnreadableGoKind::Read(errno));
    let budget = budget::global();
    let quota = budget.quota(MemoryKind::Programs);
    let with_dwarf = analysis_ranges(&exe.file, true).map_err(read_failed)?;
    let ranges = match with_dwarf {
        Some(ranges) if span(&ranges) <= quota => ranges,
        // The runtime layout then comes from the table of its version.
        _ => analysis_ranges(&exe.file, false)
            .map_err(read_failed)?
            .unwrap_or_else(|| vec![(0, exe.ident.size)]),
    };
    let needed = span(&ranges).saturating_add(ALLGADD_READ);
    let _reading = Charge::try_new(budget, MemoryKind::Programs, needed).map_err(|over| {
        budget.refused(MemoryKind::Programs);
        unreadable(UnreadableGoKind::OverMemoryBudget(over))
    })?;
    let mut image = SparseBuffer::zeroed(exe.ident.size)
        .ok_or_else(|| unreadable(UnreadableGoKind::NoImageMemory))?;
    let fill_failed = |e: io::Error| read_failed(errno_of(&e));
    for &(offset, len) in &ranges {
        image
            .fill_from(&exe.file, offset, len)
            .map_err(fill_failed)?;
    }
    if needs_stripping(image.as_ref()) {
        strip_section_headers(image.as_mut());
    }
    let Some((binary, release)) = binary_of(image.as_ref(), Retain::Copy)? else {
        return Ok(None);
    };
    // The one function whose code the analysis decodes.
    if let Some((offset, len)) = allgadd_file_range(&binary) {
        image
            .fill_from(&exe.file, offset, len.min(ALLGADD_READ))
            .map_err(fill_failed)?;
    }
    program_of(binary, release, image.as_ref()).map(Some)
}

/// The most of `runtime.allgadd`'s code read (its decoder reads no more).
const ALLGADD_READ: u64 = 64 * 1024;

/// Bytes the ranges span.
fn span(ranges: &[(u64, u64)]) -> u64 {
    ranges
        .iter()
        .fold(0u64, |n, &(_, len)| n.saturating_add(len))
}

/// Where `runtime.allgadd`'s code is in the file.
fn allgadd_file_range(binary: &GoBinary) -> Option<(u64, u64)> {
    let pclntab = binary.pclntab();
    let entry = pclntab.find_func_by_name("runtime.allgadd")?;
    let func = pclntab.find_func(entry)?;
    let len = func.end.saturating_sub(entry);
    let segment = binary
        .segments()
        .iter()
        .find(|s| entry >= s.addr && entry - s.addr < s.file_size)?;
    Some((segment.file_off.checked_add(entry - segment.addr)?, len))
}

/// The byte ranges of an executable its analysis reads, from its headers: the ELF,
/// program and section headers, the loadable segments that are not code (build info,
/// pclntab, moduledata), the section names and symbol tables, and (`with_dwarf`) the
/// DWARF the runtime layout is read from. `Ok(None)` without program headers that
/// parse; `Err(errno)` when a read failed (the headers then say nothing for sure).
fn analysis_ranges(file: &File, with_dwarf: bool) -> Result<Option<Vec<(u64, u64)>>, i32> {
    let cache = ReadCache::new(FailureRecorder::new(file));
    let ranges = ranges_in(&cache, with_dwarf);
    match cache.into_inner().failure {
        Some(errno) => Err(errno),
        None => Ok(ranges),
    }
}

/// [`analysis_ranges`] of what `data` reads.
fn ranges_in<R: ReadCacheOps>(data: &ReadCache<R>, with_dwarf: bool) -> Option<Vec<(u64, u64)>> {
    use object::read::elf::SectionHeader;
    let header = FileHeader64::<Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    if header.phnum(endian, data).ok()? > MAX_HEADER_ENTRIES {
        return None;
    }
    let phnum = header.phnum(endian, data).ok()? as u64;
    let mut ranges = vec![
        (0, 64),
        (
            header.e_phoff(endian),
            phnum * u64::from(header.e_phentsize(endian)),
        ),
    ];
    for ph in header.program_headers(endian, data).ok()? {
        if ph.p_type(endian) == elf::PT_LOAD && ph.p_flags(endian) & elf::PF_X == 0 {
            ranges.push((ph.p_offset(endian), ph.p_filesz(endian)));
        }
    }
    let Some(sections) = header
        .shnum(endian, data)
        .ok()
        .filter(|&n| n <= MAX_HEADER_ENTRIES)
        .and_then(|_| header.sections(endian, data).ok())
    else {
        return Some(ranges);
    };
    let shnum = header.shnum(endian, data).ok()? as u64;
    ranges.push((
        header.e_shoff(endian),
        shnum * u64::from(header.e_shentsize(endian)),
    ));
    let names = header.section_strings_index(endian, data).ok();
    for (index, section) in sections.enumerate() {
        let name = sections.section_name(endian, section).unwrap_or_default();
        let wanted = Some(index) == names
            || matches!(
                name,
                b".go.buildinfo"
                    | b".gopclntab"
                    | b".data.rel.ro.gopclntab"
                    | b".symtab"
                    | b".strtab"
            )
            || (with_dwarf && (name.starts_with(b".debug_") || name.starts_with(b".zdebug_")));
        if wanted && let Some(range) = section.file_range(endian) {
            ranges.push(range);
        }
    }
    Some(ranges)
}

/// Analyses a Go executable's bytes: `Ok(None)` when it carries no Go build info.
pub fn analyse_go_bytes(data: &[u8]) -> Result<Option<GoProgram>, UnreadableGo> {
    // Section headers that do not parse (scrambled on purpose, or damaged): the program
    // headers are what the loader used; read through them alone.
    if needs_stripping(data) {
        let mut stripped = data.to_vec();
        strip_section_headers(&mut stripped);
        return analyse_image(&stripped, Retain::Copy);
    }
    analyse_image(data, Retain::Copy)
}

/// Whether an executable's section headers do not parse while its segments carry Go's
/// build info: it is then read through its program headers alone.
fn needs_stripping(data: &[u8]) -> bool {
    object::File::parse(data).is_err() && has_buildinfo_in_segments(data)
}

/// Analyses a Go executable's bytes (section headers that parse), keeping its tables as
/// `retain` says.
fn analyse_image(data: &[u8], retain: Retain<'_>) -> Result<Option<GoProgram>, UnreadableGo> {
    match binary_of(data, retain)? {
        Some((binary, release)) => program_of(binary, release, data).map(Some),
        None => Ok(None),
    }
}

/// The Go binary in `data` and its release; `Ok(None)` when it carries no Go build
/// info.
fn binary_of(
    data: &[u8],
    retain: Retain<'_>,
) -> Result<Option<(GoBinary, GoRelease)>, UnreadableGo> {
    let binary = match GoBinary::parse_retained(data, retain) {
        Ok(binary) => binary,
        Err(e) if has_buildinfo_in_segments(data) => {
            return Err(UnreadableGo {
                release: GoRelease::Unknown,
                kind: e.into(),
            });
        }
        Err(_) => return Ok(None),
    };
    let version = binary.version();
    let release = GoRelease::Known {
        major: version.major,
        minor: version.minor,
    };
    Ok(Some((binary, release)))
}

/// What reading `binary`'s goroutines needs: its runtime layout and goroutine table,
/// from `data`.
fn program_of(
    binary: GoBinary,
    release: GoRelease,
    data: &[u8],
) -> Result<GoProgram, UnreadableGo> {
    let unreadable = |release: GoRelease, kind: UnreadableGoKind| UnreadableGo { release, kind };
    let version = binary.version().clone();
    let layout = match GoRuntimeLayout::for_binary(data, &version) {
        Ok(Some((layout, _))) => layout,
        Ok(None) => {
            let kind = UnreadableGoKind::UnsupportedVersion(version.raw.clone());
            return Err(unreadable(release, kind));
        }
        Err(e) => return Err(unreadable(release, e.into())),
    };
    let addrs = locate_allgs(&binary, data).map_err(|e| unreadable(release, e.into()))?;
    Ok(GoProgram {
        binary,
        layout,
        addrs,
        release,
        charge: None,
    })
}

/// Zeroes an ELF file's section-header fields (e_shoff, e_shnum, e_shstrndx): only its
/// program headers remain.
fn strip_section_headers(data: &mut [u8]) {
    if data.len() >= 64 {
        data[0x28..0x30].fill(0);
        data[0x3c..0x40].fill(0);
    }
}

/// Whether the file is a Go executable, cheaply and without trusting section headers:
/// a `.go.buildinfo` or `.gopclntab` section name, else the build-info magic at the
/// start of a writable loadable segment (read on demand, bounded). A read that fails
/// makes the answer unknown, never "no": the parsers see a failed read as a file that
/// does not parse.
fn looks_like_go(file: &File) -> Result<bool, ExecutableUnreadable> {
    looks_like_go_in(file)
}

/// [`looks_like_go`] of what `source` reads.
fn looks_like_go_in(source: impl Read + Seek) -> Result<bool, ExecutableUnreadable> {
    let cache = ReadCache::new(FailureRecorder::new(source));
    let named = object::File::parse(&cache).is_ok_and(|obj| {
        obj.section_by_name(".go.buildinfo").is_some()
            || obj.section_by_name(".gopclntab").is_some()
    });
    let go = named || has_buildinfo_in_segments(&cache);
    match cache.into_inner().failure {
        // Go's marks found are enough, whatever failed after.
        Some(errno) if !go => Err(ExecutableUnreadable::Read(errno)),
        _ => Ok(go),
    }
}

/// A reader that remembers its first failure (the end of the file is none: a file
/// says what it holds).
struct FailureRecorder<R> {
    inner: R,
    failure: Option<i32>,
}

impl<R> FailureRecorder<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            failure: None,
        }
    }

    fn record<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result
            && e.kind() != io::ErrorKind::UnexpectedEof
        {
            self.failure.get_or_insert(errno_of(e));
        }
        result
    }
}

impl<R: Read> Read for FailureRecorder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Retried here: the cache fails a read interrupted at its first attempt.
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return self.record(result),
            }
        }
    }
}

impl<R: Seek> Seek for FailureRecorder<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let result = self.inner.seek(pos);
        self.record(result)
    }
}

/// Whether a writable `PT_LOAD` segment starts (within its first MiB) with Go's
/// build-info blob, read through the program headers only.
fn has_buildinfo_in_segments<'a, R: object::ReadRef<'a>>(data: R) -> bool {
    let Ok(header) = FileHeader64::<Endianness>::parse(data) else {
        return false;
    };
    let Ok(endian) = header.endian() else {
        return false;
    };
    if header
        .phnum(endian, data)
        .is_ok_and(|n| n > MAX_HEADER_ENTRIES)
    {
        return false;
    }
    let Ok(phdrs) = header.program_headers(endian, data) else {
        return false;
    };
    phdrs.iter().any(|ph| {
        let flags = ph.p_flags(endian);
        if ph.p_type(endian) != elf::PT_LOAD || flags & elf::PF_W == 0 || flags & elf::PF_X != 0 {
            return false;
        }
        let len = ph.p_filesz(endian).min(BUILDINFO_SEARCH_BYTES);
        data.read_bytes_at(ph.p_offset(endian), len)
            .is_ok_and(|bytes| buildinfo::find_magic(bytes, ph.p_vaddr(endian)).is_some())
    })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::sources::error::ReadError;
    use crate::sources::go::{
        elf::PF_W,
        error::GoReadError,
        tests::{craft_buildinfo, craft_elf},
    };

    /// Check that failing to open `/proc/PID/exe` says "not Go" only for a process that
    /// has no executable (ENOENT, ESRCH), and "could not tell" for every other errno.
    #[test]
    fn open_failures_are_told_apart() {
        for errno in [libc::ENOENT, libc::ESRCH] {
            assert!(matches!(open_failure(errno), Ok(None)), "errno {errno}");
        }
        for errno in [
            libc::EACCES,
            libc::EPERM,
            libc::EIO,
            libc::ELOOP,
            libc::ENXIO,
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
            libc::EWOULDBLOCK,
            libc::EINTR,
            libc::ENOTDIR,
        ] {
            assert!(
                matches!(open_failure(errno), Err(ExecutableUnreadable::Open(e)) if e == errno),
                "errno {errno}"
            );
        }
        let why = GoReadError::Unclassified(ExecutableUnreadable::Open(libc::EACCES));
        assert_eq!(
            why.to_string(),
            "could not tell whether it runs Go (cannot open its executable: Permission \
             denied (os error 13)): goroutines not read"
        );
        assert_eq!(ReadError::Go(why).kind(), "go");
    }

    /// Check that real processes without an executable are not Go, and that a running
    /// one's executable opens as a regular file: a zombie child (its `/proc/PID/exe` is
    /// ENOENT), a pid no process has, and this test itself.
    #[test]
    fn processes_without_an_executable_are_not_go() {
        let own = open_executable(std::process::id()).expect("own executable");
        assert!(own.is_some_and(|exe| exe.ident.size > 0));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // A zombie until waited for: its state turns to Z once it has exited.
        let zombie = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, s)| s.starts_with('Z'))
            })
        });
        assert!(zombie, "child {pid} never became a zombie");
        assert!(matches!(open_executable(pid), Ok(None)));
        child.wait().unwrap();
        assert!(matches!(open_executable(u32::MAX), Ok(None)));
    }

    /// Check that a file that is not a regular one is "could not tell", naming its kind.
    #[test]
    fn only_regular_files_are_read() {
        let (reader, _writer) = std::io::pipe().unwrap();
        let fifo = File::from(std::os::fd::OwnedFd::from(reader));
        let cases = [
            (File::open("/dev/null").unwrap(), FileKind::CharDevice),
            (File::open("/").unwrap(), FileKind::Directory),
            (fifo, FileKind::Fifo),
        ];
        for (file, kind) in cases {
            let meta = file.metadata().unwrap();
            assert_eq!(
                check_regular(&meta),
                Err(ExecutableUnreadable::NotRegular(kind))
            );
        }
        let own = File::open("/proc/self/exe").unwrap();
        assert_eq!(check_regular(&own.metadata().unwrap()), Ok(()));
        assert_eq!(
            ExecutableUnreadable::NotRegular(FileKind::Fifo).to_string(),
            "its executable is not a regular file but a FIFO"
        );
    }

    /// A file's bytes whose reads fail with `errno` from offset `fail_at` on
    /// (interrupted once first, as a signal may).
    struct FailingFile {
        bytes: Cursor<Vec<u8>>,
        fail_at: u64,
        errno: i32,
        interrupted: bool,
    }

    impl FailingFile {
        fn new(bytes: Vec<u8>, fail_at: u64, errno: i32) -> Self {
            Self {
                bytes: Cursor::new(bytes),
                fail_at,
                errno,
                interrupted: false,
            }
        }
    }

    impl Read for FailingFile {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            let at = self.bytes.position();
            let len = buf.len() as u64;
            if at + len > self.fail_at && at < self.bytes.get_ref().len() as u64 {
                return Err(io::Error::from_raw_os_error(self.errno));
            }
            Read::read(&mut self.bytes, buf)
        }
    }

    impl Seek for FailingFile {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            Seek::seek(&mut self.bytes, pos)
        }
    }

    /// Check that whether a file is Go is answered only from what was read: an ELF
    /// file whose headers or data segments fail to read is "could not tell", never "not
    /// Go"; one read whole says what it is; a failure after Go's marks were found does
    /// not matter; an interrupted read is retried; the end of a short file is no failure.
    #[test]
    fn read_failures_are_not_go() {
        let native = craft_elf(&[(PF_W | 4, vec![0x55; 4096]), (5, vec![0xc3; 64])]);
        let go = craft_elf(&[
            (PF_W | 4, craft_buildinfo("go1.26.6")),
            (PF_W | 4, vec![0; 4096]),
        ]);
        let never = u64::MAX;
        let looks = |bytes: &Vec<u8>, fail_at, errno| {
            looks_like_go_in(FailingFile::new(bytes.clone(), fail_at, errno))
        };
        assert_eq!(looks(&native, never, libc::EIO), Ok(false));
        assert_eq!(looks(&go, never, libc::EIO), Ok(true));
        assert_eq!(looks(&b"#!/bin/sh\n".to_vec(), never, libc::EIO), Ok(false));
        assert_eq!(looks(&b"\x7fEL".to_vec(), never, libc::EIO), Ok(false));
        for errno in [libc::EIO, libc::EACCES, libc::ENOMEM] {
            assert_eq!(
                looks(&native, 0, errno),
                Err(ExecutableUnreadable::Read(errno)),
                "the ELF header"
            );
        }
        // The program headers, then the first data segment (where build info would be).
        for fail_at in [64, 0x1000] {
            assert_eq!(
                looks(&native, fail_at, libc::EIO),
                Err(ExecutableUnreadable::Read(libc::EIO)),
                "failing at {fail_at:#x}"
            );
            assert_eq!(
                looks(&go, fail_at, libc::EIO),
                Err(ExecutableUnreadable::Read(libc::EIO)),
                "failing at {fail_at:#x}"
            );
        }
        // Past the build info, in the second segment.
        assert_eq!(looks(&go, 0x2000, libc::EIO), Ok(true));
    }

    /// Check that an opened executable that fails to read is "could not tell" through
    /// the whole analysis (a descriptor opened for writing only: every read is EBADF).
    #[test]
    fn an_executable_that_fails_to_read_is_unclassified() {
        let path = std::env::temp_dir().join(format!("leakscope-exe-{}", std::process::id()));
        std::fs::write(&path, craft_elf(&[(PF_W | 4, craft_buildinfo("go1.26.6"))])).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let exe = OpenedExecutable {
            ident: FileIdent::of(&file.metadata().unwrap()),
            file,
        };
        let analysed = analyse_executable(&exe);
        assert!(
            matches!(
                analysed,
                Err(ExecutableError::Unclassified(ExecutableUnreadable::Read(
                    libc::EBADF
                )))
            ),
            "{:?}",
            analysed.as_ref().map(Option::is_some)
        );
    }
}
