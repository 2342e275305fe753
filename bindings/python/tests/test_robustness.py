"""What a new user runs into: every call in every state, bad arguments,
callbacks that misbehave, scripts that end or are interrupted with a VM
running. Each test is a case that once crashed or hung."""
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import kvmc

IDLE = "kvmc.test=echo"  # waits for console input forever


def vm_in(state, guest_elf):
    """A VM in state: created, running, paused, exited, closed."""
    vm = kvmc.VM(guest_elf, memory="32M", cpus=2,
                 cmdline=None if state == "exited" else IDLE)
    if state in ("running", "paused"):
        vm.start()
        vm.wait_for_console("echo: ready", timeout=20)
        if state == "paused":
            vm.pause()
    elif state == "exited":
        vm.run(timeout=20)
    elif state == "closed":
        vm.close()
    return vm


# What each call does in each state: None (works), or the exception.
CALLS = {
    "start": lambda vm: vm.start(),
    "wait": lambda vm: vm.wait(timeout=0),
    "stop": lambda vm: vm.stop(),
    "pause": lambda vm: vm.pause(),
    "resume": lambda vm: vm.resume(),
    "state": lambda vm: vm.state,
    "get_regs": lambda vm: vm.get_regs(1),
    "set_regs": lambda vm: vm.set_regs(1, rax=0),
    "read_memory": lambda vm: vm.read_memory(0x200000, 8),
    "write_memory": lambda vm: vm.write_memory(0x1800000, b"x"),
    "add_pio_device": lambda vm: vm.add_pio_device(0x700, 4, read=lambda o, s: 0),
    "set_irq_line": lambda vm: vm.set_irq_line(5, False),
    "add_pci_device": lambda vm: vm.add_pci_device(0x1234, 1, bars=[(4096, "mem32")]),
    "virtio_console_write": lambda vm: vm.virtio_console_write(b"x"),
    "cpus": lambda vm: vm.cpus,
    "snapshot": lambda vm: vm.snapshot(tempfile.mkdtemp(prefix="kvmc-matrix-")),
    "snapshot_diff": lambda vm: vm.snapshot(tempfile.mkdtemp(prefix="kvmc-matrix-"), diff=True),
    "load_snapshot": lambda vm: vm.load_snapshot("/"),  # no snapshot there
    "reset": lambda vm: vm.reset(),  # none taken
    "send_ctrl_alt_del": lambda vm: vm.send_ctrl_alt_del(),
    "stats": lambda vm: vm.stats(),
}
WORKS, STATE, CLOSED, TIMEOUT = None, kvmc.StateError, kvmc.ClosedError, TimeoutError
EXPECT = {
    #                created  running  paused   exited
    "start":         (WORKS,  STATE,   STATE,   STATE),
    "wait":          (STATE,  TIMEOUT, TIMEOUT, WORKS),
    "stop":          (WORKS,  WORKS,   WORKS,   WORKS),
    "pause":         (STATE,  WORKS,   STATE,   STATE),
    "resume":        (STATE,  STATE,   WORKS,   STATE),
    "state":         (WORKS,  WORKS,   WORKS,   WORKS),
    "get_regs":      (WORKS,  STATE,   WORKS,   WORKS),
    "set_regs":      (WORKS,  STATE,   WORKS,   WORKS),
    "read_memory":   (WORKS,  WORKS,   WORKS,   WORKS),
    "write_memory":  (WORKS,  WORKS,   WORKS,   WORKS),
    "add_pio_device": (WORKS, STATE,   STATE,   STATE),
    "set_irq_line":  (WORKS,  WORKS,   WORKS,   WORKS),
    "add_pci_device": (WORKS, STATE,   STATE,   STATE),
    "virtio_console_write": (STATE, STATE, STATE, STATE),  # this VM has none
    "cpus":          (WORKS,  WORKS,   WORKS,   WORKS),
    "snapshot":      (STATE,  STATE,   WORKS,   STATE),
    "snapshot_diff": (STATE,  STATE,   STATE,   STATE),  # no base taken
    "load_snapshot": (kvmc.KvmcOSError, STATE, STATE, STATE),
    "reset":         (STATE,  STATE,   STATE,   STATE),
    "send_ctrl_alt_del": (WORKS, WORKS,  WORKS,   WORKS),
    "stats":         (WORKS,  WORKS,   WORKS,   WORKS),
}
STATES = ("created", "running", "paused", "exited")


