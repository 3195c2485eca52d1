//! mpsc_leak: a thread leak on a std::sync::mpsc channel nobody sends on.
//!
//! main spawns a thread every 250 ms (up to 2000); each blocks forever in
//! `wait_for_message` -> `Receiver::recv`, because main keeps every Sender alive
//! in a Vec (so recv never sees a disconnect) and never sends. std parks the
//! thread in a futex wait. leakscope must call it a leak and name
//! `wait_for_message`.
//!
//! Built by the integration tests with `rustc -g -C opt-level=1 --edition 2021`.
//! Runs until killed.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

const MAX_THREADS: usize = 2000;
const SPAWN_INTERVAL: Duration = Duration::from_millis(250);
/// Small stacks: blocked threads need few frames, and 2000 of them should not
/// reserve gigabytes of address space.
const THREAD_STACK_BYTES: usize = 256 * 1024;

/// The leak site. `inline(never)` keeps it a frame of its own; using the result
/// after `recv` keeps `recv` from being a tail call that would hide this frame.
#[inline(never)]
fn wait_for_message(rx: Receiver<u64>) {
    let message = rx.recv();
    std::hint::black_box(&message);
    drop(rx);
}

fn main() {
    // Never used, never dropped: every receiver stays connected and empty.
    let mut senders: Vec<Sender<u64>> = Vec::new();
    loop {
        if senders.len() < MAX_THREADS {
            let (tx, rx) = mpsc::channel::<u64>();
            match thread::Builder::new()
                .stack_size(THREAD_STACK_BYTES)
                .spawn(move || wait_for_message(rx))
            {
                Ok(_detached) => senders.push(tx),
                Err(e) => eprintln!("mpsc_leak: spawn: {e}"),
            }
        }
        thread::sleep(SPAWN_INTERVAL);
    }
}
