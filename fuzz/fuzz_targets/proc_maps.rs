//! /proc/PID/maps as a process (its mappings and their file names) can shape it, up to
//! the 32 MiB leakscope reads, and what is computed from it per frame: the mapping of an
//! address, the name under map_files, the load bias of a binary mapped there.
//!
//! Input (after [`grow`], up to `MAX_MAPS_BYTES`): the file's bytes.
#![no_main]

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::host::{
    binary::{LoadSegment, load_bias},
    procfs::{MAX_MAPS, MAX_MAPS_BYTES, map_containing, parse_maps},
};

fuzz_target!(|data: &[u8]| {
    let data = grow(data, MAX_MAPS_BYTES as usize);
    let text = String::from_utf8_lossy(&data);
    let maps = parse_maps(&text);
    assert!(maps.len() <= MAX_MAPS + 1);
    let loads = [
        LoadSegment {
            offset: 0,
            vaddr: 0x40_0000,
            filesz: 0x1000,
            executable: false,
        },
        LoadSegment {
            offset: 0x1040,
            vaddr: 0x40_2040,
            filesz: 0x5000,
            executable: true,
        },
    ];
    for map in maps.iter().take(4096) {
        assert!(map.start <= map.end);
        if let Some(path) = map.file_path() {
            assert!(map.path.as_deref().is_some_and(|p| p.starts_with(path)));
        }
        let name = map.map_files_name();
        assert!(!name.contains('/') && name.len() <= 33);
        let _ = map.is_deleted();
        let _ = load_bias(&loads, map);
        for addr in [map.start, map.end.saturating_sub(1), map.end] {
            if let Some(found) = map_containing(&maps, addr) {
                assert!(found.contains(addr));
            }
        }
    }
});
