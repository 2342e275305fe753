package kvmc

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const idle = "kvmc.test=echo" // waits for console input forever

func waitForText(t *testing.T, b *syncBuffer, text string) {
	t.Helper()
	for i := 0; !strings.Contains(b.String(), text); i++ {
		if i > 2000 {
			t.Fatalf("never saw %q:\n%s", text, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// vmIn returns a VM in state: created, running, paused, exited or closed.
func vmIn(t *testing.T, state string) *VM {
	t.Helper()
	var console syncBuffer
	cmdline := idle
	if state == "exited" {
		cmdline = ""
	}
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20, CPUs: 2, Cmdline: cmdline,
		Console: &console})
	switch state {
	case "running", "paused":
		if err := vm.Start(); err != nil {
			t.Fatal(err)
		}
		waitForText(t, &console, "echo: ready")
		if state == "paused" {
			if err := vm.Pause(); err != nil {
				t.Fatal(err)
			}
		}
	case "exited":
		if _, err := vm.Run(within(t, 20*time.Second)); err != nil {
			t.Fatal(err)
		}
	case "closed":
		vm.Close()
	}
	return vm
}

// Every call in every state: what works, and what is refused with which
// error; nothing crashes or hangs.
func TestEveryCallInEveryState(t *testing.T) {
	dev := DeviceFuncs{ReadFn: func(uint64, int) uint64 { return 0 }}
	calls := map[string]func(vm *VM) error{
		"Start":        func(vm *VM) error { return vm.Start() },
		"Wait":         func(vm *VM) error { _, err := vm.Wait(within(t, 20*time.Millisecond)); return err },
		"Stop":         func(vm *VM) error { return vm.Stop() },
		"Pause":        func(vm *VM) error { return vm.Pause() },
		"Resume":       func(vm *VM) error { return vm.Resume() },
		"GetRegs":      func(vm *VM) error { _, err := vm.GetRegs(1); return err },
		"SetRegs":      func(vm *VM) error { return vm.SetRegs(1, Regs{}) },
		"ReadMemory":   func(vm *VM) error { _, err := vm.ReadMemory(0x200000, 8); return err },
		"AddPIODevice": func(vm *VM) error { return vm.AddPIODevice(0x700, 4, dev) },
		"SetIRQLine":   func(vm *VM) error { return vm.SetIRQLine(5, false) },
		"AddPCIDevice": func(vm *VM) error {
			_, err := vm.AddPCIDevice(PCIDevice{VendorID: 0x1234, BARs: [6]PCIBar{{Size: 4096, Kind: PCIBarMem32}}})
			return err
		},
		"VirtioConsoleWrite": func(vm *VM) error {
			_, err := vm.VirtioConsoleWrite([]byte("x"))
			return err
		},
		"ConsoleWrite":   func(vm *VM) error { _, err := vm.ConsoleWrite([]byte("x")); return err },
		"Snapshot":       func(vm *VM) error { return vm.Snapshot(t.TempDir()) },
		"SnapshotDiff":   func(vm *VM) error { return vm.SnapshotDiff(t.TempDir()) }, // no base
		"LoadSnapshot":   func(vm *VM) error { return vm.LoadSnapshot(t.TempDir()) }, // none there
		"Reset":          func(vm *VM) error { return vm.Reset() },                   // none taken
		"SendCtrlAltDel": func(vm *VM) error { return vm.SendCtrlAltDel() },
		"Stats":          func(vm *VM) error { _, err := vm.Stats(); return err },
	}
	var ok error
	deadline := context.DeadlineExceeded
	//                          created       running   paused    exited
	want := map[string][4]error{
		"Start":              {ok, ErrState, ErrState, ErrState},
		"Wait":               {ErrNotStarted, deadline, deadline, ok},
		"Stop":               {ok, ok, ok, ok},
		"Pause":              {ErrState, ok, ErrState, ErrState},
		"Resume":             {ErrState, ErrState, ok, ErrState},
		"GetRegs":            {ok, ErrState, ok, ok},
		"SetRegs":            {ok, ErrState, ok, ok},
		"ReadMemory":         {ok, ok, ok, ok},
		"AddPIODevice":       {ok, ErrState, ErrState, ErrState},
		"SetIRQLine":         {ok, ok, ok, ok},
		"AddPCIDevice":       {ok, ErrState, ErrState, ErrState},
		"VirtioConsoleWrite": {ErrState, ErrState, ErrState, ErrState},
		"ConsoleWrite":       {ok, ok, ok, ok},
		"Snapshot":           {ErrState, ErrState, ok, ErrState},
		"SnapshotDiff":       {ErrState, ErrState, ErrState, ErrState},
		"LoadSnapshot":       {ErrIO, ErrState, ErrState, ErrState},
		"Reset":              {ErrState, ErrState, ErrState, ErrState},
		"SendCtrlAltDel":     {ok, ok, ok, ok},
		"Stats":              {ok, ok, ok, ok},
	}
	for i, state := range []string{"created", "running", "paused", "exited", "closed"} {
		for name, f := range calls {
			t.Run(state+"/"+name, func(t *testing.T) {
				vm := vmIn(t, state)
				var w error
				if state == "closed" {
					w = ErrClosed
				} else {
					w = want[name][i]
				}
				err := f(vm)
				if w == nil && err != nil || w != nil && !errors.Is(err, w) {
					t.Fatalf("%s while %s: %v, want %v", name, state, err, w)
				}
				if state == "closed" && !errors.Is(err, ErrState) {
					t.Fatalf("ErrClosed is not an ErrState")
				}
				vm.Stop()
				if err := vm.Close(); err != nil {
					t.Fatal(err)
				}
				vm.Close()
			})
		}
	}
}

// Once crashed: Close (which stops) after Run had waited, from an
// orchestrator's deferred Close, 20 VMs at a time, under the race detector.
func TestDeferredCloseAfterRunFromManyGoroutines(t *testing.T) {
	guest := testGuest(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vm, err := NewVM(Config{Kernel: guest, Memory: 16 << 20})
			if err != nil {
				errs <- err
				return
			}
			defer vm.Close()
			if exit, err := vm.Run(context.Background()); err != nil || !exit.Clean() {
				errs <- errors.Join(err, errors.New(exit.Message))
			}
			vm.Stop()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestWaitReturnsAtOnceWhenItCannotEnd(t *testing.T) {
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 16 << 20})
	start := time.Now()
	if _, err := vm.Wait(context.Background()); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("never started: %v", err)
	}
	vm.Close()
	if _, err := vm.Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}

func TestAPanickingCallbackStopsTheVMAndIsReported(t *testing.T) {
	for _, kind := range []string{"read", "write", "console"} {
		var console syncBuffer
		cfg := Config{Kernel: testGuest(t), Memory: 32 << 20, Cmdline: "kvmc.test=devices"}
		if kind == "console" {
			cfg.Console = writerFunc(func(p []byte) (int, error) { panic("console sink bug") })
		} else {
			cfg.Console = &console
		}
		vm := newVM(t, cfg)
		dev := DeviceFuncs{
			ReadFn: func(uint64, int) uint64 {
				if kind == "read" {
					panic(errors.New("device model bug"))
				}
				return 0
			},
			WriteFn: func(uint64, int, uint64) {
				if kind == "write" {
					panic("write bug")
				}
			},
		}
		if err := vm.AddPIODevice(0x600, 4, dev); err != nil {
			t.Fatal(err)
		}
		exit, err := vm.Run(within(t, 20*time.Second))
		var cb *CallbackError
		if !errors.As(err, &cb) {
			t.Fatalf("%s: exit %+v, err %v", kind, exit, err)
		}
		if kind == "read" && (cb.Unwrap() == nil || cb.Unwrap().Error() != "device model bug") {
			t.Errorf("read: panic value %v", cb.Value)
		}
		if exit.Reason != ExitStopped || len(cb.Stack) == 0 {
			t.Errorf("%s: exit %+v", kind, exit)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestCloseWaitPauseFromACallbackAreErrors(t *testing.T) {
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20, Cmdline: "kvmc.test=devices"})
	var mu sync.Mutex
	var got []error
	record := func(err error) { mu.Lock(); got = append(got, err); mu.Unlock() }
	vm.AddPIODevice(0x600, 4, DeviceFuncs{WriteFn: func(uint64, int, uint64) {
		record(vm.Close())
		_, err := vm.Wait(context.Background())
		record(err)
		record(vm.Pause())
	}})
	if exit, err := vm.Run(within(t, 20*time.Second)); err != nil || !exit.Clean() {
		t.Fatalf("exit %+v, err %v", exit, err)
	}
	if len(got) != 3 {
		t.Fatalf("got %v", got)
	}
	for _, err := range got {
		if !errors.Is(err, ErrInCallback) || !errors.Is(err, ErrState) {
			t.Errorf("from a callback: %v", err)
		}
	}
}

func TestBadArgumentsAreErrorsNotPanics(t *testing.T) {
	_, err := NewVM(Config{Kernel: testGuest(t), CPUs: 1 << 40})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "cpus 1099511627776") {
		t.Errorf("huge CPUs: %v", err)
	}
	_, err = NewVM(Config{Kernel: testGuest(t), CPUs: 65})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "cpus 65") {
		t.Errorf("65 CPUs: %v", err)
	}
	_, err = NewVM(Config{Kernel: testGuest(t), MemoryBacking: "paper"})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("bad backing: %v", err)
	}
	_, err = NewVM(Config{Kernel: "/nonexistent/vmlinuz"})
	if !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), "/nonexistent/vmlinuz") {
		t.Errorf("missing kernel: %v", err)
	}
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20})
	if err := vm.AddMMIODevice(0xd0000000, 0x1000, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil device: %v", err)
	}
	if _, err := vm.ReadMemory(0, -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative length: %v", err)
	}
	if err := vm.SetIRQLine(24, true); !errors.Is(err, ErrInvalid) {
		t.Errorf("GSI 24: %v", err)
	}
	if err := vm.AddPIODevice(0x3f8, 1, DeviceFuncs{}); !errors.Is(err, ErrBusy) {
		t.Errorf("over COM1: %v", err)
	}
}

