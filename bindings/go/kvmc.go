// Package kvmc creates, runs and controls KVM guests through libkvmc.
//
// A VM is created from a Config, started, and waited for; every method is
// safe for concurrent use and may be called in any state (those that do not
// apply return an error that errors.Is ErrState, and any call on a closed VM
// returns ErrClosed).
//
// Device, console, vsock-connector and event callbacks run on kvmc's own
// threads (cgo calls back into Go on them); they must be safe for
// concurrent use when a guest has several vCPUs. A callback that panics
// stops the VM, and Wait returns a *CallbackError. A callback must not call
// Close, Wait or Pause on its own VM (ErrInCallback).
//
// cgo finds libkvmc with pkg-config: nothing to set after installing it
// to /usr or /usr/local (cmake --install, or the Debian packages); for
// another prefix set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig, and for a build
// tree PKG_CONFIG_PATH=BUILD/core (its kvmc-uninstalled.pc). Either way
// the program finds libkvmc.so.1 at run time without LD_LIBRARY_PATH.
package kvmc

/*
#cgo pkg-config: kvmc
#include <stdint.h>
#include <stdlib.h>
#include <kvmc/kvmc.h>

extern uint64_t kvmcGoDeviceRead(void *opaque, uint64_t offset, unsigned size);
extern void kvmcGoDeviceWrite(void *opaque, uint64_t offset, unsigned size, uint64_t value);
extern void kvmcGoConsole(void *opaque, uint8_t *data, size_t len);
extern int kvmcGoVsockConnect(void *opaque, uint32_t port);
extern void kvmcGoEvent(void *opaque, kvmc_vm *vm, int event);
extern uint64_t kvmcGoPCIRead(void *opaque, unsigned bar, uint64_t offset, unsigned size);
extern void kvmcGoPCIWrite(void *opaque, unsigned bar, uint64_t offset, unsigned size,
                           uint64_t value);

static const kvmc_device_ops kvmc_go_device_ops = {KVMC_DEVICE_OPS_VERSION, kvmcGoDeviceRead,
                                                   kvmcGoDeviceWrite};

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
static int kvmc_go_set_vsock_connector(kvmc_config *cfg, uintptr_t h) {
	return kvmc_config_set_vsock_connector(cfg, kvmcGoVsockConnect, (void *)h);
}
static int kvmc_go_add_pci(kvmc_vm *vm, kvmc_pci_device *dev, uintptr_t h, unsigned *slot) {
	dev->read = kvmcGoPCIRead;
	dev->write = kvmcGoPCIWrite;
	return kvmc_vm_add_pci_device(vm, dev, (void *)h, slot);
}
static int kvmc_go_set_event_callback(kvmc_vm *vm, uintptr_t h) {
	return kvmc_vm_set_event_callback(vm, (kvmc_event_fn)kvmcGoEvent, (void *)h);
}
*/
import "C"

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/cgo"
	"runtime/debug"
	"sync"
	"syscall"
	"unsafe"
)

