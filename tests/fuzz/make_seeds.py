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

os.makedirs(os.path.join(out, "cli_options"), exist_ok=True)
for i, args in enumerate([
        ["--kernel", "bzImage", "--mem", "512M", "--cpus", "2", "--cmdline", "console=ttyS0"],
        ["-k", "vmlinux", "--disk", "a.img,ro,serial=abc", "--disk", "b.img", "--rng"],
        ["--net", "user,hostfwd=tcp::2222-:22", "--vsock", "cid=3,uds=/tmp/v.sock",
         "--virtio-console", "socket:/tmp/c.sock", "--seccomp", "off", "-hk"],
        ["--mem-backing", "memfd", "--boot", "pvh", "--console", "file:/tmp/out"]]):
    with open(os.path.join(out, "cli_options", "seed%d" % i), "wb") as f:
        f.write(b"\0".join(a.encode() for a in args))

# virtio_mmio: each device brought up by the register sequence a driver
# uses, with one queue of 8 at 0x1000/0x2000/0x3000 and a notify.
os.makedirs(os.path.join(out, "virtio_mmio"), exist_ok=True)
def op(kind, offset, value, size=4):
    return bytes([kind, offset & 0xff, offset >> 8, {4: 0, 1: 3, 2: 4, 8: 5}[size]]) + \
        struct.pack("<I", value)
image = bytearray(0x4000)
struct.pack_into("<QIHH", image, 0x1000, 0x3800, 16, 1, 1)        # request header
struct.pack_into("<QIHH", image, 0x1010, 0x3900, 512, 1 | 2, 2)   # data, writable
struct.pack_into("<QIHH", image, 0x1020, 0x3a00, 1, 2, 0)         # status
struct.pack_into("<HHH", image, 0x2000, 0, 1, 0)                  # avail: idx 1, head 0
bring_up = b"".join([
    op(0, 0x070, 0), op(0, 0x070, 3), op(0, 0x024, 1), op(0, 0x020, 1), op(0, 0x070, 11),
    op(1, 0x070, 0), op(0, 0x030, 0), op(1, 0x034, 0), op(0, 0x038, 8),
    op(0, 0x080, 0x1000), op(0, 0x090, 0x2000), op(0, 0x0a0, 0x3000), op(0, 0x044, 1),
    op(0, 0x030, 1), op(0, 0x038, 8), op(0, 0x080, 0x1000), op(0, 0x090, 0x2000),
    op(0, 0x0a0, 0x3000), op(0, 0x044, 1), op(0, 0x070, 15), op(0, 0x050, 0),
    op(2, 0, 0), op(2, 0, 1), op(1, 0x060, 0), op(0, 0x064, 1), op(1, 0x100, 0, 8),
    op(0, 0x070, 0)])
for device in range(5):  # blk, rng, console, vsock, net (null backend)
    extra = op(3, 0, 60) + op(2, 0, 0) if device == 4 else b""  # a host frame
    with open(os.path.join(out, "virtio_mmio", "device%d" % device), "wb") as f:
        f.write(bytes([device]) + struct.pack("<H", len(image)) + bytes(image) + bring_up + extra)

# legacy_devices: what Linux's 8250 driver and I/O APIC code do at boot,
# then pin changes and EOIs. Port addresses go through port_of() in the
# target: address = base_index + 8 * (port - base + 2).
os.makedirs(os.path.join(out, "legacy_devices"), exist_ok=True)
def pio(kind, base_index, delta, value, size=1):
    addr = base_index + 8 * (delta + 2)
    return bytes([kind, addr & 0xff, addr >> 8, {1: 0, 2: 1, 4: 2}[size]]) + struct.pack("<I", value)
def ioapic(kind, offset, value):
    return bytes([kind, offset & 0xff, offset >> 8, 2]) + struct.pack("<I", value)
serial = b"".join([
    pio(0, 0, 3, 0x80), pio(0, 0, 0, 1), pio(0, 0, 1, 0), pio(0, 0, 3, 0x03),  # 115200 8n1
    pio(0, 0, 1, 0x0f), pio(0, 0, 4, 0x1b),  # all interrupts on, loopback
    pio(0, 0, 0, ord("k")), pio(1, 0, 5, 0), pio(1, 0, 2, 0), pio(1, 0, 0, 0),
    pio(0, 0, 4, 0x0b), pio(0, 0, 0, ord("\n")), pio(1, 0, 6, 0), pio(0, 0, 7, 0x5a)])
