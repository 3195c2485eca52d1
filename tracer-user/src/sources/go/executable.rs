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

use std::{
    fs::File,
    io::Read,
    os::unix::fs::{FileExt, OpenOptionsExt},
};

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
    layout::{GoRuntimeLayout, LayoutError},
};
use crate::{
    host::binary::{FileIdent, MAX_HEADER_ENTRIES},
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

/// Analyses an opened executable: `Ok(None)` when it is not Go.
pub fn analyse_executable(exe: &OpenedExecutable) -> Result<Option<GoProgram>, UnreadableGo> {
    if !looks_like_go(&exe.file) {
        return Ok(None);
    }
    let data = read_whole(&exe.file, exe.ident.size).map_err(|kind| UnreadableGo {
        release: GoRelease::Unknown,
        kind,
    })?;
    analyse_go_bytes(&data)
}

/// Reads a file's bytes with pread up to its size at open time (a file that shrinks
/// meanwhile gives a short read, never a signal).
fn read_whole(file: &File, size: u64) -> Result<Vec<u8>, UnreadableGoKind> {
    if size > MAX_EXECUTABLE_BYTES {
        return Err(UnreadableGoKind::TooLarge(size));
    }
    let mut data = Vec::with_capacity(size as usize);
    let mut reader = ReadAt { file, at: 0 };
    reader
        .by_ref()
        .take(size)
        .read_to_end(&mut data)
        .map_err(|e| UnreadableGoKind::Read(e.to_string()))?;
    Ok(data)
}

/// A reader that does not share the file's offset.
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Analyses a Go executable's bytes: `Ok(None)` when it carries no Go build info.
pub fn analyse_go_bytes(data: &[u8]) -> Result<Option<GoProgram>, UnreadableGo> {
    let unreadable = |release: GoRelease, kind: UnreadableGoKind| UnreadableGo { release, kind };
    // Section headers that do not parse (scrambled on purpose, or damaged): the program
    // headers are what the loader used; read through them alone.
    let stripped;
    let data = if object::File::parse(data).is_err() && has_buildinfo_in_segments(data) {
        stripped = without_section_headers(data);
        &stripped[..]
    } else {
        data
    };
    let binary = match GoBinary::parse(data) {
        Ok(binary) => binary,
        Err(e) if has_buildinfo_in_segments(data) => {
            return Err(unreadable(GoRelease::Unknown, e.into()));
        }
        Err(_) => return Ok(None),
    };
    let version = binary.version().clone();
    let release = GoRelease::Known {
        major: version.major,
        minor: version.minor,
    };
    let layout = match GoRuntimeLayout::for_binary(data, &version) {
        Ok(Some((layout, _))) => layout,
        Ok(None) => {
            let kind = UnreadableGoKind::UnsupportedVersion(version.raw.clone());
            return Err(unreadable(release, kind));
        }
        Err(e) => return Err(unreadable(release, e.into())),
    };
    let addrs = locate_allgs(&binary, data).map_err(|e| unreadable(release, e.into()))?;
    Ok(Some(GoProgram {
        binary,
        layout,
        addrs,
        release,
    }))
}

/// A copy of an ELF file whose section-header fields (e_shoff, e_shnum, e_shstrndx) are
/// zeroed: only its program headers remain.
fn without_section_headers(data: &[u8]) -> Vec<u8> {
    let mut copy = data.to_vec();
    if copy.len() >= 64 {
        copy[0x28..0x30].fill(0);
        copy[0x3c..0x40].fill(0);
    }
    copy
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
