//! File systems a read of leakscope's is stuck in: no file on one is opened until that
//! read returns. Without this, every process mapping a file of one hung file system
//! (any user may map many) would get one more reader thread stuck, until the cap of
//! stuck readers is reached and nothing is read at all.
//!
//! A thread says which file system it opens a file of ([`opening`]); when the scan
//! abandons that thread's read, the last one it named is taken for the one it is stuck
//! in ([`abandoned`]) until the thread's read returns ([`returned`]).

use std::{collections::HashMap, sync::Mutex};

#[derive(Default)]
struct Registry {
    /// The device of the file each thread opened last, by kernel thread id.
    opening: HashMap<i32, u64>,
    /// Devices with a read stuck in them, with the stuck thread.
    hung: Vec<(u64, i32)>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(registry.get_or_insert_with(Registry::default))
}

fn this_thread() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Says that this thread opens a file on device `dev` now; false when a read is stuck
/// on that device (then the file is not to be opened).
pub fn opening(dev: u64) -> bool {
    let tid = this_thread();
    with(|r| {
        if r.hung.iter().any(|&(d, _)| d == dev) {
            return false;
        }
        r.opening.insert(tid, dev);
        true
    })
}

/// Thread `tid`'s read was abandoned: the device it opened a file of last is hung.
pub fn abandoned(tid: i32) {
    with(|r| {
        if let Some(dev) = r.opening.remove(&tid) {
            r.hung.push((dev, tid));
        }
    });
}

/// This thread's abandoned read returned: its device answers again.
pub fn returned() {
    let tid = this_thread();
    with(|r| {
        r.hung.retain(|&(_, t)| t != tid);
        r.opening.remove(&tid);
    });
}

/// This thread's read finished in time: it holds nothing open.
pub fn done() {
    let tid = this_thread();
    with(|r| r.opening.remove(&tid));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a device whose read was abandoned is refused to every thread until
    /// that read returns, and that a read finished in time marks nothing.
    #[test]
    fn a_hung_device_is_refused_until_its_read_returns() {
        let dev = 0xdead_0001;
        let tid = std::thread::spawn(move || {
            assert!(opening(dev));
            this_thread()
        })
        .join()
        .unwrap();
        assert!(opening(dev), "not abandoned yet");
        done();
        abandoned(tid);
        assert!(!opening(dev), "refused while stuck");
        assert!(opening(dev + 1), "another device");
        done();
        // The stuck thread returns (here: its tid, cleared as it would clear it).
        with(|r| r.hung.retain(|&(_, t)| t != tid));
        assert!(opening(dev), "answers again");
        done();
    }
}
