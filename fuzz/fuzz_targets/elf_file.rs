//! An ELF file as leakscope meets it on disk, checked through the open file itself (the
//! way a process's executable and mapped binaries are, read on demand, never mapped):
//! whether it is Go and its analysis, its build id, its unwind sections, holding it
//! (a user's file: a sealed copy of its symbol and debug sections, bounded) and naming
//! offsets in it with blazesym. Input (after [`grow`], up to 16 MiB): the file's bytes.
#![no_main]

use std::{fs::File, io::Write, os::fd::FromRawFd};

use leakscope_fuzz::grow;
use libfuzzer_sys::fuzz_target;
use tracer_user::{
    host::binary::{FileIdent, HeldBinary, MappedBinary, SymbolSections, read_build_id},
    model::MAX_FRAME_NAME,
    sources::go::executable::{OpenedExecutable, analyse_executable},
    stacks::{symbolize::fuzz_symbolize_held, unwind::fuzz_unwind_info_of_file},
};

/// Largest file made: past the header tables' bounds (65,536 entries of 64 bytes) and
/// the notes' (1 MiB); larger sizes only copy more.
const MAX_FILE: usize = 16 << 20;

/// Most bytes of a binary copied to be held (as the symbols share's quota might allow).
const MAX_COPY: u64 = 8 << 20;

/// A file of these bytes (a memfd: any user may write it, as a user's binary).
fn file_of(bytes: &[u8]) -> File {
    // SAFETY: memfd_create with a NUL-terminated name; the fd is owned by the File.
    let fd = unsafe { libc::memfd_create(c"leakscope-fuzz".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes).expect("writing a memfd");
    file
}

fuzz_target!(|data: &[u8]| {
    let bytes = grow(data, MAX_FILE);
    let file = file_of(&bytes);
    let ident = FileIdent::of(&file.metadata().expect("memfd metadata"));
    let exe = OpenedExecutable {
        file: file.try_clone().expect("dup"),
        ident,
    };
    let _ = analyse_executable(&exe);
    if let Some(id) = read_build_id(&file) {
        assert!(!id.is_empty() && id.len() <= 64);
    }
    let (held_bytes, _) = fuzz_unwind_info_of_file(&file, 0x10_0000);
    assert!(held_bytes <= 3 * bytes.len());
    // Held as a user's file is (never mapped: a memfd is no root-only file on a local
    // file system), its symbol tables and debug info copied within a copy bound.
    let Some(sections) = SymbolSections::of(&file) else {
        return;
    };
    let binary = MappedBinary {
        file,
        ident,
        opened: "/fuzz".into(),
    };
    let Ok(held) = HeldBinary::hold(binary, &sections, true, MAX_COPY) else {
        return;
    };
    assert!(held.copied_bytes <= MAX_COPY);
    let len = bytes.len() as u64;
    let offsets = [0x40, 0x1000, len / 2, len.saturating_sub(1)];
    if let Some(frames) = fuzz_symbolize_held(&held, &offsets) {
        assert_eq!(frames.len(), offsets.len());
        for f in &frames {
            let long =
                |name: &Option<String>| name.as_ref().is_some_and(|n| n.len() > MAX_FRAME_NAME);
            assert!(
                !long(&f.function) && !long(&f.file),
                "a name over {MAX_FRAME_NAME} bytes"
            );
        }
    }
});
