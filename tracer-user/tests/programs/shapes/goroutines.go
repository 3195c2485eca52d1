// shape-goroutines: the population shapes leakscope's verdict must tell
// apart, as parked goroutines. The goroutine twin of threads.c (same modes,
// same parameters, same defaults unless noted).
//
//	shape-goroutines MODE [--PARAM VALUE]... [-v]
//
// Each waiting role parks in a distinctively named //go:noinline function,
// so the stack leakscope reports names the site. Leak modes (the population
// grows without bound):
//
//	fast-leak       --rate 20 --max 100000  goroutines/s parked in main.leakFastSendNoReceiver
//	                                        (send on an unbuffered chan nobody reads)
//	busy-pool-slow-leak --workers 5000 --wakes 400 --interval 2 --alloc 0
//	                a pool of --workers goroutines receiving jobs in main.busyPoolWaitForJob,
//	                --wakes jobs per second in total, plus one new goroutine every
//	                --interval s parked in main.leakSlowRecvNoSender (receive on a chan
//	                nobody sends on); each job allocates --alloc bytes of garbage, as a
//	                service decoding requests does (so the GC runs, and dates parks)
//	very-slow-leak  --interval 10           one goroutine every --interval s (the first at
//	                                        start) in main.leakVerySlowForgottenUnlock
//	                                        (sync.Mutex locked and never unlocked)
//	multi-site-leak --rate 1                three sites: main.leakMultiSend (2x rate),
//	                                        main.leakMultiMutex (1x), main.leakMultiSelect (0.5x)
//
// Steady modes (no leak):
//
//	idle-pool       --workers 32 --rate 2   fixed pool in main.idlePoolWaitForJob, --rate jobs/s
//	plateau         --target 200 --grow 10 --rate 2
//	                a connection pool filled evenly over the first --grow s up to --target
//	                goroutines, then fixed; idle connections park in main.plateauConnIdle
//	                and serve --rate jobs/s
//	sawtooth        --wave 4 --burst 100    waves: --burst short-lived goroutines arrive
//	                                        evenly over the first 3/4 of each --wave s and
//	                                        park in main.sawtoothWaitForFlush; a flush
//	                                        (close) at 3/4 releases them all; they exit
//	ramp            --start-rate 10 --end-rate 300 --ramp 25 --min-ms 100 --max-ms 300
//	                one goroutine per request, the rate rising linearly over --ramp s then
//	                held; each parks in main.rampWaitForResponse until its reply arrives
//	                (a timer sends it after --min-ms..--max-ms) and exits
//	sleepers        --workers 300 --min-ms 500 --max-ms 5000
//	                goroutines looping time.Sleep in main.sleeperSleep, each with its
//	                own period in the range
//	long-lived      --workers 200           goroutines parked from the start, forever, in
//	                                        main.longLivedWaitForShutdown; constant count
//
// A server, leaking or steady by its parameters:
//
//	http-server     --busy 40 --busy-ms 100 --vanish-rate 0 --max 100000 --idle 0
//	                --idle-life-min 20 --idle-life-max 80 --idle-timeout 0
//	                a net/http server on loopback and its clients in the same process:
//	                --busy keep-alive clients each sending a request every --busy-ms
//	                (give or take half), --vanish-rate clients/s that send one request,
//	                read the reply and vanish without closing (their connections stay
//	                open and silent; at most --max), and --idle keep-alive connections
//	                that send one request, stay silent for --idle-life-min..--idle-life-max
//	                s, then hang up, a new one taking each one's place (a bounded crowd
//	                that rotates, steady from the start); --idle-timeout is the server's
//	                IdleTimeout in seconds (0: none). Every server connection goroutine
//	                waits for its next request at one site, in net/http.(*conn).serve
//	                ("IO wait"): the busy ones moments at a time, the silent ones until
//	                their client hangs up or the idle timeout, and the vanished ones of a
//	                server without one forever (the leak)
//
// -v prints, once a second on stderr, how many goroutines wait in each role,
// and runtime.NumGoroutine().
//
// Standard library only. Built from this file alone (`go build goroutines.go`,
// with the go.mod beside it): the directory also holds threads.c, which a
// package build would reject without cgo. Runs until killed.
package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sink keeps work and received values observable so nothing is optimized out.
var sink atomic.Int64

