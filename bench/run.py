#!/usr/bin/env python3
"""kvmc benchmarks, each against references measured in the same run.

  cold start   exec to first serial byte and to exit: kvmc vs the raw-KVM
               floor (bench/floor.c) vs QEMU microvm, same PVH guest image
  exit cost    per port/MMIO exit through kvmc's bus with a C device, and
               through Python and Lua device callbacks, vs the floor
  memory       resident memory beyond the guest RAM the guest touched, for
               1 and for 50 idle VMs; QEMU microvm as the reference
  density      VMs created, run and destroyed per second (library, CLI, QEMU)
  block        sequential write and read (128 KiB, 8 in flight) and 4 KiB random
               reads of a raw image through virtio-blk, vs QEMU's virtio-blk
  net          UDP transmit through virtio-net and user-mode networking
               (libslirp in both) to a sink on the host, vs QEMU's virtio-net
  API          kvmc-firecracker: exec to the API socket answering (wall time,
               and the process's CPU time, which Firecracker's specification
               bounds at 8 ms), and InstanceStart to the first serial byte,
               vs kvmc run's exec to first serial byte
  snapshots    save a paused guest of 64 MiB, 1 GiB and 4 GiB; restore into a
               new VM, and from start to its first console byte; fast reset
               with 1 MiB dirtied (bench/snapshot_bench.py). QEMU: migrate to
               a file and -incoming from it, the same guest

usage: bench/run.py [--build build] [--quick] [--out bench/results]
Timings on these shared machines are noisy: read the ratios, not the numbers.
"""
import argparse
import glob
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QEMU = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off,rtc=off", "-enable-kvm",
        # PVM hosts refuse MSR_IA32_ARCH_CAPABILITIES, which -cpu host would set.
        "-cpu", "host,-arch-capabilities", "-m", "64", "-smp", "1", "-nodefaults",
        "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0x501,iosize=1"]
GUEST_RAM = 64 << 20


def cold_start(cmd):
    """Seconds from exec to the first console byte, and to process exit."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    p.stdout.read(1)
    t_first = time.perf_counter() - t0
    p.stdout.read()
    p.wait()
    return t_first, time.perf_counter() - t0


def wall(cmd, env=None):
    """Seconds the command took. Status 1 is fine: the floor gives the guest
    no ACPI or MP tables, so its self-check fails, by design."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                       stdin=subprocess.DEVNULL)
    if p.returncode not in (0, 1):
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stderr.decode()[-300:]}")
    return time.perf_counter() - t0


# virtio-mmio v2 for QEMU's devices (microvm defaults to legacy transports).
QEMU_VIRTIO = ["-global", "virtio-mmio.force-legacy=false"]
VCPU_THREADS = ("kvmc-vcpu0", "CPU 0/KVM")


def pin_vcpu(proc):
    """Puts the VMM's vCPU thread alone on CPU 0; every other thread stays on
    CPU 1, where the process was started. The test guest polls, so its vCPU
    always wants a whole CPU; without pinning, whether the I/O thread shares
    that CPU decides the result (measured: bimodal, 18 against 100 MB/s)."""
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        for task in glob.glob(f"/proc/{proc.pid}/task/*"):
            try:
                with open(task + "/comm") as f:
                    if f.read().strip() in VCPU_THREADS:
                        os.sched_setaffinity(int(os.path.basename(task)), {0})
                        return
            except OSError:
                pass
        time.sleep(0.0005)


PIN = True  # --no-pin clears it


def timed_phases(cmd, tag, tsc_hz, timeout=300):
    """Runs a VMM whose guest prints "<tag>: NAME done BYTES TICKS" lines;
    returns {NAME: (bytes, seconds)}. The guest times each phase with its TSC,
    which runs at the host's rate (tsc_hz): QEMU's serial output reaches the
    pipe in bursts, so timing the lines as they arrive would be wrong."""
    cpus = os.sched_getaffinity(0)
    pinning = PIN and {0, 1} <= cpus
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         stderr=subprocess.STDOUT,
                         preexec_fn=(lambda: os.sched_setaffinity(0, {1})) if pinning else None)
    if pinning:
        pin_vcpu(p)
    result, tail = {}, []
    deadline = time.monotonic() + timeout
    for raw in p.stdout:
        line = raw.decode(errors="replace").strip()
        tail = (tail + [line])[-5:]
        words = line.split()
        if len(words) >= 5 and words[0] == f"{tag}:" and words[2] == "done":
            result[words[1]] = (int(words[3]), int(words[4]) / tsc_hz)
        if time.monotonic() > deadline:
            p.kill()
    p.wait()
    if f"{tag}: ok" not in tail:
        raise RuntimeError(f"{cmd[0]}: {tag} failed: {' / '.join(tail)}")
    return result


