// exitbench boots the kvmc test guest in its exit-loop mode with port and
// MMIO devices written in Go, for bench/run.py's exit-cost row:
//
//	exitbench GUEST.elf N
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"

	kvmc "github.com/kvmc/kvmc/bindings/go"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: exitbench GUEST.elf N")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	vm, err := kvmc.NewVM(kvmc.Config{Kernel: os.Args[1], Memory: 64 << 20,
		Cmdline: fmt.Sprintf("kvmc.test=exits:%d", n)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer vm.Close()
	var sum atomic.Uint64
	dev := kvmc.DeviceFuncs{
		ReadFn:  func(uint64, int) uint64 { return 0 },
		WriteFn: func(_ uint64, _ int, v uint64) { sum.Add(v) },
	}
	if err := vm.AddPIODevice(0x600, 4, dev); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := vm.AddMMIODevice(0xd0000000, 0x1000, dev); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exit, err := vm.Run(context.Background())
	if err != nil || !exit.Clean() {
		fmt.Fprintln(os.Stderr, exit.Message, err)
		os.Exit(1)
	}
}
