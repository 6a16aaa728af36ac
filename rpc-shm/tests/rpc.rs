//! Compartments as threads over one shared region: calls, nesting, chains, more
//! compartments than cores, peer death, malicious peers, nesting limits.

mod common;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rpc_shm::slot::{control, seq_of, state_of, REPLY_ERR, REPLY_OK, REQUEST};
use rpc_shm::*;

rpc_shm::interface! {
    /// Served by the callee compartment.
    pub mod callee (id = 1) {
        fn nop() -> u64 = 0;
        fn sum6(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 = 1;
        /// Sums the bytes of `buf`, then adds 1 to each.
        fn touch(buf: SharedBuf) -> u64 = 2;
        /// `x + 1`, or for multiples of 16 a callback: `back.callback(x) + 1`.
        fn ping(x: u64) -> u64 = 3;
        fn flag(b: bool) -> u8 = 4;
    }
}

rpc_shm::interface! {
    /// Served by the calling compartment, for callbacks.
    pub mod back (id = 2) {
        fn callback(x: u64) -> u64 = 0;
    }
}

rpc_shm::interface! {
    /// A -> B -> C -> A.
    pub mod chain (id = 3) {
        fn forward(x: u64) -> u64 = 0;
        fn leaf(x: u64) -> u64 = 1;
        fn back(x: u64) -> u64 = 2;
    }
}

rpc_shm::interface! {
    /// Random multi-hop calls between 4 compartments.
    pub mod relay (id = 4) {
        fn hop(hops: u8, x: u64) -> u64 = 0;
    }
}

rpc_shm::interface! {
    /// Ping-pong recursion between two compartments, to hit the nesting limit.
    pub mod deep (id = 5) {
        fn down(level: u32) -> u32 = 0;
    }
}

/// The `local` of clients whose component is never co-located.
struct Nowhere;

impl callee::Api for Nowhere {
    fn nop(&self) -> u64 {
        unreachable!()
    }
    fn sum6(&self, _: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
        unreachable!()
    }
    fn touch(&self, _: SharedBuf) -> u64 {
        unreachable!()
    }
    fn ping(&self, _: u64) -> u64 {
        unreachable!()
    }
    fn flag(&self, _: bool) -> u8 {
        unreachable!()
    }
}

impl back::Api for Nowhere {
    fn callback(&self, _: u64) -> u64 {
        unreachable!()
    }
}

impl chain::Api for Nowhere {
    fn forward(&self, _: u64) -> u64 {
        unreachable!()
    }
    fn leaf(&self, _: u64) -> u64 {
        unreachable!()
    }
    fn back(&self, _: u64) -> u64 {
        unreachable!()
    }
}

impl relay::Api for Nowhere {
    fn hop(&self, _: u8, _: u64) -> u64 {
        unreachable!()
    }
}

impl deep::Api for Nowhere {
    fn down(&self, _: u32) -> u32 {
        unreachable!()
    }
}

static NOWHERE: Nowhere = Nowhere;

/// Component i lives in compartment i.
const IDENTITY: [u8; 4] = [0, 1, 2, 3];

struct Callee<'r, R: Router> {
    back: back::Client<'r, Nowhere, R>,
    region: Region,
    callbacks: Cell<u64>,
}

impl<R: Router> callee::Api for Callee<'_, R> {
    fn nop(&self) -> u64 {
        0
    }
    fn sum6(&self, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
        a.wrapping_add(b)
            .wrapping_add(c)
            .wrapping_add(d)
            .wrapping_add(e)
            .wrapping_add(f)
    }
    fn touch(&self, buf: SharedBuf) -> u64 {
        let bytes = self.region.bytes(buf).expect("validated by the server");
        let mut v = vec![0u8; bytes.len()];
        bytes.read(0, &mut v).unwrap();
        let sum = v.iter().map(|&b| b as u64).sum();
        for b in &mut v {
            *b = b.wrapping_add(1);
        }
        bytes.write(0, &v).unwrap();
        sum
    }
    fn ping(&self, x: u64) -> u64 {
        if x % 16 == 0 {
            self.callbacks.set(self.callbacks.get() + 1);
            self.back.callback(x).unwrap() + 1
        } else {
            x + 1
        }
    }
    fn flag(&self, b: bool) -> u8 {
        b as u8
    }
}

struct Back {
    calls: Cell<u64>,
}

impl back::Api for Back {
    fn callback(&self, x: u64) -> u64 {
        self.calls.set(self.calls.get() + 1);
        2 * x
    }
}

/// Compartment body serving `callee` until `stop`.
fn serve_callee(ctx: Ctx, stop: &AtomicBool, policy: IdlePolicy) -> (Stats, u64) {
    let ep = ctx.endpoint();
    ep.set_idle_policy(policy);
    let router = Placement::new(&ep, &IDENTITY);
    let server = callee::Server(Callee {
        back: back::Client::new(&router, 0, &NOWHERE),
        region: ctx.region,
        callbacks: Cell::new(0),
    });
    ep.register(callee::ID, &server).unwrap();
    ep.mark_ready();
    ep.serve_until(|| stop.load(Ordering::Acquire));
    (ep.stats(), server.0.callbacks.get())
}

