//! leakscope's userspace: sources → census → history → verdict → sinks.
//!
//! - [`model`]: the names every stage shares (process, site, member, frame).
//! - [`resources`]: what waiters and processes hold (stacks, tasks, mappings, memory)
//!   and the limits on it, shared likewise.
//! - [`host`]: /proc, other processes' memory, binary identity (the bottom layer).
//! - [`sources`]: where waiters come from (the kernel task iterator for threads, each Go
//!   process's goroutine table).
//! - [`stacks`]: unwinding (DWARF CFI, frame-pointer fallback) and symbolization.
//! - [`site_names`]: each site's frames, named once and kept within the budget.
//! - [`census`]: one scan's waiters keyed by process and site, with member ids.
//! - [`history`]: the censuses of a watch window, per site.
//! - [`verdict`]: pure judgement of a site's history.
//! - [`forecast`]: pure judgement of when a leaking process hits a limit.
//! - [`summary`]: one typed summary of a watch window, which every sink renders.
//! - [`report`]: the `diagnose` report (text and JSON); [`pprof`]: the profile;
//!   [`flamegraph`]: the SVG.
//! - [`top`]: the live terminal view.
//! - [`watch`]: one watch for every command: the pipeline of a scan, the shared flags
//!   and the scan loop each command runs on its own schedule with its own sink.
//! - [`diagnose`], [`top`], [`daemon`]: the commands, each a schedule and a sink.
//! - [`isolate`]: panic isolation per process.
//! - [`budget`]: one memory budget for what leakscope keeps of the host, CPU budgets on
//!   binary analysis, and the reasons a process's analysis was cut.
//! - [`sanitize`]: process-controlled text on its way to logs, reports and labels.

pub mod budget;
pub mod census;
pub mod daemon;
pub mod diagnose;
pub mod error;
pub mod fasthash;
pub mod flamegraph;
pub mod forecast;
pub mod history;
pub mod host;
pub mod isolate;
pub mod model;
pub mod pprof;
pub mod report;
pub mod resources;
pub mod sanitize;
pub mod site_names;
pub mod sources;
pub mod stacks;
pub mod summary;
pub mod top;
pub mod verdict;
pub mod watch;
