//! `Endpoint::wait_until` / `Endpoint::wake` (a compartment waiting on a shared word
//! another one publishes) and `Endpoint::serve_with` (serving calls while polling a
//! device that rings the doorbell once armed), with sleeps that never time out: a
//! lost wake-up hangs and the watchdog fails the test.

#[allow(unused_imports)]
mod common;

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rpc_shm::*;

rpc_shm::interface! {
    pub mod echo (id = 7) {
        fn twice(x: u64) -> u64 = 0;
    }
}

struct Echo;
impl echo::Api for Echo {
    fn twice(&self, x: u64) -> u64 {
        2 * x
    }
}
static ECHO: Echo = Echo;
const IDENTITY: [u8; 3] = [0, 1, 2];

/// Two words in the heap of the channel 0-1: `value` (written by 0) and `ack`
/// (written by 1).
fn words(region: &Region) -> SharedBytes<'_> {
    let heap = region.layout().channel_heap(0, 1);
    region
        .bytes(SharedBuf::from_parts(heap.offset(), 128))
        .unwrap()
}

/// Ping-pong through shared words: each side publishes, wakes the other, and waits
/// for the answer with `wait_until`, always sleeping at once (no spin, no timeout).
#[test]
fn wait_until_and_wake_lose_no_wake_up() {
    let shm = Shm::new(MIB, 2);
    let rounds = if cfg!(miri) { 50 } else { 3000 };
    run(
        &shm,
        Duration::from_secs(60),
        vec![
            Box::new(move |ctx| {
                let ep = ctx.endpoint();
                ep.set_idle_policy(policy(0, FOREVER));
                let w = words(&ctx.region);
                for i in 1..=rounds {
                    w.store_u64(0, i);
                    ep.wake(1);
                    ep.wait_until(|| w.load_u64(64) == Some(i));
                }
                assert!(ep.stats().sleeps > 0, "the test must exercise sleeping");
            }),
            Box::new(move |ctx| {
                let ep = ctx.endpoint();
                ep.set_idle_policy(policy(0, FOREVER));
                let w = words(&ctx.region);
                for i in 1..=rounds {
                    ep.wait_until(|| w.load_u64(0) == Some(i));
                    w.store_u64(64, i);
                    ep.wake(0);
                }
                // Waking oneself or nobody does nothing.
                ep.wake(1);
                ep.wake(7);
            }),
        ],
    );
}

/// A fake device: `produced` counts events; once the driver arms it, the next event
/// rings the driver's doorbell (the virtio used_event protocol).
struct Device {
    produced: AtomicU64,
    armed: AtomicBool,
}

struct Driver<'a> {
    dev: &'a Device,
    seen: u64,
    polls_with_work: u64,
}

impl Background for Driver<'_> {
    fn poll(&mut self) -> bool {
        let now = self.dev.produced.load(Ordering::Acquire);
        if now != self.seen {
            self.seen = now;
            self.polls_with_work += 1;
            return true;
        }
        false
    }

    fn before_sleep(&mut self) -> Option<u64> {
        self.dev.armed.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.dev.produced.load(Ordering::Acquire) != self.seen {
            return None;
        }
        Some(FOREVER)
    }
}

/// Compartment 1 serves calls from compartment 0 and polls a device fed by a third
/// thread, sleeping whenever neither has work: every call is answered and every
/// device event seen, although nothing but the doorbell ever ends a sleep.
#[test]
fn serve_with_serves_calls_and_polls_a_device() {
    let shm = Shm::new(MIB, 2);
    let events = if cfg!(miri) { 30 } else { 2000 };
    let calls = if cfg!(miri) { 30 } else { 2000 };
    let dev = Arc::new(Device {
        produced: AtomicU64::new(0),
        armed: AtomicBool::new(false),
    });
    let calls_done = Arc::new(AtomicBool::new(false));
    let (d1, d2) = (dev.clone(), dev.clone());
    let (c0, c1) = (calls_done.clone(), calls_done.clone());
    run(
        &shm,
        Duration::from_secs(60),
        vec![
            Box::new(move |ctx| {
                let ep = ctx.endpoint();
                ep.set_idle_policy(policy(0, FOREVER));
                let router = Placement::new(&ep, &IDENTITY[..2]);
                let client = echo::Client::new(&router, 1, &ECHO);
                for x in 0..calls {
                    assert_eq!(client.twice(x), Ok(2 * x));
                }
                c0.store(true, Ordering::Release);
                ep.wake(1);
            }),
            Box::new(move |ctx| {
                let ep = ctx.endpoint();
                ep.set_idle_policy(policy(10, FOREVER));
                let server = echo::Server(Echo);
                ep.register(echo::ID, &server).unwrap();
                ep.mark_ready();
                let mut driver = Driver {
                    dev: &d1,
                    seen: 0,
                    polls_with_work: 0,
                };
                let stop =
                    || c1.load(Ordering::Acquire) && d1.produced.load(Ordering::Acquire) == events;
                ep.serve_with(stop, &mut driver);
                // Whatever the last round saw, the device's count is reached.
                let _ = driver.poll();
                assert_eq!(driver.seen, events);
                assert!(driver.polls_with_work > 0);
                assert_eq!(ep.stats().served, calls);
            }),
            Box::new(move |ctx| {
                for _ in 0..events {
                    d2.produced.fetch_add(1, Ordering::Release);
                    fence(Ordering::SeqCst);
                    if d2.armed.swap(false, Ordering::Relaxed) {
                        ctx.threads.unpark(1);
                    }
                    std::thread::yield_now();
                }
            }),
        ],
    );
}
