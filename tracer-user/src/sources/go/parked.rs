//! One Go process's goroutine table, read incrementally.
//!
//! Every read copies each `g` (only the process's memory has their fields), but a `g`
//! that has not moved since the previous read (same goroutine id and park sequence,
//! same saved registers and wait reason) costs one comparison: its stack is not walked
//! again, nothing is looked up or allocated for it. Per `g` the table keeps 28 bytes
//! (see [`TABLE_BYTES_PER_G`]: what it may hold is checked before it grows).
//! A read reports what changed: the parks that began and ended at each site, and each
//! site's population and the stack memory it holds (a running sum per site, kept as
//! parks arrive and leave: a stack's size rides in 5 bits of its park's slot, the
//! runtime's stacks being powers of two).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    budget::{MemoryKind, OverBudget},
    host::memory::read_batch,
    model::{GoroutineMember, LabelSet, StackKey},
    resources::StackBytes,
    sources::go::{
        chunked::Chunked,
        executable::GoProgram,
        g::{
            GFields, GoroutineReadError, StatusTable, SystemGoroutines, check_allglen, is_live,
            is_parked, parse_g, read_allgs_into, read_word,
        },
        labels::{LabelRepr, LabelSets},
        layout::{GoRuntimeLayout, GoStatus},
        readplan::{
            BATCH_BYTES, MergedRange, batches, count_ranges, merge_ranges, merge_sorted_into,
        },
        stackwalk::{STACK_BYTES_PER_READ, walk_stacks},
    },
};

/// What one read of a Go process's goroutine table found: each site's population, and
/// the parks that began, ended or were dated there since the previous read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GoroutineTable {
    pub sites: Vec<GoroutineSite>,
    /// The highest id of a live goroutine: ids count up, so this dates goroutine ids.
    pub max_goid: u64,
}

/// Goroutines parked alike: the same wait reason, stack, creator and label set.
#[derive(Clone, Debug, PartialEq)]
pub struct GoroutineSite {
    pub wait_reason: Arc<str>,
    /// Absolute pcs, innermost first (the parking pc, then return addresses).
    pub stack: StackKey,
    /// The return address of the `go` statement that created them.
    pub gopc: u64,
    /// Their pprof labels, when they have any (and the process's sets were not past
    /// their cap).
    pub labels: Option<Arc<LabelSet>>,
    /// Parked here now (0: the last of them left since the previous read).
    pub parked: u32,
    /// Of them, those the runtime itself proved leaked (status `_Gleaked`: a GC cycle
    /// run for the `goroutineleak` profile found them unreachable), as of this read.
    pub runtime_leaked: u32,
    /// Parks that began since the previous read.
    pub arrived: Vec<GoroutineMember>,
    /// Parks that ended since the previous read.
    pub departed: Vec<GoroutineMember>,
    /// Parks that go on and whose `g.waitsince` a GC cycle set since the previous read.
    pub dated: Vec<GoroutineMember>,
    /// The stacks of those parked here now (`g.stack.hi - g.stack.lo` each).
    pub stack_bytes: StackBytes,
}

/// New parks whose stacks are walked together: bounds the memory a first read of a
/// huge process takes (each costs its `g`, its walked stack and a re-read).
const WALK_CHUNK: usize = 4096;
/// The longest read time budget honoured (an `Instant` cannot be pushed past any bound).
const MAX_TIME_BUDGET: Duration = Duration::from_secs(86_400);
/// A slot whose `g` is not counted (not parked, a runtime goroutine, or not read yet).
const NO_GROUP: u32 = GROUP_MASK;
/// The group bits of [`Slot::group`]; the top two are flags.
const GROUP_MASK: u32 = u32::MAX >> 2;
/// The park's `g.waitsince` was already reported.
const DATED: u32 = 1 << 31;
/// The runtime marks the park's goroutine leaked (`_Gleaked`) as of the latest read.
const LEAKED: u32 = 1 << 30;

/// What the previous read saw at one `allgs` index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// [`member_key`] of the park.
    key: u64,
    /// [`fingerprint`] of the registers, wait reason and stack size.
    moved: u32,
    /// The park's group, or [`NO_GROUP`]; and [`DATED`], [`LEAKED`].
    group: u32,
}

impl Slot {
    fn group(&self) -> u32 {
        self.group & GROUP_MASK
    }
}

impl Default for Slot {
    fn default() -> Self {
        EMPTY
    }
}

const EMPTY: Slot = Slot {
    key: 0,
    moved: 0,
    group: NO_GROUP,
};

/// What parks alike share: wait reason, stack, creator (`gopc`) and label set.
type GroupKey = (u8, StackKey, u64, u32);

/// Goroutines parked alike: the same wait reason, stack, creator and label set.
struct Group {
    wait_reason: u8,
    wait_label: Arc<str>,
    stack: StackKey,
    gopc: u64,
    /// Its label set's id in [`LabelSets`], or [`super::labels::NO_LABELS`] (none kept).
    labels: u32,
    parked: u32,
    /// Of them, those the runtime marks leaked (`_Gleaked`) now.
    leaked: u32,
    arrived: Vec<GoroutineMember>,
    departed: Vec<GoroutineMember>,
    dated: Vec<GoroutineMember>,
    /// Bytes of the stacks parked here, and how many parks they are (those whose stack
    /// size is known).
    stack_bytes: u64,
    stacks: u32,
}

impl Group {
    /// An empty group of parks of wait reason `wait_reason` (named `wait_label`) at
    /// `stack`, created by the `go` statement at `gopc`, with label set `labels`.
    fn new(wait_reason: u8, wait_label: Arc<str>, stack: StackKey, gopc: u64, labels: u32) -> Self {
        Self {
            wait_reason,
            wait_label,
            stack,
            gopc,
            labels,
            parked: 0,
            leaked: 0,
            arrived: Vec::new(),
            departed: Vec::new(),
            dated: Vec::new(),
            stack_bytes: 0,
            stacks: 0,
        }
    }

