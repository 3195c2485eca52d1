//! Go programs: what their binaries say, and their goroutine tables read from memory.
//! The modules, each using only those listed before it:
//!
//! - binary analysis: `elf`, `buildinfo`, `pclntab`, `layout` (where `runtime.g` keeps
//!   what leakscope reads), `allgs` (where the goroutine table is), this file
//!   ([`GoBinary`]), `executable` (one process's executable, opened once);
//! - the goroutine table in memory: `chunked` (per-`g` arrays that grow without
//!   copying), `g` (the `allgs` array and each `g`'s fields), `readplan` (few large
//!   reads), `stackwalk` (frame-pointer walks of parked stacks),
//!   `symbolize` (frames named from the pclntab), `labels` (pprof label sets, bounded);
//! - `error`: why a process cannot be read, typed; `programs`: which processes are Go
//!   programs to read;
//! - `parked`: one process's table, read incrementally (an unmoved park costs one
//!   comparison);
//! - `reader`: the goroutine source, every Go process of the host, paced by cost.
//!
//! Static analysis of Go binaries (this file): version, functions, lines and inlining.
//!
//! [`GoBinary::open`] reads an ELF Go executable (normal, PIE, cgo, static,
//! or stripped with `-ldflags="-s -w"`) and gives its toolchain version (from
//! `.go.buildinfo`), its runtime symbol table ([`Pclntab`], from
//! `.gopclntab`), and its ELF symbols when it has any.
//!
//! Stripped binaries have neither `.symtab` nor DWARF; everything then comes
//! from structures the Go runtime itself needs at run time:
//!
//! - the pclntab is found by section name, or (without section headers) by
//!   scanning the read-only segments for its header;
//! - `runtime.firstmoduledata` is found by scanning the data segments for a
//!   pointer to the pclntab followed by the `funcnametab` slice that points
//!   just past the pclntab header; it gives `text` (the base of function
//!   entries, which Go 1.26+ no longer writes into the pclntab header, and
//!   which is not the start of `.text` in cgo binaries) and `gofunc`
//!   (`go:func.*`, the base of the funcdata offsets that locate inline trees);
//! - failing that, `go:func.*` is derived from the pclntab layout (Go 1.26+
//!   places it right after the `_func` records, inside `.gopclntab`), and
//!   checked against the inline trees it implies.
//!
//! All addresses are the binary's own virtual addresses: for a PIE process,
//! subtract the load bias before asking.

pub mod allgs;
pub mod buildinfo;
pub mod chunked;
pub mod elf;
pub mod error;
pub mod executable;
pub mod g;
pub mod labels;
pub mod layout;
pub mod parked;
pub mod pclntab;
pub mod programs;
pub mod reader;
pub mod readplan;
pub mod stackwalk;
pub mod symbolize;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use object::{Object, ObjectSection};
use thiserror::Error;

use crate::budget::cpu::Ticker;

pub use buildinfo::{BuildInfo, BuildInfoError, GoVersion};
use elf::{ElfImage, PF_W, PF_X};
pub use elf::{Retain, Segment};
pub use pclntab::{Frame, FuncInfo, GoFuncCheck, Pclntab, PclntabError};

/// Inline trees sampled to accept a `go:func.*` candidate.
const GOFUNC_SAMPLES: usize = 64;

/// Why a file could not be analysed as a Go binary.
#[derive(Debug, Error)]
pub enum GoBinaryError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not an ELF file: {0}")]
    NotElf(String),
    #[error("not a Go binary: {0}")]
    BuildInfo(#[from] BuildInfoError),
    #[error("Go binary has no pclntab")]
    NoPclntab,
    #[error("Go binary's pclntab: {0}")]
    Pclntab(#[from] PclntabError),
    #[error("cannot find the Go text start (no moduledata, runtime.text or .text)")]
    NoTextStart,
}

/// How a value was found (for diagnostics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// From `runtime.firstmoduledata`.
    Moduledata,
    /// From an ELF symbol (`runtime.text`, `go:func.*`).
    Symbol,
    /// From the pclntab header (text start, before Go 1.26).
    PclntabHeader,
    /// Derived from the pclntab layout (`go:func.*`, Go 1.26+).
    PclntabLayout,
    /// The `.text` section's address (wrong for cgo binaries).
    TextSection,
    /// Go 1.16-1.17: funcdata are absolute addresses; the base is the start of the
    /// segment holding the inline trees.
    AbsoluteFuncdata,
}

