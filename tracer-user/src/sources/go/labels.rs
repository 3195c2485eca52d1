//! A goroutine's pprof labels, read from the process's memory once per new park.
//!
//! `g.labels` points to runtime/pprof's `labelMap` (`runtime/pprof/label.go`): up to
//! Go 1.23 a `map[string]string` variable, that is a pointer to the map's `hmap`
//! (`runtime/map.go`); from Go 1.24 a struct holding a `[]label` sorted by key. Both
//! are the process's word: a label count, a string's length, a map's bucket count may
//! be anything. So at most [`MAX_LABELS`] labels are kept, each key and value cut to
//! [`MAX_KEY_BYTES`] / [`MAX_VALUE_BYTES`], a bounded number of map buckets is read, and
//! a set that lost anything says so. Each stage of the reads (headers, lists or
//! buckets, strings) is one batch across many label sets.

use std::{collections::HashMap, sync::Arc};

use crate::{
    fasthash::IntMap,
    host::memory::read_batch,
    model::{GoRelease, LabelSet},
    sources::go::g::word,
};

/// Labels kept per set (the first by key).
pub const MAX_LABELS: usize = 16;
/// The longest key kept, in bytes; a longer one is cut and ends in "…".
pub const MAX_KEY_BYTES: usize = 64;
/// The longest value kept, in bytes; a longer one is cut and ends in "…".
pub const MAX_VALUE_BYTES: usize = 128;
/// Label sets read together: bounds the read buffer (each set reads at most a few KiB
/// of buckets and [`MAX_MAP_CELLS`] pairs of strings).
const SETS_PER_BATCH: usize = 64;

/// A string header in the process: pointer and length.
type GoString = (u64, u64);
/// One label's key and value.
type Cell = [GoString; 2];
/// Bytes of one `label` (two string headers).
const LABEL_BYTES: usize = 32;

// Go's map[string]string before Go 1.24 (the classic hash map), on 64-bit.
/// `hmap`: count, flags, B, noverflow, hash0, buckets, oldbuckets, nevacuate, extra.
const HMAP_BYTES: usize = 48;
/// Cells per bucket (`bucketCnt`).
const BUCKET_CELLS: usize = 8;
/// One bucket: 8 top hashes, 8 keys, 8 values, the overflow pointer.
const BUCKET_BYTES: usize = BUCKET_CELLS + BUCKET_CELLS * 16 * 2 + 8;
/// A top hash below this marks an empty or evacuated cell (`minTopHash`).
const MIN_TOP_HASH: u8 = 5;
/// `hmap.flags`: the map grows to the same size (old and new arrays are as large).
const SAME_SIZE_GROW: u8 = 8;
/// Buckets read per map at most (new and old arrays and overflow buckets): a map of a
/// few dozen labels has a few.
const MAX_MAP_BUCKETS: usize = 32;
/// Filled cells whose strings are read per map at most.
const MAX_MAP_CELLS: usize = 64;
/// Rounds of overflow buckets followed per map.
const MAX_OVERFLOW_ROUNDS: usize = 4;

/// How a Go version keeps a goroutine's label set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelRepr {
    /// Go 1.17 to 1.23: a pointer to a `map[string]string` variable.
    Map,
    /// Go 1.24 and later: a pointer to a `[]label` (key, value) sorted by key.
    Slice,
}

impl LabelRepr {
    pub fn of(release: GoRelease) -> Self {
        if release.at_least(1, 24) {
            Self::Slice
        } else {
            Self::Map
        }
    }
}

/// A set's labels as string headers, before the strings are read.
#[derive(Default)]
struct Cells {
    cells: Vec<Cell>,
    /// Labels were left out (more than were read).
    truncated: bool,
}

