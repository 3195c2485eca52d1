//! The Go runtime's own symbol table, `.gopclntab` (runtime.pclntab).
//!
//! Every Go binary carries it, stripped or not, because the runtime needs it
//! for tracebacks and garbage collection: it maps PCs to functions, files,
//! lines and inlining, which is all leakscope needs to name a parked
//! goroutine's stack.
//!
//! Layout (Go 1.18+, `runtime/symtab.go` `pcHeader`; `ptrSize`-wide words):
//!
//! ```text
//! magic u32 (0xfffffff0: 1.18-1.19, 0xfffffff1: 1.20+)  pad1 u8  pad2 u8  minLC u8  ptrSize u8
//! nfunc, nfiles, textStart (0 since Go 1.26: use moduledata.text),
//! funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset
//! ```
//!
//! Go 1.16 and 1.17 (magic 0xfffffffa) have the same tables with three differences:
//! no `textStart` word in the header; functab entries are pointer-sized pairs
//! `(entry uintptr, funcoff uintptr)` holding absolute entry addresses; and each
//! `_func` starts with `entry uintptr` (so every later field sits 4 bytes further on
//! 64-bit), with funcdata as pointer-sized absolute addresses, 8-aligned after the
//! pcdata, instead of 32-bit offsets from `go:func.*`. Inline tree entries are the
//! 20-byte ones of Go 1.18-1.19.
//!
//! The offsets are relative to the header. At `pclnOffset` the functab holds
//! `nfunc` pairs `(entryoff u32, funcoff u32)` sorted by entry and a final
//! `entryoff` (end of text); `entryoff` is relative to the text start and
//! `funcoff` to the functab itself, where it finds a `_func`:
//!
//! ```text
//! entryOff u32, nameOff i32, args i32, deferreturn u32, pcsp u32, pcfile u32,
//! pcln u32, npcdata u32, cuOffset u32, startLine i32 (1.20+),
//! funcID u8, flag u8, pad u8, nfuncdata u8,
//! pcdata [npcdata]u32      // offsets into pctab, 0: none
//! funcdata [nfuncdata]u32  // offsets from moduledata.gofunc (go:func.*), ^0: none
//! ```
//!
//! PC-value tables (pcfile, pcln, pcdata) are sequences of
//! (zig-zag value delta, pc delta / minLC) uvarint pairs, starting from value
//! -1 at the function entry, terminated by a zero value delta.
//!
//! Inlining: `pcdata[PCDATA_InlTreeIndex]` gives, at each PC, the index of the
//! innermost inlined call in the function's inline tree (or -1), and
//! `funcdata[FUNCDATA_InlTree]` locates that tree in `go:func.*`. Each entry
//! names the inlined function and gives `parentPc`, the offset from the entry
//! of an instruction whose position is the call site: looking that PC up again
//! walks out to the caller (runtime/symtabinl.go `inlineUnwinder`).
//!
//! All addresses in this API are the binary's own (link-time) virtual
//! addresses: callers subtract a PIE load bias before asking.

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

use super::elf::Retain;
use crate::model::frame_name;

/// Go 1.16 and 1.17.
pub const MAGIC_GO116: u32 = 0xffff_fffa;
/// Go 1.18 and 1.19.
pub const MAGIC_GO118: u32 = 0xffff_fff0;
/// Go 1.20 and later (still current in Go 1.27).
pub const MAGIC_GO120: u32 = 0xffff_fff1;
/// Go 1.2 to 1.15: not read (leakscope's oldest Go is 1.17).
const MAGIC_GO12: u32 = 0xffff_fffb;

/// `abi.PCDATA_InlTreeIndex`.
pub const PCDATA_INL_TREE_INDEX: u32 = 2;
/// `abi.FUNCDATA_InlTree`.
pub const FUNCDATA_INL_TREE: u32 = 3;

/// Longest name read from the name or file tables (a frame keeps at most
/// [`crate::model::MAX_FRAME_NAME`] bytes of it).
const MAX_NAME: usize = 1 << 16;
/// Deepest inlining followed (the compiler's budget keeps real trees shallow).
const MAX_INLINE_DEPTH: usize = 64;
/// Entries decoded from one pc-value table: real tables have one per line or file
/// change; a hostile one of endless non-zero deltas stops here.
const MAX_PCVALUE_STEPS: u32 = 1 << 16;

/// Why a pclntab could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PclntabError {
    #[error("pclntab is truncated")]
    Truncated,
    #[error("not a pclntab (magic {0:#x})")]
    BadMagic(u32),
    #[error("pclntab of Go 1.2-1.15 (magic {0:#x}) is not supported")]
    Unsupported(u32),
    #[error("pclntab is malformed: {0}")]
    Malformed(&'static str),
    #[error("pclntab records no text start (Go 1.26+) and none was given")]
    NoTextStart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Go 1.16-1.17: absolute entries (`entry uintptr` in functab and `_func`),
    /// absolute funcdata pointers, no `textStart` in the header.
    Go116,
    /// Go 1.18-1.19: no `startLine`, 20-byte inline tree entries.
    Go118,
    /// Go 1.20+: `startLine`, 16-byte inline tree entries.
    Go120,
}

impl Format {
    /// Size of the fixed part of a `_func` with pointers of `ptr_size` bytes.
    fn func_size(self, ptr_size: usize) -> usize {
        match self {
            Format::Go116 => 36 + ptr_size,
            Format::Go118 => 40,
            Format::Go120 => 44,
        }
    }

    fn inl_entry_size(self) -> usize {
        match self {
            Format::Go116 | Format::Go118 => 20,
            Format::Go120 => 16,
        }
    }

    /// Pointer-sized words in the header after its first 8 bytes.
    fn header_words(self) -> usize {
        match self {
            Format::Go116 => 7,
            Format::Go118 | Format::Go120 => 8,
        }
    }
}

/// A function found in the pclntab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncInfo {
    /// Entry address (the binary's own virtual address).
    pub entry: u64,
    /// End address (the next function's entry, or the end of text).
    pub end: u64,
    /// Go symbol name, e.g. `main.(*server).serve.func1`.
    pub name: String,
    /// Line of the `func` keyword (Go 1.20+; 0 before).
    pub start_line: i32,
    /// `abi.FuncID` (non-zero for special runtime functions).
    pub func_id: u8,
    /// Offset of the `_func` record in the table.
    func_off: usize,
}

/// One logical frame at a PC: a function and the source position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: u32,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}:{})", self.function, self.file, self.line)
    }
}

/// Where `go:func.*` (moduledata.gofunc) is, and its bytes up to the end of
/// the region that holds it: the funcdata offsets are relative to it.
#[derive(Clone)]
struct GoFunc {
    addr: u64,
    data: Bytes,
    heap_bytes: u64,
}

/// The result of checking a candidate `go:func.*` base against the inline
/// trees it would imply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoFuncCheck {
    /// Every sampled inline tree was plausible.
    Plausible,
    /// Some sampled inline tree was not.
    Implausible,
    /// No function has an inline tree: nothing to check against.
    Unverifiable,
}

/// A parsed `.gopclntab`.
#[derive(Clone)]
pub struct Pclntab {
    data: Bytes,
    /// Heap bytes `data` and the inline trees hold (0 for slices of a mapped file).
    heap_bytes: u64,
    format: Format,
    quantum: u64,
    ptr_size: usize,
    nfunc: usize,
    nfiles: usize,
    text_start: u64,
    funcnametab: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    functab: usize,
    gofunc: Option<GoFunc>,
}

