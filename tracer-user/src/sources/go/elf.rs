//! An ELF file's bytes seen at their virtual addresses: the view every part of the Go
//! binary analysis reads through (build info, pclntab, moduledata, runtime layouts,
//! `runtime.allgs`).

use std::collections::HashMap;

use object::{
    Endianness, Object, ObjectSegment, SegmentFlags,
    elf::{FileHeader64, SHN_UNDEF, SHT_SYMTAB},
    read::elf::{FileHeader, SectionHeader, Sym},
};

use crate::budget::cpu::Ticker;

/// The symbols the Go analysis looks up (by name) in a binary's `.symtab`: only these
/// are kept. A symbol table may hold a million names, all pointing into one megabyte
/// string: copying every name would take terabytes.
pub const LOOKED_UP_SYMBOLS: [&str; 9] = [
    "runtime.text",
    "runtime.pclntab",
    "runtime.epclntab",
    "runtime.firstmoduledata",
    "runtime.allgs",
    "runtime.allglen",
    "runtime.waitReasonStrings",
    "go:func.*",
    "go.func.*",
];

/// `p_flags` bits.
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
/// x86-64 relative relocation: the word at `offset` is `load bias + addend`.
pub const R_X86_64_RELATIVE: u32 = 8;

/// How the analysis keeps the parts of a file it needs afterwards (the pclntab, the
/// inline trees): copied out of bytes read into memory (counted against the memory
/// budget), or as slices of a mapped file that only root can write (page cache, no
/// copy: see [`crate::host::mapped`]).
#[derive(Clone, Copy)]
pub enum Retain<'a> {
    Copy,
    Share(&'a bytes::Bytes),
}

impl Retain<'_> {
    /// `part` kept, and the heap bytes that costs.
    pub fn keep(&self, part: &[u8]) -> (bytes::Bytes, u64) {
        if let Self::Share(whole) = self {
            let (start, end) = (
                whole.as_ptr() as usize,
                whole.as_ptr() as usize + whole.len(),
            );
            let at = part.as_ptr() as usize;
            if at >= start && at + part.len() <= end {
                return (whole.slice_ref(part), 0);
            }
        }
        (bytes::Bytes::copy_from_slice(part), part.len() as u64)
    }
}

/// One `PT_LOAD` segment.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub addr: u64,
    pub file_off: u64,
    pub file_size: u64,
    pub mem_size: u64,
    pub flags: u32,
}

/// An ELF file's bytes seen at their virtual addresses, with its symbols
/// and the link-time values of its relative relocations.
pub struct ElfImage<'a> {
    data: &'a [u8],
    pub segments: Vec<Segment>,
    /// `.symtab` definitions of [`LOOKED_UP_SYMBOLS`]: name → (address, size).
    pub symbols: HashMap<String, (u64, u64)>,
    /// `R_X86_64_RELATIVE` addends by the address they relocate (PIE):
    /// linkers that leave relocated words zero in the file need them.
    relocs: HashMap<u64, u64>,
}

/// The [`LOOKED_UP_SYMBOLS`] defined in `.symtab` (name → address, size), and whether
/// the table has any symbol at all: each name is compared in place, a few bytes of it,
/// so a table of endless names costs a pass over the entries and no copy. `None`
/// without a symbol table (or with one that does not parse).
pub fn looked_up_symbols(data: &[u8]) -> Option<HashMap<String, (u64, u64)>> {
    let header = FileHeader64::<Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    let table = sections.symbols(endian, data, SHT_SYMTAB).ok()?;
    let strings = sections
        .section(table.string_section())
        .ok()?
        .data(endian, data)
        .ok()?;
    let longest = LOOKED_UP_SYMBOLS.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut found = HashMap::new();
    let mut ticker = Ticker::new(1 << 16);
    for sym in table.symbols() {
        if ticker.exhausted() {
            break;
        }
        let defined = sym.st_shndx(endian) != SHN_UNDEF || sym.st_value(endian) != 0;
        let Some(name) = usize::try_from(sym.st_name(endian))
            .ok()
            .and_then(|at| strings.get(at..))
        else {
            continue;
        };
        let name = &name[..name.len().min(longest + 1)];
        let Some(end) = name.iter().position(|&b| b == 0) else {
            continue;
        };
        if let Some(&wanted) = LOOKED_UP_SYMBOLS
            .iter()
            .find(|w| w.as_bytes() == &name[..end])
            && defined
        {
            found
                .entry(wanted.to_string())
                .or_insert((sym.st_value(endian), sym.st_size(endian)));
        }
    }
    // An empty entry marks a table that had symbols (`has_symbols`), found or not.
    if table.symbols().len() > 1 {
        found.entry(String::new()).or_insert((0, 0));
    }
    Some(found)
}

