//! `gatebench`: gate latency in the style of FlexOS Figure 11.
//!
//! Measures, from the `bench` component, the cost of one call in each case below, over
//! `calls=N` calls (default 1 000 000) or `seconds=S` seconds (default 5), whichever
//! ends first (`case=NAME` runs that case alone), after a warm-up (a tenth of each, at
//! most), with `rdtsc` around every call (ring 3 may read the TSC; the read does not
//! exit). The time bound keeps a run with more busy compartments than host cores
//! (where a call can cost ~100 us) within a minute. The timer overhead (the minimum of back-to-back reads) is subtracted from
//! min and median, as the host ping-pong baseline does. Every result is checked; a
//! wrong value prints an error and exits 1.
//!
//! What one sample of each case is:
//!
//! - `function-call`: a plain `#[inline(never)]` call;
//! - `gate-local`: a gate client call to a co-located component, i.e. the client's
//!   direct-call branch: relay1 when it shares bench's compartment (every default split
//!   but the 4-way one), otherwise bench's own callback interface;
//! - `gate-remote-0`: `callee.nop()`;
//! - `gate-remote-6`: `callee.sum6(..)`, six arguments;
//! - `gate-remote-buf64` / `gate-remote-buf4k`: `callee.touch(buf)`: callee copies 64 B /
//!   4 KiB of bench's shared-heap buffer out through `SharedBytes` and returns a
//!   checksum;
//! - `gate-nested`: `callee.nested(x)`: callee calls back into bench, then returns;
//! - `gate-chain`: `relay1.forward()`: relay1 -> relay2 -> `callee.nop()`, and back.
//!
//! Two more run only when named, as baselines of a hand-off (`scripts/bench-handoff`):
//! `hypercall-sleep0`, a sleep hypercall with no timeout (an exit to the monitor, its
//! poll of the doorbell, and the way back), and `hypercall-doorbell`, ringing this
//! compartment's own doorbell (a write the kernel turns into an eventfd signal, an
//! ioeventfd: no exit to the monitor).
//!
//! "remote" is whatever the placement makes it: with one compartment every case is a
//! direct call. stdout carries exactly one JSON line per case, then one line with the
//! bench compartment's endpoint counters, and nothing else:
//!
//! ```text
//! {"bench":"gate","case":"gate-remote-0","compartments":2,"calls":..,"bound":"calls",
//!  "cycles_min":..,"cycles_median":..,"ns_median":..}   (one line; bound: "calls" or
//!                                                        "time", whichever ended it)
//! {"bench":"gate-endpoint","compartments":2,"calls":..,"served":..,"errors":..,
//!  "sleeps":..,"doorbells":..}
//! ```
//!
//! # Reading the numbers on this host
//!
//! The TSC here advances in steps of about 26 ticks (10 ns), so single-call samples of
//! anything shorter than that (`function-call`, `gate-local`, and in one compartment
//! every case but the buffer ones) read 0 or ~25 cycles: "below one TSC step".
//! With more compartments than host cores (3 or 4 here, on 2 cores) a case that keeps
//! more compartments busy than there are cores (`gate-chain`) waits for the host
//! scheduler and the sleep/doorbell path; it is correct, not fast.

#![no_std]
#![no_main]

extern crate alloc;

mod parts;

use alloc::vec::Vec;
use core::arch::asm;
use core::hint::black_box;

use flexos_kernel::gate::{self, router};
use flexos_kernel::rpc::{GateError, Route};
use flexos_kernel::{Args, boot_info, hypercall, println};

use parts::{
    BENCH_CB_SERVER, CALLEE_SERVER, FAILED, RELAY1_SERVER, bench_cb, callee, checksum, relay1,
};

flexos_kernel::main!(main);

flexos_kernel::components! {
    components: [BENCH = "bench", CALLEE = "callee", RELAY1 = "relay1", RELAY2 = "relay2"],
    splits: [
        [("all", ["bench", "callee", "relay1", "relay2"])],
        [("bench", ["bench", "relay1", "relay2"]), ("callee", ["callee"])],
        [("bench", ["bench", "relay1"]), ("relay2", ["relay2"]), ("callee", ["callee"])],
        [("bench", ["bench"]), ("relay1", ["relay1"]), ("relay2", ["relay2"]), ("callee", ["callee"])],
    ],
}

