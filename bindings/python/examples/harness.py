#!/usr/bin/env python3
"""A test harness in the style kvmc is made for: boot a guest, give it a
device implemented in Python, drive it, and check what the guest reports.

    python3 harness.py PATH-TO-kvmc-test-guest.elf
"""
import sys
import threading

import kvmc


class Mailbox:
    """An MMIO device: the guest writes a word, reads back its complement."""

    def __init__(self):
        self.lock = threading.Lock()  # vCPU threads call in
        self.received = []

    def write(self, offset, size, value):
        with self.lock:
            self.received.append(value)

    def read(self, offset, size):
        with self.lock:
            last = self.received[-1] if self.received else 0
        return ~last


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    mailbox = Mailbox()
    with kvmc.VM(sys.argv[1], memory="64M", cpus=2, cmdline="kvmc.test=devices") as vm:
        vm.add_mmio_device(0xD0000000, 0x1000, read=mailbox.read, write=mailbox.write)
        result = vm.run(timeout=30)
        checks = {
            "guest powered off cleanly": result.clean,
            "both CPUs ran": "smp: 2 of 2 cpus running" in vm.console_text,
            "device got the guest's word": mailbox.received == [0x1122334455667788],
            "guest read the complement": "read 0xeeddccbbaa998877" in vm.console_text,
        }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    failed = sum(not ok for ok in checks.values())
    print(f"{len(checks) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