/// The parts of `runtime.firstmoduledata` leakscope uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moduledata {
    /// Address of the moduledata itself.
    pub addr: u64,
    pub text: u64,
    pub etext: u64,
    /// `go:func.*`, when a plausible one was found.
    pub gofunc: Option<u64>,
}

/// A Go executable, analysed.
#[derive(Debug)]
pub struct GoBinary {
    build_info: BuildInfo,
    pclntab: Pclntab,
    pclntab_addr: u64,
    moduledata: Option<Moduledata>,
    text_start_from: Provenance,
    gofunc_from: Option<Provenance>,
    symbols: HashMap<String, u64>,
    pie: bool,
    /// The loadable segments, to turn file addresses into a process's addresses.
    segments: Vec<Segment>,
}

impl GoBinary {
    /// Reads and analyses the Go executable at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<GoBinary, GoBinaryError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| GoBinaryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        GoBinary::parse(&data)
    }

    /// Analyses a Go executable's bytes.
    pub fn parse(data: &[u8]) -> Result<GoBinary, GoBinaryError> {
        Self::parse_retained(data, Retain::Copy)
    }

    /// [`Self::parse`], keeping the tables it needs afterwards as `retain` says
    /// (copied, or slices of a mapped file).
    pub fn parse_retained(data: &[u8], retain: Retain<'_>) -> Result<GoBinary, GoBinaryError> {
        let (image, file) = ElfImage::parse(data).map_err(GoBinaryError::NotElf)?;
        let pie = file.kind() == object::ObjectKind::Dynamic;

        let symbols: HashMap<String, u64> = image
            .symbols
            .iter()
            .map(|(name, &(addr, _))| (name.clone(), addr))
            .collect();
        let symbol = |name: &str| symbols.get(name).copied();

        let build_info = read_build_info(&file, &image)?;
        let go_minor = (build_info.version.major == 1).then_some(build_info.version.minor);

        let (pclntab_addr, pclntab_bytes) = locate_pclntab(&file, &image, &symbols)?;
        let text_section = file.section_by_name(".text").map(|s| s.address());
        // A provisional text start; moduledata's, when found, replaces it.
        let (provisional, mut text_start_from) = if let Some(t) = symbol("runtime.text") {
            (Some(t), Provenance::Symbol)
        } else {
            (None, Provenance::PclntabHeader)
        };
        let mut pclntab = match Pclntab::parse_retained(pclntab_bytes, provisional, retain) {
            Err(PclntabError::NoTextStart) => {
                text_start_from = Provenance::TextSection;
                Pclntab::parse_retained(pclntab_bytes, Some(text_section.unwrap_or(0)), retain)?
            }
            other => other?,
        };

        let moduledata = find_moduledata(&image, pclntab_addr, &pclntab, go_minor);
        if let Some(md) = &moduledata {
            pclntab.set_text_start(md.text);
            text_start_from = Provenance::Moduledata;
        } else if text_start_from == Provenance::TextSection && text_section.is_none() {
            return Err(GoBinaryError::NoTextStart);
        }
        if !image.is_executable(pclntab.text_start())
            || !image.is_executable(pclntab.text_end().saturating_sub(1))
        {
            log::warn!(
                "Go text {:#x}..{:#x} (from {:?}) is not in an executable segment",
                pclntab.text_start(),
                pclntab.text_end(),
                text_start_from
            );
        }

        let gofunc = absolute_funcdata_base(&image, &pclntab)
            .map(|g| (g, Provenance::AbsoluteFuncdata))
            .or_else(|| {
                moduledata
                    .and_then(|m| m.gofunc)
                    .map(|g| (g, Provenance::Moduledata))
            })
            .or_else(|| {
                let g = symbol("go:func.*").or_else(|| symbol("go.func.*"))?;
                Some((g, Provenance::Symbol))
            })
            .or_else(|| {
                gofunc_from_layout(&image, pclntab_addr, &pclntab)
                    .map(|g| (g, Provenance::PclntabLayout))
            });
        let gofunc_from = gofunc.map(|(g, from)| {
            let (tail, heap_bytes) = retain.keep(image.tail(g).unwrap_or(&[]));
            pclntab.set_gofunc_retained(g, tail, heap_bytes);
            from
        });
        if gofunc_from.is_none() {
            log::warn!("go:func.* not found: inlined calls will not be expanded");
        }

        Ok(GoBinary {
            build_info,
            pclntab,
            pclntab_addr,
            moduledata,
            text_start_from,
            gofunc_from,
            symbols,
            pie,
            segments: image.segments.clone(),
        })
    }

    /// The toolchain version that built the binary.
    pub fn version(&self) -> &GoVersion {
        &self.build_info.version
    }

    /// The whole build info (version and module info).
    pub fn build_info(&self) -> &BuildInfo {
        &self.build_info
    }

    /// The runtime symbol table.
    pub fn pclntab(&self) -> &Pclntab {
        &self.pclntab
    }

    /// The pclntab's virtual address.
    pub fn pclntab_addr(&self) -> u64 {
        self.pclntab_addr
    }

    /// `runtime.firstmoduledata`, if found.
    pub fn moduledata(&self) -> Option<&Moduledata> {
        self.moduledata.as_ref()
    }

    /// Where the text start came from.
    pub fn text_start_provenance(&self) -> Provenance {
        self.text_start_from
    }

    /// Where `go:func.*` came from; `None` when it was not found (inlined
    /// calls are then not expanded).
    pub fn gofunc_provenance(&self) -> Option<Provenance> {
        self.gofunc_from
    }

    /// The address of an ELF symbol (`.symtab`), when the binary has one.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied().filter(|_| !name.is_empty())
    }

    /// True when the binary has a symbol table (it was not built with `-s`).
    pub fn has_symbols(&self) -> bool {
        !self.symbols.is_empty()
    }

    /// Heap bytes the analysis keeps: the tables copied out of the file (none when
    /// they are slices of a mapped file), the symbols looked up, the segments.
    pub fn heap_bytes(&self) -> u64 {
        let symbols: usize = self.symbols.keys().map(|name| name.capacity() + 48).sum();
        self.pclntab.heap_bytes()
            + symbols as u64
            + (self.segments.capacity() * size_of::<Segment>()) as u64
    }

    /// True for a position-independent executable (`ET_DYN`): its addresses
    /// are offset by a load bias at run time.
    pub fn is_pie(&self) -> bool {
        self.pie
    }

    /// The loadable segments (`PT_LOAD`): where the file's bytes sit in memory.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