@pytest.mark.parametrize("state", STATES + ("closed",))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_call_in_every_state(guest_elf, state, call):
    vm = vm_in(state, guest_elf)
    try:
        want = CLOSED if state == "closed" else EXPECT[call][STATES.index(state)]
        if want is None:
            CALLS[call](vm)
        else:
            with pytest.raises(want):
                CALLS[call](vm)
        # Whatever happened, the VM can still be stopped, waited for, closed.
        if not vm.closed:
            vm.stop()
            if vm.state != kvmc.State.CREATED:
                vm.wait(timeout=10)
    finally:
        vm.close()
        vm.close()


def test_run_then_stop_then_close(guest_elf):
    """Once crashed: stop() after wait() signalled joined vCPU threads."""
    for _ in range(5):
        with kvmc.VM(guest_elf, memory="32M") as vm:
            assert vm.run(timeout=20).clean
            vm.stop()
            vm.stop()


def test_arguments_get_python_errors_that_name_them(tmp_path, guest_elf):
    with pytest.raises(FileNotFoundError, match="/nonexistent/vmlinuz"):
        kvmc.VM("/nonexistent/vmlinuz")
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a kernel" * 100)
    with pytest.raises(kvmc.ImageFormatError, match="not a Linux bzImage or ELF kernel"):
        kvmc.VM(junk)  # a pathlib.Path
    with pytest.raises(ValueError):  # ImageFormatError is a ValueError too
        kvmc.VM(junk)
    with pytest.raises(kvmc.InvalidArgumentError, match="cpus 0"):
        kvmc.VM(guest_elf, cpus=0)
    with pytest.raises(ValueError, match="cpus"):
        kvmc.VM(guest_elf, cpus=1 << 40)
    with pytest.raises(ValueError, match="negative"):
        kvmc.VM(guest_elf, memory=-1)
    with pytest.raises(ValueError, match="not a size"):
        kvmc.VM(guest_elf, memory="lots")
    with pytest.raises(TypeError, match="cpus must be an int"):
        kvmc.VM(guest_elf, cpus="2")
    with pytest.raises(TypeError, match="kernel must be a path"):
        kvmc.VM(42)
    with pytest.raises(TypeError, match="not both"):
        kvmc.VM(guest_elf, kernel_image=b"\x7fELF")
    with kvmc.VM(memory="16M") as empty:  # no kernel: for load_snapshot() only
        with pytest.raises(kvmc.StateError, match="no kernel and no snapshot"):
            empty.start()
    with pytest.raises(FileNotFoundError):
        kvmc.VM(guest_elf, disks=[tmp_path / "missing.img"])
    with kvmc.VM(pathlib.Path(guest_elf), memory="32M") as vm:
        with pytest.raises(TypeError, match="read must be callable"):
            vm.add_mmio_device(0xd0000000, 0x1000, read=5)
        with pytest.raises(ValueError, match="size"):
            vm.add_mmio_device(0xd0000000, -1, read=lambda o, s: 0)
        with pytest.raises(ValueError, match="port"):
            vm.add_pio_device(0x10000, 1, read=lambda o, s: 0)
        with pytest.raises(ValueError, match="length"):
            vm.read_memory(0, -1)
        with pytest.raises(kvmc.InvalidArgumentError, match="is not RAM"):
            vm.read_memory(64 << 20, 1)
        with pytest.raises(kvmc.InvalidArgumentError, match="GSI 24"):
            vm.set_irq_line(24, True)
        with pytest.raises(kvmc.BusyError, match="overlaps"):
            vm.add_pio_device(0x3f8, 1, read=lambda o, s: 0)  # COM1
        assert vm.run(timeout=20).clean


def test_error_codes_are_named(guest_elf):
    with pytest.raises(kvmc.KvmcError) as err:
        kvmc.VM(guest_elf, cpus=0)
    assert err.value.code is kvmc.ErrorCode.EINVAL
    assert err.value.code.name == "EINVAL"


@pytest.mark.parametrize("value, cause", [(1 << 100, ValueError), ("x", TypeError),
                                          (None, TypeError)])
