//! How many small objects of another process's memory become few large reads: each
//! process_vm_readv call costs far more than the bytes it copies (about 0.5 us per
//! range here), and `g` structs sit together in heap spans, so neighbours merge into one
//! range; and every batch of ranges is bounded in bytes, so the read buffer is too,
//! whatever the process holds.

use std::ops::Range;

/// Neighbouring objects closer than this are read as one range.
const MERGE_GAP: u64 = 4096;
/// Upper bound of one merged range.
pub const MAX_MERGED: u64 = 1 << 20;
/// Bytes read per batch of ranges: bounds the read buffer.
pub const BATCH_BYTES: usize = 1 << 20;

/// A merged read: its start, its length, and the part of the address-ordered index
/// inside it.
pub type MergedRange = (u64, usize, Range<usize>);

/// Merges `new` into `sorted` (both ordered by `key`) in place, from the back: no second
/// copy of a million entries.
pub fn merge_sorted_into(sorted: &mut Vec<u32>, new: &[u32], key: impl Fn(u32) -> u64) {
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

/// Groups `size`-byte objects, listed by address, into ranges covering neighbours.
pub fn merge_ranges(sorted: &[u32], addr: impl Fn(u32) -> u64, size: u64) -> Vec<MergedRange> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = addr(sorted[i]);
        let mut end = start.saturating_add(size);
        let mut j = i + 1;
        while j < sorted.len() {
            let next = addr(sorted[j]);
            if next > end.saturating_add(MERGE_GAP)
                || next.saturating_add(size) - start > MAX_MERGED
            {
                break;
            }
            end = end.max(next.saturating_add(size));
            j += 1;
        }
        out.push((start, (end - start) as usize, i..j));
        i = j;
    }
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
        let order: Vec<u32> = (0..4).collect();
        let ranges = merge_ranges(&order, |i| addrs[i as usize], 456);
        assert_eq!(ranges.len(), 2);
        assert_eq!(
            (ranges[0].0, ranges[0].1, ranges[0].2.clone()),
            (0x1000, 0x1390 + 456 - 0x1000, 0..3)
        );
        assert_eq!(ranges[1].2, 3..4);
        let many: Vec<u32> = (0..10_000u32).collect();
        assert!(
            merge_ranges(&many, |i| u64::from(i) * 512, 456)
                .iter()
                .all(|r| r.1 as u64 <= MAX_MERGED)
        );
    }

    /// Check that merging new entries keeps the order and every entry.
    #[test]
    fn merge_keeps_address_order() {
        let addr = [50u64, 10, 30, 20, 40, 5];
        let mut sorted = vec![1, 2, 0];
        merge_sorted_into(&mut sorted, &[5, 3, 4], |i| addr[i as usize]);
        assert_eq!(sorted, vec![5, 1, 3, 2, 4, 0]);
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