apic = b"".join([
    ioapic(2, 0x00, 0x12), ioapic(2, 0x10, 0x01000000),      # pin 1: destination 1
    ioapic(2, 0x00, 0x18), ioapic(2, 0x10, 0x8024),          # pin 4: vector 0x24, level
    bytes([4, 4, 0, 0]) + struct.pack("<I", 0x2401),         # raise pin 4, EOI 0x24
    bytes([4, 4, 0, 0]) + struct.pack("<I", 0x2400),
    ioapic(3, 0x10, 0), ioapic(2, 0x00, 0x01), ioapic(3, 0x10, 0)])
for name, ops in (("serial", serial), ("ioapic", apic), ("both", serial + apic)):
    with open(os.path.join(out, "legacy_devices", name), "wb") as f:
        f.write(ops)

# dns_forward: a DNS query frame from the guest to 10.0.2.3:53, answered
# (selector 1) with a well-formed reply of the same ID; and one not for the
# nameserver at all.
os.makedirs(os.path.join(out, "dns_forward"), exist_ok=True)
def udp_frame(dst, dport, payload):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0, 64, 17, 0,
                     bytes([10, 0, 2, 15]), bytes(dst))
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0)
    return bytes.fromhex("525500000203" "525400123456" "0800") + ip + udp + payload
query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03kvm\x04test\x00\x00\x01\x00\x01"
answer = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + query[12:] + \
    b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x02\x02"
for name, sel, frame, rest in (("query", 1, udp_frame([10, 0, 2, 3], 53, query), answer),
                               ("other", 0, udp_frame([10, 0, 2, 2], 53, query), b"")):
    with open(os.path.join(out, "dns_forward", name), "wb") as f:
        f.write(bytes([sel]) + struct.pack("<H", len(frame)) + frame + rest)

# pci: what Linux does with a device: IDs, BAR sizing, decoding on, MSI-X
# enabled, a table entry written and unmasked, a vector raised. Operations
# are [op, a, b, size, value]: for ECAM, device a % 32 and register
# (a >> 5 | b << 3); for a BAR access, device a % 32 and BAR (a >> 5) % 6.
os.makedirs(os.path.join(out, "pci"), exist_ok=True)
def pci_op(op, a, b, size_code, value):
    return bytes([op, a, b, size_code]) + struct.pack("<I", value & 0xffffffff)
linux = b"".join([
    pci_op(1, 0x01, 0, 2, 0),                 # 00:01.0 IDs
    pci_op(0, 0x01, 2, 2, 0xffffffff),        # size BAR 0
    pci_op(1, 0x01, 2, 2, 0),
    pci_op(0, 0x01, 2, 2, 0xc1000000),        # place it
    pci_op(0, 0x81, 0, 1, 0x0006),            # command: memory, bus master
    pci_op(0, 0x41, 8, 1, 0x8000),            # MSI-X control: enable
    pci_op(4, 0x81, 0, 2, 0xfee00000),        # BAR 4 (the table): address
    pci_op(4, 0x81, 2, 2, 0x80000041),        # data
    pci_op(4, 0x81, 3, 2, 0x80000000),        # unmask
    pci_op(5, 0, 0, 0, 0),                    # raise vector 0
    pci_op(2, 0, 0, 2, 0x80001000),           # 0xcf8: 00:02.0 (virtio-rng), then read
    pci_op(3, 0, 0, 2, 0),
])
with open(os.path.join(out, "pci", "linux"), "wb") as f:
    f.write(linux)

