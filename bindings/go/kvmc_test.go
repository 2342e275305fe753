package kvmc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is an io.Writer safe for the vCPU threads and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testGuest(t *testing.T) string {
	t.Helper()
	p := os.Getenv("KVMC_TEST_GUEST_ELF")
	if p == "" {
		t.Fatal("KVMC_TEST_GUEST_ELF is not set (scripts/dev sets it)")
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Fatalf("/dev/kvm: %v", err)
	}
	return p
}

func newVM(t *testing.T, c Config) *VM {
	t.Helper()
	vm, err := NewVM(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestBootsTheTestGuest(t *testing.T) {
	var console syncBuffer
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 64 << 20, CPUs: 2,
		Cmdline: "from go", Console: &console})
	exit, err := vm.Run(within(t, 20*time.Second))
	if err != nil || !exit.Clean() {
		t.Fatalf("exit %+v, err %v\n%s", exit, err, console.String())
	}
	for _, want := range []string{"cmdline: from go", "smp: 2 of 2 cpus running", "self-check: ok"} {
		if !strings.Contains(console.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, console.String())
		}
	}
}

func TestPITIsOptIn(t *testing.T) {
	for _, c := range []struct {
		pit  bool
		want string
	}{{false, "pit: absent"}, {true, "pit: counting"}} {
		var console syncBuffer
		vm := newVM(t, Config{Kernel: testGuest(t), Memory: 64 << 20, Cmdline: "kvmc.test=pit",
			PIT: c.pit, Console: &console})
		if exit, err := vm.Run(within(t, 20*time.Second)); err != nil || !exit.Clean() {
			t.Fatalf("exit %+v, err %v", exit, err)
		}
		if !strings.Contains(console.String(), c.want) {
			t.Errorf("PIT %v: console lacks %q:\n%s", c.pit, c.want, console.String())
		}
	}
}

func TestDevicesWrittenInGo(t *testing.T) {
	var console syncBuffer
	var mu sync.Mutex
	var writes []uint64
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 64 << 20,
		Cmdline: "kvmc.test=devices", Console: &console})
	record := func(off uint64, size int, v uint64) { mu.Lock(); writes = append(writes, v); mu.Unlock() }
	if err := vm.AddPIODevice(0x600, 4, DeviceFuncs{
		ReadFn:  func(off uint64, size int) uint64 { return 0x60000000 | uint64(size) },
		WriteFn: record}); err != nil {
		t.Fatal(err)
	}
	if err := vm.AddMMIODevice(0xd0000000, 0x1000, DeviceFuncs{
		ReadFn:  func(off uint64, size int) uint64 { return 0xfeedfacecafebeef },
		WriteFn: record}); err != nil {
		t.Fatal(err)
	}
	if exit, err := vm.Run(within(t, 20*time.Second)); err != nil || !exit.Clean() {
		t.Fatalf("exit %+v, err %v", exit, err)
	}
	if len(writes) != 2 || writes[0] != 0x12345678 || writes[1] != 0x1122334455667788 {
		t.Errorf("writes seen by Go: %#x", writes)
	}
	for _, want := range []string{"pio: wrote 0x12345678 read 0x60000004",
		"mmio: wrote 0x1122334455667788 read 0xfeedfacecafebeef"} {
		if !strings.Contains(console.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, console.String())
		}
	}
}

func TestContextCancelStopsTheVM(t *testing.T) {
	var console syncBuffer
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 64 << 20,
		Cmdline: "kvmc.test=echo", Console: &console})
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; !strings.Contains(console.String(), "echo: ready"); i++ {
		if i > 2000 {
			t.Fatal("guest never got ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := vm.Pause(); err != nil {
		t.Fatal(err)
	}
	if vm.State() != StatePaused {
		t.Fatalf("state %v", vm.State())
	}
	regs, err := vm.GetRegs(0)
	if err != nil || regs.RIP < 0x100000 || regs.RIP >= 0x200000 {
		t.Fatalf("regs %+v, err %v", regs, err)
	}
	saved := regs.R13
	regs.R13 = 0xabcdef
	if err := vm.SetRegs(0, regs); err != nil {
		t.Fatal(err)
	}
	if back, _ := vm.GetRegs(0); back.R13 != 0xabcdef {
		t.Fatalf("r13 %#x after SetRegs", back.R13)
	}
	regs.R13 = saved
	vm.SetRegs(0, regs)
	if err := vm.Resume(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	exit, err := vm.Wait(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || exit.Reason != ExitStopped {
		t.Fatalf("exit %+v, err %v", exit, err)
	}
}

func TestErrorsAreGoErrors(t *testing.T) {
	_, err := NewVM(Config{Kernel: "/nonexistent/vmlinuz"})
	var kerr *Error
	if !errors.As(err, &kerr) || !strings.Contains(kerr.Msg, "/nonexistent/vmlinuz") {
		t.Fatalf("err %v", err)
	}
	_, err = NewVM(Config{Kernel: testGuest(t), Disks: []Disk{{Path: "/nonexistent/disk"}}})
	if err == nil || !strings.Contains(err.Error(), "disk /nonexistent/disk") {
		t.Fatalf("err %v", err)
	}
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20})
	vm.Close()
	if err := vm.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("start after close: %v", err)
	}
}

