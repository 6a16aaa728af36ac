//! `tapfwd [--vnet] NS_A:TAP_A NS_B:TAP_B`: moves frames between two existing taps,
//! each in its own network namespace, until SIGINT/SIGTERM.
//!
//! The iperf benchmark's userspace baseline: a kernel TCP client in namespace A talks
//! to a kernel server in namespace B through two taps and this program, so the guest's
//! device path (tap -> device thread -> guest memory) is judged against the best a
//! plain userspace tap path does on the same machine in the same run.
//!
//! `--vnet` opens both taps with a virtio-net header and tells the kernel this side
//! takes checksum and TCP segmentation offload (TUNSETOFFLOAD CSUM|TSO4|TSO6), so frames
//! of up to 64 KiB cross instead of 1514-byte ones: the same lever the guest's device
//! uses. One thread, epoll on both fds, draining each until EAGAIN: a second busy
//! thread would take the client's core on this 2-core host.
//!
//! Prints `tapfwd: forwarding` when both taps are open (scripts wait for it) and, on
//! exit, one JSON line with the frames and bytes moved each way.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest frame with header: a 64 KiB TSO frame plus the 12-byte vnet header.
const BUF: usize = 65_536 + 64;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
/// virtio_net_hdr_v1: the header size the guest's device uses too.
const VNET_HDR_LEN: libc::c_int = 12;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Args {
    vnet: bool,
    a: (String, String),
    b: (String, String),
}

fn usage(msg: &str) -> ! {
    eprintln!("tapfwd: {msg}\nusage: tapfwd [--vnet] NS_A:TAP_A NS_B:TAP_B");
    std::process::exit(64);
}

fn parse_args() -> Args {
    let mut vnet = false;
    let mut ends = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--vnet" {
            vnet = true;
        } else if let Some((ns, tap)) = arg.split_once(':') {
            if ns.is_empty() || tap.is_empty() || tap.len() >= libc::IFNAMSIZ {
                usage(&format!("bad endpoint {arg:?}"));
            }
            ends.push((ns.to_string(), tap.to_string()));
        } else {
            usage(&format!("unexpected argument {arg:?}"));
        }
    }
    let [a, b]: [(String, String); 2] = ends
        .try_into()
        .unwrap_or_else(|_| usage("want exactly two NS:TAP endpoints"));
    Args { vnet, a, b }
}

/// `ioctl(fd, request, arg)` with the error as an `io::Error` naming `what`.
fn ioctl(fd: RawFd, request: libc::c_ulong, arg: libc::c_ulong, what: &str) -> io::Result<()> {
    // SAFETY: each request used here takes an integer or a pointer to a live ifreq
    // or c_int that the caller owns for the duration of the call.
    if unsafe { libc::ioctl(fd, request, arg) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Switches this thread into the network namespace `ns` (as `ip netns` names it).
fn enter_netns(ns: &str) -> io::Result<()> {
    let file = File::open(format!("/var/run/netns/{ns}"))
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace {ns}: {e}")))?;
    // SAFETY: setns only reads the fd, which `file` keeps open during the call.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns {ns}: {e}")));
    }
    Ok(())
}

/// Opens the existing tap `name` of namespace `ns`, non-blocking.
fn open_tap(ns: &str, name: &str, vnet: bool) -> io::Result<OwnedFd> {
    enter_netns(ns)?;
    // SAFETY: a NUL-terminated literal path; the result is checked.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly opened fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet {
        flags |= libc::IFF_VNET_HDR;
    }
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    let what = format!("TUNSETIFF {ns}:{name}");
    ioctl(
        fd.as_raw_fd(),
        TUNSETIFF,
        &mut ifr as *mut _ as libc::c_ulong,
        &what,
    )?;
    if vnet {
        let len: libc::c_int = VNET_HDR_LEN;
        ioctl(
            fd.as_raw_fd(),
            TUNSETVNETHDRSZ,
            &len as *const _ as libc::c_ulong,
            "TUNSETVNETHDRSZ",
        )?;
    }
    // Always set: a persistent tap keeps the offloads its previous user asked for, and
    // partially checksummed frames reaching a reader without a vnet header are lost.
    let offloads = if vnet {
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
    } else {
        0
    };
    ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offloads, "TUNSETOFFLOAD")?;
    Ok(fd)
}

#[derive(Default)]
struct Counts {
    frames: u64,
    bytes: u64,
    /// Frames the destination tap refused (its queue was full): lost, as on a wire.
    dropped: u64,
}

/// Moves every frame waiting on `from` to `to`; returns at EAGAIN.
fn drain(from: RawFd, to: RawFd, buf: &mut [u8], counts: &mut Counts) -> io::Result<()> {
    loop {
        // SAFETY: `buf` is valid for writes of its length for the call.
        let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                _ => Err(e),
            };
        }
        let n = n as usize;
        // SAFETY: the first `n` bytes of `buf` were just written by read.
        let w = unsafe { libc::write(to, buf.as_ptr().cast(), n) };
        if w < 0 {
            counts.dropped += 1;
        } else {
            counts.frames += 1;
            counts.bytes += n as u64;
        }
    }
}

fn run(args: &Args) -> io::Result<(Counts, Counts)> {
    let a = open_tap(&args.a.0, &args.a.1, args.vnet)?;
    let b = open_tap(&args.b.0, &args.b.1, args.vnet)?;
    // SAFETY: plain epoll_create1; the fd is owned below.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ep` is a fresh fd that nothing else owns.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    for (i, fd) in [a.as_raw_fd(), b.as_raw_fd()].into_iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: `ev` lives for the call; both fds are open.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    println!("tapfwd: forwarding");
    let (mut ab, mut ba) = (Counts::default(), Counts::default());
    let mut buf = vec![0u8; BUF];
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
    while !STOP.load(Ordering::Relaxed) {
        // SAFETY: `events` is valid for 2 entries for the call.
        let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), 2, 200) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            if ev.u64 == 0 {
                drain(a.as_raw_fd(), b.as_raw_fd(), &mut buf, &mut ab)?;
            } else {
                drain(b.as_raw_fd(), a.as_raw_fd(), &mut buf, &mut ba)?;
            }
        }
    }
    Ok((ab, ba))
}

fn main() {
    let args = parse_args();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    match run(&args) {
        Ok((ab, ba)) => println!(
            "{{\"bench\":\"tapfwd\",\"vnet\":{},\"a_to_b\":{{\"frames\":{},\"bytes\":{},\"dropped\":{}}},\"b_to_a\":{{\"frames\":{},\"bytes\":{},\"dropped\":{}}}}}",
            args.vnet, ab.frames, ab.bytes, ab.dropped, ba.frames, ba.bytes, ba.dropped
        ),
        Err(e) => {
            eprintln!("tapfwd: {e}");
            std::process::exit(71);
        }
    }
}