// call runs f and, on failure, reads kvmc's thread-local message on the same
// OS thread.
func call(f func() C.int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := f(); rc != 0 {
		return &Error{Code: Code(rc), Msg: C.GoString(C.kvmc_last_error())}
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

// String is libkvmc's name for the reason: "poweroff", "triple_fault"...
func (r ExitReason) String() string {
	return C.GoString(C.kvmc_exit_reason_name(C.kvmc_exit_reason(r)))
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

var stateNames = [...]string{"created", "running", "paused", "exited"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Event is a lifecycle event, for Config.OnEvent.
type Event int

const (
	EventStarted Event = iota + 1
	EventPaused
	EventResumed
	EventExited
)

// Disk is a raw image (or block device) attached as virtio-blk. The image is
// locked while the VM exists (exclusively, or shared when ReadOnly) unless
// NoLock is set.
type Disk struct {
	Path     string
	ReadOnly bool
	NoLock   bool
	Serial   string
}

// Config describes a VM. Memory is in bytes (default 256 MiB), CPUs defaults
// to 1.
type Config struct {
	// Kernel is a bzImage or ELF vmlinux path; or KernelImage the image.
	Kernel      string
	KernelImage []byte
	Initrd      string
	Cmdline     string
	// Boot is the entry protocol: "auto" (default), "linux" or "pvh".
	Boot   string
	Memory uint64
	// MemoryBacking is "anon" (default), "memfd" or "hugetlb".
	MemoryBacking string
	CPUs          uint
	Disks         []Disk
	RNG           bool
	// PIT adds an i8254 PIT; off by default (Linux does not need one, and
	// a PIT makes VM teardown about 18 ms slower).
	PIT bool
	// Transport is how virtio devices reach the guest: "mmio" (default) or
	// "pci" (virtio-pci with MSI-X on kvmc's PCIe root complex).
	Transport string
	// VFIO passes host PCI devices through, by address ("0000:00:03.0"),
	// each bound to vfio-pci first (see kvmc_config_add_vfio). The host is
	// checked by New: an error matching ErrInvalid names a device that is
	// not bound to vfio-pci, ErrBusy one that another VM has.
	VFIO []string
	// VCPUThreadName names the vCPU threads: this, then the vCPU's index
	// ("kvmc-vcpu" when empty; at most 13 printable ASCII bytes), e.g.
	// "fc_vcpu " for Firecracker's convention.
	VCPUThreadName string
	// Console receives the guest's COM1 output (from vCPU threads); input
	// goes through VM.ConsoleWrite.
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
	// OnEvent gets each lifecycle event, on the thread that caused it.
	OnEvent func(Event)
}

// Vsock: the guest's CID (3 or more) and the Unix socket path host programs
// connect to; guest connections to host port P go to "<UDSPath>_<P>", or,
// with Connect, wherever Connect says: it returns a connected socket (kvmc
// takes a duplicate of its descriptor; the caller keeps and closes its own),
// or an error to refuse. Connect runs on kvmc's I/O thread: keep it quick.
type Vsock struct {
	CID     uint32
	UDSPath string
	Connect func(port uint32) (syscall.Conn, error)
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
	mu       sync.Mutex
	life     sync.RWMutex // held for reading around each C call, for writing to destroy
	vm       *C.kvmc_vm
	handles  []cgo.Handle
	wait     sync.Once
	exit     ExitInfo
	exitErr  error
	done     chan struct{}
	started  bool
	panicked *CallbackError // the first callback panic
	input    *os.File       // the write end of the guest's COM1 input
	inputR   *os.File
	// OS threads running one of this VM's callbacks right now (gettid).
	callbackThreads sync.Map
}

// enter and leave bracket every callback: a callback's thread is known, so
// Close, Wait and Pause can refuse to wait for it.
func (vm *VM) enter() int {
	tid := syscall.Gettid()
	vm.callbackThreads.Store(tid, struct{}{})
	return tid
}

func (vm *VM) leave(tid int) { vm.callbackThreads.Delete(tid) }

func (vm *VM) onCallbackThread() bool {
	_, in := vm.callbackThreads.Load(syscall.Gettid())
	return in
}

// recovered stops the VM after a callback panic; deferred by every callback
// as `defer func() { vm.recovered(recover()) }()`.
func (vm *VM) recovered(r any) {
	if r == nil {
		return
	}
	vm.mu.Lock()
	if vm.panicked == nil {
		vm.panicked = &CallbackError{Value: r, Stack: debug.Stack()}
	}
	vm.mu.Unlock()
	vm.Stop()
}

type consoleSink struct {
	vm *VM
	mu sync.Mutex
	w  io.Writer
}

type device struct {
	vm  *VM
	dev Device
}

func cstring(s string, f func(*C.char) C.int) func() C.int {
	return func() C.int {
		p := C.CString(s)
		defer C.free(unsafe.Pointer(p))
		return f(p)
	}
}

func (vm *VM) newHandle(v any) cgo.Handle {
	h := cgo.NewHandle(v)
	vm.mu.Lock()
	vm.handles = append(vm.handles, h)
	vm.mu.Unlock()
	return h
}

func configure(cfg *C.kvmc_config, c Config, vm *VM) error {
	if c.CPUs > 0xffffffff {
		return invalid("cpus %d: must be between 1 and %d", c.CPUs, C.KVMC_MAX_VCPUS)
	}
	backings := map[string]C.unsigned{"": 0, "anon": 0, "memfd": C.KVMC_MEM_MEMFD,
		"hugetlb": C.KVMC_MEM_MEMFD | C.KVMC_MEM_HUGEPAGES}
	flags, ok := backings[c.MemoryBacking]
	if !ok {
		return invalid("memory backing %q: use anon, memfd or hugetlb", c.MemoryBacking)
	}
	protocols := map[string]C.kvmc_boot_protocol{"": C.KVMC_BOOT_AUTO, "auto": C.KVMC_BOOT_AUTO,
		"linux": C.KVMC_BOOT_LINUX, "pvh": C.KVMC_BOOT_PVH}
	boot, ok := protocols[c.Boot]
	if !ok {
		return invalid("boot protocol %q: use auto, linux or pvh", c.Boot)
	}
	var steps []func() C.int
	switch {
	case c.Kernel != "" && c.KernelImage != nil:
		return invalid("Kernel and KernelImage: give one of them")
	case c.KernelImage != nil:
		steps = append(steps, func() C.int {
			if len(c.KernelImage) == 0 {
				return C.kvmc_config_set_kernel_image(cfg, nil, 0)
			}
			return C.kvmc_config_set_kernel_image(cfg, unsafe.Pointer(&c.KernelImage[0]),
				C.size_t(len(c.KernelImage)))
		})
	case c.Kernel != "":
		steps = append(steps, cstring(c.Kernel, func(p *C.char) C.int { return C.kvmc_config_set_kernel(cfg, p) }))
	}
	// Neither: an empty VM, for LoadSnapshot (Start refuses it otherwise).
	steps = append(steps, func() C.int { return C.kvmc_config_set_memory_flags(cfg, flags) },
		func() C.int { return C.kvmc_config_set_boot_protocol(cfg, boot) })
	if c.Memory != 0 {
		steps = append(steps, func() C.int { return C.kvmc_config_set_memory(cfg, C.uint64_t(c.Memory)) })
	}
	if c.CPUs != 0 {
		steps = append(steps, func() C.int { return C.kvmc_config_set_cpus(cfg, C.unsigned(c.CPUs)) })
	}
	if c.Cmdline != "" {
		steps = append(steps, cstring(c.Cmdline, func(p *C.char) C.int { return C.kvmc_config_set_cmdline(cfg, p) }))
	}
	if c.Initrd != "" {
		steps = append(steps, cstring(c.Initrd, func(p *C.char) C.int { return C.kvmc_config_set_initrd(cfg, p) }))
	}
	for _, d := range c.Disks {
		d := d
		steps = append(steps, func() C.int {
			p := C.CString(d.Path)
			defer C.free(unsafe.Pointer(p))
			var serial *C.char
			if d.Serial != "" {
				serial = C.CString(d.Serial)
				defer C.free(unsafe.Pointer(serial))
			}
			var flags C.unsigned
			if d.ReadOnly {
				flags |= C.KVMC_DISK_READ_ONLY
			}
			if d.NoLock {
				flags |= C.KVMC_DISK_NO_LOCK
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
	switch c.Transport {
	case "", "mmio":
	case "pci":
		steps = append(steps, func() C.int {
			return C.kvmc_config_set_virtio_transport(cfg, C.KVMC_VIRTIO_PCI)
		})
	default:
		return invalid("Transport %q: use \"mmio\" or \"pci\"", c.Transport)
	}
	if c.VCPUThreadName != "" {
		steps = append(steps, cstring(c.VCPUThreadName, func(p *C.char) C.int {
			return C.kvmc_config_set_vcpu_thread_name(cfg, p)
		}))
	}
	for _, address := range c.VFIO {
		address := address
		steps = append(steps, func() C.int {
			p := C.CString(address)
			defer C.free(unsafe.Pointer(p))
			return C.kvmc_config_add_vfio(cfg, p)
		})
	}
	if c.Console != nil {
		h := vm.newHandle(&consoleSink{vm: vm, w: c.Console})
		steps = append(steps, func() C.int { return C.kvmc_go_set_console(cfg, C.uintptr_t(h)) })
	}
	steps = append(steps, func() C.int {
		return C.kvmc_config_set_console_input_fd(cfg, C.int(vm.inputR.Fd()))
	})
	steps = append(steps, streamSteps(cfg, c, vm)...)
	for _, step := range steps {
		if err := call(step); err != nil {
			return err
		}
	}
	return nil
}

// streamSteps configures the stream devices: nets, vsock, virtio-console.
func streamSteps(cfg *C.kvmc_config, c Config, vm *VM) []func() C.int {
	var steps []func() C.int
	for _, spec := range c.Nets {
		steps = append(steps, cstring(spec, func(p *C.char) C.int { return C.kvmc_config_add_net(cfg, p) }))
	}
	if c.Vsock != nil {
		cid := C.uint32_t(c.Vsock.CID)
		steps = append(steps, cstring(c.Vsock.UDSPath, func(p *C.char) C.int { return C.kvmc_config_set_vsock(cfg, cid, p) }))
		if c.Vsock.Connect != nil {
			h := vm.newHandle(&connector{vm: vm, connect: c.Vsock.Connect})
			steps = append(steps, func() C.int { return C.kvmc_go_set_vsock_connector(cfg, C.uintptr_t(h)) })
		}
	}
	if c.VirtioConsoleSocket != "" {
		steps = append(steps, cstring(c.VirtioConsoleSocket, func(p *C.char) C.int {
			return C.kvmc_config_set_virtio_console_socket(cfg, p)
		}))
	}
	if c.VirtioConsole != nil {
		h := vm.newHandle(&consoleSink{vm: vm, w: c.VirtioConsole})
		steps = append(steps, func() C.int { return C.kvmc_go_set_virtio_console(cfg, C.uintptr_t(h)) })
	}
	return steps
}

// NewVM creates a VM: KVM objects, memory, devices, and the loaded kernel.
func NewVM(c Config) (*VM, error) {
	vm := &VM{done: make(chan struct{})}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	vm.inputR, vm.input = r, w
	var cfg *C.kvmc_config
	if err := call(func() C.int { return C.kvmc_config_new(&cfg) }); err != nil {
		vm.release()
		return nil, err
	}
	defer C.kvmc_config_free(cfg)
	if err := configure(cfg, c, vm); err != nil {
		vm.release()
		return nil, err
	}
	if err := call(func() C.int { return C.kvmc_vm_create(cfg, &vm.vm) }); err != nil {
		vm.release()
		return nil, err
	}
	if c.OnEvent != nil {
		h := vm.newHandle(&eventSink{vm: vm, fn: c.OnEvent})
		if err := vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_go_set_event_callback(v, C.uintptr_t(h)) }); err != nil {
			vm.Close()
			return nil, err
		}
	}
	runtime.SetFinalizer(vm, (*VM).Close)
	return vm, nil
}

// do runs f on the VM's C handle, which cannot be destroyed meanwhile: it
// holds life for reading, except in a callback, which runs while the VM
// lives by construction (destroy joins kvmc's threads) and must not wait
// for a Close that waits for it.
func (vm *VM) do(f func(*C.kvmc_vm) C.int) error {
	if !vm.onCallbackThread() {
		vm.life.RLock()
		defer vm.life.RUnlock()
	}
	vm.mu.Lock()
	h := vm.vm
	vm.mu.Unlock()
	if h == nil {
		return ErrClosed
	}
	return call(func() C.int { return f(h) })
}

// AddMMIODevice puts dev at guest-physical [base, base+size). Before Start.
func (vm *VM) AddMMIODevice(base, size uint64, dev Device) error {
	if dev == nil {
		return invalid("AddMMIODevice: the device is nil")
	}
	h := cgo.NewHandle(&device{vm: vm, dev: dev})
	err := vm.do(func(v *C.kvmc_vm) C.int {
		return C.kvmc_go_add_mmio(v, C.uint64_t(base), C.uint64_t(size), C.uintptr_t(h))
	})
	vm.keepOrDelete(h, err)
	return err
}

// AddPIODevice puts dev on I/O ports [port, port+size). Before Start.
func (vm *VM) AddPIODevice(port, size uint16, dev Device) error {
	if dev == nil {
		return invalid("AddPIODevice: the device is nil")
	}
	h := cgo.NewHandle(&device{vm: vm, dev: dev})
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

// PCIBarKind is what a BAR maps: 32- or 64-bit memory, or I/O ports.
type PCIBarKind int

const (
	PCIBarNone PCIBarKind = iota
	PCIBarMem32
	PCIBarMem64 // takes the next BAR slot too
	PCIBarIO
)

// PCIBar is one BAR: Size is a power of two (memory 16 bytes to 2 GiB, or
// 1 TiB for Mem64; I/O 4 to 256 bytes).
type PCIBar struct {
	Size         uint64
	Kind         PCIBarKind
	Prefetchable bool
}

// PCIDevice describes a PCI device whose BARs are served by Go: the guest's
// PCI core enumerates it, sizes and maps its BARs. With MSIXVectors > 0 it
// has MSI-X (its table in the first unused BAR slot). Read and Write get
// the BAR number; either may be nil. They run on vCPU threads.
type PCIDevice struct {
	VendorID, DeviceID             uint16
	SubsystemVendorID, SubsystemID uint16
	Class                          uint32 // base << 16 | sub << 8 | prog-if
	Revision                       uint8
	BARs                           [6]PCIBar
	MSIXVectors                    uint
	Read                           func(bar int, offset uint64, size int) uint64
	Write                          func(bar int, offset uint64, size int, value uint64)
}

// PCIFunction is a PCI device plugged into a VM.
type PCIFunction struct {
	vm *VM
	// Slot is its device number on bus 0.
	Slot uint
}

type pciDevice struct {
	vm  *VM
	dev PCIDevice
}

// AddPCIDevice plugs dev into the VM's PCI bus. Before Start.
func (vm *VM) AddPCIDevice(dev PCIDevice) (*PCIFunction, error) {
	if dev.MSIXVectors > 0xffffffff {
		return nil, invalid("AddPCIDevice: %d MSI-X vectors", dev.MSIXVectors)
	}
	info := C.kvmc_pci_device{
		version: C.KVMC_PCI_DEVICE_VERSION, vendor_id: C.uint16_t(dev.VendorID),
		device_id: C.uint16_t(dev.DeviceID), subsystem_vendor_id: C.uint16_t(dev.SubsystemVendorID),
		subsystem_id: C.uint16_t(dev.SubsystemID), class_code: C.uint32_t(dev.Class),
		revision: C.uint8_t(dev.Revision), msix_vectors: C.unsigned(dev.MSIXVectors),
	}
	for i, b := range dev.BARs {
		if b.Kind < PCIBarNone || b.Kind > PCIBarIO {
			return nil, invalid("AddPCIDevice: BAR %d has kind %d", i, b.Kind)
		}
		kind := C.unsigned(b.Kind)
		if b.Prefetchable {
			kind |= C.KVMC_PCI_BAR_PREFETCHABLE
		}
		info.bars[i] = C.kvmc_pci_bar{size: C.uint64_t(b.Size), kind: kind}
	}
	h := cgo.NewHandle(&pciDevice{vm: vm, dev: dev})
	var slot C.unsigned
	err := vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_go_add_pci(v, &info, C.uintptr_t(h), &slot) })
	vm.keepOrDelete(h, err)
	if err != nil {
		return nil, err
	}
	return &PCIFunction{vm: vm, Slot: uint(slot)}, nil
}

// Notify raises MSI-X vector `vector`, from any goroutine (a callback
// included): delivered, or held while the guest masks it; lost while the
// guest has MSI-X off.
func (f *PCIFunction) Notify(vector uint) error {
	if vector > 0xffffffff {
		return invalid("Notify: vector %d", vector)
	}
	return f.vm.do(func(v *C.kvmc_vm) C.int {
		return C.kvmc_vm_pci_msix_notify(v, C.unsigned(f.Slot), C.unsigned(vector))
	})
}

// SetIRQLine raises (true) or lowers (false) interrupt line gsi (0 to 23),
// from any goroutine, a device callback included.
func (vm *VM) SetIRQLine(gsi uint32, level bool) error {
	l := C.int(0)
	if level {
		l = 1
	}
	return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_set_irq_line(v, C.unsigned(gsi), l) })
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
		err := vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_wait(v, -1, &info) })
		vm.mu.Lock()
		if err == nil && vm.panicked != nil {
			err = vm.panicked
		}
		vm.exitErr = err
		vm.mu.Unlock()
		vm.exit = ExitInfo{Reason: ExitReason(info.reason), Code: int(info.code),
			VCPU: int(info.vcpu), RIP: uint64(info.rip), Message: C.GoString(&info.message[0])}
		close(vm.done)
	})
}

