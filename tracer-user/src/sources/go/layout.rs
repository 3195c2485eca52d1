//! Where the Go runtime keeps a goroutine's state inside `runtime.g`, and what
//! its `waitReason` values are called, for the Go version that built a binary.
//!
//! Two sources, the binary's own first:
//!
//! - [`GoRuntimeLayout::from_dwarf`]: the member offsets of `runtime.g`,
//!   `runtime.gobuf` and `runtime.stack` from the binary's DWARF, and the
//!   wait-reason names from the `runtime.waitReasonStrings` array (an
//!   `[N]string` in the binary's data: each string header's pointer is
//!   resolved to the file's bytes).
//! - [`GoRuntimeLayout::for_version`]: the committed table `layouts.json`,
//!   one entry per supported `major.minor`, which `cargo xtask go-layouts`
//!   regenerates by building `tracer-user/tests/go/layoutprobe` with each
//!   supported toolchain and running `leakscope debug go-layout` on it. This
//!   is what stripped binaries (`-ldflags="-s -w"`, no DWARF) get.
//!
//! The layout of `runtime.g` changes between minor versions only (fields are
//! added, e.g. `syscallbp` in Go 1.23; `gobuf.ret` went away in Go 1.25), and
//! waitReason values are renumbered when reasons are added, so a table keyed
//! by `major.minor` is enough.

use std::{
    borrow::Cow,
    collections::HashMap,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use object::{Object, ObjectSection};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{
    buildinfo::{self, GoVersion},
    elf::ElfImage,
};

/// The committed per-version table (see `cargo xtask go-layouts`).
const LAYOUTS_JSON: &str = include_str!("layouts.json");

const PF_W: u32 = 2;
const PF_X: u32 = 1;
/// No wait reason is anywhere near this long; longer means we misread.
const MAX_WAIT_REASON_LEN: u64 = 128;
/// `runtime.g` is ~450 bytes; the reader copies whole ones.
const MAX_G_SIZE: u64 = 4096;
/// Go has ~50 wait reasons; far more means we misread the array's size.
const MAX_WAIT_REASONS: u64 = 1024;

/// Why a layout could not be read from a binary.
#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("cannot read {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("not an ELF file: {0}")]
    NotElf(String),
    #[error("cannot read the DWARF: {0}")]
    Dwarf(String),
    #[error("DWARF section {section} declares {size} bytes uncompressed")]
    DwarfTooLarge { section: &'static str, size: u64 },
    #[error("the DWARF has no {0} type")]
    MissingType(&'static str),
    #[error("the DWARF's {ty} has no member {member}")]
    MissingMember {
        ty: &'static str,
        member: &'static str,
    },
    #[error("the DWARF has no constant {0}")]
    MissingConstant(&'static str),
    #[error("the DWARF's goroutine status constants are implausible: {0}")]
    Statuses(String),
    #[error("cannot read runtime.waitReasonStrings: {0}")]
    WaitReasons(String),
    #[error("implausible runtime.g layout: {0}")]
    Implausible(String),
    #[error("cannot tell which Go version built the binary: {0}")]
    Version(String),
}

/// Offsets (bytes from the start of a `runtime.g`) of the fields leakscope
/// reads, for one Go `major.minor` on x86-64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoRuntimeLayout {
    /// `go1.26` (major.minor).
    pub version: String,
    pub g_size: u64,
    pub g_stack_lo: u64,
    pub g_stack_hi: u64,
    pub g_sched_sp: u64,
    pub g_sched_pc: u64,
    pub g_sched_bp: u64,
    pub g_syscallsp: u64,
    pub g_syscallpc: u64,
    /// Go 1.23 and later.
    pub g_syscallbp: Option<u64>,
    /// A `uint32` (an `atomic.Uint32` wrapping one since Go 1.20).
    pub g_atomicstatus: u64,
    pub g_goid: u64,
    pub g_waitsince: u64,
    /// A `uint8`.
    pub g_waitreason: u64,
    pub g_gopc: u64,
    pub g_startpc: u64,
    pub g_parentgoid: Option<u64>,
    /// `trackingSeq`, a `uint8` bumped every time the goroutine stops running: unchanged
    /// between two reads, the goroutine has not woken in between (the goroutine's
    /// analogue of a thread's voluntary context-switch count).
    #[serde(default)]
    pub g_tracking_seq: Option<u64>,
    /// `labels`, an `unsafe.Pointer` to the goroutine's pprof label set (nil when it
    /// has none): a `*labelMap` (a Go map) before Go 1.24's sorted `[]label` slice.
    pub g_labels: u64,
    /// Go's name of each goroutine status value (`runtime._G*` constants), index =
    /// value: `_Gidle`, `_Grunnable`, ..., `_Gwaiting` (4), ..., and from Go 1.26
    /// `_Gleaked` (10) and `_Gdeadextra` (11). Values without a constant are "".
    pub statuses: Vec<String>,
    /// `_Gscan`: the bit the GC ORs into a status while it scans the stack.
    pub status_scan_bit: u32,
    /// Go's name of each waitReason value, index = value ("chan receive",
    /// "select", ...).
    pub wait_reasons: Vec<String>,
}

/// A goroutine's status (`g.atomicstatus` with the GC's scan bit masked), by the
/// runtime's own constant names for the Go version, so renumbered or new statuses
/// never read as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoStatus {
    /// `_Gidle`: just allocated, not initialised.
    Idle,
    /// `_Grunnable`: on a run queue.
    Runnable,
    /// `_Grunning`: on a thread.
    Running,
    /// `_Gsyscall`: in a system call.
    Syscall,
    /// `_Gwaiting`: parked by `gopark` (a wait reason says on what).
    Waiting,
    /// `_Gdead`: unused (exited, or on a free list).
    Dead,
    /// `_Gcopystack`: its stack is being moved.
    CopyStack,
    /// `_Gpreempted`: stopped itself for a `suspendG`.
    Preempted,
    /// `_Gleaked` (Go 1.26+): a parked goroutine the GC proved can never be woken
    /// (set by a `goroutineleak` profile's GC cycle, until the next one).
    Leaked,
    /// `_Gdeadextra` (Go 1.26+): a dead `g` attached to an extra M for cgo callbacks.
    DeadExtra,
    /// A value this layout has no name for (or a name leakscope does not know).
    Other(u32),
}

impl GoStatus {
    /// The runtime's constant name without `runtime.` (`_Gwaiting`) → status.
    fn from_name(name: &str, value: u32) -> GoStatus {
        match name {
            "_Gidle" => GoStatus::Idle,
            "_Grunnable" => GoStatus::Runnable,
            "_Grunning" => GoStatus::Running,
            "_Gsyscall" => GoStatus::Syscall,
            "_Gwaiting" => GoStatus::Waiting,
            "_Gdead" => GoStatus::Dead,
            "_Gcopystack" => GoStatus::CopyStack,
            "_Gpreempted" => GoStatus::Preempted,
            "_Gleaked" => GoStatus::Leaked,
            "_Gdeadextra" => GoStatus::DeadExtra,
            _ => GoStatus::Other(value),
        }
    }
}

/// Where a layout came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutSource {
    /// The binary's own DWARF.
    Dwarf,
    /// The committed per-version table.
    Table,
}