impl fmt::Debug for Pclntab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pclntab")
            .field("format", &self.format)
            .field("nfunc", &self.nfunc)
            .field("nfiles", &self.nfiles)
            .field("text_start", &format_args!("{:#x}", self.text_start))
            .field("gofunc", &self.gofunc.as_ref().map(|g| g.addr))
            .finish_non_exhaustive()
    }
}

impl Pclntab {
    /// Parses a pclntab from `bytes` (starting at its header; trailing bytes
    /// are ignored).
    ///
    /// `text_start_hint` is the module's text start (`moduledata.text`, the
    /// `runtime.text` symbol): it wins over the header's `textStart`, which
    /// Go 1.26+ no longer fills in and which is the only choice otherwise.
    pub fn parse(bytes: &[u8], text_start_hint: Option<u64>) -> Result<Pclntab, PclntabError> {
        Self::parse_retained(bytes, text_start_hint, Retain::Copy)
    }

    /// Whether `bytes` hold a pclntab that parses, without keeping anything of it.
    pub fn check(bytes: &[u8], text_start_hint: Option<u64>) -> Result<(), PclntabError> {
        Self::parse_header(bytes, text_start_hint).map(drop)
    }

    /// [`Self::parse`], keeping the table as `retain` says (copied, or a slice of a
    /// mapped file).
    pub fn parse_retained(
        bytes: &[u8],
        text_start_hint: Option<u64>,
        retain: Retain<'_>,
    ) -> Result<Pclntab, PclntabError> {
        let mut tab = Self::parse_header(bytes, text_start_hint)?;
        (tab.data, tab.heap_bytes) = retain.keep(bytes);
        Ok(tab)
    }

    /// The header and its checks, over borrowed bytes (`data` left empty).
    fn parse_header(bytes: &[u8], text_start_hint: Option<u64>) -> Result<Pclntab, PclntabError> {
        let (format, quantum, ptr_size) = parse_fixed_header(bytes)?;
        let word = |i: usize| -> Result<u64, PclntabError> {
            let off = 8 + i * ptr_size;
            let v = if ptr_size == 8 {
                read_u64(bytes, off)
            } else {
                read_u32(bytes, off).map(u64::from)
            };
            v.ok_or(PclntabError::Truncated)
        };
        let len = bytes.len() as u64;
        let offset = |i: usize| -> Result<usize, PclntabError> {
            let v = word(i)?;
            if v >= len {
                return Err(PclntabError::Truncated);
            }
            Ok(v as usize)
        };
        let nfunc = word(0)?;
        let nfiles = word(1)?;
        // Go 1.16-1.17 have no textStart word: the offsets start one word earlier.
        let (header_text_start, first_offset) = match format {
            Format::Go116 => (0, 2),
            Format::Go118 | Format::Go120 => (word(2)?, 3),
        };
        let funcnametab = offset(first_offset)?;
        let cutab = offset(first_offset + 1)?;
        let filetab = offset(first_offset + 2)?;
        let pctab = offset(first_offset + 3)?;
        let functab = offset(first_offset + 4)?;
        let header_end = 8 + format.header_words() * ptr_size;
        if [funcnametab, cutab, filetab, pctab, functab]
            .iter()
            .any(|&o| o < header_end)
        {
            return Err(PclntabError::Malformed("table offset inside the header"));
        }
        if nfunc == 0 {
            return Err(PclntabError::Malformed("no functions"));
        }
        // The functab: nfunc (entryoff, funcoff) pairs and the end entryoff (Go
        // 1.16-1.17: pointer-sized (entry, funcoff) pairs and the end entry).
        let field = ftab_field_size(format, ptr_size) as u64;
        let functab_end = nfunc
            .checked_mul(2 * field)
            .and_then(|n| n.checked_add(field + functab as u64))
            .ok_or(PclntabError::Truncated)?;
        if functab_end > len {
            return Err(PclntabError::Truncated);
        }
        let text_start = match (format, text_start_hint, header_text_start) {
            // Entries are absolute: the text start is only a base they are kept
            // relative to; a hint past the first function is no base.
            (Format::Go116, hint, _) => {
                let first = read_ptr(bytes, functab, ptr_size).ok_or(PclntabError::Truncated)?;
                hint.filter(|&h| h <= first).unwrap_or(first)
            }
            (_, Some(hint), _) => hint,
            (_, None, 0) => return Err(PclntabError::NoTextStart),
            (_, None, header) => header,
        };
        // Sanity checks on the borrowed bytes first: a scan for a header in a large
        // segment tries many candidates, and copying the rest of the segment for each
        // would be quadratic.
        check_functab(bytes, functab, nfunc as usize, format, ptr_size)?;
        Ok(Pclntab {
            data: Bytes::new(),
            heap_bytes: 0,
            format,
            quantum: u64::from(quantum),
            ptr_size,
            nfunc: nfunc as usize,
            nfiles: nfiles.min(len) as usize,
            text_start,
            funcnametab,
            cutab,
            filetab,
            pctab,
            functab,
            gofunc: None,
        })
    }

    /// Number of functions.
    pub fn nfunc(&self) -> usize {
        self.nfunc
    }

    /// Pointer size recorded in the header.
    pub fn ptr_size(&self) -> usize {
        self.ptr_size
    }

    /// The text start that function entries are relative to.
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// The end of the module's text (end of the last function).
    pub fn text_end(&self) -> u64 {
        self.text_start
            .saturating_add(u64::from(self.ftab_entryoff(self.nfunc).unwrap_or(0)))
    }

    /// The header's own `textStart` word (0 in Go 1.26+, and in Go 1.16-1.17, whose
    /// header has none).
    pub fn header_text_start(&self) -> u64 {
        if self.format == Format::Go116 {
            return 0;
        }
        let off = 8 + 2 * self.ptr_size;
        if self.ptr_size == 8 {
            read_u64(&self.data, off).unwrap_or(0)
        } else {
            read_u32(&self.data, off).map_or(0, u64::from)
        }
    }

    /// Offset of `funcnametab` from the header (moduledata.funcnametab's
    /// pointer is the pclntab's address plus this).
    pub fn funcnametab_offset(&self) -> usize {
        self.funcnametab
    }

    /// Offset of `cutab` from the header.
    pub fn cutab_offset(&self) -> usize {
        self.cutab
    }

    /// Offset of the functab (`moduledata.pclntable`/`ftab`) from the header.
    pub fn functab_offset(&self) -> usize {
        self.functab
    }

    /// Offset from the header just past the last `_func` record (with its
    /// pcdata and funcdata): the end of `moduledata.pclntable`, before any
    /// alignment padding.
    pub fn func_records_end(&self) -> usize {
        let field = ftab_field_size(self.format, self.ptr_size);
        let mut end = self.functab + self.nfunc * 2 * field + field;
        for i in 0..self.nfunc {
            let Some((_, funcoff)) = self.ftab_entry(i) else {
                continue;
            };
            let Some(f) = self.func_off(funcoff) else {
                continue;
            };
            let (np, nf) = (self.npcdata(f), self.nfuncdata(f));
            let funcdata_end = self
                .funcdata_start(f)
                .saturating_add(nf * self.funcdata_size());
            end = end.max(f + self.func_size() + 4 * np).max(funcdata_end);
        }
        end.min(self.data.len())
    }

