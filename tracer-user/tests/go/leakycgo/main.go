// Command leakycgo is the cgo variant of the leaky fixture: the binary is
// linked by the external (C) linker, so its .text starts with C code and
// runtime.text is not the start of the .text section.
package main

/*
static int c_add(int a, int b) { return a + b; }
*/
import "C"

import (
	"fmt"
	"os"
)

//go:noinline
func knownTarget(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += i * i
	}
	return s
}

func queryReplica(ch chan int) int {
	v := <-ch
	return v + 1
}

//go:noinline
func worker(ch chan int, out chan int) {
	out <- queryReplica(ch)
}

func main() {
	ch := make(chan int)
	out := make(chan int, 16)
	go worker(ch, out)
	fmt.Println(knownTarget(len(os.Args)), int(C.c_add(1, 2)))
}