fn read_build_info(
    file: &object::File<'_>,
    image: &ElfImage<'_>,
) -> Result<BuildInfo, GoBinaryError> {
    let read = |addr: u64, len: usize| image.read(addr, len).map(<[u8]>::to_vec);
    if let Some(s) = file.section_by_name(".go.buildinfo")
        && let Ok(data) = s.data()
    {
        return Ok(buildinfo::parse(data, s.address(), &read)?);
    }
    // Without section headers: the blob is near the start of the first
    // writable segment (debug/buildinfo looks only there); try the others too.
    let mut first_err = BuildInfoError::NotFound;
    for s in image
        .segments
        .iter()
        .filter(|s| s.flags & (PF_W | PF_X) == PF_W)
    {
        match buildinfo::parse(image.segment_bytes(s), s.addr, &read) {
            Ok(info) => return Ok(info),
            Err(BuildInfoError::NotFound) => {}
            Err(e) => first_err = e,
        }
    }
    Err(first_err.into())
}

fn locate_pclntab<'a>(
    file: &object::File<'a>,
    image: &ElfImage<'a>,
    symbols: &HashMap<String, u64>,
) -> Result<(u64, &'a [u8]), GoBinaryError> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some(s) = file.section_by_name(name)
            && let Ok(data) = s.data()
            && !data.is_empty()
        {
            return Ok((s.address(), data));
        }
    }
    if let (Some(&start), Some(&end)) = (
        symbols.get("runtime.pclntab"),
        symbols.get("runtime.epclntab"),
    ) && let Some(data) = end
        .checked_sub(start)
        .and_then(|n| image.read(start, n as usize))
    {
        return Ok((start, data));
    }
    // No section headers: scan non-executable segments for a header that
    // parses.
    let mut ticker = Ticker::new(1 << 16);
    for s in image.segments.iter().filter(|s| s.flags & PF_X == 0) {
        let bytes = image.segment_bytes(s);
        let mut off = (s.addr.wrapping_neg() % 8) as usize;
        while off + 8 <= bytes.len() && !ticker.exhausted() {
            let magic = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
            if [
                pclntab::MAGIC_GO120,
                pclntab::MAGIC_GO118,
                pclntab::MAGIC_GO116,
            ]
            .contains(&magic)
                && bytes[off + 4] == 0
                && bytes[off + 5] == 0
                // A segment said to end past the address space has no table there
                // (go_binary fuzz target, seed pclntab-past-the-address-space).
                && let Some(addr) = s.addr.checked_add(off as u64)
                && Pclntab::check(&bytes[off..], Some(0)).is_ok()
            {
                return Ok((addr, &bytes[off..]));
            }
            off += 8;
        }
    }
    Err(GoBinaryError::NoPclntab)
}