    /// A park of stack class `class` ([`stack_class`]) arrives or leaves.
    fn count_stack(&mut self, class: u32, arrives: bool) {
        let Some(bytes) = class_bytes(class) else {
            return;
        };
        if arrives {
            self.stack_bytes += bytes;
            self.stacks += 1;
        } else {
            self.stack_bytes = self.stack_bytes.saturating_sub(bytes);
            self.stacks = self.stacks.saturating_sub(1);
        }
    }
}

/// Buffers shared by the reads of every process: their size is bounded by
/// [`BATCH_BYTES`], not by the process read.
#[derive(Default)]
pub struct ReadBuffers {
    gs: Vec<u8>,
    stacks: Vec<u8>,
}

/// The incremental state of one Go process's goroutine table.
#[derive(Default)]
pub struct ParkedTable {
    /// `allgs` as of the previous read.
    gptrs: Chunked<u64>,
    /// Indices into `gptrs`, by address: neighbours merge into large reads.
    by_address: Chunked<u32>,
    /// Merged read ranges, each ending where its part of `by_address` does.
    ranges: Vec<MergedRange>,
    slots: Chunked<Slot>,
    groups: Vec<Option<Group>>,
    /// What the groups hold, [`group_bytes`] each.
    group_bytes: u64,
    /// Parks dated in this read (at most [`MAX_DATED_PER_READ`]).
    dated: usize,
    /// The most the table was checked for: its peak (what the tests measure).
    peak: u64,
    group_of: HashMap<GroupKey, u32>,
    free_groups: Vec<u32>,
    /// One shared string per wait-reason value.
    wait_labels: HashMap<u8, Arc<str>>,
    /// Whether a start pc belongs to the runtime's own goroutines.
    system: SystemGoroutines,
    /// Stack bytes this read may still read in full (the process's word for them).
    stack_budget: usize,
    /// The statuses of the process's Go version.
    statuses: StatusTable,
    /// The label sets of the groups.
    labels: LabelSets,
    /// Bytes the table may take (its share of the memory budget); unbounded by default.
    max_bytes: Option<u64>,
}

/// What the table holds per goroutine it follows: its `g` pointer, its place in the
/// address order, its slot (28 bytes; each array also holds up to one chunk unused,
/// see [`Chunked`]). Every allocation of a read that grows with what the process lists
/// is checked against the table's bound before it is made, at its real size: these
/// arrays (for the declared length, before the table is read), the sort of new
/// entries, the read ranges (16 bytes each, at most one per `g`: `g`s far apart cost
/// 44 bytes each), the groups ([`group_bytes`]); the rest is bounded by constants (read
/// buffers, stacks walked and label sets read per chunk of [`WALK_CHUNK`] parks, the
/// retries of one batch). Measured by the unit test
/// `a_million_goroutines_fit_the_default_budget`: the first read of a million `g`s
/// side by side peaks at 28.45 bytes per `g`.
pub const TABLE_BYTES_PER_G: u64 = 8 + 4 + size_of::<Slot>() as u64;

/// What one group of parks holds at most, besides its stack's frames: its place in
/// `groups`, its entry in `group_of` (a hash map's slack included) and its site in a
/// read's result, each three times over while its vector or map grows (the old buffer
/// and the new one, twice as large, live together).
const GROUP_BYTES: u64 = 3
    * (size_of::<Option<Group>>()
        + 3 * (size_of::<(GroupKey, u32)>() + 1)
        + size_of::<GoroutineSite>()) as u64;

/// What a group whose stack has `frames` frames holds (see [`GROUP_BYTES`]).
fn group_bytes(frames: usize) -> u64 {
    GROUP_BYTES + (2 * size_of::<usize>() + frames * size_of::<u64>()) as u64
}

/// Parks dated per read at most (a GC cycle may date a million at once): the rest are
/// dated at the next reads, so the records of one read stay bounded.
const MAX_DATED_PER_READ: usize = 64 * 1024;

/// Why the `g` pointers were not loaded.
enum Loading {
    Read(GoroutineReadError),
    Memory(OverBudget),
}

impl From<GoroutineReadError> for Loading {
    fn from(e: GoroutineReadError) -> Self {
        Self::Read(e)
    }
}

impl From<OverBudget> for Loading {
    fn from(e: OverBudget) -> Self {
        Self::Memory(e)
    }
}

/// Why a read stopped before its end: past its time budget, or its table would pass
/// its memory bound.
enum Cut {
    Time,
    Memory(OverBudget),
}

impl From<OverBudget> for Cut {
    fn from(e: OverBudget) -> Self {
        Self::Memory(e)
    }
}

/// A park's identity in one word: goroutine id and park sequence.
fn member_key(goid: u64, seq: u8) -> u64 {
    (goid << 8) | u64::from(seq)
}

/// The bits of a fingerprint that hold the stack's size class.
const CLASS_BITS: u32 = 0x1f;
/// The runtime's smallest and largest goroutine stacks (`_StackMin`, `maxstacksize` on
/// 64-bit), as powers of two.
const MIN_STACK_SHIFT: u32 = 11;
const MAX_STACK_SHIFT: u32 = 30;

/// A goroutine's stack size as its power of two (the runtime allocates stacks of 2 KiB,
/// 4 KiB, ... 1 GiB); 0 when the bounds read are not a stack's.
fn stack_class(g: &GFields) -> u32 {
    let size = g.stack_hi.wrapping_sub(g.stack_lo);
    let shift = size.trailing_zeros();
    let plausible = size.is_power_of_two() && (MIN_STACK_SHIFT..=MAX_STACK_SHIFT).contains(&shift);
    if plausible { shift } else { 0 }
}

/// The bytes of a stack of class `class`, if known.
fn class_bytes(class: u32) -> Option<u64> {
    (class != 0).then(|| 1u64 << class)
}

/// What changes when a parked goroutine moves: its saved registers and wait reason, and
/// (its low 5 bits) its stack's size class, which the GC changes when it shrinks a
/// parked goroutine's stack.
fn fingerprint(g: &GFields) -> u32 {
    let mixed = (g.sp ^ g.pc.rotate_left(21) ^ g.bp.rotate_left(42) ^ u64::from(g.wait_reason))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((mixed >> 32) as u32 & !CLASS_BITS) | stack_class(g)
}

