// goservice: goroutine leaks as a Go service has them in production, for the tests
// of the Go runtime's own leak marks and of pprof labels.
//
// Usage: goservice MODE [flags]
//
//	strand          every --every (0.5) s a request strands its goroutine in
//	                main.strandedReply (a receive on a reply channel that only the
//	                stranded goroutine can reach, so Go's GC can prove it leaked)
//	bounded         --count (50) goroutines stranded so at start, none later
//	labelled        every --every s a request running under pprof.Do, labelled
//	                route=/checkout tenant=acme (every 4th route=/cart), starts a
//	                goroutine (which inherits the labels) that strands in
//	                main.labelledReply
//	hostile-labels  as labelled, with one more label set: --labels (2000) labels,
//	                one key --key-bytes (65536) long and one value --value-bytes
//	                (1048576) long, its goroutines stranded in main.hostileReply
//
// With --profile SECS (default 3; 0: never) the service's own profiler takes the
// goroutineleak profile that often (Go 1.26+ as an experiment, 1.27+ by default;
// nothing where the runtime has no such profile), as continuous profilers do: each
// time, a GC cycle marks every goroutine it proves leaked _Gleaked, until the next.
// Eight workers in main.idleWorker take a job every 20 ms all along (steady).
//
// Prints "profiled" on stdout after each profile taken. Standard library only.
// Runs until killed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"
)

var sink atomic.Int64

// strandedReply waits for a reply nobody will ever send.
//
//go:noinline
func strandedReply(reply chan int) {
	sink.Add(int64(<-reply))
}

// labelledReply is strandedReply for labelled requests.
//
//go:noinline
func labelledReply(reply chan int) {
	sink.Add(int64(<-reply))
}

// hostileReply is strandedReply for the request with the hostile label set.
//
//go:noinline
func hostileReply(reply chan int) {
	sink.Add(int64(<-reply))
}

//go:noinline
func idleWorker(jobs <-chan int) {
	for job := range jobs {
		sink.Add(int64(job))
	}
}

// strand starts one request's goroutine, leaving it nothing to wake it.
//
//go:noinline
func strand(wait func(chan int)) {
	reply := make(chan int)
	go wait(reply)
}

// labelled strands a goroutine of a request labelled with route and tenant.
func labelled(route string) {
	labels := pprof.Labels("route", route, "tenant", "acme")
	pprof.Do(context.Background(), labels, func(context.Context) {
		strand(labelledReply)
	})
}

// hostile strands a goroutine whose label set no reader should take whole.
func hostile(count, keyBytes, valueBytes int) {
	pairs := []string{strings.Repeat("k", keyBytes), "long key", "big", strings.Repeat("v", valueBytes)}
	for i := 0; i < count; i++ {
		pairs = append(pairs, fmt.Sprintf("label%05d", i), fmt.Sprintf("value%d", i))
	}
	pprof.Do(context.Background(), pprof.Labels(pairs...), func(context.Context) {
		strand(hostileReply)
	})
}

func profiler(every time.Duration) {
	for {
		time.Sleep(every)
		if p := pprof.Lookup("goroutineleak"); p != nil {
			_ = p.WriteTo(io.Discard, 0)
			fmt.Println("profiled")
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: goservice strand|bounded|labelled|hostile-labels [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	flags := flag.NewFlagSet(mode, flag.ExitOnError)
	every := flags.Float64("every", 0.5, "seconds between stranded requests")
	count := flags.Int("count", 50, "goroutines stranded at start (bounded)")
	profile := flags.Float64("profile", 3, "seconds between goroutineleak profiles (0: never)")
	labels := flags.Int("labels", 2000, "labels of the hostile set")
	keyBytes := flags.Int("key-bytes", 65536, "length of the hostile set's long key")
	valueBytes := flags.Int("value-bytes", 1<<20, "length of the hostile set's long value")
	_ = flags.Parse(os.Args[2:])

	jobs := make(chan int)
	for w := 0; w < 8; w++ {
		go idleWorker(jobs)
	}
	go func() {
		for job := 0; ; job++ {
			jobs <- job
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if *profile > 0 {
		go profiler(time.Duration(*profile * float64(time.Second)))
	}
	interval := time.Duration(*every * float64(time.Second))
	switch mode {
	case "strand":
		for {
			strand(strandedReply)
			time.Sleep(interval)
		}
	case "bounded":
		for i := 0; i < *count; i++ {
			strand(strandedReply)
		}
		select {}
	case "labelled", "hostile-labels":
		if mode == "hostile-labels" {
			hostile(*labels, *keyBytes, *valueBytes)
		}
		for i := 0; ; i++ {
			route := "/checkout"
			if i%4 == 3 {
				route = "/cart"
			}
			labelled(route)
			if mode == "hostile-labels" && i%8 == 0 {
				hostile(*labels, *keyBytes, *valueBytes)
			}
			time.Sleep(interval)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
		os.Exit(2)
	}
}
