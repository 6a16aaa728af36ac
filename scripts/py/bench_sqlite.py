"""SQLite benchmark in the style of FlexOS Figure 10.

One run measures, for each journal mode (DELETE, then WAL; synchronous FULL, SQLite's
default, on both sides):
  - the host baseline: Python's sqlite3 module (the system's libsqlite3) doing the
    workload with ONE prepared statement executed N times in autocommit mode
    (isolation_level=None), timed around the insert loop only. This is the fair
    baseline: the guest also steps one prepared statement.
  - the host's stock sqlite3 CLI on the same kind of file, timed around the process
    (the CLI parses and prepares every INSERT line anew and pays process start-up, so
    it is reported beside the baseline, never used for the ratios);
  - the guest's `bench` under 1, 2 and 3 compartments, each on a fresh FAT image from
    scripts/mkdisk;
  - the guest's `bench ramfs` under 1, 2 and 3 compartments: the vfs component's RAM
    file system, no disk. This is the FlexOS comparison (its Figure 10 ran on a ramfs;
    `-c 2` is its EPT2, the file system in the second VM), so these rows carry the
    goals of the issue beside the disk rows: 1 compartment / host, 2 / 1 compartment.
Host files and disk images live on /dev/shm (tmpfs), so neither side pays a real
fdatasync. A last, durable row runs DELETE with the image and the host file on the real
disk (target/bench), once, reported but not a goal (no ramfs there).

The table shows the median of REPS runs; the JSON keeps every run. After each guest run
on a disk the database is copied out with mcopy and the host's sqlite3 checks that it
holds the rows; a ramfs run counts them itself (`sql=`, after the timed inserts, in the
same run: nothing outlives it). So a figure is never one of a run that did not store
its data.

Usage: bench_sqlite.py VMM IMAGE MKDISK OUT_DIR [--inserts N] [--reps R]
                       [--durable-inserts N] [--no-durable] [--storage disk|mem]
                       [--compartments 1,2,3] [--ramfs 1,2,3]
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import BusyLoad, policy

COMPARTMENTS = [1, 2, 3]
# The ramfs rows (`--ramfs`); their keys in a table are "ramfs-1", "ramfs-2", ...
RAMFS = [1, 2, 3]
JOURNALS = ("delete", "wal")
# FlexOS ASPLOS'22 Figure 10 (seconds, 5000 inserts, database on a ramfs).
FLEXOS = [
    ("Unikraft (none)", 0.052),
    ("FlexOS NONE", 0.054),
    ("FlexOS MPK3", 0.106),
    ("FlexOS EPT2 (fs in 2nd VM)", 0.173),
    ("Linux process", 0.177),
    ("seL4/Genode", 0.333),
]
FLEXOS_NONE, FLEXOS_EPT2, FLEXOS_LINUX = 0.054, 0.173, 0.177
GOAL_1_HOST = 0.5
GOAL_2_1 = 1.3


def progress(msg):
    print(f"bench-sqlite: {msg}", file=sys.stderr, flush=True)


def workload_sql(journal, inserts):
    lines = [
        f"PRAGMA journal_mode={journal};",
        "PRAGMA synchronous=FULL;",
        "CREATE TABLE tab(id INTEGER PRIMARY KEY, text TEXT NOT NULL);",
    ]
    lines += ["INSERT INTO tab VALUES (null,'value');"] * inserts
    return "\n".join(lines) + "\n"


def host_python(directory, journal, inserts):
    """One prepared statement (the module's statement cache) stepped `inserts` times."""
    path = os.path.join(directory, "host.db")
    remove_db(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        mode = conn.execute(f"PRAGMA journal_mode={journal}").fetchone()[0]
        if mode != journal:
            sys.exit(f"host sqlite3 refused journal_mode={journal} (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE tab(id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        insert = "INSERT INTO tab VALUES (null,'value')"
        start = time.perf_counter()
        for _ in range(inserts):
            conn.execute(insert)
        seconds = time.perf_counter() - start
        count = conn.execute("SELECT count(*) FROM tab").fetchone()[0]
    finally:
        conn.close()
    remove_db(path)
    if count != inserts:
        sys.exit(f"host baseline stored {count} rows, not {inserts}")
    return seconds


def host_cli(directory, journal, inserts):
    """The stock sqlite3 CLI fed the SQL script; wall time of the whole process."""
    path = os.path.join(directory, "cli.db")
    remove_db(path)
    script = workload_sql(journal, inserts)
    start = time.perf_counter()
    proc = subprocess.run(["sqlite3", path], input=script, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"sqlite3 CLI failed ({proc.returncode}): {proc.stderr.strip()}")
    remove_db(path)
    return seconds


def remove_db(path):
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def guest(args, directory, compartments, journal, inserts, storage=None):
    """The guest bench on `storage` (default --storage): a fresh disk image in
    `directory`, `mem` or `ramfs`; returns its JSON row."""
    storage = storage or args.storage
    cmd = [args.vmm, "-c", str(compartments)] + tune_args(args)
    disk = None
    if storage == "disk":
        disk = os.path.join(directory, f"disk-{compartments}-{journal}.img")
        if os.path.exists(disk):
            os.remove(disk)
        subprocess.run([args.mkdisk, disk], check=True, stderr=subprocess.DEVNULL)
        cmd += ["--disk", disk]
    cmd += [args.image, "--", "bench", f"n={inserts}", f"journal={journal}"]
    if storage == "mem":
        cmd.append("mem")
    if storage == "ramfs":
        # The files go with the run: count the rows in it, after the timed inserts.
        cmd += ["ramfs", "sql=SELECT count(*) FROM tab"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            sys.exit(f"`{' '.join(cmd)}` failed with status {proc.returncode}:\n"
                     f"{proc.stdout[-2000:]}{proc.stderr.strip()}")
        rows = [json.loads(line[line.index("{"):]) for line in proc.stdout.splitlines()
                if '"bench":"sqlite"' in line]
        if len(rows) != 1:
            sys.exit(f"`{' '.join(cmd)}` printed {len(rows)} result lines:\n{proc.stdout[-2000:]}")
        row = rows[0]
        if row["compartments"] != compartments or row["inserts"] != inserts or row["journal"] != journal:
            sys.exit(f"guest result does not match the request: {row}")
        if storage == "ramfs":
            last = proc.stdout.splitlines()[-1]
            count = last[last.index("] ") + 2:] if last.startswith("[") else last
            if count != str(inserts):
                sys.exit(f"`{' '.join(cmd)}`: the table holds {count!r} rows, not {inserts}")
            row["rows_in_ramfs"] = inserts
        if disk:
            row["rows_on_disk"] = rows_on_disk(disk, directory)
            if row["rows_on_disk"] != inserts:
                sys.exit(f"{disk}: bench.db holds {row['rows_on_disk']} rows, not {inserts}")
        return row
    finally:
        if disk and os.path.exists(disk):
            os.remove(disk)


def tune_args(args):
    return ["--tune", args.tune] if args.tune else []


def policies(args):
    """The monitor's policy for every guest case of the tables, keyed as their rows."""
    out = {}
    for c in COMPARTMENTS:
        disk = ["--disk", "d.img"] if args.storage == "disk" else []
        out[str(c)] = policy(args.vmm, ["-c", str(c)] + tune_args(args) + disk + [args.image])
    for c in RAMFS:
        out[f"ramfs-{c}"] = policy(args.vmm, ["-c", str(c)] + tune_args(args) + [args.image])
    return {k: {"text": t, "json": j} for k, (t, j) in out.items()}


def print_load(quiet, loaded, n):
    """Each case's slowdown under `n` competing busy processes, the host's first."""
    q, l = quiet["median"], loaded["median"]
    print(f"\nunder load: {n} busy process(es) beside every run (journal DELETE, median)")
    print(f"{'case':<40}{'quiet s':>10}{'loaded s':>10}{'slowdown':>10}{'vs host':>10}")
    host = l["host"] / q["host"]
    for key in q:
        if key == "host_cli":
            continue
        slow = l[key] / q[key]
        label = "host: Python sqlite3" if key == "host" else (
            f"guest ramfs: {key[6:]} compartment(s)" if key.startswith("ramfs-")
            else f"guest: {key} compartment(s)")
        rel = "" if key == "host" else f"{slow / host:.2f}x"
        print(f"{label:<40}{q[key]:>10.4f}{l[key]:>10.4f}{slow:>9.2f}x{rel:>10}")
    return host


def rows_on_disk(disk, directory):
    """Copies bench.db out of the FAT image with mtools and counts its rows (host sqlite3)."""
    out = os.path.join(directory, "copied.db")
    remove_db(out)
    subprocess.run(["mcopy", "-o", "-i", disk, "::/bench.db", out], check=True)
    try:
        conn = sqlite3.connect(out)
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
        count = conn.execute("SELECT count(*) FROM tab").fetchone()[0]
        conn.close()
    finally:
        remove_db(out)
    if ok != "ok":
        sys.exit(f"{disk}: integrity_check says {ok!r}")
    return count


def measure(args, directory, journal, inserts, reps, ramfs=True):
    """All cases of one table, REPS rounds interleaved (the machine's load drifts)."""
    ramfs = RAMFS if ramfs else []
    runs = {"host": [], "host_cli": [], **{str(c): [] for c in COMPARTMENTS},
            **{f"ramfs-{c}": [] for c in ramfs}}
    for r in range(reps):
        tag = f"{journal.upper()} round {r + 1}/{reps}"
        progress(f"{tag}: host, Python sqlite3 module, one prepared statement")
        runs["host"].append(host_python(directory, journal, inserts))
        progress(f"{tag}: host, sqlite3 CLI")
        runs["host_cli"].append(host_cli(directory, journal, inserts))
        for c in COMPARTMENTS:
            progress(f"{tag}: guest, {c} compartment(s)")
            runs[str(c)].append(guest(args, directory, c, journal, inserts)["seconds"])
        for c in ramfs:
            progress(f"{tag}: guest on ramfs, {c} compartment(s)")
            runs[f"ramfs-{c}"].append(
                guest(args, directory, c, journal, inserts, "ramfs")["seconds"])
    return {"runs": runs, "median": {k: statistics.median(v) for k, v in runs.items()},
            "best": {k: min(v) for k, v in runs.items()}}


def ratio_text(table, key, c, prefix=""):
    """The row's ratio: 1 compartment against the host, more against 1 compartment
    (of the same storage: `prefix` "ramfs-" for the ramfs rows)."""
    m = table[key]
    if c == 1:
        return f"{m[prefix + '1'] / m['host']:.2f}x host"
    one = prefix + "1"
    return f"{m[prefix + str(c)] / m[one]:.2f}x 1 compartment" if one in m else ""


def print_table(title, table):
    """Median of the runs (the figure), and the best run beside it: on this shared host
    other builds come and go, and the best run is the one they disturbed least."""
    m, b = table["median"], table["best"]
    print(f"\n{title}")
    print(f"{'case':<40}{'median s':>10}{'ratio':>25}{'best s':>10}{'ratio':>25}")
    print(f"{'host: Python sqlite3, 1 prepared stmt':<40}{m['host']:>10.4f}{'(baseline)':>25}"
          f"{b['host']:>10.4f}{'(baseline)':>25}")
    print(f"{'host: sqlite3 CLI (parses each line)':<40}{m['host_cli']:>10.4f}{'':>25}"
          f"{b['host_cli']:>10.4f}")
    for c in COMPARTMENTS:
        print(f"{f'guest: {c} compartment(s)':<40}{m[str(c)]:>10.4f}{ratio_text(table, 'median', c):>25}"
              f"{b[str(c)]:>10.4f}{ratio_text(table, 'best', c):>25}")
    for c in RAMFS:
        key = f"ramfs-{c}"
        if key in m:
            label = f"guest ramfs: {c} compartment(s)"
            print(f"{label:<40}{m[key]:>10.4f}{ratio_text(table, 'median', c, 'ramfs-'):>25}"
                  f"{b[key]:>10.4f}{ratio_text(table, 'best', c, 'ramfs-'):>25}")


def svg_chart(groups, path, title):
    """Vertical bars in the style of Figure 10: one group per table, seconds on y."""
    bar_w, gap, group_gap, left, top, plot_h = 34, 6, 40, 60, 50, 300
    bars = [b for _, items in groups for b in items]
    width = left + sum(len(items) * (bar_w + gap) for _, items in groups) + group_gap * len(groups) + 40
    height = top + plot_h + 170
    peak = max(s for _, s, _ in bars) or 1
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="22" font-size="16">{title}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 20}" y2="{top + plot_h}" stroke="black"/>',
        f'<text x="10" y="{top + 10}">seconds</text>',
    ]
    x = left + 10
    for name, items in groups:
        start = x
        for label, seconds, colour in items:
            h = plot_h * seconds / peak
            y = top + plot_h - h
            out.append(f'<rect x="{x}" y="{y:.1f}" width="{bar_w}" height="{max(h, 1):.1f}" fill="{colour}"/>')
            out.append(f'<text x="{x + bar_w / 2}" y="{y - 4:.1f}" text-anchor="middle" font-size="10">{seconds:.3f}</text>')
            lx, ly = x + bar_w / 2, top + plot_h + 10
            out.append(f'<text x="{lx}" y="{ly}" transform="rotate(60 {lx} {ly})" font-size="11">{label}</text>')
            x += bar_w + gap
        out.append(f'<text x="{(start + x) / 2}" y="{height - 10}" text-anchor="middle" font-size="13">{name}</text>')
        x += group_gap
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("vmm")
    p.add_argument("image")
    p.add_argument("mkdisk")
    p.add_argument("out_dir")
    p.add_argument("--inserts", type=int, default=5000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--durable-inserts", type=int, default=1000,
                   help="rows of the durable row (real disk: ~3 fdatasyncs of ~2 ms per row)")
    p.add_argument("--no-durable", action="store_true")
    p.add_argument("--compartments", default="1,2,3",
                   help="comma-separated subset of 1,2,3 (default: all three)")
    p.add_argument("--storage", choices=("disk", "mem"), default="disk",
                   help="guest storage of the 1, 2, 3 compartment rows: the FAT disk through "
                        "vfs (default) or `mem` (in memory)")
    p.add_argument("--load", type=int, default=0,
                   help="measure DELETE again beside N busy processes and report slowdowns")
    p.add_argument("--tune", default=None,
                   help="passed to the monitor as --tune (a thread-policy candidate)")
    p.add_argument("--ramfs", default="1,2,3",
                   help="compartment counts of the ramfs rows (vfs's RAM file system), a "
                        "subset of 1,2,3; empty for none")
    args = p.parse_args()
    wanted = [int(c) for c in args.compartments.split(",") if c]
    if not wanted or any(c not in COMPARTMENTS for c in wanted):
        sys.exit(f"--compartments: choose from {COMPARTMENTS}, got {args.compartments!r}")
    on_ramfs = [int(c) for c in args.ramfs.split(",") if c]
    if any(c not in RAMFS for c in on_ramfs):
        sys.exit(f"--ramfs: choose from {RAMFS}, got {args.ramfs!r}")
    COMPARTMENTS[:] = wanted
    RAMFS[:] = on_ramfs
    if args.inserts < 1 or args.reps < 1 or args.durable_inserts < 1:
        sys.exit("--inserts, --reps and --durable-inserts must be at least 1")
    if args.load < 0:
        sys.exit("--load must be 0 or more")
    for tool in ("sqlite3", "mcopy"):
        if not shutil.which(tool):
            sys.exit(f"`{tool}` not found: run scripts/setup")
    os.makedirs(args.out_dir, exist_ok=True)

    results = {
        "inserts": args.inserts,
        "reps": args.reps,
        "guest_storage": args.storage,
        "ramfs_compartments": RAMFS,
        "host_sqlite_version": sqlite3.sqlite_version,
        "baseline": "Python sqlite3 module, one prepared statement, isolation_level=None "
                    "(autocommit), synchronous=FULL, default locking mode",
        "load": os.getloadavg(),
        "tune": args.tune,
        "policies": policies(args),
        "tables": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-", dir="/dev/shm") as shm:
        for journal in JOURNALS:
            results["tables"][journal] = measure(args, shm, journal, args.inserts, args.reps)
        if args.load:
            progress(f"DELETE again beside {args.load} busy process(es)")
            with BusyLoad(args.load):
                results["tables"]["delete_loaded"] = measure(
                    args, shm, "delete", args.inserts, args.reps)
            results["competing_processes"] = args.load
    if not args.no_durable:
        durable_dir = os.path.join(args.out_dir, "durable")
        os.makedirs(durable_dir, exist_ok=True)
        progress(f"DURABLE (real disk, {durable_dir}), {args.durable_inserts} inserts, once")
        results["tables"]["durable"] = measure(args, durable_dir, "delete", args.durable_inserts, 1,
                                               ramfs=False)
        results["durable_inserts"] = args.durable_inserts
        shutil.rmtree(durable_dir, ignore_errors=True)
    results["load_after"] = os.getloadavg()

    print(f"SQLite, {args.inserts} autocommit INSERTs, synchronous FULL, median of {args.reps}; "
          f"load average {results['load'][0]:.1f} at start (other builds run on this 2-core host)")
    print_table("journal DELETE, files and images on /dev/shm", results["tables"]["delete"])
    print_table("journal WAL, files and images on /dev/shm", results["tables"]["wal"])
    if "durable" in results["tables"]:
        print_table(f"durable: journal DELETE on the real disk, {args.durable_inserts} inserts, "
                    f"one run (reported, not a goal)", results["tables"]["durable"])
    m = results["tables"]["delete"]["median"]
    ratios = {}
    if "1" in m:
        ratios["1/host"] = m["1"] / m["host"]
        for c in ("2", "3"):
            if c in m:
                ratios[f"{c}/1"] = m[c] / m["1"]
    if "ramfs-1" in m:
        ratios["ramfs-1/host"] = m["ramfs-1"] / m["host"]
        for c in ("2", "3"):
            if f"ramfs-{c}" in m:
                ratios[f"ramfs-{c}/ramfs-1"] = m[f"ramfs-{c}"] / m["ramfs-1"]
    results["ratios_delete"] = ratios
    print("\ngoals (DELETE):")
    if "1/host" in ratios:
        r = ratios["1/host"]
        print(f"  1 compartment / host  = {r:.2f}x  goal <= {GOAL_1_HOST}x  "
              f"{'MET' if r <= GOAL_1_HOST else 'NOT MET'}   (FlexOS NONE / Linux: 0.054/0.177 = 0.31x, ramfs, no block device)")
    if "2/1" in ratios:
        r = ratios["2/1"]
        print(f"  2 / 1 compartment     = {r:.2f}x  goal <= {GOAL_2_1}x  "
              f"{'MET' if r <= GOAL_2_1 else 'NOT MET'}   (FlexOS EPT2 / NONE: 0.173/0.054 = 3.2x)")
    if "3/1" in ratios:
        print(f"  3 / 1 compartment     = {ratios['3/1']:.2f}x  (no goal; FlexOS had no EPT3)")
    # The ramfs rows are FlexOS's own setup (a RAM file system, no block device): the
    # same goals, beside its figures.
    if "ramfs-1/host" in ratios:
        r = ratios["ramfs-1/host"]
        print(f"  ramfs: 1 compartment / host = {r:.2f}x  goal <= {GOAL_1_HOST}x  "
              f"{'MET' if r <= GOAL_1_HOST else 'NOT MET'}   "
              f"(FlexOS NONE / Linux: {FLEXOS_NONE}/{FLEXOS_LINUX} = {FLEXOS_NONE / FLEXOS_LINUX:.2f}x)")
    if "ramfs-2/ramfs-1" in ratios:
        r = ratios["ramfs-2/ramfs-1"]
        print(f"  ramfs: 2 / 1 compartment    = {r:.2f}x  goal <= {GOAL_2_1}x  "
              f"{'MET' if r <= GOAL_2_1 else 'NOT MET'}   "
              f"(FlexOS EPT2 / NONE: {FLEXOS_EPT2}/{FLEXOS_NONE} = {FLEXOS_EPT2 / FLEXOS_NONE:.1f}x)")
    if "ramfs-3/ramfs-1" in ratios:
        print(f"  ramfs: 3 / 1 compartment    = {ratios['ramfs-3/ramfs-1']:.2f}x  (no goal; FlexOS had no EPT3)")
    if "ramfs-2" in m:
        line = f"  ramfs, 2 compartments: {m['ramfs-2']:.4f} s; FlexOS EPT2 (fs in 2nd VM): {FLEXOS_EPT2} s"
        if "ramfs-1" in m:
            line += f"; ramfs, 1 compartment: {m['ramfs-1']:.4f} s; FlexOS NONE: {FLEXOS_NONE} s"
        if args.inserts != 5000:
            line += f" (ours for {args.inserts} inserts, FlexOS's for 5000)"
        print(line + " (their Xeon, our kvm-pvm host: compare the ratios)")
    best = results["tables"]["delete"]["best"]
    if "1" in best:
        line = f"  best runs: 1 compartment / host = {best['1'] / best['host']:.2f}x"
        if "2" in best:
            line += f", 2 / 1 compartment = {best['2'] / best['1']:.2f}x"
        print(line)
    if "ramfs-1" in best:
        line = f"  best runs: ramfs 1 compartment / host = {best['ramfs-1'] / best['host']:.2f}x"
        if "ramfs-2" in best:
            line += f", ramfs 2 / 1 compartment = {best['ramfs-2'] / best['ramfs-1']:.2f}x"
        print(line)
    print("FlexOS Figure 10 (s): " + ", ".join(f"{n} {s}" for n, s in FLEXOS))
    if "delete_loaded" in results["tables"]:
        tables = results["tables"]
        host = print_load(tables["delete"], tables["delete_loaded"], args.load)
        q, l = tables["delete"]["median"], tables["delete_loaded"]["median"]
        if "1" in q:
            rel = (l["1"] / q["1"]) / host
            results["ratios_delete"]["load_1_vs_host_slowdown"] = rel
            print(f"  goal: 1 compartment's slowdown <= 2x the host's: {rel:.2f}x  "
                  f"{'MET' if rel <= 2 else 'NOT MET'}")
    print("\nthe monitor's thread policy per case (flexos-vmm --print-policy):")
    for key, pol in results["policies"].items():
        print(f"  {key}: {pol['text']}")

    with open(os.path.join(args.out_dir, "sqlite.json"), "w") as f:
        json.dump(results, f, indent=2)
    grey = "#999999"
    colours = {"host": "#4c72b0", "1": "#dd8452", "2": "#c44e52", "3": "#8172b2",
               "ramfs-1": "#55a868", "ramfs-2": "#2f7d4a", "ramfs-3": "#1b4d2c"}
    groups = [("FlexOS Figure 10 (paper)", [(n, s, grey) for n, s in FLEXOS])]
    for key, name in (("delete", "ours: DELETE, /dev/shm"), ("wal", "ours: WAL, /dev/shm")):
        med = results["tables"][key]["median"]
        groups.append((name, [("host sqlite3", med["host"], colours["host"])] +
                       [(f"{c} compartment(s)", med[str(c)], colours[str(c)]) for c in COMPARTMENTS] +
                       [(f"ramfs, {c} compartment(s)", med[f"ramfs-{c}"], colours[f"ramfs-{c}"])
                        for c in RAMFS]))
    svg_chart(groups, os.path.join(args.out_dir, "sqlite.svg"),
              f"SQLite: {args.inserts} autocommit INSERTs, seconds (median of {args.reps})")
    print(f"JSON: {args.out_dir}/sqlite.json  plot: {args.out_dir}/sqlite.svg")


if __name__ == "__main__":
    main()