// Wait blocks until the guest ends or ctx is done; on ctx's end it stops
// the VM, waits for it, and returns ctx.Err() with the exit info. A VM never
// started returns ErrNotStarted (ErrClosed once closed) at once.
func (vm *VM) Wait(ctx context.Context) (ExitInfo, error) {
	if vm.onCallbackThread() {
		return ExitInfo{}, ErrInCallback
	}
	vm.mu.Lock()
	started, closed := vm.started, vm.vm == nil
	vm.mu.Unlock()
	if !started {
		if closed {
			return ExitInfo{}, ErrClosed
		}
		return ExitInfo{}, ErrNotStarted
	}
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

// Stop asks the VM to stop and returns at once; Wait for the end.
func (vm *VM) Stop() error { return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_stop(v) }) }

// Pause returns once no vCPU runs guest code.
func (vm *VM) Pause() error {
	if vm.onCallbackThread() {
		return ErrInCallback
	}
	return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_pause(v) })
}

func (vm *VM) Resume() error { return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_resume(v) }) }

// State is the VM's lifecycle state; StateExited once closed.
func (vm *VM) State() State {
	s := StateExited
	vm.do(func(v *C.kvmc_vm) C.int {
		s = State(C.kvmc_vm_get_state(v))
		return 0
	})
	return s
}

