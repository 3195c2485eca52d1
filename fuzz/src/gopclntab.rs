//! Go 1.20+ pclntabs built to size: as many functions, names as long, pc-value tables
//! as long and inline trees as deep (or looping) as the fuzzer asks, to reach the bounds
//! the reader enforces (64 KiB names, 65,536 pc-value steps, 64 inlined levels) without
//! a table of that size in the corpus.

/// Where the built table's functions start.
pub const TEXT_START: u64 = 0x40_1000;
/// Where the built inline trees (`go:func.*`) are said to be.
pub const GOFUNC: u64 = 0x60_0000;

/// `abi.FUNCDATA_InlTree`, `abi.PCDATA_InlTreeIndex`.
const FUNCDATA_INL_TREE: usize = 3;
const PCDATA_INL_TREE_INDEX: usize = 2;

/// What to build; each field is capped where it is read from fuzzer bytes.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub nfunc: u32,
    pub name_len: u32,
    pub file_len: u32,
    /// The byte names are made of (0xff: every byte becomes U+FFFD, three bytes, when
    /// read as UTF-8).
    pub name_byte: u8,
    /// Entries of each function's line table.
    pub line_steps: u32,
    /// Levels of inlined calls at the end of each function.
    pub depth: u32,
    /// The outermost inlined call's parent is itself.
    pub looping: bool,
    /// Whether functions have names of their own (16 at most, in turn), else one.
    pub distinct_names: bool,
}

impl Shape {
    /// A shape from fuzzer bytes (missing bytes are zero), each field capped just past
    /// the reader's bound.
    pub fn from_bytes(b: &[u8]) -> Self {
        let mut b = b.to_vec();
        b.resize(16, 0);
        let u16_at = |i: usize| u32::from(u16::from_le_bytes([b[i], b[i + 1]]));
        let u24_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], 0]);
        Self {
            nfunc: 1 + u16_at(0) % 4096,
            name_len: u24_at(2) % 70_000,
            file_len: u24_at(5) % 70_000,
            name_byte: b[8].max(1),
            line_steps: u24_at(9) % 70_000,
            depth: u32::from(b[12]) % 100,
            looping: b[13] & 1 != 0,
            distinct_names: b[13] & 2 != 0,
        }
    }

    /// Bytes of text per function: room for every line step and inline level.
    pub fn func_size(&self) -> u32 {
        self.line_steps.max(self.depth) + 16
    }
}

fn uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One pc-value pair: the value moves by `delta`, then holds for `pcs` bytes.
fn pcvalue(out: &mut Vec<u8>, delta: i32, pcs: u32) {
    uvarint(out, ((delta << 1) ^ (delta >> 31)) as u32);
    uvarint(out, pcs);
}

