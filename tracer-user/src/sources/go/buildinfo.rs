//! The Go build-info blob (`.go.buildinfo`): is this a Go binary, and which
//! toolchain built it.
//!
//! The linker writes a 32-byte header that starts with the magic
//! `"\xff Go buildinf:"` at a 16-byte aligned address near the start of the
//! data segment (its own `.go.buildinfo` section in ELF):
//!
//! ```text
//! magic   [14]byte
//! ptrSize uint8          // used by the pointer format
//! flags   uint8          // bit 0: big endian, bit 1: inline strings (Go 1.18+)
//! versPtr uintptr        // pointer format only (Go < 1.18)
//! modPtr  uintptr        // pointer format only
//! ```
//!
//! In the inline format (flags & 2) the header is followed by two
//! uvarint-length-prefixed strings: the version (`go1.26.6`) and the module
//! info. In the pointer format the two words point at Go string headers
//! (`{data *byte, len int}`) elsewhere in the image.
//!
//! See `debug/buildinfo` in the Go source.

use std::fmt;

use thiserror::Error;

/// The magic that starts a build-info blob.
pub const BUILDINFO_MAGIC: &[u8; 14] = b"\xff Go buildinf:";

const HEADER_SIZE: usize = 32;
const ALIGN: u64 = 16;
const FLAG_BIG_ENDIAN: u8 = 0x1;
const FLAG_INLINE_STRINGS: u8 = 0x2;
/// Longest string accepted from a blob (the module info of a large program
/// is a few tens of KiB).
const MAX_STRING: u64 = 1 << 20;

/// Why a binary's Go build info could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildInfoError {
    #[error("no Go build-info blob (not a Go binary, or built before Go 1.13)")]
    NotFound,
    #[error("Go build-info blob is truncated")]
    Truncated,
    #[error("Go build-info blob is malformed: {0}")]
    Malformed(&'static str),
    #[error("Go build info has an unrecognised version string {0:?}")]
    BadVersion(String),
}

/// A Go toolchain version, as recorded by the linker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    /// 0 for `go1.20`, `go1.21rc2` and development builds.
    pub patch: u32,
    /// The string as recorded, e.g. `go1.26.6` or `go1.22.0 X:nocoverageredesign`.
    pub raw: String,
}

impl GoVersion {
    /// Parses a runtime.Version()-style string: `go1.26.6`, `go1.20`,
    /// `go1.21rc2`, `go1.24.1-fips X:boringcrypto`, `devel go1.23-1a2b3c Tue ...`.
    pub fn parse(raw: &str) -> Result<GoVersion, BuildInfoError> {
        let bad = || BuildInfoError::BadVersion(raw.to_string());
        let s = raw.trim();
        let s = s.strip_prefix("devel ").unwrap_or(s);
        let s = s.strip_prefix("go").ok_or_else(bad)?;
        let (major, rest) = leading_number(s).ok_or_else(bad)?;
        let rest = rest.strip_prefix('.').ok_or_else(bad)?;
        let (minor, rest) = leading_number(rest).ok_or_else(bad)?;
        let patch = match rest.strip_prefix('.') {
            Some(r) => leading_number(r).ok_or_else(bad)?.0,
            None => 0,
        };
        Ok(GoVersion {
            major,
            minor,
            patch,
            raw: raw.to_string(),
        })
    }

    /// True when this version is `major.minor` or later.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 || end > 9 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// What the build-info blob says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: GoVersion,
    /// Virtual address of the blob's header.
    pub address: u64,
    /// Pointer size recorded in the header (pointer format), or 8/4 guessed
    /// from nothing: the inline format does not need it and records it anyway.
    pub ptr_size: u8,
    /// The module info (`path\tcmd/...\nmod\t...`), without the framing
    /// sentinels; empty when the binary was built without module support.
    pub modinfo: String,
}

