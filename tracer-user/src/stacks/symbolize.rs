//! Naming stack frames: function, file, line (blazesym), cached per binary.
//!
//! Addresses are turned into file offsets with the process's maps and symbolized against
//! the ELF file itself (`Source::Elf` + `Input::FileOffset`), so the result depends only
//! on the binary, not on where it was loaded: results are cached per (binary, offset) and
//! shared by every process that maps the same binary.
//!
//! What blazesym keeps of a binary counts against the memory budget's `symbols` share:
//! a sealed copy of the parts of a file others can write, and the heap its parsed
//! symbols and debug info take (measured around each call by the counting allocator).
//! Each binary is planned from its section headers before anything is read: debug info
//! over the per-binary quota is not read (frames get function names from the symbol
//! table, no file and line), a binary whose symbol tables alone do not fit is not held
//! (frames keep their addresses), and a binary whose naming takes more than
//! [`SYMBOLIZE_CPU`] of CPU is named from its symbol table only from then on. The least
//! recently used binaries are evicted to stay within the share. Each process whose
//! frames lost something this way says so ([`Degradation`]).

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    sync::Arc,
};

use blazesym::symbolize::{
    Input, Reason, Symbolized, Symbolizer,
    evict::{self, Evict},
    source::{Elf, Source},
};

use crate::{
    budget::{
        self, MemoryBudget, MemoryKind,
        alloc::net_allocated,
        cpu::{self, SYMBOLIZE_CPU},
        degraded::{Cause, Degradation},
    },
    host::{
        binary::{
            BinaryKey, FileIdent, HeldBinary, HoldRefused, SymbolSections, open_mapped_binary,
            read_build_id,
        },
        mapped::may_map,
        procfs::{MemoryMap, map_containing},
    },
    isolate::{self, Step},
    model::{Frame, frame_name},
};

/// Distinct files blazesym may hold open (and mapped, with parsed debug info) at once;
/// the least recently used is evicted beyond that, which bounds file descriptors on a
/// long-running host. Our own result cache survives.
const MAX_OPEN_BINARIES: usize = 32;
/// Symbolized (binary, offset) pairs kept (per generation of the two-generation cache).
const MAX_CACHED_SYMBOLS: usize = 64 * 1024;
/// Mappings (per process) whose binary has been identified.
const MAX_CACHED_MAPPINGS: usize = 16 * 1024;
/// Bytes of one cached answer besides its names (key, entry, map overhead).
const SYMBOL_ENTRY_BYTES: usize = 96;

/// What is known about one code address of a binary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SymInfo {
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
}

impl SymInfo {
    fn bytes(&self) -> usize {
        SYMBOL_ENTRY_BYTES
            + self.function.as_ref().map_or(0, String::capacity)
            + self.file.as_ref().map_or(0, String::capacity)
    }
}

/// A binary as the symbolizer uses it: its cache key and identity.
#[derive(Debug)]
struct BinaryRef {
    key: BinaryKey,
    ident: FileIdent,
}

/// The cache misses of one stack in one binary: the binary, one address in it (to find
/// its mapping again if it must be reopened), and (frame index, file offset) pairs.
type Pending = (Arc<BinaryRef>, u64, Vec<(usize, u64)>);

/// One mapping of one process, as far as identifying its binary depends on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct MappingKey {
    pid: u32,
    start: u64,
    end: u64,
    offset: u64,
    dev: (u32, u32),
    inode: u64,
}

/// How a binary is named, decided once from its section headers (and its cost).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct BinaryPlan {
    /// Whether its debug info is read.
    debug: bool,
    /// Whether it is read at all.
    symbols: bool,
    /// Why it is named less well than it could be.
    cut: Option<Cause>,
}

/// A binary blazesym holds.
struct HeldEntry {
    held: HeldBinary,
    /// The path blazesym knows it by (`/proc/self/fd/N`).
    path: PathBuf,
    /// Bytes charged to the budget for it: its copy and the heap blazesym keeps.
    bytes: u64,
    last_used: u64,
}