impl Cells {
    /// A set too large to read whole where what can be read is an arbitrary part (a
    /// map's first buckets hold labels in hash order, seeded per map): none is kept,
    /// so every goroutine of it shows the same (empty, truncated) set.
    fn unreadable() -> Self {
        Self {
            cells: Vec::new(),
            truncated: true,
        }
    }
}

/// Reads the label sets at `ptrs` (values of `g.labels`, not 0) in process `pid`: a
/// bounded set each, `None` where nothing readable is there (or the set is empty).
pub fn read_label_sets(
    pid: u32,
    repr: LabelRepr,
    ptrs: &[u64],
    buf: &mut Vec<u8>,
) -> Vec<Option<LabelSet>> {
    let mut out = Vec::with_capacity(ptrs.len());
    for chunk in ptrs.chunks(SETS_PER_BATCH) {
        let cells = match repr {
            LabelRepr::Slice => slice_cells(pid, chunk, buf),
            LabelRepr::Map => map_cells(pid, chunk, buf),
        };
        out.extend(read_strings(pid, cells, buf));
    }
    out
}

/// Reads the planned ranges in one batch: each one's bytes, `None` where it was not
/// planned or faulted (an empty range reads as empty, without a read).
fn read_some<'b>(
    pid: u32,
    plan: &[Option<(u64, usize)>],
    buf: &'b mut Vec<u8>,
) -> Vec<Option<&'b [u8]>> {
    let ranges: Vec<(u64, usize)> = plan.iter().flatten().filter(|r| r.1 > 0).copied().collect();
    let ok = read_batch(pid, &ranges, buf);
    let buf: &'b Vec<u8> = buf;
    let (mut at, mut next) = (0usize, 0usize);
    plan.iter()
        .map(|range| match *range {
            None => None,
            Some((_, 0)) => Some(&buf[..0]),
            Some((_, len)) => {
                let bytes = ok[next].then(|| &buf[at..at + len]);
                (at, next) = (at + len, next + 1);
                bytes
            }
        })
        .collect()
}

fn go_string(bytes: &[u8], at: usize) -> Option<GoString> {
    Some((word(bytes, at)?, word(bytes, at + 8)?))
}

/// Go 1.24+: the slice header at each pointer, then its first labels (sorted by key).
fn slice_cells(pid: u32, ptrs: &[u64], buf: &mut Vec<u8>) -> Vec<Option<Cells>> {
    let plan: Vec<_> = ptrs.iter().map(|&p| Some((p, 24))).collect();
    let headers: Vec<Option<GoString>> = read_some(pid, &plan, buf)
        .into_iter()
        .map(|b| go_string(b?, 0))
        .collect();
    let plan: Vec<_> = headers
        .iter()
        .map(|h| h.map(|(list, len)| (list, len.min(MAX_LABELS as u64) as usize * LABEL_BYTES)))
        .collect();
    let lists = read_some(pid, &plan, buf);
    headers
        .iter()
        .zip(lists)
        .map(|(header, list)| {
            let (_, len) = (*header)?;
            let cells = list?
                .chunks_exact(LABEL_BYTES)
                .filter_map(|c| Some([go_string(c, 0)?, go_string(c, 16)?]))
                .collect();
            Some(Cells {
                cells,
                truncated: len > MAX_LABELS as u64,
            })
        })
        .collect()
}

/// One map's read so far.
struct MapRead {
    /// `hmap.count`, the labels it holds.
    count: u64,
    cells: Cells,
    buckets: usize,
    /// Overflow buckets still to read.
    overflow: Vec<u64>,
}

