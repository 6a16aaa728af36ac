"""What a hand-off costs on this host, and the thread policy the monitor picks from it.

One run measures, in this order:
  - host threads (host-handoff): an eventfd ping-pong between two threads blocking in
    poll, as the monitor's vCPU threads hand off: both on one CPU, on two CPUs, and on
    two CPUs with a SCHED_IDLE spinner on each;
  - the guest's side (gatebench, 1 compartment): a sleep hypercall that returns at
    once (an exit to the monitor and back) and a doorbell (an `out` the kernel turns
    into an eventfd signal, an ioeventfd);
  - whole hand-offs between two compartments (gatebench gate-remote-0 with
    `--tune spin=0`, so that every wait sleeps and every reply rings a doorbell): as
    the scheduler places the vCPUs, pinned to two CPUs, confined to one CPU (taskset),
    and with an idle spinner per CPU; and the same call with the policy's spinning;
  - the in-kernel wait (a guest that halts in ring 0, woken by an irqfd) against
    today's exit to the monitor, in a bare KVM guest (bench/pvm-wake, its README says
    why the monitor does not use it), same CPU and across CPUs.
Then prints the policy `flexos-vmm --print-policy` picks for the usual runs.

Prints a table and writes OUT_DIR/handoff.json.

Usage: bench_handoff.py VMM IMAGES HOST_HANDOFF PVM_WAKE_DIR OUT_DIR [--calls N]
                        [--round-trips N]
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time


def progress(msg):
    print(f"bench-handoff: {msg}", file=sys.stderr, flush=True)


def host_cpu():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def json_lines(text, bench):
    rows = []
    for line in text.splitlines():
        at = line.find('{"bench":"%s"' % bench)
        if at >= 0:
            rows.append(json.loads(line[at:]))
    return rows


def run(cmd, what, timeout=600, cwd=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        sys.exit(f"bench-handoff: {what} failed with status {proc.returncode}:\n"
                 f"{proc.stderr.strip()}\n{proc.stdout.strip()[-2000:]}")
    return proc.stdout


def gate_case(args, case, compartments, tune=None, prefix=(), reps=3):
    """Median over `reps` runs of gatebench's median for `case`, in microseconds."""
    cmd = list(prefix) + [args.vmm, "-c", str(compartments)]
    if tune:
        cmd += ["--tune", tune]
    cmd += [os.path.join(args.images, "gatebench.elf"), "--",
            f"case={case}", f"calls={args.calls}", "seconds=5"]
    runs = []
    for _ in range(reps):
        rows = json_lines(run(cmd, " ".join(cmd)), "gate")
        row = next((r for r in rows if r["case"] == case), None)
        if row is None:
            sys.exit(f"bench-handoff: gatebench printed no {case} line")
        runs.append(row["ns_median"] / 1000.0)
    return statistics.median(runs), runs


