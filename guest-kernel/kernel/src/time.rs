//! Time from the TSC.
//!
//! `rdtsc` is allowed in ring 3 (the monitor leaves CR4.TSD clear) and does not exit.
//! The monitor passes the TSC frequency (KVM_GET_TSC_KHZ) and the TSC value it read just
//! before starting the vCPU, so "now" is nanoseconds since the compartment started; and
//! its wall clock read at the same moment, so [`unix_ns`] is the time of day.

use core::arch::asm;

use crate::rt::boot_info;

/// Reads the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: `rdtsc` only writes EDX:EAX and is permitted in ring 3 with CR4.TSD clear.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// TSC frequency in kHz as the monitor measured it (0 if unknown).
pub fn tsc_khz() -> u64 {
    boot_info().tsc_khz
}

/// Converts TSC ticks to nanoseconds (0 if the frequency is unknown).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let khz = tsc_khz();
    if khz == 0 {
        return 0;
    }
    let ns = u128::from(ticks) * 1_000_000 / u128::from(khz);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Converts nanoseconds to TSC ticks (0 if the frequency is unknown).
pub fn ns_to_ticks(ns: u64) -> u64 {
    let ticks = u128::from(ns) * u128::from(tsc_khz()) / 1_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Nanoseconds since the monitor started this compartment's vCPU.
pub fn now_ns() -> u64 {
    ticks_to_ns(rdtsc().saturating_sub(boot_info().tsc_at_start))
}

/// The host's wall clock now, in nanoseconds since 1970-01-01 00:00 UTC: the monitor's
/// clock at start plus the time since. 0 if the monitor could not read its clock or the
/// TSC frequency is unknown.
pub fn unix_ns() -> u64 {
    let at_start = boot_info().wall_clock_ns;
    if at_start == 0 || tsc_khz() == 0 {
        return 0;
    }
    at_start.saturating_add(now_ns())
}
