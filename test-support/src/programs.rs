//! The C and Rust programs of `tracer-user/tests/programs` and the one way each is
//! built, so the integration tests, the soak, the bench and the kernel checks run the
//! same binaries. (Go programs: [`crate::go::GoBuild`].)

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use crate::{Error, paths, run_captured};

/// The C compiler: `$CC`, else `cc`.
pub fn cc() -> OsString {
    std::env::var_os("CC").unwrap_or_else(|| "cc".into())
}

/// The Rust compiler: `$RUSTC` (cargo sets it for build scripts and tests), else `rustc`.
pub fn rustc() -> OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

/// A C or Rust test program, each built from one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Program {
    /// Leaks a thread every 250 ms on a mutex, in `leak_on_mutex`.
    MutexLeak,
    /// Leaks a thread every 250 ms on a condvar, in `wait_for_signal_never_sent`.
    CondvarLeak,
    /// 16 workers on a condvar-guarded queue, in `pool_worker_wait`; never grows.
    IdlePool,
    /// Like `MutexLeak`, built -O2 without frame pointers; leaks in
    /// `request_handler` -> `acquire_shared_state`.
    NofpLeak,
    /// Rust: leaks a thread every 250 ms in `wait_for_message` -> `Receiver::recv`.
    MpscLeak,
    /// C posing as a Go 1.26 binary with a fake goroutine table full of attacks on
    /// the reader (`hostile_go [MODE]`, see its source).
    HostileGo,
    /// `shapes/threads.c`, the accuracy suite's thread shapes: the mode and its
    /// parameters come as arguments.
    ShapeThreads,
    /// `threadfarm THREADS [LEAK_MS]`: idle threads, optionally one more leaking every
    /// LEAK_MS in `farm_leak_lock` (the bench's many-process workload).
    ThreadFarm,
    /// `pingpong SECONDS`: a pthread mutex+condvar ping-pong printing its rate (bench).
    PingPong,
}

impl Program {
    /// Every program.
    pub const ALL: [Program; 9] = [
        Program::MutexLeak,
        Program::CondvarLeak,
        Program::IdlePool,
        Program::NofpLeak,
        Program::MpscLeak,
        Program::HostileGo,
        Program::ShapeThreads,
        Program::ThreadFarm,
        Program::PingPong,
    ];