def policy_of(args, argv):
    out = run([args.vmm, "--print-policy"] + argv, "flexos-vmm --print-policy")
    text, js = out.strip().splitlines()
    return text, json.loads(js)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vmm")
    ap.add_argument("images")
    ap.add_argument("host_handoff")
    ap.add_argument("pvm_wake")
    ap.add_argument("out_dir")
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--round-trips", type=int, default=20000)
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    started = time.time()
    rows = []

    progress("host threads: eventfd ping-pong (same CPU, two CPUs, idle spinners)")
    for r in json_lines(run([args.host_handoff, str(args.round_trips)], "host-handoff"),
                        "handoff"):
        rows.append({"what": f"host threads: {r['case']}", "us": r["us_median"],
                     "spread": [r["us_p10"], r["us_p90"]], "kind": "host"})

    progress("guest: sleep hypercall and doorbell (1 compartment)")
    for case, label in (("hypercall-sleep0", "guest: exit to the monitor and back (sleep, no wait)"),
                        ("hypercall-doorbell", "guest: doorbell (ioeventfd, no exit to the monitor)")):
        us, runs = gate_case(args, case, 1)
        rows.append({"what": label, "us": us, "runs": runs, "kind": "guest"})

    progress("hand-offs between two compartments (every wait sleeps: --tune spin=0)")
    variants = [
        ("vCPUs where the scheduler puts them", "spin=0", ()),
        ("vCPUs pinned to two CPUs", "spin=0,pin=on", ()),
        ("both vCPUs on one CPU (taskset -c 0)", "spin=0", ("taskset", "-c", "0")),
        ("an idle spinner per CPU", "spin=0,idle-spinner=on", ()),
        ("the policy's choice (spinning)", None, ()),
    ]
    for label, tune, prefix in variants:
        us, runs = gate_case(args, "gate-remote-0", 2, tune, prefix)
        rows.append({"what": f"gate round trip, 2 compartments: {label}", "us": us,
                     "runs": runs, "tune": tune, "kind": "handoff"})
    progress("bare KVM guest: exit to the monitor against halt + irqfd (bench/pvm-wake)")
    run(["make", "-s", "-C", args.pvm_wake], "building bench/pvm-wake")
    pvmwake = os.path.abspath(os.path.join(args.pvm_wake, "pvmwake"))
    for mode, label in (("0", "bare guest: exit to the monitor, vCPU thread blocks on an eventfd"),
                        ("6", "bare guest: halt in ring 0, woken by an irqfd (in-kernel)")):
        for where in ("same", "cross"):
            out = run([pvmwake, "-m", mode, "-n", "200", "-w", "20", "-a", where, "-g", "1000"],
                      f"pvmwake -m {mode}", cwd=args.pvm_wake)
            found = re.search(r"median ([0-9.]+) us\s+p10 ([0-9.]+)\s+p90 ([0-9.]+)", out)
            if not found:
                sys.exit(f"bench-handoff: pvmwake printed no median:\n{out}")
            med, p10, p90 = (float(x) for x in found.groups())
            rows.append({"what": f"{label}, {'one CPU' if where == 'same' else 'two CPUs'}",
                         "us": med, "spread": [p10, p90], "kind": "bare"})

    progress("the policy for the usual runs")
    images = args.images
    cases = [
        ("sqlite, 1 compartment, disk", ["-c", "1", "--disk", "d.img", f"{images}/sqlite.elf"]),
        ("sqlite, 2 compartments, disk", ["-c", "2", "--disk", "d.img", f"{images}/sqlite.elf"]),
        ("sqlite, 3 compartments, disk", ["-c", "3", "--disk", "d.img", f"{images}/sqlite.elf"]),
        ("sqlite, 2 compartments, ramfs", ["-c", "2", f"{images}/sqlite.elf"]),
        ("iperf, 1 compartment", ["-c", "1", "--net", "tap=t0", f"{images}/iperf.elf"]),
        ("iperf, 2 compartments", ["-c", "2", "--net", "tap=t0", f"{images}/iperf.elf"]),
        ("iperf, 3 compartments", ["-c", "3", "--net", "tap=t0", f"{images}/iperf.elf"]),
        ("gatebench, 4 compartments", ["-c", "4", f"{images}/gatebench.elf"]),
    ]
    policies = []
    for label, argv in cases:
        text, js = policy_of(args, argv)
        policies.append({"run": label, "policy": text, "json": js})

    cpu = host_cpu()
    print()
    print(f"Hand-off costs on this host ({cpu}, {os.cpu_count()} CPUs), microseconds, "
          f"median (host threads: p10-p90; guest rows: median of 3 runs)")
    print()
    print(f"{'what':<72} {'us':>9}")
    for r in rows:
        us = "-" if r["us"] is None else f"{r['us']:.1f}"
        extra = ""
        if "spread" in r:
            extra = f"  ({r['spread'][0]:.1f}-{r['spread'][1]:.1f})"
        elif r.get("note"):
            extra = f"  {r['note']}"
        print(f"{r['what']:<72} {us:>9}{extra}")
    print()
    print("The policy flexos-vmm picks (flexos-vmm --print-policy):")
    for p in policies:
        print(f"  {p['run']}: {p['policy']}")
    result = {
        "bench": "handoff",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host_cpu": cpu,
        "cpus": os.cpu_count(),
        "seconds": round(time.time() - started, 1),
        "rows": rows,
        "policies": policies,
    }
    path = os.path.join(args.out_dir, "handoff.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print()
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
