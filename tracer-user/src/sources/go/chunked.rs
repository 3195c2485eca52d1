//! An array that grows a chunk at a time, for the goroutine table's per-`g` arrays.
//!
//! A `Vec` grows by reallocating: for a moment it holds its old buffer and the new one,
//! and it keeps up to twice what it needs. For a table of a million goroutines that is
//! 16 MiB more than the table, which the memory budget would have to charge on every
//! read that grows it. Here growing allocates one more fixed-size chunk and never
//! copies, so what the array holds is its entries plus at most one chunk, at every
//! moment.

use std::ops::{Index, IndexMut};

/// Entries per chunk: a chunk of `g` pointers is 128 KiB.
const CHUNK: usize = 16 * 1024;

/// A growable array of `T` in fixed-size chunks.
#[derive(Clone, Debug, Default)]
pub struct Chunked<T> {
    chunks: Vec<Box<[T]>>,
    len: usize,
}

impl<T: Copy + Default> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes an array of `len` entries holds: its chunks and their list.
    pub fn bytes_for(len: usize) -> u64 {
        let chunks = len.div_ceil(CHUNK);
        (chunks * (CHUNK * size_of::<T>() + size_of::<Box<[T]>>())) as u64
    }

    /// Heap bytes this array holds.
    pub fn heap_bytes(&self) -> u64 {
        (self.chunks.len() * CHUNK * size_of::<T>()
            + self.chunks.capacity() * size_of::<Box<[T]>>()) as u64
    }

    pub fn push(&mut self, value: T) {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks
                .push(vec![T::default(); CHUNK].into_boxed_slice());
        }
        let at = self.len;
        self.len += 1;
        self[at] = value;
    }

    /// Grows (with `value`) or shrinks to `len` entries; chunks past it are freed.
    pub fn resize(&mut self, len: usize, value: T) {
        if len <= self.len {
            self.truncate(len);
            return;
        }
        self.chunks
            .reserve_exact(len.div_ceil(CHUNK) - self.chunks.len());
        while self.len < len {
            self.push(value);
        }
    }

    /// Keeps the first `len` entries.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.chunks.truncate(len.div_ceil(CHUNK));
        }
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|c| c.iter()).take(self.len)
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        // Past `len` but within the last chunk is a stale entry, never memory unsafe:
        // checked in debug builds only (this indexing is the reader's hot loop).
        debug_assert!(i < self.len, "index {i} past {}", self.len);
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        debug_assert!(i < self.len, "index {i} past {}", self.len);
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T: Copy + Default> FromIterator<T> for Chunked<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut out = Self::default();
        for value in iter {
            out.push(value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that entries keep their places across chunks, that shrinking frees whole
    /// chunks, and that the bytes held are the chunks' (at most one chunk unused).
    #[test]
    fn grows_and_shrinks_a_chunk_at_a_time() {
        let mut a: Chunked<u64> = (0..(CHUNK as u64 * 2 + 5)).collect();
        assert_eq!(a.len(), CHUNK * 2 + 5);
        assert_eq!(a[CHUNK + 7], CHUNK as u64 + 7);
        a[CHUNK * 2 + 4] = 1;
        assert_eq!(a.iter().last(), Some(&1));
        assert!(a.heap_bytes() >= Chunked::<u64>::bytes_for(a.len()));
        a.truncate(CHUNK + 1);
        assert_eq!((a.len(), a.chunks.len()), (CHUNK + 1, 2));
        a.resize(3, 0);
        assert_eq!(a.chunks.len(), 1);
        a.resize(CHUNK + 2, 9);
        assert_eq!((a[2], a[3], a[CHUNK + 1]), (2, 9, 9));
        assert_eq!(
            Chunked::<u64>::bytes_for(1_000_000),
            62 * (CHUNK as u64 * 8 + 16)
        );
    }
}
