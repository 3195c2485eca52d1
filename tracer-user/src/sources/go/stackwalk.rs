//! Parked goroutines' stacks, walked by frame pointer (Go keeps frame pointers on
//! amd64) from the registers the runtime saved when it parked them.
//!
//! The stack bytes come from the process's memory, read in bounded batches; every
//! address in them is the process's word, so the walk uses checked arithmetic only and
//! stops at anything that does not look like a frame of this binary's code.

use crate::{
    host::memory::read_batch,
    sources::go::{
        executable::GoProgram,
        g::{GFields, word},
        readplan::batches,
    },
};

/// A parked goroutine's used stack beyond this is not walked further.
const MAX_STACK_READ: u64 = 256 * 1024;
/// Stack bytes read in full per process and read (real parked goroutines use a few
/// KiB each); past it each stack is read only this far from its top.
pub const STACK_BYTES_PER_READ: usize = 32 << 20;
const OVER_BUDGET_STACK_READ: usize = 4096;
/// Frames kept per goroutine stack.
pub const MAX_FRAMES: usize = 64;

/// Whether `pc` lies in the program's Go text (at load bias `bias`).
fn is_text(program: &GoProgram, bias: u64, pc: u64) -> bool {
    let p = program.binary.pclntab();
    let svma = pc.wrapping_sub(bias);
    p.text_start() <= svma && svma < p.text_end()
}

/// Walks a parked goroutine's frames: `pc` (inside gopark), then return addresses.
///
/// `runtime.mcall` saves in `sched.bp` the frame pointer of gopark's *caller*, so the
/// return address out of gopark is found through gopark's own saved-BP slot: the first
/// word above `sp` that holds `bp` and is followed by a code address.
pub fn walk_frame_pointers(
    pc: u64,
    sp: u64,
    bp: u64,
    stack: &[u8],
    is_code: impl Fn(u64) -> bool,
) -> Vec<u64> {
    // All addresses come from the watched process: checked arithmetic only, and every
    // loop bounded by the stack bytes actually read (a fake g may put sp near 2^64).
    let word_at = |addr: u64| -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(sp)?).ok()?;
        word(stack, off)
    };
    let mut frames = vec![pc];
    // The return address out of the innermost (parking) frame: the slot lies between sp
    // and bp, at most one scan over the words read.
    let search_end = bp
        .saturating_sub(sp)
        .min(stack.len() as u64)
        .saturating_sub(8)
        / 8;
    for i in 0..search_end {
        let Some(slot) = sp.checked_add(i * 8) else {
            break;
        };
        if word_at(slot) == Some(bp)
            && let Some(ret) = slot.checked_add(8).and_then(word_at)
            && is_code(ret)
        {
            frames.push(ret);
            break;
        }
    }
    let mut bp = bp;
    while frames.len() < MAX_FRAMES {
        if !bp.is_multiple_of(8) {
            break;
        }
        let (Some(next), Some(ret)) = (word_at(bp), bp.checked_add(8).and_then(word_at)) else {
            break;
        };
        if ret == 0 || !is_code(ret) {
            break;
        }
        frames.push(ret);
        // Frames grow toward higher addresses; anything else is a torn or bogus chain.
        if next <= bp {
            break;
        }
        bp = next;
    }
    frames
}

/// The stacks of parked goroutines, read in bounded batches and walked. Stack ranges are
/// the process's word: past `budget` bytes in a read, each stack is read only near its
/// top (the parking frames).
pub fn walk_stacks<'a>(
    pid: u32,
    (program, bias): (&GoProgram, u64),
    gs: impl ExactSizeIterator<Item = &'a GFields> + Clone,
    buf: &mut Vec<u8>,
    budget: &mut usize,
) -> Vec<Vec<u64>> {
    let plan: Vec<(u64, usize)> = gs
        .clone()
        .map(|g| {
            let full = g.stack_hi.saturating_sub(g.sp).min(MAX_STACK_READ) as usize;
            let len = if full <= *budget {
                full
            } else {
                full.min(OVER_BUDGET_STACK_READ)
            };
            *budget = budget.saturating_sub(len);
            (g.sp, len)
        })
        .collect();
    let mut out = Vec::with_capacity(plan.len());
    let mut gs = gs;
    for batch in batches(&plan, |r| r.1) {
        let ok = read_batch(pid, batch, buf);
        let mut at = 0usize;
        for (i, &(_, len)) in batch.iter().enumerate() {
            let Some(g) = gs.next() else { break };
            let stack = if ok[i] { &buf[at..at + len] } else { &[][..] };
            out.push(walk_frame_pointers(g.pc, g.sp, g.bp, stack, |pc| {
                is_text(program, bias, pc)
            }));
            at += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack_of(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Check that the walk finds gopark's return address through its saved-BP slot, then
    /// follows the frame-pointer chain, and stops at a chain that does not grow upward.
    #[test]
    fn walks_parked_goroutine_frames() {
        let sp = 0x1000;
        // sp+0: junk, sp+8: gopark's saved BP (= sched.bp = 0x1020), sp+16: ret into chansend
        // 0x1020: next bp 0x1030, ret into main.leak; 0x1030: next bp 0x1000 (down: stop), ret goexit
        let stack = stack_of(&[
            7, 0x1020, 0x40_1111, 0, 0x1030, 0x40_2222, 0x1000, 0x40_3333,
        ]);
        let code = |pc: u64| (0x40_0000..0x50_0000).contains(&pc);
        let frames = walk_frame_pointers(0x40_0001, sp, 0x1020, &stack, code);
        assert_eq!(frames, vec![0x40_0001, 0x40_1111, 0x40_2222, 0x40_3333]);
    }

    /// Check that a bogus frame pointer outside the stack yields just the parking pc.
    #[test]
    fn bogus_frame_pointer_stops_the_walk() {
        let frames =
            walk_frame_pointers(0x40_0001, 0x1000, 0xdead_0000, &stack_of(&[1, 2]), |_| true);
        assert_eq!(frames, vec![0x40_0001]);
    }

    /// Check that a fake parked g with sp and bp near 2^64 and nothing read of its stack
    /// ends the walk at once (the slot search used to wrap and loop ~2^61 times).
    #[test]
    fn walk_near_the_top_of_the_address_space_ends() {
        for (sp, bp) in [
            (u64::MAX - 7, u64::MAX),
            (u64::MAX - 15, u64::MAX - 7),
            (u64::MAX - 0x1000, u64::MAX - 8),
            (0, u64::MAX),
        ] {
            let frames = walk_frame_pointers(0x40_0001, sp, bp, &[], |_| true);
            assert_eq!(frames, vec![0x40_0001]);
            let stack = stack_of(&[bp, 0x40_1111, bp, 0x40_2222]);
            let frames = walk_frame_pointers(0x40_0001, sp, bp, &stack, |_| true);
            assert!(frames.len() <= MAX_FRAMES, "{sp:#x} {bp:#x}: {frames:?}");
        }
    }
}
