//! Unwinding a blocked thread's user stack from its saved registers.
//!
//! The walk uses framehop with the DWARF CFI (`.eh_frame` + `.eh_frame_hdr`, or
//! `.debug_frame`) of every executable mapping; where no CFI covers an address (JIT code,
//! stripped or unreadable binaries) framehop follows frame pointers. Most distribution
//! code (Debian's glibc included) is built without frame pointers, so CFI is what makes
//! the stacks of threads blocked in libc complete.
//!
//! Nothing here trusts its input: binaries may be gone, replaced, truncated or hostile, and
//! the stack of a running process may change under us. Every failure only shortens the
//! stack.
//!
//! Unwind tables count against the memory budget's `unwind` share: a binary only root
//! can write is mapped, its tables cost no heap; another's are read, their size checked
//! against the per-binary quota before a byte is read, and the cache evicts the least
//! recently used to stay within the share. A binary whose tables do not fit is unwound
//! by frame pointers, and the processes mapping it say so ([`Degradation::Unwind`]).

use std::{
    collections::HashMap,
    fs::File,
    hash::{Hash, Hasher},
    ops::Range,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
};

use bytes::Bytes;

use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};
use object::{
    Endianness, ReadCache, ReadRef,
    elf::{self, FileHeader64},
    read::elf::{FileHeader, ProgramHeader, SectionHeader},
};

use crate::{
    budget::{
        self, MemoryBudget, MemoryKind, OverBudget,
        degraded::{Cause, Degradation},
    },
    host::{
        binary::{
            BinaryKey, FileIdent, LoadSegment, MAX_HEADER_ENTRIES, elf_build_id, load_bias,
            open_mapped_binary,
        },
        mapped::{MappedFile, may_map},
        memory::{read_kernel_mapping, read_memory},
        procfs::{MemoryMap, map_containing},
    },
};

/// The user registers saved when a thread entered the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UserRegs {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Longest stack returned; deeper stacks are cut (the innermost frames are what matter).
pub const MAX_FRAMES: usize = 128;
/// How far above sp the stack is read: enough for deep stacks with large frames, bounded
/// so that one thread costs at most this much copying.
const STACK_WINDOW: u64 = 256 * 1024;
/// First read of the stack; the window grows by doubling, so a deep walk costs at most
/// log2(STACK_WINDOW / FIRST_STACK_READ) + 1 syscalls.
const FIRST_STACK_READ: u64 = 8 * 1024;
/// Binaries whose unwind info is kept (least recently used beyond that are dropped; the
/// bytes they hold are bounded by the budget's `unwind` share).
const MAX_CACHED_BINARIES: usize = 64;
/// Largest unwind section accepted, mapped or read; real ones are a few MiB even for
/// browsers, so anything bigger is corrupt or hostile.
const MAX_SECTION_BYTES: u64 = 64 << 20;
/// Largest [vdso] image read from a process (it is two pages today).
const MAX_VDSO_BYTES: u64 = 1 << 20;
/// Executable mappings given unwind info per process (real processes have a few hundred
/// at most); beyond that, frame pointers.
const MAX_MODULES: usize = 4096;
/// Return addresses below this are never code (the zero page and low mmap_min_addr).
const MIN_CODE_ADDRESS: u64 = 0x1000;

/// Section bytes shared between the cache and every framehop module built from them: a
/// slice of the mapped file, or bytes read into memory.
type SectionBytes = Bytes;

/// Unwinds user stacks; caches parsed unwind info per binary.
pub struct StackUnwinder {
    binaries: BinaryCache,
    /// The framehop unwinder of the last process walked: all threads of a process are
    /// usually walked one after the other, and its module list and rule cache are reused
    /// as long as the process's executable mappings are unchanged.
    process: Option<ProcessUnwinder>,
    /// Processes whose stacks lost a binary's unwind tables to the budget, and why.
    degraded: Vec<(u32, Degradation)>,
}

impl Default for StackUnwinder {
    fn default() -> Self {
        Self::with_budget(budget::global())
    }
}