impl MapRead {
    /// Takes the filled cells of `bytes` (whole buckets) and notes their overflow
    /// buckets.
    fn take_buckets(&mut self, bytes: &[u8]) {
        for bucket in bytes.chunks_exact(BUCKET_BYTES) {
            self.buckets += 1;
            for i in 0..BUCKET_CELLS {
                if bucket[i] < MIN_TOP_HASH {
                    continue;
                }
                if self.cells.cells.len() >= MAX_MAP_CELLS {
                    self.cells.truncated = true;
                    break;
                }
                let key = BUCKET_CELLS + i * 16;
                let value = BUCKET_CELLS + BUCKET_CELLS * 16 + i * 16;
                if let (Some(k), Some(v)) = (go_string(bucket, key), go_string(bucket, value)) {
                    self.cells.cells.push([k, v]);
                }
            }
            match word(bucket, BUCKET_BYTES - 8) {
                Some(0) | None => {}
                Some(next) => self.overflow.push(next),
            }
        }
    }
}

/// What a map's `hmap` says: how many labels, and where its buckets are.
#[derive(Clone, Copy)]
struct MapHead {
    count: u64,
    /// The bucket array, and how many buckets it has (2^B).
    buckets: (u64, u64),
    /// While the map grows: the old array, and how many buckets it has.
    old: (u64, u64),
}

impl MapHead {
    fn parse(b: &[u8]) -> Option<Self> {
        let (flags, log2) = (*b.get(8)?, *b.get(9)?);
        let new = 1u64 << log2.min(63);
        let old = if flags & SAME_SIZE_GROW != 0 {
            new
        } else {
            1u64 << log2.saturating_sub(1).min(63)
        };
        Some(Self {
            count: word(b, 0)?,
            buckets: (word(b, 16)?, new),
            old: (word(b, 24)?, old),
        })
    }
}

/// Go 1.17-1.23: the map variable, its `hmap`, then its bucket arrays (new and, while
/// it grows, old: a label is in exactly one of them, evacuated cells are marked) and
/// overflow buckets, a bounded number of each.
fn map_cells(pid: u32, ptrs: &[u64], buf: &mut Vec<u8>) -> Vec<Option<Cells>> {
    let plan: Vec<_> = ptrs.iter().map(|&p| Some((p, 8))).collect();
    let hmaps: Vec<Option<u64>> = read_some(pid, &plan, buf)
        .into_iter()
        .map(|b| word(b?, 0))
        .collect();
    let plan: Vec<_> = hmaps
        .iter()
        .map(|h| h.filter(|&h| h != 0).map(|h| (h, HMAP_BYTES)))
        .collect();
    let heads: Vec<Option<MapHead>> = read_some(pid, &plan, buf)
        .into_iter()
        .map(|b| MapHead::parse(b?))
        .collect();
    let mut reads: Vec<Option<MapRead>> = hmaps
        .iter()
        .zip(&heads)
        .map(|(hmap, head)| match (hmap, head) {
            (Some(0), _) => Some(MapRead::of(0)),
            (_, Some(head)) => Some(MapRead::of(head.count)),
            _ => None,
        })
        .collect();
    read_bucket_arrays(pid, &heads, &mut reads, buf);
    for _ in 0..MAX_OVERFLOW_ROUNDS {
        if !read_overflow(pid, &mut reads, buf) {
            break;
        }
    }
    reads
        .into_iter()
        .map(|read| {
            let read = read?;
            let whole = !read.cells.truncated
                && read.overflow.is_empty()
                && read.cells.cells.len() as u64 >= read.count;
            Some(if whole {
                read.cells
            } else {
                Cells::unreadable()
            })
        })
        .collect()
}

impl MapRead {
    fn of(count: u64) -> Self {
        Self {
            count,
            cells: Cells::default(),
            buckets: 0,
            overflow: Vec::new(),
        }
    }
}