# vfio_pci: an NVMe-like device's config space (64-bit BAR 0, PM, MSI and
# MSI-X capabilities, the table at 0x2000 and the PBA at 0x3000 of BAR 0),
# then what Linux does: size and place BAR 0, decode, enable MSI-X, write
# and unmask vector 0, touch a register. Operations are [op, a, b, size,
# value]: ECAM register a; BAR 0 offset ((a | b << 8) << 2).
os.makedirs(os.path.join(out, "vfio_pci"), exist_ok=True)
cfg = bytearray(256)
struct.pack_into("<HHHH", cfg, 0, 0x1b36, 0x0010, 0, 0x0010)   # IDs, status: caps
cfg[8:12] = bytes([2, 0x02, 0x08, 0x01])                       # NVMe
struct.pack_into("<I", cfg, 0x10, 0x4)                          # 64-bit memory
cfg[0x34] = 0x40
cfg[0x40:0x42] = bytes([0x01, 0x50])                            # PM
cfg[0x50:0x52] = bytes([0x05, 0x60])                            # MSI
cfg[0x60:0x62] = bytes([0x11, 0x00])                            # MSI-X, 8 vectors
struct.pack_into("<HII", cfg, 0x62, 7, 0x2000, 0x3000)
def vop(op, reg_or_offset, value, size_code=2):
    a, b = reg_or_offset & 0xff, reg_or_offset >> 8
    return bytes([op, a, b, size_code]) + struct.pack("<I", value & 0xffffffff)
linux = b"".join([
    vop(1, 0x00, 0), vop(0, 0x10, 0xffffffff), vop(1, 0x10, 0),
    vop(0, 0x10, 0xc1000004), vop(0, 0x04, 0x0006, 1),
    vop(0, 0x42, 0x8000 << 16),                                 # MSI-X enable (cap at 0x40)
    vop(2, 0x2000 >> 2, 0x80000000 | 0xfee00000 >> 1),         # table: written (bit 31)
    vop(2, (0x2000 + 8) >> 2, 0x80000041),
    vop(2, (0x2000 + 12) >> 2, 0x80000000),
    vop(2, 0x14 >> 2, 0x80460001), vop(2, 0x1c >> 2, 0),
])
with open(os.path.join(out, "vfio_pci", "linux"), "wb") as f:
    f.write(bytes(cfg) + linux)

# snapshot: a valid state file (the container's format, docs in
# core/src/snapshot/format.h): three sections, the CRC over the body.
import zlib
os.makedirs(os.path.join(out, "snapshot"), exist_ok=True)
body = b"".join(struct.pack("<II", tag, len(data)) + data for tag, data in
                [(0x55415254, struct.pack("<IQ", 0xdeadbeef, 0x0123456789abcdef)),
                 (0x4d454d21, b"hello"), (7, b"")])
header = (b"KVMCSNAP" + struct.pack("<II", 1, 0) + b"1.1.0".ljust(16, b"\0") +
          struct.pack("<QII", len(body), zlib.crc32(body), 0))
with open(os.path.join(out, "snapshot", "valid"), "wb") as f:
    f.write(header + body)

# snapshot: a real state file, written by kvmc (the test guest counting,
# saved on SIGUSR2), once with kvmc's I/O APIC, once with the kernel's
# irqchip and PIT, once with a disk and rng, and once with every virtio
# device. Needs /dev/kvm, as the rest of CI does.
import signal
import subprocess
import tempfile
import time
for name, extra in (("kvmc", ["--cmdline", "kvmc.test=flood"]),
                    ("kvmc-pit", ["--cmdline", "kvmc.test=flood", "--pit", "--cpus", "2"]),
                    ("kvmc-virtio", ["--cmdline", "kvmc.test=disk-count", "--rng", "--disk"]),
                    ("kvmc-streams", ["--cmdline", "kvmc.test=disk-count", "--rng", "--net", "user",
                                      "--vsock", "cid=3,uds={tmp}/v.sock", "--virtio-console",
                                      "socket:{tmp}/hvc.sock", "--disk"])):
    with tempfile.TemporaryDirectory() as tmp:
        snap = os.path.join(tmp, "snap")
        extra = [a.replace("{tmp}", tmp) for a in extra]
        if extra[-1] == "--disk":
            disk = os.path.join(tmp, "disk.img")
            with open(disk, "wb") as f:
                f.truncate(1 << 20)
            extra = extra + [disk]
        proc = subprocess.Popen([os.path.join(build, "cli", "kvmc"), "run", "--kernel",
                                 os.path.join(build, "tests", "guests", "kvmc-test-guest.elf"),
                                 "--mem", "16M", "--console", "none",
                                 "--snapshot-on-signal", snap] + extra,
                                stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR2)
        if proc.wait(timeout=30) != 5:
            sys.exit(f"make_seeds: kvmc did not save its snapshot (status {proc.returncode})")
        shutil.copy(os.path.join(snap, "state"), os.path.join(out, "snapshot", name))