// CPUs and Memory are what the VM was created with (0 once closed).
func (vm *VM) CPUs() int {
	n := 0
	vm.do(func(v *C.kvmc_vm) C.int { n = int(C.kvmc_vm_cpu_count(v)); return 0 })
	return n
}

func (vm *VM) Memory() uint64 {
	var n uint64
	vm.do(func(v *C.kvmc_vm) C.int { n = uint64(C.kvmc_vm_memory_size(v)); return 0 })
	return n
}

// ReadMemory copies n bytes of guest-physical memory; the range must be
// guest RAM.
func (vm *VM) ReadMemory(gpa uint64, n int) ([]byte, error) {
	if n < 0 {
		return nil, invalid("ReadMemory: length %d is negative", n)
	}
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

// ConsoleWrite types data into the guest's COM1 console; it waits in a pipe
// until the guest reads it.
func (vm *VM) ConsoleWrite(data []byte) (int, error) {
	vm.mu.Lock()
	w := vm.input
	closed := vm.vm == nil
	vm.mu.Unlock()
	if closed || w == nil {
		return 0, ErrClosed
	}
	return w.Write(data)
}

// VirtioConsoleWrite queues input for the guest's virtio console (callback
// mode) and returns how many bytes fit; up to 64 KiB wait for the guest.
func (vm *VM) VirtioConsoleWrite(data []byte) (int, error) {
	var written C.size_t
	var p unsafe.Pointer
	if len(data) > 0 {
		p = C.CBytes(data)
		defer C.free(p)
	}
	err := vm.do(func(h *C.kvmc_vm) C.int {
		return C.kvmc_vm_virtio_console_write(h, p, C.size_t(len(data)), &written)
	})
	return int(written), err
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
	r := C.kvmc_regs{version: C.KVMC_REGS_VERSION,
		rax: C.uint64_t(g.RAX), rbx: C.uint64_t(g.RBX), rcx: C.uint64_t(g.RCX),
		rdx: C.uint64_t(g.RDX), rsi: C.uint64_t(g.RSI), rdi: C.uint64_t(g.RDI),
		rsp: C.uint64_t(g.RSP), rbp: C.uint64_t(g.RBP), r8: C.uint64_t(g.R8),
		r9: C.uint64_t(g.R9), r10: C.uint64_t(g.R10), r11: C.uint64_t(g.R11),
		r12: C.uint64_t(g.R12), r13: C.uint64_t(g.R13), r14: C.uint64_t(g.R14),
		r15: C.uint64_t(g.R15), rip: C.uint64_t(g.RIP), rflags: C.uint64_t(g.RFLAGS)}
	return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_set_regs(v, C.unsigned(vcpu), &r) })
}