// The guest routes GSI 10 to a vector and asks the device to raise it.
func TestADeviceRaisesAnInterrupt(t *testing.T) {
	var console syncBuffer
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20, Cmdline: "kvmc.test=irq",
		Console: &console})
	vm.AddPIODevice(0x600, 4, DeviceFuncs{WriteFn: func(_ uint64, _ int, gsi uint64) {
		vm.SetIRQLine(uint32(gsi), true)
		vm.SetIRQLine(uint32(gsi), false)
	}})
	if exit, err := vm.Run(within(t, 20*time.Second)); err != nil || !exit.Clean() {
		t.Fatalf("exit %+v, err %v", exit, err)
	}
	if !strings.Contains(console.String(), "irq: gsi 10 delivered vector 0x50") {
		t.Errorf("console:\n%s", console.String())
	}
}

func TestConsoleInputEventsAndKernelImage(t *testing.T) {
	var console syncBuffer
	var mu sync.Mutex
	var events []Event
	image, err := readFile(testGuest(t))
	if err != nil {
		t.Fatal(err)
	}
	vm := newVM(t, Config{KernelImage: image, Memory: 32 << 20, MemoryBacking: "memfd",
		Cmdline: idle, Console: &console,
		OnEvent: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }})
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	waitForText(t, &console, "echo: ready")
	if _, err := vm.ConsoleWrite([]byte("typed in go\r")); err != nil {
		t.Fatal(err)
	}
	if exit, err := vm.Wait(within(t, 20*time.Second)); err != nil || !exit.Clean() {
		t.Fatalf("exit %+v, err %v", exit, err)
	}
	if !strings.Contains(console.String(), "echo: typed in go") {
		t.Errorf("console:\n%s", console.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || events[0] != EventStarted || events[1] != EventExited {
		t.Errorf("events %v", events)
	}
}

func TestAVsockConnectorRoutesGuestConnections(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := net.FileConn(osFile(fds[0], "mine"))
	theirs, _ := net.FileConn(osFile(fds[1], "theirs"))
	defer mine.Close()
	defer theirs.Close()
	var mu sync.Mutex
	var asked []uint32
	var console syncBuffer
	vm := newVM(t, Config{Kernel: testGuest(t), Memory: 32 << 20, Cmdline: "kvmc.test=vsock",
		Console: &console, Vsock: &Vsock{CID: 3, UDSPath: filepath.Join(t.TempDir(), "v.sock"),
			Connect: func(port uint32) (syscall.Conn, error) {
				mu.Lock()
				asked = append(asked, port)
				mu.Unlock()
				if port != 5000 {
					return nil, errors.New("refused")
				}
				return mine.(syscall.Conn), nil
			}}})
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	theirs.SetDeadline(time.Now().Add(20 * time.Second))
	n, err := theirs.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	theirs.Write([]byte(strings.ToUpper(string(buf[:n]))))
	vm.Wait(within(t, 30*time.Second))
	if !strings.Contains(console.String(), "refused ok, guest->host reply 'HELLO VSOCK'") {
		t.Errorf("console:\n%s", console.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) < 2 || asked[0] != 5001 || asked[1] != 5000 {
		t.Errorf("asked %v", asked)
	}
}

func TestExitReasonsAreTheLibrarysNames(t *testing.T) {
	if ExitTripleFault.String() != "triple_fault" || ExitPoweroff.String() != "poweroff" {
		t.Errorf("%v %v", ExitTripleFault, ExitPoweroff)
	}
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }

func osFile(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }
