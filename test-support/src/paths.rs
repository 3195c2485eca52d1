//! Where things are: the workspace, and cargo's target directory, which every test and
//! task caches its toolchains, programs and scratch files under.

use std::path::{Path, PathBuf};

/// The workspace root: this crate lives one directory below it.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support's manifest directory has a parent")
        .to_path_buf()
}

/// Cargo's target directory: the one the running executable was built into (a test
/// binary under `target/debug/deps`, xtask under `target/debug`), found by the
/// `CACHEDIR.TAG` cargo writes at its root; else `CARGO_TARGET_DIR` (relative to the
/// workspace) or `target/` of the workspace.
pub fn target_dir() -> PathBuf {
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| target_dir_holding(&exe));
    from_exe.unwrap_or_else(|| match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    })
}

/// The nearest ancestor of `path` that is a cargo target directory.
fn target_dir_holding(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

/// `tracer-user/tests/programs`: the C, Rust and Go programs the tests run.
pub fn programs_dir() -> PathBuf {
    workspace_root().join("tracer-user/tests/programs")
}

/// The first executable named `name` on PATH or in the sbin directories (which
/// ordinary users' PATH lacks, yet apt installs tools such as bpftool there).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the target directory found from this test binary is the one cargo
    /// built it into: an ancestor of the binary holding cargo's CACHEDIR.TAG.
    #[test]
    fn target_dir_is_where_this_test_binary_was_built() {
        let exe = std::env::current_exe().unwrap();
        let target = target_dir();
        assert!(exe.starts_with(&target), "{exe:?} is not under {target:?}");
        assert!(target.join("CACHEDIR.TAG").is_file(), "{target:?}");
        assert_ne!(target, exe.parent().unwrap(), "the deps directory itself");
    }

    /// Check that programs are found on PATH, and a missing one is none.
    #[test]
    fn programs_are_found_on_path() {
        assert!(find_program("sh").is_some_and(|sh| sh.is_absolute()));
        assert_eq!(find_program("leakscope-no-such-tool"), None);
    }

    /// Check that a path outside any target directory gives none.
    #[test]
    fn no_target_dir_outside_one() {
        assert_eq!(target_dir_holding(Path::new("/proc/self/exe")), None);
    }

    /// Check that the workspace root is where the workspace manifest and the test
    /// programs are.
    #[test]
    fn workspace_root_holds_the_workspace() {
        let root = workspace_root();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{root:?}");
        assert!(programs_dir().join("mutex_leak.c").is_file());
    }
}