/// Names stack frames; keeps one blazesym symbolizer and caches results per binary.
pub struct StackSymbolizer {
    symbolizer: Symbolizer,
    /// Files given to `symbolizer`, held open (or copied) for it, by (dev, inode).
    held: HashMap<(u64, u64), HeldEntry>,
    mappings: TwoGenCache<MappingKey, Option<Arc<BinaryRef>>>,
    /// Build ids of files already read, to not re-read the notes for every process.
    build_ids: TwoGenCache<FileIdent, BinaryKey>,
    /// How each binary is named.
    plans: TwoGenCache<FileIdent, BinaryPlan>,
    symbols: TwoGenCache<(BinaryKey, u64), SymInfo>,
    budget: &'static MemoryBudget,
    tick: u64,
    /// Processes whose frames lost names to a budget, and why (taken by the thread
    /// source after each scan).
    degraded: Vec<(u32, Degradation)>,
    /// (pid, file) pairs already in `degraded`.
    noted: HashSet<(u32, (u64, u64))>,
}

impl Default for StackSymbolizer {
    fn default() -> Self {
        Self::with_budget(budget::global())
    }
}

fn new_symbolizer() -> Symbolizer {
    Symbolizer::builder()
        .enable_code_info(true)
        // With inlined functions resolved, a symbol's code info is the line in the
        // function that owns the frame (the call site of what was inlined there), so the
        // reported function and line always belong together.
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .enable_auto_reload(true)
        .build()
}