// Snapshot saves the paused VM into directory dir (made if missing):
// dir/state and dir/memory. The VM stays paused: Resume or Close it after.
// Every virtio device is saved (vsock connections end with a restore: the
// guest gets a transport reset); PCI devices from Go, VFIO and Go-served
// devices cannot be saved yet (ErrNotSupported, naming them); a VM that is
// not paused gets ErrState. Format: docs/snapshots.md.
func (vm *VM) Snapshot(dir string) error {
	if vm.onCallbackThread() {
		return ErrInCallback
	}
	return vm.do(func(v *C.kvmc_vm) C.int {
		return cstring(dir, func(p *C.char) C.int { return C.kvmc_vm_snapshot(v, p) })()
	})
}

// SnapshotDiff saves the paused VM into directory dir as a diff snapshot:
// dir/memory holds only the RAM pages that differ from the VM's base, the
// full snapshot it last took or was restored from, which must stay where
// it is (LoadSnapshot of the diff reads it too, and refuses a base that is
// gone or was replaced). A diff after a diff holds both one's pages, so a
// diff never needs another diff. Reset then goes back to the diff.
// ErrState without a base; ErrNotSupported for memfd or hugepage RAM;
// ErrInvalid when dir is the base's directory.
func (vm *VM) SnapshotDiff(dir string) error {
	if vm.onCallbackThread() {
		return ErrInCallback
	}
	opts := C.kvmc_snapshot_options{version: C.KVMC_SNAPSHOT_OPTIONS_VERSION,
		flags: C.KVMC_SNAPSHOT_DIFF}
	return vm.do(func(v *C.kvmc_vm) C.int {
		return cstring(dir, func(p *C.char) C.int { return C.kvmc_vm_snapshot_ext(v, p, &opts) })()
	})
}