impl ParkedTable {
    /// Goroutines the table follows (every `allgs` entry).
    pub fn goroutines(&self) -> usize {
        self.slots.len()
    }

    /// Bounds what the table may take, bytes (checked before a read from the declared
    /// table length: a table over it is not read).
    pub fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = Some(max_bytes);
    }

    /// Heap bytes the table holds: the goroutines it follows, its read ranges, its
    /// groups of parked goroutines.
    pub fn heap_bytes(&self) -> u64 {
        self.gptrs.heap_bytes()
            + self.by_address.heap_bytes()
            + self.slots.heap_bytes()
            + (self.ranges.capacity() * size_of::<MergedRange>()) as u64
            + self.group_bytes
    }

    /// Whether the table may hold `needed` bytes (within its [`Self::set_max_bytes`]):
    /// asked before every allocation that grows with what the process lists.
    fn check(&mut self, needed: u64) -> Result<(), OverBudget> {
        match self.max_bytes {
            Some(limit) if needed > limit => Err(OverBudget {
                kind: MemoryKind::Goroutines,
                needed,
                limit,
            }),
            _ => {
                self.peak = self.peak.max(needed);
                Ok(())
            }
        }
    }

    /// Forgets everything but the bound: the next read starts afresh.
    fn reset(&mut self) {
        *self = Self {
            max_bytes: self.max_bytes,
            ..Self::default()
        };
    }

    /// Reads the table once; reports what changed since the previous read.
    pub fn read(
        &mut self,
        pid: u32,
        program: &GoProgram,
        bias: u64,
        bufs: &mut ReadBuffers,
        time_budget: Duration,
    ) -> Result<GoroutineTable, GoroutineReadError> {
        let deadline = Instant::now() + time_budget.min(MAX_TIME_BUDGET);
        // allglen first: the slice only grows, so a length read before the pointer never
        // runs past the array the pointer names.
        let allglen = read_word(pid, program.addrs.allglen.wrapping_add(bias))?;
        let allgs = read_word(pid, program.addrs.allgs.wrapping_add(bias))?;
        check_allglen(allglen)?;
        let over = |over| GoroutineReadError::OverMemoryBudget {
            goroutines: allglen,
            over,
        };
        // (A length of 0 is a misread: the runtime's table never shrinks.)
        if allglen > 0 {
            match self.load_pointers(pid, (allgs, allglen), program.layout.g_size) {
                Ok(()) => {}
                // Nothing was changed: the table stays for the next read.
                Err(Loading::Read(e)) => return Err(e),
                Err(Loading::Memory(e)) => {
                    self.reset();
                    return Err(over(e));
                }
            }
        }
        if let Some(g) = self.overlapping_g(program.layout.g_size) {
            self.reset();
            return Err(GoroutineReadError::OverlappingGs(g));
        }
        self.stack_budget = STACK_BYTES_PER_READ;
        self.statuses = StatusTable::of(&program.layout);
        self.labels.start_read();
        self.dated = 0;
        match self.read_all(pid, program, bias, bufs, deadline) {
            Ok(max_goid) => Ok(self.take_changes(max_goid)),
            // Part of the table was compared, part not: start over next time.
            Err(cut) => {
                self.reset();
                Err(match cut {
                    Cut::Time => GoroutineReadError::OverTimeBudget(time_budget),
                    Cut::Memory(e) => over(e),
                })
            }
        }
    }

    /// Reads the `g` pointers of the `allglen`-long `allgs` (in place), and makes the
    /// address order and the read ranges follow when they changed. Every array that
    /// grows with the table is checked against the table's bound before it grows: the
    /// arrays for `allglen` goroutines first (before the process's table is read at
    /// all), then each one made.
    fn load_pointers(
        &mut self,
        pid: u32,
        (allgs, allglen): (u64, u64),
        g_size: u64,
    ) -> Result<(), Loading> {
        let n = allglen as usize;
        let grown = |heap: u64, for_n: u64| heap.max(for_n);
        let arrays =
            self.gptrs.heap_bytes() + self.by_address.heap_bytes() + self.slots.heap_bytes();
        let needed = self.heap_bytes() - arrays
            + grown(self.gptrs.heap_bytes(), Chunked::<u64>::bytes_for(n))
            + grown(self.by_address.heap_bytes(), Chunked::<u32>::bytes_for(n))
            + grown(self.slots.heap_bytes(), Chunked::<Slot>::bytes_for(n));
        self.check(needed)?;
        let old = self.gptrs.len();
        let Some(changed_from) = read_allgs_into(pid, allgs, allglen, &mut self.gptrs)? else {
            return Ok(());
        };
        let n = self.gptrs.len();
        // The runtime appends to allgs: sort the new entries and merge them in.
        let from = if changed_from >= old {
            old
        } else {
            self.by_address.clear();
            0
        };
        let new_bytes = ((n - from) * size_of::<u32>()) as u64;
        let by_address = Chunked::<u32>::bytes_for(n).max(self.by_address.heap_bytes());
        self.check(self.heap_bytes() - self.by_address.heap_bytes() + by_address + new_bytes)?;
        let gptrs = &self.gptrs;
        let mut new: Vec<u32> = (from as u32..n as u32).collect();
        new.sort_unstable_by_key(|&i| gptrs[i as usize]);
        merge_sorted_into(&mut self.by_address, &new, |i| gptrs[i as usize]);
        drop(new);
        let slots = Chunked::<Slot>::bytes_for(n).max(self.slots.heap_bytes());
        self.check(self.heap_bytes() - self.slots.heap_bytes() + slots)?;
        // `g`s no longer listed leave their groups.
        for idx in n..self.slots.len() {
            let slot = self.slots[idx];
            if slot.group() != NO_GROUP {
                self.depart(slot);
            }
        }
        self.slots.resize(n, EMPTY);
        // The old ranges go before the new are made: never both.
        self.ranges = Vec::new();
        let count = count_ranges(n, |i| self.gptrs[self.by_address[i] as usize], g_size);
        self.check(self.heap_bytes() + (count * size_of::<MergedRange>()) as u64)?;
        let (gptrs, order) = (&self.gptrs, &self.by_address);
        self.ranges = merge_ranges(n, |i| gptrs[order[i] as usize], g_size, count);
        Ok(())
    }

    /// A `g` that starts within the `g` before it in address order, if any. Every `g`
    /// is an allocation of its own, so a real table never has one; a hostile one that
    /// lists one `g` many times (or `g`s a word apart) would make a few bytes of its
    /// memory pass for millions of goroutines (4M of them cost 250 MB here: found by the
    /// goroutines fuzz target, seed grow-4m-goroutines).
    fn overlapping_g(&self, g_size: u64) -> Option<u64> {
        let addr = |i: usize| self.gptrs[self.by_address[i] as usize];
        (1..self.by_address.len())
            .find(|&i| addr(i) < addr(i - 1).saturating_add(g_size))
            .map(addr)
    }

    /// Reads every `g`; notes departures and collects the parks to walk. Returns the
    /// newest live goroutine id.
    fn read_all(
        &mut self,
        pid: u32,
        program: &GoProgram,
        bias: u64,
        bufs: &mut ReadBuffers,
        deadline: Instant,
    ) -> Result<u64, Cut> {
        let ReadBuffers { gs: buf, stacks } = bufs;
        let changed = &mut Vec::new();
        let layout = &program.layout;
        let size = layout.g_size as usize;
        let mut max_goid = 0;
        // The `g`s of the current batch's ranges that faulted: at most a batch's.
        let mut retry = Vec::new();
        let ranges = std::mem::take(&mut self.ranges);
        let by_address = std::mem::take(&mut self.by_address);
        // Where the next range's part of `by_address` begins.
        let mut first = 0usize;
        for batch in batches(&ranges, |r| r.len as usize) {
            if Instant::now() > deadline {
                return Err(Cut::Time);
            }
            let plan: Vec<(u64, usize)> = batch.iter().map(|r| (r.start, r.len as usize)).collect();
            let ok = read_batch(pid, &plan, buf);
            let mut at = 0usize;
            for (k, range) in batch.iter().enumerate() {
                for member in first..range.end as usize {
                    let idx = by_address[member];
                    if !ok[k] {
                        retry.push(idx);
                        continue;
                    }
                    let off = at + (self.gptrs[idx as usize] - range.start) as usize;
                    if let Some(g) = buf
                        .get(off..off + size)
                        .and_then(|b| parse_g(b, layout, &self.statuses))
                    {
                        max_goid = max_goid.max(self.observe(idx, &g, program, bias, changed));
                    }
                    if changed.len() >= WALK_CHUNK {
                        self.add_parks(pid, program, bias, stacks, changed)?;
                    }
                }
                first = range.end as usize;
                at += range.len as usize;
            }
            // A merged range that faulted (part of it freed): g by g.
            let goid = self.read_each(pid, (program, bias), (buf, stacks), &retry, changed)?;
            max_goid = max_goid.max(goid);
            retry.clear();
        }
        self.ranges = ranges;
        self.by_address = by_address;
        self.add_parks(pid, program, bias, stacks, changed)?;
        if Instant::now() > deadline {
            return Err(Cut::Time);
        }
        Ok(max_goid)
    }

    /// Reads the `g`s at `idxs` one by one (their merged range faulted), walking new
    /// parks as it goes. Returns the newest live goroutine id among them.
    fn read_each(
        &mut self,
        pid: u32,
        (program, bias): (&GoProgram, u64),
        (buf, stacks): (&mut Vec<u8>, &mut Vec<u8>),
        idxs: &[u32],
        changed: &mut Vec<(u32, GFields)>,
    ) -> Result<u64, Cut> {
        let layout = &program.layout;
        let size = layout.g_size as usize;
        let mut max_goid = 0;
        for chunk in idxs.chunks(1024) {
            let plan: Vec<(u64, usize)> = chunk
                .iter()
                .map(|&i| (self.gptrs[i as usize], size))
                .collect();
            let ok = read_batch(pid, &plan, buf);
            for (i, &idx) in chunk.iter().enumerate() {
                if let Some(g) = ok[i]
                    .then(|| buf.get(i * size..(i + 1) * size))
                    .flatten()
                    .and_then(|b| parse_g(b, layout, &self.statuses))
                {
                    max_goid = max_goid.max(self.observe(idx, &g, program, bias, changed));
                }
            }
            self.add_parks(pid, program, bias, stacks, changed)?;
        }
        Ok(max_goid)
    }

    /// Compares one `g` with what its slot saw: unmoved costs nothing more; an ended
    /// park departs; a new park is collected. Returns the goid when the g is live.
    fn observe(
        &mut self,
        idx: u32,
        g: &GFields,
        program: &GoProgram,
        bias: u64,
        changed: &mut Vec<(u32, GFields)>,
    ) -> u64 {
        let slot = self.slots[idx as usize];
        let parked = is_parked(g.status);
        // The same park (same goroutine, not run since): counted already. A goroutine the
        // runtime marks leaked, or no longer, is still the same park.
        let same_park = parked && slot.group() != NO_GROUP && slot.key == member_key(g.goid, g.seq);
        if same_park && slot.moved == fingerprint(g) {
            if slot.group & DATED == 0 && g.waitsince != 0 {
                self.date(idx, g);
            }
            self.mark_leaked(idx, g.status == GoStatus::Leaked);
            return g.goid;
        }
        if same_park {
            // Its registers moved without it running (the GC shrank its stack): walked
            // again, it stays where it was unless its stack now says otherwise.
            changed.push((idx, *g));
            return g.goid;
        }
        if slot.group() != NO_GROUP {
            self.depart(slot);
            self.slots[idx as usize] = EMPTY;
        }
        if parked && !self.system.contains(program, bias, g.startpc) {
            changed.push((idx, *g));
        }
        if is_live(g.status) { g.goid } else { 0 }
    }

    fn depart(&mut self, slot: Slot) {
        if let Some(Some(group)) = self.groups.get_mut(slot.group() as usize) {
            group.parked = group.parked.saturating_sub(1);
            if slot.group & LEAKED != 0 {
                group.leaked = group.leaked.saturating_sub(1);
            }
            group.count_stack(slot.moved & CLASS_BITS, false);
            group.departed.push(GoroutineMember {
                goid: slot.key >> 8,
                seq: slot.key as u8,
                waitsince_ns: 0,
            });
        }
    }

    /// A park that goes on was found by a GC cycle: its `g.waitsince` dates it.
    fn date(&mut self, idx: u32, g: &GFields) {
        if self.dated >= MAX_DATED_PER_READ {
            // Dated at a next read (its flag stays clear).
            return;
        }
        self.dated += 1;
        let slot = &mut self.slots[idx as usize];
        if let Some(Some(group)) = self.groups.get_mut(slot.group() as usize) {
            group.dated.push(GoroutineMember {
                goid: g.goid,
                seq: g.seq,
                waitsince_ns: g.waitsince,
            });
        }
        slot.group |= DATED;
    }

    /// Follows the runtime's leak mark of a park that goes on (set by a goroutine-leak GC
    /// cycle, cleared by the next one): its group's count of marked members follows.
    fn mark_leaked(&mut self, idx: u32, leaked: bool) {
        let slot = &mut self.slots[idx as usize];
        if (slot.group & LEAKED != 0) == leaked {
            return;
        }
        slot.group ^= LEAKED;
        if let Some(Some(group)) = self.groups.get_mut(slot.group() as usize) {
            if leaked {
                group.leaked += 1;
            } else {
                group.leaked = group.leaked.saturating_sub(1);
            }
        }
    }

    /// Walks the stacks of new parks and counts them at their groups; a `g` that moved
    /// while its stack was read (a torn read) is left for the next read.
    fn add_parks(
        &mut self,
        pid: u32,
        program: &GoProgram,
        bias: u64,
        buf: &mut Vec<u8>,
        changed: &mut Vec<(u32, GFields)>,
    ) -> Result<(), OverBudget> {
        if changed.is_empty() {
            return Ok(());
        }
        let walked = walk_stacks(
            pid,
            (program, bias),
            changed.iter().map(|(_, g)| g),
            buf,
            &mut self.stack_budget,
        );
        let still = reread(
            pid,
            (&program.layout, &self.statuses),
            changed,
            &self.gptrs,
            buf,
        );
        let labels = self.label_ids(pid, program, changed, buf);
        for ((((idx, g), stack), now), labels) in
            changed.drain(..).zip(walked).zip(still).zip(labels)
        {
            if now != Some(g) {
                // Torn: the next read walks it again (a moved park stays counted).
                continue;
            }
            let group = self.group_for(&g, stack, labels, &program.layout)?;
            let old = self.slots[idx as usize];
            if old.group() == group {
                // The same park at the same site, its registers (and maybe the size of
                // its stack) moved.
                if let Some(Some(entry)) = self.groups.get_mut(group as usize) {
                    entry.count_stack(old.moved & CLASS_BITS, false);
                    entry.count_stack(stack_class(&g), true);
                }
                self.slots[idx as usize].moved = fingerprint(&g);
                if old.group & DATED == 0 && g.waitsince != 0 {
                    self.date(idx, &g);
                }
                self.mark_leaked(idx, g.status == GoStatus::Leaked);
                continue;
            }
            if old.group() != NO_GROUP {
                self.depart(old);
            }
            self.arrive(idx, &g, group);
        }
        Ok(())
    }

    /// A new park joins `group`.
    fn arrive(&mut self, idx: u32, g: &GFields, group: u32) {
        let leaked = g.status == GoStatus::Leaked;
        if let Some(Some(entry)) = self.groups.get_mut(group as usize) {
            entry.parked += 1;
            entry.leaked += u32::from(leaked);
            entry.count_stack(stack_class(g), true);
            entry.arrived.push(GoroutineMember {
                goid: g.goid,
                seq: g.seq,
                waitsince_ns: g.waitsince,
            });
        }
        let mut flags = 0;
        if g.waitsince != 0 {
            flags |= DATED;
        }
        if leaked {
            flags |= LEAKED;
        }
        self.slots[idx as usize] = Slot {
            key: member_key(g.goid, g.seq),
            moved: fingerprint(g),
            group: group | flags,
        };
    }

    /// The label set of each changed park: a park that goes on keeps its group's (its
    /// labels cannot change without it running); a new one's is read, once per set
    /// pointer in this read.
    fn label_ids(
        &mut self,
        pid: u32,
        program: &GoProgram,
        changed: &[(u32, GFields)],
        buf: &mut Vec<u8>,
    ) -> Vec<u32> {
        let kept = |table: &Self, idx: u32, g: &GFields| {
            let slot = table.slots[idx as usize];
            if slot.group() == NO_GROUP || slot.key != member_key(g.goid, g.seq) {
                return None;
            }
            table
                .groups
                .get(slot.group() as usize)?
                .as_ref()
                .map(|group| group.labels)
        };
        let ptrs: Vec<u64> = changed
            .iter()
            .map(|(idx, g)| {
                if kept(self, *idx, g).is_some() {
                    0
                } else {
                    g.labels
                }
            })
            .collect();
        let repr = LabelRepr::of(program.release);
        let mut ids = self.labels.ids(pid, repr, &ptrs, buf);
        for (id, (idx, g)) in ids.iter_mut().zip(changed) {
            if let Some(kept) = kept(self, *idx, g) {
                *id = kept;
            }
        }
        ids
    }

    fn group_for(
        &mut self,
        g: &GFields,
        stack: Vec<u64>,
        labels: u32,
        layout: &GoRuntimeLayout,
    ) -> Result<u32, OverBudget> {
        let key = (g.wait_reason, StackKey::from(stack), g.gopc, labels);
        if let Some(&group) = self.group_of.get(&key) {
            return Ok(group);
        }
        // A new site: charged before it is made (a hostile process may give every
        // goroutine a stack of its own).
        let bytes = group_bytes(key.1.len());
        self.check(self.heap_bytes() + bytes)?;
        self.group_bytes += bytes;
        self.labels.hold(labels);
        let wait_label = self
            .wait_labels
            .entry(g.wait_reason)
            .or_insert_with(|| match layout.wait_reason(g.wait_reason) {
                Some(r) if !r.is_empty() => r.into(),
                _ => format!("waitReason({})", g.wait_reason).into(),
            })
            .clone();
        let group = Group::new(g.wait_reason, wait_label, key.1.clone(), g.gopc, labels);
        let index = match self.free_groups.pop() {
            Some(i) => {
                self.groups[i as usize] = Some(group);
                i
            }
            None => {
                self.groups.push(Some(group));
                (self.groups.len() - 1) as u32
            }
        };
        self.group_of.insert(key, index);
        Ok(index)
    }

    /// Every group's population and changes; empty groups are forgotten.
    fn take_changes(&mut self, max_goid: u64) -> GoroutineTable {
        let mut sites = Vec::new();
        for (i, slot) in self.groups.iter_mut().enumerate() {
            let Some(group) = slot else { continue };
            sites.push(GoroutineSite {
                wait_reason: group.wait_label.clone(),
                stack: group.stack.clone(),
                gopc: group.gopc,
                labels: self.labels.get(group.labels).cloned(),
                parked: group.parked,
                runtime_leaked: group.leaked,
                arrived: std::mem::take(&mut group.arrived),
                departed: std::mem::take(&mut group.departed),
                dated: std::mem::take(&mut group.dated),
                stack_bytes: StackBytes::goroutines(group.stacks, group.stack_bytes),
            });
            if group.parked == 0 {
                let key = (
                    group.wait_reason,
                    group.stack.clone(),
                    group.gopc,
                    group.labels,
                );
                self.group_of.remove(&key);
                self.group_bytes = self
                    .group_bytes
                    .saturating_sub(group_bytes(group.stack.len()));
                self.labels.release(group.labels);
                *slot = None;
                self.free_groups.push(i as u32);
            }
        }
        self.labels.sweep();
        GoroutineTable { sites, max_goid }
    }
}