impl StackUnwinder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An unwinder whose tables count against `budget`.
    pub fn with_budget(budget: &'static MemoryBudget) -> Self {
        Self {
            binaries: BinaryCache::new(budget),
            process: None,
            degraded: Vec::new(),
        }
    }

    /// Takes the processes whose stacks lost unwind tables to the budget since the last
    /// call, with the reason.
    pub fn take_degraded(&mut self) -> Vec<(u32, Degradation)> {
        std::mem::take(&mut self.degraded)
    }

    /// Frame addresses, innermost first: `regs.ip`, then each caller's return address.
    /// Never fails: an unreadable stack or a binary without unwind info ends the walk.
    pub fn unwind(&mut self, pid: u32, maps: &[MemoryMap], regs: UserRegs) -> Vec<u64> {
        let mut frames = vec![regs.ip];
        if regs.ip == 0 || regs.sp == 0 {
            return frames;
        }
        // framehop is third-party code fed with data another process controls; should it
        // ever panic (e.g. on arithmetic over hostile CFI), keep the frames found so far and
        // drop the state it may have left half-updated.
        let walked = catch_unwind(AssertUnwindSafe(|| {
            self.prepare_process(pid, maps);
            if let Some(process) = self.process.as_mut() {
                process.walk(pid, maps, regs, &mut frames);
            }
        }));
        if walked.is_err() {
            self.process = None;
            self.binaries = BinaryCache::new(self.binaries.budget);
        }
        frames.truncate(MAX_FRAMES);
        frames
    }

    /// Makes `self.process` an unwinder for `pid` with its current executable mappings.
    fn prepare_process(&mut self, pid: u32, maps: &[MemoryMap]) {
        let layout = ExecLayout::of(maps);
        if let Some(process) = &self.process
            && process.pid == pid
            && process.layout == layout
        {
            return;
        }
        self.process = None;
        let mut unwinder = UnwinderX86_64::new();
        // Modules keep their sections alive after the cache drops them: a process mapping
        // thousands of binaries with large unwind tables is bounded here as a whole, by
        // the share.
        let mut held = 0u64;
        let limit = self.binaries.budget.share(MemoryKind::Unwind);
        for map in maps.iter().filter(|m| m.is_executable()).take(MAX_MODULES) {
            match self.module_for(pid, map, limit.saturating_sub(held)) {
                Ok(Some((module, bytes))) => {
                    held += bytes;
                    unwinder.add_module(module);
                }
                Ok(None) => {}
                Err(cause) => {
                    let module = map.path.as_deref().unwrap_or("?").into();
                    self.degraded
                        .push((pid, Degradation::Unwind { module, cause }));
                }
            }
        }
        self.process = Some(ProcessUnwinder {
            pid,
            layout,
            unwinder,
            // A fresh rule cache per module list: framehop tags cached rules with a global
            // 16-bit generation that wraps on a long-running host; a new cache cannot hold
            // rules of an older, wrapped-around generation.
            cache: CacheX86_64::new(),
        });
    }

    /// A framehop module for one executable mapping and the heap bytes it holds, or None
    /// when its binary cannot be read (framehop then uses frame pointers for its
    /// addresses); an error when its tables were left out for the budget (past `room`
    /// bytes of this process's modules, or over the per-binary quota).
    fn module_for(
        &mut self,
        pid: u32,
        map: &MemoryMap,
        room: u64,
    ) -> Result<Option<(Module<SectionBytes>, u64)>, Cause> {
        let info = if map.path.as_deref() == Some("[vdso]") {
            self.vdso_info(pid, map)
        } else {
            open_mapped_binary(pid, map)
                .map(|binary| self.binaries.get_or_load(&binary.file, &binary.ident))
        };
        let Some(info) = info else {
            return Ok(None);
        };
        if let Some(refused) = info.refused {
            return Err(refused.into());
        }
        let bytes = info.heap_bytes;
        if bytes > room {
            return Err(Cause::Memory {
                kind: MemoryKind::Unwind,
                needed: bytes,
                limit: room,
            });
        }
        Ok(info.module_for(map).map(|module| (module, bytes)))
    }

    /// The [vdso] is not a file: its ELF image is read from the process.
    fn vdso_info(&mut self, pid: u32, map: &MemoryMap) -> Option<Arc<BinaryUnwindInfo>> {
        let len = map.end.checked_sub(map.start)?;
        if len == 0 || len > MAX_VDSO_BYTES {
            return None;
        }
        let mut image = vec![0u8; len as usize];
        let n = read_kernel_mapping(pid, map.start, &mut image).ok()?;
        image.truncate(n);
        let key = match elf_build_id(image.as_slice()) {
            Some(id) => BinaryKey::BuildId(id),
            None => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                image.hash(&mut hasher);
                BinaryKey::Memory {
                    len: image.len() as u64,
                    hash: hasher.finish(),
                }
            }
        };
        if let Some(info) = self.binaries.get(&key) {
            return Some(info);
        }
        let quota = |needed| self.binaries.budget.check_item(MemoryKind::Unwind, needed);
        let info = BinaryUnwindInfo::parse(image.as_slice(), quota, |off, size| {
            let start = usize::try_from(off).ok()?;
            let end = start.checked_add(usize::try_from(size).ok()?)?;
            image.get(start..end).map(Bytes::copy_from_slice)
        });
        let info = Arc::new(info.read_into_memory());
        self.binaries.insert(key, info.clone());
        Some(info)
    }
}

/// The executable mappings of a process, as far as unwinding depends on them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ExecLayout(Vec<ExecMapping>);

/// start, end, file offset, device, inode.
type ExecMapping = (u64, u64, u64, (u32, u32), u64);

impl ExecLayout {
    fn of(maps: &[MemoryMap]) -> Self {
        Self(
            maps.iter()
                .filter(|m| m.is_executable())
                .map(|m| (m.start, m.end, m.offset, m.dev, m.inode))
                .collect(),
        )
    }
}

/// A framehop unwinder set up for one process's modules.
struct ProcessUnwinder {
    pid: u32,
    layout: ExecLayout,
    unwinder: UnwinderX86_64<SectionBytes>,
    cache: CacheX86_64,
}

impl ProcessUnwinder {
    /// Appends the callers' return addresses to `frames` (which holds `regs.ip`).
    fn walk(&mut self, pid: u32, maps: &[MemoryMap], regs: UserRegs, frames: &mut Vec<u64>) {
        let mut stack = StackWindow::new(pid, maps, regs.sp);
        let mut read_stack = |addr: u64| stack.read_u64(addr);
        let mut uregs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
        let mut address = FrameAddress::from_instruction_pointer(regs.ip);
        while frames.len() < MAX_FRAMES {
            let sp_before = uregs.sp();
            let return_address = match self.unwinder.unwind_frame(
                address,
                &mut uregs,
                &mut self.cache,
                &mut read_stack,
            ) {
                Ok(Some(ra)) => ra,
                // Ok(None): the outermost frame (CFI says so, or bp is 0); Err: the
                // stack could not be read or the rules led nowhere.
                Ok(None) | Err(_) => break,
            };
            // Each caller's frame lies above its callee's; anything else is a loop or garbage.
            if uregs.sp() <= sp_before || !is_code_address(return_address, maps) {
                break;
            }
            frames.push(return_address);
            address = match FrameAddress::from_return_address(return_address) {
                Some(a) => a,
                None => break,
            };
        }
    }
}