    /// The binary's file name, which is also the process comm (under 16 bytes).
    pub const fn name(self) -> &'static str {
        match self {
            Program::MutexLeak => "mutex_leak",
            Program::CondvarLeak => "condvar_leak",
            Program::IdlePool => "idle_pool",
            Program::NofpLeak => "nofp_leak",
            Program::MpscLeak => "mpsc_leak",
            Program::HostileGo => "hostile_go",
            Program::ShapeThreads => "shape-threads",
            Program::ThreadFarm => "threadfarm",
            Program::PingPong => "pingpong",
        }
    }

    /// The program whose binary is called `name`.
    pub fn named(name: &str) -> Option<Program> {
        Program::ALL
            .into_iter()
            .find(|program| program.name() == name)
    }

    /// Its source file, relative to `tracer-user/tests/programs`.
    fn source(self) -> &'static str {
        match self {
            Program::MutexLeak => "mutex_leak.c",
            Program::CondvarLeak => "condvar_leak.c",
            Program::IdlePool => "idle_pool.c",
            Program::NofpLeak => "nofp_leak.c",
            Program::MpscLeak => "mpsc_leak.rs",
            Program::HostileGo => "hostile_go.c",
            Program::ShapeThreads => "shapes/threads.c",
            Program::ThreadFarm => "threadfarm.c",
            Program::PingPong => "pingpong.c",
        }
    }

    /// The compiler flags before `-o OUTPUT SOURCE`.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Program::MpscLeak => &["-g", "-C", "opt-level=1", "--edition", "2021"],
            // The point of this program: optimized, no frame pointers, so only DWARF
            // CFI can unwind it.
            Program::NofpLeak => &["-O2", "-g", "-fomit-frame-pointer", "-pthread"],
            // Not position independent: its fake pclntab names its own code by
            // absolute address, with no relocation to apply.
            Program::HostileGo => &["-O0", "-g", "-no-pie", "-fno-omit-frame-pointer"],
            // Optimized like real programs, with frame pointers and no sibling calls: a
            // tail call would drop a named site's frame.
            Program::ShapeThreads => &[
                "-O2",
                "-g",
                "-fno-omit-frame-pointer",
                "-fno-optimize-sibling-calls",
                "-pthread",
            ],
            // Frame pointers and symbols: leakscope names the leak site from them.
            Program::ThreadFarm => &["-O1", "-g", "-fno-omit-frame-pointer", "-pthread"],
            // A throughput measurement: no stacks are looked at.
            Program::PingPong => &["-O2", "-pthread"],
            // Unoptimized with frame pointers: these are about detection and verdicts,
            // so their stacks should be easy for any unwinder.
            Program::MutexLeak | Program::CondvarLeak | Program::IdlePool => {
                &["-O0", "-g", "-fno-omit-frame-pointer", "-pthread"]
            }
        }
    }

    /// The compiler command that builds this program into `output`.
    pub fn command(self, output: &Path) -> Command {
        let compiler = match self {
            Program::MpscLeak => rustc(),
            _ => cc(),
        };
        let mut command = Command::new(compiler);
        command
            .args(self.flags())
            .arg("-o")
            .arg(output)
            .arg(paths::programs_dir().join(self.source()));
        command
    }

    /// Builds the program into `dir/<name>` and returns that path.
    pub fn build(self, dir: &Path) -> Result<std::path::PathBuf, Error> {
        let output = dir.join(self.name());
        build_into(&output, |temp| Ok(self.command(temp)))?;
        Ok(output)
    }
}

/// Runs the build `command_for(temp)` makes, writing a file beside `output`, then renames
/// it over `output`: a program left running by an earlier, aborted run keeps its old
/// inode, and writing into a running executable would fail with ETXTBSY. Creates
/// `output`'s directory.
pub fn build_into(
    output: &Path,
    command_for: impl FnOnce(&Path) -> Result<Command, Error>,
) -> Result<(), Error> {
    let dir = output.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.building-{}", std::process::id()));
    let mut command = command_for(&temp)?;
    let built = run_captured(
        &mut command,
        "building the test programs needs a C compiler (`cc`: apt-get install gcc) and `rustc`",
    );
    if let Err(e) = built {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    std::fs::rename(&temp, output).map_err(|e| Error::io(output, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that every program's source exists and names are distinct (each is also
    /// a comm, so under 16 bytes).
    #[test]
    fn every_program_has_its_source_and_a_distinct_short_name() {
        for (i, program) in Program::ALL.iter().enumerate() {
            let source = paths::programs_dir().join(program.source());
            assert!(source.is_file(), "{program:?}: {}", source.display());
            assert!(program.name().len() < 16, "{program:?}");
            assert_eq!(Program::named(program.name()), Some(*program));
            assert!(
                Program::ALL[i + 1..]
                    .iter()
                    .all(|other| other.name() != program.name()),
                "{program:?}"
            );
        }
    }

    /// Check that a failing build leaves neither the output nor its temporary file,
    /// and says which command failed.
    #[test]
    fn failed_build_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("test-support-build-{}", std::process::id()));
        let output = dir.join("nothing");
        let error = build_into(&output, |temp| {
            let mut command = Command::new("sh");
            command.arg("-c").arg(format!(
                "echo partial > {}; echo broken >&2; exit 3",
                temp.display()
            ));
            Ok(command)
        })
        .unwrap_err();
        assert!(
            matches!(&error, Error::Failed { stderr, .. } if stderr.contains("broken")),
            "{error}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
