//! Which processes are Go programs leakscope can read: each process instance's
//! executable is opened once and classified (native, a readable Go program, or an
//! unreadable one with the reason), each executable analysed once however many
//! processes run it, and a Go program's load bias found in the process's mappings.

use std::{collections::HashMap, sync::Arc};

use crate::{
    host::{
        binary::{self, FileIdent, LoadSegment},
        procfs,
    },
    isolate::ProcessFault,
    model::{GoRelease, Runtime},
    sources::go::{
        elf::PF_X,
        error::GoReadError,
        executable::{
            ExecutableError, ExecutableUnreadable, GoProgram, OpenedExecutable, UnreadableGoKind,
            analyse_executable, open_executable,
        },
    },
};

/// Executables remembered as not Go (or unreadable) before the list is cleared.
const MAX_KNOWN_EXECUTABLES: usize = 4096;

/// What an executable turned out to be.
#[derive(Clone)]
enum Executable {
    Native,
    Go(Arc<GoProgram>),
    /// A Go program leakscope cannot read.
    Unreadable(GoRelease, GoReadError),
}

impl Executable {
    /// Whether what was found holds for every process that runs the binary: a read that
    /// failed (or memory the kernel refused) may not fail next time.
    fn is_lasting(&self) -> bool {
        match self {
            Self::Unreadable(_, GoReadError::Executable(kind)) => !matches!(
                **kind,
                UnreadableGoKind::Read(_) | UnreadableGoKind::NoImageMemory
            ),
            _ => true,
        }
    }
}

/// What one process instance is, for the goroutine reader.
pub enum ProcessProgram {
    Native,
    /// A Go program to read, at load bias `bias`; `exe` is its executable's path as the
    /// process sees it, to label its frames.
    Go {
        program: Arc<GoProgram>,
        bias: u64,
        exe: Arc<str>,
    },
    /// A program whose goroutines cannot be read, and why: a Go program (its release as
    /// far as known), or one whose executable could not be read to tell
    /// ([`Runtime::Unknown`]).
    Unreadable(Runtime, GoReadError),
}

impl ProcessProgram {
    /// A process leakscope could not tell to be Go or not: reported so, never native.
    fn unclassified(pid: u32, why: ExecutableUnreadable) -> Self {
        log::debug!("/proc/{pid}/exe: not known whether Go: {why}");
        Self::Unreadable(Runtime::Unknown, GoReadError::Unclassified(why))
    }
}

/// The analysed executables of the host, by file identity.
#[derive(Default)]
pub struct Programs {
    executables: HashMap<FileIdent, Executable>,
}

/// Runs the reads of a classification, which may block (opening and reading an
/// executable, reading `/proc/PID/maps`), where the caller can stop waiting for them.
pub trait BlockingReads {
    fn run<R: Send + 'static>(
        &mut self,
        read: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ProcessFault>;
}

impl Programs {
    /// Decides what process `pid` runs (once per process instance: the caller keeps it),
    /// its reads made through `reads`; fails when one of them does (it blocked).
    pub fn classify(
        &mut self,
        pid: u32,
        reads: &mut impl BlockingReads,
    ) -> Result<ProcessProgram, ProcessFault> {
        // Opened once: identity and bytes come from the same file, whatever the process
        // execs or renames meanwhile.
        let opened = match reads.run(move || open_executable(pid))? {
            Ok(Some(opened)) => opened,
            Ok(None) => return Ok(ProcessProgram::Native),
            Err(why) => return Ok(ProcessProgram::unclassified(pid, why)),
        };
        let id = opened.ident;
        let exe = match self.executables.get(&id) {
            Some(exe) => exe.clone(),
            None => match reads.run(move || analyse(pid, &opened))? {
                Ok(exe) => {
                    if exe.is_lasting() {
                        self.executables.insert(id, exe.clone());
                    }
                    exe
                }
                // Not remembered for the binary: a read that failed now may not fail
                // for the next process that runs it.
                Err(why) => return Ok(ProcessProgram::unclassified(pid, why)),
            },
        };
        Ok(match exe {
            Executable::Native => ProcessProgram::Native,
            Executable::Unreadable(release, reason) => {
                ProcessProgram::Unreadable(Runtime::Go(release), reason)
            }
            Executable::Go(program) => {
                let go = program.clone();
                let (bias, exe) = reads.run(move || {
                    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                        .map(|p| p.to_string_lossy().into())
                        .unwrap_or_else(|_| "".into());
                    (load_bias(pid, &go, id.ino), exe)
                })?;
                match bias {
                    Ok(bias) => ProcessProgram::Go { program, bias, exe },
                    Err(why) => ProcessProgram::Unreadable(Runtime::Go(program.release), why),
                }
            }
        })
    }

