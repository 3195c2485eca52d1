//! What a blocked thread waits on, told from its record: the site's wait label (the
//! syscall's name; every futex flavour is "futex"), the futex operation, and the kind of
//! file descriptor a call on one fd waits on. Wakes and requeues are no waits.

use std::sync::Arc;

use tracer_common::{
    SYS_FUTEX, SYS_FUTEX_WAIT, SYS_FUTEX_WAITV, ThreadWaiterRecord, WAITER_IN_FUTEX_WAITV, fd_kind,
};

use super::syscalls::syscall_name;
use crate::fasthash::IntMap;

/// Kind-specific facts about a thread waiter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WaitDetail {
    Futex {
        op: FutexWait,
        addr: u64,
    },
    /// A thread in any other syscall; for syscalls on one file descriptor, the fd and
    /// what kind of file it is.
    Syscall {
        fd: Option<(i32, FdKind)>,
    },
}

/// What kind of futex wait a thread is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FutexWait {
    Wait,
    WaitBitset,
    LockPi,
    LockPi2,
    WaitRequeuePi,
    Waitv,
    /// futex_wait(2), the futex2 wait on one word.
    Wait2,
}

impl FutexWait {
    /// Classifies a futex(2) call from its syscall number and op; `None` for calls that
    /// do not block (wakes, requeues) and for other syscalls.
    pub fn classify(syscall_nr: u64, op: u64, flags: u32) -> Option<Self> {
        if syscall_nr == SYS_FUTEX_WAITV || flags & WAITER_IN_FUTEX_WAITV != 0 {
            return Some(Self::Waitv);
        }
        if syscall_nr == SYS_FUTEX_WAIT {
            return Some(Self::Wait2);
        }
        if syscall_nr != SYS_FUTEX {
            return None;
        }
        // FUTEX_CMD_MASK strips FUTEX_PRIVATE_FLAG (128) and FUTEX_CLOCK_REALTIME (256).
        match op & 0x7f {
            0 => Some(Self::Wait),
            9 => Some(Self::WaitBitset),
            6 => Some(Self::LockPi),
            13 => Some(Self::LockPi2),
            11 => Some(Self::WaitRequeuePi),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Wait => "FUTEX_WAIT",
            Self::WaitBitset => "FUTEX_WAIT_BITSET",
            Self::LockPi => "FUTEX_LOCK_PI",
            Self::LockPi2 => "FUTEX_LOCK_PI2",
            Self::WaitRequeuePi => "FUTEX_WAIT_REQUEUE_PI",
            Self::Waitv => "futex_waitv",
            Self::Wait2 => "futex_wait",
        }
    }
}

/// Tells what each thread record waits on; keeps one shared label per syscall.
#[derive(Default)]
pub struct WaitClassifier {
    labels: IntMap<u64, Arc<str>>,
}

impl WaitClassifier {
    /// What a thread waits in: the site's wait label (its syscall's name) and the
    /// member's detail; `None` for futex calls that do not wait (wakes, requeues).
    pub fn classify(&mut self, rec: &ThreadWaiterRecord) -> Option<(Arc<str>, WaitDetail)> {
        let nr = rec.syscall_nr;
        if matches!(nr, SYS_FUTEX | SYS_FUTEX_WAITV | SYS_FUTEX_WAIT) {
            let op = FutexWait::classify(nr, rec.args[1], rec.flags)?;
            let detail = WaitDetail::Futex {
                op,
                addr: rec.args[0],
            };
            return Some((self.label(SYS_FUTEX), detail));
        }
        let fd = FdKind::from_record(rec.fd_kind, rec.fd_detail).map(|kind| (rec.fd, kind));
        Some((self.label(nr), WaitDetail::Syscall { fd }))
    }

    /// The wait label of syscall `nr`, one shared string per syscall.
    fn label(&mut self, nr: u64) -> Arc<str> {
        self.labels
            .entry(nr)
            .or_insert_with(|| match syscall_name(nr) {
                Some(name) => name.into(),
                None => format!("syscall_{nr}").into(),
            })
            .clone()
    }
}

