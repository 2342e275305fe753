"""kvmc: create, run and control KVM guests from Python.

    import kvmc

    with kvmc.VM(kernel="bzImage", memory="256M", cmdline="console=ttyS0") as vm:
        vm.start()
        result = vm.wait(timeout=30)
        print(vm.console_text, result.reason)

Device callbacks (`add_pio_device`, `add_mmio_device`), the console callback
and lifecycle events run on kvmc's vCPU threads; cffi takes the GIL for them.
An exception raised in a callback stops the VM and is raised again from
`wait()`, chained to a `CallbackError`.
"""
from __future__ import annotations

import enum
import re
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Union

from ._ffi import ffi, lib

__all__ = ["VM", "KvmcError", "CallbackError", "ExitReason", "ExitInfo", "State",
           "parse_size", "version"]

DISK_READ_ONLY = 0x1


class KvmcError(Exception):
    """A libkvmc call failed; `code` is the kvmc_error, the message kvmc's."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class CallbackError(KvmcError):
    """A Python device, console or event callback raised; see __cause__."""


class ExitReason(enum.IntEnum):
    NONE = 0
    POWEROFF = 1
    RESET = 2
    STOPPED = 3
    TRIPLE_FAULT = 4
    INTERNAL_ERROR = 5
    FAIL_ENTRY = 6
    VMM_ERROR = 7
    GUEST_PANIC = 8


class State(enum.IntEnum):
    CREATED = 0
    RUNNING = 1
    PAUSED = 2
    EXITED = 3


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
    return ffi.string(lib.kvmc_version_string()).decode()


def _check(rc: int) -> None:
    if rc != 0:
        raise KvmcError(rc, ffi.string(lib.kvmc_last_error()).decode(errors="replace"))


_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(size: Union[int, str]) -> int:
    """256 * 2**20, "256M", "1G", "512MiB" -> bytes."""
    if isinstance(size, int):
        return size
    m = _SIZE.match(size)
    if not m:
        raise ValueError(f"not a size: {size!r} (use e.g. 256M or 2G)")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]


ReadFn = Callable[[int, int], int]
WriteFn = Callable[[int, int, int], None]


class VM:
    """One KVM guest. Configure in the constructor, then start() and wait().

    kernel: bzImage or ELF vmlinux path. memory: bytes or "256M". disks:
    paths, or (path, read_only) tuples. nets: specs such as "user",
    "user,hostfwd=tcp::2222-:22" or "tap=tap0". vsock: (guest_cid, uds_path),
    Firecracker's convention. pit: add an i8254 PIT (off by default; Linux
    does not need one). virtio_console: "socket:PATH", or True to
    collect the guest's hvc0 output here (virtio_console_text, and input
    through virtio_console_write). The VM is torn down by close(), by the
    context manager, or when garbage-collected.
    """

    def __init__(self, kernel: str, *, memory: Union[int, str] = "256M", cpus: int = 1,
                 cmdline: Optional[str] = None, initrd: Optional[str] = None,
                 boot: str = "auto", disks: Optional[List] = None, rng: bool = False,
                 pit: bool = False,
                 console: Optional[Callable[[bytes], None]] = None,
                 nets: Optional[List[str]] = None, vsock: Optional[tuple] = None,
                 virtio_console: Union[None, bool, str] = None):
        self._vm = ffi.NULL
        self._lock = threading.Lock()
        self._console = bytearray()
        self._console_cb = console
        self._console_cond = threading.Condition(self._lock)
        self._vconsole = bytearray()
        self._errors: List[BaseException] = []
        self._keep = []  # cffi callbacks and handles that C holds on to
        cfg = ffi.new("kvmc_config **")
        _check(lib.kvmc_config_new(cfg))
        try:
            self._configure(cfg[0], kernel, memory, cpus, cmdline, initrd, boot,
                            disks or [], rng)
            _check(lib.kvmc_config_set_pit(cfg[0], 1 if pit else 0))
            self._configure_streams(cfg[0], nets or [], vsock, virtio_console)
            vm = ffi.new("kvmc_vm **")
            _check(lib.kvmc_vm_create(cfg[0], vm))
            self._vm = vm[0]
        finally:
            lib.kvmc_config_free(cfg[0])

    def _configure(self, cfg, kernel, memory, cpus, cmdline, initrd, boot, disks, rng):
        protocols = {"auto": lib.KVMC_BOOT_AUTO, "linux": lib.KVMC_BOOT_LINUX,
                     "pvh": lib.KVMC_BOOT_PVH}
        if boot not in protocols:
            raise ValueError(f"boot={boot!r}: use auto, linux or pvh")
        _check(lib.kvmc_config_set_kernel(cfg, kernel.encode()))
        _check(lib.kvmc_config_set_memory(cfg, parse_size(memory)))
        _check(lib.kvmc_config_set_cpus(cfg, cpus))
        _check(lib.kvmc_config_set_boot_protocol(cfg, protocols[boot]))
        if cmdline is not None:
            _check(lib.kvmc_config_set_cmdline(cfg, cmdline.encode()))
        if initrd is not None:
            _check(lib.kvmc_config_set_initrd(cfg, initrd.encode()))
        for disk in disks:
            path, ro = (disk, False) if isinstance(disk, str) else disk
            _check(lib.kvmc_config_add_disk(cfg, path.encode(), DISK_READ_ONLY if ro else 0,
                                            ffi.NULL))
        if rng:
            _check(lib.kvmc_config_set_rng(cfg, 1))
        cb = ffi.callback("void(void *, const uint8_t *, size_t)", self._on_console,
                          onerror=self._on_callback_error)
        self._keep.append(cb)
        _check(lib.kvmc_config_set_console_callback(cfg, cb, ffi.NULL))

    def _configure_streams(self, cfg, nets, vsock, virtio_console):
        for spec in nets:
            _check(lib.kvmc_config_add_net(cfg, spec.encode()))
        if vsock is not None:
            cid, path = vsock
            _check(lib.kvmc_config_set_vsock(cfg, cid, str(path).encode()))
        if isinstance(virtio_console, str):
            if not virtio_console.startswith("socket:"):
                raise ValueError(f"virtio_console={virtio_console!r}: use 'socket:PATH' or True")
            _check(lib.kvmc_config_set_virtio_console_socket(
                cfg, virtio_console[len("socket:"):].encode()))
        elif virtio_console:
            cb = ffi.callback("void(void *, const uint8_t *, size_t)", self._on_vconsole,
                              onerror=self._on_callback_error)
            self._keep.append(cb)
            _check(lib.kvmc_config_set_virtio_console_callback(cfg, cb, ffi.NULL))

    # ---- callbacks (vCPU and I/O threads) ------------------------------------

    def _on_vconsole(self, _opaque, data, length):
        chunk = bytes(ffi.buffer(data, length))
        with self._lock:
            self._vconsole += chunk
            self._console_cond.notify_all()

    def _on_console(self, _opaque, data, length):
        chunk = bytes(ffi.buffer(data, length))
        with self._lock:
            self._console += chunk
            self._console_cond.notify_all()
        if self._console_cb:
            self._console_cb(chunk)

    def _on_callback_error(self, exc_type, exc, tb):
        self._errors.append(exc)
        if self._vm != ffi.NULL:
            lib.kvmc_vm_stop(self._vm)
        return None

    # ---- devices ------------------------------------------------------------

    def _device_ops(self, read: Optional[ReadFn], write: Optional[WriteFn]):
        ops = ffi.new("kvmc_device_ops *")
        if read:
            r = ffi.callback("uint64_t(void *, uint64_t, unsigned)",
                             lambda _o, off, size: read(off, size) & ((1 << (8 * size)) - 1),
                             onerror=self._on_read_error)
            ops.read = r
            self._keep.append(r)
        if write:
            w = ffi.callback("void(void *, uint64_t, unsigned, uint64_t)",
                             lambda _o, off, size, value: write(off, size, value),
                             onerror=self._on_callback_error)
            ops.write = w
            self._keep.append(w)
        self._keep.append(ops)
        return ops

    def _on_read_error(self, exc_type, exc, tb):
        self._on_callback_error(exc_type, exc, tb)
        return 0xFFFFFFFFFFFFFFFF

    def add_mmio_device(self, base: int, size: int, read: Optional[ReadFn] = None,
                        write: Optional[WriteFn] = None) -> None:
        """A device at guest-physical [base, base+size): read(offset, size) -> int,
        write(offset, size, value). Called on vCPU threads; add before start()."""
        _check(lib.kvmc_vm_add_mmio_device(self._handle(), base, size,
                                           self._device_ops(read, write), ffi.NULL))

    def add_pio_device(self, port: int, size: int, read: Optional[ReadFn] = None,
                       write: Optional[WriteFn] = None) -> None:
        """Like add_mmio_device, on I/O ports [port, port+size)."""
        _check(lib.kvmc_vm_add_pio_device(self._handle(), port, size,
                                          self._device_ops(read, write), ffi.NULL))

    # ---- lifecycle ----------------------------------------------------------

    def _handle(self):
        if self._vm == ffi.NULL:
            raise KvmcError(-6, "the VM is closed")
        return self._vm

    def start(self) -> "VM":
        _check(lib.kvmc_vm_start(self._handle()))
        return self

    def wait(self, timeout: Optional[float] = None) -> ExitInfo:
        """Waits for the guest to end; TimeoutError if it is still running."""
        info = ffi.new("kvmc_exit_info *")
        ms = -1 if timeout is None else int(timeout * 1000)
        rc = lib.kvmc_vm_wait(self._handle(), ms, info)
        if rc == -8:
            raise TimeoutError(f"VM still running after {timeout} s")
        _check(rc)
        if self._errors:
            err = self._errors[0]
            raise CallbackError(-7, f"a callback raised {type(err).__name__}: {err}") from err
        return ExitInfo(ExitReason(info.reason), info.code, info.vcpu, info.rip,
                        ffi.string(info.message).decode(errors="replace"))

    def run(self, timeout: Optional[float] = None) -> ExitInfo:
        """start() then wait()."""
        return self.start().wait(timeout)

    def stop(self) -> None:
        _check(lib.kvmc_vm_stop(self._handle()))

    def pause(self) -> None:
        _check(lib.kvmc_vm_pause(self._handle()))

    def resume(self) -> None:
        _check(lib.kvmc_vm_resume(self._handle()))

    @property
    def state(self) -> State:
        return State(lib.kvmc_vm_get_state(self._handle()))

    def read_memory(self, gpa: int, length: int) -> bytes:
        buf = ffi.new("uint8_t[]", length)
        _check(lib.kvmc_vm_read_memory(self._handle(), gpa, buf, length))
        return bytes(ffi.buffer(buf, length))

    def write_memory(self, gpa: int, data: bytes) -> None:
        _check(lib.kvmc_vm_write_memory(self._handle(), gpa, data, len(data)))

    _REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10",
             "r11", "r12", "r13", "r14", "r15", "rip", "rflags")

    def get_regs(self, vcpu: int = 0) -> dict:
        """vCPU registers as a dict; only while paused, not started, or exited."""
        regs = ffi.new("kvmc_regs *")
        _check(lib.kvmc_vm_get_regs(self._handle(), vcpu, regs))
        return {name: getattr(regs, name) for name in self._REGS}

    def set_regs(self, vcpu: int = 0, **changes: int) -> None:
        """Changes some registers, e.g. set_regs(0, rax=1); same states as get_regs."""
        unknown = set(changes) - set(self._REGS)
        if unknown:
            raise ValueError(f"unknown registers: {sorted(unknown)}")
        regs = ffi.new("kvmc_regs *")
        _check(lib.kvmc_vm_get_regs(self._handle(), vcpu, regs))
        for name, value in changes.items():
            setattr(regs, name, value)
        _check(lib.kvmc_vm_set_regs(self._handle(), vcpu, regs))

    # ---- console ------------------------------------------------------------

    @property
    def console_text(self) -> str:
        with self._lock:
            return self._console.decode(errors="replace")

    def _wait_for(self, buffer: bytearray, what: str, text: str, timeout: float) -> str:
        needle = text.encode()
        with self._console_cond:
            if not self._console_cond.wait_for(lambda: needle in buffer, timeout):
                raise TimeoutError(f"{what} never showed {text!r}; got:\n"
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
        written = ffi.new("size_t *")
        _check(lib.kvmc_vm_virtio_console_write(self._handle(), data, len(data), written))
        return written[0]

    def console_lines(self) -> Iterator[str]:
        """The console output so far, line by line."""
        return iter(self.console_text.splitlines())

    # ---- teardown -----------------------------------------------------------

    def close(self) -> None:
        """Stops the guest if it runs and frees everything. Idempotent."""
        if self._vm != ffi.NULL:
            vm, self._vm = self._vm, ffi.NULL
            lib.kvmc_vm_destroy(vm)

    def __enter__(self) -> "VM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