    /// Sets the text start that function entries are relative to
    /// (`moduledata.text`, once known).
    pub fn set_text_start(&mut self, text_start: u64) {
        self.text_start = text_start;
    }

    /// Tells the table where `go:func.*` (moduledata.gofunc) is: `data` is
    /// the image's bytes from `addr` on. Needed only for [`Self::inline_frames`].
    pub fn set_gofunc(&mut self, addr: u64, data: impl Into<Bytes>) {
        self.set_gofunc_retained(addr, data.into(), 0);
    }

    /// [`Self::set_gofunc`] with bytes kept as [`Retain::keep`] gives them, holding
    /// `heap_bytes` of heap.
    pub fn set_gofunc_retained(&mut self, addr: u64, data: Bytes, heap_bytes: u64) {
        if let Some(old) = self.gofunc.take() {
            self.heap_bytes = self.heap_bytes.saturating_sub(old.heap_bytes);
        }
        self.heap_bytes += heap_bytes;
        self.gofunc = Some(GoFunc {
            addr,
            data,
            heap_bytes,
        });
    }

    /// Heap bytes the table holds (its copies; nothing for slices of a mapped file).
    pub fn heap_bytes(&self) -> u64 {
        self.heap_bytes
    }

    /// Where `go:func.*` is, if known.
    pub fn gofunc(&self) -> Option<u64> {
        self.gofunc.as_ref().map(|g| g.addr)
    }

    /// True when inlined calls can be expanded ([`Self::set_gofunc`] was called).
    pub fn has_inline_tree(&self) -> bool {
        self.gofunc.is_some()
    }

    /// True for Go 1.16-1.17 tables, whose funcdata are absolute addresses: any base
    /// at or below the inline trees serves as `go:func.*` (see
    /// [`Self::first_inline_tree`]).
    pub fn has_absolute_funcdata(&self) -> bool {
        self.format == Format::Go116
    }

    /// Go 1.16-1.17: the lowest absolute address of an inline tree among the first
    /// `samples` functions that have one (a base for [`Self::set_gofunc`] is at or
    /// below it, in the same segment). `None` for newer tables.
    pub fn first_inline_tree(&self, samples: usize) -> Option<u64> {
        if self.format != Format::Go116 {
            return None;
        }
        (0..self.nfunc)
            .filter_map(|i| self.func_record_at(i))
            .filter_map(|f| self.funcdata(f.func_off, FUNCDATA_INL_TREE))
            .take(samples)
            .min()
    }

    /// Checks a candidate `go:func.*` base (`data` is the image from `addr`
    /// on) against up to `samples` functions' inline trees: every entry must
    /// name a function and point back inside its function.
    pub fn check_gofunc(&self, addr: u64, data: &[u8], samples: usize) -> GoFuncCheck {
        let mut checked = 0usize;
        // Function records without their names: a name costs a scan to its NUL.
        for f in (0..self.nfunc).filter_map(|i| self.func_record_at(i)) {
            if checked >= samples {
                break;
            }
            let Some(tree_off) = self
                .funcdata(f.func_off, FUNCDATA_INL_TREE)
                .and_then(|raw| self.tree_offset(raw, addr))
            else {
                continue;
            };
            let Some(table) = self.pcdata(f.func_off, PCDATA_INL_TREE_INDEX) else {
                continue;
            };
            let max_ix = self
                .pcvalues(table, f.entry)
                .map(|(v, _)| v)
                .max()
                .unwrap_or(-1);
            if max_ix < 0 {
                continue;
            }
            checked += 1;
            let size = f.end.saturating_sub(f.entry);
            for ix in 0..=max_ix as usize {
                let Some(call) = self.inlined_call(data, tree_off, ix) else {
                    return GoFuncCheck::Implausible;
                };
                // The name must start a string of the name table.
                let starts_name = call.name_off == 0
                    || (call.name_off > 0
                        && self.data.get(self.funcnametab + call.name_off as usize - 1)
                            == Some(&0));
                let name_ok = starts_name
                    && self.cstr(self.funcnametab, call.name_off).is_some_and(|n| {
                        !n.is_empty() && n.iter().all(|b| b.is_ascii_graphic() || *b >= 0x80)
                    });
                let parent_ok = call.parent_pc >= 0 && (call.parent_pc as u64) < size;
                if !name_ok || !parent_ok || !call.pad_zero {
                    return GoFuncCheck::Implausible;
                }
            }
        }
        if checked == 0 {
            GoFuncCheck::Unverifiable
        } else {
            GoFuncCheck::Plausible
        }
    }

    /// The function containing `pc`.
    pub fn find_func(&self, pc: u64) -> Option<FuncInfo> {
        let rel = pc.checked_sub(self.text_start)?;
        let rel = u32::try_from(rel).ok()?;
        if rel >= self.ftab_entryoff(self.nfunc)? {
            return None;
        }
        // Last entry whose entryoff <= rel.
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.ftab_entryoff(mid)? <= rel {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        if self.ftab_entryoff(lo)? > rel {
            return None;
        }
        self.func_at(lo)
    }

    /// The entry address of the function named `name` (e.g.
    /// `runtime.gopark`), by a linear scan.
    pub fn find_func_by_name(&self, name: &str) -> Option<u64> {
        let want = name.as_bytes();
        (0..self.nfunc).find_map(|i| {
            let (entryoff, funcoff) = self.ftab_entry(i)?;
            let f = self.func_off(funcoff)?;
            let name_off = self.field_u32(f, 4)?;
            // Compared in place (name and its NUL): no scan of a NUL-less name.
            let start = self.funcnametab.checked_add(name_off as usize)?;
            let got = self.data.get(start..start.checked_add(want.len() + 1)?)?;
            if got[..want.len()] == *want && got[want.len()] == 0 {
                self.text_start.checked_add(u64::from(entryoff))
            } else {
                None
            }
        })
    }

    /// All functions, in address order.
    pub fn funcs(&self) -> impl Iterator<Item = FuncInfo> + '_ {
        (0..self.nfunc).filter_map(|i| self.func_at(i))
    }

    /// File and line of `pc` in `func`. For a PC in an inlined body this is
    /// the inlined function's position; see [`Self::inline_frames`].
    pub fn pc_to_file_line(&self, func: &FuncInfo, pc: u64) -> Option<(String, u32)> {
        let file = self.pc_to_file(func, pc)?;
        let line = self.pc_to_line(func, pc)?;
        Some((file, line))
    }

    /// Line of `pc` in `func`.
    pub fn pc_to_line(&self, func: &FuncInfo, pc: u64) -> Option<u32> {
        let table = self.field_u32(func.func_off, 24)?;
        let line = self.pcvalue(table, func.entry, pc)?;
        u32::try_from(line).ok()
    }

    /// File of `pc` in `func`.
    pub fn pc_to_file(&self, func: &FuncInfo, pc: u64) -> Option<String> {
        let table = self.field_u32(func.func_off, 20)?;
        self.file_name(func, self.pcvalue(table, func.entry, pc)?)
    }

