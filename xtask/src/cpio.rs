//! A writer of the cpio "newc" format, the format the kernel unpacks an initramfs from.
//!
//! Written here rather than run through cpio(1): a fresh machine has no cpio, and the
//! archive needs entries (a console device node, symlinks) that are simpler to state
//! than to stage on disk. A whole directory tree (a Debian root file system) is packed
//! with its owners and modes; the kernel unpacks archives written one after another in
//! a file in order, later entries replacing earlier ones.

use std::fs::{File, OpenOptions};
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
    owner: (u32, u32),
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

    /// Opens `path`, which holds an archive, to write another one after it.
    pub fn append(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let offset = file.metadata()?.len();
        anyhow::ensure!(offset % 4 == 0, "{} does not end aligned", path.display());
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            next_inode: 1,
            offset,
        })
    }

    /// Every entry under `root` (not `root` itself), named relative to it, with its
    /// type, mode, owner and device numbers; parents before children, in name order.
    /// Sockets are left out; a hard link becomes a copy.
    pub fn tree(&mut self, root: &Path) -> Result<()> {
        self.tree_below(root, "")
    }

    fn tree_below(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .collect::<io::Result<_>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let path = entry.path();
            if self.entry_from(&name, &path)? {
                self.tree_below(&path, &format!("{name}/"))?;
            }
        }
        Ok(())
    }

    /// Writes the entry for `path` (not following a symlink), its mode carrying its
    /// type; true when it is a directory.
    fn entry_from(&mut self, name: &str, path: &Path) -> Result<bool> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        let kind = meta.file_type();
        let mut header = Header {
            name,
            mode: meta.mode(),
            size: 0,
            rdev: (0, 0),
            owner: (meta.uid(), meta.gid()),
        };
        if kind.is_dir() {
            self.header(&header)?;
            return Ok(true);
        }
        if kind.is_file() {
            header.size = meta.len();
            self.header(&header)?;
            let mut input =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            self.copy_data(&mut input, meta.len(), path)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(path)?;
            let target = target.as_os_str().as_encoded_bytes();
            header.size = target.len() as u64;
            self.header(&header)?;
            self.data(target)?;
        } else if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() {
            let dev = meta.rdev();
            // glibc's encoding of dev_t (gnu_dev_major / gnu_dev_minor).
            let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
            let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
            header.rdev = (major as u32, minor as u32);
            self.header(&header)?;
        }
        Ok(false)
    }

    pub fn dir(&mut self, name: &str) -> Result<()> {
        self.header(&Header {
            name,
            mode: S_IFDIR | 0o755,
            size: 0,
            rdev: (0, 0),
            owner: (0, 0),
        })
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> Result<()> {
        self.header(&Header {
            name,
            mode: S_IFLNK | 0o777,
            size: target.len() as u64,
            rdev: (0, 0),
            owner: (0, 0),
        })?;
        self.data(target.as_bytes())
    }

    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) -> Result<()> {
        self.header(&Header {
            name,
            mode: S_IFCHR | 0o600,
            size: 0,
            rdev: (major, minor),
            owner: (0, 0),
        })
    }

    /// A regular file with `bytes` as its content.
    pub fn file_bytes(&mut self, name: &str, mode: u32, bytes: &[u8]) -> Result<()> {
        self.header(&Header {
            name,
            mode: S_IFREG | mode,
            size: bytes.len() as u64,
            rdev: (0, 0),
            owner: (0, 0),
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
            owner: (0, 0),
        })?;
        self.copy_data(&mut input, meta.len(), source)
    }

    fn copy_data(&mut self, input: &mut File, len: u64, source: &Path) -> Result<()> {
        let copied = io::copy(input, &mut self.out)
            .with_context(|| format!("cannot copy {}", source.display()))?;
        anyhow::ensure!(
            copied == len,
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
            owner: (0, 0),
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
            header.owner.0,
            header.owner.1,
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
