// goslowleak: a slow goroutine leak inside a busy pool, the shape a 15 s window
// alone cannot prove, for the test of goroutine wait ages.
//
// Usage: goslowleak [--every SECS] [--gc SECS] [--workers N] [--jobs PER_SEC]
//
// A pool of --workers (300) goroutines parks in main.busyPoolWaitForJob and takes
// --jobs (3000) jobs a second in total, each a wake and a re-park; one request
// every --every (6) s strands its goroutine forever in main.leakStrandedReply (a
// receive on a reply channel nobody sends on; the first one --every s after
// start). runtime.GC() runs every --gc (1) s, as allocation would make it run in a
// real service, so every parked goroutine's g.waitsince gets set.
//
// Standard library only. Runs until killed.
package main

import (
	"flag"
	"runtime"
	"sync/atomic"
	"time"
)

// sink keeps work and received values observable so nothing is optimized out.
var sink atomic.Int64

//go:noinline
func busyPoolWaitForJob(jobs <-chan int) int {
	return <-jobs
}

// leakStrandedReply waits for a reply nobody will ever send.
//
//go:noinline
func leakStrandedReply(reply <-chan int) {
	sink.Add(int64(<-reply))
}

// doJob is a few microseconds of work, so a woken worker briefly runs.
func doJob(job int) {
	sum := 0
	for k := 0; k < 1000; k++ {
		sum += job ^ k
	}
	sink.Add(int64(sum))
}

func main() {
	every := flag.Float64("every", 6, "seconds between stranded goroutines")
	gcEvery := flag.Float64("gc", 1, "seconds between forced GC cycles")
	workers := flag.Int("workers", 300, "pool goroutines")
	jobsPerSec := flag.Float64("jobs", 3000, "jobs per second, all workers together")
	flag.Parse()

	jobs := make(chan int)
	for w := 0; w < *workers; w++ {
		go func() {
			for {
				doJob(busyPoolWaitForJob(jobs))
			}
		}()
	}
	go func() {
		for {
			time.Sleep(time.Duration(*gcEvery * float64(time.Second)))
			runtime.GC()
		}
	}()
	go func() {
		start := time.Now()
		for n := 1; ; n++ {
			time.Sleep(time.Until(start.Add(time.Duration(float64(n) * *every * float64(time.Second)))))
			go leakStrandedReply(make(chan int))
		}
	}()
	// Jobs in 10 ms ticks, the fraction carried over.
	const tick = 10 * time.Millisecond
	owed := 0.0
	next := time.Now()
	for job := 0; ; {
		for owed += *jobsPerSec * tick.Seconds(); owed >= 1; owed-- {
			jobs <- job
			job++
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
}
