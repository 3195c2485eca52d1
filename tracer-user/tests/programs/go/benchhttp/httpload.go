// gohttpload: net/http throughput workload for `cargo xtask bench`.
//
// One process runs an HTTP server on 127.0.0.1 (an ephemeral port) and 16
// client goroutines that hammer it over keep-alive connections: a realistic
// Go service mix of netpoller waits ("IO wait"), channel hand-offs inside
// net/http and many short-lived goroutines. Loopback only.
//
// Usage: gohttpload SECONDS
// Prints: requests_per_sec <float>
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const clients = 16

var body = []byte("ok\n")

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gohttpload SECONDS")
		os.Exit(2)
	}
	seconds, err := strconv.ParseFloat(os.Args[1], 64)
	if err != nil || seconds <= 0 {
		fmt.Fprintf(os.Stderr, "gohttpload: bad SECONDS %q\n", os.Args[1])
		os.Exit(2)
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "gohttpload: listen: %v\n", err)
		os.Exit(1)
	}
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})}
	go func() { _ = server.Serve(listener) }()

	url := "http://" + listener.Addr().String() + "/"
	transport := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        clients,
		MaxIdleConnsPerHost: clients,
		IdleConnTimeout:     time.Minute,
	}
	client := &http.Client{Transport: transport}

	var stop atomic.Bool
	var requests, failures atomic.Uint64
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, err := client.Get(url)
				if err != nil {
					failures.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				requests.Add(1)
			}
		}()
	}
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start).Seconds()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = server.Shutdown(ctx)
	transport.CloseIdleConnections()

	if n := failures.Load(); n > 0 {
		// A handful of errors would only lower the rate; many mean the numbers
		// measure something else than throughput.
		fmt.Fprintf(os.Stderr, "gohttpload: %d failed requests\n", n)
		if n > requests.Load()/100 {
			os.Exit(1)
		}
	}
	fmt.Printf("requests_per_sec %.1f\n", float64(requests.Load())/elapsed)
}
