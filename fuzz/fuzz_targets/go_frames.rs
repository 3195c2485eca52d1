//! Naming a goroutine's stack from a hostile pclntab, as the reader names each new site:
//! every pc of a stack as deep as a walk returns, through inline trees that loop or run
//! deep, names and files as long as the reader reads, line tables as long as it decodes.
//!
//! Input: a mode byte, then
//! - mode even: a table shape ([`Shape::from_bytes`], 16 bytes), then one byte per pc
//!   (which function, or past the text), built by [`gopclntab::build`];
//! - mode odd: 2 bytes of stack depth, then the pclntab's bytes (mutated as they come),
//!   which are also its `go:func.*`.
#![no_main]

use leakscope_fuzz::gopclntab::{self, GOFUNC, Shape, TEXT_START};
use libfuzzer_sys::fuzz_target;
use tracer_user::{
    model::MAX_FRAME_NAME,
    sources::go::{
        Pclntab,
        stackwalk::MAX_FRAMES,
        symbolize::{MAX_SYMBOLIZED_FRAMES, symbolize_pcs},
    },
};

/// Largest table built: 16 names of 64 KiB and more, long tables, 4096 functions.
const MAX_TABLE: usize = 4 << 20;

/// The stack `pcs` as named, checked against the naming's bounds.
fn name_stack(tab: &Pclntab, pcs: &[u64]) {
    let frames = symbolize_pcs(tab, 0, "/fuzz", pcs);
    assert!(
        frames.len() <= MAX_SYMBOLIZED_FRAMES,
        "{} frames",
        frames.len()
    );
    for f in &frames {
        let long = |name: &Option<String>| name.as_ref().is_some_and(|n| n.len() > MAX_FRAME_NAME);
        assert!(
            !long(&f.function) && !long(&f.file),
            "a name over {MAX_FRAME_NAME} bytes"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let (shape, picks) = rest.split_at(rest.len().min(16));
        let shape = Shape::from_bytes(shape);
        let Some((table, tree)) = gopclntab::build(&shape, MAX_TABLE) else {
            return;
        };
        let mut tab = Pclntab::parse(&table, None).expect("a built pclntab parses");
        tab.set_gofunc(GOFUNC, tree);
        let size = u64::from(shape.func_size());
        let pcs: Vec<u64> = picks
            .iter()
            .take(MAX_FRAMES)
            .enumerate()
            .map(|(i, &pick)| {
                let func = u64::from(pick) % (u64::from(shape.nfunc) + 1);
                // The innermost frame is a pc; callers are return addresses.
                TEXT_START + func * size + size - u64::from(i == 0)
            })
            .collect();
        name_stack(&tab, &pcs);
    } else {
        let Some((depth, table)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let Ok(mut tab) = Pclntab::parse(table, Some(TEXT_START)) else {
            return;
        };
        tab.set_gofunc(GOFUNC, table.to_vec());
        let depth = usize::from(u16::from_le_bytes(*depth)) % (MAX_FRAMES + 1);
        let funcs: Vec<_> = tab.funcs().take(depth.max(1)).collect();
        let pcs: Vec<u64> = funcs
            .iter()
            .cycle()
            .take(depth)
            .map(|f| f.end.saturating_sub(1).max(f.entry))
            .collect();
        name_stack(&tab, &pcs);
    }
});
