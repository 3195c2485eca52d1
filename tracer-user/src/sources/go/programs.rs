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
    model::GoRelease,
    sources::go::{
        elf::PF_X,
        error::GoReadError,
        executable::{GoProgram, OpenedExecutable, analyse_executable, open_executable},
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
    /// A Go program that cannot be read: its release, as far as known, and why.
    Unreadable(GoRelease, GoReadError),
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
        let Some(opened) = reads.run(move || open_executable(pid))? else {
            return Ok(ProcessProgram::Native);
        };
        let id = opened.ident;
        let exe = match self.executables.get(&id) {
            Some(exe) => exe.clone(),
            None => {
                let exe = reads.run(move || analyse(pid, &opened))?;
                self.executables.insert(id, exe.clone());
                exe
            }
        };
        Ok(match exe {
            Executable::Native => ProcessProgram::Native,
            Executable::Unreadable(release, reason) => ProcessProgram::Unreadable(release, reason),
            Executable::Go(program) => {
                let go = program.clone();
                let (bias, exe) = reads.run(move || {
                    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                        .map(|p| p.to_string_lossy().into())
                        .unwrap_or_else(|_| "".into());
                    (load_bias(pid, &go, id.ino), exe)
                })?;
                match bias {
                    Some(bias) => ProcessProgram::Go { program, bias, exe },
                    None => ProcessProgram::Unreadable(program.release, GoReadError::NoMapping),
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

/// What the executable process `pid` runs turns out to be, from its opened file.
fn analyse(pid: u32, opened: &OpenedExecutable) -> Executable {
    match analyse_executable(opened) {
        Ok(None) => Executable::Native,
        Ok(Some(program)) => Executable::Go(Arc::new(program)),
        Err(e) => {
            log::debug!("/proc/{pid}/exe: unreadable Go binary: {e}");
            Executable::Unreadable(e.release, GoReadError::Executable(Arc::new(e.kind)))
        }
    }
}

/// avma = svma + bias, from the executable's first mapping in the process.
fn load_bias(pid: u32, program: &GoProgram, inode: u64) -> Option<u64> {
    if !program.binary.is_pie() {
        return Some(0);
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
    let maps = procfs::read_maps(pid).ok()?;
    maps.iter()
        .filter(|m| m.inode == inode)
        .find_map(|m| binary::load_bias(&loads, m))
}