/// Reads each map's bucket arrays, at most [`MAX_MAP_BUCKETS`] buckets in all.
fn read_bucket_arrays(
    pid: u32,
    heads: &[Option<MapHead>],
    reads: &mut [Option<MapRead>],
    buf: &mut Vec<u8>,
) {
    let mut plan = Vec::new();
    let mut owners = Vec::new();
    for (i, head) in heads.iter().enumerate() {
        let (Some(head), Some(read)) = (head, reads[i].as_mut()) else {
            continue;
        };
        if head.count == 0 {
            continue;
        }
        let mut room = MAX_MAP_BUCKETS as u64;
        for (at, n) in [head.buckets, head.old] {
            if at == 0 {
                continue;
            }
            let take = n.min(room);
            read.cells.truncated |= take < n;
            room -= take;
            if take > 0 {
                plan.push(Some((at, take as usize * BUCKET_BYTES)));
                owners.push(i);
            }
        }
    }
    let arrays = read_some(pid, &plan, buf);
    for (owner, bytes) in owners.into_iter().zip(arrays) {
        if let (Some(read), Some(bytes)) = (reads[owner].as_mut(), bytes) {
            read.take_buckets(bytes);
        }
    }
}

/// Reads one round of pending overflow buckets; whether any was read.
fn read_overflow(pid: u32, reads: &mut [Option<MapRead>], buf: &mut Vec<u8>) -> bool {
    let mut plan = Vec::new();
    let mut owners = Vec::new();
    for (i, read) in reads.iter_mut().enumerate() {
        let Some(read) = read else { continue };
        let room = MAX_MAP_BUCKETS.saturating_sub(read.buckets);
        let take = read.overflow.len().min(room);
        for next in read.overflow.drain(..take) {
            plan.push(Some((next, BUCKET_BYTES)));
            owners.push(i);
        }
    }
    if plan.is_empty() {
        return false;
    }
    let buckets = read_some(pid, &plan, buf);
    for (owner, bytes) in owners.into_iter().zip(buckets) {
        if let (Some(read), Some(bytes)) = (reads[owner].as_mut(), bytes) {
            read.take_buckets(bytes);
        }
    }
    true
}

/// Reads every cell's key and value (each cut to its bound) and makes the sets.
fn read_strings(pid: u32, sets: Vec<Option<Cells>>, buf: &mut Vec<u8>) -> Vec<Option<LabelSet>> {
    let cut = |(ptr, len): GoString, max: usize| Some((ptr, len.min(max as u64) as usize));
    let plan: Vec<_> = sets
        .iter()
        .flatten()
        .flat_map(|set| &set.cells)
        .flat_map(|[key, value]| [cut(*key, MAX_KEY_BYTES), cut(*value, MAX_VALUE_BYTES)])
        .collect();
    let strings = read_some(pid, &plan, buf);
    let mut strings = strings.into_iter();
    sets.into_iter()
        .map(|set| {
            let set = set?;
            let mut truncated = set.truncated;
            let mut labels = Vec::with_capacity(set.cells.len());
            for [key, value] in &set.cells {
                let (k, v) = (strings.next().flatten(), strings.next().flatten());
                let (Some(k), Some(v)) = (k, v) else {
                    truncated = true;
                    continue;
                };
                let (k, cut_k) = text(k, key.1, MAX_KEY_BYTES);
                let (v, cut_v) = text(v, value.1, MAX_VALUE_BYTES);
                truncated |= cut_k || cut_v;
                labels.push((k, v));
            }
            labels.sort_unstable();
            labels.dedup_by(|a, b| a.0 == b.0);
            truncated |= labels.len() > MAX_LABELS;
            labels.truncate(MAX_LABELS);
            (!labels.is_empty() || truncated).then(|| LabelSet {
                labels: labels.into(),
                truncated,
            })
        })
        .collect()
}

