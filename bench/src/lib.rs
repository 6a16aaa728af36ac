//! Host-side baselines the benchmark scripts run next to the guests, so every guest
//! figure is reported as a ratio to something measured on the same machine, in the
//! same run.
//!
//! - `host-pingpong`: two threads on two cores bounce one cache line; its round trip
//!   is the floor of any cross-compartment gate (a call moves one line each way).
//! - `host-handoff`: two threads hand off through eventfds they block on, as vCPU
//!   threads that sleep do: the floor of a gate call whose waits sleep
//!   (`scripts/bench-handoff`).

use std::time::{Duration, Instant};

/// Reads the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects and is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks per nanosecond, measured against the monotonic clock over `window`.
pub fn tsc_per_ns(window: Duration) -> f64 {
    let (t0, c0) = (Instant::now(), rdtsc());
    while t0.elapsed() < window {
        std::hint::spin_loop();
    }
    let (t1, c1) = (Instant::now(), rdtsc());
    (c1 - c0) as f64 / (t1 - t0).as_nanos() as f64
}

/// Pins the calling thread to `cpu` (best effort: the result says whether it worked).
pub fn pin_to_cpu(cpu: usize) -> bool {
    devices::affinity::pin_current_thread(cpu).is_ok()
}

pub use devices::affinity::allowed_cpus;

/// Minimum and median of `samples` (sorted in place).
pub fn min_median(samples: &mut [u64]) -> (u64, u64) {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_unstable();
    (samples[0], samples[samples.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_median_of_odd_and_even() {
        assert_eq!(min_median(&mut [5, 1, 3]), (1, 3));
        assert_eq!(min_median(&mut [4, 2, 8, 6]), (2, 6));
    }

    #[test]
    fn tsc_runs_forward_at_a_plausible_rate() {
        let r = tsc_per_ns(Duration::from_millis(20));
        assert!(r > 0.1 && r < 10.0, "TSC at {r} ticks/ns");
    }
}
