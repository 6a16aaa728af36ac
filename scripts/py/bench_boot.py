"""Boot-time benchmark: runs `flexos-vmm --timings hello.elf` N times and, in the same
run, spawns /bin/true N times as the floor any monitor process pays. Prints a table and
writes JSON. Timings come from the monitor's own --timings lines plus wall time measured
here."""

import json
import os
import re
import statistics
import subprocess
import sys
import time

TIMING = re.compile(r"timings: compartment=0 vm_created_us=(\d+) guest_main_us=(\d+)")
EXIT = re.compile(r"timings: exit_us=(\d+)")


def wall_us(cmd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return (time.perf_counter() - t0) * 1e6, proc


def main():
    vmm, image, runs, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rows = {"vm_created_us": [], "guest_main_us": [], "exit_us": [], "wall_us": []}
    baseline = []
    for i in range(runs):
        wall, proc = wall_us([vmm, "--timings", image])
        if proc.returncode != 0:
            sys.exit(f"run {i}: flexos-vmm exited {proc.returncode}: {proc.stderr.strip()}")
        m, e = TIMING.search(proc.stderr), EXIT.search(proc.stderr)
        if not (m and e):
            sys.exit(f"run {i}: no timings in output: {proc.stderr.strip()}")
        rows["vm_created_us"].append(int(m.group(1)))
        rows["guest_main_us"].append(int(m.group(2)))
        rows["exit_us"].append(int(e.group(1)))
        rows["wall_us"].append(wall)
        baseline.append(wall_us(["/bin/true"])[0])
        print(f"\r  run {i + 1}/{runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    med = {k: statistics.median(v) for k, v in rows.items()}
    base = statistics.median(baseline)
    print(f"boot of {os.path.basename(image)}, median of {runs} runs (microseconds)")
    print(f"{'measure':<28}{'median':>10}{'min':>10}{'max':>10}")
    for k, v in rows.items():
        print(f"{k:<28}{med[k]:>10.0f}{min(v):>10.0f}{max(v):>10.0f}")
    print(f"{'baseline: spawn /bin/true':<28}{base:>10.0f}{min(baseline):>10.0f}{max(baseline):>10.0f}")
    print(f"wall time ratio flexos-vmm / spawn of /bin/true: {med['wall_us'] / base:.1f}x")
    print(f"guest main reached {med['guest_main_us'] / 1000:.2f} ms after monitor start (goal: <= 5 ms)")
    result = {
        "bench": "boot",
        "image": image,
        "runs": runs,
        "median_us": med,
        "baseline_spawn_true_median_us": base,
        "ratio_wall_to_baseline": med["wall_us"] / base,
    }
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
