//! What a process runs on, as a value: native code, or Go of a known (or unknown)
//! release. The reader decides it once per executable; the census, the summary and every
//! sink carry it typed and only the sinks turn it into text (`"native"`, `"go1.26"`).

use std::fmt;

use super::buildinfo::GoVersion;

/// The Go release that built a program, to the minor version (the runtime's layout and
/// behaviour change between minors only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GoRelease {
    /// `go{major}.{minor}`.
    Known { major: u32, minor: u32 },
    /// A Go program whose build info does not even say its version.
    Unknown,
}

impl GoRelease {
    pub fn of(version: &GoVersion) -> Self {
        Self::Known {
            major: version.major,
            minor: version.minor,
        }
    }

    /// Whether this release is `major.minor` or newer (an unknown one is not).
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        match self {
            Self::Known { major: a, minor: b } => (a, b) >= (major, minor),
            Self::Unknown => false,
        }
    }
}

impl fmt::Display for GoRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known { major, minor } => write!(f, "go{major}.{minor}"),
            Self::Unknown => f.write_str("go"),
        }
    }
}

/// What a process runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    /// Not a Go program (C, C++, Rust, ...): threads only.
    #[default]
    Native,
    Go(GoRelease),
}

impl Runtime {
    pub fn is_go(self) -> bool {
        matches!(self, Self::Go(_))
    }
}

impl fmt::Display for Runtime {
    /// `"native"`, `"go1.NN"`, or `"go"` (the names of the JSON report and the metrics).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Native => f.write_str("native"),
            Self::Go(release) => release.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that runtimes render as the report and the metrics have always named them,
    /// and that releases order by version.
    #[test]
    fn runtimes_render_as_before() {
        let go = |major, minor| GoRelease::Known { major, minor };
        assert_eq!(Runtime::Native.to_string(), "native");
        assert_eq!(Runtime::Go(go(1, 26)).to_string(), "go1.26");
        assert_eq!(Runtime::Go(GoRelease::Unknown).to_string(), "go");
        assert!(go(1, 27).at_least(1, 26) && go(1, 26).at_least(1, 26));
        assert!(!go(1, 23).at_least(1, 24) && !GoRelease::Unknown.at_least(1, 0));
        let v = GoVersion::parse("go1.24.11").unwrap();
        assert_eq!(GoRelease::of(&v), go(1, 24));
    }
}
