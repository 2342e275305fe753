package kvmc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func countDir(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func rssKiB(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func soakCycle(t *testing.T, guest string, i int) {
	cmdline := ""
	if i%3 != 0 {
		cmdline = "kvmc.test=boot-only"
	}
	vm, err := NewVM(Config{Kernel: guest, Memory: 16 << 20, CPUs: uint(1 + i%2), Cmdline: cmdline})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if exit, err := vm.Run(context.Background()); err != nil || exit.Reason != ExitPoweroff {
		t.Fatalf("cycle %d: exit %+v, err %v", i, exit, err)
	}
}

// 1000 create/run/close cycles: descriptors and resident memory stay flat,
// and the OS threads do not grow with the cycles (Go's runtime keeps the
// ones cgo callbacks used, so they are compared after the warm-up).
func TestSoakAThousandVMs(t *testing.T) {
	guest := testGuest(t)
	for i := 0; i < 50; i++ {
		soakCycle(t, guest, i)
	}
	fds, threads, rss := countDir(t, "/proc/self/fd"), countDir(t, "/proc/self/task"), rssKiB(t)
	for i := 50; i < 1000; i++ {
		soakCycle(t, guest, i)
	}
	// A leak grows with the cycles (950 here); fewer is something an
	// earlier test left being closed.
	if now := countDir(t, "/proc/self/fd"); now > fds {
		t.Errorf("descriptors: %d after the warm-up, %d after 1000 VMs", fds, now)
	}
	if now := countDir(t, "/proc/self/task"); now > threads+4 {
		t.Errorf("threads: %d after the warm-up, %d after 1000 VMs", threads, now)
	}
	if now := rssKiB(t); raceEnabled {
		t.Logf("resident memory %d -> %d KiB (not checked under -race; scripts/dev runs "+
			"this test without it too)", rss, now)
	} else if now-rss > 16384 {
		t.Errorf("resident memory grew from %d to %d KiB", rss, now)
	}
}

// KVMC_SOAK_CONCURRENT=N runs N VMs at once from goroutines (200 in the
// issue's soak; opt-in, as it needs N guest memories and N vCPU threads).
func TestSoakConcurrentVMs(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KVMC_SOAK_CONCURRENT"))
	if n == 0 {
		t.Skip("opt-in: KVMC_SOAK_CONCURRENT=200")
	}
	guest := testGuest(t)
	fds := countDir(t, "/proc/self/fd")
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	vms := make(chan *VM, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			vm, err := NewVM(Config{Kernel: guest, Memory: 8 << 20, Cmdline: "kvmc.test=echo"})
			if err != nil {
				errs <- fmt.Errorf("vm %d: %w", i, err)
				return
			}
			if err := vm.Start(); err != nil {
				errs <- err
			}
			vms <- vm
		}(i)
	}
	wg.Wait()
	close(vms)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	running, peakFDs, peakThreads, peakRSS := 0, countDir(t, "/proc/self/fd"),
		countDir(t, "/proc/self/task"), rssKiB(t)
	var all []*VM
	for vm := range vms {
		if vm.State() == StateRunning {
			running++
		}
		all = append(all, vm)
	}
	for _, vm := range all {
		vm.Close()
	}
	t.Logf("%d VMs running at once (%v to start them): %d descriptors, %d threads, "+
		"%d KiB resident; after closing them: %d descriptors", running,
		time.Since(start).Round(time.Millisecond), peakFDs, peakThreads, peakRSS,
		countDir(t, "/proc/self/fd"))
	if running != n {
		t.Errorf("%d of %d VMs ran", running, n)
	}
	if now := countDir(t, "/proc/self/fd"); now != fds {
		t.Errorf("descriptors: %d before, %d after", fds, now)
	}
}
