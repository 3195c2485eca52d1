//go:build cgo

package main

// Built with CGO_ENABLED=1 this file makes goleaks a cgo binary: dynamically
// linked against libc, started by the C runtime, Go code reached through
// runtime/cgo, and a C function called once at start. The "cgoread" pattern
// calls C code that blocks in read(2): each such call holds a thread.

/*
#include <unistd.h>

static long leakscope_cgo_marker(void) { return (long)getpid(); }

// Waits for a byte on a pipe whose write end stays open and silent. The empty
// asm after the call keeps read from being a tail call, so this function
// keeps its frame.
__attribute__((noinline)) static long leak_cgo_read_never_answered(int fd) {
	char byte;
	long n = (long)read(fd, &byte, 1);
	__asm__ volatile("" ::: "memory");
	return n;
}

static int leakscope_pipe_read_end(void) {
	int fds[2];
	return pipe(fds) == 0 ? fds[0] : -1;
}
*/
import "C"

// cgoMarker calls into C once, so the binary really uses cgo.
func cgoMarker() {
	sink.Add(int64(C.leakscope_cgo_marker()))
}

// cgoBlockingRead calls C code that blocks its thread in read(2) forever.
func cgoBlockingRead() {
	sink.Add(int64(C.leak_cgo_read_never_answered(C.leakscope_pipe_read_end())))
}
