"""The Python binding against real guests on /dev/kvm."""
import os
import re
import signal
import threading

import pytest

import kvmc


def test_boots_the_test_guest(guest_elf):
    with kvmc.VM(guest_elf, memory="64M", cpus=2, cmdline="from python") as vm:
        result = vm.run(timeout=20)
        assert result.reason == kvmc.ExitReason.POWEROFF
        assert result.clean
        text = vm.console_text
        assert "booted via PVH entry" in text
        assert "cmdline: from python" in text
        assert "smp: 2 of 2 cpus running" in text
        assert "self-check: ok" in text


def test_bzimage_and_console_callback(guest_bzimage):
    chunks = []
    with kvmc.VM(guest_bzimage, memory=64 << 20, console=chunks.append) as vm:
        vm.run(timeout=20)
        assert b"".join(chunks).decode() == vm.console_text
        assert "Linux 64-bit entry" in vm.console_text
        assert "self-check: ok" in list(vm.console_lines())


def test_devices_written_in_python(guest_elf):
    seen = {"pio": [], "mmio": []}
    lock = threading.Lock()

    def writer(kind):
        def write(offset, size, value):
            with lock:
                seen[kind].append((offset, size, value))
        return write

    with kvmc.VM(guest_elf, memory="64M", cmdline="kvmc.test=devices") as vm:
        vm.add_pio_device(0x600, 4, read=lambda off, size: 0xCAFE0000 | size,
                          write=writer("pio"))
        vm.add_mmio_device(0xD0000000, 0x1000, read=lambda off, size: 0x0123456789ABCDEF,
                           write=writer("mmio"))
        result = vm.run(timeout=20)
        assert result.clean, result.message
        assert seen["pio"] == [(0, 4, 0x12345678)]
        assert seen["mmio"] == [(0, 8, 0x1122334455667788)]
        assert "pio: wrote 0x12345678 read 0xcafe0004" in vm.console_text
        assert "mmio: wrote 0x1122334455667788 read 0x0123456789abcdef" in vm.console_text


def test_exception_in_a_callback_is_reported(guest_elf):
    def bad_read(offset, size):
        raise ValueError("device model bug")

    with kvmc.VM(guest_elf, memory="64M", cmdline="kvmc.test=devices") as vm:
        vm.add_pio_device(0x600, 4, read=bad_read)
        with pytest.raises(kvmc.CallbackError) as err:
            vm.run(timeout=20)
        assert isinstance(err.value.__cause__, ValueError)
        assert "device model bug" in str(err.value)


def test_errors_carry_the_c_message(tmp_path, guest_elf):
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a kernel" * 100)
    with pytest.raises(kvmc.KvmcError, match="not a Linux bzImage or ELF kernel"):
        kvmc.VM(str(junk))
    with pytest.raises(kvmc.KvmcError, match="cpus 0"):
        kvmc.VM(guest_elf, cpus=0)
    with pytest.raises(ValueError, match="not a size"):
        kvmc.VM(guest_elf, memory="lots")


def test_pause_resume_stop(guest_elf):
    with kvmc.VM(guest_elf, memory="64M", cmdline="kvmc.test=echo") as vm:
        vm.start()
        vm.wait_for_console("echo: ready", timeout=20)
        assert vm.state == kvmc.State.RUNNING
        with pytest.raises(TimeoutError):
            vm.wait(timeout=0.05)
        vm.pause()
        assert vm.state == kvmc.State.PAUSED
        regs = vm.get_regs(0)
        assert 0x100000 <= regs["rip"] < 0x200000
        vm.set_regs(0, r14=0x1234)
        assert vm.get_regs(0)["r14"] == 0x1234
        vm.set_regs(0, r14=regs["r14"])
        vm.resume()
        with pytest.raises(kvmc.KvmcError, match="paused"):
            vm.get_regs(0)
        assert vm.state == kvmc.State.RUNNING
        vm.stop()
        assert vm.wait(timeout=10).reason == kvmc.ExitReason.STOPPED


def test_how_guests_end(guest_elf):
    cases = {
        "kvmc.test=reset": kvmc.ExitReason.RESET,
        "kvmc.test=triplefault": kvmc.ExitReason.TRIPLE_FAULT,
        "kvmc.test=panic": kvmc.ExitReason.GUEST_PANIC,
        "kvmc.test=acpi-poweroff": kvmc.ExitReason.POWEROFF,
    }
    for cmdline, reason in cases.items():
        with kvmc.VM(guest_elf, memory="64M", cmdline=cmdline) as vm:
            assert vm.run(timeout=20).reason == reason, cmdline


def test_guest_memory(guest_elf):
    with kvmc.VM(guest_elf, memory="64M") as vm:
        vm.write_memory(0x200000, b"kvmc from python")
        assert vm.read_memory(0x200000, 16) == b"kvmc from python"
        with pytest.raises(kvmc.KvmcError, match="is not RAM"):
            vm.read_memory(64 << 20, 1)


def test_virtio_disk_and_rng(tmp_path, guest_elf):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(range(64)) * 512)
    with kvmc.VM(guest_elf, memory="64M", cmdline="kvmc.test=virtio", disks=[str(disk)],
                 rng=True) as vm:
        assert vm.run(timeout=20).clean
        assert "sector 5 write+read ok" in vm.console_text
        assert "virtio: 2 devices" in vm.console_text


