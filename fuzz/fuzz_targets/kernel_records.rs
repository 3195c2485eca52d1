//! What leakscope reads from the kernel itself: the task iterator's record stream
//! (records the BPF program writes: processes and blocked threads, their names and
//! registers the watched programs' own) and the kernel's BTF, searched for the types and
//! helpers the iterator needs. Any bytes give records of the declared kinds only, each
//! classified; a stream cut short loses only its tail.
//!
//! Input (after [`grow`], up to 8 MiB, the size of a large kernel's BTF): the stream,
//! also read as BTF.
#![no_main]

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::resources::StackBytes;
use tracer_user::sources::threads::{
    bpf::{KernelFeatures, parse_records},
    record::ThreadWaiter,
    wait::WaitClassifier,
};

fuzz_target!(|data: &[u8]| {
    let data = grow(data, 8 << 20);
    let records = parse_records(&data);
    let mut classifier = WaitClassifier::default();
    for record in &records.waiters {
        if let Some((_, detail)) = classifier.classify(record) {
            let _ = ThreadWaiter::of(record, detail, StackBytes::default());
        }
    }
    let _ = records.at_mono_ns();
    // A stream cut short loses its tail only.
    let part = parse_records(&data[..data.len() / 2]);
    assert!(
        records.waiters.starts_with(&part.waiters)
            && records.processes.starts_with(&part.processes),
        "a cut stream read other records"
    );
    let features = KernelFeatures::from_btf(&data);
    let _ = features.missing();
});
