//go:build cgo

package main

// Built with CGO_ENABLED=1 this file makes goleaks a cgo binary: dynamically
// linked against libc, started by the C runtime, Go code reached through
// runtime/cgo, and a C function called once at start.

/*
#include <unistd.h>

static long leakscope_cgo_marker(void) { return (long)getpid(); }
*/
import "C"

// cgoMarker calls into C once, so the binary really uses cgo.
func cgoMarker() {
	sink.Add(int64(C.leakscope_cgo_marker()))
}
