//! Watching: the pipeline of one scan and its window ([`watcher`]: sources → census →
//! history, and on demand verdict → summary), the flags every watching command shares
//! ([`args`]) and the scan loop they all run on their own schedule ([`driver`]).

pub mod args;
pub mod driver;
pub mod watcher;

pub use self::{
    args::{WatchArgs, WindowArgs},
    driver::{Driver, Flow, Schedule, Sink, preflight},
    watcher::{ScanStats, Watcher},
};