fn ping_expect(x: u64) -> u64 {
    if x % 16 == 0 {
        2 * x + 1
    } else {
        x + 1
    }
}

/// Plain calls, then pings whose every 16th call makes a nested callback into the
/// caller, all answered correctly and counted on both sides. (The latency of the same
/// calls is measured by `cargo run --release -p rpc-shm --example ring-latency`, which
/// scripts/bench-gates runs.)
#[test]
fn calls_with_nested_callbacks() {
    const CALLS: u64 = 50_000;
    let shm = Shm::new(MIB, 2);
    let stop = AtomicBool::new(false);
    run(
        &shm,
        Duration::from_secs(300),
        vec![
            Box::new(|ctx| {
                let ep = ctx.endpoint();
                let router = Placement::new(&ep, &IDENTITY);
                let server = back::Server(Back {
                    calls: Cell::new(0),
                });
                ep.register(back::ID, &server).unwrap();
                let callee = callee::Client::new(&router, 1, &NOWHERE);
                assert_eq!(callee.route(), Route::Remote(1));
                for _ in 0..CALLS {
                    assert_eq!(callee.nop(), Ok(0));
                }
                let mut sum = 0u64;
                for x in 0..CALLS {
                    let r = callee.ping(x).unwrap();
                    assert_eq!(r, ping_expect(x));
                    sum = sum.wrapping_add(r);
                }
                let want: u64 = (0..CALLS).map(ping_expect).fold(0, u64::wrapping_add);
                assert_eq!(sum, want);
                assert_eq!(server.0.calls.get(), CALLS / 16);
                assert_eq!(callee.sum6(1, 2, 3, 4, 5, 6), Ok(21));
                assert_eq!(callee.flag(true), Ok(1));
                let s = ep.stats();
                assert_eq!(
                    (s.calls, s.served, s.errors),
                    (2 * CALLS + 2, CALLS / 16, 0)
                );
                stop.store(true, Ordering::Release);
                ep.platform().doorbell(1);
            }),
            Box::new(|ctx| {
                let (stats, callbacks) = serve_callee(ctx, &stop, IdlePolicy::default());
                assert_eq!(callbacks, CALLS / 16);
                assert_eq!(stats.calls, CALLS / 16);
                assert_eq!(stats.served, 2 * CALLS + 2);
                assert_eq!(stats.errors, 0);
            }),
        ],
    );
}

struct Chain<'r, R: Router> {
    next: chain::Client<'r, Nowhere, R>,
}

impl<R: Router> chain::Api for Chain<'_, R> {
    /// In B: C.leaf(x) + 1.
    fn forward(&self, x: u64) -> u64 {
        self.next.leaf(x).unwrap() + 1
    }
    /// In C: 3x, or for multiples of 8 a call back into A: A.back(x) + 10.
    fn leaf(&self, x: u64) -> u64 {
        if x % 8 == 0 {
            self.next.back(x).unwrap() + 10
        } else {
            3 * x
        }
    }
    /// In A: x + 100.
    fn back(&self, x: u64) -> u64 {
        x + 100
    }
}

fn chain_expect(x: u64) -> u64 {
    if x % 8 == 0 {
        x + 111
    } else {
        3 * x + 1
    }
}

fn chain_test(calls: u64, policy: IdlePolicy) {
    let shm = Shm::new(MIB, 3);
    let stop = AtomicBool::new(false);
    let body = |ctx: Ctx| {
        let ep = ctx.endpoint();
        ep.set_idle_policy(policy);
        let router = Placement::new(&ep, &IDENTITY[..3]);
        let me = ep.me();
        let next = (me + 1) % 3;
        let server = chain::Server(Chain {
            next: chain::Client::new(&router, next as u16, &NOWHERE),
        });
        ep.register(chain::ID, &server).unwrap();
        if me == 0 {
            for x in 0..calls {
                assert_eq!(server.0.next.forward(x), Ok(chain_expect(x)));
            }
            stop.store(true, Ordering::Release);
            ep.platform().doorbell(1);
            ep.platform().doorbell(2);
        } else {
            ep.serve_until(|| stop.load(Ordering::Acquire));
        }
        let s = ep.stats();
        let backs = calls.div_ceil(8);
        match me {
            0 => assert_eq!((s.calls, s.served), (calls, backs)),
            1 => assert_eq!((s.calls, s.served), (calls, calls)),
            _ => assert_eq!((s.calls, s.served), (backs, calls)),
        }
    };
    run(
        &shm,
        Duration::from_secs(120),
        vec![Box::new(body), Box::new(body), Box::new(body)],
    );
}

#[test]
fn chain_of_three_compartments() {
    chain_test(50_000, IdlePolicy::default());
}

struct Relay<'r, R: Router> {
    me: u32,
    peers: Vec<relay::Client<'r, Nowhere, R>>,
}

impl<R: Router> relay::Api for Relay<'_, R> {
    fn hop(&self, hops: u8, x: u64) -> u64 {
        if hops == 0 {
            return x + 1;
        }
        let mut target = ((x >> 8) + hops as u64) as u32 % 4;
        if target == self.me {
            target = (target + 1) % 4;
        }
        self.peers[target as usize].hop(hops - 1, x).unwrap() + 1
    }
}