# snapshot: a diff snapshot's state file: the real one above with a BASE
# section (core/src/snapshot/diff.h) of three extents, header made right.
with open(os.path.join(out, "snapshot", "kvmc"), "rb") as f:
    real = f.read()
path = b"/var/lib/kvmc/base"
base = (struct.pack("<II", 1, len(path)) + path + struct.pack("<IQQ", 0x1234abcd, 4096, 3) +
        struct.pack("<6Q", 0, 2, 16, 1, 4095, 1))
body = real[48:] + struct.pack("<II", 0x45534142, len(base)) + base
with open(os.path.join(out, "snapshot", "kvmc-diff"), "wb") as f:
    f.write(real[:32] + struct.pack("<QII", len(body), zlib.crc32(body), 0) + body)

# fc_api: Firecracker API request sequences (tests/fuzz/fuzz_fc_api.c): the
# SDK's boot flow, then pause, snapshot, metadata and bad bodies.
def request(method, path, body=b""):
    return (bytes([("GET", "PUT", "PATCH", "DELETE").index(method)]) + path.encode() + b"\n" +
            struct.pack("<H", len(body)) + body)

os.makedirs(os.path.join(out, "fc_api"), exist_ok=True)
guest = os.path.join(build, "tests", "guests", "kvmc-test-guest.elf").encode()
flows = {
    "sdk-boot": [
        ("PUT", "/logger", b'{"log_path": "/tmp/log", "level": "Info", "show_level": true}'),
        ("PUT", "/metrics", b'{"metrics_path": "/tmp/metrics"}'),
        ("PUT", "/machine-config", b'{"vcpu_count": 2, "mem_size_mib": 64, "smt": false}'),
        ("GET", "/machine-config", b""),
        ("PUT", "/boot-source", b'{"kernel_image_path": "' + guest + b'", "boot_args": "x"}'),
        ("PUT", "/drives/rootfs", b'{"drive_id": "rootfs", "path_on_host": "' + guest +
         b'", "is_root_device": true, "is_read_only": true}'),
        ("PUT", "/network-interfaces/eth0", b'{"iface_id": "eth0", "host_dev_name": "tap0", '
         b'"guest_mac": "06:00:00:00:00:01"}'),
        ("PUT", "/vsock", b'{"guest_cid": 3, "uds_path": "/tmp/v.sock"}'),
        ("PUT", "/mmds/config", b'{"network_interfaces": ["eth0"], "version": "V2"}'),
        ("PUT", "/mmds", b'{"latest": {"meta-data": {"id": "i-1"}}}'),
        ("PUT", "/actions", b'{"action_type": "InstanceStart"}'),
        ("PATCH", "/vm", b'{"state": "Paused"}'),
        ("PUT", "/snapshot/create", b'{"snapshot_path": "/tmp/s", "mem_file_path": "/tmp/m"}'),
        ("PATCH", "/vm", b'{"state": "Resumed"}'),
        ("PATCH", "/mmds", b'{"latest": {"meta-data": {"id": null}}}'),
        ("GET", "/mmds", b""),
        ("PUT", "/actions", b'{"action_type": "FlushMetrics"}'),
        ("PUT", "/actions", b'{"action_type": "SendCtrlAltDel"}'),
        ("GET", "/vm/config", b""),
        ("GET", "/", b""),
    ],
    "bad-bodies": [
        ("PUT", "/machine-config", b'{"vcpu_count": "2", "mem_size_mib": 1e3}'),
        ("PUT", "/drives/a", b'{"drive_id": "b"}'),
        ("PUT", "/boot-source", b'{"kernel_image_path": "../../etc/passwd"}'),
        ("PUT", "/snapshot/load", b'{"snapshot_path": "/tmp", "mem_backend": {"backend_type": '
         b'"File", "backend_path": "/tmp"}, "network_overrides": [{}]}'),
        ("PATCH", "/mmds", b'[[[[[[[[{}]]]]]]]]'),
        ("GET", "/drives/../..", b""),
    ],
}
for name, reqs in flows.items():
    with open(os.path.join(out, "fc_api", name), "wb") as f:
        f.write(b"".join(request(*r) for r in reqs))