/// A string's bytes as text (invalid UTF-8 replaced), cut to `max` bytes with "…" when
/// the process's string (`len` bytes) is longer; and whether it was cut.
fn text(bytes: &[u8], len: u64, max: usize) -> (Box<str>, bool) {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    let cut = len > max as u64 || s.len() > max;
    if cut {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    (s.into(), cut)
}

/// A group of parks with no label set kept (none, or past [`MAX_LABEL_SETS`]).
pub const NO_LABELS: u32 = u32::MAX;
/// Distinct label sets kept per process at once: a process that labels every goroutine
/// differently (a request id as a label) gets this many, the rest count without labels.
pub const MAX_LABEL_SETS: usize = 128;
/// Label-set pointers remembered per read (about 1 MiB): the cache of which pointer
/// names which set.
const MAX_POINTERS_KEPT: usize = 32 * 1024;

/// The distinct label sets of one process's parks, each kept once while a group of
/// parks uses it, and this read's sets by `g.labels` pointer (goroutines share their
/// creator's labels, so one read of a set serves all of them).
#[derive(Default)]
pub struct LabelSets {
    /// By id: the set and how many groups use it.
    sets: Vec<Option<(Arc<LabelSet>, u32)>>,
    ids: HashMap<Arc<LabelSet>, u32>,
    free: Vec<u32>,
    by_pointer: IntMap<u64, u32>,
}

impl LabelSets {
    /// A new read begins: pointers read before may name other sets now.
    pub fn start_read(&mut self) {
        self.by_pointer.clear();
    }

    /// The ids of the label sets at `ptrs` (0: none), reading those not known in this
    /// read; [`NO_LABELS`] where none was read or kept.
    pub fn ids(&mut self, pid: u32, repr: LabelRepr, ptrs: &[u64], buf: &mut Vec<u8>) -> Vec<u32> {
        // A process whose every goroutine has a label map of its own would grow this
        // cache with the table: past its bound it starts over (sets are interned by
        // content, so only their reads repeat).
        if self.by_pointer.len() > MAX_POINTERS_KEPT {
            self.by_pointer.clear();
        }
        let mut unknown: Vec<u64> = ptrs
            .iter()
            .copied()
            .filter(|&p| p != 0 && !self.by_pointer.contains_key(&p))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        let sets = read_label_sets(pid, repr, &unknown, buf);
        for (ptr, set) in unknown.into_iter().zip(sets) {
            let id = set.map_or(NO_LABELS, |set| self.intern(set));
            self.by_pointer.insert(ptr, id);
        }
        ptrs.iter()
            .map(|p| self.by_pointer.get(p).copied().unwrap_or(NO_LABELS))
            .collect()
    }

    fn intern(&mut self, set: LabelSet) -> u32 {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        if self.ids.len() >= MAX_LABEL_SETS {
            return NO_LABELS;
        }
        let set = Arc::new(set);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.sets.push(None);
                (self.sets.len() - 1) as u32
            }
        };
        self.sets[id as usize] = Some((set.clone(), 0));
        self.ids.insert(set, id);
        id
    }

    pub fn get(&self, id: u32) -> Option<&Arc<LabelSet>> {
        self.sets.get(id as usize)?.as_ref().map(|(set, _)| set)
    }

    /// A group of parks uses set `id` from now on.
    pub fn hold(&mut self, id: u32) {
        if let Some(Some((_, users))) = self.sets.get_mut(id as usize) {
            *users += 1;
        }
    }

    /// A group that used set `id` is gone.
    pub fn release(&mut self, id: u32) {
        if let Some(Some((_, users))) = self.sets.get_mut(id as usize) {
            *users = users.saturating_sub(1);
        }
    }

    /// Forgets the sets no group uses (read for parks that were then not counted, or
    /// whose groups emptied), at the end of a read.
    pub fn sweep(&mut self) {
        for (id, entry) in self.sets.iter_mut().enumerate() {
            if let Some((set, 0)) = entry {
                self.ids.remove(&**set);
                *entry = None;
                self.free.push(id as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go string headers and the Go structures built from them, in this process's own
    /// memory (read back through process_vm_readv like any other process's).
    struct Fake {
        /// Backing bytes kept alive while their addresses are in use.
        keep: Vec<Box<[u8]>>,
    }

    impl Fake {
        fn new() -> Self {
            Self { keep: Vec::new() }
        }

        fn bytes(&mut self, bytes: Vec<u8>) -> u64 {
            let boxed = bytes.into_boxed_slice();
            let at = boxed.as_ptr() as u64;
            self.keep.push(boxed);
            at
        }

        fn words(&mut self, words: &[u64]) -> u64 {
            self.bytes(words.iter().flat_map(|w| w.to_le_bytes()).collect())
        }

        fn string(&mut self, s: &str) -> [u64; 2] {
            [self.bytes(s.as_bytes().to_vec()), s.len() as u64]
        }

        /// A Go 1.24+ `labelMap`: a slice header whose length may lie.
        fn slice_set(&mut self, labels: &[(&str, &str)], declared: Option<u64>) -> u64 {
            let mut list = Vec::new();
            for (k, v) in labels {
                list.extend(self.string(k));
                list.extend(self.string(v));
            }
            let len = declared.unwrap_or(labels.len() as u64);
            let list = self.words(&list);
            self.words(&[list, len, len])
        }

        /// A Go 1.17-1.23 `labelMap` variable: a pointer to an `hmap` claiming `count`
        /// labels in `2^log2` buckets, of which (at most) two are there, holding the
        /// labels (and an evacuated cell).
        fn map_set(&mut self, labels: &[(&str, &str)], log2: u8, count: u64) -> u64 {
            let buckets = 1usize << log2.min(1);
            let mut array = vec![0u8; buckets * BUCKET_BYTES];
            for (i, (k, v)) in labels.iter().enumerate() {
                let (bucket, cell) = (i % buckets, i / buckets);
                let at = bucket * BUCKET_BYTES;
                array[at + cell] = MIN_TOP_HASH + 7;
                let [kp, kl] = self.string(k);
                let [vp, vl] = self.string(v);
                let key = at + BUCKET_CELLS + cell * 16;
                let value = at + BUCKET_CELLS + BUCKET_CELLS * 16 + cell * 16;
                array[key..key + 8].copy_from_slice(&kp.to_le_bytes());
                array[key + 8..key + 16].copy_from_slice(&kl.to_le_bytes());
                array[value..value + 8].copy_from_slice(&vp.to_le_bytes());
                array[value + 8..value + 16].copy_from_slice(&vl.to_le_bytes());
            }
            // An evacuated cell (top hash 2) with a dangling key: skipped.
            array[BUCKET_CELLS - 1] = 2;
            array[BUCKET_CELLS + 7 * 16..BUCKET_CELLS + 7 * 16 + 8]
                .copy_from_slice(&8u64.to_le_bytes());
            let array = self.bytes(array);
            let mut hmap = vec![0u8; HMAP_BYTES];
            hmap[..8].copy_from_slice(&count.to_le_bytes());
            hmap[9] = log2;
            hmap[16..24].copy_from_slice(&array.to_le_bytes());
            let hmap = self.bytes(hmap);
            self.words(&[hmap])
        }
    }

    fn read(repr: LabelRepr, ptrs: &[u64]) -> Vec<Option<LabelSet>> {
        read_label_sets(std::process::id(), repr, ptrs, &mut Vec::new())
    }

    fn pairs(set: &LabelSet) -> Vec<(&str, &str)> {
        set.labels.iter().map(|(k, v)| (&**k, &**v)).collect()
    }

    /// Check that both representations read back the labels, sorted by key, and that a
    /// set whose pointer leads nowhere is no set.
    #[test]
    fn both_representations_read_the_labels() {
        let mut fake = Fake::new();
        let labels = [("tenant", "acme"), ("route", "/checkout")];
        let sorted = vec![("route", "/checkout"), ("tenant", "acme")];
        let slice = fake.slice_set(&sorted, None);
        let map = fake.map_set(&labels, 1, 2);
        let got = read(LabelRepr::Slice, &[slice, 8]);
        assert_eq!(pairs(got[0].as_ref().unwrap()), sorted);
        assert!(!got[0].as_ref().unwrap().truncated);
        assert_eq!(got[1], None, "an unmapped pointer");
        let got = read(LabelRepr::Map, &[map, 8]);
        assert_eq!(pairs(got[0].as_ref().unwrap()), sorted);
        assert!(!got[0].as_ref().unwrap().truncated);
        assert_eq!(got[1], None);
        assert_eq!(
            LabelRepr::of(GoRelease::Known {
                major: 1,
                minor: 23
            }),
            LabelRepr::Map
        );
        assert_eq!(
            LabelRepr::of(GoRelease::Known {
                major: 1,
                minor: 24
            }),
            LabelRepr::Slice
        );
    }

    /// Check that a hostile set is bounded: a slice claiming 2^40 labels gives the first
    /// few, a string claiming 2^50 bytes is cut with "…", and a map claiming more labels
    /// than it shows, or more buckets than are read, gives one empty truncated set (the
    /// same for every goroutine of it, whatever the map's hash seed put first).
    #[test]
    fn hostile_sets_are_bounded() {
        let mut fake = Fake::new();
        let long = "x".repeat(4 * MAX_VALUE_BYTES);
        let many: Vec<(String, String)> = (0..40)
            .map(|i| (format!("k{i:02}"), format!("v{i}")))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (&**k, &**v)).collect();
        let slice = fake.slice_set(&many, Some(1 << 40));
        let mut huge = fake.string(&long);
        huge[1] = 1 << 50;
        let key = fake.string("k");
        let list = fake.words(&[key[0], key[1], huge[0], huge[1]]);
        let huge_value = fake.words(&[list, 1, 1]);
        let got = read(LabelRepr::Slice, &[slice, huge_value]);
        let set = got[0].as_ref().unwrap();
        assert_eq!(set.labels.len(), MAX_LABELS);
        assert!(set.truncated);
        assert_eq!(&*set.labels[0].0, "k00");
        let set = got[1].as_ref().unwrap();
        assert_eq!(
            set.get("k").unwrap().len(),
            MAX_VALUE_BYTES + '…'.len_utf8()
        );
        assert!(set.truncated);
        let lying = fake.map_set(&many[..3], 1, 3000);
        let wide = fake.map_set(&many[..3], 20, 3);
        for got in read(LabelRepr::Map, &[lying, wide]) {
            assert_eq!(
                got,
                Some(LabelSet {
                    labels: Box::new([]),
                    truncated: true
                })
            );
        }
    }

    /// Check that each distinct set is kept once, sets go when no group holds them, and
    /// past the cap new sets are not kept.
    #[test]
    fn sets_are_interned_and_capped() {
        let mut fake = Fake::new();
        let a1 = fake.slice_set(&[("route", "/a")], None);
        let a2 = fake.slice_set(&[("route", "/a")], None);
        let b = fake.slice_set(&[("route", "/b")], None);
        let mut sets = LabelSets::default();
        let pid = std::process::id();
        let ids = sets.ids(pid, LabelRepr::Slice, &[a1, a2, b, 0, a1], &mut Vec::new());
        assert_eq!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        assert_eq!((ids[3], ids[4]), (NO_LABELS, ids[0]));
        sets.hold(ids[0]);
        sets.sweep();
        assert!(sets.get(ids[0]).is_some() && sets.get(ids[2]).is_none());
        sets.release(ids[0]);
        sets.sweep();
        assert!(sets.get(ids[0]).is_none());
        let ptrs: Vec<u64> = (0..MAX_LABEL_SETS + 5)
            .map(|i| fake.slice_set(&[("id", &i.to_string())], None))
            .collect();
        sets.start_read();
        let ids = sets.ids(pid, LabelRepr::Slice, &ptrs, &mut Vec::new());
        assert_eq!(ids.iter().filter(|&&id| id == NO_LABELS).count(), 5);
    }
}
