"""iPerf benchmark in the style of FlexOS Figure 9.

A stock iperf2 client (`iperf -c IP -t SECONDS`, as FlexOS ran it) streams into a server
that loops recv(N) with N swept from 16 B to 1 MiB. Measured in one run, per N:
  - host kernel: `iperf -s -l N` over a veth pair between two namespaces;
  - tap forwarder, plain: the same kernel server behind two taps and bench's `tapfwd`
    moving 1514-byte frames between them;
  - tap forwarder, TSO: the same with a vnet header and CSUM/TSO offloads (frames up
    to 64 KiB): the best userspace tap path, the yardstick of the guest's device path;
  - the guest: the iperf image under 1, 2 and 3 compartments (`recv=N count=1`), its
    virtio-net device on a tap in a namespace of its own.
Every address lives in namespaces this script creates and removes; nothing is routed
to or from the host's own namespace.

While each guest run streams, the monitor's threads are sampled from /proc: the table
says how many host cores each thread used (vCPU threads, the device thread).

Usage: bench_iperf.py VMM IMAGE TAPFWD OUT_DIR [--seconds S] [--sizes LIST]
                      [--compartments 1,2,3] [--no-baselines]
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

from benchlib import BusyLoad, policy

SIZES = [16, 32, 64, 128, 256, 1024, 4096, 16384, 65536, 262144, 1048576]
# FlexOS ASPLOS'22 Figure 9 (Gbit/s), from shared/REFERENCE.md; 32 KiB..1 MiB is a range
# there, its midpoint here.
FLEXOS_NONE = {16: 1.06, 64: 2.85, 256: 3.01, 1024: 3.00, 16384: 3.04, 65536: 3.045, 262144: 3.045, 1048576: 3.045}
FLEXOS_EPT2 = {16: 0.36, 64: 1.07, 256: 2.73, 1024: 2.83, 16384: 2.88, 65536: 2.86, 262144: 2.86, 1048576: 2.86}
GOAL_1_FWD = 1.0    # 1 compartment / TSO forwarder, recv >= 1 KiB
GOAL_2_1_BIG = 0.95  # 2 compartments / 1 compartment, recv >= 1 KiB
GOAL_2_1_16 = 0.8   # 2 compartments / 1 compartment, recv 16 B
GOAL_3_1_BIG = 0.8  # 3 compartments / 1 compartment, recv >= 1 KiB
CLIENT_IP, SERVER_IP = "10.0.0.1", "10.0.0.2"
PREFIX = f"fxbench{os.getpid()}"


def progress(msg):
    print(f"bench-iperf: {msg}", file=sys.stderr, flush=True)


def sh(*args, check=True):
    return subprocess.run(args, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def size_label(n):
    if n >= 1 << 20:
        return f"{n >> 20} MiB"
    if n >= 1 << 10:
        return f"{n >> 10} KiB"
    return f"{n} B"


class Namespaces:
    """Network namespaces made for one measurement and removed afterwards, whatever
    happens (a namespace holds its taps and veths, which go with it)."""

    def __init__(self):
        self.names = []

    def add(self, suffix):
        name = f"{PREFIX}{suffix}"
        sh("ip", "netns", "add", name)
        self.names.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def tap(self, ns, dev, addr, vnet):
        extra = ["vnet_hdr"] if vnet else []
        sh("ip", "-n", ns, "tuntap", "add", "dev", dev, "mode", "tap", *extra)
        self.up(ns, dev, addr)

    def up(self, ns, dev, addr):
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")

    def close(self):
        for name in self.names:
            sh("ip", "netns", "delete", name, check=False)
        self.names = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_line(proc, pattern, what, timeout=20.0):
    """Reads `proc`'s stdout until a line matches; returns the lines read."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return seen
    proc.kill()
    rest = proc.communicate()
    sys.exit(f"bench-iperf: {what} never printed /{pattern}/; output:\n{''.join(seen)}{rest[0] or ''}{rest[1] or ''}")


