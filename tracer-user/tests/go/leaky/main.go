// Command leaky is a fixture for leakscope's Go binary-analysis tests.
//
// It parks goroutines in a few well-known places. The tests do not run it:
// they only read its pclntab and build info, so every function whose name,
// entry or inlining the tests check is listed here.
package main

import (
	"fmt"
	"os"
	"time"
)

// knownTarget is never inlined, so it has its own entry in the symbol table
// and the pclntab; the tests resolve its entry address by name.
//
//go:noinline
func knownTarget(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += i * i
	}
	return s
}

// queryReplica is small enough to be inlined into its caller: the tests check
// that the inlined call is expanded back into its own frame.
func queryReplica(ch chan int) int {
	v := <-ch
	return v + 1
}

// worker calls queryReplica; the receive is the leak site.
//
//go:noinline
func worker(ch chan int, out chan int) {
	out <- queryReplica(ch)
}

func main() {
	ch := make(chan int)
	out := make(chan int, 16)
	for i := 0; i < 4; i++ {
		go worker(ch, out)
	}
	go func() {
		// Inlined into main.main.func1 (a closure).
		out <- queryReplica(ch)
	}()
	fmt.Println(knownTarget(len(os.Args)))
	if len(os.Args) > 1 && os.Args[1] == "wait" {
		time.Sleep(time.Hour)
	}
}