/// Four compartments on a two-core machine, every one calling the others with
/// multi-hop nested calls while serving them. Idle compartments must sleep (or the
/// spinners starve the others), so this runs on the sleep/doorbell path.
fn four_compartments(calls: u32, policy: IdlePolicy) -> [Stats; 4] {
    let shm = Shm::new(2 * MIB, 4);
    let finished = AtomicU32::new(0);
    let stats = Mutex::new([Stats::default(); 4]);
    let body = |ctx: Ctx| {
        let ep = ctx.endpoint();
        ep.set_idle_policy(policy);
        let router = Placement::new(&ep, &IDENTITY);
        let me = ep.me();
        let server = relay::Server(Relay {
            me,
            peers: (0..4)
                .map(|c| relay::Client::new(&router, c, &NOWHERE))
                .collect(),
        });
        ep.register(relay::ID, &server).unwrap();
        let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15 ^ (me as u64 + 1));
        for _ in 0..calls {
            let mut target = rng.below(4) as u32;
            if target == me {
                target = (target + 1) % 4;
            }
            // At most 4 calls in flight per chain, 16 in the system: never TooDeep.
            let hops = rng.below(4) as u8;
            let x = rng.next() >> 4;
            let r = server.0.peers[target as usize].hop(hops, x);
            assert_eq!(r, Ok(x + hops as u64 + 1));
        }
        finished.fetch_add(1, Ordering::AcqRel);
        for c in 0..4 {
            if c != me {
                ep.platform().doorbell(c);
            }
        }
        ep.serve_until(|| finished.load(Ordering::Acquire) == 4);
        stats.lock().unwrap()[me as usize] = ep.stats();
    };
    run(
        &shm,
        Duration::from_secs(300),
        vec![
            Box::new(body),
            Box::new(body),
            Box::new(body),
            Box::new(body),
        ],
    );
    let s = *stats.lock().unwrap();
    s
}

#[test]
fn four_compartments_on_two_cores() {
    let s = four_compartments(20_000, IdlePolicy::default());
    let calls: u64 = s.iter().map(|s| s.calls).sum();
    let served: u64 = s.iter().map(|s| s.served).sum();
    assert_eq!(calls, served);
    assert!(calls >= 80_000);
    assert!(s.iter().all(|s| s.errors == 0));
    // More busy compartments than cores: the run took the sleep/doorbell path.
    let sleeps: u64 = s.iter().map(|s| s.sleeps).sum();
    let bells: u64 = s.iter().map(|s| s.doorbells).sum();
    assert!(sleeps > 0 && bells > 0, "{s:?}");
}

#[test]
fn four_compartments_sleepy() {
    // A tiny spin budget: nearly every wait sleeps and needs a doorbell.
    let s = four_compartments(3_000, policy(20, 5_000));
    let sleeps: u64 = s.iter().map(|s| s.sleeps).sum();
    let bells: u64 = s.iter().map(|s| s.doorbells).sum();
    assert!(sleeps > 100, "{s:?}");
    assert!(bells > 100, "{s:?}");
}

#[test]
fn no_lost_wakeup_when_every_wait_sleeps() {
    // No spinning and no timeout: each wait goes to sleep until its doorbell, so a
    // single lost wake-up hangs the test (and the watchdog fails it).
    let shm = Shm::new(MIB, 2);
    let stop = AtomicBool::new(false);
    const CALLS: u64 = 20_000;
    run(
        &shm,
        Duration::from_secs(120),
        vec![
            Box::new(|ctx| {
                let ep = ctx.endpoint();
                ep.set_idle_policy(policy(0, FOREVER));
                let router = Placement::new(&ep, &IDENTITY);
                let server = back::Server(Back {
                    calls: Cell::new(0),
                });
                ep.register(back::ID, &server).unwrap();
                let callee = callee::Client::new(&router, 1, &NOWHERE);
                for x in 0..CALLS {
                    assert_eq!(callee.ping(x), Ok(ping_expect(x)));
                }
                stop.store(true, Ordering::Release);
                ep.platform().doorbell(1);
                assert!(ep.stats().sleeps > 0);
            }),
            Box::new(|ctx| {
                let (stats, _) = serve_callee(ctx, &stop, policy(0, FOREVER));
                assert!(stats.sleeps > 0);
                assert!(stats.doorbells > 0);
            }),
        ],
    );
    // Three compartments, nested callbacks across all of them, same policy.
    chain_test(5_000, policy(0, FOREVER));
}

/// How one `sleep` of the unlatched platform ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Woken {
    Rung,
    TimedOut,
}

/// A thread platform whose doorbell is NOT latched: it only wakes a sleeper that is
/// already blocked. Violates the `Platform::sleep` contract on purpose.
struct Unlatched {
    /// (blocked in `sleep`, rung while blocked)
    state: Mutex<(bool, bool)>,
    cv: std::sync::Condvar,
    before_sleep: Box<dyn Fn() + Send + Sync>,
    /// How each sleep ended, in order.
    sleep_ends: Mutex<Vec<Woken>>,
}

impl Unlatched {
    fn ring(&self) {
        let mut s = self.state.lock().unwrap();
        if s.0 {
            s.1 = true;
            self.cv.notify_all();
        }
    }
}