/// The unwinder over one ELF image's unwind sections, mapped by `maps`, and a fake
/// process memory ([`crate::host::memory::fake`]) holding the stack: for the fuzz
/// targets.
#[cfg(feature = "fuzzing")]
pub fn fuzz_unwind(elf: &[u8], maps: &[MemoryMap], regs: UserRegs) -> Vec<u64> {
    let info = BinaryUnwindInfo::parse(
        elf,
        |_| Ok(()),
        |off, size| {
            let start = usize::try_from(off).ok()?;
            let end = start.checked_add(usize::try_from(size).ok()?)?;
            elf.get(start..end).map(Bytes::copy_from_slice)
        },
    );
    let mut unwinder = UnwinderX86_64::new();
    for map in maps.iter().filter(|m| m.is_executable()) {
        if let Some(module) = info.module_for(map) {
            unwinder.add_module(module);
        }
    }
    let pid = crate::host::memory::fake::FAKE_PID;
    let mut process = ProcessUnwinder {
        pid,
        layout: ExecLayout::of(maps),
        unwinder,
        cache: CacheX86_64::new(),
    };
    let mut frames = vec![regs.ip];
    process.walk(pid, maps, regs, &mut frames);
    frames
}

/// The unwind info of an opened file, read as that of a mapped binary is (through the
/// file, section by section), and its framehop module for a mapping of the whole file
/// at `start`, for the fuzz targets: the bytes of unwind sections held, and whether a
/// module was made.
#[cfg(feature = "fuzzing")]
pub fn fuzz_unwind_info_of_file(file: &File, start: u64) -> (usize, bool) {
    let Ok(meta) = file.metadata() else {
        return (0, false);
    };
    let info = BinaryCache::new(budget::global()).get_or_load(file, &FileIdent::of(&meta));
    let map = MemoryMap {
        start,
        end: start.saturating_add(meta.len().max(1)),
        perms: "r-xp".into(),
        offset: 0,
        dev: (0, 0),
        inode: 1,
        path: Some("/fuzz".into()),
    };
    (info.heap_bytes as usize, info.module_for(&map).is_some())
}

/// Whether a return address can be real: the instruction before it (the call) lies in an
/// executable mapping. This ends frame-pointer walks that wander into data.
fn is_code_address(return_address: u64, maps: &[MemoryMap]) -> bool {
    // 1 << 56 bounds user space even with 5-level paging.
    if !(MIN_CODE_ADDRESS..1 << 56).contains(&return_address) {
        return false;
    }
    maps.is_empty() || map_containing(maps, return_address - 1).is_some_and(|m| m.is_executable())
}

/// The stack bytes of one thread from sp upward, read lazily with few syscalls.
struct StackWindow {
    pid: u32,
    /// sp: the lowest address the walk may need (framehop tolerates failing reads below
    /// sp in the first frame).
    lo: u64,
    /// The end of the stack's mapping, or `lo + STACK_WINDOW` if that comes first.
    hi: u64,
    bytes: Vec<u8>,
    /// A read came back short: nothing more can be read.
    exhausted: bool,
}

impl StackWindow {
    fn new(pid: u32, maps: &[MemoryMap], sp: u64) -> Self {
        let limit = sp.saturating_add(STACK_WINDOW);
        // If the maps are stale and sp is in none of them, short reads bound the window.
        let hi = map_containing(maps, sp).map_or(limit, |m| m.end.min(limit));
        Self {
            pid,
            lo: sp,
            hi,
            bytes: Vec::new(),
            exhausted: false,
        }
    }

    fn read_u64(&mut self, addr: u64) -> Result<u64, ()> {
        let end = addr.checked_add(8).ok_or(())?;
        if addr < self.lo || end > self.hi {
            return Err(());
        }
        let need = (end - self.lo) as usize;
        while self.bytes.len() < need {
            self.grow(need)?;
        }
        let at = (addr - self.lo) as usize;
        let word = self.bytes.get(at..at + 8).ok_or(())?;
        Ok(u64::from_le_bytes(word.try_into().map_err(|_| ())?))
    }

    /// Reads more of the window: at least up to `need` bytes, doubling what is held.
    fn grow(&mut self, need: usize) -> Result<(), ()> {
        if self.exhausted {
            return Err(());
        }
        let have = self.bytes.len();
        let max = (self.hi - self.lo) as usize;
        let target = need.max(have * 2).max(FIRST_STACK_READ as usize).min(max);
        if target <= have {
            return Err(());
        }
        self.bytes.resize(target, 0);
        let n = read_memory(self.pid, self.lo + have as u64, &mut self.bytes[have..]).unwrap_or(0);
        self.bytes.truncate(have + n);
        if have + n < target {
            self.exhausted = true;
        }
        if self.bytes.len() >= need {
            Ok(())
        } else {
            Err(())
        }
    }
}

/// A binary's unwind sections and load segments, independent of where it is loaded.
/// Addresses are SVMAs (as stated in the ELF); framehop's base SVMA for ELF is 0.
#[derive(Debug, Default)]
struct BinaryUnwindInfo {
    loads: Vec<LoadSegment>,
    text_svma: Option<Range<u64>>,
    got_svma: Option<Range<u64>>,
    eh_frame: Option<(Range<u64>, SectionBytes)>,
    eh_frame_hdr: Option<(Range<u64>, SectionBytes)>,
    debug_frame: Option<SectionBytes>,
    /// Heap bytes its sections hold (0 when they are slices of the mapped file).
    heap_bytes: u64,
    /// Its tables were not read: they would not fit the budget.
    refused: Option<OverBudget>,
}

