// gopingpong: goroutine hand-off throughput workload for `cargo xtask bench`,
// the Go counterpart of pingpong.c.
//
// Two independent pairs of goroutines ping-pong a token over unbuffered
// channels: every hand-off parks one goroutine in a channel receive and
// readies another, the scheduler operation a goroutine-leak tracer watches.
//
// Usage: gopingpong SECONDS
// Prints: round_trips_per_sec <float>   (both pairs together)
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const pairs = 2

// play runs one pair until stop is set and returns its round trips. A round
// trip is ping -> pong -> ping.
func play(stop *atomic.Bool) uint64 {
	ping := make(chan struct{})
	pong := make(chan struct{})
	go func() {
		for range ping {
			pong <- struct{}{}
		}
		close(pong)
	}()
	var trips uint64
	for !stop.Load() {
		ping <- struct{}{}
		<-pong
		trips++
	}
	close(ping)
	for range pong {
	}
	return trips
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gopingpong SECONDS")
		os.Exit(2)
	}
	seconds, err := strconv.ParseFloat(os.Args[1], 64)
	if err != nil || seconds <= 0 {
		fmt.Fprintf(os.Stderr, "gopingpong: bad SECONDS %q\n", os.Args[1])
		os.Exit(2)
	}

	var stop atomic.Bool
	var total atomic.Uint64
	var wg sync.WaitGroup
	start := time.Now()
	for p := 0; p < pairs; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			total.Add(play(&stop))
		}()
	}
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	fmt.Printf("round_trips_per_sec %.1f\n", float64(total.Load())/elapsed)
}