impl GoRuntimeLayout {
    /// From the binary's DWARF (`runtime.g` members, `runtime.gobuf`,
    /// `runtime.stack`) plus the wait-reason strings read from
    /// `runtime.waitReasonStrings`. `Ok(None)` when the binary has no DWARF.
    pub fn from_dwarf(path: impl AsRef<Path>) -> Result<Option<Self>, LayoutError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|err| LayoutError::Io {
            path: path.to_path_buf(),
            err,
        })?;
        Self::from_dwarf_bytes(&data)
    }

    /// [`Self::from_dwarf`] on a binary's bytes.
    pub fn from_dwarf_bytes(data: &[u8]) -> Result<Option<Self>, LayoutError> {
        let (image, file) = ElfImage::parse(data).map_err(LayoutError::NotElf)?;
        let Some(found) = read_dwarf(&file)? else {
            return Ok(None);
        };
        let version = binary_version(&file, &image)
            .or_else(|e| {
                found
                    .producer
                    .as_deref()
                    .and_then(version_from_producer)
                    .ok_or(e)
            })
            .map_err(LayoutError::Version)?;

        let g = found
            .g
            .as_ref()
            .ok_or(LayoutError::MissingType("runtime.g"))?;
        let gobuf = found
            .gobuf
            .as_ref()
            .ok_or(LayoutError::MissingType("runtime.gobuf"))?;
        let stack = found
            .stack
            .as_ref()
            .ok_or(LayoutError::MissingType("runtime.stack"))?;
        let g_member = |m: &'static str| g.member("runtime.g", m);
        let sched = g_member("sched")?;
        let stack_at = g_member("stack")?;

        let (wr_addr, wr_count) = image
            .symbols
            .get("runtime.waitReasonStrings")
            .filter(|&&(_, size)| size > 0)
            .map(|&(addr, size)| (addr, size / 16))
            .or(found.wait_reasons_var)
            .ok_or_else(|| LayoutError::WaitReasons("no symbol or DWARF variable".into()))?;
        let wait_reasons =
            read_go_strings(&image, wr_addr, wr_count).map_err(LayoutError::WaitReasons)?;

        let layout = GoRuntimeLayout {
            version: format!("go{}.{}", version.major, version.minor),
            g_size: g.size,
            g_stack_lo: stack_at + stack.member("runtime.stack", "lo")?,
            g_stack_hi: stack_at + stack.member("runtime.stack", "hi")?,
            g_sched_sp: sched + gobuf.member("runtime.gobuf", "sp")?,
            g_sched_pc: sched + gobuf.member("runtime.gobuf", "pc")?,
            g_sched_bp: sched + gobuf.member("runtime.gobuf", "bp")?,
            g_syscallsp: g_member("syscallsp")?,
            g_syscallpc: g_member("syscallpc")?,
            g_syscallbp: g.members.get("syscallbp").copied(),
            g_atomicstatus: g_member("atomicstatus")?,
            g_goid: g_member("goid")?,
            g_waitsince: g_member("waitsince")?,
            g_waitreason: g_member("waitreason")?,
            g_gopc: g_member("gopc")?,
            g_startpc: g_member("startpc")?,
            g_parentgoid: g.members.get("parentGoid").copied(),
            g_tracking_seq: g.members.get("trackingSeq").copied(),
            g_labels: g_member("labels")?,
            statuses: status_names(&found.statuses)?,
            status_scan_bit: found
                .statuses
                .scan_bit
                .ok_or(LayoutError::MissingConstant("runtime._Gscan"))?,
            wait_reasons,
        };
        layout.check()?;
        Ok(Some(layout))
    }

    /// Every offset lies inside a `runtime.g` of a plausible size.
    fn check(&self) -> Result<(), LayoutError> {
        let offsets = [
            self.g_stack_lo,
            self.g_stack_hi,
            self.g_sched_sp,
            self.g_sched_pc,
            self.g_sched_bp,
            self.g_syscallsp,
            self.g_syscallpc,
            self.g_atomicstatus,
            self.g_goid,
            self.g_waitsince,
            self.g_waitreason,
            self.g_gopc,
            self.g_startpc,
            self.g_labels,
        ];
        let optional = [self.g_syscallbp, self.g_parentgoid, self.g_tracking_seq];
        let inside = |o: &u64| *o < self.g_size;
        let named = |name: &str| self.statuses.iter().any(|s| s == name);
        if !(64..=MAX_G_SIZE).contains(&self.g_size)
            || !offsets.iter().all(inside)
            || !optional.iter().flatten().all(inside)
            || !named("_Gwaiting")
            || !named("_Gdead")
            || !self.status_scan_bit.is_power_of_two()
            || (self.status_scan_bit as usize) < self.statuses.len()
        {
            return Err(LayoutError::Implausible(format!("{self:?}")));
        }
        Ok(())
    }

    /// From the committed table by `major.minor`; `None` = unsupported Go
    /// version.
    pub fn for_version(major: u32, minor: u32) -> Option<Self> {
        let want = format!("go{major}.{minor}");
        table().iter().find(|l| l.version == want).cloned()
    }

    /// The layout for a binary: its DWARF's when it has DWARF that reads,
    /// else the table's for `version`. `Ok(None)` when neither has one; a
    /// DWARF error is returned only when the table has no entry either.
    pub fn for_binary(
        data: &[u8],
        version: &GoVersion,
    ) -> Result<Option<(Self, LayoutSource)>, LayoutError> {
        let dwarf_err = match Self::from_dwarf_bytes(data) {
            Ok(Some(layout)) => return Ok(Some((layout, LayoutSource::Dwarf))),
            Ok(None) => None,
            Err(e) => {
                log::warn!("Go runtime layout from DWARF: {e}; using the {version} table entry");
                Some(e)
            }
        };
        match (Self::for_version(version.major, version.minor), dwarf_err) {
            (Some(layout), _) => Ok(Some((layout, LayoutSource::Table))),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(None),
        }
    }

    /// What a raw `g.atomicstatus` means in this Go version (the GC's scan bit masked).
    pub fn status(&self, raw: u32) -> GoStatus {
        let value = raw & !self.status_scan_bit;
        match self.statuses.get(value as usize) {
            Some(name) => GoStatus::from_name(name, value),
            None => GoStatus::Other(value),
        }
    }

    /// The raw value of a status in this Go version (`None` when it has none, e.g.
    /// [`GoStatus::Leaked`] before Go 1.26).
    pub fn status_value(&self, status: GoStatus) -> Option<u32> {
        if let GoStatus::Other(v) = status {
            return Some(v);
        }
        (0u32..)
            .zip(&self.statuses)
            .find(|&(v, name)| GoStatus::from_name(name, v) == status)
            .map(|(v, _)| v)
    }

    /// Go's name for a waitReason value (`None` for values it does not have).
    pub fn wait_reason(&self, value: u8) -> Option<&str> {
        self.wait_reasons
            .get(usize::from(value))
            .map(String::as_str)
    }
}

