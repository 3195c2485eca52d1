//! How many small objects of another process's memory become few large reads: each
//! process_vm_readv call costs far more than the bytes it copies (about 0.5 us per
//! range here), and `g` structs sit together in heap spans, so neighbours merge into one
//! range; and every batch of ranges is bounded in bytes, so the read buffer is too,
//! whatever the process holds.

use super::chunked::Chunked;

/// Neighbouring objects closer than this are read as one range.
const MERGE_GAP: u64 = 4096;
/// Upper bound of one merged range.
pub const MAX_MERGED: u64 = 1 << 20;
/// Bytes read per batch of ranges: bounds the read buffer.
pub const BATCH_BYTES: usize = 1 << 20;

/// A merged read in 16 bytes: its start, its length, and where its part of the
/// address-ordered index ends (it begins where the previous range's ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergedRange {
    pub start: u64,
    /// At most [`MAX_MERGED`].
    pub len: u32,
    pub end: u32,
}

/// Merges `new` into `sorted` (both ordered by `key`) in place, from the back: no second
/// copy of a million entries.
pub fn merge_sorted_into(sorted: &mut Chunked<u32>, new: &[u32], key: impl Fn(u32) -> u64) {
    let old = sorted.len();
    sorted.resize(old + new.len(), 0);
    let (mut a, mut b, mut to) = (old, new.len(), old + new.len());
    while b > 0 {
        to -= 1;
        if a > 0 && key(sorted[a - 1]) > key(new[b - 1]) {
            sorted[to] = sorted[a - 1];
            a -= 1;
        } else {
            sorted[to] = new[b - 1];
            b -= 1;
        }
    }
}

/// Splits `items` into runs of at most [`BATCH_BYTES`] (a single larger item alone).
pub fn batches<T>(items: &[T], bytes: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut total) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = bytes(item);
        if i > start && total + n > BATCH_BYTES {
            out.push(&items[start..i]);
            (start, total) = (i, 0);
        }
        total += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Calls `each` with the ranges covering `size`-byte objects, listed by address
/// (`count` of them, the `i`th at `addr(i)`), neighbours together.
fn for_each_range(
    count: usize,
    addr: impl Fn(usize) -> u64,
    size: u64,
    mut each: impl FnMut(MergedRange),
) {
    let mut i = 0;
    while i < count {
        let start = addr(i);
        let mut end = start.saturating_add(size);
        let mut j = i + 1;
        while j < count {
            let next = addr(j);
            if next > end.saturating_add(MERGE_GAP)
                || next.saturating_add(size) - start > MAX_MERGED
            {
                break;
            }
            end = end.max(next.saturating_add(size));
            j += 1;
        }
        // A range never passes MAX_MERGED (one object alone may: a `g` is far smaller),
        // and a table never more than u32::MAX objects (MAX_GOROUTINES).
        let len = (end - start).min(u64::from(u32::MAX)) as u32;
        each(MergedRange {
            start,
            len,
            end: j as u32,
        });
        i = j;
    }
}

/// How many ranges [`merge_ranges`] makes of these objects, without allocating: the
/// memory budget is asked for them first.
pub fn count_ranges(count: usize, addr: impl Fn(usize) -> u64, size: u64) -> usize {
    let mut n = 0;
    for_each_range(count, addr, size, |_| n += 1);
    n
}

/// Groups `size`-byte objects, listed by address (`count` of them, the `i`th at
/// `addr(i)`), into ranges covering neighbours; `out` gets exactly `expected` of them
/// ([`count_ranges`]).
pub fn merge_ranges(
    count: usize,
    addr: impl Fn(usize) -> u64,
    size: u64,
    expected: usize,
) -> Vec<MergedRange> {
    let mut out = Vec::with_capacity(expected);
    for_each_range(count, addr, size, |r| out.push(r));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that neighbouring objects merge into one range, far ones do not, and a
    /// range never grows past its cap.
    #[test]
    fn neighbouring_gs_merge_into_one_read() {
        let addrs = [0x1000u64, 0x11c8, 0x1390, 0x9000_0000];
        let addr = |i: usize| addrs[i];
        assert_eq!(count_ranges(4, addr, 456), 2);
        let ranges = merge_ranges(4, addr, 456, 2);
        assert_eq!((ranges.len(), ranges.capacity()), (2, 2));
        assert_eq!(
            ranges[0],
            MergedRange {
                start: 0x1000,
                len: 0x1390 + 456 - 0x1000,
                end: 3
            }
        );
        assert_eq!(ranges[1].end, 4);
        let many = |i: usize| i as u64 * 512;
        let n = count_ranges(10_000, many, 456);
        assert!(
            merge_ranges(10_000, many, 456, n)
                .iter()
                .all(|r| u64::from(r.len) <= MAX_MERGED)
        );
    }

    /// Check that merging new entries keeps the order and every entry.
    #[test]
    fn merge_keeps_address_order() {
        let addr = [50u64, 10, 30, 20, 40, 5];
        let mut sorted: Chunked<u32> = [1, 2, 0].into_iter().collect();
        merge_sorted_into(&mut sorted, &[5, 3, 4], |i| addr[i as usize]);
        assert_eq!(
            sorted.iter().copied().collect::<Vec<_>>(),
            vec![5, 1, 3, 2, 4, 0]
        );
    }

    /// Check that batches stay within their byte bound and cover every item once.
    #[test]
    fn batches_bound_the_read_buffer() {
        let sizes: Vec<usize> = (0..1000).map(|i| 1000 + i * 37).collect();
        let parts = batches(&sizes, |&n| n);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), sizes.len());
        assert!(
            parts
                .iter()
                .all(|p| p.len() == 1 || p.iter().sum::<usize>() <= BATCH_BYTES)
        );
    }
}