impl StackSymbolizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A symbolizer whose binaries and names count against `budget`.
    pub fn with_budget(budget: &'static MemoryBudget) -> Self {
        // The answers cached, in bytes: a quarter of the sites' share, half per
        // generation.
        let symbol_bytes = (budget.share(MemoryKind::Sites) / 8) as usize;
        Self {
            symbolizer: new_symbolizer(),
            held: HashMap::new(),
            mappings: TwoGenCache::new(MAX_CACHED_MAPPINGS),
            build_ids: TwoGenCache::new(MAX_CACHED_MAPPINGS),
            plans: TwoGenCache::new(MAX_CACHED_MAPPINGS),
            symbols: TwoGenCache::new(MAX_CACHED_SYMBOLS).weighed(
                symbol_bytes,
                budget,
                MemoryKind::Sites,
            ),
            budget,
            tick: 0,
            degraded: Vec::new(),
            noted: HashSet::new(),
        }
    }

    /// Takes the processes whose frames lost names to a budget since the last call.
    pub fn take_degraded(&mut self) -> Vec<(u32, Degradation)> {
        self.noted.clear();
        std::mem::take(&mut self.degraded)
    }

    /// Names every address of one stack (innermost first, as `StackUnwinder` returns).
    /// Never fails: what cannot be named keeps only its address.
    pub fn symbolize(&mut self, pid: u32, maps: &[MemoryMap], addrs: &[u64]) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(addrs.len());
        // Cache misses, grouped by binary: one blazesym call per binary.
        let mut pending: Vec<Pending> = Vec::new();
        for (i, &address) in addrs.iter().enumerate() {
            // A return address points after the call; the call is what the frame is in.
            let lookup = if i == 0 {
                address
            } else {
                address.saturating_sub(1)
            };
            let map = map_containing(maps, lookup);
            frames.push(Frame {
                address,
                module: map.and_then(|m| m.path.clone()),
                ..Frame::default()
            });
            let Some(map) = map else { continue };
            let Some(binary) = self.binary_for(pid, map) else {
                continue;
            };
            let offset = lookup - map.start + map.offset;
            match self.symbols.get(&(binary.key.clone(), offset)) {
                Some(info) => apply(&mut frames[i], info),
                None => match pending.iter_mut().find(|(b, _, _)| b.key == binary.key) {
                    Some((_, _, items)) => items.push((i, offset)),
                    None => pending.push((binary, lookup, vec![(i, offset)])),
                },
            }
        }
        for (binary, addr, items) in pending {
            let offsets: Vec<u64> = items.iter().map(|&(_, offset)| offset).collect();
            let map = map_containing(maps, addr);
            let Some(infos) = map.and_then(|map| self.lookup(pid, map, &binary, &offsets)) else {
                continue;
            };
            for ((i, offset), info) in items.into_iter().zip(infos) {
                if let Some(info) = info {
                    apply(&mut frames[i], info.clone());
                    let bytes = info.bytes();
                    self.symbols
                        .insert_weighed((binary.key.clone(), offset), info, bytes);
                }
            }
        }
        frames
    }

    /// Identifies the binary of a file mapping (cached per process mapping).
    fn binary_for(&mut self, pid: u32, map: &MemoryMap) -> Option<Arc<BinaryRef>> {
        let key = MappingKey {
            pid,
            start: map.start,
            end: map.end,
            offset: map.offset,
            dev: map.dev,
            inode: map.inode,
        };
        if let Some(binary) = self.mappings.get(&key) {
            return binary;
        }
        // The [vdso] and anonymous code have no file to read symbols from.
        let binary = open_mapped_binary(pid, map).map(|opened| {
            let key = self.build_ids.get(&opened.ident).unwrap_or_else(|| {
                let key = isolate::within(Step::BuildId, || read_build_id(&opened.file))
                    .map_or(BinaryKey::File(opened.ident), BinaryKey::BuildId);
                self.build_ids.insert(opened.ident, key.clone());
                key
            });
            Arc::new(BinaryRef {
                key,
                ident: opened.ident,
            })
        });
        self.mappings.insert(key, binary.clone());
        binary
    }

    /// Symbolizes file offsets of one binary. Per offset: `Some(info)` is a definite
    /// answer (possibly empty: no symbol there) worth caching; `None` is an error that may
    /// be transient (the file vanished with its process, or the budget left it out) and
    /// is not cached.
    fn lookup(
        &mut self,
        pid: u32,
        map: &MemoryMap,
        binary: &BinaryRef,
        offsets: &[u64],
    ) -> Option<Vec<Option<SymInfo>>> {
        let file = (binary.ident.dev, binary.ident.ino);
        let module = || -> Arc<str> { map.path.as_deref().unwrap_or("?").into() };
        if !self.held.contains_key(&file) {
            self.hold(pid, map, binary)?;
        }
        let plan = self.plans.get(&binary.ident).unwrap_or_default();
        self.note(pid, file, &plan, module);
        if !plan.symbols {
            return None;
        }
        let infos = self.call_blazesym(file, offsets);
        if let Some(spent) = infos
            .as_ref()
            .and_then(|(_, spent)| spent.over().then_some(*spent))
        {
            // Too slow to name from: from now on its symbol table only (or nothing).
            let cause = Cause::cpu(spent.cpu, spent.budget);
            let demoted = BinaryPlan {
                debug: false,
                symbols: plan.debug,
                cut: Some(cause),
            };
            self.plans.insert(binary.ident, demoted.clone());
            self.drop_held(file, false);
            self.note(pid, file, &demoted, module);
        }
        self.enforce_share(file);
        infos.map(|(infos, _)| infos)
    }

    /// Holds a binary for blazesym, as its plan says, within the budget (evicting the
    /// least recently used); `None` when it cannot be opened or is not to be read.
    fn hold(&mut self, pid: u32, map: &MemoryMap, binary: &BinaryRef) -> Option<()> {
        // Opened here (regular files only, without blocking) and checked to be the
        // binary identified before; blazesym gets this open file, never a path a
        // process could swap meanwhile.
        let fresh = open_mapped_binary(pid, map)?;
        if fresh.ident != binary.ident {
            return None;
        }
        let sections = SymbolSections::of(&fresh.file).unwrap_or_default();
        let plan = match self.plans.get(&binary.ident) {
            Some(plan) => plan,
            None => {
                let plan = plan_binary(&sections, may_map(&fresh.file), self.budget);
                self.plans.insert(binary.ident, plan.clone());
                plan
            }
        };
        if !plan.symbols {
            self.budget.refused(MemoryKind::Symbols);
            return Some(());
        }
        while self.held.len() >= MAX_OPEN_BINARIES {
            self.evict_least_recent(None);
        }
        let quota = self.budget.quota(MemoryKind::Symbols);
        let held = isolate::within(Step::HoldBinary, || {
            HeldBinary::hold(fresh, &sections, plan.debug, quota)
        });
        let held = match held {
            Ok(held) => held,
            Err(HoldRefused::TooLarge { needed }) => {
                let cause = Cause::Memory {
                    kind: MemoryKind::Symbols,
                    needed,
                    limit: quota,
                };
                self.refuse(binary.ident, cause);
                return Some(());
            }
            Err(HoldRefused::Unreadable) => return None,
        };
        let file = (binary.ident.dev, binary.ident.ino);
        self.make_room(held.copied_bytes, None);
        if let Err(over) = self
            .budget
            .try_charge(MemoryKind::Symbols, held.copied_bytes)
        {
            self.refuse(binary.ident, over.into());
            return Some(());
        }
        let path = held.path();
        self.tick += 1;
        let entry = HeldEntry {
            bytes: held.copied_bytes,
            held,
            path,
            last_used: self.tick,
        };
        self.held.insert(file, entry);
        Some(())
    }

    /// Marks a binary as not read at all, for `cause`.
    fn refuse(&mut self, ident: FileIdent, cause: Cause) {
        self.budget.refused(MemoryKind::Symbols);
        let plan = BinaryPlan {
            debug: false,
            symbols: false,
            cut: Some(cause),
        };
        self.plans.insert(ident, plan);
    }

    /// Notes, once per scan, that `pid`'s frames in `file` lost something to `plan`.
    fn note(
        &mut self,
        pid: u32,
        file: (u64, u64),
        plan: &BinaryPlan,
        module: impl FnOnce() -> Arc<str>,
    ) {
        let Some(cause) = plan.cut else { return };
        if !self.noted.insert((pid, file)) {
            return;
        }
        let module = module();
        let reason = if plan.symbols {
            Degradation::DebugInfo { module, cause }
        } else {
            Degradation::Symbols { module, cause }
        };
        self.degraded.push((pid, reason));
    }

    /// Asks blazesym for the names at `offsets` of a held file, measuring the heap it
    /// keeps (charged to the file) and the CPU it takes.
    fn call_blazesym(
        &mut self,
        file: (u64, u64),
        offsets: &[u64],
    ) -> Option<(Vec<Option<SymInfo>>, cpu::Spent)> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.held.get_mut(&file)?;
        entry.last_used = tick;
        let src = Source::Elf(Elf {
            debug_syms: entry.held.debug_info,
            ..Elf::new(entry.path.clone())
        });
        let symbolizer = &self.symbolizer;
        // blazesym parses files other processes control; a panic in it must cost only
        // these names, and the symbolizer is rebuilt in case it was left inconsistent.
        let ((result, spent), kept) = net_allocated(|| {
            cpu::with_budget(SYMBOLIZE_CPU, || {
                catch_unwind(AssertUnwindSafe(|| {
                    symbolizer
                        .symbolize(&src, Input::FileOffset(offsets))
                        .map(|syms| syms.into_iter().map(|s| sym_info(&s)).collect::<Vec<_>>())
                }))
            })
        });
        let kept = kept.max(0) as u64;
        entry.bytes += kept;
        self.budget.charge(MemoryKind::Symbols, kept);
        match result {
            Ok(Ok(infos)) => Some((infos, spent)),
            Ok(Err(_)) => None,
            Err(_) => {
                self.reset();
                None
            }
        }
    }

    /// Evicts the least recently used binaries (never `keep`) while the `symbols` share
    /// is exceeded.
    fn enforce_share(&mut self, keep: (u64, u64)) {
        while self.budget.excess(MemoryKind::Symbols) > 0 {
            if !self.evict_least_recent(Some(keep)) {
                break;
            }
        }
    }

    /// Evicts the least recently used binaries (never `keep`) until `bytes` more fit
    /// the share, or none is left.
    fn make_room(&mut self, bytes: u64, keep: Option<(u64, u64)>) {
        while self.budget.shortfall(MemoryKind::Symbols, bytes) > 0 {
            if !self.evict_least_recent(keep) {
                break;
            }
        }
    }

    /// Evicts the least recently used binary but `keep`; false when there is none.
    fn evict_least_recent(&mut self, keep: Option<(u64, u64)>) -> bool {
        let oldest = self
            .held
            .iter()
            .filter(|(file, _)| Some(**file) != keep)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(file, _)| *file);
        match oldest {
            Some(file) => {
                self.drop_held(file, true);
                true
            }
            None => false,
        }
    }

    /// Drops a held binary and what blazesym keeps of it; `evicted` counts it as
    /// evicted for the budget (else it is only released).
    fn drop_held(&mut self, file: (u64, u64), evicted: bool) {
        let Some(entry) = self.held.remove(&file) else {
            return;
        };
        let _ = self
            .symbolizer
            .evict(&Evict::Elf(evict::Elf::new(entry.path.clone())));
        if evicted {
            self.budget.evicted(MemoryKind::Symbols, entry.bytes);
        } else {
            self.budget.release(MemoryKind::Symbols, entry.bytes);
        }
    }

    /// Drops every held binary and blazesym's state with them.
    fn reset(&mut self) {
        let files: Vec<(u64, u64)> = self.held.keys().copied().collect();
        for file in files {
            self.drop_held(file, false);
        }
        self.symbolizer = new_symbolizer();
    }
}