struct UnlatchedPlatform(Arc<Unlatched>);

impl Platform for UnlatchedPlatform {
    fn relax(&self) {
        std::hint::spin_loop();
    }
    fn sleep(&self, timeout_us: u64) {
        (self.0.before_sleep)();
        let mut s = self.0.state.lock().unwrap();
        *s = (true, false);
        let (mut s, _) = self
            .0
            .cv
            .wait_timeout_while(s, Duration::from_micros(timeout_us), |s| !s.1)
            .unwrap();
        s.0 = false;
        let mut ends = self.0.sleep_ends.lock().unwrap();
        ends.push(if s.1 { Woken::Rung } else { Woken::TimedOut });
    }
    fn doorbell(&self, _: u32) {}
}

/// Forces the worst interleaving: the server has set its sleeping flag and re-checked
/// the rings (nothing there), and the caller publishes its request and rings the
/// doorbell *before* the server actually blocks. The latched server sleeps with no
/// timeout, so only the doorbell can wake it (a lost wake-up is a hang, which the
/// harness fails); the unlatched one sleeps with `timeout_us`. Returns how each of the
/// unlatched platform's sleeps ended.
fn publish_between_recheck_and_sleep(latched: bool, timeout_us: u64) -> Vec<Woken> {
    let shm = Shm::new(MIB, 2);
    let go = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicBool::new(false));
    let stop = AtomicBool::new(false);
    let first = Arc::new(AtomicBool::new(true));
    let before_sleep = {
        let (go, posted, first) = (go.clone(), posted.clone(), first.clone());
        move || {
            if first.swap(false, Ordering::AcqRel) {
                go.store(true, Ordering::Release);
                while !posted.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            }
        }
    };
    let unlatched = Arc::new(Unlatched {
        state: Mutex::new((false, false)),
        cv: std::sync::Condvar::new(),
        before_sleep: Box::new(before_sleep.clone()),
        sleep_ends: Mutex::new(Vec::new()),
    });

    struct SleepHook<F>(F);
    impl<F: Fn() + Send + Sync> Hooks for SleepHook<F> {
        fn before_sleep(&self) {
            (self.0)()
        }
    }
    struct RelaxHook(Arc<AtomicBool>);
    impl Hooks for RelaxHook {
        fn on_relax(&self) {
            self.0.store(true, Ordering::Release);
        }
    }

    let unlatched2 = unlatched.clone();
    run(
        &shm,
        Duration::from_secs(60),
        vec![
            Box::new(|ctx| {
                // The caller: spins only, marks `posted` once it waits for the reply.
                // With the unlatched platform its doorbell goes to `Unlatched::ring`.
                struct Caller {
                    inner: ThreadPlatform,
                    unlatched: Option<Arc<Unlatched>>,
                }
                impl Platform for Caller {
                    fn relax(&self) {
                        self.inner.relax()
                    }
                    fn sleep(&self, us: u64) {
                        self.inner.sleep(us)
                    }
                    fn doorbell(&self, t: u32) {
                        match &self.unlatched {
                            Some(u) => u.ring(),
                            None => self.inner.doorbell(t),
                        }
                    }
                }
                let p = Caller {
                    inner: ThreadPlatform {
                        threads: ctx.threads.clone(),
                        hooks: Arc::new(RelaxHook(posted.clone())),
                    },
                    unlatched: (!latched).then(|| unlatched2.clone()),
                };
                let ep = Endpoint::new(ctx.region, 0, p).unwrap();
                ep.set_idle_policy(policy(u32::MAX, 1000));
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                assert_eq!(ep.call(1, callee::ID, callee::methods::nop, [0; 6]), Ok(0));
                stop.store(true, Ordering::Release);
                ep.platform().doorbell(1);
            }),
            Box::new(|ctx| {
                struct Nop;
                impl callee::Api for Nop {
                    fn nop(&self) -> u64 {
                        0
                    }
                    fn sum6(&self, _: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
                        0
                    }
                    fn touch(&self, _: SharedBuf) -> u64 {
                        0
                    }
                    fn ping(&self, _: u64) -> u64 {
                        0
                    }
                    fn flag(&self, _: bool) -> u8 {
                        0
                    }
                }
                fn serve<P: Platform>(ep: Endpoint<'_, P>, stop: &AtomicBool, timeout_us: u64) {
                    static SERVER: callee::Server<Nop> = callee::Server(Nop);
                    ep.register(callee::ID, &SERVER).unwrap();
                    ep.set_idle_policy(policy(0, timeout_us));
                    ep.serve_until(|| stop.load(Ordering::Acquire));
                }
                if latched {
                    assert_eq!(timeout_us, FOREVER, "only a doorbell may wake it");
                    serve(
                        ctx.endpoint_with(Arc::new(SleepHook(before_sleep.clone()))),
                        &stop,
                        timeout_us,
                    );
                } else {
                    let p = UnlatchedPlatform(unlatched.clone());
                    serve(Endpoint::new(ctx.region, 1, p).unwrap(), &stop, timeout_us);
                }
            }),
        ],
    );
    let ends = unlatched.sleep_ends.lock().unwrap().clone();
    ends
}