// LoadSnapshot, before Start, loads the snapshot in directory dir into a VM
// created with the configuration the snapshot was taken with (Memory,
// CPUs, PIT, devices; no kernel needed); Start then continues the guest
// where it was saved. A bad or mismatched snapshot is an error naming what
// is wrong (ErrFormat, ErrInvalid, ErrNotSupported, ErrIO) and leaves a VM
// that cannot start: Close it.
func (vm *VM) LoadSnapshot(dir string) error {
	if vm.onCallbackThread() {
		return ErrInCallback
	}
	return vm.do(func(v *C.kvmc_vm) C.int {
		return cstring(dir, func(p *C.char) C.int { return C.kvmc_vm_restore(v, p) })()
	})
}

// Stats are a VM's counters since it was created: vCPU exits by kind and
// what its virtio devices did, all devices of a kind together ("Rx" is
// towards the guest, "Tx" from it).
type Stats struct {
	ExitIOIn, ExitIOOut, ExitMMIORead, ExitMMIOWrite, ExitOther      uint64
	BlockReadCount, BlockReadBytes, BlockWriteCount, BlockWriteBytes uint64
	BlockFlushCount, BlockErrors                                     uint64
	NetRxPackets, NetRxBytes, NetRxDropped, NetTxPackets, NetTxBytes uint64
	VsockConnsOpened, VsockConnsClosed, VsockRxBytes, VsockTxBytes   uint64
	RngBytes                                                         uint64
	VirtioErrors                                                     uint64 // a driver broke a device's rules
}

