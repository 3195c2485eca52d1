//! What the thread source tells of each process it lists besides its threads: its name,
//! executable, cgroup and pod, read from `/proc` once per process instance, at the first
//! scan that lists it (so a process that exits later is still named), and forgotten
//! when it is gone; a pod's names are filled in when the kubelet makes them known. The
//! Go runtime and any read error are the goroutine source's to add.

use std::{collections::HashMap, sync::Arc, time::Instant};

use crate::{
    host::{
        cgroup::{complete_pod_names, read_cgroup},
        kubelet::{KubeletLogDirs, KubeletLogs},
    },
    model::{ProcessFacts, ProcessKey, Runtime},
};

/// The facts of the processes alive now, each read once.
pub struct FactsReader {
    facts: HashMap<ProcessKey, Arc<ProcessFacts>>,
    /// Pod and container names, from the kubelet's log directories.
    kubelet: KubeletLogs,
}

impl Default for FactsReader {
    fn default() -> Self {
        Self::new(KubeletLogDirs::default())
    }
}

impl FactsReader {
    /// A reader that names pods from the kubelet's log directories `dirs`.
    pub fn new(dirs: KubeletLogDirs) -> Self {
        Self {
            facts: HashMap::new(),
            kubelet: KubeletLogs::new(dirs),
        }
    }

    /// The facts of process `key` (pid `pid`, which the kernel names `comm`): read now
    /// when not known yet, the pod's names completed when the kubelet knows more.
    pub fn of(&mut self, key: ProcessKey, comm: &[u8], now: Instant) -> Arc<ProcessFacts> {
        let kubelet = &mut self.kubelet;
        let facts = self.facts.entry(key).or_insert_with(|| {
            let fallback = || String::from_utf8_lossy(comm).into_owned();
            Arc::new(read_facts(key.pid, fallback, kubelet))
        });
        // A container's name may come after its first scan (its log link is made just
        // after it starts).
        if let Some(cgroup) = complete_pod_names(&facts.cgroup, kubelet, now) {
            *facts = Arc::new(ProcessFacts {
                cgroup,
                ..(**facts).clone()
            });
        }
        facts.clone()
    }

    /// Forgets the processes a scan no longer saw.
    pub fn retain(&mut self, seen: impl Fn(&ProcessKey) -> bool) {
        self.facts.retain(|key, _| seen(key));
    }
}

/// A process's name, executable and cgroup; falls back to the name the kernel listed
/// when the process is already gone.
fn read_facts(
    pid: u32,
    fallback_comm: impl FnOnce() -> String,
    kubelet: &mut KubeletLogs,
) -> ProcessFacts {
    // The name exactly as the kernel has it (a trailing space or bytes that are not
    // UTF-8 included, the latter replaced): sinks escape it, none drops it.
    let comm = std::fs::read(format!("/proc/{pid}/comm"))
        .map(|bytes| {
            let name = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            String::from_utf8_lossy(name).into_owned()
        })
        .unwrap_or_else(|_| fallback_comm());
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    ProcessFacts {
        comm,
        exe,
        runtime: Runtime::Native,
        cgroup: read_cgroup(pid, kubelet),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pid: u32, start_mono_ns: u64) -> ProcessKey {
        ProcessKey {
            pid,
            start_mono_ns,
            exec_id: 1,
        }
    }

    /// Check that a process is read once per instance (the facts are kept while it is
    /// seen), a gone process is named as the kernel named it, and a process no longer
    /// seen is forgotten.
    #[test]
    fn facts_are_read_once_per_process_instance() {
        let mut reader = FactsReader::default();
        let now = Instant::now();
        let (own, gone) = (key(std::process::id(), 1), key(u32::MAX - 1, 2));
        let own_facts = reader.of(own, b"listed-name", now);
        assert_ne!(own_facts.comm, "listed-name", "read from /proc/PID/comm");
        assert!(!own_facts.exe.is_empty(), "{own_facts:?}");
        assert_eq!(own_facts.runtime, Runtime::Native);
        assert_eq!(reader.of(gone, b"gone", now).comm, "gone");
        assert!(Arc::ptr_eq(&reader.of(own, b"", now), &own_facts));
        reader.retain(|k| *k == own);
        assert_eq!(reader.facts.len(), 1, "the gone process is forgotten");
        assert!(!Arc::ptr_eq(
            &reader.of(key(own.pid, 3), b"", now),
            &own_facts
        ));
    }
}
