// parked: a huge, mostly idle Go process for `cargo xtask bench`'s scale section.
//
// Holds PARKED goroutines parked on one channel receive (main.parkedIdle, a steady
// population that never grows) and leaks LEAK_PER_SEC more per second, each parked
// forever on its own never-sent channel in main.leakScale (the leak leakscope must
// find). Prints "ready <parked>" once the steady population is parked, then runs
// until killed.
//
// Usage: parked PARKED LEAK_PER_SEC
//
// Memory: each parked goroutine costs its g (about 450 bytes) and a 2 KiB minimum
// stack, so 1,000,000 of them hold about 2.5 GiB.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// idle is never sent on: every parkedIdle goroutine waits on it forever.
var idle = make(chan struct{})

//go:noinline
func parkedIdle(started *sync.WaitGroup) {
	started.Done()
	<-idle
}

//go:noinline
func leakScale() {
	never := make(chan int)
	<-never
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: parked PARKED LEAK_PER_SEC")
		os.Exit(2)
	}
	parked, err1 := strconv.Atoi(os.Args[1])
	rate, err2 := strconv.Atoi(os.Args[2])
	if err1 != nil || err2 != nil || parked < 0 || rate < 0 {
		fmt.Fprintln(os.Stderr, "parked: PARKED and LEAK_PER_SEC are counts")
		os.Exit(2)
	}
	var started sync.WaitGroup
	started.Add(parked)
	for i := 0; i < parked; i++ {
		go parkedIdle(&started)
	}
	started.Wait()
	fmt.Printf("ready %d\n", parked)
	if rate == 0 {
		select {}
	}
	// Leaks arrive in ten batches a second, evenly over time.
	tick := time.NewTicker(100 * time.Millisecond)
	owed := 0
	for range tick.C {
		owed += rate
		for ; owed >= 10; owed -= 10 {
			go leakScale()
		}
	}
}