// Stats reads the VM's counters, in any state until Close; a running
// VM's counters move while they are read.
func (vm *VM) Stats() (Stats, error) {
	var s C.kvmc_stats
	s.size = C.uint32_t(C.sizeof_kvmc_stats)
	if err := vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_get_stats(v, &s) }); err != nil {
		return Stats{}, err
	}
	return Stats{
		ExitIOIn: uint64(s.exit_io_in), ExitIOOut: uint64(s.exit_io_out),
		ExitMMIORead: uint64(s.exit_mmio_read), ExitMMIOWrite: uint64(s.exit_mmio_write),
		ExitOther:      uint64(s.exit_other),
		BlockReadCount: uint64(s.block_read_count), BlockReadBytes: uint64(s.block_read_bytes),
		BlockWriteCount: uint64(s.block_write_count), BlockWriteBytes: uint64(s.block_write_bytes),
		BlockFlushCount: uint64(s.block_flush_count), BlockErrors: uint64(s.block_errors),
		NetRxPackets: uint64(s.net_rx_packets), NetRxBytes: uint64(s.net_rx_bytes),
		NetRxDropped: uint64(s.net_rx_dropped), NetTxPackets: uint64(s.net_tx_packets),
		NetTxBytes:       uint64(s.net_tx_bytes),
		VsockConnsOpened: uint64(s.vsock_conns_opened), VsockConnsClosed: uint64(s.vsock_conns_closed),
		VsockRxBytes: uint64(s.vsock_rx_bytes), VsockTxBytes: uint64(s.vsock_tx_bytes),
		RngBytes: uint64(s.rng_bytes), VirtioErrors: uint64(s.virtio_errors),
	}, nil
}

// SendCtrlAltDel presses Ctrl-Alt-Del on the VM's AT keyboard (the
// i8042): Linux reboots on it, which ends the run with ExitReset. It returns
// at once, without waiting for the guest. ErrBusy if the guest has not read
// the keys pressed before.
func (vm *VM) SendCtrlAltDel() error {
	return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_send_ctrl_alt_del(v) })
}

// Reset puts the VM back to the snapshot it last took or was restored
// from, without recreating it (fast: only the RAM pages written since are
// dropped). A running VM is paused for it and runs on after; a paused one
// stays paused. ErrState if there is no snapshot or the VM exited.
func (vm *VM) Reset() error {
	if vm.onCallbackThread() {
		return ErrInCallback
	}
	return vm.do(func(v *C.kvmc_vm) C.int { return C.kvmc_vm_reset_to_snapshot(v) })
}

// RestoreVM is NewVM(c) then LoadSnapshot(dir): a VM that continues, once
// started, the guest saved in dir.
func RestoreVM(dir string, c Config) (*VM, error) {
	vm, err := NewVM(c)
	if err != nil {
		return nil, err
	}
	if err := vm.LoadSnapshot(dir); err != nil {
		vm.Close()
		return nil, err
	}
	return vm, nil
}

// Close stops the guest if it runs and frees the VM. Idempotent. Not from a
// callback of this VM (ErrInCallback): it would wait for its own thread.
func (vm *VM) Close() error {
	if vm.onCallbackThread() {
		return ErrInCallback
	}
	vm.mu.Lock()
	started := vm.started
	vm.mu.Unlock()
	if started { // the waiting goroutine must be out of kvmc_vm_wait first
		vm.Stop()
		<-vm.done
	}
	vm.life.Lock() // no C call on the handle is under way any more
	vm.mu.Lock()
	v := vm.vm
	vm.vm = nil
	vm.mu.Unlock()
	if v != nil {
		C.kvmc_vm_destroy(v) // joins kvmc's threads: no callback runs after this
	}
	vm.life.Unlock()
	vm.release()
	return nil
}