    /// File number `fileno` of `func`'s compilation unit.
    fn file_name(&self, func: &FuncInfo, fileno: i32) -> Option<String> {
        if fileno < 0 {
            return None;
        }
        let cu = self.field_u32(func.func_off, 32)?;
        let idx = (cu as usize).checked_add(fileno as usize)?;
        let name_off = read_u32(&self.data, self.cutab.checked_add(idx.checked_mul(4)?)?)?;
        if name_off == u32::MAX {
            return None;
        }
        let name = self.cstr(self.filetab, name_off as i32)?;
        Some(frame_name(name))
    }

    /// The logical frames at `pc` in `func`, innermost first: one per inlined
    /// call that `pc` is in, then `func` itself. Each has the position of its
    /// call into the next-inner frame (or of `pc` for the innermost).
    ///
    /// For a return address of a non-innermost physical frame, pass `pc - 1`
    /// so that the call instruction, not the next one, is looked up.
    ///
    /// Without a known `go:func.*` ([`Self::has_inline_tree`] false) inlined
    /// calls cannot be expanded: the result is then `func` alone, with the
    /// position of `pc` (which is in the innermost inlined body).
    pub fn inline_frames(&self, func: &FuncInfo, pc: u64) -> Vec<Frame> {
        let tree = self.gofunc.as_ref().and_then(|g| {
            let raw = self.funcdata(func.func_off, FUNCDATA_INL_TREE)?;
            let off = self.tree_offset(raw, g.addr)?;
            let table = self.pcdata(func.func_off, PCDATA_INL_TREE_INDEX)?;
            Some((&g.data[..], off, table))
        });
        let Some((data, tree_off, table)) = tree else {
            if self.gofunc.is_none()
                && self
                    .pcdata(func.func_off, PCDATA_INL_TREE_INDEX)
                    .and_then(|t| self.pcvalue(t, func.entry, pc))
                    .is_some_and(|ix| ix >= 0)
            {
                log::debug!(
                    "{:#x} is in a call inlined into {}, but go:func.* is unknown: not expanded",
                    pc,
                    func.name
                );
            }
            let file = self.pc_to_file(func, pc).unwrap_or_else(|| "?".to_string());
            let line = self.pc_to_line(func, pc).unwrap_or(0);
            return vec![Frame {
                function: func.name.clone(),
                file,
                line,
            }];
        };
        // Each level looks up its parent pc in the same three tables: decoded once, so
        // a deep tree costs lookups, not a decoding per level.
        let runs = |field: usize| {
            self.field_u32(func.func_off, field)
                .map(|t| PcRuns::decode(self, t, func.entry))
                .unwrap_or_default()
        };
        let (files, lines, index) = (runs(20), runs(24), PcRuns::decode(self, table, func.entry));
        let position = |pc: u64| {
            let file = files
                .value(func.entry, pc)
                .and_then(|fileno| self.file_name(func, fileno))
                .unwrap_or_else(|| "?".to_string());
            let line = lines
                .value(func.entry, pc)
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(0);
            (file, line)
        };
        let mut frames = Vec::new();
        let mut pc = pc;
        let mut ix = index.value(func.entry, pc).unwrap_or(-1);
        // A real tree goes from a call to its caller, never back: an index seen before
        // is a loop (a hostile table), and ends the expansion.
        let mut seen: Vec<i32> = Vec::new();
        while ix >= 0 && frames.len() < MAX_INLINE_DEPTH && !seen.contains(&ix) {
            seen.push(ix);
            let Some(call) = self.inlined_call(data, tree_off, ix as usize) else {
                break;
            };
            let name = self
                .cstr(self.funcnametab, call.name_off)
                .map_or_else(|| "?".to_string(), frame_name);
            let (file, line) = position(pc);
            frames.push(Frame {
                function: name,
                file,
                line,
            });
            if call.parent_pc < 0 {
                break;
            }
            pc = func.entry.saturating_add(call.parent_pc as u64);
            ix = index.value(func.entry, pc).unwrap_or(-1);
        }
        let (file, line) = position(pc);
        frames.push(Frame {
            function: func.name.clone(),
            file,
            line,
        });
        frames
    }

    // ---- internals ----

    /// The size of the fixed part of a `_func`.
    fn func_size(&self) -> usize {
        self.format.func_size(self.ptr_size)
    }

    /// Entry `i` of the functab (`i == nfunc`: the end of text), relative to the
    /// text start.
    fn ftab_entryoff(&self, i: usize) -> Option<u32> {
        let field = ftab_field_size(self.format, self.ptr_size);
        let off = self.functab.checked_add(i.checked_mul(2 * field)?)?;
        match self.format {
            Format::Go116 => {
                let entry = read_ptr(&self.data, off, self.ptr_size)?;
                u32::try_from(entry.checked_sub(self.text_start)?).ok()
            }
            Format::Go118 | Format::Go120 => read_u32(&self.data, off),
        }
    }

    /// (entry relative to the text start, funcoff) of function `i`.
    fn ftab_entry(&self, i: usize) -> Option<(u32, u32)> {
        if i >= self.nfunc {
            return None;
        }
        let field = ftab_field_size(self.format, self.ptr_size);
        let off = self.functab + i * 2 * field;
        let funcoff = match self.format {
            Format::Go116 => {
                u32::try_from(read_ptr(&self.data, off + field, self.ptr_size)?).ok()?
            }
            Format::Go118 | Format::Go120 => read_u32(&self.data, off + 4)?,
        };
        Some((self.ftab_entryoff(i)?, funcoff))
    }

    /// Offset in `data` of the `_func` at functab-relative `funcoff`, if the
    /// fixed part fits.
    fn func_off(&self, funcoff: u32) -> Option<usize> {
        let off = self.functab.checked_add(funcoff as usize)?;
        let end = off.checked_add(self.func_size())?;
        (end <= self.data.len()).then_some(off)
    }

    /// The function at functab index `i`, its name left empty.
    fn func_record_at(&self, i: usize) -> Option<FuncInfo> {
        let (entryoff, funcoff) = self.ftab_entry(i)?;
        let end = self.ftab_entryoff(i + 1)?;
        let f = self.func_off(funcoff)?;
        // The record's own entry must agree with the functab's.
        let agrees = match self.format {
            Format::Go116 => {
                read_ptr(&self.data, f, self.ptr_size)? == self.text_start + u64::from(entryoff)
            }
            Format::Go118 | Format::Go120 => read_u32(&self.data, f)? == entryoff,
        };
        if !agrees {
            return None;
        }
        let func_id = *self.data.get(f + self.func_size() - 4)?;
        let start_line = match self.format {
            Format::Go120 => self.field_u32(f, 36)? as i32,
            Format::Go116 | Format::Go118 => 0,
        };
        Some(FuncInfo {
            entry: self.text_start.checked_add(u64::from(entryoff))?,
            end: self.text_start.checked_add(u64::from(end.max(entryoff)))?,
            name: String::new(),
            start_line,
            func_id,
            func_off: f,
        })
    }

    fn func_at(&self, i: usize) -> Option<FuncInfo> {
        let mut func = self.func_record_at(i)?;
        let name_off = self.field_u32(func.func_off, 4)? as i32;
        func.name = self
            .cstr(self.funcnametab, name_off)
            .map_or_else(|| "?".to_string(), frame_name);
        Some(func)
    }