/// The pclntab, and the inline trees (`go:func.*` at [`GOFUNC`]); `None` when the
/// shape would exceed `max_bytes`.
pub fn build(shape: &Shape, max_bytes: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    // Distinct names: enough for names of many lengths in one stack, few enough that
    // building a table stays cheap (the fuzzer builds one per input).
    let names = if shape.distinct_names {
        shape.nfunc.min(16)
    } else {
        1
    };
    let estimate = names as usize * (shape.name_len as usize + 8)
        + shape.file_len as usize
        + 2 * shape.line_steps as usize
        + 3 * shape.depth as usize
        + 80 * shape.nfunc as usize;
    if estimate > max_bytes {
        return None;
    }
    let size = shape.func_size();
    let header_len = 8 + 8 * 8;
    let mut t = vec![0u8; header_len];
    t[..4].copy_from_slice(&0xffff_fff1u32.to_le_bytes());
    t[6] = 1; // quantum
    t[7] = 8; // pointer size

    let funcnametab = t.len();
    let mut name_offs = Vec::new();
    for i in 0..names {
        name_offs.push((t.len() - funcnametab) as u32);
        let tag = format!("main.f{i}.");
        t.extend(
            tag.bytes()
                .chain(std::iter::repeat(shape.name_byte))
                .take(shape.name_len as usize),
        );
        t.push(0);
    }
    let cutab = t.len();
    t.extend_from_slice(&0u32.to_le_bytes());
    let filetab = t.len();
    t.extend(std::iter::repeat_n(
        shape.name_byte,
        shape.file_len as usize,
    ));
    t.push(0);

    // The pc-value tables, shared by every function (offset 0 means none).
    let pctab = t.len();
    let mut pc = vec![0u8];
    let pcfile = pc.len() as u32;
    pcvalue(&mut pc, 1, size);
    pc.push(0);
    let pcln = pc.len() as u32;
    for _ in 0..shape.line_steps {
        pcvalue(&mut pc, 1, 1);
    }
    pcvalue(&mut pc, 1, size);
    pc.push(0);
    // Inline index: -1 at the entry, level k-1 at offset k, the innermost level
    // (depth-1) from offset `depth` on.
    let pcinl = pc.len() as u32;
    if shape.depth == 0 {
        pcvalue(&mut pc, 0, size);
    } else {
        pcvalue(&mut pc, 0, 1);
        for _ in 1..shape.depth {
            pcvalue(&mut pc, 1, 1);
        }
        pcvalue(&mut pc, 1, size);
    }
    pc.push(0);
    t.extend_from_slice(&pc);

    while t.len() % 8 != 0 {
        t.push(0);
    }
    let functab = t.len();
    let nfunc = shape.nfunc as usize;
    let ftab_len = 8 * nfunc + 4;
    let func_len = 44 + 4 * 3 + 4 * 4;
    for i in 0..nfunc {
        let funcoff = (ftab_len + i * func_len) as u32;
        t.extend_from_slice(&(i as u32 * size).to_le_bytes());
        t.extend_from_slice(&funcoff.to_le_bytes());
    }
    t.extend_from_slice(&(nfunc as u32 * size).to_le_bytes());
    for i in 0..nfunc {
        let mut f = [0u8; 44];
        let name = name_offs[i % name_offs.len()];
        f[0..4].copy_from_slice(&(i as u32 * size).to_le_bytes());
        f[4..8].copy_from_slice(&name.to_le_bytes());
        f[20..24].copy_from_slice(&pcfile.to_le_bytes());
        f[24..28].copy_from_slice(&pcln.to_le_bytes());
        f[28..32].copy_from_slice(&3u32.to_le_bytes()); // npcdata
        f[43] = 4; // nfuncdata
        t.extend_from_slice(&f);
        for k in 0..3 {
            let table = if k == PCDATA_INL_TREE_INDEX { pcinl } else { 0 };
            t.extend_from_slice(&table.to_le_bytes());
        }
        for k in 0..4 {
            let data = if k == FUNCDATA_INL_TREE { 0 } else { u32::MAX };
            t.extend_from_slice(&data.to_le_bytes());
        }
    }

    // Inline tree: level k's parent pc is k (level k-1); level 0's is -1, or 0 when
    // looping (where the index is -1 again: the loop is through the parent pc at the
    // end of the function, level depth-1).
    let mut tree = Vec::new();
    for k in 0..shape.depth {
        let parent = if k > 0 {
            k as i32
        } else if shape.looping {
            size as i32 - 1
        } else {
            -1
        };
        tree.extend_from_slice(&[0u8; 4]);
        tree.extend_from_slice(&name_offs[0].to_le_bytes());
        tree.extend_from_slice(&parent.to_le_bytes());
        tree.extend_from_slice(&0i32.to_le_bytes());
    }

    let words = [
        shape.nfunc as u64,
        1,
        TEXT_START,
        funcnametab as u64,
        cutab as u64,
        filetab as u64,
        pctab as u64,
        functab as u64,
    ];
    for (i, w) in words.iter().enumerate() {
        t[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
    }
    Some((t, tree))
}