/// The kind of file most members of a site wait on (ties go to the lower kind, so
/// the answer is stable); `None` when no member waits on an fd.
pub fn prevailing_fd_kind<'a>(details: impl IntoIterator<Item = &'a WaitDetail>) -> Option<FdKind> {
    let mut counts: Vec<(FdKind, u32)> = Vec::new();
    for detail in details {
        let WaitDetail::Syscall {
            fd: Some((_, kind)),
        } = detail
        else {
            continue;
        };
        match counts.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((*kind, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(kind, n)| (n, std::cmp::Reverse(kind)))
        .map(|(kind, _)| kind)
}

/// What a file descriptor is, as the kernel program told it (`enum ls_fd_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FdKind {
    /// The fd could not be looked up (closed while the thread waits on it, or not open).
    Unknown,
    Socket(SocketKind),
    /// A pipe or FIFO.
    Pipe,
    File,
    Directory,
    CharDevice,
    Tty,
    BlockDevice,
    Eventfd,
    Epoll,
    Signalfd,
    Timerfd,
    Inotify,
    Pidfd,
    IoUring,
    /// Another anonymous inode (userfaultfd, bpf objects...).
    AnonInode,
    Other,
}

/// A socket's protocol, as far as its address family and type tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SocketKind {
    Unix,
    Tcp,
    Udp,
    Tcp6,
    Udp6,
    Netlink,
    Packet,
    /// Any other family or type.
    Other,
}

const AF_UNIX: u32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const AF_NETLINK: u32 = 16;
const AF_PACKET: u32 = 17;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;

impl SocketKind {
    /// From `fd_detail` of a socket: address family | socket type << 16.
    fn from_detail(detail: u32) -> Self {
        let (family, kind) = (detail & 0xffff, detail >> 16);
        match (family, kind) {
            (AF_UNIX, _) => Self::Unix,
            (AF_INET, SOCK_STREAM) => Self::Tcp,
            (AF_INET, SOCK_DGRAM) => Self::Udp,
            (AF_INET6, SOCK_STREAM) => Self::Tcp6,
            (AF_INET6, SOCK_DGRAM) => Self::Udp6,
            (AF_NETLINK, _) => Self::Netlink,
            (AF_PACKET, _) => Self::Packet,
            _ => Self::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Unix => "unix",
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Tcp6 => "tcp6",
            Self::Udp6 => "udp6",
            Self::Netlink => "netlink",
            Self::Packet => "packet",
            Self::Other => "other",
        }
    }
}

impl FdKind {
    /// From a record's `fd_kind` and `fd_detail`; `None` when the syscall waits on no
    /// single fd.
    pub fn from_record(kind: u32, detail: u32) -> Option<Self> {
        Some(match kind {
            fd_kind::NONE => return None,
            fd_kind::SOCKET => Self::Socket(SocketKind::from_detail(detail)),
            fd_kind::PIPE => Self::Pipe,
            fd_kind::FILE => Self::File,
            fd_kind::DIR => Self::Directory,
            fd_kind::CHARDEV => Self::CharDevice,
            fd_kind::TTY => Self::Tty,
            fd_kind::BLOCKDEV => Self::BlockDevice,
            fd_kind::EVENTFD => Self::Eventfd,
            fd_kind::EPOLL => Self::Epoll,
            fd_kind::SIGNALFD => Self::Signalfd,
            fd_kind::TIMERFD => Self::Timerfd,
            fd_kind::INOTIFY => Self::Inotify,
            fd_kind::PIDFD => Self::Pidfd,
            fd_kind::IO_URING => Self::IoUring,
            fd_kind::ANON => Self::AnonInode,
            fd_kind::OTHER => Self::Other,
            _ => Self::Unknown,
        })
    }