/// Default number of timed calls per case.
const DEFAULT_CALLS: usize = 1_000_000;
/// Most timed calls per case: every sample is kept (8 bytes each) to find the median,
/// and the heap is the compartment's private memory (64 MiB by default).
const MAX_CALLS: usize = 4_000_000;
/// Default time budget per case, in seconds.
const DEFAULT_SECONDS: u64 = 5;
/// Exit code for bad arguments.
const EXIT_USAGE: i32 = 2;
/// Exit code for a wrong result or a failed gate call.
const EXIT_WRONG: i32 = 1;

/// Reads the TSC. Unlike `flexos_kernel::time::rdtsc` the `asm!` may touch memory as
/// far as the compiler knows, so the timed call cannot be moved across it.
#[inline(always)]
fn tsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: `rdtsc` only writes EDX:EAX and is permitted in ring 3 (CR4.TSD clear).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nostack, preserves_flags)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The function-call baseline.
#[inline(never)]
fn plain_nop(x: u64) -> u64 {
    black_box(x)
}

/// Why a case failed.
enum Failure {
    Gate(GateError),
    Wrong { call: u64, got: u64, want: u64 },
}

/// Min and median cycles of one case, timer overhead not yet subtracted, and how many
/// calls were timed before the call or time bound ended the case.
struct Stats {
    min: u64,
    median: u64,
    calls: usize,
    by_time: bool,
}

/// How long each case runs: at most `calls` timed calls and `ticks` TSC ticks; and
/// which case runs, if only one does (`case=NAME`).
#[derive(Clone, Copy)]
struct Budget {
    calls: usize,
    ticks: u64,
    only: Option<&'static str>,
}

/// Every case, in the order they run (shared with flexos-explore, which checks names).
const CASES: [&str; 8] = flexos_kernel::abi::bench::GATEBENCH_CASES;
/// Cases run only when named.
const EXTRA_CASES: [&str; 2] = flexos_kernel::abi::bench::GATEBENCH_EXTRA_CASES;

/// Runs `op` untimed as a warm-up (a tenth of the budget), then timed into `samples`
/// until the call or time budget runs out, checking each result against `want(i)`
/// outside the timed window.
fn measure(
    samples: &mut Vec<u64>,
    budget: Budget,
    mut op: impl FnMut(u64) -> Result<u64, GateError>,
    want: impl Fn(u64) -> u64,
) -> Result<Stats, Failure> {
    let check = |i: u64, r: Result<u64, GateError>| match r {
        Ok(got) if got == want(i) => Ok(()),
        Ok(got) => Err(Failure::Wrong {
            call: i,
            got,
            want: want(i),
        }),
        Err(e) => Err(Failure::Gate(e)),
    };
    let warmup = (budget.calls / 10).clamp(100, 100_000);
    let start = tsc();
    for i in 0..warmup as u64 {
        check(i, op(i))?;
        if tsc().wrapping_sub(start) > budget.ticks / 10 {
            break;
        }
    }
    samples.clear();
    let start = tsc();
    let mut by_time = false;
    for i in 0..budget.calls as u64 {
        let t0 = tsc();
        let r = op(i);
        let t1 = tsc();
        check(i, r)?;
        samples.push(t1.wrapping_sub(t0));
        if t1.wrapping_sub(start) > budget.ticks {
            by_time = (i + 1) < budget.calls as u64;
            break;
        }
    }
    let calls = samples.len();
    let min = samples.iter().copied().min().unwrap_or(0);
    let mid = samples.len() / 2;
    let median = if samples.is_empty() {
        0
    } else {
        *samples.select_nth_unstable(mid).1
    };
    Ok(Stats {
        min,
        median,
        calls,
        by_time,
    })
}

/// The smallest cost of two back-to-back TSC reads.
fn timer_overhead() -> u64 {
    (0..10_000)
        .map(|_| {
            let a = tsc();
            tsc().wrapping_sub(a)
        })
        .min()
        .unwrap_or(0)
}