func (vm *VM) release() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for _, h := range vm.handles {
		h.Delete()
	}
	vm.handles = nil
	for _, f := range []*os.File{vm.input, vm.inputR} {
		if f != nil {
			f.Close()
		}
	}
	vm.input, vm.inputR = nil, nil
}

// Version of the loaded libkvmc.
func Version() string { return C.GoString(C.kvmc_version_string()) }

// KickSignal is the real-time signal kvmc interrupts its vCPU threads with.
// A program running VMs must leave it alone: no signal.Notify, no blocking.
func KickSignal() syscall.Signal { return syscall.Signal(C.kvmc_kick_signal()) }

//export kvmcGoDeviceRead
func kvmcGoDeviceRead(opaque unsafe.Pointer, offset C.uint64_t, size C.unsigned) (value C.uint64_t) {
	d := cgo.Handle(uintptr(opaque)).Value().(*device)
	defer d.vm.leave(d.vm.enter())
	value = ^C.uint64_t(0)
	defer func() { d.vm.recovered(recover()) }()
	return C.uint64_t(d.dev.Read(uint64(offset), int(size)))
}

//export kvmcGoDeviceWrite
func kvmcGoDeviceWrite(opaque unsafe.Pointer, offset C.uint64_t, size C.unsigned, value C.uint64_t) {
	d := cgo.Handle(uintptr(opaque)).Value().(*device)
	defer d.vm.leave(d.vm.enter())
	defer func() { d.vm.recovered(recover()) }()
	d.dev.Write(uint64(offset), int(size), uint64(value))
}

//export kvmcGoPCIRead
func kvmcGoPCIRead(opaque unsafe.Pointer, bar C.unsigned, offset C.uint64_t, size C.unsigned) (value C.uint64_t) {
	d := cgo.Handle(uintptr(opaque)).Value().(*pciDevice)
	defer d.vm.leave(d.vm.enter())
	value = ^C.uint64_t(0)
	defer func() { d.vm.recovered(recover()) }()
	if d.dev.Read == nil {
		return value
	}
	return C.uint64_t(d.dev.Read(int(bar), uint64(offset), int(size)))
}

//export kvmcGoPCIWrite
func kvmcGoPCIWrite(opaque unsafe.Pointer, bar C.unsigned, offset C.uint64_t, size C.unsigned, value C.uint64_t) {
	d := cgo.Handle(uintptr(opaque)).Value().(*pciDevice)
	defer d.vm.leave(d.vm.enter())
	defer func() { d.vm.recovered(recover()) }()
	if d.dev.Write != nil {
		d.dev.Write(int(bar), uint64(offset), int(size), uint64(value))
	}
}

//export kvmcGoConsole
func kvmcGoConsole(opaque unsafe.Pointer, data *C.uint8_t, n C.size_t) {
	sink := cgo.Handle(uintptr(opaque)).Value().(*consoleSink)
	defer sink.vm.leave(sink.vm.enter())
	defer func() { sink.vm.recovered(recover()) }()
	b := C.GoBytes(unsafe.Pointer(data), C.int(n))
	sink.mu.Lock()
	defer sink.mu.Unlock()
	sink.w.Write(b)
}

type connector struct {
	vm      *VM
	connect func(port uint32) (syscall.Conn, error)
}

//export kvmcGoVsockConnect
func kvmcGoVsockConnect(opaque unsafe.Pointer, port C.uint32_t) (fd C.int) {
	c := cgo.Handle(uintptr(opaque)).Value().(*connector)
	defer c.vm.leave(c.vm.enter())
	fd = -1
	defer func() { c.vm.recovered(recover()) }()
	conn, err := c.connect(uint32(port))
	if err != nil || conn == nil {
		return -1
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return -1
	}
	raw.Control(func(s uintptr) {
		if d, err := syscall.Dup(int(s)); err == nil {
			syscall.CloseOnExec(d)
			fd = C.int(d)
		}
	})
	return fd
}

type eventSink struct {
	vm *VM
	fn func(Event)
}

//export kvmcGoEvent
func kvmcGoEvent(opaque unsafe.Pointer, _ *C.kvmc_vm, event C.int) {
	e := cgo.Handle(uintptr(opaque)).Value().(*eventSink)
	defer e.vm.leave(e.vm.enter())
	defer func() { e.vm.recovered(recover()) }()
	e.fn(Event(event))
}