impl Drop for StackSymbolizer {
    fn drop(&mut self) {
        let held: u64 = self.held.values().map(|e| e.bytes).sum();
        self.budget.release(MemoryKind::Symbols, held);
    }
}

/// How to name a binary whose parts `sections` lists: its debug info only if it fits
/// the per-binary quota (never compressed debug info in a file another user can write:
/// `mapped` says only root can write it), its symbol tables only if a copy of them fits.
fn plan_binary(sections: &SymbolSections, mapped: bool, budget: &MemoryBudget) -> BinaryPlan {
    let quota = budget.quota(MemoryKind::Symbols);
    let copied = if mapped { 0 } else { sections.symbol_bytes() };
    if copied > quota {
        return BinaryPlan {
            debug: false,
            symbols: false,
            cut: Some(Cause::Memory {
                kind: MemoryKind::Symbols,
                needed: copied,
                limit: quota,
            }),
        };
    }
    let mut plan = BinaryPlan {
        debug: false,
        symbols: true,
        cut: None,
    };
    if sections.debug.is_empty() {
        return plan;
    }
    if !mapped && sections.debug_compressed {
        plan.cut = Some(Cause::UntrustedCompressed);
        return plan;
    }
    let needed = sections.debug_bytes().saturating_add(copied);
    if needed > quota {
        plan.cut = Some(Cause::Memory {
            kind: MemoryKind::Symbols,
            needed,
            limit: quota,
        });
        return plan;
    }
    plan.debug = true;
    plan
}

