//! The pprof label reader over a fake process memory: the input's first byte picks the
//! representation (even: Go 1.24+'s sorted slice, odd: a Go 1.17-1.23 map) and where
//! the second label set pointer points; the rest is one region of memory the label set
//! pointers, slice headers, `hmap`s, buckets and strings point into. Every set read must
//! stay within the reader's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::{
    host::memory::fake::{FAKE_PID, set_memory},
    sources::go::labels::{LabelRepr, MAX_KEY_BYTES, MAX_LABELS, MAX_VALUE_BYTES, read_label_sets},
};

/// Where the input's memory is mapped.
const HEAP: u64 = 0x7f00_0000_0000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, memory)) = data.split_first() else {
        return;
    };
    let repr = if mode & 1 == 0 {
        LabelRepr::Slice
    } else {
        LabelRepr::Map
    };
    set_memory(vec![(HEAP, memory.to_vec())]);
    let ptrs = [HEAP, HEAP + 8 * u64::from(mode >> 1), HEAP + 0x40];
    for set in read_label_sets(FAKE_PID, repr, &ptrs, &mut Vec::new())
        .into_iter()
        .flatten()
    {
        assert!(set.labels.len() <= MAX_LABELS);
        for (key, value) in set.labels.iter() {
            assert!(key.len() <= MAX_KEY_BYTES + '…'.len_utf8());
            assert!(value.len() <= MAX_VALUE_BYTES + '…'.len_utf8());
        }
    }
});
