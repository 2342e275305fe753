#!/usr/bin/env python3
"""kvmc benchmarks, each against references measured in the same run.

  cold start   exec to first serial byte and to exit: kvmc vs the raw-KVM
               floor (bench/floor.c) vs QEMU microvm, same PVH guest image
  exit cost    per port/MMIO exit through kvmc's bus with a C device, and
               through Python and Lua device callbacks, vs the floor
  memory       resident memory beyond the guest RAM the guest touched, for
               1 and for 50 idle VMs; QEMU microvm as the reference
  density      VMs created, run and destroyed per second (library, CLI, QEMU)

usage: bench/run.py [--build build] [--quick] [--out bench/results]
Timings on these shared machines are noisy: read the ratios, not the numbers.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
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


def median(f, n):
    return statistics.median(f() for _ in range(n))


def rss_beyond_guest(pid):
    """Resident KiB of the process minus the resident part of its guest RAM
    mapping (the anonymous mapping of GUEST_RAM bytes, or the closest above)."""
    total, guest, size, rss, best = 0, 0, None, 0, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                size = hi - lo
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
                total += rss
                if size and size >= GUEST_RAM and (best is None or size < best):
                    best, guest = size, rss
    return total - guest


def idle_vms(cmd, count):
    """Starts count idle guests (waiting for console input), returns the mean
    resident memory beyond guest RAM, in KiB."""
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
        return statistics.mean(rss_beyond_guest(p.pid) for p in procs)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    args = ap.parse_args()
    b = os.path.abspath(args.build)
    guest = os.path.join(b, "tests", "guests", "kvmc-test-guest.elf")
    kvmc = os.path.join(b, "cli", "kvmc")
    floor = os.path.join(b, "bench", "kvmc-bench-floor")
    driver = os.path.join(b, "bench", "kvmc-bench-exit-cost")
    env = dict(os.environ, KVMC_LIBRARY=os.path.join(b, "core", "libkvmc.so.0"),
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
    r["rss_kib_kvmc_1"] = idle_vms(kvmc_idle, 1)
    r[f"rss_kib_kvmc_{many}"] = idle_vms(kvmc_idle, many)
    r["rss_kib_qemu_1"] = idle_vms(qemu_idle, 1)
    r[f"rss_kib_qemu_{many}"] = idle_vms(qemu_idle, many)

    print("density ...", flush=True)
    n = 10 if args.quick else 50
    r["vms_per_s_library"] = float(subprocess.run([driver, "create", guest, str(n)],
                                                  capture_output=True, text=True,
                                                  check=True, env=env).stdout)
    r["vms_per_s_cli"] = n / sum(wall([kvmc, "run", "--kernel", guest, "--mem", "64M"])
                                 for _ in range(n))
    r["vms_per_s_qemu"] = n / sum(wall(QEMU + ["-kernel", guest]) for _ in range(min(n, 20))) \
        * min(n, 20) / n

    rows = [
        ("cold start: exec to first serial byte", "ms", r["cold_first_byte_ms_kvmc"],
         r["cold_first_byte_ms_floor"], r["cold_first_byte_ms_qemu"]),
        ("cold start: exec to clean exit", "ms", r["cold_exit_ms_kvmc"],
         r["cold_exit_ms_floor"], r["cold_exit_ms_qemu"]),
        ("exit cost, C device (port+MMIO)", "us", r["exit_us_kvmc_c"], r["exit_us_floor"], None),
        ("exit cost, Python device", "us", r["exit_us_python"], r["exit_us_floor"], None),
        ("exit cost, Lua device", "us", r["exit_us_lua"], r["exit_us_floor"], None),
        ("exit cost, Go device", "us", r.get("exit_us_go"), r["exit_us_floor"], None),
        ("RSS beyond guest RAM, 1 idle VM", "KiB", r["rss_kib_kvmc_1"], None, r["rss_kib_qemu_1"]),
        (f"RSS beyond guest RAM, {many} idle VMs (mean)", "KiB", r[f"rss_kib_kvmc_{many}"],
         None, r[f"rss_kib_qemu_{many}"]),
        ("VMs per second (library / CLI)", "1/s", r["vms_per_s_library"], None,
         r["vms_per_s_qemu"]),
    ]
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
    print(f"\nCLI: {r['vms_per_s_cli']:.1f} VMs/s sequentially, each a new process")

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(r, f, indent=2)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        plotted = [row for row in rows if row[2] is not None and (row[3] or row[4])]
        labels = [row[0] for row in plotted]
        floor_ratio = [row[2] / row[3] if row[3] else 0 for row in plotted]
        qemu_ratio = [row[2] / row[4] if row[4] else 0 for row in plotted]
        fig, ax = plt.subplots(figsize=(10, 5))
        y = range(len(labels))
        ax.barh([i + 0.2 for i in y], floor_ratio, height=0.4, label="kvmc / floor")
        ax.barh([i - 0.2 for i in y], qemu_ratio, height=0.4, label="kvmc / QEMU microvm")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(list(y))
        ax.set_yticklabels(labels)
        ax.set_xlabel("ratio (lower is better for times and memory; higher for VMs/s)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "ratios.png"), dpi=100)
        print(f"plot: {os.path.join(args.out, 'ratios.png')}")
    except ImportError:
        print("plot: skipped (pip install matplotlib)")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(f"results: {os.path.join(args.out, 'results.json')}")


if __name__ == "__main__":
    main()