/// Every entry of the committed table, sorted by version.
pub fn table() -> &'static [GoRuntimeLayout] {
    static TABLE: OnceLock<Vec<GoRuntimeLayout>> = OnceLock::new();
    TABLE.get_or_init(|| match serde_json::from_str(LAYOUTS_JSON) {
        Ok(table) => table,
        Err(e) => {
            // The tests parse it; this is a broken build, not a user error.
            log::error!("layouts.json does not parse: {e}");
            Vec::new()
        }
    })
}

/// A struct type found in the DWARF.
struct StructInfo {
    size: u64,
    members: HashMap<String, u64>,
}

impl StructInfo {
    fn member(&self, ty: &'static str, member: &'static str) -> Result<u64, LayoutError> {
        self.members
            .get(member)
            .copied()
            .ok_or(LayoutError::MissingMember { ty, member })
    }
}

#[derive(Default)]
struct DwarfFindings {
    g: Option<StructInfo>,
    gobuf: Option<StructInfo>,
    stack: Option<StructInfo>,
    /// `runtime.waitReasonStrings`: address and element count.
    wait_reasons_var: Option<(u64, u64)>,
    /// A compile unit's `DW_AT_producer` (`Go cmd/compile go1.26.6; regabi`).
    producer: Option<String>,
    /// The `runtime._G*` status constants.
    statuses: StatusConstants,
}

/// The goroutine status constants found in the DWARF (`DW_TAG_constant`s the compiler
/// emits for the runtime package's integer constants).
#[derive(Default)]
struct StatusConstants {
    /// (value, name without `runtime.`) of each status below the scan bit.
    values: Vec<(u64, String)>,
    /// `runtime._Gscan`.
    scan_bit: Option<u32>,
}

/// More status values than this is a misread (Go has 12).
const MAX_STATUSES: u64 = 64;

