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
//! What the analysis holds counts against the memory budget's `binaries` share, and
//! its CPU against [`GO_ANALYSIS_CPU`]: a file only root can write is mapped (its tables
//! stay slices of the mapping: page cache, not heap), another's is read whole into
//! memory only if it fits the per-binary quota (its tables then copied out, and
//! charged while the program is analysed and kept). A file over either budget is an
//! unreadable Go program saying which budget.

use std::{fs::File, os::unix::fs::OpenOptionsExt};

use object::{
    Endianness, Object, ReadCache,
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
    #[error("cannot read the executable: {0}")]
    Read(String),
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

/// An executable opened for analysis.
pub struct OpenedExecutable {
    pub file: File,
    pub ident: FileIdent,
}

/// Opens `/proc/PID/exe` once, without blocking, and only if it is a regular file: its
/// identity and its bytes then come from this one open file.
pub fn open_executable(pid: u32) -> Option<OpenedExecutable> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/{pid}/exe"))
        .ok()?;
    let meta = file.metadata().ok()?;
    meta.is_file().then(|| OpenedExecutable {
        ident: FileIdent::of(&meta),
        file,
    })
}

/// Analyses an opened executable: `Ok(None)` when it is not Go. Its CPU time and what
/// it holds are bounded by the budgets.
pub fn analyse_executable(exe: &OpenedExecutable) -> Result<Option<GoProgram>, UnreadableGo> {
    if !looks_like_go(&exe.file) {
        return Ok(None);
    }
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
    let budget = budget::global();
    let quota = budget.quota(MemoryKind::Programs);
    let with_dwarf = analysis_ranges(&exe.file, true);
    let ranges = match with_dwarf {
        Some(ranges) if span(&ranges) <= quota => ranges,
        // The runtime layout then comes from the table of its version.
        _ => analysis_ranges(&exe.file, false).unwrap_or_else(|| vec![(0, exe.ident.size)]),
    };
    let needed = span(&ranges).saturating_add(ALLGADD_READ);
    let _reading = Charge::try_new(budget, MemoryKind::Programs, needed).map_err(|over| {
        budget.refused(MemoryKind::Programs);
        unreadable(UnreadableGoKind::OverMemoryBudget(over))
    })?;
    let mut image = SparseBuffer::zeroed(exe.ident.size)
        .ok_or_else(|| unreadable(UnreadableGoKind::Read("no memory for its image".into())))?;
    for &(offset, len) in &ranges {
        image.fill_from(&exe.file, offset, len);
    }
    if needs_stripping(image.as_ref()) {
        strip_section_headers(image.as_mut());
    }
    let Some((binary, release)) = binary_of(image.as_ref(), Retain::Copy)? else {
        return Ok(None);
    };
    // The one function whose code the analysis decodes.
    if let Some((offset, len)) = allgadd_file_range(&binary) {
        image.fill_from(&exe.file, offset, len.min(ALLGADD_READ));
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
/// DWARF the runtime layout is read from. `None` without program headers that parse.
fn analysis_ranges(file: &File, with_dwarf: bool) -> Option<Vec<(u64, u64)>> {
    use object::read::elf::SectionHeader;
    let data = ReadCache::new(file);
    let data = &data;
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
/// start of a writable loadable segment (read on demand, bounded).
fn looks_like_go(file: &File) -> bool {
    let cache = ReadCache::new(file);
    if let Ok(obj) = object::File::parse(&cache)
        && (obj.section_by_name(".go.buildinfo").is_some()
            || obj.section_by_name(".gopclntab").is_some())
    {
        return true;
    }
    has_buildinfo_in_segments(&cache)
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
