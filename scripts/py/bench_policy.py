"""The thread policy's candidates, each measured on the workloads it is meant for.

Every candidate is a `--tune` setting of the monitor; "before" is what the monitor did
before the thread policy (a device thread always, no pinning, guests spinning 5000
rounds when compartments <= CPUs and 1500 otherwise), "policy" is the monitor's own
choice. Workloads (median of REPS runs each, interleaved):
  - sqlite `bench` (5000 inserts) on a FAT disk on /dev/shm, and on vfs's RAM file
    system, in 2 and 3 compartments (seconds, lower is better);
  - gatebench `gate-chain` in 3 and 4 compartments (microseconds per call);
  - iperf in 2 and 3 compartments at recv 1 KiB (Gbit/s, higher is better; the stock
    iperf2 client in a namespace this script creates and removes).
Prints a table (each cell also as a ratio to "before") and writes OUT_DIR/policy.json.

Usage: bench_policy.py VMM IMAGES MKDISK OUT_DIR [--reps N] [--only WORKLOAD,...]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import bench_iperf

CPUS = len(os.sched_getaffinity(0))


def before(compartments):
    spin = 5000 if compartments <= CPUS else 1500
    return f"blk=thread,pin=off,spin={spin}"


CANDIDATES = [
    ("before", before),
    ("policy", lambda c: None),
    ("disk in its vCPU only", lambda c: before(c).replace("blk=thread", "blk=vcpu")),
    ("pinning only", lambda c: "blk=thread,pin=on"),
    ("no spinning, unpinned", lambda c: "pin=off,spin=0"),
    ("idle spinners", lambda c: "idle-spinner=on"),
]


def guest_json(cmd, bench):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    for line in proc.stdout.splitlines():
        at = line.find('{"bench":"%s"' % bench)
        if at >= 0:
            return json.loads(line[at:])
    sys.exit(f"`{' '.join(cmd)}` printed no {bench} line")


def tune_args(tune):
    return ["--tune", tune] if tune else []


def sqlite(args, shm, compartments, storage, tune):
    cmd = [args.vmm, "-c", str(compartments)] + tune_args(tune)
    disk = None
    if storage == "disk":
        disk = os.path.join(shm, "disk.img")
        if os.path.exists(disk):
            os.remove(disk)
        subprocess.run([args.mkdisk, disk], check=True, stderr=subprocess.DEVNULL)
        cmd += ["--disk", disk]
    cmd += [os.path.join(args.images, "sqlite.elf"), "--", "bench"]
    if storage == "ramfs":
        cmd.append("ramfs")
    try:
        return guest_json(cmd, "sqlite")["seconds"]
    finally:
        if disk:
            os.remove(disk)


def chain(args, compartments, tune):
    cmd = [args.vmm, "-c", str(compartments)] + tune_args(tune) + [
        os.path.join(args.images, "gatebench.elf"), "--", "case=gate-chain", "calls=3000"]
    return guest_json(cmd, "gate")["ns_median"] / 1000.0


def iperf(args, compartments, tune):
    res = bench_iperf.run_guest(args.vmm, os.path.join(args.images, "iperf.elf"),
                                compartments, 1024, 3, tune)
    return res["gbps"]


WORKLOADS = [
    ("sqlite disk 2c", "s", lambda a, shm, t: sqlite(a, shm, 2, "disk", t(2))),
    ("sqlite disk 3c", "s", lambda a, shm, t: sqlite(a, shm, 3, "disk", t(3))),
    ("sqlite ramfs 2c", "s", lambda a, shm, t: sqlite(a, shm, 2, "ramfs", t(2))),
    ("sqlite ramfs 3c", "s", lambda a, shm, t: sqlite(a, shm, 3, "ramfs", t(3))),
    ("gate-chain 3c", "us/call", lambda a, shm, t: chain(a, 3, t(3))),
    ("gate-chain 4c", "us/call", lambda a, shm, t: chain(a, 4, t(4))),
    ("iperf 2c 1KiB", "Gbit/s", lambda a, shm, t: iperf(a, 2, t(2))),
    ("iperf 3c 1KiB", "Gbit/s", lambda a, shm, t: iperf(a, 3, t(3))),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vmm")
    ap.add_argument("images")
    ap.add_argument("mkdisk")
    ap.add_argument("out_dir")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated workload names")
    args = ap.parse_args()
    wanted = [w for w in WORKLOADS if not args.only or w[0] in args.only.split(",")]
    if not wanted:
        sys.exit(f"--only: choose from {[w[0] for w in WORKLOADS]}")
    os.makedirs(args.out_dir, exist_ok=True)
    started = time.time()
    runs = {w[0]: {c[0]: [] for c in CANDIDATES} for w in wanted}
    with tempfile.TemporaryDirectory(prefix="bench-policy-", dir="/dev/shm") as shm:
        for r in range(args.reps):
            for name, _, fn in wanted:
                for cand, tune in CANDIDATES:
                    print(f"bench-policy: round {r + 1}/{args.reps}: {name}: {cand}",
                          file=sys.stderr, flush=True)
                    runs[name][cand].append(fn(args, shm, tune))
    med = {w: {c: statistics.median(v) for c, v in cs.items()} for w, cs in runs.items()}
    print(f"\nthread-policy candidates, median of {args.reps} (x before: >1 is better)")
    print(f"{'workload':<18}{'unit':>8}" + "".join(f"{c[0]:>24}" for c in CANDIDATES))
    for name, unit, _ in wanted:
        base = med[name]["before"]
        cells = []
        for cand, _ in CANDIDATES:
            v = med[name][cand]
            gain = v / base if unit == "Gbit/s" else base / v
            cells.append(f"{v:>12.4g} ({gain:5.2f}x)")
        print(f"{name:<18}{unit:>8}" + "".join(f"{c:>24}" for c in cells))
    out = {"bench": "policy", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": CPUS,
           "reps": args.reps, "seconds": round(time.time() - started, 1),
           "candidates": {c: (t(2), t(3)) for c, t in CANDIDATES}, "runs": runs,
           "median": med}
    path = os.path.join(args.out_dir, "policy.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
