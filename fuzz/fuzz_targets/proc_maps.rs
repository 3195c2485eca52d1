//! /proc/PID/maps as a process (its mapped file names) can shape it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::host::procfs::parse_maps;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for map in parse_maps(&text) {
        map.file_path();
        map.map_files_name();
        map.is_deleted();
    }
});
