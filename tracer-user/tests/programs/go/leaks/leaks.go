// goleaks: the goroutine leaks leakscope must find, and the steady goroutine
// populations it must not call leaks.
//
// Usage: goleaks PATTERN [-v]
//
// Leak patterns (one new goroutine every 250 ms, at most 100000, each parked
// forever in a distinctively named //go:noinline function):
//
//	send     main.leakSendNoReceiver   ch <- v on an unbuffered chan nobody reads
//	                                   (through main.sendResult, which the
//	                                   compiler inlines)           "chan send"
//	recv     main.leakRecvNoSender     <-ch on a chan nobody sends on
//	                                                                "chan receive"
//	nilchan  main.leakNilChannel       <-ch on a nil chan      "chan receive (nil chan)"
//	mutex    main.leakForgottenUnlock  Lock on a mutex whose first holder
//	                                   returned without Unlock  "sync.Mutex.Lock"
//	waitgroup main.leakWaitGroup       Add(2), one Done, Wait  "sync.WaitGroup.Wait"
//	                                                           ("semacquire" before Go 1.24)
//	range    main.leakRangeNeverClosed for range over a chan never closed
//	                                                                "chan receive"
//	select   main.leakSelectContext    select on a never-cancelled context's
//	                                   Done() and a never-ready chan  "select"
//	hold     main.leakHoldingBuffer    <-ch on a chan nobody sends on, holding a
//	                                   256 KiB buffer it filled: the leak grows
//	                                   the heap by 1 MiB a second  "chan receive"
//	cgoread  main.leakCgoRead          (cgo builds only) a cgo call blocked in C
//	                                   read(2) on a silent pipe, in
//	                                   leak_cgo_read_never_answered: a leak of
//	                                   threads (each call holds one), not of
//	                                   parked goroutines
//
// Every leaking goroutine is started by the `go` statements in main.spawnLeak,
// so its creator ("created by") is main.spawnLeak.
//
// Steady patterns (must not be reported as leaks):
//
//	pool     32 workers in main.poolWorker blocked on a job chan, one job every 50 ms
//	sleepers 50 goroutines in main.periodicSleeper looping time.Sleep(200 ms)
//
// -v prints runtime.NumGoroutine() to stderr once a second.
//
// Built with CGO_ENABLED=1, cgo.go makes this a cgo binary (see there).
//
// Runs until killed.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

const (
	leakInterval = 250 * time.Millisecond
	maxLeaks     = 100000

	poolWorkers = 32
	jobInterval = 50 * time.Millisecond

	sleepers      = 50
	sleepInterval = 200 * time.Millisecond
)

// sink keeps work and received values observable so nothing is optimized out.
var sink counter

// counter is atomic.Int64 by hand (a plain int64 and atomic.AddInt64), so that
// this program builds with Go 1.17 and 1.18 too, which leakscope also reads.
type counter struct{ v int64 }

func (c *counter) Add(delta int64) { atomic.AddInt64(&c.v, delta) }

// sendResult is small enough for the compiler to inline into
// leakSendNoReceiver: leakscope must still show it as a frame of its own.
func sendResult(ch chan<- int, v int) {
	ch <- v
}

// leakSendNoReceiver: the caller gave up on the result and nobody will ever
// read ch, an unbuffered channel.
//
//go:noinline
func leakSendNoReceiver(ch chan<- int, v int) {
	sendResult(ch, v)
}

// leakRecvNoSender waits for a value nobody will ever send.
//
//go:noinline
func leakRecvNoSender(ch <-chan int) {
	sink.Add(int64(<-ch))
}

// leakNilChannel receives from a channel that was never made.
//
//go:noinline
func leakNilChannel() {
	var ch chan int
	sink.Add(int64(<-ch))
}

var (
	guardedMu    sync.Mutex
	guardedState int
)

// leakForgottenUnlock updates shared state under guardedMu but returns early
// on the "error" path without unlocking: the first call takes the lock and
// keeps it forever, every later call blocks in Lock.
//
//go:noinline
func leakForgottenUnlock(n int) {
	guardedMu.Lock()
	if guardedState >= 0 {
		guardedState += n
		return // forgot guardedMu.Unlock()
	}
	guardedMu.Unlock()
}

