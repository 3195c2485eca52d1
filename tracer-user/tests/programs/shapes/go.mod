// The goroutine shapes of `cargo xtask accuracy` (goroutines.go). Standard
// library only. Its own module: it lives beside threads.c, outside
// tests/programs/go. `go 1.21` is the oldest toolchain leakscope supports.
module leakscope.test/shapes

go 1.21
