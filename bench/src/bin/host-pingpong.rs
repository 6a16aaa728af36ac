//! `host-pingpong [ROUND_TRIPS]`: the cross-core cache-line round trip on this host.
//!
//! Two threads pinned to CPUs 0 and 1 pass a counter back and forth through one
//! 64-byte-aligned atomic. Each timed sample is one round trip, measured with rdtsc on
//! the initiating thread. Prints one JSON line in the same shape as gatebench's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flexos_bench::{min_median, pin_to_cpu, rdtsc, tsc_per_ns};

#[repr(align(64))]
struct Line(AtomicU64);

fn main() {
    let rounds: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 1_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: host-pingpong [ROUND_TRIPS > 0]");
            std::process::exit(64);
        }
    };
    let warmup = rounds / 10;
    let line = Arc::new(Line(AtomicU64::new(0)));
    let peer = {
        let line = line.clone();
        std::thread::spawn(move || {
            pin_to_cpu(1);
            // Answer every odd value with the next even one.
            for i in 0..(warmup + rounds) as u64 {
                let want = 2 * i + 1;
                while line.0.load(Ordering::Acquire) != want {
                    std::hint::spin_loop();
                }
                line.0.store(want + 1, Ordering::Release);
            }
        })
    };
    pin_to_cpu(0);
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..(warmup + rounds) as u64 {
        let t0 = rdtsc();
        line.0.store(2 * i + 1, Ordering::Release);
        while line.0.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
        let t1 = rdtsc();
        if i as usize >= warmup {
            samples.push(t1 - t0);
        }
    }
    peer.join().expect("peer thread panicked");
    // Timer overhead: back-to-back rdtsc, subtracted like gatebench does.
    let mut overhead: Vec<u64> = (0..10_000)
        .map(|_| {
            let a = rdtsc();
            rdtsc() - a
        })
        .collect();
    let (timer, _) = min_median(&mut overhead);
    let (min, median) = min_median(&mut samples);
    let (min, median) = (min.saturating_sub(timer), median.saturating_sub(timer));
    let per_ns = tsc_per_ns(Duration::from_millis(50));
    println!(
        "{{\"bench\":\"gate\",\"case\":\"host-pingpong\",\"compartments\":0,\"cycles_min\":{min},\"cycles_median\":{median},\"ns_median\":{:.1}}}",
        median as f64 / per_ns
    );
}
