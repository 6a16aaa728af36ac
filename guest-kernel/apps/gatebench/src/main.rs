//! `gatebench`: gate latency in the style of FlexOS Figure 11.
//!
//! Measures, from the `bench` component, the cost of one call in each case below, over
//! `calls=N` calls (default 1 000 000) after a warm-up, with `rdtsc` around every call
//! (ring 3 may read the TSC; the read does not exit). The timer overhead (the minimum of
//! back-to-back reads) is subtracted from min and median, as the host ping-pong
//! baseline does. Every result is checked; a wrong value prints an error and exits 1.
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
//! "remote" is whatever the placement makes it: with one compartment every case is a
//! direct call. stdout carries exactly one JSON line per case and nothing else:
//!
//! ```text
//! {"bench":"gate","case":"gate-remote-0","compartments":2,"cycles_min":..,
//!  "cycles_median":..,"ns_median":..}   (one line)
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
use flexos_kernel::{Args, boot_info, println};

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

/// Min and median cycles of one case, timer overhead not yet subtracted.
struct Stats {
    min: u64,
    median: u64,
}

/// Runs `op` `warmup` times untimed, then `calls` times timed into `samples`, checking
/// each result against `want(i)` outside the timed window.
fn measure(
    samples: &mut Vec<u64>,
    calls: usize,
    warmup: usize,
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
    for i in 0..warmup as u64 {
        check(i, op(i))?;
    }
    samples.clear();
    for i in 0..calls as u64 {
        let t0 = tsc();
        let r = op(i);
        let t1 = tsc();
        check(i, r)?;
        samples.push(t1.wrapping_sub(t0));
    }
    let min = samples.iter().copied().min().unwrap_or(0);
    let mid = samples.len() / 2;
    let median = if samples.is_empty() {
        0
    } else {
        *samples.select_nth_unstable(mid).1
    };
    Ok(Stats { min, median })
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
        "{{\"bench\":\"gate\",\"case\":\"{case}\",\"compartments\":{},\"cycles_min\":{min},\"cycles_median\":{median},\"ns_median\":{}.{}}}",
        boot_info().compartment_count,
        tenths / 10,
        tenths % 10
    );
}

/// Parses `calls=N` (N >= 1); rejects anything else.
fn parse_args(args: &Args) -> Result<usize, ()> {
    let mut calls = DEFAULT_CALLS;
    for arg in args {
        match arg.split_once('=') {
            Some(("calls", n)) => match n.parse::<usize>() {
                Ok(n) if n > 0 => calls = n,
                _ => {
                    println!("gatebench: bad calls={n} (want a positive integer)");
                    return Err(());
                }
            },
            _ => {
                println!("gatebench: unknown argument '{arg}' (usage: gatebench [calls=N])");
                return Err(());
            }
        }
    }
    Ok(calls)
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
    let Ok(calls) = parse_args(args) else {
        return EXIT_USAGE;
    };
    let warmup = (calls / 10).clamp(100, 100_000);
    let mut samples: Vec<u64> = Vec::with_capacity(calls);

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
    let emit = |case: &str, result: Result<Stats, Failure>| match result {
        Ok(stats) => {
            report(case, &stats, overhead);
            Ok(())
        }
        Err(failure) => {
            explain(case, failure);
            Err(EXIT_WRONG)
        }
    };
    let mut run = || -> Result<(), i32> {
        emit(
            "function-call",
            measure(s, calls, warmup, |i| Ok(plain_nop(i)), |i| i),
        )?;
        emit(
            "gate-local",
            if relay1_here {
                measure(s, calls, warmup, |_| black_box(&relay1).nop(), |_| 0)
            } else {
                measure(s, calls, warmup, |i| black_box(&own).ping(i), |i| i + 1)
            },
        )?;
        emit(
            "gate-remote-0",
            measure(s, calls, warmup, |_| black_box(&callee).nop(), |_| 0),
        )?;
        emit(
            "gate-remote-6",
            measure(
                s,
                calls,
                warmup,
                |i| black_box(&callee).sum6(i, i + 1, i + 2, i + 3, i + 4, i + 5),
                |i| 6 * i + 15,
            ),
        )?;
        emit(
            "gate-remote-buf64",
            measure(
                s,
                calls,
                warmup,
                |_| black_box(&callee).touch(buf64),
                |_| sum64,
            ),
        )?;
        emit(
            "gate-remote-buf4k",
            measure(
                s,
                calls,
                warmup,
                |_| black_box(&callee).touch(buf4k),
                |_| sum4k,
            ),
        )?;
        emit(
            "gate-nested",
            measure(
                s,
                calls,
                warmup,
                |i| black_box(&callee).nested(i),
                |i| i + 2,
            ),
        )?;
        emit(
            "gate-chain",
            measure(s, calls, warmup, |_| black_box(&relay1).forward(), |_| 2),
        )
    };
    match run() {
        Ok(()) => 0,
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