/// Re-reads the `g`s of new parks, to tell torn stack reads.
fn reread(
    pid: u32,
    (layout, statuses): (&GoRuntimeLayout, &StatusTable),
    gs: &[(u32, GFields)],
    gptrs: &Chunked<u64>,
    buf: &mut Vec<u8>,
) -> Vec<Option<GFields>> {
    let size = layout.g_size as usize;
    let mut out = Vec::with_capacity(gs.len());
    for chunk in gs.chunks((BATCH_BYTES / size.max(1)).max(1)) {
        let plan: Vec<(u64, usize)> = chunk
            .iter()
            .map(|(i, _)| (gptrs[*i as usize], size))
            .collect();
        let ok = read_batch(pid, &plan, buf);
        for (i, ok) in ok.iter().enumerate() {
            out.push(
                ok.then(|| buf.get(i * size..(i + 1) * size))
                    .flatten()
                    .and_then(|b| parse_g(b, layout, statuses)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::go::labels::NO_LABELS;

    /// A goroutine parked at one place with an 8 KiB stack: the tests' common `g`.
    fn parked_g(goid: u64, seq: u8, status: GoStatus) -> GFields {
        GFields {
            status,
            goid,
            seq,
            wait_reason: 7,
            sp: 0xc000_1000,
            pc: 0x40_1000,
            bp: 0xc000_1040,
            stack_lo: 0xc000_0000,
            stack_hi: 0xc000_2000,
            gopc: 0x40_2000,
            startpc: 0x40_3000,
            waitsince: 0,
            labels: 0,
        }
    }

    /// Check that a table listing a `g` twice, or `g`s closer than a `g`'s size, is no
    /// goroutine table, and that `g`s side by side are one.
    #[test]
    fn overlapping_gs_are_found() {
        let table = |gptrs: Vec<u64>| {
            let mut table = ParkedTable::default();
            assert!(load(&mut table, &gptrs).is_ok());
            table.overlapping_g(456)
        };
        assert_eq!(table(vec![0xc000_0000, 0xc000_01c8, 0xc000_1000]), None);
        assert_eq!(
            table(vec![0xc000_1000, 0xc000_0000, 0xc000_1000]),
            Some(0xc000_1000)
        );
        assert_eq!(table(vec![0xc000_0000, 0xc000_0008]), Some(0xc000_0008));
        // Appended later (an incremental refresh) counts the same.
        let mut grown = ParkedTable::default();
        // (On the heap: a constant's page of this test's file may not be resident.)
        assert!(load(&mut grown, &Vec::from([0xc000_0000, 0xc000_1000])).is_ok());
        assert!(
            load(
                &mut grown,
                &Vec::from([0xc000_0000, 0xc000_1000, 0xc000_0100])
            )
            .is_ok()
        );
        assert_eq!(grown.overlapping_g(456), Some(0xc000_0100));
    }

    /// Loads `gptrs` (an `allgs` array in this process's memory, read back through
    /// process_vm_readv like any other process's) as the table's `g` pointers, of go1.26
    /// `g`s (456 bytes).
    fn load(table: &mut ParkedTable, gptrs: &[u64]) -> Result<(), Loading> {
        let table_at = (gptrs.as_ptr() as u64, gptrs.len() as u64);
        table.load_pointers(std::process::id(), table_at, 456)
    }

    /// The default budget's `goroutines` quota.
    fn default_quota() -> u64 {
        let budget = crate::budget::MemoryBudget::new(crate::budget::DEFAULT_MEMORY_BUDGET);
        budget.quota(MemoryKind::Goroutines)
    }

    /// Check that a table of `g`s far apart (each its own read range: 16 bytes more per
    /// `g` than the table's arrays, which the declared length is checked against) is
    /// refused when its ranges would pass the bound, before they are made, with the
    /// typed over-budget error; and that what was checked is what the table then holds.
    #[test]
    fn ranges_past_the_bound_are_refused_before_they_are_made() {
        let n = 100_000usize;
        // 1 MiB apart: no two merge.
        let gptrs: Vec<u64> = (0..n as u64).map(|i| 0x10_0000_0000 + (i << 20)).collect();
        let mut fits = ParkedTable::default();
        assert!(load(&mut fits, &gptrs).is_ok());
        assert_eq!(fits.ranges.len(), n);
        let arrays = fits.heap_bytes() - (n * size_of::<MergedRange>()) as u64;
        assert_eq!(fits.peak, fits.heap_bytes(), "the peak is the table read");
        let mut table = ParkedTable::default();
        table.set_max_bytes(arrays + (n * size_of::<MergedRange>() / 2) as u64);
        let Err(Loading::Memory(over)) = load(&mut table, &gptrs) else {
            panic!("a table past its bound must be refused");
        };
        assert_eq!(over.kind, MemoryKind::Goroutines);
        assert_eq!(over.needed, fits.heap_bytes());
        assert_eq!(
            table.ranges.capacity(),
            0,
            "refused before the ranges were made"
        );
        assert!(table.peak <= arrays, "nothing past the bound was allocated");
        // A new site past the bound is refused the same way, before it is made.
        let layout = GoRuntimeLayout::for_version(1, 26).expect("go1.26 layout");
        let g = parked_g(1, 0, GoStatus::Waiting);
        let mut small = ParkedTable::default();
        small.set_max_bytes(GROUP_BYTES);
        let refused = small.group_for(&g, vec![0x40_1000; 64], NO_LABELS, &layout);
        assert_eq!(refused.map_err(|e| e.kind), Err(MemoryKind::Goroutines));
        assert!(small.groups.is_empty() && small.group_bytes == 0);
    }

    /// Check the budget arithmetic of the bench's process (`cargo xtask bench`: a
    /// million goroutines parked at one site, their `g`s side by side) and more: the
    /// default `--memory-budget` (96 MiB) gives the `goroutines` share 32 MiB
    /// (33,554,432 bytes); the first read of a million such `g`s peaks at 28.45 bytes
    /// per `g` (28,452,592 bytes: 28 per `g` and the last chunk of each array), the
    /// same table grown by 2% stays within it, and so does a table of 1.19 million.
    #[test]
    fn a_million_goroutines_fit_the_default_budget() {
        let quota = default_quota();
        assert_eq!(quota, 32 << 20);
        for n in [1_000_000usize, 1_190_000] {
            let gptrs: Vec<u64> = (0..n as u64).map(|i| 0xc000_0000 + i * 456).collect();
            let mut table = ParkedTable::default();
            table.set_max_bytes(quota);
            assert!(load(&mut table, &gptrs).is_ok(), "{n} goroutines refused");
            // As a Go program grows: the same table and 2% more.
            let mut more = gptrs.clone();
            more.extend((n as u64..n as u64 * 51 / 50).map(|i| 0xc000_0000 + i * 456));
            let per_g = table.peak as f64 / n as f64;
            eprintln!(
                "{n} goroutines: peak {} bytes ({per_g:.2} per g) of a {quota}-byte quota",
                table.peak
            );
            assert!(per_g < 28.5, "{per_g} bytes per g");
            if n == 1_000_000 {
                assert!(load(&mut table, &more).is_ok(), "a growing table refused");
                assert!(table.peak <= quota);
            }
        }
        // Past the share, refused by the declared length alone, before any read.
        let huge = quota / TABLE_BYTES_PER_G + 100_000;
        let mut table = ParkedTable::default();
        table.set_max_bytes(quota);
        // (Where allgs would be does not matter: nothing is read.)
        let refused = table.load_pointers(std::process::id(), (0x1000, huge), 456);
        assert!(matches!(refused, Err(Loading::Memory(o)) if o.kind == MemoryKind::Goroutines));
        assert_eq!(table.gptrs.heap_bytes(), 0);
    }

    /// The test program that poses as a go1.26 binary (`hostile_go`, a C program built
    /// here), analysed.
    fn posing_go_program() -> GoProgram {
        let dir = test_support::target_dir().join("unit-programs");
        let path = test_support::programs::Program::HostileGo
            .build(&dir)
            .unwrap_or_else(|e| panic!("{e}"));
        let data = std::fs::read(path).unwrap();
        crate::sources::go::executable::analyse_go_bytes(&data)
            .expect("hostile_go analyses")
            .expect("hostile_go is taken for Go")
    }

    /// Check that a whole read (through [`ParkedTable::read`], of `g`s far apart in this
    /// process's memory, each its own read range) is refused with the typed over-budget
    /// error when its ranges would pass the table's bound, and read when they fit; and
    /// that what the read then holds is what was checked.
    #[test]
    fn a_read_past_the_bound_is_refused_with_the_typed_error() {
        let program = posing_go_program();
        let size = program.layout.g_size as usize;
        // `g`s (all zero: idle) further apart than reads merge over.
        let n = 2_000usize;
        let spacing = size + 4096 + 64;
        let gs = vec![0u8; n * spacing];
        let gptrs: Vec<u64> = (0..n)
            .map(|i| gs.as_ptr() as u64 + (i * spacing) as u64)
            .collect();
        // The slice header and length words where the program's symbols say, at a load
        // bias that puts them in `words`.
        let (allgs, allglen) = (program.addrs.allgs, program.addrs.allglen);
        let low = allgs.min(allglen);
        let mut words = vec![0u64; ((allgs.max(allglen) - low) / 8 + 3) as usize];
        let at = |addr: u64| ((addr - low) / 8) as usize;
        words[at(allgs)..at(allgs) + 3].copy_from_slice(&[
            gptrs.as_ptr() as u64,
            n as u64,
            n as u64,
        ]);
        words[at(allglen)] = n as u64;
        let bias = (words.as_ptr() as u64).wrapping_sub(low);
        let read = |table: &mut ParkedTable| {
            let mut bufs = ReadBuffers::default();
            table.read(
                std::process::id(),
                &program,
                bias,
                &mut bufs,
                Duration::from_secs(60),
            )
        };
        let mut fits = ParkedTable::default();
        assert_eq!(read(&mut fits).map(|t| t.sites.len()), Ok(0));
        assert_eq!((fits.goroutines(), fits.ranges.len()), (n, n));
        assert_eq!(fits.peak, fits.heap_bytes());
        let ranges = (n * size_of::<MergedRange>()) as u64;
        let mut table = ParkedTable::default();
        table.set_max_bytes(fits.heap_bytes() - ranges / 2);
        match read(&mut table) {
            Err(GoroutineReadError::OverMemoryBudget { goroutines, over }) => {
                assert_eq!((goroutines, over.kind), (n as u64, MemoryKind::Goroutines));
                assert_eq!(over.needed, fits.heap_bytes());
            }
            other => panic!("a read past its bound must be refused, got {other:?}"),
        }
        assert_eq!(table.heap_bytes(), 0, "nothing kept of a refused read");
        drop(gs);
    }

    /// Check that a `g` no longer listed (a table read shorter) leaves its group: its
    /// park is reported ended, not counted on.
    #[test]
    fn gs_no_longer_listed_depart() {
        let layout = GoRuntimeLayout::for_version(1, 26).expect("go1.26 layout");
        let mut table = ParkedTable::default();
        let gptrs: Vec<u64> = (0..3).map(|i| 0xc000_0000 + i * 0x1000).collect();
        assert!(load(&mut table, &gptrs).is_ok());
        let g = parked_g(9, 1, GoStatus::Waiting);
        let group = table
            .group_for(&g, vec![0x40_1000], NO_LABELS, &layout)
            .unwrap();
        table.arrive(2, &g, group);
        assert_eq!(table.take_changes(9).sites[0].parked, 1);
        assert!(load(&mut table, &gptrs[..2]).is_ok());
        assert_eq!(table.goroutines(), 2);
        let site = table.take_changes(9).sites.remove(0);
        assert_eq!((site.parked, site.departed.len()), (0, 1));
    }

    /// Check that a park's key keeps goroutine id and sequence apart, that moving the
    /// saved registers changes the fingerprint, and that the fingerprint carries the
    /// stack's size class.
    #[test]
    fn park_identity_and_movement() {
        assert_eq!(member_key(5, 3) >> 8, 5);
        assert_eq!(member_key(5, 3) as u8, 3);
        let g = parked_g(5, 3, GoStatus::Waiting);
        let moved = GFields { sp: g.sp + 64, ..g };
        assert_ne!(fingerprint(&g), fingerprint(&moved));
        assert_eq!(fingerprint(&g) & CLASS_BITS, 13, "an 8 KiB stack");
        let shrunk = GFields {
            stack_lo: 0xc000_1000,
            ..g
        };
        assert_eq!(fingerprint(&shrunk) & CLASS_BITS, 12, "shrunk to 4 KiB");
        assert_eq!(
            fingerprint(&g),
            fingerprint(&GFields {
                gopc: 1,
                waitsince: 77,
                ..g
            })
        );
    }

    /// Check that a park the runtime marks leaked, then not, then again (each
    /// goroutine-leak GC cycle resets and re-marks) stays one member: no arrival or
    /// departure, the site's count of runtime-proven members following the marks.
    #[test]
    fn runtime_leak_marks_flip_without_churn() {
        let layout = GoRuntimeLayout::for_version(1, 27).expect("go1.27 layout");
        let mut table = ParkedTable {
            slots: [EMPTY; 2].into_iter().collect(),
            ..ParkedTable::default()
        };
        let g = |goid, status| parked_g(goid, 1, status);
        let group = table
            .group_for(&g(5, GoStatus::Leaked), vec![0x40_1000], NO_LABELS, &layout)
            .unwrap();
        table.arrive(0, &g(5, GoStatus::Leaked), group);
        table.arrive(1, &g(6, GoStatus::Waiting), group);
        let read = |table: &mut ParkedTable| {
            let site = table.take_changes(6).sites.remove(0);
            (
                site.parked,
                site.runtime_leaked,
                site.arrived.len(),
                site.departed.len(),
            )
        };
        assert_eq!(read(&mut table), (2, 1, 2, 0));
        table.mark_leaked(0, false);
        table.mark_leaked(1, false);
        assert_eq!(read(&mut table), (2, 0, 0, 0));
        table.mark_leaked(0, true);
        table.mark_leaked(1, true);
        table.mark_leaked(1, true);
        assert_eq!(read(&mut table), (2, 2, 0, 0));
        let slot = table.slots[0];
        table.depart(slot);
        assert_eq!(read(&mut table), (1, 1, 0, 1));
        // The stack of the one left (8 KiB), its neighbour's gone with it.
        let site = table.take_changes(6).sites.remove(0);
        assert_eq!(site.stack_bytes, StackBytes::goroutines(1, 8192));
    }

    /// Check that stack sizes are classes of the runtime's powers of two, that bounds
    /// that are not a stack's count as unknown, and that a group's running sum follows
    /// parks arriving and leaving, unknown ones left out.
    #[test]
    fn stack_classes_and_running_sums() {
        let g = |lo: u64, hi: u64| GFields {
            status: GoStatus::Waiting,
            goid: 1,
            seq: 0,
            wait_reason: 0,
            sp: 0,
            pc: 0,
            bp: 0,
            stack_lo: lo,
            stack_hi: hi,
            gopc: 0,
            startpc: 0,
            waitsince: 0,
            labels: 0,
        };
        assert_eq!(stack_class(&g(0xc000_0000, 0xc000_0800)), 11, "2 KiB");
        assert_eq!(stack_class(&g(0, 1 << 30)), 30, "1 GiB");
        assert_eq!(stack_class(&g(0, 1 << 31)), 0, "over maxstacksize");
        assert_eq!(stack_class(&g(0, 3000)), 0, "not a power of two");
        assert_eq!(stack_class(&g(10, 5)), 0, "upside down");
        assert_eq!(stack_class(&g(0, 1024)), 0, "under _StackMin");
        let mut group = Group::new(0, "chan send".into(), vec![1].into(), 0, NO_LABELS);
        group.count_stack(11, true);
        group.count_stack(13, true);
        group.count_stack(0, true);
        assert_eq!((group.stacks, group.stack_bytes), (2, 2048 + 8192));
        group.count_stack(13, false);
        group.count_stack(0, false);
        assert_eq!((group.stacks, group.stack_bytes), (1, 2048));
    }
}
