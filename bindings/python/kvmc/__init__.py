"""kvmc: create, run and control KVM guests from Python.

    import kvmc

    with kvmc.VM("bzImage", memory="256M", cmdline="console=ttyS0") as vm:
        result = vm.run(timeout=30)
        print(vm.console_text, result.reason)

Device callbacks (`add_pio_device`, `add_mmio_device`), the console callback
and the virtio-console callback run on kvmc's own threads; cffi takes the
GIL for them. An exception raised in a callback stops the VM and is raised
again from `wait()`, as a `CallbackError` chained to it. Errors of libkvmc
raise subclasses of `KvmcError` that are also the built-in exception that
fits (`ValueError`, `OSError`, `TimeoutError`...): see `kvmc.errors`.

Ctrl-C during `run()` or `wait()` (on the main thread) stops the VM and
raises KeyboardInterrupt. VMs still open when the interpreter exits are
closed first, so a script may simply end.
"""
from __future__ import annotations

import atexit
import enum
import os
import re
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

from . import _ffi
from ._ffi import ffi, lib
from .errors import (BusyError, CallbackError, ClosedError, ErrorCode, ImageFormatError,
                     InvalidArgumentError, KVMError, KvmcError, KvmcMemoryError, KvmcOSError,
                     KvmcTimeoutError, NotSupportedError, StateError, error_for)

__all__ = ["VM", "PciDevice", "ExitReason", "ExitInfo", "State", "Event", "parse_size", "version",
           "library_path", "kick_signal",
           "KvmcError", "ErrorCode", "InvalidArgumentError", "KvmcMemoryError", "KvmcOSError",
           "KVMError", "ImageFormatError", "StateError", "ClosedError", "BusyError",
           "KvmcTimeoutError", "NotSupportedError", "CallbackError"]

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
_U64 = (1 << 64) - 1


class ExitReason(enum.IntEnum):
    """kvmc_exit_reason; str() is the library's name for it ("poweroff"...)."""
    NONE = 0
    POWEROFF = 1
    RESET = 2
    STOPPED = 3
    TRIPLE_FAULT = 4
    INTERNAL_ERROR = 5
    FAIL_ENTRY = 6
    VMM_ERROR = 7
    GUEST_PANIC = 8

    def __str__(self) -> str:
        return ffi.string(lib.kvmc_exit_reason_name(int(self))).decode()


class State(enum.IntEnum):
    CREATED = 0
    RUNNING = 1
    PAUSED = 2
    EXITED = 3


class Event(enum.IntEnum):
    """Lifecycle events (kvmc_event), for on_event."""
    STARTED = 1
    PAUSED = 2
    RESUMED = 3
    EXITED = 4


@dataclass(frozen=True)
class ExitInfo:
    reason: ExitReason
    code: int
    vcpu: int
    rip: int
    message: str

    @property
    def clean(self) -> bool:
        """Powered off with status 0, or reset."""
        return (self.reason == ExitReason.POWEROFF and self.code == 0) or \
            self.reason == ExitReason.RESET


def version() -> str:
    """The loaded libkvmc's version."""
    return ffi.string(lib.kvmc_version_string()).decode()


def library_path() -> str:
    """Where the loaded libkvmc came from: $KVMC_LIBRARY, the copy in this
    package (a wheel carries one), or the system's "libkvmc.so.1"."""
    return _ffi.LIBRARY


class PciDevice:
    """A PCI device added with VM.add_pci_device."""

    def __init__(self, vm: "VM", slot: int):
        self._vm = vm
        self.slot = slot  # its device number on bus 0

    def notify(self, vector: int) -> None:
        """Raises MSI-X vector `vector`, from any thread (a device callback
        included): delivered, or held while the guest masks it; lost while
        the guest has MSI-X off."""
        _check(lib.kvmc_vm_pci_msix_notify(self._vm._handle(), self.slot,
                                           _int("vector", vector, 0, 0xffffffff)))

    def __repr__(self) -> str:
        return f"<kvmc.PciDevice slot {self.slot}>"


def kick_signal() -> int:
    """The real-time signal kvmc interrupts its vCPU threads with: leave it
    alone (no handler, no blocking) in a program that runs VMs."""
    return lib.kvmc_kick_signal()


def _check(rc: int) -> None:
    if rc != 0:
        raise error_for(rc, ffi.string(lib.kvmc_last_error()).decode(errors="replace"))