#[test]
fn doorbell_between_recheck_and_sleep_is_not_lost() {
    // The server sleeps with no timeout: the call returns only because the doorbell
    // rung inside the window was kept.
    publish_between_recheck_and_sleep(true, FOREVER);
    // Negative control: the same interleaving with a platform that drops doorbells
    // rung before the sleep starts loses the wake-up: the server's first sleep ends by
    // its timeout, not by the doorbell, so the scenario really hits the window.
    let ends = publish_between_recheck_and_sleep(false, 20_000);
    assert_eq!(ends.first(), Some(&Woken::TimedOut), "{ends:?}");
}

/// Raises `waiting` when the caller starts waiting in the chosen way.
struct WaitingHook {
    waiting: Arc<AtomicBool>,
    asleep: bool,
}

impl Hooks for WaitingHook {
    fn on_relax(&self) {
        if !self.asleep {
            self.waiting.store(true, Ordering::Release);
        }
    }
    fn before_sleep(&self) {
        if self.asleep {
            self.waiting.store(true, Ordering::Release);
        }
    }
}

#[test]
fn peer_death_unblocks_waiting_caller() {
    // Compartment 1 never serves; once the caller waits (spinning or asleep), the
    // "monitor" marks it dead. A caller that missed the death would hang, which the
    // harness fails.
    for (spin, sleep_us, ring, asleep) in [
        (u32::MAX, DEFAULT_SLEEP_US, false, false), // caller spinning
        (DEFAULT_SPIN_ROUNDS, DEFAULT_SLEEP_US, false, true), // caller asleep, timeout
        (0, FOREVER, true, true),                   // caller asleep, monitor rings it
    ] {
        let shm = Shm::new(MIB, 2);
        let waiting = Arc::new(AtomicBool::new(false));
        run(
            &shm,
            Duration::from_secs(30),
            vec![
                Box::new(|ctx| {
                    let ep = ctx.endpoint_with(Arc::new(WaitingHook {
                        waiting: waiting.clone(),
                        asleep,
                    }));
                    ep.set_idle_policy(policy(spin, sleep_us));
                    let r = ep.call(1, callee::ID, callee::methods::nop, [0; 6]);
                    assert_eq!(r, Err(GateError::PeerDead));
                    // Later calls fail at once; bad targets are refused.
                    assert_eq!(ep.call(1, 1, 0, [0; 6]), Err(GateError::PeerDead));
                    assert_eq!(ep.call(0, 1, 0, [0; 6]), Err(GateError::NoSuchCompartment));
                    assert_eq!(ep.call(2, 1, 0, [0; 6]), Err(GateError::NoSuchCompartment));
                    assert!(ep.is_dead(1) && !ep.is_dead(0));
                }),
                Box::new(|ctx| {
                    while !waiting.load(Ordering::Acquire) {
                        thread::yield_now();
                    }
                    ctx.region.set_dead(1);
                    if ring {
                        ctx.threads.unpark(0);
                    }
                }),
            ],
        );
    }
}

/// A raw view of a slot, for playing a malicious peer.
fn raw_slot(region: &Region, caller: u32, callee: u32, seq: u32) -> &[AtomicU64; 8] {
    let off = region.layout().slot_offset(caller, callee, seq) as usize;
    // SAFETY: the slot lies inside the region, is 64-byte aligned, and the region is
    // only accessed atomically.
    unsafe { &*(region.base().add(off) as *const [AtomicU64; 8]) }
}

/// Posts raw words as compartment `me` to `callee` and waits for a reply with
/// `seq`; returns (state, word 1), or None if nothing answered within `wait`.
fn raw_call(
    ctx: &Ctx,
    callee: u32,
    seq: u32,
    words: [u64; 8],
    wait: Duration,
) -> Option<(u32, u64)> {
    let slot = raw_slot(&ctx.region, ctx.id, callee, seq);
    for i in 1..8 {
        slot[i].store(words[i], Ordering::Relaxed);
    }
    slot[0].store(words[0], Ordering::Release);
    ctx.threads.unpark(callee);
    let t = Instant::now();
    loop {
        let c = slot[0].load(Ordering::Acquire);
        if matches!(state_of(c), REPLY_OK | REPLY_ERR) && seq_of(c) == seq {
            let v = slot[1].load(Ordering::Relaxed);
            slot[0].store(0, Ordering::Relaxed);
            return Some((state_of(c), v));
        }
        if t.elapsed() > wait {
            return None;
        }
        std::hint::spin_loop();
    }
}

fn req(seq: u32, iface: u16, method: u16, args: [u64; 6]) -> [u64; 8] {
    rpc_shm::slot::Request {
        seq,
        iface,
        method,
        args,
    }
    .encode()
}