/// A binary's unwind sections, where they are in the file: (svma range, offset, size).
#[derive(Default)]
struct SectionPlan {
    eh_frame: Option<(Range<u64>, u64, u64)>,
    eh_frame_hdr: Option<(Range<u64>, u64, u64)>,
    debug_frame: Option<(u64, u64)>,
}

impl SectionPlan {
    fn bytes(&self) -> u64 {
        self.eh_frame.as_ref().map_or(0, |s| s.2)
            + self.eh_frame_hdr.as_ref().map_or(0, |s| s.2)
            + self.debug_frame.map_or(0, |s| s.1)
    }
}

impl BinaryUnwindInfo {
    /// Parses what unwinding needs; whatever is missing or invalid is left out (a binary
    /// that is not a valid x86_64 ELF has no CFI and gets frame-pointer unwinding).
    /// `admit(bytes)` decides, before any is read, whether the sections' `bytes` may be
    /// held; `read_section(offset, size)` then gets each one's bytes (sizes are checked
    /// first).
    fn parse<'a, R: ReadRef<'a>>(
        data: R,
        admit: impl FnOnce(u64) -> Result<(), OverBudget>,
        mut read_section: impl FnMut(u64, u64) -> Option<SectionBytes>,
    ) -> Self {
        let mut info = Self::default();
        let Ok(header) = FileHeader64::<Endianness>::parse(data) else {
            return info;
        };
        let Ok(endian) = header.endian() else {
            return info;
        };
        if header.e_machine(endian) != elf::EM_X86_64 {
            return info;
        }
        let file_len = data.len().unwrap_or(0);

        if header
            .phnum(endian, data)
            .is_ok_and(|n| n <= MAX_HEADER_ENTRIES)
            && let Ok(phdrs) = header.program_headers(endian, data)
        {
            info.loads = phdrs
                .iter()
                .filter(|p| p.p_type(endian) == elf::PT_LOAD)
                .map(|p| LoadSegment {
                    offset: p.p_offset(endian),
                    vaddr: p.p_vaddr(endian),
                    filesz: p.p_filesz(endian),
                    executable: p.p_flags(endian) & elf::PF_X != 0,
                })
                .collect();
        }

        if !header
            .shnum(endian, data)
            .is_ok_and(|n| n <= MAX_HEADER_ENTRIES)
        {
            return info;
        }
        let Ok(sections) = header.sections(endian, data) else {
            return info;
        };
        let plan = plan_sections(&sections, endian, data, file_len);
        if let Err(refused) = admit(plan.bytes()) {
            info.refused = Some(refused);
            return info;
        }
        let svma = |name: &[u8]| {
            let (_, s) = sections.section_by_name(endian, name)?;
            let start = s.sh_addr(endian);
            Some(start..start.checked_add(s.sh_size(endian))?)
        };
        info.text_svma = svma(b".text");
        info.got_svma = svma(b".got");
        let mut read = |(offset, size): (u64, u64)| read_section(offset, size);
        info.eh_frame = plan
            .eh_frame
            .and_then(|(svma, off, size)| Some((svma, read((off, size))?)));
        info.eh_frame_hdr = plan
            .eh_frame_hdr
            .and_then(|(svma, off, size)| Some((svma, read((off, size))?)));
        if info.eh_frame.is_none() {
            info.debug_frame = plan.debug_frame.and_then(&mut read);
        }
        // The index is useless without the table it indexes.
        if info.eh_frame.is_none() {
            info.eh_frame_hdr = None;
        }
        info
    }

    /// Bytes its sections span (mapped or read).
    fn section_bytes(&self) -> u64 {
        (self.eh_frame.as_ref().map_or(0, |(_, b)| b.len())
            + self.eh_frame_hdr.as_ref().map_or(0, |(_, b)| b.len())
            + self.debug_frame.as_ref().map_or(0, |b| b.len())) as u64
    }

    /// The same, its sections read into memory (counted against the budget).
    fn read_into_memory(mut self) -> Self {
        self.heap_bytes = self.section_bytes();
        self
    }

    /// A framehop module for one executable mapping of this binary. framehop needs
    /// addresses relative to the bias to fit in 32 bits; other mappings get no module.
    fn module_for(&self, map: &MemoryMap) -> Option<Module<SectionBytes>> {
        let bias = load_bias(&self.loads, map)?;
        if map.start < bias || map.end - bias > u64::from(u32::MAX) {
            return None;
        }
        let section_info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text_svma.clone(),
            got_svma: self.got_svma.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|(r, _)| r.clone()),
            eh_frame: self.eh_frame.as_ref().map(|(_, b)| b.clone()),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|(_, b)| b.clone()),
            debug_frame: self.debug_frame.clone(),
            ..ExplicitModuleSectionInfo::default()
        };
        let name = map.path.clone().unwrap_or_default();
        Some(Module::new(name, map.start..map.end, bias, section_info))
    }
}

/// Where a binary's unwind sections are, from its section headers: compressed ones,
/// empty ones and ones past the end of the file or over [`MAX_SECTION_BYTES`] are left
/// out (frame pointers will do).
fn plan_sections<'a, R: ReadRef<'a>>(
    sections: &object::read::elf::SectionTable<'a, FileHeader64<Endianness>, R>,
    endian: Endianness,
    data: R,
    file_len: u64,
) -> SectionPlan {
    let _ = data;
    let place = |name: &[u8]| {
        let (_, s) = sections.section_by_name(endian, name)?;
        if s.sh_flags(endian) & u64::from(elf::SHF_COMPRESSED) != 0 {
            return None; // would need decompression; frame pointers will do
        }
        let (offset, size) = s.file_range(endian)?;
        if size == 0 || size > MAX_SECTION_BYTES || offset.checked_add(size)? > file_len {
            return None;
        }
        let start = s.sh_addr(endian);
        Some((start..start.checked_add(s.sh_size(endian))?, offset, size))
    };
    let eh_frame = place(b".eh_frame");
    SectionPlan {
        eh_frame_hdr: eh_frame.as_ref().and_then(|_| place(b".eh_frame_hdr")),
        debug_frame: if eh_frame.is_none() {
            place(b".debug_frame").map(|(_, off, size)| (off, size))
        } else {
            None
        },
        eh_frame,
    }
}