def client(ns, seconds):
    """One stock iperf2 client run; returns (Gbit/s, bytes) from its CSV report."""
    r = sh("ip", "netns", "exec", ns, "iperf", "-c", SERVER_IP, "-t", str(seconds), "-y", "C", check=False)
    rows = [l for l in r.stdout.splitlines() if l.count(",") >= 8]
    if r.returncode != 0 or not rows:
        sys.exit(f"bench-iperf: iperf client failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    fields = rows[-1].split(",")
    return int(fields[8]) / 1e9, int(fields[7])


def thread_ticks(pid):
    """{thread name: user+system clock ticks} of process `pid`."""
    out = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[f"{name}#{tid}"] = int(fields[11]) + int(fields[12])
    return out


class ThreadSampler:
    """Samples a process's per-thread CPU ticks every 0.2 s while it runs, keeping the
    first and the latest sample: the cores each thread used over that span. (Sampling
    only after the client ends misses the monitor, which exits right after its test.)"""

    def __init__(self, pid):
        self.pid, self.first, self.last = pid, None, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            ticks = thread_ticks(self.pid)
            if ticks:
                sample = (time.monotonic(), ticks)
                if self.first is None:
                    self.first = sample
                self.last = sample
            self.stop.wait(0.2)

    def cores(self):
        self.stop.set()
        self.thread.join()
        if self.first is None or self.last is self.first:
            return {}
        return cores_used(self.first[1], self.last[1], self.last[0] - self.first[0])


def cores_used(before, after, seconds):
    hz = os.sysconf("SC_CLK_TCK")
    used = {}
    for key, ticks in after.items():
        name = key.split("#")[0]
        delta = (ticks - before.get(key, 0)) / hz / seconds
        if delta >= 0.01:
            used[name] = round(used.get(name, 0) + delta, 2)
    return used


def kernel_server(ns, size):
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "stdbuf", "-oL", "iperf", "-s", "-l", str(size)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_line(proc, r"Server listening", "iperf -s")
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_veth(size, seconds):
    with Namespaces() as n:
        c, s = n.add("c"), n.add("s")
        sh("ip", "link", "add", "fxv0", "netns", c, "type", "veth", "peer", "fxv1", "netns", s)
        n.up(c, "fxv0", CLIENT_IP)
        n.up(s, "fxv1", SERVER_IP)
        server = kernel_server(s, size)
        try:
            return {"gbps": client(c, seconds)[0]}
        finally:
            stop(server)


def run_tapfwd(tapfwd, size, seconds, vnet):
    with Namespaces() as n:
        c, s = n.add("c"), n.add("s")
        n.tap(c, "fxt0", CLIENT_IP, vnet)
        n.tap(s, "fxt0", SERVER_IP, vnet)
        server = kernel_server(s, size)
        args = [tapfwd] + (["--vnet"] if vnet else []) + [f"{c}:fxt0", f"{s}:fxt0"]
        fwd = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_line(fwd, r"tapfwd: forwarding", "tapfwd")
            sampler = ThreadSampler(fwd.pid)
            gbps, _ = client(c, seconds)
            return {"gbps": gbps, "cores": sampler.cores()}
        finally:
            stop(fwd)
            stop(server)


def run_guest(vmm, image, comps, size, seconds, tune=None):
    with Namespaces() as n:
        ns = n.add("g")
        n.tap(ns, "fxt0", CLIENT_IP, True)
        cmd = ["ip", "netns", "exec", ns, vmm, "--compartments", str(comps), "--net", "tap=fxt0"] + \
            (["--tune", tune] if tune else []) + \
            [image, "--", f"ip={SERVER_IP}/24", f"recv={size}", "count=1"]
        vm = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = wait_line(vm, r"iperf: listening", "the iperf image")
            sampler = ThreadSampler(vm.pid)
            gbps, sent = client(ns, seconds)
            cores = sampler.cores()
            out, err = vm.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            vm.kill()
            out, err = vm.communicate()
            sys.exit(f"bench-iperf: the guest did not exit after its test:\n{out}{err}")
        finally:
            stop(vm)
        lines += out.splitlines(keepends=True)
        if vm.returncode != 0:
            sys.exit(f"bench-iperf: the guest exited {vm.returncode}:\n{''.join(lines)}{err}")
        # In several compartments the console prefixes each line with `[app] `.
        reports = [json.loads(l[l.index('{"bench"'):]) for l in lines if '{"bench":"iperf"' in l]
        return {"gbps": gbps, "client_bytes": sent, "cores": cores, "guest": reports}


def ratio(a, b):
    return a / b if a is not None and b else None


def print_table(res):
    cols = res["columns"]
    print(f"\niPerf (Figure 9): Gbit/s, iperf2 client, {res['seconds']} s per point")
    head = f"{'recv':>8}" + "".join(f"{c:>11}" for c in cols) + \
        f"{'1c/fwdTSO':>11}{'2c/1c':>8}{'3c/1c':>8}{'FlexOS':>13}"
    print(head)
    for size in res["sizes"]:
        row = res["points"][str(size)]
        cells = "".join(f"{row[c]['gbps']:>11.2f}" if c in row else f"{'-':>11}" for c in cols)
        g1 = row.get("1 comp", {}).get("gbps")
        g2 = row.get("2 comp", {}).get("gbps")
        g3 = row.get("3 comp", {}).get("gbps")
        fwd = row.get("fwd TSO", {}).get("gbps")
        r1, r2, r3 = ratio(g1, fwd), ratio(g2, g1), ratio(g3, g1)
        fl = f"{FLEXOS_NONE.get(size, float('nan')):.2f}/{FLEXOS_EPT2.get(size, float('nan')):.2f}"
        print(f"{size_label(size):>8}{cells}"
              f"{(f'{r1:.2f}x' if r1 else '-'):>11}{(f'{r2:.2f}x' if r2 else '-'):>8}"
              f"{(f'{r3:.2f}x' if r3 else '-'):>8}{fl:>13}")
    print("FlexOS column: NONE/EPT2 Gbit/s from the paper (nan: not in the figure).")
    print(f"Goals: 1 comp >= {GOAL_1_FWD}x fwd TSO at recv >= 1 KiB; 2 comp >= {GOAL_2_1_BIG}x 1 comp "
          f"at >= 1 KiB and >= {GOAL_2_1_16}x at 16 B; 3 comp >= {GOAL_3_1_BIG}x 1 comp at >= 1 KiB.")
    print("\nHost cores used per thread while the client streamed (median over sizes):")
    for c in cols:
        per = {}
        for size in res["sizes"]:
            for name, v in res["points"][str(size)].get(c, {}).get("cores", {}).items():
                per.setdefault(name, []).append(v)
        if per:
            print(f"  {c}: " + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in sorted(per.items())))


