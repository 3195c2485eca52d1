//! Naming stack frames: function, file, line (blazesym), cached per binary.
//!
//! Addresses are turned into file offsets with the process's maps and symbolized against
//! the ELF file itself (`Source::Elf` + `Input::FileOffset`), so the result depends only
//! on the binary, not on where it was loaded: results are cached per (binary, offset) and
//! shared by every process that maps the same binary.

use std::{
    collections::HashMap,
    hash::Hash,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
};

use blazesym::symbolize::{
    Input, Reason, Symbolized, Symbolizer,
    source::{Elf, Source},
};

use crate::{
    host::{
        binary::{BinaryKey, FileIdent, HeldBinary, open_mapped_binary, read_build_id},
        procfs::{MemoryMap, map_containing},
    },
    isolate::{self, Step},
    model::Frame,
};

/// Distinct files blazesym may hold open (and mapped, with parsed debug info) at once;
/// beyond that it is rebuilt from scratch, which bounds memory and file descriptors on a
/// long-running host. Our own result cache survives the rebuild.
const MAX_OPEN_BINARIES: usize = 32;
/// Bytes of user-writable binaries held as sealed copies at once (see [`HeldBinary`]).
const MAX_COPIED_BYTES_TOTAL: u64 = 256 << 20;
/// Symbolized (binary, offset) pairs kept (per generation of the two-generation cache).
const MAX_CACHED_SYMBOLS: usize = 64 * 1024;
/// Mappings (per process) whose binary has been identified.
const MAX_CACHED_MAPPINGS: usize = 16 * 1024;

/// What is known about one code address of a binary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SymInfo {
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
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

/// Names stack frames; keeps one blazesym symbolizer and caches results per binary.
pub struct StackSymbolizer {
    symbolizer: Symbolizer,
    /// Files given to `symbolizer` since it was built, held open (or copied) for it.
    held: HashMap<(u64, u64), HeldBinary>,
    /// Bytes of binaries copied into memory among `held`.
    copied_bytes: u64,
    mappings: TwoGenCache<MappingKey, Option<Arc<BinaryRef>>>,
    /// Build ids of files already read, to not re-read the notes for every process.
    build_ids: TwoGenCache<FileIdent, BinaryKey>,
    symbols: TwoGenCache<(BinaryKey, u64), SymInfo>,
}

impl Default for StackSymbolizer {
    fn default() -> Self {
        Self {
            symbolizer: new_symbolizer(),
            held: HashMap::new(),
            copied_bytes: 0,
            mappings: TwoGenCache::new(MAX_CACHED_MAPPINGS),
            build_ids: TwoGenCache::new(MAX_CACHED_MAPPINGS),
            symbols: TwoGenCache::new(MAX_CACHED_SYMBOLS),
        }
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
                    self.symbols.insert((binary.key.clone(), offset), info);
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
    /// be transient (the file vanished with its process) and is not cached.
    fn lookup(
        &mut self,
        pid: u32,
        map: &MemoryMap,
        binary: &BinaryRef,
        offsets: &[u64],
    ) -> Option<Vec<Option<SymInfo>>> {
        let file = (binary.ident.dev, binary.ident.ino);
        if !self.held.contains_key(&file) {
            if self.held.len() >= MAX_OPEN_BINARIES || self.copied_bytes >= MAX_COPIED_BYTES_TOTAL {
                self.symbolizer = new_symbolizer();
                self.held.clear();
                self.copied_bytes = 0;
            }
            // Opened here (regular files only, without blocking) and checked to be the
            // binary identified before; blazesym gets this open file, never a path a
            // process could swap meanwhile.
            let fresh = open_mapped_binary(pid, map)?;
            if fresh.ident != binary.ident {
                return None;
            }
            let held = isolate::within(Step::HoldBinary, || HeldBinary::hold(fresh))?;
            self.copied_bytes += held.copied_bytes;
            self.held.insert(file, held);
        }
        let held = &self.held[&file];
        let src = Source::Elf(Elf {
            debug_syms: held.debug_info_safe,
            ..Elf::new(held.path())
        });
        let symbolizer = &self.symbolizer;
        // blazesym parses files other processes control; a panic in it must cost only
        // these names, and the symbolizer is rebuilt in case it was left inconsistent.
        let result = catch_unwind(AssertUnwindSafe(|| {
            symbolizer
                .symbolize(&src, Input::FileOffset(offsets))
                .map(|syms| syms.into_iter().map(|s| sym_info(&s)).collect::<Vec<_>>())
        }));
        match result {
            Ok(Ok(infos)) => Some(infos),
            Ok(Err(_)) => None,
            Err(_) => {
                self.symbolizer = new_symbolizer();
                self.held.clear();
                self.copied_bytes = 0;
                None
            }
        }
    }
}

/// The answer for one offset; `None` when blazesym folded an error into it.
fn sym_info(sym: &Symbolized<'_>) -> Option<SymInfo> {
    match sym {
        Symbolized::Sym(sym) => {
            let code = sym.code_info.as_deref();
            Some(SymInfo {
                function: Some(sym.name.to_string()),
                file: code.map(|c| c.to_path().to_string_lossy().into_owned()),
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
struct TwoGenCache<K, V> {
    current: HashMap<K, V>,
    old: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V: Clone> TwoGenCache<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            current: HashMap::new(),
            old: HashMap::new(),
            cap,
        }
    }

    fn get(&mut self, key: &K) -> Option<V> {
        if let Some(value) = self.current.get(key) {
            return Some(value.clone());
        }
        let (key, value) = self.old.remove_entry(key)?;
        self.insert(key, value.clone());
        Some(value)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.current.len() >= self.cap {
            self.old = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
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
        let mut symbolizer = StackSymbolizer::new();
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
