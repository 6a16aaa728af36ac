//! `tapfwd [--vnet] [--spin] [--cpu N] TAP_A TAP_B`: forwards frames between two
//! existing taps until SIGINT or SIGTERM, then prints what it moved and the CPU time it
//! used, as one line and one JSON line on stdout. See `flexos_bench::tapfwd`.
//!
//! `--vnet`: vnet header and TSO/checksum offloads (the baseline the virtio-net device
//! is judged against); without it, plain frames of at most the taps' MTU. `--spin`:
//! never sleep (poll the taps in a loop). `--cpu N`: pin to CPU N.
//! It prints `tapfwd: forwarding ...` on stderr once both taps are open.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use flexos_bench::pin_to_cpu;
use flexos_bench::tapfwd::{forward, open_tap, Flow};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn usage(why: &str) -> ! {
    eprintln!("tapfwd: {why}\nusage: tapfwd [--vnet] [--spin] [--cpu N] TAP_A TAP_B");
    std::process::exit(64);
}

fn cpu_seconds() -> (f64, f64) {
    // SAFETY: rusage is plain data; getrusage fills it in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid for writes for the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

fn main() {
    let (mut vnet, mut spin, mut cpu, mut taps) = (false, false, None, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--vnet" => vnet = true,
            "--spin" => spin = true,
            "--cpu" => match args.next().map(|n| n.parse::<usize>()) {
                Some(Ok(n)) => cpu = Some(n),
                _ => usage("--cpu takes a CPU number"),
            },
            a if a.starts_with('-') => usage(&format!("unknown option {a}")),
            _ => taps.push(arg),
        }
    }
    let [a_name, b_name] = <[String; 2]>::try_from(taps).unwrap_or_else(|_| usage("give two taps"));
    if let Some(n) = cpu {
        if !pin_to_cpu(n) {
            usage(&format!("cannot pin to CPU {n}"));
        }
    }
    let open = |name: &str| {
        open_tap(name, vnet).unwrap_or_else(|e| {
            eprintln!("tapfwd: error: {e}");
            std::process::exit(if e.kind() == std::io::ErrorKind::NotFound {
                66
            } else {
                71
            });
        })
    };
    let (a, b) = (open(&a_name), open(&b_name));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let mode = if vnet { "vnet header + TSO" } else { "plain" };
    eprintln!(
        "tapfwd: forwarding {a_name} <-> {b_name} ({mode}{})",
        if spin { ", spinning" } else { "" }
    );
    let (ab, ba) = match forward(a.as_raw_fd(), b.as_raw_fd(), spin, &STOP) {
        Ok(flows) => flows,
        Err(e) => {
            eprintln!("tapfwd: error: {e}");
            std::process::exit(71);
        }
    };
    let (user, sys) = cpu_seconds();
    let line = |f: &Flow| {
        format!(
            "frames={} bytes={} dropped={}",
            f.frames, f.bytes, f.dropped
        )
    };
    println!(
        "tapfwd: {a_name}->{b_name} {}; {b_name}->{a_name} {}; cpu user={user:.2}s sys={sys:.2}s",
        line(&ab),
        line(&ba)
    );
    let json = |f: &Flow| {
        format!(
            "{{\"frames\":{},\"bytes\":{},\"dropped\":{}}}",
            f.frames, f.bytes, f.dropped
        )
    };
    println!(
        "{{\"tapfwd\":{{\"mode\":\"{}\",\"spin\":{spin},\"a_to_b\":{},\"b_to_a\":{},\"cpu_user_s\":{user:.3},\"cpu_sys_s\":{sys:.3}}}}}",
        if vnet { "vnet" } else { "plain" },
        json(&ab),
        json(&ba)
    );
}
