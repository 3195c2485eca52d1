//! The host itself, below every stage: reading /proc, other processes' memory, and
//! identifying the binaries they map. Sources and stacks both build on it; it imports
//! nothing of leakscope.

pub mod binary;
pub mod capabilities;
pub mod cgroup;
pub mod cgroupfs;
pub mod cpu;
pub mod hung;
pub mod kubelet;
pub mod mapped;
pub mod memory;
pub mod pagemap;
pub mod pidfd;
pub mod procfs;
pub mod stat;
pub mod sysinfo;
