// orchestrator boots several VMs at once, each from its own goroutine, and
// collects how each ended:
//
//	orchestrator -kernel kvmc-test-guest.elf -n 8
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	kvmc "github.com/kvmc/kvmc/bindings/go"
)

type result struct {
	id      int
	exit    kvmc.ExitInfo
	err     error
	elapsed time.Duration
}

func main() {
	kernel := flag.String("kernel", "", "kernel to boot in every VM")
	n := flag.Int("n", 4, "number of VMs")
	cpus := flag.Uint("cpus", 1, "vCPUs per VM")
	timeout := flag.Duration("timeout", 30*time.Second, "time limit for all VMs")
	flag.Parse()
	if *kernel == "" {
		fmt.Fprintln(os.Stderr, "usage: orchestrator -kernel PATH [-n N] [-cpus N] [-timeout 30s]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	results := make([]result, *n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t0 := time.Now()
			vm, err := kvmc.NewVM(kvmc.Config{Kernel: *kernel, Memory: 64 << 20, CPUs: *cpus,
				Cmdline: fmt.Sprintf("vm=%d", i)})
			if err != nil {
				results[i] = result{id: i, err: err}
				return
			}
			defer vm.Close()
			exit, err := vm.Run(ctx)
			results[i] = result{id: i, exit: exit, err: err, elapsed: time.Since(t0)}
		}(i)
	}
	wg.Wait()

	failed := 0
	for _, r := range results {
		status := "ok"
		if r.err != nil || !r.exit.Clean() {
			status = "FAILED"
			failed++
		}
		fmt.Printf("vm %2d: %-6s %-9s %6.1f ms  %s %v\n", r.id, status, r.exit.Reason,
			float64(r.elapsed.Microseconds())/1000, r.exit.Message, errOrEmpty(r.err))
	}
	fmt.Printf("%d VMs in %.1f ms, %d failed\n", *n,
		float64(time.Since(start).Microseconds())/1000, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

func errOrEmpty(err error) any {
	if err == nil {
		return ""
	}
	return err
}