// jobsDone counts the jobs pool workers took (each one a wake and a re-park),
// for -v.
var jobsDone atomic.Int64

// ---- waiter counts for -v -------------------------------------------------------

type role struct {
	name    string
	waiting atomic.Int64
}

var roles []*role

func addRole(name string) *role {
	r := &role{name: name}
	roles = append(roles, r)
	return r
}

// wait runs f, counting the goroutine as waiting in r meanwhile.
func (r *role) wait(f func()) {
	r.waiting.Add(1)
	f()
	r.waiting.Add(-1)
}

func reporter() {
	start := time.Now()
	for {
		time.Sleep(time.Second)
		var b strings.Builder
		fmt.Fprintf(&b, "t=%.0f goroutines=%d", time.Since(start).Seconds(), runtime.NumGoroutine())
		for _, r := range roles {
			fmt.Fprintf(&b, " %s=%d", r.name, r.waiting.Load())
		}
		if jobs := jobsDone.Load(); jobs > 0 {
			fmt.Fprintf(&b, " jobs_done=%d", jobs)
		}
		fmt.Fprintln(os.Stderr, b.String())
	}
}

// doJob is a few microseconds of work, so a woken worker is briefly running.
func doJob(job int) {
	jobsDone.Add(1)
	sum := 0
	for k := 0; k < 2000; k++ {
		sum += job ^ k
	}
	sink.Add(int64(sum))
}

// garbage is the last request buffer, so allocations escape to the heap.
var garbage atomic.Pointer[[]byte]

// allocateRequest allocates n bytes of short-lived garbage (0: none).
func allocateRequest(n int, job int) {
	if n <= 0 {
		return
	}
	buf := make([]byte, n)
	buf[job%n] = byte(job)
	garbage.Store(&buf)
}

// spawnAtRate starts fn in a new goroutine `rate` times per second (paced
// from the start, so spawn costs do not drift the rate), at most max times,
// after `delay`. Returns when max is reached.
func spawnAtRate(fn func(), rate float64, max int, delay time.Duration) {
	time.Sleep(delay)
	start := time.Now()
	for spawned := 0; spawned < max; {
		go fn()
		spawned++
		next := start.Add(time.Duration(float64(spawned) / rate * float64(time.Second)))
		time.Sleep(time.Until(next))
	}
	fmt.Fprintf(os.Stderr, "shape-goroutines: reached --max %d, no more spawns\n", max)
}