def svg_chart(res, path):
    """Gbit/s against recv size (log scale), one line per series, FlexOS's beside."""
    w, h, left, top, pw, ph = 760, 420, 60, 40, 560, 300
    sizes = res["sizes"]
    series = [(c, {s: res["points"][str(s)][c]["gbps"] for s in sizes if c in res["points"][str(s)]})
              for c in res["columns"]]
    series += [("FlexOS NONE", FLEXOS_NONE), ("FlexOS EPT2", FLEXOS_EPT2)]
    peak = max([v for _, pts in series for v in pts.values()] + [1.0])
    colours = ["#888", "#c9a", "#a6c", "#1b7", "#27c", "#e62", "#444", "#b33"]
    lo, hi = 4, 20  # log2 of 16 B .. 1 MiB

    def xy(size, v):
        return left + pw * (math.log2(size) - lo) / (hi - lo), top + ph - ph * v / peak

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           '<text x="10" y="22" font-size="16">iPerf throughput vs receive size (FlexOS Figure 9 style)</text>',
           f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>',
           f'<text x="10" y="{top + 10}">Gbit/s</text>']
    for s in sizes:
        x, _ = xy(s, 0)
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" font-size="10">{size_label(s)}</text>')
    for i, (name, pts) in enumerate(series):
        colour = colours[i % len(colours)]
        dash = ' stroke-dasharray="5,4"' if name.startswith("FlexOS") else ""
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(s, v) for s, v in sorted(pts.items())))
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{left + pw + 10}" y="{top + 14 + 16 * i}" fill="{colour}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def sweep(args, sizes, columns, tag=""):
    """Every (size, column) point once; columns: baselines and guest compartment counts."""
    points = {}
    total, done = len(sizes) * len(columns), 0
    for size in sizes:
        row = points[str(size)] = {}
        for col in columns:
            done += 1
            progress(f"{tag}[{done}/{total}] recv {size_label(size)}: {col}")
            if col == "veth":
                row[col] = run_veth(size, args.seconds)
            elif col.startswith("fwd"):
                row[col] = run_tapfwd(args.tapfwd, size, args.seconds, col == "fwd TSO")
            else:
                row[col] = run_guest(args.vmm, args.image, int(col.split()[0]), size,
                                     args.seconds, args.tune)
            progress(f"    {row[col]['gbps']:.2f} Gbit/s")
    return points