impl StatusConstants {
    /// Records `runtime.NAME = value` if it is a status constant: `_G` then lower-case
    /// letters and `_` only (`_Gwaiting`, `_Gmoribund_unused`; not `_GCoff` or
    /// `_GoidCacheBatch`); the `_Gscan*` combinations are the scan bit plus a status.
    fn record(&mut self, name: &[u8], value: u64) {
        let Some(short) = name.strip_prefix(b"runtime.") else {
            return;
        };
        let Some(rest) = short.strip_prefix(b"_G") else {
            return;
        };
        if rest.is_empty() || !rest.iter().all(|&b| b.is_ascii_lowercase() || b == b'_') {
            return;
        }
        if rest == b"scan" {
            self.scan_bit = u32::try_from(value).ok();
        } else if !rest.starts_with(b"scan") && self.values.len() < MAX_STATUSES as usize {
            self.values
                .push((value, String::from_utf8_lossy(short).into_owned()));
        }
    }
}

/// The status names indexed by value.
fn status_names(found: &StatusConstants) -> Result<Vec<String>, LayoutError> {
    let Some(top) = found.values.iter().map(|&(v, _)| v).max() else {
        return Err(LayoutError::MissingConstant("runtime._Gwaiting"));
    };
    if top >= MAX_STATUSES {
        return Err(LayoutError::Statuses(format!("value {top}")));
    }
    let mut names = vec![String::new(); top as usize + 1];
    for (value, name) in &found.values {
        let slot = &mut names[*value as usize];
        if !slot.is_empty() && slot != name {
            return Err(LayoutError::Statuses(format!(
                "{slot} and {name} are both {value}"
            )));
        }
        slot.clone_from(name);
    }
    Ok(names)
}

impl DwarfFindings {
    fn complete(&self) -> bool {
        self.g.is_some()
            && self.gobuf.is_some()
            && self.stack.is_some()
            && self.wait_reasons_var.is_some()
            && self.producer.is_some()
            && !self.statuses.values.is_empty()
            && self.statuses.scan_bit.is_some()
    }
}

type Reader<'a> = gimli::EndianSlice<'a, gimli::LittleEndian>;

/// Reads what the layout needs from the DWARF; `Ok(None)` without DWARF.
/// Largest DWARF section inflated (Go's own `.debug_info` is a few MB).
const MAX_DWARF_SECTION_BYTES: u64 = 256 << 20;

fn dwarf_err(e: object::Error) -> LayoutError {
    LayoutError::Dwarf(e.to_string())
}

fn read_dwarf(file: &object::File<'_>) -> Result<Option<DwarfFindings>, LayoutError> {
    let has_info = [".debug_info", ".zdebug_info"]
        .iter()
        .any(|n| file.section_by_name(n).is_some_and(|s| s.size() > 0));
    if !has_info {
        return Ok(None);
    }
    // What the compressed sections inflate to, together: each is bounded alone, and
    // together by the memory budget's per-program quota.
    let inflated = std::cell::Cell::new(0u64);
    let limit = crate::budget::global().quota(crate::budget::MemoryKind::Programs);
    let sections =
        gimli::DwarfSections::load(|id| load_dwarf_section(file, id, (&inflated, limit)))?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));

    let mut found = DwarfFindings::default();
    let mut units = dwarf.units();
    let mut ticker = crate::budget::cpu::Ticker::new(64);
    while let Some(header) = units.next().map_err(gimli_err)? {
        if ticker.exhausted() {
            return Err(LayoutError::Dwarf("over the CPU budget".into()));
        }
        let unit = dwarf.unit(header).map_err(gimli_err)?;
        let mut tree = unit.entries_tree(None).map_err(gimli_err)?;
        let root = tree.root().map_err(gimli_err)?;
        if found.producer.is_none()
            && let Some(p) = root.entry().attr_value(gimli::DW_AT_producer)
            && let Ok(p) = dwarf.attr_string(&unit, p)
        {
            let p = p.to_string_lossy().into_owned();
            if p.starts_with("Go ") {
                found.producer = Some(p);
            }
        }
        let mut children = root.children();
        while let Some(child) = children.next().map_err(gimli_err)? {
            visit_top_level(&dwarf, &unit, child, &mut found)?;
        }
        if found.complete() {
            break;
        }
    }
    Ok(Some(found))
}

fn gimli_err(e: gimli::Error) -> LayoutError {
    LayoutError::Dwarf(e.to_string())
}

/// One DWARF section's bytes, inflated if compressed (`.zdebug_*` or `SHF_COMPRESSED`);
/// empty when the file lacks it.
fn load_dwarf_section<'a>(
    file: &object::File<'a>,
    id: gimli::SectionId,
    (inflated, limit): (&std::cell::Cell<u64>, u64),
) -> Result<Cow<'a, [u8]>, LayoutError> {
    let name = id.name();
    let zname = name
        .strip_prefix(".debug_")
        .map(|rest| format!(".zdebug_{rest}"));
    let section = file
        .section_by_name(name)
        .or_else(|| zname.as_deref().and_then(|z| file.section_by_name(z)));
    let Some(s) = section else {
        return Ok(Cow::Borrowed(&[][..]));
    };
    // The declared size is checked before inflating: a hostile binary may declare
    // terabytes behind a few compressed bytes.
    let compressed = s.compressed_data().map_err(dwarf_err)?;
    let size = compressed.uncompressed_size;
    if compressed.format != object::CompressionFormat::None {
        inflated.set(inflated.get().saturating_add(size));
    }
    if size > MAX_DWARF_SECTION_BYTES || inflated.get() > limit {
        return Err(LayoutError::DwarfTooLarge {
            section: name,
            size: if size > MAX_DWARF_SECTION_BYTES {
                size
            } else {
                inflated.get()
            },
        });
    }
    s.uncompressed_data().map_err(dwarf_err)
}

