//! What the fuzz targets share: inputs that grow to the sizes leakscope's bounds allow.
//!
//! Size-driven bugs (quadratic walks, a declared length allocated up front, a cap that is
//! off by one) only show in inputs as large as the bounds the code enforces: 32 MiB of
//! `/proc/PID/maps`, 64 KiB of `/proc/PID/cgroup`, names of 64 KiB, tables of millions
//! of entries. libFuzzer keeps inputs small (`-max_len`), and a corpus of such files
//! would not belong in the repository, so an input may instead be a short program that
//! *grows* to that size: [`grow`] runs it. Seeds of this kind (made by `make_seeds.py`)
//! are a few bytes each; libFuzzer mutates their counts and units like any other bytes,
//! so the fuzzer explores every size up to each target's bound.

pub mod gopclntab;

use std::borrow::Cow;

/// The first bytes of an input that is a growth program rather than the bytes
/// themselves.
pub const GROW_MAGIC: &[u8; 4] = b"GROW";

/// An input as the bytes the target parses: `data` itself, or, when it starts with
/// [`GROW_MAGIC`], what its program writes, cut at `limit` bytes. The program is a
/// sequence of operations up to the end of the input:
///
/// - `L len:u16le bytes`: append `bytes` once;
/// - `R count:u32le len:u16le bytes`: append `bytes` `count` times;
/// - `Q start:u64le step:u64le count:u32le`: append `count` little-endian words
///   `start`, `start + step`, ... (tables of distinct pointers).
///
/// A truncated or unknown operation ends the program (what was written stays).
pub fn grow(data: &[u8], limit: usize) -> Cow<'_, [u8]> {
    let Some(mut program) = data.strip_prefix(GROW_MAGIC.as_slice()) else {
        return Cow::Borrowed(&data[..data.len().min(limit)]);
    };
    let mut out = Vec::new();
    while out.len() < limit {
        let Some((&op, rest)) = program.split_first() else {
            break;
        };
        if op == b'Q' {
            let Some((sequence, rest)) = rest.split_first_chunk::<20>() else {
                break;
            };
            program = rest;
            words(sequence, limit, &mut out);
            continue;
        }
        let (count, rest) = match op {
            b'L' => (1, rest),
            b'R' => match rest.split_first_chunk::<4>() {
                Some((count, rest)) => (u32::from_le_bytes(*count) as usize, rest),
                None => break,
            },
            _ => break,
        };
        let Some((len, rest)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len));
        let Some((unit, rest)) = rest.split_at_checked(len) else {
            break;
        };
        program = rest;
        if unit.is_empty() {
            continue;
        }
        let room = limit - out.len();
        let whole = count.min(room / unit.len());
        out.reserve(whole * unit.len());
        for _ in 0..whole {
            out.extend_from_slice(unit);
        }
        if whole < count {
            out.extend_from_slice(&unit[..room - whole * unit.len()]);
        }
    }
    Cow::Owned(out)
}

/// Appends the words of a `Q` operation (`start`, `step`, `count`) up to `limit` bytes.
fn words(sequence: &[u8; 20], limit: usize, out: &mut Vec<u8>) {
    let word = |at: usize| u64::from_le_bytes(sequence[at..at + 8].try_into().unwrap());
    let (start, step) = (word(0), word(8));
    let count = u32::from_le_bytes(sequence[16..].try_into().unwrap()) as usize;
    let whole = count.min((limit - out.len()) / 8);
    out.reserve(whole * 8);
    for i in 0..whole as u64 {
        out.extend_from_slice(&start.wrapping_add(step.wrapping_mul(i)).to_le_bytes());
    }
}

/// A growth program (the inverse of [`grow`], for seeds and tests): each
/// `(count, unit)` is one operation.
pub fn program(ops: &[(u32, &[u8])]) -> Vec<u8> {
    let mut out = GROW_MAGIC.to_vec();
    for &(count, unit) in ops {
        for chunk in unit.chunks(usize::from(u16::MAX)) {
            if count == 1 {
                out.push(b'L');
            } else {
                out.push(b'R');
                out.extend_from_slice(&count.to_le_bytes());
            }
            out.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
            out.extend_from_slice(chunk);
        }
    }
    out
}

/// Splits an input into up to `n` parts at each `separator` (the last part keeps the
/// rest); missing parts are empty.
pub fn split_parts<'a>(data: &'a [u8], separator: &[u8], n: usize) -> Vec<&'a [u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest.windows(separator.len()).position(|w| w == separator) {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + separator.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts.resize(n, &[]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_stops_at_the_limit() {
        assert_eq!(&*grow(b"plain", 3), b"pla");
        let p = program(&[(1, b"head "), (3, b"ab"), (1, b"!")]);
        assert_eq!(&*grow(&p, 100), b"head ababab!");
        assert_eq!(&*grow(&p, 8), b"head aba");
        let big = program(&[(u32::MAX, b"x")]);
        assert_eq!(grow(&big, 1 << 20).len(), 1 << 20);
        let mut seq = b"GROWQ".to_vec();
        for v in [5u64, 3] {
            seq.extend_from_slice(&v.to_le_bytes());
        }
        seq.extend_from_slice(&3u32.to_le_bytes());
        let words: Vec<u64> = grow(&seq, 100)
            .chunks(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
            .collect();
        assert_eq!(words, [5, 8, 11]);
    }

    #[test]
    fn splits_into_parts() {
        assert_eq!(split_parts(b"a|b|c|d", b"|", 3), [&b"a"[..], b"b", b"c|d"]);
        assert_eq!(split_parts(b"a", b"|", 3), [&b"a"[..], b"", b""]);
    }
}