_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(size: Union[int, str]) -> int:
    """256 * 2**20, "256M", "1G", "512MiB" -> bytes."""
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise TypeError(f"a size is an int or a string like '256M', not {type(size).__name__}")
    if isinstance(size, int):
        if size < 0:
            raise ValueError(f"size {size} is negative")
        return size
    m = _SIZE.match(size)
    if not m:
        raise ValueError(f"not a size: {size!r} (use e.g. 256M or 2G)")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]


def _int(name: str, value, lo: int, hi: int) -> int:
    """An int argument in [lo, hi], or TypeError/ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidArgumentError(ErrorCode.EINVAL,
                                   f"{name} {value:#x} is out of range ({lo:#x}..{hi:#x})"
                                   if hi > 0xffff else f"{name} {value} is out of range "
                                   f"({lo}..{hi})")
    return value


def _path(name: str, value: PathLike, must_exist: bool) -> bytes:
    """A path argument (str, bytes or os.PathLike) as bytes for C; a file
    that must exist and does not raises FileNotFoundError (or the OSError
    that fits) naming it, as Python's own file functions do."""
    if value is None or not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be a path (str, bytes or os.PathLike), "
                        f"not {type(value).__name__}")
    path = os.fsencode(value)
    if must_exist:
        os.stat(value)
    return path


def _text(name: str, value) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value.encode()


# The VM whose callback the calling thread runs, if any: calls that wait for
# the VM's threads refuse to run there instead of deadlocking.
_tls = threading.local()
# VMs still open, closed before the interpreter shuts down (a vCPU thread in
# a callback would otherwise wait for the GIL forever, and close() for it).
_open_vms: "weakref.WeakSet[VM]" = weakref.WeakSet()


@atexit.register
def _close_open_vms() -> None:
    for vm in list(_open_vms):
        try:
            vm.close()
        except Exception:  # noqa: BLE001 - nothing to report to at exit
            pass


ReadFn = Callable[[int, int], int]
WriteFn = Callable[[int, int, int], None]