/// Names file offsets of a held binary as a scan would (a fresh symbolizer), for the
/// fuzz targets; `None` when blazesym failed or panicked.
#[cfg(feature = "fuzzing")]
pub fn fuzz_symbolize_held(held: &HeldBinary, offsets: &[u64]) -> Option<Vec<Frame>> {
    let src = Source::Elf(Elf {
        debug_syms: held.debug_info,
        ..Elf::new(held.path())
    });
    let symbolizer = new_symbolizer();
    let infos = catch_unwind(AssertUnwindSafe(|| {
        symbolizer
            .symbolize(&src, Input::FileOffset(offsets))
            .map(|syms| syms.iter().map(sym_info).collect::<Vec<_>>())
    }))
    .ok()?
    .ok()?;
    let frames = infos
        .into_iter()
        .zip(offsets)
        .map(|(info, &address)| {
            let mut frame = Frame {
                address,
                ..Frame::default()
            };
            apply(&mut frame, info.unwrap_or_default());
            frame
        })
        .collect();
    Some(frames)
}

/// The answer for one offset; `None` when blazesym folded an error into it. Names are
/// capped ([`frame_name`]): the cache and every site keep them.
fn sym_info(sym: &Symbolized<'_>) -> Option<SymInfo> {
    match sym {
        Symbolized::Sym(sym) => {
            let code = sym.code_info.as_deref();
            Some(SymInfo {
                function: Some(frame_name(sym.name.as_bytes())),
                file: code.map(|c| {
                    use std::os::unix::ffi::OsStrExt;
                    frame_name(c.to_path().as_os_str().as_bytes())
                }),
                line: code.and_then(|c| c.line),
            })
        }
        Symbolized::Unknown(Reason::IgnoredError) => None,
        Symbolized::Unknown(_) => Some(SymInfo::default()),
    }
}

