package kvmc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	kvmc "github.com/kvmc/kvmc/bindings/go"
)

// The kernel the examples boot: kvmc's test guest (scripts/dev sets the
// variable; without it the examples print an error and fail).
var kernel = os.Getenv("KVMC_TEST_GUEST_ELF")

// Boot a guest and wait for it: the test guest powers off once it has
// reported what it found.
func ExampleNewVM() {
	vm, err := kvmc.NewVM(kvmc.Config{Kernel: kernel, Memory: 64 << 20, CPUs: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer vm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exit, err := vm.Run(ctx)
	fmt.Println(exit.Reason, exit.Code, exit.Clean(), err)
	// Output: poweroff 0 true <nil>
}

// A device written in Go: the test guest writes a word to port 0x600 and
// reads one back.
func ExampleVM_AddPIODevice() {
	var console strings.Builder
	var mu sync.Mutex
	vm, err := kvmc.NewVM(kvmc.Config{Kernel: kernel, Memory: 64 << 20,
		Cmdline: "kvmc.test=devices",
		Console: writer(func(p []byte) { mu.Lock(); console.Write(p); mu.Unlock() })})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer vm.Close()
	vm.AddPIODevice(0x600, 4, kvmc.DeviceFuncs{
		ReadFn:  func(offset uint64, size int) uint64 { return 0xc0ffee },
		WriteFn: func(offset uint64, size int, value uint64) { fmt.Printf("guest wrote %#x\n", value) },
	})
	vm.Run(context.Background())
	mu.Lock()
	defer mu.Unlock()
	for _, line := range strings.Split(console.String(), "\n") {
		if strings.HasPrefix(line, "pio:") {
			fmt.Println(line)
		}
	}
	// Output:
	// guest wrote 0x12345678
	// pio: wrote 0x12345678 read 0x00c0ffee
}

// A device raises an interrupt: the guest routes GSI 10 to a vector and
// writes the GSI to the device, which pulses the line.
func ExampleVM_SetIRQLine() {
	var console strings.Builder
	var mu sync.Mutex
	vm, err := kvmc.NewVM(kvmc.Config{Kernel: kernel, Memory: 64 << 20, Cmdline: "kvmc.test=irq",
		Console: writer(func(p []byte) { mu.Lock(); console.Write(p); mu.Unlock() })})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer vm.Close()
	vm.AddPIODevice(0x600, 4, kvmc.DeviceFuncs{WriteFn: func(_ uint64, _ int, gsi uint64) {
		vm.SetIRQLine(uint32(gsi), true)
		vm.SetIRQLine(uint32(gsi), false)
	}})
	vm.Run(context.Background())
	mu.Lock()
	defer mu.Unlock()
	fmt.Println(strings.Contains(console.String(), "irq: gsi 10 delivered vector 0x50"))
	// Output: true
}

// A PCI device written in Go: the guest's PCI code finds it, sizes and
// maps its BARs, and asks it (a write to BAR 0, offset 4) to raise MSI-X
// vectors, which the device does from its Write callback.
func ExampleVM_AddPCIDevice() {
	var console strings.Builder
	var mu sync.Mutex
	vm, err := kvmc.NewVM(kvmc.Config{Kernel: kernel, Memory: 64 << 20, Cmdline: "kvmc.test=pci",
		Console: writer(func(p []byte) { mu.Lock(); console.Write(p); mu.Unlock() })})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer vm.Close()
	var fn *kvmc.PCIFunction
	var stored uint64
	fn, err = vm.AddPCIDevice(kvmc.PCIDevice{
		VendorID: 0x1234, DeviceID: 0xbeef, Class: 0xff0000, MSIXVectors: 2,
		BARs: [6]kvmc.PCIBar{{Size: 0x1000, Kind: kvmc.PCIBarMem32}, {Size: 0x10, Kind: kvmc.PCIBarIO},
			{Size: 0x10000, Kind: kvmc.PCIBarMem64}},
		Read: func(bar int, offset uint64, size int) uint64 {
			switch {
			case bar == 0 && offset == 0:
				return stored
			case bar == 0:
				return 0xc0de0000 + offset
			case bar == 1:
				return 0x40 + offset
			}
			return 0
		},
		Write: func(bar int, offset uint64, size int, value uint64) {
			if bar == 0 && offset == 0 {
				stored = value
			} else if bar == 0 && offset == 4 {
				fn.Notify(uint(value))
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("slot", fn.Slot)
	vm.Run(context.Background())
	mu.Lock()
	defer mu.Unlock()
	for _, line := range strings.Split(console.String(), "\n") {
		if strings.HasPrefix(line, "pci: msix") || strings.HasPrefix(line, "pci: bar sizes") {
			fmt.Println(line)
		}
	}
	// Output:
	// slot 1
	// pci: bar sizes 4096 16 65536 0 4096 0
	// pci: msix vectors 2
	// pci: msix vector 0 delivered: yes
}

// Errors say what kind of failure they are through errors.Is.
func ExampleError() {
	_, err := kvmc.NewVM(kvmc.Config{Kernel: kernel, CPUs: 65})
	fmt.Println(errors.Is(err, kvmc.ErrInvalid), errors.Is(err, kvmc.ErrState))
	fmt.Println(err)
	// Output:
	// true false
	// kvmc: cpus 65: must be between 1 and 64
}

type writer func([]byte)

func (w writer) Write(p []byte) (int, error) { w(p); return len(p), nil }

// Save a running guest and bring it back in a new VM: the test guest
// counts lines, and the restored one counts on from where it was saved.
func ExampleRestoreVM() {
	dir, _ := os.MkdirTemp("", "kvmc-example-")
	defer os.RemoveAll(dir)
	var out strings.Builder
	var mu sync.Mutex
	console := writer(func(p []byte) { mu.Lock(); out.Write(p); mu.Unlock() })
	seen := func(text string) bool { mu.Lock(); defer mu.Unlock(); return strings.Contains(out.String(), text) }
	vm, err := kvmc.NewVM(kvmc.Config{Kernel: kernel, Memory: 32 << 20,
		Cmdline: "kvmc.test=flood", Console: console})
	if err != nil {
		fmt.Println(err)
		return
	}
	vm.Start()
	for !seen("flood line 100 ") {
		time.Sleep(time.Millisecond)
	}
	vm.Pause()
	fmt.Println("snapshot:", vm.Snapshot(dir))
	vm.Close()

	mu.Lock()
	out.Reset()
	mu.Unlock()
	vm, err = kvmc.RestoreVM(dir, kvmc.Config{Memory: 32 << 20, Console: console})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer vm.Close()
	vm.Start()
	for !seen("flood line 200 ") {
		time.Sleep(time.Millisecond)
	}
	vm.Stop()
	mu.Lock()
	restarted := strings.Contains(out.String(), "flood line 0 ")
	mu.Unlock()
	fmt.Println("started over:", restarted)
	// Output:
	// snapshot: <nil>
	// started over: false
}