    /// The `u32` field of a `_func` at `field`, its offset in the Go 1.18+ record
    /// (`nameOff` 4, `pcfile` 20, `pcln` 24, `npcdata` 28, `cuOffset` 32, `startLine`
    /// 36): Go 1.16-1.17 records start with a pointer-sized entry, not a `u32`.
    fn field_u32(&self, func_off: usize, field: usize) -> Option<u32> {
        let shift = match self.format {
            Format::Go116 => self.ptr_size - 4,
            Format::Go118 | Format::Go120 => 0,
        };
        read_u32(&self.data, func_off.checked_add(field + shift)?)
    }

    fn npcdata(&self, f: usize) -> usize {
        self.field_u32(f, 28).map_or(0, |n| n.min(1 << 16) as usize)
    }

    fn nfuncdata(&self, f: usize) -> usize {
        self.data
            .get(f + self.func_size() - 1)
            .map_or(0, |&n| n as usize)
    }

    /// Offset in pctab of pcdata table `idx`, if present.
    fn pcdata(&self, f: usize, idx: u32) -> Option<u32> {
        if idx as usize >= self.npcdata(f) {
            return None;
        }
        let v = read_u32(&self.data, f + self.func_size() + 4 * idx as usize)?;
        (v != 0).then_some(v)
    }

    /// Bytes of one funcdata value: an offset from go:func.* (`u32`), or in Go
    /// 1.16-1.17 an absolute pointer.
    fn funcdata_size(&self) -> usize {
        match self.format {
            Format::Go116 => self.ptr_size,
            Format::Go118 | Format::Go120 => 4,
        }
    }

    /// Offset in `data` of a `_func`'s funcdata array: after its pcdata, aligned to a
    /// pointer in Go 1.16-1.17 (the table itself is pointer-aligned).
    fn funcdata_start(&self, f: usize) -> usize {
        let after = f + self.func_size() + 4 * self.npcdata(f);
        match self.format {
            Format::Go116 => after.next_multiple_of(self.ptr_size),
            Format::Go118 | Format::Go120 => after,
        }
    }

    /// Funcdata `idx` as recorded: an offset from go:func.* (Go 1.18+) or an absolute
    /// address (Go 1.16-1.17); `None` when absent.
    fn funcdata(&self, f: usize, idx: u32) -> Option<u64> {
        if idx as usize >= self.nfuncdata(f) {
            return None;
        }
        let off = self.funcdata_start(f) + self.funcdata_size() * idx as usize;
        match self.format {
            Format::Go116 => read_ptr(&self.data, off, self.ptr_size).filter(|&v| v != 0),
            Format::Go118 | Format::Go120 => {
                let v = read_u32(&self.data, off)?;
                (v != u32::MAX).then_some(u64::from(v))
            }
        }
    }

    /// A funcdata value as an offset from the `go:func.*` base `base`.
    fn tree_offset(&self, raw: u64, base: u64) -> Option<usize> {
        let off = match self.format {
            Format::Go116 => raw.checked_sub(base)?,
            Format::Go118 | Format::Go120 => raw,
        };
        usize::try_from(off).ok()
    }

    fn inlined_call(&self, data: &[u8], tree_off: usize, ix: usize) -> Option<InlinedCall> {
        let size = self.format.inl_entry_size();
        let off = tree_off.checked_add(ix.checked_mul(size)?)?;
        let entry = data.get(off..off.checked_add(size)?)?;
        let i32_at = |o: usize| i32::from_le_bytes(entry[o..o + 4].try_into().unwrap());
        Some(match self.format {
            // {funcID u8, _ [3]u8, nameOff i32, parentPc i32, startLine i32}
            Format::Go120 => InlinedCall {
                name_off: i32_at(4),
                parent_pc: i32_at(8),
                pad_zero: entry[1..4] == [0, 0, 0],
            },
            // {parent i16, funcID u8, _ u8, file i32, line i32, func_ i32, parentPc i32}
            Format::Go116 | Format::Go118 => InlinedCall {
                name_off: i32_at(12),
                parent_pc: i32_at(16),
                pad_zero: entry[3] == 0,
            },
        })
    }

    /// NUL-terminated string at `table + off`. Found by `CStr`'s word-at-a-time search:
    /// a hostile table's names are 64 KiB, looked for once per frame and inlined call
    /// named (a byte loop made that most of the go_frames fuzz target's time).
    fn cstr(&self, table: usize, off: i32) -> Option<&[u8]> {
        let start = table.checked_add(usize::try_from(off).ok()?)?;
        let rest = self.data.get(start..)?;
        let rest = &rest[..rest.len().min(MAX_NAME)];
        Some(std::ffi::CStr::from_bytes_until_nul(rest).ok()?.to_bytes())
    }

    /// Value of the pc-value table at pctab offset `table` for `pc`, in the
    /// function starting at `entry`.
    fn pcvalue(&self, table: u32, entry: u64, pc: u64) -> Option<i32> {
        if pc < entry {
            return None;
        }
        self.pcvalues(table, entry)
            .find(|&(_, end)| pc < end)
            .map(|(v, _)| v)
    }

    /// The (value, end pc) runs of a pc-value table.
    fn pcvalues(&self, table: u32, entry: u64) -> PcValues<'_> {
        let start = self.pctab.saturating_add(table as usize);
        PcValues {
            data: self.data.get(start..).unwrap_or(&[]),
            pos: 0,
            value: -1,
            pc: entry,
            first: true,
            quantum: self.quantum,
            done: table == 0,
            steps: 0,
        }
    }
}

/// A pc-value table decoded once: (value, end pc) runs, ends ascending.
#[derive(Default)]
struct PcRuns(Vec<(i32, u64)>);

impl PcRuns {
    fn decode(tab: &Pclntab, table: u32, entry: u64) -> Self {
        Self(tab.pcvalues(table, entry).collect())
    }

    /// The value at `pc` (what [`Pclntab::pcvalue`] would say).
    fn value(&self, entry: u64, pc: u64) -> Option<i32> {
        if pc < entry {
            return None;
        }
        let i = self.0.partition_point(|&(_, end)| end <= pc);
        self.0.get(i).map(|&(value, _)| value)
    }
}

struct InlinedCall {
    name_off: i32,
    parent_pc: i32,
    /// The entry's padding is zero (a check of candidate go:func.* bases).
    pad_zero: bool,
}

/// Iterator over a pc-value table: each item is a value and the PC where it
/// stops applying.
struct PcValues<'a> {
    data: &'a [u8],
    pos: usize,
    value: i32,
    pc: u64,
    first: bool,
    quantum: u64,
    done: bool,
    steps: u32,
}

impl PcValues<'_> {
    /// Decodes the next (value delta, pc delta, next position).
    fn step(&self) -> Option<(i32, u64, usize)> {
        let (uvdelta, n) = uvarint32(self.data.get(self.pos..)?)?;
        if uvdelta == 0 && !self.first {
            return None;
        }
        let pos = self.pos + n;
        let (pcdelta, m) = uvarint32(self.data.get(pos..)?)?;
        let vdelta = ((uvdelta >> 1) as i32) ^ -((uvdelta & 1) as i32);
        Some((vdelta, u64::from(pcdelta) * self.quantum, pos + m))
    }
}

