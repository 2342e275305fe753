"""1000 create/run/close cycles in one interpreter: descriptors, threads and
resident memory stay flat (bounds, not timings)."""
import gc
import os
import threading

import kvmc


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cycle(guest_elf, i):
    with kvmc.VM(guest_elf, memory="16M", cpus=1 + i % 2,
                 cmdline="kvmc.test=boot-only" if i % 3 else None) as vm:
        assert vm.run(timeout=20).reason == kvmc.ExitReason.POWEROFF


def test_a_thousand_vms_leave_nothing_behind(guest_elf):
    for i in range(50):
        cycle(guest_elf, i)
    gc.collect()  # what earlier tests left for the collector closes now, not mid-count
    fds, threads = len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task"))
    rss = rss_kib()
    for i in range(50, 1000):
        cycle(guest_elf, i)
    gc.collect()
    # A leak grows with the cycles (950 here); fewer is something older
    # being closed.
    assert len(os.listdir("/proc/self/fd")) <= fds
    assert len(os.listdir("/proc/self/task")) <= threads
    assert threading.active_count() == 1
    assert rss_kib() - rss < 8192, f"resident memory grew from {rss} to {rss_kib()} KiB"