/// Finds `runtime.firstmoduledata`: a pointer to the pclntab header followed
/// by the `funcnametab` slice `{pclntab + funcnameOffset, len, len}` and the
/// `cutab` slice. Its layout, in pointer words, is stable from Go 1.20 to
/// 1.26: `text` is word 22, `gofunc` word 40; Go 1.27 adds `typedesclen`,
/// `itaboffset` and `itabsize` before `rodata`, moving `gofunc` to word 43;
/// Go 1.18-1.19 lack `covctrs`/`ecovctrs` (`gofunc` is word 38).
fn find_moduledata(
    image: &ElfImage<'_>,
    pclntab_addr: u64,
    pclntab: &Pclntab,
    go_minor: Option<u32>,
) -> Option<Moduledata> {
    if pclntab.ptr_size() != 8 {
        return None;
    }
    let funcnametab = pclntab_addr.checked_add(pclntab.funcnametab_offset() as u64)?;
    let cutab = pclntab_addr.checked_add(pclntab.cutab_offset() as u64)?;
    let plausible = |w: &dyn Fn(usize) -> Option<u64>| -> bool {
        w(0) == Some(pclntab_addr)
            && w(1) == Some(funcnametab)
            && w(2).is_some()
            && w(2) == w(3)
            && w(4) == Some(cutab)
    };

    // Pass 1: values as stored in the file (the Go linker and GNU ld both
    // write them, even where a dynamic relocation also applies).
    let mut ticker = Ticker::new(1 << 16);
    for s in image.segments.iter().filter(|s| s.flags & PF_X == 0) {
        let bytes = image.segment_bytes(s);
        let mut off = (s.addr.wrapping_neg() % 8) as usize;
        while off + 5 * 8 <= bytes.len() && !ticker.exhausted() {
            let word = |i: usize| -> Option<u64> {
                let o = off.checked_add(i * 8)?;
                Some(u64::from_le_bytes(bytes.get(o..o + 8)?.try_into().ok()?))
            };
            if plausible(&word) {
                let md = decode_moduledata(s.addr + off as u64, &word, image, pclntab, go_minor);
                if md.is_some() {
                    return md;
                }
            }
            off += 8;
        }
    }

    // Pass 2: linkers that leave relocated words zero in the file (lld
    // without --apply-dynamic-relocs): take the words from R_X86_64_RELATIVE
    // addends.
    for start in image.relocated_to(pclntab_addr) {
        let word = |i: usize| image.word(start.checked_add(i as u64 * 8)?);
        if plausible(&word) {
            let md = decode_moduledata(start, &word, image, pclntab, go_minor);
            if md.is_some() {
                return md;
            }
        }
    }
    None
}