/// Parsed unwind info per binary, least recently used dropped beyond the bounds.
struct BinaryCache {
    entries: HashMap<BinaryKey, CachedBinary>,
    /// Files already identified: saves re-reading the build id of a file seen before.
    aliases: HashMap<FileIdent, BinaryKey>,
    /// Heap bytes the entries hold, charged to the budget's `unwind` share.
    held_bytes: u64,
    tick: u64,
    budget: &'static MemoryBudget,
}

impl Drop for BinaryCache {
    fn drop(&mut self) {
        self.budget.release(MemoryKind::Unwind, self.held_bytes);
    }
}

struct CachedBinary {
    info: Arc<BinaryUnwindInfo>,
    last_used: u64,
}

impl BinaryCache {
    fn new(budget: &'static MemoryBudget) -> Self {
        Self {
            entries: HashMap::new(),
            aliases: HashMap::new(),
            held_bytes: 0,
            tick: 0,
            budget,
        }
    }

    fn get(&mut self, key: &BinaryKey) -> Option<Arc<BinaryUnwindInfo>> {
        self.tick += 1;
        let entry = self.entries.get_mut(key)?;
        entry.last_used = self.tick;
        Some(entry.info.clone())
    }

    /// The unwind info of an opened file: cached by build id (or identity), parsed on a
    /// miss. A file that cannot be parsed is cached too, with no CFI, so that garbage is
    /// not parsed again for every process; and so is one whose tables were refused for
    /// the budget, so that they are not read again (and evicted at once) either.
    fn get_or_load(&mut self, file: &File, ident: &FileIdent) -> Arc<BinaryUnwindInfo> {
        if let Some(key) = self.aliases.get(ident).cloned()
            && let Some(info) = self.get(&key)
        {
            return info;
        }
        let cache = ReadCache::new(file);
        let key = match elf_build_id(&cache) {
            Some(id) => BinaryKey::BuildId(id),
            None => BinaryKey::File(*ident),
        };
        if self.aliases.len() >= 4 * MAX_CACHED_BINARIES {
            self.aliases.clear();
        }
        self.aliases.insert(*ident, key.clone());
        if let Some(info) = self.get(&key) {
            return info;
        }
        let info = Arc::new(self.parse(file, ident, &cache));
        self.insert(key, info.clone());
        info
    }

    /// Parses an opened file's unwind info: a file only root can write is mapped, its
    /// sections slices of the mapping; another's sections are read, if they fit the
    /// per-binary quota.
    fn parse(&self, file: &File, ident: &FileIdent, cache: &ReadCache<&File>) -> BinaryUnwindInfo {
        let mapped = may_map(file)
            .then(|| MappedFile::map(file, ident.size))
            .flatten()
            .map(MappedFile::into_bytes);
        if let Some(image) = mapped {
            return BinaryUnwindInfo::parse(
                &image[..],
                |_| Ok(()),
                |offset, size| {
                    let start = usize::try_from(offset).ok()?;
                    let end = start.checked_add(usize::try_from(size).ok()?)?;
                    (end <= image.len()).then(|| image.slice(start..end))
                },
            );
        }
        let quota = |needed| self.budget.check_item(MemoryKind::Unwind, needed);
        let info = BinaryUnwindInfo::parse(cache, quota, |offset, size| {
            read_exact_at(file, offset, size)
        })
        .read_into_memory();
        if info.refused.is_some() {
            self.budget.refused(MemoryKind::Unwind);
        }
        info
    }

    /// Caches `info`, evicting the least recently used until its heap bytes fit the
    /// share (an entry over the per-binary quota was refused before it was read).
    fn insert(&mut self, key: BinaryKey, info: Arc<BinaryUnwindInfo>) {
        self.tick += 1;
        if let Some(old) = self.entries.remove(&key) {
            self.held_bytes -= old.info.heap_bytes;
            self.budget.release(MemoryKind::Unwind, old.info.heap_bytes);
        }
        let bytes = info.heap_bytes;
        while self.entries.len() >= MAX_CACHED_BINARIES
            || (self.budget.shortfall(MemoryKind::Unwind, bytes) > 0 && !self.entries.is_empty())
        {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.held_bytes -= old.info.heap_bytes;
                self.budget.evicted(MemoryKind::Unwind, old.info.heap_bytes);
            }
        }
        self.held_bytes += bytes;
        self.budget.charge(MemoryKind::Unwind, bytes);
        let entry = CachedBinary {
            info,
            last_used: self.tick,
        };
        self.entries.insert(key, entry);
    }
}