#[test]
fn malicious_caller_gets_errors_and_callee_keeps_serving() {
    let shm = Shm::new(MIB, 3);
    let stop = AtomicBool::new(false);
    let good_done = AtomicBool::new(false);
    let bad_done = AtomicBool::new(false);
    let bad_errors = AtomicU64::new(0);
    // Calls of the good caller answered so far: proof that the callee is polling.
    let good_answered = AtomicU64::new(0);
    run(
        &shm,
        Duration::from_secs(120),
        vec![
            // 0: a well-behaved caller, hammering the callee throughout.
            Box::new(|ctx| {
                let ep = ctx.endpoint();
                let router = Placement::new(&ep, &IDENTITY[..3]);
                let callee = callee::Client::new(&router, 1, &NOWHERE);
                let mut i = 0u64;
                while !bad_done.load(Ordering::Acquire) || i < 100_000 {
                    assert_eq!(callee.sum6(i, 1, 2, 3, 4, 5), Ok(i + 15));
                    i += 1;
                    good_answered.fetch_add(1, Ordering::AcqRel);
                }
                good_done.store(true, Ordering::Release);
                ctx.threads.unpark(2);
            }),
            // 1: the callee.
            Box::new(|ctx| {
                let (stats, _) = serve_callee(ctx, &stop, IdlePolicy::default());
                assert_eq!(stats.errors, bad_errors.load(Ordering::Acquire));
            }),
            // 2: the malicious caller writing raw slots.
            Box::new(|ctx| {
                let heap = ctx.region.layout().channel_heap(2, 1);
                let long = Duration::from_secs(10);
                let seq = Cell::new(0u32);
                let mut errors = 0;
                let mut expect = |words: [u64; 8], want: Result<u64, GateError>| {
                    let got = raw_call(&ctx, 1, seq.get(), words, long).expect("no reply");
                    let got = match got {
                        (REPLY_OK, v) => Ok(v),
                        (REPLY_ERR, code) => Err(GateError::from_code(code).unwrap()),
                        other => panic!("bad reply {other:?}"),
                    };
                    assert_eq!(got, want, "request {words:x?}");
                    errors += got.is_err() as u64;
                    seq.set(seq.get() + 1);
                };
                let id = callee::ID;
                let touch = callee::methods::touch;
                // A correct request works.
                expect(req(seq.get(), id, callee::methods::sum6, [1; 6]), Ok(6));
                // Unknown interfaces (inside the server table, beyond it).
                for iface in [0, 63, 64, 99, u16::MAX] {
                    expect(
                        req(seq.get(), iface, 0, [0; 6]),
                        Err(GateError::UnknownInterface),
                    );
                }
                // Unknown methods.
                for method in [5, 77, u16::MAX] {
                    expect(
                        req(seq.get(), id, method, [0; 6]),
                        Err(GateError::UnknownMethod),
                    );
                }
                // Out-of-bounds handles.
                let end = heap.offset() + heap.size();
                for (off, len) in [
                    (0, 64),
                    (heap.offset() - 8, 16),
                    (end - 8, 16),
                    (end, 1),
                    (u32::MAX, u32::MAX),
                ] {
                    let h = off as u64 | (len as u64) << 32;
                    expect(
                        req(seq.get(), id, touch, [h, 0, 0, 0, 0, 0]),
                        Err(GateError::BadHandle),
                    );
                }
                // A bad bool.
                let flag = callee::methods::flag;
                expect(
                    req(seq.get(), id, flag, [2, 0, 0, 0, 0, 0]),
                    Err(GateError::BadArgument),
                );
                // Reserved bits.
                let mut w = req(seq.get(), id, callee::methods::nop, [0; 6]);
                w[1] |= 1 << 63;
                expect(w, Err(GateError::BadSlot));
                // Garbage state words, with the right or a wrong seq.
                for bad in [control(4, seq.get()), control(0xDEAD_BEEF, 12345), u64::MAX] {
                    expect([bad, 1, 2, 3, 4, 5, 6, 7], Err(GateError::BadSlot));
                }
                // A request with a seq the callee does not expect yet is left alone
                // (it may be one still in flight); so is a stale reply state.
                let s = seq.get();
                for w0 in [
                    control(REQUEST, s + 5),
                    control(REPLY_OK, s),
                    control(REPLY_ERR, s),
                ] {
                    let slot = raw_slot(&ctx.region, 2, 1, s);
                    let mut w = req(s, id, callee::methods::nop, [0; 6]);
                    w[0] = w0;
                    w[1] = 0x1234;
                    for i in (0..8).rev() {
                        slot[i].store(w[i], Ordering::Release);
                    }
                    ctx.threads.unpark(1);
                    // Wait until the callee has looked at our ring since: it serves
                    // its rings round robin, so of the good caller's calls answered
                    // from now on, the third was taken by a poll that started after
                    // the second was answered (after this point) and that checked
                    // ring 2 before ring 0.
                    let seen = good_answered.load(Ordering::Acquire);
                    while good_answered.load(Ordering::Acquire) < seen + 3 {
                        thread::yield_now();
                    }
                    for i in 0..8 {
                        assert_eq!(slot[i].load(Ordering::Acquire), w[i]);
                    }
                }
                // ... and once the right request arrives, it is served.
                expect(req(seq.get(), id, callee::methods::nop, [0; 6]), Ok(0));
                // Random garbage in every word: always answered (unless the state
                // is one the callee must leave alone).
                let mut rng = Rng::new(42);
                for _ in 0..5_000 {
                    let s = seq.get();
                    let mut w = [0u64; 8];
                    for x in &mut w {
                        *x = rng.next();
                    }
                    if rng.below(2) == 0 {
                        // Plausible ids, but not `ping`, whose callback compartment
                        // 0 does not serve.
                        let (iface, mut method) = (rng.below(4), rng.below(8));
                        if iface == 1 && method == 3 {
                            method = 4;
                        }
                        w[1] = method << 16 | iface;
                    }
                    w[0] = if rng.below(8) == 0 {
                        control(5 + rng.below(1000) as u32, rng.next() as u32)
                    } else {
                        control(REQUEST, s)
                    };
                    let (state, v) = raw_call(&ctx, 1, s, w, long).expect("no reply");
                    if state == REPLY_ERR {
                        assert!(GateError::from_code(v).is_some());
                        errors += 1;
                    }
                    seq.set(s + 1);
                }
                bad_errors.store(errors, Ordering::Release);
                bad_done.store(true, Ordering::Release);
                // The good caller unparks us when it is done.
                while !good_done.load(Ordering::Acquire) {
                    thread::park();
                }
                stop.store(true, Ordering::Release);
                ctx.threads.unpark(1);
            }),
        ],
    );
}

