//! A fast hasher for leakscope's own integer keys (pids, goroutine ids, addresses).
//!
//! Per-goroutine maps are touched 100,000 times a scan on a big Go program; SipHash's
//! DoS resistance buys nothing for keys we derive ourselves, and cost most of a scan.

use std::{
    collections::{HashMap, HashSet},
    hash::BuildHasherDefault,
};

/// A multiply-rotate hasher over 64-bit words.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
}

pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;
pub type IntSet<K> = HashSet<K, BuildHasherDefault<IntHasher>>;
