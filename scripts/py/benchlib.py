"""Helpers every benchmark script shares: competing load, and the monitor's policy.

- `BusyLoad(n)`: n busy processes (each a Python loop, niceness 0) for the length of a
  `with` block: `--load N` runs the guest runs and the host baselines beside them, so
  both sides' slowdown under the same competition can be compared.
- `policy(vmm, argv)`: the thread policy the monitor picks for a command line
  (`flexos-vmm --print-policy`), as the text and the parsed JSON, to be recorded with
  every figure it produced.
"""

import json
import subprocess
import sys


class BusyLoad:
    """`n` processes that spin until the block ends (none for n == 0)."""

    def __init__(self, n):
        self.n = n
        self.procs = []

    def __enter__(self):
        for _ in range(self.n):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", "while True: pass"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []
        return False


def policy(vmm, argv):
    """(text, json) of `vmm --print-policy ARGV` (the monitor's options and image)."""
    proc = subprocess.run([vmm, "--print-policy"] + argv, capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        sys.exit(f"`{vmm} --print-policy {' '.join(argv)}` failed: {proc.stderr.strip()}")
    text, js = proc.stdout.strip().splitlines()
    return text, json.loads(js)