    /// The name the report uses (README: `fd_kind`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Socket(_) => "socket",
            Self::Pipe => "pipe",
            Self::File => "file",
            Self::Directory => "directory",
            Self::CharDevice => "chardev",
            Self::Tty => "tty",
            Self::BlockDevice => "blockdev",
            Self::Eventfd => "eventfd",
            Self::Epoll => "epoll",
            Self::Signalfd => "signalfd",
            Self::Timerfd => "timerfd",
            Self::Inotify => "inotify",
            Self::Pidfd => "pidfd",
            Self::IoUring => "io_uring",
            Self::AnonInode => "anon_inode",
            Self::Other => "other",
        }
    }

    /// For sockets, the protocol.
    pub fn socket(self) -> Option<SocketKind> {
        match self {
            Self::Socket(kind) => Some(kind),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(syscall_nr: u64, args: [u64; 6], fd_kind: u32, fd_detail: u32) -> ThreadWaiterRecord {
        ThreadWaiterRecord {
            syscall_nr,
            args,
            fd: args[0] as i32,
            fd_kind,
            fd_detail,
            ..Default::default()
        }
    }

    /// Check that a thread's wait is named by its syscall, futex waits of every flavour
    /// share "futex" and keep their op, fd waits carry the fd's kind, futex wakes are no
    /// waits, and an unassigned number still gets a name.
    #[test]
    fn thread_waits_are_named_by_syscall() {
        let mut classifier = WaitClassifier::default();
        let mut wait = |rec: ThreadWaiterRecord| {
            classifier
                .classify(&rec)
                .map(|(name, detail)| (name.to_string(), detail))
        };
        assert_eq!(
            wait(record(0, [5, 0, 1, 0, 0, 0], fd_kind::SOCKET, 1 | 1 << 16)),
            Some((
                "read".into(),
                WaitDetail::Syscall {
                    fd: Some((5, FdKind::Socket(SocketKind::Unix)))
                }
            ))
        );
        assert_eq!(
            wait(record(61, [42, 0, 0, 0, 0, 0], fd_kind::NONE, 0)),
            Some(("wait4".into(), WaitDetail::Syscall { fd: None }))
        );
        assert_eq!(
            wait(record(
                SYS_FUTEX,
                [0x1000, 128, 0, 0, 0, 0],
                fd_kind::NONE,
                0
            )),
            Some((
                "futex".into(),
                WaitDetail::Futex {
                    op: FutexWait::Wait,
                    addr: 0x1000
                }
            ))
        );
        assert_eq!(
            wait(record(
                SYS_FUTEX_WAIT,
                [0x2000, 0, 0, 0, 0, 0],
                fd_kind::NONE,
                0
            ))
            .map(|(name, _)| name),
            Some("futex".into())
        );
        assert_eq!(
            wait(record(SYS_FUTEX, [0x1000, 1, 0, 0, 0, 0], fd_kind::NONE, 0)),
            None,
            "FUTEX_WAKE is no wait"
        );
        assert_eq!(
            wait(record(400, [0; 6], fd_kind::NONE, 0)).map(|(name, _)| name),
            Some("syscall_400".into())
        );
    }

    /// Check that a site's fd kind is the one most of its members wait on, and none when
    /// no member waits on an fd.
    #[test]
    fn prevailing_fd_kind_is_the_most_common() {
        let on = |kind| WaitDetail::Syscall {
            fd: Some((3, kind)),
        };
        let details = [
            on(FdKind::Pipe),
            on(FdKind::Socket(SocketKind::Tcp)),
            WaitDetail::Syscall { fd: None },
            on(FdKind::Socket(SocketKind::Tcp)),
        ];
        assert_eq!(
            prevailing_fd_kind(&details),
            Some(FdKind::Socket(SocketKind::Tcp))
        );
        assert_eq!(
            prevailing_fd_kind(&[WaitDetail::Futex {
                op: FutexWait::Wait,
                addr: 1
            }]),
            None
        );
    }

    /// Check that the futex ops glibc and Rust std block in are waits, wakes are not, and
    /// the private/realtime flags do not change the classification.
    #[test]
    fn futex_ops_are_classified() {
        assert_eq!(FutexWait::classify(SYS_FUTEX, 0, 0), Some(FutexWait::Wait));
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 9 | 128 | 256, 0),
            Some(FutexWait::WaitBitset)
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 6 | 128, 0),
            Some(FutexWait::LockPi)
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 11, 0),
            Some(FutexWait::WaitRequeuePi)
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX, 1 | 128, 0),
            None,
            "FUTEX_WAKE is no wait"
        );
        assert_eq!(
            FutexWait::classify(SYS_FUTEX_WAITV, 0, 0),
            Some(FutexWait::Waitv)
        );
        assert_eq!(
            FutexWait::classify(0, 0, 0),
            None,
            "read(2) is no futex wait"
        );
    }

    /// Check that sockets are told apart by family and type, and that records without an
    /// fd have no kind while unknown kind numbers are "unknown".
    #[test]
    fn fd_kinds_are_named() {
        let socket = |detail| FdKind::from_record(fd_kind::SOCKET, detail).unwrap();
        assert_eq!(socket(1 | 1 << 16).socket(), Some(SocketKind::Unix));
        assert_eq!(socket(2 | 1 << 16).socket(), Some(SocketKind::Tcp));
        assert_eq!(socket(10 | 2 << 16).socket(), Some(SocketKind::Udp6));
        assert_eq!(socket(0).socket(), Some(SocketKind::Other));
        assert_eq!(socket(0).name(), "socket");
        assert_eq!(FdKind::from_record(fd_kind::NONE, 0), None);
        assert_eq!(
            FdKind::from_record(fd_kind::EPOLL, 0).map(FdKind::name),
            Some("epoll")
        );
        assert_eq!(FdKind::from_record(999, 0), Some(FdKind::Unknown));
    }
}