#[test]
fn malformed_replies_are_rejected() {
    let shm = Shm::new(MIB, 2);
    run(
        &shm,
        Duration::from_secs(60),
        vec![
            Box::new(|ctx| {
                let ep = ctx.endpoint();
                let call = || ep.call(1, 1, 0, [0; 6]);
                assert_eq!(call(), Err(GateError::BadReply)); // unknown state
                assert_eq!(call(), Err(GateError::BadReply)); // wrong seq
                assert_eq!(call(), Err(GateError::BadReply)); // unknown error code
                assert_eq!(call(), Err(GateError::UnknownMethod));
                assert_eq!(call(), Ok(5));
            }),
            // A callee that answers with nonsense, as a raw thread.
            Box::new(|ctx| {
                let replies = [
                    (control(9, 0), 0),
                    (control(REPLY_OK, 77), 0),
                    (control(REPLY_ERR, 2), 999),
                    (control(REPLY_ERR, 3), GateError::UnknownMethod.code()),
                    (control(REPLY_OK, 4), 5),
                ];
                for (seq, (w0, w1)) in replies.into_iter().enumerate() {
                    let slot = raw_slot(&ctx.region, 0, 1, seq as u32);
                    while slot[0].load(Ordering::Acquire) != control(REQUEST, seq as u32) {
                        std::hint::spin_loop();
                    }
                    slot[1].store(w1, Ordering::Relaxed);
                    slot[0].store(w0, Ordering::Release);
                    ctx.threads.unpark(0);
                }
            }),
        ],
    );
}

struct Deep<'r, R: Router> {
    other: deep::Client<'r, Nowhere, R>,
    too_deep_at: Cell<Option<u32>>,
}

