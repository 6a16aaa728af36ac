//! Test harness: a shared region in host memory, compartments as threads, and a
//! thread [`Platform`] (sleep = park with timeout, doorbell = unpark: park tokens are
//! latched exactly as `Platform::sleep` requires).

#![allow(dead_code)]

use std::alloc::{alloc_zeroed, dealloc, Layout as AllocLayout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use rpc_shm::{Endpoint, IdlePolicy, Platform, Region};

pub const MIB: usize = 1 << 20;
/// A sleep timeout meaning "until the doorbell rings": a lost wake-up hangs.
pub const FOREVER: u64 = u64::MAX;

/// A zeroed, page-aligned block of host memory standing in for the shared region.
pub struct Shm {
    ptr: *mut u8,
    size: usize,
}

// SAFETY: the block is only accessed through `Region` (atomics).
unsafe impl Send for Shm {}
// SAFETY: as above.
unsafe impl Sync for Shm {}

impl Shm {
    /// A region of `size` bytes laid out for `n` compartments.
    pub fn new(size: usize, n: u32) -> Shm {
        let layout = AllocLayout::from_size_align(size, 4096).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        // SAFETY: the block lives until `Shm` is dropped, after every thread using the
        // region has been joined (tests use scoped threads), and is only accessed
        // through this crate.
        unsafe { Region::init(ptr, size, n) }.unwrap();
        Shm { ptr, size }
    }

    /// Raw memory with nothing written (for header validation tests).
    pub fn raw(size: usize) -> Shm {
        let layout = AllocLayout::from_size_align(size, 4096).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Shm { ptr, size }
    }

    pub fn base(&self) -> *mut u8 {
        self.ptr
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// A validated view, as a compartment would make it.
    pub fn region(&self) -> Region {
        // SAFETY: see `new`.
        unsafe { Region::from_raw(self.ptr, self.size) }.unwrap()
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`/`raw` with this layout.
        unsafe {
            dealloc(
                self.ptr,
                AllocLayout::from_size_align(self.size, 4096).unwrap(),
            )
        }
    }
}

/// The compartment threads' handles, for doorbells.
#[derive(Clone)]
pub struct Threads(Arc<Vec<OnceLock<Thread>>>);

impl Threads {
    pub fn new(n: u32) -> Threads {
        Threads(Arc::new((0..n).map(|_| OnceLock::new()).collect()))
    }

    pub fn register(&self, me: u32) {
        self.0[me as usize].set(thread::current()).unwrap();
    }

    pub fn unpark(&self, c: u32) {
        if let Some(t) = self.0.get(c as usize).and_then(OnceLock::get) {
            t.unpark();
        }
    }
}

/// Hooks for fault-injection tests.
pub trait Hooks: Send + Sync {
    fn on_relax(&self) {}
    fn before_sleep(&self) {}
}

pub struct NoHooks;
impl Hooks for NoHooks {}

pub struct ThreadPlatform {
    pub threads: Threads,
    pub hooks: Arc<dyn Hooks>,
}

impl Platform for ThreadPlatform {
    fn relax(&self) {
        self.hooks.on_relax();
        std::hint::spin_loop();
    }

    fn sleep(&self, timeout_us: u64) {
        self.hooks.before_sleep();
        if timeout_us == FOREVER {
            thread::park();
        } else {
            thread::park_timeout(Duration::from_micros(timeout_us));
        }
    }

    fn doorbell(&self, target: u32) {
        self.threads.unpark(target);
    }
}

/// What a compartment thread gets.
pub struct Ctx {
    pub id: u32,
    pub region: Region,
    pub threads: Threads,
}

impl Ctx {
    pub fn endpoint<'a>(&self) -> Endpoint<'a, ThreadPlatform> {
        self.endpoint_with(Arc::new(NoHooks))
    }

    pub fn endpoint_with<'a>(&self, hooks: Arc<dyn Hooks>) -> Endpoint<'a, ThreadPlatform> {
        let p = ThreadPlatform {
            threads: self.threads.clone(),
            hooks,
        };
        Endpoint::new(self.region, self.id, p).unwrap()
    }
}

/// Runs `bodies[i]` as compartment `i` on its own thread over `shm`, after every
/// thread has registered for doorbells. Fails the whole process if it takes longer
/// than `limit` (a lost wake-up shows up as a hang).
pub fn run(shm: &Shm, limit: Duration, bodies: Vec<Box<dyn FnOnce(Ctx) + Send + '_>>) {
    let n = bodies.len() as u32;
    let threads = Threads::new(n);
    let barrier = Barrier::new(n as usize);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let watchdog = s.spawn(|| {
            let start = Instant::now();
            while !done.load(Ordering::Acquire) {
                if start.elapsed() > limit {
                    eprintln!(
                        "compartments did not finish within {limit:?}: lost wake-up or deadlock"
                    );
                    std::process::exit(101);
                }
                thread::park_timeout(Duration::from_millis(20));
            }
        });
        let handles: Vec<_> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let threads = threads.clone();
                let barrier = &barrier;
                let region = shm.region();
                s.spawn(move || {
                    let _guard = ExitOnPanic;
                    threads.register(i as u32);
                    barrier.wait();
                    body(Ctx {
                        id: i as u32,
                        region,
                        threads,
                    })
                })
            })
            .collect();
        let mut panicked = None;
        for h in handles {
            if let Err(e) = h.join() {
                panicked = Some(e);
            }
        }
        done.store(true, Ordering::Release);
        watchdog.thread().unpark();
        watchdog.join().unwrap();
        if let Some(e) = panicked {
            std::panic::resume_unwind(e);
        }
    });
}

/// Ends the process when a compartment thread panics: its peers would otherwise
/// wait for it until the watchdog fires.
struct ExitOnPanic;

impl Drop for ExitOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("a compartment panicked; ending the test process");
            std::process::exit(101);
        }
    }
}

/// An idle policy that sleeps after `spin_rounds` with the given timeout.
pub fn policy(spin_rounds: u32, sleep_us: u64) -> IdlePolicy {
    IdlePolicy {
        spin_rounds,
        sleep_us,
    }
}

/// The workspace's one test PRNG.
pub use flexos_testkit::Rng;
