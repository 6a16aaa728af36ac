# Shared helpers for the scripts in this folder. Source it; do not run it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
# Every guest app that scripts/build turns into target/images/<app>.elf.
GUEST_APPS=(hello gatebench gatecheck fscheck sqlite iperf redis nginx)
VMM="$ROOT/target/release/flexos-vmm"
IMAGES="$ROOT/target/images"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
# The namespace launcher (scripts/net-up, net-down, the benchmarks).
NETNS="$ROOT/target/release/flexos-netns"
need_netns() { [ -x "$NETNS" ] || die "$NETNS not built: run scripts/build"; }
# The benchmark presets (scripts/bench-*; flexos-bench --help).
BENCH="$ROOT/target/release/flexos-bench"
