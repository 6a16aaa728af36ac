//! `host-handoff [ROUND_TRIPS]`: what a blocking hand-off between two threads costs on
//! this host, the way the monitor's vCPU threads hand off: one thread writes an
//! eventfd the other blocks on (poll, then read), and blocks on a second eventfd for
//! the answer. Measured with both threads on one CPU, on two CPUs, and on two CPUs with
//! a SCHED_IDLE spinner on each (which keeps the outer hypervisor from halting an idle
//! CPU, docs/threads.md). Prints one JSON line per case: round-trip median and 10th/90th
//! percentiles in microseconds.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use flexos_bench::pin_to_cpu;

/// A non-blocking eventfd.
fn eventfd() -> OwnedFd {
    // SAFETY: eventfd takes no pointers; a negative result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just created and is owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn signal(fd: &OwnedFd) {
    let one = 1u64;
    // SAFETY: writes the 8 bytes of `one` to an eventfd we own.
    unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
}

/// Blocks until `fd` is readable, then drains it: what the monitor's sleep does.
fn wait(fd: &OwnedFd) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    unsafe { libc::poll(&mut pfd, 1, -1) };
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v` from an eventfd we own.
    unsafe { libc::read(fd.as_raw_fd(), (&raw mut v).cast(), 8) };
}

/// Round trips between a thread on `a` and one on `b`, in microseconds.
fn pingpong(a: usize, b: usize, rounds: usize) -> Vec<f64> {
    let (ping, pong) = (Arc::new(eventfd()), Arc::new(eventfd()));
    let peer = {
        let (ping, pong) = (ping.clone(), pong.clone());
        std::thread::spawn(move || {
            pin_to_cpu(b);
            for _ in 0..rounds + rounds / 10 {
                wait(&ping);
                signal(&pong);
            }
        })
    };
    pin_to_cpu(a);
    let mut out = Vec::with_capacity(rounds);
    for i in 0..rounds + rounds / 10 {
        let t = Instant::now();
        signal(&ping);
        wait(&pong);
        if i >= rounds / 10 {
            out.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
    }
    peer.join().expect("the peer thread panicked");
    out
}

/// SCHED_IDLE threads spinning on `cpus` until `stop`.
fn spinners(cpus: &[usize], stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    cpus.iter()
        .map(|&cpu| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_to_cpu(cpu);
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: pid 0 is this thread; `param` is valid.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect()
}

fn report(case: &str, mut us: Vec<f64>) {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q) as usize];
    println!(
        "{{\"bench\":\"handoff\",\"case\":\"{case}\",\"round_trips\":{},\"us_median\":{:.2},\"us_p10\":{:.2},\"us_p90\":{:.2}}}",
        us.len(),
        at(0.5),
        at(0.1),
        at(0.9)
    );
}

fn main() {
    let rounds: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 20_000,
        Some(Ok(n)) if n >= 10 => n,
        Some(_) => {
            eprintln!("usage: host-handoff [ROUND_TRIPS >= 10]");
            std::process::exit(64);
        }
    };
    let cpus = flexos_bench::allowed_cpus().unwrap_or_default();
    if cpus.len() < 2 {
        eprintln!("host-handoff: needs 2 CPUs in its affinity mask, has {cpus:?}");
        std::process::exit(69);
    }
    let (a, b) = (cpus[0], cpus[1]);
    report("eventfd-same-cpu", pingpong(a, a, rounds));
    report("eventfd-cross-cpu", pingpong(a, b, rounds));
    let stop = Arc::new(AtomicBool::new(false));
    let spinning = spinners(&[a, b], &stop);
    report("eventfd-cross-cpu-idle-spinners", pingpong(a, b, rounds));
    stop.store(true, Ordering::Relaxed);
    for s in spinning {
        s.join().expect("a spinner panicked");
    }
}