func TestHowGuestsEnd(t *testing.T) {
	for cmdline, want := range map[string]ExitReason{
		"kvmc.test=reset": ExitReset, "kvmc.test=triplefault": ExitTripleFault,
		"kvmc.test=panic": ExitGuestPanic, "kvmc.test=acpi-poweroff": ExitPoweroff,
	} {
		vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20, Cmdline: cmdline})
		exit, err := vm.Run(within(t, 20*time.Second))
		if err != nil || exit.Reason != want {
			t.Errorf("%s: exit %+v, err %v", cmdline, exit, err)
		}
	}
}

func TestVirtioDiskAndMemory(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, bytes.Repeat([]byte{7}, 64*512), 0o644); err != nil {
		t.Fatal(err)
	}
	var console syncBuffer
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 64 << 20, Cmdline: "kvmc.test=virtio",
		Disks: []Disk{{Path: disk, Serial: "go-disk"}}, RNG: true, Console: &console})
	if err := vm.WriteMemory(0x300000, []byte("from go")); err != nil {
		t.Fatal(err)
	}
	if b, err := vm.ReadMemory(0x300000, 7); err != nil || string(b) != "from go" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if exit, err := vm.Run(within(t, 20*time.Second)); err != nil || !exit.Clean() {
		t.Fatalf("exit %+v, err %v", exit, err)
	}
	if !strings.Contains(console.String(), "serial go-disk") ||
		!strings.Contains(console.String(), "virtio: 2 devices") {
		t.Errorf("console:\n%s", console.String())
	}
}

// virtio-console in callback mode: output to an io.Writer, input through
// VirtioConsoleWrite; plus user networking and vsock configured from Go.
func TestStreamDevices(t *testing.T) {
	var console, hvc syncBuffer
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 64 << 20, Cmdline: "kvmc.test=vconsole",
		Console: &console, VirtioConsole: &hvc, Nets: []string{"user"},
		Vsock: &Vsock{CID: 3, UDSPath: filepath.Join(t.TempDir(), "v.sock")}})
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000 && !strings.Contains(hvc.String(), "hello from hvc0\n"); i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if n, err := vm.VirtioConsoleWrite([]byte("ping\n")); err != nil || n != 5 {
		t.Fatalf("VirtioConsoleWrite: %d, %v", n, err)
	}
	if exit, err := vm.Wait(within(t, 20*time.Second)); err != nil || !exit.Clean() {
		t.Fatalf("exit %+v, err %v", exit, err)
	}
	if hvc.String() != "hello from hvc0\necho: ping\n" ||
		!strings.Contains(console.String(), "virtio-console: received 'ping'") {
		t.Errorf("hvc0 %q, console:\n%s", hvc.String(), console.String())
	}
	_, err := NewVM(Config{Kernel: testGuest(t), Nets: []string{"tap="}})
	if err == nil || !strings.Contains(err.Error(), "tap") {
		t.Errorf("bad net spec: %v", err)
	}
}

// The orchestrator case: many VMs at once from goroutines.
func TestManyVMsConcurrently(t *testing.T) {
	guest := testGuest(t)
	const n = 8
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			vm, err := NewVM(Config{Kernel: guest, Memory: 32 << 20, CPUs: 2})
			if err != nil {
				results <- err
				return
			}
			defer vm.Close()
			exit, err := vm.Run(context.Background())
			if err == nil && !exit.Clean() {
				err = errors.New(exit.Message)
			}
			results <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
}

func TestVersionAndKickSignal(t *testing.T) {
	if !regexp.MustCompile(`^1\.\d+\.\d+$`).MatchString(Version()) {
		t.Errorf("Version() = %q, want 1.x.y (libkvmc.so.1)", Version())
	}
	// glibc's SIGRTMIN is 34 (NPTL keeps 32 and 33): the kick is SIGRTMIN+6.
	if KickSignal() != syscall.Signal(40) {
		t.Errorf("KickSignal() = %d, want 40", KickSignal())
	}
}