fn decode_moduledata(
    addr: u64,
    word: &dyn Fn(usize) -> Option<u64>,
    image: &ElfImage<'_>,
    pclntab: &Pclntab,
    go_minor: Option<u32>,
) -> Option<Moduledata> {
    let (minpc, maxpc) = (word(20)?, word(21)?);
    let (text, etext) = (word(22)?, word(23)?);
    if text > minpc || minpc > maxpc || maxpc > etext {
        return None;
    }
    // Go 1.16-1.17 have no gofunc: their funcdata are absolute addresses.
    if pclntab.has_absolute_funcdata() {
        return Some(Moduledata {
            addr,
            text,
            etext,
            gofunc: None,
        });
    }
    // gofunc's word index by layout, the recorded version's first.
    let mut indexes = vec![40, 43, 38];
    let preferred = match go_minor {
        Some(m) if m >= 27 => 43,
        Some(18 | 19) => 38,
        _ => 40,
    };
    indexes.retain(|&i| i != preferred);
    indexes.insert(0, preferred);
    let gofunc = indexes.into_iter().find_map(|i| {
        let g = word(i)?;
        let tail = image.tail(g)?;
        match pclntab.check_gofunc(g, tail, GOFUNC_SAMPLES) {
            GoFuncCheck::Plausible => Some(g),
            GoFuncCheck::Unverifiable if i == preferred => Some(g),
            _ => None,
        }
    });
    Some(Moduledata {
        addr,
        text,
        etext,
        gofunc,
    })
}

/// Go 1.16-1.17 (absolute funcdata pointers): the start of the segment holding the
/// first inline trees serves as `go:func.*`, if the trees it implies are plausible.
fn absolute_funcdata_base(image: &ElfImage<'_>, pclntab: &Pclntab) -> Option<u64> {
    let tree = pclntab.first_inline_tree(GOFUNC_SAMPLES)?;
    let base = image.segment_of(tree)?.addr;
    let tail = image.tail(base)?;
    (pclntab.check_gofunc(base, tail, GOFUNC_SAMPLES) == GoFuncCheck::Plausible).then_some(base)
}

/// Go 1.26+ lays `go:func.*` out inside `.gopclntab`, right after the last
/// `_func` record (aligned to its largest member): try the alignments and
/// keep the first whose implied inline trees are plausible.
fn gofunc_from_layout(image: &ElfImage<'_>, pclntab_addr: u64, pclntab: &Pclntab) -> Option<u64> {
    let end = pclntab_addr.checked_add(pclntab.func_records_end() as u64)?;
    let mut last = None;
    for align in [1u64, 2, 4, 8, 16, 32, 64] {
        let g = end.checked_add(align - 1)? & !(align - 1);
        if last == Some(g) {
            continue;
        }
        last = Some(g);
        let tail = image.tail(g)?;
        if pclntab.check_gofunc(g, tail, GOFUNC_SAMPLES) == GoFuncCheck::Plausible {
            return Some(g);
        }
    }
    None
}

#[cfg(test)]
mod tests;