    /// Forgets analysed Go executables no live process runs (each holds its pclntab, a
    /// few MB), and bounds the list of non-Go executables.
    pub fn prune(&mut self) {
        self.executables.retain(|_, exe| match exe {
            Executable::Go(program) => Arc::strong_count(program) > 1,
            Executable::Native | Executable::Unreadable(..) => true,
        });
        if self.executables.len() > MAX_KNOWN_EXECUTABLES {
            self.executables
                .retain(|_, exe| matches!(exe, Executable::Go(_)));
        }
    }
}

/// What the executable process `pid` runs turns out to be, from its opened file; `Err`
/// when it could not be read far enough to tell.
fn analyse(pid: u32, opened: &OpenedExecutable) -> Result<Executable, ExecutableUnreadable> {
    Ok(match analyse_executable(opened) {
        Ok(None) => Executable::Native,
        Ok(Some(program)) => Executable::Go(Arc::new(program)),
        Err(ExecutableError::Unclassified(why)) => return Err(why),
        Err(ExecutableError::Go(e)) => {
            log::debug!("/proc/{pid}/exe: unreadable Go binary: {e}");
            Executable::Unreadable(e.release, GoReadError::Executable(Arc::new(e.kind)))
        }
    })
}

/// avma = svma + bias, from the executable's first mapping in the process; why not,
/// when its maps cannot be read or do not map it.
fn load_bias(pid: u32, program: &GoProgram, inode: u64) -> Result<u64, GoReadError> {
    if !program.binary.is_pie() {
        return Ok(0);
    }
    let loads: Vec<LoadSegment> = program
        .binary
        .segments()
        .iter()
        .map(|s| LoadSegment {
            offset: s.file_off,
            vaddr: s.addr,
            filesz: s.file_size,
            executable: s.flags & PF_X != 0,
        })
        .collect();
    let maps = procfs::read_maps(pid).map_err(|e| match e.raw_os_error() {
        Some(errno) => GoReadError::MapsUnreadable(errno),
        // Over the bounds on its size or its mappings.
        None => GoReadError::MapsTooLarge,
    })?;
    maps.iter()
        .filter(|m| m.inode == inode)
        .find_map(|m| binary::load_bias(&loads, m))
        .ok_or(GoReadError::NoMapping)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs each read on the calling thread.
    struct InlineReads;

    impl BlockingReads for InlineReads {
        fn run<R: Send + 'static>(
            &mut self,
            read: impl FnOnce() -> R + Send + 'static,
        ) -> Result<R, ProcessFault> {
            Ok(read())
        }
    }

    /// Check that a native process is classified so and its binary remembered, that a
    /// pid without a process is native without a binary remembered, and that only what
    /// holds for every process of a binary is remembered for it (not a failed read).
    #[test]
    fn classification_is_remembered_only_when_lasting() {
        let mut programs = Programs::default();
        let own = programs.classify(std::process::id(), &mut InlineReads);
        assert!(matches!(own, Ok(ProcessProgram::Native)));
        assert_eq!(programs.executables.len(), 1);
        let none = programs.classify(u32::MAX, &mut InlineReads);
        assert!(matches!(none, Ok(ProcessProgram::Native)));
        assert_eq!(programs.executables.len(), 1);

        let unreadable = |kind| {
            Executable::Unreadable(GoRelease::Unknown, GoReadError::Executable(Arc::new(kind)))
        };
        assert!(!unreadable(UnreadableGoKind::Read(libc::EIO)).is_lasting());
        assert!(!unreadable(UnreadableGoKind::NoImageMemory).is_lasting());
        assert!(unreadable(UnreadableGoKind::UnsupportedVersion("go1.99".into())).is_lasting());
        assert!(Executable::Native.is_lasting());

        let why = ExecutableUnreadable::Open(libc::EACCES);
        let ProcessProgram::Unreadable(runtime, reason) = ProcessProgram::unclassified(1, why)
        else {
            panic!("not unreadable");
        };
        assert_eq!(runtime, Runtime::Unknown);
        assert_eq!(reason, GoReadError::Unclassified(why));
    }
}
