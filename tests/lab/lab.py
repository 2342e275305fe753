#!/usr/bin/env python3
"""The nested lab: kvmc boots a real Debian Linux guest.

These machines' /dev/kvm (PVM backend) cannot run an unmodified Linux kernel,
so the lab goes one level down: QEMU in TCG mode emulates an AMD CPU with SVM
(L1), runs Debian's cloud kernel with kvm_amd, and inside it kvmc boots the
same Debian kernel (L2) to a busybox init that prints a marker. QEMU's microvm
machine boots the same L2 inside the same L1 as the reference.

Everything comes from Debian packages, fetched and cached by this script:
qemu-system-x86, busybox-static, cpio, lz4 and linux-image-*-cloud-amd64.

usage: lab.py --kvmc PATH-TO-KVMC [--cache DIR] [--work DIR] [--only SCENARIOS]
              [--boot-loop N [--loop-devices]]

A second L1 (q35, QEMU's emulated Intel IOMMU, an emulated NVMe drive) has
the NVMe passed through to L2 with VFIO, by kvmc (--vfio) and by QEMU as the
reference; the host writes the drive's first sector before and reads L2's
sectors after.

--boot-loop N boots L2 N times under kvmc, N times under kvmc --pit and N
times under QEMU microvm in one L1 (and nothing else), and reports how many
boots of each failed and how (the rare mid-boot triple fault seen in some lab
runs: is it kvmc's?). With --loop-devices every L2 also has a virtio-blk disk
and a virtio-rng (the kvmc-virtio scenario's devices; QEMU's as virtio-mmio).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
DEBIAN_PACKAGES = ["qemu-system-x86", "busybox-static", "cpio", "lz4", "e2fsprogs"]
KERNEL_META = "linux-image-cloud-amd64"
L1_TIMEOUT_S = 1100
SCENARIOS = ["kvmc-bzimage", "kvmc-smp", "kvmc-reboot", "kvmc-fc-sdk", "kvmc-panic", "kvmc-virtio",
             "kvmc-virtio-pci", "kvmc-stream", "kvmc-pci", "kvmc-lua-pci", "qemu-microvm",
             "kvmc-pvh", "kvmc-pit", "kvmc-jail", "kvmc-snapshot", "qemu-snapshot", "kvmc-crash"]
# The second L1: q35 with QEMU's Intel IOMMU and an NVMe drive that kvmc
# (and QEMU, the reference) pass through to L2 with VFIO.
VFIO_SCENARIOS = ["kvmc-vfio", "qemu-vfio"]
NVME_HELLO = "hello nvme from the lab host"
CRASH_KILLS = 20  # SIGKILLs of kvmc while L2 writes and fsyncs records
DNS_NAME, DNS_ADDRESS = "web.lab.kvmc", "10.0.2.2"
# L1 is Debian's KVM on QEMU's emulated SVM. Rarely (seen once in about ten
# runs, with two L2 vCPUs) its vCPU threads lock up inside the L1 kernel;
# kvmc cannot cause that from user space. A hung L1 is killed and rerun
# for the scenarios still without a result, and the output says so.
L1_LOCKUP_LINES = 2
# ...or L1 stops altogether (nothing printed, its vCPUs spinning): also
# treated as a lockup when nothing comes for this long.
L1_STALL_S = 240
# L1 reruns for what has no result yet, each needing the last to finish
# something: QEMU's emulated SVM killed two L1s in one CI run.
L1_RERUNS = 3
LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"
# Loaded by the L2 init, in this order (dependencies first).
L2_MODULES = ["drivers/misc/pvpanic/pvpanic.ko", "drivers/misc/pvpanic/pvpanic-mmio.ko",
              "drivers/virtio/virtio.ko", "drivers/virtio/virtio_ring.ko",
              "drivers/virtio/virtio_mmio.ko", "drivers/block/virtio_blk.ko",
              "drivers/char/hw_random/virtio-rng.ko",
              "net/core/failover.ko", "drivers/net/net_failover.ko", "drivers/net/virtio_net.ko",
              "net/vmw_vsock/vsock.ko", "net/vmw_vsock/vmw_vsock_virtio_transport_common.ko",
              "net/vmw_vsock/vmw_vsock_virtio_transport.ko", "drivers/char/virtio_console.ko",
              "drivers/virtio/virtio_pci_legacy_dev.ko", "drivers/virtio/virtio_pci_modern_dev.ko",
              "drivers/virtio/virtio_pci.ko"]
# L1 gets the lab disk from QEMU over virtio-pci and hands it to kvmc.
# VFIO for the passthrough L1 (Debian builds them as modules).
VFIO_MODULES = ["drivers/vfio/vfio.ko", "drivers/vfio/vfio_iommu_type1.ko",
                "drivers/vfio/vfio_virqfd.ko", "drivers/vfio/pci/vfio-pci-core.ko",
                "drivers/vfio/pci/vfio-pci.ko"]
L1_MODULES = ["virt/lib/irqbypass.ko", "arch/x86/kvm/kvm.ko", "arch/x86/kvm/kvm-amd.ko",
              "drivers/virtio/virtio.ko", "drivers/virtio/virtio_ring.ko",
              "drivers/virtio/virtio_pci_legacy_dev.ko",
              "drivers/virtio/virtio_pci_modern_dev.ko", "drivers/virtio/virtio_pci.ko",
              "drivers/block/virtio_blk.ko"]
DISK_HELLO = "hello from the lab host"


def log(msg):
    print(f"lab: {msg}", flush=True)


def fail_setup(msg):
    print(f"lab: cannot run: {msg}", flush=True)
    print("0 passed, 1 failed")
    sys.exit(1)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def as_root(cmd):
    return cmd if os.geteuid() == 0 else ["sudo"] + cmd


def ensure_packages():
    missing = [p for p in DEBIAN_PACKAGES
               if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                                 capture_output=True, text=True).stdout
               != "install ok installed"]
    if missing:
        log(f"installing Debian packages: {' '.join(missing)}")
        try:
            run(as_root(["apt-get", "update", "-qq"]))
            run(as_root(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get",
                         "install", "-y", "-qq"] + missing))
        except subprocess.CalledProcessError as e:
            fail_setup(f"apt-get install {' '.join(missing)} failed ({e})")


def kernel_package_name():
    out = subprocess.run(["apt-cache", "depends", KERNEL_META],
                         capture_output=True, text=True).stdout
    m = re.search(r"Depends: (linux-image-\S+)", out)
    if not m:
        run(as_root(["apt-get", "update", "-qq"]))
        out = subprocess.run(["apt-cache", "depends", KERNEL_META],
                             capture_output=True, text=True).stdout
        m = re.search(r"Depends: (linux-image-\S+)", out)
    if not m:
        fail_setup(f"apt-cache knows no kernel behind {KERNEL_META}")
    return m.group(1)


def fetch_kernel(cache):
    """Downloads (once) and unpacks the cloud kernel package."""
    pkg = kernel_package_name()
    version = subprocess.run(["apt-cache", "policy", pkg], capture_output=True,
                             text=True).stdout
    m = re.search(r"Candidate: (\S+)", version)
    version = m.group(1) if m else "unknown"
    root = os.path.join(cache, f"{pkg}_{version}")
    if not os.path.isdir(os.path.join(root, "boot")):
        os.makedirs(cache, exist_ok=True)
        log(f"downloading {pkg} {version}")
        try:
            run(["apt-get", "download", f"{pkg}={version}"], cwd=cache,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.CalledProcessError:
            fail_setup(f"apt-get download {pkg}={version} failed")
        deb = [f for f in os.listdir(cache) if f.startswith(pkg) and f.endswith(".deb")]
        tmp = root + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        run(["dpkg-deb", "-x", os.path.join(cache, sorted(deb)[-1]), tmp])
        os.rename(tmp, root)
    kver = os.listdir(os.path.join(root, "lib", "modules"))[0]
    return pkg, version, root, kver


def extract_vmlinux(vmlinuz, out):
    """Cuts the LZ4 payload out of the bzImage: an ELF vmlinux with a PVH note."""
    data = open(vmlinuz, "rb").read()
    at = data.find(LZ4_LEGACY_MAGIC)
    if at < 0:
        fail_setup("no LZ4 payload in the kernel image")
    # lz4 stops at the end of the frame and complains about the trailing
    # bytes; the output is complete all the same.
    subprocess.run(["lz4", "-d", "-c", "-"], input=data[at:], stdout=open(out, "wb"),
                   stderr=subprocess.DEVNULL)
    if open(out, "rb").read(4) != b"\x7fELF":
        fail_setup("the extracted vmlinux is not an ELF file")


def make_cpio(stage, out):
    files = subprocess.run(["find", "."], cwd=stage, capture_output=True,
                           text=True).stdout
    with open(out, "wb") as f:
        run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], cwd=stage,
            input=files.encode(), stdout=f)


def find_library(soname):
    """The path ld.so would load soname from (ldconfig's cache)."""
    out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.strip().startswith(soname + " ") and "x86-64" in line:
            return line.split("=>")[-1].strip()
    raise RuntimeError(f"{soname} not found (apt-get install libslirp0)")


def copy_with_libs(binary, stage):
    """Copies a dynamically linked program and the libraries it needs."""
    dest = os.path.join(stage, binary.lstrip("/"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copy2(binary, dest)
    for line in subprocess.run(["ldd", binary], capture_output=True,
                               text=True).stdout.splitlines():
        m = re.search(r"(/\S+)", line)
        if m and os.path.exists(m.group(1)):
            lib = m.group(1)
            d = os.path.join(stage, lib.lstrip("/"))
            os.makedirs(os.path.dirname(d), exist_ok=True)
            shutil.copy2(lib, d)


def busybox_stage(stage, init):
    os.makedirs(os.path.join(stage, "bin"))
    for d in ("proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(stage, d))
    shutil.copy2("/bin/busybox", os.path.join(stage, "bin", "busybox"))
    for applet in ("sh", "mount", "cat", "cut", "awk", "nproc", "echo", "sleep",
                   "poweroff", "reboot", "grep", "sed", "tr", "head", "tail", "insmod",
                   "umount", "mkdir", "sync", "wc", "od", "sort", "usleep", "kill", "ls",
                   "ip", "wget", "httpd", "seq", "tee", "timeout", "nslookup", "dmesg",
                   "devmem"):
        os.symlink("busybox", os.path.join(stage, "bin", applet))
    shutil.copy2(init, os.path.join(stage, "init"))
    os.chmod(os.path.join(stage, "init"), 0o755)


def build_lab_tool(work):
    """vsock peers, a DNS server, the records writer: static, as L1 and L2
    have no libc."""
    out = os.path.join(work, "lab-tool")
    run(["cc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out,
         os.path.join(LAB_DIR, "lab-tool.c")])
    return out


def build_pcidev_driver(work, kver):
    """The L2 driver for the lab's Lua PCI device, built against Debian's
    headers for the lab kernel (linux-headers-KVER, installed on demand)."""
    pkg = f"linux-headers-{kver}"
    if subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                      text=True).stdout != "install ok installed":
        log(f"installing {pkg} (to build the L2 test driver)")
        try:
            run(as_root(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
                         "-qq", pkg]))
        except subprocess.CalledProcessError as e:
            fail_setup(f"apt-get install {pkg} failed ({e})")
    src = os.path.join(work, "pcidev")
    shutil.copytree(os.path.join(LAB_DIR, "pcidev"), src)
    run(["make", "-s", "-C", f"/usr/src/linux-headers-{kver}", f"M={src}", "modules"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(src, "kvmc_lab_pcidev.ko")


def stage_lua(l1, kvmc):
    """lua5.4, kvmc's Lua binding (built next to the kvmc binary) and the
    lab's Lua device, into L1."""
    build = os.path.dirname(os.path.dirname(os.path.abspath(kvmc)))
    lua_dir = os.path.join(build, "bindings", "lua")
    core = os.path.join(lua_dir, "kvmc_core.so")
    if not os.path.exists(core):
        fail_setup(f"{core} is missing: build the Lua binding (scripts/dev build)")
    copy_with_libs("/usr/bin/lua5.4", l1)
    os.makedirs(os.path.join(l1, "lua"))
    copy_with_libs(core, l1)
    os.symlink(core, os.path.join(l1, "lua", "kvmc_core.so"))
    shutil.copy2(os.path.join(lua_dir, "kvmc.lua"), os.path.join(l1, "lua"))
    shutil.copy2(os.path.join(LAB_DIR, "lab-pcidev.lua"), os.path.join(l1, "lua"))


def stage_firecracker(l1, kvmc, work):
    """kvmc-firecracker (built next to the kvmc binary) and fcboot, a static
    program on the unmodified firecracker-go-sdk (tests/fcsdk/cmd/fcboot)."""
    build = os.path.dirname(os.path.dirname(os.path.abspath(kvmc)))
    server = os.path.join(build, "server", "kvmc-firecracker")
    if not os.path.exists(server):
        fail_setup(f"{server} is missing: build it (scripts/dev build)")
    copy_with_libs(server, l1)
    os.symlink(server, os.path.join(l1, "bin", "kvmc-firecracker"))
    fcboot = os.path.join(work, "fcboot")
    env = dict(os.environ, CGO_ENABLED="0", GOCACHE=os.path.join(build, "go-cache"))
    run(["go", "build", "-o", fcboot, "./cmd/fcboot"],
        cwd=os.path.join(LAB_DIR, "..", "fcsdk"), env=env)
    shutil.copy2(fcboot, os.path.join(l1, "bin", "fcboot"))


def build_images(work, kernel_root, kver, kvmc):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    vmlinuz = os.path.join(kernel_root, "boot", f"vmlinuz-{kver}")
    vmlinux = os.path.join(work, "vmlinux")
    extract_vmlinux(vmlinuz, vmlinux)

    mods = os.path.join(kernel_root, "lib", "modules", kver, "kernel")
    l2 = os.path.join(work, "l2-stage")
    busybox_stage(l2, os.path.join(LAB_DIR, "l2-init"))
    os.makedirs(os.path.join(l2, "modules"))
    for rel in L2_MODULES:
        shutil.copy2(os.path.join(mods, rel), os.path.join(l2, "modules"))
    lab_tool = build_lab_tool(work)
    shutil.copy2(lab_tool, os.path.join(l2, "bin", "lab-tool"))
    shutil.copy2(build_pcidev_driver(work, kver), os.path.join(l2, "modules"))
    l2_cpio = os.path.join(work, "l2-initrd.cpio")
    make_cpio(l2, l2_cpio)

    l1 = os.path.join(work, "l1-stage")
    busybox_stage(l1, os.path.join(LAB_DIR, "l1-init"))
    os.makedirs(os.path.join(l1, "modules"))
    for rel in L1_MODULES + VFIO_MODULES:
        shutil.copy2(os.path.join(mods, rel), os.path.join(l1, "modules"))
    shutil.copy2(lab_tool, os.path.join(l1, "bin", "lab-tool"))
    copy_with_libs(os.path.abspath(kvmc), l1)
    for tool in ("/sbin/e2fsck", "/sbin/debugfs"):  # the crash-consistency checks
        copy_with_libs(tool, l1)
    # kvmc loads libslirp with dlopen, only for --net user: ldd cannot see it.
    copy_with_libs(find_library("libslirp.so.0"), l1)
    os.symlink(os.path.abspath(kvmc), os.path.join(l1, "bin", "kvmc"))
    stage_firecracker(l1, kvmc, work)
    stage_lua(l1, kvmc)
    os.makedirs(os.path.join(l1, "l2"))
    shutil.copy2(vmlinuz, os.path.join(l1, "l2", "vmlinuz"))
    shutil.copy2(vmlinux, os.path.join(l1, "l2", "vmlinux"))
    shutil.copy2(l2_cpio, os.path.join(l1, "l2", "initrd.cpio"))
    copy_with_libs("/usr/bin/qemu-system-x86_64-microvm", l1)
    # The full QEMU for the VFIO reference (the microvm-only build has no
    # vfio-pci).
    copy_with_libs("/usr/bin/qemu-system-x86_64", l1)
    os.makedirs(os.path.join(l1, "qemu"))
    shutil.copy2("/usr/share/qemu/bios-microvm.bin", os.path.join(l1, "qemu"))
    os.makedirs(os.path.join(l1, "etc"), exist_ok=True)
    l1_cpio = os.path.join(work, "l1-initrd.cpio")
    make_cpio(l1, l1_cpio)
    disk = make_disk(work)
    crash_disk = os.path.join(work, "crash.img")  # empty ext4, /dev/vdb in L1
    run(["mkfs.ext4", "-q", "-F", "-L", "kvmccrash", crash_disk, "64M"])
    return vmlinuz, l1_cpio, disk, crash_disk


def make_disk(work):
    return make_disk_at(os.path.join(work, "disk.img"))


def make_disk_at(disk):
    """A small ext4 image holding hello.txt, made without root (mkfs -d)."""
    content = disk + ".content"
    shutil.rmtree(content, ignore_errors=True)
    os.makedirs(content)
    with open(os.path.join(content, "hello.txt"), "w") as f:
        f.write(DISK_HELLO + "\n")
    run(["mkfs.ext4", "-q", "-F", "-L", "kvmclab", "-d", content, disk, "32M"])
    return disk


def make_nvme(work):
    """The NVMe drive's image: NVME_HELLO in sector 0, zeros elsewhere."""
    nvme = os.path.join(work, "nvme.img")
    with open(nvme, "wb") as f:
        f.write(NVME_HELLO.encode())
        f.truncate(32 << 20)
    return nvme


def read_sector(image, sector):
    with open(image, "rb") as f:
        f.seek(sector * 512)
        return f.read(512).rstrip(b"\0").decode(errors="replace").strip()


def read_from_disk(disk, path):
    out = subprocess.run(["debugfs", "-R", f"cat {path}", disk], capture_output=True,
                         text=True)
    return out.stdout.strip()


def run_l1(vmlinuz, l1_cpio, disks, logfile, only, loop=0, nvme=None, loop_devices=False,
           loop_from=1):
    append = "console=ttyS0 panic=-1 quiet" + (f" lab.only={only}" if only else "") + \
        (f" lab.loop={loop} lab.loopfrom={loop_from}" if loop else "") + \
        (" lab.loopdev=1" if loop_devices else "") + \
        f" lab.kills={CRASH_KILLS}"
    if nvme:
        append += " intel_iommu=on iommu=pt lab.vfio=1"
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "EPYC,+svm", "-m", "2048",
           "-smp", "3", "-nographic", "-no-reboot", "-kernel", vmlinuz,
           "-initrd", l1_cpio, "-append", append]
    if nvme:  # HOST-FACTS: QEMU's Intel IOMMU works for VFIO under TCG
        cmd += ["-M", "q35", "-device", "intel-iommu,intremap=on,caching-mode=on",
                "-drive", f"file={nvme},format=raw,if=none,id=nv",
                "-device", "nvme,serial=kvmc-lab-nvme,drive=nv",
                # MSI without MSI-X
                "-device", "edu",
                # two NVMe behind a conventional PCI bridge share an IOMMU
                # group: one for vfio-pci, one the host's (not viable)
                "-device", "pci-bridge,id=br1,chassis_nr=1"]
        for b in (1, 2):
            small = nvme + f".b{b}"
            with open(small, "wb") as f:
                f.truncate(1 << 20)
            cmd += ["-drive", f"file={small},format=raw,if=none,id=nb{b}",
                    "-device", f"nvme,serial=kvmc-lab-nvme-b{b},drive=nb{b},bus=br1,addr={b}"]
    for disk in disks:
        cmd += ["-drive", f"file={disk},format=raw,if=virtio"]
    timeout = L1_TIMEOUT_S + loop * 3 * 60
    log("starting L1: " + " ".join(cmd))
    start = time.monotonic()
    lines = []
    lockups = 0
    stalled = threading.Event()
    with open(logfile, "w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
        last = [time.monotonic()]

        def watchdog():
            while proc.poll() is None:
                if time.monotonic() - last[0] > L1_STALL_S:
                    stalled.set()
                    proc.kill()
                    return
                time.sleep(5)
        threading.Thread(target=watchdog, daemon=True).start()
        try:
            for line in proc.stdout:
                last[0] = time.monotonic()
                out.write(line)
                out.flush()
                line = line.rstrip("\r\n")
                lines.append((time.monotonic() - start, line))
                if line.startswith(("LAB-RESULT", "LAB-DIED-RESULT", "LAB-RETRY", "LAB-L1",
                                    "LAB-LOOP", "LAB-CRASH ")):
                    print(f"  [{time.monotonic() - start:6.1f}s] {line}", flush=True)
                # L1's own kernel (L2's lines start with LAB-): a soft lockup,
                # or a task hung for minutes, as when L1's memory management
                # stopped (khugepaged blocked, seen in CI).
                if not line.startswith("LAB-") and ("soft lockup" in line or
                                                     "blocked for more than" in line):
                    lockups += 1
                    print(f"  [{time.monotonic() - start:6.1f}s] L1: {line.strip()}", flush=True)
                if lockups >= L1_LOCKUP_LINES or time.monotonic() - start > timeout:
                    proc.kill()
                    break
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    if stalled.is_set():
        print(f"  L1: nothing printed for {L1_STALL_S} s; killed as locked up", flush=True)
        lines.append((time.monotonic() - start, "soft lockup (L1 stalled, killed by lab.py)"))
    # An L2 that died before its marker was booted once more (l1-init's
    # run_l2): the checks read only the last attempt; the dead one's lines
    # (LAB-DIED-*) stay in the console log, and its LAB-RETRY line is noted.
    return [(t, l) for t, l in lines if not l.startswith("LAB-DIED-")], time.monotonic() - start


def l1_failed(lines):
    """Why L1 itself did not finish (not L2, not kvmc), or "": a soft lockup,
    a stall, or a panic of L1's own kernel, which QEMU's emulated SVM causes
    now and then (an L1 kernel stack overflow in qemu-system-x86, a vCPU that
    never comes back). Then the lab reruns what has no result yet."""
    own = [l for _, l in lines if not l.startswith("LAB-")]
    for sign in ("soft lockup", "Kernel panic", "BUG: ", "blocked for more than"):
        if any(sign in l for l in own):
            return sign.strip(": ")
    if not any(l.startswith("LAB-L1: done") for _, l in lines):
        return "no end"
    return ""


def l1_tail(lines, n=12):
    """L1's own last lines (its kernel and init, not L2's), for the CI log."""
    return [l for _, l in lines if not l.startswith("LAB-")][-n:]


def parse_results(lines):
    results = {}
    for _, line in lines:
        m = re.match(r"LAB-RESULT name=(\S+) status=(\d+) boot_s=(\S+) total_s=(\S+) "
                     r"marker=\[(.*)\]", line)
        if m:
            results[m.group(1)] = {
                "status": int(m.group(2)), "boot": float(m.group(3)),
                "total": float(m.group(4)), "marker": m.group(5),
            }
    return results


def marker_field(result, key):
    m = re.search(rf"{key}=(\S+)", result["marker"] if result else "")
    return m.group(1) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kvmc", required=True, help="the kvmc binary (copied with its libraries)")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/kvmc-lab"))
    ap.add_argument("--work", default=None)
    ap.add_argument("--only", default="", help="comma-separated scenarios (debugging)")
    ap.add_argument("--boot-loop", type=int, default=0, metavar="N",
                    help="only boot L2 N times under kvmc and N times under QEMU microvm")
    ap.add_argument("--loop-devices", action="store_true",
                    help="with --boot-loop: every L2 has a virtio-blk disk and a virtio-rng")
    args = ap.parse_args()
    work = args.work or os.path.join(os.path.dirname(os.path.abspath(args.kvmc)), "lab")

    t0 = time.monotonic()
    ensure_packages()
    pkg, version, root, kver = fetch_kernel(args.cache)
    log(f"kernel package: {pkg} {version} (kernel {kver})")
    vmlinuz, l1_cpio, disk, crash_disk = build_images(work, root, kver, args.kvmc)
    log(f"images built in {time.monotonic() - t0:.1f}s")
    if args.boot_loop:
        return boot_loop(vmlinuz, l1_cpio, disk, crash_disk, work, args.boot_loop, t0,
                         args.loop_devices)
    wanted = [n for n in SCENARIOS if not args.only or n in args.only.split(",")]
    lines, l1_total = run_l1(vmlinuz, l1_cpio, [disk, crash_disk],
                             os.path.join(work, "l1-console.log"),
                             ",".join(wanted) if args.only else "") if wanted else ([], 0.0)
    results = parse_results(lines)
    missing = [n for n in wanted if n not in results]
    last, rerun = lines, 0
    while missing and l1_failed(last) and rerun < L1_RERUNS:
        rerun += 1
        log(f"L1 failed ({l1_failed(last)}; nested KVM under TCG); L1's last own lines:")
        for line in l1_tail(last):
            log(f"  | {line}")
        log(f"rerun {rerun} of at most {L1_RERUNS} for: {' '.join(missing)}")
        if "kvmc-virtio" in missing:
            os.remove(disk)
            disk = make_disk_at(disk)
        last, more_total = run_l1(vmlinuz, l1_cpio, [disk, crash_disk],
                                  os.path.join(work, f"l1-console-rerun{rerun}.log"),
                                  ",".join(missing))
        lines += last
        l1_total += more_total
        got = parse_results(last)
        results.update(got)
        missing = [n for n in wanted if n not in results]
        if not got:  # a rerun that finished nothing is not a flake: stop
            break
    vfio_wanted = [n for n in VFIO_SCENARIOS if not args.only or n in args.only.split(",")]
    vlines, vfio_total = [], 0.0
    nvme = make_nvme(work)
    if vfio_wanted:
        vlines, vfio_total = run_l1(vmlinuz, l1_cpio, [], os.path.join(work, "l1-vfio-console.log"),
                                    ",".join(vfio_wanted) if args.only else "", nvme=nvme)
        vresults = parse_results(vlines)
        if any(n not in vresults for n in vfio_wanted) and l1_failed(vlines):
            log(f"VFIO L1 failed ({l1_failed(vlines)}); L1's last own lines:")
            for line in l1_tail(vlines):
                log(f"  | {line}")
            log("rerunning it once")
            nvme = make_nvme(work)
            vlines, more = run_l1(vmlinuz, l1_cpio, [], os.path.join(work, "l1-vfio-console-rerun.log"),
                                  ",".join(vfio_wanted) if args.only else "", nvme=nvme)
            vfio_total += more
    lines += vlines
    results.update(parse_results(vlines))
    l1_init = next((float(m.group(1)) for _, l in lines
                    for m in [re.search(r"LAB-L1: init reached at (\S+)s", l)] if m), None)

    checks = []

    def check(name, ok, detail):
        checks.append(ok)
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    def booted(name, cpus="1"):
        r = results.get(name)
        ok = bool(r) and r["status"] == 0 and marker_field(r, "cpus") == cpus
        check(f"lab.{name}", ok, f"{r}" if r else "no result (see the L1 console log)")

    def said(name, text):
        """Whether the L2 kernel of that run printed text."""
        return any(l.startswith(f"LAB-L2[{name}]|") and text in l for _, l in lines)

    booted("kvmc-bzimage")
    booted("kvmc-pvh")
    booted("kvmc-smp", cpus="2")
    booted("kvmc-pit", cpus="2")  # the kernel's full irqchip and PIT (--pit)
    jail = next((l for _, l in lines if l.startswith("LAB-JAIL ")), "")
    after = next((l for _, l in lines if l.startswith("LAB-JAIL-AFTER ")), "")
    procs = re.search(r" procs=(\d+)", jail)
    check("lab.jail-cgroup-v2", "memory.max=335544320 pids.max=66 " in jail and
          bool(procs) and int(procs.group(1)) >= 1 and "cgroup=/sys/fs/cgroup/kvmc-" in jail,
          jail or "no LAB-JAIL line")
    check("lab.jail-cgroup-removed", "cgroups_left=0" in after, after or "no LAB-JAIL-AFTER line")
    snap = next((l for _, l in lines if l.startswith("LAB-SNAPSHOT ")), "")

    def count(field):
        m = re.search(rf"{field}=\[LAB-COUNT i=(\d+) uptime=([\d.]+)\]", snap)
        return (int(m.group(1)), float(m.group(2))) if m else (None, None)
    saved, first, last = count("saved"), count("first"), count("last")
    check("lab.snapshot-save", "save_status=5 " in snap and saved[0] is not None and
          saved[0] >= 10, f"SIGUSR2 saved the counting L2 and kvmc exited 5: {snap or 'nothing'}")
    check("lab.snapshot-restore", "restore_status=0 " in snap and first[0] is not None and
          saved[0] is not None and first[0] == saved[0] + 1 and first[1] >= saved[1] and
          first[1] < saved[1] + 5 and last[0] == 40 and "powered_off=1" in snap and
          "disk_counts=40" in snap,
          "a new kvmc restored it: the count went on from the next number, the uptime from "
          "where it was, to 40 and a clean power-off, each count also written to its own "
          "sector of the virtio disk, before and after (L1 read all 40 back); tsc_unstable "
          "says whether L2's clocksource watchdog saw its TSC and kvm-clock apart after the "
          f"restore (reported, not required: see docs/snapshots.md): {snap or 'nothing'}")
    qsnap = next((l for _, l in lines if l.startswith("LAB-QEMU-SNAPSHOT ")), "")
    m = {k: re.search(rf"{k}=\[LAB-COUNT i=(\d+) ", qsnap) for k in ("saved", "first", "last")}
    n = {k: int(v.group(1)) if v else None for k, v in m.items()}
    check("lab.qemu-snapshot-reference", "migrated=1 " in qsnap and n["saved"] is not None
          and n["first"] == n["saved"] + 1 and n["last"] == 40 and "powered_off=1" in qsnap
          and "disk_counts=40" in qsnap,
          "the reference: QEMU microvm stopped the same counting L2 at 10, migrated it to a "
          "file, and a new QEMU brought in from the file counted on to 40 and powered off, "
          f"every count on its virtio disk: {qsnap or 'nothing'}")
    check("lab.kvmc-acpi-poweroff", said("kvmc-bzimage", "reboot: Power down"),
          "the guest powered off through ACPI S5")
    r = results.get("kvmc-reboot")
    check("lab.kvmc-reboot", bool(r) and r["status"] == 0 and r["marker"] != "" and
          said("kvmc-reboot", "reboot: Restarting system"), f"{r}")
    r = results.get("kvmc-fc-sdk")
    check("lab.kvmc-fc-sdk", bool(r) and r["status"] == 0 and r["marker"] != "" and
          said("kvmc-fc-sdk", "LAB-FC paused=Paused resumed=Running shutdown=ok exit=ok") and
          said("kvmc-fc-sdk", "jail=pid1,uid=65534,caps=0") and
          said("kvmc-fc-sdk", "reboot: Restarting system"),
          "the unmodified firecracker-go-sdk booted L2 through kvmc-firecracker's API, with "
          "kvmc-firecracker --jail (PID 1 of its namespace, uid 65534, no capabilities, the "
          "kernel and initrd in its root), paused and resumed it, and Shutdown's Ctrl-Alt-Del "
          f"made Linux reboot, which ended kvmc-firecracker with status 0: {r}")
    r = results.get("kvmc-panic")
    check("lab.kvmc-panic", bool(r) and r["status"] != 0 and r["marker"] != "",
          f"{r} (a panic must end kvmc run with a non-zero status)")
    booted("qemu-microvm")

    virtio = next((l for _, l in lines if l.startswith("LAB-VIRTIO ")), "")
    r = results.get("kvmc-virtio")
    check("lab.virtio-blk-mount", f"from_host=[{DISK_HELLO}]" in virtio and
          "disk_serial=kvmc-lab-disk" in virtio,
          f"{r}; guest saw: {virtio or 'nothing'}")
    from_l2 = read_from_disk(disk, "/from-l2.txt")
    check("lab.virtio-blk-host-reads-guest-write",
          from_l2 == "written by L2 through kvmc virtio-blk", f"host read: [{from_l2}]")
    m = re.search(r"hwrng_bytes=(\d+) hwrng_distinct=(\d+)", virtio)
    check("lab.virtio-rng", bool(m) and int(m.group(1)) == 4096 and int(m.group(2)) > 100,
          f"{m.group(0) if m else 'no hwrng result'}")

    stream = next((l for _, l in lines if "KVMC-LAB-L2-STREAM" in l), "")
    host_side = next((l for _, l in lines if l.startswith("LAB-STREAM ")), "")
    r = results.get("kvmc-stream")
    check("lab.virtio-net-user", "http=[hello over slirp]" in stream,
          f"L2 fetched from L1's httpd through libslirp: {stream or r or 'no result'}")
    check("lab.virtio-vsock-guest-to-host", "vsock=[reply=[HELLO-FROM-L2]]" in stream,
          "L2 connected to CID 2 port 5000, served by a Unix socket in L1")
    check("lab.virtio-vsock-host-to-guest",
          "host_connect=[reply=[HELLO-FROM-L1]]" in host_side and "served=yes" in stream,
          f"L1 wrote CONNECT 6000 to kvmc's socket: {host_side or 'nothing'}")
    check("lab.virtio-console", "hvc=[console line from L2]" in host_side,
          "L2 wrote /dev/hvc0, L1 read kvmc's console socket")
    check("lab.slirp-dns", f"dns=[{DNS_ADDRESS}]" in stream,
          f"L2 resolved {DNS_NAME} through 10.0.2.3 (kvmc's forwarder, seccomp on, to a "
          f"server in L1's resolv.conf): {stream or 'no result'}")

    # virtio-pci: the same devices, the same checks, over kvmc's PCIe root
    # complex with MSI-X.
    pci = next((l for _, l in lines if "KVMC-LAB-L2-PCI " in l), "")
    pci_virtio = next((l for _, l in lines if "KVMC-LAB-L2-PCI-VIRTIO " in l), "")
    pci_stream = next((l for _, l in lines if "KVMC-LAB-L2-PCI-STREAM" in l), "")
    pci_host = next((l for _, l in lines if l.startswith("LAB-PCI-STREAM ")), "")
    m = re.search(r"devices=(\d+) msix_vectors=(\d+) msix_interrupts=(\d+) pci_fatal=(\d+)", pci)
    check("lab.pci-enumerated", bool(m) and int(m.group(1)) == 6 and m.group(4) == "0" and
          "bridge=[0x1b36 0x0008 ]" in pci and "MMCONFIG" in pci,
          f"L2's PCI core found the host bridge and 5 virtio functions through ECAM, no "
          f"'PCI: Fatal': {pci or results.get('kvmc-pci') or 'no result'}")
    check("lab.virtio-pci-msix", bool(m) and int(m.group(2)) >= 10 and int(m.group(3)) > 0,
          f"MSI-X vectors in L2's /proc/interrupts and interrupts taken: "
          f"{m.group(0) if m else 'none'}")
    only = next((l for _, l in lines if "KVMC-LAB-L2-PCI-VIRTIO-ONLY" in l), "")
    check("lab.virtio-pci-boot", results.get("kvmc-virtio-pci", {}).get("status") == 0 and
          f"from_host=[{DISK_HELLO}]" in only, f"disk and rng over virtio-pci: "
          f"{only or results.get('kvmc-virtio-pci') or 'no result'}")
    check("lab.virtio-pci-blk", f"from_host=[{DISK_HELLO}]" in pci_virtio and
          "disk_serial=kvmc-lab-pci" in pci_virtio, pci_virtio or "no result")
    m = re.search(r"hwrng_bytes=(\d+) hwrng_distinct=(\d+)", pci_virtio)
    check("lab.virtio-pci-rng", bool(m) and int(m.group(1)) == 4096 and int(m.group(2)) > 100,
          m.group(0) if m else "no hwrng result")
    check("lab.virtio-pci-net-vsock-console",
          "http=[hello over slirp]" in pci_stream and "vsock=[reply=[HELLO-FROM-L2]]" in pci_stream
          and "served=yes" in pci_stream and "host_connect=[reply=[HELLO-FROM-L1]]" in pci_host
          and "hvc=[console line from L2]" in pci_host and f"dns=[{DNS_ADDRESS}]" in pci_stream,
          f"{pci_stream or 'no result'}; host side: {pci_host or 'nothing'}")

    # A PCI device written in Lua: L2 enumerates, sizes and maps it, reads
    # and writes its BAR with devmem, and a driver takes its MSI-X vector.
    dev = next((l for _, l in lines if "KVMC-LAB-L2-PCIDEV" in l), "")
    lua = next((l for _, l in lines if "LAB-LUA-PCI " in l), "")
    check("lab.lua-pci-device-enumerated",
          "class=[0xff0000]" in dev and "sizes=[ 4096 16 65536 0 4096 0]" in dev,
          f"L2 sysfs: {dev or results.get('kvmc-lua-pci') or 'no result'}")
    check("lab.lua-pci-device-bar", "bar0_8=[0xC0DE0008]" in dev and "bar0_0=[0x00005A5A]" in dev
          and "stored=0x5a5a" in lua, f"devmem through the Lua callbacks: {dev}; {lua}")
    m = re.search(r"irqs=\[(\d+)\]", dev)
    check("lab.lua-pci-device-msix", bool(m) and int(m.group(1)) == 3 and "raised=3" in lua and
          "3 of 3 MSI-X interrupts" in dev,
          f"kvmc_lab_pcidev.ko asked for vector 0 three times; /proc/interrupts counted "
          f"{m.group(1) if m else 'none'}: {lua}")

    crashes = [dict(re.findall(r"(\w+)=(\S+)", l)) for _, l in lines if l.startswith("LAB-CRASH ")]
    good = [c for c in crashes if c.get("fsck") == "0" and c.get("records_ok") == "1"]
    noboot = sum(l.startswith("LAB-CRASH-NOBOOT") for _, l in lines)
    check("lab.crash-consistency", len(good) >= CRASH_KILLS and len(good) == len(crashes),
          f"{len(good)} of {len(crashes)} SIGKILLs of kvmc mid-write left an ext4 image that "
          f"passes e2fsck -fn with every record L2 had fsync'ed (records synced per run: "
          f"{[int(c.get('synced', 0)) for c in crashes]}; L2 boots that never wrote: {noboot})")

    # VFIO: the NVMe of a q35 L1 with QEMU's Intel IOMMU, passed through.
    if vfio_wanted:
        vfio_checks(lines, results, nvme, check)

    retries = [l for _, l in lines if l.startswith("LAB-RETRY ")]
    for r in retries:
        print(f"note: an L2 died before its marker and was booted once more: {r}", flush=True)

    print()
    print(f"lab: kernel {pkg} {version}")
    print(f"lab: L1 boot (L1 kernel start to its init): {l1_init:.1f}s" if l1_init
          else "lab: L1 never reached init")
    print(f"lab: {'L2 boot, start to userspace marker':40s} kvmc      qemu-microvm")
    k, q = results.get("kvmc-bzimage"), results.get("qemu-microvm")
    print(f"lab: {'(L1 seconds, same run)':40s} {k['boot'] if k else '-':<9} "
          f"{q['boot'] if q else '-'}")
    vm_, vp_ = results.get("kvmc-virtio"), results.get("kvmc-virtio-pci")
    print(f"lab: {'L2 with a disk and rng, start to marker':40s} virtio-mmio  virtio-pci")
    print(f"lab: {'(L1 seconds, same run)':40s} {vm_['boot'] if vm_ else '-':<12} "
          f"{vp_['boot'] if vp_ else '-'}")
    kv, qv = results.get("kvmc-vfio"), results.get("qemu-vfio")
    if vfio_wanted:
        rate = {n: re.search(r"read_mb_s=(\S+)", next((l for _, l in lines if "KVMC-LAB-L2-NVME "
                                                       in l and f"vmm={n} " in l), ""))
                for n in ("kvmc", "qemu")}
        print(f"lab: {'L2 with a VFIO NVMe, start to marker':40s} kvmc      qemu")
        print(f"lab: {'(L1 seconds, same run)':40s} {kv['boot'] if kv else '-':<9} "
              f"{qv['boot'] if qv else '-'}")
        print(f"lab: {'16 MiB read in L2 (MB/s, same run)':40s} "
              f"{rate['kvmc'].group(1) if rate['kvmc'] else '-':<9} "
              f"{rate['qemu'].group(1) if rate['qemu'] else '-'}")
    snap = next((l for _, l in lines if l.startswith("LAB-SNAPSHOT ")), "")
    if snap:
        f = dict(re.findall(r"(\w+)=(\S+)", snap))
        print(f"lab: {'L2 snapshot (256 MiB guest, SIGUSR2)':40s} save {f.get('save_s', '-')} s, "
              f"memory file {f.get('memory_kb', '-')} KiB used, state {f.get('state_bytes', '-')}"
              f" bytes; restored run to power-off {f.get('restored_run_s', '-')} s")
    qsnap = next((l for _, l in lines if l.startswith("LAB-QEMU-SNAPSHOT ")), "")
    if qsnap:
        f = dict(re.findall(r"(\w+)=(\S+)", qsnap))
        print(f"lab: {'QEMU, the same L2 (stop, migrate to file)':40s} save {f.get('save_s', '-')} s, "
              f"state {f.get('state_kb', '-')} KiB; restored run (-incoming) to power-off "
              f"{f.get('restored_run_s', '-')} s")
    print(f"lab: L2 boots retried after dying before their marker: {len(retries)}")
    print(f"lab: whole lab run {time.monotonic() - t0:.1f}s (L1 {l1_total:.1f}s, "
          f"VFIO L1 {vfio_total:.1f}s)")
    passed = sum(checks)
    print(f"{passed} passed, {len(checks) - passed} failed")
    return 0 if passed == len(checks) else 1


def vfio_checks(lines, results, nvme, check):
    def line(prefix, text=""):
        return next((l for _, l in lines if l.startswith(prefix) and text in l), "")

    host = line("LAB-VFIO-HOST ")
    errors = {m.group(1): (m.group(2), m.group(3)) for _, l in lines
              for m in [re.match(r"LAB-VFIO-ERROR name=(\S+) status=(\d+) message=\[(.*)\]", l)]
              if m}
    bdf = re.search(r"bdf=(\S+)", host)
    bdf = bdf.group(1) if bdf else "?"

    def refused(name, text):
        status, message = errors.get(name, ("-", ""))
        check(f"lab.vfio-error-{name}", status == "2" and text in message and
              message.count("kvmc:") == 1, f"status {status}: [{message}]")

    check("lab.vfio-l1-iommu", "driver=nvme" in host and "group=" in host and
          "DMAR-IR: Enabled IRQ remapping" in host, host or "no LAB-VFIO-HOST line")
    refused("bound-to-nvme", f"VFIO device {bdf} is bound to nvme, not vfio-pci")
    refused("no-such-device", "VFIO device 0000:00:1f.7: no such PCI device")
    group = line("LAB-VFIO-GROUP ")
    b1 = re.search(r"bridged=(\S+)", line("LAB-VFIO-DEVICES "))
    b1 = b1.group(1) if b1 else "?"
    refused("not-viable", f"VFIO device {b1}: IOMMU group")
    check("lab.vfio-not-viable-why", "b1=vfio-pci" in group and
          "is not viable" in errors.get("not-viable", ("", ""))[1],
          f"its group-mate behind the bridge is the host's ({group or 'no group line'})")
    refused("no-permission", f"VFIO device {bdf}: no permission to open /dev/vfio/")
    refused("not-an-address", "'00:03' is not a PCI address")
    hold = line("LAB-VFIO-HOLD ")
    refused("busy", f"VFIO device {bdf}: IOMMU group")
    check("lab.vfio-busy-second-vm", "guest_up=1" in hold and
          "in use by another process" in errors.get("busy", ("", ""))[1],
          f"a VM holds the device ({hold or 'no holder'}); a second kvmc asked for it")
    killed = line("LAB-VFIO-KILLED ")
    check("lab.vfio-kill-9", "still=[]" in killed and "driver=vfio-pci" in killed and
          results.get("kvmc-vfio", {}).get("status") == 0,
          f"kill -9 of the holder: {killed or 'nothing'}; the next VM got the device")
    for vmm, sector in (("kvmc", 2048), ("qemu", 4096)):
        nv = next((l for _, l in lines if "KVMC-LAB-L2-NVME " in l and f"vmm={vmm} " in l), "")
        r = results.get(f"{vmm}-vfio")
        m = re.search(r"vectors=(\d+) irqs=(\d+) chip=(\S*)", nv)
        check(f"lab.vfio-{vmm}-nvme", bool(r) and r["status"] == 0 and
              f"first=[{NVME_HELLO}]" in nv and f"back=[written by L2 through {vmm} vfio]" in nv,
              f"L2's nvme driver read the host's sector and its own write: {nv or r or 'no result'}")
        check(f"lab.vfio-{vmm}-msix", bool(m) and int(m.group(1)) >= 2 and int(m.group(2)) > 0
              and "MSI" in m.group(3), f"nvme queues on MSI-X in L2: {m.group(0) if m else 'none'}")
        edu = next((l for _, l in lines if "KVMC-LAB-L2-EDU " in l and f"vmm={vmm} " in l), "")
        check(f"lab.vfio-{vmm}-msi", "chip=[PCI-MSI" in edu and "irqs=[3]" in edu and
              "ident 0x10000ed, 3 of 3 MSI interrupts" in edu,
              f"QEMU's edu device (MSI, no MSI-X) raised 3 interrupts in L2: {edu or 'nothing'}")
        back = read_sector(nvme, sector)
        check(f"lab.vfio-{vmm}-host-reads-back", back == f"written by L2 through {vmm} vfio",
              f"the host read sector {sector} of the image after both VMs: [{back}]")
    again = line("LAB-VFIO-HOST-AGAIN ")
    check("lab.vfio-host-gets-it-back", "driver=nvme" in again and f"read=[{NVME_HELLO}" in again,
          f"rebound to the host's nvme driver after both VMs: {again or 'nothing'}")


def l1_stalls(lines):
    """When L1's own kernel was stuck, as (start, end) in lab.py's clock: a
    soft lockup line says "stuck for 60s" when the CPU comes back, a hung
    task "blocked for more than 600 seconds"."""
    stalls = []
    for t, line in lines:
        if line.startswith("LAB-"):
            continue
        m = re.search(r"soft lockup - CPU#\d+ stuck for (\d+)s|blocked for more than (\d+) seconds",
                      line)
        if m:
            stalls.append((t - int(m.group(1) or m.group(2)) - 5, t))
    return stalls


def boot_loop(vmlinuz, l1_cpio, disk, crash_disk, work, n, t0, devices=False):
    """N boots of L2 under kvmc, kvmc --pit and QEMU microvm, in turn, in
    one L1: how often does each fail, and how?

    L1 is QEMU's emulated SVM, and now and then one of its CPUs stops for a
    minute (a soft lockup): an L2 whose vCPU or timer lives there stops too
    (its clock freezes). A boot that overlapped such a stall of L1 is not
    counted as the VMM's failure or success: it is listed as void, with the
    L1 line, and the loop runs more rounds (in a new L1 if that one was
    killed) until every VMM has N boots that count, or L1 died 4 times."""
    runs, void, stalls_seen, first, l1_total, sessions = [], [], [], 1, 0.0, 0
    while sessions < 4:
        counted = {vmm: sum(r["vmm"] == vmm for r in runs) for vmm in ("kvmc", "kvmc-pit", "qemu")}
        rounds = n - min(counted.values())
        if rounds <= 0:
            break
        sessions += 1
        lines, took = run_l1(vmlinuz, l1_cpio, [disk, crash_disk],
                             os.path.join(work, f"l1-console-loop{sessions}.log"), "",
                             loop=rounds, loop_devices=devices, loop_from=first)
        l1_total += took
        stalls = l1_stalls(lines)
        stalls_seen += [l for _, l in lines if not l.startswith("LAB-") and
                        ("soft lockup" in l or "blocked for more than" in l)]
        prev = 0.0
        for t, line in lines:
            if not line.startswith("LAB-LOOP "):
                continue
            r = dict(re.findall(r"(\w+)=(\S+)", line))
            if any(a < t and prev < b for a, b in stalls):
                void.append(r)
            else:
                runs.append(r)
            first = max(first, int(r.get("i", 0)) + 1)
            prev = t
    print()
    for vmm in ("kvmc", "kvmc-pit", "qemu"):
        mine = [r for r in runs if r.get("vmm") == vmm]
        bad = [r for r in mine if r.get("status") != "0"]
        triple = [r for r in bad if r.get("triple") == "1"]
        boot = sorted(float(r["boot_s"]) for r in mine if r.get("status") == "0")
        median = boot[len(boot) // 2] if boot else float("nan")
        print(f"lab: boot loop {vmm:5s}: {len(mine)} boots, {len(bad)} failed "
              f"({len(triple)} triple faults), median boot {median:.1f}s; "
              f"{sum(r.get('vmm') == vmm for r in void)} void (L1 stalled)")
        for r in bad:
            print(f"lab:   {vmm} boot {r.get('i')}: status {r.get('status')}, "
                  f"last L2 line [{r.get('last', '').replace('_', ' ')}]")
    for r in void:
        print(f"lab:   void: {r.get('vmm')} boot {r.get('i')} (status {r.get('status')}, "
              f"last L2 line [{r.get('last', '').replace('_', ' ')}])")
    for line in stalls_seen:
        print(f"lab:   L1 stalled: {line.strip()}")
    print(f"lab: boot loop took {time.monotonic() - t0:.0f}s in {sessions} L1s (L1 {l1_total:.0f}s)")
    complete = all(sum(r.get("vmm") == vmm for r in runs) >= n
                   for vmm in ("kvmc", "kvmc-pit", "qemu"))
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