def make_image(path, mib):
    """A raw image written in full and synced: every VMM's every run finds
    its blocks allocated. (A sparse image made the first run, always
    kvmc's, pay the file system's block allocation: with one repetition
    that put kvmc's sequential read behind QEMU's.)"""
    with open(path, "wb") as f:
        chunk = bytes(1 << 20)
        for _ in range(mib):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def block_throughput(kvmc, guest, image, mib, reps, tsc_hz):
    """MB/s per phase for kvmc and QEMU, medians of reps runs each."""
    cmdline = f"kvmc.test=blkbench kvmc.blkbench={mib}"
    kvmc_cmd = [kvmc, "run", "--kernel", guest, "--mem", "64M", "--disk", image,
                "--cmdline", cmdline]
    cmds = {"kvmc": kvmc_cmd, "kvmcpci": kvmc_cmd + ["--transport", "pci"],
            "qemu": QEMU + QEMU_VIRTIO + [
                "-drive", f"file={image},if=none,id=d0,format=raw",
                "-device", "virtio-blk-device,drive=d0", "-kernel", guest, "-append", cmdline]}
    out = {}
    for name, cmd in cmds.items():
        runs = [timed_phases(cmd, "blkbench", tsc_hz) for _ in range(reps)]
        for phase in ("seqwrite", "seqread", "randread"):
            out[f"blk_{phase}_mbs_{name}"] = statistics.median(
                r[phase][0] / r[phase][1] / 1e6 for r in runs)
    return out


def net_throughput(kvmc, guest, frames, reps, tsc_hz):
    """Guest-to-host UDP: MB/s of payload the guest got through its transmit
    queue (start to done), and the share a host sink received."""
    out = {}
    for name in ("kvmc", "kvmcpci", "qemu"):
        rates, delivered = [], []
        for _ in range(reps):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            sink.bind(("127.0.0.1", 0))
            sink.setblocking(False)
            cmdline = (f"kvmc.test=netbench kvmc.netbench={frames} "
                       f"kvmc.net=10.0.2.15,10.0.2.2,{sink.getsockname()[1]}")
            cmd = ([kvmc, "run", "--kernel", guest, "--mem", "64M", "--net", "user",
                    "--cmdline", cmdline] + (["--transport", "pci"] if name == "kvmcpci" else [])
                   if name.startswith("kvmc") else
                   QEMU + QEMU_VIRTIO + ["-netdev", "user,id=n0",
                                         "-device", "virtio-net-device,netdev=n0",
                                         "-kernel", guest, "-append", cmdline])
            got = 0
            stop = threading.Event()

            def drain():
                nonlocal got
                while not stop.is_set():
                    try:
                        got += len(sink.recv(65536))
                    except BlockingIOError:
                        time.sleep(0.0002)
            t = threading.Thread(target=drain)
            t.start()
            try:
                r = timed_phases(cmd, "netbench", tsc_hz)["udp"]
            finally:
                time.sleep(0.2)
                stop.set()
                t.join()
                sink.close()
            rates.append(r[0] / r[1] / 1e6)
            delivered.append(got / r[0])
        out[f"net_tx_mbs_{name}"] = statistics.median(rates)
        out[f"net_tx_delivered_{name}"] = min(delivered)
    return out


def notify_round_trip(kvmc, guest, n, reps, tsc_hz):
    """Microseconds per virtio notification round trip (a one-byte rng
    request, notified and polled for), per transport and for QEMU."""
    cmdline = f"kvmc.test=notifybench kvmc.notifybench={n}"
    kvmc_cmd = [kvmc, "run", "--kernel", guest, "--mem", "64M", "--rng", "--cmdline", cmdline]
    cmds = {"kvmc": kvmc_cmd, "kvmcpci": kvmc_cmd + ["--transport", "pci"],
            "qemu": QEMU + QEMU_VIRTIO + ["-device", "virtio-rng-device", "-kernel", guest,
                                         "-append", cmdline]}
    out = {}
    for name, cmd in cmds.items():
        runs = [timed_phases(cmd, "notifybench", tsc_hz)["rng"] for _ in range(reps)]
        out[f"notify_us_{name}"] = statistics.median(1e6 * t / count for count, t in runs)
    return out