/// Records what a compile unit's top-level entry holds for the layout: a status
/// constant, `runtime.waitReasonStrings`, or one of the structs.
fn visit_top_level(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    node: gimli::EntriesTreeNode<'_, '_, Reader<'_>>,
    found: &mut DwarfFindings,
) -> Result<(), LayoutError> {
    let entry = node.entry();
    let tag = entry.tag();
    if tag != gimli::DW_TAG_structure_type
        && tag != gimli::DW_TAG_variable
        && tag != gimli::DW_TAG_constant
    {
        return Ok(());
    }
    let Some(name) = entry
        .attr_value(gimli::DW_AT_name)
        .and_then(|v| dwarf.attr_string(unit, v).ok())
    else {
        return Ok(());
    };
    let name = name.slice();
    if tag == gimli::DW_TAG_constant {
        if let Some(value) = entry.attr_value(gimli::DW_AT_const_value).and_then(|v| {
            v.udata_value()
                .or_else(|| v.sdata_value().and_then(|s| u64::try_from(s).ok()))
        }) {
            found.statuses.record(name, value);
        }
        return Ok(());
    }
    if tag == gimli::DW_TAG_variable {
        if name == b"runtime.waitReasonStrings" && found.wait_reasons_var.is_none() {
            found.wait_reasons_var = variable_array(dwarf, unit, entry);
        }
        return Ok(());
    }
    let slot = match name {
        b"runtime.g" => &mut found.g,
        b"runtime.gobuf" => &mut found.gobuf,
        b"runtime.stack" => &mut found.stack,
        _ => return Ok(()),
    };
    if slot.is_none() {
        *slot = Some(struct_info(dwarf, unit, node)?);
    }
    Ok(())
}

/// A struct type's size and its members' offsets.
fn struct_info(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    node: gimli::EntriesTreeNode<'_, '_, Reader<'_>>,
) -> Result<StructInfo, LayoutError> {
    let size = node
        .entry()
        .attr_value(gimli::DW_AT_byte_size)
        .and_then(|v| v.udata_value())
        .unwrap_or(0);
    let mut members = HashMap::new();
    let mut fields = node.children();
    while let Some(field) = fields.next().map_err(gimli_err)? {
        let f = field.entry();
        if f.tag() != gimli::DW_TAG_member {
            continue;
        }
        let name = f
            .attr_value(gimli::DW_AT_name)
            .and_then(|v| dwarf.attr_string(unit, v).ok());
        let offset = f
            .attr_value(gimli::DW_AT_data_member_location)
            .and_then(|v| v.udata_value());
        if let (Some(name), Some(offset)) = (name, offset) {
            members.insert(name.to_string_lossy().into_owned(), offset);
        }
    }
    Ok(StructInfo { size, members })
}

/// A global array variable's address and element count.
fn variable_array(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    entry: &gimli::DebuggingInformationEntry<Reader<'_>>,
) -> Option<(u64, u64)> {
    let expr = entry.attr_value(gimli::DW_AT_location)?.exprloc_value()?;
    let mut ops = expr.operations(unit.encoding());
    let addr = match ops.next().ok()?? {
        gimli::Operation::Address { address } => address,
        gimli::Operation::AddressIndex { index } => dwarf.address(unit, index).ok()?,
        _ => return None,
    };
    let gimli::AttributeValue::UnitRef(ty) = entry.attr_value(gimli::DW_AT_type)? else {
        return None;
    };
    let mut tree = unit.entries_tree(Some(ty)).ok()?;
    let root = tree.root().ok()?;
    if root.entry().tag() != gimli::DW_TAG_array_type {
        return None;
    }
    let mut children = root.children();
    while let Some(child) = children.next().ok()? {
        let e = child.entry();
        if e.tag() != gimli::DW_TAG_subrange_type {
            continue;
        }
        if let Some(count) = e
            .attr_value(gimli::DW_AT_count)
            .and_then(|v| v.udata_value())
        {
            return Some((addr, count));
        }
        if let Some(upper) = e
            .attr_value(gimli::DW_AT_upper_bound)
            .and_then(|v| v.udata_value())
        {
            return Some((addr, upper + 1));
        }
    }
    None
}

/// Reads `count` Go string headers (`{ptr, len}`) at `addr`.
fn read_go_strings(image: &ElfImage<'_>, addr: u64, count: u64) -> Result<Vec<String>, String> {
    if count == 0 || count > MAX_WAIT_REASONS {
        return Err(format!("implausible length {count}"));
    }
    (0..count)
        .map(|i| {
            let hdr = addr + i * 16;
            let ptr = image
                .word(hdr)
                .ok_or_else(|| format!("element {i} at {hdr:#x} is not in the file"))?;
            let len = image
                .word(hdr + 8)
                .ok_or_else(|| format!("element {i} at {hdr:#x} is not in the file"))?;
            if len == 0 {
                return Ok(String::new());
            }
            if len > MAX_WAIT_REASON_LEN {
                return Err(format!("element {i} has implausible length {len}"));
            }
            let bytes = image
                .read(ptr, len as usize)
                .ok_or_else(|| format!("element {i}'s bytes at {ptr:#x} are not in the file"))?;
            String::from_utf8(bytes.to_vec()).map_err(|_| format!("element {i} is not UTF-8"))
        })
        .collect()
}