def test_pit_is_opt_in(guest_elf):
    for pit, want in ((False, "pit: absent"), (True, "pit: counting")):
        with kvmc.VM(guest_elf, memory="64M", cmdline="kvmc.test=pit", pit=pit) as vm:
            assert vm.run(timeout=20).clean
            assert want in vm.console_text


def test_virtio_console_callback_and_write(guest_elf):
    with kvmc.VM(guest_elf, memory="64M", cmdline="kvmc.test=vconsole",
                 virtio_console=True) as vm:
        vm.start()
        vm.wait_for_virtio_console("hello from hvc0\n", timeout=20)
        assert vm.virtio_console_write(b"ping\n") == 5
        assert vm.wait(timeout=20).clean
        assert "virtio-console: received 'ping'" in vm.console_text
        assert vm.virtio_console_text == "hello from hvc0\necho: ping\n"


def test_vsock_guest_connection_refused_and_net_user(tmp_path, guest_elf):
    """The vsock guest test needs host listeners; with none, its first step
    (a refused connection answered by RST) still shows the device works.
    User networking: the guest's ARP and UDP ping reach an echo server."""
    import socket
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.settimeout(20)
    port = echo.getsockname()[1]
    with kvmc.VM(guest_elf, memory="64M", nets=["user"],
                 cmdline=f"kvmc.test=net kvmc.net=10.0.2.15,10.0.2.2,{port}") as vm:
        vm.start()
        data, peer = echo.recvfrom(100)
        echo.sendto(data, peer)
        assert vm.wait(timeout=20).clean
        assert "udp reply 'kvmc-net-ping'" in vm.console_text
    with kvmc.VM(guest_elf, memory="64M", vsock=(3, tmp_path / "v.sock"),
                 cmdline="kvmc.test=vsock") as vm:
        vm.run(timeout=30)
        assert "refused ok" in vm.console_text


def test_stream_device_errors_name_the_input(tmp_path, guest_elf):
    with pytest.raises(kvmc.KvmcError, match="bogus"):
        kvmc.VM(guest_elf, memory="64M", nets=["bogus"])
    with pytest.raises(kvmc.KvmcError, match="CID 2 is reserved"):
        kvmc.VM(guest_elf, memory="64M", vsock=(2, tmp_path / "v.sock"))
    with pytest.raises(ValueError, match="socket:PATH"):
        kvmc.VM(guest_elf, memory="64M", virtio_console="/tmp/x")


def test_many_vms_from_threads(guest_elf):
    results = []

    def one():
        with kvmc.VM(guest_elf, memory="32M") as vm:
            results.append(vm.run(timeout=30).clean)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 4


def test_close_is_idempotent_and_closed_vm_refuses(guest_elf):
    vm = kvmc.VM(guest_elf, memory="32M")
    vm.close()
    vm.close()
    with pytest.raises(kvmc.KvmcError, match="closed"):
        vm.start()


def test_parse_size_and_version():
    assert kvmc.parse_size("256M") == 256 << 20
    assert kvmc.parse_size("1GiB") == 1 << 30
    assert kvmc.parse_size(4096) == 4096
    assert re.fullmatch(r"1\.\d+\.\d+", kvmc.version()), kvmc.version()
    assert kvmc.kick_signal() == signal.SIGRTMIN + 6


def test_ctrl_alt_del_resets_the_guest(guest_elf):
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=kbd") as vm:
        vm.start()
        vm.wait_for_console("kbd: waiting for ctrl-alt-del", timeout=20)
        vm.send_ctrl_alt_del()
        assert vm.wait(timeout=20).reason == kvmc.ExitReason.RESET
        assert "kbd: ctrl-alt-del pressed, resetting" in vm.console_text


def _thread_names():
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass  # a thread that just ended
    return names


def test_vcpu_threads_carry_the_name_asked_for(guest_elf):
    with kvmc.VM(guest_elf, memory="32M", cpus=2, cmdline="kvmc.test=kbd",
                 vcpu_thread_name="fc_vcpu ") as vm:
        vm.start()
        vm.wait_for_console("kbd: waiting for ctrl-alt-del", timeout=20)
        names = _thread_names()
        assert "fc_vcpu 0" in names and "fc_vcpu 1" in names, names
    with pytest.raises(kvmc.InvalidArgumentError, match="14 bytes, at most 13"):
        kvmc.VM(guest_elf, vcpu_thread_name="fourteen bytes")
    with pytest.raises(TypeError, match="vcpu_thread_name must be a str"):
        kvmc.VM(guest_elf, vcpu_thread_name=b"fc_vcpu ")


def test_stats_count_exits_and_devices(guest_elf, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(range(256)) * 128)
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=virtio", disks=[disk],
                 rng=True) as vm:
        before = vm.stats()
        assert before["exit_io_out"] == 0 and before["block_read_count"] == 0
        vm.run(timeout=20)
        st = vm.stats()
        assert st["exit_io_out"] > 500  # COM1, a byte per exit
        assert st["block_read_count"] >= 1 and st["block_read_bytes"] >= 512
        assert st["block_write_count"] >= 1 and st["rng_bytes"] >= 16
        assert st["virtio_errors"] == 0 and st["net_tx_packets"] == 0
        assert set(st) >= {"exit_mmio_read", "vsock_conns_opened", "net_rx_dropped"}
