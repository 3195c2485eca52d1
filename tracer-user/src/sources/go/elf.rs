//! An ELF file's bytes seen at their virtual addresses: the view every part of the Go
//! binary analysis reads through (build info, pclntab, moduledata, runtime layouts,
//! `runtime.allgs`).

use std::collections::HashMap;

use object::{Object, ObjectSegment, ObjectSymbol, SegmentFlags};

/// `p_flags` bits.
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
/// x86-64 relative relocation: the word at `offset` is `load bias + addend`.
pub const R_X86_64_RELATIVE: u32 = 8;

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
    /// `.symtab` definitions: name → (address, size).
    pub symbols: HashMap<String, (u64, u64)>,
    /// `R_X86_64_RELATIVE` addends by the address they relocate (PIE):
    /// linkers that leave relocated words zero in the file need them.
    relocs: HashMap<u64, u64>,
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
        let symbols = file
            .symbols()
            .filter(|s| s.is_definition())
            .filter_map(|s| Some((s.name().ok()?.to_string(), (s.address(), s.size()))))
            .collect();
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
