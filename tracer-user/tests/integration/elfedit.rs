//! Rewriting ELF files for the hostile-binary tests: a built program keeps running
//! (the loader reads only its program headers) while its section headers point at
//! what an attacker would put there: symbol tables of endless names, compressed debug
//! sections that inflate to gigabytes, unwind tables of a hundred megabytes, gigabytes
//! of holes. New bytes are appended; holes are never written, so a gigabyte costs no
//! disk; the section names and headers are written anew at the end.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// `sh_flags` of a compressed section.
pub const SHF_COMPRESSED: u64 = 0x800;

/// An ELF file being rewritten.
pub struct ElfEdit {
    data: Vec<u8>,
    /// Section headers, 64 bytes each.
    headers: Vec<[u8; 64]>,
    /// The section names table.
    names: Vec<u8>,
    names_index: usize,
    /// Bytes to write past the original data: (offset, bytes).
    blobs: Vec<(u64, Vec<u8>)>,
    /// The end of the file so far (blobs and holes).
    end: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl ElfEdit {
    pub fn open(path: &Path) -> Self {
        let data = std::fs::read(path).unwrap();
        let (shoff, shnum) = (u64_at(&data, 0x28) as usize, u16_at(&data, 0x3c) as usize);
        let names_index = u16_at(&data, 0x3e) as usize;
        let headers: Vec<[u8; 64]> = (0..shnum)
            .map(|i| {
                data[shoff + i * 64..shoff + (i + 1) * 64]
                    .try_into()
                    .unwrap()
            })
            .collect();
        let names_header = &headers[names_index];
        let (off, size) = (
            u64_at(names_header, 24) as usize,
            u64_at(names_header, 32) as usize,
        );
        let names = data[off..off + size].to_vec();
        let end = data.len() as u64;
        Self {
            data,
            headers,
            names,
            names_index,
            blobs: Vec::new(),
            end,
        }
    }

    /// The original bytes of section `name`.
    pub fn section(&self, name: &str) -> &[u8] {
        let h = &self.headers[self.index(name)];
        let (off, size) = (u64_at(h, 24) as usize, u64_at(h, 32) as usize);
        &self.data[off..off + size]
    }

    /// The index of section `name`.
    pub fn index(&self, name: &str) -> usize {
        self.headers
            .iter()
            .position(|h| {
                let at = u32_at(h, 0) as usize;
                self.names[at..].split(|&b| b == 0).next() == Some(name.as_bytes())
            })
            .unwrap_or_else(|| panic!("no section {name}"))
    }

    /// Appends `bytes` (16-aligned); returns their offset.
    pub fn append(&mut self, bytes: Vec<u8>) -> u64 {
        let at = self.end.next_multiple_of(16);
        self.end = at + bytes.len() as u64;
        self.blobs.push((at, bytes));
        at
    }

    /// Appends a hole of `len` bytes (never written: it reads as zeros and costs no
    /// disk); returns its offset.
    pub fn append_hole(&mut self, len: u64) -> u64 {
        let at = self.end.next_multiple_of(4096);
        self.end = at + len;
        at
    }

    /// Points section `name` at `size` bytes at `offset`, with `flags` if given.
    pub fn repoint(&mut self, name: &str, offset: u64, size: u64, flags: Option<u64>) {
        let i = self.index(name);
        let h = &mut self.headers[i];
        h[24..32].copy_from_slice(&offset.to_le_bytes());
        h[32..40].copy_from_slice(&size.to_le_bytes());
        if let Some(flags) = flags {
            h[8..16].copy_from_slice(&flags.to_le_bytes());
        }
    }

    /// Writes the rewritten file at `path` (mode 0755), with new section names and
    /// headers at its end.
    pub fn write(mut self, path: &Path) {
        let names_at = self.append(self.names.clone());
        let names_len = self.names.len() as u64;
        let names_index = self.names_index;
        let h = &mut self.headers[names_index];
        h[24..32].copy_from_slice(&names_at.to_le_bytes());
        h[32..40].copy_from_slice(&names_len.to_le_bytes());
        let table: Vec<u8> = self.headers.iter().flatten().copied().collect();
        let table_at = self.append(table);
        self.data[0x28..0x30].copy_from_slice(&table_at.to_le_bytes());
        let _ = std::fs::remove_file(path);
        let file = File::create(path).unwrap();
        file.write_all_at(&self.data, 0).unwrap();
        for (at, bytes) in &self.blobs {
            file.write_all_at(bytes, *at).unwrap();
        }
        file.set_len(self.end).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A zlib stream that inflates to `len` zero bytes, made directly (fixed-Huffman
/// deflate: one literal zero, then copies of 258 bytes at distance 1): a few bytes per
/// kilobyte it inflates to, and no time spent compressing.
pub fn zlib_zeros(len: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        fn put(&mut self, value: u64, bits: u32) {
            self.acc |= value << self.n;
            self.n += bits;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u64, bits: u32) {
            let reversed = code.reverse_bits() >> (64 - bits);
            self.put(reversed, bits);
        }
    }
    let mut w = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    w.put(1, 1); // final block
    w.put(1, 2); // fixed Huffman
    assert!(len >= 1);
    w.code(0x30, 8); // literal 0
    let mut left = len - 1;
    while left > 0 {
        let run = left.min(258);
        if run < 3 {
            for _ in 0..run {
                w.code(0x30, 8);
            }
        } else if run == 258 {
            w.code(0xc5, 8); // length symbol 285
            w.code(0, 5); // distance 1
        } else {
            // Lengths 3..=257: symbols 257.. with extra bits (RFC 1951, 3.2.5).
            let (symbol, base, extra) = length_symbol(run as u32);
            let code = symbol - 256; // 257..279: 7-bit codes 1..23; 280..: 8-bit 0xc0..
            if symbol <= 279 {
                w.code(u64::from(code), 7);
            } else {
                w.code(0xc0 + u64::from(symbol - 280), 8);
            }
            w.put(u64::from(run as u32 - base), extra);
            w.code(0, 5);
        }
        left -= run;
    }
    w.code(0, 7); // end of block (256)
    if w.n > 0 {
        w.out.push(w.acc as u8);
    }
    // Adler-32 of `len` zeros: a = 1, b = len (mod 65521).
    let adler = ((len % 65521) << 16) | 1;
    w.out.extend_from_slice(&(adler as u32).to_be_bytes());
    w.out
}

/// The deflate length symbol for `len` (3..=257): symbol, base length, extra bits.
fn length_symbol(len: u32) -> (u32, u32, u32) {
    const BASES: [(u32, u32); 28] = [
        (3, 0),
        (4, 0),
        (5, 0),
        (6, 0),
        (7, 0),
        (8, 0),
        (9, 0),
        (10, 0),
        (11, 1),
        (13, 1),
        (15, 1),
        (17, 1),
        (19, 2),
        (23, 2),
        (27, 2),
        (31, 2),
        (35, 3),
        (43, 3),
        (51, 3),
        (59, 3),
        (67, 4),
        (83, 4),
        (99, 4),
        (115, 4),
        (131, 5),
        (163, 5),
        (195, 5),
        (227, 5),
    ];
    let i = BASES.iter().rposition(|&(base, _)| base <= len).unwrap();
    (257 + i as u32, BASES[i].0, BASES[i].1)
}

/// Check that the zlib bomb is a valid stream inflating to exactly the zeros asked.
#[test]
fn zlib_zeros_inflates_to_zeros() {
    use std::io::Read;
    for len in [1u64, 2, 3, 259, 1000, 1 << 20] {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&zlib_zeros(len)[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len() as u64, len);
        assert!(out.iter().all(|&b| b == 0));
    }
}
