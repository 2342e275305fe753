"""Snapshots from Python: the test guest counts lines on COM1; it is paused
and saved, its VM (or its whole process) ends, and a VM restored from the
files continues the count where it stopped. Then what must be refused."""
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

import kvmc

FLOOD = re.compile(r"flood line (\d+) (\.+)$")


def flood_numbers(text):
    """The numbers of the whole flood lines in text (cut lines at both ends
    are skipped)."""
    lines = text.split("\n")[1:-1]
    out = []
    for line in lines:
        m = FLOOD.match(line)
        if m:
            assert len(m.group(2)) == 48, f"a torn line: {line!r}"
            out.append(int(m.group(1)))
    return out


def saved_flood(guest_elf, snap, **config):
    """Runs the counting guest, pauses and saves it into snap; returns what
    it wrote."""
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=flood", **config) as vm:
        vm.start()
        vm.wait_for_console("flood line 300 ")
        vm.pause()
        vm.snapshot(snap)
        assert vm.state == kvmc.State.PAUSED
        return vm.console_text


def assert_continues(before, after):
    both = flood_numbers(before + after)
    assert len(both) > 600, both[:5]
    assert both == list(range(both[0], both[0] + len(both))), "the count skipped or restarted"
    assert flood_numbers(after)[0] > 300


def test_a_restored_vm_continues_the_count(guest_elf, tmp_path):
    snap = tmp_path / "snap"  # a pathlib.Path
    before = saved_flood(guest_elf, snap)
    assert (snap / "state").exists() and (snap / "memory").stat().st_size == 32 << 20
    with kvmc.VM.restore(snap, memory="32M") as vm:
        vm.start()
        vm.wait_for_console("flood line 700 ")
        after = vm.console_text
    assert_continues(before, after)


