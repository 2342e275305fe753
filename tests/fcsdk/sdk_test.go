// Package fcsdk drives kvmc-firecracker with the unmodified
// firecracker-go-sdk v1.0.0, as an orchestrator written for Firecracker
// would: the SDK starts the process, configures the VM through the API,
// boots it, pauses and resumes it, reads its metrics and shuts it down.
//
// Needs KVMC_FIRECRACKER (the kvmc-firecracker binary) and
// KVMC_TEST_GUEST_ELF (the test guest): scripts/dev fc_sdk sets both.
package fcsdk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	firecracker "github.com/firecracker-microvm/firecracker-go-sdk"
	models "github.com/firecracker-microvm/firecracker-go-sdk/client/models"
	"github.com/sirupsen/logrus"
)

// syncBuffer collects the guest's console (the process's stdout).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func need(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: run this through scripts/dev fc_sdk", name)
	}
	return v
}

func waitFor(t *testing.T, console *syncBuffer, text string) {
	t.Helper()
	for i := 0; !strings.Contains(console.String(), text); i++ {
		if i > 2000 {
			t.Fatalf("the guest never printed %q:\n%s", text, console.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type vmFixture struct {
	machine         *firecracker.Machine
	console, stderr *syncBuffer
	sock, metrics   string
	logPath, vsock  string
}

// start boots the test guest (waiting for the i8042's Ctrl-Alt-Del) with a
// root drive, a vsock and an entropy-less default machine, the SDK's way.
func start(t *testing.T, ctx context.Context) *vmFixture {
	bin, guest := need(t, "KVMC_FIRECRACKER"), need(t, "KVMC_TEST_GUEST_ELF")
	dir := t.TempDir()
	f := &vmFixture{console: &syncBuffer{}, stderr: &syncBuffer{},
		sock: filepath.Join(dir, "api.sock"), metrics: filepath.Join(dir, "metrics"),
		logPath: filepath.Join(dir, "log"), vsock: filepath.Join(dir, "v.sock")}
	disk := filepath.Join(dir, "rootfs.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := firecracker.VMCommandBuilder{}.WithBin(bin).WithSocketPath(f.sock).
		WithStdout(f.console).WithStderr(f.stderr).Build(ctx)
	cfg := firecracker.Config{
		SocketPath:      f.sock,
		KernelImagePath: guest,
		KernelArgs:      "kvmc.test=kbd",
		Drives:          firecracker.NewDrivesBuilder(disk).Build(),
		MachineCfg: models.MachineConfiguration{
			VcpuCount: firecracker.Int64(2), MemSizeMib: firecracker.Int64(64),
			Smt: firecracker.Bool(false)},
		VsockDevices: []firecracker.VsockDevice{{Path: f.vsock, CID: 3}},
		MetricsPath:  f.metrics,
		LogPath:      f.logPath,
		LogLevel:     "Info",
	}
	m := startMachine(t, ctx, cfg, cmd, f.stderr)
	f.machine = m
	t.Cleanup(func() { m.StopVMM() })
	waitFor(t, f.console, "kbd: waiting for ctrl-alt-del")
	return f
}

// startMachine is the SDK's NewMachine and Start with cmd as the process,
// failing the test with the process's stderr.
func startMachine(t *testing.T, ctx context.Context, cfg firecracker.Config, cmd *exec.Cmd,
	stderr *syncBuffer) *firecracker.Machine {
	t.Helper()
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	m, err := firecracker.NewMachine(ctx, cfg, firecracker.WithProcessRunner(cmd),
		firecracker.WithLogger(logrus.NewEntry(logger)))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Machine.Start: %v\nstderr:\n%s", err, stderr.String())
	}
	return m
}

// The SDK's whole default flow, Pause/Resume, metrics, then Shutdown, which
// is SendCtrlAltDel: the guest resets and the process ends with status 0.
func TestSDKBootsPausesResumesAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := start(t, ctx)
	m := f.machine
	for _, want := range []string{"cmdline: kvmc.test=kbd root=/dev/vda rw",
		"smp: 2 of 2 cpus running", "kbd: virtio devices: blk vsock"} {
		if !strings.Contains(f.console.String(), want) {
			t.Errorf("no %q in the console:\n%s", want, f.console.String())
		}
	}
	if _, err := os.Stat(f.vsock); err != nil {
		t.Errorf("the vsock's socket: %v", err)
	}

	info, err := m.DescribeInstanceInfo(ctx)
	if err != nil || *info.State != "Running" || *info.AppName != "Firecracker" {
		t.Fatalf("DescribeInstanceInfo: %+v, %v", info, err)
	}
	if err := m.PauseVM(ctx); err != nil {
		t.Fatal(err)
	}
	if info, _ = m.DescribeInstanceInfo(ctx); *info.State != "Paused" {
		t.Fatalf("state %s after PauseVM", *info.State)
	}
	if err := m.ResumeVM(ctx); err != nil {
		t.Fatal(err)
	}
	if info, _ = m.DescribeInstanceInfo(ctx); *info.State != "Running" {
		t.Fatalf("state %s after ResumeVM", *info.State)
	}
	version, err := m.GetFirecrackerVersion(ctx)
	if err != nil || !strings.HasPrefix(version, "1.") {
		t.Fatalf("GetFirecrackerVersion: %q, %v", version, err)
	}

	// A pre-boot request now is refused with Firecracker's error.
	client := firecracker.NewClient(f.sock, logrus.NewEntry(logrus.New()), false)
	_, err = client.PutGuestBootSource(ctx, &models.BootSource{
		KernelImagePath: firecracker.String(need(t, "KVMC_TEST_GUEST_ELF"))})
	if err == nil || !strings.Contains(err.Error(), "after starting the microVM") {
		t.Fatalf("PUT /boot-source after the start: %v", err)
	}

	// Metrics, on demand: what the API served since the last flush.
	if _, err := client.CreateSyncAction(ctx, &models.InstanceActionInfo{
		ActionType: firecracker.String("FlushMetrics")}); err != nil {
		t.Fatal(err)
	}
	metrics := lastMetrics(t, f.metrics)
	put := metrics["put_api_requests"].(map[string]any)
	patch := metrics["patch_api_requests"].(map[string]any)
	if put["actions_count"].(float64) < 1 || put["machine_cfg_count"].(float64) != 1 ||
		put["drive_count"].(float64) != 1 || put["vsock_count"].(float64) != 1 ||
		patch["vm_count"].(float64) != 2 {
		t.Fatalf("metrics: %v", metrics)
	}
	// The VM's own counters, from libkvmc: the boot's console output is
	// port writes, and the guest found its disk through MMIO.
	vcpu := metrics["vcpu"].(map[string]any)
	if vcpu["exit_io_out"].(float64) < 500 || vcpu["exit_mmio_read"].(float64) < 1 {
		t.Fatalf("vcpu metrics: %v", vcpu)
	}
	for _, group := range []string{"block", "net", "vsock", "entropy"} {
		if _, ok := metrics[group].(map[string]any); !ok {
			t.Errorf("no %q group in %v", group, metrics)
		}
	}

	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("Wait after Shutdown: %v\nstderr:\n%s", err, f.stderr.String())
	}
	if !strings.Contains(f.console.String(), "kbd: ctrl-alt-del pressed, resetting") {
		t.Fatalf("the guest never saw Ctrl-Alt-Del:\n%s", f.console.String())
	}
	if _, err := os.Stat(f.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the API socket outlived the process: %v", err)
	}
	logged, _ := os.ReadFile(f.logPath)
	if !bytes.Contains(logged, []byte("the microVM ended: reset")) {
		t.Errorf("the log:\n%s", logged)
	}
}

// StopVMM is SIGTERM: the VM stops, the process ends with status 0.
func TestStopVMM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := start(t, ctx)
	pid, err := f.machine.PID()
	if err != nil {
		t.Fatal(err)
	}
	if names := threadNames(t, pid); !strings.Contains(names, "fc_vcpu 0\n") ||
		!strings.Contains(names, "fc_vcpu 1\n") || !strings.Contains(names, "fc_api\n") {
		t.Errorf("thread names:\n%s", names)
	}
	// The API thread runs under its own seccomp list (mode 2: filter), as
	// do the VM's threads.
	for _, name := range []string{"fc_api", "fc_vcpu 0", "kvmc-io"} {
		if mode := seccompMode(t, pid, name); mode != "2" {
			t.Errorf("thread %q: Seccomp %q, want 2", name, mode)
		}
	}
	if err := f.machine.StopVMM(); err != nil {
		t.Fatal(err)
	}
	if err := f.machine.Wait(ctx); err != nil {
		t.Fatalf("Wait after StopVMM: %v\nstderr:\n%s", err, f.stderr.String())
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still there: %v", pid, err)
	}
}

// --version gives the line Kata Containers parses, then kvmc's own.
func TestVersion(t *testing.T) {
	out, err := exec.Command(need(t, "KVMC_FIRECRACKER"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "Firecracker v1.") ||
		!strings.Contains(string(out), "(kvmc ") {
		t.Fatalf("--version: %q, %v", out, err)
	}
}

func threadNames(t *testing.T, pid int) string {
	tasks, err := filepath.Glob(filepath.Join("/proc", itoa(pid), "task", "*", "comm"))
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, p := range tasks {
		b, _ := os.ReadFile(p)
		all.Write(b)
	}
	return all.String()
}

// seccompMode is the Seccomp field of the status of pid's thread named name.
func seccompMode(t *testing.T, pid int, name string) string {
	tasks, _ := filepath.Glob(filepath.Join("/proc", itoa(pid), "task", "*"))
	for _, task := range tasks {
		comm, _ := os.ReadFile(filepath.Join(task, "comm"))
		if strings.TrimSpace(string(comm)) != name {
			continue
		}
		status, _ := os.ReadFile(filepath.Join(task, "status"))
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	t.Fatalf("no thread %q in process %d", name, pid)
	return ""
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func lastMetrics(t *testing.T, path string) map[string]any {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var last string
	for s := bufio.NewScanner(file); s.Scan(); {
		last = s.Text()
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(last), &v); err != nil {
		t.Fatalf("metrics line %q: %v", last, err)
	}
	if _, ok := v["utc_timestamp_ms"].(float64); !ok {
		t.Fatalf("metrics without a timestamp: %v", v)
	}
	return v
}
