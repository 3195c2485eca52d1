//! DWARF CFI unwinding (.eh_frame, .eh_frame_hdr, .debug_frame) of a fake thread: the
//! input is an ELF image mapped executable at its own addresses, then the registers,
//! then the stack (in a fake process memory).
//!
//! Input (after [`grow`], up to 32 MiB): `[elf length u32][ip, sp offset, bp u64 x3]
//! [elf][stack]`.
#![no_main]

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::{
    host::{memory::fake::set_memory, procfs::MemoryMap},
    stacks::unwind::{UserRegs, fuzz_unwind},
};

const STACK: u64 = 0x7ffd_0000_0000;

fn word(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let data = grow(data, 32 << 20);
    let data = &data[..];
    if data.len() < 28 {
        return;
    }
    let elf_len = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    let regs = &data[4..28];
    let Some(elf) = data.get(28..28usize.saturating_add(elf_len)) else {
        return;
    };
    let stack = &data[28 + elf.len()..];
    set_memory(vec![(STACK, stack.to_vec())]);
    let map = |start: u64, end: u64, perms: &str| MemoryMap {
        start,
        end,
        perms: perms.into(),
        offset: 0,
        dev: (0, 0),
        inode: 1,
        path: Some("/fuzz".into()),
    };
    let maps = [
        map(0x40_0000, 0x40_0000 + 0x100_0000, "r-xp"),
        map(STACK, STACK + 0x10_0000, "rw-p"),
    ];
    let regs = UserRegs {
        ip: word(regs, 0),
        sp: STACK + (word(regs, 1) % 4096),
        bp: word(regs, 2),
    };
    let frames = fuzz_unwind(elf, &maps, regs);
    assert!(frames.len() <= tracer_user::stacks::unwind::MAX_FRAMES + 1);
});
