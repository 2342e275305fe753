// Command fcboot boots a kernel through kvmc-firecracker with the
// unmodified firecracker-go-sdk v1.0.0, as an orchestrator written for
// Firecracker would: Machine.Start, then (once the guest printed -marker)
// PauseVM, ResumeVM and Shutdown (SendCtrlAltDel), and waits for the VMM to
// exit. The guest's console goes to stdout; a last line says what happened:
//
//	LAB-FC paused=Paused resumed=Running shutdown=ok exit=ok start_ms=N
//
// With -jail, kvmc-firecracker runs with --jail: fcboot puts the kernel and
// initrd in the jail's root (links, as the SDK's jailer handler does), owned
// by nobody, and names them from inside, the socket too. The last line then
// also says what the jailed process was: jail=pid1,uid=65534,caps=0.
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
	jail := flag.Bool("jail", false, "run kvmc-firecracker --jail, the files in its root")
	flag.Parse()
	if *kernel == "" {
		fmt.Fprintln(os.Stderr, "fcboot: -kernel is required")
		os.Exit(2)
	}
	if err := run(*bin, *kernel, *initrd, *args, *mem, *marker, *timeout, *jail); err != nil {
		fmt.Printf("\nLAB-FC error=[%s]\n", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
}

// intoJail links (or copies) file into root as name, owned by nobody, and
// returns its name inside the jail.
func intoJail(root, file, name string) (string, error) {
	dst := filepath.Join(root, name)
	if err := os.Link(file, dst); err != nil {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return "", err
		}
	}
	return "/" + name, os.Chown(dst, 65534, 65534)
}

// jailed describes the process inside the jail (the child of the one the
// SDK started): its PID in its namespace, uid and effective capabilities.
func jailed(parent int) string {
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent))
	f := strings.Fields(string(children))
	if len(f) != 1 {
		return "none"
	}
	status, _ := os.ReadFile("/proc/" + f[0] + "/status")
	field := func(name string) string {
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				return strings.Fields(v)[len(strings.Fields(v))-1]
			}
		}
		return "?"
	}
	caps := field("CapEff")
	if strings.Trim(caps, "0") == "" {
		caps = "0"
	}
	return fmt.Sprintf("pid%s,uid=%s,caps=%s", field("NSpid"), field("Uid"), caps)
}

func run(bin, kernel, initrd, args string, mem int64, marker string, timeout time.Duration,
	jail bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "fcboot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "api.sock")
	console := &watched{}
	builder := firecracker.VMCommandBuilder{}.WithBin(bin).WithSocketPath(sock)
	if jail {
		root := filepath.Join(dir, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			return err
		}
		if err := os.Chown(root, 65534, 65534); err != nil {
			return err
		}
		if kernel, err = intoJail(root, kernel, "vmlinux"); err != nil {
			return err
		}
		if initrd != "" {
			if initrd, err = intoJail(root, initrd, "initrd"); err != nil {
				return err
			}
		}
		sock = filepath.Join(root, "api.sock")
		builder = firecracker.VMCommandBuilder{}.WithBin(bin).
			WithArgs([]string{"--jail", root, "--api-sock", "/api.sock"})
	}
	cmd := builder.WithStdout(console).WithStderr(os.Stderr).Build(ctx)
	logger := logrus.New()
	logger.SetLevel(logrus.WarnLevel)
	cfg := firecracker.Config{
		SocketPath:      sock,
		KernelImagePath: kernel,
		InitrdPath:      initrd,
		KernelArgs:      args,
		MachineCfg: models.MachineConfiguration{VcpuCount: firecracker.Int64(1),
			MemSizeMib: firecracker.Int64(mem), Smt: firecracker.Bool(false)},
		DisableValidation: jail, // jailed, the paths are the jail's
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
	inside := ""
	if jail {
		pid, err := m.PID()
		if err != nil {
			return err
		}
		inside = " jail=" + jailed(pid)
	}
	if err := m.Shutdown(ctx); err != nil {
		return fmt.Errorf("Shutdown: %w", err)
	}
	if err := m.Wait(ctx); err != nil {
		return fmt.Errorf("Wait after Shutdown: %w", err)
	}
	io.WriteString(os.Stdout, "\n")
	fmt.Printf("LAB-FC paused=%s resumed=%s shutdown=ok exit=ok start_ms=%d%s\n", paused, resumed,
		startMs, inside)
	return nil
}
