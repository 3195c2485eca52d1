//! Names goroutine frames from the binary's own pclntab (so stripped binaries too),
//! expanding inlined calls: the leak site is often a function inlined into a wrapper
//! (`main.queryReplica` inside `gowrap1`), which only the inline tree names.

use crate::{
    model::Frame,
    sources::go::{Pclntab, executable::GoProgram},
};

/// Most frames one stack is named with, inlined calls included (a real stack has a few
/// dozen; each kept frame costs its names, which the memory budget counts).
pub const MAX_SYMBOLIZED_FRAMES: usize = 256;

/// Names the frames of one process's goroutine stacks.
pub type GoSymbolizer = Box<dyn Fn(&[u64]) -> Vec<Frame>>;

/// A symbolizer that names nothing (the process could not be read): bare addresses.
pub fn bare_symbolizer() -> GoSymbolizer {
    Box::new(|pcs: &[u64]| {
        pcs.iter()
            .map(|&address| Frame {
                address,
                ..Frame::default()
            })
            .collect()
    })
}

/// Names `pcs` (absolute, innermost first; callers are return addresses) of a process
/// running `program` at load bias `bias`; `exe` is the module frames are said to be in.
pub fn symbolize(program: &GoProgram, bias: u64, exe: &str, pcs: &[u64]) -> Vec<Frame> {
    symbolize_pcs(program.binary.pclntab(), bias, exe, pcs)
}

/// Names `pcs` with `pclntab` (see [`symbolize`]): at most [`MAX_SYMBOLIZED_FRAMES`]
/// frames (a hostile table inlining deep at every pc stops there, the outermost frames
/// left out).
pub fn symbolize_pcs(pclntab: &Pclntab, bias: u64, exe: &str, pcs: &[u64]) -> Vec<Frame> {
    let mut frames = Vec::new();
    for (i, &pc) in pcs.iter().enumerate() {
        if pc == 0 {
            continue;
        }
        if frames.len() >= MAX_SYMBOLIZED_FRAMES {
            break;
        }
        // A return address points after the call: look up the call itself.
        let lookup = pc.wrapping_sub(bias).wrapping_sub(u64::from(i > 0));
        let Some(func) = pclntab.find_func(lookup) else {
            frames.push(Frame {
                address: pc,
                module: Some(exe.to_string()),
                ..Frame::default()
            });
            continue;
        };
        if func.name == "runtime.goexit" {
            continue;
        }
        for f in pclntab.inline_frames(&func, lookup) {
            if frames.len() >= MAX_SYMBOLIZED_FRAMES {
                break;
            }
            frames.push(Frame {
                function: Some(f.function),
                file: Some(f.file),
                line: (f.line > 0).then_some(f.line),
                address: pc,
                module: Some(exe.to_string()),
            });
        }
    }
    frames
}