impl<R: Router> deep::Api for Deep<'_, R> {
    /// Calls the other compartment with `level - 1` until 0 or the ring is full;
    /// returns how many calls succeeded below.
    fn down(&self, level: u32) -> u32 {
        if level == 0 {
            return 0;
        }
        match self.other.down(level - 1) {
            Ok(n) => n + 1,
            Err(GateError::TooDeep) => {
                self.too_deep_at.set(Some(level));
                0
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn nesting_deeper_than_the_ring_is_too_deep() {
    let shm = Shm::new(MIB, 2);
    let stop = AtomicBool::new(false);
    let body = |ctx: Ctx| {
        let ep = ctx.endpoint();
        let router = Placement::new(&ep, &IDENTITY[..2]);
        let me = ep.me();
        let server = deep::Server(Deep {
            other: deep::Client::new(&router, (1 - me) as u16, &NOWHERE),
            too_deep_at: Cell::new(None),
        });
        ep.register(deep::ID, &server).unwrap();
        if me == 0 {
            // 0 -> 1 -> 0 -> ...: the 17th call from 0 to 1 finds all 16 slots of
            // ring 0 -> 1 in flight.
            let n = server.0.other.down(1000).unwrap();
            assert_eq!(n, 2 * RING_SLOTS - 1);
            assert_eq!(server.0.too_deep_at.get(), Some(1000 - 2 * RING_SLOTS + 1));
            // The rings are still consistent afterwards, at any depth.
            for level in [0, 1, 5, 2 * RING_SLOTS - 1] {
                assert_eq!(server.0.other.down(level), Ok(level));
            }
            stop.store(true, Ordering::Release);
            ep.platform().doorbell(1);
        } else {
            ep.serve_until(|| stop.load(Ordering::Acquire));
            assert_eq!(server.0.too_deep_at.get(), None);
        }
    };
    run(
        &shm,
        Duration::from_secs(60),
        vec![Box::new(body), Box::new(body)],
    );
}

#[test]
fn shared_heap_buffers_cross_compartments() {
    let shm = Shm::new(MIB, 2);
    let stop = AtomicBool::new(false);
    run(
        &shm,
        Duration::from_secs(60),
        vec![
            Box::new(|ctx| {
                let ep = ctx.endpoint();
                let router = Placement::new(&ep, &IDENTITY[..2]);
                let callee = callee::Client::new(&router, 1, &NOWHERE);
                let mut arena = Arena::new(ctx.region.layout(), 0, 1).unwrap();
                for len in [1usize, 7, 64, 100, 4096, 65_537] {
                    let buf = arena.alloc(len).unwrap();
                    let bytes = ctx.region.bytes(buf).unwrap();
                    let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                    bytes.write(0, &data).unwrap();
                    let sum: u64 = data.iter().map(|&b| b as u64).sum();
                    assert_eq!(callee.touch(buf), Ok(sum));
                    let mut back = vec![0u8; len];
                    bytes.read(0, &mut back).unwrap();
                    assert!(back.iter().zip(&data).all(|(b, d)| *b == d.wrapping_add(1)));
                    arena.free(buf).unwrap();
                }
                // A handle outside the heap never reaches the method.
                let bad = SharedBuf::from_parts(0, 16);
                assert_eq!(callee.touch(bad), Err(GateError::BadHandle));
                // Nor does one into another channel's heap (here our own channel,
                // which the callee could not even map in a real deployment).
                let mut own = Arena::new(ctx.region.layout(), 0, 0).unwrap();
                let elsewhere = own.alloc(64).unwrap();
                assert!(ctx.region.bytes(elsewhere).is_ok());
                assert_eq!(callee.touch(elsewhere), Err(GateError::BadHandle));
                stop.store(true, Ordering::Release);
                ep.platform().doorbell(1);
            }),
            Box::new(|ctx| {
                serve_callee(ctx, &stop, IdlePolicy::default());
            }),
        ],
    );
}

/// A co-located component: counts direct calls.
struct Local(AtomicU64);

impl callee::Api for Local {
    fn nop(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed);
        7
    }
    fn sum6(&self, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
        a + b + c + d + e + f
    }
    fn touch(&self, buf: SharedBuf) -> u64 {
        buf.len() as u64
    }
    fn ping(&self, x: u64) -> u64 {
        x
    }
    fn flag(&self, b: bool) -> u8 {
        b as u8
    }
}

#[test]
fn co_located_calls_are_direct() {
    static LOCAL: Local = Local(AtomicU64::new(0));
    let shm = Shm::new(MIB, 2);
    let ep = Endpoint::new(
        shm.region(),
        0,
        ThreadPlatform {
            threads: Threads::new(2),
            hooks: Arc::new(NoHooks),
        },
    )
    .unwrap();
    // Component 0 lives here, component 1 in compartment 1.
    let router = Placement::new(&ep, &[0, 1]);
    let local = callee::Client::new(&router, 0, &LOCAL);
    assert_eq!(local.route(), Route::Local);
    for _ in 0..1000 {
        assert_eq!(local.nop(), Ok(7));
    }
    assert_eq!(local.sum6(1, 2, 3, 4, 5, 6), Ok(21));
    assert_eq!(LOCAL.0.load(Ordering::Relaxed), 1000);
    assert_eq!(ep.stats(), Stats::default()); // no ring was touched
    let remote = callee::Client::new(&router, 1, &LOCAL);
    assert_eq!(remote.route(), Route::Remote(1));
    let missing = callee::Client::new(&router, 9, &LOCAL);
    assert_eq!(missing.nop(), Err(GateError::NoSuchCompartment));
}

#[test]
fn region_validation() {
    // Header written as bytes (as the monitor does) validates.
    let shm = Shm::raw(MIB);
    let layout = Layout::new(MIB as u64, 4).unwrap();
    let write = |bytes: &[u8]| {
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: inside the block, aligned, accessed atomically only.
            let a = unsafe { &*(shm.base().add(i * 8) as *const AtomicU64) };
            a.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
    };
    let from_raw = |size: usize| {
        // SAFETY: the block outlives the view and is only accessed atomically.
        unsafe { Region::from_raw(shm.base(), size) }.map(|r| *r.layout())
    };
    // Nothing written yet.
    assert_eq!(from_raw(MIB), Err(LayoutError::BadMagic(0)));
    write(&layout.header().to_bytes());
    assert_eq!(from_raw(MIB), Ok(layout));
    assert_eq!(from_raw(MIB / 2), Err(LayoutError::Mismatch));
    assert!(matches!(from_raw(16), Err(LayoutError::TooSmall { .. })));
    let mut h = layout.header();
    h.version = 9;
    write(&h.to_bytes());
    assert_eq!(from_raw(MIB), Err(LayoutError::BadVersion(9)));
    let mut h = layout.header();
    h.magic = u64::from_le_bytes(*b"FLEXSHM0");
    write(&h.to_bytes());
    assert_eq!(from_raw(MIB), Err(LayoutError::BadMagic(h.magic)));
    let mut h = layout.header();
    h.arena_size -= 4096;
    write(&h.to_bytes());
    assert_eq!(from_raw(MIB), Err(LayoutError::Mismatch));
    // The dead flag offset is where Region looks.
    write(&layout.header().to_bytes());
    let r = shm.region();
    let off = layout.dead_flag_offset(3) as usize;
    // SAFETY: inside the block, 4-byte aligned, accessed atomically only.
    let flag = unsafe { &*(shm.base().add(off) as *const AtomicU32) };
    assert!(!r.is_dead(3));
    flag.store(1, Ordering::Release);
    assert!(r.is_dead(3));
}