fn apply(frame: &mut Frame, info: SymInfo) {
    frame.function = info.function;
    frame.file = info.file;
    frame.line = info.line;
}

/// A bounded cache that approximates LRU cheaply: when the current generation is full it
/// becomes the old one (dropping the previous old one); hits in the old one move back.
/// Full means `cap` entries, or (weighed) `cap_bytes` bytes, charged to a budget.
struct TwoGenCache<K, V> {
    current: HashMap<K, (V, usize)>,
    old: HashMap<K, (V, usize)>,
    cap: usize,
    cap_bytes: usize,
    bytes: [usize; 2],
    account: Option<(&'static MemoryBudget, MemoryKind)>,
}

impl<K: Hash + Eq, V: Clone> TwoGenCache<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            current: HashMap::new(),
            old: HashMap::new(),
            cap,
            cap_bytes: usize::MAX,
            bytes: [0; 2],
            account: None,
        }
    }

    /// The same, full at `cap_bytes` bytes per generation, charged to `kind`.
    fn weighed(
        mut self,
        cap_bytes: usize,
        budget: &'static MemoryBudget,
        kind: MemoryKind,
    ) -> Self {
        self.cap_bytes = cap_bytes.max(1);
        self.account = Some((budget, kind));
        self
    }

    fn get(&mut self, key: &K) -> Option<V> {
        if let Some((value, _)) = self.current.get(key) {
            return Some(value.clone());
        }
        let (key, (value, bytes)) = self.old.remove_entry(key)?;
        self.bytes[1] -= bytes;
        self.insert_weighed(key, value.clone(), bytes);
        Some(value)
    }

    fn insert(&mut self, key: K, value: V) {
        self.insert_weighed(key, value, 0);
    }

    fn insert_weighed(&mut self, key: K, value: V, bytes: usize) {
        if self.current.len() >= self.cap || self.bytes[0].saturating_add(bytes) > self.cap_bytes {
            self.release(self.bytes[1]);
            self.old = std::mem::take(&mut self.current);
            self.bytes = [0, self.bytes[0]];
        }
        if let Some((_, replaced)) = self.current.insert(key, (value, bytes)) {
            self.bytes[0] -= replaced;
            self.release(replaced);
        }
        self.bytes[0] += bytes;
        if let Some((budget, kind)) = self.account {
            budget.charge(kind, bytes as u64);
        }
    }

    fn release(&self, bytes: usize) {
        if let Some((budget, kind)) = self.account {
            budget.release(kind, bytes as u64);
        }
    }
}

