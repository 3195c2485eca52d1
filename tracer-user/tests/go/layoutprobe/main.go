// Command layoutprobe is built by `cargo xtask go-layouts` (and by
// leakscope's tests) with each supported Go toolchain, unstripped, so that
// the runtime's struct layouts (runtime.g, runtime.gobuf) and its
// waitReasonStrings table can be read from the binary's DWARF and data.
//
// It uses only the standard library and does nothing of interest: the
// runtime is linked into every Go binary, and that is all the probe needs.
package main

import (
	"fmt"
	"os"
	"sync"
)

func main() {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ch := make(chan int)
	total := 0
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			v := <-ch
			mu.Lock()
			total += v * i
			mu.Unlock()
		}(i)
	}
	for i := 0; i < 4; i++ {
		ch <- i + 1
	}
	wg.Wait()
	fmt.Fprintln(os.Stdout, "layoutprobe", total)
}