// leakWaitGroup waits for two tasks of which only one ever reports done.
//
//go:noinline
func leakWaitGroup() {
	var wg sync.WaitGroup
	wg.Add(2)
	wg.Done()
	wg.Wait()
}

// leakRangeNeverClosed consumes a stream whose producer never closes it.
//
//go:noinline
func leakRangeNeverClosed(results <-chan int) {
	for v := range results {
		sink.Add(int64(v))
	}
}

// leakSelectContext waits for either a reply that never comes or its
// context's cancellation, which never happens either.
//
//go:noinline
func leakSelectContext(ctx context.Context, reply <-chan int) {
	select {
	case <-ctx.Done():
		sink.Add(-1)
	case v := <-reply:
		sink.Add(int64(v))
	}
}

// neverCancelled is derived from context.Background() and its cancel
// function is deliberately kept and never called: Done() is a real channel
// that never becomes ready.
var neverCancelled, cancelNeverCalled = context.WithCancel(context.Background())

// heldBufferBytes is what each "hold" goroutine keeps alive.
const heldBufferBytes = 256 << 10

// leakHoldingBuffer fills a buffer (so its pages are really in memory) and then
// waits, buffer in hand, for a value nobody will ever send.
//
//go:noinline
func leakHoldingBuffer(ch <-chan int) {
	buf := make([]byte, heldBufferBytes)
	for i := range buf {
		buf[i] = byte(i)
	}
	v := <-ch
	sink.Add(int64(buf[v%len(buf)]))
}

// leakCgoRead blocks in C code that waits for an answer never sent.
//
//go:noinline
func leakCgoRead() {
	cgoBlockingRead()
}

// spawnLeak starts the i-th leaking goroutine of `pattern`.
//
//go:noinline
func spawnLeak(pattern string, i int) {
	switch pattern {
	case "send":
		go leakSendNoReceiver(make(chan int), i)
	case "recv":
		go leakRecvNoSender(make(chan int))
	case "nilchan":
		go leakNilChannel()
	case "mutex":
		go leakForgottenUnlock(i)
	case "waitgroup":
		go leakWaitGroup()
	case "range":
		results := make(chan int, 1)
		results <- i
		go leakRangeNeverClosed(results)
	case "select":
		go leakSelectContext(neverCancelled, make(chan int))
	case "hold":
		go leakHoldingBuffer(make(chan int))
	case "cgoread":
		go leakCgoRead()
	}
}

var leakPatterns = []string{"send", "recv", "nilchan", "mutex", "waitgroup", "range", "select", "hold", "cgoread"}

func isLeakPattern(pattern string) bool {
	for _, p := range leakPatterns {
		if p == pattern {
			return true
		}
	}
	return false
}

// poolWorker is one of a fixed number of workers idling on the job channel.
//
//go:noinline
func poolWorker(jobs <-chan int) {
	for job := range jobs {
		sum := 0
		for k := 0; k < 1000; k++ {
			sum += job ^ k
		}
		sink.Add(int64(sum))
	}
}

// periodicSleeper wakes every sleepInterval forever.
//
//go:noinline
func periodicSleeper() {
	for {
		time.Sleep(sleepInterval)
		sink.Add(1)
	}
}

func reportGoroutines() {
	for {
		fmt.Fprintf(os.Stderr, "goroutines %d\n", runtime.NumGoroutine())
		time.Sleep(time.Second)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: goleaks PATTERN [-v]\nleak patterns: %v\nsteady patterns: pool sleepers\n", leakPatterns)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 || (len(os.Args) == 3 && os.Args[2] != "-v") {
		usage()
	}
	pattern := os.Args[1]
	if len(os.Args) == 3 {
		go reportGoroutines()
	}
	cgoMarker()
	_ = cancelNeverCalled

	switch {
	case isLeakPattern(pattern):
		for i := 0; ; i++ {
			if i < maxLeaks {
				spawnLeak(pattern, i)
			}
			time.Sleep(leakInterval)
		}
	case pattern == "pool":
		jobs := make(chan int)
		for w := 0; w < poolWorkers; w++ {
			go poolWorker(jobs)
		}
		for job := 0; ; job++ {
			jobs <- job
			time.Sleep(jobInterval)
		}
	case pattern == "sleepers":
		for s := 0; s < sleepers; s++ {
			go periodicSleeper()
		}
		select {} // main itself only waits
	default:
		usage()
	}
}