def test_a_bad_read_value_is_a_callback_error(guest_elf, value, cause):
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=devices") as vm:
        vm.add_pio_device(0x600, 4, read=lambda off, size: value)
        with pytest.raises(kvmc.CallbackError) as err:
            vm.run(timeout=20)
        assert isinstance(err.value.__cause__, cause)


def test_negative_read_values_are_twos_complement(guest_elf):
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=devices") as vm:
        vm.add_pio_device(0x600, 4, read=lambda off, size: -1)
        assert vm.run(timeout=20).clean
        assert "read 0xffffffff" in vm.console_text


def test_close_and_wait_from_a_callback_are_errors_not_deadlocks(guest_elf):
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=devices") as vm:
        vm.add_pio_device(0x600, 4, write=lambda off, size, value: vm.close())
        with pytest.raises(kvmc.CallbackError) as err:
            vm.run(timeout=20)
        assert isinstance(err.value.__cause__, kvmc.StateError)
        assert "callback" in str(err.value.__cause__)
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=devices") as vm:
        vm.add_pio_device(0x600, 4, write=lambda off, size, value: vm.wait())
        with pytest.raises(kvmc.CallbackError) as err:
            vm.run(timeout=20)
        assert isinstance(err.value.__cause__, kvmc.StateError)


def test_a_device_raises_an_interrupt(guest_elf):
    """The guest routes GSI 10 to a vector and asks the device to raise it."""
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=irq") as vm:
        def write(offset, size, gsi):
            vm.set_irq_line(gsi, True)
            vm.set_irq_line(gsi, False)
        vm.add_pio_device(0x600, 4, write=write)
        assert vm.run(timeout=20).clean
        assert "irq: gsi 10 delivered vector 0x50" in vm.console_text


def run_script(guest_elf, body, timeout=20, signal_after=None):
    """Runs body (a script with `vm` created) in a fresh interpreter."""
    script = textwrap.dedent(f"""\
        import kvmc, sys
        vm = kvmc.VM({guest_elf!r}, memory="32M", cmdline=sys.argv[1])
        """) + textwrap.dedent(body)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(pathlib.Path(kvmc.__file__).parents[1])
    cmdline = "kvmc.test=flood" if "flood" in body else IDLE
    # SIGINT back to its default in the child: a runner that starts the
    # suite in the background (CI does) passes SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler at all.
    proc = subprocess.Popen([sys.executable, "-c", script, cmdline], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if signal_after is not None:
        time.sleep(signal_after)
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the script hung")
    return proc.returncode, out, err


@pytest.mark.parametrize("body", [
    # the guest floods the console while the interpreter shuts down
    """
    vm.start()
    vm.wait_for_console("flood line 10", timeout=10)
    """,
    # an error with a running VM ends the script
    """
    vm.start()
    vm.wait_for_console("echo: ready", timeout=10)
    vm.add_pio_device(0x700, 1, read=lambda o, s: 0)
    """,
    """
    vm.start()
    vm.wait_for_console("echo: ready", timeout=10)
    vm.get_regs(0)
    """,
])
def test_a_script_may_end_with_a_vm_running(guest_elf, body):
    rc, out, err = run_script(guest_elf, body)
    assert rc in (0, 1), err
    if rc == 1:
        assert "StateError" in err, err


def test_ctrl_c_stops_run_promptly(guest_elf):
    t0 = time.monotonic()
    rc, out, err = run_script(guest_elf, """
    print("running", flush=True)
    try:
        vm.run()
    except KeyboardInterrupt:
        print("interrupted, state", vm.state.name, flush=True)
        raise
    """, signal_after=1.5)
    assert time.monotonic() - t0 < 10
    assert "interrupted, state EXITED" in out, (out, err)
    assert "KeyboardInterrupt" in err
    assert rc != 0


def test_console_input_event_callback_kernel_image_and_memory_backing(guest_elf):
    events = []
    image = pathlib.Path(guest_elf).read_bytes()
    with kvmc.VM(kernel_image=image, memory="32M", memory_backing="memfd", cmdline=IDLE,
                 on_event=events.append) as vm:
        vm.start()
        vm.wait_for_console("echo: ready", timeout=20)
        vm.console_write(b"typed in\r")
        assert vm.wait(timeout=20).clean
        assert "echo: typed in" in vm.console_text
    assert events == [kvmc.Event.STARTED, kvmc.Event.EXITED]


def test_a_vsock_connector_routes_guest_connections(tmp_path, guest_elf):
    import socket
    asked = []
    mine, theirs = socket.socketpair()

    def connect(port):
        asked.append(port)
        return mine if port == 5000 else None

    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=vsock",
                 vsock=(3, tmp_path / "v.sock"), vsock_connector=connect) as vm:
        vm.start()
        theirs.settimeout(20)
        data = theirs.recv(64)
        theirs.sendall(data.upper())
        vm.wait(timeout=30)
        assert "refused ok, guest->host reply 'HELLO VSOCK'" in vm.console_text
    assert asked[:2] == [5001, 5000]