/// Reads `size` bytes at `offset` of a file, with a fallible allocation (the size was
/// checked against the file length and the section cap already).
fn read_exact_at(file: &File, offset: u64, size: u64) -> Option<SectionBytes> {
    use std::os::unix::fs::FileExt;
    let size = usize::try_from(size).ok()?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(size).ok()?;
    buf.resize(size, 0);
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf.into())
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        path::PathBuf,
        sync::{
            Mutex,
            atomic::{AtomicU64, Ordering},
            mpsc,
        },
        time::{Duration, Instant},
    };

    use super::*;
    use crate::{host::procfs::read_maps, stacks::symbolize::StackSymbolizer};

    /// Check that the mapping lookup (a binary search over the sorted maps, run per
    /// frame) finds the mapping holding an address, and none in gaps or past the end,
    /// over the most mappings a process may have.
    #[test]
    fn mapping_lookup_by_binary_search() {
        let maps: Vec<MemoryMap> = (0..65_530u64)
            .map(|i| MemoryMap {
                start: 0x10_0000 + i * 0x2000,
                end: 0x10_1000 + i * 0x2000,
                perms: if i % 2 == 0 { "r-xp" } else { "rw-p" }.into(),
                offset: 0,
                dev: (0, 0),
                inode: 0,
                path: None,
            })
            .collect();
        assert_eq!(
            map_containing(&maps, 0x10_0000).map(|m| m.start),
            Some(0x10_0000)
        );
        assert_eq!(
            map_containing(&maps, 0x10_0fff).map(|m| m.start),
            Some(0x10_0000)
        );
        assert!(map_containing(&maps, 0x10_1000).is_none(), "a gap");
        assert!(
            map_containing(&maps, 0xfff).is_none(),
            "below every mapping"
        );
        assert!(
            map_containing(&maps, u64::MAX).is_none(),
            "past every mapping"
        );
        let last = maps.last().unwrap();
        assert_eq!(
            map_containing(&maps, last.end - 1).map(|m| m.start),
            Some(last.start)
        );
        assert!(is_code_address(0x10_0001 + 0x4000, &maps));
        assert!(
            !is_code_address(0x10_0001 + 0x2000, &maps),
            "not executable"
        );
    }

    /// Blocks in `recv` until the sender is dropped; a distinctive name to find in the
    /// symbolized stack.
    #[inline(never)]
    fn leakscope_test_blocked_in_recv(rx: &mpsc::Receiver<()>) {
        let _ = rx.recv();
        std::hint::black_box(());
    }

    /// The saved sp and pc of a thread blocked in a syscall, from /proc/self/task/TID/syscall
    /// (`nr arg1..arg6 sp pc`); None while it is running.
    fn blocked_regs(tid: i32) -> Option<(u64, u64, u64)> {
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 9 {
            return None;
        }
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        Some((fields[0].parse().ok()?, hex(fields[7])?, hex(fields[8])?))
    }

    /// The rbp of a thread at the moment a signal interrupted it, and its rsp then (to
    /// check it is the same frame). /proc/TID/syscall has no rbp, and Rust's std is built
    /// with frame pointers (its CFI computes the CFA from rbp), so walking past std needs
    /// the real rbp, as leakscope's kernel program reports it.
    static SIGNALLED_RBP: AtomicU64 = AtomicU64::new(0);
    static SIGNALLED_RSP: AtomicU64 = AtomicU64::new(0);

    extern "C" fn record_rbp(_: libc::c_int, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: with SA_SIGINFO the third argument is the interrupted ucontext.
        let gregs = unsafe { &(*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        SIGNALLED_RSP.store(gregs[libc::REG_RSP as usize] as u64, Ordering::SeqCst);
        SIGNALLED_RBP.store(gregs[libc::REG_RBP as usize] as u64, Ordering::SeqCst);
    }

    /// Interrupts the blocked thread once to learn its rbp; SA_RESTART puts it back into
    /// the same futex wait with the same registers.
    fn rbp_of_blocked_thread(tid: i32, sp: u64) -> Option<u64> {
        let sig = libc::SIGRTMIN() + 7;
        // SAFETY: installs a handler that only stores to atomics, for a realtime signal
        // nothing else in the test process uses.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = record_rbp as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
                return None;
            }
            if libc::tgkill(libc::getpid(), tid, sig) != 0 {
                return None;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while SIGNALLED_RSP.load(Ordering::SeqCst) == 0 {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (SIGNALLED_RSP.load(Ordering::SeqCst) == sp).then(|| SIGNALLED_RBP.load(Ordering::SeqCst))
    }

    #[test]
    fn unwinds_a_blocked_thread_through_libc_with_dwarf() {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (block_tx, block_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            leakscope_test_blocked_in_recv(&block_rx);
        });
        let tid = tid_rx.recv().unwrap();

        // Wait until the thread sleeps in futex(2) (202; 219 is restart_syscall).
        let wait_blocked = || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some((202 | 219, sp, pc)) = blocked_regs(tid) {
                    break (sp, pc);
                }
                assert!(Instant::now() < deadline, "thread never blocked");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let (sp, pc) = wait_blocked();

        let pid = std::process::id();
        let maps = read_maps(pid).unwrap();
        let mut unwinder = StackUnwinder::new();
        let mut symbolizer = StackSymbolizer::new();
        let names = |symbolizer: &mut StackSymbolizer, addrs: &[u64]| -> Vec<String> {
            let frames = symbolizer.symbolize(pid, &maps, addrs);
            frames
                .into_iter()
                .map(|f| f.function.unwrap_or_else(|| "?".into()))
                .collect()
        };

        // Without rbp (as the brief /proc file gives it): glibc's syscall wrapper, which
        // has no frame pointer, is unwound by its CFI into std's futex wait.
        let no_bp = unwinder.unwind(pid, &maps, UserRegs { ip: pc, sp, bp: 0 });
        let no_bp_names = names(&mut symbolizer, &no_bp);
        assert_eq!(no_bp[0], pc);
        assert!(no_bp.len() >= 2, "stack: {no_bp_names:#?}");
        assert!(
            no_bp_names[0].contains("syscall"),
            "stack: {no_bp_names:#?}"
        );
        assert!(
            maps.iter().any(|m| m.contains(no_bp[1] - 1)
                && m.path.as_deref().is_some_and(|p| p.contains("tracer_user"))),
            "the libc frame's caller is in this test binary: {no_bp_names:#?}"
        );

        // With the thread's real rbp: through std (frame-pointer CFI) to our function and
        // on to the thread's start.
        let bp = rbp_of_blocked_thread(tid, sp).expect("signal handler saw the blocked frame");
        let (sp2, pc2) = wait_blocked();
        assert_eq!(sp2, sp, "the restarted wait is the same frame");
        let addrs = unwinder.unwind(pid, &maps, UserRegs { ip: pc2, sp, bp });
        let frame_names = names(&mut symbolizer, &addrs);
        // The same process again reuses the prepared unwinder and gives the same stack.
        let again = unwinder.unwind(pid, &maps, UserRegs { ip: pc2, sp, bp });

        drop(block_tx);
        thread.join().unwrap();

        let ours = frame_names
            .iter()
            .position(|n| n.contains("leakscope_test_blocked_in_recv"));
        let ours = ours.unwrap_or_else(|| panic!("stack: {frame_names:#?}"));
        assert!(
            addrs.len() > ours + 2,
            "walk went on past our function: {frame_names:#?}"
        );
        assert_eq!(again, addrs);
        assert!(
            frame_names[..ours].iter().any(|n| n.contains("recv")),
            "{frame_names:#?}"
        );
    }

    #[test]
    fn unwinds_another_process_blocked_in_libc() {
        // A C program of the distribution (no frame pointers, stripped): every frame is
        // unwound by CFI, the binaries are opened through /proc/PID/map_files.
        // coreutils' sleep is on every machine this runs on; without it the test fails
        // rather than passing untested.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("start sleep(1)");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let regs = loop {
            let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
            let f: Vec<&str> = text.split_whitespace().collect();
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            // clock_nanosleep (230) or nanosleep (35), after the dynamic loader is done.
            if f.len() == 9 && (f[0] == "230" || f[0] == "35") {
                break UserRegs {
                    ip: hex(f[8]).unwrap(),
                    sp: hex(f[7]).unwrap(),
                    bp: 0,
                };
            }
            assert!(Instant::now() < deadline, "sleep never blocked: {text}");
            std::thread::sleep(Duration::from_millis(5));
        };
        let maps = read_maps(pid).unwrap();
        let addrs = StackUnwinder::new().unwind(pid, &maps, regs);
        let frames = StackSymbolizer::new().symbolize(pid, &maps, &addrs);
        let _ = child.kill();
        let _ = child.wait();

        let modules: Vec<&str> = frames.iter().filter_map(|f| f.module.as_deref()).collect();
        let names: Vec<&str> = frames
            .iter()
            .filter_map(|f| f.function.as_deref())
            .collect();
        assert!(modules.iter().any(|m| m.ends_with("/sleep")), "{frames:#?}");
        assert!(
            names.iter().any(|n| n.contains("__libc_start")),
            "{frames:#?}"
        );
    }

    /// A temp file that is removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn with(name: &str, bytes: &[u8]) -> Self {
            static NEXT: Mutex<u32> = Mutex::new(0);
            let n = {
                let mut next = NEXT.lock().unwrap();
                *next += 1;
                *next
            };
            let path =
                std::env::temp_dir().join(format!("leakscope-{}-{n}-{name}", std::process::id()));
            std::fs::File::create(&path)
                .unwrap()
                .write_all(bytes)
                .unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Pseudo-random bytes (xorshift), so the test needs no extra crate.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn load(bytes: &[u8]) -> Arc<BinaryUnwindInfo> {
        let tmp = TempFile::with("elf", bytes);
        let file = File::open(&tmp.0).unwrap();
        let ident = FileIdent::of(&file.metadata().unwrap());
        BinaryCache::new(budget::global()).get_or_load(&file, &ident)
    }

    #[test]
    fn corrupt_binaries_yield_no_cfi_and_no_panic() {
        let own = std::fs::read("/proc/self/exe").unwrap();
        // The real binary has CFI: the loader works at all.
        let real = load(&own);
        assert!(real.eh_frame.is_some() && real.eh_frame_hdr.is_some() && !real.loads.is_empty());

        for (i, bytes) in [
            Vec::new(),
            noise(100_000, 1),
            own[..64].to_vec(),
            own[..own.len() / 3].to_vec(),
            own[..own.len() - 1].to_vec(),
        ]
        .iter()
        .enumerate()
        {
            let info = load(bytes);
            if i < 3 {
                assert!(info.eh_frame.is_none() && info.debug_frame.is_none());
            }
        }

        // A valid header with hostile tables: huge counts, offsets past the end, and
        // every section claiming to be enormous.
        let mut hostile = own[..own.len().min(1 << 20)].to_vec();
        let shoff = u64::from_le_bytes(own[0x28..0x30].try_into().unwrap()) as usize;
        let shnum = u16::from_le_bytes(own[0x3c..0x3e].try_into().unwrap()) as usize;
        if shoff + shnum * 64 <= own.len() {
            // Keep the section headers but make each section 2^62 bytes at offset 2^40.
            let mut tail = own[shoff..shoff + shnum * 64].to_vec();
            for sh in tail.chunks_mut(64) {
                sh[0x18..0x20].copy_from_slice(&(1u64 << 40).to_le_bytes());
                sh[0x20..0x28].copy_from_slice(&(1u64 << 62).to_le_bytes());
            }
            let at = hostile.len() as u64;
            hostile.extend_from_slice(&tail);
            hostile[0x28..0x30].copy_from_slice(&at.to_le_bytes());
        }
        let info = load(&hostile);
        assert!(info.eh_frame.is_none());
        hostile[0x3c..0x3e].copy_from_slice(&u16::MAX.to_le_bytes()); // e_shnum
        hostile[0x38..0x3a].copy_from_slice(&0xfffeu16.to_le_bytes()); // e_phnum
        hostile[0x20..0x28].copy_from_slice(&(u64::MAX - 8).to_le_bytes()); // e_phoff
        let _ = load(&hostile);

        // Random noise after a valid ELF header.
        let mut noisy = own[..64].to_vec();
        noisy.extend(noise(200_000, 7));
        let _ = load(&noisy);
    }

    #[test]
    fn same_build_id_is_parsed_once() {
        // Another copy of the same binary (as in another container's image): another
        // inode, the same build id, one parse.
        let own = std::fs::read("/proc/self/exe").unwrap();
        assert!(
            elf_build_id(own.as_slice()).is_some(),
            "rustc links with --build-id"
        );
        let (a, b) = (
            TempFile::with("copy-a", &own),
            TempFile::with("copy-b", &own),
        );
        let mut cache = BinaryCache::new(budget::global());
        let mut load = |path: &PathBuf| {
            let file = File::open(path).unwrap();
            let ident = FileIdent::of(&file.metadata().unwrap());
            cache.get_or_load(&file, &ident)
        };
        let (first, second) = (load(&a.0), load(&b.0));
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.aliases.len(), 2);
    }

    #[test]
    fn garbage_mapped_as_code_does_not_panic() {
        // Map a garbage file executable in this process and walk "through" it.
        let tmp = TempFile::with("garbage", &noise(3 * 4096, 3));
        let file = File::open(&tmp.0).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh private read-only mapping of our own temp file, unmapped below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                3 * 4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            base,
            libc::MAP_FAILED,
            "cannot map {} executable (a noexec target directory?): {}",
            tmp.0.display(),
            std::io::Error::last_os_error()
        );
        let code = base as u64;
        let stack: Vec<u64> = vec![code + 0x20, code + 0x40, 0, 0, code + 0x60, 0];
        let pid = std::process::id();
        let maps = read_maps(pid).unwrap();
        assert!(maps.iter().any(|m| m.contains(code) && m.is_executable()));
        let sp = stack.as_ptr() as u64;
        let addrs = StackUnwinder::new().unwind(
            pid,
            &maps,
            UserRegs {
                ip: code + 0x10,
                sp,
                bp: sp + 16,
            },
        );
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(base, 3 * 4096) };
        assert_eq!(addrs[0], code + 0x10);
        assert!(addrs.len() <= MAX_FRAMES);
    }

    #[test]
    fn frame_pointer_walk_on_a_synthetic_stack() {
        // Anonymous executable memory has no CFI, like JIT code: only frame pointers.
        // SAFETY: a fresh anonymous mapping, unmapped below; nothing executes in it.
        let code = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(code, libc::MAP_FAILED);
        let code = code as u64;
        let (ip, ra1, ra2, ra3) = (code + 0x10, code + 0x110, code + 0x210, code + 0x310);

        // Three frames: [saved bp, return address] records linked through bp.
        let mut stack = vec![0u64; 16];
        let at = |i: usize, s: &Vec<u64>| s.as_ptr() as u64 + 8 * i as u64;
        stack[2] = at(6, &stack);
        stack[3] = ra1;
        stack[6] = at(10, &stack);
        stack[7] = ra2;
        stack[10] = 0; // the outermost frame: bp 0 ends the walk
        stack[11] = ra3;
        let sp = at(0, &stack);
        let bp = at(2, &stack);

        let pid = std::process::id();
        let maps = read_maps(pid).unwrap();
        let mut unwinder = StackUnwinder::new();
        let addrs = unwinder.unwind(pid, &maps, UserRegs { ip, sp, bp });
        assert_eq!(addrs, vec![ip, ra1, ra2, ra3]);

        // A frame-pointer loop stops instead of spinning to the frame cap.
        stack[6] = at(2, &stack);
        let looped = unwinder.unwind(pid, &maps, UserRegs { ip, sp, bp });
        assert_eq!(looped, vec![ip, ra1, ra2]);

        // A return address that is not code ends the walk.
        stack[6] = at(10, &stack);
        stack[7] = 0x1234_5678;
        assert_eq!(
            unwinder.unwind(pid, &maps, UserRegs { ip, sp, bp }),
            vec![ip, ra1]
        );

        // An unreadable stack gives just the ip.
        assert_eq!(
            unwinder.unwind(
                pid,
                &maps,
                UserRegs {
                    ip,
                    sp: 0x10,
                    bp: 0x20
                }
            ),
            vec![ip]
        );

        // SAFETY: unmapping the page mapped above.
        unsafe { libc::munmap(code as *mut libc::c_void, 4096) };
    }

    #[test]
    fn vdso_is_read_from_memory() {
        let pid = std::process::id();
        let maps = read_maps(pid).unwrap();
        let vdso = maps
            .iter()
            .find(|m| m.path.as_deref() == Some("[vdso]"))
            .expect("this process has a vdso (a kernel booted with vdso=0 cannot run this test)");
        let mut unwinder = StackUnwinder::new();
        let info = unwinder.vdso_info(pid, vdso).expect("vdso image");
        assert!(info.eh_frame.is_some(), "the x86_64 vdso has CFI");
        assert_eq!(load_bias(&info.loads, vdso), Some(vdso.start));
        assert!(info.module_for(vdso).is_some());
        // Parsed once: the second process-level lookup is a cache hit.
        let again = unwinder.vdso_info(pid, vdso).unwrap();
        assert!(Arc::ptr_eq(&info, &again));
    }
}
