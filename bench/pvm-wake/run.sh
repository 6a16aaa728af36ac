#!/bin/bash
# Re-runs the in-kernel wait experiment (README.md): builds, then the microbenchmarks,
# the functional checks and the hand-off comparison matrix (3 interleaved rounds).
#   bench/pvm-wake/run.sh [N]      (round trips per cell, default 400; ~2 minutes)
set -e
cd "$(dirname "$0")"
make -s
N=${1:-400}
grep -m1 'model name' /proc/cpuinfo; uname -r; uptime
echo "== microbenchmarks (vCPU pinned to CPU 0): exit to userspace, ioeventfd out, int3 to ring 0"
./pvmwake -m 9 | tail -1; ./pvmwake -m 7 | tail -1; ./pvmwake -m 8 | tail -1
echo "== functional checks"
echo "-- ring-3 hlt (mode 5):"; ./pvmwake -m 5 -n 3 -w 0 -t 300 2>&1 | grep -E 'fault' || true
echo "-- LAPIC left software-disabled (SVR=0xff):"; PVMWAKE_NO_SVR=1 ./pvmwake -m 6 -n 3 -w 0 -t 300 2>&1 | grep -E 'NO ANSWER|mp_state|LAPIC|halt_wakeup' | cut -c1-200 || true
for round in 1 2 3; do
  echo "== round $round"
  for a in same cross; do
    for m in 0 1 6; do ./pvmwake -m $m -n $N -w 40 -a $a -g 1000; done
    for p in 0 200000 1000000; do ./pvmwake -m 6 -n $N -w 40 -a $a -g 100 -p $p; done
    ./pvmwake -m 0 -n $N -w 40 -a $a -g 100
  done
done