def test_a_new_process_restores_it(guest_elf, tmp_path):
    snap = tmp_path / "snap"
    before = saved_flood(guest_elf, str(snap), pit=True)
    script = textwrap.dedent(f"""
        import kvmc
        with kvmc.VM.restore({str(snap)!r}, memory="32M", pit=True) as vm:
            vm.start()
            vm.wait_for_console("flood line 700 ")
            print(vm.console_text, end="")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert_continues(before, out.stdout)


def test_what_cannot_be_saved_or_restored_raises(guest_elf, tmp_path):
    snap = tmp_path / "snap"
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=flood") as vm:
        with pytest.raises(kvmc.StateError, match="not paused"):
            vm.snapshot(snap)
        vm.start()
        with pytest.raises(kvmc.StateError, match="not paused"):
            vm.snapshot(snap)
        with pytest.raises(kvmc.StateError, match="started already"):
            vm.load_snapshot(tmp_path)
        with pytest.raises(TypeError, match="path"):
            vm.snapshot(42)
        vm.pause()
        vm.snapshot(snap)
    with pytest.raises(kvmc.ClosedError):
        vm.snapshot(snap)
    with pytest.raises(FileNotFoundError):
        kvmc.VM.restore(tmp_path / "missing", memory="32M")
    with pytest.raises(kvmc.InvalidArgumentError, match="32 MiB"):
        kvmc.VM.restore(snap, memory="64M")
    with pytest.raises(kvmc.InvalidArgumentError, match=r"has a virtio-rng \(virtio device 0\), which the snapshot lacks"):
        kvmc.VM.restore(snap, memory="32M", rng=True)
    (snap / "state").write_bytes((snap / "state").read_bytes()[:-1])
    with pytest.raises(kvmc.ImageFormatError, match="truncated"):
        kvmc.VM.restore(snap, memory="32M")
    with kvmc.VM(guest_elf, memory="32M") as vm:
        vm.add_pci_device(0x1234, 0x5678, bars=[(4096, "mem32")])
        vm.start()
        vm.pause()
        with pytest.raises(kvmc.NotSupportedError, match=r"PCI devices \(from the program\)"):
            vm.snapshot(tmp_path / "other")


def test_snapshot_from_a_callback_is_refused(guest_elf, tmp_path):
    seen = []

    def on_event(event):
        if event == kvmc.Event.STARTED and not seen:
            try:
                vm.snapshot(tmp_path / "snap")
            except kvmc.StateError as e:
                seen.append(str(e))

    vm = kvmc.VM(guest_elf, memory="32M", on_event=on_event)
    with vm:
        vm.run(timeout=30)
    assert seen and "from a callback of this VM" in seen[0]


def test_a_harness_resets_the_guest_1000_times(guest_elf, tmp_path):
    """What a test harness does: boot once, snapshot, then before every
    test reset to it. After each of 1000 resets the registers are the
    snapshot's, a word the previous round wrote into RAM is gone, and the
    guest writes the same next lines as the first time."""
    import time
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=flood") as vm:
        vm.start()
        vm.wait_for_console("flood line 300 ")
        vm.pause()
        vm.snapshot(tmp_path / "snap")
        regs = vm.get_regs()
        marker = vm.read_memory(0x1000000, 8)

        def next_lines():
            mark = len(vm.console_text)
            vm.resume()
            deadline = time.monotonic() + 10
            while vm.console_text[mark:].count("\n") < 3:
                assert time.monotonic() < deadline, "the guest stopped writing"
                time.sleep(0.0005)
            vm.pause()
            return "\n".join(vm.console_text[mark:].split("\n")[:3])

        first = next_lines()
        took = []
        for i in range(1000):
            vm.write_memory(0x1000000, b"harness!")
            t0 = time.perf_counter()
            vm.reset()
            took.append(time.perf_counter() - t0)
            assert vm.get_regs() == regs, f"round {i}: registers differ"
            assert vm.read_memory(0x1000000, 8) == marker, f"round {i}: RAM kept a write"
            assert next_lines() == first, f"round {i}: the guest wrote something else"
        took.sort()
        print(f"reset: median {took[500] * 1e3:.3f} ms, worst {took[-1] * 1e3:.3f} ms")
    with kvmc.VM(guest_elf, memory="32M") as vm:
        with pytest.raises(kvmc.StateError, match="no snapshot"):
            vm.reset()


DISK_LINE = re.compile(r"disk line (\d+) (ok|FAILED.*?)( vsock resets (\d+))?$")


def disk_lines(text):
    """(number, vsock resets) of each whole "disk line" (the test guest's
    disk-count mode), asserting each is ok."""
    out = []
    for line in text.split("\n")[1:-1]:
        m = DISK_LINE.match(line)
        if m:
            assert m.group(2) == "ok", line
            out.append((int(m.group(1)), int(m.group(4) or 0)))
    return out


def echo_connector(port):
    """Guest connections to host port 5000 get a socket answered in capitals."""
    import socket
    import threading
    if port != 5000:
        return None
    mine, theirs = socket.socketpair()

    def serve():
        with theirs:
            try:
                data = theirs.recv(64)
                theirs.sendall(data.upper())
                while theirs.recv(64):
                    pass
            except OSError:
                pass  # the VM ended (or was saved and closed) mid-connection
    threading.Thread(target=serve, daemon=True).start()
    return mine


def test_disk_rng_and_vsock_work_after_a_restore(guest_elf, tmp_path):
    """The guest writes its disk, reads the rng and makes a vsock connection
    on every line; saved mid-count, then restored in a new VM: the count
    goes on, every line still ok, the vsock connections after one transport
    reset (the restore ended those of the saved VM)."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    snap = tmp_path / "snap"
    config = dict(memory="32M", cmdline="kvmc.test=disk-count", disks=[disk], rng=True,
                  vsock=(3, tmp_path / "v.sock"), vsock_connector=echo_connector)
    with kvmc.VM(guest_elf, **config) as vm:
        vm.start()
        vm.wait_for_console("disk line 100 ")
        vm.pause()
        vm.snapshot(snap)
        before_text = vm.console_text
    before = disk_lines(before_text)
    last = before[-1][0]
    assert all(resets == 0 for _, resets in before)
    config.pop("cmdline")
    with kvmc.VM.restore(snap, **config) as vm:
        vm.start()
        vm.wait_for_console(f"disk line {last + 101} ")
        after_text = vm.console_text
    after = disk_lines(after_text)
    # A line the snapshot cut in two is whole across the seam.
    numbers = [n for n, _ in disk_lines(before_text + after_text)]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "the count broke"
    assert numbers[-1] >= last + 100
    # One transport reset, then connections again (the first line after the
    # restore may have been done before the guest looked).
    resets = [r for _, r in after]
    assert resets[1:] == [1] * (len(resets) - 1) and resets[0] in (0, 1), resets[:5]


def test_a_diff_snapshot_holds_only_what_changed(guest_elf, tmp_path):
    """A diff is layered on the full snapshot before it: small on disk,
    restored with its base (also the host's own writes into RAM), and a
    reset goes back to it."""
    base, diff = tmp_path / "base", tmp_path / "diff"
    with kvmc.VM(guest_elf, memory="32M", cmdline="kvmc.test=flood") as vm:
        vm.start()
        vm.wait_for_console("flood line 300 ")
        vm.pause()
        with pytest.raises(kvmc.StateError, match="take a full one first"):
            vm.snapshot(diff, diff=True)
        vm.snapshot(base)
        vm.write_memory(0x1000000, b"\xa5" * 4096)
        vm.resume()
        vm.wait_for_console("flood line 500 ")
        vm.pause()
        vm.snapshot(diff, diff=True)
        before = vm.console_text
        with pytest.raises(kvmc.InvalidArgumentError, match="base's own directory"):
            vm.snapshot(base, diff=True)
        with pytest.raises(TypeError, match="diff must be a bool"):
            vm.snapshot(diff, diff="yes")
        rip = vm.get_regs(0)["rip"]
        vm.resume()
        vm.wait_for_console("flood line 700 ")
        vm.pause()
        vm.reset()
        assert vm.get_regs(0)["rip"] == rip, "reset did not go back to the diff"
    used = (diff / "memory").stat().st_blocks * 512
    assert used < (base / "memory").stat().st_blocks * 512 // 4, used
    with kvmc.VM.restore(diff, memory="32M") as vm:
        assert vm.read_memory(0x1000000, 4096) == b"\xa5" * 4096
        vm.start()
        vm.wait_for_console("flood line 900 ")
        after = vm.console_text
    assert_continues(before, after)
    assert flood_numbers(after)[0] > 500