func TestVirtioOverPCI(t *testing.T) {
	var out syncBuffer
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 64 << 20, RNG: true, Transport: "pci",
		Cmdline: "kvmc.test=virtio", Console: &out})
	exit, err := vm.Run(within(t, 30*time.Second))
	if err != nil || !exit.Clean() {
		t.Fatalf("%v %v", exit, err)
	}
	if !strings.Contains(out.String(), "virtio-rng: 64 bytes") {
		t.Errorf("virtio-rng over PCI: %s", out.String())
	}
	if _, err := NewVM(Config{Kernel: testGuest(t), Transport: "isa"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Transport isa: %v", err)
	}
}

// The VFIO checks that need no IOMMU: a bad address, the same device twice,
// and a device the host does not have, each an ErrInvalid naming it (the
// lab passes a real device through).
func TestVFIOErrorsNameTheDevice(t *testing.T) {
	for _, c := range []struct {
		vfio []string
		want string
	}{
		{[]string{"zz"}, "'zz' is not a PCI address"},
		{[]string{"00:1f.7", "0000:00:1f.7"}, "added twice"},
		{[]string{"0000:7f:1f.7"}, "VFIO device 0000:7f:1f.7: no such PCI device"},
	} {
		_, err := NewVM(Config{Kernel: testGuest(t), VFIO: c.vfio})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("VFIO %v: %v, want ErrInvalid with %q", c.vfio, err, c.want)
		}
	}
}

func TestBadPCIDevicesAreErrors(t *testing.T) {
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20})
	_, err := vm.AddPCIDevice(PCIDevice{VendorID: 0x1234, BARs: [6]PCIBar{{Size: 3000, Kind: PCIBarMem32}}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "power of two") {
		t.Errorf("BAR of 3000 bytes: %v", err)
	}
	_, err = vm.AddPCIDevice(PCIDevice{VendorID: 0x1234, BARs: [6]PCIBar{{Size: 4096, Kind: 7}}})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("BAR kind 7: %v", err)
	}
	fn, err := vm.AddPCIDevice(PCIDevice{VendorID: 0x1234, MSIXVectors: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := fn.Notify(1); !errors.Is(err, ErrInvalid) {
		t.Errorf("vector 1 of 1: %v", err)
	}
	vm.Close()
	if err := fn.Notify(0); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestSendCtrlAltDelResetsTheGuest(t *testing.T) {
	var console syncBuffer
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20,
		Cmdline: "kvmc.test=kbd", Console: &console})
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	waitForText(t, &console, "kbd: waiting for ctrl-alt-del")
	if err := vm.SendCtrlAltDel(); err != nil {
		t.Fatal(err)
	}
	exit, err := vm.Wait(within(t, 20*time.Second))
	if err != nil || exit.Reason != ExitReset {
		t.Fatalf("exit %+v, err %v", exit, err)
	}
	if !strings.Contains(console.String(), "kbd: ctrl-alt-del pressed, resetting") {
		t.Fatalf("console:\n%s", console.String())
	}
}

func TestVCPUThreadsCarryTheNameAskedFor(t *testing.T) {
	var console syncBuffer
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20, CPUs: 2,
		Cmdline: "kvmc.test=kbd", Console: &console, VCPUThreadName: "fc_vcpu "})
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	waitForText(t, &console, "kbd: waiting for ctrl-alt-del")
	comms, _ := filepath.Glob("/proc/self/task/*/comm")
	var names []string
	for _, p := range comms {
		b, _ := os.ReadFile(p)
		names = append(names, strings.TrimSpace(string(b)))
	}
	all := strings.Join(names, "\n") + "\n"
	// (Other tests' VMs may still be ending, their threads named kvmc-vcpuN.)
	if !strings.Contains(all, "fc_vcpu 0\n") || !strings.Contains(all, "fc_vcpu 1\n") {
		t.Fatalf("thread names:\n%s", all)
	}
	_, err := NewVM(Config{Kernel: testGuest(t), VCPUThreadName: "fourteen bytes"})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "at most 13") {
		t.Fatalf("a 14-byte name: %v", err)
	}
}

func TestStatsCountExitsAndDevices(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 32768), 0o600); err != nil {
		t.Fatal(err)
	}
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20, Cmdline: "kvmc.test=virtio",
		Disks: []Disk{{Path: disk}}, RNG: true})
	if s, err := vm.Stats(); err != nil || s != (Stats{}) {
		t.Fatalf("before the start: %+v, %v", s, err)
	}
	if _, err := vm.Run(within(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	s, err := vm.Stats()
	if err != nil || s.ExitIOOut < 500 || s.BlockReadCount < 1 || s.BlockReadBytes < 512 ||
		s.BlockWriteCount < 1 || s.RngBytes < 16 || s.VirtioErrors != 0 || s.NetTxPackets != 0 {
		t.Fatalf("%+v, %v", s, err)
	}
}
