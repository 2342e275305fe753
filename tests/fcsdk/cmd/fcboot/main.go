// Command fcboot boots a kernel through kvmc-firecracker with the
// unmodified firecracker-go-sdk v1.0.0, as an orchestrator written for
// Firecracker would: Machine.Start, then (once the guest printed -marker)
// PauseVM, ResumeVM and Shutdown (SendCtrlAltDel), and waits for the VMM to
// exit. The guest's console goes to stdout; a last line says what happened:
//
//	LAB-FC paused=Paused resumed=Running shutdown=ok exit=ok start_ms=N
//
// The nested lab runs it, built static, to boot Debian's kernel in L2.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	firecracker "github.com/firecracker-microvm/firecracker-go-sdk"
	models "github.com/firecracker-microvm/firecracker-go-sdk/client/models"
	"github.com/sirupsen/logrus"
)

type watched struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *watched) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	return os.Stdout.Write(p)
}

func (w *watched) has(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Contains(w.buf.Bytes(), []byte(s))
}

func main() {
	bin := flag.String("bin", "kvmc-firecracker", "the VMM binary")
	kernel := flag.String("kernel", "", "the kernel")
	initrd := flag.String("initrd", "", "the initrd")
	args := flag.String("args", "console=ttyS0", "the kernel command line")
	mem := flag.Int64("mem", 256, "MiB of guest memory")
	marker := flag.String("marker", "KVMC-LAB-L2-MARKER", "what the guest prints once up")
	timeout := flag.Duration("timeout", 300*time.Second, "the whole run's limit")
	flag.Parse()
	if *kernel == "" {
		fmt.Fprintln(os.Stderr, "fcboot: -kernel is required")
		os.Exit(2)
	}
	if err := run(*bin, *kernel, *initrd, *args, *mem, *marker, *timeout); err != nil {
		fmt.Printf("\nLAB-FC error=[%s]\n", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
}

func run(bin, kernel, initrd, args string, mem int64, marker string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "fcboot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "api.sock")
	console := &watched{}
	cmd := firecracker.VMCommandBuilder{}.WithBin(bin).WithSocketPath(sock).
		WithStdout(console).WithStderr(os.Stderr).Build(ctx)
	logger := logrus.New()
	logger.SetLevel(logrus.WarnLevel)
	cfg := firecracker.Config{
		SocketPath:      sock,
		KernelImagePath: kernel,
		InitrdPath:      initrd,
		KernelArgs:      args,
		MachineCfg: models.MachineConfiguration{VcpuCount: firecracker.Int64(1),
			MemSizeMib: firecracker.Int64(mem), Smt: firecracker.Bool(false)},
	}
	m, err := firecracker.NewMachine(ctx, cfg, firecracker.WithProcessRunner(cmd),
		firecracker.WithLogger(logrus.NewEntry(logger)))
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := m.Start(ctx); err != nil {
		return fmt.Errorf("Machine.Start: %w", err)
	}
	defer m.StopVMM()
	startMs := time.Since(t0).Milliseconds()
	for !console.has(marker) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %q from the guest", marker)
		case <-time.After(100 * time.Millisecond):
		}
	}
	state := func() string {
		info, err := m.DescribeInstanceInfo(ctx)
		if err != nil || info.State == nil {
			return fmt.Sprintf("error(%v)", err)
		}
		return *info.State
	}
	if err := m.PauseVM(ctx); err != nil {
		return fmt.Errorf("PauseVM: %w", err)
	}
	paused := state()
	if err := m.ResumeVM(ctx); err != nil {
		return fmt.Errorf("ResumeVM: %w", err)
	}
	resumed := state()
	if err := m.Shutdown(ctx); err != nil {
		return fmt.Errorf("Shutdown: %w", err)
	}
	if err := m.Wait(ctx); err != nil {
		return fmt.Errorf("Wait after Shutdown: %w", err)
	}
	io.WriteString(os.Stdout, "\n")
	fmt.Printf("LAB-FC paused=%s resumed=%s shutdown=ok exit=ok start_ms=%d\n", paused, resumed,
		startMs)
	return nil
}