def print_load(res):
    """Each column's slowdown beside the busy processes (quiet / loaded Gbit/s)."""
    print(f"\nbeside {res['competing_processes']} busy process(es): slowdown "
          f"(quiet Gbit/s / loaded Gbit/s; veth is the host kernel's)")
    cols = res["columns"]
    print(f"{'recv':>8}" + "".join(f"{c:>11}" for c in cols))
    for size in res["sizes"]:
        q, l = res["points"][str(size)], res["loaded"][str(size)]
        cells = "".join(
            f"{q[c]['gbps'] / l[c]['gbps']:>10.2f}x" if l.get(c, {}).get("gbps") else f"{'-':>11}"
            for c in cols)
        print(f"{size_label(size):>8}{cells}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("vmm")
    p.add_argument("image")
    p.add_argument("tapfwd")
    p.add_argument("out_dir")
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--sizes", default=",".join(map(str, SIZES)),
                   help="comma-separated receive sizes in bytes (default: Figure 9's sweep)")
    p.add_argument("--compartments", default="1,2,3", help="comma-separated subset of 1,2,3; empty for baselines only")
    p.add_argument("--no-baselines", action="store_true", help="guest runs only")
    p.add_argument("--load", type=int, default=0,
                   help="run the sweep again beside N busy processes and report slowdowns")
    p.add_argument("--tune", default=None,
                   help="passed to the monitor as --tune (a thread-policy candidate)")
    args = p.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        comps = [int(c) for c in args.compartments.split(",") if c]
    except ValueError:
        sys.exit("--sizes and --compartments take comma-separated numbers")
    if not sizes or any(s < 1 or s > 1 << 20 for s in sizes) or any(c not in (1, 2, 3) for c in comps):
        sys.exit("--sizes: 1..1048576 bytes; --compartments: from 1,2,3")
    if args.seconds < 1:
        sys.exit("--seconds must be at least 1")
    for tool in ("ip", "iperf", "stdbuf"):
        if not shutil.which(tool):
            sys.exit(f"`{tool}` not found: run scripts/setup")
    os.makedirs(args.out_dir, exist_ok=True)

    columns = ([] if args.no_baselines else ["veth", "fwd plain", "fwd TSO"]) + [f"{c} comp" for c in comps]
    res = {"seconds": args.seconds, "sizes": sizes, "columns": columns,
           "client": "iperf2 -c 10.0.0.2 -t S (default 128 KiB writes)", "tune": args.tune,
           "policies": {}}
    for c in comps:
        text, js = policy(args.vmm, ["-c", str(c), "--net", "tap=fxt0"] +
                          (["--tune", args.tune] if args.tune else []) + [args.image])
        res["policies"][f"{c} comp"] = {"text": text, "json": js}
    res["points"] = sweep(args, sizes, columns)
    if args.load:
        with BusyLoad(args.load):
            res["loaded"] = sweep(args, sizes, columns, f"beside {args.load} busy: ")
        res["competing_processes"] = args.load
    print_table(res)
    if args.load:
        print_load(res)
    print("\nthe monitor's thread policy (flexos-vmm --print-policy):")
    for c, pol in res["policies"].items():
        print(f"  {c}: {pol['text']}")
    with open(os.path.join(args.out_dir, "iperf.json"), "w") as f:
        json.dump(res, f, indent=1)
    svg_chart(res, os.path.join(args.out_dir, "iperf.svg"))
    print(f"\nwrote {args.out_dir}/iperf.json and iperf.svg")


if __name__ == "__main__":
    main()