/// The toolchain version from `.go.buildinfo` (by section, or without
/// section headers by a scan of the data segments).
fn binary_version(file: &object::File<'_>, image: &ElfImage<'_>) -> Result<GoVersion, String> {
    let read = |addr: u64, len: usize| image.read(addr, len).map(<[u8]>::to_vec);
    if let Some(s) = file.section_by_name(".go.buildinfo")
        && let Ok(data) = s.data()
    {
        return buildinfo::parse(data, s.address(), &read)
            .map(|b| b.version)
            .map_err(|e| e.to_string());
    }
    let mut err = buildinfo::BuildInfoError::NotFound;
    for s in image
        .segments
        .iter()
        .filter(|s| s.flags & (PF_W | PF_X) == PF_W)
    {
        let Some(bytes) = image.read(s.addr, s.file_size as usize) else {
            continue;
        };
        match buildinfo::parse(bytes, s.addr, &read) {
            Ok(b) => return Ok(b.version),
            Err(buildinfo::BuildInfoError::NotFound) => {}
            Err(e) => err = e,
        }
    }
    Err(err.to_string())
}

/// `Go cmd/compile go1.26.6; regabi` → go1.26.6.
fn version_from_producer(producer: &str) -> Option<GoVersion> {
    producer
        .split([' ', ';'])
        .find(|w| w.starts_with("go1"))
        .and_then(|w| GoVersion::parse(w).ok())
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Builds the layout probe with a given toolchain (fetched by test-support,
    //! cached under `target/go/`).

    use std::{path::PathBuf, sync::Mutex};

    /// One probe build at a time (tests run in threads).
    static BUILD: Mutex<()> = Mutex::new(());

    /// GOROOT of toolchain `version` (e.g. `1.26.6`), fetched if needed.
    pub fn toolchain(version: &str) -> PathBuf {
        test_support::go::go_root(version).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds `tracer-user/tests/go/layoutprobe` with Go `version` and extra
    /// `go build` flags; `variant` names the output (cached by name).
    pub fn probe(version: &str, variant: &str, flags: &[&str]) -> PathBuf {
        let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let ws = test_support::workspace_root();
        let dir = test_support::target_dir().join("go-probe").join(version);
        let out = dir.join(format!("layoutprobe-{variant}"));
        let src = ws.join("tracer-user/tests/go/layoutprobe");
        let newest_src = ["main.go", "go.mod"]
            .iter()
            .filter_map(|f| {
                std::fs::metadata(src.join(f))
                    .and_then(|m| m.modified())
                    .ok()
            })
            .max();
        // The flags it was built with, beside it: a cached build is reused
        // only for the same flags and sources no newer than it.
        let flags_file = dir.join(format!("layoutprobe-{variant}.flags"));
        let flags_text = flags.join("\n");
        let fresh = std::fs::metadata(&out)
            .and_then(|m| m.modified())
            .is_ok_and(|built| newest_src.is_none_or(|s| built >= s))
            && std::fs::read_to_string(&flags_file).is_ok_and(|f| f == flags_text);
        if fresh {
            return out;
        }
        std::fs::create_dir_all(&dir).expect("create target/go-probe");
        let tmp = dir.join(format!(".layoutprobe-{variant}.tmp"));
        let output = test_support::go::go_command(version)
            .unwrap_or_else(|e| panic!("{e}"))
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(&tmp)
            .arg(".")
            .current_dir(&src)
            // Some variants link externally, with the C toolchain.
            .env("CGO_ENABLED", "1")
            .output()
            .expect("run go build");
        assert!(
            output.status.success(),
            "go {version} build {flags:?} of the layout probe failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::rename(&tmp, &out).expect("move the probe into place");
        std::fs::write(&flags_file, flags_text).expect("record the probe's flags");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::go::GoBinary;

    const WANTED_REASONS: [&str; 6] = [
        "chan receive",
        "chan send",
        "select",
        "sync.Mutex.Lock",
        "sync.WaitGroup.Wait",
        "chan receive (nil chan)",
    ];

    fn check_probe_matches_table(version: &str, flags: &[&str], variant: &str) {
        let bin = testutil::probe(version, variant, flags);
        let layout = GoRuntimeLayout::from_dwarf(&bin)
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
            .unwrap_or_else(|| panic!("{} has no DWARF", bin.display()));
        let v = GoBinary::open(&bin).expect("open probe").version().clone();
        assert_eq!(layout.version, format!("go{}.{}", v.major, v.minor));
        let table = GoRuntimeLayout::for_version(v.major, v.minor)
            .unwrap_or_else(|| panic!("layouts.json has no entry for {}", layout.version));
        assert_eq!(
            layout, table,
            "Go {version} ({variant}) DWARF vs layouts.json"
        );
    }

    /// Check that the DWARF layout of the probe built by Go 1.21 equals the
    /// table entry for go1.21.
    #[test]
    fn dwarf_layout_equals_table_go121() {
        check_probe_matches_table("1.21.13", &[], "default");
    }

    /// Check that the DWARF layout of the probe built by Debian's Go 1.19 (the
    /// toolchain of Debian 12's own Go programs) equals the table entry for go1.19.
    #[test]
    fn dwarf_layout_equals_table_go119() {
        check_probe_matches_table(test_support::go::GO_DEBIAN, &[], "default");
    }

    /// Check that the DWARF layout of the probe built by Go 1.26 as a PIE
    /// linked by the C toolchain (as cgo programs are; its string pointers
    /// are relocated) equals the table entry for go1.26.
    #[test]
    fn dwarf_layout_equals_table_go126_pie_external() {
        check_probe_matches_table(
            "1.26.6",
            &["-buildmode=pie", "-ldflags=-linkmode=external"],
            "pie-external",
        );
    }

    /// Check that the table has an entry for each of Go 1.17..=1.27 with sane
    /// offsets and the wait reasons leakscope classifies by.
    #[test]
    fn table_covers_supported_versions() {
        let t = table();
        assert!(!t.is_empty(), "layouts.json does not parse or is empty");
        for minor in 17..=27 {
            let l = GoRuntimeLayout::for_version(1, minor)
                .unwrap_or_else(|| panic!("layouts.json has no go1.{minor}"));
            assert_eq!(l.version, format!("go1.{minor}"));
            assert!(
                (350..=600).contains(&l.g_size),
                "go1.{minor} g_size {}",
                l.g_size
            );
            let offsets = [
                l.g_stack_lo,
                l.g_stack_hi,
                l.g_sched_sp,
                l.g_sched_pc,
                l.g_sched_bp,
                l.g_syscallsp,
                l.g_syscallpc,
                l.g_atomicstatus,
                l.g_goid,
                l.g_waitsince,
                l.g_waitreason,
                l.g_gopc,
                l.g_startpc,
                l.g_labels,
            ];
            assert!(offsets.iter().all(|&o| o < l.g_size), "go1.{minor}: {l:?}");
            assert_eq!(l.status(4), GoStatus::Waiting, "go1.{minor}");
            assert_eq!(l.status(0x1004), GoStatus::Waiting, "go1.{minor}: scan bit");
            assert_eq!(l.status(6), GoStatus::Dead, "go1.{minor}");
            assert_eq!(l.status_scan_bit, 0x1000, "go1.{minor}");
            // Go 1.26 added _Gleaked and _Gdeadextra.
            let leaked = (minor >= 26).then_some(10);
            assert_eq!(l.status_value(GoStatus::Leaked), leaked, "go1.{minor}");
            let deadextra = (minor >= 26).then_some(11);
            assert_eq!(
                l.status_value(GoStatus::DeadExtra),
                deadextra,
                "go1.{minor}"
            );
            assert_eq!(l.g_stack_lo, 0, "go1.{minor}: stack is g's first member");
            assert_eq!(l.g_stack_hi, 8);
            assert!(l.g_sched_sp < l.g_sched_pc && l.g_sched_pc < l.g_sched_bp);
            assert_eq!(
                l.g_syscallbp.is_some(),
                minor >= 23,
                "go1.{minor} syscallbp"
            );
            assert_eq!(
                l.g_parentgoid.is_some(),
                minor >= 21,
                "go1.{minor} parentGoid"
            );
            assert!(
                l.g_tracking_seq.is_some(),
                "go1.{minor} trackingSeq (Go 1.17+)"
            );
            assert_eq!(l.wait_reason(0), Some(""), "go1.{minor}: waitReasonZero");
            for want in WANTED_REASONS {
                // Before Go 1.24, WaitGroup.Wait parks as "semacquire", and before Go
                // 1.20 so does Mutex.Lock.
                let want = match want {
                    "sync.WaitGroup.Wait" if minor < 24 => "semacquire",
                    "sync.Mutex.Lock" if minor < 20 => "semacquire",
                    w => w,
                };
                assert!(
                    l.wait_reasons.iter().any(|r| r == want),
                    "go1.{minor} lacks wait reason {want:?}: {:?}",
                    l.wait_reasons
                );
            }
        }
        let mut sorted: Vec<_> = t.iter().map(|l| l.version.clone()).collect();
        sorted.sort_by_key(|v| v.trim_start_matches("go1.").parse::<u32>().unwrap_or(0));
        sorted.dedup();
        let versions: Vec<_> = t.iter().map(|l| l.version.clone()).collect();
        assert_eq!(
            versions, sorted,
            "layouts.json is sorted with one entry per version"
        );
    }

    /// Check that layouts.json is the pretty-printed, sorted array that
    /// `cargo xtask go-layouts` writes (no hand edits).
    #[test]
    fn table_file_is_canonical() {
        let parsed: Vec<GoRuntimeLayout> = serde_json::from_str(LAYOUTS_JSON).unwrap();
        let canonical = serde_json::to_string_pretty(&parsed).unwrap() + "\n";
        assert_eq!(LAYOUTS_JSON, canonical);
    }

    /// `waitReasonStrings` as the toolchain's `src/runtime/runtime2.go`
    /// declares it: the `waitReason` constants in iota order, named by the
    /// keyed array literal.
    fn wait_reasons_from_source(goroot: &Path) -> Vec<String> {
        let src = std::fs::read_to_string(goroot.join("src/runtime/runtime2.go")).unwrap();
        let code = |l: &str| l.split("//").next().unwrap_or("").trim().to_string();
        let mut lines = src.lines().skip_while(|l| !l.contains("waitReason = iota"));
        let names: Vec<String> = lines
            .by_ref()
            .map(code)
            .take_while(|l| l != ")")
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        let strings: HashMap<String, String> = src
            .lines()
            .skip_while(|l| !l.starts_with("var waitReasonStrings = "))
            .skip(1)
            .map(code)
            .take_while(|l| l != "}")
            .filter_map(|l| {
                let (name, value) = l.split_once(':')?;
                let value = value.trim().trim_end_matches(',');
                Some((name.trim().to_string(), value.trim_matches('"').to_string()))
            })
            .collect();
        let last = names.iter().rposition(|n| strings.contains_key(n)).unwrap();
        names[..=last]
            .iter()
            .map(|n| strings.get(n).cloned().unwrap_or_default())
            .collect()
    }

    /// The goroutine status constants as `src/runtime/runtime2.go` declares them: the
    /// names of the `_Gidle = iota` block up to the first `_Gscan` constant.
    fn statuses_from_source(goroot: &Path) -> Vec<String> {
        let src = std::fs::read_to_string(goroot.join("src/runtime/runtime2.go")).unwrap();
        src.lines()
            .skip_while(|l| !l.contains("_Gidle = iota"))
            .map(|l| l.split("//").next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map_while(|l| {
                let name = l.split_whitespace().next()?;
                (name.starts_with("_G") && !name.starts_with("_Gscan")).then(|| name.to_string())
            })
            .collect()
    }

    /// Check that the wait reasons and goroutine statuses read from the binary's data
    /// and DWARF equal the declarations in the toolchain's own runtime source (Go 1.21
    /// and 1.27, and Debian's 1.19).
    #[test]
    fn wait_reasons_match_runtime_source() {
        let versions = [
            (test_support::go::GO_DEBIAN, 19),
            ("1.21.13", 21),
            ("1.27.3", 27),
        ];
        for (version, minor) in versions {
            let goroot = testutil::toolchain(version);
            let want = wait_reasons_from_source(&goroot);
            assert!(want.len() > 20, "parsed {want:?}");
            let table = GoRuntimeLayout::for_version(1, minor).unwrap();
            assert_eq!(table.wait_reasons, want, "go1.{minor}");
            let statuses = statuses_from_source(&goroot);
            assert!(statuses.len() >= 10, "parsed {statuses:?}");
            assert_eq!(table.statuses, statuses, "go1.{minor} statuses");
        }
    }

    /// Check that raw statuses map to their names by the version's own numbering, the
    /// scan bit masked, and that values a version lacks are `Other`.
    #[test]
    fn statuses_by_version() {
        let old = GoRuntimeLayout::for_version(1, 21).unwrap();
        let new = GoRuntimeLayout::for_version(1, 27).unwrap();
        assert_eq!(old.status(10), GoStatus::Other(10));
        assert_eq!(new.status(10), GoStatus::Leaked);
        assert_eq!(new.status(0x100a), GoStatus::Leaked);
        assert_eq!(new.status(11), GoStatus::DeadExtra);
        assert_eq!(new.status(5), GoStatus::Other(5), "_Gmoribund_unused");
        assert_eq!(new.status(0xffff_ffff), GoStatus::Other(0xffff_efff));
        assert_eq!(new.status_value(GoStatus::Waiting), Some(4));
        assert_eq!(old.status_value(GoStatus::Leaked), None);
    }

    /// Check that a Go version the table does not know gets no layout.
    #[test]
    fn unknown_version_has_no_layout() {
        assert_eq!(GoRuntimeLayout::for_version(1, 99), None);
        assert_eq!(GoRuntimeLayout::for_version(2, 21), None);
    }

    /// Check that a garbage file gives an error, not a panic.
    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            GoRuntimeLayout::from_dwarf_bytes(b"\x7fELF\x02\x01\x01garbage"),
            Err(LayoutError::NotElf(_))
        ));
        let mut noise = vec![0u8; 4096];
        let mut x = 0x9e37_79b9_u32;
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        assert!(GoRuntimeLayout::from_dwarf_bytes(&noise).is_err());
        assert!(matches!(
            GoRuntimeLayout::from_dwarf("/nonexistent/leakscope-probe"),
            Err(LayoutError::Io { .. })
        ));
    }

    /// Check that a binary without DWARF (the stripped probe) gives Ok(None)
    /// and that `for_binary` then falls back to the table.
    #[test]
    fn stripped_binary_uses_table() {
        let bin = testutil::probe("1.26.6", "stripped", &["-ldflags=-s -w"]);
        assert_eq!(GoRuntimeLayout::from_dwarf(&bin).unwrap(), None);
        let data = std::fs::read(&bin).unwrap();
        let version = GoBinary::parse(&data).unwrap().version().clone();
        let (layout, source) = GoRuntimeLayout::for_binary(&data, &version)
            .unwrap()
            .unwrap();
        assert_eq!(source, LayoutSource::Table);
        assert_eq!(layout.version, "go1.26");
    }

    /// Check that the DWARF producer string yields the toolchain version.
    #[test]
    fn version_from_producer_string() {
        let v = version_from_producer("Go cmd/compile go1.26.6; regabi").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 26, 6));
        assert!(version_from_producer("GNU C17 12.2.0").is_none());
    }
}
