#!/usr/bin/env python3
"""Snapshot timings through the Python binding, for bench/run.py (which runs
it with the build's library): for guests of several RAM sizes, the time to
save a paused VM, to restore the files into a new VM (the kvmc_vm_restore
call: its first instruction can run right after), from kvmc_vm_start of
the restored VM to its first console byte, and a fast reset after the host
dirtied 1 MiB of guest RAM. Prints one JSON object.

usage: snapshot_bench.py GUEST_ELF WORKDIR REPS SIZE_MIB...
"""
import json
import os
import shutil
import statistics
import sys
import time

import kvmc


def main():
    guest, work, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {}
    for mib in (int(s) for s in sys.argv[4:]):
        snap = os.path.join(work, f"snap-{mib}")
        save, restore, first, reset = [], [], [], []
        for _ in range(reps):
            shutil.rmtree(snap, ignore_errors=True)
            with kvmc.VM(guest, memory=f"{mib}M", cmdline="kvmc.test=flood") as vm:
                vm.start()
                vm.wait_for_console("flood line 50 ")
                vm.pause()
                t0 = time.perf_counter()
                vm.snapshot(snap)
                save.append(time.perf_counter() - t0)
                for _ in range(10):
                    vm.write_memory(0x1000000, os.urandom(1 << 20))
                    t0 = time.perf_counter()
                    vm.reset()
                    reset.append(time.perf_counter() - t0)
            with kvmc.VM(memory=f"{mib}M") as vm:
                t0 = time.perf_counter()
                vm.load_snapshot(snap)
                restore.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                vm.start()
                while not vm.console_text:
                    time.sleep(0.00005)
                first.append(time.perf_counter() - t0)
        shutil.rmtree(snap, ignore_errors=True)
        out[f"snapshot_save_ms_{mib}"] = 1000 * statistics.median(save)
        out[f"snapshot_restore_ms_{mib}"] = 1000 * statistics.median(restore)
        out[f"snapshot_first_byte_ms_{mib}"] = 1000 * statistics.median(first)
        out[f"snapshot_reset_1mib_ms_{mib}"] = 1000 * statistics.median(reset)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
