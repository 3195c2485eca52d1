//! leakscope's integration tests: one test binary (so the test programs are built
//! once per run) running the real `leakscope` binary against small programs that
//! leak, or do not leak, blocked threads (`native`) or goroutines (`go`); `reports`
//! opens its outputs in the tools people use (`go tool pprof`, a flame graph, `top` in
//! tmux); `cli` checks the flags the watching commands share; `busy` finds leaks hidden
//! among busy waiters at the same site.
//!
//! Most tests need root and fail, rather than skip, without it.

mod busy;
mod cli;
mod common;
mod daemon;
mod elfedit;
mod fallback;
mod forecast;
mod go;
mod goservice;
mod hangs;
mod hardening;
mod hostile;
mod isolation;
mod kubernetes;
mod native;
mod pods;
mod races;
mod reports;
mod web;
