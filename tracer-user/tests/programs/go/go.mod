// Go programs for leakscope's integration tests (leaks/) and `cargo xtask bench`
// (benchpingpong/, benchhttp/). Standard library only. `go 1.21` is the oldest
// toolchain the tests build with; every newer one builds this module unchanged.
module leakscope.test/programs

go 1.21
