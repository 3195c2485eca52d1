//! leakscope's own capabilities. Run as root it may still hold only some of root's: a
//! systemd unit's `CapabilityBoundingSet`, a pod's `securityContext` or a container
//! runtime's defaults cut them down. Each one missing costs a part of what leakscope
//! finds (README: Kubernetes, the table of capabilities), and without being told an
//! operator sees only fewer leaks: a process that cannot be read looks like one that
//! does not leak. So the watch says at start, one line per missing capability, what is
//! lost.

/// A capability leakscope uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    Bpf,
    Perfmon,
    SysPtrace,
    DacReadSearch,
    CheckpointRestore,
}

/// Every capability leakscope uses, in the order the warnings name them.
pub const USED: [Capability; 5] = [
    Capability::SysPtrace,
    Capability::DacReadSearch,
    Capability::Bpf,
    Capability::Perfmon,
    Capability::CheckpointRestore,
];

/// `CAP_SYS_ADMIN`'s bit: on kernels since 5.8 it still grants what `CAP_BPF`,
/// `CAP_PERFMON` and `CAP_CHECKPOINT_RESTORE` split off from it.
const SYS_ADMIN_BIT: u32 = 21;

impl Capability {
    /// Its bit in the capability sets (linux/capability.h).
    pub fn bit(self) -> u32 {
        match self {
            Capability::DacReadSearch => 2,
            Capability::SysPtrace => 19,
            Capability::Perfmon => 38,
            Capability::Bpf => 39,
            Capability::CheckpointRestore => 40,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Capability::Bpf => "CAP_BPF",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::SysPtrace => "CAP_SYS_PTRACE",
            Capability::DacReadSearch => "CAP_DAC_READ_SEARCH",
            Capability::CheckpointRestore => "CAP_CHECKPOINT_RESTORE",
        }
    }

    /// What leakscope loses without it.
    pub fn loss(self) -> &'static str {
        match self {
            Capability::Bpf | Capability::Perfmon => {
                "the BPF task iterator cannot load; threads come from /proc (slower)"
            }
            Capability::SysPtrace => {
                "other processes' memory, maps, executables and blocked threads cannot \
                 be read: they are reported unreadable (not known whether Go, goroutines \
                 not read), their stacks unnamed, and from /proc no thread of theirs is \
                 seen"
            }
            Capability::DacReadSearch => {
                "binaries root may not read by their mode are not read: their frames \
                 are unnamed, and a process running one is reported unreadable (whether \
                 it is a Go program cannot be told, its goroutines are not read)"
            }
            Capability::CheckpointRestore => {
                "binaries are not opened through /proc/PID/map_files: programs whose \
                 executable was deleted or replaced get unnamed stacks"
            }
        }
    }

    /// Whether the `effective` set grants it.
    fn granted_by(self, effective: u64) -> bool {
        let has = |bit: u32| effective & (1u64 << bit) != 0;
        has(self.bit())
            || (matches!(
                self,
                Capability::Bpf | Capability::Perfmon | Capability::CheckpointRestore
            ) && has(SYS_ADMIN_BIT))
    }
}

/// The effective set in a `/proc/PID/status` text (`CapEff:`, hexadecimal).
pub fn parse_effective(status: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(value.trim(), 16).ok()
}

/// The capabilities leakscope uses that `effective` lacks.
pub fn missing(effective: u64) -> Vec<Capability> {
    USED.into_iter()
        .filter(|cap| !cap.granted_by(effective))
        .collect()
}

/// One line per capability this process lacks, saying what is lost (none when its
/// effective set cannot be read: nothing to say for sure).
pub fn shortfalls() -> Vec<String> {
    let Some(effective) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(parse_effective)
    else {
        return Vec::new();
    };
    missing(effective)
        .into_iter()
        .map(|cap| format!("without {}: {}", cap.name(), cap.loss()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(caps: &[Capability]) -> u64 {
        caps.iter().map(|c| 1u64 << c.bit()).sum()
    }

    /// Check that the effective set is read from a status text, and that full root,
    /// the five capabilities of the DaemonSet and the systemd unit, and SYS_ADMIN in
    /// place of the three it still grants lack nothing, while a set without
    /// DAC_READ_SEARCH lacks exactly that.
    #[test]
    fn missing_capabilities_are_named() {
        let status = "Name:\tleakscope\nCapInh:\t0000000000000000\nCapEff:\t000001c000080004\n";
        let effective = parse_effective(status).unwrap();
        assert_eq!(effective, mask(&USED));
        assert_eq!(missing(effective), vec![]);
        assert_eq!(missing(u64::MAX >> 23), vec![], "full root of 6.x");
        let admin = mask(&[Capability::SysPtrace, Capability::DacReadSearch]) | 1 << SYS_ADMIN_BIT;
        assert_eq!(missing(admin), vec![]);
        let without = mask(&USED) & !mask(&[Capability::DacReadSearch]);
        assert_eq!(missing(without), vec![Capability::DacReadSearch]);
        assert_eq!(missing(0), USED.to_vec());
        assert_eq!(parse_effective("CapEff:\tzz\n"), None);
        assert_eq!(parse_effective("Name: x\n"), None);
    }
}
