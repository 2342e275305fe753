// Package kvmc creates, runs and controls KVM guests through libkvmc.
//
// Device and console callbacks run on kvmc's vCPU threads (cgo calls back
// into Go on them); they must be safe for concurrent use when a guest has
// several vCPUs. Build with CGO_CFLAGS/CGO_LDFLAGS pointing at an installed
// kvmc (pkg-config kvmc) or at a build tree.
package kvmc

/*
#cgo LDFLAGS: -lkvmc
#include <stdint.h>
#include <stdlib.h>
#include <kvmc/kvmc.h>

extern uint64_t kvmcGoDeviceRead(void *opaque, uint64_t offset, unsigned size);
extern void kvmcGoDeviceWrite(void *opaque, uint64_t offset, unsigned size, uint64_t value);
extern void kvmcGoConsole(void *opaque, uint8_t *data, size_t len);

static const kvmc_device_ops kvmc_go_device_ops = {kvmcGoDeviceRead, kvmcGoDeviceWrite};

// Handles travel through C as integers, never as Go pointers.
static int kvmc_go_add_mmio(kvmc_vm *vm, uint64_t base, uint64_t size, uintptr_t h) {
	return kvmc_vm_add_mmio_device(vm, base, size, &kvmc_go_device_ops, (void *)h);
}
static int kvmc_go_add_pio(kvmc_vm *vm, uint16_t base, uint16_t size, uintptr_t h) {
	return kvmc_vm_add_pio_device(vm, base, size, &kvmc_go_device_ops, (void *)h);
}
static int kvmc_go_set_console(kvmc_config *cfg, uintptr_t h) {
	return kvmc_config_set_console_callback(cfg, (kvmc_console_fn)kvmcGoConsole, (void *)h);
}
static int kvmc_go_set_virtio_console(kvmc_config *cfg, uintptr_t h) {
	return kvmc_config_set_virtio_console_callback(cfg, (kvmc_console_fn)kvmcGoConsole, (void *)h);
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// Error is a failed libkvmc call: Code is the kvmc_error, Msg kvmc's message.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return "kvmc: " + e.Msg }

// ErrClosed is returned by calls on a closed VM.
var ErrClosed = errors.New("kvmc: the VM is closed")

// call runs f and, on failure, reads kvmc's thread-local message on the same
// OS thread.
func call(f func() C.int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := f(); rc != 0 {
		return &Error{Code: int(rc), Msg: C.GoString(C.kvmc_last_error())}
	}
	return nil
}

// ExitReason says how a guest ended.
type ExitReason int

const (
	ExitNone ExitReason = iota
	ExitPoweroff
	ExitReset
	ExitStopped
	ExitTripleFault
	ExitInternalError
	ExitFailEntry
	ExitVMMError
	ExitGuestPanic
)

var reasonNames = [...]string{"none", "poweroff", "reset", "stopped", "triple fault",
	"internal error", "entry failure", "VMM error", "guest panic"}

func (r ExitReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("ExitReason(%d)", int(r))
}

// ExitInfo is how and where a guest ended.
type ExitInfo struct {
	Reason  ExitReason
	Code    int
	VCPU    int
	RIP     uint64
	Message string
}

// Clean reports a power-off with status 0, or a reset.
func (e ExitInfo) Clean() bool {
	return (e.Reason == ExitPoweroff && e.Code == 0) || e.Reason == ExitReset
}

// State of a VM.
type State int

const (
	StateCreated State = iota
	StateRunning
	StatePaused
	StateExited
)

// Disk is a raw image (or block device) attached as virtio-blk.
type Disk struct {
	Path     string
	ReadOnly bool
	Serial   string
}

// Config describes a VM. Memory is in bytes (default 256 MiB), CPUs defaults to 1.
type Config struct {
	Kernel  string
	Initrd  string
	Cmdline string
	Memory  uint64
	CPUs    uint
	Disks   []Disk
	RNG     bool
	// PIT adds an i8254 PIT; off by default (Linux does not need one, and
	// a PIT makes VM teardown about 18 ms slower).
	PIT bool
	// Console receives the guest's COM1 output (from vCPU threads).
	Console io.Writer
	// Nets are virtio-net devices: "user", "user,hostfwd=tcp::2222-:22",
	// "tap=tap0", each optionally with ",mac=52:54:00:12:34:56". At most 4.
	Nets []string
	// Vsock, when set, adds virtio-vsock with Firecracker's Unix-socket
	// convention (see kvmc_config_set_vsock).
	Vsock *Vsock
	// VirtioConsoleSocket serves the guest's hvc0 on a Unix socket, one
	// client at a time. VirtioConsole instead receives hvc0's output (from
	// the VM's I/O thread); input goes through VM.VirtioConsoleWrite.
	VirtioConsoleSocket string
	VirtioConsole       io.Writer
}

// Vsock: the guest's CID (3 or more) and the Unix socket path host programs
// connect to; guest connections to host port P go to "<UDSPath>_<P>".
type Vsock struct {
	CID     uint32
	UDSPath string
}

// Device is a port I/O or MMIO device implemented in Go.
type Device interface {
	Read(offset uint64, size int) uint64
	Write(offset uint64, size int, value uint64)
}

// DeviceFuncs adapts two functions to Device; either may be nil.
type DeviceFuncs struct {
	ReadFn  func(offset uint64, size int) uint64
	WriteFn func(offset uint64, size int, value uint64)
}

func (d DeviceFuncs) Read(offset uint64, size int) uint64 {
	if d.ReadFn == nil {
		return ^uint64(0)
	}
	return d.ReadFn(offset, size)
}

func (d DeviceFuncs) Write(offset uint64, size int, value uint64) {
	if d.WriteFn != nil {
		d.WriteFn(offset, size, value)
	}
}

// VM is one guest. Its methods are safe for concurrent use.
type VM struct {
	mu      sync.Mutex
	vm      *C.kvmc_vm
	handles []cgo.Handle
	wait    sync.Once
	exit    ExitInfo
	exitErr error
	done    chan struct{}
	started bool
}

type consoleSink struct {
	mu sync.Mutex
	w  io.Writer
}

func configure(cfg *C.kvmc_config, c Config, vm *VM) error {
	cstr := func(s string) *C.char { return C.CString(s) }
	steps := []func() C.int{
		func() C.int {
			p := cstr(c.Kernel)
			defer C.free(unsafe.Pointer(p))
			return C.kvmc_config_set_kernel(cfg, p)
		},
	}
	if c.Memory != 0 {
		steps = append(steps, func() C.int { return C.kvmc_config_set_memory(cfg, C.uint64_t(c.Memory)) })
	}
	if c.CPUs != 0 {
		steps = append(steps, func() C.int { return C.kvmc_config_set_cpus(cfg, C.unsigned(c.CPUs)) })
	}
	if c.Cmdline != "" {
		steps = append(steps, func() C.int {
			p := cstr(c.Cmdline)
			defer C.free(unsafe.Pointer(p))
			return C.kvmc_config_set_cmdline(cfg, p)
		})
	}
	if c.Initrd != "" {
		steps = append(steps, func() C.int {
			p := cstr(c.Initrd)
			defer C.free(unsafe.Pointer(p))
			return C.kvmc_config_set_initrd(cfg, p)
		})
	}
	for _, d := range c.Disks {
		d := d
		steps = append(steps, func() C.int {
			p := cstr(d.Path)
			defer C.free(unsafe.Pointer(p))
			var serial *C.char
			if d.Serial != "" {
				serial = cstr(d.Serial)
				defer C.free(unsafe.Pointer(serial))
			}
			var flags C.unsigned
			if d.ReadOnly {
				flags = C.KVMC_DISK_READ_ONLY
			}
			return C.kvmc_config_add_disk(cfg, p, flags, serial)
		})
	}
	if c.RNG {
		steps = append(steps, func() C.int { return C.kvmc_config_set_rng(cfg, 1) })
	}
	if c.PIT {
		steps = append(steps, func() C.int { return C.kvmc_config_set_pit(cfg, 1) })
	}
	if c.Console != nil {
		h := cgo.NewHandle(&consoleSink{w: c.Console})
		vm.handles = append(vm.handles, h)
		steps = append(steps, func() C.int { return C.kvmc_go_set_console(cfg, C.uintptr_t(h)) })
	}
	steps = append(steps, streamSteps(cfg, c, vm)...)
	for _, step := range steps {
		if err := call(step); err != nil {
			return err
		}
	}
	return nil
}

// streamSteps configures the 0.2 devices: nets, vsock, virtio-console.
func streamSteps(cfg *C.kvmc_config, c Config, vm *VM) []func() C.int {
	withString := func(s string, f func(*C.char) C.int) func() C.int {
		return func() C.int {
			p := C.CString(s)
			defer C.free(unsafe.Pointer(p))
			return f(p)
		}
	}
	var steps []func() C.int
	for _, spec := range c.Nets {
		steps = append(steps, withString(spec, func(p *C.char) C.int { return C.kvmc_config_add_net(cfg, p) }))
	}
	if c.Vsock != nil {
		cid := C.uint32_t(c.Vsock.CID)
		steps = append(steps, withString(c.Vsock.UDSPath, func(p *C.char) C.int { return C.kvmc_config_set_vsock(cfg, cid, p) }))
	}
	if c.VirtioConsoleSocket != "" {
		steps = append(steps, withString(c.VirtioConsoleSocket, func(p *C.char) C.int {
			return C.kvmc_config_set_virtio_console_socket(cfg, p)
		}))
	}
	if c.VirtioConsole != nil {
		h := cgo.NewHandle(&consoleSink{w: c.VirtioConsole})
		vm.handles = append(vm.handles, h)
		steps = append(steps, func() C.int { return C.kvmc_go_set_virtio_console(cfg, C.uintptr_t(h)) })
	}
	return steps
}

// VirtioConsoleWrite queues input for the guest's virtio console (callback
// mode) and returns how many bytes fit; up to 64 KiB wait for the guest.
func (vm *VM) VirtioConsoleWrite(data []byte) (int, error) {
	if len(data) == 0 {
		return 0, nil
	}
	var written C.size_t
	p := C.CBytes(data)
	defer C.free(p)
	err := vm.do(func(h *C.kvmc_vm) C.int {
		return C.kvmc_vm_virtio_console_write(h, p, C.size_t(len(data)), &written)
	})
	return int(written), err
}

// NewVM creates a VM: KVM objects, memory, devices, and the loaded kernel.
func NewVM(c Config) (*VM, error) {
	vm := &VM{done: make(chan struct{})}
	var cfg *C.kvmc_config
	if err := call(func() C.int { return C.kvmc_config_new(&cfg) }); err != nil {
		return nil, err
	}
	defer C.kvmc_config_free(cfg)
	if err := configure(cfg, c, vm); err != nil {
		vm.freeHandles()
		return nil, err
	}
	if err := call(func() C.int { return C.kvmc_vm_create(cfg, &vm.vm) }); err != nil {
		vm.freeHandles()
		return nil, err
	}
	runtime.SetFinalizer(vm, (*VM).Close)
	return vm, nil
}

func (vm *VM) handle() (*C.kvmc_vm, error) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.vm == nil {
		return nil, ErrClosed
	}
	return vm.vm, nil
}

func (vm *VM) do(f func(*C.kvmc_vm) C.int) error {
	h, err := vm.handle()
	if err != nil {
		return err
	}
	return call(func() C.int { return f(h) })
}

// AddMMIODevice puts dev at guest-physical [base, base+size). Before Start.
func (vm *VM) AddMMIODevice(base, size uint64, dev Device) error {
	h := cgo.NewHandle(dev)
	err := vm.do(func(v *C.kvmc_vm) C.int {
		return C.kvmc_go_add_mmio(v, C.uint64_t(base), C.uint64_t(size), C.uintptr_t(h))
	})
	vm.keepOrDelete(h, err)
	return err
}

// AddPIODevice puts dev on I/O ports [port, port+size). Before Start.
func (vm *VM) AddPIODevice(port, size uint16, dev Device) error {
	h := cgo.NewHandle(dev)
	err := vm.do(func(v *C.kvmc_vm) C.int {
		return C.kvmc_go_add_pio(v, C.uint16_t(port), C.uint16_t(size), C.uintptr_t(h))
	})
	vm.keepOrDelete(h, err)
	return err
}

func (vm *VM) keepOrDelete(h cgo.Handle, err error) {
	if err != nil {
		h.Delete()
		return
	}
	vm.mu.Lock()
	vm.handles = append(vm.handles, h)
	vm.mu.Unlock()
}

// Start runs the vCPUs. The guest runs until it ends, Stop, or Close.
func (vm *VM) Start() error {
	if err := vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_start(v) }); err != nil {
		return err
	}
	vm.mu.Lock()
	vm.started = true
	vm.mu.Unlock()
	go vm.waitForExit()
	return nil
}

func (vm *VM) waitForExit() {
	vm.wait.Do(func() {
		var info C.kvmc_exit_info
		h, err := vm.handle()
		if err == nil {
			err = call(func() C.int { return C.kvmc_vm_wait(h, -1, &info) })
		}
		vm.exitErr = err
		vm.exit = ExitInfo{Reason: ExitReason(info.reason), Code: int(info.code),
			VCPU: int(info.vcpu), RIP: uint64(info.rip), Message: C.GoString(&info.message[0])}
		close(vm.done)
	})
}

// Wait blocks until the guest ends or ctx is done; on ctx's end it stops
// the VM, waits for it, and returns ctx.Err() with the exit info.
func (vm *VM) Wait(ctx context.Context) (ExitInfo, error) {
	select {
	case <-vm.done:
		return vm.exit, vm.exitErr
	case <-ctx.Done():
		vm.Stop()
		<-vm.done
		return vm.exit, ctx.Err()
	}
}

// Run is Start then Wait.
func (vm *VM) Run(ctx context.Context) (ExitInfo, error) {
	if err := vm.Start(); err != nil {
		return ExitInfo{}, err
	}
	return vm.Wait(ctx)
}

func (vm *VM) Stop() error   { return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_stop(v) }) }
func (vm *VM) Pause() error  { return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_pause(v) }) }
func (vm *VM) Resume() error { return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_resume(v) }) }

// State is the VM's lifecycle state.
func (vm *VM) State() State {
	h, err := vm.handle()
	if err != nil {
		return StateExited
	}
	return State(C.kvmc_vm_get_state(h))
}

// ReadMemory copies guest-physical memory; the range must be guest RAM.
func (vm *VM) ReadMemory(gpa uint64, n int) ([]byte, error) {
	buf := make([]byte, n)
	if n == 0 {
		return buf, nil
	}
	err := vm.do(func(v *C.kvmc_vm) C.int {
		return C.kvmc_vm_read_memory(v, C.uint64_t(gpa), unsafe.Pointer(&buf[0]), C.size_t(n))
	})
	return buf, err
}

// WriteMemory copies data into guest-physical memory.
func (vm *VM) WriteMemory(gpa uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	return vm.do(func(v *C.kvmc_vm) C.int {
		return C.kvmc_vm_write_memory(v, C.uint64_t(gpa), unsafe.Pointer(&data[0]), C.size_t(len(data)))
	})
}

// Regs are a vCPU's general-purpose registers.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// GetRegs reads vCPU vcpu's registers: only while paused, not started, or exited.
func (vm *VM) GetRegs(vcpu uint) (Regs, error) {
	var r C.kvmc_regs
	err := vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_get_regs(v, C.unsigned(vcpu), &r) })
	return Regs{uint64(r.rax), uint64(r.rbx), uint64(r.rcx), uint64(r.rdx), uint64(r.rsi),
		uint64(r.rdi), uint64(r.rsp), uint64(r.rbp), uint64(r.r8), uint64(r.r9), uint64(r.r10),
		uint64(r.r11), uint64(r.r12), uint64(r.r13), uint64(r.r14), uint64(r.r15),
		uint64(r.rip), uint64(r.rflags)}, err
}

// SetRegs writes vCPU vcpu's registers; same states as GetRegs.
func (vm *VM) SetRegs(vcpu uint, g Regs) error {
	r := C.kvmc_regs{C.uint64_t(g.RAX), C.uint64_t(g.RBX), C.uint64_t(g.RCX), C.uint64_t(g.RDX),
		C.uint64_t(g.RSI), C.uint64_t(g.RDI), C.uint64_t(g.RSP), C.uint64_t(g.RBP),
		C.uint64_t(g.R8), C.uint64_t(g.R9), C.uint64_t(g.R10), C.uint64_t(g.R11),
		C.uint64_t(g.R12), C.uint64_t(g.R13), C.uint64_t(g.R14), C.uint64_t(g.R15),
		C.uint64_t(g.RIP), C.uint64_t(g.RFLAGS)}
	return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_set_regs(v, C.unsigned(vcpu), &r) })
}

// Close stops the guest if it runs and frees the VM. Idempotent.
func (vm *VM) Close() error {
	vm.mu.Lock()
	started := vm.started
	vm.mu.Unlock()
	if started { // the waiting goroutine must be out of kvmc_vm_wait first
		vm.Stop()
		<-vm.done
	}
	vm.mu.Lock()
	v := vm.vm
	vm.vm = nil
	vm.mu.Unlock()
	if v != nil {
		C.kvmc_vm_destroy(v) // joins the vCPU threads: no callback runs after this
	}
	vm.freeHandles()
	return nil
}

func (vm *VM) freeHandles() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for _, h := range vm.handles {
		h.Delete()
	}
	vm.handles = nil
}

// Version of the loaded libkvmc.
func Version() string { return C.GoString(C.kvmc_version_string()) }

//export kvmcGoDeviceRead
func kvmcGoDeviceRead(opaque unsafe.Pointer, offset C.uint64_t, size C.unsigned) C.uint64_t {
	dev := cgo.Handle(uintptr(opaque)).Value().(Device)
	return C.uint64_t(dev.Read(uint64(offset), int(size)))
}

//export kvmcGoDeviceWrite
func kvmcGoDeviceWrite(opaque unsafe.Pointer, offset C.uint64_t, size C.unsigned, value C.uint64_t) {
	dev := cgo.Handle(uintptr(opaque)).Value().(Device)
	dev.Write(uint64(offset), int(size), uint64(value))
}

//export kvmcGoConsole
func kvmcGoConsole(opaque unsafe.Pointer, data *C.uint8_t, n C.size_t) {
	sink := cgo.Handle(uintptr(opaque)).Value().(*consoleSink)
	b := C.GoBytes(unsafe.Pointer(data), C.int(n))
	sink.mu.Lock()
	sink.w.Write(b)
	sink.mu.Unlock()
}