def test_a_pci_device_written_in_python(guest_elf):
    """The guest's PCI core finds, sizes and maps it; its BARs answer from
    Python; a write asks it to raise MSI-X, which reaches the guest."""
    stored = {"value": 0}
    raised = []

    def read(bar, offset, size):
        if bar == 0:
            return stored["value"] if offset == 0 else 0xc0de0000 + offset
        return 0x40 + offset if bar == 1 else 0

    def write(bar, offset, size, value):
        if bar == 0 and offset == 0:
            stored["value"] = value
        elif bar == 0 and offset == 4:
            raised.append(value)
            dev.notify(value)

    with kvmc.VM(guest_elf, memory="64M", cmdline="kvmc.test=pci") as vm:
        dev = vm.add_pci_device(0x1234, 0xbeef, class_code=0xff0000, msix_vectors=2,
                                bars=[(0x1000, "mem32"), (0x10, "io"), (0x10000, "mem64")],
                                read=read, write=write)
        assert dev.slot == 1
        with pytest.raises(kvmc.InvalidArgumentError):
            dev.notify(2)
        assert vm.run(timeout=60).clean
        text = vm.console_text
    for line in ("pci: bar sizes 4096 16 65536 0 4096 0",
                 "pci: bar 0 answers: yes", "pci: bar 1 answers: yes",
                 "pci: msix vector 0 delivered: yes",
                 "pci: masked vector held pending, delivered on unmask: yes",
                 "pci: moved bar 0 answers: yes"):
        assert line in text, text
    assert stored["value"] == 0x5A5A and raised == [0, 1]
    with pytest.raises(kvmc.ClosedError):
        dev.notify(0)


def test_bad_pci_devices_name_the_problem(guest_elf):
    with kvmc.VM(guest_elf, memory="32M") as vm:
        with pytest.raises(kvmc.InvalidArgumentError, match="power of two"):
            vm.add_pci_device(0x1234, 1, bars=[(3000, "mem32")])
        with pytest.raises(ValueError, match="bars\\[0\\]"):
            vm.add_pci_device(0x1234, 1, bars=[(4096, "rom")])
        with pytest.raises(ValueError, match="vendor_id"):
            vm.add_pci_device(0x10000, 1)
        with pytest.raises(TypeError):
            vm.add_pci_device(0x1234, 1, read=42)


@pytest.mark.parametrize("vfio, message", [
    (["zz"], "'zz' is not a PCI address"),
    (["00:1f.7", "0000:00:1f.7"], "added twice"),
    (["0000:7f:1f.7"], "VFIO device 0000:7f:1f.7: no such PCI device"),
])
def test_vfio_errors_name_the_device(guest_elf, vfio, message):
    """The checks that need no IOMMU (the lab passes a real device through)."""
    with pytest.raises(kvmc.InvalidArgumentError, match=message):
        kvmc.VM(guest_elf, vfio=vfio)
    with pytest.raises(TypeError, match="list of PCI addresses"):
        kvmc.VM(guest_elf, vfio="0000:00:03.0")


@pytest.mark.parametrize("transport", ["mmio", "pci"])
def test_virtio_on_either_transport(guest_elf, transport):
    with kvmc.VM(guest_elf, memory="64M", rng=True, transport=transport,
                 cmdline="kvmc.test=virtio") as vm:
        assert vm.run(timeout=30).clean
        assert "virtio-rng: 64 bytes" in vm.console_text
    with pytest.raises(ValueError, match="transport"):
        kvmc.VM(guest_elf, transport="isa")