impl<'a> ElfImage<'a> {
    pub fn parse(data: &'a [u8]) -> Result<(ElfImage<'a>, object::File<'a>), String> {
        let file = object::File::parse(data).map_err(|e| e.to_string())?;
        if file.format() != object::BinaryFormat::Elf {
            return Err(format!("{:?}", file.format()));
        }
        let segments = file
            .segments()
            .map(|s| {
                let (file_off, file_size) = s.file_range();
                let flags = match s.flags() {
                    SegmentFlags::Elf { p_flags } => p_flags,
                    _ => 0,
                };
                Segment {
                    addr: s.address(),
                    file_off,
                    file_size,
                    mem_size: s.size(),
                    flags,
                }
            })
            .collect();
        let symbols = looked_up_symbols(data).unwrap_or_default();
        let relocs = file
            .dynamic_relocations()
            .map(|relocs| {
                relocs
                    .filter_map(|(offset, r)| match r.flags() {
                        object::RelocationFlags::Elf { r_type } if r_type == R_X86_64_RELATIVE => {
                            Some((offset, r.addend() as u64))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((
            ElfImage {
                data,
                segments,
                symbols,
                relocs,
            },
            file,
        ))
    }

    /// The segment whose memory image holds `addr` (file-backed or not).
    pub fn segment_of(&self, addr: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| addr >= s.addr && addr - s.addr < s.mem_size.max(s.file_size))
    }

    /// `len` file-backed bytes at virtual address `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Option<&'a [u8]> {
        let s = self.file_segment_of(addr)?;
        let rel = addr - s.addr;
        if rel.checked_add(len as u64)? > s.file_size {
            return None;
        }
        let start = usize::try_from(s.file_off.checked_add(rel)?).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }

    /// The pointer-sized word at `addr` as the program sees it before its
    /// load bias is applied.
    pub fn word(&self, addr: u64) -> Option<u64> {
        if let Some(&v) = self.relocs.get(&addr) {
            return Some(v);
        }
        Some(u64::from_le_bytes(self.read(addr, 8)?.try_into().ok()?))
    }

    /// Addresses whose relative relocation resolves to `value` (link-time).
    pub fn relocated_to(&self, value: u64) -> Vec<u64> {
        let mut at: Vec<u64> = self
            .relocs
            .iter()
            .filter(|&(_, &v)| v == value)
            .map(|(&a, _)| a)
            .collect();
        at.sort_unstable();
        at
    }

    /// The file-backed bytes from `addr` to the end of its segment.
    pub fn tail(&self, addr: u64) -> Option<&'a [u8]> {
        let s = self.file_segment_of(addr)?;
        let start = s.file_off.checked_add(addr - s.addr)?;
        let end = s.file_off.checked_add(s.file_size)?;
        self.data
            .get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// A segment's file-backed bytes (clipped to the file).
    pub fn segment_bytes(&self, s: &Segment) -> &'a [u8] {
        let start = usize::try_from(s.file_off).unwrap_or(usize::MAX);
        let end = usize::try_from(s.file_off.saturating_add(s.file_size)).unwrap_or(usize::MAX);
        self.data
            .get(start..end.min(self.data.len()))
            .unwrap_or(&[])
    }

    /// Whether `addr` lies in file-backed executable code.
    pub fn is_executable(&self, addr: u64) -> bool {
        self.file_segment_of(addr)
            .is_some_and(|s| s.flags & PF_X != 0)
    }

    fn file_segment_of(&self, addr: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| addr >= s.addr && addr - s.addr < s.file_size)
    }
}