class VM:
    """One KVM guest. Configure it in the constructor, then start() and wait(),
    or run().

    kernel: bzImage or ELF vmlinux path (str, bytes or os.PathLike), or None
    with kernel_image: the image itself (bytes).
    memory: bytes or "256M". memory_backing: "anon" (default), "memfd" or
    "hugetlb". cpus: 1 to 64. disks: paths, or (path, read_only) tuples. nets: specs such as "user", "user,hostfwd=tcp::2222-:22" or
    "tap=tap0". vsock: (guest_cid, uds_path), Firecracker's convention.
    pit: an i8254 PIT (off by default; Linux does not need one).
    virtio_console: "socket:PATH", or True to collect the guest's hvc0 output
    here (virtio_console_text; input through virtio_console_write).
    console: a callable that gets each chunk of COM1 output (bytes); input
    goes to the guest through console_write().
    vsock_connector: port -> socket (or fd, or None to refuse), called on
    kvmc's I/O thread for each guest connection to the host (instead of
    connecting to "<uds_path>_<port>").
    transport: "mmio" (default) or "pci", how virtio devices reach the guest.
    vfio: host PCI devices to pass through, by address (["0000:00:03.0"]),
    each bound to vfio-pci first; the host is checked when the VM is created
    (InvalidArgumentError naming the device if it is not bound to vfio-pci,
    BusyError if another VM has it).
    on_event: a callable that gets each lifecycle Event.
    vcpu_thread_name: the vCPU threads' name before their index ("kvmc-vcpu"
    by default; at most 13 printable ASCII bytes), e.g. "fc_vcpu ".

    Every method may be called in every state; one that does not apply
    raises StateError, and any call on a closed VM raises ClosedError. The
    VM is torn down by close(), by the context manager, by garbage
    collection, or at interpreter exit.
    """

    def __init__(self, kernel: Optional[PathLike] = None, *, kernel_image: Optional[bytes] = None,
                 memory: Union[int, str] = "256M", memory_backing: str = "anon",
                 cpus: int = 1, cmdline: Optional[str] = None,
                 initrd: Optional[PathLike] = None, boot: str = "auto",
                 disks: Optional[List] = None, rng: bool = False, pit: bool = False,
                 console: Optional[Callable[[bytes], None]] = None,
                 nets: Optional[List[str]] = None, vsock: Optional[tuple] = None,
                 vsock_connector: Optional[Callable[[int], object]] = None,
                 virtio_console: Union[None, bool, str] = None,
                 transport: str = "mmio", vfio: Optional[List[str]] = None,
                 on_event: Optional[Callable[["Event"], None]] = None,
                 vcpu_thread_name: Optional[str] = None):
        self._vm = ffi.NULL
        self._lock = threading.Lock()
        self._console = bytearray()
        self._console_cb = console
        self._console_cond = threading.Condition(self._lock)
        self._vconsole = bytearray()
        self._errors: List[BaseException] = []
        self._keep = []  # cffi callbacks and structs C holds on to
        self._input_w = -1
        for name, fn in (("console", console), ("vsock_connector", vsock_connector),
                         ("on_event", on_event)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable")
        if kernel is not None and kernel_image is not None:
            raise TypeError("give kernel (a path) or kernel_image (bytes), not both")
        cfg = ffi.new("kvmc_config **")
        _check(lib.kvmc_config_new(cfg))
        try:
            self._configure(cfg[0], kernel, kernel_image, memory, memory_backing, cpus,
                            cmdline, initrd, boot, disks or [], rng)
            _check(lib.kvmc_config_set_pit(cfg[0], 1 if pit else 0))
            transports = {"mmio": lib.KVMC_VIRTIO_MMIO, "pci": lib.KVMC_VIRTIO_PCI}
            if transport not in transports:
                raise ValueError(f"transport={transport!r}: use mmio or pci")
            _check(lib.kvmc_config_set_virtio_transport(cfg[0], transports[transport]))
            if vcpu_thread_name is not None:
                _check(lib.kvmc_config_set_vcpu_thread_name(
                    cfg[0], _text("vcpu_thread_name", vcpu_thread_name)))
            if isinstance(vfio, str):
                raise TypeError("vfio must be a list of PCI addresses, e.g. [\"0000:00:03.0\"]")
            for address in vfio or []:
                _check(lib.kvmc_config_add_vfio(cfg[0], _text("vfio", address)))
            self._configure_streams(cfg[0], nets or [], vsock, vsock_connector, virtio_console)
            vm = ffi.new("kvmc_vm **")
            _check(lib.kvmc_vm_create(cfg[0], vm))
            self._vm = vm[0]
            _open_vms.add(self)
        except BaseException:
            self._close_input()
            raise
        finally:
            lib.kvmc_config_free(cfg[0])
        if on_event is not None:
            self._set_event_callback(on_event)

    def _configure(self, cfg, kernel, kernel_image, memory, memory_backing, cpus, cmdline,
                   initrd, boot, disks, rng):
        protocols = {"auto": lib.KVMC_BOOT_AUTO, "linux": lib.KVMC_BOOT_LINUX,
                     "pvh": lib.KVMC_BOOT_PVH}
        backings = {"anon": 0, "memfd": lib.KVMC_MEM_MEMFD,
                    "hugetlb": lib.KVMC_MEM_MEMFD | lib.KVMC_MEM_HUGEPAGES}
        if boot not in protocols:
            raise ValueError(f"boot={boot!r}: use auto, linux or pvh")
        if memory_backing not in backings:
            raise ValueError(f"memory_backing={memory_backing!r}: use anon, memfd or hugetlb")
        if kernel is not None:
            _check(lib.kvmc_config_set_kernel(cfg, _path("kernel", kernel, True)))
        elif kernel_image is not None:  # neither: an empty VM, for load_snapshot()
            image = bytes(kernel_image)
            _check(lib.kvmc_config_set_kernel_image(cfg, image, len(image)))
        _check(lib.kvmc_config_set_memory(cfg, _int("memory", parse_size(memory), 0, _U64)))
        _check(lib.kvmc_config_set_memory_flags(cfg, backings[memory_backing]))
        _check(lib.kvmc_config_set_cpus(cfg, _int("cpus", cpus, 0, 0xffffffff)))
        _check(lib.kvmc_config_set_boot_protocol(cfg, protocols[boot]))
        if cmdline is not None:
            _check(lib.kvmc_config_set_cmdline(cfg, _text("cmdline", cmdline)))
        if initrd is not None:
            _check(lib.kvmc_config_set_initrd(cfg, _path("initrd", initrd, True)))
        for disk in disks:
            path, ro = (disk, False) if not isinstance(disk, tuple) else disk
            flags = lib.KVMC_DISK_READ_ONLY if ro else 0
            _check(lib.kvmc_config_add_disk(cfg, _path("disk", path, True), flags, ffi.NULL))
        if rng:
            _check(lib.kvmc_config_set_rng(cfg, 1))
        cb = ffi.callback("void(void *, const uint8_t *, size_t)", self._on_console,
                          onerror=self._on_callback_error)
        self._keep.append(cb)
        _check(lib.kvmc_config_set_console_callback(cfg, cb, ffi.NULL))
        # Console input: a pipe the guest reads, console_write() writes.
        read_end, self._input_w = os.pipe2(os.O_CLOEXEC)
        self._input_r = read_end
        _check(lib.kvmc_config_set_console_input_fd(cfg, read_end))

    def _configure_streams(self, cfg, nets, vsock, vsock_connector, virtio_console):
        for spec in nets:
            _check(lib.kvmc_config_add_net(cfg, _text("net", spec)))
        if vsock is not None:
            cid, path = vsock
            _check(lib.kvmc_config_set_vsock(cfg, _int("vsock CID", cid, 0, 0xffffffff),
                                             _path("vsock path", path, False)))
        if vsock_connector is not None:
            def connect(_opaque, port):
                _tls.vm = self
                try:
                    sock = vsock_connector(port)
                    if sock is None:
                        return -1
                    fd = sock if isinstance(sock, int) else sock.fileno()
                    return os.dup(fd)  # kvmc owns what it gets; the caller keeps sock
                finally:
                    _tls.vm = None
            cb = ffi.callback("int(void *, uint32_t)", connect, onerror=self._on_connect_error)
            self._keep.append(cb)
            _check(lib.kvmc_config_set_vsock_connector(cfg, cb, ffi.NULL))
        if isinstance(virtio_console, str):
            if not virtio_console.startswith("socket:"):
                raise ValueError(f"virtio_console={virtio_console!r}: use 'socket:PATH' or True")
            _check(lib.kvmc_config_set_virtio_console_socket(
                cfg, _path("virtio_console", virtio_console[len("socket:"):], False)))
        elif virtio_console:
            cb = ffi.callback("void(void *, const uint8_t *, size_t)", self._on_vconsole,
                              onerror=self._on_callback_error)
            self._keep.append(cb)
            _check(lib.kvmc_config_set_virtio_console_callback(cfg, cb, ffi.NULL))

    # ---- callbacks (kvmc's threads) ---------------------------------------

    def _on_vconsole(self, _opaque, data, length):
        _tls.vm = self
        try:
            chunk = bytes(ffi.buffer(data, length))
            with self._lock:
                self._vconsole += chunk
                self._console_cond.notify_all()
        finally:
            _tls.vm = None

    def _on_console(self, _opaque, data, length):
        _tls.vm = self
        try:
            chunk = bytes(ffi.buffer(data, length))
            with self._lock:
                self._console += chunk
                self._console_cond.notify_all()
            if self._console_cb:
                self._console_cb(chunk)
        finally:
            _tls.vm = None

    def _on_callback_error(self, exc_type, exc, tb):
        self._errors.append(exc)
        _tls.vm = None
        vm = self._vm
        if vm != ffi.NULL:
            lib.kvmc_vm_stop(vm)
        return None

    # ---- devices ----------------------------------------------------------

    def _device_ops(self, read: Optional[ReadFn], write: Optional[WriteFn]):
        for name, fn in (("read", read), ("write", write)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, not {type(fn).__name__}")
        ops = ffi.new("kvmc_device_ops *")
        ops.version = lib.KVMC_DEVICE_OPS_VERSION
        if read:
            def c_read(_opaque, offset, size):
                _tls.vm = self
                try:
                    value = read(offset, size)
                    if isinstance(value, bool) or not isinstance(value, int):
                        raise TypeError(f"device read({offset:#x}, {size}) returned "
                                        f"{type(value).__name__}, not an int")
                    if not -(1 << 63) <= value <= _U64:
                        raise ValueError(f"device read({offset:#x}, {size}) returned {value:#x},"
                                         " which does not fit 64 bits")
                    return (value & _U64) & ((1 << (8 * size)) - 1)
                finally:
                    _tls.vm = None
            r = ffi.callback("uint64_t(void *, uint64_t, unsigned)", c_read,
                             onerror=self._on_read_error)
            ops.read = r
            self._keep.append(r)
        if write:
            def c_write(_opaque, offset, size, value):
                _tls.vm = self
                try:
                    write(offset, size, value)
                finally:
                    _tls.vm = None
            w = ffi.callback("void(void *, uint64_t, unsigned, uint64_t)", c_write,
                             onerror=self._on_callback_error)
            ops.write = w
            self._keep.append(w)
        self._keep.append(ops)
        return ops

    def _on_read_error(self, exc_type, exc, tb):
        self._on_callback_error(exc_type, exc, tb)
        return _U64

    def _on_connect_error(self, exc_type, exc, tb):
        self._on_callback_error(exc_type, exc, tb)
        return -1

    def _set_event_callback(self, fn) -> None:
        def on_event(_opaque, _vm, event):
            _tls.vm = self
            try:
                fn(Event(event))
            finally:
                _tls.vm = None
        cb = ffi.callback("void(void *, kvmc_vm *, kvmc_event)", on_event,
                          onerror=self._on_callback_error)
        self._keep.append(cb)
        _check(lib.kvmc_vm_set_event_callback(self._handle(), cb, ffi.NULL))

    def add_mmio_device(self, base: int, size: int, read: Optional[ReadFn] = None,
                        write: Optional[WriteFn] = None) -> None:
        """A device at guest-physical [base, base+size): read(offset, size) -> int,
        write(offset, size, value). Called on vCPU threads; add before start()."""
        _int("base", base, 0, _U64)
        _int("size", size, 1, _U64)
        _check(lib.kvmc_vm_add_mmio_device(self._handle(), base, size,
                                           self._device_ops(read, write), ffi.NULL))

    def add_pio_device(self, port: int, size: int, read: Optional[ReadFn] = None,
                       write: Optional[WriteFn] = None) -> None:
        """Like add_mmio_device, on I/O ports [port, port+size) within 0..0xffff."""
        _int("port", port, 0, 0xffff)
        _int("size", size, 1, 0x10000 - port)
        _check(lib.kvmc_vm_add_pio_device(self._handle(), port, size,
                                          self._device_ops(read, write), ffi.NULL))

    _BAR_KINDS = {"mem32": 1, "mem64": 2, "io": 3}

    def add_pci_device(self, vendor_id: int, device_id: int, *, class_code: int = 0xff0000,
                       revision: int = 0, subsystem_vendor_id: int = 0, subsystem_id: int = 0,
                       bars: Sequence = (), msix_vectors: int = 0,
                       read: Optional[Callable[[int, int, int], int]] = None,
                       write: Optional[Callable[[int, int, int, int], None]] = None
                       ) -> "PciDevice":
        """A PCI device on kvmc's root complex, which the guest's PCI core
        enumerates, sizes and maps. bars: up to 6 entries, each None or
        (size, "mem32" | "mem64" | "io"[, prefetchable]); a mem64 BAR takes
        the next slot too (leave it None). msix_vectors > 0 adds MSI-X (its
        table in the first free BAR slot). read(bar, offset, size) -> int and
        write(bar, offset, size, value) run on vCPU threads. Add before
        start(); returns a PciDevice whose notify(vector) raises MSI-X."""
        info = ffi.new("kvmc_pci_device *")
        info.version = lib.KVMC_PCI_DEVICE_VERSION
        info.vendor_id = _int("vendor_id", vendor_id, 0, 0xffff)
        info.device_id = _int("device_id", device_id, 0, 0xffff)
        info.class_code = _int("class_code", class_code, 0, 0xffffff)
        info.revision = _int("revision", revision, 0, 0xff)
        info.subsystem_vendor_id = _int("subsystem_vendor_id", subsystem_vendor_id, 0, 0xffff)
        info.subsystem_id = _int("subsystem_id", subsystem_id, 0, 0xffff)
        info.msix_vectors = _int("msix_vectors", msix_vectors, 0, 0xffffffff)
        bars = list(bars)
        if len(bars) > lib.KVMC_PCI_MAX_BARS:
            raise ValueError(f"{len(bars)} BARs: a PCI device has at most 6")
        for i, bar in enumerate(bars):
            if bar is None:
                continue
            if not isinstance(bar, tuple) or len(bar) not in (2, 3) or bar[1] not in self._BAR_KINDS:
                raise ValueError(f"bars[{i}] = {bar!r}: use None or (size, 'mem32' | 'mem64' "
                                 "| 'io'[, prefetchable])")
            info.bars[i].size = _int(f"bars[{i}] size", bar[0], 1, _U64)
            info.bars[i].kind = self._BAR_KINDS[bar[1]] | (
                lib.KVMC_PCI_BAR_PREFETCHABLE if len(bar) == 3 and bar[2] else 0)
        for name, fn in (("read", read), ("write", write)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, not {type(fn).__name__}")
        if read:
            def c_read(_opaque, bar, offset, size):
                _tls.vm = self
                try:
                    value = read(bar, offset, size)
                    if isinstance(value, bool) or not isinstance(value, int):
                        raise TypeError(f"PCI read(bar {bar}, {offset:#x}, {size}) returned "
                                        f"{type(value).__name__}, not an int")
                    if not -(1 << 63) <= value <= _U64:
                        raise ValueError(f"PCI read(bar {bar}, {offset:#x}, {size}) returned "
                                         f"{value:#x}, which does not fit 64 bits")
                    return (value & _U64) & ((1 << (8 * size)) - 1)
                finally:
                    _tls.vm = None
            r = ffi.callback("uint64_t(void *, unsigned, uint64_t, unsigned)", c_read,
                             onerror=self._on_read_error)
            info.read = r
            self._keep.append(r)
        if write:
            def c_write(_opaque, bar, offset, size, value):
                _tls.vm = self
                try:
                    write(bar, offset, size, value)
                finally:
                    _tls.vm = None
            w = ffi.callback("void(void *, unsigned, uint64_t, unsigned, uint64_t)", c_write,
                             onerror=self._on_callback_error)
            info.write = w
            self._keep.append(w)
        slot = ffi.new("unsigned *")
        _check(lib.kvmc_vm_add_pci_device(self._handle(), info, ffi.NULL, slot))
        return PciDevice(self, slot[0])

    def set_irq_line(self, gsi: int, level: Union[bool, int]) -> None:
        """Raises (True) or lowers (False) an interrupt line, GSI 0..23; from any
        thread, a device callback included."""
        _check(lib.kvmc_vm_set_irq_line(self._handle(), _int("gsi", gsi, 0, 0xffffffff),
                                        1 if level else 0))

    # ---- lifecycle --------------------------------------------------------

    def _handle(self):
        vm = self._vm
        if vm == ffi.NULL:
            raise ClosedError()
        return vm

    def _refuse_in_callback(self, what: str) -> None:
        if getattr(_tls, "vm", None) is self:
            raise StateError(ErrorCode.ESTATE,
                             f"{what} called from a callback of this VM: it would wait for "
                             f"the thread running the callback; call it after run() returns")

    def start(self) -> "VM":
        _check(lib.kvmc_vm_start(self._handle()))
        return self

    def wait(self, timeout: Optional[float] = None) -> ExitInfo:
        """Waits for the guest to end; KvmcTimeoutError (a TimeoutError) if it
        still runs after timeout seconds. On the main thread, Ctrl-C stops the
        VM and raises KeyboardInterrupt."""
        vm = self._handle()
        self._refuse_in_callback("wait()")
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError(f"timeout {timeout!r}: a number of seconds, at least 0")
        info = ffi.new("kvmc_exit_info *")
        slice_ms = 100 if threading.current_thread() is threading.main_thread() else -1
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                if deadline is None:
                    ms = slice_ms
                else:
                    left = max(0, int((deadline - time.monotonic()) * 1000))
                    ms = left if slice_ms < 0 else min(left, slice_ms)
                rc = lib.kvmc_vm_wait(vm, ms, info)
                if rc != ErrorCode.ETIMEDOUT or (deadline is not None and
                                                 time.monotonic() >= deadline):
                    break
        except KeyboardInterrupt:
            lib.kvmc_vm_stop(vm)
            lib.kvmc_vm_wait(vm, -1, ffi.NULL)
            raise
        if rc == ErrorCode.ETIMEDOUT:
            raise KvmcTimeoutError(rc, f"the VM still runs after {timeout} s")
        _check(rc)
        if self._errors:
            err = self._errors[0]
            raise CallbackError(f"a callback raised {type(err).__name__}: {err}") from err
        return ExitInfo(ExitReason(info.reason), info.code, info.vcpu, info.rip,
                        ffi.string(info.message).decode(errors="replace"))

    def run(self, timeout: Optional[float] = None) -> ExitInfo:
        """start() then wait()."""
        return self.start().wait(timeout)

    def stop(self) -> None:
        """Asks the VM to stop; returns at once (wait() for the end)."""
        _check(lib.kvmc_vm_stop(self._handle()))

    def pause(self) -> None:
        vm = self._handle()
        self._refuse_in_callback("pause()")
        _check(lib.kvmc_vm_pause(vm))

    def resume(self) -> None:
        _check(lib.kvmc_vm_resume(self._handle()))

    @property
    def state(self) -> State:
        return State(lib.kvmc_vm_get_state(self._handle()))

    @property
    def closed(self) -> bool:
        return self._vm == ffi.NULL

    def read_memory(self, gpa: int, length: int) -> bytes:
        """Guest-physical memory; the whole range must be guest RAM."""
        _int("gpa", gpa, 0, _U64)
        _int("length", length, 0, 1 << 40)
        buf = ffi.new("uint8_t[]", length)
        _check(lib.kvmc_vm_read_memory(self._handle(), gpa, buf, length))
        return bytes(ffi.buffer(buf, length))

    def write_memory(self, gpa: int, data: bytes) -> None:
        _int("gpa", gpa, 0, _U64)
        data = bytes(data)
        _check(lib.kvmc_vm_write_memory(self._handle(), gpa, data, len(data)))

    _REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10",
             "r11", "r12", "r13", "r14", "r15", "rip", "rflags")

    def get_regs(self, vcpu: int = 0) -> dict:
        """vCPU registers as a dict; only while paused, not started, or exited."""
        regs = ffi.new("kvmc_regs *")
        _check(lib.kvmc_vm_get_regs(self._handle(), _int("vcpu", vcpu, 0, 0xffffffff), regs))
        return {name: getattr(regs, name) for name in self._REGS}

    def set_regs(self, vcpu: int = 0, **changes: int) -> None:
        """Changes some registers, e.g. set_regs(0, rax=1); same states as get_regs."""
        unknown = set(changes) - set(self._REGS)
        if unknown:
            raise ValueError(f"unknown registers: {sorted(unknown)}")
        for name, value in changes.items():
            _int(name, value, 0, _U64)
        regs = ffi.new("kvmc_regs *")
        _check(lib.kvmc_vm_get_regs(self._handle(), _int("vcpu", vcpu, 0, 0xffffffff), regs))
        for name, value in changes.items():
            setattr(regs, name, value)
        _check(lib.kvmc_vm_set_regs(self._handle(), vcpu, regs))

    # ---- snapshots --------------------------------------------------------

    def snapshot(self, path: PathLike, *, diff: bool = False) -> None:
        """Saves the paused VM into directory path (made if missing): path/state
        and path/memory. The VM stays paused: resume() or close() it after.
        Every virtio device is saved (vsock connections end with a restore:
        the guest gets a transport reset); PCI devices from Python, VFIO and
        Python-callback devices cannot be saved yet (NotSupportedError naming
        them). Format: docs/snapshots.md.

        diff=True writes a diff snapshot: path/memory holds only the RAM
        pages that differ from the full snapshot this VM last took or was
        restored from (its base), which must stay where it is; restoring the
        diff reads the base too. A diff after a diff holds both one's pages,
        so a diff never needs another diff. Raises StateError without a
        base, NotSupportedError for memfd or hugepage RAM."""
        vm = self._handle()
        self._refuse_in_callback("snapshot()")
        if not isinstance(diff, bool):
            raise TypeError(f"diff must be a bool, not {type(diff).__name__}")
        opts = ffi.new("kvmc_snapshot_options *", {
            "version": lib.KVMC_SNAPSHOT_OPTIONS_VERSION,
            "flags": lib.KVMC_SNAPSHOT_DIFF if diff else 0})
        _check(lib.kvmc_vm_snapshot_ext(vm, _path("path", path, False), opts))

    def load_snapshot(self, path: PathLike) -> "VM":
        """Before start(): loads the snapshot in directory path into this VM,
        which must have the configuration the snapshot was taken with (memory,
        cpus, pit, devices); start() then continues the guest where it was
        saved. A bad or mismatched snapshot raises (the message says what is
        wrong) and leaves a VM that cannot start: close it."""
        vm = self._handle()
        self._refuse_in_callback("load_snapshot()")
        _check(lib.kvmc_vm_restore(vm, _path("path", path, True)))
        return self

    def stats(self) -> Dict[str, int]:
        """The VM's counters since it was created, by name: vCPU exits by
        kind (exit_io_in, exit_mmio_write, ...) and what its virtio devices
        did (block_read_bytes, net_tx_packets, vsock_conns_opened,
        rng_bytes, virtio_errors, ...; "rx" is towards the guest). Any
        state until close(); a running VM's counters move while read."""
        st = ffi.new("kvmc_stats *")
        st.size = ffi.sizeof("kvmc_stats")
        _check(lib.kvmc_vm_get_stats(self._handle(), st))
        return {name: getattr(st, name) for name, _ in ffi.typeof("kvmc_stats").fields
                if name not in ("size", "reserved")}

    def send_ctrl_alt_del(self) -> None:
        """Presses Ctrl-Alt-Del on the VM's AT keyboard (the i8042): Linux
        reboots on it, which ends the run with ExitReason.RESET. Returns at
        once, without waiting for the guest. In every state until close();
        BusyError if the guest has not read the keys pressed before."""
        _check(lib.kvmc_vm_send_ctrl_alt_del(self._handle()))

    def reset(self) -> None:
        """Fast reset: back to the snapshot this VM last took or was restored
        from, in well under a millisecond (only the RAM pages written since
        are dropped). A running VM is paused for it and runs on after; a
        paused one stays paused. StateError if there is no snapshot."""
        vm = self._handle()
        self._refuse_in_callback("reset()")
        _check(lib.kvmc_vm_reset_to_snapshot(vm))

    @classmethod
    def restore(cls, path: PathLike, **config) -> "VM":
        """A new VM, from the keyword arguments VM() takes (the ones the
        snapshot was taken with; no kernel needed), with the snapshot in
        directory path loaded: run() or start() continues the guest."""
        vm = cls(**config)
        try:
            return vm.load_snapshot(path)
        except BaseException:
            vm.close()
            raise

    @property
    def cpus(self) -> int:
        return lib.kvmc_vm_cpu_count(self._handle())

    @property
    def memory(self) -> int:
        return lib.kvmc_vm_memory_size(self._handle())

    # ---- console ----------------------------------------------------------

    @property
    def console_text(self) -> str:
        with self._lock:
            return self._console.decode(errors="replace")

    def _wait_for(self, buffer: bytearray, what: str, text: str, timeout: float) -> str:
        needle = text.encode()
        with self._console_cond:
            if not self._console_cond.wait_for(lambda: needle in buffer, timeout):
                raise KvmcTimeoutError(ErrorCode.ETIMEDOUT,
                                       f"{what} never showed {text!r}; got:\n"
                                       f"{buffer.decode(errors='replace')}")
            return buffer.decode(errors="replace")

    def wait_for_console(self, text: str, timeout: float = 30.0) -> str:
        """Blocks until the console output contains text; returns the output."""
        return self._wait_for(self._console, "console", text, timeout)

    @property
    def virtio_console_text(self) -> str:
        """What the guest wrote to the virtio console (virtio_console=True)."""
        with self._lock:
            return self._vconsole.decode(errors="replace")

    def wait_for_virtio_console(self, text: str, timeout: float = 30.0) -> str:
        """Blocks until the virtio console output contains text."""
        return self._wait_for(self._vconsole, "virtio console", text, timeout)

    def virtio_console_write(self, data: bytes) -> int:
        """Queues input for the guest's virtio console; returns how many bytes
        fit (up to 64 KiB wait until the guest reads)."""
        data = bytes(data)
        written = ffi.new("size_t *")
        _check(lib.kvmc_vm_virtio_console_write(self._handle(), data, len(data), written))
        return written[0]

    def console_write(self, data: bytes) -> None:
        """Types data into the guest's COM1 console (it waits in a pipe until
        the guest reads it)."""
        self._handle()
        data = bytes(data)
        while data:
            data = data[os.write(self._input_w, data):]

    def console_lines(self) -> Iterator[str]:
        """The console output so far, line by line."""
        return iter(self.console_text.splitlines())

    # ---- teardown ---------------------------------------------------------

    def close(self) -> None:
        """Stops the guest if it runs and frees everything. Idempotent. Not
        from a callback of this VM (StateError): close it once run() returns."""
        self._refuse_in_callback("close()")
        with self._lock:
            vm, self._vm = self._vm, ffi.NULL
        if vm != ffi.NULL:
            _open_vms.discard(self)
            lib.kvmc_vm_destroy(vm)
        self._close_input()

    def _close_input(self) -> None:
        for attr in ("_input_w", "_input_r"):
            fd = getattr(self, attr, -1)
            if fd >= 0:
                setattr(self, attr, -1)
                os.close(fd)

    def __enter__(self) -> "VM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            if getattr(_tls, "vm", None) is not self:
                self.close()
        except Exception:  # noqa: BLE001 - a finalizer must not raise
            pass
