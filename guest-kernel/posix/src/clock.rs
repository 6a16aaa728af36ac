//! Time: every clock from the TSC (no exit, no system call), and the sleeps.
//!
//! The monotonic clocks count from the compartment's start; the real-time clock adds
//! the host's wall-clock time the monitor read at boot ([`wall_at_boot_ns`]). CPU-time
//! clocks answer the monotonic time: a compartment's vCPU is all its process has.

use flexos_kernel::time::now_ns;

use crate::linux::{
    CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE, CLOCK_MONOTONIC_RAW,
    CLOCK_PROCESS_CPUTIME_ID, CLOCK_REALTIME, CLOCK_REALTIME_COARSE, CLOCK_THREAD_CPUTIME_ID,
    EFAULT, EINVAL, TIMER_ABSTIME, Timespec, Timeval,
};
use crate::sched::{self, Wait};

/// Nanoseconds since the Unix epoch when the compartment started, as the monitor
/// passed it in the boot info.
pub fn wall_at_boot_ns() -> u64 {
    flexos_kernel::boot_info().wall_clock_ns
}

/// Nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    wall_at_boot_ns().saturating_add(now_ns())
}

fn is_realtime(clock: u64) -> bool {
    matches!(clock, CLOCK_REALTIME | CLOCK_REALTIME_COARSE)
}

/// The current value of `clock` in ns, or `None` for an unknown clock.
pub fn read(clock: u64) -> Option<u64> {
    match clock {
        c if is_realtime(c) => Some(realtime_ns()),
        CLOCK_MONOTONIC
        | CLOCK_MONOTONIC_RAW
        | CLOCK_MONOTONIC_COARSE
        | CLOCK_BOOTTIME
        | CLOCK_PROCESS_CPUTIME_ID
        | CLOCK_THREAD_CPUTIME_ID => Some(now_ns()),
        _ => None,
    }
}

pub fn to_timespec(ns: u64) -> Timespec {
    Timespec {
        tv_sec: (ns / 1_000_000_000) as i64,
        tv_nsec: (ns % 1_000_000_000) as i64,
    }
}

/// A timespec as ns, or `None` if it is negative or not normalised.
pub fn from_timespec(ts: &Timespec) -> Option<u64> {
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return None;
    }
    (ts.tv_sec as u64)
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(ts.tv_nsec as u64))
}

/// `clock_gettime(clock, ts)`.
pub fn clock_gettime(clock: u64, ts: *mut Timespec) -> i64 {
    let Some(ns) = read(clock) else {
        return -EINVAL;
    };
    if ts.is_null() {
        return -EFAULT;
    }
    // SAFETY: musl passes a pointer to a timespec of the caller.
    unsafe { ts.write(to_timespec(ns)) };
    0
}

/// `clock_getres(clock, ts)`: 1 ns (the TSC is finer).
pub fn clock_getres(clock: u64, ts: *mut Timespec) -> i64 {
    if read(clock).is_none() {
        return -EINVAL;
    }
    if !ts.is_null() {
        // SAFETY: as in `clock_gettime`.
        unsafe {
            ts.write(Timespec {
                tv_sec: 0,
                tv_nsec: 1,
            })
        };
    }
    0
}

/// `gettimeofday(tv, tz)`.
pub fn gettimeofday(tv: *mut Timeval) -> i64 {
    if !tv.is_null() {
        let ns = realtime_ns();
        // SAFETY: musl passes a pointer to a timeval of the caller.
        unsafe {
            tv.write(Timeval {
                tv_sec: (ns / 1_000_000_000) as i64,
                tv_usec: ((ns % 1_000_000_000) / 1000) as i64,
            })
        };
    }
    0
}

/// A relative or absolute timeout on `clock` as a deadline on the monotonic clock.
pub fn deadline(clock: u64, ts: &Timespec, absolute: bool) -> Option<u64> {
    let ns = from_timespec(ts)?;
    let now = now_ns();
    if !absolute {
        return Some(now.saturating_add(ns));
    }
    let clock_now = read(clock)?;
    Some(now.saturating_add(ns.saturating_sub(clock_now)))
}

/// `clock_nanosleep(clock, flags, req, rem)` (and `nanosleep`): other threads run
/// meanwhile. Never interrupted (signals are not delivered), so `rem` is untouched.
pub fn clock_nanosleep(clock: u64, flags: u64, req: *const Timespec) -> i64 {
    if req.is_null() {
        return -EFAULT;
    }
    // SAFETY: musl passes a pointer to the caller's timespec.
    let ts = unsafe { req.read() };
    if read(clock).is_none() {
        return -EINVAL;
    }
    let Some(deadline) = deadline(clock, &ts, flags & TIMER_ABSTIME != 0) else {
        return -EINVAL;
    };
    sched::block(Wait::Sleep, Some(deadline));
    0
}
