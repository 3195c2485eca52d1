//! Unwinding a blocked thread's user stack from its saved registers.
//! (Interface stub: to be implemented.)

use crate::sources::procfs::MemoryMap;

/// The user registers saved when a thread entered the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Unwinds user stacks; caches parsed unwind info per binary.
#[derive(Default)]
pub struct StackUnwinder {}

impl StackUnwinder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Frame addresses, innermost first: `regs.ip`, then each caller's return address.
    /// Never fails: an unreadable stack or a binary without unwind info ends the walk.
    pub fn unwind(&mut self, pid: u32, maps: &[MemoryMap], regs: UserRegs) -> Vec<u64> {
        let _ = (pid, maps, regs);
        todo!()
    }
}