// feedJobs sends `rate` jobs per second on jobs, in ticks of 10 ms with the
// fraction carried over, forever (rate 0: never).
func feedJobs(jobs chan<- int, rate float64) {
	if rate <= 0 {
		select {}
	}
	const tick = 10 * time.Millisecond
	if rate < 1/tick.Seconds() {
		// Slow feeds: one job per period, no idle ticks.
		for job := 0; ; job++ {
			time.Sleep(time.Duration(float64(time.Second) / rate))
			jobs <- job
		}
	}
	owed := 0.0
	next := time.Now()
	for job := 0; ; {
		owed += rate * tick.Seconds()
		for ; owed >= 1; owed-- {
			jobs <- job
			job++
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
}

// ---- fast-leak --------------------------------------------------------------------

// leakFastSendNoReceiver: the caller gave up on the result; nobody reads ch.
//
//go:noinline
func leakFastSendNoReceiver(ch chan<- int, v int) {
	ch <- v
}

func runFastLeak(p *params) {
	rate := p.float("rate", 20)
	max := p.int("max", 100000)
	p.done()
	r := addRole("leakFastSendNoReceiver")
	p.startReporter()
	i := 0
	spawnAtRate(func() { i++; v := i; r.wait(func() { leakFastSendNoReceiver(make(chan int), v) }) }, rate, max, 0)
	select {}
}

// ---- busy-pool-slow-leak --------------------------------------------------------------

//go:noinline
func busyPoolWaitForJob(jobs <-chan int) (int, bool) {
	job, ok := <-jobs
	return job, ok
}

// leakSlowRecvNoSender waits for a reply nobody will ever send.
//
//go:noinline
func leakSlowRecvNoSender(reply <-chan int) {
	sink.Add(int64(<-reply))
}

func runBusyPoolSlowLeak(p *params) {
	workers := p.int("workers", 5000)
	wakes := p.float("wakes", 400)
	interval := p.seconds("interval", 2)
	alloc := p.int("alloc", 0)
	p.done()
	pool := addRole("busyPoolWaitForJob")
	leak := addRole("leakSlowRecvNoSender")
	jobs := make(chan int)
	for w := 0; w < workers; w++ {
		go func() {
			for {
				var job int
				var ok bool
				pool.wait(func() { job, ok = busyPoolWaitForJob(jobs) })
				if !ok {
					return
				}
				allocateRequest(alloc, job)
				doJob(job)
			}
		}()
	}
	p.startReporter()
	// The first leak comes one interval after start, not at once.
	go spawnAtRate(func() { leak.wait(func() { leakSlowRecvNoSender(make(chan int)) }) },
		1/interval.Seconds(), 1<<30, interval)
	feedJobs(jobs, wakes)
}

// ---- very-slow-leak ----------------------------------------------------------------------

var (
	forgottenMu    sync.Mutex
	forgottenState int
)

// leakVerySlowForgottenUnlock updates shared state under forgottenMu but
// returns early without unlocking: the first call keeps the lock forever,
// every later call parks in Lock. (So the first goroutine is no waiter; every
// later one is.)
//
//go:noinline
func leakVerySlowForgottenUnlock(n int) {
	forgottenMu.Lock()
	if forgottenState >= 0 {
		forgottenState += n
		return // forgot forgottenMu.Unlock()
	}
	forgottenMu.Unlock()
}

func runVerySlowLeak(p *params) {
	interval := p.seconds("interval", 10)
	p.done()
	r := addRole("leakVerySlowForgottenUnlock")
	p.startReporter()
	// The lock's first, returning holder: every spawned goroutine then parks.
	leakVerySlowForgottenUnlock(0)
	spawnAtRate(func() { r.wait(func() { leakVerySlowForgottenUnlock(1) }) },
		1/interval.Seconds(), 1<<30, 0)
}

// ---- multi-site-leak ---------------------------------------------------------------------

//go:noinline
func leakMultiSend(ch chan<- int) {
	ch <- 1
}

var multiMu sync.Mutex // locked by main forever

//go:noinline
func leakMultiMutex() {
	multiMu.Lock()
	sink.Add(1)
	multiMu.Unlock()
}

//go:noinline
func leakMultiSelect(a, b <-chan int) {
	select {
	case v := <-a:
		sink.Add(int64(v))
	case v := <-b:
		sink.Add(int64(v))
	}
}

func runMultiSiteLeak(p *params) {
	rate := p.float("rate", 1)
	p.done()
	send := addRole("leakMultiSend")
	mutex := addRole("leakMultiMutex")
	sel := addRole("leakMultiSelect")
	multiMu.Lock()
	p.startReporter()
	go spawnAtRate(func() { send.wait(func() { leakMultiSend(make(chan int)) }) }, 2*rate, 1<<30, 0)
	go spawnAtRate(func() { mutex.wait(leakMultiMutex) }, rate, 1<<30, 0)
	go spawnAtRate(func() { sel.wait(func() { leakMultiSelect(make(chan int), make(chan int)) }) }, rate/2, 1<<30, 0)
	select {}
}

// ---- idle-pool --------------------------------------------------------------------------------

//go:noinline
func idlePoolWaitForJob(jobs <-chan int) int {
	return <-jobs
}

func runIdlePool(p *params) {
	workers := p.int("workers", 32)
	rate := p.float("rate", 2)
	p.done()
	r := addRole("idlePoolWaitForJob")
	jobs := make(chan int)
	for w := 0; w < workers; w++ {
		go func() {
			for {
				var job int
				r.wait(func() { job = idlePoolWaitForJob(jobs) })
				doJob(job)
			}
		}()
	}
	p.startReporter()
	feedJobs(jobs, rate)
}

// ---- plateau ----------------------------------------------------------------------------------

//go:noinline
func plateauConnIdle(jobs <-chan int) int {
	return <-jobs
}

func runPlateau(p *params) {
	target := p.int("target", 200)
	grow := p.seconds("grow", 10)
	rate := p.float("rate", 2)
	p.done()
	r := addRole("plateauConnIdle")
	p.startReporter()
	jobs := make(chan int)
	go feedJobs(jobs, rate)
	start := time.Now()
	for i := 0; i < target; i++ {
		time.Sleep(time.Until(start.Add(grow * time.Duration(i) / time.Duration(target))))
		go func() {
			for {
				var job int
				r.wait(func() { job = plateauConnIdle(jobs) })
				doJob(job)
			}
		}()
	}
	fmt.Fprintf(os.Stderr, "shape-goroutines: plateau reached %d goroutines after %.1f s\n",
		target, time.Since(start).Seconds())
	select {}
}

// ---- sawtooth -----------------------------------------------------------------------------------

//go:noinline
func sawtoothWaitForFlush(flushed <-chan struct{}) {
	<-flushed
}

func runSawtooth(p *params) {
	wave := p.seconds("wave", 4)
	burst := p.int("burst", 100)
	p.done()
	r := addRole("sawtoothWaitForFlush")
	p.startReporter()
	rise := wave * 3 / 4
	for waveStart := time.Now(); ; waveStart = waveStart.Add(wave) {
		flushed := make(chan struct{})
		for i := 0; i < burst; i++ {
			time.Sleep(time.Until(waveStart.Add(rise * time.Duration(i) / time.Duration(burst))))
			go r.wait(func() { sawtoothWaitForFlush(flushed) })
		}
		time.Sleep(time.Until(waveStart.Add(rise)))
		close(flushed)
		time.Sleep(time.Until(waveStart.Add(wave)))
	}
}

// ---- ramp ------------------------------------------------------------------------------------------

// rampWaitForResponse waits for the backend's reply.
//
//go:noinline
func rampWaitForResponse(reply <-chan int) {
	sink.Add(int64(<-reply))
}

func runRamp(p *params) {
	startRate := p.float("start-rate", 10)
	endRate := p.float("end-rate", 300)
	ramp := p.seconds("ramp", 25)
	minMs := p.float("min-ms", 100)
	maxMs := p.float("max-ms", 300)
	p.done()
	r := addRole("rampWaitForResponse")
	p.startReporter()
	const tick = 10 * time.Millisecond
	start := time.Now()
	next := start
	owed := 0.0
	announced := false
	for {
		t := time.Since(start)
		rate := endRate
		if t < ramp {
			rate = startRate + (endRate-startRate)*t.Seconds()/ramp.Seconds()
		} else if !announced {
			fmt.Fprintf(os.Stderr, "shape-goroutines: ramp reached %.0f requests/s\n", endRate)
			announced = true
		}
		for owed += rate * tick.Seconds(); owed >= 1; owed-- {
			latency := time.Duration((minMs + rand.Float64()*(maxMs-minMs)) * float64(time.Millisecond))
			reply := make(chan int, 1)
			// The backend answers after `latency`.
			time.AfterFunc(latency, func() { reply <- 1 })
			go r.wait(func() { rampWaitForResponse(reply) })
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
}

// ---- sleepers ---------------------------------------------------------------------------------------

//go:noinline
func sleeperSleep(d time.Duration) {
	time.Sleep(d)
}

func runSleepers(p *params) {
	workers := p.int("workers", 300)
	minMs := p.float("min-ms", 500)
	maxMs := p.float("max-ms", 5000)
	p.done()
	r := addRole("sleeperSleep")
	for w := 0; w < workers; w++ {
		period := time.Duration((minMs + rand.Float64()*(maxMs-minMs)) * float64(time.Millisecond))
		// The first sleep is a random part of the period, so the sleepers
		// do not wake in step.
		phase := time.Duration(rand.Int63n(int64(period)))
		go func() {
			// One call site, so all waits are one site.
			for d := phase; ; d = period {
				r.wait(func() { sleeperSleep(d) })
				sink.Add(1)
			}
		}()
	}
	p.startReporter()
	select {}
}

// ---- long-lived ---------------------------------------------------------------------------------------

//go:noinline
func longLivedWaitForShutdown(shutdown <-chan struct{}) {
	<-shutdown
}

func runLongLived(p *params) {
	workers := p.int("workers", 200)
	p.done()
	r := addRole("longLivedWaitForShutdown")
	shutdown := make(chan struct{}) // never closed
	for w := 0; w < workers; w++ {
		go r.wait(func() { longLivedWaitForShutdown(shutdown) })
	}
	p.startReporter()
	select {}
}

// ---- http-server ---------------------------------------------------------------------------------

var httpRequest = []byte("GET / HTTP/1.1\r\nHost: shape\r\n\r\n")

// httpRoundTrip sends one request on c and reads its reply.
func httpRoundTrip(c net.Conn, r *bufio.Reader) error {
	if _, err := c.Write(httpRequest); err != nil {
		return err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// httpConnect opens a client connection to addr and makes one round trip on it.
func httpConnect(addr string) (net.Conn, *bufio.Reader, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	r := bufio.NewReader(c)
	if err := httpRoundTrip(c, r); err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, r, nil
}

// httpBusyClient keeps one connection busy: a request every period, give or take half,
// each counted in done.
func httpBusyClient(addr string, period time.Duration, done *atomic.Int64) {
	for {
		c, r, err := httpConnect(addr)
		for err == nil {
			done.Add(1)
			time.Sleep(period/2 + time.Duration(rand.Int63n(int64(period))))
			err = httpRoundTrip(c, r)
		}
		fmt.Fprintf(os.Stderr, "shape-goroutines: busy client: %v\n", err)
		if c != nil {
			c.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// vanished holds the connections of clients that left without closing them.
var vanished struct {
	sync.Mutex
	conns []net.Conn
}

// httpVanishingClient sends one request, reads the reply and is gone: its connection
// stays open and silent, as a client whose host went away leaves it.
func httpVanishingClient(addr string, count *role) {
	c, _, err := httpConnect(addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "shape-goroutines: vanishing client: %v\n", err)
		return
	}
	vanished.Lock()
	vanished.conns = append(vanished.conns, c)
	vanished.Unlock()
	count.waiting.Add(1)
}

// httpIdleSlot keeps one idle keep-alive connection open at a time: one request, then
// silent for its life, then it hangs up and the next takes its place. The first life
// is already partly gone, so the crowd rotates steadily from the start.
func httpIdleSlot(addr string, lifeMin, lifeMax float64, open *role) {
	life := func() time.Duration {
		return time.Duration((lifeMin + rand.Float64()*(lifeMax-lifeMin)) * float64(time.Second))
	}
	left := time.Duration(rand.Int63n(int64(life()) + 1))
	for ; ; left = life() {
		c, _, err := httpConnect(addr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "shape-goroutines: idle client: %v\n", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		open.waiting.Add(1)
		time.Sleep(left)
		c.Close()
		open.waiting.Add(-1)
	}
}

func runHTTPServer(p *params) {
	busy := p.int("busy", 40)
	busyPeriod := time.Duration(p.float("busy-ms", 100) * float64(time.Millisecond))
	vanishRate := p.float("vanish-rate", 0)
	max := p.int("max", 100000)
	idle := p.int("idle", 0)
	lifeMin := p.float("idle-life-min", 20)
	lifeMax := p.float("idle-life-max", 80)
	idleTimeout := p.seconds("idle-timeout", 0)
	p.done()
	vanishedRole := addRole("vanished")
	idleRole := addRole("idle")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "shape-goroutines: listen: %v\n", err)
		os.Exit(1)
	}
	reply := []byte("ok\n")
	server := &http.Server{
		Handler:     http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(reply) }),
		IdleTimeout: idleTimeout,
	}
	go server.Serve(ln)
	addr := ln.Addr().String()
	for i := 0; i < busy; i++ {
		go httpBusyClient(addr, busyPeriod, &jobsDone)
	}
	for i := 0; i < idle; i++ {
		go httpIdleSlot(addr, lifeMin, lifeMax, idleRole)
	}
	p.startReporter()
	if vanishRate > 0 {
		spawnAtRate(func() { httpVanishingClient(addr, vanishedRole) }, vanishRate, max, 0)
	}
	select {}
}

// ---- parameters and main --------------------------------------------------------------------------

// params holds a mode's --NAME VALUE arguments: each mode reads the ones it
// takes, then done() rejects any other (a typo must not silently leave a case
// with its default shape).
type params struct {
	values  map[string]string
	used    map[string]bool
	verbose bool
}

func parseParams(args []string) *params {
	p := &params{values: map[string]string{}, used: map[string]bool{}}
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-v":
			p.verbose = true
		case strings.HasPrefix(args[i], "--") && i+1 < len(args):
			p.values[args[i][2:]] = args[i+1]
			i++
		default:
			fmt.Fprintf(os.Stderr, "shape-goroutines: unexpected argument %q\n", args[i])
			os.Exit(2)
		}
	}
	return p
}

func (p *params) float(name string, def float64) float64 {
	text, ok := p.values[name]
	if !ok {
		return def
	}
	p.used[name] = true
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "shape-goroutines: --%s: not a number: %s\n", name, text)
		os.Exit(2)
	}
	return v
}

func (p *params) int(name string, def int) int {
	return int(p.float(name, float64(def)))
}

func (p *params) seconds(name string, def float64) time.Duration {
	return time.Duration(p.float(name, def) * float64(time.Second))
}

func (p *params) done() {
	for name := range p.values {
		if !p.used[name] {
			fmt.Fprintf(os.Stderr, "shape-goroutines: unknown parameter --%s for %s\n", name, os.Args[1])
			os.Exit(2)
		}
	}
}

func (p *params) startReporter() {
	if p.verbose {
		go reporter()
	}
}

var modes = map[string]func(p *params){
	"fast-leak":           runFastLeak,
	"busy-pool-slow-leak": runBusyPoolSlowLeak,
	"very-slow-leak":      runVerySlowLeak,
	"multi-site-leak":     runMultiSiteLeak,
	"idle-pool":           runIdlePool,
	"plateau":             runPlateau,
	"sawtooth":            runSawtooth,
	"ramp":                runRamp,
	"sleepers":            runSleepers,
	"long-lived":          runLongLived,
	"http-server":         runHTTPServer,
}

func usage() {
	names := make([]string, 0, len(modes))
	for name := range modes {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: shape-goroutines MODE [--PARAM VALUE]... [-v]\nmodes: %s\n"+
		"(parameters and defaults: see the comment at the top of goroutines.go)\n",
		strings.Join(names, " "))
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	run, ok := modes[os.Args[1]]
	if !ok {
		usage()
	}
	run(parseParams(os.Args[2:]))
}