impl<K, V> Drop for TwoGenCache<K, V> {
    fn drop(&mut self) {
        if let Some((budget, kind)) = self.account {
            budget.release(kind, (self.bytes[0] + self.bytes[1]) as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::procfs::read_maps;

    #[inline(never)]
    fn leakscope_test_known_function(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(31).rotate_left(7)
    }

    #[test]
    fn names_a_function_of_this_binary() {
        let pid = std::process::id();
        let maps = read_maps(pid).unwrap();
        let f = leakscope_test_known_function as fn(u64) -> u64 as usize as u64;
        assert_eq!(leakscope_test_known_function(1), 31u64.rotate_left(7));
        // This test binary's debug info is hundreds of MiB: a budget it fits.
        let mut symbolizer = StackSymbolizer::with_budget(MemoryBudget::leaked(64 << 30));
        // As the innermost frame (exact address) and as a caller (address - 1 is looked up,
        // so pass an address inside the function).
        let frames = symbolizer.symbolize(pid, &maps, &[f, f + 2, 0x10]);
        assert_eq!(frames.len(), 3);
        for frame in &frames[..2] {
            let name = frame.function.as_deref().unwrap_or_default();
            assert!(name.contains("leakscope_test_known_function"), "{frame:?}");
            assert!(
                !name.starts_with("_ZN") && !name.starts_with("_R"),
                "not demangled: {name}"
            );
            let file = frame.file.as_deref().unwrap_or_default();
            assert!(
                file.ends_with("stacks/symbolize.rs") && file.starts_with('/'),
                "{frame:?}"
            );
            assert!(frame.line.is_some_and(|l| l > 0), "{frame:?}");
            assert!(
                frame.module.as_deref().is_some_and(|m| m.starts_with('/')),
                "{frame:?}"
            );
        }
        assert_eq!(frames[0].address, f);
        assert_eq!(frames[1].address, f + 2);
        // Unmapped: only the address.
        assert_eq!(
            frames[2],
            Frame {
                address: 0x10,
                ..Frame::default()
            }
        );

        // Served from the cache the second time, identically.
        assert_eq!(symbolizer.symbolize(pid, &maps, &[f, f + 2, 0x10]), frames);
        assert!(symbolizer.take_degraded().is_empty());
    }

    /// Check that a binary whose debug info is over the per-binary quota is named from
    /// its symbol table alone (function, no file or line), that the process says why,
    /// once, and that what blazesym keeps stays within the `symbols` share.
    #[test]
    fn debug_info_over_the_budget_is_not_read() {
        let pid = std::process::id();
        let maps = read_maps(pid).unwrap();
        let f = leakscope_test_known_function as fn(u64) -> u64 as usize as u64;
        let budget = MemoryBudget::leaked(16 << 20);
        let mut symbolizer = StackSymbolizer::with_budget(budget);
        let frames = symbolizer.symbolize(pid, &maps, &[f]);
        let name = frames[0].function.as_deref().unwrap_or_default();
        assert!(name.contains("leakscope_test_known_function"), "{frames:?}");
        assert_eq!((frames[0].file.as_deref(), frames[0].line), (None, None));
        let degraded = symbolizer.take_degraded();
        assert_eq!(degraded.len(), 1, "{degraded:?}");
        let (who, why) = &degraded[0];
        assert_eq!(*who, pid);
        assert!(
            matches!(
                why,
                Degradation::DebugInfo {
                    cause: Cause::Memory {
                        kind: MemoryKind::Symbols,
                        ..
                    },
                    ..
                }
            ),
            "{why:?}"
        );
        assert!(budget.held(MemoryKind::Symbols) <= budget.share(MemoryKind::Symbols));
        drop(symbolizer);
        assert_eq!(budget.held(MemoryKind::Symbols), 0);
    }

    #[test]
    fn names_libc_from_its_dynamic_symbols() {
        let pid = std::process::id();
        let maps = read_maps(pid).unwrap();
        // SAFETY: looking up a symbol of the already loaded libc.
        let getpid = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()) } as u64;
        assert_ne!(getpid, 0);
        let frames = StackSymbolizer::new().symbolize(pid, &maps, &[getpid]);
        let name = frames[0].function.as_deref().unwrap_or_default();
        assert!(name.contains("getpid"), "{:?}", frames[0]);
        assert!(
            frames[0]
                .module
                .as_deref()
                .is_some_and(|m| m.contains("libc")),
            "{:?}",
            frames[0]
        );
    }

    #[test]
    fn gone_binaries_and_garbage_give_bare_frames() {
        let maps = vec![MemoryMap {
            start: 0x1000_0000,
            end: 0x1001_0000,
            perms: "r-xp".into(),
            offset: 0,
            dev: (8, 1),
            inode: 42,
            path: Some("/nonexistent/leakscope/lib.so (deleted)".into()),
        }];
        let frames = StackSymbolizer::new().symbolize(u32::MAX, &maps, &[0x1000_0010, 0x1000_0020]);
        assert_eq!(frames.len(), 2);
        assert!(
            frames
                .iter()
                .all(|f| f.function.is_none() && f.file.is_none())
        );
        assert_eq!(
            frames[1].module.as_deref(),
            Some("/nonexistent/leakscope/lib.so (deleted)")
        );
    }

    #[test]
    fn two_gen_cache_is_bounded() {
        let mut cache = TwoGenCache::new(2);
        for i in 0..10u32 {
            cache.insert(i, i);
        }
        assert!(cache.current.len() + cache.old.len() <= 4);
        assert_eq!(cache.get(&9), Some(9));
        assert_eq!(cache.get(&0), None);
    }
}
