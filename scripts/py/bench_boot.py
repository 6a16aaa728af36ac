"""Boot-time benchmark: runs `flexos-vmm --timings hello.elf` (1 compartment) and
`flexos-vmm --timings -c 2 gatebench.elf -- calls=1` (2 compartments) N times each and,
in the same run, spawns /bin/true N times as the floor any monitor process pays. Prints
a table per case and writes JSON. Timings come from the monitor's own --timings lines
(for several compartments: the last one to create its VM / reach guest main) plus wall
time measured here.

Usage: bench_boot.py VMM IMAGES_DIR RUNS OUT_JSON"""

import json
import os
import re
import statistics
import subprocess
import sys
import time

# One line per compartment: `timings: compartment=N memory_us=.. slots_us=.. ...`.
TIMING = re.compile(r"timings: compartment=\d+ (.*)")
PHASES = ["vm_us", "memory_us", "slots_us", "vm_created_us", "machine_us", "entry_us", "guest_main_us"]
CASES = [
    ("1 compartment (hello)", "hello.elf", [], []),
    ("2 compartments (gatebench calls=1)", "gatebench.elf", ["-c", "2"], ["--", "calls=1"]),
]
EXIT = re.compile(r"timings: exit_us=(\d+)")


def wall_us(cmd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return (time.perf_counter() - t0) * 1e6, proc


def measure(vmm, image, opts, guest, runs, baseline):
    rows = {**{p: [] for p in PHASES}, "exit_us": [], "wall_us": []}
    for i in range(runs):
        wall, proc = wall_us([vmm, "--timings", *opts, image, *guest])
        if proc.returncode != 0:
            sys.exit(f"run {i}: flexos-vmm exited {proc.returncode}: {proc.stderr.strip()}")
        per = TIMING.findall(proc.stderr)
        e = EXIT.search(proc.stderr)
        if not (per and e):
            sys.exit(f"run {i}: no timings in output: {proc.stderr.strip()}")
        fields = [dict(f.split("=") for f in line.split()) for line in per]
        for p in PHASES:
            # The last compartment to get there: the run is ready when all are.
            rows[p].append(max(int(f[p]) for f in fields))
        rows["exit_us"].append(int(e.group(1)))
        rows["wall_us"].append(wall)
        baseline.append(wall_us(["/bin/true"])[0])
        print(f"\r  {os.path.basename(image)}: run {i + 1}/{runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def main():
    vmm, images, runs, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    baseline = []
    result = {"bench": "boot", "runs": runs, "cases": {}}
    for label, image, opts, guest in CASES:
        rows = measure(vmm, os.path.join(images, image), opts, guest, runs, baseline)
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(f"boot of {label}, median of {runs} runs (microseconds; last compartment)")
        print(f"{'measure':<28}{'median':>10}{'min':>10}{'max':>10}")
        for k, v in rows.items():
            print(f"{k:<28}{med[k]:>10.0f}{min(v):>10.0f}{max(v):>10.0f}")
        result["cases"][label] = {"median_us": med, "runs_us": rows}
    base = statistics.median(baseline)
    print(f"{'baseline: spawn /bin/true':<28}{base:>10.0f}{min(baseline):>10.0f}{max(baseline):>10.0f}")
    one, two = (result["cases"][label]["median_us"] for label, *_ in CASES)
    print(f"wall time ratio flexos-vmm hello / spawn of /bin/true: {one['wall_us'] / base:.1f}x")
    print(f"guest main reached {one['guest_main_us'] / 1000:.2f} ms after monitor start (goal: <= 2 ms)")
    print(f"2 compartments: both guest mains reached {two['guest_main_us'] / 1000:.2f} ms after monitor start (goal: <= 4 ms)")
    result["baseline_spawn_true_median_us"] = base
    result["ratio_wall_to_baseline"] = one["wall_us"] / base
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
