//! A writer of the cpio "newc" format, the format the kernel unpacks an initramfs from.
//!
//! Written here rather than run through cpio(1): a fresh machine has no cpio, and the
//! archive needs entries (a console device node, symlinks) that are simpler to state
//! than to stage on disk.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// An initramfs being written, entry by entry; parents must come before children.
pub struct CpioWriter {
    out: BufWriter<File>,
    next_inode: u32,
    /// Bytes written so far, for the 4-byte alignment the format wants.
    offset: u64,
}

/// One entry's header fields that vary.
struct Header<'a> {
    name: &'a str,
    mode: u32,
    size: u64,
    rdev: (u32, u32),
}

impl CpioWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            next_inode: 1,
            offset: 0,
        })
    }

    pub fn dir(&mut self, name: &str) -> Result<()> {
        self.header(&Header {
            name,
            mode: S_IFDIR | 0o755,
            size: 0,
            rdev: (0, 0),
        })
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> Result<()> {
        self.header(&Header {
            name,
            mode: S_IFLNK | 0o777,
            size: target.len() as u64,
            rdev: (0, 0),
        })?;
        self.data(target.as_bytes())
    }

    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) -> Result<()> {
        self.header(&Header {
            name,
            mode: S_IFCHR | 0o600,
            size: 0,
            rdev: (major, minor),
        })
    }

    /// A regular file with `bytes` as its content.
    pub fn file_bytes(&mut self, name: &str, mode: u32, bytes: &[u8]) -> Result<()> {
        self.header(&Header {
            name,
            mode: S_IFREG | mode,
            size: bytes.len() as u64,
            rdev: (0, 0),
        })?;
        self.data(bytes)
    }

    /// A regular file copied from `source` (symlinks followed), keeping its permissions.
    pub fn file_from(&mut self, name: &str, source: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mut input =
            File::open(source).with_context(|| format!("cannot open {}", source.display()))?;
        let meta = input.metadata()?;
        self.header(&Header {
            name,
            mode: S_IFREG | (meta.permissions().mode() & 0o7777),
            size: meta.len(),
            rdev: (0, 0),
        })?;
        let copied = io::copy(&mut input, &mut self.out)
            .with_context(|| format!("cannot copy {}", source.display()))?;
        anyhow::ensure!(
            copied == meta.len(),
            "{} changed size while being archived",
            source.display()
        );
        self.offset += copied;
        self.pad()
    }

    /// Writes the trailer and flushes.
    pub fn finish(mut self) -> Result<()> {
        self.header(&Header {
            name: "TRAILER!!!",
            mode: 0,
            size: 0,
            rdev: (0, 0),
        })?;
        self.out.flush()?;
        Ok(())
    }

    fn header(&mut self, header: &Header) -> Result<()> {
        let inode = self.next_inode;
        self.next_inode += 1;
        let size = u32::try_from(header.size).context("a file over 4 GiB in the initramfs")?;
        let fields = [
            inode,
            header.mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime: reproducible archives
            size,
            0, // devmajor
            0, // devminor
            header.rdev.0,
            header.rdev.1,
            header.name.len() as u32 + 1,
            0, // check
        ];
        let mut text = String::from("070701");
        for field in fields {
            text.push_str(&format!("{field:08X}"));
        }
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(header.name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.offset += text.len() as u64 + header.name.len() as u64 + 1;
        self.pad()
    }

    fn data(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        self.pad()
    }

    fn pad(&mut self) -> Result<()> {
        let padding = (4 - self.offset % 4) % 4;
        self.out.write_all(&[0; 3][..padding as usize])?;
        self.offset += padding;
        Ok(())
    }
}