/// Prints one result line; `ns_median` with one decimal.
fn report(case: &str, stats: &Stats, overhead: u64) {
    let min = stats.min.saturating_sub(overhead);
    let median = stats.median.saturating_sub(overhead);
    let khz = u128::from(boot_info().tsc_khz);
    // Tenths of a nanosecond, rounded; 0 if the monitor did not know the TSC rate.
    let tenths = (u128::from(median) * 10_000_000 + khz / 2)
        .checked_div(khz)
        .unwrap_or(0);
    println!(
        "{{\"bench\":\"gate\",\"case\":\"{case}\",\"compartments\":{},\"calls\":{},\"bound\":\"{}\",\"cycles_min\":{min},\"cycles_median\":{median},\"ns_median\":{}.{}}}",
        boot_info().compartment_count,
        stats.calls,
        if stats.by_time { "time" } else { "calls" },
        tenths / 10,
        tenths % 10
    );
}

/// Prints the bench compartment's endpoint counters (whether waits slept, doorbells
/// rang: the idle path a placement exercised).
fn report_endpoint() {
    let st = gate::endpoint().stats();
    println!(
        "{{\"bench\":\"gate-endpoint\",\"compartments\":{},\"calls\":{},\"served\":{},\"errors\":{},\"sleeps\":{},\"doorbells\":{}}}",
        boot_info().compartment_count,
        st.calls,
        st.served,
        st.errors,
        st.sleeps,
        st.doorbells
    );
}

/// Parses `calls=N` and `seconds=S` (both >= 1) and `case=NAME`; rejects anything else.
fn parse_args(args: &Args) -> Result<Budget, ()> {
    let mut calls = DEFAULT_CALLS;
    let mut seconds = DEFAULT_SECONDS;
    let mut only = None;
    for arg in args {
        match arg.split_once('=') {
            Some(("calls", n)) => match n.parse::<usize>() {
                Ok(n) if n > MAX_CALLS => {
                    println!(
                        "gatebench: bad calls={n} (want 1..={MAX_CALLS}: every sample is kept for the median)"
                    );
                    return Err(());
                }
                Ok(n) if n > 0 => calls = n,
                _ => {
                    println!("gatebench: bad calls={n} (want a positive integer)");
                    return Err(());
                }
            },
            Some(("seconds", n)) => match n.parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => seconds = n,
                _ => {
                    println!("gatebench: bad seconds={n} (want 1..=3600)");
                    return Err(());
                }
            },
            Some(("case", name)) => match CASES.iter().chain(&EXTRA_CASES).find(|&&c| c == name) {
                Some(&case) => only = Some(case),
                None => {
                    println!(
                        "gatebench: unknown case={name} (cases: {}, {})",
                        CASES.join(", "),
                        EXTRA_CASES.join(", ")
                    );
                    return Err(());
                }
            },
            _ => {
                println!(
                    "gatebench: unknown argument '{arg}' (usage: gatebench [calls=N] [seconds=S] [case=NAME])"
                );
                return Err(());
            }
        }
    }
    // The monitor always passes the TSC rate (it refuses to boot without one).
    let ticks = seconds
        .saturating_mul(boot_info().tsc_khz)
        .saturating_mul(1000);
    Ok(Budget { calls, ticks, only })
}

/// A shared-heap buffer of `len` bytes filled with a pattern, and the checksum callee
/// must return for it.
fn shared_pattern(len: usize) -> Option<(flexos_kernel::rpc::SharedBuf, u64)> {
    let buf = gate::shared_alloc(CALLEE, len)?;
    let pattern: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ 0x5A).collect();
    gate::bytes(buf).ok()?.write(0, &pattern).ok()?;
    Some((buf, checksum(&pattern)))
}