def peak_rss_boot(kvmc, guest, out, mib):
    """Peak RSS booting the test guest with an initrd of mib MiB, which both
    VMMs must copy into guest memory: kvmc reads it straight there, a loader
    that reads it into a buffer first peaks at twice its size. Each in a
    process of its own (ru_maxrss of children is a maximum over them)."""
    initrd = os.path.join(out, "bench-initrd.img")
    with open(initrd, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    r = {}
    try:
        for vmm, cmd in (("kvmc", [kvmc, "run", "--kernel", guest, "--mem", "256M",
                                   "--initrd", initrd, "--console", "none",
                                   "--cmdline", "kvmc.test=boot-only"]),
                         ("qemu", QEMU + ["-m", "256", "-kernel", guest, "-initrd", initrd,
                                          "-append", "kvmc.test=boot-only"])):
            probe = [sys.executable, "-c",
                     "import resource, subprocess, sys; subprocess.run(sys.argv[1:], "
                     "stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL); "
                     "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"] + cmd
            r[f"peak_rss_mib_{vmm}"] = int(subprocess.run(probe, capture_output=True, text=True,
                                                          check=True).stdout) / 1024
    finally:
        os.unlink(initrd)
    return r


def median(f, n):
    return statistics.median(f() for _ in range(n))


def rss_beyond_guest(pid):
    """Resident and proportional (PSS) KiB of the process, each minus that of
    its guest RAM mapping (the anonymous mapping of GUEST_RAM bytes, or the
    closest above). PSS divides each shared page (libc, the VMM's own code)
    among the processes mapping it: with many VMs, what each one adds."""
    totals, guest, size, best = {"Rss:": 0, "Pss:": 0}, {"Rss:": 0, "Pss:": 0}, None, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                size = hi - lo
                is_guest = size >= GUEST_RAM and (best is None or size < best)
                if is_guest:
                    best = size
            elif line.split()[0] in totals:
                key, kib = line.split()[0], int(line.split()[1])
                totals[key] += kib
                if is_guest:
                    guest[key] = kib
    return totals["Rss:"] - guest["Rss:"], totals["Pss:"] - guest["Pss:"]


def idle_vms(cmd, count):
    """Starts count idle guests (waiting for console input), returns the mean
    RSS and PSS beyond guest RAM, in KiB."""
    procs = []
    try:
        for _ in range(count):
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
        for p in procs:
            buf = b""
            while b"echo: ready" not in buf:
                chunk = p.stdout.read1(4096)
                if not chunk:
                    raise RuntimeError(f"{cmd[0]} ended before its guest was idle")
                buf += chunk
        sizes = [rss_beyond_guest(p.pid) for p in procs]
        return statistics.mean(s[0] for s in sizes), statistics.mean(s[1] for s in sizes)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def binding_exit_script(lang, guest, n):
    if lang == "python":
        code = f"""
import kvmc
with kvmc.VM({guest!r}, memory="64M", cmdline="kvmc.test=exits:{n}") as vm:
    state = [0]
    def w(o, s, v): state[0] += v
    vm.add_pio_device(0x600, 4, read=lambda o, s: 0, write=w)
    vm.add_mmio_device(0xd0000000, 0x1000, read=lambda o, s: 0, write=w)
    vm.run(timeout=600)
"""
        return [sys.executable, "-c", code]
    code = f"""
package.path = "{ROOT}/bindings/lua/?.lua;" .. package.path
package.cpath = os.getenv("KVMC_LUA_DIR") .. "/?.so;" .. package.cpath
local kvmc = require "kvmc"
local vm = assert(kvmc.vm{{kernel = {guest!r}, memory = "64M", cmdline = "kvmc.test=exits:{n}"}})
local sum = 0
local dev = {{read = function() return 0 end, write = function(o, s, v) sum = sum + v end}}
assert(vm:add_pio_device(0x600, 4, dev))
assert(vm:add_mmio_device(0xd0000000, 0x1000, dev))
assert(vm:run(600))
vm:close()
"""
    return ["lua5.4", "-e", code]


def build_go_exitbench(build):
    """Builds bindings/go/examples/exitbench against this build tree, or
    returns None (with a message) when Go is not installed."""
    out = os.path.join(build, "bench", "go-exitbench")
    env = dict(os.environ,
               CGO_CFLAGS=f"-I{ROOT}/core/include -I{build}/core/include",
               CGO_LDFLAGS=f"-L{build}/core")
    try:
        subprocess.run(["go", "build", "-o", out, "./examples/exitbench"],
                       cwd=os.path.join(ROOT, "bindings", "go"), env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"Go exit cost: skipped, cannot build exitbench ({e})")
        return None
    return out


class Qmp:
    """Just enough of QEMU's QMP for the snapshot reference."""
    def __init__(self, path):
        for _ in range(500):
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                time.sleep(0.01)
        self.f = self.sock.makefile("rw")
        self.f.readline()  # greeting
        self.call("qmp_capabilities")

    def call(self, cmd, **args):
        self.f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            reply = json.loads(self.f.readline())
            if "return" in reply or "error" in reply:
                return reply.get("return", reply.get("error"))

    def wait_migration(self):
        while self.call("query-migrate").get("status") not in ("completed", "failed"):
            time.sleep(0.001)


def read_until(stream, text, buf):
    """Reads stream into buf (bytearray) until text appears."""
    while text not in buf:
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            raise RuntimeError(f"QEMU ended before printing {text!r}")
        buf += chunk


def qemu_snapshot(guest, mib, work, reps):
    """QEMU's save (stop, migrate to a file) and restore (-incoming from it,
    to the first console byte after cont) of the same counting guest."""
    state = os.path.join(work, "qemu.mig")
    qmp = os.path.join(work, "qmp.sock")
    base = [a if a != "64" else str(mib) for a in QEMU] + ["-kernel", guest, "-append",
                                                          "kvmc.test=flood",
                                                          "-qmp", f"unix:{qmp},server=on,wait=off"]
    save, restore, first = [], [], []
    for _ in range(reps):
        for path in (qmp, state):
            if os.path.exists(path):
                os.unlink(path)
        p = subprocess.Popen(base, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        read_until(p.stdout, b"flood line 50 ", bytearray())
        q = Qmp(qmp)
        q.call("stop")
        t0 = time.perf_counter()
        q.call("migrate", uri=f"exec:cat > {state}")
        q.wait_migration()
        save.append(time.perf_counter() - t0)
        q.call("quit")
        p.wait()
        if os.path.exists(qmp):
            os.unlink(qmp)
        t0 = time.perf_counter()
        p = subprocess.Popen(base + ["-incoming", f"exec:cat {state}"], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        q = Qmp(qmp)
        while q.call("query-status").get("status") == "inmigrate":
            time.sleep(0.0005)
        restore.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        q.call("cont")
        os.read(p.stdout.fileno(), 1)
        first.append(time.perf_counter() - t0)
        q.call("quit")
        p.wait()
    os.unlink(state)
    return {f"qemu_snapshot_save_ms_{mib}": 1000 * statistics.median(save),
            f"qemu_snapshot_restore_ms_{mib}": 1000 * statistics.median(restore),
            f"qemu_snapshot_first_byte_ms_{mib}": 1000 * statistics.median(first)}


def kvmc_cli_restore(kvmc, guest, mib, work, reps):
    """kvmc run --restore: exec to the restored guest's first console byte
    (a new process, as QEMU's -incoming is)."""
    snap = os.path.join(work, "cli-snap")
    subprocess.run(["rm", "-rf", snap], check=True)
    p = subprocess.Popen([kvmc, "run", "--kernel", guest, "--mem", f"{mib}M", "--cmdline",
                          "kvmc.test=flood", "--snapshot-on-signal", snap],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    read_until(p.stdout, b"flood line 50 ", bytearray())
    p.send_signal(12)  # SIGUSR2
    p.stdout.read()
    if p.wait() != 5:
        raise RuntimeError("kvmc did not save the snapshot")
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        p = subprocess.Popen([kvmc, "run", "--mem", f"{mib}M", "--restore", snap],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        os.read(p.stdout.fileno(), 1)
        times.append(time.perf_counter() - t0)
        p.kill()
        p.wait()
    subprocess.run(["rm", "-rf", snap], check=True)
    return 1000 * statistics.median(times)


def snapshots(build, guest, work, env, reps, sizes):
    script = os.path.join(ROOT, "bench", "snapshot_bench.py")
    out = subprocess.run([sys.executable, script, guest, work, str(reps)] +
                         [str(m) for m in sizes], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"snapshot_bench.py failed: {out.stderr[-500:]}")
    r = json.loads(out.stdout)
    kvmc = os.path.join(build, "cli", "kvmc")
    for mib in sizes:
        r.update(qemu_snapshot(guest, mib, work, reps))
        r[f"snapshot_cli_restore_ms_{mib}"] = kvmc_cli_restore(kvmc, guest, mib, work, reps)
        r[f"qemu_snapshot_exec_to_byte_ms_{mib}"] = (r[f"qemu_snapshot_restore_ms_{mib}"] +
                                                     r[f"qemu_snapshot_first_byte_ms_{mib}"])
    return r


def snapshot_rows(r, sizes):
    rows = []
    for mib in sizes:
        size = f"{mib} MiB" if mib < 1024 else f"{mib >> 10} GiB"
        rows += [
            (f"snapshot: save a paused {size} guest", "ms", r[f"snapshot_save_ms_{mib}"], None,
             r.get(f"qemu_snapshot_save_ms_{mib}")),
            (f"snapshot: restore {size}, exec to first console byte (CLI)", "ms",
             r[f"snapshot_cli_restore_ms_{mib}"], None,
             r.get(f"qemu_snapshot_exec_to_byte_ms_{mib}")),
            (f"snapshot: restore {size} into a created VM (library)", "ms",
             r[f"snapshot_restore_ms_{mib}"], None, None),
            (f"snapshot: {size} restored, start to first byte", "ms",
             r[f"snapshot_first_byte_ms_{mib}"], None, r.get(f"qemu_snapshot_first_byte_ms_{mib}")),
            (f"snapshot: fast reset of {size}, 1 MiB dirtied", "ms",
             r[f"snapshot_reset_1mib_ms_{mib}"], None, None),
        ]
    return rows


class UnixHTTP(http.client.HTTPConnection):
    """HTTP on a Unix socket (kvmc-firecracker's API)."""
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.unix_path)


def api_call(sock, method, path, body=None):
    c = UnixHTTP(sock)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        resp = c.getresponse()
        data = resp.read()
    finally:
        c.close()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {data!r}")
    return data


def fc_api_times(fc, guest, work, reps):
    """kvmc-firecracker: exec to the API answering GET / (ms, wall), the
    process's CPU time then (ms, from its startup metrics), and InstanceStart
    to the guest's first serial byte (ms); medians."""
    ready, cpu, first = [], [], []
    for i in range(reps):
        sock = os.path.join(work, f"bench-fc-{i}.sock")
        metrics = os.path.join(work, f"bench-fc-{i}.metrics")
        for path in (sock, metrics):
            if os.path.exists(path):
                os.unlink(path)
        open(metrics, "w").close()
        t0 = time.perf_counter()
        p = subprocess.Popen([fc, "--api-sock", sock, "--metrics-path", metrics],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            while True:  # what a client does: poll until the API answers
                try:
                    api_call(sock, "GET", "/")
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    time.sleep(0.0005)
            ready.append(time.perf_counter() - t0)
            api_call(sock, "PUT", "/actions", {"action_type": "FlushMetrics"})
            with open(metrics) as f:
                line = json.loads(f.readline())
            cpu.append(line["api_server"]["process_startup_time_cpu_us"] / 1e6)
            api_call(sock, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64})
            api_call(sock, "PUT", "/boot-source", {"kernel_image_path": guest,
                                                   "boot_args": "kvmc.test=boot-only"})
            t1 = time.perf_counter()
            api_call(sock, "PUT", "/actions", {"action_type": "InstanceStart"})
            p.stdout.read(1)
            first.append(time.perf_counter() - t1)
            p.stdout.read()
            p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            if os.path.exists(metrics):
                os.unlink(metrics)
    med = lambda xs: 1000 * statistics.median(xs)
    return {"fc_api_ready_ms": med(ready), "fc_api_ready_cpu_ms": med(cpu),
            "fc_start_first_byte_ms": med(first)}


def result_rows(r, many):
    """(measurement, unit, kvmc, floor, QEMU) for each row of the table."""
    return [
        ("cold start: exec to first serial byte", "ms", r["cold_first_byte_ms_kvmc"],
         r["cold_first_byte_ms_floor"], r["cold_first_byte_ms_qemu"]),
        ("cold start: exec to clean exit", "ms", r["cold_exit_ms_kvmc"],
         r["cold_exit_ms_floor"], r["cold_exit_ms_qemu"]),
        ("exit cost, C device (port+MMIO)", "us", r["exit_us_kvmc_c"], r["exit_us_floor"], None),
        ("exit cost, Python device", "us", r["exit_us_python"], r["exit_us_floor"], None),
        ("exit cost, Lua device", "us", r["exit_us_lua"], r["exit_us_floor"], None),
        ("exit cost, Go device", "us", r.get("exit_us_go"), r["exit_us_floor"], None),
        ("RSS beyond guest RAM, 1 idle VM (median of starts)", "KiB", r["rss_kib_kvmc_1"],
         None, r["rss_kib_qemu_1"]),
        (f"RSS beyond guest RAM, {many} idle VMs (mean)", "KiB", r[f"rss_kib_kvmc_{many}"],
         None, r[f"rss_kib_qemu_{many}"]),
        (f"PSS beyond guest RAM, {many} idle VMs (mean)", "KiB", r[f"pss_kib_kvmc_{many}"],
         None, r[f"pss_kib_qemu_{many}"]),
        ("VMs per second (library / CLI)", "1/s", r["vms_per_s_library"], None,
         r["vms_per_s_qemu"]),
        (f"peak RSS booting with a {r['peak_rss_initrd_mib']} MiB initrd", "MiB",
         r["peak_rss_mib_kvmc"], None, r["peak_rss_mib_qemu"]),
        ("virtio-blk sequential write, 128 KiB", "MB/s", r["blk_seqwrite_mbs_kvmc"], None,
         r["blk_seqwrite_mbs_qemu"]),
        ("virtio-blk sequential read, 128 KiB", "MB/s", r["blk_seqread_mbs_kvmc"], None,
         r["blk_seqread_mbs_qemu"]),
        ("virtio-blk random read, 4 KiB", "MB/s", r["blk_randread_mbs_kvmc"], None,
         r["blk_randread_mbs_qemu"]),
        ("virtio-net UDP transmit, user networking", "MB/s", r["net_tx_mbs_kvmc"], None,
         r["net_tx_mbs_qemu"]),
        ("virtio notify round trip (rng, 1 byte)", "us", r["notify_us_kvmc"], None,
         r["notify_us_qemu"]),
        ("virtio-pci: notify round trip (rng, 1 byte)", "us", r["notify_us_kvmcpci"], None,
         r["notify_us_qemu"]),
        ("virtio-pci: blk sequential write, 128 KiB", "MB/s", r["blk_seqwrite_mbs_kvmcpci"], None,
         r["blk_seqwrite_mbs_qemu"]),
        ("virtio-pci: blk sequential read, 128 KiB", "MB/s", r["blk_seqread_mbs_kvmcpci"], None,
         r["blk_seqread_mbs_qemu"]),
        ("virtio-pci: blk random read, 4 KiB", "MB/s", r["blk_randread_mbs_kvmcpci"], None,
         r["blk_randread_mbs_qemu"]),
        ("virtio-pci: net UDP transmit, user networking", "MB/s", r["net_tx_mbs_kvmcpci"], None,
         r["net_tx_mbs_qemu"]),
    ]


HIGHER_IS_BETTER = ("MB/s", "1/s")


def plot(rows, path):
    """Two panels: kvmc against the floor (1.0 is the floor, the goals drawn
    in), and how many times better than QEMU kvmc is on each row (log scale,
    so 0.17x and 70x both read). Returns a line saying where it went."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot: skipped (pip install matplotlib)"
    vs_floor = [(name, k / f) for name, _, k, f, _ in rows if k is not None and f]
    vs_qemu = [(name, k / q if unit in HIGHER_IS_BETTER else q / k)
               for name, unit, k, _, q in rows if k is not None and q]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 8), gridspec_kw={"height_ratios": [len(vs_floor), len(vs_qemu)]})
    for ax, data, color in ((top, vs_floor, "tab:blue"), (bottom, vs_qemu, "tab:orange")):
        y = range(len(data))
        ax.barh(list(y), [v for _, v in data], color=color)
        ax.set_yticks(list(y))
        ax.set_yticklabels([name for name, _ in data])
        ax.invert_yaxis()
        for i, (_, v) in enumerate(data):
            ax.text(v, i, f" {v:.2f}x" if v < 10 else f" {v:.0f}x", va="center", fontsize=8)
        ax.axvline(1.0, color="black", linewidth=0.8)
    top.axvline(1.05, color="tab:green", linestyle="--", linewidth=0.8, label="goal per exit: 1.05")
    top.axvline(1.2, color="tab:red", linestyle="--", linewidth=0.8, label="goal for cold start: 1.2")
    top.set_xlim(0, max(1.9, max(v for _, v in vs_floor) * 1.15))
    top.set_xlabel("kvmc time / floor time (lower is better; 1.0 is the raw KVM floor)")
    top.legend(loc="center right", fontsize=8)
    bottom.set_xscale("log")
    bottom.set_xlim(0.5, max(v for _, v in vs_qemu) * 3)
    bottom.set_xlabel("times better than QEMU microvm (log scale; right of 1 means kvmc is ahead)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot: {path}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--no-pin", action="store_true",
                    help="throughput: leave thread placement to the scheduler")
    args = ap.parse_args()
    global PIN
    PIN = not args.no_pin
    b = os.path.abspath(args.build)
    guest = os.path.join(b, "tests", "guests", "kvmc-test-guest.elf")
    kvmc = os.path.join(b, "cli", "kvmc")
    floor = os.path.join(b, "bench", "kvmc-bench-floor")
    driver = os.path.join(b, "bench", "kvmc-bench-exit-cost")
    env = dict(os.environ, KVMC_LIBRARY=os.path.join(b, "core", "libkvmc.so.1"),
               KVMC_LUA_DIR=os.path.join(b, "bindings", "lua"),
               LD_LIBRARY_PATH=os.path.join(b, "core"),
               PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
    reps = 3 if args.quick else 15
    exits = 2000 if args.quick else 20000
    many = 5 if args.quick else 50
    r = {"machine": os.uname().release, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
         "quick": args.quick}

    print("cold start ...", flush=True)
    # The guest prints one line and powers off: all three do the same work.
    boot_only = "kvmc.test=boot-only"
    for name, cmd in [("floor", [floor, guest, boot_only]),
                      ("kvmc", [kvmc, "run", "--kernel", guest, "--mem", "64M",
                                "--cmdline", boot_only]),
                      ("qemu", QEMU + ["-kernel", guest, "-append", boot_only])]:
        runs = [cold_start(cmd) for _ in range(reps)]
        r[f"cold_first_byte_ms_{name}"] = 1000 * statistics.median(x[0] for x in runs)
        r[f"cold_exit_ms_{name}"] = 1000 * statistics.median(x[1] for x in runs)

    print("exit cost ...", flush=True)
    def per_exit(make):
        t0 = median(lambda: wall(make(0), env), reps)
        tn = median(lambda: wall(make(exits), env), reps)
        return 1e6 * (tn - t0) / (2 * exits)
    r["exit_us_floor"] = per_exit(lambda n: [floor, guest, f"kvmc.test=exits:{n}"])
    r["exit_us_kvmc_c"] = per_exit(lambda n: [driver, "exits", guest, str(n)])
    r["exit_us_python"] = per_exit(lambda n: binding_exit_script("python", guest, n))
    r["exit_us_lua"] = per_exit(lambda n: binding_exit_script("lua", guest, n))
    go_bin = build_go_exitbench(b)
    if go_bin:
        r["exit_us_go"] = per_exit(lambda n: [go_bin, guest, str(n)])

    print("memory ...", flush=True)
    kvmc_idle = [kvmc, "run", "--kernel", guest, "--mem", "64M", "--cmdline", "kvmc.test=echo"]
    qemu_idle = QEMU + ["-kernel", guest, "-append", "kvmc.test=echo"]
    for vmm, cmd in (("kvmc", kvmc_idle), ("qemu", qemu_idle)):
        # One process's RSS moves by about 0.1 MiB from start to start (where
        # ASLR puts libc against the kernel's 64 KiB fault-around windows), so
        # the 1-VM row is the median of several starts, one VM at a time.
        r[f"rss_kib_{vmm}_1"] = statistics.median(idle_vms(cmd, 1)[0]
                                                  for _ in range(3 if args.quick else 9))
        r[f"rss_kib_{vmm}_{many}"], r[f"pss_kib_{vmm}_{many}"] = idle_vms(cmd, many)

    print("density ...", flush=True)
    n = 10 if args.quick else 50
    r["vms_per_s_library"] = float(subprocess.run([driver, "create", guest, str(n)],
                                                  capture_output=True, text=True,
                                                  check=True, env=env).stdout)
    r["vms_per_s_cli"] = n / sum(wall([kvmc, "run", "--kernel", guest, "--mem", "64M"])
                                 for _ in range(n))
    r["vms_per_s_qemu"] = n / sum(wall(QEMU + ["-kernel", guest]) for _ in range(min(n, 20))) \
        * min(n, 20) / n

    print("peak memory at boot ...", flush=True)
    os.makedirs(args.out, exist_ok=True)
    r["peak_rss_initrd_mib"] = 16 if args.quick else 96
    r.update(peak_rss_boot(kvmc, guest, args.out, r["peak_rss_initrd_mib"]))

    print("block and net throughput ...", flush=True)
    tsc_hz = float(subprocess.run([floor, "--tsc-hz"], capture_output=True, text=True,
                                  check=True).stdout)
    os.makedirs(args.out, exist_ok=True)
    image = os.path.join(args.out, "bench-disk.img")
    mib = 16 if args.quick else 64
    make_image(image, 2 * mib)
    try:
        r.update(block_throughput(kvmc, guest, image, mib, 1 if args.quick else 5, tsc_hz))
    finally:
        os.unlink(image)
    r.update(net_throughput(kvmc, guest, 2000 if args.quick else 20000, 1 if args.quick else 5,
                            tsc_hz))
    r.update(notify_round_trip(kvmc, guest, 2000 if args.quick else 20000,
                               1 if args.quick else 5, tsc_hz))

    print("Firecracker API ...", flush=True)
    fc = os.path.join(b, "server", "kvmc-firecracker")
    os.makedirs(args.out, exist_ok=True)
    r.update(fc_api_times(fc, guest, args.out, reps))

    print("snapshots ...", flush=True)
    sizes = [64, 1024] if args.quick else [64, 1024, 4096]
    r.update(snapshots(b, guest, args.out, env, 1 if args.quick else 5, sizes))

    rows = result_rows(r, many) + snapshot_rows(r, sizes)
    r["vms_per_s_cli_note"] = r["vms_per_s_cli"]
    lines = ["| measurement | unit | kvmc | floor | QEMU microvm | kvmc/floor | kvmc/QEMU |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, unit, k, f, q in rows:
        fmt = lambda v: "-" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.2f}"
        ratio = lambda a, b: "-" if a is None or b in (None, 0) else f"{a / b:.2f}"
        lines.append(f"| {name} | {unit} | {fmt(k)} | {fmt(f)} | {fmt(q)} | {ratio(k, f)} | "
                     f"{ratio(k, q)} |")
    table = "\n".join(lines)
    print()
    print(table)
    api = ["| kvmc-firecracker | ms | kvmc-firecracker | reference | ratio |",
           "| --- | --- | --- | --- | --- |",
           f"| exec to the API answering (wall) | ms | {r['fc_api_ready_ms']:.2f} | - | - |",
           f"| exec to the API answering (CPU) | ms | {r['fc_api_ready_cpu_ms']:.2f} | 8 "
           f"(Firecracker's specification) | {r['fc_api_ready_cpu_ms'] / 8:.2f} |",
           f"| InstanceStart to first serial byte, vs kvmc run's exec to first byte | ms | "
           f"{r['fc_start_first_byte_ms']:.2f} | {r['cold_first_byte_ms_kvmc']:.2f} | "
           f"{r['fc_start_first_byte_ms'] / r['cold_first_byte_ms_kvmc']:.2f} |"]
    table += "\n\n" + "\n".join(api)
    print()
    print("\n".join(api))
    print(f"\nCLI: {r['vms_per_s_cli']:.1f} VMs/s sequentially, each a new process")
    print(f"net: the host sink received {100 * r['net_tx_delivered_kvmc']:.0f}% (kvmc), "
          f"{100 * r['net_tx_delivered_kvmcpci']:.0f}% (kvmc, virtio-pci) and "
          f"{100 * r['net_tx_delivered_qemu']:.0f}% (QEMU) of the datagrams sent")

    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(r, f, indent=2)
    print(plot(rows, os.path.join(args.out, "ratios.png")))
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(f"results: {os.path.join(args.out, 'results.json')}")


if __name__ == "__main__":
    main()
