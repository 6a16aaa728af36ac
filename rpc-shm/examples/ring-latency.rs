//! `ring-latency [CALLS]`: the latency of a remote call between two threads over one
//! shared region, next to the cache-line round trip between the same two threads, and
//! of pings whose every 16th call makes a nested callback. Prints one JSON line per
//! case. A measurement, not a test: scripts/bench-gates runs it; the tests check the
//! same calls for correctness with far fewer of them.

#[path = "../tests/common/mod.rs"]
#[allow(
    unused_imports,
    reason = "the harness re-exports what only the tests use"
)]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{run, Shm, MIB};
use rpc_shm::{IdlePolicy, Placement, Platform, Router};

rpc_shm::interface! {
    /// Served by the callee thread.
    pub mod callee (id = 1) {
        fn nop() -> u64 = 0;
        /// `x + 1`, or for multiples of 16 a callback: `back.callback(x) + 1`.
        fn ping(x: u64) -> u64 = 1;
    }
}

rpc_shm::interface! {
    /// Served by the calling thread, for callbacks.
    pub mod back (id = 2) {
        fn callback(x: u64) -> u64 = 0;
    }
}

/// The `local` of clients whose component is never co-located.
struct Nowhere;

impl callee::Api for Nowhere {
    fn nop(&self) -> u64 {
        unreachable!("the callee is never co-located")
    }
    fn ping(&self, _: u64) -> u64 {
        unreachable!("the callee is never co-located")
    }
}

impl back::Api for Nowhere {
    fn callback(&self, _: u64) -> u64 {
        unreachable!("the caller is never co-located")
    }
}

static NOWHERE: Nowhere = Nowhere;
/// Component i lives in compartment i.
const IDENTITY: [u8; 2] = [0, 1];

struct Callee<'r, R: Router> {
    back: back::Client<'r, Nowhere, R>,
}

impl<R: Router> callee::Api for Callee<'_, R> {
    fn nop(&self) -> u64 {
        0
    }
    fn ping(&self, x: u64) -> u64 {
        if x % 16 == 0 {
            self.back.callback(x).unwrap() + 1
        } else {
            x + 1
        }
    }
}

struct Back;

impl back::Api for Back {
    fn callback(&self, x: u64) -> u64 {
        2 * x
    }
}

/// Round trips of one cache line between two spinning threads: the floor a call can
/// approach.
fn baseline_round_trip_ns(rounds: u64) -> f64 {
    #[repr(align(64))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    let start = Instant::now();
    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..rounds {
                while line.0.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.0.store(2 * i + 2, Ordering::Release);
            }
        });
        for i in 0..rounds {
            line.0.store(2 * i + 1, Ordering::Release);
            while line.0.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
        }
    });
    start.elapsed().as_secs_f64() * 1e9 / rounds as f64
}

fn main() {
    let calls: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 1_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: ring-latency [CALLS > 0]");
            std::process::exit(64);
        }
    };
    let baseline = baseline_round_trip_ns(calls / 5 + 1);
    let shm = Shm::new(MIB, 2);
    let stop = AtomicBool::new(false);
    let results = std::sync::Mutex::new((0.0, 0.0));
    run(
        &shm,
        Duration::from_secs(900),
        vec![
            Box::new(|ctx| {
                let ep = ctx.endpoint();
                let router = Placement::new(&ep, &IDENTITY);
                ep.register(back::ID, &back::Server(Back)).unwrap();
                let callee = callee::Client::new(&router, 1, &NOWHERE);
                for _ in 0..calls / 100 + 1 {
                    callee.nop().unwrap();
                }
                let t = Instant::now();
                for _ in 0..calls {
                    callee.nop().unwrap();
                }
                let nop_ns = t.elapsed().as_secs_f64() * 1e9 / calls as f64;
                let t = Instant::now();
                for x in 0..calls {
                    callee.ping(x).unwrap();
                }
                let ping_ns = t.elapsed().as_secs_f64() * 1e9 / calls as f64;
                *results.lock().unwrap() = (nop_ns, ping_ns);
                stop.store(true, Ordering::Release);
                ep.platform().doorbell(1);
            }),
            Box::new(|ctx| {
                let ep = ctx.endpoint();
                ep.set_idle_policy(IdlePolicy::default());
                let router = Placement::new(&ep, &IDENTITY);
                let server = callee::Server(Callee {
                    back: back::Client::new(&router, 0, &NOWHERE),
                });
                ep.register(callee::ID, &server).unwrap();
                ep.mark_ready();
                ep.serve_until(|| stop.load(Ordering::Acquire));
            }),
        ],
    );
    let (nop_ns, ping_ns) = *results.lock().unwrap();
    let line = |case: &str, ns: f64| {
        println!(
            "{{\"bench\":\"rpc-shm-threads\",\"case\":\"{case}\",\"calls\":{calls},\"ns_mean\":{ns:.1},\"ratio_to_cache_line\":{:.2}}}",
            ns / baseline
        );
    };
    line("cache-line-round-trip", baseline);
    line("nop", nop_ns);
    line("ping-with-callback-every-16", ping_ns);
}
