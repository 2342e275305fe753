#!/usr/bin/env python3
"""Seed corpora: the real test guest images for the loaders, and a
well-formed ring (one direct chain, one indirect) for the virtqueue."""
import os
import shutil
import struct
import sys

build, out = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(out, "boot"), exist_ok=True)
os.makedirs(os.path.join(out, "virtqueue"), exist_ok=True)
for name in ("kvmc-test-guest.elf", "kvmc-test-guest.bzImage"):
    shutil.copy(os.path.join(build, "tests", "guests", name), os.path.join(out, "boot", name))

# Header: size 2^3 = 8, start index 0, ring at page 0, aligned, normal used.
header = bytes([3, 0, 0, 0, 0, 0, 0, 0])
base = 0x1000
desc = b""
desc += struct.pack("<QIHH", base + 0x8000, 16, 1, 1)          # readable, NEXT -> 1
desc += struct.pack("<QIHH", base + 0x9000, 512, 1 | 2, 2)     # writable, NEXT -> 2
desc += struct.pack("<QIHH", base + 0xa000, 1, 2, 0)           # writable status
desc += struct.pack("<QIHH", base + 0xb000, 32, 4, 0)          # INDIRECT, 2 entries
desc = desc.ljust(16 * 512, b"\0")
avail = struct.pack("<HHHH", 0, 2, 0, 3)                       # idx 2: heads 0 and 3
ring = (desc + avail).ljust(0xb000, b"\0")
ring += struct.pack("<QIHH", base + 0xc000, 8, 1, 1) + struct.pack("<QIHH", base + 0xd000, 8, 2, 0)
with open(os.path.join(out, "virtqueue", "two-chains"), "wb") as f:
    f.write(header + ring)

os.makedirs(os.path.join(out, "net_spec"), exist_ok=True)
for i, spec in enumerate(["user", "tap=tap0,mac=52:54:00:12:34:56",
                          "user,mac=52:54:00:aa:bb:cc,hostfwd=tcp::2222-:22,"
                          "hostfwd=udp:127.0.0.1:5353-10.0.2.15:53"]):
    with open(os.path.join(out, "net_spec", "seed%d" % i), "w") as f:
        f.write(spec)
