//! Names a benchmark image and the host tools that drive it (flexos-explore) must agree
//! on, so the host can refuse a bad name before it boots anything.

/// gatebench's cases (`case=NAME`), in the order a full run measures them.
pub const GATEBENCH_CASES: [&str; 8] = [
    "function-call",
    "gate-local",
    "gate-remote-0",
    "gate-remote-6",
    "gate-remote-buf64",
    "gate-remote-buf4k",
    "gate-nested",
    "gate-chain",
];

/// gatebench's hand-off baselines, run only when named (`case=NAME`): what a guest
/// pays to reach the monitor and to ring a doorbell (`scripts/bench-handoff`).
pub const GATEBENCH_EXTRA_CASES: [&str; 2] = ["hypercall-sleep0", "hypercall-doorbell"];