/// Finds the first 16-byte aligned build-info magic in `region`, which is
/// mapped at virtual address `region_addr`. Returns the offset in `region`.
pub fn find_magic(region: &[u8], region_addr: u64) -> Option<usize> {
    let mut start = 0usize;
    while let Some(pos) = memfind(&region[start..], BUILDINFO_MAGIC) {
        let off = start + pos;
        if region_addr.wrapping_add(off as u64).is_multiple_of(ALIGN) {
            return Some(off);
        }
        start = off + 1;
    }
    None
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = 0usize;
    while i + needle.len() <= hay.len() {
        let pos = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        let at = i + pos;
        if &hay[at..at + needle.len()] == needle {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Parses the build info in `region` (a section or segment's file contents,
/// mapped at `region_addr`). `read` reads `len` bytes at a virtual address of
/// the same image; only the pre-1.18 pointer format needs it.
pub fn parse(
    region: &[u8],
    region_addr: u64,
    read: &dyn Fn(u64, usize) -> Option<Vec<u8>>,
) -> Result<BuildInfo, BuildInfoError> {
    let off = find_magic(region, region_addr).ok_or(BuildInfoError::NotFound)?;
    let header = region
        .get(off..off + HEADER_SIZE)
        .ok_or(BuildInfoError::Truncated)?;
    let ptr_size = header[14];
    let flags = header[15];
    let (vers, modinfo) = if flags & FLAG_INLINE_STRINGS != 0 {
        let rest = &region[off + HEADER_SIZE..];
        let (vers, used) = inline_string(rest)?;
        let (modinfo, _) = inline_string(&rest[used..])?;
        (vers, modinfo)
    } else {
        let big = flags & FLAG_BIG_ENDIAN != 0;
        let ptr = |b: &[u8]| -> Result<u64, BuildInfoError> { read_word(b, ptr_size, big) };
        let ps = ptr_size as usize;
        if ps != 4 && ps != 8 {
            return Err(BuildInfoError::Malformed("pointer size is neither 4 nor 8"));
        }
        let vers_ptr = ptr(&header[16..16 + ps])?;
        let mod_ptr = ptr(&header[16 + ps..16 + 2 * ps])?;
        let go_string = |addr: u64| -> Result<String, BuildInfoError> {
            let hdr = read(addr, 2 * ps).ok_or(BuildInfoError::Truncated)?;
            if hdr.len() < 2 * ps {
                return Err(BuildInfoError::Truncated);
            }
            let data = ptr(&hdr[..ps])?;
            let len = ptr(&hdr[ps..2 * ps])?;
            if len > MAX_STRING {
                return Err(BuildInfoError::Malformed("string too long"));
            }
            if len == 0 {
                return Ok(String::new());
            }
            let bytes = read(data, len as usize).ok_or(BuildInfoError::Truncated)?;
            if bytes.len() < len as usize {
                return Err(BuildInfoError::Truncated);
            }
            Ok(String::from_utf8_lossy(&bytes[..len as usize]).into_owned())
        };
        (go_string(vers_ptr)?, go_string(mod_ptr)?)
    };
    if vers.is_empty() {
        return Err(BuildInfoError::Malformed("empty version"));
    }
    let version = GoVersion::parse(&vers)?;
    Ok(BuildInfo {
        version,
        address: region_addr.wrapping_add(off as u64),
        ptr_size,
        modinfo: strip_modinfo_framing(&modinfo),
    })
}

fn read_word(b: &[u8], ptr_size: u8, big: bool) -> Result<u64, BuildInfoError> {
    match (ptr_size, big) {
        (4, false) => Ok(u32::from_le_bytes(b[..4].try_into().unwrap()) as u64),
        (4, true) => Ok(u32::from_be_bytes(b[..4].try_into().unwrap()) as u64),
        (8, false) => Ok(u64::from_le_bytes(b[..8].try_into().unwrap())),
        (8, true) => Ok(u64::from_be_bytes(b[..8].try_into().unwrap())),
        _ => Err(BuildInfoError::Malformed("pointer size is neither 4 nor 8")),
    }
}

/// Reads a uvarint-length-prefixed string; returns it and the bytes used.
fn inline_string(b: &[u8]) -> Result<(String, usize), BuildInfoError> {
    let (len, n) = uvarint(b).ok_or(BuildInfoError::Truncated)?;
    if len > MAX_STRING {
        return Err(BuildInfoError::Malformed("string too long"));
    }
    let end = n
        .checked_add(len as usize)
        .ok_or(BuildInfoError::Truncated)?;
    let bytes = b.get(n..end).ok_or(BuildInfoError::Truncated)?;
    Ok((String::from_utf8_lossy(bytes).into_owned(), end))
}

/// Decodes an unsigned LEB128 varint (Go's `binary.Uvarint`).
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The module info is framed by two 16-byte sentinels
/// (cmd/go/internal/modload.infoStart/infoEnd); `debug/buildinfo` strips them.
fn strip_modinfo_framing(m: &str) -> String {
    let b = m.as_bytes();
    if b.len() >= 33 && b[b.len() - 17] == b'\n' {
        String::from_utf8_lossy(&b[16..b.len() - 16]).into_owned()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_read(_: u64, _: usize) -> Option<Vec<u8>> {
        None
    }

    fn inline_blob(version: &str, modinfo: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(BUILDINFO_MAGIC);
        b.push(8);
        b.push(FLAG_INLINE_STRINGS);
        b.resize(HEADER_SIZE, 0);
        for s in [version, modinfo] {
            let mut len = s.len();
            loop {
                let byte = (len & 0x7f) as u8;
                len >>= 7;
                if len == 0 {
                    b.push(byte);
                    break;
                }
                b.push(byte | 0x80);
            }
            b.extend_from_slice(s.as_bytes());
        }
        b
    }

    /// Check that version strings of every shape the toolchain writes parse.
    #[test]
    fn version_strings_parse() {
        let v = GoVersion::parse("go1.26.6").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 26, 6));
        assert_eq!(v.raw, "go1.26.6");
        let v = GoVersion::parse("go1.20").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 20, 0));
        let v = GoVersion::parse("go1.21rc2").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 21, 0));
        let v = GoVersion::parse("go1.22.0 X:nocoverageredesign").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 22, 0));
        let v = GoVersion::parse("devel go1.23-1a2b3c4 Tue Jan 2 15:04:05 2024 +0000").unwrap();
        assert_eq!((v.major, v.minor), (1, 23));
        assert!(v.at_least(1, 21) && !v.at_least(1, 24));
        for bad in [
            "",
            "go",
            "gox.1",
            "1.21.0",
            "go1",
            "go1.",
            "go99999999999.1",
        ] {
            assert!(GoVersion::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    /// Check that the Go 1.18+ inline-string format is decoded, at any
    /// 16-byte aligned position, and the module framing is stripped.
    #[test]
    fn inline_format() {
        let modinfo = format!(
            "{}path\tx\nmod\tx\t(devel)\t\n{}",
            "0".repeat(16),
            "1".repeat(16)
        );
        let mut region = vec![0u8; 48];
        region.extend(inline_blob("go1.21.13", &modinfo));
        let info = parse(&region, 0x5000, &no_read).unwrap();
        assert_eq!(info.version.minor, 21);
        assert_eq!(info.version.patch, 13);
        assert_eq!(info.address, 0x5030);
        assert_eq!(info.modinfo, "path\tx\nmod\tx\t(devel)\t\n");
    }

    /// Check that a magic at an unaligned address is ignored.
    #[test]
    fn unaligned_magic_ignored() {
        let mut region = vec![0u8; 8];
        region.extend(inline_blob("go1.21.13", ""));
        assert_eq!(
            parse(&region, 0x5000, &no_read),
            Err(BuildInfoError::NotFound)
        );
    }

    /// Check that the pre-1.18 pointer format follows its pointers.
    #[test]
    fn pointer_format() {
        let mut region = Vec::new();
        region.extend_from_slice(BUILDINFO_MAGIC);
        region.push(8);
        region.push(0);
        region.extend_from_slice(&0x9000u64.to_le_bytes());
        region.extend_from_slice(&0x9010u64.to_le_bytes());
        let mem = |addr: u64, len: usize| -> Option<Vec<u8>> {
            let mut image = vec![0u8; 0x100];
            image[0..8].copy_from_slice(&0x9080u64.to_le_bytes());
            image[8..16].copy_from_slice(&8u64.to_le_bytes());
            image[0x10..0x18].copy_from_slice(&0x9090u64.to_le_bytes());
            image[0x18..0x20].copy_from_slice(&0u64.to_le_bytes());
            image[0x80..0x88].copy_from_slice(b"go1.17.2");
            let off = addr.checked_sub(0x9000)? as usize;
            image.get(off..off + len).map(<[u8]>::to_vec)
        };
        let info = parse(&region, 0x1000, &mem).unwrap();
        assert_eq!(info.version.raw, "go1.17.2");
        assert_eq!(info.ptr_size, 8);
        assert_eq!(info.modinfo, "");
    }

    /// Check that the fuzzing seed of the pointer format (a Go 1.17 blob as the fuzz
    /// target maps it, at 0x1000) reads as go1.17.13 with its module info.
    #[test]
    fn pointer_format_fuzz_seed() {
        let seed = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/seeds/buildinfo/go1.17-pointers"
        ))
        .expect("fuzz/seeds/buildinfo/go1.17-pointers");
        let read = |addr: u64, len: usize| {
            let start = usize::try_from(addr.checked_sub(0x1000)?).ok()?;
            seed.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
        };
        let info = parse(&seed, 0x1000, &read).unwrap();
        assert_eq!(info.version.raw, "go1.17.13");
        assert_eq!(info.modinfo, "path\tx\nmod\tx\t(devel)\t\n");
    }

    /// Check that truncated and garbage blobs give errors, never panics.
    #[test]
    fn garbage_is_an_error() {
        let blob = inline_blob("go1.26.6", "");
        for cut in 0..blob.len() {
            assert!(parse(&blob[..cut], 0, &no_read).is_err(), "cut at {cut}");
        }
        let mut huge = blob[..HEADER_SIZE].to_vec();
        huge.extend_from_slice(&[0xff; 12]);
        assert!(parse(&huge, 0, &no_read).is_err());
        let mut ptr = blob[..HEADER_SIZE].to_vec();
        ptr[15] = 0;
        ptr[14] = 3;
        assert!(parse(&ptr, 0, &no_read).is_err());
        ptr[14] = 8;
        assert_eq!(parse(&ptr, 0, &no_read), Err(BuildInfoError::Truncated));
        let mut state = 0x1234_5678u32;
        for _ in 0..200 {
            let mut g: Vec<u8> = (0..64)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 24) as u8
                })
                .collect();
            g[..14].copy_from_slice(BUILDINFO_MAGIC);
            let _ = parse(&g, 0, &no_read);
        }
    }
}