impl Iterator for PcValues<'_> {
    type Item = (i32, u64);

    fn next(&mut self) -> Option<(i32, u64)> {
        if self.done || self.steps >= MAX_PCVALUE_STEPS {
            return None;
        }
        self.steps += 1;
        match self.step() {
            Some((vdelta, pcdelta, pos)) => {
                self.first = false;
                self.pos = pos;
                self.value = self.value.wrapping_add(vdelta);
                self.pc = self.pc.saturating_add(pcdelta);
                Some((self.value, self.pc))
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

/// The header's first 8 bytes: the format (by magic), the instruction size quantum
/// and the pointer size.
fn parse_fixed_header(bytes: &[u8]) -> Result<(Format, u8, usize), PclntabError> {
    let magic = read_u32(bytes, 0).ok_or(PclntabError::Truncated)?;
    let format = match magic {
        MAGIC_GO120 => Format::Go120,
        MAGIC_GO118 => Format::Go118,
        MAGIC_GO116 => Format::Go116,
        MAGIC_GO12 => return Err(PclntabError::Unsupported(magic)),
        other => return Err(PclntabError::BadMagic(other)),
    };
    let head = bytes.get(4..8).ok_or(PclntabError::Truncated)?;
    if head[0] != 0 || head[1] != 0 {
        return Err(PclntabError::Malformed("header padding is not zero"));
    }
    let quantum = head[2];
    if !matches!(quantum, 1 | 2 | 4) {
        return Err(PclntabError::Malformed(
            "instruction size quantum is not 1, 2 or 4",
        ));
    }
    let ptr_size = head[3] as usize;
    if ptr_size != 4 && ptr_size != 8 {
        return Err(PclntabError::Malformed("pointer size is neither 4 nor 8"));
    }
    Ok((format, quantum, ptr_size))
}

/// Cheap sanity checks of a functab of `nfunc` entries at `functab`: entries must be
/// sorted at both ends and the first function record must agree with its entry.
fn check_functab(
    bytes: &[u8],
    functab: usize,
    nfunc: usize,
    format: Format,
    ptr_size: usize,
) -> Result<(), PclntabError> {
    let field = ftab_field_size(format, ptr_size);
    let at = |off: Option<usize>| {
        let off = off?;
        match format {
            Format::Go116 => read_ptr(bytes, off, ptr_size),
            Format::Go118 | Format::Go120 => read_u32(bytes, off).map(u64::from),
        }
    };
    let entry = |i: usize| {
        at(i.checked_mul(2 * field)
            .and_then(|o| o.checked_add(functab)))
    };
    let first = entry(0).ok_or(PclntabError::Truncated)?;
    let first_funcoff = at(functab.checked_add(field)).ok_or(PclntabError::Truncated)?;
    let last = entry(nfunc - 1).ok_or(PclntabError::Truncated)?;
    let end = entry(nfunc).ok_or(PclntabError::Truncated)?;
    if first > last || last > end {
        return Err(PclntabError::Malformed("functab is not sorted"));
    }
    let first_func = usize::try_from(first_funcoff)
        .ok()
        .and_then(|o| functab.checked_add(o))
        .filter(|&f| f.saturating_add(format.func_size(ptr_size)) <= bytes.len())
        .ok_or(PclntabError::Malformed("bad funcoff"))?;
    let recorded = match format {
        Format::Go116 => read_ptr(bytes, first_func, ptr_size),
        Format::Go118 | Format::Go120 => read_u32(bytes, first_func).map(u64::from),
    };
    if recorded != Some(first) {
        return Err(PclntabError::Malformed(
            "functab and _func disagree on an entry",
        ));
    }
    Ok(())
}

/// Bytes of one functab field: `u32` (Go 1.18+), pointer-sized in Go 1.16-1.17.
fn ftab_field_size(format: Format, ptr_size: usize) -> usize {
    match format {
        Format::Go116 => ptr_size,
        Format::Go118 | Format::Go120 => 4,
    }
}

/// A pointer-sized little-endian word.
fn read_ptr(b: &[u8], off: usize, ptr_size: usize) -> Option<u64> {
    if ptr_size == 8 {
        read_u64(b, off)
    } else {
        read_u32(b, off).map(u64::from)
    }
}

/// Decodes a uvarint that must fit in 32 bits.
fn uvarint32(b: &[u8]) -> Option<(u32, usize)> {
    let mut v = 0u32;
    for (i, &byte) in b.iter().enumerate().take(5) {
        v |= u32::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn read_u64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny hand-made Go 1.20+ table: two functions at text 0x1000 and
    /// 0x1010, the second with one inlined call.
    fn synthetic() -> (Vec<u8>, Vec<u8>) {
        let mut t = vec![0u8; 72];
        t[0..4].copy_from_slice(&MAGIC_GO120.to_le_bytes());
        t[6] = 1;
        t[7] = 8;
        let put_word = |t: &mut Vec<u8>, i: usize, v: u64| {
            t[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes())
        };
        put_word(&mut t, 0, 2); // nfunc
        put_word(&mut t, 1, 1); // nfiles
        put_word(&mut t, 2, 0x1000); // textStart
        // funcnametab
        let funcnametab = t.len();
        t.extend_from_slice(b"main.a\0main.b\0main.inl\0");
        // cutab: one CU with file 0
        let cutab = t.len();
        t.extend_from_slice(&0u32.to_le_bytes());
        let filetab = t.len();
        t.extend_from_slice(b"/src/x.go\0");
        let pctab = t.len();
        t.push(0); // offset 0 means "no table"
        // file table: value 0 for 0x20 bytes: zigzag(+1)=2, pc 0x20.
        let file_tab = (t.len() - pctab) as u32;
        t.extend_from_slice(&[2, 0x20, 0]);
        // line table for main.b: 10 over [0,4), 20 over [4,8), 11 over [8,0x10)
        let line_tab = (t.len() - pctab) as u32;
        t.extend_from_slice(&[22, 4, 20, 4, 17, 8, 0]);
        // inline index for main.b: -1 over [0,4), 0 over [4,8), -1 after.
        let inl_tab = (t.len() - pctab) as u32;
        t.extend_from_slice(&[0, 4, 2, 4, 1, 8, 0]);
        while !t.len().is_multiple_of(8) {
            t.push(0);
        }
        let functab = t.len();
        let fixed = 44;
        let a_off = 2 * 8 + 4;
        let b_off = a_off + fixed;
        for (entry, off) in [(0u32, a_off as u32), (0x10, b_off as u32)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&off.to_le_bytes());
        }
        t.extend_from_slice(&0x20u32.to_le_bytes());
        let func = |t: &mut Vec<u8>, entry: u32, name: u32, inl: bool| {
            let mut f = vec![0u8; fixed];
            f[0..4].copy_from_slice(&entry.to_le_bytes());
            f[4..8].copy_from_slice(&name.to_le_bytes());
            f[20..24].copy_from_slice(&file_tab.to_le_bytes());
            f[24..28].copy_from_slice(&line_tab.to_le_bytes());
            f[28..32].copy_from_slice(&(if inl { 3u32 } else { 0 }).to_le_bytes());
            f[36..40].copy_from_slice(&9i32.to_le_bytes());
            f[43] = if inl { 4 } else { 0 };
            t.extend_from_slice(&f);
            if inl {
                for v in [0u32, 0, inl_tab, u32::MAX, u32::MAX, u32::MAX, 8] {
                    t.extend_from_slice(&v.to_le_bytes());
                }
            }
        };
        func(&mut t, 0, 0, false);
        func(&mut t, 0x10, 7, true);
        put_word(&mut t, 3, funcnametab as u64);
        put_word(&mut t, 4, cutab as u64);
        put_word(&mut t, 5, filetab as u64);
        put_word(&mut t, 6, pctab as u64);
        put_word(&mut t, 7, functab as u64);
        // go:func.*: 8 bytes of something, then main.b's inline tree.
        let mut gofunc = vec![0xeeu8; 8];
        gofunc.extend_from_slice(&[0, 0, 0, 0]);
        gofunc.extend_from_slice(&14i32.to_le_bytes()); // main.inl
        gofunc.extend_from_slice(&9i32.to_le_bytes()); // parentPc: 0x19 is line 11
        gofunc.extend_from_slice(&30i32.to_le_bytes());
        (t, gofunc)
    }

    /// Check that an inline tree that loops (a call whose parent pc is in itself) is
    /// followed once, and that a stack of such pcs is named with at most
    /// `MAX_SYMBOLIZED_FRAMES` frames (go_frames fuzz target: a 64-pc stack of 64 KiB
    /// names looping 64 deep took 1.6 GB and 6 s to name).
    #[test]
    fn hostile_inlining_is_bounded() {
        use crate::sources::go::symbolize::{MAX_SYMBOLIZED_FRAMES, symbolize_pcs};
        let (t, mut gofunc) = synthetic();
        // main.inl's parent pc: 4, where the inline index names main.inl again.
        gofunc[16..20].copy_from_slice(&4i32.to_le_bytes());
        let mut tab = Pclntab::parse(&t, None).unwrap();
        tab.set_gofunc(0x9000, gofunc);
        let b = tab.find_func(0x1015).unwrap();
        let names: Vec<String> = tab
            .inline_frames(&b, 0x1015)
            .into_iter()
            .map(|f| f.function)
            .collect();
        assert_eq!(names, ["main.inl", "main.b"]);
        let frames = symbolize_pcs(&tab, 0, "/x", &[0x1015; 300]);
        assert_eq!(frames.len(), MAX_SYMBOLIZED_FRAMES);
    }

    /// Check that functions, lines and inlined calls of a hand-made table
    /// resolve as laid out.
    #[test]
    fn synthetic_table() {
        let (t, gofunc) = synthetic();
        let mut tab = Pclntab::parse(&t, None).unwrap();
        assert_eq!(tab.nfunc(), 2);
        assert_eq!(tab.text_start(), 0x1000);
        assert_eq!(tab.text_end(), 0x1020);
        assert!(tab.find_func(0xfff).is_none());
        assert!(tab.find_func(0x1020).is_none());
        let a = tab.find_func(0x100f).unwrap();
        assert_eq!(
            (a.name.as_str(), a.entry, a.end),
            ("main.a", 0x1000, 0x1010)
        );
        let b = tab.find_func(0x1010).unwrap();
        assert_eq!(b.name, "main.b");
        assert_eq!(b.start_line, 9);
        assert_eq!(tab.find_func_by_name("main.b"), Some(0x1010));
        assert_eq!(tab.find_func_by_name("main.inl"), None);
        assert_eq!(
            tab.pc_to_file_line(&b, 0x1010),
            Some(("/src/x.go".into(), 10))
        );
        assert_eq!(
            tab.pc_to_file_line(&b, 0x1015),
            Some(("/src/x.go".into(), 20))
        );
        assert_eq!(
            tab.pc_to_file_line(&b, 0x1019),
            Some(("/src/x.go".into(), 11))
        );
        // Without go:func.*, no expansion.
        assert_eq!(tab.inline_frames(&b, 0x1015).len(), 1);
        assert_eq!(tab.check_gofunc(0, &gofunc, 8), GoFuncCheck::Plausible);
        assert_eq!(
            tab.check_gofunc(0, &gofunc[4..], 8),
            GoFuncCheck::Implausible
        );
        tab.set_gofunc(0x9000, gofunc);
        let frames = tab.inline_frames(&b, 0x1015);
        let want = vec![
            Frame {
                function: "main.inl".into(),
                file: "/src/x.go".into(),
                line: 20,
            },
            Frame {
                function: "main.b".into(),
                file: "/src/x.go".into(),
                line: 11,
            },
        ];
        assert_eq!(frames, want);
        assert_eq!(tab.inline_frames(&b, 0x1011).len(), 1);
        // A hint overrides the header.
        let moved = Pclntab::parse(&t, Some(0x40_0000)).unwrap();
        assert_eq!(moved.find_func(0x40_0010).unwrap().name, "main.b");
    }

    /// The same two functions as [`synthetic`] in the Go 1.16-1.17 format: no
    /// textStart, absolute pointer-sized functab entries and `_func.entry`, funcdata as
    /// absolute pointers (main.b's inline tree at 0x9008, in "go.func.*" at 0x9000).
    fn synthetic_go116() -> (Vec<u8>, Vec<u8>) {
        let mut t = vec![0u8; 64];
        t[0..4].copy_from_slice(&MAGIC_GO116.to_le_bytes());
        t[6] = 1;
        t[7] = 8;
        let put_word = |t: &mut Vec<u8>, i: usize, v: u64| {
            t[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes())
        };
        put_word(&mut t, 0, 2); // nfunc
        put_word(&mut t, 1, 1); // nfiles
        let funcnametab = t.len();
        t.extend_from_slice(b"main.a\0main.b\0main.inl\0");
        let cutab = t.len();
        t.extend_from_slice(&0u32.to_le_bytes());
        let filetab = t.len();
        t.extend_from_slice(b"/src/x.go\0");
        let pctab = t.len();
        t.push(0);
        let file_tab = (t.len() - pctab) as u32;
        t.extend_from_slice(&[2, 0x20, 0]);
        let line_tab = (t.len() - pctab) as u32;
        t.extend_from_slice(&[22, 4, 20, 4, 17, 8, 0]);
        let inl_tab = (t.len() - pctab) as u32;
        t.extend_from_slice(&[0, 4, 2, 4, 1, 8, 0]);
        while !t.len().is_multiple_of(8) {
            t.push(0);
        }
        let functab = t.len();
        let fixed = 44;
        let a_off = 2 * 16 + 8;
        let b_off = a_off + fixed + 4; // main.a's record, padded to 8
        for (entry, off) in [(0x1000u64, a_off as u64), (0x1010, b_off as u64)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&off.to_le_bytes());
        }
        t.extend_from_slice(&0x1020u64.to_le_bytes());
        let func = |t: &mut Vec<u8>, entry: u64, name: u32, inl: bool| {
            let mut f = vec![0u8; fixed];
            f[0..8].copy_from_slice(&entry.to_le_bytes());
            f[8..12].copy_from_slice(&name.to_le_bytes());
            f[24..28].copy_from_slice(&file_tab.to_le_bytes());
            f[28..32].copy_from_slice(&line_tab.to_le_bytes());
            f[32..36].copy_from_slice(&(if inl { 3u32 } else { 0 }).to_le_bytes());
            f[43] = if inl { 4 } else { 0 };
            t.extend_from_slice(&f);
            if inl {
                // pcdata: 3 u32 (12 bytes: 44 + 12 = 56, already 8-aligned), then
                // 4 absolute funcdata pointers, the inline tree's the last.
                for v in [0u32, 0, inl_tab] {
                    t.extend_from_slice(&v.to_le_bytes());
                }
                for v in [0u64, 0, 0, 0x9008] {
                    t.extend_from_slice(&v.to_le_bytes());
                }
            } else {
                t.extend_from_slice(&[0; 4]);
            }
        };
        func(&mut t, 0x1000, 0, false);
        func(&mut t, 0x1010, 7, true);
        put_word(&mut t, 2, funcnametab as u64);
        put_word(&mut t, 3, cutab as u64);
        put_word(&mut t, 4, filetab as u64);
        put_word(&mut t, 5, pctab as u64);
        put_word(&mut t, 6, functab as u64);
        // 0x9000: 8 bytes of something, then main.b's inline tree (20-byte entries:
        // parent i16, funcID u8, pad, file, line, func_ (name offset), parentPc).
        let mut gofunc = vec![0xeeu8; 8];
        gofunc.extend_from_slice(&[0xff, 0xff, 0, 0]);
        gofunc.extend_from_slice(&0i32.to_le_bytes());
        gofunc.extend_from_slice(&20i32.to_le_bytes());
        gofunc.extend_from_slice(&14i32.to_le_bytes()); // main.inl
        gofunc.extend_from_slice(&9i32.to_le_bytes()); // parentPc: 0x1019 is line 11
        (t, gofunc)
    }

    /// Check that a Go 1.16-1.17 table (absolute entries and funcdata) resolves
    /// functions, lines and inlined calls like the Go 1.20 one.
    #[test]
    fn synthetic_go116_table() {
        let (t, gofunc) = synthetic_go116();
        let mut tab = Pclntab::parse(&t, None).unwrap();
        assert!(tab.has_absolute_funcdata());
        assert_eq!(tab.text_start(), 0x1000, "the first entry");
        assert_eq!(tab.header_text_start(), 0);
        assert_eq!(tab.text_end(), 0x1020);
        let b = tab.find_func(0x1012).unwrap();
        assert_eq!(
            (b.name.as_str(), b.entry, b.end),
            ("main.b", 0x1010, 0x1020)
        );
        assert_eq!(tab.find_func(0x100f).unwrap().name, "main.a");
        assert_eq!(tab.find_func_by_name("main.b"), Some(0x1010));
        assert_eq!(
            tab.pc_to_file_line(&b, 0x1015),
            Some(("/src/x.go".into(), 20))
        );
        assert_eq!(tab.first_inline_tree(8), Some(0x9008));
        assert_eq!(tab.check_gofunc(0x9000, &gofunc, 8), GoFuncCheck::Plausible);
        assert_eq!(
            tab.check_gofunc(0x9004, &gofunc[4..], 8),
            GoFuncCheck::Plausible
        );
        assert_eq!(
            tab.check_gofunc(0x9000, &gofunc[4..], 8),
            GoFuncCheck::Implausible
        );
        tab.set_gofunc(0x9000, gofunc);
        let names: Vec<_> = tab
            .inline_frames(&b, 0x1015)
            .into_iter()
            .map(|f| (f.function, f.line))
            .collect();
        assert_eq!(names, [("main.inl".into(), 20), ("main.b".into(), 11)]);
        // An entry base below the first function (moduledata.text) keeps lookups.
        let moved = Pclntab::parse(&t, Some(0x800)).unwrap();
        assert_eq!(moved.text_start(), 0x800);
        assert_eq!(moved.find_func(0x1010).unwrap().name, "main.b");
        // A base past the first function is no base.
        assert_eq!(
            Pclntab::parse(&t, Some(0x1004)).unwrap().text_start(),
            0x1000
        );
        for cut in 0..t.len() {
            if let Ok(tab) = Pclntab::parse(&t[..cut], None) {
                exercise(&tab, &t);
            }
        }
    }

    /// Check that the Go 1.16-1.17 fuzzing seed, read as the fuzz target reads it
    /// (text at 0x401000, the table itself as go:func.* at 0x400000), expands main.b's
    /// inlined call through its absolute funcdata pointer.
    #[test]
    fn go116_fuzz_seed() {
        let seed = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/seeds/pclntab/go1.17-synthetic"
        ))
        .expect("fuzz/seeds/pclntab/go1.17-synthetic");
        let mut tab = Pclntab::parse(&seed, Some(0x40_1000)).unwrap();
        assert_eq!(
            tab.check_gofunc(0x40_0000, &seed, 8),
            GoFuncCheck::Plausible
        );
        tab.set_gofunc(0x40_0000, seed.clone());
        let b = tab.find_func(0x40_1015).unwrap();
        let names: Vec<_> = tab
            .inline_frames(&b, 0x40_1015)
            .into_iter()
            .map(|f| f.function)
            .collect();
        assert_eq!(names, ["main.inl", "main.b"]);
    }

    /// Check that a missing text start is reported when the header has none.
    #[test]
    fn no_text_start() {
        let (mut t, _) = synthetic();
        t[24..32].fill(0);
        assert_eq!(
            Pclntab::parse(&t, None).unwrap_err(),
            PclntabError::NoTextStart
        );
        assert!(Pclntab::parse(&t, Some(0x1000)).is_ok());
    }

    /// Check that every truncation and random corruption of a table gives an
    /// error or a table whose lookups do not panic.
    #[test]
    fn garbage_never_panics() {
        let (t, gofunc) = synthetic();
        for cut in 0..t.len() {
            if let Ok(tab) = Pclntab::parse(&t[..cut], None) {
                exercise(&tab, &gofunc);
            }
        }
        let mut state = 0x9e37_79b9u32;
        let mut rand = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..5000 {
            let mut c = t.clone();
            for _ in 0..1 + rand() % 4 {
                let i = rand() as usize % c.len();
                c[i] = rand() as u8;
            }
            if let Ok(mut tab) = Pclntab::parse(&c, None) {
                let mut g = gofunc.clone();
                let i = rand() as usize % g.len();
                g[i] = rand() as u8;
                tab.set_gofunc(0, g.clone());
                exercise(&tab, &g);
            }
        }
        assert_eq!(
            Pclntab::parse(&[], None).unwrap_err(),
            PclntabError::Truncated
        );
        assert_eq!(
            Pclntab::parse(&[0xfb, 0xff, 0xff, 0xff, 0, 0, 1, 8], None).unwrap_err(),
            PclntabError::Unsupported(0xffff_fffb)
        );
        assert!(matches!(
            Pclntab::parse(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0", None),
            Err(PclntabError::BadMagic(_))
        ));
    }

    fn exercise(tab: &Pclntab, gofunc: &[u8]) {
        let _ = tab.check_gofunc(0, gofunc, 4);
        let _ = tab.func_records_end();
        let _ = tab.find_func_by_name("main.b");
        for pc in (0xff0..0x1030).step_by(3) {
            if let Some(f) = tab.find_func(pc) {
                let _ = tab.pc_to_file_line(&f, pc);
                let _ = tab.inline_frames(&f, pc);
            }
        }
        for f in tab.funcs().take(10) {
            let _ = tab.inline_frames(&f, f.entry);
        }
    }
}