fn main(args: &Args) -> i32 {
    let Ok(budget) = parse_args(args) else {
        return EXIT_USAGE;
    };
    let mut samples: Vec<u64> = Vec::with_capacity(budget.calls);

    let r = router();
    let callee = callee::Client::new(r, CALLEE, &CALLEE_SERVER.0);
    let relay1 = relay1::Client::new(r, RELAY1, &RELAY1_SERVER.0);
    let own = bench_cb::Client::new(r, BENCH, &BENCH_CB_SERVER.0);
    // The co-located case: relay1 where it shares our compartment, else our own
    // callback interface (always here). Both take the client's direct-call branch.
    let relay1_here = relay1.route() == Route::Local;

    let Some((buf64, sum64)) = shared_pattern(64) else {
        println!("gatebench: cannot allocate 64 bytes of shared heap");
        return EXIT_WRONG;
    };
    let Some((buf4k, sum4k)) = shared_pattern(4096) else {
        println!("gatebench: cannot allocate 4 KiB of shared heap");
        return EXIT_WRONG;
    };

    let overhead = timer_overhead();
    let s = &mut samples;
    // One case after the other, each reported as soon as it is measured.
    // `black_box(&client)` keeps the client's route branch inside the timed window
    // (the compiler cannot hoist it out of the loop).
    let emit = |case: &str, measure_case: &mut dyn FnMut() -> Result<Stats, Failure>| match budget
        .only
        .is_none_or(|only| only == case)
        .then(measure_case)
    {
        None => Ok(()),
        Some(Ok(stats)) => {
            report(case, &stats, overhead);
            Ok(())
        }
        Some(Err(failure)) => {
            explain(case, failure);
            Err(EXIT_WRONG)
        }
    };
    let mut run = || -> Result<(), i32> {
        emit("function-call", &mut || {
            measure(s, budget, |i| Ok(plain_nop(i)), |i| i)
        })?;
        emit("gate-local", &mut || {
            if relay1_here {
                measure(s, budget, |_| black_box(&relay1).nop(), |_| 0)
            } else {
                measure(s, budget, |i| black_box(&own).ping(i), |i| i + 1)
            }
        })?;
        emit("gate-remote-0", &mut || {
            measure(s, budget, |_| black_box(&callee).nop(), |_| 0)
        })?;
        emit("gate-remote-6", &mut || {
            measure(
                s,
                budget,
                |i| black_box(&callee).sum6(i, i + 1, i + 2, i + 3, i + 4, i + 5),
                |i| 6 * i + 15,
            )
        })?;
        emit("gate-remote-buf64", &mut || {
            measure(s, budget, |_| black_box(&callee).touch(buf64), |_| sum64)
        })?;
        emit("gate-remote-buf4k", &mut || {
            measure(s, budget, |_| black_box(&callee).touch(buf4k), |_| sum4k)
        })?;
        emit("gate-nested", &mut || {
            measure(s, budget, |i| black_box(&callee).nested(i), |i| i + 2)
        })?;
        emit("gate-chain", &mut || {
            measure(s, budget, |_| black_box(&relay1).forward(), |_| 2)
        })?;
        // Named only: the rest run by default.
        let named = |case: &str| budget.only == Some(case);
        if named("hypercall-sleep0") {
            emit("hypercall-sleep0", &mut || {
                measure(
                    s,
                    budget,
                    |i| {
                        hypercall::sleep(0);
                        Ok(i)
                    },
                    |i| i,
                )
            })?;
        }
        if named("hypercall-doorbell") {
            let me = boot_info().compartment_id;
            emit("hypercall-doorbell", &mut || {
                measure(
                    s,
                    budget,
                    |i| {
                        hypercall::doorbell(me);
                        Ok(i)
                    },
                    |i| i,
                )
            })?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => {
            report_endpoint();
            0
        }
        Err(code) => code,
    }
}

/// Prints why a case failed.
fn explain(case: &str, failure: Failure) {
    match failure {
        Failure::Gate(e) => println!("gatebench: {case}: gate call failed: {e}"),
        Failure::Wrong { call, got, .. } if got & FAILED == FAILED => {
            let why = GateError::from_code(got & !FAILED).map_or("?", GateError::as_str);
            println!("gatebench: {case}: call {call}: a hop failed: {why}");
        }
        Failure::Wrong { call, got, want } => {
            println!("gatebench: {case}: call {call}: got {got:#x}, want {want:#x}");
        }
    }
}
